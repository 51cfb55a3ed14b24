//! The key-mutation matrix: each change to an input of a unit makes that unit miss, and the
//! result equals a plain build's bytes; changes that must not matter still hit.
//!
//! All cases share one fixture copy (the workspace path is part of the key) and one cache,
//! warmed with the unchanged fixture first. Each case: change → plain build (the expected
//! bytes) → clean → jetcc build → check → undo.

use std::path::{Path, PathBuf};

use jetcc_e2e::*;

/// Units every flag change reaches. Build scripts and proc-macros are built with the
/// `build-override` profile, so profile settings do not reach them: they are not asserted.
const ALL: &[&str] = &["leaf", "mid", "util", "corelib", "app"];
/// Units that run the linker.
const LINKED: &[&str] = &["mac", "build_script_build", "app"];
const LIBS: &[&str] = &["leaf", "mid", "util", "corelib"];

/// One row of the matrix.
struct Case {
    name: &'static str,
    /// Edit fixture files: (path, from, to).
    edits: Vec<(&'static str, &'static str, &'static str)>,
    env: Vec<(&'static str, String)>,
    args: Vec<&'static str>,
    misses: &'static [&'static str],
    hits: &'static [&'static str],
}

fn case(
    name: &'static str,
    misses: &'static [&'static str],
    hits: &'static [&'static str],
) -> Case {
    Case {
        name,
        edits: vec![],
        env: vec![],
        args: vec![],
        misses,
        hits,
    }
}

impl Case {
    fn edit(mut self, path: &'static str, from: &'static str, to: &'static str) -> Case {
        self.edits.push((path, from, to));
        self
    }
    fn env(mut self, k: &'static str, v: &str) -> Case {
        self.env.push((k, v.to_owned()));
        self
    }
    fn arg(mut self, a: &'static str) -> Case {
        self.args.push(a);
        self
    }
}

