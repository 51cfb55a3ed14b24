fn main() {
    cc::Build::new()
        .file("csrc/add.c")
        .include("csrc")
        .compile("add");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
    // Changing it reruns the script with identical C inputs (the C compile cache's e2e test).
    println!("cargo:rerun-if-env-changed=CC_HEADER_SALT");
}
