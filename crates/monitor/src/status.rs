//! `jetcc-monitor status`: the farm now, as a table or as JSON for scripts ([`Report`]).

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use jetcc_common::farm::resources::FarmStatus;
use jetcc_common::stats::human_bytes;
use serde::Serialize;

/// `status --json`. Fields are only ever added.
#[derive(Debug, Serialize)]
pub struct Report {
    pub server: String,
    pub totals: Totals,
    pub queue: Queue,
    pub workers: Vec<WorkerRow>,
    pub buckets: Vec<BucketRow>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub workers: usize,
    /// The workers' machines' cores.
    pub cores: u64,
    /// Concurrent jobs they take.
    pub slots: u64,
    pub free_slots: u64,
}

#[derive(Debug, Serialize)]
pub struct Queue {
    /// Jobs waiting for a worker.
    pub pending: u64,
    /// Jobs a worker holds.
    pub in_flight: u64,
    /// Of those, jobs another worker had taken before.
    pub redelivered: u64,
    /// Jobs finished since the workers' consumers were created.
    pub acked: u64,
}

#[derive(Debug, Serialize)]
pub struct WorkerRow {
    pub id: String,
    /// Stable across restarts (`[worker] name`, else the host): the metrics' `worker` label.
    pub name: String,
    pub host: String,
    pub cores: u32,
    pub slots: u32,
    pub free_slots: u32,
    pub toolchains: Vec<String>,
    /// Toolchains clients shipped that it holds unpacked.
    pub shipped_toolchains: Vec<String>,
    /// Host triples it takes shipped toolchains for.
    pub ships_for: Vec<String>,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    pub version: String,
    pub last_seen_ms_ago: u64,
    pub rtt_us: u64,
}

impl WorkerRow {
    /// Its own toolchains, then the shipped ones it holds (or that it takes them).
    pub fn toolchain_list(&self) -> String {
        let mut list = self.toolchains.join(", ");
        let shipped = match (
            self.ships_for.is_empty(),
            self.shipped_toolchains.is_empty(),
        ) {
            (true, _) => String::new(),
            (false, true) => "takes shipped".to_owned(),
            (false, false) => format!("shipped: {}", self.shipped_toolchains.join(", ")),
        };
        if !shipped.is_empty() {
            if !list.is_empty() {
                list.push_str("; ");
            }
            list.push_str(&shipped);
        }
        list
    }
}

#[derive(Debug, Serialize)]
pub struct BucketRow {
    pub name: String,
    pub messages: u64,
    pub bytes: u64,
    pub max_bytes: Option<u64>,
    pub replicas: usize,
}

impl WorkerRow {
    pub fn busy_slots(&self) -> u32 {
        self.slots.saturating_sub(self.free_slots)
    }
}

impl Report {
    pub fn new(server: &str, s: &FarmStatus) -> Report {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let sum = |f: fn(&jetcc_common::protocol::worker::WorkerStatus) -> u32| {
            s.workers.iter().map(|w| u64::from(f(w))).sum()
        };
        Report {
            server: server.to_owned(),
            totals: Totals {
                workers: s.workers.len(),
                cores: sum(|w| w.cores),
                slots: sum(|w| w.slots),
                free_slots: sum(|w| w.free_slots),
            },
            queue: Queue {
                pending: s.queued,
                in_flight: s.in_progress,
                redelivered: s.redelivered,
                acked: s.acked,
            },
            workers: s
                .workers
                .iter()
                .map(|w| WorkerRow {
                    id: w.id.clone(),
                    name: match w.name.as_str() {
                        "" => w.host.clone(),
                        n => n.to_owned(),
                    },
                    host: w.host.clone(),
                    cores: w.cores,
                    slots: w.slots,
                    free_slots: w.free_slots,
                    toolchains: w.toolchain_names.clone(),
                    shipped_toolchains: w.shipped_names.clone(),
                    ships_for: w.ships_for.clone(),
                    jobs_done: w.jobs_done,
                    jobs_failed: w.jobs_failed,
                    version: w.version.clone(),
                    last_seen_ms_ago: now_ms.saturating_sub(w.unix_ms),
                    rtt_us: w.rtt_us,
                })
                .collect(),
            buckets: s
                .usage
                .iter()
                .map(|u| BucketRow {
                    name: u.name.clone(),
                    messages: u.messages,
                    bytes: u.bytes,
                    max_bytes: u.max_bytes,
                    replicas: u.replicas,
                })
                .collect(),
        }
    }

    /// The one-line summary the table and the live view open with.
    pub fn headline(&self) -> String {
        let t = &self.totals;
        let q = &self.queue;
        format!(
            "{} workers, {} cores, {} slots ({} free) · queue: {} pending, {} in flight, {} redelivered",
            t.workers, t.cores, t.slots, t.free_slots, q.pending, q.in_flight, q.redelivered
        )
    }

