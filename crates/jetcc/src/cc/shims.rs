//! Compiler shims: a dir of symlinks named `cc`, `c++`, `gcc`, `g++`, `clang`, `clang++`,
//! each pointing at the jetcc binary, put first on a build script's `PATH` when jetcc runs
//! it for real. cc-rs, cmake, make and autotools find their compiler on `PATH`, so their
//! compiles reach jetcc as `cc …` ([`super::run`]). A `CC=/abs/path/gcc` bypasses them.
//!
//! The dir is `<cache_dir>/shims/<tag>/`, the tag naming the jetcc binary's path: two jetcc
//! binaries sharing a cache dir each get their own, and a shim dir is never rewritten once
//! made. It is created whole under a temporary name and renamed into place, so concurrent
//! launchers (cargo runs scripts in parallel, several builds share a cache) see it complete
//! or not at all.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use jetcc_common::Digest;

/// The compiler names shimmed: what cc-rs, cmake and autoconf look for on `PATH`.
pub const NAMES: &[&str] = &["cc", "c++", "gcc", "g++", "clang", "clang++"];

/// Set for a build script run with shims: the dir a shim skips when it looks for the real
/// compiler on `PATH`.
pub const SHIM_DIR_VAR: &str = "JETCC_SHIM_DIR";

/// Set for a real compiler jetcc starts: a jetcc reached from inside it (a `ccache` or
/// another wrapper that looked the name up again) runs the real compiler at once.
pub const IN_CC_VAR: &str = "JETCC_IN_CC";

/// The shim dir for this jetcc binary under `cache_dir`, created if needed.
pub fn ensure(cache_dir: &Path) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let tag = Digest::of_bytes(exe.as_os_str().as_bytes()).hex();
    let parent = cache_dir.join("shims");
    let dir = parent.join(&tag[..16]);
    if complete(&dir, &exe) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&parent)?;
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let tmp = parent.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        jetcc_common::files::now_ns()
    ));
    let made = std::fs::create_dir(&tmp).and_then(|()| {
        NAMES
            .iter()
            .try_for_each(|n| std::os::unix::fs::symlink(&exe, tmp.join(n)))
    });
    let placed = made.and_then(|()| std::fs::rename(&tmp, &dir));
    let _ = std::fs::remove_dir_all(&tmp);
    match placed {
        Ok(()) => Ok(dir),
        // Another process made it first.
        Err(_) if complete(&dir, &exe) => Ok(dir),
        Err(e) => Err(e),
    }
}

fn complete(dir: &Path, exe: &Path) -> bool {
    NAMES
        .iter()
        .all(|n| std::fs::read_link(dir.join(n)).is_ok_and(|t| t == exe))
}

/// The variables a build script runs with so its compiles reach jetcc: the shims first on
/// `PATH`, and [`SHIM_DIR_VAR`]. Empty (the script runs as it would without jetcc) if the
/// shims cannot be made.
pub fn script_env(cache_dir: &Path) -> Vec<(OsString, OsString)> {
    match ensure(cache_dir) {
        Ok(dir) => {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut with = dir.clone().into_os_string();
            if !path.is_empty() {
                with.push(":");
                with.push(&path);
            }
            vec![("PATH".into(), with), (SHIM_DIR_VAR.into(), dir.into())]
        }
        Err(e) => {
            tracing::warn!("no compiler shims in {}: {e}", cache_dir.display());
            Vec::new()
        }
    }
}

/// `PATH` without the shim dir: what the real compiler runs with.
pub fn path_without(path: &OsStr, shims: Option<&Path>) -> OsString {
    let kept: Vec<&[u8]> = path
        .as_bytes()
        .split(|b| *b == b':')
        .filter(|d| shims.is_none_or(|s| !same_dir(Path::new(OsStr::from_bytes(d)), s)))
        .collect();
    OsStr::from_bytes(&kept.join(&b':')).to_owned()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    !a.as_os_str().is_empty()
        && (a == b
            || a.canonicalize()
                .ok()
                .is_some_and(|a| Some(a) == b.canonicalize().ok()))
}

/// The real compiler called `name`: the first executable of that name on `PATH` outside the
/// shim dir that is not jetcc itself (a shim found another way). `None`: there is none, and
/// running one would only reach jetcc again.
pub fn find_real(
    name: &str,
    path: &OsStr,
    shims: Option<&Path>,
    me: Option<&Path>,
) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let me = me.and_then(|m| m.canonicalize().ok());
    path.as_bytes()
        .split(|b| *b == b':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(OsStr::from_bytes(d)))
        .filter(|d| shims.is_none_or(|s| !same_dir(d, s)))
        .map(|d| d.join(name))
        .find(|p| {
            let exe = std::fs::metadata(p)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            exe && (me.is_none() || p.canonicalize().ok() != me)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shims_are_made_once_and_the_real_compiler_is_found_past_them() {
        let cache = tempfile::tempdir().unwrap();
        let dir = ensure(cache.path()).unwrap();
        // Made once: a second call (another launcher) finds it complete.
        assert_eq!(ensure(cache.path()).unwrap(), dir);
        let me = std::env::current_exe().unwrap();
        for n in NAMES {
            assert_eq!(std::fs::read_link(dir.join(n)).unwrap(), me);
        }
        let bin = tempfile::tempdir().unwrap();
        let gcc = bin.path().join("gcc");
        std::fs::write(&gcc, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&gcc, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // A symlink to jetcc elsewhere on PATH is skipped too: never recurse.
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&me, other.path().join("gcc")).unwrap();
        let path = std::env::join_paths([&dir, other.path(), bin.path()]).unwrap();
        assert_eq!(
            find_real("gcc", &path, Some(&dir), Some(&me)),
            Some(gcc.clone())
        );
        let only_shims = std::env::join_paths([&dir, other.path()]).unwrap();
        assert_eq!(find_real("gcc", &only_shims, Some(&dir), Some(&me)), None);
        assert_eq!(
            path_without(&path, Some(&dir)),
            std::env::join_paths([other.path(), bin.path()]).unwrap()
        );
    }

    #[test]
    fn concurrent_launchers_all_get_the_same_complete_dir() {
        let cache = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = cache.path().to_path_buf();
                std::thread::spawn(move || ensure(&c).unwrap())
            })
            .collect();
        let dirs: Vec<PathBuf> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(dirs.iter().all(|d| *d == dirs[0]));
        assert!(complete(&dirs[0], &std::env::current_exe().unwrap()));
        // No temporary dirs left behind.
        let left: Vec<_> = std::fs::read_dir(cache.path().join("shims"))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(left.len(), 1);
    }
}
