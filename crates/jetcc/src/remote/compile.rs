//! One remote compile: list and upload its inputs, publish the job, follow its events on the
//! reply subject (stderr lines, the rmeta-ready notice, the result), and write its outputs
//! where rustc would have. An identical job already queued is followed instead of run twice.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{self, Filing, Resources, Submitted};
use jetcc_common::protocol::job::{by_digest, JobEvent, JobRequest, JobState, KeyPaths};
use jetcc_common::protocol::names::JobId;
use jetcc_common::protocol::worker::WorkerStatus;
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::Digest;

use bytes::Bytes;
use jetcc_common::cache::DiskCache;
use jetcc_common::depinfo::DepInfo;
use jetcc_common::fsutil;
use jetcc_common::{environ, listing};

use super::inputs::{self, ListedFrom, Unchecked};
use super::{ship, JobKind, RemoteCompile, RemoteError};
use crate::compile::Compiled;
use crate::placement::overhead_prior;

/// Compiles `r` on the farm: see [`Session::compile`](super::Session::compile). Events
/// dropped on the reply subject (another job's, another worker's) are added to `dropped`.
pub(super) async fn compile(
    res: &Resources,
    mut r: RemoteCompile<'_>,
    cache: &DiskCache,
    dropped: &AtomicU64,
) -> Result<(Compiled, Duration), RemoteError> {
    let start = Instant::now();
    let route = worth_sending(res, &r, start).await?;
    let mut listed = inputs::list(&mut r, cache)?;
    let unchecked = listed.unchecked.take();
    let (kind, out_dir) = (r.kind, r.out_dir.to_path_buf());
    let result = send(res, r, route, listed, unchecked.as_ref(), start, dropped).await;
    let Some(unchecked) = unchecked else {
        return result;
    };
    match (&result, &unchecked.from, kind) {
        // A file the job lacked, or a read the listing did not carry: pre-pass next time.
        (Err(e), _, _) if unchecked.failed_with(e) => cache.forget_listing(&unchecked.unit),
        // The guess fit: remember what the compile showed it read, for the unit's next job.
        (Ok(_), ListedFrom::Guess { crates }, JobKind::Rustc(inv)) => {
            let path = out_dir.join(&inv.outputs.dep_info);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let listing = inputs::narrowed(inv, &DepInfo::parse(&text), crates);
                cache.put_listing(&unchecked.unit, &listing);
            }
        }
        _ => {}
    }
    result
}

/// Uploads what the CAS lacks, publishes the job and follows it (or the identical job the
/// queue already holds) to its result.
async fn send(
    res: &Resources,
    r: RemoteCompile<'_>,
    route: Route,
    listed: inputs::Listed,
    unchecked: Option<&Unchecked>,
    start: Instant,
    dropped: &AtomicU64,
) -> Result<(Compiled, Duration), RemoteError> {
    let inline = inputs::upload(res, &listed.inputs).await?;
    if let (Some(packed), Some(memo)) = (&route.shipped, r.ship_memo) {
        if let Err(e) = ship::upload(res, packed, memo).await {
            ship::forget(memo, r.toolchain, &e);
            return Err(e.into());
        }
    }
    let prepared = start.elapsed();
    let mut job = job_request(res, &r, listed)?;
    job.shipped = route.shipped.as_ref().map(|p| p.digest);
    job.inline = inline;
    // Identical jobs in flight run once: the queue drops this one if it holds the same key.
    let dedup = job.dedup_key();
    let sub = res.submit_to(&job, r.host, route.filing, &dedup).await?;
    if sub.duplicate {
        drop(sub);
        return follow_identical(res, r, &dedup, unchecked, start).await;
    }
    follow(res, r, sub, unchecked, start, prepared, dropped).await
}

/// Where a job goes, and the toolchain it ships if it does.
struct Route {
    filing: Filing,
    shipped: Option<ship::Packed>,
}

/// Whether a live worker serves this toolchain (its own, or shipped and held unpacked, else
/// any that takes shipped toolchains) and sending beats waiting for a local slot.
async fn worth_sending(
    res: &Resources,
    r: &RemoteCompile<'_>,
    start: Instant,
) -> Result<Route, RemoteError> {
    // The first read where the shared cache was not (see `JetStreamTier::manifest`).
    let serving = res.set_up_and_retry(async |res| res.serving_worker(r.toolchain).await);
    let (worker, route) = match serving.await? {
        Some(w) => (
            w,
            Route {
                filing: Filing::Toolchain(*r.toolchain),
                shipped: None,
            },
        ),
        None => shipping_route(res, r).await?,
    };
    // That read was one round trip of ours; the worker's is in its heartbeat.
    let prior = overhead_prior(Duration::from_micros(worker.rtt_us), start.elapsed());
    if r.placement.farm_is_sooner(prior, worker.slots) {
        return Ok(route);
    }
    // Wait for whichever frees up first: a local slot, or the farm (one of our jobs there
    // ended), so a worker does not sit idle while compiles queue for the local slots.
    r.placement.waiting();
    let limit = Duration::from_secs(r.farm.job_timeout_secs);
    while start.elapsed() < limit {
        tokio::time::sleep(LOCAL_CHECK_EVERY).await;
        if r.placement.local_free() {
            break;
        }
        if r.placement.farm_now_sooner(prior, worker.slots) {
            tracing::debug!(
                waited_ms = start.elapsed().as_millis() as u64,
                "the farm freed up before a local slot"
            );
            return Ok(route);
        }
    }
    Err(RemoteError::Slow)
}

