//! The native tier on Windows: an agent's steps as host processes inside the run's job object
//! (kill-on-close, so agents die with the supervisor; job memory, process and CPU limits).
//! Windows has no signals: TERM and KILL terminate the job at once, STOP and CONT suspend and
//! resume every thread, and INT and HUP (console events an agent without a console never
//! receives) are not offered.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::process::reaper::{ExitInfo, Reaper};
use crate::runner::native::{self, NativeLaunch};
use crate::sandbox::job::Job;
use crate::supervisor::output::{finish_drains, Forwarding, StreamSink};
use crate::supervisor::target::{Actions, Exit, Finals, Prepared, Sinks, Started, Target, Tree};
use crate::supervisor::watchdog::OsEnforced;
use crate::supervisor::{RunId, RunSpec, Sig, Step, SupervisorOptions};

/// A job past its CPU-time limit ends every process with ERROR_NOT_ENOUGH_QUOTA.
const CPU_QUOTA_EXIT: i32 = 1816;

/// The native tier's share of a supervisor on Windows: only the waiters of main processes
/// (each run's job is kill-on-close, so no guardian is needed).
pub(crate) struct NativeHost {
    reaper: Reaper,
}

impl NativeHost {
    pub fn start(opts: &SupervisorOptions, _instance: u64) -> std::io::Result<NativeHost> {
        Ok(NativeHost {
            reaper: Reaper::start(opts.own_all_children)?,
        })
    }

    pub fn mechanisms(&self) -> Vec<String> {
        vec![
            "job objects: one per run, kill-on-close (agents die with the supervisor); \
             job memory, active-process, CPU-time and CPU-rate limits"
                .into(),
            "process tree: the run's job object".into(),
        ]
    }

    pub fn launchers(&self) -> (usize, usize) {
        (0, 0)
    }

    pub fn fleet_cpu_counter(&self) -> Option<(PathBuf, bool)> {
        None
    }

    pub fn stop_launchers(&self) {}

    /// Nothing to register: the run's job ends with the supervisor.
    pub fn guard(&self, _pid: i32) {}

    pub fn unguard(&self, _pid: i32) {}

    pub fn target(
        self: &Arc<Self>,
        _id: RunId,
        spec: Arc<RunSpec>,
        _marker: String,
        stdin: Option<std::fs::File>,
    ) -> NativeTarget {
        NativeTarget {
            host: self.clone(),
            spec,
            tree: Arc::new(JobTree::default()),
            pipes: None,
            readers: Vec::new(),
            forwarding: None,
            stdin,
        }
    }
}

/// Ends one process outright.
pub(crate) fn kill_process(pid: i32) {
    native::terminate_pid(pid);
}

/// A run's processes: its job's.
#[derive(Debug, Default)]
struct JobTree {
    job: OnceLock<Job>,
}

impl JobTree {
    fn is_empty(&self) -> bool {
        match self.job.get().and_then(Job::active_processes) {
            Some(n) => n == 0,
            None => self.pids().is_empty(),
        }
    }
}

impl Tree for JobTree {
    fn pids(&self) -> Vec<i32> {
        self.job.get().map(Job::pids).unwrap_or_default()
    }

    fn kill_now(&self) {
        if let Some(j) = self.job.get() {
            j.terminate();
        }
    }

    fn oom_kills(&self) -> u64 {
        u64::from(self.job.get().is_some_and(Job::memory_limit_hit))
    }
}

/// One native run on Windows.
pub(crate) struct NativeTarget {
    host: Arc<NativeHost>,
    spec: Arc<RunSpec>,
    tree: Arc<JobTree>,
    pipes: Option<(std::process::ChildStdout, std::process::ChildStderr)>,
    readers: Vec<JoinHandle<()>>,
    /// The caller streaming the output, when one does.
    forwarding: Option<Arc<Forwarding>>,
    /// The agent's standard input (`RunIo::stdin`); /dev/null's counterpart without one.
    stdin: Option<std::fs::File>,
}

