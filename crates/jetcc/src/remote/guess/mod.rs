//! A rustc unit's inputs listed without a pre-pass on its first farm job (issue 17): every
//! file of its package and of its `OUT_DIR`, the crates it loads (its `--extern`s and the
//! crates their metadata names, [`crates`]) and the variables its build script set for it.
//!
//! The dep-info pre-pass parses and macro-expands the crate on the client: tens of ms for a
//! tiny crate, far more for a macro-heavy one, on the CPU the farm is meant to spare. A guess
//! walks and hashes files instead (digests through `common::files`). It is a superset of what
//! a compile reads unless the crate reads a file outside its package (`include_str!("../..")`,
//! `#[path]`), a variable its build script did not set, or a crate its externs do not name;
//! then the worker's compile fails or its dep-info shows the difference, the unit compiles
//! locally and its next job pre-passes (`common::listing`). A package too large to walk
//! cheaply ([`Bounds`]) is pre-passed at once.

mod crates;

use std::path::{Path, PathBuf};

use jetcc_common::args::{Input, RustcArgs};
use jetcc_common::buildscript::Directives;
use jetcc_common::files::is_outside_package;
use jetcc_common::fsutil::normalize;

/// How much a guess may walk: past either bound the unit is pre-passed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub files: usize,
    pub bytes: u64,
}

/// The bounds the wrapper uses: a package this large costs more to hash and lay out on
/// every first job than a pre-pass is likely to.
pub(super) const BOUNDS: Bounds = Bounds {
    files: 2000,
    bytes: 32 << 20,
};

/// A unit's inputs, guessed.
#[derive(Debug, Default)]
pub(super) struct Guess {
    /// Every file: the package's, `OUT_DIR`'s and the crates', clean and absolute, sorted.
    pub files: Vec<PathBuf>,
    /// The dirs walked that hold no file: a path through one (`#[path = "a/../b.rs"]`)
    /// resolves only where it exists.
    pub dirs: Vec<PathBuf>,
    /// The crate files among them (dep-info does not name them, so the listing remembered
    /// after the job keeps them all).
    pub crates: Vec<PathBuf>,
    /// Variables the unit's build script set for it (`rustc-env`), which it may read.
    pub env_deps: Vec<String>,
}

/// Why a unit is pre-passed rather than guessed.
#[derive(Debug, thiserror::Error)]
pub(super) enum NoGuess {
    #[error("cargo did not name the package dir (no CARGO_MANIFEST_DIR)")]
    NoPackage,
    #[error("the crate root {0} is not a file under the package dir")]
    RootOutside(PathBuf),
    #[error("the package and OUT_DIR hold more than {0} files")]
    TooManyFiles(usize),
    #[error("the package and OUT_DIR hold more than {0} bytes")]
    TooLarge(u64),
    #[error("cannot list {0}: {1}")]
    Unreadable(PathBuf, std::io::Error),
}

/// Where a unit's files are, as cargo told rustc (`CARGO_MANIFEST_DIR`, `OUT_DIR`).
#[derive(Debug, Default)]
pub(super) struct Package {
    pub dir: Option<PathBuf>,
    pub out_dir: Option<PathBuf>,
}

impl Package {
    /// This process's, from cargo's env.
    pub fn from_env() -> Package {
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        Package {
            dir: var("CARGO_MANIFEST_DIR"),
            out_dir: var("OUT_DIR"),
        }
    }
}

