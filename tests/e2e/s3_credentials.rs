//! S3 credentials and endpoints found the way AWS tools find them, against a real S3 server
//! (SeaweedFS's `weed mini`, which refuses unsigned requests, unknown keys and wrong secrets):
//! env keys with the endpoint from `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_S3` over it), a
//! profile whose `credential_process` prints the keys, a profile that assumes a role through
//! SeaweedFS's own STS (`AssumeRole`, signed with its source profile's keys), and profiles that
//! cannot give working keys, which `jetcc --check` names while builds still compile.

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
        self.check_with(cache, config, profile, &[])
    }

    /// As [`Home::check`], with more environment variables.
    fn check_with(
        &self,
        cache: &Path,
        config: &Path,
        profile: &str,
        env: &[(&str, &str)],
    ) -> (Option<i32>, String) {
        let mut cmd = jetcc(cache);
        cmd.arg("--check")
            .env("JETCC_CONFIG", config)
            .env("AWS_PROFILE", profile);
        for (k, v) in self.vars() {
            cmd.env(k, v);
        }
        for (k, v) in env {
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
             credential_source = Ec2InstanceMetadata\n",
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
    assert!(text.contains("sets credential_source"), "{text}");
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

/// The identity whose keys may only assume a role (on S3 itself it may do nothing).
const BUILDER_KEY_ID: &str = "jetcc-builder";
const BUILDER_SECRET: &str = "jetcc-builder-secret";

/// SeaweedFS with its STS on (`-s3.iam.config`): the admin, and `builder`, who may do nothing
/// on S3 but assume the role `cache-writer` (which may do anything on S3); the role `locked`
/// trusts someone else.
fn sts_server(root: &Path) -> S3 {
    let dir = root.join("sts-config");
    std::fs::create_dir_all(&dir).unwrap();
    let identities = serde_json::json!({ "identities": [
        { "name": "admin", "actions": ["Admin", "Read", "Write", "List", "Tagging"],
          "credentials": [{ "accessKey": S3_KEY_ID, "secretKey": S3_SECRET }] },
        { "name": "builder", "actions": [],
          "credentials": [{ "accessKey": BUILDER_KEY_ID, "secretKey": BUILDER_SECRET }] },
    ]});
    let trust = |principal: &str| {
        serde_json::json!({ "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": { "AWS": principal }, "Action": ["sts:AssumeRole"]
        }]})
    };
    let iam = serde_json::json!({
        "sts": {
            "tokenDuration": 3_600_000_000_000u64,
            "maxSessionLength": 43_200_000_000_000u64,
            "issuer": "seaweedfs-sts",
            "signingKey": "amV0Y2MtZTJlLXN0cy1zaWduaW5nLWtleS0zMi1ieXRlcw=="
        },
        "policy": { "defaultEffect": "Deny", "storeType": "memory" },
        "roles": [
            { "roleName": "cache-writer", "roleArn": "arn:aws:iam::role/cache-writer",
              "trustPolicy": trust("arn:aws:iam::000000000000:user/builder"),
              "attachedPolicies": ["S3Cache"] },
            { "roleName": "locked", "roleArn": "arn:aws:iam::role/locked",
              "trustPolicy": trust("arn:aws:iam::000000000000:user/someone-else"),
              "attachedPolicies": ["S3Cache"] },
        ],
        "policies": [{ "name": "S3Cache", "document": { "Version": "2012-10-17", "Statement": [
            { "Effect": "Allow", "Action": "s3:*", "Resource": "*" },
            { "Effect": "Allow", "Action": "sts:ValidateSession", "Resource": "*" },
        ]}}],
    });
    let s3_json = dir.join("s3.json");
    let iam_json = dir.join("iam.json");
    std::fs::write(&s3_json, identities.to_string()).unwrap();
    std::fs::write(&iam_json, iam.to_string()).unwrap();
    S3::start_with(
        &root.join("s3"),
        &[
            &format!("-s3.config={}", s3_json.display()),
            &format!("-s3.iam.config={}", iam_json.display()),
        ],
    )
}

