//! The monitor's view of the farm, kept fresh for `watch` and `serve`: the latest
//! [`FarmStatus`], read every few seconds, the [`Tally`] of events, and their [`Trend`]
//! over the last minutes, behind one lock.
//!
//! A server that goes away leaves the last status in place with the error beside it; the
//! connection (a service's) reconnects by itself, and the next read clears the error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use jetcc_common::farm::events::FarmEvent;
use jetcc_common::farm::resources::FarmStatus;
use jetcc_common::farm::{Farm, Resources};

use crate::tally::Tally;
use crate::trend::Trend;

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
    /// Jobs, lookups, compiles and the queue, second by second.
    pub trend: Trend,
}

pub type Shared = Arc<Mutex<Live>>;

/// Starts reading the farm's state every `every` and counting its events; returns the view
/// they keep up to date. Needs a running tokio runtime.
pub async fn start(farm: Farm, every: Duration) -> Shared {
    let live = Arc::new(Mutex::new(Live {
        server: farm.url.clone(),
        ..Default::default()
    }));
    match farm.subscribe_events().await {
        Ok(events) => {
            tokio::spawn(count_events(events, live.clone()));
        }
        Err(e) => set_error(&live, e.to_string()),
    }
    tokio::spawn(poll_status(farm, every, live.clone()));
    live
}

async fn poll_status(farm: Farm, every: Duration, live: Shared) {
    let mut res: Option<Resources> = None;
    loop {
        if res.is_none() {
            match farm.open_if_set_up().await {
                Ok(Some(r)) => res = Some(r),
                // Nothing to read until a worker (or a client) sets the farm up.
                Ok(None) => update(&live, Ok(FarmStatus::default())),
                Err(e) => update(&live, Err(e.to_string())),
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
    let now = Instant::now();
    let mut l = live.lock().expect("the view's lock");
    match status {
        Ok(s) => {
            l.trend.queued(Some(s.queued), now);
            l.status = Some(s);
            l.read_at = Some(now);
            l.error = None;
        }
        Err(e) => {
            // The last status stays on screen with the error; the trend does not guess.
            l.trend.queued(None, now);
            l.error = Some(e);
        }
    }
}

fn set_error(live: &Shared, e: String) {
    live.lock().expect("the view's lock").error = Some(e);
}

async fn count_events(mut events: impl Stream<Item = FarmEvent> + Unpin, live: Shared) {
    while let Some(event) = events.next().await {
        let now = Instant::now();
        let mut l = live.lock().expect("the view's lock");
        match event {
            FarmEvent::Unit(e) => {
                l.tally.unit(&e, now);
                l.trend.unit(&e, now);
            }
            FarmEvent::Job(e) => {
                l.tally.job(&e, now);
                l.trend.job_finished(now);
            }
            // A kind this monitor does not know (a newer jetcc): not an error.
            FarmEvent::Unknown { .. } => {}
            FarmEvent::Undecodable { subject, error } => {
                tracing::debug!(subject, "undecodable event: {error}");
                l.tally.malformed += 1;
            }
        }
    }
}
