//! gcc and clang command lines, typed: which compiles jetcc caches and what keys them.
//!
//! [`CcArgs::parse`] reads a C/C++/assembler compiler's arguments (as cc-rs, cmake, make and
//! autotools write them) and either returns a cacheable compile — exactly one source, `-c`,
//! one object file, optionally a make dep file (`-MD -MF`) — or says why not
//! ([`CcPassThrough`]): links, preprocessing, probes (`--version`, `-E` on a test file),
//! several sources, stdin, `@argfile`s, profiling and other flags that write or read files
//! jetcc cannot see, and any flag it does not know.
//!
//! Design choice: every argument is recognized or the compile is not cached. A flag jetcc
//! does not know might take a separate value that looks like a source file, or write a
//! second output; guessing could store a wrong object, and passing it through only costs
//! the compile it would have cost anyway.

use crate::stats::{ErrorKind, StatKind};

/// The language of the one source, from `-x` or its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Cxx,
    /// `.s`: not preprocessed, so no dep file lists what it reads.
    Asm,
    /// `.S`, `.sx`: preprocessed assembler.
    AsmCpp,
}

impl Lang {
    /// Whether the preprocessor runs (and `-MD` lists what it read).
    pub fn preprocessed(self) -> bool {
        !matches!(self, Lang::Asm)
    }

    pub fn is_asm(self) -> bool {
        matches!(self, Lang::Asm | Lang::AsmCpp)
    }

    fn of_extension(path: &str) -> Option<Lang> {
        let ext = path.rsplit_once('.')?.1;
        if ext.contains('/') {
            return None;
        }
        match ext {
            "c" => Some(Lang::C),
            "cc" | "cpp" | "cxx" | "c++" | "cp" | "C" | "CPP" => Some(Lang::Cxx),
            "s" => Some(Lang::Asm),
            "S" | "sx" => Some(Lang::AsmCpp),
            _ => None,
        }
    }

    fn of_x(name: &str) -> Result<Option<Lang>, CcPassThrough> {
        match name {
            "none" => Ok(None),
            "c" => Ok(Some(Lang::C)),
            "c++" => Ok(Some(Lang::Cxx)),
            "assembler" => Ok(Some(Lang::Asm)),
            "assembler-with-cpp" => Ok(Some(Lang::AsmCpp)),
            _ => Err(CcPassThrough::Language),
        }
    }
}

/// Why a compiler invocation is run as it is, uncached (`Stats::c_compiles.pass_through`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcPassThrough {
    /// No arguments at all.
    NoArgs,
    /// `--version`, `-v`, `-dumpversion`, `-print-*`, `-###`, `--help`: a probe.
    Info,
    /// No `-c`: a link (or a compile and link in one).
    Link,
    /// `-E`, or `-M`/`-MM` without `-MD`: preprocessing only.
    Preprocess,
    /// `-S`: assembly output.
    AssemblyOutput,
    /// No source file.
    NoSource,
    /// More than one source file.
    MultipleSources,
    /// The source is stdin (`-`).
    Stdin,
    /// An `@argfile` (not expanded).
    ArgFile,
    /// `--coverage`, `-fprofile-*`, `-ftest-coverage`, `-fauto-profile`: write or read
    /// profile files beside the object.
    Profiling,
    /// `-save-temps`, `-fdump-*`, `-fstack-usage`, `-fcallgraph-info`, `-aux-info`: files
    /// other than the object.
    ExtraOutputs,
    /// `-gsplit-dwarf`: a `.dwo` beside the object.
    SplitDwarf,
    /// `-o -`: the object to stdout.
    OutputToStdout,
    /// A flag jetcc does not know (it might take a value, or write or read a file).
    UnknownFlag,
    /// An input that is no C, C++ or assembler source (an object, a library, a header).
    UnknownInput,
    /// A language other than C, C++ and assembler (`-x objective-c`, `-x c-header`, …).
    Language,
    /// `-MF` without `-MD`/`-MMD`, or `-Wp,-M…` / `-Xpreprocessor -M…`.
    DepFileWithoutMd,
    /// `-MMD`: its dep file omits system headers, so it cannot key the compile.
    Mmd,
    /// `-MG`: missing headers treated as generated.
    MissingHeadersGenerated,
    /// `-fplugin`, `-specs`, `-B`, sanitizer lists: programs or files the compile reads that
    /// no dep file lists.
    UnlistedInputs,
    /// `DEPENDENCIES_OUTPUT` or `SUNPRO_DEPENDENCIES` is set: a dep file jetcc does not see.
    DepEnv,
    /// The compiler's arguments are not UTF-8.
    NotUtf8,
    /// A jetcc-side error before the compile (config, cache dir, key), by kind.
    Error(ErrorKind),
}

