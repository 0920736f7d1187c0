//! Starting an agent on Linux without `fork()`: `clone(CLONE_VM | CLONE_VFORK)`, as glibc's
//! `posix_spawn` does, with the agent's own set-up (process group, cgroup joins, rlimits,
//! affinity) between the clone and the exec.
//!
//! std's `Command` falls back to a full `fork()` as soon as a `pre_exec` hook is set, and a fork
//! copies the supervisor's page tables and descriptor table: with a thousand agents running that
//! is most of a launch. Here the child shares the parent's memory and runs only until `execve`,
//! while the calling thread waits; everything it touches is prepared before the clone, and it
//! makes system calls only.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use super::native::{NativeLaunch, Started};

const STACK: usize = 64 * 1024;

/// Everything the child reads, prepared by the parent.
struct ChildArgs {
    program: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    cgroup_fds: Vec<RawFd>,
    rlimits: crate::sandbox::rlimit::RlimitSet,
    affinity: Option<libc::cpu_set_t>,
    /// Signals with a handler in the parent: reset to the default in the child.
    handled: Vec<libc::c_int>,
    /// errno of the step that failed, or 0.
    err: AtomicI32,
    /// With the parent's descriptor table shared (`CLONE_FILES`): the first descriptor the
    /// child does not keep. It unshares the table copying only those below, which hold every
    /// descriptor it needs (in `Slots`).
    unshare_from: Option<RawFd>,
    /// Set by a child that could not unshare the table.
    unshare_refused: AtomicBool,
}

/// How many descriptors a child needs at most: stdin, stdout, stderr, a launcher's command and
/// status pipes, and a `cgroup.procs` per hierarchy (six at most).
const SLOTS: usize = 11;

/// Low descriptor numbers kept for the children of `spawn`, each holding /dev/null while
/// unused. A child that shares the parent's descriptor table finds what it needs there, and
/// unsharing the table copies only up to them: with a thousand agents running, the supervisor
/// holds some 6000 descriptors, and copying the table for each child, then closing the copies
/// at its exec, doubled the time of 1000 spawns (0.75 s to 1.45 s, measured with posix_spawn
/// and 6000 open descriptors; 0.52 s with the table shared and unshared this way).
struct Slots {
    fds: [RawFd; SLOTS],
    placeholder: RawFd,
}

impl Slots {
    fn new() -> io::Result<Slots> {
        let placeholder =
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if placeholder < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut fds = [-1; SLOTS];
        for i in 0..SLOTS {
            fds[i] = unsafe { libc::fcntl(placeholder, libc::F_DUPFD_CLOEXEC, 0) };
            if fds[i] < 0 {
                let e = io::Error::last_os_error();
                for &f in fds[..i].iter().chain([&placeholder]) {
                    unsafe { libc::close(f) };
                }
                return Err(e);
            }
        }
        Ok(Slots { fds, placeholder })
    }

    /// The first descriptor above every slot.
    fn end(&self) -> RawFd {
        self.fds
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(self.placeholder)
            + 1
    }

    /// Puts `src[i]` into slot `i` (close-on-exec); `false` when that fails.
    fn fill(&self, src: &[RawFd]) -> bool {
        let ok = src.len() <= SLOTS
            && src
                .iter()
                .zip(self.fds)
                .all(|(&s, d)| unsafe { libc::dup3(s, d, libc::O_CLOEXEC) } == d);
        if !ok {
            self.clear();
        }
        ok
    }

    /// /dev/null back into every slot: the parent keeps no copy of a child's pipes.
    fn clear(&self) {
        for d in self.fds {
            unsafe { libc::dup3(self.placeholder, d, libc::O_CLOEXEC) };
        }
    }
}

/// One set of slots and whether a spawn holds it.
struct SlotSet {
    busy: AtomicBool,
    slots: Slots,
}

/// A few sets of slots, one per launch at a time; made once, early (see `reserve_slots`).
fn slot_sets() -> &'static [SlotSet] {
    static SETS: std::sync::OnceLock<Vec<SlotSet>> = std::sync::OnceLock::new();
    SETS.get_or_init(|| {
        (0..4)
            .map_while(|_| Slots::new().ok())
            .map(|slots| SlotSet {
                busy: AtomicBool::new(false),
                slots,
            })
            .collect()
    })
}

