//! The object-store tier against a real S3 server (SeaweedFS's `weed mini`), configured with
//! the seed's sccache-style `[cache.s3]` block: CI fills it, a read-only laptop reads it, and
//! faults (a corrupt or truncated object, a wrong secret, the server killed mid-build) cost
//! hits, never builds. `jetcc --check` tells each misconfiguration apart.

use std::path::{Path, PathBuf};

use jetcc_common::cache::TierErrorKind;
use jetcc_e2e::servers::{Nats, S3, S3_BUCKET, S3_KEY_ID, S3_SECRET};
use jetcc_e2e::*;

/// The seed's block, verbatim but for the endpoint and `use_ssl`.
fn config_file(dir: &Path, endpoint: &str, bucket: &str) -> PathBuf {
    let path = dir.join(format!("jetcc-{bucket}-{}.toml", endpoint.len()));
    std::fs::write(
        &path,
        format!(
            "[cache.s3]\nbucket = \"{bucket}\"\nendpoint = \"{endpoint}\"\nregion = \"auto\"\n\
             use_ssl = false\nkey_prefix = \"sccache\"\nno_credentials = false\n"
        ),
    )
    .unwrap();
    path
}

struct Team {
    root: PathBuf,
    s3: S3,
    config: PathBuf,
}

impl Team {
    fn new(root: &Path) -> Team {
        let s3 = S3::start(&root.join("s3"));
        let config = config_file(root, &s3.endpoint(), S3_BUCKET);
        Team {
            root: root.to_path_buf(),
            s3,
            config,
        }
    }

    /// A client with keys in env vars (as on a CI agent) and its own cache dir.
    fn ci(&self, cache: &str, checkout: &Path) -> Build {
        Build::jetcc(&self.root.join(cache))
            .env("JETCC_CONFIG", &self.config.to_string_lossy())
            .env("JETCC_BASE_DIRS", &checkout.to_string_lossy())
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The raw bucket, for damaging objects as a failing disk or a buggy writer would.
    fn bucket(&self) -> (tokio::runtime::Runtime, object_store::aws::AmazonS3) {
        raw_bucket(&self.s3.endpoint())
    }
}

fn tier(cache: &Path) -> serde_json::Value {
    stats(cache)["tiers"]["s3"].clone()
}

#[test]
fn ci_fills_s3_and_a_read_only_laptop_with_an_aws_profile_reads_it() {
    let ci_checkout = Project::fixture("fixture");
    let team = Team::new(ci_checkout.dir.parent().unwrap());
    let built = ci_checkout.build_ok(&team.ci("cache-ci", &ci_checkout.dir));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let t = tier(&team.cache("cache-ci"));
    assert_eq!(t["writes"], FIXTURE_COLD_WRITES, "{t}");
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");
    let want = artifacts(&ci_checkout.target());

    // The laptop: its keys in a profile under its own HOME, read-only, another checkout path.
    let home = team.root.join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!("[team]\naws_access_key_id = {S3_KEY_ID}\naws_secret_access_key = {S3_SECRET}\n"),
    )
    .unwrap();
    std::fs::write(home.join(".aws/config"), "[profile team]\nregion = auto\n").unwrap();
    let laptop_checkout = ci_checkout.sibling("fixture", "laptop");
    let laptop = |cache: &str| {
        let mut b = Build::jetcc(&team.cache(cache))
            .env("JETCC_CONFIG", &team.config.to_string_lossy())
            .env("JETCC_BASE_DIRS", &laptop_checkout.to_string_lossy())
            .env("JETCC_S3_RW_MODE", "READ_ONLY")
            .env("AWS_PROFILE", "team")
            .env("HOME", &home.to_string_lossy());
        // cargo and rustup stay where the real HOME has them.
        for (var, dir) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
            let real = std::env::var(var)
                .unwrap_or_else(|_| format!("{}/{dir}", std::env::var("HOME").unwrap_or_default()));
            b = b.env(var, &real);
        }
        b
    };
    let built = build_in(&laptop_checkout, &laptop("cache-laptop"));
    assert!(built.ok(), "{}", built.stderr());
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(
        &want,
        &artifacts(&laptop_checkout.join("target")),
        "hits from the s3 tier",
    );
    let t = tier(&team.cache("cache-laptop"));
    assert_eq!(t["hits"], FIXTURE_WARM_HITS, "{t}");
    assert_eq!(t["writes"], 0, "{t}");

    // Its own edit is not written: a CI client with the same edit misses it there too.
    let leaf = laptop_checkout.join("leaf/src/lib.rs");
    let src = std::fs::read_to_string(&leaf).unwrap() + "pub fn laptop_only() {}\n";
    std::fs::write(&leaf, src).unwrap();
    let built = build_in(&laptop_checkout, &laptop("cache-laptop"));
    assert!(built.ok(), "{}", built.stderr());
    assert_eq!(built.outcome("leaf"), Some(Outcome::Miss));
    assert_eq!(tier(&team.cache("cache-laptop"))["writes"], 0);
    std::fs::remove_dir_all(laptop_checkout.join("target")).unwrap();
    let built = build_in(&laptop_checkout, &team.ci("cache-third", &laptop_checkout));
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

