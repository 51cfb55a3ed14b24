//! The farm session of one wrapper process: one NATS connection on its own single-threaded
//! runtime, opened on the process's first need and used for the JetStream tier, remote
//! compiles and the monitor event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jetcc_common::cache::DiskCache;
use jetcc_common::config::FarmConfig;
use jetcc_common::farm::{Farm, Lifetime, Resources};
use jetcc_common::protocol::events::{self, UnitEvent};

use super::{RemoteCompile, RemoteError};
use crate::compile::Compiled;

/// How long an exiting wrapper waits to hand its monitor event to the server.
const EVENT_FLUSH: Duration = Duration::from_millis(100);

/// A connection to the farm for one wrapper process, opened on its first miss.
pub struct Session {
    /// Its requests run here, blocking: a wrapper process serves one invocation.
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) res: Resources,
    /// Events dropped on our jobs' reply subjects, not yet counted in the stats.
    dropped_events: AtomicU64,
}

impl Session {
    pub fn open(farm: &FarmConfig) -> Result<Session, RemoteError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Local(format!("cannot start an async runtime: {e}")))?;
        // No request beyond the connection's: the first read tells whether the farm is set
        // up, and sets it up where it is not (`Resources::set_up_and_retry`).
        let res = rt.block_on(async {
            let farm = Farm::connect(farm, "jetcc", Lifetime::Wrapper).await?;
            farm.resources().await
        })?;
        Ok(Session {
            rt,
            res,
            dropped_events: AtomicU64::new(0),
        })
    }

    /// Compiles on the farm. On `Ok`, the outputs are written in the out-dir, and
    /// stdout/stderr were forwarded (and are returned for the cache), with how long rustc
    /// ran on the worker.
    pub fn compile(
        &self,
        remote: RemoteCompile<'_>,
        cache: &DiskCache,
    ) -> Result<(Compiled, Duration), RemoteError> {
        self.rt.block_on(super::compile::compile(
            &self.res,
            remote,
            cache,
            &self.dropped_events,
        ))
    }

    /// Events dropped on reply subjects (not our job's, or not from the worker that
    /// started it) since the last call.
    pub fn take_dropped_events(&self) -> u64 {
        self.dropped_events.swap(0, Ordering::Relaxed)
    }

    /// Publishes this process's monitor event, waiting at most 100 ms to hand it to the
    /// server: the process exits next, and a buffered publish would be lost.
    pub fn publish_event(&self, event: &UnitEvent) {
        let farm = &self.res.farm;
        // A server that went away mid-build gets no event (and costs no wait).
        if !farm.is_connected() {
            return;
        }
        self.rt.block_on(async {
            farm.publish_event(events::UNIT, event.encode()).await;
            farm.flush_within(EVENT_FLUSH).await;
        });
    }
}
