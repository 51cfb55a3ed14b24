//! The cache tiers as the wrapper sees them, in lookup order: the local disk ([`local`]),
//! the farm's JetStream cache ([`jetstream`]) and the object store ([`object`]), all behind
//! one trait, [`Tier`], so finding and restoring a result ([`restore`]), filling the tiers
//! above a hit and writing a stored result are each written once — for every [`Action`]
//! jetcc caches: a rustc invocation or a build-script run.
//!
//! [`SharedTiers`] owns the shared tiers' sessions, opened lazily once per process behind
//! their breakers, and keeps each tier's stats: an error is an error, never a miss, and a
//! diagnosis is logged once (when it differs from the tier's last one).
//!
//! Design choice: every tier is blocking. A wrapper process serves one invocation, and each
//! shared session runs its requests on its own single-threaded runtime.

pub mod jetstream;
pub mod local;
pub mod object;
pub mod pending;

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jetcc_common::cache::{DiskCache, PathsMark};
use jetcc_common::cache::{TierError, TierErrorKind};
use jetcc_common::config::{Config, FarmConfig, ObjectTierConfig, PathsMode};
use jetcc_common::farm::{FarmError, FarmErrorKind};
use jetcc_common::files::FileDigests;
use jetcc_common::manifest::{Manifest, ManifestEntry};
use jetcc_common::pathmap::PathMap;
use jetcc_common::result::{CacheEntry, OutputFile};
use jetcc_common::stats::{ErrorKind, StatKind, Stats};
use jetcc_common::{environ, fsutil, Digest};

use crate::breaker::Breaker;
use crate::record;
use crate::remote::Session;

pub use jetstream::JetStreamTier;
pub use local::LocalTier;
pub use object::ObjectSession;

/// How often a writer refreshes its paths mark in a shared tier.
const MARK_EVERY: Duration = Duration::from_secs(86_400);

/// How long a failing object-store tier is skipped.
const TIER_BREAKER: Duration = Duration::from_secs(60);

/// How long a tier that refused this user a write is not written again: a role changes
/// rarely, and each refused write would cost a round trip.
const REFUSED_WRITES_FOR: Duration = Duration::from_secs(3600);

/// Why a tier operation failed, by kind (its name in the tier's stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The object store (or the local disk's blobs: `corrupt`).
    Store(TierErrorKind),
    /// The NATS server behind the JetStream tier.
    Farm(FarmErrorKind),
    /// A file of this build could not be written.
    LocalIo,
}

impl StatKind for FailureKind {
    fn name(&self) -> &'static str {
        match self {
            FailureKind::Store(k) => k.name(),
            FailureKind::Farm(k) => k.name(),
            FailureKind::LocalIo => "local-io",
        }
    }
}

/// Why a tier operation failed. `down` says the tier as a whole is unusable (it counts
/// towards its breaker), not just one object.
#[derive(Debug)]
pub struct TierFailure {
    pub kind: FailureKind,
    pub message: String,
    pub down: bool,
}

impl TierFailure {
    pub fn local_io(what: &Path, e: std::io::Error) -> TierFailure {
        TierFailure {
            kind: FailureKind::LocalIo,
            message: format!("cannot write {}: {e}", what.display()),
            down: false,
        }
    }
}

impl std::fmt::Display for TierFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<TierError> for TierFailure {
    fn from(e: TierError) -> TierFailure {
        TierFailure {
            kind: FailureKind::Store(e.kind),
            down: e.kind.is_tier_down(),
            message: e.message,
        }
    }
}

