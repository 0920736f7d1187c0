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
}

/// A started process and the read ends of its output pipes.
#[derive(Debug)]
pub struct Started {
    pub pid: i32,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Starts the process. Errors are the exec errors of the child (not found, permission denied).
pub fn spawn(l: &NativeLaunch<'_>) -> io::Result<Started> {
    let mut cmd = Command::new(l.program);
    if let Some(a0) = l.argv.first() {
        cmd.arg0(a0);
    }
    cmd.args(l.argv.iter().skip(1))
        .current_dir(l.cwd)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let fds = l.cgroup_fds.clone();
    let rl = l.rlimits;
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
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let stdout: OwnedFd = child.stdout.take().expect("piped stdout").into();
    let stderr: OwnedFd = child.stderr.take().expect("piped stderr").into();
    // The supervisor waits for the pid itself; dropping `child` neither waits nor kills.
    drop(child);
    #[cfg(target_os = "linux")]
    for fd in [&stdout, &stderr] {
        use std::os::fd::AsRawFd;
        // A larger pipe lets a chatty agent write in bigger strides.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    }
    Ok(Started {
        pid,
        stdout,
        stderr,
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
