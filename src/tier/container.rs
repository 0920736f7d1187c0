//! The container tiers (Tier1 Docker, Tier2 gVisor): a run's steps as containers in order,
//! their output into the same logs and tails as native runs, every container removed at the
//! end. The container runtime enforces memory and the process count; TERM stops a container
//! at once (a shell as PID 1 ignores it), and a signal cannot be aimed at one process inside.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::{json, Map};
use tokio::task::JoinHandle;

use super::native::NativeHost;
use crate::runner::container::{
    ContainerRuntime, ContainerSpec, Output, LABEL_PID, LABEL_RUN, LABEL_SUPERVISOR,
};
use crate::supervisor::output::{finish_drains, Forwarding};
use crate::supervisor::target::{Actions, Exit, Finals, Prepared, Sinks, Started, Target, Tree};
use crate::supervisor::watchdog::OsEnforced;
use crate::supervisor::{LaunchError, RunId, RunSpec, Sig, Step};

/// The container daemon of a supervisor, connected on the first container run.
pub(crate) struct ContainerHost {
    docker_host: Option<String>,
    runtime: tokio::sync::Mutex<Option<ContainerRuntime>>,
    /// The label value naming this supervisor on its containers.
    label: String,
}

impl ContainerHost {
    pub fn new(docker_host: Option<String>, instance: u64) -> ContainerHost {
        ContainerHost {
            docker_host,
            runtime: tokio::sync::Mutex::new(None),
            label: format!("{}-{instance}", std::process::id()),
        }
    }

    /// The container daemon, connecting on first use (and sweeping containers that dead
    /// supervisors left). A failure is reported, and retried on the next container run.
    pub async fn runtime(&self) -> Result<ContainerRuntime, String> {
        let mut c = self.runtime.lock().await;
        if let Some(rt) = c.as_ref() {
            return Ok(rt.clone());
        }
        let rt = ContainerRuntime::connect(self.docker_host.as_deref()).await?;
        rt.sweep(None).await;
        *c = Some(rt.clone());
        Ok(rt)
    }

    /// Refuses, before anything starts, a run whose daemon, runtime or image is missing.
    pub async fn preflight(&self, s: &RunSpec) -> Result<(), LaunchError> {
        let image = s.image.clone().unwrap_or_default();
        let rt = self
            .runtime()
            .await
            .map_err(|message| LaunchError::DaemonUnreachable {
                agent: s.agent.clone(),
                tier: s.tier,
                message,
            })?;
        rt.preflight(&s.agent, s.tier, &image).await
    }

    /// A container run of `spec`; `native` guards the container's first process.
    pub fn target(
        self: &Arc<Self>,
        id: RunId,
        spec: Arc<RunSpec>,
        native: Arc<NativeHost>,
        stdin: Option<std::fs::File>,
    ) -> ContainerTarget {
        ContainerTarget {
            host: self.clone(),
            native,
            id,
            spec,
            rt: None,
            tree: Arc::new(ContainerTree::default()),
            cid: None,
            pump: None,
            forwarding: None,
            stdin,
        }
    }
}

/// A container's processes as the host sees them: its first process and its descendants.
#[derive(Debug, Default)]
struct ContainerTree {
    main: AtomicI32,
}

impl Tree for ContainerTree {
    fn pids(&self) -> Vec<i32> {
        crate::sampler::descendants(self.main.load(Ordering::SeqCst))
    }

    /// The last resort when the supervisor goes without ending the run: the container's first
    /// process dies, and the container with it.
    fn kill_now(&self) {
        let pid = self.main.load(Ordering::SeqCst);
        if pid > 0 {
            crate::tier::native::kill_process(pid);
        }
    }
}

/// One container run.
pub(crate) struct ContainerTarget {
    host: Arc<ContainerHost>,
    /// The guardian, which kills the container's first process if the supervisor dies.
    native: Arc<NativeHost>,
    id: RunId,
    spec: Arc<RunSpec>,
    rt: Option<ContainerRuntime>,
    tree: Arc<ContainerTree>,
    /// The current step's container and the task copying its output.
    cid: Option<String>,
    pump: Option<JoinHandle<()>>,
    /// The caller streaming the output, when one does.
    forwarding: Option<Arc<Forwarding>>,
    /// The agent's standard input (`RunIo::stdin`), copied into the container's.
    stdin: Option<std::fs::File>,
}

impl ContainerTarget {
    fn docker_signal(sig: Sig) -> &'static str {
        match sig {
            Sig::Term => "SIGTERM",
            Sig::Kill => "SIGKILL",
            Sig::Int => "SIGINT",
            Sig::Hup => "SIGHUP",
            Sig::Stop => "SIGSTOP",
            Sig::Cont => "SIGCONT",
        }
    }
}

