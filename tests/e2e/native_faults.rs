//! Bad cache state never breaks a build script's run or a C compile: a full disk, corrupt
//! `OUT_DIR` archives, objects, entries and manifests, eight builds at once (issue 15's
//! "Faults"; the killed run is `build_scripts::a_run_killed_half_way_is_never_restored`).
//!
//! On `tests/fixture-native`'s `mixed` package: cc-rs compiling C with a header
//! (`cc-header`), generated code (`data-gen`) and the links metadata it feeds (`env-dep`), a
//! script that warns (`warns`), and zlib compiled from source by cc-rs (`libz-sys`, static:
//! an `OUT_DIR` of about 1 MB). What a user checks: the build passes, every `OUT_DIR` and
//! artifact is a plain build's, the binary prints the same; a damaged result is a miss, never
//! restored.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use jetcc_common::manifest::Manifest;
use jetcc_common::result::CacheEntry;
use jetcc_common::stats::{ErrorKind, StatKind};
use jetcc_e2e::*;

/// The runs `cargo build -p mixed` makes: its packages' and libc's.
const RUNS: &[&str] = &[
    "cc-header",
    "data-gen",
    "env-dep",
    "warns",
    "libz-sys",
    "libc",
];

/// The stored `OUT_DIR`'s name in a run's entry (`jetcc::buildscript`).
const ARCHIVE: &str = "jetcc-out-dir.tar";

fn mixed(b: Build) -> Build {
    b.arg("-p").arg("mixed")
}

/// A plain build's outputs, to compare with.
struct Plain {
    artifacts: BTreeMap<String, Vec<u8>>,
    out_dirs: OutDirs,
    /// What each run printed, as cargo kept it (`build/<pkg>-<h>/output` and `stderr`).
    printed: BTreeMap<String, Vec<u8>>,
    line: String,
}

/// Each run's stdout and stderr as cargo kept them, by path relative to the profile dir:
/// the directives cargo acted on.
fn printed(profile_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    for e in fs::read_dir(profile_dir.join("build")).unwrap().flatten() {
        for name in ["output", "stderr"] {
            if let Ok(bytes) = fs::read(e.path().join(name)) {
                let rel = format!("{}/{name}", e.file_name().to_string_lossy());
                all.insert(rel, bytes);
            }
        }
    }
    all
}

impl Plain {
    /// Builds `-p mixed` plainly into `target` (then removed).
    fn build(p: &Project, target: &Path) -> Plain {
        let _ = fs::remove_dir_all(target);
        p.build_ok(&mixed(Build::plain()).env("CARGO_TARGET_DIR", &target.to_string_lossy()));
        let plain = Plain {
            artifacts: artifacts(target),
            out_dirs: out_dirs(&target.join("debug")),
            printed: printed(&target.join("debug")),
            line: run_bin(&target.join("debug/mixed")),
        };
        assert!(
            plain.line.starts_with("add=5 table=alpha:1"),
            "{}",
            plain.line
        );
        fs::remove_dir_all(target).unwrap();
        plain
    }

    /// Asserts a jetcc build in `target` (at the plain build's path) left exactly the plain
    /// build's `OUT_DIR`s and artifacts, and nothing of jetcc's half-done work beside them.
    fn assert_same(&self, target: &Path, what: &str) {
        assert_same_artifacts(&self.artifacts, &artifacts(target), what);
        self.assert_same_out_dirs(&out_dirs(&target.join("debug")), what);
        let got = printed(&target.join("debug"));
        for (k, want) in &self.printed {
            assert_eq!(
                got.get(k).map(|b| String::from_utf8_lossy(b)),
                Some(String::from_utf8_lossy(want)),
                "{what}: what the run printed, {k}"
            );
        }
        assert_eq!(got.len(), self.printed.len(), "{what}: {:?}", got.keys());
        assert_eq!(run_bin(&target.join("debug/mixed")), self.line, "{what}");
        assert_no_leftovers(target, what);
    }

    fn assert_same_out_dirs(&self, got: &OutDirs, what: &str) {
        let want = &self.out_dirs;
        let differ: BTreeSet<&String> = want
            .keys()
            .chain(got.keys())
            .filter(|k| want.get(*k) != got.get(*k))
            .collect();
        assert!(
            differ.is_empty(),
            "{what}: OUT_DIRs differ from a plain build's: {differ:?}"
        );
    }
}

