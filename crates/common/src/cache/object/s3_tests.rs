use super::*;

/// The environment `pairs`, as a lookup and as the builder `from_env()` makes of it (its
/// loop, over these pairs instead of the process's).
fn env_of(pairs: &[(&str, &str)]) -> (impl Fn(&str) -> Option<String>, AmazonS3Builder) {
    let owned: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut b = AmazonS3Builder::new();
    for (k, v) in &owned {
        if k.starts_with("AWS_") {
            if let Ok(key) = k.to_ascii_lowercase().parse::<Key>() {
                b = b.with_config(key, v);
            }
        }
    }
    let lookup = move |k: &str| owned.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    (lookup, b)
}

fn s3(extra: serde_json::Value) -> S3Config {
    let mut json = serde_json::json!({ "bucket": "cache" });
    json.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json).unwrap()
}

/// A HOME with no ~/.aws, so the test machine's own profiles never leak in.
fn empty_home() -> (tempfile::TempDir, String) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().display().to_string();
    (home, h)
}

fn configured(
    cfg: &S3Config,
    pairs: &[(&str, &str)],
) -> Result<(AmazonS3Builder, Place), TierError> {
    let (env, base) = env_of(pairs);
    configure(cfg, &env, base)
}

fn value(b: &AmazonS3Builder, k: Key) -> Option<String> {
    b.get_config_value(&k)
}

#[test]
fn endpoints_as_sccache_reads_them() {
    let url = |ep: &str, use_ssl, vhost| endpoint_url(ep, "cache", use_ssl, vhost);
    assert_eq!(url("s3.lan:9000", None, false), "http://s3.lan:9000");
    assert_eq!(url("s3.lan", Some(true), false), "https://s3.lan");
    assert_eq!(url("https://s3.lan/", None, false), "https://s3.lan/");
    assert_eq!(url("s3.lan:9000", None, true), "http://cache.s3.lan:9000");
    assert_eq!(url("https://s3.lan", None, true), "https://cache.s3.lan");
    assert_eq!(
        url("https://cache.s3.lan", None, true),
        "https://cache.s3.lan",
        "already there"
    );
}

#[test]
fn the_config_endpoint_wins_then_aws_endpoint_url_s3_then_aws_endpoint_url() {
    let (_home, h) = empty_home();
    let both = [
        ("HOME", h.as_str()),
        ("AWS_ACCESS_KEY_ID", "K"),
        ("AWS_SECRET_ACCESS_KEY", "S"),
        ("AWS_ENDPOINT_URL", "http://generic:1"),
        ("AWS_ENDPOINT_URL_S3", "http://s3only:2"),
    ];
    let ep = |cfg: &S3Config, pairs: &[(&str, &str)]| {
        let (b, place) = configured(cfg, pairs).unwrap();
        // object_store prefers S3Endpoint: both must name the chosen one.
        assert_eq!(value(&b, Key::S3Endpoint), place.endpoint);
        assert_eq!(value(&b, Key::Endpoint), place.endpoint);
        place.endpoint
    };
    let cfg = s3(serde_json::json!({ "endpoint": "cfg:3" }));
    assert_eq!(ep(&cfg, &both).as_deref(), Some("http://cfg:3"));
    let none = s3(serde_json::json!({}));
    assert_eq!(ep(&none, &both).as_deref(), Some("http://s3only:2"));
    assert_eq!(ep(&none, &both[..4]).as_deref(), Some("http://generic:1"));
    assert_eq!(ep(&none, &both[..3]), None, "AWS itself");
    // Virtual-host style puts the bucket in an env endpoint too.
    let vhost = s3(serde_json::json!({ "enable_virtual_host_style": true }));
    assert_eq!(
        ep(&vhost, &both[..4]).as_deref(),
        Some("http://cache.generic:1")
    );
    // AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: AWS, in the region given.
    let mut ignore = both.to_vec();
    ignore.extend([
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ("AWS_REGION", "eu-west-1"),
    ]);
    assert_eq!(
        ep(&none, &ignore).as_deref(),
        Some("https://s3.eu-west-1.amazonaws.com")
    );
    assert_eq!(ep(&cfg, &ignore).as_deref(), Some("http://cfg:3"));
    // An empty one is a clear error, not requests to nowhere.
    let e = configured(&none, &[("HOME", h.as_str()), ("AWS_ENDPOINT_URL", "")]).unwrap_err();
    assert_eq!(e.kind, TierErrorKind::Config, "{e}");
    // Plain http is allowed exactly when the endpoint is http.
    let (b, _) = configured(&none, &both).unwrap();
    assert_eq!(
        value(&b, Key::Client(ClientConfigKey::AllowHttp)).as_deref(),
        Some("true")
    );
}

