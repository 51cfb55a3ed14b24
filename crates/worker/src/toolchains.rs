//! The toolchains this worker offers: each a real rustc (not a rustup proxy) with its identity.

use std::path::{Path, PathBuf};
use std::process::Command;

use jetcc_common::{toolchain, Digest};

#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Digest of `rustc -vV`: what a client's job must name to run here.
    pub identity: Digest,
    /// `rustc -vV`'s first line, for people.
    pub name: String,
    pub host: String,
    pub sysroot: PathBuf,
    /// `<sysroot>/bin/rustc`: run directly, so no rustup settings are needed in the jail.
    pub rustc: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("cannot run {path}: {why}")]
    Run { path: String, why: String },
}

/// Resolves each configured rustc (default: `rustc` on PATH).
pub fn discover(configured: &[PathBuf], memo_dir: &Path) -> Result<Vec<Toolchain>, ToolchainError> {
    let defaults = [PathBuf::from("rustc")];
    let list = if configured.is_empty() {
        &defaults[..]
    } else {
        configured
    };
    list.iter().map(|rustc| resolve(rustc, memo_dir)).collect()
}

fn resolve(rustc: &Path, memo_dir: &Path) -> Result<Toolchain, ToolchainError> {
    let run = |args: &[&str]| -> Result<String, ToolchainError> {
        let out = Command::new(rustc)
            .args(args)
            .output()
            .map_err(|e| ToolchainError::Run {
                path: rustc.display().to_string(),
                why: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(ToolchainError::Run {
                path: rustc.display().to_string(),
                why: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let sysroot = PathBuf::from(run(&["--print", "sysroot"])?);
    let real = sysroot.join("bin/rustc");
    let version = run(&["-vV"])?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_default()
        .to_owned();
    // The same identity a client computes for its rustc, memo and all.
    let identity = toolchain::identity(&real, memo_dir).map_err(|e| ToolchainError::Run {
        path: real.display().to_string(),
        why: e.to_string(),
    })?;
    Ok(Toolchain {
        identity,
        name: version.lines().next().unwrap_or_default().to_owned(),
        host,
        sysroot,
        rustc: real,
    })
}
