//! The one place that decides whether an invocation is cached, and which files it writes.
//!
//! Unit kinds are enabled here and nowhere else. Link-producing kinds (binaries, build
//! scripts, proc-macros, dylibs) are cached on Linux targets, where jetcc knows their file
//! names and the linker's inputs.

use std::fmt;
use std::path::PathBuf;

use crate::args::{CrateType, EmitKind, Input, RustcArgs};

/// Why an invocation runs as plain rustc. The names show up in stats and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassThrough {
    /// `rustc -vV`, `--print`, `--explain`, …: no compile.
    NotACompile,
    Incremental,
    StdinInput,
    /// A flag the argument model does not know.
    UnknownFlag(String),
    /// `-o FILE` or `--emit KIND=PATH`: outputs outside `--out-dir`.
    ExplicitOutputPath,
    /// `--emit` kinds other than link, metadata and dep-info.
    EmitKind,
    /// No dep-info requested: direct mode cannot learn the source files.
    NoDepInfo,
    /// A link for a target whose output names and linker jetcc does not model (non-Linux).
    LinkTarget,
    /// `-C split-debuginfo` other than `off`: extra output files jetcc does not track.
    SplitDebuginfo,
    /// Missing `--crate-name` or `--out-dir`.
    MissingNameOrOutDir,
    /// The arguments could not be read (an unreadable `@argfile`, non-UTF-8).
    UnreadableArgs,
}

impl PassThrough {
    /// A short stable name for stats.
    pub fn name(&self) -> &'static str {
        match self {
            PassThrough::NotACompile => "not-a-compile",
            PassThrough::Incremental => "incremental",
            PassThrough::StdinInput => "stdin-input",
            PassThrough::UnknownFlag(_) => "unknown-flag",
            PassThrough::ExplicitOutputPath => "explicit-output-path",
            PassThrough::EmitKind => "emit-kind",
            PassThrough::NoDepInfo => "no-dep-info",
            PassThrough::LinkTarget => "link-target",
            PassThrough::SplitDebuginfo => "split-debuginfo",
            PassThrough::MissingNameOrOutDir => "no-crate-name-or-out-dir",
            PassThrough::UnreadableArgs => "unreadable-args",
        }
    }
}

impl crate::stats::StatKind for PassThrough {
    fn name(&self) -> &'static str {
        PassThrough::name(self)
    }
}

impl fmt::Display for PassThrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassThrough::UnknownFlag(flag) => write!(f, "unknown flag {flag}"),
            other => f.write_str(other.name()),
        }
    }
}

/// What a cacheable invocation writes: file names relative to `out_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    pub out_dir: PathBuf,
    /// Every output file name, dep-info included.
    pub files: Vec<String>,
    /// The dep-info file name.
    pub dep_info: String,
    /// Whether rustc runs a linker: its identity and every library it links are then inputs.
    pub links: bool,
}

/// Decides: cache it (and which files it writes), or run plain rustc, and why.
/// Whether incremental compiles are cached (`[cache] incremental`). Their outputs are valid to
/// reuse after `cargo clean`; a miss still compiles incrementally, as cargo asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub cache_incremental: bool,
}