#[test]
fn the_config_region_wins_then_the_env_then_the_profile() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = from-profile\n",
    )
    .unwrap();
    let h = home.path().display().to_string();
    let region = |cfg: &S3Config, pairs: &[(&str, &str)]| {
        let (b, _) = configured(cfg, pairs).unwrap();
        value(&b, Key::Region).unwrap()
    };
    let none = s3(serde_json::json!({}));
    let cfg = s3(serde_json::json!({ "region": "from-config" }));
    let env = [
        ("HOME", h.as_str()),
        ("AWS_DEFAULT_REGION", "default-region"),
        ("AWS_REGION", "aws-region"),
    ];
    assert_eq!(region(&cfg, &env), "from-config");
    assert_eq!(region(&none, &env), "aws-region");
    assert_eq!(region(&none, &[env[0], env[1]]), "default-region");
    assert_eq!(region(&none, &env[..1]), "from-profile");
    let (_empty, e) = empty_home();
    assert_eq!(region(&none, &[("HOME", e.as_str())]), "us-east-1");
}

#[test]
fn the_config_bucket_and_bounds_win_over_object_store_s_env() {
    let (_home, h) = empty_home();
    let pairs = [
        ("HOME", h.as_str()),
        ("AWS_BUCKET", "other"),
        ("AWS_CONNECT_TIMEOUT", "5 seconds"),
    ];
    let (b, place) = configured(&s3(serde_json::json!({})), &pairs).unwrap();
    assert_eq!(value(&b, Key::Bucket).as_deref(), Some("cache"));
    assert!(
        place.what.starts_with("s3 bucket cache at AWS"),
        "{}",
        place.what
    );
    // A bound the env sets is the user's; the others are jetcc's.
    let client = |k| value(&b, Key::Client(k));
    assert_eq!(
        client(ClientConfigKey::ConnectTimeout).as_deref(),
        Some("5 seconds")
    );
    assert_eq!(
        client(ClientConfigKey::Timeout).as_deref(),
        Some("120 seconds")
    );
}

