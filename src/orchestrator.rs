//! The library API of the seed: `SandboxOrchestrator::new(config)?` and
//! `orchestrator.execute_code(tier, code, env).await?`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::config::{Config, LoadedConfig};
use crate::plan::{self, Flags, Host};
use crate::supervisor::{Reason, RunRecord, Supervisor, SupervisorOptions};
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

/// An error of the library API: a refusal by policy, or a failure of the supervisor itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Error(pub String);

// `main() -> Result<(), Box<dyn Error>>` prints errors with Debug: make that the message.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Runs code on a chosen tier under the configured policy and limits.
pub struct SandboxOrchestrator {
    config: Config,
    supervisor: OnceCell<Supervisor>,
}

impl SandboxOrchestrator {
    /// Checks the configuration; the supervisor itself starts with the first execution.
    pub fn new(config: Config) -> Result<SandboxOrchestrator, Error> {
        if config.native_execution.default_executable.trim().is_empty() {
            return Err(Error("native_execution.default_executable is empty".into()));
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
                    .map_err(|e| Error(format!("cannot start the supervisor: {e}")))
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
        let spec = plan::plan_command(&loaded, &Flags::default(), argv, &extra, &Host::real())
            .map_err(|e| Error(e.0))?;
        let sup = self.supervisor().await?;
        let id = sup.launch(spec).map_err(|e| Error(e.to_string()))?;
        let record = sup
            .wait(id)
            .await
            .ok_or_else(|| Error("the run vanished".into()))?;
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
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
