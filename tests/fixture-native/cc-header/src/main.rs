//! Prints what the C code computes: the C compile cache's e2e test runs it.
fn main() {
    println!("add={}", cc_header::add(2, 3));
}
