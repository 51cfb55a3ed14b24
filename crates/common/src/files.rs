//! File content digests with a stat memo, so a hit does not re-read every source.
//!
//! A [`Stamp`] is what `stat` says of a file (inode, size, mtime, ctime, in nanoseconds). A
//! digest recorded with a stamp is trusted while the file's stamp is unchanged, but only for
//! stamps taken over a second after the file last changed: kernel timestamps are coarse, so a
//! write in the same tick as the stamp could otherwise go unseen (ccache's rule). Files jetcc
//! wrote itself (restored or stored outputs) are the exception: their digest is known exactly
//! when they are written.
//!
//! Only regular files are hashed ([`open_regular`]): a path a manifest or a dep file names may
//! be a FIFO, a device (`/dev/zero`), a socket or a directory by now, and reading one would
//! hang or never end. Such a path has no digest, so it never matches: a miss, never a hang.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, KeyHasher};
use crate::fsutil::write_atomic_mkdir;

/// Files smaller than this are hashed rather than memoized: reading a memo costs about as much.
const MEMO_MIN_BYTES: u64 = 1 << 20;

/// How long after its last change a file's stamp becomes trustworthy.
const SETTLE_NS: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    pub fn of(path: &Path) -> Option<Stamp> {
        let m = fs::metadata(path).ok()?;
        Some(Stamp {
            ino: m.ino(),
            size: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        })
    }

    /// Whether the file last changed at least a second before `now_ns`.
    pub fn settled(&self, now_ns: i128) -> bool {
        self.mtime_ns.max(self.ctime_ns) + SETTLE_NS <= now_ns
    }

    pub fn changed_since(&self, since_ns: i128) -> bool {
        self.mtime_ns >= since_ns || self.ctime_ns >= since_ns
    }
}

pub fn now_ns() -> i128 {
    system_ns(SystemTime::now())
}

