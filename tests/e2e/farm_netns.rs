//! "No route to workers": a worker in its own network namespace reaches the NATS server over a
//! veth pair, but nothing in that namespace listens, so no client could ever connect to it. The
//! farm still builds the fixture through it: jobs and results travel only through JetStream.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jetcc_e2e::servers::{worker_bin, Nats, Worker};
use jetcc_e2e::*;

use crate::farm::REMOTE_UNITS;

/// The `ip` tool (iproute2): /usr/sbin/ip, /sbin/ip, or from PATH.
fn ip_bin() -> Option<PathBuf> {
    let fixed = ["/usr/sbin/ip", "/sbin/ip"].map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    fixed
        .into_iter()
        .chain(std::env::split_paths(&path).map(|d| d.join("ip")))
        .find(|p| p.is_file())
}

/// Runs `ip ARGS`; panics with its stderr if it fails.
fn ip(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "`ip {}` failed (this test needs root / CAP_NET_ADMIN): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace joined to the root namespace by a veth pair: `host` on the root side,
/// `inner` inside. Removed (link and namespace) when dropped, also when the test fails.
struct NetNs {
    ip: PathBuf,
    name: String,
    host_if: String,
    host: Ipv4Addr,
    inner: Ipv4Addr,
}

impl NetNs {
    fn create(ip_path: PathBuf) -> NetNs {
        let pid = std::process::id();
        // A /30 no host interface uses yet, starting at a pid-derived slot.
        let used = ip(&ip_path, &["-4", "-o", "addr", "show"]);
        let third = (0..254u32)
            .map(|i| ((pid + i) % 254 + 1) as u8)
            .find(|x| !used.contains(&format!("10.77.{x}.")))
            .expect("a free 10.77.x.0/30");
        let ns = NetNs {
            ip: ip_path,
            name: format!("jetcc-e2e-{pid}"),
            host_if: format!("jte{pid}h"),
            host: Ipv4Addr::new(10, 77, third, 1),
            inner: Ipv4Addr::new(10, 77, third, 2),
        };
        let inner_if = format!("jte{pid}n");
        let (host_cidr, inner_cidr) = (format!("{}/30", ns.host), format!("{}/30", ns.inner));
        let run = |args: &[&str]| ip(&ns.ip, args);
        run(&["netns", "add", &ns.name]);
        run(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_if,
        ]);
        run(&["link", "set", &inner_if, "netns", &ns.name]);
        run(&["addr", "add", &host_cidr, "dev", &ns.host_if]);
        run(&["link", "set", &ns.host_if, "up"]);
        run(&["-n", &ns.name, "addr", "add", &inner_cidr, "dev", &inner_if]);
        run(&["-n", &ns.name, "link", "set", &inner_if, "up"]);
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Wraps a command to run inside the namespace (`ip netns exec` execs the program, so the
    /// child's pid is the program's).
    fn exec(&self, cmd: &mut Command) {
        let program = cmd.get_program().to_owned();
        *cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", &self.name]).arg(program);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end removes the pair, even while a process still holds the namespace.
        let _ = Command::new(&self.ip)
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// One row of `/proc/<pid>/net/{tcp,tcp6,udp,udp6}`.
#[derive(Debug)]
struct Sock {
    table: &'static str,
    local: String,
    remote: String,
    state: String,
    inode: u64,
}

/// Every TCP and UDP socket of the network namespace `pid` lives in.
fn inet_sockets(pid: u32) -> Vec<Sock> {
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/net/{table}: {e}"));
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            out.push(Sock {
                table,
                local: f[1].to_owned(),
                remote: f[2].to_owned(),
                state: f[3].to_owned(),
                inode: f[9].parse().expect("inode"),
            });
        }
    }
    out
}

/// Unix sockets in `pid`'s network namespace that accept connections (`__SO_ACCEPTCON`).
fn listening_unix_sockets(pid: u32) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).expect("net/unix");
    text.lines()
        .skip(1)
        .filter(|l| {
            let flags = l.split_whitespace().nth(3).unwrap_or("0");
            u32::from_str_radix(flags, 16).unwrap_or(0) & 0x0001_0000 != 0
        })
        .map(str::to_owned)
        .collect()
}

/// The socket inodes among `pid`'s open file descriptors.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `addr:port` as `/proc/net/tcp` prints an IPv4 endpoint.
fn proc_v4(addr: Ipv4Addr, port: u16) -> String {
    format!("{:08X}:{port:04X}", u32::from_ne_bytes(addr.octets()))
}

