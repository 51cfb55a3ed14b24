//! The worker's life: connect, create the farm's resources, pull jobs as slots free up,
//! heartbeat, and stop cleanly on SIGTERM.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jetcc_common::config::Config;
use jetcc_common::farm::{Farm, FarmError, Lifetime};
use jetcc_common::protocol::timing::HEARTBEAT_EVERY;
use jetcc_common::protocol::worker::WorkerStatus;
use tokio::sync::Semaphore;

use crate::blobs::BlobCache;
use crate::job::{self, Context, Outcome};
use crate::toolchains;

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
    #[error("{0}")]
    Setup(String),
}

pub async fn serve(config: Config, opts: Options) -> Result<(), ServeError> {
    let dist = config.farm.clone().ok_or(ServeError::NoFarm)?;
    let support = crate::sandbox::probe();
    let enforce = support.is_complete();
    if !enforce {
        if !opts.insecure_no_sandbox {
            return Err(ServeError::NoSandbox(support.describe()));
        }
        tracing::warn!(
            "INSECURE: jobs run without Landlock ({})",
            support.describe()
        );
    }
    let dir = config
        .worker
        .cache_dir
        .clone()
        .unwrap_or_else(|| config.cache_dir.join("worker"));
    let jobs_dir = dir.join("jobs");
    let _ = std::fs::remove_dir_all(&jobs_dir);
    std::fs::create_dir_all(&jobs_dir)
        .map_err(|e| ServeError::Setup(format!("cannot create {}: {e}", jobs_dir.display())))?;
    let toolchains = toolchains::discover(&config.worker.toolchains, &dir.join("toolchains"))
        .map_err(|e| ServeError::Setup(e.to_string()))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = opts.slots.or(config.worker.slots).unwrap_or(cores).max(1);
    let host = jetcc_common::farm::hostname();
    let owner = dist
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(&host);
    let id = WorkerStatus::new_id(owner, &host, std::process::id(), rand32());

    let farm = Farm::connect(&dist, &format!("jetcc-worker {id}"), Lifetime::Service).await?;
    let res = farm.ensure_resources().await?;
    let blobs = BlobCache::open(dir.join("blobs"), config.cache_size)
        .map_err(|e| ServeError::Setup(format!("cannot open the blob cache: {e}")))?;
    let self_exe = std::env::current_exe()
        .map_err(|e| ServeError::Setup(format!("cannot find my own binary: {e}")))?;
    let ctx = Arc::new(Context {
        res: res.clone(),
        blobs,
        toolchains: toolchains.clone(),
        jobs_dir,
        self_exe,
        enforce,
        run_as: run_as(),
        timeout: Duration::from_secs(config.worker.timeout_secs),
        limits: crate::sandbox::Limits {
            // RLIMIT_NPROC counts every thread of the uid jobs run as, across all slots.
            processes: Some(64 * slots as u64 + 64),
            ..Default::default()
        },
        worker_id: id.clone(),
    });
    let sem = Arc::new(Semaphore::new(slots));
    let counters = Arc::new(Counters::default());
    let status = |free: usize, rtt: Duration| WorkerStatus {
        id: id.clone(),
        host: host.clone(),
        cores: cores as u32,
        slots: slots as u32,
        free_slots: free as u32,
        toolchains: toolchains.iter().map(|t| t.identity).collect(),
        toolchain_names: toolchains.iter().map(|t| t.name.clone()).collect(),
        jobs_done: counters.done.load(Ordering::Relaxed),
        jobs_failed: counters.failed.load(Ordering::Relaxed),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        rtt_us: rtt.as_micros() as u64,
    };
    // From here on, a stop request is a clean stop.
    let stop_requested = shutdown_signal();
    // The first write measures the round trip the second one announces.
    let mut rtt = res.put_heartbeat(&status(slots, Duration::ZERO)).await?;
    rtt = res.put_heartbeat(&status(slots, rtt)).await?;
    tracing::info!(
        %id,
        slots,
        sandbox = enforce,
        toolchains = ?toolchains.iter().map(|t| &t.name).collect::<Vec<_>>(),
        "jetcc-worker serving {}",
        farm.url
    );

    let stopping = Arc::new(tokio::sync::Notify::new());
    let mut pullers = Vec::new();
    for tc in &toolchains {
        let consumer = res.workers_consumer(&tc.host, &tc.identity).await?;
        let (ctx, sem, counters, stopping) =
            (ctx.clone(), sem.clone(), counters.clone(), stopping.clone());
        pullers.push(tokio::spawn(async move {
            pull(consumer, ctx, sem, counters, stopping).await
        }));
    }
    let heartbeat = {
        let res = res.clone();
        let counters = counters.clone();
        let free_slots =
            move || slots.saturating_sub(counters.running.load(Ordering::Relaxed) as usize);
        async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                match res.put_heartbeat(&status(free_slots(), rtt)).await {
                    Ok(took) => rtt = took,
                    Err(e) => tracing::warn!("heartbeat failed: {e}"),
                }
            }
        }
    };
    tokio::select! {
        _ = heartbeat => {}
        _ = stop_requested => {}
    }
    // Clean stop: pull nothing more, let running jobs finish, then leave the farm.
    tracing::info!("stopping: finishing running jobs");
    stopping.notify_waiters();
    for p in pullers {
        p.abort();
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(config.worker.timeout_secs),
        sem.acquire_many(slots as u32),
    )
    .await;
    res.remove_heartbeat(&id).await;
    let _ = farm.client.flush().await;
    tracing::info!("stopped");
    Ok(())
}

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
    /// Jobs running now. Not the semaphore's count: an idle puller holds a permit while it
    /// waits for the next job.
    running: AtomicU64,
}

/// How long one pull request waits on the server for jobs.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);

/// Fetches as many jobs as there are free slots, runs each in its own task.
async fn pull(
    consumer: async_nats::jetstream::consumer::PullConsumer,
    ctx: Arc<Context>,
    sem: Arc<Semaphore>,
    counters: Arc<Counters>,
    stopping: Arc<tokio::sync::Notify>,
) {
    loop {
        // Wait for one free slot, then ask for as many jobs as are free.
        let first = match sem.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let free = sem.available_permits() + 1;
        let batch = consumer
            .fetch()
            .max_messages(free)
            .expires(FETCH_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("cannot fetch jobs: {e}");
                drop(first);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopping.notified() => return,
                }
            }
        };
        // A pull request dies with the server that held it; its end is then never
        // announced, so the client side gives up on it a little after it expires.
        let deadline = tokio::time::Instant::now() + FETCH_EXPIRES + Duration::from_secs(1);
        let mut permit = Some(first);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, batch.next()).await {
            let Ok(msg) = msg else { continue };
            let permit = match permit.take() {
                Some(p) => p,
                None => match sem.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let (ctx, counters) = (ctx.clone(), counters.clone());
            tokio::spawn(async move {
                counters.running.fetch_add(1, Ordering::Relaxed);
                let outcome = job::handle(ctx, msg).await;
                counters.running.fetch_sub(1, Ordering::Relaxed);
                match outcome {
                    Outcome::Compiled | Outcome::CompileError => &counters.done,
                    Outcome::Refused | Outcome::Expired => &counters.failed,
                }
                .fetch_add(1, Ordering::Relaxed);
                drop(permit);
            });
        }
    }
}

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

/// As root, jobs run as `nobody`: the process limit only binds unprivileged users.
fn run_as() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("nobody").expect("no NUL");
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        tracing::warn!("running as root and no `nobody` user: jobs run as root");
        return None;
    }
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn rand32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}
