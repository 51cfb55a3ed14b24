//! The object-store tier: S3 and S3-compatible servers, GCS, Azure or a shared directory,
//! through the `object_store` crate, in the same formats as the other tiers.
//!
//! Layout under the bucket, after `key_prefix`: `jetcc-v1/m/<invocation>` (manifests),
//! `jetcc-v1/e/<key>` (result entries), `jetcc-v1/b/<digest>` (output blobs). A result is
//! written blobs first, then its entry, then the manifest that points at it; each object is
//! one PUT, which a reader sees whole or not at all, so no reader takes half a result for a
//! whole one. Every blob is verified against its digest on read.
//!
//! Requests are bounded (a short connect timeout, two retries) because a build waits on them:
//! a dead server must cost a build seconds, not the minutes `object_store`'s defaults allow.

use super::mark::{mark_name, PathsMark};
use crate::config::PathsMode;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

use crate::config::{Backend, ObjectTierConfig, S3Config, S3Encryption};
use crate::manifest::{Manifest, ManifestEntry};
use crate::result::CacheEntry;
use crate::Digest;

pub mod aws;
mod diagnose;

/// Largest blob read back (a debug rlib of a big crate is well below).
pub const MAX_BLOB: u64 = 2 << 30;

/// Why a tier operation failed, with what to do about it in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TierError {
    pub kind: TierErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierErrorKind {
    /// Connection refused, no such host, timed out.
    Unreachable,
    /// TLS against a plain server or the reverse, or a certificate not trusted.
    Tls,
    /// No credentials, an unknown access key, a wrong secret.
    Credentials,
    /// The server refused the operation (403).
    Forbidden,
    /// The region the request was signed for is not the server's.
    WrongRegion,
    /// The bucket, container or directory does not exist.
    NoBucket,
    /// An object that does not match its digest, or is malformed.
    Corrupt,
    /// The tier's config cannot be used as given.
    Config,
    Other,
}

impl crate::stats::StatKind for TierErrorKind {
    fn name(&self) -> &'static str {
        TierErrorKind::name(*self)
    }
}

impl TierErrorKind {
    /// The error's name in stats.
    pub fn name(self) -> &'static str {
        match self {
            TierErrorKind::Unreachable => "unreachable",
            TierErrorKind::Tls => "tls",
            TierErrorKind::Credentials => "credentials",
            TierErrorKind::Forbidden => "forbidden",
            TierErrorKind::WrongRegion => "wrong-region",
            TierErrorKind::NoBucket => "no-bucket",
            TierErrorKind::Corrupt => "corrupt",
            TierErrorKind::Config => "config",
            TierErrorKind::Other => "other",
        }
    }

    /// Whether this says the tier as a whole is unusable right now (as opposed to one
    /// object being bad), so a build should stop asking it for a while.
    pub fn is_tier_down(self) -> bool {
        !matches!(self, TierErrorKind::Corrupt | TierErrorKind::Other)
    }
}

impl TierError {
    /// An error shown as is: credentials in a URL it quotes (an endpoint's) are masked.
    pub fn new(kind: TierErrorKind, message: impl Into<String>) -> TierError {
        TierError {
            kind,
            message: crate::redact::credentials(&message.into()),
        }
    }
}

/// Where the tier is, for diagnoses.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// `s3 bucket cache at http://127.0.0.1:9000`
    pub what: String,
    pub endpoint: Option<String>,
    /// Where the credentials came from, or why there are none.
    pub credentials: String,
}

/// One object-store tier, opened from its config.
pub struct ObjectTier {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    name: &'static str,
    read_only: bool,
    place: Place,
}

impl fmt::Debug for ObjectTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectTier({})", self.place.what)
    }
}

/// `plain_http`: the endpoint is `http://`, so no TLS roots are loaded: parsing the system's
/// certificate store was 84% of a wrapper's instructions on a miss (callgrind).
fn client_options(plain_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(plain_http)
        .with_no_system_certificates(plain_http)
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(120))
}

fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        ..RetryConfig::default()
    }
}

