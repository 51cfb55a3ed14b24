//! STS `AssumeRole`, for profiles with `role_arn` and `source_profile` or
//! `credential_source`: a form POST (`Action=AssumeRole&Version=2011-06-15&RoleArn=…&
//! RoleSessionName=…`, with `ExternalId` and `DurationSeconds` when the profile sets them),
//! SigV4-signed for service `sts` by object_store's `AwsAuthorizer` with the source's
//! credentials, answered with XML `Credentials`. It runs behind `refresh::Refreshing`: once
//! per process at the first request, again near `Expiration`.

use std::time::SystemTime;

use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use serde::Deserialize;
use std::sync::Arc;

use super::refresh::{parse_expiration, AwsProvider, CredentialError, Fetch, Fetched};
use super::service::{self, Answer};

/// What the profile says about the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleParams {
    pub role_arn: String,
    /// `role_session_name`; else `jetcc-<unix seconds>`.
    pub session_name: Option<String>,
    pub external_id: Option<String>,
    pub duration_seconds: Option<u32>,
}

/// Where STS is, and the region its calls are signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsEndpoint {
    pub url: String,
    pub region: String,
}

/// One role to assume with the `source`'s credentials.
pub struct AssumeRole {
    pub role: RoleParams,
    pub sts: StsEndpoint,
    /// The profile that names the role, for diagnoses.
    pub profile: String,
    pub source: AwsProvider,
    /// What `source` is, in words (`access key AKIA… from profile base in …`).
    pub source_desc: String,
}

impl std::fmt::Debug for AssumeRole {
    // Not the source provider: object_store's static one would show its secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AssumeRole({} with {})",
            self.role.role_arn, self.source_desc
        )
    }
}

#[async_trait::async_trait]
impl Fetch for AssumeRole {
    type Error = CredentialError;

    async fn fetch(&self) -> Result<Fetched, CredentialError> {
        let fail = |why: String| CredentialError {
            what: format!(
                "role {} of AWS profile {}",
                self.role.role_arn, self.profile
            ),
            why,
        };
        let source = self.source.get_credential().await.map_err(|e| {
            fail(format!(
                "the credentials to assume it with ({}) failed: {}",
                self.source_desc,
                service::inner(&e)
            ))
        })?;
        let session = self.role.session_name.clone().unwrap_or_else(|| {
            let secs = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("jetcc-{secs}")
        });
        let body = form(&self.role, &session);
        let url = &self.sts.url;
        tracing::debug!(role = %self.role.role_arn, sts = %url, "assuming a role");
        let client = service::client(url).map_err(fail)?;
        let answer = service::send(&client, &|| request(url, &body, &source, &self.sts.region))
            .await
            .map_err(|e| {
                fail(format!(
                    "cannot reach STS at {url} ({e}): is that the endpoint (AWS_ENDPOINT_URL_STS, \
                 AWS_ENDPOINT_URL, the profile's endpoint_url, its region)?"
                ))
            })?;
        parse(&answer, SystemTime::now()).map_err(|f| fail(self.advice(f)))
    }
}

impl AssumeRole {
    /// What an STS refusal means here, and what to do.
    fn advice(&self, f: Failure) -> String {
        let (status, code, message) = match f {
            Failure::Malformed(why) => {
                return format!(
                    "STS at {} answered with {why}: is that an STS endpoint?",
                    self.sts.url
                )
            }
            Failure::Refused {
                status,
                code,
                message,
            } => (status, code, message),
        };
        let said = format!("STS refused ({status} {code}: {message})");
        let source = &self.source_desc;
        match code.as_str() {
            "AccessDenied" => format!(
                "{said}: let {source} assume it (the role's trust policy, and sts:AssumeRole \
                 in the source's own policy), or fix role_arn"
            ),
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "IncompleteSignature"
            | "InvalidAccessKeyId"
            | "UnrecognizedClientException" => format!(
                "{said}: STS does not accept the credentials to assume it with ({source}): \
                 fix them"
            ),
            "ExpiredToken" | "ExpiredTokenException" => {
                format!("{said}: the session token of {source} has expired: refresh it")
            }
            "RegionDisabledException" => format!(
                "{said}: activate STS in region {} (IAM account settings), or set the \
                 profile's region (AWS_REGION)",
                self.sts.region
            ),
            _ => format!(
                "{said}: check role_arn, external_id, duration_seconds and role_session_name"
            ),
        }
    }
}

