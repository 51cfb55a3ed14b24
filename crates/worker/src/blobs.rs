//! The worker's own bounded cache of input blobs, so a crate's rmeta fetched for one job
//! serves the next hundred. Every blob is verified when fetched ([`Cas::get`]); files here
//! are the worker's, read-only (0444) in a dir only the worker can enter, and only ever
//! hard-linked into job roots where the job cannot write to them (`job::place_inputs`), else
//! copied. A cached blob found writable or not the worker's is hashed again before use.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use jetcc_common::farm::{Cas, FarmError, FarmErrorKind};
use jetcc_common::fsutil::write_atomic_mkdir;
use jetcc_common::Digest;

pub struct BlobCache {
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
}

impl BlobCache {
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<BlobCache> {
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let bytes = list(&dir).iter().map(|(_, size, _)| size).sum();
        Ok(BlobCache {
            dir,
            max_bytes,
            bytes: AtomicU64::new(bytes),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// The local path of `digest`: here already, else written from `sent` (bytes its job
    /// carried, which the caller matched to `digest`), else fetched from the CAS.
    pub async fn fetch(
        &self,
        cas: &Cas,
        digest: &Digest,
        sent: Option<&[u8]>,
    ) -> Result<PathBuf, FarmError> {
        let path = self.path(digest);
        if path.exists() && self.intact(&path, digest).await {
            // Touch for LRU eviction; best effort.
            let _ = std::fs::File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(path);
        }
        let fetched;
        let bytes = match sent {
            Some(bytes) => bytes,
            None => {
                fetched = cas.get(digest).await?;
                &fetched[..]
            }
        };
        debug_assert_eq!(&Digest::of_bytes(bytes), digest);
        let cannot = |e: std::io::Error| {
            FarmError::new(
                FarmErrorKind::Other,
                format!("cannot write {}: {e}", path.display()),
            )
        };
        write_atomic_mkdir(&path, bytes).map_err(cannot)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).map_err(cannot)?;
        let total = self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if total + bytes.len() as u64 > self.max_bytes {
            self.evict();
        }
        Ok(path)
    }

    /// Whether the cached blob at `path` still holds `digest`'s bytes: yes when it is a
    /// read-only file of the worker's (no job can have written it); else it is hashed, and
    /// removed when it differs (the caller fetches it again).
    async fn intact(&self, path: &Path, digest: &Digest) -> bool {
        let protected = std::fs::symlink_metadata(path).is_ok_and(|m| {
            // SAFETY: geteuid cannot fail.
            m.is_file() && m.mode() & 0o222 == 0 && m.uid() == unsafe { libc::geteuid() }
        });
        if protected {
            return true;
        }
        let file = path.to_owned();
        let hashed = tokio::task::spawn_blocking(move || Digest::of_file(&file)).await;
        if matches!(hashed, Ok(Ok(d)) if d == *digest) {
            let read_only = std::fs::Permissions::from_mode(0o444);
            return std::fs::set_permissions(path, read_only).is_ok();
        }
        tracing::warn!(
            "cached blob {} does not hold its digest's bytes: fetched again",
            path.display()
        );
        let _ = std::fs::remove_file(path);
        false
    }

    /// Drops the least recently used blobs down to 80% of the limit.
    fn evict(&self) {
        let mut files = list(&self.dir);
        files.sort_by_key(|(_, _, mtime)| *mtime);
        let mut total: u64 = files.iter().map(|(_, s, _)| s).sum();
        let goal = self.max_bytes / 10 * 8;
        for (path, size, _) in files {
            if total <= goal {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
        self.bytes.store(total, Ordering::Relaxed);
    }
}

fn list(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|e| {
        let e = e.ok()?;
        let m = e.metadata().ok()?;
        m.is_file().then(|| {
            (
                e.path(),
                m.len(),
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            )
        })
    })
    .collect()
}
