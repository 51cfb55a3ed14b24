//! Configuration, layered with the `config` crate: built-in defaults → `/etc/jetcc/config.toml`
//! → the user's `~/.config/jetcc/config.toml` (or the file named by `JETCC_CONFIG`) → `JETCC_*`
//! env vars. Key names follow sccache's (`[cache.disk] dir`, `size`) so its users feel at home.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod farm;
mod object;
mod size;

pub use farm::{
    CacheLimits, FarmConfig, WorkerConfig, DEFAULT_AC_SIZE, DEFAULT_JETSTREAM_MAX_AGE_DAYS,
    DEFAULT_JETSTREAM_SIZE, DEFAULT_JOBS_SIZE,
};
pub use object::{AzureConfig, Backend, GcsConfig, ObjectTierConfig, S3Config, S3Encryption};
pub use size::parse_size;
use size::{size_of, SizeValue};

/// The default local cache size: 10 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

/// The settings jetcc runs with, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub cache_dir: PathBuf,
    pub cache_size: u64,
    /// The local disk cache is looked up but never written (`[cache.disk] rw_mode =
    /// "READ_ONLY"`, sccache's key; `JETCC_LOCAL_RW_MODE`): a CI job reading a cache baked
    /// into its image, say. Shared tiers are written as their own modes say.
    pub disk_read_only: bool,
    /// Path prefixes mapped out of keys and outputs (opt-in; see `pathmap`).
    pub base_dirs: Vec<PathBuf>,
    /// Cache incremental compiles (`[cache] incremental = "cache"`, the default) or run them
    /// as plain rustc (`"pass-through"`).
    pub cache_incremental: bool,
    /// How paths of this build enter keys and outputs (`[cache] paths`).
    pub paths: PathsMode,
    /// Cache build-script runs (`[cache] build_scripts`, default true): jetcc leaves its
    /// launcher in place of each build script it compiles.
    pub build_scripts: bool,
    /// The share of rustc hits compiled again and compared byte for byte with what the
    /// cache restored (`[cache] verify_rate`, 0.0 to 1.0, default 0; `JETCC_VERIFY_RATE`, and
    /// `JETCC_VERIFY=1` or `jetcc --verify CMD` for 1.0).
    pub verify_rate: f64,
    /// The farm (`[dist]`); `None`: no farm, every miss compiles locally.
    pub farm: Option<FarmConfig>,
    /// The farm's shared cache is only read, never written (`[cache.jetstream] read_only =
    /// true`, or sccache's `rw_mode = "READ_ONLY"`): a laptop reading what CI filled.
    pub jetstream_read_only: bool,
    /// The object-store tier (`[cache.s3]`, `[cache.gcs]`, `[cache.azure]` or `[cache.path]`),
    /// looked up after the JetStream tier.
    pub object: Option<ObjectTierConfig>,
    pub worker: WorkerConfig,
}

/// How paths of a build enter keys and outputs (`[cache] paths`, `JETCC_PATHS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathsMode {
    /// Outputs byte-identical to a plain build; a hit needs the same checkout, target dir and
    /// `CARGO_HOME` paths (or `base_dirs`). The default with the local cache alone.
    Exact,
    /// The workspace, target dir, `CARGO_HOME`, package roots and `$HOME` are mapped out of
    /// keys and, with `--remap-path-prefix`, out of outputs, as cargo's `trim-paths` does:
    /// another checkout or machine hits. The default when a shared tier or the farm is set.
    Portable,
}

