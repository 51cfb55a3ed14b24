//! A second build after `cargo clean` hits and gives the same bytes as a plain build.

use jetcc_common::classify::PassThrough;
use jetcc_common::stats::{NotStoredReason, StatKind};
use jetcc_e2e::*;

#[test]
fn fixture_second_build_hits_and_matches_plain_bytes() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = p.plain_artifacts();

    let cold = p.build_ok(&Build::jetcc(&cache));
    cold.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "cold jetcc build");
    // Warnings are shown on a miss, as rustc shows them.
    assert!(
        cold.stderr().contains("unused_variable"),
        "{}",
        cold.stderr()
    );
    p.clean();

    let warm = p.build_ok(&Build::jetcc(&cache));
    warm.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "warm jetcc build");
    // ...and replayed on a hit.
    assert!(
        warm.stderr().contains("unused_variable"),
        "{}",
        warm.stderr()
    );

    let run = std::process::Command::new(p.target().join("debug/app"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stdout).starts_with("answer=42 mid=84"));

    // A no-op rebuild: cargo finds everything fresh (dep-info was restored with this
    // build's paths), so rustc is not even called.
    let noop = p.build(&Build::jetcc(&cache));
    assert!(noop.ok());
    assert!(noop.outcomes().is_empty(), "{:?}", noop.outcomes());

    let s = stats(&cache);
    assert_eq!(s["hits"], 7);
    assert_eq!(s["misses"], 7);
    assert_eq!(s["errors"], serde_json::json!({}));
    assert!(
        s["pass_through"][PassThrough::NotACompile.name()]
            .as_u64()
            .unwrap()
            >= 2
    );
    assert!(s["cache_size"].as_u64().unwrap() > 0);
}

