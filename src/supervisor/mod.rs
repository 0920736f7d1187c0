//! The supervisor core: launches runs, limits, samples, warns and kills, and writes the audit log.
//! It knows nothing of terminals: the headless printer, the dashboard and the library API are
//! its clients, sending commands in and reading the event stream out.

pub mod audit;
mod control;
mod ending;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
pub mod output;
pub mod records;
mod spec;
pub(crate) mod target;
pub mod watchdog;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::config::Config;
use crate::tier::container::ContainerHost;
use crate::tier::microvm::MicrovmHost;
use crate::tier::native::NativeHost;
use crate::tier::SecurityTier;
use lifecycle::lock;
pub use output::{OutputChunk, OutputSender};
use output::{SharedTail, Tail};
pub use spec::{check_tier, Confinement, LaunchError, Limits, RunSpec, Step};
pub use target::{Actions, Tree};

pub type RunId = u64;

/// How the caller of [`Supervisor::launch_with`] wires a run's standard streams (what
/// `symbiont exec` does): the agent reads `stdin` (else /dev/null), and its output is also
/// streamed to `output` as it is written, through a bounded channel, so a slow reader slows
/// the agent instead of growing the supervisor's memory. The log files and tails get every
/// byte either way.
#[derive(Debug, Default)]
pub struct RunIo {
    pub stdin: Option<std::fs::File>,
    pub output: Option<OutputSender>,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Exited,
    Timeout,
    MemoryLimit,
    CpuLimit,
    ProcessLimit,
    KilledByOperator,
    FailedToStart,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Exited => "exited",
            Reason::Timeout => "timeout",
            Reason::MemoryLimit => "memory_limit",
            Reason::CpuLimit => "cpu_limit",
            Reason::ProcessLimit => "process_limit",
            Reason::KilledByOperator => "killed_by_operator",
            Reason::FailedToStart => "failed_to_start",
        }
    }
}

/// Who ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Operator,
    Watchdog,
    Timeout,
    Kernel,
}

/// Signals the operator can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Sig {
    /// SIGTERM, then SIGKILL after the grace period.
    Term,
    Kill,
    Int,
    Hup,
    Stop,
    Cont,
}

impl Sig {
    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "TERM",
            Sig::Kill => "KILL",
            Sig::Int => "INT",
            Sig::Hup => "HUP",
            Sig::Stop => "STOP",
            Sig::Cont => "CONT",
        }
    }
}

/// Whole tree (the default) or a single process of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Tree,
    Process(i32),
}

/// Operator and watchdog commands to a run.
#[derive(Debug, Clone)]
pub enum Control {
    Kill {
        sig: Sig,
        scope: Scope,
        by: Actor,
        reason: Reason,
    },
    Pause,
    Resume,
}

impl Control {
    /// The operator's `sig` to a run's whole tree (or one process of it), as the dashboard's
    /// kill and the API's send it: the run decides from the signal whether it ends.
    pub fn by_operator(sig: Sig, scope: Scope) -> Control {
        Control::Kill {
            sig,
            scope,
            by: Actor::Operator,
            reason: Reason::KilledByOperator,
        }
    }
}

/// The life of a run as the dashboard shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Starting,
    Running,
    Paused,
    Stopping,
    Exited,
}

/// What happened to a run, as `--json` prints it, the library returns it and `record.json`
/// beside its logs holds it ([`records`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: RunId,
    pub agent: String,
    pub trigger: String,
    pub tier: SecurityTier,
    /// The native sandbox level it ran at (Permissive on container tiers).
    #[serde(default)]
    pub sandbox: crate::tier::SandboxLevel,
    /// Calls the sandbox refused and the kernel reported (network, ptrace, io_uring), and the
    /// latest few of them.
    #[serde(default)]
    pub denials: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<String>,
    pub pid: Option<i32>,
    pub container_id: Option<String>,
    pub argv: Vec<String>,
    pub started_at: String,
    pub ended_at: String,
    pub duration_secs: f64,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub reason: Reason,
    pub killed_by: Option<Actor>,
    pub message: Option<String>,
    pub peak_memory_bytes: u64,
    pub cpu_seconds: f64,
    pub processes: u64,
    pub stdout_tail: Vec<String>,
    pub stderr_tail: Vec<String>,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    /// Output that did not reach the log files (a full or failing disk), stdout and stderr
    /// together; 0 when the logs are complete.
    pub log_dropped_bytes: u64,
    /// When the first byte was dropped: the logs hold the output up to then.
    pub log_dropped_since: Option<String>,
    /// Older output removed to keep each log under `supervisor.max_log_mb`, stdout and stderr
    /// together: on purpose, so not a loss (the logs hold the newest output).
    pub log_truncated_bytes: u64,
    /// An audit line of this run that could not be written (its exit, a kill), with the error.
    pub audit_error: Option<String>,
    /// Why `record.json` could not be written beside the logs. Not a failure of the run (the
    /// record still reaches every client), and never in the file itself.
    pub record_error: Option<String>,
}

