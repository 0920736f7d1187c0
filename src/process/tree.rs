//! The process tree of one native run on Unix: found through its cgroup where there is one,
//! else through the supervisor's census (`census.rs`: every process descended from the run's
//! main, by pid and start time, on Linux) or its process group and the parent links (sysinfo
//! on macOS); at kill time also by the run's environment marker.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use super::census::Census;
use super::signal;
use crate::sandbox::cgroup::RunCgroup;
use crate::supervisor::{Sig, Tree};

/// Finds, signals and kills every process of one run. Shared by the run task and the
/// supervisor's `Drop`.
#[derive(Debug)]
pub struct TreeHandle {
    /// The run's groups, where the system has them.
    pub(crate) cgroup: Mutex<Option<RunCgroup>>,
    main_pid: AtomicI32,
    pgid: AtomicI32,
    /// The run is over and its cgroup taken for removal (which kills anything left in it):
    /// nothing of the run is left to find, signal or search /proc for.
    gone: AtomicBool,
    /// `SYMBIONT_RUN=<token>`: in the environment of every process of the run.
    marker: String,
    /// Keeps the run in view when no cgroup holds it.
    census: Arc<Census>,
    /// What the run's sandbox refused (seccomp's notifications).
    pub(crate) denials: crate::supervisor::target::Denials,
}

impl TreeHandle {
    pub(crate) fn new(marker: String, census: Arc<Census>) -> TreeHandle {
        census.track(&marker);
        TreeHandle {
            cgroup: Mutex::new(None),
            main_pid: AtomicI32::new(0),
            pgid: AtomicI32::new(0),
            gone: AtomicBool::new(false),
            marker,
            census,
            denials: Default::default(),
        }
    }

    pub(crate) fn set_main(&self, pid: i32) {
        self.main_pid.store(pid, Ordering::SeqCst);
        self.pgid.store(pid, Ordering::SeqCst);
        if !self.has_cgroup() {
            self.census.adopt(&self.marker, pid);
        }
    }

    /// The run's processes as the census saw them (at most half its interval ago, or now with
    /// `fresh`), where no cgroup holds the run and the platform has a census.
    fn census_samples(&self, fresh: bool) -> Option<Vec<crate::sampler::ProcSample>> {
        if self.gone() || self.has_cgroup() {
            return None;
        }
        self.census.samples(&self.marker, fresh)
    }

    /// The main process has been reaped: its pid no longer names it.
    pub(crate) fn main_reaped(&self) {
        self.main_pid.store(0, Ordering::SeqCst);
    }

    pub fn main_pid(&self) -> i32 {
        self.main_pid.load(Ordering::SeqCst)
    }

    fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Takes the run's cgroup to remove it, once the run is over: the tree counts as gone from
    /// now on (the sampler would otherwise search all of /proc for it on every refresh).
    pub(crate) fn take_cgroup(&self) -> Option<RunCgroup> {
        let mut c = self.cgroup.lock().unwrap_or_else(|e| e.into_inner());
        let cg = c.take();
        if cg.is_some() {
            self.gone.store(true, Ordering::SeqCst);
        }
        cg
    }

    /// Gives back a cgroup that could not be removed: what is left in it is found through it
    /// again.
    pub(crate) fn put_back(&self, cg: RunCgroup) {
        let mut c = self.cgroup.lock().unwrap_or_else(|e| e.into_inner());
        *c = Some(cg);
        self.gone.store(false, Ordering::SeqCst);
    }

    fn has_cgroup(&self) -> bool {
        self.cgroup.lock().map(|c| c.is_some()).unwrap_or(false)
    }

    /// Every live process of the run.
    pub fn pids(&self) -> Vec<i32> {
        if self.gone() {
            return Vec::new();
        }
        if let Ok(c) = self.cgroup.lock() {
            if let Some(cg) = c.as_ref() {
                return cg.pids();
            }
            // Taken for removal while this waited for the lock.
            if self.gone() {
                return Vec::new();
            }
        }
        if let Some(s) = self.census_samples(false) {
            return s.iter().map(|p| p.pid).collect();
        }
        let (main, pg) = (self.main_pid(), self.pgid.load(Ordering::SeqCst));
        if main <= 0 && pg <= 1 {
            return Vec::new();
        }
        crate::sampler::tree_pids(main, pg)
    }

