//! Toolchains clients ship: a job that names a toolchain this worker lacks carries the
//! digest of its [`ToolchainPack`]; the pack and its files are fetched from the CAS (each
//! verified), unpacked into `<worker dir>/shipped/<pack>/` and run like a sysroot of the
//! worker's own, in the same jail. Only the jail ever runs what is unpacked here: a shipped
//! toolchain is the client's code (see docs/security.md).
//!
//! The cache is bounded (`[worker] toolchain_cache_size`), least recently used evicted first
//! but never under a running job; an unpacked toolchain counts only once it is complete (its
//! dir renamed into place, then its `<pack>.pack` written), and concurrent jobs for one pack
//! fetch it once.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use jetcc_common::farm::{Cas, FarmError, FarmErrorKind};
use jetcc_common::protocol::pack::{ToolchainPack, MAX_PACK_BYTES};
use jetcc_common::Digest;

use crate::toolchains::Toolchain;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot fetch the shipped toolchain {pack}: {source}")]
    Farm { pack: Digest, source: FarmError },
    #[error("the shipped toolchain {pack} is refused: {why}")]
    Invalid { pack: Digest, why: String },
    #[error("cannot unpack the shipped toolchain {pack}: {why}")]
    Io { pack: Digest, why: String },
}

/// Jobs running with each pack (never evicted under them).
type InUse = Arc<Mutex<HashMap<Digest, usize>>>;

pub struct ShippedCache {
    dir: PathBuf,
    limit: u64,
    /// The host triple this worker runs: a pack for another is refused.
    host: String,
    /// One lock per pack: the first job for it fetches, the others wait and find it there.
    unpacking: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    in_use: InUse,
}

/// A shipped toolchain a job runs with; while held, it is not evicted.
pub struct Held {
    pub toolchain: Toolchain,
    pack: Digest,
    in_use: InUse,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = in_use.get_mut(&self.pack) {
            *n -= 1;
            if *n == 0 {
                in_use.remove(&self.pack);
            }
        }
    }
}

/// The host triple this worker's binary was built for, which shipped rustcs must run on.
pub fn this_host() -> String {
    let env = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    format!("{}-unknown-linux-{env}", std::env::consts::ARCH)
}

