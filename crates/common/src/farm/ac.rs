//! The shared result cache in KV `jetcc-ac`: manifests by invocation digest (`m.<hex>`) and
//! result entries by key (`e.<hex>`), in the same formats as the local disk cache; the
//! outputs they name are blobs in the CAS. One developer's remote compile is then anyone's
//! hit.

use bytes::Bytes;

use super::{FarmError, FarmErrorKind, Resources};
use crate::cache::mark::{mark_name, PathsMark};
use crate::config::PathsMode;
use crate::manifest::{Manifest, ManifestEntry};
use crate::protocol::names::{ac_entry_key as entry_key, ac_manifest_key as manifest_key};
use crate::result::CacheEntry;
use crate::Digest;

impl Resources {
    /// The shared manifest for an invocation (empty if none; a malformed one reads as empty).
    pub async fn get_manifest(&self, invocation: &Digest) -> Result<Manifest, FarmError> {
        let bytes = self
            .ac
            .get(
                &self.farm,
                &manifest_key(invocation),
                "cannot read a shared manifest",
            )
            .await?;
        Ok(bytes.map(|b| Manifest::decode(&b)).unwrap_or_default())
    }

    /// The shared result entry for `key`; `None` if absent or unreadable.
    pub async fn get_entry(&self, key: &Digest) -> Result<Option<CacheEntry>, FarmError> {
        let bytes = self
            .ac
            .get(&self.farm, &entry_key(key), "cannot read a shared entry")
            .await?;
        Ok(bytes.and_then(|b| CacheEntry::decode(&b)))
    }

    /// Records a result: the entry first, then the manifest that points at it, so a reader
    /// never finds a manifest entry whose result is missing. The entry's output blobs must
    /// already be in the CAS. A user whose role may not write results gets a `Permission`
    /// error as soon as the server refuses it.
    pub async fn put_result(
        &self,
        invocation: &Digest,
        found: ManifestEntry,
        entry: &CacheEntry,
    ) -> Result<(), FarmError> {
        let prefix = self.farm.names.ac_write_prefix();
        self.farm
            .unless_refused(&prefix, self.put_result_unchecked(invocation, found, entry))
            .await
    }

    async fn put_result_unchecked(
        &self,
        invocation: &Digest,
        found: ManifestEntry,
        entry: &CacheEntry,
    ) -> Result<(), FarmError> {
        let ac = self.ac.store(&self.farm).await?;
        ac.put(entry_key(&found.key), Bytes::from(entry.encode()))
            .await
            .map_err(|e| FarmError::other("cannot write a shared entry", e))?;
        // Read-modify-write: a concurrent writer's entry may be lost, which costs one miss.
        let mut manifest = self.get_manifest(invocation).await?;
        manifest.insert(found);
        ac.put(manifest_key(invocation), Bytes::from(manifest.encode()))
            .await
            .map_err(|e| FarmError::other("cannot write a shared manifest", e))?;
        Ok(())
    }
}

impl Resources {
    /// Leaves this writer's paths mark (see [`crate::cache::mark`]).
    pub async fn put_paths_mark(&self, mode: PathsMode, mark: &PathsMark) -> Result<(), FarmError> {
        let put = async {
            self.ac
                .store(&self.farm)
                .await?
                .put(mark_name(mode), Bytes::from(mark.encode()))
                .await
                .map(|_| ())
                .map_err(|e| FarmError::other("cannot write the paths mark", e))
        };
        let prefix = self.farm.names.ac_write_prefix();
        self.farm.unless_refused(&prefix, put).await
    }

    /// The last mark left by a writer in `mode`, if any.
    pub async fn get_paths_mark(&self, mode: PathsMode) -> Result<Option<PathsMark>, FarmError> {
        let bytes = self
            .ac
            .get(&self.farm, &mark_name(mode), "cannot read the paths mark")
            .await?;
        Ok(bytes.and_then(|b| PathsMark::decode(&b)))
    }

    /// `jetcc --check`: writes a probe blob and key, reads them back and deletes them (only
    /// reads when `read_only`); a deleted key must read as none.
    pub async fn check(&self, read_only: bool) -> Result<(), FarmError> {
        let probe = format!(
            "jetcc check {} {}",
            std::process::id(),
            crate::files::now_ns()
        );
        let digest = Digest::of_bytes(probe.as_bytes());
        if read_only {
            self.get_manifest(&digest).await?;
            return Ok(());
        }
        self.cas.put(&digest, probe.as_bytes()).await?;
        let back = self.cas.get(&digest).await?;
        self.cas.delete(&digest).await?;
        let key = format!("check.{}", digest.hex());
        let ac = self.ac.store(&self.farm).await?;
        ac.put(&key, Bytes::from(probe.clone()))
            .await
            .map_err(|e| FarmError::other("cannot write to the AC bucket", e))?;
        let got = self
            .ac
            .get(&self.farm, &key, "cannot read the AC bucket")
            .await?;
        // A delete marker, not a purge: the bucket takes no rollups (see `Farm::seal`).
        ac.delete(&key)
            .await
            .map_err(|e| FarmError::other("cannot delete from the AC bucket", e))?;
        // Read as none now: the marker a delete leaves is no value.
        let gone = self
            .ac
            .get(&self.farm, &key, "cannot read the AC bucket")
            .await?;
        if back != probe.as_bytes() || got.as_deref() != Some(probe.as_bytes()) || gone.is_some() {
            return Err(FarmError::new(
                FarmErrorKind::Corrupt,
                "the server gave back other bytes than were written",
            ));
        }
        Ok(())
    }
}
