//! Where a miss compiles: locally or on the farm, decided per invocation by numbers the
//! wrapper processes share through the cache dir.
//!
//! - **Local slots** (`[dist] local_slots`, default: this machine's cores): a compile that
//!   finds a free slot runs here, so local cores never sit idle while jobs wait on the farm.
//!   `0` sends everything the farm can take to the farm (a thin client).
//!   cargo's `-j` bounds all compiles; with `-j` above the cores, the overflow is what the
//!   farm gets (`cargo build -j <cores + farm slots>`).
//! - **Is the farm worth it?** Each remote compile records what the remote path added over
//!   the worker's own compile time (pre-pass, uploads, queue wait, downloads): an overflow job
//!   goes to the farm only if that overhead is below the wait for a local slot (the average
//!   local compile over the number of slots). A slow or distant farm is thus skipped, not only
//!   a dead one; one job in [`PROBE_EVERY`] still goes, so a farm that recovers is noticed.
//! - **Before the first remote compile** the overhead is guessed from round trips
//!   ([`overhead_prior`]): the worker's to the server (in its heartbeat) and ours, so a first
//!   contact with a distant farm does not put a slow job on the build's critical path.
//! - **A queued job is taken back** when a local slot frees up before any worker started it
//!   ([`Placement::local_free`]): an overloaded farm costs no more than waiting for a slot.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use jetcc_common::config::FarmConfig;
use jetcc_common::fsutil::{with_lock, write_atomic};

use crate::compile::Compiled;

/// One overflow job in this many goes to the farm even when it looks slow.
pub const PROBE_EVERY: u64 = 16;
/// Weight of the newest sample in the running averages.
const ALPHA: f64 = 0.3;
/// A local compile's duration until one has been measured.
const DEFAULT_LOCAL_COMPILE_MS: f64 = 500.0;

/// What a remote compile is guessed to add before one has been measured: the round trips
/// it makes. A worker gets the job, asks whether its client still waits, fetches inputs
/// (metadata, then chunks) and puts outputs (chunks, then metadata), and reports done: about
/// six of its own round trips. The client publishes, checks for and uploads missing inputs
/// and fetches outputs: about four of its own. Costs that do not grow with distance are left
/// to the measured average.
pub fn overhead_prior(worker_rtt: Duration, client_rtt: Duration) -> f64 {
    (6.0 * worker_rtt.as_secs_f64() + 4.0 * client_rtt.as_secs_f64()) * 1000.0
}

/// A held local compile slot (an flock on `slots/<i>`), released on drop.
pub struct Slot(#[allow(dead_code)] File);

pub struct Placement {
    dir: PathBuf,
    slots: usize,
}

/// Running averages shared by all wrappers on this machine (`farm-perf.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Perf {
    /// What a remote compile adds over the worker's compile time, in ms.
    pub remote_overhead_ms: Option<f64>,
    /// A local compile's duration, in ms.
    pub local_compile_ms: Option<f64>,
    /// Overflow decisions so far (for probing).
    pub decisions: u64,
}

impl Placement {
    /// With a farm configured: `[dist] local_slots`, by default one per core.
    pub fn for_farm(cache_dir: &Path, farm: &FarmConfig) -> Placement {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Placement::new(cache_dir, farm.local_slots.unwrap_or(cores))
    }

    pub fn new(cache_dir: &Path, slots: usize) -> Placement {
        Placement {
            dir: cache_dir.to_path_buf(),
            slots,
        }
    }

    /// A free local slot, if any.
    pub fn try_slot(&self) -> Option<Slot> {
        (0..self.slots).find_map(|i| {
            let f = self.slot_file(i).ok()?;
            f.try_lock().ok().map(|()| Slot(f))
        })
    }

