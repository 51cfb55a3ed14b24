fn main() {
    println!("cargo:rerun-if-env-changed=NATIVE_FIXTURE_FAIL");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("NATIVE_FIXTURE_FAIL").as_deref() == Ok("1") {
        eprintln!("native fixture: failing on purpose because NATIVE_FIXTURE_FAIL=1");
        std::process::exit(1);
    }
}
