//! Running one job: admit it, set it up ([`setup`]: its toolchain, the system files it
//! expects, its inputs at the client's paths), run the compiler (rustc or a C compiler) in
//! the jail ([`jailed`], its stderr streamed back), answer, put the outputs in the CAS
//! ([`outputs`]) and record the result; keep its state for followers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jetcc_common::farm::{Delivery, FarmError, ReplyTo, Resources};
use jetcc_common::protocol::events::{self, JobDone, EVENTS_VERSION};
use jetcc_common::protocol::job::{JobEvent, JobRequest, JobState, INLINE_BYTES, MAX_EVENT_BYTES};
use jetcc_common::protocol::timing::ACK_WAIT;
use jetcc_common::Digest;

mod jailed;
mod layout;
mod outputs;
mod ready;
mod setup;

pub(crate) use outputs::read_output;
pub use ready::ReadyLaunchers;

use jailed::run_jailed;
use outputs::take_rest;
use setup::set_up;

use crate::blobs::BlobCache;
use crate::jail;
use crate::limits::{human, OUTPUT_LIMIT};
use crate::shipped::{ShipError, ShippedCache};
use crate::toolchains::Toolchain;

/// What every job on this worker shares.
pub struct Context {
    pub res: Resources,
    pub blobs: BlobCache,
    pub toolchains: Vec<Toolchain>,
    /// Toolchains clients ship, unpacked; `None` with `[worker] toolchain_cache_size = 0`.
    pub shipped: Option<ShippedCache>,
    pub jobs_dir: PathBuf,
    /// Starts each job's compiler in the jail, in the job's cgroups where the host lets the
    /// worker make them.
    pub launchers: Arc<ReadyLaunchers>,
    pub enforce: bool,
    pub run_as: Option<(u32, u32)>,
    pub timeout: Duration,
    pub limits: crate::sandbox::Limits,
    /// `[worker] memory_limit`, for the refusal of a job killed at it.
    pub memory_limit: u64,
    /// `[worker] disk_limit`: the job's writable dirs together, and its outputs together.
    pub disk_limit: u64,
    pub worker_id: String,
    /// The stat memo of the system files jobs expect (see [`check_system_inputs`]).
    pub stat_memo_dir: PathBuf,
}

/// How a job ended, for the worker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Compiled,
    CompileError,
    Refused,
    Expired,
}

/// Why a job could not be run here; the client compiles locally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error("{0}")]
    Farm(#[from] FarmError),
    #[error("its client no longer waits for it")]
    NotWanted,
    #[error("{0}")]
    Io(String),
    #[error("output {0} holds the worker's job root path: not hermetic")]
    NotHermetic(String),
    #[error("rustc ran past the {0:?} limit and was killed")]
    Timeout(Duration),
    #[error("no toolchain {0} here")]
    NoToolchain(Digest),
    #[error("{0}")]
    Shipped(#[from] ShipError),
    #[error("this worker's {0} differs from the client's (another system, another object)")]
    SystemFileDiffers(String),
    #[error(
        "rustc wrote more than {} to stdout and stderr: stopped (compile it locally to see \
         all of its output)",
        human(OUTPUT_LIMIT as u64)
    )]
    OutputTooLarge,
    #[error("the job's outputs take more than the worker's disk limit ({})", human(*.0))]
    OutputsTooLarge(u64),
    #[error(
        "the job's writable dirs passed the worker's disk limit ({}): stopped",
        human(*.0)
    )]
    DiskLimit(u64),
    #[error(
        "the job passed the worker's memory limit ({}) and was killed",
        human(*.0)
    )]
    MemoryLimit(u64),
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |e| JobError::Io(format!("{what}: {e}"))
}

/// Handles one delivered job: admit it, run it while telling the queue it is alive, answer
/// its client and followers, settle it with the queue, tell the monitor. Never panics on bad
/// input.
pub async fn handle(ctx: Arc<Context>, delivery: Delivery) -> Outcome {
    let Admitted {
        job,
        reply,
        redelivered,
    } = match admit(&ctx, &delivery).await {
        Ok(admitted) => admitted,
        Err(dropped) => {
            let _ = delivery.term().await;
            return dropped;
        }
    };
    tracing::debug!(
        job = job.job_id,
        crate_name = job.crate_name,
        redelivered,
        "job started"
    );
    // Clients whose identical jobs were de-duplicated follow this one through its state.
    let dedup = job.dedup_key();
    let started = Instant::now();
    let result = run_kept_alive(&ctx, &delivery, &job, &dedup, &reply).await;
    if let Err(JobError::NotWanted) = result {
        tracing::debug!(
            job = job.job_id,
            "its client no longer waits: dropped unrun"
        );
        let _ = delivery.term().await;
        return Outcome::Expired;
    }
    let (outcome, state, error) = conclude(&job, result, &reply).await;
    if let Err(e) = ctx.res.put_job_state(&dedup, &state).await {
        tracing::debug!(job = job.job_id, "{e}");
    }
    // A compile error is an answer too: acked, never retried.
    let _ = delivery.ack().await;
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        job = job.job_id,
        crate_name = job.crate_name,
        ms,
        ?outcome,
        "job done"
    );
    publish_done(&ctx, &job, outcome, error, ms).await;
    outcome
}

