//! The compiler's identity: a digest of `rustc -vV`, memoized on disk by the rustc binary's
//! path, size and mtime so that only the first invocation after a toolchain change pays for
//! running it.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::digest::{Digest, KeyHasher};
use crate::fsutil::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("cannot stat rustc at {path}: {source}")]
    Stat { path: String, source: io::Error },
    #[error("cannot run `{path} -vV`: {source}")]
    Run { path: String, source: io::Error },
    #[error("`{path} -vV` failed: {stderr}")]
    Failed { path: String, stderr: String },
}

/// Returns the identity digest of the rustc at `rustc`, using `memo_dir` as its memo.
pub fn identity(rustc: &Path, memo_dir: &Path) -> Result<Digest, ToolchainError> {
    let path = rustc.to_string_lossy().into_owned();
    // A bare name (`rustc`) is resolved through PATH by the OS; stat what it resolves to.
    let resolved = if rustc.components().count() == 1 {
        which(rustc).unwrap_or_else(|| rustc.to_path_buf())
    } else {
        rustc.to_path_buf()
    };
    let meta = fs::metadata(&resolved).map_err(|source| ToolchainError::Stat {
        path: path.clone(),
        source,
    })?;
    let stamp = KeyHasher::new("jetcc-toolchain-memo")
        .str(&resolved.to_string_lossy())
        .str(&meta.len().to_string())
        .str(&meta.mtime().to_string())
        .str(&meta.mtime_nsec().to_string())
        .str(&meta.ino().to_string())
        .finish();
    let memo = memo_dir.join(stamp.hex());
    if let Ok(bytes) = fs::read(&memo) {
        if let Ok(d) = std::str::from_utf8(&bytes).unwrap_or("").parse::<Digest>() {
            return Ok(d);
        }
    }
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .map_err(|source| ToolchainError::Run {
            path: path.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ToolchainError::Failed {
            path,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let id = KeyHasher::new("jetcc-toolchain")
        .field(&out.stdout)
        .finish();
    // The memo is an optimization: failing to write it is not an error.
    let _ =
        fs::create_dir_all(memo_dir).and_then(|_| write_atomic(&memo, id.to_string().as_bytes()));
    Ok(id)
}

fn which(name: &Path) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
