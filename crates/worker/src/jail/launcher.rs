//! The worker's side of the jail's [zygote](super::zygote): [`Launcher::prepare`] forks a
//! job's launcher ahead of the job, in the job's cgroups ([`Prepared`]); [`Prepared::launch`]
//! hands it its plan, starting the compiler in the jail, and gives back its stdout and stderr
//! pipes and a [`Launched`] to wait on (and to kill the job by dropping it).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};

use super::zygote::{Zygote, KILL, LAUNCH, MAX_REQUEST, PREPARE, REPLY_LEN, STAGE};
use super::{sys, JailError};

/// Starts jobs through the zygote; cheap to share.
#[derive(Debug, Clone)]
pub struct Launcher {
    to_driver: mpsc::UnboundedSender<Order>,
    next_id: Arc<AtomicU64>,
    /// Turns `true` when the zygote is gone.
    gone: watch::Receiver<bool>,
}

enum Order {
    Prepare {
        id: u64,
        cgroup_procs: Vec<PathBuf>,
        exit: oneshot::Sender<i32>,
    },
    Launch {
        id: u64,
        plan: PathBuf,
        fds: [OwnedFd; 2],
    },
    Kill(u64),
    Stage(PathBuf),
}

/// A launcher forked ahead of its job, in the job's cgroups, waiting for its plan. Dropped
/// unused, it is killed.
#[derive(Debug)]
pub struct Prepared {
    id: u64,
    /// Taken by [`Prepared::launch`].
    exit: Option<oneshot::Receiver<i32>>,
    to_driver: mpsc::UnboundedSender<Order>,
}

impl Prepared {
    /// Hands the launcher its `plan` (a [`super::Plan`] as JSON): it builds the jail and
    /// starts the compiler.
    pub fn launch(mut self, plan: &Path) -> Result<Launched, JailError> {
        let mut exit = self
            .exit
            .take()
            .expect("a prepared launcher is launched once");
        // Killed while it waited (it never exits by itself before its plan comes).
        if !matches!(exit.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return Err(JailError::LauncherGone);
        }
        let (out_r, out_w) = pipe_pair()?;
        let (err_r, err_w) = pipe_pair()?;
        let order = Order::Launch {
            id: self.id,
            plan: plan.to_owned(),
            fds: [out_w, err_w],
        };
        self.to_driver
            .send(order)
            .map_err(|_| JailError::ZygoteGone)?;
        let receiver = |fd| pipe::Receiver::from_owned_fd(fd).map_err(sys("read a job's pipe"));
        Ok(Launched {
            stdout: Some(receiver(out_r)?),
            stderr: Some(receiver(err_r)?),
            id: self.id,
            exit,
            exited: false,
            to_driver: self.to_driver.clone(),
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.exit.is_some() {
            let _ = self.to_driver.send(Order::Kill(self.id));
        }
    }
}

/// A job's compiler, started: its output, and its exit to wait for. Dropped before it exited,
/// it kills the job.
#[derive(Debug)]
pub struct Launched {
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    id: u64,
    exit: oneshot::Receiver<i32>,
    exited: bool,
    to_driver: mpsc::UnboundedSender<Order>,
}

impl Launched {
    /// The launcher's exit code: rustc's, [`super::LAUNCH_FAILED`] if it could not start it,
    /// `-1` if it was killed.
    pub async fn wait(&mut self) -> Result<i32, JailError> {
        let code = (&mut self.exit).await.map_err(|_| JailError::ZygoteGone)?;
        self.exited = true;
        Ok(code)
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.to_driver.send(Order::Kill(self.id));
        }
    }
}

impl Launcher {
    /// Takes over the zygote's socket; call it within the tokio runtime.
    pub fn new(zygote: Zygote) -> Result<Launcher, JailError> {
        set_nonblocking(zygote.sock.as_raw_fd())?;
        // SAFETY: an OwnedFd keeps its one fd open until the AsyncFd drops it.
        let sock = unsafe { AsyncFd::register(zygote.sock) }
            .map_err(|e| sys("watch the zygote's socket")(e.into()))?;
        let (to_driver, orders) = mpsc::unbounded_channel();
        let (gone_tx, gone) = watch::channel(false);
        tokio::spawn(async move {
            drive(sock, orders).await;
            let _ = gone_tx.send(true);
        });
        Ok(Launcher {
            to_driver,
            next_id: Arc::new(AtomicU64::new(1)),
            gone,
        })
    }

    /// Forks a launcher for a job to come: it joins the cgroups whose `cgroup.procs` files
    /// are given, then waits for its plan. Joining a cgroup waits for an RCU grace period
    /// (8-28 ms measured on a v1 memory controller), so a worker does it before the job
    /// comes, not between the job and its compiler.
    pub fn prepare(&self, cgroup_procs: Vec<PathBuf>) -> Result<Prepared, JailError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (exit_tx, exit) = oneshot::channel();
        let order = Order::Prepare {
            id,
            cgroup_procs,
            exit: exit_tx,
        };
        self.to_driver
            .send(order)
            .map_err(|_| JailError::ZygoteGone)?;
        Ok(Prepared {
            id,
            exit: Some(exit),
            to_driver: self.to_driver.clone(),
        })
    }

    /// Launchers prepared from now on lay the jail's system paths out at `dir` (an empty
    /// dir, outside every job root) while they wait for their job: a job then starts its
    /// compiler a millisecond sooner. Each does in a mount namespace of its own: the worker
    /// sees `dir` stay empty.
    pub fn stage_at(&self, dir: PathBuf) -> Result<(), JailError> {
        self.to_driver
            .send(Order::Stage(dir))
            .map_err(|_| JailError::ZygoteGone)
    }

