use std::ffi::CStr;
use std::os::raw::c_char;

// The version pkg-config reported for zlib (zlib.pc of the system).
include!(concat!(env!("OUT_DIR"), "/probe.rs"));

extern "C" {
    fn zlibVersion() -> *const c_char;
}

/// The version of the zlib linked for `-lz`. In `app` that is libz-sys's static zlib, which
/// comes first in the link and so defines `zlibVersion`, not the system one pkg-config found.
pub fn zlib_version() -> String {
    unsafe { CStr::from_ptr(zlibVersion()) }
        .to_string_lossy()
        .into_owned()
}
