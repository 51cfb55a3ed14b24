//! Path mapping between one build and the cache.
//!
//! An entry must restore into any target dir, so the out-dir is stored as a placeholder in
//! dep-info and in rustc's JSON messages. With `base_dirs` (opt-in, like ccache's `base_dir`)
//! the listed prefixes are also mapped: in the key, in the outputs (through rustc's
//! `--remap-path-prefix`) and in stored dep-info, so checkouts at different paths share entries.

use std::path::{Path, PathBuf};

/// What rustc is told a base dir is called (`--remap-path-prefix=BASE=/jetcc/base`). It shows
/// up in debug info and panic messages of mapped builds: the documented trade-off.
pub const MAPPED_BASE: &str = "/jetcc/base";

const OUT_DIR_PLACEHOLDER: &str = "\u{1}jetcc:out-dir\u{1}";

/// `-L dependency=` dirs (other than the out-dir) are numbered in the order given.
fn dep_dir_placeholder(i: usize) -> String {
    format!("\u{1}jetcc:dep-dir-{i}\u{1}")
}

/// Prefix rewrites for one invocation: (local text, stored text), longest local first.
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    pairs: Vec<(String, String)>,
    /// What [`MAPPED_BASE`] means here: the first base dir that contains the cwd, else the
    /// first base dir. With one base dir per machine that is exact.
    local_base: Option<String>,
}

impl PathMap {
    /// The map for a build in `cwd` writing to `out_dir`, finding crates in `dep_dirs`, with
    /// the given base dirs (all absolute).
    pub fn new(out_dir: &Path, dep_dirs: &[PathBuf], base_dirs: &[PathBuf], cwd: &Path) -> PathMap {
        let out = path_str(out_dir);
        let mut pairs = vec![(out.clone(), OUT_DIR_PLACEHOLDER.to_owned())];
        for (i, dir) in dep_dirs.iter().map(|d| path_str(d)).enumerate() {
            if dir != out {
                pairs.push((dir, dep_dir_placeholder(i)));
            }
        }
        for base in base_dirs {
            pairs.push((path_str(base), MAPPED_BASE.to_owned()));
        }
        // Longest first, so the out-dir (usually under a base dir) wins over its base.
        pairs.sort_by_key(|(local, _)| std::cmp::Reverse(local.len()));
        let cwd = path_str(cwd);
        let bases: Vec<String> = base_dirs.iter().map(|b| path_str(b)).collect();
        let local_base = bases
            .iter()
            .find(|b| is_prefix(b, &cwd))
            .or(bases.first())
            .cloned();
        PathMap { pairs, local_base }
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

    /// A path as it goes into the key: the out-dir, crate dirs and base dirs are replaced by
    /// placeholders, so the key says what a path is, not where this build keeps it.
    pub fn key_path(&self, path: &str) -> String {
        for (local, stored) in &self.pairs {
            if is_prefix(local, path) {
                return format!("{stored}{}", &path[local.len()..]);
            }
        }
        path.to_owned()
    }

    /// The `--remap-path-prefix` arguments rustc needs so outputs carry mapped paths.
    /// rustc applies the last matching mapping, so the longest prefix goes last.
    pub fn remap_args(&self) -> Vec<String> {
        self.pairs
            .iter()
            .rev()
            .filter(|(_, s)| s == MAPPED_BASE)
            .map(|(l, s)| format!("--remap-path-prefix={l}={s}"))
            .collect()
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
        let a = PathMap::new(Path::new("/a/target/debug/deps"), &[], &[], Path::new("/a"));
        let b = PathMap::new(Path::new("/b/t/debug/deps/"), &[], &[], Path::new("/b"));
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
        );
        let k = m.key_path("/p/target/debug/deps/libleaf-1.rlib");
        assert!(!k.contains("/p/target"), "{k}");
        let other = PathMap::new(
            Path::new("/q/t/debug/build/x-1"),
            &["/q/t/debug/deps".into()],
            &[],
            Path::new("/q"),
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
        let stored = a.store(b"/home/a/p/target/debug/deps/x.d: /home/a/p/src/lib.rs");
        let b = PathMap::new(
            Path::new("/home/b/p/target/debug/deps"),
            &[],
            &["/home/b".into()],
            Path::new("/home/b/p"),
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
}
