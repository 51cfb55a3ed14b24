//! Running one job: lay out its inputs at the client's paths, run rustc in the jail, stream
//! its stderr back, upload the outputs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::AckKind;
use jetcc_common::farm::{FarmError, Resources};
use jetcc_common::protocol::events::{self, JobDone, EVENTS_VERSION};
use jetcc_common::protocol::job::{JobEvent, JobRequest, JobState, MAX_EVENT_BYTES};
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
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |e| JobError::Io(format!("{what}: {e}"))
}

/// Handles one delivered job message: decode, run, reply, ack. Never panics on bad input.
pub async fn handle(ctx: Arc<Context>, msg: async_nats::jetstream::Message) -> Outcome {
    let job = match JobRequest::decode_unchecked(&msg.payload) {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!("dropping a malformed job: {e}");
            let _ = msg.ack_with(AckKind::Term).await;
            return Outcome::Refused;
        }
    };
    let prefix = format!("{}.reply.", ctx.res.farm.names.prefix());
    if !job.reply_subject.starts_with(&prefix) || job.reply_subject.contains(['*', '>', ' ']) {
        tracing::warn!("dropping a job with reply subject {:?}", job.reply_subject);
        let _ = msg.ack_with(AckKind::Term).await;
        return Outcome::Refused;
    }
    let reply = Replier {
        client: ctx.res.farm.client.clone(),
        subject: job.reply_subject.clone(),
    };
    if let Err(e) = job.validate() {
        tracing::warn!("refusing a hostile or malformed job: {e}");
        reply
            .send(&JobEvent::Refused {
                reason: e.to_string(),
            })
            .await;
        let _ = msg.ack_with(AckKind::Term).await;
        return Outcome::Refused;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    // A redelivered job was started by a worker that died: its client is still waiting.
    let redelivered = msg.info().is_ok_and(|i| i.delivered > 1);
    if job.deadline_unix_ms < now_ms && !redelivered {
        tracing::debug!(job = job.job_id, "past its deadline: dropped unrun");
        let _ = msg.ack_with(AckKind::Term).await;
        return Outcome::Expired;
    }
    if !reply.client_waits(&ctx.worker_id).await {
        tracing::debug!(
            job = job.job_id,
            "its client no longer waits: dropped unrun"
        );
        let _ = msg.ack_with(AckKind::Term).await;
        return Outcome::Expired;
    }
    tracing::debug!(
        job = job.job_id,
        crate_name = job.crate_name,
        redelivered,
        "job started"
    );
    // Clients whose identical jobs were de-duplicated follow this one through its state.
    let dedup = job.dedup_key();
    let running = JobState::Running {
        worker: ctx.worker_id.clone(),
    };
    // Off the job's path: on a distant link this write is a round trip.
    let (res, state) = (ctx.res.clone(), running.clone());
    tokio::spawn(async move { res.put_job_state(&dedup, &state).await });
    let job_dir = ctx.jobs_dir.join(&job.job_id);
    let started = Instant::now();
    let result = {
        // Keep the message alive while we work: a worker that dies stops these, and the job
        // is redelivered after the ack wait.
        let progress = async {
            loop {
                tokio::time::sleep(jetcc_common::protocol::timing::ACK_WAIT / 3).await;
                let _ = msg.ack_with(AckKind::Progress).await;
                let _ = ctx.res.put_job_state(&dedup, &running).await;
            }
        };
        tokio::select! {
            r = run(&ctx, &job, &job_dir, &reply) => r,
            _ = progress => unreachable!(),
        }
    };
    let _ = std::fs::remove_dir_all(&job_dir);
    let (outcome, state, error) = match result {
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
    };
    if let Err(e) = ctx.res.put_job_state(&dedup, &state).await {
        tracing::debug!(job = job.job_id, "{e}");
    }
    // A compile error is an answer too: acked, never retried.
    let _ = msg.ack().await;
    let ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        job = job.job_id,
        crate_name = job.crate_name,
        ms,
        ?outcome,
        "job done"
    );
    let done = JobDone {
        v: EVENTS_VERSION,
        worker: ctx.worker_id.clone(),
        crate_name: job.crate_name.clone(),
        ok: outcome == Outcome::Compiled,
        error,
        duration_ms: ms,
    };
    ctx.res.farm.publish_event(events::JOB, done.encode()).await;
    outcome
}

struct Replier {
    client: async_nats::Client,
    subject: String,
}

impl Replier {
    /// Sends `Started` as a request: the client answers while it waits for the job.
    async fn client_waits(&self, worker: &str) -> bool {
        let started = JobEvent::Started {
            worker: worker.to_owned(),
        };
        let request = self
            .client
            .request(self.subject.clone(), started.encode().into());
        matches!(
            tokio::time::timeout(Duration::from_secs(2), request).await,
            Ok(Ok(_))
        )
    }

