//! The client half of the farm: send one compile to a worker, stream its diagnostics to cargo
//! as they come, and write its outputs where rustc would have.
//!
//! Any failure before the job's result arrives is an [`Skip`]: the caller compiles locally, so
//! the farm can cost time but never a build. A compile *error* on the farm is an answer, not a
//! failure: it is returned as rustc's own exit code and diagnostics.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jetcc_common::args::{RustcInvocation, SearchKind};
use jetcc_common::config::FarmConfig;
use jetcc_common::depinfo::DepInfo;
use jetcc_common::farm::{Farm, FarmError, FarmErrorKind, Lifetime, Resources};
use jetcc_common::files::FileDigests;
use jetcc_common::key::is_keyed_env;
use jetcc_common::manifest::{Manifest, ManifestEntry};
use jetcc_common::protocol::events::{self, UnitEvent};
use jetcc_common::protocol::job::{InputFile, JobEvent, JobRequest, JobState};
use jetcc_common::protocol::names::JobId;
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::result::CacheEntry;
use jetcc_common::{fsutil, Digest};

use crate::compile::Compiled;
use crate::placement::{overhead_prior, Placement};

/// Why a compile did not go to the farm (it then runs locally). `kind` names it in stats.
#[derive(Debug, thiserror::Error)]
pub enum Skip {
    #[error("{0}")]
    Farm(#[from] FarmError),
    #[error("no live worker has this toolchain")]
    NoWorker,
    /// Sending costs more than waiting for a local slot (see [`crate::placement`]).
    #[error("the farm is slower than a local slot right now")]
    Slow,
    /// A local slot freed up before any worker started the job.
    #[error("a local slot was free before a worker started the job")]
    LocalFirst,
    #[error("the dep-info pre-pass failed: {0}")]
    PrePass(String),
    #[error("no worker took the job within {0:?}")]
    NotStarted(Duration),
    #[error("the worker refused the job: {0}")]
    Refused(String),
    #[error("the job did not finish within {0:?}")]
    Timeout(Duration),
    /// rustc failed on the farm. A sandbox can fail a compile that passes locally (a
    /// proc-macro reading outside its inputs, or connecting to a database), so the failure is
    /// confirmed by compiling locally, which shows the real diagnostics.
    #[error("rustc failed on the farm (exit {exit_code}: {first_error}); confirming locally")]
    Failed { exit_code: i32, first_error: String },
    #[error("{0}")]
    Local(String),
}

impl Skip {
    /// Whether this says the farm is unhealthy (counts towards skipping it for a while), as
    /// opposed to this one unit not being fit for it.
    pub fn is_farm_failure(&self) -> bool {
        !matches!(
            self,
            Skip::PrePass(_) | Skip::Local(_) | Skip::Failed { .. } | Skip::Slow | Skip::LocalFirst
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Skip::Farm(e) => e.kind.name(),
            Skip::NoWorker => "farm-no-worker",
            Skip::Slow => "farm-slow",
            Skip::LocalFirst => "farm-local-first",
            Skip::PrePass(_) => "farm-prepass",
            Skip::NotStarted(_) => "farm-not-started",
            Skip::Refused(_) => "farm-refused",
            Skip::Timeout(_) => "farm-timeout",
            Skip::Failed { .. } => "farm-compile-failed",
            Skip::Local(_) => "farm-local-io",
        }
    }
}

/// One invocation as the farm needs it.
pub struct Remote<'a> {
    pub dist: &'a FarmConfig,
    pub rustc: &'a Path,
    pub inv: &'a RustcInvocation,
    /// rustc's arguments as a local compile would run them.
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub out_dir: &'a Path,
    /// Every file rustc writes into `out_dir` (dep-info included).
    pub outputs: &'a [String],
    pub toolchain: &'a Digest,
    pub host: &'a str,
    pub files: &'a mut FileDigests,
    /// Whether sending is worth it, and whether a local slot frees up first.
    pub placement: &'a Placement,
}

/// A connection to the farm for one wrapper process, opened on its first miss.
pub struct Session {
    rt: tokio::runtime::Runtime,
    res: Resources,
}

