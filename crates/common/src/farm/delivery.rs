//! The worker's side of the work queue: pulling jobs ([`JobQueue`], [`Batch`]), settling each
//! delivered job with the queue ([`Delivery`]: ack, terminate, in progress) and talking to the
//! client that waits for it ([`ReplyTo`]).
//!
//! Why here: a worker must not spell a subject or hold a NATS client (see the invariant in
//! [`crate::farm`]); with these types it knows the queue only as jobs in and events out, so
//! `jetcc-worker` does not depend on `async-nats` at all. [`jobs`](super::jobs) is the other
//! side: the client submitting a job and following its events.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;

use super::{Farm, FarmError, FarmErrorKind, Resources};
use crate::protocol::job::{JobEvent, JobReply};
use crate::Digest;

/// How long one pull request waits on the server for jobs.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);
/// A pull request dies with the server that held it, and its end is then never announced: the
/// worker gives up on a batch this long after the request expired.
const FETCH_GRACE: Duration = Duration::from_secs(1);
/// How long a worker waits for a client to say it still waits for its job.
const CLIENT_ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The jobs of one host triple and toolchain, as the workers serving them share them (one
/// durable pull consumer: each job goes to one worker).
#[derive(Clone)]
pub struct JobQueue {
    consumer: PullConsumer,
}

/// Which queue a job is filed in, for one host triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    /// The queue of one toolchain: a worker's own rustc or C compiler (its identity), or a
    /// shipped toolchain a worker holds unpacked (its pack's digest).
    Toolchain(Digest),
    /// The queue of jobs that ship their toolchain, pulled by every worker that takes them.
    Shipped,
}

impl Resources {
    /// The queue of jobs for `host_triple` filed as `filing`; its consumer is created if
    /// missing.
    pub async fn job_queue(
        &self,
        host_triple: &str,
        filing: Filing,
    ) -> Result<JobQueue, FarmError> {
        let consumer = self.workers_consumer(host_triple, filing).await?;
        Ok(JobQueue { consumer })
    }
}

impl JobQueue {
    /// Asks for up to `max` jobs; they arrive through the returned [`Batch`] as the server
    /// hands them out, for a few seconds at most.
    pub async fn fetch(&self, max: usize) -> Result<Batch, FarmError> {
        let messages = self
            .consumer
            .fetch()
            .max_messages(max)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
            .map_err(|e| FarmError::other("cannot fetch jobs", e))?;
        Ok(Batch {
            messages,
            deadline: tokio::time::Instant::now() + FETCH_EXPIRES + FETCH_GRACE,
        })
    }
}

/// The jobs one pull request brings.
pub struct Batch {
    messages: jetstream::consumer::pull::Batch,
    /// When to stop waiting for the request's end, should its server be gone.
    deadline: tokio::time::Instant,
}

impl Batch {
    /// The next job, or `None` once the request has ended (or is given up on). An error the
    /// client library reports in place of a message is skipped.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            match tokio::time::timeout_at(self.deadline, self.messages.next()).await {
                Ok(Some(Ok(msg))) => return Some(Delivery { msg }),
                Ok(Some(Err(_))) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// One job as the queue delivered it to this worker. The queue redelivers it to another
/// worker unless it is acked, terminated or marked in progress within
/// [`ACK_WAIT`](crate::protocol::timing::ACK_WAIT).
pub struct Delivery {
    msg: jetstream::Message,
}

impl Delivery {
    /// The encoded [`JobRequest`](crate::protocol::job::JobRequest).
    pub fn payload(&self) -> &[u8] {
        &self.msg.payload
    }

    /// Whether a worker had it before (one that died or stalled mid-job).
    pub fn redelivered(&self) -> bool {
        self.msg.info().is_ok_and(|i| i.delivered > 1)
    }

    /// The job got its answer (a compile error too): it leaves the queue.
    pub async fn ack(self) -> Result<(), FarmError> {
        self.msg
            .ack()
            .await
            .map_err(|e| FarmError::other("cannot ack the job", e))
    }

    /// The job will never run anywhere (malformed, refused, expired): it leaves the queue
    /// without another delivery.
    pub async fn term(self) -> Result<(), FarmError> {
        self.msg
            .ack_with(AckKind::Term)
            .await
            .map_err(|e| FarmError::other("cannot terminate the job", e))
    }

    /// The job is still running here: the queue's ack wait starts over.
    pub async fn in_progress(&self) -> Result<(), FarmError> {
        self.msg
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| FarmError::other("cannot mark the job in progress", e))
    }
}

/// Where a job's events go: the reply subject its client listens on, each event bound to
/// the job and this worker ([`JobReply`]).
#[derive(Clone)]
pub struct ReplyTo {
    farm: Farm,
    subject: String,
    job_id: String,
    worker: String,
}

impl Farm {
    /// A handle on `subject` for the events of job `job_id`, sent by `worker`; refused unless
    /// it is one of this farm's reply subjects exactly (the subject comes from the job, so
    /// from anyone who may publish one).
    pub fn reply_to(
        &self,
        subject: &str,
        job_id: &str,
        worker: &str,
    ) -> Result<ReplyTo, FarmError> {
        if self.names.reply_subject_user(subject).is_none() {
            return Err(FarmError::new(
                FarmErrorKind::Other,
                format!("{subject:?} is not a reply subject"),
            ));
        }
        Ok(ReplyTo {
            farm: self.clone(),
            subject: subject.to_owned(),
            job_id: job_id.to_owned(),
            worker: worker.to_owned(),
        })
    }
}

impl ReplyTo {
    /// Sends `Started` with an answer subject of this worker's own (never its inbox: a
    /// client may publish answers, and nothing into a worker's inbox) and waits for the
    /// client's answer. `false` when no answer came in time.
    pub async fn client_waits(&self) -> bool {
        match self.ask_client().await {
            Ok(answered) => answered,
            Err(e) => {
                tracing::debug!("cannot ask the client whether it waits: {e}");
                false
            }
        }
    }

    async fn ask_client(&self) -> Result<bool, FarmError> {
        let farm = &self.farm;
        let answer = farm
            .names
            .answer_subject(&farm.user, &super::nonce()?)
            .map_err(|e| FarmError::other("cannot name an answer subject", e))?;
        // Subscribed before the publish goes out on the same connection, so the server
        // has the subscription when the answer comes.
        let mut answers = farm
            .client
            .subscribe(answer.clone())
            .await
            .map_err(|e| FarmError::other("cannot subscribe for the client's answer", e))?;
        farm.client
            .publish_with_reply(
                self.subject.clone(),
                answer,
                self.encode(&JobEvent::Started),
            )
            .await
            .map_err(|e| FarmError::other("cannot send Started", e))?;
        let answered = tokio::time::timeout(CLIENT_ANSWER_WITHIN, answers.next()).await;
        let _ = answers.unsubscribe().await;
        // With nobody subscribed to the reply subject (the client gave up or died), the
        // server says so at once on the answer subject: a 503 status, no answer.
        Ok(matches!(answered, Ok(Some(m)) if m.status.is_none_or(|s| s.is_success())))
    }

    /// Publishes `event` to the client, fire-and-forget: a client that is gone compiles
    /// locally anyway. Failures are logged.
    pub async fn send(&self, event: &JobEvent) {
        let payload = self.encode(event);
        if let Err(e) = self
            .farm
            .client
            .publish(self.subject.clone(), payload)
            .await
        {
            tracing::debug!("cannot reply: {e}");
        }
    }

    fn encode(&self, event: &JobEvent) -> bytes::Bytes {
        JobReply::encode_parts(&self.job_id, &self.worker, event).into()
    }
}
