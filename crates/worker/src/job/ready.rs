//! Launchers forked ahead of their jobs, each already in a fresh cgroup of its own.
//!
//! Moving a process into a cgroup waits for an RCU grace period: 8-28 ms per job measured on
//! this host's v1 memory controller, a third of a tiny job's time on the worker. A launcher
//! joins its cgroups while it waits in this pool, so a job starts its compiler at once; each
//! taken launcher is replaced in the background.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::cgroup::{Cgroups, JobCgroup};
use crate::jail::{Launcher, Prepared};

use super::JobError;

/// A launcher for one job, and the cgroup it joined (none where the host gives none).
pub(crate) struct Ready {
    pub(crate) cgroup: Option<JobCgroup>,
    pub(crate) launcher: Prepared,
}

/// The pool of [`Ready`] launchers: about as many as the worker has slots.
pub struct ReadyLaunchers {
    launcher: Launcher,
    cgroups: Option<Cgroups>,
    pool: Mutex<Pool>,
    made: AtomicU64,
}

#[derive(Default)]
struct Pool {
    ready: Vec<Ready>,
    /// No more launchers are kept: the worker is stopping.
    closed: bool,
}

impl Ready {
    /// Kills the launcher and removes its cgroup. Blocks briefly.
    fn discard(self) {
        drop(self.launcher);
        if let Some(c) = self.cgroup {
            c.remove();
        }
    }
}

impl ReadyLaunchers {
    /// A pool of `count` launchers (fewer if some cannot be prepared now: a job then
    /// prepares its own, and says why if it cannot either).
    pub fn new(launcher: Launcher, cgroups: Option<Cgroups>, count: usize) -> ReadyLaunchers {
        let launchers = ReadyLaunchers {
            launcher,
            cgroups,
            pool: Mutex::default(),
            made: AtomicU64::new(0),
        };
        let ready = (0..count).map_while(|_| launchers.prepare().ok()).collect();
        launchers.lock().ready = ready;
        launchers
    }

    /// Per-job memory and process limits, where the host lets the worker make cgroups.
    pub fn cgroups(&self) -> Option<&Cgroups> {
        self.cgroups.as_ref()
    }

    /// Returns once the jail's zygote is gone (no job can start any more).
    pub async fn gone(&self) {
        self.launcher.gone().await
    }

    /// A launcher for a job; another is prepared in its place, off the job's path.
    pub(crate) fn take(self: &Arc<Self>) -> Result<Ready, JobError> {
        let ready = self.lock().ready.pop();
        let launchers = self.clone();
        tokio::task::spawn_blocking(move || match launchers.prepare() {
            Ok(r) => {
                let mut pool = launchers.lock();
                match pool.closed {
                    false => pool.ready.push(r),
                    true => {
                        drop(pool);
                        r.discard();
                    }
                }
            }
            Err(e) => tracing::debug!("cannot prepare a launcher: {e}"),
        });
        match ready {
            Some(r) => Ok(r),
            None => self.prepare(),
        }
    }

    /// Kills the waiting launchers and removes their cgroups; none is kept after. Blocks
    /// briefly.
    pub fn close(&self) {
        let ready = {
            let mut pool = self.lock();
            pool.closed = true;
            std::mem::take(&mut pool.ready)
        };
        ready.into_iter().for_each(Ready::discard);
    }

    fn prepare(&self) -> Result<Ready, JobError> {
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let cgroup = match &self.cgroups {
            Some(c) => Some(
                c.create(&format!("job-{n}"))
                    .map_err(|e| JobError::Io(format!("cannot make the job's cgroup: {e}")))?,
            ),
            None => None,
        };
        let procs = cgroup
            .as_ref()
            .map(JobCgroup::procs_files)
            .unwrap_or_default();
        match self.launcher.prepare(procs) {
            Ok(launcher) => Ok(Ready { cgroup, launcher }),
            Err(e) => {
                if let Some(c) = cgroup {
                    c.remove();
                }
                Err(JobError::Io(format!("cannot start the jail launcher: {e}")))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ReadyLaunchers {
    /// Before the worker's parent cgroups go.
    fn drop(&mut self) {
        self.close();
    }
}
