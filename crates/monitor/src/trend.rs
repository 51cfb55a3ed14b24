//! The live view's trends: one [`Sample`] per second for the last [`WINDOW`] seconds (farm
//! jobs finished, rustc lookups and hits, compiles local and remote, jobs queued), kept in a
//! bounded ring, and what the view reads from it: a [`Metric`]'s series, its value now and
//! its maximum over the window ([`Summary`]).
//!
//! Time is cut into whole seconds since the trend started. A second in which nothing
//! happened is a sample too (no jobs, no lookups), so a rate over a quiet gap falls instead of
//! keeping its last value; a second without lookups has no hit rate at all (not 0 %). The
//! queue is a gauge read every `--every`: each sample holds the last value read until the next
//! read, and a failed read holds "unknown".

use std::collections::VecDeque;
use std::time::Instant;

use jetcc_common::protocol::events::{CompiledOn, UnitEvent, UnitKind, UnitOutcome};

/// Seconds kept: five minutes.
pub const WINDOW: usize = 300;
/// Seconds a rate "now" is averaged over (complete seconds only).
pub const RECENT: usize = 10;

/// What happened in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Farm jobs finished (ok or failed).
    pub jobs: u64,
    /// rustc invocations looked up (hit or miss; pass-throughs are not lookups).
    pub lookups: u64,
    pub hits: u64,
    /// rustc misses compiled here and on the farm.
    pub local: u64,
    pub remote: u64,
    /// Jobs waiting for a worker, as last read; `None` before the first read or after a
    /// failed one.
    pub queued: Option<u64>,
}

/// A series the view draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Farm jobs finished per second.
    Jobs,
    /// Hits per lookup, in percent.
    HitRate,
    /// Jobs waiting for a worker.
    Queued,
    /// rustc misses compiled locally per second (the farm was busy, slow or skipped).
    Local,
    /// rustc misses compiled on the farm per second.
    Remote,
}

impl Metric {
    /// The sample's value; `None` where there is none (no lookups, queue unknown).
    pub fn value(self, s: &Sample) -> Option<u64> {
        match self {
            Metric::Jobs => Some(s.jobs),
            Metric::HitRate => percent(s.hits, s.lookups),
            Metric::Queued => s.queued,
            Metric::Local => Some(s.local),
            Metric::Remote => Some(s.remote),
        }
    }

    /// A rate per second (averaged for "now"), not a gauge or a ratio.
    fn is_rate(self) -> bool {
        matches!(self, Metric::Jobs | Metric::Local | Metric::Remote)
    }
}

/// A metric's value now and its maximum over the kept window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Rates: per second over the last [`RECENT`] complete seconds; the hit rate: hits per
    /// lookup in those seconds (percent); the queue: the last value read.
    pub now: Option<f64>,
    /// The largest sample in the window.
    pub max: Option<u64>,
}

/// The last [`WINDOW`] seconds, oldest first.
#[derive(Debug, Clone)]
pub struct Trend {
    start: Instant,
    /// Seconds since `start` of the newest sample.
    newest: u64,
    samples: VecDeque<Sample>,
    /// The queue's last read value, held by the samples that follow it.
    queued: Option<u64>,
}

impl Default for Trend {
    fn default() -> Trend {
        Trend::new(Instant::now())
    }
}

impl Trend {
    pub fn new(start: Instant) -> Trend {
        Trend {
            start,
            newest: 0,
            samples: VecDeque::with_capacity(WINDOW),
            queued: None,
        }
    }

    /// Moves the newest sample up to `now` (quiet seconds in between become empty samples,
    /// the oldest ones beyond [`WINDOW`] are dropped) and returns it. An instant before the
    /// newest sample (an event that waited for the lock) counts in the newest one.
    pub fn advance(&mut self, now: Instant) -> &mut Sample {
        let second = now.saturating_duration_since(self.start).as_secs();
        let quiet = Sample {
            queued: self.queued,
            ..Sample::default()
        };
        if self.samples.is_empty() {
            self.samples.push_back(quiet);
            self.newest = second;
        } else if second > self.newest {
            // A gap longer than the window leaves a window of quiet seconds.
            let gap = (second - self.newest).min(WINDOW as u64);
            for _ in 0..gap {
                if self.samples.len() == WINDOW {
                    self.samples.pop_front();
                }
                self.samples.push_back(quiet);
            }
            self.newest = second;
        }
        self.samples.back_mut().expect("a sample was just pushed")
    }

