//! Bad cache state never fails a build: corrupt or truncated blobs, garbage entries, a full
//! cache, a read-only cache dir, many builds at once.

use std::fs;
use std::path::Path;

use jetcc_common::stats::{ErrorKind, StatKind};
use jetcc_e2e::*;

/// Builds plainly, then through jetcc to fill `cache`; returns the plain artifacts.
fn plain_then_warm(p: &Project, cache: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let want = p.plain_artifacts();
    p.build_ok(&Build::jetcc(cache));
    p.clean();
    want
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    walk(dir, &mut |p| {
        if p.extension().is_none() {
            v.push(p.to_path_buf())
        }
    });
    v
}

fn damage_blobs_then_build(damage: fn(&Path)) {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = plain_then_warm(&p, &cache);
    let blobs = files_under(&cache.join("cas"));
    assert!(!blobs.is_empty());
    for b in &blobs {
        damage(b);
    }
    let built = p.build_ok(&Build::jetcc(&cache));
    assert_same_artifacts(&want, &artifacts(&p.target()), "build over a damaged cache");
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let s = stats(&cache);
    // Every unit, the build script's run, and (the run compiling again) its C compile.
    assert_eq!(
        s["errors"][ErrorKind::CorruptEntry.name()],
        FIXTURE_COLD_WRITES,
        "{s}"
    );
    // The damaged entries were replaced: the next build hits again.
    p.clean();
    let again = p.build(&Build::jetcc(&cache));
    assert!(again.ok());
    assert_eq!(
        again.outcome("leaf"),
        Some(Outcome::Hit),
        "{:?}",
        again.outcomes()
    );
    assert_same_artifacts(&want, &artifacts(&p.target()), "build after repair");
}

#[test]
fn corrupt_blobs_are_misses_not_bad_artifacts() {
    damage_blobs_then_build(|b| {
        let mut bytes = fs::read(b).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x55;
        fs::write(b, bytes).unwrap();
    });
}

#[test]
fn truncated_blobs_are_misses_not_bad_artifacts() {
    damage_blobs_then_build(|b| {
        let len = fs::metadata(b).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(b)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
    });
}

#[test]
fn garbage_entries_and_manifests_are_misses() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = plain_then_warm(&p, &cache);
    for f in files_under(&cache.join("ac"))
        .iter()
        .chain(&files_under(&cache.join("mf")))
    {
        fs::write(f, b"\xc1 not msgpack").unwrap();
    }
    p.build_ok(&Build::jetcc(&cache));
    assert_same_artifacts(&want, &artifacts(&p.target()), "build over garbage entries");
}

#[test]
fn a_small_cache_stays_within_its_size() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = p.plain_artifacts();
    let limit: u64 = 64 * 1024;
    for round in 0..3 {
        p.clean();
        p.build_ok(&Build::jetcc(&cache).env("JETCC_CACHE_SIZE", &limit.to_string()));
        assert_same_artifacts(&want, &artifacts(&p.target()), "small cache");
        let on_disk: u64 = ["cas", "ac", "mf", "units"]
            .iter()
            .flat_map(|k| files_under(&cache.join(k)))
            .map(|f| fs::metadata(f).unwrap().len())
            .sum();
        assert!(
            on_disk <= limit,
            "round {round}: {on_disk} bytes on disk > {limit}"
        );
    }
    let s = stats(&cache);
    assert!(s["cache_size"].as_u64().unwrap() <= limit);
    assert_eq!(s["errors"], serde_json::json!({}));
}

#[test]
fn a_read_only_cache_dir_still_builds_and_hits() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = plain_then_warm(&p, &cache);
    // A real read-only file system (root ignores permission bits): a bind mount remounted
    // read-only in a private mount namespace around the build.
    let c = cache.display();
    let mount = format!("mount --bind \"{c}\" \"{c}\" && mount -o remount,ro,bind \"{c}\"");
    let wrapper = cargo_in_mount_namespace(&p, "ro-cargo", &mount);
    let built = p.build_ok(&Build {
        cargo: Some(wrapper),
        ..Build::jetcc(&cache)
    });
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "read-only cache");

    // And a cache dir that cannot even be created: plain rustc, counted nowhere, build fine.
    p.clean();
    let blocker = p.dir.parent().unwrap().join("not-a-dir");
    fs::write(&blocker, b"").unwrap();
    p.build_ok(&Build::jetcc(&blocker.join("cache")));
    assert_same_artifacts(&want, &artifacts(&p.target()), "uncreatable cache dir");
}

