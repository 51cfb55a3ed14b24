//! C/C++ compiles through jetcc's compiler shims: real cargo, cc-rs, cmake, make and gcc on
//! `tests/fixture-native` (its `cc-header` package compiles `csrc/add.c` with a header
//! through cc-rs and prints the sum from a binary; `cmake-lib` builds `csrc/mul.c` with cmake
//! and make, which pass `-MD -MT -MF`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::{cargo_command, jetcc, skip_or_fail, stats, walk, Build, Built, Outcome, Project};

const PACKAGES: [&str; 4] = ["-p", "cc-header", "-p", "cmake-lib"];

fn build(b: Build) -> Build {
    PACKAGES.iter().fold(b, |b, a| b.arg(a))
}

/// The native outputs the build scripts left: objects, archives and make dep files under
/// each `OUT_DIR`, by path relative to `target/debug/build`.
fn native_outputs(target: &Path) -> BTreeMap<String, Vec<u8>> {
    let root = target.join("debug/build");
    let mut out = BTreeMap::new();
    walk(&root, &mut |p| {
        let name = p.to_string_lossy();
        if [".o", ".a", ".o.d"].iter().any(|x| name.ends_with(x)) {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, std::fs::read(p).unwrap());
        }
    });
    out
}

fn run_app(p: &Project) -> String {
    let out = Command::new(p.target().join("debug/cc-header"))
        .output()
        .expect("run the cc-header binary");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `(source file name, outcome)` of every C compile jetcc served in a build, from its log.
fn c_outcomes(built: &Built) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for (src, outcomes) in built.c_outcomes() {
        let name = src.rsplit('/').next().unwrap_or(&src).to_owned();
        for o in outcomes {
            let o = match o {
                Outcome::Hit => "hit",
                Outcome::Miss => "miss",
            };
            all.push((name.clone(), o.to_owned()));
        }
    }
    all
}

fn c_stat(cache: &Path, what: &str) -> u64 {
    stats(cache)["c_compiles"][what].as_u64().unwrap_or(0)
}

