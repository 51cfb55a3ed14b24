//! `jetcc --show-stats [--json | --stats-format text|json]`, `jetcc --zero-stats`,
//! `jetcc --explain [N]`, sccache's `--start-server`/`--stop-server` (no server: said so),
//! `jetcc --dist-status`, `jetcc --check`, `jetcc --wait-shares`, `jetcc --verify CMD…`,
//! `jetcc --version`.

use std::ffi::OsString;

use clap::Parser;
use jetcc_common::cache::DiskCache;
use jetcc_common::config::Config;
use jetcc_common::exit::{self, ExitCode};
use jetcc_common::farm::{Farm, Lifetime};
use jetcc_common::stats::{human_bytes, ActionStats, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "jetcc",
    version,
    about = "A rustc build cache. Use as RUSTC_WRAPPER=jetcc cargo build."
)]
struct Cli {
    /// Print cache statistics.
    #[arg(long, short = 's')]
    show_stats: bool,
    /// With --show-stats: print them as JSON (the same as `--stats-format json`).
    #[arg(long, requires = "show_stats")]
    json: bool,
    /// With --show-stats: `text` or `json` (sccache's spelling).
    #[arg(long, value_enum, value_name = "FORMAT", requires = "show_stats")]
    stats_format: Option<StatsFormat>,
    /// Accepted for scripts written for sccache: jetcc runs no server, so there is nothing
    /// to start (said on stderr). Exits 0.
    #[arg(long)]
    start_server: bool,
    /// Accepted for scripts written for sccache: jetcc runs no server, so there is nothing
    /// to stop (said on stderr); it prints the statistics, as sccache does when it stops its
    /// server. Exits 0.
    #[arg(long)]
    stop_server: bool,
    /// Reset cache statistics to zero.
    #[arg(long, short = 'z')]
    zero_stats: bool,
    /// Say why the last misses missed: which file, env var, argument, extern or tool changed
    /// since the unit's last compile.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20")]
    explain: Option<usize>,
    /// Print the farm's workers, cores and queue as one line of JSON (sccache's
    /// `--dist-status` shape).
    #[arg(long)]
    dist_status: bool,
    /// Try a write, a read and a delete on every configured cache tier, and say what is
    /// wrong. Exits 1 if any fails.
    #[arg(long)]
    check: bool,
    /// Write every result still waiting to be shared (the uploader's work, see
    /// `tiers::pending`) to the shared tiers, waiting for a running uploader first: the last
    /// step of a CI job. Exits 1 if some are left unwritten (a tier down).
    #[arg(long)]
    wait_shares: bool,
    /// Run CMD (e.g. `cargo build`) with every cache hit compiled again and compared byte for
    /// byte with the cached outputs (JETCC_VERIFY=1; `[cache] verify_rate` samples instead).
    /// A mismatch is a warning, counted in --show-stats; the build uses the fresh outputs.
    #[arg(
        long,
        value_name = "CMD",
        num_args = 1..,
        allow_hyphen_values = true,
        value_parser = clap::value_parser!(OsString)
    )]
    verify: Option<Vec<OsString>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StatsFormat {
    Text,
    Json,
}

/// `--help`'s last part: the environment, and what the exit code says.
const AFTER_HELP: &str = "Environment: JETCC_DIR (cache dir), JETCC_CACHE_SIZE, JETCC_BASE_DIRS, \
JETCC_INCREMENTAL, JETCC_NATS_URL (the farm), JETCC_CONFIG (config file), JETCC_LOG=debug, \
JETCC_LOG_FILE, JETCC_DISABLE=1, JETCC_VERIFY=1 (compile every hit again and compare), \
JETCC_VERIFY_RATE.\n\nAs RUSTC_WRAPPER, jetcc exits with rustc's own code.";

fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().after_help(format!("{AFTER_HELP} {}", exit::HELP))
}

