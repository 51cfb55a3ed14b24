//! S3 credentials and endpoints found the way AWS tools find them, against a real S3 server
//! (SeaweedFS's `weed mini`, which refuses unsigned requests, unknown keys and wrong secrets):
//! env keys with the endpoint from `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_S3` over it), a
//! profile whose `credential_process` prints the keys, and profiles that cannot give working
//! keys, which `jetcc --check` names while builds still compile.

use std::path::{Path, PathBuf};

use jetcc_e2e::servers::{S3, S3_BUCKET, S3_KEY_ID, S3_SECRET};
use jetcc_e2e::*;

fn tier(cache: &Path) -> serde_json::Value {
    stats(cache)["tiers"]["s3"].clone()
}

/// A `[cache.s3]` block with `endpoint` if given, and never credentials.
fn config(dir: &Path, name: &str, endpoint: Option<&str>) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let endpoint = match endpoint {
        Some(e) => format!("endpoint = \"{e}\"\n"),
        None => String::new(),
    };
    std::fs::write(
        &path,
        format!(
            "[cache.s3]\nbucket = \"{S3_BUCKET}\"\n{endpoint}region = \"auto\"\n\
             key_prefix = \"creds\"\n"
        ),
    )
    .unwrap();
    path
}

/// A HOME whose `~/.aws/config` is `aws_config`; cargo and rustup stay where the real HOME
/// has them.
struct Home {
    dir: PathBuf,
}

impl Home {
    fn new(root: &Path, aws_config: &str) -> Home {
        let dir = root.join("home");
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        std::fs::write(dir.join(".aws/config"), aws_config).unwrap();
        Home { dir }
    }

    fn vars(&self) -> Vec<(String, String)> {
        let mut vars = vec![("HOME".to_owned(), self.dir.display().to_string())];
        for (var, dir) in [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")] {
            let real = std::env::var(var)
                .unwrap_or_else(|_| format!("{}/{dir}", std::env::var("HOME").unwrap_or_default()));
            vars.push((var.to_owned(), real));
        }
        vars
    }

    fn build(&self, mut b: Build) -> Build {
        for (k, v) in self.vars() {
            b = b.env(&k, &v);
        }
        b
    }

    /// `jetcc --check` with this HOME and `AWS_PROFILE=profile`: exit code and stdout.
    fn check(&self, cache: &Path, config: &Path, profile: &str) -> (Option<i32>, String) {
        let mut cmd = jetcc(cache);
        cmd.arg("--check")
            .env("JETCC_CONFIG", config)
            .env("AWS_PROFILE", profile);
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

/// A script that counts its runs in `runs` and prints `secret` with the server's key id as
/// a credential_process does, valid for an hour.
fn credential_script(dir: &Path, name: &str, secret: &str, runs: &Path) -> PathBuf {
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho run >> '{}'\n\
             printf '{{\"Version\": 1, \"AccessKeyId\": \"{S3_KEY_ID}\", \
             \"SecretAccessKey\": \"{secret}\", \"Expiration\": \"%s\"}}\\n' \
             \"$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)\"\n",
            runs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// No `endpoint` in the config and keys only in env vars: the endpoint comes from
/// `AWS_ENDPOINT_URL`, as every AWS SDK reads it, and a second client hits. The
/// service-specific `AWS_ENDPOINT_URL_S3` wins over it (here the generic one names a port
/// nothing listens on).
#[test]
fn env_keys_and_aws_endpoint_url_alone_fill_the_bucket_and_hit() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let s3 = S3::start(&root.join("s3"));
    let config = config(&root, "no-endpoint", None);
    let client = |cache: &str| {
        Build::jetcc(&root.join(cache))
            .env("JETCC_CONFIG", &config.to_string_lossy())
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    };
    p.build_ok(&client("cache-a").env("AWS_ENDPOINT_URL", &s3.endpoint()));
    let t = tier(&root.join("cache-a"));
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");
    assert_eq!(t["writes"], FIXTURE_COLD_WRITES, "{t}");
    let want = artifacts(&p.target());

    p.clean();
    let built = p.build_ok(
        &client("cache-b")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ENDPOINT_URL_S3", &s3.endpoint()),
    );
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(
        &want,
        &artifacts(&p.target()),
        "hits via AWS_ENDPOINT_URL_S3",
    );
    let t = tier(&root.join("cache-b"));
    assert_eq!(t["hits"], FIXTURE_WARM_HITS, "{t}");
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");
}

/// A laptop whose only credentials are a profile's `credential_process` (as `aws configure
/// export-credentials --format process` prints them) reads what CI wrote with env keys. The
/// command runs at most once per wrapper process, and only in those that missed locally.
#[test]
fn a_profile_s_credential_process_gives_the_keys() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let s3 = S3::start(&root.join("s3"));
    let config = config(&root, "endpoint", Some(&s3.endpoint()));
    p.build_ok(
        &Build::jetcc(&root.join("cache-ci"))
            .env("JETCC_CONFIG", &config.to_string_lossy())
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET),
    );
    assert_eq!(tier(&root.join("cache-ci"))["writes"], FIXTURE_COLD_WRITES);
    let want = artifacts(&p.target());

