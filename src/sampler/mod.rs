//! Sampling the processes of an agent: CPU time, resident memory, process count.

pub mod budget;
#[cfg(target_os = "linux")]
pub mod procfs;
#[cfg(not(target_os = "linux"))]
pub mod sys;

// The one place the platform's sampler is chosen.
#[cfg(target_os = "linux")]
pub use procfs::{
    descendants, pids_with_env, pids_with_env_prefix, tree_pids, user_process_count, Reader,
};
#[cfg(not(target_os = "linux"))]
pub use sys::{
    descendants, pids_with_env, pids_with_env_prefix, tree_pids, user_process_count, Reader,
};

/// Reads a small file from its start into `buf` without moving its offset (a kept-open
/// counter re-read each sample). `None` on error.
pub fn read_at(f: &std::fs::File, buf: &mut Vec<u8>) -> Option<usize> {
    buf.clear();
    buf.resize(4096, 0);
    #[cfg(unix)]
    let n = std::os::unix::fs::FileExt::read_at(f, buf, 0).ok()?;
    #[cfg(windows)]
    let n = std::os::windows::fs::FileExt::seek_read(f, buf, 0).ok()?;
    buf.truncate(n);
    Some(n)
}

/// One process as sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSample {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub state: char,
    /// User plus system CPU time, in nanoseconds.
    pub cpu_ns: u64,
    pub rss_bytes: u64,
    pub name: String,
    /// When the process started (clock ticks since boot on Linux, seconds since the epoch
    /// elsewhere): with the pid, it names one process, never a later one that reused the pid.
    pub start: u64,
}
