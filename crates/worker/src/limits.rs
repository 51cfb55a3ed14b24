//! What one job may take of the worker besides CPU time and memory (those are the cgroup's,
//! [`crate::cgroup`], and the job timeout's): the output it sends back (stdout and stderr,
//! output files) and the disk its writable dirs use.
//!
//! Design choice: the disk quota is a poll, not a size-limited mount. The job's out-dir must
//! outlive the jail's mount namespace (the worker reads outputs after rustc exits), a loop
//! device needs root and a free device, and project quotas depend on the file system. A poll
//! every [`DISK_POLL`] works everywhere; a job can overshoot by what it writes between two
//! polls, and no single file can outgrow the limit (RLIMIT_FSIZE).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Most bytes of stdout and stderr together a job may write: past it the worker stops the
/// job and refuses it (the client compiles locally, where rustc's output is all its own).
pub const OUTPUT_LIMIT: usize = 16 << 20;
/// Longest stderr line kept whole (a line is one event, and events are bounded); a longer
/// line counts against [`OUTPUT_LIMIT`] in full but is cut here.
pub const LINE_LIMIT: usize = 256 << 10;
/// How often a running job's writable dirs are measured.
pub const DISK_POLL: Duration = Duration::from_millis(250);
/// What each file or dir costs beyond its bytes (its inode), so a flood of empty files counts.
const ENTRY_COST: u64 = 512;

/// Lines of a stream, each cut at [`LINE_LIMIT`]: memory stays bounded whatever the stream
/// holds. Cancel-safe: a partly read line is kept between calls (for `select!`).
pub struct Lines<R> {
    inner: R,
    line: Vec<u8>,
    len: usize,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub fn new(inner: R) -> Lines<R> {
        Lines {
            inner,
            line: Vec::new(),
            len: 0,
        }
    }

    /// The next line (with its `\n`, at most [`LINE_LIMIT`] bytes of it) and its full
    /// length; `None` at the end of the stream.
    pub async fn next(&mut self) -> io::Result<Option<(Vec<u8>, usize)>> {
        loop {
            // The only await: nothing is lost when a `select!` drops this future here.
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                return Ok((self.len > 0).then(|| self.take()));
            }
            let (n, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            let room = LINE_LIMIT.saturating_sub(self.line.len());
            self.line.extend_from_slice(&buf[..n.min(room)]);
            self.len += n;
            self.inner.consume(n);
            if end {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> (Vec<u8>, usize) {
        (
            std::mem::take(&mut self.line),
            std::mem::take(&mut self.len),
        )
    }
}

/// The disk the files under `dirs` take, without following links: each file its length or
/// its blocks, whichever is more, plus [`ENTRY_COST`] per entry. Stops counting past `limit`.
pub fn disk_usage(dirs: &[PathBuf], limit: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = dirs.to_vec();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += meta.len().max(meta.blocks() * 512) + ENTRY_COST;
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if total > limit {
                return total;
            }
        }
    }
    total
}

/// Resolves with the usage once the files under `dirs` take more than `limit`; never
/// otherwise. Measured every [`DISK_POLL`], off the async threads.
pub async fn disk_exceeded(dirs: Vec<PathBuf>, limit: u64) -> u64 {
    loop {
        tokio::time::sleep(DISK_POLL).await;
        let d = dirs.clone();
        let used = tokio::task::spawn_blocking(move || disk_usage(&d, limit))
            .await
            .unwrap_or(0);
        if used > limit {
            return used;
        }
    }
}

/// `bytes` for people: "16 MiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut n = bytes;
    while n >= 1024 && n.is_multiple_of(1024) && unit < UNITS.len() - 1 {
        n /= 1024;
        unit += 1;
    }
    format!("{n} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_cut_but_counted_in_full() {
        let long = vec![b'x'; LINE_LIMIT * 3];
        let mut input = b"one\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast");
        let mut lines = Lines::new(tokio::io::BufReader::with_capacity(1000, &input[..]));
        assert_eq!(lines.next().await.unwrap(), Some((b"one\n".to_vec(), 4)));
        let (cut, len) = lines.next().await.unwrap().unwrap();
        assert_eq!((cut.len(), len), (LINE_LIMIT, LINE_LIMIT * 3 + 1));
        assert_eq!(lines.next().await.unwrap(), Some((b"last".to_vec(), 4)));
        assert_eq!(lines.next().await.unwrap(), None);
    }

    #[test]
    fn disk_usage_counts_files_sparse_files_and_entries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let used = disk_usage(&[dir.path().to_owned()], u64::MAX);
        // The sparse file at its length, `a` at its blocks, `sub` at its size; 3 entries.
        let least = (1 << 30) + 10_000 + 3 * ENTRY_COST;
        assert!((least..least + (64 << 10)).contains(&used), "{used}");
        assert!(disk_usage(&[dir.path().to_owned()], 100) > 100);
        assert_eq!(human(16 << 20), "16 MiB");
    }
}
