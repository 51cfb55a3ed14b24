//! The one place that decides whether an invocation is cached, and which files it writes.
//!
//! Later unit kinds (binaries, proc-macros, build scripts, incremental crates) are enabled here
//! and nowhere else.

use std::fmt;
use std::path::PathBuf;

use crate::args::{CrateType, EmitKind, Input, RustcInvocation};

/// Why an invocation runs as plain rustc. The names show up in stats and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassThrough {
    /// `rustc -vV`, `--print`, `--explain`, …: no compile.
    NotACompile,
    Incremental,
    StdinInput,
    /// Crate type not cached yet (binaries, proc-macros, build scripts, dylibs).
    CrateType(CrateType),
    /// `--test` harnesses (binaries).
    TestHarness,
    /// A flag the argument model does not know.
    UnknownFlag(String),
    /// `-o FILE` or `--emit KIND=PATH`: outputs outside `--out-dir`.
    ExplicitOutputPath,
    /// `--emit` kinds other than link, metadata and dep-info.
    EmitKind,
    /// No dep-info requested: direct mode cannot learn the source files.
    NoDepInfo,
    /// Missing `--crate-name` or `--out-dir`.
    MissingNameOrOutDir,
}

impl PassThrough {
    /// A short stable name for stats.
    pub fn name(&self) -> String {
        match self {
            PassThrough::NotACompile => "not-a-compile".into(),
            PassThrough::Incremental => "incremental".into(),
            PassThrough::StdinInput => "stdin-input".into(),
            PassThrough::CrateType(t) => format!("crate-type-{}", t.name()),
            PassThrough::TestHarness => "test-harness".into(),
            PassThrough::UnknownFlag(_) => "unknown-flag".into(),
            PassThrough::ExplicitOutputPath => "explicit-output-path".into(),
            PassThrough::EmitKind => "emit-kind".into(),
            PassThrough::NoDepInfo => "no-dep-info".into(),
            PassThrough::MissingNameOrOutDir => "no-crate-name-or-out-dir".into(),
        }
    }
}

impl fmt::Display for PassThrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassThrough::UnknownFlag(flag) => write!(f, "unknown flag {flag}"),
            other => f.write_str(&other.name()),
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
}

/// Decides: cache it (and which files it writes), or run plain rustc, and why.
pub fn classify(inv: &RustcInvocation) -> Result<Outputs, PassThrough> {
    if !inv.print.is_empty() || inv.special_modes.iter().any(|m| m != "--test") {
        return Err(PassThrough::NotACompile);
    }
    match &inv.input {
        None => return Err(PassThrough::NotACompile),
        Some(Input::Stdin) => return Err(PassThrough::StdinInput),
        Some(Input::File(_)) => {}
    }
    if inv.codegen_opt("incremental").is_some() {
        return Err(PassThrough::Incremental);
    }
    if let Some(flag) = inv.unknown.first() {
        return Err(PassThrough::UnknownFlag(flag.clone()));
    }
    if inv.special_modes.iter().any(|m| m == "--test") {
        return Err(PassThrough::TestHarness);
    }
    // rustc's default crate type is bin.
    let types = if inv.crate_types.is_empty() {
        vec![CrateType::Bin]
    } else {
        inv.crate_types.clone()
    };
    if let Some(t) = types.iter().find(|t| !is_cached_type(**t)) {
        return Err(PassThrough::CrateType(*t));
    }
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
    let extra = inv.codegen_opt("extra-filename").flatten().unwrap_or("");
    let stem = format!("{name}{extra}");
    let mut files = Vec::new();
    for emit in &inv.emit {
        match emit.kind {
            EmitKind::Link => {
                for t in &types {
                    files.push(match t {
                        CrateType::Staticlib => format!("lib{stem}.a"),
                        _ => format!("lib{stem}.rlib"),
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
    })
}

fn is_cached_type(t: CrateType) -> bool {
    matches!(t, CrateType::Lib | CrateType::Rlib | CrateType::Staticlib)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn classify_args(s: &str) -> Result<Outputs, PassThrough> {
        let inv = RustcInvocation::parse(s.split_whitespace().map(OsString::from)).unwrap();
        classify(&inv)
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
                &LIB.replace("lib --emit", "bin --emit"),
                PassThrough::CrateType(CrateType::Bin),
            ),
            (
                &LIB.replace("lib --emit", "proc-macro --emit"),
                PassThrough::CrateType(CrateType::ProcMacro),
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
            (&format!("{LIB} --test"), PassThrough::TestHarness),
        ];
        for (args, want) in cases {
            assert_eq!(classify_args(args).unwrap_err(), want, "{args}");
        }
    }
}
