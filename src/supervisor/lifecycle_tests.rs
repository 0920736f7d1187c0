//! The run lifecycle against a scripted tier: no agent process is spawned; every operator
//! action, the timeout, the escalation, steps and verdicts go through the real supervisor.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::target::{Actions, Exit, Finals, Prepared, Sinks, Started, Target, Tree};
use super::*;

const GRACEFUL: Actions = Actions {
    choices: &[
        (Sig::Term, "TERM"),
        (Sig::Kill, "KILL"),
        (Sig::Int, "INT"),
        (Sig::Hup, "HUP"),
        (Sig::Stop, "STOP"),
        (Sig::Cont, "CONT"),
    ],
    signal_names: true,
    one_process: true,
    graceful_term: true,
    pause: true,
};

/// Like a container: no grace, no aim at one process.
const WHOLE_ONLY: Actions = Actions {
    choices: &[(Sig::Term, "stop at once"), (Sig::Int, "INT")],
    signal_names: true,
    one_process: false,
    graceful_term: false,
    pause: true,
};

/// How the scripted agent behaves.
#[derive(Clone, Default)]
struct Script {
    /// Steps that end by themselves at once with this code (`None`: run until signalled).
    codes: Vec<Option<i32>>,
    /// Signals the agent dies of (KILL always).
    dies_of: Vec<Sig>,
    /// The step whose start fails.
    fail_start: Option<usize>,
    fatal: Option<String>,
    oom_kills: u64,
}

#[derive(Debug, Default)]
struct FakeTree;

impl Tree for FakeTree {
    fn pids(&self) -> Vec<i32> {
        Vec::new()
    }
    fn kill_now(&self) {}
}

struct Fake {
    script: Script,
    actions: Actions,
    calls: Arc<Mutex<Vec<String>>>,
    exit: Arc<Mutex<Option<oneshot::Sender<Exit>>>>,
}

