//! Reaping: the supervisor waits for its agents itself (not through tokio's process module),
//! because as a child subreaper it also inherits every orphaned descendant and must reap those
//! zombies too.

#[cfg(unix)]
use std::collections::HashMap;
#[cfg(unix)]
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

/// How a main process ended, with the CPU time of it and its reaped descendants.
#[derive(Debug, Clone, Copy)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu: Duration,
    /// Largest resident set of the process or any descendant it waited for, in bytes.
    pub max_rss_bytes: u64,
}

#[cfg(unix)]
#[derive(Debug, Default)]
struct Waiters {
    map: HashMap<i32, oneshot::Sender<ExitInfo>>,
}

/// Dispatches exit statuses to the tasks waiting for them.
#[cfg(unix)]
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

#[cfg(unix)]
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
    pub fn collect(&self, pid: i32) {
        let until = std::time::Instant::now() + Duration::from_millis(200);
        loop {
            {
                let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
                let mut st = 0;
                let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                if r == pid || r < 0 {
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

#[cfg(unix)]
fn wait_one(pid: i32) -> Option<(i32, ExitInfo)> {
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
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
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

#[cfg(all(unix, not(target_os = "linux")))]
pub fn become_subreaper() -> bool {
    false
}

/// On Windows nothing needs reaping: each main process has a small waiter thread that blocks
/// on its handle and reports its exit code, CPU time and peak working set.
#[cfg(windows)]
#[derive(Debug, Clone)]
pub struct Reaper;

#[cfg(windows)]
impl Reaper {
    pub fn start(_reap_all: bool) -> std::io::Result<Reaper> {
        Ok(Reaper)
    }

    /// Spawns with `spawn`, then waits for the process on a thread of its own.
    pub fn spawn_registered<T, E>(
        &self,
        spawn: impl FnOnce() -> Result<(i32, T), E>,
    ) -> Result<(i32, T, oneshot::Receiver<ExitInfo>), E> {
        use windows_sys::Win32::System::Threading::{
            OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
        };
        const SYNCHRONIZE: u32 = 0x0010_0000;
        let (pid, t) = spawn()?;
        let (tx, rx) = oneshot::channel();
        // The caller holds a handle of its own, so the pid cannot have been reused yet.
        let h = unsafe {
            OpenProcess(
                SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION,
                0,
                pid as u32,
            )
        };
        if !h.is_null() {
            let hv = h as usize;
            let started = std::thread::Builder::new()
                .name("symbiont-wait".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    let _ = tx.send(wait_process(hv as _));
                });
            if started.is_err() {
                unsafe { windows_sys::Win32::Foundation::CloseHandle(h) };
            }
        }
        Ok((pid, t, rx))
    }
}

#[cfg(windows)]
fn wait_process(h: windows_sys::Win32::Foundation::HANDLE) -> ExitInfo {
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME};
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, GetProcessTimes, WaitForSingleObject, INFINITE,
    };
    unsafe {
        WaitForSingleObject(h, INFINITE);
        let mut code = 0u32;
        let got_code = GetExitCodeProcess(h, &mut code) != 0;
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
        let ticks = |f: FILETIME| (u64::from(f.dwHighDateTime) << 32) | u64::from(f.dwLowDateTime);
        let cpu = if GetProcessTimes(h, &mut c, &mut e, &mut k, &mut u) != 0 {
            Duration::from_nanos((ticks(k) + ticks(u)).saturating_mul(100))
        } else {
            Duration::ZERO
        };
        let mut m: PROCESS_MEMORY_COUNTERS = std::mem::zeroed();
        m.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        let peak = if K32GetProcessMemoryInfo(h, &mut m, m.cb) != 0 {
            m.PeakWorkingSetSize as u64
        } else {
            0
        };
        CloseHandle(h);
        ExitInfo {
            code: got_code.then_some(code as i32),
            signal: None,
            cpu,
            max_rss_bytes: peak,
        }
    }
}
