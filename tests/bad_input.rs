//! Bad input (SPEC section 4): every refusal before a run exits 2 with a message that says
//! where and why, never panics, leaves no process behind and loses nothing earlier runs logged.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_none_left, records, stderr, Scratch};

/// Asserts a refusal before anything ran: exit 2, no panic. Returns stderr.
fn refused(o: &Output) -> String {
    refused_with(o, 2)
}

/// `exec`'s refusal before anything ran, with env(1)'s codes: 126 for what policy refused,
/// 125 for bad usage or config. No panic. Returns stderr.
fn exec_refused(o: &Output, code: i32) -> String {
    refused_with(o, code)
}

fn refused_with(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{err}",
        common::stdout(o)
    );
    assert!(!err.contains("panicked"), "panic:\n{err}");
    err
}

fn assert_has(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "stderr lacks {p:?}:\n{err}");
    }
}

/// The report of an error at `file:line:col` (rendered as rustc does): `--> file:line:col`,
/// the source line `text` after its line number, and under it a caret at the column. Piped, so
/// plain: no escape byte.
fn assert_points(err: &str, file: &str, line: usize, col: usize, text: &str) {
    assert!(!err.contains('\x1b'), "colour on a pipe:\n{err}");
    assert_has(err, &[&format!("--> {file}:{line}:{col}\n")]);
    let source = format!("{line} | {text}");
    let lines: Vec<&str> = err.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == source)
        .unwrap_or_else(|| panic!("stderr lacks the line {source:?}:\n{err}"));
    let caret = lines.get(at + 1).copied().unwrap_or_default();
    let pad = " ".repeat(line.to_string().len());
    let expected = format!("{pad} | {}^", " ".repeat(col - 1));
    assert!(
        caret.starts_with(&expected),
        "no caret under column {col} ({expected:?}):\n{err}"
    );
}

/// An agent file `<name>.dsl` with one agent `name` on `tier` whose `on start` runs `stmt`
/// (written as-is, e.g. `execute_native("sh -c true")`). The statement is on line 3, column 14.
fn agent(s: &Scratch, name: &str, tier: &str, stmt: &str) -> String {
    let file = format!("{name}.dsl");
    s.write(
        &file,
        &format!("agent {name} {{\n  security {{ tier: {tier} }}\n  on start {{ {stmt} }}\n}}\n"),
    );
    file
}

/// A refused run started nothing: no run log directory, no process.
fn nothing_ran(s: &Scratch, name: &str) {
    assert!(
        !s.path("data/runs").exists(),
        "a refused run left run logs under {}",
        s.path("data/runs").display()
    );
    assert_none_left(name);
}

/// A config that does not allow native execution (tier None by default), with this scratch
/// directory's working and data directories.
fn config_without_native(s: &Scratch) -> PathBuf {
    s.write(
        "config.toml",
        &format!(
            "[security]\ndefault_sandbox_tier = \"None\"\n\n\
             [native_execution]\nworking_directory = \"{}\"\nkill_grace_seconds = 1\n\n\
             [supervisor]\ndata_dir = \"{}\"\n",
            s.work().display(),
            s.path("data").display()
        ),
    )
}

/// `name` looked up on this process's PATH (the binary inherits it).
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A program that exists on this machine and is not in the default allowlist.
fn unlisted_program() -> (&'static str, PathBuf) {
    ["perl", "env", "id"]
        .into_iter()
        .find_map(|n| on_path(n).map(|p| (n, p)))
        .expect("perl, env or id on PATH")
}

/// Runs `bad.toml` as the config of a valid agent and returns stderr of the refusal.
fn bad_config(test: &str, agent_name: &str, toml: &str) -> String {
    let s = Scratch::new(test);
    s.write("bad.toml", toml);
    let file = agent(&s, agent_name, "None", "execute_native(\"sh -c true\")");
    let err = refused(&s.run(&["run", &file, "--config", "bad.toml"]));
    nothing_ran(&s, agent_name);
    err
}

