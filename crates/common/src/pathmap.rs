//! Path mapping between one build and the cache.
//!
//! An entry must restore into any target dir, so the out-dir is stored as a placeholder in
//! dep-info and in rustc's JSON messages. Two modes map more (see `config::PathsMode`):
//!
//! - **exact**, with `base_dirs` (opt-in, like ccache's `base_dir`): the listed prefixes are
//!   mapped in the key, in the outputs (rustc's `--remap-path-prefix`) and in stored dep-info;
//! - **portable** ([`Portable`]): the workspace, the build dir, `CARGO_HOME` and package roots
//!   and `$HOME` are mapped by themselves, in keys as placeholders and in outputs the way
//!   cargo's `trim-paths` maps them (`.` for the workspace, `/cargo/registry/<id>/<crate>-<ver>`
//!   for registry sources, `/cargo/build-dir` for generated code), so another checkout, target
//!   dir or machine computes the same keys and gets the same bytes.
//!
//! Design choice: key-form placeholders are distinct from what outputs say, so each one maps
//! back to exactly one local prefix (dep-info and messages restore to this build's paths),
//! while outputs carry stable, readable names a debugger can be pointed at.

use std::path::{Path, PathBuf};

/// What rustc is told a base dir is called (`--remap-path-prefix=BASE=/jetcc/base`). It shows
/// up in debug info and panic messages of mapped builds: the documented trade-off.
pub const MAPPED_BASE: &str = "/jetcc/base";

const OUT_DIR_PLACEHOLDER: &str = "\u{1}jetcc:out-dir\u{1}";

/// `-L dependency=` dirs (other than the out-dir) are numbered in the order given.
fn dep_dir_placeholder(i: usize) -> String {
    format!("\u{1}jetcc:dep-dir-{i}\u{1}")
}

/// Key-form placeholders of the portable roots.
const WORKSPACE: &str = "\u{1}jetcc:workspace\u{1}";
const BUILD_DIR: &str = "\u{1}jetcc:build-dir\u{1}";
const CARGO_HOME: &str = "\u{1}jetcc:cargo-home\u{1}";
const PACKAGE: &str = "\u{1}jetcc:package\u{1}";
const HOME: &str = "\u{1}jetcc:home\u{1}";

/// The roots `paths = "portable"` maps, from what cargo tells rustc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Portable {
    /// `CARGO_HOME`: registry sources and git checkouts live under it.
    pub cargo_home: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// The target (build) dir: out-dirs and every `OUT_DIR` are under it.
    pub build_dir: Option<PathBuf>,
    /// The package's root (`CARGO_MANIFEST_DIR`) and its `<name>-<version>`.
    pub package: Option<(PathBuf, String)>,
}

impl Portable {
    /// The roots of a compile writing into `out_dir` (for `--target`, if given), read from
    /// cargo's env for rustc.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        out_dir: &Path,
        target: Option<&str>,
    ) -> Portable {
        let path = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let package = path("CARGO_MANIFEST_DIR").map(|dir| {
            let name = env("CARGO_PKG_NAME").unwrap_or_default();
            let version = env("CARGO_PKG_VERSION").unwrap_or_default();
            (dir, format!("{name}-{version}"))
        });
        Portable {
            cargo_home: path("CARGO_HOME"),
            home: path("HOME"),
            build_dir: build_dir_of(out_dir, target),
            package,
        }
    }
}

/// The build dir of an out-dir cargo chose: `<build>/<profile>/deps`,
/// `<build>/<profile>/build/<pkg>-<hash>`, with `<triple>/` before the profile when rustc is
/// given `--target`. `None` for an out-dir of another shape (not mapped, then).
fn build_dir_of(out_dir: &Path, target: Option<&str>) -> Option<PathBuf> {
    let profile_dir = match out_dir.file_name()?.to_str()? {
        "deps" | "examples" => out_dir.parent()?,
        _ if out_dir.parent()?.file_name()? == "build" => out_dir.parent()?.parent()?,
        _ => return None,
    };
    let parent = profile_dir.parent()?;
    let cross = target.is_some_and(|t| parent.file_name().is_some_and(|n| n == t));
    Some(if cross { parent.parent()? } else { parent }.to_path_buf())
}

