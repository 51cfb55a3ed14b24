//! What a job reads, and getting it to the workers: the pre-passes that list every file the
//! compile reads (rustc's dep-info, transitive crates included; a C compiler's `-M`), the
//! unit's remembered listing, or on its first job a guess (`super::guess`), that spare a rustc
//! job its pre-pass (`common::listing`), and the CAS uploads and downloads.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use jetcc_common::args::{RustcArgs, SearchKind};
use jetcc_common::cache::DiskCache;
use jetcc_common::ccargs::CcArgs;
use jetcc_common::depinfo::{self, DepInfo};
use jetcc_common::farm::Resources;
use jetcc_common::files::FileDigests;
use jetcc_common::fsutil::normalize;
use jetcc_common::key::{is_keyed_env, is_native_lib};
use jetcc_common::listing::{self, Listing, Remembered};
use jetcc_common::protocol::job::{is_system_path, InputFile, INLINE_BYTES};
use jetcc_common::{environ, fsutil, toolchain, Digest};

use super::guess::{self, Package};
use super::{JobKind, RemoteCompile, RemoteError};
use crate::invocation::Invocation;
use crate::record;

/// What a job reads, listed for the worker.
pub(super) struct Listed {
    pub inputs: Vec<InputFile>,
    /// Files of the worker's own system the compile reads (a C compile's system headers).
    pub system_inputs: Vec<InputFile>,
    /// Directories the compiler walks through (`..` in paths) that must exist on the worker.
    pub dirs: Vec<PathBuf>,
    /// The env the compiler is to see on the worker.
    pub env: Vec<(String, String)>,
    /// Listed without a pre-pass: what the compile read must be checked against its
    /// dep-info before its result is used ([`listing::stale`]).
    pub unchecked: Option<Unchecked>,
}

/// A job listed without a pre-pass.
pub(super) struct Unchecked {
    /// Where the unit's listing is filed, to forget it if it turns out stale.
    pub unit: Digest,
    /// The files it listed.
    pub files: Vec<PathBuf>,
    pub from: ListedFrom,
}

/// Where a job listed without a pre-pass got its listing.
pub(super) enum ListedFrom {
    /// The unit's last job.
    Listing,
    /// A guess, on the unit's first job: the crate files it listed (which dep-info does not
    /// name) go into the listing remembered after it ([`narrowed`]).
    Guess { crates: Vec<PathBuf> },
}

impl Unchecked {
    /// Whether `e` says this listing does not fit the unit: its next job pre-passes. A guess
    /// the worker refused (too large, say) is not tried again either.
    pub fn failed_with(&self, e: &RemoteError) -> bool {
        match e {
            RemoteError::Failed { .. } | RemoteError::StaleListing(_) => true,
            RemoteError::Refused(_) => matches!(self.from, ListedFrom::Guess { .. }),
            _ => false,
        }
    }
}

