//! Build-script runs, cached like compiles: cargo runs the launcher jetcc left in place of
//! the script's binary ([`launcher`]), which calls [`run`].
//!
//! A run is an [`Action`]: its digest covers the real binary, the variables cargo and the C/C++
//! toolchains set, the tools on `PATH` and the compiler's identity
//! (`common::buildscript`); its manifest entries add the files and variables the previous run
//! declared (`rerun-if-changed`, `rerun-if-env-changed`), or every file of the package when it
//! declared none (cargo's rule), and the system libraries it linked. A hit swaps the stored
//! `OUT_DIR` in whole and replays stdout (paths rewritten for this build) and stderr; a miss
//! runs the real script, streaming its output to cargo, and stores the run if it succeeded.

pub mod launcher;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use jetcc_common::buildscript::{self, tree, Directives};
use jetcc_common::cache::DiskCache;
use jetcc_common::config::{Config, PathsMode};
use jetcc_common::digest::KeyHasher;
use jetcc_common::files::{self, FileDigests};
use jetcc_common::key;
use jetcc_common::manifest::ManifestEntry;
use jetcc_common::pathmap::{PathMap, Portable};
use jetcc_common::result::{CacheEntry, FORMAT_VERSION};
use jetcc_common::stats::{ActionKind, ErrorKind, NotStoredReason, RunPassThrough, Stats};
use jetcc_common::{toolchain, Digest};

use crate::compile::{self, Compiled};
use crate::record;
use crate::tiers::{Action, LocalTier, SharedTiers, TierFailure};
use crate::wrapper::store::{
    count_action_hit, count_action_miss, sources_now, unix_secs, NotStored,
};

/// The stored `OUT_DIR`'s name, beside `OUT_DIR` while it is packed or fetched.
const ARCHIVE: &str = "jetcc-out-dir.tar";

/// Bumped when what keys a run changes.
const RUN_FORMAT: &str = "1";

/// Runs the build script behind `launcher` (cargo ran the launcher, whose `#!` line ran
/// jetcc) through the cache and returns its exit code. Anything jetcc cannot do before the
/// run ends in `exec` of the real script.
pub fn run(launcher: OsString, args: Vec<OsString>) -> i32 {
    let Some(real) = launcher::real_binary(Path::new(&launcher)) else {
        eprintln!(
            "jetcc: {} is not a build-script launcher jetcc wrote (no `# real:` line); \
             run `cargo clean` to rebuild it",
            launcher.to_string_lossy()
        );
        return 1;
    };
    let real = real.into_os_string();
    let disabled = std::env::var_os("JETCC_DISABLE").is_some_and(|v| !v.is_empty() && v != "0");
    // Cached only in builds that use jetcc: a build without it runs scripts as cargo would.
    let me = std::env::current_exe().ok();
    let wrapped = std::env::var_os("RUSTC_WRAPPER")
        .is_some_and(|w| Path::new(&w).file_name() == me.as_deref().and_then(Path::file_name));
    if disabled || !wrapped {
        return exec_real(&real, &args);
    }
    crate::logging::init();
    let config = match Config::load() {
        Ok(c) if c.build_scripts => c,
        Ok(_) => return exec_real(&real, &args),
        Err(e) => {
            eprintln!(
                "jetcc: {}; running the build script without the cache",
                jetcc_common::redact::credentials(&e.to_string())
            );
            return exec_real(&real, &args);
        }
    };
    let Some(args) = args
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
    else {
        return exec_real(&real, &args);
    };
    match ScriptRun::prepare(&config, Path::new(&real), args.clone()) {
        Ok((run, cache, files)) => run.serve(&config, cache, files),
        Err(why) => {
            tracing::debug!(
                outcome = "pass-through",
                "build script not cached ({}): run for real",
                jetcc_common::stats::StatKind::name(&why)
            );
            record(&config.cache_dir, |s| {
                Stats::bump(&mut s.build_script_runs.pass_through, &why)
            });
            let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
            exec_real(&real, &args)
        }
    }
}

