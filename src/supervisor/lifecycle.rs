//! One run, from launch to record, written once for every tier: its steps in order, operator
//! signals to the tree or one process, pause and resume, the timeout, the watchdog's verdicts,
//! the TERM -> grace -> KILL escalation, the end reason, the record and the clean-up. What
//! differs between tiers sits behind [`Target`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::ending::{self, ExitFacts, Observed, PerProcessMemory};
use super::output::StreamSink;
use super::target::{Exit, Prepared, Sinks, Started, Target, Tree};
use super::watchdog::{OsEnforced, Watched};
use super::{
    Actor, Control, Event, Inner, Reason, RunId, RunRecord, RunSpec, RunState, RunStatus, Scope,
    Sig,
};

/// A time no run reaches (for deadlines past what an `Instant` can hold).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

pub(super) fn lock(s: &Arc<Mutex<RunStatus>>) -> std::sync::MutexGuard<'_, RunStatus> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The audit log's launch line of run `id`: argv, cwd, tier, limits and the names of the
/// environment variables, never their values.
pub(super) fn launch_fields(id: RunId, spec: &RunSpec) -> Value {
    let l = &spec.limits;
    json!({
        "run_id": id, "agent": spec.agent, "trigger": spec.trigger, "tier": spec.tier,
        "argv": spec.steps.iter().map(|s| &s.argv).collect::<Vec<_>>(),
        "cwd": spec.cwd, "source": spec.source,
        "env_names": spec.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "limits": {
            "memory_bytes": l.memory_bytes, "cpu_seconds": l.cpu_seconds, "cpu_cores": l.cpu_cores,
            "timeout_secs": l.timeout.map(|t| t.as_secs_f64()), "max_processes": l.max_processes,
            "file_size_bytes": l.file_size_bytes,
        },
    })
}

/// The channels and shared state of one run.
pub(super) struct RunParts {
    pub status: Arc<Mutex<RunStatus>>,
    pub ctl_tx: super::control::ControlTx,
    pub ctl: super::control::ControlRx,
    pub done: watch::Sender<Option<Arc<RunRecord>>>,
    /// The caller streaming the run's output (`RunIo::output`).
    pub output: Option<super::OutputSender>,
}

/// A kill that ends the run, and who ordered it.
type Order = (Reason, Actor);

/// The life of one run on tier `T`.
struct Life<T: Target> {
    inner: Arc<Inner>,
    id: RunId,
    spec: Arc<RunSpec>,
    status: Arc<Mutex<RunStatus>>,
    ctl_tx: super::control::ControlTx,
    target: T,
    tree: Arc<dyn Tree>,
    started_at: SystemTime,
    started: Instant,
    deadline: Option<Instant>,
    kill_at: Option<Instant>,
    paused_since: Option<Instant>,
    ordered: Option<Order>,
    passed_on: Option<Order>,
    message: Option<String>,
    failed_to_start: bool,
    watched: bool,
    /// The first audit line of this run that could not be written.
    audit_error: Option<String>,
    /// The caller streaming the run's output, and the state of its drains.
    output: Option<(super::OutputSender, Arc<super::output::Forwarding>)>,
}

/// Begins a run inside `launch()`: the first step starts here where the tier can do that
/// at once, then the rest of the run goes on in its own task.
pub(super) fn begin<T: Target>(
    inner: Arc<Inner>,
    id: RunId,
    spec: Arc<RunSpec>,
    parts: RunParts,
    target: T,
) {
    let RunParts {
        status,
        ctl_tx,
        ctl,
        done,
        output,
    } = parts;
    let tree = target.tree();
    let started = Instant::now();
    let deadline = spec
        .limits
        .timeout
        .map(|t| started.checked_add(t).unwrap_or_else(far_future));
    lock(&status).deadline = deadline.map(|d| d.into_std());
    let mut life = Life {
        inner,
        id,
        spec,
        status,
        ctl_tx,
        target,
        tree,
        started_at: SystemTime::now(),
        started,
        deadline,
        kill_at: None,
        paused_since: None,
        ordered: None,
        passed_on: None,
        message: None,
        failed_to_start: false,
        watched: false,
        audit_error: None,
        output: output.map(|o| (o, Arc::default())),
    };
    let pre = life.target.start_now(&life.spec.steps[0]);
    if let Some(Ok(s)) = &pre {
        life.announce(s.pid, 0);
    }
    tokio::spawn(async move {
        let record = life.run(ctl, pre).await;
        life.publish(&done, record);
    });
}

