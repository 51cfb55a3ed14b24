//! A job's compiler in the jail: started on its plan, its stderr streamed to the client line
//! by line (each output it announces taken as it goes), its stdout kept, stopped at the time,
//! disk and output limits.

use std::path::Path;
use std::time::{Duration, Instant};

use jetcc_common::farm::ReplyTo;
use jetcc_common::protocol::job::{JobEvent, JobRequest, INLINE_BYTES};
use jetcc_common::Digest;
use tokio::io::{AsyncReadExt, BufReader};

use super::layout::Layout;
use super::outputs::{announce, artifact_name, Deferred};
use super::{Context, JobError};
use crate::jail;
use crate::limits::{self, human, Lines, OUTPUT_LIMIT};

/// What the jailed rustc did.
pub(super) struct Ran {
    pub(super) exit_code: i32,
    pub(super) stdout: Vec<u8>,
    /// rustc's stderr, without the launcher's own lines.
    pub(super) stderr: Vec<u8>,
    /// The launcher's own error lines (it says there why it could not start rustc).
    pub(super) launcher_error: Vec<u8>,
    /// Outputs announced while rustc ran (its artifact notices).
    pub(super) sent: Vec<(String, Digest)>,
    /// Outputs sent inline, not in the CAS yet.
    pub(super) deferred: Deferred,
    pub(super) took: Duration,
}

/// Starts the jail launcher on `plan_file` and follows it to the end, or kills it at the
/// time limit.
pub(super) async fn run_jailed(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    reply: &ReplyTo,
    launcher: jail::Prepared,
    plan_file: &Path,
) -> Result<Ran, JobError> {
    let ran_from = Instant::now();
    // Dropped before it exits (a limit passed), it kills the job.
    let mut launched = launcher
        .launch(plan_file)
        .map_err(|e| JobError::Io(format!("cannot start the jail launcher: {e}")))?;
    let disk = limits::disk_exceeded(layout.writable_in_root(), ctx.disk_limit);
    let ran = tokio::select! {
        r = tokio::time::timeout(ctx.timeout, follow(ctx, job, layout, reply, &mut launched)) => {
            r.unwrap_or(Err(JobError::Timeout(ctx.timeout)))
        }
        used = disk => {
            tracing::warn!(job = job.job_id, used, "the job's writable dirs passed the disk limit");
            Err(JobError::DiskLimit(ctx.disk_limit))
        }
    };
    drop(launched);
    let mut ran = ran?;
    ran.took = ran_from.elapsed();
    Ok(ran)
}

/// Streams the launcher's stderr to the client line by line (uploading each output rustc
/// announces as it goes) while taking its stdout, then its exit code. Past
/// [`OUTPUT_LIMIT`] of both together the job is stopped: the worker's memory stays bounded
/// whatever the job writes.
async fn follow(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    reply: &ReplyTo,
    launched: &mut jail::Launched,
) -> Result<Ran, JobError> {
    let mut stdout = launched.stdout.take().expect("a new launch has its stdout");
    let stderr = launched.stderr.take().expect("a new launch has its stderr");
    let mut ran = Ran {
        exit_code: -1,
        stdout: Vec::new(),
        stderr: Vec::new(),
        launcher_error: Vec::new(),
        sent: Vec::new(),
        deferred: Deferred::default(),
        took: Duration::ZERO,
    };
    let mut lines = Lines::new(BufReader::new(stderr));
    let mut chunk = vec![0u8; 64 << 10];
    let (mut written, mut err_open, mut out_open) = (0usize, true, true);
    while err_open || out_open {
        tokio::select! {
            line = lines.next(), if err_open => match line {
                Ok(Some((line, len))) => {
                    written += len;
                    if written > OUTPUT_LIMIT {
                        break;
                    }
                    take_line(ctx, job, layout, reply, &mut ran, line).await?;
                }
                Ok(None) | Err(_) => err_open = false,
            },
            n = stdout.read(&mut chunk), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    written += n;
                    if written > OUTPUT_LIMIT {
                        break;
                    }
                    ran.stdout.extend_from_slice(&chunk[..n]);
                }
            },
        }
    }
    if written > OUTPUT_LIMIT {
        let note = format!(
            "jetcc-worker: rustc's output was cut at {}: the job was stopped\n",
            human(OUTPUT_LIMIT as u64)
        );
        reply.send(&JobEvent::Stderr(note.into_bytes())).await;
        return Err(JobError::OutputTooLarge);
    }
    ran.exit_code = launched
        .wait()
        .await
        .map_err(|e| JobError::Io(format!("wait for rustc: {e}")))?;
    Ok(ran)
}

/// One stderr line: the launcher's own, an artifact notice (its output is announced: inline
/// when small, else put in the CAS first), or a line for the client.
async fn take_line(
    ctx: &Context,
    job: &JobRequest,
    layout: &Layout,
    reply: &ReplyTo,
    ran: &mut Ran,
    line: Vec<u8>,
) -> Result<(), JobError> {
    let from_launcher = line.starts_with(jail::LAUNCH_ERROR_PREFIX.as_bytes());
    if !from_launcher {
        ran.stderr.extend_from_slice(&line);
    }
    match artifact_name(&line, &layout.out_dir).filter(|n| job.outputs.contains(n)) {
        Some(name) => {
            let (digest, inline) =
                announce(ctx, layout, &name, INLINE_BYTES, &mut ran.deferred).await?;
            ran.sent.push((name.clone(), digest));
            let artifact = JobEvent::Artifact {
                name,
                digest,
                line,
                inline,
            };
            reply.send(&artifact).await;
        }
        None if from_launcher => ran.launcher_error.extend_from_slice(&line),
        None => reply.send(&JobEvent::Stderr(line)).await,
    }
    Ok(())
}
