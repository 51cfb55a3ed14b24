use std::ffi::CStr;
use std::os::raw::{c_char, c_void};

fn jemalloc_version() -> String {
    let mut version: *const c_char = std::ptr::null();
    let mut len = std::mem::size_of::<*const c_char>();
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"version".as_ptr(),
            &mut version as *mut *const c_char as *mut c_void,
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    assert_eq!(rc, 0, "mallctl(\"version\")");
    unsafe { CStr::from_ptr(version) }
        .to_string_lossy()
        .into_owned()
}

fn main() {
    let libz = unsafe { CStr::from_ptr(libz_sys::zlibVersion()) }
        .to_string_lossy()
        .into_owned();
    let zstd = unsafe { zstd_sys::ZSTD_versionNumber() };
    println!(
        "add={} table={} mode={} seed={} warns={} fails={} zlib-pc={} zlib={} mul={} zstd={} libz={} jemalloc={}",
        cc_header::add(2, 3),
        data_gen::table(),
        env_dep::MODE,
        no_decl::SEED,
        warns::ran(),
        fails::ok(),
        pkgconf::PKG_CONFIG_ZLIB,
        pkgconf::zlib_version(),
        cmake_lib::mul(3, 4),
        zstd,
        libz,
        jemalloc_version(),
    );
}
