//! The `Job`'s shared tiers: after a local miss, the JetStream tier, then the object-store
//! tier; a hit fills the tiers above the one that had it (the local one always); and what a
//! compile stored is written to every tier this client may write.
//!
//! Each tier keeps its own stats, where an error is an error and never a miss, and its own
//! breaker, so a dead server costs a build a few timeouts. A diagnosis is logged once: when
//! it differs from the tier's last one.

use std::time::{Duration, Instant};

use jetcc_common::manifest::ManifestEntry;
use jetcc_common::result::CacheEntry;

use super::{record, Job};
use crate::breaker::Breaker;
use crate::tiers::{ObjectSession, Publish, SharedTier, TierFailure};

/// How long a failing object-store tier is skipped.
const TIER_BREAKER: Duration = Duration::from_secs(60);

impl Job {
    /// The tier's breaker: the farm's own for JetStream (one server behind both).
    fn tier_breaker(&self, tier: &str) -> Breaker {
        match tier {
            "jetstream" => self.breaker(),
            name => Breaker::new(
                self.cache.root(),
                name,
                &format!("the {name} cache tier"),
                TIER_BREAKER,
            ),
        }
    }

    /// The object-store session, opened once per process behind its breaker.
    fn take_object(&mut self) -> Option<ObjectSession> {
        match self.object.take() {
            Some(o) => {
                self.object = Some(None);
                o
            }
            None => {
                self.object = Some(None);
                let cfg = self.object_cfg.as_ref()?;
                let name = cfg.backend.name();
                let breaker = self.tier_breaker(name);
                if breaker.is_open() {
                    return None;
                }
                match ObjectSession::open(cfg) {
                    Ok(o) => Some(o),
                    Err(e) => {
                        self.tier_failed(name, &e, Duration::ZERO);
                        None
                    }
                }
            }
        }
    }

    /// Looks the invocation up in each shared tier in order; on a hit, restores and replays
    /// it, fills the tiers above, and returns rustc's exit code.
    pub(super) fn try_shared_hit(&mut self) -> Option<i32> {
        if self.dist.is_none() && self.object_cfg.is_none() {
            return None;
        }
        let session = self.take_session();
        let object = self.take_object();
        let tiers: Vec<(&dyn SharedTier, bool)> = session
            .iter()
            .map(|s| (s as &dyn SharedTier, !self.shared_read_only))
            .chain(
                object
                    .iter()
                    .map(|o| (o as &dyn SharedTier, !o.read_only())),
            )
            .collect();
        let mut code = None;
        for (i, (tier, _)) in tiers.iter().enumerate() {
            let Some((found, entry)) = self.lookup_in(*tier) else {
                continue;
            };
            for (above, writable) in &tiers[..i] {
                if *writable {
                    self.write_to(*above, &found, &entry, false);
                }
            }
            self.replay(&entry);
            let restored = entry.total_output_bytes();
            let spent = self.clock.elapsed().as_millis() as u64;
            record(self.cache.root(), |s| {
                s.requests += 1;
                s.hits += 1;
                s.bytes_restored += restored;
                s.time_saved_ms += entry.compile_ms.saturating_sub(spent);
                s.tier("local").misses += 1;
            });
            code = Some(entry.exit_code);
            break;
        }
        self.session = Some(session);
        self.object = Some(object);
        code
    }

    fn lookup_in(&mut self, tier: &dyn SharedTier) -> Option<(ManifestEntry, CacheEntry)> {
        let t0 = Instant::now();
        let result = self.restore_from(tier);
        let spent = t0.elapsed();
        let name = tier.name();
        let crate_name = self.inv.crate_name.clone().unwrap_or_default();
        match result {
            Ok(found) => {
                self.tier_breaker(name).record(true);
                let ms = spent.as_millis() as u64;
                let read = found.as_ref().map_or(0, |(_, e)| e.total_output_bytes());
                record(self.cache.root(), |s| {
                    let t = s.tier(name);
                    match found {
                        Some(_) => t.hits += 1,
                        None => t.misses += 1,
                    }
                    t.bytes_read += read;
                    t.time_ms += ms;
                });
                if found.is_some() {
                    tracing::debug!(%crate_name, tier = name, ms, "hit ({name})");
                }
                found
            }
            Err(e) => {
                self.tier_failed(name, &e, spent);
                None
            }
        }
    }

