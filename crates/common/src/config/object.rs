//! The object-store tier's settings: `[cache.s3]` (sccache's keys), `[cache.gcs]`,
//! `[cache.azure]` or `[cache.path]`, and their `JETCC_S3_*`, `JETCC_GCS_*`,
//! `JETCC_AZURE_*`, `JETCC_CACHE_PATH` env equivalents. One of them at most.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The object-store tier, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTierConfig {
    pub backend: Backend,
    /// Prepended to every object name (sccache's `key_prefix`), without slashes at the ends.
    pub key_prefix: String,
    /// Read hits, never write (a laptop reading what CI filled).
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
    /// A directory, typically a network share.
    Path(PathBuf),
}

impl Backend {
    /// The tier's name in stats and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::S3(_) => "s3",
            Backend::Gcs(_) => "gcs",
            Backend::Azure(_) => "azure",
            Backend::Path(_) => "path",
        }
    }
}

/// `[cache.s3]`: an S3 bucket or an S3-compatible server (MinIO, SeaweedFS, Ceph, R2).
/// Credentials are not configured here: they come from where AWS tools find them (the
/// `AWS_*` environment, the profile's keys or `credential_process`, web identity, container
/// or instance credentials; `cache::object`'s `s3` module). Each key set here wins over the
/// environment's equivalent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// `https://my.minio.lan/`, or a bare host whose scheme `use_ssl` picks; `None`:
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's region, `us-east-1`.
    pub region: Option<String>,
    /// For an endpoint without a scheme: `https` with `true`, else `http` (sccache's default).
    pub use_ssl: Option<bool>,
    #[serde(default)]
    pub key_prefix: String,
    /// Anonymous requests (a public bucket, read-only use).
    #[serde(default)]
    pub no_credentials: bool,
    /// `bucket.host/key` instead of `host/bucket/key` (path style, which MinIO-style servers
    /// want, is the default with an endpoint).
    #[serde(default, alias = "virtual_host_style")]
    pub enable_virtual_host_style: bool,
    /// The AWS profile to read credentials and region from (default: `AWS_PROFILE`, then
    /// `default`): its keys, its `credential_process`, or its `role_arn` with
    /// `web_identity_token_file`.
    pub profile: Option<String>,
    /// sccache's three server-side encryption keys; see [`S3Config::encryption`].
    #[serde(default)]
    pub server_side_encryption: bool,
    #[serde(default)]
    pub server_side_encryption_aws_kms: bool,
    pub server_side_encryption_kms_key_id: Option<String>,
    read_only: Option<bool>,
    rw_mode: Option<String>,
}

/// How objects are encrypted at rest, sent as `x-amz-server-side-encryption` (and
/// `-aws-kms-key-id`) on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Encryption {
    /// SSE-S3: keys the server manages (`AES256`).
    S3Managed,
    /// SSE-KMS (`aws:kms`) with the given key, or the account's AWS-managed key.
    Kms { key_id: Option<String> },
}

impl S3Config {
    /// The encryption the section asks for, resolved as sccache does: a KMS key id implies
    /// SSE-KMS with that key; else `server_side_encryption_aws_kms` is SSE-KMS with the
    /// AWS-managed key; else `server_side_encryption` is SSE-S3; else none (the bucket's
    /// default applies).
    pub fn encryption(&self) -> Option<S3Encryption> {
        let key_id = self
            .server_side_encryption_kms_key_id
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty());
        if let Some(k) = key_id {
            return Some(S3Encryption::Kms {
                key_id: Some(k.to_owned()),
            });
        }
        if self.server_side_encryption_aws_kms {
            return Some(S3Encryption::Kms { key_id: None });
        }
        self.server_side_encryption
            .then_some(S3Encryption::S3Managed)
    }
}

/// `[cache.gcs]`: credentials from `cred_path` (a service-account key file) or the standard
/// `GOOGLE_*` env vars.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    pub bucket: String,
    #[serde(default)]
    pub key_prefix: String,
    pub cred_path: Option<PathBuf>,
    read_only: Option<bool>,
    rw_mode: Option<String>,
}

/// `[cache.azure]`: a container, with the account from `connection_string` (as sccache) or
/// the standard `AZURE_STORAGE_*` env vars.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    pub container: String,
    pub connection_string: Option<String>,
    #[serde(default)]
    pub key_prefix: String,
    read_only: Option<bool>,
    rw_mode: Option<String>,
}

/// `[cache.path]`: a shared directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    pub dir: PathBuf,
    #[serde(default)]
    key_prefix: String,
    read_only: Option<bool>,
    rw_mode: Option<String>,
}

/// The raw sections, as read.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawObject {
    pub s3: Option<S3Config>,
    pub gcs: Option<GcsConfig>,
    pub azure: Option<AzureConfig>,
    pub path: Option<PathConfig>,
}

