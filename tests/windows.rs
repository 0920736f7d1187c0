//! Windows: job objects, the watchdog and the allowlist, run for real. In CI these run under
//! Wine (`scripts/windows-env`, then `cargo test --target x86_64-pc-windows-gnu --test windows`).
//!
//! The agents are real Windows programs: `cmd.exe` and `ping.exe` from the system directory,
//! and this very test binary, which acts as an agent when `SYMBIONT_WIN_HELPER` is set (see
//! `helper_agent`). Every test checks that no process of its agents is left.
//!
//! What differs on real Windows (noted where it matters): Wine accepts the job's memory and
//! CPU-time limits without enforcing them, so here the supervisor's watchdog does that killing;
//! on Windows the job refuses the allocation first and the record says the kernel acted.
#![cfg(windows)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use symbiont::supervisor::Limits;
use symbiont::supervisor::{
    Actor, Reason, RunRecord, RunSpec, Step, Supervisor, SupervisorOptions,
};
use symbiont::tier::SecurityTier;

/// This binary as an agent: `alloc:MB` touches MB of memory then waits; `sleep:SECS` waits;
/// `tick:N` prints a line every 50 ms, N times.
#[test]
fn helper_agent() {
    let Ok(mode) = std::env::var("SYMBIONT_WIN_HELPER") else {
        return;
    };
    let (what, n) = mode.split_once(':').unwrap_or((mode.as_str(), "0"));
    let n: u64 = n.parse().unwrap_or(0);
    println!("helper {what} {n} pid {}", std::process::id());
    if what == "tick" {
        use std::io::Write;
        for i in 0..n {
            println!("tick {i}");
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    let mut keep: Vec<Vec<u8>> = Vec::new();
    if what == "alloc" {
        for _ in 0..n {
            // One MiB at a time, every page written, so it is resident.
            keep.push(vec![0x5a; 1 << 20]);
        }
        println!("allocated {n} MiB");
    }
    std::thread::sleep(Duration::from_secs(if what == "sleep" { n } else { 60 }));
    std::hint::black_box(&keep);
}

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "symbiont-win-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Scratch { dir }
    }

    fn supervisor(&self) -> Supervisor {
        let mut opts = SupervisorOptions::from_config(&symbiont::Config::default());
        opts.data_dir = self.dir.join("data");
        opts.audit_log = self.dir.join("data").join("audit.jsonl");
        opts.refresh = Duration::from_millis(100);
        Supervisor::new(opts).expect("supervisor")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The agent's environment: the Windows defaults of `env_passthrough` plus `extra`.
fn env(extra: &[(&str, String)]) -> Vec<(String, String)> {
    let host = |k: &str| std::env::var(k).ok();
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    symbiont::policy::environment(
        &symbiont::config::default_env_passthrough(),
        &host,
        &extra,
        &[],
    )
}

fn system_program(name: &str) -> PathBuf {
    symbiont::policy::lookup(name, std::env::var_os("PATH").as_deref())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

fn spec(agent: &str, program: PathBuf, argv: Vec<String>, cwd: &Path, limits: Limits) -> RunSpec {
    RunSpec {
        agent: agent.into(),
        trigger: "start".into(),
        tier: SecurityTier::None,
        steps: vec![Step { program, argv }],
        cwd: cwd.to_path_buf(),
        env: env(&[]),
        limits,
        enforce_limits: true,
        kill_grace: Duration::from_secs(2),
        image: None,
        network: false,
        sandbox: Default::default(),
        source: None,
    }
}

/// This test binary, running only `helper_agent` in `mode`.
fn helper(agent: &str, mode: &str, cwd: &Path, limits: Limits) -> RunSpec {
    let exe = std::env::current_exe().unwrap();
    let argv = ["helper", "helper_agent", "--exact", "--nocapture"]
        .map(String::from)
        .to_vec();
    let mut s = spec(agent, exe, argv, cwd, limits);
    s.env = env(&[("SYMBIONT_WIN_HELPER", mode.to_string())]);
    s
}

fn alive(pid: i32) -> bool {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    const STILL_ACTIVE: u32 = 259;
    // SAFETY: OpenProcess returns a handle this function owns and closes once; `code` is a
    // live local the call writes.
    unsafe {
        let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid as u32);
        if h.is_null() {
            return false;
        }
        let mut code = 0;
        let ok = GetExitCodeProcess(h, &mut code) != 0;
        CloseHandle(h);
        ok && code == STILL_ACTIVE
    }
}

/// Fails if any of `pids` is still alive 3 s from now.
fn assert_gone(pids: &[i32]) {
    let until = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// Waits until the run's sampled tree has `n` processes (one named `name_has` among them)
/// and returns their pids.
async fn wait_for_tree(sup: &Supervisor, id: u64, n: usize, name_has: &str) -> Vec<i32> {
    // A liveness bound, not a speed figure: a cold Wine (its wineserver and the first start of
    // a system program such as ping.exe) took more than 20 s once on a loaded CI machine.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let st = sup.status(id).expect("status");
        let names: Vec<String> = st.procs.iter().map(|p| p.name.to_lowercase()).collect();
        if st.procs.len() >= n && names.iter().any(|x| x.contains(name_has)) {
            return st.procs.iter().map(|p| p.pid).collect();
        }
        assert!(
            Instant::now() < until,
            "the tree never reached {n} processes with {name_has}: {names:?} (state {:?}, stderr {:?})",
            st.state,
            sup.tail(id, true)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_to_end(sup: &Supervisor, s: RunSpec) -> Arc<RunRecord> {
    let id = sup.launch(s).expect("launch");
    tokio::time::timeout(Duration::from_secs(60), sup.wait(id))
        .await
        .expect("the run ended within 60 s")
        .expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_kills_agent_over_its_memory_limit_with_reason_memory_limit() {
    let scratch = Scratch::new("mem");
    let sup = scratch.supervisor();
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        timeout: Some(Duration::from_secs(50)),
        ..Limits::default()
    };
    let s = helper("hog", "alloc:400", &scratch.dir.join("work"), limits);
    let id = sup.launch(s).expect("launch");
    let pid = sup.status(id).and_then(|s| s.pid);
    let rec = tokio::time::timeout(Duration::from_secs(60), sup.wait(id))
        .await
        .expect("ended")
        .expect("record");
    assert_eq!(
        rec.reason,
        Reason::MemoryLimit,
        "record: {rec:?}, stdout {:?}",
        rec.stdout_tail
    );
    // Under Wine the job's memory limit is not enforced: the watchdog saw the working set pass
    // 64 MiB and killed the job. On Windows the job refuses the allocation first (Kernel).
    assert!(
        matches!(rec.killed_by, Some(Actor::Watchdog) | Some(Actor::Kernel)),
        "{rec:?}"
    );
    assert!(rec.peak_memory_bytes > 64 << 20, "{rec:?}");
    assert!(rec.duration_secs < 40.0, "{rec:?}");
    if let Some(p) = pid.or(rec.pid) {
        assert_gone(&[p]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_agent_with_reason_timeout() {
    let scratch = Scratch::new("timeout");
    let sup = scratch.supervisor();
    let limits = Limits {
        timeout: Some(Duration::from_secs(2)),
        ..Limits::default()
    };
    let s = helper("sleeper", "sleep:100", &scratch.dir.join("work"), limits);
    let rec = run_to_end(&sup, s).await;
    assert_eq!(rec.reason, Reason::Timeout, "{rec:?}");
    assert_eq!(rec.killed_by, Some(Actor::Timeout));
    assert!(
        rec.duration_secs >= 1.9 && rec.duration_secs < 10.0,
        "{rec:?}"
    );
    assert_gone(&[rec.pid.expect("pid")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_kill_of_cmd_takes_its_ping_grandchild() {
    let scratch = Scratch::new("tree");
    let sup = scratch.supervisor();
    let cmd = system_program("cmd");
    let argv = ["cmd", "/C", "ping -n 120 127.0.0.1 > NUL"]
        .map(String::from)
        .to_vec();
    let s = spec(
        "pinger",
        cmd,
        argv,
        &scratch.dir.join("work"),
        Limits::default(),
    );
    let id = sup.launch(s).expect("launch");
    let pids = wait_for_tree(&sup, id, 2, "ping").await;
    let started = Instant::now();
    assert!(sup.kill(id));
    let rec = sup.wait(id).await.expect("record");
    assert_eq!(rec.reason, Reason::KilledByOperator, "{rec:?}");
    assert_eq!(rec.killed_by, Some(Actor::Operator));
    // TERM on Windows terminates the job at once: no grace period to wait out.
    assert!(started.elapsed() < Duration::from_secs(2), "{rec:?}");
    assert!(rec.processes >= 2, "{rec:?}");
    assert_gone(&pids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmd_code_runs_as_written_and_output_is_logged() {
    let scratch = Scratch::new("out");
    let sup = scratch.supervisor();
    let cmd = system_program("cmd");
    // What `exec --code` builds with default_executable = "cmd": quotes and `&` reach cmd as is.
    let argv = symbiont::policy::code_argv("cmd", "echo \"quoted words\" & echo second 1>&2");
    let s = spec(
        "echo",
        cmd,
        argv,
        &scratch.dir.join("work"),
        Limits::default(),
    );
    let rec = run_to_end(&sup, s).await;
    assert_eq!(rec.reason, Reason::Exited, "{rec:?}");
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    let out = std::fs::read_to_string(&rec.stdout_log).unwrap();
    let err = std::fs::read_to_string(&rec.stderr_log).unwrap();
    assert!(out.contains("\"quoted words\""), "stdout: {out:?}");
    assert!(err.contains("second"), "stderr: {err:?}");
    assert!(
        rec.stdout_tail.iter().any(|l| l.contains("quoted words")),
        "{rec:?}"
    );
    // A failing command's exit code is the run's.
    let s = spec(
        "fail",
        system_program("cmd"),
        symbiont::policy::code_argv("cmd", "exit 7"),
        &scratch.dir.join("work"),
        Limits::default(),
    );
    let rec = run_to_end(&sup, s).await;
    assert_eq!(rec.exit_code, Some(7), "{rec:?}");
    assert_eq!(rec.reason, Reason::Exited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_suspends_the_tree_and_resume_continues_it() {
    use symbiont::supervisor::{Control, RunState};
    let scratch = Scratch::new("pause");
    let sup = scratch.supervisor();
    let s = helper(
        "ticker",
        "tick:60",
        &scratch.dir.join("work"),
        Limits::default(),
    );
    let id = sup.launch(s).expect("launch");
    let lines = |sup: &Supervisor| sup.tail(id, false).map_or(0, |t| t.len());
    let until = Instant::now() + Duration::from_secs(20);
    while lines(&sup) < 5 {
        assert!(Instant::now() < until, "the ticker never ticked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sup.control(id, Control::Pause));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sup.status(id).unwrap().state, RunState::Paused);
    let before = lines(&sup);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Twenty ticks were due meanwhile: none came, every thread was suspended.
    assert_eq!(lines(&sup), before, "the agent ran while paused");
    assert!(sup.control(id, Control::Resume));
    let rec = sup.wait(id).await.expect("record");
    assert_eq!(rec.reason, Reason::Exited, "{rec:?}");
    assert_eq!(rec.exit_code, Some(0), "{rec:?}");
    assert!(
        rec.stdout_tail.iter().any(|l| l.contains("tick 59")),
        "{rec:?}"
    );
    assert_gone(&[rec.pid.unwrap()]);
}

#[test]
fn supervisor_killed_hard_takes_its_agents_with_it() {
    let scratch = Scratch::new("exit");
    let cfg = scratch.dir.join("symbiont.toml");
    let lit = |p: &Path| p.display().to_string().replace('\'', "''");
    std::fs::write(
        &cfg,
        format!(
            "[security]\nallow_native_execution = true\n\n[native_execution]\n\
             allowed_executables = [\"cmd\"]\nworking_directory = '{}'\n\n\
             [supervisor]\ndata_dir = '{}'\n",
            lit(&scratch.dir.join("work")),
            lit(&scratch.dir.join("data")),
        ),
    )
    .unwrap();
    let mut sup = std::process::Command::new(env!("CARGO_BIN_EXE_symbiont"))
        .args(["exec", "--native", "--config"])
        .arg(&cfg)
        .args(["--", "cmd", "/C", "ping -n 120 127.0.0.1 > NUL"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(scratch.dir.join("stderr.txt")).unwrap())
        .spawn()
        .unwrap();
    let me = sup.id() as i32;
    let until = Instant::now() + Duration::from_secs(20);
    let agents = loop {
        let d: Vec<i32> = symbiont::sampler::sys::descendants(me)
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        if d.len() >= 2 {
            break d;
        }
        assert!(
            Instant::now() < until,
            "the agent tree never appeared: {d:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // TerminateProcess: no clean-up code of the supervisor runs, as with SIGKILL on Unix.
    sup.kill().unwrap();
    let _ = sup.wait();
    // The job's last handle closed with the supervisor: kill-on-close ended every agent.
    assert_gone(&agents);
}

#[test]
fn allowlist_resolves_pathext_and_refuses_what_it_should() {
    use symbiont::policy::{Allowlist, PolicyError};
    let path = std::env::var_os("PATH");
    let scratch = Scratch::new("allow");
    let cwd = scratch.dir.join("work");
    let list = Allowlist::new(&["cmd".to_string()], path.as_deref());
    // A bare name takes its PATHEXT extension; case does not matter.
    let cmd = list.resolve("cmd", &cwd).expect("cmd is allowed");
    assert!(
        cmd.to_string_lossy().to_lowercase().ends_with("cmd.exe"),
        "{cmd:?}"
    );
    list.resolve("CMD.EXE", &cwd).expect("CMD.EXE is cmd");
    let without_ext = cmd.with_extension("");
    list.resolve(without_ext.to_str().unwrap(), &cwd)
        .expect("the absolute path without .exe is cmd too");
    // Not listed.
    let e = list.resolve("ping", &cwd).unwrap_err();
    assert!(matches!(e, PolicyError::NotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("not an allowed executable"), "{e}");
    // A copy of an allowed program elsewhere is a different program.
    let copy = cwd.join("cmd.exe");
    std::fs::copy(&cmd, &copy).unwrap();
    let e = list.resolve(copy.to_str().unwrap(), &cwd).unwrap_err();
    assert!(matches!(e, PolicyError::NotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("not an allowed executable"), "{e}");
    let e = list.resolve(".\\cmd", &cwd).unwrap_err();
    assert!(matches!(e, PolicyError::NotAllowed { .. }), "{e}");
    assert!(e.to_string().contains("not an allowed executable"), "{e}");
    // Not found at all.
    let e = list.resolve("no-such-program-here", &cwd).unwrap_err();
    assert!(matches!(e, PolicyError::NotOnPath { .. }), "{e}");
    assert!(e.to_string().contains("not found"), "{e}");
}

#[test]
fn default_working_directory_is_under_temp() {
    let d = symbiont::config::default_working_directory();
    assert_eq!(d, std::env::temp_dir().join("symbiont-native"));
    let passthrough = symbiont::config::default_env_passthrough();
    assert!(passthrough.iter().any(|v| v == "SystemRoot"));
}

#[test]
fn default_allowlist_runs_the_platforms_own_programs() {
    use symbiont::policy::Allowlist;
    let c = symbiont::config::Config::default();
    let n = &c.native_execution;
    assert_eq!(n.default_executable, "cmd");
    for name in ["cmd", "powershell", "python", "node"] {
        assert!(
            n.allowed_executables.iter().any(|a| a == name),
            "{name} is not in {:?}",
            n.allowed_executables
        );
    }
    // With no configuration, the default executable is found and allowed.
    let scratch = Scratch::new("default-allow");
    let list = Allowlist::new(&n.allowed_executables, std::env::var_os("PATH").as_deref());
    let cmd = list
        .resolve(&n.default_executable, &scratch.dir)
        .expect("the default executable resolves under the default allowlist");
    assert!(
        cmd.to_string_lossy().to_lowercase().ends_with("cmd.exe"),
        "{cmd:?}"
    );
}
