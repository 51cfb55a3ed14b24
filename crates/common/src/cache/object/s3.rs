//! The S3 client, set up as AWS tools and sccache users expect: object_store's
//! `AmazonS3Builder::from_env()` first (every `AWS_*` variable it knows: keys, region,
//! `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_S3`, web identity, ECS and EKS Pod Identity
//! container credentials, the instance metadata service), then the `[cache.s3]` keys on top,
//! so what the config says wins. Credentials: env keys, else the AWS profile's (`super::aws`,
//! made providers by `super::chain`), else object_store's own chain. Nothing here makes a request: credentials are fetched at
//! the first request, and only a local miss makes one.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as Key};
use object_store::{ClientConfigKey, ObjectStore};

use super::aws::{Profile, ProfileCredentials};
use super::{chain, config_error, retry, Place, TierError, TierErrorKind};
use crate::config::{S3Config, S3Encryption};

/// Opens the S3 client (no request is made); `env` must be the environment `from_env` read.
pub(super) fn open(
    s3: &S3Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Arc<dyn ObjectStore>, Place), TierError> {
    let (b, place) = configure(s3, env, AmazonS3Builder::from_env())?;
    let store = b.build().map_err(|e| config_error("cache.s3", e))?;
    Ok((Arc::new(store), place))
}

