//! Launchers made ahead of time ("zygotes"), Linux: a process that has already joined a fresh
//! set of run cgroups and waits on a socket for what to run. A launch then costs one message
//! and the agent's `execve`; creating the groups (about 0.3 ms) and joining the v1 hierarchies (an
//! RCU grace period, 12 to 15 ms after a quiet spell on a hybrid host) were paid before the
//! request, on the pool's own thread.
//!
//! A launcher is a `clone(CLONE_VM)` child, like `posix_spawn`'s, but not suspending its parent:
//! it shares the supervisor's memory until its `execve`, so that exec drops a reference instead
//! of tearing down a copied address space (a forked copy of a 30 MiB process took 2.6 ms to exec
//! here, against 0.5 ms). It runs on its own stack, makes system calls only and touches only
//! memory the parent prepared and keeps alive until the launcher has exec'd or exited. It holds
//! nothing but its own descriptors, and exits by itself when the supervisor closes (or, dying,
//! loses) the command channel, so an unused one never outlives its supervisor.
//!
//! A confined run's launcher applies its sandbox as the direct path's child does: the run's
//! Landlock rulesets come with the go byte (`SCM_RIGHTS`), the seccomp filter is read from the
//! shared memory, and the filter's listener goes back to the supervisor on the status channel
//! before the exec, so that the agent never holds it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::stat::Mode;

use super::native::{NativeLaunch, Started};
use super::vfork::{
    clone_blocked, close_from, handled_signals, pipe, slots_refused, take_slots, unshare_below,
    SlotGuard,
};
use crate::sandbox::rlimit::RlimitSet;
use crate::sandbox::seccomp::Filter;

/// Largest argv plus environment a zygote takes (the direct path takes the rest).
const BUF: usize = 256 * 1024;
/// Most argv plus environment entries a zygote takes.
const MAX_PTRS: usize = 8192;
const MAGIC: u32 = 0x5a59_4701;

/// What the parent sends first: fixed-size, copied as bytes between two copies of one binary.
#[repr(C)]
#[derive(Clone, Copy)]
struct Header {
    magic: u32,
    /// Bytes of NUL-terminated strings that follow: program, cwd, argv..., env...
    len: u32,
    argc: u32,
    envc: u32,
    has_affinity: u32,
    rlimits: RlimitSet,
    affinity: libc::cpu_set_t,
    /// The sandbox: how many Landlock rulesets came with the go byte, the flags to restrict
    /// with, and the seccomp filter (notifying; `len` 0 for none), whose listener the launcher
    /// sends back on the status channel.
    landlock_count: u32,
    landlock_flags: u32,
    seccomp: libc::sock_fprog,
}

/// Most Landlock rulesets a launcher takes with its command (a run has two at most).
const MAX_RULESETS: usize = 4;

/// How long `exec` spins, at most, for the launcher's exec before it sleeps. The launcher is
/// woken on another CPU than the parent's and the parent spins meanwhile, so that the agent's
/// start-up (a dynamic loader: 0.5 to 1 ms) runs there and the parent is never queued behind it.
/// Sleeping instead, the parent left its CPU idle: the kernel then moved the exec onto it (an
/// exec goes to the idlest CPU) and woke the parent there too, behind the agent, in four
/// launches of ten (measured with ftrace on two virtual CPUs: a launch took 1 ms instead of
/// 0.3). A millisecond covers waking an idle virtual CPU here (median 0.09 ms, p90 0.2 ms).
const SPIN: std::time::Duration = std::time::Duration::from_millis(1);

/// Memory the launcher uses, prepared by the parent and kept alive (boxed, never moved) until
/// the launcher has exec'd or exited.
struct Shared {
    header: Header,
    buf: Vec<u8>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    handled: Vec<libc::c_int>,
    /// Non-zero while the launcher uses this memory: the kernel zeroes it, and wakes its futex,
    /// when the launcher execs or exits (`CLONE_CHILD_CLEARTID`).
    live: std::sync::atomic::AtomicI32,
    /// Whether the launcher waits as `SCHED_BATCH` (the supervisor runs as `SCHED_OTHER`).
    batch: bool,
    cgroup_fds: Vec<RawFd>,
    /// /dev/null, stdout write end, stderr write end, the launcher's ends of the command and
    /// status channels (Unix datagram-sequence sockets: descriptors travel with their
    /// messages).
    fds: [RawFd; 5],
    /// Started sharing the parent's descriptor table: see `vfork::unshare_below`.
    unshare_from: Option<RawFd>,
    /// Set by a launcher that could not unshare the table.
    unshare_refused: std::sync::atomic::AtomicBool,
    /// A seccomp filter (notifying; `len` 0 for none) the launcher installs before it says it
    /// is ready, sending its listener with that word: a run confined by that very filter then
    /// pays nothing for it at launch (its installation is about 40 µs, the largest part of a
    /// confined launch). Written before the clone, never after.
    prefilter: libc::sock_fprog,
}