// ---------------------------------------------------------------------------------------------
// Configuration files

#[test]
fn malformed_toml_is_refused_with_its_location() {
    let err = bad_config(
        "bad-toml",
        "BadTomlAgent",
        "[security]\nallow_native_execution = true\n[native_execution\nmax_memory_mb = 5\n",
    );
    assert_has(&err, &["error: invalid TOML", "expected `]`"]);
    // The parser's span, shown with its source line (piped: no colour).
    assert_points(&err, "bad.toml", 3, 18, "[native_execution");
}

#[test]
fn unknown_config_key_names_the_nearest_valid_key() {
    let err = bad_config(
        "unknown-key",
        "UnknownKeyAgent",
        "[security]\nallow_native_execution = true\n\n[native_execution]\nmax_memroy_mb = 512\n",
    );
    assert_has(
        &err,
        &[
            "bad.toml:5:1",
            "unknown key `max_memroy_mb`",
            "[native_execution]",
            "\n  = help: did you mean `max_memory_mb`?",
        ],
    );
    assert_points(&err, "bad.toml", 5, 1, "max_memroy_mb = 512");
    assert!(
        err.contains("\n  | ^^^^^^^^^^^^^\n"),
        "the key underlined:\n{err}"
    );
}

#[test]
fn wrong_type_in_config_says_what_was_expected() {
    let err = bad_config(
        "wrong-type",
        "WrongTypeAgent",
        "[native_execution]\nmax_memory_mb = \"lots\"\n",
    );
    assert_has(
        &err,
        &[
            "bad.toml:2:17",
            "`max_memory_mb` must be a positive integer",
            "found \"lots\"",
        ],
    );
    assert_points(&err, "bad.toml", 2, 17, "max_memory_mb = \"lots\"");
}

