//! The farm's shared cache (KV `jetcc-ac` and the CAS in JetStream): what one client compiles,
//! locally or on the farm, is every other client's hit.

use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{slow_build_in_background, wait_until};

#[test]
fn ci_fills_the_jetstream_tier_and_a_read_only_laptop_elsewhere_hits_it() {
    let ci_checkout = Project::fixture("fixture");
    let root = ci_checkout.dir.parent().unwrap().to_path_buf();
    // A NATS server used as the team's cache alone: no worker has ever run, so every compile
    // below is local, and the first client sets the buckets up.
    let nats = Nats::start(&root.join("nats"));
    let client = |cache: &std::path::Path, checkout: &std::path::Path| {
        Build::jetcc(cache)
            .env("JETCC_NATS_URL", &nats.url())
            .env("JETCC_BASE_DIRS", &checkout.to_string_lossy())
    };

    // CI: its own empty cache and checkout; compiles everything and writes it to the tier.
    let ci = root.join("cache-ci");
    let built = ci_checkout.build_ok(&client(&ci, &ci_checkout.dir));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let s = stats(&ci);
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert_eq!(
        s["tiers"]["jetstream"]["writes"], FIXTURE_COLD_WRITES,
        "{s}"
    );
    let want = artifacts(&ci_checkout.target());

    // A laptop: another empty cache, a checkout at another path, reading only.
    let laptop_checkout = ci_checkout.sibling("fixture", "laptop");
    let laptop = root.join("cache-laptop");
    let read_only = |cache: &std::path::Path| {
        client(cache, &laptop_checkout).env("JETCC_JETSTREAM_RW_MODE", "READ_ONLY")
    };
    let built = build_in(&laptop_checkout, &read_only(&laptop));
    assert!(built.ok(), "{}", built.stderr());
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(
        &want,
        &artifacts(&laptop_checkout.join("target")),
        "hits from the shared tier",
    );
    let s = stats(&laptop);
    assert_eq!(s["tiers"]["jetstream"]["hits"], FIXTURE_WARM_HITS, "{s}");

    // The laptop's own edit compiles locally and is not written to the shared tier: a third
    // client with the same edit misses it there too.
    let leaf = laptop_checkout.join("leaf/src/lib.rs");
    let src = std::fs::read_to_string(&leaf).unwrap() + "pub fn laptop_only() {}\n";
    std::fs::write(&leaf, src).unwrap();
    let built = build_in(&laptop_checkout, &read_only(&laptop));
    assert!(built.ok(), "{}", built.stderr());
    assert_eq!(
        built.outcome("leaf"),
        Some(Outcome::Miss),
        "{:?}",
        built.outcomes()
    );
    assert_eq!(stats(&laptop)["tiers"]["jetstream"]["writes"], 0);
    std::fs::remove_dir_all(laptop_checkout.join("target")).unwrap();
    let built = build_in(
        &laptop_checkout,
        &client(&root.join("cache-third"), &laptop_checkout),
    );
    assert!(built.ok(), "{}", built.stderr());
    assert_eq!(
        built.outcome("leaf"),
        Some(Outcome::Miss),
        "{:?}",
        built.outcomes()
    );
    assert_eq!(
        built.outcome("mac"),
        Some(Outcome::Hit),
        "{:?}",
        built.outcomes()
    );
}

/// A build with a farm configured whose compiles all run here (no worker): no wrapper
/// writes its result to the shared tier itself, each files it for the detached uploader and
/// returns to cargo; the uploader, left alone after cargo ended (no `--wait-shares`), writes
/// every one, and another machine then hits them all.
#[test]
fn local_compiles_are_shared_by_the_uploader_after_cargo_goes_on() {
    let checkout = Project::fixture("fixture");
    let root = checkout.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let client = |cache: &std::path::Path| {
        Build::jetcc(cache)
            .env("JETCC_NATS_URL", &nats.url())
            .env("JETCC_BASE_DIRS", &checkout.dir.to_string_lossy())
    };
    let first = root.join("cache-first");
    let built = checkout.build_ok(&client(&first).leave_shares());
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let filed = built.log.matches("share filed for the uploader").count();
    assert_eq!(filed, FIXTURE_COLD_WRITES, "{}", built.log);
    wait_until(60, "the uploader to write every share", || {
        let s = stats(&first);
        s["pending_shares"] == 0 && s["tiers"]["jetstream"]["writes"] == FIXTURE_COLD_WRITES
    });
    let s = stats(&first);
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert!(
        s["tiers"]["jetstream"]["errors"]
            .as_object()
            .is_none_or(|e| e.is_empty()),
        "{s}"
    );
    let want = artifacts(&checkout.target());

    // Another machine: its own cache, the same checkout path after a clean.
    checkout.clean();
    let second = root.join("cache-second");
    let built = checkout.build_ok(&client(&second));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&checkout.target()), "shared hits");
}

