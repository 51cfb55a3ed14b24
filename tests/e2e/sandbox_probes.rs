//! Sandbox probes: hostile proc-macros that run on a worker while it compiles a library that
//! uses them, and try to get out of the job's jail (read or write the worker's files, reach
//! the network, signal the worker, fork-bomb it, outlive the job, hang).
//!
//! Each test builds a small workspace at test time: a proc-macro crate `evil` (compiled
//! locally, as proc-macros link) and a library `victim` whose `src/lib.rs` calls
//! `evil::probe!("what", "target", …)`. The victim's compile goes to the farm and runs the
//! macro on the worker. The macro acts ONLY inside a worker's jail (which sets
//! `TMPDIR=/.jetcc-tmp`): the client also runs it, in its dep-info pre-pass and in its local
//! fallback, and there it expands to a harmless item. In the jail it expands to
//! `compile_error!("jetcc-probe WHAT: blocked: …")` when every attempt failed, or
//! `compile_error!("jetcc-probe WHAT: SUCCEEDED: …")` when one worked. The client does not
//! show a failed remote compile's diagnostics: it logs `compiling locally: rustc failed on the
//! farm (exit N: <first error>); confirming locally` and compiles locally, where the macro does
//! nothing, so every build succeeds and the verdict is read from the client's log.
//!
//! The first test holds the probes the sandbox blocks. The others each pin down one way out
//! that the worker itself must close (processes escaping the job's process group, outputs
//! read through a job's symlink, a leftover process holding the job's stderr).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

/// The probes' proc-macro crate.
const EVIL: &str = r##"//! Hostile probes for jetcc's sandbox: each acts only inside a worker's jail.
extern crate proc_macro;

use proc_macro::{TokenStream, TokenTree};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// `probe!("what", "target", …)`: does `what` to each target inside a jetcc worker's jail, and
/// says how it went in a compile error; anywhere else, a harmless item.
#[proc_macro]
pub fn probe(input: TokenStream) -> TokenStream {
    if std::env::var_os("TMPDIR").map_or(true, |t| t != "/.jetcc-tmp") {
        return "pub const PROBED: bool = false;".parse().unwrap();
    }
    let args: Vec<String> = input
        .into_iter()
        .filter_map(|t| match t {
            TokenTree::Literal(l) => Some(l.to_string().trim_matches('"').to_owned()),
            _ => None,
        })
        .collect();
    let (what, targets) = (args[0].as_str(), &args[1..]);
    let result = match what {
        "read" => each(targets, |p| std::fs::read(p).map(|b| format!("read {} bytes", b.len()))),
        "write" => each(targets, |p| std::fs::write(p, "pwned").map(|()| "wrote it".into())),
        "connect" => each(targets, connect),
        "kill" => each(targets, signal),
        "fork" => spawn_sleepers(&targets[0], 10_000, false),
        "escape" => spawn_sleepers(&targets[0], 3, true),
        "hang" => {
            std::thread::sleep(Duration::from_secs(60));
            Ok("still running after 60 s".into())
        }
        "exfil" => exfil(&targets[0], &targets[1]),
        "linger" => linger(&targets[0]),
        other => Err(format!("no probe {other}")),
    };
    // These only plant something: the worker's reaction is the verdict.
    let worked = if matches!(what, "escape" | "exfil" | "linger") { "planted" } else { "SUCCEEDED" };
    let message = match result {
        Ok(how) => format!("jetcc-probe {what}: {worked}: {how}"),
        Err(why) => format!("jetcc-probe {what}: blocked: {why}"),
    };
    format!("compile_error!({message:?});").parse().unwrap()
}

/// `Ok` with the first target `f` succeeds on, else `Err` with every target's error.
fn each(targets: &[String], f: impl Fn(&str) -> io::Result<String>) -> Result<String, String> {
    let mut errors = Vec::new();
    for t in targets {
        match f(t) {
            Ok(how) => return Ok(format!("{t}: {how}")),
            Err(e) => errors.push(format!("{t}: {e}")),
        }
    }
    Err(errors.join("; "))
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::Other, e.to_string())
}

