//! Why a unit missed (`jetcc --explain`, and `JETCC_LOG=debug`).
//!
//! A miss has one of two causes. Either the invocation is known (its manifest has entries) and
//! a file or `env!` variable it read changed since the newest entry, or the invocation digest
//! itself changed: then the parts it is made of ([`crate::key::invocation_parts`]) are compared
//! with those recorded at the last compile of the same unit (same cwd, crate and root file).

use crate::args::RustcArgs;
use crate::depinfo::escape_env_value;
use crate::digest::{Digest, KeyHasher};
use crate::files::FileDigests;
use crate::manifest::ManifestEntry;
use crate::pathmap::PathMap;

/// Lines of explanation kept per miss.
const MAX_LINES: usize = 8;

/// Names a unit across changes of its invocation digest: the cwd, crate name, crate types and
/// crate root (which for crates.io crates names the version).
pub fn unit_id(inv: &RustcArgs, cwd: &str, map: &PathMap) -> Digest {
    let mut h = KeyHasher::new("jetcc-unit");
    h.str(&map.key_path(cwd));
    h.str(inv.crate_name.as_deref().unwrap_or(""));
    for t in &inv.crate_types {
        h.str(t.name());
    }
    if let Some(crate::args::Input::File(root)) = &inv.input {
        h.str(&map.key_path(&root.to_string_lossy()));
    }
    h.finish()
}

/// What differs between the parts of an earlier compile and this one.
pub fn diff_parts(old: &[(String, String)], new: &[(String, String)]) -> Vec<String> {
    let mut lines = Vec::new();
    let removed: Vec<_> = old.iter().filter(|p| !new.contains(p)).collect();
    let added: Vec<_> = new.iter().filter(|p| !old.contains(p)).collect();
    for (part, value) in &added {
        match removed.iter().find(|(p, _)| p == part && part != "arg") {
            Some((_, was)) => lines.push(format!(
                "{part} changed: {} -> {}",
                short(was),
                short(value)
            )),
            None if part == "arg" => lines.push(format!("argument added: {value}")),
            None => lines.push(format!("{part} added: {}", short(value))),
        }
    }
    for (part, value) in &removed {
        if part == "arg" {
            lines.push(format!("argument removed: {value}"));
        } else if !added.iter().any(|(p, _)| p == part) {
            lines.push(format!("{part} removed (was {})", short(value)));
        }
    }
    lines.truncate(MAX_LINES);
    lines
}

/// What differs between the newest compile of this invocation and the files and env now.
pub fn diff_sources(
    entry: &ManifestEntry,
    files: &mut FileDigests,
    env: &dyn Fn(&str) -> Option<String>,
    map: &PathMap,
) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &entry.sources {
        let local = map.local_path(&s.path);
        if files.stamp(&local).is_none() {
            lines.push(format!("file gone: {local}"));
        } else if !files.matches(&local, &s.digest, s.stamp.as_ref()) {
            lines.push(format!("file changed: {local}"));
        }
    }
    let foreign: Vec<&str> = entry
        .local_roots
        .iter()
        .filter(|r| !map.has_local_root(r))
        .map(String::as_str)
        .collect();
    if !foreign.is_empty() {
        lines.push(format!(
            "its outputs name another build's paths ({}), so it compiles for this one",
            foreign.join(", ")
        ));
    }
    for (name, want) in &entry.env_deps {
        let now = env(name).map(|v| map.key_path(&escape_env_value(&v)));
        if now != *want {
            lines.push(format!(
                "env changed: {name} ({} -> {})",
                shown(want),
                shown(&now)
            ));
        }
    }
    lines.truncate(MAX_LINES);
    lines
}

fn shown(v: &Option<String>) -> String {
    v.as_deref()
        .map_or("unset".to_owned(), |s| format!("{:?}", short(s)))
}

/// The parts of an invocation digest that still name a local path (after mapping): another
/// checkout, target dir or machine computes another key for them. Empty when nothing local
/// is left, as with portable paths inside the mapped roots.
pub fn local_paths(parts: &[(String, String)]) -> Vec<String> {
    let mut lines: Vec<String> = parts
        .iter()
        .filter(|(_, v)| v.starts_with('/') && !v.starts_with(crate::pathmap::MAPPED_BASE))
        .map(|(part, v)| format!("{part} = {}", short(v)))
        .collect();
    lines.truncate(MAX_LINES);
    lines
}

fn short(v: &str) -> String {
    if v.chars().count() > 80 {
        format!("{}…", v.chars().take(80).collect::<String>())
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_are_the_unmapped_absolute_ones() {
        let parts = [
            ("cwd".to_owned(), "/home/a/p".to_owned()),
            ("input".to_owned(), "src/lib.rs".to_owned()),
            (
                "env CARGO_MANIFEST_DIR".to_owned(),
                "\u{1}jetcc:workspace\u{1}/leaf".to_owned(),
            ),
            ("env CARGO_PKG_NAME".to_owned(), "leaf".to_owned()),
            ("env OUT".to_owned(), "/jetcc/base/x".to_owned()),
        ];
        assert_eq!(local_paths(&parts), ["cwd = /home/a/p"]);
    }

    fn parts(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn names_the_changed_parts() {
        let old = parts(&[
            ("toolchain", "t1"),
            ("arg", "-C opt-level=0"),
            ("extern leaf", "d1"),
            ("env CARGO_PKG_VERSION", "1"),
        ]);
        let new = parts(&[
            ("toolchain", "t1"),
            ("arg", "-C opt-level=1"),
            ("extern leaf", "d2"),
            ("env CARGO_PKG_VERSION", "1"),
        ]);
        assert_eq!(
            diff_parts(&old, &new),
            vec![
                "argument added: -C opt-level=1",
                "extern leaf changed: d1 -> d2",
                "argument removed: -C opt-level=0",
            ]
        );
        assert!(diff_parts(&old, &old).is_empty());
    }

    #[test]
    fn names_changed_files_and_env() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.rs"), "new").unwrap();
        let entry = ManifestEntry {
            sources: vec![
                crate::manifest::Source {
                    path: "a.rs".into(),
                    digest: Digest::of_bytes(b"old"),
                    stamp: None,
                },
                crate::manifest::Source {
                    path: "gone.rs".into(),
                    digest: Digest::of_bytes(b"x"),
                    stamp: None,
                },
            ],
            env_deps: vec![("STAMP".into(), Some("v1".into()))],
            local_roots: vec!["/elsewhere/ws".into()],
            key: Digest::of_bytes(b"k"),
            stored_at: 0,
        };
        let mut files = FileDigests::new(dir.path(), None);
        let lines = diff_sources(
            &entry,
            &mut files,
            &|_| Some("v2".into()),
            &PathMap::default(),
        );
        assert_eq!(
            lines,
            vec![
                "file changed: a.rs",
                "file gone: gone.rs",
                "its outputs name another build's paths (/elsewhere/ws), so it compiles for this one",
                "env changed: STAMP (\"v1\" -> \"v2\")"
            ]
        );
    }
}