#[rustfmt::skip] // One case a line: a table reads better than rustfmt's layout.
fn cases(fake_rustc: &Path, fake_cc_dir: &Path) -> Vec<Case> {
    let leaf_down: &[&str] = &["leaf", "mid", "corelib", "app"];
    let util_down: &[&str] = &["util", "corelib", "app"];
    let path_with_fake_cc = format!("{}:{}", fake_cc_dir.display(), std::env::var("PATH").unwrap_or_default());
    vec![
        // Sources.
        case("source file", leaf_down, &["util"]).edit("leaf/src/lib.rs", "special() + 1", "special() + 2"),
        case("include_str! file", leaf_down, &["util"]).edit("leaf/data/greeting.txt", "hello", "howdy"),
        case("#[path] module", leaf_down, &["util"]).edit("leaf/src/extra/special.rs", "41", "40"),
        case("corelib source only", &["corelib", "app"], &["leaf", "mid", "util", "mac", "build_script_build"]).edit("corelib/src/lib.rs", "answer={}", "answer:{}"),
        case("binary source only", &["app"], LIBS).edit("app/src/main.rs", "{}", "{} "),
        case("proc-macro source", &["mac", "corelib", "app"], &["leaf", "mid", "util"]).edit("mac/src/lib.rs", "{ 42 }", "{ 43 }"),
        case("build script source", &["build_script_build"], &["leaf", "mid", "mac"]).edit("util/build.rs", "FIXTURE_BUILD_STAMP\");", "FIXTURE_BUILD_STAMP\"); "),
        case("env! / option_env! variable", leaf_down, &["util"]).env("FIXTURE_STAMP", "s1"),
        case("extern content (leaf changed, mid misses)", &["mid"], &["util"]).edit("leaf/src/lib.rs", "wrapping_add", "saturating_add"),
        // A C library bundled into util's rlib changes neither util's code nor its crate hash.
        // corelib sees util's native dir (cargo passes `-L native=` on to dependents, where
        // `#[link(kind = "static")]` could bundle from it) and misses too; app's link reads
        // util's rlib and misses.
        case("transitive dependency (bundled native lib)", util_down, &["leaf", "mid", "mac", "build_script_build"]).env("FIXTURE_NATIVE_VALUE", "6"),
        // Cargo-level inputs.
        case("feature", &["mid", "corelib", "app"], &["leaf", "util"]).arg("--features=mid/fancy"),
        case("edition", leaf_down, &["util"]).edit("leaf/Cargo.toml", "edition = \"2021\"", "edition = \"2018\""),
        case("package version (-C metadata, CARGO_PKG_VERSION)", leaf_down, &["util"]).edit("leaf/Cargo.toml", "version = \"0.1.0\"", "version = \"0.1.1\""),
        case("package description (CARGO_PKG_DESCRIPTION)", &["leaf"], &["util", "mac"]).edit("leaf/Cargo.toml", "publish = false", "publish = false\ndescription = \"x\""),
        // Build script outputs.
        case("build script env output", util_down, &["leaf", "mid", "build_script_build"]).env("FIXTURE_BUILD_STAMP", "v2"),
        case("build script generated file", util_down, &["leaf", "mid", "build_script_build"]).env("FIXTURE_GEN_VALUE", "8"),
        case("build script cfg output", util_down, &["leaf", "mid", "build_script_build"]).env("FIXTURE_CFG_ON", "1"),
        // Links.
        case("linker identity (another cc on PATH)", LINKED, LIBS).env("PATH", &path_with_fake_cc),
        case("-C link-arg", ALL, &[]).env("RUSTFLAGS", "-Clink-arg=-Wl,--build-id=none"),
        case("-C linker", ALL, &[]).env("RUSTFLAGS", "-Clinker=/usr/bin/gcc"),
        // Flags.
        case("--cfg", ALL, &[]).env("RUSTFLAGS", "--cfg fixture_cfg"),
        case("-C opt-level", ALL, &[]).env("CARGO_PROFILE_DEV_OPT_LEVEL", "1"),
        case("-C debuginfo", ALL, &[]).env("CARGO_PROFILE_DEV_DEBUG", "1"),
        case("-C debuginfo off", ALL, &[]).env("CARGO_PROFILE_DEV_DEBUG", "0"),
        case("-C codegen-units", ALL, &[]).env("CARGO_PROFILE_DEV_CODEGEN_UNITS", "3"),
        case("-C panic", ALL, &[]).env("CARGO_PROFILE_DEV_PANIC", "abort"),
        case("-C overflow-checks", ALL, &[]).env("CARGO_PROFILE_DEV_OVERFLOW_CHECKS", "false"),
        case("-C debug-assertions", ALL, &[]).env("CARGO_PROFILE_DEV_DEBUG_ASSERTIONS", "false"),
        case("-C lto", ALL, &[]).env("CARGO_PROFILE_DEV_LTO", "fat"),
        case("-C target-cpu", ALL, &[]).env("RUSTFLAGS", "-Ctarget-cpu=x86-64-v2"),
        case("-C target-feature", ALL, &[]).env("RUSTFLAGS", "-Ctarget-feature=+avx2"),
        case("-C relocation-model", ALL, &[]).env("RUSTFLAGS", "-Crelocation-model=pie"),
        case("-C force-frame-pointers", ALL, &[]).env("RUSTFLAGS", "-Cforce-frame-pointers=yes"),
        case("-C symbol-mangling-version", ALL, &[]).env("RUSTFLAGS", "-Csymbol-mangling-version=v0"),
        case("-C link-dead-code", ALL, &[]).env("RUSTFLAGS", "-Clink-dead-code"),
        case("--remap-path-prefix", ALL, &[]).env("RUSTFLAGS", "--remap-path-prefix=/tmp=/elsewhere"),
        case("lint level", ALL, &[]).env("RUSTFLAGS", "-Aunused"),
        case("RUSTC_BOOTSTRAP", ALL, &[]).env("RUSTC_BOOTSTRAP", "1"),
        case("toolchain identity", ALL, &[]).env("RUSTC", &fake_rustc.to_string_lossy()),
        case("target", ALL, &[]).arg("--target=x86_64-unknown-linux-gnu"),
        // Changes that must not matter.
        case("unrelated env var", &[], FIXTURE_UNITS).env("SOME_UNRELATED_VAR", "1"),
        case("cargo's own settings (CARGO_NET_RETRY)", &[], FIXTURE_UNITS).env("CARGO_NET_RETRY", "7"),
        case("cargo jobs (CARGO_MAKEFLAGS)", &[], FIXTURE_UNITS).arg("-j1"),
        case("touched source (mtime only)", &[], FIXTURE_UNITS).edit("leaf/src/lib.rs", "", ""),
        // Target dir: leaf and mid have no path in their outputs and hit; util includes code
        // from OUT_DIR (under the target dir), so its outputs name it and it must miss.
        case("target dir path", util_down, &["leaf", "mid"]).env("CARGO_TARGET_DIR", "TARGET2"),
    ]
}

