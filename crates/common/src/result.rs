//! The cache entry: what one compile produced, in a form independent of where it ran.

use serde::{Deserialize, Serialize};

use crate::digest::{seal, unseal, Digest};

/// Bumped whenever the entry format or the key recipe changes: old entries then simply miss.
pub const FORMAT_VERSION: u32 = 4;

/// One action's result: a compile, or a build-script run (its `OUT_DIR` packed as one
/// output). Paths of this build (the out-dir) are replaced by placeholders in `stderr`,
/// `stdout` and `dep_info` (see [`crate::pathmap`]), so an entry restores into any target dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub version: u32,
    /// Output files other than dep-info, by name relative to the out-dir.
    pub outputs: Vec<OutputFile>,
    /// The dep-info file: its name and its text, with placeholders (rustc writes one).
    pub dep_info: Option<(String, String)>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
    /// How long the real compile (or run) took: the time a hit saves.
    pub compile_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub digest: Digest,
    pub size: u64,
    pub mode: u32,
}

impl CacheEntry {
    /// The entry in msgpack, sealed ([`crate::digest::seal`]): a hit replays its stdout as a
    /// build script's directives, so a damaged entry must not decode.
    pub fn encode(&self) -> Vec<u8> {
        seal(rmp_serde::to_vec(self).expect("a cache entry always serializes"))
    }

    /// Decodes an entry; any damage, format error or an old version is `None` (a miss).
    pub fn decode(bytes: &[u8]) -> Option<CacheEntry> {
        let entry: CacheEntry = rmp_serde::from_slice(unseal(bytes)?).ok()?;
        (entry.version == FORMAT_VERSION
            && entry
                .outputs
                .iter()
                .all(|o| is_plain_name(&o.name) && is_plain_mode(o.mode))
            && entry.dep_info.iter().all(|(name, _)| is_plain_name(name)))
        .then_some(entry)
    }

    pub fn total_output_bytes(&self) -> u64 {
        self.outputs.iter().map(|o| o.size).sum()
    }
}

/// Permission bits only: no setuid, setgid or sticky bit, no file type. Outputs are stored
/// with `mode & 0o777`; anything else in an entry was not written by jetcc.
pub fn is_plain_mode(mode: u32) -> bool {
    mode & !0o777 == 0
}

/// A file name with no directory part: entries can never write outside the out-dir.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> CacheEntry {
        CacheEntry {
            version: FORMAT_VERSION,
            outputs: vec![OutputFile {
                name: name.into(),
                digest: Digest::of_bytes(b"x"),
                size: 1,
                mode: 0o644,
            }],
            dep_info: Some(("a.d".into(), "x: y".into())),
            stdout: vec![],
            stderr: b"warning".to_vec(),
            exit_code: 0,
            compile_ms: 5,
        }
    }

    #[test]
    fn round_trip() {
        let e = entry("liba.rlib");
        assert_eq!(CacheEntry::decode(&e.encode()), Some(e));
    }

    #[test]
    fn any_damaged_byte_is_refused() {
        let bytes = entry("liba.rlib").encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x55;
            assert_eq!(CacheEntry::decode(&bad), None, "byte {i} flipped");
        }
        assert_eq!(CacheEntry::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn traversal_special_modes_and_garbage_are_refused() {
        assert_eq!(CacheEntry::decode(&entry("../evil").encode()), None);
        for mode in [0o4755, 0o2755, 0o1777, 0o100644] {
            let mut e = entry("build-script-build");
            e.outputs[0].mode = mode;
            assert_eq!(CacheEntry::decode(&e.encode()), None, "{mode:o}");
        }
        assert_eq!(CacheEntry::decode(b"\x93garbage"), None);
    }
}
