//! A farm job's inputs listed from the unit's last job, without the dep-info pre-pass
//! (`common::listing`): the result must equal a plain build's whatever changed since, and a
//! listing that no longer fits is caught, compiled locally and forgotten.

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

    // Cold: every job is listed by a pre-pass, and its listing remembered.
    let want = plain(&p);
    p.build_ok(&farm());
    assert_same_artifacts(&want, &artifacts(&p.target()), "cold farm build");
    let s = stats(&cache);
    let units = REMOTE_UNITS.len() as u64;
    assert_eq!(count(&s, &["remote_compiles"]), units, "{s}");
    assert_eq!(count(&s, &["remote_prepasses"]), units, "{s}");
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
    assert_eq!(count(&s, &["remote_prepasses"]), units, "{s}");
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
    assert_eq!(count(&s, &["remote_prepasses"]), units + 1, "{s}");
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
    let unit_listings = std::fs::read_dir(cache.join("listings"))
        .unwrap()
        .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
        .count();
    assert_eq!(
        unit_listings,
        REMOTE_UNITS.len() - 1,
        "leaf's was forgotten"
    );
}
