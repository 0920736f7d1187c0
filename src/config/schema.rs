//! Every configuration key: its section, name, type, checks, and how to read and write it
//! in a [`Config`]. The file loader, the environment loader and `render_effective` all work
//! from this one table, so a key cannot be known to one of them and missing from another.

use std::fmt;
use std::path::PathBuf;

use crate::tier::{SandboxLevel, SecurityTier};

use super::Config;

/// The sections of the file that the supervisor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Security,
    Native,
    Dashboard,
    Supervisor,
    Containers,
    Api,
    Microvm,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Self::Security => "security",
            Self::Native => "native_execution",
            Self::Dashboard => "dashboard",
            Self::Supervisor => "supervisor",
            Self::Containers => "containers",
            Self::Api => "api",
            Self::Microvm => "microvm",
        }
    }
}

/// One key with a value in [`Config`] (dashboard key bindings are handled apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    AllowNative,
    DefaultTier,
    DefaultExecutable,
    WorkingDirectory,
    EnforceLimits,
    MaxMemoryMb,
    MaxCpuSeconds,
    MaxCpuCores,
    MaxExecutionTime,
    AllowedExecutables,
    MaxProcesses,
    MaxFileSizeMb,
    EnvPassthrough,
    EnvFile,
    MinSandbox,
    DenyRead,
    AllowWrite,
    AllowRead,
    KillGrace,
    WatchdogIntervalMs,
    RefreshMs,
    WarnRatio,
    CriticalRatio,
    DataDir,
    AuditLog,
    TailLines,
    MaxLogMb,
    DockerHost,
    DefaultImage,
    KeyProvider,
    ApiHost,
    ApiPort,
    ApiTimeout,
    ApiMaxBodySize,
    MicrovmKernel,
    MicrovmInitramfs,
}

/// The type of a key and the checks on its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Tier,
    /// A sandbox level (Permissive, Moderate, Strict).
    Sandbox,
    /// A list of non-empty paths (`~` for the home directory).
    Paths,
    /// A non-empty string.
    Str,
    /// A non-empty path.
    Path,
    /// A positive integer, or "none"/"unlimited".
    OptPosInt,
    /// A positive number, or "none"/"unlimited".
    OptPosFloat,
    /// A positive integer.
    PosInt,
    /// An integer >= 0.
    Count,
    /// A number >= 0.
    NonNegFloat,
    /// A number in (0, 1].
    Ratio,
    /// A list of non-empty strings.
    Names,
    /// A list of environment variable names.
    EnvNames,
    /// A non-empty path; absent means "derived from another key".
    OptPath,
    /// A non-empty string; absent means "not set".
    OptStr,
    /// The seed's `{ Environment = { var_name = "NAME" } }`: the variable holding a token.
    KeyProvider,
}

/// A parsed value of some [`Kind`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Bool(bool),
    Tier(SecurityTier),
    Sandbox(SandboxLevel),
    Str(String),
    Path(PathBuf),
    OptU64(Option<u64>),
    OptF64(Option<f64>),
    U64(u64),
    Usize(usize),
    F64(f64),
    List(Vec<String>),
    OptPath(Option<PathBuf>),
    OptStr(Option<String>),
    /// The name of the variable of a [`Kind::KeyProvider`] (never its value).
    KeyVar(Option<String>),
}

impl Field {
    pub const ALL: [Field; 36] = [
        Self::AllowNative,
        Self::DefaultTier,
        Self::KeyProvider,
        Self::DefaultExecutable,
        Self::WorkingDirectory,
        Self::EnforceLimits,
        Self::MaxMemoryMb,
        Self::MaxCpuSeconds,
        Self::MaxCpuCores,
        Self::MaxExecutionTime,
        Self::AllowedExecutables,
        Self::MaxProcesses,
        Self::MaxFileSizeMb,
        Self::EnvPassthrough,
        Self::MinSandbox,
        Self::DenyRead,
        Self::AllowWrite,
        Self::AllowRead,
        Self::EnvFile,
        Self::KillGrace,
        Self::WatchdogIntervalMs,
        Self::RefreshMs,
        Self::WarnRatio,
        Self::CriticalRatio,
        Self::DataDir,
        Self::AuditLog,
        Self::TailLines,
        Self::MaxLogMb,
        Self::DockerHost,
        Self::DefaultImage,
        Self::ApiHost,
        Self::ApiPort,
        Self::ApiTimeout,
        Self::ApiMaxBodySize,
        Self::MicrovmKernel,
        Self::MicrovmInitramfs,
    ];

