//! Portable paths, the default where results are shared: two "machines" on one host, each
//! with its own `HOME`, `CARGO_HOME` (the registry copied in), checkout path and target dir,
//! share a tier with no path setting at all. The second one hits what the first one built,
//! gets the same bytes, and no artifact of either names a local path.

use std::path::{Path, PathBuf};

use jetcc_e2e::servers::{Nats, Worker, S3, S3_BUCKET, S3_KEY_ID, S3_SECRET};
use jetcc_e2e::*;

/// One machine's paths; each differs from the other machine's, in length too.
struct Machine {
    root: PathBuf,
    home: PathBuf,
    checkout: PathBuf,
    target: PathBuf,
    cache: PathBuf,
}

impl Machine {
    fn new(root: &Path, name: &str, fixture: &str) -> Machine {
        let root = root.join(name);
        let home = root.join("home");
        let cargo_home = home.join(".cargo");
        // The registry as a CI agent or a laptop has it: downloaded crates and the index
        // (shared read-only: builds run offline), sources unpacked by this machine's cargo.
        std::fs::create_dir_all(cargo_home.join("registry")).unwrap();
        for part in ["index", "cache"] {
            std::os::unix::fs::symlink(
                runner_cargo_home().join("registry").join(part),
                cargo_home.join("registry").join(part),
            )
            .unwrap();
        }
        let checkout = root.join(format!("work-of-{name}")).join(fixture);
        copy_fixture(fixture, &checkout);
        Machine {
            target: root.join(format!("{name}-target")),
            cache: root.join("jetcc-cache"),
            checkout,
            home,
            root,
        }
    }

    /// Another worktree of the project on this machine: the same `HOME`, `CARGO_HOME` and
    /// cache, another checkout path and target dir.
    fn worktree(&self, name: &str, fixture: &str) -> Machine {
        let dir = self.root.join("worktrees").join(name);
        let checkout = dir.join(fixture);
        copy_fixture(fixture, &checkout);
        Machine {
            root: self.root.clone(),
            home: self.home.clone(),
            cache: self.cache.clone(),
            target: dir.join("target"),
            checkout,
        }
    }

    /// A build through jetcc with nothing about paths configured, sharing through `shared`.
    fn build(&self, shared: &[(&str, String)]) -> Built {
        let mut b = Build::jetcc(&self.cache)
            .default_paths()
            .env("HOME", &self.home.to_string_lossy())
            .env("CARGO_HOME", &self.home.join(".cargo").to_string_lossy())
            .env("RUSTUP_HOME", &runner_rustup_home().to_string_lossy())
            .env("CARGO_TARGET_DIR", &self.target.to_string_lossy())
            .env("CARGO_NET_OFFLINE", "true");
        for (k, v) in shared {
            b = b.env(k, v);
        }
        let built = build_in(&self.checkout, &b);
        assert!(built.ok(), "{}", built.stderr());
        built
    }

    /// No artifact names this machine's root or `other`'s: every path in them is mapped.
    fn assert_no_local_paths(&self, other: &Machine) {
        for (name, bytes) in artifacts(&self.target) {
            for root in [&self.root, &other.root] {
                let needle = root.to_string_lossy();
                if let Some(at) = bytes
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    let around = &bytes[at.saturating_sub(80)..(at + 160).min(bytes.len())];
                    panic!(
                        "{name} names {needle}: {:?}",
                        String::from_utf8_lossy(around)
                    );
                }
            }
        }
    }
}

fn runner_home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).expect("HOME")
}

fn runner_cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| runner_home().join(".cargo"))
}

fn runner_rustup_home() -> PathBuf {
    std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| runner_home().join(".rustup"))
}

fn copy_fixture(name: &str, to: &Path) {
    let p = Project::fixture(name);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&p.dir)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Hits over all cacheable units of a build, and the units that missed.
fn hit_share(built: &Built) -> (f64, Vec<String>) {
    let outcomes = built.outcomes();
    let all: Vec<(&String, &Outcome)> = outcomes
        .iter()
        .flat_map(|(name, o)| o.iter().map(move |o| (name, o)))
        .collect();
    let missed: Vec<String> = all
        .iter()
        .filter(|(_, o)| **o == Outcome::Miss)
        .map(|(n, _)| (*n).clone())
        .collect();
    let share = (all.len() - missed.len()) as f64 / all.len().max(1) as f64;
    (share, missed)
}

