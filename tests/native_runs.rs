//! Native runs of the real binary: limits the kernel enforces, whole-tree kills, output,
//! environment policy and the seed's files as written.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const SEED_AGENT: &str = include_str!("fixtures/seed_agent.dsl");

fn agent(name: &str, body: &str) -> String {
    format!("agent {name} {{\n  security {{ tier: None }}\n{body}\n}}\n")
}

fn one(o: &std::process::Output) -> serde_json::Value {
    let r = records(o);
    assert_eq!(r.len(), 1, "{}", stdout(o));
    r[0].clone()
}

#[test]
fn seed_agent_runs_with_both_seed_configs() {
    for (i, cfg) in ["seed_option1.toml", "seed_full.toml"].iter().enumerate() {
        let s = Scratch::new(&format!("seed{i}"));
        // The seed's config verbatim; only the working directory differs, through the
        // seed's own environment variable, so parallel tests do not share it.
        let text = std::fs::read_to_string(format!(
            "{}/tests/fixtures/{cfg}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        s.write("config.toml", &text);
        s.write("agent.dsl", SEED_AGENT);
        s.write(
            "work/process.py",
            "import os\nprint('processed in', os.getcwd())\n",
        );
        let o = s
            .command(&["run", "agent.dsl", "--json"])
            .env("SYMBIONT_NATIVE_WORKING_DIR", s.work())
            .env("XDG_STATE_HOME", s.path("state"))
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{cfg}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        let r = one(&o);
        assert_eq!(r["agent"], "NativeWorker");
        assert_eq!(r["trigger"], "local_processing");
        assert_eq!(r["tier"], "None");
        assert_eq!(r["reason"], "exited");
        let line = r["stdout_tail"][0].as_str().unwrap().to_string();
        assert!(
            line.starts_with("processed in") && line.ends_with("/work"),
            "{line}"
        );
        // The seed's configs name no data directory: the XDG state one, not the cwd.
        assert!(s.path("state/symbiont/audit.jsonl").exists());
        assert!(!s.path("data").exists());
        assert_none_left("NativeWorker");
    }
}

#[test]
fn seed_cli_commands_work_as_written() {
    let s = Scratch::new("seedcli");
    s.config("");
    s.write("agent.dsl", SEED_AGENT);
    s.write("work/process.py", "print('ok')\n");
    // The config allows native; `--native` alone would too (tested in bad_input).
    for args in [
        vec!["run", "agent.dsl", "--native", "--headless"],
        vec!["run", "agent.dsl", "--sandbox-tier=none", "--headless"],
        vec![
            "run",
            "agent.dsl",
            "--native",
            "--max-memory=1024",
            "--max-cpu=2.0",
            "--timeout=300",
            "--headless",
        ],
    ] {
        let o = s.run(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}\n{}",
            stdout(&o),
            stderr(&o)
        );
        let out = stdout(&o);
        assert!(
            out.contains("launched  NativeWorker/local_processing"),
            "{out}"
        );
        assert!(out.contains("reason=exited"), "{out}");
        assert!(
            out.contains("AGENT") && out.contains("PEAK MEM"),
            "summary table missing: {out}"
        );
    }
}

#[test]
fn memory_hog_is_killed_with_reason_memory_limit_and_others_carry_on() {
    let s = Scratch::new("memhog");
    s.config("max_memory_mb = 256");
    let f = s.write(
        "a.dsl",
        &format!(
            "{}{}",
            agent(
                "MemHog",
                "  on start { execute_native(\"python3 -c 'import time; b = bytearray(1 << 30); time.sleep(30)'\") }"
            ),
            agent("Steady", "  on start { execute_native(\"sh -c 'sleep 1; echo steady done'\") }")
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let rs = records(&o);
    let hog = rs.iter().find(|r| r["agent"] == "MemHog").unwrap();
    assert_eq!(hog["reason"], "memory_limit", "{hog}");
    assert!(hog["duration_secs"].as_f64().unwrap() < 20.0);
    let steady = rs.iter().find(|r| r["agent"] == "Steady").unwrap();
    assert_eq!(steady["reason"], "exited");
    assert_eq!(steady["exit_code"], 0);
    assert_eq!(steady["stdout_tail"][0], "steady done");
    assert_none_left("MemHog");
    assert_none_left("Steady");
}

#[test]
fn sleep_past_its_timeout_ends_with_reason_timeout() {
    let s = Scratch::new("timeout");
    s.config("max_execution_time_seconds = 2");
    let f = s.write(
        "a.dsl",
        &agent(
            "Sleeper",
            "  on start { execute_native(\"sh -c 'sleep 100'\") }",
        ),
    );
    let t = Instant::now();
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let r = one(&o);
    assert_eq!(r["reason"], "timeout");
    assert_eq!(r["killed_by"], "timeout");
    let d = r["duration_secs"].as_f64().unwrap();
    assert!((1.9..6.0).contains(&d), "duration {d}");
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_none_left("Sleeper");
}

#[test]
fn agent_file_timeout_tightens_and_flag_overrides() {
    let s = Scratch::new("timeout2");
    s.config("");
    let f = s.write(
        "a.dsl",
        "agent Tight {\n security { tier: None }\n limits { timeout: 1500ms }\n on start { execute_native(\"sh -c 'sleep 30'\") }\n}\n",
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    let r = one(&o);
    assert_eq!(r["reason"], "timeout");
    assert!(r["duration_secs"].as_f64().unwrap() < 5.0);
    let o = s.run(&["run", f.to_str().unwrap(), "--json", "--timeout=1"]);
    let r = one(&o);
    assert_eq!(r["reason"], "timeout");
    assert!(r["duration_secs"].as_f64().unwrap() < 3.5);
    assert_none_left("Tight");
}

/// An agent that starts a setsid daemon through a double fork and a background child that
/// keeps stdout open, then exits. The run must end promptly and leave nothing.
const ESCAPER: &str = "bash -c '(setsid sh -c \"sleep 300\" &) ; sleep 300 & echo started; exit 0'";

#[test]
fn escaped_daemons_and_pipe_holders_die_when_the_agent_ends() {
    let s = Scratch::new("escape");
    s.config("");
    let f = s.write(
        "a.dsl",
        &agent(
            "Escaper",
            &format!(
                "  on start {{ execute_native(\"{}\") }}",
                ESCAPER.replace('"', "\\\"")
            ),
        ),
    );
    let t = Instant::now();
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    let r = one(&o);
    assert_eq!(r["stdout_tail"][0], "started");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "a background child holding stdout kept the run alive"
    );
    assert_none_left("Escaper");
}

#[test]
fn operator_kill_takes_the_whole_tree_including_setsid_daemons() {
    let s = Scratch::new("opkill");
    s.config("");
    let f = s.write(
        "a.dsl",
        &agent(
            "Spawner",
            "  on start { execute_native(\"bash -c '(setsid sleep 300 &); for i in 1 2 3; do sleep 300 & done; echo up; wait'\") }",
        ),
    );
    let mut child = s
        .command(&["run", f.to_str().unwrap(), "--headless"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("launched"), "{first}");
    assert!(
        wait_for(|| agent_pids("Spawner").len() >= 5, Duration::from_secs(5)),
        "tree never grew: {:?}",
        agent_pids("Spawner")
    );
    // The operator's kill from the headless client: SIGTERM to the supervisor stops every agent.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let all = rest.join("\n");
    assert!(all.contains("killed_by_operator"), "{all}");
    assert_none_left("Spawner");
}

#[test]
fn fork_bomb_is_contained_and_killed_with_reason_process_limit() {
    let s = Scratch::new("forkbomb");
    s.config("max_processes = 50");
    let f = s.write(
        "a.dsl",
        &agent(
            "Bomb",
            "  on start { execute_native(\"bash -c 'f() { f | f & }; f; sleep 60'\") }",
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let r = one(&o);
    assert_eq!(r["reason"], "process_limit", "{r}");
    assert!(r["processes"].as_u64().unwrap() <= 50, "{r}");
    assert!(r["duration_secs"].as_f64().unwrap() < 30.0);
    assert_none_left("Bomb");
}

#[test]
fn a_gigabyte_of_stdout_is_logged_whole_with_bounded_supervisor_memory() {
    let s = Scratch::new("chatty");
    // A cap above the gigabyte: the whole of it is logged.
    s.supervisor_config("max_log_mb = 2048");
    let f = s.write(
        "a.dsl",
        &agent(
            "Chatty",
            "  on start { execute_native(\"bash -c 'head -c 1073741824 /dev/zero'\") }",
        ),
    );
    let mut child = s
        .command(&["run", f.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut hwm_kb = 0u64;
    let mut out = String::new();
    let reader = {
        let so = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut BufReader::new(so), &mut s).unwrap();
            s
        })
    };
    while child.try_wait().unwrap().is_none() {
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(v) = st.lines().find(|l| l.starts_with("VmHWM:")) {
                hwm_kb = hwm_kb.max(v.split_whitespace().nth(1).unwrap().parse().unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    out.push_str(&reader.join().unwrap());
    let last = out.lines().last().unwrap();
    let r: serde_json::Value = serde_json::from_str::<Vec<serde_json::Value>>(last)
        .unwrap()
        .remove(0);
    assert_eq!(r["exit_code"], 0, "{r}");
    let log = r["stdout_log"].as_str().unwrap();
    assert_eq!(
        std::fs::metadata(log).unwrap().len(),
        1 << 30,
        "the log lost bytes"
    );
    assert!(
        hwm_kb > 0 && hwm_kb < 64 * 1024,
        "supervisor peak RSS {hwm_kb} KiB"
    );
    assert_eq!(r["log_truncated_bytes"], 0, "{r}");
    std::fs::remove_file(log).unwrap();
    assert_none_left("Chatty");
}

/// The first line of a rotated log, and the rest.
fn split_note(text: &str) -> (&str, &str) {
    assert!(
        text.starts_with("[symbiont: earlier output is in stdout.log.1; "),
        "{}",
        &text[..text.len().min(200)]
    );
    text.split_once('\n').unwrap()
}

/// With `supervisor.max_log_mb = 1`, an agent that prints ~4.7 MB leaves at most 1 MiB of
/// its output on disk (plus the note lines), the newest, whole and in order; the record
/// counts the rest as truncated, which is not a loss: the run succeeds.
#[test]
fn a_chatty_agent_keeps_its_newest_output_under_max_log_mb() {
    let s = Scratch::new("logcap");
    let cfg = s.supervisor_config("max_log_mb = 1");
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--native",
        "--json",
        "--",
        "sh",
        "-c",
        "seq 1 700000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["log_dropped_bytes"], 0, "{r}");
    let output: String = (1..=700_000).map(|i| format!("{i}\n")).collect();
    let log = std::path::PathBuf::from(r["stdout_log"].as_str().unwrap());
    let (cur, prev) = (
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(log.with_file_name("stdout.log.1")).unwrap(),
    );
    let ((note, cur_body), (_, prev_body)) = (split_note(&cur), split_note(&prev));
    let kept = (cur_body.len() + prev_body.len()) as u64;
    assert!(kept <= 1 << 20 && kept > 1 << 19, "{kept} bytes kept");
    assert_eq!(cur.lines().last(), Some("700000"));
    assert!(
        output.ends_with(&format!("{prev_body}{cur_body}")),
        "the logs do not hold the newest output, whole"
    );
    let truncated = r["log_truncated_bytes"].as_u64().unwrap();
    assert!(truncated > 0, "{r}");
    assert_eq!(truncated + kept, output.len() as u64);
    assert!(
        note.contains(&format!(
            "; {truncated} older bytes were dropped to keep this log under 1 MB (supervisor.max_log_mb)]"
        )),
        "{note}"
    );
    let on_disk: u64 = std::fs::read_dir(log.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= (1 << 20) + 2 * 200, "{on_disk} bytes of logs");
    // Without --json, exec streams every byte as written, whatever the logs keep.
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--native",
        "--",
        "sh",
        "-c",
        "seq 1 700000",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o) == output, "exec did not print the whole output");
}

/// When a run ends its record is in `record.json` beside its logs, as `--json` printed it.
#[test]
fn exec_writes_its_record_beside_its_logs() {
    let s = Scratch::new("record");
    let cfg = s.config("");
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--native",
        "--json",
        "--",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(printed["exit_code"], 3, "{printed}");
    let dir = std::path::Path::new(printed["stdout_log"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    let text = std::fs::read_to_string(dir.join("record.json")).unwrap();
    let on_disk: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk, printed);
    assert!(!dir.join("record.json.tmp").exists());
}

#[test]
fn agents_die_with_a_sigkilled_supervisor() {
    let s = Scratch::new("sigkill");
    s.config("");
    let f = s.write(
        "a.dsl",
        &agent("Orphan", "  on start { execute_native(\"bash -c '(setsid sleep 300 &); sleep 300 & echo up; wait'\") }"),
    );
    let mut child = s
        .command(&["run", f.to_str().unwrap(), "--headless"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("launched"));
    assert!(wait_for(
        || agent_pids("Orphan").len() >= 3,
        Duration::from_secs(5)
    ));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    child.wait().unwrap();
    let left = survivors_after("Orphan", Duration::from_secs(1));
    assert!(
        left.is_empty(),
        "alive 1 s after the supervisor was SIGKILLed: {left:?}"
    );
    assert_none_left("Orphan");
}

#[test]
fn host_variables_outside_the_passthrough_are_invisible() {
    let s = Scratch::new("env");
    s.config("env_passthrough = [\"PATH\", \"HOME\"]");
    let f = s.write(
        "a.dsl",
        "agent EnvAgent {\n security { tier: None }\n env { GREETING: \"hi\" }\n on start { execute_native(\"sh -c 'echo [$SECRET_TOKEN][$GREETING][$HOME]; env'\") }\n}\n",
    );
    let o = s
        .command(&["run", f.to_str().unwrap(), "--json"])
        .env("SECRET_TOKEN", "hunter2")
        .env("HOME", "/home/someone")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = one(&o);
    assert_eq!(r["stdout_tail"][0], "[][hi][/home/someone]");
    let names: Vec<String> = r["stdout_tail"].as_array().unwrap()[1..]
        .iter()
        .map(|l| l.as_str().unwrap().split('=').next().unwrap().to_string())
        .collect();
    assert!(names.contains(&"PATH".to_string()), "{names:?}");
    for n in &names {
        assert!(
            [
                "PATH",
                "HOME",
                "GREETING",
                "SYMBIONT_AGENT",
                "SYMBIONT_TRIGGER",
                "SYMBIONT_RUN",
                "PWD",
                "SHLVL",
                "_"
            ]
            .contains(&n.as_str()),
            "unexpected variable {n}"
        );
    }
    assert!(!stdout(&o).contains("hunter2"));
    assert_none_left("EnvAgent");
}

#[test]
fn node_webassembly_works_under_the_default_memory_limit() {
    if common::exists(std::path::Path::new("/usr/bin/node")) || which_node() {
        let s = Scratch::new("wasm");
        s.config("");
        let f = s.write(
            "a.dsl",
            &agent(
                "Wasm",
                "  on start { execute_native(\"node -e 'WebAssembly.instantiate(new Uint8Array([0,97,115,109,1,0,0,0])).then(() => console.log(\\\"wasm ok\\\"))'\") }",
            ),
        );
        let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
        let r = one(&o);
        assert_eq!(r["exit_code"], 0, "{r}");
        assert_eq!(r["stdout_tail"][0], "wasm ok");
        assert_none_left("Wasm");
    } else {
        panic!(
            "node is not installed: this test needs it (SPEC: WebAssembly under the default limit)"
        );
    }
}

fn which_node() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("node").is_file()))
}

#[test]
fn several_statements_run_in_order_and_stop_at_the_first_failure() {
    let s = Scratch::new("steps");
    s.config("");
    let f = s.write(
        "a.dsl",
        &agent(
            "Steps",
            "  on trigger \"go\" {\n    execute_native(\"sh -c 'echo one'\")\n    execute_native(\"sh -c 'echo two; exit 3'\")\n    execute_native(\"sh -c 'echo three'\")\n  }",
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json", "--trigger", "go"]);
    assert_eq!(o.status.code(), Some(1));
    let r = one(&o);
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["reason"], "exited");
    assert_eq!(r["stdout_tail"], serde_json::json!(["one", "two"]));
    assert_none_left("Steps");
}

#[test]
fn the_supervisor_raises_its_open_files_limit_and_agents_get_the_original() {
    // A login session's soft limit (1024) would stop a supervisor near 500 agents, two pipes
    // each: it raises its own soft limit to the hard one, and hands agents the soft limit it
    // was started with.
    let s = Scratch::new("nofile");
    let cfg = s.config("");
    let c = s.command(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "grep 'open files' /proc/$PPID/limits; ulimit -Sn",
    ]);
    // The same command, started from a shell that lowered the soft limit first.
    let script = "ulimit -Sn 300 && [ \"$(ulimit -Hn)\" != 300 ] && exec \"$0\" \"$@\"";
    let mut sh = std::process::Command::new("sh");
    sh.arg("-c")
        .arg(script)
        .arg(c.get_program())
        .args(c.get_args())
        .current_dir(&s.dir);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let sh = sh.output().unwrap();
    assert_eq!(sh.status.code(), Some(0), "{}", stderr(&sh));
    let out = stdout(&sh);
    let mut lines = out.lines();
    let limits: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(limits.len(), 6, "{out}");
    assert_eq!(
        limits[3], limits[4],
        "the supervisor kept a soft limit below its hard one: {out}"
    );
    assert_ne!(limits[3], "300", "{out}");
    assert_eq!(
        lines.next(),
        Some("300"),
        "the agent did not get the original soft limit: {out}"
    );
}

#[test]
fn exec_runs_one_command_and_propagates_its_exit_code() {
    let s = Scratch::new("exec");
    let cfg = s.config("");
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o), "out\n");
    assert!(stderr(&o).contains("err"));
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--json",
        "--",
        "sh",
        "-c",
        "echo hi",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["stdout_tail"][0], "hi");
    assert_eq!(r["reason"], "exited");
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--code",
        "echo from code",
    ]);
    assert_eq!(stdout(&o), "from code\n");
}