impl From<FarmError> for TierFailure {
    fn from(e: FarmError) -> TierFailure {
        TierFailure {
            kind: FailureKind::Farm(e.kind),
            // A refused write says what this user may do, not that the server is down.
            down: e.kind != FarmErrorKind::Permission,
            message: e.message,
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

/// A session opened on first need: `Failed` is remembered, so a process tries once.
enum Lazy<T> {
    Unopened,
    Open(T),
    Failed,
}

impl<T> Lazy<T> {
    fn get_or_open(&mut self, open: impl FnOnce() -> Option<T>) -> Option<&T> {
        if matches!(self, Lazy::Unopened) {
            *self = open().map_or(Lazy::Failed, Lazy::Open);
        }
        match self {
            Lazy::Open(t) => Some(t),
            _ => None,
        }
    }

    fn get(&self) -> Option<&T> {
        match self {
            Lazy::Open(t) => Some(t),
            _ => None,
        }
    }
}

/// Where a write's result comes from, and what it is filed under.
struct Target<'a> {
    invocation: &'a Digest,
    out_dir: &'a Path,
    on_farm: bool,
    blobs: Option<&'a DiskCache>,
}

/// How one write to a tier ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Yes,
    /// The tier is down (or was in this process): worth trying again later.
    Down,
    /// Refused or failed for this result alone: not worth trying again.
    Failed,
}

/// A result found in a tier and restored into the out-dir.
pub struct Hit {
    pub tier: &'static str,
    pub found: ManifestEntry,
    pub entry: CacheEntry,
}

/// The shared tiers of one wrapper process: the farm session (the JetStream tier, and remote
/// compiles) and the object store, each opened once behind its breaker.
pub struct SharedTiers {
    cache_dir: PathBuf,
    farm: Option<FarmConfig>,
    jetstream_read_only: bool,
    object_cfg: Option<ObjectTierConfig>,
    /// `[cache] paths`, marked in the tiers this client writes.
    paths: PathsMode,
    jetstream: Lazy<JetStreamTier>,
    object: Lazy<ObjectSession>,
    /// Tiers that failed as a whole in this process: not written to again.
    down: RefCell<Vec<&'static str>>,
    /// Shares go to the uploader ([`pending`]): the local tier keeps the blobs it reads.
    defer_shares: bool,
    /// This process is the uploader: a farm it cannot reach cost no compile its place.
    uploading: bool,
}

impl SharedTiers {
    pub fn new(config: &Config) -> SharedTiers {
        SharedTiers {
            cache_dir: config.cache_dir.clone(),
            farm: config.farm.clone(),
            jetstream_read_only: config.jetstream_read_only,
            object_cfg: config.object.clone(),
            paths: config.paths,
            jetstream: Lazy::Unopened,
            object: Lazy::Unopened,
            down: RefCell::default(),
            defer_shares: !config.disk_read_only,
            uploading: false,
        }
    }

    /// The uploader's tiers ([`pending::drain`]).
    pub fn for_uploader(mut self) -> SharedTiers {
        self.uploading = true;
        self
    }

    pub fn farm(&self) -> Option<&FarmConfig> {
        self.farm.as_ref()
    }

    /// The farm's breaker, which is also the JetStream tier's (one server behind both).
    pub fn farm_breaker(&self) -> Breaker {
        let secs = self.farm.as_ref().map_or(60, |d| d.breaker_secs);
        Breaker::new(
            &self.cache_dir,
            "farm",
            "the farm",
            Duration::from_secs(secs),
        )
    }

    fn breaker(&self, tier: &str) -> Breaker {
        match tier {
            jetstream::NAME => self.farm_breaker(),
            name => Breaker::new(
                &self.cache_dir,
                name,
                &format!("the {name} cache tier"),
                TIER_BREAKER,
            ),
        }
    }

