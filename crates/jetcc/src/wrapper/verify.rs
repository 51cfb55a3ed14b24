//! Verifying hits (`[cache] verify_rate`, `JETCC_VERIFY=1`, `jetcc --verify CMD`): a sampled
//! hit is compiled again here and each output compared byte for byte (by BLAKE3) with what the
//! cache restored. A difference is said loudly on stderr, counted (`Stats::verified`), and the
//! entry dropped from the local tier; the build keeps the fresh outputs, which are stored in
//! its place. This catches a poisoned entry (forged but self-consistent: every blob matches
//! the digest the entry names) and a non-deterministic compile alike.

use jetcc_common::stats::{StatKind, Stats, VerifyOutcome};
use jetcc_common::{linkargs, Digest};

use super::Wrapper;
use crate::compile;
use crate::record;
use crate::tiers::{Hit, LocalTier, Tier};

impl Wrapper {
    /// Whether this hit is to be compiled again: sampled at `verify_rate`. Incremental units
    /// never are: two plain incremental builds already differ in bytes.
    pub(super) fn verify_due(&self) -> bool {
        if self.verify_rate <= 0.0 || self.inv.incremental() {
            return false;
        }
        if self.verify_rate >= 1.0 {
            return true;
        }
        let seed = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
        let draw = u64::from_le_bytes(
            Digest::of_bytes(seed.as_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        (draw as f64 / u64::MAX as f64) < self.verify_rate
    }

    /// Compiles a restored hit again, compares, and returns rustc's exit code. rustc's own
    /// output reaches cargo (the cached one is not replayed); outputs stay as rustc wrote them.
    pub(super) fn verify(&mut self, hit: Hit) -> i32 {
        let mut words: Vec<String> = self.inv.args.words().map(str::to_owned).collect();
        words.extend(self.inv.map.remap_args());
        let link_args = self.inv.outputs.links.then(|| {
            let file =
                jetcc_common::fsutil::temp_path_for(&self.inv.outputs.out_dir.join("link-args"));
            words.push(format!("--print=link-args={}", file.display()));
            file
        });
        let compiled = match compile::run_streaming(&self.inv.rustc, &words) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("cannot start rustc to verify a hit ({e}): using the hit");
                return self.hit(hit);
            }
        };
        let libs = link_args.and_then(|file| {
            let printed = std::fs::read_to_string(&file).ok();
            let _ = std::fs::remove_file(&file);
            printed.map(|p| linkargs::library_inputs(&p))
        });
        self.compile_time = Some(compiled.duration);
        let out_dir = &self.inv.outputs.out_dir;
        // (name, cached digest, fresh digest) of each output that differs.
        let differing: Vec<(String, Digest, Option<Digest>)> = hit
            .entry
            .outputs
            .iter()
            .filter_map(|o| {
                let fresh = Digest::of_file(&out_dir.join(&o.name)).ok();
                (fresh != Some(o.digest)).then(|| (o.name.clone(), o.digest, fresh))
            })
            .collect();
        let outcome = match (compiled.exit_code, differing.is_empty()) {
            (0, true) => VerifyOutcome::Same,
            (0, false) => VerifyOutcome::Mismatch,
            _ => VerifyOutcome::CompileFailed,
        };
        let crate_name = self.inv.crate_name().to_owned();
        // The build keeps the fresh outputs of a mismatch: for the log, a miss.
        let logged = match outcome {
            VerifyOutcome::Same => "hit",
            _ => "miss",
        };
        tracing::debug!(
            crate_name,
            outcome = logged,
            tier = hit.tier,
            verified = outcome.name(),
            "verified a hit ({})",
            outcome.name()
        );
        if outcome != VerifyOutcome::Same {
            self.mismatch(&hit, &differing, compiled.exit_code);
        }
        record(self.cache.root(), |s| {
            s.requests += 1;
            match outcome {
                VerifyOutcome::Same => s.hits += 1,
                _ => s.misses += 1,
            }
            Stats::bump(&mut s.verified, &outcome)
        });
        if outcome == VerifyOutcome::Mismatch {
            // The fresh outputs take the dropped entry's place (same key: its sources match).
            let libs = match self.inv.outputs.links {
                false => Some(Vec::new()),
                true => libs,
            };
            match libs {
                Some(libs) => {
                    if let Err(super::store::NotStored::Failed(e)) = self.store(&compiled, &libs) {
                        tracing::warn!(
                            crate_name,
                            "could not store the fresh result: {}",
                            e.name()
                        );
                    }
                    self.cache.commit_size();
                }
                None => tracing::debug!(crate_name, "fresh result not stored: link inputs unknown"),
            }
        }
        compiled.exit_code
    }

    /// Says loudly which outputs of which unit differ, and drops the entry locally.
    fn mismatch(&self, hit: &Hit, differing: &[(String, Digest, Option<Digest>)], exit_code: i32) {
        let unit = format!("{} ({})", self.inv.crate_name(), self.inv.cwd.display());
        let what = match exit_code {
            0 => differing
                .iter()
                .map(|(name, cached, fresh)| {
                    let fresh = fresh.map_or("unreadable".to_owned(), |d| d.to_string());
                    format!("{name} (cached {cached}, fresh {fresh})")
                })
                .collect::<Vec<_>>()
                .join(", "),
            code => format!("rustc exited with {code} where the cache held a success"),
        };
        eprintln!(
            "jetcc: warning: verify: {unit}: the {} tier's result differs from a fresh compile: \
             {what}. The entry is dropped from the local cache and the fresh outputs are used; \
             a shared tier holding it is poisoned or the compile is not deterministic.",
            hit.tier
        );
        tracing::warn!(unit, tier = hit.tier, "verify mismatch: {what}");
        LocalTier(&self.cache).forget(&hit.found.key, &[]);
    }
}