impl StatKind for CcPassThrough {
    fn name(&self) -> &'static str {
        match self {
            CcPassThrough::NoArgs => "no-args",
            CcPassThrough::Info => "info",
            CcPassThrough::Link => "link",
            CcPassThrough::Preprocess => "preprocess",
            CcPassThrough::AssemblyOutput => "assembly-output",
            CcPassThrough::NoSource => "no-source",
            CcPassThrough::MultipleSources => "multiple-sources",
            CcPassThrough::Stdin => "stdin",
            CcPassThrough::ArgFile => "argfile",
            CcPassThrough::Profiling => "profiling",
            CcPassThrough::ExtraOutputs => "extra-outputs",
            CcPassThrough::SplitDwarf => "split-dwarf",
            CcPassThrough::OutputToStdout => "output-to-stdout",
            CcPassThrough::UnknownFlag => "unknown-flag",
            CcPassThrough::UnknownInput => "unknown-input",
            CcPassThrough::Language => "language",
            CcPassThrough::DepFileWithoutMd => "dep-file-without-md",
            CcPassThrough::Mmd => "mmd",
            CcPassThrough::MissingHeadersGenerated => "mg",
            CcPassThrough::UnlistedInputs => "unlisted-inputs",
            CcPassThrough::DepEnv => "dep-env",
            CcPassThrough::NotUtf8 => "not-utf8",
            CcPassThrough::Error(kind) => kind.name(),
        }
    }
}

/// A cacheable compile: one source to one object, and maybe a dep file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcArgs {
    /// The arguments as given.
    pub args: Vec<String>,
    /// The arguments minus output locations (`-o PATH`, `-MF PATH`): what keys the compile
    /// (with the object's file name, which is kept apart).
    pub key_args: Vec<String>,
    /// The source, as given (relative to the cwd, or absolute).
    pub source: String,
    pub lang: Lang,
    /// The object file: `-o`'s value, or `<stem>.o` in the cwd.
    pub output: String,
    /// The dep file (`-MD -MF PATH`, or `-MD` alone: the object's path with `.d`), if asked
    /// for.
    pub dep_file: Option<String>,
    /// `-MT`/`-MQ` given: the dep file's targets are in the key, not the object's path.
    pub dep_targets_given: bool,
}

/// Flags whose value is the next argument (or joined), kept in the key.
const WITH_VALUE: &[&str] = &[
    "-I",
    "-D",
    "-U",
    "-include",
    "-imacros",
    "-isystem",
    "-idirafter",
    "-iprefix",
    "-iwithprefix",
    "-iwithprefixbefore",
    "-iquote",
    "-isysroot",
    "-imultilib",
    "-MT",
    "-MQ",
    "-x",
    "-Xassembler",
    "-Xpreprocessor",
    "--param",
    "-target",
    "--target",
    "-arch",
    "--sysroot",
    "-L",
    "-l",
    "-T",
    "-u",
    "-z",
    "-Xlinker",
    "-A",
    "-mllvm",
    "-gcc-toolchain",
];

