//! The launcher jetcc leaves where cargo runs a build script.
//!
//! cargo runs `T/<profile>/build/<pkg>-<h>/build-script-build`, a hard link to the binary
//! rustc wrote as `build_script_build-<h>`. Once jetcc has written that binary (a hit or a
//! compile), it moves it aside (`build_script_build-<h>.jetcc-real`) and writes in its place
//! a file whose `#!` line is jetcc itself: the kernel runs `jetcc __build-script LAUNCHER
//! ARGS…`, and jetcc reads the real binary's path from the launcher's `# real:` line.
//!
//! Design choice: a `#!` line, not a shell script. `sh` drops variables whose names are not
//! shell identifiers, and cc-rs reads `CFLAGS_x86_64-unknown-linux-gnu`: with the kernel
//! starting jetcc directly, the script sees exactly the environment cargo gave it.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jetcc_common::fsutil;

/// The hidden command the launcher's `#!` line runs: `jetcc __build-script LAUNCHER [ARGS…]`.
pub const COMMAND: &str = "__build-script";

/// Appended to the real binary's name.
const REAL_SUFFIX: &str = ".jetcc-real";

/// The launcher's line naming the real binary.
const REAL_LINE: &str = "# real: ";

/// The longest `#!` line Linux reads whole (`BINPRM_BUF_SIZE`, less the newline).
const MAX_SHEBANG: usize = 255;

/// Replaces the build-script binary at `exe` with the launcher; returns the real binary's
/// new path. On failure the binary is left (or put back) where it was.
pub fn install(exe: &Path) -> io::Result<PathBuf> {
    let jetcc = std::env::current_exe()?;
    let shebang = format!("#!{} {COMMAND}", jetcc.display());
    if shebang.len() > MAX_SHEBANG || jetcc.to_string_lossy().contains(char::is_whitespace) {
        return Err(io::Error::other(format!(
            "jetcc's path ({}) is too long or has spaces for a #! line",
            jetcc.display()
        )));
    }
    let mut real = exe.as_os_str().to_owned();
    real.push(REAL_SUFFIX);
    let real = PathBuf::from(real);
    fs::rename(exe, &real)?;
    let text = format!(
        "{shebang}\n# jetcc's build-script launcher: runs the build script below through jetcc's run cache (docs/build-scripts.md)\n{REAL_LINE}{}\n",
        real.display()
    );
    let written = fsutil::write_atomic(exe, text.as_bytes())
        .and_then(|()| fs::set_permissions(exe, fs::Permissions::from_mode(0o755)));
    if let Err(e) = written {
        let _ = fs::rename(&real, exe);
        return Err(e);
    }
    Ok(real)
}

/// The real binary a launcher names, if `launcher` is one.
pub fn real_binary(launcher: &Path) -> Option<PathBuf> {
    let mut head = vec![0u8; 4096];
    let n = io::Read::read(&mut fs::File::open(launcher).ok()?, &mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(REAL_LINE))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_names_the_real_binary_and_starts_jetcc() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("build_script_build-1");
        fs::write(&exe, b"\x7fELF not really").unwrap();
        let real = install(&exe).unwrap();
        assert_eq!(fs::read(&real).unwrap(), b"\x7fELF not really");
        assert_eq!(real_binary(&exe), Some(real));
        let text = fs::read_to_string(&exe).unwrap();
        let jetcc = std::env::current_exe().unwrap();
        assert!(
            text.starts_with(&format!("#!{} {COMMAND}\n", jetcc.display())),
            "{text}"
        );
        assert_eq!(
            fs::metadata(&exe).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
}
