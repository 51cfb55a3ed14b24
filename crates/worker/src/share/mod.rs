//! Recording a farm job's result in the farm's shared cache (KV `jetcc-ac`): the worker that
//! ran the job writes the entry and the manifest entry that finds it, under the key it
//! computed itself from the job's own content ([`key`]) with the client's own key code, so
//! any client's lookup (which checks each source by stat or hash) finds it. A client sends no
//! key and writes no result: one whose role may not write the cache (`publisher`) still
//! shares its farm compiles, and cannot file bytes of its choosing under another's key.
//!
//! Only rustc jobs are recorded; a C compile's result is shared by its client where that
//! client may write (a trusted `writer`).

mod key;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::SystemTime;

use jetcc_common::depinfo::DepInfo;
use jetcc_common::farm::Resources;
use jetcc_common::manifest::ManifestEntry;
use jetcc_common::protocol::job::JobRequest;
use jetcc_common::result::{CacheEntry, OutputFile, FORMAT_VERSION};
use jetcc_common::Digest;

use crate::toolchains::Toolchain;
use key::JobKey;

/// Why a job's result is not recorded (its client got it all the same).
#[derive(Debug, thiserror::Error)]
pub enum NotRecorded {
    /// A C compile: its client shares it, where it may.
    #[error("not a rustc job")]
    NotRustc,
    /// Compiled with a toolchain its client shipped: the identity the job names is the
    /// client's word, so its result is not shared (docs/security.md).
    #[error("it ran with a shipped toolchain")]
    Shipped,
    #[error("an argument file ({0}) would be read outside the jail")]
    ArgFile(String),
    #[error("the arguments do not parse: {0}")]
    Args(String),
    #[error("jetcc does not cache this invocation: {0}")]
    NotCacheable(String),
    #[error("it links: its linker and libraries are not the job's")]
    Links,
    #[error("its out-dir or outputs are not the ones its arguments write")]
    Outputs,
    #[error("its path remaps are not the ones its key paths imply")]
    Remaps,
    #[error("env var {0} is neither keyed nor read through env!")]
    Env(String),
    #[error("env var {0} is given twice")]
    EnvTwice(String),
    #[error("input {0} is listed twice")]
    InputTwice(String),
    #[error("{0}")]
    Key(#[from] jetcc_common::key::KeyError),
    #[error("its dep-info lists {0}, which is not among its inputs")]
    SourceNotInput(String),
    #[error("cannot read output {name}: {why}")]
    Output { name: String, why: String },
    #[error("output {0} is not what was uploaded")]
    OutputChanged(String),
}

/// A job rustc ran to the end with exit code 0, its outputs uploaded.
pub struct Ran<'a> {
    pub job: &'a JobRequest,
    /// The toolchain it ran with (its identity is the job's).
    pub toolchain: &'a Toolchain,
    /// The out-dir on the worker's disk, still holding the outputs.
    pub out_dir: &'a Path,
    /// Every output, by name, as uploaded to the CAS.
    pub outputs: &'a [(String, Digest)],
    pub stdout: &'a [u8],
    pub stderr: &'a [u8],
    pub compile_ms: u64,
    /// `[worker] disk_limit`: no output read back is larger.
    pub disk_limit: u64,
}

/// Records the result of `ran` in the shared cache; logs why not if it cannot be.
pub async fn record(res: &Resources, ran: Ran<'_>) {
    let job = ran.job;
    let recorded = match result_of(ran).await {
        Ok((invocation, found, entry)) => res.put_result(&invocation, found, &entry).await,
        Err(NotRecorded::NotRustc) => return,
        Err(why) => {
            tracing::info!(
                job = job.job_id,
                crate_name = job.crate_name,
                "result not recorded: {why}"
            );
            return;
        }
    };
    match recorded {
        Ok(()) => tracing::debug!(
            job = job.job_id,
            crate_name = job.crate_name,
            "result recorded"
        ),
        Err(e) => tracing::warn!(
            job = job.job_id,
            crate_name = job.crate_name,
            "cannot record the result in the shared cache: {e}"
        ),
    }
}

/// One output as the entry names it, with the local roots its bytes name.
struct Taken {
    file: OutputFile,
    local_roots: Vec<String>,
}