    /// Worker rows as aligned columns, header first.
    pub fn worker_lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{:<36} {:<16} {:>5} {:>5} {:>4} {:>7} {:>6} {:>6}  TOOLCHAIN",
            "WORKER", "HOST", "CORES", "SLOTS", "FREE", "DONE", "FAILED", "SEEN"
        )];
        for w in &self.workers {
            lines.push(format!(
                "{:<36} {:<16} {:>5} {:>5} {:>4} {:>7} {:>6} {:>5.1}s  {}",
                w.id,
                w.host,
                w.cores,
                w.slots,
                w.free_slots,
                w.jobs_done,
                w.jobs_failed,
                w.last_seen_ms_ago as f64 / 1000.0,
                w.toolchain_list()
            ));
        }
        lines
    }

    pub fn bucket_lines(&self) -> Vec<String> {
        self.buckets
            .iter()
            .map(|b| {
                let limit = b
                    .max_bytes
                    .map_or(String::new(), |m| format!(" of {}", human_bytes(m)));
                format!(
                    "{:<24} {:>9} messages {:>10}{limit}  R{}",
                    b.name,
                    b.messages,
                    human_bytes(b.bytes),
                    b.replicas
                )
            })
            .collect()
    }

    pub fn table(&self) -> String {
        let mut out = format!("jetcc farm at {}\n{}\n\n", self.server, self.headline());
        if self.workers.is_empty() {
            out.push_str("no live workers (start jetcc-worker on a machine with idle cores)\n");
        } else {
            for line in self.worker_lines() {
                let _ = writeln!(out, "{line}");
            }
        }
        if !self.buckets.is_empty() {
            out.push('\n');
            for line in self.bucket_lines() {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetcc_common::farm::resources::Usage;
    use jetcc_common::protocol::worker::WorkerStatus;

    #[test]
    fn shipped_toolchains_are_listed_after_the_workers_own() {
        let row = |own: &[&str], ships: bool, shipped: &[&str]| WorkerRow {
            id: "w".into(),
            name: "w".into(),
            host: "box".into(),
            cores: 1,
            slots: 1,
            free_slots: 1,
            toolchains: own.iter().map(|s| s.to_string()).collect(),
            shipped_toolchains: shipped.iter().map(|s| s.to_string()).collect(),
            ships_for: match ships {
                true => vec!["x86_64-unknown-linux-gnu".into()],
                false => vec![],
            },
            jobs_done: 0,
            jobs_failed: 0,
            version: String::new(),
            last_seen_ms_ago: 0,
            rtt_us: 0,
        };
        assert_eq!(
            row(&["rustc 1.95.0"], false, &[]).toolchain_list(),
            "rustc 1.95.0"
        );
        assert_eq!(
            row(&["rustc 1.95.0"], true, &[]).toolchain_list(),
            "rustc 1.95.0; takes shipped"
        );
        assert_eq!(
            row(&["cc"], true, &["rustc 1.96.0", "rustc 1.97.0"]).toolchain_list(),
            "cc; shipped: rustc 1.96.0, rustc 1.97.0"
        );
        assert_eq!(
            row(&[], true, &["rustc 1.96.0"]).toolchain_list(),
            "shipped: rustc 1.96.0"
        );
    }

    #[test]
    fn totals_add_up_the_workers() {
        let worker = |id: &str, cores, slots, free| WorkerStatus {
            id: id.into(),
            host: "box".into(),
            cores,
            slots,
            free_slots: free,
            toolchains: vec![],
            toolchain_names: vec!["rustc 1.95.0".into()],
            jobs_done: 3,
            jobs_failed: 0,
            version: "0.1.0".into(),
            unix_ms: 0,
            rtt_us: 0,
            name: String::new(),
            ships_for: vec![],
            shipped: vec![],
            shipped_names: vec![],
        };
        let status = FarmStatus {
            workers: vec![worker("a", 8, 4, 1), worker("b", 2, 2, 2)],
            queued: 5,
            in_progress: 5,
            usage: vec![Usage {
                name: "OBJ_jetcc-cas".into(),
                messages: 2,
                bytes: 3 << 20,
                max_bytes: Some(10 << 30),
                replicas: 3,
            }],
            ..Default::default()
        };
        let r = Report::new("nats://x:4222", &status);
        assert_eq!(
            (r.totals.workers, r.totals.cores, r.totals.slots),
            (2, 10, 6)
        );
        assert_eq!(r.totals.free_slots, 3);
        let table = r.table();
        assert!(
            table.contains("2 workers, 10 cores, 6 slots (3 free)"),
            "{table}"
        );
        assert!(table.contains("3.0 MiB of 10.0 GiB  R3"), "{table}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["queue"]["pending"], 5);
        assert_eq!(json["workers"][1]["toolchains"][0], "rustc 1.95.0");
    }
}
