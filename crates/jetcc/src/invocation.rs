//! [`Invocation`]: one wrapped rustc call, prepared and immutable from then on: its parsed
//! arguments, what it writes, its paths mapping, and its invocation digest (the first half of
//! the key, computed before anything is looked up).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use jetcc_common::args::{CrateType, RustcArgs, SearchKind};
use jetcc_common::cache::{CacheError, DiskCache};
use jetcc_common::classify::Outputs;
use jetcc_common::config::{Config, PathsMode};
use jetcc_common::files::FileDigests;
use jetcc_common::key::{self, InvocationInputs};
use jetcc_common::pathmap::{PathMap, Portable};
use jetcc_common::result::CacheEntry;
use jetcc_common::stats::ErrorKind;
use jetcc_common::{environ, explain, fsutil, toolchain, Digest};

use crate::tiers::{Action, TierFailure};

/// Why an invocation could not be prepared (it then runs as plain rustc).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{0}")]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Toolchain(#[from] toolchain::ToolchainError),
    #[error("{0}")]
    Key(#[from] key::KeyError),
    #[error("cannot read the current dir: {0}")]
    Cwd(std::io::Error),
    #[error("{0}")]
    Env(#[from] environ::NotUtf8),
}

impl PrepareError {
    /// Its kind in `Stats::errors`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PrepareError::Cache(_) => ErrorKind::CacheOpen,
            PrepareError::Toolchain(_) => ErrorKind::Toolchain,
            PrepareError::Key(_) => ErrorKind::Key,
            PrepareError::Cwd(_) => ErrorKind::Cwd,
            PrepareError::Env(_) => ErrorKind::EnvNotUtf8,
        }
    }
}

/// A cacheable rustc invocation with its invocation digest computed.
pub struct Invocation {
    pub rustc: OsString,
    pub args: RustcArgs,
    /// What it writes; `out_dir` absolute.
    pub outputs: Outputs,
    pub cwd: PathBuf,
    pub map: PathMap,
    /// What `map` was built from besides the invocation itself: `base_dirs`, and the
    /// portable roots (`None`: exact paths). A farm job carries them (see `remote`).
    pub base_dirs: Vec<PathBuf>,
    pub portable: Option<Portable>,
    /// The invocation digest: what a manifest is filed under.
    pub digest: Digest,
    /// What the digest is made of, and the unit it belongs to (for `--explain`).
    pub parts: Vec<(String, String)>,
    pub unit: Digest,
    /// The compiler's identity.
    pub toolchain: Digest,
    /// When jetcc started on it: a source changed after this makes a result unstorable.
    pub started: SystemTime,
    /// The same moment, for measuring what jetcc adds.
    pub clock: Instant,
}

impl Invocation {
    /// Computes the invocation digest. Also returns the file digests it read (externs,
    /// native libraries), memoized for the lookup that follows.
    pub fn prepare(
        config: &Config,
        cache: &DiskCache,
        rustc: &OsString,
        args: RustcArgs,
        outputs: Outputs,
    ) -> Result<(Invocation, FileDigests), PrepareError> {
        let started = SystemTime::now();
        let clock = Instant::now();
        let cwd = std::env::current_dir().map_err(PrepareError::Cwd)?;
        let mut files = FileDigests::new(&cwd, Some(cache.stat_memo_dir()));
        let toolchain = toolchain::identity(Path::new(rustc), &cache.toolchain_memo_dir())?;
        let linker = match outputs.links {
            true => {
                let program = args.codegen_opt("linker").flatten().unwrap_or("cc");
                Some(toolchain::linker_identity(
                    Path::new(program),
                    &cache.toolchain_memo_dir(),
                )?)
            }
            false => None,
        };
        let out_dir = cwd.join(&outputs.out_dir);
        let dep_dirs = args.crate_dirs(&cwd);
        // Portable unless the invocation maps paths itself: its own remaps must stand.
        let own_remaps = args.words().any(|w| w.starts_with("--remap-path-"));
        let portable = (config.paths == PathsMode::Portable && !own_remaps).then(|| {
            Portable::from_env(&|k| std::env::var(k).ok(), &out_dir, args.target.as_deref())
        });
        let map = PathMap::new(
            &out_dir,
            &dep_dirs,
            &config.base_dirs,
            &cwd,
            portable.as_ref(),
        );
        let env = environ::utf8_vars(key::is_keyed_env)?;
        let parts = key::invocation_parts(
            &InvocationInputs {
                toolchain: &toolchain,
                inv: &args,
                cwd: &cwd,
                env: &env,
                map: &map,
                linker: linker.as_ref(),
            },
            &mut files,
        )?;
        let digest = key::invocation_digest(&parts);
        let unit = explain::unit_id(&args, &cwd.to_string_lossy(), &map);
        let inv = Invocation {
            rustc: rustc.clone(),
            outputs: Outputs { out_dir, ..outputs },
            args,
            cwd,
            map,
            base_dirs: config.base_dirs.clone(),
            portable,
            digest,
            parts,
            unit,
            toolchain,
            started,
            clock,
        };
        Ok((inv, files))
    }