    /// A farm job finished.
    pub fn job_finished(&mut self, now: Instant) {
        self.advance(now).jobs += 1;
    }

    /// A wrapper's event: rustc lookups, hits and compiles (build-script runs and C compiles
    /// are not in the hit rate, as in the tally's).
    pub fn unit(&mut self, e: &UnitEvent, now: Instant) {
        if e.kind != UnitKind::Rustc {
            return;
        }
        let s = self.advance(now);
        match e.outcome {
            UnitOutcome::Hit => {
                s.lookups += 1;
                s.hits += 1;
            }
            UnitOutcome::Miss => s.lookups += 1,
            UnitOutcome::PassThrough => {}
        }
        match e.compiled {
            Some(CompiledOn::Local) => s.local += 1,
            Some(CompiledOn::Remote) => s.remote += 1,
            None => {}
        }
    }

    /// The queue was read (`Some`), or its read failed (`None`: unknown until the next one).
    pub fn queued(&mut self, depth: Option<u64>, now: Instant) {
        // Seconds before this read (a gap) hold the value before it.
        self.advance(now).queued = depth;
        self.queued = depth;
    }

    /// The newest `n` values of `metric`, newest first (the view draws right to left).
    pub fn newest(&self, metric: Metric, n: usize) -> Vec<Option<u64>> {
        self.samples
            .iter()
            .rev()
            .take(n)
            .map(|s| metric.value(s))
            .collect()
    }

    pub fn summary(&self, metric: Metric) -> Summary {
        let max = self.samples.iter().filter_map(|s| metric.value(s)).max();
        // The newest second is still filling up: "now" is read from the ones before it.
        let recent = || self.samples.iter().rev().skip(1).take(RECENT);
        let now = if metric.is_rate() {
            let n = recent().count();
            let sum: u64 = recent().filter_map(|s| metric.value(s)).sum();
            (n > 0).then(|| sum as f64 / n as f64)
        } else if metric == Metric::HitRate {
            let hits: u64 = recent().map(|s| s.hits).sum();
            let lookups: u64 = recent().map(|s| s.lookups).sum();
            percent(hits, lookups).map(|p| p as f64)
        } else {
            self.queued.map(|q| q as f64)
        };
        Summary { now, max }
    }
}

