//! Storing a compile's result in the local tier (the entry, its blobs, the manifest entry
//! that finds it next time), explaining a miss, and the edit-loop rule.

use std::time::SystemTime;

use jetcc_common::depinfo::DepInfo;
use jetcc_common::files::{self, FileDigests};
use jetcc_common::key;
use jetcc_common::manifest::{Manifest, ManifestEntry, Source};
use jetcc_common::pathmap::PathMap;
use jetcc_common::result::{CacheEntry, FORMAT_VERSION};
use jetcc_common::stats::{ActionKind, ErrorKind, NotStoredReason, Stats, LOCAL_TIER};

use super::Wrapper;
use crate::compile::Compiled;

/// Why a compile's result was not stored: an expected case, or a jetcc-side error.
pub(crate) enum NotStored {
    Skipped(NotStoredReason),
    Failed(ErrorKind),
}

impl From<NotStoredReason> for NotStored {
    fn from(r: NotStoredReason) -> NotStored {
        NotStored::Skipped(r)
    }
}

/// An incremental unit that was stored this recently and misses again is being edited: its
/// results would only be stored to be replaced, so jetcc stays out of the edit loop's way.
const EDIT_LOOP_WINDOW_SECS: u64 = 600;

impl Wrapper {
    /// Stores a successful compile whose link (if any) read `libs`: returns what a lookup
    /// will find (the manifest entry) and the entry.
    pub(super) fn store(
        &mut self,
        compiled: &Compiled,
        libs: &[String],
    ) -> Result<(ManifestEntry, CacheEntry), NotStored> {
        let failed = |_| NotStored::Failed(ErrorKind::CacheWrite);
        let dep_path = self.inv.outputs.out_dir.join(&self.inv.outputs.dep_info);
        let dep_text = std::fs::read_to_string(&dep_path)
            .map_err(|_| NotStored::Failed(ErrorKind::DepInfoUnreadable))?;
        let dep = DepInfo::parse(&dep_text);
        // Fresh digests: the lookup may have hashed an older version of a file.
        self.files = FileDigests::new(&self.inv.cwd, Some(self.cache.stat_memo_dir()));
        let read: Vec<String> = dep.sources.iter().chain(libs).cloned().collect();
        let sources = self.sources_now(&read)?;
        let inv = &self.inv;
        let out_dir = &inv.outputs.out_dir;
        let env_deps: Vec<_> = dep
            .env_deps
            .into_iter()
            .map(|(name, value)| (name, value.map(|v| inv.map.key_path(&v))))
            .collect();
        let outputs_of = || {
            inv.outputs
                .files
                .iter()
                .filter(|f| **f != inv.outputs.dep_info)
        };
        // Outputs that name a local root anyway are only for builds with the same roots.
        let mut local_roots: Vec<String> = Vec::new();
        for name in outputs_of() {
            for root in portable_leaks(inv, &out_dir.join(name)) {
                if !local_roots.contains(&root) {
                    tracing::debug!(file = name, root, "an output names a local root");
                    local_roots.push(root);
                }
            }
        }
        let key = key::result_key(&inv.digest, &sources, &env_deps, &local_roots);
        let mut outputs = Vec::new();
        for name in outputs_of() {
            let path = out_dir.join(name);
            let out = self.cache.put_output(name, &path).map_err(failed)?;
            self.files.remember_written(&path, out.digest);
            outputs.push(out);
        }
        let dep_stored = String::from_utf8(inv.map.store(dep_text.as_bytes()))
            .map_err(|_| NotStored::Failed(ErrorKind::DepInfoUnreadable))?;
        let entry = CacheEntry {
            version: FORMAT_VERSION,
            outputs,
            dep_info: Some((inv.outputs.dep_info.clone(), dep_stored)),
            stdout: inv.map.store(&compiled.stdout),
            stderr: inv.map.store(&compiled.stderr),
            exit_code: compiled.exit_code,
            compile_ms: compiled.duration.as_millis() as u64,
        };
        self.cache.put_entry(&key, &entry).map_err(failed)?;
        self.cache.put_unit_parts(&inv.unit, &inv.parts);
        let found = ManifestEntry {
            sources,
            env_deps,
            local_roots,
            key,
            stored_at: unix_secs(SystemTime::now()),
        };
        self.cache
            .add_to_manifest(&inv.digest, found.clone())
            .map_err(failed)?;
        Ok((found, entry))
    }