/// Prefix rewrites for one invocation.
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    /// (local, key form), longest local first: keys, stored dep-info and messages.
    pairs: Vec<(String, String)>,
    /// (local, what outputs say), longest local last (rustc applies the last match).
    remaps: Vec<(String, String)>,
    /// Outputs are mapped as cargo's `trim-paths = "all"`: diagnostics too, since with a
    /// narrower scope rustc keeps the local paths in the metadata it writes for diagnostics.
    portable: bool,
    /// Other local roots an output may name and stay valid where they are the same (a
    /// build script's `OUT_DIR` and package dir; see [`PathMap::add_root`]).
    roots: Vec<String>,
    /// What [`MAPPED_BASE`] means here: the first base dir that contains the cwd, else the
    /// first base dir. With one base dir per machine that is exact.
    local_base: Option<String>,
}

impl PathMap {
    /// The map for a build in `cwd` writing to `out_dir`, finding crates in `dep_dirs`, with
    /// the given base dirs (all absolute) and, for `paths = "portable"`, its roots.
    pub fn new(
        out_dir: &Path,
        dep_dirs: &[PathBuf],
        base_dirs: &[PathBuf],
        cwd: &Path,
        portable: Option<&Portable>,
    ) -> PathMap {
        let out = path_str(out_dir);
        let mut map = PathMap::default();
        map.add_pair(&out, OUT_DIR_PLACEHOLDER);
        for (i, dir) in dep_dirs.iter().map(|d| path_str(d)).enumerate() {
            map.add_pair(&dir, &dep_dir_placeholder(i));
        }
        for base in base_dirs {
            let base = path_str(base);
            map.add_pair(&base, MAPPED_BASE);
            map.remaps.push((base, MAPPED_BASE.to_owned()));
        }
        let cwd = path_str(cwd);
        if let Some(p) = portable {
            map.add_portable(p, &cwd);
        }
        // Longest first, so the out-dir (usually under a base dir) wins over its base.
        map.pairs
            .sort_by_key(|(local, _)| std::cmp::Reverse(local.len()));
        map.remaps.sort_by_key(|(local, _)| local.len());
        let bases: Vec<String> = base_dirs.iter().map(|b| path_str(b)).collect();
        map.local_base = bases
            .iter()
            .find(|b| is_prefix(b, &cwd))
            .or(bases.first())
            .cloned();
        map
    }

    fn add_pair(&mut self, local: &str, stored: &str) {
        // A root at `/` (or one already mapped) would say nothing about what a path is.
        if local.is_empty() || self.pairs.iter().any(|(l, _)| l == local) {
            return;
        }
        self.pairs.push((local.to_owned(), stored.to_owned()));
    }

    fn add_remap(&mut self, local: &str, mapped: String) {
        if !local.is_empty() && !self.remaps.iter().any(|(l, _)| l == local) {
            self.remaps.push((local.to_owned(), mapped));
        }
    }

    /// cargo's `trim-paths` remaps, and placeholders for the same roots in keys.
    fn add_portable(&mut self, p: &Portable, cwd: &str) {
        self.portable = true;
        let cargo_home = p.cargo_home.as_deref().map(path_str);
        let in_cargo_home = |path: &str| cargo_home.as_deref().is_some_and(|h| is_prefix(h, path));
        if let Some(build) = p.build_dir.as_deref().map(path_str) {
            self.add_pair(&build, BUILD_DIR);
            self.add_remap(&build, "/cargo/build-dir".into());
        }
        if !in_cargo_home(cwd) {
            self.add_pair(cwd, WORKSPACE);
            self.add_remap(cwd, ".".into());
        }
        if let Some(home) = &cargo_home {
            self.add_pair(home, CARGO_HOME);
        }
        if let Some((root, name)) = &p.package {
            let root = path_str(root);
            let source = cargo_home
                .as_deref()
                .and_then(|home| cargo_source_remap(home, &root));
            if let Some((from, to)) = source {
                self.add_remap(&from, to);
            } else if !in_cargo_home(&root) && !is_prefix(cwd, &root) {
                self.add_pair(&root, PACKAGE);
                self.add_remap(&root, format!("/cargo/path/{name}"));
            }
        }
        if let Some(home) = p.home.as_deref().map(path_str) {
            self.add_pair(&home, HOME);
            self.add_remap(&home, "~".into());
        }
    }

    /// Local paths → stored form.
    pub fn store(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (local, stored) in &self.pairs {
            out = replace(&out, local.as_bytes(), stored.as_bytes());
        }
        out
    }

