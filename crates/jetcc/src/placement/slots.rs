//! What occupies this machine's compile capacity: the local slots (flocks in `slots/<i>`,
//! shared by all wrappers and C compiles) and the board of placed compiles (`placed/`):
//! each wrapper process says there where its compile is (holding a local slot, waiting for
//! one, or on the farm), since when, and how long it is expected to take, so the next
//! overflow decision can tell when a local slot frees up and how long the farm's queue is.
//! (`placed/<pid>-<n>`: one entry per placement; a wrapper process places one compile.)
//!
//! A board file is written atomically and flocked by its process while it lives: a reader
//! that can lock one has found a dead process's, and removes it.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use jetcc_common::fsutil::temp_path_for;

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

/// The board of placed compiles of one cache dir, and this process's entry on it.
pub struct Board {
    dir: PathBuf,
    /// Our entry's name: `<pid>-<n>` (a process places one compile, tests several).
    name: String,
    /// Our entry's file, flocked while it is there.
    mine: Mutex<Option<File>>,
}

impl Board {
    pub fn new(cache_dir: &Path) -> Board {
        static BOARDS: AtomicU64 = AtomicU64::new(0);
        let n = BOARDS.fetch_add(1, Ordering::Relaxed);
        Board {
            dir: cache_dir.join("placed"),
            name: format!("{}-{n}", std::process::id()),
            mine: Mutex::new(None),
        }
    }

    fn own_path(&self) -> PathBuf {
        self.dir.join(&self.name)
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
        use std::io::Write;
        let dest = self.own_path();
        let tmp = temp_path_for(&dest);
        let mut f = File::create(&tmp).or_else(|_| {
            std::fs::create_dir_all(&self.dir)?;
            File::create(&tmp)
        })?;
        // Locked before it has its name: a named entry is always locked while we live.
        let written = f
            .try_lock()
            .map_err(std::io::Error::other)
            .and_then(|()| f.write_all(&serde_json::to_vec(entry).expect("serializes")))
            .and_then(|()| std::fs::rename(&tmp, &dest));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        *self.mine.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        Ok(())
    }

    /// Takes this process's entry off the board.
    pub fn clear(&self) {
        let mut mine = self.mine.lock().unwrap_or_else(|e| e.into_inner());
        if mine.take().is_some() {
            let _ = std::fs::remove_file(self.own_path());
        }
    }

    /// Every other live process's entry. Entries of dead processes are removed.
    pub fn others(&self) -> Vec<Placed> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                // Temp files (being written) start with a dot.
                !name.is_empty() && !name.starts_with('.') && name != self.name.as_str()
            })
            .filter_map(|e| read_live(&e.path()))
            .collect()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The entry at `path` if its process holds it; a dead process's entry is removed.
fn read_live(path: &Path) -> Option<Placed> {
    let mut f = File::open(path).ok()?;
    if f.try_lock_shared().is_ok() {
        // Nobody holds it. Remove it only if it is still the file we locked (its owner may
        // have just replaced it with a new, locked one).
        let same = match (f.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            let _ = std::fs::remove_file(path);
        }
        return None;
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).ok()?;
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
    fn the_board_shows_live_entries_and_drops_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let board = Board::new(dir.path());
        board.mark(Where::Local, 1000.0);
        // Our own entry is not among the others; a live one of another process is.
        assert!(board.others().is_empty());
        let other = dir.path().join("placed/1");
        let live = File::create(&other).unwrap();
        live.try_lock().unwrap();
        let entry = Placed {
            at: Where::Farm,
            since_ms: now_ms(),
            expected_ms: 300.0,
        };
        std::fs::write(&other, serde_json::to_vec(&entry).unwrap()).unwrap();
        assert_eq!(board.others(), vec![entry]);
        drop(live); // its process died
        assert!(board.others().is_empty());
        assert!(!other.exists(), "a dead process's entry is removed");
        assert!(board.own_path().exists());
        board.clear();
        assert!(!board.own_path().exists());
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
