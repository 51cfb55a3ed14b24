//! A typed model of rustc's command line.
//!
//! [`RustcArgs::parse`] reads the arguments cargo hands to the wrapper (after `@argfile`
//! expansion) into typed fields, keeping every argument in order in [`RustcArgs::args`]
//! so the exact command can be run again. Flags the model does not know are kept in
//! [`RustcArgs::unknown`]: the classifier refuses to cache them, because an unknown flag
//! may change the output in a way the key does not see.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// A `--crate-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CrateType {
    Bin,
    Lib,
    Rlib,
    Dylib,
    Cdylib,
    Staticlib,
    ProcMacro,
}

impl CrateType {
    fn parse(s: &str) -> Option<CrateType> {
        Some(match s {
            "bin" => CrateType::Bin,
            "lib" => CrateType::Lib,
            "rlib" => CrateType::Rlib,
            "dylib" => CrateType::Dylib,
            "cdylib" => CrateType::Cdylib,
            "staticlib" => CrateType::Staticlib,
            "proc-macro" => CrateType::ProcMacro,
            _ => return None,
        })
    }

    /// Whether compiling this crate type runs a linker.
    pub fn links(self) -> bool {
        matches!(
            self,
            CrateType::Bin | CrateType::ProcMacro | CrateType::Dylib | CrateType::Cdylib
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            CrateType::Bin => "bin",
            CrateType::Lib => "lib",
            CrateType::Rlib => "rlib",
            CrateType::Dylib => "dylib",
            CrateType::Cdylib => "cdylib",
            CrateType::Staticlib => "staticlib",
            CrateType::ProcMacro => "proc-macro",
        }
    }
}

/// One `--emit` kind, with its explicit output path if one was given (`--emit=link=out.rlib`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emit {
    pub kind: EmitKind,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitKind {
    Link,
    Metadata,
    DepInfo,
    /// asm, llvm-bc, llvm-ir, mir, obj: legal, but not cached.
    Other,
}

/// One `--extern [OPTS:]NAME[=PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extern {
    /// The raw text before `=`, options included (`noprelude:foo`): it changes the output.
    pub spec: String,
    pub path: Option<PathBuf>,
}

/// The kind of a `-L [KIND=]PATH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchKind {
    Dependency,
    Crate,
    Native,
    Framework,
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    pub kind: SearchKind,
    pub path: PathBuf,
}

/// Where rustc reads the crate root from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

/// A `--remap-path-prefix FROM=TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remap {
    pub from: String,
    pub to: String,
}

/// rustc's command line, parsed. Fields hold what the cache and the classifier need to know;
/// `args` holds everything, in order, for running rustc and for the key.
#[derive(Debug, Clone, Default)]
pub struct RustcArgs {
    /// Every argument after `@argfile` expansion, in order.
    pub args: Vec<Arg>,
    pub input: Option<Input>,
    pub crate_name: Option<String>,
    pub crate_types: Vec<CrateType>,
    pub emit: Vec<Emit>,
    pub out_dir: Option<PathBuf>,
    /// `-o FILE`.
    pub output: Option<PathBuf>,
    /// `-C NAME[=VALUE]`, in order.
    pub codegen: Vec<(String, Option<String>)>,
    pub cfgs: Vec<String>,
    pub check_cfgs: Vec<String>,
    pub externs: Vec<Extern>,
    pub search_paths: Vec<SearchPath>,
    /// `-l [KIND[:MODS]=]NAME[:RENAME]`, raw.
    pub link_libs: Vec<String>,
    pub target: Option<String>,
    pub edition: Option<String>,
    pub error_format: Option<String>,
    pub json: Option<String>,
    pub cap_lints: Option<String>,
    pub remaps: Vec<Remap>,
    /// `-Z FLAG`, raw.
    pub unstable: Vec<String>,
    /// `--print` requests.
    pub print: Vec<String>,
    /// `--test`, `-V`, `--version`, `--explain`, `-h`: non-compiling or test-harness modes.
    pub special_modes: Vec<String>,
    /// Flags the model does not know.
    pub unknown: Vec<String>,
}

/// One argument with its role, so the key can leave location-only arguments out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The argument words exactly as rustc receives them (one or two words).
    pub words: Vec<String>,
    pub role: ArgRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRole {
    /// Changes the output: goes into the key as written.
    Output,
    /// Only says where things are (`--out-dir`, `-L dependency=`): not in the key.
    Location,
    /// `--extern NAME=PATH`: the name goes into the key, the path is replaced by the content.
    Extern,
    /// The crate root path (in the key: rustc embeds it).
    Input,
    /// `-C incremental=DIR`: that the compile is incremental changes the output (codegen units
    /// are split differently); where its state lives does not.
    Incremental,
}

