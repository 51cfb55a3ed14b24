//! A farm job's inputs listed without the dep-info pre-pass (`common::listing`): guessed on a
//! unit's first job (its package's files, the crates it loads), then from the unit's last
//! job. The result must equal a plain build's whatever changed since, and a listing that does
//! not fit is caught, compiled locally and forgotten: the unit's next job pre-passes.

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, REMOTE_UNITS};

/// The fixture's units an edit of `leaf` recompiles on the farm: leaf and its dependents.
const EDITED: &[&str] = &["leaf", "mid", "corelib"];

fn count(s: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(s, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_default()
}

#[test]
fn units_sent_again_skip_the_prepass_and_a_listing_that_no_longer_fits_compiles_locally() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let _w = Worker::start(&nats.url(), &root.join("w1"), 1);
    let cache = root.join("cache");
    // Both builds of every step see the same env (leaf may read it with `option_env!`).
    let probe = ("E2E_LISTING_PROBE", "on");
    let farm = || farm_build(&cache, &nats).env(probe.0, probe.1);
    let plain = |p: &Project| {
        p.clean();
        p.build_ok(&Build::plain().env(probe.0, probe.1));
        let want = artifacts(&p.target());
        p.clean();
        want
    };

    // Cold: every unit's first job is guessed, none pre-passed (util's includes code its
    // build script generated in OUT_DIR, leaf reads a data file and a `#[path]` module), and
    // what each read is remembered.
    let want = plain(&p);
    p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "cold farm build");
    let s = stats(&cache);
    let units = REMOTE_UNITS.len() as u64;
    assert_eq!(count(&s, &["remote_compiles"]), units, "{s}");
    assert_eq!(count(&s, &["remote_listings_guessed"]), units, "{s}");
    assert_eq!(count(&s, &["remote_prepasses"]), 0, "{s}");
    assert_eq!(count(&s, &["remote_listings_reused"]), 0, "{s}");

    // An edit of leaf: leaf (same invocation, a changed source) and its dependents (changed
    // externs) go to the farm again, listed from their last jobs: no pre-pass.
    let lib = p.read("leaf/src/lib.rs");
    p.write(
        "leaf/src/lib.rs",
        &format!("{lib}\npub fn edited() -> u32 {{ 1 }}\n"),
    );
    let want = plain(&p);
    let built = p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "listings reused");
    built.assert_each(EDITED, Outcome::Miss);
    let s = stats(&cache);
    let edited = EDITED.len() as u64;
    assert_eq!(count(&s, &["remote_compiles"]), units + edited, "{s}");
    assert_eq!(count(&s, &["remote_prepasses"]), 0, "{s}");
    assert_eq!(count(&s, &["remote_listings_reused"]), edited, "{s}");
    assert_eq!(
        built.log.matches("no pre-pass").count(),
        EDITED.len(),
        "{}",
        built.log
    );

    // leaf now reads a variable its listing does not name: the job did not carry it, so
    // the worker's `option_env!` read None while it is set here. The dep-info shows it:
    // the result is discarded and leaf compiles locally, as plain rustc would.
    let lib = p.read("leaf/src/lib.rs");
    p.write(
        "leaf/src/lib.rs",
        &format!("{lib}\npub const PROBE: Option<&str> = option_env!(\"E2E_LISTING_PROBE\");\n"),
    );
    let want = plain(&p);
    p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "a stale env listing");
    let s = stats(&cache);
    assert_eq!(
        count(&s, &["remote_skipped", "farm-stale-listing"]),
        1,
        "{s}"
    );
    assert_eq!(
        count(&s, &["remote_compiles"]),
        units + 2 * edited - 1,
        "{s}"
    );

    // The stale listing was forgotten: leaf's next job pre-passes (its dependents reuse).
    let lib = p.read("leaf/src/lib.rs");
    p.write("leaf/src/lib.rs", &format!("{lib}\npub fn again() {{}}\n"));
    let want = plain(&p);
    p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "listed afresh");
    let s = stats(&cache);
    assert_eq!(count(&s, &["remote_prepasses"]), 1, "{s}");
    assert_eq!(
        count(&s, &["remote_compiles"]),
        units + 3 * edited - 1,
        "{s}"
    );

    // A new module file the listing lacks is missing on the worker: rustc fails there, the
    // unit compiles locally, and its listing is forgotten.
    let lib = p.read("leaf/src/lib.rs");
    p.write("leaf/src/lib.rs", &format!("{lib}\npub mod added;\n"));
    p.write("leaf/src/added.rs", "pub fn added() -> u8 { 3 }\n");
    let want = plain(&p);
    p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "a new module file");
    let s = stats(&cache);
    assert_eq!(
        count(&s, &["remote_skipped", "farm-compile-failed"]),
        1,
        "{s}"
    );
    assert_eq!(
        count(&s, &["remote_compiles"]),
        units + 4 * edited - 2,
        "{s}"
    );

    // leaf's listing was forgotten: its next job pre-passes, not guesses.
    let lib = p.read("leaf/src/lib.rs");
    p.write(
        "leaf/src/lib.rs",
        &format!("{lib}\npub fn once_more() {{}}\n"),
    );
    let want = plain(&p);
    p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "listed afresh again");
    let s = stats(&cache);
    assert_eq!(count(&s, &["remote_prepasses"]), 2, "{s}");
    assert_eq!(count(&s, &["remote_listings_guessed"]), units, "{s}");
}

