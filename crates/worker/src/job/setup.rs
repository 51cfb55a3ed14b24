//! Everything a job needs before the jail: the toolchain it names (the worker's own or a
//! shipped one), the system files it expects checked against this worker's, its root laid
//! out with the inputs, and the launcher's plan.

use std::path::{Path, PathBuf};

use jetcc_common::files::FileDigests;
use jetcc_common::protocol::job::JobRequest;

use super::layout::{create_dirs, fetch_inputs, place_inputs, Layout};
use super::{io, Context, JobError};
use crate::jail::Plan;
use crate::shipped::Held;
use crate::toolchains::Toolchain;

/// Everything before the jail: the toolchain, the job root with the inputs in it, the
/// launcher's plan (its path).
pub(super) async fn set_up<'a>(
    ctx: &'a Context,
    job: &JobRequest,
    job_dir: &Path,
) -> Result<(Using<'a>, Layout, PathBuf), JobError> {
    let using = toolchain(ctx, job).await?;
    check_system_inputs(ctx, job)?;
    let layout = Layout::new(job_dir, job);
    // A deep client path is several creates on disk (milliseconds where creates are slow):
    // made on a blocking thread while the inputs are fetched, so neither waits for the other and
    // the runtime goes on meanwhile (the question to the client goes out, its answer comes
    // in). Awaited either way: nothing may create dirs once the job dir is removed.
    let dirs = layout.dirs(job);
    let created = tokio::task::spawn_blocking(move || create_dirs(&dirs));
    let fetched = fetch_inputs(ctx, job).await;
    created
        .await
        .map_err(|e| JobError::Io(format!("create the job's dirs: {e}")))??;
    let blobs = fetched?;
    let readable = place_inputs(job, &layout, blobs, ctx.run_as.is_some())?;
    let plan_file = write_plan(ctx, job, using.toolchain(), &layout, readable, job_dir)?;
    Ok((using, layout, plan_file))
}

/// The toolchain a job runs with.
pub(super) enum Using<'a> {
    /// The worker's own.
    Own(&'a Toolchain),
    /// One its client shipped, held unpacked while the job runs.
    Shipped(Held),
}

impl Using<'_> {
    pub(super) fn toolchain(&self) -> &Toolchain {
        match self {
            Using::Own(tc) => tc,
            Using::Shipped(held) => &held.toolchain,
        }
    }
}

/// The toolchain the job names: the worker's own if it has it (the queue only hands out
/// jobs for ours, or shipped ones), else the one the job ships, unpacked (fetched first if
/// not here yet).
async fn toolchain<'a>(ctx: &'a Context, job: &JobRequest) -> Result<Using<'a>, JobError> {
    if let Some(own) = ctx.toolchains.iter().find(|t| t.identity == job.toolchain) {
        return Ok(Using::Own(own));
    }
    match (&ctx.shipped, job.shipped) {
        (Some(cache), Some(pack)) => Ok(Using::Shipped(
            cache.get(&ctx.res.cas, pack, job.toolchain).await?,
        )),
        _ => Err(JobError::NoToolchain(job.toolchain)),
    }
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
