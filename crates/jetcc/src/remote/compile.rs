//! One remote compile: list and upload its inputs, publish the job, follow its events on the
//! reply subject (stderr lines, the rmeta-ready notice, the result), and write its outputs
//! where rustc would have. An identical job already queued is followed instead of run twice.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jetcc_common::config::FarmConfig;
use jetcc_common::farm::Resources;
use jetcc_common::key::is_keyed_env;
use jetcc_common::protocol::job::{InputFile, JobEvent, JobRequest, JobState};
use jetcc_common::protocol::names::JobId;
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::Digest;

use super::{inputs, RemoteCompile, RemoteError};
use crate::compile::Compiled;
use crate::placement::overhead_prior;

/// Compiles `r` on the farm: see [`Session::compile`](super::Session::compile).
pub(super) async fn compile(
    res: &Resources,
    mut r: RemoteCompile<'_>,
) -> Result<(Compiled, Duration), RemoteError> {
    let start = Instant::now();
    let farm = &res.farm;
    let Some(worker) = res.serving_worker(r.toolchain).await? else {
        return Err(RemoteError::NoWorker);
    };
    // That read was one round trip of ours; the worker's is in its heartbeat.
    let prior = overhead_prior(Duration::from_micros(worker.rtt_us), start.elapsed());
    if !r.placement.farm_is_worth_it(prior) {
        return Err(RemoteError::Slow);
    }
    let (read, dirs, env_deps) = inputs::prepass(&r)?;
    let mut inputs = Vec::with_capacity(read.len());
    for path in read {
        let meta = std::fs::metadata(&path)
            .map_err(|e| RemoteError::Local(format!("cannot stat {}: {e}", path.display())))?;
        let digest = r
            .files
            .digest(&path.to_string_lossy())
            .ok_or_else(|| RemoteError::Local(format!("cannot read {}", path.display())))?;
        inputs.push(InputFile {
            path: path.to_string_lossy().into_owned(),
            digest,
            size: meta.len(),
            mode: meta.permissions().mode(),
        });
    }
    inputs::upload(res, &inputs).await?;
    let prepared = start.elapsed();

    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| is_keyed_env(k) || k == "OUT_DIR" || env_deps.contains(k))
        .collect();
    let job_id = JobId::from_bytes(random16());
    let reply_subject = farm
        .names
        .reply_subject(&client_id(), &job_id)
        .map_err(|e| RemoteError::Local(e.to_string()))?;
    let deadline = SystemTime::now() + Duration::from_millis(r.farm.start_timeout_ms);
    let job = JobRequest {
        version: PROTOCOL_VERSION,
        job_id: job_id.to_string(),
        reply_subject: reply_subject.clone(),
        crate_name: r.inv.crate_name.clone().unwrap_or_default(),
        deadline_unix_ms: deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        toolchain: *r.toolchain,
        args: r.args.to_vec(),
        env,
        cwd: r.cwd.to_string_lossy().into_owned(),
        inputs,
        dirs: dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect(),
        out_dir: r.out_dir.to_string_lossy().into_owned(),
        outputs: r.outputs.to_vec(),
    };
    // Identical jobs in flight run once: the queue drops this one if it holds the same key.
    let dedup = job.dedup_key();
    let mut sub = res.submit(&job, r.host, &dedup).await?;
    if sub.duplicate {
        drop(sub);
        return follow_identical(res, r, &dedup, start).await;
    }

    let start_wait = start_wait(r.farm);
    let job_timeout = Duration::from_secs(r.farm.job_timeout_secs);
    let mut started = false;
    let mut stderr_all = Vec::new();
    let mut diagnostics = Vec::new();
    let mut stderr = std::io::stderr();
    let queued = Instant::now();
    loop {
        let event = if started {
            sub.next(job_timeout)
                .await?
                .ok_or(RemoteError::Timeout(job_timeout))?
        } else {
            // Queued: a local slot that frees up first takes the job back (its worker then
            // finds nobody waiting and drops it unrun).
            loop {
                if let Some(e) = sub.next(LOCAL_CHECK_EVERY).await? {
                    break e;
                }
                if r.placement.local_free() {
                    return Err(RemoteError::LocalFirst);
                }
                if queued.elapsed() > start_wait {
                    return Err(RemoteError::NotStarted(start_wait));
                }
            }
        };
        match event {
            JobEvent::Started { worker } => {
                tracing::debug!(%worker, queued_ms = (start.elapsed() - prepared).as_millis() as u64, "job started");
                started = true;
            }
            // Diagnostics wait for the result: a failed remote compile is confirmed locally
            // (below), and its diagnostics must not be shown twice.
            JobEvent::Stderr(line) => diagnostics.extend_from_slice(&line),
            JobEvent::Artifact { name, digest, line } => {
                take_output(res, &mut r, &name, &digest).await?;
                let _ = stderr.write_all(&line).and_then(|_| stderr.flush());
                stderr_all.extend_from_slice(&line);
            }
            JobEvent::Done {
                exit_code,
                stdout,
                outputs,
                compile_ms,
            } => {
                if exit_code != 0 {
                    return Err(RemoteError::Failed {
                        exit_code,
                        first_error: first_error(&diagnostics),
                    });
                }
                for (name, digest) in &outputs {
                    take_output(res, &mut r, name, digest).await?;
                }
                let _ = stderr.write_all(&diagnostics).and_then(|_| stderr.flush());
                stderr_all.extend_from_slice(&diagnostics);
                let _ = std::io::stdout().write_all(&stdout);
                tracing::debug!(
                    exit_code,
                    prepare_ms = prepared.as_millis() as u64,
                    total_ms = start.elapsed().as_millis() as u64,
                    "remote compile done"
                );
                let compiled = Compiled {
                    exit_code,
                    stdout,
                    stderr: stderr_all,
                    duration: start.elapsed(),
                };
                return Ok((compiled, Duration::from_millis(compile_ms)));
            }
            JobEvent::Refused { reason } => return Err(RemoteError::Refused(reason)),
        }
    }
}

