//! The worker's life: connect, create the farm's resources, pull jobs as slots free up,
//! heartbeat, collect the CAS's garbage (`farm::gc`), and stop cleanly on SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jetcc_common::config::{Config, FarmConfig};
use jetcc_common::farm::{Delivery, Farm, FarmError, Filing, JobQueue, Lifetime};
use jetcc_common::protocol::timing::{ACK_WAIT, HEARTBEAT_EVERY};
use jetcc_common::protocol::worker::WorkerStatus;
use jetcc_common::Digest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::blobs::BlobCache;
use crate::cgroup::{CgroupLimits, Cgroups};
use crate::job::{self, Context, Outcome, ReadyLaunchers};
use crate::shipped::ShippedCache;
use crate::{selftest, toolchains};

/// Command-line overrides of `[worker]`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub slots: Option<usize>,
    /// Run jobs without Landlock where the kernel cannot enforce it (loudly named flag).
    pub insecure_no_sandbox: bool,
}

/// Why the worker could not start or had to stop; each maps to an exit code in `main`.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no farm configured: set [dist] nats_url in the config file, or JETCC_NATS_URL")]
    NoFarm,
    #[error("{0}")]
    Farm(#[from] FarmError),
    #[error(
        "this kernel cannot sandbox jobs ({0}); jobs run anyone's proc-macros, so the worker \
         refuses to start. Use a kernel with Landlock (5.13+, ABI 4+ for network rules), or \
         pass --insecure-no-sandbox to run jobs unconfined"
    )]
    NoSandbox(String),
    #[error(
        "{0}; jobs run anyone's proc-macros, so a root worker runs them as an unprivileged \
         user and refuses to start without one"
    )]
    NoUnprivilegedUser(String),
    #[error(
        "the jail's self-test failed: {0}. This host cannot run jobs confined (user or mount \
         namespaces, chroot, Landlock or cgroups refused), so the worker refuses to start \
         rather than refuse every job"
    )]
    SelfTest(String),
    #[error("{0}")]
    Setup(String),
}

