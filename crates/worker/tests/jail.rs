//! The jail as the worker runs it, through its zygote (so with its own `main`: the zygote is
//! forked while the process has one thread, before any test harness thread exists).
//!
//! - Two jobs running at once are in two network namespaces, neither the worker's, where no
//!   IP packet can go (no interface up); a later job reuses one of them.
//! - A job's `/` holds its own files where the client has them, and is read-only; so with the
//!   system paths staged ahead of the job, also for a job with its own file under one (`/usr`).
//! - A launcher prepared ahead of its job is in the job's cgroups before the job comes; the
//!   job's processes are there with it; one dropped unused is killed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jetcc_worker::cgroup::{CgroupLimits, Cgroups};
use jetcc_worker::jail::{Launched, Launcher, Plan, Zygote};
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
own = [open(p).read().strip() for p in sys.argv[2:]]
print(net, udp, root, src, *own)
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
        let fresh = tmp.path().join("fresh");
        jobs_confined(&launcher, &fresh).await;
        // From here on, launchers lay the system paths out before their job comes.
        let stage = tmp.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        launcher.stage_at(stage.clone()).unwrap();
        let staged = tmp.path().join("staged");
        jobs_confined(&launcher, &staged).await;
        // Its own /usr file beside the system's /usr (python runs from there): laid out afresh.
        let own = plan_with(&staged, "e", 0.0, &[("/usr/jetcc-own/e.txt", "own e")]);
        let seen = job(&launcher, &own).await;
        assert!(seen.ends_with("fn e() {} own e"), "job e saw: {seen}");
        assert_eq!(
            std::fs::read_dir(&stage).unwrap().count(),
            0,
            "the worker saw a launcher's stage"
        );
        prepared_in_cgroups(&launcher, tmp.path()).await;
    });
    println!("jail: ok");
}

/// Two jobs running at once, each in a network namespace of its own where nothing can be
/// reached, in a read-only `/` with their own files; a later job reuses a namespace.
async fn jobs_confined(launcher: &Launcher, dir: &Path) {
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let own = own.to_string_lossy();
    let (plan_a, plan_b) = (plan(dir, "a", 1.5), plan(dir, "b", 1.5));
    let (a, b) = tokio::join!(job(launcher, &plan_a), job(launcher, &plan_b));
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
    let c = job(launcher, &plan(dir, "c", 0.0)).await;
    assert!(
        [net(&a), net(&b)].contains(&net(&c)),
        "a later job got a new network namespace: {c} (before: {a}, {b})"
    );
}

/// A job root holding `/work/proj/src/lib.rs` (`fn NAME() {}`) and the plan to run the probe
/// in it, sleeping `secs` after it reported.
fn plan(dir: &Path, name: &str, secs: f64) -> PathBuf {
    plan_with(dir, name, secs, &[])
}

/// [`plan`], the root also holding `own` files (jail path, text), which the probe prints.
fn plan_with(dir: &Path, name: &str, secs: f64, own: &[(&str, &str)]) -> PathBuf {
    let base = dir.join(name);
    let root = base.join("root");
    let src = root.join("work/proj/src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(root.join("work/proj/out")).unwrap();
    std::fs::write(src.join("lib.rs"), format!("fn {name}() {{}}\n")).unwrap();
    for (path, text) in own {
        let file = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    // SAFETY: geteuid cannot fail.
    let root_user = unsafe { libc::geteuid() } == 0;
    let plan = Plan {
        root,
        sysroot: None,
        program: PathBuf::from("/usr/bin/python3"),
        args: ["-c", PROBE, &secs.to_string()]
            .into_iter()
            .chain(own.iter().map(|(path, _)| *path))
            .map(String::from)
            .collect(),
        env: Vec::new(),
        cwd: PathBuf::from("/work/proj"),
        writable: vec![PathBuf::from("/work/proj/out")],
        readable: vec![PathBuf::from("/work/proj/src")],
        run_as: root_user.then_some((65534, 65534)),
        memory_bytes: None,
        processes: None,
        file_size_bytes: None,
        enforce: true,
    };
    let file = base.join("plan.json");
    std::fs::write(&file, serde_json::to_vec(&plan).unwrap()).unwrap();
    file
}

/// A prepared launcher joins its cgroups before its job comes, and its job runs there.
async fn prepared_in_cgroups(launcher: &Launcher, dir: &Path) {
    let limits = CgroupLimits {
        memory_bytes: 512 << 20,
        pids: 64,
    };
    let cgroups = match Cgroups::setup(limits) {
        Ok(c) => c,
        // A host that cannot run it fails the test, unless skipping is asked for.
        Err(e) if std::env::var_os("JETCC_TEST_ALLOW_SKIP").is_some_and(|v| v == "1") => {
            eprintln!("\n!!!!!!!! SKIPPED: {e}; the cgroup part did NOT run !!!!!!!!\n");
            return;
        }
        Err(e) => panic!("cannot set up cgroups: {e} (JETCC_TEST_ALLOW_SKIP=1 lets it skip)"),
    };
    let cgroup = cgroups.create("jail-test").unwrap();
    let procs = cgroup.procs_files();
    let members = || {
        let text = std::fs::read_to_string(&procs[0]).unwrap();
        text.lines().count()
    };
    let until = |want: usize, what: &str| {
        let what = what.to_string();
        async move {
            for _ in 0..500 {
                if members() == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "{what}: {} processes in the job's cgroup, not {want}",
                members()
            );
        }
    };
    let prepared = launcher.prepare(procs.clone()).unwrap();
    until(1, "a prepared launcher, before its job").await;
    let plan = plan(dir, "d", 1.5);
    let running = tokio::spawn(finish(prepared.launch(&plan).unwrap(), plan));
    // The launcher and the job's python (the launcher's child, its PID namespace's init).
    until(2, "a running job").await;
    assert!(running.await.unwrap().ends_with("fn d() {}"));
    until(0, "after the job").await;
    let unused = launcher.prepare(procs.clone()).unwrap();
    until(1, "another prepared launcher").await;
    drop(unused);
    until(0, "a prepared launcher dropped unused").await;
    cgroup.remove();
}

/// Runs a job; returns its stdout, trimmed. Panics unless it exits 0.
async fn job(launcher: &Launcher, plan: &Path) -> String {
    finish(launcher.launch(plan).unwrap(), plan.to_owned()).await
}

/// Reads a launched job's output to its end; returns its stdout, trimmed. Panics unless it
/// exits 0.
async fn finish(mut launched: Launched, plan: PathBuf) -> String {
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
