//! The client against hostile or odd local state: manifests naming a FIFO or a device, env
//! vars that are not UTF-8, and a forged but self-consistent cache entry caught by
//! `jetcc --verify`.

use std::path::{Path, PathBuf};

use jetcc_common::manifest::{Manifest, Source};
use jetcc_common::result::CacheEntry;
use jetcc_common::Digest;
use jetcc_e2e::*;

/// A `cargo` stand-in: a script that runs `prefix cargo "$@"` under `timeout`, which kills
/// the whole build (jetcc included) if it hangs, so a hang fails the test instead of stalling.
fn cargo_script(dir: &Path, prefix: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let script = dir.join(format!("cargo-{n}.sh"));
    std::fs::write(
        &script,
        format!("#!/bin/bash\nexec timeout -k 5 300 {prefix} '{cargo}' \"$@\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Every file under `cache/<kind>/`.
fn records(cache: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(&cache.join(kind), &mut |p| out.push(p.to_path_buf()));
    out.retain(|p| p.is_file() && !p.to_string_lossy().ends_with(".lock"));
    out
}

#[test]
fn a_manifest_naming_a_fifo_or_a_device_is_a_miss_not_a_hang() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let cache = root.join("cache");
    p.build_ok(&Build::jetcc(&cache));
    // A FIFO nobody writes to (opening it to read waits for a writer forever) and
    // /dev/zero (reading it never ends), each named first in every entry of half the
    // manifests: as a forged shared manifest or a source swapped for a FIFO would.
    let fifo = root.join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let manifests = records(&cache, "mf");
    assert!(manifests.len() >= FIXTURE_UNITS.len(), "{manifests:?}");
    for (i, path) in manifests.iter().enumerate() {
        let mut m = Manifest::decode(&std::fs::read(path).unwrap());
        assert!(!m.entries.is_empty(), "{}", path.display());
        let bad = match i % 2 {
            0 => fifo.to_string_lossy().into_owned(),
            _ => "/dev/zero".to_owned(),
        };
        for e in &mut m.entries {
            e.sources.insert(
                0,
                Source {
                    path: bad.clone(),
                    digest: Digest::of_bytes(b""),
                    stamp: None,
                },
            );
        }
        std::fs::write(path, m.encode()).unwrap();
    }
    p.clean();
    let mut build = Build::jetcc(&cache);
    build.cargo = Some(cargo_script(&root, ""));
    let built = p.build(&build);
    assert!(
        built.ok(),
        "the build hung or failed ({:?}): {}",
        built.output.status,
        built.stderr()
    );
    // Nothing matched: every unit compiled, as plain rustc would have.
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "after FIFO manifests");
}

#[test]
fn env_vars_that_are_not_utf8_never_break_a_build() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let cache = root.join("cache");
    // A value and a name that are not UTF-8, in every process of the build: the wrapper,
    // the build-script launcher and the C compiler shim its script runs.
    let odd = cargo_script(
        &root,
        "env \"$(printf 'FOO=\\xff')\" \"$(printf '\\xfeBAR=1')\"",
    );
    let mut build = Build::jetcc(&cache);
    build.cargo = Some(odd.clone());
    let built = p.build(&build);
    assert!(built.ok(), "{}", built.stderr());
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let s = stats(&cache);
    assert_eq!(s["c_compiles"]["misses"], FIXTURE_C_COMPILES, "{s}");
    assert_eq!(s["build_script_runs"]["stored"], FIXTURE_RUNS, "{s}");
    p.clean();
    let built = p.build(&build);
    assert!(built.ok(), "{}", built.stderr());
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_eq!(stats(&cache)["build_script_runs"]["hits"], FIXTURE_RUNS);
    assert_same_artifacts(&want, &artifacts(&p.target()), "hits with odd env");

    // A keyed variable (cargo passes CARGO_* on to rustc) that is not UTF-8 cannot be keyed:
    // jetcc steps aside and rustc runs plainly.
    p.clean();
    build.cargo = Some(cargo_script(
        &root,
        "env \"$(printf 'CARGO_JETCC_ODD=\\xff')\"",
    ));
    let built = p.build(&build);
    assert!(built.ok(), "{}", built.stderr());
    let s = stats(&cache);
    assert!(
        s["errors"]["env-not-utf8"].as_u64().unwrap_or(0) >= FIXTURE_UNITS.len() as u64,
        "{s}"
    );
    assert_same_artifacts(&want, &artifacts(&p.target()), "keyed odd env");
}

#[test]
fn verify_flags_a_forged_entry_and_keeps_the_fresh_artifact() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let cache = root.join("cache");
    p.build_ok(&Build::jetcc(&cache));
    // Forge leaf's entry: its rlib now names mid's rlib blob (real bytes, with their real
    // digest and size), so every check of the blob against the entry passes.
    let entries: Vec<(PathBuf, CacheEntry)> = records(&cache, "ac")
        .into_iter()
        .filter_map(|path| {
            Some((
                path.clone(),
                CacheEntry::decode(&std::fs::read(&path).ok()?)?,
            ))
        })
        .collect();
    let rlib = |prefix: &str| {
        entries
            .iter()
            .find_map(|(path, e)| {
                let out = e
                    .outputs
                    .iter()
                    .find(|o| o.name.starts_with(prefix) && o.name.ends_with(".rlib"))?;
                Some((path.clone(), e.clone(), out.clone()))
            })
            .unwrap_or_else(|| panic!("no {prefix} entry"))
    };
    let (leaf_path, mut leaf, leaf_rlib) = rlib("libleaf-");
    let (_, _, mid_rlib) = rlib("libmid-");
    for o in &mut leaf.outputs {
        if o.name == leaf_rlib.name {
            (o.digest, o.size) = (mid_rlib.digest, mid_rlib.size);
        }
    }
    std::fs::write(&leaf_path, leaf.encode()).unwrap();

    // `jetcc --verify cargo build`: every hit compiled again and compared.
    p.clean();
    let jetcc = jetcc_bin();
    let mut build = Build::jetcc(&cache);
    build.cargo = Some(cargo_script(
        &root,
        &format!("'{}' --verify", jetcc.display()),
    ));
    let built = p.build(&build);
    assert!(built.ok(), "{}", built.stderr());
    let stderr = built.stderr();
    let warning = stderr
        .lines()
        .find(|l| l.contains("verify:"))
        .unwrap_or_else(|| panic!("no verify warning: {stderr}"));
    assert!(
        warning.contains("leaf") && warning.contains(&leaf_rlib.name),
        "{warning}"
    );
    let s = stats(&cache);
    assert_eq!(s["verified"]["mismatch"], 1, "{s}");
    assert_eq!(s["verified"]["same"], FIXTURE_UNITS.len() - 1, "{s}");
    assert_same_artifacts(&want, &artifacts(&p.target()), "verified build");

    // The forged entry is gone: without verify, the next build gets the fresh bytes.
    p.clean();
    let built = p.build_ok(&Build::jetcc(&cache));
    assert!(!built.stderr().contains("verify:"), "{}", built.stderr());
    assert_same_artifacts(&want, &artifacts(&p.target()), "after the verified build");
}
