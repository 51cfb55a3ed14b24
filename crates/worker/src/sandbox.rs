//! Confines one untrusted child process (a job's `rustc`, which runs anyone's proc-macros)
//! before it execs, without root and without bubblewrap.
//!
//! - [`SandboxSpec`]: the paths the child may read (plus the built-in [`SYSTEM_READ_ONLY`]) and
//!   write, its [`Limits`], and an optional unprivileged uid/gid to drop to.
//! - [`SandboxSpec::apply`]: installs a `pre_exec` hook on a `std::process::Command` (kept by
//!   `tokio::process::Command::from`): new process group, rlimits, uid/gid drop,
//!   `PR_SET_PDEATHSIG(SIGKILL)`, then Landlock: filesystem rules, every TCP bind/connect denied,
//!   signals and abstract unix sockets scoped to the sandbox.
//! - [`probe`] / [`Support`]: what this kernel enforces; [`kill_group`] kills a job's whole tree
//!   (its process group id is the child's pid).
//!
//! Design choice: the Landlock ruleset is built, and its paths opened, in `apply` before fork;
//! the hook only makes raw syscalls (`setpgid`, `setrlimit`, `set*id`, `prctl`,
//! `landlock_restrict_self` on the prepared fd). The worker is multithreaded, and after fork
//! another thread may have held the allocator or a lock, so allocating in the child can deadlock.
//!
//! Callers should clear the environment, set `PATH`, point `TMPDIR` at a read-write dir (the
//! linker `cc` that rustc runs for proc-macros writes temp files there), and spawn from a
//! long-lived thread: the parent-death signal fires when the forking *thread* exits, so not
//! from `spawn_blocking`.

use landlock::{
    Access, AccessFs, AccessNet, PathBeneath, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::{fs::OpenOptionsExt, process::CommandExt};
use std::path::{Path, PathBuf};
use std::{fs::OpenOptions, io, process::Command};

/// Landlock ABI whose rights we request (the one tested). Older kernels enforce the subset they
/// know (see [`probe`]); ABI 9's `ResolveUnix` (pathname unix sockets) is not requested yet.
const TARGET_ABI: ABI = ABI::V7;
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// Read/list/execute paths every job gets (missing ones are skipped). In practice rustc, the
/// loader and the linker `cc` (run for proc-macro and bin crates) need only `/usr` on a
/// merged-/usr system; `/bin` and `/lib*` serve the others; the rest are files that glibc, gcc
/// or rustc's allocator read and cope without. `/proc/self` is not granted: a rule made before
/// fork would name the worker's own /proc entry, and rustc works without it.
#[rustfmt::skip]
pub const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache",
    "/dev/urandom", "/dev/random", "/dev/zero",
    "/proc/sys/vm/overcommit_memory", "/sys/kernel/mm/transparent_hugepage/enabled",
];
/// Writable for every job: writes there go nowhere.
const SYSTEM_READ_WRITE: &[&str] = &["/dev/null"];

/// What to confine one child to.
#[derive(Clone, Debug, Default)]
pub struct SandboxSpec {
    /// Read/list/execute only, on top of [`SYSTEM_READ_ONLY`] (the sysroot, the job's inputs).
    pub read_only: Vec<PathBuf>,
    /// Full access (the job's out and tmp dirs).
    pub read_write: Vec<PathBuf>,
    pub limits: Limits,
    /// (uid, gid) to drop to before exec; needs a root worker (RLIMIT_NPROC ignores uid 0).
    pub run_as: Option<(u32, u32)>,
}

/// Per-process rlimits (`None` keeps the worker's own limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_DATA (writable private memory: what malloc uses). RLIMIT_AS, which also counts
    /// rustc's ~0.5 GiB of mapped libraries and per-thread reservations (growing with cores),
    /// gets 4 GiB more, as a backstop for shared mappings that RLIMIT_DATA does not count.
    pub memory_bytes: Option<u64>,
    /// RLIMIT_NPROC: processes *and threads* of the child's real uid, machine-wide.
    pub processes: Option<u64>,
    /// RLIMIT_FSIZE: largest file the child may write.
    pub file_size_bytes: Option<u64>,
}