    pub fn section(self) -> Section {
        use Field::*;
        match self {
            AllowNative | DefaultTier | KeyProvider => Section::Security,
            DefaultExecutable | WorkingDirectory | EnforceLimits | MaxMemoryMb | MaxCpuSeconds
            | MaxCpuCores | MaxExecutionTime | AllowedExecutables | MaxProcesses
            | MaxFileSizeMb | EnvPassthrough | EnvFile | MinSandbox | DenyRead | AllowWrite
            | AllowRead | KillGrace | WatchdogIntervalMs => Section::Native,
            RefreshMs | WarnRatio | CriticalRatio => Section::Dashboard,
            DataDir | AuditLog | TailLines | MaxLogMb => Section::Supervisor,
            DockerHost | DefaultImage => Section::Containers,
            ApiHost | ApiPort | ApiTimeout | ApiMaxBodySize => Section::Api,
            MicrovmKernel | MicrovmInitramfs => Section::Microvm,
        }
    }

    /// The key's name inside its section.
    pub fn name(self) -> &'static str {
        use Field::*;
        match self {
            AllowNative => "allow_native_execution",
            DefaultTier => "default_sandbox_tier",
            DefaultExecutable => "default_executable",
            WorkingDirectory => "working_directory",
            EnforceLimits => "enforce_resource_limits",
            MaxMemoryMb => "max_memory_mb",
            MaxCpuSeconds => "max_cpu_seconds",
            MaxCpuCores => "max_cpu_cores",
            MaxExecutionTime => "max_execution_time_seconds",
            AllowedExecutables => "allowed_executables",
            MaxProcesses => "max_processes",
            MaxFileSizeMb => "max_file_size_mb",
            EnvPassthrough => "env_passthrough",
            EnvFile => "env_file",
            MinSandbox => "min_sandbox",
            DenyRead => "deny_read",
            AllowWrite => "allow_write",
            AllowRead => "allow_read",
            KillGrace => "kill_grace_seconds",
            WatchdogIntervalMs => "watchdog_interval_ms",
            RefreshMs => "refresh_ms",
            WarnRatio => "warn_ratio",
            CriticalRatio => "critical_ratio",
            DataDir => "data_dir",
            AuditLog => "audit_log",
            TailLines => "tail_lines",
            MaxLogMb => "max_log_mb",
            DockerHost => "docker_host",
            DefaultImage => "default_image",
            KeyProvider => "key_provider",
            ApiHost => "host",
            ApiPort => "port",
            ApiTimeout => "timeout_seconds",
            ApiMaxBodySize => "max_body_size",
            MicrovmKernel => "kernel",
            MicrovmInitramfs => "initramfs",
        }
    }

    /// The dotted canonical name used in `LoadedConfig::origins`.
    pub fn key(self) -> String {
        format!("{}.{}", self.section().name(), self.name())
    }

    pub fn kind(self) -> Kind {
        use Field::*;
        match self {
            AllowNative | EnforceLimits => Kind::Bool,
            DefaultTier => Kind::Tier,
            MinSandbox => Kind::Sandbox,
            DenyRead | AllowWrite | AllowRead => Kind::Paths,
            DefaultExecutable | ApiHost => Kind::Str,
            WorkingDirectory | DataDir => Kind::Path,
            MaxMemoryMb | MaxCpuSeconds | ApiPort | ApiTimeout | ApiMaxBodySize => Kind::OptPosInt,
            MaxCpuCores => Kind::OptPosFloat,
            MaxExecutionTime | MaxProcesses | MaxFileSizeMb | RefreshMs | WatchdogIntervalMs
            | MaxLogMb => Kind::PosInt,
            TailLines => Kind::Count,
            KillGrace => Kind::NonNegFloat,
            WarnRatio | CriticalRatio => Kind::Ratio,
            AllowedExecutables => Kind::Names,
            EnvPassthrough => Kind::EnvNames,
            AuditLog | EnvFile | MicrovmKernel | MicrovmInitramfs => Kind::OptPath,
            DockerHost | DefaultImage => Kind::OptStr,
            KeyProvider => Kind::KeyProvider,
        }
    }

    /// The field of `section` called `name` in a file. `enabled` in a native table is the
    /// same switch as `security.allow_native_execution`.
    pub fn lookup(section: Section, name: &str) -> Option<Field> {
        if section == Section::Native && name == "enabled" {
            return Some(Field::AllowNative);
        }
        Field::ALL
            .into_iter()
            .find(|f| f.section() == section && f.name() == name)
    }

    /// The key names a file may use in `section`, for "did you mean" and "valid keys" hints.
    pub fn names_in(section: Section) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Field::ALL
            .into_iter()
            .filter(|f| f.section() == section)
            .map(Field::name)
            .collect();
        match section {
            Section::Native => names.insert(0, "enabled"),
            Section::Security => names.push("native_execution"),
            Section::Dashboard => names.push("keys"),
            _ => {}
        }
        names
    }

    /// The current value of this field in `config`.
    pub fn get(self, c: &Config) -> Val {
        use Field::*;
        let n = &c.native_execution;
        match self {
            AllowNative => Val::Bool(c.security.allow_native_execution),
            DefaultTier => Val::Tier(c.security.default_sandbox_tier),
            DefaultExecutable => Val::Str(n.default_executable.clone()),
            WorkingDirectory => Val::Path(n.working_directory.clone()),
            EnforceLimits => Val::Bool(n.enforce_resource_limits),
            MaxMemoryMb => Val::OptU64(n.max_memory_mb),
            MaxCpuSeconds => Val::OptU64(n.max_cpu_seconds),
            MaxCpuCores => Val::OptF64(n.max_cpu_cores),
            MaxExecutionTime => Val::U64(n.max_execution_time_seconds),
            AllowedExecutables => Val::List(n.allowed_executables.clone()),
            MaxProcesses => Val::U64(n.max_processes),
            MaxFileSizeMb => Val::U64(n.max_file_size_mb),
            EnvPassthrough => Val::List(n.env_passthrough.clone()),
            EnvFile => Val::OptPath(n.env_file.clone()),
            MinSandbox => Val::Sandbox(n.min_sandbox),
            DenyRead => Val::List(n.deny_read.clone()),
            AllowWrite => Val::List(n.allow_write.clone()),
            AllowRead => Val::List(n.allow_read.clone()),
            KillGrace => Val::F64(n.kill_grace_seconds),
            WatchdogIntervalMs => Val::U64(n.watchdog_interval_ms),
            RefreshMs => Val::U64(c.dashboard.refresh_ms),
            WarnRatio => Val::F64(c.dashboard.warn_ratio),
            CriticalRatio => Val::F64(c.dashboard.critical_ratio),
            DataDir => Val::Path(c.supervisor.data_dir.clone()),
            AuditLog => Val::OptPath(c.supervisor.audit_log.clone()),
            TailLines => Val::Usize(c.supervisor.tail_lines),
            MaxLogMb => Val::U64(c.supervisor.max_log_mb),
            DockerHost => Val::OptStr(c.containers.docker_host.clone()),
            DefaultImage => Val::OptStr(c.containers.default_image.clone()),
            KeyProvider => Val::KeyVar(c.security.key_provider.clone()),
            ApiHost => Val::Str(c.api.host.clone()),
            ApiPort => Val::OptU64(c.api.port.map(u64::from)),
            ApiTimeout => Val::OptU64(c.api.timeout_seconds),
            ApiMaxBodySize => Val::OptU64(c.api.max_body_size),
            MicrovmKernel => Val::OptPath(c.microvm.kernel.clone()),
            MicrovmInitramfs => Val::OptPath(c.microvm.initramfs.clone()),
        }
    }

    /// Store `val` (which was parsed with this field's [`Kind`]) in `config`.
    pub fn set(self, c: &mut Config, val: Val) {
        use Field::*;
        let n = &mut c.native_execution;
        match (self, val) {
            (AllowNative, Val::Bool(v)) => c.security.allow_native_execution = v,
            (DefaultTier, Val::Tier(v)) => c.security.default_sandbox_tier = v,
            (DefaultExecutable, Val::Str(v)) => n.default_executable = v,
            (WorkingDirectory, Val::Path(v)) => n.working_directory = v,
            (EnforceLimits, Val::Bool(v)) => n.enforce_resource_limits = v,
            (MaxMemoryMb, Val::OptU64(v)) => n.max_memory_mb = v,
            (MaxCpuSeconds, Val::OptU64(v)) => n.max_cpu_seconds = v,
            (MaxCpuCores, Val::OptF64(v)) => n.max_cpu_cores = v,
            (MaxExecutionTime, Val::U64(v)) => n.max_execution_time_seconds = v,
            (AllowedExecutables, Val::List(v)) => n.allowed_executables = v,
            (MaxProcesses, Val::U64(v)) => n.max_processes = v,
            (MaxFileSizeMb, Val::U64(v)) => n.max_file_size_mb = v,
            (EnvPassthrough, Val::List(v)) => n.env_passthrough = v,
            (EnvFile, Val::OptPath(v)) => n.env_file = v,
            (MinSandbox, Val::Sandbox(v)) => n.min_sandbox = v,
            (DenyRead, Val::List(v)) => n.deny_read = v,
            (AllowWrite, Val::List(v)) => n.allow_write = v,
            (AllowRead, Val::List(v)) => n.allow_read = v,
            (KillGrace, Val::F64(v)) => n.kill_grace_seconds = v,
            (WatchdogIntervalMs, Val::U64(v)) => n.watchdog_interval_ms = v,
            (RefreshMs, Val::U64(v)) => c.dashboard.refresh_ms = v,
            (WarnRatio, Val::F64(v)) => c.dashboard.warn_ratio = v,
            (CriticalRatio, Val::F64(v)) => c.dashboard.critical_ratio = v,
            (DataDir, Val::Path(v)) => c.supervisor.data_dir = v,
            (AuditLog, Val::OptPath(v)) => c.supervisor.audit_log = v,
            (TailLines, Val::Usize(v)) => c.supervisor.tail_lines = v,
            (MaxLogMb, Val::U64(v)) => c.supervisor.max_log_mb = v,
            (DockerHost, Val::OptStr(v)) => c.containers.docker_host = v,
            (DefaultImage, Val::OptStr(v)) => c.containers.default_image = v,
            (KeyProvider, Val::KeyVar(v)) => c.security.key_provider = v,
            (ApiHost, Val::Str(v)) => c.api.host = v,
            // The range (1 to 65535) is checked before a value is stored.
            (ApiPort, Val::OptU64(v)) => c.api.port = v.and_then(|p| u16::try_from(p).ok()),
            (ApiTimeout, Val::OptU64(v)) => c.api.timeout_seconds = v,
            (ApiMaxBodySize, Val::OptU64(v)) => c.api.max_body_size = v,
            (MicrovmKernel, Val::OptPath(v)) => c.microvm.kernel = v,
            (MicrovmInitramfs, Val::OptPath(v)) => c.microvm.initramfs = v,
            (field, val) => unreachable!("{field:?} cannot hold {val:?}"),
        }
    }
}

