//! The job's file system view: the client's paths, exactly.
//!
//! rustc records source paths in its outputs, and `--remap-path-prefix` is not a way around
//! it: remapping a path, even to itself, changes the rlib and rmeta bytes (measured: the
//! fixture's `leaf` rlib 9572 → 9556 bytes). So a job runs where its inputs sit at the
//! client's own absolute paths: in a private mount namespace, chrooted into the job root,
//! which holds the inputs at those paths plus read-only bind mounts of the system dirs and the
//! toolchain. Nothing is remapped and outputs equal a local compile's byte for byte.
//!
//! The worker execs itself as a small launcher (`jetcc-worker __jail PLAN`) to set this up: a
//! fresh single-threaded process may allocate and mount freely, unlike a `pre_exec` hook in
//! the multithreaded worker. The launcher then starts rustc confined ([`crate::sandbox`]) as
//! the first process of a new PID namespace, and waits for it.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
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
    /// The `cgroup.procs` files of the job's cgroups, which the launcher joins first.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
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
}

fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> JailError {
    let what = what.into();
    move |source| JailError::Sys { what, source }
}

/// The launcher: builds the view, confines this process and execs rustc. Returns only on
/// error.
///
/// rustc runs as the first process of a new PID namespace, so that when it exits the kernel
/// kills everything the job started, even processes that left its process group; the
/// launcher waits for it and exits with its code. Returns only on error.
pub fn launch(plan: &Plan) -> Result<i32, JailError> {
    // Before anything else, so that every process of the job is in the job's cgroups.
    for procs in &plan.cgroup_procs {
        std::fs::write(procs, std::process::id().to_string())
            .map_err(sys(format!("join the job's cgroup ({})", procs.display())))?;
    }
    let mut cmd = enter(plan)?;
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

fn enter(plan: &Plan) -> Result<Command, JailError> {
    let root_user = unsafe { libc::geteuid() } == 0;
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID;
    if !root_user {
        flags |= libc::CLONE_NEWUSER;
    }
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(sys("create a mount namespace (unshare)")(
            io::Error::last_os_error(),
        ));
    }
    if !root_user {
        // Map our own ids to themselves: no privilege is gained outside the namespace.
        std::fs::write("/proc/self/setgroups", "deny").map_err(sys("write setgroups"))?;
        std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
            .map_err(sys("write uid_map"))?;
        std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
            .map_err(sys("write gid_map"))?;
    }
    mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE)?;
    let mut system: Vec<PathBuf> = SYSTEM.iter().map(PathBuf::from).collect();
    system.extend(plan.sysroot.clone());
    for path in &system {
        place(&plan.root, path)?;
    }
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
    let root = cstr(&plan.root);
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

/// Makes the worker's `path` appear at the same path under `root`: a read-only bind mount if
/// the job has nothing there, else the same for each of its entries (so a client path like
/// `/usr/local/cargo` and the worker's `/usr` can both be seen).
fn place(root: &Path, path: &Path) -> Result<(), JailError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let target = inside(root, path);
    if meta.file_type().is_symlink() {
        if std::fs::symlink_metadata(&target).is_err() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(sys("create a mount point"))?;
            }
            let link = std::fs::read_link(path).map_err(sys("read a system symlink"))?;
            std::os::unix::fs::symlink(link, &target).map_err(sys("copy a system symlink"))?;
        }
        return Ok(());
    }
    match std::fs::symlink_metadata(&target) {
        Err(_) => {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(sys("create a mount point"))?;
            }
            if meta.is_dir() {
                std::fs::create_dir(&target).map_err(sys("create a mount point"))?;
            } else {
                std::fs::write(&target, b"").map_err(sys("create a mount point"))?;
            }
            bind_read_only(path, &target)
        }
        Ok(t) if t.is_dir() && meta.is_dir() => {
            for entry in std::fs::read_dir(path).map_err(sys(format!("list {}", path.display())))? {
                let entry = entry.map_err(sys("list a system dir"))?;
                place(root, &path.join(entry.file_name()))?;
            }
            Ok(())
        }
        Ok(_) => Err(JailError::Collision(path.to_owned())),
    }
}

fn bind_read_only(src: &Path, dst: &Path) -> Result<(), JailError> {
    mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC)?;
    mount(
        None,
        dst,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | kept_flags(dst)?,
    )
}

/// The `MS_*` flags that make a remount of the mount at `path` keep its nosuid, nodev, noexec
/// and atime settings. A non-root worker's jail is in a user namespace, where the kernel locks
/// those flags on every mount it inherited and refuses (EPERM) a remount that would change
/// one; most hosts mount /proc, /dev, /tmp … nosuid, nodev or noexec. As root they are only
/// kept.
fn kept_flags(path: &Path) -> Result<libc::c_ulong, JailError> {
    /// `ST_RELATIME` (linux/statfs.h), which the libc crate has for glibc only.
    const ST_RELATIME: libc::c_ulong = 0x1000;
    let path_c = cstr(path);
    // SAFETY: statvfs writes only into `st`, which is plain old data.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path_c.as_ptr(), &mut st) } != 0 {
        return Err(sys(format!("read the mount flags of {}", path.display()))(
            io::Error::last_os_error(),
        ));
    }
    let on = |st_flag: libc::c_ulong, ms_flag| if st.f_flag & st_flag != 0 { ms_flag } else { 0 };
    // The atime mode is always named, strictatime too: a remount naming nodiratime but no
    // mode gets the kernel's default, relatime, which would change a strictatime mount.
    let atime = match (st.f_flag & libc::ST_NOATIME, st.f_flag & ST_RELATIME) {
        (0, 0) => libc::MS_STRICTATIME,
        (0, _) => libc::MS_RELATIME,
        _ => libc::MS_NOATIME,
    };
    Ok(on(libc::ST_NOSUID, libc::MS_NOSUID)
        | on(libc::ST_NODEV, libc::MS_NODEV)
        | on(libc::ST_NOEXEC, libc::MS_NOEXEC)
        | on(libc::ST_NODIRATIME, libc::MS_NODIRATIME)
        | atime)
}

fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> Result<(), JailError> {
    let src_c = src.map(cstr);
    let dst_c = cstr(dst);
    let fs_c = fstype.map(|f| CString::new(f).expect("no NUL"));
    let rc = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            dst_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(sys(format!("mount {}", dst.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
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

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL")
}
