//! The plan: configuration, agent files and command-line flags become run specifications.
//! Every decision about what may run and under which limits is made here, before launch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{LoadedConfig, Origin};
use crate::dsl::{AgentDef, AgentFile, Diagnostic, HandlerKind, StatementKind};
use crate::policy::{self, Allowlist};
use crate::supervisor::Limits;
use crate::supervisor::{RunSpec, Step};
use crate::tier::SecurityTier;

/// The operator's flags that shape a plan (shared by `run` and `exec`).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--native`: consent to native execution, and every agent on tier None.
    pub native: bool,
    /// `--sandbox-tier`.
    pub sandbox_tier: Option<SecurityTier>,
    pub image: Option<String>,
    /// `--max-memory`, MB.
    pub max_memory_mb: Option<u64>,
    /// `--max-cpu`, cores.
    pub max_cpu: Option<f64>,
    /// `--timeout`, seconds.
    pub timeout: Option<u64>,
    /// `--trigger`, repeatable.
    pub triggers: Vec<String>,
}

impl Flags {
    /// `--native` and `--sandbox-tier=none` are the operator's consent to native execution.
    pub fn native_consent(&self) -> bool {
        self.native || self.sandbox_tier == Some(SecurityTier::None)
    }

    /// Writes the flag values into the configuration, recording their origin.
    pub fn apply(&self, loaded: &mut LoadedConfig) {
        let n = &mut loaded.config.native_execution;
        let mut set = Vec::new();
        if let Some(m) = self.max_memory_mb {
            n.max_memory_mb = Some(m);
            set.push(("native_execution.max_memory_mb", "--max-memory"));
        }
        if let Some(c) = self.max_cpu {
            n.max_cpu_cores = Some(c);
            set.push(("native_execution.max_cpu_cores", "--max-cpu"));
        }
        if let Some(t) = self.timeout {
            n.max_execution_time_seconds = t;
            set.push(("native_execution.max_execution_time_seconds", "--timeout"));
        }
        if self.native_consent() {
            loaded.config.security.allow_native_execution = true;
            set.push((
                "security.allow_native_execution",
                if self.native {
                    "--native"
                } else {
                    "--sandbox-tier"
                },
            ));
        }
        if let Some(t) = self.tier_override() {
            loaded.config.security.default_sandbox_tier = t;
            set.push((
                "security.default_sandbox_tier",
                if self.native {
                    "--native"
                } else {
                    "--sandbox-tier"
                },
            ));
        }
        for (k, f) in set {
            loaded.set_origin(k, Origin::Flag(f.to_string()));
        }
    }

    /// The tier every agent runs on, when the operator chose one.
    pub fn tier_override(&self) -> Option<SecurityTier> {
        if self.native {
            Some(SecurityTier::None)
        } else {
            self.sandbox_tier
        }
    }
}

/// A refusal before anything runs: the message says where and why. Exit code 2.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanError(pub String);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

impl From<Diagnostic> for PlanError {
    fn from(d: Diagnostic) -> Self {
        PlanError(d.to_string())
    }
}

/// A loaded agent file with its text, for diagnostics that point into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub file: AgentFile,
    pub text: String,
}

impl SourceFile {
    pub fn load(path: &Path) -> Result<SourceFile, PlanError> {
        let file = crate::dsl::parse_file(path)?;
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Ok(SourceFile { file, text })
    }

    fn diag(&self, loc: crate::dsl::Location, msg: impl Into<String>) -> PlanError {
        Diagnostic::at(&self.file.path.display().to_string(), &self.text, loc, msg).into()
    }
}

/// A limit the agent can set or tighten, never loosen.
fn tighten<T: PartialOrd + Copy>(operator: Option<T>, agent: Option<T>) -> Option<T> {
    match (operator, agent) {
        (Some(o), Some(a)) => Some(if a < o { a } else { o }),
        (o, None) => o,
        (None, a) => a,
    }
}

