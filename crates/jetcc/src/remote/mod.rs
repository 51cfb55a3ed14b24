//! The wrapper's remote side: sending one miss to the farm and writing what comes back.
//!
//! - [`session`]: the connection a wrapper process opens once ([`Session`]), which is also
//!   the JetStream cache tier's (see `crate::tiers::jetstream`).
//! - [`compile`]: one remote compile, from publishing the job to the outputs on disk, or
//!   following an identical job that is already queued.
//! - [`inputs`]: what a job reads (the dep-info pre-pass, the unit's remembered listing, or
//!   on its first job a [`guess`]) and putting it in the CAS.
//! - [`guess`]: a unit's inputs listed without running rustc: its package's files and the
//!   crates its externs load.
//! - [`ship`]: this client's toolchain packed (once per toolchain) and put in the CAS (once
//!   per farm), for workers that lack it.
//!
//! Any failure before the job's result arrives is a [`RemoteError`]: the caller compiles
//! locally, so the farm can cost time but never a build. A compile *error* on the farm is an
//! answer, not a failure: it is confirmed by compiling locally.

mod compile;
mod guess;
mod inputs;
mod session;
mod ship;

use std::path::Path;
use std::time::Duration;

use jetcc_common::ccargs::CcArgs;
use jetcc_common::config::FarmConfig;
use jetcc_common::farm::FarmError;
use jetcc_common::files::FileDigests;
use jetcc_common::stats::RemoteSkip;
use jetcc_common::Digest;

use jetcc_common::cache::DiskCache;
use jetcc_common::stats::Stats;
use jetcc_common::toolchain;

use crate::compile::Compiled;
use crate::invocation::Invocation;
use crate::placement::Placement;
use crate::record;
use crate::tiers::SharedTiers;

pub use session::Session;

/// Why a compile did not go to the farm (it then runs locally). `kind` names it in stats.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    Farm(#[from] FarmError),
    #[error("no live worker has this toolchain")]
    NoWorker,
    /// It is expected to finish sooner in a local slot (see [`crate::placement`]).
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
    /// The compile's env cannot be shipped: it reads a credential, or a keyed variable is
    /// not UTF-8 (see `common::environ`).
    #[error("{0}")]
    Env(String),
    /// The job was sent without a pre-pass (the unit's remembered listing, or a guess), and
    /// its dep-info shows a read a local compile would see otherwise (see `common::listing`).
    #[error("the job's reused input listing was stale ({0}); compiling locally")]
    StaleListing(String),
    /// A link a worker would not repeat exactly (see `inputs::link_inputs`).
    #[error("{0}; linking here")]
    Linker(String),
}

impl RemoteError {
    /// Whether this says the farm is unhealthy (counts towards skipping it for a while), as
    /// opposed to this one unit not being fit for it.
    pub fn is_farm_failure(&self) -> bool {
        !matches!(
            self,
            RemoteError::PrePass(_)
                | RemoteError::Local(_)
                | RemoteError::Env(_)
                | RemoteError::StaleListing(_)
                | RemoteError::Linker(_)
                | RemoteError::Failed { .. }
                | RemoteError::Slow
                | RemoteError::LocalFirst
        )
    }

    /// Its kind in `Stats::remote_skipped`.
    pub fn kind(&self) -> RemoteSkip {
        match self {
            RemoteError::Farm(e) => RemoteSkip::Farm(e.kind),
            RemoteError::NoWorker => RemoteSkip::NoWorker,
            RemoteError::Slow => RemoteSkip::Slow,
            RemoteError::LocalFirst => RemoteSkip::LocalFirst,
            RemoteError::PrePass(_) => RemoteSkip::PrePass,
            RemoteError::NotStarted(_) => RemoteSkip::NotStarted,
            RemoteError::Refused(_) => RemoteSkip::Refused,
            RemoteError::Timeout(_) => RemoteSkip::Timeout,
            RemoteError::Failed { .. } => RemoteSkip::CompileFailed,
            RemoteError::Local(_) => RemoteSkip::LocalIo,
            RemoteError::Env(_) => RemoteSkip::Env,
            RemoteError::StaleListing(_) => RemoteSkip::StaleListing,
            RemoteError::Linker(_) => RemoteSkip::Linker,
        }
    }
}