/// A launcher, ready: joined to its groups and waiting for a command.
pub struct Zygote {
    pub pid: i32,
    /// The command channel's end: the go byte, with the run's Landlock rulesets.
    cmd: Option<OwnedFd>,
    status: OwnedFd,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Shared with the launcher while it lives.
    mem: Option<Box<Shared>>,
    stack: Option<Vec<u8>>,
    /// The descriptor slots the launcher started from, until it is ready (it has its own
    /// descriptor table by then).
    slots: Option<SlotGuard>,
    /// The filter the launcher installed while it got ready, and its listener.
    filter: Option<&'static Filter>,
    listener: Option<OwnedFd>,
}

// SAFETY: `Zygote` is not `Send` by itself only for the raw pointers in `Shared::argv`,
// `Shared::envp`, the header's seccomp program and `Shared::prefilter` (written before the
// clone, never after). No thread of the supervisor dereferences
// them: they are null, or point into `Shared::buf` of the same box or into a filter cached for
// the life of the process, and only the launcher (another process, which does not care
// which thread owns the `Zygote`) follows them, before its exec. Moving the `Zygote` moves
// the box pointer, not the memory the launcher uses. Everything else in it (descriptors,
// `Vec`s, atomics, the slot guard's `&'static SlotSet`) is `Send`. There is no `Sync`.
unsafe impl Send for Zygote {}

impl std::fmt::Debug for Zygote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Zygote").field("pid", &self.pid).finish()
    }
}

const STACK: usize = 64 * 1024;

/// Writes to every page, so the parent (not the launcher, in the run's memory group) faults
/// them in.
///
/// # Safety
/// `p` must be valid for writes of `len` bytes, and zero bytes must be a valid value for
/// whatever lives there (the callers pass byte buffers and arrays of null pointers).
unsafe fn prefault(p: *mut u8, len: usize) {
    for off in (0..len).step_by(4096) {
        // SAFETY: `off < len`, so `p + off` is inside the range the caller vouches for; a
        // byte write needs no alignment.
        unsafe { std::ptr::write_volatile(p.add(off), 0) };
    }
}