impl Fake {
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

impl Target for Fake {
    fn actions(&self) -> Actions {
        self.actions
    }
    fn tree(&self) -> Arc<dyn Tree> {
        Arc::new(FakeTree)
    }
    async fn prepare(&mut self) -> Prepared {
        self.log("prepare".into());
        Prepared {
            fatal: self.script.fatal.clone(),
            ..Prepared::default()
        }
    }
    async fn start(&mut self, n: usize, _step: &Step) -> Result<Started, String> {
        self.log(format!("start {n}"));
        if self.script.fail_start == Some(n) {
            return Err(format!("step {n}: no such program"));
        }
        let (tx, rx) = oneshot::channel();
        match self.script.codes.get(n).copied().flatten() {
            Some(code) => {
                let _ = tx.send(Exit {
                    code: Some(code),
                    ..Exit::default()
                });
            }
            None => *self.exit.lock().unwrap() = Some(tx),
        }
        Ok(Started {
            pid: Some(4000 + n as i32),
            container_id: None,
            exit: Box::pin(async move { rx.await.map_err(|_| "lost".to_string()) }),
        })
    }
    fn drain(&mut self, _sinks: Sinks) {}
    async fn signal(&self, sig: Sig, pid: Option<i32>) -> bool {
        self.log(match pid {
            None => format!("signal {} tree", sig.name()),
            Some(p) => format!("signal {} pid {p}", sig.name()),
        });
        if pid.is_none() && (sig == Sig::Kill || self.script.dies_of.contains(&sig)) {
            if let Some(tx) = self.exit.lock().unwrap().take() {
                let _ = tx.send(Exit {
                    signal: Some(format!("SIG{}", sig.name())),
                    killed: sig == Sig::Kill,
                    ..Exit::default()
                });
            }
        }
        true
    }
    async fn pause(&self, paused: bool) -> bool {
        self.log(if paused { "pause" } else { "resume" }.into());
        true
    }
    async fn end_step(&mut self) {
        self.log("end_step".into());
    }
    async fn finish(&mut self) -> Finals {
        self.log("finish".into());
        Finals {
            cpu_time: None,
            oom_kills: self.script.oom_kills,
            memory_peak: None,
        }
    }
}

struct Bench {
    sup: Supervisor,
    dir: PathBuf,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench(name: &str) -> Bench {
    let dir =
        std::env::temp_dir().join(format!("symbiont-lifecycle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sup = Supervisor::new(SupervisorOptions {
        data_dir: dir.join("data"),
        audit_log: dir.join("audit.jsonl"),
        tail_lines: 10,
        max_log_mb: 64,
        first_run_id: 1,
        event_buffer: 4096,
        refresh: Duration::from_millis(20),
        watchdog_interval: Duration::from_millis(20),
        warn_ratio: 0.8,
        critical_ratio: 0.95,
        own_all_children: false,
        use_cgroups: false,
        docker_host: None,
        microvm: Default::default(),
    })
    .expect("supervisor");
    Bench { sup, dir }
}

fn spec(steps: usize, limits: Limits, grace: Duration) -> RunSpec {
    RunSpec {
        agent: "fake".into(),
        trigger: "start".into(),
        tier: SecurityTier::None,
        steps: (0..steps)
            .map(|n| Step {
                program: "/bin/true".into(),
                argv: vec![format!("step{n}")],
            })
            .collect(),
        cwd: std::env::temp_dir(),
        env: Vec::new(),
        limits,
        enforce_limits: true,
        kill_grace: grace,
        image: None,
        network: false,
        sandbox: Default::default(),
        source: None,
    }
}

type Calls = Arc<Mutex<Vec<String>>>;

/// Launches `spec` on a scripted tier; returns the run and its call log.
fn launch(b: &Bench, spec: RunSpec, script: Script, actions: Actions) -> (RunId, Calls) {
    let calls: Calls = Arc::default();
    let fake = Fake {
        script,
        actions,
        calls: calls.clone(),
        exit: Arc::default(),
    };
    let id = b.sup.inner.next_id.fetch_add(1, Ordering::Relaxed);
    b.sup.begin(
        id,
        Arc::new(spec),
        b.dir.join("runs").join(id.to_string()),
        fake,
        None,
    );
    (id, calls)
}

async fn running(b: &Bench, id: RunId) {
    let until = Instant::now() + Duration::from_secs(5);
    while b
        .sup
        .status(id)
        .is_none_or(|s| s.state != RunState::Running)
    {
        assert!(Instant::now() < until, "the run never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn audit(b: &Bench) -> Vec<serde_json::Value> {
    std::fs::read_to_string(b.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn calls(c: &Calls) -> Vec<String> {
    c.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_escalates_to_kill_after_the_grace_when_the_agent_ignores_it() {
    let b = bench("escalate");
    let grace = Duration::from_millis(150);
    let script = Script {
        codes: vec![None],
        ..Script::default()
    };
    let (id, log) = launch(&b, spec(1, Limits::default(), grace), script, GRACEFUL);
    running(&b, id).await;
    let t = Instant::now();
    assert!(b.sup.kill(id));
    let r = b.sup.wait(id).await.unwrap();
    assert!(t.elapsed() >= grace, "KILL came before the grace ended");
    assert_eq!(r.reason, Reason::KilledByOperator);
    assert_eq!(r.killed_by, Some(Actor::Operator));
    assert_eq!(r.signal.as_deref(), Some("SIGKILL"));
    let c = calls(&log);
    let term = c
        .iter()
        .position(|x| x == "signal TERM tree")
        .expect("TERM");
    let kill = c
        .iter()
        .position(|x| x == "signal KILL tree")
        .expect("KILL");
    assert!(term < kill, "{c:?}");
    assert_eq!(c.last().map(String::as_str), Some("finish"), "{c:?}");
    let kills: Vec<_> = audit(&b)
        .into_iter()
        .filter(|e| e["event"] == "kill")
        .collect();
    assert_eq!(kills.len(), 2, "{kills:?}");
    assert_eq!(kills[0]["signal"], "TERM");
    assert_eq!(kills[1]["signal"], "KILL");
    assert_eq!(kills[1]["escalation"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_without_grace_or_aim_stops_at_once_and_refuses_one_process() {
    let b = bench("whole");
    let script = Script {
        codes: vec![None],
        ..Script::default()
    };
    let grace = Duration::from_secs(30);
    let (id, log) = launch(&b, spec(1, Limits::default(), grace), script, WHOLE_ONLY);
    running(&b, id).await;
    // One process inside: refused by the supervisor, nothing reaches the tier.
    let one = Control::Kill {
        sig: Sig::Term,
        scope: Scope::Process(4000),
        by: Actor::Operator,
        reason: Reason::KilledByOperator,
    };
    assert!(!b.sup.control(id, one));
    // STOP is not among this tier's choices.
    let stop = Control::Kill {
        sig: Sig::Stop,
        scope: Scope::Tree,
        by: Actor::Operator,
        reason: Reason::KilledByOperator,
    };
    assert!(!b.sup.control(id, stop));
    let t = Instant::now();
    assert!(b.sup.kill(id));
    let r = b.sup.wait(id).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "no grace was due");
    assert_eq!(r.reason, Reason::KilledByOperator);
    let c = calls(&log);
    assert!(c.contains(&"signal KILL tree".to_string()), "{c:?}");
    assert!(
        !c.iter().any(|x| x.contains("TERM") || x.contains("pid")),
        "{c:?}"
    );
    let st = b.sup.status(id).unwrap();
    assert!(!st.actions.one_process);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_ends_the_run_and_time_paused_does_not_count() {
    let b = bench("timeout");
    let limits = Limits {
        timeout: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let script = Script {
        codes: vec![None],
        dies_of: vec![Sig::Term],
        ..Script::default()
    };
    let (id, log) = launch(
        &b,
        spec(1, limits, Duration::from_secs(5)),
        script,
        GRACEFUL,
    );
    running(&b, id).await;
    assert!(b.sup.control(id, Control::Pause));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.sup.status(id).unwrap().state, RunState::Paused);
    assert!(b.sup.control(id, Control::Resume));
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::Timeout);
    assert_eq!(r.killed_by, Some(Actor::Timeout));
    assert!(r.duration_secs >= 0.75, "paused time counted: {r:?}");
    let c = calls(&log);
    assert!(
        c.contains(&"pause".into()) && c.contains(&"resume".into()),
        "{c:?}"
    );
    let timeout_kill = audit(&b)
        .into_iter()
        .find(|e| e["event"] == "kill")
        .unwrap();
    assert_eq!(timeout_kill["by"], "timeout");
    assert_eq!(timeout_kill["timeout_secs"], 0.3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_run_in_order_and_stop_at_the_first_failure() {
    let b = bench("steps");
    let script = Script {
        codes: vec![Some(0), Some(3), Some(0)],
        ..Script::default()
    };
    let (id, log) = launch(
        &b,
        spec(3, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::Exited);
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.argv, vec!["step1"]);
    let c = calls(&log);
    assert_eq!(
        c,
        ["prepare", "start 0", "end_step", "start 1", "end_step", "finish"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_cannot_start_or_a_tier_that_cannot_run_is_failed_to_start() {
    let b = bench("nostart");
    let script = Script {
        codes: vec![Some(0), Some(0)],
        fail_start: Some(1),
        ..Script::default()
    };
    let (id, _) = launch(
        &b,
        spec(2, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::FailedToStart);
    assert_eq!(r.exit_code, None);
    assert_eq!(r.message.as_deref(), Some("step 1: no such program"));

    let script = Script {
        fatal: Some("no container daemon".into()),
        ..Script::default()
    };
    let (id, log) = launch(
        &b,
        spec(1, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::FailedToStart);
    assert_eq!(r.message.as_deref(), Some("no container daemon"));
    assert_eq!(calls(&log), ["prepare", "finish"]);
    // Its directory was never made for logs; the record is written there all the same.
    let dir = r.stdout_log.parent().unwrap();
    assert!(!r.stdout_log.exists());
    let on_disk: RunRecord =
        serde_json::from_slice(&std::fs::read(dir.join("record.json")).unwrap()).unwrap();
    assert_eq!(on_disk, *r);
}

/// A record that cannot be written beside the logs is reported in the record the clients
/// get, and the run still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_written_is_reported_and_the_run_succeeds() {
    let b = bench("norecord");
    // The run's directory is a file: neither logs nor record can go there.
    let next = b.sup.inner.next_id.load(Ordering::Relaxed);
    std::fs::create_dir_all(b.dir.join("runs")).unwrap();
    std::fs::write(b.dir.join("runs").join(next.to_string()), b"").unwrap();
    let script = Script {
        codes: vec![Some(0)],
        ..Script::default()
    };
    let (id, _) = launch(
        &b,
        spec(1, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    assert_eq!(id, next);
    let r = b.sup.wait(id).await.unwrap();
    let e = r.record_error.as_deref().unwrap_or_default();
    assert!(e.contains("record.json"), "{r:?}");
    assert!(r.success(), "{r:?}");
    assert!(r
        .losses()
        .unwrap_or_default()
        .contains("RECORD NOT WRITTEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_hup_from_the_operator_and_oom_kills_name_the_ending() {
    let b = bench("verdicts");
    // The watchdog's verdict.
    let script = Script {
        codes: vec![None],
        ..Script::default()
    };
    let (id, _) = launch(
        &b,
        spec(1, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    running(&b, id).await;
    b.sup.control(
        id,
        Control::Kill {
            sig: Sig::Kill,
            scope: Scope::Tree,
            by: Actor::Watchdog,
            reason: Reason::MemoryLimit,
        },
    );
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(
        (r.reason, r.killed_by),
        (Reason::MemoryLimit, Some(Actor::Watchdog))
    );
    // HUP passed on by the operator, which the agent dies of.
    let script = Script {
        codes: vec![None],
        dies_of: vec![Sig::Hup],
        ..Script::default()
    };
    let (id, _) = launch(
        &b,
        spec(1, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    running(&b, id).await;
    b.sup.control(
        id,
        Control::Kill {
            sig: Sig::Hup,
            scope: Scope::Tree,
            by: Actor::Operator,
            reason: Reason::KilledByOperator,
        },
    );
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(
        (r.reason, r.killed_by),
        (Reason::KilledByOperator, Some(Actor::Operator))
    );
    assert_eq!(r.signal.as_deref(), Some("SIGHUP"));
    // An exit the tier counted as an OOM kill.
    let script = Script {
        codes: vec![Some(137)],
        oom_kills: 1,
        ..Script::default()
    };
    let (id, _) = launch(
        &b,
        spec(1, Limits::default(), Duration::ZERO),
        script,
        GRACEFUL,
    );
    let r = b.sup.wait(id).await.unwrap();
    assert_eq!(
        (r.reason, r.killed_by),
        (Reason::MemoryLimit, Some(Actor::Kernel))
    );
}