/// Set once a child could not unshare the table (a seccomp filter that refuses close_range's
/// unshare and unshare(2), as container runtimes' default ones may): from then on every child
/// gets a copy of the table, as without slots.
static SLOTS_REFUSED: AtomicBool = AtomicBool::new(false);

/// Takes the slots while the supervisor's descriptor numbers are still low.
pub fn reserve_slots() {
    slot_sets();
}

/// Slots taken for one spawn; cleared and given back when dropped, which must wait until the
/// child has its own descriptor table. A child that may still use them (stopped before it
/// unshared) keeps them: `std::mem::forget` the guard.
pub(super) struct SlotGuard(&'static SlotSet);

impl SlotGuard {
    /// What to pass to `unshare_below` in the child.
    pub(super) fn end(&self) -> RawFd {
        self.0.slots.end()
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.slots.clear();
        self.0.busy.store(false, Ordering::Release);
    }
}

/// In a child that shares its parent's descriptor table: a table of its own, with only the
/// descriptors below `end` (the slots and the few below them). Where close_range cannot unshare
/// (before Linux 5.9), a full copy. Async-signal-safe; false on failure, when the caller tells
/// its parent to call `slots_refused`.
pub(super) unsafe fn unshare_below(end: RawFd) -> bool {
    libc::syscall(
        libc::SYS_close_range,
        end as libc::c_uint,
        libc::c_uint::MAX,
        libc::CLOSE_RANGE_UNSHARE,
    ) == 0
        || libc::unshare(libc::CLONE_FILES) == 0
}

/// A child could not unshare: no more slots for anyone.
pub(super) fn slots_refused() {
    SLOTS_REFUSED.store(true, Ordering::SeqCst);
}

/// A free set of slots holding `fds`, if there is one; `fds` then names the slots, in order.
pub(super) fn take_slots(fds: &mut [RawFd]) -> Option<SlotGuard> {
    if SLOTS_REFUSED.load(Ordering::SeqCst) {
        return None;
    }
    let set = slot_sets().iter().find(|s| {
        s.busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    })?;
    let g = SlotGuard(set);
    if !g.0.slots.fill(fds) {
        return None;
    }
    fds.copy_from_slice(&set.slots.fds[..fds.len()]);
    Some(g)
}

/// Closes every descriptor from `first` on: close_range where the kernel has it, else one by
/// one up to the open-file limit. Async-signal-safe.
pub(super) unsafe fn close_from(first: RawFd) {
    if libc::syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        libc::c_uint::MAX,
        0u32,
    ) == 0
    {
        return;
    }
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
        rl.rlim_cur.min(1 << 20) as RawFd
    } else {
        1024
    };
    for fd in first..top {
        libc::close(fd);
    }
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `clone` onto `stack` with every signal blocked in the calling thread around it, so that no
/// handler of the supervisor's runs in the child before the child has reset them. With
/// `CLONE_CHILD_CLEARTID` in `flags`, the kernel zeroes `ctid` and wakes its futex when the
/// child execs or exits.
///
/// # Safety
/// `f` runs in the child with `arg`, sharing memory when `flags` has `CLONE_VM`: everything it
/// touches, and `ctid`, must stay valid until it has exec'd or exited.
pub(super) unsafe fn clone_blocked(
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack: &mut [u8],
    flags: libc::c_int,
    arg: *mut libc::c_void,
    ctid: *mut libc::pid_t,
) -> io::Result<i32> {
    // The stack grows down: pass its 16-byte aligned top.
    let top = ((stack.as_mut_ptr() as usize + stack.len()) & !15) as *mut libc::c_void;
    let mut all: libc::sigset_t = std::mem::zeroed();
    let mut old: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    let pid = libc::clone(
        f,
        top,
        flags,
        arg,
        std::ptr::null_mut::<libc::pid_t>(),
        std::ptr::null_mut::<libc::c_void>(),
        ctid,
    );
    let err = io::Error::last_os_error();
    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    if pid < 0 {
        Err(err)
    } else {
        Ok(pid)
    }
}

