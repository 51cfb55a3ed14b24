//! Shares waiting to be written to the shared tiers, and the uploader that writes them.
//!
//! A wrapper that compiled a miss here stores it locally, files its share in `shares/` and
//! returns to cargo: writing it to a shared tier (every output uploaded, then the entry and
//! the manifest, several round trips) no longer holds up cargo's job slot. One uploader per
//! cache dir (`jetcc __share`, started detached by the wrapper that files a share and finds
//! none running) writes them, oldest first, over one connection per tier, and leaves.
//!
//! - A share names the invocation, the manifest entry, the out-dir and the tiers to write;
//!   its entry and blobs are read from the local tier (the out-dir, verified, if a blob is
//!   gone), so the local tier must hold them: a read-only local tier shares in the wrapper.
//! - The uploader holds `shares.lock` while it runs. A wrapper files first and then looks at
//!   the lock; an uploader that emptied the dir looks once more after letting go of it, so
//!   a share filed meanwhile is never left behind. An uploader that finds the lock taken
//!   leaves at once.
//! - It keeps no pipe of cargo's (stdin, stdout and stderr are `/dev/null`, every other
//!   inherited fd is closed at its start, the jobserver's included, and the jobserver's
//!   variables are not passed on): cargo neither waits for it nor lends it a token.
//! - A tier that is down keeps its shares filed for [`MAX_AGE`] (the next uploader tries
//!   again); past that, or beyond [`MAX_FILED`] waiting, they are dropped and counted.
//! - `jetcc --wait-shares` ([`drain`] waiting for the lock) writes what is left: the last
//!   step of a CI job that must leave every result shared. `--show-stats` says how many wait.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jetcc_common::cache::DiskCache;
use jetcc_common::config::Config;
use jetcc_common::manifest::{Manifest, ManifestEntry};
use jetcc_common::Digest;
use serde::{Deserialize, Serialize};

use super::SharedTiers;

/// The command a wrapper starts the uploader with.
pub const COMMAND: &str = "__share";

/// Shares older than this are dropped unwritten (their tier was down all along).
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// At most this many shares wait; a wrapper that finds more shares in the process.
pub const MAX_FILED: usize = 2000;

const VERSION: u32 = 1;

/// One result to write to the shared tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub invocation: Digest,
    pub found: ManifestEntry,
    /// Where the outputs were written (read there only if the local tier lost a blob).
    pub out_dir: PathBuf,
    /// Compiled on the farm (its outputs are in the JetStream CAS already).
    pub on_farm: bool,
    /// The tiers still to write, by name.
    pub tiers: Vec<String>,
    /// How logs name the unit.
    pub label: String,
    filed_unix_ms: u64,
}

/// A share as filed: JSON, with the manifest entry in the manifest's own sealed encoding (a
/// digest is raw bytes in serde, which JSON does not give back).
#[derive(Serialize, Deserialize)]
struct Filed {
    v: u32,
    invocation: String,
    manifest: Vec<u8>,
    out_dir: PathBuf,
    on_farm: bool,
    tiers: Vec<String>,
    label: String,
    filed_unix_ms: u64,
}

impl Share {
    pub fn new(
        invocation: Digest,
        found: ManifestEntry,
        out_dir: PathBuf,
        on_farm: bool,
        tiers: Vec<String>,
        label: String,
    ) -> Share {
        Share {
            invocation,
            found,
            out_dir,
            on_farm,
            tiers,
            label,
            filed_unix_ms: unix_ms(),
        }
    }

    fn age(&self) -> Duration {
        Duration::from_millis(unix_ms().saturating_sub(self.filed_unix_ms))
    }