/// No worker has this toolchain of its own: ship it, to a worker that holds it unpacked
/// already if one does (its pack's own queue), else to any that takes shipped toolchains.
async fn shipping_route(
    res: &Resources,
    r: &RemoteCompile<'_>,
) -> Result<(WorkerStatus, Route), RemoteError> {
    let Some(memo) = r.ship_memo.filter(|_| r.farm.ship_toolchain) else {
        return Err(RemoteError::NoWorker);
    };
    let Some(taker) = res.shipping_worker(r.host).await? else {
        return Err(RemoteError::NoWorker);
    };
    let packed = ship::pack(r.program, r.toolchain, r.host, memo)
        .map_err(|e| RemoteError::Local(e.to_string()))?;
    let (worker, filing) = match res.serving_worker(&packed.digest).await? {
        Some(holder) => (holder, Filing::Toolchain(packed.digest)),
        None => (taker, Filing::Shipped),
    };
    let route = Route {
        filing,
        shipped: Some(packed),
    };
    Ok((worker, route))
}

/// The job for `r`, with a fresh id and reply subject, and the env rustc may read.
fn job_request(
    res: &Resources,
    r: &RemoteCompile<'_>,
    listed: inputs::Listed,
) -> Result<JobRequest, RemoteError> {
    let job_id = JobId::from(farm::nonce()?);
    // Our user's, under a nonce: only we may read it, and nobody can guess it.
    let reply_subject = res
        .farm
        .names
        .reply_subject(&res.farm.user, &farm::nonce()?)
        .map_err(|e| RemoteError::Local(e.to_string()))?;
    let deadline = SystemTime::now()
        + Duration::from_millis(r.farm.start_timeout_ms)
        + r.placement.expected_wait();
    Ok(JobRequest {
        version: PROTOCOL_VERSION,
        job_id: job_id.to_string(),
        reply_subject,
        crate_name: r.label.to_owned(),
        deadline_unix_ms: deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
        toolchain: *r.toolchain,
        args: r.args.to_vec(),
        env: listed.env,
        cwd: r.cwd.to_string_lossy().into_owned(),
        inputs: listed.inputs,
        system_inputs: listed.system_inputs,
        dirs: listed
            .dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect(),
        out_dir: r.out_dir.to_string_lossy().into_owned(),
        outputs: r.outputs.to_vec(),
        key_paths: key_paths(r.kind),
        shipped: None,
        inline: Vec::new(),
    })
}

/// How a rustc job's client names paths in keys, so the worker records its result under the
/// key this client computes (C compiles are not recorded by workers).
fn key_paths(kind: JobKind<'_>) -> KeyPaths {
    let JobKind::Rustc(inv) = kind else {
        return KeyPaths::default();
    };
    let text = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let roots = inv.portable.as_ref();
    KeyPaths {
        portable: roots.is_some(),
        base_dirs: inv.base_dirs.iter().map(|b| text(b)).collect(),
        cargo_home: roots.and_then(|p| p.cargo_home.as_deref()).map(text),
        home: roots.and_then(|p| p.home.as_deref()).map(text),
    }
}

/// Follows our job's events on its reply subject until its result: the rmeta is written
/// (and its artifact line forwarded) as soon as it is announced, so cargo goes on.
async fn follow(
    res: &Resources,
    r: RemoteCompile<'_>,
    mut sub: Submitted,
    unchecked: Option<&Unchecked>,
    start: Instant,
    prepared: Duration,
    dropped: &AtomicU64,
) -> Result<(Compiled, Duration), RemoteError> {
    let result = follow_events(res, r, &mut sub, unchecked, start, prepared).await;
    dropped.fetch_add(sub.dropped(), Ordering::Relaxed);
    if result.is_err() {
        // This process compiles locally next: the job's worker must not wait for us.
        sub.abandon().await;
    }
    result
}

