use std::{env, fs, path::Path};

fn main() {
    println!("cargo:rerun-if-env-changed=NATIVE_FIXTURE_MODE");
    let mode = env::var("NATIVE_FIXTURE_MODE").unwrap_or_else(|_| "default".into());
    // data-gen's links metadata: cargo passes it to this script only.
    let rows = env::var("DEP_DATAGEN_ROWS").expect("data-gen's links metadata");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("mode.rs");
    fs::write(dest, format!("pub const MODE: &str = \"{mode}/rows={rows}\";\n")).unwrap();
}