#[test]
fn c_compiles_hit_when_a_script_reruns_and_a_header_change_misses() {
    let cmake = Command::new("cmake").arg("--version").output();
    if !cmake.is_ok_and(|o| o.status.success()) {
        skip_or_fail(
            "c_compiles_hit_when_a_script_reruns_and_a_header_change_misses",
            "cmake is not installed (pip install cmake)",
        );
        return;
    }
    let p = Project::fixture("fixture-native");
    p.build_ok(&build(Build::plain()));
    let plain = native_outputs(&p.target());
    let plain_line = run_app(&p);
    assert_eq!(plain_line, "add=5");
    assert!(
        plain.keys().any(|k| k.ends_with("-add.o")) && plain.keys().any(|k| k.ends_with("mul.c.o")),
        "{:?}",
        plain.keys()
    );
    p.clean();

    // Cold through jetcc: the scripts run for real, their compiles go through the shims.
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path();
    let cold = p.build_ok(&build(Build::jetcc(cache)));
    let outcomes = c_outcomes(&cold);
    for src in ["add.c", "mul.c"] {
        assert!(
            outcomes.contains(&(src.to_owned(), "miss".to_owned())),
            "{src} did not reach jetcc: {outcomes:?}"
        );
    }
    assert!(c_stat(cache, "stored") >= 2);
    // cc-rs's and cmake's probes (`--version`, `-E`) passed through, counted by reason.
    let pass = &stats(cache)["c_compiles"]["pass_through"];
    assert!(pass["info"].as_u64().unwrap_or(0) > 0, "{pass}");
    assert!(pass["preprocess"].as_u64().unwrap_or(0) > 0, "{pass}");
    assert_eq!(
        native_outputs(&p.target()),
        plain,
        "cold build through the shims"
    );
    assert_eq!(run_app(&p), plain_line);

    // Rerun both scripts with identical C inputs: cc-header's declared variable changes, and
    // cmake-lib's CMakeLists.txt gains a comment (with its OUT_DIR cleaned, so make compiles
    // again). The runs miss; their C compiles hit.
    let cmake_lists = p.read("cmake-lib/CMakeLists.txt");
    p.write(
        "cmake-lib/CMakeLists.txt",
        &format!("{cmake_lists}# a comment\n"),
    );
    let clean = cargo_command(&p.dir)
        .args(["clean", "-p", "cmake-lib"])
        .output()
        .unwrap();
    assert!(clean.status.success());
    let hits_before = c_stat(cache, "hits");
    let runs_missed = stats(cache)["build_script_runs"]["misses"]
        .as_u64()
        .unwrap();
    let warm = p.build_ok(&build(Build::jetcc(cache).env("CC_HEADER_SALT", "1")));
    let outcomes = c_outcomes(&warm);
    for src in ["add.c", "mul.c"] {
        assert!(
            outcomes.contains(&(src.to_owned(), "hit".to_owned())),
            "{src}: {outcomes:?}"
        );
    }
    assert!(!outcomes.iter().any(|(s, o)| s == "add.c" && o == "miss"));
    assert!(c_stat(cache, "hits") >= hits_before + 2);
    assert!(
        stats(cache)["build_script_runs"]["misses"]
            .as_u64()
            .unwrap()
            >= runs_missed + 2
    );
    assert_eq!(native_outputs(&p.target()), plain, "C hits");
    assert_eq!(run_app(&p), plain_line);

    // The header's #define changes: the compile misses, and the binary says so.
    let header = p.read("cc-header/csrc/add.h");
    p.write(
        "cc-header/csrc/add.h",
        &header.replace("ADD_BIAS 0", "ADD_BIAS 10"),
    );
    let mutated = p.build_ok(&build(Build::jetcc(cache).env("CC_HEADER_SALT", "1")));
    let outcomes = c_outcomes(&mutated);
    assert!(
        outcomes.contains(&("add.c".to_owned(), "miss".to_owned())),
        "{outcomes:?}"
    );
    assert!(!outcomes.contains(&("add.c".to_owned(), "hit".to_owned())));
    assert_eq!(run_app(&p), "add=15");
    // `--explain` names the header that changed, on the C compile's own line.
    let out = jetcc(cache).args(["--explain", "100"]).output().unwrap();
    let explained = String::from_utf8_lossy(&out.stdout);
    assert!(
        explained
            .lines()
            .any(|l| l.contains("add.c") && l.contains("add.h") && l.contains("changed")),
        "{explained}"
    );

    // And back: the old object is still right for the old header (a hit, or the whole run's),
    // never the new one.
    p.write("cc-header/csrc/add.h", &header);
    p.build_ok(&build(Build::jetcc(cache).env("CC_HEADER_SALT", "2")));
    assert_eq!(run_app(&p), plain_line);
    assert_eq!(
        native_outputs(&p.target()),
        plain,
        "back to the first header"
    );

    // The shims do not change a run's key: after `cargo clean -p cc-header`, the run stored
    // with CC_HEADER_SALT=1 and this header is a hit, and no C compile happens at all.
    let clean = cargo_command(&p.dir)
        .args(["clean", "-p", "cc-header"])
        .output()
        .unwrap();
    assert!(clean.status.success());
    let runs_hit = stats(cache)["build_script_runs"]["hits"].as_u64().unwrap();
    let again = p.build_ok(&build(Build::jetcc(cache).env("CC_HEADER_SALT", "1")));
    assert!(stats(cache)["build_script_runs"]["hits"].as_u64().unwrap() > runs_hit);
    assert!(
        !c_outcomes(&again).iter().any(|(s, _)| s == "add.c"),
        "{:?}",
        c_outcomes(&again)
    );
    assert_eq!(run_app(&p), plain_line);
    assert_eq!(native_outputs(&p.target()), plain, "a run hit");
}

