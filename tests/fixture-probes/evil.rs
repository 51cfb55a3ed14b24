//! Hostile probes for jetcc's sandbox: each acts only inside a worker's jail.
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
        "spew" => spew(),
        "hog" => hog(),
        "fill" => fill(&targets[0]),
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

/// Writes 8 GiB to stderr, a KiB a line.
fn spew() -> Result<String, String> {
    let line = "x".repeat(1023);
    for _ in 0..(8usize << 20) {
        eprintln!("{line}");
    }
    Ok("wrote 8 GiB to stderr".into())
}

/// Allocates (and touches) memory, a MiB at a time, up to 16 GiB.
fn hog() -> Result<String, String> {
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..(16usize << 10) {
        held.push(vec![1u8; 1 << 20]);
    }
    Ok(format!("holds {} MiB", held.len()))
}

/// Writes files of 64 MiB into `dir` until a write fails, up to 2 GiB.
fn fill(dir: &str) -> Result<String, String> {
    use std::io::Write;
    let chunk = vec![7u8; 1 << 20];
    for n in 0..32 {
        let path = format!("{dir}/fill-{n}");
        let mut f = std::fs::File::create(&path).map_err(|e| format!("create {path}: {e}"))?;
        for _ in 0..64 {
            f.write_all(&chunk).map_err(|e| format!("write {path}: {e}"))?;
        }
    }
    Ok("wrote 2 GiB".into())
}