#[test]
fn negative_and_zero_limits_in_config_are_refused() {
    for (i, (line, at, expected)) in [
        ("max_memory_mb = -5", "bad.toml:2:17", "a positive integer"),
        ("max_memory_mb = 0", "bad.toml:2:17", "a positive integer"),
        ("max_cpu_seconds = 0", "bad.toml:2:19", "a positive integer"),
        ("max_cpu_cores = -1.5", "bad.toml:2:17", "a positive number"),
        ("max_cpu_cores = 0", "bad.toml:2:17", "a positive number"),
        (
            "max_execution_time_seconds = -1",
            "bad.toml:2:30",
            "a positive integer",
        ),
        ("max_processes = 0", "bad.toml:2:17", "a positive integer"),
        ("kill_grace_seconds = -1", "bad.toml:2:22", "a number >= 0"),
    ]
    .into_iter()
    .enumerate()
    {
        let key = line.split(' ').next().unwrap();
        let value = line.rsplit(' ').next().unwrap();
        let err = bad_config(
            &format!("limit-{i}"),
            &format!("LimitAgent{i}"),
            &format!("[native_execution]\n{line}\n"),
        );
        assert_has(
            &err,
            &[
                at,
                &format!("`{key}` must be {expected}"),
                &format!("found {value}"),
            ],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Agent files

#[test]
fn agent_file_unterminated_string_shows_the_line_and_a_caret() {
    let s = Scratch::new("unterminated");
    s.config("");
    let name = "UnterminatedAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c 'echo hi')");
    let err = refused(&s.run(&["run", &file]));
    assert_has(&err, &["error: unterminated string"]);
    assert_points(
        &err,
        &file,
        3,
        29,
        "  on start { execute_native(\"sh -c 'echo hi') }",
    );
    nothing_ran(&s, name);
}

#[test]
fn agent_file_unknown_block_shows_the_line_and_a_caret() {
    let s = Scratch::new("unknown-block");
    s.config("");
    let name = "UnknownBlockAgent";
    let file = "unknown_block.dsl";
    s.write(
        file,
        &format!(
            "agent {name} {{\n  security {{ tier: None }}\n  bogus {{ x: 1 }}\n  on start {{ execute_native(\"sh -c true\") }}\n}}\n"
        ),
    );
    let err = refused(&s.run(&["run", file]));
    assert_has(
        &err,
        &[
            "error: unknown block `bogus`",
            "expected metadata, security, limits, env or on",
        ],
    );
    assert_points(&err, file, 3, 3, "  bogus { x: 1 }");
    nothing_ran(&s, name);
}

#[test]
fn execute_native_in_a_tier1_agent_is_refused() {
    let s = Scratch::new("native-in-tier1");
    s.config("");
    let name = "NativeInTier1Agent";
    let file = agent(&s, name, "Tier1", "execute_native(\"sh -c true\")");
    // Not even --native makes a file that contradicts itself run.
    for extra in [&[][..], &["--native"][..]] {
        let mut args = vec!["run", file.as_str()];
        args.extend_from_slice(extra);
        let err = refused(&s.run(&args));
        assert_has(&err, &["error: ", "execute_native", "Tier1"]);
        assert_points(
            &err,
            &file,
            3,
            14,
            "  on start { execute_native(\"sh -c true\") }",
        );
    }
    nothing_ran(&s, name);
}

// ---------------------------------------------------------------------------------------------
// Native execution consent

const THREE_WAYS: [&str; 3] = [
    "--native",
    "allow_native_execution",
    "SYMBIONT_ALLOW_NATIVE_EXECUTION",
];

#[test]
fn native_agent_with_native_disabled_is_refused_naming_the_three_ways() {
    let s = Scratch::new("native-disabled");
    config_without_native(&s);
    let name = "NativeDisabledAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c 'echo ran'\")");
    let err = refused(&s.run(&["run", &file]));
    assert_has(&err, &["error: ", "disabled"]);
    assert_has(&err, &THREE_WAYS);
    assert_points(&err, &file, 2, 20, "  security { tier: None }");
    // The same for an ad-hoc command.
    let err = exec_refused(&s.run(&["exec", "--", "sh", "-c", "echo ran"]), 126);
    assert_has(&err, &["disabled"]);
    assert_has(&err, &THREE_WAYS);
    nothing_ran(&s, name);
    assert_none_left("exec");
}

#[test]
fn native_flag_lets_the_same_agent_run() {
    let s = Scratch::new("native-flag");
    config_without_native(&s);
    let name = "NativeFlagAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c 'echo ran'\")");
    let o = s.run(&["run", &file, "--native", "--json"]);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    let recs = records(&o);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["agent"], name);
    assert_eq!(recs[0]["exit_code"], 0);
    assert_eq!(recs[0]["stdout_tail"][0], "ran");
    assert_none_left(name);
    // The environment variable is the same consent.
    let o = s
        .command(&["run", &file, "--json"])
        .env("SYMBIONT_ALLOW_NATIVE_EXECUTION", "true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    assert_none_left(name);
}

// ---------------------------------------------------------------------------------------------
// The executable allowlist

/// A native agent running the command `setup` returns (after preparing the scratch directory)
/// under the default allowlist: refused as not allowed.
fn not_allowed(test: &str, name: &str, setup: impl FnOnce(&Scratch) -> String) -> String {
    let s = Scratch::new(test);
    s.config("");
    let command = setup(&s);
    let file = agent(&s, name, "None", &format!("execute_native(\"{command}\")"));
    let err = refused(&s.run(&["run", &file]));
    assert_has(
        &err,
        &[
            "error: ",
            "is not an allowed executable",
            "Allowed: bash",
            "sh",
            "python3",
            "node",
            "allowed_executables",
        ],
    );
    assert_points(
        &err,
        &file,
        3,
        14,
        &format!("  on start {{ execute_native(\"{command}\") }}"),
    );
    nothing_ran(&s, name);
    err
}

#[test]
fn executable_not_allowed_lists_the_allowlist() {
    let (prog, _) = unlisted_program();
    let err = not_allowed("not-allowed", "NotAllowedAgent", |_| format!("{prog} -e 1"));
    assert_has(&err, &[&format!("`{prog}`")]);
}