/// jetcc called as `cc` through a shim dir, outside cargo: what a build script's compile sees.
struct Shim {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Shim {
    fn new() -> Shim {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("shims")).unwrap();
        std::os::unix::fs::symlink(jetcc_e2e::jetcc_bin(), dir.path().join("shims/cc")).unwrap();
        Shim {
            dir,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn cc(&self, path: &str, args: &str) -> std::process::Output {
        self.cc_with(path, args, self.cache.path(), &[])
    }

    fn cc_with(
        &self,
        path: &str,
        args: &str,
        cache: &Path,
        env: &[(&str, &Path)],
    ) -> std::process::Output {
        let shims = self.dir.path().join("shims");
        let mut cmd = Command::new("cc");
        jetcc_e2e::scrub_env(&mut cmd);
        cmd.current_dir(self.dir.path())
            .args(args.split_whitespace())
            .env("PATH", format!("{}:{path}", shims.display()))
            .env("JETCC_SHIM_DIR", &shims)
            .env("JETCC_DIR", cache)
            .envs(env.iter().copied());
        cmd.output().unwrap()
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn stat(&self, what: &str) -> serde_json::Value {
        stats(self.cache.path())["c_compiles"][what].clone()
    }
}

#[test]
fn c_compiles_through_a_shim_hit_pass_probes_through_and_refuse_the_clock() {
    let s = Shim::new();
    let path = std::env::var("PATH").unwrap();
    s.write("a.h", "#define A 7\n");
    s.write("a.c", "#include \"a.h\"\nint a(void) { return A; }\n");
    let compile = "-O1 -g -MD -MF deps/a.d -c a.c -o obj/a.o";
    std::fs::create_dir(s.dir.path().join("obj")).unwrap();
    std::fs::create_dir(s.dir.path().join("deps")).unwrap();
    assert!(s.cc(&path, compile).status.success());
    let object = std::fs::read(s.dir.path().join("obj/a.o")).unwrap();
    let deps = std::fs::read_to_string(s.dir.path().join("deps/a.d")).unwrap();
    assert!(deps.starts_with("obj/a.o: a.c"), "{deps}");
    std::fs::remove_file(s.dir.path().join("obj/a.o")).unwrap();
    std::fs::remove_file(s.dir.path().join("deps/a.d")).unwrap();
    assert!(s.cc(&path, compile).status.success());
    assert_eq!(s.stat("hits"), 1);
    assert_eq!(std::fs::read(s.dir.path().join("obj/a.o")).unwrap(), object);
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("deps/a.d")).unwrap(),
        deps
    );

    // -MD alone: the dep file is named after the object, on a hit as on a miss.
    let md_only = "-O1 -MD -c a.c -o obj/b.o";
    assert!(s.cc(&path, md_only).status.success());
    let want = std::fs::read_to_string(s.dir.path().join("obj/b.d")).unwrap();
    assert!(want.starts_with("obj/b.o: a.c"), "{want}");
    std::fs::remove_file(s.dir.path().join("obj/b.d")).unwrap();
    assert!(s.cc(&path, md_only).status.success());
    assert_eq!(s.stat("hits"), 2);
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("obj/b.d")).unwrap(),
        want
    );

    // Probes run the real compiler, untouched.
    let version = s.cc(&path, "--version");
    assert!(version.status.success());
    assert!(!version.stdout.is_empty());
    assert_eq!(s.stat("pass_through")["info"], 1);

    // A header using the clock: compiled every time, never stored.
    s.write("a.h", "#define A 7\nstatic const char *when = __TIME__;\n");
    for _ in 0..2 {
        assert!(s.cc(&path, compile).status.success());
    }
    assert_eq!(s.stat("not_stored")["time-macros"], 2);
    assert_eq!(s.stat("hits"), 2);

    // No real compiler past the shims: a shell's "not found", never jetcc calling itself.
    let none = s.cc("/nonexistent", compile);
    assert_eq!(none.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&none.stderr).contains("command not found"));
}

#[test]
fn c_compiles_are_shared_through_an_object_store_tier() {
    let s = Shim::new();
    let path = std::env::var("PATH").unwrap();
    let tier = tempfile::tempdir().unwrap();
    let shared = [("JETCC_CACHE_PATH", tier.path())];
    s.write("a.h", "#define A 9\n");
    s.write("a.c", "#include \"a.h\"\nint a(void) { return A; }\n");
    let compile = "-O2 -g -c a.c -o a.o";
    assert!(s
        .cc_with(&path, compile, s.cache.path(), &shared)
        .status
        .success());
    let object = std::fs::read(s.dir.path().join("a.o")).unwrap();
    std::fs::remove_file(s.dir.path().join("a.o")).unwrap();
    // Another machine's empty local cache, the same shared tier: a hit from it, same bytes.
    let other = tempfile::tempdir().unwrap();
    assert!(s
        .cc_with(&path, compile, other.path(), &shared)
        .status
        .success());
    let st = stats(other.path());
    assert_eq!(st["c_compiles"]["hits"], 1, "{st}");
    assert_eq!(st["tiers"]["path"]["hits"], 1, "{st}");
    assert_eq!(std::fs::read(s.dir.path().join("a.o")).unwrap(), object);
    // The hit filled the local tier above it: the next one is local.
    std::fs::remove_file(s.dir.path().join("a.o")).unwrap();
    assert!(s
        .cc_with(&path, compile, other.path(), &shared)
        .status
        .success());
    assert_eq!(stats(other.path())["tiers"]["local"]["hits"], 1);
    assert_eq!(std::fs::read(s.dir.path().join("a.o")).unwrap(), object);
}

