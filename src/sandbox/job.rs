//! Windows job objects: one per run. Every process of the run is in it (the main process is
//! assigned while still suspended, and its descendants inherit the job), so the job is the
//! tree: it lists the pids, counts the CPU time, carries the limits and is killed as a whole.
//! The job is kill-on-close: when the supervisor dies, for whatever reason, its last handle
//! closes and the system ends every agent.

use std::io;
use std::mem::size_of;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::time::Duration;

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    JobObjectBasicProcessIdList, JobObjectCpuRateControlInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    TerminateJobObject, JOBOBJECTINFOCLASS, JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,
    JOBOBJECT_CPU_RATE_CONTROL_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_CPU_RATE_CONTROL_ENABLE, JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
    JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION,
    JOB_OBJECT_LIMIT_JOB_MEMORY, JOB_OBJECT_LIMIT_JOB_TIME, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};

use crate::supervisor::Limits;

/// The exit code every process of a terminated job gets (what `TerminateJobObject` sets).
pub const TERMINATED_EXIT_CODE: u32 = 1;

/// Which limits the job itself carries (the watchdog still checks every one of them: Wine, for
/// one, accepts the memory and CPU-time limits without enforcing them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobEnforced {
    pub memory: bool,
    pub processes: bool,
    pub cpu_time: bool,
    pub cpu_rate: bool,
}

/// One run's job object.
#[derive(Debug)]
pub struct Job {
    handle: OwnedHandle,
    pub enforced: JobEnforced,
    memory_limit: Option<u64>,
}

// A job handle may be used from any thread. `Job` is `Send` and `Sync` by itself (an
// `OwnedHandle` is both, and the rest is plain data): checked here rather than asserted with an
// `unsafe impl`.
const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Job>();
};

