//! Daily use: where symbiont finds its config and keeps its data, and how an operator gives
//! agents API keys without them reaching the audit log, records, `check` or the logs.
//! Every test runs the binary in an empty directory with `HOME`, `XDG_CONFIG_HOME` and
//! `XDG_STATE_HOME` pointed at temporary directories.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{bin, stderr, stdout, Scratch};

/// A scratch directory with `cwd/` (empty: where the user stands), `home/`, `config/` and
/// `state/`.
struct Desk {
    s: Scratch,
}

impl Desk {
    fn new(name: &str) -> Desk {
        let s = Scratch::new(&format!("daily-{name}"));
        for d in ["cwd", "home", "config", "state"] {
            std::fs::create_dir_all(s.path(d)).unwrap();
        }
        Desk { s }
    }

    fn cwd(&self) -> PathBuf {
        self.s.path("cwd")
    }

    /// The binary in `cwd/`, with `HOME` and the XDG variables pointed into the scratch
    /// directory and no `SYMBIONT_*` variable.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args).current_dir(self.cwd());
        for (k, _) in std::env::vars() {
            if k.starts_with("SYMBIONT_") || k.starts_with("XDG_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.s.path("home"))
            .env("XDG_CONFIG_HOME", self.s.path("config"))
            .env("XDG_STATE_HOME", self.s.path("state"))
            .env("XDG_RUNTIME_DIR", self.s.path("run"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The user's config in `$XDG_CONFIG_HOME/symbiont/config.toml`: native execution on, the
    /// agents' working directory in the scratch directory, `extra` appended to
    /// `[native_execution]`.
    fn user_config(&self, extra: &str) -> PathBuf {
        std::fs::create_dir_all(self.s.path("work")).unwrap();
        self.s.write(
            "config/symbiont/config.toml",
            &format!(
                "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
                 [native_execution]\nworking_directory = \"{}\"\nkill_grace_seconds = 1\n{extra}\n\n\
                 [dashboard]\nrefresh_ms = 123\n",
                self.s.path("work").display()
            ),
        )
    }

    fn cwd_entries(&self) -> Vec<String> {
        entries(&self.cwd())
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir`, read as text, with its path.
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            out.push((p, text));
        }
    }
    out
}

#[test]
fn check_writes_nothing() {
    let d = Desk::new("check");
    let o = d.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("none (built-in defaults)"),
        "{}",
        stdout(&o)
    );
    assert!(
        d.cwd_entries().is_empty(),
        "check wrote {:?}",
        d.cwd_entries()
    );
    assert!(
        entries(&d.s.path("state")).is_empty(),
        "check wrote into the state directory"
    );
    // With a config that enables native execution, still nothing.
    d.user_config("");
    let o = d.run(&["check", "--native"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        d.cwd_entries().is_empty(),
        "check wrote {:?}",
        d.cwd_entries()
    );
    assert!(entries(&d.s.path("state")).is_empty());
}

/// `check` of an agent file plans it as `run` would, but makes no working directory: one that
/// does not exist yet is only checked to be makeable.
#[test]
fn check_of_an_agent_file_makes_no_working_directory() {
    let d = Desk::new("check-files");
    let work = d.s.path("not-yet/work");
    d.s.write(
        "config/symbiont/config.toml",
        &format!(
            "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
             [native_execution]\nworking_directory = \"{}\"\n",
            work.display()
        ),
    );
    let agent = d.s.write(
        "agent.dsl",
        "agent Checked { security { tier: None } on start { execute_native(\"sh -c true\") } }\n",
    );
    let o = d.run(&["check", agent.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("Checked"), "{}", stdout(&o));
    assert!(!work.exists(), "check made the working directory");
    assert!(!d.s.path("not-yet").exists(), "check made its parent");
    assert!(
        d.cwd_entries().is_empty(),
        "check wrote {:?}",
        d.cwd_entries()
    );
    // `run` makes it.
    let o = d.run(&["run", "--headless", agent.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(work.is_dir(), "run did not make the working directory");
    // One that cannot be made is refused by check too, naming it.
    let file = d.s.write("a-file", "");
    d.s.write(
        "config/symbiont/config.toml",
        &format!(
            "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
             [native_execution]\nworking_directory = \"{}/sub\"\n",
            file.display()
        ),
    );
    let o = d.run(&["check", agent.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("a-file"), "{}", stderr(&o));
}

#[test]
fn the_xdg_config_is_read_and_the_data_goes_to_xdg_state() {
    let d = Desk::new("xdg");
    let user = d.user_config("");
    let o = d.run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("config file: {}", user.display())),
        "{out}"
    );
    assert!(out.contains("dashboard.refresh_ms"), "{out}");
    assert!(out.contains("123"), "{out}");
    let state = d.s.path("state").join("symbiont");
    assert!(
        out.contains(&state.display().to_string()),
        "the data directory is not the XDG state one:\n{out}"
    );

    let o = d.run(&["exec", "--native", "--", "sh", "-c", "echo hello"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        d.cwd_entries().is_empty(),
        "exec wrote {:?}",
        d.cwd_entries()
    );
    assert!(state.join("audit.jsonl").is_file(), "{:?}", entries(&state));
    assert!(state.join("runs").is_dir());
}

#[test]
fn without_xdg_variables_home_decides() {
    let d = Desk::new("home");
    let home = d.s.path("home");
    std::fs::create_dir_all(d.s.path("work")).unwrap();
    let user = d.s.write(
        "home/.config/symbiont/config.toml",
        &format!(
            "[security]\nallow_native_execution = true\n[native_execution]\nworking_directory = \"{}\"\n",
            d.s.path("work").display()
        ),
    );
    let run = |args: &[&str]| {
        d.command(args)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .output()
            .unwrap()
    };
    let o = run(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("config file: {}", user.display())));
    let o = run(&["exec", "--native", "--", "sh", "-c", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(home.join(".local/state/symbiont/audit.jsonl").is_file());
    assert!(
        d.cwd_entries().is_empty(),
        "exec wrote {:?}",
        d.cwd_entries()
    );
}

#[test]
fn an_explicit_data_dir_of_dot_data_still_means_dot_data() {
    let d = Desk::new("dotdata");
    d.user_config("");
    let cfg = d.s.path("config/symbiont/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[supervisor]\ndata_dir = \"./data\"\n"),
    )
    .unwrap();
    let o = d.run(&["exec", "--", "sh", "-c", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(d.cwd().join("data/audit.jsonl").is_file());
}

const KEY: &str = "sk-ant-test12345";
const FILE_SECRET: &str = "from-the-env-file-42";

/// An env file of the operator's, mode 0600.
fn env_file(d: &Desk, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = d.s.write(
        "secrets.env",
        &format!("# the operator's keys\nOPENAI_API_KEY=\"{FILE_SECRET}\"\nSHORT=abc\n"),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn a_passed_secret_reaches_the_agent_masked_and_nowhere_else() {
    let d = Desk::new("secret");
    let ef = env_file(&d, 0o600);
    d.user_config(&format!("env_file = \"{}\"", ef.display()));
    // Printed whole, and split across two reads of the pipe.
    let agent = d.s.write(
        "agent.dsl",
        "agent Keyed {\n  security { tier: None }\n  on start {\n    \
         execute_native(\"sh -c 'echo key=$ANTHROPIC_API_KEY file=$OPENAI_API_KEY short=$SHORT; printf %s sk-ant-te; sleep 0.3; echo st12345 end'\")\n  }\n}\n",
    );
    let o = d
        .command(&[
            "run",
            agent.to_str().unwrap(),
            "--headless",
            "--json",
            "--pass-env",
            "ANTHROPIC_API_KEY",
        ])
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains(KEY) && !out.contains(FILE_SECRET), "{out}");
    // The tail in the record shows the secrets masked, short values as they are.
    let recs = common::records(&o);
    let tail = common::tail_of(&recs[0], "stdout");
    assert_eq!(tail, ["key=*** file=*** short=abc", "*** end"], "{out}");
    // The names are known, the values are nowhere under the data directory; the log is masked.
    let files = files_under(&d.s.path("state"));
    assert!(files.iter().any(|(p, _)| p.ends_with("audit.jsonl")));
    let mut logs = 0;
    for (p, text) in &files {
        assert!(!text.contains(KEY), "{} holds the key", p.display());
        assert!(
            !text.contains(FILE_SECRET),
            "{} holds the secret",
            p.display()
        );
        if p.ends_with("stdout.log") {
            assert_eq!(text, "key=*** file=*** short=abc\n*** end\n");
            logs += 1;
        }
    }
    assert_eq!(logs, 1);
    let audit = files
        .iter()
        .find(|(p, _)| p.ends_with("audit.jsonl"))
        .unwrap();
    assert!(audit.1.contains("ANTHROPIC_API_KEY"), "{}", audit.1);
    // check lists the env file's names, never a value.
    let o = d
        .command(&["check", agent.to_str().unwrap()])
        .env("ANTHROPIC_API_KEY", KEY)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("OPENAI_API_KEY SHORT"), "{out}");
    assert!(!out.contains(KEY) && !out.contains(FILE_SECRET), "{out}");
    assert!(d.cwd_entries().is_empty());
}

#[test]
fn exec_passes_the_variable_named_and_no_other() {
    let d = Desk::new("exec-pass");
    d.user_config("");
    let test = |args: &[&str]| {
        let mut all = vec!["exec"];
        all.extend_from_slice(args);
        d.command(&all)
            .env("ANTHROPIC_API_KEY", KEY)
            .output()
            .unwrap()
    };
    let o = test(&[
        "--pass-env",
        "ANTHROPIC_API_KEY",
        "--",
        "sh",
        "-c",
        &format!("test \"$ANTHROPIC_API_KEY\" = {KEY}"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = test(&["--", "sh", "-c", "test -z \"$ANTHROPIC_API_KEY\""]);
    assert_eq!(o.status.code(), Some(0), "not passed without --pass-env");
    // A variable that is not set is a usage error naming it.
    let o = test(&["--pass-env", "NOT_SET_ANYWHERE", "--", "sh", "-c", "true"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("NOT_SET_ANYWHERE"), "{}", stderr(&o));
}

#[test]
fn an_env_file_others_can_read_is_refused_with_its_location() {
    let d = Desk::new("envfile-mode");
    let ef = env_file(&d, 0o644);
    d.user_config(&format!("env_file = \"{}\"", ef.display()));
    // exec's own bad usage or config is 125 (env(1)), check's 2.
    for (args, code) in [
        (&["check"][..], 2),
        (&["exec", "--", "sh", "-c", "true"][..], 125),
    ] {
        let o = d.run(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&ef.display().to_string()) && err.contains("644"),
            "{err}"
        );
        assert!(!err.contains(FILE_SECRET));
    }
}

#[test]
fn a_passthrough_variable_is_masked_when_its_name_looks_secret() {
    let d = Desk::new("passthrough");
    d.user_config(
        "env_passthrough = [\"PATH\", \"HOME\", \"MY_SERVICE_TOKEN\", \"GREETING_TEXT\"]",
    );
    let o = d
        .command(&[
            "exec",
            "--json",
            "--",
            "sh",
            "-c",
            "echo $MY_SERVICE_TOKEN $GREETING_TEXT",
        ])
        .env("MY_SERVICE_TOKEN", "tok-0123456789")
        .env("GREETING_TEXT", "hello-world-123")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!out.contains("tok-0123456789"), "{out}");
    // A name that does not look secret is an ordinary setting, shown as it is.
    assert!(out.contains("*** hello-world-123"), "{out}");
    for (p, text) in files_under(&d.s.path("state")) {
        assert!(!text.contains("tok-0123456789"), "{}", p.display());
    }
}

/// An agent whose log rotation fails: it makes a non-empty directory where its stdout log's
/// rotated predecessor goes, then writes past half of the 1 MB cap. The log stops; the
/// diagnostic log says why (a warning).
fn rotation_fails(d: &Desk) -> Vec<String> {
    let state = d.s.path("state").join("symbiont");
    vec![
        "exec".into(),
        "--standalone".into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        format!(
            // The run's directory is made once the agent has started: wait for it.
            "until dir=$(ls -d {}/runs/*/*/ 2>/dev/null); do sleep 0.02; done; \
             mkdir -p \"${{dir}}stdout.log.1/in-the-way\" && \
             head -c 600000 /dev/zero | tr '\\0' a && echo",
            state.display()
        ),
    ]
}

#[test]
fn a_failed_log_rotation_is_a_warning_on_stderr_and_q_silences_it() {
    let d = Desk::new("log-warn");
    d.user_config("");
    let cfg = d.s.path("config/symbiont/config.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}\n[supervisor]\nmax_log_mb = 1\n")).unwrap();
    let args = rotation_fails(&d);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let o = d.run(&args);
    // exec says the log is incomplete (its status for its own failures), in every mode.
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).len(),
        600_001,
        "the agent's output reaches stdout whole"
    );
    let err = stderr(&o);
    assert!(err.contains("LOG INCOMPLETE"), "{err}");
    let warning = err
        .lines()
        .find(|l| l.contains("cannot rotate the log"))
        .unwrap_or_else(|| panic!("no warning about the rotation:\n{err}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("stdout.log.1"),
        "it names the path: {warning}"
    );
    // Warnings only, by default: no INFO or DEBUG line.
    assert!(!err.contains("INFO") && !err.contains("DEBUG"), "{err}");

    // -q: the same failure (the agent finds its own log: the only one), no warning.
    std::fs::remove_dir_all(d.s.path("state").join("symbiont").join("runs")).unwrap();
    let mut quiet = vec!["-q"];
    quiet.extend_from_slice(&args);
    let o = d.run(&quiet);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("LOG INCOMPLETE"), "{err}");
    assert!(
        !err.contains("cannot rotate") && !err.contains("WARN"),
        "{err}"
    );
}

#[test]
fn symbiont_log_debug_shows_the_runs_audit_and_cgroup_work_on_stderr() {
    let d = Desk::new("log-debug");
    d.user_config("");
    let exec = ["exec", "--standalone", "--", "sh", "-c", "true"];
    let o = d
        .command(&exec)
        .env("SYMBIONT_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // Every audited event of the run, as the audit log has it (names, never values).
    let launch = err
        .lines()
        .find(|l| l.contains("\"event\":\"launch\""))
        .unwrap_or_else(|| panic!("no launch line:\n{err}"));
    assert!(
        launch.contains("INFO") && launch.contains("\"run_id\":1"),
        "{launch}"
    );
    assert!(launch.contains(r#"["sh","-c","true"]"#), "{launch}");
    assert!(err.contains("\"event\":\"exit\""), "{err}");
    // Where this host gives the run cgroups, their making and removal.
    if std::path::Path::new("/sys/fs/cgroup/cgroup.procs").exists()
        || std::path::Path::new("/sys/fs/cgroup/memory").is_dir()
    {
        assert!(err.contains("DEBUG"), "{err}");
        assert!(err.contains("cgroup run-1: created"), "{err}");
        assert!(
            err.lines()
                .any(|l| l.contains("run-1: removed") && l.contains("cgroup")),
            "{err}"
        );
    }
    // -v: the audit lines (info), not the cgroup details (debug).
    let mut v = vec!["-v"];
    v.extend_from_slice(&exec);
    let o = d.run(&v);
    assert!(
        stderr(&o).contains("\"event\":\"launch\""),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("DEBUG"), "{}", stderr(&o));
    // Nothing by default.
    let o = d.run(&exec);
    assert_eq!(stderr(&o), "");
}

#[test]
fn with_the_dashboard_the_log_goes_to_its_file_and_never_onto_the_screen() {
    use common::pty::Pty;
    use std::time::Duration;
    let d = Desk::new("log-tui");
    d.user_config("");
    let agents = d.s.write(
        "agents.dsl",
        "agent LogQuiet { security { tier: None } on start { execute_native(\"sh -c 'sleep 300'\") } }\n",
    );
    let mut cmd = d.command(&["run", agents.to_str().unwrap()]);
    cmd.env("SYMBIONT_LOG", "debug");
    let mut p = Pty::spawn(cmd, 120, 30);
    p.wait_for("LogQuiet", Duration::from_secs(10));
    let log = d.s.path("state").join("symbiont").join("symbiont.log");
    assert!(
        common::wait_for(
            || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"event\":\"launch\"")),
            Duration::from_secs(10)
        ),
        "no launch line in {}: {:?}",
        log.display(),
        std::fs::read_to_string(&log)
    );
    p.send("q");
    p.wait_for("stop", Duration::from_secs(5));
    p.send("y");
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(1));
    common::assert_none_left("LogQuiet");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("DEBUG") && text.contains("\"event\":\"exit\""),
        "{text}"
    );
    // Not a byte of it on the terminal, while the dashboard showed or after.
    let written = p.written();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let body = l.split_once("symbiont::").map_or(l, |(_, b)| b);
        assert!(!written.contains(body), "on the terminal: {l}");
    }
    assert!(
        !written.contains("DEBUG") && !written.contains(" INFO "),
        "{written}"
    );
    // The summary printed after the dashboard is still there.
    assert!(written.contains("LogQuiet"));
}

#[test]
fn help_names_the_log_flags_and_the_log_file() {
    let d = Desk::new("log-help");
    let o = d.run(&["--help"]);
    let out = stdout(&o);
    for s in ["--verbose", "--quiet", "SYMBIONT_LOG", "symbiont.log"] {
        assert!(out.contains(s), "{s} not in:\n{out}");
    }
    // The flags are global: after a subcommand too.
    let o = d.run(&["check", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `symbiont serve` logs to its stderr (its `service.log` when `run --detach` started it), each
/// line with its time.
#[test]
fn the_service_logs_to_its_stderr_with_the_time() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::Duration;

    /// The service, killed if the test fails before it has shut down.
    struct Service(std::process::Child);
    impl Drop for Service {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }

    let d = Desk::new("log-serve");
    d.user_config("");
    let mut service = Service(
        d.command(&["-v", "serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let socket = d.s.path("run/symbiont/api.sock");
    assert!(common::wait_for(
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        Duration::from_secs(10)
    ));
    // Through the service: its launch is the service's to log.
    let o = d.run(&["exec", "--", "sh", "-c", "true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "the client logs nothing of the service's");
    let o = d.run(&["shutdown"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let mut err = String::new();
    service
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(service.0.wait().unwrap().success(), "{err}");
    let launch = err
        .lines()
        .find(|l| l.contains("\"event\":\"launch\""))
        .unwrap_or_else(|| panic!("no launch line:\n{err}"));
    // `2026-12-06T08:00:00.123456Z  INFO symbiont::...`
    let time = launch.split_whitespace().next().unwrap_or_default();
    assert!(
        time.len() >= 20
            && time.as_bytes()[..4].iter().all(u8::is_ascii_digit)
            && time.as_bytes()[10] == b'T'
            && time.ends_with('Z'),
        "{launch}"
    );
}
