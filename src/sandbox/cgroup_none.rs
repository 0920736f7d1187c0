//! Cgroups where the kernel has none (macOS, the BSDs): no run ever gets a group, so the
//! native tier falls back to process groups, rlimits and the watchdog. The types mirror
//! `cgroup.rs`, so the tier's code reads the same on every Unix system.

use std::convert::Infallible;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::supervisor::Limits;

/// No hierarchy at all.
#[derive(Debug, Clone, Default)]
pub struct CgroupRoots {
    pub v2: Option<PathBuf>,
}

impl CgroupRoots {
    pub fn detect(_instance: &str) -> CgroupRoots {
        CgroupRoots::default()
    }

    pub fn any(&self) -> bool {
        false
    }

    pub fn memory_limit_available(&self) -> bool {
        false
    }

    pub fn pids_limit_available(&self) -> bool {
        false
    }

    pub fn fleet_cpu_counter(&self) -> Option<(PathBuf, bool)> {
        None
    }

    pub fn holds(&self, _controller: &str) -> Option<&'static str> {
        None
    }

    /// Nothing one step away: the kernel has no cgroups.
    pub fn step(&self) -> Option<String> {
        None
    }

    pub fn describe(&self) -> Vec<String> {
        Vec::new()
    }

    pub fn remove_bases(&self) {}
}

pub use super::Enforced;

/// No limit is ever written here, so none is refused.
pub fn refused_limit(_e: &io::Error) -> Option<&'static (dyn std::error::Error + Sync)> {
    None
}

/// A run's groups, which cannot exist here: every method is unreachable.
#[derive(Debug)]
pub struct RunCgroup {
    pub enforced: Enforced,
    never: Infallible,
}

impl RunCgroup {
    pub fn create(
        _roots: &CgroupRoots,
        _name: &str,
        _limits: &Limits,
        _enforce: bool,
    ) -> io::Result<RunCgroup> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this system has no cgroups",
        ))
    }

    pub fn open_join(&self) -> io::Result<Vec<OwnedFd>> {
        match self.never {}
    }

    pub fn pids(&self) -> Vec<i32> {
        match self.never {}
    }

    pub fn is_empty(&self) -> bool {
        match self.never {}
    }

    pub fn signal(&self, _sig: i32) {
        match self.never {}
    }

    pub fn freeze(&self, _frozen: bool) -> bool {
        match self.never {}
    }

    pub fn oom_kills(&self) -> u64 {
        match self.never {}
    }

    pub fn fork_refusals(&self) -> u64 {
        match self.never {}
    }

    pub fn cpu_time(&self) -> Option<Duration> {
        match self.never {}
    }

    pub fn memory_peak(&self) -> Option<u64> {
        match self.never {}
    }

    pub fn cpu_counter_path(&self) -> Option<(PathBuf, bool)> {
        match self.never {}
    }

    pub fn destroy(&mut self) -> bool {
        match self.never {}
    }

    pub fn try_remove(&mut self) -> bool {
        match self.never {}
    }
}
