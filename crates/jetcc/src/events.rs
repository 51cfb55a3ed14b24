//! The wrapper's monitor event: what this process added to the stats, as one [`UnitEvent`].
//!
//! Built from the same stats updates `--show-stats` counts (every `record` also applies to
//! this process's own delta), so a monitor and `--show-stats` never disagree about what a hit
//! or an error is.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use jetcc_common::protocol::events::{
    CompiledOn, TierCounts, UnitEvent, UnitKind, UnitOutcome, EVENTS_VERSION,
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

/// Tells monitors what this process did as `kind`, where it talked to the server anyway (a
/// local hit opens no connection for an event).
pub fn publish(
    shared: &crate::tiers::SharedTiers,
    kind: UnitKind,
    name: &str,
    compile: Option<Duration>,
    took: Duration,
) {
    if let Some(session) = shared.opened_session() {
        if let Some(event) = unit_event(kind, name, compile, took) {
            session.publish_event(&event);
        }
    }
}

/// This process's event, about what ran as `kind`: `None` if it recorded nothing of it.
fn unit_event(
    kind: UnitKind,
    name: &str,
    compile: Option<Duration>,
    took: Duration,
) -> Option<UnitEvent> {
    let delta = DELTA.lock().ok()?;
    let seen = match kind {
        UnitKind::Rustc => delta.requests,
        _ => {
            let a = action(&delta, kind)?;
            a.hits + a.misses + a.pass_through.values().sum::<u64>()
        }
    };
    (seen > 0).then(|| from_delta(&delta, kind, name, compile, took))
}

/// The counts of a kind other than rustc.
fn action(d: &Stats, kind: UnitKind) -> Option<&jetcc_common::stats::ActionStats> {
    match kind {
        UnitKind::Rustc => None,
        UnitKind::BuildScriptRun => Some(&d.build_script_runs),
        UnitKind::CCompile => Some(&d.c_compiles),
    }
}

fn from_delta(
    d: &Stats,
    kind: UnitKind,
    name: &str,
    compile: Option<Duration>,
    took: Duration,
) -> UnitEvent {
    let (hits, misses, remote, skipped) = match action(d, kind) {
        None => (d.hits, d.misses, d.remote_compiles, &d.remote_skipped),
        Some(a) => (a.hits, a.misses, a.remote, &a.remote_skipped),
    };
    let outcome = if hits > 0 {
        UnitOutcome::Hit
    } else if misses > 0 {
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
    let compiled = (outcome == UnitOutcome::Miss).then_some(match remote {
        0 => CompiledOn::Local,
        _ => CompiledOn::Remote,
    });
    UnitEvent {
        v: EVENTS_VERSION,
        host: jetcc_common::farm::hostname(),
        kind,
        crate_name: name.to_owned(),
        outcome,
        hit_tier,
        compiled,
        fallback: skipped.keys().next().cloned(),
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
            UnitKind::Rustc,
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
        let e = from_delta(&d, UnitKind::Rustc, "x", None, Duration::ZERO);
        assert_eq!(
            (e.outcome, e.hit_tier.as_deref()),
            (UnitOutcome::Hit, Some("s3"))
        );
        assert_eq!(e.compiled, None);
    }

    #[test]
    fn a_c_compile_on_the_farm_is_its_own_kind() {
        let mut d = Stats::default();
        d.c_compiles.misses = 1;
        d.c_compiles.remote = 1;
        let e = from_delta(&d, UnitKind::CCompile, "cc a.c", None, Duration::ZERO);
        assert_eq!(e.kind, UnitKind::CCompile);
        assert_eq!(
            (e.outcome, e.compiled),
            (UnitOutcome::Miss, Some(CompiledOn::Remote))
        );
        let e = from_delta(&d, UnitKind::BuildScriptRun, "x", None, Duration::ZERO);
        assert_eq!(e.outcome, UnitOutcome::PassThrough);
    }
}