/// Flags with the value only in the same argument (`-std=c11`) or none, by prefix; each is
/// cacheable unless [`refused`] says otherwise.
const KNOWN_PREFIXES: &[&str] = &[
    "-W",
    "-f",
    "-m",
    "-O",
    "-g",
    "-std=",
    "--std=",
    "-D",
    "-U",
    "-I",
    "-L",
    "-l",
    "--param=",
    "--sysroot=",
    "--target=",
    "-pedantic",
    "-Q",
];

/// Flags without a value.
const KNOWN_EXACT: &[&str] = &[
    "-c",
    "-w",
    "-ansi",
    "-pipe",
    "-pthread",
    "-pthreads",
    "-nostdinc",
    "-nostdinc++",
    "-nostdlib",
    "-nostdlib++",
    "-nostartfiles",
    "-nodefaultlibs",
    "-shared",
    "-static",
    "-static-libgcc",
    "-static-libstdc++",
    "-rdynamic",
    "-pie",
    "-no-pie",
    "-P",
    "-C",
    "-CC",
    "-trigraphs",
    "-undef",
    "-H",
    "-p",
    "-pg",
    "-MD",
    "-MMD",
    "-MP",
    "-MG",
    "-M",
    "-MM",
    "-E",
    "-S",
    "-s",
    "-integrated-as",
    "-no-integrated-as",
    "-traditional-cpp",
];

fn is_info(a: &str) -> bool {
    matches!(
        a,
        "-v" | "--version"
            | "-###"
            | "--help"
            | "--target-help"
            | "-dumpversion"
            | "-dumpfullversion"
            | "-dumpmachine"
            | "-dumpspecs"
    ) || a.starts_with("-print-")
        || a.starts_with("--print-")
        || a.starts_with("--help=")
}

/// Why a known-shaped flag still cannot be cached, if it cannot.
fn refused(a: &str) -> Option<CcPassThrough> {
    use CcPassThrough::*;
    let profiling = a == "--coverage"
        || a == "-ftest-coverage"
        || a == "-fprofile-arcs"
        || a.starts_with("-fprofile-")
        || a.starts_with("-fauto-profile")
        || a.starts_with("-fcreate-profile");
    if profiling {
        return Some(Profiling);
    }
    let extra = a.starts_with("-save-temps")
        || a.starts_with("-fdump-")
        || a == "-fstack-usage"
        || a.starts_with("-fcallgraph-info")
        || a == "-aux-info"
        || a.starts_with("-MJ")
        || a == "-ftime-trace"
        || a.starts_with("-ftime-trace=");
    if extra {
        return Some(ExtraOutputs);
    }
    if a == "-gsplit-dwarf" || a.starts_with("-gsplit-dwarf=") {
        return Some(SplitDwarf);
    }
    let unlisted = a.starts_with("-fplugin")
        || a.starts_with("-specs")
        || a.starts_with("--specs")
        || a.starts_with("-B")
        || a.starts_with("-fsanitize-blacklist")
        || a.starts_with("-fsanitize-ignorelist")
        || a.starts_with("-fprofile-list")
        || a.starts_with("-fxray-attr-list")
        || a.starts_with("-fmodules")
        || a.starts_with("-fmodule-");
    if unlisted {
        return Some(UnlistedInputs);
    }
    // A dep file requested through the preprocessor's own options: not seen by jetcc.
    let wp = a.strip_prefix("-Wp,").unwrap_or("");
    if wp.split(',').any(|o| o.starts_with("-M")) {
        return Some(DepFileWithoutMd);
    }
    None
}