/// Why an argument list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("`{flag}` needs a value")]
    MissingValue { flag: String },
    #[error("cannot read argument file {path}: {source}")]
    ArgFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("argument is not valid UTF-8: {0:?}")]
    NotUtf8(OsString),
}

/// Flags that take a value as `--flag VALUE` or `--flag=VALUE`.
const LONG_WITH_VALUE: &[&str] = &[
    "--crate-name",
    "--crate-type",
    "--edition",
    "--emit",
    "--out-dir",
    "--cfg",
    "--check-cfg",
    "--extern",
    "--target",
    "--error-format",
    "--json",
    "--cap-lints",
    "--remap-path-prefix",
    "--print",
    "--color",
    "--sysroot",
    "--diagnostic-width",
    "--explain",
    "--remap-path-scope",
    "--allow",
    "--warn",
    "--deny",
    "--forbid",
    "--force-warn",
    "--env-set",
];

/// Short flags that take a value, joined (`-Copt-level=3`) or separate (`-C opt-level=3`).
const SHORT_WITH_VALUE: &[&str] = &["-C", "-L", "-l", "-o", "-Z", "-A", "-W", "-D", "-F"];

/// Value-less flags that change the output and are safe to key as written.
const KNOWN_SWITCHES: &[&str] = &["-g", "-O", "-v", "--verbose"];

impl RustcArgs {
    /// The dirs rustc looks for crates in (`-L dependency=`, `crate=`, bare `-L`), against
    /// `cwd`: what a `PathMap` maps to the deps placeholder. One rule for the wrapper and a
    /// worker computing the same key.
    pub fn crate_dirs(&self, cwd: &Path) -> Vec<PathBuf> {
        self.search_paths
            .iter()
            .filter(|sp| {
                matches!(
                    sp.kind,
                    SearchKind::Dependency | SearchKind::Crate | SearchKind::All
                )
            })
            .map(|sp| cwd.join(&sp.path))
            .collect()
    }

    /// Parses the arguments after the rustc path. `@file` arguments are expanded first, as
    /// rustc does (one argument per line).
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<RustcArgs, ArgsError> {
        let words = expand_argfiles(args)?;
        let mut inv = RustcArgs::default();
        let mut i = 0;
        while i < words.len() {
            let word = &words[i];
            let (flag, value, used) = split_flag(word, words.get(i + 1))?;
            i += used;
            let raw: Vec<String> = words[i - used..i].to_vec();
            let role = inv.apply(&flag, value.as_deref(), word);
            inv.args.push(Arg { words: raw, role });
        }
        Ok(inv)
    }

