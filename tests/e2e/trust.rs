//! Who writes results (issue 16, item 2): the worker that ran a job records it in `jetcc-ac`
//! under a key it computed from the job itself; an untrusted publisher writes no result (the
//! server refuses it, at once); a trusted writer shares its local compiles as before; and a
//! job that lies about an input the client's key does not cover leaves no entry another
//! client hits. Against a real nats-server (with `nats/roles.conf` where roles matter), real
//! workers and the real `jetcc`.

use std::path::Path;
use std::time::{Duration, Instant};

use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, FarmErrorKind, Lifetime};
use jetcc_common::manifest::{ManifestEntry, Source};
use jetcc_common::protocol::job::{JobEvent, JobRequest};
use jetcc_common::protocol::names::{JobId, Nonce};
use jetcc_common::result::{CacheEntry, OutputFile, FORMAT_VERSION};
use jetcc_common::Digest;
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, wait_until, REMOTE_UNITS, WORKER_RECORDED};
use crate::farm_hostile::{real_rustc, real_toolchain, runtime};
use crate::roles::{as_user, password, roles_conf};

fn start_roles(root: &Path) -> (Nats, Worker) {
    let conf = roles_conf().to_string_lossy().into_owned();
    let nats = Nats::start_with(&root.join("nats"), &["-c", &conf]);
    let env = as_user("worker-a");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let worker = Worker::start_with(&nats.url(), &root.join("worker-a"), 2, &env, |_| {});
    (nats, worker)
}

fn with_user(mut build: Build, user: &str) -> Build {
    for (k, v) in as_user(user) {
        build = build.env(&k, &v);
    }
    build
}

/// The invocation digests a client's local cache has manifests for (`mf/ab/<hex>`).
fn local_manifests(cache: &Path) -> Vec<Digest> {
    let mut found = Vec::new();
    walk(&cache.join("mf"), &mut |p| {
        let name = p.file_name().unwrap().to_string_lossy();
        if name.len() == 64 {
            found.push(format!("blake3:{name}").parse().unwrap());
        }
    });
    found
}

