//! The life of one rustc invocation: classify, key, look up, restore or compile, store.
//!
//! Errors before rustc starts end in plain rustc (`exec`); errors after it ran are logged and
//! counted, and rustc's own exit code stands. rustc never runs twice for one invocation.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use jetcc_common::args::{RustcInvocation, SearchKind};
use jetcc_common::cache::{CacheError, DiskCache};
use jetcc_common::classify::{classify, Outputs, Policy};
use jetcc_common::config::Config;
use jetcc_common::depinfo::DepInfo;
use jetcc_common::explain;
use jetcc_common::files::{self, FileDigests};
use jetcc_common::key::{self, InvocationInputs};
use jetcc_common::linkargs;
use jetcc_common::manifest::{Manifest, ManifestEntry, Source};
use jetcc_common::pathmap::PathMap;
use jetcc_common::result::{CacheEntry, FORMAT_VERSION};
use jetcc_common::stats::Stats;
use jetcc_common::{toolchain, Digest};

use crate::compile::{self, Compiled};
use crate::dist::Session;
use crate::placement::Placement;
use crate::tiers::ObjectSession;

mod farm;
mod shared;

/// Runs one wrapped invocation and returns the exit code to report to cargo.
pub fn run(rustc: OsString, args: Vec<OsString>) -> i32 {
    if std::env::var_os("JETCC_DISABLE").is_some_and(|v| !v.is_empty() && v != "0") {
        return exec_plain(&rustc, &args);
    }
    crate::logging::init();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            // Said once per invocation, loudly: the user must fix it, and the build goes on.
            eprintln!("jetcc: {e}; running rustc without the cache");
            return exec_plain(&rustc, &args);
        }
    };
    let inv = match RustcInvocation::parse(args.iter().cloned()) {
        Ok(inv) => inv,
        Err(e) => {
            tracing::debug!("pass-through: cannot read the arguments: {e}");
            record(&config.cache_dir, |s| {
                s.requests += 1;
                Stats::bump(&mut s.pass_through, "unreadable-args")
            });
            return exec_plain(&rustc, &args);
        }
    };
    let policy = Policy {
        cache_incremental: config.cache_incremental,
    };
    let outputs = match classify(&inv, policy) {
        Ok(o) => o,
        Err(reason) => {
            tracing::debug!(crate_name = ?inv.crate_name, "pass-through: {reason}");
            record(&config.cache_dir, |s| {
                s.requests += 1;
                Stats::bump(&mut s.pass_through, &reason.name())
            });
            return exec_plain(&rustc, &args);
        }
    };
    let mut job = match Job::prepare(&config, &rustc, inv, outputs) {
        Ok(job) => job,
        Err(e) => {
            tracing::warn!("jetcc cannot cache this invocation ({e}); running plain rustc");
            record(&config.cache_dir, |s| {
                s.requests += 1;
                Stats::bump(&mut s.errors, e.kind())
            });
            return exec_plain(&rustc, &args);
        }
    };
    job.run()
}

