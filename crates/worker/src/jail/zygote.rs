//! The jail's zygote: a process forked from the worker before it starts any thread, which
//! forks one launcher per job (no `exec`: loading the worker's 90 MB binary again cost a
//! launch more than the rest of the jail together).
//!
//! The worker talks to it over a unix seqpacket socket ([`super::launcher`] is that side):
//! "prepare job N in these cgroups", "launch job N with this plan" (with the job's stdout and
//! stderr pipes attached), "kill job N", "stage at this dir"; it answers "job N exited with
//! code C". A prepared launcher joins its cgroups, makes its namespaces and lays out the
//! jail's system paths ([`super::root::stage`]) while no job waits for it, then waits for
//! its plan, which the zygote forwards; it runs [`super::launch`] with a network namespace
//! from the zygote's pool and exits with rustc's code.
//!
//! What it keeps for all jobs:
//! - a non-root worker's user namespace (its uid mapped to itself), made once: the jails'
//!   mount, PID and network namespaces belong to it;
//! - network namespaces, empty (no interface up: nothing to reach, not even loopback). One
//!   is handed to each running job and to no other at the same time; it goes back to the
//!   pool only when its launcher exited by itself, which it does only after the job's first
//!   process, the init of the job's PID namespace, was reaped, when every process of the job
//!   is gone. Making one costs about a millisecond; each is made once per slot.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use super::{sys, JailError, Plan, LAUNCH_ERROR_PREFIX, LAUNCH_FAILED};

/// Left to the worker: the zygote ignores them, each launcher has them back at their default.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// A request's kinds, its first byte.
pub(super) const LAUNCH: u8 = 1;
pub(super) const KILL: u8 = 2;
pub(super) const PREPARE: u8 = 3;
/// Where launchers prepared from now on stage the jail's system paths ([`super::root`]).
pub(super) const STAGE: u8 = 4;
/// Largest request: a kind, a job number and a plan file's path (or `cgroup.procs` paths).
pub(super) const MAX_REQUEST: usize = 9 + 4096;
/// The answer: job `id` exited with `code` (`-1` if its launcher was killed).
pub(super) const REPLY_LEN: usize = 12;

/// The worker's end of a zygote it forked.
#[derive(Debug)]
pub struct Zygote {
    pub(super) sock: OwnedFd,
}

impl Zygote {
    /// Forks the zygote. Call it while the process has one thread (before any runtime): the
    /// zygote runs on in the forked copy, which holds only the calling thread.
    pub fn start() -> Result<Zygote, JailError> {
        let threads = std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count());
        if threads != 1 {
            return Err(JailError::Threads(threads));
        }
        let (ours, theirs) = seqpacket_pair().map_err(sys("make the zygote's socket"))?;
        // SAFETY: getpid cannot fail.
        let worker = unsafe { libc::getpid() };
        // SAFETY: single-threaded (checked above): the child may allocate and lock freely.
        match unsafe { libc::fork() } {
            -1 => Err(sys("fork the jail's zygote")(io::Error::last_os_error())),
            0 => {
                drop(ours);
                run(theirs, worker)
            }
            _ => Ok(Zygote { sock: ours }),
        }
    }
}

/// A job being run (or prepared): its launcher and the network namespace lent to it.
struct Running {
    id: u64,
    pid: libc::pid_t,
    pidfd: OwnedFd,
    netns: OwnedFd,
    /// Where its plan goes, until it is sent.
    plan_to: Option<OwnedFd>,
}

struct State {
    sock: OwnedFd,
    /// Why the jail cannot work here (told to every job), else the zygote's own namespaces.
    setup: Result<Setup, String>,
    running: Vec<Running>,
    /// Jobs whose launcher could not be prepared, and why: told to the job at its launch.
    failed: Vec<(u64, String)>,
    /// Network namespaces no job holds.
    spare: Vec<OwnedFd>,
    null: OwnedFd,
    /// The dir launchers lay the jail's system paths out at, each in its own namespace.
    stage: Option<PathBuf>,
}

struct Setup {
    /// The zygote's own network namespace, to come back to after making one.
    home: OwnedFd,
}

