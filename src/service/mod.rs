//! The service: one background supervisor per user that outlives the terminal that asked for
//! its agents, and its API, HTTP with JSON over a Unix socket that only this user can reach.
//! `symbiont serve` runs it ([`server`]); `run --detach`, `ps`, `kill`, `logs`, `history`,
//! `shutdown` and `exec` are clients of it ([`client`]), as is any program that speaks HTTP.
//!
//! Where it lives: `$XDG_RUNTIME_DIR/symbiont/` (else `/tmp/symbiont-UID/`), a directory of
//! mode 0700 holding `api.sock` (0600) and `service.lock`, which the running service holds
//! locked: a second one for the same user is refused.

pub mod api;
pub mod client;
pub mod commands;
pub mod server;

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub use client::{Client, ClientError};

/// The directory of this user's service: `$XDG_RUNTIME_DIR/symbiont`, else
/// `/tmp/symbiont-UID` (the runtime directory is per user and private already; /tmp is not, so
/// the directory is checked: it must be this user's, a real directory, and 0700).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("symbiont"),
        None => std::env::temp_dir().join(format!("symbiont-{}", nix::unistd::getuid())),
    }
}

/// The API socket of this user's service.
pub fn socket_path() -> PathBuf {
    runtime_dir().join("api.sock")
}

/// Makes (or checks) the service's directory: this user's own, not a link, mode 0700.
pub fn prepare_runtime_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
    let m = std::fs::symlink_metadata(dir)?;
    let me = nix::unistd::getuid().as_raw();
    if !m.is_dir() || m.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of this user (uid {me}): remove it, or set XDG_RUNTIME_DIR",
                dir.display()
            ),
        ));
    }
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The running service's claim on its directory: an exclusive lock on `service.lock`, held
/// until the service exits (the kernel drops it even on SIGKILL), with the service's pid in it.
pub struct ServiceLock {
    _lock: nix::fcntl::Flock<File>,
}

impl ServiceLock {
    /// Takes the lock, or says which service holds it.
    pub fn take(dir: &Path) -> io::Result<ServiceLock> {
        let path = dir.join("service.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                lock.set_len(0)?;
                writeln!(lock, "{}", std::process::id())?;
                Ok(ServiceLock { _lock: lock })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "a symbiont service already runs for this user (pid {}, socket {}); \
                         `symbiont shutdown` stops it",
                        pid.trim(),
                        dir.join("api.sock").display()
                    ),
                ))
            }
            Err((_, e)) => Err(io::Error::other(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
}
