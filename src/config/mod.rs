//! Configuration: built-in defaults, the TOML file, and `SYMBIONT_*` environment overrides,
//! with the origin of every value kept for `symbiont check`.
//!
//! Precedence, lowest first: defaults, config file, environment. Agent files and CLI flags
//! are applied later by their own code, which writes the fields and calls
//! [`LoadedConfig::set_origin`].
//!
//! Both TOML forms of the seed load: `[security]` + `[security.native_execution]`, and a
//! top-level `[native_execution]` table next to upstream sections (`[api]`, `[database]`,
//! ...) that the supervisor does not use; those are listed in [`LoadedConfig::unused`].

mod env;
mod error;
mod file;
mod machine;
mod schema;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::tier::{SandboxLevel, SecurityTier};

pub use error::ConfigError;

use schema::{quote_list, Field};

/// The effective settings of the supervisor. `Default` is the built-in defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub security: SecurityConfig,
    pub native_execution: NativeExecutionConfig,
    pub dashboard: DashboardConfig,
    pub supervisor: SupervisorConfig,
    pub containers: ContainersConfig,
    pub api: ApiConfig,
    pub microvm: MicrovmConfig,
}

/// `[security]`
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityConfig {
    /// Native execution allowed (also `native_execution.enabled`). Default false.
    pub allow_native_execution: bool,
    /// Tier of an agent that names none. Default `Tier1`.
    pub default_sandbox_tier: SecurityTier,
    /// `key_provider = { Environment = { var_name = "NAME" } }`: the variable of the service's
    /// environment that holds the bearer token of the API on TCP. Default none.
    pub key_provider: Option<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            allow_native_execution: false,
            default_sandbox_tier: SecurityTier::Tier1,
            key_provider: None,
        }
    }
}

/// `[native_execution]` (or `[security.native_execution]`)
#[derive(Debug, Clone, PartialEq)]
pub struct NativeExecutionConfig {
    /// Interpreter for code passed as a string. Default `bash`.
    pub default_executable: String,
    /// Where native agents run. Default `/tmp/symbiont-native` (Windows: `%TEMP%\symbiont-native`).
    pub working_directory: PathBuf,
    /// Apply OS limits; off means only the dashboard's watchdog. Default true.
    pub enforce_resource_limits: bool,
    /// Memory limit of the whole agent. Default 2048; `None` = no limit.
    pub max_memory_mb: Option<u64>,
    /// CPU time limit. Default 300; `None` = no limit.
    pub max_cpu_seconds: Option<u64>,
    /// CPU bandwidth limit in cores. Default none.
    pub max_cpu_cores: Option<f64>,
    /// Wall-clock timeout. Default 300.
    pub max_execution_time_seconds: u64,
    /// Executables a native agent may start.
    pub allowed_executables: Vec<String>,
    /// Fork bomb guard. Default 256.
    pub max_processes: u64,
    /// RLIMIT_FSIZE in MB. Default 1024.
    pub max_file_size_mb: u64,
    /// The only host variables an agent inherits.
    pub env_passthrough: Vec<String>,
    /// The operator's file of `KEY=VALUE` lines passed to every agent (secrets: masked in
    /// logs and tails; see [`crate::secrets`]). Only the operator names one, never an agent file.
    pub env_file: Option<PathBuf>,
    /// The weakest sandbox level an agent may run at (SPEC 3.1); an agent file can only raise
    /// it. Default Permissive.
    pub min_sandbox: SandboxLevel,
    /// Read-denied under Strict, besides the built-in secret locations (`~` is the home).
    pub deny_read: Vec<String>,
    /// Writable under Moderate and Strict, besides the working and temp directories.
    pub allow_write: Vec<String>,
    /// Readable under Strict although beneath a denied path (e.g. `~/.ssh/known_hosts`).
    pub allow_read: Vec<String>,
    /// SIGTERM to SIGKILL escalation. Default 5.
    pub kill_grace_seconds: f64,
    /// How often the watchdog samples the runs that no cgroup holds to a memory limit (only a
    /// per-process RLIMIT_DATA does), in milliseconds. Default 100.
    pub watchdog_interval_ms: u64,
}