/// A laptop's profile assumes a role with another profile's keys, through SeaweedFS's real
/// STS (`AssumeRole`, SigV4 for `sts`, temporary keys with a session token), and reads what CI
/// wrote: every unit hits. The source's own keys may not read (so the role's did); a role the
/// source may not assume, and a profile with `credential_source = Environment`, are named by
/// `jetcc --check`; a build with the refused role compiles everything.
#[test]
fn a_profile_assumes_a_role_through_sts_and_hits() {
    let p = Project::fixture("fixture");
    let root = p.dir.parent().unwrap().to_path_buf();
    let s3 = sts_server(&root);
    let endpoint = s3.endpoint();
    let config = config(&root, "endpoint", Some(&endpoint));
    p.build_ok(
        &Build::jetcc(&root.join("cache-ci"))
            .env("JETCC_CONFIG", &config.to_string_lossy())
            .env("AWS_ACCESS_KEY_ID", S3_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET),
    );
    assert_eq!(tier(&root.join("cache-ci"))["writes"], FIXTURE_COLD_WRITES);
    let want = artifacts(&p.target());

    let home = Home::new(
        &root,
        &format!(
            "[profile builder]\naws_access_key_id = {BUILDER_KEY_ID}\n\
             aws_secret_access_key = {BUILDER_SECRET}\n\
             [profile cache]\nrole_arn = arn:aws:iam::role/cache-writer\nsource_profile = builder\n\
             endpoint_url = {endpoint}\n\
             [profile locked]\nrole_arn = arn:aws:iam::role/locked\nsource_profile = builder\n\
             endpoint_url = {endpoint}\n\
             [profile envrole]\nrole_arn = arn:aws:iam::role/cache-writer\n\
             credential_source = Environment\n"
        ),
    );
    let laptop = |cache: &str, profile: &str| {
        home.build(
            Build::jetcc(&root.join(cache))
                .env("JETCC_CONFIG", &config.to_string_lossy())
                .env("AWS_PROFILE", profile),
        )
    };
    p.clean();
    let built = p.build_ok(&laptop("cache-laptop", "cache"));
    built.assert_each(FIXTURE_UNITS, Outcome::Hit);
    assert_same_artifacts(&want, &artifacts(&p.target()), "hits with an assumed role");
    let t = tier(&root.join("cache-laptop"));
    assert_eq!(t["hits"], FIXTURE_WARM_HITS, "{t}");
    assert_eq!(t["errors"], serde_json::json!({}), "{t}");

    let check = root.join("cache-check");
    let (code, text) = home.check(&check, &config, "cache");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "credentials: role arn:aws:iam::role/cache-writer assumed through STS at {endpoint} \
             with access key {BUILDER_KEY_ID} from profile builder in"
        )),
        "{text}"
    );
    // The source's own keys may not even read: the role's temporary keys did the work.
    let (code, text) = home.check(&check, &config, "builder");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("access key {BUILDER_KEY_ID} from profile builder")),
        "{text}"
    );

    // The environment's keys assume the role when the profile says so (and STS is where
    // AWS_ENDPOINT_URL_STS says).
    let (code, text) = home.check_with(
        &check,
        &config,
        "envrole",
        &[
            ("AWS_ACCESS_KEY_ID", BUILDER_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", BUILDER_SECRET),
            ("AWS_ENDPOINT_URL_STS", &endpoint),
        ],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("(credential_source = Environment)"), "{text}");

    // A role the source may not assume: STS's refusal, and what to do.
    let (code, text) = home.check(&check, &config, "locked");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL  s3"), "{text}");
    assert!(
        text.contains("role arn:aws:iam::role/locked of AWS profile locked"),
        "{text}"
    );
    assert!(text.contains("403 AccessDenied"), "{text}");
    assert!(
        text.contains(&format!(
            "let access key {BUILDER_KEY_ID} from profile builder in"
        )),
        "{text}"
    );
    assert!(!text.contains(BUILDER_SECRET), "{text}");

    let locked = root.join("cache-locked");
    p.clean();
    let built = p.build_ok(&laptop("cache-locked", "locked"));
    built.assert_each(FIXTURE_UNITS, Outcome::Miss);
    let t = tier(&locked);
    assert!(t["errors"]["credentials"].as_u64().unwrap_or(0) >= 1, "{t}");
    assert_eq!(
        (t["hits"].as_u64(), t["writes"].as_u64()),
        (Some(0), Some(0)),
        "{t}"
    );
}