/// `tcp:ADDR`, `udp:ADDR`, `unix:PATH` or `abstract:NAME`.
fn connect(target: &str) -> io::Result<String> {
    let (kind, rest) = target.split_once(':').ok_or_else(|| other("no kind"))?;
    match kind {
        "tcp" => {
            let addr = rest.parse().map_err(other)?;
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
            Ok("connected".into())
        }
        "udp" => {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.send_to(b"pwned", rest)?;
            Ok("sent a datagram".into())
        }
        "unix" => {
            std::os::unix::net::UnixStream::connect(rest)?;
            Ok("connected".into())
        }
        "abstract" => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(rest)?;
            std::os::unix::net::UnixStream::connect_addr(&addr)?;
            Ok("connected".into())
        }
        _ => Err(other("unknown kind")),
    }
}

/// `PID:SIGNAL`.
fn signal(target: &str) -> io::Result<String> {
    let (pid, sig) = target.split_once(':').ok_or_else(|| other("not PID:SIGNAL"))?;
    let (pid, sig) = (pid.parse().map_err(other)?, sig.parse().map_err(other)?);
    // SAFETY: kill touches no memory.
    match unsafe { kill(pid, sig) } {
        0 => Ok(format!("signal {sig} delivered")),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Starts up to `max` `sleep SECS`, each in its own process group if `own_group`, until a
/// spawn fails. They are never waited for.
fn spawn_sleepers(secs: &str, max: usize, own_group: bool) -> Result<String, String> {
    for n in 0..max {
        let mut cmd = Command::new("sleep");
        cmd.arg(secs).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if own_group {
            cmd.process_group(0);
        }
        if let Err(e) = cmd.spawn() {
            return Err(format!("spawn #{} failed: {e}", n + 1));
        }
    }
    Ok(format!("{max} processes started"))
}

/// Starts `sleep SECS` with rustc's stdio (so its stderr pipe to the worker), not waited for.
fn linger(secs: &str) -> Result<String, String> {
    match Command::new("sleep").arg(secs).spawn() {
        Ok(_) => Ok(format!("sleep {secs} holds the job's stderr")),
        Err(e) => Err(format!("spawn failed: {e}")),
    }
}

/// Plants `OUT_DIR/leak.txt -> SECRET` and announces it to the worker as an artifact, the way
/// rustc does (`--json=artifacts`), on stderr.
fn exfil(out_dir: &str, secret: &str) -> Result<String, String> {
    let link = format!("{out_dir}/leak.txt");
    std::os::unix::fs::symlink(secret, &link).map_err(|e| format!("symlink {link}: {e}"))?;
    eprintln!("{{\"$message_type\":\"artifact\",\"artifact\":\"{link}\",\"emit\":\"link\"}}");
    Ok(format!("{link} -> {secret}, announced as an artifact"))
}
"##;

/// The probes' tests share the machine's `nobody` (whose process count RLIMIT_NPROC limits) and
/// spawn `sleep`s: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A nats-server, one worker, and the probe workspace built through jetcc with the farm on.
struct Lab {
    // Dropped in this order: the worker, the server, then their dirs.
    worker: Worker,
    nats: Nats,
    root: PathBuf,
    ws: PathBuf,
    cache: PathBuf,
    builds: usize,
    _tmp: tempfile::TempDir,
}

/// What one probe build did.
struct Probe {
    what: String,
    built: Built,
    worker_log: String,
    /// Jobs the worker finished for this build.
    jobs: usize,
    secs: f64,
}

impl Lab {
    /// A lab whose worker kills a job after `timeout_secs`.
    fn new(timeout_secs: u64) -> Lab {
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
        let worker = Worker::start_with(
            &nats.url(),
            &root.join("worker"),
            1,
            &[("JETCC_WORKER_TIMEOUT_SECS", &timeout)],
            |_| {},
        );
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
    fn out_dir(&self) -> PathBuf {
        self.ws.join("target/debug/deps")
    }

    /// Builds the workspace with the victim calling `probe!(what, targets…)`. Each build's
    /// source differs, so each is a miss that goes to the farm.
    fn probe(&mut self, what: &str, targets: &[String]) -> Probe {
        self.builds += 1;
        let mut call = format!("evil::probe!({what:?}");
        for t in targets {
            call += &format!(", {t:?}");
        }
        let src = format!("//! Probe {}: {what}.\n\n{call});\n", self.builds);
        write(&self.ws.join("victim/src/lib.rs"), &src);
        let jobs_before = self.worker.jobs_done();
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
        while self.worker.jobs_done() == jobs_before && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        let worker_log = self.worker.log();
        let jobs = worker_log.matches("job done").count() - jobs_before;
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

impl Probe {
    /// The build's stderr and the client's and the worker's log tails, for a failure message.
    fn context(&self) -> String {
        format!(
            "--- cargo stderr (tail):\n{}\n--- client log (tail):\n{}\n--- worker log (tail):\n{}",
            tail(&self.built.stderr(), 15),
            tail(&client_lines(&self.built.log), 25),
            tail(&self.worker_log, 25)
        )
    }

    /// Checks what every probe must do: the build succeeds (locally if need be), the macro
    /// ran on the worker, and the worker is still up. Failures go to `failures`.
    fn check_common(&self, lab: &mut Lab, failures: &mut Vec<String>) {
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
    fn check_blocked(&self, lab: &mut Lab, failures: &mut Vec<String>) {
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
    fn verdict(&self) -> String {
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

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).expect("mkdir");
    fs::write(path, text).expect("write");
}

/// The client log without async-nats' chatter.
fn client_lines(log: &str) -> String {
    const NOISE: &[&str] = &[
        "JetStream request",
        "received MESSAGE",
        "message for multiplexer",
        "forwarding message",
    ];
    let keep = |l: &&str| !NOISE.iter().any(|n| l.contains(n));
    log.lines().filter(keep).collect::<Vec<_>>().join("\n")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Live processes (not zombies, whose cmdline is empty) whose argv is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
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
fn process_group(pid: u32) -> u32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker's stat");
    // After the command's closing paren: state, ppid, pgrp.
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    fields[2].parse().expect("a process group id")
}

/// Waits up to `secs` for no process to run `argv`; returns those still running.
fn wait_gone(argv: &[&str], secs: u64) -> Vec<u32> {
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
fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// A `sleep` duration unique to this test process, to find its sleepers in /proc.
fn sleep_marker(secs: u32) -> String {
    format!("{secs}.{:06}", std::process::id() % 1_000_000)
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn finish(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} probe check(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n=====\n\n")
    );
}

#[test]
fn hostile_proc_macros_on_a_worker_are_blocked() {
    let _serial = serial();
    let started = Instant::now();
    let mut lab = Lab::new(5);
    let mut failures = Vec::new();
    let root = lab.root.clone();
    let worker_pid = lab.worker.pid();
    let worker_dir = lab.worker.dir.clone();
    let s = |p: &Path| p.to_string_lossy().into_owned();

    // 1. Read files that are no input of the job: a secret beside the workspace, root's
    // files, the worker's own log and environment, and the worker's root through /proc.
    let secret = root.join("secret.txt");
    fs::write(&secret, "jetcc-probe-secret").unwrap();
    let targets = [
        s(&secret),
        "/root/.bashrc".into(),
        "/etc/shadow".into(),
        s(&worker_dir.join("worker.log")),
        format!("/proc/{worker_pid}/environ"),
        format!("/proc/{worker_pid}/root{}", secret.display()),
        "/proc/1/root/etc/hostname".into(),
    ];
    let p = lab.probe("read", &targets);
    p.check_blocked(&mut lab, &mut failures);
    println!("  {}", p.verdict());

    // 2. Write outside the out-dir: beside the workspace, into the victim's sources, the
    // jail's root and system dirs, the worker's dir, and the worker's root through /proc.
    let host_paths = [
        root.join("pwned"),
        lab.ws.join("victim/src/pwned.rs"),
        worker_dir.join("pwned"),
        lab.out_dir().parent().unwrap().join("pwned"),
    ];
    let mut targets: Vec<String> = host_paths.iter().map(|p| s(p)).collect();
    targets.extend([
        "/pwned".into(),
        "/usr/pwned".into(),
        format!(
            "/proc/{worker_pid}/root{}",
            root.join("pwned-via-proc").display()
        ),
    ]);
    let p = lab.probe("write", &targets);
    p.check_blocked(&mut lab, &mut failures);
    println!("  {}", p.verdict());
    for path in host_paths.iter().chain([&root.join("pwned-via-proc")]) {
        if path.exists() {
            failures.push(format!(
                "write: {} exists after the probe\n{}",
                path.display(),
                p.context()
            ));
        }
    }

    // 3. Reach a listener of the test's: TCP and UDP on loopback, a unix socket beside the
    // workspace and an abstract one.
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    tcp.set_nonblocking(true).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_nonblocking(true).unwrap();
    let sock = root.join("probe.sock");
    let unix = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    unix.set_nonblocking(true).unwrap();
    let abstract_name = format!("jetcc-probe-{}", std::process::id());
    let abstract_addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap()
    };
    let abstract_listener = std::os::unix::net::UnixListener::bind_addr(&abstract_addr).unwrap();
    abstract_listener.set_nonblocking(true).unwrap();
    let targets = [
        format!("tcp:{}", tcp.local_addr().unwrap()),
        format!("udp:{}", udp.local_addr().unwrap()),
        format!("unix:{}", sock.display()),
        format!("abstract:{abstract_name}"),
    ];
    let p = lab.probe("connect", &targets);
    p.check_blocked(&mut lab, &mut failures);
    println!("  {}", p.verdict());
    if let Ok((_, from)) = tcp.accept() {
        failures.push(format!(
            "connect: the TCP listener accepted {from}\n{}",
            p.context()
        ));
    }
    let mut buf = [0u8; 64];
    if let Ok((n, from)) = udp.recv_from(&mut buf) {
        failures.push(format!(
            "connect: the UDP socket got {n} bytes from {from}\n{}",
            p.context()
        ));
    }
    if unix.accept().is_ok() || abstract_listener.accept().is_ok() {
        failures.push(format!(
            "connect: a unix listener accepted\n{}",
            p.context()
        ));
    }

    // 4. Signal the worker (SIGKILL), and see whom else it could signal (signal 0 only
    // checks): the worker's process group (this test's) and this test. Not `kill(-1, 0)`:
    // it returns 0 when every process refused with EPERM, so it cannot tell. Not pid 1:
    // the job runs in its own PID namespace, where pid 1 is its own rustc.
    let targets = [
        format!("{worker_pid}:9"),
        format!("-{}:0", process_group(worker_pid)),
        format!("{}:0", std::process::id()),
    ];
    let p = lab.probe("kill", &targets);
    p.check_blocked(&mut lab, &mut failures);
    println!("  {}", p.verdict());

    // 5. Fork-bomb: start `sleep`s until a spawn fails; none may outlive the job.
    let marker = sleep_marker(30);
    let p = lab.probe("fork", std::slice::from_ref(&marker));
    p.check_blocked(&mut lab, &mut failures);
    println!("  {}", p.verdict());
    if !p.built.log.contains("Resource temporarily unavailable") {
        failures.push(format!(
            "fork: the spawns did not stop at the process limit (EAGAIN)\n{}",
            p.context()
        ));
    }
    let left = wait_gone(&["sleep", &marker], 10);
    if !left.is_empty() {
        kill_all(&left);
        failures.push(format!(
            "fork: {} `sleep {marker}` outlived the job\n{}",
            left.len(),
            p.context()
        ));
    }

    // 6. Hang past the worker's timeout: killed, refused, compiled locally.
    let p = lab.probe("hang", &[]);
    p.check_common(&mut lab, &mut failures);
    println!("  hang: {:.1} s", p.secs);
    if !p.worker_log.contains("ran past") {
        failures.push(format!(
            "hang: the worker did not report the job ran past its limit\n{}",
            p.context()
        ));
    }
    if !p.built.log.contains("ran past") {
        failures.push(format!(
            "hang: the client was not told the job ran past its limit\n{}",
            p.context()
        ));
    }
    if p.built.log.contains("jetcc-probe hang: SUCCEEDED") {
        failures.push(format!(
            "hang: the macro outlived its sleep\n{}",
            p.context()
        ));
    }
    if p.secs > 30.0 {
        failures.push(format!(
            "hang: the build took {:.1} s with a 5 s job limit\n{}",
            p.secs,
            p.context()
        ));
    }

    println!("all probes: {:.1} s", started.elapsed().as_secs_f64());
    finish(failures);
}

/// A job must not leave processes behind, even in a process group of their own, which the
/// worker's `kill_group` (of the job's group) does not reach.
#[test]
fn a_job_leaves_no_process_behind_in_a_group_of_its_own() {
    let _serial = serial();
    let mut lab = Lab::new(30);
    let mut failures = Vec::new();
    let marker = sleep_marker(31);
    let p = lab.probe("escape", std::slice::from_ref(&marker));
    p.check_common(&mut lab, &mut failures);
    println!("  {}", p.verdict());
    if !p.built.log.contains("jetcc-probe escape: planted") {
        failures.push(format!(
            "escape: the probe did not run as planned\n{}",
            p.context()
        ));
    }
    let left = wait_gone(&["sleep", &marker], 5);
    if !left.is_empty() {
        kill_all(&left);
        failures.push(format!(
            "escape: {} `sleep {marker}` (pids {left:?}, in their own process groups) outlived the job\n{}",
            left.len(),
            p.context()
        ));
    }
    finish(failures);
}

/// The worker reads the job's outputs outside the jail: a symlink a job plants in its out-dir
/// and announces as an artifact must not make the worker read (and ship back) a file of the
/// worker's host.
#[test]
fn a_job_cannot_make_the_worker_ship_a_host_file() {
    let _serial = serial();
    let mut lab = Lab::new(30);
    let mut failures = Vec::new();
    let secret_text = format!("jetcc-worker-host-secret-{}", std::process::id());
    let secret = lab.root.join("worker-secret.txt");
    fs::write(&secret, &secret_text).unwrap();
    let out_dir = lab.out_dir();
    let targets = [
        out_dir.to_string_lossy().into_owned(),
        secret.to_string_lossy().into_owned(),
    ];
    let p = lab.probe("exfil", &targets);
    p.check_common(&mut lab, &mut failures);
    println!("  {}", p.verdict());
    if !p.built.log.contains("jetcc-probe exfil:") {
        failures.push(format!(
            "exfil: the probe did not run on the worker\n{}",
            p.context()
        ));
    }
    let target = lab.ws.join("target");
    if let Some(found) = find_bytes(&target, secret_text.as_bytes()) {
        failures.push(format!(
            "exfil: the worker read {} through the job's symlink and shipped it to the client: it is in {}\n{}",
            secret.display(),
            found.display(),
            p.context()
        ));
    }
    if let Some(found) = find_bytes(&lab.cache, secret_text.as_bytes()) {
        failures.push(format!(
            "exfil: the secret is in the client's cache: {}\n{}",
            found.display(),
            p.context()
        ));
    }
    finish(failures);
}

/// A process the job leaves behind holding rustc's stderr must not hold the job: the worker
/// answers when rustc exits (and kills the leftover), not when the pipe closes or at its
/// timeout.
#[test]
fn a_leftover_process_holding_stderr_does_not_hold_the_job() {
    let _serial = serial();
    let mut lab = Lab::new(10);
    let mut failures = Vec::new();
    let marker = sleep_marker(60);
    let p = lab.probe("linger", std::slice::from_ref(&marker));
    p.check_common(&mut lab, &mut failures);
    println!("  {}", p.verdict());
    if !p.built.log.contains("jetcc-probe linger: planted") {
        failures.push(format!(
            "linger: rustc's answer never reached the client ({:.1} s: the worker waited for the \
             leftover `sleep` to close stderr, up to its 10 s limit)\n{}",
            p.secs,
            p.context()
        ));
    }
    let left = wait_gone(&["sleep", &marker], 5);
    if !left.is_empty() {
        kill_all(&left);
        failures.push(format!(
            "linger: `sleep {marker}` outlived the job\n{}",
            p.context()
        ));
    }
    finish(failures);
}
