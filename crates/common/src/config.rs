//! Configuration, layered with the `config` crate: built-in defaults → `/etc/jetcc/config.toml`
//! → the user's `~/.config/jetcc/config.toml` (or the file named by `JETCC_CONFIG`) → `JETCC_*`
//! env vars. Key names follow sccache's (`[cache.disk] dir`, `size`) so its users feel at home.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod farm;
mod object;

pub use farm::{
    CacheLimits, FarmConfig, WorkerConfig, DEFAULT_AC_SIZE, DEFAULT_JETSTREAM_MAX_AGE_DAYS,
    DEFAULT_JETSTREAM_SIZE, DEFAULT_JOBS_SIZE,
};
pub use object::{AzureConfig, Backend, GcsConfig, ObjectTierConfig, S3Config, S3Encryption};

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

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
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
            .set_override_option("dist.start_timeout_ms", env("JETCC_DIST_START_TIMEOUT_MS"))?
            .set_override_option("worker.name", env("JETCC_WORKER_NAME"))?
            .set_override_option("worker.slots", env("JETCC_WORKER_SLOTS"))?
            .set_override_option("worker.cache_dir", env("JETCC_WORKER_DIR"))?
            .set_override_option("worker.timeout_secs", env("JETCC_WORKER_TIMEOUT_SECS"))?
            .set_override_option("worker.run_as", env("JETCC_WORKER_RUN_AS"))?
            .set_override_option("worker.memory_limit", env("JETCC_WORKER_MEMORY_LIMIT"))?
            .set_override_option("worker.pids_limit", env("JETCC_WORKER_PIDS_LIMIT"))?
            .set_override_option("worker.disk_limit", env("JETCC_WORKER_DISK_LIMIT"))?;
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

/// A size field in a section deserialized whole (`[worker] memory_limit`): bytes, or text
/// as [`parse_size`] reads it.
fn deserialize_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Bytes(n) => Ok(n),
        SizeValue::Text(t) => parse_size(&t).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid size {t:?} (use bytes or a K/M/G/T suffix, e.g. \"4G\")"
            ))
        }),
    }
}

fn size_of(key: &str, v: Option<SizeValue>, default: u64) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(SizeValue::Bytes(n)) => Ok(n),
        Some(SizeValue::Text(t)) => parse_size(&t).ok_or(ConfigError::Size {
            key: key.into(),
            value: t,
        }),
    }
}

