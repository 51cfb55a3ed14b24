use std::ffi::OsString;
use std::os::unix::fs::symlink;

use super::*;

fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    p
}

fn args(words: &[&str]) -> RustcArgs {
    RustcArgs::parse(words.iter().map(OsString::from)).unwrap()
}

const BIG: Bounds = Bounds {
    files: 100,
    bytes: 1 << 20,
};

/// A workspace root that is a package too, with a member, a target dir, version control, a
/// nested cargo target dir and a generated `OUT_DIR`.
fn workspace() -> (tempfile::TempDir, Package) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    write(&ws, "Cargo.toml", b"[package]");
    write(&ws, "src/lib.rs", b"mod m;");
    write(&ws, "src/m/mod.rs", b"");
    write(&ws, "data/greeting.txt", b"hi");
    write(&ws, ".git/HEAD", b"ref");
    write(&ws, "target/debug/libx.rlib", b"x");
    write(&ws, "other-target/CACHEDIR.TAG", b"tag");
    write(&ws, "other-target/debug/liby.rlib", b"y");
    write(&ws, "member/Cargo.toml", b"[package]");
    write(&ws, "member/src/lib.rs", b"");
    // A module dir named `target` below the root is the package's own.
    write(&ws, "src/target/mod.rs", b"");
    // A dir a `#[path = "empty/deeper/../../m/mod.rs"]` walks through, holding no file.
    std::fs::create_dir_all(ws.join("src/empty/deeper")).unwrap();
    let outside = write(dir.path(), "outside/big.rs", b"elsewhere");
    symlink(outside.parent().unwrap(), ws.join("linked-dir")).unwrap();
    symlink(&outside, ws.join("src/linked.rs")).unwrap();
    let out = dir.path().join("t/debug/build/ws-1/out");
    write(&out, "generated.rs", b"pub fn g() {}");
    write(&out, "obj/a.o", b"object");
    write(&out, "lib/libadd.a", b"archive");
    write(
        out.parent().unwrap(),
        "output",
        b"cargo:rustc-env=STAMP=v1\ncargo:rustc-cfg=x\n",
    );
    let pkg = Package {
        dir: Some(ws),
        out_dir: Some(out),
    };
    (dir, pkg)
}

#[test]
fn a_guess_lists_the_package_and_out_dir_but_not_what_is_not_the_packages() {
    let (dir, pkg) = workspace();
    let ws = pkg.dir.clone().unwrap();
    let g = guess(&ws, &args(&["--crate-name", "ws", "src/lib.rs"]), &pkg, BIG).unwrap();
    let rel: Vec<String> = g
        .files
        .iter()
        .map(|f| {
            f.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        rel,
        [
            "t/debug/build/ws-1/out/generated.rs",
            "t/debug/build/ws-1/out/lib/libadd.a",
            "ws/Cargo.toml",
            "ws/data/greeting.txt",
            "ws/src/lib.rs",
            "ws/src/linked.rs",
            "ws/src/m/mod.rs",
            "ws/src/target/mod.rs",
        ]
    );
    let dirs: Vec<&Path> = g
        .dirs
        .iter()
        .map(|d| d.strip_prefix(dir.path()).unwrap())
        .collect();
    assert_eq!(
        dirs,
        [
            Path::new("t/debug/build/ws-1/out/obj"),
            Path::new("ws/src/empty"),
            Path::new("ws/src/empty/deeper"),
        ],
        "the dirs that hold no file"
    );
    assert_eq!(g.env_deps, ["STAMP"]);
    assert!(g.crates.is_empty());
}

#[test]
fn no_guess_past_the_bounds_or_without_a_package() {
    let (_dir, pkg) = workspace();
    let ws = pkg.dir.clone().unwrap();
    let inv = args(&["--crate-name", "ws", "src/lib.rs"]);
    let few = Bounds {
        files: 3,
        bytes: 1 << 20,
    };
    assert!(matches!(
        guess(&ws, &inv, &pkg, few),
        Err(NoGuess::TooManyFiles(3))
    ));
    let small = Bounds {
        files: 100,
        bytes: 8,
    };
    assert!(matches!(
        guess(&ws, &inv, &pkg, small),
        Err(NoGuess::TooLarge(8))
    ));
    assert!(matches!(
        guess(&ws, &inv, &Package::default(), BIG),
        Err(NoGuess::NoPackage)
    ));
    // A crate root outside its package (`[lib] path = "../x.rs"`) is not guessed.
    let outside = args(&["--crate-name", "ws", "../outside/big.rs"]);
    assert!(matches!(
        guess(&ws, &outside, &pkg, BIG),
        Err(NoGuess::RootOutside(_))
    ));
}

/// Metadata naming crates as rustc writes them: a length byte, the name, a sentinel.
fn metadata(names: &[&str], pad_before: usize) -> Vec<u8> {
    let mut m = b"rust\0\0\0\x0a".to_vec();
    m.resize(m.len() + pad_before, 0x20);
    for n in names {
        m.push(0x11);
        m.extend_from_slice(n.as_bytes());
        m.push(0xc1);
        m.extend_from_slice(b"\x05serde\x00\x01");
    }
    // Later sections (not the dependency list) may name crates too: not read.
    m.resize(m.len() + 3 * WINDOW_FOR_TESTS, 0);
    m.extend_from_slice(b"\x11-dddddddddddddddd\xc1");
    m
}

const WINDOW_FOR_TESTS: usize = 64 << 10;
const DEP: &str = "-1111111111111111";
const TRANS: &str = "-2222222222222222";
const MAC: &str = "-3333333333333333";
const UNRELATED: &str = "-4444444444444444";
const LATE: &str = "-dddddddddddddddd";

#[test]
fn the_crates_loaded_are_the_externs_and_those_their_metadata_names() {
    let dir = tempfile::tempdir().unwrap();
    let deps = dir.path().join("t/debug/deps");
    let w = |name: &str, bytes: &[u8]| write(&deps, name, bytes);
    // The direct dependency names the transitive one (and a sysroot crate), the name
    // straddling the end of the first read (17 + WINDOW bytes; the header is 8).
    let dep = w(
        &format!("libdep{DEP}.rmeta"),
        &metadata(&[TRANS, "-0000000000000000"], WINDOW_FOR_TESTS + 3),
    );
    w(&format!("libdep{DEP}.rlib"), b"not read: the rmeta is");
    let trans = metadata(&[MAC, DEP], 0);
    w(&format!("libtrans{TRANS}.rmeta"), &trans);
    w(&format!("libtrans{TRANS}.rlib"), &trans);
    w(&format!("libmac{MAC}.so"), &metadata(&[UNRELATED], 0));
    w(&format!("libother{UNRELATED}.rmeta"), b"");
    w(&format!("liblate{LATE}.rmeta"), b"");
    w("libnot-a-crate.rmeta", b"");
    let inv = args(&[
        "--crate-name",
        "top",
        "src/lib.rs",
        "-L",
        &format!("dependency={}", deps.display()),
        "--extern",
        &format!("dep={}", dep.display()),
        "--extern",
        "proc_macro",
    ]);
    let names: Vec<String> = crates::loaded(dir.path(), &inv)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            format!("libdep{DEP}.rlib"),
            format!("libdep{DEP}.rmeta"),
            format!("libmac{MAC}.so"),
            format!("libtrans{TRANS}.rlib"),
            format!("libtrans{TRANS}.rmeta"),
        ]
    );
}