/// Why an invocation could not be cached (it then runs plainly). `kind` names it in stats.
#[derive(Debug, thiserror::Error)]
enum PrepareError {
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Toolchain(#[from] toolchain::ToolchainError),
    #[error("{0}")]
    Key(#[from] key::KeyError),
    #[error("cannot read the current dir: {0}")]
    Cwd(std::io::Error),
}

impl PrepareError {
    fn kind(&self) -> &'static str {
        match self {
            PrepareError::Cache(_) => "cache-open",
            PrepareError::Toolchain(_) => "toolchain",
            PrepareError::Key(_) => "key",
            PrepareError::Cwd(_) => "cwd",
        }
    }
}

/// A cacheable invocation with its invocation digest computed.
struct Job {
    rustc: OsString,
    inv: RustcInvocation,
    outputs: Outputs,
    cache: DiskCache,
    cwd: PathBuf,
    map: PathMap,
    invocation: Digest,
    /// What the invocation digest is made of, and the unit it belongs to (for `--explain`).
    parts: Vec<(String, String)>,
    unit: Digest,
    files: FileDigests,
    started: SystemTime,
    dist: Option<jetcc_common::config::FarmConfig>,
    /// The farm connection, opened on first need (`Some(None)`: tried and failed).
    session: Option<Option<Session>>,
    /// What the last `store` recorded, to share it in the farm's cache.
    stored: Option<(ManifestEntry, CacheEntry)>,
    /// The farm's cache is only read (`[cache.jetstream] read_only`).
    shared_read_only: bool,
    /// The object-store tier, and its session once opened (`Some(None)`: tried and failed).
    object_cfg: Option<jetcc_common::config::ObjectTierConfig>,
    object: Option<Option<ObjectSession>>,
    /// Shared tiers that failed as a whole in this process: not written to.
    tiers_down: Vec<&'static str>,
    toolchain: Digest,
    /// When jetcc started work on this invocation: what it adds is measured from here.
    clock: Instant,
    /// rustc's time, once a miss compiled.
    compile_time: Option<std::time::Duration>,
}

impl Job {
    fn prepare(
        config: &Config,
        rustc: &OsString,
        inv: RustcInvocation,
        outputs: Outputs,
    ) -> Result<Job, PrepareError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let cache = DiskCache::open(&config.cache_dir, config.cache_size)?;
        let cwd = std::env::current_dir().map_err(PrepareError::Cwd)?;
        let toolchain = toolchain::identity(Path::new(rustc), &cache.toolchain_memo_dir())?;
        let linker = match outputs.links {
            true => {
                let program = inv.codegen_opt("linker").flatten().unwrap_or("cc");
                Some(toolchain::linker_identity(
                    Path::new(program),
                    &cache.toolchain_memo_dir(),
                )?)
            }
            false => None,
        };
        let out_dir = cwd.join(&outputs.out_dir);
        let dep_dirs: Vec<PathBuf> = inv
            .search_paths
            .iter()
            .filter(|sp| {
                matches!(
                    sp.kind,
                    SearchKind::Dependency | SearchKind::Crate | SearchKind::All
                )
            })
            .map(|sp| cwd.join(&sp.path))
            .collect();
        let map = PathMap::new(&out_dir, &dep_dirs, &config.base_dirs, &cwd);
        let env: Vec<(String, String)> = std::env::vars().collect();
        let mut files = FileDigests::new(&cwd, Some(cache.stat_memo_dir()));
        let parts = key::invocation_parts(
            &InvocationInputs {
                toolchain: &toolchain,
                inv: &inv,
                cwd: &cwd,
                env: &env,
                map: &map,
                linker: linker.as_ref(),
            },
            &mut files,
        )?;
        let invocation = key::invocation_digest(&parts);
        let unit = explain::unit_id(&inv, &cwd.to_string_lossy(), &map);
        Ok(Job {
            dist: config.farm.clone(),
            session: None,
            stored: None,
            shared_read_only: config.jetstream_read_only,
            object_cfg: config.object.clone(),
            object: None,
            tiers_down: Vec::new(),
            toolchain,
            parts,
            unit,
            rustc: rustc.clone(),
            files,
            outputs: Outputs { out_dir, ..outputs },
            inv,
            cache,
            cwd,
            map,
            invocation,
            started,
            clock,
            compile_time: None,
        })
    }

    /// Runs the invocation, then tells monitors what it did (only where it talked to the
    /// server anyway: a local hit opens no connection for an event).
    fn run(&mut self) -> i32 {
        let code = self.run_cached();
        if let Some(Some(session)) = &self.session {
            let crate_name = self.inv.crate_name.as_deref().unwrap_or_default();
            let event =
                crate::events::unit_event(crate_name, self.compile_time, self.clock.elapsed());
            if let Some(event) = event {
                session.publish_event(&event);
            }
        }
        code
    }

