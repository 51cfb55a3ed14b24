//! An AWS profile's `credential_process`, as the AWS SDKs run it: the command (through
//! `sh -c`) prints `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken",
//! "Expiration"}` on stdout. It runs behind `refresh::Refreshing`: at the first request that
//! needs it, once per process until the credentials come within a minute of their
//! `Expiration`, and a failure is kept for the process.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::AwsCredential;
use serde_json::Value;

use super::refresh::{parse_expiration, Fetch, Fetched, Refreshing};

/// Longest a credential_process may take: a build waits on it.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How much of the command's stderr a diagnosis quotes.
const STDERR_TAIL: usize = 400;

/// The command of a profile's `credential_process`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialProcess {
    pub command: String,
    /// The profile it is in, for diagnoses.
    pub profile: String,
}

/// Why a credential_process gave no credentials (its stdout is never quoted: it holds keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the credential_process of AWS profile {profile} (`{command}`) {why}")]
pub struct ProcessError {
    pub profile: String,
    pub command: String,
    pub why: String,
}

/// The provider object_store asks before each request.
pub type ProcessProvider = Refreshing<CredentialProcess>;

#[async_trait::async_trait]
impl Fetch for CredentialProcess {
    type Error = ProcessError;

    async fn fetch(&self) -> Result<Fetched, ProcessError> {
        let fail = |why: String| ProcessError {
            profile: self.profile.clone(),
            command: self.command.clone(),
            why,
        };
        tracing::debug!(profile = %self.profile, "running credential_process");
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("could not be started: {e}")))?;
        let out = match tokio::time::timeout(TIMEOUT, child.wait_with_output()).await {
            Err(_) => {
                return Err(fail(format!(
                    "did not finish within {} s",
                    TIMEOUT.as_secs()
                )))
            }
            Ok(Err(e)) => return Err(fail(format!("failed: {e}"))),
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            return Err(fail(format!(
                "failed ({}){}",
                out.status,
                stderr_tail(&out.stderr)
            )));
        }
        parse(&out.stdout, SystemTime::now()).map_err(fail)
    }
}

/// `: <the last lines of stderr>`, or nothing when it said nothing.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let mut start = text.len().saturating_sub(STDERR_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = if start > 0 { "…" } else { "" };
    format!(": {cut}{}", &text[start..])
}