/// Replaces this process with the real build script. Returns only if exec failed.
fn exec_real(real: &OsStr, args: &[OsString]) -> i32 {
    let err = crate::exec(Command::new(real).args(args));
    eprintln!(
        "jetcc: cannot run build script {}: {err}",
        real.to_string_lossy()
    );
    1
}

/// One build-script run with its digest computed.
struct ScriptRun {
    real: PathBuf,
    args: Vec<String>,
    /// cargo's `OUT_DIR` for it.
    out_dir: PathBuf,
    /// `OUT_DIR`'s parent (`build/<pkg>-<h>`): where the archive is packed and fetched.
    staging: PathBuf,
    /// The package dir, cargo's cwd for the run.
    cwd: PathBuf,
    map: PathMap,
    digest: Digest,
    /// What the digest is made of, and the run it belongs to across changes (`--explain`).
    parts: Vec<(String, String)>,
    unit: Digest,
    /// `<package> build script`, for logs.
    label: String,
    /// The package's name (`build_script=` in logs).
    package: String,
    started: SystemTime,
    clock: Instant,
}

impl Action for ScriptRun {
    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn output_dir(&self) -> &Path {
        &self.staging
    }

    fn map(&self) -> &PathMap {
        &self.map
    }

    fn label(&self) -> &str {
        &self.label
    }

    /// A run may declare only env vars (`rerun-if-env-changed`), which are not sources.
    fn reads_sources(&self) -> bool {
        false
    }

    /// Swaps the fetched tree in as `OUT_DIR`, whole.
    fn finish_restore(&self, _entry: &CacheEntry) -> Result<(), TierFailure> {
        tree::unpack(&self.staging.join(ARCHIVE), &self.out_dir)
            .map_err(|e| TierFailure::local_io(&self.out_dir, e))
    }
}