impl Session {
    pub fn open(dist: &FarmConfig) -> Result<Session, Skip> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Skip::Local(format!("cannot start an async runtime: {e}")))?;
        let res = rt.block_on(async {
            let farm = Farm::connect(dist, "jetcc", Lifetime::Wrapper).await?;
            match farm.open_resources().await {
                // A server used as a shared cache before any worker started: set it up (as a
                // worker would, idempotently); where this client may not, it stays an error.
                Err(e) if e.kind == FarmErrorKind::NotSetUp => {
                    farm.ensure_resources().await.map_err(|_| e)
                }
                other => other,
            }
        })?;
        Ok(Session { rt, res })
    }

    /// Compiles on the farm. On `Ok`, the outputs are written in the out-dir, and
    /// stdout/stderr were forwarded (and are returned for the cache), with how long rustc
    /// ran on the worker.
    pub fn compile(&self, remote: Remote<'_>) -> Result<(Compiled, Duration), Skip> {
        self.rt.block_on(compile_async(&self.res, remote))
    }

    /// The shared manifest of an invocation.
    pub fn manifest(&self, invocation: &Digest) -> Result<Manifest, Skip> {
        Ok(self.rt.block_on(self.res.get_manifest(invocation))?)
    }

    /// The shared result entry for `key`.
    pub fn entry(&self, key: &Digest) -> Result<Option<CacheEntry>, Skip> {
        Ok(self.rt.block_on(self.res.get_entry(key))?)
    }

    /// A verified blob from the CAS.
    pub fn blob(&self, digest: &Digest) -> Result<Vec<u8>, Skip> {
        Ok(self.rt.block_on(self.res.cas.get(digest))?)
    }

    /// Publishes this process's monitor event, waiting at most 100 ms to hand it to the
    /// server: the process exits next, and a buffered publish would be lost.
    pub fn publish_event(&self, event: &UnitEvent) {
        let farm = &self.res.farm;
        // A server that went away mid-build gets no event (and costs no wait).
        if !farm.is_connected() {
            return;
        }
        self.rt.block_on(async {
            farm.publish_event(events::UNIT, event.encode()).await;
            farm.flush_within(EVENT_FLUSH).await;
        });
    }

    /// Shares a result: its outputs are in the CAS already, or are uploaded first from
    /// `upload_from` (the out-dir of a local compile). Returns the bytes uploaded.
    pub fn publish(
        &self,
        invocation: &Digest,
        found: ManifestEntry,
        entry: &CacheEntry,
        upload_from: Option<&Path>,
    ) -> Result<u64, Skip> {
        // A server that went away mid-build must not make every later miss wait out a
        // request timeout to share its result.
        if !self.res.farm.is_connected() {
            return Err(Skip::Farm(FarmError::new(
                FarmErrorKind::Unreachable,
                "not connected to the NATS server: result not shared",
            )));
        }
        self.rt.block_on(async {
            let mut sent = 0;
            if let Some(dir) = upload_from {
                let paths: Vec<PathBuf> = entry.outputs.iter().map(|o| dir.join(&o.name)).collect();
                let puts = entry
                    .outputs
                    .iter()
                    .zip(&paths)
                    .map(|(o, path)| self.res.cas.put_file(&o.digest, path));
                let done = futures_util::future::join_all(puts).await;
                for (r, o) in done.into_iter().zip(&entry.outputs) {
                    if r? {
                        sent += o.size;
                    }
                }
            }
            self.res.put_result(invocation, found, entry).await?;
            Ok(sent)
        })
    }
}