impl ObjectTier {
    /// Opens the tier (no request is made yet); `env` is the process environment.
    pub fn open(
        cfg: &ObjectTierConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ObjectTier, TierError> {
        crate::farm::install_crypto_provider();
        let (store, place): (Arc<dyn ObjectStore>, Place) = match &cfg.backend {
            Backend::S3(s3) => open_s3(s3, env)?,
            Backend::Gcs(g) => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&g.bucket)
                    .with_client_options(client_options(false))
                    .with_retry(retry());
                if let Some(p) = &g.cred_path {
                    b = b.with_service_account_path(p.to_string_lossy());
                }
                let store = b.build().map_err(|e| config_error("cache.gcs", e))?;
                let place = Place {
                    what: format!("gcs bucket {}", g.bucket),
                    endpoint: None,
                    credentials: g.cred_path.as_ref().map_or_else(
                        || "the GOOGLE_* environment".to_owned(),
                        |p| p.display().to_string(),
                    ),
                };
                (Arc::new(store), place)
            }
            Backend::Azure(a) => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_container_name(&a.container)
                    .with_retry(retry());
                let mut allow_http = false;
                for (k, v) in a
                    .connection_string
                    .as_deref()
                    .unwrap_or("")
                    .split(';')
                    .filter_map(|kv| kv.split_once('='))
                {
                    match k.trim() {
                        "AccountName" => b = b.with_account(v),
                        "AccountKey" => b = b.with_access_key(v),
                        "BlobEndpoint" => {
                            allow_http = v.starts_with("http://");
                            b = b.with_endpoint(v.to_owned());
                        }
                        "UseDevelopmentStorage" => b = b.with_use_emulator(v == "true"),
                        _ => {}
                    }
                }
                let store = b
                    .with_client_options(client_options(allow_http))
                    .build()
                    .map_err(|e| config_error("cache.azure", e))?;
                let place = Place {
                    what: format!("azure container {}", a.container),
                    endpoint: None,
                    credentials: "connection_string or the AZURE_STORAGE_* environment".into(),
                };
                (Arc::new(store), place)
            }
            Backend::Path(dir) => {
                // Never created here: a share that is not mounted must not quietly become a
                // local dir.
                let store =
                    object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                        TierError::new(
                            TierErrorKind::NoBucket,
                            format!(
                                "[cache.path] dir {} is not usable ({e}): create or mount it",
                                dir.display()
                            ),
                        )
                    })?;
                let place = Place {
                    what: format!("dir {}", dir.display()),
                    endpoint: None,
                    credentials: "file permissions".into(),
                };
                (Arc::new(store), place)
            }
        };
        let prefix = match cfg.key_prefix.as_str() {
            "" => "jetcc-v1".to_owned(),
            p => format!("{p}/jetcc-v1"),
        };
        Ok(ObjectTier {
            store,
            prefix,
            name: cfg.backend.name(),
            read_only: cfg.read_only,
            place,
        })
    }

    /// The tier's name in stats and logs (`s3`, `gcs`, `azure`, `path`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Where it is, in words.
    pub fn describe(&self) -> &str {
        &self.place.what
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn path(&self, kind: &str, d: &Digest) -> ObjPath {
        ObjPath::from(format!("{}/{kind}/{}", self.prefix, d.hex()))
    }

    fn fail(&self, op: &str, e: object_store::Error) -> TierError {
        diagnose::diagnose(&self.place, op, &e)
    }

    /// The object at `path`, `None` if absent; bigger than `max` is corrupt.
    async fn get(&self, path: &ObjPath, max: u64, op: &str) -> Result<Option<Bytes>, TierError> {
        let got = match self.store.get(path).await {
            Ok(g) => g,
            // A missing bucket is an error, not a miss on every lookup.
            Err(e @ object_store::Error::NotFound { .. }) if !diagnose::no_such_bucket(&e) => {
                return Ok(None)
            }
            Err(e) => return Err(self.fail(op, e)),
        };
        if got.meta.size > max {
            return Err(TierError::new(
                TierErrorKind::Corrupt,
                format!("{path} claims {} bytes", got.meta.size),
            ));
        }
        match got.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(op, e)),
        }
    }

    async fn put(&self, path: &ObjPath, bytes: Bytes, op: &str) -> Result<(), TierError> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.fail(op, e))
    }

    /// The tier's manifest for an invocation (empty if none; a malformed one reads as empty).
    pub async fn get_manifest(&self, invocation: &Digest) -> Result<Manifest, TierError> {
        let bytes = self
            .get(&self.path("m", invocation), 64 << 20, "read a manifest")
            .await?;
        Ok(bytes.map(|b| Manifest::decode(&b)).unwrap_or_default())
    }

    /// The result entry for `key`; `None` if absent or malformed.
    pub async fn get_entry(&self, key: &Digest) -> Result<Option<CacheEntry>, TierError> {
        let bytes = self
            .get(&self.path("e", key), 256 << 20, "read an entry")
            .await?;
        Ok(bytes.and_then(|b| CacheEntry::decode(&b)))
    }

    /// A blob, verified: one that does not hash to `digest` (corrupt, truncated) is an error,
    /// never returned, and is deleted where this client may write. `None`: not there (expired
    /// or evicted), which is a miss.
    pub async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, TierError> {
        let path = self.path("b", digest);
        let Some(bytes) = self.get(&path, MAX_BLOB, "read a blob").await? else {
            return Ok(None);
        };
        if &Digest::of_bytes(&bytes) != digest {
            if !self.read_only {
                let _ = self.store.delete(&path).await;
            }
            return Err(TierError::new(
                TierErrorKind::Corrupt,
                format!(
                    "blob {digest} in {} does not match its digest ({} bytes){}",
                    self.place.what,
                    bytes.len(),
                    if self.read_only { "" } else { "; dropped" }
                ),
            ));
        }
        Ok(Some(bytes))
    }

    /// Uploads a file as the blob `digest` unless the tier has it. Returns the bytes sent.
    pub async fn put_file(
        &self,
        digest: &Digest,
        path: &std::path::Path,
    ) -> Result<u64, TierError> {
        let obj = self.path("b", digest);
        match self.store.head(&obj).await {
            Ok(_) => return Ok(0),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.fail("look up a blob", e)),
        }
        let bytes = tokio::fs::read(path).await.map_err(|e| {
            TierError::new(
                TierErrorKind::Other,
                format!("cannot read {} to upload it: {e}", path.display()),
            )
        })?;
        if &Digest::of_bytes(&bytes) != digest {
            return Err(TierError::new(
                TierErrorKind::Other,
                format!("{} changed while being uploaded", path.display()),
            ));
        }
        let n = bytes.len() as u64;
        self.put(&obj, Bytes::from(bytes), "write a blob").await?;
        Ok(n)
    }

    /// Records a result whose blobs are in the tier: the entry, then the manifest.
    pub async fn put_result(
        &self,
        invocation: &Digest,
        found: ManifestEntry,
        entry: &CacheEntry,
    ) -> Result<u64, TierError> {
        let encoded = Bytes::from(entry.encode());
        let mut n = encoded.len() as u64;
        self.put(&self.path("e", &found.key), encoded, "write an entry")
            .await?;
        // Read-modify-write: a concurrent writer's entry may be lost, which costs one miss.
        let mut manifest = self.get_manifest(invocation).await?;
        manifest.insert(found);
        let encoded = Bytes::from(manifest.encode());
        n += encoded.len() as u64;
        self.put(&self.path("m", invocation), encoded, "write a manifest")
            .await?;
        Ok(n)
    }

    /// Leaves this writer's paths mark (see [`super::mark`]).
    pub async fn put_paths_mark(&self, mode: PathsMode, mark: &PathsMark) -> Result<(), TierError> {
        let path = ObjPath::from(format!("{}/{}", self.prefix, mark_name(mode)));
        self.put(&path, Bytes::from(mark.encode()), "write the paths mark")
            .await
    }

    /// The last mark left by a writer in `mode`, if any.
    pub async fn get_paths_mark(&self, mode: PathsMode) -> Result<Option<PathsMark>, TierError> {
        let path = ObjPath::from(format!("{}/{}", self.prefix, mark_name(mode)));
        let bytes = self.get(&path, 1 << 10, "read the paths mark").await?;
        Ok(bytes.and_then(|b| PathsMark::decode(&b)))
    }

    /// `jetcc --check`: writes, reads back and deletes a probe object (only reads one that
    /// does not exist when read-only). Each step's failure is diagnosed.
    pub async fn check(&self) -> Result<(), TierError> {
        let probe = ObjPath::from(format!(
            "{}/check/{}-{}",
            self.prefix,
            std::process::id(),
            crate::files::now_ns()
        ));
        if self.read_only {
            return self.get(&probe, 1 << 10, "read").await.map(|_| ());
        }
        // A read first: some servers create a missing bucket on the first write.
        self.get(&probe, 1 << 10, "read").await?;
        let body = Bytes::from_static(b"jetcc check");
        self.put(&probe, body.clone(), "write").await?;
        let back = self.get(&probe, 1 << 10, "read").await?;
        if back.as_ref() != Some(&body) {
            return Err(TierError::new(
                TierErrorKind::Corrupt,
                format!(
                    "{} gave back other bytes than were written",
                    self.place.what
                ),
            ));
        }
        self.store
            .delete(&probe)
            .await
            .map_err(|e| self.fail("delete", e))
    }
}