/// The default native working directory: `/tmp/symbiont-native`, or `%TEMP%\symbiont-native`
/// on Windows.
pub fn default_working_directory() -> PathBuf {
    if cfg!(windows) {
        std::env::temp_dir().join("symbiont-native")
    } else {
        PathBuf::from("/tmp/symbiont-native")
    }
}

/// The host variables an agent inherits by default. Windows programs need a few system
/// variables to start at all (`SystemRoot` for sockets and crypto, `PATHEXT`, `TEMP`, ...).
pub fn default_env_passthrough() -> Vec<String> {
    if cfg!(windows) {
        strings(&[
            "PATH",
            "PATHEXT",
            "SystemRoot",
            "SystemDrive",
            "windir",
            "ComSpec",
            "TEMP",
            "TMP",
            "USERPROFILE",
            "USERNAME",
            "LANG",
            "TZ",
        ])
    } else {
        strings(&["PATH", "HOME", "LANG", "TERM", "TZ", "USER"])
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What agents may execute when no configuration says: the platform's own interpreters (on
/// Windows, `bash` and `sh` are not there, so the Unix list would run nothing).
pub const DEFAULT_ALLOWED_EXECUTABLES: &[&str] = if cfg!(windows) {
    &["cmd", "powershell", "pwsh", "python", "node"]
} else {
    &["bash", "sh", "python3", "python", "node"]
};

/// What `--code` and `execute_native` code run with when no configuration says.
pub const DEFAULT_EXECUTABLE: &str = if cfg!(windows) { "cmd" } else { "bash" };

impl Default for NativeExecutionConfig {
    fn default() -> Self {
        Self {
            default_executable: DEFAULT_EXECUTABLE.to_string(),
            working_directory: default_working_directory(),
            enforce_resource_limits: true,
            max_memory_mb: Some(2048),
            max_cpu_seconds: Some(300),
            max_cpu_cores: None,
            max_execution_time_seconds: 300,
            allowed_executables: strings(DEFAULT_ALLOWED_EXECUTABLES),
            max_processes: 256,
            max_file_size_mb: 1024,
            env_passthrough: default_env_passthrough(),
            env_file: None,
            min_sandbox: SandboxLevel::Permissive,
            deny_read: Vec::new(),
            allow_write: Vec::new(),
            allow_read: Vec::new(),
            kill_grace_seconds: 5.0,
            watchdog_interval_ms: 100,
        }
    }
}

/// `[dashboard]`
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    /// Sampling interval. Default 1000.
    pub refresh_ms: u64,
    /// Yellow at this fraction of a limit. Default 0.8.
    pub warn_ratio: f64,
    /// Red at this fraction of a limit. Default 0.95.
    pub critical_ratio: f64,
    /// Remapped keys, `[dashboard.keys] action = "k"` or `["k", "F9"]`. The action names are
    /// the dashboard's to check.
    pub keys: BTreeMap<String, Vec<String>>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            refresh_ms: 1000,
            warn_ratio: 0.8,
            critical_ratio: 0.95,
            keys: BTreeMap::new(),
        }
    }
}

/// `[supervisor]`
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorConfig {
    /// Run logs and the audit log live here. Default [`default_data_dir`]:
    /// `$XDG_STATE_HOME/symbiont` (`~/.local/state/symbiont`), never the current directory.
    pub data_dir: PathBuf,
    /// The audit log; `None` means `data_dir/audit.jsonl`.
    pub audit_log: Option<PathBuf>,
    /// Lines of stdout/stderr kept in run records. Default 200.
    pub tail_lines: usize,
    /// The most MiB of each stream's log kept on disk per run: the newest output, in the log
    /// and its one rotated predecessor (`stdout.log.1`). Default 64.
    pub max_log_mb: u64,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(&|k| std::env::var(k).ok()),
            audit_log: None,
            tail_lines: 200,
            max_log_mb: 64,
        }
    }
}