/// No archive being unpacked or swapped in is left in a script's build dir.
fn assert_no_leftovers(target: &Path, what: &str) {
    for e in fs::read_dir(target.join("debug/build")).unwrap().flatten() {
        for f in fs::read_dir(e.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            assert!(
                name != ARCHIVE && !name.contains(".jetcc-new") && !name.contains(".jetcc-old"),
                "{what}: left behind: {}",
                f.path().display()
            );
        }
    }
}

fn all_runs() -> BTreeSet<String> {
    RUNS.iter().map(|s| s.to_string()).collect()
}

/// The outcome (`hit`, `miss`) of every C compile jetcc served in a build, from its log.
fn c_outcomes(built: &Built) -> Vec<String> {
    built
        .log
        .lines()
        .filter(|l| l.contains("c_source="))
        .filter_map(|l| {
            let v = l.split("outcome=").nth(1)?.split_whitespace().next()?;
            Some(v.trim_matches('"').to_owned())
        })
        .collect()
}

fn log_count(built: &Built, what: &str) -> usize {
    built.log.lines().filter(|l| l.contains(what)).count()
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
}

/// A small tmpfs as the cache dir, in a mount namespace of its own that outlives each build
/// (its nsfs file is bind-mounted), so the second build finds what the first stored. cargo
/// runs in it through a wrapper script; the namespace is unmounted on drop.
struct SmallDisk {
    ns_dir: PathBuf,
    cache: PathBuf,
    cargo: PathBuf,
}

