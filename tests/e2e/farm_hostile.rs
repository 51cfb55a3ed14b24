//! What the farm does with bad input: hostile or malformed jobs, wrong credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, Lifetime};
use jetcc_common::protocol::job::{InputFile, JobEvent, JobRequest, INLINE_BYTES};
use jetcc_common::protocol::names::{JobId, Nonce};
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::{toolchain, Digest};
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

/// The real rustc behind the rustup proxy, as a worker resolves it.
pub fn real_rustc() -> std::path::PathBuf {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).join("bin/rustc")
}

/// The identity and host triple of the real rustc (what a job must name), memoized in `memo`.
pub fn real_toolchain(memo: &std::path::Path) -> (Digest, String) {
    let rustc = real_rustc();
    let tc = toolchain::identity(&rustc, memo).unwrap();
    (tc, toolchain::host_triple(&rustc, memo).unwrap())
}

/// A runtime for talking to the farm directly, as a client would.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn hostile_and_malformed_jobs_are_refused_and_the_worker_keeps_serving() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let mut w = Worker::start(&nats.url(), &root.join("w"), 1);
    let (tc, host) = real_toolchain(&root.join("memo"));
    runtime().block_on(async {
        let farm = Farm::connect(&FarmConfig::with_url(nats.url()), "test", Lifetime::Wrapper)
            .await
            .unwrap();
        let res = farm.open_resources().await.unwrap();
        let subject = farm.names.jobs_subject(&host, &tc).unwrap();
        let good = b"pub fn f() {}\n";
        let job = |n: u8| {
            let id = JobId::from_bytes([n; 16]);
            JobRequest {
                version: PROTOCOL_VERSION,
                job_id: id.to_string(),
                reply_subject: farm
                    .names
                    .reply_subject(&farm.user, &Nonce::from_bytes([n; 16]))
                    .unwrap(),
                crate_name: "hostile".into(),
                deadline_unix_ms: (SystemTime::now() + Duration::from_secs(60))
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
                toolchain: tc,
                args: vec!["--crate-name".into(), "hostile".into(), "/x/lib.rs".into()],
                env: vec![],
                cwd: "/x".into(),
                inputs: vec![InputFile {
                    path: "/x/lib.rs".into(),
                    digest: Digest::of_bytes(good),
                    size: good.len() as u64,
                    mode: 0o644,
                }],
                system_inputs: vec![],
                dirs: vec![],
                out_dir: "/x/out".into(),
                outputs: vec!["libhostile.rlib".into()],
                key_paths: Default::default(),
                shipped: None,
                inline: vec![],
            }
        };
        // Each case: a job, and what the refusal must name.
        let mut cases: Vec<(JobRequest, &str)> = Vec::new();
        let mut j = job(1);
        j.inputs[0].path = "/x/../../root/.ssh/id_rsa".into();
        cases.push((j, "inputs"));
        let mut j = job(2);
        j.outputs = vec!["../../../etc/cron.d/evil".into()];
        cases.push((j, "outputs"));
        let mut j = job(3);
        j.out_dir = "relative/out".into();
        cases.push((j, "out_dir"));
        // A system file this worker has with other bytes (a C compile's header from another
        // libc), and one outside the system dirs: refused, the worker's file untouched.
        let mut j = job(5);
        j.system_inputs = vec![InputFile {
            path: "/etc/passwd".into(),
            digest: Digest::of_bytes(b"root::0:0::/:/bin/sh\n"),
            size: 20,
            mode: 0o644,
        }];
        cases.push((j, "system_inputs"));
        let mut j = job(6);
        j.system_inputs = vec![InputFile {
            path: std::fs::canonicalize("/bin/sh")
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            digest: Digest::of_bytes(b"not the worker's sh"),
            size: 19,
            mode: 0o755,
        }];
        cases.push((j, "differs from the client's"));
        // A blob whose bytes do not match the digest it is stored under.
        let evil = b"evil";
        res.cas.put(&Digest::of_bytes(good), evil).await.unwrap();
        cases.push((job(4), "does not match"));
        // Bytes sent along that are not the input's (whose digest names a file in no CAS):
        // never written for it; the job is refused. Too many bytes along: refused unread.
        let other = b"pub fn other() {}\n";
        let mut j = job(7);
        j.inputs[0].digest = Digest::of_bytes(other);
        j.inline = vec![Bytes::from_static(evil)];
        cases.push((j, "is not in the CAS"));
        let mut j = job(8);
        j.inline = vec![Bytes::from(vec![b' '; INLINE_BYTES + 1])];
        cases.push((j, "inline"));
        for (n, (j, want)) in cases.into_iter().enumerate() {
            let mut sub = res
                .submit(&j, &host, &Digest::of_bytes(&[n as u8]))
                .await
                .unwrap();
            let mut got = Vec::new();
            while let Some(event) = sub.next(Duration::from_secs(10)).await.unwrap() {
                let done = matches!(event, JobEvent::Refused { .. } | JobEvent::Done { .. });
                got.push(event);
                if done {
                    break;
                }
            }
            match got.last() {
                Some(JobEvent::Refused { reason }) => {
                    assert!(reason.contains(want), "{want}: {reason}")
                }
                other => panic!("{want}: expected a refusal, got {other:?} after {got:?}"),
            }
        }
        // The input's own bytes sent along are taken as they are, the CAS's (forged, above)
        // not even read: the job compiles.
        let mut j = job(10);
        j.args = [
            "--crate-name",
            "hostile",
            "--crate-type",
            "lib",
            "--emit=link",
        ]
        .into_iter()
        .chain(["--out-dir", "/x/out", "/x/lib.rs"])
        .map(String::from)
        .collect();
        j.inline = vec![Bytes::from_static(good)];
        let mut sub = res
            .submit(&j, &host, &Digest::of_bytes(b"inline"))
            .await
            .unwrap();
        let last = loop {
            match sub.next(Duration::from_secs(30)).await.unwrap() {
                Some(e @ (JobEvent::Refused { .. } | JobEvent::Done { .. })) => break e,
                Some(_) => continue,
                None => panic!("no answer to a job with its input inline"),
            }
        };
        assert!(
            matches!(last, JobEvent::Done { exit_code: 0, .. }),
            "{last:?}"
        );
        // Garbage, and a job whose reply subject points elsewhere: dropped, no reply.
        let js = nats.raw_jetstream().await;
        js.publish(subject.clone(), "\u{1}garbage".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut j = job(9);
        j.reply_subject = "jetcc.jobs.x86_64-unknown-linux-gnu.hijack".into();
        js.publish(subject, j.encode().into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let log = || w.log();
    let start = std::time::Instant::now();
    while !(log().contains("dropping a malformed job")
        && log().contains("dropping a job with reply subject"))
    {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(w.is_running());

    // ...and it still compiles real jobs.
    let cache = root.join("cache");
    p.build_ok(&crate::farm::farm_build(&cache, &nats));
    assert_eq!(
        stats(&cache)["remote_compiles"],
        crate::farm::REMOTE_UNITS.len()
    );
}

#[test]
fn wrong_or_missing_credentials_are_clear_errors_and_builds_go_on() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start_with(&root.join("nats"), &["-js", "--auth", "s3cret"]);

    let mut bad = Worker::spawn(
        &nats.url(),
        &root.join("bad"),
        1,
        &[("JETCC_NATS_TOKEN", "wrong")],
        |_| {},
    );
    let status = bad
        .wait_exit(Duration::from_secs(15))
        .expect("the worker exits");
    assert!(!status.success());
    assert!(
        bad.log().contains("refused our credentials"),
        "{}",
        bad.log()
    );

    let _w = Worker::start_with(
        &nats.url(),
        &root.join("w"),
        1,
        &[("JETCC_NATS_TOKEN", "s3cret")],
        |_| {},
    );
    // A client without the token builds locally and says why in its log.
    let cache = root.join("cache-a");
    let built = p.build_ok(&Build::jetcc(&cache).env("JETCC_NATS_URL", &nats.url()));
    assert!(
        built.log.contains("refused our credentials"),
        "{}",
        built.log
    );
    assert!(built.log.contains("JETCC_NATS_TOKEN"), "{}", built.log);
    assert_eq!(stats(&cache)["remote_compiles"], 0);

    p.clean();
    let cache = root.join("cache-b");
    p.build_ok(&crate::farm::farm_build(&cache, &nats).env("JETCC_NATS_TOKEN", "s3cret"));
    assert_eq!(
        stats(&cache)["remote_compiles"],
        crate::farm::REMOTE_UNITS.len()
    );
}