/// An absolute path from the variable `name`, if set (the XDG rules ignore relative ones).
fn absolute_var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    env(name)
        .filter(|v| !v.trim().is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The default data directory (run logs, records, the audit log): `$XDG_STATE_HOME/symbiont`,
/// else `$HOME/.local/state/symbiont`; on Windows `%LOCALAPPDATA%\symbiont`. With none of
/// those set, `symbiont-data` in the temporary directory: never a folder of whatever directory
/// the user stands in.
pub fn default_data_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let base = if cfg!(windows) {
        absolute_var(env, "LOCALAPPDATA")
    } else {
        absolute_var(env, "XDG_STATE_HOME")
            .or_else(|| absolute_var(env, "HOME").map(|h| h.join(".local").join("state")))
    };
    match base {
        Some(b) => b.join("symbiont"),
        None => std::env::temp_dir().join("symbiont-data"),
    }
}

/// The user's config file location: `$XDG_CONFIG_HOME/symbiont/config.toml`, else
/// `$HOME/.config/symbiont/config.toml`; on Windows `%APPDATA%\symbiont\config.toml`.
/// Whether it exists is the caller's question.
pub fn user_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = if cfg!(windows) {
        absolute_var(env, "APPDATA")
    } else {
        absolute_var(env, "XDG_CONFIG_HOME")
            .or_else(|| absolute_var(env, "HOME").map(|h| h.join(".config")))
    };
    base.map(|b| b.join("symbiont").join("config.toml"))
}

impl SupervisorConfig {
    /// `audit_log` if set, else `data_dir/audit.jsonl`.
    pub fn audit_log_path(&self) -> PathBuf {
        self.audit_log
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.jsonl"))
    }
}

/// `[containers]`
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainersConfig {
    /// Docker Engine endpoint; `None` = the container code's own default (`DOCKER_HOST`, socket).
    pub docker_host: Option<String>,
    /// Image for container agents that name none.
    pub default_image: Option<String>,
}

/// `[microvm]`: the Tier3 guest, where it is not the data directory's `microvm/` (what
/// `scripts/microvm-assets` builds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MicrovmConfig {
    /// The guest kernel (an uncompressed ELF `vmlinux` that QEMU boots directly).
    pub kernel: Option<PathBuf>,
    /// The guest's initramfs (busybox, the virtio modules and symbiont's guest agent).
    pub initramfs: Option<PathBuf>,
}

/// `[api]`: the service's API on TCP as well as on its Unix socket (`symbiont serve`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// The address the TCP listener binds. Default `127.0.0.1`.
    pub host: String,
    /// The TCP port; `None` (the default) means the Unix socket only.
    pub port: Option<u16>,
    /// How long a request that is not a stream may take, in seconds. Default none.
    pub timeout_seconds: Option<u64>,
    /// The largest request body accepted, in bytes. Default none (the service's own, 4 MiB).
    pub max_body_size: Option<u64>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_string(),
            port: None,
            timeout_seconds: None,
            max_body_size: None,
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// The config file, at the line of the key.
    File {
        path: PathBuf,
        line: usize,
    },
    /// An environment variable (its name).
    Env(String),
    /// An agent file, as `"file:line"`.
    Agent(String),
    /// A command-line flag, as `"--max-memory"`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}:{}", path.display(), line),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Agent(at) => write!(f, "agent file {at}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A config with the origin of each value. `Default` is the built-in defaults, every origin
/// [`Origin::Default`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    pub config: Config,
    /// One entry per key, by dotted canonical name (`native_execution.max_memory_mb`).
    /// Dashboard bindings appear as `dashboard.keys.<action>` when set in the file.
    pub origins: BTreeMap<String, Origin>,
    /// The config file used, if any.
    pub file: Option<PathBuf>,
    /// Sections and keys present in the file that the supervisor does not use, in file order.
    pub unused: Vec<String>,
    /// Host variables the operator passes to this invocation's agents (`--pass-env`): every
    /// value is a secret, masked in logs and tails.
    pub pass_env: Vec<String>,
    /// The sandbox level asked for an ad-hoc command (`exec --sandbox LEVEL`); the operator's
    /// `min_sandbox` still applies.
    pub sandbox: Option<SandboxLevel>,
}

