fn main() {
    let mut build = cc::Build::new();
    build.file("csrc/add.c").include("csrc");
    if std::env::var_os("CARGO_FEATURE_BIAS").is_some() {
        build.define("ADD_BIAS", "100");
    }
    build.compile("add");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
    // Changing it reruns the script with identical C inputs (the C compile cache's e2e test).
    println!("cargo:rerun-if-env-changed=CC_HEADER_SALT");
}
