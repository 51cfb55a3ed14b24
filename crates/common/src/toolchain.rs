//! Tool identities: the compiler's (a digest of `rustc -vV`) and the linker's, memoized on
//! disk by the binary's path, size, mtime and inode so that only the first invocation after a
//! tool changes pays for running it.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::digest::{Digest, KeyHasher};
use crate::fsutil::write_atomic_mkdir;

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("cannot stat rustc at {path}: {source}")]
    Stat { path: String, source: io::Error },
    #[error("cannot run `{path}`: {source}")]
    Run { path: String, source: io::Error },
    #[error("`{path}` failed: {stderr}")]
    Failed { path: String, stderr: String },
}

/// Returns the identity digest of the rustc at `rustc`, using `memo_dir` as its memo.
pub fn identity(rustc: &Path, memo_dir: &Path) -> Result<Digest, ToolchainError> {
    memoized(rustc, "rustc", memo_dir, |h| {
        let version = run(rustc, &["-vV"])?;
        // The farm needs the host triple too: memoize it from the same run.
        if let Ok(memo) = memo_path(rustc, "rustc-host", memo_dir) {
            let _ = write_atomic_mkdir(&memo, host_of(&version).as_bytes());
        }
        h.field(&version);
        Ok(())
    })
}

fn host_of(version: &[u8]) -> String {
    String::from_utf8_lossy(version)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or("unknown")
        .trim()
        .to_owned()
}

/// The identity of the linker rustc will run (`-C linker`, else `cc`): its version, the
/// version of the `ld` it drives, and the C runtime start file it links in (which changes with
/// the libc).
pub fn linker_identity(linker: &Path, memo_dir: &Path) -> Result<Digest, ToolchainError> {
    memoized(linker, "linker", memo_dir, |h| {
        h.field(&run(linker, &["--version"])?);
        let ld = String::from_utf8_lossy(&run(linker, &["-print-prog-name=ld"])?)
            .trim()
            .to_owned();
        h.field(&run(Path::new(&ld), &["--version"]).unwrap_or_default());
        let crt1 = String::from_utf8_lossy(&run(linker, &["-print-file-name=crt1.o"])?)
            .trim()
            .to_owned();
        if let Ok(d) = Digest::of_file(Path::new(&crt1)) {
            h.digest(&d);
        }
        Ok(())
    })
}

/// The identity of a program a build script may run (a compiler, `cmake`, `make`): its
/// content and, for a script (a `#!` launcher such as pip's `cmake`), what `--version` says,
/// since the script's bytes do not change with what it launches.
pub fn tool_identity(tool: &Path, memo_dir: &Path) -> Result<Digest, ToolchainError> {
    memoized(tool, "tool", memo_dir, |h| {
        let d = Digest::of_file(tool).map_err(|source| ToolchainError::Run {
            path: tool.display().to_string(),
            source,
        })?;
        h.digest(&d);
        let mut head = [0u8; 2];
        let is_script = fs::File::open(tool)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok_and(|()| &head == b"#!");
        if is_script {
            h.field(&run(tool, &["--version"]).unwrap_or_default());
        }
        Ok(())
    })
}

/// A C/C++ compiler as the farm knows it: what a job for it names, and the machine it
/// compiles for (jobs are filed by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CCompiler {
    /// The driver's content, the name it is called by (`g++` compiles `.c` as C++), and the
    /// content of the programs it runs for a compile (`cc1`, `cc1plus`, `as`): two machines
    /// with the same identity turn the same inputs into the same object.
    pub identity: Digest,
    /// `-dumpmachine` (`x86_64-linux-gnu`).
    pub machine: String,
}

/// The programs a driver runs to compile, as `-print-prog-name` resolves them.
const C_COMPILER_PARTS: &[&str] = &["cc1", "cc1plus", "as"];

/// The farm identity of the compiler `driver`, called as `name` (memoized like the others).
pub fn c_compiler(driver: &Path, name: &str, memo_dir: &Path) -> Result<CCompiler, ToolchainError> {
    let parts = memoized(driver, "c-compiler", memo_dir, |h| {
        h.digest(&tool_identity(driver, memo_dir)?);
        for part in C_COMPILER_PARTS {
            let arg = format!("-print-prog-name={part}");
            let found = String::from_utf8_lossy(&run(driver, &[&arg])?)
                .trim()
                .to_owned();
            // clang names no separate programs: it prints the bare name back.
            match Digest::of_file(Path::new(&found)) {
                Ok(d) if found.starts_with('/') => h.str(part).digest(&d),
                _ => h.str(part).str(&found),
            };
        }
        let machine = run(driver, &["-dumpmachine"])?;
        if let Ok(memo) = memo_path(driver, "c-machine", memo_dir) {
            let _ = write_atomic_mkdir(&memo, String::from_utf8_lossy(&machine).trim().as_bytes());
        }
        h.field(&machine);
        Ok(())
    })?;
    let memo = memo_path(driver, "c-machine", memo_dir)?;
    let machine = match fs::read_to_string(&memo) {
        Ok(m) if !m.is_empty() => m,
        _ => {
            let m = String::from_utf8_lossy(&run(driver, &["-dumpmachine"])?)
                .trim()
                .to_owned();
            let _ = write_atomic_mkdir(&memo, m.as_bytes());
            m
        }
    };
    let identity = KeyHasher::new("jetcc-c-compiler-named")
        .digest(&parts)
        .str(name)
        .finish();
    Ok(CCompiler { identity, machine })
}

