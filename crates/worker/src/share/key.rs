//! The key of a farm job's result, computed by the worker from the job alone with
//! `common::key`, as the client computes it from its own files: the invocation digest from
//! the job's arguments, env and input digests, and the manifest entry from the dep-info the
//! compile wrote. Every input the job laid out is either in the invocation digest (externs,
//! native libraries) or a source a lookup checks (what dep-info lists, and every other
//! input: transitive crates in `-L dependency=` dirs), so no input a client could forge
//! stays out of the key.
//!
//! What the client says about how it names paths (`KeyPaths`) is used to name paths in the
//! key, and checked against the job: the `--remap-path-prefix` arguments it implies must be
//! the ones the job's rustc ran with.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use jetcc_common::args::RustcArgs;
use jetcc_common::classify::{classify, Outputs, Policy};
use jetcc_common::depinfo::DepInfo;
use jetcc_common::fsutil::normalize;
use jetcc_common::key::{self, is_keyed_env, is_native_lib, DigestSource, InvocationInputs};
use jetcc_common::manifest::Source;
use jetcc_common::pathmap::{PathMap, Portable};
use jetcc_common::protocol::job::JobRequest;
use jetcc_common::Digest;

use super::NotRecorded;

/// `env!` dependencies as a manifest entry holds them: names, values in key form.
pub type EnvDeps = Vec<(String, Option<String>)>;

/// The invocation of a rustc job as its client keyed it.
pub struct JobKey {
    pub map: PathMap,
    pub outputs: Outputs,
    /// The invocation digest: what the manifest is filed under.
    pub digest: Digest,
    inputs: JobInputs,
}

impl JobKey {
    /// Computes the invocation digest of `job`, run with the toolchain whose identity is
    /// `toolchain`, from the job alone.
    pub fn of(job: &JobRequest, toolchain: &Digest) -> Result<JobKey, NotRecorded> {
        if let Some(file) = job.args.iter().find(|a| a.starts_with('@')) {
            return Err(NotRecorded::ArgFile(file.clone()));
        }
        let parse = |words: &[String]| {
            RustcArgs::parse(words.iter().map(OsString::from))
                .map_err(|e| NotRecorded::Args(e.to_string()))
        };
        // The remaps the client added come last; which they are follows from the map, and
        // the map from everything but them.
        let all = parse(&job.args)?;
        // Before the remaps are checked: a link's client adds `--print=link-args` after them.
        if all.crate_types.iter().any(|t| t.links()) {
            return Err(NotRecorded::Links);
        }
        let cwd = PathBuf::from(&job.cwd);
        let out_dir = PathBuf::from(&job.out_dir);
        let env = |k: &str| -> Option<String> {
            let roots = &job.key_paths;
            match k {
                "CARGO_HOME" => roots.cargo_home.clone(),
                "HOME" => roots.home.clone(),
                _ => job
                    .env
                    .iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone()),
            }
        };
        let portable = job
            .key_paths
            .portable
            .then(|| Portable::from_env(&env, &out_dir, all.target.as_deref()));
        let dep_dirs = all.crate_dirs(&cwd);
        let base_dirs: Vec<PathBuf> = job.key_paths.base_dirs.iter().map(PathBuf::from).collect();
        let map = PathMap::new(&out_dir, &dep_dirs, &base_dirs, &cwd, portable.as_ref());
        let remaps = map.remap_args();
        let own = job
            .args
            .len()
            .checked_sub(remaps.len())
            .filter(|&n| job.args[n..] == remaps[..])
            .ok_or(NotRecorded::Remaps)?;
        let args = parse(&job.args[..own])?;
        // Portable paths are only chosen when the invocation remaps nothing itself.
        if portable.is_some() && args.words().any(|w| w.starts_with("--remap-path-")) {
            return Err(NotRecorded::Remaps);
        }
        let outputs = classify(
            &args,
            Policy {
                cache_incremental: false,
            },
        )
        .map_err(|why| NotRecorded::NotCacheable(why.to_string()))?;
        if outputs.links {
            return Err(NotRecorded::Links);
        }
        let mut written: Vec<&String> = outputs.files.iter().collect();
        let mut listed: Vec<&String> = job.outputs.iter().collect();
        written.sort();
        listed.sort();
        if normalize(&cwd.join(&outputs.out_dir)) != out_dir || written != listed {
            return Err(NotRecorded::Outputs);
        }
        let mut names = HashSet::new();
        if let Some((dup, _)) = job.env.iter().find(|(k, _)| !names.insert(k)) {
            return Err(NotRecorded::EnvTwice(dup.clone()));
        }
        let mut paths = HashSet::new();
        if let Some(dup) = job.inputs.iter().find(|i| !paths.insert(&i.path)) {
            return Err(NotRecorded::InputTwice(dup.path.clone()));
        }
        let mut inputs = JobInputs::new(job);
        let parts = key::invocation_parts(
            &InvocationInputs {
                toolchain,
                inv: &args,
                cwd: &cwd,
                env: &job.env,
                map: &map,
                linker: None,
            },
            &mut inputs,
        )?;
        Ok(JobKey {
            map,
            outputs,
            digest: key::invocation_digest(&parts),
            inputs,
        })
    }

    /// The files a lookup must find as they were (key-form paths, the job's digests), and the
    /// env deps, from the dep-info the compile wrote: its sources first, then every other
    /// input the invocation digest does not cover.
    pub fn sources(
        &self,
        job: &JobRequest,
        dep: &DepInfo,
    ) -> Result<(Vec<Source>, EnvDeps), NotRecorded> {
        let env_deps: EnvDeps = dep
            .env_deps
            .iter()
            .map(|(name, value)| (name.clone(), value.as_deref().map(|v| self.map.key_path(v))))
            .collect();
        // What rustc saw that the key does not name would let one job's result answer
        // another's lookup.
        for (name, _) in &job.env {
            let keyed = is_keyed_env(name) || name == "OUT_DIR";
            if !keyed && !env_deps.iter().any(|(n, _)| n == name) {
                return Err(NotRecorded::Env(name.clone()));
            }
        }
        let cwd = Path::new(&job.cwd);
        let mut covered = self.inputs.used.clone();
        let mut sources = Vec::with_capacity(job.inputs.len());
        for path in &dep.sources {
            let abs = normalize(&cwd.join(path)).to_string_lossy().into_owned();
            let digest = *self
                .inputs
                .by_path
                .get(&abs)
                .ok_or_else(|| NotRecorded::SourceNotInput(path.clone()))?;
            covered.insert(abs);
            sources.push(Source {
                path: self.map.key_path(path),
                digest,
                stamp: None,
            });
        }
        let mut rest: Vec<&String> = self
            .inputs
            .by_path
            .keys()
            .filter(|p| !covered.contains(*p))
            .collect();
        rest.sort();
        for path in rest {
            sources.push(Source {
                path: self.map.key_path(path),
                digest: self.inputs.by_path[path],
                stamp: None,
            });
        }
        Ok((sources, env_deps))
    }
}

