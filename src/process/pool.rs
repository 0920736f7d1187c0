//! The launcher pool (Linux, with cgroups): a few zygotes kept ready on a thread of their own,
//! each already inside a fresh set of run groups that carry the last launch's limits. A launch
//! takes one, writes whatever limits differ into the groups and sends it the command; the pool
//! forks a replacement meanwhile. When the pool is empty (a burst of launches), a launch takes
//! the direct path, as without a pool.
//!
//! `SYMBIONT_LAUNCH_POOL=N` sets how many are kept ready (default 4; 0 turns the pool off).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::reaper::{ExitInfo, Reaper};
use crate::runner::zygote::Zygote;
use crate::sandbox::cgroup::{CgroupRoots, RunCgroup};
use crate::sandbox::seccomp::Filter;
use crate::supervisor::Limits;

/// How many launchers are kept ready by default.
pub const DEFAULT_SIZE: usize = 4;

/// A ready launcher with its groups and its exit.
pub(crate) struct Pooled {
    pub zygote: Zygote,
    pub cgroup: RunCgroup,
    pub exit: oneshot::Receiver<ExitInfo>,
}

impl Pooled {
    /// Ends an unused launcher (it exits when its command pipe closes) and removes its groups.
    /// Blocking: up to half a second while the groups empty.
    pub fn discard(self, reaper: &Reaper) {
        let Pooled {
            zygote,
            mut cgroup,
            exit,
        } = self;
        let pid = zygote.pid;
        // Dropping it closes its command pipe and waits until it has exited.
        drop((zygote, exit));
        cgroup.destroy();
        reaper.collect(pid);
    }
}

struct Shared {
    ready: Mutex<VecDeque<Pooled>>,
    cv: Condvar,
    stop: AtomicBool,
    want: usize,
    /// What the last pooled launch carried: new launchers' groups carry its limits (and
    /// whether they are enforced) already, so a launch with the same limits writes none, and
    /// some new launchers have its seccomp filter installed (see `make_next`).
    expect: Mutex<Expect>,
}

#[derive(Clone, Default)]
struct Expect {
    limits: Limits,
    enforce: bool,
    filter: Option<&'static Filter>,
}

/// What the next launcher gets: the expected filter installed ahead, unless half the pool
/// already has a filter. The other half takes any run (a filter is then installed at its
/// launch): a supervisor whose runs alternate between levels never waits for a launcher.
fn make_next(ready: &VecDeque<Pooled>, want: usize, expect: &Expect) -> Option<&'static Filter> {
    let filtered = ready.iter().filter(|p| p.zygote.filter().is_some()).count();
    expect.filter.filter(|_| filtered < want / 2)
}

pub(crate) struct LaunchPool {
    shared: Arc<Shared>,
    reaper: Reaper,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The pool size from `SYMBIONT_LAUNCH_POOL`, else the default.
pub fn configured_size() -> usize {
    std::env::var("SYMBIONT_LAUNCH_POOL")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_SIZE)
        .min(64)
}

/// Makes a launcher in fresh groups that already carry `expect`'s limits, with `filter`
/// installed.
fn make(
    roots: &CgroupRoots,
    reaper: &Reaper,
    name: &str,
    expect: &Expect,
    filter: Option<&'static Filter>,
) -> std::io::Result<Pooled> {
    let cgroup = RunCgroup::create(roots, name, &expect.limits, expect.enforce)?;
    let join = cgroup.open_join()?;
    let fds: Vec<i32> = join.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let (_, zygote, exit) =
        reaper.spawn_registered(|| Zygote::start(&fds, filter).map(|z| (z.pid, z)))?;
    drop(join);
    let mut p = Pooled {
        zygote,
        cgroup,
        exit,
    };
    match p.zygote.wait_ready() {
        Ok(()) => Ok(p),
        Err(e) => {
            p.discard(reaper);
            Err(e)
        }
    }
}

