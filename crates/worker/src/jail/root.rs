//! The jail's `/`: a small tmpfs laid over the job root in the job's mount namespace, holding
//! nothing but mount points: the job root's own entries, bound back from beneath it, and the
//! system paths and sysroot, bound read-only from the worker's.
//!
//! Why a tmpfs: the mount points are made for every job, and on the job root's disk each is
//! a journaled create and, when the job dir is removed, a delete (a fifth of a launch's time
//! was these). On the tmpfs they cost a few microseconds and vanish with the namespace. The
//! job's files stay where the worker laid them out (its outputs are read back from there).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::mount::{bind_read_only, mount};
use super::{sys, JailError};

/// What the worker shows at one path of the jail.
enum Node {
    /// The worker's own file, dir or symlink at this path (read-only).
    Host(PathBuf),
    /// A dir made in the tmpfs to hold deeper system paths (`/etc` for `/etc/passwd`).
    Dir(BTreeMap<OsString, Node>),
}

/// Lays the tmpfs over `root` and fills it: `root`'s own entries and `system` (absolute
/// paths of the worker's; missing ones are skipped, one inside another is seen through it).
pub(super) fn build(root: &Path, system: &[PathBuf]) -> Result<(), JailError> {
    // The job root as it is beneath the tmpfs, reached through this fd once covered.
    let below: OwnedFd = std::fs::File::open(root)
        .map_err(sys(format!("open the job root {}", root.display())))?
        .into();
    let beneath = PathBuf::from(format!("/proc/self/fd/{}", below.as_raw_fd()));
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    mount(None, root, Some("tmpfs"), flags, Some("mode=755,size=1m"))?;
    both(root, &system_tree(system), &beneath)?;
    // Nothing more is made there: the job sees it read-only.
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags;
    mount(None, root, None, flags, None)
}

/// The system paths as a tree, ancestors first: a path under another is already seen.
fn system_tree(system: &[PathBuf]) -> BTreeMap<OsString, Node> {
    let mut paths: Vec<&PathBuf> = system
        .iter()
        .filter(|p| p.is_absolute() && std::fs::symlink_metadata(p).is_ok())
        .collect();
    paths.sort_by_key(|p| p.components().count());
    let mut top = BTreeMap::new();
    'paths: for path in paths {
        let names: Vec<OsString> = path
            .components()
            .skip(1)
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let Some((last, parents)) = names.split_last() else {
            continue;
        };
        let mut level = &mut top;
        for name in parents {
            let node = level
                .entry(name.clone())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            match node {
                Node::Dir(children) => level = children,
                Node::Host(_) => continue 'paths,
            }
        }
        level.insert(last.clone(), Node::Host(path.clone()));
    }
    top
}

/// Makes `dst` (in the tmpfs) show the system node `sys` and the job's `job` (a path
/// beneath the tmpfs); where both are dirs, their entries side by side.
fn merge(dst: &Path, sys_node: Option<&Node>, job: Option<&Path>) -> Result<(), JailError> {
    let job_meta = job.and_then(|j| std::fs::symlink_metadata(j).ok());
    let job_dir = job_meta.as_ref().is_some_and(|m| m.is_dir());
    match (sys_node, job) {
        (None, None) => Ok(()),
        // Copied, never bound: a bind would follow it out of the job root.
        (None, Some(job)) if job_meta.as_ref().is_some_and(|m| m.is_symlink()) => {
            copy_symlink(job, dst)
        }
        (None, Some(job)) => {
            mount_point(dst, job_dir)?;
            mount(Some(job), dst, None, libc::MS_BIND, None)
        }
        (Some(Node::Host(host)), None) => place(dst, host),
        // A system symlink gives way to the job's own entry.
        (Some(Node::Host(host)), Some(job)) if host.is_symlink() => merge(dst, None, Some(job)),
        (Some(Node::Host(host)), Some(job)) if host.is_dir() && job_dir => {
            let mut entries: BTreeMap<OsString, Node> = BTreeMap::new();
            for entry in std::fs::read_dir(host).map_err(sys(format!("list {}", host.display())))? {
                let name = entry.map_err(sys("list a system dir"))?.file_name();
                entries.insert(name.clone(), Node::Host(host.join(name)));
            }
            both(dst, &entries, job)
        }
        (Some(Node::Host(host)), Some(_)) => Err(JailError::Collision(host.clone())),
        (Some(Node::Dir(children)), None) => {
            mount_point(dst, true)?;
            for (name, child) in children {
                merge(&dst.join(name), Some(child), None)?;
            }
            Ok(())
        }
        (Some(Node::Dir(children)), Some(job)) if job_dir => both(dst, children, job),
        (Some(Node::Dir(_)), Some(_)) => Err(JailError::Collision(dst.to_owned())),
    }
}

/// `dst` as a dir holding the entries of `system` and of the job's dir `job`.
fn both(dst: &Path, system: &BTreeMap<OsString, Node>, job: &Path) -> Result<(), JailError> {
    mount_point(dst, true)?;
    let mut names: Vec<OsString> = system.keys().cloned().collect();
    for entry in std::fs::read_dir(job).map_err(sys("list the job root"))? {
        let name = entry.map_err(sys("list the job root"))?.file_name();
        if !system.contains_key(&name) {
            names.push(name);
        }
    }
    for name in names {
        let job_entry = job.join(&name);
        let job_entry = job_entry.symlink_metadata().is_ok().then_some(job_entry);
        merge(&dst.join(&name), system.get(&name), job_entry.as_deref())?;
    }
    Ok(())
}

/// The worker's `host` (file, dir or symlink) at `dst`, read-only.
fn place(dst: &Path, host: &Path) -> Result<(), JailError> {
    let meta = std::fs::symlink_metadata(host).map_err(sys(format!("stat {}", host.display())))?;
    if meta.file_type().is_symlink() {
        return copy_symlink(host, dst);
    }
    mount_point(dst, meta.is_dir())?;
    bind_read_only(host, dst)
}

/// An empty dir or file at `dst` to mount on.
fn mount_point(dst: &Path, dir: bool) -> Result<(), JailError> {
    let made = match dir {
        true => std::fs::create_dir(dst),
        false => std::fs::write(dst, b""),
    };
    match made {
        Err(e) if !(dir && e.kind() == std::io::ErrorKind::AlreadyExists) => {
            Err(sys(format!("create the mount point {}", dst.display()))(e))
        }
        _ => Ok(()),
    }
}

/// The same symlink at `dst` as at `src`.
fn copy_symlink(src: &Path, dst: &Path) -> Result<(), JailError> {
    let link =
        std::fs::read_link(src).map_err(sys(format!("read the symlink {}", src.display())))?;
    std::os::unix::fs::symlink(link, dst)
        .map_err(sys(format!("make the symlink {}", dst.display())))
}
