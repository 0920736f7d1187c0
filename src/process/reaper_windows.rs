//! On Windows nothing needs reaping: each main process has a small waiter thread that blocks
//! on its handle and reports its exit code, CPU time and peak working set.

use std::time::Duration;

use tokio::sync::oneshot;

pub use super::ExitInfo;

#[derive(Debug, Clone)]
pub struct Reaper;

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
        // SAFETY: OpenProcess takes only integers and returns a new handle (or null), which
        // this function then owns.
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
                // SAFETY: `h` is the valid handle opened above; the thread that would have
                // owned it never started, so it is closed exactly once, here.
                unsafe { windows_sys::Win32::Foundation::CloseHandle(h) };
            }
        }
        Ok((pid, t, rx))
    }
}

fn wait_process(h: windows_sys::Win32::Foundation::HANDLE) -> ExitInfo {
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME};
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, GetProcessTimes, WaitForSingleObject, INFINITE,
    };
    // SAFETY: `h` is a valid process handle with SYNCHRONIZE and query rights, owned by this
    // thread alone (handed over by `spawn_registered`) and closed once at the end; every out
    // pointer is to a live local of the type and size the call expects (`m.cb` says its size),
    // and the zeroed PROCESS_MEMORY_COUNTERS is a plain struct of integers.
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