const GIB: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        let (memory_bytes, file_size_bytes) = (Some(8 * GIB), Some(4 * GIB));
        Limits {
            memory_bytes,
            processes: Some(256),
            file_size_bytes,
        }
    }
}

/// What this kernel can enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Support {
    /// Landlock ABI version, `None` when Landlock is absent or disabled.
    pub abi: Option<i32>,
    pub filesystem: bool,
    /// TCP bind/connect rules (ABI 4, Linux 6.7).
    pub network: bool,
    /// Signal and abstract unix socket scoping (ABI 6, Linux 6.12).
    pub scopes: bool,
}

impl Support {
    pub fn is_complete(&self) -> bool {
        self.filesystem && self.network && self.scopes
    }

    pub fn describe(&self) -> String {
        let Some(abi) = self.abi else {
            return "Landlock unavailable: nothing is confined (needs Linux >= 5.13 with \
                    `landlock` in the lsm= boot parameter)"
                .into();
        };
        let on = |b: bool| if b { "enforced" } else { "NOT enforced" };
        let (fs, net, scopes) = (on(self.filesystem), on(self.network), on(self.scopes));
        format!(
            "Landlock ABI {abi}: filesystem {fs}, TCP bind/connect {net} (needs ABI 4, Linux \
             6.7), signal/abstract-socket scopes {scopes} (needs ABI 6, Linux 6.12)"
        )
    }
}