/// The invocation digest, manifest entry and cache entry of a finished job, as a client
/// storing the same compile would write them.
async fn result_of(ran: Ran<'_>) -> Result<(Digest, ManifestEntry, CacheEntry), NotRecorded> {
    if ran.toolchain.sysroot.is_none() {
        return Err(NotRecorded::NotRustc);
    }
    if ran.toolchain.shipped.is_some() {
        return Err(NotRecorded::Shipped);
    }
    let job = ran.job;
    let k = JobKey::of(job, &ran.toolchain.identity)?;
    let dep_name = k.outputs.dep_info.clone();
    let dir = ran.out_dir.to_path_buf();
    let names: Vec<(String, Option<Digest>)> = k
        .outputs
        .files
        .iter()
        .map(|n| (n.clone(), uploaded(ran.outputs, n)))
        .collect();
    let map = k.map.clone();
    let max = ran.disk_limit;
    let (dep_text, taken) =
        tokio::task::spawn_blocking(move || take_outputs(&dir, &names, &dep_name, &map, max))
            .await
            .map_err(|e| NotRecorded::Output {
                name: "(all)".into(),
                why: e.to_string(),
            })??;
    let (sources, env_deps) = k.sources(job, &DepInfo::parse(&dep_text))?;
    let mut local_roots: Vec<String> = Vec::new();
    for root in taken.iter().flat_map(|t| &t.local_roots) {
        if !local_roots.contains(root) {
            local_roots.push(root.clone());
        }
    }
    let key = jetcc_common::key::result_key(&k.digest, &sources, &env_deps, &local_roots);
    let dep_stored =
        String::from_utf8(k.map.store(dep_text.as_bytes())).map_err(|e| NotRecorded::Output {
            name: k.outputs.dep_info.clone(),
            why: e.to_string(),
        })?;
    let entry = CacheEntry {
        version: FORMAT_VERSION,
        outputs: taken.into_iter().map(|t| t.file).collect(),
        dep_info: Some((k.outputs.dep_info.clone(), dep_stored)),
        stdout: k.map.store(ran.stdout),
        stderr: k.map.store(ran.stderr),
        exit_code: 0,
        compile_ms: ran.compile_ms,
    };
    let found = ManifestEntry {
        sources,
        env_deps,
        local_roots,
        key,
        stored_at: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    Ok((k.digest, found, entry))
}

fn uploaded(outputs: &[(String, Digest)], name: &str) -> Option<Digest> {
    outputs.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
}

/// Reads the outputs back (each must be what was uploaded): the dep-info's text, and the
/// others as the entry names them, in the order the arguments write them.
fn take_outputs(
    dir: &Path,
    names: &[(String, Option<Digest>)],
    dep_info: &str,
    map: &jetcc_common::pathmap::PathMap,
    max: u64,
) -> Result<(String, Vec<Taken>), NotRecorded> {
    let mut dep_text = None;
    let mut taken = Vec::new();
    for (name, uploaded) in names {
        let failed = |why: String| NotRecorded::Output {
            name: name.clone(),
            why,
        };
        let path = dir.join(name);
        let bytes = crate::job::read_output(&path, max).map_err(|e| failed(e.to_string()))?;
        let digest = Digest::of_bytes(&bytes);
        if Some(digest) != *uploaded {
            return Err(NotRecorded::OutputChanged(name.clone()));
        }
        if name == dep_info {
            dep_text = Some(String::from_utf8(bytes).map_err(|e| failed(e.to_string()))?);
            continue;
        }
        let mode = std::fs::symlink_metadata(&path)
            .map_err(|e| failed(e.to_string()))?
            .permissions()
            .mode()
            & 0o777;
        let roots = map
            .local_roots_in(&bytes)
            .into_iter()
            .map(str::to_owned)
            .collect();
        taken.push(Taken {
            file: OutputFile {
                name: name.clone(),
                digest,
                size: bytes.len() as u64,
                mode,
            },
            local_roots: roots,
        });
    }
    let dep_text = dep_text.ok_or_else(|| NotRecorded::Output {
        name: dep_info.to_owned(),
        why: "not written".into(),
    })?;
    Ok((dep_text, taken))
}
