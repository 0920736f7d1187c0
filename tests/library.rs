//! The library: the supervisor driven directly (operator kill, escalation, pause, the audit
//! log) and the seed's Rust examples, built by cargo and run here.
#![cfg(unix)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use symbiont::policy::PolicyError;
use symbiont::supervisor::LaunchError;
use symbiont::supervisor::Limits;
use symbiont::supervisor::{
    Actor, Control, Reason, RunRecord, RunSpec, RunState, Scope, Sig, Step, Supervisor,
    SupervisorOptions,
};
use symbiont::{Config, SandboxOrchestrator, SecurityTier};

fn sh() -> PathBuf {
    symbiont::policy::lookup("bash", std::env::var_os("PATH").as_deref()).expect("bash on PATH")
}

fn supervisor(s: &Scratch) -> Supervisor {
    supervisor_with(s, true)
}

fn supervisor_with(s: &Scratch, use_cgroups: bool) -> Supervisor {
    Supervisor::new(SupervisorOptions {
        data_dir: s.path("data"),
        audit_log: s.path("data/audit.jsonl"),
        tail_lines: 50,
        max_log_mb: 64,
        first_run_id: 1,
        event_buffer: 4096,
        refresh: Duration::from_millis(50),
        watchdog_interval: Duration::from_millis(50),
        warn_ratio: 0.8,
        critical_ratio: 0.95,
        own_all_children: false,
        use_cgroups,
        docker_host: None,
        microvm: Default::default(),
    })
    .unwrap()
}

fn spec(s: &Scratch, agent: &str, script: &str, limits: Limits) -> RunSpec {
    RunSpec {
        agent: agent.into(),
        trigger: "start".into(),
        tier: SecurityTier::None,
        steps: vec![Step {
            program: sh(),
            argv: vec!["bash".into(), "-c".into(), script.into()],
        }],
        cwd: s.work(),
        env: vec![
            ("PATH".into(), std::env::var("PATH").unwrap()),
            ("SYMBIONT_AGENT".into(), agent.into()),
            ("API_KEY".into(), "do-not-log-me".into()),
        ],
        limits,
        enforce_limits: true,
        kill_grace: Duration::from_millis(500),
        image: None,
        network: false,
        sandbox: Default::default(),
        source: None,
    }
}

