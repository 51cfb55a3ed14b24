//! jetcc-worker's library: pulls compile jobs from the JetStream work queue and runs them
//! confined, returning outputs through the CAS.
//!
//! - [`serve`]: the worker's life (connect, create resources, pull by free slots, heartbeat,
//!   clean stop).
//! - [`job`]: one job (lay out inputs, run rustc, stream stderr, upload outputs).
//! - [`jail`]: the job's view of the file system (the client's paths, in a mount namespace).
//! - [`sandbox`]: Landlock, rlimits and process-group confinement of the job's rustc;
//!   [`selftest`]: the jail tried once at start.
//! - [`cgroup`]: each job's memory and process limits; [`limits`]: its output and disk
//!   limits.
//! - [`share`]: recording a job's result in the farm's shared cache, under a key computed
//!   from the job.
//! - [`blobs`]: the worker's bounded cache of input blobs; [`toolchains`]: the rustcs it offers;
//!   [`shipped`]: the toolchains clients ship, unpacked and bounded.
//!
//! Design choice: a job sees its inputs at the client's absolute paths (a chroot in a private
//! mount namespace) instead of under a remapped prefix, because remapping changes rustc's
//! output bytes and remote outputs must equal local ones.
//!
//! **Architecture invariant**: the worker never depends on the `jetcc` crate; it knows NATS only
//! through `jetcc_common::farm` and `jetcc_common::protocol` (it has no `async-nats`
//! dependency).

pub mod blobs;
pub mod cgroup;
pub mod jail;
pub mod job;
pub mod limits;
pub mod sandbox;
pub mod selftest;
pub mod serve;
pub mod share;
pub mod shipped;
pub mod toolchains;

use std::ffi::OsString;

use clap::Parser;
use jetcc_common::exit::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "jetcc-worker",
    version,
    about = "Pulls jetcc compile jobs from NATS and runs them in a Landlock sandbox.",
    after_help = format!(
        "Settings come from [dist] and [worker] in ~/.config/jetcc/config.toml (or \
         JETCC_CONFIG), and JETCC_NATS_URL, JETCC_NATS_TOKEN, JETCC_WORKER_SLOTS. Logs: \
         JETCC_LOG=debug.\n\n{}",
        jetcc_common::exit::HELP
    )
)]
struct Cli {
    /// Concurrent jobs (default: [worker] slots, else the number of cores).
    #[arg(long)]
    slots: Option<usize>,
    /// The NATS server (overrides [dist] nats_url).
    #[arg(long)]
    nats_url: Option<String>,
    /// Run jobs WITHOUT the Landlock sandbox where the kernel cannot enforce it. Jobs run
    /// anyone's proc-macros: only for trusted clients.
    #[arg(long)]
    insecure_no_sandbox: bool,
}

/// Runs the worker; returns the exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let cli = Cli::parse_from(args);
    init_logging();
    let mut config = match jetcc_common::config::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("jetcc-worker: {e}");
            return ExitCode::Usage.code();
        }
    };
    if let Some(url) = cli.nats_url {
        let mut dist = config
            .farm
            .take()
            .unwrap_or_else(|| jetcc_common::config::FarmConfig::with_url(String::new()));
        dist.nats_url = url;
        config.farm = Some(dist);
    }
    let opts = serve::Options {
        slots: cli.slots,
        insecure_no_sandbox: cli.insecure_no_sandbox,
    };
    // Before the runtime starts its threads: the zygote is a fork of this one.
    let zygote = match jail::Zygote::start() {
        Ok(z) => z,
        Err(e) => {
            eprintln!("jetcc-worker: {e}");
            return ExitCode::NoSandbox.code();
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match rt.block_on(serve::serve(config, opts, zygote)) {
        Ok(()) => ExitCode::Success.code(),
        Err(e) => {
            eprintln!("jetcc-worker: {e}");
            exit_code(&e).code()
        }
    }
}

/// What a worker that could not serve exits with.
fn exit_code(e: &serve::ServeError) -> ExitCode {
    use serve::ServeError as E;
    match e {
        E::NoFarm => ExitCode::Usage,
        E::NoSandbox(_) | E::NoUnprivilegedUser(_) | E::SelfTest(_) => ExitCode::NoSandbox,
        E::Farm(_) | E::Setup(_) => ExitCode::Failed,
    }
}

/// Logs to stderr: `JETCC_LOG` (a bare level is for jetcc's crates), default `info`; each line
/// names the module that wrote it.
fn init_logging() {
    let value = std::env::var("JETCC_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::new(jetcc_common::logfilter::directives(&value));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr)
        .init();
}
