//! Reaping: the supervisor waits for its agents itself (not through tokio's process module),
//! because as a child subreaper it also inherits every orphaned descendant and must reap those
//! zombies too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

pub use super::ExitInfo;

#[derive(Debug, Default)]
struct Waiters {
    map: HashMap<i32, oneshot::Sender<ExitInfo>>,
}

/// Dispatches exit statuses to the tasks waiting for them.
#[derive(Debug, Clone)]
pub struct Reaper {
    waiters: Arc<Mutex<Waiters>>,
    /// Held shared by every spawn until its waiter is registered, and exclusively by a reap:
    /// a child is never reaped before its waiter is there, and spawns do not wait for each
    /// other (holding the waiters' lock through a spawn made a burst of launches one at a
    /// time: 1000 agents spent 0.47 s parked on it).
    gate: Arc<RwLock<()>>,
    reap_all: bool,
}

impl Reaper {
    /// `reap_all`: this process owns all its children (the binary), so every zombie is reaped;
    /// otherwise (a library inside someone else's program) only the registered pids are.
    pub fn start(reap_all: bool) -> std::io::Result<Reaper> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sig = signal(SignalKind::child())?;
        let r = Reaper {
            waiters: Arc::default(),
            gate: Arc::default(),
            reap_all,
        };
        let me = r.clone();
        tokio::spawn(async move {
            // A periodic sweep as well, in case a signal is coalesced across a registration.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    s = sig.recv() => if s.is_none() { break },
                    _ = tick.tick() => {}
                }
                me.reap();
                if Arc::strong_count(&me.waiters) == 1 {
                    break;
                }
            }
        });
        Ok(r)
    }

    /// Spawns with `spawn` and registers the waiter before any reap can see the exit.
    pub fn spawn_registered<T, E>(
        &self,
        spawn: impl FnOnce() -> Result<(i32, T), E>,
    ) -> Result<(i32, T, oneshot::Receiver<ExitInfo>), E> {
        let _gate = self.gate.read().unwrap_or_else(|e| e.into_inner());
        let (pid, t) = spawn()?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map
            .insert(pid, tx);
        Ok((pid, t, rx))
    }

    /// Collects `pid`, a child this process ended itself, and forgets it: waits up to 200 ms
    /// for it to become a zombie, under the lock, so the sweep never waits for a pid that was
    /// collected here (and may be reused). One that does not exit by then stays registered.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub fn collect(&self, pid: i32) {
        let until = std::time::Instant::now() + Duration::from_millis(200);
        loop {
            {
                let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                let r = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(pid),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                );
                // Collected, or not (any more) a child of ours: either way it is forgotten.
                if !matches!(r, Ok(nix::sys::wait::WaitStatus::StillAlive)) {
                    w.map.remove(&pid);
                    return;
                }
            }
            if std::time::Instant::now() >= until {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn reap(&self) {
        let _gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if self.reap_all {
            while let Some((pid, info)) = wait_one(-1) {
                if let Some(tx) = w.map.remove(&pid) {
                    let _ = tx.send(info);
                }
            }
        } else {
            let pids: Vec<i32> = w.map.keys().copied().collect();
            for pid in pids {
                if let Some((_, info)) = wait_one(pid) {
                    if let Some(tx) = w.map.remove(&pid) {
                        let _ = tx.send(info);
                    }
                }
            }
        }
    }
}

fn wait_one(pid: i32) -> Option<(i32, ExitInfo)> {
    let mut status = 0;
    // SAFETY: `rusage` is a plain C struct of integers, for which all-zero bytes are a valid
    // value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, writable locals of the types wait4 fills (nix has no
    // wait4, and the rusage is what gives the exited tree's CPU time and peak memory);
    // WNOHANG makes it return at once.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
    if r <= 0 {
        return None;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    let info = ExitInfo {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        // Linux and the BSDs report kilobytes; macOS reports bytes.
        max_rss_bytes: if cfg!(target_os = "macos") {
            ru.ru_maxrss.max(0) as u64
        } else {
            ru.ru_maxrss.max(0) as u64 * 1024
        },
    };
    Some((r, info))
}

/// Makes this process a child subreaper: orphaned descendants are reparented to it, not to init,
/// so they stay in view until reaped.
#[cfg(target_os = "linux")]
pub fn become_subreaper() -> bool {
    nix::sys::prctl::set_child_subreaper(true).is_ok()
}

#[cfg(not(target_os = "linux"))]
pub fn become_subreaper() -> bool {
    false
}