    /// Records one flag in the typed fields and returns its role in the key.
    fn apply(&mut self, flag: &str, value: Option<&str>, word: &str) -> ArgRole {
        let v = || value.unwrap_or_default().to_owned();
        match flag {
            "" => {
                if self.input.is_some() {
                    // Two inputs: not a compile jetcc understands (e.g. a workspace wrapper such
                    // as clippy-driver, called as `DRIVER rustc ARGS`).
                    self.unknown.push(word.to_owned());
                    return ArgRole::Output;
                }
                self.input = Some(if word == "-" {
                    Input::Stdin
                } else {
                    Input::File(PathBuf::from(word))
                });
                return ArgRole::Input;
            }
            "--crate-name" => self.crate_name = Some(v()),
            "--crate-type" => {
                for t in v().split(',') {
                    match CrateType::parse(t) {
                        Some(ct) => self.crate_types.push(ct),
                        None => self.unknown.push(format!("--crate-type={t}")),
                    }
                }
            }
            "--edition" => self.edition = Some(v()),
            "--emit" => {
                for e in v().split(',') {
                    let (kind, path) = match e.split_once('=') {
                        Some((k, p)) => (k, Some(PathBuf::from(p))),
                        None => (e, None),
                    };
                    let kind = match kind {
                        "link" => EmitKind::Link,
                        "metadata" => EmitKind::Metadata,
                        "dep-info" => EmitKind::DepInfo,
                        _ => EmitKind::Other,
                    };
                    self.emit.push(Emit { kind, path });
                }
            }
            "--out-dir" => {
                self.out_dir = Some(PathBuf::from(v()));
                return ArgRole::Location;
            }
            "-o" => self.output = Some(PathBuf::from(v())),
            "--cfg" => self.cfgs.push(v()),
            "--check-cfg" => self.check_cfgs.push(v()),
            "--extern" => {
                let val = v();
                let (spec, path) = match val.split_once('=') {
                    Some((s, p)) => (s.to_owned(), Some(PathBuf::from(p))),
                    None => (val, None),
                };
                let has_path = path.is_some();
                self.externs.push(Extern { spec, path });
                return if has_path {
                    ArgRole::Extern
                } else {
                    ArgRole::Output
                };
            }
            "-L" => {
                let val = v();
                let (kind, path) = match val.split_once('=') {
                    Some(("dependency", p)) => (SearchKind::Dependency, p),
                    Some(("crate", p)) => (SearchKind::Crate, p),
                    Some(("native", p)) => (SearchKind::Native, p),
                    Some(("framework", p)) => (SearchKind::Framework, p),
                    Some(("all", p)) => (SearchKind::All, p),
                    _ => (SearchKind::All, val.as_str()),
                };
                self.search_paths.push(SearchPath {
                    kind,
                    path: PathBuf::from(path),
                });
                // Crate search paths only say where rlibs are (their content is keyed through
                // `--extern`); native paths say where bundled libraries are (keyed by content).
                return ArgRole::Location;
            }
            "-l" => self.link_libs.push(v()),
            "-C" | "--codegen" => {
                let val = v();
                match val.split_once('=') {
                    Some((k, x)) => self.codegen.push((k.to_owned(), Some(x.to_owned()))),
                    None => self.codegen.push((val, None)),
                }
                if self.codegen.last().is_some_and(|(k, _)| k == "incremental") {
                    return ArgRole::Incremental;
                }
            }
            "-Z" => self.unstable.push(v()),
            "--target" => self.target = Some(v()),
            "--error-format" => self.error_format = Some(v()),
            "--json" => self.json = Some(v()),
            "--cap-lints" => self.cap_lints = Some(v()),
            "--remap-path-prefix" => {
                let val = v();
                let (from, to) = val.split_once('=').unwrap_or((val.as_str(), ""));
                self.remaps.push(Remap {
                    from: from.to_owned(),
                    to: to.to_owned(),
                });
            }
            "--print" => self.print.push(v()),
            "--test" | "-V" | "--version" | "-h" | "--help" | "--explain" => {
                self.special_modes.push(flag.to_owned())
            }
            "--color" | "--sysroot" | "--diagnostic-width" | "--remap-path-scope" | "-A" | "-W"
            | "-D" | "-F" | "--allow" | "--warn" | "--deny" | "--forbid" | "--force-warn" => {}
            f if KNOWN_SWITCHES.contains(&f) => {}
            _ => self.unknown.push(word.to_owned()),
        }
        ArgRole::Output
    }

    /// The `-C` value for `name`, last one wins as in rustc.
    pub fn codegen_opt(&self, name: &str) -> Option<Option<&str>> {
        self.codegen
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref())
    }

    /// The argument words, in order, as rustc is to receive them.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.args
            .iter()
            .flat_map(|a| a.words.iter().map(String::as_str))
    }
}

/// Splits one argument into (flag, value, words used). The flag is `""` for a positional.
fn split_flag(
    word: &str,
    next: Option<&String>,
) -> Result<(String, Option<String>, usize), ArgsError> {
    let missing = || ArgsError::MissingValue {
        flag: word.to_owned(),
    };
    if word == "-" || !word.starts_with('-') {
        return Ok((String::new(), None, 1));
    }
    if word.starts_with("--") {
        if let Some((f, v)) = word.split_once('=') {
            if LONG_WITH_VALUE.contains(&f) {
                return Ok((f.to_owned(), Some(v.to_owned()), 1));
            }
            return Ok((word.to_owned(), None, 1));
        }
        if LONG_WITH_VALUE.contains(&word) || word == "--codegen" {
            let v = next.ok_or_else(missing)?;
            return Ok((word.to_owned(), Some(v.clone()), 2));
        }
        return Ok((word.to_owned(), None, 1));
    }
    let short = &word[..word.len().min(2)];
    if SHORT_WITH_VALUE.contains(&short) {
        if word.len() > 2 {
            return Ok((short.to_owned(), Some(word[2..].to_owned()), 1));
        }
        let v = next.ok_or_else(missing)?;
        return Ok((short.to_owned(), Some(v.clone()), 2));
    }
    Ok((word.to_owned(), None, 1))
}

