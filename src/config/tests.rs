use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const OPTION1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seed_option1.toml"
);
const FULL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seed_full.toml");

fn no_env(_: &str) -> Option<String> {
    None
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "symbiont-config-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            tag
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(text: &str) -> Result<LoadedConfig, ConfigError> {
    parse_str(text, Path::new("config.toml"))
}

/// The error on one line, `config.toml:line:col: message; help`; the rendering with the source
/// line is tested in `crate::diagnostic` and tests/bad_input.rs.
fn parse_err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error for:\n{text}\ngot {c:?}"),
        Err(e) => {
            let rendered = e.to_string();
            let Some(at) = e.location() else {
                return rendered;
            };
            assert!(
                rendered.contains(&format!("--> {}:{}:{}", at.file, at.line, at.column)),
                "{rendered}"
            );
            match e.help() {
                Some(h) => format!(
                    "{}:{}:{}: {}; {h}",
                    at.file,
                    at.line,
                    at.column,
                    e.message()
                ),
                None => format!("{}:{}:{}: {}", at.file, at.line, at.column, e.message()),
            }
        }
    }
}

fn file_origin(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line,
    }
}

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_match_the_spec_table() {
    let c = Config::default();
    assert!(!c.security.allow_native_execution);
    assert_eq!(c.security.default_sandbox_tier, SecurityTier::Tier1);
    let n = &c.native_execution;
    assert_eq!(
        n.default_executable,
        if cfg!(windows) { "cmd" } else { "bash" }
    );
    if cfg!(windows) {
        assert_eq!(
            n.working_directory,
            std::env::temp_dir().join("symbiont-native")
        );
    } else {
        assert_eq!(n.working_directory, PathBuf::from("/tmp/symbiont-native"));
    }
    assert!(n.enforce_resource_limits);
    assert_eq!(n.max_memory_mb, Some(2048));
    assert_eq!(n.max_cpu_seconds, Some(300));
    assert_eq!(n.max_cpu_cores, None);
    assert_eq!(n.max_execution_time_seconds, 300);
    if cfg!(windows) {
        assert_eq!(
            n.allowed_executables,
            ["cmd", "powershell", "pwsh", "python", "node"]
        );
    } else {
        assert_eq!(
            n.allowed_executables,
            ["bash", "sh", "python3", "python", "node"]
        );
    }
    assert_eq!(n.max_processes, 256);
    assert_eq!(n.max_file_size_mb, 1024);
    if cfg!(windows) {
        // Windows programs need a few system variables to start at all.
        for v in ["PATH", "PATHEXT", "SystemRoot", "TEMP", "LANG", "TZ"] {
            assert!(n.env_passthrough.iter().any(|p| p == v), "{v}");
        }
    } else {
        assert_eq!(
            n.env_passthrough,
            ["PATH", "HOME", "LANG", "TERM", "TZ", "USER"]
        );
    }
    assert_eq!(n.kill_grace_seconds, 5.0);
    assert_eq!(c.dashboard.refresh_ms, 1000);
    assert_eq!(c.dashboard.warn_ratio, 0.8);
    assert_eq!(c.dashboard.critical_ratio, 0.95);
    assert!(c.dashboard.keys.is_empty());
    assert_eq!(
        c.supervisor.data_dir,
        default_data_dir(&|k| std::env::var(k).ok())
    );
    assert_eq!(c.supervisor.audit_log, None);
    assert_eq!(c.supervisor.tail_lines, 200);
    assert_eq!(c.supervisor.max_log_mb, 64);
    assert_eq!(c.containers, ContainersConfig::default());
    assert_eq!(c.containers.docker_host, None);
}

#[test]
fn no_file_no_env_gives_defaults_with_default_origins() {
    let dir = Scratch::new("nofile");
    let loaded = load_with(None, &no_env, &dir.0).unwrap();
    let mut expected = Config::default();
    expected.supervisor.data_dir = default_data_dir(&no_env);
    assert_eq!(loaded.config, expected);
    assert_eq!(loaded.file, None);
    assert!(loaded.unused.is_empty());
    assert_eq!(loaded.origins.len(), 36);
    assert!(loaded.origins.values().all(|o| *o == Origin::Default));
    for key in [
        "security.allow_native_execution",
        "security.default_sandbox_tier",
        "native_execution.max_memory_mb",
        "native_execution.kill_grace_seconds",
        "dashboard.refresh_ms",
        "supervisor.data_dir",
        "containers.docker_host",
    ] {
        assert_eq!(loaded.origin(key), Some(&Origin::Default), "{key}");
    }
}

#[test]
fn audit_log_path_defaults_under_data_dir() {
    let mut s = SupervisorConfig {
        data_dir: PathBuf::from("./data"),
        ..SupervisorConfig::default()
    };
    assert_eq!(s.audit_log_path(), PathBuf::from("./data/audit.jsonl"));
    s.data_dir = PathBuf::from("/var/lib/symbiont");
    assert_eq!(
        s.audit_log_path(),
        PathBuf::from("/var/lib/symbiont/audit.jsonl")
    );
    s.audit_log = Some(PathBuf::from("/log/a.jsonl"));
    assert_eq!(s.audit_log_path(), PathBuf::from("/log/a.jsonl"));
}

// ---------------------------------------------------------------- the seed's two forms

