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
    /// What [`MAPPED_BASE`] means here: the first base dir that contains the cwd, else the
    /// first base dir. With one base dir per machine that is exact.
    local_base: Option<String>,
}

impl PathMap {
    /// The map for a build in `cwd` writing to `out_dir` with the given base dirs (absolute).
    pub fn new(out_dir: &Path, base_dirs: &[PathBuf], cwd: &Path) -> PathMap {
        let mut pairs = vec![(path_str(out_dir), OUT_DIR_PLACEHOLDER.to_owned())];
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
        match (&self.local_base, key_path.strip_prefix(MAPPED_BASE)) {
            (Some(base), Some(rest)) if rest.is_empty() || rest.starts_with('/') => {
                format!("{base}{rest}")
            }
            _ => key_path.to_owned(),
        }
    }

    /// A path as it goes into the key: a base-dir prefix replaced by [`MAPPED_BASE`].
    pub fn key_path(&self, path: &str) -> String {
        for (local, stored) in &self.pairs {
            if stored == MAPPED_BASE && is_prefix(local, path) {
                return format!("{MAPPED_BASE}{}", &path[local.len()..]);
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
        let a = PathMap::new(Path::new("/a/target/debug/deps"), &[], Path::new("/a"));
        let b = PathMap::new(Path::new("/b/t/debug/deps/"), &[], Path::new("/b"));
        let msg = br#"{"artifact":"/a/target/debug/deps/libx.rmeta","emit":"metadata"}"#;
        let stored = a.store(msg);
        assert!(!String::from_utf8_lossy(&stored).contains("/a/target"));
        assert_eq!(
            b.restore(&stored),
            br#"{"artifact":"/b/t/debug/deps/libx.rmeta","emit":"metadata"}"#
        );
    }

    #[test]
    fn base_dirs_map_key_paths_and_restore() {
        let a = PathMap::new(
            Path::new("/home/a/p/target/debug/deps"),
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
