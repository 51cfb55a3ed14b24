//! Names in NATS, all derived from one configurable prefix (default `jetcc`), so that several
//! farms can share a server and so that the CAS can later be sharded over several buckets by
//! digest prefix behind these functions.

use std::fmt;

use crate::Digest;

/// A validated prefix and the names derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

/// Why a name part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: use lowercase letters, digits, '-' and '_' (at most 32)")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
}

impl Default for Names {
    fn default() -> Names {
        Names {
            prefix: "jetcc".into(),
        }
    }
}

impl Names {
    /// Names under `prefix`: lowercase letters, digits, `-` and `_` (valid in subjects,
    /// stream names and bucket names alike).
    pub fn new(prefix: &str) -> Result<Names, NameError> {
        token(prefix, "prefix", 32)?;
        Ok(Names {
            prefix: prefix.to_owned(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The work-queue stream: `JETCC_JOBS`.
    pub fn jobs_stream(&self) -> String {
        format!("{}_JOBS", self.prefix.to_uppercase().replace('-', "_"))
    }

    /// The subject jobs for one host triple and toolchain are published on:
    /// `jetcc.jobs.<triple>.<toolchain>`. One subject per toolchain, so that a worker only
    /// ever pulls jobs it has the compiler for.
    pub fn jobs_subject(&self, host_triple: &str, toolchain: &Digest) -> Result<String, NameError> {
        token(host_triple, "host triple", 64)?;
        Ok(format!(
            "{}.jobs.{host_triple}.{}",
            self.prefix,
            toolchain_token(toolchain)
        ))
    }

    /// Every jobs subject, for the stream's subject filter.
    pub fn jobs_subjects(&self) -> String {
        format!("{}.jobs.>", self.prefix)
    }

    /// The durable pull consumer shared by all workers with one toolchain: `workers-<tc>`.
    pub fn workers_consumer(&self, toolchain: &Digest) -> String {
        format!("workers-{}", toolchain_token(toolchain))
    }

    /// Object store of blobs by BLAKE3 digest.
    pub fn cas_bucket(&self) -> String {
        format!("{}-cas", self.prefix)
    }

    /// The stream under the CAS bucket (the object store's naming), read by direct gets.
    pub fn cas_stream(&self) -> String {
        format!("OBJ_{}", self.cas_bucket())
    }

    /// Subjects of the CAS objects' metadata messages (the object store's naming): the last
    /// message on each is one object's current metadata.
    pub fn cas_meta_subjects(&self) -> String {
        format!("$O.{}.M.>", self.cas_bucket())
    }

    /// Subjects of the CAS objects' chunks.
    pub fn cas_chunk_subjects(&self) -> String {
        format!("$O.{}.C.>", self.cas_bucket())
    }

    /// The subject of one object's chunks, named by the object's `nuid`.
    pub fn cas_chunk_subject(&self, nuid: &str) -> String {
        format!("$O.{}.C.{nuid}", self.cas_bucket())
    }

    /// KV of result entries and manifests.
    pub fn ac_bucket(&self) -> String {
        format!("{}-ac", self.prefix)
    }

    /// The stream under the result bucket (the KV store's naming).
    pub fn ac_stream(&self) -> String {
        format!("KV_{}", self.ac_bucket())
    }

    /// The result bucket's subjects (the KV store's naming).
    pub fn ac_subjects(&self) -> String {
        format!("$KV.{}.>", self.ac_bucket())
    }

    /// KV of worker heartbeats (with a TTL).
    pub fn workers_bucket(&self) -> String {
        format!("{}-workers", self.prefix)
    }

    /// KV of toolchain archives' metadata.
    pub fn toolchains_bucket(&self) -> String {
        format!("{}-toolchains", self.prefix)
    }

    /// Where a worker reports progress and the result of one job.
    pub fn reply_subject(&self, client: &str, job: &JobId) -> Result<String, NameError> {
        token(client, "client id", 64)?;
        Ok(format!("{}.reply.{client}.{job}", self.prefix))
    }

    /// Whether `subject` may be a job's reply subject here: under this prefix's `reply.`, one
    /// concrete subject (no wildcard) without spaces. Workers publish where a job says, so
    /// they check it first.
    pub fn is_reply_subject(&self, subject: &str) -> bool {
        subject
            .strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| rest.starts_with(".reply."))
            && !subject.contains(['*', '>', ' '])
    }

    /// Fire-and-forget events for the monitor: `jetcc.events.<kind>`.
    pub fn events_subject(&self, kind: &str) -> Result<String, NameError> {
        event_kind_token(kind)?;
        Ok(format!("{}.events.{kind}", self.prefix))
    }

    /// Every event subject.
    pub fn events_subjects(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// The kind an event subject names (`jetcc.events.<kind>`, as [`Names::events_subject`]
    /// spells it), or `None` if it is no such subject.
    pub fn event_kind<'a>(&self, subject: &'a str) -> Option<&'a str> {
        let kind = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".events.")?;
        event_kind_token(kind).ok().map(|()| kind)
    }
}

/// A job's id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JobId(String);

impl JobId {
    pub fn parse(s: &str) -> Result<JobId, NameError> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(JobId(s.to_owned()))
        } else {
            Err(NameError {
                what: "job id",
                value: s.to_owned(),
            })
        }
    }

    /// A job id from 16 random-enough bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> JobId {
        JobId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key in KV `jetcc-workers` held by whoever runs the CAS's garbage collection (one at