/// Incremental builds (cargo's default for workspace members) are cached, compared by
/// behaviour: two plain incremental builds can already differ in their bytes.
#[test]
fn incremental_members_are_cached_and_edit_loops_left_alone() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let incremental = |b: Build| Build {
        incremental: true,
        ..b
    };
    let run_app = || {
        let out = std::process::Command::new(p.target().join("debug/app"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    p.build_ok(&incremental(Build::plain()));
    let want = run_app();
    p.clean();

    p.build_ok(&incremental(Build::jetcc(&cache)));
    p.clean();
    let warm = p.build_ok(&incremental(Build::jetcc(&cache)));
    warm.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_eq!(run_app(), want);

    // An edit loop: the edited unit compiles (incrementally) and is not stored again.
    p.write(
        "leaf/src/extra/special.rs",
        "pub fn special() -> u64 {\n    40\n}\n",
    );
    let edited = p.build_ok(&incremental(Build::jetcc(&cache)));
    assert_eq!(
        edited.outcome("leaf"),
        Some(Outcome::Miss),
        "{:?}",
        edited.outcomes()
    );
    assert!(run_app().contains("mid=82"), "{}", run_app());
    assert!(
        stats(&cache)["not_stored"][NotStoredReason::EditLoop.name()]
            .as_u64()
            .unwrap()
            >= 1
    );

    // The policy switch: incremental units run as plain rustc.
    p.clean();
    let off =
        p.build_ok(&incremental(Build::jetcc(&cache)).env("JETCC_INCREMENTAL", "pass-through"));
    assert_eq!(off.outcome("leaf"), None, "{:?}", off.outcomes());
    assert!(
        stats(&cache)["pass_through"][PassThrough::Incremental.name()]
            .as_u64()
            .unwrap()
            >= 4
    );
}

#[test]
fn registry_crates_hit_and_match_plain_bytes() {
    let p = Project::fixture("fixture-registry");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = p.plain_artifacts();
    p.build_ok(&Build::jetcc(&cache));
    assert_same_artifacts(&want, &artifacts(&p.target()), "cold");
    p.clean();
    let warm = p.build_ok(&Build::jetcc(&cache));
    warm.assert_each(&["itoa", "smallvec", "serde", "serde_core"], Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "warm");
}

#[test]
fn two_checkouts_share_what_they_may_and_leak_no_paths() {
    let a = Project::fixture("fixture-registry");
    let b_dir = a.sibling("fixture-registry", "checkout-b");
    let cache = a.dir.parent().unwrap().join("cache");
    let a_path = a.dir.to_string_lossy().into_owned();

    // Without base_dirs: crates with no generated code are shared; serde's rlib names its
    // OUT_DIR (in the checkout's target dir), so it is not, and B's outputs never name A.
    assert!(a.build(&Build::jetcc(&cache)).ok());
    let b = build_in(&b_dir, &Build::jetcc(&cache));
    assert!(b.ok(), "{}", b.stderr());
    assert_eq!(b.outcome("itoa"), Some(Outcome::Hit), "{:?}", b.outcomes());
    assert_eq!(b.outcome("smallvec"), Some(Outcome::Hit));
    assert_eq!(b.outcome("serde_core"), Some(Outcome::Miss));
    assert_eq!(b.outcome("serde"), Some(Outcome::Miss));
    assert_eq!(find_bytes(&b_dir.join("target"), a_path.as_bytes()), None);

    // With base_dirs naming each checkout, everything cacheable is shared, and still no
    // output of B names A (they name the mapped base instead: the documented trade-off).
    let mapped_cache = a.dir.parent().unwrap().join("cache-mapped");
    a.clean();
    let _ = std::fs::remove_dir_all(b_dir.join("target"));
    let with_base = |dir: &std::path::Path| {
        Build::jetcc(&mapped_cache).env("JETCC_BASE_DIRS", &dir.to_string_lossy())
    };
    assert!(a.build(&with_base(&a.dir)).ok());
    let b = build_in(&b_dir, &with_base(&b_dir));
    assert!(b.ok(), "{}", b.stderr());
    b.assert_each(&["itoa", "smallvec", "serde", "serde_core"], Outcome::Hit);
    assert_eq!(find_bytes(&b_dir.join("target"), a_path.as_bytes()), None);
    let run = std::process::Command::new(b_dir.join("target/debug/regfix"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "42 1 true");
    // Restored dep-info names B's files, so cargo sees B's build as fresh.
    let noop = build_in(&b_dir, &with_base(&b_dir));
    assert!(noop.outcomes().is_empty(), "{:?}", noop.outcomes());
}

#[test]
fn explain_names_what_changed() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let explain = || {
        let out = jetcc(&cache).args(["--explain", "100"]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let build = |b: Build| {
        p.clean();
        p.build_ok(&b)
    };
    build(Build::jetcc(&cache));
    assert!(explain().contains("leaf") && explain().contains("first compile of this unit"));

    build(Build::jetcc(&cache).env("FIXTURE_STAMP", "s2"));
    assert!(
        explain().contains("env changed: FIXTURE_STAMP (unset -> \"s2\")"),
        "{}",
        explain()
    );

    p.write("leaf/data/greeting.txt", "hi there\n");
    build(Build::jetcc(&cache));
    assert!(
        explain().contains("file changed: leaf/src/../data/greeting.txt")
            || explain().contains("file changed: leaf/data/greeting.txt"),
        "{}",
        explain()
    );
    // mid's invocation changed through its extern: named as such.
    assert!(explain().contains("extern leaf changed"), "{}", explain());

    build(Build::jetcc(&cache).env("CARGO_PROFILE_DEV_OPT_LEVEL", "1"));
    let text = explain();
    assert!(text.contains("argument added: -C opt-level=1"), "{text}");
}

/// `cargo test`, `cargo check` and `cargo clippy` through jetcc: test harnesses are cached
/// and still run; check's metadata-only units hit; clippy's driver is passed through.
#[test]
fn cargo_test_check_and_clippy_work_through_jetcc() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let test = |name: &str| {
        p.clean();
        let built = p.build_ok(&Build::jetcc(&cache).subcommand("test"));
        let out = String::from_utf8_lossy(&built.output.stdout).into_owned();
        assert!(
            out.contains("test tests::leaf_value_is_42 ... ok"),
            "{name}: {out}"
        );
        built
    };
    test("cold");
    // Libraries are compiled twice by `cargo test` (library and test harness): all hit.
    let warm = test("warm").outcomes();
    assert!(warm["leaf"].len() == 2, "{warm:?}");
    assert!(
        warm.values().flatten().all(|o| *o == Outcome::Hit),
        "{warm:?}"
    );

    for round in ["cold", "warm"] {
        p.clean();
        let check = p.build_ok(&Build::jetcc(&cache).subcommand("check"));
        if round == "warm" {
            check.assert_each(&["leaf", "mid", "corelib", "app"], Outcome::Hit);
        }
    }

    p.clean();
    let clippy = p.build_ok(&Build::jetcc(&cache).subcommand("clippy"));
    assert!(
        clippy.stderr().contains("unused_variable"),
        "{}",
        clippy.stderr()
    );
}

/// CI scripts written for sccache run these; they must not fail a job that switches to jetcc.
#[test]
fn sccache_flag_spellings_work() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    p.build_ok(&Build::jetcc(&cache));
    // (stdout, stderr) of a run that must exit 0.
    let run = |args: &[&str]| {
        let out = jetcc(&cache).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [
        &["--show-stats", "--stats-format=json"][..],
        &["--show-stats", "--stats-format", "json"],
        &["-s", "--json"],
    ] {
        let (out, _) = run(args);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["misses"], 7, "{args:?}: {json}");
    }
    for args in [
        &["--show-stats", "--stats-format", "text"][..],
        &["--show-stats", "--stats-format=text"],
    ] {
        assert!(run(args).0.contains("Cache misses"), "{args:?}");
    }
    // Server start and stop are no-ops that say so on stderr; stdout stays for the stats.
    let (out, err) = run(&["--start-server"]);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("nothing to start"), "{err}");
    let (out, err) = run(&["--stop-server"]);
    assert!(err.contains("nothing to stop"), "{err}");
    assert!(
        out.contains("Cache misses") && !out.contains("nothing to stop"),
        "{out}"
    );
    let bad = jetcc(&cache)
        .args(["--show-stats", "--stats-format=xml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad format is a usage error");
}

/// Every file of the cache's records (blobs, entries, manifests, unit parts, the size) with
/// its length and mtime.
fn records(cache: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut all = Vec::new();
    let mut dirs: Vec<_> = ["cas", "ac", "mf", "units"]
        .iter()
        .map(|d| cache.join(d))
        .collect();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let m = std::fs::metadata(&p).unwrap();
                all.push((p, m.len(), m.modified().unwrap()));
            }
        }
    }
    let size = cache.join("size");
    all.push((
        size.clone(),
        std::fs::read(&size).unwrap().len() as u64,
        std::fs::metadata(&size).unwrap().modified().unwrap(),
    ));
    all.sort();
    all
}

