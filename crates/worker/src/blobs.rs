//! The worker's own bounded cache of input blobs, so a crate's rmeta fetched for one job
//! serves the next hundred. Every blob is verified when fetched ([`Cas::get`]); files here
//! are read-only and only ever hard-linked or copied into job roots.

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

    /// The local path of `digest`, fetched from the CAS if not here yet.
    pub async fn fetch(&self, cas: &Cas, digest: &Digest) -> Result<PathBuf, FarmError> {
        let path = self.path(digest);
        if path.exists() {
            // Touch for LRU eviction; best effort.
            let _ = std::fs::File::open(&path).and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(path);
        }
        let bytes = cas.get(digest).await?;
        write_atomic_mkdir(&path, &bytes).map_err(|e| {
            FarmError::new(
                FarmErrorKind::Other,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        let total = self.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if total + bytes.len() as u64 > self.max_bytes {
            self.evict();
        }
        Ok(path)
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
