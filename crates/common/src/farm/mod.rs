//! The farm's transport: one NATS connection with JetStream, and typed handles on the
//! resources the farm shares ([`Resources`]: the jobs stream, the CAS, the result and worker
//! buckets). Only this module and [`crate::protocol`] know NATS names and wire formats.
//!
//! Design choice: blobs are read with JetStream *direct gets* (one request per chunk) instead of
//! the object store's `get`, which opens an ordered consumer per read. nats-server limits
//! consumers per stream (1000 by default), so hundreds of concurrent builds reading blobs
//! through `get` would exhaust it; direct gets open none. See [`cas`].

pub mod ac;
mod bucket;
pub mod cas;
pub mod delivery;
pub mod events;
pub mod gc;
pub mod jobs;
mod limits;
pub mod resources;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::FarmConfig;
use crate::protocol::names::{self, Names, Nonce};

pub use cas::Cas;
pub use delivery::{Batch, Delivery, Filing, JobQueue, ReplyTo};
pub use jobs::Submitted;
pub use resources::Resources;

/// What went wrong talking to the farm, by kind, with a message that says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FarmError {
    pub kind: FarmErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FarmErrorKind {
    /// The server cannot be reached (down, wrong URL, timed out).
    Unreachable,
    /// The server refused our credentials.
    Auth,
    /// The server has no JetStream, or one too old for jetcc.
    NoJetStream,
    /// The farm's stream or buckets do not exist (no worker has ever started).
    NotSetUp,
    /// A blob did not match its digest or could not be decoded.
    Corrupt,
    /// The object is not there.
    NotFound,
    /// A stream refused a message for its size limit (a full job queue).
    Full,
    /// The server refused this user the operation (`nats/roles.conf`: its role may not).
    Permission,
    /// Anything else the server or client reported.
    Other,
}

impl FarmErrorKind {
    /// A short name for stats and logs.
    pub fn name(self) -> &'static str {
        match self {
            FarmErrorKind::Unreachable => "farm-unreachable",
            FarmErrorKind::Auth => "farm-auth",
            FarmErrorKind::NoJetStream => "farm-no-jetstream",
            FarmErrorKind::NotSetUp => "farm-not-set-up",
            FarmErrorKind::Corrupt => "farm-corrupt-blob",
            FarmErrorKind::NotFound => "farm-not-found",
            FarmErrorKind::Full => "farm-full",
            FarmErrorKind::Permission => "farm-permission",
            FarmErrorKind::Other => "farm-error",
        }
    }
}

impl crate::stats::StatKind for FarmErrorKind {
    fn name(&self) -> &'static str {
        FarmErrorKind::name(*self)
    }
}

impl FarmError {
    /// An error whose message is shown as is: any credential in a URL it quotes (the
    /// server's, or one in a client library's message) is masked first.
    pub fn new(kind: FarmErrorKind, message: impl Into<String>) -> FarmError {
        FarmError {
            kind,
            message: crate::redact::credentials(&message.into()),
        }
    }

    pub fn other(what: &str, e: impl std::fmt::Display) -> FarmError {
        FarmError::new(FarmErrorKind::Other, format!("{what}: {e}"))
    }
}

/// How long a connection is meant to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// One wrapper invocation: fail fast.
    Wrapper,
    /// A worker or monitor: reconnect forever.
    Service,
}

/// A connection to the farm's NATS server.
#[derive(Clone)]
pub struct Farm {
    pub(crate) client: async_nats::Client,
    pub(crate) js: async_nats::jetstream::Context,
    pub names: Names,
    /// The NATS user this connection logged in as, as subjects name it ([`names::NO_USER`]
    /// without one): its inboxes, reply and answer subjects carry it.
    pub user: String,
    pub url: String,
    /// The cache buckets' limits, for creating them.
    pub limits: crate::config::CacheLimits,
    /// The last subject the server refused this user a publish to (see [`Farm::unless_refused`]).
    refused: Arc<tokio::sync::watch::Sender<String>>,
}

