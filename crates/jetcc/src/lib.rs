//! The `jetcc` binary's logic: the rustc wrapper and its few commands.
//!
//! - [`wrapper`]: the life of one rustc invocation (classify, look up, restore or compile,
//!   store, share), and the fallback to plain rustc on any jetcc-side error;
//!   [`invocation`]: the prepared, immutable [`invocation::Invocation`] and its digest.
//! - [`buildscript`]: build-script runs through the launcher jetcc leaves in place of each
//!   build script's binary: restore `OUT_DIR` and replay, or run, store and share.
//! - [`cc`]: C/C++ compiles, through the compiler shims a build script run by jetcc finds
//!   first on its `PATH` (jetcc called as `cc`, `gcc`, `c++`…): restore or compile and store.
//! - [`compile`]: runs rustc (or a build script), streaming its output while capturing it.
//! - [`remote`]: sends a miss to the farm and writes what comes back.
//! - [`tiers`]: the cache tiers (local disk, JetStream, object store) behind one trait.
//! - [`events`]: what this process did, as one event for monitors.
//! - [`breaker`]: skips a failing farm or tier for a while, across wrapper processes.
//! - [`placement`]: whether a miss compiles locally or on the farm (local slots, each unit's
//!   history, where it is expected to finish first).
//! - [`cli`]: `--show-stats`, `--zero-stats`, `--explain`, `--dist-status`, `--version`;
//!   [`check`]: `--check`, a write, read and delete on every cache tier.
//!
//! Design choice: anything the wrapper does not understand, or any error before rustc starts,
//! ends in `exec` of plain rustc, so jetcc can only cost time, never a build.

pub mod breaker;
pub mod buildscript;
pub mod cc;
pub mod check;
pub mod cli;
pub mod compile;
pub mod events;
pub mod invocation;
pub mod logging;
pub mod misses;
pub mod placement;
pub mod remote;
pub mod tiers;
pub mod wrapper;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use jetcc_common::stats::Stats;

/// This process's counts not yet added to its cache dir's shared stats (a process has one
/// cache dir, its config's: the first `record` names it).
static UNFLUSHED: Mutex<Option<(PathBuf, Stats)>> = Mutex::new(None);
/// Set by a long-lived process (the uploader): each count goes to the file at once.
static WRITE_THROUGH: AtomicBool = AtomicBool::new(false);

/// Counts in this process's stats (its monitor event's delta, and what [`flush_stats`] adds
/// to the shared `stats.json`). Kept in memory until the process ends or execs: each update
/// of the shared file is a lock, a read and a rename (0.3-1.2 ms measured), and a remote job
/// made five around its compile.
pub(crate) fn record(cache_dir: &Path, mut f: impl FnMut(&mut Stats)) {
    events::note(&mut f);
    {
        let mut unflushed = UNFLUSHED.lock().unwrap_or_else(|e| e.into_inner());
        let (_, delta) = unflushed.get_or_insert_with(|| (cache_dir.to_owned(), Stats::default()));
        f(delta);
    }
    if WRITE_THROUGH.load(Ordering::Relaxed) {
        flush_stats();
    }
}

/// Adds what this process counted to the shared stats; failures (a read-only cache dir) are
/// logged only.
pub(crate) fn flush_stats() {
    let taken = UNFLUSHED.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some((dir, delta)) = taken.filter(|(_, d)| *d != Stats::default()) else {
        return;
    };
    let added = std::fs::create_dir_all(&dir).and_then(|_| Stats::update(&dir, |s| s.add(&delta)));
    if let Err(e) = added {
        tracing::debug!("cannot update stats in {}: {e}", dir.display());
    }
}

/// Makes every count of this process go to the shared stats at once (a process that runs
/// on after the build, whose counts `--show-stats` should see as they come).
pub(crate) fn write_stats_through() {
    WRITE_THROUGH.store(true, Ordering::Relaxed);
}

/// Replaces this process with `cmd`, its stats flushed first. Returns only if exec failed.
pub(crate) fn exec(cmd: &mut Command) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    flush_stats();
    cmd.exec()
}

/// Runs what `args` ask (see [`dispatch`]) and adds this process's counts to the shared
/// stats. Returns the process exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let code = dispatch(args);
    flush_stats();
    code
}

/// Dispatches on the program's name, then the first argument: called as a compiler shim
/// (`cc`, `gcc`, `c++`…) it is that compiler; else a flag is a jetcc command, anything else
/// is the rustc to wrap.
fn dispatch(args: Vec<OsString>) -> i32 {
    let shim = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| cc::shims::NAMES.iter().find(|s| **s == n));
    if let Some(name) = shim {
        return cc::run(name, args.into_iter().skip(1).collect());
    }
    let first = args.get(1).map(|a| a.to_string_lossy().into_owned());
    match first {
        Some(f) if f == buildscript::launcher::COMMAND && args.len() > 2 => {
            let mut rest = args.into_iter().skip(2);
            let launcher = rest.next().expect("checked above");
            buildscript::run(launcher, rest.collect())
        }
        Some(f) if f == tiers::pending::COMMAND && args.len() == 2 => {
            tiers::pending::run_uploader()
        }
        Some(f) if f.starts_with('-') => cli::run(&args),
        Some(_) => {
            let mut rest = args.into_iter().skip(1);
            let rustc = rest.next().expect("checked above");
            wrapper::run(rustc, rest.collect())
        }
        None => cli::run(&args),
    }
}
