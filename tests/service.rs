//! The service (SPEC 2.8), driven as a user drives it: `run --detach` from one shell, `ps`,
//! `kill`, `logs`, `history` and `exec` from others, the service killed outright and started
//! again. Every test has its own service (its own `XDG_RUNTIME_DIR`) and checks that no agent
//! and no service is left.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    agent_pids, assert_none_left, live_processes, pids_with_cmdline, stderr, stdout, wait_for,
    Scratch,
};

/// A scratch directory whose service is stopped (SIGKILL if it must) when the test ends.
struct Desk {
    s: Scratch,
    cfg: PathBuf,
}

impl Desk {
    fn new(name: &str) -> Desk {
        let s = Scratch::new(&format!("svc-{name}"));
        let cfg = s.config("");
        Desk { s, cfg }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.s.run(args)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        self.s.command(args)
    }

    fn socket(&self) -> PathBuf {
        self.s.path("run/symbiont/api.sock")
    }

    /// `symbiont serve` in the foreground of a child, once its socket answers.
    fn serve(&self) -> Child {
        let mut child = self
            .cmd(&["serve", "--config", self.cfg.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let up = wait_for(
            || std::os::unix::net::UnixStream::connect(self.socket()).is_ok(),
            Duration::from_secs(10),
        );
        if !up {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("the service never answered: {err}");
        }
        child
    }

    /// `exec` started as from another shell: `echo MARKER; sleep SECS`, once its first line
    /// has come.
    fn exec_elsewhere(&self, marker: &str, secs: u32) -> Child {
        let script = format!("echo {marker}; sleep {secs}");
        let mut child = self
            .cmd(&["exec", "--native", "--", "bash", "-c", &script])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = vec![0u8; marker.len() + 1];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut line)
            .unwrap();
        child
    }

    fn agents(&self, name: &str, body: &str) -> PathBuf {
        self.s.write(
            &format!("{name}.dsl"),
            &format!(
                "agent {name} {{\n  security {{ tier: None }}\n  on start {{ execute_native(\"{body}\") }}\n}}\n"
            ),
        )
    }

    fn ps(&self) -> Vec<serde_json::Value> {
        let o = self.run(&["ps", "--json"]);
        assert_eq!(o.status.code(), Some(0), "ps: {}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The pid of this desk's service, from its lock file.
    fn service_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.s.path("run/symbiont/service.lock"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn service_alive(&self) -> bool {
        self.service_pid().is_some_and(|p| {
            live_processes().iter().any(|(q, f)| {
                *q == p
                    && std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                        c.windows(5).any(|w| w == b"serve") && f.first().is_some_and(|s| s != "Z")
                    })
            })
        })
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        if self.service_alive() {
            let _ = self.run(&["shutdown"]);
        }
        if let Some(p) = self.service_pid().filter(|_| self.service_alive()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn state_of(runs: &[serde_json::Value], agent: &str) -> Vec<String> {
    runs.iter()
        .filter(|r| r["agent"] == agent)
        .map(|r| r["state"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The command lines (NUL-separated) of the daemons the agents leave.
const DAEMON_61: &[u8] = b"sleep\x0061.5";
const DAEMON_62: &[u8] = b"sleep\x0062.5";

#[test]
fn detached_agents_outlive_their_client_and_are_listed_killed_and_logged_from_other_shells() {
    let d = Desk::new("detach");
    let sleeper = d.agents("SvcSleeper", "bash -c 'echo sleeper up; sleep 60'");
    // A daemon that double-forks out of its session: the kill must still find it.
    let daemon = d.agents(
        "SvcDaemon",
        "bash -c '(setsid sleep 61.5 &); echo daemon up; sleep 60'",
    );
    let t0 = Instant::now();
    let o = d.run(&[
        "run",
        sleeper.to_str().unwrap(),
        daemon.to_str().unwrap(),
        "--detach",
        "--native",
        "--config",
        d.cfg.to_str().unwrap(),
    ]);
    let took = t0.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(took < Duration::from_secs(5), "run --detach took {took:?}");
    // The client has returned; its agents run on.
    assert!(wait_for(
        || !agent_pids("SvcSleeper").is_empty() && pids_with_cmdline(DAEMON_61).len() == 1,
        Duration::from_secs(5)
    ));
    assert!(d.service_alive(), "no service after run --detach");
    let runs = d.ps();
    assert_eq!(state_of(&runs, "SvcSleeper"), ["running"], "{runs:?}");
    assert_eq!(state_of(&runs, "SvcDaemon"), ["running"], "{runs:?}");
    for r in &runs {
        assert!(r["pid"].as_i64().is_some_and(|p| p > 1), "{r}");
        assert!(r["run_id"].as_u64().is_some(), "{r}");
    }
    // Logs of a live run, from another shell.
    assert!(wait_for(
        || stdout(&d.run(&["logs", "SvcSleeper"])).contains("sleeper up"),
        Duration::from_secs(5)
    ));
    // The whole tree of the daemon's agent, the escaped grandchild included.
    let o = d.run(&["kill", "SvcDaemon"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        wait_for(
            || pids_with_cmdline(DAEMON_61).is_empty(),
            Duration::from_secs(5)
        ),
        "the double-forked daemon survived the kill"
    );
    assert_none_left("SvcDaemon");
    assert!(wait_for(
        || state_of(&d.ps(), "SvcDaemon") == ["exited"],
        Duration::from_secs(5)
    ));
    let runs = d.ps();
    let daemon_run = runs.iter().find(|r| r["agent"] == "SvcDaemon").unwrap();
    assert_eq!(daemon_run["reason"], "killed_by_operator", "{daemon_run}");
    // A kill of something that is not there says so.
    let o = d.run(&["kill", "NoSuchAgent"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("NoSuchAgent"), "{}", stderr(&o));
    // Shutdown: every agent stopped, then the service; nothing left.
    let o = d.run(&["shutdown"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(wait_for(|| !d.service_alive(), Duration::from_secs(10)));
    assert_none_left("SvcSleeper");
    assert!(!d.socket().exists(), "the socket was left behind");
    // With no service, the clients say so.
    let o = d.run(&["ps"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no symbiont service"), "{}", stderr(&o));
}

#[test]
fn the_socket_is_private_and_a_second_service_is_refused() {
    let d = Desk::new("second");
    let mut first = d.serve();
    let dir = d.s.path("run/symbiont");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&d.socket()), 0o600);
    let o = d
        .cmd(&["serve", "--config", d.cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already runs for this user"),
        "{}",
        stderr(&o)
    );
    // The first one still answers.
    assert_eq!(d.run(&["ps"]).status.code(), Some(0));
    let o = d.run(&["shutdown"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = first.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}

#[test]
fn a_service_killed_outright_takes_every_agent_and_the_next_one_keeps_the_history() {
    let d = Desk::new("sigkill");
    let mut service = d.serve();
    let quick = d.agents("SvcQuick", "bash -c 'echo quick output; exit 3'");
    let slow = d.agents("SvcSlow", "bash -c '(setsid sleep 62.5 &); sleep 60'");
    for f in [&quick, &slow] {
        let o = d.run(&["run", f.to_str().unwrap(), "--detach", "--native"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    assert!(wait_for(
        || state_of(&d.ps(), "SvcQuick") == ["exited"] && pids_with_cmdline(DAEMON_62).len() == 1,
        Duration::from_secs(5)
    ));
    let first_ids: Vec<u64> = d.ps().iter().filter_map(|r| r["run_id"].as_u64()).collect();
    service.kill().unwrap();
    service.wait().unwrap();
    let t0 = Instant::now();
    assert!(
        wait_for(
            || agent_pids("SvcSlow").is_empty() && pids_with_cmdline(DAEMON_62).is_empty(),
            Duration::from_secs(1)
        ),
        "agents outlived the service by more than a second: {:?}",
        agent_pids("SvcSlow")
    );
    eprintln!("agents gone {:?} after the service's SIGKILL", t0.elapsed());
    // A new service starts cleanly (the socket of the dead one is replaced) and still has the
    // finished run's record and logs.
    let mut again = d.serve();
    let o = d.run(&["history", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hist: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    let quick_rec = hist
        .iter()
        .find(|r| r["agent"] == "SvcQuick")
        .unwrap_or_else(|| panic!("no record of SvcQuick in {hist:?}"));
    assert_eq!(quick_rec["exit_code"], 3);
    let o = d.run(&["logs", "SvcQuick"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "quick output\n");
    // Run ids go on past the earlier service's.
    let o = d.run(&["run", quick.to_str().unwrap(), "--detach", "--native"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let new_id: u64 = stdout(&o)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        first_ids.iter().all(|&i| i < new_id),
        "run id {new_id} reused (earlier: {first_ids:?})"
    );
    assert_eq!(d.run(&["shutdown"]).status.code(), Some(0));
    again.wait().unwrap();
    assert_none_left("SvcQuick");
}

/// `exec` through the service and standalone: a wrapper scripts rely on.
fn exec_cases(d: &Desk, through_service: bool) {
    let mode: &[&str] = if through_service {
        &[]
    } else {
        &["--standalone"]
    };
    let exec = |extra: &[&str], cmd: &[&str]| {
        let mut args = vec!["exec", "--native", "--config", d.cfg.to_str().unwrap()];
        args.extend_from_slice(mode);
        args.extend_from_slice(extra);
        args.push("--");
        args.extend_from_slice(cmd);
        d.cmd(&args)
    };
    let label = if through_service {
        "service"
    } else {
        "standalone"
    };
    // Output streams as it is written.
    let mut child = exec(&[], &["bash", "-c", "echo first; sleep 3; echo second"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    out.read_exact(&mut first).unwrap();
    let at = t0.elapsed();
    assert_eq!(&first, b"first\n");
    assert!(
        at < Duration::from_secs(1),
        "{label}: first line after {at:?}"
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // stdin reaches the agent; its own exit code comes back.
    let mut child = exec(&[], &["bash", "-c", "read x; echo got $x; exit 7"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "got hello\n", "{label}");
    assert_eq!(o.status.code(), Some(7), "{label}");
    let code = |extra: &[&str], cmd: &[&str]| {
        let o = exec(extra, cmd).stdin(Stdio::null()).output().unwrap();
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        o.status.code()
    };
    assert_eq!(
        code(&["--timeout", "1"], &["bash", "-c", "sleep 10"]),
        Some(124),
        "{label}: timeout"
    );
    assert_eq!(
        code(
            &["--max-memory", "64"],
            &["python3", "-c", "b = bytearray(400 << 20)"]
        ),
        Some(137),
        "{label}: memory limit"
    );
    assert_eq!(
        code(&[], &["bash", "-c", "kill -TERM $$"]),
        Some(143),
        "{label}: own SIGTERM"
    );
    assert_eq!(
        code(&[], &["perl", "-e", "1"]),
        Some(126),
        "{label}: not allowed"
    );
    assert_eq!(
        code(&[], &["no-such-program-here"]),
        Some(127),
        "{label}: not found"
    );
}

#[test]
fn exec_standalone_streams_passes_stdin_and_exits_like_timeout() {
    let d = Desk::new("exec-standalone");
    exec_cases(&d, false);
    assert!(!d.service_alive());
}

#[test]
fn exec_through_the_service_streams_passes_stdin_exits_like_timeout_and_shows_in_ps() {
    let d = Desk::new("exec-service");
    let mut service = d.serve();
    exec_cases(&d, true);
    // Every one of those that policy did not refuse ran in the service.
    let runs = d.ps();
    let execs = runs.iter().filter(|r| r["agent"] == "exec").count();
    assert_eq!(execs, 5, "exec runs in ps: {runs:?}");
    // One started in another shell is in ps while it runs, and a kill from a third ends it.
    let mut child = d.exec_elsewhere("svc-exec-marker", 30);
    let runs = d.ps();
    let live = runs
        .iter()
        .find(|r| {
            r["state"] == "running"
                && r["argv"][2]
                    .as_str()
                    .is_some_and(|a| a.contains("svc-exec-marker"))
        })
        .unwrap_or_else(|| panic!("the exec is not in ps: {runs:?}"));
    let id = live["run_id"].as_u64().unwrap().to_string();
    assert_eq!(d.run(&["kill", &id]).status.code(), Some(0));
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(143), "the killed exec's status");
    assert_eq!(d.run(&["shutdown"]).status.code(), Some(0));
    service.wait().unwrap();
}

#[test]
fn exec_to_a_slow_reader_delivers_every_byte_with_bounded_memory() {
    const SIZE: u64 = 256 << 20;
    let d = Desk::new("exec-slow");
    let mut service = d.serve();
    for standalone in [true, false] {
        let mut args = vec!["exec", "--native"];
        if standalone {
            args.push("--standalone");
        }
        args.extend(["--", "bash", "-c", "head -c 268435456 /dev/zero"]);
        let mut child = d
            .cmd(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The reader sleeps first: the agent must wait, not the supervisor buffer.
        std::thread::sleep(Duration::from_secs(2));
        let holder = if standalone { child.id() } else { service.id() };
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            match out.read(&mut buf).unwrap() {
                0 => break,
                k => n += k as u64,
            }
        }
        let peak = status_kib(holder, "VmHWM:");
        assert_eq!(child.wait().unwrap().code(), Some(0));
        assert_eq!(n, SIZE, "standalone={standalone}: bytes arrived");
        assert!(
            peak < 64 << 10,
            "standalone={standalone}: the supervisor's peak RSS was {peak} KiB"
        );
        eprintln!("standalone={standalone}: peak RSS {peak} KiB for 256 MiB to a slow reader");
    }
    assert_eq!(d.run(&["shutdown"]).status.code(), Some(0));
    service.wait().unwrap();
}

#[test]
fn attach_shows_an_exec_from_another_shell_kills_it_with_capital_x_and_quits_leaving_the_rest() {
    let d = Desk::new("attach");
    let mut service = d.serve();
    let keep = d.agents("SvcKeep", "bash -c 'sleep 60'");
    let o = d.run(&["run", keep.to_str().unwrap(), "--detach", "--native"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // An exec started in another shell.
    let mut exec = d.exec_elsewhere("attach-exec", 60);
    let mut p = common::pty::Pty::spawn(d.cmd(&["attach"]), 160, 40);
    p.wait_for("SvcKeep", Duration::from_secs(10));
    p.wait_for("▸ exec", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    // Select the exec's row with a click, then kill its tree at once.
    let (row, _) = p.line_with("▸ exec").unwrap();
    p.send(&format!("\x1b[<0;5;{}M", row + 1));
    std::thread::sleep(Duration::from_millis(300));
    p.send("X");
    let st = {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = exec.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < until,
                "the exec was not killed:\n{}",
                p.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(st.code(), Some(137), "the exec's status after X");
    p.wait_for("killed by operator", Duration::from_secs(10));
    // Quit: the dialog offers to leave the agents; leaving is the default.
    p.send("q");
    p.wait_for("leave them", Duration::from_secs(5));
    p.send("\r");
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        state_of(&d.ps(), "SvcKeep"),
        ["running"],
        "quitting stopped an agent"
    );
    assert_eq!(d.run(&["shutdown"]).status.code(), Some(0));
    service.wait().unwrap();
    assert_none_left("SvcKeep");
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Waits until the service holds no live run (every launched one has ended).
fn settle(d: &Desk) {
    assert!(
        wait_for(
            || d.ps().iter().all(|r| r["state"] == "exited"),
            Duration::from_secs(30)
        ),
        "runs never ended"
    );
}

#[test]
fn ten_thousand_short_runs_leave_the_service_as_big_as_after_the_first_thousand() {
    let mut d = Desk::new("tenk");
    d.cfg = d.s.supervisor_config("max_log_mb = 1");
    let mut service = d.serve();
    let pid = service.id();
    let agents: String = (0..100)
        .map(|i| format!("agent Short{i} {{ security {{ tier: None }} on start {{ execute_native(\"sh -c true\") }} }}\n"))
        .collect();
    let file = d.s.write("short.dsl", &agents);
    let batch = |n: usize| {
        for _ in 0..n {
            let o = d.run(&["run", file.to_str().unwrap(), "--detach", "--native"]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        settle(&d);
        // The service gives freed memory back every 5 s.
        std::thread::sleep(Duration::from_secs(6));
    };
    // Warm-up: the event buffer, the allocator's pools and the code the runs take.
    batch(10);
    let (rss0, fds0) = (status_kib(pid, "VmRSS:"), open_fds(pid));
    batch(90);
    let (rss1, fds1) = (status_kib(pid, "VmRSS:"), open_fds(pid));
    eprintln!("after 1,000 runs: {rss0} KiB, {fds0} fds; after 10,000: {rss1} KiB, {fds1} fds");
    assert!(rss1 * 10 <= rss0 * 11, "RSS grew from {rss0} to {rss1} KiB");
    assert!(
        fds1 * 10 <= fds0 * 11,
        "descriptors grew from {fds0} to {fds1}"
    );
    // ps holds the newest runs only; history has them all.
    assert!(d.ps().len() <= 100);
    let o = d.run(&["history", "--json"]);
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(all.len(), 10_000);
    // A print loop: its log stops growing at the cap (1 MB, stdout.log and its .1).
    let chatty = d.agents(
        "SvcChatty",
        "bash -c 'while :; do echo chatty-chatty-chatty-chatty; done'",
    );
    let o = d.run(&["run", chatty.to_str().unwrap(), "--detach", "--native"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let runs = d.ps();
    let run = runs.iter().find(|r| r["agent"] == "SvcChatty").unwrap();
    let dir = PathBuf::from(run["stdout_log"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let on_disk = || -> u64 {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".log"))
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum()
    };
    std::thread::sleep(Duration::from_secs(2));
    let a = on_disk();
    std::thread::sleep(Duration::from_secs(1));
    let b = on_disk();
    assert!(
        a <= (1 << 20) + 400 && b <= (1 << 20) + 400,
        "logs at {a} then {b} bytes"
    );
    assert_eq!(d.run(&["kill", "SvcChatty"]).status.code(), Some(0));
    assert_eq!(d.run(&["shutdown"]).status.code(), Some(0));
    service.wait().unwrap();
    assert_none_left("SvcChatty");
}

/// The library's `Client` does what the commands do, for a Rust program driving the service.
#[test]
fn a_rust_program_drives_the_service_through_the_client() {
    use symbiont::service::api::{AgentText, KillRequest, LaunchFlags, LaunchRequest};
    let d = Desk::new("client");
    let mut service = d.serve();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = symbiont::service::Client::at(d.socket());
        let h = client.health().await.unwrap();
        assert_eq!(h.pid, service.id());
        let req = LaunchRequest {
            files: vec![AgentText {
                path: "lib.dsl".into(),
                text: "agent LibAgent { security { tier: None } on start { execute_native(\"bash -c 'echo from-lib; sleep 60'\") } }".into(),
            }],
            flags: LaunchFlags {
                native: true,
                ..Default::default()
            },
            env: std::env::vars().collect(),
            ..Default::default()
        };
        let launched = client.launch(&req).await.unwrap();
        assert_eq!(launched.len(), 1);
        let id = launched[0].run_id;
        let mut out = Vec::new();
        for _ in 0..100 {
            let mut frames = client.logs(&id.to_string(), "stdout", false).await.unwrap();
            out.clear();
            while let Some(f) = frames.next().await {
                out.extend_from_slice(&f.unwrap().1);
            }
            if !out.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(out, b"from-lib\n");
        let runs = client.list().await.unwrap();
        assert!(runs.iter().any(|r| r.run_id == id && r.pid.is_some()));
        // An attached dashboard's view: every row first, then only what changed.
        let all = client.dashboard(None, false, None).await.unwrap();
        assert_eq!(all.ids, vec![id]);
        assert_eq!(all.rows.len(), 1);
        let mut stamp = all.stamp;
        let mut quiet = false;
        for _ in 0..40 {
            let v = client.dashboard(None, false, Some(stamp)).await.unwrap();
            assert_eq!(v.ids, vec![id]);
            if v.rows.is_empty() {
                quiet = true;
                break;
            }
            stamp = v.stamp;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(quiet, "an idle run was sent again and again");
        let k = client.kill("LibAgent", &KillRequest::default()).await.unwrap();
        assert_eq!(k.run_ids, vec![id]);
        // A refusal comes back typed.
        let e = client
            .kill("NoSuchAgent", &KillRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), Some(symbiont::service::api::ErrorKind::NotFound));
        let mut ended = false;
        for _ in 0..100 {
            let h = client.history(None).await.unwrap();
            if h.iter().any(|r| r.run_id == id) {
                ended = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ended, "the killed run has no record");
        let v = client.dashboard(None, false, Some(stamp)).await.unwrap();
        assert!(
            v.rows.iter().any(|r| r.id == id && !r.alive()),
            "the run's end did not come back as a change: {:?}",
            v.rows
        );
        client.shutdown().await.unwrap();
    });
    assert_eq!(service.wait().unwrap().code(), Some(0));
    assert_none_left("LibAgent");
}