/// What a job compiles, which decides how its inputs are listed.
#[derive(Clone, Copy)]
pub enum JobKind<'a> {
    /// A rustc invocation: rustc's dep-info pre-pass lists what it reads.
    Rustc(&'a Invocation),
    /// A C/C++ compile of a build script: the compiler's `-M` pre-pass lists it.
    C(&'a CcArgs),
}

/// One compile as the farm needs it.
pub struct RemoteCompile<'a> {
    pub farm: &'a FarmConfig,
    /// The compiler, as a local compile would run it.
    pub program: &'a Path,
    pub kind: JobKind<'a>,
    /// The compiler's arguments as a local compile would run them.
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub out_dir: &'a Path,
    /// Every file the compile writes into `out_dir` (dep-info included).
    pub outputs: &'a [String],
    /// The identity a worker must serve ([`JobRequest::toolchain`]).
    ///
    /// [`JobRequest::toolchain`]: jetcc_common::protocol::job::JobRequest::toolchain
    pub toolchain: &'a Digest,
    /// The host triple (rustc) or machine (C compiler) jobs are filed by.
    pub host: &'a str,
    /// For logs and the monitor: the crate's name, or the C source.
    pub label: &'a str,
    pub files: &'a mut FileDigests,
    /// Whether sending is worth it, and whether a local slot frees up first.
    pub placement: &'a Placement,
    /// For a rustc job, where its toolchain's pack is memoized (`ship`): with
    /// `[dist] ship_toolchain`, a toolchain no worker has is shipped. `None`: never shipped
    /// (a C compiler).
    pub ship_memo: Option<&'a Path>,
}

/// Compiles `job` on the farm when one is configured and has been healthy; `None`: compile
/// locally (why is logged and counted in `Stats::remote_skipped`).
pub fn try_remote(
    shared: &mut SharedTiers,
    cache: &DiskCache,
    job: RemoteCompile<'_>,
) -> Option<Compiled> {
    let breaker = shared.farm_breaker();
    let session = shared.session()?;
    let label = job.label.to_owned();
    let placement = job.placement;
    let is_c = matches!(job.kind, JobKind::C(_));
    let result = session.compile(job, cache);
    let cache_dir = cache.root();
    let dropped = session.take_dropped_events();
    if dropped > 0 {
        record(cache_dir, |s| s.remote_events_dropped += dropped);
    }
    match result {
        Ok((compiled, on_worker)) => {
            placement.record_remote(compiled.duration, on_worker);
            breaker.record(true);
            record(cache_dir, |s| match is_c {
                true => s.c_compiles.remote += 1,
                false => s.remote_compiles += 1,
            });
            Some(compiled)
        }
        Err(e) => {
            tracing::info!(unit = label, "compiling locally: {e}");
            breaker.record(!e.is_farm_failure());
            record(cache_dir, |s| {
                let skipped = match is_c {
                    true => &mut s.c_compiles.remote_skipped,
                    false => &mut s.remote_skipped,
                };
                Stats::bump(skipped, &e.kind())
            });
            None
        }
    }
}

/// [`try_remote`] for a rustc invocation.
pub fn try_remote_rustc(
    shared: &mut SharedTiers,
    cache: &DiskCache,
    inv: &Invocation,
    words: &[String],
    files: &mut FileDigests,
    placement: &Placement,
) -> Option<Compiled> {
    let farm = shared.farm()?.clone();
    let memo = cache.toolchain_memo_dir();
    let host = toolchain::host_triple(Path::new(&inv.rustc), &memo).ok()?;
    // A link prints its command for the wrapper (`--print=link-args=FILE` in the out-dir):
    // the worker sends that file back with the outputs.
    let mut outputs = inv.outputs.files.clone();
    outputs.extend(
        words
            .iter()
            .filter_map(|w| w.strip_prefix("--print=link-args="))
            .filter_map(|f| Path::new(f).file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    );
    let job = RemoteCompile {
        farm: &farm,
        program: Path::new(&inv.rustc),
        kind: JobKind::Rustc(inv),
        args: words,
        cwd: &inv.cwd,
        out_dir: &inv.outputs.out_dir,
        outputs: &outputs,
        toolchain: &inv.toolchain,
        host: &host,
        label: inv.crate_name(),
        files,
        placement,
        ship_memo: Some(&memo),
    };
    try_remote(shared, cache, job)
}