/// A delivered job worth running.
struct Admitted {
    job: JobRequest,
    reply: ReplyTo,
    redelivered: bool,
}

/// Checks a delivered job before any work: it decodes, names a reply subject, is valid, was
/// not redelivered and is not past its deadline (whether its client still waits is asked
/// while it is laid out, see [`run`]). `Err` is how a job dropped unrun counts; the caller
/// terminates it.
async fn admit(ctx: &Context, delivery: &Delivery) -> Result<Admitted, Outcome> {
    let job = JobRequest::decode_unchecked(delivery.payload()).map_err(|e| {
        tracing::warn!("dropping a malformed job: {e}");
        Outcome::Refused
    })?;
    // Without a reply subject of ours there is nobody to tell why the job is dropped.
    let reply = ctx
        .res
        .farm
        .reply_to(&job.reply_subject, &job.job_id, &ctx.worker_id)
        .map_err(|_| {
            tracing::warn!("dropping a job with reply subject {:?}", job.reply_subject);
            Outcome::Refused
        })?;
    if let Err(e) = job.validate() {
        tracing::warn!("refusing a hostile or malformed job: {e}");
        reply
            .send(&JobEvent::Refused {
                reason: e.to_string(),
            })
            .await;
        return Err(Outcome::Refused);
    }
    let redelivered = delivery.redelivered();
    if redelivered {
        // The worker that had it died or stalled mid-job: maybe the job killed it. Never
        // hand it to the next one; its client compiles it.
        tracing::warn!(
            job = job.job_id,
            crate_name = job.crate_name,
            "refusing a redelivered job: the worker that ran it stopped"
        );
        reply
            .send(&JobEvent::Refused {
                reason: REDELIVERED.into(),
            })
            .await;
        return Err(Outcome::Refused);
    }
    if past_deadline(&job) {
        return Err(Outcome::Expired);
    }
    Ok(Admitted {
        job,
        reply,
        redelivered,
    })
}

/// Why a redelivered job is refused.
const REDELIVERED: &str = "the worker running this job stopped mid-job (the job may have \
    killed it): not retried on another worker";

/// Whether the job's client gave up on it by now.
fn past_deadline(job: &JobRequest) -> bool {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let past = job.deadline_unix_ms < now_ms;
    if past {
        tracing::debug!(job = job.job_id, "past its deadline: dropped unrun");
    }
    past
}

/// Whether the job's client still waits for it (it answers `Started`), as
/// [`JobError::NotWanted`].
async fn client_waits(reply: &ReplyTo) -> Result<(), JobError> {
    match reply.client_waits().await {
        true => Ok(()),
        false => Err(JobError::NotWanted),
    }
}

/// Runs the job in its own dir (removed after) while marking it in progress with the queue
/// and running for its followers: a worker that dies stops these, and the job is
/// redelivered after the ack wait.
async fn run_kept_alive(
    ctx: &Context,
    delivery: &Delivery,
    job: &JobRequest,
    dedup: &Digest,
    reply: &ReplyTo,
) -> Result<Finished, JobError> {
    let running = JobState::Running {
        worker: ctx.worker_id.clone(),
    };
    // Off the job's path: on a distant link this write is a round trip.
    let (res, state, key) = (ctx.res.clone(), running.clone(), *dedup);
    tokio::spawn(async move { res.put_job_state(&key, &state).await });
    // Its own dir even if a client sent the same job id twice: jobs never share files.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let job_dir = ctx.jobs_dir.join(format!("{}.{seq}", job.job_id));
    let progress = async {
        loop {
            tokio::time::sleep(ACK_WAIT / 3).await;
            let _ = delivery.in_progress().await;
            let _ = ctx.res.put_job_state(dedup, &running).await;
        }
    };
    let result = tokio::select! {
        r = run(ctx, job, &job_dir, reply) => r,
        _ = progress => unreachable!(),
    };
    let _ = std::fs::remove_dir_all(&job_dir);
    result
}

/// How the job ended: for the counters, for its followers, and the error the monitor shows.
/// A job that could not run is refused to its client here.
async fn conclude(
    job: &JobRequest,
    result: Result<Finished, JobError>,
    reply: &ReplyTo,
) -> (Outcome, JobState, Option<String>) {
    match result {
        Ok(f) => {
            let (outcome, error) = match f.exit_code {
                0 => (Outcome::Compiled, None),
                code => (Outcome::CompileError, Some(format!("rustc exited {code}"))),
            };
            (outcome, f.into_state(), error)
        }
        Err(e) => {
            tracing::warn!(
                job = job.job_id,
                crate_name = job.crate_name,
                "refused: {e}"
            );
            let reason = e.to_string();
            reply
                .send(&JobEvent::Refused {
                    reason: reason.clone(),
                })
                .await;
            (
                Outcome::Refused,
                JobState::Refused {
                    reason: reason.clone(),
                },
                Some(reason),
            )
        }
    }
}

