//! The cache tiers as the wrapper sees them, in lookup order: the local disk ([`local`]),
//! the farm's JetStream cache ([`jetstream`]) and the object store ([`object`]), all behind
//! one trait, [`Tier`], so finding and restoring a result ([`restore`]), filling the tiers
//! above a hit and writing a stored result are each written once — for every [`Action`]
//! jetcc caches: a rustc invocation or a build-script run.
//!
//! [`SharedTiers`] ([`shared`]) owns the shared tiers' sessions, opened lazily once per
//! process behind their breakers, and keeps each tier's stats: an error is an error, never a
//! miss, and a diagnosis is logged once (when it differs from the tier's last one). Its
//! writes (`shared::write`) go to the uploader ([`pending`]) or, failing that, inline.
//!
//! Design choice: every tier is blocking. A wrapper process serves one invocation, and each
//! shared session runs its requests on its own single-threaded runtime.

mod failure;
pub mod jetstream;
pub mod local;
pub mod object;
pub mod pending;
mod shared;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jetcc_common::cache::{DiskCache, PathsMark};
use jetcc_common::cache::{TierError, TierErrorKind};
use jetcc_common::config::PathsMode;
use jetcc_common::files::FileDigests;
use jetcc_common::manifest::{Manifest, ManifestEntry};
use jetcc_common::pathmap::PathMap;
use jetcc_common::result::{CacheEntry, OutputFile};
use jetcc_common::{fsutil, Digest};

pub use failure::{FailureKind, TierFailure};
pub use jetstream::JetStreamTier;
pub use local::LocalTier;
pub use object::ObjectSession;
pub use shared::{Hit, SharedTiers};

/// A result to write to a tier.
pub struct Publish<'a> {
    pub invocation: &'a Digest,
    pub found: &'a ManifestEntry,
    pub entry: &'a CacheEntry,
    /// Where the outputs are (the out-dir).
    pub out_dir: &'a Path,
    /// Compiled on the farm: its outputs are in the JetStream CAS already.
    pub on_farm: bool,
    /// The local tier, whose blobs are read rather than the out-dir's files where it has
    /// them (the uploader writes after cargo may have moved on: see [`pending`]).
    pub blobs: Option<&'a DiskCache>,
}

impl Publish<'_> {
    /// Each output with where to read it: its local blob if kept, else the out-dir's file
    /// (either is verified against its digest as it is uploaded).
    pub fn outputs(&self) -> impl Iterator<Item = (&OutputFile, PathBuf)> + '_ {
        let dir = self.out_dir;
        self.entry.outputs.iter().map(move |o| {
            let blob = self
                .blobs
                .and_then(|c| c.blob_path(&o.digest))
                .filter(|p| p.is_file());
            (o, blob.unwrap_or_else(|| dir.join(&o.name)))
        })
    }
}

/// One cache tier.
pub trait Tier {
    /// Its name in stats and logs.
    fn name(&self) -> &'static str;
    /// Whether this client may write it.
    fn writable(&self) -> bool;
    fn manifest(&self, invocation: &Digest) -> Result<Manifest, TierFailure>;
    fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierFailure>;
    /// Writes one output, verified against its digest, at `dir/<name>` with its mode and
    /// returns the path; `None` if the tier no longer has it (evicted or expired: a miss).
    fn fetch(&self, out: &OutputFile, dir: &Path) -> Result<Option<PathBuf>, TierFailure>;
    /// Writes a result: its outputs first, then its entry and manifest. Returns bytes sent.
    fn write(&self, p: &Publish<'_>) -> Result<u64, TierFailure>;
    /// Leaves this writer's paths mark (see `common::cache::mark`); the local tier has none.
    fn mark_paths(&self, _mode: PathsMode, _mark: &PathsMark) -> Result<(), TierFailure> {
        Ok(())
    }
    /// Drops an entry that could not be restored, and `blobs` (those of a corrupt one), so
    /// the compile that follows stores them afresh. Shared tiers keep theirs (every reader
    /// verifies them too).
    fn forget(&self, _key: &Digest, _blobs: &[OutputFile]) {}
}

/// Writes a fetched blob (verified against its digest) atomically at `dir/<name>` with its
/// mode; a blob of another size than the entry says is refused as corrupt.
fn write_output(out: &OutputFile, dir: &Path, bytes: &[u8]) -> Result<PathBuf, TierFailure> {
    if bytes.len() as u64 != out.size {
        return Err(TierError {
            kind: TierErrorKind::Corrupt,
            message: format!(
                "output {} is {} bytes, its entry says {}",
                out.name,
                bytes.len(),
                out.size
            ),
        }
        .into());
    }
    let dest = dir.join(&out.name);
    fsutil::write_atomic(&dest, bytes).map_err(|e| TierFailure::local_io(&dest, e))?;
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(out.mode))
        .map_err(|e| TierFailure::local_io(&dest, e))?;
    Ok(dest)
}