/// A day, in seconds: the longest timeout and CPU-time budget (per CPU) a key takes.
pub(crate) const DAY_SECS: u64 = 86_400;

/// The inclusive range of a numeric key and what its ends are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    pub lo: f64,
    pub hi: f64,
    /// Why the ends are where they are, for the message.
    pub why: &'static str,
}

impl Bounds {
    /// "must be from LO to HI (WHY)"
    pub fn describe(&self) -> String {
        format!("must be from {} to {} ({})", self.lo, self.hi, self.why)
    }

    pub fn contains(&self, v: f64) -> bool {
        v >= self.lo && v <= self.hi
    }
}

impl Field {
    /// The documented range of a numeric key on this machine (README, "Ranges"); `None` for
    /// keys that are not numbers and for the ratios, whose kind already bounds them.
    pub fn bounds(self) -> Option<Bounds> {
        use Field::*;
        let m = super::machine::Machine::get();
        let b = |lo: f64, hi: f64, why| Some(Bounds { lo, hi, why });
        match self {
            MaxMemoryMb => b(
                4.0,
                m.memory_mb as f64,
                "MiB: the 4 MiB a runtime needs, up to this machine's memory",
            ),
            MaxCpuSeconds => b(
                1.0,
                (DAY_SECS * m.cpus) as f64,
                "seconds: at most a day of every CPU of this machine",
            ),
            // The seed's own config asks for 4 cores and must load on smaller machines.
            MaxCpuCores => b(
                0.01,
                m.cpus.max(4) as f64,
                "cores: the smallest CPU quota, up to this machine's CPUs or 4, whichever is more",
            ),
            MaxExecutionTime => b(1.0, DAY_SECS as f64, "seconds: at most a day"),
            MaxProcesses => b(
                1.0,
                m.pid_max as f64,
                "processes: up to the kernel's pid_max on this machine",
            ),
            MaxFileSizeMb => b(1.0, (16u64 << 20) as f64, "MiB: at most 16 TiB"),
            KillGrace => b(0.0, 3600.0, "seconds: at most an hour"),
            WatchdogIntervalMs => b(1.0, 60_000.0, "milliseconds: at most a minute"),
            RefreshMs => b(1.0, 60_000.0, "milliseconds: at most a minute"),
            TailLines => b(0.0, 100_000.0, "lines"),
            MaxLogMb => b(
                1.0,
                (1u64 << 20) as f64,
                "MiB per stream of a run: at most 1 TiB",
            ),
            ApiPort => b(1.0, 65535.0, "a TCP port"),
            ApiTimeout => b(1.0, DAY_SECS as f64, "seconds: at most a day"),
            ApiMaxBodySize => b(
                1024.0,
                (1u64 << 30) as f64,
                "bytes: at least 1 KiB, at most 1 GiB",
            ),
            _ => None,
        }
    }

