//! The guardian: a small process forked when the supervisor starts, whose only job is to kill
//! every agent if the supervisor dies, even by SIGKILL.
//!
//! It holds the read end of a pipe whose write end only the supervisor has (close-on-exec, so
//! agents never inherit it). The supervisor registers each agent's process group, and, where no
//! cgroup holds a run, every process of it the census has seen (`census.rs`), by pid and start
//! time. When the pipe reaches end of file the guardian kills the supervisor's whole cgroup
//! subtree through `cgroup.kill`, every registered process group, and every registered process
//! that is still the one registered (its start time in `/proc/PID/stat` unchanged: a pid reused
//! since is left alone), stopping them all before killing any so that none forks in between.
//! Between fork and exit it only makes system calls on memory prepared before the fork, as a
//! child of a threaded process must.
//!
//! Then, where the supervisor gave it one, it execs a fresh `symbiont` (`sweep`, a hidden
//! subcommand) that kills whatever still carries one of this supervisor's `SYMBIONT_RUN`
//! markers in its environment: descendants born after the census last looked (a `setsid`
//! daemon started just before the supervisor died). Scanning /proc needs allocation, which
//! the forked guardian may not do; the exec'd process may.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

const MAX_GROUPS: usize = 16384;
const MAX_PROCS: usize = 65536;
const OP_ADD: i32 = 1;
const OP_REMOVE: i32 = 2;
const OP_ADD_PROC: i32 = 3;
const OP_REMOVE_PROC: i32 = 4;
/// One record on the pipe: the operation, a pid (or process group), a start time.
const RECORD: usize = 16;

/// What the guardian execs once it has killed what it knows: `argv` (the `symbiont` binary, the
/// hidden `sweep` subcommand and this supervisor's marker prefix), prepared before the fork.
#[derive(Debug)]
pub struct Sweep {
    pub program: CString,
    pub args: Vec<CString>,
}

/// The supervisor's side of the guardian.
#[derive(Debug)]
pub struct Guardian {
    /// `None` once the supervisor is done (`Drop`).
    pipe: Mutex<Option<std::fs::File>>,
    pid: i32,
}

impl Drop for Guardian {
    /// The supervisor is done: closing the pipe lets the guardian go (there is nothing left to
    /// kill), and its exit is collected on a thread of its own, so that a program embedding the
    /// library, which reaps only its own children, is not left with a zombie per supervisor.
    fn drop(&mut self) {
        drop(self.pipe.lock().ok().and_then(|mut p| p.take()));
        let pid = nix::unistd::Pid::from_raw(self.pid);
        // Best effort: a process that reaps every child may collect it first (ECHILD).
        let _ = std::thread::Builder::new()
            .name("guardian-reap".into())
            .spawn(move || nix::sys::wait::waitpid(pid, None));
    }
}

