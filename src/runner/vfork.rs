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
use std::sync::atomic::{AtomicI32, Ordering};

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
        if libc::chdir(a.cwd.as_ptr()) != 0 {
            return fail(a);
        }
        libc::execve(a.program.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
    }
    fail(a)
}

/// Starts the process; the error is the child's (exec not found, permission denied, ...).
pub fn spawn(l: &NativeLaunch<'_>) -> io::Result<Started> {
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
    let args = Box::new(ChildArgs {
        program,
        argv,
        envp,
        cwd: cstr(l.cwd.as_os_str())?,
        stdin: devnull.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        cgroup_fds: l.cgroup_fds.clone(),
        rlimits: l.rlimits,
        affinity: l.affinity,
        handled: handled_signals(),
        err: AtomicI32::new(0),
    });
    let mut stack = vec![0u8; STACK];
    let pid = unsafe {
        clone_blocked(
            child_main,
            &mut stack,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &*args as *const ChildArgs as *mut libc::c_void,
            std::ptr::null_mut(),
        )
    };
    drop(stack);
    drop((out_w, err_w, devnull));
    let pid = pid?;
    let err = args.err.load(Ordering::SeqCst);
    if err != 0 {
        // The child exited before exec: collect it here (the reaper cannot see it yet).
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(Started {
        pid,
        stdout: out_r,
        stderr: err_r,
    })
}