impl SmallDisk {
    fn mount(tmp: &Path, size: &str) -> SmallDisk {
        let ns_dir = tmp.join("ns");
        let cache = tmp.join("cache");
        fs::create_dir_all(&ns_dir).unwrap();
        fs::create_dir_all(&cache).unwrap();
        let (d, c) = (ns_dir.display(), cache.display());
        // A namespace file can only be bind-mounted on a private mount.
        sh(&format!(
            "mount --bind '{d}' '{d}' && mount --make-private '{d}' && touch '{d}/mnt' && \
             unshare --mount='{d}/mnt' mount -t tmpfs -o size={size} tmpfs '{c}'"
        ));
        let cargo = tmp.join("small-disk-cargo");
        // Entering a mount namespace moves to its root: go back to the project first.
        fs::write(
            &cargo,
            format!(
                "#!/bin/sh\nexec nsenter --mount='{d}/mnt' -- sh -c 'cd \"$0\" && exec cargo \"$@\"' \"$(pwd)\" \"$@\"\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&cargo, fs::Permissions::from_mode(0o755)).unwrap();
        SmallDisk {
            ns_dir,
            cache,
            cargo,
        }
    }

    fn build(&self) -> Build {
        Build {
            cargo: Some(self.cargo.clone()),
            ..Build::jetcc(&self.cache)
        }
    }

    /// Bytes used on the small disk.
    fn used(&self) -> u64 {
        let out = Command::new("nsenter")
            .arg(format!("--mount={}/mnt", self.ns_dir.display()))
            .args(["--", "df", "-B1", "--output=used"])
            .arg(&self.cache)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let d = self.ns_dir.display();
        let _ = Command::new("sh")
            .args(["-c", &format!("umount '{d}/mnt'; umount '{d}'")])
            .status();
    }
}

/// The cache on 768 KiB of tmpfs: libz-sys's `OUT_DIR` archive (nearly 1 MB) and most
/// rlibs never fit and hit ENOSPC mid-write; small archives and objects fit until the disk
/// is full. Cold, then again after clean: every build passes with a plain build's
/// `OUT_DIR`s and artifacts; what fit hits, the rest runs again.
#[test]
fn a_full_disk_never_breaks_a_run_or_a_c_compile() {
    if !is_root() {
        skip_or_fail(
            "a_full_disk_never_breaks_a_run_or_a_c_compile",
            "mounting a tmpfs needs root",
        );
        return;
    }
    let p = Project::fixture("fixture-native");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let want = Plain::build(&p, &p.target());
    let disk = SmallDisk::mount(&tmp, "768k");
    let b = mixed(disk.build());

    let cold = p.build_ok(&b);
    want.assert_same(&p.target(), "cold build on a full disk");
    assert_eq!(
        packages(&cold.run_outcomes(), Outcome::Miss),
        all_runs(),
        "{:?}",
        cold.run_outcomes()
    );
    let stored = log_count(&cold, "build script run stored");
    let unstored = log_count(&cold, "could not store the build script's run: cache-write");
    assert!(
        stored > 0 && unstored > 0,
        "some runs fit ({stored}), others hit ENOSPC ({unstored})"
    );
    // zlib's objects come late, on a disk mostly full: most (often all) hit ENOSPC.
    let c_stored = log_count(&cold, "C compile stored");
    let c_unstored = log_count(&cold, "could not store the C compile: cache-write");
    assert!(c_unstored > 0, "objects hit ENOSPC ({c_stored} stored)");
    let used = disk.used();
    eprintln!(
        "cold on the full disk: runs stored {stored}, not {unstored}; objects stored \
         {c_stored}, not {c_unstored}; {used} bytes used"
    );
    assert!(used > 700 * 1024, "the disk filled up: {used} bytes used");

    p.clean();
    let again = p.build_ok(&b);
    want.assert_same(&p.target(), "again after clean, on the full disk");
    let outcomes = again.run_outcomes();
    eprintln!("again on the full disk: {outcomes:?}");
    assert!(
        !packages(&outcomes, Outcome::Hit).is_empty(),
        "what fit hits: {outcomes:?}"
    );
    assert_eq!(
        outcomes.get("libz-sys").map(Vec::as_slice),
        Some(&[Outcome::Miss][..]),
        "libz-sys's archive never fits: {outcomes:?}"
    );
}

/// What the local cache holds for one run or C compile (found by the layout
/// `common::cache::disk` documents: `mf/`, `ac/`, `cas/`, two hex digits, the digest).
struct Stored {
    manifest: PathBuf,
    entry: PathBuf,
    blob: PathBuf,
}

/// The cache's runs (their output is the `OUT_DIR` archive) and C compiles (their output an
/// ELF relocatable object; rustc's are archives, metadata and executables), each with the manifest that names its entry, the entry, and its output's blob.
fn runs_and_c_compiles(cache: &Path) -> (Vec<Stored>, Vec<Stored>) {
    let under = |kind: &str, hex: &str| cache.join(kind).join(&hex[..2]).join(hex);
    let (mut runs, mut cs) = (Vec::new(), Vec::new());
    let mut manifests = Vec::new();
    walk(&cache.join("mf"), &mut |f| {
        if f.extension().is_none() {
            manifests.push(f.to_path_buf());
        }
    });
    manifests.sort();
    for mf in manifests {
        let m = Manifest::decode(&fs::read(&mf).unwrap());
        let [found] = m.entries.as_slice() else {
            panic!("{}: one entry per manifest after one build", mf.display());
        };
        let entry_path = under("ac", &found.key.hex());
        let entry = CacheEntry::decode(&fs::read(&entry_path).unwrap()).expect("an entry");
        let [out] = entry.outputs.as_slice() else {
            continue;
        };
        let stored = Stored {
            manifest: mf.clone(),
            entry: entry_path,
            blob: under("cas", &out.digest.hex()),
        };
        let head = fs::read(&stored.blob).unwrap();
        if out.name == ARCHIVE {
            runs.push(stored);
        } else if head.starts_with(b"\x7fELF") && head.get(16) == Some(&1) {
            cs.push(stored);
        }
    }
    (runs, cs)
}

/// A way to damage a file, by name.
type Damage = (&'static str, fn(&Path));

/// Ways a file goes bad: a flipped byte, cut in half, replaced by garbage.
const DAMAGES: [Damage; 3] = [
    ("flipped", flip),
    ("truncated", truncate),
    ("garbage", garbage),
];

fn flip(f: &Path) {
    let mut bytes = fs::read(f).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(f, bytes).unwrap();
}

fn truncate(f: &Path) {
    let len = fs::metadata(f).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(f)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
}

fn garbage(f: &Path) {
    fs::write(f, b"\xc1 not what jetcc wrote").unwrap();
}

/// After a cold build, the stored `OUT_DIR` archives and C objects are damaged (each run and
/// compile one of three ways), then the entries and manifests: each time the next build after
/// `cargo clean` runs every script and compiles every C source again, counts the damaged
/// blobs as corrupt, and leaves a plain build's `OUT_DIR`s and artifacts. Then every run hits.
#[test]
fn corrupt_archives_objects_entries_and_manifests_are_never_restored() {
    let p = Project::fixture("fixture-native");
    let cache = p.dir.parent().unwrap().join("cache");
    let want = Plain::build(&p, &p.target());
    let b = mixed(Build::jetcc(&cache));
    let cold = p.build_ok(&b);
    want.assert_same(&p.target(), "cold build");
    let c_compiles = c_outcomes(&cold).len();

    // The blobs: every OUT_DIR archive and every object.
    let (runs, cs) = runs_and_c_compiles(&cache);
    assert_eq!(runs.len(), RUNS.len(), "a stored run per package");
    assert_eq!(cs.len(), c_compiles, "a stored object per C compile");
    assert!(
        cs.len() >= 10,
        "cc-header's and zlib's objects: {}",
        cs.len()
    );
    // Two compiles may have made the same object: one blob, damaged once.
    let mut blobs = BTreeSet::new();
    for (i, s) in runs.iter().enumerate().chain(cs.iter().enumerate()) {
        if blobs.insert(s.blob.clone()) {
            (DAMAGES[i % DAMAGES.len()].1)(&s.blob);
        }
    }
    jetcc(&cache).arg("--zero-stats").output().unwrap();
    p.clean();
    let built = p.build_ok(&b);
    want.assert_same(&p.target(), "build over damaged archives and objects");
    assert_eq!(
        packages(&built.run_outcomes(), Outcome::Miss),
        all_runs(),
        "every damaged run ran again: {:?}",
        built.run_outcomes()
    );
    assert!(packages(&built.run_outcomes(), Outcome::Hit).is_empty());
    // A compile whose object another one (same bytes) stored afresh first may hit.
    let c = c_outcomes(&built);
    assert_eq!(c.len(), c_compiles, "{c:?}");
    let c_blobs: BTreeSet<&PathBuf> = cs.iter().map(|s| &s.blob).collect();
    assert!(
        c.iter().filter(|o| *o == "miss").count() >= c_blobs.len(),
        "every damaged object compiled again: {c:?}"
    );
    let s = stats(&cache);
    assert_eq!(
        s["errors"][ErrorKind::CorruptEntry.name()],
        blobs.len() as u64,
        "each damaged blob counted once: {s}"
    );

    // Entries and manifests (the build above stored them afresh): each run and compile gets
    // one of the six (entry or manifest) × (flipped, truncated, garbage).
    let (runs, cs) = runs_and_c_compiles(&cache);
    for (i, s) in runs.iter().enumerate().chain(cs.iter().enumerate()) {
        let file = if i % 2 == 0 { &s.entry } else { &s.manifest };
        let (how, damage) = DAMAGES[i / 2 % DAMAGES.len()];
        eprintln!("{how}: {}", file.display());
        damage(file);
    }
    p.clean();
    let built = p.build_ok(&b);
    want.assert_same(&p.target(), "build over damaged entries and manifests");
    assert_eq!(
        packages(&built.run_outcomes(), Outcome::Miss),
        all_runs(),
        "every damaged run ran again: {:?}",
        built.run_outcomes()
    );
    let c = c_outcomes(&built);
    assert_eq!(c.len(), c_compiles, "{c:?}");
    assert!(c.iter().all(|o| o == "miss"), "{c:?}");

    // What those builds stored is whole: every run hits, and no C compiles.
    p.clean();
    let warm = p.build_ok(&b);
    want.assert_same(&p.target(), "build after repair");
    assert_eq!(
        packages(&warm.run_outcomes(), Outcome::Hit),
        all_runs(),
        "{:?}",
        warm.run_outcomes()
    );
    assert!(packages(&warm.run_outcomes(), Outcome::Miss).is_empty());
    assert!(c_outcomes(&warm).is_empty());
}

/// Replaces every occurrence of `from` with `to` (the same length) in the `OUT_DIR`s, so
/// those of two target dirs compare byte for byte.
fn with_target_named(dirs: OutDirs, from: &str, to: &str) -> OutDirs {
    assert_eq!(from.len(), to.len());
    dirs.into_iter()
        .map(|(k, (kind, mode, bytes))| {
            let mut bytes = bytes;
            let mut at = 0;
            while let Some(i) = bytes[at..]
                .windows(from.len())
                .position(|w| w == from.as_bytes())
            {
                bytes[at + i..at + i + from.len()].copy_from_slice(to.as_bytes());
                at += i + from.len();
            }
            (k, (kind, mode, bytes))
        })
        .collect()
}

/// Eight builds at once, each in its own target dir, share one cache: with the rustc units
/// already cached (a build with the run cache off), they race on the same runs and C
/// compiles. All pass with a plain build's `OUT_DIR`s and print the same, nothing is
/// corrupt, and a ninth build after clean hits every run and compiles no C.
#[test]
fn eight_concurrent_builds_share_runs_and_c_compiles() {
    let p = Project::fixture("fixture-native");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    // Target dirs whose names have one length (t0…t7, tp), so that OUT_DIRs naming their
    // own path compare once the name is swapped.
    let target = |name: &str| tmp.join(name);
    let want = Plain::build(&p, &target("tp"));
    let tp = target("tp").to_string_lossy().into_owned();

    let warm = p.build_ok(
        &mixed(Build::jetcc(&cache))
            .env("JETCC_BUILD_SCRIPTS", "false")
            .env("CARGO_TARGET_DIR", &target("tw").to_string_lossy()),
    );
    assert!(warm.run_outcomes().is_empty(), "{:?}", warm.run_outcomes());
    jetcc(&cache).arg("--zero-stats").output().unwrap();

    let handles: Vec<_> = (0..8)
        .map(|i| {
            let dir = p.dir.clone();
            let b = mixed(Build::jetcc(&cache)).env(
                "CARGO_TARGET_DIR",
                &target(&format!("t{i}")).to_string_lossy(),
            );
            std::thread::spawn(move || build_in(&dir, &b))
        })
        .collect();
    let results: Vec<Built> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, r) in results.iter().enumerate() {
        assert!(r.ok(), "build {i}: {}", r.stderr());
        let t = target(&format!("t{i}"));
        let outcomes = r.run_outcomes();
        assert_eq!(
            outcomes.keys().cloned().collect::<BTreeSet<_>>(),
            all_runs(),
            "build {i}: each run through the launcher: {outcomes:?}"
        );
        assert!(outcomes.values().all(|v| v.len() == 1), "{outcomes:?}");
        let got = with_target_named(out_dirs(&t.join("debug")), &t.to_string_lossy(), &tp);
        want.assert_same_out_dirs(&got, &format!("build {i}"));
        assert_eq!(run_bin(&t.join("debug/mixed")), want.line, "build {i}");
        assert_no_leftovers(&t, &format!("build {i}"));
    }
    let s = stats(&cache);
    assert_eq!(s["errors"], serde_json::json!({}), "{s}");
    let runs = &s["build_script_runs"];
    assert_eq!(
        runs["hits"].as_u64().unwrap() + runs["misses"].as_u64().unwrap(),
        (8 * RUNS.len()) as u64,
        "{runs}"
    );

    // A ninth build in the first target dir, after clean: every run hits, no C compiles.
    let t0 = target("t0");
    fs::remove_dir_all(&t0).unwrap();
    let ninth =
        p.build_ok(&mixed(Build::jetcc(&cache)).env("CARGO_TARGET_DIR", &t0.to_string_lossy()));
    assert_eq!(
        packages(&ninth.run_outcomes(), Outcome::Hit),
        all_runs(),
        "{:?}",
        ninth.run_outcomes()
    );
    assert!(packages(&ninth.run_outcomes(), Outcome::Miss).is_empty());
    assert!(c_outcomes(&ninth).is_empty(), "{:?}", c_outcomes(&ninth));
    let got = with_target_named(out_dirs(&t0.join("debug")), &t0.to_string_lossy(), &tp);
    want.assert_same_out_dirs(&got, "the ninth build");
    assert_eq!(run_bin(&t0.join("debug/mixed")), want.line);
}
