//! The life of one rustc invocation: classify, prepare the [`Invocation`], look it up in the
//! tiers, restore and replay a hit, or compile (here or on the farm), store and share.
//!
//! Errors before rustc starts end in plain rustc (`exec`); errors after it ran are logged and
//! counted, and rustc's own exit code stands. rustc never runs twice for one invocation.
//! Every invocation logs one line with an `outcome` field (`hit`, `miss`, `pass-through`).

use std::ffi::OsString;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use jetcc_common::args::RustcArgs;
use jetcc_common::cache::DiskCache;
use jetcc_common::classify::{classify, Outputs, PassThrough, Policy};
use jetcc_common::config::Config;
use jetcc_common::files::FileDigests;
use jetcc_common::linkargs;
use jetcc_common::protocol::events::UnitKind;
use jetcc_common::stats::{ErrorKind, NotStoredReason, Stats, LOCAL_TIER};

use crate::compile::{self, Compiled};
use crate::invocation::{Invocation, PrepareError};
use crate::record;
use crate::tiers::{Hit, LocalTier, SharedTiers};

pub(crate) mod store;
mod verify;

use store::NotStored;

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
            eprintln!(
                "jetcc: {}; running rustc without the cache",
                jetcc_common::redact::credentials(&e.to_string())
            );
            return exec_plain(&rustc, &args);
        }
    };
    let parsed = match RustcArgs::parse(args.iter().cloned()) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::debug!(outcome = "pass-through", "cannot read the arguments: {e}");
            return pass_through(&config, PassThrough::UnreadableArgs, &rustc, &args);
        }
    };
    let policy = Policy {
        cache_incremental: config.cache_incremental,
    };
    let outputs = match classify(&parsed, policy) {
        Ok(o) => o,
        Err(reason) => {
            tracing::debug!(crate_name = ?parsed.crate_name, outcome = "pass-through", "{reason}");
            return pass_through(&config, reason, &rustc, &args);
        }
    };
    match Wrapper::prepare(&config, &rustc, parsed, outputs) {
        Ok(wrapper) => wrapper.run(),
        Err(e) => {
            tracing::warn!(
                outcome = "pass-through",
                "jetcc cannot cache this invocation ({e}); running plain rustc"
            );
            record(&config.cache_dir, |s| {
                s.requests += 1;
                Stats::bump(&mut s.errors, &e.kind())
            });
            exec_plain(&rustc, &args)
        }
    }
}

fn pass_through(config: &Config, reason: PassThrough, rustc: &OsString, args: &[OsString]) -> i32 {
    record(&config.cache_dir, |s| {
        s.requests += 1;
        Stats::bump(&mut s.pass_through, &reason)
    });
    exec_plain(rustc, args)
}

/// One invocation being served: the immutable [`Invocation`] and what serving it changes.
struct Wrapper {
    inv: Invocation,
    cache: DiskCache,
    /// Digests of the files read so far, memoized by stamp.
    files: FileDigests,
    shared: SharedTiers,
    /// rustc's time, once a miss compiled.
    compile_time: Option<Duration>,
    /// `[cache] build_scripts`: leave the launcher in place of build scripts.
    build_scripts: bool,
    /// `[cache] verify_rate`: the share of hits compiled again to check them.
    verify_rate: f64,
}

impl Wrapper {
    fn prepare(
        config: &Config,
        rustc: &OsString,
        args: RustcArgs,
        outputs: Outputs,
    ) -> Result<Wrapper, PrepareError> {
        let cache = DiskCache::open(&config.cache_dir, config.cache_size)?
            .with_read_only(config.disk_read_only);
        let (inv, files) = Invocation::prepare(config, &cache, rustc, args, outputs)?;
        Ok(Wrapper {
            inv,
            cache,
            files,
            shared: SharedTiers::new(config),
            compile_time: None,
            build_scripts: config.build_scripts,
            verify_rate: config.verify_rate,
        })
    }

    /// Serves the invocation, then tells monitors what it did (only where it talked to the
    /// server anyway: a local hit opens no connection for an event).
    fn run(mut self) -> i32 {
        let code = self.serve();
        crate::events::publish(
            &self.shared,
            UnitKind::Rustc,
            self.inv.crate_name(),
            self.compile_time,
            self.inv.clock.elapsed(),
        );
        code
    }

    fn serve(&mut self) -> i32 {
        let local = LocalTier(&self.cache);
        let code = match self.shared.look_up(&local, &self.inv, &mut self.files) {
            Some(hit) if self.verify_due() => self.verify(hit),
            Some(hit) => self.hit(hit),
            None => self.miss(),
        };
        // The binary is written (and stored): cargo's run of it goes through jetcc.
        let launch = code == 0 && self.build_scripts;
        if let Some(exe) = self.inv.build_script_binary().filter(|_| launch) {
            if let Err(e) = crate::buildscript::launcher::install(&exe) {
                tracing::warn!("build script {} runs uncached: {e}", exe.display());
            }
        }
        code
    }

    /// Replays a restored result and returns rustc's exit code.
    fn hit(&mut self, hit: Hit) -> i32 {
        if hit.tier == LOCAL_TIER {
            self.refresh_stamps(&hit.found);
        }
        let entry = &hit.entry;
        let _ = std::io::stdout().write_all(&self.inv.map.restore(&entry.stdout));
        let _ = std::io::stderr().write_all(&self.inv.map.restore(&entry.stderr));
        let restored = entry.total_output_bytes();
        let spent = self.inv.clock.elapsed().as_millis() as u64;
        tracing::debug!(
            crate_name = self.inv.crate_name(),
            outcome = "hit",
            tier = hit.tier,
            key = %hit.found.key,
            total_ms = spent,
            "hit ({})",
            hit.tier
        );
        record(self.cache.root(), |s| {
            s.requests += 1;
            s.hits += 1;
            s.bytes_restored += restored;
            s.time_saved_ms += entry.compile_ms.saturating_sub(spent);
        });
        entry.exit_code
    }