    /// Restores the tier's result for this invocation into the out-dir and the local cache.
    fn restore_from(
        &mut self,
        tier: &dyn SharedTier,
    ) -> Result<Option<(ManifestEntry, CacheEntry)>, TierFailure> {
        let manifest = tier.manifest(&self.invocation)?;
        let env = |n: &str| std::env::var(n).ok();
        let Some(found) = manifest.find(&mut self.files, &env, &self.map).cloned() else {
            return Ok(None);
        };
        let Some(entry) = tier.entry(&found.key)? else {
            return Ok(None);
        };
        let out_dir = self.outputs.out_dir.clone();
        for out in &entry.outputs {
            let path = out_dir.join(&out.name);
            if tier.fetch(&out.digest, &path, out.mode)?.is_none() {
                tracing::debug!(digest = %out.digest, "the entry's blob expired: a miss");
                return Ok(None);
            }
            self.files.remember_written(&path, out.digest);
            // Fill the local tier too; a failure here only costs a later shared hit.
            let _ = self.cache.put_output(&out.name, &path);
        }
        let (name, text) = &entry.dep_info;
        let dest = out_dir.join(name);
        jetcc_common::fsutil::write_atomic(&dest, &self.map.restore(text.as_bytes())).map_err(
            |e| TierFailure {
                kind: "local-io",
                message: format!("cannot write {}: {e}", dest.display()),
                down: false,
            },
        )?;
        if self.cache.put_entry(&found.key, &entry).is_ok() {
            let _ = self.cache.add_to_manifest(&self.invocation, found.clone());
        }
        self.cache.commit_size();
        Ok(Some((found, entry)))
    }

    /// Writes what `store` just recorded to every shared tier this client may write, so one
    /// developer's compile is the team's hit. `on_farm`: its outputs are in the JetStream CAS.
    pub(super) fn share_stored(&mut self, on_farm: bool) {
        let Some((found, entry)) = self.stored.take() else {
            return;
        };
        // JetStream only through a session the lookup opened: none means the server is down.
        if !self.shared_read_only {
            if let Some(Some(session)) = self.session.take() {
                self.write_to(&session, &found, &entry, on_farm);
                self.session = Some(Some(session));
            }
        }
        if let Some(object) = self.take_object() {
            if !object.read_only() {
                self.write_to(&object, &found, &entry, on_farm);
            }
            self.object = Some(Some(object));
        }
    }

    fn write_to(
        &mut self,
        tier: &dyn SharedTier,
        found: &ManifestEntry,
        entry: &CacheEntry,
        on_farm: bool,
    ) {
        let name = tier.name();
        // A tier that just failed a lookup as a whole would only fail again.
        if self.tiers_down.contains(&name) {
            return;
        }
        let t0 = Instant::now();
        let result = tier.publish(&Publish {
            invocation: &self.invocation,
            found,
            entry,
            out_dir: &self.outputs.out_dir,
            on_farm,
        });
        match result {
            Ok(sent) => {
                let ms = t0.elapsed().as_millis() as u64;
                record(self.cache.root(), |s| {
                    let t = s.tier(name);
                    t.writes += 1;
                    t.bytes_written += sent;
                    t.time_ms += ms;
                });
            }
            Err(e) => self.tier_failed(name, &e, t0.elapsed()),
        }
    }

    /// Counts a tier's failure, logs its diagnosis if it is new, and feeds its breaker.
    fn tier_failed(&mut self, name: &'static str, e: &TierFailure, spent: Duration) {
        let ms = spent.as_millis() as u64;
        let mut new = false;
        record(self.cache.root(), |s| {
            let t = s.tier(name);
            *t.errors.entry(e.kind.to_owned()).or_default() += 1;
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
            self.tier_breaker(name).record(false);
            self.tiers_down.push(name);
        }
    }
}
