//! Where a miss compiles: locally or on the farm, decided per invocation by what the
//! wrapper processes of this machine share through the cache dir.
//!
//! - **Local slots** (`[dist] local_slots`, default: this machine's cores): a compile that
//!   finds a free slot runs here, so local cores never sit idle while jobs wait on the farm.
//!   `0` sends everything the farm can take to the farm (a thin client).
//!   cargo's `-j` bounds all compiles; with `-j` above the cores, the overflow is what the
//!   farm gets (`cargo build -j <cores + farm slots>`).
//! - **Where does the overflow finish first?** ([`decide`]) Each unit's compile times here
//!   and on a worker and its remote overhead are remembered ([`history`]); each compile says
//!   on a board where it is and when it is expected to end ([`slots`]). An overflow job goes
//!   to the farm if its expected finish there (overhead + queue wait + worker compile) is
//!   before its expected finish here (when a local slot frees + local compile). Unknown units
//!   use the machine's running averages (`farm-perf.json`). A slow or busy farm is thus
//!   skipped; one job in [`PROBE_EVERY`] still goes, so a farm that recovers is noticed.
//! - **Before the first remote compile** the overhead is guessed from round trips
//!   ([`overhead_prior`]): the worker's to the server (in its heartbeat) and ours, so a first
//!   contact with a distant farm does not put a slow job on the build's critical path.
//! - **A queued job is taken back** when a local slot frees up before any worker started it
//!   ([`Placement::local_free`]): an overloaded farm costs no more than waiting for a slot.
//!   How long jobs waited beyond what this machine's own jobs explain is learned as the
//!   queue wait of other clients' jobs. A job sent behind others is given the wait its
//!   decision expected ([`Placement::expected_wait`]) before it is taken back for want of
//!   a worker.
//! - **And the other way:** an overflow job waiting for a local slot is sent after all when
//!   the farm frees up first ([`Placement::farm_now_sooner`]): a worker does not sit idle
//!   while compiles queue here.

pub mod decide;
pub mod history;
pub mod slots;

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use jetcc_common::config::FarmConfig;
use jetcc_common::fsutil::SharedFile;

use crate::compile::Compiled;
use decide::{Cost, Outlook};
use history::{History, Unit, UnitRecord};
use slots::{now_ms, Board, Slots, Where};

pub use history::unit_of_rustc;
pub use slots::Slot;

/// One overflow job in this many goes to the farm even when it looks slow.
pub const PROBE_EVERY: u64 = 16;
/// The most a job's start wait grows by the queue wait its placement expected.
const MAX_EXPECTED_WAIT: Duration = Duration::from_secs(120);
/// Weight of the newest sample in the running averages.
const ALPHA: f64 = 0.3;
/// How many recent remote overheads the machine-wide one is the median of.
const RECENT_OVERHEADS: usize = 9;
/// A local compile's duration until one has been measured.
const DEFAULT_LOCAL_COMPILE_MS: f64 = 500.0;
/// A unit known to take at least this long here may pass over a free local slot for an idle
/// farm ([`Placement::long_and_sooner_there`]); a short one's estimates are noise.
const LONG_UNIT_MS: f64 = 2000.0;
/// ... when the farm is expected to finish it in at most this share of its time here.
const SOONER_THERE: f64 = 0.9;

/// What a remote compile is guessed to add before one has been measured: the round trips
/// it makes. A worker gets the job, asks whether its client still waits, fetches inputs
/// (metadata, then chunks) and puts outputs (chunks, then metadata), and reports done: about
/// six of its own round trips. The client publishes, checks for and uploads missing inputs
/// and fetches outputs: about four of its own. Costs that do not grow with distance are left
/// to the measured average.
pub fn overhead_prior(worker_rtt: Duration, client_rtt: Duration) -> f64 {
    (6.0 * worker_rtt.as_secs_f64() + 4.0 * client_rtt.as_secs_f64()) * 1000.0
}

