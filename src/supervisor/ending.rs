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
    /// Only a per-process limit held the run's memory (RLIMIT_DATA, no cgroup), and what was
    /// seen of it.
    pub per_process_memory: Option<PerProcessMemory>,
}

/// The memory limit where the OS holds it per process only (RLIMIT_DATA): an allocation past
/// it fails inside the agent, which then exits with an error (MemoryError, `bad_alloc`) or
/// crashes (SIGSEGV, SIGABRT), no kill anyone could count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PerProcessMemory {
    /// The limit, in bytes.
    pub limit: u64,
    /// The largest resident memory seen: of the whole tree (sampled) or of one process (its
    /// rusage).
    pub peak: u64,
    /// The agent's error output ends with a runtime's report of a failed allocation (see
    /// [`reports_allocation_failure`]).
    pub allocation_failed: bool,
}

impl PerProcessMemory {
    /// Within this share of the limit counts as having reached it: the allocation that failed
    /// was on top of what was resident.
    const NEAR: f64 = 0.9;

    /// The limit was reached: the agent says an allocation failed, or the tree came near it.
    pub fn reached(&self) -> bool {
        self.allocation_failed || self.peak as f64 >= self.limit as f64 * Self::NEAR
    }
}

/// What runtimes print when an allocation fails: Python, Node/V8, the JVM, C++, glibc's
/// strerror(ENOMEM), Rust's global allocator, Go, and malloc wrappers.
const ALLOCATION_FAILURES: &[&str] = &[
    "MemoryError",
    "JavaScript heap out of memory",
    "Array buffer allocation failed",
    "could not allocate memory",
    "java.lang.OutOfMemoryError",
    "std::bad_alloc",
    "Cannot allocate memory",
    "memory allocation of ",
    "fatal error: runtime: out of memory",
    "out of memory",
];

/// Whether the last lines an agent wrote to stderr report a failed allocation.
pub(crate) fn reports_allocation_failure(stderr_tail: &[String]) -> bool {
    stderr_tail
        .iter()
        .rev()
        .take(20)
        .any(|l| ALLOCATION_FAILURES.iter().any(|p| l.contains(p)))
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
    /// It exited with a non-zero code.
    pub failed: bool,
    /// A signal a failed allocation leads to ended it (SIGSEGV, SIGABRT, SIGBUS).
    pub crashed: bool,
}

impl From<&super::target::Exit> for ExitFacts {
    fn from(e: &super::target::Exit) -> ExitFacts {
        ExitFacts {
            signaled: e.signal.is_some(),
            cpu_limit: e.cpu_limit,
            killed: e.killed,
            oom: e.oom,
            failed: e.code.is_some_and(|c| c != 0),
            crashed: matches!(e.signal.as_deref(), Some("SIGSEGV" | "SIGABRT" | "SIGBUS")),
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
    } else if (exit.failed || exit.crashed) && o.per_process_memory.is_some_and(|m| m.reached()) {
        // An allocation past the per-process limit failed and took the agent down.
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

    fn per_process(limit: u64, peak: u64, allocation_failed: bool) -> Option<PerProcessMemory> {
        Some(PerProcessMemory {
            limit,
            peak,
            allocation_failed,
        })
    }

    #[test]
    fn a_failed_allocation_under_the_per_process_limit_is_the_memory_limit() {
        // python3 -c 'b=bytearray(1<<30)' under 256 MB: MemoryError, exit 1, little resident.
        let mut o = exited(|e| e.failed = true);
        o.per_process_memory = per_process(256 << 20, 9 << 20, true);
        assert_eq!(decide(&o), (Reason::MemoryLimit, Some(Actor::Kernel)));
        // A crash after malloc returned NULL, the tree near its limit, nothing printed.
        let mut o = exited(|e| {
            e.signaled = true;
            e.crashed = true;
        });
        o.per_process_memory = per_process(256 << 20, 240 << 20, false);
        assert_eq!(decide(&o), (Reason::MemoryLimit, Some(Actor::Kernel)));
    }

    #[test]
    fn the_per_process_limit_explains_only_a_failure_near_it() {
        // A plain error far below the limit, nothing about memory: the agent's own end.
        let mut o = exited(|e| e.failed = true);
        o.per_process_memory = per_process(256 << 20, 100 << 20, false);
        assert_eq!(decide(&o), (Reason::Exited, None));
        // A success near the limit is a success.
        let mut o = exited(|_| {});
        o.per_process_memory = per_process(256 << 20, 250 << 20, true);
        assert_eq!(decide(&o), (Reason::Exited, None));
        // Near the limit, killed by someone else's SIGKILL: not an allocation failure.
        let mut o = exited(|e| {
            e.signaled = true;
            e.killed = true;
        });
        o.per_process_memory = per_process(256 << 20, 250 << 20, false);
        assert_eq!(decide(&o), (Reason::Exited, None));
        // With a cgroup holding the memory, the kernel's kills count instead.
        let mut o = exited(|e| e.failed = true);
        o.per_process_memory = None;
        assert_eq!(decide(&o), (Reason::Exited, None));
        // The watchdog's kill, once ordered, names the ending.
        let mut o = exited(|e| e.failed = true);
        o.per_process_memory = per_process(256 << 20, 250 << 20, true);
        o.ordered = Some((Reason::MemoryLimit, Actor::Watchdog));
        assert_eq!(decide(&o), (Reason::MemoryLimit, Some(Actor::Watchdog)));
    }

    #[test]
    fn runtimes_reports_of_a_failed_allocation_are_recognised() {
        let lines = |s: &[&str]| s.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        for report in [
            "MemoryError",
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
            "terminate called after throwing an instance of 'std::bad_alloc'",
            "memory allocation of 1073741824 bytes failed",
            "bash: fork: Cannot allocate memory",
        ] {
            assert!(
                reports_allocation_failure(&lines(&["Traceback", report])),
                "{report}"
            );
        }
        assert!(!reports_allocation_failure(&lines(&[
            "Traceback (most recent call last):",
            "ValueError: bad input"
        ])));
        assert!(!reports_allocation_failure(&[]));
    }

    #[test]
    fn no_exit_at_all_without_an_order_is_exited() {
        assert_eq!(decide(&Observed::default()), (Reason::Exited, None));
    }
}