impl ShippedCache {
    /// The cache in `dir`, holding at most `limit` bytes unpacked. What a worker that died
    /// left half-unpacked is removed.
    pub fn open(dir: PathBuf, limit: u64, host: String) -> io::Result<ShippedCache> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let complete = dir.join(format!("{name}.pack")).is_file();
            if entry.file_type()?.is_dir() && !complete {
                remove_tree(&entry.path())?;
            }
        }
        Ok(ShippedCache {
            dir,
            limit,
            host,
            unpacking: Mutex::default(),
            in_use: InUse::default(),
        })
    }

    /// The host triple it takes packs for.
    pub fn host(&self) -> &str {
        &self.host
    }

    fn sysroot(&self, pack: &Digest) -> PathBuf {
        self.dir.join(pack.hex())
    }

    fn pack_file(&self, pack: &Digest) -> PathBuf {
        self.dir.join(format!("{}.pack", pack.hex()))
    }

    /// The toolchain packed as `pack`, for a job naming `identity`: unpacked here already,
    /// else fetched and unpacked first.
    pub async fn get(&self, cas: &Cas, pack: Digest, identity: Digest) -> Result<Held, ShipError> {
        let lock = self
            .unpacking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pack)
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let held = self.hold(pack, identity);
        let unpacked = match self.read_pack(&pack) {
            Some(p) => {
                // The LRU clock: a use is a touch of its pack file.
                if let Ok(f) = std::fs::File::options()
                    .append(true)
                    .open(self.pack_file(&pack))
                {
                    let _ = f.set_modified(SystemTime::now());
                }
                tracing::debug!(%pack, "shipped toolchain found unpacked");
                p
            }
            None => self.fetch(cas, pack).await?,
        };
        let mut held = held;
        held.toolchain.name = unpacked.display_name();
        held.toolchain.host = unpacked.host.clone();
        Ok(held)
    }

    fn hold(&self, pack: Digest, identity: Digest) -> Held {
        *self
            .in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pack)
            .or_default() += 1;
        let sysroot = self.sysroot(&pack);
        Held {
            toolchain: Toolchain {
                identity,
                name: String::new(),
                host: self.host.clone(),
                program: sysroot.join("bin/rustc"),
                sysroot: Some(sysroot),
                shipped: Some(pack),
            },
            pack,
            in_use: self.in_use.clone(),
        }
    }

    /// The pack of a complete unpacked toolchain, if `pack` is one.
    fn read_pack(&self, pack: &Digest) -> Option<ToolchainPack> {
        let bytes = std::fs::read(self.pack_file(pack)).ok()?;
        ToolchainPack::decode(&bytes).ok()
    }

    /// Fetches `pack` and its files, each verified, into a temporary dir, then renames it
    /// into place: a half-unpacked toolchain is never used.
    async fn fetch(&self, cas: &Cas, pack: Digest) -> Result<ToolchainPack, ShipError> {
        let farm = |source| ShipError::Farm { pack, source };
        let invalid = |why: String| ShipError::Invalid { pack, why };
        let io = |what: &str, e: io::Error| ShipError::Io {
            pack,
            why: format!("{what}: {e}"),
        };
        let bytes = cas
            .get_at_most(&pack, MAX_PACK_BYTES as u64)
            .await
            .map_err(farm)?;
        let p = ToolchainPack::decode(&bytes).map_err(|e| invalid(e.to_string()))?;
        if p.host != self.host {
            return Err(invalid(format!(
                "it is for {}, this worker runs {}",
                p.host, self.host
            )));
        }
        if p.size() > self.limit {
            return Err(invalid(format!(
                "it takes {} bytes unpacked, more than [worker] toolchain_cache_size ({})",
                p.size(),
                self.limit
            )));
        }
        self.evict(p.size());
        let tmp = self
            .dir
            .join(format!(".tmp-{}-{}", pack.hex(), std::process::id()));
        let _ = remove_tree(&tmp);
        let started = std::time::Instant::now();
        let unpacked = self.unpack(cas, &p, &tmp).await;
        if let Err(e) = unpacked {
            let _ = remove_tree(&tmp);
            // A blob gone or damaged: drop the pack too, so the next client uploads it all
            // again (it checks only that the pack is there).
            if let ShipError::Farm { source, .. } = &e {
                if matches!(
                    source.kind,
                    FarmErrorKind::NotFound | FarmErrorKind::Corrupt
                ) {
                    let _ = cas.delete(&pack).await;
                }
            }
            return Err(e);
        }
        let sysroot = self.sysroot(&pack);
        let _ = remove_tree(&sysroot);
        std::fs::rename(&tmp, &sysroot).map_err(|e| io("rename it into place", e))?;
        jetcc_common::fsutil::write_atomic(&self.pack_file(&pack), &bytes)
            .map_err(|e| io("write its pack", e))?;
        tracing::info!(
            %pack,
            name = p.display_name(),
            files = p.files.len(),
            bytes = p.size(),
            took_ms = started.elapsed().as_millis() as u64,
            "shipped toolchain fetched and unpacked"
        );
        Ok(p)
    }

    async fn unpack(&self, cas: &Cas, p: &ToolchainPack, tmp: &Path) -> Result<(), ShipError> {
        let pack = p.digest();
        let io = |what: String, e: io::Error| ShipError::Io {
            pack,
            why: format!("{what}: {e}"),
        };
        for f in &p.files {
            let bytes = cas
                .get_sized(&f.digest, f.size)
                .await
                .map_err(|source| ShipError::Farm { pack, source })?;
            let dest = tmp.join(&f.path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| io(format!("create {}", parent.display()), e))?;
            }
            tokio::fs::write(&dest, bytes)
                .await
                .map_err(|e| io(format!("write {}", dest.display()), e))?;
            // Read-only for everyone (jobs run as another user); no setuid, ever.
            let mode = if f.executable { 0o555 } else { 0o444 };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io(format!("chmod {}", dest.display()), e))?;
        }
        Ok(())
    }

    /// Evicts the least recently used toolchains not in use until `need` more bytes fit.
    fn evict(&self, need: u64) {
        let mut held: Vec<(SystemTime, Digest, u64)> = self.list();
        let mut total: u64 = held.iter().map(|h| h.2).sum();
        held.sort_by_key(|h| h.0);
        let in_use = self
            .in_use
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (_, pack, size) in held {
            if total + need <= self.limit {
                break;
            }
            if in_use.contains_key(&pack) {
                continue;
            }
            // The pack file first: from then on it is no longer complete.
            let _ = std::fs::remove_file(self.pack_file(&pack));
            let _ = remove_tree(&self.sysroot(&pack));
            total -= size;
            tracing::info!(%pack, bytes = size, "shipped toolchain evicted");
        }
    }

    /// Every complete toolchain: last use, pack digest, unpacked size.
    fn list(&self) -> Vec<(SystemTime, Digest, u64)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                // Named by the bare hex form; a digest parses from its labelled form.
                let hex = name.strip_suffix(".pack")?;
                let pack: Digest = format!("blake3:{hex}").parse().ok()?;
                let used = e.metadata().ok()?.modified().ok()?;
                let p = self.read_pack(&pack)?;
                Some((used, pack, p.size()))
            })
            .collect()
    }

    /// The toolchains unpacked here, most recently used first, with their names: what the
    /// heartbeat announces.
    pub fn held(&self) -> Vec<(Digest, String)> {
        let mut list = self.list();
        list.sort_by_key(|h| std::cmp::Reverse(h.0));
        list.into_iter()
            .filter_map(|(_, pack, _)| Some((pack, self.read_pack(&pack)?.display_name())))
            .collect()
    }
}

