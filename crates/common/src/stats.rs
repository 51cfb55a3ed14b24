//! Cache statistics, shared by every jetcc process using one cache dir.
//!
//! Kept in `stats.json` and updated read-modify-write under a `flock` (a
//! [`SharedFile`], rewritten in place), so concurrent processes never lose an update. A
//! wrapper adds what it counted once, as it ends ([`Stats::add`]): each update is a lock, a
//! read and a write, too slow for every count.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsutil::SharedFile;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Every rustc invocation jetcc saw.
    pub requests: u64,
    /// Cacheable invocations found in the cache.
    pub hits: u64,
    /// Cacheable invocations compiled.
    pub misses: u64,
    /// Invocations run as plain rustc, by reason.
    pub pass_through: BTreeMap<String, u64>,
    /// jetcc-side errors (each one fell back to plain rustc or skipped storing), by kind.
    pub errors: BTreeMap<String, u64>,
    /// Misses whose result was not stored, by reason (compile error, input edited mid-compile).
    pub not_stored: BTreeMap<String, u64>,
    /// Each tier's own counts (`local`, `jetstream`, `s3`, …), in lookup order by name.
    pub tiers: BTreeMap<String, TierStats>,
    /// Misses compiled on the farm.
    pub remote_compiles: u64,
    /// Misses that could have gone to the farm but were compiled locally, by reason.
    pub remote_skipped: BTreeMap<String, u64>,
    /// Farm jobs whose inputs a dep-info pre-pass listed.
    pub remote_prepasses: u64,
    /// Farm jobs sent with the unit's remembered input listing, without a pre-pass
    /// (`common::listing`).
    pub remote_listings_reused: u64,
    /// A unit's first farm jobs sent with its inputs guessed (its package's files and the
    /// crates it loads), without a pre-pass (`common::listing`).
    pub remote_listings_guessed: u64,
    /// Events on our jobs' reply subjects that were dropped: another job's, from a worker
    /// other than the one that started the job, or unreadable (forged or stray).
    pub remote_events_dropped: u64,
    /// Bytes of outputs written to targets from the cache.
    pub bytes_restored: u64,
    /// Bytes of new cache files written.
    pub bytes_stored: u64,
    /// Compile time the hits did not spend, minus the time restoring took.
    pub time_saved_ms: u64,
    /// Build-script runs (through jetcc's launcher); the counts above are rustc's.
    pub build_script_runs: ActionStats,
    /// C/C++ and assembler compiles through jetcc's compiler shims (started by build-script
    /// runs); pass-through reasons are `ccargs::CcPassThrough`.
    pub c_compiles: ActionStats,
    /// rustc hits compiled again to check them (`[cache] verify_rate`), by outcome
    /// ([`VerifyOutcome`]).
    pub verified: BTreeMap<String, u64>,
}

/// What compiling a hit again showed (`Stats::verified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// Every output was byte-identical to the restored one.
    Same,
    /// An output differed: the entry was dropped from the local tier and the fresh outputs
    /// used (a poisoned entry, or a non-deterministic compile).
    Mismatch,
    /// rustc failed where the cache held a success: dropped the same way.
    CompileFailed,
}

impl StatKind for VerifyOutcome {
    fn name(&self) -> &'static str {
        match self {
            VerifyOutcome::Same => "same",
            VerifyOutcome::Mismatch => "mismatch",
            VerifyOutcome::CompileFailed => "compile-failed",
        }
    }
}

/// The counts of one kind of action other than rustc invocations (build-script runs, C/C++
/// compiles).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActionStats {
    /// Results found in a cache tier and restored.
    pub hits: u64,
    /// Run (or compiled) for real.
    pub misses: u64,
    /// Misses whose result was stored.
    pub stored: u64,
    /// Not cached at all, by reason: run for real as without jetcc.
    pub pass_through: BTreeMap<String, u64>,
    /// Misses whose result was not stored, by reason.
    pub not_stored: BTreeMap<String, u64>,
    /// Time the hits did not spend, minus the time restoring took.
    pub time_saved_ms: u64,
    /// Misses compiled on the farm.
    pub remote: u64,
    /// Misses that could have gone to the farm but ran locally, by reason.
    pub remote_skipped: BTreeMap<String, u64>,
}

/// The kinds of action counted in their own [`ActionStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    BuildScriptRun,
    CCompile,
}

impl Stats {
    /// The counts of one kind of action.
    pub fn action(&mut self, kind: ActionKind) -> &mut ActionStats {
        match kind {
            ActionKind::BuildScriptRun => &mut self.build_script_runs,
            ActionKind::CCompile => &mut self.c_compiles,
        }
    }
}

