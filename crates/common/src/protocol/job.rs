//! Job messages: what a client publishes on the work queue ([`JobRequest`]) and what a worker
//! sends back on the job's reply subject ([`JobEvent`]). rmp-serde, versioned, and checked on
//! decode: a worker must survive garbage, oversized and hostile jobs, so decoding bounds the
//! size first and validates every path and name after.
//!
//! Files are named by digest; the big ones travel through the CAS. Small ones ride along
//! ([`INLINE_BYTES`] a message): a job carries its small inputs' bytes, so its client does not
//! look each up and upload it (three round trips) and its worker does not fetch it (two);
//! an event carries a small output's bytes, so the client does not fetch it. Either side
//! takes a blob only for a file named with the digest of its bytes ([`by_digest`]).

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PROTOCOL_VERSION;
use crate::digest::{Digest, KeyHasher};
use crate::result::is_plain_name;

/// Largest encoded job accepted (a crate with thousands of inputs is well below).
pub const MAX_JOB_BYTES: usize = 4 << 20;
/// Largest encoded event accepted.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// Most file bytes one job or event carries inline (well under [`MAX_EVENT_BYTES`] and NATS's
/// default 1 MiB payload): a tiny crate's sources and outputs all fit, a big rlib goes to the
/// CAS.
pub const INLINE_BYTES: usize = 256 << 10;
const MAX_ARGS: usize = 10_000;
const MAX_ENV: usize = 4_000;
const MAX_INPUTS: usize = 100_000;
const MAX_STRING: usize = 64 << 10;
/// Most output files one job may name (a rustc invocation writes a handful).
pub const MAX_OUTPUTS: usize = 256;

/// A compile job, as published on the work queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    pub version: u16,
    /// 32 hex digits (see [`super::names::JobId`]).
    pub job_id: String,
    pub reply_subject: String,
    /// For logs and the monitor.
    pub crate_name: String,
    /// After this (milliseconds since the epoch) the client has moved on: drop the job unrun.
    pub deadline_unix_ms: u64,
    /// The compiler identity the job needs: a rustc's (`toolchain::identity`) or a C/C++
    /// compiler's (`toolchain::c_compiler`). The worker runs the compiler it names.
    pub toolchain: Digest,
    /// The compiler's arguments as the client would run them, with client paths.
    pub args: Vec<String>,
    /// The env rustc is to see (the keyed `CARGO_*` vars and `OUT_DIR`-like paths).
    pub env: Vec<(String, String)>,
    /// The client's absolute cwd.
    pub cwd: String,
    /// Every file the compiler will read, by the client's absolute path.
    pub inputs: Vec<InputFile>,
    /// Files the worker must have of its own, identical, under [`SYSTEM_DIRS`]: a C
    /// compiler's system headers. Never shipped; a worker whose own file has another digest
    /// refuses the job (its libc's headers would make another object).
    pub system_inputs: Vec<InputFile>,
    /// Directories that must exist though they hold no input: rustc walks through them on
    /// its way to one (libc's `#[path = "nptl/bits/../../x86/…"]` needs `nptl/bits`).
    pub dirs: Vec<String>,
    /// The client's absolute out-dir, and the file names rustc will write there.
    pub out_dir: String,
    pub outputs: Vec<String>,
    /// How the client names paths in its keys, for the worker that records the result.
    pub key_paths: KeyPaths,
    /// The client's own toolchain, shipped: the digest of its
    /// [`ToolchainPack`](super::pack::ToolchainPack) in the CAS. A worker without
    /// [`JobRequest::toolchain`] of its own fetches and unpacks it and runs the job with it;
    /// such a job's result is not recorded in the shared cache (see docs/security.md).
    pub shipped: Option<Digest>,
    /// The bytes of small inputs (at most [`INLINE_BYTES`] in all), matched to `inputs` by
    /// digest ([`by_digest`]); the others are in the CAS. Not part of the job's identity
    /// ([`JobRequest::dedup_key`]): the digests already say what these bytes are.
    pub inline: Vec<bytes::Bytes>,
}

/// What a client's `PathMap` was built from that a worker cannot read off the job (its
/// `[cache] paths` mode, `base_dirs`, and the portable roots its env does not carry), so the
/// worker that ran the job computes the very key the client would for its result. These only
/// say how paths are *named* in the key (which prefix becomes which placeholder, and which
/// `--remap-path-prefix` arguments the job must carry), never which content is keyed: every
/// file's digest comes from the job's own inputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPaths {
    /// Paths were portable (`[cache] paths = "portable"`, and no remaps of the
    /// invocation's own).
    pub portable: bool,
    /// `base_dirs`, absolute.
    pub base_dirs: Vec<String>,
    /// `CARGO_HOME` and `$HOME` as the client's portable roots saw them.
    pub cargo_home: Option<String>,
    pub home: Option<String>,
}

