//! Processes of the native tier, one file per mechanism: reaping exits, the guardian that
//! kills every agent when the supervisor dies, the launcher pool, signals, the process tree
//! of a run, the census that keeps the trees of runs without a cgroup in view, and the removal
//! of ended runs' cgroups. The platform is chosen here, once per
//! mechanism.

use std::time::Duration;

#[cfg(unix)]
#[cfg_attr(target_os = "linux", path = "census.rs")]
#[cfg_attr(not(target_os = "linux"), path = "census_none.rs")]
pub(crate) mod census;
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

/// The number of the signal a record names ("SIGTERM" -> 15), where the platform has signals.
pub fn signal_number(name: &str) -> Option<i32> {
    #[cfg(unix)]
    return name
        .parse::<nix::sys::signal::Signal>()
        .ok()
        .map(|s| s as i32);
    #[cfg(not(unix))]
    {
        let _ = name;
        None
    }
}

/// What an agent started by `symbiont exec` reads as its standard input: this process's own
/// (the same file or pipe, shared), except a terminal, which is copied through a pipe by a
/// thread of this process: an agent is not in the terminal's foreground process group, and
/// reading the terminal itself would stop it (SIGTTIN).
pub fn stdin_for_agent() -> std::io::Result<std::fs::File> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        #[cfg(unix)]
        return Ok(std::os::fd::AsFd::as_fd(&stdin)
            .try_clone_to_owned()?
            .into());
        #[cfg(windows)]
        return Ok(std::os::windows::io::AsHandle::as_handle(&stdin)
            .try_clone_to_owned()?
            .into());
    }
    let (reader, mut writer) = std::io::pipe()?;
    std::thread::Builder::new()
        .name("symbiont-stdin".into())
        .spawn(move || {
            // Ends at the terminal's end of file (Ctrl-D) or when the agent's end is closed.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut writer);
        })?;
    #[cfg(unix)]
    return Ok(std::os::fd::OwnedFd::from(reader).into());
    #[cfg(windows)]
    return Ok(std::os::windows::io::OwnedHandle::from(reader).into());
}

/// Starts `cmd` in a session of its own, away from this process's terminal: a background
/// service that no terminal's hangup reaches.
#[cfg(unix)]
pub fn detach_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the forked child before exec and only calls setsid(2), which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Gives the heap's free pages back to the OS (glibc keeps what a burst of runs freed): a
/// long-lived service's resident memory then follows what it holds, not its busiest moment.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own heap under its own locks; it takes and
    // returns no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// One malloc arena for the whole process (glibc), for a long-lived supervisor: its runs'
/// small allocations, made on whichever thread, then share pages instead of spreading over one
/// arena per thread (the service bench at 5,000 idle agents: 64.3 -> 59.3 MiB), and its
/// threads allocate rarely enough not to queue on the one lock. Call before any thread starts.
pub fn one_heap_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one of glibc's malloc parameters; it takes integers only and is
    // called before any other thread of this process exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Set by the `symbiont` binary, which has the hidden `__sweep` subcommand: only then does the
/// guardian exec the running binary to sweep (a library's host program, a test or a bench,
/// would run itself again).
static SWEEP_SUBCOMMAND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// This binary answers `__sweep PREFIX` with [`sweep`]: the guardian may exec it.
pub fn enable_sweep() {
    SWEEP_SUBCOMMAND.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether the running binary has the `__sweep` subcommand.
pub fn sweep_enabled() -> bool {
    SWEEP_SUBCOMMAND.load(std::sync::atomic::Ordering::SeqCst)
}

/// Kills every process whose environment holds a `SYMBIONT_RUN` marker starting with `prefix`
/// (one supervisor's runs), until none is left or a few rounds have passed: what the guardian
/// execs (`symbiont __sweep PREFIX`) once its supervisor has died.
pub fn sweep(prefix: &str) {
    #[cfg(unix)]
    for _ in 0..50 {
        let pids = crate::sampler::pids_with_env_prefix(prefix);
        if pids.is_empty() {
            return;
        }
        // Stopped first, so that none forks while the others are killed.
        for sig in [crate::supervisor::Sig::Stop, crate::supervisor::Sig::Kill] {
            for &p in &pids {
                signal::to_process(p, sig);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    #[cfg(not(unix))]
    let _ = prefix;
}
