//! Small file-system helpers shared by the cache tiers.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A temp-file path next to `dest` (same file system, so the rename is atomic), unique across
/// processes and threads.
pub fn temp_path_for(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    dest.with_file_name(format!(".{name}.{}.{n}.{nanos}.tmp", std::process::id()))
}

/// Writes `bytes` to `dest` atomically: readers see the old file, or the whole new one.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_path_for(dest);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`write_atomic`], creating the parent dir if needed.
pub fn write_atomic_mkdir(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    match write_atomic(dest, bytes) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            write_atomic(dest, bytes)
        }
        other => other,
    }
}

/// Runs `f` holding an exclusive lock on `lock_path` (created if missing). Locks are
/// advisory `flock`s: released by the OS if the process dies.
pub fn with_lock<T>(lock_path: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let file = match File::options().create(true).append(true).open(lock_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = lock_path.parent() {
                fs::create_dir_all(parent)?;
            }
            File::options().create(true).append(true).open(lock_path)?
        }
        other => other?,
    };
    file.lock()?;
    let out = f();
    let _ = file.unlock();
    out
}

/// Resolves `.` and `..` lexically (`leaf/src/../data/x` → `leaf/data/x`): farm jobs carry
/// only clean absolute paths, and rustc read the same file through either spelling.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}
