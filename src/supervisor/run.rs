//! One run, from launch to record: its steps in order, the timeout, the watchdog, kill
//! escalation, output draining and the final clean-up of its whole tree.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::reaper::ExitInfo;
use super::{
    Actor, Control, Event, Inner, Reason, RunId, RunRecord, RunSpec, RunState, RunStatus, Scope,
    Sig, TreeHandle,
};
use crate::runner::native::{self, NativeLaunch};
#[cfg(unix)]
use crate::sandbox::rlimit::RlimitSet;

const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

#[cfg(unix)]
const SIGXCPU: i32 = libc::SIGXCPU;
/// Windows has no signals: no exit is ever "by SIGXCPU".
#[cfg(windows)]
const SIGXCPU: i32 = -1;

/// A time no run reaches (for deadlines past what an `Instant` can hold).
pub(super) fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

struct Ending {
    reason: Reason,
    by: Actor,
}

/// Opens (creating) a log file of a run, and the run's directory if it is not there yet.
pub(super) fn open_log(p: &Path) -> std::io::Result<File> {
    if let Some(dir) = p.parent() {
        let _ = std::fs::create_dir(dir);
    }
    OpenOptions::new().create(true).append(true).open(p)
}

pub(super) fn lock(s: &Arc<Mutex<RunStatus>>) -> std::sync::MutexGuard<'_, RunStatus> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(unix)]
pub(super) fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The rlimits of a run. RLIMIT_AS only where no cgroup limits memory: it breaks the JVM and
/// WebAssembly in Node, so it is a fallback, never the first choice.
#[cfg(unix)]
fn rlimits_for(spec: &RunSpec, cgroup_memory: bool, cgroup_pids: bool) -> RlimitSet {
    let mut rl = RlimitSet::default();
    if !spec.enforce_limits {
        return rl;
    }
    let l = &spec.limits;
    if let Some(s) = l.cpu_seconds {
        rl.cpu_seconds(s);
    }
    if let Some(b) = l.file_size_bytes {
        rl.file_size(b);
    }
    if let (Some(b), false) = (l.memory_bytes, cgroup_memory) {
        rl.address_space(b);
    }
    // RLIMIT_NPROC counts every process of the user and root ignores it: only a fallback for
    // ordinary users, set above what the user already runs.
    if let (Some(n), false) = (l.max_processes, cgroup_pids) {
        let uid = unsafe { libc::getuid() };
        if uid != 0 {
            rl.processes(n + user_process_count(uid));
        }
    }
    rl
}

#[cfg(unix)]
fn user_process_count(uid: u32) -> u64 {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .filter(|e| e.metadata().map(|m| m.uid() == uid).unwrap_or(false))
                    .count() as u64
            })
            .unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = uid;
        256
    }
}

/// Where a run's output goes: its two log files and its two in-memory tails.
pub(super) struct Outputs {
    pub stdout_log: std::path::PathBuf,
    pub stderr_log: std::path::PathBuf,
    pub stdout_tail: super::output::SharedTail,
    pub stderr_tail: super::output::SharedTail,
}

impl Outputs {
    pub(super) fn of(status: &Arc<Mutex<RunStatus>>) -> Outputs {
        let s = lock(status);
        Outputs {
            stdout_log: s.stdout_log.clone(),
            stderr_log: s.stderr_log.clone(),
            stdout_tail: s.stdout.clone(),
            stderr_tail: s.stderr.clone(),
        }
    }
}

