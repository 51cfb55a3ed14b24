//! Why an action missed the local tier, for the debug log and `jetcc --explain`: one rule for
//! rustc's units, build-script runs and C/C++ compiles.
//!
//! Either the action's manifest has entries, and a file or variable the newest one recorded
//! changed, or its digest is new, and the parts it is made of are compared with those recorded
//! when the same unit's last result was stored (`DiskCache::put_unit_parts`).

use std::path::Path;

use jetcc_common::cache::DiskCache;
use jetcc_common::explain;
use jetcc_common::files::FileDigests;
use jetcc_common::manifest::Manifest;
use jetcc_common::pathmap::PathMap;
use jetcc_common::Digest;

/// What missed, for the words of the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    RustcUnit,
    BuildScriptRun,
    CCompile,
}

impl Subject {
    fn first(self) -> &'static str {
        match self {
            Subject::RustcUnit => "first compile of this unit",
            Subject::BuildScriptRun => "first run of this build script",
            Subject::CCompile => "first compile of this C/C++ source here",
        }
    }

    fn read_other(self) -> &'static str {
        match self {
            Subject::RustcUnit => "an earlier compile of this invocation read other files",
            Subject::BuildScriptRun => "an earlier run declared other files",
            Subject::CCompile => "an earlier compile of this source read other files",
        }
    }
}

/// One missed action, as [`explain`] needs it.
pub struct Missed<'a> {
    pub subject: Subject,
    /// Its manifest (in the local tier), possibly empty.
    pub manifest: &'a Manifest,
    /// What names it across changes of its digest, and what its digest is made of.
    pub unit: &'a Digest,
    pub parts: &'a [(String, String)],
    pub map: &'a PathMap,
    /// How the miss log names it (a crate, a package, `<compiler> <source>`), and where.
    pub label: &'a str,
    pub cwd: &'a Path,
}

/// Says why `m` missed and appends it to the cache's miss log (`jetcc --explain`).
pub fn explain(cache: &DiskCache, files: &mut FileDigests, m: &Missed<'_>) -> String {
    let lines = match m.manifest.entries.first() {
        Some(newest) => explain::diff_sources(newest, files, &jetcc_common::environ::var, m.map),
        None => match cache.unit_parts(m.unit) {
            Some(old) => explain::diff_parts(&old, m.parts),
            None => {
                let mut lines = vec![m.subject.first().to_owned()];
                let local = explain::local_paths(m.parts);
                // Only rustc's keys map paths by `[cache] paths`; the others say so elsewhere.
                if m.subject == Subject::RustcUnit && !local.is_empty() {
                    lines.push(format!(
                        "its key names local paths, so another checkout or machine does not \
                         share it ({}): [cache] paths = \"portable\" maps them",
                        local.join(", ")
                    ));
                }
                lines
            }
        },
    };
    let why = if lines.is_empty() {
        m.subject.read_other().to_owned()
    } else {
        lines.join("; ")
    };
    cache.log_miss(&format!("{} ({}): {why}", m.label, m.cwd.display()));
    why
}
