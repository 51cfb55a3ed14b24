extern "C" {
    fn fixture_add(a: i32, b: i32) -> i32;
}

/// a + b + ADD_BIAS (csrc/add.h), computed in C.
pub fn add(a: i32, b: i32) -> i32 {
    unsafe { fixture_add(a, b) }
}
