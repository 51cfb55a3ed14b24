//! The job's file system view: the client's paths, exactly.
//!
//! rustc records source paths in its outputs, and `--remap-path-prefix` is not a way around
//! it: remapping a path, even to itself, changes the rlib and rmeta bytes (measured: the
//! fixture's `leaf` rlib 9572 → 9556 bytes). So a job runs where its inputs sit at the
//! client's own absolute paths: in a private mount namespace, chrooted into the job root,
//! which holds the inputs at those paths plus read-only bind mounts of the system dirs and the
//! toolchain ([`root`]). Nothing is remapped and outputs equal a local compile's byte for byte.
//!
//! A job's launcher is forked by the jail's [`zygote`], a single-threaded process the worker
//! forks before it starts any thread ([`launcher`] is the worker's side): it may allocate and
//! mount freely, unlike a `pre_exec` hook in the multithreaded worker, and costs no `exec`.
//! It is forked ahead of its job, into the job's cgroups, and waits there for its plan.
//! The launcher builds the view, then starts rustc confined ([`crate::sandbox`]) as the
//! first process of a new PID namespace, and waits for it.

mod launcher;
mod mount;
mod root;
mod zygote;

pub use launcher::{Launched, Launcher, Prepared};
pub use zygote::Zygote;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::sandbox::{Limits, SandboxSpec};

/// System paths every job sees read-only (when they exist on the worker).
const SYSTEM: &[&str] = &[
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    // Debian's `cc`, `c++`… are symlinks through here.
    "/etc/alternatives",
    "/etc/passwd",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/proc",
];

/// The launcher's exit code when it could not start rustc (rustc itself exits 0, 1 or 101).
pub const LAUNCH_FAILED: i32 = 125;
/// How the launcher's own error line starts, to tell it from rustc's output.
pub const LAUNCH_ERROR_PREFIX: &str = "jetcc-worker jail: ";

/// The in-jail scratch dir (`TMPDIR`), writable.
pub const JAIL_TMP: &str = "/.jetcc-tmp";

/// Everything the launcher needs, written by the worker as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The job root on the worker's disk: becomes `/`.
    pub root: PathBuf,
    /// A rustc's sysroot, bound read-only at the same path.
    pub sysroot: Option<PathBuf>,
    /// The compiler to run: rustc (under `sysroot`) or a C compiler (in the system dirs).
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The client's cwd, inside the jail.
    pub cwd: PathBuf,
    /// Dirs rustc writes (the out-dir), inside the jail.
    pub writable: Vec<PathBuf>,
    /// Read-only input dirs, inside the jail.
    pub readable: Vec<PathBuf>,
    pub run_as: Option<(u32, u32)>,
    pub memory_bytes: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_bytes: Option<u64>,
    /// `false` only under `--insecure-no-sandbox`.
    pub enforce: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("cannot {what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the job's path {0} collides with a system path on this worker")]
    Collision(PathBuf),
    #[error("{0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
    #[error("the jail's zygote must be forked while the worker has one thread, not {0}")]
    Threads(usize),
    #[error("the jail's zygote is gone: no job can start (restart the worker)")]
    ZygoteGone,
    #[error("unreadable plan: {0}")]
    Plan(String),
    /// Said by the launcher, which could not join them.
    #[error("{0}")]
    Cgroup(String),
    #[error("the launcher prepared for the job was killed before it started")]
    LauncherGone,
}

fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> JailError {
    let what = what.into();
    move |source| JailError::Sys { what, source }
}

/// The worker's paths every job sees read-only, and a rustc's `sysroot`.
fn system_paths(sysroot: Option<&Path>) -> Vec<PathBuf> {
    SYSTEM
        .iter()
        .map(PathBuf::from)
        .chain(sysroot.map(Path::to_path_buf))
        .collect()
}

/// A launcher's first steps, before its plan comes: its own mount and PID namespaces, the
/// job's network namespace `netns`, and the system paths laid out at `stage` if given
/// ([`root::Staged`]; where they cannot be, the job's plan lays them out afresh).
fn before_plan(stage: Option<&Path>, netns: BorrowedFd) -> Result<Option<root::Staged>, JailError> {
    if unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) } != 0 {
        return Err(sys("create a mount namespace (unshare)")(
            io::Error::last_os_error(),
        ));
    }
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(sys("enter the job's network namespace (setns)")(
            io::Error::last_os_error(),
        ));
    }
    mount::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    Ok(stage.and_then(|at| root::stage(at, &system_paths(None)).ok()))
}

/// The launcher, after [`before_plan`]: builds the view, confines this process and runs
/// rustc.
///
/// rustc runs as the first process of a new PID namespace, so that when it exits the kernel
/// kills everything the job started, even processes that left its process group; the
/// launcher waits for it and returns its code.
fn launch(plan: &Plan, staged: Option<&root::Staged>) -> Result<i32, JailError> {
    let mut cmd = enter(plan, staged)?;
    let mut child = cmd
        .spawn()
        .map_err(sys(format!("start {}", plan.program.display())))?;
    let status = child.wait().map_err(sys("wait for rustc"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1))
}

fn enter(plan: &Plan, staged: Option<&root::Staged>) -> Result<Command, JailError> {
    // A non-root worker's zygote made the user namespace these belong to.
    let root_user = unsafe { libc::geteuid() } == 0;
    let system = system_paths(plan.sysroot.as_deref());
    let tmp = plan.root.join(JAIL_TMP.trim_start_matches('/'));
    std::fs::create_dir_all(&tmp).map_err(sys("create the jail's tmp dir"))?;
    if let Some((u, g)) = plan.run_as {
        // The dropped user must be able to write its out-dir and tmp dir.
        for dir in plan
            .writable
            .iter()
            .map(|w| inside(&plan.root, w))
            .chain([tmp.clone()])
        {
            chown_tree(&dir, u, g)?;
        }
    }
    root::build(&plan.root, &system, staged)?;
    let root = mount::cstr(&plan.root);
    if unsafe { libc::chroot(root.as_ptr()) } != 0 {
        return Err(sys("chroot into the job root")(io::Error::last_os_error()));
    }
    std::env::set_current_dir(&plan.cwd).map_err(sys(format!("enter {}", plan.cwd.display())))?;

    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().cloned());
    cmd.env("TMPDIR", JAIL_TMP).env("HOME", JAIL_TMP);
    cmd.env("PATH", "/usr/bin:/bin");
    // `/proc` is mounted (rustc finds its sysroot through /proc/self/exe, a symlink Landlock
    // does not check) but not readable: other processes' environ could hold secrets.
    let mut read_only: Vec<PathBuf> = system
        .iter()
        .filter(|p| !p.starts_with("/proc"))
        .cloned()
        .collect();
    read_only.extend(plan.readable.iter().cloned());
    read_only.retain(|p| p.exists());
    let mut read_write = plan.writable.clone();
    read_write.push(PathBuf::from(JAIL_TMP));
    let spec = SandboxSpec {
        read_only,
        read_write,
        limits: Limits {
            memory_bytes: plan.memory_bytes,
            processes: plan.processes,
            file_size_bytes: plan.file_size_bytes,
        },
        run_as: plan.run_as.filter(|_| root_user),
    };
    spec.apply(&mut cmd, plan.enforce)?;
    Ok(cmd)
}

/// `path` (absolute) under `root`.
pub fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), JailError> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(sys("chown the out-dir"))?;
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(sys("list the out-dir"))? {
            let entry = entry.map_err(sys("list the out-dir"))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                chown_tree(&entry.path(), uid, gid)?;
            }
        }
    }
    Ok(())
}
