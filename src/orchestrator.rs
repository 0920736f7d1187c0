//! The library API of the seed: `SandboxOrchestrator::new(config)?` and
//! `orchestrator.execute_code(tier, code, env).await?`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::config::{Config, LoadedConfig};
use crate::plan::{self, Host, PlanError};
use crate::policy::PolicyError;
use crate::supervisor::{LaunchError, Reason, RunRecord, Supervisor, SupervisorOptions};
use crate::tier::SecurityTier;

/// The outcome of one piece of code.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    pub stdout: String,
    pub stderr: String,
    /// The exit code, or -1 when the process was ended by a signal or never started.
    pub exit_code: i32,
    pub success: bool,
    /// Why the run ended (`exited`, `timeout`, `memory_limit`, ...).
    pub reason: Reason,
    pub duration: Duration,
    /// The full run record (peak memory, CPU time, log paths, ...).
    pub record: RunRecord,
}

/// An error of the library API, by failure domain. `Display` (and `Debug`) is the message a
/// user sees; [`std::error::Error::source`] is the domain's own error.
pub enum Error {
    /// The configuration cannot serve the API: `native_execution.default_executable` is empty.
    NoDefaultExecutable,
    /// Refused by policy: native execution disabled, a program not allowed or not found, an
    /// unusable working directory.
    Policy(PolicyError),
    /// The tier cannot run it (no image for a container tier, Tier3 unavailable, the daemon or
    /// image missing), or the supervisor refused the launch.
    Launch(LaunchError),
    /// Any other refusal by the plan.
    Plan(PlanError),
    /// The supervisor itself failed.
    Runtime(RuntimeError),
}

/// A failure of the supervisor, not of the run asked for.
#[derive(Debug)]
pub enum RuntimeError {
    /// The supervisor cannot start (its data directory, the audit log, ...).
    Start(std::io::Error),
    /// A launched run has no record.
    RunVanished,
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Start(e) => write!(f, "cannot start the supervisor: {e}"),
            RuntimeError::RunVanished => f.write_str("the run vanished"),
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Start(e) => Some(e),
            RuntimeError::RunVanished => None,
        }
    }
}

impl From<PlanError> for Error {
    /// A command's plan refuses by policy or by tier; each keeps its own domain.
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Policy(e) => Error::Policy(e),
            PlanError::Tier(e) => Error::Launch(e),
            e => Error::Plan(e),
        }
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Self {
        Error::Policy(e)
    }
}

impl From<LaunchError> for Error {
    fn from(e: LaunchError) -> Self {
        Error::Launch(e)
    }
}

impl From<RuntimeError> for Error {
    fn from(e: RuntimeError) -> Self {
        Error::Runtime(e)
    }
}

// `main() -> Result<(), Box<dyn Error>>` prints errors with Debug: make that the message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoDefaultExecutable => {
                f.write_str("native_execution.default_executable is empty")
            }
            Error::Policy(e) => e.fmt(f),
            Error::Launch(e) => e.fmt(f),
            Error::Plan(e) => e.fmt(f),
            Error::Runtime(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::NoDefaultExecutable => None,
            Error::Policy(e) => Some(e),
            Error::Launch(e) => Some(e),
            Error::Plan(e) => Some(e),
            Error::Runtime(e) => Some(e),
        }
    }
}

/// Runs code on a chosen tier under the configured policy and limits.
pub struct SandboxOrchestrator {
    config: Config,
    supervisor: OnceCell<Supervisor>,
}

impl SandboxOrchestrator {
    /// Checks the configuration; the supervisor itself starts with the first execution.
    pub fn new(config: Config) -> Result<SandboxOrchestrator, Error> {
        if config.native_execution.default_executable.trim().is_empty() {
            return Err(Error::NoDefaultExecutable);
        }
        Ok(SandboxOrchestrator {
            config,
            supervisor: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn supervisor(&self) -> Result<&Supervisor, Error> {
        self.supervisor
            .get_or_try_init(|| async {
                Supervisor::new(SupervisorOptions::from_config(&self.config))
                    .map_err(|e| Error::Runtime(RuntimeError::Start(e)))
            })
            .await
    }

    /// Runs `code` with `native_execution.default_executable` (`bash -c`, `python3 -c`,
    /// `node -e`, ...) on `tier`, with `env` as the only variables besides the passthrough ones.
    pub async fn execute_code(
        &self,
        tier: SecurityTier,
        code: &str,
        env: HashMap<String, String>,
    ) -> Result<ExecutionResult, Error> {
        let argv = crate::policy::code_argv(&self.config.native_execution.default_executable, code);
        self.execute_argv(tier, argv, env).await
    }

    /// Runs a command (argv, no shell) on `tier`.
    pub async fn execute_argv(
        &self,
        tier: SecurityTier,
        argv: Vec<String>,
        env: HashMap<String, String>,
    ) -> Result<ExecutionResult, Error> {
        // The tier is the caller's choice; consent to native execution stays the config's.
        let mut loaded = LoadedConfig::from_config(self.config.clone());
        loaded.config.security.default_sandbox_tier = tier;
        let mut extra: Vec<(String, String)> = env.into_iter().collect();
        extra.sort();
        let spec = plan::plan_command(&loaded, argv, &extra, &Host::real())?;
        let sup = self.supervisor().await?;
        let id = sup.launch(spec)?;
        let record = sup.wait(id).await.ok_or(RuntimeError::RunVanished)?;
        let read = |p: &std::path::Path| {
            String::from_utf8_lossy(&crate::supervisor::output::read_kept(p)).into_owned()
        };
        Ok(ExecutionResult {
            stdout: read(&record.stdout_log),
            stderr: read(&record.stderr_log),
            exit_code: record.exit_code.unwrap_or(-1),
            success: record.success(),
            reason: record.reason,
            duration: Duration::from_secs_f64(record.duration_secs),
            record: (*record).clone(),
        })
    }

    /// Stops every run still going and waits for them.
    pub async fn shutdown(&self) {
        if let Some(s) = self.supervisor.get() {
            s.shutdown().await;
        }
    }
}
