//! Submitting a job and following its events (the client side of the work queue). Only
//! events of our own job count, and after `Started` only those of the worker that sent it:
//! anything else on the reply subject is dropped, logged and counted.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures_util::StreamExt;

use super::{FarmError, FarmErrorKind, Filing, Resources};
use crate::protocol::job::{JobEvent, JobReply, JobRequest};
use crate::Digest;

/// A published job: its events arrive on the reply subject, in order.
pub struct Submitted {
    /// The queue already held an identical job (same dedup id within the window): this one
    /// was dropped and no events will come for it.
    pub duplicate: bool,
    events: async_nats::Subscriber,
    farm: super::Farm,
    binding: Binding,
}

/// Which events on a reply subject are ours: see [`Binding::take`].
#[derive(Debug)]
struct Binding {
    job_id: String,
    /// The worker whose `Started` came last: the only one whose events count.
    worker: Option<String>,
    dropped: u64,
}

/// The most [`Submitted::abandon`] waits for the server to have its unsubscribe (it goes out
/// at once; the wait is for the server's word on a slow link).
const ABANDON_FLUSH: Duration = Duration::from_millis(100);

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
        self.submit_to(job, host_triple, Filing::Toolchain(job.toolchain), dedup)
            .await
    }

    /// [`Resources::submit`] into the queue `filing` names.
    pub async fn submit_to(
        &self,
        job: &JobRequest,
        host_triple: &str,
        filing: Filing,
        dedup: &Digest,
    ) -> Result<Submitted, FarmError> {
        let names = &self.farm.names;
        let bad = |e| FarmError::other("bad host triple", e);
        let subject = match filing {
            Filing::Toolchain(toolchain) => names.jobs_subject(host_triple, &toolchain),
            Filing::Shipped => names.shipped_subject(host_triple),
        }
        .map_err(bad)?;
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
            farm: self.farm.clone(),
            binding: Binding {
                job_id: job.job_id.clone(),
                worker: None,
                dropped: 0,
            },
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
                Ok(None) => {
                    return Err(FarmError::new(
                        FarmErrorKind::Unreachable,
                        "the connection closed while waiting for the job",
                    ))
                }
                Ok(Some(msg)) => match self.binding.take(&msg.payload) {
                    Some(event) => {
                        self.answer(&event, msg.reply.as_deref()).await;
                        return Ok(Some(event));
                    }
                    // A stream of others' events must not keep us waiting past `wait`.
                    None if tokio::time::Instant::now() >= deadline => return Ok(None),
                    None => continue,
                },
                Err(_) if tokio::time::Instant::now() >= deadline => return Ok(None),
                Err(_) => {}
            }
            if self.farm.client.connection_state() == async_nats::connection::State::Connected {
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

    /// Stops listening for the job's events and has the server know it now: a worker that
    /// takes the job later hears at once that nobody waits (no responders), where a
    /// subscription left to be dropped lingers until this process's runtime runs again,
    /// which a client compiling locally meanwhile does not do (measured on the split rig: a
    /// worker waited out its 2 s answer time for each job taken back, idle).
    pub async fn abandon(mut self) {
        if let Err(e) = self.events.unsubscribe().await {
            tracing::debug!("cannot unsubscribe from the job's events: {e}");
        }
        self.farm.flush_within(ABANDON_FLUSH).await;
    }

    /// The worker that started the job (the last `Started`), if one has.
    pub fn worker(&self) -> Option<&str> {
        self.binding.worker.as_deref()
    }

    /// Events dropped so far: not of this job, not from its worker, or unreadable.
    pub fn dropped(&self) -> u64 {
        self.binding.dropped
    }

    /// A worker asks whether we still wait before it starts (see `Started`): answered only
    /// on an answer subject, never an inbox or any other subject the sender chose (our
    /// answer goes out with our permissions).
    async fn answer(&self, event: &JobEvent, reply: Option<&str>) {
        let Some(to) = reply.filter(|r| self.farm.names.is_answer_subject(r)) else {
            return;
        };
        if matches!(event, JobEvent::Started) {
            let _ = self
                .farm
                .client
                .publish(to.to_owned(), bytes::Bytes::new())
                .await;
        }
    }
}

