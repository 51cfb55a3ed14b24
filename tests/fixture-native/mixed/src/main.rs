use std::ffi::CStr;

fn main() {
    let libz = unsafe { CStr::from_ptr(libz_sys::zlibVersion()) }
        .to_string_lossy()
        .into_owned();
    println!(
        "add={} table={} mode={} warns={} libz={}",
        cc_header::add(2, 3),
        data_gen::table(),
        env_dep::MODE,
        warns::ran(),
        libz,
    );
}
