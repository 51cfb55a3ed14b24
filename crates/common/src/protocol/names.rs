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
#[error("invalid {what} {value:?}: {rule}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    /// What a valid one looks like.
    pub rule: &'static str,
}

const TOKEN_RULE: &str = "use lowercase letters, digits, '-' and '_' (at most 32)";
const HEX_RULE: &str = "32 lowercase hex digits";
const USER_RULE: &str = "a user named in NATS subjects has letters, digits, '-' and '_' only \
                         (at most 64)";

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

    /// The subject of jobs that ship their toolchain, for one host triple:
    /// `jetcc.jobs.<triple>.shipped`. Every worker willing to unpack a client's toolchain
    /// pulls it (a toolchain's own subject ends in 16 hex digits, never `shipped`).
    pub fn shipped_subject(&self, host_triple: &str) -> Result<String, NameError> {
        token(host_triple, "host triple", 64)?;
        Ok(format!("{}.jobs.{host_triple}.{SHIPPED}", self.prefix))
    }

    /// The durable pull consumer of [`Names::shipped_subject`], shared by the workers that
    /// take shipped toolchains for `host_triple`: `shipped-<triple>`.
    pub fn shipped_consumer(&self, host_triple: &str) -> Result<String, NameError> {
        token(host_triple, "host triple", 64)?;
        Ok(format!("{SHIPPED}-{host_triple}"))
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

    /// The subject of one object's metadata, by the object's name (URL-safe base64, as the
    /// object store names it).
    pub fn cas_meta_subject(&self, object: &str) -> String {
        use base64::Engine;
        let name = base64::engine::general_purpose::URL_SAFE.encode(object);
        format!("$O.{}.M.{name}", self.cas_bucket())
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

    /// What every write to the AC bucket publishes under (`$KV.<bucket>.<key>`): the subject
    /// a permission error names when this user may not write results.
    pub fn ac_write_prefix(&self) -> String {
        format!("$KV.{}.", self.ac_bucket())
    }

    /// KV of worker heartbeats (with a TTL).
    pub fn workers_bucket(&self) -> String {
        format!("{}-workers", self.prefix)
    }

    /// KV of toolchain archives' metadata.
    pub fn toolchains_bucket(&self) -> String {
        format!("{}-toolchains", self.prefix)
    }

    /// Where a worker reports progress and the result of one job:
    /// `jetcc.reply.<user>.<token>`, with the client's NATS user (see [`user_token`]) and
    /// 128 random bits (see [`Nonce`]). A server lets each user read only its own
    /// `jetcc.reply.<user>.>`, and nobody can guess another client's.
    pub fn reply_subject(&self, user: &str, token: &Nonce) -> Result<String, NameError> {
        user_token(user)?;
        Ok(format!("{}.reply.{user}.{token}", self.prefix))
    }

    /// The user a job's reply subject names, if `subject` is one of this prefix's reply
    /// subjects exactly as [`Names::reply_subject`] spells them. Workers publish where a job
    /// says, so they check it first.
    pub fn reply_subject_user<'a>(&self, subject: &'a str) -> Option<&'a str> {
        self.user_and_nonce(subject, ".reply.")
    }

    /// Where a client answers a worker's `Started` (it still waits for the job):
    /// `jetcc.answer.<worker user>.<token>`. Only that worker user may read it, and clients
    /// may publish there but into nobody's inbox.
    pub fn answer_subject(&self, user: &str, token: &Nonce) -> Result<String, NameError> {
        user_token(user)?;
        Ok(format!("{}.answer.{user}.{token}", self.prefix))
    }

    /// Whether `subject` is one of this prefix's answer subjects, exactly as
    /// [`Names::answer_subject`] spells them: the only place a client sends an answer to.
    pub fn is_answer_subject(&self, subject: &str) -> bool {
        self.user_and_nonce(subject, ".answer.").is_some()
    }

    /// `<prefix><kind><user>.<nonce>`'s user, or `None` if `subject` is not that.
    fn user_and_nonce<'a>(&self, subject: &'a str, kind: &str) -> Option<&'a str> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(kind)?;
        let (user, nonce) = rest.split_once('.')?;
        user_token(user).ok()?;
        Nonce::parse(nonce).ok()?;
        Some(user)
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
                rule: HEX_RULE,
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

/// 128 random bits as 32 lowercase hex digits: what makes a reply or answer subject
/// unguessable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce(String);

impl Nonce {
    pub fn from_bytes(bytes: [u8; 16]) -> Nonce {
        Nonce(JobId::from_bytes(bytes).0)
    }

    pub fn parse(s: &str) -> Result<Nonce, NameError> {
        JobId::parse(s)
            .map(|id| Nonce(id.0))
            .map_err(|e| NameError { what: "nonce", ..e })
    }
}