    /// The farm session, opened once per process; `None` when no farm is configured, its
    /// breaker is open or it cannot be reached (counted and logged).
    pub fn session(&mut self) -> Option<&Session> {
        let farm = self.farm.as_ref()?;
        let (cache_dir, breaker, read_only, uploading) = (
            &self.cache_dir,
            self.farm_breaker(),
            self.jetstream_read_only,
            self.uploading,
        );
        let tier = self.jetstream.get_or_open(|| {
            if breaker.is_open() {
                return None;
            }
            match Session::open(farm) {
                Ok(session) => Some(JetStreamTier { session, read_only }),
                Err(e) => {
                    breaker.record(false);
                    if uploading {
                        // Its shares stay filed for the next try; no compile was skipped.
                        tracing::warn!("the farm is unavailable, shares wait: {e}");
                        return None;
                    }
                    tracing::warn!("the farm is unavailable, compiling locally: {e}");
                    record(cache_dir, |s| Stats::bump(&mut s.remote_skipped, &e.kind()));
                    None
                }
            }
        });
        tier.map(|t| &t.session)
    }

    /// The session, if this process has opened one (a monitor event goes only where the
    /// process talked to the server anyway).
    pub fn opened_session(&self) -> Option<&Session> {
        self.jetstream.get().map(|t| &t.session)
    }

    fn open_object(&mut self) {
        let Some(cfg) = &self.object_cfg else {
            self.object = Lazy::Failed;
            return;
        };
        let name = cfg.backend.name();
        let breaker = self.breaker(name);
        let mut failure = None;
        self.object.get_or_open(|| {
            if breaker.is_open() {
                return None;
            }
            ObjectSession::open(cfg).map_err(|e| failure = Some(e)).ok()
        });
        if let Some(e) = failure {
            self.failed(name, &e, Duration::ZERO);
        }
    }

