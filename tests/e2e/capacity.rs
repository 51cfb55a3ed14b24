//! Capacity without outage and transport security, against a real nats-server and real
//! workers: a CAS written far past its size keeps taking writes while the workers' GC evicts
//! the oldest blobs whole; result entries whose blobs went are misses, never failures; the
//! job queue and the result bucket have byte limits (a full queue sends compiles home), and
//! a worker brings streams created with other limits up to date; TLS with the CA that
//! `nats/make-certs.sh` makes, client certificates included, and a clear word to a client
//! without it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::jetstream::stream::DiscardPolicy;
use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, FarmErrorKind, Lifetime, Resources};
use jetcc_common::Digest;
use jetcc_e2e::servers::{free_port, Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, wait_until};
use crate::farm_hostile::runtime;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `len` bytes that differ for each `seed` (xorshift: incompressible enough).
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The stream `name`'s bytes, byte limit and discard policy, as the server has them.
fn stream_state(nats: &Nats, name: &str) -> (u64, i64, DiscardPolicy) {
    runtime().block_on(async {
        let js = nats.raw_jetstream().await;
        let mut stream = js.get_stream(name).await.expect("the stream exists");
        let info = stream.info().await.expect("stream info");
        (info.state.bytes, info.config.max_bytes, info.config.discard)
    })
}

async fn open(url: &str) -> Resources {
    let farm = Farm::connect(&FarmConfig::with_url(url.into()), "test", Lifetime::Wrapper)
        .await
        .expect("connect");
    farm.open_resources()
        .await
        .expect("the worker set the farm up")
}

/// A worker whose `[cache.jetstream]` comes from these env vars, collecting every second.
fn worker_with_limits(nats: &Nats, dir: &Path, limits: &[(&str, &str)]) -> Worker {
    let mut env = vec![("JETCC_JETSTREAM_GC_INTERVAL_SECS", "1")];
    env.extend_from_slice(limits);
    Worker::start_with(&nats.url(), dir, 1, &env, |_| {})
}

