//! The CAS's garbage collection: keeps `jetcc-cas` below its size limit by evicting whole
//! blobs, oldest-written first, so a full CAS keeps taking writes.
//!
//! Design choices:
//! - **Whole blobs.** A blob is an object of several chunk messages and one metadata message.
//!   The stream's own limit drops the oldest *messages* (`DiscardPolicy::Old`, set by
//!   [`super::limits`]); alone it would leave the object at the boundary with its metadata
//!   and part of its chunks, which reads as a miss. That is the safety net for a burst the
//!   GC has not caught up with; the GC keeps the bucket between `gc_low_water` and
//!   `gc_high_water` percent of its size so the net is seldom used, removing an object's
//!   metadata and then its chunks.
//! - **Oldest-written, not least-recently-used.** Reads are direct gets that leave no trace
//!   on the server; recording use would cost a write per hit, which read-only clients may
//!   not make. A blob still in use that goes is uploaded again by its next writer (a miss
//!   and a recompile for the readers in between, never a failure).
//! - **One at a time.** The collector holds a key in KV `jetcc-workers`, created with a
//!   revision check and refreshed while it works; the bucket's TTL frees it when its holder
//!   dies. Others skip the round.
//! - **No consumer.** Objects are listed from the stream's subjects (a stream info request)
//!   and each metadata message read by a direct get, which any number of readers may do.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::kv;
use async_nats::jetstream::object_store::ObjectInfo;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::{FarmError, Resources};
use crate::config::CacheLimits;
use crate::protocol::names::GC_LOCK_KEY;
use crate::protocol::timing::HEARTBEAT_TTL;

/// Chunks without metadata younger than this may be an upload in progress: left alone.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);
/// Metadata reads in flight at once while listing.
const LIST_CONCURRENCY: usize = 32;
/// What a stored message costs beyond its payload and subject (the file store's record
/// header and hash, the rollup header of metadata), for estimating what an eviction frees.
const MESSAGE_OVERHEAD: u64 = 48;

/// When to collect and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// Collect when the CAS holds more than this percentage of its limit.
    pub high_water: u8,
    /// Evict down to this percentage.
    pub low_water: u8,
    /// Chunks no metadata names are removed once their last write is this old.
    pub orphan_grace: Duration,
}