/// Removes a tree whose files and dirs may be read-only.
fn remove_tree(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetcc_common::protocol::pack::{PackFile, PACK_VERSION};

    /// A complete unpacked toolchain of `size` bytes named `name`, last used `age_s` ago.
    fn unpacked(cache: &ShippedCache, name: &str, size: u64, age_s: u64) -> Digest {
        let pack = ToolchainPack {
            version: PACK_VERSION,
            host: cache.host.clone(),
            name: name.into(),
            files: vec![PackFile {
                path: "bin/rustc".into(),
                digest: Digest::of_bytes(name.as_bytes()),
                size,
                executable: true,
            }],
        };
        let digest = pack.digest();
        let bin = cache.sysroot(&digest).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("rustc"), name).unwrap();
        std::fs::write(cache.pack_file(&digest), pack.encode()).unwrap();
        let used = SystemTime::now() - std::time::Duration::from_secs(age_s);
        std::fs::File::options()
            .append(true)
            .open(cache.pack_file(&digest))
            .unwrap()
            .set_modified(used)
            .unwrap();
        digest
    }

    #[test]
    fn the_least_recently_used_toolchain_not_in_use_is_evicted_first() {
        let tmp = tempfile::tempdir().unwrap();
        let cache =
            ShippedCache::open(tmp.path().into(), 100, "x86_64-unknown-linux-gnu".into()).unwrap();
        let old = unpacked(&cache, "rustc old", 60, 100);
        let new = unpacked(&cache, "rustc new", 30, 10);
        let names: Vec<String> = cache.held().into_iter().map(|(_, n)| n).collect();
        assert_eq!(
            names,
            ["rustc new", "rustc old"],
            "most recently used first"
        );

        // 90 held; 30 more need the old one gone, and only that one.
        cache.evict(30);
        assert!(!cache.sysroot(&old).exists() && !cache.pack_file(&old).exists());
        assert!(cache.sysroot(&new).exists() && cache.read_pack(&new).is_some());

        // One in use is never evicted, even if it is the oldest.
        let old = unpacked(&cache, "rustc old", 60, 100);
        let held = cache.hold(old, Digest::of_bytes(b"identity"));
        cache.evict(30);
        assert!(cache.read_pack(&old).is_some(), "in use");
        assert!(cache.read_pack(&new).is_none(), "evicted instead");
        drop(held);
        cache.evict(100);
        assert!(cache.held().is_empty());
    }

    #[test]
    fn a_half_unpacked_toolchain_is_removed_at_start_and_never_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let cache =
            ShippedCache::open(dir.clone(), 100, "x86_64-unknown-linux-gnu".into()).unwrap();
        let done = unpacked(&cache, "rustc done", 10, 0);
        // A dir without its pack file: renamed into place, then the worker died.
        let half = dir.join(Digest::of_bytes(b"half").hex());
        std::fs::create_dir_all(half.join("bin")).unwrap();
        let tmp_dir = dir.join(".tmp-x-1");
        std::fs::create_dir_all(&tmp_dir).unwrap();
        assert_eq!(cache.held().len(), 1, "only the complete one counts");
        let cache =
            ShippedCache::open(dir.clone(), 100, "x86_64-unknown-linux-gnu".into()).unwrap();
        assert!(!half.exists() && !tmp_dir.exists());
        assert!(cache.read_pack(&done).is_some());
    }
}
