fn main() {
    cc::Build::new()
        .file("csrc/add.c")
        .include("csrc")
        .compile("add");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
}