impl CcArgs {
    /// Parses a compiler's arguments (without argv\[0\]).
    pub fn parse(args: &[String]) -> Result<CcArgs, CcPassThrough> {
        use CcPassThrough::*;
        if args.is_empty() {
            return Err(NoArgs);
        }
        if args.iter().any(|a| is_info(a)) {
            return Err(Info);
        }
        let mut key_args = Vec::with_capacity(args.len());
        let mut sources: Vec<(String, Lang)> = Vec::new();
        let mut x_lang: Option<Lang> = None;
        let mut output: Option<String> = None;
        let mut dep_file: Option<String> = None;
        let (mut compile, mut md, mut mmd, mut m_only, mut preprocess, mut asm_out) =
            (false, false, false, false, false, false);
        let (mut mg, mut targets_given, mut unknown_input) = (false, false, false);
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            i += 1;
            if a.starts_with('@') {
                return Err(ArgFile);
            }
            if a == "-" {
                return Err(Stdin);
            }
            if !a.starts_with('-') {
                match x_lang.or_else(|| Lang::of_extension(a)) {
                    Some(lang) => sources.push((a.to_owned(), lang)),
                    None => unknown_input = true,
                }
                key_args.push(a.to_owned());
                continue;
            }
            if let Some(why) = refused(a) {
                return Err(why);
            }
            // Output locations: not in the key.
            if a == "-o" || a == "-MF" {
                let Some(v) = args.get(i) else {
                    return Err(UnknownFlag);
                };
                i += 1;
                if a == "-o" {
                    output = Some(v.clone());
                } else {
                    dep_file = Some(v.clone());
                }
                continue;
            }
            if let Some(v) = a.strip_prefix("-MF") {
                dep_file = Some(v.to_owned());
                continue;
            }
            if let Some(v) = a.strip_prefix("-o") {
                output = Some(v.to_owned());
                continue;
            }
            match a {
                "-c" => compile = true,
                "-MD" => md = true,
                "-MMD" => mmd = true,
                "-M" | "-MM" => m_only = true,
                "-E" => preprocess = true,
                "-S" => asm_out = true,
                "-MG" => mg = true,
                _ => {}
            }
            if let Some(flag) = WITH_VALUE.iter().find(|f| a == **f) {
                let Some(v) = args.get(i) else {
                    return Err(UnknownFlag);
                };
                i += 1;
                match *flag {
                    "-x" => x_lang = Lang::of_x(v)?,
                    "-MT" | "-MQ" => targets_given = true,
                    "-Xpreprocessor" if v.starts_with("-M") => return Err(DepFileWithoutMd),
                    _ => {}
                }
                key_args.push(a.to_owned());
                key_args.push(v.clone());
                continue;
            }
            if let Some(v) = a.strip_prefix("-x") {
                x_lang = Lang::of_x(v)?;
            } else if a.starts_with("-MT") || a.starts_with("-MQ") {
                targets_given = true;
            } else {
                let joined = WITH_VALUE
                    .iter()
                    .any(|f| f.len() == 2 && a.starts_with(f) && a.len() > 2);
                let known = joined
                    || KNOWN_EXACT.contains(&a)
                    || KNOWN_PREFIXES.iter().any(|p| a.starts_with(p))
                    || ["-isystem", "-iquote", "-idirafter", "-include", "-imacros"]
                        .iter()
                        .any(|p| a.starts_with(p));
                if !known {
                    return Err(UnknownFlag);
                }
            }
            key_args.push(a.to_owned());
        }
        if preprocess || (m_only && !md && !mmd) {
            return Err(Preprocess);
        }
        if asm_out {
            return Err(AssemblyOutput);
        }
        if !compile {
            return Err(Link);
        }
        if unknown_input {
            return Err(UnknownInput);
        }
        let (source, lang) = match sources.as_slice() {
            [] => return Err(NoSource),
            [one] => one.clone(),
            _ => return Err(MultipleSources),
        };
        if mg {
            return Err(MissingHeadersGenerated);
        }
        if mmd {
            return Err(Mmd);
        }
        if dep_file.is_some() && !md {
            return Err(DepFileWithoutMd);
        }
        let output = match output {
            Some(o) if o == "-" => return Err(OutputToStdout),
            Some(o) if o.is_empty() => return Err(UnknownFlag),
            Some(o) => o,
            None => default_object(&source),
        };
        // `-MD` alone: the compiler names the dep file after the object (gcc's and clang's
        // documented rule), so its location follows `-o` and is not keyed either.
        if md && dep_file.is_none() {
            dep_file = Some(with_extension_d(&output));
        }
        Ok(CcArgs {
            args: args.to_vec(),
            key_args,
            source,
            lang,
            output,
            dep_file,
            dep_targets_given: targets_given,
        })
    }

    /// The arguments of a pre-pass that only lists what the compile reads: [`key_args`]
    /// without the dep-file options (`-MD`, `-MP`, `-MT`/`-MQ` and their values), to which
    /// the caller adds its own `-M -MF`. (`-M` implies `-E`: nothing is compiled.)
    ///
    /// [`key_args`]: CcArgs::key_args
    pub fn prepass_args(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.key_args.len());
        let mut words = self.key_args.iter();
        while let Some(a) = words.next() {
            match a.as_str() {
                "-MD" | "-MP" => {}
                "-MT" | "-MQ" => {
                    words.next();
                }
                _ if a.starts_with("-MT") || a.starts_with("-MQ") => {}
                _ => out.push(a.clone()),
            }
        }
        out
    }

    /// The object's file name (its directory is not in the key).
    pub fn output_name(&self) -> &str {
        self.output.rsplit('/').next().unwrap_or(&self.output)
    }
}

