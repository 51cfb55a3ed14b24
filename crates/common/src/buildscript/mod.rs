//! Build-script runs as jetcc caches them.
//!
//! cargo runs a build script itself, not through `RUSTC_WRAPPER`; jetcc leaves a launcher where
//! cargo runs the script's binary, and the launcher caches the run like a compile. This module
//! says what goes into a run's key and how its result is kept:
//!
//! - [`is_keyed_env`]: the variables cargo sets for build scripts, and those the C/C++
//!   toolchains read (`CC`, `CFLAGS_<target>`, `PKG_CONFIG_PATH`, …). The rest of the
//!   environment is not keyed, as cargo does not rerun a script when it changes: a script
//!   reads more only by declaring it (`rerun-if-env-changed`, kept in the run's manifest).
//! - [`TOOLS`]: the programs a script can reach on `PATH`, keyed by identity.
//! - [`Directives`]: what the previous run declared on stdout.
//! - [`tree`]: `OUT_DIR` packed as one blob and swapped in whole on a hit.
//!
//! Design choice: a run is keyed in two steps like a compile (direct mode): what is known
//! before running (binary, env, tools) files a manifest; the files and variables the run
//! declared decide which of its entries matches. `docs/build-scripts.md` is the user's view.

mod directives;
pub mod tree;

pub use directives::Directives;

/// Variables cargo sets for a build script (or that are in the environment) whose value
/// cannot change what the script produces, each with the reason (also in
/// `docs/build-scripts.md`).
pub const UNKEYED: &[(&str, &str)] = &[
    (
        "NUM_JOBS",
        "how many jobs to run at once, not what they produce",
    ),
    (
        "CARGO_MAKEFLAGS",
        "the jobserver's file descriptors, new in every build",
    ),
    (
        "MAKEFLAGS",
        "the jobserver's file descriptors, new in every build",
    ),
    (
        "MFLAGS",
        "the jobserver's file descriptors, new in every build",
    ),
    ("CARGO_BUILD_JOBS", "parallelism only"),
    (
        "CARGO_TARGET_DIR",
        "where the build goes: OUT_DIR is keyed as a placeholder",
    ),
    ("CARGO_BUILD_TARGET_DIR", "as CARGO_TARGET_DIR"),
    ("CARGO_BUILD_BUILD_DIR", "as CARGO_TARGET_DIR"),
    (
        "CARGO_HOME",
        "a location: sources under it are keyed by content",
    ),
    (
        "LD_LIBRARY_PATH",
        "cargo sets it to the target dir's deps and the toolchain's libs: locations",
    ),
    ("DYLD_FALLBACK_LIBRARY_PATH", "as LD_LIBRARY_PATH, on macOS"),
    ("RUSTC_WRAPPER", "jetcc itself"),
    ("RUSTC_WORKSPACE_WRAPPER", "as RUSTC_WRAPPER"),
    (
        "RUSTC",
        "a location: keyed by the compiler's identity (`rustc -vV`) instead",
    ),
    (
        "RUSTDOC",
        "a location of the toolchain, which RUSTC's identity covers",
    ),
    ("CARGO", "where cargo is installed, not what it does"),
];

/// Prefixes of `CARGO_*` variables that configure cargo itself (output, network,
/// credentials), never a build script's result.
const UNKEYED_CARGO_PREFIXES: &[&str] = &[
    "CARGO_TERM_",
    "CARGO_HTTP_",
    "CARGO_NET_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_CACHE_",
    "CARGO_ALIAS_",
];

/// C/C++ toolchain variables, read by cc-rs, cmake, make and autotools, with the `HOST_` and
/// `TARGET_` prefixes and `_<target>` / `-<target>` suffixes cc-rs also reads.
const TOOL_VARS: &[&str] = &[
    "CC", "CXX", "AR", "AS", "LD", "NM", "RANLIB", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS",
    "ARFLAGS", "ASFLAGS", "CCFLAGS",
];