impl Default for LoadedConfig {
    fn default() -> Self {
        Self {
            config: Config::default(),
            origins: Field::ALL
                .into_iter()
                .map(|f| (f.key(), Origin::Default))
                .collect(),
            file: None,
            unused: Vec::new(),
            pass_env: Vec::new(),
            sandbox: None,
        }
    }
}

impl LoadedConfig {
    /// A configuration built in code (the library API): every value's origin is "default".
    pub fn from_config(config: Config) -> LoadedConfig {
        LoadedConfig {
            config,
            ..LoadedConfig::default()
        }
    }

    /// Record where the value of `key` (dotted canonical name) now comes from.
    pub fn set_origin(&mut self, key: &str, origin: Origin) {
        self.origins.insert(key.to_string(), origin);
    }

    /// The origin of `key`, if known.
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.origins.get(key)
    }

    /// Every key with its effective value and origin, as JSON (`symbiont check --json`):
    /// `{"native_execution.max_memory_mb": {"value": 2048, "origin": {"kind": "default"}}, ...}`;
    /// the origin's kinds are `default`, `file` (`path`, `line`), `env` (`name`), `agent`
    /// (`at`) and `flag` (`flag`).
    pub fn effective_json(&self) -> serde_json::Value {
        let origin = |key: &str| {
            let o = self.origins.get(key).unwrap_or(&Origin::Default);
            match o {
                Origin::Default => serde_json::json!({"kind": "default"}),
                Origin::File { path, line } => {
                    serde_json::json!({"kind": "file", "path": path.to_string_lossy(), "line": line})
                }
                Origin::Env(name) => serde_json::json!({"kind": "env", "name": name}),
                Origin::Agent(at) => serde_json::json!({"kind": "agent", "at": at}),
                Origin::Flag(flag) => serde_json::json!({"kind": "flag", "flag": flag}),
            }
        };
        let mut out = serde_json::Map::new();
        for f in Field::ALL {
            let key = f.key();
            let entry =
                serde_json::json!({"value": f.get(&self.config).to_json(), "origin": origin(&key)});
            out.insert(key, entry);
        }
        for (action, keys) in &self.config.dashboard.keys {
            let key = format!("dashboard.keys.{action}");
            let entry = serde_json::json!({"value": keys, "origin": origin(&key)});
            out.insert(key, entry);
        }
        serde_json::Value::Object(out)
    }

    /// Every key with its effective value and origin, one aligned line each
    /// (`key = value   (origin)`), then a `not used:` line.
    pub fn render_effective(&self) -> String {
        let origin = |key: &str| {
            self.origins
                .get(key)
                .map_or_else(|| Origin::Default.to_string(), ToString::to_string)
        };
        let mut rows: Vec<(String, String, String)> = Field::ALL
            .into_iter()
            .map(|f| {
                let key = f.key();
                let value = f.get(&self.config).to_string();
                let from = origin(&key);
                (key, value, from)
            })
            .collect();
        for (action, keys) in &self.config.dashboard.keys {
            let key = format!("dashboard.keys.{action}");
            let from = origin(&key);
            rows.push((key, quote_list(keys), from));
        }

        const MAX_VALUE_WIDTH: usize = 40;
        let key_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let value_width = rows
            .iter()
            .map(|r| r.1.chars().count())
            .filter(|w| *w <= MAX_VALUE_WIDTH)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (key, value, from) in &rows {
            out.push_str(&format!(
                "{key:<key_width$} = {value:<value_width$}   ({from})\n"
            ));
        }

        let unused: Vec<String> = self
            .unused
            .iter()
            .map(|name| {
                // A top-level table that is one typo away from a section we use is worth a hint.
                let near = (!name.contains('.'))
                    .then(|| file::suggest(name, &SECTIONS))
                    .flatten()
                    .filter(|s| strsim::jaro_winkler(name, s) >= 0.9);
                match near {
                    Some(s) => format!("{name} (did you mean {s}?)"),
                    None => name.clone(),
                }
            })
            .collect();
        if unused.is_empty() {
            out.push_str("not used: (nothing)\n");
        } else {
            out.push_str(&format!("not used: {}\n", unused.join(", ")));
        }
        out
    }
}

