//! Operating-system mechanisms that confine an agent: cgroups and rlimits on Linux,
//! rlimits on other Unix systems, job objects on Windows.

// The one place the platform's cgroups are chosen: none outside Linux.
#[cfg(unix)]
#[cfg_attr(target_os = "linux", path = "cgroup.rs")]
#[cfg_attr(not(target_os = "linux"), path = "cgroup_none.rs")]
pub mod cgroup;
#[cfg(windows)]
pub mod job;
#[cfg(unix)]
pub mod rlimit;