/// What the operator can do to a run of this tier.
pub(crate) const ACTIONS: Actions = Actions {
    choices: &[
        (Sig::Term, "stop the container at once"),
        (Sig::Int, "INT to its first process"),
        (Sig::Hup, "HUP to its first process"),
        (Sig::Stop, "STOP (pause)"),
        (Sig::Cont, "CONT (resume)"),
    ],
    signal_names: true,
    one_process: false,
    graceful_term: false,
    pause: true,
};

impl Target for ContainerTarget {
    fn actions(&self) -> Actions {
        ACTIONS
    }

    fn tree(&self) -> Arc<dyn Tree> {
        self.tree.clone()
    }

    async fn prepare(&mut self) -> Prepared {
        let mut audit = Map::new();
        audit.insert(
            "image".into(),
            json!(self.spec.image.clone().unwrap_or_default()),
        );
        audit.insert("network".into(), json!(self.spec.network));
        let fatal = match self.host.runtime().await {
            Ok(rt) => {
                let r = rt
                    .preflight(
                        &self.spec.agent,
                        self.spec.tier,
                        self.spec.image.as_deref().unwrap_or_default(),
                    )
                    .await;
                self.rt = Some(rt);
                r.err().map(|e| e.to_string())
            }
            Err(e) => Some(e),
        };
        Prepared {
            // The container runtime enforces memory and the process count itself.
            os: OsEnforced {
                memory: true,
                pids: true,
                per_process_memory: false,
            },
            audit,
            audit_limits: Map::new(),
            note: None,
            fatal,
        }
    }

    async fn start(&mut self, n: usize, step: &Step) -> Result<Started, String> {
        let rt = self.rt.clone().ok_or("no container daemon")?;
        let label = &self.host.label;
        let mut labels = HashMap::new();
        labels.insert(LABEL_SUPERVISOR.to_string(), label.clone());
        labels.insert(LABEL_PID.to_string(), std::process::id().to_string());
        labels.insert(LABEL_RUN.to_string(), self.id.to_string());
        let image = self.spec.image.clone().unwrap_or_default();
        let c = ContainerSpec {
            name: format!("symbiont-{label}-{}-{n}", self.id),
            image: &image,
            argv: &step.argv,
            env: &self.spec.env,
            workdir: &self.spec.cwd,
            limits: &self.spec.limits,
            tier: self.spec.tier,
            network: self.spec.network,
            read_only: self.spec.sandbox.writes,
            labels,
            stdin: self.stdin.as_ref(),
        };
        let (cid, host_pid) = rt
            .start(&c)
            .await
            .map_err(|e| format!("{}: {e}", rt.host))?;
        let pid = host_pid.map(|p| p as i32);
        // The container's first process, as the host sees it: sampled like a native tree.
        self.tree.main.store(pid.unwrap_or(0), Ordering::SeqCst);
        if let Some(p) = pid {
            self.native.guard(p);
        }
        self.cid = Some(cid.clone());
        let memory_limit = self.spec.limits.memory_bytes.is_some();
        let wait_cid = cid.clone();
        Ok(Started {
            pid,
            container_id: Some(cid),
            exit: Box::pin(async move {
                let e = rt.wait(&wait_cid).await?;
                Ok(Exit {
                    code: Some(e.code as i32),
                    // SIGKILL that no one here sent, under a memory limit: the OOM killer.
                    // gVisor and podman on cgroup v1 do not always report OOMKilled, but the
                    // exit code holds.
                    oom: e.oom_killed || (e.code == 137 && memory_limit),
                    ..Exit::default()
                })
            }),
        })
    }

    fn drain(&mut self, sinks: Sinks) {
        let (Some(rt), Some(cid)) = (&self.rt, &self.cid) else {
            return;
        };
        let mut out = Box::pin(rt.output(cid));
        let Sinks {
            mut stdout,
            mut stderr,
            forwarding,
        } = sinks;
        self.forwarding = forwarding;
        self.pump = Some(tokio::spawn(async move {
            while let Some(o) = out.next().await {
                match &o {
                    Output::Stdout(d) => stdout.pass(d).await,
                    Output::Stderr(d) => stderr.pass(d).await,
                }
            }
            stdout.finish().await;
            stderr.finish().await;
        }));
    }

    async fn signal(&self, sig: Sig, pid: Option<i32>) -> bool {
        let (Some(rt), Some(cid), None) = (&self.rt, &self.cid, pid) else {
            return false;
        };
        rt.kill(cid, Self::docker_signal(sig)).await;
        true
    }

    async fn pause(&self, paused: bool) -> bool {
        match (&self.rt, &self.cid) {
            (Some(rt), Some(cid)) => rt.pause(cid, paused).await,
            _ => false,
        }
    }

    async fn end_step(&mut self) {
        finish_drains(self.pump.take(), self.forwarding.as_deref()).await;
        if let (Some(rt), Some(cid)) = (&self.rt, self.cid.take()) {
            rt.remove(&cid).await;
        }
        let pid = self.tree.main.swap(0, Ordering::SeqCst);
        if pid > 0 {
            self.native.unguard(pid);
        }
    }

    async fn finish(&mut self) -> Finals {
        Finals::default()
    }
}