/// Lists every file the compile reads (the pre-passes below), with digests, sizes and
/// modes, and the env it needs.
pub(super) fn list(r: &mut RemoteCompile<'_>, cache: &DiskCache) -> Result<Listed, RemoteError> {
    let mut unchecked = None;
    let (read, dirs, env) = match r.kind {
        JobKind::Rustc(inv) => {
            let ((mut read, dirs, env_deps), listed) = rustc_listing(r, inv, cache)?;
            unchecked = listed;
            // Native libraries a bundling rlib reads (not in dep-info), as the key lists them.
            read.extend(native_libs(r.cwd, &inv.args));
            read.sort();
            read.dedup();
            // An allowlist: nothing else of this machine's env (its credentials) leaves it.
            let vars =
                environ::utf8_vars(is_keyed_env).map_err(|e| RemoteError::Env(e.to_string()))?;
            let env = environ::job_env(&vars, is_keyed_env, &env_deps)
                .map_err(|e| RemoteError::Env(e.to_string()))?;
            (read, dirs, env)
        }
        JobKind::C(args) => c_prepass(r, args)?,
    };
    let own = own_dirs(r);
    let mut listed = Listed {
        inputs: Vec::with_capacity(read.len()),
        system_inputs: Vec::new(),
        dirs,
        env,
        unchecked,
    };
    // A guess lists what is there: a file it cannot read is left out (rustc could not
    // read it either), where a file a compile read must be sent.
    let guessed = matches!(
        listed.unchecked,
        Some(Unchecked {
            from: ListedFrom::Guess { .. },
            ..
        })
    );
    if let JobKind::Rustc(inv) = r.kind {
        if inv.outputs.links {
            listed.system_inputs = link_inputs(r.files, &cache.toolchain_memo_dir())?;
        }
    }
    for path in read {
        let meta = std::fs::metadata(&path);
        let digest = r.files.digest(&path.to_string_lossy());
        let (meta, digest) = match (meta, digest) {
            (Ok(meta), Some(digest)) => (meta, digest),
            _ if guessed => continue,
            (Err(e), _) => {
                let why = format!("cannot stat {}: {e}", path.display());
                return Err(RemoteError::Local(why));
            }
            (Ok(_), None) => {
                return Err(RemoteError::Local(format!(
                    "cannot read {}",
                    path.display()
                )))
            }
        };
        let input = InputFile {
            path: path.to_string_lossy().into_owned(),
            digest,
            size: meta.len(),
            mode: meta.permissions().mode(),
        };
        let system = matches!(r.kind, JobKind::C(_))
            && is_system_path(&path)
            && !own.iter().any(|d| path.starts_with(d));
        match system {
            true => listed.system_inputs.push(input),
            false => listed.inputs.push(input),
        }
    }
    Ok(listed)
}

/// The driver a jailed rustc runs to link (`cc` on the jail's `PATH`, `/usr/bin:/bin`).
const JAIL_LINKER: &str = "/usr/bin/cc";

/// What a link reads of this machine's system (`toolchain::link_files`), for the worker to
/// check against its own: the driver, its C runtime and libraries. Only where our `cc` is the
/// one a jailed rustc runs.
fn link_inputs(files: &mut FileDigests, memo: &Path) -> Result<Vec<InputFile>, RemoteError> {
    let paths = toolchain::link_files(Path::new("cc"), memo)
        .map_err(|e| RemoteError::Linker(format!("cannot list what a link reads: {e}")))?;
    if paths.first().map(PathBuf::as_path) != Some(Path::new(JAIL_LINKER)) {
        return Err(RemoteError::Linker(format!(
            "the linker `cc` here is not {JAIL_LINKER}, the one a worker runs"
        )));
    }
    paths
        .iter()
        .map(|path| {
            let text = path.to_string_lossy().into_owned();
            let digest = files.digest(&text);
            let meta = std::fs::metadata(path);
            match (digest, meta) {
                (Some(digest), Ok(meta)) if is_system_path(path) => Ok(InputFile {
                    path: text,
                    digest,
                    size: meta.len(),
                    mode: meta.permissions().mode(),
                }),
                _ => Err(RemoteError::Linker(format!(
                    "cannot name {} for a worker's link",
                    path.display()
                ))),
            }
        })
        .collect()
}