/// Writes one output a worker reported (fetched and verified) into the out-dir; a name this
/// compile does not write is refused.
async fn take_output(
    res: &Resources,
    r: &mut RemoteCompile<'_>,
    name: &str,
    digest: &Digest,
) -> Result<(), RemoteError> {
    if !r.outputs.iter().any(|o| o == name) {
        return Err(RemoteError::Refused(format!(
            "the worker sent an unexpected file {name:?}"
        )));
    }
    let dest = r.out_dir.join(name);
    inputs::fetch(res, digest, &dest).await?;
    r.files.remember_written(&dest, *digest);
    Ok(())
}

/// How long a job may wait in the queue before the client compiles locally.
fn start_wait(farm: &FarmConfig) -> Duration {
    Duration::from_millis(farm.start_timeout_ms) + Duration::from_millis(500)
}

/// How often a queued job's client checks for a free local slot.
const LOCAL_CHECK_EVERY: Duration = Duration::from_millis(20);

/// How often a client following an identical job reads its state.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Follows the identical job the queue already holds (ours was de-duplicated) through the
/// state its worker keeps, then writes its outputs and replays rustc as if it ran for us. Its
/// rmeta arrives with the rest, not early: followers are rare (two builds of one commit).
async fn follow_identical(
    res: &Resources,
    mut r: RemoteCompile<'_>,
    dedup: &Digest,
    start: Instant,
) -> Result<(Compiled, Duration), RemoteError> {
    tracing::debug!("an identical job is in the queue: following it");
    let (start_wait, job_timeout) = (
        start_wait(r.farm),
        Duration::from_secs(r.farm.job_timeout_secs),
    );
    // When the job was last seen queued (now) or running: a state that stays away this
    // long means it is not queued or running anymore.
    let mut seen = Instant::now();
    loop {
        match res.job_state(dedup).await? {
            Some(JobState::Running { .. }) => seen = Instant::now(),
            Some(JobState::Refused { reason }) => return Err(RemoteError::Refused(reason)),
            Some(JobState::Done {
                exit_code,
                stdout,
                stderr,
                outputs,
                compile_ms,
            }) => {
                if exit_code != 0 {
                    return Err(RemoteError::Failed {
                        exit_code,
                        first_error: first_error(&stderr),
                    });
                }
                for (name, digest) in &outputs {
                    take_output(res, &mut r, name, digest).await?;
                }
                let _ = std::io::stderr().write_all(&stderr);
                let _ = std::io::stdout().write_all(&stdout);
                tracing::debug!(
                    total_ms = start.elapsed().as_millis() as u64,
                    "remote compile done (followed an identical job)"
                );
                let compiled = Compiled {
                    exit_code,
                    stdout,
                    stderr,
                    duration: start.elapsed(),
                };
                return Ok((compiled, Duration::from_millis(compile_ms)));
            }
            None if seen.elapsed() > start_wait => return Err(RemoteError::NotStarted(start_wait)),
            None => {}
        }
        if start.elapsed() > job_timeout {
            return Err(RemoteError::Timeout(job_timeout));
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// The first error's message in rustc's JSON diagnostics (or the first line), for the log.
fn first_error(diagnostics: &[u8]) -> String {
    let text = String::from_utf8_lossy(diagnostics);
    text.lines()
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v.get("level")?.as_str()? == "error")
                .then(|| v.get("message")?.as_str().map(str::to_owned))?
        })
        .or_else(|| text.lines().next().map(str::to_owned))
        .unwrap_or_default()
}

/// This client's name in reply subjects: host and pid, as subject-safe tokens.
fn client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "{}-{}",
        if host.is_empty() { "client" } else { &host },
        std::process::id()
    )
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b
}