async fn wait_state(
    sup: &Supervisor,
    id: u64,
    f: impl Fn(&symbiont::supervisor::RunStatus) -> bool,
) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if sup.status(id).is_some_and(|st| f(&st)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_kill_leaves_no_daemon_and_no_pipe_holder() {
    let s = Scratch::new("lib-kill");
    let sup = supervisor(&s);
    let id = sup
        .launch(spec(
            &s,
            "LibKill",
            "(setsid sleep 300 &); sleep 300 & sleep 300 >&2 & echo up; wait",
            Limits::default(),
        ))
        .unwrap();
    assert!(
        wait_state(&sup, id, |st| st.processes >= 4).await,
        "tree never reached 4 processes"
    );
    assert!(agent_pids("LibKill").len() >= 4);
    let t = Instant::now();
    assert!(sup.kill(id));
    let r: Arc<RunRecord> = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::KilledByOperator);
    assert_eq!(r.killed_by, Some(Actor::Operator));
    assert_eq!(r.signal.as_deref(), Some("SIGTERM"));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_none_left("LibKill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_escalates_to_kill_after_the_grace_period() {
    let s = Scratch::new("lib-grace");
    let sup = supervisor(&s);
    let id = sup
        .launch(spec(
            &s,
            "Stubborn",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            Limits::default(),
        ))
        .unwrap();
    assert!(wait_state(&sup, id, |st| st.stdout.lock().unwrap().line_count >= 1).await);
    let t = Instant::now();
    sup.kill(id);
    let r = sup.wait(id).await.unwrap();
    let took = t.elapsed();
    assert_eq!(r.reason, Reason::KilledByOperator);
    assert_eq!(
        r.signal.as_deref(),
        Some("SIGKILL"),
        "TERM was ignored, so KILL must have ended it"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_none_left("Stubborn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_process_leaves_the_rest_of_the_tree() {
    let s = Scratch::new("lib-one");
    let sup = supervisor(&s);
    let id = sup
        .launch(spec(
            &s,
            "OneOfMany",
            "sleep 300 & echo $!; wait; echo child-gone",
            Limits::default(),
        ))
        .unwrap();
    assert!(wait_state(&sup, id, |st| st.stdout.lock().unwrap().line_count >= 1).await);
    let child: i32 = sup.status(id).unwrap().stdout.lock().unwrap().last(1)[0]
        .parse()
        .unwrap();
    sup.control(
        id,
        Control::Kill {
            sig: Sig::Kill,
            scope: Scope::Process(child),
            by: Actor::Operator,
            reason: Reason::KilledByOperator,
        },
    );
    let r = sup.wait(id).await.unwrap();
    // The main process outlived its child and exited normally.
    assert_eq!(r.reason, Reason::Exited);
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.stdout_tail.last().map(String::as_str), Some("child-gone"));
    assert_none_left("OneOfMany");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_freezes_the_tree_and_does_not_count_against_the_timeout() {
    let s = Scratch::new("lib-pause");
    let sup = supervisor(&s);
    let limits = Limits {
        timeout: Some(Duration::from_millis(1500)),
        ..Limits::default()
    };
    let id = sup
        .launch(spec(
            &s,
            "Pauser",
            "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done",
            limits,
        ))
        .unwrap();
    assert!(wait_state(&sup, id, |st| st.stdout.lock().unwrap().line_count >= 2).await);
    assert!(sup.control(id, Control::Pause));
    assert!(wait_state(&sup, id, |st| st.state == RunState::Paused).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sup.status(id).unwrap().stdout.lock().unwrap().line_count;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = sup.status(id).unwrap().stdout.lock().unwrap().line_count;
    assert_eq!(before, after, "a paused agent kept writing");
    assert!(
        sup.status(id).unwrap().record.is_none(),
        "the timeout fired while paused"
    );
    assert!(sup.control(id, Control::Resume));
    let r = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::Timeout);
    assert!(
        r.duration_secs > 2.9,
        "paused time counted against the timeout: {}",
        r.duration_secs
    );
    assert_none_left("Pauser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_launch_kill_and_exit_without_env_values() {
    let s = Scratch::new("lib-audit");
    let sup = supervisor(&s);
    let id = sup
        .launch(spec(&s, "Audited", "sleep 300", Limits::default()))
        .unwrap();
    assert!(wait_state(&sup, id, |st| st.state == RunState::Running).await);
    sup.kill(id);
    sup.wait(id).await.unwrap();
    let log = std::fs::read_to_string(s.path("data/audit.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The launch line is written before the agent starts; what holds its limits follows.
    assert_eq!(kinds, ["launch", "enforcement", "kill", "exit"]);
    assert_eq!(
        events[0]["env_names"],
        serde_json::json!(["PATH", "SYMBIONT_AGENT", "API_KEY", "SYMBIONT_RUN"])
    );
    assert!(
        !log.contains("do-not-log-me"),
        "an environment value reached the audit log"
    );
    assert_eq!(events[2]["by"], "operator");
    assert_eq!(events[2]["signal"], "TERM");
    assert_eq!(events[3]["reason"], "killed_by_operator");
    assert_none_left("Audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_supervisor_kills_its_agents() {
    let s = Scratch::new("lib-drop");
    {
        let sup = supervisor(&s);
        let id = sup
            .launch(spec(
                &s,
                "Dropped",
                "(setsid sleep 300 &); sleep 300",
                Limits::default(),
            ))
            .unwrap();
        assert!(wait_state(&sup, id, |st| st.processes >= 2).await);
    }
    assert_none_left("Dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_start_is_recorded_as_failed_to_start() {
    let s = Scratch::new("lib-nostart");
    let sup = supervisor(&s);
    let mut sp = spec(&s, "NoStart", "true", Limits::default());
    sp.steps[0].program = s.path("missing-program");
    let id = sup.launch(sp).unwrap();
    let r = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::FailedToStart);
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .contains("missing-program"),
        "{:?}",
        r.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_the_kernel_refuses_stops_the_run_and_names_the_setting() {
    // The library takes any value (the command line refuses it at load): where a cgroup would
    // carry it and the kernel will not, the run must not start with weaker limits.
    let s = Scratch::new("lib-refused");
    let sup = supervisor(&s);
    if !sup
        .mechanisms()
        .iter()
        .any(|m| m.starts_with("processes: cgroup"))
    {
        skip(
            "a_limit_the_kernel_refuses_stops_the_run_and_names_the_setting",
            "no pids cgroup for this user here",
        );
        return;
    }
    let ran = s.path("ran");
    let limits = Limits {
        max_processes: Some(u64::MAX),
        ..Limits::default()
    };
    let script = format!("touch {}", ran.display());
    let id = sup.launch(spec(&s, "Refused", &script, limits)).unwrap();
    let r = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::FailedToStart, "{r:?}");
    let msg = r.message.as_deref().unwrap_or("");
    assert!(msg.contains("native_execution.max_processes"), "{msg}");
    assert!(!ran.exists(), "the agent ran without its limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_code_runs_on_tier_none_and_refuses_without_consent() {
    let s = Scratch::new("lib-exec");
    let mut config = Config::default();
    config.native_execution.working_directory = s.work();
    config.supervisor.data_dir = s.path("data");
    config.native_execution.default_executable = "python3".into();
    let orchestrator = SandboxOrchestrator::new(config.clone()).unwrap();
    let e = orchestrator
        .execute_code(SecurityTier::None, "print(1)", HashMap::new())
        .await
        .unwrap_err();
    // A program can tell the refusal from any other failure; the message is the CLI's.
    assert!(
        matches!(
            &e,
            symbiont::Error::Policy(PolicyError::NativeDisabled { what }) if what == "this command"
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("SYMBIONT_ALLOW_NATIVE_EXECUTION"),
        "{e}"
    );
    // `main() -> Result<(), Box<dyn Error>>` prints the Debug form: the message, not a struct.
    assert_eq!(format!("{e:?}"), e.to_string());
    config.security.allow_native_execution = true;
    let orchestrator = SandboxOrchestrator::new(config).unwrap();
    let mut env = HashMap::new();
    env.insert("SYMBIONT_AGENT".to_string(), "LibExec".to_string());
    env.insert("WHO".to_string(), "library".to_string());
    let r = orchestrator
        .execute_code(
            SecurityTier::None,
            "import os; print('hello', os.environ['WHO']); raise SystemExit(4)",
            env,
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, "hello library\n");
    assert_eq!(r.exit_code, 4);
    assert!(!r.success);
    assert_eq!(r.reason, Reason::Exited);
    let e = orchestrator
        .execute_code(SecurityTier::Tier1, "print(1)", HashMap::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            symbiont::Error::Launch(LaunchError::NoImage {
                tier: SecurityTier::Tier1
            })
        ),
        "{e}"
    );
    let m = e.to_string();
    assert!(m.contains("Tier1") && m.contains("needs an image"), "{m}");
    assert_none_left("LibExec");
}

fn example(name: &str) -> PathBuf {
    let bin = bin();
    bin.parent().unwrap().join("examples").join(name)
}

#[test]
fn seed_example_development_mode_runs() {
    let s = Scratch::new("ex-dev");
    // Config::default() keeps its data in $XDG_STATE_HOME/symbiont, never in the cwd.
    let o = std::process::Command::new(example("native_dev_mode"))
        .current_dir(&s.dir)
        .env("XDG_STATE_HOME", s.path("state"))
        .env("LOCALAPPDATA", s.path("state"))
        // The library installs no log subscriber: a program that uses it prints no diagnostic
        // log, whatever this says (the binary's log would have launch and cgroup lines).
        .env("SYMBIONT_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("symbiont::"), "{}", stderr(&o));
    // The seed's default interpreter is bash, so its python line is a bash syntax error:
    // the call itself succeeds and reports the child's failure, as the seed's types say.
    assert!(stdout(&o).starts_with("Output: "), "{}", stdout(&o));
    assert!(s.path("state/symbiont/audit.jsonl").exists());
    assert!(!s.path("data").exists());
}
// Without cgroups (an ordinary user on a strict host): process groups, the environment marker,
// rlimits and the watchdog still find, limit and kill everything.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_an_operator_kill_still_takes_setsid_daemons() {
    let s = Scratch::new("lib-nocg-kill");
    let sup = supervisor_with(&s, false);
    assert!(
        sup.mechanisms()
            .iter()
            .any(|m| m.contains("no writable cgroup")),
        "{:?}",
        sup.mechanisms()
    );
    let id = sup
        .launch(spec(
            &s,
            "NoCgKill",
            "(setsid sleep 300 &); sleep 300 & echo up; wait",
            Limits::default(),
        ))
        .unwrap();
    assert!(wait_state(&sup, id, |st| st.stdout.lock().unwrap().line_count >= 1).await);
    assert!(wait_for(
        || agent_pids("NoCgKill").len() >= 3,
        Duration::from_secs(5)
    ));
    sup.kill(id);
    let r = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::KilledByOperator);
    assert_none_left("NoCgKill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_the_watchdog_kills_a_memory_hog() {
    let s = Scratch::new("lib-nocg-mem");
    let sup = supervisor_with(&s, false);
    let limits = Limits {
        memory_bytes: Some(100 << 20),
        timeout: Some(Duration::from_secs(30)),
        ..Limits::default()
    };
    let mut sp = spec(
        &s,
        "NoCgHog",
        "exec python3 -c 'import time; b = bytearray(300 << 20); time.sleep(30)'",
        limits,
    );
    // Watchdog only: no rlimit gets in first.
    sp.enforce_limits = false;
    let id = sup.launch(sp).unwrap();
    let r = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::MemoryLimit, "{r:?}");
    assert_eq!(r.killed_by, Some(Actor::Watchdog));
    assert!(r.peak_memory_bytes > 100 << 20);
    assert_none_left("NoCgHog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cgroups_the_watchdog_counts_processes() {
    let s = Scratch::new("lib-nocg-procs");
    let sup = supervisor_with(&s, false);
    let limits = Limits {
        max_processes: Some(10),
        timeout: Some(Duration::from_secs(30)),
        ..Limits::default()
    };
    let id = sup
        .launch(spec(
            &s,
            "NoCgForks",
            "for i in $(seq 30); do sleep 60 & done; wait",
            limits,
        ))
        .unwrap();
    let r = sup.wait(id).await.unwrap();
    assert_eq!(r.reason, Reason::ProcessLimit, "{r:?}");
    assert_eq!(r.killed_by, Some(Actor::Watchdog));
    assert_none_left("NoCgForks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hup_is_passed_on_and_the_timeout_stays_armed() {
    let s = Scratch::new("lib-hup");
    let sup = supervisor(&s);
    let limits = Limits {
        timeout: Some(Duration::from_millis(1500)),
        ..Limits::default()
    };
    let id = sup
        .launch(spec(
            &s,
            "Reloader",
            "trap 'echo reloaded' HUP; echo ready; while :; do sleep 0.05; done",
            limits,
        ))
        .unwrap();
    assert!(wait_state(&sup, id, |st| st.stdout.lock().unwrap().line_count >= 1).await);
    sup.control(
        id,
        Control::Kill {
            sig: Sig::Hup,
            scope: Scope::Tree,
            by: Actor::Operator,
            reason: Reason::KilledByOperator,
        },
    );
    let r = sup.wait(id).await.unwrap();
    assert_eq!(
        r.reason,
        Reason::Timeout,
        "a HUP the agent handles must not end the run: {r:?}"
    );
    assert!(
        r.stdout_tail.iter().any(|l| l == "reloaded"),
        "{:?}",
        r.stdout_tail
    );
    assert_none_left("Reloader");
}

/// Agents get their stdin, stdout and stderr and nothing else of the supervisor's, not even a
/// descriptor it holds without close-on-exec, whichever way they start (a ready launcher, or
/// the direct start of a second step and of a supervisor without cgroups).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_hold_only_their_three_standard_descriptors() {
    let s = Scratch::new("fds");
    // A descriptor an agent would inherit if nothing closed it.
    // SAFETY: raw descriptor calls on a C string literal and on descriptors this test owns;
    // 777 is closed again at the end of the test.
    let stray = unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
        let stray = libc::dup2(fd, 777);
        libc::close(fd);
        stray
    };
    assert_eq!(stray, 777);
    // Straight to stdout: a pipeline would hold a pipe open in the shell while `ls` looks.
    let list = "ls -1 /proc/$$/fd; exit 0";
    for cgroups in [true, false] {
        let sup = supervisor_with(&s, cgroups);
        // With cgroups, the first step through a ready launcher where the host has a pool.
        let until = Instant::now() + Duration::from_secs(5);
        while sup.launchers().0 < sup.launchers().1 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut sp = spec(&s, "fds", list, Limits::default());
        sp.steps.push(sp.steps[0].clone());
        let id = sup.launch(sp).unwrap();
        let rec = sup.wait(id).await.unwrap();
        assert_eq!(rec.reason, Reason::Exited, "{rec:?}");
        assert_eq!(
            rec.stdout_tail,
            ["0", "1", "2", "0", "1", "2"],
            "cgroups {cgroups}: {rec:?}"
        );
        drop(sup);
    }
    // SAFETY: `stray` is the descriptor this test made above and nothing else owns.
    unsafe { libc::close(stray) };
    assert_none_left("fds");
}

/// The directories of the cgroups that hold `pid` under a supervisor's base group
/// (`.../symbiont-<pid>-<n>/<run group>`), one per hierarchy, from /proc/PID/cgroup and the
/// mounts.
fn run_group_dirs(pid: i32) -> Vec<PathBuf> {
    let Ok(own) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = format!("symbiont-{}-", std::process::id());
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next().unwrap_or(""), parts.next());
        let Some(path) = path else { continue };
        // Only a group below this process's supervisors' base groups.
        let comps: Vec<&str> = path.split('/').collect();
        let Some(i) = comps.iter().position(|c| c.starts_with(&base)) else {
            continue;
        };
        if i + 1 >= comps.len() {
            continue;
        }
        for m in mounts.lines() {
            let Some((left, right)) = m.split_once(" - ") else {
                continue;
            };
            let f: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            let fits = match r.first() {
                Some(&"cgroup2") => ctrls.is_empty(),
                Some(&"cgroup") => r
                    .get(2)
                    .is_some_and(|o| ctrls.split(',').all(|c| o.split(',').any(|x| x == c))),
                _ => false,
            };
            if fits && f.len() > 4 {
                let rel = path.strip_prefix(f[3]).unwrap_or(path);
                dirs.push(PathBuf::from(f[4]).join(rel.trim_start_matches('/')));
                break;
            }
        }
    }
    dirs
}

/// `shutdown()` of many running agents (some trapping TERM, some with children, one with a
/// `setsid` daemon) returns only once every process of every run is dead and every run's
/// cgroup is removed, with each record saying the operator killed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_of_many_runs_leaves_no_process_and_no_cgroup() {
    const AGENT: &str = "Fleet";
    const RUNS: usize = 50;
    let s = Scratch::new("lib-shutdown");
    let sup = supervisor(&s);
    let kinds = [
        // Plain, ends on TERM.
        ("echo ready; exec sleep 300", 1),
        // Ignores TERM: KILL after the grace.
        ("trap '' TERM; echo ready; while :; do sleep 0.05; done", 2),
        // Children, one of them ignoring TERM.
        (
            "sleep 300 & bash -c \"trap '' TERM; echo ready; exec sleep 300\" & wait",
            3,
        ),
        // A daemon outside the process group, and a main process that ignores TERM.
        (
            "(setsid sleep 300 &); trap '' TERM; echo ready; while :; do sleep 0.05; done",
            3,
        ),
        // Ends slowly on TERM, inside the grace.
        (
            "trap 'sleep 0.2; exit 3' TERM; echo ready; sleep 300 & wait",
            2,
        ),
    ];
    let mut ids = Vec::new();
    for i in 0..RUNS {
        let (script, _) = kinds[i % kinds.len()];
        ids.push(
            sup.launch(spec(&s, AGENT, script, Limits::default()))
                .unwrap(),
        );
    }
    for (i, &id) in ids.iter().enumerate() {
        let procs = kinds[i % kinds.len()].1;
        assert!(
            wait_state(&sup, id, |st| st.stdout.lock().unwrap().line_count >= 1
                && st.processes >= procs)
            .await,
            "run {id} ({}) never got ready",
            kinds[i % kinds.len()].0
        );
    }
    let pids = agent_pids(AGENT);
    assert!(pids.len() >= RUNS, "only {} agent processes", pids.len());
    // Where cgroups hold the runs, find every one of their groups now.
    let mut groups: Vec<PathBuf> = pids.iter().flat_map(|&p| run_group_dirs(p)).collect();
    groups.sort();
    groups.dedup();
    if sup.mechanisms().iter().any(|m| m.starts_with("cgroup")) {
        assert!(
            groups.len() >= RUNS,
            "only {} run groups found: {groups:?}",
            groups.len()
        );
    }
    assert!(groups.iter().all(|g| g.is_dir()), "{groups:?}");

    let records = sup.shutdown().await;

    // At once, not eventually: shutdown() has returned.
    let left = agent_pids(AGENT);
    for &p in &left {
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    assert!(left.is_empty(), "processes left after shutdown(): {left:?}");
    let kept: Vec<&PathBuf> = groups.iter().filter(|g| g.exists()).collect();
    assert!(kept.is_empty(), "cgroups left after shutdown(): {kept:?}");
    assert_eq!(records.len(), RUNS);
    for r in &records {
        assert_eq!(r.reason, Reason::KilledByOperator, "{r:?}");
        assert_eq!(r.killed_by, Some(Actor::Operator), "{r:?}");
    }
    drop(sup);
    assert_none_left(AGENT);
}