impl LaunchPool {
    /// Starts the pool's thread; `None` when there is nothing to gain (no cgroups, size 0).
    pub fn start(roots: &CgroupRoots, reaper: &Reaper, want: usize) -> Option<LaunchPool> {
        if want == 0 || !roots.any() {
            return None;
        }
        let shared = Arc::new(Shared {
            ready: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            want,
            expect: Mutex::new(Expect::default()),
        });
        let (sh, roots, thread_reaper) = (shared.clone(), roots.clone(), reaper.clone());
        let thread = std::thread::Builder::new()
            .name("symbiont-pool".into())
            .spawn(move || {
                let mut n = 0u64;
                let mut failures = 0;
                let mut gave_up = false;
                loop {
                    let (expect, filter) = {
                        let mut g = sh.ready.lock().unwrap_or_else(|e| e.into_inner());
                        while (gave_up || g.len() >= sh.want) && !sh.stop.load(Ordering::SeqCst) {
                            g = sh.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                        let expect = sh.expect.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        let filter = make_next(&g, sh.want, &expect);
                        (expect, filter)
                    };
                    if sh.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    n += 1;
                    match make(&roots, &thread_reaper, &format!("z{n}"), &expect, filter) {
                        Ok(p) => {
                            failures = 0;
                            let mut g = sh.ready.lock().unwrap_or_else(|e| e.into_inner());
                            if sh.stop.load(Ordering::SeqCst) {
                                drop(g);
                                p.discard(&thread_reaper);
                                break;
                            }
                            g.push_back(p);
                        }
                        // A host that refuses (a full pids limit, a read-only group): the direct
                        // path still works; stop trying after a few failures in a row.
                        Err(_) => {
                            failures += 1;
                            if failures >= 3 {
                                // No more launchers; the thread stays until `stop`, since the
                                // launchers still ready run on its thread-local block.
                                gave_up = true;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .ok()?;
        Some(LaunchPool {
            shared,
            reaper: reaper.clone(),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// How many launchers are ready now.
    pub fn ready(&self) -> usize {
        self.shared
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// How many the pool keeps ready.
    pub fn size(&self) -> usize {
        self.shared.want
    }

    /// A ready launcher for a run confined by `filter` (or none), if there is one: one with
    /// that filter installed already, else one without any. The pool is not refilled until
    /// `refill`.
    pub fn take(&self, filter: Option<&'static Filter>) -> Option<Pooled> {
        let mut g = self.shared.ready.lock().unwrap_or_else(|e| e.into_inner());
        let at = g
            .iter()
            .position(|p| p.zygote.filter().is_some() && p.zygote.serves(filter))
            .or_else(|| g.iter().position(|p| p.zygote.filter().is_none()))?;
        g.remove(at)
    }

    /// Tells the pool what launches now carry (limits, whether they are enforced, the seccomp
    /// filter), for the launchers it makes next.
    pub fn expect(&self, limits: &Limits, enforce: bool, filter: Option<&'static Filter>) {
        *self.shared.expect.lock().unwrap_or_else(|e| e.into_inner()) = Expect {
            limits: limits.clone(),
            enforce,
            filter,
        };
    }

    /// Lets the pool make up for what was taken. Called once the agent has started: joining
    /// a v1 group takes the kernel's cgroup lock for writing, which stalls every fork, exec and
    /// exit on the host until an RCU grace period passes, so a refill must not overlap a launch.
    pub fn refill(&self) {
        self.shared.cv.notify_one();
    }

    /// Ends every unused launcher, removing its groups, then stops the thread. In that order:
    /// a launcher runs on the thread-local block of the thread that cloned it (this pool's),
    /// so that thread must outlive every launcher it made.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cv.notify_all();
        // The thread discards what it is making once it sees `stop`; what is ready goes here,
        // and `discard` returns once the launcher has exited.
        let left: Vec<Pooled> = self
            .shared
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for p in left {
            p.discard(&self.reaper);
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // A thread that panicked has said so on stderr already.
            let _ = t.join();
        }
    }
}

impl Drop for LaunchPool {
    fn drop(&mut self) {
        self.stop();
    }
}
