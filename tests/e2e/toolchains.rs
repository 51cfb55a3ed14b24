//! Shipped toolchains: a worker with no rustc of its own gets the client's, packed once,
//! uploaded once, fetched once, verified, and run in the same jail; a corrupt blob of it is
//! refused and the build still succeeds.

use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, Lifetime};
use jetcc_common::Digest;
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, wait_until, REMOTE_UNITS, WORKER_RECORDED};
use crate::farm_hostile::{real_rustc, runtime};

/// `PATH` without the rustup proxies (`~/.cargo/bin`): only the system's dirs, where this
/// machine has no rustc.
const NO_RUSTC_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A worker that finds no rustc of its own: it serves shipped toolchains only.
fn rustc_less_worker(url: &str, dir: &std::path::Path) -> Worker {
    let w = Worker::start_with(url, dir, 1, &[("PATH", NO_RUSTC_PATH)], |_| {});
    assert!(w.log().contains("no rustc of its own"), "{}", w.log());
    w
}

/// A farm build that waits for the worker however long fetching the toolchain takes (with
/// one slot, the jobs queued behind the first one's fetch would otherwise compile here).
fn shipping_build(cache: &std::path::Path, nats: &Nats) -> Build {
    farm_build(cache, nats).env("JETCC_DIST_START_TIMEOUT_MS", "120000")
}

fn count(log: &str, line: &str) -> usize {
    log.matches(line).count()
}

#[test]
fn a_worker_without_rustc_runs_the_clients_shipped_toolchain_fetched_once() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let w = rustc_less_worker(&nats.url(), &root.join("w"));
    let want = p.plain_artifacts();

    // The first client packs its toolchain, uploads it, and the worker fetches it once
    // for all the jobs.
    let cache_a = root.join("cache-a");
    let started = std::time::Instant::now();
    let built = p.build_ok(&shipping_build(&cache_a, &nats));
    eprintln!("first shipped build: {:?}", started.elapsed());
    assert_same_artifacts(&want, &artifacts(&p.target()), "shipped toolchain build");
    let s = stats(&cache_a);
    assert_eq!(
        s["remote_compiles"],
        REMOTE_UNITS.len(),
        "{s}\n{}",
        built.log
    );
    assert_eq!(count(&built.log, "toolchain uploaded"), 1, "{}", built.log);
    wait_until(10, "the worker's jobs", || {
        w.jobs_done() >= REMOTE_UNITS.len()
    });
    let log = w.log();
    assert_eq!(
        count(&log, "shipped toolchain fetched and unpacked"),
        1,
        "{log}"
    );
    // Not recorded in the shared cache under the identity the client claims.
    assert_eq!(
        count(&log, "it ran with a shipped toolchain"),
        REMOTE_UNITS.len(),
        "{log}"
    );

    // The worker now advertises the toolchain it holds (--dist-status and the monitor).
    wait_until(15, "the shipped toolchain in --dist-status", || {
        let out = jetcc(&cache_a)
            .env("JETCC_NATS_URL", nats.url())
            .arg("--dist-status")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("\"shipped_toolchains\":[\"rustc ")
    });
    let status = jetcc_e2e::servers::monitor_status(&nats.url(), &[]);
    let worker = &status["workers"][0];
    assert!(
        worker["shipped_toolchains"][0]
            .as_str()
            .is_some_and(|n| n.starts_with("rustc ")),
        "{status}"
    );
    assert_eq!(
        worker["toolchains"].as_array().map(|t| t
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with("rustc")))),
        Some(false),
        "{status}"
    );

    // A second client on the same toolchain (its own cache, so it packs again) uploads
    // nothing, and its jobs go to the worker that holds the toolchain, which fetches
    // nothing. The proc macro is a hit: its link's first client shared it.
    p.clean();
    let cache_b = root.join("cache-b");
    let built = p.build_ok(&shipping_build(&cache_b, &nats));
    assert_same_artifacts(&want, &artifacts(&p.target()), "second client");
    let s = stats(&cache_b);
    assert_eq!(built.outcome("mac"), Some(Outcome::Hit), "{}", built.log);
    assert_eq!(
        s["remote_compiles"],
        WORKER_RECORDED.len(),
        "{s}\n{}",
        built.log
    );
    assert_eq!(count(&built.log, "toolchain packed"), 1, "{}", built.log);
    assert_eq!(count(&built.log, "toolchain uploaded"), 0, "{}", built.log);
    let start = std::time::Instant::now();
    while !w.log().contains("shipped toolchain found unpacked") {
        let log = w.log();
        assert!(start.elapsed().as_secs() < 10, "{log}\n{}", built.log);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = w.log();
    for line in log.lines().chain(built.log.lines()) {
        if line.contains("took_ms") {
            eprintln!("{line}");
        }
    }
    assert_eq!(
        count(&log, "shipped toolchain fetched and unpacked"),
        1,
        "{log}"
    );
    assert!(log.contains("shipped toolchain found unpacked"), "{log}");

    // The same client again: the pack comes from its memo, not hashed again.
    p.clean();
    let built = p.build_ok(&shipping_build(&cache_b, &nats));
    assert_eq!(count(&built.log, "toolchain packed"), 0, "{}", built.log);
}

#[test]
fn a_corrupt_toolchain_blob_is_refused_and_the_build_still_succeeds() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let w = rustc_less_worker(&nats.url(), &root.join("w"));
    let want = p.plain_artifacts();

    // Bytes of rustc's size that are not rustc, stored under rustc's digest before any
    // client uploads it: the client sees the blob there and does not upload its own.
    let rustc = real_rustc();
    let real = std::fs::read(&rustc).unwrap();
    let mut evil = real.clone();
    evil[real.len() / 2] ^= 0xff;
    runtime().block_on(async {
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "test", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        res.cas.put(&Digest::of_bytes(&real), &evil).await.unwrap();
    });

    let cache = root.join("cache");
    let built = p.build_ok(&farm_build(&cache, &nats));
    assert_same_artifacts(&want, &artifacts(&p.target()), "after a corrupt blob");
    wait_until(10, "the refusal", || {
        w.log().contains("does not match its digest")
    });
    let log = w.log();
    assert!(log.contains("cannot fetch the shipped toolchain"), "{log}");
    // The refused job compiled here instead.
    let s = stats(&cache);
    assert!(
        s["remote_skipped"]["farm-refused"].as_u64().unwrap_or(0) >= 1,
        "{s}\n{}",
        built.log
    );
}
