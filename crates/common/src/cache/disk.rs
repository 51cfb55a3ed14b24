//! The local disk cache: content-addressed blobs, result entries and manifests under one dir.
//!
//! Layout: `cas/ab/<digest>` (output files), `ac/ab/<key>` (entries), `mf/ab/<invocation>`
//! (manifests), `units/ab/<unit>` (invocation parts for `--explain`), `toolchains/` (tool
//! identity memo), `stat/` (digest memo), `stats.json`, `size`, `misses.log`. Every write is
//! temp file + rename, so readers never see half a file and many jetcc processes can share the
//! dir. Shared read-modify-write files are updated under `flock`: manifests (a lock per shard,
//! `mf/ab/shard.lock`) by temp file + rename, the size counter in place
//! ([`SharedFile`](crate::fsutil::SharedFile): no new inode per compile).
//! Eviction is LRU by mtime: a hit touches what it read.

use std::cell::Cell;
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::{Digest, VerifyError};
use crate::fsutil::{temp_path_for, with_lock, write_atomic_mkdir, SharedFile};
use crate::listing::{Listing, Remembered};
use crate::manifest::{Manifest, ManifestEntry};
use crate::result::{CacheEntry, OutputFile};

/// Eviction trims the cache to this fraction of its size limit, so it does not run on every
/// store once the cache is full.
const EVICT_TO_PERCENT: u64 = 90;

/// The size past which `misses.log` drops its older half.
const MISS_LOG_BYTES: u64 = 1 << 20;