/// Tells the monitor the job is done (fire-and-forget).
async fn publish_done(
    ctx: &Context,
    job: &JobRequest,
    outcome: Outcome,
    error: Option<String>,
    duration_ms: u64,
) {
    let done = JobDone {
        v: EVENTS_VERSION,
        worker: ctx.worker_id.clone(),
        crate_name: job.crate_name.clone(),
        ok: outcome == Outcome::Compiled,
        error,
        duration_ms,
    };
    ctx.res.farm.publish_event(events::JOB, done.encode()).await;
}

/// A job rustc ran to the end, with everything its followers need.
struct Finished {
    exit_code: i32,
    stdout: Vec<u8>,
    /// Every stderr line, in order.
    stderr: Vec<u8>,
    /// Every output, by name.
    outputs: Vec<(String, Digest)>,
    compile_ms: u64,
}

impl Finished {
    /// The state followers read; one too large for a KV value tells them to compile locally.
    fn into_state(self) -> JobState {
        let size = self.stdout.len() + self.stderr.len() + 64 * self.outputs.len();
        if size > MAX_EVENT_BYTES / 2 {
            return JobState::Refused {
                reason: format!("rustc's output ({size} bytes) is too large to share"),
            };
        }
        JobState::Done {
            exit_code: self.exit_code,
            stdout: self.stdout,
            stderr: self.stderr,
            outputs: self.outputs,
            compile_ms: self.compile_ms,
        }
    }
}

/// Runs the job; returns once its outputs are uploaded and "done" is sent.
async fn run(
    ctx: &Context,
    job: &JobRequest,
    job_dir: &Path,
    reply: &ReplyTo,
) -> Result<Finished, JobError> {
    let from = Instant::now();
    // The job is laid out while its client says whether it still waits (a round trip): its
    // compiler starts, or a failed set-up is told, only once it said so. The question goes
    // out first (`biased`): laying out blocks this task for milliseconds (a directory per
    // level of the client's paths), which must overlap the round trip, not precede it.
    let mut waits = std::pin::pin!(client_waits(reply));
    let mut set = std::pin::pin!(set_up(ctx, job, job_dir));
    let (using, layout, plan_file) = tokio::select! {
        biased;
        w = &mut waits => {
            w?;
            set.await?
        }
        s = &mut set => {
            waits.await?;
            s?
        }
    };
    let tc = using.toolchain();
    let ready = ctx.launchers.take()?;
    let cgroup = ready.cgroup;
    let set_up = from.elapsed();
    let ran = run_jailed(ctx, job, &layout, reply, ready.launcher, &plan_file).await;
    let jailed = from.elapsed();
    let oom_kills = cgroup.as_ref().map_or(0, |c| c.exceeded().oom_kills);
    if let Some(c) = cgroup {
        let _ = tokio::task::spawn_blocking(move || c.remove()).await;
    }
    if oom_kills > 0 {
        return Err(JobError::MemoryLimit(ctx.memory_limit));
    }
    let mut ran = ran?;
    if ran.exit_code == jail::LAUNCH_FAILED {
        return Err(JobError::Io(format!(
            "the sandbox could not start rustc: {}",
            String::from_utf8_lossy(&ran.launcher_error).trim()
        )));
    }
    let budget = INLINE_BYTES.saturating_sub(ran.stdout.len());
    let (outputs, inline) = match ran.exit_code {
        0 => take_rest(ctx, job, &layout, &ran.sent, budget, &mut ran.deferred).await?,
        _ => Default::default(),
    };
    let compile_ms = ran.took.as_millis() as u64;
    let rest = from.elapsed();
    reply
        .send(&JobEvent::Done {
            exit_code: ran.exit_code,
            stdout: ran.stdout.clone(),
            outputs: outputs.clone(),
            compile_ms,
            inline,
        })
        .await;
    tracing::debug!(
        job = job.job_id,
        set_up_us = set_up.as_micros() as u64,
        jail_us = ran.took.as_micros() as u64,
        cleanup_us = (rest - jailed).as_micros() as u64,
        answered_us = from.elapsed().as_micros() as u64,
        "job phases"
    );
    // The client has them; the record and the followers read them from the CAS.
    std::mem::take(&mut ran.deferred).put(ctx).await?;
    let mut all_outputs = ran.sent;
    all_outputs.extend(outputs);
    // After the client has its answer, while the outputs are still here.
    if ran.exit_code == 0 {
        let done = crate::share::Ran {
            job,
            toolchain: tc,
            out_dir: &layout.out_in_root,
            outputs: &all_outputs,
            stdout: &ran.stdout,
            stderr: &ran.stderr,
            compile_ms,
            disk_limit: ctx.disk_limit,
        };
        crate::share::record(&ctx.res, done).await;
    }
    Ok(Finished {
        exit_code: ran.exit_code,
        stdout: ran.stdout,
        stderr: ran.stderr,
        outputs: all_outputs,
        compile_ms,
    })
}
