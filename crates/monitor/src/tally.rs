//! Counts of the events wrappers and workers published since this monitor started: hits and
//! misses by tier, compiles local and remote, fallbacks, jobs, durations, recent failures.
//!
//! Only ever grows (a Prometheus counter must never go down); rates over time are the
//! [`trend`](crate::trend)'s.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use jetcc_common::protocol::events::{
    CompiledOn, JobDone, TierCounts, UnitEvent, UnitKind, UnitOutcome,
};

/// Upper bounds (seconds) of the duration histograms: a trivial hit to a 10-minute compile.
pub const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
];
/// Failures kept for the live view.
const RECENT_FAILURES: usize = 8;

/// A duration histogram over [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Count per bucket (not cumulative); the last slot is +Inf.
    pub counts: [u64; BUCKETS.len() + 1],
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum_secs += secs;
        self.count += 1;
    }

    /// `(upper bound, count in that bucket)` pairs, the last bound `f64::MAX` (which the
    /// text encoder writes as `+Inf`; it makes the counts cumulative itself).
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        BUCKETS
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(self.counts)
            .collect()
    }
}

/// One thing that went wrong, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub at: Instant,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Wrapped rustc invocations by outcome (`hit`, `miss`, `pass_through`).
    pub units: BTreeMap<&'static str, u64>,
    /// Build-script runs and C/C++ compiles, by kind and outcome (`c_compile`, `miss`); a
    /// miss on the farm is `miss_remote`.
    pub actions: BTreeMap<(&'static str, &'static str), u64>,
    /// Each tier's counts, summed over events.
    pub tiers: BTreeMap<String, TierCounts>,
    /// Misses compiled, by where (`local`, `remote`).
    pub compiles: BTreeMap<&'static str, u64>,
    /// Compiles that could have gone to the farm and stayed local, by reason.
    pub fallbacks: BTreeMap<String, u64>,
    /// Jobs workers finished, by result (`ok`, `failed`).
    pub jobs: BTreeMap<&'static str, u64>,
    pub job_seconds: Histogram,
    /// Wrapped invocations' wall time, by outcome.
    pub unit_seconds: BTreeMap<&'static str, Histogram>,
    /// Events that did not decode (a newer or foreign jetcc).
    pub malformed: u64,
    pub failures: VecDeque<Failure>,
}

impl Tally {
    pub fn unit(&mut self, e: &UnitEvent, now: Instant) {
        let outcome = match e.outcome {
            UnitOutcome::Hit => "hit",
            UnitOutcome::Miss => "miss",
            UnitOutcome::PassThrough => "pass_through",
        };
        for (name, t) in &e.tiers {
            self.tiers.entry(name.clone()).or_default().add(t);
            if t.errors > 0 {
                self.failed(
                    now,
                    format!("{}: {name} tier error ({})", e.host, e.crate_name),
                );
            }
        }
        if e.kind != UnitKind::Rustc {
            let outcome = match e.compiled {
                Some(CompiledOn::Remote) => "miss_remote",
                _ => outcome,
            };
            *self.actions.entry((e.kind.name(), outcome)).or_default() += 1;
            return;
        }
        *self.units.entry(outcome).or_default() += 1;
        self.unit_seconds
            .entry(outcome)
            .or_default()
            .observe(Duration::from_millis(e.duration_ms));
        if let Some(on) = e.compiled {
            let on = match on {
                CompiledOn::Local => "local",
                CompiledOn::Remote => "remote",
            };
            *self.compiles.entry(on).or_default() += 1;
        }
        if let Some(why) = &e.fallback {
            *self.fallbacks.entry(why.clone()).or_default() += 1;
        }
    }

    pub fn job(&mut self, e: &JobDone, now: Instant) {
        *self
            .jobs
            .entry(if e.ok { "ok" } else { "failed" })
            .or_default() += 1;
        self.job_seconds
            .observe(Duration::from_millis(e.duration_ms));
        if !e.ok {
            let why = e.error.as_deref().unwrap_or("failed");
            self.failed(now, format!("{}: job {} {why}", e.worker, e.crate_name));
        }
    }

