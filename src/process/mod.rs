//! Processes of the native tier, one file per mechanism: reaping exits, the guardian that
//! kills every agent when the supervisor dies, the launcher pool, signals, the process tree
//! of a run and the removal of ended runs' cgroups. The platform is chosen here, once per
//! mechanism.

use std::time::Duration;

#[cfg(unix)]
pub(crate) mod guardian;
#[cfg(unix)]
#[cfg_attr(target_os = "linux", path = "pool.rs")]
#[cfg_attr(not(target_os = "linux"), path = "pool_none.rs")]
pub(crate) mod pool;
#[cfg_attr(unix, path = "reaper.rs")]
#[cfg_attr(windows, path = "reaper_windows.rs")]
pub(crate) mod reaper;
#[cfg(unix)]
pub(crate) mod remover;
#[cfg(unix)]
pub(crate) mod signal;
#[cfg(unix)]
pub(crate) mod tree;

/// How a main process ended, with the CPU time of it and its reaped descendants.
#[derive(Debug, Clone, Copy)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu: Duration,
    /// Largest resident set of the process or any descendant it waited for, in bytes.
    pub max_rss_bytes: u64,
}