/// Asks the kernel for its Landlock ABI version; restricts nothing.
pub fn probe() -> Support {
    let (null, flag) = (std::ptr::null::<u8>(), LANDLOCK_CREATE_RULESET_VERSION);
    // SAFETY: the version query reads no memory and creates no fd.
    let v = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, null, 0usize, flag) };
    let abi = (v > 0).then_some(v as i32);
    let n = abi.unwrap_or(0);
    Support {
        abi,
        filesystem: n >= 1,
        network: n >= 4,
        scopes: n >= 6,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot sandbox: {0}; upgrade the kernel or enable Landlock, or (trusted jobs only) run the worker with --insecure-no-sandbox")]
    LandlockUnavailable(String),
    #[error("cannot open sandbox path {}: {}; create it before spawning or remove it from the spec", .0.display(), .1)]
    Path(PathBuf, #[source] io::Error),
    #[error("building the Landlock ruleset failed: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("run_as ({uid}, {gid}) needs a root worker, but it runs as uid {current}; start the worker as root or drop run_as")]
    RunAsNeedsRoot { uid: u32, gid: u32, current: u32 },
    #[error("run_as must name an unprivileged uid and gid (e.g. nobody, 65534), not 0")]
    RunAsRoot,
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

impl SandboxSpec {
    /// Prepares the ruleset and installs a pre_exec hook on `cmd` that confines the child.
    /// `enforce = false` (the worker's `--insecure-no-sandbox`) skips Landlock and keeps the
    /// process group, parent-death signal, rlimits and `run_as`. A failing step fails `spawn`
    /// (or `exec`, which runs the hook in the calling process: fine when it is single-threaded).
    pub fn apply(&self, cmd: &mut Command, enforce: bool) -> Result<(), SandboxError> {
        if let Some((uid, gid)) = self.run_as {
            if uid == 0 || gid == 0 {
                return Err(SandboxError::RunAsRoot);
            }
            // SAFETY: geteuid cannot fail.
            let current = unsafe { libc::geteuid() };
            if current != 0 {
                return Err(SandboxError::RunAsNeedsRoot { uid, gid, current });
            }
        }
        let ruleset = enforce.then(|| self.prepare_ruleset()).transpose()?;
        let (l, mem) = (self.limits, self.limits.memory_bytes);
        // Built here: the child must not allocate.
        let limits: [(Resource, Option<u64>); 5] = [
            (libc::RLIMIT_CORE, Some(0)),
            (libc::RLIMIT_DATA, mem),
            (libc::RLIMIT_AS, mem.map(|m| m.saturating_add(4 * GIB))),
            (libc::RLIMIT_NPROC, l.processes),
            (libc::RLIMIT_FSIZE, l.file_size_bytes),
        ];
        let run_as = self.run_as;
        // SAFETY: getpid and getppid cannot fail.
        let (me, my_parent) = unsafe { (libc::getpid(), libc::getppid()) };
        let hook = move || {
            let fd = ruleset.as_ref().map(|fd| fd.as_raw_fd());
            // The hook runs in a forked child (spawn) or in this process (`exec`).
            // SAFETY: getpid cannot fail.
            let forked = unsafe { libc::getpid() } != me;
            confine(if forked { me } else { my_parent }, &limits, run_as, fd)
        };
        // SAFETY: the hook makes only async-signal-safe syscalls and does not allocate. It owns
        // the ruleset fd (close-on-exec), so the fd stays open until the Command drops.
        unsafe { cmd.pre_exec(hook) };
        Ok(())
    }

    /// Creates the ruleset and adds one rule per path (this opens the paths), in the parent.
    fn prepare_ruleset(&self) -> Result<OwnedFd, SandboxError> {
        let support = probe();
        if !support.filesystem {
            return Err(SandboxError::LandlockUnavailable(support.describe()));
        }
        if !support.is_complete() {
            tracing::warn!("sandbox is partial: {}", support.describe());
        }
        let read = AccessFs::from_read(TARGET_ABI);
        let all = AccessFs::from_all(TARGET_ABI);
        // Net rights are handled but no NetPort rule is added: all TCP bind/connect is denied.
        let mut ruleset = Ruleset::default()
            .handle_access(all)?
            .handle_access(AccessNet::from_all(TARGET_ABI))?
            .scope(Scope::from_all(TARGET_ABI))?
            .create()?;
        let system = |list: &'static [&str], access| {
            list.iter().map(move |p| (Path::new(*p), access, false))
        };
        let paths = system(SYSTEM_READ_ONLY, read)
            .chain(system(SYSTEM_READ_WRITE, all))
            .chain(self.read_only.iter().map(|p| (p.as_path(), read, true)))
            .chain(self.read_write.iter().map(|p| (p.as_path(), all, true)));
        for (path, access, required) in paths {
            let mut open = OpenOptions::new();
            let opened = open.read(true).custom_flags(libc::O_PATH).open(path);
            let (is_dir, fd) = match opened.and_then(|f| Ok((f.metadata()?.is_dir(), f))) {
                Ok(v) => v,
                Err(e) if !required && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(SandboxError::Path(path.into(), e)),
            };
            // The kernel rejects directory-only rights on a file.
            let file_access = access & AccessFs::from_file(TARGET_ABI);
            let access = if is_dir { access } else { file_access };
            ruleset = ruleset.add_rule(PathBeneath::new(fd, access))?;
        }
        Option::<OwnedFd>::from(ruleset)
            .ok_or_else(|| SandboxError::LandlockUnavailable(support.describe()))
    }
}

fn check(ret: impl Into<libc::c_long>) -> io::Result<()> {
    match ret.into() {
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// Runs after fork (or in the process calling `exec`), before exec: raw syscalls only, no
/// allocation, no locks.
fn confine(
    parent: libc::pid_t,
    limits: &[(Resource, Option<u64>)],
    run_as: Option<(u32, u32)>,
    ruleset: Option<libc::c_int>,
) -> io::Result<()> {
    // prctl is variadic: pass full-width arguments.
    const ZERO: libc::c_ulong = 0;
    const ONE: libc::c_ulong = 1;
    // SAFETY: plain syscalls on values owned by this frame.
    unsafe {
        check(libc::setpgid(0, 0))?;
        for &(resource, value) in limits {
            let Some(value) = value else { continue };
            let mut lim: libc::rlimit = std::mem::zeroed();
            check(libc::getrlimit(resource, &mut lim))?;
            // Unprivileged workers cannot raise the hard limit; never ask to.
            lim.rlim_cur = value.min(lim.rlim_max as u64) as libc::rlim_t;
            lim.rlim_max = lim.rlim_cur;
            check(libc::setrlimit(resource, &lim))?;
        }
        // No capability comes back: not through a setuid binary (no_new_privs), not after
        // exec (an empty bounding set). Dropping needs CAP_SETPCAP: an unprivileged worker's
        // jobs have no capabilities to drop, and exec clears them for a non-root uid.
        for cap in 0..=63 {
            libc::prctl(
                libc::PR_CAPBSET_DROP,
                cap as libc::c_ulong,
                ZERO,
                ZERO,
                ZERO,
            );
        }
        check(libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            ONE,
            ZERO,
            ZERO,
            ZERO,
        ))?;
        if let Some((uid, gid)) = run_as {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
        }
        // After the uid drop, which clears the parent-death signal.
        let kill = libc::SIGKILL as libc::c_ulong;
        check(libc::prctl(libc::PR_SET_PDEATHSIG, kill, ZERO, ZERO, ZERO))?;
        // The first process of a new PID namespace sees its parent as pid 0.
        let ppid = libc::getppid();
        if ppid != parent && ppid != 0 {
            // The parent died before prctl: nobody would kill us.
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(fd) = ruleset {
            // no_new_privs (set above) is required for an unprivileged restrict_self.
            check(libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32))?;
        }
    }
    Ok(())
}

/// SIGKILLs a whole process group (a job's tree); a group that is already gone is fine.
pub fn kill_group(pgid: u32) {
    // SAFETY: getpgrp cannot fail.
    let own = unsafe { libc::getpgrp() };
    // 0, 1 and our own group would kill the worker or everything: never a job's group.
    let pgid = libc::pid_t::try_from(pgid).unwrap_or(0);
    if pgid <= 1 || pgid == own {
        tracing::warn!(pgid, "refusing to kill process group");
        return;
    }
    // SAFETY: kill touches no memory.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!(pgid, %err, "killing sandboxed process group failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    use std::{fs, process::Stdio};
    use tempfile::TempDir;

    const PY: &str = "/usr/bin/python3";
    const NOBODY: Option<(u32, u32)> = Some((65534, 65534));
    /// `t(f)` says how calling `f` ended: ok, denied (EACCES/EPERM) or the exception's name.
    const TRY: &str = "import os, sys, socket\ndef t(f):\n    try:\n        f(); return 'ok'\n    \
        except PermissionError: return 'denied'\n    except Exception as e: return type(e).__name__\n";

    fn spec(read_only: &[&Path], read_write: &[&Path]) -> SandboxSpec {
        let paths = |ps: &[&Path]| ps.iter().map(|p| p.to_path_buf()).collect();
        let mut s = SandboxSpec::default();
        (s.read_only, s.read_write) = (paths(read_only), paths(read_write));
        s
    }

    fn python(code: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(PY);
        cmd.arg("-c").arg(format!("{TRY}{code}")).args(args);
        cmd
    }

    /// Runs python `code` under `spec`; returns its trimmed stdout.
    fn py(spec: &SandboxSpec, enforce: bool, code: &str, args: &[&str]) -> String {
        let mut cmd = python(code, args);
        spec.apply(&mut cmd, enforce).unwrap();
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}: {err}", out.status);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn dir(mode: u32) -> TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    fn sysroot() -> PathBuf {
        let mut rustc = Command::new("rustc");
        let out = rustc.arg("--print=sysroot").output().unwrap();
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    }

    /// Hard-links (or copies) a tree: nobody cannot enter /root, where rustup lives.
    fn mirror(src: &Path, dst: &Path) {
        if src.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(src).unwrap(), dst).unwrap();
        } else if src.is_dir() {
            fs::create_dir_all(dst).unwrap();
            for entry in fs::read_dir(src).unwrap() {
                let name = entry.unwrap().file_name();
                mirror(&src.join(&name), &dst.join(name));
            }
        } else if fs::hard_link(src, dst).is_err() {
            fs::copy(src, dst).unwrap();
        }
    }

    /// Compiles a proc-macro crate, then a lib using it, with the sysroot's own rustc.
    fn compile(sysroot: &Path, run_as: Option<(u32, u32)>) {
        let (input, out, tmp) = (dir(0o777), dir(0o777), dir(0o777));
        let pm = "extern crate proc_macro;\nuse proc_macro::TokenStream;\n#[proc_macro]\n\
                  pub fn answer(_: TokenStream) -> TokenStream { \"42\".parse().unwrap() }\n";
        fs::write(input.path().join("pm.rs"), pm).unwrap();
        let lib = "pub fn f() -> u32 { pm::answer!() }\n";
        fs::write(input.path().join("lib.rs"), lib).unwrap();
        let pm_so = out.path().join("libpm.so");
        for [kind, name, file] in [["proc-macro", "pm", "pm.rs"], ["lib", "demo", "lib.rs"]] {
            let mut cmd = Command::new(sysroot.join("bin/rustc"));
            cmd.env_clear().env("PATH", "/usr/bin:/bin");
            cmd.env("TMPDIR", tmp.path()).current_dir(input.path());
            cmd.args(["--crate-type", kind, "--crate-name", name, file]);
            cmd.arg("--edition=2021").arg("--out-dir").arg(out.path());
            if kind == "lib" {
                cmd.arg("--extern").arg(format!("pm={}", pm_so.display()));
            }
            let mut s = spec(&[sysroot, input.path()], &[out.path(), tmp.path()]);
            s.run_as = run_as;
            s.apply(&mut cmd, true).unwrap();
            let output = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "rustc {file}: {err}");
        }
        assert!(pm_so.exists() && out.path().join("libdemo.rlib").exists());
    }

    #[test]
    fn rustc_compiles_proc_macro_and_lib() {
        compile(&sysroot(), None);
    }

    #[test]
    fn rustc_compiles_as_nobody() {
        let root = dir(0o755);
        mirror(&sysroot().join("lib"), &root.path().join("lib"));
        fs::create_dir(root.path().join("bin")).unwrap();
        mirror(&sysroot().join("bin/rustc"), &root.path().join("bin/rustc"));
        compile(root.path(), NOBODY);
    }

    #[test]
    fn filesystem_is_confined() {
        let (input, out, secret) = (dir(0o777), dir(0o777), dir(0o777));
        let (allowed, hidden) = (input.path().join("ok"), secret.path().join("secret"));
        fs::write(&allowed, "fine").unwrap();
        fs::write(&hidden, "secret").unwrap();
        // Read hidden file, list /root, write in unlisted / read-only / read-write dirs, read input.
        let code = "a = sys.argv[1:]\nprint(t(lambda: open(a[0]).read()), \
            t(lambda: os.listdir('/root')), t(lambda: open(a[1] + '/w', 'w')), \
            t(lambda: open(a[2] + '/w', 'w')), t(lambda: open(a[3] + '/w', 'w').write('x')), \
            t(lambda: open(a[4]).read()))";
        let args = [&hidden, secret.path(), input.path(), out.path(), &allowed];
        let args = args.map(|p| p.to_str().unwrap());
        let s = spec(&[input.path()], &[out.path()]);
        let want = "denied denied denied denied ok ok";
        assert_eq!(py(&s, true, code, &args), want);
        assert_eq!(fs::read_to_string(out.path().join("w")).unwrap(), "x");
        assert_eq!(py(&s, false, code, &args), "ok ok ok ok ok ok");
    }

    #[test]
    fn missing_job_path_is_an_error() {
        let s = spec(&[Path::new("/nonexistent/jetcc")], &[]);
        let err = s.apply(&mut Command::new("true"), true).unwrap_err();
        assert!(matches!(err, SandboxError::Path(..)), "{err}");
    }

    #[test]
    fn tcp_connect_and_bind_are_denied() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let code = "a = ('127.0.0.1', int(sys.argv[1]))\nprint(t(lambda: \
            socket.create_connection(a, 5)), t(lambda: socket.socket().bind((a[0], 0))))";
        assert_eq!(py(&spec(&[], &[]), true, code, &[&port]), "denied denied");
        assert_eq!(py(&spec(&[], &[]), false, code, &[&port]), "ok ok");
    }

    #[test]
    fn cannot_signal_outside_the_sandbox() {
        let mut sibling = Command::new("sleep").arg("30").spawn().unwrap();
        let ids = [sibling.id(), std::process::id()].map(|id| id.to_string());
        let args = [ids[0].as_str(), ids[1].as_str()];
        let code = "s, p = map(int, sys.argv[1:])\nprint(t(lambda: os.kill(s, 15)), \
            t(lambda: os.kill(p, 0)))";
        assert_eq!(py(&spec(&[], &[]), true, code, &args), "denied denied");
        assert!(sibling.try_wait().unwrap().is_none(), "sibling was killed");
        let code = code.replace("(s, 15)", "(s, 0)"); // unconfined control, killing nothing
        assert_eq!(py(&spec(&[], &[]), false, &code, &args), "ok ok");
        sibling.kill().unwrap();
        sibling.wait().unwrap();
    }

    /// Live (non-zombie) processes in process group `pgid`.
    fn group_members(pgid: u32) -> usize {
        let stats = fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| fs::read_to_string(e.ok()?.path().join("stat")).ok());
        let live = |stat: &String| {
            // After the last ") " (comm may hold one): state, ppid, pgrp.
            let f: Vec<&str> = stat.split(") ").last().unwrap().split(' ').collect();
            f[2] == pgid.to_string() && f[0] != "Z" && f[0] != "X"
        };
        stats.filter(live).count()
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed().as_secs() < 10, "timeout: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn fork_bomb_is_contained() {
        let mut s = spec(&[], &[]);
        (s.run_as, s.limits.processes) = (NOBODY, Some(64));
        // Children close stdout so that reading it ends when the parent exits.
        let code = "import time\nn = 0\ntry:\n    for _ in range(1000):\n        \
            if os.fork() == 0:\n            os.close(1); time.sleep(60); os._exit(0)\n        \
            n += 1\nexcept BlockingIOError:\n    print('EAGAIN', n)";
        let mut cmd = python(code, &[]);
        s.apply(cmd.stdout(Stdio::piped()), true).unwrap();
        let child = cmd.spawn().unwrap();
        let pgid = child.id();
        let stdout = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let sleepers = group_members(pgid);
        kill_group(pgid);
        let forks: usize = match stdout.trim().strip_prefix("EAGAIN ") {
            Some(n) => n.parse().unwrap(),
            None => panic!("fork never failed: {stdout:?}"),
        };
        assert!(forks < 64, "{forks} forks");
        assert_eq!(sleepers, forks, "forked sleepers alive before kill_group");
        wait_for("the forked sleepers to die", || group_members(pgid) == 0);
    }

    #[test]
    fn kill_group_kills_the_tree() {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "sleep 60 & sleep 60 & sleep 60 & wait"]);
        spec(&[], &[]).apply(&mut cmd, true).unwrap();
        let mut child = cmd.spawn().unwrap();
        let pgid = child.id();
        wait_for("sh and 3 sleeps", || group_members(pgid) == 4);
        kill_group(pgid);
        // Before reaping sh: after a no-op kill the sleeps would live on for a minute.
        wait_for("the group to die", || group_members(pgid) == 0);
        child.wait().unwrap();
    }

    #[test]
    fn memory_limit_stops_big_allocations() {
        let mut s = spec(&[], &[]);
        s.limits.memory_bytes = Some(256 << 20);
        // 384 MiB is under the RLIMIT_AS backstop, over RLIMIT_DATA.
        let code = "print(t(lambda: bytearray(64 << 20)), t(lambda: bytearray(384 << 20)))";
        assert_eq!(py(&s, true, code, &[]), "ok MemoryError");
        assert_eq!(py(&spec(&[], &[]), true, code, &[]), "ok ok");
    }

    /// The child keeps no capability and cannot gain one, even unconfined by Landlock.
    #[test]
    fn no_capabilities_and_no_new_privileges() {
        let mut s = spec(&[], &[]);
        // As root: as the job's user, as a root worker runs jobs. Else as ourselves.
        // SAFETY: geteuid cannot fail.
        s.run_as = NOBODY.filter(|_| unsafe { libc::geteuid() } == 0);
        let code = "f = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
            print(*(f[k].strip() for k in ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs']))";
        let zero = "0000000000000000";
        let want = format!("{zero} {zero} {zero} {zero} 1");
        assert_eq!(py(&s, false, code, &[]), want);
    }

    #[test]
    fn probe_sees_full_landlock() {
        let (support, text) = (probe(), probe().describe());
        assert!(support.abi.unwrap_or(0) >= 6, "{text}");
        assert!(
            support.filesystem && support.network && support.scopes,
            "{text}"
        );
        assert!(support.is_complete() && !text.contains("NOT"), "{text}");
    }
}
