//! Replies bound to their client, against a real nats-server started with `nats/roles.conf`
//! and a second client user added as the file says to (its line copied, the user renamed):
//! nobody reads another user's inboxes or job events; a job sent with a victim's reply
//! subject, and events forged on it by a user allowed to publish there, do not reach the
//! victim's build; nobody but the admin purges, and the sealed streams refuse even it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, Lifetime};
use jetcc_common::protocol::job::{InputFile, JobEvent, JobReply, JobRequest};
use jetcc_common::protocol::names::JobId;
use jetcc_common::protocol::PROTOCOL_VERSION;
use jetcc_common::Digest;
use jetcc_e2e::servers::{free_port, Nats, Worker};
use jetcc_e2e::*;

use crate::farm::farm_build;
use crate::farm_hostile::{real_toolchain, runtime};
use crate::roles::{connect_as, password, refused, refused_subscription, roles_conf};

/// The second client user: `publisher`'s line of roles.conf, renamed.
const VICTIM: &str = "victim";

/// roles.conf with a second client user, [`VICTIM`], added as its comment says (copy the
/// publisher's line, rename the user in it); the victim logs in with the publisher's
/// example password.
fn roles_conf_with_victim(dir: &Path) -> PathBuf {
    let conf = std::fs::read_to_string(roles_conf()).unwrap();
    let line = conf
        .lines()
        .find(|l| l.trim_start().starts_with("{ user: publisher,"))
        .expect("the publisher's line in roles.conf");
    let copy = line.replace("publisher", VICTIM);
    assert_ne!(copy, line);
    let conf = conf.replacen(line, &format!("{line}\n{copy}"), 1);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("roles-with-victim.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

fn start_server(root: &Path) -> Nats {
    let conf = roles_conf_with_victim(root);
    let monitor_port = free_port().to_string();
    Nats::start_with(
        &root.join("nats"),
        &["-c", &conf.to_string_lossy(), "-m", &monitor_port],
    )
}

fn start_worker_a(nats: &Nats, dir: &Path) -> Worker {
    let pass = password("worker-a");
    let env = [
        ("JETCC_NATS_USER", "worker-a"),
        ("JETCC_NATS_PASSWORD", pass.as_str()),
    ];
    Worker::start_with(&nats.url(), dir, 2, &env, |_| {})
}

/// A farm connection as `user` through jetcc's own transport.
async fn farm_as(nats: &Nats, user: &str, pass: &str) -> Farm {
    let mut cfg = FarmConfig::with_url(nats.url());
    cfg.user = Some(user.into());
    cfg.password = Some(pass.into());
    Farm::connect(&cfg, "test", Lifetime::Wrapper)
        .await
        .unwrap_or_else(|e| panic!("{user}: {e}"))
}

#[test]
fn nobody_reads_anothers_replies_and_only_the_admin_purges() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let nats = start_server(root);
    // The worker creates the stream and buckets, and seals them.
    let worker = start_worker_a(&nats, &root.join("worker-a"));

    // Each user reads only its own inboxes and its own jobs' events; each refusal paired
    // with what the same user may do.
    for theirs in [
        "jetcc.reply.victim.>",
        "jetcc.reply.>",
        "_INBOX.victim.>",
        "_INBOX.worker-a.>",
        "_INBOX.>",
        "jetcc.answer.worker-a.>",
    ] {
        assert!(
            refused_subscription(&nats, "publisher", theirs),
            "the publisher subscribed to {theirs}"
        );
    }
    for own in ["jetcc.reply.publisher.>", "_INBOX.publisher.>"] {
        assert!(
            !refused_subscription(&nats, "publisher", own),
            "the publisher may read {own}"
        );
    }
    assert!(refused_subscription(&nats, "worker-a", "jetcc.reply.>"));
    assert!(refused_subscription(&nats, "worker-a", "_INBOX.worker-b.>"));
    assert!(!refused_subscription(
        &nats,
        "worker-a",
        "jetcc.answer.worker-a.>"
    ));
    assert!(refused_subscription(&nats, "monitor", "_INBOX.>"));
    assert!(refused_subscription(
        &nats,
        "cache-reader",
        "_INBOX.publisher.>"
    ));
    // A client answers a worker on an answer subject, never into an inbox, and sends no
    // job events.
    assert!(refused(&nats, "publisher", "_INBOX.worker-a.x.y"));
    assert!(refused(&nats, "publisher", "jetcc.reply.victim.x"));
    assert!(!refused(&nats, "publisher", "jetcc.answer.worker-a.x"));

    // Purges: refused to the publisher by the server, the admin's works on the CAS; the
    // sealed jobs stream and AC bucket refuse it even to the admin, and take no rollup.
    let purge_cas = "$JS.API.STREAM.PURGE.OBJ_jetcc-cas";
    assert!(
        refused(&nats, "publisher", purge_cas),
        "the publisher purged"
    );
    assert!(refused(&nats, "cache-reader", purge_cas));
    assert!(refused(&nats, "monitor", purge_cas));
    runtime().block_on(async {
        let publisher = farm_as(&nats, "publisher", &password("publisher")).await;
        let res = publisher.open_resources().await.unwrap();
        let blob = b"a blob the admin purges";
        res.cas.put(&Digest::of_bytes(blob), blob).await.unwrap();
        // jetcc's own delete needs no purge: the publisher may drop a blob.
        let gone = b"a blob its writer deletes";
        res.cas.put(&Digest::of_bytes(gone), gone).await.unwrap();
        res.cas.delete(&Digest::of_bytes(gone)).await.unwrap();
        assert!(!res.cas.contains(&Digest::of_bytes(gone)).await.unwrap());
        // ...and write it again over its deleted metadata.
        assert!(res.cas.put(&Digest::of_bytes(gone), gone).await.unwrap());
        assert_eq!(res.cas.get(&Digest::of_bytes(gone)).await.unwrap(), gone);

        // A rollup header from an AC writer (a trusted `writer`: a publisher may not write
        // results at all) is refused by the stream.
        let (client, _) = connect_as(&nats, "writer").await;
        let js = async_nats::jetstream::new(client);
        js.publish("$KV.jetcc-ac.e.kept", "kept".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Rollup", "all");
        let rollup = js
            .publish_with_headers("$KV.jetcc-ac.e.rollup", headers, "x".into())
            .await
            .unwrap()
            .await;
        let err = rollup.expect_err("a rollup on the AC bucket was taken");
        assert!(err.to_string().contains("rollup"), "{err}");

        let (admin, _) = connect_as(&nats, "admin").await;
        let js = async_nats::jetstream::new(admin);
        let mut cas = js.get_stream("OBJ_jetcc-cas").await.unwrap();
        assert!(cas.info().await.unwrap().state.messages > 0);
        cas.purge().await.expect("the admin purges the CAS");
        assert_eq!(cas.info().await.unwrap().state.messages, 0);
        for sealed in ["KV_jetcc-ac", "JETCC_JOBS", "KV_jetcc-workers"] {
            let stream = js.get_stream(sealed).await.unwrap();
            let config = &stream.cached_info().config;
            assert!(
                config.deny_purge && config.deny_delete && !config.allow_rollup,
                "{sealed}: {config:?}"
            );
            let err = stream
                .purge()
                .await
                .expect_err(&format!("{sealed} was purged"));
            assert!(err.to_string().contains("purge"), "{sealed}: {err}");
        }
        let ac = js.get_key_value("jetcc-ac").await.unwrap();
        assert_eq!(
            ac.get("e.kept").await.unwrap().as_deref(),
            Some(&b"kept"[..])
        );
    });
    assert!(
        worker
            .log()
            .contains("sealed: no deletes, purges or rollups"),
        "{}",
        worker.log()
    );
}

#[test]
fn a_victims_build_ignores_misdirected_jobs_and_forged_events() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let nats = start_server(&root);
    let worker = start_worker_a(&nats, &root.join("worker-a"));
    let (tc, host) = real_toolchain(&root.join("memo"));

    // What the attackers want the victim to link, already in the CAS.
    let evil = b"not what rustc wrote";
    let evil_digest = Digest::of_bytes(evil);
    runtime().block_on(async {
        let publisher = farm_as(&nats, "publisher", &password("publisher")).await;
        let res = publisher.open_resources().await.unwrap();
        res.cas.put(&evil_digest, evil).await.unwrap();
    });

    // The attackers learn the victim's reply subjects as they come (here from the admin,
    // who may read them: the publisher may not, as the test above shows). On a job's first
    // Started, the publisher sends a job of its own with that reply subject; on each output
    // the victim's worker announces, worker-b (which may publish on reply subjects) forges
    // events: from another worker with the job's id, and from the job's worker with another
    // job's id, each pointing at the evil blob.
    let forged = Arc::new(AtomicUsize::new(0));
    let misdirected: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attack = {
        let (url, forged, misdirected, stop) = (
            nats.url(),
            forged.clone(),
            misdirected.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            runtime().block_on(attack(
                url,
                tc,
                host,
                evil_digest,
                forged,
                misdirected,
                stop,
            ))
        })
    };

    let cache = root.join("victim");
    let build = farm_build(&cache, &nats)
        .env("JETCC_NATS_USER", VICTIM)
        .env("JETCC_NATS_PASSWORD", &password("publisher"));
    let built = p.build_ok(&build);
    stop.store(true, Ordering::Relaxed);
    attack.join().unwrap();
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "the victim's farm build");

    let s = stats(&cache);
    assert!(s["remote_compiles"].as_u64().unwrap() > 0, "{s}");
    assert!(
        forged.load(Ordering::Relaxed) > 0,
        "no output was announced to forge on"
    );
    assert!(
        s["remote_events_dropped"].as_u64().unwrap() > 0,
        "no forged event reached the victim to be dropped: {s}"
    );
    // The misdirected job's Started went to the victim, who did not answer it: dropped
    // unrun, never compiled.
    let misdirected = misdirected.lock().unwrap().clone();
    assert!(!misdirected.is_empty(), "no job was misdirected");
    let start = std::time::Instant::now();
    for id in &misdirected {
        while !worker
            .log()
            .lines()
            .any(|l| l.contains(id.as_str()) && l.contains("no longer waits: dropped unrun"))
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "job {id}:\n{}",
                worker.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The attackers of [`a_victims_build_ignores_misdirected_jobs_and_forged_events`], until
/// `stop`.
async fn attack(
    url: String,
    tc: Digest,
    host: String,
    evil: Digest,
    forged: Arc<AtomicUsize>,
    misdirected: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let login = |user: &str| {
        async_nats::ConnectOptions::with_user_and_password(user.into(), password(user))
            .custom_inbox_prefix(format!("_INBOX.{user}"))
            .connect(url.clone())
    };
    let admin = login("admin").await.unwrap();
    let forger = login("worker-b").await.unwrap();
    let mut cfg = FarmConfig::with_url(url.clone());
    cfg.user = Some("publisher".into());
    cfg.password = Some(password("publisher"));
    let publisher = Farm::connect(&cfg, "attacker", Lifetime::Wrapper)
        .await
        .unwrap();
    let res = publisher.open_resources().await.unwrap();
    let mut replies = admin
        .subscribe(format!("jetcc.reply.{VICTIM}.>"))
        .await
        .unwrap();
    admin.flush().await.unwrap();
    let mut started = std::collections::HashSet::new();
    let mut n = 0u8;
    while !stop.load(Ordering::Relaxed) {
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(100), replies.next()).await
        else {
            continue;
        };
        let Ok(reply) = JobReply::decode(&msg.payload) else {
            continue;
        };
        let subject = msg.subject.to_string();
        match &reply.event {
            JobEvent::Started if n < 2 && started.insert(subject.clone()) => {
                n += 1;
                let job = hostile_job(n, &subject, tc);
                misdirected.lock().unwrap().push(job.job_id.clone());
                res.submit(&job, &host, &Digest::of_bytes(&[n]))
                    .await
                    .unwrap();
            }
            JobEvent::Artifact { name, line, .. } => {
                let other_job = JobId::from_bytes([0xee; 16]).to_string();
                let artifact = JobEvent::Artifact {
                    name: name.clone(),
                    digest: evil,
                    line: line.clone(),
                    inline: None,
                };
                let done = JobEvent::Done {
                    exit_code: 0,
                    stdout: vec![],
                    outputs: vec![(name.clone(), evil)],
                    compile_ms: 1,
                    inline: vec![],
                };
                for (job_id, worker) in [
                    (reply.job_id.clone(), "worker-b.forged".to_owned()),
                    (other_job, reply.worker.clone()),
                ] {
                    for event in [&artifact, &done] {
                        let bytes = JobReply::encode_parts(&job_id, &worker, event);
                        forger.publish(subject.clone(), bytes.into()).await.unwrap();
                    }
                }
                forger.flush().await.unwrap();
                forged.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The publisher's own job, sent with the victim's reply subject.
fn hostile_job(n: u8, reply_subject: &str, tc: Digest) -> JobRequest {
    let src = b"pub fn f() -> u32 { 666 }\n";
    JobRequest {
        version: PROTOCOL_VERSION,
        job_id: JobId::from_bytes([n; 16]).to_string(),
        reply_subject: reply_subject.to_owned(),
        crate_name: "misdirected".into(),
        deadline_unix_ms: (SystemTime::now() + Duration::from_secs(60))
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        toolchain: tc,
        args: vec![
            "--crate-name".into(),
            "misdirected".into(),
            "--crate-type".into(),
            "lib".into(),
            "/x/lib.rs".into(),
        ],
        env: vec![],
        cwd: "/x".into(),
        inputs: vec![InputFile {
            path: "/x/lib.rs".into(),
            digest: Digest::of_bytes(src),
            size: src.len() as u64,
            mode: 0o644,
        }],
        key_paths: Default::default(),
        shipped: None,
        inline: vec![],
        system_inputs: vec![],
        dirs: vec![],
        out_dir: "/x/out".into(),
        outputs: vec!["libmisdirected.rlib".into()],
    }
}