    fn run_cached(&mut self) -> i32 {
        let crate_name = self.inv.crate_name.clone().unwrap_or_default();
        let t0 = self.clock;
        let manifest = self.cache.manifest(&self.invocation);
        let found = manifest.find(&mut self.files, &|n| std::env::var(n).ok(), &self.map);
        let lookup_us = t0.elapsed().as_micros() as u64;
        let Some(found) = found else {
            if let Some(code) = self.try_shared_hit() {
                return code;
            }
            let why = self.explain_miss(&manifest);
            return self.miss(&why, manifest.newest_stored_at());
        };
        let key = found.key;
        self.refresh_stamps(found);
        match self.try_hit(&key) {
            Ok(Some(entry)) => {
                let restored = entry.total_output_bytes();
                let spent = t0.elapsed().as_millis() as u64;
                tracing::debug!(%crate_name, %key, lookup_us, total_ms = spent, "hit");
                self.replay(&entry);
                record(self.cache.root(), |s| {
                    s.requests += 1;
                    s.hits += 1;
                    s.bytes_restored += restored;
                    s.time_saved_ms += entry.compile_ms.saturating_sub(spent);
                    let local = s.tier("local");
                    local.hits += 1;
                    local.bytes_read += restored;
                    local.time_ms += spent;
                });
                entry.exit_code
            }
            Ok(None) => self.miss("the manifest names an entry that is gone", None),
            Err(e) if e.is_missing_blob() => {
                self.cache.remove_entry(&key);
                self.miss("the entry's outputs were evicted", None)
            }
            Err(e) => {
                tracing::warn!(%crate_name, "dropping an unusable cache entry: {e}");
                self.cache.remove_entry(&key);
                record(self.cache.root(), |s| {
                    Stats::bump(&mut s.errors, "corrupt-entry");
                    Stats::bump(&mut s.tier("local").errors, "corrupt");
                });
                self.miss("the entry was unusable", None)
            }
        }
    }

    /// Restores the entry for `key` into the out-dir. `Ok(None)`: no such entry.
    fn try_hit(&mut self, key: &Digest) -> Result<Option<CacheEntry>, CacheError> {
        let Some(entry) = self.cache.entry(key) else {
            return Ok(None);
        };
        for out in &entry.outputs {
            let path = match self.cache.restore_output(out, &self.outputs.out_dir) {
                Ok(path) => path,
                Err(e) => {
                    // Blobs are shared and written once: drop all of this entry's, so the
                    // compile that follows stores them afresh.
                    if matches!(e, CacheError::Blob { .. }) {
                        entry
                            .outputs
                            .iter()
                            .for_each(|o| self.cache.remove_blob(&o.digest));
                    }
                    return Err(e);
                }
            };
            // Dependents hash this file as an `--extern`: tell them its digest.
            self.files.remember_written(&path, out.digest);
        }
        let (name, text) = &entry.dep_info;
        let text = self.map.restore(text.as_bytes());
        let dest = self.outputs.out_dir.join(name);
        jetcc_common::fsutil::write_atomic(&dest, &text)
            .map_err(|source| CacheError::Write { path: dest, source })?;
        Ok(Some(entry))
    }

    fn replay(&self, entry: &CacheEntry) {
        let _ = std::io::stdout().write_all(&self.map.restore(&entry.stdout));
        let _ = std::io::stderr().write_all(&self.map.restore(&entry.stderr));
    }