#[test]
fn seed_option1_loads() {
    let path = Path::new(OPTION1);
    let loaded = load_with(Some(path), &no_env, Path::new("/nonexistent")).unwrap();
    let c = &loaded.config;
    assert!(c.security.allow_native_execution);
    assert_eq!(c.security.default_sandbox_tier, SecurityTier::None);
    let n = &c.native_execution;
    assert!(n.enforce_resource_limits);
    assert_eq!(n.max_memory_mb, Some(2048));
    assert_eq!(n.max_cpu_cores, Some(4.0));
    assert_eq!(n.max_execution_time_seconds, 300);
    assert_eq!(n.working_directory, PathBuf::from("/tmp/symbiont-native"));
    assert_eq!(n.allowed_executables, ["python3", "node", "bash"]);
    // not in the file: defaults
    assert_eq!(n.max_cpu_seconds, Some(300));
    // The platform's default (the seed's file does not name one).
    let platform_default = if cfg!(windows) { "cmd" } else { "bash" };
    assert_eq!(n.default_executable, platform_default);
    assert_eq!(loaded.file.as_deref(), Some(path));
    assert!(loaded.unused.is_empty(), "{:?}", loaded.unused);

    let o = |k: &str| loaded.origin(k).unwrap().clone();
    assert_eq!(o("security.allow_native_execution"), file_origin(path, 5));
    assert_eq!(o("security.default_sandbox_tier"), file_origin(path, 7));
    assert_eq!(
        o("native_execution.enforce_resource_limits"),
        file_origin(path, 11)
    );
    assert_eq!(o("native_execution.max_memory_mb"), file_origin(path, 13));
    assert_eq!(o("native_execution.max_cpu_cores"), file_origin(path, 15));
    assert_eq!(
        o("native_execution.allowed_executables"),
        file_origin(path, 21)
    );
    assert_eq!(o("native_execution.max_cpu_seconds"), Origin::Default);
    assert_eq!(
        o("native_execution.max_memory_mb").to_string(),
        format!("{OPTION1}:13")
    );
}

#[test]
fn seed_full_loads() {
    let path = Path::new(FULL);
    let loaded = load_with(Some(path), &no_env, Path::new("/nonexistent")).unwrap();
    let c = &loaded.config;
    assert!(c.security.allow_native_execution, "enabled = true");
    assert_eq!(c.security.default_sandbox_tier, SecurityTier::Tier1);
    let n = &c.native_execution;
    assert_eq!(n.default_executable, "python3");
    assert_eq!(n.max_cpu_seconds, Some(300));
    assert_eq!(
        n.allowed_executables,
        ["python3", "python", "node", "bash", "sh"]
    );
    assert_eq!(
        loaded.unused,
        [
            "database",
            "logging",
            "security.enable_compression",
            "security.enable_backups",
            "security.enable_safety_checks",
            "storage",
        ]
    );
    // [api] and key_provider are the service's API on TCP (SPEC 2.8)
    let api = &c.api;
    assert_eq!(
        (
            api.host.as_str(),
            api.port,
            api.timeout_seconds,
            api.max_body_size
        ),
        ("127.0.0.1", Some(8080), Some(30), Some(10485760))
    );
    assert_eq!(c.security.key_provider.as_deref(), Some("SYMBIONT_KEY"));
    // `enabled` is recorded under the one switch's canonical name
    assert_eq!(
        loaded.origin("security.allow_native_execution"),
        Some(&file_origin(path, 37))
    );
    assert_eq!(
        loaded.origin("native_execution.default_executable"),
        Some(&file_origin(path, 38))
    );
    assert_eq!(
        loaded.origin("native_execution.allowed_executables"),
        Some(&file_origin(path, 44))
    );
}

#[test]
fn fixtures_are_the_seed_blocks_byte_for_byte() {
    // The seed lives beside the repository (`../shared/seed/`), as on CI; its absence is a
    // failure, not a pass.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed directory {} is missing: {e}", dir.display()));
    let seed: String = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    assert!(!seed.is_empty(), "no seed text in {}", dir.display());
    for fixture in [OPTION1, FULL] {
        let text = std::fs::read_to_string(fixture).unwrap();
        assert!(text.starts_with("# config.toml\n"));
        assert!(seed.contains(&text), "{fixture} is not a block of the seed");
    }
}

// ---------------------------------------------------------------- finding the file

#[test]
fn config_toml_in_cwd_is_used() {
    let dir = Scratch::new("cwd");
    let path = dir.write("config.toml", "[dashboard]\nrefresh_ms = 250\n");
    let loaded = load_with(None, &no_env, &dir.0).unwrap();
    assert_eq!(loaded.config.dashboard.refresh_ms, 250);
    assert_eq!(loaded.file.as_deref(), Some(path.as_path()));
    assert_eq!(
        loaded.origin("dashboard.refresh_ms"),
        Some(&file_origin(&path, 2))
    );
}