/// A script that runs cargo after `mount` (shell commands) in a private mount namespace, so
/// the mounts exist for that build only.
fn cargo_in_mount_namespace(p: &Project, name: &str, mount: &str) -> std::path::PathBuf {
    let wrapper = p.dir.parent().unwrap().join(name);
    let script =
        format!("#!/bin/sh\nexec unshare -m sh -c '{mount} && exec cargo \"$@\"' sh \"$@\"\n");
    fs::write(&wrapper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[test]
fn a_full_disk_never_fails_a_build() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = p.plain_artifacts();
    // 64 KiB of disk: the first blobs fit, the rest hit ENOSPC mid-write.
    fs::create_dir_all(&cache).unwrap();
    let mount = format!("mount -t tmpfs -o size=64k tmpfs \"{}\"", cache.display());
    let cargo = cargo_in_mount_namespace(&p, "tmpfs-cargo", &mount);
    for round in ["cold", "again"] {
        p.clean();
        let built = p.build_ok(&Build {
            cargo: Some(cargo.clone()),
            ..Build::jetcc(&cache)
        });
        assert_same_artifacts(&want, &artifacts(&p.target()), round);
        assert!(!built.outcomes().is_empty(), "{round}: jetcc was not used");
    }
}

#[test]
fn eight_concurrent_builds_share_one_cache() {
    let p = Project::fixture("fixture");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    let want = p.plain_artifacts();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let dir = p.dir.clone();
            let b = Build::jetcc(&cache).env(
                "CARGO_TARGET_DIR",
                &tmp.join(format!("t{i}")).to_string_lossy(),
            );
            std::thread::spawn(move || build_in(&dir, &b))
        })
        .collect();
    let results: Vec<Built> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, r) in results.iter().enumerate() {
        assert!(r.ok(), "build {i}: {}", r.stderr());
        // leaf and mid do not depend on the target dir: byte-identical to the plain build.
        let got = artifacts(&tmp.join(format!("t{i}")));
        for name in want
            .keys()
            .filter(|k| k.contains("libleaf") || k.contains("libmid"))
        {
            assert_eq!(got.get(name), want.get(name), "build {i}: {name}");
        }
        let run = std::process::Command::new(tmp.join(format!("t{i}/debug/app")))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&run.stdout).starts_with("answer=42 mid=84"));
    }
    let s = stats(&cache);
    let outcomes: usize = results
        .iter()
        .map(|r| r.outcomes().values().map(Vec::len).sum::<usize>())
        .sum();
    assert_eq!(outcomes, 56, "7 units × 8 builds");
    assert_eq!(
        s["hits"].as_u64().unwrap() + s["misses"].as_u64().unwrap(),
        56,
        "{s}"
    );
    assert_eq!(s["errors"], serde_json::json!({}), "{s}");
    // No corrupt entry: a ninth build in the first target dir hits and matches.
    let t0 = tmp.join("t0");
    let _ = fs::remove_dir_all(&t0);
    let ninth = p.build(&Build::jetcc(&cache).env("CARGO_TARGET_DIR", &t0.to_string_lossy()));
    assert!(ninth.ok());
    ninth.assert_each(FIXTURE_UNITS, Outcome::Hit);
}

#[test]
fn a_malformed_config_is_named_and_the_build_runs_plain() {
    let p = Project::fixture("fixture");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    let config = tmp.join("bad-config.toml");
    fs::write(&config, "[cache.disk]\nsize = \"lots\"\n").unwrap();
    let built = p.build_ok(&Build::jetcc(&cache).env("JETCC_CONFIG", &config.to_string_lossy()));
    let err = built.stderr();
    assert!(
        err.contains("cache.disk.size") && err.contains("lots"),
        "{err}"
    );
    assert!(built.outcomes().is_empty());

    fs::write(&config, "[cache.disk\n").unwrap();
    p.clean();
    let built = p.build_ok(&Build::jetcc(&cache).env("JETCC_CONFIG", &config.to_string_lossy()));
    assert!(
        built.stderr().contains("bad-config.toml"),
        "{}",
        built.stderr()
    );
}

#[test]
fn jetcc_disable_is_a_pure_pass_through() {
    let p = Project::fixture("fixture");
    let cache = p.dir.parent().unwrap().join("cache");
    let built = p.build_ok(&Build::jetcc(&cache).env("JETCC_DISABLE", "1"));
    assert!(built.outcomes().is_empty());
    assert!(
        !cache.exists(),
        "JETCC_DISABLE=1 must not touch the cache dir"
    );
}