#[test]
fn cpu_time_limit_ends_a_spinning_agent_with_reason_cpu_limit() {
    let s = Scratch::new("cpu");
    s.config("max_cpu_seconds = 1");
    let f = s.write(
        "a.dsl",
        &agent(
            "Spinner",
            "  on start { execute_native(\"sh -c 'while :; do :; done'\") }",
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    let r = one(&o);
    assert_eq!(r["reason"], "cpu_limit", "{r}");
    assert!(r["cpu_seconds"].as_f64().unwrap() >= 0.5, "{r}");
    assert_eq!(r["signal"], "SIGXCPU", "soft < hard: SIGXCPU comes first");
    assert_none_left("Spinner");
}

#[test]
fn check_prints_every_setting_with_its_origin_and_the_mechanisms() {
    let s = Scratch::new("check");
    s.config("max_memory_mb = 512");
    s.write("agent.dsl", SEED_AGENT);
    let o = s
        .command(&["check", "agent.dsl"])
        .env("SYMBIONT_NATIVE_MAX_CPU_CORES", "1.5")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("native_execution.max_memory_mb") && out.contains("512"),
        "{out}"
    );
    assert!(out.contains("config.toml:"), "{out}");
    assert!(out.contains("SYMBIONT_NATIVE_MAX_CPU_CORES"), "{out}");
    assert!(out.contains("default"), "{out}");
    assert!(out.contains("NativeWorker"), "{out}");
    assert!(out.contains("enforcement on this machine"), "{out}");
}

#[test]
fn cpu_cores_limit_caps_a_spinning_tree() {
    let s = Scratch::new("cores");
    s.config("");
    // Two spinning processes for 2 s of wall clock under half a core.
    let f = s.write(
        "a.dsl",
        &agent(
            "Capped",
            "  limits { max_cpu_cores: 0.5 }\n  on start { execute_native(\"bash -c 'for i in 1 2; do timeout 2 sh -c \\\"while :; do :; done\\\" & done; wait'\") }",
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    let r = one(&o);
    assert_eq!(r["exit_code"], 0, "{r}");
    let cpu = r["cpu_seconds"].as_f64().unwrap();
    assert!(
        cpu > 0.3 && cpu < 1.3,
        "0.5 cores for 2 s allows about 1 s of CPU, used {cpu}"
    );
    assert_none_left("Capped");
}

#[test]
fn an_agent_starts_with_no_blocked_or_ignored_signal() {
    // The supervisor blocks signals around its spawn and ignores SIGPIPE itself; neither may
    // leak into an agent, or SIGTERM would not stop it and a closed pipe would not end it.
    let s = Scratch::new("sigs");
    let cfg = s.config("");
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "grep -E '^Sig(Blk|Ign)' /proc/self/status",
    ]);
    let out = stdout(&o);
    let mask = |name: &str| -> u64 {
        let l = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{out}{}", stderr(&o)));
        u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{out}");
    // No standard signal (1..31) is ignored; glibc's internal real-time signals may be.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "{out}");
}

#[test]
fn extreme_limit_values_do_not_panic() {
    let s = Scratch::new("extreme");
    let cfg = s.write(
        "config.toml",
        &format!(
            "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n[native_execution]\n\
             working_directory = \"{}\"\nkill_grace_seconds = 1e300\nmax_cpu_seconds = 18446744073709551\n\
             [supervisor]\ndata_dir = \"{}\"\n",
            s.work().display(),
            s.path("data").display()
        ),
    );
    let o = s.run(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--timeout",
        "18446744073709551615",
        "--",
        "sh",
        "-c",
        "echo fine",
    ]);
    // Refused at load, naming the key and its range, instead of silently clamped (exec's own
    // bad usage: 125).
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("kill_grace_seconds"), "{}", stderr(&o));
    assert!(stderr(&o).contains("must be from"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
}

/// Sixty agents that exit at once, launched together by the binary (which reaps every child
/// of its own, while launches run side by side): each run gets its own agent's exit code.
#[test]
fn a_burst_of_instant_exits_each_get_their_own_status() {
    let s = Scratch::new("burst");
    s.config("max_execution_time_seconds = 20");
    let file: String = (0..60)
        .map(|i| {
            agent(
                &format!("Burst{i}"),
                &format!(
                    "  on start {{ execute_native(\"sh -c 'exit {}'\") }}",
                    i % 7
                ),
            )
        })
        .collect();
    let f = s.write("a.dsl", &file);
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    let rs = records(&o);
    assert_eq!(rs.len(), 60, "{}", stderr(&o));
    for r in &rs {
        let i: u64 = r["agent"].as_str().unwrap()["Burst".len()..]
            .parse()
            .unwrap();
        assert_eq!(r["reason"], "exited", "{r}");
        assert_eq!(r["exit_code"], i % 7, "{r}");
    }
    assert_none_left("Burst");
}

/// Under a seccomp filter that refuses close_range and unshare (as container runtimes' default
/// profiles may), agents still start, through a copy of the descriptor table, and still hold
/// nothing but stdin, stdout and stderr.
#[cfg(target_os = "linux")]
#[test]
fn agents_start_where_close_range_and_unshare_are_refused() {
    use std::os::unix::process::CommandExt;
    let s = Scratch::new("seccomp");
    let cfg = s.config("");
    let mut c = s.command(&[
        "exec",
        "--config",
        cfg.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo started; ls -1 /proc/$$/fd; exit 0",
    ]);
    // SAFETY: the hook runs in the forked child before exec: it builds the filter on its own
    // stack and makes only prctl calls, which are async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            // Each refused call fails with EPERM; everything else is allowed.
            let deny = |nr: i64| {
                [
                    libc::sock_filter {
                        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 1,
                        k: nr as u32,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_RET | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 0,
                        k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                    },
                ]
            };
            let mut prog = vec![libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: 0, // seccomp_data.nr
            }];
            prog.extend(deny(libc::SYS_close_range));
            prog.extend(deny(libc::SYS_unshare));
            prog.push(libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: libc::SECCOMP_RET_ALLOW,
            });
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "started\n0\n1\n2\n", "{}", stderr(&o));
}