    fn encode(&self) -> Vec<u8> {
        let manifest = Manifest {
            entries: vec![self.found.clone()],
        };
        let filed = Filed {
            v: VERSION,
            invocation: self.invocation.to_string(),
            manifest: manifest.encode(),
            out_dir: self.out_dir.clone(),
            on_farm: self.on_farm,
            tiers: self.tiers.clone(),
            label: self.label.clone(),
            filed_unix_ms: self.filed_unix_ms,
        };
        serde_json::to_vec(&filed).expect("a share serializes")
    }

    /// `None`: damaged, or of another version.
    fn decode(bytes: &[u8]) -> Option<Share> {
        let filed: Filed = serde_json::from_slice(bytes).ok()?;
        if filed.v != VERSION {
            return None;
        }
        let found = Manifest::decode(&filed.manifest).entries.pop()?;
        Some(Share {
            invocation: filed.invocation.parse().ok()?,
            found,
            out_dir: filed.out_dir,
            on_farm: filed.on_farm,
            tiers: filed.tiers,
            label: filed.label,
            filed_unix_ms: filed.filed_unix_ms,
        })
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("shares")
}

fn lock_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("shares.lock")
}

/// The shares waiting, oldest first (names start with the filing time).
pub fn filed(cache_dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir(cache_dir)) else {
        return Vec::new();
    };
    let mut names: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "share"))
        .collect();
    names.sort();
    names
}

/// Why a share could not be filed (the wrapper then writes it itself).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{MAX_FILED} shares are waiting already")]
    Full,
    #[error("cannot file a share in {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Files `share` for the uploader.
pub fn file(cache_dir: &Path, share: &Share) -> Result<PathBuf, FileError> {
    if filed(cache_dir).len() >= MAX_FILED {
        return Err(FileError::Full);
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let path = dir(cache_dir).join(format!("{now:024}-{}-{seq}.share", std::process::id()));
    jetcc_common::fsutil::write_atomic_mkdir(&path, &share.encode())
        .map_err(|e| FileError::Io(path.clone(), e))?;
    Ok(path)
}

/// The uploader's lock, if free (`wait`: once free).
fn lock(cache_dir: &Path, wait: bool) -> Option<File> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(lock_path(cache_dir))
        .ok()?;
    match wait {
        true => file.lock().ok()?,
        false => file.try_lock().ok()?,
    }
    Some(file)
}

/// Whether an uploader runs for this cache dir now.
pub fn uploader_runs(cache_dir: &Path) -> bool {
    lock(cache_dir, false).is_none()
}

/// Starts the uploader, detached, unless one runs. `Err`: it could not be started.
// Not waited for: the wrapper exits soon after, and init reaps it.
#[allow(clippy::zombie_processes)]
pub fn start_uploader(cache_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if uploader_runs(cache_dir) {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg(COMMAND)
        // Its own process group: cargo's Ctrl-C does not cut a write short.
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // cargo's jobserver: the uploader takes no part in it (its fds are closed at start).
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .spawn()?;
    tracing::debug!(pid = child.id(), "started the uploader");
    Ok(())
}

/// `jetcc __share`: closes what it inherited from cargo, writes every filed share, exits 0.
pub fn run_uploader() -> i32 {
    close_inherited_fds();
    crate::write_stats_through();
    crate::logging::init();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "the uploader cannot read the config: {}",
                jetcc_common::redact::credentials(&e.to_string())
            );
            return 0;
        }
    };
    let drained = drain(&config, false);
    tracing::debug!(
        written = drained.written,
        dropped = drained.dropped,
        left = drained.left,
        "uploader done"
    );
    0
}

/// Closes every fd above stderr this process inherited (cargo's jobserver pipe, say): a
/// detached uploader must hold nothing of the build open.
fn close_inherited_fds() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in fds.into_iter().filter(|fd| *fd > 2) {
        // The read_dir's own fd is closed already (gone with the iterator): closing it
        // again fails harmlessly. Nothing else in this process has opened a file yet.
        // SAFETY: no other owner of these fds exists in this fresh process.
        if std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok() {
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
}

/// What a [`drain`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Drained {
    /// Shares written to every tier they named.
    pub written: u64,
    /// Shares given up: too old, their entry gone, or a tier refused them.
    pub dropped: u64,
    /// Shares still filed when it ended (a tier down, or another uploader has them).
    pub left: u64,
}

