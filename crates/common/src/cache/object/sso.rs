//! IAM Identity Center (SSO) profiles, as the AWS SDKs read them after `aws sso login`: the
//! CLI's cached token, `~/.aws/sso/cache/<sha1 of the session name, or of the start URL for
//! a legacy profile>.json` (`accessToken`, `expiresAt`), is sent to the portal,
//! `GET <portal>/federation/credentials?role_name=…&account_id=…` with the header
//! `x-amz-sso_bearer_token`, which answers with JSON `roleCredentials`. jetcc never refreshes
//! the token: an expired or missing one says to run `aws sso login`. It runs behind
//! `refresh::Refreshing`: once per process at the first request, again near expiration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::AwsCredential;
use object_store::client::{HttpRequest, HttpRequestBody};
use serde_json::Value;

use super::refresh::{CredentialError, Fetch, Fetched};
use super::service::{self, Answer};

/// An SSO profile, resolved from `~/.aws/config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoProfile {
    pub profile: String,
    /// `sso_session`; `None` for a legacy profile (`sso_start_url` on the profile).
    pub session: Option<String>,
    pub start_url: String,
    pub region: String,
    pub account_id: String,
    pub role_name: String,
    /// `https://portal.sso.<sso_region>.amazonaws.com`, unless an endpoint is configured.
    pub portal: String,
    /// `~/.aws/sso/cache`
    pub cache_dir: PathBuf,
}

impl SsoProfile {
    /// The token file the AWS CLI wrote at `aws sso login`.
    pub fn token_file(&self) -> PathBuf {
        let key = self.session.as_deref().unwrap_or(&self.start_url);
        self.cache_dir.join(format!("{}.json", sha1_hex(key)))
    }

    fn login(&self) -> String {
        format!("run `aws sso login --profile {}`", self.profile)
    }
}

fn sha1_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait::async_trait]
impl Fetch for SsoProfile {
    type Error = CredentialError;

    async fn fetch(&self) -> Result<Fetched, CredentialError> {
        let fail = |why: String| CredentialError {
            what: format!(
                "SSO role {} in account {} of AWS profile {}",
                self.role_name, self.account_id, self.profile
            ),
            why,
        };
        let file = self.token_file();
        let token = read_token(&std::fs::read(&file), SystemTime::now()).map_err(|why| {
            fail(format!(
                "the SSO token {} {why}: {}",
                file.display(),
                self.login()
            ))
        })?;
        let url = format!(
            "{}/federation/credentials?{}",
            self.portal,
            service::form(&[
                ("role_name", &self.role_name),
                ("account_id", &self.account_id)
            ])
        );
        tracing::debug!(profile = %self.profile, portal = %self.portal, "asking the SSO portal");
        let client = service::client(&url).map_err(fail)?;
        let answer = service::send(&client, &|| request(&url, &token))
            .await
            .map_err(|e| {
                fail(format!(
                    "cannot reach the SSO portal at {} ({e}): is sso_region right?",
                    self.portal
                ))
            })?;
        parse(&answer, SystemTime::now()).map_err(|why| {
            fail(match answer.status {
                401 => format!(
                    "the portal no longer accepts the cached token ({why}): {}",
                    self.login()
                ),
                403 | 404 => format!(
                    "the portal refused ({why}): is role {} in account {} assigned to you? \
                     Fix sso_role_name and sso_account_id, or ask for it",
                    self.role_name, self.account_id
                ),
                _ => format!("the portal answered {why}"),
            })
        })
    }
}

/// The `accessToken` of a token file, read (`file`) at `now`; `Err` says what is wrong with
/// it (never its contents).
fn read_token(file: &std::io::Result<Vec<u8>>, now: SystemTime) -> Result<String, String> {
    let bytes = match file {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("does not exist (not signed in)".to_owned())
        }
        Err(e) => return Err(format!("cannot be read ({e})")),
    };
    let v: Value = serde_json::from_slice(bytes).map_err(|_| "is not JSON".to_owned())?;
    let token = v
        .get("accessToken")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("has no accessToken")?;
    let expires = v
        .get("expiresAt")
        .and_then(Value::as_str)
        .ok_or("has no expiresAt")?;
    // Older AWS CLIs wrote `2019-11-14T04:05:45UTC`.
    let rfc3339 = match expires.strip_suffix("UTC") {
        Some(t) => format!("{t}Z"),
        None => expires.to_owned(),
    };
    let at = chrono::DateTime::parse_from_rfc3339(&rfc3339)
        .map_err(|_| format!("has an expiresAt that is not a time ({expires:?})"))?;
    if SystemTime::from(at) <= now + super::refresh::MARGIN {
        return Err(format!("expired at {expires}"));
    }
    if !token.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err("has an accessToken that is not printable ASCII".to_owned());
    }
    Ok(token.to_owned())
}

fn request(url: &str, token: &str) -> Result<HttpRequest, String> {
    http::Request::builder()
        .method(http::Method::GET)
        .uri(url)
        .header("x-amz-sso_bearer_token", token)
        .body(HttpRequestBody::empty())
        .map_err(|e| format!("the SSO portal URL {url} is not a URL: {e}"))
}

/// The portal's answer as credentials; `Err` is the refusal as the portal put it (status,
/// type, message), never the credentials.
fn parse(answer: &Answer, now: SystemTime) -> Result<Fetched, String> {
    let v: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let field = |name: &str| {
        v.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if !(200..300).contains(&answer.status) {
        // `{"message": "…", "__type": "com.amazonaws.switchboard.portal#UnauthorizedException"}`
        let kind = field("__type")
            .map(|t| t.rsplit('#').next().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let message = field("message").unwrap_or_default();
        return Err(format!("{} {kind}: {message}", answer.status)
            .trim_end_matches([' ', ':'])
            .to_owned());
    }
    let shape = "no roleCredentials (accessKeyId, secretAccessKey, sessionToken, expiration)";
    let rc = v
        .as_ref()
        .and_then(|v| v.get("roleCredentials"))
        .ok_or(format!("{} but {shape}", answer.status))?;
    let text = |name: &str| {
        rc.get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (Some(key_id), Some(secret_key)) = (text("accessKeyId"), text("secretAccessKey")) else {
        return Err(format!("{} but {shape}", answer.status));
    };
    // Milliseconds since the epoch.
    let expires = rc
        .get("expiration")
        .and_then(Value::as_u64)
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
        .ok_or(format!("{} but {shape}", answer.status))?;
    if expires <= now {
        return Err(format!(
            "{} but credentials that have expired",
            answer.status
        ));
    }
    Ok(Fetched {
        credential: Arc::new(AwsCredential {
            key_id,
            secret_key,
            token: text("sessionToken"),
        }),
        expires: Some(expires),
    })
}

#[cfg(test)]
#[path = "sso_tests.rs"]
mod tests;
