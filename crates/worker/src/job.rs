//! Running one job: check the system files it expects, lay out its inputs at the client's
//! paths, run the compiler (rustc or a C compiler) in the jail, stream its stderr back,
//! upload the outputs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jetcc_common::farm::{Delivery, FarmError, ReplyTo, Resources};
use jetcc_common::files::FileDigests;
use jetcc_common::protocol::events::{self, JobDone, EVENTS_VERSION};
use jetcc_common::protocol::job::{JobEvent, JobRequest, JobState, MAX_EVENT_BYTES};
use jetcc_common::protocol::timing::ACK_WAIT;
use jetcc_common::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::blobs::BlobCache;
use crate::jail::{self, Plan};
use crate::toolchains::Toolchain;

/// What every job on this worker shares.
pub struct Context {
    pub res: Resources,
    pub blobs: BlobCache,
    pub toolchains: Vec<Toolchain>,
    pub jobs_dir: PathBuf,
    pub self_exe: PathBuf,
    pub enforce: bool,
    pub run_as: Option<(u32, u32)>,
    pub timeout: Duration,
    pub limits: crate::sandbox::Limits,
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
enum JobError {
    #[error("{0}")]
    Farm(#[from] FarmError),
    #[error("{0}")]
    Io(String),
    #[error("output {0} holds the worker's job root path: not hermetic")]
    NotHermetic(String),
    #[error("rustc ran past the {0:?} limit and was killed")]
    Timeout(Duration),
    #[error("no toolchain {0} here")]
    NoToolchain(Digest),
    #[error("this worker's {0} differs from the client's (another system, another object)")]
    SystemFileDiffers(String),
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

/// Checks a delivered job before any work: it decodes, names a reply subject, is valid, and
/// someone still waits for it. `Err` is how a job dropped unrun counts; the caller
/// terminates it.
async fn admit(ctx: &Context, delivery: &Delivery) -> Result<Admitted, Outcome> {
    let job = JobRequest::decode_unchecked(delivery.payload()).map_err(|e| {
        tracing::warn!("dropping a malformed job: {e}");
        Outcome::Refused
    })?;
    // Without a reply subject of ours there is nobody to tell why the job is dropped.
    let reply = ctx.res.farm.reply_to(&job.reply_subject).map_err(|_| {
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
    if !still_wanted(ctx, &job, &reply, redelivered).await {
        return Err(Outcome::Expired);
    }
    Ok(Admitted {
        job,
        reply,
        redelivered,
    })
}

/// Whether the job's client still waits for it: not past its deadline, and answering.
async fn still_wanted(ctx: &Context, job: &JobRequest, reply: &ReplyTo, redelivered: bool) -> bool {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    // A redelivered job was started by a worker that died: its client is still waiting.
    if job.deadline_unix_ms < now_ms && !redelivered {
        tracing::debug!(job = job.job_id, "past its deadline: dropped unrun");
        return false;
    }
    if !reply.client_waits(&ctx.worker_id).await {
        tracing::debug!(
            job = job.job_id,
            "its client no longer waits: dropped unrun"
        );
        return false;
    }
    true
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
    let job_dir = ctx.jobs_dir.join(&job.job_id);
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

/// Where one job's files are on this worker.
struct Layout {
    /// The job root: `/` in the jail.
    root: PathBuf,
    /// The client's out-dir, the one dir rustc writes (a path in the jail).
    out_dir: PathBuf,
    /// The out-dir on the worker's disk.
    out_in_root: PathBuf,
}

impl Layout {
    fn new(job_dir: &Path, job: &JobRequest) -> Layout {
        let root = job_dir.join("root");
        let out_dir = PathBuf::from(&job.out_dir);
        let out_in_root = jail::inside(&root, &out_dir);
        Layout {
            root,
            out_dir,
            out_in_root,
        }
    }
}

/// What the jailed rustc did.
struct Ran {
    exit_code: i32,
    stdout: Vec<u8>,
    /// rustc's stderr, without the launcher's own lines.
    stderr: Vec<u8>,
    /// The launcher's own error lines (it says there why it could not start rustc).
    launcher_error: Vec<u8>,
    /// Outputs uploaded and announced while rustc ran (its artifact notices).
    sent: Vec<(String, Digest)>,
    took: Duration,
}

/// Runs the job; returns once its outputs are uploaded and "done" is sent.
async fn run(
    ctx: &Context,
    job: &JobRequest,
    job_dir: &Path,
    reply: &ReplyTo,
) -> Result<Finished, JobError> {
    let tc = toolchain(ctx, job)?;
    check_system_inputs(ctx, job)?;
    let layout = Layout::new(job_dir, job);
    create_dirs(job, &layout)?;
    let blobs = fetch_inputs(ctx, job).await?;
    let readable = place_inputs(job, &layout, blobs)?;
    let plan_file = write_plan(ctx, job, tc, &layout, readable, job_dir)?;
    let ran = run_jailed(ctx, job, &layout, reply, &plan_file).await?;
    if ran.exit_code == jail::LAUNCH_FAILED {
        return Err(JobError::Io(format!(
            "the sandbox could not start rustc: {}",
            String::from_utf8_lossy(&ran.launcher_error).trim()
        )));
    }
    let outputs = match ran.exit_code {
        0 => upload_rest(ctx, job, &layout, &ran.sent).await?,
        _ => Vec::new(),
    };
    let compile_ms = ran.took.as_millis() as u64;
    reply
        .send(&JobEvent::Done {
            exit_code: ran.exit_code,
            stdout: ran.stdout.clone(),
            outputs: outputs.clone(),
            compile_ms,
        })
        .await;
    let mut all_outputs = ran.sent;
    all_outputs.extend(outputs);
    Ok(Finished {
        exit_code: ran.exit_code,
        stdout: ran.stdout,
        stderr: ran.stderr,
        outputs: all_outputs,
        compile_ms,
    })
}

/// The toolchain the job names; the queue only hands out jobs for ours, so this is a check.
fn toolchain<'a>(ctx: &'a Context, job: &JobRequest) -> Result<&'a Toolchain, JobError> {
    ctx.toolchains
        .iter()
        .find(|t| t.identity == job.toolchain)
        .ok_or(JobError::NoToolchain(job.toolchain))
}

/// Whether this worker's own system files are the ones the client's compile reads (a C
/// compile's system headers): they are bound into the jail, not shipped. Digests are
/// memoized by stat, so a warm check is a `stat` per file.
fn check_system_inputs(ctx: &Context, job: &JobRequest) -> Result<(), JobError> {
    if job.system_inputs.is_empty() {
        return Ok(());
    }
    let mut files = FileDigests::new(Path::new("/"), Some(ctx.stat_memo_dir.clone()));
    match job
        .system_inputs
        .iter()
        .find(|i| files.digest(&i.path) != Some(i.digest))
    {
        Some(differs) => Err(JobError::SystemFileDiffers(differs.path.clone())),
        None => Ok(()),
    }
}

/// The job root's dirs: the out-dir, the cwd and every dir the job lists.
fn create_dirs(job: &JobRequest, layout: &Layout) -> Result<(), JobError> {
    std::fs::create_dir_all(&layout.out_in_root).map_err(io("create the out-dir"))?;
    std::fs::create_dir_all(jail::inside(&layout.root, Path::new(&job.cwd)))
        .map_err(io("create the cwd"))?;
    for dir in &job.dirs {
        std::fs::create_dir_all(jail::inside(&layout.root, Path::new(dir)))
            .map_err(io("create a directory on an input's path"))?;
    }
    Ok(())
}

/// The local path of each input's blob, in the job's order.
async fn fetch_inputs(ctx: &Context, job: &JobRequest) -> Result<Vec<PathBuf>, JobError> {
    // Fetch the blobs this worker lacks concurrently: on a distant link each costs a round
    // trip.
    let mut blobs: Vec<PathBuf> = Vec::with_capacity(job.inputs.len());
    for chunk in job.inputs.chunks(16) {
        let fetches = chunk
            .iter()
            .map(|input| ctx.blobs.fetch(&ctx.res.cas, &input.digest));
        blobs.extend(futures_util::future::try_join_all(fetches).await?);
    }
    Ok(blobs)
}

/// Puts each input at its client path in the job root; returns the dirs rustc may read.
fn place_inputs(
    job: &JobRequest,
    layout: &Layout,
    blobs: Vec<PathBuf>,
) -> Result<Vec<PathBuf>, JobError> {
    let mut readable = Vec::new();
    for (input, blob) in job.inputs.iter().zip(blobs) {
        let path = Path::new(&input.path);
        let dest = jail::inside(&layout.root, path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("lay out inputs"))?;
        }
        // Inputs in a writable dir are copied, so rustc can never write through to the cache.
        if path.starts_with(&layout.out_dir) || std::fs::hard_link(&blob, &dest).is_err() {
            std::fs::copy(&blob, &dest).map_err(io("lay out inputs"))?;
        }
        if let Some(parent) = path.parent() {
            if !readable.iter().any(|r: &PathBuf| parent.starts_with(r)) {
                readable.push(parent.to_owned());
            }
        }
    }
    readable.push(PathBuf::from(&job.cwd));
    Ok(readable)
}

/// Writes the launcher's [`Plan`] into the job dir; returns its path.
fn write_plan(
    ctx: &Context,
    job: &JobRequest,
    tc: &Toolchain,
    layout: &Layout,
    readable: Vec<PathBuf>,
    job_dir: &Path,
) -> Result<PathBuf, JobError> {
    let plan = Plan {
        root: layout.root.clone(),
        sysroot: tc.sysroot.clone(),
        program: tc.program.clone(),
        args: job.args.clone(),
        env: job.env.clone(),
        cwd: PathBuf::from(&job.cwd),
        writable: vec![layout.out_dir.clone()],
        readable,
        run_as: ctx.run_as,
        memory_bytes: ctx.limits.memory_bytes,
        processes: ctx.limits.processes,
        file_size_bytes: ctx.limits.file_size_bytes,
        enforce: ctx.enforce,
    };
    let plan_file = job_dir.join("plan.json");
    std::fs::write(
        &plan_file,
        serde_json::to_vec(&plan).expect("plan serializes"),
    )
    .map_err(io("write the plan"))?;
    Ok(plan_file)
}

/// Starts the jail launcher on `plan_file` and follows it to the end, or kills it at the
/// time limit.
async fn run_jailed(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    reply: &ReplyTo,
    plan_file: &Path,
) -> Result<Ran, JobError> {
    let mut child = tokio::process::Command::new(&ctx.self_exe)
        .arg("__jail")
        .arg(plan_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("start the jail launcher"))?;
    let pid = child.id().unwrap_or(0);
    let ran_from = Instant::now();
    let followed = tokio::time::timeout(ctx.timeout, follow(ctx, job, layout, reply, &mut child));
    let mut ran = match followed.await {
        Ok(r) => r?,
        Err(_) => {
            crate::sandbox::kill_group(pid);
            return Err(JobError::Timeout(ctx.timeout));
        }
    };
    ran.took = ran_from.elapsed();
    // Kill anything rustc's children left behind.
    crate::sandbox::kill_group(pid);
    Ok(ran)
}

/// Streams the launcher's stderr to the client line by line (uploading each output rustc
/// announces as it goes), then takes its stdout and exit code.
async fn follow(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    reply: &ReplyTo,
    child: &mut tokio::process::Child,
) -> Result<Ran, JobError> {
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let mut ran = Ran {
        exit_code: -1,
        stdout: Vec::new(),
        stderr: Vec::new(),
        launcher_error: Vec::new(),
        sent: Vec::new(),
        took: Duration::ZERO,
    };
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let from_launcher = line.starts_with(jail::LAUNCH_ERROR_PREFIX.as_bytes());
        if !from_launcher {
            ran.stderr.extend_from_slice(&line);
        }
        match artifact_name(&line, &layout.out_dir).filter(|n| job.outputs.contains(n)) {
            Some(name) => {
                let digest = upload(ctx, layout, &name).await?;
                ran.sent.push((name.clone(), digest));
                reply
                    .send(&JobEvent::Artifact {
                        name,
                        digest,
                        line: line.clone(),
                    })
                    .await;
            }
            None if from_launcher => ran.launcher_error.extend_from_slice(&line),
            None => reply.send(&JobEvent::Stderr(line.clone())).await,
        }
    }
    let _ = stdout.read_to_end(&mut ran.stdout).await;
    let status = child.wait().await.map_err(io("wait for rustc"))?;
    ran.exit_code = status.code().unwrap_or(-1);
    Ok(ran)
}

/// Uploads the outputs rustc did not announce while it ran.
async fn upload_rest(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    sent: &[(String, Digest)],
) -> Result<Vec<(String, Digest)>, JobError> {
    let mut outputs = Vec::new();
    for name in job
        .outputs
        .iter()
        .filter(|n| !sent.iter().any(|(s, _)| s == *n))
    {
        let digest = upload(ctx, layout, name).await?;
        outputs.push((name.clone(), digest));
    }
    Ok(outputs)
}

/// Reads an output, refuses it if it names the job root, and puts it in the CAS.
async fn upload(ctx: &Context, layout: &Layout, name: &str) -> Result<Digest, JobError> {
    let path = layout.out_in_root.join(name);
    let bytes = tokio::task::spawn_blocking(move || read_output(&path))
        .await
        .map_err(|e| JobError::Io(e.to_string()))?
        .map_err(|e| JobError::Io(format!("cannot take output {name}: {e}")))?;
    let root_bytes = layout.root.as_os_str().as_encoded_bytes();
    if bytes.windows(root_bytes.len()).any(|w| w == root_bytes) {
        return Err(JobError::NotHermetic(name.to_owned()));
    }
    let digest = Digest::of_bytes(&bytes);
    ctx.res.cas.put(&digest, &bytes).await?;
    Ok(digest)
}

/// Reads an output the job wrote, as the worker (outside the jail): never through a symlink
/// (the job could point one at any file on this machine), and only a regular file (a FIFO
/// would block). The out-dir's parents belong to the worker, so only the last component can
/// be the job's.
fn read_output(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The file name of an artifact notice (`{"$message_type":"artifact","artifact":PATH,…}`) for
/// a file in the out-dir; `None` for any other line.
fn artifact_name(line: &[u8], out_dir: &Path) -> Option<String> {
    if !line.starts_with(br#"{"$message_type":"artifact""#) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let path = Path::new(v.get("artifact")?.as_str()?);
    let name = path.file_name()?.to_str()?;
    (path.parent()? == out_dir).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_lines() {
        let out = Path::new("/p/target/debug/deps");
        let line = br#"{"$message_type":"artifact","artifact":"/p/target/debug/deps/liba-1.rmeta","emit":"metadata"}"#;
        assert_eq!(artifact_name(line, out).as_deref(), Some("liba-1.rmeta"));
        let elsewhere =
            br#"{"$message_type":"artifact","artifact":"/etc/passwd","emit":"metadata"}"#;
        assert_eq!(artifact_name(elsewhere, out), None);
        assert_eq!(artifact_name(b"warning: x", out), None);
    }
}