/// Damages one blob of the bucket with `damage`; a fresh client must still build correctly,
/// count the damage as an error (not a miss), and write the blob afresh.
fn damaged_blob_costs_one_hit(damage: fn(Vec<u8>) -> Vec<u8>, what: &str) {
    use futures_util::StreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let p = Project::fixture("fixture");
    let team = Team::new(p.dir.parent().unwrap());
    p.build_ok(&team.ci("cache-ci", &p.dir));
    let want = artifacts(&p.target());

    let (rt, bucket) = team.bucket();
    rt.block_on(async {
        let prefix = object_store::path::Path::from("sccache/jetcc-v1/b");
        let mut blobs: Vec<_> = bucket
            .list(Some(&prefix))
            .map(|m| m.unwrap())
            .collect()
            .await;
        blobs.sort_by_key(|m| std::cmp::Reverse(m.size));
        let victim = &blobs[0].location;
        let bytes = bucket.get(victim).await.unwrap().bytes().await.unwrap();
        let bad = damage(bytes.to_vec());
        bucket.put(victim, bad.into()).await.unwrap();
    });

    p.clean();
    let built = p.build_ok(&team.ci("cache-fresh", &p.dir));
    assert_same_artifacts(&want, &artifacts(&p.target()), what);
    let t = tier(&team.cache("cache-fresh"));
    assert_eq!(t["errors"][TierErrorKind::Corrupt.name()], 1, "{what}: {t}");
    assert_eq!(t["misses"], 0, "an error is not a miss: {t}");
    assert_eq!(t["hits"], FIXTURE_WARM_HITS - 1, "{t}");
    assert!(
        t["last_error"]
            .as_str()
            .unwrap()
            .contains("does not match its digest"),
        "{t}"
    );
    let misses: Vec<_> = built
        .outcomes()
        .into_iter()
        .filter(|(_, o)| o.contains(&Outcome::Miss))
        .collect();
    assert_eq!(misses.len(), 1, "{misses:?}");

    // That compile wrote the blob again: the next fresh client hits everything.
    p.clean();
    let built = p.build_ok(&team.ci("cache-after", &p.dir));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), what);
}

#[test]
fn a_corrupt_s3_blob_is_an_error_and_a_compile_never_a_wrong_artifact() {
    damaged_blob_costs_one_hit(
        |mut b| {
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
            b
        },
        "a flipped byte",
    );
}

#[test]
fn a_truncated_s3_blob_is_an_error_and_a_compile_never_a_wrong_artifact() {
    damaged_blob_costs_one_hit(
        |mut b| {
            b.truncate(b.len() / 2);
            b
        },
        "half an object",
    );
}

#[test]
fn a_wrong_secret_key_shows_as_credential_errors_not_misses() {
    let p = Project::fixture("fixture");
    let team = Team::new(p.dir.parent().unwrap());
    // The reference: the same build with the right key (base_dirs remaps paths).
    p.build_ok(&team.ci("cache-ref", &p.dir));
    let want = artifacts(&p.target());
    p.clean();
    let cache = team.cache("cache-wrong");
    let built = p.build_ok(
        &team
            .ci("cache-wrong", &p.dir)
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
    );
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    assert_same_artifacts(&want, &artifacts(&p.target()), "wrong key");
    let t = tier(&cache);
    let errors = t["errors"]["credentials"].as_u64().unwrap_or(0);
    assert_eq!(t["misses"], 0, "{t}");
    assert_eq!(t["writes"], 0, "{t}");
    // The breaker stops asking after a few failures (cargo runs two units at a time).
    assert!((3..=5).contains(&errors), "{t}");
    let last = t["last_error"].as_str().unwrap();
    assert!(last.contains("AWS_SECRET_ACCESS_KEY"), "{last}");
    let shown =
        String::from_utf8(jetcc(&cache).arg("--show-stats").output().unwrap().stdout).unwrap();
    assert!(
        shown.contains("Last s3 error") && shown.contains("SignatureDoesNotMatch"),
        "{shown}"
    );
}

