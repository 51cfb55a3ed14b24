//! [`SharedTiers`]: the shared tiers of one wrapper process, each opened once behind its
//! breaker, looked up in order after the local one; a tier's failures counted, diagnosed
//! once and fed to its breaker. Writing a stored result to them is [`write`]'s.

mod write;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jetcc_common::cache::TierErrorKind;
use jetcc_common::config::{Config, FarmConfig, ObjectTierConfig, PathsMode};
use jetcc_common::files::FileDigests;
use jetcc_common::manifest::ManifestEntry;
use jetcc_common::result::CacheEntry;
use jetcc_common::stats::{ErrorKind, Stats};

use super::{jetstream, local, restore, Action, FailureKind, JetStreamTier, LocalTier};
use super::{ObjectSession, Restored, Tier, TierFailure};
use crate::breaker::Breaker;
use crate::record;
use crate::remote::Session;
use write::Target;

/// How long a failing object-store tier is skipped.
const TIER_BREAKER: Duration = Duration::from_secs(60);

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

    /// The object-store session, opened on the first call (later calls change nothing).
    fn open_object(&mut self) {
        if !matches!(self.object, Lazy::Unopened) {
            return;
        }
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
        self.open_object();
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
