//! The work queue's semantics: identical jobs in flight run once, a job past its deadline is
//! dropped unrun, so is a job its client took back (at once), a compile error is answered
//! once and never retried nor cached, and a server without JetStream is a clear error.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, FarmErrorKind, Lifetime};
use jetcc_common::protocol::job::{InputFile, JobEvent, JobRequest};
use jetcc_common::protocol::names::{JobId, Nonce};
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::stats::{RemoteSkip, StatKind};
use jetcc_common::Digest;
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, wait_until};
use crate::farm_hostile::{real_rustc, real_toolchain, runtime};

/// The library compile cargo would run for the crate in `dir`, through jetcc with the farm,
/// logging to `<cache>/log`.
fn remote_compile(dir: &Path, cache: &Path, nats: &Nats) -> Child {
    std::fs::create_dir_all(cache).unwrap();
    jetcc(cache)
        .current_dir(dir)
        .arg(real_rustc())
        .args(library_args(dir))
        .env("JETCC_NATS_URL", nats.url())
        .env("JETCC_DIST_LOCAL_SLOTS", "0")
        .env("JETCC_LOG", "debug")
        .env("JETCC_LOG_FILE", cache.join("log"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn library_args(dir: &Path) -> Vec<String> {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    [
        "--crate-name",
        "slow",
        "--edition=2021",
        "src/lib.rs",
        "--error-format=json",
        "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "debuginfo=0",
        "-C",
        "metadata=0123abcd",
        "--out-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.to_string_lossy().into_owned()])
    .collect()
}

/// The files in `dir/out`, by name.
fn outputs(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("out"))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn identical_jobs_in_flight_run_once_and_both_clients_get_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    // Two free slots: a second copy of the job would run at once if it were queued.
    let w = Worker::start(&nats.url(), &root.join("w"), 2);
    let dir = root.join("slow");
    slow_crate(&dir, 1500);
    let plain = Command::new(real_rustc())
        .current_dir(&dir)
        .args(library_args(&dir))
        .output()
        .unwrap();
    assert!(plain.status.success(), "{plain:?}");
    let want = outputs(&dir);
    std::fs::remove_dir_all(dir.join("out")).unwrap();

    let (c1, c2) = (root.join("client1"), root.join("client2"));
    let first = remote_compile(&dir, &c1, &nats);
    wait_until(60, "the first job to start", || {
        w.log().contains("job started")
    });
    let second = remote_compile(&dir, &c2, &nats);
    for (name, child, cache) in [("first", first, &c1), ("second", second, &c2)] {
        let out = child.wait_with_output().unwrap();
        let log = std::fs::read_to_string(cache.join("log")).unwrap_or_default();
        assert!(out.status.success(), "{name}: {out:?}\n{log}");
        assert_eq!(stats(cache)["remote_compiles"], 1, "{name}: {log}");
    }
    let log2 = std::fs::read_to_string(c2.join("log")).unwrap();
    assert!(
        log2.contains("followed=true"),
        "the second client followed the first job: {log2}"
    );
    assert_eq!(outputs(&dir), want, "byte-identical to plain rustc");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.log().matches("job started").count(), 1, "{}", w.log());
    assert_eq!(w.jobs_done(), 1, "{}", w.log());
}

/// A job for `source` as the file `/q/lib.rs`, due by `deadline`.
fn job(
    farm: &Farm,
    tc: Digest,
    n: u8,
    source: &[u8],
    deadline: SystemTime,
) -> (JobRequest, Digest) {
    let id = JobId::from_bytes([n; 16]);
    let job = JobRequest {
        version: PROTOCOL_VERSION,
        job_id: id.to_string(),
        reply_subject: farm
            .names
            .reply_subject(&farm.user, &Nonce::from_bytes([n; 16]))
            .unwrap(),
        crate_name: format!("q{n}"),
        deadline_unix_ms: deadline.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        toolchain: tc,
        system_inputs: vec![],
        args: [
            "--crate-name",
            &format!("q{n}"),
            "--edition=2021",
            "/q/lib.rs",
            "--crate-type",
            "lib",
            "--emit=link",
            "--out-dir",
            "/q/out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        env: vec![],
        cwd: "/q".into(),
        inputs: vec![InputFile {
            path: "/q/lib.rs".into(),
            digest: Digest::of_bytes(source),
            size: source.len() as u64,
            mode: 0o644,
        }],
        dirs: vec![],
        out_dir: "/q/out".into(),
        outputs: vec![format!("libq{n}.rlib")],
        key_paths: Default::default(),
        shipped: None,
        inline: vec![],
    };
    let key = job.dedup_key();
    (job, key)
}

#[test]
fn a_late_job_is_dropped_unrun_and_a_compile_error_is_answered_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let w = Worker::start(&nats.url(), &root.join("w"), 1);
    let (tc, host) = real_toolchain(&root.join("memo"));
    let bad: &[u8] = b"pub fn f() -> u32 { \"not a number\" }\n";
    runtime().block_on(async {
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "test", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        let good: &[u8] = b"pub fn f() -> u32 { 1 }\n";
        res.cas.put(&Digest::of_bytes(good), good).await.unwrap();
        res.cas.put(&Digest::of_bytes(bad), bad).await.unwrap();

        // Past its deadline: its client has moved on; nothing runs, nothing answers.
        let (late, key) = job(
            &farm,
            tc,
            1,
            good,
            SystemTime::now() - Duration::from_secs(1),
        );
        let mut sub = res.submit(&late, &host, &key).await.unwrap();
        let event = sub.next(Duration::from_secs(3)).await.unwrap();
        assert!(event.is_none(), "a late job got {event:?}");

        // A compile error: answered once with rustc's exit code, acked, never redelivered.
        let due = SystemTime::now() + Duration::from_secs(60);
        let (broken, key) = job(&farm, tc, 2, bad, due);
        let mut sub = res.submit(&broken, &host, &key).await.unwrap();
        let mut errors = 0;
        let exit = loop {
            match sub.next(Duration::from_secs(30)).await.unwrap() {
                Some(JobEvent::Done { exit_code, .. }) => break exit_code,
                Some(JobEvent::Stderr(line)) => {
                    errors += String::from_utf8_lossy(&line)
                        .matches("mismatched types")
                        .count()
                }
                Some(JobEvent::Refused { reason }) => panic!("refused: {reason}"),
                Some(_) => {}
                None => panic!("no answer for the broken job: {}", w.log()),
            }
        };
        assert_eq!(exit, 1);
        assert_eq!(errors, 1, "the error is reported once");
        std::thread::sleep(Duration::from_millis(500));
        let js = nats.raw_jetstream().await;
        let mut jobs = js.get_stream(farm.names.jobs_stream()).await.unwrap();
        let info = jobs.info().await.unwrap();
        assert_eq!(info.state.messages, 0, "both jobs left the queue: {info:?}");
    });
    assert!(
        w.log().contains("past its deadline: dropped unrun"),
        "{}",
        w.log()
    );
    assert_eq!(w.log().matches("job started").count(), 1, "{}", w.log());
    assert!(w.log().contains("outcome=CompileError"), "{}", w.log());

    // Through the wrapper: the failure is confirmed locally, shown once, and never cached.
    let dir = root.join("broken");
    slow_crate(&dir, 1);
    std::fs::write(dir.join("src/lib.rs"), bad).unwrap();
    let cache = root.join("cache");
    for attempt in 1..=2 {
        let built = build_in(&dir, &farm_build(&cache, &nats));
        assert!(!built.ok(), "attempt {attempt}");
        assert_eq!(
            built.stderr().matches("mismatched types").count(),
            1,
            "attempt {attempt}: {}",
            built.stderr()
        );
        let s = stats(&cache);
        assert_eq!(s["hits"], 0, "{s}");
        assert_eq!(
            s["remote_skipped"][RemoteSkip::CompileFailed.name()],
            attempt,
            "{s}"
        );
    }
}

#[test]
fn a_server_without_jetstream_is_a_clear_error_and_builds_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start_with(&root.join("nats"), &[]);
    let mut w = Worker::spawn(&nats.url(), &root.join("w"), 1, &[], |_| {});
    let status = w.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the worker must exit with an error: {status:?} {}",
        w.log()
    );
    assert!(w.log().contains("-js"), "says how to fix it: {}", w.log());

    let out = jetcc(&root.join("status"))
        .env("JETCC_NATS_URL", nats.url())
        .arg("--dist-status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("JetStream"), "{err}");

    let dir: PathBuf = root.join("small");
    slow_crate(&dir, 3);
    let cache = root.join("cache");
    let built = build_in(&dir, &farm_build(&cache, &nats));
    assert!(built.ok(), "{}", built.stderr());
    assert!(built.log.contains("no JetStream"), "{}", built.log);
    assert_eq!(
        stats(&cache)["remote_skipped"][FarmErrorKind::NoJetStream.name()],
        1,
        "{}",
        built.log
    );
}

#[test]
fn a_source_reached_through_a_directory_without_inputs_compiles_on_the_farm() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let _w = Worker::start(&nats.url(), &root.join("w"), 1);
    // As libc does: `#[path]` through `..`, from a directory that holds no source.
    let dir = root.join("dotdot");
    slow_crate(&dir, 1);
    std::fs::create_dir_all(dir.join("src/empty/deeper")).unwrap();
    std::fs::create_dir_all(dir.join("src/other")).unwrap();
    std::fs::write(dir.join("src/other/m.rs"), "pub fn m() -> u32 { 7 }\n").unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "#[path = \"empty/deeper/../../other/m.rs\"]\npub mod m;\npub fn f() -> u32 { m::m() }\n",
    )
    .unwrap();
    build_in(&dir, &Build::plain());
    let want = artifacts(&dir.join("target"));
    std::fs::remove_dir_all(dir.join("target")).unwrap();
    let cache = root.join("cache");
    let built = build_in(&dir, &farm_build(&cache, &nats));
    assert!(built.ok(), "{}", built.stderr());
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], 1, "{s}\n{}", built.log);
    assert_eq!(
        s["remote_skipped"],
        serde_json::json!({}),
        "{s}\n{}",
        built.log
    );
    assert_same_artifacts(&want, &artifacts(&dir.join("target")), "through the farm");
}

