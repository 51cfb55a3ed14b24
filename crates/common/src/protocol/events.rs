//! Events for monitors, published fire-and-forget on `jetcc.events.<kind>`: one
//! [`UnitEvent`] per wrapped rustc invocation that talked to the server, one [`JobDone`] per
//! job a worker ran.
//!
//! JSON, unlike the rest of the wire: operators read these with `nats sub 'jetcc.events.>'`
//! and feed them to their own scripts. Nobody acks them and nothing stores them, so an absent
//! monitor costs a build nothing but the publish. Fields are only ever added (readers ignore
//! unknown ones); `v` changes if one is ever removed or changes meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::job::ProtocolError;

/// The events' own version.
pub const EVENTS_VERSION: u32 = 1;
/// The subject token of [`UnitEvent`]s.
pub const UNIT: &str = "unit";
/// The subject token of [`JobDone`]s.
pub const JOB: &str = "job";
/// Events are small; anything bigger is not one of ours.
const MAX_EVENT: usize = 64 << 10;

/// What one wrapped rustc invocation, build-script run or C/C++ compile did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitEvent {
    pub v: u32,
    /// The client machine.
    pub host: String,
    /// What ran (a rustc invocation in events of jetcc versions that did not say).
    #[serde(default)]
    pub kind: UnitKind,
    /// The crate, the build script's package, or the C source.
    pub crate_name: String,
    pub outcome: UnitOutcome,
    /// The tier that had the result, on a hit (`local`, `jetstream`, `s3`, …).
    #[serde(default)]
    pub hit_tier: Option<String>,
    /// Where a miss was compiled.
    #[serde(default)]
    pub compiled: Option<CompiledOn>,
    /// Why a compile that could have gone to the farm stayed here.
    #[serde(default)]
    pub fallback: Option<String>,
    /// rustc's own time, on a miss.
    #[serde(default)]
    pub compile_ms: Option<u64>,
    /// The whole invocation, as cargo waited for it.
    pub duration_ms: u64,
    /// What each tier saw during this invocation.
    #[serde(default)]
    pub tiers: BTreeMap<String, TierCounts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    #[default]
    Rustc,
    BuildScriptRun,
    CCompile,
}

impl UnitKind {
    /// Its name in metrics and views.
    pub fn name(self) -> &'static str {
        match self {
            UnitKind::Rustc => "rustc",
            UnitKind::BuildScriptRun => "build_script_run",
            UnitKind::CCompile => "c_compile",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitOutcome {
    Hit,
    Miss,
    /// Ran as plain rustc (not cacheable, or jetcc failed before rustc started).
    PassThrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompiledOn {
    Local,
    Remote,
}

/// One tier's share of a [`UnitEvent`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TierCounts {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl TierCounts {
    /// Adds `other` in (a monitor's totals are sums of events' counts).
    pub fn add(&mut self, other: &TierCounts) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
        self.writes += other.writes;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
    }
}

/// One job a worker finished (or gave up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDone {
    pub v: u32,
    /// The worker's id (`<owner>.<host>-<pid>-<random>`).
    pub worker: String,
    pub crate_name: String,
    /// rustc exited 0 and the outputs were stored.
    pub ok: bool,
    /// Why it did not, for people.
    #[serde(default)]
    pub error: Option<String>,
    /// From taking the job to its last reply.
    pub duration_ms: u64,
}

impl UnitEvent {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<UnitEvent, ProtocolError> {
        decode(bytes)
    }
}

impl JobDone {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<JobDone, ProtocolError> {
        decode(bytes)
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    if bytes.len() > MAX_EVENT {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_read_like_json() {
        let e = UnitEvent {
            v: EVENTS_VERSION,
            host: "laptop".into(),
            kind: UnitKind::CCompile,
            crate_name: "serde".into(),
            outcome: UnitOutcome::Hit,
            hit_tier: Some("jetstream".into()),
            compiled: None,
            fallback: None,
            compile_ms: None,
            duration_ms: 12,
            tiers: [(
                "jetstream".to_owned(),
                TierCounts {
                    hits: 1,
                    ..Default::default()
                },
            )]
            .into(),
        };
        let bytes = e.encode();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(r#""outcome":"hit""#), "{text}");
        assert!(text.contains(r#""kind":"c_compile""#), "{text}");
        assert_eq!(UnitEvent::decode(&bytes).unwrap(), e);
        // An older jetcc's event names no kind: it was a rustc invocation.
        let older = br#"{"v":1,"host":"h","crate_name":"x","outcome":"miss","duration_ms":5}"#;
        assert_eq!(UnitEvent::decode(older).unwrap().kind, UnitKind::Rustc);
        // A newer sender's extra fields are ignored; missing optional ones default.
        let newer =
            br#"{"v":1,"worker":"w.a","crate_name":"x","ok":false,"duration_ms":5,"queue":"q"}"#;
        let j = JobDone::decode(newer).unwrap();
        assert_eq!((j.ok, j.error), (false, None));
        assert!(UnitEvent::decode(b"{").is_err());
        assert!(UnitEvent::decode(&vec![b' '; MAX_EVENT + 1]).is_err());
    }
}