    fn miss(&mut self, why: &str, newest_stored_at: Option<u64>) -> i32 {
        let crate_name = self.inv.crate_name.clone().unwrap_or_default();
        let crate_name = crate_name.as_str();
        tracing::debug!(crate_name, why, "miss");
        let mut words: Vec<String> = self.inv.words().map(str::to_owned).collect();
        words.extend(self.map.remap_args());
        // A link's inputs are only known once rustc has picked them: have it print them.
        let link_args = self.outputs.links.then(|| {
            let file = jetcc_common::fsutil::temp_path_for(&self.outputs.out_dir.join("link-args"));
            words.push(format!("--print=link-args={}", file.display()));
            file
        });
        // With a farm: a free local slot compiles here; the overflow goes to the farm when
        // it is healthy and fast enough, else waits for a local slot.
        let placement = self.placement();
        let mut slot = placement.as_ref().and_then(Placement::try_slot);
        let remote = match &placement {
            Some(pl) if slot.is_none() && self.distributable() => self.try_remote(&words, pl),
            _ => None,
        };
        if remote.is_none() && slot.is_none() {
            slot = placement.as_ref().and_then(Placement::slot);
        }
        let ran_remotely = remote.is_some();
        let compiled = match remote {
            Some(c) => Ok(c),
            None => {
                let c = compile::run_streaming(&self.rustc, &words);
                if let (Ok(c), Some(pl)) = (&c, &placement) {
                    pl.record_local(c.duration);
                }
                c
            }
        };
        drop(slot);
        let link_inputs = link_args.map(|file| {
            let printed = std::fs::read_to_string(&file).ok();
            let _ = std::fs::remove_file(&file);
            printed.map(|p| linkargs::library_inputs(&p))
        });
        let compiled = match compiled {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot start rustc: {e}");
                record(self.cache.root(), |s| Stats::bump(&mut s.errors, "spawn"));
                return exec_plain(
                    &self.rustc,
                    &self.inv.words().map(OsString::from).collect::<Vec<_>>(),
                );
            }
        };
        let code = compiled.exit_code;
        self.compile_time = Some(compiled.duration);
        let outcome = if code != 0 {
            Err(Stored::No("compile-error"))
        } else if self.in_edit_loop(newest_stored_at) {
            Err(Stored::No("edit-loop"))
        } else {
            let stored = match link_inputs {
                Some(None) => Err(Stored::No("link-inputs-unknown")),
                Some(Some(libs)) => self.store(&compiled, &libs),
                None => self.store(&compiled, &[]),
            };
            self.cache.commit_size();
            if stored.is_ok() {
                self.share_stored(ran_remotely);
            }
            stored
        };
        record(self.cache.root(), |s| {
            s.requests += 1;
            s.misses += 1;
            s.tier("local").misses += 1;
            match &outcome {
                Ok(bytes) => {
                    s.bytes_stored += bytes;
                    s.tier("local").writes += 1;
                    s.tier("local").bytes_written += bytes;
                }
                Err(Stored::No(why)) => Stats::bump(&mut s.not_stored, why),
                Err(Stored::Error(e)) => Stats::bump(&mut s.errors, e),
            }
        });
        match outcome {
            Ok(_) => tracing::debug!(
                crate_name,
                compile_ms = compiled.duration.as_millis() as u64,
                overhead_us = self
                    .clock
                    .elapsed()
                    .saturating_sub(compiled.duration)
                    .as_micros() as u64,
                "stored"
            ),
            Err(Stored::No(why)) => tracing::debug!(crate_name, "not stored: {why}"),
            Err(Stored::Error(e)) => tracing::warn!(crate_name, "could not store the result: {e}"),
        }
        code
    }

    /// Stores a successful compile whose link (if any) read `libs`; returns the bytes of
    /// outputs it covers.
    fn store(&mut self, compiled: &Compiled, libs: &[String]) -> Result<u64, Stored> {
        let out_dir = self.outputs.out_dir.clone();
        let dep_path = out_dir.join(&self.outputs.dep_info);
        let dep_text =
            std::fs::read_to_string(&dep_path).map_err(|_| Stored::Error("dep-info-unreadable"))?;
        let dep = DepInfo::parse(&dep_text);
        // Fresh digests: the lookup may have hashed an older version of a file.
        self.files = FileDigests::new(&self.cwd, Some(self.cache.stat_memo_dir()));
        let read: Vec<String> = dep.sources.iter().chain(libs).cloned().collect();
        let sources = self.sources_now(&read)?;
        let env_deps: Vec<_> = dep
            .env_deps
            .into_iter()
            .map(|(name, value)| (name, value.map(|v| self.map.key_path(&v))))
            .collect();
        let key = key::result_key(&self.invocation, &sources, &env_deps);
        let mut outputs = Vec::new();
        for name in self
            .outputs
            .files
            .iter()
            .filter(|f| **f != self.outputs.dep_info)
        {
            let path = out_dir.join(name);
            let out = self
                .cache
                .put_output(name, &path)
                .map_err(|_| Stored::Error("cache-write"))?;
            self.files.remember_written(&path, out.digest);
            outputs.push(out);
        }
        let dep_stored = String::from_utf8(self.map.store(dep_text.as_bytes()))
            .map_err(|_| Stored::Error("dep-info-unreadable"))?;
        let entry = CacheEntry {
            version: FORMAT_VERSION,
            outputs,
            dep_info: (self.outputs.dep_info.clone(), dep_stored),
            stdout: self.map.store(&compiled.stdout),
            stderr: self.map.store(&compiled.stderr),
            exit_code: compiled.exit_code,
            compile_ms: compiled.duration.as_millis() as u64,
        };
        self.cache
            .put_entry(&key, &entry)
            .map_err(|_| Stored::Error("cache-write"))?;
        self.cache.put_unit_parts(&self.unit, &self.parts);
        let found = ManifestEntry {
            sources,
            env_deps,
            key,
            stored_at: unix_secs(SystemTime::now()),
        };
        self.cache
            .add_to_manifest(&self.invocation, found.clone())
            .map_err(|_| Stored::Error("cache-write"))?;
        let bytes = entry.total_output_bytes();
        self.stored = Some((found, entry));
        Ok(bytes)
    }
}