impl ScriptRun {
    fn prepare(
        config: &Config,
        real: &Path,
        args: Vec<String>,
    ) -> Result<(ScriptRun, DiskCache, FileDigests), RunPassThrough> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let env = jetcc_common::environ::utf8_vars(buildscript::is_keyed_env)
            .map_err(|_| RunPassThrough::Error(ErrorKind::EnvNotUtf8))?;
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let out_dir = var("OUT_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .ok_or(RunPassThrough::NoOutDir)?;
        let staging = out_dir
            .parent()
            .ok_or(RunPassThrough::NoOutDir)?
            .to_path_buf();
        let cwd = std::env::current_dir().map_err(|_| RunPassThrough::Error(ErrorKind::Cwd))?;
        let cache = DiskCache::open(&config.cache_dir, config.cache_size)
            .map_err(|_| RunPassThrough::Error(ErrorKind::CacheOpen))?
            .with_read_only(config.disk_read_only);
        let mut files = FileDigests::new(&cwd, Some(cache.stat_memo_dir()));
        let portable = (config.paths == PathsMode::Portable)
            .then(|| Portable::from_env(&var, &staging, var("TARGET").as_deref()));
        let mut map = PathMap::new(&out_dir, &[], &config.base_dirs, &cwd, portable.as_ref());
        map.add_root(&out_dir);
        map.add_root(&cwd);
        let memo = cache.toolchain_memo_dir();
        let key_err = |_| RunPassThrough::Error(ErrorKind::Key);
        let mut parts = vec![
            ("action".to_owned(), "build-script-run".to_owned()),
            ("format".to_owned(), RUN_FORMAT.to_owned()),
            ("cwd".to_owned(), map.key_path(&cwd.to_string_lossy())),
        ];
        if map.is_portable() {
            parts.push(("paths".to_owned(), "portable".to_owned()));
        }
        let script = files
            .digest(&real.to_string_lossy())
            .ok_or(RunPassThrough::Error(ErrorKind::Key))?;
        parts.push(("script".to_owned(), script.to_string()));
        parts.push(("args".to_owned(), args.join(" ")));
        let path_var = var("PATH").unwrap_or_default();
        if let Some(rustc) = var("RUSTC") {
            let rustc = find_program(&rustc, &path_var, &cwd)
                .ok_or(RunPassThrough::Error(ErrorKind::Toolchain))?;
            let id = toolchain::identity(&rustc, &memo)
                .map_err(|_| RunPassThrough::Error(ErrorKind::Toolchain))?;
            parts.push(("rustc".to_owned(), id.to_string()));
        }
        let mut keyed: Vec<&(String, String)> = env
            .iter()
            .filter(|(k, _)| buildscript::is_keyed_env(k))
            .collect();
        keyed.sort();
        for (k, v) in &keyed {
            parts.push((format!("env {k}"), map.key_path(v)));
        }
        let mut tools: Vec<String> = buildscript::TOOLS.iter().map(|t| t.to_string()).collect();
        for (k, v) in &keyed {
            let base = k.trim_start_matches("HOST_").trim_start_matches("TARGET_");
            let names_tool = buildscript::TOOL_NAMING_VARS.iter().any(|t| {
                base == *t
                    || base
                        .strip_prefix(t)
                        .is_some_and(|r| r.starts_with(['_', '-']))
            });
            if let Some(first) = v.split_whitespace().next().filter(|_| names_tool) {
                tools.push(first.to_owned());
            }
        }
        tools.sort();
        tools.dedup();
        for tool in tools {
            let id = match find_program(&tool, &path_var, &cwd) {
                Some(path) => toolchain::tool_identity(&path, &memo)
                    .map_err(key_err)?
                    .to_string(),
                None => "absent".to_owned(),
            };
            parts.push((format!("tool {tool}"), id));
        }
        let digest = key::invocation_digest(&parts);
        let package = var("CARGO_PKG_NAME").unwrap_or_else(|| "?".into());
        let unit = KeyHasher::new("jetcc-build-script-unit")
            .str(&map.key_path(&cwd.to_string_lossy()))
            .str(&package)
            .finish();
        let label = format!("{package} build script");
        let run = ScriptRun {
            real: real.to_path_buf(),
            args,
            out_dir,
            staging,
            cwd,
            map,
            digest,
            parts,
            unit,
            label,
            package,
            started,
            clock,
        };
        Ok((run, cache, files))
    }

    fn serve(self, config: &Config, cache: DiskCache, mut files: FileDigests) -> i32 {
        let mut shared = SharedTiers::new(config);
        let local = LocalTier(&cache);
        let hit = shared.look_up(&local, &self, &mut files);
        let _ = std::fs::remove_file(self.staging.join(ARCHIVE));
        let code = match hit {
            Some(hit) => {
                let entry = &hit.entry;
                let _ = std::io::stdout().write_all(&self.map.restore(&entry.stdout));
                let _ = std::io::stderr().write_all(&self.map.restore(&entry.stderr));
                let spent = self.clock.elapsed().as_millis() as u64;
                tracing::debug!(
                    build_script = self.package,
                    outcome = "hit",
                    tier = hit.tier,
                    total_ms = spent,
                    "build script hit ({})",
                    hit.tier
                );
                record(cache.root(), |s| {
                    count_action_hit(s, ActionKind::BuildScriptRun, entry, spent)
                });
                entry.exit_code
            }
            None => self.miss(&cache, &shared, &mut files),
        };
        let kind = jetcc_common::protocol::events::UnitKind::BuildScriptRun;
        crate::events::publish(&shared, kind, &self.package, None, self.clock.elapsed());
        code
    }