impl PathsMode {
    pub fn name(self) -> &'static str {
        match self {
            PathsMode::Exact => "exact",
            PathsMode::Portable => "portable",
        }
    }

    /// The mode whose keys never meet this one's.
    pub fn other(self) -> PathsMode {
        match self {
            PathsMode::Exact => PathsMode::Portable,
            PathsMode::Portable => PathsMode::Exact,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid jetcc configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("invalid size {value:?} for {key} (use bytes or a K/M/G/T suffix, e.g. \"10G\")")]
    Size { key: String, value: String },
    #[error("invalid cache.incremental {0:?} (use \"cache\" or \"pass-through\")")]
    Incremental(String),
    #[error("invalid cache.paths {0:?} (use \"portable\" or \"exact\")")]
    Paths(String),
    #[error("invalid cache.verify_rate {0} (use a share from 0.0, never, to 1.0, every hit)")]
    VerifyRate(f64),
    #[error("invalid {section}.rw_mode {value:?} (use \"READ_ONLY\" or \"READ_WRITE\")")]
    RwMode { section: String, value: String },
    #[error(
        "more than one of [cache.s3], [cache.gcs], [cache.azure], [cache.path] is set: keep one"
    )]
    SeveralObjectTiers,
    #[error("[cache.path] dir {0:?} must be an absolute path")]
    RelativeCachePath(PathBuf),
    #[error("invalid [dist] prefix: {0}")]
    Prefix(#[from] crate::protocol::names::NameError),
    #[error(
        "invalid [cache.jetstream] gc_high_water {high} / gc_low_water {low}: give percentages \
         with 0 < gc_low_water < gc_high_water <= 100 (default 75 and 90)"
    )]
    GcWater { high: u8, low: u8 },
    #[error("[dist] tls_cert and tls_key go together (JETCC_NATS_TLS_CERT, JETCC_NATS_TLS_KEY): set both or neither")]
    TlsClientPair,
    #[error("base_dirs entry {0:?} must be an absolute path")]
    RelativeBaseDir(PathBuf),
    #[error(
        "no cache dir: neither [cache.disk] dir, JETCC_DIR nor a user cache dir (HOME) is set"
    )]
    NoCacheDir,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    cache: RawCache,
    #[serde(default, alias = "basedirs")]
    base_dirs: Vec<PathBuf>,
    dist: Option<FarmConfig>,
    #[serde(default)]
    worker: WorkerConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default)]
    disk: RawDisk,
    incremental: Option<String>,
    paths: Option<String>,
    build_scripts: Option<bool>,
    verify_rate: Option<f64>,
    #[serde(default)]
    jetstream: RawJetStream,
    s3: Option<object::S3Config>,
    gcs: Option<object::GcsConfig>,
    azure: Option<object::AzureConfig>,
    path: Option<object::PathConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJetStream {
    read_only: Option<bool>,
    rw_mode: Option<String>,
    max_size: Option<SizeValue>,
    max_age_days: Option<u64>,
    ac_max_size: Option<SizeValue>,
    jobs_max_size: Option<SizeValue>,
    gc_high_water: Option<u8>,
    gc_low_water: Option<u8>,
    gc_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    dir: Option<PathBuf>,
    size: Option<SizeValue>,
    read_only: Option<bool>,
    rw_mode: Option<String>,
}

impl Config {
    /// Loads the layered configuration from the real files and environment.
    pub fn load() -> Result<Config, ConfigError> {
        let user = std::env::var_os("JETCC_CONFIG")
            .map(PathBuf::from)
            .or_else(|| dirs::config_dir().map(|d| d.join("jetcc/config.toml")));
        Config::load_from(
            &[
                Path::new("/etc/jetcc/config.toml"),
                user.as_deref().unwrap_or(Path::new("")),
            ],
            &|k| std::env::var(k).ok(),
        )
    }

