//! Operating-system mechanisms that confine an agent: cgroups and rlimits on Linux,
//! rlimits on other Unix systems, job objects on Windows.

#[cfg(target_os = "linux")]
pub mod cgroup;
#[cfg(windows)]
pub mod job;
#[cfg(unix)]
pub mod rlimit;
