//! The probes' harness: a nats-server and a worker, the probe workspace built through jetcc,
//! and what each probe build did (the client's verdict, the worker's log, leftover processes).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use super::EVIL;

/// The probes' tests share the machine's `nobody` (whose process count RLIMIT_NPROC limits) and
/// spawn `sleep`s: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A nats-server, one worker, and the probe workspace built through jetcc with the farm on.
pub(crate) struct Lab {
    // Dropped in this order: the worker, the server, then their dirs.
    pub(crate) worker: Worker,
    pub(crate) nats: Nats,
    pub(crate) root: PathBuf,
    pub(crate) ws: PathBuf,
    pub(crate) cache: PathBuf,
    pub(crate) builds: usize,
    pub(crate) _tmp: tempfile::TempDir,
}

/// What one probe build did.
pub(crate) struct Probe {
    pub(crate) what: String,
    pub(crate) built: Built,
    pub(crate) worker_log: String,
    /// The victim's jobs the worker finished for this build (the proc macro itself is
    /// compiled on the worker too, in the lab's first build).
    pub(crate) jobs: usize,
    pub(crate) secs: f64,
}

impl Lab {
    /// A lab whose worker kills a job after `timeout_secs`.
    pub(crate) fn new(timeout_secs: u64) -> Lab {
        Lab::with_worker_env(timeout_secs, &[])
    }

    /// As [`Lab::new`], with more env for the worker (its `[worker]` limits, say).
    pub(crate) fn with_worker_env(timeout_secs: u64, env: &[(&str, &str)]) -> Lab {
        let tmp = tempfile::Builder::new()
            .prefix("jetcc-e2e-probes-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_path_buf();
        let ws = root.join("ws");
        write(
            &ws.join("Cargo.toml"),
            "[workspace]\nmembers = [\"evil\", \"victim\"]\nresolver = \"2\"\n",
        );
        write(
            &ws.join("evil/Cargo.toml"),
            "[package]\nname = \"evil\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\nproc-macro = true\n",
        );
        write(&ws.join("evil/src/lib.rs"), EVIL);
        write(
            &ws.join("victim/Cargo.toml"),
            "[package]\nname = \"victim\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nevil = { path = \"../evil\" }\n",
        );
        let nats = Nats::start(&root.join("nats"));
        let timeout = timeout_secs.to_string();
        let mut worker_env = vec![("JETCC_WORKER_TIMEOUT_SECS", timeout.as_str())];
        worker_env.extend_from_slice(env);
        let worker = Worker::start_with(&nats.url(), &root.join("worker"), 1, &worker_env, |_| {});
        Lab {
            cache: root.join("cache"),
            _tmp: tmp,
            root,
            ws,
            nats,
            worker,
            builds: 0,
        }
    }

    /// The victim's out-dir (where rustc writes its rlib).
    pub(crate) fn out_dir(&self) -> PathBuf {
        self.ws.join("target/debug/deps")
    }

    /// Builds the workspace with the victim calling `probe!(what, targets…)`. Each build's
    /// source differs, so each is a miss that goes to the farm.
    pub(crate) fn probe(&mut self, what: &str, targets: &[String]) -> Probe {
        self.builds += 1;
        let mut call = format!("evil::probe!({what:?}");
        for t in targets {
            call += &format!(", {t:?}");
        }
        let src = format!("//! Probe {}: {what}.\n\n{call});\n", self.builds);
        write(&self.ws.join("victim/src/lib.rs"), &src);
        let jobs_before = victim_jobs(&self.worker.log());
        let build = Build::jetcc(&self.cache)
            .env("JETCC_NATS_URL", &self.nats.url())
            .env("JETCC_DIST_START_TIMEOUT_MS", "5000")
            // No local slots: every unit that can go to the farm goes.
            .env("JETCC_DIST_LOCAL_SLOTS", "0");
        let start = Instant::now();
        let built = build_in(&self.ws, &build);
        let secs = start.elapsed().as_secs_f64();
        // The worker logs "job done" just after it replies: give it a moment.
        let until = Instant::now() + Duration::from_secs(5);
        while victim_jobs(&self.worker.log()) == jobs_before && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let worker_log = self.worker.log();
        let jobs = victim_jobs(&worker_log) - jobs_before;
        println!("probe {what}: {secs:.1} s, {jobs} job(s) on the worker");
        Probe {
            what: what.to_owned(),
            built,
            worker_log,
            jobs,
            secs,
        }
    }
}

/// The victim's jobs a worker log says are done.
fn victim_jobs(worker_log: &str) -> usize {
    worker_log
        .lines()
        .filter(|l| l.contains("job done") && l.contains("crate_name=\"victim\""))
        .count()
}

impl Probe {
    /// The build's stderr and the client's and the worker's log tails, for a failure message.
    pub(crate) fn context(&self) -> String {
        format!(
            "--- cargo stderr (tail):\n{}\n--- client log (tail):\n{}\n--- worker log (tail):\n{}",
            tail(&self.built.stderr(), 15),
            tail(&client_lines(&self.built.log), 25),
            tail(&self.worker_log, 25)
        )
    }