    /// What is wrong with `val` if it lies outside [`Field::bounds`]: "must be from ...".
    pub fn out_of_range(self, val: &Val) -> Option<String> {
        let v = match val {
            Val::OptU64(Some(v)) | Val::U64(v) => *v as f64,
            Val::Usize(v) => *v as f64,
            Val::OptF64(Some(v)) | Val::F64(v) => *v,
            _ => return None,
        };
        let b = self.bounds()?;
        (!b.contains(v)).then(|| b.describe())
    }
}

pub(crate) const TIER_CHOICES: &str =
    "a security tier: None/native, Tier1/docker, Tier2/gvisor or Tier3/microvm";

impl Kind {
    /// What a value of this kind must be, as in "`key` must be ...".
    pub fn expected(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean (true or false)",
            Kind::Tier => TIER_CHOICES,
            Kind::Sandbox => "a sandbox level: Permissive, Moderate or Strict",
            Kind::Paths => "an array of non-empty paths (`~` is the home directory)",
            Kind::Str => "a non-empty string",
            Kind::Path | Kind::OptPath => "a non-empty path string",
            Kind::OptPosInt => "a positive integer (or \"none\")",
            Kind::OptPosFloat => "a positive number (or \"none\")",
            Kind::PosInt => "a positive integer",
            Kind::Count => "an integer >= 0",
            Kind::NonNegFloat => "a number >= 0",
            Kind::Ratio => "a number greater than 0 and at most 1",
            Kind::Names => "an array of non-empty strings",
            Kind::EnvNames => "an array of environment variable names",
            Kind::OptStr => "a non-empty string",
            Kind::KeyProvider => {
                "{ Environment = { var_name = \"NAME\" } } (the variable that holds the API token)"
            }
        }
    }

    /// What an environment variable of this kind must hold.
    pub fn expected_env(self) -> &'static str {
        match self {
            Kind::Bool => "true, false, 1, 0, yes or no",
            Kind::OptPosInt => "a positive integer or \"none\"",
            Kind::OptPosFloat => "a positive number or \"none\"",
            Kind::Names => "a comma-separated list of non-empty names",
            Kind::EnvNames => "a comma-separated list of environment variable names",
            Kind::Paths => "a colon-separated list of paths",
            other => other.expected(),
        }
    }

    /// Parse the text of an environment variable (already known to be non-empty).
    pub fn parse_env(self, raw: &str) -> Option<Val> {
        let s = raw.trim();
        match self {
            Kind::Bool => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(Val::Bool(true)),
                "false" | "0" | "no" => Some(Val::Bool(false)),
                _ => None,
            },
            Kind::Tier => s.parse().ok().map(Val::Tier),
            Kind::Sandbox => s.parse().ok().map(Val::Sandbox),
            Kind::Paths => {
                let items: Vec<String> = s
                    .split(':')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_string)
                    .collect();
                self.check_list(items)
            }
            Kind::Str => non_empty(s).map(|v| Val::Str(v.to_string())),
            Kind::Path => non_empty(s).map(|v| Val::Path(PathBuf::from(v))),
            Kind::OptPath => non_empty(s).map(|v| Val::OptPath(Some(PathBuf::from(v)))),
            Kind::OptStr => non_empty(s).map(|v| Val::OptStr(Some(v.to_string()))),
            Kind::KeyProvider => is_env_name(s).then(|| Val::KeyVar(Some(s.to_string()))),
            Kind::OptPosInt if is_no_limit(s) => Some(Val::OptU64(None)),
            Kind::OptPosInt => positive_int(s.parse().ok()?).map(|v| Val::OptU64(Some(v))),
            Kind::PosInt => positive_int(s.parse().ok()?).map(Val::U64),
            Kind::Count => s.parse().ok().map(Val::Usize),
            Kind::OptPosFloat if is_no_limit(s) => Some(Val::OptF64(None)),
            Kind::OptPosFloat | Kind::NonNegFloat | Kind::Ratio => {
                self.check_float(s.parse().ok()?)
            }
            Kind::Names | Kind::EnvNames => {
                let items: Vec<String> = s
                    .split(',')
                    .map(str::trim)
                    .filter(|i| !i.is_empty())
                    .map(str::to_string)
                    .collect();
                self.check_list(items)
            }
        }
    }

    /// Check a number against this kind (which must be a float kind).
    pub fn check_float(self, v: f64) -> Option<Val> {
        if !v.is_finite() {
            return None;
        }
        match self {
            Kind::OptPosFloat if v > 0.0 => Some(Val::OptF64(Some(v))),
            Kind::NonNegFloat if v >= 0.0 => Some(Val::F64(v)),
            Kind::Ratio if v > 0.0 && v <= 1.0 => Some(Val::F64(v)),
            _ => None,
        }
    }

    /// Check a list of strings against this kind (which must be a list kind).
    pub fn check_list(self, items: Vec<String>) -> Option<Val> {
        let ok = match self {
            Kind::Names | Kind::Paths => items.iter().all(|i| !i.trim().is_empty()),
            Kind::EnvNames => items.iter().all(|i| is_env_name(i)),
            _ => false,
        };
        ok.then_some(Val::List(items))
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.trim().is_empty()).then_some(s)
}

