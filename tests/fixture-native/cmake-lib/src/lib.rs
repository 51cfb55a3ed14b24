extern "C" {
    #[link_name = "mul"]
    fn c_mul(a: i32, b: i32) -> i32;
}

/// a * b, computed by the CMake-built static library.
pub fn mul(a: i32, b: i32) -> i32 {
    unsafe { c_mul(a, b) }
}