/// A rustc job's files, dirs and env deps, and where they were listed from without a
/// pre-pass: the unit's remembered listing when it has one whose files all still exist; on
/// its first job, a guess (`super::guess`) where one is cheap; else a dep-info pre-pass,
/// whose listing is remembered for the unit's next job. A job is only listed without a
/// pre-pass where it writes dep-info, which shows what it read.
fn rustc_listing(
    r: &RemoteCompile<'_>,
    inv: &Invocation,
    cache: &DiskCache,
) -> Result<(PrePass<String>, Option<Unchecked>), RemoteError> {
    let unit = listing::listing_key(&inv.unit, &inv.args);
    let writes_dep_info = inv.outputs.files.contains(&inv.outputs.dep_info);
    let remembered = cache.listing(&unit).filter(|_| writes_dep_info);
    match remembered {
        Some(Remembered::Listed(listing)) => {
            let (files, dirs) = listing.local(&inv.map);
            // A listed file gone means the compile changed: list afresh.
            if files.iter().all(|f| f.is_file()) {
                tracing::debug!(
                    files = files.len(),
                    "inputs listed from the unit's last job: no pre-pass"
                );
                record(cache.root(), |s| s.remote_listings_reused += 1);
                let unchecked = Unchecked {
                    unit,
                    files: files.clone(),
                    from: ListedFrom::Listing,
                };
                return Ok(((files, dirs, listing.env_deps), Some(unchecked)));
            }
        }
        None if writes_dep_info && r.farm.guess_inputs => {
            match guess::guess(r.cwd, &inv.args, &Package::from_env(), guess::BOUNDS) {
                Ok(g) => {
                    tracing::debug!(
                        files = g.files.len(),
                        crates = g.crates.len(),
                        "inputs guessed on the unit's first job: no pre-pass"
                    );
                    record(cache.root(), |s| s.remote_listings_guessed += 1);
                    let unchecked = Unchecked {
                        unit,
                        files: g.files.clone(),
                        from: ListedFrom::Guess { crates: g.crates },
                    };
                    return Ok(((g.files, g.dirs, g.env_deps), Some(unchecked)));
                }
                Err(why) => tracing::debug!("inputs not guessed: {why}"),
            }
        }
        Some(Remembered::PrePass) | None => {}
    }
    let listed = prepass(r, &inv.args)?;
    tracing::debug!(
        files = listed.0.len(),
        "inputs listed by a dep-info pre-pass"
    );
    record(cache.root(), |s| s.remote_prepasses += 1);
    cache.put_listing(
        &unit,
        &Listing::new(&listed.0, &listed.1, &listed.2, &inv.map),
    );
    Ok((listed, None))
}

/// The listing to remember after a guessed job of `inv` that succeeded: what the dep-info it
/// wrote (`dep`) shows it read, and the crates the guess listed (dep-info does not name them).
pub(super) fn narrowed(inv: &Invocation, dep: &DepInfo, crates: &[PathBuf]) -> Listing {
    let sources = dep.sources.iter().filter(|p| !p.contains("/lib/rustlib/"));
    let (mut files, dirs) = files_and_dirs(&inv.cwd, sources);
    files.extend(crates.iter().cloned());
    files.sort();
    files.dedup();
    let env_deps: Vec<String> = dep.env_deps.iter().map(|(name, _)| name.clone()).collect();
    Listing::new(&files, &dirs, &env_deps, &inv.map)
}

/// The dirs whose files are the build's own even under a system dir (a `CARGO_HOME` of
/// `/usr/local/cargo`): shipped, never expected on the worker.
fn own_dirs(r: &RemoteCompile<'_>) -> Vec<PathBuf> {
    let mut own = vec![r.cwd.to_path_buf()];
    own.extend(
        ["CARGO_MANIFEST_DIR", "OUT_DIR", "CARGO_HOME"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from),
    );
    own
}

/// A C compile's pre-pass: the compiler's `-M` lists the source and every header it reads,
/// system ones included, without compiling.
fn c_prepass(
    r: &RemoteCompile<'_>,
    args: &CcArgs,
) -> Result<PrePass<(String, String)>, RemoteError> {
    let env = crate::cc::keyed_env().map_err(|e| RemoteError::Env(e.to_string()))?;
    if !args.lang.preprocessed() {
        let source = normalize(&r.cwd.join(&args.source));
        return Ok((vec![source], Vec::new(), env));
    }
    let dep_file = fsutil::temp_path_for(&r.out_dir.join("jetcc-prepass.d"));
    let mut cmd = std::process::Command::new(r.program);
    cmd.args(args.prepass_args())
        .arg("-M")
        .arg("-MF")
        .arg(&dep_file)
        .current_dir(r.cwd)
        // Whatever it runs by name reaches the real program, not jetcc's shims.
        .env(crate::cc::shims::IN_CC_VAR, "1");
    let text = run_prepass(cmd, &dep_file, "the compiler")?;
    let read = depinfo::make_rule_inputs(&text)
        .ok_or_else(|| RemoteError::PrePass("the compiler's dep file is not a make rule".into()))?;
    let (files, dirs) = files_and_dirs(r.cwd, read.iter());
    Ok((files, dirs, env))
}