#[test]
fn key_mutation_matrix() {
    let p = Project::fixture("fixture");
    let tmp = p.dir.parent().unwrap().to_path_buf();
    let cache = tmp.join("cache");
    let fake_rustc = make_fake_rustc(&tmp);
    let fake_cc_dir = make_fake_cc(&tmp);
    p.build_ok(&Build::jetcc(&cache));

    let mut failures = Vec::new();
    let cases = cases(&fake_rustc, &fake_cc_dir);
    assert!(cases.len() >= 30);
    for c in &cases {
        if let Err(e) = run_case(&p, &cache, &tmp, c) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(stats(&cache)["errors"], serde_json::json!({}));
}

fn run_case(p: &Project, cache: &Path, tmp: &Path, c: &Case) -> Result<(), String> {
    let originals: Vec<(String, String)> = c
        .edits
        .iter()
        .map(|(f, _, _)| (f.to_string(), p.read(f)))
        .collect();
    for (file, from, to) in &c.edits {
        let text = p.read(file);
        if !from.is_empty() && !text.contains(from) {
            return Err(format!("fixture {file} does not contain {from:?}"));
        }
        p.write(file, &text.replacen(from, to, 1));
    }
    let target = match c.env.iter().find(|(k, _)| *k == "CARGO_TARGET_DIR") {
        Some(_) => tmp.join("target2"),
        None => p.target(),
    };
    let make = |b: Build| {
        let mut b = c.args.iter().fold(b, |b, a| b.arg(a));
        for (k, v) in &c.env {
            let v = if *k == "CARGO_TARGET_DIR" {
                target.to_string_lossy().into_owned()
            } else {
                v.clone()
            };
            b = b.env(k, &v);
        }
        b
    };
    let result = (|| {
        let _ = std::fs::remove_dir_all(&target);
        let plain = p.build(&make(Build::plain()));
        if !plain.ok() {
            return Err(format!("plain build failed: {}", plain.stderr()));
        }
        let want = artifacts(&target);
        let _ = std::fs::remove_dir_all(&target);
        let built = p.build(&make(Build::jetcc(cache)));
        if !built.ok() {
            return Err(format!("jetcc build failed: {}", built.stderr()));
        }
        let outcomes = built.outcomes();
        for k in c.misses {
            if built.outcome(k) != Some(Outcome::Miss) {
                return Err(format!("{k} should miss: {outcomes:?}"));
            }
        }
        for k in c.hits {
            if built.outcome(k) != Some(Outcome::Hit) {
                return Err(format!("{k} should hit: {outcomes:?}"));
            }
        }
        let diff = artifact_diff(&want, &artifacts(&target));
        if !diff.is_empty() || want.is_empty() {
            return Err(format!("artifacts differ from plain: {diff:?}"));
        }
        Ok(())
    })();
    for (file, text) in originals {
        p.write(&file, &text);
    }
    let _ = std::fs::remove_dir_all(&target);
    result
}

/// A rustc that reports another commit hash in `-vV` and otherwise is the real one.
fn make_fake_rustc(dir: &Path) -> PathBuf {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(out.stdout).unwrap();
    let real = Path::new(sysroot.trim()).join("bin/rustc");
    let fake = dir.join("fake-rustc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = \"-vV\" ]; then \"{r}\" -vV | sed 's/^commit-hash: .*/commit-hash: 0000000000000000000000000000000000000000/'; exit 0; fi\nexec \"{r}\" \"$@\"\n",
            r = real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

/// A dir holding a `cc` that reports another version and otherwise is the system's.
fn make_fake_cc(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-cc-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cc = bin.join("cc");
    std::fs::write(
        &cc,
        "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then /usr/bin/cc --version | sed 's/^cc/fake-cc/'; exit 0; fi\nexec /usr/bin/cc \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cc, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}