    /// Loads from the given files (missing ones are skipped) and env lookup.
    pub fn load_from(
        files: &[&Path],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut b = config::Config::builder();
        for f in files.iter().filter(|f| !f.as_os_str().is_empty()) {
            b = b.add_source(
                config::File::from(*f)
                    .format(config::FileFormat::Toml)
                    .required(false),
            );
        }
        b = b
            .set_override_option("cache.disk.dir", env("JETCC_DIR"))?
            .set_override_option("cache.disk.size", env("JETCC_CACHE_SIZE"))?
            .set_override_option("cache.disk.rw_mode", env("JETCC_LOCAL_RW_MODE"))?
            .set_override_option("cache.incremental", env("JETCC_INCREMENTAL"))?
            .set_override_option("cache.paths", env("JETCC_PATHS"))?
            .set_override_option("cache.build_scripts", env("JETCC_BUILD_SCRIPTS"))?
            .set_override_option("cache.verify_rate", env("JETCC_VERIFY_RATE"))?
            .set_override_option("cache.jetstream.rw_mode", env("JETCC_JETSTREAM_RW_MODE"))?
            .set_override_option("cache.jetstream.max_size", env("JETCC_JETSTREAM_MAX_SIZE"))?
            .set_override_option(
                "cache.jetstream.max_age_days",
                env("JETCC_JETSTREAM_MAX_AGE_DAYS"),
            )?
            .set_override_option(
                "cache.jetstream.ac_max_size",
                env("JETCC_JETSTREAM_AC_MAX_SIZE"),
            )?
            .set_override_option(
                "cache.jetstream.jobs_max_size",
                env("JETCC_JETSTREAM_JOBS_MAX_SIZE"),
            )?
            .set_override_option(
                "cache.jetstream.gc_high_water",
                env("JETCC_JETSTREAM_GC_HIGH_WATER"),
            )?
            .set_override_option(
                "cache.jetstream.gc_low_water",
                env("JETCC_JETSTREAM_GC_LOW_WATER"),
            )?
            .set_override_option(
                "cache.jetstream.gc_interval_secs",
                env("JETCC_JETSTREAM_GC_INTERVAL_SECS"),
            )?
            .set_override_option("dist.nats_url", env("JETCC_NATS_URL"))?
            .set_override_option("dist.token", env("JETCC_NATS_TOKEN"))?
            .set_override_option("dist.user", env("JETCC_NATS_USER"))?
            .set_override_option("dist.password", env("JETCC_NATS_PASSWORD"))?
            .set_override_option("dist.creds", env("JETCC_NATS_CREDS"))?
            .set_override_option("dist.tls_ca", env("JETCC_NATS_TLS_CA"))?
            .set_override_option("dist.tls_cert", env("JETCC_NATS_TLS_CERT"))?
            .set_override_option("dist.tls_key", env("JETCC_NATS_TLS_KEY"))?
            .set_override_option("dist.prefix", env("JETCC_NATS_PREFIX"))?
            .set_override_option("dist.breaker_secs", env("JETCC_DIST_BREAKER_SECS"))?
            .set_override_option("dist.local_slots", env("JETCC_DIST_LOCAL_SLOTS"))?
            .set_override_option("dist.ship_toolchain", env("JETCC_DIST_SHIP_TOOLCHAIN"))?
            .set_override_option("dist.guess_inputs", env("JETCC_DIST_GUESS_INPUTS"))?
            .set_override_option("dist.start_timeout_ms", env("JETCC_DIST_START_TIMEOUT_MS"))?
            .set_override_option("worker.name", env("JETCC_WORKER_NAME"))?
            .set_override_option("worker.slots", env("JETCC_WORKER_SLOTS"))?
            .set_override_option("worker.cache_dir", env("JETCC_WORKER_DIR"))?
            .set_override_option("worker.timeout_secs", env("JETCC_WORKER_TIMEOUT_SECS"))?
            .set_override_option("worker.run_as", env("JETCC_WORKER_RUN_AS"))?
            .set_override_option("worker.memory_limit", env("JETCC_WORKER_MEMORY_LIMIT"))?
            .set_override_option("worker.pids_limit", env("JETCC_WORKER_PIDS_LIMIT"))?
            .set_override_option("worker.disk_limit", env("JETCC_WORKER_DISK_LIMIT"))?
            .set_override_option(
                "worker.toolchain_cache_size",
                env("JETCC_WORKER_TOOLCHAIN_CACHE_SIZE"),
            )?;
        for (key, var) in object::ENV {
            b = b.set_override_option(*key, env(var))?;
        }
        // `JETCC_VERIFY=1` (what `jetcc --verify CMD` sets): every hit.
        if env("JETCC_VERIFY").is_some_and(|v| !v.is_empty() && v != "0") {
            b = b.set_override("cache.verify_rate", 1.0)?;
        }
        if let Some(dirs) = env("JETCC_BASE_DIRS") {
            let list: Vec<String> = std::env::split_paths(&dirs)
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .collect();
            b = b.set_override("base_dirs", list)?;
        }
        let raw: Raw = b.build()?.try_deserialize()?;
        let cache_size = size_of("cache.disk.size", raw.cache.disk.size, DEFAULT_CACHE_SIZE)?;
        let js = &raw.cache.jetstream;
        let defaults = CacheLimits::default();
        let limits = CacheLimits {
            max_bytes: size_of(
                "cache.jetstream.max_size",
                js.max_size.clone(),
                DEFAULT_JETSTREAM_SIZE,
            )?,
            max_age: std::time::Duration::from_secs(
                js.max_age_days
                    .unwrap_or(DEFAULT_JETSTREAM_MAX_AGE_DAYS)
                    .max(1)
                    * 86_400,
            ),
            ac_max_bytes: size_of(
                "cache.jetstream.ac_max_size",
                js.ac_max_size.clone(),
                DEFAULT_AC_SIZE,
            )?,
            jobs_max_bytes: size_of(
                "cache.jetstream.jobs_max_size",
                js.jobs_max_size.clone(),
                DEFAULT_JOBS_SIZE,
            )?,
            gc_high_water: js.gc_high_water.unwrap_or(defaults.gc_high_water),
            gc_low_water: js.gc_low_water.unwrap_or(defaults.gc_low_water),
            gc_interval: js.gc_interval_secs.map_or(defaults.gc_interval, |s| {
                std::time::Duration::from_secs(s.max(1))
            }),
        };
        let (high, low) = (limits.gc_high_water, limits.gc_low_water);
        if !(0 < low && low < high && high <= 100) {
            return Err(ConfigError::GcWater { high, low });
        }
        let cache_dir = match raw.cache.disk.dir {
            Some(d) => d,
            None => dirs::cache_dir()
                .ok_or(ConfigError::NoCacheDir)?
                .join("jetcc"),
        };
        let cache_incremental = match raw.cache.incremental.as_deref() {
            None | Some("cache") => true,
            Some("pass-through") => false,
            Some(other) => return Err(ConfigError::Incremental(other.to_owned())),
        };
        let disk_read_only = object::read_only(
            "cache.disk",
            raw.cache.disk.read_only,
            raw.cache.disk.rw_mode.as_deref(),
        )?;
        let jetstream_read_only = object::read_only(
            "cache.jetstream",
            raw.cache.jetstream.read_only,
            raw.cache.jetstream.rw_mode.as_deref(),
        )?;
        let object = object::RawObject {
            s3: raw.cache.s3,
            gcs: raw.cache.gcs,
            azure: raw.cache.azure,
            path: raw.cache.path,
        }
        .resolve()?;
        if let Some(d) = &raw.dist {
            crate::protocol::names::Names::new(&d.prefix)?;
            if d.tls_cert.is_some() != d.tls_key.is_some() {
                return Err(ConfigError::TlsClientPair);
            }
        }
        if let Some(rel) = raw.base_dirs.iter().find(|p| !p.is_absolute()) {
            return Err(ConfigError::RelativeBaseDir(rel.clone()));
        }
        let farm = raw
            .dist
            .filter(|d| !d.nats_url.is_empty())
            .map(|d| FarmConfig {
                cache_limits: limits,
                ..d
            });
        // Where results are shared, they are shared across checkouts and machines.
        let paths = match raw.cache.paths.as_deref() {
            None if farm.is_some() || object.is_some() => PathsMode::Portable,
            None | Some("exact") => PathsMode::Exact,
            Some("portable") => PathsMode::Portable,
            Some(other) => return Err(ConfigError::Paths(other.to_owned())),
        };
        let verify_rate = raw.cache.verify_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&verify_rate) {
            return Err(ConfigError::VerifyRate(verify_rate));
        }
        Ok(Config {
            cache_dir,
            cache_size,
            disk_read_only,
            base_dirs: raw.base_dirs,
            cache_incremental,
            paths,
            build_scripts: raw.cache.build_scripts.unwrap_or(true),
            verify_rate,
            farm,
            jetstream_read_only,
            object,
            worker: raw.worker,
        })
    }
}

#[cfg(test)]
mod tests;