/// `"10G"`, `"512 MiB"`, `"1000"` → bytes (binary multiples, as sccache).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, toml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::load_from(&[&f], &|k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn verify_rate_from_file_env_and_the_verify_switch() {
        assert_eq!(load("", &[]).unwrap().verify_rate, 0.0);
        let c = load("[cache]\nverify_rate = 0.25\n", &[]).unwrap();
        assert_eq!(c.verify_rate, 0.25);
        let c = load("", &[("JETCC_VERIFY_RATE", "0.5")]).unwrap();
        assert_eq!(c.verify_rate, 0.5);
        let c = load("[cache]\nverify_rate = 0.1\n", &[("JETCC_VERIFY", "1")]).unwrap();
        assert_eq!(c.verify_rate, 1.0);
        let c = load("", &[("JETCC_VERIFY", "0")]).unwrap();
        assert_eq!(c.verify_rate, 0.0);
        assert!(matches!(
            load("[cache]\nverify_rate = 2.0\n", &[]),
            Err(ConfigError::VerifyRate(_))
        ));
    }

    #[test]
    fn credentials_never_show_in_the_config_debug_form() {
        let c = load(
            "[dist]\nnats_url = \"nats://ci:pw-in-url@h:4222\"\npassword = \"pw-key\"\n\
             token = \"tok-key\"\n",
            &[],
        )
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["pw-in-url", "pw-key", "tok-key"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("nats://ci:***@h:4222"), "{shown}");
    }

    #[test]
    fn defaults_file_and_env_layer() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.cache_size, DEFAULT_CACHE_SIZE);
        assert!(c.cache_dir.ends_with("jetcc"));
        let c = load("[cache.disk]\ndir = \"/x\"\nsize = \"2G\"\n", &[]).unwrap();
        assert_eq!(
            (c.cache_dir.as_path(), c.cache_size),
            (Path::new("/x"), 2 << 30)
        );
        let c = load(
            "[cache.disk]\ndir = \"/x\"\nsize = 5\n",
            &[("JETCC_DIR", "/y"), ("JETCC_CACHE_SIZE", "1M")],
        )
        .unwrap();
        assert_eq!(
            (c.cache_dir.as_path(), c.cache_size),
            (Path::new("/y"), 1 << 20)
        );
        let c = load("base_dirs = [\"/home/a\"]\n[dist]\nnats_url = \"x\"\n", &[]).unwrap();
        assert_eq!(c.base_dirs, vec![PathBuf::from("/home/a")]);
        // sccache's current spelling.
        let c = load("basedirs = [\"/home/b\"]\n", &[]).unwrap();
        assert_eq!(c.base_dirs, vec![PathBuf::from("/home/b")]);
        let c = load("", &[("JETCC_BASE_DIRS", "/a:/b")]).unwrap();
        assert_eq!(c.base_dirs.len(), 2);
        assert!(c.cache_incremental);
        let c = load("[cache]\nincremental = \"pass-through\"\n", &[]).unwrap();
        assert!(!c.cache_incremental);
        assert_eq!(
            c.paths,
            PathsMode::Exact,
            "the local cache alone keeps paths exact"
        );
        assert!(!c.jetstream_read_only, "read-write by default");
        let c = load("[cache.jetstream]\nread_only = true\n", &[]).unwrap();
        assert!(c.jetstream_read_only);
        let c = load("", &[("JETCC_JETSTREAM_RW_MODE", "READ_ONLY")]).unwrap();
        assert!(c.jetstream_read_only, "sccache's spelling");
        assert!(matches!(
            load("[cache.jetstream]\nrw_mode = \"sometimes\"\n", &[]),
            Err(ConfigError::RwMode { .. })
        ));
        assert!(load("", &[("JETCC_INCREMENTAL", "sometimes")]).is_err());
        assert!(!c.disk_read_only, "the local cache is written by default");
        let c = load("[cache.disk]\nrw_mode = \"READ_ONLY\"\n", &[]).unwrap();
        assert!(c.disk_read_only, "sccache's key");
        let c = load(
            "[cache.disk]\nread_only = true\n",
            &[("JETCC_LOCAL_RW_MODE", "READ_WRITE")],
        );
        assert!(!c.unwrap().disk_read_only, "the env wins");
        assert!(matches!(
            load("[cache.disk]\nrw_mode = \"RO\"\n", &[]),
            Err(ConfigError::RwMode { section, .. }) if section == "cache.disk"
        ));
    }

    #[test]
    fn dist_and_worker_sections() {
        assert_eq!(load("", &[]).unwrap().farm, None);
        let c = load(
            "[dist]\nnats_url = \"nats://f:4222\"\ntoken = \"s\"\n[worker]\nslots = 3\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.paths,
            PathsMode::Portable,
            "shared results use portable paths"
        );
        let exact = load(
            "[dist]\nnats_url = \"x\"\n[cache]\npaths = \"exact\"\n",
            &[],
        );
        assert_eq!(exact.unwrap().paths, PathsMode::Exact);
        let env = load("", &[("JETCC_PATHS", "portable")]).unwrap();
        assert_eq!(env.paths, PathsMode::Portable);
        assert!(matches!(
            load("[cache]\npaths = \"relative\"\n", &[]),
            Err(ConfigError::Paths(_))
        ));
        let d = c.farm.unwrap();
        assert_eq!(
            (d.nats_url.as_str(), d.prefix.as_str()),
            ("nats://f:4222", "jetcc")
        );
        assert_eq!(d.token.as_deref(), Some("s"));
        assert_eq!(c.worker.slots, Some(3));
        let c = load(
            "",
            &[
                ("JETCC_NATS_URL", "nats://e:1"),
                ("JETCC_WORKER_SLOTS", "2"),
            ],
        )
        .unwrap();
        assert_eq!(c.farm.unwrap().nats_url, "nats://e:1");
        assert_eq!(c.worker.slots, Some(2));
        assert_eq!(c.worker.memory_limit, farm::DEFAULT_WORKER_MEMORY_LIMIT);
        let w = load(
            "[worker]\nmemory_limit = \"512M\"\npids_limit = 64\ndisk_limit = 1000\n",
            &[("JETCC_WORKER_RUN_AS", "builder")],
        )
        .unwrap()
        .worker;
        assert_eq!(
            (
                w.memory_limit,
                w.pids_limit,
                w.disk_limit,
                w.run_as.as_deref()
            ),
            (512 << 20, 64, 1000, Some("builder"))
        );
        let w = load("", &[("JETCC_WORKER_DISK_LIMIT", "2G")])
            .unwrap()
            .worker;
        assert_eq!(w.disk_limit, 2 << 30);
        let e = load("[worker]\nmemory_limit = \"lots\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("lots"), "{e}");
        let d = load(
            "[dist]\nnats_url = \"x\"\n[cache.jetstream]\nmax_size = \"2G\"\nmax_age_days = 3\n",
            &[],
        )
        .unwrap()
        .farm
        .unwrap();
        assert_eq!(d.cache_limits.max_bytes, 2 << 30);
        assert_eq!(d.cache_limits.max_age.as_secs(), 3 * 86_400);
        assert_eq!(d.cache_limits.ac_max_bytes, DEFAULT_AC_SIZE);
        assert_eq!(d.cache_limits.jobs_max_bytes, DEFAULT_JOBS_SIZE);
        assert_eq!(
            (d.cache_limits.gc_high_water, d.cache_limits.gc_low_water),
            (90, 75)
        );
        let d = load(
            "[dist]\nnats_url = \"x\"\n[cache.jetstream]\nac_max_size = \"64M\"\n\
             gc_high_water = 80\ngc_low_water = 50\ngc_interval_secs = 5\n",
            &[("JETCC_JETSTREAM_JOBS_MAX_SIZE", "1K")],
        )
        .unwrap()
        .farm
        .unwrap();
        let l = d.cache_limits;
        assert_eq!((l.ac_max_bytes, l.jobs_max_bytes), (64 << 20, 1024));
        assert_eq!((l.gc_high_water, l.gc_low_water), (80, 50));
        assert_eq!(l.gc_interval.as_secs(), 5);
        for bad in [
            "gc_low_water = 95",
            "gc_high_water = 101",
            "gc_low_water = 0",
        ] {
            let e = load(&format!("[cache.jetstream]\n{bad}\n"), &[]).unwrap_err();
            assert!(matches!(e, ConfigError::GcWater { .. }), "{bad}: {e}");
        }
        let d = load(
            "[dist]\nnats_url = \"x\"\n",
            &[
                ("JETCC_NATS_TLS_CA", "/ca.pem"),
                ("JETCC_NATS_TLS_CERT", "/c.pem"),
                ("JETCC_NATS_TLS_KEY", "/k.pem"),
            ],
        )
        .unwrap()
        .farm
        .unwrap();
        assert_eq!(d.tls_ca.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(d.tls_key.as_deref(), Some(Path::new("/k.pem")));
        assert!(matches!(
            load("[dist]\nnats_url = \"x\"\ntls_cert = \"/c.pem\"\n", &[]),
            Err(ConfigError::TlsClientPair)
        ));
        let e = load("[dist]\nnats_url = \"x\"\nprefix = \"A.B\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("prefix"), "{e}");
        assert!(load("[dist]\nnats_urll = \"x\"\n", &[]).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        let e = load("[cache.disk]\nsize = \"lots\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cache.disk.size"), "{e}");
        let e = load("[cache.disk]\ndri = \"/x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("dri"), "{e}");
        let e = load("[cache.disk\n", &[]).unwrap_err().to_string();
        assert!(e.contains("config.toml"), "{e}");
        assert!(load("base_dirs = [\"rel\"]", &[]).is_err());
    }

    #[test]
    fn object_tier_sections() {
        assert_eq!(load("", &[]).unwrap().object, None);
        // The seed's sccache block, verbatim.
        let c = load(
            "[cache.s3]\nbucket = \"cache\"\nendpoint = \"https://my.minio.lan/\"\n\
             region = \"auto\"\nuse_ssl = true\nkey_prefix = \"sccache\"\nno_credentials = false\n",
            &[],
        )
        .unwrap();
        let o = c.object.unwrap();
        assert_eq!((o.key_prefix.as_str(), o.read_only), ("sccache", false));
        let Backend::S3(s3) = &o.backend else {
            panic!("{o:?}")
        };
        assert_eq!(s3.endpoint.as_deref(), Some("https://my.minio.lan/"));
        assert_eq!(
            (s3.region.as_deref(), s3.use_ssl),
            (Some("auto"), Some(true))
        );
        assert!(!s3.enable_virtual_host_style);
        assert_eq!(s3.encryption(), None);
        let sse = |toml: &str, env: &[(&str, &str)]| {
            let o = load(&format!("[cache.s3]\nbucket = \"b\"\n{toml}"), env)
                .unwrap()
                .object
                .unwrap();
            let Backend::S3(s3) = o.backend else {
                panic!("{o:?}")
            };
            s3.encryption()
        };
        assert_eq!(
            sse("server_side_encryption = true\n", &[]),
            Some(S3Encryption::S3Managed)
        );
        assert_eq!(
            sse("", &[("JETCC_S3_SERVER_SIDE_ENCRYPTION", "true")]),
            Some(S3Encryption::S3Managed)
        );
        assert_eq!(
            sse(
                "server_side_encryption = true\nserver_side_encryption_aws_kms = true\n",
                &[]
            ),
            Some(S3Encryption::Kms { key_id: None }),
            "KMS wins over SSE-S3, as in sccache"
        );
        assert_eq!(
            sse("server_side_encryption_kms_key_id = \"arn:k\"\n", &[]),
            Some(S3Encryption::Kms {
                key_id: Some("arn:k".into())
            }),
            "a key id implies KMS"
        );
        let o = load(
            "",
            &[
                ("JETCC_S3_BUCKET", "b"),
                ("JETCC_S3_NO_CREDENTIALS", "true"),
                ("JETCC_S3_RW_MODE", "READ_ONLY"),
                ("JETCC_S3_KEY_PREFIX", "/p/"),
            ],
        )
        .unwrap()
        .object
        .unwrap();
        assert!(o.read_only);
        assert_eq!(o.key_prefix, "p");
        assert!(matches!(&o.backend, Backend::S3(s) if s.no_credentials && s.bucket == "b"));
        let o = load("[cache.path]\ndir = \"/mnt/c\"\nread_only = true\n", &[])
            .unwrap()
            .object
            .unwrap();
        assert_eq!(o.backend, Backend::Path(PathBuf::from("/mnt/c")));
        assert!(matches!(
            load(
                "[cache.path]\ndir = \"/a\"\n[cache.gcs]\nbucket = \"b\"\n",
                &[]
            ),
            Err(ConfigError::SeveralObjectTiers)
        ));
        assert!(load("[cache.s3]\nbucket = \"b\"\nbukket = 1\n", &[]).is_err());
        let e = load("[cache.s3]\nbucket = \"b\"\nrw_mode = \"x\"\n", &[]).unwrap_err();
        assert!(e.to_string().contains("cache.s3.rw_mode"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G"), Some(10 << 30));
        assert_eq!(parse_size("512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }
}