/// The part of a run's record that every tier fills the same way: who, when, argv, output.
/// The caller fills how it ended.
pub(super) fn base_record(
    id: RunId,
    spec: &RunSpec,
    status: &Arc<Mutex<RunStatus>>,
    started_at: SystemTime,
    started: Instant,
    argv_run: Vec<String>,
) -> RunRecord {
    let o = Outputs::of(status);
    let tail = |t: &super::output::SharedTail| t.lock().map(|t| t.last(20)).unwrap_or_default();
    RunRecord {
        run_id: id,
        agent: spec.agent.clone(),
        trigger: spec.trigger.clone(),
        tier: spec.tier,
        pid: None,
        container_id: None,
        argv: if argv_run.is_empty() {
            spec.steps[0].argv.clone()
        } else {
            argv_run
        },
        started_at: humantime::format_rfc3339_millis(started_at).to_string(),
        ended_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        duration_secs: started.elapsed().as_secs_f64(),
        exit_code: None,
        signal: None,
        reason: Reason::Exited,
        killed_by: None,
        message: None,
        peak_memory_bytes: 0,
        cpu_seconds: 0.0,
        processes: 0,
        stdout_tail: tail(&o.stdout_tail),
        stderr_tail: tail(&o.stderr_tail),
        stdout_log: o.stdout_log,
        stderr_log: o.stderr_log,
    }
}

/// The channels and shared state of one run.
pub(super) struct RunParts {
    pub status: Arc<Mutex<RunStatus>>,
    pub tree: Arc<TreeHandle>,
    pub ctl_tx: mpsc::UnboundedSender<Control>,
    pub ctl: mpsc::UnboundedReceiver<Control>,
    pub done: watch::Sender<Option<Arc<RunRecord>>>,
}