    pub fn crate_name(&self) -> &str {
        self.args.crate_name.as_deref().unwrap_or_default()
    }

    /// The binary it writes if it compiles a build script (`build_script_build`, a bin in
    /// `build/<pkg>-<h>`): jetcc leaves its launcher there, where cargo will run it.
    pub fn build_script_binary(&self) -> Option<PathBuf> {
        let is_script = self.crate_name().starts_with("build_script_")
            && self.outputs.links
            && self
                .outputs
                .out_dir
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "build");
        let stem = self.outputs.dep_info.strip_suffix(".d")?;
        is_script.then(|| self.outputs.out_dir.join(stem))
    }

    /// Whether the farm can compile it: incremental units compile faster where their
    /// incremental state is; cross-compiles need the target's std; of the links, only those
    /// a worker can repeat exactly ([`Invocation::links_on_farm`]).
    pub fn distributable(&self) -> bool {
        !self.incremental()
            && self.args.target.is_none()
            && (!self.outputs.links || self.links_on_farm())
    }

    /// A link the farm can run: a proc macro that links nothing of its own (no `-l`, no
    /// native search dir, no linker or link argument), so what it links is the toolchain's,
    /// its crates' (inputs, shipped) and the C runtime of the default driver `cc`, which
    /// the job names file by file for the worker to check against its own
    /// (`remote::inputs`). Proc macros because cargo cannot pipeline them: they hold up
    /// their dependents (`syn`'s users wait for `serde_derive`). Build scripts and binaries
    /// stay here: small, or reading every crate of the build.
    pub fn links_on_farm(&self) -> bool {
        let a = &self.args;
        a.crate_types == [CrateType::ProcMacro]
            && a.link_libs.is_empty()
            && a.search_paths
                .iter()
                .all(|s| matches!(s.kind, SearchKind::Dependency | SearchKind::Crate))
            && !a
                .codegen
                .iter()
                .any(|(name, _)| name.starts_with("link"))
            // Unstable options can add link arguments (`-Z pre-link-arg`).
            && !a.words().any(|w| w.starts_with("-Z"))
    }

    pub fn incremental(&self) -> bool {
        self.args.codegen_opt("incremental").is_some()
    }
}

impl Action for Invocation {
    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn output_dir(&self) -> &Path {
        &self.outputs.out_dir
    }

    fn map(&self) -> &PathMap {
        &self.map
    }

    fn label(&self) -> &str {
        self.crate_name()
    }

    /// A worker records a rustc compile it ran (`jetcc-worker`'s `share`), but for a link:
    /// its key names the client's linker, which the worker does not vouch for.
    fn recorded_by_worker(&self) -> bool {
        !self.outputs.links
    }

    /// Writes the dep-info with this build's paths.
    fn finish_restore(&self, entry: &CacheEntry) -> Result<(), TierFailure> {
        if let Some((name, text)) = &entry.dep_info {
            let dest = self.outputs.out_dir.join(name);
            fsutil::write_atomic(&dest, &self.map.restore(text.as_bytes()))
                .map_err(|e| TierFailure::local_io(&dest, e))?;
        }
        Ok(())
    }
}