/// Writes all of `buf` (the supervisor's side only).
fn write_full(fd: impl AsFd, buf: &[u8]) -> io::Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        match nix::unistd::write(fd.as_fd(), &buf[done..]) {
            Ok(n) => done += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The go byte, with `fds` (the run's Landlock rulesets) where there are any.
fn send_go(cmd: &OwnedFd, fds: &[RawFd]) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    if fds.is_empty() {
        return write_full(cmd, b"x");
    }
    let iov = [io::IoSlice::new(b"x")];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<()>(cmd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(io::Error::other("the go byte was not sent")),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The launcher: never returns.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the boxed `Shared` of `Zygote::start`, whose `live` word is this
    // process's `CLONE_CHILD_CLEARTID` address: the parent keeps the box (and this stack)
    // until the kernel has zeroed `live` at this process's exec or exit, or leaks them (see
    // `Zygote::release`), and writes only the fields `launcher` reads after the go byte,
    // before sending it. This is a `CLONE_VM` child with every signal blocked, as `launcher`
    // requires.
    unsafe { launcher(arg as *mut Shared) }
}

/// Reports errno on the status channel and exits: the launcher's way out of a failed step.
///
/// # Safety
/// Only in the launcher, never in the supervisor: it `_exit`s the calling process. In the
/// launcher that is the only correct exit, since `exit` would run the supervisor's atexit
/// handlers and flush its stdio buffers in the memory this process shares with it. The
/// `write` reads the 4 bytes of the local `e`; a bad `status` only makes it fail.
unsafe fn fail(status: RawFd) -> ! {
    // errno, read where this process left it (no allocation: an OS error is stored inline).
    let e = io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
        .max(1);
    fail_with(status, e)
}

/// As `fail`, with the error given.
///
/// # Safety
/// As `fail`: only in the launcher.
unsafe fn fail_with(status: RawFd, e: i32) -> ! {
    libc::write(status, (&e as *const i32).cast(), 4);
    libc::_exit(127)
}

/// The launcher's whole life, from its clone to its exec.
///
/// # Safety
/// - Runs only as the `CLONE_VM` child `Zygote::start` clones (on its own stack, every signal
///   blocked): it shares the supervisor's memory and the calling thread's thread-local storage
///   while that thread goes on running, so it makes raw system calls only, never allocates,
///   frees or takes a lock (malloc's per-thread cache is that thread's), and never unwinds.
///   Everything stays raw libc, even where nix has a thin wrapper, so that this stays plainly
///   auditable as system calls. errno is that thread's too: an error number read here may, in
///   a rare race, be one the supervisor's thread set; only the reported number can be wrong.
/// - `shared` points to a live `Shared` that stays put (boxed) until the kernel zeroes `live`
///   at this process's exec or exit. The parent writes `header` and `buf` until the go byte,
///   and nothing after it until `live` is zero: before the go byte only the fields it never
///   writes (`fds`, `unshare_from`, `handled`, `batch`, `cgroup_fds`) are read, besides the
///   atomic `unshare_refused`, and the whole is borrowed (`&mut`) only after. `live` itself
///   is written only by the kernel.
/// - `fds` and `cgroup_fds` are open descriptors of the table this process starts with (the
///   slots, with `unshare_from`, or a copy of the parent's table).
/// - The header's `seccomp` program, and `prefilter`, point into a filter the supervisor caches
///   for its whole life (`sandbox::seccomp::filter`); the Landlock rulesets are this process's own copies,
///   received with the go byte. Both restrict this task only, not the supervisor whose memory
///   (but not credentials or filters) it shares.
unsafe fn launcher(shared: *mut Shared) -> ! {
    let fds = (*shared).fds;
    let status0 = fds[4];
    if let Some(end) = (*shared).unshare_from {
        if !unshare_below(end) {
            (*shared)
                .unshare_refused
                .store(true, std::sync::atomic::Ordering::SeqCst);
            fail(status0);
        }
    }
    for &sig in &(*shared).handled {
        libc::signal(sig, libc::SIG_DFL);
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    if libc::setpgid(0, 0) != 0 {
        fail(status0);
    }
    // Woken as a batch task, the launcher does not preempt the supervisor where they share a
    // CPU: the supervisor wrote the go byte and is about to wait for the exec, and preempted
    // there it stayed queued behind the agent's own start-up (0.5 to 1 ms of a dynamic loader).
    // Back to the supervisor's policy before the exec.
    let batch = (*shared).batch;
    let param = libc::sched_param { sched_priority: 0 };
    if batch {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
    for &fd in &(*shared).cgroup_fds {
        if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
            fail(status0);
        }
    }
    // Every descriptor this process keeps, above the ones it will land on, then in place.
    let mut high = [0; 5];
    for (i, &fd) in fds.iter().enumerate() {
        high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
        if high[i] < 0 {
            fail(status0);
        }
    }
    for (i, &fd) in high.iter().enumerate() {
        // dup2 clears close-on-exec on 0, 1 and 2; 3 and 4 get it back below.
        if libc::dup2(fd, i as RawFd) < 0 {
            fail(status0);
        }
    }
    let (cmd, status) = (3, 4);
    if libc::fcntl(cmd, libc::F_SETFD, libc::FD_CLOEXEC) != 0
        || libc::fcntl(status, libc::F_SETFD, libc::FD_CLOEXEC) != 0
    {
        fail(status0);
    }
    // Nothing else of the supervisor's: no other agent's pipe stays open through this one.
    close_from(5);
    // Ready (errno 0): the groups are joined, and the filter asked for ahead is installed, its
    // listener sent with the word.
    let prefilter = (*shared).prefilter;
    if prefilter.len > 0 {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            fail(status);
        }
        install_filter(status, &prefilter);
    } else {
        let ready = 0i32;
        if libc::write(status, (&ready as *const i32).cast(), 4) != 4 {
            libc::_exit(1);
        }
    }
    // One byte says the command is in the shared memory; end of file, that none will come.
    // The run's Landlock rulesets come with it, into this process's table (close-on-exec).
    let mut rulesets = [-1 as RawFd; MAX_RULESETS];
    let got = recv_go(cmd, &mut rulesets);
    if got < 0 {
        libc::_exit(0);
    }
    libc::close(cmd);
    // From the go byte on, the parent leaves the memory to this process until it exec'd.
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    let h = std::ptr::read_volatile(std::ptr::addr_of!((*shared).header));
    let m = &mut *shared;
    let len = h.len as usize;
    if h.magic != MAGIC || len > m.buf.len() {
        fail_with(status, libc::E2BIG);
    }
    // The strings: program, cwd, argc args, envc variables, each NUL-terminated.
    let buf = &m.buf[..len];
    let mut at = 0usize;
    let mut next = || -> Option<*const libc::c_char> {
        let start = at;
        let nul = buf[start..].iter().position(|&b| b == 0)?;
        at = start + nul + 1;
        Some(buf[start..].as_ptr().cast())
    };
    let (argc, envc) = (h.argc as usize, h.envc as usize);
    if argc + 2 > m.argv.len() || envc + 1 > m.envp.len() {
        fail_with(status, libc::E2BIG);
    }
    let (Some(program), Some(cwd)) = (next(), next()) else {
        fail_with(status, libc::EINVAL);
    };
    for i in 0..argc {
        let Some(p) = next() else {
            fail_with(status, libc::EINVAL);
        };
        m.argv[i] = p;
    }
    let argc = if argc == 0 {
        m.argv[0] = program;
        1
    } else {
        argc
    };
    m.argv[argc] = std::ptr::null();
    for i in 0..envc {
        let Some(p) = next() else {
            fail_with(status, libc::EINVAL);
        };
        m.envp[i] = p;
    }
    m.envp[envc] = std::ptr::null();
    if h.landlock_count as isize != got {
        fail_with(status, libc::EBADMSG);
    }
    // The sandbox, before the rlimits (a tiny open-files limit would refuse the listener):
    // Landlock by descriptor, then the seccomp filter, whose listener goes to the parent.
    if (got > 0 || h.seccomp.len > 0)
        && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0
    {
        fail(status);
    }
    for &fd in &rulesets[..got as usize] {
        if libc::syscall(libc::SYS_landlock_restrict_self, fd, h.landlock_flags) != 0 {
            fail(status);
        }
        libc::close(fd);
    }
    if h.seccomp.len > 0 {
        install_filter(status, &h.seccomp);
    }
    if h.rlimits.apply().is_err() {
        fail(status);
    }
    // The CPUs the agent may use: its own set, else the supervisor's (this launcher was held
    // off the parent's CPU, or on it, for the wake-up).
    if h.has_affinity != 0
        && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &h.affinity) != 0
    {
        fail(status);
    }
    if libc::chdir(cwd) != 0 {
        fail(status);
    }
    if batch && libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) != 0 {
        fail(status);
    }
    libc::execve(program, m.argv.as_ptr(), m.envp.as_ptr());
    fail(status)
}

