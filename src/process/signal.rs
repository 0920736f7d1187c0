//! Unix signals for the native tier: the operator's signals by number and name, sent to one
//! process or a process group through `nix`.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::supervisor::Sig;

fn signal(sig: Sig) -> Signal {
    match sig {
        Sig::Term => Signal::SIGTERM,
        Sig::Kill => Signal::SIGKILL,
        Sig::Int => Signal::SIGINT,
        Sig::Hup => Signal::SIGHUP,
        Sig::Stop => Signal::SIGSTOP,
        Sig::Cont => Signal::SIGCONT,
    }
}

/// The signal's number, for the cgroup and guardian code that writes raw numbers.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub fn number(sig: Sig) -> i32 {
    signal(sig) as i32
}

/// Sends `sig` to one process. False if it is gone or not ours to signal.
pub fn to_process(pid: i32, sig: Sig) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), signal(sig)).is_ok()
}

/// Sends `sig` to every process of the group `pgid`.
pub fn to_group(pgid: i32, sig: Sig) -> bool {
    pgid > 1 && killpg(Pid::from_raw(pgid), signal(sig)).is_ok()
}

/// Whether `pid` has exited (a zombie not yet reaped counts as gone).
pub fn is_zombie_or_gone(pid: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        crate::sampler::procfs::read_proc(pid).is_none_or(|p| p.state == 'Z' || p.state == 'X')
    }
    #[cfg(not(target_os = "linux"))]
    {
        kill(Pid::from_raw(pid), None).is_err()
    }
}

/// The name a record gives the signal that ended a process ("SIGKILL"; "signal 42" where the
/// platform has no name for it).
pub fn name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// The CPU-time limit's signal.
pub const SIGXCPU: i32 = Signal::SIGXCPU as i32;
/// What an outright kill looks like.
pub const SIGKILL: i32 = Signal::SIGKILL as i32;