impl Farm {
    /// Connects with the credentials `[dist]` names. `name` tells the server who we are
    /// (shown by `nats server report connections`). A short-lived client gives up after a
    /// few reconnect attempts; a long-lived one (`Lifetime::Service`) keeps trying.
    pub async fn connect(cfg: &FarmConfig, name: &str, life: Lifetime) -> Result<Farm, FarmError> {
        install_crypto_provider();
        let names = Names::new(&cfg.prefix)
            .map_err(|e| FarmError::new(FarmErrorKind::Other, e.to_string()))?;
        // `nats://a:4222,nats://b:4222`: a cluster's servers, tried in turn.
        let servers: Vec<async_nats::ServerAddr> = cfg
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                FarmError::new(
                    FarmErrorKind::Other,
                    format!("invalid NATS URL {:?}: {e} (set [dist] nats_url or JETCC_NATS_URL, e.g. nats://host:4222)", cfg.nats_url),
                )
            })?;
        let mut opts = match &cfg.creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    FarmError::new(
                        FarmErrorKind::Auth,
                        format!(
                            "cannot read the NATS credentials file {}: {e}",
                            path.display()
                        ),
                    )
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(token) = &cfg.token {
            opts = opts.token(token.clone());
        }
        // `nats://user:password@host`: the client library reads no credentials from it.
        let url_login = servers
            .iter()
            .find(|a| a.has_user_pass())
            .filter(|_| cfg.token.is_none() && cfg.creds.is_none())
            .map(|a| {
                let user = a.username().unwrap_or_default().to_owned();
                (user, a.password().unwrap_or_default().to_owned())
            });
        let login = match (&cfg.user, &cfg.password) {
            (Some(user), Some(pass)) => Some((user.clone(), pass.clone())),
            _ => url_login,
        };
        let user = match login
            .as_ref()
            .map(|(u, _)| u.as_str())
            .or(cfg.user.as_deref())
        {
            Some(user) if !user.is_empty() => {
                names::user_token(user).map_err(|e| {
                    FarmError::new(
                        FarmErrorKind::Auth,
                        format!(
                            "{e}: jetcc names its inboxes and reply subjects after the NATS \
                             user ([dist] user, JETCC_NATS_USER), so the server can let each \
                             user read only its own"
                        ),
                    )
                })?;
                user.to_owned()
            }
            _ => names::NO_USER.to_owned(),
        };
        if let Some((user, pass)) = login {
            opts = opts.user_and_password(user, pass);
        }
        if let Some(ca) = &cfg.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
            opts = opts
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        let refused = Arc::new(tokio::sync::watch::Sender::new(String::new()));
        let tell = refused.clone();
        let opts = opts
            .name(name)
            // Each user's inboxes under its name: the server lets it read only those.
            .custom_inbox_prefix(names::inbox_prefix(&user))
            // A refused publish or subscribe is dropped by the server, which says so only in
            // this event; the request behind it then times out. Say what it was, once, here,
            // and tell whoever waits on that subject ([`Farm::unless_refused`]).
            .event_callback(move |event| {
                let tell = tell.clone();
                async move {
                    use async_nats::{Event, ServerError};
                    match event {
                        Event::ServerError(ServerError::Other(e))
                            if e.contains("Permissions Violation") =>
                        {
                            tracing::warn!(
                            "the NATS server refused this user: {e} (nats/roles.conf lists what \
                             each jetcc binary needs)"
                        );
                            if let Some(subject) = e.split('"').nth(1) {
                                tell.send_replace(subject.to_owned());
                            }
                        }
                        Event::ServerError(e) => tracing::warn!("NATS server error: {e}"),
                        other => tracing::debug!("NATS connection: {other}"),
                    }
                }
            })
            .reconnect_to_server_callback(|servers, _info| async move { next_server(&servers) })
            .connection_timeout(timeout)
            .request_timeout(Some(Duration::from_secs(5)))
            // A server that goes away mid-build must not make a wrapper wait: fail fast and
            // let the caller compile locally. A worker waits for it to come back.
            .max_reconnects(match life {
                Lifetime::Wrapper => Some(3),
                Lifetime::Service => None,
            });
        let client = tokio::time::timeout(timeout * 2, opts.connect(servers))
            .await
            .map_err(|_| {
                FarmError::new(
                    FarmErrorKind::Unreachable,
                    format!(
                        "no answer from the NATS server at {} within {timeout:?}",
                        cfg.nats_url
                    ),
                )
            })?
            .map_err(|e| connect_error(cfg, e))?;
        let js = async_nats::jetstream::new(client.clone());
        Ok(Farm {
            client,
            js,
            names,
            user,
            url: cfg.display_url(),
            limits: cfg.cache_limits,
            refused,
        })
    }
}

/// How the connection to a single server is (re)made: at once if it never failed, else
/// after the library's backoff. The library's own way sleeps `Duration::ZERO` before a first
/// attempt, which tokio's timer rounds up to its next millisecond tick: about 1 ms on every
/// wrapper's connect. With several servers (a cluster) the library's way stays: a first
/// connect made this way tries one server only, and a node that is down would fail it.
fn next_server(servers: &[async_nats::Server]) -> Option<async_nats::ReconnectToServer> {
    let [only] = servers else { return None };
    Some(async_nats::ReconnectToServer {
        addr: only.addr.clone(),
        delay: (only.failed_attempts == 0).then_some(Duration::ZERO),
    })
}

