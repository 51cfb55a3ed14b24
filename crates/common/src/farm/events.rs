//! Monitor events in transit: publishing one (wrappers, workers) and following them all (the
//! monitor), as [`FarmEvent`]s, so no reader looks at subjects or payloads itself.
//!
//! Core NATS, fire-and-forget: nothing stores or acks an event, so an absent monitor costs a
//! build nothing but the publish, and a slow one only misses events.

use futures_util::{Stream, StreamExt};

use super::{Farm, FarmError};
use crate::protocol::events::{self, JobDone, UnitEvent};
use crate::protocol::job::ProtocolError;
use crate::protocol::names::Names;

/// One event as a follower receives it.
#[derive(Debug)]
pub enum FarmEvent {
    /// What one wrapped rustc invocation did.
    Unit(UnitEvent),
    /// A job a worker finished.
    Job(JobDone),
    /// A kind this build does not know (a newer jetcc's): not an error, nothing to count.
    Unknown { subject: String },
    /// A unit or job event that did not decode (a foreign or broken sender). `subject` is
    /// for logs.
    Undecodable {
        subject: String,
        error: ProtocolError,
    },
}

impl Farm {
    /// Publishes a monitor event on `jetcc.events.<kind>` (see the module's doc). Failures are
    /// logged.
    pub async fn publish_event(&self, kind: &str, payload: Vec<u8>) {
        let subject = match self.names.events_subject(kind) {
            Ok(s) => s,
            Err(e) => return tracing::debug!("no event: {e}"),
        };
        if let Err(e) = self.client.publish(subject, payload.into()).await {
            tracing::debug!("cannot publish a {kind} event: {e}");
        }
    }

    /// Every event published from now on (`jetcc.events.>`), decoded. The stream ends only
    /// when the connection closes for good (a service's reconnects instead).
    pub async fn subscribe_events(
        &self,
    ) -> Result<impl Stream<Item = FarmEvent> + Send + Unpin + 'static, FarmError> {
        let sub = self
            .client
            .subscribe(self.names.events_subjects())
            .await
            .map_err(|e| FarmError::other("cannot subscribe to events", e))?;
        let names = self.names.clone();
        Ok(sub.map(move |msg| FarmEvent::decode(&names, &msg.subject, &msg.payload)))
    }
}

impl FarmEvent {
    fn decode(names: &Names, subject: &str, payload: &[u8]) -> FarmEvent {
        let decoded = match names.event_kind(subject) {
            Some(events::UNIT) => UnitEvent::decode(payload).map(FarmEvent::Unit),
            Some(events::JOB) => JobDone::decode(payload).map(FarmEvent::Job),
            _ => {
                return FarmEvent::Unknown {
                    subject: subject.to_owned(),
                }
            }
        };
        decoded.unwrap_or_else(|error| FarmEvent::Undecodable {
            subject: subject.to_owned(),
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::events::EVENTS_VERSION;

    #[test]
    fn events_decode_by_kind() {
        let names = Names::new("team").unwrap();
        let done = JobDone {
            v: EVENTS_VERSION,
            worker: "w.box-1-1".into(),
            crate_name: "syn".into(),
            ok: true,
            error: None,
            duration_ms: 5,
        };
        let subject = names.events_subject(events::JOB).unwrap();
        let decode = |subject: &str, payload: &[u8]| FarmEvent::decode(&names, subject, payload);
        assert!(
            matches!(decode(&subject, &done.encode()), FarmEvent::Job(j) if j == done),
            "a job event"
        );
        let unit = names.events_subject(events::UNIT).unwrap();
        assert!(matches!(
            decode(&unit, &done.encode()),
            FarmEvent::Undecodable { .. }
        ));
        for unknown in ["team.events.newer", "team.events.a.b", "jetcc.events.job"] {
            assert!(
                matches!(decode(unknown, b"{"), FarmEvent::Unknown { .. }),
                "{unknown}"
            );
        }
    }
}
