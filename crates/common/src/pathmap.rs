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

/// Prefix rewrites for one invocation: (local text, stored text), longest local first.
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    pairs: Vec<(String, String)>,
}

impl PathMap {
    /// The map for a build writing to `out_dir` with the given base dirs (absolute paths).
    pub fn new(out_dir: &Path, base_dirs: &[PathBuf]) -> PathMap {
        let mut pairs = vec![(path_str(out_dir), OUT_DIR_PLACEHOLDER.to_owned())];
        for base in base_dirs {
            pairs.push((path_str(base), MAPPED_BASE.to_owned()));
        }
        // Longest first, so the out-dir (usually under a base dir) wins over its base.
        pairs.sort_by_key(|(local, _)| std::cmp::Reverse(local.len()));
        PathMap { pairs }
    }

    /// Local paths → stored form.
    pub fn store(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for (local, stored) in &self.pairs {
            out = replace(&out, local.as_bytes(), stored.as_bytes());
        }
        out
    }

    /// Stored form → local paths. A mapped base restores as the first base dir that contains
    /// `cwd` (else the first one): with one base dir per machine that is exact.
    pub fn restore(&self, bytes: &[u8], cwd: &Path) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let cwd = path_str(cwd);
        let base = self
            .pairs
            .iter()
            .filter(|(_, s)| s == MAPPED_BASE)
            .map(|(l, _)| l)
            .find(|l| cwd.starts_with(l.as_str()))
            .or_else(|| {
                self.pairs
                    .iter()
                    .find(|(_, s)| s == MAPPED_BASE)
                    .map(|(l, _)| l)
            });
        for (local, stored) in &self.pairs {
            if stored == MAPPED_BASE {
                continue;
            }
            out = replace(&out, stored.as_bytes(), local.as_bytes());
        }
        if let Some(base) = base {
            out = replace(&out, MAPPED_BASE.as_bytes(), base.as_bytes());
        }
        out
    }

    /// A path as it goes into the key: a base-dir prefix replaced by [`MAPPED_BASE`].
    pub fn key_path(&self, path: &str) -> String {
        for (local, stored) in &self.pairs {
            if stored == MAPPED_BASE {
                if let Some(rest) = path.strip_prefix(local.as_str()) {
                    if rest.is_empty() || rest.starts_with('/') {
                        return format!("{MAPPED_BASE}{rest}");
                    }
                }
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

    pub fn maps_base_dirs(&self) -> bool {
        self.pairs.iter().any(|(_, s)| s == MAPPED_BASE)
    }
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
        let a = PathMap::new(Path::new("/a/target/debug/deps"), &[]);
        let b = PathMap::new(Path::new("/b/t/debug/deps/"), &[]);
        let msg = br#"{"artifact":"/a/target/debug/deps/libx.rmeta","emit":"metadata"}"#;
        let stored = a.store(msg);
        assert!(!String::from_utf8_lossy(&stored).contains("/a/target"));
        assert_eq!(
            b.restore(&stored, Path::new("/b")),
            br#"{"artifact":"/b/t/debug/deps/libx.rmeta","emit":"metadata"}"#
        );
    }

    #[test]
    fn base_dirs_map_key_paths_and_restore() {
        let a = PathMap::new(
            Path::new("/home/a/p/target/debug/deps"),
            &["/home/a".into()],
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
            &["/home/b".into()],
        );
        assert_eq!(
            b.restore(&stored, Path::new("/home/b/p")),
            b"/home/b/p/target/debug/deps/x.d: /home/b/p/src/lib.rs"
        );
    }
}