fn config_error(section: &str, e: object_store::Error) -> TierError {
    TierError::new(
        TierErrorKind::Config,
        format!("[{section}] cannot be used: {e}"),
    )
}

/// `endpoint`, with the scheme `use_ssl` picks when it has none: http unless `use_ssl = true`,
/// as sccache reads the same block. With `enable_virtual_host_style`, the bucket is put in
/// front of the host (`http://cache.s3.lan:9000`) unless it is there already: object_store
/// expects it in the endpoint, where sccache's users give the server's own name.
fn endpoint_url(s3: &S3Config) -> Option<String> {
    let ep = s3.endpoint.as_deref()?.trim();
    if ep.is_empty() {
        return None;
    }
    let (scheme, rest) = match ep.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        _ if s3.use_ssl.unwrap_or(false) => ("https", ep),
        _ => ("http", ep),
    };
    let bucket_prefix = format!("{}.", s3.bucket);
    if s3.enable_virtual_host_style && !rest.starts_with(&bucket_prefix) {
        return Some(format!("{scheme}://{bucket_prefix}{rest}"));
    }
    Some(format!("{scheme}://{rest}"))
}

fn open_s3(
    s3: &S3Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Arc<dyn ObjectStore>, Place), TierError> {
    use object_store::aws::AmazonS3Builder;
    let var = |n: &str| env(n).filter(|v| !v.is_empty());
    let endpoint = endpoint_url(s3);
    let allow_http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        // Signing the payload hashed every uploaded byte with SHA-256 (86% of a big miss's
        // instructions, callgrind); blobs are verified by their BLAKE3 digest on every read,
        // so a body altered in transit is caught there, and TLS covers https.
        .with_unsigned_payload(true)
        .with_virtual_hosted_style_request(s3.enable_virtual_host_style)
        .with_client_options(client_options(allow_http))
        .with_retry(retry());
    // Web identity and container credentials, as AWS tools read them.
    for (var_name, key) in [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "aws_web_identity_token_file"),
        ("AWS_ROLE_ARN", "aws_role_arn"),
        ("AWS_ROLE_SESSION_NAME", "aws_role_session_name"),
        (
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "aws_container_credentials_relative_uri",
        ),
    ] {
        if let (Some(v), Ok(k)) = (var(var_name), key.parse()) {
            b = b.with_config(k, v);
        }
    }
    if let Some(ep) = &endpoint {
        b = b.with_endpoint(ep);
    }
    b = with_encryption(b, s3.encryption());
    let found = match s3.no_credentials {
        true => aws::Found::default(),
        false => aws::find(s3.profile.as_deref(), env)?,
    };
    let region = s3
        .region
        .clone()
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or(found.region)
        .unwrap_or_else(|| "us-east-1".to_owned());
    b = b.with_region(region);
    let credentials = match found.keys {
        _ if s3.no_credentials => {
            b = b.with_skip_signature(true);
            "none (no_credentials = true)".to_owned()
        }
        Some(k) => {
            b = b
                .with_access_key_id(&k.key_id)
                .with_secret_access_key(&k.secret);
            if let Some(t) = &k.token {
                b = b.with_token(t);
            }
            format!("access key {} from {}", k.key_id, k.source)
        }
        None if var("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v == "true")
            && var("AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
            && var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none() =>
        {
            return Err(TierError::new(
                TierErrorKind::Credentials,
                no_credentials_hint(&s3.bucket),
            ));
        }
        None => "instance or container credentials (none in env or ~/.aws)".to_owned(),
    };
    let store = b.build().map_err(|e| config_error("cache.s3", e))?;
    let place = Place {
        what: format!(
            "s3 bucket {} at {}",
            s3.bucket,
            endpoint.as_deref().unwrap_or("AWS")
        ),
        endpoint,
        credentials,
    };
    Ok((Arc::new(store), place))
}

/// Asks object_store to send the encryption headers on every write (it adds them to puts and
/// multipart starts; reads need none for SSE-S3 and SSE-KMS).
fn with_encryption(
    b: object_store::aws::AmazonS3Builder,
    enc: Option<S3Encryption>,
) -> object_store::aws::AmazonS3Builder {
    // The key's enum is not exported; its name is object_store's documented spelling.
    let kind: object_store::aws::AmazonS3ConfigKey = "aws_server_side_encryption"
        .parse()
        .expect("a key object_store knows");
    match enc {
        None => b,
        Some(S3Encryption::S3Managed) => b.with_config(kind, "AES256"),
        Some(S3Encryption::Kms { key_id: None }) => b.with_config(kind, "aws:kms"),
        Some(S3Encryption::Kms { key_id: Some(k) }) => b.with_sse_kms_encryption(k),
    }
}

pub(crate) fn no_credentials_hint(bucket: &str) -> String {
    format!(
        "no AWS credentials for s3 bucket {bucket}: set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile in ~/.aws/credentials, or \
         no_credentials = true in [cache.s3] for anonymous reads"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Backend;

    fn tier(dir: &std::path::Path, read_only: bool) -> ObjectTier {
        let cfg = ObjectTierConfig {
            backend: Backend::Path(dir.to_path_buf()),
            key_prefix: "team".into(),
            read_only,
        };
        ObjectTier::open(&cfg, &|_| None).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn blobs_are_verified_and_corrupt_ones_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let t = tier(dir.path(), false);
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"hello blob").unwrap();
        let d = Digest::of_file(&src).unwrap();
        rt().block_on(async {
            assert_eq!(t.put_file(&d, &src).await.unwrap(), 10);
            assert_eq!(t.put_file(&d, &src).await.unwrap(), 0, "already there");
            assert_eq!(&t.get_blob(&d).await.unwrap().unwrap()[..], b"hello blob");
            let stored = dir.path().join("team/jetcc-v1/b").join(d.hex());
            std::fs::write(&stored, b"hello blo").unwrap();
            let e = t.get_blob(&d).await.unwrap_err();
            assert_eq!(e.kind, TierErrorKind::Corrupt, "{e}");
            assert!(!stored.exists(), "a corrupt blob is dropped");
            assert_eq!(t.get_blob(&d).await.unwrap(), None, "and then is a miss");
            t.check().await.unwrap();
        });
    }

    #[test]
    fn endpoints_as_sccache_reads_them() {
        let s3 = |endpoint: &str, use_ssl: Option<bool>, vhost: bool| {
            let json = serde_json::json!({
                "bucket": "cache",
                "endpoint": endpoint,
                "use_ssl": use_ssl,
                "enable_virtual_host_style": vhost,
            });
            serde_json::from_value::<S3Config>(json).unwrap()
        };
        let url = |c: S3Config| endpoint_url(&c).unwrap();
        assert_eq!(url(s3("s3.lan:9000", None, false)), "http://s3.lan:9000");
        assert_eq!(url(s3("s3.lan", Some(true), false)), "https://s3.lan");
        assert_eq!(url(s3("https://s3.lan/", None, false)), "https://s3.lan/");
        assert_eq!(
            url(s3("s3.lan:9000", None, true)),
            "http://cache.s3.lan:9000"
        );
        assert_eq!(
            url(s3("https://s3.lan", None, true)),
            "https://cache.s3.lan"
        );
        assert_eq!(
            url(s3("https://cache.s3.lan", None, true)),
            "https://cache.s3.lan",
            "already there"
        );
    }

    #[test]
    fn encryption_settings_reach_the_s3_client() {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let kind: AmazonS3ConfigKey = "aws_server_side_encryption".parse().unwrap();
        let key: AmazonS3ConfigKey = "aws_sse_kms_key_id".parse().unwrap();
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

    #[test]
    fn a_missing_dir_is_diagnosed_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("not-mounted");
        let cfg = ObjectTierConfig {
            backend: Backend::Path(gone.clone()),
            key_prefix: String::new(),
            read_only: false,
        };
        let e = ObjectTier::open(&cfg, &|_| None).unwrap_err();
        assert_eq!(e.kind, TierErrorKind::NoBucket, "{e}");
        assert!(!gone.exists());
    }
}