/// An incremental unit that was stored this recently and misses again is being edited: its
/// results would only be stored to be replaced, so jetcc stays out of the edit loop's way.
const EDIT_LOOP_WINDOW_SECS: u64 = 600;

impl Job {
    /// Says why no manifest entry matched, and records it for `jetcc --explain`.
    fn explain_miss(&mut self, manifest: &Manifest) -> String {
        let lines = match manifest.entries.first() {
            Some(newest) => explain::diff_sources(
                newest,
                &mut self.files,
                &|n| std::env::var(n).ok(),
                &self.map,
            ),
            None => match self.cache.unit_parts(&self.unit) {
                Some(old) => explain::diff_parts(&old, &self.parts),
                None => vec!["first compile of this unit".to_owned()],
            },
        };
        let why = if lines.is_empty() {
            "an earlier compile of this invocation read other files".to_owned()
        } else {
            lines.join("; ")
        };
        let name = self.inv.crate_name.as_deref().unwrap_or("?");
        self.cache
            .log_miss(&format!("{name} ({}): {why}", self.cwd.display()));
        why
    }

    fn in_edit_loop(&self, newest_stored_at: Option<u64>) -> bool {
        let incremental = self.inv.codegen_opt("incremental").is_some();
        let now = unix_secs(SystemTime::now());
        incremental
            && newest_stored_at.is_some_and(|t| now.saturating_sub(t) < EDIT_LOOP_WINDOW_SECS)
    }

    /// Digests and stamps of the sources a compile read. Fails if one changed after the
    /// compile started: the result might not match what the key would say.
    fn sources_now(&mut self, paths: &[String]) -> Result<Vec<Source>, Stored> {
        let started = files::system_ns(self.started);
        let now = files::now_ns();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let stamp = self
                .files
                .stamp(path)
                .ok_or(Stored::No("source-unreadable"))?;
            if stamp.changed_since(started) {
                tracing::debug!(path, "changed while rustc ran");
                return Err(Stored::No("input-changed-during-compile"));
            }
            let digest = self
                .files
                .digest(path)
                .ok_or(Stored::No("source-unreadable"))?;
            sources.push(Source {
                path: self.map.key_path(path),
                digest,
                stamp: stamp.settled(now).then_some(stamp),
            });
        }
        Ok(sources)
    }

    /// After a hit that had to hash some sources (a fresh checkout, a `touch`), records their
    /// current stamps so the next hit only stats them. Best effort.
    fn refresh_stamps(&mut self, found: &ManifestEntry) {
        let now = files::now_ns();
        let mut fresh = found.clone();
        let mut changed = false;
        for s in &mut fresh.sources {
            let stamp = self
                .files
                .stamp(&self.map.local_path(&s.path))
                .filter(|st| st.settled(now));
            if stamp.is_some() && stamp != s.stamp {
                s.stamp = stamp;
                changed = true;
            }
        }
        if changed {
            if let Err(e) = self.cache.add_to_manifest(&self.invocation, fresh) {
                tracing::debug!("cannot refresh manifest stamps: {e}");
            }
        }
    }
}

/// Why a compile's result was not stored: an expected case, or a jetcc-side error.
enum Stored {
    No(&'static str),
    Error(&'static str),
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Updates the shared stats, and this process's own delta (its monitor event); failures (a
/// read-only cache dir) are logged only.
fn record(cache_dir: &Path, mut f: impl FnMut(&mut Stats)) {
    crate::events::note(&mut f);
    if let Err(e) = std::fs::create_dir_all(cache_dir).and_then(|_| Stats::update(cache_dir, f)) {
        tracing::debug!("cannot update stats in {}: {e}", cache_dir.display());
    }
}

/// Replaces this process with plain rustc. Returns only if exec failed.
fn exec_plain(rustc: &OsString, args: &[OsString]) -> i32 {
    let err = Command::new(rustc).args(args).exec();
    eprintln!("jetcc: cannot run {}: {err}", rustc.to_string_lossy());
    1
}