/// The placement of one compile (a wrapper process compiles one).
pub struct Placement {
    /// `farm-perf.json`: the machine's running averages ([`Perf`]).
    perf: SharedFile,
    slots: Slots,
    board: Board,
    history: History,
    unit: Option<Unit>,
    record: OnceLock<UnitRecord>,
    /// The queue wait the last decision to send assumed (for learning others' share).
    assumed_wait_ms: Mutex<f64>,
    /// The queue wait the last decision to send expected, others' jobs included.
    expected_wait_ms: Mutex<f64>,
    /// How long our job waited for a worker (`None`: not seen start, e.g. a followed job).
    queued: Mutex<Option<Duration>>,
    /// A queue wait beyond ours not yet in `farm-perf.json`: written with the next update,
    /// not when the job starts, where its client's answer to the worker waits behind it.
    extra_wait_sample: Mutex<Option<f64>>,
}

/// An overflow job's first placement check, or one more while it waits for a local slot.
#[derive(Clone, Copy)]
enum Check {
    First { probe: bool },
    Again,
}

/// Running averages shared by all wrappers on this machine (`farm-perf.json`): what an
/// unknown unit is guessed to cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Perf {
    /// What a remote compile adds over the worker's compile time and its queue wait, in ms:
    /// the median of [`Perf::remote_overheads_ms`].
    pub remote_overhead_ms: Option<f64>,
    /// The last [`RECENT_OVERHEADS`] remote overheads, newest last. A median, not a running
    /// average: one job that uploaded a big crate built here (seconds) must not make the farm
    /// look slow to every unit that has no history of its own (measured on the split rig:
    /// the average swung from 0.1 s to 1.3 s within one cold build, and the units kept here
    /// as "farm slower" from 8 to 45).
    pub remote_overheads_ms: Vec<f64>,
    /// A local compile's duration, in ms.
    pub local_compile_ms: Option<f64>,
    /// How much longer jobs waited in the queue than this machine's own jobs explain (other
    /// clients' jobs), in ms.
    pub extra_wait_ms: Option<f64>,
    /// Overflow decisions so far (for probing).
    pub decisions: u64,
}

impl Placement {
    /// With a farm configured: `[dist] local_slots`, by default one per core. `unit`: what
    /// is compiled, for its history (`None`: unknown, the averages stand for it).
    pub fn for_farm(cache_dir: &Path, farm: &FarmConfig, unit: Option<Unit>) -> Placement {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Placement::new(cache_dir, farm.local_slots.unwrap_or(cores), unit)
    }

    pub fn new(cache_dir: &Path, slots: usize, unit: Option<Unit>) -> Placement {
        Placement {
            perf: SharedFile::new(
                cache_dir.join("farm-perf.json"),
                cache_dir.join("farm-perf.lock"),
            ),
            slots: Slots::new(cache_dir, slots),
            board: Board::new(cache_dir),
            history: History::new(cache_dir),
            unit,
            record: OnceLock::new(),
            assumed_wait_ms: Mutex::new(0.0),
            expected_wait_ms: Mutex::new(0.0),
            queued: Mutex::new(None),
            extra_wait_sample: Mutex::new(None),
        }
    }

    /// A free local slot, if any.
    pub fn try_slot(&self) -> Option<Slot> {
        self.slots.try_take()
    }

    /// Waits for a local slot (`local_slots = 0`: none are kept, so none is waited for).
    pub fn slot(&self) -> Option<Slot> {
        self.slots.take()
    }

    /// A local slot is free now (it is not kept: the caller takes one with [`Placement::slot`]).
    pub fn local_free(&self) -> bool {
        self.try_slot().is_some()
    }

    /// This unit's history, read once: a waiting compile checks its placement every few ms.
    fn record(&self) -> UnitRecord {
        *self.record.get_or_init(|| {
            self.unit
                .as_ref()
                .and_then(|u| self.history.get(u))
                .unwrap_or_default()
        })
    }

