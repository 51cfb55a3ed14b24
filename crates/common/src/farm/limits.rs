//! The size limits of the farm's streams and buckets (`[cache.jetstream]`, [`CacheLimits`]):
//! the stream configurations they are created with, and bringing one created with other
//! limits up to date (a stream update, by whoever sets the farm up: the workers).
//!
//! - The jobs stream: `jobs_max_size`, `DiscardPolicy::New`. A full queue refuses a new job
//!   (its client compiles locally) rather than drop one a client waits for.
//! - The CAS: `max_size`, `DiscardPolicy::Old`. jetcc's GC ([`super::gc`]) keeps it below
//!   the limit by evicting whole blobs; should a burst outrun it, the server drops the
//!   oldest messages instead of refusing writes (the blob at that boundary reads as a miss).
//!   async-nats creates object stores with `DiscardPolicy::New`, which refuses every write
//!   once full, so the stream is created here with the object store's own layout.
//! - The result bucket: `ac_max_size`, `DiscardPolicy::Old`: a full bucket forgets its
//!   oldest entries and manifests, which are misses.

use std::time::Duration;

use async_nats::jetstream::stream::{self, DiscardPolicy};

use super::{Farm, FarmError};
use crate::config::CacheLimits;

/// The limits one stream should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    pub max_bytes: i64,
    pub discard: DiscardPolicy,
    pub max_age: Duration,
}

fn bytes(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Wanted {
    pub fn jobs(limits: &CacheLimits, max_age: Duration) -> Wanted {
        Wanted {
            max_bytes: bytes(limits.jobs_max_bytes),
            discard: DiscardPolicy::New,
            max_age,
        }
    }

    pub fn cas(limits: &CacheLimits) -> Wanted {
        Wanted {
            max_bytes: bytes(limits.max_bytes),
            discard: DiscardPolicy::Old,
            max_age: limits.max_age,
        }
    }

    pub fn ac(limits: &CacheLimits) -> Wanted {
        Wanted {
            max_bytes: bytes(limits.ac_max_bytes),
            discard: DiscardPolicy::Old,
            max_age: limits.max_age,
        }
    }

    fn apply(&self, config: &mut stream::Config) {
        config.max_bytes = self.max_bytes;
        config.discard = self.discard;
        config.max_age = self.max_age;
    }

    fn matches(&self, config: &stream::Config) -> bool {
        config.max_bytes == self.max_bytes
            && config.discard == self.discard
            && config.max_age == self.max_age
    }
}

impl Farm {
    /// The CAS's stream as async-nats' `create_object_store` lays it out (chunk and
    /// metadata subjects, roll-ups for metadata, direct gets), with jetcc's limits.
    pub(super) fn cas_stream_config(&self, num_replicas: usize) -> stream::Config {
        let mut config = stream::Config {
            name: self.names.cas_stream(),
            description: Some("jetcc blobs by BLAKE3 digest".into()),
            subjects: vec![
                self.names.cas_chunk_subjects(),
                self.names.cas_meta_subjects(),
            ],
            num_replicas,
            allow_rollup: true,
            allow_direct: true,
            ..Default::default()
        };
        Wanted::cas(&self.limits).apply(&mut config);
        config
    }

    /// The result bucket's stream as async-nats' `create_key_value` lays it out (one value
    /// per key, roll-ups, direct gets, no message deletes), with jetcc's limits.
    pub(super) fn ac_stream_config(&self, num_replicas: usize) -> stream::Config {
        let mut config = stream::Config {
            name: self.names.ac_stream(),
            description: Some("jetcc result entries and manifests".into()),
            subjects: vec![self.names.ac_subjects()],
            max_messages_per_subject: 1,
            num_replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            ..Default::default()
        };
        Wanted::ac(&self.limits).apply(&mut config);
        config
    }

    /// Brings `stream`'s limits to `want` if it was created with others (an older jetcc, or
    /// other `[cache.jetstream]` settings). A user who may not update streams gets a
    /// warning that says what to do; the farm works on with the old limits.
    pub(super) async fn reconcile(&self, stream: &stream::Stream, want: Wanted) {
        let info = match stream.get_info().await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!("cannot read a stream's limits: {e}");
                return;
            }
        };
        if want.matches(&info.config) {
            return;
        }
        let name = info.config.name.clone();
        let mut config = info.config.clone();
        want.apply(&mut config);
        match self.js.update_stream(&config).await {
            Ok(_) => tracing::info!(
                stream = %name,
                "updated the stream's limits: max_bytes {} → {}, discard {:?} → {:?}, \
                 max_age {:?} → {:?}",
                info.config.max_bytes,
                want.max_bytes,
                info.config.discard,
                want.discard,
                info.config.max_age,
                want.max_age
            ),
            Err(e) => tracing::warn!(
                stream = %name,
                "the stream's limits differ from [cache.jetstream] and cannot be updated \
                 ({e}): give this user $JS.API.STREAM.UPDATE.{name}, or run \
                 `nats stream edit {name} --max-bytes {} --discard {}`",
                want.max_bytes,
                match want.discard {
                    DiscardPolicy::Old => "old",
                    DiscardPolicy::New => "new",
                }
            ),
        }
    }
}

/// A `FarmError` for a failed create of `what`.
pub(super) fn create_error(what: &str, e: impl std::fmt::Display) -> FarmError {
    FarmError::other(&format!("cannot create {what}"), e)
}