    /// Compiles (here, or on the farm when a farm is configured and no local slot is free),
    /// then stores and shares the result. Returns rustc's exit code.
    fn miss(&mut self) -> i32 {
        let manifest = self.cache.manifest(&self.inv.digest);
        let why = self.explain_miss(&manifest);
        let crate_name = self.inv.crate_name().to_owned();
        tracing::debug!(crate_name, outcome = "miss", why, "miss");
        let mut words: Vec<String> = self.inv.args.words().map(str::to_owned).collect();
        words.extend(self.inv.map.remap_args());
        // A link's inputs are only known once rustc has picked them: have it print them.
        let link_args = self.inv.outputs.links.then(|| {
            let out = self.inv.outputs.out_dir.join("link-args");
            let file = jetcc_common::fsutil::temp_path_for(&out);
            words.push(format!("--print=link-args={}", file.display()));
            file
        });
        let (compiled, on_farm) = match self.compile(&words) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot start rustc: {e}");
                record(self.cache.root(), |s| {
                    Stats::bump(&mut s.errors, &ErrorKind::Spawn)
                });
                let words: Vec<OsString> = self.inv.args.words().map(OsString::from).collect();
                return exec_plain(&self.inv.rustc, &words);
            }
        };
        let link_inputs = link_args.map(|file| {
            let printed = std::fs::read_to_string(&file).ok();
            let _ = std::fs::remove_file(&file);
            printed.map(|p| linkargs::library_inputs(&p))
        });
        self.compile_time = Some(compiled.duration);
        let read_only = self.cache.is_read_only();
        let outcome =
            self.store_and_share(&compiled, link_inputs, manifest.newest_stored_at(), on_farm);
        record(self.cache.root(), |s| {
            s.requests += 1;
            s.misses += 1;
            match &outcome {
                Ok(_) if read_only => {
                    Stats::bump(&mut s.not_stored, &NotStoredReason::LocalReadOnly)
                }
                Ok(bytes) => {
                    s.bytes_stored += bytes;
                    let local = s.tier(LOCAL_TIER);
                    local.writes += 1;
                    local.bytes_written += bytes;
                }
                Err(NotStored::Skipped(why)) => Stats::bump(&mut s.not_stored, why),
                Err(NotStored::Failed(e)) => Stats::bump(&mut s.errors, e),
            }
        });
        match outcome {
            Ok(_) => tracing::debug!(
                crate_name,
                compile_ms = compiled.duration.as_millis() as u64,
                overhead_us = self
                    .inv
                    .clock
                    .elapsed()
                    .saturating_sub(compiled.duration)
                    .as_micros() as u64,
                "stored"
            ),
            Err(NotStored::Skipped(why)) => {
                tracing::debug!(
                    crate_name,
                    "not stored: {}",
                    jetcc_common::stats::StatKind::name(&why)
                )
            }
            Err(NotStored::Failed(e)) => tracing::warn!(
                crate_name,
                "could not store the result: {}",
                jetcc_common::stats::StatKind::name(&e)
            ),
        }
        compiled.exit_code
    }

    /// Runs rustc: with a farm, a free local slot compiles here; the overflow goes to the
    /// farm when it is healthy and fast enough, else waits for a local slot. Returns the
    /// compile and whether it ran on the farm.
    fn compile(&mut self, words: &[String]) -> std::io::Result<(Compiled, bool)> {
        let farm = self.shared.farm().cloned();
        let (shared, cache, inv, files) =
            (&mut self.shared, &self.cache, &self.inv, &mut self.files);
        crate::placement::compile_placed(
            farm.as_ref(),
            cache.root(),
            Some(crate::placement::unit_of_rustc(&inv.unit, &inv.args)),
            inv.distributable(),
            |pl| crate::remote::try_remote_rustc(shared, cache, inv, words, files, pl),
            || compile::run_streaming(&inv.rustc, words),
        )
    }

    /// Stores a compile's result locally unless it should not be, then shares it.
    fn store_and_share(
        &mut self,
        compiled: &Compiled,
        link_inputs: Option<Option<Vec<String>>>,
        newest_stored_at: Option<u64>,
        on_farm: bool,
    ) -> Result<u64, NotStored> {
        if compiled.exit_code != 0 {
            return Err(NotStored::Skipped(NotStoredReason::CompileError));
        }
        if self.in_edit_loop(newest_stored_at) {
            return Err(NotStored::Skipped(NotStoredReason::EditLoop));
        }
        let libs = match link_inputs {
            Some(None) => return Err(NotStored::Skipped(NotStoredReason::LinkInputsUnknown)),
            Some(Some(libs)) => libs,
            None => Vec::new(),
        };
        let stored = self.store(compiled, &libs);
        self.cache.commit_size();
        let (found, entry) = stored?;
        self.shared.share(&self.inv, &found, &entry, on_farm);
        Ok(entry.total_output_bytes())
    }
}

/// Replaces this process with plain rustc. Returns only if exec failed.
fn exec_plain(rustc: &OsString, args: &[OsString]) -> i32 {
    let err = crate::exec(Command::new(rustc).args(args));
    eprintln!("jetcc: cannot run {}: {err}", rustc.to_string_lossy());
    1
}