    fn miss(&self, cache: &DiskCache, shared: &SharedTiers, files: &mut FileDigests) -> i32 {
        let why = self.explain_miss(cache, files);
        tracing::debug!(
            build_script = self.package,
            outcome = "miss",
            why,
            "build script miss"
        );
        // Its compiles reach jetcc through the shims; the run's key is unchanged (its tools
        // were resolved on the PATH cargo gave).
        let env = crate::cc::shims::script_env(cache.root());
        let compiled = match compile::run_streaming_env(self.real.as_os_str(), &self.args, &env) {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "jetcc: cannot run build script {}: {e}",
                    self.real.display()
                );
                record(cache.root(), |s| {
                    Stats::bump(
                        &mut s.build_script_runs.pass_through,
                        &RunPassThrough::Error(ErrorKind::Spawn),
                    )
                });
                return 1;
            }
        };
        let outcome = self.store(cache, &compiled);
        record(cache.root(), |s| {
            count_action_miss(
                s,
                ActionKind::BuildScriptRun,
                &outcome,
                cache.is_read_only(),
            )
        });
        match outcome {
            Ok((found, entry)) => {
                shared.share(self, &found, &entry, false);
                tracing::debug!(
                    unit = self.label,
                    run_ms = compiled.duration.as_millis() as u64,
                    "build script run stored"
                );
            }
            Err(NotStored::Skipped(why)) => tracing::debug!(
                unit = self.label,
                "build script run not stored: {}",
                jetcc_common::stats::StatKind::name(&why)
            ),
            Err(NotStored::Failed(e)) => tracing::warn!(
                unit = self.label,
                "could not store the build script's run: {}",
                jetcc_common::stats::StatKind::name(&e)
            ),
        }
        let _ = std::fs::remove_file(self.staging.join(ARCHIVE));
        compiled.exit_code
    }

    /// Why this run is not in the local cache, for the log and `--explain`: the declared
    /// file or variable that changed since the last run of the same digest, or else the
    /// variable, tool or binary that changed since the package's last run.
    fn explain_miss(&self, cache: &DiskCache, files: &mut FileDigests) -> String {
        let manifest = cache.manifest(&self.digest);
        let missed = crate::misses::Missed {
            subject: crate::misses::Subject::BuildScriptRun,
            manifest: &manifest,
            unit: &self.unit,
            parts: &self.parts,
            map: &self.map,
            label: &self.label,
            cwd: &self.cwd,
        };
        crate::misses::explain(cache, files, &missed)
    }

    /// Stores a successful run: its `OUT_DIR` as one blob, stdout and stderr in key form, and
    /// the manifest entry that finds it (declared files and variables, linked system libs).
    fn store(
        &self,
        cache: &DiskCache,
        compiled: &Compiled,
    ) -> Result<(ManifestEntry, CacheEntry), NotStored> {
        if compiled.exit_code != 0 {
            return Err(NotStoredReason::ScriptFailed.into());
        }
        let directives = Directives::parse(&compiled.stdout);
        let mut files = FileDigests::new(&self.cwd, Some(cache.stat_memo_dir()));
        let read = self.declared_files(&directives)?;
        let sources = sources_now(&mut files, &self.map, self.started, &read)?;
        let mut env_deps: Vec<(String, Option<String>)> = Vec::new();
        for name in &directives.rerun_if_env_changed {
            let value = match std::env::var_os(name).map(OsString::into_string) {
                None => None,
                Some(Ok(v)) => Some(
                    self.map
                        .key_path(&jetcc_common::depinfo::escape_env_value(&v)),
                ),
                Some(Err(_)) => return Err(NotStoredReason::EnvNotUtf8.into()),
            };
            env_deps.push((name.clone(), value));
        }
        let archive = self.staging.join(ARCHIVE);
        let local_roots = tree::pack(&self.out_dir, &archive, &self.map.roots()).map_err(|e| {
            tracing::debug!(unit = self.label, "cannot pack OUT_DIR: {e}");
            NotStored::Skipped(NotStoredReason::OutDirUnpackable)
        })?;
        let key = key::result_key(&self.digest, &sources, &env_deps, &local_roots);
        let failed = |_| NotStored::Failed(ErrorKind::CacheWrite);
        let out = cache.put_output(ARCHIVE, &archive).map_err(failed)?;
        let entry = CacheEntry {
            version: FORMAT_VERSION,
            outputs: vec![out],
            dep_info: None,
            stdout: self.map.store(&compiled.stdout),
            stderr: self.map.store(&compiled.stderr),
            exit_code: 0,
            compile_ms: compiled.duration.as_millis() as u64,
        };
        cache.put_entry(&key, &entry).map_err(failed)?;
        cache.put_unit_parts(&self.unit, &self.parts);
        let found = ManifestEntry {
            sources,
            env_deps,
            local_roots,
            key,
            stored_at: unix_secs(SystemTime::now()),
        };
        cache
            .add_to_manifest(&self.digest, found.clone())
            .map_err(failed)?;
        cache.commit_size();
        Ok((found, entry))
    }

    /// The files whose content decides whether the run is still valid: what it declared
    /// with `rerun-if-changed` (a directory: its listing and every file under it), or every
    /// file of the package if it declared nothing (cargo's rule); and the system libraries
    /// it linked by name.
    fn declared_files(&self, d: &Directives) -> Result<Vec<String>, NotStored> {
        let mut read = Vec::new();
        if d.rerun_if_changed.is_empty() {
            // Its listing too: cargo reruns it when a file is added.
            read.push("./".to_owned());
            package_files(&self.cwd, &self.out_dir, &mut read);
        }
        for path in &d.rerun_if_changed {
            let abs = self.cwd.join(path);
            match std::fs::metadata(&abs) {
                Ok(m) if m.is_dir() => {
                    read.push(format!("{}/", path.trim_end_matches('/')));
                    let mut under = Vec::new();
                    package_files(&abs, &self.out_dir, &mut under);
                    read.extend(
                        under
                            .into_iter()
                            .map(|f| format!("{}/{f}", path.trim_end_matches('/'))),
                    );
                }
                Ok(_) => read.push(path.clone()),
                Err(_) => return Err(NotStoredReason::DeclaredPathMissing.into()),
            }
        }
        read.extend(system_libraries(d, &self.map));
        read.sort();
        read.dedup();
        Ok(read)
    }
}