#[test]
fn executable_not_found_names_path() {
    let s = Scratch::new("not-found");
    s.config("");
    let name = "NotFoundAgent";
    let file = agent(
        &s,
        name,
        "None",
        "execute_native(\"nosuchprog-xyz --flag\")",
    );
    let err = refused(&s.run(&["run", &file]));
    assert_has(
        &err,
        &["error: ", "`nosuchprog-xyz`", "command not found", "PATH="],
    );
    assert!(!err.contains("命令未找到"), "{err}");
    assert_points(
        &err,
        &file,
        3,
        14,
        "  on start { execute_native(\"nosuchprog-xyz --flag\") }",
    );
    nothing_ran(&s, name);
}

#[test]
fn symlink_named_python3_in_the_working_directory_is_refused() {
    let err = not_allowed("bypass-symlink", "SymlinkBypassAgent", |s| {
        std::os::unix::fs::symlink("/bin/sh", s.work().join("python3")).unwrap();
        "./python3 -c 'echo hi'".into()
    });
    assert_has(&err, &["`./python3`"]);
}

#[test]
fn copy_of_sh_named_bash_elsewhere_is_refused() {
    let err = not_allowed("bypass-copy", "CopyBypassAgent", |s| {
        let other = s.path("other");
        std::fs::create_dir_all(&other).unwrap();
        let copy = other.join("bash");
        std::fs::copy("/bin/sh", &copy).unwrap();
        format!("{} -c 'echo hi'", copy.display())
    });
    assert_has(&err, &["/other/bash`"]);
}

#[test]
fn absolute_path_not_listed_is_refused() {
    let (_, abs) = unlisted_program();
    let err = not_allowed("bypass-abs", "AbsPathAgent", |_| {
        format!("{} -e 1", abs.display())
    });
    assert_has(&err, &[&format!("`{}`", abs.display())]);
}

#[test]
fn env_wrapper_is_refused() {
    if on_path("env").is_none() {
        return;
    }
    let err = not_allowed("bypass-env", "EnvWrapperAgent", |_| {
        "env bash -c 'echo hi'".into()
    });
    assert_has(&err, &["`env`"]);
}

// ---------------------------------------------------------------------------------------------
// The working directory

const WD_FIX: [&str; 2] = ["mkdir -p", "native_execution.working_directory"];

#[test]
fn working_directory_that_cannot_be_created_is_refused() {
    // /proc refuses new entries even to root (which bypasses permission bits).
    let dir = "/proc/symbiont-no/dir";
    let s = Scratch::new("wd-create");
    s.write(
        "config.toml",
        &format!(
            "[security]\nallow_native_execution = true\ndefault_sandbox_tier = \"None\"\n\n\
             [native_execution]\nworking_directory = \"{dir}\"\n\n[supervisor]\ndata_dir = \"{}\"\n",
            s.path("data").display()
        ),
    );
    let name = "WdCreateAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    let err = refused(&s.run(&["run", &file]));
    assert_has(&err, &["cannot create the working directory", dir]);
    assert_has(&err, &WD_FIX);
    // The reason is the OS's own: a missing entry is not called "permission denied".
    assert!(
        !(err.contains("No such file or directory")
            && err.to_lowercase().contains("permission denied")),
        "{err}"
    );
    nothing_ran(&s, name);
    let err = exec_refused(&s.run(&["exec", "--", "sh", "-c", "true"]), 125);
    assert_has(&err, &["cannot create the working directory", dir]);
    assert_has(&err, &WD_FIX);
    assert_none_left("exec");
    assert!(!Path::new(dir).exists());
}

