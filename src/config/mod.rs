//! Configuration (temporary stub with the agreed API; the real module lands from branch `config`).
#![allow(missing_docs)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::tier::SecurityTier;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub security: SecurityConfig,
    pub native_execution: NativeExecutionConfig,
    pub dashboard: DashboardConfig,
    pub supervisor: SupervisorConfig,
    pub containers: ContainersConfig,
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityConfig {
    pub allow_native_execution: bool,
    pub default_sandbox_tier: SecurityTier,
}
#[derive(Debug, Clone, PartialEq)]
pub struct NativeExecutionConfig {
    pub default_executable: String,
    pub working_directory: PathBuf,
    pub enforce_resource_limits: bool,
    pub max_memory_mb: Option<u64>,
    pub max_cpu_seconds: Option<u64>,
    pub max_cpu_cores: Option<f64>,
    pub max_execution_time_seconds: u64,
    pub allowed_executables: Vec<String>,
    pub max_processes: u64,
    pub max_file_size_mb: u64,
    pub env_passthrough: Vec<String>,
    pub kill_grace_seconds: f64,
}
impl Default for NativeExecutionConfig {
    fn default() -> Self {
        Self {
            default_executable: "bash".into(),
            working_directory: "/tmp/symbiont-native".into(),
            enforce_resource_limits: true,
            max_memory_mb: Some(2048),
            max_cpu_seconds: Some(300),
            max_cpu_cores: None,
            max_execution_time_seconds: 300,
            allowed_executables: ["bash", "sh", "python3", "python", "node"].map(String::from).to_vec(),
            max_processes: 256,
            max_file_size_mb: 1024,
            env_passthrough: ["PATH", "HOME", "LANG", "TERM", "TZ", "USER"].map(String::from).to_vec(),
            kill_grace_seconds: 5.0,
        }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    pub refresh_ms: u64,
    pub warn_ratio: f64,
    pub critical_ratio: f64,
    pub keys: BTreeMap<String, Vec<String>>,
}
impl Default for DashboardConfig {
    fn default() -> Self {
        Self { refresh_ms: 1000, warn_ratio: 0.8, critical_ratio: 0.95, keys: BTreeMap::new() }
    }
}
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorConfig {
    pub data_dir: PathBuf,
    pub audit_log: Option<PathBuf>,
    pub tail_lines: usize,
}
impl Default for SupervisorConfig {
    fn default() -> Self {
        Self { data_dir: "./data".into(), audit_log: None, tail_lines: 200 }
    }
}
impl SupervisorConfig {
    pub fn audit_log_path(&self) -> PathBuf {
        self.audit_log.clone().unwrap_or_else(|| self.data_dir.join("audit.jsonl"))
    }
}
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainersConfig {
    pub docker_host: Option<String>,
    pub default_image: Option<String>,
}
#[derive(Debug, Clone)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Env(String),
    Agent(String),
    Flag(String),
}
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub origins: BTreeMap<String, Origin>,
    pub file: Option<PathBuf>,
    pub unused: Vec<String>,
}
impl LoadedConfig {
    pub fn set_origin(&mut self, key: &str, origin: Origin) {
        self.origins.insert(key.to_string(), origin);
    }
    pub fn from_config(config: Config) -> LoadedConfig {
        LoadedConfig { config, origins: BTreeMap::new(), file: None, unused: Vec::new() }
    }
}
