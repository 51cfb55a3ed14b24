//! What `JETCC_LOG` means, for the three binaries alike: a bare level (`debug`) is for
//! jetcc's own crates, so `JETCC_LOG=debug` does not also turn on hyper's, rustls' or
//! async-nats' debug output; anything else is a `tracing` `EnvFilter` directive, taken as
//! given (`JETCC_LOG=debug,async_nats=trace`, `JETCC_LOG=jetcc_common::farm=trace`).

/// jetcc's crates, as `tracing` targets name them (a target is the module path).
pub const OWN_CRATES: &[&str] = &["jetcc", "jetcc_common", "jetcc_worker", "jetcc_monitor"];

/// Levels from least to most verbose, as `EnvFilter` spells them.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// The `EnvFilter` directives for a `JETCC_LOG` value. A bare level `L` becomes `L` for each
/// of [`OWN_CRATES`] and at most `warn` for every other crate (their warnings still show).
pub fn directives(value: &str) -> String {
    let v = value.trim();
    let Some(rank) = LEVELS.iter().position(|l| l.eq_ignore_ascii_case(v)) else {
        return v.to_owned();
    };
    let level = LEVELS[rank];
    let others = LEVELS[rank.min(2)];
    std::iter::once(others.to_owned())
        .chain(OWN_CRATES.iter().map(|c| format!("{c}={level}")))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_is_for_jetcc_s_crates() {
        assert_eq!(
            directives("debug"),
            "warn,jetcc=debug,jetcc_common=debug,jetcc_worker=debug,jetcc_monitor=debug"
        );
        assert_eq!(
            directives(" INFO "),
            "warn,jetcc=info,jetcc_common=info,jetcc_worker=info,jetcc_monitor=info"
        );
        assert!(directives("error").starts_with("error,jetcc=error"));
        assert!(directives("off").starts_with("off,jetcc=off"));
    }

    #[test]
    fn a_directive_is_taken_as_given() {
        for d in [
            "debug,async_nats=trace",
            "jetcc_common::farm=trace",
            "hyper=debug",
            "jetcc",
        ] {
            assert_eq!(directives(d), d);
        }
    }
}