pub fn run(args: &[OsString]) -> i32 {
    crate::logging::init();
    let parsed = command()
        .try_get_matches_from(args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.use_stderr() {
                true => ExitCode::Usage.code(),
                false => ExitCode::Success.code(),
            };
        }
    };
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "jetcc: {}",
                jetcc_common::redact::credentials(&e.to_string())
            );
            return ExitCode::Usage.code();
        }
    };
    if cli.dist_status {
        return dist_status(&config);
    }
    if let Some(cmd) = &cli.verify {
        return run_verifying(cmd);
    }
    if cli.check {
        return crate::check::run(&config);
    }
    if cli.wait_shares {
        return wait_shares(&config);
    }
    if cli.zero_stats {
        if let Err(e) = Stats::zero(&config.cache_dir) {
            eprintln!(
                "jetcc: cannot reset stats in {}: {e}",
                config.cache_dir.display()
            );
            return ExitCode::Failed.code();
        }
        println!("Statistics zeroed.");
    }
    // On stderr: a script reading stdout (sccache's stats after a stop) gets only the stats.
    if cli.start_server {
        eprintln!(
            "jetcc: --start-server does nothing: jetcc runs no server (each rustc invocation is \
             its own process), so there is nothing to start."
        );
    }
    if cli.show_stats || cli.stop_server {
        if cli.stop_server {
            eprintln!("jetcc: --stop-server does nothing: jetcc runs no server, so there is nothing to stop. Its statistics follow.");
        }
        let stats = Stats::load(&config.cache_dir);
        let size = DiskCache::open(&config.cache_dir, config.cache_size)
            .map(|c| c.size())
            .unwrap_or(0);
        if cli.json || cli.stats_format == Some(StatsFormat::Json) {
            let mut v = serde_json::to_value(&stats).expect("stats serialize");
            v["cache_dir"] = config.cache_dir.to_string_lossy().into();
            v["cache_size"] = size.into();
            v["max_cache_size"] = config.cache_size.into();
            v["hit_rate"] = stats.hit_rate().into();
            v["pending_shares"] = crate::tiers::pending::filed(&config.cache_dir).len().into();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        } else {
            print_table(&stats, &config, size);
        }
    }
    if let Some(n) = cli.explain {
        let log = DiskCache::open(&config.cache_dir, config.cache_size)
            .map(|c| c.miss_log())
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        if lines.is_empty() {
            println!("No misses recorded in {}.", config.cache_dir.display());
        }
        for line in &lines[lines.len().saturating_sub(n)..] {
            println!("{line}");
        }
    }
    let asked = cli.show_stats
        || cli.zero_stats
        || cli.explain.is_some()
        || cli.start_server
        || cli.stop_server;
    if !asked {
        let _ = command().print_help();
        return ExitCode::Usage.code();
    }
    ExitCode::Success.code()
}

/// `--wait-shares`: see [`Cli::wait_shares`].
fn wait_shares(config: &Config) -> i32 {
    let drained = crate::tiers::pending::drain(config, true);
    eprintln!(
        "jetcc: {} shared, {} dropped, {} left waiting",
        drained.written, drained.dropped, drained.left
    );
    match drained.left {
        0 => ExitCode::Success.code(),
        _ => ExitCode::Failed.code(),
    }
}

fn print_table(s: &Stats, config: &Config, size: u64) {
    let row = |name: &str, value: String| println!("{name:<36}{value}");
    row("Cache location", config.cache_dir.display().to_string());
    row(
        "Cache size",
        format!("{} / {}", human_bytes(size), human_bytes(config.cache_size)),
    );
    row("Requests", s.requests.to_string());
    row("Cache hits", s.hits.to_string());
    row("Cache misses", s.misses.to_string());
    row("Hit rate", format!("{:.2} %", s.hit_rate()));
    let pending = crate::tiers::pending::filed(&config.cache_dir).len();
    if pending > 0 {
        row("Shares waiting for the uploader", pending.to_string());
    }
    row(
        "Pass-through (not cached)",
        s.pass_through.values().sum::<u64>().to_string(),
    );
    for (k, v) in &s.pass_through {
        row(&format!("  {k}"), v.to_string());
    }
    row(
        "Errors (fell back to plain rustc)",
        s.errors.values().sum::<u64>().to_string(),
    );
    for (k, v) in &s.errors {
        row(&format!("  {k}"), v.to_string());
    }
    row(
        "Misses not stored",
        s.not_stored.values().sum::<u64>().to_string(),
    );
    for (k, v) in &s.not_stored {
        row(&format!("  {k}"), v.to_string());
    }
    if config.farm.is_some() || s.remote_compiles > 0 || !s.remote_skipped.is_empty() {
        row("Compiled on the farm", s.remote_compiles.to_string());
        row(
            "Not sent to the farm",
            s.remote_skipped.values().sum::<u64>().to_string(),
        );
        for (k, v) in &s.remote_skipped {
            row(&format!("  {k}"), v.to_string());
        }
        let unlisted = s.remote_listings_reused + s.remote_listings_guessed;
        if unlisted > 0 {
            row(
                "Farm jobs listed without a pre-pass",
                format!("{} of {}", unlisted, unlisted + s.remote_prepasses),
            );
            row(
                "  from the unit's last job",
                s.remote_listings_reused.to_string(),
            );
            row(
                "  guessed (first job)",
                s.remote_listings_guessed.to_string(),
            );
        }
        if s.remote_events_dropped > 0 {
            row(
                "Farm events dropped (forged or stray)",
                s.remote_events_dropped.to_string(),
            );
        }
    }
    if !s.verified.is_empty() {
        row(
            "Hits verified by compiling",
            s.verified.values().sum::<u64>().to_string(),
        );
        for (k, v) in &s.verified {
            row(&format!("  {k}"), v.to_string());
        }
    }
    action_rows("Build-script runs", &s.build_script_runs);
    action_rows("C/C++ compiles", &s.c_compiles);
    print_tiers(s);
    row("Bytes restored from cache", human_bytes(s.bytes_restored));
    row("Bytes stored in cache", human_bytes(s.bytes_stored));
    row(
        "Compile time saved",
        format!("{:.1} s", s.time_saved_ms as f64 / 1000.0),
    );
}