/// A supervisor (`run --headless`, or `exec`) of an agent that traps TERM, tagged `agent_name`,
/// with `kill_grace_seconds` set to `grace`.
fn supervisor_with_trapper(
    s: &Scratch,
    agent_name: &str,
    grace: u64,
    exec: bool,
) -> std::process::Child {
    s.write(
        "config.toml",
        &format!(
            "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
             [native_execution]\nworking_directory = \"{}\"\nkill_grace_seconds = {grace}\n\n\
             [supervisor]\ndata_dir = \"{}\"\n",
            s.work().display(),
            s.path("data").display()
        ),
    );
    let script =
        format!("trap 'echo ignoring TERM {agent_name}' TERM; while true; do sleep 0.05; done");
    let f = s.write(
        "trap.dsl",
        &agent(
            agent_name,
            &format!("  on start {{ execute_native(\"bash -c \\\"{script}\\\"\") }}"),
        ),
    );
    let mut c = if exec {
        s.command(&["exec", "--native", "--", "bash", "-c", &script])
    } else {
        s.command(&["run", f.to_str().unwrap(), "--headless"])
    };
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sigterm(child: &std::process::Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Waits up to `within` for `child` to exit.
fn exited_within(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Pids of the processes running the trapping script of `tag` (`exec` names no agent in the
/// environment, so they are found by their command line).
fn trapper_pids(tag: &str) -> Vec<i32> {
    pids_with_cmdline(format!("ignoring TERM {tag}").as_bytes())
}

#[test]
fn a_second_sigterm_kills_a_term_trapping_agent_at_once_and_the_supervisor_leaves() {
    for exec in [false, true] {
        let s = Scratch::new(&format!("twoterms-{exec}"));
        let name = if exec { "TrapperExec" } else { "Trapper2" };
        // A grace period far longer than the test waits: only the second signal can end it.
        let mut child = supervisor_with_trapper(&s, name, 60, exec);
        assert!(
            wait_for(|| !trapper_pids(name).is_empty(), Duration::from_secs(5)),
            "{name}: the agent never started"
        );
        std::thread::sleep(Duration::from_millis(200));
        sigterm(&child);
        // The first one: TERM to the tree, which the agent ignores; the supervisor stays for
        // the grace period.
        assert!(
            exited_within(&mut child, Duration::from_millis(700)).is_none(),
            "{name}: the supervisor left without waiting for the grace period"
        );
        assert!(
            !trapper_pids(name).is_empty(),
            "{name}: the agent did not trap TERM"
        );
        let second = Instant::now();
        sigterm(&child);
        let status = exited_within(&mut child, Duration::from_secs(2));
        let left = trapper_survivors(
            name,
            Duration::from_secs(2).saturating_sub(second.elapsed()),
        );
        let status = status.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("{name}: the supervisor still runs 2 s after the second SIGTERM")
        });
        assert!(left.is_empty(), "{name}: agent processes left: {left:?}");
        // `run`: a run was killed; `exec`: the agent's SIGKILL, as 128+9.
        assert_eq!(status.code(), Some(if exec { 137 } else { 1 }), "{name}");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(
            err.contains("killing every agent now (SIGKILL)"),
            "{name}: {err}"
        );
    }
}

fn trapper_survivors(tag: &str, within: Duration) -> Vec<i32> {
    let until = Instant::now() + within;
    loop {
        let left = trapper_pids(tag);
        if left.is_empty() || Instant::now() >= until {
            for &p in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_sigterm_stops_a_term_trapping_agent_within_the_grace_period() {
    let s = Scratch::new("oneterm");
    let mut child = supervisor_with_trapper(&s, "Trapper1", 1, false);
    assert!(
        wait_for(
            || !agent_pids("Trapper1").is_empty(),
            Duration::from_secs(5)
        ),
        "the agent never started"
    );
    std::thread::sleep(Duration::from_millis(200));
    sigterm(&child);
    let status = exited_within(&mut child, Duration::from_secs(3)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the supervisor still runs 3 s after SIGTERM with a 1 s grace period")
    });
    assert_eq!(status.code(), Some(1));
    assert_none_left("Trapper1");
}

/// A tmpfs of `size` mounted on a directory, unmounted when dropped (even by a panic).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// `None` (said loudly by `skip`) where this user cannot mount one.
    fn mount(test: &str, dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        if !nix::unistd::geteuid().is_root() {
            skip(test, "mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        if !o.status.success() {
            skip(
                test,
                &format!(
                    "mount -t tmpfs failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` to the last byte.
fn fill(dir: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&[0]).is_ok() {}
}

#[test]
fn a_full_data_disk_refuses_the_launch_and_a_disk_filling_up_is_flagged_in_the_records() {
    let test =
        "a_full_data_disk_refuses_the_launch_and_a_disk_filling_up_is_flagged_in_the_records";
    let s = Scratch::new("fulldisk");
    s.config("");
    let data = s.path("data");
    let Some(_mount) = Tmpfs::mount(test, &data, "2m") else {
        return;
    };

    // Filling up during the run: one agent writes 3 MB, the other writes after it.
    let f = s.write(
        "fill.dsl",
        &format!(
            "{}{}",
            agent(
                "DiskFiller",
                "  on start { execute_native(\"bash -c 'head -c 3000000 /dev/zero | tr \\\"\\\\\\\\0\\\" x; echo; echo last-line-big'\") }"
            ),
            agent(
                "LateWriter",
                "  on start { execute_native(\"bash -c 'sleep 0.5; echo late-output'\") }"
            )
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--json"]);
    let records = records(&o);
    assert_eq!(records.len(), 2, "{}\n{}", stdout(&o), stderr(&o));
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    for r in &records {
        assert!(
            r["log_dropped_bytes"].as_u64().unwrap() > 0 && r["log_dropped_since"].is_string(),
            "a lost log is not flagged: {r}"
        );
    }
    let filler = records.iter().find(|r| r["agent"] == "DiskFiller").unwrap();
    assert_eq!(
        filler["stdout_tail"].as_array().unwrap().last().unwrap(),
        "last-line-big"
    );
    let late = records.iter().find(|r| r["agent"] == "LateWriter").unwrap();
    assert_eq!(late["stdout_tail"], serde_json::json!(["late-output"]));
    // The headless lines say it too.
    let o = s.run(&["run", f.to_str().unwrap(), "--headless"]);
    let out = stdout(&o);
    assert!(out.contains("LOG INCOMPLETE"), "{out}");
    assert_ne!(o.status.code(), Some(0), "{out}");
    assert_none_left("DiskFiller");

    // Full before the launch: the launch line cannot be written, so nothing starts.
    fill(&data);
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap_or_default();
    let f = s.write(
        "one.dsl",
        &agent(
            "NeverRuns",
            "  on start { execute_native(\"bash -c 'sleep 30'\") }",
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--headless"]);
    let err = stderr(&o);
    // 1: the host failed; 2 is for bad usage, config and agent files.
    assert_eq!(o.status.code(), Some(1), "{}\n{err}", stdout(&o));
    assert!(
        err.contains("not launched") || err.contains("cannot create the run log directory"),
        "{err}"
    );
    assert!(!stdout(&o).contains("exited"), "{}", stdout(&o));
    assert_none_left("NeverRuns");
    let after = std::fs::read_to_string(data.join("audit.jsonl")).unwrap_or_default();
    assert_eq!(
        after, audit,
        "the audit log changed while the disk was full"
    );
    for l in after.lines() {
        serde_json::from_str::<serde_json::Value>(l).expect("a broken line in the audit log");
    }
    // exec is refused the same way.
    let o = s.run(&["exec", "--native", "--", "bash", "-c", "echo never"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!stdout(&o).contains("never"), "{}", stdout(&o));
}

/// An agent that writes escape sequences (retitle the terminal, clear it) reaches the
/// operator's terminal only as visible text through the headless lines and summary.
#[test]
fn escape_sequences_from_an_agent_reach_no_terminal_raw_in_headless_output() {
    let s = Scratch::new("escapes");
    s.config("");
    let f = s.write(
        "a.dsl",
        &agent(
            "Painter",
            r#"  on start { execute_native("sh -c 'printf \"\\033]0;pwned\\007\\033[2J\\n\"; printf \"\\033]0;pwned\\007\\033[2J\\n\" >&2; exit 3'") }"#,
        ),
    );
    let o = s.run(&["run", f.to_str().unwrap(), "--headless"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for (name, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        assert!(
            !bytes.iter().any(|&b| b == 0x1b || b == 0x07),
            "{name} carries a raw control character: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let out = stdout(&o);
    assert!(out.contains("stderr| ^[]0;pwned^G^[[2J"), "{out}");
    // `exec` is a wrapper: the agent's bytes pass through untouched.
    let o = s.run(&["exec", "--", "sh", "-c", r"printf '\033[2J'"]);
    assert_eq!(o.stdout, b"\x1b[2J", "{}", stderr(&o));
    assert_none_left("Painter");
}

/// A name in the allowlist is looked up on PATH, skipping directories others can write: a
/// `sh` planted in a group-writable directory early on PATH does not run as `sh`.
#[test]
fn a_group_writable_path_directory_is_skipped() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("groupw");
    s.config("");
    let planted = s.write("bin/sh", "#!/bin/sh\necho planted\n");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = planted.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let o = s
        .command(&["exec", "--", "sh", "-c", "echo real"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "real\n", "{}", stderr(&o));
    let o = s.command(&["check"]).env("PATH", &path).output().unwrap();
    let out = stdout(&o);
    assert!(
        out.contains(&format!("PATH directory {} skipped", dir.display())),
        "{out}"
    );
    // The same directory, writable by its owner alone, is searched.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = s
        .command(&["exec", "--", "sh", "-c", "echo real"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "planted\n", "{}", stderr(&o));
}

/// Pids of live processes of every agent whose name starts with `prefix`.
fn pids_of_agents_named(prefix: &str) -> Vec<i32> {
    let needle = format!("SYMBIONT_AGENT={prefix}");
    live_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|kv| kv.starts_with(needle.as_bytes()))
            })
        })
        .collect()
}

/// A hundred agents start under `ulimit -n 256` (soft and hard): the supervisor holds their
/// pipes and little else (log files opened at the first byte, files kept open for speed only
/// while the table is roomy, one set of launch slots).
#[test]
fn a_hundred_agents_start_under_ulimit_n_256() {
    const N: usize = 100;
    let s = Scratch::new("fds256");
    s.config("allowed_executables = [\"sleep\"]");
    let agents: String = (0..N)
        .map(|i| {
            agent(
                &format!("Fds{i}"),
                "  on start { execute_native(\"sleep 2\") }",
            )
        })
        .collect();
    let f = s.write("agents.dsl", &agents);
    // dash's `ulimit -n` sets the soft and the hard limit.
    let mut wrapped = std::process::Command::new("/bin/sh");
    wrapped
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(bin())
        .args(["run", f.to_str().unwrap(), "--headless", "--json"])
        .current_dir(&s.dir);
    without_symbiont_env(&mut wrapped);
    let child = wrapped
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sup = child.id();
    // With every agent alive: how many descriptors the supervisor holds.
    let mut held = None;
    if wait_for(
        || pids_of_agents_named("Fds").len() >= N,
        Duration::from_secs(10),
    ) {
        held = std::fs::read_dir(format!("/proc/{sup}/fd"))
            .map(|d| d.count())
            .ok();
    }
    let o = child.wait_with_output().unwrap();
    eprintln!("descriptors held with {N} agents alive: {held:?}");
    let r = records(&o);
    assert_eq!(r.len(), N, "{}", stderr(&o));
    let bad: Vec<_> = r
        .iter()
        .filter(|r| r["reason"] != "exited" || r["exit_code"] != 0)
        .map(|r| format!("{} {} {}", r["agent"], r["reason"], r["message"]))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {N} did not exit 0: {bad:?}",
        bad.len()
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(held.is_some_and(|n| n < 256), "{held:?}");
    let left = pids_of_agents_named("Fds");
    assert!(left.is_empty(), "agents left behind: {left:?}");
}
