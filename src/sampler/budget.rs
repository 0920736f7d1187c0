//! How many files the supervisor keeps open only for speed (a sampled process's `stat`, a run's
//! cgroup `cpu.stat`): one `pread` per sample instead of open, read and close. Such files are
//! kept only while the process's descriptor table is well below its open-files limit (a
//! quarter of the soft limit); past that, each sample opens, reads and closes its file, and
//! the descriptors go to what cannot do without them: the agents' pipes. A hundred agents
//! then start under `ulimit -n 256`, where seven descriptors each did not fit.
//!
//! Cheap figures tell how full the table is: how many files this budget keeps; how many
//! descriptors the process held at the watchdog's last refresh (`recount`: one directory read
//! per refresh, not per file); and since then, the highest number of a descriptor the
//! supervisor made (a spawn's pipes: the kernel gives the lowest free number, so every lower
//! one was in use then). Files kept while the table was roomy are given back at their next
//! read once it is not (`Kept::over`).

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The budget of kept-open files of one process.
#[derive(Debug)]
pub struct FdBudget {
    /// Kept files and descriptor numbers stay below this.
    limit: AtomicUsize,
    /// Files kept now.
    held: AtomicUsize,
    /// Descriptors open at the last `recount`.
    counted: AtomicUsize,
    /// The highest number of a descriptor made since (see `saw`).
    last_fd: AtomicUsize,
}

/// A file the budget keeps open; its place is given back when it is dropped.
#[derive(Debug)]
pub struct Kept {
    file: File,
    budget: &'static FdBudget,
}