    /// Waits for a local slot (`local_slots = 0`: none are kept, so none is waited for).
    pub fn slot(&self) -> Option<Slot> {
        if self.slots == 0 {
            return None;
        }
        loop {
            if let Some(s) = self.try_slot() {
                return Some(s);
            }
            if self.slot_file(0).is_err() {
                return None; // cannot lock at all (read-only cache dir): do not wait
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn slot_file(&self, i: usize) -> std::io::Result<File> {
        let path = self.dir.join("slots").join(i.to_string());
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .or_else(|_| {
                std::fs::create_dir_all(path.parent().expect("has a parent"))?;
                File::options().create(true).append(true).open(&path)
            })
    }

    /// A local slot is free now (it is not kept: the caller takes one with [`Placement::slot`]).
    pub fn local_free(&self) -> bool {
        self.try_slot().is_some()
    }

    /// Whether an overflow job (no local slot free) should go to the farm: its overhead (the
    /// measured average, else `prior_ms`) is below the wait for a local slot.
    pub fn farm_is_worth_it(&self, prior_ms: f64) -> bool {
        if self.slots == 0 {
            return true; // a thin client: there is no local slot to wait for
        }
        let mut go = true;
        let _ = self.update(|p| {
            p.decisions += 1;
            let overhead = p.remote_overhead_ms.unwrap_or(prior_ms);
            let local = p.local_compile_ms.unwrap_or(DEFAULT_LOCAL_COMPILE_MS);
            go = overhead <= local / self.slots.max(1) as f64 || p.decisions % PROBE_EVERY == 0;
        });
        go
    }

    pub fn record_remote(&self, total: Duration, worker_compile: Duration) {
        let overhead = total.saturating_sub(worker_compile).as_secs_f64() * 1000.0;
        let _ = self.update(|p| p.remote_overhead_ms = Some(ewma(p.remote_overhead_ms, overhead)));
    }

    pub fn record_local(&self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let _ = self.update(|p| p.local_compile_ms = Some(ewma(p.local_compile_ms, ms)));
    }

    pub fn perf(&self) -> Perf {
        std::fs::read(self.dir.join("farm-perf.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Perf)) -> std::io::Result<()> {
        with_lock(&self.dir.join("farm-perf.lock"), || {
            let mut p = self.perf();
            f(&mut p);
            write_atomic(
                &self.dir.join("farm-perf.json"),
                &serde_json::to_vec(&p).expect("perf serializes"),
            )
        })
    }
}

/// Runs a miss where it finishes soonest: a free local slot compiles here; the overflow goes
/// to the farm (`remote`, if the compile is `distributable`) when it is healthy and fast
/// enough, else waits for a local slot. Without a farm, `local` runs at once. Returns the
/// compile and whether it ran on the farm.
pub fn compile_placed(
    farm: Option<&FarmConfig>,
    cache_dir: &Path,
    distributable: bool,
    remote: impl FnOnce(&Placement) -> Option<Compiled>,
    local: impl FnOnce() -> std::io::Result<Compiled>,
) -> std::io::Result<(Compiled, bool)> {
    let placement = farm.map(|farm| Placement::for_farm(cache_dir, farm));
    let mut slot = placement.as_ref().and_then(Placement::try_slot);
    if let (Some(pl), None, true) = (&placement, &slot, distributable) {
        if let Some(compiled) = remote(pl) {
            return Ok((compiled, true));
        }
    }
    if slot.is_none() {
        slot = placement.as_ref().and_then(Placement::slot);
    }
    let compiled = local()?;
    if let Some(pl) = &placement {
        pl.record_local(compiled.duration);
    }
    drop(slot);
    Ok((compiled, false))
}

fn ewma(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(o) => o * (1.0 - ALPHA) + sample * ALPHA,
        None => sample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let p = Placement::new(dir.path(), 2);
        let a = p.try_slot().expect("first slot");
        let b = p.try_slot().expect("second slot");
        assert!(p.try_slot().is_none(), "only two");
        drop(a);
        assert!(p.try_slot().is_some(), "released on drop");
        drop(b);
    }

    #[test]
    fn a_slow_farm_is_skipped_but_probed() {
        let dir = tempfile::tempdir().unwrap();
        let p = Placement::new(dir.path(), 2);
        let near = overhead_prior(Duration::from_micros(100), Duration::from_micros(100));
        assert!(p.farm_is_worth_it(near), "no numbers, a near farm: try it");
        p.record_local(Duration::from_millis(400));
        p.record_remote(Duration::from_millis(450), Duration::from_millis(400));
        assert!(p.farm_is_worth_it(near), "50 ms overhead < 200 ms wait");
        for _ in 0..10 {
            p.record_remote(Duration::from_millis(3400), Duration::from_millis(400));
        }
        let sent = (0..PROBE_EVERY * 2)
            .filter(|_| p.farm_is_worth_it(near))
            .count();
        assert_eq!(sent, 2, "only the probes go to a slow farm");
    }

    #[test]
    fn a_distant_farm_is_skipped_before_the_first_job() {
        let dir = tempfile::tempdir().unwrap();
        let p = Placement::new(dir.path(), 2);
        // A worker 400 ms away: six of its round trips dwarf a local slot's wait.
        let far = overhead_prior(Duration::from_millis(400), Duration::from_micros(100));
        assert!(far > 2000.0, "{far}");
        let sent = (0..PROBE_EVERY - 1)
            .filter(|_| p.farm_is_worth_it(far))
            .count();
        assert_eq!(sent, 0, "not sent until the probe");
        assert!(p.farm_is_worth_it(far), "the probe goes");
        let p = Placement::new(dir.path(), 2);
        let _ = p.local_free();
        let held = (p.try_slot(), p.try_slot());
        assert!(!p.local_free(), "both slots held");
        drop(held);
        assert!(p.local_free(), "free again");
    }
}