pub(super) async fn run(
    inner: Arc<Inner>,
    id: RunId,
    spec: RunSpec,
    parts: RunParts,
    #[cfg(target_os = "linux")] mut pre: Option<Prestart>,
) {
    let RunParts {
        status,
        tree,
        ctl_tx,
        mut ctl,
        done,
    } = parts;
    let started_at = SystemTime::now();
    let started = Instant::now();
    let Outputs {
        stdout_log,
        stderr_log,
        stdout_tail,
        stderr_tail,
    } = Outputs::of(&status);
    let emit = |e: Event| {
        let _ = inner.events.send(e);
    };

    // The run's groups: one per hierarchy, limits written before anything runs.
    let mut message: Option<String> = None;
    #[cfg_attr(not(target_os = "linux"), allow(unused_mut))]
    let (mut cg_memory, mut cg_pids, mut cg_cpu) = (false, false, false);
    // A first step `launch()` started through the pool: its groups are already the run's.
    #[cfg(target_os = "linux")]
    if let Some(p) = &pre {
        cg_memory = p.enforced.memory;
        cg_pids = p.enforced.pids;
        cg_cpu = p.enforced.cpu_quota;
    } else if inner.roots.any() {
        match crate::sandbox::cgroup::RunCgroup::create(
            &inner.roots,
            &format!("run-{id}"),
            &spec.limits,
            spec.enforce_limits,
        ) {
            Ok(cg) => {
                cg_memory = cg.enforced.memory;
                cg_pids = cg.enforced.pids;
                cg_cpu = cg.enforced.cpu_quota;
                *tree.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = Some(cg);
            }
            Err(e) => {
                message = Some(format!(
                    "no cgroup for this run ({e}); rlimits and the watchdog enforce its limits"
                ))
            }
        }
    }
    #[cfg(unix)]
    let rlimits = rlimits_for(&spec, cg_memory, cg_pids);
    // Windows: the run's job object, which every process of the run is in from its start.
    #[cfg(windows)]
    match crate::sandbox::job::Job::create(&spec.limits, spec.enforce_limits) {
        Ok(job) => {
            let _ = tree.job.set(job);
        }
        Err(e) => message = Some(format!("cannot create the run's job object: {e}")),
    }
    // No CPU quota without a cgroup: pin the agent to as many CPUs as it may use instead.
    #[cfg(target_os = "linux")]
    let affinity = run_affinity(&spec, cg_cpu);
    let limits = &spec.limits;

    inner.audit.record(
        "launch",
        json!({
            "run_id": id, "agent": spec.agent, "trigger": spec.trigger, "tier": spec.tier,
            "argv": spec.steps.iter().map(|s| &s.argv).collect::<Vec<_>>(),
            "program": spec.steps.iter().map(|s| &s.program).collect::<Vec<_>>(),
            "cwd": spec.cwd, "source": spec.source,
            "env_names": spec.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "limits": {
                "memory_bytes": limits.memory_bytes, "cpu_seconds": limits.cpu_seconds,
                "cpu_cores": limits.cpu_cores, "timeout_secs": limits.timeout.map(|t| t.as_secs_f64()),
                "max_processes": limits.max_processes, "file_size_bytes": limits.file_size_bytes,
                "enforced_by_os": spec.enforce_limits, "cgroup_memory": cg_memory, "cgroup_pids": cg_pids, "cgroup_cpu": cg_cpu,
            },
        }),
    );

    let mut deadline = limits
        .timeout
        .map(|t| started.checked_add(t).unwrap_or_else(far_future));
    let mut kill_at: Option<Instant> = None;
    let mut ending: Option<Ending> = None;
    // INT or HUP from the operator: the reason, should one of them end the run.
    let mut passed_on: Option<Ending> = None;
    let mut paused_since: Option<Instant> = None;
    let mut last: Option<ExitInfo> = None;
    let mut first_pid = None;
    let mut finished_cpu_ns = 0u64;
    let mut rusage_peak = 0u64;
    let mut failed_to_start = false;
    let mut argv_run = Vec::new();
    let mut watched = false;
    lock(&status).deadline = deadline.map(|d| d.into_std());

    for step in &spec.steps {
        if ending.is_some() {
            break;
        }
        #[cfg(target_os = "linux")]
        let pre_step = pre.take();
        #[cfg(target_os = "linux")]
        let announced = pre_step.is_some();
        #[cfg(not(target_os = "linux"))]
        let announced = false;
        #[cfg(target_os = "linux")]
        let join = match tree
            .cgroup
            .lock()
            .ok()
            .filter(|_| pre_step.is_none())
            .and_then(|c| c.as_ref().map(|c| c.open_join()))
        {
            Some(Ok(fds)) => fds,
            Some(Err(e)) => {
                message = Some(format!("cannot join the run's cgroups: {e}"));
                failed_to_start = true;
                break;
            }
            None => Vec::new(),
        };
        #[cfg(target_os = "linux")]
        let cgroup_fds: Vec<i32> = join.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        #[cfg(all(unix, not(target_os = "linux")))]
        let cgroup_fds = Vec::new();
        #[cfg(windows)]
        let Some(job) = tree.job.get() else {
            failed_to_start = true;
            break;
        };
        let launch = NativeLaunch {
            program: &step.program,
            argv: &step.argv,
            cwd: &spec.cwd,
            env: &spec.env,
            #[cfg(unix)]
            cgroup_fds,
            #[cfg(unix)]
            rlimits,
            #[cfg(target_os = "linux")]
            affinity,
            #[cfg(windows)]
            job,
        };
        let direct = || {
            inner
                .reaper
                .spawn_registered(|| native::spawn(&launch).map(|s| (s.pid, s)))
                .map_err(|e| format!("{}: {e}", step.program.display()))
        };
        #[cfg(target_os = "linux")]
        let spawned = match pre_step {
            Some(p) => p.result,
            None => direct(),
        };
        #[cfg(not(target_os = "linux"))]
        let spawned = direct();
        let (pid, started_proc, exit_rx) = match spawned {
            Ok(x) => x,
            Err(e) => {
                message = Some(e);
                failed_to_start = true;
                last = None;
                break;
            }
        };
        #[cfg(target_os = "linux")]
        drop(join);
        if !announced {
            announce(
                &inner,
                id,
                &spec,
                &status,
                &tree,
                pid,
                &step.argv,
                ending.is_some(),
            );
        }
        first_pid.get_or_insert(pid);
        argv_run = step.argv.clone();
        if !watched {
            watched = true;
            let os = super::watchdog::OsEnforced {
                memory: cg_memory,
                pids: cg_pids,
            };
            watch_run(&inner, id, &spec, &status, &tree, &ctl_tx, os);
        }
        // The logs are opened once the agent runs and is announced: the pipes hold its first
        // output meanwhile, and creating two files is not between the request and the agent.
        let (out_log, err_log) = match (open_log(&stdout_log), open_log(&stderr_log)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                message = Some(format!(
                    "cannot open the run's log files, output is lost: {e}"
                ));
                let null = if cfg!(windows) { "NUL" } else { "/dev/null" };
                (
                    File::create(null).expect("the null device"),
                    File::create(null).expect("the null device"),
                )
            }
        };
        #[cfg(unix)]
        let readers = [
            (started_proc.stdout, out_log, stdout_tail.clone()),
            (started_proc.stderr, err_log, stderr_tail.clone()),
        ]
        .map(|(fd, log, tail)| match native::async_pipe(fd) {
            Ok(p) => Some(tokio::spawn(super::output::drain(p, log, tail))),
            Err(_) => None,
        });
        // Windows' anonymous pipes have no readiness: each is drained on a blocking thread.
        #[cfg(windows)]
        let readers = {
            let native::Started {
                stdout,
                stderr,
                process,
                ..
            } = started_proc;
            let (t1, t2) = (stdout_tail.clone(), stderr_tail.clone());
            let r = [
                Some(tokio::task::spawn_blocking(move || {
                    super::output::drain_blocking(stdout, out_log, t1)
                })),
                Some(tokio::task::spawn_blocking(move || {
                    super::output::drain_blocking(stderr, err_log, t2)
                })),
            ];
            drop(process);
            r
        };

        let mut exit_rx = exit_rx;
        let exit = loop {
            let far = Instant::now() + Duration::from_secs(86400 * 365);
            tokio::select! {
                r = &mut exit_rx => break r.ok(),
                Some(c) = ctl.recv() => match c {
                    Control::Kill { sig, scope, by, reason } => {
                        let target = match scope { Scope::Tree => None, Scope::Process(p) => Some(p) };
                        // TERM and KILL end the run; INT and HUP are passed on (many agents reload on
                        // HUP), the timeout stays armed, and the record says who sent them if they end it.
                        let terminating = matches!(sig, Sig::Term | Sig::Kill);
                        if terminating && target.is_none() && ending.is_none() {
                            ending = Some(Ending { reason, by });
                        }
                        if matches!(sig, Sig::Int | Sig::Hup) {
                            passed_on = Some(Ending { reason, by });
                        }
                        inner.audit.record("kill", json!({
                            "run_id": id, "agent": spec.agent, "by": by, "reason": reason,
                            "signal": sig.name(), "scope": match target { None => "tree".to_string(), Some(p) => format!("pid {p}") },
                        }));
                        emit(Event::Killing { run_id: id, agent: spec.agent.clone(), by, reason, signal: sig.name() });
                        if terminating && target.is_none() {
                            lock(&status).state = RunState::Stopping;
                            if paused_since.take().is_some() {
                                tree.freeze(false);
                            }
                        }
                        match target {
                            Some(p) => { tree.send_to(p, sig); }
                            None => { tree.send(sig); }
                        }
                        if sig == Sig::Term && target.is_none() {
                            // A second TERM never pushes the escalation back.
                            let at = Instant::now() + spec.kill_grace;
                            kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                        }
                    }
                    Control::Pause => if paused_since.is_none() && ending.is_none() {
                        tree.freeze(true);
                        paused_since = Some(Instant::now());
                        lock(&status).state = RunState::Paused;
                        inner.audit.record("pause", json!({"run_id": id, "agent": spec.agent}));
                    },
                    Control::Resume => if let Some(p) = paused_since.take() {
                        tree.freeze(false);
                        // Time spent paused does not count against the timeout.
                        if let Some(d) = deadline.as_mut() { *d += p.elapsed(); }
                        let mut st = lock(&status);
                        st.state = RunState::Running;
                        st.deadline = deadline.map(|d| d.into_std());
                        inner.audit.record("resume", json!({"run_id": id, "agent": spec.agent}));
                    },
                },
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && ending.is_none() && paused_since.is_none() => {
                    ending = Some(Ending { reason: Reason::Timeout, by: Actor::Timeout });
                    inner.audit.record("kill", json!({
                        "run_id": id, "agent": spec.agent, "by": Actor::Timeout, "reason": Reason::Timeout,
                        "signal": "TERM", "scope": "tree", "timeout_secs": limits.timeout.map(|t| t.as_secs_f64()),
                    }));
                    emit(Event::Killing { run_id: id, agent: spec.agent.clone(), by: Actor::Timeout, reason: Reason::Timeout, signal: "TERM" });
                    lock(&status).state = RunState::Stopping;
                    tree.send(Sig::Term);
                    kill_at = Some(Instant::now() + spec.kill_grace);
                }
                _ = sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                    kill_at = None;
                    inner.audit.record("kill", json!({
                        "run_id": id, "agent": spec.agent, "by": ending.as_ref().map(|e| e.by),
                        "reason": ending.as_ref().map(|e| e.reason), "signal": "KILL", "scope": "tree", "escalation": true,
                    }));
                    tree.kill_now();
                }
            }
        };
        // The main process is gone: its pid may be reused from now on, so the tree is found
        // by its group and cgroup only. Whatever it left behind dies with it.
        tree.main_reaped();
        #[cfg(unix)]
        if let Some(g) = &inner.guardian {
            g.unregister(pid);
        }
        if !tree.is_empty() {
            tree.kill_now();
        }
        let drain_until = Instant::now() + DRAIN_AFTER_EXIT;
        for r in readers.into_iter().flatten() {
            let abort = r.abort_handle();
            if tokio::time::timeout_at(drain_until, r).await.is_err() {
                abort.abort();
            }
        }
        // Wait for the tree to be gone (the reaper collects the zombies).
        let until = Instant::now() + Duration::from_secs(2);
        while !tree.is_empty() && Instant::now() < until {
            tree.kill_now();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(e) = exit {
            finished_cpu_ns += e.cpu.as_nanos() as u64;
            rusage_peak = rusage_peak.max(e.max_rss_bytes);
        }
        last = exit;
        let ok = exit.is_some_and(|e| e.code == Some(0));
        if !ok {
            break;
        }
    }

    // Final figures: the sampler's peaks, the kernel's rusage, the cgroup's CPU counter.
    let (peak_rss, peak_procs, sampled_cpu) = {
        let s = lock(&status);
        (
            s.peak_rss_bytes.max(rusage_peak),
            s.peak_processes,
            s.cpu_ns,
        )
    };
    let cpu_ns = tree
        .cgroup_cpu_time()
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        .max(sampled_cpu)
        .max(finished_cpu_ns);
    let oom = tree.oom_kills() > 0;
    // Removing the groups may wait for the kernel to empty them: off the async workers.
    #[cfg(target_os = "linux")]
    {
        let cg = tree.cgroup.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut cg) = cg {
            let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
        }
    }
    let signal = last.and_then(|e| e.signal);
    #[cfg(unix)]
    let cpu_signal = signal == Some(libc::SIGXCPU) || signal == Some(libc::SIGKILL);
    // The job's CPU-time limit ends every process of it with a failure code.
    // A job past its CPU-time limit ends every process with ERROR_NOT_ENOUGH_QUOTA.
    #[cfg(windows)]
    let cpu_signal = last.is_some_and(|e| e.code == Some(1816));
    let (reason, killed_by) = if failed_to_start {
        (Reason::FailedToStart, None)
    } else if let Some(e) = &ending {
        (e.reason, Some(e.by))
    } else if let (Some(e), Some(_)) = (&passed_on, signal) {
        (e.reason, Some(e.by))
    } else if oom {
        (Reason::MemoryLimit, Some(Actor::Kernel))
    } else if signal == Some(SIGXCPU)
        || (cpu_signal
            && limits
                .cpu_seconds
                .is_some_and(|c| cpu_ns >= c.saturating_mul(1_000_000_000)))
    {
        (Reason::CpuLimit, Some(Actor::Kernel))
    } else {
        (Reason::Exited, None)
    };
    let record = Arc::new(RunRecord {
        pid: first_pid,
        exit_code: last.and_then(|e| e.code),
        #[cfg(unix)]
        signal: signal.map(signal_name),
        #[cfg(windows)]
        signal: None,
        reason,
        killed_by,
        message,
        peak_memory_bytes: peak_rss,
        cpu_seconds: cpu_ns as f64 / 1e9,
        processes: peak_procs.max(u64::from(first_pid.is_some())),
        ..base_record(id, &spec, &status, started_at, started, argv_run)
    });
    publish(&inner, &status, &done, record);
}