impl ActionStats {
    fn add(&mut self, delta: &ActionStats) {
        let ActionStats {
            hits,
            misses,
            stored,
            pass_through,
            not_stored,
            time_saved_ms,
            remote,
            remote_skipped,
        } = delta;
        self.hits += hits;
        self.misses += misses;
        self.stored += stored;
        add_counts(&mut self.pass_through, pass_through);
        add_counts(&mut self.not_stored, not_stored);
        self.time_saved_ms += time_saved_ms;
        self.remote += remote;
        add_counts(&mut self.remote_skipped, remote_skipped);
    }
}

fn add_counts(to: &mut BTreeMap<String, u64>, delta: &BTreeMap<String, u64>) {
    for (kind, n) in delta {
        *to.entry(kind.clone()).or_default() += n;
    }
}

/// Why a build-script run was not looked up at all (`ActionStats::pass_through`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPassThrough {
    /// cargo set no `OUT_DIR` (not a build-script run as cargo makes them).
    NoOutDir,
    /// A jetcc-side error before the run (config, cache dir, key), by kind.
    Error(ErrorKind),
}

impl StatKind for RunPassThrough {
    fn name(&self) -> &'static str {
        match self {
            RunPassThrough::NoOutDir => "no-out-dir",
            RunPassThrough::Error(kind) => kind.name(),
        }
    }
}

/// One cache tier's counts. An error is never a miss: a tier that fails every request shows
/// errors, with the last one's diagnosis, not a column of misses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TierStats {
    /// Lookups that found a whole result here (outputs verified).
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Lookups and writes that failed, by kind.
    pub errors: BTreeMap<String, u64>,
    /// The last error's diagnosis.
    pub last_error: Option<String>,
    /// Results written here.
    pub writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Time spent on this tier's lookups, fetches and writes.
    pub time_ms: u64,
}

impl TierStats {
    fn add(&mut self, delta: &TierStats) {
        let TierStats {
            hits,
            misses,
            errors,
            last_error,
            writes,
            bytes_read,
            bytes_written,
            time_ms,
        } = delta;
        self.hits += hits;
        self.misses += misses;
        add_counts(&mut self.errors, errors);
        if last_error.is_some() {
            self.last_error.clone_from(last_error);
        }
        self.writes += writes;
        self.bytes_read += bytes_read;
        self.bytes_written += bytes_written;
        self.time_ms += time_ms;
    }
}

/// A kind counted in one of the [`Stats`] maps. Its name there is fixed: scripts and tests
/// read the word the code writes, through the same enum.
pub trait StatKind {
    fn name(&self) -> &'static str;
}

/// A jetcc-side error, by kind (`Stats::errors`): each one fell back to plain rustc or left
/// a result unstored; rustc's own result always stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The local cache dir could not be opened.
    CacheOpen,
    /// `rustc -vV` or the linker's identity could not be read.
    Toolchain,
    /// An input of the key could not be read.
    Key,
    /// The current dir could not be read.
    Cwd,
    /// A local entry or one of its blobs failed verification (it was dropped).
    CorruptEntry,
    /// rustc could not be started.
    Spawn,
    /// The dep-info rustc wrote could not be read.
    DepInfoUnreadable,
    /// A result could not be written to the local cache.
    CacheWrite,
    /// A keyed env var is not UTF-8: no key can name it, so the tool ran plainly.
    EnvNotUtf8,
}

impl StatKind for ErrorKind {
    fn name(&self) -> &'static str {
        match self {
            ErrorKind::CacheOpen => "cache-open",
            ErrorKind::Toolchain => "toolchain",
            ErrorKind::Key => "key",
            ErrorKind::Cwd => "cwd",
            ErrorKind::CorruptEntry => "corrupt-entry",
            ErrorKind::Spawn => "spawn",
            ErrorKind::DepInfoUnreadable => "dep-info-unreadable",
            ErrorKind::CacheWrite => "cache-write",
            ErrorKind::EnvNotUtf8 => "env-not-utf8",
        }
    }
}

