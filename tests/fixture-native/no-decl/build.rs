// Declares no rerun-if-* on purpose: cargo reruns it when any file of the package changes.
use std::{env, fs, path::Path};

fn main() {
    let seed: u64 = fs::read_to_string("src/seed.txt")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("seed.rs");
    fs::write(dest, format!("pub const SEED: u64 = {seed};\n")).unwrap();
}