/// A trusted writer's local compiles are shared as before; a publisher's forged result is
/// refused by the server within a round trip (not a 5 s timeout), a publisher configured to
/// write anyway trips its write breaker once and builds on; a reader hits only what the
/// writer stored, byte-identical to a plain build.
#[test]
fn a_writer_shares_its_compiles_and_a_publishers_forged_result_is_refused() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let (nats, _worker) = start_roles(&root);

    // The writer compiles everything here (no slot overflows to the farm) and shares it.
    let ci = root.join("ci");
    let local = |cache: &Path| {
        Build::jetcc(cache)
            .env("JETCC_NATS_URL", &nats.url())
            .env("JETCC_DIST_LOCAL_SLOTS", "64")
    };
    let built = p.build_ok(&with_user(local(&ci), "writer"));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let s = stats(&ci);
    assert_eq!(s["remote_compiles"], 0, "{s}");
    assert_eq!(
        s["tiers"]["jetstream"]["writes"], FIXTURE_COLD_WRITES,
        "{s}"
    );
    assert_eq!(
        s["tiers"]["jetstream"]["errors"],
        serde_json::json!({}),
        "{s}"
    );

    // The publisher forges an entry for one of them: no sources (it would match any
    // lookup), an output of its choosing. The server refuses the write, and says so at once.
    let invocation = local_manifests(&ci)[0];
    let evil = b"not what rustc wrote";
    let refused = runtime().block_on(async {
        let mut cfg = FarmConfig::with_url(nats.url());
        cfg.user = Some("publisher".into());
        cfg.password = Some(password("publisher"));
        let farm = Farm::connect(&cfg, "forger", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        // It may upload blobs (job inputs are content-addressed): that is no result.
        res.cas.put(&Digest::of_bytes(evil), evil).await.unwrap();
        let forged = CacheEntry {
            version: FORMAT_VERSION,
            outputs: vec![OutputFile {
                name: "libleaf.rlib".into(),
                digest: Digest::of_bytes(evil),
                size: evil.len() as u64,
                mode: 0o755,
            }],
            dep_info: None,
            stdout: vec![],
            stderr: vec![],
            exit_code: 0,
            compile_ms: 1,
        };
        let found = ManifestEntry {
            sources: vec![],
            env_deps: vec![],
            local_roots: vec![],
            key: Digest::of_bytes(b"forged key"),
            stored_at: u64::MAX,
        };
        let t0 = Instant::now();
        let r = res.put_result(&invocation, found, &forged).await;
        (r, t0.elapsed())
    });
    match refused {
        (Err(e), took) => {
            assert_eq!(e.kind, FarmErrorKind::Permission, "{e}");
            assert!(took < Duration::from_secs(2), "refused after {took:?}");
        }
        (Ok(()), _) => panic!("the server let a publisher write a result"),
    }

    // A reader (its own empty cache) hits every result the writer stored, byte-identical
    // to a plain build: the forgery is nowhere.
    p.clean();
    let reader = root.join("reader");
    let build = Build::jetcc(&reader)
        .env("JETCC_NATS_URL", &nats.url())
        .env("JETCC_JETSTREAM_RW_MODE", "READ_ONLY")
        .env("JETCC_DIST_LOCAL_SLOTS", "64");
    let built = p.build_ok(&with_user(build, "cache-reader"));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "the reader's hits");
    assert_eq!(
        stats(&reader)["tiers"]["jetstream"]["hits"],
        FIXTURE_WARM_HITS,
        "{}",
        stats(&reader)
    );

    // A publisher configured to write anyway builds on: its first refused write trips the
    // tier's write breaker, and no unit waits out a request timeout.
    p.write(
        "leaf/src/lib.rs",
        &format!("{}\npub fn edited() {{}}\n", p.read("leaf/src/lib.rs")),
    );
    let pr = root.join("pr");
    let built = p.build_ok(&with_user(local(&pr), "publisher"));
    assert_eq!(built.outcome("leaf"), Some(Outcome::Miss), "{}", built.log);
    let s = stats(&pr);
    let refusals = s["tiers"]["jetstream"]["errors"]["farm-permission"]
        .as_u64()
        .unwrap_or(0);
    // Two units may try at once (cargo -j2) before the breaker is tripped.
    assert!((1..=2).contains(&refusals), "{s}\n{}", built.log);
    assert!(
        built.log.contains("refused this user's write"),
        "{}",
        built.log
    );
}

/// The positive path: an untrusted publisher's farm build works and writes no result; the
/// worker records what it ran; a read-only client with its own target dir and cache hits
/// those results, byte-identical to the publisher's build (portable paths, as a farm's
/// clients use by default).
#[test]
fn a_publishers_farm_build_is_recorded_by_the_worker_and_a_reader_hits_it() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let (nats, worker) = start_roles(&root);

    let pr = root.join("pr");
    let build = farm_build(&pr, &nats)
        .default_paths()
        .env("JETCC_JETSTREAM_RW_MODE", "READ_ONLY");
    let built = p.build_ok(&with_user(build, "publisher"));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let s = stats(&pr);
    assert_eq!(
        s["remote_compiles"],
        REMOTE_UNITS.len(),
        "{s}\n{}",
        worker.log()
    );
    assert_eq!(s["tiers"]["jetstream"]["writes"], 0, "{s}");
    assert_eq!(
        s["tiers"]["jetstream"]["errors"],
        serde_json::json!({}),
        "{s}"
    );
    let jobs = REMOTE_UNITS.len() + FIXTURE_C_COMPILES;
    wait_until(10, "the worker's jobs", || worker.jobs_done() == jobs);
    // All but the proc macro's link, which the worker does not vouch for.
    let log = worker.log();
    assert_eq!(
        log.matches("result not recorded: it links").count(),
        REMOTE_UNITS.len() - WORKER_RECORDED.len(),
        "{log}"
    );
    assert_eq!(
        log.matches("result not recorded").count(),
        REMOTE_UNITS.len() - WORKER_RECORDED.len(),
        "{log}"
    );

    let target = root.join("reader-target");
    let reader = root.join("reader");
    let build = Build::jetcc(&reader)
        .default_paths()
        .env("JETCC_NATS_URL", &nats.url())
        .env("JETCC_JETSTREAM_RW_MODE", "READ_ONLY")
        .env("JETCC_DIST_LOCAL_SLOTS", "64")
        .env("CARGO_TARGET_DIR", &target.to_string_lossy());
    let built = p.build_ok(&with_user(build, "cache-reader"));
    for unit in WORKER_RECORDED {
        assert_eq!(
            built.outcome(unit),
            Some(Outcome::Hit),
            "{unit}\n{}",
            built.log
        );
    }
    let s = stats(&reader);
    assert_eq!(
        s["tiers"]["jetstream"]["hits"],
        WORKER_RECORDED.len(),
        "{s}"
    );
    assert_eq!(
        s["tiers"]["jetstream"]["errors"],
        serde_json::json!({}),
        "{s}"
    );
    assert_same_artifacts(
        &artifacts(&p.target()),
        &artifacts(&target),
        "hits of worker-recorded results",
    );
}

