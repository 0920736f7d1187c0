//! What the run lifecycle asks of a tier. Each tier (native on Unix, native on Windows,
//! containers, later the microVM) implements [`Target`] once, at the edge, in `crate::tier`;
//! the lifecycle in `lifecycle.rs` is written once against it.

use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::output::StreamSink;
use super::watchdog::OsEnforced;
use super::{Sig, Step};

/// The processes of one run as the sampler, the watchdog and the supervisor's `Drop` see them.
pub trait Tree: Send + Sync + Debug {
    /// Every live process of the run.
    fn pids(&self) -> Vec<i32>;
    /// Every live process of the run, sampled now, where the tree keeps its processes in view
    /// itself (no cgroup lists them); `None`: the sampler reads `pids()`.
    fn samples(&self) -> Option<Vec<crate::sampler::ProcSample>> {
        None
    }
    /// SIGKILL (or the tier's equivalent) to everything of the run, at once.
    fn kill_now(&self);
    /// Times the kernel's OOM killer acted inside the run.
    fn oom_kills(&self) -> u64 {
        0
    }
    /// Forks the kernel refused because of the run's process limit.
    fn fork_refusals(&self) -> u64 {
        0
    }
    /// What the run's sandbox refused so far (none where the tier reports nothing).
    fn denials(&self) -> Option<&Denials> {
        None
    }
    /// A file counting the whole tree's CPU time, re-read cheaply on each sample
    /// (`true`: cgroup v2 `cpu.stat`; `false`: a plain nanosecond counter).
    fn cpu_counter(&self) -> Option<(PathBuf, bool)> {
        None
    }
}

/// What the operator can do to a run of a tier: the dashboard offers exactly these, and the
/// supervisor refuses the rest. Read back from JSON (an attached dashboard) as the known
/// actions of the tier whose choices they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Actions {
    /// What the operator may send the whole tree, each with what it does on this tier, in the
    /// order a kill dialog lists them. KILL to the whole tree is always possible.
    pub choices: &'static [(Sig, &'static str)],
    /// The platform calls these signals (SIGTERM, ...): a dialog may show their names.
    pub signal_names: bool,
    /// A signal can be aimed at one process of the tree.
    pub one_process: bool,
    /// TERM leaves the agent its grace period before KILL; where false, TERM stops it at once
    /// (a container whose first process ignores TERM; a Windows job).
    pub graceful_term: bool,
    /// The whole tree can be paused and resumed.
    pub pause: bool,
}

impl<'de> serde::Deserialize<'de> for Actions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Actions, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wire {
            choices: Vec<(Sig, String)>,
        }
        let w = Wire::deserialize(d)?;
        Ok(crate::tier::known_actions()
            .iter()
            .find(|a| {
                a.choices.len() == w.choices.len()
                    && a.choices
                        .iter()
                        .zip(&w.choices)
                        .all(|(x, y)| x.0 == y.0 && x.1 == y.1)
            })
            .copied()
            .unwrap_or_default())
    }
}

/// A run whose tier is not known: nothing but KILL to the whole tree.
impl Default for Actions {
    fn default() -> Actions {
        Actions {
            choices: &[],
            signal_names: false,
            one_process: false,
            graceful_term: false,
            pause: false,
        }
    }
}

impl Actions {
    /// The signal that reaches the tier for `sig` aimed at the whole tree (`one` = false) or
    /// at one process of it; `None` where the tier cannot do this. Where TERM gets no grace
    /// (a container's first process may ignore it), TERM to the tree is KILL.
    pub fn effective(&self, sig: Sig, one: bool) -> Option<Sig> {
        let sig = if sig == Sig::Term && !self.graceful_term && !one {
            Sig::Kill
        } else {
            sig
        };
        self.allows(sig, one).then_some(sig)
    }

    /// Whether `sig` may be sent to the whole tree (`one` = false) or to one process of it.
    pub fn allows(&self, sig: Sig, one: bool) -> bool {
        if one {
            self.one_process && self.choices.iter().any(|c| c.0 == sig)
        } else {
            sig == Sig::Kill || self.choices.iter().any(|c| c.0 == sig)
        }
    }
}

/// How one step's process ended, as its tier saw it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exit {
    pub code: Option<i32>,
    /// The signal that ended it, by name ("SIGKILL"), where the platform has signals.
    pub signal: Option<String>,
    /// CPU time of the process and the descendants it waited for.
    pub cpu: Duration,
    pub max_rss_bytes: u64,
    /// The OS's CPU-time limit ended it, for certain (SIGXCPU).
    pub cpu_limit: bool,
    /// It was killed outright (SIGKILL; a Windows job's quota exit): the CPU-time limit if the
    /// tree had used it up.
    pub killed: bool,
    /// The tier's runtime says the kernel killed it for memory (a container's OOMKilled).
    pub oom: bool,
}