    let runs = root.join("credential-runs");
    let script = credential_script(&root, "get-creds.sh", S3_SECRET, &runs);
    let home = Home::new(
        &root,
        &format!(
            "[profile team]\ncredential_process = {}\n",
            script.display()
        ),
    );
    let laptop = |cache: &str| {
        home.build(
            Build::jetcc(&root.join(cache))
                .env("JETCC_CONFIG", &config.to_string_lossy())
                .env("AWS_PROFILE", "team"),
        )
    };
    p.clean();
    let built = p.build_ok(&laptop("cache-laptop"));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(
        &want,
        &artifacts(&p.target()),
        "hits with credential_process",
    );
    let t = tier(&root.join("cache-laptop"));
    assert_eq!(t["hits"], FIXTURE_WARM_HITS, "{t}");
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");
    let n = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert!(
        (1..=FIXTURE_WARM_HITS).contains(&n),
        "{n} runs for {FIXTURE_WARM_HITS} wrapper processes"
    );

    // All local hits now: no wrapper asks S3, so none runs the command.
    p.clean();
    p.build_ok(&laptop("cache-laptop"))
        .assert_each(FIXTURE_UNITS, Outcome::Hit);
    let again = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(again, n, "a local hit never runs the credential_process");

    let (code, text) = home.check(&root.join("cache-check"), &config, "team");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok    s3"), "{text}");
}

/// Profiles that give no working keys: a credential_process that fails (its stderr shown),
/// one that prints a wrong secret (which the server refuses), a role jetcc cannot assume
/// itself (what to do instead). `jetcc --check` names each; a build compiles locally.
#[test]
fn profiles_without_working_keys_are_diagnosed_and_builds_compile() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let s3 = S3::start(&root.join("s3"));
    let config = config(&root, "endpoint", Some(&s3.endpoint()));
    let runs = root.join("wrong-runs");
    let wrong = credential_script(&root, "wrong-creds.sh", "not-the-secret", &runs);
    let home = Home::new(
        &root,
        &format!(
            "[profile broken]\ncredential_process = echo 'the SSO session has expired' >&2; \
             exit 1\n\
             [profile wrong]\ncredential_process = {}\n\
             [profile role]\nrole_arn = arn:aws:iam::123456789012:role/ci\n\
             source_profile = base\n\
             [profile base]\nregion = auto\n",
            wrong.display()
        ),
    );
    let cache = root.join("cache-check");

    let (code, text) = home.check(&cache, &config, "broken");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL  s3"), "{text}");
    assert!(
        text.contains("credential_process of AWS profile broken"),
        "{text}"
    );
    assert!(text.contains("the SSO session has expired"), "{text}");

    let (code, text) = home.check(&cache, &config, "wrong");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the secret key does not match"), "{text}");
    assert!(
        text.contains("credential_process of profile wrong"),
        "{text}"
    );

    let (code, text) = home.check(&cache, &config, "role");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("sets role_arn"), "{text}");
    assert!(
        text.contains("aws configure export-credentials --profile role --format process"),
        "{text}"
    );

    // A build with the failing one compiles everything, counting credential errors.
    let broken = root.join("cache-broken");
    let built = p.build_ok(
        &home.build(
            Build::jetcc(&broken)
                .env("JETCC_CONFIG", &config.to_string_lossy())
                .env("AWS_PROFILE", "broken"),
        ),
    );
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let t = tier(&broken);
    assert!(t["errors"]["credentials"].as_u64().unwrap_or(0) >= 1, "{t}");
    assert_eq!(t["hits"], 0, "{t}");
    assert_eq!(t["writes"], 0, "{t}");
    assert!(
        t["last_error"]
            .as_str()
            .unwrap()
            .contains("the SSO session has expired"),
        "{t}"
    );
}