#[test]
fn a_second_machine_hits_the_fixture_through_jetstream_with_no_path_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start(&tmp.path().join("nats"));
    let shared = [("JETCC_NATS_URL", nats.url())];
    let a = Machine::new(tmp.path(), "ci-agent-7", "fixture");
    let b = Machine::new(tmp.path(), "laptop", "fixture");

    let first = a.build(&shared);
    first.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let second = b.build(&shared);
    let (share, missed) = hit_share(&second);
    assert!(share >= 0.95, "{share}: missed {missed:?}\n{}", second.log);
    second.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&artifacts(&a.target), &artifacts(&b.target), "machine b");
    b.assert_no_local_paths(&a);
    a.assert_no_local_paths(&b);
    // A client in the other mode would never hit these entries: --check says so.
    let warned = |paths: Option<&str>| {
        let mut cmd = jetcc(&b.cache);
        cmd.arg("--check").env("JETCC_NATS_URL", nats.url());
        match paths {
            Some(p) => cmd.env("JETCC_PATHS", p),
            None => cmd.env_remove("JETCC_PATHS"),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}");
        text.lines()
            .any(|l| l.starts_with("warn  jetstream") && l.contains("paths = \"portable\""))
    };
    assert!(warned(Some("exact")), "an exact client is warned");
    assert!(!warned(None), "a portable client is not");
    // The binary runs, built from what the other machine compiled.
    let app = b.target.join("debug/app");
    let out = std::process::Command::new(&app).output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_second_machine_hits_registry_crates_through_s3_and_panics_name_mapped_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let s3 = S3::start(&tmp.path().join("s3"));
    let config = tmp.path().join("team.toml");
    std::fs::write(
        &config,
        format!(
            "[cache.s3]\nbucket = \"{S3_BUCKET}\"\nendpoint = \"{}\"\nregion = \"auto\"\n\
             use_ssl = false\n",
            s3.endpoint()
        ),
    )
    .unwrap();
    let shared = [
        ("JETCC_CONFIG", config.to_string_lossy().into_owned()),
        ("AWS_ACCESS_KEY_ID", S3_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", S3_SECRET.to_owned()),
    ];
    let a = Machine::new(tmp.path(), "jenkins-workspace-job@2", "fixture-registry");
    let b = Machine::new(tmp.path(), "alice", "fixture-registry");
    // A panic in the registry fixture's own code: its message names the source file.
    for m in [&a, &b] {
        let main = m.checkout.join("src/main.rs");
        let src = std::fs::read_to_string(&main).unwrap().replace(
            "fn main() {",
            "fn main() {\n    if std::env::var_os(\"PANIC\").is_some() { panic!(\"asked to\"); }",
        );
        std::fs::write(&main, src).unwrap();
    }

    a.build(&shared);
    let second = b.build(&shared);
    let (share, missed) = hit_share(&second);
    assert!(share >= 0.95, "{share}: missed {missed:?}\n{}", second.log);
    assert_same_artifacts(&artifacts(&a.target), &artifacts(&b.target), "machine b");
    b.assert_no_local_paths(&a);
    let out = jetcc(&b.cache)
        .arg("--check")
        .envs(shared.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn  s3") && l.contains("paths = \"portable\"")),
        "an exact client of a portable bucket is warned: {text}"
    );
    // Outputs name sources as cargo's trim-paths does: registry crates by registry id and
    // version, generated code under the build dir, workspace sources relative.
    let all: Vec<u8> = artifacts(&b.target).into_values().flatten().collect();
    for mapped in ["/cargo/registry/", "/cargo/build-dir/debug/build/serde"] {
        assert!(
            all.windows(mapped.len()).any(|w| w == mapped.as_bytes()),
            "no artifact names {mapped}"
        );
    }
    let out = std::process::Command::new(b.target.join("debug/regfix"))
        .env("PANIC", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("src/main.rs"), "{stderr}");
    assert!(!stderr.contains(&*tmp.path().to_string_lossy()), "{stderr}");
}

