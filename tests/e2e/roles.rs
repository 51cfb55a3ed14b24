//! The least-privilege roles of `nats/roles.conf`, against a real nats-server started with
//! that very file: each role does its job through the real binaries (a worker-a that serves,
//! a writer's build on the farm, a read-only laptop that hits, a monitor that reads), and
//! is refused what it must not do, seen as the server's "Permissions Violation" error.
//! What an untrusted publisher may and may not write is `trust.rs`'s.

use std::path::PathBuf;
use std::time::Duration;

use jetcc_e2e::servers::{free_port, monitor_status, Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, REMOTE_UNITS, WORKER_RECORDED};
use crate::farm_hostile::runtime;

pub(crate) fn roles_conf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../nats/roles.conf")
}

/// The example password `nats/roles.conf` gives `user`, in the comment above its bcrypt hash
/// (`# example password for <user>: …`).
pub(crate) fn password(user: &str) -> String {
    let conf = std::fs::read_to_string(roles_conf()).unwrap();
    let comment = format!("# example password for {user}: ");
    conf.lines()
        .find_map(|l| l.trim().strip_prefix(&comment))
        .unwrap_or_else(|| panic!("no example password for {user} in roles.conf"))
        .trim()
        .to_owned()
}

pub(crate) fn as_user(user: &str) -> [(String, String); 2] {
    [
        ("JETCC_NATS_USER".into(), user.into()),
        ("JETCC_NATS_PASSWORD".into(), password(user)),
    ]
}

/// A raw connection as `user` (its inboxes under `_INBOX.<user>`, as jetcc names them), and
/// the server's errors it is told of.
pub(crate) async fn connect_as(
    nats: &Nats,
    user: &str,
) -> (
    async_nats::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password(user))
        .custom_inbox_prefix(format!("_INBOX.{user}"))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(s)) = e {
                    let _ = tx.send(s);
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in: {e}"));
    (client, rx)
}

/// Whether the server's errors bring `want` within 2 s.
async fn told(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(error)) = tokio::time::timeout_at(deadline, errors.recv()).await {
        if error.contains(want) {
            return true;
        }
    }
    false
}