/// The env vars of each section, as (config key, env var).
pub(super) const ENV: &[(&str, &str)] = &[
    ("cache.s3.bucket", "JETCC_S3_BUCKET"),
    ("cache.s3.endpoint", "JETCC_S3_ENDPOINT"),
    ("cache.s3.region", "JETCC_S3_REGION"),
    ("cache.s3.use_ssl", "JETCC_S3_USE_SSL"),
    ("cache.s3.key_prefix", "JETCC_S3_KEY_PREFIX"),
    ("cache.s3.no_credentials", "JETCC_S3_NO_CREDENTIALS"),
    (
        "cache.s3.enable_virtual_host_style",
        "JETCC_S3_VIRTUAL_HOST_STYLE",
    ),
    ("cache.s3.profile", "JETCC_S3_PROFILE"),
    ("cache.s3.rw_mode", "JETCC_S3_RW_MODE"),
    (
        "cache.s3.server_side_encryption",
        "JETCC_S3_SERVER_SIDE_ENCRYPTION",
    ),
    (
        "cache.s3.server_side_encryption_aws_kms",
        "JETCC_S3_SERVER_SIDE_ENCRYPTION_AWS_KMS",
    ),
    (
        "cache.s3.server_side_encryption_kms_key_id",
        "JETCC_S3_SERVER_SIDE_ENCRYPTION_KMS_KEY_ID",
    ),
    ("cache.gcs.bucket", "JETCC_GCS_BUCKET"),
    ("cache.gcs.key_prefix", "JETCC_GCS_KEY_PREFIX"),
    ("cache.gcs.cred_path", "JETCC_GCS_CRED_PATH"),
    ("cache.gcs.rw_mode", "JETCC_GCS_RW_MODE"),
    ("cache.azure.container", "JETCC_AZURE_CONTAINER"),
    (
        "cache.azure.connection_string",
        "JETCC_AZURE_CONNECTION_STRING",
    ),
    ("cache.azure.key_prefix", "JETCC_AZURE_KEY_PREFIX"),
    ("cache.azure.rw_mode", "JETCC_AZURE_RW_MODE"),
    ("cache.path.dir", "JETCC_CACHE_PATH"),
    ("cache.path.rw_mode", "JETCC_CACHE_PATH_RW_MODE"),
];

/// `read_only = true`, or sccache's `rw_mode = "READ_ONLY"` (which wins when both are set).
pub(super) fn read_only(
    section: &str,
    read_only: Option<bool>,
    rw_mode: Option<&str>,
) -> Result<bool, ConfigError> {
    match rw_mode {
        None => Ok(read_only.unwrap_or(false)),
        Some(m) if m.eq_ignore_ascii_case("READ_ONLY") => Ok(true),
        Some(m) if m.eq_ignore_ascii_case("READ_WRITE") => Ok(false),
        Some(other) => Err(ConfigError::RwMode {
            section: section.to_owned(),
            value: other.to_owned(),
        }),
    }
}

impl RawObject {
    pub(super) fn resolve(self) -> Result<Option<ObjectTierConfig>, ConfigError> {
        let set = [
            self.s3.is_some(),
            self.gcs.is_some(),
            self.azure.is_some(),
            self.path.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(ConfigError::SeveralObjectTiers);
        }
        let (backend, prefix, ro) = if let Some(s) = self.s3 {
            let ro = read_only("cache.s3", s.read_only, s.rw_mode.as_deref())?;
            (Backend::S3(s.clone()), s.key_prefix, ro)
        } else if let Some(g) = self.gcs {
            let ro = read_only("cache.gcs", g.read_only, g.rw_mode.as_deref())?;
            (Backend::Gcs(g.clone()), g.key_prefix, ro)
        } else if let Some(a) = self.azure {
            let ro = read_only("cache.azure", a.read_only, a.rw_mode.as_deref())?;
            (Backend::Azure(a.clone()), a.key_prefix, ro)
        } else if let Some(p) = self.path {
            let ro = read_only("cache.path", p.read_only, p.rw_mode.as_deref())?;
            if !p.dir.is_absolute() {
                return Err(ConfigError::RelativeCachePath(p.dir));
            }
            (Backend::Path(p.dir), p.key_prefix, ro)
        } else {
            return Ok(None);
        };
        if let Backend::S3(S3Config { bucket, .. })
        | Backend::Gcs(GcsConfig { bucket, .. })
        | Backend::Azure(AzureConfig {
            container: bucket, ..
        }) = &backend
        {
            if bucket.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(ObjectTierConfig {
            backend,
            key_prefix: prefix.trim_matches('/').to_owned(),
            read_only: ro,
        }))
    }
}
