//! The client's credentials stay its own: a farm job carries only the env its compile may
//! read (an allowlist), and a NATS URL's `user:password@` never appears in jetcc's output,
//! errors or logs.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use jetcc_common::protocol::job::JobRequest;
use jetcc_e2e::servers::{Nats, Worker};
use jetcc_e2e::*;

use crate::farm::{farm_build, wait_until};
use crate::farm_hostile::runtime;

/// Values no job, output or log line may hold.
const SECRETS: &[(&str, &str)] = &[
    ("AWS_SECRET_ACCESS_KEY", "aws-SECRET-value-1"),
    ("GITHUB_TOKEN", "gh-SECRET-value-2"),
    // Keyed (a `CARGO_` var) yet a credential by its name.
    ("CARGO_DEPLOY_PASSWORD", "cargo-SECRET-value-3"),
];

#[test]
fn a_client_secret_never_reaches_a_farm_job() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let nats = Nats::start(&root.join("nats"));
    let _w = Worker::start(&nats.url(), &root.join("w"), 2);
    // leaf reads a credential at compile time: it must not go to the farm at all.
    let lib = p.read("leaf/src/lib.rs");
    p.write(
        "leaf/src/lib.rs",
        &format!("{lib}\npub const TOKEN_SET: bool = option_env!(\"GITHUB_TOKEN\").is_some();\n"),
    );
    // Every job request as it is published on the queue.
    let jobs: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let (seen, url) = (jobs.clone(), nats.url());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let client = async_nats::connect(url).await.unwrap();
            let mut sub = client.subscribe("jetcc.jobs.>").await.unwrap();
            client.flush().await.unwrap();
            ready_tx.send(()).unwrap();
            while let Some(msg) = sub.next().await {
                seen.lock().unwrap().push(msg.payload.to_vec());
            }
        })
    });
    ready.recv().unwrap();
    let cache = root.join("cache");
    let mut build = farm_build(&cache, &nats);
    for (k, v) in SECRETS {
        build = build.env(k, v);
    }
    let built = p.build_ok(&build);
    let s = stats(&cache);
    // util, mac and the C compile went; leaf compiled here. Its first job is listed by a
    // guess, which cannot know the variables it reads: it went without the variable (the
    // job is checked below) and came back as a stale listing when the worker's dep-info
    // named it (a pre-passed job would not have gone: `farm-env`). mid and corelib use leaf,
    // whose rmeta holds the value rustc read for it: they compiled here too (`farm-env`).
    assert_eq!(s["remote_compiles"], 2, "{s}");
    assert_eq!(s["c_compiles"]["remote"], 1, "{s}");
    assert_eq!(s["remote_skipped"]["farm-stale-listing"], 1, "{s}");
    assert_eq!(s["remote_skipped"]["farm-env"], 2, "{s}");
    wait_until(10, "the job requests", || jobs.lock().unwrap().len() >= 3);
    let jobs = jobs.lock().unwrap();
    for job in jobs.iter() {
        // The value nowhere; the name in no env entry (leaf's source, which names it, may
        // ride in a job's inline inputs).
        let env = JobRequest::decode_unchecked(job).expect("a job").env;
        for (name, value) in SECRETS {
            assert!(
                find(job, value.as_bytes()).is_none(),
                "a job carried the value of {name}: {}",
                String::from_utf8_lossy(job)
            );
            assert!(
                env.iter().all(|(k, _)| k != name),
                "a job's env carried {name}: {env:?}"
            );
        }
    }
    // The farm's jobs still had what rustc needs.
    assert!(
        jobs.iter().any(|j| find(j, b"CARGO_PKG_NAME").is_some()),
        "no job carried cargo's variables"
    );
    assert!(!built.log.contains("gh-SECRET"), "{}", built.log);
    // Nor does the shared cache: leaf's manifest would hold the value it read.
    let values = runtime().block_on(async {
        let js = nats.raw_jetstream().await;
        let kv = js.get_key_value("jetcc-ac").await.unwrap();
        let keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
        let mut values = Vec::new();
        for k in keys {
            values.extend(kv.get(&k).await.unwrap().map(|v| v.to_vec()));
        }
        values
    });
    assert!(!values.is_empty(), "nothing was shared");
    for v in &values {
        for (name, value) in SECRETS {
            assert!(
                find(v, value.as_bytes()).is_none(),
                "the shared cache holds {name}"
            );
        }
    }
    // Nor anything the server stored or the worker holds (its blob cache, its job dirs):
    // rustc wrote the value leaf read into leaf's rmeta, which a job of a crate using leaf
    // would carry as an input.
    drop(_w);
    for dir in [root.join("nats"), root.join("w")] {
        walk(&dir, &mut |file| {
            let bytes = std::fs::read(file).unwrap_or_default();
            for (name, value) in SECRETS {
                assert!(
                    find(&bytes, value.as_bytes()).is_none(),
                    "{} holds {name}",
                    file.display()
                );
            }
        });
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn credentials_in_the_nats_url_are_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let nats = Nats::start_with(
        &root.join("nats"),
        &["-js", "--user", "ci", "--pass", "pw-SECRET-9"],
    );
    let with = |pass: &str| format!("nats://ci:{pass}@127.0.0.1:{}", nats.port);
    let cache = root.join("cache");
    let log = root.join("jetcc.log");
    let run = |url: &str, args: &[&str]| {
        let out = jetcc(&cache)
            .args(args)
            .env("JETCC_NATS_URL", url)
            .env("JETCC_LOG", "debug")
            .env("JETCC_LOG_FILE", &log)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let assert_clean = |text: &str, secret: &str| {
        assert!(!text.contains(secret), "{secret} shown: {text}");
    };
    // Wrong password: refused, and the error says where without the password.
    let (ok, text) = run(&with("pw-WRONG-7"), &["--dist-status"]);
    assert!(!ok, "{text}");
    assert_clean(&text, "pw-WRONG-7");
    assert!(text.contains("nats://ci:***@127.0.0.1"), "{text}");
    // The right password in the URL authenticates; the URL is shown masked.
    let (ok, text) = run(&with("pw-SECRET-9"), &["--dist-status"]);
    assert!(ok, "{text}");
    assert!(text.contains("nats://ci:***@127.0.0.1"), "{text}");
    assert_clean(&text, "pw-SECRET-9");
    let _w = Worker::start(&with("pw-SECRET-9"), &root.join("w"), 1);
    let (ok, text) = run(&with("pw-SECRET-9"), &["--dist-status"]);
    assert!(ok, "{text}");
    assert!(text.contains("nats://ci:***@127.0.0.1"), "{text}");
    assert_clean(&text, "pw-SECRET-9");
    let (ok, text) = run(&with("pw-SECRET-9"), &["--check"]);
    assert!(ok, "{text}");
    assert!(text.contains("NATS nats://ci:***@"), "{text}");
    assert_clean(&text, "pw-SECRET-9");
    let (_, text) = run(&with("pw-WRONG-7"), &["--check"]);
    assert_clean(&text, "pw-WRONG-7");
    // A build whose farm refuses the password: the wrapper's log and stats say why, masked.
    let krate = root.join("tiny");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(krate.join("src/lib.rs"), "pub fn f() {}\n").unwrap();
    let built = build_in(
        &krate,
        &Build::jetcc(&cache).env("JETCC_NATS_URL", &with("pw-WRONG-7")),
    );
    assert!(built.ok(), "{}", built.stderr());
    assert!(
        built.log.contains("nats://ci:***@127.0.0.1"),
        "{}",
        built.log
    );
    assert_clean(&built.log, "pw-WRONG-7");
    assert_clean(&built.stderr(), "pw-WRONG-7");
    let (ok, text) = run(&with("pw-WRONG-7"), &["--show-stats", "--json"]);
    assert!(ok, "{text}");
    assert_clean(&text, "pw-WRONG-7");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_clean(&logged, "pw-SECRET-9");
    assert_clean(&logged, "pw-WRONG-7");
}