async fn compile_async(res: &Resources, mut r: Remote<'_>) -> Result<(Compiled, Duration), Skip> {
    let start = Instant::now();
    let farm = &res.farm;
    let Some(worker) = res.serving_worker(r.toolchain).await? else {
        return Err(Skip::NoWorker);
    };
    // That read was one round trip of ours; the worker's is in its heartbeat.
    let prior = overhead_prior(Duration::from_micros(worker.rtt_us), start.elapsed());
    if !r.placement.farm_is_worth_it(prior) {
        return Err(Skip::Slow);
    }
    let (read, dirs, env_deps) = prepass(&r)?;
    let mut inputs = Vec::with_capacity(read.len());
    for path in read {
        let meta = std::fs::metadata(&path)
            .map_err(|e| Skip::Local(format!("cannot stat {}: {e}", path.display())))?;
        let digest = r
            .files
            .digest(&path.to_string_lossy())
            .ok_or_else(|| Skip::Local(format!("cannot read {}", path.display())))?;
        inputs.push(InputFile {
            path: path.to_string_lossy().into_owned(),
            digest,
            size: meta.len(),
            mode: meta.permissions().mode(),
        });
    }
    upload(res, &inputs).await?;
    let prepared = start.elapsed();

    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| is_keyed_env(k) || k == "OUT_DIR" || env_deps.contains(k))
        .collect();
    let job_id = JobId::from_bytes(random16());
    let reply_subject = farm
        .names
        .reply_subject(&client_id(), &job_id)
        .map_err(|e| Skip::Local(e.to_string()))?;
    let deadline = SystemTime::now() + Duration::from_millis(r.dist.start_timeout_ms);
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

    let start_wait = start_wait(r.dist);
    let job_timeout = Duration::from_secs(r.dist.job_timeout_secs);
    let mut started = false;
    let mut stderr_all = Vec::new();
    let mut diagnostics = Vec::new();
    let mut stderr = std::io::stderr();
    let queued = Instant::now();
    loop {
        let event = if started {
            sub.next(job_timeout)
                .await?
                .ok_or(Skip::Timeout(job_timeout))?
        } else {
            // Queued: a local slot that frees up first takes the job back (its worker then
            // finds nobody waiting and drops it unrun).
            loop {
                if let Some(e) = sub.next(LOCAL_CHECK_EVERY).await? {
                    break e;
                }
                if r.placement.local_free() {
                    return Err(Skip::LocalFirst);
                }
                if queued.elapsed() > start_wait {
                    return Err(Skip::NotStarted(start_wait));
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
                    return Err(Skip::Failed {
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
            JobEvent::Refused { reason } => return Err(Skip::Refused(reason)),
        }
    }
}

/// Writes one output a worker reported (fetched and verified) into the out-dir; a name this
/// compile does not write is refused.
async fn take_output(
    res: &Resources,
    r: &mut Remote<'_>,
    name: &str,
    digest: &Digest,
) -> Result<(), Skip> {
    if !r.outputs.iter().any(|o| o == name) {
        return Err(Skip::Refused(format!(
            "the worker sent an unexpected file {name:?}"
        )));
    }
    let dest = r.out_dir.join(name);
    fetch(res, digest, &dest).await?;
    r.files.remember_written(&dest, *digest);
    Ok(())
}

/// How long a job may wait in the queue before the client compiles locally.
fn start_wait(dist: &FarmConfig) -> Duration {
    Duration::from_millis(dist.start_timeout_ms) + Duration::from_millis(500)
}

/// How long an exiting wrapper waits to hand its monitor event to the server.
const EVENT_FLUSH: Duration = Duration::from_millis(100);
/// How often a queued job's client checks for a free local slot.
const LOCAL_CHECK_EVERY: Duration = Duration::from_millis(20);

/// How often a client following an identical job reads its state.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Follows the identical job the queue already holds (ours was de-duplicated) through the
/// state its worker keeps, then writes its outputs and replays rustc as if it ran for us. Its
/// rmeta arrives with the rest, not early: followers are rare (two builds of one commit).
async fn follow_identical(
    res: &Resources,
    mut r: Remote<'_>,
    dedup: &Digest,
    start: Instant,
) -> Result<(Compiled, Duration), Skip> {
    tracing::debug!("an identical job is in the queue: following it");
    let (start_wait, job_timeout) = (
        start_wait(r.dist),
        Duration::from_secs(r.dist.job_timeout_secs),
    );
    // When the job was last seen queued (now) or running: a state that stays away this
    // long means it is not queued or running anymore.
    let mut seen = Instant::now();
    loop {
        match res.job_state(dedup).await? {
            Some(JobState::Running { .. }) => seen = Instant::now(),
            Some(JobState::Refused { reason }) => return Err(Skip::Refused(reason)),
            Some(JobState::Done {
                exit_code,
                stdout,
                stderr,
                outputs,
                compile_ms,
            }) => {
                if exit_code != 0 {
                    return Err(Skip::Failed {
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
            None if seen.elapsed() > start_wait => return Err(Skip::NotStarted(start_wait)),
            None => {}
        }
        if start.elapsed() > job_timeout {
            return Err(Skip::Timeout(job_timeout));
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

/// Runs rustc's dep-info pass with `-Z binary-dep-depinfo`, which lists every file the
/// compile reads: sources, and the rmeta/rlib/so of every crate it loads (transitive ones
/// included, which cargo's `--extern`s do not name). The toolchain's own sysroot files are
/// left out: the worker has the identical toolchain. Returns the files, the directories rustc
/// walks through to reach them ([`walked_dirs`]) and the env-dep names.
type PrePass = (Vec<PathBuf>, Vec<PathBuf>, Vec<String>);
fn prepass(r: &Remote<'_>) -> Result<PrePass, Skip> {
    let dep_file = fsutil::temp_path_for(&r.out_dir.join("jetcc-prepass.d"));
    let mut args: Vec<String> = r
        .inv
        .args
        .iter()
        .filter(|a| !a.words[0].starts_with("--emit"))
        .flat_map(|a| a.words.iter().cloned())
        .collect();
    args.push(format!("--emit=dep-info={}", dep_file.display()));
    args.extend(["-Z".into(), "binary-dep-depinfo".into()]);
    let out = std::process::Command::new(r.rustc)
        .args(&args)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_MAKEFLAGS")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Skip::PrePass(e.to_string()))?;
    let text = std::fs::read_to_string(&dep_file);
    let _ = std::fs::remove_file(&dep_file);
    if !out.status.success() {
        return Err(Skip::PrePass(format!("rustc exited with {}", out.status)));
    }
    let dep = DepInfo::parse(&text.map_err(|e| Skip::PrePass(e.to_string()))?);
    let sources: Vec<PathBuf> = dep
        .sources
        .iter()
        .filter(|p| !p.contains("/lib/rustlib/"))
        .map(|p| r.cwd.join(p))
        .collect();
    let mut dirs: Vec<PathBuf> = sources.iter().flat_map(|p| walked_dirs(p)).collect();
    dirs.sort();
    dirs.dedup();
    let mut files: Vec<PathBuf> = sources.iter().map(|p| normalize(p)).collect();
    // Native static libraries a bundling rlib reads (not in dep-info).
    for sp in &r.inv.search_paths {
        if sp.kind == SearchKind::Native || sp.kind == SearchKind::All {
            if let Ok(rd) = std::fs::read_dir(r.cwd.join(&sp.path)) {
                files.extend(
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "a")),
                );
            }
        }
    }
    files.sort();
    files.dedup();
    let env_deps = dep.env_deps.into_iter().map(|(name, _)| name).collect();
    Ok((files, dirs, env_deps))
}

/// The directories a path with `..` passes through before each `..` (`a/b/../c` → `a/b`),
/// normalized: the kernel resolves `..` on the real tree, so they must exist where the job
/// runs even when no input lies in them.
fn walked_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut prefix = PathBuf::new();
    for c in path.components() {
        if c == std::path::Component::ParentDir {
            dirs.push(normalize(&prefix));
        }
        prefix.push(c);
    }
    dirs
}

/// Resolves `.` and `..` lexically (`leaf/src/../data/x` → `leaf/data/x`): jobs carry only
/// clean absolute paths, and rustc read the same file through either spelling.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Puts every input the CAS lacks, concurrently.
async fn upload(res: &Resources, inputs: &[InputFile]) -> Result<(), Skip> {
    let puts = inputs
        .iter()
        .map(|i| res.cas.put_file(&i.digest, Path::new(&i.path)));
    let results = futures_util::stream::iter(puts)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Fetches a verified blob and writes it atomically at `dest`.
async fn fetch(res: &Resources, digest: &Digest, dest: &Path) -> Result<(), Skip> {
    let bytes = res.cas.get(digest).await?;
    fsutil::write_atomic(dest, &bytes)
        .map_err(|e| Skip::Local(format!("cannot write {}: {e}", dest.display())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dotdot_name_the_dirs_they_walk_through() {
        let p = Path::new("/r/src/nptl/bits/../../x86/nptl/bits/m.rs");
        assert_eq!(normalize(p), Path::new("/r/src/x86/nptl/bits/m.rs"));
        assert_eq!(
            walked_dirs(p),
            [Path::new("/r/src/nptl/bits"), Path::new("/r/src/nptl")]
        );
        assert!(walked_dirs(Path::new("/r/src/lib.rs")).is_empty());
    }
}