/// [`follow`], with the events counted in `sub`.
async fn follow_events(
    res: &Resources,
    mut r: RemoteCompile<'_>,
    sub: &mut Submitted,
    unchecked: Option<&Unchecked>,
    start: Instant,
    prepared: Duration,
) -> Result<(Compiled, Duration), RemoteError> {
    let job_timeout = Duration::from_secs(r.farm.job_timeout_secs);
    let mut started = false;
    // stderr forwarded already (artifact lines), and diagnostics held back: a failed
    // remote compile is confirmed locally, and its diagnostics must not be shown twice.
    let mut shown = Vec::new();
    let mut diagnostics = Vec::new();
    // A job listed without a pre-pass announces nothing before its dep-info is checked.
    let mut unchecked = unchecked;
    let mut held = Vec::new();
    let queued = Instant::now();
    loop {
        let event = match started {
            true => sub
                .next(job_timeout)
                .await?
                .ok_or(RemoteError::Timeout(job_timeout))?,
            false => next_while_queued(sub, &r, queued).await?,
        };
        match event {
            JobEvent::Started => {
                r.placement.record_queued(queued.elapsed());
                tracing::debug!(
                    worker = sub.worker().unwrap_or_default(),
                    queued_ms = (start.elapsed() - prepared).as_millis() as u64,
                    "job started"
                );
                started = true;
            }
            JobEvent::Stderr(line) => diagnostics.extend_from_slice(&line),
            JobEvent::Artifact {
                name,
                digest,
                line,
                inline,
            } => {
                let sent = Vec::from_iter(inline);
                take_outputs(res, &mut r, &[(name.clone(), digest)], &sent).await?;
                held.extend_from_slice(&line);
                if let Some(listing) = unchecked {
                    if !is_dep_info(&r, &name) {
                        continue;
                    }
                    check_reads(&r, listing)?;
                    unchecked = None;
                }
                let mut stderr = std::io::stderr();
                let _ = stderr.write_all(&held).and_then(|_| stderr.flush());
                shown.append(&mut held);
            }
            JobEvent::Done {
                exit_code,
                stdout,
                outputs,
                compile_ms,
                inline,
            } => {
                let result = Finished {
                    exit_code,
                    stdout,
                    outputs,
                    compile_ms,
                    inline,
                };
                shown.append(&mut held);
                let streams = (shown, diagnostics);
                return finish(res, r, result, streams, unchecked, Some(prepared), start).await;
            }
            JobEvent::Refused { reason } => return Err(RemoteError::Refused(reason)),
        }
    }
}

/// The next event of a job no worker has started yet. A local slot that frees up first
/// takes the job back (its worker then finds nobody waiting and drops it unrun).
async fn next_while_queued(
    sub: &mut Submitted,
    r: &RemoteCompile<'_>,
    queued: Instant,
) -> Result<JobEvent, RemoteError> {
    let start_wait = start_wait(r.farm) + r.placement.expected_wait();
    loop {
        if let Some(e) = sub.next(LOCAL_CHECK_EVERY).await? {
            return Ok(e);
        }
        if r.placement.local_free() {
            r.placement.record_queued(queued.elapsed());
            return Err(RemoteError::LocalFirst);
        }
        if queued.elapsed() > start_wait {
            return Err(RemoteError::NotStarted(start_wait));
        }
    }
}

/// A job's result as the worker reported it.
struct Finished {
    exit_code: i32,
    stdout: Vec<u8>,
    outputs: Vec<(String, Digest)>,
    compile_ms: u64,
    /// Outputs' bytes sent with the result (the rest are fetched from the CAS).
    inline: Vec<Bytes>,
}

/// Writes a finished job's outputs and replays rustc as if it ran here: of `(shown,
/// pending)` stderr, the first was forwarded already, except artifact lines held back for
/// `unchecked` (a listing without a pre-pass whose reads are still to be checked). A failure is handed
/// back for a local compile to confirm. `prepared`: how long listing and uploading the inputs
/// took (`None`: we followed an identical job).
async fn finish(
    res: &Resources,
    mut r: RemoteCompile<'_>,
    done: Finished,
    (mut shown, mut pending): (Vec<u8>, Vec<u8>),
    unchecked: Option<&Unchecked>,
    prepared: Option<Duration>,
    start: Instant,
) -> Result<(Compiled, Duration), RemoteError> {
    if done.exit_code != 0 {
        return Err(RemoteError::Failed {
            exit_code: done.exit_code,
            first_error: first_error(&pending),
        });
    }
    take_outputs(res, &mut r, &done.outputs, &done.inline).await?;
    if let Some(listing) = unchecked {
        check_reads(&r, listing)?;
        // The held artifact lines go out first, as rustc wrote them.
        let diagnostics = std::mem::take(&mut pending);
        pending = std::mem::take(&mut shown);
        pending.extend_from_slice(&diagnostics);
    }
    let mut stderr = std::io::stderr();
    let _ = stderr.write_all(&pending).and_then(|_| stderr.flush());
    shown.extend_from_slice(&pending);
    let _ = std::io::stdout().write_all(&done.stdout);
    tracing::debug!(
        exit_code = done.exit_code,
        prepare_ms = prepared.unwrap_or_default().as_millis() as u64,
        total_ms = start.elapsed().as_millis() as u64,
        followed = prepared.is_none(),
        "remote compile done"
    );
    let compiled = Compiled {
        exit_code: done.exit_code,
        stdout: done.stdout,
        stderr: shown,
        duration: start.elapsed(),
    };
    Ok((compiled, Duration::from_millis(done.compile_ms)))
}