impl GcPolicy {
    pub fn from_limits(limits: &CacheLimits) -> GcPolicy {
        GcPolicy {
            high_water: limits.gc_high_water,
            low_water: limits.gc_low_water,
            orphan_grace: ORPHAN_GRACE,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GcOutcome {
    /// The CAS has no byte limit: only its age limit applies.
    Unlimited,
    /// Below the high-water mark: nothing to do.
    BelowHighWater {
        used: u64,
        max_bytes: u64,
    },
    /// Another collector holds the lock.
    Busy {
        holder: String,
    },
    Collected(GcReport),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub max_bytes: u64,
    /// The stream's size before and after (as the server counts it).
    pub used_before: u64,
    pub used_after: u64,
    /// Blobs evicted, and their content's size.
    pub evicted: usize,
    pub evicted_bytes: u64,
    /// Deletion markers of blobs deleted one by one (a corrupt blob, `jetcc --check`'s probe).
    pub tombstones: usize,
    /// Chunk sets no metadata named (an upload that failed half-way).
    pub orphans: usize,
    /// The lock was lost mid-round (its refresh failed): the round stopped early.
    pub interrupted: bool,
}

/// One object as its metadata message describes it.
struct Object {
    meta_subject: String,
    meta_sequence: u64,
    meta_len: u64,
    info: ObjectInfo,
}

impl Object {
    /// What removing it frees in the stream, estimated.
    fn stored_bytes(&self, chunk_subject_len: u64) -> u64 {
        self.info.size as u64
            + self.info.chunks as u64 * (chunk_subject_len + MESSAGE_OVERHEAD)
            + self.meta_len
            + self.meta_subject.len() as u64
            + MESSAGE_OVERHEAD
    }
}

impl Resources {
    /// One round of garbage collection as `holder` (a name for logs and for other
    /// collectors): if the CAS is above `policy.high_water`, takes the lock and evicts the
    /// oldest-written blobs down to `policy.low_water`, and removes deletion markers and
    /// chunks no metadata names.
    pub async fn collect_garbage(
        &self,
        policy: &GcPolicy,
        holder: &str,
    ) -> Result<GcOutcome, FarmError> {
        let info = self
            .cas
            .stream_info()
            .await
            .map_err(|e| FarmError::other("cannot read the CAS's size", e))?;
        let Ok(max_bytes) = u64::try_from(info.config.max_bytes) else {
            return Ok(GcOutcome::Unlimited);
        };
        let used = info.state.bytes;
        if u128::from(used) * 100 <= u128::from(max_bytes) * u128::from(policy.high_water) {
            return Ok(GcOutcome::BelowHighWater { used, max_bytes });
        }
        let workers = self.workers.store(&self.farm).await?;
        let Some(lock) = GcLock::acquire(workers, holder).await? else {
            let holder = workers
                .get(GC_LOCK_KEY)
                .await
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Ok(GcOutcome::Busy { holder });
        };
        let result = self.evict(policy, &lock, max_bytes).await;
        lock.release().await;
        result.map(GcOutcome::Collected)
    }

    async fn evict(
        &self,
        policy: &GcPolicy,
        lock: &GcLock,
        max_bytes: u64,
    ) -> Result<GcReport, FarmError> {
        let names = &self.farm.names;
        let (used_before, mut objects) = self.list_objects().await?;
        let mut report = GcReport {
            max_bytes,
            used_before,
            ..Default::default()
        };
        let target = u64::try_from(u128::from(max_bytes) * u128::from(policy.low_water) / 100)
            .unwrap_or(u64::MAX);
        let chunk_subject_len = names.cas_chunk_subject("x").len() as u64 + 21;

        // Oldest-written first: the metadata's sequence is when its upload finished.
        objects.sort_by_key(|o| o.meta_sequence);
        let live: std::collections::HashSet<String> = objects
            .iter()
            .filter(|o| !o.info.deleted)
            .map(|o| o.info.nuid.clone())
            .collect();
        let mut used = used_before;
        for object in &objects {
            if lock.lost() {
                report.interrupted = true;
                break;
            }
            if object.info.deleted {
                self.purge_meta(object).await?;
                report.tombstones += 1;
                continue;
            }
            if used <= target {
                continue;
            }
            self.purge_meta(object).await?;
            self.purge_chunks(&names.cas_chunk_subject(&object.info.nuid))
                .await?;
            used = used.saturating_sub(object.stored_bytes(chunk_subject_len));
            report.evicted += 1;
            report.evicted_bytes += object.info.size as u64;
        }
        if !report.interrupted {
            report.orphans = self.purge_orphans(&live, policy.orphan_grace).await?;
        }
        report.used_after = self
            .cas
            .stream_info()
            .await
            .map_err(|e| FarmError::other("cannot read the CAS's size", e))?
            .state
            .bytes;
        Ok(report)
    }

    /// The stream's size and every object's latest metadata.
    async fn list_objects(&self) -> Result<(u64, Vec<Object>), FarmError> {
        let listing = |e: &dyn std::fmt::Display| FarmError::other("cannot list the CAS", e);
        let mut subjects = self
            .cas
            .stream
            .info_with_subjects(self.farm.names.cas_meta_subjects())
            .await
            .map_err(|e| listing(&e))?;
        let used = subjects.info.state.bytes;
        let mut meta_subjects = Vec::new();
        while let Some(next) = subjects.next().await {
            meta_subjects.push(next.map_err(|e| listing(&e))?.0);
        }
        let stream = self.cas.stream.clone();
        let objects: Vec<Option<Object>> = futures_util::stream::iter(meta_subjects)
            .map(|subject| {
                let stream = stream.clone();
                async move {
                    // Gone since the listing (another delete): nothing to do.
                    let Ok(msg) = stream.direct_get_last_for_subject(subject.clone()).await else {
                        return Ok(None);
                    };
                    match serde_json::from_slice::<ObjectInfo>(&msg.payload) {
                        Ok(info) => Ok(Some(Object {
                            meta_subject: subject,
                            meta_sequence: msg.sequence,
                            meta_len: msg.payload.len() as u64,
                            info,
                        })),
                        Err(e) => Err(FarmError::other(
                            &format!("unreadable metadata on {subject}"),
                            e,
                        )),
                    }
                }
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .try_collect()
            .await?;
        Ok((used, objects.into_iter().flatten().collect()))
    }

    /// Removes an object's metadata as read (a newer write of the same name stays).
    async fn purge_meta(&self, object: &Object) -> Result<(), FarmError> {
        self.cas
            .stream
            .purge()
            .filter(object.meta_subject.as_str())
            .sequence(object.meta_sequence + 1)
            .await
            .map(drop)
            .map_err(|e| FarmError::other("cannot evict a blob's metadata", e))
    }

    async fn purge_chunks(&self, chunk_subject: &str) -> Result<(), FarmError> {
        self.cas
            .stream
            .purge()
            .filter(chunk_subject)
            .await
            .map(drop)
            .map_err(|e| FarmError::other("cannot evict a blob's chunks", e))
    }

    /// Removes chunk sets whose object no metadata names, once older than `grace`.
    async fn purge_orphans(
        &self,
        live: &std::collections::HashSet<String>,
        grace: Duration,
    ) -> Result<usize, FarmError> {
        let names = &self.farm.names;
        let listing = |e: &dyn std::fmt::Display| FarmError::other("cannot list the CAS", e);
        let prefix = names.cas_chunk_subject("");
        let subjects: Vec<(String, usize)> = self
            .cas
            .stream
            .info_with_subjects(names.cas_chunk_subjects())
            .await
            .map_err(|e| listing(&e))?
            .try_collect()
            .await
            .map_err(|e| listing(&e))?;
        let now = SystemTime::now();
        let mut purged = 0;
        for (subject, _) in subjects {
            let Some(nuid) = subject.strip_prefix(&prefix) else {
                continue;
            };
            if live.contains(nuid) {
                continue;
            }
            let Ok(last) = self
                .cas
                .stream
                .direct_get_last_for_subject(subject.clone())
                .await
            else {
                continue;
            };
            let written: SystemTime = last.time.into();
            if now.duration_since(written).unwrap_or_default() >= grace {
                self.purge_chunks(&subject).await?;
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Runs [`Resources::collect_garbage`] now and every `[cache.jetstream]
    /// gc_interval_secs` until the returned task is dropped. Workers run it.
    pub fn spawn_gc(&self, holder: String) -> GcTask {
        let res = self.clone();
        let limits = self.farm.limits;
        let policy = GcPolicy::from_limits(&limits);
        let handle = tokio::spawn(async move {
            loop {
                match res.collect_garbage(&policy, &holder).await {
                    Ok(GcOutcome::Collected(r)) => tracing::info!(
                        evicted = r.evicted,
                        evicted_bytes = r.evicted_bytes,
                        tombstones = r.tombstones,
                        orphans = r.orphans,
                        used_before = r.used_before,
                        used_after = r.used_after,
                        max_bytes = r.max_bytes,
                        interrupted = r.interrupted,
                        "cas gc: evicted {} blobs, {} → {} of {} bytes",
                        r.evicted,
                        r.used_before,
                        r.used_after,
                        r.max_bytes
                    ),
                    Ok(GcOutcome::Busy { holder }) => {
                        tracing::debug!("cas gc: {holder} is collecting")
                    }
                    Ok(other) => tracing::trace!("cas gc: {other:?}"),
                    Err(e) => tracing::warn!(
                        "cas gc failed: {e} (this user needs the rights nats/roles.conf gives \
                         workers for the CAS and the gc.lock key)"
                    ),
                }
                tokio::time::sleep(limits.gc_interval).await;
            }
        });
        GcTask(handle)
    }
}

/// The periodic collector; stops when dropped.
pub struct GcTask(tokio::task::JoinHandle<()>);

impl Drop for GcTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The collector's lock: [`GC_LOCK_KEY`] in KV `jetcc-workers`, refreshed while held.
struct GcLock {
    kv: kv::Store,
    revision: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    refresher: tokio::task::JoinHandle<()>,
}

impl GcLock {
    /// The lock, or `None` if another holds it.
    async fn acquire(kv: &kv::Store, holder: &str) -> Result<Option<GcLock>, FarmError> {
        let value = Bytes::from(holder.to_owned());
        let revision = match kv.create(GC_LOCK_KEY, value.clone()).await {
            Ok(rev) => rev,
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(FarmError::other("cannot take the GC lock", e)),
        };
        let revision = Arc::new(AtomicU64::new(revision));
        let lost = Arc::new(AtomicBool::new(false));
        let refresher = {
            let (kv, revision, lost) = (kv.clone(), revision.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    // Well within the bucket's TTL, which would free the key.
                    tokio::time::sleep(HEARTBEAT_TTL / 4).await;
                    let rev = revision.load(Ordering::SeqCst);
                    match kv.update(GC_LOCK_KEY, value.clone(), rev).await {
                        Ok(next) => revision.store(next, Ordering::SeqCst),
                        Err(e) => {
                            tracing::warn!("cas gc: lost the lock: {e}");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        Ok(Some(GcLock {
            kv: kv.clone(),
            revision,
            lost,
            refresher,
        }))
    }

    fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    async fn release(self) {
        self.refresher.abort();
        let rev = self.revision.load(Ordering::SeqCst);
        if let Err(e) = self.kv.delete_expect_revision(GC_LOCK_KEY, Some(rev)).await {
            // It expires with the bucket's TTL anyway.
            tracing::debug!("cas gc: cannot release the lock: {e}");
        }
    }
}