#[test]
fn a_first_job_reading_outside_its_package_compiles_locally_and_its_next_job_prepasses() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let _w = Worker::start(&nats.url(), &root.join("w1"), 1);
    let cache = root.join("cache");
    // leaf reads a file of the workspace root (a virtual manifest): outside its package, so
    // outside its guessed inputs.
    p.write("shared-note.txt", "read from above the package\n");
    let lib = p.read("leaf/src/lib.rs");
    p.write(
        "leaf/src/lib.rs",
        &format!("{lib}\npub const NOTE: &str = include_str!(\"../../shared-note.txt\");\n"),
    );
    let want = p.plain_artifacts();

    // Guessed, the job lacks the file: rustc fails on the worker, leaf compiles here as
    // plain rustc would, and the worker's error is not shown.
    let built = p.build_ok(&farm_build(&cache, &nats));
    assert_same_artifacts(&want, &artifacts(&p.target()), "a read outside the package");
    assert!(
        !built.stderr().contains("shared-note.txt"),
        "{}",
        built.stderr()
    );
    let s = stats(&cache);
    let units = REMOTE_UNITS.len() as u64;
    assert_eq!(count(&s, &["remote_listings_guessed"]), units, "{s}");
    assert_eq!(
        count(&s, &["remote_skipped", "farm-compile-failed"]),
        1,
        "{s}"
    );
    assert_eq!(count(&s, &["remote_compiles"]), units - 1, "{s}");
    assert_eq!(count(&s, &["remote_prepasses"]), 0, "{s}");

    // The guess failed: leaf's next job is listed by a pre-pass (which finds the file) and
    // compiles on the farm; its dependents reuse their listings.
    let lib = p.read("leaf/src/lib.rs");
    p.write("leaf/src/lib.rs", &format!("{lib}\npub fn edited() {{}}\n"));
    let want = p.plain_artifacts();
    p.build_ok(&farm_build(&cache, &nats));
    assert_same_artifacts(&want, &artifacts(&p.target()), "pre-passed after the guess");
    let s = stats(&cache);
    assert_eq!(count(&s, &["remote_prepasses"]), 1, "{s}");
    assert_eq!(count(&s, &["remote_listings_guessed"]), units, "{s}");
    assert_eq!(
        count(&s, &["remote_skipped", "farm-compile-failed"]),
        1,
        "{s}"
    );
    let edited = EDITED.len() as u64;
    assert_eq!(count(&s, &["remote_compiles"]), units - 1 + edited, "{s}");
}
