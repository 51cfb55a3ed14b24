//! The toolchains this worker offers, each with the identity a client's job names: real
//! rustcs (not rustup proxies), and C/C++ compilers for the compiles of build scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

use jetcc_common::{toolchain, Digest};

#[derive(Debug, Clone)]
pub struct Toolchain {
    /// What a client's job must name to run here (`toolchain::identity` of a rustc,
    /// `toolchain::c_compiler` of a C compiler).
    pub identity: Digest,
    /// For people: `rustc -vV`'s first line, or `cc (x86_64-linux-gnu)`.
    pub name: String,
    /// The host triple of a rustc, the `-dumpmachine` of a C compiler: jobs are filed by it.
    pub host: String,
    /// What a job runs: `<sysroot>/bin/rustc` (run directly, so no rustup settings are needed
    /// in the jail), or the C compiler's path as found on `PATH` (a driver such as clang
    /// behaves by the name it is called by).
    pub program: PathBuf,
    /// A rustc's sysroot, bound read-only into each job; a C compiler lives in the system
    /// dirs every job sees.
    pub sysroot: Option<PathBuf>,
    /// The pack digest of a toolchain a client shipped (`shipped`), unpacked under the
    /// worker's dir; `None` for the worker's own.
    pub shipped: Option<Digest>,
}

/// The C/C++ compilers a worker offers by default, where `PATH` has them: the names a
/// client's compiler shims answer to.
pub const DEFAULT_C_COMPILERS: &[&str] = &["cc", "c++", "gcc", "g++", "clang", "clang++"];

#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    #[error("cannot run {path}: {why}")]
    Run { path: String, why: String },
}

/// Resolves each configured rustc (default: `rustc` on PATH) and C compiler (default:
/// [`DEFAULT_C_COMPILERS`] found on PATH). A configured one that does not run is an error; a
/// default C compiler that is missing is left out, and so is the default rustc when
/// `ships` (the worker takes shipped toolchains: it may serve those alone).
pub fn discover(
    configured: &[PathBuf],
    c_compilers: Option<&[PathBuf]>,
    memo_dir: &Path,
    ships: bool,
) -> Result<Vec<Toolchain>, ToolchainError> {
    let mut found: Vec<Toolchain> = if configured.is_empty() {
        match resolve(Path::new("rustc"), memo_dir) {
            Ok(tc) => vec![tc],
            Err(e) if ships => {
                tracing::info!("no rustc of its own ({e}): serving shipped toolchains only");
                Vec::new()
            }
            Err(e) => return Err(e),
        }
    } else {
        configured
            .iter()
            .map(|rustc| resolve(rustc, memo_dir))
            .collect::<Result<_, _>>()?
    };
    match c_compilers {
        Some(list) => {
            for cc in list {
                found.push(resolve_c(cc, memo_dir)?);
            }
        }
        None => found.extend(
            DEFAULT_C_COMPILERS
                .iter()
                .filter_map(|name| resolve_c(Path::new(name), memo_dir).ok()),
        ),
    }
    Ok(found)
}

/// A C compiler, by name on PATH or by path: its file name is the name clients call it by.
fn resolve_c(cc: &Path, memo_dir: &Path) -> Result<Toolchain, ToolchainError> {
    let failed = |why: String| ToolchainError::Run {
        path: cc.display().to_string(),
        why,
    };
    let program = if cc.components().count() == 1 {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(cc))
            .find(|p| p.is_file())
            .ok_or_else(|| failed("not found on PATH".into()))?
    } else {
        cc.to_path_buf()
    };
    let name = cc
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let c = toolchain::c_compiler(&program, &name, memo_dir).map_err(|e| failed(e.to_string()))?;
    Ok(Toolchain {
        identity: c.identity,
        name: format!("{name} ({})", c.machine),
        host: c.machine,
        program,
        sysroot: None,
        shipped: None,
    })
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
        sysroot: Some(sysroot),
        program: real,
        shipped: None,
    })
}
