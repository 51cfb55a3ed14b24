//! The object-store tier (S3 and S3-compatible servers, GCS, Azure, a shared dir) as a
//! [`Tier`]: `common::cache::ObjectTier` on this process's own runtime.

use std::path::{Path, PathBuf};

use jetcc_common::cache::{ObjectTier, PathsMark, TierError};
use jetcc_common::config::ObjectTierConfig;
use jetcc_common::config::PathsMode;
use jetcc_common::manifest::Manifest;
use jetcc_common::result::{CacheEntry, OutputFile};
use jetcc_common::Digest;

use super::{write_output, FailureKind, Publish, Tier, TierFailure};

/// The object-store tier for one wrapper process.
pub struct ObjectSession {
    rt: tokio::runtime::Runtime,
    tier: ObjectTier,
}

impl ObjectSession {
    pub fn open(cfg: &ObjectTierConfig) -> Result<ObjectSession, TierFailure> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TierFailure {
                kind: FailureKind::LocalIo,
                message: format!("cannot start an async runtime: {e}"),
                down: false,
            })?;
        let tier = ObjectTier::open(cfg, &|k| std::env::var(k).ok())?;
        Ok(ObjectSession { rt, tier })
    }

    pub fn read_only(&self) -> bool {
        self.tier.read_only()
    }

    /// `jetcc --check`: a write, a read and a delete.
    pub fn check(&self) -> Result<(), TierError> {
        self.rt.block_on(self.tier.check())
    }

    /// The last mark left in `mode` (for `--check`).
    pub fn paths_mark(&self, mode: PathsMode) -> Result<Option<PathsMark>, TierError> {
        self.rt.block_on(self.tier.get_paths_mark(mode))
    }

    pub fn describe(&self) -> &str {
        self.tier.describe()
    }

    /// Where the credentials come from (for `--check`).
    pub fn credentials(&self) -> &str {
        self.tier.credentials()
    }
}

impl Tier for ObjectSession {
    fn name(&self) -> &'static str {
        self.tier.name()
    }
    fn writable(&self) -> bool {
        !self.tier.read_only()
    }
    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure> {
        Ok(self.rt.block_on(self.tier.get_manifest(invocation))?)
    }
    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure> {
        Ok(self.rt.block_on(self.tier.get_entry(key))?)
    }
    fn fetch(&self, out: &OutputFile, dir: &Path) -> Result<Option<PathBuf>, TierFailure> {
        match self.rt.block_on(self.tier.get_blob(&out.digest))? {
            Some(bytes) => write_output(out, dir, &bytes).map(Some),
            None => Ok(None),
        }
    }
    fn mark_paths(&self, mode: PathsMode, mark: &PathsMark) -> Result<(), TierFailure> {
        Ok(self.rt.block_on(self.tier.put_paths_mark(mode, mark))?)
    }
    fn write(&self, p: &Publish<'_>) -> Result<u64, TierFailure> {
        self.rt.block_on(async {
            let puts = p
                .outputs()
                .map(|(o, path)| async move { self.tier.put_file(&o.digest, &path).await });
            let mut sent = 0;
            for r in futures_util::future::join_all(puts).await {
                sent += r?;
            }
            let n = self
                .tier
                .put_result(p.invocation, p.found.clone(), p.entry)
                .await?;
            Ok(sent + n)
        })
    }
}