fn extern_base(dir: &Path) -> Vec<String> {
    vec![
        "--extern".into(),
        format!("base={}/libbase-1.rmeta", dir.display()),
    ]
}

/// The byte runs of `a` that are also in `b` but not in `other`: a crate's hash, as the
/// crate and a dependent record it.
fn shared_run(a: &[u8], b: &[u8], other: &[u8]) -> Vec<u8> {
    use std::collections::HashSet;
    let windows = |x: &[u8]| x.windows(16).map(<[u8]>::to_vec).collect::<HashSet<_>>();
    let (in_b, in_other) = (windows(b), windows(other));
    let at: Vec<usize> = (0..a.len().saturating_sub(15))
        .filter(|&i| in_b.contains(&a[i..i + 16]) && !in_other.contains(&a[i..i + 16]))
        .collect();
    let (first, last) = (at[0], *at.last().unwrap());
    assert_eq!(last - first + 1, at.len(), "one run");
    a[first..last + 16].to_vec()
}

/// Gives the forged base in `forged` the honest base's crate hash (so a dependent built on
/// the honest one loads it): what a forger does to slip other code under a known hash.
fn forge_crate_hash(deps: &Path, forged: &Path) {
    let read = |d: &Path, n: &str| std::fs::read(d.join(n)).unwrap();
    let honest = read(deps, "libbase-1.rmeta");
    let other = read(forged, "libbase-1.rmeta");
    let honest_hash = shared_run(&honest, &read(deps, "libmiddle-2.rmeta"), &other);
    let forged_hash = shared_run(&other, &read(forged, "libmiddle-2.rmeta"), &honest);
    assert_eq!(honest_hash.len(), forged_hash.len());
    for name in ["libbase-1.rmeta", "libbase-1.rlib"] {
        let bytes = read(forged, name);
        let at = bytes
            .windows(forged_hash.len())
            .position(|w| w == forged_hash)
            .unwrap_or_else(|| panic!("the crate hash is in {name}"));
        let mut patched = bytes.clone();
        patched[at..at + forged_hash.len()].copy_from_slice(&honest_hash);
        std::fs::write(forged.join(name), patched).unwrap();
    }
}

/// Compiles `name` from `src/<name>.rs` (cwd `root`) with plain rustc into `out`, as cargo
/// would a library; `extra` are more arguments.
fn rustc_lib(root: &Path, name: &str, n: u8, out: &Path, extra: &[String]) {
    std::fs::create_dir_all(out).unwrap();
    let status = std::process::Command::new(real_rustc())
        .current_dir(root)
        .args(lib_args(name, n, out))
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "rustc {name}");
}