    /// Says why no manifest entry matched, and records it for `jetcc --explain`.
    pub(super) fn explain_miss(&mut self, manifest: &Manifest) -> String {
        let inv = &self.inv;
        let missed = crate::misses::Missed {
            subject: crate::misses::Subject::RustcUnit,
            manifest,
            unit: &inv.unit,
            parts: &inv.parts,
            map: &inv.map,
            label: inv.args.crate_name.as_deref().unwrap_or("?"),
            cwd: &inv.cwd,
        };
        crate::misses::explain(&self.cache, &mut self.files, &missed)
    }

    pub(super) fn in_edit_loop(&self, newest_stored_at: Option<u64>) -> bool {
        let now = unix_secs(SystemTime::now());
        self.inv.incremental()
            && newest_stored_at.is_some_and(|t| now.saturating_sub(t) < EDIT_LOOP_WINDOW_SECS)
    }

    /// Digests and stamps of the sources a compile read. Fails if one changed after the
    /// compile started: the result might not match what the key would say.
    fn sources_now(&mut self, paths: &[String]) -> Result<Vec<Source>, NotStored> {
        Ok(sources_now(
            &mut self.files,
            &self.inv.map,
            self.inv.started,
            paths,
        )?)
    }

    /// After a local hit that had to hash some sources (a fresh checkout, a `touch`),
    /// records their current stamps so the next hit only stats them. Best effort.
    pub(super) fn refresh_stamps(&mut self, found: &ManifestEntry) {
        let now = files::now_ns();
        let mut fresh = found.clone();
        let mut changed = false;
        for s in &mut fresh.sources {
            let stamp = self
                .files
                .stamp(&self.inv.map.local_path(&s.path))
                .filter(|st| st.settled(now));
            if stamp.is_some() && stamp != s.stamp {
                s.stamp = stamp;
                changed = true;
            }
        }
        if changed {
            if let Err(e) = self.cache.add_to_manifest(&self.inv.digest, fresh) {
                tracing::debug!("cannot refresh manifest stamps: {e}");
            }
        }
    }
}

/// Counts a restored action other than rustc (a build-script run, a C compile) that took
/// `spent_ms` to restore.
pub(crate) fn count_action_hit(s: &mut Stats, kind: ActionKind, entry: &CacheEntry, spent_ms: u64) {
    let a = s.action(kind);
    a.hits += 1;
    a.time_saved_ms += entry.compile_ms.saturating_sub(spent_ms);
    s.bytes_restored += entry.total_output_bytes();
}

/// Counts a miss of an action other than rustc, and what became of its result (in a
/// `local_read_only` cache, not stored there).
pub(crate) fn count_action_miss(
    s: &mut Stats,
    kind: ActionKind,
    outcome: &Result<(ManifestEntry, CacheEntry), NotStored>,
    local_read_only: bool,
) {
    let a = s.action(kind);
    a.misses += 1;
    match outcome {
        Ok(_) if local_read_only => Stats::bump(&mut a.not_stored, &NotStoredReason::LocalReadOnly),
        Ok((_, entry)) => {
            a.stored += 1;
            let bytes = entry.total_output_bytes();
            s.bytes_stored += bytes;
            let local = s.tier(LOCAL_TIER);
            local.writes += 1;
            local.bytes_written += bytes;
        }
        Err(NotStored::Skipped(why)) => Stats::bump(&mut a.not_stored, why),
        Err(NotStored::Failed(e)) => Stats::bump(&mut s.errors, e),
    }
}

/// Digests and stamps (in key form) of the files an action read, by local path. Fails if
/// one changed after the action started: its result might not match what the key would say.
pub(crate) fn sources_now(
    files: &mut FileDigests,
    map: &PathMap,
    started: SystemTime,
    paths: &[String],
) -> Result<Vec<Source>, NotStoredReason> {
    let started = files::system_ns(started);
    let now = files::now_ns();
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let stamp = files.stamp(path).ok_or(NotStoredReason::SourceUnreadable)?;
        if stamp.changed_since(started) {
            tracing::debug!(path, "changed while it ran");
            return Err(NotStoredReason::InputChangedDuringCompile);
        }
        let digest = files
            .digest(path)
            .ok_or(NotStoredReason::SourceUnreadable)?;
        sources.push(Source {
            path: map.key_path(path),
            digest,
            // A directory's listing has no stamp to trust: it is listed again on lookup.
            stamp: (stamp.settled(now) && !path.ends_with('/')).then_some(stamp),
        });
    }
    Ok(sources)
}

/// With portable paths, the local roots `file` names anyway (see `PathMap::local_roots_in`).
fn portable_leaks(inv: &crate::invocation::Invocation, file: &std::path::Path) -> Vec<String> {
    if !inv.map.is_portable() {
        return Vec::new();
    }
    // Unreadable: the store that follows says so.
    let bytes = std::fs::read(file).unwrap_or_default();
    inv.map
        .local_roots_in(&bytes)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
