//! Placement by per-unit history: with the one local slot busy and a one-slot farm, a unit
//! known (from earlier compiles) to be long goes to the farm, and a known-short one that
//! overflows right after it stays local instead of queueing behind it.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::wait_until;
use crate::farm_hostile::real_rustc;

/// The library compile of the crate in `dir` as cargo would run it, with `--cfg cfg` (a new
/// cfg is a miss of the same unit), through jetcc with the farm and one local slot.
fn compile(dir: &Path, cache: &Path, nats: &Nats, cfg: &str) -> Child {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    jetcc(cache)
        .current_dir(dir)
        .arg(real_rustc())
        .args(["--crate-name", &name, "--edition=2021", "src/lib.rs"])
        .args([
            "--error-format=json",
            "--json=artifacts",
            "--crate-type",
            "lib",
        ])
        .args(["--emit=dep-info,metadata,link", "-C", "debuginfo=0"])
        .args(["--cfg", cfg, "--out-dir"])
        .arg(&out)
        .env("JETCC_NATS_URL", nats.url())
        .env("JETCC_DIST_LOCAL_SLOTS", "1")
        .env("JETCC_LOG", "debug")
        .env("JETCC_LOG_FILE", log_path(dir, cfg))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn log_path(dir: &Path, cfg: &str) -> PathBuf {
    dir.join(format!("{cfg}.log"))
}

fn log(dir: &Path, cfg: &str) -> String {
    std::fs::read_to_string(log_path(dir, cfg)).unwrap_or_default()
}

fn finish(child: Child, dir: &Path, cfg: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}\n{}", log(dir, cfg));
}

#[test]
fn a_unit_known_to_be_long_goes_to_the_farm_and_a_short_one_stays_local() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let _worker = Worker::start(&nats.url(), &root.join("w"), 1);
    let cache = root.join("cache");
    let (busy, long, short) = (root.join("busy"), root.join("long"), root.join("short"));
    slow_crate(&busy, 1500);
    slow_crate(&long, 4500);
    slow_crate(&short, 5);

    // History: each compiled once, alone, so in the free local slot.
    let mut took = Vec::new();
    for dir in [&busy, &long, &short] {
        let start = Instant::now();
        finish(compile(dir, &cache, &nats, "seed"), dir, "seed");
        took.push(start.elapsed());
    }
    assert_eq!(stats(&cache)["remote_compiles"], 0, "seeded locally");
    let [busy_took, long_took, short_took] = took[..] else {
        unreachable!()
    };
    assert!(
        long_took > busy_took * 2 && busy_took > short_took * 3,
        "the crates must differ in length for this test: {took:?}"
    );

    // The busy unit takes the one local slot; the long one overflows next, then the short.
    // (The waits read only what any version logs, so the test can run against a jetcc
    // without per-unit placement: `JETCC_BIN=old/jetcc`, where it fails.)
    let b = compile(&busy, &cache, &nats, "run");
    wait_until(60, "the busy unit to miss", || {
        log(&busy, "run").contains("outcome=\"miss\"") || log(&busy, "run").contains("outcome=miss")
    });
    std::thread::sleep(Duration::from_millis(300)); // it takes the slot right after
    let l = compile(&long, &cache, &nats, "run");
    wait_until(60, "the long unit to start on the farm", || {
        log(&long, "run").contains("job started")
    });
    let s = compile(&short, &cache, &nats, "run");
    finish(l, &long, "run");
    finish(s, &short, "run");
    finish(b, &busy, "run");

    let (long_log, short_log) = (log(&long, "run"), log(&short, "run"));
    assert!(
        long_log.contains("remote compile done"),
        "the long unit went to the farm:\n{long_log}"
    );
    assert!(
        short_log.contains("compiling locally: the farm is slower"),
        "the short unit stayed local, not queued behind the long one:\n{short_log}"
    );
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], 1, "{s}");
    assert_eq!(s["remote_skipped"]["farm-slow"], 1, "{s}");
}