#[test]
fn the_s3_server_killed_mid_build_costs_hits_not_the_build() {
    let p = Project::fixture("fixture");
    let team = Team::new(p.dir.parent().unwrap());
    p.build_ok(&team.ci("cache-ci", &p.dir));
    let want = artifacts(&p.target());
    p.clean();
    // A wrapper of the wrapper kills the server as the binary's compile starts.
    let script = team.root.join("kill-s3-at-app.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" --crate-name app \"*) kill -9 {} ;; esac\nexec {} \"$@\"\n",
            team.s3.pid(),
            jetcc_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = team.cache("cache-fresh");
    let t0 = std::time::Instant::now();
    let built = p.build_ok(
        &team
            .ci("cache-fresh", &p.dir)
            .env("RUSTC_WRAPPER", &script.to_string_lossy()),
    );
    let took = t0.elapsed();
    assert_same_artifacts(&want, &artifacts(&p.target()), "s3 killed mid-build");
    assert_eq!(
        built.outcome("app"),
        Some(Outcome::Miss),
        "{:?}",
        built.outcomes()
    );
    assert_eq!(
        built.outcome("leaf"),
        Some(Outcome::Hit),
        "{:?}",
        built.outcomes()
    );
    let t = tier(&cache);
    assert!(t["errors"]["unreachable"].as_u64().unwrap_or(0) >= 1, "{t}");
    assert_eq!(t["misses"], 0, "{t}");
    assert!(took < std::time::Duration::from_secs(60), "{took:?}");
}

#[test]
fn check_tells_each_misconfiguration_apart() {
    let dir = tempfile::tempdir().unwrap();
    let team = Team::new(dir.path());
    let check = |config: &Path, env: &[(&str, &str)]| {
        let mut cmd = jetcc(&team.cache("cache-check"));
        cmd.arg("--check")
            .env("JETCC_CONFIG", config)
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text)
    };
    let (code, text) = check(&team.config, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("ok    s3") && text.contains("write, read, delete"),
        "{text}"
    );

    let wrong_port = config_file(dir.path(), "http://127.0.0.1:9", S3_BUCKET);
    let (code, text) = check(&wrong_port, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("cannot reach http://127.0.0.1:9"), "{text}");

    let tls = config_file(
        dir.path(),
        &team.s3.endpoint().replace("http://", "https://"),
        S3_BUCKET,
    );
    let (code, text) = check(&tls, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("TLS failed"),
        "https against a plain server: {text}"
    );

    let (code, text) = check(&team.config, &[("AWS_SECRET_ACCESS_KEY", "nope")]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the secret key does not match"), "{text}");

    let missing = config_file(dir.path(), &team.s3.endpoint(), "no-such-bucket");
    let (code, text) = check(&missing, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("bucket does not exist"), "{text}");

    let plain_nats = Nats::start_with(&dir.path().join("nats"), &[]);
    let (code, text) = check(&team.config, &[("JETCC_NATS_URL", &plain_nats.url())]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL  jetstream") && text.contains("-js"),
        "{text}"
    );
    assert!(
        text.contains("ok    s3"),
        "one tier's failure is not another's: {text}"
    );
}

#[test]
fn an_s3_hit_fills_the_jetstream_tier_above_it() {
    let p = Project::fixture("fixture");
    let team = Team::new(p.dir.parent().unwrap());
    p.build_ok(&team.ci("cache-ci", &p.dir));
    let want = artifacts(&p.target());
    let nats = Nats::start(&team.root.join("nats"));

    // Both tiers, an empty local cache: JetStream misses, S3 hits and fills JetStream.
    p.clean();
    let both = team
        .ci("cache-both", &p.dir)
        .env("JETCC_NATS_URL", &nats.url());
    p.build_ok(&both).assert_each(FIXTURE_UNITS, Outcome::Hit);
    let s = stats(&team.cache("cache-both"));
    assert_eq!(s["tiers"]["s3"]["hits"], FIXTURE_WARM_HITS, "{s}");
    assert_eq!(s["tiers"]["jetstream"]["misses"], FIXTURE_WARM_HITS, "{s}");
    assert_eq!(s["tiers"]["jetstream"]["writes"], FIXTURE_WARM_HITS, "{s}");

    // JetStream alone now has everything.
    p.clean();
    let js_only = Build::jetcc(&team.cache("cache-js"))
        .env("JETCC_BASE_DIRS", &p.dir.to_string_lossy())
        .env("JETCC_NATS_URL", &nats.url());
    p.build_ok(&js_only)
        .assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(
        &want,
        &artifacts(&p.target()),
        "filled from s3 into jetstream",
    );
    let s = stats(&team.cache("cache-js"));
    assert_eq!(s["tiers"]["jetstream"]["hits"], FIXTURE_WARM_HITS, "{s}");
}

/// sccache reads a bare endpoint host without `use_ssl` as plain http; so does jetcc, or the
/// same block would fail every request with a TLS error.
#[test]
fn a_bare_endpoint_host_without_use_ssl_is_http_as_in_sccache() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let s3 = S3::start(&root.join("s3"));
    let host = s3.endpoint().trim_start_matches("http://").to_owned();
    let config = root.join("bare.toml");
    std::fs::write(
        &config,
        format!("[cache.s3]\nbucket = \"{S3_BUCKET}\"\nendpoint = \"{host}\"\nregion = \"auto\"\n"),
    )
    .unwrap();
    let cache = root.join("cache");
    p.build_ok(
        &Build::jetcc(&cache)
            .env("JETCC_CONFIG", &config.to_string_lossy())
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET),
    );
    let t = tier(&cache);
    assert_eq!(t["writes"], FIXTURE_COLD_WRITES, "{t}");
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");
}

