//! Shipping this client's rustc to workers that lack it: the sysroot's parts a compile
//! needs (`bin/rustc`, `lib/*.so*`, `lib/rustlib/<host>/{lib,bin}`) packed as a
//! [`ToolchainPack`], each file a CAS blob. Packing hashes ~0.5 GB, so the pack is memoized
//! by the toolchain's identity (itself memoized by rustc's stat): once per toolchain, not per
//! job. Uploading checks the pack first (one request per job), and puts it last: a pack in
//! the CAS means its files were put before it. Two clients on one version make the same
//! pack, so the farm stores it once.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use jetcc_common::farm::{FarmError, FarmErrorKind, Resources};
use jetcc_common::fsutil::{with_lock, write_atomic_mkdir};
use jetcc_common::protocol::pack::{PackFile, ToolchainPack, PACK_VERSION};
use jetcc_common::Digest;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot run {rustc} to find its sysroot: {why}")]
    Sysroot { rustc: String, why: String },
    #[error("cannot pack the toolchain at {path}: {source}")]
    Read { path: String, source: io::Error },
}

/// A packed toolchain: its pack and where its files are.
pub struct Packed {
    pub digest: Digest,
    pub pack: ToolchainPack,
    sysroot: PathBuf,
}

fn memo_path(memo_dir: &Path, identity: &Digest) -> PathBuf {
    memo_dir.join(format!("pack-{}", identity.hex()))
}

/// The pack of the rustc at `rustc` (identity `identity`, host `host`): from the memo, else
/// made (hashing its files) and memoized. One wrapper per machine makes it (a lock beside
/// the memo); the others wait and read it.
pub fn pack(
    rustc: &Path,
    identity: &Digest,
    host: &str,
    memo_dir: &Path,
) -> Result<Packed, PackError> {
    let memo = memo_path(memo_dir, identity);
    if let Some(packed) = read_memo(&memo) {
        return Ok(packed);
    }
    let lock = memo_dir.join(format!("pack-{}.lock", identity.hex()));
    let made = with_lock(&lock, || {
        Ok(match read_memo(&memo) {
            Some(packed) => Ok(packed),
            None => make_memo(rustc, host, &memo),
        })
    });
    match made {
        Ok(result) => result,
        // No lock (a read-only dir): make it without.
        Err(_) => make_memo(rustc, host, &memo),
    }
}

/// The memo: the sysroot's path, a newline, the pack's encoding (a digest has no JSON form).
fn read_memo(memo: &Path) -> Option<Packed> {
    let bytes = std::fs::read(memo).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let sysroot = PathBuf::from(std::str::from_utf8(&bytes[..newline]).ok()?);
    let pack = ToolchainPack::decode(&bytes[newline + 1..]).ok()?;
    if !sysroot.join("bin/rustc").is_file() {
        return None;
    }
    Some(Packed {
        digest: pack.digest(),
        pack,
        sysroot,
    })
}

fn make_memo(rustc: &Path, host: &str, memo: &Path) -> Result<Packed, PackError> {
    let started = Instant::now();
    let sysroot = sysroot_of(rustc)?;
    let pack = make(&sysroot, host, &version_line(rustc))?;
    if let Some(path) = sysroot.to_str().filter(|p| !p.contains('\n')) {
        let mut bytes = format!("{path}\n").into_bytes();
        bytes.extend_from_slice(&pack.encode());
        // The memo only saves time: failing to write it is not an error.
        let _ = write_atomic_mkdir(memo, &bytes);
    }
    let digest = pack.digest();
    tracing::info!(
        pack = %digest,
        files = pack.files.len(),
        bytes = pack.size(),
        took_ms = started.elapsed().as_millis() as u64,
        "toolchain packed"
    );
    Ok(Packed {
        digest,
        pack,
        sysroot,
    })
}