/// The request's form body.
fn form(role: &RoleParams, session: &str) -> String {
    let duration = role.duration_seconds.map(|d| d.to_string());
    let mut pairs = vec![
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role.role_arn.as_str()),
        ("RoleSessionName", session),
    ];
    if let Some(id) = &role.external_id {
        pairs.push(("ExternalId", id));
    }
    if let Some(d) = &duration {
        pairs.push(("DurationSeconds", d));
    }
    service::form(&pairs)
}

/// The signed POST to STS at `url`.
fn request(
    url: &str,
    body: &str,
    credential: &AwsCredential,
    region: &str,
) -> Result<HttpRequest, String> {
    // object_store's signer takes these into headers unchecked (and panics on a bad one).
    let printable = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b));
    if !printable(&credential.key_id)
        || !credential.token.as_deref().is_none_or(printable)
        || credential.secret_key.is_empty()
    {
        return Err(
            "the credentials to assume it with have an empty or non-ASCII key id, secret or \
             session token: fix them"
                .to_owned(),
        );
    }
    let uri = match url.split_once("://").map(|(_, rest)| rest.contains('/')) {
        Some(true) => url.to_owned(),
        _ => format!("{url}/"),
    };
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri(&uri)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(HttpRequestBody::from(body.to_owned()))
        .map_err(|e| format!("STS endpoint {url} is not a URL: {e}"))?;
    AwsAuthorizer::new(credential, "sts", region)
        .try_authorize(&mut req, None)
        .map_err(|e| format!("cannot sign the AssumeRole request: {e}"))?;
    Ok(req)
}

/// Why STS gave no credentials.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// An AWS error: status, `Code` and `Message`.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// Not what STS answers.
    Malformed(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResponse {
    assume_role_result: AssumeRoleResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleResult {
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorResponse {
    error: StsError,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsError {
    code: String,
    #[serde(default)]
    message: String,
}

/// STS's answer as credentials, or why not. Errors never quote the credentials.
fn parse(answer: &Answer, now: SystemTime) -> Result<Fetched, Failure> {
    let text = std::str::from_utf8(&answer.body).map_err(|_| {
        Failure::Malformed(format!("{} and a body that is not text", answer.status))
    })?;
    if !(200..300).contains(&answer.status) {
        return match quick_xml::de::from_str::<ErrorResponse>(text) {
            Ok(e) => Err(Failure::Refused {
                status: answer.status,
                code: e.error.code.trim().to_owned(),
                message: e.error.message.trim().to_owned(),
            }),
            Err(_) => Err(Failure::Malformed(format!(
                "{} and no AWS error in its body",
                answer.status
            ))),
        };
    }
    let resp: AssumeRoleResponse = quick_xml::de::from_str(text).map_err(|_| {
        Failure::Malformed(format!(
            "{} but no AssumeRoleResult with Credentials (AccessKeyId, SecretAccessKey, \
             SessionToken, Expiration)",
            answer.status
        ))
    })?;
    let c = resp.assume_role_result.credentials;
    let expires = parse_expiration(&c.expiration, now).map_err(Failure::Malformed)?;
    if c.access_key_id.trim().is_empty() || c.secret_access_key.trim().is_empty() {
        return Err(Failure::Malformed(
            "credentials without an AccessKeyId or SecretAccessKey".to_owned(),
        ));
    }
    Ok(Fetched {
        credential: Arc::new(AwsCredential {
            key_id: c.access_key_id.trim().to_owned(),
            secret_key: c.secret_access_key.trim().to_owned(),
            token: Some(c.session_token.trim().to_owned()).filter(|t| !t.is_empty()),
        }),
        expires: Some(expires),
    })
}

#[cfg(test)]
#[path = "sts_tests.rs"]
mod tests;
