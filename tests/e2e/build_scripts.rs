//! Build-script runs through jetcc's launcher, on `tests/fixture-native` (cc-rs with a
//! header, generated code, env, file and no rerun rules, links metadata, warnings, a failing
//! script, pkg-config, cmake, and crates.io's zstd-sys, libz-sys and tikv-jemalloc-sys).
//!
//! What a user checks: after `cargo clean` every run hits and every `OUT_DIR` and artifact is
//! what it was; a change that would change a run's result makes it run again (never a stale
//! `OUT_DIR`), while what cannot change it (jobs, unrelated variables, `touch`, another target
//! dir) still hits.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use jetcc_e2e::*;

/// The whole fixture: cold, then after `cargo clean` every run hits, `OUT_DIR`s are restored
/// exactly, artifacts equal a plain build's and the binary prints the same.
#[test]
fn runs_hit_after_clean_with_identical_out_dirs_and_artifacts() {
    let p = Project::fixture("fixture-native");
    let cache = p.dir.parent().unwrap().join("cache");
    p.build_ok(&Build::plain());
    let plain_artifacts = artifacts(&p.target());
    let plain_line = run_bin(&p.target().join("debug/app"));
    p.clean();

    let cold = p.build_ok(&Build::jetcc(&cache));
    let ran = packages(&cold.run_outcomes(), Outcome::Miss);
    for pkg in [
        "cc-header",
        "cmake-lib",
        "zstd-sys",
        "libz-sys",
        "tikv-jemalloc-sys",
        "no-decl",
    ] {
        assert!(ran.contains(pkg), "{pkg} ran through the launcher: {ran:?}");
    }
    assert!(packages(&cold.run_outcomes(), Outcome::Hit).is_empty());
    let debug = p.target().join("debug");
    let cold_trees = out_dirs(&debug);
    assert_eq!(run_bin(&debug.join("app")), plain_line);

    p.clean();
    jetcc(&cache).arg("--zero-stats").output().unwrap();
    let warm = p.build_ok(&Build::jetcc(&cache));
    let outcomes = warm.run_outcomes();
    assert_eq!(
        packages(&outcomes, Outcome::Miss),
        BTreeSet::new(),
        "{outcomes:?}"
    );
    assert_eq!(packages(&outcomes, Outcome::Hit), ran, "every run hit once");
    let runs = &stats(&cache)["build_script_runs"];
    assert_eq!(runs["hits"], ran.len() as u64, "{runs}");
    assert_eq!(runs["misses"], 0, "{runs}");

    let warm_trees = out_dirs(&debug);
    let differ: Vec<_> = cold_trees
        .keys()
        .chain(warm_trees.keys())
        .filter(|k| cold_trees.get(*k) != warm_trees.get(*k))
        .collect();
    assert!(differ.is_empty(), "restored OUT_DIRs differ: {differ:?}");
    assert_same_artifacts(&plain_artifacts, &artifacts(&p.target()), "warm build");
    assert_eq!(run_bin(&debug.join("app")), plain_line);
    assert!(
        warm.stderr()
            .contains("native fixture warning from build script"),
        "the replayed run's cargo:warning reaches the user: {}",
        warm.stderr()
    );
}

