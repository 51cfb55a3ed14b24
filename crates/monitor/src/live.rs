//! The monitor's view of the farm, kept fresh for `watch` and `serve`: the latest
//! [`FarmStatus`], read every few seconds, and the [`Tally`] of events, behind one lock.
//!
//! A server that goes away leaves the last status in place with the error beside it; the
//! connection (a service's) reconnects by itself, and the next read clears the error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jetcc_common::farm::resources::FarmStatus;
use jetcc_common::farm::{Farm, FarmErrorKind, Resources};
use jetcc_common::protocol::events::{self, JobDone, UnitEvent};

use crate::tally::Tally;

/// What the views show.
#[derive(Debug, Default)]
pub struct Live {
    pub server: String,
    pub status: Option<FarmStatus>,
    /// When `status` was read.
    pub read_at: Option<Instant>,
    /// Why the last read failed, if it did.
    pub error: Option<String>,
    pub tally: Tally,
}

pub type Shared = Arc<Mutex<Live>>;

/// Starts reading the farm's state every `every` and counting its events; returns the view
/// they keep up to date. Needs a running tokio runtime.
pub async fn start(farm: Farm, every: Duration) -> Shared {
    let live = Arc::new(Mutex::new(Live {
        server: farm.url.clone(),
        ..Default::default()
    }));
    match farm.client.subscribe(farm.names.events_subjects()).await {
        Ok(sub) => {
            tokio::spawn(count_events(farm.clone(), sub, live.clone()));
        }
        Err(e) => set_error(&live, format!("cannot subscribe to events: {e}")),
    }
    tokio::spawn(poll_status(farm, every, live.clone()));
    live
}

async fn poll_status(farm: Farm, every: Duration, live: Shared) {
    let mut res: Option<Resources> = None;
    loop {
        if res.is_none() {
            match farm.open_resources().await {
                Ok(r) => res = Some(r),
                // Nothing to read until a worker (or a client) sets the farm up.
                Err(e) if e.kind == FarmErrorKind::NotSetUp => {
                    update(&live, Ok(FarmStatus::default()));
                }
                Err(e) => set_error(&live, e.to_string()),
            }
        }
        if let Some(r) = &res {
            let read = tokio::time::timeout(every.max(Duration::from_secs(2)), r.status()).await;
            match read {
                Ok(Ok(status)) => update(&live, Ok(status)),
                Ok(Err(e)) => update(&live, Err(e.to_string())),
                Err(_) => update(&live, Err("the server did not answer in time".into())),
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn update(live: &Shared, status: Result<FarmStatus, String>) {
    let mut l = live.lock().expect("the view's lock");
    match status {
        Ok(s) => {
            l.status = Some(s);
            l.read_at = Some(Instant::now());
            l.error = None;
        }
        Err(e) => l.error = Some(e),
    }
}

fn set_error(live: &Shared, e: String) {
    live.lock().expect("the view's lock").error = Some(e);
}

async fn count_events(farm: Farm, mut sub: async_nats::Subscriber, live: Shared) {
    let names = &farm.names;
    let (unit, job) = (
        names.events_subject(events::UNIT).expect("a valid kind"),
        names.events_subject(events::JOB).expect("a valid kind"),
    );
    while let Some(msg) = sub.next().await {
        let now = Instant::now();
        let mut l = live.lock().expect("the view's lock");
        let subject = msg.subject.as_str();
        let counted = if subject == unit {
            UnitEvent::decode(&msg.payload).map(|e| l.tally.unit(&e, now))
        } else if subject == job {
            JobDone::decode(&msg.payload).map(|e| l.tally.job(&e, now))
        } else {
            // A kind this monitor does not know (a newer jetcc): not an error.
            Ok(())
        };
        if let Err(e) = counted {
            tracing::debug!(subject, "undecodable event: {e}");
            l.tally.malformed += 1;
        }
    }
}