pub async fn serve(
    config: Config,
    opts: Options,
    zygote: crate::jail::Zygote,
) -> Result<(), ServeError> {
    let launcher =
        crate::jail::Launcher::new(zygote).map_err(|e| ServeError::Setup(e.to_string()))?;
    let dist = config.farm.clone().ok_or(ServeError::NoFarm)?;
    let enforce = sandbox_enforced(opts.insecure_no_sandbox)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = opts.slots.or(config.worker.slots).unwrap_or(cores).max(1);
    let dir = config
        .worker
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.cache_dir.join("worker"));
    let jobs_dir = emptied(dir.join("jobs"))?;
    // Launchers lay the jail's system paths out there while they wait for a job.
    launcher
        .stage_at(emptied(dir.join("jail-stage"))?)
        .map_err(|e| ServeError::Setup(e.to_string()))?;
    let run_as = run_as(config.worker.run_as.as_deref())?;
    let cgroups = job_cgroups(&config);
    let (memory_limit, disk_limit) = (config.worker.memory_limit, config.worker.disk_limit);
    let limits = crate::sandbox::Limits {
        // With a cgroup holding the job to memory_limit, the per-process rlimit is only a
        // backstop for reservations the cgroup does not count (untouched mappings).
        memory_bytes: Some(match cgroups {
            Some(_) => memory_limit.saturating_mul(2),
            None => memory_limit,
        }),
        // RLIMIT_NPROC counts every thread of the uid jobs run as, across all slots.
        processes: Some(64 * slots as u64 + 64),
        // No single file may outgrow the disk limit between two polls of it.
        file_size_bytes: crate::sandbox::Limits::default()
            .file_size_bytes
            .map(|f| f.min(disk_limit)),
    };
    let launchers = Arc::new(ReadyLaunchers::new(launcher, cgroups, slots));
    selftest::run(&selftest::Setup {
        dir: &jobs_dir,
        run_as,
        limits,
        enforce,
        launchers: &launchers,
    })
    .await
    .map_err(ServeError::SelfTest)?;
    let ships = config.worker.toolchain_cache_size > 0;
    let toolchains = toolchains::discover(
        &config.worker.toolchains,
        config.worker.c_compilers.as_deref(),
        &dir.join("toolchains"),
        ships,
    )
    .map_err(|e| ServeError::Setup(e.to_string()))?;
    let shipped = match ships {
        true => Some(shipped_cache(&dir, &config, &toolchains)?),
        false => None,
    };
    let host = jetcc_common::farm::hostname();
    let id = worker_id(&dist, &host);

    let farm = Farm::connect(&dist, &format!("jetcc-worker {id}"), Lifetime::Service).await?;
    let res = farm.ensure_resources().await?;
    let blobs = BlobCache::open(dir.join("blobs"), config.cache_size)
        .map_err(|e| ServeError::Setup(format!("cannot open the blob cache: {e}")))?;
    let ctx = Arc::new(Context {
        res,
        blobs,
        toolchains,
        shipped,
        jobs_dir,
        launchers,
        enforce,
        run_as,
        timeout: Duration::from_secs(config.worker.timeout_secs),
        limits,
        memory_limit,
        disk_limit,
        worker_id: id,
        stat_memo_dir: dir.join("stat-memo"),
    });
    let pool = Pool {
        ctx: ctx.clone(),
        slots: Arc::new(Semaphore::new(slots)),
        counters: Arc::new(Counters::default()),
        stopping: Arc::new(tokio::sync::Notify::new()),
        held: Arc::default(),
    };
    let mut heartbeat = Heartbeat {
        ctx: ctx.clone(),
        name: config
            .worker
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| host.clone()),
        host,
        cores,
        slots,
        counters: pool.counters.clone(),
        rtt: Duration::ZERO,
    };
    // From here on, a stop request is a clean stop.
    let stop_requested = shutdown_signal();
    heartbeat.announce().await?;
    tracing::info!(
        id = %ctx.worker_id,
        slots,
        sandbox = enforce,
        run_as = ?ctx.run_as,
        cgroups = ?ctx.launchers.cgroups().map(Cgroups::describe),
        toolchains = ?ctx.toolchains.iter().map(|t| &t.name).collect::<Vec<_>>(),
        ships_for = ?ctx.shipped.as_ref().map(|c| c.host()),
        "jetcc-worker serving {}",
        farm.url
    );

    // The CAS's garbage collection: every worker looks, one at a time collects (farm::gc).
    let _gc = ctx.res.spawn_gc(ctx.worker_id.clone());
    let pullers = start_pullers(&pool).await?;
    let zygote_gone = tokio::select! {
        _ = heartbeat.beat() => false,
        _ = follow_held(pool.clone()) => false,
        _ = stop_requested => false,
        _ = ctx.launchers.gone() => true,
    };
    stop(&pool, pullers, slots).await;
    let launchers = ctx.launchers.clone();
    let _ = tokio::task::spawn_blocking(move || launchers.close()).await;
    match zygote_gone {
        true => Err(ServeError::Setup(
            crate::jail::JailError::ZygoteGone.to_string(),
        )),
        false => Ok(()),
    }
}

/// The cache of shipped toolchains, for the host of this worker's own rustc (else the
/// host it was built for).
fn shipped_cache(
    dir: &std::path::Path,
    config: &Config,
    own: &[toolchains::Toolchain],
) -> Result<ShippedCache, ServeError> {
    let host = own
        .iter()
        .find(|t| t.sysroot.is_some())
        .map(|t| t.host.clone())
        .unwrap_or_else(crate::shipped::this_host);
    ShippedCache::open(
        dir.join("shipped"),
        config.worker.toolchain_cache_size,
        host,
    )
    .map_err(|e| ServeError::Setup(format!("cannot open the shipped toolchains' cache: {e}")))
}

