//! Jobs that cannot hurt a worker, against a real nats-server and real `jetcc-worker`s: a job
//! whose paths collide cannot write into the worker's blob cache; a job's output, memory and
//! disk are bounded (it is stopped, the worker serves on, the client compiles locally); a job
//! redelivered after its worker died is not retried; a root worker without an unprivileged
//! user to run jobs as, or whose jail cannot start, refuses to start with exit code 3.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, Lifetime, Resources};
use jetcc_common::protocol::job::{InputFile, JobEvent, JobRequest};
use jetcc_common::protocol::names::{JobId, Nonce};
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::Digest;
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm_hostile::{real_toolchain, runtime};
use crate::sandbox_probes::lab::{serial, Lab};

/// A library source that compiles, and one that must never be compiled in its place.
const GOOD: &[u8] = b"pub fn f() -> u32 { 1 }\n";
const EVIL: &[u8] = b"compile_error!(\"the worker's blob cache was overwritten\");\n";

/// A farm client of the test's own, with the toolchain and host jobs name.
struct Client {
    farm: Farm,
    res: Resources,
    tc: Digest,
    host: String,
}

impl Client {
    async fn connect(nats: &Nats, memo: &Path) -> Client {
        let (tc, host) = real_toolchain(memo);
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "test", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        Client {
            farm,
            res,
            tc,
            host,
        }
    }

    /// Job `n`: a library `/x/lib.rs` (and whatever else `inputs` holds) built into `/x/out`.
    fn job(&self, n: u8, source: &[u8], args: &[&str]) -> JobRequest {
        let id = JobId::from_bytes([n; 16]);
        let mut all_args: Vec<String> = ["--crate-name", "probe", "--crate-type", "lib"]
            .iter()
            .chain(["--edition=2021", "/x/lib.rs", "--out-dir", "/x/out"].iter())
            .map(|a| a.to_string())
            .collect();
        all_args.extend(args.iter().map(|a| a.to_string()));
        JobRequest {
            version: PROTOCOL_VERSION,
            job_id: id.to_string(),
            reply_subject: self
                .farm
                .names
                .reply_subject(&self.farm.user, &Nonce::from_bytes([n; 16]))
                .unwrap(),
            crate_name: "probe".into(),
            deadline_unix_ms: (SystemTime::now() + Duration::from_secs(120))
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
            toolchain: self.tc,
            args: all_args,
            env: vec![],
            cwd: "/x".into(),
            inputs: vec![input("/x/lib.rs", source)],
            system_inputs: vec![],
            dirs: vec![],
            out_dir: "/x/out".into(),
            outputs: vec!["libprobe.rlib".into()],
            key_paths: Default::default(),
            shipped: None,
            inline: vec![],
        }
    }

    /// Uploads `bytes` to the CAS.
    async fn put(&self, bytes: &[u8]) {
        self.res
            .cas
            .put(&Digest::of_bytes(bytes), bytes)
            .await
            .unwrap();
    }

    /// Submits `job` and follows it to its end (`Done` or `Refused`), or for `wait`.
    async fn run(&self, job: &JobRequest, wait: Duration) -> Vec<JobEvent> {
        let msg_id = Digest::of_bytes(job.job_id.as_bytes());
        let mut sub = self.res.submit(job, &self.host, &msg_id).await.unwrap();
        follow(&mut sub, wait).await
    }
}

async fn follow(sub: &mut jetcc_common::farm::Submitted, wait: Duration) -> Vec<JobEvent> {
    let until = Instant::now() + wait;
    let mut events = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match sub.next(left).await {
            Ok(Some(e)) => {
                let end = matches!(e, JobEvent::Done { .. } | JobEvent::Refused { .. });
                events.push(e);
                if end {
                    break;
                }
            }
            _ => break,
        }
    }
    events
}

fn input(path: &str, bytes: &[u8]) -> InputFile {
    InputFile {
        path: path.into(),
        digest: Digest::of_bytes(bytes),
        size: bytes.len() as u64,
        mode: 0o644,
    }
}

/// The refusal reason that ended `events`, or a panic saying what came instead.
fn refusal(events: &[JobEvent]) -> String {
    match events.last() {
        Some(JobEvent::Refused { reason }) => reason.clone(),
        other => panic!("expected a refusal, got {other:?} after {events:?}"),
    }
}