    /// Every process of the run, searching the whole host for its environment marker when no
    /// cgroup holds the run (so a double-forked `setsid` daemon is found too).
    pub fn pids_thorough(&self) -> Vec<i32> {
        if self.has_cgroup() || self.gone() {
            return self.pids();
        }
        let mut p = match self.census_samples(true) {
            Some(s) => s.iter().map(|p| p.pid).collect(),
            None => self.pids(),
        };
        p.extend(crate::sampler::pids_with_env(&self.marker));
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Sends `sig` to every process of the run.
    pub fn send(&self, sig: Sig) {
        if self.gone() {
            return;
        }
        let pg = self.pgid.load(Ordering::SeqCst);
        {
            if let Ok(c) = self.cgroup.lock() {
                if let Some(cg) = c.as_ref() {
                    if sig == Sig::Cont {
                        cg.freeze(false);
                    }
                    cg.signal(signal::number(sig));
                }
            }
        }
        if pg > 1 {
            signal::to_group(pg, sig);
        }
        if !self.has_cgroup() {
            // The census's members through pidfds proven to name them; then whatever else
            // carries the marker (born since the census looked).
            match self.census.signal(&self.marker, sig) {
                Some(members) => {
                    for p in crate::sampler::pids_with_env(&self.marker) {
                        if !members.contains(&p) {
                            signal::to_process(p, sig);
                        }
                    }
                }
                None => {
                    for p in self.pids_thorough() {
                        signal::to_process(p, sig);
                    }
                }
            }
        }
    }

    /// Sends `sig` to one process of the run (and to nothing outside it).
    pub fn send_to(&self, pid: i32, sig: Sig) -> bool {
        self.pids_thorough().contains(&pid) && signal::to_process(pid, sig)
    }

    /// SIGKILL to the whole tree, at once.
    pub fn kill_now(&self) {
        self.send(Sig::Kill);
    }

    /// Whether any process of the run is still alive (zombies not yet reaped count as gone).
    pub fn is_empty(&self) -> bool {
        {
            if let Ok(c) = self.cgroup.lock() {
                if let Some(cg) = c.as_ref() {
                    return cg.is_empty();
                }
            }
        }
        self.pids_thorough()
            .iter()
            .all(|&p| signal::is_zombie_or_gone(p))
    }

    /// Freezes (pause) or thaws the tree: the cgroup freezer where there is one, else STOP/CONT.
    pub fn freeze(&self, frozen: bool) {
        {
            if let Ok(c) = self.cgroup.lock() {
                if let Some(cg) = c.as_ref() {
                    if cg.freeze(frozen) {
                        return;
                    }
                }
            }
        }
        self.send(if frozen { Sig::Stop } else { Sig::Cont });
    }
}

impl TreeHandle {
    /// Times the kernel's OOM killer acted in the run's cgroup.
    pub fn oom_kills(&self) -> u64 {
        if let Some(n) = self
            .cgroup
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.oom_kills()))
        {
            return n;
        }
        0
    }

    /// Forks the pids controller refused.
    pub fn fork_refusals(&self) -> u64 {
        if let Some(n) = self
            .cgroup
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.fork_refusals()))
        {
            return n;
        }
        0
    }

    /// The cgroup file counting the tree's CPU time (`cpu.stat` of v2: true; `cpuacct.usage`: false).
    pub fn cpu_counter_path(&self) -> Option<(std::path::PathBuf, bool)> {
        self.cgroup
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|c| c.cpu_counter_path()))
    }

    /// The most memory the tree held at once, where its cgroup has a memory controller.
    pub fn cgroup_memory_peak(&self) -> Option<u64> {
        self.cgroup
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|c| c.memory_peak()))
    }

    /// CPU time of the whole tree, exited processes included, where a cgroup counts it.
    pub fn cgroup_cpu_time(&self) -> Option<std::time::Duration> {
        if let Some(t) = self
            .cgroup
            .lock()
            .ok()
            .and_then(|c| c.as_ref().and_then(|c| c.cpu_time()))
        {
            return Some(t);
        }
        None
    }
}

impl Drop for TreeHandle {
    fn drop(&mut self) {
        self.census.forget(&self.marker);
    }
}

impl Tree for TreeHandle {
    fn pids(&self) -> Vec<i32> {
        TreeHandle::pids(self)
    }

    fn samples(&self) -> Option<Vec<crate::sampler::ProcSample>> {
        self.census_samples(false)
    }

    fn kill_now(&self) {
        TreeHandle::kill_now(self)
    }

    fn oom_kills(&self) -> u64 {
        TreeHandle::oom_kills(self)
    }

    fn fork_refusals(&self) -> u64 {
        TreeHandle::fork_refusals(self)
    }

    fn denials(&self) -> Option<&crate::supervisor::target::Denials> {
        Some(&self.denials)
    }

    fn cpu_counter(&self) -> Option<(std::path::PathBuf, bool)> {
        self.cpu_counter_path()
    }
}