impl Guardian {
    /// Forks the guardian. `cgroup_kill` is the `cgroup.kill` file of the supervisor's v2 base
    /// group, if there is one.
    pub fn start(cgroup_kill: Option<&Path>, sweep: Option<Sweep>) -> io::Result<Guardian> {
        let mut fds = [0 as RawFd; 2];
        // Close-on-exec on both ends, atomically where the system can: no agent may hold the pipe.
        // SAFETY: `fds` is a live array of exactly the two ints pipe2/pipe write.
        #[cfg(target_os = "linux")]
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        // SAFETY: as above.
        #[cfg(not(target_os = "linux"))]
        let r = unsafe { libc::pipe(fds.as_mut_ptr()) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        #[cfg(not(target_os = "linux"))]
        for fd in fds {
            // SAFETY: `fd` is one of the two descriptors pipe() just made; F_SETFD only
            // changes its flags.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let (rd, wr) = (fds[0], fds[1]);
        let kill_path = cgroup_kill.and_then(|p| CString::new(p.as_os_str().as_bytes()).ok());
        // Everything the child touches is allocated here, before the fork.
        let mut table = vec![0i32; MAX_GROUPS].into_boxed_slice();
        let mut procs = vec![(0i32, 0u64); MAX_PROCS].into_boxed_slice();
        let sweep_argv: Option<(&CString, Vec<*const libc::c_char>)> = sweep.as_ref().map(|s| {
            let mut v: Vec<*const libc::c_char> = std::iter::once(&s.program)
                .chain(&s.args)
                .map(|c| c.as_ptr())
                .collect();
            v.push(std::ptr::null());
            (&s.program, v)
        });
        // SAFETY: the child of a threaded process may only make async-signal-safe calls until it
        // exits or execs: `guardian_main` does exactly that, on memory allocated before this
        // fork (the pipe ends, the C path, the tables, the sweep's argv), and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: both descriptors are ours, from pipe() above, and closed only here.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
            return Err(e);
        }
        if pid == 0 {
            // SAFETY: this is the forked child; see the fork above. It never returns.
            unsafe {
                guardian_main(
                    rd,
                    wr,
                    kill_path.as_ref(),
                    &mut table,
                    &mut procs,
                    sweep_argv.as_ref().map(|(p, v)| (*p, v.as_slice())),
                )
            }
        }
        // SAFETY: the read end is the child's now; the parent's copy is closed once, here.
        unsafe { libc::close(rd) };
        // SAFETY: `wr` is an open descriptor from pipe() that nothing else owns: the File takes
        // sole ownership and closes it on drop.
        let file = unsafe { std::fs::File::from(OwnedFd::from_raw_fd(wr)) };
        Ok(Guardian {
            pipe: Mutex::new(Some(file)),
            pid,
        })
    }

    fn send(&self, op: i32, pid: i32, start: u64) {
        use std::io::Write;
        let mut rec = [0u8; RECORD];
        rec[..4].copy_from_slice(&op.to_ne_bytes());
        rec[4..8].copy_from_slice(&pid.to_ne_bytes());
        rec[8..].copy_from_slice(&start.to_ne_bytes());
        if let Some(f) = self.pipe.lock().ok().as_mut().and_then(|p| p.as_mut()) {
            // The guardian has died: agents would outlive a supervisor killed now.
            if let Err(e) = f.write_all(&rec) {
                tracing::warn!("cannot tell the guardian about pid {pid} (op {op}): {e}");
            }
        }
    }

    /// The guardian will kill this process group if the supervisor dies.
    pub fn register(&self, pgid: i32) {
        self.send(OP_ADD, pgid, 0);
    }

    pub fn unregister(&self, pgid: i32) {
        self.send(OP_REMOVE, pgid, 0);
    }

    /// The guardian will kill the process `pid` started at `start` (`ProcSample::start`) if the
    /// supervisor dies and it is still that process. (Only the census registers processes: Linux.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn register_process(&self, pid: i32, start: u64) {
        self.send(OP_ADD_PROC, pid, start);
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn unregister_process(&self, pid: i32, start: u64) {
        self.send(OP_REMOVE_PROC, pid, start);
    }
}

/// Closes every descriptor except `keep`: `close_range` where the kernel has it, else one by one.
///
/// # Safety
/// Only in the guardian's child, which owns no Rust object backed by a descriptor: afterwards
/// any such object would name a closed (or reused) descriptor.
unsafe fn close_all_but(keep: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let lo_ok =
            keep == 0 || libc::syscall(libc::SYS_close_range, 0u32, (keep - 1) as u32, 0u32) == 0;
        let hi_ok = libc::syscall(libc::SYS_close_range, (keep + 1) as u32, u32::MAX, 0u32) == 0;
        if lo_ok && hi_ok {
            return;
        }
    }
    let maxfd = libc::sysconf(libc::_SC_OPEN_MAX).clamp(256, 65536) as RawFd;
    for fd in 0..maxfd {
        if fd != keep {
            libc::close(fd);
        }
    }
}

/// The start time (field 22 of `/proc/PID/stat`) of `pid`, read with raw system calls into
/// stack buffers; 0 where there is no such process (or no /proc).
///
/// # Safety
/// Async-signal-safe: open, read and close on local buffers only.
unsafe fn start_time(pid: i32) -> u64 {
    // "/proc/" + up to 10 digits + "/stat" + NUL.
    let mut path = [0u8; 32];
    let prefix = b"/proc/";
    path[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let (mut n, mut v) = (0, pid as u32);
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut at = prefix.len();
    while n > 0 {
        n -= 1;
        path[at] = digits[n];
        at += 1;
    }
    path[at..at + 5].copy_from_slice(b"/stat");
    let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return 0;
    }
    let mut buf = [0u8; 1024];
    let len = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
    libc::close(fd);
    if len <= 0 {
        return 0;
    }
    let text = &buf[..len as usize];
    // The name may hold spaces and parentheses: fields are counted after the last ')'.
    let Some(close) = text.iter().rposition(|&b| b == b')') else {
        return 0;
    };
    // After ") " comes field 3 (the state); field 22 is the 19th after it.
    let mut field = 2;
    let mut value = 0u64;
    let mut in_field = false;
    for &b in &text[close + 1..] {
        if b == b' ' {
            in_field = false;
            continue;
        }
        if !in_field {
            in_field = true;
            field += 1;
            if field > 22 {
                break;
            }
        }
        if field == 22 {
            if !b.is_ascii_digit() {
                return 0;
            }
            value = value * 10 + u64::from(b - b'0');
        }
    }
    value
}