impl From<Nonce> for JobId {
    /// A job id is 128 random bits too.
    fn from(nonce: Nonce) -> JobId {
        JobId(nonce.0)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a connection without a user name (anonymous, a token, creds alone) puts where
/// subjects name the user.
pub const NO_USER: &str = "_";

/// A NATS user name as one subject token (in inbox, reply and answer subjects): letters,
/// digits, `-` and `_`, at most 64. A server's permissions name the user exactly, so it is
/// refused rather than changed.
pub fn user_token(user: &str) -> Result<(), NameError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what: "NATS user name",
            value: user.to_owned(),
            rule: USER_RULE,
        })
    }
}

/// The inbox prefix of a connection as `user` (see [`user_token`]): `_INBOX.<user>`, so a
/// server can let each user read only its own inboxes; `_INBOX` without a user.
pub fn inbox_prefix(user: &str) -> String {
    match user {
        NO_USER => "_INBOX".to_owned(),
        user => format!("_INBOX.{user}"),
    }
}

/// The key of an invocation's shared manifest in KV `jetcc-ac`.
pub fn ac_manifest_key(invocation: &Digest) -> String {
    format!("m.{}", invocation.hex())
}

/// The key of a shared result entry in KV `jetcc-ac`.
pub fn ac_entry_key(key: &Digest) -> String {
    format!("e.{}", key.hex())
}

/// A toolchain identity as a name token (64 bits of its digest: plenty to tell toolchains apart).
/// The last token of [`Names::shipped_subject`].
const SHIPPED: &str = "shipped";

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
            rule: TOKEN_RULE,
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
        assert_eq!(
            n.shipped_subject("x86_64-unknown-linux-gnu").unwrap(),
            "jetcc.jobs.x86_64-unknown-linux-gnu.shipped"
        );
        assert_eq!(
            n.shipped_consumer("x86_64-unknown-linux-gnu").unwrap(),
            "shipped-x86_64-unknown-linux-gnu"
        );
        assert!(n.shipped_subject("a.>").is_err());
        assert_eq!(n.cas_bucket(), "jetcc-cas");
        assert_eq!(n.ac_bucket(), "jetcc-ac");
        assert_eq!(n.workers_bucket(), "jetcc-workers");
        assert_eq!(n.toolchains_bucket(), "jetcc-toolchains");
        let nonce = Nonce::from_bytes([0xab; 16]);
        assert_eq!(
            n.reply_subject("publisher", &nonce).unwrap(),
            format!("jetcc.reply.publisher.{nonce}")
        );
        assert_eq!(
            n.answer_subject("worker-a", &nonce).unwrap(),
            format!("jetcc.answer.worker-a.{nonce}")
        );
        assert_eq!(inbox_prefix("publisher"), "_INBOX.publisher");
        assert_eq!(inbox_prefix(NO_USER), "_INBOX");
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
        let nonce = Nonce::from_bytes([1; 16]);
        for bad_user in ["a.>", "a b", "*", "", &"u".repeat(65)] {
            assert!(n.reply_subject(bad_user, &nonce).is_err(), "{bad_user:?}");
            assert!(user_token(bad_user).is_err(), "{bad_user:?}");
        }
        let reply = n.reply_subject("CI_agent-1", &nonce).unwrap();
        assert_eq!(n.reply_subject_user(&reply), Some("CI_agent-1"));
        assert!(!n.is_answer_subject(&reply));
        let answer = n.answer_subject("worker-a", &nonce).unwrap();
        assert!(n.is_answer_subject(&answer));
        assert_eq!(n.reply_subject_user(&answer), None);
        for bad in [
            "jetcc.reply.a.0101010101010101010101010101010",
            "team-a.reply.a.b",
            "team-a.jobs.x",
            "team-a.replyx",
            "team-a.reply.>",
            "team-a.reply.*.01010101010101010101010101010101",
            "team-a.reply.a b.01010101010101010101010101010101",
            "team-a.reply.a.b.01010101010101010101010101010101",
            "team-a.reply.a.01010101010101010101010101010101.x",
            "team-a.reply.a.0101010101010101010101010101010g",
            "team-a.reply.a.0101010101010101010101010101010",
            "team-a.reply.a.01010101010101010101010101010101 ",
            "team-a.reply..01010101010101010101010101010101",
        ] {
            assert_eq!(n.reply_subject_user(bad), None, "{bad:?}");
            assert!(!n.is_answer_subject(bad), "{bad:?}");
        }
        assert_eq!(
            n.reply_subject_user("team-a.reply.a.01010101010101010101010101010101"),
            Some("a")
        );
        assert!(JobId::parse("not-hex").is_err());
        assert!(JobId::parse(&"0".repeat(32)).is_ok());
    }
}
