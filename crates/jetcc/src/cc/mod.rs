//! C, C++ and assembler compiles, cached like rustc's: jetcc runs as `cc` (or `gcc`, `c++`,
//! `clang`…) through the [`shims`] a build script finds first on its `PATH`, and [`run`]
//! serves the compile.
//!
//! A compile is an [`Action`] ([`CCompile`]): its digest covers the real compiler's identity
//! (its content) and the name it was called by, the arguments minus output locations
//! (`common::ccargs`), the cwd, and the variables the preprocessor and diagnostics read; its
//! manifest entries list every file the previous compile read — the source and every header,
//! system ones included — from the make dep file jetcc has the compiler write on a miss
//! (`-MD -MF <temp>`, or the user's own `-MD` file). A hit writes the object (and the user's
//! dep file, its target set to this object's path) and replays the compiler's output; a miss
//! compiles — here, or with a farm and no free local slot on a worker with this very compiler
//! (`remote::JobKind::C`) — streams the output, and stores the result unless a file it read
//! uses the clock (`__DATE__`, `__TIME__`, `__TIMESTAMP__`: ccache's rule).
//!
//! Design choice: paths are exact unless `base_dirs` says otherwise. The cwd and the source's
//! path are in the key as given, since the object's debug info names them; only the object's
//! directory and the dep file's location are left out, as neither changes a byte of the
//! object. With `base_dirs`, the compile gets `-ffile-prefix-map=<base>=/jetcc/base` (what
//! rustc gets as `--remap-path-prefix`), the key names paths under a base dir by the mapped
//! name, and stored dep files are mapped both ways: another checkout under its own base dir
//! computes the same key and gets the same object. `paths = "portable"` does not map C
//! compiles (their objects would differ from a plain build's).

pub mod shims;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use jetcc_common::cache::DiskCache;
use jetcc_common::ccargs::{CcArgs, CcPassThrough};
use jetcc_common::config::Config;
use jetcc_common::depinfo;
use jetcc_common::digest::KeyHasher;
use jetcc_common::files::FileDigests;
use jetcc_common::key;
use jetcc_common::manifest::ManifestEntry;
use jetcc_common::pathmap::PathMap;
use jetcc_common::result::{CacheEntry, FORMAT_VERSION};
use jetcc_common::stats::{ActionKind, ErrorKind, NotStoredReason, StatKind, Stats};
use jetcc_common::{fsutil, toolchain, Digest};

use crate::compile::{self, Compiled};
use crate::record;
use crate::tiers::{Action, LocalTier, SharedTiers, TierFailure};
use crate::wrapper::store::{
    count_action_hit, count_action_miss, sources_now, unix_secs, NotStored,
};

/// Bumped when what keys a C compile changes.
const CC_FORMAT: &str = "1";

/// Variables the compiler reads that change its object or its messages: include paths,
/// the reproducible-build clock, the language of diagnostics, where gcc finds its parts.
/// (`GCC_COLORS` is not keyed: colors apply only on a terminal, and a build script's compiles
/// write to a pipe.)
const KEYED_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "SOURCE_DATE_EPOCH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_MESSAGES",
    "LC_CTYPE",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "GCC_COMPARE_DEBUG",
];

/// The [`KEYED_ENV`] variables that are set, as this compile sees them (and a farm job is
/// given); `Err` if one is not UTF-8 (no key can name it: the compile runs plainly).
pub(crate) fn keyed_env() -> Result<Vec<(String, String)>, jetcc_common::environ::NotUtf8> {
    let mut env = Vec::new();
    for k in KEYED_ENV {
        if let Some(v) = std::env::var_os(k) {
            let v = v
                .into_string()
                .map_err(|_| jetcc_common::environ::NotUtf8(k.to_string()))?;
            env.push((k.to_string(), v));
        }
    }
    Ok(env)
}

/// Where the dep file's target (the object's path, when no `-MT`/`-MQ` names it) stands in
/// a stored dep file.
const OBJECT_PLACEHOLDER: &str = "\u{1}jetcc:object\u{1}";