/// rustc's exit code from the `Done` that ended `events`.
fn exit_code(events: &[JobEvent]) -> i32 {
    match events.last() {
        Some(JobEvent::Done { exit_code, .. }) => *exit_code,
        other => panic!("expected Done, got {other:?} after {events:?}"),
    }
}

/// The worker's cached copy of a blob.
fn cached_blob(worker: &Worker, bytes: &[u8]) -> PathBuf {
    worker
        .dir
        .join("cache/worker/blobs")
        .join(Digest::of_bytes(bytes).hex())
}

#[test]
fn a_job_listing_a_path_twice_is_refused_and_the_blob_cache_stays_intact() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let w = Worker::start(&nats.url(), &root.join("w"), 1);
    runtime().block_on(async {
        let c = Client::connect(&nats, &root.join("memo")).await;
        c.put(GOOD).await;
        c.put(EVIL).await;
        // The good source, cached on the worker by a first job.
        let done = c.run(&c.job(1, GOOD, &[]), Duration::from_secs(60)).await;
        assert_eq!(exit_code(&done), 0, "{done:?}");
        let blob = cached_blob(&w, GOOD);
        assert_eq!(std::fs::read(&blob).unwrap(), GOOD);
        // The same path again with other bytes, spelled the same and spelled otherwise: laid
        // out, the second would be copied over the first, a hard link to the cached blob.
        for (n, second) in [(2, "/x/lib.rs"), (3, "/x//lib.rs"), (4, "/x/lib.rs/")] {
            let mut job = c.job(n, GOOD, &[]);
            job.inputs.push(input(second, EVIL));
            let reason = refusal(&c.run(&job, Duration::from_secs(60)).await);
            assert!(reason.contains("listed twice"), "{second}: {reason}");
            assert_eq!(
                Digest::of_file(&blob).unwrap(),
                Digest::of_bytes(GOOD),
                "{second}: the cached blob no longer holds its digest's bytes"
            );
        }
        // ...and the next job reading it gets the right bytes.
        let done = c.run(&c.job(5, GOOD, &[]), Duration::from_secs(60)).await;
        assert_eq!(exit_code(&done), 0, "{done:?}");
    });
    // The cached blobs are the worker's and read-only: no job can write to them.
    assert_blob_cache_intact(&w);
}

/// Every blob in a worker's cache holds its digest's bytes, and none is writable.
fn assert_blob_cache_intact(worker: &Worker) {
    use std::os::unix::fs::MetadataExt;
    let dir = worker.dir.join("cache/worker/blobs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.starts_with('.') {
            continue;
        }
        assert_eq!(
            Digest::of_file(&path).unwrap().hex(),
            name,
            "{}",
            path.display()
        );
        let mode = std::fs::metadata(&path).unwrap().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable", path.display());
        n += 1;
    }
    assert!(n > 0, "no blob cached in {}", dir.display());
}

/// A proc-macro writing to its compile's inputs (the source, hard-linked from the blob
/// cache, and the macro's own library, copied into the out-dir) changes no cached blob.
#[test]
fn a_proc_macro_writing_to_its_inputs_leaves_the_blob_cache_intact() {
    let _serial = serial();
    let mut lab = lab(&[]);
    // A first build, for the macro's library in the out-dir.
    let mut failures = Vec::new();
    lab.probe("read", &[]).check_common(&mut lab, &mut failures);
    let deps = lab.out_dir();
    let evil_so = std::fs::read_dir(&deps).ok().and_then(|d| {
        d.flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "so"))
    });
    let mut targets = vec![lab
        .ws
        .join("victim/src/lib.rs")
        .to_string_lossy()
        .into_owned()];
    targets.extend(evil_so.map(|p| p.to_string_lossy().into_owned()));
    let p = lab.probe("write", &targets);
    p.check_blocked(&mut lab, &mut failures);
    crate::sandbox_probes::lab::finish(failures);
    assert_blob_cache_intact(&lab.worker);
}

/// A lab (nats-server, worker, the probe workspace) whose worker has these limits.
fn lab(env: &[(&str, &str)]) -> Lab {
    Lab::with_worker_env(60, env)
}

