//! The cache key, in two steps (ccache's direct mode):
//!
//! 1. The **invocation digest**, computable before compiling: compiler identity, the
//!    normalized arguments, `--extern` and bundled native library contents, the env vars rustc
//!    and the crate can read, and the cwd. It names a manifest.
//! 2. The **result key**: the invocation digest plus each source file (path and content) and
//!    each `env!` dependency that dep-info listed. It names a cache entry.
//!
//! Paths that only say where things live (`--out-dir`, `-L`, `--extern` paths) stay out;
//! paths rustc writes into outputs (the cwd, source paths) stay in, mapped by `base_dirs`.
//!
//! File contents come through a [`DigestSource`]: the wrapper's is the disk
//! ([`FileDigests`], memoized by stat), a worker's the digests of the inputs a farm job laid
//! out (verified against the CAS as they were fetched). One recipe, two sources of digests,
//! so a worker computes the very key a client would.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::args::{ArgRole, RustcArgs, SearchKind};
use crate::digest::{Digest, KeyHasher};
use crate::files::FileDigests;
use crate::manifest::Source;
use crate::pathmap::PathMap;
use crate::result::FORMAT_VERSION;

/// `CARGO_*` variables that say where things are or how cargo runs, not what is built.
const UNKEYED_CARGO_VARS: &[&str] = &[
    "CARGO",
    "CARGO_HOME",
    "CARGO_MAKEFLAGS",
    "CARGO_INCREMENTAL",
    "CARGO_LOG",
];

/// Prefixes of cargo's own configuration variables (`CARGO_PROFILE_DEV_OPT_LEVEL`,
/// `CARGO_TERM_COLOR`, …). What they change reaches rustc as arguments, which are keyed; keying
/// the variables too would only stop a CI machine and a laptop from sharing entries.
const UNKEYED_CARGO_PREFIXES: &[&str] = &[
    "CARGO_ALIAS_",
    "CARGO_BUILD_",
    "CARGO_CACHE_",
    "CARGO_CARGO_NEW_",
    "CARGO_FUTURE_INCOMPAT_",
    "CARGO_HTTP_",
    "CARGO_NET_",
    "CARGO_PROFILE_",
    "CARGO_REGISTRIES_",
    "CARGO_REGISTRY_",
    "CARGO_TERM_",
    "CARGO_UNSTABLE_",
];

/// Non-`CARGO_` variables that rustc itself reads and that can change its output.
const RUSTC_VARS: &[&str] = &[
    "RUSTC_BOOTSTRAP",
    "RUSTC_FORCE_RUSTC_VERSION",
    "RUSTC_OVERRIDE_VERSION_STRING",
    "SOURCE_DATE_EPOCH",
];

/// Whether an env var goes into the invocation digest: the `CARGO_*` variables cargo sets for
/// a compile (which proc-macros may read without rustc tracking it), and those rustc reads.
/// Variables read with `env!`/`option_env!` are keyed through dep-info instead. Credentials
/// (`environ::looks_secret`: `CARGO_REGISTRY_TOKEN`, a `CARGO_…_PASSWORD`) never are: their
/// values would sit in `--explain`'s records, and a farm job, whose key covers its env, never
/// carries them.
pub fn is_keyed_env(name: &str) -> bool {
    if RUSTC_VARS.contains(&name) {
        return true;
    }
    if name.starts_with("CARGO_TARGET_") {
        // `CARGO_TARGET_TMPDIR` is set for integration tests; the rest configure targets.
        return name == "CARGO_TARGET_TMPDIR";
    }
    name.starts_with("CARGO_")
        && !UNKEYED_CARGO_VARS.contains(&name)
        && !UNKEYED_CARGO_PREFIXES.iter().any(|p| name.starts_with(p))
        && !crate::environ::looks_secret(name)
}

/// Everything the invocation digest is made of, gathered by the caller.
pub struct InvocationInputs<'a> {
    pub toolchain: &'a Digest,
    pub inv: &'a RustcArgs,
    pub cwd: &'a Path,
    /// The process env (filtered here).
    pub env: &'a [(String, String)],
    pub map: &'a PathMap,
    /// The linker's identity, for invocations that link.
    pub linker: Option<&'a Digest>,
}

/// Where the invocation digest's file contents come from.
pub trait DigestSource {
    /// The content digest of `path` (relative to the invocation's cwd, or absolute);
    /// `None` if there is no such file.
    fn digest(&mut self, path: &str) -> Option<Digest>;
    /// The static and shared libraries (`*.a`, `*.so`) in native search dir `dir`
    /// (absolute), by file name, sorted, with their digests; empty if the dir is missing.
    fn native_libs(&mut self, dir: &Path) -> io::Result<Vec<(String, Digest)>>;
}