/// `base` with the `[cache.s3]` settings on top; `base` is `from_env()`'s builder, `env` the
/// same environment, for what object_store does not read (`AWS_PROFILE`, the config files).
pub(super) fn configure(
    s3: &S3Config,
    env: &dyn Fn(&str) -> Option<String>,
    base: AmazonS3Builder,
) -> Result<(AmazonS3Builder, Place), TierError> {
    let var = |n: &str| env(n).filter(|v| !v.trim().is_empty());
    let set = |b: &AmazonS3Builder, k: Key| b.get_config_value(&k).filter(|v| !v.is_empty());
    let mut b = base;
    let vhost = s3.enable_virtual_host_style
        || set(&b, Key::VirtualHostedStyleRequest).as_deref() == Some("true");

    let profile = match s3.no_credentials {
        true => None,
        false => Some(Profile::find(s3.profile.as_deref(), env)?),
    };
    if let Some(r) = s3.region.as_deref().filter(|r| !r.trim().is_empty()) {
        b = b.with_region(r);
    } else if set(&b, Key::Region).is_none() {
        // AWS_REGION and AWS_DEFAULT_REGION came with from_env; then the profile's.
        let r = profile.as_ref().and_then(Profile::region);
        b = b.with_region(r.as_deref().unwrap_or("us-east-1"));
    }
    let region = b.get_config_value(&Key::Region).unwrap_or_default();

    // The endpoint: the config's, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (as the
    // AWS SDKs rank them), unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS says to ignore both.
    let ignore_env =
        var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let from_env = b
        .get_config_value(&Key::S3Endpoint)
        .or_else(|| b.get_config_value(&Key::Endpoint));
    let configured = s3.endpoint.as_deref().filter(|e| !e.trim().is_empty());
    let endpoint =
        match (configured, from_env) {
            (Some(e), _) => Some(endpoint_url(e, &s3.bucket, s3.use_ssl, vhost)),
            (None, Some(_)) if ignore_env => {
                // AWS itself, as object_store would name it without an endpoint.
                Some(match vhost {
                    true => format!("https://{}.s3.{region}.amazonaws.com", s3.bucket),
                    false => format!("https://s3.{region}.amazonaws.com"),
                })
            }
            (None, Some(e)) if e.trim().is_empty() => return Err(TierError::new(
                TierErrorKind::Config,
                "AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3) is set but empty: unset it, or give \
                 the S3 server's URL",
            )),
            (None, Some(e)) => Some(endpoint_url(&e, &s3.bucket, s3.use_ssl, vhost)),
            (None, None) => None,
        };
    if let Some(ep) = &endpoint {
        // Both: object_store prefers the service-specific one, which must not beat the config.
        b = b
            .with_config(Key::Endpoint, ep)
            .with_config(Key::S3Endpoint, ep);
    }
    let plain_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));

    b = b
        .with_bucket_name(&s3.bucket)
        // Signing the payload hashed every uploaded byte with SHA-256 (86% of a big miss's
        // instructions, callgrind); blobs are verified by their BLAKE3 digest on every read,
        // so a body altered in transit is caught there, and TLS covers https.
        .with_unsigned_payload(true)
        .with_virtual_hosted_style_request(vhost)
        .with_retry(retry());
    // Bounded requests (a build waits on them), unless the env asks for other bounds
    // (object_store has defaults of its own, so the variables are what tells).
    for (key, name, bound) in [
        (
            ClientConfigKey::ConnectTimeout,
            "AWS_CONNECT_TIMEOUT",
            "2 seconds",
        ),
        (ClientConfigKey::Timeout, "AWS_TIMEOUT", "120 seconds"),
    ] {
        if var(name).is_none() {
            b = b.with_config(Key::Client(key), bound);
        }
    }
    if plain_http {
        b = b.with_config(Key::Client(ClientConfigKey::AllowHttp), "true");
    }
    b = with_encryption(b, s3.encryption());

    // An empty variable counts as unset, as in the AWS SDKs.
    let nonempty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
    let env_keys_set = set_at_all(&b, Key::AccessKeyId) || set_at_all(&b, Key::SecretAccessKey);
    let env_key = nonempty(b.get_config_value(&Key::AccessKeyId));
    let env_secret = nonempty(b.get_config_value(&Key::SecretAccessKey));
    // A profile that assumes a role with the environment's keys uses them for that, not for
    // S3 itself (otherwise env keys come first, as in the AWS SDKs).
    let role_from_env = profile.as_ref().is_some_and(Profile::assumes_role_from_env);
    let credentials = if s3.no_credentials {
        b = b.with_skip_signature(true);
        "none (no_credentials = true)".to_owned()
    } else if !role_from_env && (env_key.is_some() || env_secret.is_some()) {
        match (env_key, env_secret) {
            (Some(k), Some(_)) => {
                format!("access key {k} from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
            }
            _ => {
                return Err(TierError::new(
                    TierErrorKind::Credentials,
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together (one is \
                     unset or empty): set both, or unset both to use a profile",
                ))
            }
        }
    } else {
        let found = profile
            .as_ref()
            .map(Profile::credentials)
            .transpose()?
            .flatten();
        match found {
            // A provider, not the builder's keys: a stray AWS_SESSION_TOKEN must not join a
            // profile's keys, and env keys that assume a role must not sign S3 requests.
            Some(found) => match chain::provider(&found) {
                Some((provider, desc)) => {
                    b = b.with_credentials(provider);
                    desc
                }
                None => {
                    let ProfileCredentials::WebIdentity {
                        role_arn,
                        token_file,
                        session_name,
                    } = found.credentials
                    else {
                        unreachable!("chain::provider covers every other kind")
                    };
                    if env_keys_set {
                        return Err(empty_env_keys());
                    }
                    let desc = format!("role {role_arn} by web identity ({})", found.source);
                    b = b
                        .with_config(Key::RoleArn, role_arn)
                        .with_config(Key::WebIdentityTokenFile, token_file);
                    if let Some(s) = session_name {
                        b = b.with_config(Key::RoleSessionName, s);
                    }
                    desc
                }
            },
            // object_store would sign with the empty keys: say so instead.
            None if env_keys_set => return Err(empty_env_keys()),
            None => object_store_chain(&b, s3, &var)?,
        }
    };
    // No TLS roots for a plain-http endpoint: parsing the system's certificate store was 84%
    // of a wrapper's instructions on a miss (callgrind). Web identity asks STS over https.
    let web_identity =
        set(&b, Key::WebIdentityTokenFile).is_some() && set(&b, Key::RoleArn).is_some();
    if plain_http && !web_identity {
        b = b.with_config(Key::Client(ClientConfigKey::NoSystemCertificates), "true");
    }
    let place = Place {
        what: format!(
            "s3 bucket {} at {}",
            s3.bucket,
            endpoint.as_deref().unwrap_or("AWS")
        ),
        endpoint,
        credentials,
    };
    Ok((b, place))
}

