//! A farm job's input listing, remembered per unit, so the unit's next job needs no dep-info
//! pre-pass (issue 17: the pre-pass is a second rustc start, ~20 ms for a tiny crate).
//!
//! A [`Listing`] holds what the last pre-pass of a unit found — every file the compile read
//! (sources and the crates it loaded, transitive ones included), the dirs reached through
//! `..`, the names of the env vars it read — as paths in key form, filed under the unit
//! ([`listing_key`]: the unit's identity and `-C metadata`, not its invocation digest, so a
//! dependent rebuilt after an edit upstream finds it). The next job of the unit sends those
//! files with their current digests.
//!
//! The files a compile reads can change with its sources, arguments or dependencies, so a
//! reused listing is checked, never trusted:
//! - a file it now reads but the listing lacks is missing on the worker: rustc fails there,
//!   and the failure is confirmed by compiling locally (as for any farm failure);
//! - the dep-info the worker's compile wrote says what it read ([`stale`]): every env dep
//!   must have its local value (an `option_env!` the job did not carry reads `None` on the
//!   worker and compiles), and no module file rustc would have found beside a listed one may
//!   exist here (`mod m;` with both `m.rs` and `m/mod.rs` is an error here, not on the
//!   worker). A mismatch discards the result before its rmeta is announced, and the unit
//!   compiles locally;
//! - a file it no longer reads is laid out unread: the worker's key then names it as a source
//!   (stricter than needed, never wrong).
//!
//! After any mismatch or failure the caller forgets the listing ([`Remembered::PrePass`]):
//! the next job pre-passes. A unit with nothing remembered (its first farm job) is listed by a
//! guess instead where one is safe (the wrapper's `remote::guess`: every file of its package
//! and `OUT_DIR`), checked the same way; the listing its dep-info shows is remembered after.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::args::RustcArgs;
use crate::depinfo::{escape_env_value, DepInfo};
use crate::digest::{seal, unseal, Digest, KeyHasher};
use crate::fsutil::normalize;
use crate::pathmap::PathMap;

/// What a unit's last pre-pass listed. Paths are in key form ([`PathMap::key_path`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// Every file the compile read, absolute, clean.
    pub files: Vec<String>,
    /// Directories the compile walked through (`..`) that must exist where it runs.
    pub dirs: Vec<String>,
    /// The env vars it read (`env!`, `option_env!`), by name.
    pub env_deps: Vec<String>,
}

impl Listing {
    /// A listing of local paths, put in key form with `map`.
    pub fn new(files: &[PathBuf], dirs: &[PathBuf], env_deps: &[String], map: &PathMap) -> Self {
        let key = |p: &PathBuf| map.key_path(&p.to_string_lossy());
        Listing {
            files: files.iter().map(key).collect(),
            dirs: dirs.iter().map(key).collect(),
            env_deps: env_deps.to_vec(),
        }
    }

    /// The listed files and dirs as this build's paths.
    pub fn local(&self, map: &PathMap) -> (Vec<PathBuf>, Vec<PathBuf>) {
        let local = |p: &String| PathBuf::from(map.local_path(p));
        (
            self.files.iter().map(local).collect(),
            self.dirs.iter().map(local).collect(),
        )
    }
}

/// What the wrapper remembers of a unit for its next farm job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remembered {
    /// The listing of its last job: the next one is sent with it, without a pre-pass.
    Listed(Listing),
    /// A listing (remembered or guessed) failed: the next job is listed by a pre-pass.
    PrePass,
}

impl Remembered {
    /// msgpack, sealed ([`seal`]): a damaged listing must not drop a file silently.
    pub fn encode(&self) -> Vec<u8> {
        seal(rmp_serde::to_vec(self).expect("a listing always serializes"))
    }

    /// `None` for a damaged or malformed record (or one of an older format): the unit is
    /// treated as never sent.
    pub fn decode(bytes: &[u8]) -> Option<Remembered> {
        unseal(bytes).and_then(|body| rmp_serde::from_slice(body).ok())
    }
}

/// What a listing is filed under: the unit ([`crate::explain::unit_id`]) and its
/// `-C metadata` (a crate built twice in one build, with other features, is two units).
pub fn listing_key(unit: &Digest, inv: &RustcArgs) -> Digest {
    let mut h = KeyHasher::new("jetcc-listing");
    h.digest(unit);
    h.str(inv.codegen_opt("metadata").flatten().unwrap_or(""));
    h.finish()
}