impl RunRecord {
    /// Exited with code 0, with every byte of its output logged and every audit line written.
    pub fn success(&self) -> bool {
        self.reason == Reason::Exited && self.exit_code == Some(0) && self.complete()
    }

    /// Its logs and audit lines were all written.
    pub fn complete(&self) -> bool {
        self.log_dropped_bytes == 0 && self.audit_error.is_none()
    }

    /// What was lost, for the screen: `None` when nothing was.
    pub fn losses(&self) -> Option<String> {
        let mut out = Vec::new();
        if self.log_dropped_bytes > 0 {
            out.push(format!(
                "LOG INCOMPLETE: {} bytes of output dropped since {}",
                self.log_dropped_bytes,
                self.log_dropped_since.as_deref().unwrap_or("the start")
            ));
        }
        if let Some(e) = &self.audit_error {
            out.push(format!("AUDIT LINE NOT WRITTEN: {e}"));
        }
        if let Some(e) = &self.record_error {
            out.push(format!("RECORD NOT WRITTEN: {e}"));
        }
        (!out.is_empty()).then(|| out.join("; "))
    }
}

/// Events out of the supervisor, in the order they happened.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Launched {
        run_id: RunId,
        agent: String,
        trigger: String,
        tier: SecurityTier,
        pid: i32,
        argv: Vec<String>,
    },
    Warning {
        run_id: RunId,
        agent: String,
        /// "memory", "time", "cpu"
        limit: &'static str,
        /// "warn" or "critical"
        level: &'static str,
        value: f64,
        max: f64,
    },
    Killing {
        run_id: RunId,
        agent: String,
        by: Actor,
        reason: Reason,
        signal: &'static str,
    },
    Exited {
        record: Box<RunRecord>,
    },
}

/// A live view of one run.
#[derive(Debug, Clone)]
pub struct RunStatus {
    pub id: RunId,
    pub agent: String,
    pub tier: SecurityTier,
    /// The native sandbox level.
    pub sandbox: crate::tier::SandboxLevel,
    /// What the sandbox refused: how often, and the latest few.
    pub denials: u64,
    pub denied: Vec<String>,
    /// The step that runs (or ran last): its argv is [`RunStatus::argv`].
    pub step: usize,
    /// What was asked for (its working directory, the names of its environment): shared with
    /// the run, not copied into every status.
    pub spec: Arc<RunSpec>,
    pub limits: Limits,
    /// What the operator can do to this run on its tier.
    pub actions: Actions,
    pub state: RunState,
    pub pid: Option<i32>,
    pub started: std::time::Instant,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub cpu_ns: u64,
    pub processes: u64,
    pub peak_processes: u64,
    pub stdout: SharedTail,
    pub stderr: SharedTail,
    /// The run's directory: its `stdout.log` and `stderr.log` (see [`RunStatus::stdout_log`]).
    pub dir: PathBuf,
    pub record: Option<Arc<RunRecord>>,
    /// CPU of the whole tree over the last refresh, in percent of one core.
    pub cpu_pct: f64,
    /// (CPU %, resident bytes) per refresh, oldest first, bounded.
    pub history: watchdog::History,
    /// Each process of the tree, as last sampled.
    pub procs: Vec<watchdog::ProcRow>,
    /// When the timeout fires (moved on by time spent paused).
    pub deadline: Option<std::time::Instant>,
    pub sampled_at: Option<std::time::Instant>,
    /// What the tier said about the run as it started (a weaker mechanism the host forces on
    /// its limits), shown while it runs; the record's message once it has ended.
    pub note: Option<String>,
    /// Set on every change from one counter of the whole process ([`RunStatus::touch`]): a
    /// client redraws only what changed, and one that saw everything up to `v` asks only for
    /// the runs whose version is above it.
    pub version: u64,
}

static STAMP: AtomicU64 = AtomicU64::new(0);

