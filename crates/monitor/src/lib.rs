//! jetcc-monitor's library: the compile farm as its operators see it, read only from what
//! NATS already holds.
//!
//! - [`status`]: the farm now ([`status::Report`]: workers, queue, bucket sizes), as a table
//!   or JSON.
//! - [`live`]: the same state kept fresh, plus the [`tally`] of the events wrappers and
//!   workers publish on `jetcc.events.>` (hits and misses by tier, compiles local and
//!   remote, fallbacks, jobs, durations), and their [`trend`] second by second over the last
//!   minutes.
//! - [`watch`]: a live terminal view of [`live`] (trends as sparklines, workers' busy slots
//!   as gauges); [`metrics`]: the same as Prometheus text.
//!
//! Design choice: the monitor keeps no state of its own on the server and nothing waits for
//! it. Its gauges come from stream, consumer and heartbeat reads any client may make; its
//! counters from fire-and-forget events that are simply dropped when no monitor listens, so
//! a slow or absent monitor never slows a build.
//!
//! **Architecture invariant**: the monitor depends on `jetcc_common` only, never on the
//! `jetcc` crate or the worker, and talks to NATS only through `jetcc_common::farm` (events
//! arrive as typed `FarmEvent`s): it has no NATS client of its own, so it spells no subject.

pub mod live;
pub mod metrics;
pub mod status;
pub mod tally;
pub mod trend;
pub mod watch;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};
use jetcc_common::config::{Config, FarmConfig};
use jetcc_common::exit::{self, ExitCode};
use jetcc_common::farm::{Farm, Lifetime};

#[derive(Debug, Parser)]
#[command(
    name = "jetcc-monitor",
    version,
    about = "Shows jetcc's compile farm: workers, queue depth, throughput, cache hit rates.",
    after_help = format!(
        "The server and credentials come from [dist] in jetcc's config file (or JETCC_CONFIG) \
         and JETCC_NATS_URL, JETCC_NATS_USER/PASSWORD, JETCC_NATS_TOKEN, JETCC_NATS_CREDS, as \
         for jetcc itself. Logs: JETCC_LOG=debug.\n{}",
        exit::HELP
    )
)]
struct Cli {
    /// The NATS server (default: [dist] nats_url, JETCC_NATS_URL).
    #[arg(long, global = true)]
    nats_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The farm now: workers, queue, bucket sizes.
    Status {
        /// JSON for scripts instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A live view that refreshes in place: the last five minutes' jobs/s, hit rate and
    /// queue, each worker's busy slots (q, Esc or Ctrl-C to leave).
    Watch {
        /// Seconds between reads of the farm's state.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
    },
    /// Prometheus metrics on http://LISTEN/metrics.
    Serve {
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: SocketAddr,
        /// Seconds between reads of the farm's state.
        #[arg(long, default_value_t = 5.0)]
        every: f64,
    },
}

/// Why a command failed; `exit_code` is what the binary exits with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MonitorError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No farm configured, or a bad setting: [`ExitCode::Usage`].
    Usage,
    /// The farm could not be reached or read: [`ExitCode::Failed`].
    Farm,
    /// The terminal or the listening socket: [`ExitCode::Failed`].
    Io,
}

impl MonitorError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> MonitorError {
        MonitorError {
            kind,
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self.kind {
            ErrorKind::Usage => ExitCode::Usage,
            ErrorKind::Farm | ErrorKind::Io => ExitCode::Failed,
        }
    }
}

/// Parses the command line and runs it; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // `--help` and `--version` are no errors.
            let code = if e.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Success
            };
            return code.code();
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::Success.code(),
        Err(e) => {
            eprintln!("jetcc-monitor: {e}");
            e.exit_code().code()
        }
    }
}

fn run(cli: Cli) -> Result<(), MonitorError> {
    // Logs would tear the live view: it has none.
    if !matches!(cli.command, Command::Watch { .. }) {
        init_logging();
    }
    let dist = dist_config(cli.nats_url)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| MonitorError::new(ErrorKind::Io, format!("cannot start a runtime: {e}")))?;
    match cli.command {
        Command::Status { json } => runtime.block_on(print_status(&dist, json)),
        Command::Watch { every } => {
            let live = runtime.block_on(async {
                let farm = connect(&dist, Lifetime::Service).await?;
                Ok::<_, MonitorError>(live::start(farm, seconds(every)?).await)
            })?;
            watch::run(live)
                .map_err(|e| MonitorError::new(ErrorKind::Io, format!("the terminal: {e}")))
        }
        Command::Serve { listen, every } => runtime.block_on(async {
            let farm = connect(&dist, Lifetime::Service).await?;
            let live = live::start(farm, seconds(every)?).await;
            metrics::serve(listen, live).await.map_err(|e| {
                MonitorError::new(ErrorKind::Io, format!("cannot serve on {listen}: {e}"))
            })
        }),
    }
}

async fn print_status(dist: &FarmConfig, json: bool) -> Result<(), MonitorError> {
    let farm = connect(dist, Lifetime::Wrapper).await?;
    let status = farm.read_status().await.map_err(|e| {
        MonitorError::new(
            ErrorKind::Farm,
            format!("cannot read the farm's state: {e}"),
        )
    })?;
    let report = status::Report::new(&farm.url, &status);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn dist_config(nats_url: Option<String>) -> Result<FarmConfig, MonitorError> {
    let config = Config::load().map_err(|e| MonitorError::new(ErrorKind::Usage, e.to_string()))?;
    match (config.farm, nats_url) {
        (Some(dist), Some(url)) => Ok(FarmConfig {
            nats_url: url,
            ..dist
        }),
        (Some(dist), None) => Ok(dist),
        (None, Some(url)) => Ok(FarmConfig::with_url(url)),
        (None, None) => Err(MonitorError::new(
            ErrorKind::Usage,
            "no farm configured: pass --nats-url, or set [dist] nats_url or JETCC_NATS_URL",
        )),
    }
}

async fn connect(dist: &FarmConfig, life: Lifetime) -> Result<Farm, MonitorError> {
    Farm::connect(dist, "jetcc-monitor", life)
        .await
        .map_err(|e| MonitorError::new(ErrorKind::Farm, e.to_string()))
}

fn seconds(s: f64) -> Result<Duration, MonitorError> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| *d >= Duration::from_millis(100))
        .ok_or_else(|| {
            MonitorError::new(
                ErrorKind::Usage,
                format!("--every {s}: give at least 0.1 seconds"),
            )
        })
}

/// Logs to stderr through `tracing`, off unless `JETCC_LOG` is set (a bare level is for
/// jetcc's crates); each line names the module that wrote it.
fn init_logging() {
    if let Ok(value) = std::env::var("JETCC_LOG") {
        let filter = jetcc_common::logfilter::directives(&value);
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_target(true)
            .with_writer(std::io::stderr)
            .init();
    }
}