// Windows keeps the user's configuration under %APPDATA%, not XDG_CONFIG_HOME.
#[cfg(not(windows))]
#[test]
fn the_xdg_config_is_used_when_cwd_has_none_and_cwd_beats_it() {
    let dir = Scratch::new("xdg");
    let user = dir.write("xdg/symbiont/config.toml", "[dashboard]\nrefresh_ms = 7\n");
    let xdg = dir.0.join("xdg");
    let cwd = dir.0.join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let env = env_of(&[("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
    let loaded = load_with(None, &env, &cwd).unwrap();
    assert_eq!(loaded.config.dashboard.refresh_ms, 7);
    assert_eq!(loaded.file.as_deref(), Some(user.as_path()));
    // Without XDG_CONFIG_HOME, ~/.config.
    let home = dir.0.join("home");
    let at_home = dir.write(
        "home/.config/symbiont/config.toml",
        "[dashboard]\nrefresh_ms = 8\n",
    );
    let env = env_of(&[("HOME", home.to_str().unwrap())]);
    let loaded = load_with(None, &env, &cwd).unwrap();
    assert_eq!(loaded.file.as_deref(), Some(at_home.as_path()));
    // A relative XDG_CONFIG_HOME is ignored, as the XDG rules say.
    let refresh = |env: &dyn Fn(&str) -> Option<String>| {
        load_with(None, env, &cwd)
            .unwrap()
            .config
            .dashboard
            .refresh_ms
    };
    let env = env_of(&[("XDG_CONFIG_HOME", "xdg"), ("HOME", home.to_str().unwrap())]);
    assert_eq!(refresh(&env), 8);
    // ./config.toml beats it.
    dir.write("cwd/config.toml", "[dashboard]\nrefresh_ms = 9\n");
    assert_eq!(
        refresh(&env_of(&[("XDG_CONFIG_HOME", xdg.to_str().unwrap())])),
        9
    );
}

#[cfg(unix)]
#[test]
fn the_data_dir_defaults_to_xdg_state_never_the_cwd() {
    let dir = Scratch::new("state");
    let env = env_of(&[("XDG_STATE_HOME", "/st"), ("HOME", "/h")]);
    let loaded = load_with(None, &env, &dir.0).unwrap();
    assert_eq!(
        loaded.config.supervisor.data_dir,
        PathBuf::from("/st/symbiont")
    );
    assert_eq!(loaded.origin("supervisor.data_dir"), Some(&Origin::Default));
    let env = env_of(&[("HOME", "/h")]);
    let loaded = load_with(None, &env, &dir.0).unwrap();
    assert_eq!(
        loaded.config.supervisor.data_dir,
        PathBuf::from("/h/.local/state/symbiont")
    );
    // A config's explicit data_dir still means what it says, ./data included.
    dir.write("config.toml", "[supervisor]\ndata_dir = \"./data\"\n");
    let loaded = load_with(None, &env, &dir.0).unwrap();
    assert_eq!(loaded.config.supervisor.data_dir, PathBuf::from("./data"));
}

#[test]
fn symbiont_config_beats_cwd_and_explicit_beats_both() {
    let dir = Scratch::new("order");
    dir.write("config.toml", "[dashboard]\nrefresh_ms = 1\n");
    let from_env = dir.write("env.toml", "[dashboard]\nrefresh_ms = 2\n");
    let flag = dir.write("flag.toml", "[dashboard]\nrefresh_ms = 3\n");
    let env = env_of(&[("SYMBIONT_CONFIG", from_env.to_str().unwrap())]);
    assert_eq!(
        load_with(None, &env, &dir.0)
            .unwrap()
            .config
            .dashboard
            .refresh_ms,
        2
    );
    assert_eq!(
        load_with(Some(&flag), &env, &dir.0)
            .unwrap()
            .config
            .dashboard
            .refresh_ms,
        3
    );
    // relative paths resolve against cwd
    let env = env_of(&[("SYMBIONT_CONFIG", "env.toml")]);
    assert_eq!(
        load_with(None, &env, &dir.0)
            .unwrap()
            .config
            .dashboard
            .refresh_ms,
        2
    );
    assert_eq!(
        load_with(Some(Path::new("flag.toml")), &no_env, &dir.0)
            .unwrap()
            .config
            .dashboard
            .refresh_ms,
        3
    );
    // empty SYMBIONT_CONFIG is unset: back to ./config.toml
    let env = env_of(&[("SYMBIONT_CONFIG", "")]);
    assert_eq!(
        load_with(None, &env, &dir.0)
            .unwrap()
            .config
            .dashboard
            .refresh_ms,
        1
    );
}

#[test]
fn symbiont_config_pointing_to_a_missing_file_is_an_error() {
    let dir = Scratch::new("missing-env");
    dir.write("config.toml", ""); // must not be used as a fallback
    let env = env_of(&[("SYMBIONT_CONFIG", "/no/such/symbiont.toml")]);
    let err = load_with(None, &env, &dir.0).unwrap_err().to_string();
    assert!(
        err.contains("SYMBIONT_CONFIG=/no/such/symbiont.toml"),
        "{err}"
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn explicit_missing_file_is_an_error() {
    let dir = Scratch::new("missing-flag");
    dir.write("config.toml", "");
    let err = load_with(Some(Path::new("nope.toml")), &no_env, &dir.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.toml"), "{err}");
    assert!(err.contains("--config"), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn unreadable_config_is_an_error_naming_it() {
    let dir = Scratch::new("unreadable");
    let sub = dir.0.join("adir.toml");
    std::fs::create_dir(&sub).unwrap();
    let err = load_with(Some(&sub), &no_env, &dir.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot read config file"), "{err}");
    assert!(err.contains("adir.toml"), "{err}");
}

// ---------------------------------------------------------------- environment

/// (variable, value, key, check)
type EnvCase = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Config) -> bool,
);

#[test]
fn every_env_var_overrides_and_records_its_origin() {
    let cases: Vec<EnvCase> = vec![
        (
            "SYMBIONT_ALLOW_NATIVE_EXECUTION",
            "TRUE",
            "security.allow_native_execution",
            |c| c.security.allow_native_execution,
        ),
        (
            "SYMBIONT_NATIVE_ENABLED",
            "yes",
            "security.allow_native_execution",
            |c| c.security.allow_native_execution,
        ),
        (
            "SYMBIONT_DEFAULT_SANDBOX_TIER",
            "None",
            "security.default_sandbox_tier",
            |c| c.security.default_sandbox_tier == SecurityTier::None,
        ),
        (
            "SYMBIONT_NATIVE_MAX_MEMORY_MB",
            "512",
            "native_execution.max_memory_mb",
            |c| c.native_execution.max_memory_mb == Some(512),
        ),
        (
            "SYMBIONT_NATIVE_MAX_CPU_CORES",
            "4.0",
            "native_execution.max_cpu_cores",
            |c| c.native_execution.max_cpu_cores == Some(4.0),
        ),
        (
            "SYMBIONT_NATIVE_WORKING_DIR",
            "/srv/w",
            "native_execution.working_directory",
            |c| c.native_execution.working_directory == Path::new("/srv/w"),
        ),
        (
            "SYMBIONT_NATIVE_WORKING_DIRECTORY",
            "/srv/x",
            "native_execution.working_directory",
            |c| c.native_execution.working_directory == Path::new("/srv/x"),
        ),
        (
            "SYMBIONT_NATIVE_DEFAULT_EXECUTABLE",
            "python3",
            "native_execution.default_executable",
            |c| c.native_execution.default_executable == "python3",
        ),
        (
            "SYMBIONT_NATIVE_ENFORCE_RESOURCE_LIMITS",
            "0",
            "native_execution.enforce_resource_limits",
            |c| !c.native_execution.enforce_resource_limits,
        ),
        (
            "SYMBIONT_NATIVE_MAX_CPU_SECONDS",
            "none",
            "native_execution.max_cpu_seconds",
            |c| c.native_execution.max_cpu_seconds.is_none(),
        ),
        (
            "SYMBIONT_NATIVE_MAX_EXECUTION_TIME_SECONDS",
            "60",
            "native_execution.max_execution_time_seconds",
            |c| c.native_execution.max_execution_time_seconds == 60,
        ),
        (
            "SYMBIONT_NATIVE_ALLOWED_EXECUTABLES",
            "python3, /usr/bin/node,",
            "native_execution.allowed_executables",
            |c| c.native_execution.allowed_executables == ["python3", "/usr/bin/node"],
        ),
        (
            "SYMBIONT_NATIVE_MAX_PROCESSES",
            "32",
            "native_execution.max_processes",
            |c| c.native_execution.max_processes == 32,
        ),
        (
            "SYMBIONT_NATIVE_MAX_FILE_SIZE_MB",
            "10",
            "native_execution.max_file_size_mb",
            |c| c.native_execution.max_file_size_mb == 10,
        ),
        (
            "SYMBIONT_NATIVE_ENV_PASSTHROUGH",
            "PATH,AGENT_API_KEY",
            "native_execution.env_passthrough",
            |c| c.native_execution.env_passthrough == ["PATH", "AGENT_API_KEY"],
        ),
        (
            "SYMBIONT_NATIVE_ENV_FILE",
            "/etc/keys.env",
            "native_execution.env_file",
            |c| c.native_execution.env_file.as_deref() == Some(Path::new("/etc/keys.env")),
        ),
        (
            "SYMBIONT_NATIVE_MIN_SANDBOX",
            "strict",
            "native_execution.min_sandbox",
            |c| c.native_execution.min_sandbox == crate::tier::SandboxLevel::Strict,
        ),
        (
            "SYMBIONT_NATIVE_DENY_READ",
            "~/.secrets:/srv/keys",
            "native_execution.deny_read",
            |c| c.native_execution.deny_read == ["~/.secrets", "/srv/keys"],
        ),
        (
            "SYMBIONT_NATIVE_ALLOW_READ",
            "~/.ssh/known_hosts",
            "native_execution.allow_read",
            |c| c.native_execution.allow_read == ["~/.ssh/known_hosts"],
        ),
        (
            "SYMBIONT_NATIVE_ALLOW_WRITE",
            "~/.cache",
            "native_execution.allow_write",
            |c| c.native_execution.allow_write == ["~/.cache"],
        ),
        (
            "SYMBIONT_NATIVE_KILL_GRACE_SECONDS",
            "0.5",
            "native_execution.kill_grace_seconds",
            |c| c.native_execution.kill_grace_seconds == 0.5,
        ),
        (
            "SYMBIONT_NATIVE_WATCHDOG_INTERVAL_MS",
            "20",
            "native_execution.watchdog_interval_ms",
            |c| c.native_execution.watchdog_interval_ms == 20,
        ),
        (
            "SYMBIONT_DATA_DIR",
            "/var/lib/sym",
            "supervisor.data_dir",
            |c| c.supervisor.data_dir == Path::new("/var/lib/sym"),
        ),
    ];
    // every variable the module reads is covered here, with the key it sets
    let mut covered: Vec<(String, String)> = cases
        .iter()
        .map(|(var, _, key, _)| (var.to_string(), key.to_string()))
        .collect();
    let mut listed = env_variables();
    covered.sort();
    listed.sort();
    assert_eq!(covered, listed);

    let dir = Scratch::new("env");
    let defaults = Config::default();
    for (var, value, key, check) in cases {
        assert!(
            !check(&defaults),
            "{var}: the case must differ from the default"
        );
        let loaded = load_with(None, &env_of(&[(var, value)]), &dir.0)
            .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
        assert!(check(&loaded.config), "{var}={value} was not applied");
        assert_eq!(
            loaded.origin(key),
            Some(&Origin::Env(var.to_string())),
            "{var}"
        );
        // nothing else moved
        let changed = loaded
            .origins
            .iter()
            .filter(|(_, o)| **o != Origin::Default)
            .count();
        assert_eq!(changed, 1, "{var}");
    }
}

#[test]
fn env_overrides_the_file() {
    let dir = Scratch::new("precedence");
    let path = dir.write(
        "config.toml",
        "[native_execution]\nmax_memory_mb = 1024\nmax_processes = 64\nenabled = false\n",
    );
    let env = env_of(&[
        ("SYMBIONT_NATIVE_MAX_MEMORY_MB", "512"),
        ("SYMBIONT_ALLOW_NATIVE_EXECUTION", "true"),
    ]);
    let loaded = load_with(None, &env, &dir.0).unwrap();
    let n = &loaded.config.native_execution;
    assert_eq!(n.max_memory_mb, Some(512));
    assert_eq!(n.max_processes, 64);
    assert!(loaded.config.security.allow_native_execution);
    assert_eq!(
        loaded.origin("native_execution.max_memory_mb"),
        Some(&Origin::Env("SYMBIONT_NATIVE_MAX_MEMORY_MB".into()))
    );
    assert_eq!(
        loaded.origin("security.allow_native_execution"),
        Some(&Origin::Env("SYMBIONT_ALLOW_NATIVE_EXECUTION".into()))
    );
    assert_eq!(
        loaded.origin("native_execution.max_processes"),
        Some(&file_origin(&path, 3))
    );
}

#[test]
fn empty_env_var_is_unset() {
    let dir = Scratch::new("empty-env");
    let env = env_of(&[
        ("SYMBIONT_NATIVE_MAX_MEMORY_MB", ""),
        ("SYMBIONT_ALLOW_NATIVE_EXECUTION", "  "),
    ]);
    let loaded = load_with(None, &env, &dir.0).unwrap();
    let mut expected = Config::default();
    expected.supervisor.data_dir = default_data_dir(&no_env);
    assert_eq!(loaded.config, expected);
    assert!(loaded.origins.values().all(|o| *o == Origin::Default));
}

#[test]
fn bad_env_values_name_the_variable_and_value() {
    let dir = Scratch::new("bad-env");
    for (var, value, expect) in [
        (
            "SYMBIONT_NATIVE_MAX_MEMORY_MB",
            "abc",
            "environment variable SYMBIONT_NATIVE_MAX_MEMORY_MB=abc: expected a positive integer or \"none\"",
        ),
        (
            "SYMBIONT_NATIVE_MAX_MEMORY_MB",
            "0",
            "environment variable SYMBIONT_NATIVE_MAX_MEMORY_MB=0: expected a positive integer or \"none\"",
        ),
        (
            "SYMBIONT_NATIVE_MAX_MEMORY_MB",
            "-5",
            "SYMBIONT_NATIVE_MAX_MEMORY_MB=-5",
        ),
        (
            "SYMBIONT_ALLOW_NATIVE_EXECUTION",
            "maybe",
            "environment variable SYMBIONT_ALLOW_NATIVE_EXECUTION=maybe: expected true, false",
        ),
        (
            "SYMBIONT_DEFAULT_SANDBOX_TIER",
            "tier4",
            "SYMBIONT_DEFAULT_SANDBOX_TIER=tier4: expected a security tier",
        ),
        (
            "SYMBIONT_NATIVE_MAX_CPU_CORES",
            "-1.5",
            "SYMBIONT_NATIVE_MAX_CPU_CORES=-1.5: expected a positive number",
        ),
        (
            "SYMBIONT_NATIVE_MAX_CPU_CORES",
            "NaN",
            "SYMBIONT_NATIVE_MAX_CPU_CORES=NaN",
        ),
        (
            "SYMBIONT_NATIVE_MAX_PROCESSES",
            "none",
            "SYMBIONT_NATIVE_MAX_PROCESSES=none: expected a positive integer",
        ),
        (
            "SYMBIONT_NATIVE_KILL_GRACE_SECONDS",
            "-1",
            "SYMBIONT_NATIVE_KILL_GRACE_SECONDS=-1: expected a number >= 0",
        ),
        (
            "SYMBIONT_NATIVE_ENV_PASSTHROUGH",
            "PATH,A=B",
            "SYMBIONT_NATIVE_ENV_PASSTHROUGH=PATH,A=B: expected a comma-separated list of environment variable names",
        ),
    ] {
        let err = load_with(None, &env_of(&[(var, value)]), &dir.0)
            .expect_err(var)
            .to_string();
        assert!(err.contains(expect), "{var}={value}: {err}");
    }
}

#[test]
fn env_aliases_that_disagree_are_an_error() {
    let dir = Scratch::new("env-alias");
    let env = env_of(&[
        ("SYMBIONT_ALLOW_NATIVE_EXECUTION", "true"),
        ("SYMBIONT_NATIVE_ENABLED", "false"),
    ]);
    let err = load_with(None, &env, &dir.0).unwrap_err().to_string();
    assert!(
        err.contains("SYMBIONT_ALLOW_NATIVE_EXECUTION=true"),
        "{err}"
    );
    assert!(err.contains("SYMBIONT_NATIVE_ENABLED=false"), "{err}");
    assert!(err.contains("disagree"), "{err}");

    let env = env_of(&[
        ("SYMBIONT_NATIVE_WORKING_DIR", "/a"),
        ("SYMBIONT_NATIVE_WORKING_DIRECTORY", "/a"),
    ]);
    let loaded = load_with(None, &env, &dir.0).unwrap();
    assert_eq!(
        loaded.origin("native_execution.working_directory"),
        Some(&Origin::Env("SYMBIONT_NATIVE_WORKING_DIR".into()))
    );
}

// ---------------------------------------------------------------- bad files

#[test]
fn typo_key_gives_location_and_suggestion() {
    let text = "# config.toml\n\n[security]\nallow_native_execution = true\n\n[native_execution]\nmax_memroy_mb = 2048\n";
    assert_eq!(
        parse_err(text),
        "config.toml:7:1: unknown key `max_memroy_mb` in [native_execution]; did you mean `max_memory_mb`?"
    );
    let err = parse_err("[security.native_execution]\n  enforce_limits = true\n");
    assert_eq!(
        err,
        "config.toml:2:3: unknown key `enforce_limits` in [security.native_execution]; did you mean `enforce_resource_limits`?"
    );
    let err = parse_err("[security]\nallow_native = true\n");
    assert!(
        err.starts_with("config.toml:2:1: unknown key `allow_native` in [security]; did you mean `allow_native_execution`?"),
        "{err}"
    );
    let err = parse_err("[dashboard]\nrefresh = 5\n");
    assert!(err.contains("did you mean `refresh_ms`?"), "{err}");
}

#[test]
fn unknown_key_with_nothing_near_lists_the_valid_keys() {
    let err = parse_err("[containers]\nzzz = 1\n");
    assert_eq!(
        err,
        "config.toml:2:1: unknown key `zzz` in [containers]; valid keys: docker_host, default_image"
    );
    // a sub-table is a key of its section too
    let err = parse_err("[native_execution.limits]\nx = 1\n");
    assert!(
        err.starts_with("config.toml:1:19: unknown key `limits` in [native_execution]"),
        "{err}"
    );
}

#[test]
fn wrong_types_point_at_the_value() {
    let cases = [
        (
            "[security]\nallow_native_execution = \"yes\"\n",
            "config.toml:2:26: `allow_native_execution` must be a boolean (true or false), found \"yes\"",
        ),
        (
            "[security]\ndefault_sandbox_tier = \"Tier9\"\n",
            "config.toml:2:24: `default_sandbox_tier` must be a security tier",
        ),
        (
            "[native_execution]\nmax_cpu_cores = \"four\"\n",
            "config.toml:2:17: `max_cpu_cores` must be a positive number (or \"none\"), found \"four\"",
        ),
        (
            "[native_execution]\nmax_memory_mb = 1.5\n",
            "config.toml:2:17: `max_memory_mb` must be a positive integer (or \"none\"), found 1.5",
        ),
        (
            "[native_execution]\nallowed_executables = \"bash\"\n",
            "config.toml:2:23: `allowed_executables` must be an array of non-empty strings, found \"bash\"",
        ),
        (
            // the bad item itself is pointed at
            "[native_execution]\nallowed_executables = [\"bash\", 5]\n",
            "config.toml:2:32: `allowed_executables` must be an array of non-empty strings, found 5",
        ),
        (
            "[native_execution]\nenv_passthrough = [\"PATH\", \"A=B\"]\n",
            "config.toml:2:28: `env_passthrough` must be an array of environment variable names, found \"A=B\"",
        ),
        (
            "[native_execution]\ndefault_executable = \"\"\n",
            "config.toml:2:22: `default_executable` must be a non-empty string",
        ),
        (
            "[supervisor]\ntail_lines = true\n",
            "config.toml:2:14: `tail_lines` must be an integer >= 0, found true",
        ),
        (
            "[supervisor]\nmax_log_mb = 0\n",
            "config.toml:2:14: `max_log_mb` must be a positive integer, found 0",
        ),
        (
            "security = 5\n",
            "config.toml:1:12: `security` must be a table, found 5",
        ),
        (
            "[security]\nnative_execution = [1]\n",
            "config.toml:2:20: `security.native_execution` must be a table, found [1]",
        ),
        (
            "[dashboard.keys]\nquit = 5\n",
            "config.toml:2:8: `dashboard.keys.quit` must be a key name or an array of key names, found 5",
        ),
    ];
    for (text, expect) in cases {
        let err = parse_err(text);
        assert!(
            err.starts_with(expect),
            "\n{text}\ngot:      {err}\nexpected: {expect}"
        );
    }
}

#[test]
fn zero_and_negative_limits_are_errors() {
    let keys = [
        ("native_execution", "max_memory_mb", "a positive integer"),
        ("native_execution", "max_cpu_seconds", "a positive integer"),
        ("native_execution", "max_cpu_cores", "a positive number"),
        (
            "native_execution",
            "max_execution_time_seconds",
            "a positive integer",
        ),
        ("native_execution", "max_processes", "a positive integer"),
        ("native_execution", "max_file_size_mb", "a positive integer"),
        ("dashboard", "refresh_ms", "a positive integer"),
    ];
    for (section, key, expected) in keys {
        for bad in ["0", "-5", "0.0"] {
            if bad == "0.0" && expected.contains("integer") {
                continue;
            }
            let text = format!("[{section}]\n{key} = {bad}\n");
            let err = parse_err(&text);
            let col = key.len() + 4;
            assert!(
                err.starts_with(&format!("config.toml:2:{col}: `{key}` must be {expected}")),
                "{text}: {err}"
            );
            assert!(err.ends_with(&format!("found {bad}")), "{text}: {err}");
        }
    }
    assert_eq!(
        parse_err("[native_execution]\nmax_memory_mb = -5\n"),
        "config.toml:2:17: `max_memory_mb` must be a positive integer (or \"none\"), found -5"
    );
    let err = parse_err("[native_execution]\nkill_grace_seconds = -0.5\n");
    assert!(err.contains("must be a number >= 0"), "{err}");
    // zero grace is allowed: straight to SIGKILL
    let ok = parse("[native_execution]\nkill_grace_seconds = 0\n").unwrap();
    assert_eq!(ok.config.native_execution.kill_grace_seconds, 0.0);
    // too big for u64
    let err = parse_err("[native_execution]\nmax_processes = 99999999999999999999\n");
    assert!(err.starts_with("config.toml:2:17:"), "{err}");
}

#[test]
fn none_and_unlimited_switch_off_optional_limits() {
    let loaded = parse(
        "[native_execution]\nmax_memory_mb = \"none\"\nmax_cpu_seconds = \"Unlimited\"\nmax_cpu_cores = \"NONE\"\n",
    )
    .unwrap();
    let n = &loaded.config.native_execution;
    assert_eq!(n.max_memory_mb, None);
    assert_eq!(n.max_cpu_seconds, None);
    assert_eq!(n.max_cpu_cores, None);
    assert_eq!(
        loaded.origin("native_execution.max_memory_mb"),
        Some(&file_origin(Path::new("config.toml"), 2))
    );
    // only optional limits take "none"
    let err = parse_err("[native_execution]\nmax_execution_time_seconds = \"none\"\n");
    assert!(
        err.contains("must be a positive integer, found \"none\""),
        "{err}"
    );
    let err = parse_err("[native_execution]\nmax_memory_mb = \"lots\"\n");
    assert!(err.contains("found \"lots\""), "{err}");
}

#[test]
fn integers_where_floats_are_expected_and_other_integer_forms() {
    let loaded = parse(
        "[native_execution]\nmax_cpu_cores = 4\nkill_grace_seconds = 2\nmax_memory_mb = 0x400\nmax_file_size_mb = 1_000\n[dashboard]\nwarn_ratio = 1\ncritical_ratio = 1\n",
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.native_execution.max_cpu_cores, Some(4.0));
    assert_eq!(c.native_execution.kill_grace_seconds, 2.0);
    assert_eq!(c.native_execution.max_memory_mb, Some(1024));
    assert_eq!(c.native_execution.max_file_size_mb, 1000);
    assert_eq!(c.dashboard.warn_ratio, 1.0);
}

#[test]
fn ratios_are_checked() {
    for bad in ["0", "1.5", "-0.1"] {
        let err = parse_err(&format!("[dashboard]\nwarn_ratio = {bad}\n"));
        assert!(
            err.starts_with(
                "config.toml:2:14: `warn_ratio` must be a number greater than 0 and at most 1"
            ),
            "{err}"
        );
    }
    let err = parse_err("[dashboard]\nwarn_ratio = 0.9\ncritical_ratio = 0.5\n");
    assert_eq!(
        err,
        "`dashboard.warn_ratio = 0.9` (config.toml:2) is above `dashboard.critical_ratio = 0.5` (config.toml:3); the warning must come first"
    );
    // against the default critical ratio
    let err = parse_err("[dashboard]\nwarn_ratio = 0.99\n");
    assert!(err.contains("(default)"), "{err}");
}

#[test]
fn malformed_toml_gives_location_and_parser_message() {
    let err = parse_err("[security]\nallow_native_execution = \n");
    assert!(err.starts_with("config.toml:2:26: invalid TOML: "), "{err}");
    let err =
        parse_err("[security]\nallow_native_execution = true\nallow_native_execution = false\n");
    assert_eq!(err, "config.toml:3:1: invalid TOML: duplicate key");
    let err = parse_err("[native_execution\nx = 1\n");
    assert!(err.starts_with("config.toml:1:"), "{err}");
    assert!(err.contains("invalid TOML"), "{err}");
    // through load_with, the real path is named
    let dir = Scratch::new("malformed");
    let path = dir.write("bad.toml", "a = \"unterminated\n");
    let err = load_with(Some(&path), &no_env, &dir.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("--> {}:1:", path.display())), "{err}");
    assert!(err.contains("1 | a = \"unterminated\n"), "{err}");
}

#[test]
fn the_two_native_switches_must_agree() {
    let mut text = String::from("# config\n\n[security]\nallow_native_execution = true\n");
    text.push_str(&"\n".repeat(15));
    text.push_str("[native_execution]\nenabled = false\n");
    let err = parse_err(&text);
    assert_eq!(
        err,
        "config.toml:4:1 and config.toml:21:1: `security.allow_native_execution = true` and `native_execution.enabled = false` disagree; set one of them"
    );
    // in the nested table too
    let err = parse_err(
        "[security]\nallow_native_execution = false\n[security.native_execution]\nenabled = true\n",
    );
    assert!(
        err.contains("`security.native_execution.enabled = true`"),
        "{err}"
    );
    // agreeing is fine; the first one in the file is the origin
    let loaded =
        parse("[native_execution]\nenabled = true\n[security]\nallow_native_execution = true\n")
            .unwrap();
    assert!(loaded.config.security.allow_native_execution);
    assert_eq!(
        loaded.origin("security.allow_native_execution"),
        Some(&file_origin(Path::new("config.toml"), 2))
    );
}

#[test]
fn same_native_key_in_both_tables_must_agree() {
    let text = "[security.native_execution]\nmax_memory_mb = 1024\n\n[native_execution]\nmax_memory_mb = 2048\n";
    assert_eq!(
        parse_err(text),
        "config.toml:2:1 and config.toml:5:1: `security.native_execution.max_memory_mb = 1024` and `native_execution.max_memory_mb = 2048` disagree; set one of them"
    );
    let text = "[security.native_execution]\nallowed_executables = [\"bash\"]\n[native_execution]\nallowed_executables = [\"sh\"]\n";
    let err = parse_err(text);
    assert!(
        err.contains("= [\"bash\"]` and `native_execution.allowed_executables = [\"sh\"]`"),
        "{err}"
    );
    // the same value twice is fine; different keys in each table merge
    let loaded = parse(
        "[security.native_execution]\nmax_memory_mb = 1024\nmax_processes = 9\n[native_execution]\nmax_memory_mb = 1024\ndefault_executable = \"sh\"\n",
    )
    .unwrap();
    let n = &loaded.config.native_execution;
    assert_eq!(n.max_memory_mb, Some(1024));
    assert_eq!(n.max_processes, 9);
    assert_eq!(n.default_executable, "sh");
}

#[test]
fn unused_sections_and_upstream_security_keys_load() {
    let loaded = parse(
        "title = \"x\"\n[database]\nvector_dimension = 1\n[security]\nkey_provider = \"k\"\nenable_backups = true\n[dashbord]\nrefresh_ms = 5\n[storage.deep]\nx = 1\n",
    )
    .unwrap();
    assert_eq!(
        loaded.unused,
        [
            "title",
            "database",
            "security.key_provider",
            "security.enable_backups",
            "dashbord",
            "storage"
        ]
    );
    assert_eq!(loaded.config, Config::default());
    let out = loaded.render_effective();
    assert!(
        out.contains("not used: title, database, security.key_provider, security.enable_backups, dashbord (did you mean dashboard?), storage"),
        "{out}"
    );
    // an unknown non-upstream key in [security] is an error
    let err = parse_err("[security]\nenable_magic = true\n");
    assert!(
        err.starts_with("config.toml:2:1: unknown key `enable_magic` in [security]"),
        "{err}"
    );
}

#[test]
fn dashboard_keys_and_other_sections_load() {
    let loaded = parse(
        "[dashboard]\nrefresh_ms = 500\n[dashboard.keys]\nkill = [\"x\", \"F9\"]\nquit = \"q\"\n[supervisor]\ndata_dir = \"/d\"\naudit_log = \"/a.jsonl\"\ntail_lines = 0\nmax_log_mb = 3\n[containers]\ndocker_host = \"unix:///run/podman.sock\"\ndefault_image = \"python:3.12-slim\"\n",
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.dashboard.refresh_ms, 500);
    assert_eq!(c.dashboard.keys["kill"], ["x", "F9"]);
    assert_eq!(c.dashboard.keys["quit"], ["q"]);
    assert_eq!(c.supervisor.data_dir, PathBuf::from("/d"));
    assert_eq!(c.supervisor.audit_log_path(), PathBuf::from("/a.jsonl"));
    assert_eq!(c.supervisor.tail_lines, 0);
    assert_eq!(c.supervisor.max_log_mb, 3);
    assert_eq!(
        c.containers.docker_host.as_deref(),
        Some("unix:///run/podman.sock")
    );
    assert_eq!(
        c.containers.default_image.as_deref(),
        Some("python:3.12-slim")
    );
    assert_eq!(
        loaded.origin("dashboard.keys.quit"),
        Some(&file_origin(Path::new("config.toml"), 5))
    );
    assert_eq!(
        loaded.origin("containers.default_image"),
        Some(&file_origin(Path::new("config.toml"), 13))
    );
}

// ---------------------------------------------------------------- origins and rendering

#[test]
fn origin_display() {
    assert_eq!(Origin::Default.to_string(), "default");
    assert_eq!(
        file_origin(Path::new("config.toml"), 12).to_string(),
        "config.toml:12"
    );
    assert_eq!(
        Origin::Env("SYMBIONT_NATIVE_MAX_MEMORY_MB".into()).to_string(),
        "env SYMBIONT_NATIVE_MAX_MEMORY_MB"
    );
    assert_eq!(
        Origin::Agent("x.dsl:4".into()).to_string(),
        "agent file x.dsl:4"
    );
    assert_eq!(
        Origin::Flag("--max-memory".into()).to_string(),
        "flag --max-memory"
    );
}

#[test]
fn render_effective_lists_every_key_with_value_and_origin() {
    let dir = Scratch::new("render");
    let path = dir.write(
        "config.toml",
        "[native_execution]\nmax_memory_mb = \"none\"\n[api]\nport = 1\n[database]\nx = 1\n",
    );
    let env = env_of(&[("SYMBIONT_NATIVE_MAX_CPU_CORES", "2")]);
    let mut loaded = load_with(None, &env, &dir.0).unwrap();
    loaded.config.native_execution.max_execution_time_seconds = 30;
    loaded.set_origin(
        "native_execution.max_execution_time_seconds",
        Origin::Flag("--timeout".into()),
    );
    let out = loaded.render_effective();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 37, "{out}");
    let line = |key: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no line for {key}:\n{out}"))
    };
    let squash = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        squash(line("native_execution.max_memory_mb")),
        format!(
            "native_execution.max_memory_mb = none ({}:2)",
            path.display()
        )
    );
    assert_eq!(
        squash(line("native_execution.max_cpu_cores")),
        "native_execution.max_cpu_cores = 2.0 (env SYMBIONT_NATIVE_MAX_CPU_CORES)"
    );
    assert_eq!(
        squash(line("native_execution.max_execution_time_seconds")),
        "native_execution.max_execution_time_seconds = 30 (flag --timeout)"
    );
    let platform_default = if cfg!(windows) {
        "[\"cmd\", \"powershell\", \"pwsh\", \"python\", \"node\"]"
    } else {
        "[\"bash\", \"sh\", \"python3\", \"python\", \"node\"]"
    };
    assert_eq!(
        squash(line("native_execution.allowed_executables")),
        format!("native_execution.allowed_executables = {platform_default} (default)")
    );
    assert_eq!(
        squash(line("security.default_sandbox_tier")),
        "security.default_sandbox_tier = \"Tier1\" (default)"
    );
    assert_eq!(
        squash(line("supervisor.audit_log")),
        "supervisor.audit_log = none (default)"
    );
    assert_eq!(
        squash(line("dashboard.warn_ratio")),
        "dashboard.warn_ratio = 0.8 (default)"
    );
    assert_eq!(
        squash(line("api.port")),
        format!("api.port = 1 ({}:4)", path.display())
    );
    assert_eq!(
        squash(line("api.max_body_size")),
        "api.max_body_size = none (default)"
    );
    assert_eq!(lines.last().copied(), Some("not used: database"));
    // aligned: every `=` and every `(` (for short values) in the same column
    let eq_cols: Vec<usize> = lines[..22].iter().map(|l| l.find(" = ").unwrap()).collect();
    assert!(eq_cols.iter().all(|c| *c == eq_cols[0]), "{out}");
    let paren = |key: &str| line(key).rfind("   (").unwrap();
    assert_eq!(
        paren("native_execution.max_memory_mb"),
        paren("security.allow_native_execution")
    );
}

#[test]
fn render_effective_with_nothing_unused() {
    let out = LoadedConfig::default().render_effective();
    assert!(out.ends_with("not used: (nothing)\n"), "{out}");
    assert!(out.contains("security.allow_native_execution"), "{out}");
}

#[test]
fn api_section_and_key_provider_are_read_and_checked() {
    let loaded = parse(
        "[api]\nport = 9000\nhost = \"0.0.0.0\"\ntimeout_seconds = 5\nmax_body_size = 2048\n\
         [security]\nkey_provider = { Environment = { var_name = \"MY_TOKEN\" } }\n",
    )
    .unwrap();
    let c = &loaded.config;
    assert_eq!(c.api.port, Some(9000));
    assert_eq!(c.api.host, "0.0.0.0");
    assert_eq!(c.api.timeout_seconds, Some(5));
    assert_eq!(c.api.max_body_size, Some(2048));
    assert_eq!(c.security.key_provider.as_deref(), Some("MY_TOKEN"));
    assert!(loaded.unused.is_empty(), "{:?}", loaded.unused);
    let out = loaded.render_effective();
    assert!(
        out.contains("security.key_provider")
            && out.contains("{ Environment = { var_name = \"MY_TOKEN\" } }"),
        "{out}"
    );
    let json = loaded.effective_json();
    assert_eq!(
        json["security.key_provider"]["value"],
        serde_json::json!({"Environment": {"var_name": "MY_TOKEN"}})
    );
    assert_eq!(json["api.port"]["value"], 9000);
    // no [api]: the Unix socket only
    let none = parse("[api]\nhost = \"::1\"\n").unwrap();
    assert_eq!(none.config.api.port, None);

    let err = parse_err("[api]\nport = 70000\n");
    assert!(err.contains("`api.port` must be from 1 to 65535"), "{err}");
    let err = parse_err("[api]\nmax_body_size = 10\n");
    assert!(
        err.contains("`api.max_body_size` must be from 1024"),
        "{err}"
    );
    let err = parse_err("[api]\ntimeout_seconds = 0\n");
    assert!(
        err.contains("`timeout_seconds` must be a positive integer"),
        "{err}"
    );
    let err = parse_err("[api]\nprot = 1\n");
    assert!(
        err.contains("unknown key `prot` in [api]") && err.contains("`port`"),
        "{err}"
    );
    let err = parse_err("[security]\nkey_provider = { Environment = { var = \"X\" } }\n");
    assert!(
        err.contains("`key_provider` must be { Environment = { var_name"),
        "{err}"
    );
}
