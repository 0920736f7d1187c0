//! Resource limits applied between fork and exec (async-signal-safe: plain setrlimit calls).

use std::io;

/// One limit to apply in the child: (resource, soft, hard).
#[derive(Debug, Clone, Copy, Default)]
pub struct RlimitSet {
    items: [(i32, u64, u64); 6],
    len: usize,
}

impl RlimitSet {
    pub fn push(&mut self, resource: i32, soft: u64, hard: u64) {
        if self.len < self.items.len() {
            self.items[self.len] = (resource, soft, hard);
            self.len += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// CPU seconds: soft below hard, so the agent gets SIGXCPU first and the record can say why.
    pub fn cpu_seconds(&mut self, secs: u64) {
        self.push(libc::RLIMIT_CPU as i32, secs, secs + 2);
    }

    pub fn file_size(&mut self, bytes: u64) {
        self.push(libc::RLIMIT_FSIZE as i32, bytes, bytes);
    }

    /// RLIMIT_DATA: brk and private writable mappings, not address space merely reserved
    /// (`PROT_NONE`), which the JVM and V8's WebAssembly reserve by the gigabyte up front and
    /// RLIMIT_AS would refuse. One allocation past it fails (ENOMEM, a MemoryError).
    pub fn data(&mut self, bytes: u64) {
        self.push(libc::RLIMIT_DATA as i32, bytes, bytes);
    }

    pub fn processes(&mut self, n: u64) {
        self.push(libc::RLIMIT_NPROC as i32, n, n);
    }

    /// Gives the agent back the soft open-files limit the supervisor started with (see
    /// `raise_open_files`), leaving the hard limit as it is.
    pub fn open_files_as_started(&mut self) {
        if let Some(soft) = ORIGINAL_NOFILE.get().copied().flatten() {
            self.push(libc::RLIMIT_NOFILE as i32, soft, u64::MAX);
        }
    }

    /// Applies every limit, never raising a hard limit above the current one (that would need
    /// CAP_SYS_RESOURCE). Async-signal-safe.
    ///
    /// Every caller runs it in a child between clone/fork and exec (a `CLONE_VM` one, sharing
    /// the supervisor's memory, for the launchers), so it stays raw libc: nix's `getrlimit` and
    /// `setrlimit` are thin, but take a `Resource` enum this set would have to map its numbers
    /// onto, and the child code keeps to plain system calls throughout.
    pub fn apply(&self) -> io::Result<()> {
        for &(res, soft, hard) in &self.items[..self.len] {
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            #[allow(clippy::useless_conversion)]
            let r = res.try_into().unwrap_or_default();
            // SAFETY: getrlimit writes one `rlimit` into `cur`, a live local of that type; an
            // unknown resource number makes it fail (EINVAL) without writing. A plain system
            // call: no allocation, no lock, as the child needs.
            if unsafe { libc::getrlimit(r, &mut cur) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let hard = (hard as libc::rlim_t).min(cur.rlim_max);
            let soft = (soft as libc::rlim_t).min(hard);
            let new = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit reads one `rlimit` from `new`, a live local; it cannot raise the
            // hard limit (clamped above), and affects only the calling process.
            if unsafe { libc::setrlimit(r, &new) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The soft open-files limit before `raise_open_files` raised it, if it did.
static ORIGINAL_NOFILE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();

/// Raises this process's soft open-files limit to its hard limit, once: a supervisor holds two
/// pipes per running agent, and a login session's usual soft limit of 1024 stops it near 500
/// agents ("Too many open files"). Agents get the original soft limit back
/// (`open_files_as_started`): programs that use `select()` expect at most 1024.
pub fn raise_open_files() {
    ORIGINAL_NOFILE.get_or_init(|| {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft >= hard {
            return None;
        }
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).ok()?;
        Some(soft)
    });
}