#[test]
fn working_directory_permission_denied_says_so() {
    let s = Scratch::new("wd-denied");
    s.config("");
    let name = "WdDeniedAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    // /sys refuses mkdir (EPERM, EACCES or EROFS, root or not); /proc/sys exists and is not
    // writable, even for root.
    for (dir, what) in [
        (
            "/sys/symbiont-no/dir",
            "cannot create the working directory",
        ),
        ("/proc/sys", "is not writable"),
    ] {
        let err = refused(
            &s.command(&["run", &file])
                .env("SYMBIONT_NATIVE_WORKING_DIR", dir)
                .output()
                .unwrap(),
        );
        assert_has(
            &err,
            &[
                what,
                dir,
                "permission denied",
                "SYMBIONT_NATIVE_WORKING_DIR",
            ],
        );
        assert_has(&err, &WD_FIX);
    }
    nothing_ran(&s, name);
}

#[test]
fn unwritable_data_directory_is_named() {
    let s = Scratch::new("data-denied");
    s.config("");
    let name = "DataDeniedAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    let dir = "/proc/symbiont-no/data";
    let err = refused(
        &s.command(&["run", &file])
            .env("SYMBIONT_DATA_DIR", dir)
            .output()
            .unwrap(),
    );
    assert_has(&err, &["cannot start the supervisor", dir, "data_dir"]);
    nothing_ran(&s, name);
}

// ---------------------------------------------------------------------------------------------
// Container tiers

#[test]
fn tier1_agent_is_refused_naming_the_missing_runtime() {
    let s = Scratch::new("tier1-agent");
    s.config("");
    let name = "Tier1Agent";
    let file = format!("{name}.dsl");
    s.write(
        &file,
        &format!("agent {name} {{\n  security {{ tier: Tier1 image: \"busybox\" }}\n  on start {{ execute(\"sh -c true\") }}\n}}\n"),
    );
    // No daemon at that socket: refused before anything starts, naming what is missing.
    let t = std::time::Instant::now();
    let o = s
        .command(&["run", &file])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = refused(&o);
    assert_has(
        &err,
        &[
            "Tier1",
            "no container daemon answers at unix:///nonexistent/docker.sock",
            "DOCKER_HOST",
            "dockerd",
        ],
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "a missing daemon must fail fast"
    );
    nothing_ran(&s, name);
    // Without an image it is refused at the agent's tier, with the line and a caret.
    s.write(&file, &format!("agent {name} {{\n  security {{ tier: Tier1 }}\n  on start {{ execute(\"sh -c true\") }}\n}}\n"));
    let err = refused(&s.run(&["run", &file]));
    assert_has(&err, &["error: ", "needs an image", "--image"]);
    assert_points(&err, &file, 2, 20, "  security { tier: Tier1 }");
    nothing_ran(&s, name);
}

#[test]
fn exec_on_container_tiers_is_refused_naming_what_is_missing() {
    let s = Scratch::new("tier1-exec");
    s.config("");
    for tier in ["tier1", "docker", "tier2", "gvisor"] {
        let o = s
            .command(&[
                "exec",
                &format!("--sandbox-tier={tier}"),
                "--image",
                "busybox",
                "--",
                "sh",
                "-c",
                "true",
            ])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert_has(
            &exec_refused(&o, 125),
            &["no container daemon answers", "DOCKER_HOST"],
        );
        assert_has(
            &exec_refused(
                &s.run(&[
                    "exec",
                    &format!("--sandbox-tier={tier}"),
                    "--",
                    "sh",
                    "-c",
                    "true",
                ]),
                125,
            ),
            &["needs an image"],
        );
    }
    assert_has(
        &exec_refused(&s.run(&["exec", "--sandbox-tier=tier3", "--", "sh"]), 125),
        &["Tier3", "microvm", "scripts/microvm-assets"],
    );
    nothing_ran(&s, "exec");
}

// ---------------------------------------------------------------------------------------------
// Triggers, environment and flags