/// gcc's default object for `-c SRC`: `<stem>.o` in the cwd.
fn default_object(source: &str) -> String {
    let base = source.rsplit('/').next().unwrap_or(source);
    let stem = base.rsplit_once('.').map_or(base, |(s, _)| s);
    format!("{stem}.o")
}

/// `-MD`'s dep file when no `-MF` names it: the object's path with its file name's last
/// extension replaced by `.d` (`obj/a.c.o` → `obj/a.c.d`, `obj/a` → `obj/a.d`).
fn with_extension_d(object: &str) -> String {
    let (dir, name) = match object.rsplit_once('/') {
        Some((d, n)) => (format!("{d}/"), n),
        None => (String::new(), object),
    };
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    };
    format!("{dir}{stem}.d")
}

#[cfg(test)]
mod tests {
    use super::*;
    use CcPassThrough::*;

    fn parse(line: &str) -> Result<CcArgs, CcPassThrough> {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        CcArgs::parse(&args)
    }

    #[test]
    fn cc_rs_compiles_are_cacheable() {
        let a = parse(
            "-O0 -ffunction-sections -fdata-sections -fPIC -g -gdwarf-4 -fno-omit-frame-pointer \
             -m64 -I csrc -Wall -Wextra -o /t/out/4f2e-add.o -c csrc/add.c",
        )
        .unwrap();
        assert_eq!(a.source, "csrc/add.c");
        assert_eq!(a.lang, Lang::C);
        assert_eq!(a.output, "/t/out/4f2e-add.o");
        assert_eq!(a.output_name(), "4f2e-add.o");
        assert_eq!(a.dep_file, None);
        assert!(!a.key_args.iter().any(|k| k.contains("/t/out")));
        assert!(a.key_args.contains(&"csrc".to_owned()));
    }

    #[test]
    fn cmake_compiles_with_dep_files_are_cacheable() {
        let a = parse(
            "-DFOO=1 -I/src/include -O3 -DNDEBUG -fPIC -MD -MT CMakeFiles/mul.dir/csrc/mul.c.o \
             -MF CMakeFiles/mul.dir/csrc/mul.c.o.d -o CMakeFiles/mul.dir/csrc/mul.c.o -c /src/csrc/mul.c",
        )
        .unwrap();
        assert_eq!(
            a.dep_file.as_deref(),
            Some("CMakeFiles/mul.dir/csrc/mul.c.o.d")
        );
        assert!(a.dep_targets_given);
        assert_eq!(a.output_name(), "mul.c.o");
        // -MT's value goes into the dep file: keyed. -MF's and -o's are locations: not.
        assert!(a
            .key_args
            .contains(&"CMakeFiles/mul.dir/csrc/mul.c.o".to_owned()));
        assert!(!a.key_args.contains(&"-MF".to_owned()));
        assert!(!a.key_args.contains(&"-o".to_owned()));
        // The farm's pre-pass asks for its own dep file: no trace of the user's.
        assert_eq!(
            a.prepass_args().join(" "),
            "-DFOO=1 -I/src/include -O3 -DNDEBUG -fPIC -c /src/csrc/mul.c"
        );
    }

