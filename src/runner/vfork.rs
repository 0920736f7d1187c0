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
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::stat::Mode;

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
    subreaper: bool,
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
    /// The sandbox: Landlock ruleset descriptors to restrict itself with (and their flags),
    /// then a seccomp filter. Any of them sets no_new_privs first, as both require.
    landlock_fds: Vec<RawFd>,
    landlock_flags: u32,
    seccomp: Option<libc::sock_fprog>,
    /// The same filter with its denials handed to the supervisor: installed first, while the
    /// child still shares the parent's descriptor table, so that the filter's listener is
    /// created in the parent's table (the agent never holds it). Its number goes in `listener`.
    seccomp_notify: Option<libc::sock_fprog>,
    listener: AtomicI32,
}

/// How many descriptors a child needs at most: stdin, stdout, stderr and a `cgroup.procs` per
/// hierarchy (six at most), then either a launcher's command and status channels or an agent's
/// two Landlock rulesets (a launcher gets a run's rulesets with its command). Each slot is a descriptor held for good,
/// which counts under a small open-files limit.
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
        let placeholder = open(
            c"/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut fds = [-1; SLOTS];
        for i in 0..SLOTS {
            match fcntl(&placeholder, FcntlArg::F_DUPFD_CLOEXEC(0)) {
                Ok(fd) => fds[i] = fd,
                Err(e) => {
                    // The copies made so far are this function's alone (`placeholder`, an
                    // `OwnedFd`, closes itself).
                    for &f in &fds[..i] {
                        let _ = nix::unistd::close(f);
                    }
                    return Err(e.into());
                }
            }
        }
        // The slots and their placeholder are never closed: they live as long as the process.
        Ok(Slots {
            fds,
            placeholder: placeholder.into_raw_fd(),
        })
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
                // SAFETY: dup3 takes and returns descriptor numbers only, no memory. `d` is one
                // of this set's slots, which the caller holds alone (`busy`), so replacing
                // what it holds closes no descriptor anyone else uses. nix's `dup3` wants the
                // target as `&mut OwnedFd`, which a slot shared through `&'static` cannot be.
                .all(|(&s, d)| unsafe { libc::dup3(s, d, libc::O_CLOEXEC) } == d);
        if !ok {
            self.clear();
        }
        ok
    }

    /// /dev/null back into every slot: the parent keeps no copy of a child's pipes.
    fn clear(&self) {
        for d in self.fds {
            // SAFETY: as in `fill`: descriptor numbers only; `d` is a slot of this set, held
            // by the caller alone (or by no one, at drop), and `placeholder` stays open for the
            // life of the process.
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
///
/// Each set holds `SLOTS` + 1 descriptors on /dev/null for the life of the process: four sets
/// held 48 of them (52 with the launchers' own), most of the descriptors of an idle supervisor
/// and most of a `ulimit -n 64`. Launches that run at the same time need one set each, and
/// more launches side by side than cores gain nothing: one set per core (at most four). A
/// launch that finds every set busy still starts, through a copy of the table, only slower.
/// Under a small open-files limit (hard limit below 4096: the soft one is raised to it) one
/// set: under `ulimit -n 256` the descriptors go to the agents' pipes.
fn slot_sets() -> &'static [SlotSet] {
    static SETS: std::sync::OnceLock<Vec<SlotSet>> = std::sync::OnceLock::new();
    SETS.get_or_init(|| {
        let small = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .is_ok_and(|(_, hard)| hard < 4096);
        let sets = if small {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
        };
        (0..sets)
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
///
/// # Safety
/// Only for a child started with `CLONE_FILES`, before it touches a descriptor: called in the
/// supervisor itself, `close_range(end, ~0, CLOSE_RANGE_UNSHARE)` would close every descriptor
/// from `end` on (sockets, pipes, files `OwnedFd`s still own), and owned descriptors would be
/// closed twice later. The calls are raw syscall wrappers (no allocation, no lock), fit for a
/// `CLONE_VM` child; on failure they set only errno.
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
///
/// # Safety
/// Only for a child between clone and exec, with a descriptor table of its own: it closes
/// descriptors that `OwnedFd`s and std's types of the parent's code think they own, which in
/// the supervisor would lead to closing them twice (or closing another file that took the
/// number). `getrlimit` writes one `rlimit` into the local `rl`; nothing allocates, so the call
/// is fit for a `CLONE_VM` child (kept raw libc for that reason: see `child_main`).
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
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // How full the descriptor table is, for the files kept open only for speed.
    crate::sampler::budget::FdBudget::global().saw(&w);
    Ok((r, w))
}

/// `clone` onto `stack` with every signal blocked in the calling thread around it, so that no
/// handler of the supervisor's runs in the child before the child has reset them. With
/// `CLONE_CHILD_CLEARTID` in `flags`, the kernel zeroes `ctid` and wakes its futex when the
/// child execs or exits.
///
/// # Safety
/// `f` runs in the child with `arg`, sharing memory when `flags` has `CLONE_VM`: everything it
/// touches, and `ctid`, must stay valid until it has exec'd or exited. With `CLONE_VM` the child
/// also shares the calling thread's thread-local storage (errno, malloc's per-thread cache):
/// `f` must make raw system calls only and never allocate, free or take a lock. `stack` must
/// not be freed or reused before then either (with `CLONE_VFORK` this call returns only once
/// the child is done with it). `ctid` is null, or points to a 4-byte aligned word that outlives
/// the child's use of the memory (the kernel writes 0 there and wakes its futex).
pub(super) unsafe fn clone_blocked(
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack: &mut [u8],
    flags: libc::c_int,
    arg: *mut libc::c_void,
    ctid: *mut libc::pid_t,
) -> io::Result<i32> {
    // The stack grows down: pass its 16-byte aligned top.
    let top = ((stack.as_mut_ptr() as usize + stack.len()) & !15) as *mut libc::c_void;
    // pthread_sigmask with SIG_SETMASK and valid sets does not fail (EINVAL is for a bad `how`).
    let mut old = SigSet::empty();
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    // nix's `clone` takes a boxed closure and no `ctid`, and neither supports `CLONE_VFORK`
    // nor suits a child that must not allocate: the raw call, under this function's contract.
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
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
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
        // SAFETY: `sigaction` holds integers (the handler is a `sighandler_t` integer here, not
        // a Rust fn pointer), a `sigset_t` and an `Option` of a restorer fn pointer, `None` when
        // zero: all-zero is a valid value of it (SIG_DFL, empty mask, no flags).
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: with a null new action, sigaction(2) changes nothing and only writes the
        // current action into `old`, a live local of exactly the type it expects. A number it
        // does not take (glibc keeps 32 and 33 for itself) fails with EINVAL, `old` untouched.
        // Raw libc on purpose: nix's `sigaction` always installs a new action, and its
        // `Signal` cannot name the real-time signals.
        let r = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if r != 0 || old.sa_sigaction == libc::SIG_DFL {
            continue;
        }
        if old.sa_sigaction != libc::SIG_IGN || sig < 32 {
            out.push(sig);
        }
    }
    out
}

/// The child of `spawn_once`, started by `clone(CLONE_VM | CLONE_VFORK)`: it runs on the
/// parent's memory, on its own small stack, while the parent's thread is suspended. Everything
/// here stays raw libc, even where nix has a wrapper: nix's wrappers are thin, but this code
/// must be plainly auditable as system calls only (no allocation, no lock, no unwinding), so
/// one convention holds for the whole child.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Box<ChildArgs>` of `spawn_once`, which outlives this child:
    // `CLONE_VFORK` keeps the parent's thread suspended until this process execs or exits,
    // and nothing else frees it. The child only reads it, and writes its two atomics.
    let a = unsafe { &*(arg as *const ChildArgs) };
    let fail = |a: &ChildArgs| -> libc::c_int {
        // Reads errno (no allocation: an OS error is stored inline).
        let e = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL);
        a.err.store(e.max(1), Ordering::SeqCst);
        // SAFETY: `_exit` ends this process at once, without atexit handlers or stdio
        // flushing, which would run the parent's handlers on the parent's (shared) memory.
        unsafe { libc::_exit(127) }
    };
    // SAFETY: between clone and exec in a `CLONE_VM` child, with every signal blocked (by
    // `clone_blocked`) until the handlers are reset. Each call is an async-signal-safe libc
    // system-call wrapper: nothing allocates, locks or unwinds, and the only thread-local state
    // touched is errno, whose owner (the parent's calling thread) is suspended.
    // - unshare_below: first, so that no descriptor change reaches the parent's table.
    // - signal/sigprocmask: `empty` is a local `sigset_t`, all-zero and then sigemptyset.
    // - write: one byte from a static, to `cgroup.procs` descriptors the parent keeps open.
    // - sched_setaffinity: reads `size_of::<cpu_set_t>()` bytes from `set`, a whole
    //   `cpu_set_t` inside `ChildArgs`.
    // - prctl(PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS): integer arguments only, affect
    //   this process only (not the parent, whose memory but not task it shares).
    // - landlock_restrict_self: a ruleset descriptor the parent holds open (in the slots or
    //   the copied table) and integer flags; restricts this task only.
    // - seccomp(SET_MODE_FILTER): reads the `sock_fprog` in `ChildArgs` and the instructions
    //   it points to, in a filter the parent caches for its whole life; this task only.
    // - dup2/close_from: this child's own table (unshared above, or copied by clone without
    //   `CLONE_FILES`), so closing descriptors does not touch the parent's `OwnedFd`s.
    // - chdir/execve: NUL-terminated `CString`s of `ChildArgs`, and `argv`/`envp` arrays of
    //   pointers into them ending in a null pointer (built by `spawn_once`).
    unsafe {
        // The seccomp filter whose listener goes to the parent: before the table is unshared.
        // The listener is close-on-exec and above the copied range, or closed below with the
        // rest (`close_from`), so the agent never holds it.
        if let Some(prog) = &a.seccomp_notify {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                return fail(a);
            }
            let fd = libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as libc::c_uint,
                prog as *const libc::sock_fprog,
            );
            if fd < 0 {
                return fail(a);
            }
            a.listener.store(fd as RawFd, Ordering::SeqCst);
        }
        // Then, before any other descriptor change: a table of its own.
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
        // Best effort: without it, the census still finds what the marker names.
        if a.subreaper {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        }
        // The sandbox, last of what needs privileges the agent must not keep.
        if (!a.landlock_fds.is_empty() || a.seccomp.is_some())
            && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) != 0
        {
            return fail(a);
        }
        for &fd in &a.landlock_fds {
            if libc::syscall(libc::SYS_landlock_restrict_self, fd, a.landlock_flags) != 0 {
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
        if let Some(prog) = &a.seccomp {
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                prog as *const libc::sock_fprog,
            ) != 0
            {
                return fail(a);
            }
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
    let devnull = open(
        c"/dev/null",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    use std::os::fd::AsRawFd;
    let stdin = l.stdin.unwrap_or(devnull.as_raw_fd());
    let mut fds = vec![stdin, out_w.as_raw_fd(), err_w.as_raw_fd()];
    fds.extend_from_slice(&l.cgroup_fds);
    let sandbox = l.sandbox;
    if let Some(sb) = sandbox {
        fds.extend(sb.rulesets.iter().map(|r| r.as_raw_fd()));
    }
    let groups = 3 + l.cgroup_fds.len();
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
        cgroup_fds: fds[3..groups].to_vec(),
        rlimits: l.rlimits,
        affinity: l.affinity,
        subreaper: l.subreaper,
        handled: handled_signals(),
        err: AtomicI32::new(0),
        unshare_from: slots.as_ref().map(SlotGuard::end),
        unshare_refused: AtomicBool::new(false),
        landlock_fds: fds[groups..].to_vec(),
        landlock_flags: sandbox.map_or(0, |s| s.restrict_flags),
        // With the table shared, the filter's listener reaches the parent; else the filter
        // answers denials itself.
        seccomp: sandbox
            .and_then(|s| s.filter)
            .filter(|_| slots.is_none())
            .map(|f| f.prog(false)),
        seccomp_notify: sandbox
            .and_then(|s| s.filter)
            .filter(|_| slots.is_some())
            .map(|f| f.prog(true)),
        listener: AtomicI32::new(-1),
    });
    let mut stack = vec![0u8; STACK];
    // SAFETY: `child_main` makes system calls only (see there). With `CLONE_VFORK` this returns
    // once the child has exec'd or exited, so `args` (boxed: its address is what the child
    // gets), `stack`, and the descriptors it dups (`fds`, held by `devnull`, `out_w`, `err_w`,
    // the caller's cgroup files, or the slots) all outlive its use of them; they are dropped
    // only below. No `ctid`.
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
    let listener = match args.listener.load(Ordering::SeqCst) {
        // SAFETY: the child made this descriptor in this process's table (shared with it at
        // that moment) and nothing else knows its number: it is ours alone to own.
        fd if fd >= 0 => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
        _ => None,
    };
    let pid = pid?;
    let err = args.err.load(Ordering::SeqCst);
    if err != 0 {
        // The child exited before exec: collect it here (the reaper cannot see it yet).
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        if args.unshare_refused.load(Ordering::SeqCst) {
            slots_refused();
        }
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(Started {
        pid,
        stdout: out_r,
        stderr: err_r,
        denials: listener,
    })
}