    /// This unit's expected cost, from its history, else the averages (`prior_ms`: the
    /// overhead guessed before any was measured).
    fn cost(r: &UnitRecord, perf: &Perf, prior_ms: f64) -> Cost {
        let avg_local = perf.local_compile_ms.unwrap_or(DEFAULT_LOCAL_COMPILE_MS);
        let local_ms = r.local_ms.or(r.worker_ms).unwrap_or(avg_local);
        Cost {
            local_ms,
            worker_ms: r.worker_ms.unwrap_or(local_ms),
            overhead_ms: r
                .overhead_ms
                .or(perf.remote_overhead_ms)
                .unwrap_or(prior_ms),
        }
    }

    /// With a local slot free: whether this unit is known to be long and to finish sooner on
    /// the farm, none of this machine's jobs there now, than here (its compiles here ran
    /// slower than on a worker: this machine's CPUs are shared with the build's other work).
    /// It then goes to the farm and the slot takes the next compile: the long pole runs where
    /// it is done first, and a short compile does not wait behind it (measured on the split
    /// rig: jemalloc.c, 43 s here and 34 s on the worker, held the client's one slot while
    /// the worker ran the short ones).
    pub fn long_and_sooner_there(&self) -> bool {
        let record = self.record();
        let (Some(local_ms), Some(worker_ms)) = (record.local_ms, record.worker_ms) else {
            return false;
        };
        if local_ms < LONG_UNIT_MS {
            return false;
        }
        let perf = self.perf();
        let Some(overhead_ms) = record.overhead_ms.or(perf.remote_overhead_ms) else {
            return false;
        };
        let farm_ms = overhead_ms + perf.extra_wait_ms.unwrap_or(0.0) + worker_ms;
        farm_ms <= SOONER_THERE * local_ms
            && !self.board.others().iter().any(|o| o.at == Where::Farm)
    }

    /// Says on the board that this compile is in `at` now.
    fn mark(&self, at: Where) {
        let c = Placement::cost(&self.record(), &self.perf(), 0.0);
        let expected = match at {
            Where::Farm => c.worker_ms,
            Where::Local | Where::Waiting => c.local_ms,
        };
        self.board.mark(at, expected);
    }

    /// Whether an overflow job (no local slot free) is expected to finish sooner on the farm
    /// (see [`decide`]), with `farm_slots` the serving worker's slots and `prior_ms` the
    /// overhead guessed from round trips. If so, it is marked as on the farm.
    pub fn farm_is_sooner(&self, prior_ms: f64, farm_slots: u32) -> bool {
        if self.slots.count() == 0 {
            self.mark(Where::Farm);
            return true; // a thin client: there is no local slot to wait for
        }
        let mut perf = Perf::default();
        let _ = self.update(|p| {
            p.decisions += 1;
            perf = p.clone();
        });
        let probe = perf.decisions % PROBE_EVERY == 0;
        self.choose(&perf, prior_ms, farm_slots, Check::First { probe })
    }

    /// [`Placement::farm_is_sooner`] again for an overflow job that waits for a local slot,
    /// as the board changes (one of our jobs on the farm ended, a slot's compile ran long):
    /// not counted as a decision, never a probe.
    pub fn farm_now_sooner(&self, prior_ms: f64, farm_slots: u32) -> bool {
        self.choose(&self.perf(), prior_ms, farm_slots, Check::Again)
    }

    /// This compile waits for a local slot (said on the board, for others' decisions).
    pub fn waiting(&self) {
        self.mark(Where::Waiting);
    }