/// Runs the compiler `name` (argv\[0\] was one of [`shims::NAMES`]) with `args` through the
/// cache; returns its exit code. Anything jetcc cannot cache runs the real compiler by `exec`.
pub fn run(name: &str, args: Vec<OsString>) -> i32 {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let shim_dir = std::env::var_os(shims::SHIM_DIR_VAR)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let me = std::env::current_exe().ok();
    let Some(real) = shims::find_real(name, &path, shim_dir.as_deref(), me.as_deref()) else {
        eprintln!(
            "jetcc: {name}: command not found (no {name} on PATH other than jetcc's compiler shims)"
        );
        return 127;
    };
    let child_env: Vec<(OsString, OsString)> = vec![
        (
            "PATH".into(),
            shims::path_without(&path, shim_dir.as_deref()),
        ),
        (shims::IN_CC_VAR.into(), "1".into()),
    ];
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
    if set(shims::IN_CC_VAR) || set("JETCC_DISABLE") {
        return exec_real(&real, &args, &child_env);
    }
    crate::logging::init();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "jetcc: {}; compiling without the cache",
                jetcc_common::redact::credentials(&e.to_string())
            );
            return exec_real(&real, &args, &child_env);
        }
    };
    let prepared = args
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<Vec<String>>>()
        .ok_or(CcPassThrough::NotUtf8)
        .and_then(|words| {
            if set("DEPENDENCIES_OUTPUT") || set("SUNPRO_DEPENDENCIES") {
                return Err(CcPassThrough::DepEnv);
            }
            let parsed = CcArgs::parse(&words)?;
            CCompile::prepare(&config, name, &real, parsed)
        });
    match prepared {
        Ok((c, cache, files)) => c.serve(&config, cache, files, &child_env),
        Err(why) => {
            tracing::debug!(
                compiler = name,
                outcome = "pass-through",
                reason = why.name(),
                args = ?args,
                "C compile run as it is: {}",
                why.name()
            );
            record(&config.cache_dir, |s| {
                Stats::bump(&mut s.c_compiles.pass_through, &why)
            });
            exec_real(&real, &args, &child_env)
        }
    }
}

/// Replaces this process with the real compiler. Returns only if exec failed.
fn exec_real(real: &Path, args: &[OsString], env: &[(OsString, OsString)]) -> i32 {
    let err = crate::exec(
        Command::new(real)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v))),
    );
    eprintln!("jetcc: cannot run {}: {err}", real.display());
    127
}

/// One C/C++ compile with its digest computed.
struct CCompile {
    /// The name it was called by (`cc`, `g++`…).
    name: String,
    real: PathBuf,
    args: CcArgs,
    cwd: PathBuf,
    /// The object's path, absolute.
    object: PathBuf,
    /// Its directory: where a hit writes it.
    object_dir: PathBuf,
    map: PathMap,
    digest: Digest,
    /// `-ffile-prefix-map` arguments the compile gets (`base_dirs`), or none.
    prefix_map: Vec<String>,
    /// What the digest is made of, and the compile it belongs to across changes
    /// (`--explain`): the same compiler name, cwd, source and object.
    parts: Vec<(String, String)>,
    unit: Digest,
    /// `<compiler> <source>`, for logs.
    label: String,
    started: SystemTime,
    clock: Instant,
}

impl Action for CCompile {
    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn output_dir(&self) -> &Path {
        &self.object_dir
    }

    fn map(&self) -> &PathMap {
        &self.map
    }

    fn label(&self) -> &str {
        &self.label
    }

    /// Writes the user's dep file, its target being this compile's object.
    fn finish_restore(&self, entry: &CacheEntry) -> Result<(), TierFailure> {
        let Some(dep) = &self.args.dep_file else {
            return Ok(());
        };
        let dest = self.cwd.join(dep);
        let Some((_, text)) = &entry.dep_info else {
            return Err(TierFailure::local_io(
                &dest,
                std::io::Error::other("the stored compile has no dep file"),
            ));
        };
        let text = self.map.restore(text.as_bytes());
        let text = String::from_utf8_lossy(&text)
            .replace(OBJECT_PLACEHOLDER, &depinfo::make_quote(&self.args.output));
        fsutil::write_atomic(&dest, text.as_bytes()).map_err(|e| TierFailure::local_io(&dest, e))
    }
}