/// Whether a native search dir's file is a library rustc may bundle or link: keyed by content.
pub fn is_native_lib(path: &Path) -> bool {
    path.extension().is_some_and(|x| x == "a" || x == "so")
}

impl DigestSource for FileDigests {
    fn digest(&mut self, path: &str) -> Option<Digest> {
        FileDigests::digest(self, path)
    }

    fn native_libs(&mut self, dir: &Path) -> io::Result<Vec<(String, Digest)>> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut libs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_native_lib(p))
            .collect();
        libs.sort();
        libs.into_iter()
            .map(|lib| {
                let name = lib.file_name().unwrap_or_default().to_string_lossy();
                Ok((name.into_owned(), Digest::of_file(&lib)?))
            })
            .collect()
    }
}

/// Why the invocation digest could not be computed (the invocation then runs plainly).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read --extern {path}")]
    Extern { path: PathBuf },
    #[error("cannot read native library dir {path}: {source}")]
    NativeDir { path: PathBuf, source: io::Error },
}

/// What the invocation digest is made of, as (part, value) pairs in a fixed order. Values
/// are text, or `blake3:…` digests for file contents. Kept as a list so that `--explain` can
/// say which part changed between two compiles of a unit.
pub fn invocation_parts(
    i: &InvocationInputs<'_>,
    files: &mut dyn DigestSource,
) -> Result<Vec<(String, String)>, KeyError> {
    let mut parts = vec![
        ("format".to_owned(), FORMAT_VERSION.to_string()),
        ("toolchain".to_owned(), i.toolchain.to_string()),
        ("cwd".to_owned(), i.map.key_path(&i.cwd.to_string_lossy())),
    ];
    if let Some(linker) = i.linker {
        parts.push(("linker".to_owned(), linker.to_string()));
    }
    // Portable outputs carry other paths than exact ones: never the same entry.
    if i.map.is_portable() {
        parts.push(("paths".to_owned(), "portable".to_owned()));
    }
    for arg in &i.inv.args {
        match arg.role {
            ArgRole::Location | ArgRole::Extern => {}
            ArgRole::Output => parts.push(("arg".to_owned(), arg.words.join(" "))),
            ArgRole::Input => parts.push(("input".to_owned(), i.map.key_path(&arg.words[0]))),
            ArgRole::Incremental => parts.push(("arg".to_owned(), "-C incremental".to_owned())),
        }
    }
    // Externs by name and content; order as given (it can matter for name resolution).
    for ext in &i.inv.externs {
        let content = match &ext.path {
            Some(path) => files
                .digest(&path.to_string_lossy())
                .ok_or_else(|| KeyError::Extern { path: path.clone() })?
                .to_string(),
            None => String::new(),
        };
        parts.push((format!("extern {}", ext.spec), content));
    }
    native_libs(&mut parts, i, files)?;
    let mut env: Vec<_> = i.env.iter().filter(|(k, _)| is_keyed_env(k)).collect();
    env.sort();
    for (k, v) in env {
        parts.push((format!("env {k}"), i.map.key_path(v)));
    }
    Ok(parts)
}

/// The invocation digest: a hash of [`invocation_parts`].
pub fn invocation_digest(parts: &[(String, String)]) -> Digest {
    let mut h = KeyHasher::new("jetcc-invocation");
    for (part, value) in parts {
        h.str(part).str(value);
    }
    h.finish()
}

/// Static libraries that rustc may bundle into an rlib or staticlib, and the libraries a link
/// resolves `-l` against, are found in native search dirs (`-l static=` and
/// `#[link(kind = "static")]` alike), so every `*.a` and `*.so` there is keyed by content.
fn native_libs(
    parts: &mut Vec<(String, String)>,
    i: &InvocationInputs<'_>,
    files: &mut dyn DigestSource,
) -> Result<(), KeyError> {
    for sp in &i.inv.search_paths {
        if !matches!(sp.kind, SearchKind::Native | SearchKind::All) {
            continue;
        }
        let dir = i.cwd.join(&sp.path);
        let libs = files
            .native_libs(&dir)
            .map_err(|source| KeyError::NativeDir {
                path: dir.clone(),
                source,
            })?;
        for (name, d) in libs {
            parts.push((format!("native {name}"), d.to_string()));
        }
    }
    Ok(())
}