/// Why a miss's result was not stored, though nothing went wrong (`Stats::not_stored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStoredReason {
    /// rustc failed: failures are not cached.
    CompileError,
    /// An incremental unit being edited (see the wrapper's edit-loop rule).
    EditLoop,
    /// A link whose libraries rustc did not print.
    LinkInputsUnknown,
    /// A source the compile read is gone or unreadable.
    SourceUnreadable,
    /// A source changed while rustc ran: the result may not match the key.
    InputChangedDuringCompile,
    /// A build script failed: failures are not cached.
    ScriptFailed,
    /// A build script declared `rerun-if-changed` on a path that does not exist: cargo then
    /// reruns it every time, and so does jetcc.
    DeclaredPathMissing,
    /// A build script's `OUT_DIR` could not be packed (a FIFO or socket in it, say).
    OutDirUnpackable,
    /// A C/C++ source or header uses `__DATE__`, `__TIME__` or `__TIMESTAMP__`: its object
    /// changes with the clock (ccache's rule for direct mode).
    TimeMacros,
    /// An assembler source uses `.include` or `.incbin`: files no dep file lists.
    AsmInclude,
    /// A dep file the compiler wrote is not what jetcc expects (its target is not the object).
    DepFileUnexpected,
    /// The local cache is read-only (`[cache.disk] rw_mode = "READ_ONLY"`); writable shared
    /// tiers still got the result.
    LocalReadOnly,
    /// A variable the run declared (`rerun-if-env-changed`) is not UTF-8: no entry could say
    /// which value it was made with.
    EnvNotUtf8,
}

impl StatKind for NotStoredReason {
    fn name(&self) -> &'static str {
        match self {
            NotStoredReason::CompileError => "compile-error",
            NotStoredReason::EditLoop => "edit-loop",
            NotStoredReason::LinkInputsUnknown => "link-inputs-unknown",
            NotStoredReason::SourceUnreadable => "source-unreadable",
            NotStoredReason::InputChangedDuringCompile => "input-changed-during-compile",
            NotStoredReason::ScriptFailed => "script-failed",
            NotStoredReason::DeclaredPathMissing => "declared-path-missing",
            NotStoredReason::OutDirUnpackable => "out-dir-unpackable",
            NotStoredReason::TimeMacros => "time-macros",
            NotStoredReason::AsmInclude => "asm-include",
            NotStoredReason::DepFileUnexpected => "dep-file-unexpected",
            NotStoredReason::LocalReadOnly => "local-read-only",
            NotStoredReason::EnvNotUtf8 => "env-not-utf8",
        }
    }
}

/// Why a miss that could have gone to the farm compiled here (`Stats::remote_skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteSkip {
    /// Talking to the server failed.
    Farm(crate::farm::FarmErrorKind),
    NoWorker,
    /// Sending costs more than waiting for a local slot.
    Slow,
    /// A local slot freed up before a worker started the job.
    LocalFirst,
    /// Listing the job's inputs failed.
    PrePass,
    NotStarted,
    Refused,
    Timeout,
    /// rustc failed on the farm (the compile is confirmed locally).
    CompileFailed,
    /// A local file could not be read or written.
    LocalIo,
    /// The compile reads a variable that looks like a credential (never shipped), or a
    /// keyed one that is not UTF-8.
    Env,
    /// A job sent with a reused input listing read what a local compile would not (an env
    /// dep with another value here, an ambiguous module file): its result was discarded.
    StaleListing,
    /// A link whose linker is not the one a worker's rustc runs (`cc` other than
    /// `/usr/bin/cc`), or whose C runtime could not be listed for the worker to check.
    Linker,
}

impl StatKind for RemoteSkip {
    fn name(&self) -> &'static str {
        match self {
            RemoteSkip::Farm(kind) => kind.name(),
            RemoteSkip::NoWorker => "farm-no-worker",
            RemoteSkip::Slow => "farm-slow",
            RemoteSkip::LocalFirst => "farm-local-first",
            RemoteSkip::PrePass => "farm-prepass",
            RemoteSkip::NotStarted => "farm-not-started",
            RemoteSkip::Refused => "farm-refused",
            RemoteSkip::Timeout => "farm-timeout",
            RemoteSkip::CompileFailed => "farm-compile-failed",
            RemoteSkip::LocalIo => "farm-local-io",
            RemoteSkip::Env => "farm-env",
            RemoteSkip::StaleListing => "farm-stale-listing",
            RemoteSkip::Linker => "farm-linker",
        }
    }
}

/// The local disk tier's name in `Stats::tiers` (the shared tiers name themselves).
pub const LOCAL_TIER: &str = "local";

/// Bytes the way people read them (`512 B`, `1.5 KiB`, `10.0 GiB`), as sccache prints them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

impl Stats {
    /// A tier's counts, created on first use.
    pub fn tier(&mut self, name: &str) -> &mut TierStats {
        self.tiers.entry(name.to_owned()).or_default()
    }