/// A file edit the matrix makes (and undoes).
enum Edit {
    Write(&'static str, &'static str),
    Touch(&'static str),
}

/// What the jetcc build must do.
enum Expect {
    /// Exactly these packages' runs miss; every other run hits.
    Miss(&'static [&'static str]),
    /// Every run misses (a change every run is keyed on).
    AllMiss,
    /// The build fails with this message, as the plain build does.
    Fails(&'static str),
}

struct Case {
    name: &'static str,
    edits: Vec<Edit>,
    env: Vec<(&'static str, String)>,
    args: Vec<&'static str>,
    expect: Expect,
}

fn case(name: &'static str, expect: Expect) -> Case {
    Case {
        name,
        edits: vec![],
        env: vec![],
        args: vec![],
        expect,
    }
}

impl Case {
    fn edit(mut self, e: Edit) -> Case {
        self.edits.push(e);
        self
    }
    fn env(mut self, k: &'static str, v: impl Into<String>) -> Case {
        self.env.push((k, v.into()));
        self
    }
    fn arg(mut self, a: &'static str) -> Case {
        self.args.push(a);
        self
    }
}

/// Writes an executable script.
fn script(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn which(program: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} is on PATH (scripts/test.sh installs it)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The mutation matrix on the fixture's `lite` binary (its own build scripts, no crates.io C
/// libraries): for each change, a plain build (incremental, its own target dir) and a jetcc
/// build from an empty target dir must print the same, and exactly the runs the change can
/// affect run again.
#[test]
fn mutation_matrix_reruns_what_changed_and_hits_the_rest() {
    let p = Project::fixture("fixture-native");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    let plain_target = tmp.join("plain-target");
    let path = std::env::var("PATH").unwrap();
    let gcc = which("gcc");
    let cmake = which("cmake");
    let fake_cc = tmp.join("fake-cc");
    script(
        &fake_cc.join("cc"),
        &format!("#!/bin/sh\n# a newer cc\nexec {} \"$@\"\n", gcc.display()),
    );
    let fake_cmake = tmp.join("fake-cmake");
    script(
        &fake_cmake.join("cmake"),
        &format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'cmake version 99.1.0'; exit 0; fi\nexec {} \"$@\"\n",
            cmake.display()
        ),
    );
    let pc = tmp.join("pc");
    fs::create_dir_all(&pc).unwrap();
    fs::write(
        pc.join("zlib.pc"),
        "prefix=/usr\nlibdir=/usr/lib/x86_64-linux-gnu\nincludedir=/usr/include\n\
         Name: zlib\nDescription: a newer zlib\nVersion: 9.9.9\nLibs: -L${libdir} -lz\nCflags: -I${includedir}\n",
    )
    .unwrap();
    let add_c =
        "#include \"add.h\"\n\nint fixture_add(int a, int b) { return a + b + ADD_BIAS + 1; }\n";
    let add_h = "#ifndef ADD_H\n#define ADD_H\n#define ADD_BIAS 2\nint fixture_add(int a, int b);\n#endif\n";
    let data_build = "use std::{env, fs, path::Path};\n\nfn main() {\n    println!(\"cargo:rerun-if-changed=data/table.txt\");\n    let text = fs::read_to_string(\"data/table.txt\").unwrap();\n    let mut out = String::from(\"pub const TABLE: &[(&str, u32)] = &[\\n\");\n    for line in text.lines().filter(|l| !l.trim().is_empty()) {\n        let (name, value) = line.split_once(' ').unwrap();\n        out += &format!(\"    ({name:?}, {}),\\n\", value.trim().parse::<u32>().unwrap());\n    }\n    out += \"];\\n\";\n    println!(\"cargo:rows=30\");\n    fs::write(Path::new(&env::var(\"OUT_DIR\").unwrap()).join(\"table.rs\"), out).unwrap();\n}\n";
    let in_path = |dir: &Path| format!("{}:{path}", dir.display());
    let cases = vec![
        case("the C source", Expect::Miss(&["cc-header"]))
            .edit(Edit::Write("cc-header/csrc/add.c", add_c)),
        case("a header", Expect::Miss(&["cc-header"]))
            .edit(Edit::Write("cc-header/csrc/add.h", add_h)),
        case(
            "a new file in a rerun-if-changed dir",
            Expect::Miss(&["cc-header"]),
        )
        .edit(Edit::Write("cc-header/csrc/extra.h", "/* new */\n")),
        case(
            "a rerun-if-changed file outside src/, and the links metadata it feeds",
            Expect::Miss(&["data-gen", "env-dep"]),
        )
        .edit(Edit::Write(
            "data-gen/data/table.txt",
            "alpha 1\nbeta 2\ngamma 3\ndelta 4\n",
        )),
        case("a declared env var", Expect::Miss(&["env-dep"])).env("NATIVE_FIXTURE_MODE", "fast"),
        case(
            "build.rs (changing only its links metadata)",
            Expect::Miss(&["data-gen", "env-dep"]),
        )
        .edit(Edit::Write("data-gen/build.rs", data_build)),
        case(
            "a file of a package that declares nothing",
            Expect::Miss(&["no-decl"]),
        )
        .edit(Edit::Write("no-decl/src/seed.txt", "43\n")),
        case(
            "a new file in a package that declares nothing",
            Expect::Miss(&["no-decl"]),
        )
        .edit(Edit::Write("no-decl/notes.txt", "new\n")),
        case("a feature", Expect::Miss(&["cc-header"])).arg("--features=cc-header/bias"),
        case("CC", Expect::AllMiss).env("CC", fake_cc.join("cc").display().to_string()),
        case("CFLAGS", Expect::AllMiss).env("CFLAGS", "-DADD_BIAS=3"),
        case("CFLAGS_<target>", Expect::AllMiss)
            .env("CFLAGS_x86_64-unknown-linux-gnu", "-DADD_BIAS=4"),
        case("TARGET_CFLAGS", Expect::AllMiss).env("TARGET_CFLAGS", "-DADD_BIAS=7"),
        case("a newer cc on PATH", Expect::AllMiss).env("PATH", in_path(&fake_cc)),
        case("the cmake version", Expect::AllMiss).env("PATH", in_path(&fake_cmake)),
        case("the pkg-config'd library's version", Expect::AllMiss)
            .env("PKG_CONFIG_PATH", pc.display().to_string()),
        case("opt-level and profile", Expect::AllMiss).arg("--release"),
        case("debug info", Expect::AllMiss).env("CARGO_PROFILE_DEV_DEBUG", "0"),
        case("RUSTFLAGS", Expect::AllMiss).env("RUSTFLAGS", "--cfg=jetcc_matrix"),
        case(
            "a failing script",
            Expect::Fails("failing on purpose because NATIVE_FIXTURE_FAIL=1"),
        )
        .env("NATIVE_FIXTURE_FAIL", "1"),
        // Must hit: nothing a run produces depends on these.
        case("-j1 (NUM_JOBS, the jobserver)", Expect::Miss(&[])).arg("-j1"),
        case("an unrelated env var", Expect::Miss(&[])).env("JETCC_MATRIX_UNRELATED", "1"),
        case("touch, no content change", Expect::Miss(&[]))
            .edit(Edit::Touch("cc-header/build.rs"))
            .edit(Edit::Touch("cc-header/csrc/add.c"))
            .edit(Edit::Touch("data-gen/data/table.txt")),
        // cmake's OUT_DIR names itself (CMakeCache.txt): valid only at the same path.
        case("another target dir", Expect::Miss(&["cmake-lib"])).env(
            "CARGO_TARGET_DIR",
            tmp.join("other-target").display().to_string(),
        ),
        case("everything back as it was", Expect::Miss(&[])),
    ];
    assert!(cases.len() >= 25);

    // Warm the cache and the plain target dir with the unchanged fixture.
    let lite = |b: Build| b.arg("-p").arg("lite");
    let plain =
        || lite(Build::plain()).env("CARGO_TARGET_DIR", &plain_target.display().to_string());
    p.build_ok(&plain());
    let base_line = run_bin(&plain_target.join("debug/lite"));
    p.build_ok(&lite(Build::jetcc(&cache)));
    assert_eq!(run_bin(&p.target().join("debug/lite")), base_line);

    let mut failures = Vec::new();
    for c in &cases {
        let saved: Vec<(&str, Option<String>)> = c
            .edits
            .iter()
            .map(|e| match e {
                Edit::Write(rel, text) => {
                    let old = fs::read_to_string(p.dir.join(rel)).ok();
                    p.write(rel, text);
                    (*rel, old)
                }
                Edit::Touch(rel) => {
                    let f = fs::File::options()
                        .append(true)
                        .open(p.dir.join(rel))
                        .unwrap();
                    f.set_modified(std::time::SystemTime::now()).unwrap();
                    (*rel, Some(p.read(rel)))
                }
            })
            .collect();
        let with = |mut b: Build| {
            for (k, v) in &c.env {
                b = b.env(k, v);
            }
            for a in &c.args {
                b = b.arg(a);
            }
            b
        };
        let profile = if c.args.contains(&"--release") {
            "release"
        } else {
            "debug"
        };
        let plain_built = p.build(&with(plain()));
        p.clean();
        let _ = fs::remove_dir_all(tmp.join("other-target"));
        let built = p.build(&with(lite(Build::jetcc(&cache))));
        let outcomes = built.run_outcomes();
        let missed = packages(&outcomes, Outcome::Miss);
        let hit = packages(&outcomes, Outcome::Hit);
        let problem = match &c.expect {
            Expect::Fails(msg) => (built.ok() || plain_built.ok() || !built.stderr().contains(msg))
                .then(|| format!("should fail with {msg:?}: {}", built.stderr())),
            _ if !built.ok() || !plain_built.ok() => Some(format!(
                "build failed: jetcc {} / plain {}",
                built.stderr(),
                plain_built.stderr()
            )),
            expect => {
                let target = c
                    .env
                    .iter()
                    .find(|(k, _)| *k == "CARGO_TARGET_DIR")
                    .map_or(p.target(), |(_, v)| PathBuf::from(v));
                let got = run_bin(&target.join(profile).join("lite"));
                let want = run_bin(&plain_target.join(profile).join("lite"));
                let runs_ok = match expect {
                    Expect::Miss(pkgs) => {
                        let want: BTreeSet<String> = pkgs.iter().map(|s| s.to_string()).collect();
                        missed == want && !hit.is_empty()
                    }
                    _ => hit.is_empty() && !missed.is_empty(),
                };
                if got != want {
                    Some(format!("jetcc printed {got:?}, plain {want:?}"))
                } else if !runs_ok {
                    Some(format!("runs missed: {missed:?}, hit: {hit:?}"))
                } else {
                    None
                }
            }
        };
        if let Some(why) = problem {
            failures.push(format!("{}: {why}", c.name));
        }
        for (rel, old) in saved {
            match old {
                Some(text) => p.write(rel, &text),
                None => fs::remove_file(p.dir.join(rel)).unwrap(),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A build killed while a script runs leaves nothing behind that a later build trusts: the
/// next build runs the script again and passes, and what it stores is whole.
#[test]
fn a_run_killed_half_way_is_never_restored() {
    let p = Project::fixture("fixture-native");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    let hold = tmp.join("hold");
    fs::write(&hold, "").unwrap();
    let b = Build::jetcc(&cache)
        .arg("-p")
        .arg("warns")
        .env("NATIVE_FIXTURE_HOLD", &hold.display().to_string());
    // The build as `build_in` runs it, but in the background.
    let mut cmd = cargo_command(&p.dir);
    cmd.arg("build")
        .args(&b.args)
        .env("CARGO_INCREMENTAL", "0")
        .env("RUSTC_WRAPPER", jetcc_bin())
        .env("JETCC_DIR", &cache)
        .env("JETCC_PATHS", "exact")
        .env("NATIVE_FIXTURE_HOLD", &hold)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let first = |p: &Project| {
        fs::read_dir(p.target().join("debug/build"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("out/first.txt"))
            .find(|f| f.exists())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while first(&p).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Kill cargo and every process working in this project (the launcher, the script), by
    // pid: the way a CI agent's timeout or an OOM kill ends a build.
    let mut pids = vec![child.id()];
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let mine = String::from_utf8_lossy(&cmdline).contains(&*p.dir.to_string_lossy());
        if mine && pid > 1 && pid != std::process::id() {
            pids.push(pid);
        }
    }
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    Command::new("kill")
        .args(["-s", "KILL", "--"])
        .args(&pids)
        .status()
        .unwrap();
    child.wait().unwrap();
    fs::remove_file(&hold).unwrap();

    // The next build (same key: the variable is set, its file gone) runs the script again.
    let again = p.build_ok(&b);
    assert_eq!(
        again.run_outcomes().get("warns").map(Vec::as_slice),
        Some(&[Outcome::Miss][..]),
        "{:?}",
        again.run_outcomes()
    );
    // And what it stored is whole: after a clean, the restored OUT_DIR has both files.
    p.clean();
    let warm = p.build_ok(&b);
    assert_eq!(
        warm.run_outcomes().get("warns").map(Vec::as_slice),
        Some(&[Outcome::Hit][..])
    );
    let out = first(&p).unwrap().parent().unwrap().to_path_buf();
    let mut names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["first.txt", "second.txt"]);
}

/// A second checkout at another path, each with its own `base_dirs`: the runs whose
/// `OUT_DIR` names no path of the first checkout hit — cc-header's too, since its C objects
/// are compiled with the base dir mapped (`-ffile-prefix-map`); cmake-lib's, whose
/// `CMakeCache.txt` names the checkout, runs again and its C compile hits; both print the
/// same.
#[test]
fn a_second_checkout_with_base_dirs_hits_what_is_path_free() {
    let p = Project::fixture("fixture-native");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    let other = p.sibling("fixture-native", "second-checkout");
    let build = |dir: &Path| {
        let b = Build::jetcc(&cache)
            .arg("-p")
            .arg("lite")
            .env("JETCC_BASE_DIRS", &dir.display().to_string());
        let built = build_in(dir, &b);
        assert!(built.ok(), "{}", built.stderr());
        built
    };
    let first = build(&p.dir);
    assert!(packages(&first.run_outcomes(), Outcome::Hit).is_empty());
    let second = build(&other);
    let outcomes = second.run_outcomes();
    let missed = packages(&outcomes, Outcome::Miss);
    let want: BTreeSet<String> = ["cmake-lib"].map(String::from).into();
    assert_eq!(missed, want, "{outcomes:?}");
    let c_hit = |src: &str| {
        second
            .c_outcomes()
            .iter()
            .any(|(path, o)| path.ends_with(&format!("/{src}")) && o.contains(&Outcome::Hit))
    };
    assert!(c_hit("mul.c"), "cmake-lib's C compile: {}", second.log);
    for pkg in [
        "cc-header",
        "data-gen",
        "env-dep",
        "no-decl",
        "warns",
        "fails",
        "pkgconf",
    ] {
        assert!(
            packages(&outcomes, Outcome::Hit).contains(pkg),
            "{pkg}: {outcomes:?}"
        );
    }
    assert_eq!(
        run_bin(&other.join("target/debug/lite")),
        run_bin(&p.target().join("debug/lite"))
    );
}
