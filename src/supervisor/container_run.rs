//! One run on a container tier (Tier1 Docker, Tier2 gVisor): its steps as containers in order,
//! output into the same logs and tails as native runs, the same timeout, watchdog and kill
//! commands, and every container removed at the end.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;
use serde_json::json;
use tokio::time::{sleep_until, Instant};

use super::run::{base_record, lock, open_log, publish, watch_run, Outputs, RunParts};
use super::{Actor, Control, Event, Inner, Reason, RunId, RunRecord, RunSpec, RunState, Sig};
use crate::runner::container::{
    ContainerExit, ContainerSpec, Output, LABEL_PID, LABEL_RUN, LABEL_SUPERVISOR,
};

/// The label value naming this supervisor.
pub(super) fn supervisor_label(inner: &Inner) -> String {
    format!("{}-{}", std::process::id(), inner.instance)
}

pub(super) async fn run(inner: Arc<Inner>, id: RunId, spec: RunSpec, parts: RunParts) {
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
    let image = spec.image.clone().unwrap_or_default();
    let l = &spec.limits;
    inner.audit.record(
        "launch",
        json!({
            "run_id": id, "agent": spec.agent, "trigger": spec.trigger, "tier": spec.tier, "image": image,
            "argv": spec.steps.iter().map(|s| &s.argv).collect::<Vec<_>>(),
            "cwd": spec.cwd, "source": spec.source, "network": spec.network,
            "env_names": spec.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "limits": {
                "memory_bytes": l.memory_bytes, "cpu_seconds": l.cpu_seconds, "cpu_cores": l.cpu_cores,
                "timeout_secs": l.timeout.map(|t| t.as_secs_f64()), "max_processes": l.max_processes,
                "file_size_bytes": l.file_size_bytes,
            },
        }),
    );

    let mut message: Option<String> = None;
    let mut failed_to_start = false;
    let mut ending: Option<(Reason, Actor)> = None;
    let mut last: Option<ContainerExit> = None;
    let mut container_id: Option<String> = None;
    let mut first_pid: Option<i32> = None;
    let mut argv_run = Vec::new();
    let mut deadline = l.timeout.map(|t| {
        started
            .checked_add(t)
            .unwrap_or_else(super::run::far_future)
    });
    let mut paused_since: Option<Instant> = None;
    lock(&status).deadline = deadline.map(|d| d.into_std());

    let rt = match inner.containers().await {
        Ok(rt) => Some(rt),
        Err(e) => {
            message = Some(e);
            failed_to_start = true;
            None
        }
    };
    if let Some(rt) = &rt {
        if let Err(e) = rt.preflight(&spec.agent, spec.tier, &image).await {
            message = Some(e.to_string());
            failed_to_start = true;
        }
    }
    let mut watched = false;
    for (n, step) in spec.steps.iter().enumerate() {
        let Some(rt) = rt.as_ref().filter(|_| !failed_to_start && ending.is_none()) else {
            break;
        };
        let mut labels = HashMap::new();
        labels.insert(LABEL_SUPERVISOR.to_string(), supervisor_label(&inner));
        labels.insert(LABEL_PID.to_string(), std::process::id().to_string());
        labels.insert(LABEL_RUN.to_string(), id.to_string());
        let c = ContainerSpec {
            name: format!("symbiont-{}-{id}-{n}", supervisor_label(&inner)),
            image: &image,
            argv: &step.argv,
            env: &spec.env,
            workdir: &spec.cwd,
            limits: &spec.limits,
            tier: spec.tier,
            network: spec.network,
            labels,
        };
        let (cid, host_pid) = match rt.start(&c).await {
            Ok(x) => x,
            Err(e) => {
                message = Some(format!("{}: {e}", rt.host));
                failed_to_start = true;
                break;
            }
        };
        container_id = Some(cid.clone());
        argv_run = step.argv.clone();
        let pid = host_pid.map(|p| p as i32);
        if let Some(p) = pid {
            // The container's first process, as the host sees it: sampled like a native tree,
            // and killed by the guardian if the supervisor dies.
            tree.set_main(p);
            #[cfg(unix)]
            if let Some(g) = &inner.guardian {
                g.register(p);
            }
            first_pid.get_or_insert(p);
        }
        {
            let mut s = lock(&status);
            s.pid = pid;
            s.argv = step.argv.clone();
            s.state = RunState::Running;
            s.version += 1;
        }
        if !watched {
            watched = true;
            // The container runtime enforces memory and the process count itself.
            let os = super::watchdog::OsEnforced {
                memory: true,
                pids: true,
            };
            watch_run(&inner, id, &spec, &status, &tree, &ctl_tx, os);
        }
        emit(Event::Launched {
            run_id: id,
            agent: spec.agent.clone(),
            trigger: spec.trigger.clone(),
            tier: spec.tier,
            pid: pid.unwrap_or(0),
            argv: step.argv.clone(),
        });
        let pump = {
            let mut out = Box::pin(rt.output(&cid));
            let (so, se) = (stdout_tail.clone(), stderr_tail.clone());
            let mut files = (open_log(&stdout_log).ok(), open_log(&stderr_log).ok());
            tokio::spawn(async move {
                use std::io::Write;
                while let Some(o) = out.next().await {
                    let (file, tail, data) = match &o {
                        Output::Stdout(d) => (files.0.as_mut(), &so, d),
                        Output::Stderr(d) => (files.1.as_mut(), &se, d),
                    };
                    if let Some(f) = file {
                        let _ = f.write_all(data);
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push(data);
                    }
                }
            })
        };
        let far = Instant::now() + std::time::Duration::from_secs(86400 * 365);
        let wait = rt.wait(&cid);
        tokio::pin!(wait);
        let exit = loop {
            tokio::select! {
                r = &mut wait => break r,
                Some(c) = ctl.recv() => match c {
                    Control::Kill { sig, by, reason, .. } => {
                        // TERM and KILL stop the container at once (a shell as PID 1 ignores TERM);
                        // INT, HUP, STOP and CONT reach its first process as they are.
                        let terminating = matches!(sig, Sig::Term | Sig::Kill);
                        if terminating && ending.is_none() {
                            ending = Some((reason, by));
                            lock(&status).state = RunState::Stopping;
                        }
                        // A container stops at once: a shell as PID 1 ignores SIGTERM.
                        let signal = if terminating { "SIGKILL" } else { sig_name(sig) };
                        inner.audit.record("kill", json!({
                            "run_id": id, "agent": spec.agent, "by": by, "reason": reason, "signal": signal,
                            "scope": "container", "container_id": cid,
                        }));
                        emit(Event::Killing { run_id: id, agent: spec.agent.clone(), by, reason, signal: if terminating { "KILL" } else { sig.name() } });
                        if terminating && paused_since.take().is_some() {
                            rt.pause(&cid, false).await;
                        }
                        rt.kill(&cid, signal).await;
                    }
                    Control::Pause => if paused_since.is_none() && ending.is_none() && rt.pause(&cid, true).await {
                        paused_since = Some(Instant::now());
                        lock(&status).state = RunState::Paused;
                        inner.audit.record("pause", json!({"run_id": id, "agent": spec.agent}));
                    },
                    Control::Resume => if let Some(p) = paused_since.take() {
                        rt.pause(&cid, false).await;
                        if let Some(d) = deadline.as_mut() { *d += p.elapsed(); }
                        let mut st = lock(&status);
                        st.state = RunState::Running;
                        st.deadline = deadline.map(|d| d.into_std());
                        inner.audit.record("resume", json!({"run_id": id, "agent": spec.agent}));
                    },
                },
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && ending.is_none() && paused_since.is_none() => {
                    ending = Some((Reason::Timeout, Actor::Timeout));
                    inner.audit.record("kill", json!({
                        "run_id": id, "agent": spec.agent, "by": Actor::Timeout, "reason": Reason::Timeout,
                        "signal": "SIGKILL", "scope": "container", "container_id": cid,
                        "timeout_secs": l.timeout.map(|t| t.as_secs_f64()),
                    }));
                    emit(Event::Killing { run_id: id, agent: spec.agent.clone(), by: Actor::Timeout, reason: Reason::Timeout, signal: "KILL" });
                    lock(&status).state = RunState::Stopping;
                    rt.kill(&cid, "SIGKILL").await;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pump).await;
        rt.remove(&cid).await;
        #[cfg(unix)]
        if let (Some(g), Some(p)) = (&inner.guardian, pid) {
            g.unregister(p);
        }
        match exit {
            Ok(e) => last = Some(e),
            Err(e) => {
                message = Some(e);
                break;
            }
        }
        if last.is_some_and(|e| e.code != 0) {
            break;
        }
    }

    let (reason, killed_by) = if failed_to_start {
        (Reason::FailedToStart, None)
    } else if let Some((r, by)) = ending {
        (r, Some(by))
    } else if last.is_some_and(|e| e.oom_killed || (e.code == 137 && l.memory_bytes.is_some())) {
        // SIGKILL that no one here sent, under a memory limit: the OOM killer. gVisor and podman
        // on cgroup v1 do not always report OOMKilled, but the exit code holds.
        (Reason::MemoryLimit, Some(Actor::Kernel))
    } else {
        (Reason::Exited, None)
    };
    let (peak_rss, peak_procs, cpu_ns) = {
        let s = lock(&status);
        (s.peak_rss_bytes, s.peak_processes, s.cpu_ns)
    };
    let record = Arc::new(RunRecord {
        pid: first_pid,
        container_id,
        exit_code: last.map(|e| e.code as i32),
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

fn sig_name(s: Sig) -> &'static str {
    match s {
        Sig::Term => "SIGTERM",
        Sig::Kill => "SIGKILL",
        Sig::Int => "SIGINT",
        Sig::Hup => "SIGHUP",
        Sig::Stop => "SIGSTOP",
        Sig::Cont => "SIGCONT",
    }
}