/// Files at least this big are hashed on a second thread while they are copied.
const PARALLEL_VERIFY_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create cache dir {path}: {source} (set [cache.disk] dir or JETCC_DIR to a writable dir)")]
    Create { path: PathBuf, source: io::Error },
    #[error("cache blob {digest} is unusable: {source}")]
    Blob { digest: Digest, source: VerifyError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

impl CacheError {
    /// A blob that is simply not there (evicted), as opposed to one that is damaged.
    pub fn is_missing_blob(&self) -> bool {
        matches!(self, CacheError::Blob { source: VerifyError::Io(e), .. } if e.kind() == io::ErrorKind::NotFound)
    }
}

pub struct DiskCache {
    root: PathBuf,
    max_size: u64,
    /// Bytes stored but not yet added to the shared size counter (see `commit_size`).
    pending: Cell<u64>,
    /// Looked up, never written (`[cache.disk] rw_mode = "READ_ONLY"`): stores only describe
    /// what they would have stored, so the result can still go to the shared tiers.
    read_only: bool,
}

impl DiskCache {
    /// Opens (creating if needed) the cache at `root`, bounded to `max_size` bytes.
    pub fn open(root: &Path, max_size: u64) -> Result<DiskCache, CacheError> {
        // `cas/` also holds blobs being written (temp names), so it must exist up front.
        fs::create_dir_all(root.join("cas")).map_err(|source| CacheError::Create {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(DiskCache {
            root: root.to_path_buf(),
            max_size,
            pending: Cell::new(0),
            read_only: false,
        })
    }

    /// The same cache, looked up but never written when `read_only`: no blob, entry,
    /// manifest or size update, and nothing dropped (a damaged entry stays a miss).
    pub fn with_read_only(mut self, read_only: bool) -> DiskCache {
        self.read_only = read_only;
        self
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` is kept (it may be gone: evicted), or `None` in read-only
    /// mode, where stores only describe their outputs.
    pub fn blob_path(&self, digest: &Digest) -> Option<PathBuf> {
        (!self.read_only).then(|| self.path("cas", digest))
    }

    fn path(&self, kind: &str, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join(kind).join(&hex[..2]).join(hex)
    }

    pub fn toolchain_memo_dir(&self) -> PathBuf {
        self.root.join("toolchains")
    }

    /// Where [`crate::files::FileDigests`] memoizes digests of large files by stamp.
    pub fn stat_memo_dir(&self) -> PathBuf {
        self.root.join("stat")
    }

    // ---- manifests ----

    pub fn manifest(&self, invocation: &Digest) -> Manifest {
        fs::read(self.path("mf", invocation))
            .map(|b| Manifest::decode(&b))
            .unwrap_or_default()
    }

    /// Adds `entry` to the invocation's manifest without losing concurrent additions.
    pub fn add_to_manifest(
        &self,
        invocation: &Digest,
        entry: ManifestEntry,
    ) -> Result<(), CacheError> {
        if self.read_only {
            return Ok(());
        }
        let path = self.path("mf", invocation);
        // One lock per shard, not per manifest: a lock file per key was a new inode for each
        // first compile (costly on some file systems) that eviction never removed.
        let lock = path.with_file_name("shard.lock");
        let write_err = |source| CacheError::Write {
            path: path.clone(),
            source,
        };
        with_lock(&lock, || {
            let mut m = self.manifest(invocation);
            m.insert(entry);
            let bytes = m.encode();
            write_atomic_mkdir(&path, &bytes)?;
            Ok(bytes.len() as u64)
        })
        .map_err(write_err)
        .map(|n| self.pending.set(self.pending.get() + n))
    }

    // ---- entries ----

    /// The entry for `key`; a malformed entry is deleted and reads as a miss.
    pub fn entry(&self, key: &Digest) -> Option<CacheEntry> {
        let path = self.path("ac", key);
        let bytes = fs::read(&path).ok()?;
        match CacheEntry::decode(&bytes) {
            Some(e) => {
                if !self.read_only {
                    touch(&path);
                }
                Some(e)
            }
            None => {
                tracing::warn!(%key, "dropping a malformed cache entry");
                self.remove_entry(key);
                None
            }
        }
    }

    pub fn put_entry(&self, key: &Digest, entry: &CacheEntry) -> Result<(), CacheError> {
        if self.read_only {
            return Ok(());
        }
        let path = self.path("ac", key);
        let bytes = entry.encode();
        write_atomic_mkdir(&path, &bytes).map_err(|source| CacheError::Write {
            path: path.clone(),
            source,
        })?;
        self.pending.set(self.pending.get() + bytes.len() as u64);
        Ok(())
    }

    pub fn remove_entry(&self, key: &Digest) {
        if self.read_only {
            return;
        }
        let _ = fs::remove_file(self.path("ac", key));
    }

    // ---- blobs ----

    /// Stores a file as a blob (if not already there) and describes it as an output.
    pub fn put_output(&self, name: &str, file: &Path) -> Result<OutputFile, CacheError> {
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Write { path, source }
        };
        let meta = fs::metadata(file).map_err(werr(file))?;
        if self.read_only {
            return Ok(OutputFile {
                name: name.to_owned(),
                digest: Digest::of_file(file).map_err(werr(file))?,
                size: meta.len(),
                mode: meta.permissions().mode() & 0o777,
            });
        }
        // Copy to a temp name while hashing; the digest then names the blob.
        let tmp = temp_path_for(&self.root.join("cas").join("incoming"));
        let (hashed, copied) = hash_while_copying(file, &tmp, meta.len());
        let result = (|| {
            let digest = hashed.map_err(werr(file))?;
            copied.map_err(werr(&tmp))?;
            let path = self.path("cas", &digest);
            if path.exists() {
                let _ = fs::remove_file(&tmp);
                return Ok((digest, false));
            }
            let renamed = match fs::rename(&tmp, &path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(path.parent().expect("sharded"))
                        .and_then(|()| fs::rename(&tmp, &path))
                }
                other => other,
            };
            renamed.map_err(werr(&path))?;
            Ok((digest, true))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let (digest, added) = result?;
        if added {
            self.pending.set(self.pending.get() + meta.len());
        }
        Ok(OutputFile {
            name: name.to_owned(),
            digest,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o777,
        })
    }

    /// Writes an output into `dir` after verifying its blob, and returns its path. The file
    /// appears atomically (temp + rename), never as a hard link into the cache. Large blobs are
    /// hashed on a second thread while the kernel copies them.
    pub fn restore_output(&self, out: &OutputFile, dir: &Path) -> Result<PathBuf, CacheError> {
        let blob = self.path("cas", &out.digest);
        let dest = dir.join(&out.name);
        let tmp = temp_path_for(&dest);
        let (hashed, copied) = hash_while_copying(&blob, &tmp, out.size);
        let verified = match hashed {
            Ok(d) if d == out.digest => Ok(()),
            Ok(actual) => Err(VerifyError::Mismatch {
                expected: out.digest,
                actual,
            }),
            Err(e) => Err(VerifyError::Io(e)),
        };
        let result = verified
            .map_err(|source| CacheError::Blob {
                digest: out.digest,
                source,
            })
            .and_then(|()| {
                copied
                    .and_then(|_| fs::set_permissions(&tmp, fs::Permissions::from_mode(out.mode)))
                    .and_then(|()| fs::rename(&tmp, &dest))
                    .map_err(|source| CacheError::Write {
                        path: dest.clone(),
                        source,
                    })
            });
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        } else if !self.read_only {
            touch(&blob);
        }
        result.map(|()| dest)
    }

    /// Removes a blob that failed verification so it is stored afresh next time.
    pub fn remove_blob(&self, digest: &Digest) {
        if self.read_only {
            return;
        }
        let _ = fs::remove_file(self.path("cas", digest));
    }

    // ---- farm job listings ----

    /// What is remembered of the unit's farm jobs (see [`crate::listing`]); `None` if it
    /// was never sent, or its record is damaged.
    pub fn listing(&self, unit: &Digest) -> Option<Remembered> {
        Remembered::decode(&fs::read(self.path("listings", unit)).ok()?)
    }

    /// Remembers the input listing of the unit's last farm job, for its next one.
    pub fn put_listing(&self, unit: &Digest, listing: &Listing) {
        self.put_remembered(unit, &Remembered::Listed(listing.clone()));
    }

    /// Forgets a listing that turned out stale or a guess that failed: the unit's next job
    /// pre-passes.
    pub fn forget_listing(&self, unit: &Digest) {
        match self.read_only {
            // Nothing is written, but a stale listing must not be sent again.
            true => {
                let _ = fs::remove_file(self.path("listings", unit));
            }
            false => self.put_remembered(unit, &Remembered::PrePass),
        }
    }

    fn put_remembered(&self, unit: &Digest, what: &Remembered) {
        if self.read_only {
            return;
        }
        self.put_small(&self.path("listings", unit), &what.encode());
    }

    // ---- explanations ----

    /// The invocation parts recorded at the last compile of a unit (see [`crate::explain`]).
    pub fn unit_parts(&self, unit: &Digest) -> Option<Vec<(String, String)>> {
        let bytes = fs::read(self.path("units", unit)).ok()?;
        rmp_serde::from_slice(&bytes).ok()
    }

    pub fn put_unit_parts(&self, unit: &Digest, parts: &[(String, String)]) {
        if self.read_only {
            return;
        }
        let bytes = rmp_serde::to_vec(parts).expect("parts serialize");
        self.put_small(&self.path("units", unit), &bytes);
    }

    /// Writes a unit's small record (its parts, its listing) unless it holds these bytes
    /// already, as it mostly does (an edit changes a unit's sources, not how it is compiled):
    /// then it is only marked used, for eviction. A new file is a journaled create, 0.25-0.8
    /// ms on some disks, and every compile of the unit would pay it.
    fn put_small(&self, path: &Path, bytes: &[u8]) {
        if fs::read(path).is_ok_and(|old| old == bytes) {
            touch(path);
            return;
        }
        if write_atomic_mkdir(path, bytes).is_ok() {
            self.pending.set(self.pending.get() + bytes.len() as u64);
        }
    }

    /// Appends a line to `misses.log`, which `jetcc --explain` shows. Bounded: past
    /// [`MISS_LOG_BYTES`] the older half is dropped.
    pub fn log_miss(&self, line: &str) {
        let path = self.root.join("misses.log");
        let appended = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| io::Write::write_all(&mut f, format!("{line}\n").as_bytes()));
        if appended.is_err() {
            return;
        }
        if fs::metadata(&path).is_ok_and(|m| m.len() > MISS_LOG_BYTES) {
            let _ = with_lock(&self.root.join("misses.lock"), || {
                let text = fs::read_to_string(&path)?;
                let keep = text.len() / 2;
                let cut = text[keep..].find('\n').map_or(text.len(), |i| keep + i + 1);
                write_atomic_mkdir(&path, &text.as_bytes()[cut..])
            });
        }
    }

    pub fn miss_log(&self) -> String {
        fs::read_to_string(self.root.join("misses.log")).unwrap_or_default()
    }

    // ---- size and eviction ----

    /// The cache size as last accounted (exact after each eviction pass).
    pub fn size(&self) -> u64 {
        parse_size(self.size_file().read().as_deref())
    }

    fn size_file(&self) -> SharedFile {
        SharedFile::new(self.root.join("size"), self.root.join("size.lock"))
    }

    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Adds what this process stored since the last call to the shared size counter (one
    /// locked update per compile, not one per file), and evicts when past the limit. Best
    /// effort: a failure is logged, never an error for the build.
    pub fn commit_size(&self) {
        let bytes = self.pending.replace(0);
        if bytes > 0 {
            self.account(bytes);
        }
    }

    fn account(&self, bytes: u64) {
        let res = self.size_file().update(|old| {
            let mut size = parse_size(old) + bytes;
            let mut evicted = Ok(());
            if size > self.max_size {
                match self.evict(self.max_size / 100 * EVICT_TO_PERCENT) {
                    Ok(left) => size = left,
                    Err(e) => evicted = Err(e),
                }
            }
            (size.to_string().into_bytes(), evicted)
        });
        if let Err(e) = res.and_then(|evicted| evicted) {
            tracing::warn!("cache size accounting failed: {e}");
        }
    }

    /// Deletes least recently used files until the cache holds at most `target` bytes;
    /// returns the new size.
    fn evict(&self, target: u64) -> io::Result<u64> {
        let mut files = Vec::new();
        for kind in ["cas", "ac", "mf", "units", "listings"] {
            let Ok(shards) = fs::read_dir(self.root.join(kind)) else {
                continue;
            };
            for shard in shards.flatten() {
                let Ok(entries) = fs::read_dir(shard.path()) else {
                    continue;
                };
                for e in entries.flatten() {
                    if let Ok(m) = e.metadata() {
                        if m.is_file() && e.path().extension().is_none() {
                            files.push((
                                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                                m.len(),
                                e.path(),
                            ));
                        }
                    }
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        let mut removed = 0usize;
        for (_, len, path) in files {
            if total <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
                removed += 1;
            }
        }
        tracing::debug!(removed, total, "evicted least recently used cache files");
        Ok(total)
    }
}

/// The size counter's bytes: a decimal number (padded with spaces), 0 if missing.
fn parse_size(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Marks a file as recently used for LRU eviction; best effort (a read-only cache still hits).
fn touch(path: &Path) {
    if let Ok(f) = File::options().append(true).open(path) {
        let _ = f.set_times(FileTimes::new().set_modified(SystemTime::now()));
    }
}

/// Copies `src` to `dest` (the kernel copies: no user-space buffer) and hashes `src`, on two
/// threads when the file is large. Blobs and fresh outputs are never modified in place (they
/// are replaced by rename), so hashing the source while it is copied hashes what is copied.
fn hash_while_copying(src: &Path, dest: &Path, size: u64) -> (io::Result<Digest>, io::Result<u64>) {
    if size < PARALLEL_VERIFY_BYTES {
        return (Digest::of_file(src), fs::copy(src, dest));
    }
    std::thread::scope(|s| {
        let h = s.spawn(|| Digest::of_file(src));
        let c = fs::copy(src, dest);
        (h.join().expect("hash thread"), c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::FORMAT_VERSION;

    fn entry_with(outputs: Vec<OutputFile>) -> CacheEntry {
        CacheEntry {
            version: FORMAT_VERSION,
            outputs,
            dep_info: Some(("x.d".into(), String::new())),
            stdout: vec![],
            stderr: vec![],
            exit_code: 0,
            compile_ms: 1,
        }
    }

    #[test]
    fn store_restore_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(&dir.path().join("c"), 1 << 30).unwrap();
        let src = dir.path().join("liba.rlib");
        fs::write(&src, b"rlib bytes").unwrap();
        let out = cache.put_output("liba.rlib", &src).unwrap();
        let key = Digest::of_bytes(b"k");
        cache
            .put_entry(&key, &entry_with(vec![out.clone()]))
            .unwrap();
        let got = cache.entry(&key).unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        cache.restore_output(&got.outputs[0], &dest).unwrap();
        assert_eq!(fs::read(dest.join("liba.rlib")).unwrap(), b"rlib bytes");
        // Corrupt the blob: restore refuses it.
        let blob = cache.path("cas", &out.digest);
        fs::write(&blob, b"rlib bytez").unwrap();
        assert!(matches!(
            cache.restore_output(&out, &dest),
            Err(CacheError::Blob { .. })
        ));
    }

    /// Every file under `root` with its bytes and mtime.
    fn snapshot(root: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
        let mut all = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else {
                    let modified = fs::metadata(&p).unwrap().modified().unwrap();
                    all.push((p.clone(), fs::read(&p).unwrap(), modified));
                }
            }
        }
        all.sort();
        all
    }

    #[test]
    fn a_read_only_cache_is_read_and_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("c");
        let src = dir.path().join("liba.rlib");
        fs::write(&src, b"rlib bytes").unwrap();
        let key = Digest::of_bytes(b"k");
        let rw = DiskCache::open(&root, 1 << 30).unwrap();
        let out = rw.put_output("liba.rlib", &src).unwrap();
        rw.put_entry(&key, &entry_with(vec![out.clone()])).unwrap();
        rw.commit_size();
        let before = snapshot(&root);
        std::thread::sleep(std::time::Duration::from_millis(20));

        let ro = DiskCache::open(&root, 1 << 30)
            .unwrap()
            .with_read_only(true);
        assert!(ro.is_read_only());
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let got = ro.entry(&key).expect("read as ever");
        ro.restore_output(&got.outputs[0], &dest).unwrap();
        assert_eq!(fs::read(dest.join("liba.rlib")).unwrap(), b"rlib bytes");
        // A store describes the output (for shared tiers) and writes nothing.
        let other = dir.path().join("libb.rlib");
        fs::write(&other, b"other bytes").unwrap();
        let described = ro.put_output("libb.rlib", &other).unwrap();
        assert_eq!(described.digest, Digest::of_bytes(b"other bytes"));
        assert_eq!(described.size, 11);
        let key2 = Digest::of_bytes(b"k2");
        ro.put_entry(&key2, &entry_with(vec![described])).unwrap();
        let found = ManifestEntry {
            sources: vec![],
            env_deps: vec![],
            local_roots: vec![],
            key: key2,
            stored_at: 1,
        };
        ro.add_to_manifest(&key2, found).unwrap();
        ro.put_unit_parts(&key2, &[("a".into(), "b".into())]);
        ro.remove_entry(&key);
        ro.remove_blob(&out.digest);
        ro.commit_size();
        assert_eq!(ro.entry(&key2), None);
        assert_eq!(
            snapshot(&root),
            before,
            "no file written, removed or touched"
        );
    }

    #[test]
    fn a_units_record_is_rewritten_only_when_it_changes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(&dir.path().join("c"), 1 << 30).unwrap();
        let unit = Digest::of_bytes(b"unit");
        let parts = vec![("args".to_owned(), "--crate-name a".to_owned())];
        cache.put_unit_parts(&unit, &parts);
        let path = cache.path("units", &unit);
        let first = fs::metadata(&path).unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(old))
            .unwrap();
        cache.put_unit_parts(&unit, &parts);
        let same = fs::metadata(&path).unwrap();
        assert_eq!(same.ino(), first.ino(), "the same parts: the same file");
        assert!(same.modified().unwrap() > old, "marked used, for eviction");
        let other = vec![("args".to_owned(), "--crate-name b".to_owned())];
        cache.put_unit_parts(&unit, &other);
        assert_eq!(cache.unit_parts(&unit), Some(other));
    }

    #[test]
    fn eviction_keeps_the_cache_under_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::open(&dir.path().join("c"), 10_000).unwrap();
        for i in 0..30u32 {
            let f = dir.path().join(format!("f{i}"));
            fs::write(&f, vec![i as u8; 1000]).unwrap();
            cache.put_output("f", &f).unwrap();
            cache.commit_size();
        }
        assert!(cache.size() <= 10_000, "size {}", cache.size());
        let on_disk: u64 = walk(&dir.path().join("c/cas"));
        assert_eq!(on_disk, cache.size());
    }

    fn walk(p: &Path) -> u64 {
        fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    walk(&e.path())
                } else {
                    m.len()
                }
            })
            .sum()
    }
}