/// Installs the seccomp filter `prog` (no-new-privileges already set) and sends its listener to
/// the parent on `status`; on failure, reports errno there and exits. The launcher's side.
///
/// # Safety
/// Only in the launcher (see `launcher`); `prog` points into a filter cached for the life of
/// the supervisor.
unsafe fn install_filter(status: RawFd, prog: &libc::sock_fprog) {
    let listener = libc::syscall(
        libc::SYS_seccomp,
        libc::SECCOMP_SET_MODE_FILTER,
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as libc::c_uint,
        prog as *const libc::sock_fprog,
    );
    if listener < 0 || !send_listener(status, listener as RawFd) {
        fail(status);
    }
    libc::close(listener as RawFd);
}

/// A message header for the one buffer `iov` and the first `control_len` bytes of `control`
/// (at most its size). The launcher's side: no allocation.
///
/// # Safety
/// The header points into `iov` and `control`: it is used only while they live, unmoved.
unsafe fn message(iov: &mut libc::iovec, control: &mut [u64], control_len: usize) -> libc::msghdr {
    // All-zero is a valid `msghdr`: null pointers and zero lengths, filled in below.
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control_len.min(std::mem::size_of_val(control)) as _;
    msg
}

/// Receives the go byte on `cmd`, and the descriptors that come with it into `fds`: their
/// count, or -1 at end of file (or a failed read). The launcher's side.
///
/// # Safety
/// Only in the launcher (see `launcher`): raw system calls on its own stack's locals.
unsafe fn recv_go(cmd: RawFd, fds: &mut [RawFd; MAX_RULESETS]) -> isize {
    let mut go = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: go.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one SCM_RIGHTS message of `MAX_RULESETS` descriptors, aligned as a cmsghdr.
    let mut control = [0u64; 8];
    let len = std::mem::size_of_val(&control);
    let mut msg = message(&mut iov, &mut control, len);
    let n = loop {
        let n = libc::recvmsg(cmd, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break n;
    };
    if n != 1 {
        return -1;
    }
    let mut count = 0usize;
    let mut c = libc::CMSG_FIRSTHDR(&msg);
    while !c.is_null() {
        if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
            let data = libc::CMSG_DATA(c) as *const RawFd;
            let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
            for i in 0..len / std::mem::size_of::<RawFd>() {
                let fd = std::ptr::read_unaligned(data.add(i));
                if count < MAX_RULESETS {
                    fds[count] = fd;
                    count += 1;
                } else {
                    libc::close(fd);
                }
            }
        }
        c = libc::CMSG_NXTHDR(&msg, c);
    }
    count as isize
}

