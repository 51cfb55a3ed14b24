fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:warning=native fixture warning from build script");
    eprintln!("native fixture: this line goes to the build script's stderr");
    println!("cargo:rustc-cfg=warns_ran");
    println!("cargo:rustc-check-cfg=cfg(warns_ran)");
}
