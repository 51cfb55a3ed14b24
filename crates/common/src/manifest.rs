//! Direct mode: find a result key without running rustc.
//!
//! A manifest belongs to one invocation digest and lists, newest first, what earlier compiles
//! of that invocation read (source files with their content digests, env deps) and the result
//! key each produced. Several entries coexist: the same invocation with other file contents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::depinfo::escape_env_value;
use crate::digest::Digest;

/// Entries kept per manifest; older ones drop off (ccache clears past 100; we keep fewer
/// because a lookup checks each one).
pub const MAX_ENTRIES: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Source paths as dep-info wrote them, with content digests.
    pub sources: Vec<(String, Digest)>,
    pub env_deps: Vec<(String, Option<String>)>,
    pub key: Digest,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a manifest always serializes")
    }

    /// A malformed manifest reads as empty: a miss, never an error.
    pub fn decode(bytes: &[u8]) -> Manifest {
        rmp_serde::from_slice(bytes).unwrap_or_default()
    }

    /// The key of the newest entry whose every file and env dep matches now.
    pub fn find(
        &self,
        files: &mut FileDigests,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Digest> {
        self.entries.iter().find_map(|e| {
            let env_ok = e
                .env_deps
                .iter()
                .all(|(name, want)| env(name).map(|v| escape_env_value(&v)) == *want);
            let files_ok = env_ok
                && e.sources
                    .iter()
                    .all(|(path, want)| files.digest(path) == Some(*want));
            files_ok.then_some(e.key)
        })
    }

    /// Adds an entry in front, replacing one with the same key, and trims to [`MAX_ENTRIES`].
    pub fn insert(&mut self, entry: ManifestEntry) {
        self.entries.retain(|e| e.key != entry.key);
        self.entries.insert(0, entry);
        self.entries.truncate(MAX_ENTRIES);
    }
}

/// Content digests of files relative to one cwd, each file hashed at most once per process.
pub struct FileDigests {
    cwd: PathBuf,
    memo: HashMap<String, Option<Digest>>,
}

impl FileDigests {
    pub fn new(cwd: &Path) -> FileDigests {
        FileDigests {
            cwd: cwd.to_path_buf(),
            memo: HashMap::new(),
        }
    }

    /// The digest of `path` (as dep-info wrote it), or `None` if it cannot be read.
    pub fn digest(&mut self, path: &str) -> Option<Digest> {
        if let Some(d) = self.memo.get(path) {
            return *d;
        }
        let d = Digest::of_file(&self.cwd.join(path)).ok();
        self.memo.insert(path.to_owned(), d);
        d
    }

    /// Whether any of `paths` changed at or after `since` (mtime or ctime): a file edited
    /// while rustc ran may not match what rustc read, so the result must not be stored.
    pub fn changed_since(&self, paths: &[String], since: SystemTime) -> bool {
        use std::os::unix::fs::MetadataExt;
        let since_ns = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        paths
            .iter()
            .any(|p| match std::fs::metadata(self.cwd.join(p)) {
                Ok(m) => {
                    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
                    ns(m.mtime(), m.mtime_nsec()) >= since_ns
                        || ns(m.ctime(), m.ctime_nsec()) >= since_ns
                }
                Err(_) => true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_entry_matching_current_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rs"), "v2").unwrap();
        let mut m = Manifest::default();
        let entry = |content: &[u8], env: Option<&str>, key: &[u8]| ManifestEntry {
            sources: vec![("a.rs".into(), Digest::of_bytes(content))],
            env_deps: vec![("STAMP".into(), env.map(str::to_owned))],
            key: Digest::of_bytes(key),
        };
        m.insert(entry(b"v1", Some("x"), b"k1"));
        m.insert(entry(b"v2", Some("x"), b"k2"));
        m.insert(entry(b"v2", None, b"k3"));
        let m = Manifest::decode(&m.encode());
        let mut files = FileDigests::new(dir.path());
        let env_x = |n: &str| (n == "STAMP").then(|| "x".to_owned());
        assert_eq!(m.find(&mut files, &env_x), Some(Digest::of_bytes(b"k2")));
        assert_eq!(m.find(&mut files, &|_| None), Some(Digest::of_bytes(b"k3")));
        let env_y = |_: &str| Some("y".to_owned());
        assert_eq!(m.find(&mut files, &env_y), None);
    }

    #[test]
    fn insert_dedups_and_bounds() {
        let mut m = Manifest::default();
        for i in 0..40u8 {
            m.insert(ManifestEntry {
                sources: vec![],
                env_deps: vec![],
                key: Digest::of_bytes(&[i % 20]),
            });
        }
        assert_eq!(m.entries.len(), MAX_ENTRIES);
        assert_eq!(m.entries[0].key, Digest::of_bytes(&[39 % 20]));
    }

    #[test]
    fn garbage_decodes_as_empty() {
        assert_eq!(Manifest::decode(b"nonsense").entries.len(), 0);
    }
}