pub fn system_ns(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Digests of files under one cwd: each file is stat'ed and hashed at most once per process,
/// and large files (externs) are memoized across processes in `memo_dir`.
pub struct FileDigests {
    cwd: PathBuf,
    memo_dir: Option<PathBuf>,
    stamps: HashMap<String, Option<Stamp>>,
    digests: HashMap<String, Option<Digest>>,
}

impl FileDigests {
    pub fn new(cwd: &Path, memo_dir: Option<PathBuf>) -> FileDigests {
        FileDigests {
            cwd: cwd.to_path_buf(),
            memo_dir,
            stamps: HashMap::new(),
            digests: HashMap::new(),
        }
    }

    pub fn stamp(&mut self, path: &str) -> Option<Stamp> {
        if let Some(s) = self.stamps.get(path) {
            return *s;
        }
        let s = Stamp::of(&self.cwd.join(path));
        self.stamps.insert(path.to_owned(), s);
        s
    }

    /// The content digest of `path` (relative to the cwd, or absolute): hashed once per
    /// process, and for large files looked up in the persistent memo by stamp first.
    ///
    /// A path ending in `/` is a directory: its digest is that of its listing (every name
    /// under it with its kind, recursively), which changes when a file is added or removed.
    pub fn digest(&mut self, path: &str) -> Option<Digest> {
        if let Some(d) = self.digests.get(path) {
            return *d;
        }
        let abs = self.cwd.join(path);
        if path.ends_with('/') {
            let d = listing_digest(&abs).ok();
            self.digests.insert(path.to_owned(), d);
            return d;
        }
        let stamp = self.stamp(path);
        let memo = self
            .memo_path(&abs)
            .filter(|_| stamp.is_some_and(|s| s.size >= MEMO_MIN_BYTES));
        let remembered = memo
            .as_ref()
            .and_then(|m| fs::read(m).ok())
            .and_then(|b| rmp_serde::from_slice::<(Stamp, Digest)>(&b).ok())
            .filter(|(s, _)| Some(*s) == stamp)
            .map(|(_, d)| d);
        let d = remembered.or_else(|| {
            let d = Digest::of_file(&abs).ok()?;
            if let Some(stamp) = stamp.filter(|s| s.settled(now_ns())) {
                self.remember(&abs, stamp, d);
            }
            Some(d)
        });
        self.digests.insert(path.to_owned(), d);
        d
    }

    /// Whether `path` has content `want`, trusting `recorded` (a settled stamp taken when
    /// `want` was computed) if the file's stamp still equals it.
    pub fn matches(&mut self, path: &str, want: &Digest, recorded: Option<&Stamp>) -> bool {
        let Some(now) = self.stamp(path) else {
            return false;
        };
        if recorded == Some(&now) {
            return true;
        }
        self.digest(path) == Some(*want)
    }

    /// Records that `path` (just written by jetcc with content `digest`) has its current stamp.
    pub fn remember_written(&mut self, path: &Path, digest: Digest) {
        if let Some(stamp) = Stamp::of(path) {
            self.remember(path, stamp, digest);
        }
    }

    fn remember(&self, abs: &Path, stamp: Stamp, digest: Digest) {
        if stamp.size < MEMO_MIN_BYTES {
            return;
        }
        if let Some(memo) = self.memo_path(abs) {
            let bytes = rmp_serde::to_vec(&(stamp, digest)).expect("serializes");
            let _ = write_atomic_mkdir(&memo, &bytes);
        }
    }

    fn memo_path(&self, abs: &Path) -> Option<PathBuf> {
        let dir = self.memo_dir.as_ref()?;
        let h = KeyHasher::new("jetcc-stat-memo")
            .str(&abs.to_string_lossy())
            .finish()
            .hex();
        Some(dir.join(&h[..2]).join(&h))
    }
}

/// Opens `path` for reading if it is a regular file (symlinks followed), else fails with
/// `InvalidInput`. The open does not block (a FIFO with no writer would wait forever) and the
/// kind is checked on the opened file, so a path swapped meanwhile cannot slip through.
pub fn open_regular(path: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Whether a directory under a package is left out of its listing: version control, a cargo
/// target dir (it holds `CACHEDIR.TAG`) or another package (it has a `Cargo.toml`), as
/// cargo leaves them out of a package's files.
pub fn is_outside_package(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == ".git")
        || dir.join("CACHEDIR.TAG").exists()
        || dir.join("Cargo.toml").exists()
}

/// The digest of a directory's listing: relative names and kinds, sorted, recursively
/// (symlinks by target, not followed; see [`is_outside_package`] for what is skipped).
fn listing_digest(dir: &Path) -> std::io::Result<Digest> {
    let mut h = KeyHasher::new("jetcc-dir-listing");
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(dir.join(&rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = rel.join(e.file_name());
            let kind = e.file_type()?;
            if kind.is_dir() && is_outside_package(&e.path()) {
                continue;
            }
            h.str(&rel.to_string_lossy());
            if kind.is_dir() {
                h.str("dir");
                stack.push(rel);
            } else if kind.is_symlink() {
                h.str("link")
                    .str(&fs::read_link(e.path())?.to_string_lossy());
            } else {
                h.str("file");
            }
        }
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_short_cut_only_while_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.rs");
        fs::write(&f, "one").unwrap();
        let stamp = Stamp::of(&f).unwrap();
        let wrong = Digest::of_bytes(b"not the content");
        // A matching stamp is trusted without reading.
        assert!(FileDigests::new(dir.path(), None).matches("a.rs", &wrong, Some(&stamp)));
        // A changed file is read.
        fs::write(&f, "two!").unwrap();
        assert!(!FileDigests::new(dir.path(), None).matches("a.rs", &wrong, Some(&stamp)));
        let right = Digest::of_bytes(b"two!");
        assert!(FileDigests::new(dir.path(), None).matches("a.rs", &right, Some(&stamp)));
    }

    #[test]
    fn a_dir_listing_changes_when_a_file_is_added_not_when_one_is_edited() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("csrc/sub")).unwrap();
        fs::write(dir.path().join("csrc/a.c"), "1").unwrap();
        let listing = || FileDigests::new(dir.path(), None).digest("csrc/").unwrap();
        let before = listing();
        fs::write(dir.path().join("csrc/a.c"), "2").unwrap();
        assert_eq!(listing(), before);
        fs::write(dir.path().join("csrc/sub/b.h"), "").unwrap();
        assert_ne!(listing(), before);
        assert_eq!(FileDigests::new(dir.path(), None).digest("gone/"), None);
    }

    #[test]
    fn only_regular_files_have_digests_and_none_blocks() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let _socket = UnixListener::bind(dir.path().join("sock")).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("big"), vec![7u8; 200 << 10]).unwrap();
        // Each lookup runs on a thread: a hang fails the test instead of stalling it.
        let (tx, rx) = std::sync::mpsc::channel();
        let root = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut files = FileDigests::new(&root, None);
            let want = Digest::of_bytes(b"");
            let got: Vec<_> = ["fifo", "sock", "sub", "/dev/zero", "/dev/null"]
                .iter()
                .map(|p| (files.digest(p), files.matches(p, &want, None)))
                .collect();
            tx.send((got, files.digest("big"))).unwrap();
        });
        let (got, big) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("hashing a FIFO, socket, dir or device must not block");
        assert!(got.iter().all(|g| *g == (None, false)), "{got:?}");
        // A large regular file (memory-mapped) still hashes as its bytes.
        assert_eq!(big, Some(Digest::of_bytes(&vec![7u8; 200 << 10])));
    }

    #[test]
    fn persistent_memo_is_used_while_the_stamp_holds() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        let f = dir.path().join("lib.rmeta");
        fs::write(&f, vec![1u8; MEMO_MIN_BYTES as usize]).unwrap();
        // A digest remembered for the file's stamp is believed without reading the file...
        let remembered = Digest::of_bytes(b"what jetcc wrote");
        FileDigests::new(dir.path(), Some(memo.clone())).remember_written(&f, remembered);
        let digest =
            |m: &Path| FileDigests::new(dir.path(), Some(m.to_path_buf())).digest("lib.rmeta");
        assert_eq!(digest(&memo), Some(remembered));
        // ...until the file changes (same size, new content: mtime and ctime tell, once the
        // coarse kernel clock has ticked).
        std::thread::sleep(std::time::Duration::from_millis(20));
        let v2 = vec![2u8; MEMO_MIN_BYTES as usize];
        fs::write(&f, &v2).unwrap();
        assert_eq!(digest(&memo), Some(Digest::of_bytes(&v2)));
    }
}