/// Runs rustc's dep-info pass with `-Z binary-dep-depinfo`, which lists every file the
/// compile reads: sources, and the rmeta/rlib/so of every crate it loads (transitive ones
/// included, which cargo's `--extern`s do not name). The toolchain's own sysroot files are
/// left out: the worker has the identical toolchain. Returns the files, the directories rustc
/// walks through to reach them ([`walked_dirs`]) and the env-dep names.
type PrePass<E> = (Vec<PathBuf>, Vec<PathBuf>, Vec<E>);
fn prepass(r: &RemoteCompile<'_>, inv: &RustcArgs) -> Result<PrePass<String>, RemoteError> {
    let dep_file = fsutil::temp_path_for(&r.out_dir.join("jetcc-prepass.d"));
    let mut args: Vec<String> = inv
        .args
        .iter()
        .filter(|a| !a.words[0].starts_with("--emit"))
        .flat_map(|a| a.words.iter().cloned())
        .collect();
    args.push(format!("--emit=dep-info={}", dep_file.display()));
    args.extend(["-Z".into(), "binary-dep-depinfo".into()]);
    let mut cmd = std::process::Command::new(r.program);
    cmd.args(&args)
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("CARGO_MAKEFLAGS");
    let dep = DepInfo::parse(&run_prepass(cmd, &dep_file, "rustc")?);
    let sources = dep.sources.iter().filter(|p| !p.contains("/lib/rustlib/"));
    let (files, dirs) = files_and_dirs(r.cwd, sources);
    let env_deps = dep.env_deps.into_iter().map(|(name, _)| name).collect();
    Ok((files, dirs, env_deps))
}

/// The libraries in the invocation's native search dirs (a bundling rlib reads them; not in
/// dep-info), as the key lists them: listed afresh for every job.
fn native_libs(cwd: &Path, inv: &RustcArgs) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for sp in &inv.search_paths {
        if sp.kind == SearchKind::Native || sp.kind == SearchKind::All {
            if let Ok(rd) = std::fs::read_dir(cwd.join(&sp.path)) {
                libs.extend(rd.flatten().map(|e| e.path()).filter(|p| is_native_lib(p)));
            }
        }
    }
    libs
}

/// Runs a pre-pass that writes the dep file `dep_file` (removed after); returns its text.
fn run_prepass(
    mut cmd: std::process::Command,
    dep_file: &Path,
    who: &str,
) -> Result<String, RemoteError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| RemoteError::PrePass(e.to_string()))?;
    let text = std::fs::read_to_string(dep_file);
    let _ = std::fs::remove_file(dep_file);
    if !out.status.success() {
        return Err(RemoteError::PrePass(format!(
            "{who} exited with {}",
            out.status
        )));
    }
    text.map_err(|e| RemoteError::PrePass(e.to_string()))
}

/// The files a dep file names (relative to `cwd`, or absolute), as clean absolute paths,
/// and the directories reached through `..` on the way to them; both sorted, deduplicated.
fn files_and_dirs<'a>(
    cwd: &Path,
    read: impl Iterator<Item = &'a String>,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let sources: Vec<PathBuf> = read.map(|p| cwd.join(p)).collect();
    let mut dirs: Vec<PathBuf> = sources.iter().flat_map(|p| walked_dirs(p)).collect();
    dirs.sort();
    dirs.dedup();
    let mut files: Vec<PathBuf> = sources.iter().map(|p| normalize(p)).collect();
    files.sort();
    files.dedup();
    (files, dirs)
}

