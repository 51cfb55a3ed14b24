//! Paths marks: which `[cache] paths` mode a shared tier's writers use. Portable and exact
//! keys never meet, so a team whose CI writes in one mode and whose laptops read in the other
//! gets no hits and no error; writers leave a mark per mode (at most daily, see the wrapper),
//! and `jetcc --check` warns when the other mode's mark is there.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::PathsMode;

/// Who last wrote in a mode, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathsMark {
    pub host: String,
    pub unix_secs: u64,
}

impl PathsMark {
    /// A mark for this machine, now.
    pub fn now(host: &str) -> PathsMark {
        PathsMark {
            host: host.to_owned(),
            unix_secs: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        format!("{} {}", self.unix_secs, self.host).into_bytes()
    }

    /// `None` for anything that is not a mark (it is only advice).
    pub fn decode(bytes: &[u8]) -> Option<PathsMark> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (secs, host) = text.split_once(' ')?;
        Some(PathsMark {
            host: host.chars().take(100).collect(),
            unix_secs: secs.parse().ok()?,
        })
    }
}

/// The mark's name in a tier: `paths.<mode>`.
pub fn mark_name(mode: PathsMode) -> String {
    format!("paths.{}", mode.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_garbage_is_none() {
        let m = PathsMark::now("ci-7");
        assert_eq!(PathsMark::decode(&m.encode()), Some(m));
        assert_eq!(PathsMark::decode(b"\xff"), None);
        assert_eq!(PathsMark::decode(b"soon ci"), None);
        assert_eq!(mark_name(PathsMode::Portable), "paths.portable");
    }
}