#[test]
fn credentials_come_from_env_keys_then_the_profile_then_object_store() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[default]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = PS\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[profile proc]\ncredential_process = printf x\n\
         [profile sso]\nsso_session = corp\n",
    )
    .unwrap();
    let h = home.path().display().to_string();
    let none = s3(serde_json::json!({}));
    let creds =
        |cfg: &S3Config, pairs: &[(&str, &str)]| configured(cfg, pairs).map(|(_, p)| p.credentials);

    let keys = [
        ("HOME", h.as_str()),
        ("AWS_ACCESS_KEY_ID", "ENVKEY"),
        ("AWS_SECRET_ACCESS_KEY", "ES"),
    ];
    let c = creds(&none, &keys).unwrap();
    assert!(
        c.contains("ENVKEY") && c.contains("AWS_ACCESS_KEY_ID"),
        "{c}"
    );
    // Env keys win even over a profile that jetcc could not resolve.
    let mut with_sso = keys.to_vec();
    with_sso.push(("AWS_PROFILE", "sso"));
    assert!(creds(&none, &with_sso).unwrap().contains("ENVKEY"));
    // Half a pair is an error, not a fall-through to some other identity.
    let e = creds(&none, &keys[..2]).unwrap_err();
    assert_eq!(e.kind, TierErrorKind::Credentials, "{e}");
    assert!(e.message.contains("set both"), "{e}");

    let c = creds(&none, &keys[..1]).unwrap();
    assert!(
        c.contains("PROFILEKEY") && c.contains("profile default"),
        "{c}"
    );
    // Empty env keys count as unset, as in the AWS SDKs: the profile's are used.
    let empty = [
        keys[0],
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
    ];
    assert!(creds(&none, &empty).unwrap().contains("PROFILEKEY"));
    let proc_ = s3(serde_json::json!({ "profile": "proc" }));
    let c = creds(&proc_, &keys[..1]).unwrap();
    assert!(c.starts_with("credential_process of profile proc"), "{c}");
    let e = creds(&none, &[keys[0], ("AWS_PROFILE", "sso")]).unwrap_err();
    assert!(e.message.contains("sso_session"), "{e}");
    let anon = s3(serde_json::json!({ "no_credentials": true, "profile": "sso" }));
    let (b, place) = configured(&anon, &keys[..1]).unwrap();
    assert!(place.credentials.contains("no_credentials"));
    assert_eq!(value(&b, Key::SkipSignature).as_deref(), Some("true"));

    // No keys, no profile: object_store's chain, named; or an error when it has nothing.
    let (_empty, e) = empty_home();
    let bare = [("HOME", e.as_str())];
    assert!(creds(&none, &bare)
        .unwrap()
        .contains("instance credentials"));
    // With empty keys and no profile, object_store would sign with them: an error instead.
    let e = creds(
        &none,
        &[
            bare[0],
            ("AWS_ACCESS_KEY_ID", ""),
            ("AWS_SECRET_ACCESS_KEY", ""),
        ],
    )
    .unwrap_err();
    assert!(e.message.contains("set but empty"), "{e}");
    let mut pod = bare.to_vec();
    pod.extend([
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://169.254.170.23/v1/credentials",
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/token"),
    ]);
    assert!(creds(&none, &pod).unwrap().contains("EKS Pod Identity"));
    let mut irsa = bare.to_vec();
    irsa.extend([
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/irsa"),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/ci"),
    ]);
    assert!(creds(&none, &irsa)
        .unwrap()
        .contains("arn:aws:iam::1:role/ci"));
    let mut off = bare.to_vec();
    off.push(("AWS_EC2_METADATA_DISABLED", "true"));
    let e = creds(&none, &off).unwrap_err();
    assert!(e.message.contains("credential_process"), "{e}");
}