/// The C runtime and libraries the driver `cc` links into every Rust dylib and executable
/// (rustc's own `-l`s for std: libc, libm, libgcc_s, libdl, libpthread, librt, libutil),
/// by the names the linker looks them up by, and the linker scripts' targets.
const LINK_FILES: &[&str] = &[
    "crt1.o",
    "Scrt1.o",
    "crti.o",
    "crtn.o",
    "crtbegin.o",
    "crtend.o",
    "crtbeginS.o",
    "crtendS.o",
    "libc.so",
    "libc.so.6",
    "libc_nonshared.a",
    "libgcc.a",
    "libgcc_eh.a",
    "libgcc_s.so",
    "libgcc_s.so.1",
    "libm.so",
    "libm.so.6",
    "libmvec.so.1",
    "libdl.a",
    "libdl.so.2",
    "libpthread.a",
    "libpthread.so.0",
    "librt.a",
    "librt.so.1",
    "libutil.a",
    "libutil.so.1",
    "ld-linux-x86-64.so.2",
];

/// The files of this machine that a link by the C driver `driver` (resolved through PATH
/// when a bare name) reads: the driver itself, the `collect2` it runs, and the
/// [`LINK_FILES`] found in its library search dirs, as absolute normalized paths. A machine
/// with each of these identical links the same objects into the same output: the farm
/// checks them file by file (`JobRequest::system_inputs`). Memoized like the identities,
/// as a list of paths (their contents are digested by the caller, by stat).
pub fn link_files(driver: &Path, memo_dir: &Path) -> Result<Vec<PathBuf>, ToolchainError> {
    let memo = memo_path(driver, "link-files", memo_dir)?;
    if let Ok(text) = fs::read_to_string(&memo) {
        if !text.is_empty() {
            return Ok(text.lines().map(PathBuf::from).collect());
        }
    }
    let resolved = match driver.components().count() {
        1 => which(driver).ok_or_else(|| ToolchainError::Run {
            path: driver.display().to_string(),
            source: io::ErrorKind::NotFound.into(),
        })?,
        _ => driver.to_path_buf(),
    };
    let mut files = vec![resolved];
    let collect2 = run(driver, &["-print-prog-name=collect2"])?;
    let collect2 = PathBuf::from(String::from_utf8_lossy(&collect2).trim());
    if collect2.is_absolute() {
        files.push(collect2);
    }
    let dirs = run(driver, &["-print-search-dirs"])?;
    let dirs: Vec<PathBuf> = String::from_utf8_lossy(&dirs)
        .lines()
        .find_map(|l| l.strip_prefix("libraries: ="))
        .map(|l| std::env::split_paths(l).collect())
        .unwrap_or_default();
    for name in LINK_FILES {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            files.push(found);
        }
    }
    let files: Vec<PathBuf> = files.iter().map(|f| crate::fsutil::normalize(f)).collect();
    let text: Vec<String> = files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let _ = write_atomic_mkdir(&memo, text.join("\n").as_bytes());
    Ok(files)
}

/// Memoizes `compute` for the program at `program` by its path, size, mtime and inode, so only
/// the first invocation after it changes pays for running it.
fn memoized(
    program: &Path,
    kind: &str,
    memo_dir: &Path,
    compute: impl FnOnce(&mut KeyHasher) -> Result<(), ToolchainError>,
) -> Result<Digest, ToolchainError> {
    let memo = memo_path(program, kind, memo_dir)?;
    if let Ok(bytes) = fs::read(&memo) {
        if let Ok(d) = std::str::from_utf8(&bytes).unwrap_or("").parse::<Digest>() {
            return Ok(d);
        }
    }
    let mut h = KeyHasher::new(&format!("jetcc-{kind}"));
    compute(&mut h)?;
    let id = h.finish();
    // The memo is an optimization: failing to write it is not an error.
    let _ = write_atomic_mkdir(&memo, id.to_string().as_bytes());
    Ok(id)
}

/// The host triple of the rustc at `rustc` (`host:` in `rustc -vV`), memoized like its
/// identity. The farm files jobs by it.
pub fn host_triple(rustc: &Path, memo_dir: &Path) -> Result<String, ToolchainError> {
    let memo = memo_path(rustc, "rustc-host", memo_dir)?;
    if let Ok(host) = fs::read_to_string(&memo) {
        if !host.is_empty() {
            return Ok(host);
        }
    }
    let host = host_of(&run(rustc, &["-vV"])?);
    let _ = write_atomic_mkdir(&memo, host.as_bytes());
    Ok(host)
}

/// Where a memo for `program` lives: named by its path, size, mtime and inode.
fn memo_path(
    program: &Path,
    kind: &str,
    memo_dir: &Path,
) -> Result<std::path::PathBuf, ToolchainError> {
    let path = program.to_string_lossy().into_owned();
    // A bare name (`cc`) is resolved through PATH by the OS; stat what it resolves to.
    let resolved = if program.components().count() == 1 {
        which(program).unwrap_or_else(|| program.to_path_buf())
    } else {
        program.to_path_buf()
    };
    let meta = fs::metadata(&resolved).map_err(|source| ToolchainError::Stat {
        path: path.clone(),
        source,
    })?;
    let stamp = KeyHasher::new("jetcc-toolchain-memo")
        .str(kind)
        .str(&resolved.to_string_lossy())
        .str(&meta.len().to_string())
        .str(&meta.mtime().to_string())
        .str(&meta.mtime_nsec().to_string())
        .str(&meta.ino().to_string())
        .finish();
    Ok(memo_dir.join(stamp.hex()))
}

fn run(program: &Path, args: &[&str]) -> Result<Vec<u8>, ToolchainError> {
    let path = program.to_string_lossy().into_owned();
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ToolchainError::Run {
            path: format!("{path} {}", args.join(" ")),
            source,
        })?;
    if !out.status.success() {
        return Err(ToolchainError::Failed {
            path: format!("{path} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out.stdout)
}

fn which(name: &Path) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
