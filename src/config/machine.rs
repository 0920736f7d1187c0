//! What this machine has, for the upper ends of the limit ranges: CPUs, memory and the
//! kernel's process ceiling. Read once per process.

use std::sync::OnceLock;

/// The machine's maxima.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Machine {
    /// CPUs this process may use (`available_parallelism`).
    pub cpus: u64,
    /// Total memory, MiB.
    pub memory_mb: u64,
    /// The kernel's ceiling on process ids (`/proc/sys/kernel/pid_max` on Linux).
    pub pid_max: u64,
}

/// The process ceiling where the system does not say one (2^22, Linux's own maximum).
const DEFAULT_PID_MAX: u64 = 4_194_304;

impl Machine {
    pub fn get() -> Machine {
        static M: OnceLock<Machine> = OnceLock::new();
        *M.get_or_init(|| Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_mb: total_memory_bytes().map_or(u64::MAX >> 20, |b| (b >> 20).max(1)),
            pid_max: pid_max().unwrap_or(DEFAULT_PID_MAX),
        })
    }
}

#[cfg(target_os = "linux")]
fn total_memory_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(not(target_os = "linux"))]
fn total_memory_bytes() -> Option<u64> {
    let mut s = sysinfo::System::new().ok()?;
    s.refresh_memory();
    Some(s.total_memory()).filter(|b| *b > 0)
}

#[cfg(target_os = "linux")]
fn pid_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn pid_max() -> Option<u64> {
    None
}