/// Roles and SSO are named by what they are and what signs them; env keys that a profile
/// says assume a role sign only the AssumeRole, while other profiles leave env keys first.
#[test]
fn roles_and_sso_profiles_are_named_and_env_keys_assume_a_role_when_told() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[profile base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = BS\n\
         [profile ci]\nrole_arn = arn:aws:iam::1:role/ci\nsource_profile = base\n\
         region = eu-west-1\n\
         [profile envrole]\nrole_arn = arn:aws:iam::1:role/env\ncredential_source = Environment\n\
         [profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = Developer\n\
         [sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = eu-west-1\n",
    )
    .unwrap();
    let h = home.path().display().to_string();
    let none = s3(serde_json::json!({}));
    let creds = |pairs: &[(&str, &str)]| configured(&none, pairs).unwrap().1.credentials;
    let home_only = ("HOME", h.as_str());
    let c = creds(&[home_only, ("AWS_PROFILE", "ci")]);
    assert!(
        c.starts_with(
            "role arn:aws:iam::1:role/ci assumed through STS at https://sts.eu-west-1.amazonaws.com \
             with access key AKIDBASE from profile base in"
        ),
        "{c}"
    );
    let c = creds(&[home_only, ("AWS_PROFILE", "dev")]);
    assert!(
        c.starts_with("SSO role Developer in account 123456789012 (profile dev in"),
        "{c}"
    );
    let env_keys = [
        home_only,
        ("AWS_ACCESS_KEY_ID", "AKIDENV"),
        ("AWS_SECRET_ACCESS_KEY", "ES"),
    ];
    let mut envrole = env_keys.to_vec();
    envrole.push(("AWS_PROFILE", "envrole"));
    let (b, place) = configured(&none, &envrole).unwrap();
    assert!(
        place
            .credentials
            .starts_with("role arn:aws:iam::1:role/env assumed through STS")
            && place.credentials.contains("access key AKIDENV")
            && place
                .credentials
                .ends_with("(credential_source = Environment)"),
        "{}",
        place.credentials
    );
    // The env keys stay on the builder, but the role's provider is what signs.
    let store = b.with_bucket_name("cache").build().unwrap();
    assert!(
        format!("{:?}", store.credentials()).contains("AssumeRole(arn:aws:iam::1:role/env"),
        "{:?}",
        store.credentials()
    );
    // Any other profile: env keys first, as in the AWS SDKs.
    let mut ci = env_keys.to_vec();
    ci.push(("AWS_PROFILE", "ci"));
    assert!(creds(&ci).starts_with("access key AKIDENV from AWS_ACCESS_KEY_ID"));
}

#[test]
fn encryption_settings_reach_the_s3_client() {
    let kind: Key = "aws_server_side_encryption".parse().unwrap();
    let key: Key = "aws_sse_kms_key_id".parse().unwrap();
    let set = |enc| {
        let b = with_encryption(AmazonS3Builder::new(), enc);
        (b.get_config_value(&kind), b.get_config_value(&key))
    };
    assert_eq!(set(None), (None, None));
    assert_eq!(
        set(Some(S3Encryption::S3Managed)),
        (Some("AES256".into()), None)
    );
    assert_eq!(
        set(Some(S3Encryption::Kms { key_id: None })),
        (Some("aws:kms".into()), None)
    );
    assert_eq!(
        set(Some(S3Encryption::Kms {
            key_id: Some("arn:k".into())
        })),
        (Some("aws:kms".into()), Some("arn:k".into()))
    );
}

/// A loopback HTTP server answering one connection with `reply`; gives back the request head.
fn serve_once(reply: String) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    });
    (port, handle)
}

/// EKS Pod Identity as object_store reads it from the env (no profile, no keys): the agent
/// is asked with the token file's contents, and its keys sign the S3 request. Both servers
/// are loopback listeners (no EKS here); the wiring through `configure` is what is tested.
#[test]
fn container_credentials_from_the_env_sign_the_requests() {
    use object_store::ObjectStoreExt;
    let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let body = format!(
        r#"{{"AccessKeyId":"PODKEY","SecretAccessKey":"PODSECRET","Token":"PODTOKEN","Expiration":"{expires}"}}"#
    );
    let (agent_port, agent) = serve_once(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    ));
    let (s3_port, s3_server) = serve_once(
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
    );
    let (home, h) = empty_home();
    let token = home.path().join("pod-token");
    std::fs::write(&token, "POD-AUTH").unwrap();
    let full_uri = format!("http://127.0.0.1:{agent_port}/v1/credentials");
    let token_file = token.display().to_string();
    let cfg = s3(serde_json::json!({ "endpoint": format!("http://127.0.0.1:{s3_port}") }));
    let (b, place) = configured(
        &cfg,
        &[
            ("HOME", h.as_str()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", full_uri.as_str()),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.as_str(),
            ),
        ],
    )
    .unwrap();
    assert!(place.credentials.contains("EKS Pod Identity"), "{place:?}");
    let store = b.build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = rt.block_on(store.head(&object_store::path::Path::from("probe")));
    assert!(got.is_err(), "404");
    let asked = agent.join().unwrap();
    assert!(asked.starts_with("get /v1/credentials"), "{asked}");
    assert!(asked.contains("authorization: pod-auth"), "{asked}");
    let signed = s3_server.join().unwrap();
    assert!(signed.contains("credential=podkey/"), "{signed}");
    assert!(
        signed.contains("x-amz-security-token: podtoken"),
        "{signed}"
    );
}