/// A job its client took back (a local slot freed before any worker started it) is dropped
/// by the worker at once when it gets to it, though the client still runs (compiling it
/// here): before, the client's subscription outlived its interest until its process ran
/// its runtime again, and the worker, idle, waited out its 2 s for an answer to `Started`.
#[test]
fn a_job_taken_back_for_a_local_slot_is_dropped_by_its_worker_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let w = Worker::start(&nats.url(), &root.join("w"), 1);
    // A rustc that takes its time for local compiles (not the wrapper's dep-info pre-pass):
    // `SHIM_SLEEP` seconds, or until the file `SHIM_UNTIL` exists. The worker runs its own.
    let shim = root.join("slow-rustc");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\"metadata,link\"*)\n  \
             [ -n \"$SHIM_SLEEP\" ] && sleep \"$SHIM_SLEEP\"\n  \
             if [ -n \"$SHIM_UNTIL\" ]; then n=0; while [ ! -e \"$SHIM_UNTIL\" ] && \
             [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done; fi;;\nesac\nexec {} \"$@\"\n",
            real_rustc().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = root.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let compile = |name: &str, log: &str, env: &[(&str, String)]| {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let mut args = library_args(&dir);
        args[1] = name.to_string();
        let mut cmd = jetcc(&cache);
        cmd.current_dir(&dir)
            .arg(&shim)
            .args(args)
            .env("JETCC_NATS_URL", nats.url())
            .env("JETCC_DIST_LOCAL_SLOTS", "1")
            .env("JETCC_LOG", "debug")
            .env("JETCC_LOG_FILE", root.join(log))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    };
    let log = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
    let source = |name: &str, text: &str| {
        std::fs::create_dir_all(root.join(name).join("src")).unwrap();
        std::fs::write(root.join(name).join("src/lib.rs"), text).unwrap();
    };

    // The local slot's holder, once, so its unit is known to take a while here: the next
    // compile waiting for the slot then expects the farm to be sooner.
    source("holder", "pub fn f() -> u32 { 1 }\n");
    let first = [("SHIM_SLEEP", "2".to_string())];
    assert!(compile("holder", "holder-1.log", &first)
        .wait()
        .unwrap()
        .success());

    // The worker's only slot taken for seconds by another client's compile.
    let slow = root.join("slow");
    slow_crate(&slow, 1000);
    let other = farm_build(&root.join("other"), &nats);
    let building = std::thread::spawn(move || build_in(&slow, &other));
    wait_until(120, "the slow job to start", || {
        w.log().contains("job started")
    });

    // The slot's holder again, then a compile that finds no slot free and goes to the farm,
    // where it queues behind the slow job, until the slot frees up and takes it back.
    source("holder", "pub fn f() -> u32 { 2 }\n");
    let mut holder = compile("holder", "holder-2.log", &first);
    wait_until(30, "the holder in the local slot", || {
        log("holder-2.log").contains("placed at=Local")
    });
    source("taken", "pub fn g() -> u32 { 3 }\n");
    let release = root.join("release");
    let mut taken = compile(
        "taken",
        "taken.log",
        &[
            ("SHIM_UNTIL", release.display().to_string()),
            ("JETCC_DIST_START_TIMEOUT_MS", "120000".to_string()),
        ],
    );
    let start = std::time::Instant::now();
    while !log("taken.log").contains("a local slot was free before a worker started the job") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the job was not taken back: {}\n{}",
            log("taken.log"),
            log("holder-2.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !log("taken.log").contains("job started"),
        "{}",
        log("taken.log")
    );
    assert!(holder.wait().unwrap().success());

    // The worker gets to it while its client still compiles it here.
    let job_done = |l: &str| l.contains("job done") && l.contains("crate_name=\"slow\"");
    wait_until(180, "the slow job's end", || w.log().lines().any(job_done));
    let slow_done = std::time::Instant::now();
    wait_until(30, "the job taken back dropped", || {
        w.log().contains("no longer waits: dropped unrun")
    });
    let dropped_after = slow_done.elapsed();
    assert!(
        taken.try_wait().unwrap().is_none(),
        "its client still compiles it here"
    );
    assert!(
        dropped_after < Duration::from_millis(1000),
        "the worker took {dropped_after:?} to drop a job nobody waits for: {}",
        w.log()
    );
    assert_eq!(
        w.log().matches("job phases").count(),
        1,
        "one job ran: {}",
        w.log()
    );

    std::fs::write(&release, "").unwrap();
    assert!(taken.wait().unwrap().success());
    assert!(root.join("taken/out/libtaken.rlib").exists());
    assert!(building.join().unwrap().ok());
}