    /// Looks the invocation up in the local tier, then (only on a miss, so a local hit opens
    /// no connection) in each shared tier in order. The first hit is restored into the
    /// out-dir and written to the tiers above it.
    pub fn look_up(
        &mut self,
        local: &LocalTier<'_>,
        action: &dyn Action,
        files: &mut FileDigests,
    ) -> Option<Hit> {
        if let Some(hit) = self.look_up_in(local, action, files) {
            return Some(hit);
        }
        if self.farm.is_none() && self.object_cfg.is_none() {
            return None;
        }
        self.session();
        if matches!(self.object, Lazy::Unopened) {
            self.open_object();
        }
        let shared: Vec<&dyn Tier> = [
            self.jetstream.get().map(|t| t as &dyn Tier),
            self.object.get().map(|o| o as &dyn Tier),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut above: Vec<&dyn Tier> = vec![local];
        for tier in shared {
            if let Some(hit) = self.look_up_in(tier, action, files) {
                for t in above.into_iter().filter(|t| t.writable()) {
                    let to = Target {
                        invocation: action.digest(),
                        out_dir: action.output_dir(),
                        on_farm: false,
                        blobs: None,
                    };
                    self.write_to(t, &to, &hit.found, &hit.entry);
                }
                return Some(hit);
            }
            above.push(tier);
        }
        None
    }

    fn look_up_in(
        &self,
        tier: &dyn Tier,
        action: &dyn Action,
        files: &mut FileDigests,
    ) -> Option<Hit> {
        let t0 = Instant::now();
        let result = restore(tier, action, files);
        let spent = t0.elapsed();
        let ms = spent.as_millis() as u64;
        let name = tier.name();
        match result {
            Ok(restored) => {
                if name != local::NAME {
                    self.breaker(name).record(true);
                }
                let read = match &restored {
                    Restored::Hit(hit) => hit.entry.total_output_bytes(),
                    Restored::Miss(_) => 0,
                };
                record(&self.cache_dir, |s| {
                    let t = s.tier(name);
                    match restored {
                        Restored::Hit(..) => t.hits += 1,
                        Restored::Miss(_) => t.misses += 1,
                    }
                    t.bytes_read += read;
                    t.time_ms += ms;
                });
                match restored {
                    Restored::Hit(hit) => Some(*hit),
                    Restored::Miss(why) => {
                        tracing::debug!(
                            unit = action.label(),
                            tier = name,
                            "not in the {name} tier: {why}"
                        );
                        None
                    }
                }
            }
            Err(e) => {
                self.failed(name, &e, spent);
                None
            }
        }
    }

    /// Writes what a compile stored locally to every shared tier this client may write, so
    /// one developer's compile is the team's hit. `on_farm`: its outputs are in the
    /// JetStream CAS already, and if its worker records it there ([`Action::recorded_by_worker`])
    /// the client leaves that tier alone. Only tiers the lookup opened: none means a server
    /// is down.
    pub fn share(
        &self,
        action: &dyn Action,
        found: &ManifestEntry,
        entry: &CacheEntry,
        on_farm: bool,
    ) {
        // A manifest holds env-dep values as read: one whose compile read a credential
        // (`option_env!("GITHUB_TOKEN")`) stays on this machine.
        if let Some((name, _)) = found
            .env_deps
            .iter()
            .find(|(n, _)| environ::looks_secret(n))
        {
            tracing::debug!(
                unit = action.label(),
                "not shared: it read {name}, a credential"
            );
            return;
        }
        let worker_recorded = on_farm && action.recorded_by_worker();
        let shared: Vec<&dyn Tier> = [
            self.jetstream
                .get()
                .filter(|_| !worker_recorded)
                .map(|t| t as &dyn Tier),
            self.object.get().map(|o| o as &dyn Tier),
        ]
        .into_iter()
        .flatten()
        // A tier that failed as a whole in this process would only fail again.
        .filter(|t| t.writable() && !self.down.borrow().contains(&t.name()))
        .collect();
        if shared.is_empty() {
            return;
        }
        if self.defer_shares {
            let names = shared.iter().map(|t| t.name().to_owned()).collect();
            let share = pending::Share::new(
                *action.digest(),
                found.clone(),
                action.output_dir().to_path_buf(),
                on_farm,
                names,
                action.label().to_owned(),
            );
            match pending::file(&self.cache_dir, &share) {
                Ok(filed) => match pending::start_uploader(&self.cache_dir) {
                    Ok(()) => {
                        tracing::debug!(unit = action.label(), "share filed for the uploader");
                        // Monitors hear of a write from the unit whose result it is (its
                        // event), counted as filed; `--show-stats` counts it once written.
                        let bytes = entry.total_output_bytes();
                        crate::events::note(&mut |s| {
                            for name in &share.tiers {
                                let t = s.tier(name);
                                t.writes += 1;
                                t.bytes_written += bytes;
                            }
                        });
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("cannot start the uploader ({e}): sharing here");
                        let _ = std::fs::remove_file(filed);
                    }
                },
                Err(e) => tracing::debug!("sharing here: {e}"),
            }
        }
        let to = Target {
            invocation: action.digest(),
            out_dir: action.output_dir(),
            on_farm,
            blobs: None,
        };
        for tier in shared {
            self.write_to(tier, &to, found, entry);
        }
    }

    /// The uploader's write of one filed share: to each tier it names that this process
    /// can open. Returns the names of those still to write (a tier down).
    pub fn write_share(
        &mut self,
        share: &pending::Share,
        entry: &CacheEntry,
        blobs: Option<&DiskCache>,
    ) -> Vec<String> {
        let mut left = Vec::new();
        for name in &share.tiers {
            let tier: Option<&dyn Tier> = match name.as_str() {
                jetstream::NAME => {
                    self.session();
                    self.jetstream.get().map(|t| t as &dyn Tier)
                }
                _ => {
                    if matches!(self.object, Lazy::Unopened) {
                        self.open_object();
                    }
                    self.object
                        .get()
                        .filter(|o| o.name() == name.as_str())
                        .map(|o| o as &dyn Tier)
                }
            };
            let to = Target {
                invocation: &share.invocation,
                out_dir: &share.out_dir,
                on_farm: share.on_farm,
                blobs,
            };
            let written = match tier {
                Some(t) => self.write_to(t, &to, &share.found, entry),
                None => Written::Down,
            };
            if written == Written::Down {
                left.push(name.clone());
            }
        }
        tracing::debug!(unit = share.label, left = ?left, "share written");
        left
    }

    /// Writes to a tier are skipped a while after it refused this user one (see
    /// [`FarmErrorKind::Permission`]): the role decides, not the moment.
    fn refused_writes(&self, tier: &str) -> Breaker {
        Breaker::new(
            &self.cache_dir,
            &format!("{tier}-writes"),
            &format!("writes to the {tier} cache tier"),
            REFUSED_WRITES_FOR,
        )
    }

    fn write_to(
        &self,
        tier: &dyn Tier,
        to: &Target<'_>,
        found: &ManifestEntry,
        entry: &CacheEntry,
    ) -> Written {
        let name = tier.name();
        // A tier that just failed a lookup as a whole would only fail again.
        if self.down.borrow().contains(&name) {
            return Written::Down;
        }
        if name != local::NAME && self.refused_writes(name).is_open() {
            tracing::debug!(tier = name, "not written: it refused this user's writes");
            return Written::Failed;
        }
        let t0 = Instant::now();
        let result = tier.write(&Publish {
            invocation: to.invocation,
            found,
            entry,
            out_dir: to.out_dir,
            on_farm: to.on_farm,
            blobs: to.blobs,
        });
        match result {
            Ok(sent) => {
                let ms = t0.elapsed().as_millis() as u64;
                record(&self.cache_dir, |s| {
                    let t = s.tier(name);
                    t.writes += 1;
                    t.bytes_written += sent;
                    t.time_ms += ms;
                });
                self.mark_paths_if_due(tier);
                Written::Yes
            }
            Err(e) => {
                if e.kind == FailureKind::Farm(FarmErrorKind::Permission) {
                    tracing::warn!(
                        tier = name,
                        "the {name} cache tier refused this user's write: not writing it for \
                         {REFUSED_WRITES_FOR:?} (a client whose role may not write results \
                         sets [cache.jetstream] rw_mode = \"READ_ONLY\")"
                    );
                    self.refused_writes(name).trip();
                }
                self.failed(name, &e, t0.elapsed());
                match e.down {
                    true => Written::Down,
                    false => Written::Failed,
                }
            }
        }
    }

    /// Leaves this client's paths mark in a tier it just wrote, at most once a day per cache
    /// dir (a stamp file says when): enough for `--check`, nothing on the hot path.
    fn mark_paths_if_due(&self, tier: &dyn Tier) {
        if tier.name() == local::NAME {
            return;
        }
        let stamp =
            self.cache_dir
                .join(format!("paths-mark-{}-{}", tier.name(), self.paths.name()));
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < MARK_EVERY));
        if fresh {
            return;
        }
        let mark = PathsMark::now(&jetcc_common::farm::hostname());
        match tier.mark_paths(self.paths, &mark) {
            Ok(()) => {
                let _ = fsutil::write_atomic(&stamp, b"");
            }
            Err(e) => tracing::debug!(tier = tier.name(), "no paths mark: {e}"),
        }
    }

    /// Counts a tier's failure, logs its diagnosis if it is new, and feeds its breaker.
    fn failed(&self, name: &'static str, e: &TierFailure, spent: Duration) {
        let ms = spent.as_millis() as u64;
        let mut new = false;
        record(&self.cache_dir, |s| {
            if name == local::NAME && e.kind == FailureKind::Store(TierErrorKind::Corrupt) {
                Stats::bump(&mut s.errors, &ErrorKind::CorruptEntry);
            }
            let t = s.tier(name);
            Stats::bump(&mut t.errors, &e.kind);
            t.time_ms += ms;
            new = t.last_error.as_deref() != Some(e.message.as_str());
            t.last_error = Some(e.message.clone());
        });
        if new {
            tracing::warn!(tier = name, "the {name} cache tier failed: {e}");
        } else {
            tracing::debug!(tier = name, "the {name} cache tier failed: {e}");
        }
        if e.down {
            self.breaker(name).record(false);
            self.down.borrow_mut().push(name);
        }
    }
}
