//! The shared cache tiers as the wrapper sees them: one trait, [`SharedTier`], over the
//! JetStream tier (the farm [`Session`]) and the object-store tier ([`ObjectSession`]), so
//! looking up, filling and writing are written once for both.
//!
//! Both are blocking: a wrapper process handles one invocation, and each session runs its
//! requests on its own single-threaded runtime.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jetcc_common::cache::{ObjectTier, TierError};
use jetcc_common::config::ObjectTierConfig;
use jetcc_common::farm::FarmErrorKind;
use jetcc_common::manifest::{Manifest, ManifestEntry};
use jetcc_common::result::CacheEntry;
use jetcc_common::{fsutil, Digest};

use crate::dist::{Session, Skip};

/// Why a tier operation failed. `kind` names it in stats; `down` says the tier as a whole is
/// unusable (it counts towards its breaker), not just one object.
#[derive(Debug)]
pub struct TierFailure {
    pub kind: &'static str,
    pub message: String,
    pub down: bool,
}

impl std::fmt::Display for TierFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<TierError> for TierFailure {
    fn from(e: TierError) -> TierFailure {
        TierFailure {
            kind: e.kind.name(),
            down: e.kind.is_tier_down(),
            message: e.message,
        }
    }
}

impl From<Skip> for TierFailure {
    fn from(s: Skip) -> TierFailure {
        TierFailure {
            kind: s.kind(),
            down: s.is_farm_failure(),
            message: s.to_string(),
        }
    }
}

/// A result to write to a tier.
pub struct Publish<'a> {
    pub invocation: &'a Digest,
    pub found: &'a ManifestEntry,
    pub entry: &'a CacheEntry,
    /// Where the outputs are (the out-dir).
    pub out_dir: &'a Path,
    /// Compiled on the farm: its outputs are in the JetStream CAS already.
    pub on_farm: bool,
}

pub trait SharedTier {
    /// Its name in stats and logs.
    fn name(&self) -> &'static str;
    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure>;
    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure>;
    /// Fetches a verified blob and writes it atomically at `dest` with `mode`; returns its
    /// size, or `None` if the tier no longer has it (expired: a miss, not an error).
    fn fetch(&self, digest: &Digest, dest: &Path, mode: u32) -> Result<Option<u64>, TierFailure>;
    /// Writes a result: its outputs first, then its entry and manifest. Returns bytes sent.
    fn publish(&self, p: &Publish<'_>) -> Result<u64, TierFailure>;
}

fn write_blob(dest: &Path, bytes: &[u8], mode: u32) -> Result<Option<u64>, TierFailure> {
    let local = |e: std::io::Error| TierFailure {
        kind: "local-io",
        message: format!("cannot write {}: {e}", dest.display()),
        down: false,
    };
    fsutil::write_atomic(dest, bytes).map_err(local)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode)).map_err(local)?;
    Ok(Some(bytes.len() as u64))
}

impl SharedTier for Session {
    fn name(&self) -> &'static str {
        "jetstream"
    }
    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure> {
        Ok(Session::manifest(self, invocation)?)
    }
    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure> {
        Ok(Session::entry(self, key)?)
    }
    fn fetch(&self, digest: &Digest, dest: &Path, mode: u32) -> Result<Option<u64>, TierFailure> {
        match self.blob(digest) {
            Ok(bytes) => write_blob(dest, &bytes, mode),
            Err(Skip::Farm(e)) if e.kind == FarmErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    fn publish(&self, p: &Publish<'_>) -> Result<u64, TierFailure> {
        let upload_from = (!p.on_farm).then_some(p.out_dir);
        Ok(Session::publish(
            self,
            p.invocation,
            p.found.clone(),
            p.entry,
            upload_from,
        )?)
    }
}

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
                kind: "local-io",
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

    pub fn describe(&self) -> &str {
        self.tier.describe()
    }
}

impl SharedTier for ObjectSession {
    fn name(&self) -> &'static str {
        self.tier.name()
    }
    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure> {
        Ok(self.rt.block_on(self.tier.get_manifest(invocation))?)
    }
    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure> {
        Ok(self.rt.block_on(self.tier.get_entry(key))?)
    }
    fn fetch(&self, digest: &Digest, dest: &Path, mode: u32) -> Result<Option<u64>, TierFailure> {
        match self.rt.block_on(self.tier.get_blob(digest))? {
            Some(bytes) => write_blob(dest, &bytes, mode),
            None => Ok(None),
        }
    }
    fn publish(&self, p: &Publish<'_>) -> Result<u64, TierFailure> {
        self.rt.block_on(async {
            let paths: Vec<PathBuf> = p
                .entry
                .outputs
                .iter()
                .map(|o| p.out_dir.join(&o.name))
                .collect();
            let puts = p
                .entry
                .outputs
                .iter()
                .zip(&paths)
                .map(|(o, path)| self.tier.put_file(&o.digest, path));
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
