//! A KV bucket of the farm (`jetcc-ac`, `jetcc-workers`) as its users need it: a key read is
//! one direct get on the bucket's stream, opened by name only; the library's own handle, which
//! must first fetch the stream's info, is opened on the first write, delete or listing.
//!
//! Why: a wrapper process reads a key or two and writes none on most misses. Opening the two
//! buckets the library's way cost it two stream info requests (one of the server's costliest
//! replies, a kilobyte of JSON each) and the library's name checks: about half a millisecond
//! per miss, measured, before its first read could go out.

use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use tokio::sync::OnceCell;

use super::{Farm, FarmError, FarmErrorKind};

/// A KV bucket: reads by direct get, the library's handle opened when needed.
#[derive(Clone)]
pub(crate) struct Bucket {
    name: String,
    /// `$KV.<name>.`: a key's subject is this and the key.
    prefix: String,
    /// The bucket's stream, by name (no request made).
    stream: stream::Stream<()>,
    store: std::sync::Arc<OnceCell<kv::Store>>,
}

impl Bucket {
    /// The bucket `name` of `farm`; no request is made.
    pub(crate) async fn named(farm: &Farm, name: String) -> Result<Bucket, FarmError> {
        let stream = farm
            .js
            .get_stream_no_info(format!("KV_{name}"))
            .await
            .map_err(|e| FarmError::other("an invalid bucket name", e))?;
        Ok(Bucket {
            prefix: format!("$KV.{name}."),
            name,
            stream,
            store: Default::default(),
        })
    }

    /// The bucket whose handle the caller opened (or created).
    pub(crate) async fn of(farm: &Farm, store: kv::Store) -> Result<Bucket, FarmError> {
        let bucket = Bucket::named(farm, store.name.clone()).await?;
        let _ = bucket.store.set(store);
        Ok(bucket)
    }

    /// The value of `key`; `None` if it has none (never put, or deleted). `what` says what
    /// was read, for the error.
    pub(crate) async fn get(
        &self,
        farm: &Farm,
        key: &str,
        what: &str,
    ) -> Result<Option<Bytes>, FarmError> {
        use async_nats::jetstream::stream::DirectGetErrorKind as Kind;
        let subject = format!("{}{key}", self.prefix);
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(msg) => Ok(is_put(&msg).then_some(msg.payload)),
            Err(e) if e.kind() == Kind::NotFound => Ok(None),
            // Nobody answers direct gets for this stream: the bucket is missing (a farm nobody
            // set up) or takes no direct gets (one made otherwise); the library's handle
            // tells which, and reads the second kind.
            Err(e) if matches!(e.kind(), Kind::ErrorResponse(status, _) if status == async_nats::StatusCode::NO_RESPONDERS) => {
                self.store(farm)
                    .await?
                    .get(key)
                    .await
                    .map_err(|e| FarmError::other(what, e))
            }
            Err(e) => Err(FarmError::other(what, e)),
        }
    }

    /// The library's handle (one stream info request, the first time): for writes, deletes,
    /// listings and status. A missing bucket is [`FarmErrorKind::NotSetUp`].
    pub(crate) async fn store(&self, farm: &Farm) -> Result<&kv::Store, FarmError> {
        self.store
            .get_or_try_init(|| async {
                match farm.js.get_key_value(&self.name).await {
                    Ok(store) => Ok(store),
                    // Tell a server without JetStream (or too old) from a farm never set up;
                    // the check costs a round trip, so only here.
                    Err(e) => {
                        farm.check_jetstream().await?;
                        Err(FarmError::new(
                            FarmErrorKind::NotSetUp,
                            format!(
                                "the farm's bucket {} is missing on {} ({e}): start a \
                                 jetcc-worker once",
                                self.name, farm.url
                            ),
                        ))
                    }
                }
            })
            .await
    }
}

/// Whether a bucket's message is a value, not a delete or purge marker.
fn is_put(msg: &async_nats::jetstream::message::StreamMessage) -> bool {
    !matches!(
        msg.headers.get("KV-Operation").map(|v| v.as_str()),
        Some("DEL" | "PURGE")
    )
}
