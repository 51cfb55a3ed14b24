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
use std::path::Path;
use std::time::Instant;

use jetcc_e2e::*;
/// The probes' proc-macro crate (a real source file, so it reads as one).
const EVIL: &str = include_str!("../fixture-probes/evil.rs");

pub(crate) mod lab;
use lab::*;

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