/// Sends the seccomp filter's `listener` to the parent on `status` (four zero bytes with it):
/// whether it went. The launcher's side.
///
/// # Safety
/// Only in the launcher (see `launcher`): raw system calls on its own stack's locals.
unsafe fn send_listener(status: RawFd, listener: RawFd) -> bool {
    let zero = 0i32;
    let mut iov = libc::iovec {
        iov_base: (&zero as *const i32).cast_mut().cast(),
        iov_len: 4,
    };
    let mut control = [0u64; 4];
    let len = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
    let msg = message(&mut iov, &mut control, len);
    let c = libc::CMSG_FIRSTHDR(&msg);
    (*c).cmsg_level = libc::SOL_SOCKET;
    (*c).cmsg_type = libc::SCM_RIGHTS;
    (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, listener);
    libc::sendmsg(status, &msg, libc::MSG_NOSIGNAL) == 4
}

/// A connected pair of Unix datagram-sequence sockets, close-on-exec: a launcher's command or
/// status channel (a pipe that carries descriptors, and keeps message boundaries).
fn channel() -> io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    crate::sampler::budget::FdBudget::global().saw(&b);
    Ok((a, b))
}

impl Zygote {
    /// Starts a launcher that joins the groups of `cgroup_fds` (`cgroup.procs`, open for
    /// writing), installs `filter` if given, and then waits for a command; `wait_ready` tells
    /// when it is ready.
    pub fn start(cgroup_fds: &[RawFd], filter: Option<&'static Filter>) -> io::Result<Zygote> {
        let devnull = open(
            c"/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let (cmd_r, cmd_w) = channel()?;
        let (status_r, status_w) = channel()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let mut fds = vec![
            devnull.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
            cmd_r.as_raw_fd(),
            status_w.as_raw_fd(),
        ];
        fds.extend_from_slice(cgroup_fds);
        // Started on the parent's descriptor table, which the launcher unshares at once, keeping
        // only the slots: no copy of the supervisor's thousands of descriptors.
        let slots = take_slots(&mut fds);
        let mut flags = libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD;
        if slots.is_some() {
            flags |= libc::CLONE_FILES;
        }
        let mut mem = Box::new(Shared {
            // SAFETY: `Header` is `repr(C)` plain data: `u32`s, an `RlimitSet` (integers), a
            // `cpu_set_t` (an integer array) and a `sock_fprog` (a length and a raw pointer,
            // null when zeroed, which means no filter); all-zero is a valid value of each.
            header: unsafe { std::mem::zeroed() },
            buf: vec![0u8; BUF],
            argv: vec![std::ptr::null(); MAX_PTRS],
            envp: vec![std::ptr::null(); MAX_PTRS],
            handled: handled_signals(),
            live: std::sync::atomic::AtomicI32::new(1),
            // SAFETY: sched_getscheduler takes a pid (0: this thread) and returns the policy
            // or -1; no memory is involved. nix has no wrapper for it.
            batch: unsafe { libc::sched_getscheduler(0) } == libc::SCHED_OTHER,
            cgroup_fds: fds[5..].to_vec(),
            fds: [fds[0], fds[1], fds[2], fds[3], fds[4]],
            unshare_from: slots.as_ref().map(SlotGuard::end),
            unshare_refused: std::sync::atomic::AtomicBool::new(false),
            prefilter: filter.map_or(
                libc::sock_fprog {
                    len: 0,
                    filter: std::ptr::null_mut(),
                },
                |f| f.prog(true),
            ),
        });
        const PTRS_BYTES: usize = MAX_PTRS * std::mem::size_of::<*const libc::c_char>();
        let mut stack = vec![0u8; STACK];
        // SAFETY: `argv` and `envp` hold `MAX_PTRS` pointers each (`PTRS_BYTES` bytes) and the
        // stack `STACK` bytes, all owned here and mutably borrowed for the calls; a zeroed
        // pointer is the null pointer they already hold, a zeroed byte what the stack holds.
        unsafe {
            prefault(mem.argv.as_mut_ptr().cast(), PTRS_BYTES);
            prefault(mem.envp.as_mut_ptr().cast(), PTRS_BYTES);
            prefault(stack.as_mut_ptr(), STACK);
        }
        // SAFETY: `child_main` runs `launcher`, which makes system calls only. Its memory
        // (`mem`, boxed, so the address stays when the box moves into the `Zygote`) and its
        // `stack` are kept by the returned `Zygote` until `live` (the `ctid` word, inside
        // `mem`, aligned as an `AtomicI32`) is zeroed by the kernel, or leaked if it never is
        // (`release`). The descriptors it starts from are open until this call returns: with
        // `CLONE_FILES` the slots hold them until `wait_ready`, without it clone has copied
        // the table by the time it returns.
        let pid = unsafe {
            clone_blocked(
                child_main,
                &mut stack,
                flags,
                &mut *mem as *mut Shared as *mut libc::c_void,
                mem.live.as_ptr(),
            )
        };
        // The launcher has its own descriptor table, or uses the slots until it has: these are
        // the parent's.
        drop((devnull, cmd_r, status_w, out_w, err_w));
        let pid = pid?;
        Ok(Zygote {
            pid,
            cmd: Some(cmd_w),
            status: status_r,
            stdout: Some(out_r),
            stderr: Some(err_r),
            mem: Some(mem),
            stack: Some(stack),
            slots,
            filter,
            listener: None,
        })
    }

    /// Waits until the launcher has joined its groups.
    pub fn wait_ready(&mut self) -> io::Result<()> {
        // While the slots hold a copy of the status channel's write end, a launcher that dies
        // leaves no end of file: its `live` word tells instead.
        if self.slots.is_some() {
            while !self.status_readable(10) && !self.gone() {}
        }
        // Ready or gone, it no longer uses the slots: they let go of its pipes.
        self.slots = None;
        if self
            .mem
            .as_ref()
            .is_some_and(|m| m.unshare_refused.load(std::sync::atomic::Ordering::SeqCst))
        {
            // The next launcher gets a copy of the table instead.
            slots_refused();
        }
        match self.recv_status()? {
            (4, 0, listener) => {
                self.listener = listener;
                if self.filter.is_some() && self.listener.is_none() {
                    return Err(io::Error::other(
                        "the launcher did not hand over its seccomp listener",
                    ));
                }
                Ok(())
            }
            (4, e, _) => Err(io::Error::from_raw_os_error(e)),
            _ => Err(io::Error::other("the launcher exited before it was ready")),
        }
    }

    /// The filter this launcher installed while it got ready.
    pub fn filter(&self) -> Option<&'static Filter> {
        self.filter
    }

