//! A circuit breaker whose state survives the short-lived wrapper processes: after
//! [`Breaker::TRIPS`] failures in a row of one remote service (the farm, a cache tier), it is
//! skipped for a while, so a dead server costs a build a few timeouts, not one per unit.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jetcc_common::fsutil;

pub struct Breaker {
    file: PathBuf,
    /// What it guards, in log lines ("the farm", "the s3 cache tier").
    what: String,
    open_for: Duration,
}

impl Breaker {
    pub const TRIPS: u32 = 3;

    /// The breaker named `name` (its state is `<cache dir>/<name>-breaker`).
    pub fn new(cache_dir: &Path, name: &str, what: &str, open_for: Duration) -> Breaker {
        Breaker {
            file: cache_dir.join(format!("{name}-breaker")),
            what: what.to_owned(),
            open_for,
        }
    }

    /// (failures in a row, skip until this unix second)
    fn read(&self) -> (u32, u64) {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut it = text
            .split_whitespace()
            .map(|w| w.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0) as u32, it.next().unwrap_or(0))
    }

    pub fn is_open(&self) -> bool {
        let (_, until) = self.read();
        now_secs() < until
    }

    /// Opens it now, whatever the count: a failure that will not go away by retrying.
    pub fn trip(&self) {
        let until = now_secs() + self.open_for.as_secs();
        let _ = fsutil::write_atomic(&self.file, format!("0 {until}").as_bytes());
    }

    pub fn record(&self, ok: bool) {
        let (fails, until) = self.read();
        let next = if ok {
            if fails == 0 {
                return;
            }
            (0, 0)
        } else if fails + 1 >= Breaker::TRIPS {
            tracing::warn!(
                "{} failed {} times in a row: skipping it for {:?}",
                self.what,
                fails + 1,
                self.open_for
            );
            (0, now_secs() + self.open_for.as_secs())
        } else {
            (fails + 1, until)
        };
        let _ = fsutil::write_atomic(&self.file, format!("{} {}", next.0, next.1).as_bytes());
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
