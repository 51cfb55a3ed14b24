//! The wrapper's side of the farm: whether a miss may go there and sending it, the farm
//! session a wrapper process opens once (behind the circuit breaker), lookups in the farm's
//! shared cache, and sharing what this invocation stored.

use std::path::Path;

use jetcc_common::result::CacheEntry;
use jetcc_common::stats::Stats;
use jetcc_common::toolchain;

use super::{record, Job};
use crate::compile::Compiled;
use crate::dist::{Breaker, Session, Skip};
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
    fn breaker(&self) -> Breaker {
        let secs = self.dist.as_ref().map_or(60, |d| d.breaker_secs);
        Breaker::new(self.cache.root(), std::time::Duration::from_secs(secs))
    }

    /// The farm session, opened once per process; `None` when no farm is configured, the
    /// breaker is open or the farm cannot be reached (which is counted and logged).
    fn take_session(&mut self) -> Option<Session> {
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

    /// Looks the invocation up in the farm's shared cache; on a hit, restores and replays it,
    /// fills the local cache, and returns rustc's exit code.
    pub(super) fn try_shared_hit(&mut self) -> Option<i32> {
        self.dist.as_ref()?;
        let session = self.take_session()?;
        let hit = self.shared_hit(&session);
        self.session = Some(Some(session));
        match hit {
            Ok(Some(entry)) => {
                tracing::debug!(
                    crate_name = self.inv.crate_name.as_deref().unwrap_or(""),
                    "hit (shared)"
                );
                self.replay(&entry);
                let restored = entry.total_output_bytes();
                record(self.cache.root(), |s| {
                    s.requests += 1;
                    s.hits += 1;
                    s.shared_hits += 1;
                    s.bytes_restored += restored;
                });
                Some(entry.exit_code)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    crate_name = self.inv.crate_name.as_deref().unwrap_or(""),
                    "shared cache lookup failed: {e}"
                );
                record(self.cache.root(), |s| Stats::bump(&mut s.errors, e.kind()));
                None
            }
        }
    }

    fn shared_hit(&mut self, session: &Session) -> Result<Option<CacheEntry>, Skip> {
        let manifest = session.manifest(&self.invocation)?;
        let env = |n: &str| std::env::var(n).ok();
        let Some(found) = manifest.find(&mut self.files, &env, &self.map).cloned() else {
            return Ok(None);
        };
        let Some(entry) = session.entry(&found.key)? else {
            return Ok(None);
        };
        let out_dir = self.outputs.out_dir.clone();
        for out in &entry.outputs {
            let path = out_dir.join(&out.name);
            session.fetch(&out.digest, &path, out.mode)?;
            self.files.remember_written(&path, out.digest);
            // Fill the local tier too; a failure here only costs a later shared hit.
            let _ = self.cache.put_output(&out.name, &path);
        }
        let (name, text) = &entry.dep_info;
        let dest = out_dir.join(name);
        jetcc_common::fsutil::write_atomic(&dest, &self.map.restore(text.as_bytes()))
            .map_err(|e| Skip::Local(format!("cannot write {}: {e}", dest.display())))?;
        if self.cache.put_entry(&found.key, &entry).is_ok() {
            let _ = self.cache.add_to_manifest(&self.invocation, found);
        }
        self.cache.commit_size();
        Ok(Some(entry))
    }

    /// Shares what `store` just recorded in the farm's cache, so one developer's compile is
    /// the team's hit. A remote compile's outputs are in the CAS already; a local one's are
    /// uploaded first (`upload`), so no reader finds an entry whose blobs are missing.
    pub(super) fn share_stored(&mut self, upload: bool) {
        let Some((found, entry)) = self.stored.take() else {
            return;
        };
        let Some(Some(session)) = &self.session else {
            return;
        };
        let out_dir = upload.then_some(self.outputs.out_dir.as_path());
        match session.publish(&self.invocation, found, &entry, out_dir) {
            Ok(()) => record(self.cache.root(), |s| s.shared_writes += 1),
            Err(e) => {
                tracing::warn!("cannot share the result: {e}");
                record(self.cache.root(), |s| Stats::bump(&mut s.errors, e.kind()));
            }
        }
    }
}
