//! Turning an `object_store` error into what went wrong, in plain words, and what to set.
//!
//! The S3 error code in the response body (`NoSuchBucket`, `SignatureDoesNotMatch`, …) is the
//! most precise signal; transport errors are told apart by their text, the only thing
//! `object_store` exposes of them.

use super::credential_process::ProcessError;
use super::refresh::CredentialError;
use super::{Place, TierError, TierErrorKind};

/// The whole error chain, lowercased, for matching.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// Whether a not-found error is about the bucket, not the object.
pub(super) fn no_such_bucket(e: &object_store::Error) -> bool {
    let text = chain(e);
    text.contains("NoSuchBucket") || text.contains("ContainerNotFound")
}

/// The useful part of an error: the server's code and message if it sent one, else the
/// innermost cause (`Connection refused`), not `object_store`'s whole repeated chain.
fn detail(e: &(dyn std::error::Error + 'static), full: &str) -> String {
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let start = full.find(&open)? + open.len();
        let end = full[start..].find(&format!("</{t}>"))?;
        Some(full[start..start + end].trim().to_owned())
    };
    if let Some(code) = tag("Code") {
        return match tag("Message") {
            Some(m) => format!("{code}: {m}"),
            None => code,
        };
    }
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    inner.to_string()
}

/// Our own credential source's failure under object_store's error, if that is what it is.
fn ours<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(p) = err.downcast_ref::<T>() {
            return Some(p);
        }
        cur = err.source();
    }
    None
}

pub(super) fn diagnose(place: &Place, op: &str, e: &object_store::Error) -> TierError {
    if let Some(c) = ours::<CredentialError>(e) {
        // A role or an SSO sign-in: the error says what failed and what to do.
        return TierError::new(
            TierErrorKind::Credentials,
            format!("{}: cannot {op}: {c}", place.what),
        );
    }
    if let Some(p) = ours::<ProcessError>(e) {
        return TierError::new(
            TierErrorKind::Credentials,
            format!(
                "{}: cannot {op}: {p}: run it by hand to see what it prints and fix it, or \
                 export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                place.what
            ),
        );
    }
    let full = chain(e);
    let lower = full.to_ascii_lowercase();
    let has = |s: &str| lower.contains(&s.to_ascii_lowercase());
    let what = &place.what;
    let endpoint = place.endpoint.as_deref().unwrap_or("the server");
    let creds = &place.credentials;
    let plain_http = endpoint.starts_with("http://");
    use TierErrorKind::*;
    let (kind, advice) = if has("NoSuchBucket") || has("ContainerNotFound") {
        (
            NoBucket,
            "the bucket does not exist: create it, or set the right bucket".to_owned(),
        )
    } else if has("AuthorizationHeaderMalformed")
        || has("IllegalLocationConstraint")
        || has("PermanentRedirect")
        || (has("region") && has("is wrong"))
    {
        (
            WrongRegion,
            "the request was signed for another region than the server's: set [cache.s3] \
             region (a MinIO server's is its MINIO_REGION, us-east-1 unless set)"
                .to_owned(),
        )
    } else if has("SignatureDoesNotMatch") {
        (
            Credentials,
            format!(
                "the secret key does not match the {creds}: fix it there \
                 (AWS_SECRET_ACCESS_KEY, the profile's aws_secret_access_key, or what its \
                 credential_process prints)"
            ),
        )
    } else if has("InvalidAccessKeyId") {
        (
            Credentials,
            format!("the server does not know the {creds}: fix AWS_ACCESS_KEY_ID or the profile"),
        )
    } else if (has("credential") && (has("error getting") || has("failed to")))
        || has("169.254.169.254")
        || has("169.254.170.2")
    {
        (
            Credentials,
            super::s3::no_credentials_hint(what.split_whitespace().nth(2).unwrap_or("")),
        )
    } else if matches!(e, object_store::Error::PermissionDenied { .. })
        || matches!(e, object_store::Error::Unauthenticated { .. })
        || has("AccessDenied")
        || has("403 Forbidden")
    {
        (
            Forbidden,
            format!(
                "the server refused to {op} with the {creds}: grant it, or set \
                 rw_mode = \"READ_ONLY\" on a client that should only read"
            ),
        )
    } else if has("certificate")
        || has("InvalidContentType")
        || has("corrupt message")
        || has("wrong version number")
        || has("tls handshake")
        || has("HTTP request to an HTTPS server")
        || (plain_http && has("connection closed before message completed"))
    {
        (
            Tls,
            if plain_http {
                "the server seems to speak TLS: use an https:// endpoint (or use_ssl = true)"
            } else {
                "TLS failed: a plain-HTTP server needs an http:// endpoint (or use_ssl = \
                 false); a self-signed one, its CA in SSL_CERT_FILE"
            }
            .to_owned(),
        )
    } else if has("connection refused")
        || has("dns error")
        || has("failed to lookup")
        || has("no route to host")
        || has("network is unreachable")
        || has("timed out")
        || has("timeout")
        || has("error sending request")
        || has("connection reset")
        || has("connection closed")
    {
        (
            Unreachable,
            format!("cannot reach {endpoint}: is the server up, and is the endpoint right?"),
        )
    } else if matches!(e, object_store::Error::NotFound { .. }) {
        (
            NoBucket,
            "not found: does the bucket (or dir) exist?".to_owned(),
        )
    } else {
        (Other, "see the error above".to_owned())
    };
    let detail = detail(e, &full);
    TierError::new(kind, format!("{what}: cannot {op}: {advice} ({detail})"))
}