fn positive_int(v: u64) -> Option<u64> {
    (v > 0).then_some(v)
}

/// "none" or "unlimited", any case: an optional limit that is switched off.
pub(crate) fn is_no_limit(s: &str) -> bool {
    let s = s.trim();
    s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("unlimited")
}

/// A name an environment variable can have: non-empty, no `=`, no NUL, no whitespace.
pub(crate) fn is_env_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['=', '\0']) && !s.chars().any(char::is_whitespace)
}

/// A TOML basic string for `s`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn quote_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", inner.join(", "))
}

/// Values print as they would be written in TOML; an absent optional value prints `none`.
impl Val {
    /// The value as JSON (`symbiont check --json`): `null` for an absent optional value.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Val::Bool(v) => J::from(*v),
            Val::Tier(t) => J::from(t.name()),
            Val::Sandbox(l) => J::from(l.name()),
            Val::Str(s) | Val::OptStr(Some(s)) => J::from(s.as_str()),
            Val::Path(p) | Val::OptPath(Some(p)) => J::from(p.to_string_lossy()),
            Val::OptU64(Some(v)) | Val::U64(v) => J::from(*v),
            Val::Usize(v) => J::from(*v),
            Val::OptF64(Some(v)) | Val::F64(v) => J::from(*v),
            Val::List(items) => J::from(items.clone()),
            Val::KeyVar(Some(v)) => serde_json::json!({"Environment": {"var_name": v}}),
            Val::OptU64(None)
            | Val::OptF64(None)
            | Val::OptPath(None)
            | Val::OptStr(None)
            | Val::KeyVar(None) => J::Null,
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Bool(v) => write!(f, "{v}"),
            Val::Tier(t) => f.write_str(&quote(t.name())),
            Val::Sandbox(l) => f.write_str(&quote(l.name())),
            Val::Str(s) | Val::OptStr(Some(s)) => f.write_str(&quote(s)),
            Val::Path(p) | Val::OptPath(Some(p)) => f.write_str(&quote(&p.to_string_lossy())),
            Val::OptU64(Some(v)) | Val::U64(v) => write!(f, "{v}"),
            Val::Usize(v) => write!(f, "{v}"),
            Val::OptF64(Some(v)) | Val::F64(v) => write!(f, "{v:?}"),
            Val::List(items) => f.write_str(&quote_list(items)),
            Val::KeyVar(Some(v)) => write!(f, "{{ Environment = {{ var_name = {} }} }}", quote(v)),
            Val::OptU64(None)
            | Val::OptF64(None)
            | Val::OptPath(None)
            | Val::OptStr(None)
            | Val::KeyVar(None) => f.write_str("none"),
        }
    }
}
