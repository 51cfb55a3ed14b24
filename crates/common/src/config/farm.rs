//! The farm's settings: how to reach its NATS server (`[dist]`), the JetStream tier's bucket
//! limits (`[cache.jetstream]`), and the worker's own (`[worker]`), with their defaults.

use std::path::PathBuf;

use serde::Deserialize;

/// How to reach the farm's NATS server (`[dist]`, or `JETCC_NATS_*`), shared by the wrapper,
/// the worker and the monitor.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FarmConfig {
    /// `nats://host:4222` (several comma-separated for a cluster).
    pub nats_url: String,
    /// Prefix of every subject, stream and bucket name (default `jetcc`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
    /// A CA certificate to verify the server's TLS certificate with (enables TLS).
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for a server that verifies clients (`verify: true` in its
    /// `tls` block); with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// How long the wrapper waits for a connection before compiling locally.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long a job may wait in the queue for a worker before the client compiles it
    /// locally (and the worker drops it unrun).
    #[serde(default = "default_start_timeout_ms")]
    pub start_timeout_ms: u64,
    /// Upper bound of one remote compile, after which the client compiles locally.
    #[serde(default = "default_job_timeout_secs")]
    pub job_timeout_secs: u64,
    /// Compiles kept on this machine while others go to the farm (default: its cores).
    pub local_slots: Option<usize>,
    /// After 3 farm failures in a row, compile locally for this long.
    #[serde(default = "default_breaker_secs")]
    pub breaker_secs: u64,
    /// When no live worker has this rustc, ship it (packed once, uploaded once per farm) to
    /// a worker that takes shipped toolchains; `false`: such compiles stay local.
    #[serde(default = "default_ship_toolchain")]
    pub ship_toolchain: bool,
    /// On a unit's first farm job, send its package's files and the crates it loads rather
    /// than list what it reads with a dep-info pre-pass (see `common::listing`); `false`:
    /// always pre-pass first.
    #[serde(default = "default_guess_inputs")]
    pub guess_inputs: bool,
    /// The JetStream tier's bucket limits (`[cache.jetstream]`), used by whoever creates them.
    #[serde(skip)]
    pub cache_limits: CacheLimits,
}

/// Size and age limits of the farm's streams and buckets (`[cache.jetstream]`), set by
/// whoever creates them (the workers) and brought up to date by a worker that starts with
/// other values. The CAS is kept under `max_bytes` by jetcc's garbage collection
/// (`farm::gc`), which the workers run; the result bucket drops its oldest entries when
/// full; a full jobs stream refuses new jobs (their clients compile locally).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The CAS (`max_size`).
    pub max_bytes: u64,
    /// Blobs and entries not written again within this expire (`max_age_days`).
    pub max_age: std::time::Duration,
    /// The result bucket (`ac_max_size`).
    pub ac_max_bytes: u64,
    /// The jobs stream (`jobs_max_size`).
    pub jobs_max_bytes: u64,
    /// When the CAS holds more than this share of `max_bytes`, the GC starts
    /// (`gc_high_water`, percent).
    pub gc_high_water: u8,
    /// ... and evicts the oldest blobs down to this share (`gc_low_water`, percent).
    pub gc_low_water: u8,
    /// How often each worker looks at the CAS's size (`gc_interval_secs`).
    pub gc_interval: std::time::Duration,
}

/// The JetStream tier's default size: 10 GiB, as the local cache.
pub const DEFAULT_JETSTREAM_SIZE: u64 = 10 << 30;
/// Entries and blobs not written again within this expire.
pub const DEFAULT_JETSTREAM_MAX_AGE_DAYS: u64 = 14;
/// The result bucket's default size: entries and manifests are small (about 1 KiB each).
pub const DEFAULT_AC_SIZE: u64 = 1 << 30;
/// The jobs stream's default size: a job is a few KiB, and jobs leave it once taken.
pub const DEFAULT_JOBS_SIZE: u64 = 256 << 20;

impl Default for CacheLimits {
    fn default() -> CacheLimits {
        CacheLimits {
            max_bytes: DEFAULT_JETSTREAM_SIZE,
            max_age: std::time::Duration::from_secs(DEFAULT_JETSTREAM_MAX_AGE_DAYS * 86_400),
            ac_max_bytes: DEFAULT_AC_SIZE,
            jobs_max_bytes: DEFAULT_JOBS_SIZE,
            gc_high_water: 90,
            gc_low_water: 75,
            gc_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// Shown without its credentials: the token and password masked, the URL's too.
impl std::fmt::Debug for FarmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |s: &Option<String>| s.as_ref().map(|_| crate::redact::MASK);
        f.debug_struct("FarmConfig")
            .field("nats_url", &self.display_url())
            .field("prefix", &self.prefix)
            .field("token", &masked(&self.token))
            .field("user", &self.user)
            .field("password", &masked(&self.password))
            .field("creds", &self.creds)
            .field("tls_ca", &self.tls_ca)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("start_timeout_ms", &self.start_timeout_ms)
            .field("job_timeout_secs", &self.job_timeout_secs)
            .field("local_slots", &self.local_slots)
            .field("breaker_secs", &self.breaker_secs)
            .field("ship_toolchain", &self.ship_toolchain)
            .field("guess_inputs", &self.guess_inputs)
            .field("cache_limits", &self.cache_limits)
            .finish()
    }
}

impl FarmConfig {
    /// The server URL as logs and reports show it: `user:password@` masked.
    pub fn display_url(&self) -> String {
        crate::redact::credentials(&self.nats_url)
    }