/// Writes every filed share, oldest first, holding the uploader's lock (`wait`: waiting
/// for a running uploader to finish first; else leaving at once if one runs).
pub fn drain(config: &Config, wait: bool) -> Drained {
    let cache_dir = &config.cache_dir;
    let mut drained = Drained::default();
    if !cache_dir.exists() {
        // No cache dir, nothing filed: and `--wait-shares` must not make one (a build
        // with `JETCC_DISABLE=1` leaves no trace).
        return drained;
    }
    let mut tried: HashSet<PathBuf> = HashSet::new();
    let cache = DiskCache::open(cache_dir, config.cache_size).ok();
    let mut tiers = SharedTiers::new(config).for_uploader();
    loop {
        let Some(held) = lock(cache_dir, wait) else {
            drained.left = filed(cache_dir).len() as u64;
            return drained;
        };
        loop {
            let fresh: Vec<PathBuf> = filed(cache_dir)
                .into_iter()
                .filter(|p| !tried.contains(p))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for path in fresh {
                match settle(&mut tiers, cache.as_ref(), &path) {
                    Settled::Written => drained.written += 1,
                    Settled::Dropped => drained.dropped += 1,
                    Settled::Kept => {}
                }
                tried.insert(path);
            }
        }
        drop(held);
        // One filed while we let go of the lock is ours: its wrapper saw the lock taken.
        if filed(cache_dir).iter().all(|p| tried.contains(p)) {
            drained.left = filed(cache_dir).len() as u64;
            return drained;
        }
    }
}

enum Settled {
    Written,
    Dropped,
    Kept,
}

/// Writes one filed share to the tiers it names; removes it unless a tier that was down
/// still has to be written.
fn settle(tiers: &mut SharedTiers, cache: Option<&DiskCache>, path: &Path) -> Settled {
    let share = std::fs::read(path).ok().and_then(|b| Share::decode(&b));
    let Some(mut share) = share else {
        // A damaged share (or one of another version): nothing to write.
        tracing::warn!("dropped an unreadable share: {}", path.display());
        let _ = std::fs::remove_file(path);
        return Settled::Dropped;
    };
    let entry = cache.and_then(|c| c.entry(&share.found.key));
    let Some(entry) = entry.filter(|_| share.age() < MAX_AGE) else {
        tracing::info!(
            unit = share.label,
            tiers = ?share.tiers,
            "not shared: its local entry is gone, or it waited over {MAX_AGE:?}"
        );
        let _ = std::fs::remove_file(path);
        return Settled::Dropped;
    };
    let left = tiers.write_share(&share, &entry, cache);
    if left.is_empty() {
        let _ = std::fs::remove_file(path);
        return Settled::Written;
    }
    share.tiers = left;
    let _ = jetcc_common::fsutil::write_atomic(path, &share.encode());
    Settled::Kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filed_share_reads_back_as_filed_and_a_damaged_one_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let found = ManifestEntry {
            sources: Vec::new(),
            env_deps: vec![("HOME".into(), Some("/root".into()))],
            local_roots: Vec::new(),
            key: Digest::of_bytes(b"key"),
            stored_at: 7,
        };
        let share = Share::new(
            Digest::of_bytes(b"invocation"),
            found,
            PathBuf::from("/t/debug/deps"),
            false,
            vec!["jetstream".into()],
            "leaf".into(),
        );
        let path = file(dir.path(), &share).unwrap();
        assert_eq!(filed(dir.path()), vec![path.clone()]);
        let back = Share::decode(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, share);
        std::fs::write(&path, b"{\"v\":1}").unwrap();
        assert_eq!(Share::decode(&std::fs::read(&path).unwrap()), None);
    }
}
