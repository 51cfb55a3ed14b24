//! The jail as the worker runs it, through its zygote (so with its own `main`: the zygote is
//! forked while the process has one thread, before any test harness thread exists).
//!
//! - Two jobs running at once are in two network namespaces, neither the worker's, where no
//!   IP packet can go (no interface up); a later job reuses one of them.
//! - A job's `/` holds its own files where the client has them, and is read-only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jetcc_worker::jail::{Launcher, Plan, Zygote};
use tokio::io::AsyncReadExt;

/// What the jobs run: python reports on its jail, as a proc-macro could look around.
const PROBE: &str = "import os, socket, sys, time
net = os.readlink('/proc/self/ns/net')
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', 9))
    udp = 'sent'
except OSError as e:
    udp = 'errno%d' % e.errno
try:
    open('/pwned', 'w')
    root = 'writable'
except OSError:
    root = 'read-only'
src = open('/work/proj/src/lib.rs').read().strip()
print(net, udp, root, src)
sys.stdout.flush()
time.sleep(float(sys.argv[1]))
";

fn main() {
    let zygote = Zygote::start().expect("the jail's zygote");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let launcher = Launcher::new(zygote).expect("a launcher");
        let tmp = tempfile::tempdir().unwrap();
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let own = own.to_string_lossy();
        let (plan_a, plan_b) = (plan(tmp.path(), "a", 1.5), plan(tmp.path(), "b", 1.5));
        let (a, b) = tokio::join!(job(&launcher, &plan_a), job(&launcher, &plan_b));
        for (name, seen) in [("a", &a), ("b", &b)] {
            let want = format!("errno{} read-only fn {name}() {{}}", libc::ENETUNREACH);
            assert!(
                seen.ends_with(&want),
                "job {name} saw: {seen} (want …{want})"
            );
            assert!(
                !seen.starts_with(&*own),
                "job {name} ran in the worker's network namespace"
            );
        }
        let net = |seen: &str| seen.split(' ').next().unwrap().to_string();
        assert_ne!(
            net(&a),
            net(&b),
            "two jobs running at once shared a network namespace"
        );
        let c = job(&launcher, &plan(tmp.path(), "c", 0.0)).await;
        assert!(
            [net(&a), net(&b)].contains(&net(&c)),
            "a later job got a new network namespace: {c} (before: {a}, {b})"
        );
    });
    println!("jail: ok");
}

/// A job root holding `/work/proj/src/lib.rs` (`fn NAME() {}`) and the plan to run the probe
/// in it, sleeping `secs` after it reported.
fn plan(dir: &Path, name: &str, secs: f64) -> PathBuf {
    let base = dir.join(name);
    let root = base.join("root");
    let src = root.join("work/proj/src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(root.join("work/proj/out")).unwrap();
    std::fs::write(src.join("lib.rs"), format!("fn {name}() {{}}\n")).unwrap();
    // SAFETY: geteuid cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    let plan = Plan {
        root,
        sysroot: None,
        program: PathBuf::from("/usr/bin/python3"),
        args: vec!["-c".into(), PROBE.into(), secs.to_string()],
        env: Vec::new(),
        cwd: PathBuf::from("/work/proj"),
        writable: vec![PathBuf::from("/work/proj/out")],
        readable: vec![PathBuf::from("/work/proj/src")],
        run_as: root_user.then_some((65534, 65534)),
        memory_bytes: None,
        processes: None,
        file_size_bytes: None,
        enforce: true,
        cgroup_procs: Vec::new(),
    };
    let file = base.join("plan.json");
    std::fs::write(&file, serde_json::to_vec(&plan).unwrap()).unwrap();
    file
}

/// Runs a job; returns its stdout, trimmed. Panics unless it exits 0.
async fn job(launcher: &Launcher, plan: &Path) -> String {
    let mut launched = launcher.launch(plan).unwrap();
    let (mut out, mut err) = (
        launched.stdout.take().unwrap(),
        launched.stderr.take().unwrap(),
    );
    let (mut said, mut told) = (Vec::new(), Vec::new());
    let read = async { tokio::join!(out.read_to_end(&mut said), err.read_to_end(&mut told)) };
    let (out_read, err_read) = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the job ended");
    out_read.and(err_read).expect("read the job's output");
    let code = launched.wait().await.unwrap();
    let told = String::from_utf8_lossy(&told);
    assert_eq!(code, 0, "{}: {told}", plan.display());
    String::from_utf8(said).unwrap().trim().to_string()
}