/// The zygote's life; it ends with the worker (its socket closes, or the parent-death
/// signal).
fn run(sock: OwnedFd, worker: libc::pid_t) -> ! {
    // SAFETY: prctl and getppid touch no memory of ours.
    unsafe {
        let zero: libc::c_ulong = 0;
        let kill = libc::SIGKILL as libc::c_ulong;
        libc::prctl(libc::PR_SET_PDEATHSIG, kill, zero, zero, zero);
        if libc::getppid() != worker {
            libc::_exit(0);
        }
        // A stop signal sent to the worker's whole group (Ctrl-C, systemd) is the worker's to
        // handle: it lets running jobs finish, and the zygote goes with it.
        for signal in STOP_SIGNALS {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
    let null = std::fs::File::open("/dev/null").map(OwnedFd::from);
    let Ok(null) = null else {
        // SAFETY: leaving at once; the worker sees the socket close.
        unsafe { libc::_exit(1) };
    };
    let mut state = State {
        sock,
        setup: setup(),
        running: Vec::new(),
        failed: Vec::new(),
        spare: Vec::new(),
        null,
        stage: None,
    };
    loop {
        if !state.serve_once() {
            for r in &state.running {
                // SAFETY: kill touches no memory; the pid is our own unreaped child.
                unsafe { libc::kill(r.pid, libc::SIGKILL) };
            }
            // SAFETY: nothing of ours needs running down.
            unsafe { libc::_exit(0) };
        }
    }
}

/// Enters a user namespace (non-root: the jails need one, and it is made once here) and a
/// network namespace of the zygote's own.
fn setup() -> Result<Setup, String> {
    // SAFETY: these id calls cannot fail.
    let (euid, uid, gid) = unsafe { (libc::geteuid(), libc::getuid(), libc::getgid()) };
    if euid != 0 {
        // SAFETY: unshare touches no memory.
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
            let e = io::Error::last_os_error();
            return Err(format!("cannot create a user namespace (unshare): {e}"));
        }
        // Our own ids mapped to themselves: no privilege is gained outside the namespace.
        let maps = [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("{uid} {uid} 1")),
            ("/proc/self/gid_map", format!("{gid} {gid} 1")),
        ];
        for (file, text) in maps {
            std::fs::write(file, text).map_err(|e| format!("cannot write {file}: {e}"))?;
        }
    }
    let home =
        new_netns().map_err(|e| format!("cannot create a network namespace (unshare): {e}"))?;
    Ok(Setup { home })
}