/// 200 builds reading the shared cache at once: every lookup and blob read succeeds, and none
/// opens a consumer (nats-server allows 1000 per stream; the object store's own `get` opens
/// one per read, jetcc's direct gets none).
#[test]
fn two_hundred_concurrent_readers_open_no_consumers() {
    use jetcc_common::config::FarmConfig;
    use jetcc_common::farm::{Farm, Lifetime};
    use jetcc_common::Digest;

    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start(&tmp.path().join("nats"));
    let _w = Worker::start(&nats.url(), &tmp.path().join("w"), 1);
    let small = b"a small blob".to_vec();
    // Over one chunk, so a read takes several direct gets.
    let large: Vec<u8> = (0..3 * jetcc_common::farm::resources::CAS_CHUNK + 17)
        .map(|i| (i % 251) as u8)
        .collect();
    let digests = [Digest::of_bytes(&small), Digest::of_bytes(&large)];
    crate::farm_hostile::runtime().block_on(async {
        let cfg = FarmConfig::with_url(nats.url());
        let farm = Farm::connect(&cfg, "writer", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        res.cas.put(&digests[0], &small).await.unwrap();
        res.cas.put(&digests[1], &large).await.unwrap();
        let readers = (0..200).map(|i| {
            let cfg = cfg.clone();
            async move {
                // A connection of its own, as 200 wrapper processes would have.
                let farm = Farm::connect(&cfg, "reader", Lifetime::Wrapper).await?;
                let res = farm.open_resources().await?;
                res.get_manifest(&Digest::of_bytes(&[i as u8])).await?;
                let mut sizes = Vec::new();
                for d in &digests {
                    sizes.push(res.cas.get(d).await?.len());
                }
                Ok::<_, jetcc_common::farm::FarmError>(sizes)
            }
        });
        let results = futures_util::future::join_all(readers).await;
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
            .collect();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            &failed[..1]
        );
        for r in &results {
            assert_eq!(r.as_ref().unwrap(), &vec![small.len(), large.len()]);
        }
        let js = nats.raw_jetstream().await;
        for name in [
            farm.names.cas_stream(),
            format!("KV_{}", farm.names.ac_bucket()),
        ] {
            let mut stream = js.get_stream(&name).await.unwrap();
            let info = stream.info().await.unwrap();
            assert_eq!(info.state.consumer_count, 0, "{name}: {info:?}");
        }
    });
}

