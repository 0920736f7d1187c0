//! Why a run ended and who ended it: one pure function of what was observed, whatever the tier.

use super::{Actor, Reason};

/// Everything the verdict depends on, gathered by the lifecycle.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observed {
    /// No step could start (or the tier could not run this at all).
    pub failed_to_start: bool,
    /// A terminating kill of the whole tree was ordered (by the operator, the watchdog, the
    /// timeout): the first one names the ending.
    pub ordered: Option<(Reason, Actor)>,
    /// INT or HUP passed on by the operator: theirs if a signal then ended the agent.
    pub passed_on: Option<(Reason, Actor)>,
    /// How the last step ended, if it did.
    pub exit: Option<ExitFacts>,
    /// OOM kills the tier counted in the run (a cgroup's `memory.events`, a job's limit).
    pub oom_kills: u64,
    /// CPU time of the whole run.
    pub cpu_ns: u64,
    /// The run's CPU-time limit.
    pub cpu_limit_secs: Option<u64>,
}

/// The part of a step's exit that the verdict reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExitFacts {
    /// A signal ended it.
    pub signaled: bool,
    /// The OS's CPU-time limit ended it, for certain (SIGXCPU).
    pub cpu_limit: bool,
    /// Killed outright (SIGKILL, a job's quota exit).
    pub killed: bool,
    /// The tier's runtime reports an OOM kill.
    pub oom: bool,
}

impl From<&super::target::Exit> for ExitFacts {
    fn from(e: &super::target::Exit) -> ExitFacts {
        ExitFacts {
            signaled: e.signal.is_some(),
            cpu_limit: e.cpu_limit,
            killed: e.killed,
            oom: e.oom,
        }
    }
}

/// The end-of-run reason and who ended the run.
pub(crate) fn decide(o: &Observed) -> (Reason, Option<Actor>) {
    let exit = o.exit.unwrap_or_default();
    let cpu_used_up = o
        .cpu_limit_secs
        .is_some_and(|c| o.cpu_ns >= c.saturating_mul(1_000_000_000));
    if o.failed_to_start {
        (Reason::FailedToStart, None)
    } else if let Some((reason, by)) = o.ordered {
        (reason, Some(by))
    } else if let (Some((reason, by)), true) = (o.passed_on, exit.signaled) {
        (reason, Some(by))
    } else if o.oom_kills > 0 || exit.oom {
        (Reason::MemoryLimit, Some(Actor::Kernel))
    } else if exit.cpu_limit || (exit.killed && cpu_used_up) {
        (Reason::CpuLimit, Some(Actor::Kernel))
    } else {
        (Reason::Exited, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(f: impl FnOnce(&mut ExitFacts)) -> Observed {
        let mut e = ExitFacts::default();
        f(&mut e);
        Observed {
            exit: Some(e),
            ..Observed::default()
        }
    }

    #[test]
    fn a_plain_exit_is_exited_by_no_one() {
        assert_eq!(decide(&exited(|_| {})), (Reason::Exited, None));
        // A signal no one here sent, with no limit involved, is still the agent's own end.
        assert_eq!(
            decide(&exited(|e| e.signaled = true)),
            (Reason::Exited, None)
        );
    }

    #[test]
    fn failing_to_start_outranks_everything() {
        let o = Observed {
            failed_to_start: true,
            ordered: Some((Reason::Timeout, Actor::Timeout)),
            oom_kills: 3,
            ..Observed::default()
        };
        assert_eq!(decide(&o), (Reason::FailedToStart, None));
    }

    #[test]
    fn the_first_ordered_kill_names_the_ending_even_over_an_oom_kill() {
        let mut o = exited(|e| {
            e.signaled = true;
            e.killed = true;
        });
        o.ordered = Some((Reason::KilledByOperator, Actor::Operator));
        o.oom_kills = 1;
        assert_eq!(
            decide(&o),
            (Reason::KilledByOperator, Some(Actor::Operator))
        );
        o.ordered = Some((Reason::MemoryLimit, Actor::Watchdog));
        assert_eq!(decide(&o), (Reason::MemoryLimit, Some(Actor::Watchdog)));
    }

    #[test]
    fn int_or_hup_from_the_operator_counts_only_if_a_signal_ended_the_agent() {
        let mut o = exited(|e| e.signaled = true);
        o.passed_on = Some((Reason::KilledByOperator, Actor::Operator));
        assert_eq!(
            decide(&o),
            (Reason::KilledByOperator, Some(Actor::Operator))
        );
        // The agent caught HUP (reloaded) and later exited by itself.
        let mut o = exited(|_| {});
        o.passed_on = Some((Reason::KilledByOperator, Actor::Operator));
        assert_eq!(decide(&o), (Reason::Exited, None));
    }

    #[test]
    fn oom_kills_counted_by_the_tier_or_reported_by_its_runtime_are_the_memory_limit() {
        let mut o = exited(|e| e.signaled = true);
        o.oom_kills = 1;
        assert_eq!(decide(&o), (Reason::MemoryLimit, Some(Actor::Kernel)));
        assert_eq!(
            decide(&exited(|e| e.oom = true)),
            (Reason::MemoryLimit, Some(Actor::Kernel))
        );
    }

    #[test]
    fn sigxcpu_is_the_cpu_limit_and_sigkill_only_once_the_cpu_time_is_used_up() {
        assert_eq!(
            decide(&exited(|e| e.cpu_limit = true)),
            (Reason::CpuLimit, Some(Actor::Kernel))
        );
        let mut o = exited(|e| e.killed = true);
        o.cpu_limit_secs = Some(2);
        o.cpu_ns = 1_999_000_000;
        assert_eq!(decide(&o), (Reason::Exited, None));
        o.cpu_ns = 2_000_000_000;
        assert_eq!(decide(&o), (Reason::CpuLimit, Some(Actor::Kernel)));
        // No CPU limit: a SIGKILL from outside is not ours to explain.
        o.cpu_limit_secs = None;
        assert_eq!(decide(&o), (Reason::Exited, None));
    }

    #[test]
    fn no_exit_at_all_without_an_order_is_exited() {
        assert_eq!(decide(&Observed::default()), (Reason::Exited, None));
    }
}
