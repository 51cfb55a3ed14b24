//! The compile farm, end to end: a real nats-server, real `jetcc-worker`s, real cargo.

use jetcc_common::farm::FarmErrorKind;
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

/// The fixture's units that go to the farm: its libraries and its proc macro (a link a
/// worker with the client's C runtime repeats exactly). The others link (build script,
/// binary) and always compile locally.
pub const REMOTE_UNITS: &[&str] = &["leaf", "mid", "util", "corelib", "mac"];

/// Those of [`REMOTE_UNITS`] whose worker records them in the shared cache: not the proc
/// macro, whose key names the client's linker (its client shares it).
pub const WORKER_RECORDED: &[&str] = &["leaf", "mid", "util", "corelib"];

/// A build through jetcc with the farm configured, sending every unit it can to the farm
/// (no local slots: cargo's `-j` equals this machine's cores, which would keep all local).
pub fn farm_build(cache: &std::path::Path, nats: &Nats) -> Build {
    Build::jetcc(cache)
        .env("JETCC_NATS_URL", &nats.url())
        .env("JETCC_DIST_LOCAL_SLOTS", "0")
}

#[test]
fn two_workers_build_the_fixture_byte_identical_and_share_results() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let w1 = Worker::start(&nats.url(), &root.join("w1"), 1);
    let w2 = Worker::start(&nats.url(), &root.join("w2"), 1);
    let want = p.plain_artifacts();

    let cache = root.join("cache-a");
    let built = p.build_ok(&farm_build(&cache, &nats));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "farm build");
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], REMOTE_UNITS.len(), "{s}");
    // A worker logs "job done" just after it answers: wait for the last line.
    // The C compile of util's build script went to the farm too.
    assert_eq!(s["c_compiles"]["remote"], FIXTURE_C_COMPILES, "{s}");
    wait_until(10, "the workers' logs", || {
        w1.jobs_done() + w2.jobs_done() == REMOTE_UNITS.len() + FIXTURE_C_COMPILES
    });
    // Warnings come back from the farm as rustc wrote them.
    assert!(
        built.stderr().contains("unused_variable"),
        "{}",
        built.stderr()
    );

    // Another client (its own empty local cache, the same checkout path, as a CI agent's
    // fresh workspace) hits what the first one compiled, on the farm and locally. The
    // results of rustc jobs were recorded by the workers that ran them, not the client
    // (but for the proc macro's link, which its client shared).
    assert_eq!(
        s["tiers"]["jetstream"]["writes"],
        FIXTURE_COLD_WRITES - WORKER_RECORDED.len(),
        "{s}"
    );
    p.clean();
    let cache_b = root.join("cache-b");
    let built = p.build_ok(&farm_build(&cache_b, &nats));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "shared hits");
    let s = stats(&cache_b);
    assert_eq!(s["tiers"]["jetstream"]["hits"], FIXTURE_WARM_HITS, "{s}");
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert!(
        built.stderr().contains("unused_variable"),
        "warnings replayed from the shared cache: {}",
        built.stderr()
    );
}

/// A proc macro goes to the farm only where the worker's jailed rustc links it as this
/// client would: with `/usr/bin/cc` and the C runtime it names file by file. A client whose
/// `cc` is another program (a `cc` earlier on its PATH) links it here; the rest still goes.
#[test]
fn a_proc_macro_linked_by_another_cc_here_compiles_locally() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let _w = Worker::start(&nats.url(), &root.join("w"), 1);
    let want = p.plain_artifacts();
    let own = root.join("own-bin");
    std::fs::create_dir_all(&own).unwrap();
    std::os::unix::fs::symlink("/usr/bin/gcc", own.join("cc")).unwrap();
    let path = format!("{}:{}", own.display(), std::env::var("PATH").unwrap());

    let cache = root.join("cache");
    let built = p.build_ok(&farm_build(&cache, &nats).env("PATH", &path));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "farm build, own cc");
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], REMOTE_UNITS.len() - 1, "{s}");
    assert_eq!(s["remote_skipped"]["farm-linker"], 1, "{s}");
    assert!(
        built
            .log
            .contains("the linker `cc` here is not /usr/bin/cc"),
        "{}",
        built.log
    );
}

/// Waits until `cond` holds, up to `secs`.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The generated slow crate, its plain artifacts, and a build of it through the farm running
/// in the background.
pub fn slow_build_in_background(
    root: &std::path::Path,
    build: Build,
) -> (
    std::path::PathBuf,
    std::collections::BTreeMap<String, Vec<u8>>,
    std::thread::JoinHandle<Built>,
) {
    let dir = root.join("slow");
    slow_crate(&dir, 1500);
    build_in(&dir, &Build::plain());
    let want = artifacts(&dir.join("target"));
    std::fs::remove_dir_all(dir.join("target")).unwrap();
    let d = dir.clone();
    let handle = std::thread::spawn(move || build_in(&d, &build));
    (dir, want, handle)
}