/// The effective limits of an agent.
pub fn limits_for(loaded: &LoadedConfig, flags: &Flags, agent: Option<&AgentDef>) -> Limits {
    let n = &loaded.config.native_execution;
    let a = agent.map(|a| &a.limits);
    let mb = |v: u64| v.saturating_mul(1024 * 1024);
    let memory = match flags.max_memory_mb {
        Some(m) => Some(m),
        None => tighten(n.max_memory_mb, a.and_then(|a| a.max_memory_mb)),
    };
    let cores = match flags.max_cpu {
        Some(c) => Some(c),
        None => tighten(n.max_cpu_cores, a.and_then(|a| a.max_cpu_cores)),
    };
    let timeout = match flags.timeout {
        Some(t) => Duration::from_secs(t),
        None => tighten(
            Some(Duration::from_secs(n.max_execution_time_seconds)),
            a.and_then(|a| a.timeout),
        )
        .unwrap_or(Duration::from_secs(n.max_execution_time_seconds)),
    };
    Limits {
        memory_bytes: memory.map(mb),
        cpu_seconds: tighten(n.max_cpu_seconds, a.and_then(|a| a.max_cpu_seconds)),
        cpu_cores: cores,
        timeout: Some(timeout),
        max_processes: tighten(Some(n.max_processes), a.and_then(|a| a.max_processes)),
        file_size_bytes: tighten(Some(n.max_file_size_mb), a.and_then(|a| a.max_file_size_mb))
            .map(mb),
    }
}

/// What the plan needs from the host: its environment and PATH.
pub struct Host<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Host<'_> {
    pub fn real() -> Host<'static> {
        Host {
            env: &|k| std::env::var(k).ok(),
        }
    }
}

/// Native parts shared by every run of a plan: the allowlist, the working directory.
pub struct NativeContext {
    pub allowlist: Allowlist,
    pub cwd: PathBuf,
}

impl NativeContext {
    pub fn new(loaded: &LoadedConfig, host: &Host<'_>) -> Result<NativeContext, PlanError> {
        let n = &loaded.config.native_execution;
        let path = (host.env)("PATH").map(std::ffi::OsString::from);
        let allowlist = Allowlist::new(&n.allowed_executables, path.as_deref());
        let cwd =
            policy::prepare_working_directory(&n.working_directory).map_err(|e| PlanError(e.0))?;
        Ok(NativeContext { allowlist, cwd })
    }
}