#[test]
fn a_full_cas_keeps_taking_writes_while_the_gc_evicts_the_oldest_blobs_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    const MAX: u64 = 2 << 20;
    let w = worker_with_limits(
        &nats,
        &root.join("w"),
        &[("JETCC_JETSTREAM_MAX_SIZE", "2M")],
    );
    let (_, max_bytes, discard) = stream_state(&nats, "OBJ_jetcc-cas");
    assert_eq!(
        (max_bytes, discard),
        (MAX as i64, DiscardPolicy::Old),
        "the CAS is created with its limit, dropping the oldest when a burst outruns the GC"
    );

    // 4.8 MB into a 2 MB CAS, through the put every writer uses; a little slower than a
    // loop could go, as builds write, so the GC's rounds come between writes.
    const N: u64 = 48;
    const LEN: usize = 100 << 10;
    let digests: Vec<Digest> = (0..N).map(|i| Digest::of_bytes(&blob(i, LEN))).collect();
    runtime().block_on(async {
        let res = open(&nats.url()).await;
        for (i, digest) in digests.iter().enumerate() {
            let uploaded = res.cas.put(digest, &blob(i as u64, LEN)).await;
            assert!(
                matches!(uploaded, Ok(true)),
                "write {i} of {N} into a full CAS: {:?}",
                uploaded.map_err(|e| e.to_string())
            );
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    // The GC brings it below the high-water mark (90%): it evicted, the stream's own
    // discard alone would leave it full.
    wait_until(30, "the GC to bring the CAS under 90%", || {
        stream_state(&nats, "OBJ_jetcc-cas").0 * 10 <= MAX * 9
    });
    assert!(w.log().contains("cas gc: evicted"), "{}", w.log());

    runtime().block_on(async {
        let res = open(&nats.url()).await;
        // The oldest went, and a reader finds them missing: a miss, not an error.
        for (i, digest) in digests.iter().enumerate().take(10) {
            assert!(!res.cas.contains(digest).await.unwrap(), "blob {i} evicted");
            let got = res.cas.get(digest).await.map(|b| b.len());
            assert!(
                matches!(&got, Err(e) if e.kind == FarmErrorKind::NotFound),
                "blob {i}: {:?}",
                got.map_err(|e| e.to_string())
            );
        }
        // The newest are there, whole and verified.
        for (i, digest) in digests.iter().enumerate().skip(N as usize - 5) {
            let bytes = res.cas.get(digest).await.unwrap_or_else(|e| {
                panic!("blob {i} of the newest: {e}");
            });
            assert_eq!(bytes, blob(i as u64, LEN), "blob {i}");
        }
        // What the CAS still names is whole: the GC removes blobs, never parts of one.
        let mut kept = 0;
        for (i, digest) in digests.iter().enumerate() {
            if res.cas.contains(digest).await.unwrap() {
                let got = res.cas.get(digest).await;
                assert!(got.is_ok(), "blob {i} is listed but broken");
                kept += 1;
            }
        }
        assert!(kept >= 5 && kept < N as usize / 2, "kept {kept} of {N}");
    });
}

/// The safety net under the GC: with no collector running, the CAS's stream drops its oldest
/// messages instead of refusing writes (async-nats' own object stores refuse every write
/// once full). Chunk by chunk, so the blob at the boundary loses part of itself: it reads as
/// a miss, never as other bytes.
#[test]
fn without_a_collector_a_full_cas_still_takes_writes_and_a_cut_blob_is_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let _w = Worker::start_with(
        &nats.url(),
        &root.join("w"),
        1,
        &[
            ("JETCC_JETSTREAM_MAX_SIZE", "2M"),
            ("JETCC_JETSTREAM_GC_INTERVAL_SECS", "600"),
        ],
        |_| {},
    );
    // Two chunks each (512 KiB + the rest): about 2.9 fit.
    const N: u64 = 12;
    const LEN: usize = 700 << 10;
    runtime().block_on(async {
        let res = open(&nats.url()).await;
        let (mut whole, mut cut, mut gone) = (0, 0, 0);
        let digests: Vec<Digest> = (0..N).map(|i| Digest::of_bytes(&blob(i, LEN))).collect();
        for (i, digest) in digests.iter().enumerate() {
            let put = res.cas.put(digest, &blob(i as u64, LEN)).await;
            assert!(matches!(put, Ok(true)), "write {i}: {:?}", put.map_err(|e| e.to_string()));
        }
        for (i, digest) in digests.iter().enumerate() {
            let listed = res.cas.contains(digest).await.unwrap();
            match res.cas.get(digest).await {
                Ok(bytes) => {
                    assert_eq!(bytes, blob(i as u64, LEN), "blob {i}");
                    whole += 1;
                }
                Err(e) if e.kind == FarmErrorKind::NotFound => {
                    if listed {
                        cut += 1
                    } else {
                        gone += 1
                    }
                }
                Err(e) => panic!("blob {i}: {e}"),
            }
        }
        eprintln!("discard-old alone, {N} blobs of {LEN} B into 2 MiB: {whole} whole, {cut} cut, {gone} gone");
        assert!(whole >= 2, "the newest are whole: {whole}");
        assert!(cut <= 1, "only the blob at the boundary is cut: {cut}");
        assert_eq!(whole + cut + gone, N as usize);
        // The newest is always there.
        assert!(res.cas.get(&digests[N as usize - 1]).await.is_ok());
    });
}

#[test]
fn the_gc_runs_one_at_a_time_and_clears_what_failed_uploads_left() {
    use jetcc_common::farm::gc::{GcOutcome, GcPolicy};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    // A worker sets the farm up with a 1 MB CAS and then collects once a minute: the
    // rounds below are this test's.
    let _w = Worker::start_with(
        &nats.url(),
        &root.join("w"),
        1,
        &[
            ("JETCC_JETSTREAM_MAX_SIZE", "1M"),
            ("JETCC_JETSTREAM_GC_INTERVAL_SECS", "600"),
        ],
        |_| {},
    );
    runtime().block_on(async {
        let res = open(&nats.url()).await;
        // Chunks of an upload that failed half-way: no metadata names them.
        let js = nats.raw_jetstream().await;
        for _ in 0..3 {
            js.publish(
                "$O.jetcc-cas.C.orphanedupload0000000001",
                blob(7, 1000).into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        for i in 0..9u64 {
            let bytes = blob(100 + i, 100 << 10);
            res.cas
                .put(&Digest::of_bytes(&bytes), &bytes)
                .await
                .unwrap();
        }
        let policy = GcPolicy {
            high_water: 50,
            low_water: 30,
            orphan_grace: Duration::ZERO,
        };
        // Another collector holds the lock: this round skips.
        let kv = js.get_key_value("jetcc-workers").await.unwrap();
        kv.create("gc.lock", "other-collector".into())
            .await
            .unwrap();
        let busy = res.collect_garbage(&policy, "test").await.unwrap();
        assert_eq!(
            busy,
            GcOutcome::Busy {
                holder: "other-collector".into()
            }
        );
        // Released as a collector does: a delete marker (the bucket is sealed against purges).
        kv.delete("gc.lock").await.unwrap();
        let GcOutcome::Collected(report) = res.collect_garbage(&policy, "test").await.unwrap()
        else {
            panic!("above the high-water mark, the round collects");
        };
        assert_eq!(report.orphans, 1, "{report:?}");
        assert!(report.evicted >= 3, "{report:?}");
        assert!(
            report.used_after * 100 <= report.max_bytes * 30 + (100 << 10) * 100,
            "down to about the low-water mark: {report:?}"
        );
        // The lock is free again, and a round below the mark does nothing.
        let again = res.collect_garbage(&policy, "test").await.unwrap();
        assert!(
            matches!(again, GcOutcome::BelowHighWater { .. }),
            "{again:?}"
        );
        assert!(kv.get("gc.lock").await.unwrap().is_none());
        let stream = js.get_stream("OBJ_jetcc-cas").await.unwrap();
        let orphan = stream
            .direct_get_last_for_subject("$O.jetcc-cas.C.orphanedupload0000000001")
            .await;
        assert!(orphan.is_err(), "the orphaned chunks are gone");
    });
}

#[test]
fn entries_whose_blobs_were_evicted_are_misses_and_the_build_compiles_them() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let w = worker_with_limits(
        &nats,
        &root.join("w"),
        &[("JETCC_JETSTREAM_MAX_SIZE", "48M")],
    );
    let want = p.plain_artifacts();
    let built = p.build_ok(&farm_build(&root.join("cache-a"), &nats));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let (ac_bytes, _, _) = stream_state(&nats, "KV_jetcc-ac");
    assert!(ac_bytes > 0, "the build shared its results");

    // Newer blobs push every one of the build's out (oldest first); the entries stay.
    runtime().block_on(async {
        let res = open(&nats.url()).await;
        for i in 0..80u64 {
            let bytes = blob(1000 + i, 1 << 20);
            res.cas
                .put(&Digest::of_bytes(&bytes), &bytes)
                .await
                .unwrap();
        }
    });
    wait_until(30, "the GC", || w.log().contains("cas gc: evicted"));
    assert_eq!(stream_state(&nats, "KV_jetcc-ac").0, ac_bytes);

    // Another client finds every entry and none of its blobs: misses, compiled again,
    // the same artifacts, and no error counted against the tier.
    p.clean();
    let cache_b = root.join("cache-b");
    let built = p.build_ok(&farm_build(&cache_b, &nats));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "after eviction");
    let s = stats(&cache_b);
    assert_eq!(s["tiers"]["jetstream"]["hits"], 0, "{s}");
    assert_eq!(
        s["tiers"]["jetstream"]["errors"],
        serde_json::json!({}),
        "{s}"
    );
    assert!(
        built.log.contains("outputs were evicted"),
        "the misses say why: {}",
        built.log
    );
}

#[test]
fn a_full_job_queue_sends_compiles_home_and_a_worker_updates_old_limits() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let mut w = worker_with_limits(
        &nats,
        &root.join("w1"),
        &[
            ("JETCC_JETSTREAM_JOBS_MAX_SIZE", "512"),
            ("JETCC_JETSTREAM_AC_MAX_SIZE", "8M"),
        ],
    );
    let (_, jobs_max, jobs_discard) = stream_state(&nats, "JETCC_JOBS");
    assert_eq!(
        (jobs_max, jobs_discard),
        (512, DiscardPolicy::New),
        "a full queue refuses new jobs rather than drop queued ones"
    );
    let (_, ac_max, ac_discard) = stream_state(&nats, "KV_jetcc-ac");
    assert_eq!(
        (ac_max, ac_discard),
        (8 << 20, DiscardPolicy::Old),
        "a full result bucket forgets its oldest entries"
    );

    // No job fits: each is refused, and compiled here; the build succeeds.
    let want = p.plain_artifacts();
    let cache = root.join("cache-a");
    let built = p.build_ok(&farm_build(&cache, &nats));
    assert_same_artifacts(&want, &artifacts(&p.target()), "queue full");
    let s = stats(&cache);
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert!(
        s["remote_skipped"][FarmErrorKind::Full.name()].as_u64() >= Some(1),
        "{s}"
    );
    assert!(
        built.log.contains("jobs_max_size"),
        "the log says what to raise: {}",
        built.log
    );
    assert_eq!(w.jobs_done(), 0);

    // A worker started with other limits brings the streams up to them.
    w.terminate();
    let w2 = worker_with_limits(
        &nats,
        &root.join("w2"),
        &[
            ("JETCC_JETSTREAM_JOBS_MAX_SIZE", "16M"),
            ("JETCC_JETSTREAM_AC_MAX_SIZE", "32M"),
        ],
    );
    assert_eq!(stream_state(&nats, "JETCC_JOBS").1, 16 << 20);
    assert_eq!(stream_state(&nats, "KV_jetcc-ac").1, 32 << 20);
    assert!(
        w2.log().contains("updated the stream's limits"),
        "{}",
        w2.log()
    );
    // ... and jobs go to the farm again (an edited leaf misses, and its dependents).
    let src = p.read("leaf/src/lib.rs") + "\npub fn capacity_edit() -> u32 { 7 }\n";
    p.write("leaf/src/lib.rs", &src);
    let cache = root.join("cache-b");
    let built = p
        .build(&farm_build(&cache, &nats).env("JETCC_DIST_BREAKER_SECS", "1"))
        .output;
    assert!(built.status.success());
    assert!(
        stats(&cache)["remote_compiles"].as_u64() > Some(0),
        "{}",
        stats(&cache)
    );
}