fn check(ok: i32) -> io::Result<()> {
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// 100-nanosecond units, as job objects count time.
fn ticks(d: Duration) -> i64 {
    (d.as_nanos() / 100).min(i64::MAX as u128) as i64
}

impl Job {
    /// A new, anonymous, non-inheritable job, kill-on-close, with the run's limits when
    /// `enforce` is on. A limit the system refuses is left to the watchdog.
    pub fn create(limits: &Limits, enforce: bool) -> io::Result<Job> {
        // SAFETY: null attributes (default security, not inheritable) and a null name (an
        // anonymous job) are both documented as valid; the result is a new handle or null.
        let h = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut job = Job {
            // SAFETY: `h` is a valid handle just created and owned by no one else: the
            // `OwnedHandle` becomes its only owner and closes it once.
            handle: unsafe { OwnedHandle::from_raw_handle(h as RawHandle) },
            enforced: JobEnforced::default(),
            memory_limit: None,
        };
        // Kill-on-close and no error dialog for a crashing agent: both are essential.
        // SAFETY: a C struct of integers (counts, sizes, flags): all-zero is a valid value of
        // it, and means "no limit".
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags =
            JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
        job.set_limits(&info)?;
        if !enforce {
            return Ok(job);
        }
        if let Some(m) = limits.memory_bytes {
            let mut i = info;
            i.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
            i.JobMemoryLimit = usize::try_from(m).unwrap_or(usize::MAX);
            match job.set_limits(&i) {
                Ok(()) => {
                    info = i;
                    job.enforced.memory = true;
                    job.memory_limit = Some(m);
                }
                Err(e) => tracing::warn!("the job object refused the memory limit {m} B: {e}"),
            }
        }
        if let Some(n) = limits.max_processes {
            let mut i = info;
            i.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
            i.BasicLimitInformation.ActiveProcessLimit = u32::try_from(n).unwrap_or(u32::MAX);
            match job.set_limits(&i) {
                Ok(()) => {
                    info = i;
                    job.enforced.processes = true;
                }
                Err(e) => tracing::warn!("the job object refused the process limit {n}: {e}"),
            }
        }
        if let Some(s) = limits.cpu_seconds {
            let mut i = info;
            i.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_JOB_TIME;
            i.BasicLimitInformation.PerJobUserTimeLimit =
                ticks(Duration::from_secs(s.min(u64::MAX / 1_000_000_000)));
            match job.set_limits(&i) {
                Ok(()) => job.enforced.cpu_time = true,
                Err(e) => tracing::warn!("the job object refused the CPU time limit {s} s: {e}"),
            }
        }
        if let Some(cores) = limits.cpu_cores {
            // The rate is in 1/100 of a percent of the whole machine.
            let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let rate = ((cores / ncpu) * 10_000.0).round().clamp(1.0, 10_000.0) as u32;
            // SAFETY: a `u32` of flags and a union of integers: all-zero is a valid value of it.
            let mut r: JOBOBJECT_CPU_RATE_CONTROL_INFORMATION = unsafe { std::mem::zeroed() };
            r.ControlFlags =
                JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP;
            r.Anonymous.CpuRate = rate;
            // SAFETY: the job's own open handle; the system reads exactly the size given, the
            // size of `r`, which is the struct this information class takes and lives for the
            // call.
            job.enforced.cpu_rate = unsafe {
                SetInformationJobObject(
                    job.raw(),
                    JobObjectCpuRateControlInformation,
                    (&r as *const JOBOBJECT_CPU_RATE_CONTROL_INFORMATION).cast(),
                    size_of::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>() as u32,
                )
            } != 0;
        }
        Ok(job)
    }

    fn raw(&self) -> HANDLE {
        self.handle.as_raw_handle() as HANDLE
    }

    fn set_limits(&self, info: &JOBOBJECT_EXTENDED_LIMIT_INFORMATION) -> io::Result<()> {
        // SAFETY: the job's own open handle; the system reads exactly the size given, that of
        // `*info`, the struct this information class takes, borrowed for the call.
        check(unsafe {
            SetInformationJobObject(
                self.raw(),
                JobObjectExtendedLimitInformation,
                (info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        })
    }

    /// Puts a (still suspended) process into the job.
    pub fn assign(&self, process: RawHandle) -> io::Result<()> {
        // SAFETY: no memory is passed, only handles, which the system checks: a `process` that
        // is not an open process handle with the rights needed makes the call fail. The job
        // handle is this `Job`'s own, open while `self` lives.
        check(unsafe { AssignProcessToJobObject(self.raw(), process as HANDLE) })
    }

    /// Ends every process of the job at once.
    pub fn terminate(&self) -> bool {
        // SAFETY: the job's own open handle; no pointer argument.
        unsafe { TerminateJobObject(self.raw(), TERMINATED_EXIT_CODE) != 0 }
    }

    /// The pids of every live process of the job.
    pub fn pids(&self) -> Vec<i32> {
        // The list's header is two u32s, then the pids; grow until everything fits.
        let mut cap = 64usize;
        loop {
            let mut buf = vec![0usize; 1 + cap];
            let bytes = (buf.len() * size_of::<usize>()) as u32;
            // SAFETY: the system writes at most `bytes` bytes, the exact size of `buf`, which
            // is `usize`-aligned as the list's `ULONG_PTR` entries need and mutably borrowed
            // for the call; the returned-length pointer may be null. (Reading the header as
            // one `usize` assumes a 64-bit little-endian target, a matter of correctness, not
            // of memory safety.)
            let ok = unsafe {
                QueryInformationJobObject(
                    self.raw(),
                    JobObjectBasicProcessIdList,
                    buf.as_mut_ptr().cast(),
                    bytes,
                    std::ptr::null_mut(),
                )
            };
            let header = buf[0];
            let assigned = (header & 0xffff_ffff) as usize;
            let listed = (header >> 32) as usize;
            if ok == 0 && assigned <= cap {
                return Vec::new();
            }
            if assigned > cap && cap < 1 << 20 {
                cap = assigned.max(cap * 2);
                continue;
            }
            return buf[1..1 + listed.min(cap)]
                .iter()
                .map(|&p| p as i32)
                .collect();
        }
    }

    /// One fixed-size record of information about the job.
    ///
    /// # Safety
    /// `T` must be the C struct the system fills for `class`, made of integers only, so that
    /// all-zero and whatever the system writes are both valid values of it.
    unsafe fn query<T: Copy>(&self, class: JOBOBJECTINFOCLASS) -> Option<T> {
        // SAFETY: all-zero is a valid `T` (the caller's contract).
        let mut v: T = unsafe { std::mem::zeroed() };
        // SAFETY: the job's own open handle; the system writes at most `size_of::<T>()` bytes
        // into `v`, a live local of that size and alignment, mutably borrowed for the call.
        let ok = unsafe {
            QueryInformationJobObject(
                self.raw(),
                class,
                (&mut v as *mut T).cast(),
                size_of::<T>() as u32,
                std::ptr::null_mut(),
            )
        };
        (ok != 0).then_some(v)
    }

    fn accounting(&self) -> Option<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION> {
        // SAFETY: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION is the record of this class, all
        // integers.
        unsafe { self.query(JobObjectBasicAccountingInformation) }
    }

    /// Processes of the job still running.
    pub fn active_processes(&self) -> Option<u32> {
        self.accounting().map(|a| a.ActiveProcesses)
    }

    /// CPU time of every process that ever ran in the job (`None` where the system keeps no
    /// account: Wine reports zero).
    pub fn cpu_time(&self) -> Option<Duration> {
        let a = self.accounting()?;
        let t = (a.TotalUserTime.max(0) + a.TotalKernelTime.max(0)) as u64;
        (t > 0).then(|| Duration::from_nanos(t.saturating_mul(100)))
    }

    /// Whether the job's memory reached its limit: the system refused an allocation there.
    pub fn memory_limit_hit(&self) -> bool {
        let Some(limit) = self.memory_limit else {
            return false;
        };
        // SAFETY: JOBOBJECT_EXTENDED_LIMIT_INFORMATION is the record of this class, all
        // integers.
        let Some(info) = (unsafe {
            self.query::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>(JobObjectExtendedLimitInformation)
        }) else {
            return false;
        };
        // Within a page of the limit counts: the refused allocation itself is not recorded.
        info.PeakJobMemoryUsed as u64 + 4096 >= limit
    }
}