/// Moves this process into a new network namespace; returns it.
fn new_netns() -> io::Result<OwnedFd> {
    // SAFETY: unshare touches no memory.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}

impl State {
    /// Waits for a request or a launcher's exit and handles it; `false` once the worker is
    /// gone.
    fn serve_once(&mut self) -> bool {
        let mut polled: Vec<libc::pollfd> = std::iter::once(self.sock.as_raw_fd())
            .chain(self.running.iter().map(|r| r.pidfd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `polled` is a live array of as many pollfds as passed.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
        if n < 0 {
            return io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
        }
        let exited: Vec<usize> = (1..polled.len())
            .filter(|&i| polled[i].revents != 0)
            .map(|i| i - 1)
            .collect();
        for i in exited.into_iter().rev() {
            let r = self.running.swap_remove(i);
            self.reap(r);
        }
        if polled[0].revents == 0 {
            return true;
        }
        match self.receive() {
            Ok(Some((request, fds))) => {
                self.handle(&request, fds);
                true
            }
            Ok(None) => false,
            Err(e) => {
                e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock
            }
        }
    }

    /// Collects a launcher that exited and tells the worker.
    fn reap(&mut self, r: Running) {
        let mut status = 0;
        // SAFETY: `r.pid` is our child, which exited (its pidfd is readable).
        unsafe { libc::waitpid(r.pid, &mut status, 0) };
        let code = match libc::WIFEXITED(status) {
            true => {
                // It waited for the job's init: the job is gone, its namespace free again.
                self.spare.push(r.netns);
                libc::WEXITSTATUS(status)
            }
            false => -1,
        };
        self.reply(r.id, code);
    }

    fn reply(&self, id: u64, code: i32) {
        let mut msg = [0u8; REPLY_LEN];
        msg[..8].copy_from_slice(&id.to_le_bytes());
        msg[8..].copy_from_slice(&code.to_le_bytes());
        // SAFETY: sends from a live buffer of its length.
        unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_NOSIGNAL,
            )
        };
    }

    /// One request and the fds that came with it; `None` when the worker closed its end.
    fn receive(&self) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        let (bytes, fds) = super::launcher::receive(self.sock.as_fd(), MAX_REQUEST)?;
        Ok((!bytes.is_empty()).then_some((bytes, fds)))
    }

    fn handle(&mut self, request: &[u8], fds: Vec<OwnedFd>) {
        let (Some(&kind), Some(id)) = (request.first(), request.get(1..9)) else {
            return;
        };
        let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
        use std::os::unix::ffi::OsStrExt;
        let path = |bytes: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
        match kind {
            KILL => {
                self.failed.retain(|(f, _)| *f != id);
                if let Some(r) = self.running.iter().find(|r| r.id == id) {
                    // SAFETY: kill touches no memory; the pid is our own unreaped child.
                    unsafe { libc::kill(r.pid, libc::SIGKILL) };
                }
            }
            STAGE => self.stage = Some(path(&request[9..])),
            PREPARE => {
                let procs: Vec<PathBuf> = request[9..]
                    .split(|&b| b == 0)
                    .filter(|p| !p.is_empty())
                    .map(path)
                    .collect();
                if let Err(why) = self.prepare(id, &procs) {
                    self.failed.push((id, why));
                }
            }
            // The job's stderr was told why.
            LAUNCH if self.launch(id, &request[9..], fds).is_err() => {
                self.reply(id, LAUNCH_FAILED);
            }
            _ => {}
        }
    }

    /// Forks the launcher of job `id`, which joins the cgroups `procs` and waits for its plan.
    fn prepare(&mut self, id: u64, procs: &[PathBuf]) -> Result<(), String> {
        let home = match &self.setup {
            Ok(s) => s.home.as_raw_fd(),
            Err(e) => return Err(e.clone()),
        };
        let netns = match self.spare.pop() {
            Some(ns) => ns,
            None => lend_new_netns(home)
                .map_err(|e| format!("cannot create a network namespace (unshare): {e}"))?,
        };
        let (plan_to, plan_from) =
            seqpacket_pair().map_err(|e| format!("cannot make the launcher's socket: {e}"))?;
        // SAFETY: the zygote is single-threaded: the child may allocate and lock freely.
        let pid = match unsafe { libc::fork() } {
            -1 => {
                self.spare.push(netns);
                let e = io::Error::last_os_error();
                return Err(format!("cannot fork the launcher: {e}"));
            }
            0 => launcher(self, procs, plan_from, netns.as_fd()),
            pid => pid,
        };
        // SAFETY: pidfd_open returns a new fd or -1.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as RawFd;
        if pidfd < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: our own child, never waited for otherwise.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return Err(format!("cannot follow the launcher (pidfd_open): {e}"));
        }
        self.running.push(Running {
            id,
            pid,
            // SAFETY: a new fd, owned here alone.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
            netns,
            plan_to: Some(plan_to),
        });
        Ok(())
    }

    /// Sends job `id`'s prepared launcher its plan and its stdout and stderr, `fds`.
    fn launch(&mut self, id: u64, plan: &[u8], fds: Vec<OwnedFd>) -> Result<(), String> {
        let [out, err]: [OwnedFd; 2] = fds
            .try_into()
            .map_err(|_| "a launch needs two fds".to_string())?;
        let err_fd = err.as_raw_fd();
        let tell = |what: &str| {
            let line = format!("{LAUNCH_ERROR_PREFIX}{what}\n");
            // SAFETY: writes from a live buffer of its length.
            unsafe { libc::write(err_fd, line.as_ptr().cast(), line.len()) };
            what.to_string()
        };
        if let Some(i) = self.failed.iter().position(|(f, _)| *f == id) {
            return Err(tell(&self.failed.swap_remove(i).1));
        }
        let plan_to = self
            .running
            .iter_mut()
            .find(|r| r.id == id)
            .and_then(|r| r.plan_to.take())
            .ok_or_else(|| tell("the job's launcher is gone"))?;
        super::launcher::send_with_fds(plan_to.as_fd(), plan, &[out, err])
            .map_err(|e| tell(&format!("cannot hand the launcher its plan: {e}")))
    }
}