    #[test]
    fn autoconf_compiles_default_their_object_and_languages_come_from_x_or_extension() {
        let a = parse("-c -g -O2 conftest.c").unwrap();
        assert_eq!(a.output, "conftest.o");
        assert_eq!(parse("-c x/y.cpp").unwrap().lang, Lang::Cxx);
        assert_eq!(parse("-c y.C").unwrap().lang, Lang::Cxx);
        assert_eq!(parse("-c y.s").unwrap().lang, Lang::Asm);
        assert_eq!(parse("-c y.S -o y.o").unwrap().lang, Lang::AsmCpp);
        assert_eq!(parse("-x c++ -c y.inc").unwrap().lang, Lang::Cxx);
        assert_eq!(parse("-xc -c y.inc").unwrap().lang, Lang::C);
        assert_eq!(parse("-ofoo.o -c y.c").unwrap().output, "foo.o");
        assert!(parse("-c y.c -MD -MFy.d").unwrap().dep_file.is_some());
        // -MD alone: named after the object, as gcc and clang name it.
        let dep = |line: &str| parse(line).unwrap().dep_file.unwrap();
        assert_eq!(dep("-MD -c src/a.c"), "a.d");
        assert_eq!(dep("-MD -c a.c -o sub/x.o"), "sub/x.d");
        assert_eq!(dep("-MD -c a.c -o sub/y.c.o"), "sub/y.c.d");
        assert_eq!(dep("-MD -c a.c -o sub.d/noext"), "sub.d/noext.d");
        assert!(parse("-c y.c -isystem/usr/x -std=c11 --param=ssp-buffer-size=4").is_ok());
    }

    #[test]
    fn each_uncacheable_shape_says_why() {
        let cases: &[(&str, CcPassThrough)] = &[
            ("", NoArgs),
            ("--version", Info),
            ("-v", Info),
            ("-dumpversion", Info),
            ("-print-search-dirs", Info),
            ("-E /t/detect_compiler_family.c", Preprocess),
            ("-M -c a.c", Preprocess),
            ("-MM a.c", Preprocess),
            ("-S a.c -o a.s", AssemblyOutput),
            ("a.c -o a", Link),
            ("a.o b.o -o app", Link),
            ("-c a.c b.c", MultipleSources),
            ("-c -x c -", Stdin),
            ("-c @args.rsp", ArgFile),
            ("-c a.c --coverage", Profiling),
            ("-c a.c -fprofile-generate", Profiling),
            ("-c a.c -fprofile-use=x.profdata", Profiling),
            ("-c a.c -save-temps", ExtraOutputs),
            ("-c a.c -fdump-tree-all", ExtraOutputs),
            ("-c a.c -gsplit-dwarf", SplitDwarf),
            ("-c a.c -o -", OutputToStdout),
            ("-c a.c --frobnicate x.c", UnknownFlag),
            ("-c a.c -Xclang -foo", UnknownFlag),
            ("-c a.c -o", UnknownFlag),
            ("-c a.o", UnknownInput),
            ("-c a.h", UnknownInput),
            ("-c -x objective-c a.m", Language),
            ("-c -x c-header a.h", Language),
            ("-c a.c -MF a.d", DepFileWithoutMd),
            ("-c a.c -Wp,-MD,a.d", DepFileWithoutMd),
            ("-c a.c -Xpreprocessor -MD", DepFileWithoutMd),
            ("-c a.c -MMD -MF a.d", Mmd),
            ("-c a.c -MD -MG -MF a.d", MissingHeadersGenerated),
            ("-c a.c -fplugin=x.so", UnlistedInputs),
            ("-c a.c -specs=x.specs", UnlistedInputs),
            ("-c a.c -B/opt/bin", UnlistedInputs),
            ("-c", NoSource),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line).err(), Some(*want), "{line}");
        }
    }
}