/// sccache's `[cache.disk] rw_mode = "READ_ONLY"`: the local cache is looked up as ever and
/// never written: a miss compiles, is not stored, and misses again.
#[test]
fn a_read_only_local_cache_is_looked_up_and_never_written() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap();
    let cache = root.join("cache");
    p.build_ok(&Build::jetcc(&cache));
    let filled = records(&cache);
    let local_writes = stats(&cache)["tiers"]["local"]["writes"].clone();
    let config = root.join("read-only.toml");
    std::fs::write(&config, "[cache.disk]\nrw_mode = \"READ_ONLY\"\n").unwrap();
    let read_only = || Build::jetcc(&cache).env("JETCC_CONFIG", &config.to_string_lossy());

    p.clean();
    let built = p.build_ok(&read_only());
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    let src = p.read("leaf/src/lib.rs") + "pub fn read_only_edit() {}\n";
    p.write("leaf/src/lib.rs", &src);
    for _ in 0..2 {
        p.clean();
        let built = p.build_ok(&read_only());
        assert_eq!(built.outcome("leaf"), Some(Outcome::Miss), "{}", built.log);
    }
    assert_eq!(
        records(&cache),
        filled,
        "nothing written, removed or touched"
    );
    let s = stats(&cache);
    let not_stored = s["not_stored"][NotStoredReason::LocalReadOnly.name()].as_u64();
    assert!(not_stored >= Some(2), "leaf and its dependents, twice: {s}");
    assert_eq!(s["tiers"]["local"]["writes"], local_writes, "{s}");
    // The same edit, read-write: stored, then a hit.
    p.clean();
    let built = p.build_ok(&Build::jetcc(&cache));
    assert_eq!(built.outcome("leaf"), Some(Outcome::Miss));
    p.clean();
    let built = p.build_ok(&read_only());
    assert_eq!(built.outcome("leaf"), Some(Outcome::Hit));
}