/// Other variables C/C++ builds read whatever the script declares.
const TOOL_PREFIXES: &[&str] = &[
    "PKG_CONFIG",
    "CMAKE",
    "CRATE_CC_NO_DEFAULTS",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "LIBRARY_PATH",
    "LIBCLANG_PATH",
    "CLANG_PATH",
    "BINDGEN_EXTRA_CLANG_ARGS",
    "CXXSTDLIB",
    "SDKROOT",
    "MACOSX_DEPLOYMENT_TARGET",
    "SOURCE_DATE_EPOCH",
    "RUSTC_BOOTSTRAP",
];

/// Whether a variable's value goes into a build-script run's key (see the module doc).
pub fn is_keyed_env(name: &str) -> bool {
    if UNKEYED.iter().any(|(n, _)| *n == name) || name.contains("TOKEN") {
        return false;
    }
    let cargo_set = name.starts_with("CARGO")
        || name.starts_with("DEP_")
        || matches!(
            name,
            "OUT_DIR" | "TARGET" | "HOST" | "PROFILE" | "OPT_LEVEL" | "DEBUG" | "RUSTC_LINKER"
        );
    if cargo_set {
        return !UNKEYED_CARGO_PREFIXES.iter().any(|p| name.starts_with(p));
    }
    let base = name
        .strip_prefix("HOST_")
        .or_else(|| name.strip_prefix("TARGET_"))
        .unwrap_or(name);
    TOOL_VARS.iter().any(|v| {
        base.strip_prefix(v)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['_', '-']))
    }) || TOOL_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Programs a build script may run, found on its `PATH` and keyed by identity: compilers,
/// archivers, build systems, configure's helpers. Those a variable names (`CC=clang-18`) are
/// keyed too.
pub const TOOLS: &[&str] = &[
    "cc",
    "c++",
    "gcc",
    "g++",
    "clang",
    "clang++",
    "ar",
    "ld",
    "as",
    "nm",
    "ranlib",
    "strip",
    "cmake",
    "make",
    "gmake",
    "ninja",
    "pkg-config",
    "pkgconf",
    "perl",
    "python3",
    "nasm",
    "yasm",
    "autoconf",
    "autoreconf",
    "libtool",
    "m4",
    "sh",
    "bash",
];

/// Variables whose first word names a program the script runs.
pub const TOOL_NAMING_VARS: &[&str] = &["CC", "CXX", "AR", "RANLIB", "PKG_CONFIG", "CMAKE"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_what_cargo_and_toolchains_set_and_not_jobs_or_unrelated_vars() {
        for keyed in [
            "CARGO_FEATURE_STATIC",
            "CARGO_CFG_TARGET_OS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_MANIFEST_DIR",
            "DEP_Z_INCLUDE",
            "OUT_DIR",
            "TARGET",
            "OPT_LEVEL",
            "RUSTC_LINKER",
            "CC",
            "CFLAGS",
            "CFLAGS_x86_64_unknown_linux_gnu",
            "CFLAGS_x86_64-unknown-linux-gnu",
            "TARGET_CC",
            "HOST_CXXFLAGS",
            "CC_KNOWN_WRAPPER_CUSTOM",
            "PKG_CONFIG_PATH",
            "CMAKE_GENERATOR",
        ] {
            assert!(is_keyed_env(keyed), "{keyed}");
        }
        for unkeyed in [
            "NUM_JOBS",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "HOME",
            "PATH",
            "TERM",
            "CARGO_TERM_COLOR",
            "CARGO_REGISTRY_TOKEN",
            "CCACHE_DIR2",
            "CARGO_TARGET_DIR",
            "RUSTC_WRAPPER",
            "LD_LIBRARY_PATH",
            "MY_UNRELATED",
        ] {
            assert!(!is_keyed_env(unkeyed), "{unkeyed}");
        }
    }
}