/// Signals whose disposition is not the default: a handler (which would run in the child), or,
/// among the standard signals, "ignored" (Rust ignores SIGPIPE; a caller may ignore others).
/// An agent starts with every one of them at its default.
pub(super) fn handled_signals() -> Vec<libc::c_int> {
    let mut out = Vec::new();
    for sig in 1..=libc::SIGRTMAX() {
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0
            || old.sa_sigaction == libc::SIG_DFL
        {
            continue;
        }
        if old.sa_sigaction != libc::SIG_IGN || sig < 32 {
            out.push(sig);
        }
    }
    out
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: the parent keeps `ChildArgs` alive and is suspended until exec or exit.
    let a = unsafe { &*(arg as *const ChildArgs) };
    let fail = |a: &ChildArgs| -> libc::c_int {
        let e = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
        a.err.store(e.max(1), Ordering::SeqCst);
        unsafe { libc::_exit(127) }
    };
    unsafe {
        // First, before any descriptor changes: a table of its own.
        if let Some(end) = a.unshare_from {
            if !unshare_below(end) {
                a.unshare_refused.store(true, Ordering::SeqCst);
                return fail(a);
            }
        }
        for &sig in &a.handled {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if libc::setpgid(0, 0) != 0 {
            return fail(a);
        }
        for &fd in &a.cgroup_fds {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return fail(a);
            }
        }
        if a.rlimits.apply().is_err() {
            return fail(a);
        }
        if let Some(set) = &a.affinity {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
                return fail(a);
            }
        }
        // dup2 clears close-on-exec on the copies: exactly the three the agent keeps.
        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.stdout, 1) < 0 || libc::dup2(a.stderr, 2) < 0
        {
            return fail(a);
        }
        // Nothing else of the supervisor's, not even what it holds without close-on-exec.
        close_from(3);
        if libc::chdir(a.cwd.as_ptr()) != 0 {
            return fail(a);
        }
        libc::execve(a.program.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
    }
    fail(a)
}

/// Starts the process; the error is the child's (exec not found, permission denied, ...).
pub fn spawn(l: &NativeLaunch<'_>) -> io::Result<Started> {
    let refused = SLOTS_REFUSED.load(Ordering::SeqCst);
    match spawn_once(l) {
        // The child could not unshare the descriptor table: again, with a copy of it.
        Err(_) if !refused && SLOTS_REFUSED.load(Ordering::SeqCst) => spawn_once(l),
        r => r,
    }
}

fn spawn_once(l: &NativeLaunch<'_>) -> io::Result<Started> {
    let program = cstr(l.program.as_os_str())?;
    let argv_c = l
        .argv
        .iter()
        .map(|s| cstr(OsStr::new(s)))
        .collect::<io::Result<Vec<_>>>()?;
    let env_c = l
        .env
        .iter()
        .map(|(k, v)| cstr(OsStr::new(&format!("{k}={v}"))))
        .collect::<io::Result<Vec<_>>>()?;
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    if argv.is_empty() {
        argv.push(program.as_ptr());
    }
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let devnull = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if devnull < 0 {
        return Err(io::Error::last_os_error());
    }
    let devnull = unsafe { OwnedFd::from_raw_fd(devnull) };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    use std::os::fd::AsRawFd;
    let mut fds = vec![devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
    fds.extend_from_slice(&l.cgroup_fds);
    let slots = take_slots(&mut fds);
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if slots.is_some() {
        flags |= libc::CLONE_FILES;
    }
    let args = Box::new(ChildArgs {
        program,
        argv,
        envp,
        cwd: cstr(l.cwd.as_os_str())?,
        stdin: fds[0],
        stdout: fds[1],
        stderr: fds[2],
        cgroup_fds: fds[3..].to_vec(),
        rlimits: l.rlimits,
        affinity: l.affinity,
        handled: handled_signals(),
        err: AtomicI32::new(0),
        unshare_from: slots.as_ref().map(SlotGuard::end),
        unshare_refused: AtomicBool::new(false),
    });
    let mut stack = vec![0u8; STACK];
    let pid = unsafe {
        clone_blocked(
            child_main,
            &mut stack,
            flags,
            &*args as *const ChildArgs as *mut libc::c_void,
            std::ptr::null_mut(),
        )
    };
    drop(slots);
    drop(stack);
    drop((out_w, err_w, devnull));
    let pid = pid?;
    let err = args.err.load(Ordering::SeqCst);
    if err != 0 {
        // The child exited before exec: collect it here (the reaper cannot see it yet).
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if args.unshare_refused.load(Ordering::SeqCst) {
            slots_refused();
        }
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(Started {
        pid,
        stdout: out_r,
        stderr: err_r,
    })
}
