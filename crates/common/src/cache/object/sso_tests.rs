use super::*;

fn profile(session: Option<&str>, cache_dir: PathBuf, portal: &str) -> SsoProfile {
    SsoProfile {
        profile: "dev".into(),
        session: session.map(str::to_owned),
        start_url: "https://d-1234567890.awsapps.com/start".into(),
        region: "eu-west-1".into(),
        account_id: "123456789012".into(),
        role_name: "Developer".into(),
        portal: portal.into(),
        cache_dir,
    }
}

#[test]
fn the_token_file_is_named_by_the_sha1_of_the_session_or_the_start_url() {
    // SHA-1("abc"), FIPS 180's own example.
    assert_eq!(sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    let dir = PathBuf::from("/h/.aws/sso/cache");
    let with_session = profile(Some("abc"), dir.clone(), "");
    assert_eq!(
        with_session.token_file(),
        dir.join("a9993e364706816aba3e25717850c26c9cd0d89d.json")
    );
    let legacy = profile(None, dir.clone(), "");
    assert_eq!(
        legacy.token_file(),
        dir.join(format!(
            "{}.json",
            sha1_hex("https://d-1234567890.awsapps.com/start")
        ))
    );
    assert_ne!(legacy.token_file(), with_session.token_file());
}

#[test]
fn a_token_is_read_until_it_expires() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
    let file = |json: &str| Ok(json.as_bytes().to_vec());
    let good = r#"{"startUrl": "https://d-1234567890.awsapps.com/start", "region": "eu-west-1",
        "accessToken": "aoaAAAAA-token", "expiresAt": "2023-11-15T06:00:00Z",
        "clientId": "c", "refreshToken": "r"}"#;
    assert_eq!(read_token(&file(good), now).unwrap(), "aoaAAAAA-token");
    // Older AWS CLIs wrote times ending in UTC.
    let old = r#"{"accessToken": "t", "expiresAt": "2023-11-15T06:00:00UTC"}"#;
    assert_eq!(read_token(&file(old), now).unwrap(), "t");
    let missing = Err(std::io::Error::from(std::io::ErrorKind::NotFound));
    for (f, says) in [
        (missing, "does not exist"),
        (
            file(r#"{"accessToken": "t", "expiresAt": "2023-11-14T22:00:00Z"}"#),
            "expired at 2023-11-14T22:00:00Z",
        ),
        (
            // Within the minute jetcc keeps as a margin: expired for a build.
            file(r#"{"accessToken": "t", "expiresAt": "2023-11-14T22:13:50Z"}"#),
            "expired at",
        ),
        (
            file(r#"{"expiresAt": "2023-11-15T06:00:00Z"}"#),
            "no accessToken",
        ),
        (file(r#"{"accessToken": "t"}"#), "no expiresAt"),
        (
            file(r#"{"accessToken": "t", "expiresAt": "tomorrow"}"#),
            "not a time",
        ),
        (file("garbage"), "not JSON"),
    ] {
        let why = read_token(&f, now).unwrap_err();
        assert!(why.contains(says), "{why}");
        assert!(!why.contains("aoaAAAAA"), "{why}");
    }
}

#[test]
fn role_credentials_and_refusals_from_the_portal() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ok = Answer {
        status: 200,
        body: br#"{"roleCredentials":{"accessKeyId":"ASIAEXAMPLE","secretAccessKey":"SECRETEXAMPLE","sessionToken":"TOKENEXAMPLE","expiration":1700003600000}}"#
            .to_vec()
            .into(),
    };
    let f = parse(&ok, now).unwrap();
    assert_eq!(f.credential.key_id, "ASIAEXAMPLE");
    assert_eq!(f.credential.secret_key, "SECRETEXAMPLE");
    assert_eq!(f.credential.token.as_deref(), Some("TOKENEXAMPLE"));
    assert_eq!(f.expires, Some(now + Duration::from_secs(3600)));
    let refused = Answer {
        status: 401,
        body: br#"{"message":"Session token not found or invalid","__type":"com.amazonaws.switchboard.portal#UnauthorizedException"}"#
            .to_vec()
            .into(),
    };
    assert_eq!(
        parse(&refused, now).err().unwrap(),
        "401 UnauthorizedException: Session token not found or invalid"
    );
    let bare = Answer {
        status: 500,
        body: Default::default(),
    };
    assert_eq!(parse(&bare, now).err().unwrap(), "500");
    let wrong = Answer {
        status: 200,
        body: br#"{"roleCredentials":{"accessKeyId":"A"}}"#.to_vec().into(),
    };
    assert!(parse(&wrong, now)
        .unwrap_err()
        .contains("no roleCredentials"));
    let expired = Answer {
        status: 200,
        body: br#"{"roleCredentials":{"accessKeyId":"A","secretAccessKey":"S","expiration":1000}}"#
            .to_vec()
            .into(),
    };
    assert!(parse(&expired, now).unwrap_err().contains("expired"));
}

/// A stand-in for the portal on loopback (the real one is not reachable from here): it
/// records the request line and the bearer header, and answers `status` with `body`.
async fn portal_once(status: u16, body: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(reply.as_bytes()).await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (url, task)
}

#[test]
fn the_portal_is_asked_with_the_cached_token_and_a_refusal_says_to_log_in() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    rt.block_on(async {
        let (url, seen) = portal_once(
            200,
            r#"{"roleCredentials":{"accessKeyId":"ASIAEXAMPLE","secretAccessKey":"S","sessionToken":"T","expiration":4102444800000}}"#,
        )
        .await;
        let p = profile(Some("corp"), cache.clone(), &url);
        // Not signed in: no request, and what to run.
        let e = p.fetch().await.unwrap_err();
        assert!(e.why.contains("does not exist"), "{e}");
        assert!(e.why.contains("aws sso login --profile dev"), "{e}");
        assert!(e.what.contains("SSO role Developer in account 123456789012"), "{e}");

        let later = chrono::Utc::now() + chrono::Duration::hours(8);
        std::fs::write(
            p.token_file(),
            format!(
                r#"{{"accessToken": "bearer-xyz", "expiresAt": "{}"}}"#,
                later.format("%Y-%m-%dT%H:%M:%SZ")
            ),
        )
        .unwrap();
        let f = p.fetch().await.unwrap();
        assert_eq!(f.credential.key_id, "ASIAEXAMPLE");
        let head = seen.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with(
                "get /federation/credentials?role_name=developer&account_id=123456789012 http/1.1"
            ),
            "{head}"
        );
        assert!(head.contains("x-amz-sso_bearer_token: bearer-xyz"), "{head}");

        let (url, _seen) = portal_once(
            401,
            r#"{"message":"Session token not found or invalid","__type":"com.amazonaws.switchboard.portal#UnauthorizedException"}"#,
        )
        .await;
        let p = SsoProfile { portal: url, ..p };
        let e = p.fetch().await.unwrap_err();
        assert!(e.why.contains("UnauthorizedException"), "{e}");
        assert!(e.why.contains("aws sso login --profile dev"), "{e}");
        assert!(!e.to_string().contains("bearer-xyz"), "{e}");
    });
}
