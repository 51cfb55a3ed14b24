//! The farm's shared cache as a [`Tier`]: KV `jetcc-ac` (manifests, entries) and the object
//! store `jetcc-cas` (blobs, verified on read), through the wrapper's farm [`Session`].

use std::path::{Path, PathBuf};

use jetcc_common::cache::PathsMark;
use jetcc_common::config::PathsMode;
use jetcc_common::farm::{FarmError, FarmErrorKind};
use jetcc_common::manifest::Manifest;
use jetcc_common::result::{CacheEntry, OutputFile};
use jetcc_common::Digest;

use super::{write_output, Publish, Tier, TierFailure};
use crate::remote::Session;

/// Its name in stats, logs and breakers.
pub const NAME: &str = "jetstream";

/// The JetStream tier: the session it reads through, which remote compiles share.
pub struct JetStreamTier {
    pub session: Session,
    /// `[cache.jetstream] read_only`: a laptop reading what CI filled.
    pub read_only: bool,
}

impl Tier for JetStreamTier {
    fn name(&self) -> &'static str {
        NAME
    }

    fn writable(&self) -> bool {
        !self.read_only
    }

    /// A wrapper's first read: a server used as a shared cache before any worker started
    /// is set up here (as a worker would, idempotently); where this client may not, it
    /// stays an error.
    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure> {
        let s = &self.session;
        let read = s
            .res
            .set_up_and_retry(async |res| res.get_manifest(invocation).await);
        Ok(s.rt.block_on(read)?)
    }

    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure> {
        let s = &self.session;
        Ok(s.rt.block_on(s.res.get_entry(key))?)
    }

    fn fetch(&self, out: &OutputFile, dir: &Path) -> Result<Option<PathBuf>, TierFailure> {
        let s = &self.session;
        // The entry says how big the blob is: nothing larger is read.
        match s.rt.block_on(s.res.cas.get_sized(&out.digest, out.size)) {
            Ok(bytes) => write_output(out, dir, &bytes).map(Some),
            Err(e) if e.kind == FarmErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn mark_paths(&self, mode: PathsMode, mark: &PathsMark) -> Result<(), TierFailure> {
        let s = &self.session;
        Ok(s.rt.block_on(s.res.put_paths_mark(mode, mark))?)
    }

    /// Uploads the outputs unless a worker put them in the CAS already, then the entry and
    /// the manifest. Returns the bytes uploaded.
    fn write(&self, p: &Publish<'_>) -> Result<u64, TierFailure> {
        let res = &self.session.res;
        // A server that went away mid-build must not make every later miss wait out a
        // request timeout to share its result.
        if !res.farm.is_connected() {
            return Err(FarmError::new(
                FarmErrorKind::Unreachable,
                "not connected to the NATS server: result not shared",
            )
            .into());
        }
        self.session.rt.block_on(async {
            let mut sent = 0;
            if !p.on_farm {
                let puts = p.outputs().map(|(o, path)| async move {
                    let sent = res.cas.put_file(&o.digest, &path).await?;
                    Ok::<_, FarmError>(if sent { o.size } else { 0 })
                });
                for r in futures_util::future::join_all(puts).await {
                    sent += r?;
                }
            }
            res.put_result(p.invocation, p.found.clone(), p.entry)
                .await?;
            Ok(sent)
        })
    }
}