    /// Starts a launcher on `plan` at once, in no cgroup of its own.
    pub fn launch(&self, plan: &Path) -> Result<Launched, JailError> {
        self.prepare(Vec::new())?.launch(plan)
    }

    /// Returns once the zygote is gone (no job can start any more).
    pub async fn gone(&self) {
        let mut gone = self.gone.clone();
        let _ = gone.wait_for(|g| *g).await;
    }
}

/// Sends orders to the zygote and hands its answers to the jobs waiting for them, until the
/// zygote or every [`Launcher`] is gone.
async fn drive(sock: AsyncFd<OwnedFd>, mut orders: mpsc::UnboundedReceiver<Order>) {
    let mut waiting: HashMap<u64, oneshot::Sender<i32>> = HashMap::new();
    loop {
        tokio::select! {
            order = orders.recv() => match order {
                None => return,
                Some(Order::Prepare { id, cgroup_procs, exit }) => {
                    let mut msg = vec![PREPARE];
                    msg.extend_from_slice(&id.to_le_bytes());
                    let paths: Vec<&[u8]> =
                        cgroup_procs.iter().map(|p| p.as_os_str().as_bytes()).collect();
                    msg.extend(paths.join(&0));
                    if msg.len() <= MAX_REQUEST && send(&sock, &msg, &[]).await.is_ok() {
                        waiting.insert(id, exit);
                    }
                }
                Some(Order::Launch { id, plan, fds }) => {
                    let mut msg = vec![LAUNCH];
                    msg.extend_from_slice(&id.to_le_bytes());
                    msg.extend_from_slice(plan.as_os_str().as_bytes());
                    if msg.len() > MAX_REQUEST || send(&sock, &msg, &fds).await.is_err() {
                        // Its exit never comes: the job sees the zygote gone.
                        waiting.remove(&id);
                    }
                    // Our copies of the job's pipe ends close here: only the job holds them.
                }
                Some(Order::Stage(dir)) => {
                    let mut msg = vec![STAGE];
                    msg.extend_from_slice(&0u64.to_le_bytes());
                    msg.extend_from_slice(dir.as_os_str().as_bytes());
                    if msg.len() <= MAX_REQUEST {
                        let _ = send(&sock, &msg, &[]).await;
                    }
                }
                Some(Order::Kill(id)) => {
                    if waiting.remove(&id).is_some() {
                        let mut msg = vec![KILL];
                        msg.extend_from_slice(&id.to_le_bytes());
                        let _ = send(&sock, &msg, &[]).await;
                    }
                }
            },
            ready = sock.readable() => {
                let Ok(mut ready) = ready else { return };
                match ready.try_io(|s| receive(s.get_ref().as_fd(), REPLY_LEN)) {
                    Err(_would_block) => continue,
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(Err(_)) => return,
                    Ok(Ok((bytes, _))) if bytes.is_empty() => return,
                    Ok(Ok((bytes, _))) => {
                        let Ok(reply) = <[u8; REPLY_LEN]>::try_from(bytes.as_slice()) else {
                            continue;
                        };
                        let id = u64::from_le_bytes(reply[..8].try_into().expect("8 bytes"));
                        let code = i32::from_le_bytes(reply[8..].try_into().expect("4 bytes"));
                        if let Some(exit) = waiting.remove(&id) {
                            let _ = exit.send(code);
                        }
                    }
                }
            }
        }
    }
}

async fn send(sock: &AsyncFd<OwnedFd>, msg: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    loop {
        let mut ready = sock.writable().await?;
        match ready.try_io(|s| send_with_fds(s.get_ref().as_fd(), msg, fds)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

/// One message with `fds` attached (`SCM_RIGHTS`).
pub(super) fn send_with_fds(sock: BorrowedFd, msg: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let fds_len = std::mem::size_of_val(raw.as_slice());
    // SAFETY: CMSG_SPACE computes a size.
    let space = unsafe { libc::CMSG_SPACE(fds_len as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut _,
        iov_len: msg.len(),
    };
    // SAFETY: msghdr is plain old data.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    if !raw.is_empty() {
        header.msg_control = control.as_mut_ptr().cast();
        header.msg_controllen = space as _;
        // SAFETY: the control buffer holds one header with room for `raw`.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&header);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fds_len as u32) as _;
            std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cmsg).cast(), raw.len());
        }
    }
    // SAFETY: the header points at live buffers.
    match unsafe { libc::sendmsg(sock.as_raw_fd(), &header, libc::MSG_NOSIGNAL) } {
        n if n < 0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// One message (at most `max` bytes) and the fds that came with it (close-on-exec); empty
/// bytes when the other end closed.
pub(super) fn receive(sock: BorrowedFd, max: usize) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    const MAX_FDS: usize = 4;
    let mut buf = vec![0u8; max];
    // SAFETY: CMSG_SPACE computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    let mut control = vec![0u64; (space as usize).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = &mut iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = space as _;
    // SAFETY: the header points at live buffers of the sizes it names.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut header, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walks the control messages the kernel wrote, within `controllen`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&header, cmsg);
        }
    }
    // A truncated message is no request of ours.
    if header.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Ok((vec![0xff], Vec::new()));
    }
    buf.truncate(n as usize);
    Ok((buf, fds))
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), JailError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(sys("make a job's pipe")(io::Error::last_os_error()));
    }
    // SAFETY: both fds were just made and are owned here alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn set_nonblocking(fd: RawFd) -> Result<(), JailError> {
    // SAFETY: fcntl on an fd we own.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    match ok {
        true => Ok(()),
        false => Err(sys("set the zygote's socket non-blocking")(
            io::Error::last_os_error(),
        )),
    }
}