/// The rows of one kind of action other than rustc (shown once it has been seen): hits,
/// misses, stored, and each reason it was not cached or not stored.
fn action_rows(title: &str, a: &ActionStats) {
    if *a == ActionStats::default() {
        return;
    }
    let row = |name: &str, value: String| println!("{name:<36}{value}");
    let looked_up = a.hits + a.misses;
    let rate = match looked_up {
        0 => 0.0,
        n => 100.0 * a.hits as f64 / n as f64,
    };
    row(
        title,
        format!("{} hits, {} misses ({rate:.2} % hits)", a.hits, a.misses),
    );
    row("  stored", a.stored.to_string());
    if a.remote > 0 || !a.remote_skipped.is_empty() {
        row("  compiled on the farm", a.remote.to_string());
    }
    for (k, v) in &a.remote_skipped {
        row(&format!("  not sent to the farm: {k}"), v.to_string());
    }
    for (k, v) in &a.not_stored {
        row(&format!("  not stored: {k}"), v.to_string());
    }
    for (k, v) in &a.pass_through {
        row(&format!("  not cached: {k}"), v.to_string());
    }
    row(
        "  time saved",
        format!("{:.1} s", a.time_saved_ms as f64 / 1000.0),
    );
}

/// One line per tier, local first: hits, misses, errors, writes, bytes, time; then each
/// tier's last error, which says what to fix.
fn print_tiers(s: &Stats) {
    if s.tiers.is_empty() {
        return;
    }
    println!(
        "{:<12}{:>8}{:>8}{:>8}{:>8}{:>12}{:>12}{:>10}",
        "Tier", "hits", "misses", "errors", "writes", "read", "written", "time"
    );
    let order = |n: &str| match n {
        "local" => 0,
        "jetstream" => 1,
        _ => 2,
    };
    let mut tiers: Vec<_> = s.tiers.iter().collect();
    tiers.sort_by_key(|(n, _)| order(n));
    for (name, t) in &tiers {
        println!(
            "  {:<10}{:>8}{:>8}{:>8}{:>8}{:>12}{:>12}{:>9.1}s",
            name,
            t.hits,
            t.misses,
            t.errors.values().sum::<u64>(),
            t.writes,
            human_bytes(t.bytes_read),
            human_bytes(t.bytes_written),
            t.time_ms as f64 / 1000.0
        );
        for (k, v) in &t.errors {
            println!("    {k:<34}{v}");
        }
    }
    for (name, t) in &tiers {
        if let (Some(e), false) = (&t.last_error, t.errors.is_empty()) {
            println!("Last {name} error: {e}");
        }
    }
}

/// `--verify CMD…`: replaces this process with CMD, every hit of its jetcc runs verified.
fn run_verifying(cmd: &[OsString]) -> i32 {
    let err = crate::exec(
        std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("JETCC_VERIFY", "1"),
    );
    eprintln!("jetcc: cannot run {}: {err}", cmd[0].to_string_lossy());
    ExitCode::Failed.code()
}

/// `--dist-status`: `{"SchedulerStatus":[URL,{"num_servers","num_cpus","in_progress",…}]}`,
/// the shape sccache's users script against, plus per-worker rows and the queue depth.
fn dist_status(config: &Config) -> i32 {
    let Some(dist) = &config.farm else {
        eprintln!("jetcc: no farm configured: set [dist] nats_url, or JETCC_NATS_URL");
        return ExitCode::Usage.code();
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let status = rt.block_on(async {
        let farm = Farm::connect(dist, "jetcc --dist-status", Lifetime::Wrapper).await?;
        farm.read_status().await
    });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jetcc: cannot read the farm's status: {e}");
            return ExitCode::Failed.code();
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let workers: Vec<serde_json::Value> = status
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "id": w.id,
                "host": w.host,
                "cores": w.cores,
                "slots": w.slots,
                "free_slots": w.free_slots,
                "toolchains": w.toolchain_names,
                "shipped_toolchains": w.shipped_names,
                "ships_for": w.ships_for,
                "jobs_done": w.jobs_done,
                "jobs_failed": w.jobs_failed,
                "version": w.version,
                "last_seen_ms_ago": now_ms.saturating_sub(w.unix_ms),
            })
        })
        .collect();
    let out = serde_json::json!({
        "SchedulerStatus": [
            dist.display_url(),
            {
                "num_servers": status.workers.len(),
                "num_cpus": status.workers.iter().map(|w| w.slots as u64).sum::<u64>(),
                "in_progress": status.in_progress,
                "queued": status.queued,
                "workers": workers,
            }
        ]
    });
    // One line, as sccache prints it: scripts grep or `jq` it line by line.
    println!("{}", serde_json::to_string(&out).expect("json"));
    ExitCode::Success.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_takes_the_whole_command_flags_included() {
        let cli = Cli::try_parse_from(["jetcc", "--verify", "cargo", "build", "--release", "-j4"])
            .unwrap();
        let cmd: Vec<String> = cli
            .verify
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(cmd, ["cargo", "build", "--release", "-j4"]);
    }

    #[test]
    fn usage_errors_exit_2() {
        assert_eq!(run(&["jetcc".into(), "--no-such-flag".into()]), 2);
    }
}