/// The result key: invocation digest + what dep-info says was read. Paths and values are in
/// key form already ([`PathMap::key_path`]), as manifests store them.
pub fn result_key(
    invocation: &Digest,
    sources: &[Source],
    env_deps: &[(String, Option<String>)],
    local_roots: &[String],
) -> Digest {
    let mut h = KeyHasher::new("jetcc-result");
    h.digest(invocation);
    for s in sources {
        h.str("src").str(&s.path).digest(&s.digest);
    }
    for (name, value) in env_deps {
        h.str("env-dep").str(name);
        match value {
            Some(v) => h.str("=").str(v),
            None => h.str("unset"),
        };
    }
    for root in local_roots {
        h.str("local-root").str(root);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn digest_of(args: &str, cwd: &str, env: &[(&str, &str)]) -> Digest {
        let inv = RustcArgs::parse(args.split_whitespace().map(OsString::from)).unwrap();
        let env: Vec<_> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let tc = Digest::of_bytes(b"rustc 1.95");
        let map = PathMap::new(Path::new("/t"), &[], &[], Path::new(cwd), None);
        invocation_digest(
            &invocation_parts(
                &InvocationInputs {
                    toolchain: &tc,
                    inv: &inv,
                    cwd: Path::new(cwd),
                    env: &env,
                    map: &map,
                    linker: None,
                },
                &mut FileDigests::new(Path::new(cwd), None),
            )
            .unwrap(),
        )
    }

    const ARGS: &str = "--crate-name a src/lib.rs --crate-type lib --emit=dep-info,link --out-dir /t/deps -L dependency=/t/deps -C opt-level=0";

    #[test]
    fn location_args_and_unrelated_env_do_not_matter() {
        let base = digest_of(ARGS, "/w", &[("CARGO_PKG_NAME", "a")]);
        let cargo_settings = [
            ("CARGO_PKG_NAME", "a"),
            ("CARGO_TERM_COLOR", "always"),
            ("CARGO_PROFILE_DEV_OPT_LEVEL", "1"),
            ("CARGO_TARGET_DIR", "/x"),
        ];
        assert_eq!(base, digest_of(ARGS, "/w", &cargo_settings));
        let moved = ARGS.replace("/t/deps", "/other/deps");
        assert_eq!(
            base,
            digest_of(&moved, "/w", &[("CARGO_PKG_NAME", "a"), ("HOME", "/x")])
        );
        assert_eq!(
            base,
            digest_of(
                ARGS,
                "/w",
                &[("CARGO_PKG_NAME", "a"), ("CARGO_MAKEFLAGS", "-j")]
            )
        );
    }

    #[test]
    fn incremental_matters_but_not_its_dir() {
        let base = digest_of(ARGS, "/w", &[]);
        let inc = digest_of(&format!("{ARGS} -C incremental=/t/inc/a"), "/w", &[]);
        assert_ne!(base, inc);
        assert_eq!(
            inc,
            digest_of(&format!("{ARGS} -Cincremental=/elsewhere"), "/w", &[])
        );
    }

    #[test]
    fn output_args_cwd_and_cargo_env_matter() {
        let base = digest_of(ARGS, "/w", &[]);
        assert_ne!(
            base,
            digest_of(&ARGS.replace("opt-level=0", "opt-level=1"), "/w", &[])
        );
        assert_ne!(base, digest_of(ARGS, "/w2", &[]));
        assert_ne!(base, digest_of(ARGS, "/w", &[("CARGO_PKG_VERSION", "1")]));
        assert_ne!(base, digest_of(ARGS, "/w", &[("RUSTC_BOOTSTRAP", "1")]));
    }

    #[test]
    fn extern_content_matters_not_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.rmeta"), dir.path().join("b.rmeta"));
        fs::write(&a, b"one").unwrap();
        fs::write(&b, b"one").unwrap();
        let with = |p: &Path| digest_of(&format!("{ARGS} --extern dep={}", p.display()), "/w", &[]);
        assert_eq!(with(&a), with(&b));
        fs::write(&b, b"two").unwrap();
        assert_ne!(with(&a), with(&b));
    }

    #[test]
    fn result_key_covers_sources_and_env_deps() {
        let inv = Digest::of_bytes(b"inv");
        let source = |text: &[u8]| Source {
            path: "src/lib.rs".into(),
            digest: Digest::of_bytes(text),
            stamp: None,
        };
        let src = vec![source(b"fn a(){}")];
        let k = result_key(&inv, &src, &[], &[]);
        let src2 = vec![source(b"fn b(){}")];
        assert_ne!(k, result_key(&inv, &src2, &[], &[]));
        assert_ne!(
            k,
            result_key(&inv, &src, &[("X".into(), Some("1".into()))], &[])
        );
        assert_ne!(k, result_key(&inv, &src, &[], &["/home/a/ws".into()]));
        assert_ne!(
            result_key(&inv, &src, &[("X".into(), None)], &[]),
            result_key(&inv, &src, &[("X".into(), Some(String::new()))], &[])
        );
    }
}