/// The guardian's whole life. Only async-signal-safe calls.
///
/// # Safety
/// Only in the child of `fork()` in `Guardian::start`: it closes every other descriptor, makes
/// only raw system calls on memory prepared before the fork, and ends with `_exit` or `execv`
/// (`sweep`: a NUL-terminated program path and a null-terminated argv of pointers into
/// `CString`s that outlive the call).
unsafe fn guardian_main(
    rd: RawFd,
    wr: RawFd,
    kill_path: Option<&CString>,
    table: &mut [i32],
    procs: &mut [(i32, u64)],
    sweep: Option<(&CString, &[*const libc::c_char])>,
) -> ! {
    libc::close(wr);
    // Its own session: a signal to the supervisor's process group or terminal does not reach it.
    libc::setsid();
    for sig in [
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGTERM,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // Close every descriptor but the pipe, so it keeps no terminal or agent pipe open.
    close_all_but(rd);
    let mut used = 0usize;
    let mut procs_used = 0usize;
    let mut buf = [0u8; 4096];
    let mut have = 0usize;
    loop {
        let n = libc::read(rd, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            break;
        }
        if n == 0 {
            break;
        }
        have += n as usize;
        let mut off = 0;
        while have - off >= RECORD {
            let op = i32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
            let pg = i32::from_ne_bytes([buf[off + 4], buf[off + 5], buf[off + 6], buf[off + 7]]);
            let mut st = [0u8; 8];
            st.copy_from_slice(&buf[off + 8..off + RECORD]);
            let start = u64::from_ne_bytes(st);
            off += RECORD;
            if op == OP_ADD_PROC && procs_used < procs.len() {
                procs[procs_used] = (pg, start);
                procs_used += 1;
            } else if op == OP_REMOVE_PROC {
                if let Some(i) = procs[..procs_used].iter().position(|&x| x == (pg, start)) {
                    procs[i] = procs[procs_used - 1];
                    procs_used -= 1;
                }
            } else if op == OP_ADD && used < table.len() {
                table[used] = pg;
                used += 1;
            } else if op == OP_REMOVE {
                if let Some(i) = table[..used].iter().position(|&x| x == pg) {
                    table[i] = table[used - 1];
                    used -= 1;
                }
            }
        }
        // Keep a partial record for the next read.
        let rest = have - off;
        let mut i = 0;
        while i < rest {
            buf[i] = buf[off + i];
            i += 1;
        }
        have = rest;
    }
    // The supervisor is gone (or closed us on a clean exit, with nothing registered).
    if let Some(p) = kill_path {
        let fd = libc::open(p.as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::write(fd, b"1".as_ptr().cast(), 1);
            libc::close(fd);
        }
    }
    for &pg in &table[..used] {
        if pg > 1 {
            libc::kill(-pg, libc::SIGKILL);
        }
    }
    // Stopped first, so that none forks while the others are killed; each only while its pid
    // still names the process registered.
    for sig in [libc::SIGSTOP, libc::SIGKILL] {
        for &(pid, start) in &procs[..procs_used] {
            if pid > 1 && start != 0 && start_time(pid) == start {
                libc::kill(pid, sig);
            }
        }
    }
    if let Some((program, argv)) = sweep {
        // Descriptors 0 to 2 were closed: the sweep reports nothing and needs none.
        libc::execv(program.as_ptr(), argv.as_ptr());
    }
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guardian whose supervisor is done exits and is collected: no zombie is left in a
    /// program that reaps only its own children.
    #[test]
    fn a_dropped_guardian_is_collected() {
        let g = Guardian::start(None, None).unwrap();
        let proc_dir = format!("/proc/{}", g.pid);
        assert!(Path::new(&proc_dir).exists());
        drop(g);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Path::new(&proc_dir).exists() && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            !Path::new(&proc_dir).exists(),
            "{proc_dir} is left (a zombie)"
        );
    }
}