/// The worker (pid `pid`, in `ns`) listens on nothing: no TCP socket in LISTEN and no bound
/// UDP socket anywhere in its namespace, no listening unix socket; its only TCP sockets are
/// established connections to NATS at `nats`.
fn assert_listens_on_nothing(pid: u32, ns: &NetNs, nats: &str, when: &str) {
    let socks = inet_sockets(pid);
    let listening: Vec<&Sock> = socks
        .iter()
        .filter(|s| (s.table.starts_with("tcp") && s.state == "0A") || s.table.starts_with("udp"))
        .collect();
    assert!(
        listening.is_empty(),
        "{when}: listening/bound sockets in the worker's namespace: {listening:?}"
    );
    let unix = listening_unix_sockets(pid);
    assert!(
        unix.is_empty(),
        "{when}: listening unix sockets in the worker's namespace: {unix:#?}"
    );
    let mine = socket_inodes(pid);
    let worker_tcp: Vec<&Sock> = socks.iter().filter(|s| mine.contains(&s.inode)).collect();
    assert!(
        !worker_tcp.is_empty(),
        "{when}: the worker holds no TCP socket (not connected to NATS?): {socks:?}"
    );
    for s in &worker_tcp {
        assert!(
            s.table == "tcp"
                && s.state == "01"
                && s.remote == nats
                && s.local.split(':').next() == Some(&proc_v4(ns.inner, 0)[..8]),
            "{when}: a worker socket that is not an outgoing connection to NATS ({nats}) \
             from {}: {s:?}",
            ns.inner
        );
    }
}

#[test]
fn a_worker_nothing_can_connect_to_builds_the_fixture_through_nats_only() {
    let Some(ip_path) = ip_bin() else {
        skip_or_fail(
            "farm_netns",
            "`ip` (iproute2) not found in /usr/sbin, /sbin or PATH",
        );
        return;
    };
    let started = Instant::now();
    // Declared first, so dropped last: after the worker is gone.
    let ns = NetNs::create(ip_path);

    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    // `-a 0.0.0.0` overrides the harness's `-a 127.0.0.1` (the last one wins), so the server is
    // on the veth's host end too; the harness still waits for it on loopback.
    let nats = Nats::start_with(&root.join("nats"), &["-js", "-a", "0.0.0.0"]);
    let url = format!("nats://{}:{}", ns.host, nats.port);

    // The namespace's only route is the veth's /30: the worker can reach the host end (NATS)
    // and nothing else.
    let routes = ip(&ns.ip, &["-n", &ns.name, "-4", "route", "show"]);
    assert_eq!(routes.lines().count(), 1, "routes in {}: {routes}", ns.name);
    assert!(!routes.contains("default"), "{routes}");

    let w = Worker::start_with(&url, &root.join("w"), 2, &[], |cmd| ns.exec(cmd));
    let pid = w.pid();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        worker_bin().file_name().unwrap().to_string_lossy(),
        "`ip netns exec` execs the worker"
    );
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .ino(),
        std::fs::metadata(format!("/run/netns/{}", ns.name))
            .unwrap()
            .ino(),
        "the worker runs in {}",
        ns.name
    );
    assert_ne!(
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .ino(),
        std::fs::metadata("/proc/self/ns/net").unwrap().ino(),
        "the worker is not in the client's namespace"
    );
    let nats_in_proc = proc_v4(ns.host, nats.port);
    assert_listens_on_nothing(pid, &ns, &nats_in_proc, "serving");

    // From the client's side the worker's address is routed (the kernel there answers) but
    // every connect is refused: there is nothing to connect to.
    for port in [22, 80, 443, 4222, 8080, 9000, 10500, nats.port] {
        let addr = SocketAddr::from((ns.inner, port));
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(_) => panic!("something in the worker's namespace accepted {addr}"),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "connect to {addr}: {e}"
            ),
        }
    }

    let want = p.plain_artifacts();
    let cache = root.join("cache");
    // The farm tests' build settings, pointed at the veth address (the later env wins).
    let build = crate::farm::farm_build(&cache, &nats).env("JETCC_NATS_URL", &url);
    let built = p.build_ok(&build);
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(
        &want,
        &artifacts(&p.target()),
        "farm build via the netns worker",
    );
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], REMOTE_UNITS.len(), "{s}");
    // The C compile of util's build script went to the farm too.
    assert_eq!(s["c_compiles"]["remote"], FIXTURE_C_COMPILES, "{s}");
    assert_eq!(
        w.wait_jobs_done(REMOTE_UNITS.len() + FIXTURE_C_COMPILES),
        REMOTE_UNITS.len() + FIXTURE_C_COMPILES,
        "{}",
        w.log()
    );

    // Still nothing listening after serving jobs.
    assert_listens_on_nothing(pid, &ns, &nats_in_proc, "after the build");
    eprintln!("farm_netns: {:.1?}", started.elapsed());
}