    fn choose(&self, perf: &Perf, prior_ms: f64, farm_slots: u32, check: Check) -> bool {
        let record = self.record();
        let cost = Placement::cost(&record, perf, prior_ms);
        let now = now_ms();
        let mut outlook = Outlook {
            local_slots: self.slots.count(),
            farm_slots: farm_slots.max(1) as usize,
            farm_extra_wait: perf.extra_wait_ms.unwrap_or(0.0),
            ..Outlook::default()
        };
        for other in self.board.others() {
            let left = other.remaining_ms(now);
            match other.at {
                Where::Local => outlook.local_running.push(left),
                Where::Waiting => outlook.local_waiting.push(left),
                Where::Farm => outlook.farm_jobs.push(left),
            }
        }
        // Slots held by nobody on the board (an older jetcc, a board that could not be
        // written): half an average compile left in each.
        if outlook.local_running.is_empty() {
            let avg_local = perf.local_compile_ms.unwrap_or(DEFAULT_LOCAL_COMPILE_MS);
            outlook.local_running = vec![avg_local / 2.0; self.slots.count()];
        }
        let choice = decide::choose(&outlook, &cost);
        let probe = matches!(check, Check::First { probe: true });
        let go = choice.to_farm || probe;
        if matches!(check, Check::Again) && !go {
            return false; // checked every few ms while waiting: only a change is news
        }
        tracing::debug!(
            local_finish_ms = choice.local_finish_ms as u64,
            farm_finish_ms = choice.farm_finish_ms as u64,
            farm_wait_ms = choice.farm_wait_ms as u64,
            known = record != UnitRecord::default(),
            to_farm = choice.to_farm,
            probe,
            again = matches!(check, Check::Again),
            "overflow placement"
        );
        if go {
            *self
                .assumed_wait_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = choice.farm_wait_ms - outlook.farm_extra_wait;
            *self
                .expected_wait_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = choice.farm_wait_ms;
            self.board.mark(Where::Farm, cost.worker_ms);
        }
        go
    }

    /// How long the job sent is expected to wait in the farm's queue (`ZERO` with no local
    /// slot: a thin client has nothing to wait on instead, so it does not wait longer). A job
    /// is given this long beyond `[dist] start_timeout_ms` before its client concludes no
    /// worker takes it: sent behind a long job on purpose, it would otherwise come back to
    /// wait for a local slot it was sent to avoid (a local slot that frees first still takes
    /// it back at once).
    pub fn expected_wait(&self) -> Duration {
        if self.slots.count() == 0 {
            return Duration::ZERO;
        }
        let ms = *self
            .expected_wait_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Duration::from_secs_f64((ms.max(0.0) / 1000.0).min(MAX_EXPECTED_WAIT.as_secs_f64()))
    }

    /// A job of ours waited `waited` in the farm's queue (until a worker started it, or until
    /// it was taken back): what this machine's own jobs do not explain is other clients'.
    /// Kept until this compile's result is recorded (one write, after the job).
    pub fn record_queued(&self, waited: Duration) {
        *self.queued.lock().unwrap_or_else(|e| e.into_inner()) = Some(waited);
        let assumed = *self
            .assumed_wait_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let extra = (waited.as_secs_f64() * 1000.0 - assumed).max(0.0);
        *self
            .extra_wait_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(extra);
    }

    /// A remote compile took `total`, of which `worker_compile` was rustc on the worker and
    /// the queue wait [`Placement::record_queued`] saw (the overhead of a followed identical
    /// job, whose start we did not see, is not known).
    pub fn record_remote(&self, total: Duration, worker_compile: Duration) {
        let queued = *self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let overhead = queued.map(|q| total.saturating_sub(worker_compile).saturating_sub(q));
        if let Some(unit) = &self.unit {
            self.history.record_remote(unit, worker_compile, overhead);
        }
        if let Some(o) = overhead {
            let ms = o.as_secs_f64() * 1000.0;
            let _ = self.update(|p| {
                p.remote_overheads_ms.push(ms);
                let excess = p.remote_overheads_ms.len().saturating_sub(RECENT_OVERHEADS);
                p.remote_overheads_ms.drain(..excess);
                p.remote_overhead_ms = median(&p.remote_overheads_ms);
            });
        }
    }

    pub fn record_local(&self, took: Duration) {
        if let Some(unit) = &self.unit {
            self.history.record_local(unit, took);
        }
        let ms = took.as_secs_f64() * 1000.0;
        let _ = self.update(|p| p.local_compile_ms = Some(ewma(p.local_compile_ms, ms, ALPHA)));
    }

    pub fn perf(&self) -> Perf {
        Perf::parse(self.perf.read().as_deref())
    }