/// The command's stdout as credentials. Errors name fields, never values.
fn parse(stdout: &[u8], now: SystemTime) -> Result<Fetched, String> {
    const SHAPE: &str = "{\"Version\": 1, \"AccessKeyId\": …, \"SecretAccessKey\": …}";
    let v: Value = serde_json::from_slice(stdout)
        .map_err(|_| format!("printed something that is not JSON (it must print {SHAPE})"))?;
    if !v.is_object() {
        return Err(format!(
            "printed JSON that is not an object (it must print {SHAPE})"
        ));
    }
    if v.get("Version").and_then(Value::as_u64) != Some(1) {
        return Err("printed JSON without \"Version\": 1 (the only version AWS defines)".into());
    }
    let text = |name: &str| -> Result<Option<String>, String> {
        match v.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(format!("printed a {name} that is not a string")),
        }
    };
    let key_id = text("AccessKeyId")?.ok_or("printed no AccessKeyId")?;
    let secret_key = text("SecretAccessKey")?.ok_or("printed no SecretAccessKey")?;
    let token = text("SessionToken")?;
    let expires = match text("Expiration")? {
        None => None,
        Some(t) => Some(parse_expiration(&t, now).map_err(|e| format!("printed {e}"))?),
    };
    Ok(Fetched {
        credential: Arc::new(AwsCredential {
            key_id,
            secret_key,
            token,
        }),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::CredentialProvider;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn provider(command: &str) -> ProcessProvider {
        ProcessProvider::new(CredentialProcess {
            command: command.into(),
            profile: "ci".into(),
        })
    }

    #[test]
    fn the_json_aws_defines_is_read_and_checked() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let f = parse(
            br#"{"Version": 1, "AccessKeyId": "AK", "SecretAccessKey": "SK",
                 "SessionToken": "T", "Expiration": "2027-01-15T08:00:00+00:00"}"#,
            now,
        )
        .unwrap();
        assert_eq!(
            (
                f.credential.key_id.as_str(),
                f.credential.secret_key.as_str()
            ),
            ("AK", "SK")
        );
        assert_eq!(f.credential.token.as_deref(), Some("T"));
        // 2027-01-15T08:00:00Z
        assert_eq!(
            f.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        // Without Expiration or SessionToken: long-term keys.
        let f = parse(
            br#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":"S"}"#,
            now,
        )
        .unwrap();
        assert!(f.expires.is_none() && f.credential.token.is_none());
        assert!(f.fresh(now + Duration::from_secs(10 << 20)));

        let secret = "very-secret-value";
        for (out, says) in [
            ("not json".to_owned(), "not JSON"),
            ("[1]".to_owned(), "not an object"),
            (
                format!(r#"{{"AccessKeyId":"A","SecretAccessKey":"{secret}"}}"#),
                "\"Version\": 1",
            ),
            (
                format!(r#"{{"Version":2,"AccessKeyId":"A","SecretAccessKey":"{secret}"}}"#),
                "\"Version\": 1",
            ),
            (
                format!(r#"{{"Version":1,"SecretAccessKey":"{secret}"}}"#),
                "no AccessKeyId",
            ),
            (
                r#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":""}"#.to_owned(),
                "no SecretAccessKey",
            ),
            (
                r#"{"Version":1,"AccessKeyId":"A","SecretAccessKey":7}"#.to_owned(),
                "SecretAccessKey that is not a string",
            ),
            (
                format!(
                    r#"{{"Version":1,"AccessKeyId":"A","SecretAccessKey":"{secret}","Expiration":"soon"}}"#
                ),
                "not an RFC 3339 time",
            ),
            (
                format!(
                    r#"{{"Version":1,"AccessKeyId":"A","SecretAccessKey":"{secret}","Expiration":"2020-01-01T00:00:00Z"}}"#
                ),
                "expired at 2020-01-01T00:00:00Z",
            ),
        ] {
            let e = parse(out.as_bytes(), now).err().unwrap();
            assert!(e.contains(says), "{out}: {e}");
            assert!(!e.contains(secret), "a secret in an error: {e}");
        }
    }

    #[test]
    fn credentials_close_to_their_expiration_are_not_fresh() {
        let now = SystemTime::now();
        let f = |secs| Fetched {
            credential: Arc::new(AwsCredential {
                key_id: "A".into(),
                secret_key: "S".into(),
                token: None,
            }),
            expires: Some(now + Duration::from_secs(secs)),
        };
        assert!(f(3600).fresh(now));
        assert!(!f(30).fresh(now), "within the margin");
    }

    #[test]
    fn the_command_runs_once_per_process_while_its_keys_are_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("runs");
        let p = provider(&format!(
            "echo run >> '{}'; printf '%s' '{{\"Version\":1,\"AccessKeyId\":\"AK\",\"SecretAccessKey\":\"SK\"}}'",
            count.display()
        ));
        rt().block_on(async {
            let (a, b) = tokio::join!(p.credential(), p.credential());
            assert_eq!(a.unwrap().key_id, "AK");
            assert_eq!(b.unwrap().secret_key, "SK");
            p.credential().await.unwrap();
        });
        let runs = std::fs::read_to_string(&count).unwrap();
        assert_eq!(runs.lines().count(), 1, "{runs}");

        // Keys within a minute of their expiration: fetched again at each use.
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        let p = provider(&format!(
            "echo run >> '{}'; printf '%s' '{{\"Version\":1,\"AccessKeyId\":\"AK\",\"SecretAccessKey\":\"SK\",\"Expiration\":\"{}\"}}'",
            count.display(),
            soon.to_rfc3339()
        ));
        rt().block_on(async {
            p.credential().await.unwrap();
            p.credential().await.unwrap();
        });
        let runs = std::fs::read_to_string(&count).unwrap();
        assert_eq!(runs.lines().count(), 3, "{runs}");
    }

    #[test]
    fn a_failing_command_says_why_and_is_not_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("runs");
        let p = provider(&format!(
            "echo run >> '{}'; printf 'printed-%s' key; echo 'the SSO session has expired' >&2; exit 3",
            count.display()
        ));
        rt().block_on(async {
            let e = p.credential().await.unwrap_err();
            let text = e.to_string();
            assert!(text.contains("AWS profile ci"), "{text}");
            assert!(text.contains("exit status: 3"), "{text}");
            assert!(text.contains("the SSO session has expired"), "{text}");
            assert!(
                !text.contains("printed-key"),
                "stdout is never quoted: {text}"
            );
            // As object_store sees it: our error, under its Generic one.
            let e = p.get_credential().await.unwrap_err();
            let inner = std::error::Error::source(&e).unwrap();
            assert!(inner.downcast_ref::<ProcessError>().is_some(), "{e}");
        });
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);

        let e = rt()
            .block_on(provider("/nonexistent/get-creds").credential())
            .unwrap_err();
        assert!(e.why.contains("failed"), "{e}");
        assert!(e.why.contains("127"), "sh: not found: {e}");
    }
}