/// Whether jobs run under Landlock: yes where the kernel enforces it all; elsewhere only
/// if told `--insecure-no-sandbox`, loudly.
fn sandbox_enforced(insecure_no_sandbox: bool) -> Result<bool, ServeError> {
    let support = crate::sandbox::probe();
    let enforce = support.is_complete();
    if !enforce {
        if !insecure_no_sandbox {
            return Err(ServeError::NoSandbox(support.describe()));
        }
        tracing::warn!(
            "INSECURE: jobs run without Landlock ({})",
            support.describe()
        );
    }
    Ok(enforce)
}

/// `dir`, created empty: what a worker that died left there is of no use.
fn emptied(dir: PathBuf) -> Result<PathBuf, ServeError> {
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ServeError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// This worker's id, `<owner>.<host>-<pid>-<random>`: the owner is its NATS user (a server
/// may let each user write only its own heartbeats), else the host.
fn worker_id(dist: &FarmConfig, host: &str) -> String {
    let owner = dist
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(host);
    WorkerStatus::new_id(owner, host, std::process::id(), rand32())
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    /// Jobs running now. Not the semaphore's count: an idle puller holds a permit while it
    /// waits for the next job.
    running: AtomicU64,
}

/// What the worker says about itself every [`HEARTBEAT_EVERY`].
struct Heartbeat {
    ctx: Arc<Context>,
    host: String,
    /// `[worker] name`, else the host name: stable across restarts, unlike the id.
    name: String,
    cores: usize,
    slots: usize,
    counters: Arc<Counters>,
    /// The round trip of the last heartbeat write.
    rtt: Duration,
}

impl Heartbeat {
    fn status(&self, free_slots: usize) -> WorkerStatus {
        let toolchains = &self.ctx.toolchains;
        let shipped = self.ctx.shipped.as_ref();
        let held = shipped.map(ShippedCache::held).unwrap_or_default();
        WorkerStatus {
            id: self.ctx.worker_id.clone(),
            host: self.host.clone(),
            cores: self.cores as u32,
            slots: self.slots as u32,
            free_slots: free_slots as u32,
            toolchains: toolchains.iter().map(|t| t.identity).collect(),
            toolchain_names: toolchains.iter().map(|t| t.name.clone()).collect(),
            jobs_done: self.counters.done.load(Ordering::Relaxed),
            jobs_failed: self.counters.failed.load(Ordering::Relaxed),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            rtt_us: self.rtt.as_micros() as u64,
            name: self.name.clone(),
            ships_for: shipped.map(|c| c.host().to_owned()).into_iter().collect(),
            shipped: held.iter().map(|(pack, _)| *pack).collect(),
            shipped_names: held.into_iter().map(|(_, name)| name).collect(),
        }
    }

    /// Joins the farm with every slot free; a failed write here is fatal. The first write
    /// measures the round trip the second one announces.
    async fn announce(&mut self) -> Result<(), FarmError> {
        for _ in 0..2 {
            self.rtt = self.ctx.res.put_heartbeat(&self.status(self.slots)).await?;
        }
        Ok(())
    }

    /// Beats forever; a failed beat is logged, and the next one tries again.
    async fn beat(mut self) {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            let running = self.counters.running.load(Ordering::Relaxed) as usize;
            let status = self.status(self.slots.saturating_sub(running));
            match self.ctx.res.put_heartbeat(&status).await {
                Ok(took) => self.rtt = took,
                Err(e) => tracing::warn!("heartbeat failed: {e}"),
            }
        }
    }
}

/// What every puller shares.
#[derive(Clone)]
struct Pool {
    ctx: Arc<Context>,
    /// One permit per slot: a puller asks only for as many jobs as it holds permits.
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
    /// Notified on a clean stop, for a puller waiting to retry a failed fetch.
    stopping: Arc<tokio::sync::Notify>,
    /// The pullers of the shipped toolchains held unpacked, by pack (see [`follow_held`]).
    held: Arc<std::sync::Mutex<HashMap<Digest, JoinHandle<()>>>>,
}