    fn failed(&mut self, at: Instant, text: String) {
        if self.failures.len() == RECENT_FAILURES {
            self.failures.pop_front();
        }
        self.failures.push_back(Failure { at, text });
    }

    /// Hits among cacheable invocations since the monitor started.
    pub fn hit_rate(&self) -> Option<f64> {
        let hits = self.units.get("hit").copied().unwrap_or(0);
        let n = hits + self.units.get("miss").copied().unwrap_or(0);
        (n > 0).then(|| hits as f64 / n as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetcc_common::protocol::events::EVENTS_VERSION;

    fn unit(outcome: UnitOutcome, tier: &str, counts: TierCounts) -> UnitEvent {
        UnitEvent {
            v: EVENTS_VERSION,
            host: "ci-1".into(),
            kind: UnitKind::Rustc,
            crate_name: "serde".into(),
            outcome,
            hit_tier: None,
            compiled: (outcome == UnitOutcome::Miss).then_some(CompiledOn::Remote),
            fallback: None,
            compile_ms: None,
            duration_ms: 30,
            tiers: [(tier.to_owned(), counts)].into(),
        }
    }

    #[test]
    fn events_add_up() {
        let mut t = Tally::default();
        let t0 = Instant::now();
        let hit = TierCounts {
            hits: 1,
            ..Default::default()
        };
        let error = TierCounts {
            errors: 1,
            ..Default::default()
        };
        t.unit(&unit(UnitOutcome::Hit, "jetstream", hit), t0);
        t.unit(&unit(UnitOutcome::Miss, "s3", error), t0);
        assert_eq!(t.tiers["jetstream"].hits, 1);
        assert_eq!(t.tiers["s3"].errors, 1);
        assert_eq!(t.compiles["remote"], 1);
        assert_eq!(t.hit_rate(), Some(0.5));
        assert_eq!(t.failures.len(), 1, "a tier error is a failure to show");
        let job = JobDone {
            v: EVENTS_VERSION,
            worker: "worker-a.box-1-1".into(),
            crate_name: "syn".into(),
            ok: false,
            error: Some("rustc exited 1".into()),
            duration_ms: 2000,
        };
        t.job(&job, t0);
        assert_eq!(t.jobs["failed"], 1);
        assert!(t.failures.back().unwrap().text.contains("rustc exited 1"));
        let later = t0 + Duration::from_secs(60);
        assert_eq!(t.hit_rate(), Some(0.5));

        // A C compile on the farm and a build-script run: counted apart from rustc's units,
        // their tiers with everyone's.
        let mut c = unit(UnitOutcome::Miss, "jetstream", TierCounts::default());
        c.kind = UnitKind::CCompile;
        t.unit(&c, later);
        let hit_again = TierCounts {
            hits: 1,
            ..Default::default()
        };
        let mut run = unit(UnitOutcome::Hit, "jetstream", hit_again);
        run.kind = UnitKind::BuildScriptRun;
        t.unit(&run, later);
        assert_eq!(t.actions[&("c_compile", "miss_remote")], 1);
        assert_eq!(t.actions[&("build_script_run", "hit")], 1);
        assert_eq!(t.tiers["jetstream"].hits, 2);
        assert_eq!((t.units["hit"], t.units["miss"]), (1, 1));
        assert_eq!(t.compiles["remote"], 1);
    }

    #[test]
    fn histograms_count_per_bucket_and_end_at_infinity() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5));
        h.observe(Duration::from_secs(3600));
        let b = h.buckets();
        assert_eq!(b[0], (0.005, 1));
        assert_eq!(b.last().copied(), Some((f64::MAX, 1)));
        assert_eq!(b.iter().find(|(le, _)| *le == 10.0).unwrap().1, 1);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), h.count);
    }
}