/// Why the compile that wrote `dep` (on a worker, from a reused listing of `listed` files)
/// may differ from a local compile; `None` when it read what a local one would. `env_now`
/// is the local env (non-UTF-8 values as [`crate::environ::NOT_UTF8`], which matches no
/// recorded value).
pub fn stale(
    dep: &DepInfo,
    cwd: &Path,
    listed: &[PathBuf],
    env_now: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    for (name, seen) in &dep.env_deps {
        if env_now(name).map(|v| escape_env_value(&v)) != *seen {
            return Some(format!("it read ${name}, which differs here"));
        }
    }
    for source in &dep.sources {
        let path = normalize(&cwd.join(source));
        if let Some(other) = module_alternative(&path) {
            if !listed.contains(&other) && std::fs::symlink_metadata(&other).is_ok() {
                return Some(format!(
                    "{} exists here beside {}",
                    other.display(),
                    path.display()
                ));
            }
        }
    }
    None
}

/// The other file rustc looks for when it finds a module at `path`: `m/mod.rs` for `m.rs`
/// and `m.rs` for `m/mod.rs` (having both is an error).
fn module_alternative(path: &Path) -> Option<PathBuf> {
    if path.extension()? != "rs" {
        return None;
    }
    let dir = path.parent()?;
    match path.file_name()?.to_str()? {
        "mod.rs" => Some(dir.with_extension("rs")),
        _ => Some(dir.join(path.file_stem()?).join("mod.rs")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_round_trips_in_key_form_and_a_damaged_one_is_none() {
        let map = PathMap::new(
            Path::new("/w/target/debug/deps"),
            &[],
            &[],
            Path::new("/w"),
            None,
        );
        let files = vec![PathBuf::from("/w/target/debug/deps/liba-1.rmeta")];
        let l = Listing::new(&files, &[], &["X".into()], &map);
        assert_ne!(l.files[0], files[0].to_string_lossy(), "stored in key form");
        let bytes = Remembered::Listed(l).encode();
        let Some(Remembered::Listed(back)) = Remembered::decode(&bytes) else {
            panic!("a listing decodes as one");
        };
        assert_eq!(back.local(&map).0, files);
        assert_eq!(back.env_deps, ["X"]);
        let mut bad = bytes.clone();
        bad[1] ^= 1;
        assert_eq!(Remembered::decode(&bad), None);
        let marked = Remembered::PrePass.encode();
        assert_eq!(Remembered::decode(&marked), Some(Remembered::PrePass));
    }

    #[test]
    fn module_files_have_their_alternative() {
        let alt = |p: &str| module_alternative(Path::new(p));
        assert_eq!(alt("/w/src/m.rs"), Some(PathBuf::from("/w/src/m/mod.rs")));
        assert_eq!(alt("/w/src/m/mod.rs"), Some(PathBuf::from("/w/src/m.rs")));
        assert_eq!(alt("/w/src/data.txt"), None);
    }

    #[test]
    fn stale_when_an_env_dep_differs_or_a_module_file_is_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path();
        std::fs::create_dir(cwd.join("m")).unwrap();
        std::fs::write(cwd.join("lib.rs"), "mod m;").unwrap();
        std::fs::write(cwd.join("m/mod.rs"), "").unwrap();
        let listed = vec![cwd.join("lib.rs"), cwd.join("m/mod.rs")];
        let dep = |env: Option<&str>| DepInfo {
            sources: vec!["lib.rs".into(), "m/mod.rs".into()],
            env_deps: vec![("MODE".into(), env.map(str::to_owned))],
        };
        let fast = |n: &str| (n == "MODE").then(|| "fast".to_owned());
        assert_eq!(stale(&dep(Some("fast")), cwd, &listed, &fast), None);
        // `option_env!("MODE")` read None on the worker, but MODE is set here.
        assert!(stale(&dep(None), cwd, &listed, &fast)
            .unwrap()
            .contains("MODE"));
        assert!(stale(&dep(Some("fast")), cwd, &listed, &|_| None).is_some());
        // `m.rs` appeared beside `m/mod.rs`: rustc here would refuse the module.
        std::fs::write(cwd.join("m.rs"), "").unwrap();
        let why = stale(&dep(Some("fast")), cwd, &listed, &fast).unwrap();
        assert!(why.contains("m.rs"), "{why}");
    }
}
