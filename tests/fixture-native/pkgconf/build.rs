use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let lib = pkg_config::Config::new()
        .probe("zlib")
        .expect("pkg-config finds the system zlib");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("probe.rs");
    fs::write(
        dest,
        format!("pub const PKG_CONFIG_ZLIB: &str = {:?};\n", lib.version),
    )
    .unwrap();
}