/// A job whose worker died mid-job may be what killed it: the next worker refuses it rather
/// than run it, and the client compiles it locally.
#[test]
fn a_worker_killed_mid_job_is_not_retried_elsewhere_and_compiles_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let mut w1 = Worker::start(&nats.url(), &root.join("w1"), 1);
    let cache = root.join("cache");
    let (dir, want, handle) = slow_build_in_background(root, farm_build(&cache, &nats));
    wait_until(60, "the job to start on w1", || {
        w1.log().contains("job started")
    });
    w1.kill();
    let w2 = Worker::start(&nats.url(), &root.join("w2"), 1);
    let built = handle.join().unwrap();
    assert!(built.ok(), "{}", built.stderr());
    assert_same_artifacts(&want, &artifacts(&dir.join("target")), "after redelivery");
    wait_until(10, "w2's refusal", || {
        w2.log().contains("refusing a redelivered job")
    });
    assert_eq!(w2.jobs_done(), 0, "{}", w2.log());
    assert!(built.log.contains("not retried"), "{}", built.log);
    assert_eq!(stats(&cache)["remote_compiles"], 0);
}

#[test]
fn nats_stopped_mid_build_compiles_locally_and_the_farm_returns_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut nats = Nats::start(&root.join("nats"));
    let w = Worker::start(&nats.url(), &root.join("w"), 1);
    let cache = root.join("cache");
    let build = farm_build(&cache, &nats).env("JETCC_DIST_BREAKER_SECS", "1");
    let (dir, want, handle) = slow_build_in_background(root, build.clone());
    wait_until(60, "the job to start", || w.log().contains("job started"));
    nats.stop();
    let built = handle.join().unwrap();
    assert!(built.ok(), "{}", built.stderr());
    assert_same_artifacts(&want, &artifacts(&dir.join("target")), "local fallback");
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert_eq!(
        s["remote_skipped"][FarmErrorKind::Unreachable.name()],
        1,
        "{s}"
    );

    // Back up: the worker reconnects by itself, and the next miss goes to the farm again.
    nats.restart();
    let restarted = std::time::Instant::now();
    // A heartbeat written before the stop may still be within its TTL: wait for one written
    // since the restart, which says the worker's connection is back.
    wait_until(30, "the worker to be back", || {
        dist_status(&nats).is_some_and(|s| {
            let w = &s["SchedulerStatus"][1]["workers"][0];
            w["last_seen_ms_ago"]
                .as_u64()
                .is_some_and(|ago| u128::from(ago) < restarted.elapsed().as_millis())
        })
    });
    // A pull request the old server held dies unannounced; the worker replaces it once it
    // expires (5 s, plus 1 s of grace): until then a job would wait out its start timeout.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let lib = dir.join("src/lib.rs");
    let src = std::fs::read_to_string(&lib).unwrap() + "pub fn more() {}\n";
    std::fs::write(&lib, src).unwrap();
    let built = build_in(&dir, &build);
    assert!(built.ok(), "{}", built.stderr());
    assert_eq!(
        stats(&cache)["remote_compiles"],
        1,
        "{}\nworker: {}",
        built.log,
        w.log()
    );
}

/// `jetcc --dist-status` against `nats`; `None` if it failed.
fn dist_status(nats: &Nats) -> Option<serde_json::Value> {
    let tmp = tempfile::tempdir().unwrap();
    let out = jetcc(tmp.path())
        .env("JETCC_NATS_URL", nats.url())
        .arg("--dist-status")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // One line of JSON, as sccache prints it.
    assert_eq!(
        text.lines().count(),
        out.status.success() as usize,
        "{text}"
    );
    out.status
        .success()
        .then(|| serde_json::from_str(&text).expect("--dist-status prints JSON"))
}

#[test]
fn dist_status_counts_workers_as_they_come_and_go() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut nats = Nats::start(&root.join("nats"));
    let count = |n: &Nats| {
        let s = dist_status(n).expect("--dist-status succeeds");
        let s = &s["SchedulerStatus"];
        assert_eq!(s[0], n.url());
        (
            s[1]["num_servers"].as_u64().unwrap(),
            s[1]["num_cpus"].as_u64().unwrap(),
        )
    };
    assert_eq!(count(&nats), (0, 0), "before any worker");
    let mut w1 = Worker::start(&nats.url(), &root.join("w1"), 2);
    let mut w2 = Worker::start(&nats.url(), &root.join("w2"), 1);
    assert_eq!(count(&nats), (2, 3));
    let rows = dist_status(&nats).unwrap()["SchedulerStatus"][1]["workers"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert!(
        rows[0]["toolchains"][0]
            .as_str()
            .unwrap()
            .starts_with("rustc "),
        "{rows}"
    );

    // A clean stop leaves at once; a killed worker when its heartbeat expires.
    assert!(w1.terminate().is_some_and(|s| s.success()), "{}", w1.log());
    assert_eq!(count(&nats), (1, 1));
    w2.kill();
    wait_until(20, "the killed worker's heartbeat to expire", || {
        count(&nats) == (0, 0)
    });

    nats.stop();
    let out = jetcc(root)
        .env("JETCC_NATS_URL", nats.url())
        .arg("--dist-status")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") || err.contains("no answer"),
        "{err}"
    );
}