/// The end of one step.
struct StepEnd {
    exit: Option<Exit>,
    pid: Option<i32>,
    container_id: Option<String>,
}

impl<T: Target> Life<T> {
    fn emit(&self, e: Event) {
        // No subscriber is no error: nobody is listening.
        let _ = self.inner.events.send(e);
    }

    /// One audit line of this run. One that cannot be written does not hold back what it
    /// records (a kill must happen), but the run's record says so.
    fn audit(
        &mut self,
        what: &str,
        mut fields: Value,
        extra: Option<&serde_json::Map<String, Value>>,
    ) {
        if let (Some(o), Some(extra)) = (fields.as_object_mut(), extra) {
            o.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Err(e) = self.inner.audit.try_record(what, fields) {
            self.audit_error
                .get_or_insert_with(|| format!("{what}: {e}"));
        }
    }

    async fn run(
        &mut self,
        mut ctl: super::control::ControlRx,
        mut pre: Option<Result<Started, String>>,
    ) -> RunRecord {
        // What `prepare` returns is dropped here, not kept in this future for the run's life
        // (its audit fields are a few hundred bytes of maps per run).
        let os = {
            // The tier's one-off steps are boxed: the run's task, which every idle agent keeps,
            // is then not sized for their state machines.
            let prepared = Box::pin(self.target.prepare()).await;
            self.audit_enforcement(&prepared);
            self.message = prepared.note.clone();
            if prepared.note.is_some() {
                let mut s = lock(&self.status);
                s.note = prepared.note.clone();
                s.touch();
            }
            if let Some(e) = prepared.fatal {
                self.message = Some(e);
                self.failed_to_start = true;
            }
            prepared.os
        };
        let (mut last, mut first_pid, mut container_id) = (None, None, None);
        let (mut cpu_ns, mut rusage_peak, mut argv_run) = (0u64, 0u64, Vec::new());
        for n in 0..self.spec.steps.len() {
            if self.failed_to_start || self.ordered.is_some() {
                break;
            }
            let end = self.step(n, pre.take(), os, &mut ctl).await;
            let Some(end) = end else {
                last = None;
                break;
            };
            first_pid = first_pid.or(end.pid);
            container_id = end.container_id.or(container_id);
            argv_run = self.spec.steps[n].argv.clone();
            if let Some(e) = &end.exit {
                cpu_ns += e.cpu.as_nanos() as u64;
                rusage_peak = rusage_peak.max(e.max_rss_bytes);
            }
            last = end.exit;
            if last.as_ref().is_none_or(|e| e.code != Some(0)) {
                break;
            }
        }
        let finals = Box::pin(self.target.finish()).await;
        let (peak_rss, peak_procs, sampled_cpu) = {
            let s = lock(&self.status);
            (s.peak_rss_bytes, s.peak_processes, s.cpu_ns)
        };
        // The kernel's figure where it held the limit; else the most the samples and the exits
        // saw (a sum of resident sets, which counts pages shared after a fork once per process).
        let peak = finals.memory_peak.unwrap_or(peak_rss.max(rusage_peak));
        let cpu_ns = finals
            .cpu_time
            .map_or(0, |d| d.as_nanos() as u64)
            .max(sampled_cpu)
            .max(cpu_ns);
        let per_process_memory = match (os.per_process_memory, self.spec.limits.memory_bytes) {
            (true, Some(limit)) => {
                let err = lock(&self.status).stderr.clone();
                let tail = err.lock().map(|t| t.last(20)).unwrap_or_default();
                Some(PerProcessMemory {
                    limit,
                    peak: peak_rss.max(rusage_peak),
                    allocation_failed: ending::reports_allocation_failure(&tail),
                })
            }
            _ => None,
        };
        let (reason, killed_by) = ending::decide(&Observed {
            failed_to_start: self.failed_to_start,
            ordered: self.ordered,
            passed_on: self.passed_on,
            exit: last.as_ref().map(ExitFacts::from),
            oom_kills: finals.oom_kills,
            cpu_ns,
            cpu_limit_secs: self.spec.limits.cpu_seconds,
            per_process_memory,
        });
        let tree = self.target.tree();
        let (denials, denied) = tree
            .denials()
            .map_or((0, Vec::new()), |d| (d.count(), d.recent()));
        RunRecord {
            pid: first_pid,
            container_id,
            denials,
            denied,
            exit_code: last.as_ref().and_then(|e| e.code),
            signal: last.and_then(|e| e.signal),
            reason,
            killed_by,
            message: self.message.take(),
            peak_memory_bytes: peak,
            cpu_seconds: cpu_ns as f64 / 1e9,
            processes: peak_procs.max(u64::from(first_pid.is_some())),
            ..self.base_record(argv_run)
        }
    }

    /// What the tier put in place for the run's limits (the launch line went before the
    /// launch: [`launch_fields`]).
    fn audit_enforcement(&mut self, p: &Prepared) {
        let fields = json!({
            "run_id": self.id, "agent": self.spec.agent, "limits": p.audit_limits,
        });
        self.audit("enforcement", fields, Some(&p.audit));
    }

    /// One step, from start to its end and clean-up. `None`: it did not start.
    async fn step(
        &mut self,
        n: usize,
        pre: Option<Result<Started, String>>,
        os: OsEnforced,
        ctl: &mut super::control::ControlRx,
    ) -> Option<StepEnd> {
        let announced = pre.is_some();
        let started = match pre {
            Some(r) => r,
            None => Box::pin(self.target.start(n, &self.spec.steps[n])).await,
        };
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                self.message = Some(e);
                self.failed_to_start = true;
                return None;
            }
        };
        if !announced {
            self.announce(started.pid, n);
        }
        if !self.watched {
            self.watched = true;
            self.watch(os);
        }
        // The logs are opened once the agent runs and is announced: the pipes hold its first
        // output meanwhile, and creating two files is not between the request and the agent.
        let sinks = self.sinks();
        self.target.drain(sinks);
        let Started {
            pid,
            container_id,
            exit,
        } = started;
        let exit = self.control_loop(exit, ctl).await;
        Box::pin(self.target.end_step()).await;
        let exit = match exit {
            Ok(e) => Some(e),
            Err(e) => {
                self.message = Some(e);
                None
            }
        };
        Some(StepEnd {
            exit,
            pid,
            container_id,
        })
    }

    fn sinks(&mut self) -> Sinks {
        let s = lock(&self.status);
        let cap = self.inner.opts.max_log_mb.saturating_mul(1 << 20);
        let sink = |path: &Path, tail: &super::output::SharedTail| {
            StreamSink::new(path, tail.clone(), cap)
                .map_err(|e| (e, StreamSink::without_log(tail.clone())))
        };
        let (out, err) = (
            sink(&s.stdout_log(), &s.stdout),
            sink(&s.stderr_log(), &s.stderr),
        );
        if let Some((e, _)) = out.as_ref().err().or(err.as_ref().err()) {
            self.message = Some(format!(
                "cannot open the run's log files, output is lost: {e}"
            ));
        }
        let (mut stdout, mut stderr) = (
            out.unwrap_or_else(|(_, s)| s),
            err.unwrap_or_else(|(_, s)| s),
        );
        if let Some((to, state)) = &self.output {
            stdout = stdout.forwarding(to.clone(), false, state.clone());
            stderr = stderr.forwarding(to.clone(), true, state.clone());
        }
        Sinks {
            stdout,
            stderr,
            forwarding: self.output.as_ref().map(|(_, s)| s.clone()),
        }
    }

    /// Waits for the step's end, serving the operator, the watchdog, the timeout and the
    /// escalation meanwhile.
    async fn control_loop(
        &mut self,
        mut exit: super::target::ExitFuture,
        ctl: &mut super::control::ControlRx,
    ) -> Result<Exit, String> {
        loop {
            let far = Instant::now() + Duration::from_secs(86400 * 365);
            let timeout_armed =
                self.deadline.is_some() && self.ordered.is_none() && self.paused_since.is_none();
            tokio::select! {
                r = &mut exit => return r,
                Some(c) = ctl.recv() => self.control(c).await,
                _ = sleep_until(self.deadline.unwrap_or(far)), if timeout_armed => {
                    let secs = self.spec.limits.timeout.map(|t| t.as_secs_f64());
                    let extra = json!({ "timeout_secs": secs });
                    self.kill(Sig::Term, Scope::Tree, Actor::Timeout, Reason::Timeout, extra).await;
                }
                _ = sleep_until(self.kill_at.unwrap_or(far)), if self.kill_at.is_some() => {
                    self.kill_at = None;
                    self.audit("kill", json!({
                        "run_id": self.id, "agent": self.spec.agent, "by": self.ordered.map(|e| e.1),
                        "reason": self.ordered.map(|e| e.0), "signal": Sig::Kill.name(), "scope": "tree",
                        "escalation": true,
                    }), None);
                    self.target.signal(Sig::Kill, None).await;
                }
            }
        }
    }

    async fn control(&mut self, c: Control) {
        match c {
            Control::Kill {
                sig,
                scope,
                by,
                reason,
            } => self.kill(sig, scope, by, reason, json!({})).await,
            Control::Pause => {
                if self.paused_since.is_none()
                    && self.ordered.is_none()
                    && self.target.actions().pause
                    && self.target.pause(true).await
                {
                    self.paused_since = Some(Instant::now());
                    {
                        let mut st = lock(&self.status);
                        st.state = RunState::Paused;
                        st.touch();
                    }
                    let fields = json!({"run_id": self.id, "agent": self.spec.agent});
                    self.audit("pause", fields, None);
                }
            }
            Control::Resume => {
                if let Some(p) = self.paused_since.take() {
                    self.target.pause(false).await;
                    // Time spent paused does not count against the timeout.
                    if let Some(d) = self.deadline.as_mut() {
                        *d += p.elapsed();
                    }
                    {
                        let mut st = lock(&self.status);
                        st.state = RunState::Running;
                        st.deadline = self.deadline.map(|d| d.into_std());
                        st.touch();
                    }
                    let fields = json!({"run_id": self.id, "agent": self.spec.agent});
                    self.audit("resume", fields, None);
                }
            }
        }
    }

    /// A signal to the tree or one process. TERM and KILL to the tree end the run (the first
    /// one names the ending); INT and HUP are passed on (many agents reload on HUP), the
    /// timeout stays armed, and the record says who sent them if they end it.
    async fn kill(&mut self, sig: Sig, scope: Scope, by: Actor, reason: Reason, extra: Value) {
        let one = match scope {
            Scope::Tree => None,
            Scope::Process(p) => Some(p),
        };
        let scope_name = match one {
            None => "tree".to_string(),
            Some(p) => format!("pid {p}"),
        };
        let Some(sig) = self.target.actions().effective(sig, one.is_some()) else {
            self.audit(
                "refused",
                json!({
                    "run_id": self.id, "agent": self.spec.agent, "by": by, "signal": sig.name(),
                    "scope": scope_name, "why": format!("tier {} cannot do this", self.spec.tier),
                }),
                None,
            );
            return;
        };
        let terminating = matches!(sig, Sig::Term | Sig::Kill) && one.is_none();
        if terminating && self.ordered.is_none() {
            self.ordered = Some((reason, by));
        }
        if matches!(sig, Sig::Int | Sig::Hup) {
            self.passed_on = Some((reason, by));
        }
        let mut fields = json!({
            "run_id": self.id, "agent": self.spec.agent, "by": by, "reason": reason,
            "signal": sig.name(), "scope": scope_name,
        });
        if let (Some(o), Value::Object(e)) = (fields.as_object_mut(), extra) {
            o.extend(e);
        }
        self.audit("kill", fields, None);
        self.emit(Event::Killing {
            run_id: self.id,
            agent: self.spec.agent.clone(),
            by,
            reason,
            signal: sig.name(),
        });
        if terminating {
            {
                let mut st = lock(&self.status);
                st.state = RunState::Stopping;
                st.touch();
            }
            if self.paused_since.take().is_some() {
                self.target.pause(false).await;
            }
        }
        self.target.signal(sig, one).await;
        if sig == Sig::Term && terminating {
            // A second TERM never pushes the escalation back.
            let at = Instant::now() + self.spec.kill_grace;
            self.kill_at = Some(self.kill_at.map_or(at, |k| k.min(at)));
        }
    }

    /// A started step made known: the run's status and the `Launched` event.
    fn announce(&self, pid: Option<i32>, n: usize) {
        let argv = &self.spec.steps[n].argv;
        {
            let mut s = lock(&self.status);
            s.pid = pid;
            s.step = n;
            s.state = if self.ordered.is_some() {
                RunState::Stopping
            } else {
                RunState::Running
            };
            s.touch();
        }
        self.emit(Event::Launched {
            run_id: self.id,
            agent: self.spec.agent.clone(),
            trigger: self.spec.trigger.clone(),
            tier: self.spec.tier,
            pid: pid.unwrap_or(0),
            argv: argv.clone(),
        });
    }

    /// Hands the run to the sampler and watchdog thread.
    fn watch(&self, os: OsEnforced) {
        let w = Watched::new(
            self.id,
            self.spec.agent.clone(),
            self.status.clone(),
            self.tree.clone(),
            self.ctl_tx.clone(),
            self.spec.limits.clone(),
            os,
        );
        if let Ok(tx) = self.inner.watch.lock() {
            // The watchdog thread ends only with the supervisor.
            let _ = tx.send(w);
        }
    }

    /// The part of the record that does not depend on how the run ended.
    fn base_record(&self, argv_run: Vec<String>) -> RunRecord {
        let s = lock(&self.status);
        let tail = |t: &super::output::SharedTail| t.lock().map(|t| t.last(20)).unwrap_or_default();
        let lost = |t: &super::output::SharedTail| {
            t.lock()
                .map(|t| (t.dropped, t.dropped_since, t.log.truncated))
                .unwrap_or_default()
        };
        let ((out, out_since, out_cut), (err, err_since, err_cut)) =
            (lost(&s.stdout), lost(&s.stderr));
        let dropped = out + err;
        let since = match (out_since, err_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        RunRecord {
            run_id: self.id,
            agent: self.spec.agent.clone(),
            trigger: self.spec.trigger.clone(),
            tier: self.spec.tier,
            sandbox: self.spec.sandbox.level,
            denials: 0,
            denied: Vec::new(),
            pid: None,
            container_id: None,
            argv: if argv_run.is_empty() {
                self.spec.steps[0].argv.clone()
            } else {
                argv_run
            },
            started_at: humantime::format_rfc3339_millis(self.started_at).to_string(),
            ended_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            duration_secs: self.started.elapsed().as_secs_f64(),
            exit_code: None,
            signal: None,
            reason: Reason::Exited,
            killed_by: None,
            message: None,
            peak_memory_bytes: 0,
            cpu_seconds: 0.0,
            processes: 0,
            stdout_tail: tail(&s.stdout),
            stderr_tail: tail(&s.stderr),
            stdout_log: s.stdout_log(),
            stderr_log: s.stderr_log(),
            log_dropped_bytes: dropped,
            log_truncated_bytes: out_cut + err_cut,
            log_dropped_since: since.map(|t| humantime::format_rfc3339_millis(t).to_string()),
            audit_error: self.audit_error.clone(),
            record_error: None,
        }
    }

    /// The end of every run: the audit line, the final status, the event, the waiters.
    fn publish(&mut self, done: &watch::Sender<Option<Arc<RunRecord>>>, mut record: RunRecord) {
        self.audit(
            "exit",
            json!({
                "run_id": record.run_id, "agent": record.agent, "trigger": record.trigger, "reason": record.reason,
                "killed_by": record.killed_by, "container_id": record.container_id,
                "exit_code": record.exit_code, "signal": record.signal, "duration_secs": record.duration_secs,
                "peak_memory_bytes": record.peak_memory_bytes, "cpu_seconds": record.cpu_seconds, "message": record.message,
                "log_dropped_bytes": record.log_dropped_bytes, "log_dropped_since": record.log_dropped_since,
                "log_truncated_bytes": record.log_truncated_bytes,
                "denials": record.denials, "denied": record.denied,
                "audit_error": record.audit_error,
            }),
            None,
        );
        record.audit_error = self.audit_error.clone();
        // On disk beside the logs before anyone hears of the end: a client that reads the
        // record after the event finds it.
        if let Some(dir) = record.stdout_log.parent() {
            if let Err(e) = super::records::write(dir, &record) {
                tracing::warn!(
                    run = self.id,
                    "cannot write the record of {} in {}: {e}",
                    self.spec.agent,
                    dir.display()
                );
                record.record_error =
                    Some(format!("{}: {e}", dir.join(super::records::FILE).display()));
            }
        }
        let record = Arc::new(record);
        {
            let mut s = lock(&self.status);
            s.state = RunState::Exited;
            s.record = Some(record.clone());
            s.peak_rss_bytes = record.peak_memory_bytes;
            s.cpu_ns = (record.cpu_seconds * 1e9) as u64;
            s.rss_bytes = 0;
            s.processes = 0;
            s.procs.clear();
            s.cpu_pct = 0.0;
            s.touch();
        }
        self.emit(Event::Exited {
            record: Box::new((*record).clone()),
        });
        // Whoever waited for the end may have gone.
        let _ = done.send(Some(record));
    }
}
