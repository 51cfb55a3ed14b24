//! The few AWS calls jetcc makes itself to get credentials (STS `AssumeRole`, the SSO
//! portal), through object_store's own HTTP client: bounded in time and size, retried once on
//! a transport error or a 5xx, no TLS roots loaded for a plain-http endpoint (a local STS).

use std::time::Duration;

use bytes::Bytes;
use object_store::client::{HttpClient, HttpConnector, HttpRequest, ReqwestConnector};
use object_store::ClientOptions;

/// Largest answer read: credentials are a few KiB.
const MAX_BODY: usize = 1 << 20;

/// An answer: its status and body.
pub(super) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// A client for `url` (http or https).
pub(super) fn client(url: &str) -> Result<HttpClient, String> {
    let plain_http = url.starts_with("http://");
    let options = ClientOptions::new()
        .with_allow_http(plain_http)
        .with_no_system_certificates(plain_http)
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(30));
    ReqwestConnector::default()
        .connect(&options)
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))
}

/// Sends the request `make` builds (made afresh for a retry: a signature has a time),
/// retrying once after a transport error or a 5xx. `Err` is a transport error's text.
pub(super) async fn send(
    client: &HttpClient,
    make: &(dyn Fn() -> Result<HttpRequest, String> + Sync),
) -> Result<Answer, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let last = attempt == 2;
        match client.execute(make()?).await {
            Ok(resp) if resp.status().is_server_error() && !last => {}
            Ok(resp) => {
                let status = resp.status().as_u16();
                let len = resp
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
                if len.is_some_and(|n| n > MAX_BODY) {
                    return Err(format!("an answer of {} bytes", len.unwrap_or(0)));
                }
                let body = resp
                    .into_body()
                    .bytes()
                    .await
                    .map_err(|e| format!("the answer broke off: {e}"))?;
                if body.len() > MAX_BODY {
                    return Err(format!("an answer of {} bytes", body.len()));
                }
                return Ok(Answer { status, body });
            }
            Err(e) if last => return Err(inner(&e)),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The innermost cause of an error (`Connection refused`), which says the most.
pub(super) fn inner(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text = s.to_string();
        cur = s.source();
    }
    text
}

/// `pairs` as `application/x-www-form-urlencoded` (and as a query string): every byte but
/// the unreserved ones percent-encoded, as SigV4 canonicalizes them.
pub(super) fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_encode_all_but_unreserved_bytes() {
        assert_eq!(
            form(&[
                ("Action", "AssumeRole"),
                ("RoleArn", "arn:aws:iam::123456789012:role/ci"),
                ("RoleSessionName", "a b+c/é~"),
            ]),
            "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fci\
             &RoleSessionName=a%20b%2Bc%2F%C3%A9~"
        );
    }
}