/// The highest version any run's status has had so far.
pub fn current_stamp() -> u64 {
    STAMP.load(Ordering::SeqCst)
}

impl RunStatus {
    /// The argv of the step that runs (or ran last), from the spec: not copied per run.
    pub fn argv(&self) -> &[String] {
        self.spec
            .steps
            .get(self.step)
            .map_or(&[][..], |s| s.argv.as_slice())
    }

    /// The run's standard output log (one path kept per run, not two).
    pub fn stdout_log(&self) -> PathBuf {
        self.dir.join("stdout.log")
    }

    /// The run's standard error log.
    pub fn stderr_log(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    /// Marks a change: the status's version moves past every version seen before.
    pub fn touch(&mut self) {
        self.version = STAMP.fetch_add(1, Ordering::SeqCst) + 1;
    }
}

/// Settings of a supervisor, usually taken from the configuration.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    pub data_dir: PathBuf,
    pub audit_log: PathBuf,
    pub tail_lines: usize,
    /// The most MiB of each stream's log kept on disk per run (`supervisor.max_log_mb`): the
    /// newest output, in the log and its rotated predecessor.
    pub max_log_mb: u64,
    /// The id of the first run: the service starts past the runs of earlier services, whose
    /// records share its data directory.
    pub first_run_id: RunId,
    /// Events kept for subscribers that fall behind (each `exited` event holds its record):
    /// a printer of every event needs many; the service, whose clients may miss some, few.
    pub event_buffer: usize,
    pub refresh: Duration,
    /// The watchdog's interval for runs that no cgroup holds to their memory limit (a
    /// per-process RLIMIT_DATA is all the OS enforces): short, so a fast allocator is stopped
    /// near the limit (`native_execution.watchdog_interval_ms`).
    pub watchdog_interval: Duration,
    pub warn_ratio: f64,
    pub critical_ratio: f64,
    /// This process owns every child it has (the `symbiont` binary): become a child subreaper
    /// and reap every orphan. A library inside another program leaves this off.
    pub own_all_children: bool,
    /// Put each run in its own cgroups where the machine allows. Off (or the environment
    /// variable `SYMBIONT_DISABLE_CGROUPS=1`) leaves process groups, rlimits and the watchdog.
    pub use_cgroups: bool,
    /// The container daemon (`unix://...` or `tcp://...`); `None`: `$DOCKER_HOST`, else the
    /// standard socket.
    pub docker_host: Option<String>,
    /// The Tier3 guest's kernel and initramfs, where they are not the data directory's.
    pub microvm: crate::config::MicrovmConfig,
}

impl SupervisorOptions {
    pub fn from_config(c: &Config) -> SupervisorOptions {
        SupervisorOptions {
            data_dir: c.supervisor.data_dir.clone(),
            audit_log: c.supervisor.audit_log_path(),
            tail_lines: c.supervisor.tail_lines,
            max_log_mb: c.supervisor.max_log_mb,
            first_run_id: 1,
            event_buffer: 4096,
            refresh: Duration::from_millis(c.dashboard.refresh_ms.max(10)),
            watchdog_interval: Duration::from_millis(c.native_execution.watchdog_interval_ms),
            warn_ratio: c.dashboard.warn_ratio,
            critical_ratio: c.dashboard.critical_ratio,
            own_all_children: false,
            docker_host: c.containers.docker_host.clone(),
            microvm: c.microvm.clone(),
            use_cgroups: std::env::var("SYMBIONT_DISABLE_CGROUPS")
                .map_or(true, |v| v.is_empty() || v == "0"),
        }
    }
}

struct RunEntry {
    status: Arc<Mutex<RunStatus>>,
    ctl: control::ControlTx,
    done: watch::Receiver<Option<Arc<RunRecord>>>,
    tree: Arc<dyn Tree>,
}

pub(crate) struct Inner {
    opts: SupervisorOptions,
    runs_dir: PathBuf,
    runs_dir_made: std::sync::atomic::AtomicBool,
    /// The native tier's mechanisms: cgroups, the launcher pool, the guardian, the reaper.
    native: Arc<NativeHost>,
    /// The container daemon, connected on the first container run.
    containers: Arc<ContainerHost>,
    /// The microVM tier's assets and accelerator.
    microvm: Arc<MicrovmHost>,
    audit: Arc<audit::AuditLog>,
    watch: Mutex<std::sync::mpsc::Sender<watchdog::Watched>>,
    runs: Mutex<BTreeMap<RunId, RunEntry>>,
    next_id: AtomicU64,
    events: broadcast::Sender<Event>,
    instance: u64,
}

