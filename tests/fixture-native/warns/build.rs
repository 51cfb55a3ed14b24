use std::{env, fs, path::Path, thread, time::Duration};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NATIVE_FIXTURE_HOLD");
    println!("cargo:warning=native fixture warning from build script");
    eprintln!("native fixture: this line goes to the build script's stderr");
    println!("cargo:rustc-cfg=warns_ran");
    println!("cargo:rustc-check-cfg=cfg(warns_ran)");
    // Writes its OUT_DIR in two steps; with NATIVE_FIXTURE_HOLD=<file> it waits between them
    // while that file exists (a test kills the build there).
    let out = Path::new(&env::var("OUT_DIR").unwrap()).to_path_buf();
    fs::write(out.join("first.txt"), "1").unwrap();
    if let Ok(hold) = env::var("NATIVE_FIXTURE_HOLD") {
        while Path::new(&hold).exists() {
            thread::sleep(Duration::from_millis(50));
        }
    }
    fs::write(out.join("second.txt"), "2").unwrap();
}