/// The directories every worker binds read-only into each job from its own system, where a
/// job's [`JobRequest::system_inputs`] must lie.
pub const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/lib", "/lib64"];

/// Whether `path` (absolute) lies in one of [`SYSTEM_DIRS`].
pub fn is_system_path(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|d| path.starts_with(d))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    pub mode: u32,
}

/// What travels on a job's reply subject: one [`JobEvent`], bound to the job it is about and
/// the worker that sends it. A client takes only its own job's events, and after `Started`
/// only from the worker that started it: anything else on its subject is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReply {
    /// The job's [`JobRequest::job_id`]: known to its client and to the worker that pulled it.
    pub job_id: String,
    /// The sending worker's id (`WorkerStatus::id`).
    pub worker: String,
    pub event: JobEvent,
}

impl JobReply {
    pub fn encode(&self) -> Vec<u8> {
        JobReply::encode_parts(&self.job_id, &self.worker, &self.event)
    }

    /// The encoding of a `JobReply` of these parts, without copying the event.
    pub fn encode_parts(job_id: &str, worker: &str, event: &JobEvent) -> Vec<u8> {
        /// `JobReply`, borrowed: the same fields in the same order encode the same.
        #[derive(Serialize)]
        struct Parts<'a> {
            job_id: &'a str,
            worker: &'a str,
            event: &'a JobEvent,
        }
        rmp_serde::to_vec(&Parts {
            job_id,
            worker,
            event,
        })
        .expect("a reply always serializes")
    }

    /// Decodes untrusted bytes: bounded, output names checked.
    pub fn decode(bytes: &[u8]) -> Result<JobReply, ProtocolError> {
        let reply: JobReply = decode_bounded(bytes, MAX_EVENT_BYTES)?;
        reply.event.check()?;
        Ok(reply)
    }
}

/// What a worker reports on a job's reply subject, in order (each in a [`JobReply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A worker took the job. Sent with an answer subject: a client that no longer waits (it
    /// gave up and compiled locally, or died) has no subscription and does not answer, so the
    /// worker drops the job unrun.
    Started,
    /// One line rustc wrote to stderr.
    Stderr(Vec<u8>),
    /// rustc's notice that it wrote an output (`{"$message_type":"artifact",…}`): the file is
    /// already in the CAS, so the client writes it before passing the line on to cargo, which
    /// may start dependents on an rmeta at once (pipelining across the farm).
    Artifact {
        name: String,
        digest: Digest,
        line: Vec<u8>,
        /// The file's bytes when small ([`INLINE_BYTES`]); else it is in the CAS.
        inline: Option<bytes::Bytes>,
    },
    /// rustc finished; outputs are in the CAS under these digests, or for small ones in
    /// `inline` (matched to `outputs` by digest).
    Done {
        exit_code: i32,
        stdout: Vec<u8>,
        outputs: Vec<(String, Digest)>,
        /// How long rustc ran on the worker (what the client's wait is compared with).
        compile_ms: u64,
        inline: Vec<bytes::Bytes>,
    },
    /// The worker could not run the job; the client compiles locally.
    Refused { reason: String },
}

/// What a worker keeps, under the job's [`JobRequest::dedup_key`], in the short-lived
/// heartbeat bucket while it runs a job and for a while after. A client whose job was
/// de-duplicated (an identical one was already queued) follows the one that runs through it:
/// unlike the reply subject's events, a state can be read late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// A worker runs it; refreshed while rustc runs, so a dead worker's entry expires.
    Running { worker: String },
    /// rustc finished: everything a client needs to write the outputs and replay rustc.
    Done {
        exit_code: i32,
        stdout: Vec<u8>,
        /// Every line rustc wrote to stderr, artifact notices included, in order.
        stderr: Vec<u8>,
        /// Every output, by name, in the CAS.
        outputs: Vec<(String, Digest)>,
        compile_ms: u64,
    },
    /// The worker could not run it (the followers compile locally).
    Refused { reason: String },
}

