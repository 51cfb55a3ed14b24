//! Submitting a job and following its events (the client side of the work queue).

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt;

use super::{FarmError, FarmErrorKind, Resources};
use crate::protocol::job::{JobEvent, JobRequest};
use crate::Digest;

/// A published job: its events arrive on the reply subject, in order.
pub struct Submitted {
    /// The queue already held an identical job (same dedup id within the window): this one
    /// was dropped and no events will come for it.
    pub duplicate: bool,
    events: async_nats::Subscriber,
    client: async_nats::Client,
}

/// How long a waiting client tolerates a dropped connection before compiling locally.
pub const DISCONNECTED_LIMIT: Duration = Duration::from_secs(2);

impl Resources {
    /// Subscribes to the job's reply subject, then publishes it with `dedup` as its
    /// `Nats-Msg-Id`, so identical jobs in flight run once.
    pub async fn submit(
        &self,
        job: &JobRequest,
        host_triple: &str,
        dedup: &Digest,
    ) -> Result<Submitted, FarmError> {
        let names = &self.farm.names;
        let subject = names
            .jobs_subject(host_triple, &job.toolchain)
            .map_err(|e| FarmError::other("bad host triple", e))?;
        let events = self
            .farm
            .client
            .subscribe(job.reply_subject.clone())
            .await
            .map_err(|e| FarmError::other("cannot subscribe for the job's events", e))?;
        let ack = self
            .farm
            .js
            .send_publish(
                subject,
                PublishMessage::build()
                    .message_id(dedup.hex())
                    .payload(job.encode().into()),
            )
            .await
            .map_err(|e| FarmError::other("cannot publish the job", e))?
            .await
            .map_err(refused_job)?;
        Ok(Submitted {
            duplicate: ack.duplicate,
            events,
            client: self.farm.client.clone(),
        })
    }
}

/// Why the jobs stream did not take a job; a full one (`[cache.jetstream] jobs_max_size`)
/// is [`FarmErrorKind::Full`].
fn refused_job(e: impl std::fmt::Display) -> FarmError {
    let text = e.to_string();
    if text.contains("maximum bytes") || text.contains("maximum messages") {
        FarmError::new(
            FarmErrorKind::Full,
            format!(
                "the farm's job queue is full ({text}): this compile runs here; raise \
                 [cache.jetstream] jobs_max_size on the workers, or add workers"
            ),
        )
    } else {
        FarmError::other("the jobs stream did not take the job", text)
    }
}

impl Submitted {
    /// The next event, or `Ok(None)` if none came within `wait`. A connection that stays
    /// down for [`DISCONNECTED_LIMIT`] is an error at once, not a wait for the full `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<JobEvent>, FarmError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut down_since = None;
        loop {
            let tick = deadline.min(tokio::time::Instant::now() + Duration::from_millis(250));
            match tokio::time::timeout_at(tick, self.events.next()).await {
                Ok(next) => {
                    // A worker asks whether we still wait before it starts (see `Started`).
                    // Answer only to an inbox: whoever sent the request chose where our
                    // answer goes, and it goes with our permissions (a `$JS.API…` subject
                    // would have us delete a stream).
                    let reply = next.as_ref().and_then(|m| m.reply.clone());
                    if let Some(reply) = reply.filter(|r| r.starts_with("_INBOX.")) {
                        let _ = self.client.publish(reply, bytes::Bytes::new()).await;
                    }
                    return Submitted::decode(next);
                }
                Err(_) if tokio::time::Instant::now() >= deadline => return Ok(None),
                Err(_) => {}
            }
            if self.client.connection_state() == async_nats::connection::State::Connected {
                down_since = None;
            } else if down_since
                .get_or_insert_with(tokio::time::Instant::now)
                .elapsed()
                > DISCONNECTED_LIMIT
            {
                return Err(FarmError::new(
                    FarmErrorKind::Unreachable,
                    "lost the connection to the NATS server while waiting for the job",
                ));
            }
        }
    }

    fn decode(next: Option<async_nats::Message>) -> Result<Option<JobEvent>, FarmError> {
        match next {
            None => Err(FarmError::new(
                FarmErrorKind::Unreachable,
                "the connection closed while waiting for the job",
            )),
            Some(msg) => JobEvent::decode(&msg.payload).map(Some).map_err(|e| {
                FarmError::new(FarmErrorKind::Corrupt, format!("unreadable job event: {e}"))
            }),
        }
    }
}