/// The supervisor. Dropping it kills every agent it started.
pub struct Supervisor {
    inner: Arc<Inner>,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Supervisor {
    /// Starts a supervisor. Must be called inside a tokio runtime.
    pub fn new(opts: SupervisorOptions) -> std::io::Result<Supervisor> {
        let data_dir = std::path::absolute(&opts.data_dir)?;
        let first_run_id = opts.first_run_id.max(1);
        let audit = Arc::new(audit::AuditLog::open(&std::path::absolute(
            &opts.audit_log,
        )?)?);
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace([':', '-'], "");
        let runs_dir = data_dir.join("runs").join(format!(
            "{}-{}-{n}",
            stamp.trim_end_matches('Z'),
            std::process::id()
        ));
        let native = Arc::new(NativeHost::start(&opts, n)?);
        let (events, _) = broadcast::channel(opts.event_buffer.max(16));
        let (watch_tx, watch_rx) = std::sync::mpsc::channel();
        {
            let (ev, au) = (events.clone(), audit.clone());
            let intervals = watchdog::Intervals {
                refresh: opts.refresh,
                fast: opts.watchdog_interval.max(Duration::from_millis(1)),
            };
            let (warn, crit) = (opts.warn_ratio, opts.critical_ratio);
            let fleet = native.fleet_cpu_counter();
            std::thread::Builder::new()
                .name("symbiont-watch".into())
                .spawn(move || {
                    watchdog::watch_loop(watch_rx, intervals, warn, crit, ev, au, fleet)
                })?;
        }
        let containers = Arc::new(ContainerHost::new(opts.docker_host.clone(), n));
        let microvm = Arc::new(MicrovmHost::new(&data_dir, &opts.microvm));
        Ok(Supervisor {
            inner: Arc::new(Inner {
                opts,
                runs_dir,
                runs_dir_made: std::sync::atomic::AtomicBool::new(false),
                native,
                containers,
                microvm,
                audit,
                watch: Mutex::new(watch_tx),
                runs: Mutex::new(BTreeMap::new()),
                next_id: AtomicU64::new(first_run_id),
                events,
                instance: n,
            }),
        })
    }

    pub fn options(&self) -> &SupervisorOptions {
        &self.inner.opts
    }

    pub fn audit_path(&self) -> &std::path::Path {
        self.inner.audit.path()
    }

    /// The mechanisms this supervisor can use to confine agents, for `symbiont check`.
    pub fn mechanisms(&self) -> Vec<String> {
        let mut out = self.inner.native.mechanisms();
        out.push("watchdog: memory, CPU time, process count and timeout".into());
        out.push(self.inner.microvm.describe());
        out
    }

    /// The mechanisms a supervisor with `opts` would use, found without opening its data
    /// directory or audit log: `symbiont check` writes nothing.
    pub fn mechanisms_for(opts: &SupervisorOptions) -> std::io::Result<Vec<String>> {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let mut out = NativeHost::start(opts, n)?.mechanisms();
        out.push("watchdog: memory, CPU time, process count and timeout".into());
        out.extend(crate::sandbox::describe());
        out.push(MicrovmHost::new(&std::path::absolute(&opts.data_dir)?, &opts.microvm).describe());
        Ok(out)
    }

    /// Launchers ready in the pool, and how many it keeps (Linux with cgroups; `(0, 0)` where
    /// there is no pool). For diagnostics and benchmarks: a launch that finds one ready skips
    /// creating and joining its cgroups.
    pub fn launchers(&self) -> (usize, usize) {
        self.inner.native.launchers()
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// Refuses, before anything starts, runs whose container daemon, runtime or image is
    /// missing: what is missing and how to get it.
    pub async fn preflight(&self, specs: &[RunSpec]) -> Result<(), LaunchError> {
        let mut checked = std::collections::HashSet::new();
        for s in specs.iter().filter(|s| !s.tier.is_native()) {
            let image = s.image.clone().unwrap_or_default();
            if !checked.insert((s.tier, image.clone())) {
                continue;
            }
            if s.tier == SecurityTier::Tier3 {
                self.inner.microvm.preflight(s)?;
                continue;
            }
            self.inner.containers.preflight(s).await?;
        }
        Ok(())
    }

    /// Starts a run. Refused only when the request itself cannot be served (a tier this build
    /// cannot run); a program that fails to start ends as a `failed_to_start` record.
    pub fn launch(&self, spec: RunSpec) -> Result<RunId, LaunchError> {
        self.launch_with(spec, RunIo::default())
    }

    /// [`launch`](Self::launch) with the run's standard streams wired by the caller.
    pub fn launch_with(&self, spec: RunSpec, io: RunIo) -> Result<RunId, LaunchError> {
        check_tier(spec.tier, spec.image.as_deref())?;
        if spec.tier == SecurityTier::Tier3 {
            self.inner.microvm.preflight(&spec)?;
        }
        if spec.steps.is_empty() {
            return Err(LaunchError::NothingToRun {
                agent: spec.agent,
                trigger: spec.trigger,
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let dir = self.inner.runs_dir.join(format!(
            "{id}-{}-{}",
            sanitize(&spec.agent),
            sanitize(&spec.trigger)
        ));
        // The session's directory once, checked before anything runs; the run's own directory
        // is made by the run's task together with its log files, after the agent started.
        if !self.inner.runs_dir_made.load(Ordering::Relaxed) {
            std::fs::create_dir_all(&self.inner.runs_dir).map_err(|source| {
                LaunchError::LogDirectory {
                    path: self.inner.runs_dir.clone(),
                    source,
                }
            })?;
            self.inner.runs_dir_made.store(true, Ordering::Relaxed);
        }
        let token = format!("{}-{}-{id}", std::process::id(), self.inner.instance);
        let mut spec = spec;
        spec.env.retain(|(k, _)| k != "SYMBIONT_RUN");
        spec.env.push(("SYMBIONT_RUN".into(), token.clone()));
        // The launch is in the audit log before anything starts; when it cannot be, nothing does.
        self.inner
            .audit
            .try_record("launch", lifecycle::launch_fields(id, &spec))
            .map_err(|e| LaunchError::Audit {
                agent: spec.agent.clone(),
                message: e.to_string(),
            })?;
        let spec = Arc::new(spec);
        if spec.tier.is_native() {
            let marker = format!("SYMBIONT_RUN={token}");
            let t = self.inner.native.target(id, spec.clone(), marker, io.stdin);
            self.begin(id, spec, dir, t, io.output);
        } else if spec.tier == SecurityTier::Tier3 {
            let marker = format!("SYMBIONT_RUN={token}");
            let t = self.inner.microvm.target(
                id,
                spec.clone(),
                &self.inner.native,
                marker,
                io.stdin,
            )?;
            self.begin(id, spec, dir, t, io.output);
        } else {
            let native = self.inner.native.clone();
            let t = self
                .inner
                .containers
                .target(id, spec.clone(), native, io.stdin);
            self.begin(id, spec, dir, t, io.output);
        }
        Ok(id)
    }

    /// Registers a run on tier target `t` and begins its life.
    fn begin<T: target::Target>(
        &self,
        id: RunId,
        spec: Arc<RunSpec>,
        dir: PathBuf,
        t: T,
        output: Option<OutputSender>,
    ) {
        let tail = || Arc::new(Mutex::new(Tail::new(self.inner.opts.tail_lines)));
        let actions = t.actions();
        let status = Arc::new(Mutex::new(RunStatus {
            id,
            agent: spec.agent.clone(),
            tier: spec.tier,
            sandbox: spec.sandbox.level,
            denials: 0,
            denied: Vec::new(),
            step: 0,
            spec: spec.clone(),
            limits: spec.limits.clone(),
            actions,
            state: RunState::Starting,
            pid: None,
            started: std::time::Instant::now(),
            rss_bytes: 0,
            peak_rss_bytes: 0,
            cpu_ns: 0,
            processes: 0,
            peak_processes: 0,
            stdout: tail(),
            stderr: tail(),
            dir,
            record: None,
            cpu_pct: 0.0,
            history: Default::default(),
            procs: Vec::new(),
            deadline: None,
            sampled_at: None,
            note: None,
            version: STAMP.fetch_add(1, Ordering::SeqCst) + 1,
        }));
        let (ctl, ctl_rx) = control::channel();
        let (done_tx, done) = watch::channel(None);
        let entry = RunEntry {
            status: status.clone(),
            ctl: ctl.clone(),
            done,
            tree: t.tree(),
        };
        self.inner
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, entry);
        let parts = lifecycle::RunParts {
            status,
            ctl_tx: ctl,
            ctl: ctl_rx,
            done: done_tx,
            output,
        };
        // Through a ready launcher the agent is running before `launch` returns.
        lifecycle::begin(self.inner.clone(), id, spec, parts, t);
    }

    /// Sends a command to a run. Returns false if the run is unknown or already over, or if
    /// its tier cannot do this (see [`RunStatus::actions`]).
    pub fn control(&self, id: RunId, c: Control) -> bool {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = runs.get(&id) else {
            return false;
        };
        let actions = lock(&r.status).actions;
        let allowed = match &c {
            Control::Kill { sig, scope, .. } => actions
                .effective(*sig, matches!(scope, Scope::Process(_)))
                .is_some(),
            Control::Pause | Control::Resume => actions.pause,
        };
        allowed && r.ctl.send(c).is_ok()
    }

    /// The operator's kill: TERM then KILL after the grace period, to the whole tree.
    pub fn kill(&self, id: RunId) -> bool {
        self.control(id, Control::by_operator(Sig::Term, Scope::Tree))
    }

    /// The operator's second stop: SIGKILL to every live run's whole tree at once, without
    /// waiting for the grace period of a TERM already sent.
    pub fn kill_all_now(&self) {
        for id in self.run_ids() {
            self.control(id, Control::by_operator(Sig::Kill, Scope::Tree));
        }
    }

    /// The records of the runs that have ended so far, in launch order.
    pub fn ended(&self) -> Vec<Arc<RunRecord>> {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.values()
            .filter_map(|r| r.done.borrow().clone())
            .collect()
    }

    /// Audit lines that could not be written so far, and the first error.
    pub fn audit_failures(&self) -> Option<(u64, String)> {
        self.inner.audit.failures()
    }

    /// Waits for a run to end and returns its record.
    pub async fn wait(&self, id: RunId) -> Option<Arc<RunRecord>> {
        let mut done = {
            let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
            runs.get(&id)?.done.clone()
        };
        loop {
            if let Some(r) = done.borrow_and_update().clone() {
                return Some(r);
            }
            if done.changed().await.is_err() {
                return done.borrow().clone();
            }
        }
    }

    /// Every run launched so far, oldest first.
    pub fn run_ids(&self) -> Vec<RunId> {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Drops an ended run's status, tails and history (a long-lived library user runs many).
    /// Returns false while the run is still going.
    pub fn forget(&self, id: RunId) -> bool {
        let mut runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        let ended = runs.get(&id).is_some_and(|r| r.done.borrow().is_some());
        if ended {
            runs.remove(&id);
        }
        ended
    }

    /// Waits for every run launched so far.
    pub async fn wait_all(&self) -> Vec<Arc<RunRecord>> {
        let ids = self.run_ids();
        let mut out = Vec::new();
        for id in ids {
            if let Some(r) = self.wait(id).await {
                out.push(r);
            }
        }
        out
    }

    /// A copy of every run's live status.
    pub fn snapshot(&self) -> Vec<RunStatus> {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.values()
            .map(|r| r.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// Calls `f` with every run's live status, in launch order, without copying them.
    pub fn visit(&self, mut f: impl FnMut(&RunStatus)) {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        for r in runs.values() {
            f(&r.status.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// The in-memory tail of a run's stdout (or stderr).
    pub fn tail(&self, id: RunId, stderr: bool) -> Option<Vec<String>> {
        let tail = {
            let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
            let st = runs
                .get(&id)?
                .status
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if stderr {
                st.stderr.clone()
            } else {
                st.stdout.clone()
            }
        };
        let t = tail.lock().unwrap_or_else(|e| e.into_inner());
        Some(t.last(usize::MAX))
    }

    pub fn status(&self, id: RunId) -> Option<RunStatus> {
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        runs.get(&id)
            .map(|r| r.status.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Stops every live run (TERM, then KILL after each run's grace) and waits for all of them.
    pub async fn shutdown(&self) -> Vec<Arc<RunRecord>> {
        let ids = self.run_ids();
        for &id in &ids {
            self.kill(id);
        }
        self.wait_all().await
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        // No launch can come any more: the unused launchers go now.
        self.inner.native.stop_launchers();
        // Nothing is left behind, even when the owner never called `shutdown`.
        let runs = self.inner.runs.lock().unwrap_or_else(|e| e.into_inner());
        for r in runs.values() {
            if r.done.borrow().is_none() {
                r.tree.kill_now();
            }
        }
    }
}

fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    if t.is_empty() {
        "_".into()
    } else {
        t
    }
}
