//! The wrapper's monitor event: what this process added to the stats, as one [`UnitEvent`].
//!
//! Built from the same stats updates `--show-stats` counts (every `record` also applies to
//! this process's own delta), so a monitor and `--show-stats` never disagree about what a hit
//! or an error is.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use jetcc_common::protocol::events::{
    CompiledOn, TierCounts, UnitEvent, UnitOutcome, EVENTS_VERSION,
};
use jetcc_common::stats::Stats;

/// What this process has recorded so far.
static DELTA: LazyLock<Mutex<Stats>> = LazyLock::new(Mutex::default);

/// Applies a stats update to this process's delta too.
pub fn note(f: &mut impl FnMut(&mut Stats)) {
    if let Ok(mut delta) = DELTA.lock() {
        f(&mut delta);
    }
}

/// This process's event: `None` if it recorded nothing.
pub fn unit_event(
    crate_name: &str,
    compile: Option<Duration>,
    took: Duration,
) -> Option<UnitEvent> {
    let delta = DELTA.lock().ok()?;
    (delta.requests > 0).then(|| from_delta(&delta, crate_name, compile, took))
}

fn from_delta(d: &Stats, crate_name: &str, compile: Option<Duration>, took: Duration) -> UnitEvent {
    let outcome = if d.hits > 0 {
        UnitOutcome::Hit
    } else if d.misses > 0 {
        UnitOutcome::Miss
    } else {
        UnitOutcome::PassThrough
    };
    // Only a hit has a tier with a hit.
    let hit_tier = d
        .tiers
        .iter()
        .find(|(_, t)| t.hits > 0)
        .map(|(n, _)| n.clone());
    let compiled = (outcome == UnitOutcome::Miss).then_some(match d.remote_compiles {
        0 => CompiledOn::Local,
        _ => CompiledOn::Remote,
    });
    UnitEvent {
        v: EVENTS_VERSION,
        host: jetcc_common::farm::hostname(),
        crate_name: crate_name.to_owned(),
        outcome,
        hit_tier,
        compiled,
        fallback: d.remote_skipped.keys().next().cloned(),
        compile_ms: compile.map(|c| c.as_millis() as u64),
        duration_ms: took.as_millis() as u64,
        tiers: d
            .tiers
            .iter()
            .map(|(name, t)| {
                let counts = TierCounts {
                    hits: t.hits,
                    misses: t.misses,
                    errors: t.errors.values().sum(),
                    writes: t.writes,
                    bytes_read: t.bytes_read,
                    bytes_written: t.bytes_written,
                };
                (name.clone(), counts)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_miss_that_wrote_jetstream() {
        let mut d = Stats {
            requests: 1,
            misses: 1,
            remote_compiles: 1,
            ..Default::default()
        };
        d.tier("local").misses = 1;
        d.tier("jetstream").misses = 1;
        d.tier("jetstream").writes = 1;
        Stats::bump(
            &mut d.tier("s3").errors,
            &jetcc_common::cache::TierErrorKind::Forbidden,
        );
        let e = from_delta(
            &d,
            "serde",
            Some(Duration::from_millis(900)),
            Duration::from_secs(1),
        );
        assert_eq!(e.outcome, UnitOutcome::Miss);
        assert_eq!(e.compiled, Some(CompiledOn::Remote));
        assert_eq!(e.hit_tier, None);
        assert_eq!(e.compile_ms, Some(900));
        assert_eq!(e.tiers["jetstream"].writes, 1);
        assert_eq!(e.tiers["s3"].errors, 1);
    }

    #[test]
    fn a_hit_names_its_tier() {
        let mut d = Stats {
            requests: 1,
            hits: 1,
            ..Default::default()
        };
        d.tier("local").misses = 1;
        d.tier("s3").hits = 1;
        Stats::bump(
            &mut d.remote_skipped,
            &jetcc_common::stats::RemoteSkip::NoWorker,
        );
        let e = from_delta(&d, "x", None, Duration::ZERO);
        assert_eq!(
            (e.outcome, e.hit_tier.as_deref()),
            (UnitOutcome::Hit, Some("s3"))
        );
        assert_eq!(e.compiled, None);
    }
}