/// What [`restore`] found.
pub enum Restored {
    /// The result is in the out-dir.
    Hit(Box<Hit>),
    /// No result here; why, for the log.
    Miss(&'static str),
}

/// What the tiers cache: one unit of work whose result is a [`CacheEntry`], filed under a
/// digest in direct-mode manifests. A rustc invocation is one; a build-script run another.
pub trait Action {
    /// The digest its manifests are filed under.
    fn digest(&self) -> &Digest;
    /// Where its outputs are written on a hit and read from when storing.
    fn output_dir(&self) -> &Path;
    /// Maps key-form paths in manifests to this build's.
    fn map(&self) -> &PathMap;
    /// How logs name it.
    fn label(&self) -> &str;
    /// Completes a restore once every output is fetched (writes dep-info, unpacks a tree).
    fn finish_restore(&self, entry: &CacheEntry) -> Result<(), TierFailure>;
    /// Whether the worker that compiles it on the farm records the result in the farm's
    /// cache itself (under a key it computed from the job): the client then never does.
    fn recorded_by_worker(&self) -> bool {
        false
    }
    /// Whether a stored result always lists the files it read: a shared entry listing none
    /// would match any lookup, so one is refused (a compile always reads its crate root).
    fn reads_sources(&self) -> bool {
        true
    }
}

/// Finds an action's result in `tier` (direct mode: the manifest entry whose files all
/// match) and restores it: every output verified, then [`Action::finish_restore`].
/// Files written are remembered in `files`, so dependents hash them for free.
pub fn restore(
    tier: &dyn Tier,
    action: &dyn Action,
    files: &mut FileDigests,
) -> Result<Restored, TierFailure> {
    let mut manifest = tier.manifest(action.digest())?;
    if action.reads_sources() {
        manifest.entries.retain(|e| !e.sources.is_empty());
    }
    let Some(found) = manifest
        .find(files, &jetcc_common::environ::var, action.map())
        .cloned()
    else {
        return Ok(Restored::Miss("no manifest entry matches"));
    };
    let Some(entry) = tier.entry(&found.key)? else {
        return Ok(Restored::Miss("the manifest names an entry that is gone"));
    };
    let out_dir = action.output_dir();
    for out in &entry.outputs {
        match tier.fetch(out, out_dir) {
            Ok(Some(path)) => files.remember_written(&path, out.digest),
            Ok(None) => {
                tier.forget(&found.key, &[]);
                return Ok(Restored::Miss("the entry's outputs were evicted"));
            }
            Err(e) => {
                if e.kind == FailureKind::Store(TierErrorKind::Corrupt) {
                    tier.forget(&found.key, &entry.outputs);
                }
                return Err(e);
            }
        }
    }
    action.finish_restore(&entry)?;
    Ok(Restored::Hit(Box::new(Hit {
        tier: tier.name(),
        found,
        entry,
    })))
}