/// `nats/make-certs.sh` into `dir/certs`: a CA, the server's certificate, and client
/// certificates for `clients`.
fn make_certs(dir: &Path, clients: &[&str]) -> PathBuf {
    let certs = dir.join("certs");
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("nats/make-certs.sh"));
    for c in clients {
        cmd.args(["--client", c]);
    }
    let out = cmd.arg(&certs).output().expect("run make-certs.sh");
    assert!(
        out.status.success(),
        "make-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    certs
}

/// A server started with `nats/<conf>` from `dir` (whose `certs/` it reads), JetStream on.
fn tls_server(dir: &Path, conf: &str) -> Nats {
    let conf = repo().join("nats").join(conf);
    let monitor_port = free_port().to_string();
    Nats::start_in(
        &dir.join("nats"),
        Some(dir),
        &["-c", conf.to_str().unwrap(), "-js", "-m", &monitor_port],
    )
}

/// `jetcc --dist-status` against `nats` with this env: (success, stderr).
fn dist_status_with(nats: &Nats, env: &[(&str, &Path)]) -> (bool, String) {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = jetcc(tmp.path());
    cmd.arg("--dist-status").env("JETCC_NATS_URL", nats.url());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run jetcc");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_with_the_generated_ca_builds_on_the_farm_and_a_plain_client_is_told_what_to_set() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let certs = make_certs(&root, &[]);
    let ca = certs.join("ca.pem");
    let nats = tls_server(&root, "tls.conf");
    let ca_env = ca.to_str().unwrap();
    let w = Worker::start_with(
        &nats.url(),
        &root.join("w"),
        1,
        &[("JETCC_NATS_TLS_CA", ca_env)],
        |_| {},
    );
    let want = p.plain_artifacts();
    let cache = root.join("cache-a");
    let built = p.build_ok(&farm_build(&cache, &nats).env("JETCC_NATS_TLS_CA", ca_env));
    assert_same_artifacts(&want, &artifacts(&p.target()), "over TLS");
    let s = stats(&cache);
    assert!(
        s["remote_compiles"].as_u64() > Some(0),
        "{s}\n{}",
        built.log
    );
    assert!(w.jobs_done() > 0);

    // A client without the CA: refused, with what to set; its build compiles here.
    let (ok, stderr) = dist_status_with(&nats, &[]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("tls_ca") && stderr.contains("JETCC_NATS_TLS_CA"),
        "{stderr}"
    );
    p.clean();
    let cache = root.join("cache-plain");
    p.build_ok(&farm_build(&cache, &nats));
    assert_same_artifacts(&want, &artifacts(&p.target()), "plain client");
    assert_eq!(stats(&cache)["remote_compiles"], 0);
    let (ok, _) = dist_status_with(&nats, &[("JETCC_NATS_TLS_CA", &ca)]);
    assert!(ok);
}