/// The farm env for a client that sends every compile it can (no local slots).
fn farm_env(nats: &Nats) -> Vec<(&'static str, String)> {
    vec![
        ("JETCC_NATS_URL", nats.url()),
        ("JETCC_DIST_LOCAL_SLOTS", "0".to_owned()),
    ]
}

#[test]
fn c_compiles_run_on_a_worker_with_the_same_compiler_and_no_other() {
    let s = Shim::new();
    let nats = Nats::start(&s.dir.path().join("nats"));
    let w = Worker::start(&nats.url(), &s.dir.path().join("worker"), 2);
    let path = std::env::var("PATH").unwrap();
    let url = nats.url();
    let farm = [
        ("JETCC_NATS_URL", Path::new(&url)),
        ("JETCC_DIST_LOCAL_SLOTS", Path::new("0")),
    ];
    std::fs::create_dir(s.dir.path().join("obj")).unwrap();
    s.write("a.h", "#include <stdio.h>\n#define A 7\n");
    s.write(
        "a.c",
        "#include \"a.h\"\nint a(void) { printf(\"%d\", A); return A; }\n",
    );
    // What plain gcc writes, the object and its dep file beside it.
    let compile = "-O1 -g -MD -c a.c -o obj/a.o";
    let plain = Command::new("cc")
        .current_dir(s.dir.path())
        .args(compile.split_whitespace())
        .status()
        .unwrap();
    assert!(plain.success());
    let want = std::fs::read(s.dir.path().join("obj/a.o")).unwrap();
    let want_deps = std::fs::read_to_string(s.dir.path().join("obj/a.d")).unwrap();
    std::fs::remove_file(s.dir.path().join("obj/a.o")).unwrap();
    std::fs::remove_file(s.dir.path().join("obj/a.d")).unwrap();

    let out = s.cc_with(&path, compile, s.cache.path(), &farm);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.stat("remote"), 1, "{}", stats(s.cache.path()));
    assert_eq!(w.wait_jobs_done(1), 1, "{}", w.log());
    assert_eq!(std::fs::read(s.dir.path().join("obj/a.o")).unwrap(), want);
    assert_eq!(
        std::fs::read_to_string(s.dir.path().join("obj/a.d")).unwrap(),
        want_deps
    );
    // Stored like a local compile: the next one hits.
    std::fs::remove_file(s.dir.path().join("obj/a.o")).unwrap();
    assert!(s
        .cc_with(&path, compile, s.cache.path(), &farm)
        .status
        .success());
    assert_eq!(s.stat("hits"), 1);
    assert_eq!(std::fs::read(s.dir.path().join("obj/a.o")).unwrap(), want);

    // A compiler no worker has (a wrapper script: other content, another identity) is
    // compiled here, and the object is still right.
    let other = s.dir.path().join("other-cc");
    std::fs::create_dir(&other).unwrap();
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v cc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::write(
        other.join("cc"),
        format!("#!/bin/sh\nexec {} \"$@\"\n", real.trim()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(other.join("cc"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = s.cc_with(
        &format!("{}:{path}", other.display()),
        "-O1 -g -c a.c -o obj/b.o",
        fresh.path(),
        &farm,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = stats(fresh.path());
    assert_eq!(st["c_compiles"]["remote"], 0, "{st}");
    assert_eq!(
        st["c_compiles"]["remote_skipped"]["farm-no-worker"], 1,
        "{st}"
    );
    assert_eq!(w.jobs_done(), 1, "{}", w.log());
}

#[test]
fn a_build_scripts_c_compiles_spread_over_the_farm_byte_identical() {
    let p = Project::fixture("fixture-native");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let w = Worker::start(&nats.url(), &root.join("worker"), 2);
    p.build_ok(&build(Build::plain()));
    let plain = native_outputs(&p.target());
    let plain_line = run_app(&p);
    p.clean();

    let cache = root.join("cache");
    let b = farm_env(&nats)
        .iter()
        .fold(build(Build::jetcc(&cache)), |b, (k, v)| b.env(k, v));
    p.build_ok(&b);
    let remote = stats(&cache)["c_compiles"]["remote"].as_u64().unwrap_or(0);
    // add.c through cc-rs, mul.c through cmake's make: both on the worker.
    assert!(remote >= 2, "{}\n{}", stats(&cache), w.log());
    assert_eq!(
        native_outputs(&p.target()),
        plain,
        "objects compiled on the farm"
    );
    assert_eq!(run_app(&p), plain_line);
}
