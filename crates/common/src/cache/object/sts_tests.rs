use super::*;
use std::time::Duration;

/// The answer in AWS's AssumeRole documentation (the session token on one line).
const AWS_DOCS_ANSWER: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
  <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>
       AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==
      </SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>"#;

/// The error AWS documents for a role the caller may not assume.
const AWS_ACCESS_DENIED: &str = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:iam::123456789012:user/dev is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/ci</Message>
  </Error>
  <RequestId>4bd1c47c-1a0a-4c5e-8f2a-2d1c2ab5b4c1</RequestId>
</ErrorResponse>"#;

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        body: bytes::Bytes::from(body.to_owned()),
    }
}

fn before_2019() -> SystemTime {
    // 2019-11-09T12:34:41Z, an hour before the documented expiration.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_573_302_881)
}

#[test]
fn the_documented_answer_gives_temporary_keys_until_their_expiration() {
    let f = parse(&answer(200, AWS_DOCS_ANSWER), before_2019()).unwrap();
    assert_eq!(f.credential.key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_eq!(
        f.credential.secret_key,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
    );
    let token = f.credential.token.as_deref().unwrap();
    assert!(
        token.starts_with("AQoDYXdzEPT//") && token.ends_with("BA=="),
        "{token}"
    );
    assert_eq!(
        f.expires,
        Some(before_2019() + Duration::from_secs(3600)),
        "2019-11-09T13:34:41Z"
    );
    // The same answer read after it expired is refused, not used.
    let late = before_2019() + Duration::from_secs(7200);
    let Err(Failure::Malformed(why)) = parse(&answer(200, AWS_DOCS_ANSWER), late) else {
        panic!("expired credentials accepted")
    };
    assert!(why.contains("expired at 2019-11-09T13:34:41Z"), "{why}");
}

#[test]
fn refusals_keep_aws_s_code_and_message_and_other_bodies_are_malformed() {
    assert_eq!(
        parse(&answer(403, AWS_ACCESS_DENIED), before_2019()).err(),
        Some(Failure::Refused {
            status: 403,
            code: "AccessDenied".into(),
            message: "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: \
                      sts:AssumeRole on resource: arn:aws:iam::123456789012:role/ci"
                .into(),
        })
    );
    for (status, body, says) in [
        (502, "<html>bad gateway</html>", "502 and no AWS error"),
        (200, "<ListBucketResult/>", "no AssumeRoleResult"),
        (200, "not xml at all", "no AssumeRoleResult"),
    ] {
        let Err(Failure::Malformed(why)) = parse(&answer(status, body), before_2019()) else {
            panic!("{body} accepted")
        };
        assert!(why.contains(says), "{body}: {why}");
    }
}

fn assume(code_says: &str) -> String {
    #[derive(Debug)]
    struct Never;
    #[async_trait::async_trait]
    impl object_store::CredentialProvider for Never {
        type Credential = AwsCredential;
        async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
            unreachable!()
        }
    }
    let a = AssumeRole {
        role: RoleParams {
            role_arn: "arn:aws:iam::1:role/ci".into(),
            session_name: None,
            external_id: None,
            duration_seconds: None,
        },
        sts: StsEndpoint {
            url: "https://sts.eu-west-1.amazonaws.com".into(),
            region: "eu-west-1".into(),
        },
        profile: "ci".into(),
        source: Arc::new(Never),
        source_desc: "access key AKIDBASE from profile base".into(),
    };
    a.advice(Failure::Refused {
        status: 403,
        code: code_says.into(),
        message: "m".into(),
    })
}

#[test]
fn each_refusal_says_what_to_do() {
    let denied = assume("AccessDenied");
    assert!(denied.contains("(403 AccessDenied: m)"), "{denied}");
    assert!(
        denied.contains("let access key AKIDBASE from profile base assume it"),
        "{denied}"
    );
    assert!(assume("InvalidClientTokenId").contains("does not accept the credentials"));
    assert!(assume("ExpiredToken").contains("has expired: refresh it"));
    assert!(assume("RegionDisabledException").contains("region eu-west-1"));
    assert!(assume("ValidationError").contains("check role_arn"));
}

#[test]
fn the_request_is_a_signed_form_post_for_sts() {
    let role = RoleParams {
        role_arn: "arn:aws:iam::123456789012:role/ci".into(),
        session_name: None,
        external_id: Some("ext 1".into()),
        duration_seconds: Some(900),
    };
    let body = form(&role, "jetcc-1");
    assert_eq!(
        body,
        "Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fci\
         &RoleSessionName=jetcc-1&ExternalId=ext%201&DurationSeconds=900"
    );
    let cred = AwsCredential {
        key_id: "AKIDBASE".into(),
        secret_key: "secret".into(),
        token: Some("TOKEN".into()),
    };
    let req = request("http://127.0.0.1:8333", &body, &cred, "eu-west-1").unwrap();
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.uri().to_string(), "http://127.0.0.1:8333/");
    let h = |n: &str| req.headers().get(n).unwrap().to_str().unwrap().to_owned();
    let auth = h("authorization");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDBASE/")
            && auth.contains("/eu-west-1/sts/aws4_request, SignedHeaders=content-type;host;"),
        "{auth}"
    );
    assert!(!auth.contains("secret"), "{auth}");
    assert_eq!(h("x-amz-security-token"), "TOKEN");
    // The body is signed (its SHA-256), not sent unsigned.
    assert_eq!(h("x-amz-content-sha256").len(), 64);
    // An endpoint with a path is taken as it is.
    let at_path = request("http://sts.lan/x/", &body, &cred, "r").unwrap();
    assert_eq!(at_path.uri().to_string(), "http://sts.lan/x/");
    // A key object_store's signer would panic on is refused instead.
    let bad = AwsCredential {
        key_id: "AK ID".into(),
        ..cred
    };
    assert!(request("http://127.0.0.1:8333", &body, &bad, "r")
        .unwrap_err()
        .contains("non-ASCII"));
}