impl CCompile {
    fn prepare(
        config: &Config,
        name: &str,
        real: &Path,
        args: CcArgs,
    ) -> Result<(CCompile, DiskCache, FileDigests), CcPassThrough> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let err = CcPassThrough::Error;
        let cwd = std::env::current_dir().map_err(|_| err(ErrorKind::Cwd))?;
        let cache = DiskCache::open(&config.cache_dir, config.cache_size)
            .map_err(|_| err(ErrorKind::CacheOpen))?
            .with_read_only(config.disk_read_only);
        let files = FileDigests::new(&cwd, Some(cache.stat_memo_dir()));
        let identity = toolchain::tool_identity(real, &cache.toolchain_memo_dir())
            .map_err(|_| err(ErrorKind::Toolchain))?;
        let object = cwd.join(&args.output);
        let object_dir = object.parent().ok_or(err(ErrorKind::Key))?.to_path_buf();
        let map = PathMap::new(&cwd, &[], &config.base_dirs, &cwd, None);
        // The base dirs alone: how the key names a path (the cwd is in the key, not a
        // placeholder as in stored files).
        let based = PathMap::new(Path::new(""), &[], &config.base_dirs, &cwd, None);
        let prefix_map = based.file_prefix_map_args();
        let mut parts = vec![
            ("action".to_owned(), "c-compile".to_owned()),
            ("format".to_owned(), CC_FORMAT.to_owned()),
            ("compiler".to_owned(), name.to_owned()),
            ("compiler-id".to_owned(), identity.to_string()),
            ("cwd".to_owned(), based.key_path(&cwd.to_string_lossy())),
            ("source".to_owned(), based.key_path(&args.source)),
            ("object-name".to_owned(), args.output_name().to_owned()),
        ];
        parts.extend(args.key_args.iter().map(|a| {
            let mapped = String::from_utf8_lossy(&based.store(a.as_bytes())).into_owned();
            ("arg".to_owned(), mapped)
        }));
        if !prefix_map.is_empty() {
            parts.push(("prefix-map".to_owned(), prefix_map.len().to_string()));
        }
        parts.extend(
            keyed_env()
                .map_err(|_| err(ErrorKind::EnvNotUtf8))?
                .into_iter()
                .map(|(k, v)| (format!("env {k}"), v)),
        );
        let digest = key::invocation_digest(&parts);
        let unit = KeyHasher::new("jetcc-c-unit")
            .str(name)
            .str(&cwd.to_string_lossy())
            .str(&args.source)
            .str(args.output_name())
            .finish();
        let label = format!("{name} {}", args.source);
        let c = CCompile {
            name: name.to_owned(),
            real: real.to_path_buf(),
            args,
            cwd,
            object,
            object_dir,
            map,
            digest,
            prefix_map,
            parts,
            unit,
            label,
            started,
            clock,
        };
        Ok((c, cache, files))
    }

    fn serve(
        self,
        config: &Config,
        cache: DiskCache,
        mut files: FileDigests,
        child_env: &[(OsString, OsString)],
    ) -> i32 {
        let mut shared = SharedTiers::new(config);
        let local = LocalTier(&cache);
        let code = match shared.look_up(&local, &self, &mut files) {
            Some(hit) => {
                let entry = &hit.entry;
                let _ = std::io::stdout().write_all(&entry.stdout);
                let _ = std::io::stderr().write_all(&entry.stderr);
                let spent = self.clock.elapsed();
                tracing::debug!(
                    c_source = self.args.source,
                    compiler = self.label,
                    outcome = "hit",
                    tier = hit.tier,
                    total_us = spent.as_micros() as u64,
                    "C compile hit ({})",
                    hit.tier
                );
                record(cache.root(), |s| {
                    count_action_hit(s, ActionKind::CCompile, entry, spent.as_millis() as u64)
                });
                entry.exit_code
            }
            None => self.miss(&cache, &mut shared, &mut files, child_env),
        };
        let kind = jetcc_common::protocol::events::UnitKind::CCompile;
        crate::events::publish(&shared, kind, &self.label, None, self.clock.elapsed());
        code
    }

    fn miss(
        &self,
        cache: &DiskCache,
        shared: &mut SharedTiers,
        files: &mut FileDigests,
        child_env: &[(OsString, OsString)],
    ) -> i32 {
        let missed = crate::misses::Missed {
            subject: crate::misses::Subject::CCompile,
            manifest: &cache.manifest(&self.digest),
            unit: &self.unit,
            parts: &self.parts,
            map: &self.map,
            label: &self.label,
            cwd: &self.cwd,
        };
        let why = crate::misses::explain(cache, files, &missed);
        tracing::debug!(
            c_source = self.args.source,
            compiler = self.label,
            outcome = "miss",
            why,
            "C compile miss"
        );
        let mut words = self.args.args.clone();
        words.extend(self.prefix_map.iter().cloned());
        // What the compile reads, listed by the compiler itself.
        let temp_dep = (self.args.dep_file.is_none() && self.args.lang.preprocessed())
            .then(|| fsutil::temp_path_for(&self.object.with_extension("jetcc.d")));
        if let Some(t) = &temp_dep {
            words.extend(["-MD".into(), "-MF".into(), t.to_string_lossy().into_owned()]);
        }
        let compiled = self.compile(cache, shared, files, &words, temp_dep.as_deref(), child_env);
        let (compiled, on_farm) = match compiled {
            Ok(c) => c,
            Err(e) => {
                eprintln!("jetcc: cannot run {}: {e}", self.real.display());
                record(cache.root(), |s| {
                    Stats::bump(
                        &mut s.c_compiles.pass_through,
                        &CcPassThrough::Error(ErrorKind::Spawn),
                    )
                });
                return 127;
            }
        };
        if self.refused_prefix_map(&compiled) {
            // gcc < 8 and clang < 10 lack it: compile as called, and store nothing.
            if let Some(t) = &temp_dep {
                let _ = std::fs::remove_file(t);
            }
            tracing::debug!(
                compiler = self.label,
                "no -ffile-prefix-map: compiling as called"
            );
            let args: Vec<OsString> = self.args.args.iter().map(OsString::from).collect();
            return exec_real(&self.real, &args, child_env);
        }
        let outcome = self.store(cache, &compiled, temp_dep.as_deref());
        if let Some(t) = &temp_dep {
            let _ = std::fs::remove_file(t);
        }
        record(cache.root(), |s| {
            count_action_miss(s, ActionKind::CCompile, &outcome, cache.is_read_only())
        });
        match outcome {
            Ok((found, entry)) => {
                shared.share(self, &found, &entry, on_farm);
                tracing::debug!(
                    compiler = self.label,
                    compile_ms = compiled.duration.as_millis() as u64,
                    on_farm,
                    "C compile stored"
                );
            }
            Err(NotStored::Skipped(why)) => tracing::debug!(
                compiler = self.label,
                "C compile not stored: {}",
                why.name()
            ),
            Err(NotStored::Failed(e)) => tracing::warn!(
                compiler = self.label,
                "could not store the C compile: {}",
                e.name()
            ),
        }
        compiled.exit_code
    }

    /// Whether the compile failed only because the compiler does not know the
    /// `-ffile-prefix-map` jetcc added.
    fn refused_prefix_map(&self, compiled: &Compiled) -> bool {
        compiled.exit_code != 0
            && !self.prefix_map.is_empty()
            && String::from_utf8_lossy(&compiled.stderr).contains("-ffile-prefix-map")
    }

    /// Runs the compile here or, with a farm and no free local slot, on a worker that has
    /// this very compiler (`toolchain::c_compiler`) and system headers. Returns whether it
    /// ran on the farm.
    fn compile(
        &self,
        cache: &DiskCache,
        shared: &mut SharedTiers,
        files: &mut FileDigests,
        words: &[String],
        temp_dep: Option<&Path>,
        child_env: &[(OsString, OsString)],
    ) -> std::io::Result<(Compiled, bool)> {
        let farm = shared.farm().cloned();
        // The files the worker writes: the object, and the dep files beside it.
        let mut outputs = vec![self.args.output_name().to_owned()];
        let deps = temp_dep
            .map(Path::to_path_buf)
            .into_iter()
            .chain(self.args.dep_file.as_ref().map(|d| self.cwd.join(d)));
        let mut distributable = true;
        for dep in deps {
            match dep.file_name() {
                Some(n) if dep.parent() == Some(self.object_dir.as_path()) => {
                    outputs.push(n.to_string_lossy().into_owned())
                }
                _ => distributable = false,
            }
        }
        let remote = |pl: &crate::placement::Placement| {
            let memo = cache.toolchain_memo_dir();
            let c = toolchain::c_compiler(&self.real, &self.name, &memo).ok()?;
            crate::remote::try_remote(
                shared,
                cache,
                crate::remote::RemoteCompile {
                    farm: farm.as_ref()?,
                    program: &self.real,
                    kind: crate::remote::JobKind::C(&self.args),
                    args: words,
                    cwd: &self.cwd,
                    out_dir: &self.object_dir,
                    outputs: &outputs,
                    toolchain: &c.identity,
                    host: &c.machine,
                    label: &self.label,
                    files,
                    placement: pl,
                    ship_memo: None,
                },
            )
        };
        let unit = Some(self.unit);
        crate::placement::compile_placed(
            farm.as_ref(),
            cache.root(),
            unit,
            distributable,
            remote,
            || compile::run_streaming_env(self.real.as_os_str(), words, child_env),
        )
    }

    /// Stores a successful compile: the object, the user's dep file (its target as a
    /// placeholder), the output, and the manifest entry listing every file it read.
    fn store(
        &self,
        cache: &DiskCache,
        compiled: &Compiled,
        temp_dep: Option<&Path>,
    ) -> Result<(ManifestEntry, CacheEntry), NotStored> {
        if compiled.exit_code != 0 {
            return Err(NotStoredReason::CompileError.into());
        }
        let unexpected = || NotStored::Skipped(NotStoredReason::DepFileUnexpected);
        let dep_path = temp_dep
            .map(Path::to_path_buf)
            .or_else(|| self.args.dep_file.as_ref().map(|d| self.cwd.join(d)));
        let dep_text = match &dep_path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|_| unexpected())?),
            None => None,
        };
        let mut read = match &dep_text {
            Some(text) => depinfo::make_rule_inputs(text).ok_or_else(unexpected)?,
            None => Vec::new(),
        };
        if !read.contains(&self.args.source) {
            read.insert(0, self.args.source.clone());
        }
        read.dedup();
        for path in &read {
            let bytes = std::fs::read(self.cwd.join(path))
                .map_err(|_| NotStored::Skipped(NotStoredReason::SourceUnreadable))?;
            if uses_the_clock(&bytes) {
                tracing::debug!(path, "uses __DATE__, __TIME__ or __TIMESTAMP__");
                return Err(NotStoredReason::TimeMacros.into());
            }
            if self.args.lang.is_asm() && includes_in_assembler(&bytes) {
                tracing::debug!(path, "uses .include or .incbin");
                return Err(NotStoredReason::AsmInclude.into());
            }
        }
        let mut files = FileDigests::new(&self.cwd, Some(cache.stat_memo_dir()));
        let sources = sources_now(&mut files, &self.map, self.started, &read)?;
        let dep_info = match (&self.args.dep_file, &dep_text) {
            (Some(name), Some(text)) => {
                let text = if self.args.dep_targets_given {
                    text.clone()
                } else {
                    let target = format!("{}:", depinfo::make_quote(&self.args.output));
                    let rest = text.strip_prefix(&target).ok_or_else(unexpected)?;
                    format!("{OBJECT_PLACEHOLDER}:{rest}")
                };
                let base = name.rsplit('/').next().unwrap_or(name).to_owned();
                let text = String::from_utf8_lossy(&self.map.store(text.as_bytes())).into_owned();
                Some((base, text))
            }
            _ => None,
        };
        let key = key::result_key(&self.digest, &sources, &[], &[]);
        let failed = |_| NotStored::Failed(ErrorKind::CacheWrite);
        let out = cache
            .put_output(self.args.output_name(), &self.object)
            .map_err(failed)?;
        let entry = CacheEntry {
            version: FORMAT_VERSION,
            outputs: vec![out],
            dep_info,
            stdout: compiled.stdout.clone(),
            stderr: compiled.stderr.clone(),
            exit_code: 0,
            compile_ms: compiled.duration.as_millis() as u64,
        };
        cache.put_entry(&key, &entry).map_err(failed)?;
        let found = ManifestEntry {
            sources,
            env_deps: Vec::new(),
            local_roots: Vec::new(),
            key,
            stored_at: unix_secs(SystemTime::now()),
        };
        cache
            .add_to_manifest(&self.digest, found.clone())
            .map_err(failed)?;
        cache.put_unit_parts(&self.unit, &self.parts);
        cache.commit_size();
        Ok((found, entry))
    }
}

/// Whether a source uses the preprocessor's clock macros: its object would change with the
/// time of the compile.
fn uses_the_clock(bytes: &[u8]) -> bool {
    ["__DATE__", "__TIME__", "__TIMESTAMP__"]
        .iter()
        .any(|m| memchr::memmem::find(bytes, m.as_bytes()).is_some())
}

/// Whether assembler source reads other files itself (no dep file lists them).
fn includes_in_assembler(bytes: &[u8]) -> bool {
    [".include", ".incbin"]
        .iter()
        .any(|m| memchr::memmem::find(bytes, m.as_bytes()).is_some())
}
