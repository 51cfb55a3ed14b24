/// True when the build script's `cargo:rustc-cfg` reached rustc.
pub fn ran() -> bool {
    cfg!(warns_ran)
}