fn lib_args(name: &str, n: u8, out: &Path) -> Vec<String> {
    [
        "--crate-name",
        name,
        "--edition=2021",
        &format!("src/{name}.rs"),
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        &format!("metadata={n}"),
        "-C",
        &format!("extra-filename=-{n}"),
        "--out-dir",
        &out.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A client that lies about a crate its compile reads only transitively (in its `-L
/// dependency=` dir, named by no `--extern`, so not in the client's invocation digest):
/// the worker runs it and records it, but with that crate as a source the lookup checks,
/// so an honest client never hits it and gets the honest bytes.
#[test]
fn a_job_that_lies_about_a_transitive_crate_leaves_no_entry_another_client_hits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start(&root.join("nats"));
    let worker = Worker::start(&nats.url(), &root.join("worker"), 1);
    // base <- middle <- top: top reads base only through middle.
    std::fs::create_dir_all(root.join("src")).unwrap();
    let write = |name: &str, text: &str| std::fs::write(root.join(name), text).unwrap();
    write(
        "src/base.rs",
        "#[inline]\npub fn mix<T: Into<u64>>(x: T) -> u64 {\n    let v: u64 = x.into();\n    v.wrapping_mul(31).rotate_left(7) ^ 0x5a\n}\n",
    );
    write(
        "src/middle.rs",
        "#[inline]\npub fn twice(x: u32) -> u64 {\n    base::mix(x) + base::mix(x + 1)\n}\n",
    );
    write(
        "src/top.rs",
        "pub fn top(x: u32) -> u64 {\n    middle::twice(x) * 3\n}\n",
    );
    let deps = root.join("deps");
    let forged_dir = root.join("forged");
    // Another base at the same path (other code inside), and a middle built on it: where
    // its crate hash is, which the forger replaces with the honest one.
    let honest_base = std::fs::read_to_string(root.join("src/base.rs")).unwrap();
    write("src/base.rs", &honest_base.replace("0x5a", "0x77"));
    rustc_lib(root, "base", 1, &forged_dir, &[]);
    rustc_lib(root, "middle", 2, &forged_dir, &extern_base(&forged_dir));
    write("src/base.rs", &honest_base);
    rustc_lib(root, "base", 1, &deps, &[]);
    rustc_lib(root, "middle", 2, &deps, &extern_base(&deps));
    forge_crate_hash(&deps, &forged_dir);
    let top = |out: &Path| {
        let mut args = lib_args("top", 3, out);
        args.extend([
            "-L".into(),
            format!("dependency={}", deps.display()),
            "--extern".into(),
            format!("middle={}/libmiddle-2.rmeta", deps.display()),
        ]);
        args
    };
    let plain = root.join("out-plain");
    std::fs::create_dir_all(&plain).unwrap();
    let status = std::process::Command::new(real_rustc())
        .current_dir(root)
        .args(top(&plain))
        .status()
        .unwrap();
    assert!(status.success());
    let through_jetcc = |cache: &Path, out: &Path, extra: &[(&str, &str)]| {
        std::fs::create_dir_all(out).unwrap();
        let out = jetcc(cache)
            .current_dir(root)
            .env("JETCC_NATS_URL", nats.url())
            .env("JETCC_LOG", "debug")
            .envs(extra.iter().copied())
            .arg(real_rustc())
            .args(top(out))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let bytes = |out: &Path| {
        ["libtop-3.rlib", "libtop-3.rmeta"].map(|n| std::fs::read(out.join(n)).unwrap())
    };

    // An honest client A compiles top on the farm; the job it publishes is captured.
    let rt = runtime();
    let watcher = rt.block_on(async { async_nats::connect(nats.url()).await.unwrap() });
    let mut jobs = rt.block_on(async {
        let sub = watcher.subscribe("jetcc.jobs.>").await.unwrap();
        watcher.flush().await.unwrap();
        sub
    });
    let a = root.join("cache-a");
    through_jetcc(&a, &root.join("out-a"), &[("JETCC_DIST_LOCAL_SLOTS", "0")]);
    assert_eq!(stats(&a)["remote_compiles"], 1, "{}", worker.log());
    assert_eq!(bytes(&root.join("out-a")), bytes(&plain));
    use futures_util::StreamExt;
    let honest = rt.block_on(async {
        let msg = tokio::time::timeout(Duration::from_secs(5), jobs.next())
            .await
            .unwrap()
            .unwrap();
        JobRequest::decode(&msg.payload).unwrap()
    });
    wait_until(10, "the honest job", || worker.jobs_done() == 1);
    let invocation = local_manifests(&a);
    assert_eq!(invocation.len(), 1, "{invocation:?}");
    let invocation = invocation[0];

    // The liar sends the same job with the other base: every other input, argument and
    // env var as the honest one, so the client's own key would be the same.
    let mut lying = honest.clone();
    let mut swapped = Vec::new();
    for input in &mut lying.inputs {
        let name = Path::new(&input.path)
            .file_name()
            .unwrap()
            .to_string_lossy();
        if name.starts_with("libbase-1.") {
            let forged = std::fs::read(forged_dir.join(&*name)).unwrap();
            assert_ne!(Digest::of_bytes(&forged), input.digest, "{name}");
            input.digest = Digest::of_bytes(&forged);
            input.size = forged.len() as u64;
            swapped.push((input.path.clone(), forged));
        }
    }
    assert!(
        !swapped.is_empty(),
        "base is among the inputs: {:?}",
        honest.inputs
    );
    let (tc, host) = real_toolchain(&root.join("memo"));
    assert_eq!(tc, honest.toolchain);
    let (lie_exit, lie_outputs) = rt.block_on(async {
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "liar", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        for (_, bytes) in &swapped {
            res.cas.put(&Digest::of_bytes(bytes), bytes).await.unwrap();
        }
        let id = JobId::from_bytes([7; 16]);
        lying.job_id = id.to_string();
        lying.reply_subject = farm
            .names
            .reply_subject(&farm.user, &Nonce::from_bytes([7; 16]))
            .unwrap();
        let mut sub = res.submit(&lying, &host, &lying.dedup_key()).await.unwrap();
        loop {
            match sub.next(Duration::from_secs(30)).await.unwrap() {
                Some(JobEvent::Done {
                    exit_code, outputs, ..
                }) => return (exit_code, outputs),
                Some(JobEvent::Refused { reason }) => panic!("refused: {reason}"),
                Some(_) => {}
                None => panic!("no answer to the lying job"),
            }
        }
    });
    assert_eq!(lie_exit, 0, "the forged crate compiles: {}", worker.log());
    // The forgery worked: the worker made other bytes than an honest compile.
    let plain_rlib = Digest::of_bytes(&std::fs::read(plain.join("libtop-3.rlib")).unwrap());
    assert!(
        lie_outputs
            .iter()
            .any(|(n, d)| n == "libtop-3.rlib" && *d != plain_rlib),
        "{lie_outputs:?}"
    );
    wait_until(10, "the lying job", || worker.jobs_done() == 2);

    // The worker recorded both, the lie with the forged crate as a condition.
    let manifest = rt.block_on(async {
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "t", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        res.get_manifest(&invocation).await.unwrap()
    });
    let forged_digests: Vec<Digest> = swapped.iter().map(|(_, b)| Digest::of_bytes(b)).collect();
    let names_forged = |e: &ManifestEntry| {
        e.sources
            .iter()
            .any(|s: &Source| forged_digests.contains(&s.digest))
    };
    assert!(
        manifest.entries.iter().any(names_forged),
        "the lying job's result is recorded under the forged crate: {manifest:?}\n{}",
        worker.log()
    );
    assert!(
        manifest.entries.iter().any(|e| !names_forged(e)),
        "the honest result is recorded: {manifest:?}"
    );

    // An honest client B with an empty cache hits the honest result, never the lie.
    let b = root.join("cache-b");
    let out_b = root.join("out-b");
    through_jetcc(
        &b,
        &out_b,
        &[
            ("JETCC_DIST_LOCAL_SLOTS", "64"),
            ("JETCC_JETSTREAM_RW_MODE", "READ_ONLY"),
        ],
    );
    let s = stats(&b);
    assert_eq!(s["tiers"]["jetstream"]["hits"], 1, "{s}");
    assert_eq!(bytes(&out_b), bytes(&plain), "B got the liar's bytes");
}
