//! The native runner: one agent step as a host process, started without a shell, as the leader
//! of its own process group, inside its run's cgroups and under its rlimits.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::sandbox::rlimit::RlimitSet;

/// Everything needed to start one process.
#[derive(Debug, Clone)]
pub struct NativeLaunch<'a> {
    /// The resolved program (checked against the allowlist by the policy).
    pub program: &'a Path,
    /// argv, argv[0] included (as the agent wrote it).
    pub argv: &'a [String],
    pub cwd: &'a Path,
    /// The complete environment: nothing else is inherited.
    pub env: &'a [(String, String)],
    /// `cgroup.procs` descriptors the child writes itself into.
    pub cgroup_fds: Vec<RawFd>,
    pub rlimits: RlimitSet,
    /// CPUs the process may run on: the `max_cpu_cores` fallback where no cgroup sets a quota.
    #[cfg(target_os = "linux")]
    pub affinity: Option<libc::cpu_set_t>,
    /// Make the process a child subreaper (Linux; it survives `execve`): where no cgroup holds
    /// the run, its descendants orphaned while it lives are re-parented to it, not to init, and
    /// stay in the run's tree.
    pub subreaper: bool,
    /// The process's standard input (a pipe or file the caller holds open); /dev/null
    /// without one.
    pub stdin: Option<RawFd>,
    /// The native sandbox the process applies to itself just before its exec.
    #[cfg(target_os = "linux")]
    pub sandbox: Option<&'a crate::sandbox::ChildSandbox>,
}

/// The first `ceil(cores)` CPUs this process may use, as an affinity mask.
#[cfg(target_os = "linux")]
pub fn affinity_for(cores: f64) -> Option<libc::cpu_set_t> {
    let cur = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let want = cores.ceil().max(1.0) as usize;
    // The result is libc's `cpu_set_t` (what `NativeLaunch::affinity` carries to the child);
    // nix's `CpuSet` does not convert to it, so the bits are copied one by one.
    // SAFETY: `cpu_set_t` is an integer array; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let mut n = 0;
    for cpu in 0..libc::CPU_SETSIZE as usize {
        if n == want {
            break;
        }
        if cur.is_set(cpu).unwrap_or(false) {
            // SAFETY: CPU_SET is a bounds-checked bit operation on `set`'s integer array, no
            // pointer involved; `cpu < CPU_SETSIZE`, so it does not even panic.
            unsafe { libc::CPU_SET(cpu, &mut set) };
            n += 1;
        }
    }
    (n > 0).then_some(set)
}

/// A started process and the read ends of its output pipes.
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The listener of the sandbox's seccomp filter: the calls it denies, to be answered.
    pub denials: Option<OwnedFd>,
}

/// The capacity an output pipe is given while its agent writes faster than it is read: a
/// chatty agent then writes in bigger strides (1 GiB to stdout went from 0.46x to about 1x of
/// its speed to a file, figure 6).
pub const WIDE_PIPE: usize = 1 << 20;
/// Linux's default pipe capacity, which an output pipe gets back once its agent slows down.
pub const DEFAULT_PIPE: usize = 1 << 16;

/// Sets the capacity of the pipe `fd` is an end of; whether it took. Only while it is needed:
/// the kernel counts every pipe's capacity against its user (`fs.pipe-user-pages-soft`, 64 MiB
/// by default), and past that an ordinary user's new pipes get 8 KiB, in every program of the
/// session: 1 MiB for every agent's two pipes did that at 32 agents.
pub fn set_pipe_size(fd: &impl std::os::fd::AsFd, bytes: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETPIPE_SZ(bytes)).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (fd, bytes);
        false
    }
}

/// Starts the process. Errors are the exec errors of the child (not found, permission denied).
pub fn spawn(l: &NativeLaunch<'_>) -> io::Result<Started> {
    #[cfg(target_os = "linux")]
    let started = super::vfork::spawn(l)?;
    #[cfg(not(target_os = "linux"))]
    let started = spawn_forked(l)?;
    Ok(started)
}

/// The portable path: std's `Command` with a `pre_exec` hook (a full fork).
#[cfg_attr(target_os = "linux", allow(dead_code))]
pub fn spawn_forked(l: &NativeLaunch<'_>) -> io::Result<Started> {
    let mut cmd = Command::new(l.program);
    if let Some(a0) = l.argv.first() {
        cmd.arg0(a0);
    }
    cmd.args(l.argv.iter().skip(1))
        .current_dir(l.cwd)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .stdin(match l.stdin {
            // A copy: `Command` closes what it is given.
            Some(fd) => Stdio::from(
                // SAFETY: `fd` is open for the whole call (the caller holds it, see `stdin`).
                unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?,
            ),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let fds = l.cgroup_fds.clone();
    let rl = l.rlimits;
    #[cfg(target_os = "linux")]
    let affinity = l.affinity;
    // SAFETY: the hook runs in the forked child between fork and exec, where another thread
    // of the supervisor may have held a lock (malloc's among them) at the fork: it must be
    // async-signal-safe. It only makes system calls through raw libc wrappers (setpgid;
    // write(2) in `join_in_child`; getrlimit/setrlimit in `RlimitSet::apply`;
    // sched_setaffinity, reading a whole `cpu_set_t` moved into the closure), allocates
    // nothing (the descriptor list was built and moved in before the fork, and
    // `io::Error::last_os_error` stores the OS code inline) and takes no lock. The
    // descriptors it writes to are the caller's open `cgroup.procs` files, inherited.
    unsafe {
        cmd.pre_exec(move || {
            // Between fork and exec: async-signal-safe calls only.
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            crate::sandbox::cgroup::join_in_child(&fds)?;
            #[cfg(not(target_os = "linux"))]
            let _ = &fds;
            rl.apply()?;
            #[cfg(target_os = "linux")]
            if let Some(set) = &affinity {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let stdout: OwnedFd = child.stdout.take().expect("piped stdout").into();
    let stderr: OwnedFd = child.stderr.take().expect("piped stderr").into();
    // The supervisor waits for the pid itself; dropping `child` neither waits nor kills.
    drop(child);
    Ok(Started {
        pid,
        stdout,
        stderr,
        denials: None,
    })
}

/// Turns a pipe's read end into an async reader.
pub fn async_pipe(fd: OwnedFd) -> io::Result<tokio::net::unix::pipe::Receiver> {
    tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
}

/// Looks a program name up in `path` (a PATH value), as a shell would.
pub fn which(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = path?;
    std::env::split_paths(path).find_map(|dir| {
        if dir.as_os_str().is_empty() {
            return None;
        }
        let p = dir.join(name);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some(p)
    })
}
