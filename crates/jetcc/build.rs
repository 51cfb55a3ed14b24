//! Links the `jetcc` binary as a position-dependent executable: a PIE of its size carries
//! ~38k relative relocations, and writing them at every start (copy-on-write faults on
//! ~150 pages of `.data.rel.ro`) cost each invocation ~1 ms, a third of starting and
//! exiting it (`perf stat jetcc --version`: 2.4 -> 1.2 ms of CPU, 294 -> 121 page faults).
//! jetcc runs once per rustc invocation, so that is paid thousands of times a build.
//! Libraries, heap and stack stay randomized; only the binary's own image is at a fixed
//! address. `JETCC_PIE=1` at build time keeps it a PIE (docs/security.md).

fn main() {
    println!("cargo:rerun-if-env-changed=JETCC_PIE");
    let pie = std::env::var("JETCC_PIE").is_ok_and(|v| !v.is_empty() && v != "0");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
