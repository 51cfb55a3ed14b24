//! Direct mode: find a result key without running rustc.
//!
//! A manifest belongs to one invocation digest and lists, newest first, what earlier compiles
//! of that invocation read (source files with their content digests, env deps) and the result
//! key each produced. Several entries coexist: the same invocation with other file contents.

use serde::{Deserialize, Serialize};

use crate::depinfo::escape_env_value;
use crate::digest::{seal, unseal, Digest};
use crate::files::{FileDigests, Stamp};
use crate::pathmap::PathMap;

/// Entries kept per manifest; older ones drop off (ccache clears past 100; we keep fewer
/// because a lookup checks each one).
pub const MAX_ENTRIES: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// As dep-info wrote it, in key form ([`PathMap::key_path`]).
    pub path: String,
    pub digest: Digest,
    /// The file's stamp when `digest` was taken, if it had settled (see [`crate::files`]).
    pub stamp: Option<Stamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Source files as dep-info listed them, with content digests.
    pub sources: Vec<Source>,
    /// `env!` dependencies, values in rustc's escaping and in key form.
    pub env_deps: Vec<(String, Option<String>)>,
    /// Local roots the outputs name although paths are portable (`env!("CARGO_MANIFEST_DIR")`
    /// in a constant): the entry is then only for builds with these same roots.
    #[serde(default)]
    pub local_roots: Vec<String>,
    pub key: Digest,
    /// When the entry was stored (seconds since the epoch).
    pub stored_at: u64,
}

impl Manifest {
    /// The manifest in msgpack, sealed ([`crate::digest::seal`]): a damaged one that still
    /// decoded could drop a source from an entry, which would then match a changed file.
    pub fn encode(&self) -> Vec<u8> {
        seal(rmp_serde::to_vec(self).expect("a manifest always serializes"))
    }

    /// A damaged or malformed manifest reads as empty: a miss, never an error.
    pub fn decode(bytes: &[u8]) -> Manifest {
        unseal(bytes)
            .and_then(|body| rmp_serde::from_slice(body).ok())
            .unwrap_or_default()
    }

    /// The newest entry whose every file and env dep matches now. Entries hold paths and
    /// values in key form; `map` turns them into this build's.
    pub fn find(
        &self,
        files: &mut FileDigests,
        env: &dyn Fn(&str) -> Option<String>,
        map: &PathMap,
    ) -> Option<&ManifestEntry> {
        let env_now = |name: &str| env(name).map(|v| map.key_path(&escape_env_value(&v)));
        self.entries.iter().find(|e| {
            e.env_deps.iter().all(|(name, want)| env_now(name) == *want)
                && e.local_roots.iter().all(|r| map.has_local_root(r))
                && e.sources
                    .iter()
                    .all(|s| files.matches(&map.local_path(&s.path), &s.digest, s.stamp.as_ref()))
        })
    }

    /// When the newest entry was stored.
    pub fn newest_stored_at(&self) -> Option<u64> {
        self.entries.iter().map(|e| e.stored_at).max()
    }

    /// Adds an entry in front, replacing one with the same key, and trims to [`MAX_ENTRIES`].
    pub fn insert(&mut self, entry: ManifestEntry) {
        self.entries.retain(|e| e.key != entry.key);
        self.entries.insert(0, entry);
        self.entries.truncate(MAX_ENTRIES);
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
            sources: vec![Source {
                path: "a.rs".into(),
                digest: Digest::of_bytes(content),
                stamp: None,
            }],
            env_deps: vec![("STAMP".into(), env.map(str::to_owned))],
            local_roots: vec![],
            key: Digest::of_bytes(key),
            stored_at: 0,
        };
        m.insert(entry(b"v1", Some("x"), b"k1"));
        m.insert(entry(b"v2", Some("x"), b"k2"));
        m.insert(entry(b"v2", None, b"k3"));
        let m = Manifest::decode(&m.encode());
        let mut files = FileDigests::new(dir.path(), None);
        let map = PathMap::default();
        let env_x = |n: &str| (n == "STAMP").then(|| "x".to_owned());
        let key = |e: Option<&ManifestEntry>| e.map(|e| e.key);
        assert_eq!(
            key(m.find(&mut files, &env_x, &map)),
            Some(Digest::of_bytes(b"k2"))
        );
        assert_eq!(
            key(m.find(&mut files, &|_| None, &map)),
            Some(Digest::of_bytes(b"k3"))
        );
        let env_y = |_: &str| Some("y".to_owned());
        assert_eq!(key(m.find(&mut files, &env_y, &map)), None);
    }

    #[test]
    fn insert_dedups_and_bounds() {
        let mut m = Manifest::default();
        for i in 0..40u8 {
            m.insert(ManifestEntry {
                sources: vec![],
                env_deps: vec![],
                local_roots: vec![],
                key: Digest::of_bytes(&[i % 20]),
                stored_at: i as u64,
            });
        }
        assert_eq!(m.entries.len(), MAX_ENTRIES);
        assert_eq!(m.entries[0].key, Digest::of_bytes(&[39 % 20]));
    }

    #[test]
    fn garbage_decodes_as_empty() {
        assert_eq!(Manifest::decode(b"nonsense").entries.len(), 0);
    }

    #[test]
    fn a_damaged_manifest_decodes_as_empty() {
        let mut m = Manifest::default();
        m.insert(ManifestEntry {
            sources: vec![Source {
                path: "src/lib.rs".into(),
                digest: Digest::of_bytes(b"v1"),
                stamp: None,
            }],
            env_deps: vec![("MODE".into(), Some("fast".into()))],
            local_roots: vec![],
            key: Digest::of_bytes(b"k"),
            stored_at: 7,
        });
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes), m);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x55;
            assert!(
                Manifest::decode(&bad).entries.is_empty(),
                "byte {i} flipped"
            );
        }
        assert!(Manifest::decode(&bytes[..bytes.len() / 2])
            .entries
            .is_empty());
    }
}