const SECTIONS: [&str; 7] = [
    "security",
    "native_execution",
    "dashboard",
    "supervisor",
    "containers",
    "api",
    "microvm",
];

/// Every environment variable this module reads, with the key it sets (the seed's
/// `SYMBIONT_*` names first where a key has two).
pub fn env_variables() -> Vec<(String, String)> {
    Field::ALL
        .into_iter()
        .flat_map(|f| env::vars_for(f).into_iter().map(move |v| (v, f.key())))
        .collect()
}

/// The documented range of the native key `name` (`max_memory_mb`, `max_cpu_cores`,
/// `max_execution_time_seconds`, ...) on this machine: `(low, high, "must be from ...")`.
/// Agent files and flags check their values against it, as the config file and the
/// environment do.
pub fn native_range(name: &str) -> Option<(f64, f64, String)> {
    let b = Field::lookup(schema::Section::Native, name)?.bounds()?;
    Some((b.lo, b.hi, b.describe()))
}

/// `Err("must be from ...")` when `value` is outside the range of the native key `name`.
pub fn check_native_range(name: &str, value: f64) -> Result<(), String> {
    match native_range(name) {
        Some((lo, hi, text)) if !(value >= lo && value <= hi) => Err(text),
        _ => Ok(()),
    }
}

/// Resolve and load the configuration the way the CLI does: `explicit` (the `--config`
/// flag), else `$SYMBIONT_CONFIG`, else `./config.toml` if it exists, else the user's
/// [`user_config_path`] if it exists, else built-in defaults; then environment overrides. Paths stay relative to the current directory as the
/// user wrote them, so messages read `config.toml:12`.
pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    load_with(explicit, &|name| std::env::var(name).ok(), Path::new(""))
}

/// [`load`] with the environment and the working directory given. An empty `cwd` means the
/// process's current directory.
pub fn load_with(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<LoadedConfig, ConfigError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut loaded = if let Some(path) = explicit {
        let path = resolve(cwd, path);
        if !path.exists() {
            return Err(ConfigError::new(format!(
                "config file {} (from --config) not found",
                path.display()
            )));
        }
        read_file(&path)?
    } else if let Some(value) = env("SYMBIONT_CONFIG") {
        let path = resolve(cwd, Path::new(&value));
        if !path.exists() {
            return Err(ConfigError::new(format!(
                "environment variable SYMBIONT_CONFIG={value}: config file {} not found",
                path.display()
            )));
        }
        read_file(&path)?
    } else {
        let path = cwd.join("config.toml");
        match user_config_path(&env) {
            _ if path.is_file() => read_file(&path)?,
            Some(user) if user.is_file() => read_file(&user)?,
            _ => LoadedConfig::default(),
        }
    };
    // The default data directory follows the environment given (tests give their own).
    if loaded.origin("supervisor.data_dir") == Some(&Origin::Default) {
        loaded.config.supervisor.data_dir = default_data_dir(&env);
    }
    env::apply(&mut loaded, &env)?;
    check(&loaded)?;
    Ok(loaded)
}

/// Parse config file text (no environment). `path` is used in messages and origins.
pub fn parse_str(text: &str, path: &Path) -> Result<LoadedConfig, ConfigError> {
    let loaded = file::parse_file(text, path)?;
    check(&loaded)?;
    Ok(loaded)
}

fn resolve(cwd: &Path, path: &Path) -> PathBuf {
    if cwd.as_os_str().is_empty() || path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

fn read_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
    })?;
    file::parse_file(&text, path)
}

/// Checks that involve more than one key, run on the final values.
fn check(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let d = &loaded.config.dashboard;
    if d.warn_ratio > d.critical_ratio {
        let from = |key: &str| {
            loaded
                .origins
                .get(key)
                .map_or_else(|| Origin::Default.to_string(), ToString::to_string)
        };
        return Err(ConfigError::new(format!(
            "`dashboard.warn_ratio = {:?}` ({}) is above `dashboard.critical_ratio = {:?}` ({}); the warning must come first",
            d.warn_ratio,
            from("dashboard.warn_ratio"),
            d.critical_ratio,
            from("dashboard.critical_ratio"),
        )));
    }
    Ok(())
}
