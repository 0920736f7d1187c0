//! The guardian: a small process forked when the supervisor starts, whose only job is to kill
//! every agent if the supervisor dies, even by SIGKILL.
//!
//! It holds the read end of a pipe whose write end only the supervisor has (close-on-exec, so
//! agents never inherit it). The supervisor registers each agent's process group; when the
//! pipe reaches end of file the guardian kills the supervisor's whole cgroup subtree through
//! `cgroup.kill` and every registered process group, then exits. Between fork and exit it only
//! makes system calls on memory prepared before the fork, as a child of a threaded process must.

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

const MAX_GROUPS: usize = 16384;
const OP_ADD: i32 = 1;
const OP_REMOVE: i32 = 2;

/// The supervisor's side of the guardian.
#[derive(Debug)]
pub struct Guardian {
    pipe: Mutex<std::fs::File>,
}

impl Guardian {
    /// Forks the guardian. `cgroup_kill` is the `cgroup.kill` file of the supervisor's v2 base
    /// group, if there is one.
    pub fn start(cgroup_kill: Option<&Path>) -> io::Result<Guardian> {
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
        // SAFETY: the child of a threaded process may only make async-signal-safe calls until it
        // exits: `guardian_main` does exactly that, on memory allocated before this fork (the
        // pipe ends, the C path, `table`), and never returns.
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
            unsafe { guardian_main(rd, wr, kill_path.as_ref(), &mut table) }
        }
        // SAFETY: the read end is the child's now; the parent's copy is closed once, here.
        unsafe { libc::close(rd) };
        // SAFETY: `wr` is an open descriptor from pipe() that nothing else owns: the File takes
        // sole ownership and closes it on drop.
        let file = unsafe { std::fs::File::from(OwnedFd::from_raw_fd(wr)) };
        Ok(Guardian {
            pipe: Mutex::new(file),
        })
    }

    fn send(&self, op: i32, pgid: i32) {
        use std::io::Write;
        let mut rec = [0u8; 8];
        rec[..4].copy_from_slice(&op.to_ne_bytes());
        rec[4..].copy_from_slice(&pgid.to_ne_bytes());
        if let Ok(mut f) = self.pipe.lock() {
            let _ = f.write_all(&rec);
        }
    }

    /// The guardian will kill this process group if the supervisor dies.
    pub fn register(&self, pgid: i32) {
        self.send(OP_ADD, pgid);
    }

    pub fn unregister(&self, pgid: i32) {
        self.send(OP_REMOVE, pgid);
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

/// The guardian's whole life. Only async-signal-safe calls.
///
/// # Safety
/// Only in the child of `fork()` in `Guardian::start`: it closes every other descriptor, makes
/// only raw system calls on memory prepared before the fork, and ends with `_exit`.
unsafe fn guardian_main(rd: RawFd, wr: RawFd, kill_path: Option<&CString>, table: &mut [i32]) -> ! {
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
        while have - off >= 8 {
            let op = i32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]);
            let pg = i32::from_ne_bytes([buf[off + 4], buf[off + 5], buf[off + 6], buf[off + 7]]);
            off += 8;
            if op == OP_ADD && used < table.len() {
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
    libc::_exit(0)
}