impl Binding {
    /// The event `payload` carries if it is one of ours: this job's, and after `Started`
    /// from the worker that sent it (a later `Started`, a redelivery to another worker after
    /// the first died, moves that on). A `Refused` is taken from any worker holding the job
    /// (one refused unrun, or redelivered after its first worker died): it can only make us
    /// compile locally. Anything else is dropped, logged and counted.
    fn take(&mut self, payload: &[u8]) -> Option<JobEvent> {
        let reply = match JobReply::decode(payload) {
            Ok(reply) => reply,
            Err(e) => return self.drop_event(&format!("unreadable: {e}")),
        };
        if reply.job_id != self.job_id {
            return self.drop_event(&format!("of another job {:?}", reply.job_id));
        }
        match (&reply.event, &self.worker) {
            (JobEvent::Started, _) => self.worker = Some(reply.worker),
            (JobEvent::Refused { .. }, _) => {}
            (_, Some(worker)) if *worker == reply.worker => {}
            (_, started) => {
                return self.drop_event(&format!(
                    "from worker {:?}, not the one that started it ({started:?})",
                    reply.worker
                ))
            }
        }
        Some(reply.event)
    }

    fn drop_event(&mut self, why: &str) -> Option<JobEvent> {
        self.dropped += 1;
        tracing::debug!(
            job = self.job_id,
            "dropped an event on the reply subject: {why}"
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(job_id: &str, worker: &str, event: JobEvent) -> Vec<u8> {
        JobReply::encode_parts(job_id, worker, &event)
    }

    fn done() -> JobEvent {
        JobEvent::Done {
            exit_code: 0,
            stdout: vec![],
            outputs: vec![("liba.rlib".into(), Digest::of_bytes(b"evil"))],
            compile_ms: 1,
            inline: vec![],
        }
    }

    #[test]
    fn only_our_jobs_events_from_its_worker_count() {
        let ours = "a".repeat(32);
        let theirs = "b".repeat(32);
        let mut b = Binding {
            job_id: ours.clone(),
            worker: None,
            dropped: 0,
        };
        // Before Started: nothing but a refusal of our job.
        assert_eq!(b.take(&reply(&ours, "w1", done())), None);
        assert_eq!(b.take(&reply(&theirs, "w1", JobEvent::Started)), None);
        assert_eq!(b.take(b"\xc1garbage"), None);
        assert_eq!(b.dropped, 3);
        let refused = JobEvent::Refused {
            reason: "no".into(),
        };
        assert_eq!(
            b.take(&reply(&ours, "w9", refused.clone())),
            Some(refused.clone())
        );
        // Started binds the worker; others' events, and other jobs', are dropped.
        assert_eq!(
            b.take(&reply(&ours, "w1", JobEvent::Started)),
            Some(JobEvent::Started)
        );
        assert_eq!(b.take(&reply(&ours, "w2", done())), None);
        assert_eq!(b.take(&reply(&theirs, "w1", done())), None);
        let line = JobEvent::Stderr(b"warning".to_vec());
        assert_eq!(b.take(&reply(&ours, "w2", line.clone())), None);
        assert_eq!(b.take(&reply(&ours, "w1", line.clone())), Some(line));
        assert_eq!(b.dropped, 6);
        // A redelivery: the new worker's Started moves the binding on.
        assert_eq!(
            b.take(&reply(&ours, "w2", JobEvent::Started)),
            Some(JobEvent::Started)
        );
        assert_eq!(b.take(&reply(&ours, "w1", done())), None);
        assert_eq!(b.take(&reply(&ours, "w2", done())), Some(done()));
        assert_eq!(b.dropped, 7);
        // The next worker refuses our job redelivered after w2 died: taken, we compile here.
        assert_eq!(b.take(&reply(&ours, "w3", refused.clone())), Some(refused));
        assert_eq!(
            b.take(&reply(
                &theirs,
                "w3",
                JobEvent::Refused { reason: "x".into() }
            )),
            None
        );
    }
}
