//! The local disk tier: `common::cache::DiskCache` as a [`Tier`]. It is writable unless
//! `[cache.disk] rw_mode = "READ_ONLY"`, and it forgets an entry it could not restore (and that entry's blobs, which are shared and
//! written once), so the compile that follows stores them afresh.

use std::path::{Path, PathBuf};

use jetcc_common::cache::{CacheError, DiskCache, TierErrorKind};
use jetcc_common::manifest::Manifest;
use jetcc_common::result::{CacheEntry, OutputFile};
use jetcc_common::Digest;

use super::{FailureKind, Publish, Tier, TierFailure};

/// Its name in stats and logs.
pub const NAME: &str = jetcc_common::stats::LOCAL_TIER;

pub struct LocalTier<'a>(pub &'a DiskCache);

impl From<CacheError> for TierFailure {
    fn from(e: CacheError) -> TierFailure {
        let kind = match e {
            CacheError::Blob { .. } => FailureKind::Store(TierErrorKind::Corrupt),
            _ => FailureKind::LocalIo,
        };
        TierFailure {
            kind,
            message: e.to_string(),
            down: false,
        }
    }
}

impl Tier for LocalTier<'_> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn writable(&self) -> bool {
        !self.0.is_read_only()
    }

    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure> {
        Ok(self.0.manifest(invocation))
    }

    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure> {
        Ok(self.0.entry(key))
    }

    fn fetch(&self, out: &OutputFile, dir: &Path) -> Result<Option<PathBuf>, TierFailure> {
        match self.0.restore_output(out, dir) {
            Ok(path) => Ok(Some(path)),
            Err(e) if e.is_missing_blob() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Fills the local tier from a shared hit whose outputs are in the out-dir.
    fn write(&self, p: &Publish<'_>) -> Result<u64, TierFailure> {
        let mut bytes = 0;
        for out in &p.entry.outputs {
            self.0.put_output(&out.name, &p.out_dir.join(&out.name))?;
            bytes += out.size;
        }
        self.0.put_entry(&p.found.key, p.entry)?;
        self.0.add_to_manifest(p.invocation, p.found.clone())?;
        self.0.commit_size();
        Ok(bytes)
    }

    fn forget(&self, key: &Digest, blobs: &[OutputFile]) {
        self.0.remove_entry(key);
        for o in blobs {
            self.0.remove_blob(&o.digest);
        }
    }
}