/// Whether the server refuses `user` a publish on `subject` (its `-ERR 'Permissions
/// Violation…'`, which async-nats hands to the event callback; the publish itself returns Ok).
pub(crate) fn refused(nats: &Nats, user: &str, subject: &str) -> bool {
    runtime().block_on(async {
        let (client, mut errors) = connect_as(nats, user).await;
        client
            .publish(subject.to_owned(), "x".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        let want = format!("Permissions Violation for Publish to \"{subject}\"");
        told(&mut errors, &want).await
    })
}

/// Whether the server refuses `user` a subscription to `subject`.
pub(crate) fn refused_subscription(nats: &Nats, user: &str, subject: &str) -> bool {
    runtime().block_on(async {
        let (client, mut errors) = connect_as(nats, user).await;
        let _sub = client.subscribe(subject.to_owned()).await.unwrap();
        client.flush().await.unwrap();
        let want = format!("Permissions Violation for Subscription to \"{subject}\"");
        told(&mut errors, &want).await
    })
}

#[test]
fn each_role_does_its_job_and_is_refused_the_rest() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let want = p.plain_artifacts();
    let conf = roles_conf().to_string_lossy().into_owned();
    let monitor_port = free_port().to_string();
    let nats = Nats::start_with(&root.join("nats"), &["-c", &conf, "-m", &monitor_port]);

    // worker-a creates the stream and buckets and serves (writing its own heartbeat).
    let worker_env = as_user("worker-a");
    let env: Vec<(&str, &str)> = worker_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let worker = Worker::start_with(&nats.url(), &root.join("worker-a"), 2, &env, |_| {});

    // The writer (trusted CI) builds on the farm and fills the cache: the worker records
    // the rustc jobs it ran, the writer what it compiled itself (and the C job's result).
    let ci = root.join("ci");
    let mut build = farm_build(&ci, &nats);
    for (k, v) in as_user("writer") {
        build = build.env(&k, &v);
    }
    let built = p.build_ok(&build);
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "writer's farm build");
    let s = stats(&ci);
    let remote = s["remote_compiles"].as_u64().unwrap();
    assert_eq!(remote, REMOTE_UNITS.len() as u64, "{s}\n{}", worker.log());
    // The worker recorded its rustc jobs' results; the client wrote the rest (its proc
    // macro's link among them).
    assert_eq!(
        s["tiers"]["jetstream"]["writes"],
        FIXTURE_COLD_WRITES - WORKER_RECORDED.len(),
        "{s}"
    );
    let jobs = remote as usize + FIXTURE_C_COMPILES;
    crate::farm::wait_until(10, "the worker's jobs", || worker.jobs_done() == jobs);
    assert_eq!(
        s["tiers"]["jetstream"]["errors"],
        serde_json::json!({}),
        "{s}"
    );

    // The read-only laptop reads every result, with no local slot overflowing to the farm.
    p.clean();
    let laptop = root.join("laptop");
    let mut build = Build::jetcc(&laptop)
        .env("JETCC_NATS_URL", &nats.url())
        .env("JETCC_JETSTREAM_RW_MODE", "READ_ONLY")
        .env("JETCC_DIST_LOCAL_SLOTS", "64");
    for (k, v) in as_user("cache-reader") {
        build = build.env(&k, &v);
    }
    let built = p.build_ok(&build);
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "read-only hits");
    let s = stats(&laptop);
    assert_eq!(s["tiers"]["jetstream"]["hits"], FIXTURE_WARM_HITS, "{s}");
    assert_eq!(
        s["tiers"]["jetstream"]["errors"],
        serde_json::json!({}),
        "{s}"
    );

    // Writing as the reader fails, and the log says which permission it lacked.
    let out = jetcc(&root.join("check"))
        .arg("--check")
        .env("JETCC_NATS_URL", nats.url())
        .env("JETCC_LOG", "warn")
        .envs(as_user("cache-reader"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused this user: Permissions Violation for Publish to"),
        "{stderr}"
    );

    // The monitor reads the farm's state.
    let status = monitor_status(&nats.url(), &as_user("monitor"));
    assert_eq!(status["totals"]["workers"], 1, "{status}");
    assert_eq!(status["totals"]["slots"], 2, "{status}");

    // And what each must not do. Each refusal is paired with what the same user may do, so
    // a server that refused everything (or nothing) fails here.
    let jobs = "jetcc.jobs.x86_64-unknown-linux-gnu.0123456789abcdef";
    let pull = "$JS.API.CONSUMER.MSG.NEXT.JETCC_JOBS.workers-0123456789abcdef";
    assert!(refused(&nats, "publisher", pull), "a publisher pulled jobs");
    assert!(
        !refused(&nats, "publisher", jobs),
        "a publisher may publish jobs"
    );
    assert!(
        refused(&nats, "worker-a", "$KV.jetcc-workers.w.worker-b.forged"),
        "worker-a wrote worker-b's heartbeat"
    );
    assert!(
        !refused(&nats, "worker-a", "$KV.jetcc-workers.w.worker-a.probe"),
        "worker-a may write its own"
    );
    for write in [
        "$KV.jetcc-ac.e.forged",
        "$O.jetcc-cas.C.forged",
        "$O.jetcc-cas.M.forged",
    ] {
        assert!(
            refused(&nats, "cache-reader", write),
            "the read-only client wrote {write}"
        );
        assert!(
            !refused(&nats, "writer", write),
            "a writer may write {write}"
        );
    }
    // Results come from workers and writers only; a publisher uploads job inputs.
    assert!(
        refused(&nats, "publisher", "$KV.jetcc-ac.e.forged"),
        "a publisher wrote a result"
    );
    assert!(
        !refused(&nats, "publisher", "$O.jetcc-cas.C.forged"),
        "a publisher may upload job inputs"
    );
    assert!(
        !refused(&nats, "worker-a", "$KV.jetcc-ac.e.probe"),
        "a worker may record results"
    );
    assert!(
        refused(&nats, "monitor", jobs),
        "the monitor published a job"
    );
    assert!(
        refused(&nats, "monitor", "$KV.jetcc-ac.e.forged"),
        "the monitor wrote the cache"
    );
    assert!(
        !refused(&nats, "monitor", "$JS.API.STREAM.INFO.JETCC_JOBS"),
        "the monitor may read stream info"
    );
}