impl Farm {
    /// Runs `op`, a publish on a subject starting with `prefix`, unless the server refuses
    /// this user such a subject first: a refused publish gets no answer and would wait out
    /// the request timeout (5 s), where the refusal arrives in one round trip.
    pub(crate) async fn unless_refused<T>(
        &self,
        prefix: &str,
        op: impl Future<Output = Result<T, FarmError>>,
    ) -> Result<T, FarmError> {
        let mut seen = self.refused.subscribe();
        seen.mark_unchanged();
        let refusal = async {
            loop {
                if seen.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let subject = seen.borrow_and_update().clone();
                if subject.starts_with(prefix) {
                    return subject;
                }
            }
        };
        tokio::select! {
            r = op => r,
            subject = refusal => Err(FarmError::new(
                FarmErrorKind::Permission,
                format!(
                    "the NATS server refused this user a write to {subject}: its role may not \
                     write there (nats/roles.conf); set what it may do in jetcc's config"
                ),
            )),
        }
    }

    /// Whether the connection is up now. A short-lived client whose server went away uses it
    /// to skip work that would only wait out a request timeout.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Writes what is buffered to the server, waiting at most `limit` (a process about to
    /// exit, whose last publishes would otherwise be lost).
    pub async fn flush_within(&self, limit: Duration) {
        match tokio::time::timeout(limit, self.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("cannot flush to the NATS server: {e}"),
            Err(_) => tracing::debug!("flushing to the NATS server took over {limit:?}"),
        }
    }
}

/// 128 bits from the kernel's random source, for a subject nobody may guess. An error,
/// never a weak value: the caller goes without the farm.
pub fn nonce() -> Result<Nonce, FarmError> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| FarmError::other("cannot read /dev/urandom", e))?;
    Ok(Nonce::from_bytes(b))
}

/// The name this machine goes by in heartbeats and events.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn connect_error(cfg: &FarmConfig, e: async_nats::ConnectError) -> FarmError {
    use async_nats::ConnectErrorKind as K;
    let url = &cfg.nats_url;
    match e.kind() {
        K::AuthorizationViolation | K::Authentication => FarmError::new(
            FarmErrorKind::Auth,
            format!(
                "the NATS server at {url} refused our credentials ({e}): set [dist] token, \
                 user/password or creds (JETCC_NATS_TOKEN, JETCC_NATS_USER/PASSWORD, \
                 JETCC_NATS_CREDS)"
            ),
        ),
        _ => match tls_hint(cfg, &e) {
            Some(hint) => FarmError::new(
                FarmErrorKind::Auth,
                format!("cannot connect to the NATS server at {url} over TLS ({e}): {hint}"),
            ),
            None => FarmError::new(
                FarmErrorKind::Unreachable,
                format!("cannot connect to the NATS server at {url}: {e}"),
            ),
        },
    }
}

/// What to set when a TLS handshake failed, by what the error says (rustls' and the
/// server's words: async-nats gives the handshake's errors as I/O errors).
fn tls_hint(cfg: &FarmConfig, e: &async_nats::ConnectError) -> Option<&'static str> {
    let text = format!("{e} {e:?}");
    if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        Some(if cfg.tls_ca.is_none() {
            "the server uses TLS with a certificate this machine does not trust: set [dist] \
             tls_ca (JETCC_NATS_TLS_CA) to the CA that signed it (nats/make-certs.sh makes one)"
        } else {
            "the server's certificate is not signed by [dist] tls_ca, or does not name the \
             host in nats_url: check both"
        })
    } else if text.contains("CertificateRequired")
        || text.contains("certificate required")
        || text.contains("HandshakeFailure")
        || text.contains("BadCertificate")
    {
        Some(if cfg.tls_cert.is_none() {
            "the server requires a client certificate: set [dist] tls_cert and tls_key \
             (JETCC_NATS_TLS_CERT, JETCC_NATS_TLS_KEY)"
        } else {
            "the server refused our client certificate ([dist] tls_cert): it must be signed \
             by the CA the server's tls block names (ca_file)"
        })
    } else if cfg.tls_ca.is_some() && e.kind() == async_nats::ConnectErrorKind::Tls {
        Some("check [dist] tls_ca, tls_cert and tls_key: each must be a readable PEM file")
    } else if cfg.tls_ca.is_some() && text.contains("InvalidContentType") {
        Some("the server does not speak TLS: drop [dist] tls_ca, or enable TLS on the server")
    } else {
        None
    }
}

/// rustls is built with two crypto providers here (async-nats wants ring, object_store
/// aws-lc-rs); with both, a TLS config panics unless one is chosen for the process.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
