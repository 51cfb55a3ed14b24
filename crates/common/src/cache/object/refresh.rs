//! Credentials fetched once per process and again only near their expiration: the one cache
//! behind every credential source jetcc resolves itself (a `credential_process`, an STS
//! `AssumeRole`, an SSO portal call). As an object_store `CredentialProvider`, a source is
//! asked at the first request that needs it (a local hit makes none). A failure is kept for
//! the process: a source that failed is not asked again for every request of one compile.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::AwsCredential;
use object_store::CredentialProvider;

/// Credentials this close to their expiration are fetched again.
pub(super) const MARGIN: Duration = Duration::from_secs(60);

/// The provider object_store asks for credentials, as its S3 client takes it.
pub(super) type AwsProvider = Arc<dyn CredentialProvider<Credential = AwsCredential>>;

/// Credentials as a source gave them, with their expiration.
pub(super) struct Fetched {
    pub credential: Arc<AwsCredential>,
    pub expires: Option<SystemTime>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetched({}, {:?})", self.credential.key_id, self.expires)
    }
}

impl Fetched {
    pub fn fresh(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|e| e > now + MARGIN)
    }
}

/// One way to get credentials; its error says what failed and what to do.
#[async_trait::async_trait]
pub(super) trait Fetch: std::fmt::Debug + Send + Sync + 'static {
    type Error: std::error::Error + Clone + Send + Sync + 'static;

    async fn fetch(&self) -> Result<Fetched, Self::Error>;
}

/// A source's credentials, fetched at the first use and again when they come within
/// [`MARGIN`] of their expiration.
pub struct Refreshing<F: Fetch> {
    source: F,
    last: tokio::sync::Mutex<Option<Result<Fetched, F::Error>>>,
}

impl<F: Fetch> std::fmt::Debug for Refreshing<F> {
    // The source only: the fetched credentials hold secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Refreshing({:?})", self.source)
    }
}

impl<F: Fetch> Refreshing<F> {
    pub fn new(source: F) -> Refreshing<F> {
        Refreshing {
            source,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The credentials, from this process's last fetch while they are fresh.
    pub async fn credential(&self) -> Result<Arc<AwsCredential>, F::Error> {
        // Held across the fetch: concurrent requests wait for one fetch, not start their own.
        let mut last = self.last.lock().await;
        match last.as_ref() {
            Some(Ok(f)) if f.fresh(SystemTime::now()) => return Ok(f.credential.clone()),
            Some(Err(e)) => return Err(e.clone()),
            _ => {}
        }
        let got = self.source.fetch().await;
        let result = got
            .as_ref()
            .map(|f| f.credential.clone())
            .map_err(Clone::clone);
        *last = Some(got);
        result
    }
}

#[async_trait::async_trait]
impl<F: Fetch> CredentialProvider for Refreshing<F> {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        self.credential()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })
    }
}

/// Why a role or an SSO sign-in gave no credentials, with what to do. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct CredentialError {
    /// `role arn:aws:iam::1:role/ci of AWS profile ci`
    pub what: String,
    /// What failed, then what to do.
    pub why: String,
}

/// An `Expiration` as an RFC 3339 time; `Err` names the field's problem, never a secret.
pub(super) fn parse_expiration(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let at = chrono::DateTime::parse_from_rfc3339(text.trim())
        .map_err(|e| format!("an Expiration that is not an RFC 3339 time ({text:?}: {e})"))?;
    let at = SystemTime::from(at);
    if at <= now {
        return Err(format!("credentials that expired at {text}"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Clone, thiserror::Error)]
    #[error("failed")]
    struct Failed;

    /// Counts its fetches; gives keys valid for `secs`, or fails.
    #[derive(Debug)]
    struct Counting {
        runs: Arc<AtomicUsize>,
        secs: Option<u64>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl Fetch for Counting {
        type Error = Failed;
        async fn fetch(&self) -> Result<Fetched, Failed> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(Failed);
            }
            Ok(Fetched {
                credential: Arc::new(AwsCredential {
                    key_id: "A".into(),
                    secret_key: "S".into(),
                    token: None,
                }),
                expires: self
                    .secs
                    .map(|s| SystemTime::now() + Duration::from_secs(s)),
            })
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn runs_for(secs: Option<u64>, fail: bool, uses: usize) -> usize {
        let runs = Arc::new(AtomicUsize::new(0));
        let p = Refreshing::new(Counting {
            runs: runs.clone(),
            secs,
            fail,
        });
        rt().block_on(async {
            for _ in 0..uses {
                let _ = p.credential().await;
            }
        });
        runs.load(Ordering::SeqCst)
    }

    #[test]
    fn fetched_once_while_fresh_again_near_expiration_never_after_a_failure() {
        assert_eq!(runs_for(None, false, 3), 1, "no expiration: once");
        assert_eq!(runs_for(Some(3600), false, 3), 1, "an hour left: once");
        assert_eq!(
            runs_for(Some(30), false, 3),
            3,
            "within the margin: each use"
        );
        assert_eq!(runs_for(None, true, 3), 1, "a failure is kept");
    }

    #[test]
    fn expirations_are_rfc_3339_and_in_the_future() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_expiration("2027-01-15T08:00:00Z", now),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        assert!(parse_expiration("soon", now)
            .unwrap_err()
            .contains("not an RFC 3339"));
        assert!(parse_expiration("2020-01-01T00:00:00Z", now)
            .unwrap_err()
            .contains("expired at"));
    }
}
