//! The wrapper's side of the farm: whether a miss may go there and sending it, and the farm
//! session a wrapper process opens once (behind the circuit breaker), which is also the
//! JetStream cache tier (`shared.rs`).

use std::path::Path;

use jetcc_common::stats::Stats;
use jetcc_common::toolchain;

use super::{record, Job};
use crate::breaker::Breaker;
use crate::compile::Compiled;
use crate::dist::Session;
use crate::placement::Placement;

impl Job {
    /// Links need the client's linker and libraries; incremental units compile faster where
    /// their incremental state is; cross-compiles need the target's std.
    pub(super) fn distributable(&self) -> bool {
        !self.outputs.links
            && self.inv.codegen_opt("incremental").is_none()
            && self.inv.target.is_none()
    }

    /// Local-versus-farm decisions, when a farm is configured.
    pub(super) fn placement(&self) -> Option<Placement> {
        let dist = self.dist.as_ref()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(Placement::new(
            self.cache.root(),
            dist.local_slots.unwrap_or(cores),
        ))
    }

    /// Compiles on the farm when one is configured, the unit can go there and the farm has
    /// been healthy; `None`: compile locally.
    pub(super) fn try_remote(
        &mut self,
        words: &[String],
        placement: &Placement,
    ) -> Option<Compiled> {
        let dist = self.dist.clone()?;
        let host = toolchain::host_triple(Path::new(&self.rustc), &self.cache.toolchain_memo_dir())
            .ok()?;
        let out_dir = self.outputs.out_dir.clone();
        let session = self.take_session()?;
        let result = session.compile(crate::dist::Remote {
            dist: &dist,
            rustc: Path::new(&self.rustc),
            inv: &self.inv,
            args: words,
            cwd: &self.cwd,
            out_dir: &out_dir,
            outputs: &self.outputs.files,
            toolchain: &self.toolchain,
            host: &host,
            files: &mut self.files,
            placement,
        });
        self.session = Some(Some(session));
        let breaker = self.breaker();
        match result {
            Ok((compiled, on_worker)) => {
                placement.record_remote(compiled.duration, on_worker);
                breaker.record(true);
                record(self.cache.root(), |s| s.remote_compiles += 1);
                Some(compiled)
            }
            Err(skip) => {
                tracing::info!(
                    crate_name = self.inv.crate_name.as_deref().unwrap_or(""),
                    "compiling locally: {skip}"
                );
                breaker.record(!skip.is_farm_failure());
                record(self.cache.root(), |s| {
                    Stats::bump(&mut s.remote_skipped, skip.kind())
                });
                None
            }
        }
    }
}

impl Job {
    pub(super) fn breaker(&self) -> Breaker {
        let secs = self.dist.as_ref().map_or(60, |d| d.breaker_secs);
        Breaker::new(
            self.cache.root(),
            "farm",
            "the farm",
            std::time::Duration::from_secs(secs),
        )
    }

    /// The farm session, opened once per process; `None` when no farm is configured, the
    /// breaker is open or the farm cannot be reached (which is counted and logged).
    pub(super) fn take_session(&mut self) -> Option<Session> {
        match self.session.take() {
            Some(Some(s)) => Some(s),
            Some(None) => {
                self.session = Some(None);
                None
            }
            None => {
                self.session = Some(None);
                self.open_session()
            }
        }
    }

    fn open_session(&mut self) -> Option<Session> {
        let dist = self.dist.as_ref()?;
        let breaker = self.breaker();
        if breaker.is_open() {
            return None;
        }
        match Session::open(dist) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("the farm is unavailable, compiling locally: {e}");
                breaker.record(false);
                record(self.cache.root(), |s| {
                    Stats::bump(&mut s.remote_skipped, e.kind())
                });
                None
            }
        }
    }
}
