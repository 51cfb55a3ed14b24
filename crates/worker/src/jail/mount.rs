//! The mount calls the jail makes, with errors that name the path.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{sys, JailError};

/// `mount(2)`; `src` and `fstype` may be absent, `data` is the filesystem's options.
pub(super) fn mount(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), JailError> {
    let src_c = src.map(cstr);
    let dst_c = cstr(dst);
    let fs_c = fstype.map(|f| CString::new(f).expect("no NUL"));
    let data_c = data.map(|d| CString::new(d).expect("no NUL"));
    // SAFETY: every pointer is a NUL-terminated string alive for the call, or null.
    let rc = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            dst_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr().cast()),
        )
    };
    if rc != 0 {
        return Err(sys(format!("mount {}", dst.display()))(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Binds `src` at `dst`, read-only (its submounts too, as they are).
pub(super) fn bind_read_only(src: &Path, dst: &Path) -> Result<(), JailError> {
    mount(Some(src), dst, None, libc::MS_BIND | libc::MS_REC, None)?;
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC;
    mount(None, dst, None, flags | kept_flags(dst)?, None)
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

pub(super) fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL")
}
