//! A shipped toolchain: the files of a client's rustc sysroot that a compile needs
//! (`bin/rustc`, `lib/*.so*`, `lib/rustlib/<host>/{lib,bin}`), each a CAS blob, listed in a
//! [`ToolchainPack`]. The pack itself is a CAS blob too, and its digest is what a job names
//! in [`JobRequest::shipped`](super::job::JobRequest::shipped): two clients with the same
//! toolchain make the same pack, so it is uploaded once.
//!
//! A pack comes from a client, so a worker decodes it bounded and refuses any path that
//! could land outside the dir it unpacks into, or any mode beyond plain read/execute.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::job::{decode_bounded, ProtocolError};
use crate::Digest;

/// Largest encoded pack accepted (a sysroot lists a few hundred files).
pub const MAX_PACK_BYTES: usize = 1 << 20;
/// Most files one pack may list.
const MAX_PACK_FILES: usize = 4_000;
/// Largest unpacked toolchain accepted (a stable x86_64 sysroot's parts are about 0.5 GB).
pub const MAX_PACK_SIZE: u64 = 4 << 30;
/// Longest name shown for people.
const MAX_NAME: usize = 120;

/// The version of the pack format; a worker refuses others.
pub const PACK_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolchainPack {
    pub version: u16,
    /// The host triple its rustc runs on (`rustc -vV`'s `host:`): only a worker of that
    /// host runs it.
    pub host: String,
    /// For people: `rustc -vV`'s first line (shown by `--dist-status` and the monitor).
    pub name: String,
    /// Every file, sorted by path: the pack's digest does not depend on directory order.
    pub files: Vec<PackFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackFile {
    /// Relative to the sysroot, `/`-separated, no `.` or `..`.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    /// Whether it is executable (unpacked `0o555`, else `0o444`): no other mode bit ships.
    pub executable: bool,
}

impl ToolchainPack {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a pack always serializes")
    }

    /// The pack's identity: the digest of its encoding, which is its CAS blob's name.
    pub fn digest(&self) -> Digest {
        Digest::of_bytes(&self.encode())
    }

    /// Decodes and validates a pack from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<ToolchainPack, ProtocolError> {
        let pack: ToolchainPack = decode_bounded(bytes, MAX_PACK_BYTES)?;
        pack.validate()?;
        Ok(pack)
    }

    /// The bytes its files take unpacked.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// `name`, as safe to print: printable ASCII only, bounded.
    pub fn display_name(&self) -> String {
        self.name
            .chars()
            .map(|c| match c {
                ' '..='~' => c,
                _ => '?',
            })
            .take(MAX_NAME)
            .collect()
    }

    pub fn validate(&self) -> Result<(), ProtocolError> {
        let invalid = |why: String| ProtocolError::Invalid {
            field: "toolchain pack",
            why,
        };
        if self.version != PACK_VERSION {
            return Err(invalid(format!(
                "pack version {} is not {PACK_VERSION}",
                self.version
            )));
        }
        if self.files.len() > MAX_PACK_FILES {
            return Err(invalid(format!("{} files listed", self.files.len())));
        }
        if self.size() > MAX_PACK_SIZE {
            return Err(invalid(format!("{} bytes unpacked", self.size())));
        }
        if !self
            .files
            .iter()
            .any(|f| f.path == "bin/rustc" && f.executable)
        {
            return Err(invalid("no executable bin/rustc".into()));
        }
        let mut seen = HashSet::new();
        for f in &self.files {
            pack_path(&f.path).map_err(&invalid)?;
            if !seen.insert(f.path.as_str()) {
                return Err(invalid(format!("{:?} is listed twice", f.path)));
            }
        }
        // No file where another needs a directory (`lib` as a file and `lib/x`).
        for f in &self.files {
            let p = Path::new(&f.path);
            if let Some(a) = p
                .ancestors()
                .skip(1)
                .find(|a| seen.contains(a.to_str().unwrap_or("")))
            {
                return Err(invalid(format!(
                    "{} is a file and a directory on the way to {}",
                    a.display(),
                    f.path
                )));
            }
        }
        Ok(())
    }
}

/// Whether `path` may be in a pack: relative, plain components, under `bin/rustc` or `lib/`.
fn pack_path(path: &str) -> Result<(), String> {
    // Split by hand: `Path::components` would skip a `.` and an empty component.
    let plain = !path.is_empty()
        && path.len() <= 1024
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !plain {
        return Err(format!("{path:?} is not a plain relative path"));
    }
    if path != "bin/rustc" && !path.starts_with("lib/") {
        return Err(format!("{path:?} is neither bin/rustc nor under lib/"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, executable: bool) -> PackFile {
        PackFile {
            path: path.into(),
            digest: Digest::of_bytes(path.as_bytes()),
            size: 10,
            executable,
        }
    }

    fn pack() -> ToolchainPack {
        ToolchainPack {
            version: PACK_VERSION,
            host: "x86_64-unknown-linux-gnu".into(),
            name: "rustc 1.95.0 (abc 2026-01-01)".into(),
            files: vec![
                file("bin/rustc", true),
                file("lib/librustc_driver-1.so", false),
                file(
                    "lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-1.rlib",
                    false,
                ),
            ],
        }
    }

    #[test]
    fn round_trips_and_its_digest_is_its_encoding() {
        let p = pack();
        let bytes = p.encode();
        assert_eq!(ToolchainPack::decode(&bytes).unwrap(), p);
        assert_eq!(p.digest(), Digest::of_bytes(&bytes));
        assert_eq!(p.size(), 30);
    }

    #[test]
    fn hostile_packs_are_refused() {
        type Mutation = fn(&mut ToolchainPack);
        let cases: Vec<(Mutation, &str)> = vec![
            (|p| p.files[1].path = "../../etc/cron.d/x".into(), "plain"),
            (|p| p.files[1].path = "/etc/passwd".into(), "plain"),
            (|p| p.files[1].path = "lib/./x".into(), "plain"),
            (|p| p.files[1].path = "lib//x".into(), "plain"),
            (|p| p.files[1].path = "lib/".into(), "plain"),
            (|p| p.files[1].path = "etc/x".into(), "neither"),
            (|p| p.files[1].path = "bin/cargo".into(), "neither"),
            (
                |p| p.files.push(file("lib/librustc_driver-1.so", false)),
                "twice",
            ),
            (
                |p| p.files.push(file("lib/librustc_driver-1.so/x", false)),
                "a directory",
            ),
            (|p| p.files[0].executable = false, "bin/rustc"),
            (
                |p| {
                    p.files.remove(0);
                },
                "bin/rustc",
            ),
            (|p| p.files[1].size = MAX_PACK_SIZE, "bytes"),
            (|p| p.version = 9, "version"),
        ];
        for (mutate, want) in cases {
            let mut p = pack();
            mutate(&mut p);
            match ToolchainPack::decode(&p.encode()) {
                Err(ProtocolError::Invalid { why, .. }) => assert!(why.contains(want), "{why}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        assert!(matches!(
            ToolchainPack::decode(&vec![0u8; MAX_PACK_BYTES + 1]),
            Err(ProtocolError::TooLarge(_))
        ));
    }

    #[test]
    fn names_are_shown_printable_and_bounded() {
        let mut p = pack();
        p.name = format!("rustc \x1b[31mred\x07{}", "x".repeat(500));
        let shown = p.display_name();
        assert!(shown.starts_with("rustc ?[31mred?"), "{shown}");
        assert_eq!(shown.chars().count(), MAX_NAME);
    }
}