/// One run to launch: the agent, the trigger, and its spec.
pub fn plan_runs(
    loaded: &LoadedConfig,
    flags: &Flags,
    files: &[SourceFile],
    host: &Host<'_>,
) -> Result<Vec<RunSpec>, PlanError> {
    let cfg = &loaded.config;
    let mut specs = Vec::new();
    // Triggers asked for must exist somewhere.
    for t in &flags.triggers {
        let known = files
            .iter()
            .flat_map(|f| &f.file.agents)
            .flat_map(|a| &a.handlers)
            .any(|h| h.kind.name() == t);
        if !known {
            let mut all: Vec<&str> = files
                .iter()
                .flat_map(|f| &f.file.agents)
                .flat_map(|a| &a.handlers)
                .map(|h| h.kind.name())
                .collect();
            all.sort();
            all.dedup();
            return Err(PlanError(format!(
                "--trigger {t}: no agent has a trigger named `{t}` (available: {})",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            )));
        }
    }
    let mut native: Option<NativeContext> = None;
    for sf in files {
        for agent in &sf.file.agents {
            let tier = flags
                .tier_override()
                .or(agent.tier.map(|(t, _)| t))
                .unwrap_or(cfg.security.default_sandbox_tier);
            let handlers: Vec<_> = agent
                .handlers
                .iter()
                .filter(|h| {
                    if flags.triggers.is_empty() {
                        true
                    } else {
                        matches!(&h.kind, HandlerKind::Trigger(n) if flags.triggers.contains(n))
                    }
                })
                .collect();
            if handlers.is_empty() {
                continue;
            }
            if tier.is_native() && !cfg.security.allow_native_execution {
                let at = agent.tier.map(|(_, l)| l).unwrap_or(agent.location);
                return Err(sf.diag(
                    at,
                    policy::native_disabled_message(&format!("agent {}", agent.name)),
                ));
            }
            let image = flags
                .image
                .clone()
                .or_else(|| agent.image.clone())
                .or_else(|| cfg.containers.default_image.clone());
            if let Err(e) = crate::supervisor::check_tier(tier, image.as_deref()) {
                let at = agent.tier.map(|(_, l)| l).unwrap_or(agent.location);
                return Err(sf.diag(at, format!("agent {}: {e}", agent.name)));
            }
            if native.is_none() {
                native = Some(NativeContext::new(loaded, host)?);
            }
            let ctx = native.as_ref().expect("native context");
            let limits = limits_for(loaded, flags, Some(agent));
            for h in handlers {
                let mut steps = Vec::new();
                for st in &h.statements {
                    if st.kind == StatementKind::ExecuteNative && !tier.is_native() {
                        return Err(sf.diag(
                            st.location,
                            format!(
                                "execute_native in agent {}, whose tier is {}: use execute(...)",
                                agent.name, tier
                            ),
                        ));
                    }
                    let argv0 = st.argv.first().map(String::as_str).unwrap_or("");
                    // The allowlist guards the host; a container's command runs in its image.
                    let program = if tier.is_native() {
                        ctx.allowlist
                            .resolve(argv0, &ctx.cwd)
                            .map_err(|e| sf.diag(st.location, e.0))?
                    } else {
                        PathBuf::from(argv0)
                    };
                    steps.push(Step {
                        program,
                        argv: st.argv.clone(),
                    });
                }
                if steps.is_empty() {
                    continue;
                }
                let agent_env: Vec<(String, String)> = agent
                    .env
                    .iter()
                    .map(|(k, v, _)| (k.clone(), v.clone()))
                    .collect();
                let env = policy::environment(
                    &cfg.native_execution.env_passthrough,
                    host.env,
                    &agent_env,
                    &[
                        ("SYMBIONT_AGENT", &agent.name),
                        ("SYMBIONT_TRIGGER", h.kind.name()),
                    ],
                );
                specs.push(RunSpec {
                    agent: agent.name.clone(),
                    trigger: h.kind.name().to_string(),
                    tier,
                    steps,
                    cwd: ctx.cwd.clone(),
                    env,
                    limits: limits.clone(),
                    enforce_limits: cfg.native_execution.enforce_resource_limits,
                    kill_grace: Duration::from_secs_f64(
                        cfg.native_execution.kill_grace_seconds.clamp(0.0, 3600.0),
                    ),
                    image: image.clone(),
                    network: agent.capabilities.iter().any(|c| c == "network"),
                    source: Some(format!(
                        "{}:{}:{}",
                        sf.file.path.display(),
                        h.location.line,
                        h.location.column
                    )),
                });
            }
        }
    }
    Ok(specs)
}

/// The spec of an ad-hoc command (`symbiont exec`, the library's `execute_code`).
pub fn plan_command(
    loaded: &LoadedConfig,
    flags: &Flags,
    argv: Vec<String>,
    extra_env: &[(String, String)],
    host: &Host<'_>,
) -> Result<RunSpec, PlanError> {
    let cfg = &loaded.config;
    let tier = flags
        .tier_override()
        .unwrap_or(cfg.security.default_sandbox_tier);
    if tier.is_native() && !cfg.security.allow_native_execution {
        return Err(PlanError(policy::native_disabled_message("this command")));
    }
    let image = flags
        .image
        .clone()
        .or_else(|| cfg.containers.default_image.clone());
    crate::supervisor::check_tier(tier, image.as_deref()).map_err(|e| PlanError(e.to_string()))?;
    let ctx = NativeContext::new(loaded, host)?;
    let argv0 = argv.first().cloned().unwrap_or_default();
    let program = if tier.is_native() {
        ctx.allowlist
            .resolve(&argv0, &ctx.cwd)
            .map_err(|e| PlanError(e.0))?
    } else {
        PathBuf::from(&argv0)
    };
    let env = policy::environment(
        &cfg.native_execution.env_passthrough,
        host.env,
        extra_env,
        &[("SYMBIONT_AGENT", "exec"), ("SYMBIONT_TRIGGER", "exec")],
    );
    Ok(RunSpec {
        agent: "exec".into(),
        trigger: "exec".into(),
        tier,
        steps: vec![Step { program, argv }],
        cwd: ctx.cwd,
        env,
        limits: limits_for(loaded, flags, None),
        enforce_limits: cfg.native_execution.enforce_resource_limits,
        kill_grace: Duration::from_secs_f64(
            cfg.native_execution.kill_grace_seconds.clamp(0.0, 3600.0),
        ),
        image,
        network: false,
        source: None,
    })
}
