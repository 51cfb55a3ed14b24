//! The crates a compile loads, found without running rustc: its `--extern`s, and every crate
//! their metadata names. rustc loads the crates its externs depend on too, transitively
//! (without them: E0463 "can't find crate"), which cargo's arguments do not name.
//!
//! A crate's metadata lists the crates it was built against, each with the
//! `-C extra-filename` cargo gave it (`-` and 16 hex digits) by which rustc finds its file
//! (`lib<name>-<hash>.rlib`/`.rmeta`/`.so`) in the `-L dependency=` dirs. The list is read
//! from the metadata's bytes, not its format (which changes with rustc): each `-<16 hex>` that
//! names a crate file of the search dirs counts, scanned a window at a time from the start
//! until a window names none after one that did (the list is one run, near the start today;
//! an unknown layout only costs reading more). A crate missed makes the worker's compile fail
//! (the unit then compiles locally); one too many is laid out unread.
//!
//! A proc-macro's own dependencies are linked into it: rustc loads none of them, so a `.so`
//! is listed but not read.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use jetcc_common::args::RustcArgs;
use jetcc_common::files::open_regular;
use jetcc_common::fsutil::normalize;

/// `-` and the 16 hex digits of cargo's `-C extra-filename`.
const SUFFIX_LEN: usize = 17;

/// How much of a crate's metadata is read at a time.
const WINDOW: usize = 64 << 10;

/// The crate files a compile may load: its externs' and, transitively, every one their
/// metadata names, each with all of its files found in the search dirs (as rustc's
/// `-Z binary-dep-depinfo` lists them). Clean absolute paths, sorted.
pub(super) fn loaded(cwd: &Path, inv: &RustcArgs) -> Vec<PathBuf> {
    let known = crate_files(&inv.crate_dirs(cwd));
    let mut loaded: Vec<PathBuf> = Vec::new();
    let mut read: HashSet<&str> = HashSet::new();
    let mut next: Vec<PathBuf> = Vec::new();
    for path in inv.externs.iter().filter_map(|e| e.path.as_ref()) {
        let path = normalize(&cwd.join(path));
        next.extend(metadata_of(std::slice::from_ref(&path)));
        loaded.push(path);
    }
    while let Some(file) = next.pop() {
        let own = file_suffix(&file);
        for suffix in named_crates(&file, own.as_deref(), &known) {
            if !read.insert(suffix) {
                continue;
            }
            let files = &known[suffix];
            loaded.extend(files.iter().cloned());
            next.extend(metadata_of(files));
        }
    }
    loaded.sort();
    loaded.dedup();
    loaded
}

/// The crate files in `dirs`, by their `-<hash>` suffix.
fn crate_files(dirs: &[PathBuf]) -> HashMap<String, Vec<PathBuf>> {
    let mut known: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = normalize(&e.path());
            if let Some(suffix) = file_suffix(&path) {
                known.entry(suffix).or_default().push(path);
            }
        }
    }
    known
}

/// `-<hash>` of a crate file `lib<name>-<hash>.{rlib,rmeta,so}`.
fn file_suffix(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if !matches!(ext, "rlib" | "rmeta" | "so") {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    let suffix = stem.get(stem.len().checked_sub(SUFFIX_LEN)?..)?;
    (stem.starts_with("lib") && is_suffix(suffix.as_bytes())).then(|| suffix.to_owned())
}

fn is_suffix(b: &[u8]) -> bool {
    b.len() == SUFFIX_LEN && b[0] == b'-' && b[1..].iter().all(is_hex)
}

fn is_hex(b: &u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'f')
}

/// Of one crate's files, the one to read its metadata from: the `.rmeta` (smallest), else the
/// `.rlib`; none for a proc-macro `.so`.
fn metadata_of(files: &[PathBuf]) -> Option<PathBuf> {
    let with = |ext: &str| {
        files
            .iter()
            .find(|f| f.extension().is_some_and(|e| e == ext))
    };
    with("rmeta").cloned().or_else(|| {
        let rlib = with("rlib")?;
        let sibling = rlib.with_extension("rmeta");
        Some(if sibling.is_file() {
            sibling
        } else {
            rlib.clone()
        })
    })
}

/// The suffixes of `known` crates that the metadata in `file` names (its `own` left out).
fn named_crates<'k>(
    file: &Path,
    own: Option<&str>,
    known: &'k HashMap<String, Vec<PathBuf>>,
) -> Vec<&'k str> {
    let Ok(mut f) = open_regular(file) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut buf = vec![0u8; SUFFIX_LEN + WINDOW];
    // Bytes carried over from the last window: a name may straddle two.
    let mut carry = 0;
    let mut named_before = false;
    loop {
        let n = read_full(&mut f, &mut buf[carry..]);
        let len = carry + n;
        let end = n == 0;
        let mut named = false;
        // A name needs the byte after it (not a hex digit) unless the file ends there.
        let last = match end {
            true => len.saturating_sub(SUFFIX_LEN - 1),
            false => len.saturating_sub(SUFFIX_LEN),
        };
        for i in memchr::memchr_iter(b'-', &buf[..last]) {
            let name = &buf[i..i + SUFFIX_LEN];
            let bounded = i + SUFFIX_LEN == len || !is_hex(&buf[i + SUFFIX_LEN]);
            if !bounded || !is_suffix(name) {
                continue;
            }
            let name = std::str::from_utf8(name).expect("hex is UTF-8");
            if Some(name) == own {
                continue;
            }
            named = true;
            if let Some((k, _)) = known.get_key_value(name) {
                found.push(k.as_str());
            }
        }
        if end || named_before && !named {
            break;
        }
        named_before |= named;
        buf.copy_within(last..len, 0);
        carry = len - last;
    }
    found
}

/// Reads until `buf` is full or the file ends; a read error ends it too.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}