/// The response head of a presigned `HEAD` of `path`: what the server says about the stored
/// object, headers included (object_store's `head` keeps only size, time and tag).
fn head_of(
    rt: &tokio::runtime::Runtime,
    bucket: &object_store::aws::AmazonS3,
    path: &object_store::path::Path,
) -> String {
    use object_store::signer::{Method, Signer};
    use std::io::{Read, Write};
    let url = rt
        .block_on(bucket.signed_url(Method::HEAD, path, std::time::Duration::from_secs(60)))
        .unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "HEAD {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = String::new();
    s.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "HEAD {path}: {head}");
    head.to_ascii_lowercase()
}

/// sccache's `server_side_encryption = true` asks for SSE-S3 on every write. SeaweedFS
/// implements SSE-S3: it stores each object encrypted and says so on a `HEAD`
/// (`x-amz-server-side-encryption: AES256`), which an object written without the header
/// lacks. The encrypted objects read back as hits.
#[test]
fn server_side_encryption_is_asked_for_on_every_write() {
    use futures_util::StreamExt;
    use object_store::{ObjectStore, ObjectStoreExt};
    let p = Project::fixture("fixture");
    let team = Team::new(p.dir.parent().unwrap());
    let block = std::fs::read_to_string(&team.config).unwrap();
    std::fs::write(&team.config, block + "server_side_encryption = true\n").unwrap();
    p.build_ok(&team.ci("cache-ci", &p.dir));
    let t = tier(&team.cache("cache-ci"));
    assert_eq!(t["writes"], FIXTURE_COLD_WRITES, "{t}");
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");

    let (rt, bucket) = team.bucket();
    let objects: Vec<_> = rt.block_on(async {
        let prefix = object_store::path::Path::from("sccache/jetcc-v1");
        bucket
            .list(Some(&prefix))
            .map(|m| m.unwrap().location)
            .collect()
            .await
    });
    // Blobs, entries and manifests, each encrypted.
    for kind in ["/b/", "/e/", "/m/"] {
        assert!(
            objects.iter().any(|o| o.as_ref().contains(kind)),
            "{objects:?}"
        );
    }
    for o in &objects {
        let head = head_of(&rt, &bucket, o);
        assert!(
            head.contains("x-amz-server-side-encryption: aes256"),
            "{o}: {head}"
        );
    }
    // The check can fail: an object written without the header has none.
    let plain = object_store::path::Path::from("plain");
    rt.block_on(bucket.put(&plain, "x".into())).unwrap();
    assert!(!head_of(&rt, &bucket, &plain).contains("x-amz-server-side-encryption"));

    p.clean();
    let built = p.build_ok(&team.ci("cache-fresh", &p.dir));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_eq!(tier(&team.cache("cache-fresh"))["hits"], FIXTURE_WARM_HITS);
}