    async fn send(&self, event: &JobEvent) {
        if let Err(e) = self
            .client
            .publish(self.subject.clone(), event.encode().into())
            .await
        {
            tracing::debug!("cannot reply: {e}");
        }
    }
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
    reply: &Replier,
) -> Result<Finished, JobError> {
    let tc = ctx
        .toolchains
        .iter()
        .find(|t| t.identity == job.toolchain)
        .ok_or(JobError::NoToolchain(job.toolchain))?;
    let root = job_dir.join("root");
    let out_dir = PathBuf::from(&job.out_dir);
    let out_in_root = jail::inside(&root, &out_dir);
    std::fs::create_dir_all(&out_in_root).map_err(io("create the out-dir"))?;
    std::fs::create_dir_all(jail::inside(&root, Path::new(&job.cwd)))
        .map_err(io("create the cwd"))?;
    for dir in &job.dirs {
        std::fs::create_dir_all(jail::inside(&root, Path::new(dir)))
            .map_err(io("create a directory on an input's path"))?;
    }
    let mut readable = Vec::new();
    // Fetch the blobs this worker lacks concurrently: on a distant link each costs a round
    // trip.
    let mut blobs: Vec<PathBuf> = Vec::with_capacity(job.inputs.len());
    for chunk in job.inputs.chunks(16) {
        let fetches = chunk
            .iter()
            .map(|input| ctx.blobs.fetch(&ctx.res.cas, &input.digest));
        blobs.extend(futures_util::future::try_join_all(fetches).await?);
    }
    for (input, blob) in job.inputs.iter().zip(blobs) {
        let path = Path::new(&input.path);
        let dest = jail::inside(&root, path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io("lay out inputs"))?;
        }
        // Inputs in a writable dir are copied, so rustc can never write through to the cache.
        if path.starts_with(&out_dir) || std::fs::hard_link(&blob, &dest).is_err() {
            std::fs::copy(&blob, &dest).map_err(io("lay out inputs"))?;
        }
        if let Some(parent) = path.parent() {
            if !readable.iter().any(|r: &PathBuf| parent.starts_with(r)) {
                readable.push(parent.to_owned());
            }
        }
    }
    readable.push(PathBuf::from(&job.cwd));
    let plan = Plan {
        root: root.clone(),
        sysroot: tc.sysroot.clone(),
        rustc: tc.rustc.clone(),
        args: job.args.clone(),
        env: job.env.clone(),
        cwd: PathBuf::from(&job.cwd),
        writable: vec![out_dir.clone()],
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
    let mut child = tokio::process::Command::new(&ctx.self_exe)
        .arg("__jail")
        .arg(&plan_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(io("start the jail launcher"))?;
    let pid = child.id().unwrap_or(0);
    let ran_from = Instant::now();
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let mut sent = Vec::new();
    let mut all_stderr = Vec::new();
    let mut launcher_error = Vec::new();
    let streamed = async {
        let mut lines = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !line.starts_with(jail::LAUNCH_ERROR_PREFIX.as_bytes()) {
                all_stderr.extend_from_slice(&line);
            }
            match artifact_name(&line, &out_dir).filter(|n| job.outputs.contains(n)) {
                Some(name) => {
                    let digest = upload(ctx, &root, &out_in_root, &name).await?;
                    sent.push((name.clone(), digest));
                    reply
                        .send(&JobEvent::Artifact {
                            name,
                            digest,
                            line: line.clone(),
                        })
                        .await;
                }
                None if line.starts_with(jail::LAUNCH_ERROR_PREFIX.as_bytes()) => {
                    launcher_error.extend_from_slice(&line);
                }
                None => reply.send(&JobEvent::Stderr(line.clone())).await,
            }
        }
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out).await;
        let status = child.wait().await.map_err(io("wait for rustc"))?;
        Ok::<_, JobError>((status, out))
    };
    let (status, stdout) = match tokio::time::timeout(ctx.timeout, streamed).await {
        Ok(r) => r?,
        Err(_) => {
            crate::sandbox::kill_group(pid);
            return Err(JobError::Timeout(ctx.timeout));
        }
    };
    let ran = ran_from.elapsed();
    // Kill anything rustc's children left behind.
    crate::sandbox::kill_group(pid);
    let code = status.code().unwrap_or(-1);
    if code == jail::LAUNCH_FAILED {
        return Err(JobError::Io(format!(
            "the sandbox could not start rustc: {}",
            String::from_utf8_lossy(&launcher_error).trim()
        )));
    }
    let mut outputs = Vec::new();
    if code == 0 {
        for name in job
            .outputs
            .iter()
            .filter(|n| !sent.iter().any(|(s, _)| s == *n))
        {
            let digest = upload(ctx, &root, &out_in_root, name).await?;
            outputs.push((name.clone(), digest));
        }
    }
    let compile_ms = ran.as_millis() as u64;
    reply
        .send(&JobEvent::Done {
            exit_code: code,
            stdout: stdout.clone(),
            outputs: outputs.clone(),
            compile_ms,
        })
        .await;
    sent.extend(outputs);
    Ok(Finished {
        exit_code: code,
        stdout,
        stderr: all_stderr,
        outputs: sent,
        compile_ms,
    })
}

/// Reads an output, refuses it if it names the job root, and puts it in the CAS.
async fn upload(
    ctx: &Context,
    root: &Path,
    out_in_root: &Path,
    name: &str,
) -> Result<Digest, JobError> {
    let path = out_in_root.join(name);
    let bytes = tokio::task::spawn_blocking(move || read_output(&path))
        .await
        .map_err(|e| JobError::Io(e.to_string()))?
        .map_err(|e| JobError::Io(format!("cannot take output {name}: {e}")))?;
    let root_bytes = root.as_os_str().as_encoded_bytes();
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
