//! The jail's `/`: a small tmpfs laid over the job root in the job's mount namespace, holding
//! nothing but mount points: the job root's own entries, bound back from beneath it, and the
//! system paths and sysroot, bound read-only from the worker's.
//!
//! Why a tmpfs: the mount points are made for every job, and on the job root's disk each is
//! a journaled create and, when the job dir is removed, a delete (a fifth of a launch's time
//! was these). On the tmpfs they cost a few microseconds and vanish with the namespace. The
//! job's files stay where the worker laid them out (its outputs are read back from there).
//!
//! Why staged: the system paths are the same for every job, and binding them was most of a
//! launch's mount work (a millisecond of the time between a job's plan and its compiler). A
//! launcher lays them out in a tmpfs of its own while it waits for its job ([`stage`]) and
//! moves that tmpfs onto the job root when the plan comes; only the job's entries and the
//! sysroot are left to place. A job with its own entry where the stage bound a system path
//! gets a tmpfs laid out afresh, as before. A file bound singly (`/etc/passwd`,
//! `/etc/ld.so.cache`) is then the worker's as it was when the launcher was prepared, not when
//! its job came; the dirs (`/usr` …) show their contents as they are.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::mount::{bind_read_only, mount};
use super::{sys, JailError};

/// The jail's `/` is small: mount points only.
const TMPFS_OPTIONS: &str = "mode=755,size=1m";

/// Paths by name, level by level.
type Tree = BTreeMap<OsString, Node>;

/// What the worker shows at one path of the jail.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// The worker's own file, dir or symlink at this path (read-only).
    Host(PathBuf),
    /// A dir made in the tmpfs to hold deeper system paths (`/etc` for `/etc/passwd`).
    Dir(Tree),
}

/// The system paths, bound in a tmpfs at a stage dir before the job is known.
pub(super) struct Staged {
    at: PathBuf,
    tree: Tree,
}

/// Lays the tmpfs at `at` and binds `system` in it (see [`Staged`]).
pub(super) fn stage(at: &Path, system: &[PathBuf]) -> Result<Staged, JailError> {
    let tree = system_tree(system);
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    mount(None, at, Some("tmpfs"), flags, Some(TMPFS_OPTIONS))?;
    for (name, node) in &tree {
        merge(&at.join(name), Some(node), None)?;
    }
    Ok(Staged {
        at: at.to_owned(),
        tree,
    })
}

/// Lays the tmpfs over `root` and fills it: `root`'s own entries and `system` (absolute
/// paths of the worker's; missing ones are skipped, one inside another is seen through it).
/// `staged`, where it fits this job, is moved there and only completed.
pub(super) fn build(
    root: &Path,
    system: &[PathBuf],
    staged: Option<&Staged>,
) -> Result<(), JailError> {
    // The job root as it is beneath the tmpfs, reached through this fd once covered.
    let below: OwnedFd = std::fs::File::open(root)
        .map_err(sys(format!("open the job root {}", root.display())))?
        .into();
    let beneath = PathBuf::from(format!("/proc/self/fd/{}", below.as_raw_fd()));
    let flags = libc::MS_NOSUID | libc::MS_NODEV;
    let full = system_tree(system);
    let moved = staged.and_then(|s| {
        let rest = unplaced(&s.tree, &full, root)?;
        mount(Some(&s.at), root, None, libc::MS_MOVE, None).ok()?;
        Some(rest)
    });
    match moved {
        Some(rest) => both(root, &rest, &beneath)?,
        None => {
            mount(None, root, Some("tmpfs"), flags, Some(TMPFS_OPTIONS))?;
            both(root, &full, &beneath)?;
        }
    }
    // Nothing more is made there: the job sees it read-only.
    let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags;
    mount(None, root, None, flags, None)
}

/// What of `full` a stage holding `staged` leaves to place for the job whose root is `job`;
/// `None` where the stage does not fit: the job has an entry where the stage bound a system
/// path (laid out afresh, the two are merged or refused), or `full` differs from it there.
fn unplaced(staged: &Tree, full: &Tree, job: &Path) -> Option<Tree> {
    let mut rest = Tree::new();
    for (name, node) in full {
        let job_entry = std::fs::symlink_metadata(job.join(name)).ok();
        match (staged.get(name), node) {
            (None, _) => {
                rest.insert(name.clone(), node.clone());
            }
            (Some(Node::Host(a)), Node::Host(b)) if a == b && job_entry.is_none() => {}
            (Some(Node::Dir(a)), Node::Dir(b)) if job_entry.as_ref().is_none_or(|m| m.is_dir()) => {
                let below = unplaced(a, b, &job.join(name))?;
                rest.insert(name.clone(), Node::Dir(below));
            }
            _ => return None,
        }
    }
    // A staged path `full` lacks (it holds a path above it): not this job's layout.
    staged.keys().all(|k| full.contains_key(k)).then_some(rest)
}

/// The system paths as a tree, ancestors first: a path under another is already seen.
fn system_tree(system: &[PathBuf]) -> Tree {
    let mut paths: Vec<&PathBuf> = system
        .iter()
        .filter(|p| p.is_absolute() && std::fs::symlink_metadata(p).is_ok())
        .collect();
    paths.sort_by_key(|p| p.components().count());
    let mut top = Tree::new();
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
            let mut entries = Tree::new();
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
fn both(dst: &Path, system: &Tree, job: &Path) -> Result<(), JailError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn tree(paths: &[&str]) -> Tree {
        // Missing paths are left out of a system tree: these tests name existing ones.
        system_tree(&paths.iter().map(PathBuf::from).collect::<Vec<_>>())
    }

    fn names(t: &Tree) -> Vec<String> {
        t.keys().map(|k| k.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_job_beside_the_system_paths_leaves_only_its_own_to_place() {
        let job = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(job.path().join("work/proj")).unwrap();
        // The job's dir under a staged dir of the tmpfs (`/dev`), as a TMPDIR of /dev/shm is.
        std::fs::create_dir_all(job.path().join("dev/shm/x")).unwrap();
        let staged = tree(&["/usr", "/etc/passwd", "/dev/null"]);
        let full = tree(&["/usr", "/etc/passwd", "/dev/null", "/proc"]);
        let rest = unplaced(&staged, &full, job.path()).expect("the stage fits");
        assert_eq!(names(&rest), ["dev", "etc", "proc"]);
        assert_eq!(
            rest[OsStr::new("dev")],
            Node::Dir(Tree::new()),
            "/dev/null is staged"
        );
        assert_eq!(rest[OsStr::new("proc")], Node::Host(PathBuf::from("/proc")));
    }

    #[test]
    fn a_job_with_its_own_entry_at_a_staged_path_is_laid_out_afresh() {
        let staged = tree(&["/usr", "/etc/passwd"]);
        for own in ["usr/local", "etc/passwd", "etc"] {
            let job = tempfile::tempdir().unwrap();
            let path = job.path().join(own);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
            assert_eq!(
                unplaced(&staged, &staged, job.path()),
                None,
                "the job has /{own}"
            );
        }
    }

    #[test]
    fn a_sysroot_above_a_staged_path_is_laid_out_afresh() {
        let job = tempfile::tempdir().unwrap();
        let staged = tree(&["/etc/passwd"]);
        // A toolchain whose sysroot is /etc (absurd, but the layout must not depend on it).
        let full = tree(&["/etc/passwd", "/etc"]);
        assert_eq!(unplaced(&staged, &full, job.path()), None);
    }
}