#[test]
fn unknown_trigger_lists_the_available_ones() {
    let s = Scratch::new("trigger");
    s.config("");
    let name = "TriggerAgent";
    let file = "trigger.dsl";
    s.write(
        file,
        &format!(
            "agent {name} {{\n  security {{ tier: None }}\n  on start {{ execute_native(\"sh -c true\") }}\n  \
             on trigger \"build\" {{ execute_native(\"sh -c true\") }}\n}}\n"
        ),
    );
    let err = refused(&s.run(&["run", file, "--trigger", "nosuch"]));
    assert_has(
        &err,
        &["--trigger nosuch", "`nosuch`", "available: build, start"],
    );
    nothing_ran(&s, name);
}

#[test]
fn symbiont_config_pointing_nowhere_names_the_variable() {
    let s = Scratch::new("config-env");
    let name = "ConfigEnvAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    let err = refused(
        &s.command(&["run", &file, "--native"])
            .env("SYMBIONT_CONFIG", "/nonexistent")
            .output()
            .unwrap(),
    );
    assert_has(&err, &["SYMBIONT_CONFIG=/nonexistent", "not found"]);
    nothing_ran(&s, name);
}

#[test]
fn bad_env_override_names_the_variable_and_value() {
    let s = Scratch::new("env-override");
    s.config("");
    let name = "EnvOverrideAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    let err = refused(
        &s.command(&["run", &file])
            .env("SYMBIONT_NATIVE_MAX_MEMORY_MB", "abc")
            .output()
            .unwrap(),
    );
    assert_has(
        &err,
        &["SYMBIONT_NATIVE_MAX_MEMORY_MB=abc", "a positive integer"],
    );
    nothing_ran(&s, name);
}

#[test]
fn bad_flag_values_name_the_flag() {
    let s = Scratch::new("flags");
    s.config("");
    let name = "FlagAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    for (flag, name_in_msg, value) in [
        ("--max-memory=abc", "--max-memory", "abc"),
        ("--max-memory=0", "--max-memory", "0"),
        ("--max-cpu=-1", "--max-cpu", "-1"),
        ("--sandbox-tier=tier9", "--sandbox-tier", "tier9"),
    ] {
        let err = refused(&s.run(&["run", &file, flag]));
        assert_has(&err, &[name_in_msg, &format!("'{value}'")]);
        let err = exec_refused(&s.run(&["exec", flag, "--", "sh", "-c", "true"]), 125);
        assert_has(&err, &[name_in_msg, &format!("'{value}'")]);
    }
    nothing_ran(&s, name);
    assert_none_left("exec");
}

// ---------------------------------------------------------------------------------------------
// What earlier runs logged survives a bad one