/// A connected pair of seqpacket sockets (close-on-exec).
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut pair = [0 as RawFd; 2];
    let kind = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    // SAFETY: socketpair writes two fds into `pair`.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind, 0, pair.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just made and are owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) })
}

/// A new network namespace, the zygote back in its own after making it.
fn lend_new_netns(home: RawFd) -> io::Result<OwnedFd> {
    let made = new_netns();
    // SAFETY: setns touches no memory; `home` is the zygote's own namespace fd.
    if unsafe { libc::setns(home, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    made
}

/// The forked launcher: in the job's cgroups (`procs`) at once, its namespaces made and the
/// system paths staged, then, once its plan and the job's stdio came on `plan_from`, the jail
/// built, rustc run and waited for.
fn launcher(state: &State, procs: &[PathBuf], plan_from: OwnedFd, netns: BorrowedFd) -> ! {
    // SAFETY: getppid, prctl, close and _exit touch no memory of ours.
    unsafe {
        let zygote = libc::getppid();
        let zero: libc::c_ulong = 0;
        let kill = libc::SIGKILL as libc::c_ulong;
        libc::prctl(libc::PR_SET_PDEATHSIG, kill, zero, zero, zero);
        for signal in STOP_SIGNALS {
            libc::signal(signal, libc::SIG_DFL);
        }
        if libc::getppid() != zygote {
            libc::_exit(LAUNCH_FAILED);
        }
        // The worker must see the socket close when the zygote goes, whatever runs here.
        libc::close(state.sock.as_raw_fd());
    }
    // Before anything else, so that every process of the job is in the job's cgroups.
    let joined = procs.iter().try_for_each(|procs| {
        std::fs::write(procs, std::process::id().to_string())
            .map_err(|e| format!("cannot join the job's cgroup ({}): {e}", procs.display()))
    });
    // While no job waits: told to the job, if it failed, once its stderr is here.
    let staged = joined
        .map_err(JailError::Cgroup)
        .and_then(|()| super::before_plan(state.stage.as_deref(), netns));
    let (plan, fds) = match super::launcher::receive(plan_from.as_fd(), MAX_REQUEST) {
        Ok((plan, fds)) if !plan.is_empty() && fds.len() == 2 => (plan, fds),
        // SAFETY: leaving without running the forked copy's destructors.
        _ => unsafe { libc::_exit(LAUNCH_FAILED) },
    };
    drop(plan_from);
    // SAFETY: dup2 and _exit touch no memory of ours.
    unsafe {
        let ok = libc::dup2(state.null.as_raw_fd(), 0) >= 0
            && libc::dup2(fds[0].as_raw_fd(), 1) >= 0
            && libc::dup2(fds[1].as_raw_fd(), 2) >= 0;
        if !ok {
            libc::_exit(LAUNCH_FAILED);
        }
    }
    drop(fds);
    use std::os::unix::ffi::OsStrExt;
    let plan = std::path::Path::new(std::ffi::OsStr::from_bytes(&plan));
    let code = match staged.and_then(|staged| run_plan(plan, staged.as_ref())) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{LAUNCH_ERROR_PREFIX}cannot start the job's rustc: {e}");
            LAUNCH_FAILED
        }
    };
    // SAFETY: leaving without running the forked copy's destructors.
    unsafe { libc::_exit(code) }
}

fn run_plan(
    plan: &std::path::Path,
    staged: Option<&super::root::Staged>,
) -> Result<i32, JailError> {
    let bytes = std::fs::read(plan).map_err(sys(format!("read the plan {}", plan.display())))?;
    let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| JailError::Plan(e.to_string()))?;
    super::launch(&plan, staged)
}