/// Resolves when the step's main process has ended.
pub(crate) type ExitFuture = Pin<Box<dyn Future<Output = Result<Exit, String>> + Send>>;

/// A started step.
pub(crate) struct Started {
    pub pid: Option<i32>,
    pub container_id: Option<String>,
    pub exit: ExitFuture,
}

/// Where a step's output goes: its log files and the run's in-memory tails, and the caller
/// streaming it (`forwarding`, for `finish_drains`).
pub(crate) struct Sinks {
    pub stdout: StreamSink,
    pub stderr: StreamSink,
    pub forwarding: Option<std::sync::Arc<super::output::Forwarding>>,
}

/// The run's limits as the tier put them in place, before its first step.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The limits the OS enforces (the watchdog then leaves them to it).
    pub os: OsEnforced,
    /// Fields the tier adds to the audit log's launch line, and to its `limits` object.
    pub audit: Map<String, Value>,
    pub audit_limits: Map<String, Value>,
    /// Said in the record: a limit the tier could not put in place as asked.
    pub note: Option<String>,
    /// The tier cannot run this at all: the run ends as `failed_to_start` with this message.
    pub fatal: Option<String>,
}

/// What the tier counted over the whole run, read before its resources go.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Finals {
    pub cpu_time: Option<Duration>,
    pub oom_kills: u64,
    /// The most memory the whole tree held at once, where the kernel counted it (a cgroup's
    /// own peak: what its memory limit is held to, shared pages counted once).
    pub memory_peak: Option<u64>,
}

/// One run on one tier. The lifecycle calls, in order: `prepare`, then per step `start` (or
/// takes what `start_now` started inside `launch()`), `drain`, `signal`/`pause` while it runs,
/// `end_step`; at last `finish`.
pub(crate) trait Target: Send + 'static {
    /// What the operator can do to this run.
    fn actions(&self) -> Actions;

    /// The run's processes, for the sampler, the watchdog and a last-resort kill.
    fn tree(&self) -> std::sync::Arc<dyn Tree>;

    /// Starts the first step synchronously, inside `launch()`, where the tier can do so
    /// cheaply (a ready launcher); `None` leaves it to `start`.
    fn start_now(&mut self, _step: &Step) -> Option<Result<Started, String>> {
        None
    }

    /// Puts the run's limits in place before its first step runs (or notes what the step
    /// `start_now` started already carries).
    fn prepare(&mut self) -> impl Future<Output = Prepared> + Send;

    /// Starts step `n`. An error is the run's `failed_to_start` message.
    fn start(
        &mut self,
        n: usize,
        step: &Step,
    ) -> impl Future<Output = Result<Started, String>> + Send;

    /// Called once the step is announced: its output goes from now on to `sinks`.
    fn drain(&mut self, sinks: Sinks);

    /// Delivers `sig` to the whole tree (`pid` = None) or to one process of it. False where
    /// nothing was delivered.
    fn signal(&self, sig: Sig, pid: Option<i32>) -> impl Future<Output = bool> + Send;

    /// Pauses or resumes the whole tree. False where that did not happen.
    fn pause(&self, paused: bool) -> impl Future<Output = bool> + Send;

    /// The step's main process has ended: whatever it left behind dies, its output is drained
    /// (within a bound), and its per-step resources go.
    fn end_step(&mut self) -> impl Future<Output = ()> + Send;

    /// The run is over: its counters are read and its resources removed.
    fn finish(&mut self) -> impl Future<Output = Finals> + Send;
}

/// What a run's sandbox refused, as the kernel told the supervisor: a count and the most recent
/// few, described ("socket(AF_INET): network"). Filled by the tier, read by the watchdog and the
/// record.
#[derive(Debug, Default)]
pub struct Denials {
    count: std::sync::atomic::AtomicU64,
    recent: std::sync::Mutex<std::collections::VecDeque<String>>,
}

impl Denials {
    /// How many of the latest denials are kept.
    pub const KEPT: usize = 16;

    pub fn push(&self, what: String) {
        let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if r.len() == Self::KEPT {
            r.pop_front();
        }
        r.push_back(what);
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The latest, oldest first.
    pub fn recent(&self) -> Vec<String> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.iter().cloned().collect()
    }
}