/// Whether `name` is the dep-info file of a rustc job.
fn is_dep_info(r: &RemoteCompile<'_>, name: &str) -> bool {
    matches!(r.kind, JobKind::Rustc(inv) if inv.outputs.dep_info == name)
}

/// Checks that a job listed without a pre-pass read what a local compile would, from the
/// dep-info it wrote (already in the out-dir): see `common::listing::stale`.
fn check_reads(r: &RemoteCompile<'_>, listing: &Unchecked) -> Result<(), RemoteError> {
    let JobKind::Rustc(inv) = r.kind else {
        return Ok(());
    };
    let path = r.out_dir.join(&inv.outputs.dep_info);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RemoteError::Local(format!("cannot read {}: {e}", path.display())))?;
    let dep = DepInfo::parse(&text);
    match listing::stale(&dep, r.cwd, &listing.files, &environ::var) {
        Some(why) => Err(RemoteError::StaleListing(why)),
        None => Ok(()),
    }
}

/// Writes the outputs a worker reported into the out-dir: those whose bytes it sent along
/// (`inline`, each taken only for the output whose digest it has), the rest fetched and
/// verified, all at once (each fetch is two round trips). A name this compile does not
/// write is refused.
async fn take_outputs(
    res: &Resources,
    r: &mut RemoteCompile<'_>,
    outputs: &[(String, Digest)],
    inline: &[Bytes],
) -> Result<(), RemoteError> {
    if let Some((name, _)) = outputs.iter().find(|(n, _)| !r.outputs.contains(n)) {
        return Err(RemoteError::Refused(format!(
            "the worker sent an unexpected file {name:?}"
        )));
    }
    let out_dir = r.out_dir;
    let sent = matched(outputs, inline);
    let writes = outputs.iter().zip(sent).map(|((name, digest), sent)| {
        let dest = out_dir.join(name);
        async move {
            match sent {
                Some(bytes) => fsutil::write_atomic(&dest, bytes).map_err(|e| {
                    RemoteError::Local(format!("cannot write {}: {e}", dest.display()))
                }),
                None => inputs::fetch(res, digest, &dest).await,
            }
        }
    });
    futures_util::future::try_join_all(writes).await?;
    for (name, digest) in outputs {
        r.files.remember_written(&out_dir.join(name), *digest);
    }
    Ok(())
}

/// For each output, the blob of `inline` whose bytes have its digest: a blob that matches
/// none (corrupt, or not this job's) is never written, and its output is fetched instead.
fn matched<'a>(outputs: &[(String, Digest)], inline: &'a [Bytes]) -> Vec<Option<&'a Bytes>> {
    let sent = by_digest(inline);
    outputs
        .iter()
        .map(|(_, want)| sent.get(want).copied())
        .collect()
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
    r: RemoteCompile<'_>,
    dedup: &Digest,
    unchecked: Option<&Unchecked>,
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
                let result = Finished {
                    exit_code,
                    stdout,
                    outputs,
                    compile_ms,
                    inline: Vec::new(),
                };
                let streams = (Vec::new(), stderr);
                return finish(res, r, result, streams, unchecked, None, start).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inline_blob_is_written_only_for_the_output_it_matches() {
        let (rlib, rmeta) = (Bytes::from_static(b"rlib"), Bytes::from_static(b"rmeta"));
        let outputs = [
            ("liba.rlib".to_owned(), Digest::of_bytes(b"rlib")),
            ("liba.rmeta".to_owned(), Digest::of_bytes(b"rmeta")),
            ("a.d".to_owned(), Digest::of_bytes(b"a.d")),
        ];
        // In any order; a corrupt blob and one of another job's output match nothing.
        let inline = [
            rmeta.clone(),
            Bytes::from_static(b"rlib, corrupted"),
            Bytes::from_static(b"evil"),
            rlib.clone(),
        ];
        assert_eq!(
            matched(&outputs, &inline),
            [Some(&rlib), Some(&rmeta), None],
            "the dep-info is fetched from the CAS"
        );
        assert_eq!(matched(&outputs, &[]), [None, None, None]);
    }
}