pub fn classify(inv: &RustcArgs, policy: Policy) -> Result<Outputs, PassThrough> {
    if !inv.print.is_empty() || inv.special_modes.iter().any(|m| m != "--test") {
        return Err(PassThrough::NotACompile);
    }
    match &inv.input {
        None => return Err(PassThrough::NotACompile),
        Some(Input::Stdin) => return Err(PassThrough::StdinInput),
        Some(Input::File(_)) => {}
    }
    if inv.codegen_opt("incremental").is_some() && !policy.cache_incremental {
        return Err(PassThrough::Incremental);
    }
    if let Some(flag) = inv.unknown.first() {
        return Err(PassThrough::UnknownFlag(flag.clone()));
    }
    // rustc's default crate type is bin (so is a `--test` harness).
    let types = if inv.crate_types.is_empty() {
        vec![CrateType::Bin]
    } else {
        inv.crate_types.clone()
    };
    if inv.output.is_some() || inv.emit.iter().any(|e| e.path.is_some()) {
        return Err(PassThrough::ExplicitOutputPath);
    }
    if inv.emit.iter().any(|e| e.kind == EmitKind::Other) {
        return Err(PassThrough::EmitKind);
    }
    if !inv.emit.iter().any(|e| e.kind == EmitKind::DepInfo) {
        return Err(PassThrough::NoDepInfo);
    }
    let (Some(name), Some(out_dir)) = (&inv.crate_name, &inv.out_dir) else {
        return Err(PassThrough::MissingNameOrOutDir);
    };
    let links =
        inv.emit.iter().any(|e| e.kind == EmitKind::Link) && types.iter().any(|t| t.links());
    if links && !inv.target.as_deref().is_none_or(|t| t.contains("-linux-")) {
        return Err(PassThrough::LinkTarget);
    }
    if inv
        .codegen_opt("split-debuginfo")
        .is_some_and(|v| v != Some("off"))
    {
        return Err(PassThrough::SplitDebuginfo);
    }
    let extra = inv.codegen_opt("extra-filename").flatten().unwrap_or("");
    let stem = format!("{name}{extra}");
    let mut files = Vec::new();
    for emit in &inv.emit {
        match emit.kind {
            EmitKind::Link => {
                for t in &types {
                    files.push(match t {
                        CrateType::Lib | CrateType::Rlib => format!("lib{stem}.rlib"),
                        CrateType::Staticlib => format!("lib{stem}.a"),
                        CrateType::Bin => stem.clone(),
                        CrateType::ProcMacro | CrateType::Dylib | CrateType::Cdylib => {
                            format!("lib{stem}.so")
                        }
                    });
                }
            }
            EmitKind::Metadata => files.push(format!("lib{stem}.rmeta")),
            EmitKind::DepInfo => files.push(format!("{stem}.d")),
            EmitKind::Other => unreachable!("refused above"),
        }
    }
    files.sort();
    files.dedup();
    Ok(Outputs {
        out_dir: out_dir.clone(),
        files,
        dep_info: format!("{stem}.d"),
        links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn classify_args(s: &str) -> Result<Outputs, PassThrough> {
        let inv = RustcArgs::parse(s.split_whitespace().map(OsString::from)).unwrap();
        classify(
            &inv,
            Policy {
                cache_incremental: false,
            },
        )
    }

    const LIB: &str = "--crate-name foo src/lib.rs --crate-type lib --emit=dep-info,metadata,link -C extra-filename=-h --out-dir /t";

    #[test]
    fn a_cargo_lib_is_cached_with_its_outputs() {
        let out = classify_args(LIB).unwrap();
        assert_eq!(
            out.files,
            vec!["foo-h.d", "libfoo-h.rlib", "libfoo-h.rmeta"]
        );
        assert_eq!(out.dep_info, "foo-h.d");
    }

    #[test]
    fn link_types_are_cached_with_their_file_names() {
        let bin =
            classify_args(&LIB.replace("lib --emit=dep-info,metadata,", "bin --emit=dep-info,"))
                .unwrap();
        assert_eq!(bin.files, vec!["foo-h", "foo-h.d"]);
        assert!(bin.links);
        let pm = classify_args(&LIB.replace("lib --emit", "proc-macro --emit")).unwrap();
        assert!(pm.files.contains(&"libfoo-h.so".to_owned()));
        assert!(!classify_args(LIB).unwrap().links);
        assert_eq!(
            classify_args(&format!(
                "{} --target x86_64-apple-darwin",
                LIB.replace("lib --emit", "bin --emit")
            )),
            Err(PassThrough::LinkTarget)
        );
    }

    #[test]
    fn staticlib_is_cached() {
        let out = classify_args(&LIB.replace("lib --emit", "staticlib --emit")).unwrap();
        assert!(out.files.contains(&"libfoo-h.a".to_owned()));
    }

    #[test]
    fn named_reasons() {
        let cases = [
            ("-vV", PassThrough::NotACompile),
            (
                "- --crate-name ___ --print=file-names",
                PassThrough::NotACompile,
            ),
            (
                &format!("{LIB} -C incremental=/t/inc"),
                PassThrough::Incremental,
            ),
            (&LIB.replace("src/lib.rs", "-"), PassThrough::StdinInput),
            (
                &format!("{LIB} -C split-debuginfo=packed"),
                PassThrough::SplitDebuginfo,
            ),
            (
                &format!("{LIB} --frob"),
                PassThrough::UnknownFlag("--frob".into()),
            ),
            (&format!("{LIB} -o x"), PassThrough::ExplicitOutputPath),
            (
                &LIB.replace("dep-info,", "dep-info,asm,"),
                PassThrough::EmitKind,
            ),
            (&LIB.replace("dep-info,", ""), PassThrough::NoDepInfo),
        ];
        for (args, want) in cases {
            assert_eq!(classify_args(args).unwrap_err(), want, "{args}");
        }
    }
}