#[test]
fn farm_compiles_are_portable_too_and_equal_a_local_compile_on_another_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start(&tmp.path().join("nats"));
    let _w = Worker::start(&nats.url(), &tmp.path().join("worker"), 2);
    let a = Machine::new(tmp.path(), "farm-client", "fixture");
    let b = Machine::new(tmp.path(), "offline-laptop", "fixture");
    // Every unit that can go to the farm goes there.
    let farm = [
        ("JETCC_NATS_URL", nats.url()),
        ("JETCC_DIST_LOCAL_SLOTS", "0".to_owned()),
    ];
    a.build(&farm);
    assert!(
        stats(&a.cache)["remote_compiles"].as_u64().unwrap() > 0,
        "{}",
        stats(&a.cache)
    );
    // No tier at all on b: portable by choice, every unit compiled here.
    let second = b.build(&[("JETCC_PATHS", "portable".to_owned())]);
    second.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(
        &artifacts(&a.target),
        &artifacts(&b.target),
        "local vs farm",
    );
    a.assert_no_local_paths(&b);
}

#[test]
fn a_second_worktree_hits_the_local_cache_with_portable_paths_and_explain_names_exact_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Machine::new(tmp.path(), "dev", "fixture");
    let b = a.worktree("feature-x", "fixture");
    let portable = [("JETCC_PATHS", "portable".to_owned())];
    a.build(&portable);
    let second = b.build(&portable);
    second.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&artifacts(&a.target), &artifacts(&b.target), "worktree");

    // Exact paths: the other worktree's units miss, and --explain says which paths differ.
    let exact = [("JETCC_PATHS", "exact".to_owned())];
    std::fs::remove_dir_all(&b.target).unwrap();
    let built = b.build(&exact);
    assert_eq!(built.outcome("corelib"), Some(Outcome::Miss));
    let out = jetcc(&a.cache).args(["--explain", "50"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("corelib") && l.contains("feature-x"))
        .unwrap_or_else(|| panic!("no corelib miss explained: {text}"));
    assert!(line.contains("its key names local paths"), "{line}");
    assert!(line.contains("paths = \"portable\""), "{line}");
}

#[test]
fn a_crate_that_bakes_in_its_own_path_is_never_served_to_another_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Machine::new(tmp.path(), "dev", "fixture");
    let b = a.worktree("other", "fixture");
    // rustc remaps the paths it writes, not a string the code makes of one.
    for m in [&a, &b] {
        let lib = m.checkout.join("leaf/src/lib.rs");
        let src = std::fs::read_to_string(&lib).unwrap()
            + "pub const MANIFEST_DIR: &str = env!(\"CARGO_MANIFEST_DIR\");\n";
        std::fs::write(&lib, src).unwrap();
    }
    let portable = [("JETCC_PATHS", "portable".to_owned())];
    a.build(&portable);
    let second = b.build(&portable);
    assert_eq!(
        second.outcome("leaf"),
        Some(Outcome::Miss),
        "{:?}",
        second.outcomes()
    );
    let leaf = artifacts(&b.target)
        .into_iter()
        .find(|(name, _)| name.contains("libleaf") && name.ends_with(".rlib"))
        .expect("leaf's rlib")
        .1;
    let has = |dir: &Path| {
        let needle = dir.join("leaf").to_string_lossy().into_owned();
        leaf.windows(needle.len()).any(|w| w == needle.as_bytes())
    };
    assert!(has(&b.checkout), "b's leaf names b's manifest dir");
    assert!(!has(&a.checkout), "b's leaf does not name a's");
    // Each worktree keeps its own leaf: rebuilt from clean, both hit it.
    for m in [&a, &b] {
        std::fs::remove_dir_all(&m.target).unwrap();
        let again = m.build(&portable);
        assert_eq!(
            again.outcome("leaf"),
            Some(Outcome::Hit),
            "{:?}",
            again.outcomes()
        );
    }
    let out = jetcc(&a.cache).args(["--explain", "50"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("leaf") && l.contains("name another build's paths")),
        "{text}"
    );
    // The units that do not read it still hit.
    assert_eq!(second.outcome("mac"), Some(Outcome::Hit));
}