/// Expands `@path` arguments (one argument per line), as rustc does; not recursive.
fn expand_argfiles<I: IntoIterator<Item = OsString>>(args: I) -> Result<Vec<String>, ArgsError> {
    let mut out = Vec::new();
    for arg in args {
        let arg = arg.into_string().map_err(ArgsError::NotUtf8)?;
        match arg.strip_prefix('@') {
            Some(path) => {
                let path = PathBuf::from(path);
                let bytes = fs::read(&path).map_err(|source| ArgsError::ArgFile {
                    path: path.clone(),
                    source,
                })?;
                let text = String::from_utf8(bytes)
                    .map_err(|e| ArgsError::NotUtf8(OsString::from_vec(e.into_bytes())))?;
                out.extend(text.lines().map(str::to_owned));
            }
            None => out.push(arg),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[&str]) -> RustcArgs {
        RustcArgs::parse(s.iter().map(OsString::from)).unwrap()
    }

    const CARGO_LIB: &[&str] = &[
        "--crate-name",
        "itoa",
        "--edition=2018",
        "/reg/itoa/src/lib.rs",
        "--error-format=json",
        "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
        "--crate-type",
        "lib",
        "--emit=dep-info,metadata,link",
        "-C",
        "embed-bitcode=no",
        "-C",
        "debuginfo=2",
        "--cfg",
        "feature=\"std\"",
        "--check-cfg",
        "cfg(docsrs,test)",
        "-C",
        "metadata=abc",
        "-C",
        "extra-filename=-abc",
        "--out-dir",
        "/t/debug/deps",
        "-L",
        "dependency=/t/debug/deps",
        "--extern",
        "memchr=/t/debug/deps/libmemchr-1.rmeta",
        "--cap-lints",
        "allow",
    ];

    #[test]
    fn parses_a_cargo_library_unit() {
        let inv = parse(CARGO_LIB);
        assert_eq!(inv.crate_name.as_deref(), Some("itoa"));
        assert_eq!(inv.crate_types, vec![CrateType::Lib]);
        assert_eq!(inv.edition.as_deref(), Some("2018"));
        assert_eq!(inv.input, Some(Input::File("/reg/itoa/src/lib.rs".into())));
        assert_eq!(inv.emit.len(), 3);
        assert_eq!(inv.out_dir, Some(PathBuf::from("/t/debug/deps")));
        assert_eq!(inv.codegen_opt("extra-filename"), Some(Some("-abc")));
        assert_eq!(inv.cfgs, vec!["feature=\"std\""]);
        assert_eq!(inv.externs[0].spec, "memchr");
        assert_eq!(inv.search_paths[0].kind, SearchKind::Dependency);
        assert_eq!(inv.cap_lints.as_deref(), Some("allow"));
        assert!(inv.unknown.is_empty(), "{:?}", inv.unknown);
        assert_eq!(inv.words().collect::<Vec<_>>(), CARGO_LIB);
    }

    #[test]
    fn location_args_are_marked() {
        let inv = parse(CARGO_LIB);
        let roles: Vec<_> = inv
            .args
            .iter()
            .filter(|a| a.role != ArgRole::Output)
            .map(|a| (a.words[0].as_str(), a.role))
            .collect();
        assert_eq!(
            roles,
            vec![
                ("/reg/itoa/src/lib.rs", ArgRole::Input),
                ("--out-dir", ArgRole::Location),
                ("-L", ArgRole::Location),
                ("--extern", ArgRole::Extern),
            ]
        );
    }

    #[test]
    fn joined_short_flags_and_stdin() {
        let inv = parse(&[
            "-",
            "-Copt-level=3",
            "-Ldependency=/x",
            "--print=cfg",
            "--crate-type=bin,rlib",
        ]);
        assert_eq!(inv.input, Some(Input::Stdin));
        assert_eq!(inv.codegen_opt("opt-level"), Some(Some("3")));
        assert_eq!(inv.print, vec!["cfg"]);
        assert_eq!(inv.crate_types, vec![CrateType::Bin, CrateType::Rlib]);
    }

    #[test]
    fn a_second_input_is_not_understood() {
        let inv = parse(&["/usr/bin/rustc", "--crate-name", "x", "src/lib.rs"]);
        assert_eq!(inv.unknown, vec!["src/lib.rs"]);
    }

    #[test]
    fn unknown_flags_are_kept() {
        let inv = parse(&["src/lib.rs", "--frobnicate", "--crate-type", "weird"]);
        assert_eq!(inv.unknown, vec!["--frobnicate", "--crate-type=weird"]);
    }

    #[test]
    fn missing_value_is_an_error() {
        let err = RustcArgs::parse(["--crate-name".into()]).unwrap_err();
        assert!(err.to_string().contains("--crate-name"));
    }

    #[test]
    fn argfiles_are_expanded() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("args");
        fs::write(&f, "--crate-name\nfoo\n--cfg\nx\n").unwrap();
        let inv = parse(&[&format!("@{}", f.display()), "lib.rs"]);
        assert_eq!(inv.crate_name.as_deref(), Some("foo"));
        assert_eq!(inv.cfgs, vec!["x"]);
    }
}