#[test]
fn a_server_that_verifies_clients_takes_only_certified_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let certs = make_certs(root, &["ci", "worker"]);
    let ca = certs.join("ca.pem");
    let nats = tls_server(root, "tls-verify.conf");
    let (cert, key) = (
        certs.join("client-worker.pem"),
        certs.join("client-worker-key.pem"),
    );
    let _w = Worker::start_with(
        &nats.url(),
        &root.join("w"),
        1,
        &[
            ("JETCC_NATS_TLS_CA", ca.to_str().unwrap()),
            ("JETCC_NATS_TLS_CERT", cert.to_str().unwrap()),
            ("JETCC_NATS_TLS_KEY", key.to_str().unwrap()),
        ],
        |_| {},
    );
    let (ok, stderr) = dist_status_with(&nats, &[("JETCC_NATS_TLS_CA", &ca)]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("tls_cert") && stderr.contains("JETCC_NATS_TLS_KEY"),
        "{stderr}"
    );
    let (ok, stderr) = dist_status_with(
        &nats,
        &[
            ("JETCC_NATS_TLS_CA", &ca),
            ("JETCC_NATS_TLS_CERT", &certs.join("client-ci.pem")),
            ("JETCC_NATS_TLS_KEY", &certs.join("client-ci-key.pem")),
        ],
    );
    assert!(ok, "{stderr}");
}
