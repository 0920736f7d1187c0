//! Operating-system mechanisms that confine an agent: cgroups and rlimits on Linux,
//! rlimits on other Unix systems, job objects on Windows.

use std::time::Duration;

#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(windows)]
pub mod job;
#[cfg(unix)]
pub mod rlimit;

/// The effective limits of one run, decided once by the policy before launch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Limits {
    /// Memory of the whole agent (all its processes).
    pub memory_bytes: Option<u64>,
    /// CPU time of the whole agent.
    pub cpu_seconds: Option<u64>,
    /// CPU bandwidth, in cores.
    pub cpu_cores: Option<f64>,
    /// Wall-clock timeout of the run.
    pub timeout: Option<Duration>,
    /// Processes alive at once in the agent's tree.
    pub max_processes: Option<u64>,
    /// Largest file the agent may write.
    pub file_size_bytes: Option<u64>,
}