/// Peak memory of a process (`VmHWM`), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[test]
fn a_proc_macro_flooding_stderr_is_stopped_at_the_output_limit() {
    let _serial = serial();
    let mut lab = lab(&[]);
    let p = lab.probe("spew", &[]);
    let mut failures = Vec::new();
    p.check_common(&mut lab, &mut failures);
    let reason = "rustc wrote more than 16 MiB to stdout and stderr";
    if !p.worker_log.contains(reason) || !p.built.log.contains(reason) {
        failures.push(format!(
            "the job was not stopped at 16 MiB\n{}",
            p.context()
        ));
    }
    // 8 GiB were to come; the worker kept 16 MiB of them, and stopped the job at once.
    let peak = peak_memory(lab.worker.pid());
    if peak > 200 << 20 {
        failures.push(format!("the worker's memory peaked at {} MiB", peak >> 20));
    }
    if p.secs > 30.0 {
        failures.push(format!("the build took {:.1} s\n{}", p.secs, p.context()));
    }
    // It serves on: the next job compiles on it.
    let again = lab.probe("read", &[]);
    again.check_common(&mut lab, &mut failures);
    crate::sandbox_probes::lab::finish(failures);
}

#[test]
fn a_proc_macro_allocating_without_bound_is_killed_at_the_memory_limit() {
    let _serial = serial();
    let mut lab = lab(&[("JETCC_WORKER_MEMORY_LIMIT", "256M")]);
    assert!(
        lab.worker.log().contains("cgroups=Some"),
        "this host (root, cgroup v1 or v2) gives the worker cgroups: {}",
        lab.worker.log()
    );
    let p = lab.probe("hog", &[]);
    let mut failures = Vec::new();
    p.check_common(&mut lab, &mut failures);
    let reason = "passed the worker's memory limit (256 MiB) and was killed";
    if !p.worker_log.contains(reason) || !p.built.log.contains(reason) {
        failures.push(format!(
            "the job was not killed at its memory limit\n{}",
            p.context()
        ));
    }
    if p.built.log.contains("jetcc-probe hog: SUCCEEDED") {
        failures.push(format!("the macro got 16 GiB\n{}", p.context()));
    }
    let again = lab.probe("read", &[]);
    again.check_common(&mut lab, &mut failures);
    crate::sandbox_probes::lab::finish(failures);
}

#[test]
fn a_proc_macro_filling_the_disk_is_stopped_at_the_disk_limit() {
    let _serial = serial();
    let mut lab = lab(&[("JETCC_WORKER_DISK_LIMIT", "256M")]);
    let out_dir = lab.out_dir().to_string_lossy().into_owned();
    let p = lab.probe("fill", &[out_dir]);
    let mut failures = Vec::new();
    p.check_common(&mut lab, &mut failures);
    let reason = "passed the worker's disk limit (256 MiB)";
    if !p.worker_log.contains(reason) || !p.built.log.contains(reason) {
        failures.push(format!(
            "the job was not stopped at its disk limit\n{}",
            p.context()
        ));
    }
    if p.built.log.contains("jetcc-probe fill: SUCCEEDED") {
        failures.push(format!("the macro wrote 2 GiB\n{}", p.context()));
    }
    // The job's files are gone with it.
    let jobs = lab.worker.dir.join("cache/worker/jobs");
    let left = std::fs::read_dir(&jobs).map_or(0, |d| d.count());
    if left != 0 {
        failures.push(format!("{left} job dirs left in {}", jobs.display()));
    }
    crate::sandbox_probes::lab::finish(failures);
}

/// A source whose compile never ends (const evaluation loops), to hold a worker mid-job.
const FOREVER: &[u8] = b"#![allow(long_running_const_eval)]\n\
pub const X: u64 = { let mut i = 1u64; while i != 0 { i = i.wrapping_mul(3); } i };\n";

#[test]
fn a_job_whose_worker_died_is_not_retried_on_the_next() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let mut w1 = Worker::start(&nats.url(), &root.join("w1"), 1);
    runtime().block_on(async {
        let c = Client::connect(&nats, &root.join("memo")).await;
        c.put(FOREVER).await;
        let job = c.job(7, FOREVER, &[]);
        let msg_id = Digest::of_bytes(job.job_id.as_bytes());
        let mut sub = c.res.submit(&job, &c.host, &msg_id).await.unwrap();
        // The first worker starts it; then it dies mid-job (as a job could make it).
        let first = sub.next(Duration::from_secs(20)).await.unwrap();
        assert!(matches!(first, Some(JobEvent::Started)), "{first:?}");
        let until = Instant::now() + Duration::from_secs(10);
        while !w1.log().contains("job started") && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        w1.kill();
        let w2 = Worker::start(&nats.url(), &root.join("w2"), 1);
        // Redelivered after the ack wait: the next worker refuses it, unrun.
        let events = follow(&mut sub, Duration::from_secs(30)).await;
        let reason = refusal(&events);
        assert!(reason.contains("not retried"), "{reason}");
        assert!(
            !events.iter().any(|e| matches!(e, JobEvent::Started)),
            "the second worker started it: {events:?}"
        );
        assert!(
            w2.log().contains("refusing a redelivered job"),
            "{}",
            w2.log()
        );
        // The first worker's rustc died with it: nothing compiles the job any more.
        let spinning = rustcs_of(&root.join("w1"));
        assert!(
            spinning.is_empty(),
            "rustc of the dead worker still runs: {spinning:?}"
        );
    });
}