/// object_store takes keys set to empty values for keys, before any other source.
fn empty_env_keys() -> TierError {
    TierError::new(
        TierErrorKind::Credentials,
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set but empty, and the AWS profile \
         gives no keys of its own: unset them, or give keys",
    )
}

/// Whether `k` is set on the builder, even to an empty value.
fn set_at_all(b: &AmazonS3Builder, k: Key) -> bool {
    b.get_config_value(&k).is_some()
}

/// What object_store will use when neither env keys nor a profile gave credentials, in its
/// order; an error when nothing can (instance metadata turned off).
fn object_store_chain(
    b: &AmazonS3Builder,
    s3: &S3Config,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<String, TierError> {
    let set = |k: Key| b.get_config_value(&k).is_some_and(|v| !v.is_empty());
    if set(Key::WebIdentityTokenFile) && set(Key::RoleArn) {
        return Ok(format!(
            "role {} by web identity (AWS_WEB_IDENTITY_TOKEN_FILE)",
            b.get_config_value(&Key::RoleArn).unwrap_or_default()
        ));
    }
    if set(Key::ContainerCredentialsRelativeUri) {
        return Ok("container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)".into());
    }
    if set(Key::ContainerCredentialsFullUri) && set(Key::ContainerAuthorizationTokenFile) {
        return Ok("EKS Pod Identity (AWS_CONTAINER_CREDENTIALS_FULL_URI)".into());
    }
    if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(TierError::new(
            TierErrorKind::Credentials,
            no_credentials_hint(&s3.bucket),
        ));
    }
    Ok("instance credentials (none in env or ~/.aws)".into())
}

/// `endpoint`, with the scheme `use_ssl` picks when it has none: http unless `use_ssl = true`,
/// as sccache reads the same block. With virtual-host style, the bucket is put in front of the
/// host (`http://cache.s3.lan:9000`) unless it is there already: object_store expects it in
/// the endpoint, where sccache's users (and `AWS_ENDPOINT_URL`) give the server's own name.
fn endpoint_url(ep: &str, bucket: &str, use_ssl: Option<bool>, vhost: bool) -> String {
    let ep = ep.trim();
    let (scheme, rest) = match ep.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        _ if use_ssl.unwrap_or(false) => ("https", ep),
        _ => ("http", ep),
    };
    let bucket_prefix = format!("{bucket}.");
    if vhost && !rest.starts_with(&bucket_prefix) {
        return format!("{scheme}://{bucket_prefix}{rest}");
    }
    format!("{scheme}://{rest}")
}

/// Asks object_store to send the encryption headers on every write (it adds them to puts and
/// multipart starts; reads need none for SSE-S3 and SSE-KMS).
fn with_encryption(b: AmazonS3Builder, enc: Option<S3Encryption>) -> AmazonS3Builder {
    // The key's enum is not exported; its name is object_store's documented spelling.
    let kind: Key = "aws_server_side_encryption"
        .parse()
        .expect("a key object_store knows");
    match enc {
        None => b,
        Some(S3Encryption::S3Managed) => b.with_config(kind, "AES256"),
        Some(S3Encryption::Kms { key_id: None }) => b.with_config(kind, "aws:kms"),
        Some(S3Encryption::Kms { key_id: Some(k) }) => b.with_sse_kms_encryption(k),
    }
}

pub(super) fn no_credentials_hint(bucket: &str) -> String {
    format!(
        "no AWS credentials for s3 bucket {bucket}: set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile in ~/.aws (with keys or a \
         credential_process), or no_credentials = true in [cache.s3] for anonymous reads"
    )
}

#[cfg(test)]
#[path = "s3_tests.rs"]
mod tests;