/// A started step made known: its tree, the guardian, the run's status, the `Launched` event.
#[allow(clippy::too_many_arguments)]
fn announce(
    inner: &Inner,
    id: RunId,
    spec: &RunSpec,
    status: &Arc<Mutex<RunStatus>>,
    tree: &TreeHandle,
    pid: i32,
    argv: &[String],
    stopping: bool,
) {
    tree.set_main(pid);
    #[cfg(unix)]
    if let Some(g) = &inner.guardian {
        g.register(pid);
    }
    {
        let mut s = lock(status);
        s.pid = Some(pid);
        s.argv = argv.to_vec();
        s.state = if stopping {
            RunState::Stopping
        } else {
            RunState::Running
        };
    }
    let _ = inner.events.send(Event::Launched {
        run_id: id,
        agent: spec.agent.clone(),
        trigger: spec.trigger.clone(),
        tier: spec.tier,
        pid,
        argv: argv.to_vec(),
    });
    #[cfg(target_os = "linux")]
    if let Some(p) = &inner.pool {
        p.refill();
    }
}

/// The CPUs a run may use: the `max_cpu_cores` fallback where no cgroup sets a quota.
#[cfg(target_os = "linux")]
fn run_affinity(spec: &RunSpec, cgroup_quota: bool) -> Option<libc::cpu_set_t> {
    match spec.limits.cpu_cores {
        Some(c) if spec.enforce_limits && !cgroup_quota => native::affinity_for(c),
        _ => None,
    }
}