/// Every file under `dir` (relative to it), skipping what is not the package's
/// (`files::is_outside_package`) and the build's own `OUT_DIR`.
fn package_files(dir: &Path, out_dir: &Path, into: &mut Vec<String>) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let nested = !rel.as_os_str().is_empty() && files::is_outside_package(&abs);
        if nested || abs.starts_with(out_dir) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&abs) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = rel.join(e.file_name());
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(rel),
                Ok(_) => into.push(rel.to_string_lossy().into_owned()),
                Err(_) => {}
            }
        }
    }
}

/// The system libraries a run linked by name (`rustc-link-lib`), found in the dirs it named
/// outside this build's roots and in the system's library dirs: a new version of one (a
/// distribution upgrade, another `.pc` pointing elsewhere) makes the run stale.
fn system_libraries(d: &Directives, map: &PathMap) -> Vec<String> {
    let roots = map.roots();
    let mut dirs: Vec<String> = d
        .link_search
        .iter()
        .filter(|dir| {
            Path::new(dir).is_absolute() && !roots.iter().any(|r| dir.starts_with(r.as_str()))
        })
        .cloned()
        .collect();
    let multiarch = std::env::var("TARGET").ok().and_then(|t| {
        let mut p = t.split('-');
        let arch = p.next()?;
        t.contains("-linux-gnu")
            .then(|| format!("{arch}-linux-gnu"))
    });
    for base in ["/usr/local/lib", "/usr/lib", "/lib"] {
        if let Some(m) = &multiarch {
            dirs.push(format!("{base}/{m}"));
        }
        dirs.push(base.to_owned());
    }
    let mut libs = Vec::new();
    for name in &d.link_lib {
        for dir in &dirs {
            for ext in ["a", "so"] {
                let file = format!("{dir}/lib{name}.{ext}");
                if Path::new(&file).is_file() {
                    libs.push(file);
                }
            }
        }
    }
    libs
}

/// `name` as `sh` would find it: a path if it has a slash (relative to `cwd`), else the
/// first executable file of that name in `PATH`.
fn find_program(name: &str, path: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = cwd.join(name);
        return is_exe(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_exe(p))
}