/// A blob's metadata lists its chunks' sequences, read all at once: a list naming another
/// blob's chunks gives an error, never those bytes; a blob stored without a list (by the
/// object store's own `put`, or an older jetcc) is still read chunk by chunk.
#[test]
fn a_blobs_chunk_list_is_checked_and_a_blob_without_one_still_reads() {
    use jetcc_common::config::FarmConfig;
    use jetcc_common::farm::{Farm, FarmErrorKind, Lifetime};
    use jetcc_common::Digest;

    let tmp = tempfile::tempdir().unwrap();
    let nats = Nats::start(&tmp.path().join("nats"));
    let _w = Worker::start(&nats.url(), &tmp.path().join("w"), 1);
    let chunk = jetcc_common::farm::resources::CAS_CHUNK;
    let blob = |seed: usize| -> Vec<u8> {
        (0..2 * chunk + 5)
            .map(|i| ((i + seed) % 251) as u8)
            .collect()
    };
    let (ours, theirs, plain) = (blob(0), blob(1), blob(2));
    crate::farm_hostile::runtime().block_on(async {
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "t", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        res.cas.put(&Digest::of_bytes(&ours), &ours).await.unwrap();
        res.cas
            .put(&Digest::of_bytes(&theirs), &theirs)
            .await
            .unwrap();
        let js = nats.raw_jetstream().await;
        let store = js.get_object_store(farm.names.cas_bucket()).await.unwrap();
        let name = |b: &[u8]| format!("b3-{}", Digest::of_bytes(b).hex());
        // Stored without a chunk list: read the slow way, whole.
        store
            .put(name(&plain).as_str(), &mut &plain[..])
            .await
            .unwrap();
        assert_eq!(res.cas.get(&Digest::of_bytes(&plain)).await.unwrap(), plain);
        // Our metadata, its chunk list swapped for theirs (same sizes, so only the list lies).
        let mut info = store.info(name(&ours)).await.unwrap();
        let list = store.info(name(&theirs)).await.unwrap().metadata["jetcc-chunks"].clone();
        info.metadata.insert("jetcc-chunks".into(), list);
        let subject = farm.names.cas_meta_subject(&name(&ours));
        js.publish(subject, serde_json::to_vec(&info).unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
        let err = res.cas.get(&Digest::of_bytes(&ours)).await.unwrap_err();
        assert_eq!(err.kind, FarmErrorKind::Corrupt, "{err}");
        assert_eq!(
            res.cas.get(&Digest::of_bytes(&theirs)).await.unwrap(),
            theirs
        );
    });
}

/// On a three-node cluster the tier's stream and buckets get three replicas: a node killed
/// in the middle of a farm build loses no entry, the build succeeds, and a fresh client
/// still hits everything.
#[test]
fn on_a_three_node_cluster_a_farm_build_and_the_tier_survive_a_node() {
    use jetcc_e2e::servers::free_port;
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_urls: Vec<String> = routes
        .iter()
        .map(|r| format!("nats://127.0.0.1:{r}"))
        .collect();
    let mut nodes: Vec<Nats> = (0..3)
        .map(|i| {
            let cluster = format!("nats://127.0.0.1:{}", routes[i]);
            let others = route_urls.join(",");
            let name = format!("n{i}");
            Nats::start_with(
                &root.join(&name),
                &[
                    "-js",
                    "--cluster_name",
                    "jetcc",
                    "--server_name",
                    &name,
                    "--cluster",
                    &cluster,
                    "--routes",
                    &others,
                ],
            )
        })
        .collect();
    let urls = nodes.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    // JetStream needs its meta leader before anything can be created: `--check` creates the
    // stream and buckets once the cluster can.
    let start = std::time::Instant::now();
    loop {
        let out = jetcc(&root.join("cache-check"))
            .arg("--check")
            .env("JETCC_NATS_URL", &urls)
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "the cluster never took writes: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let rt = jetcc_e2e_runtime();
    let replicas = rt.block_on(async {
        let client = async_nats::connect(nodes[0].url()).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut r = Vec::new();
        for stream in ["KV_jetcc-ac", "OBJ_jetcc-cas", "JETCC_JOBS"] {
            let mut s = js.get_stream(stream).await.unwrap();
            r.push((stream, s.info().await.unwrap().config.num_replicas));
        }
        r
    });
    assert!(replicas.iter().all(|(_, n)| *n == 3), "{replicas:?}");

    let client = |cache: &str| Build::jetcc(&root.join(cache)).env("JETCC_NATS_URL", &urls);
    p.build_ok(&client("cache-a"));
    let want = artifacts(&p.target());
    assert_eq!(
        stats(&root.join("cache-a"))["tiers"]["jetstream"]["writes"],
        FIXTURE_COLD_WRITES
    );

    // Two workers on the cluster, and a slow compile on the farm: node 0 dies under it.
    let workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&urls, &root.join(format!("w{i}")), 1))
        .collect();
    let farm = Build::jetcc(&root.join("cache-slow"))
        .env("JETCC_NATS_URL", &urls)
        .env("JETCC_DIST_LOCAL_SLOTS", "0");
    let (slow, slow_want, building) = slow_build_in_background(&root, farm);
    wait_until(60, "the slow job to start on a worker", || {
        workers.iter().any(|w| w.log().contains("job started"))
    });
    nodes[0].stop();
    let built = building.join().unwrap();
    assert!(built.ok(), "{}", built.stderr());
    assert_same_artifacts(
        &slow_want,
        &artifacts(&slow.join("target")),
        "a node died mid-build",
    );

    // What was written before survives on the other two nodes.
    p.clean();
    let built = p.build_ok(&client("cache-b"));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "one node down");
}

fn jetcc_e2e_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