/// `part` of `whole` in whole percent, rounded; none of nothing.
fn percent(part: u64, whole: u64) -> Option<u64> {
    (whole > 0).then(|| (part * 100 + whole / 2) / whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetcc_common::protocol::events::EVENTS_VERSION;
    use std::time::Duration;

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    fn rustc(outcome: UnitOutcome, compiled: Option<CompiledOn>) -> UnitEvent {
        UnitEvent {
            v: EVENTS_VERSION,
            host: "ci-1".into(),
            kind: UnitKind::Rustc,
            crate_name: "serde".into(),
            outcome,
            hit_tier: None,
            compiled,
            fallback: None,
            compile_ms: None,
            duration_ms: 30,
            tiers: Default::default(),
        }
    }

    #[test]
    fn the_ring_keeps_the_window_and_no_more() {
        let t0 = Instant::now();
        let mut t = Trend::new(t0);
        for s in 0..(WINDOW as u64 * 3) {
            t.job_finished(at(t0, s));
        }
        assert_eq!(t.samples.len(), WINDOW);
        assert!(t.samples.iter().all(|s| s.jobs == 1));
        // A gap longer than the window: a window of quiet seconds, the newest one counting.
        t.job_finished(at(t0, 10_000));
        assert_eq!(t.samples.len(), WINDOW);
        assert_eq!(t.samples.iter().map(|s| s.jobs).sum::<u64>(), 1);
        assert_eq!(t.samples.back().unwrap().jobs, 1);
        assert!(t.samples.capacity() < 2 * WINDOW, "memory stays bounded");
    }

    #[test]
    fn rates_count_quiet_seconds_as_zero() {
        let t0 = Instant::now();
        let mut t = Trend::new(t0);
        for _ in 0..5 {
            t.job_finished(at(t0, 0));
        }
        // Nothing for a while, then one job: the seconds between are samples of zero.
        t.job_finished(at(t0, 4));
        assert_eq!(
            t.newest(Metric::Jobs, 10),
            vec![Some(1), Some(0), Some(0), Some(0), Some(5)]
        );
        let s = t.summary(Metric::Jobs);
        assert_eq!(s.max, Some(5));
        // Seconds 0..=3 are complete: 5 jobs in 4 s; second 4 is still filling up.
        assert_eq!(s.now, Some(1.25));
        // Reading later, with nothing new, moves "now" on without the view's help.
        t.advance(at(t0, 30));
        assert_eq!(t.summary(Metric::Jobs).now, Some(0.0));
        assert_eq!(t.summary(Metric::Jobs).max, Some(5), "the window remembers");
        // An event stamped before the newest second (it waited for the lock) still counts.
        t.job_finished(at(t0, 29));
        assert_eq!(t.samples.back().unwrap().jobs, 1);
    }

    #[test]
    fn a_second_without_lookups_has_no_hit_rate() {
        let t0 = Instant::now();
        let mut t = Trend::new(t0);
        assert_eq!(
            t.summary(Metric::HitRate),
            Summary {
                now: None,
                max: None
            }
        );
        t.unit(&rustc(UnitOutcome::Hit, None), at(t0, 0));
        t.unit(
            &rustc(UnitOutcome::Miss, Some(CompiledOn::Remote)),
            at(t0, 0),
        );
        t.unit(
            &rustc(UnitOutcome::Miss, Some(CompiledOn::Local)),
            at(t0, 0),
        );
        // Pass-throughs are no lookups; a job alone is not one either.
        t.unit(&rustc(UnitOutcome::PassThrough, None), at(t0, 2));
        t.job_finished(at(t0, 2));
        t.advance(at(t0, 3));
        assert_eq!(
            t.newest(Metric::HitRate, 9),
            vec![None, None, None, Some(33)]
        );
        let s = t.summary(Metric::HitRate);
        assert_eq!((s.now, s.max), (Some(33.0), Some(33)));
        assert_eq!(
            t.newest(Metric::Local, 9),
            vec![Some(0), Some(0), Some(0), Some(1)]
        );
        assert_eq!(t.summary(Metric::Remote).max, Some(1));
        // Build-script runs and C compiles are not rustc lookups.
        let mut c = rustc(UnitOutcome::Hit, None);
        c.kind = UnitKind::CCompile;
        t.unit(&c, at(t0, 3));
        assert_eq!(t.newest(Metric::HitRate, 1), vec![None]);
        // Lookups that all missed: 0 %, which is a sample.
        t.unit(&rustc(UnitOutcome::Miss, None), at(t0, 3));
        assert_eq!(t.newest(Metric::HitRate, 1), vec![Some(0)]);
    }

    #[test]
    fn the_queue_holds_its_last_read_until_a_failed_one() {
        let t0 = Instant::now();
        let mut t = Trend::new(t0);
        t.advance(at(t0, 0));
        t.queued(Some(7), at(t0, 1));
        t.advance(at(t0, 3));
        t.queued(None, at(t0, 4));
        t.queued(Some(2), at(t0, 6));
        // Seconds 5 and 6 without a draw between: 5 still holds the failed read.
        assert_eq!(
            t.newest(Metric::Queued, 10),
            vec![Some(2), None, None, Some(7), Some(7), Some(7), None]
        );
        let s = t.summary(Metric::Queued);
        assert_eq!((s.now, s.max), (Some(2.0), Some(7)));
    }
}