/// The directories a path with `..` passes through before each `..` (`a/b/../c` → `a/b`),
/// normalized: the kernel resolves `..` on the real tree, so they must exist where the job
/// runs even when no input lies in them.
fn walked_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut prefix = PathBuf::new();
    for c in path.components() {
        if c == std::path::Component::ParentDir {
            dirs.push(normalize(&prefix));
        }
        prefix.push(c);
    }
    dirs
}

/// Gets the inputs to the worker: the small ones' bytes, in listing order while they fit in
/// [`INLINE_BYTES`], ride in the job (returned, to go in [`JobRequest::inline`]); each of the
/// others is put in the CAS unless there, concurrently. A small input thus costs no round
/// trip (a lookup, and a chunk and its metadata when missing: three behind a distant link),
/// and its worker no fetch.
///
/// Every file whose bytes are sent is read and checked first: it must still have its listed
/// digest, and hold none of this process's credentials (`environ::credentials`): a crate
/// that read one (`option_env!("GITHUB_TOKEN")`) compiles here, but rustc wrote the value
/// into its rmeta, which its dependents' jobs would carry. Such a job stays here too.
///
/// [`JobRequest::inline`]: jetcc_common::protocol::job::JobRequest::inline
pub(super) async fn upload(
    res: &Resources,
    inputs: &[InputFile],
) -> Result<Vec<Bytes>, RemoteError> {
    let credentials = environ::credentials(&environ::utf8_vars(|_| false).unwrap_or_default());
    let mut budget = INLINE_BYTES as u64;
    let mut inline = Vec::new();
    let mut rest = Vec::new();
    for input in inputs {
        if input.size > budget {
            rest.push(input);
            continue;
        }
        let bytes = read_listed(input, &credentials)?;
        budget = budget.saturating_sub(bytes.len() as u64);
        inline.push(Bytes::from(bytes));
    }
    let credentials = &credentials;
    let puts = rest.into_iter().map(|input| async move {
        if res.cas.contains(&input.digest).await? {
            return Ok(());
        }
        let bytes = read_listed(input, credentials)?;
        res.cas.put_missing(&input.digest, &bytes).await?;
        Ok::<_, RemoteError>(())
    });
    let results = futures_util::stream::iter(puts)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        r?;
    }
    Ok(inline)
}

/// An input's bytes, to be sent: they must still have the digest the input was listed with,
/// and hold none of `credentials`' values.
fn read_listed(
    input: &InputFile,
    credentials: &[(String, String)],
) -> Result<Vec<u8>, RemoteError> {
    let bytes = std::fs::read(&input.path)
        .map_err(|e| RemoteError::Local(format!("cannot read {} to send it: {e}", input.path)))?;
    if Digest::of_bytes(&bytes) != input.digest {
        return Err(RemoteError::Local(format!(
            "{} changed after it was listed",
            input.path
        )));
    }
    if let Some(name) = environ::holds_credential(&bytes, credentials) {
        return Err(RemoteError::Env(format!(
            "{} holds the value of {name} (its crate read it): not sent to the farm",
            input.path
        )));
    }
    Ok(bytes)
}

/// Fetches a verified blob and writes it atomically at `dest`.
pub(super) async fn fetch(
    res: &Resources,
    digest: &Digest,
    dest: &Path,
) -> Result<(), RemoteError> {
    let bytes = res.cas.get(digest).await?;
    fsutil::write_atomic(dest, &bytes)
        .map_err(|e| RemoteError::Local(format!("cannot write {}: {e}", dest.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dotdot_name_the_dirs_they_walk_through() {
        let p = Path::new("/r/src/nptl/bits/../../x86/nptl/bits/m.rs");
        assert_eq!(normalize(p), Path::new("/r/src/x86/nptl/bits/m.rs"));
        assert_eq!(
            walked_dirs(p),
            [Path::new("/r/src/nptl/bits"), Path::new("/r/src/nptl")]
        );
        assert!(walked_dirs(Path::new("/r/src/lib.rs")).is_empty());
    }
}