#[test]
fn a_bad_run_does_not_lose_what_an_earlier_run_logged() {
    let s = Scratch::new("keep-logs");
    s.config("");
    let name = "KeepLogsAgent";
    let good = agent(
        &s,
        name,
        "None",
        "execute_native(\"sh -c 'echo kept-output'\")",
    );
    let o = s.run(&["run", &good, "--json"]);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(&o));
    let recs = records(&o);
    assert_eq!(recs.len(), 1);
    let stdout_log = PathBuf::from(recs[0]["stdout_log"].as_str().unwrap());
    assert_none_left(name);
    let audit_path = s.path("data/audit.jsonl");
    let before = std::fs::read_to_string(&audit_path).unwrap();

    // Bad invocations of every kind, against the same data directory.
    let bad_name = "KeepLogsBadAgent";
    let bad = agent(&s, bad_name, "None", "execute_native(\"nosuchprog-xyz\")");
    refused(&s.run(&["run", &bad]));
    refused(&s.run(&["run", &good, "--max-memory=0"]));
    refused(
        &s.command(&["run", &good])
            .env("SYMBIONT_NATIVE_MAX_MEMORY_MB", "abc")
            .output()
            .unwrap(),
    );
    s.write(
        "broken.dsl",
        "agent Broken {\n  on start { execute_native(\"sh\n}\n",
    );
    refused(&s.run(&["run", "broken.dsl"]));
    assert_none_left(bad_name);

    let after = std::fs::read_to_string(&audit_path).unwrap();
    assert_eq!(after, before, "the audit log changed");
    let lines: Vec<serde_json::Value> = after
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for event in ["launch", "exit"] {
        assert!(
            lines
                .iter()
                .any(|l| l["event"] == event && l["agent"] == name),
            "no {event} line for {name} in:\n{after}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&stdout_log).unwrap(),
        "kept-output\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Ranges (issue 18): every numeric value has a documented range, checked at load

#[test]
fn a_huge_kill_grace_is_refused_with_its_range() {
    let err = bad_config(
        "huge-grace",
        "HugeGraceAgent",
        "[native_execution]\nkill_grace_seconds = 1e300\n",
    );
    assert_has(
        &err,
        &[
            "bad.toml:2:22",
            "`native_execution.kill_grace_seconds` must be from 0 to 3600",
            "found 1e300",
        ],
    );
}

#[test]
fn values_the_kernel_would_refuse_are_refused_at_load() {
    for (i, (line, at, key)) in [
        ("max_cpu_cores = 1e300", "bad.toml:2:17", "max_cpu_cores"),
        (
            "max_processes = 18446744073709551615",
            "bad.toml:2:17",
            "max_processes",
        ),
        ("max_memory_mb = 1", "bad.toml:2:17", "max_memory_mb"),
        (
            "max_memory_mb = 999999999999",
            "bad.toml:2:17",
            "max_memory_mb",
        ),
        (
            "max_execution_time_seconds = 86401",
            "bad.toml:2:30",
            "max_execution_time_seconds",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let err = bad_config(
            &format!("range-{i}"),
            &format!("RangeAgent{i}"),
            &format!("[native_execution]\n{line}\n"),
        );
        assert_has(
            &err,
            &[at, &format!("`native_execution.{key}` must be from")],
        );
    }
}

#[test]
fn an_out_of_range_env_override_names_the_variable() {
    let s = Scratch::new("range-env");
    s.config("");
    let file = agent(
        &s,
        "RangeEnvAgent",
        "None",
        "execute_native(\"sh -c true\")",
    );
    let o = s
        .command(&["run", &file])
        .env("SYMBIONT_NATIVE_MAX_CPU_CORES", "1e300")
        .output()
        .unwrap();
    let err = refused(&o);
    assert_has(
        &err,
        &["SYMBIONT_NATIVE_MAX_CPU_CORES=1e300", "must be from 0.01"],
    );
    nothing_ran(&s, "RangeEnvAgent");
}

#[test]
fn an_out_of_range_flag_names_the_flag() {
    let s = Scratch::new("range-flag");
    s.config("");
    let file = agent(
        &s,
        "RangeFlagAgent",
        "None",
        "execute_native(\"sh -c true\")",
    );
    let err = refused(&s.run(&["run", &file, "--max-cpu", "1e300"]));
    assert_has(&err, &["--max-cpu=", "must be from 0.01"]);
    let err = refused(&s.run(&["run", &file, "--timeout", "18446744073709551615"]));
    assert_has(&err, &["--timeout=18446744073709551615", "at most a day"]);
    nothing_ran(&s, "RangeFlagAgent");
}

#[test]
fn an_out_of_range_agent_limit_shows_the_line_and_a_caret() {
    let s = Scratch::new("range-agent");
    s.config("");
    s.write(
        "a.dsl",
        "agent RangeDslAgent {\n  limits { max_cpu_cores: 100000 }\n  on start { execute_native(\"sh -c true\") }\n}\n",
    );
    let err = refused(&s.run(&["run", "a.dsl"]));
    assert_has(
        &err,
        &["a.dsl:2:27", "`max_cpu_cores: 100000` is out of range", "^"],
    );
    nothing_ran(&s, "RangeDslAgent");
}

#[test]
fn an_agent_file_cannot_set_loader_variables() {
    let s = Scratch::new("loader-env");
    s.config("");
    for (i, name) in ["LD_PRELOAD", "DYLD_INSERT_LIBRARIES", "PATH", "PYTHONPATH"]
        .into_iter()
        .enumerate()
    {
        let file = format!("l{i}.dsl");
        s.write(
            &file,
            &format!(
                "agent LoaderAgent{i} {{\n  env {{ {name}: \"/tmp/x.so\" }}\n  on start {{ execute_native(\"sh -c true\") }}\n}}\n"
            ),
        );
        let err = refused(&s.run(&["run", &file]));
        assert_has(
            &err,
            &[
                &format!("{file}:2:9"),
                &format!("an agent file cannot set `{name}`"),
                "the operator can, in the config",
            ],
        );
        nothing_ran(&s, &format!("LoaderAgent{i}"));
    }
}

/// Loading is linear: `check` of one file of 100k agents. The bound here is loose (a debug
/// build on a shared CI machine); the figure belongs to `cargo bench --bench native --only check`.
#[test]
fn check_of_100k_agents_is_linear() {
    let s = Scratch::new("check-100k");
    s.config("");
    let mut text = String::with_capacity(100_000 * 120);
    for i in 0..100_000 {
        text.push_str(&format!(
            "agent A{i} {{\n  security {{ tier: None }}\n  limits {{ max_memory_mb: 512 timeout: 30s }}\n  on trigger \"t\" {{ execute_native(\"sh -c true\") }}\n}}\n"
        ));
    }
    s.write("many.dsl", &text);
    let t = std::time::Instant::now();
    let o = s.run(&["check", "--native", "many.dsl"]);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        took < std::time::Duration::from_secs(60),
        "check of 100k agents took {took:?}"
    );
}

#[test]
fn timeout_flag_takes_durations_as_agent_files_write_them() {
    let s = Scratch::new("timeout-flag");
    s.config("");
    let name = "TimeoutFlagAgent";
    let file = agent(&s, name, "None", "execute_native(\"sh -c true\")");
    for ok in ["30s", "5m", "300"] {
        let o = s.run(&["run", &file, "--native", "--json", "--timeout", ok]);
        assert_eq!(o.status.code(), Some(0), "--timeout {ok}:\n{}", stderr(&o));
    }
    for (bad, why) in [
        ("5x", "unknown unit `x`"),
        ("1.5s", "whole number of seconds"),
        ("0s", "not a positive duration"),
        ("soon", "not a duration"),
    ] {
        let err = refused(&s.run(&["run", &file, "--native", "--timeout", bad]));
        assert_has(&err, &["--timeout", why]);
    }
    assert_none_left(name);
}

/// stderr of `symbiont check --config bad.toml` written to a pseudo-terminal, with `NO_COLOR`
/// set to `no_color` (or unset).
fn on_a_terminal(s: &Scratch, no_color: Option<&str>) -> String {
    use std::io::Read;
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = s.command(&["check", "--config", "bad.toml"]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(pty.slave));
    match no_color {
        Some(v) => cmd.env("NO_COLOR", v),
        None => cmd.env_remove("NO_COLOR"),
    };
    let status = cmd.status().unwrap();
    assert_eq!(status.code(), Some(2));
    // The last copy of the terminal's other end goes with the command: then the read ends.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Linux reports the closed other end as EIO once the buffered bytes are read.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

#[test]
fn errors_are_coloured_on_a_terminal_unless_no_color_is_set() {
    let s = Scratch::new("colour");
    s.write("bad.toml", "[native_execution]\nmax_memroy_mb = 1\n");
    let coloured = on_a_terminal(&s, None);
    assert!(
        coloured.contains('\x1b'),
        "no colour on a terminal:\n{coloured}"
    );
    assert!(coloured.contains("max_memroy_mb = 1"), "{coloured}");
    for off in ["1", "true"] {
        let plain = on_a_terminal(&s, Some(off));
        assert!(
            !plain.contains('\x1b'),
            "colour with NO_COLOR={off}:\n{plain}"
        );
        assert_points(&plain, "bad.toml", 2, 1, "max_memroy_mb = 1");
    }
}