/// One puller per toolchain, each on the queue of its jobs, and one on the queue of jobs
/// that ship their toolchain if this worker takes them.
async fn start_pullers(pool: &Pool) -> Result<Vec<JoinHandle<()>>, FarmError> {
    let mut pullers = Vec::new();
    let ctx = &pool.ctx;
    let alone = ctx.toolchains.len() == 1 && ctx.shipped.is_none();
    for tc in &ctx.toolchains {
        let queue = ctx
            .res
            .job_queue(&tc.host, Filing::Toolchain(tc.identity))
            .await?;
        pullers.push(tokio::spawn(pull(queue, pool.clone(), alone)));
    }
    if let Some(cache) = &ctx.shipped {
        let queue = ctx.res.job_queue(cache.host(), Filing::Shipped).await?;
        pullers.push(tokio::spawn(pull(queue, pool.clone(), false)));
    }
    Ok(pullers)
}

/// Keeps one puller on the queue of each shipped toolchain held unpacked, where clients that
/// see it in the heartbeat send their jobs (so they come here, not to a worker that would
/// fetch it again); stops the puller of one evicted. Never returns.
async fn follow_held(pool: Pool) {
    let Some(cache) = &pool.ctx.shipped else {
        return std::future::pending().await;
    };
    loop {
        let held: Vec<Digest> = cache.held().into_iter().map(|(pack, _)| pack).collect();
        let new: Vec<Digest> = {
            let mut running = pool.held.lock().unwrap_or_else(|e| e.into_inner());
            running.retain(|pack, puller| {
                let keep = held.contains(pack);
                if !keep {
                    puller.abort();
                }
                keep
            });
            held.into_iter()
                .filter(|p| !running.contains_key(p))
                .collect()
        };
        for pack in new {
            match pool
                .ctx
                .res
                .job_queue(cache.host(), Filing::Toolchain(pack))
                .await
            {
                Ok(queue) => {
                    let puller = tokio::spawn(pull(queue, pool.clone(), false));
                    pool.held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(pack, puller);
                }
                Err(e) => tracing::warn!(%pack, "cannot pull the shipped toolchain's jobs: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Pulls jobs while a slot is free and runs each in its own task.
///
/// A pull request waits on the server for seconds when its queue is empty, so it holds no
/// slot: with several toolchains (a rustc and C compilers), a puller idling on an empty
/// queue would otherwise keep the busy queue's jobs waiting. Each job takes a slot when it
/// arrives. The puller of the only toolchain asks for as many jobs as slots are free; with
/// several, each asks for one at a time, so at most one job per other toolchain can arrive
/// to find every slot taken (it waits here, kept alive, for the next free one).
async fn pull(queue: JobQueue, pool: Pool, alone: bool) {
    loop {
        // Wait until a slot is free, without taking it.
        match pool.slots.acquire().await {
            Ok(free) => drop(free),
            Err(_) => return,
        }
        let want = match alone {
            true => pool.slots.available_permits().max(1),
            false => 1,
        };
        let mut batch = match queue.fetch(want).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{e}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = pool.stopping.notified() => return,
                }
            }
        };
        while let Some(delivery) = batch.next().await {
            let Some(permit) = slot_for(&pool, &delivery).await else {
                return;
            };
            tokio::spawn(run_job(pool.clone(), delivery, permit));
        }
    }
}

/// A slot for a delivered job: at once if one is free, else the next one to free up, while
/// telling the queue the job is in hand (so it is not redelivered meanwhile).
async fn slot_for(pool: &Pool, delivery: &Delivery) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = pool.slots.clone().try_acquire_owned() {
        return Some(p);
    }
    let wait = pool.slots.clone().acquire_owned();
    tokio::pin!(wait);
    loop {
        tokio::select! {
            p = &mut wait => return p.ok(),
            _ = tokio::time::sleep(ACK_WAIT / 3) => {
                let _ = delivery.in_progress().await;
            }
        }
    }
}

/// Runs one job in the slot `permit` holds, and counts how it ended.
async fn run_job(pool: Pool, delivery: Delivery, permit: OwnedSemaphorePermit) {
    let counters = &pool.counters;
    counters.running.fetch_add(1, Ordering::Relaxed);
    let outcome = job::handle(pool.ctx, delivery).await;
    counters.running.fetch_sub(1, Ordering::Relaxed);
    match outcome {
        Outcome::Compiled | Outcome::CompileError => &counters.done,
        Outcome::Refused | Outcome::Expired => &counters.failed,
    }
    .fetch_add(1, Ordering::Relaxed);
    drop(permit);
}

/// Clean stop: pull nothing more, let running jobs finish (for up to the job time limit),
/// then leave the farm.
async fn stop(pool: &Pool, pullers: Vec<JoinHandle<()>>, slots: usize) {
    tracing::info!("stopping: finishing running jobs");
    pool.stopping.notify_waiters();
    for p in pullers {
        p.abort();
    }
    for (_, p) in pool.held.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        p.abort();
    }
    let _ = tokio::time::timeout(pool.ctx.timeout, pool.slots.acquire_many(slots as u32)).await;
    pool.ctx.res.remove_heartbeat(&pool.ctx.worker_id).await;
    pool.ctx.res.farm.flush_within(STOP_FLUSH).await;
    tracing::info!("stopped");
}