/// Guesses the inputs of the compile `inv` (run in `cwd`) of the package `pkg`.
pub(super) fn guess(
    cwd: &Path,
    inv: &RustcArgs,
    pkg: &Package,
    bounds: Bounds,
) -> Result<Guess, NoGuess> {
    let dir = pkg
        .dir
        .as_ref()
        .map(|d| normalize(&cwd.join(d)))
        .ok_or(NoGuess::NoPackage)?;
    if let Some(Input::File(root)) = &inv.input {
        let root = normalize(&cwd.join(root));
        if !root.starts_with(&dir) || !root.is_file() {
            return Err(NoGuess::RootOutside(root));
        }
    }
    let mut walk = Walk {
        bounds,
        bytes: 0,
        files: Vec::new(),
        dirs: Vec::new(),
    };
    walk.package(&dir)?;
    let out_dir = pkg.out_dir.as_ref().map(|d| normalize(&cwd.join(d)));
    if let Some(out) = &out_dir {
        walk.out_dir(out)?;
    }
    let crates = crates::loaded(cwd, inv);
    let mut files = walk.files;
    files.extend(crates.iter().cloned());
    files.sort();
    files.dedup();
    let env_deps = out_dir.map(|d| script_env(&d)).unwrap_or_default();
    let mut dirs = walk.dirs;
    dirs.sort();
    Ok(Guess {
        files,
        dirs,
        crates,
        env_deps,
    })
}

/// The variables the build script that filled `out_dir` set for rustc: its output, which
/// cargo keeps beside `OUT_DIR` (`…/build/<pkg>-<hash>/output`).
fn script_env(out_dir: &Path) -> Vec<String> {
    let Some(output) = out_dir.parent().map(|d| d.join("output")) else {
        return Vec::new();
    };
    std::fs::read(output)
        .map(|b| Directives::parse(&b).rustc_env)
        .unwrap_or_default()
}

/// A bounded walk collecting regular files, and the dirs that hold none.
struct Walk {
    bounds: Bounds,
    bytes: u64,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Walk {
    /// The package's files: not its version control, a cargo target dir (`target/`, or any
    /// dir holding `CACHEDIR.TAG`) nor another package nested in it (a workspace root's
    /// members), as `files::is_outside_package` says.
    fn package(&mut self, dir: &Path) -> Result<(), NoGuess> {
        let skip =
            |d: &Path| is_outside_package(d) || (d.parent() == Some(dir) && d.ends_with("target"));
        self.dir(dir, &skip, &|_| false)
    }

    /// `OUT_DIR`'s files, but object files: a build script compiles C there, and rustc
    /// reads the archives it makes (listed from `-L native=` dirs) rather than the objects.
    fn out_dir(&mut self, dir: &Path) -> Result<(), NoGuess> {
        let object = |p: &Path| p.extension().is_some_and(|e| e == "o" || e == "obj");
        self.dir(dir, &|_| false, &object)
    }

    fn dir(
        &mut self,
        root: &Path,
        skip_dir: &dyn Fn(&Path) -> bool,
        skip_file: &dyn Fn(&Path) -> bool,
    ) -> Result<(), NoGuess> {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let files_before = self.files.len();
            let entries =
                std::fs::read_dir(&dir).map_err(|e| NoGuess::Unreadable(dir.clone(), e))?;
            for e in entries {
                let e = e.map_err(|e| NoGuess::Unreadable(dir.clone(), e))?;
                let path = e.path();
                let Ok(kind) = e.file_type() else { continue };
                if kind.is_dir() {
                    if !skip_dir(&path) {
                        stack.push(path);
                    }
                    continue;
                }
                // A symlink counts as what it names, but a linked dir is not walked (a
                // loop, or a tree outside the package): a file read there is missed.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() || skip_file(&path) {
                    continue;
                }
                self.bytes += meta.len();
                self.files.push(path);
                if self.files.len() > self.bounds.files {
                    return Err(NoGuess::TooManyFiles(self.bounds.files));
                }
                if self.bytes > self.bounds.bytes {
                    return Err(NoGuess::TooLarge(self.bounds.bytes));
                }
            }
            if self.files.len() == files_before {
                self.dirs.push(dir);
                if self.files.len() + self.dirs.len() > self.bounds.files {
                    return Err(NoGuess::TooManyFiles(self.bounds.files));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