    fn update(&self, f: impl FnOnce(&mut Perf)) -> std::io::Result<()> {
        let extra_wait = self
            .extra_wait_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.perf.update(|old| {
            let mut p = Perf::parse(old);
            if let Some(extra) = extra_wait {
                p.extra_wait_ms = Some(ewma(p.extra_wait_ms, extra, ALPHA));
            }
            f(&mut p);
            (serde_json::to_vec(&p).expect("perf serializes"), ())
        })
    }
}

impl Perf {
    /// Missing or unreadable: nothing known yet.
    fn parse(bytes: Option<&[u8]>) -> Perf {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }
}

/// Runs a miss where it finishes soonest: a free local slot compiles here; the overflow goes
/// to the farm (`remote`, if the compile is `distributable`) when it is expected to finish
/// sooner there, else waits for a local slot. Without a farm, `local` runs at once. `unit`:
/// the compile's placement unit (its history). Returns the compile and whether it ran on
/// the farm.
pub fn compile_placed(
    farm: Option<&FarmConfig>,
    cache_dir: &Path,
    unit: Option<Unit>,
    distributable: bool,
    remote: impl FnOnce(&Placement) -> Option<Compiled>,
    local: impl FnOnce() -> std::io::Result<Compiled>,
) -> std::io::Result<(Compiled, bool)> {
    let placement = farm.map(|farm| Placement::for_farm(cache_dir, farm, unit));
    let mut slot = placement.as_ref().and_then(Placement::try_slot);
    if let (Some(pl), Some(_), true) = (&placement, &slot, distributable) {
        if pl.long_and_sooner_there() {
            slot = None; // free again: the next compile takes it
        }
    }
    if let (Some(pl), None, true) = (&placement, &slot, distributable) {
        if let Some(compiled) = remote(pl) {
            return Ok((compiled, true));
        }
    }
    if let (Some(pl), None) = (&placement, &slot) {
        pl.mark(Where::Waiting);
        slot = pl.slot();
    }
    if let (Some(pl), Some(_)) = (&placement, &slot) {
        pl.mark(Where::Local);
    }
    let compiled = local()?;
    if let Some(pl) = &placement {
        pl.record_local(compiled.duration);
        pl.board.clear();
    }
    drop(slot);
    Ok((compiled, false))
}