/// Runs with a smaller memory limit do not go through a launcher (see `prestart`).
#[cfg(target_os = "linux")]
const MIN_POOLED_MEMORY: u64 = 16 << 20;

/// The first step of a run, started by `launch()` itself through a ready launcher of the pool:
/// no task hop and no cgroup work between the request and the running agent.
#[cfg(target_os = "linux")]
pub(super) struct Prestart {
    result: Result<
        (
            i32,
            native::Started,
            tokio::sync::oneshot::Receiver<ExitInfo>,
        ),
        String,
    >,
    enforced: crate::sandbox::cgroup::Enforced,
}

/// Starts the first step of a native run through the pool, if a launcher is ready and the run
/// fits it; `None` leaves everything to the run's task.
#[cfg(target_os = "linux")]
pub(super) fn prestart(
    inner: &Inner,
    id: RunId,
    spec: &RunSpec,
    status: &Arc<Mutex<RunStatus>>,
    tree: &TreeHandle,
) -> Option<Prestart> {
    let step = spec.steps.first()?;
    if !crate::runner::zygote::Zygote::fits(&step.program, &spec.cwd, &step.argv, &spec.env) {
        return None;
    }
    // The launcher shares the supervisor's memory until its exec, which is charged to the run's
    // memory group: under a tiny limit the kernel's OOM killer would pick it, and with it every
    // process sharing that memory. A vfork child is exempt, so such runs take the direct path.
    if spec.enforce_limits
        && spec
            .limits
            .memory_bytes
            .is_some_and(|m| m < MIN_POOLED_MEMORY)
    {
        return None;
    }
    let mut p = inner.pool.as_ref()?.take()?;
    let usable = p.zygote.alive()
        && p.cgroup
            .can_carry(&inner.roots, &spec.limits, spec.enforce_limits)
        && p.cgroup
            .apply_limits(&inner.roots, &spec.limits, spec.enforce_limits)
            .is_ok();
    if !usable {
        // Now, not later on another thread: the pool's thread must outlive its launchers.
        p.discard(&inner.reaper);
        return None;
    }
    if let Some(pool) = &inner.pool {
        pool.expect(&spec.limits, spec.enforce_limits);
    }
    let enforced = p.cgroup.enforced;
    let rlimits = rlimits_for(spec, enforced.memory, enforced.pids);
    let affinity = run_affinity(spec, enforced.cpu_quota);
    *tree.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.cgroup);
    let launch = NativeLaunch {
        program: &step.program,
        argv: &step.argv,
        cwd: &spec.cwd,
        env: &spec.env,
        cgroup_fds: Vec::new(),
        rlimits,
        affinity,
    };
    let exit = p.exit;
    let result = p
        .zygote
        .exec(&launch)
        .map(|s| (s.pid, s, exit))
        .map_err(|e| format!("{}: {e}", step.program.display()));
    match &result {
        Ok((pid, _, _)) => announce(inner, id, spec, status, tree, *pid, &step.argv, false),
        Err(_) => {
            if let Some(p) = &inner.pool {
                p.refill();
            }
        }
    }
    Some(Prestart { result, enforced })
}