/// Reads `pipe` to its end on a blocking thread (Windows' anonymous pipes have no readiness).
fn drain_blocking(mut pipe: impl std::io::Read, mut sink: StreamSink, rt: tokio::runtime::Handle) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rt.block_on(sink.pass(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    rt.block_on(sink.finish());
}

fn exit_of(e: ExitInfo) -> Exit {
    Exit {
        code: e.code,
        signal: None,
        cpu: e.cpu,
        max_rss_bytes: e.max_rss_bytes,
        cpu_limit: false,
        killed: e.code == Some(CPU_QUOTA_EXIT),
        oom: false,
    }
}

/// What the operator can do to a run of this tier.
pub(crate) const ACTIONS: Actions = Actions {
    choices: &[
        (Sig::Term, "terminate the job (at once)"),
        (Sig::Stop, "suspend every thread"),
        (Sig::Cont, "resume every thread"),
    ],
    signal_names: false,
    one_process: true,
    graceful_term: false,
    pause: true,
};

impl Target for NativeTarget {
    fn actions(&self) -> Actions {
        ACTIONS
    }

    fn tree(&self) -> Arc<dyn Tree> {
        self.tree.clone()
    }

    async fn prepare(&mut self) -> Prepared {
        // The run's job object, which every process of the run is in from its start.
        let (note, fatal) = match Job::create(&self.spec.limits, self.spec.enforce_limits) {
            Ok(job) => {
                let _ = self.tree.job.set(job);
                (None, None)
            }
            Err(e) => {
                let m = format!("cannot create the run's job object: {e}");
                (Some(m.clone()), Some(m))
            }
        };
        let mut audit_limits = Map::new();
        audit_limits.insert("enforced_by_os".into(), json!(self.spec.enforce_limits));
        let mut audit = Map::new();
        let programs: Vec<Value> = self.spec.steps.iter().map(|s| json!(s.program)).collect();
        audit.insert("program".into(), Value::Array(programs));
        Prepared {
            os: OsEnforced {
                memory: false,
                pids: false,
                per_process_memory: false,
            },
            audit,
            audit_limits,
            note,
            fatal,
        }
    }

    async fn start(&mut self, _n: usize, step: &Step) -> Result<Started, String> {
        let job = self.tree.job.get().ok_or("the run has no job object")?;
        let launch = NativeLaunch {
            program: &step.program,
            argv: &step.argv,
            cwd: &self.spec.cwd,
            env: &self.spec.env,
            job,
            stdin: self.stdin.as_ref(),
        };
        let (pid, s, exit) = self
            .host
            .reaper
            .spawn_registered(|| native::spawn(&launch).map(|s| (s.pid, s)))
            .map_err(|e| format!("{}: {e}", step.program.display()))?;
        // The waiter holds its own handle: the pid stays this process's until it is reaped.
        drop(s.process);
        self.pipes = Some((s.stdout, s.stderr));
        Ok(Started {
            pid: Some(pid),
            container_id: None,
            exit: Box::pin(async move {
                exit.await
                    .map(exit_of)
                    .map_err(|_| "the agent's exit status was lost".to_string())
            }),
        })
    }

    fn drain(&mut self, sinks: Sinks) {
        let Some((out, err)) = self.pipes.take() else {
            return;
        };
        let Sinks {
            stdout,
            stderr,
            forwarding,
        } = sinks;
        self.forwarding = forwarding;
        let rt = tokio::runtime::Handle::current();
        let rt2 = rt.clone();
        self.readers.push(tokio::task::spawn_blocking(move || {
            drain_blocking(out, stdout, rt)
        }));
        self.readers.push(tokio::task::spawn_blocking(move || {
            drain_blocking(err, stderr, rt2)
        }));
    }

    async fn signal(&self, sig: Sig, pid: Option<i32>) -> bool {
        let pids = match pid {
            Some(p) if !self.tree.pids().contains(&p) => return false,
            Some(p) => vec![p],
            None => self.tree.pids(),
        };
        match (sig, pid) {
            (Sig::Term | Sig::Kill, None) => self.tree.job.get().is_some_and(Job::terminate),
            (Sig::Term | Sig::Kill, Some(p)) => native::terminate_pid(p),
            (Sig::Stop | Sig::Cont, _) => native::set_suspended(&pids, sig == Sig::Stop) > 0,
            (Sig::Int | Sig::Hup, _) => false,
        }
    }

    async fn pause(&self, paused: bool) -> bool {
        native::set_suspended(&self.tree.pids(), paused);
        true
    }

    async fn end_step(&mut self) {
        if !self.tree.is_empty() {
            self.tree.kill_now();
        }
        finish_drains(self.readers.drain(..), self.forwarding.as_deref()).await;
        let until = Instant::now() + Duration::from_secs(2);
        while !self.tree.is_empty() && Instant::now() < until {
            self.tree.kill_now();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finish(&mut self) -> Finals {
        Finals {
            cpu_time: self.tree.job.get().and_then(Job::cpu_time),
            oom_kills: self.tree.oom_kills(),
            memory_peak: None,
        }
    }
}