/// The median of `samples` (the mean of the middle two of an even count).
fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// A running average: the newest sample weighs `alpha`.
pub(super) fn ewma(old: Option<f64>, sample: f64, alpha: f64) -> f64 {
    match old {
        Some(o) => o * (1.0 - alpha) + sample * alpha,
        None => sample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Another process's entry on the board: at `at`, expected to take `expected_ms` from
    /// now; it stays while the returned file (its lock) is held.
    fn board_entry(dir: &Path, at: Where, expected_ms: f64) -> std::fs::File {
        let path = dir.join(format!("placed/{at:?}-{expected_ms}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&path).unwrap();
        f.try_lock().unwrap();
        let placed = slots::Placed {
            at,
            since_ms: now_ms(),
            expected_ms,
        };
        std::fs::write(&path, serde_json::to_vec(&placed).unwrap()).unwrap();
        f
    }

    /// How many of `PROBE_EVERY * 2` overflow decisions send to the farm.
    fn sent_of_two_rounds(p: &Placement, overhead_prior_ms: f64) -> usize {
        (0..PROBE_EVERY * 2)
            .filter(|_| p.farm_is_sooner(overhead_prior_ms, 1))
            .count()
    }

    #[test]
    fn one_slow_upload_does_not_make_the_farm_look_slow() {
        let dir = tempfile::tempdir().unwrap();
        let p = Placement::new(dir.path(), 2, None);
        let held = (p.try_slot(), p.try_slot());
        let near = overhead_prior(Duration::from_micros(100), Duration::from_micros(100));
        p.record_local(Duration::from_millis(400));
        p.record_queued(Duration::ZERO);
        for _ in 0..4 {
            p.record_remote(Duration::from_millis(450), Duration::from_millis(400));
        }
        // A job that first uploaded a big crate compiled here.
        p.record_remote(Duration::from_millis(3400), Duration::from_millis(400));
        assert!(p.farm_is_sooner(near, 1), "{:?}", p.perf());
        // A farm that stays slow is seen as slow.
        for _ in 0..5 {
            p.record_remote(Duration::from_millis(3400), Duration::from_millis(400));
        }
        assert_eq!(
            sent_of_two_rounds(&p, near),
            2,
            "only the probes go to a slow farm"
        );
        drop(held);
    }

    #[test]
    fn a_slow_farm_is_skipped_but_probed() {
        let dir = tempfile::tempdir().unwrap();
        let p = Placement::new(dir.path(), 2, None);
        let held = (p.try_slot(), p.try_slot());
        let near = overhead_prior(Duration::from_micros(100), Duration::from_micros(100));
        assert!(p.farm_is_sooner(near, 1), "no numbers, a near farm: try it");
        p.record_local(Duration::from_millis(400));
        p.record_queued(Duration::ZERO);
        p.record_remote(Duration::from_millis(450), Duration::from_millis(400));
        assert!(p.farm_is_sooner(near, 1), "50 ms overhead < 200 ms wait");
        for _ in 0..10 {
            p.record_remote(Duration::from_millis(3400), Duration::from_millis(400));
        }
        assert_eq!(
            sent_of_two_rounds(&p, near),
            2,
            "only the probes go to a slow farm"
        );
        drop(held);
    }

    #[test]
    fn a_distant_farm_is_skipped_before_the_first_job() {
        let dir = tempfile::tempdir().unwrap();
        let p = Placement::new(dir.path(), 2, None);
        let held = (p.try_slot(), p.try_slot());
        // A worker 400 ms away: six of its round trips dwarf a local slot's wait.
        let far = overhead_prior(Duration::from_millis(400), Duration::from_micros(100));
        assert!(far > 2000.0, "{far}");
        let sent = (0..PROBE_EVERY - 1)
            .filter(|_| p.farm_is_sooner(far, 1))
            .count();
        assert_eq!(sent, 0, "not sent until the probe");
        assert!(p.farm_is_sooner(far, 1), "the probe goes");
        assert!(!p.local_free(), "both slots held");
        drop(held);
        assert!(p.local_free(), "free again");
    }

    /// A job sent behind another on the farm is given the wait its decision expected
    /// before its client gives up on it; a thin client's jobs are not.
    #[test]
    fn a_job_sent_behind_another_expects_to_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let long = jetcc_common::Digest::of_bytes(b"long");
        let p = Placement::new(dir.path(), 1, Some(long));
        p.record_local(Duration::from_millis(20_000));
        let slot = p.try_slot().unwrap();
        assert_eq!(p.expected_wait(), Duration::ZERO, "no decision yet");
        // Another job of this machine holds the farm's one slot for ~3 s more.
        let f = board_entry(dir.path(), Where::Farm, 3000.0);
        assert!(
            p.farm_is_sooner(1.0, 1),
            "20 s here vs ~3 s + 20 s there, local busy"
        );
        let wait = p.expected_wait();
        assert!(
            (Duration::from_millis(2500)..=Duration::from_millis(3000)).contains(&wait),
            "{wait:?}"
        );
        let thin = Placement::new(dir.path(), 0, Some(long));
        assert!(thin.farm_is_sooner(1.0, 1));
        assert_eq!(thin.expected_wait(), Duration::ZERO);
        drop((slot, f));
    }

    /// An overflow job that chose to wait for the local slot goes to the farm once the farm's
    /// slot frees up first; the re-checks are not decisions (no probe, no count).
    #[test]
    fn a_waiting_job_goes_to_the_farm_when_it_frees_up_first() {
        let dir = tempfile::tempdir().unwrap();
        let unit = jetcc_common::Digest::of_bytes(b"unit");
        let p = Placement::new(dir.path(), 1, Some(unit));
        p.record_local(Duration::from_millis(2000));
        let slot = p.try_slot().unwrap();
        // The local slot frees in ~3 s; the farm's one slot is ours for ~60 s more.
        let local = board_entry(dir.path(), Where::Local, 3000.0);
        let farm = board_entry(dir.path(), Where::Farm, 60_000.0);
        assert!(!p.farm_is_sooner(1.0, 1), "wait for the local slot");
        let decisions = p.perf().decisions;
        for _ in 0..(PROBE_EVERY * 2) {
            assert!(
                !p.farm_now_sooner(1.0, 1),
                "still sooner here, and never a probe"
            );
        }
        assert_eq!(p.perf().decisions, decisions, "re-checks are not counted");
        drop(farm); // that job ended: its board entry is gone
        assert!(
            p.farm_now_sooner(1.0, 1),
            "the farm is free now: ~2 s there vs ~5 s here"
        );
        drop((local, slot));
    }

    /// A unit known to be long and faster on a worker passes over a free local slot while
    /// the farm is idle; not a short one, an unknown one, or while the farm runs ours.
    #[test]
    fn a_long_unit_faster_there_passes_over_a_free_slot_for_an_idle_farm() {
        let dir = tempfile::tempdir().unwrap();
        let at =
            |name: &[u8]| Placement::new(dir.path(), 1, Some(jetcc_common::Digest::of_bytes(name)));
        let long = at(b"long");
        assert!(!long.long_and_sooner_there(), "unknown: the free slot");
        long.record_local(Duration::from_millis(40_000));
        assert!(
            !long.long_and_sooner_there(),
            "never on the farm: the free slot"
        );
        long.record_queued(Duration::ZERO);
        long.record_remote(Duration::from_millis(30_100), Duration::from_millis(30_000));
        let long = at(b"long"); // a later compile of it reads the history afresh
        assert!(long.long_and_sooner_there(), "30.1 s there vs 40 s here");
        let even = at(b"even");
        even.record_local(Duration::from_millis(31_000));
        even.record_queued(Duration::ZERO);
        even.record_remote(Duration::from_millis(30_100), Duration::from_millis(30_000));
        assert!(!at(b"even").long_and_sooner_there(), "about as fast here");
        let short = at(b"short");
        short.record_local(Duration::from_millis(1000));
        short.record_queued(Duration::ZERO);
        short.record_remote(Duration::from_millis(300), Duration::from_millis(250));
        assert!(
            !at(b"short").long_and_sooner_there(),
            "short: not worth a guess"
        );
        let f = board_entry(dir.path(), Where::Farm, 5000.0);
        assert!(
            !at(b"long").long_and_sooner_there(),
            "the farm runs one of ours"
        );
        drop(f);
        assert!(at(b"long").long_and_sooner_there());
    }

    /// Two units both overflowing one busy local slot, with a 1-slot farm: the one known to
    /// be long goes to the farm, and the known-short one that comes next stays local.
    #[test]
    fn history_sends_the_long_unit_and_keeps_the_short_one() {
        let dir = tempfile::tempdir().unwrap();
        let (long, short, busy) = (
            jetcc_common::Digest::of_bytes(b"long"),
            jetcc_common::Digest::of_bytes(b"short"),
            jetcc_common::Digest::of_bytes(b"busy"),
        );
        let at = |u| Placement::new(dir.path(), 1, Some(u));
        at(long).record_local(Duration::from_millis(3000));
        at(short).record_local(Duration::from_millis(100));
        let b = at(busy);
        b.record_local(Duration::from_millis(1000));
        b.record_queued(Duration::ZERO);
        b.record_remote(Duration::from_millis(1040), Duration::from_millis(1000));
        // The busy unit holds the slot (another process's board entry).
        let f = board_entry(dir.path(), Where::Local, 1000.0);
        let slot = Slots::new(dir.path(), 1).try_take().unwrap();

        let p_long = at(long);
        assert!(
            p_long.farm_is_sooner(1.0, 1),
            "3 s unit: farm now vs 1 s + 3 s"
        );
        // While the long unit is on the farm (its board entry lives with `p_long`):
        let p_short = at(short);
        assert!(
            !p_short.farm_is_sooner(1.0, 1),
            "100 ms unit: behind 3 s on the farm"
        );
        // Once the farm is idle again, the short unit would go too (1 s wait here).
        drop(p_long);
        assert!(p_short.farm_is_sooner(1.0, 1));
        drop((slot, f));
    }
}
