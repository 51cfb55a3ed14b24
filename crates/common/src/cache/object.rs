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

use crate::config::{Backend, ObjectTierConfig};
use crate::manifest::{Manifest, ManifestEntry};
use crate::result::CacheEntry;
use crate::Digest;

mod aws;
mod azure;
mod chain;
mod credential_process;
mod diagnose;
mod refresh;
mod s3;
mod service;
mod sso;
mod sts;

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
    /// Opens the tier (no request is made yet); `env` must be the process environment, which
    /// the S3, GCS and Azure clients also read themselves (object_store's `from_env`).
    pub fn open(
        cfg: &ObjectTierConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ObjectTier, TierError> {
        crate::farm::install_crypto_provider();
        let (store, place): (Arc<dyn ObjectStore>, Place) = match &cfg.backend {
            Backend::S3(c) => s3::open(c, env)?,
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
            Backend::Azure(a) => azure::open(a)?,
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

    /// Where its credentials come from, in words (no secret): `role … assumed through STS at
    /// … with access key … from profile …`, `SSO role …`, `instance credentials …`.
    pub fn credentials(&self) -> &str {
        &self.place.credentials
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