impl Kept {
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The table has filled since this file was kept: close it, read per sample from now on.
    pub fn over(&self) -> bool {
        !self.budget.roomy(0)
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Unset: the limit is read at the first use.
const UNSET: usize = usize::MAX;

impl FdBudget {
    /// A budget of at most `limit` kept files, kept while descriptor numbers stay below it.
    pub const fn with_limit(limit: usize) -> FdBudget {
        FdBudget {
            limit: AtomicUsize::new(limit),
            held: AtomicUsize::new(0),
            counted: AtomicUsize::new(0),
            last_fd: AtomicUsize::new(0),
        }
    }

    /// The process's budget: a quarter of its soft open-files limit, read at the first use
    /// (after `raise_open_files`).
    pub fn global() -> &'static FdBudget {
        static B: FdBudget = FdBudget::with_limit(UNSET);
        if B.limit.load(Ordering::Relaxed) == UNSET {
            B.limit.store(soft_limit() / 4, Ordering::Relaxed);
        }
        &B
    }

    /// Notes a descriptor the process just made (its number; on Windows, nothing).
    pub fn saw(&self, f: &impl AsDescriptor) {
        if let Some(n) = f.number() {
            self.last_fd.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Counts the process's open descriptors (where the system lists them: `/proc/self/fd`,
    /// `/dev/fd`); the numbers seen since the last count are then forgotten.
    pub fn recount(&self) {
        #[cfg(target_os = "linux")]
        let dir = "/proc/self/fd";
        #[cfg(not(target_os = "linux"))]
        let dir = "/dev/fd";
        if let Ok(d) = std::fs::read_dir(dir) {
            // Less the one the listing itself holds.
            let n = d.count().saturating_sub(1);
            self.counted.store(n, Ordering::Relaxed);
            self.last_fd.store(0, Ordering::Relaxed);
        }
    }

    /// Whether `more` files could be kept on top of those kept now.
    fn roomy(&self, more: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.held.load(Ordering::Relaxed) + more <= limit
            && self.last_fd.load(Ordering::Relaxed) < limit
            && self.counted.load(Ordering::Relaxed) < limit
    }

    /// Keeps `f` open if the table is roomy; else gives it back, for the caller to close
    /// after its read.
    pub fn keep(&'static self, f: File) -> Result<Kept, File> {
        self.saw(&f);
        if !self.roomy(1) {
            return Err(f);
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        Ok(Kept {
            file: f,
            budget: self,
        })
    }

    /// Files kept now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Something holding a descriptor whose number tells how full the table is.
pub trait AsDescriptor {
    fn number(&self) -> Option<usize>;
}

#[cfg(unix)]
impl<T: std::os::fd::AsRawFd> AsDescriptor for T {
    fn number(&self) -> Option<usize> {
        usize::try_from(self.as_raw_fd()).ok()
    }
}

#[cfg(not(unix))]
impl<T> AsDescriptor for T {
    fn number(&self) -> Option<usize> {
        None
    }
}

/// The message of a step that could not start because of `e` (`what`: the program, or the
/// step that failed): with no descriptor left (EMFILE, ENFILE) it says so, with the limit and
/// how to raise it.
pub fn spawn_error(what: &dyn std::fmt::Display, e: &std::io::Error) -> String {
    let program = what;
    #[cfg(unix)]
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            return format!(
                "{program}: the supervisor has no file descriptor left ({e}; its open-files \
                 limit is {}, and each running agent holds two): raise the limit where \
                 symbiont is started, e.g. `ulimit -n 65536` in its shell (soft and hard), or \
                 LimitNOFILE=65536 in its systemd unit",
                soft_limit()
            )
        }
        Some(libc::ENFILE) => {
            return format!(
                "{program}: the system's file table is full ({e}): raise fs.file-max \
                 (`sysctl -w fs.file-max=...`) or run fewer agents"
            )
        }
        _ => {}
    }
    format!("{program}: {e}")
}

#[cfg(unix)]
fn soft_limit() -> usize {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `rl`, a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    usize::try_from(rl.rlim_cur).unwrap_or(usize::MAX / 2)
}

#[cfg(not(unix))]
fn soft_limit() -> usize {
    // Windows has no such limit on handles; the budget then bounds only the kept files.
    1 << 20
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> File {
        File::open(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn keeps_files_up_to_its_limit() {
        // Descriptor numbers of this test process stay well below 1000.
        static B: FdBudget = FdBudget::with_limit(1000);
        let a = B.keep(file()).unwrap();
        let b = B.keep(file()).unwrap();
        assert_eq!(B.held(), 2);
        assert!(!b.over());
        // Fewer allowed than held (on every platform: Windows has no descriptor numbers to
        // tell it by).
        B.limit.store(1, Ordering::Relaxed);
        assert!(B.keep(file()).is_err());
        // A crowded table: kept files are given back at their next read.
        assert!(b.over());
        drop(a);
        assert_eq!(B.held(), 1);
        drop(b);
        assert_eq!(B.held(), 0);
    }

    #[test]
    fn a_spawn_without_descriptors_says_how_to_raise_the_limit() {
        let p = &std::path::Path::new("/usr/bin/sleep").display();
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(spawn_error(p, &e).starts_with("/usr/bin/sleep: "));
        #[cfg(unix)]
        {
            let m = spawn_error(p, &std::io::Error::from_raw_os_error(libc::EMFILE));
            assert!(m.contains("ulimit -n") && m.contains("LimitNOFILE="), "{m}");
            assert!(m.contains("Too many open files"), "{m}");
            let m = spawn_error(p, &std::io::Error::from_raw_os_error(libc::ENFILE));
            assert!(m.contains("fs.file-max"), "{m}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn counts_the_open_descriptors() {
        static B: FdBudget = FdBudget::with_limit(100_000);
        B.recount();
        let before = B.counted.load(Ordering::Relaxed);
        assert!(before >= 3, "{before}");
        let many: Vec<File> = (0..20).map(|_| file()).collect();
        B.recount();
        // Other tests open and close files meanwhile.
        assert!(B.counted.load(Ordering::Relaxed) >= 20);
        drop(many);
    }

    #[test]
    fn keeps_nothing_in_a_crowded_table() {
        static B: FdBudget = FdBudget::with_limit(0);
        assert!(B.keep(file()).is_err());
        assert_eq!(B.held(), 0);
    }
}