/// The digests of a job's inputs, by clean absolute path, as a [`DigestSource`]: what the
/// invocation digest reads is remembered, so the rest become sources.
struct JobInputs {
    cwd: PathBuf,
    by_path: HashMap<String, Digest>,
    used: HashSet<String>,
}

impl JobInputs {
    fn new(job: &JobRequest) -> JobInputs {
        JobInputs {
            cwd: PathBuf::from(&job.cwd),
            by_path: job
                .inputs
                .iter()
                .map(|i| (i.path.clone(), i.digest))
                .collect(),
            used: HashSet::new(),
        }
    }
}

impl DigestSource for JobInputs {
    fn digest(&mut self, path: &str) -> Option<Digest> {
        let abs = normalize(&self.cwd.join(path))
            .to_string_lossy()
            .into_owned();
        let digest = *self.by_path.get(&abs)?;
        self.used.insert(abs);
        Some(digest)
    }

    fn native_libs(&mut self, dir: &Path) -> io::Result<Vec<(String, Digest)>> {
        let dir = normalize(dir);
        let mut libs: Vec<(String, Digest, String)> = self
            .by_path
            .iter()
            .filter(|(p, _)| {
                let p = Path::new(p);
                p.parent() == Some(dir.as_path()) && is_native_lib(p)
            })
            .map(|(p, d)| {
                let name = Path::new(p).file_name().unwrap_or_default();
                (name.to_string_lossy().into_owned(), *d, p.clone())
            })
            .collect();
        libs.sort();
        Ok(libs
            .into_iter()
            .map(|(name, d, path)| {
                self.used.insert(path);
                (name, d)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jetcc_common::files::FileDigests;
    use jetcc_common::protocol::job::{InputFile, KeyPaths};
    use jetcc_common::protocol::PROTOCOL_VERSION;

    /// A workspace on disk: the client's view. Returns the job a client in it would send.
    struct Client {
        dir: tempfile::TempDir,
    }

    impl Client {
        fn new() -> Client {
            let dir = tempfile::tempdir().unwrap();
            let w = |rel: &str, bytes: &[u8]| {
                let p = dir.path().join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            };
            w("ws/src/lib.rs", b"pub fn a() {}");
            w("t/debug/deps/libdep-1.rmeta", b"direct");
            w("t/debug/deps/libtrans-2.rmeta", b"transitive");
            w("t/native/libz.a", b"archive");
            Client { dir }
        }

        fn path(&self, rel: &str) -> String {
            self.dir.path().join(rel).to_string_lossy().into_owned()
        }

        fn args(&self) -> Vec<String> {
            let deps = self.path("t/debug/deps");
            [
                "--crate-name",
                "a",
                "--edition=2021",
                "src/lib.rs",
                "--crate-type",
                "lib",
                "--emit=dep-info,metadata,link",
                "-C",
                "metadata=h",
                "-C",
                "extra-filename=-h",
                "--out-dir",
                &deps,
                "-L",
                &format!("dependency={deps}"),
                "-L",
                &format!("native={}", self.path("t/native")),
                "--extern",
                &format!("dep={deps}/libdep-1.rmeta"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        }

        fn env(&self) -> Vec<(String, String)> {
            vec![
                ("CARGO_PKG_NAME".into(), "a".into()),
                ("CARGO_PKG_VERSION".into(), "0.1.0".into()),
                ("CARGO_MANIFEST_DIR".into(), self.path("ws")),
            ]
        }

        fn portable(&self) -> Portable {
            let env = self.env();
            let home = self.path("home");
            Portable::from_env(
                &|k| match k {
                    "HOME" => Some(home.clone()),
                    _ => env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
                },
                Path::new(&self.path("t/debug/deps")),
                None,
            )
        }

        /// The invocation digest the wrapper computes, from disk.
        fn digest(&self) -> Digest {
            let args = RustcArgs::parse(self.args().iter().map(OsString::from)).unwrap();
            let cwd = PathBuf::from(self.path("ws"));
            let deps = PathBuf::from(self.path("t/debug/deps"));
            let map = PathMap::new(
                &deps,
                std::slice::from_ref(&deps),
                &[],
                &cwd,
                Some(&self.portable()),
            );
            let mut files = FileDigests::new(&cwd, None);
            let parts = key::invocation_parts(
                &InvocationInputs {
                    toolchain: &Digest::of_bytes(b"rustc"),
                    inv: &args,
                    cwd: &cwd,
                    env: &self.env(),
                    map: &map,
                    linker: None,
                },
                &mut files,
            )
            .unwrap();
            key::invocation_digest(&parts)
        }

        fn job(&self) -> JobRequest {
            let input = |rel: &str| {
                let bytes = std::fs::read(self.dir.path().join(rel)).unwrap();
                InputFile {
                    path: self.path(rel),
                    digest: Digest::of_bytes(&bytes),
                    size: bytes.len() as u64,
                    mode: 0o644,
                }
            };
            let deps = PathBuf::from(self.path("t/debug/deps"));
            let map = PathMap::new(
                &deps,
                std::slice::from_ref(&deps),
                &[],
                Path::new(&self.path("ws")),
                Some(&self.portable()),
            );
            let mut args = self.args();
            args.extend(map.remap_args());
            JobRequest {
                version: PROTOCOL_VERSION,
                job_id: "0".repeat(32),
                reply_subject: "jetcc.reply.c.x".into(),
                crate_name: "a".into(),
                deadline_unix_ms: 0,
                toolchain: Digest::of_bytes(b"rustc"),
                args,
                env: self.env(),
                cwd: self.path("ws"),
                inputs: vec![
                    input("ws/src/lib.rs"),
                    input("t/debug/deps/libdep-1.rmeta"),
                    input("t/debug/deps/libtrans-2.rmeta"),
                    input("t/native/libz.a"),
                ],
                system_inputs: vec![],
                dirs: vec![],
                out_dir: self.path("t/debug/deps"),
                outputs: vec!["a-h.d".into(), "liba-h.rlib".into(), "liba-h.rmeta".into()],
                key_paths: KeyPaths {
                    portable: true,
                    base_dirs: vec![],
                    cargo_home: None,
                    home: Some(self.path("home")),
                },
                shipped: None,
                inline: vec![],
            }
        }

        fn dep_info(&self) -> DepInfo {
            DepInfo::parse(&format!(
                "{0}/liba-h.rmeta: src/lib.rs\n\nsrc/lib.rs:\n",
                self.path("t/debug/deps")
            ))
        }
    }

    #[test]
    fn the_worker_computes_the_clients_invocation_digest() {
        let c = Client::new();
        let tc = Digest::of_bytes(b"rustc");
        let k = JobKey::of(&c.job(), &tc).unwrap();
        assert_eq!(k.digest, c.digest());
        // Another machine (the workspace elsewhere) names the same key.
        let other = Client::new();
        assert_eq!(JobKey::of(&other.job(), &tc).unwrap().digest, k.digest);
    }

    #[test]
    fn every_input_is_in_the_key_or_a_source() {
        let c = Client::new();
        let job = c.job();
        let tc = Digest::of_bytes(b"rustc");
        let k = JobKey::of(&job, &tc).unwrap();
        let (sources, env_deps) = k.sources(&job, &c.dep_info()).unwrap();
        assert!(env_deps.is_empty());
        let paths: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
        // The crate root as dep-info names it, then the transitive crate no extern names.
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert_eq!(paths[0], "src/lib.rs");
        assert!(paths[1].ends_with("/libtrans-2.rmeta"), "{paths:?}");
        assert!(!paths[1].contains(&c.path("")), "in key form: {paths:?}");

        // A job with another transitive crate: the same invocation, another source digest.
        let mut lying = c.job();
        lying.inputs[2].digest = Digest::of_bytes(b"forged");
        let k2 = JobKey::of(&lying, &tc).unwrap();
        assert_eq!(k2.digest, k.digest);
        let (forged, _) = k2.sources(&lying, &c.dep_info()).unwrap();
        assert_ne!(forged[1].digest, sources[1].digest);
        // An extern or native library with other bytes: another invocation.
        for i in [1, 3] {
            let mut other = c.job();
            other.inputs[i].digest = Digest::of_bytes(b"other");
            assert_ne!(
                JobKey::of(&other, &tc).unwrap().digest,
                k.digest,
                "input {i}"
            );
        }
    }

    #[test]
    fn a_guessed_job_keys_the_same_invocation_and_names_its_unread_inputs() {
        // A first job listed by a guess lays out every file of the package: the invocation
        // digest is the one a pre-passed job (and the client) computes, and what rustc did
        // not read is a source too, so a lookup finds the result where those files match.
        let c = Client::new();
        let tc = Digest::of_bytes(b"rustc");
        let readme = c.dir.path().join("ws/README.md");
        std::fs::write(&readme, b"not read").unwrap();
        let mut guessed = c.job();
        guessed.inputs.push(InputFile {
            path: readme.to_string_lossy().into_owned(),
            digest: Digest::of_bytes(b"not read"),
            size: 8,
            mode: 0o644,
        });
        let k = JobKey::of(&guessed, &tc).unwrap();
        assert_eq!(k.digest, c.digest());
        assert_eq!(k.digest, JobKey::of(&c.job(), &tc).unwrap().digest);
        let (sources, _) = k.sources(&guessed, &c.dep_info()).unwrap();
        let paths: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths.len(), 3, "{paths:?}");
        assert_eq!(paths[0], "src/lib.rs");
        assert!(paths.iter().any(|p| p.ends_with("/README.md")), "{paths:?}");
    }

    #[test]
    fn jobs_the_key_cannot_describe_are_not_recorded() {
        let c = Client::new();
        let tc = Digest::of_bytes(b"rustc");
        type Mutation = fn(&mut JobRequest);
        let cases: Vec<(Mutation, &str)> = vec![
            (|j| j.args.push("-O".into()), "remaps"),
            (|j| j.key_paths.home = None, "remaps"),
            (|j| j.args.insert(0, "@/etc/shadow".into()), "argument file"),
            (
                |j| {
                    j.outputs.pop();
                },
                "outputs",
            ),
            (
                |j| j.env.push(("CARGO_PKG_NAME".into(), "b".into())),
                "twice",
            ),
        ];
        for (mutate, want) in cases {
            let mut j = c.job();
            mutate(&mut j);
            let err = JobKey::of(&j, &tc).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(want)),
                "{want}: {err:?}"
            );
        }
        // Known only once dep-info is read: an env var rustc was given that nothing keys, a
        // source that was not laid out.
        let mut j = c.job();
        j.env.push(("SECRET_SWITCH".into(), "1".into()));
        let k = JobKey::of(&j, &tc).unwrap();
        let err = k.sources(&j, &c.dep_info()).unwrap_err().to_string();
        assert!(err.contains("SECRET_SWITCH"), "{err}");
        let j = c.job();
        let k = JobKey::of(&j, &tc).unwrap();
        let dep = DepInfo::parse("x.rmeta: src/lib.rs src/other.rs\n");
        let err = k.sources(&j, &dep).unwrap_err().to_string();
        assert!(err.contains("src/other.rs"), "{err}");
    }
}