    /// Checks what every probe must do: the build succeeds (locally if need be), the macro
    /// ran on the worker, and the worker is still up. Failures go to `failures`.
    pub(crate) fn check_common(&self, lab: &mut Lab, failures: &mut Vec<String>) {
        let what = &self.what;
        if !self.built.ok() {
            failures.push(format!("{what}: the build failed\n{}", self.context()));
        }
        if self.jobs != 1 {
            let jobs = self.jobs;
            failures.push(format!(
                "{what}: {jobs} jobs ran on the worker, want 1\n{}",
                self.context()
            ));
        }
        if !lab.worker.is_running() {
            failures.push(format!("{what}: the worker is gone\n{}", self.context()));
        }
    }

    /// Checks that the probe ran on the worker and every attempt failed.
    pub(crate) fn check_blocked(&self, lab: &mut Lab, failures: &mut Vec<String>) {
        self.check_common(lab, failures);
        let what = &self.what;
        let log = &self.built.log;
        if log.contains(&format!("jetcc-probe {what}: SUCCEEDED")) {
            failures.push(format!(
                "{what}: NOT BLOCKED: the hostile action worked on the worker\n{}",
                self.context()
            ));
        } else if !log.contains(&format!("jetcc-probe {what}: blocked")) {
            failures.push(format!(
                "{what}: the client log does not say the probe was blocked\n{}",
                self.context()
            ));
        }
    }

    /// The probe's own line from the client log (its verdict and the errors it met).
    pub(crate) fn verdict(&self) -> String {
        let what = &self.what;
        let needle = format!("jetcc-probe {what}:");
        self.built
            .log
            .lines()
            .find_map(|l| {
                let line = &l[l.find(&needle)?..];
                Some(line.split("); confirming locally").next()?.to_owned())
            })
            .unwrap_or_else(|| format!("(no `{needle}` in the client log)"))
    }
}

pub(crate) fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// The client log without async-nats' chatter.
pub(crate) fn client_lines(log: &str) -> String {
    const NOISE: &[&str] = &[
        "JetStream request",
        "received MESSAGE",
        "message for multiplexer",
        "forwarding message",
    ];
    let keep = |l: &&str| !NOISE.iter().any(|n| l.contains(n));
    log.lines().filter(keep).collect::<Vec<_>>().join("\n")
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Live processes (not zombies, whose cmdline is empty) whose argv is exactly `argv`.
pub(crate) fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(e.path().join("cmdline")).ok()?;
            (cmdline == want).then_some(pid)
        })
        .collect()
}

/// The process group of `pid`, from /proc.
pub(crate) fn process_group(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker's stat");
    // After the command's closing paren: state, ppid, pgrp.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    fields[2].parse().expect("a process group id")
}

/// Waits up to `secs` for no process to run `argv`; returns those still running.
pub(crate) fn wait_gone(argv: &[&str], secs: u64) -> Vec<u32> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = processes(argv);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGKILLs processes this test caused to be started (by pid).
pub(crate) fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// A `sleep` duration unique to this test process, to find its sleepers in /proc.
pub(crate) fn sleep_marker(secs: u32) -> String {
    format!("{secs}.{:06}", std::process::id() % 1_000_000)
}

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn finish(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} probe check(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n=====\n\n")
    );
}
