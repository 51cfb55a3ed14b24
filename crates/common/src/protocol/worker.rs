//! A worker's heartbeat, as kept in KV `jetcc-workers` (which expires it when the worker
//! stops refreshing it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::job::ProtocolError;
use super::timing::HEARTBEAT_TTL;
use crate::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Unique per worker process: `<owner>.<host>-<pid>-<random>` (see [`WorkerStatus::new_id`]).
    pub id: String,
    pub host: String,
    pub cores: u32,
    pub slots: u32,
    pub free_slots: u32,
    /// Toolchain identities (`rustc -vV` digests) it runs jobs for.
    pub toolchains: Vec<Digest>,
    /// `rustc -vV` first line per toolchain, for people.
    pub toolchain_names: Vec<String>,
    pub jobs_done: u64,
    pub jobs_failed: u64,
    pub version: String,
    pub unix_ms: u64,
    /// The round trip of its last heartbeat write, in µs: how far it is from the server,
    /// which clients use to guess what a job there costs before they have sent one.
    #[serde(default)]
    pub rtt_us: u64,
    /// The name it is known by across restarts (`[worker] name`, default its host name): the
    /// `worker` label of its metrics. Empty from workers older than the field.
    #[serde(default)]
    pub name: String,
    /// Host triples it takes jobs that ship their toolchain for (empty: it runs only its
    /// own toolchains).
    #[serde(default)]
    pub ships_for: Vec<String>,
    /// Shipped toolchains it holds unpacked, by pack digest (`ToolchainPack::digest`): a
    /// client with one of these sends its jobs to this pack's own subject.
    #[serde(default)]
    pub shipped: Vec<Digest>,
    /// `rustc -vV`'s first line per shipped toolchain, as its client said (for people).
    #[serde(default)]
    pub shipped_names: Vec<String>,
}

/// `s` as one KV key token: lowercase letters, digits, `-` and `_`, at most 40 characters.
fn key_token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(40)
        .collect();
    if t.is_empty() {
        "unknown".into()
    } else {
        t
    }
}

impl WorkerStatus {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a status always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<WorkerStatus, ProtocolError> {
        super::job::decode_bounded(bytes, 64 << 10)
    }

    /// A worker process's id. `owner` (the NATS user it logs in as, else its host) is a
    /// token of its own so that a server can let each worker user write only its own
    /// heartbeats: `$KV.jetcc-workers.w.<owner>.>` (see `nats/roles.conf`).
    pub fn new_id(owner: &str, host: &str, pid: u32, random: u32) -> String {
        format!(
            "{}.{}-{pid}-{random:08x}",
            key_token(owner),
            key_token(host)
        )
    }

    /// What every heartbeat's key starts with.
    pub const KEY_PREFIX: &'static str = "w.";

    pub fn key(id: &str) -> String {
        format!("{}{id}", Self::KEY_PREFIX)
    }

    /// The key a client reads to learn whether any live worker serves `toolchain`.
    pub fn toolchain_key(toolchain: &Digest) -> String {
        format!("tc.{}", &toolchain.hex()[..32])
    }

    /// The key a client reads to learn whether any live worker takes shipped toolchains for
    /// `host_triple`.
    pub fn shipped_key(host_triple: &str) -> String {
        format!("ship.{}", key_token(host_triple))
    }

    /// Written within the TTL (the bucket expires older entries, but lazily).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        now_ms.saturating_sub(self.unix_ms) <= HEARTBEAT_TTL.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_owner_in_a_token_of_its_own() {
        let id = WorkerStatus::new_id("worker-a", "Build.Box 7", 42, 0xab);
        assert_eq!(id, "worker-a.build-box-7-42-000000ab");
        assert_eq!(WorkerStatus::key(&id), "w.worker-a.build-box-7-42-000000ab");
        assert!(WorkerStatus::key(&id).starts_with(WorkerStatus::KEY_PREFIX));
        // Nothing a user name holds can add a token or a wildcard.
        let id = WorkerStatus::new_id("a.b>*", "", 1, 1);
        assert_eq!(id.split('.').count(), 2, "{id}");
        assert!(!id.contains(['*', '>']));
    }
}
