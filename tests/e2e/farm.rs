//! The compile farm, end to end: a real nats-server, real `jetcc-worker`s, real cargo.

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

/// The fixture's units that go to the farm: libraries (no linker needed).
const REMOTE_UNITS: &[&str] = &["leaf", "mid", "util", "corelib"];
/// Units that link (proc-macro, build script, binary): always compiled locally.
const LOCAL_UNITS: &[&str] = &["mac", "build_script_build", "app"];

fn farm_build(cache: &std::path::Path, nats: &Nats) -> Build {
    Build::jetcc(cache).env("JETCC_NATS_URL", &nats.url())
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
    assert_eq!(w1.jobs_done() + w2.jobs_done(), REMOTE_UNITS.len());
    // Warnings come back from the farm as rustc wrote them.
    assert!(built.stderr().contains("unused_variable"), "{}", built.stderr());

    // Another client (its own empty local cache, the same checkout path, as a CI agent's
    // fresh workspace) hits what the first one compiled on the farm.
    p.clean();
    let cache_b = root.join("cache-b");
    let built = p.build_ok(&farm_build(&cache_b, &nats));
    built.assert_each(REMOTE_UNITS, Outcome::Hit);
    built.assert_each(LOCAL_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "shared hits");
    let s = stats(&cache_b);
    assert_eq!(s["shared_hits"], REMOTE_UNITS.len(), "{s}");
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert!(
        built.stderr().contains("unused_variable"),
        "warnings replayed from the shared cache: {}",
        built.stderr()
    );
}