    /// Whether a run confined by `run` (its filter, or none) can start here: any run where
    /// the launcher has no filter (it installs the run's own at launch), else only a run
    /// confined by that very filter.
    pub fn serves(&self, run: Option<&'static Filter>) -> bool {
        match self.filter {
            None => true,
            Some(have) => run.is_some_and(|want| std::ptr::eq(have, want)),
        }
    }

    /// One message of the status channel: its length (0 at end of file), the word it carries
    /// (an errno, 0 for none) and the descriptor sent with it.
    fn recv_status(&self) -> io::Result<(usize, i32, Option<OwnedFd>)> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        loop {
            let mut e = [0u8; 4];
            let mut iov = [io::IoSliceMut::new(&mut e)];
            let mut space = nix::cmsg_space!(RawFd);
            let msg = match recvmsg::<()>(
                self.status.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let n = msg.bytes;
            let mut fd = None;
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: the kernel just put this descriptor in our table for this
                        // message; nothing else knows its number.
                        fd = Some(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) });
                    }
                }
            }
            return Ok((n, i32::from_ne_bytes(e), fd));
        }
    }

    /// Whether the launcher is still there, waiting (one that was killed has closed its end
    /// of the status channel).
    pub fn alive(&self) -> bool {
        !self.status_readable(0)
    }

    /// Whether the status channel has something to read (or its end of file) within `ms`.
    fn status_readable(&self, ms: u16) -> bool {
        let mut pfd = [PollFd::new(self.status.as_fd(), PollFlags::POLLIN)];
        poll(&mut pfd, ms).is_ok_and(|n| n > 0)
    }

    /// Whether the launcher has exec'd or exited (or its memory is released).
    fn gone(&self) -> bool {
        self.mem
            .as_ref()
            .is_none_or(|m| m.live.load(std::sync::atomic::Ordering::Acquire) == 0)
    }

    /// Whether a command fits a launcher (the direct path takes the rest).
    pub fn fits(
        program: &std::path::Path,
        cwd: &std::path::Path,
        argv: &[String],
        env: &[(String, String)],
    ) -> bool {
        let bytes = program.as_os_str().len()
            + cwd.as_os_str().len()
            + argv.iter().map(|a| a.len() + 1).sum::<usize>()
            + env
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + 2;
        bytes <= BUF && argv.len() + 2 <= MAX_PTRS && env.len() < MAX_PTRS
    }

    /// Waits until the launcher no longer uses the memory: it has exec'd or exited (`live` is
    /// zeroed then, by the kernel), or `limit` has passed. True when it has.
    fn wait_gone(&self, limit: Option<std::time::Duration>) -> bool {
        use std::sync::atomic::Ordering;
        let Some(m) = self.mem.as_ref() else {
            return true;
        };
        let until = limit.map(|l| std::time::Instant::now() + l);
        loop {
            let v = m.live.load(Ordering::SeqCst);
            if v == 0 {
                return true;
            }
            let left = until.map(|u| u.saturating_duration_since(std::time::Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return false;
            }
            let ts = left.map(|l| libc::timespec {
                tv_sec: l.as_secs() as libc::time_t,
                tv_nsec: l.subsec_nanos() as libc::c_long,
            });
            // A shared (not private) futex: that is the one the kernel wakes.
            // SAFETY: FUTEX_WAIT only reads the 4-byte aligned word `live` (an `AtomicI32` in
            // the box `m` borrows from `self`, alive for the whole call) and sleeps while it
            // still holds `v`; `ts` is null or a `timespec` local to this loop turn, read by
            // the kernel during the call. The other arguments are unused by FUTEX_WAIT. nix
            // has no futex wrapper.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    m.live.as_ptr(),
                    libc::FUTEX_WAIT,
                    v,
                    ts.as_ref()
                        .map_or(std::ptr::null(), |t| t as *const libc::timespec),
                )
            };
        }
    }

    /// Spins for at most `limit` until the launcher has exec'd or exited; true when it has.
    fn spin_gone(&self, limit: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        loop {
            for _ in 0..64 {
                if self.gone() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if std::time::Instant::now() >= until {
                return false;
            }
        }
    }

    /// Frees the memory the launcher used, once it no longer does. If it does not exec or exit
    /// within a few seconds (stopped by someone), the memory is leaked rather than freed under
    /// it.
    fn release(&mut self) {
        if !self.wait_gone(Some(std::time::Duration::from_secs(5))) {
            std::mem::forget(self.mem.take());
            std::mem::forget(self.stack.take());
            // It may not have unshared its descriptor table yet either.
            std::mem::forget(self.slots.take());
            return;
        }
        self.mem = None;
        self.stack = None;
    }

    /// Runs `l` in this launcher: the command into the shared memory, one byte down the command
    /// channel (with the sandbox's rulesets), then the wait for its `execve` (the status channel closes on success, or carries the errno
    /// of the step that failed).
    pub fn exec(mut self, l: &NativeLaunch<'_>) -> io::Result<Started> {
        use std::os::unix::ffi::OsStrExt;
        if !Self::fits(l.program, l.cwd, l.argv, l.env) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the command does not fit a launcher",
            ));
        }
        let filter = l.sandbox.and_then(|sb| sb.filter);
        if !self.serves(filter) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "this launcher's seccomp filter is not the run's",
            ));
        }
        let m = self.mem.as_mut().expect("an unused launcher");
        let mut at = 0usize;
        let mut push = |b: &[u8]| -> io::Result<()> {
            if b.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a NUL byte in an argument",
                ));
            }
            m.buf[at..at + b.len()].copy_from_slice(b);
            m.buf[at + b.len()] = 0;
            at += b.len() + 1;
            Ok(())
        };
        push(l.program.as_os_str().as_bytes())?;
        push(l.cwd.as_os_str().as_bytes())?;
        for a in l.argv {
            push(a.as_bytes())?;
        }
        let mut kv = Vec::with_capacity(256);
        for (k, v) in l.env {
            kv.clear();
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            push(&kv)?;
        }
        // SAFETY: all-zero is a valid `Header` (integers and a null pointer; see `start`).
        let mut h: Header = unsafe { std::mem::zeroed() };
        h.magic = MAGIC;
        h.len = at as u32;
        h.argc = l.argv.len() as u32;
        h.envc = l.env.len() as u32;
        h.rlimits = l.rlimits;
        // The sandbox: its rulesets go with the go byte, its filter is read from here.
        let rulesets: Vec<RawFd> = l
            .sandbox
            .map(|sb| sb.rulesets.iter().map(|r| r.as_raw_fd()).collect())
            .unwrap_or_default();
        if rulesets.len() > MAX_RULESETS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many Landlock rulesets for a launcher",
            ));
        }
        h.landlock_count = rulesets.len() as u32;
        h.landlock_flags = l.sandbox.map_or(0, |sb| sb.restrict_flags);
        // Installed at launch unless it was while the launcher got ready.
        if let (None, Some(f)) = (self.filter, filter) {
            h.seccomp = f.prog(true);
        }
        // The masks stay libc's `cpu_set_t`, and these calls raw libc: that is what `Header`
        // carries to the launcher and what `NativeLaunch::affinity` is, and nix's `CpuSet`
        // converts to neither. Copying bit by bit (as `native::affinity_for` does, once per run)
        // would put a 1024-step loop in every launch and still need CPU_SET.
        // SAFETY: `cpu_set_t` is an integer array; all-zero is the empty set.
        let mut mine: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes at most the `size_of::<cpu_set_t>()` bytes passed, into
        // `mine`, a local of exactly that size, mutably borrowed for the call.
        let have_mine = unsafe {
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mine)
        } == 0;
        if let Some(a) = l.affinity {
            h.has_affinity = 1;
            h.affinity = a;
        } else if have_mine {
            h.has_affinity = 1;
            h.affinity = mine;
        }
        m.header = h;
        // Where the launcher wakes and how this thread waits for its exec: see `SPIN`.
        // Below `CPU_SETSIZE`, for the CPU_* helpers (which index an array and would panic).
        let cpu = nix::sched::sched_getcpu()
            .ok()
            .filter(|&c| c < libc::CPU_SETSIZE as usize);
        let mut other = h.affinity;
        let spread = h.has_affinity != 0
            && cpu.is_some_and(|cpu| {
                // SAFETY: CPU_CLR and CPU_COUNT are bounds-checked bit operations on the
                // integer array of `other`, a local; no pointer is involved.
                unsafe {
                    libc::CPU_CLR(cpu, &mut other);
                    libc::CPU_COUNT(&other) > 0
                }
            });
        let set_affinity = |set: &libc::cpu_set_t| {
            // SAFETY: the kernel reads `size_of::<cpu_set_t>()` bytes from `set`, a borrowed
            // whole `cpu_set_t`. `self.pid` is the launcher, which nothing reaps before this
            // returns, so the pid still names it; only its CPU placement changes.
            unsafe {
                libc::sched_setaffinity(self.pid, std::mem::size_of::<libc::cpu_set_t>(), set)
            }
        };
        if spread {
            set_affinity(&other);
        } else if let Some(cpu) = cpu.filter(|_| have_mine) {
            // One CPU: woken on it, as a batch task that does not preempt this thread.
            // SAFETY: all-zero is the empty `cpu_set_t`; CPU_SET is a bounds-checked bit
            // operation on it (`cpu < CPU_SETSIZE`).
            let one = unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                one
            };
            set_affinity(&one);
        }
        let cmd = self.cmd.take().expect("an unused launcher");
        send_go(&cmd, &rulesets)?;
        drop(cmd);
        if spread && !self.spin_gone(SPIN) && !self.gone() {
            // Held up (a busy CPU): while this thread sleeps, its CPU is free for the launcher.
            // Should the exec come in between, this lands on the agent with the set it has
            // anyway, long before its own code could have chosen another.
            set_affinity(&h.affinity);
        }
        // Woken by the kernel as the exec replaces the launcher's memory (or as it exits), not by
        // the status channel's end of file: that wake-up is a "sync" one, which queued this thread
        // behind the agent's own start-up on the agent's CPU.
        self.wait_gone(None);
        // A failed step wrote its errno before the launcher exited; nothing there (or end of
        // file) means the exec went past its point of no return. A sandboxed launcher sent its
        // filter's listener first.
        let outcome = self.outcome();
        self.release();
        let (errno, listener) = outcome?;
        if errno != 0 {
            return Err(io::Error::from_raw_os_error(errno));
        }
        let listener = listener.or_else(|| self.listener.take());
        if filter.is_some() && listener.is_none() {
            return Err(io::Error::other(
                "the launcher did not hand over its seccomp listener",
            ));
        }
        Ok(Started {
            pid: self.pid,
            stdout: self.stdout.take().expect("stdout"),
            stderr: self.stderr.take().expect("stderr"),
            denials: listener,
        })
    }

    /// What the launcher left on the status channel once it exec'd or exited: the errno of a
    /// failed step (0: none) and the seccomp listener it sent.
    fn outcome(&self) -> io::Result<(i32, Option<OwnedFd>)> {
        let mut listener = None;
        while self.status_readable(0) {
            let (n, e, fd) = self.recv_status()?;
            listener = fd.or(listener);
            match n {
                0 => break,
                4 if e == 0 => continue,
                4 => return Ok((e, listener)),
                _ => {
                    return Err(io::Error::other(
                        "the launcher died before starting the agent",
                    ))
                }
            }
        }
        Ok((0, listener))
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if self.mem.is_some() {
            // Unused: closing the command channel makes it exit.
            self.cmd = None;
            self.release();
        }
    }
}