/// Live rustc processes whose cwd is under `dir` (a worker's job roots).
fn rustcs_of(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let root = std::fs::read_link(e.path().join("root")).ok()?;
            (comm.trim() == "rustc" && root.starts_with(dir)).then_some(pid)
        })
        .collect()
}

/// Starts a worker as root with `env`, maybe wrapped; waits for it to exit; returns its code
/// and log.
fn failed_start(
    dir: &Path,
    env: &[(&str, &str)],
    wrap: impl FnOnce(&mut std::process::Command),
) -> (Option<i32>, String) {
    let nats = Nats::start(&dir.join("nats"));
    let mut w = Worker::spawn(&nats.url(), &dir.join("w"), 1, env, wrap);
    let status = w.wait_exit(Duration::from_secs(20));
    (status.and_then(|s| s.code()), w.log())
}

fn needs_root(test: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        skip_or_fail(test, "needs root (a root worker's user checks)");
        return false;
    }
    true
}

#[test]
fn a_root_worker_without_an_unprivileged_user_refuses_to_start() {
    if !needs_root("worker_limits") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A run_as naming nobody on this host.
    let (code, log) = failed_start(
        &tmp.path().join("a"),
        &[("JETCC_WORKER_RUN_AS", "jetcc-no-such-user")],
        |_| {},
    );
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("no user \"jetcc-no-such-user\""), "{log}");
    assert!(!log.contains("jetcc-worker serving"), "{log}");
    // run_as naming root.
    let (code, log) = failed_start(
        &tmp.path().join("b"),
        &[("JETCC_WORKER_RUN_AS", "root")],
        |_| {},
    );
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("is root"), "{log}");
    // No `nobody` (a host whose /etc/passwd lacks it), and no run_as: not jobs as root.
    let passwd = tmp.path().join("passwd");
    let users: String = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("nobody:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&passwd, users).unwrap();
    // Users from the file alone: nss-systemd would make up a `nobody`.
    let nsswitch = tmp.path().join("nsswitch.conf");
    std::fs::write(&nsswitch, "passwd: files\ngroup: files\n").unwrap();
    let (code, log) = failed_start(&tmp.path().join("c"), &[], |cmd| {
        let worker = cmd.get_program().to_owned();
        *cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount --bind {} /etc/passwd && mount --bind {} /etc/nsswitch.conf && exec \"$0\"",
                passwd.display(),
                nsswitch.display()
            ))
            .arg(worker);
    });
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("no user \"nobody\""), "{log}");
}

/// Run as root: `$1` the worker. Makes a user namespace where ids 0-65535 map to themselves
/// and no further user namespace may be made (the limit is per namespace), then runs the
/// worker in it as an unprivileged user: its jail, which needs a user namespace, cannot start.
const NO_USERNS: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:
        os._exit(90)
    os.write(ready_w, b"x")
    os.read(go_r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.setgroups([])
    os.setgid(64321)
    os.setuid(64321)
    os.execv(sys.argv[1], [sys.argv[1]])
os.close(ready_w)
os.close(go_r)
if os.read(ready_r, 1) != b"x":
    sys.exit("the child could not make a user namespace")
for m in ("uid_map", "gid_map"):
    with open("/proc/%d/%s" % (pid, m), "w") as f:
        f.write("0 0 65536")
os.write(go_w, b"x")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn a_worker_whose_jail_cannot_start_refuses_to_start() {
    if !needs_root("worker_limits") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    std::fs::create_dir_all(&dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let (code, log) = failed_start(tmp.path(), &[], |cmd| {
        let worker = cmd.get_program().to_owned();
        *cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(NO_USERNS).arg(worker);
    });
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("self-test failed"), "{log}");
    assert!(log.contains("unshare"), "{log}");
}
