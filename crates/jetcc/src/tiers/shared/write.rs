//! Writing a stored result to the shared tiers: filed for the uploader
//! ([`super::super::pending`]) where the local tier keeps its blobs, else written here; the
//! uploader's own writes; the paths mark; skipping a tier that refused this user's writes.

use std::path::Path;
use std::time::{Duration, Instant};

use jetcc_common::cache::{DiskCache, PathsMark};
use jetcc_common::farm::FarmErrorKind;
use jetcc_common::manifest::ManifestEntry;
use jetcc_common::result::CacheEntry;
use jetcc_common::{environ, fsutil, Digest};

use super::super::{jetstream, local, pending, Action, FailureKind, Publish, Tier};
use super::SharedTiers;
use crate::breaker::Breaker;
use crate::record;

/// How often a writer refreshes its paths mark in a shared tier.
const MARK_EVERY: Duration = Duration::from_secs(86_400);

/// How long a tier that refused this user a write is not written again: a role changes
/// rarely, and each refused write would cost a round trip.
const REFUSED_WRITES_FOR: Duration = Duration::from_secs(3600);

/// Where a write's result comes from, and what it is filed under.
pub(super) struct Target<'a> {
    pub invocation: &'a Digest,
    pub out_dir: &'a Path,
    pub on_farm: bool,
    pub blobs: Option<&'a DiskCache>,
}

/// How one write to a tier ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    Yes,
    /// The tier is down (or was in this process): worth trying again later.
    Down,
    /// Refused or failed for this result alone: not worth trying again.
    Failed,
}

impl SharedTiers {
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
        if self.defer_shares && self.file_share(action, found, entry, on_farm, &shared) {
            return;
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

    /// Files the share of `action`'s result for the uploader to write to `tiers`, and starts
    /// the uploader; `false`: it could not be filed or started, so the caller writes it.
    fn file_share(
        &self,
        action: &dyn Action,
        found: &ManifestEntry,
        entry: &CacheEntry,
        on_farm: bool,
        tiers: &[&dyn Tier],
    ) -> bool {
        let share = pending::Share::new(
            *action.digest(),
            found.clone(),
            action.output_dir().to_path_buf(),
            on_farm,
            tiers.iter().map(|t| t.name().to_owned()).collect(),
            action.label().to_owned(),
        );
        let filed = match pending::file(&self.cache_dir, &share) {
            Ok(filed) => filed,
            Err(e) => {
                tracing::debug!("sharing here: {e}");
                return false;
            }
        };
        if let Err(e) = pending::start_uploader(&self.cache_dir) {
            tracing::warn!("cannot start the uploader ({e}): sharing here");
            let _ = std::fs::remove_file(filed);
            return false;
        }
        tracing::debug!(unit = action.label(), "share filed for the uploader");
        // Monitors hear of a write from the unit whose result it is (its event), counted as
        // filed; `--show-stats` counts it once written.
        let bytes = entry.total_output_bytes();
        crate::events::note(&mut |s| {
            for name in &share.tiers {
                let t = s.tier(name);
                t.writes += 1;
                t.bytes_written += bytes;
            }
        });
        true
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
                    self.open_object();
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

    pub(super) fn write_to(
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
}