/// The target of each log line (`[TIME] LEVEL target: message`).
fn log_targets(log: &str) -> std::collections::BTreeSet<String> {
    const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
    log.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| LEVELS.contains(w))?;
            words.next()?.strip_suffix(':').map(str::to_owned)
        })
        .collect()
}

/// `JETCC_LOG=debug` is jetcc's own debug output: the HTTP stack under the S3 tier logs at
/// debug too, but only a full filter directive turns it on. Each line names its module.
#[test]
fn debug_logs_are_jetcc_s_own_and_name_their_module() {
    let p = Project::fixture("fixture");
    let team = Team::new(p.dir.parent().unwrap());
    // The harness sets JETCC_LOG=debug.
    let built = p.build_ok(&team.ci("cache-ci", &p.dir));
    let targets = log_targets(&built.log);
    for module in ["jetcc::wrapper", "jetcc::tiers"] {
        assert!(
            targets.iter().any(|t| t.starts_with(module)),
            "no line of {module}: {targets:?}"
        );
    }
    let own = |t: &str| {
        jetcc_common::logfilter::OWN_CRATES
            .iter()
            .any(|c| t == *c || t.starts_with(&format!("{c}::")))
    };
    let foreign: Vec<_> = targets.iter().filter(|t| !own(t)).collect();
    assert!(foreign.is_empty(), "{foreign:?}\n{}", built.log);

    // A directive is taken as given: here, debug for every crate.
    p.clean();
    let built = p.build_ok(
        &team
            .ci("cache-all", &p.dir)
            .env("JETCC_LOG", "debug,jetcc=debug"),
    );
    let targets = log_targets(&built.log);
    assert!(
        targets
            .iter()
            .any(|t| t.starts_with("hyper") || t.starts_with("reqwest")),
        "{targets:?}"
    );
}

/// `enable_virtual_host_style = true` with a custom endpoint: requests go to
/// `<bucket>.<endpoint host>`, as sccache sends them (object_store wants the bucket in the
/// endpoint; jetcc puts it there). SeaweedFS serves virtual-host style for the domain it is
/// given (`-s3.domainName`). This machine has no DNS for a test domain, so the client
/// reaches the server through the server itself as its HTTP proxy (`http_proxy`, which the
/// S3 client honours as AWS tools do): each request still names `cache.s3.test` as its host,
/// and the server takes the bucket from it. Without the bucket in the host, the server would
/// take the key prefix for the bucket and every request would fail.
#[test]
fn virtual_host_style_puts_the_bucket_in_the_host() {
    use futures_util::StreamExt;
    use object_store::ObjectStore;
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let s3 = S3::start_with(&root.join("s3"), &["-s3.domainName=s3.test"]);
    let config = root.join("vhost.toml");
    std::fs::write(
        &config,
        format!(
            "[cache.s3]\nbucket = \"{S3_BUCKET}\"\nendpoint = \"s3.test:{}\"\nregion = \"auto\"\n\
             enable_virtual_host_style = true\nkey_prefix = \"vh\"\n",
            s3.port
        ),
    )
    .unwrap();
    let client = |cache: &str| {
        Build::jetcc(&root.join(cache))
            .env("JETCC_CONFIG", &config.to_string_lossy())
            .env("http_proxy", &s3.endpoint())
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    };
    p.build_ok(&client("cache-a"));
    let t = tier(&root.join("cache-a"));
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");
    assert_eq!(t["writes"], FIXTURE_COLD_WRITES, "{t}");

    // They are in the bucket, under the key prefix, as a path-style client sees them.
    let (rt, bucket) = raw_bucket(&s3.endpoint());
    let prefix = object_store::path::Path::from("vh/jetcc-v1");
    let stored = rt.block_on(bucket.list(Some(&prefix)).count());
    assert!(stored > FIXTURE_UNITS.len(), "{stored} objects");

    p.clean();
    let built = p.build_ok(&client("cache-b"));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_eq!(tier(&root.join("cache-b"))["hits"], FIXTURE_WARM_HITS);
}

/// The test bucket on the server at `endpoint`, path-style, as a plain S3 client sees it.
fn raw_bucket(endpoint: &str) -> (tokio::runtime::Runtime, object_store::aws::AmazonS3) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(S3_BUCKET)
        .with_region("auto")
        .with_access_key_id(S3_KEY_ID)
        .with_secret_access_key(S3_SECRET)
        .build()
        .unwrap();
    (rt, store)
}