    /// Stored form → local paths.
    pub fn restore(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (local, stored) in &self.pairs {
            if stored != MAPPED_BASE {
                out = replace(&out, stored.as_bytes(), local.as_bytes());
            }
        }
        if let Some(base) = &self.local_base {
            out = replace(&out, MAPPED_BASE.as_bytes(), base.as_bytes());
        }
        out
    }

    /// The local path for a path in key form (the inverse of [`PathMap::key_path`]).
    pub fn local_path(&self, key_path: &str) -> String {
        for (local, stored) in &self.pairs {
            let local = if stored == MAPPED_BASE {
                match &self.local_base {
                    Some(b) => b,
                    None => continue,
                }
            } else {
                local
            };
            if is_prefix(stored, key_path) {
                return format!("{local}{}", &key_path[stored.len()..]);
            }
        }
        key_path.to_owned()
    }

    /// A path as it goes into the key: the out-dir, crate dirs, base dirs and (portable) the
    /// build's roots are replaced by placeholders, so the key says what a path is, not where
    /// this build keeps it.
    pub fn key_path(&self, path: &str) -> String {
        for (local, stored) in &self.pairs {
            if is_prefix(local, path) {
                return format!("{stored}{}", &path[local.len()..]);
            }
        }
        path.to_owned()
    }

    /// Whether outputs are mapped as cargo's `trim-paths` maps them.
    pub fn is_portable(&self) -> bool {
        self.portable
    }

    /// The portable roots (local paths) that `bytes` name, longest first. rustc's remapping
    /// covers the paths it writes itself, not a string the code makes of one
    /// (`env!("CARGO_MANIFEST_DIR")`), so such an output is only for builds with those roots.
    pub fn local_roots_in(&self, bytes: &[u8]) -> Vec<&str> {
        if !self.portable {
            return Vec::new();
        }
        self.remaps
            .iter()
            .rev()
            .filter(|(_, mapped)| mapped != MAPPED_BASE)
            .map(|(local, _)| local.as_str())
            .filter(|local| memchr::memmem::find(bytes, local.as_bytes()).is_some())
            .collect()
    }

    /// Whether `root` is one of this build's portable roots or added roots, at the same path.
    pub fn has_local_root(&self, root: &str) -> bool {
        self.roots.iter().any(|r| r == root)
            || self
                .remaps
                .iter()
                .any(|(local, mapped)| local == root && mapped != MAPPED_BASE)
    }

    /// Adds a root an output may name (in either paths mode): an entry recording it
    /// (`ManifestEntry::local_roots`) then matches only where [`PathMap::has_local_root`]
    /// finds it at the same path.
    pub fn add_root(&mut self, root: &Path) {
        let root = path_str(root);
        if !root.is_empty() && !self.roots.contains(&root) {
            self.roots.push(root);
        }
    }

    /// The roots [`PathMap::add_root`] added and, when portable, the portable ones: what a
    /// build script's outputs are searched for.
    pub fn roots(&self) -> Vec<String> {
        let mut all = self.roots.clone();
        if self.portable {
            for (local, mapped) in &self.remaps {
                if mapped != MAPPED_BASE && !all.contains(local) {
                    all.push(local.clone());
                }
            }
        }
        all
    }

    /// The `--remap-path-prefix` arguments rustc needs so outputs carry mapped paths. rustc
    /// applies the last matching mapping, so the longest prefix goes last.
    pub fn remap_args(&self) -> Vec<String> {
        self.remaps
            .iter()
            .map(|(l, s)| format!("--remap-path-prefix={l}={s}"))
            .collect()
    }

    /// The same mappings for gcc and clang (`-ffile-prefix-map`: debug info, `__FILE__`),
    /// which also apply the last matching option first.
    pub fn file_prefix_map_args(&self) -> Vec<String> {
        self.remaps
            .iter()
            .map(|(l, s)| format!("-ffile-prefix-map={l}={s}"))
            .collect()
    }
}

