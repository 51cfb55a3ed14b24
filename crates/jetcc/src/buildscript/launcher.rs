//! The launcher jetcc leaves where cargo runs a build script.
//!
//! cargo runs `T/<profile>/build/<pkg>-<h>/build-script-build`, a hard link to the binary
//! rustc wrote as `build_script_build-<h>`. Once jetcc has written that binary (a hit or a
//! compile), it moves it aside (`build_script_build-<h>.jetcc-real`) and puts a two-line
//! `sh` script in its place, so cargo's run goes through `jetcc __build-script REAL`. If
//! jetcc is gone, the script runs the real binary itself: a removed jetcc never breaks a build.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jetcc_common::fsutil;

/// The hidden command the launcher runs: `jetcc __build-script REAL [ARGS…]`.
pub const COMMAND: &str = "__build-script";

/// Appended to the real binary's name.
const REAL_SUFFIX: &str = ".jetcc-real";

/// Replaces the build-script binary at `exe` with the launcher; returns the real binary's
/// new path. On failure the binary is left (or put back) where it was.
pub fn install(exe: &Path) -> io::Result<PathBuf> {
    let jetcc = std::env::current_exe()?;
    let mut real = exe.as_os_str().to_owned();
    real.push(REAL_SUFFIX);
    let real = PathBuf::from(real);
    fs::rename(exe, &real)?;
    let script = format!(
        "#!/bin/sh\n# jetcc's build-script launcher: caches this run (see jetcc's docs/build-scripts.md)\n\
         [ -x {jetcc} ] && exec {jetcc} {COMMAND} {real} \"$@\"\nexec {real} \"$@\"\n",
        jetcc = sh_quote(&jetcc),
        real = sh_quote(&real),
    );
    let written = fsutil::write_atomic(exe, script.as_bytes())
        .and_then(|()| fs::set_permissions(exe, fs::Permissions::from_mode(0o755)));
    if let Err(e) = written {
        let _ = fs::rename(&real, exe);
        return Err(e);
    }
    Ok(real)
}

/// `'…'` with embedded quotes escaped: any path is one word to `sh`.
fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn the_launcher_runs_the_real_binary_when_jetcc_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("it's build_script_build-1");
        fs::write(&exe, "#!/bin/sh\necho real \"$@\"\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let real = install(&exe).unwrap();
        assert!(real.exists());
        let script = fs::read_to_string(&exe).unwrap();
        assert!(script.contains(COMMAND), "{script}");
        // Point the launcher at a jetcc that does not exist: the real binary still runs.
        let gone = script.replace(
            &sh_quote(&std::env::current_exe().unwrap()),
            "'/nonexistent/jetcc'",
        );
        fs::write(&exe, gone).unwrap();
        let out = Command::new(&exe).arg("a b").output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "real a b\n");
    }
}
