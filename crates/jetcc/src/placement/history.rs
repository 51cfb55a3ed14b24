//! Per-unit history (`farm-history.json`): what each unit's last compiles took, here and on
//! a worker, shared by the wrappers of this machine, so placement can tell a long unit from
//! a short one before it runs.
//!
//! A unit is what stays the same from edit to edit ([`unit_of_rustc`]): `explain`'s unit id
//! (cwd, crate name, crate types, crate root), plus what changes the cost of its compile but
//! not from one edit to the next (opt-level, debuginfo, `--test`, what it emits). A C compile's
//! unit is the one `--explain` uses (compiler, cwd, source, object). Bounded to [`MAX_UNITS`]
//! (the least recently used go first); written under a lock, atomically.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use jetcc_common::args::RustcArgs;
use jetcc_common::digest::KeyHasher;
use jetcc_common::fsutil::SharedFile;
use jetcc_common::Digest;

use super::ewma;

/// Units remembered; a workspace of a few hundred crates fits many times over.
pub const MAX_UNITS: usize = 2048;
/// Weight of the newest sample in a unit's times (compile times vary little per unit).
const ALPHA: f64 = 0.5;

/// What is known of one unit. Times in ms; `None`: not measured there yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnitRecord {
    /// Its compile here.
    pub local_ms: Option<f64>,
    /// rustc's run on a worker (the worker's `compile_ms`).
    pub worker_ms: Option<f64>,
    /// What its remote compiles added over the worker's run and the queue wait: pre-pass,
    /// uploads, downloads (they grow with its inputs and outputs).
    pub overhead_ms: Option<f64>,
    /// When it was last compiled (unix s), for eviction.
    pub used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct HistoryFile {
    /// By the unit's hex digest (its first 32 digits).
    units: HashMap<String, UnitRecord>,
}

impl HistoryFile {
    /// Missing or unreadable: nothing known.
    fn parse(bytes: Option<&[u8]>) -> HistoryFile {
        bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default()
    }
}

/// The history file of one cache dir.
pub struct History {
    file: SharedFile,
    max_units: usize,
}

/// A placement unit's identity.
pub type Unit = Digest;

/// The placement unit of a rustc invocation whose `explain` unit id is `unit`.
pub fn unit_of_rustc(unit: &Digest, args: &RustcArgs) -> Unit {
    let mut h = KeyHasher::new("jetcc-placement-unit");
    h.digest(unit);
    for opt in ["opt-level", "debuginfo"] {
        h.str(args.codegen_opt(opt).flatten().unwrap_or("-"));
    }
    h.str(&args.special_modes.join(" "));
    for e in &args.emit {
        h.str(&format!("{:?}", e.kind)); // kinds only: an explicit path may name the build
    }
    h.finish()
}

fn key(unit: &Unit) -> String {
    unit.hex()[..32].to_owned()
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl History {
    pub fn new(cache_dir: &Path) -> History {
        History {
            file: SharedFile::new(
                cache_dir.join("farm-history.json"),
                cache_dir.join("farm-history.lock"),
            ),
            max_units: MAX_UNITS,
        }
    }

    /// What is known of `unit` (a missing or unreadable file knows nothing).
    pub fn get(&self, unit: &Unit) -> Option<UnitRecord> {
        self.read().units.get(&key(unit)).copied()
    }

    pub fn record_local(&self, unit: &Unit, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        self.update(unit, |r| r.local_ms = Some(ewma(r.local_ms, ms, ALPHA)));
    }

    pub fn record_remote(&self, unit: &Unit, worker: Duration, overhead: Option<Duration>) {
        let worker = worker.as_secs_f64() * 1000.0;
        self.update(unit, |r| {
            r.worker_ms = Some(ewma(r.worker_ms, worker, ALPHA));
            if let Some(o) = overhead {
                r.overhead_ms = Some(ewma(r.overhead_ms, o.as_secs_f64() * 1000.0, ALPHA));
            }
        });
    }

    fn read(&self) -> HistoryFile {
        HistoryFile::parse(self.file.read().as_deref())
    }

    /// Changes `unit`'s record; a history that cannot be written is only a worse guess next
    /// time, so errors are logged, not returned.
    fn update(&self, unit: &Unit, f: impl FnOnce(&mut UnitRecord)) {
        let written = self.file.update(|old| {
            let mut h = HistoryFile::parse(old);
            let r = h.units.entry(key(unit)).or_default();
            f(r);
            r.used = unix_secs();
            if h.units.len() > self.max_units {
                let mut by_age: Vec<_> = h.units.iter().map(|(k, r)| (r.used, k.clone())).collect();
                by_age.sort();
                let excess = h.units.len() - self.max_units;
                for (_, k) in by_age.into_iter().take(excess) {
                    h.units.remove(&k);
                }
            }
            (serde_json::to_vec(&h).expect("history serializes"), ())
        });
        if let Err(e) = written {
            tracing::debug!("cannot write the unit history: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_unit_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let h = History {
            max_units: 8,
            ..History::new(dir.path())
        };
        let a = Digest::of_bytes(b"a");
        assert_eq!(h.get(&a), None, "nothing known yet");
        h.record_local(&a, Duration::from_millis(800));
        h.record_remote(
            &a,
            Duration::from_millis(600),
            Some(Duration::from_millis(40)),
        );
        let r = h.get(&a).unwrap();
        assert_eq!(
            (r.local_ms, r.worker_ms, r.overhead_ms),
            (Some(800.0), Some(600.0), Some(40.0))
        );
        h.record_local(&a, Duration::from_millis(1000));
        assert_eq!(h.get(&a).unwrap().local_ms, Some(900.0), "blended");
        for i in 0..20u32 {
            h.record_local(
                &Digest::of_bytes(&i.to_le_bytes()),
                Duration::from_millis(1),
            );
        }
        assert_eq!(h.read().units.len(), 8, "bounded");
    }

    #[test]
    fn a_damaged_file_is_forgotten_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("farm-history.json"), b"{not json").unwrap();
        let h = History::new(dir.path());
        let a = Digest::of_bytes(b"a");
        assert_eq!(h.get(&a), None);
        h.record_local(&a, Duration::from_millis(5));
        assert_eq!(h.get(&a).unwrap().local_ms, Some(5.0));
    }
}