/// How long a stopping worker waits for its last messages (the jobs' monitor events) to
/// reach the server.
const STOP_FLUSH: Duration = Duration::from_secs(5);

/// Installs the SIGTERM/SIGINT handlers now (a signal that comes before is fatal); the
/// returned future ends when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    let mut int = signal(SignalKind::interrupt()).expect("signal handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// The uid and gid a root worker runs jobs as: `[worker] run_as`, else `nobody`; never
/// root (whose capabilities and files a job would have). A non-root worker runs jobs as
/// itself, in a user namespace, and cannot switch users: `run_as` is an error there.
fn run_as(configured: Option<&str>) -> Result<Option<(u32, u32)>, ServeError> {
    let no = |why: String| Err(ServeError::NoUnprivilegedUser(why));
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return match configured {
            Some(user) => no(format!(
                "[worker] run_as = {user:?} needs a root worker; this one runs as uid {euid} \
                 and runs jobs as itself: remove run_as"
            )),
            None => Ok(None),
        };
    }
    let user = configured.unwrap_or("nobody");
    let Ok(name) = std::ffi::CString::new(user) else {
        return no(format!("[worker] run_as = {user:?} is not a user name"));
    };
    // SAFETY: called once at start, before any other thread looks up users; the record is
    // copied out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        let fix = match configured {
            Some(_) => "create it, or set [worker] run_as (JETCC_WORKER_RUN_AS) to a user that exists",
            None => "create `nobody`, or set [worker] run_as (JETCC_WORKER_RUN_AS) to an unprivileged user",
        };
        return no(format!(
            "the worker runs as root and there is no user {user:?} to run jobs as: {fix}"
        ));
    }
    // SAFETY: `pw` is a valid record (checked non-null).
    let ids = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    if ids.0 == 0 || ids.1 == 0 {
        return no(format!(
            "[worker] run_as = {user:?} is root (uid {}, gid {}): name an unprivileged user",
            ids.0, ids.1
        ));
    }
    Ok(Some(ids))
}

/// Each job's cgroup limits, where the host lets this worker make cgroups; else the rlimits
/// alone bound it, per process.
fn job_cgroups(config: &Config) -> Option<Cgroups> {
    let limits = CgroupLimits {
        memory_bytes: config.worker.memory_limit,
        pids: config.worker.pids_limit,
    };
    match Cgroups::setup(limits) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "no per-job cgroups ({e}): memory_limit binds each process (RLIMIT_DATA), \
                 pids_limit is not enforced"
            );
            None
        }
    }
}

fn rand32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}