/// A registry or git source of `CARGO_HOME` as cargo's `trim-paths` names it:
/// `<home>/registry/src/<host>-<id>` → `/cargo/registry/<id>`, and
/// `<home>/git/checkouts/<repo>-<id>/<rev>` → `/cargo/git/<id>/<rev>`.
fn cargo_source_remap(cargo_home: &str, package_root: &str) -> Option<(String, String)> {
    let rest = package_root.strip_prefix(cargo_home)?;
    let mut parts = rest.trim_start_matches('/').split('/');
    match (parts.next()?, parts.next()?, parts.next()?) {
        ("registry", "src", dir) => {
            let id = dir.rsplit('-').next()?;
            Some((
                format!("{cargo_home}/registry/src/{dir}"),
                format!("/cargo/registry/{id}"),
            ))
        }
        ("git", "checkouts", repo) => {
            let rev = parts.next()?;
            let id = repo.rsplit('-').next()?;
            let short = &rev[..rev.len().min(7)];
            Some((
                format!("{cargo_home}/git/checkouts/{repo}/{rev}"),
                format!("/cargo/git/{id}/{short}"),
            ))
        }
        _ => None,
    }
}

/// Whether `prefix` is `path` or a parent dir of it.
fn is_prefix(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn path_str(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.strip_suffix('/').unwrap_or(&s).to_owned()
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() || hay.len() < from.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dir_round_trips_to_another_target_dir() {
        let a = PathMap::new(
            Path::new("/a/target/debug/deps"),
            &[],
            &[],
            Path::new("/a"),
            None,
        );
        let b = PathMap::new(
            Path::new("/b/t/debug/deps/"),
            &[],
            &[],
            Path::new("/b"),
            None,
        );
        let msg = br#"{"artifact":"/a/target/debug/deps/libx.rmeta","emit":"metadata"}"#;
        let stored = a.store(msg);
        assert!(!String::from_utf8_lossy(&stored).contains("/a/target"));
        assert_eq!(
            b.restore(&stored),
            br#"{"artifact":"/b/t/debug/deps/libx.rmeta","emit":"metadata"}"#
        );
    }

    #[test]
    fn crate_dirs_map_to_placeholders_in_keys() {
        let m = PathMap::new(
            Path::new("/p/target/debug/build/x-1"),
            &["/p/target/debug/deps".into()],
            &[],
            Path::new("/p"),
            None,
        );
        let k = m.key_path("/p/target/debug/deps/libleaf-1.rlib");
        assert!(!k.contains("/p/target"), "{k}");
        let other = PathMap::new(
            Path::new("/q/t/debug/build/x-1"),
            &["/q/t/debug/deps".into()],
            &[],
            Path::new("/q"),
            None,
        );
        assert_eq!(other.local_path(&k), "/q/t/debug/deps/libleaf-1.rlib");
        assert_eq!(m.key_path("/elsewhere/x.rs"), "/elsewhere/x.rs");
    }

    #[test]
    fn base_dirs_map_key_paths_and_restore() {
        let a = PathMap::new(
            Path::new("/home/a/p/target/debug/deps"),
            &[],
            &["/home/a".into()],
            Path::new("/home/a/p"),
            None,
        );
        assert_eq!(
            a.key_path("/home/a/p/src/lib.rs"),
            "/jetcc/base/p/src/lib.rs"
        );
        assert_eq!(a.key_path("/home/ab/x"), "/home/ab/x");
        assert_eq!(
            a.remap_args(),
            vec!["--remap-path-prefix=/home/a=/jetcc/base"]
        );
        assert!(!a.is_portable());
        let stored = a.store(b"/home/a/p/target/debug/deps/x.d: /home/a/p/src/lib.rs");
        let b = PathMap::new(
            Path::new("/home/b/p/target/debug/deps"),
            &[],
            &["/home/b".into()],
            Path::new("/home/b/p"),
            None,
        );
        assert_eq!(
            b.local_path("/jetcc/base/p/src/lib.rs"),
            "/home/b/p/src/lib.rs"
        );
        assert_eq!(b.local_path("src/lib.rs"), "src/lib.rs");
        assert_eq!(
            b.restore(&stored),
            b"/home/b/p/target/debug/deps/x.d: /home/b/p/src/lib.rs"
        );
    }

    /// Two machines: another checkout, target dir, `CARGO_HOME` and `$HOME`.
    fn machine(root: &str, krate: Option<&str>) -> PathMap {
        let home = format!("{root}/home");
        let ch = format!("{home}/.cargo");
        let ws = format!("{home}/src/proj");
        let build = format!("{root}/build");
        let (cwd, package) = match krate {
            Some(k) => {
                let dir = format!("{ch}/registry/src/index.crates.io-1949cf8c6b5b557f/{k}-1.0.0");
                (dir.clone(), (PathBuf::from(dir), format!("{k}-1.0.0")))
            }
            None => (ws.clone(), (PathBuf::from(&ws), "proj-0.1.0".to_owned())),
        };
        let portable = Portable {
            cargo_home: Some(ch.into()),
            home: Some(home.into()),
            build_dir: build_dir_of(Path::new(&format!("{build}/debug/deps")), None),
            package: Some(package),
        };
        PathMap::new(
            Path::new(&format!("{build}/debug/deps")),
            &[format!("{build}/debug/deps").into()],
            &[],
            Path::new(&cwd),
            Some(&portable),
        )
    }

    #[test]
    fn portable_keys_are_the_same_on_two_machines() {
        let (a, b) = (machine("/a", None), machine("/b", None));
        for path in [
            "/a/home/src/proj/src/lib.rs",
            "/a/build/debug/build/x-1/out/gen.rs",
        ] {
            let key = a.key_path(path);
            assert!(!key.contains("/a/"), "{key}");
            assert_eq!(key, b.key_path(&path.replace("/a/", "/b/")));
            assert_eq!(b.local_path(&key), path.replace("/a/", "/b/"));
        }
        let reg =
            "/a/home/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.0/src/lib.rs";
        let (ra, rb) = (machine("/a", Some("serde")), machine("/b", Some("serde")));
        assert_eq!(ra.key_path(reg), rb.key_path(&reg.replace("/a/", "/b/")));
        // dep-info and messages restore to the other machine's paths.
        let text = b"/a/build/debug/deps/x.d: /a/home/src/proj/src/lib.rs";
        assert_eq!(
            b.restore(&a.store(text)),
            b"/b/build/debug/deps/x.d: /b/home/src/proj/src/lib.rs"
        );
    }

    #[test]
    fn portable_outputs_are_named_as_cargo_trim_paths_names_them() {
        let ws = machine("/a", None);
        assert!(ws.is_portable());
        assert_eq!(
            ws.remap_args(),
            [
                "--remap-path-prefix=/a/home=~",
                "--remap-path-prefix=/a/build=/cargo/build-dir",
                "--remap-path-prefix=/a/home/src/proj=.",
            ]
        );
        let reg = machine("/a", Some("serde"));
        assert!(reg.remap_args().contains(
            &"--remap-path-prefix=/a/home/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f=/cargo/registry/1949cf8c6b5b557f"
                .to_owned()
        ));
        assert_eq!(
            cargo_source_remap("/h", "/h/git/checkouts/serde-3f2a/0a1b2c3d4e5f/sub"),
            Some((
                "/h/git/checkouts/serde-3f2a/0a1b2c3d4e5f".to_owned(),
                "/cargo/git/3f2a/0a1b2c3".to_owned()
            ))
        );
    }

    #[test]
    fn outputs_naming_a_local_root_are_found() {
        let m = machine("/a", None);
        assert_eq!(
            m.local_roots_in(b"..\0/a/home/src/proj/leaf\0.."),
            ["/a/home/src/proj", "/a/home"]
        );
        assert!(m
            .local_roots_in(b"./leaf/src/lib.rs /cargo/build-dir/x")
            .is_empty());
        assert!(m.has_local_root("/a/home/src/proj"));
        assert!(!machine("/b", None).has_local_root("/a/home/src/proj"));
        let exact = PathMap::new(Path::new("/t/debug/deps"), &[], &[], Path::new("/w"), None);
        assert!(
            exact.local_roots_in(b"/w/src").is_empty(),
            "exact outputs name paths by design"
        );
    }

    #[test]
    fn build_dirs_are_found_from_out_dirs() {
        let b = |o: &str, t| build_dir_of(Path::new(o), t).map(|p| p.display().to_string());
        assert_eq!(b("/t/debug/deps", None).as_deref(), Some("/t"));
        assert_eq!(
            b("/t/release/build/serde-1a2b", None).as_deref(),
            Some("/t")
        );
        let triple = Some("x86_64-unknown-linux-gnu");
        assert_eq!(
            b("/t/x86_64-unknown-linux-gnu/debug/deps", triple).as_deref(),
            Some("/t")
        );
        assert_eq!(b("/somewhere/else", None), None);
    }
}