    fn file(dir: &Path) -> SharedFile {
        SharedFile::new(dir.join("stats.json"), dir.join("stats.lock"))
    }

    /// Missing or unreadable: all zero.
    fn parse(bytes: Option<&[u8]>) -> Stats {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }

    pub fn load(dir: &Path) -> Stats {
        Stats::parse(Stats::file(dir).read().as_deref())
    }

    /// Applies `f` to the stored stats atomically with respect to other processes.
    pub fn update(dir: &Path, f: impl FnOnce(&mut Stats)) -> io::Result<()> {
        Stats::file(dir).update(|old| {
            let mut s = Stats::parse(old);
            f(&mut s);
            (serde_json::to_vec_pretty(&s).expect("stats serialize"), ())
        })
    }

    pub fn zero(dir: &Path) -> io::Result<()> {
        Stats::update(dir, |s| *s = Stats::default())
    }

    /// Hits over cacheable requests, in percent.
    pub fn hit_rate(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            100.0 * self.hits as f64 / n as f64
        }
    }

    /// Adds `delta` (what one process counted) to these counts; a tier's `last_error` becomes
    /// the delta's where it has one. Every field is named, so a new one cannot be left out.
    pub fn add(&mut self, delta: &Stats) {
        let Stats {
            requests,
            hits,
            misses,
            pass_through,
            errors,
            not_stored,
            tiers,
            remote_compiles,
            remote_skipped,
            remote_prepasses,
            remote_listings_reused,
            remote_listings_guessed,
            remote_events_dropped,
            bytes_restored,
            bytes_stored,
            time_saved_ms,
            build_script_runs,
            c_compiles,
            verified,
        } = delta;
        self.requests += requests;
        self.hits += hits;
        self.misses += misses;
        add_counts(&mut self.pass_through, pass_through);
        add_counts(&mut self.errors, errors);
        add_counts(&mut self.not_stored, not_stored);
        for (name, t) in tiers {
            self.tier(name).add(t);
        }
        self.remote_compiles += remote_compiles;
        add_counts(&mut self.remote_skipped, remote_skipped);
        self.remote_prepasses += remote_prepasses;
        self.remote_listings_reused += remote_listings_reused;
        self.remote_listings_guessed += remote_listings_guessed;
        self.remote_events_dropped += remote_events_dropped;
        self.bytes_restored += bytes_restored;
        self.bytes_stored += bytes_stored;
        self.time_saved_ms += time_saved_ms;
        self.build_script_runs.add(build_script_runs);
        self.c_compiles.add(c_compiles);
        add_counts(&mut self.verified, verified);
    }

    /// Counts one `kind` in `map` (one of the by-kind maps above).
    pub fn bump(map: &mut BTreeMap<String, u64>, kind: &dyn StatKind) {
        *map.entry(kind.name().to_owned()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_sccache() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(10 << 30), "10.0 GiB");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
    }

    use super::*;

    /// Two processes' counts added to the file give what applying their updates one by one
    /// gave (the file was written at every update before).
    #[test]
    fn added_deltas_equal_the_updates_they_hold() {
        let updates: [fn(&mut Stats); 3] = [
            |s| {
                s.requests += 1;
                s.hits += 1;
                s.tier("local").hits += 1;
                s.tier("local").time_ms += 3;
                s.c_compiles.remote += 1;
                Stats::bump(&mut s.errors, &ErrorKind::Spawn);
            },
            |s| {
                s.misses += 2;
                s.tier("s3").last_error = Some("refused".into());
                Stats::bump(&mut s.tier("s3").errors, &ErrorKind::Spawn);
                Stats::bump(&mut s.verified, &VerifyOutcome::Same);
                s.build_script_runs.stored += 1;
                Stats::bump(
                    &mut s.build_script_runs.remote_skipped,
                    &RemoteSkip::NoWorker,
                );
            },
            |s| {
                s.tier("local").misses += 1;
                Stats::bump(&mut s.errors, &ErrorKind::Spawn);
                s.time_saved_ms += 40;
            },
        ];
        let mut applied = Stats::default();
        let (mut first, mut second) = (Stats::default(), Stats::default());
        for (i, update) in updates.iter().enumerate() {
            update(&mut applied);
            update(if i == 1 { &mut second } else { &mut first });
        }
        let mut added = Stats::default();
        added.add(&first);
        added.add(&second);
        assert_eq!(added, applied);
    }

    #[test]
    fn concurrent_updates_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        Stats::update(&d, |s| s.hits += 1).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(Stats::load(dir.path()).hits, 200);
    }
}
