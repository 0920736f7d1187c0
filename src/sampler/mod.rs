//! Sampling the processes of an agent: CPU time, resident memory, process count.

#[cfg(target_os = "linux")]
pub mod procfs;
#[cfg(not(target_os = "linux"))]
pub mod sys;

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
}