fn sysroot_of(rustc: &Path) -> Result<PathBuf, PackError> {
    let failed = |why: String| PackError::Sysroot {
        rustc: rustc.display().to_string(),
        why,
    };
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `rustc -vV`'s first line, for people (the worker shows it).
fn version_line(rustc: &Path) -> String {
    Command::new(rustc)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Lists and hashes the sysroot's parts a compile needs.
fn make(sysroot: &Path, host: &str, name: &str) -> Result<ToolchainPack, PackError> {
    let mut files = Vec::new();
    add(sysroot, Path::new("bin/rustc"), &mut files)?;
    let lib = sysroot.join("lib");
    for entry in read_dir(&lib)? {
        let name = entry.file_name().to_string_lossy().into_owned();
        // rustc_driver, LLVM and std's dylib; a symlink is shipped as the file it names.
        if name.contains(".so") && entry.path().is_file() {
            add(sysroot, &Path::new("lib").join(&name), &mut files)?;
        }
    }
    for part in ["lib", "bin"] {
        let dir = Path::new("lib/rustlib").join(host).join(part);
        if sysroot.join(&dir).is_dir() {
            add_tree(sysroot, &dir, &mut files)?;
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ToolchainPack {
        version: PACK_VERSION,
        host: host.to_owned(),
        name: name.to_owned(),
        files,
    })
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, PackError> {
    let read = |source| PackError::Read {
        path: dir.display().to_string(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)
}

/// Every file under `rel` (followed through symlinks, as rustc opens them).
fn add_tree(sysroot: &Path, rel: &Path, files: &mut Vec<PackFile>) -> Result<(), PackError> {
    for entry in read_dir(&sysroot.join(rel))? {
        let rel = rel.join(entry.file_name());
        let path = sysroot.join(&rel);
        if path.is_dir() {
            add_tree(sysroot, &rel, files)?;
        } else if path.is_file() {
            add(sysroot, &rel, files)?;
        }
    }
    Ok(())
}

fn add(sysroot: &Path, rel: &Path, files: &mut Vec<PackFile>) -> Result<(), PackError> {
    let path = sysroot.join(rel);
    let read = |source| PackError::Read {
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(&path).map_err(read)?;
    let digest = Digest::of_file(&path).map_err(read)?;
    files.push(PackFile {
        path: rel.to_string_lossy().into_owned(),
        digest,
        size: meta.len(),
        executable: meta.permissions().mode() & 0o111 != 0,
    });
    Ok(())
}

/// Puts `packed` in the CAS unless it is there: its files first, then the pack. One client
/// per machine uploads at a time (a lock in `memo_dir`), and the others find it done.
/// Returns whether this call uploaded.
pub async fn upload(res: &Resources, packed: &Packed, memo_dir: &Path) -> Result<bool, FarmError> {
    if res.cas.contains(&packed.digest).await? {
        return Ok(false);
    }
    let lock = memo_dir.join(format!("pack-{}.lock", packed.digest.hex()));
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&lock)
        .map_err(|e| FarmError::other("cannot lock the toolchain upload", e))?;
    // An flock held across the upload; another wrapper process waits here (blocking its
    // one-thread runtime, which has nothing else to do), then finds it done.
    file.lock()
        .map_err(|e| FarmError::other("cannot lock the toolchain upload", e))?;
    let uploaded = upload_locked(res, packed).await;
    let _ = file.unlock();
    uploaded
}

async fn upload_locked(res: &Resources, packed: &Packed) -> Result<bool, FarmError> {
    if res.cas.contains(&packed.digest).await? {
        return Ok(false);
    }
    let started = Instant::now();
    let (mut files, mut bytes) = (0usize, 0u64);
    for f in &packed.pack.files {
        let path = packed.sysroot.join(&f.path);
        if res.cas.put_file(&f.digest, &path).await? {
            files += 1;
            bytes += f.size;
        }
    }
    let pack = packed.pack.encode();
    res.cas.put(&packed.digest, &pack).await?;
    tracing::info!(
        pack = %packed.digest,
        files,
        bytes,
        took_ms = started.elapsed().as_millis() as u64,
        "toolchain uploaded"
    );
    Ok(true)
}

/// Forgets the memo of `identity`'s pack: its files changed under it (a reinstall), so the
/// next job packs afresh.
pub fn forget(memo_dir: &Path, identity: &Digest, e: &FarmError) {
    if e.kind == FarmErrorKind::Corrupt {
        let _ = std::fs::remove_file(memo_path(memo_dir, identity));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysroot: what is packed, with paths relative and modes kept.
    #[test]
    fn packs_the_parts_a_compile_needs() {
        let root = tempfile::tempdir().unwrap();
        let s = root.path();
        let host = "x86_64-unknown-linux-gnu";
        let write = |rel: &str, body: &[u8], mode: u32| {
            let p = s.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("bin/rustc", b"elf", 0o755);
        write("bin/cargo", b"not shipped", 0o755);
        write("lib/librustc_driver-1.so", b"driver", 0o644);
        write("lib/libLLVM.so.22.1", b"llvm", 0o644);
        std::os::unix::fs::symlink("libLLVM.so.22.1", s.join("lib/libLLVM-22.so")).unwrap();
        write(
            "lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-1.rlib",
            b"std",
            0o644,
        );
        write(
            "lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld",
            b"lld",
            0o755,
        );
        write(
            "lib/rustlib/wasm32-unknown-unknown/lib/libstd-2.rlib",
            b"wasm",
            0o644,
        );
        write("lib/rustlib/src/rust/library/std/lib.rs", b"src", 0o644);
        let pack = make(s, host, "rustc 1.95.0").unwrap();
        let listed: Vec<(&str, bool)> = pack
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.executable))
            .collect();
        assert_eq!(
            listed,
            [
                ("bin/rustc", true),
                ("lib/libLLVM-22.so", false),
                ("lib/libLLVM.so.22.1", false),
                ("lib/librustc_driver-1.so", false),
                (
                    "lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld",
                    true
                ),
                (
                    "lib/rustlib/x86_64-unknown-linux-gnu/lib/libstd-1.rlib",
                    false
                ),
            ]
        );
        assert_eq!(pack.files[1].digest, Digest::of_bytes(b"llvm"));
        pack.validate().unwrap();
        // The same files make the same pack, wherever the sysroot is.
        let other = tempfile::tempdir().unwrap();
        let copy = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", s.display()))
            .arg(other.path())
            .status()
            .unwrap();
        assert!(copy.success());
        assert_eq!(make(other.path(), host, "rustc 1.95.0").unwrap(), pack);

        // The memo gives back the same pack and sysroot without hashing again.
        let memo_dir = tempfile::tempdir().unwrap();
        let identity = Digest::of_bytes(b"rustc 1.95.0");
        let memo = memo_path(memo_dir.path(), &identity);
        assert!(read_memo(&memo).is_none());
        let bytes = [format!("{}\n", s.display()).into_bytes(), pack.encode()].concat();
        write_atomic_mkdir(&memo, &bytes).unwrap();
        let read = read_memo(&memo).expect("the memo reads back");
        assert_eq!(
            (read.pack, read.sysroot, read.digest),
            (pack.clone(), s.to_path_buf(), pack.digest())
        );
    }
}