impl JobState {
    /// Its key in the heartbeat bucket.
    pub fn key(dedup: &Digest) -> String {
        format!("job.{}", &dedup.hex()[..32])
    }

    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a job state always serializes")
    }

    /// Decodes untrusted bytes: bounded, output names checked as in [`JobEvent::decode`].
    pub fn decode(bytes: &[u8]) -> Result<JobState, ProtocolError> {
        let state: JobState = decode_bounded(bytes, MAX_EVENT_BYTES)?;
        if let JobState::Done { outputs, .. } = &state {
            plain_names(outputs.iter().map(|(n, _)| n))?;
        }
        Ok(state)
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("protocol version {0} is not {PROTOCOL_VERSION}")]
    Version(u16),
    #[error("invalid job field {field}: {why}")]
    Invalid { field: &'static str, why: String },
}

impl JobRequest {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("a job always serializes")
    }

    /// Decodes and validates a job from untrusted bytes.
    pub fn decode(bytes: &[u8]) -> Result<JobRequest, ProtocolError> {
        let job = JobRequest::decode_unchecked(bytes)?;
        job.validate()?;
        Ok(job)
    }

    /// Decodes without validating the fields, so a worker can still tell the sender why its
    /// job was refused. Run [`JobRequest::validate`] before using anything else in it.
    pub fn decode_unchecked(bytes: &[u8]) -> Result<JobRequest, ProtocolError> {
        decode_bounded(bytes, MAX_JOB_BYTES)
    }

    /// Identical jobs (the same everything but id, reply subject and deadline) have the same
    /// key: it is their `Nats-Msg-Id`, so JetStream queues one of them, and the key of the
    /// [`JobState`] that the others follow. The worker computes it from the job it runs, so a
    /// state is always that of a job with this content.
    pub fn dedup_key(&self) -> Digest {
        let mut h = KeyHasher::new("jetcc-job-dedup");
        let count = |h: &mut KeyHasher, n: usize| {
            h.field(&(n as u64).to_le_bytes());
        };
        h.digest(&self.toolchain).str(&self.cwd).str(&self.out_dir);
        if let Some(pack) = &self.shipped {
            h.str("shipped").digest(pack);
        }
        count(&mut h, self.args.len());
        for arg in &self.args {
            h.str(arg);
        }
        count(&mut h, self.env.len());
        for (k, v) in &self.env {
            h.str(k).str(v);
        }
        count(&mut h, self.inputs.len());
        for i in &self.inputs {
            h.str(&i.path)
                .digest(&i.digest)
                .field(&i.mode.to_le_bytes());
        }
        count(&mut h, self.system_inputs.len());
        for i in &self.system_inputs {
            h.str(&i.path).digest(&i.digest);
        }
        count(&mut h, self.dirs.len());
        for d in &self.dirs {
            h.str(d);
        }
        count(&mut h, self.outputs.len());
        for o in &self.outputs {
            h.str(o);
        }
        let k = &self.key_paths;
        h.str(if k.portable { "portable" } else { "exact" });
        count(&mut h, k.base_dirs.len());
        for b in &k.base_dirs {
            h.str(b);
        }
        for root in [&k.cargo_home, &k.home] {
            h.str(root.as_deref().unwrap_or(""));
        }
        h.finish()
    }

    pub fn validate(&self) -> Result<(), ProtocolError> {
        let invalid = |field, why: &str| ProtocolError::Invalid {
            field,
            why: why.to_owned(),
        };
        if self.version != PROTOCOL_VERSION {
            return Err(ProtocolError::Version(self.version));
        }
        super::names::JobId::parse(&self.job_id).map_err(|e| invalid("job_id", &e.to_string()))?;
        if self.args.len() > MAX_ARGS
            || self.env.len() > MAX_ENV
            || self.inputs.len() > MAX_INPUTS
            || self.system_inputs.len() > MAX_INPUTS
            || self.dirs.len() > MAX_INPUTS
        {
            return Err(invalid("args/env/inputs", "too many entries"));
        }
        let strings = self
            .args
            .iter()
            .chain(self.env.iter().flat_map(|(k, v)| [k, v]));
        if strings
            .clone()
            .any(|s| s.len() > MAX_STRING || s.contains('\0'))
        {
            return Err(invalid("args/env", "a value is too long or holds NUL"));
        }
        absolute_clean(&self.cwd).map_err(|why| invalid("cwd", &why))?;
        absolute_clean(&self.out_dir).map_err(|why| invalid("out_dir", &why))?;
        for input in &self.inputs {
            absolute_clean(&input.path).map_err(|why| invalid("inputs", &why))?;
        }
        for input in &self.system_inputs {
            absolute_clean(&input.path).map_err(|why| invalid("system_inputs", &why))?;
            if !is_system_path(Path::new(&input.path)) {
                return Err(invalid(
                    "system_inputs",
                    &format!("{:?} is not under {}", input.path, SYSTEM_DIRS.join(", ")),
                ));
            }
        }
        for dir in &self.dirs {
            absolute_clean(dir).map_err(|why| invalid("dirs", &why))?;
        }
        let k = &self.key_paths;
        if k.base_dirs.len() > MAX_ARGS {
            return Err(invalid("key_paths", "too many base dirs"));
        }
        let roots = k.base_dirs.iter().chain(&k.cargo_home).chain(&k.home);
        for root in roots {
            absolute_clean(root).map_err(|why| invalid("key_paths", &why))?;
        }
        if let Some(bad) = self.outputs.iter().find(|o| !is_plain_name(o)) {
            return Err(invalid(
                "outputs",
                &format!("{bad:?} is not a plain file name"),
            ));
        }
        if self.inline.len() > self.inputs.len()
            || self.inline.iter().map(|b| b.len()).sum::<usize>() > INLINE_BYTES
        {
            return Err(invalid(
                "inline",
                &format!("more blobs than inputs, or over {INLINE_BYTES} bytes"),
            ));
        }
        if self.outputs.len() > MAX_OUTPUTS {
            return Err(invalid(
                "outputs",
                &format!("{} outputs, at most {MAX_OUTPUTS}", self.outputs.len()),
            ));
        }
        self.check_layout()
    }

    /// Checks that the job's paths lay out as one tree: no input listed twice (`/a//b` and
    /// `/a/b/` name the same file), and no input file where another input, a listed dir, the
    /// cwd or the out-dir needs a directory. Laid out otherwise, a second input would be
    /// written over the first: through its hard link, into the worker's blob cache.
    fn check_layout(&self) -> Result<(), ProtocolError> {
        let invalid = |why: String| ProtocolError::Invalid {
            field: "inputs",
            why,
        };
        let normal = |p: &str| Path::new(p).components().collect::<PathBuf>();
        let mut files = HashSet::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let path = normal(&input.path);
            if path.file_name().is_none() {
                return Err(invalid(format!("{:?} names no file", input.path)));
            }
            if !files.insert(path) {
                return Err(invalid(format!("{:?} is listed twice", input.path)));
            }
        }
        // Each path with the first of its components that must be a directory.
        let inputs = self.inputs.iter().map(|i| (normal(&i.path), 1));
        let dirs = self.dirs.iter().chain([&self.cwd, &self.out_dir]);
        let needs_dirs = inputs.chain(dirs.map(|d| (normal(d), 0)));
        for (path, skip) in needs_dirs {
            if let Some(file) = path.ancestors().skip(skip).find(|a| files.contains(*a)) {
                return Err(invalid(format!(
                    "{} is an input file and also a directory on the way to {}",
                    file.display(),
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

/// Blobs sent inline, by the digest of their bytes: each is taken only for a file named with
/// that digest, so a corrupt or foreign blob is never written (the file is fetched from the
/// CAS instead).
pub fn by_digest(blobs: &[bytes::Bytes]) -> std::collections::HashMap<Digest, &bytes::Bytes> {
    blobs.iter().map(|b| (Digest::of_bytes(b), b)).collect()
}

impl JobEvent {
    /// Output names must be plain file names.
    fn check(&self) -> Result<(), ProtocolError> {
        let names: Vec<&String> = match self {
            JobEvent::Done { outputs, .. } => outputs.iter().map(|(n, _)| n).collect(),
            JobEvent::Artifact { name, .. } => vec![name],
            _ => vec![],
        };
        plain_names(names.into_iter())
    }
}

/// Decodes an rmp-serde message from untrusted bytes, refusing more than `max` of them before
/// looking inside.
pub(super) fn decode_bounded<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<T, ProtocolError> {
    if bytes.len() > max {
        return Err(ProtocolError::TooLarge(bytes.len()));
    }
    rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

fn plain_names<'a>(mut names: impl Iterator<Item = &'a String>) -> Result<(), ProtocolError> {
    match names.find(|name| !is_plain_name(name)) {
        Some(bad) => Err(ProtocolError::Invalid {
            field: "outputs",
            why: format!("{bad:?} is not a plain file name"),
        }),
        None => Ok(()),
    }
}

/// An absolute path with no `.` or `..` components and no NUL: safe to lay out under a job
/// root without escaping it.
fn absolute_clean(path: &str) -> Result<(), String> {
    if path.len() > MAX_STRING || path.contains('\0') {
        return Err(format!("{path:?} is too long or holds NUL"));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} is not absolute"));
    }
    if p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || path.contains("/./")
    {
        return Err(format!("{path:?} has . or .. components"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