    /// Defaults for everything but the URL.
    pub fn with_url(nats_url: String) -> FarmConfig {
        FarmConfig {
            nats_url,
            prefix: default_prefix(),
            token: None,
            user: None,
            password: None,
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            start_timeout_ms: default_start_timeout_ms(),
            job_timeout_secs: default_job_timeout_secs(),
            breaker_secs: default_breaker_secs(),
            ship_toolchain: default_ship_toolchain(),
            guess_inputs: default_guess_inputs(),
            local_slots: None,
            cache_limits: CacheLimits::default(),
        }
    }
}

/// The worker's own settings (`[worker]`, or `JETCC_WORKER_*`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// The name the worker is known by across restarts (its metrics' `worker` label);
    /// default: the host name. Give each worker on one machine its own.
    pub name: Option<String>,
    /// Concurrent jobs; default: the machine's cores.
    pub slots: Option<usize>,
    /// Job roots and the worker's blob cache; default: `<cache dir>/worker`.
    pub cache_dir: Option<PathBuf>,
    /// rustc binaries the worker offers (default: the `rustc` on PATH).
    #[serde(default)]
    pub toolchains: Vec<PathBuf>,
    /// C/C++ compilers the worker offers to build scripts' compiles, each a name on PATH or
    /// a path whose file name is the name clients call it by (`cc`, `c++`, `gcc`, `g++`,
    /// `clang`, `clang++`). Default: those of these names found on PATH; `[]`: none.
    pub c_compilers: Option<Vec<PathBuf>>,
    /// Wall-clock limit of one job's rustc.
    #[serde(default = "default_worker_timeout_secs")]
    pub timeout_secs: u64,
    /// The unprivileged user a root worker runs jobs as; default `nobody`. A root worker
    /// without it refuses to start.
    pub run_as: Option<String>,
    /// Memory of one job, all its processes together (a cgroup's limit; where the worker
    /// cannot make cgroups, each process's RLIMIT_DATA). `"4G"` or bytes.
    #[serde(
        default = "default_memory_limit",
        deserialize_with = "super::size::deserialize_size"
    )]
    pub memory_limit: u64,
    /// Processes and threads of one job together (a cgroup's `pids.max`).
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u64,
    /// Disk of one job's writable dirs (its out-dir, with the inputs laid out there, and
    /// its tmp dir) together, and of its outputs together. `"4G"` or bytes.
    #[serde(
        default = "default_disk_limit",
        deserialize_with = "super::size::deserialize_size"
    )]
    pub disk_limit: u64,
    /// Disk for toolchains clients ship (unpacked, least recently used evicted first);
    /// `0`: take no shipped toolchains, run only this worker's own. `"4G"` or bytes.
    #[serde(
        default = "default_toolchain_cache_size",
        deserialize_with = "super::size::deserialize_size"
    )]
    pub toolchain_cache_size: u64,
}

/// `[worker] memory_limit`'s default.
pub const DEFAULT_WORKER_MEMORY_LIMIT: u64 = 8 << 30;
/// `[worker] pids_limit`'s default: rustc runs a thread per codegen unit and a few more.
pub const DEFAULT_WORKER_PIDS_LIMIT: u64 = 512;
/// `[worker] disk_limit`'s default.
pub const DEFAULT_WORKER_DISK_LIMIT: u64 = 8 << 30;
/// `[worker] toolchain_cache_size`'s default: a few shipped toolchains (about 0.5 GB each).
pub const DEFAULT_TOOLCHAIN_CACHE_SIZE: u64 = 4 << 30;

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            name: None,
            slots: None,
            cache_dir: None,
            toolchains: Vec::new(),
            c_compilers: None,
            timeout_secs: default_worker_timeout_secs(),
            run_as: None,
            memory_limit: default_memory_limit(),
            pids_limit: default_pids_limit(),
            disk_limit: default_disk_limit(),
            toolchain_cache_size: default_toolchain_cache_size(),
        }
    }
}

fn default_prefix() -> String {
    "jetcc".into()
}
fn default_connect_timeout_ms() -> u64 {
    500
}
fn default_start_timeout_ms() -> u64 {
    2_000
}
fn default_job_timeout_secs() -> u64 {
    600
}
fn default_breaker_secs() -> u64 {
    60
}
fn default_ship_toolchain() -> bool {
    true
}
fn default_guess_inputs() -> bool {
    true
}
fn default_worker_timeout_secs() -> u64 {
    600
}
fn default_memory_limit() -> u64 {
    DEFAULT_WORKER_MEMORY_LIMIT
}
fn default_pids_limit() -> u64 {
    DEFAULT_WORKER_PIDS_LIMIT
}
fn default_disk_limit() -> u64 {
    DEFAULT_WORKER_DISK_LIMIT
}
fn default_toolchain_cache_size() -> u64 {
    DEFAULT_TOOLCHAIN_CACHE_SIZE
}