/// Hands a started run to the sampler and watchdog thread.
pub(super) fn watch_run(
    inner: &Inner,
    id: RunId,
    spec: &RunSpec,
    status: &Arc<Mutex<RunStatus>>,
    tree: &Arc<TreeHandle>,
    ctl_tx: &mpsc::UnboundedSender<Control>,
    os: super::watchdog::OsEnforced,
) {
    let w = super::watchdog::Watched::new(
        id,
        spec.agent.clone(),
        status.clone(),
        tree.clone(),
        ctl_tx.clone(),
        spec.limits.clone(),
        os,
    );
    if let Ok(tx) = inner.watch.lock() {
        let _ = tx.send(w);
    }
}

/// The end of every run, whatever its tier: the audit line, the final status, the event, the
/// waiters.
pub(super) fn publish(
    inner: &Inner,
    status: &Arc<Mutex<RunStatus>>,
    done: &watch::Sender<Option<Arc<RunRecord>>>,
    record: Arc<RunRecord>,
) {
    inner.audit.record(
        "exit",
        json!({
            "run_id": record.run_id, "agent": record.agent, "trigger": record.trigger, "reason": record.reason,
            "killed_by": record.killed_by, "container_id": record.container_id,
            "exit_code": record.exit_code, "signal": record.signal, "duration_secs": record.duration_secs,
            "peak_memory_bytes": record.peak_memory_bytes, "cpu_seconds": record.cpu_seconds, "message": record.message,
        }),
    );
    {
        let mut s = lock(status);
        s.state = RunState::Exited;
        s.record = Some(record.clone());
        s.peak_rss_bytes = record.peak_memory_bytes;
        s.cpu_ns = (record.cpu_seconds * 1e9) as u64;
        s.rss_bytes = 0;
        s.processes = 0;
        s.procs.clear();
        s.cpu_pct = 0.0;
        s.version += 1;
    }
    let _ = inner.events.send(Event::Exited {
        record: Box::new((*record).clone()),
    });
    let _ = done.send(Some(record));
}
