//! What occupies this machine's compile capacity: the local slots (flocks in `slots/<i>`,
//! shared by all wrappers and C compiles) and the board of placed compiles (`placed/`):
//! each wrapper process says there where its compile is (holding a local slot, waiting for
//! one, or on the farm), since when, and how long it is expected to take, so the next
//! overflow decision can tell when a local slot frees up and how long the farm's queue is.
//! (`placed/<k>`: a pool of entries, [`BOARD_ENTRIES`] at most, each taken by one process at
//! a time; a wrapper process places one compile.)
//!
//! A board entry is flocked by the process that took it while it lives, and rewritten in
//! place (no file created per compile: a new inode costs up to a millisecond on some file
//! systems, and every wrapper marks). A reader that can lock an entry has found a free one
//! (released, or its process died) and skips it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use jetcc_common::fsutil;

/// A held local compile slot (an flock on `slots/<i>`), released on drop.
pub struct Slot(#[allow(dead_code)] File);

/// The local slots of one cache dir.
pub struct Slots {
    dir: PathBuf,
    n: usize,
}

impl Slots {
    pub fn new(cache_dir: &Path, n: usize) -> Slots {
        Slots {
            dir: cache_dir.join("slots"),
            n,
        }
    }

    pub fn count(&self) -> usize {
        self.n
    }

    /// A free local slot, if any.
    pub fn try_take(&self) -> Option<Slot> {
        (0..self.n).find_map(|i| {
            let f = self.file(i).ok()?;
            f.try_lock().ok().map(|()| Slot(f))
        })
    }

    /// Waits for a local slot (`local_slots = 0`: none are kept, so none is waited for).
    pub fn take(&self) -> Option<Slot> {
        if self.n == 0 {
            return None;
        }
        loop {
            if let Some(s) = self.try_take() {
                return Some(s);
            }
            if self.file(0).is_err() {
                return None; // cannot lock at all (read-only cache dir): do not wait
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn file(&self, i: usize) -> std::io::Result<File> {
        let path = self.dir.join(i.to_string());
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .or_else(|_| {
                std::fs::create_dir_all(&self.dir)?;
                File::options().create(true).append(true).open(&path)
            })
    }
}

/// Where a placed compile is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Where {
    /// Compiling in a local slot.
    Local,
    /// Waiting for a local slot.
    Waiting,
    /// Sent to the farm (queued or running there).
    Farm,
}

/// One process's entry on the board.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub at: Where,
    /// When it got there (unix ms).
    pub since_ms: u64,
    /// How long its compile is expected to take there, in ms.
    pub expected_ms: f64,
}

impl Placed {
    /// What is left of it at `now_ms`. One that overran its expectation is guessed to be
    /// nearly done (a tenth of it left), not done: it still holds its slot.
    pub fn remaining_ms(&self, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.since_ms) as f64;
        match self.at {
            Where::Waiting => self.expected_ms,
            _ => (self.expected_ms - elapsed).max(self.expected_ms / 10.0),
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How many processes can be on one board at once (one more places its compile unseen).
pub const BOARD_ENTRIES: usize = 256;

/// The board of placed compiles of one cache dir, and this process's entry on it.
pub struct Board {
    dir: PathBuf,
    /// Our entry once taken: its number and its file, flocked while we hold it.
    mine: Mutex<Option<(usize, File)>>,
}

impl Board {
    pub fn new(cache_dir: &Path) -> Board {
        Board {
            dir: cache_dir.join("placed"),
            mine: Mutex::new(None),
        }
    }

    /// Says where this process's compile is now (replacing what it said before). A board
    /// that cannot be written only makes others' guesses worse: logged, not returned.
    pub fn mark(&self, at: Where, expected_ms: f64) {
        let entry = Placed {
            at,
            since_ms: now_ms(),
            expected_ms,
        };
        match self.write(&entry) {
            Ok(()) => tracing::debug!(at = ?at, expected_ms = expected_ms as u64, "placed"),
            Err(e) => tracing::debug!("cannot write the placement board: {e}"),
        }
    }

    fn write(&self, entry: &Placed) -> std::io::Result<()> {
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        if mine.is_none() {
            *mine = Some(self.take_entry()?);
        }
        let (_, f) = mine.as_ref().expect("taken above");
        let old_len = f.metadata()?.len();
        let json = serde_json::to_vec(entry).expect("serializes");
        fsutil::rewrite_in_place(f, &json, old_len)
    }

    /// The first free entry, locked. From the first, so the pool stays as small as the
    /// most compiles ever placed at once: every decision reads all of it.
    fn take_entry(&self) -> std::io::Result<(usize, File)> {
        for k in 0..BOARD_ENTRIES {
            let path = self.dir.join(k.to_string());
            let open = || {
                File::options()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&path)
            };
            let f = open().or_else(|_| {
                std::fs::create_dir_all(&self.dir)?;
                open()
            })?;
            if f.try_lock().is_ok() {
                return Ok((k, f));
            }
        }
        Err(std::io::Error::other(format!(
            "all {BOARD_ENTRIES} entries are taken"
        )))
    }

    /// Takes this process's entry off the board: blanked, then released.
    pub fn clear(&self) {
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, f)) = mine.take() {
            if let Ok(m) = f.metadata() {
                let _ = fsutil::rewrite_in_place(&f, b"", m.len());
            }
        }
    }

    /// Every other live process's entry.
    pub fn others(&self) -> Vec<Placed> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let own = self
            .mine
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(k, _)| k.to_string());
        dir.flatten()
            .filter(|e| Some(e.file_name().to_string_lossy().as_ref()) != own.as_deref())
            .filter_map(|e| read_live(&e.path()))
            .collect()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The entry at `path` if a process holds it (one that can be locked is free).
fn read_live(path: &Path) -> Option<Placed> {
    let mut f = File::open(path).ok()?;
    if f.try_lock_shared().is_ok() {
        return None;
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
    // Unreadable while its process rewrites it: left out of this one decision.
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = Slots::new(dir.path(), 2);
        let a = s.try_take().expect("first slot");
        let b = s.try_take().expect("second slot");
        assert!(s.try_take().is_none(), "only two");
        drop(a);
        assert!(s.try_take().is_some(), "released on drop");
        drop(b);
    }

    #[test]
    fn the_board_shows_live_entries_and_not_free_ones() {
        let dir = tempfile::tempdir().unwrap();
        let board = Board::new(dir.path());
        board.mark(Where::Local, 1000.0);
        // Our own entry is not among the others; a live one of another process is.
        assert!(board.others().is_empty());
        let other = Board::new(dir.path());
        other.mark(Where::Farm, 300.0);
        let seen = board.others();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].at, seen[0].expected_ms), (Where::Farm, 300.0));
        // Marked again: rewritten in place (a shorter entry over a longer one reads whole).
        other.mark(Where::Local, 5.0);
        assert_eq!(board.others()[0].at, Where::Local);
        drop(other); // its process ended
        assert!(board.others().is_empty());
        // A process that died holding an entry left it unlocked: free, not shown.
        let dead = Board::new(dir.path());
        dead.mark(Where::Farm, 300.0);
        if let Some((_, f)) = dead.mine.lock().unwrap().take() {
            f.unlock().unwrap(); // and closed, not blanked: as a killed process leaves it
        }
        assert!(board.others().is_empty());
        // Entries are reused, not created per process.
        for _ in 0..5 {
            let b = Board::new(dir.path());
            b.mark(Where::Waiting, 1.0);
        }
        let entries = std::fs::read_dir(dir.path().join("placed"))
            .unwrap()
            .count();
        assert!(
            entries <= 3,
            "{entries} board files for at most 3 processes at once"
        );
        board.clear();
        assert!(board.others().is_empty());
    }

    #[test]
    fn what_is_left_of_a_placed_compile() {
        let p = |at, since_ms| Placed {
            at,
            since_ms,
            expected_ms: 1000.0,
        };
        assert_eq!(p(Where::Local, 10_000).remaining_ms(10_400), 600.0);
        assert_eq!(
            p(Where::Farm, 10_000).remaining_ms(13_000),
            100.0,
            "overran"
        );
        assert_eq!(p(Where::Waiting, 10_000).remaining_ms(13_000), 1000.0);
    }
}
