//! The launcher pool where there is none (no cgroups to start agents in ahead of time, no
//! `CLONE_VM` launcher): every launch takes the direct path. The type mirrors `pool.rs`.

use std::convert::Infallible;

use super::reaper::Reaper;
use crate::sandbox::cgroup::CgroupRoots;

/// No launchers are kept.
pub fn configured_size() -> usize {
    0
}

/// A pool, which cannot exist here: every method is unreachable.
pub(crate) struct LaunchPool {
    never: Infallible,
}

impl LaunchPool {
    pub fn start(_roots: &CgroupRoots, _reaper: &Reaper, _want: usize) -> Option<LaunchPool> {
        None
    }

    pub fn ready(&self) -> usize {
        match self.never {}
    }

    pub fn size(&self) -> usize {
        match self.never {}
    }

    pub fn refill(&self) {
        match self.never {}
    }

    pub fn stop(&self) {
        match self.never {}
    }
}
