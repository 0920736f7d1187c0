//! Operating-system mechanisms that confine an agent: cgroups and rlimits on Linux,
//! rlimits on other Unix systems, job objects on Windows.

// The one place the platform's cgroups are chosen: none outside Linux.
#[cfg(unix)]
#[cfg_attr(target_os = "linux", path = "cgroup.rs")]
#[cfg_attr(not(target_os = "linux"), path = "cgroup_none.rs")]
pub mod cgroup;
#[cfg(windows)]
pub mod job;
#[cfg(target_os = "linux")]
pub mod systemd;

/// What a run's groups enforce, for the record and `symbiont check` (nothing where the system
/// has no cgroups).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enforced {
    pub memory: bool,
    pub pids: bool,
    pub cpu_quota: bool,
    pub tree: bool,
}
#[cfg(unix)]
pub mod rlimit;