/// a time); it expires with the bucket's TTL unless its holder refreshes it.
pub const GC_LOCK_KEY: &str = "gc.lock";

/// The key of an invocation's shared manifest in KV `jetcc-ac`.
pub fn ac_manifest_key(invocation: &Digest) -> String {
    format!("m.{}", invocation.hex())
}

/// The key of a shared result entry in KV `jetcc-ac`.
pub fn ac_entry_key(key: &Digest) -> String {
    format!("e.{}", key.hex())
}

/// A toolchain identity as a name token (64 bits of its digest: plenty to tell toolchains apart).
fn toolchain_token(toolchain: &Digest) -> String {
    toolchain.hex()[..16].to_owned()
}

/// An event kind: one subject token (see [`Names::events_subject`]).
fn event_kind_token(kind: &str) -> Result<(), NameError> {
    token(kind, "event kind", 32)
}

/// One subject token: no dots, wildcards or spaces.
fn token(value: &str, what: &'static str, max: usize) -> Result<(), NameError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_match_the_design() {
        let n = Names::default();
        assert_eq!(n.jobs_stream(), "JETCC_JOBS");
        let tc = Digest::of_bytes(b"rustc 1.95.0");
        let tc16 = &tc.hex()[..16];
        assert_eq!(
            n.jobs_subject("x86_64-unknown-linux-gnu", &tc).unwrap(),
            format!("jetcc.jobs.x86_64-unknown-linux-gnu.{tc16}")
        );
        assert_eq!(n.jobs_subjects(), "jetcc.jobs.>");
        assert_eq!(n.workers_consumer(&tc), format!("workers-{tc16}"));
        assert_eq!(n.cas_bucket(), "jetcc-cas");
        assert_eq!(n.ac_bucket(), "jetcc-ac");
        assert_eq!(n.workers_bucket(), "jetcc-workers");
        assert_eq!(n.toolchains_bucket(), "jetcc-toolchains");
        let job = JobId::from_bytes([0xab; 16]);
        assert_eq!(
            n.reply_subject("laptop-1", &job).unwrap(),
            format!("jetcc.reply.laptop-1.{job}")
        );
        assert_eq!(n.events_subjects(), "jetcc.events.>");
        assert_eq!(n.event_kind("jetcc.events.unit"), Some("unit"));
        for other in [
            "jetcc.events.a.b",
            "jetcc.events.",
            "jetcc.jobs.unit",
            "team.events.unit",
        ] {
            assert_eq!(n.event_kind(other), None, "{other}");
        }
    }

    #[test]
    fn prefixes_and_tokens_are_validated() {
        let n = Names::new("team-a").unwrap();
        assert_eq!(n.jobs_stream(), "TEAM_A_JOBS");
        assert_eq!(n.cas_bucket(), "team-a-cas");
        for bad in ["", "a.b", "a b", "*", ">", "UP", &"x".repeat(33)] {
            assert!(Names::new(bad).is_err(), "{bad:?}");
        }
        assert!(n
            .jobs_subject("x86_64.evil", &Digest::of_bytes(b""))
            .is_err());
        assert!(n.reply_subject("a.>", &JobId::from_bytes([0; 16])).is_err());
        let reply = n
            .reply_subject("laptop-1", &JobId::from_bytes([1; 16]))
            .unwrap();
        assert!(n.is_reply_subject(&reply));
        for bad in [
            "jetcc.reply.a.b",
            "team-a.jobs.x",
            "team-a.replyx",
            "team-a.reply.>",
            "team-a.reply.*.x",
            "team-a.reply.a b",
        ] {
            assert!(!n.is_reply_subject(bad), "{bad:?}");
        }
        assert!(JobId::parse("not-hex").is_err());
        assert!(JobId::parse(&"0".repeat(32)).is_ok());
    }
}
