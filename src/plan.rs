//! The plan: configuration, agent files and command-line flags become run specifications.
//! Every decision about what may run and under which limits is made here, before launch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{LoadedConfig, Origin};
use crate::dsl::{AgentDef, AgentFile, Diagnostic, HandlerKind, StatementKind};
use crate::policy::{self, Allowlist, PolicyError};
use crate::supervisor::{Confinement, LaunchError, Limits, RunSpec, Step};
use crate::tier::{SandboxLevel, SecurityTier};

/// The operator's flags that shape a plan (shared by `run`, `exec`, `dashboard` and `check`).
///
/// A flag's value has one path: [`Flags::apply`] writes it into the configuration, with
/// [`Origin::Flag`], and the plan reads it from there and nowhere else. The origin is what
/// puts a flag above the agent file (precedence, lowest first: defaults, config file,
/// environment, agent file, flags).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--native`: consent to native execution, and every agent on tier None.
    pub native: bool,
    /// `--sandbox-tier`.
    pub sandbox_tier: Option<SecurityTier>,
    /// `--image`.
    pub image: Option<String>,
    /// `--max-memory`, MB.
    pub max_memory_mb: Option<u64>,
    /// `--max-cpu`, cores.
    pub max_cpu: Option<f64>,
    /// `--timeout`, seconds.
    pub timeout: Option<u64>,
    /// `--pass-env NAME`: host variables passed to this invocation's agents.
    pub pass_env: Vec<String>,
    /// `exec --sandbox LEVEL`: the command's sandbox level (the operator's floor still holds).
    pub sandbox: Option<SandboxLevel>,
}

/// The configuration keys the flags write.
const ALLOW_NATIVE: &str = "security.allow_native_execution";
const DEFAULT_TIER: &str = "security.default_sandbox_tier";
const DEFAULT_IMAGE: &str = "containers.default_image";
const MAX_MEMORY: &str = "native_execution.max_memory_mb";
const MAX_CPU_CORES: &str = "native_execution.max_cpu_cores";
const TIMEOUT: &str = "native_execution.max_execution_time_seconds";

impl Flags {
    /// Each limit flag's value against the range of the key it writes (the same ranges as
    /// the config file's): `Err` names the flag, its value and the range.
    pub fn check(&self) -> Result<(), String> {
        let int = |v: Option<u64>| v.map(|v| (v as f64, v.to_string()));
        let values = [
            ("--max-memory", "max_memory_mb", int(self.max_memory_mb)),
            (
                "--max-cpu",
                "max_cpu_cores",
                self.max_cpu.map(|v| (v, v.to_string())),
            ),
            ("--timeout", "max_execution_time_seconds", int(self.timeout)),
        ];
        for (flag, key, value) in values {
            let Some((v, text)) = value else { continue };
            crate::config::check_native_range(key, v)
                .map_err(|range| format!("{flag}={text}: {range}"))?;
        }
        if let Some(bad) = self
            .pass_env
            .iter()
            .find(|n| !crate::secrets::valid_name(n))
        {
            return Err(format!(
                "--pass-env {bad}: not a variable name (letters, digits and _, not starting with a digit)"
            ));
        }
        Ok(())
    }

    /// Writes the flag values into the configuration, recording their origin. This is the
    /// only reader of the flag values: everything after it reads the configuration.
    pub fn apply(&self, loaded: &mut LoadedConfig) {
        let c = &mut loaded.config;
        let mut set = Vec::new();
        if let Some(m) = self.max_memory_mb {
            c.native_execution.max_memory_mb = Some(m);
            set.push((MAX_MEMORY, "--max-memory"));
        }
        if let Some(cores) = self.max_cpu {
            c.native_execution.max_cpu_cores = Some(cores);
            set.push((MAX_CPU_CORES, "--max-cpu"));
        }
        if let Some(t) = self.timeout {
            c.native_execution.max_execution_time_seconds = t;
            set.push((TIMEOUT, "--timeout"));
        }
        if let Some(image) = &self.image {
            c.containers.default_image = Some(image.clone());
            set.push((DEFAULT_IMAGE, "--image"));
        }
        let tier_flag = if self.native {
            "--native"
        } else {
            "--sandbox-tier"
        };
        // `--native` and `--sandbox-tier=none` are the operator's consent to native execution.
        let tier = if self.native {
            Some(SecurityTier::None)
        } else {
            self.sandbox_tier
        };
        if tier == Some(SecurityTier::None) {
            c.security.allow_native_execution = true;
            set.push((ALLOW_NATIVE, tier_flag));
        }
        if let Some(t) = tier {
            c.security.default_sandbox_tier = t;
            set.push((DEFAULT_TIER, tier_flag));
        }
        for (k, f) in set {
            loaded.set_origin(k, Origin::Flag(f.to_string()));
        }
        for name in &self.pass_env {
            if !loaded.pass_env.contains(name) {
                loaded.pass_env.push(name.clone());
            }
        }
        if self.sandbox.is_some() {
            loaded.sandbox = self.sandbox;
        }
    }
}

/// Whether a flag set `key`: a flag's value outranks the agent file's.
fn from_flag(loaded: &LoadedConfig, key: &str) -> bool {
    matches!(loaded.origin(key), Some(Origin::Flag(_)))
}

/// The tier an agent runs on: a flag's, else the agent's own, else the configured default.
pub fn tier_for(loaded: &LoadedConfig, agent: Option<&AgentDef>) -> SecurityTier {
    let configured = loaded.config.security.default_sandbox_tier;
    match agent.and_then(|a| a.tier) {
        Some((t, _)) if !from_flag(loaded, DEFAULT_TIER) => t,
        _ => configured,
    }
}

/// The image of a container agent: a flag's, else the agent's own, else the configured default.
pub fn image_for(loaded: &LoadedConfig, agent: Option<&AgentDef>) -> Option<String> {
    let configured = loaded.config.containers.default_image.clone();
    match agent.and_then(|a| a.image.clone()) {
        Some(image) if !from_flag(loaded, DEFAULT_IMAGE) => Some(image),
        _ => configured,
    }
}

/// A refusal before anything runs: the message (`Display`) says where and why. Exit code 2.
#[derive(Debug)]
pub enum PlanError {
    /// An agent file that cannot be read or parsed, located by the dsl (`file:line:col`).
    Parse(Diagnostic),
    /// `--trigger NAME` that no agent has; `available` lists the triggers there are.
    UnknownTrigger {
        trigger: String,
        available: Vec<String>,
    },
    /// A refusal by policy: native execution disabled, a program not allowed or not found,
    /// an unusable working directory.
    Policy(PolicyError),
    /// The tier cannot run here as asked (no image for a container tier, Tier3 unavailable).
    Tier(LaunchError),
    /// `execute_native` in an agent whose tier is not None.
    ExecuteNativeOffNative { agent: String, tier: SecurityTier },
    /// One of the refusals above, at its place in an agent file. The diagnostic is the
    /// message; [`PlanError::cause`] is the refusal.
    Located {
        diagnostic: Diagnostic,
        cause: Box<PlanError>,
    },
}

impl PlanError {
    /// The refusal itself, without the agent-file location around it.
    pub fn cause(&self) -> &PlanError {
        match self {
            PlanError::Located { cause, .. } => cause.cause(),
            e => e,
        }
    }

    /// The program to run does not exist (not on PATH, no such file).
    pub fn program_not_found(&self) -> bool {
        matches!(
            self.cause(),
            PlanError::Policy(PolicyError::NotOnPath { .. } | PolicyError::NoSuchFile { .. })
        )
    }

    /// Policy refused the run: native execution disabled, a program not allowed.
    pub fn refused_by_policy(&self) -> bool {
        matches!(
            self.cause(),
            PlanError::Policy(PolicyError::NotAllowed { .. } | PolicyError::NativeDisabled { .. })
                | PlanError::Tier(LaunchError::SandboxUnavailable { .. })
        )
    }

    /// The whole error, coloured or not; `Display` is `render(false)`.
    pub fn render(&self, color: bool) -> String {
        match self.diagnostic() {
            Some(d) => d.render(color),
            None => self.to_string(),
        }
    }

    /// Where in an agent file, when the error is in one.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            PlanError::Parse(d) | PlanError::Located { diagnostic: d, .. } => Some(d),
            _ => None,
        }
    }
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Parse(d) | PlanError::Located { diagnostic: d, .. } => d.fmt(f),
            PlanError::UnknownTrigger { trigger, available } => write!(
                f,
                "--trigger {trigger}: no agent has a trigger named `{trigger}` (available: {})",
                if available.is_empty() {
                    "none".to_string()
                } else {
                    available.join(", ")
                }
            ),
            PlanError::Policy(e) => e.fmt(f),
            PlanError::Tier(e) => e.fmt(f),
            PlanError::ExecuteNativeOffNative { agent, tier } => write!(
                f,
                "execute_native in agent {agent}, whose tier is {tier}: use execute(...)"
            ),
        }
    }
}

impl std::error::Error for PlanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlanError::Parse(d) => Some(d),
            PlanError::Policy(e) => Some(e),
            PlanError::Tier(e) => Some(e),
            PlanError::Located { cause, .. } => Some(&**cause),
            PlanError::UnknownTrigger { .. } | PlanError::ExecuteNativeOffNative { .. } => None,
        }
    }
}

impl From<Diagnostic> for PlanError {
    fn from(d: Diagnostic) -> Self {
        PlanError::Parse(d)
    }
}

impl From<PolicyError> for PlanError {
    fn from(e: PolicyError) -> Self {
        PlanError::Policy(e)
    }
}

impl From<LaunchError> for PlanError {
    fn from(e: LaunchError) -> Self {
        PlanError::Tier(e)
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

    /// An agent file read elsewhere (the service gets its text from the client): `path` is
    /// where the messages say it is.
    pub fn from_text(path: &Path, text: &str) -> Result<SourceFile, PlanError> {
        let file = crate::dsl::parse_str(text, path)?;
        Ok(SourceFile {
            file,
            text: text.to_string(),
        })
    }

    /// `cause` at `loc` in this file; the diagnostic's message is `msg`.
    fn locate(&self, loc: crate::dsl::Location, msg: String, cause: PlanError) -> PlanError {
        PlanError::Located {
            diagnostic: Diagnostic::at(&self.file.path.display().to_string(), &self.text, loc, msg),
            cause: Box::new(cause),
        }
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

/// A limit set by a flag stands; any other the agent may set or tighten.
fn layered<T: PartialOrd + Copy>(
    loaded: &LoadedConfig,
    key: &str,
    configured: Option<T>,
    agent: Option<T>,
) -> Option<T> {
    if from_flag(loaded, key) {
        configured
    } else {
        tighten(configured, agent)
    }
}

/// The effective limits of an agent: a flag's value stands; below a flag, the agent file
/// may set a limit or tighten the configured one, never loosen it.
pub fn limits_for(loaded: &LoadedConfig, agent: Option<&AgentDef>) -> Limits {
    let n = &loaded.config.native_execution;
    let a = agent.map(|a| &a.limits);
    let mb = |v: u64| v.saturating_mul(1024 * 1024);
    let configured_timeout = Duration::from_secs(n.max_execution_time_seconds);
    let timeout = layered(
        loaded,
        TIMEOUT,
        Some(configured_timeout),
        a.and_then(|a| a.timeout),
    )
    .unwrap_or(configured_timeout);
    Limits {
        memory_bytes: layered(
            loaded,
            MAX_MEMORY,
            n.max_memory_mb,
            a.and_then(|a| a.max_memory_mb),
        )
        .map(mb),
        cpu_seconds: tighten(n.max_cpu_seconds, a.and_then(|a| a.max_cpu_seconds)),
        cpu_cores: layered(
            loaded,
            MAX_CPU_CORES,
            n.max_cpu_cores,
            a.and_then(|a| a.max_cpu_cores),
        ),
        timeout: Some(timeout),
        max_processes: tighten(Some(n.max_processes), a.and_then(|a| a.max_processes)),
        file_size_bytes: tighten(Some(n.max_file_size_mb), a.and_then(|a| a.max_file_size_mb))
            .map(mb),
    }
}

/// What the plan needs from the host: its environment and PATH, and whether it may make the
/// working directory (`symbiont check` plans without writing anything).
pub struct Host<'a> {
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub make_dirs: bool,
}

impl Host<'_> {
    pub fn real() -> Host<'static> {
        Host {
            env: &|k| std::env::var(k).ok(),
            make_dirs: true,
        }
    }

    /// This host, looked at only: a missing working directory is checked, not made.
    pub fn checking() -> Host<'static> {
        Host {
            make_dirs: false,
            ..Host::real()
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
        let cwd = if host.make_dirs {
            policy::prepare_working_directory(&n.working_directory)?
        } else {
            policy::check_working_directory(&n.working_directory)?
        };
        Ok(NativeContext { allowlist, cwd })
    }
}

/// The runs to launch: one spec per agent and trigger. `triggers` (`--trigger`) picks the
/// `on trigger` blocks to fire; empty fires every block.
pub fn plan_runs(
    loaded: &LoadedConfig,
    triggers: &[String],
    files: &[SourceFile],
    host: &Host<'_>,
) -> Result<Vec<RunSpec>, PlanError> {
    let cfg = &loaded.config;
    let mut specs = Vec::new();
    // Triggers asked for must exist somewhere.
    for t in triggers {
        let known = files
            .iter()
            .flat_map(|f| &f.file.agents)
            .flat_map(|a| &a.handlers)
            .any(|h| h.kind.name() == t);
        if !known {
            let mut available: Vec<String> = files
                .iter()
                .flat_map(|f| &f.file.agents)
                .flat_map(|a| &a.handlers)
                .map(|h| h.kind.name().to_string())
                .collect();
            available.sort();
            available.dedup();
            return Err(PlanError::UnknownTrigger {
                trigger: t.clone(),
                available,
            });
        }
    }
    let mut native: Option<NativeContext> = None;
    let mut operator: Option<Vec<(String, String)>> = None;
    for sf in files {
        for agent in &sf.file.agents {
            let tier = tier_for(loaded, Some(agent));
            let handlers: Vec<_> = agent
                .handlers
                .iter()
                .filter(|h| {
                    if triggers.is_empty() {
                        true
                    } else {
                        matches!(&h.kind, HandlerKind::Trigger(n) if triggers.contains(n))
                    }
                })
                .collect();
            if handlers.is_empty() {
                continue;
            }
            let at = agent.tier.map(|(_, l)| l).unwrap_or(agent.location);
            if tier.is_native() && !cfg.security.allow_native_execution {
                let e = PolicyError::NativeDisabled {
                    what: format!("agent {}", agent.name),
                };
                return Err(sf.locate(at, e.to_string(), e.into()));
            }
            let image = image_for(loaded, Some(agent));
            if let Err(e) = crate::supervisor::check_tier(tier, image.as_deref()) {
                return Err(sf.locate(at, format!("agent {}: {e}", agent.name), e.into()));
            }
            if native.is_none() {
                native = Some(NativeContext::new(loaded, host)?);
            }
            let ctx = native.as_ref().expect("native context");
            let limits = limits_for(loaded, Some(agent));
            let sandbox = agent_sandbox(loaded, host, agent)
                .map_err(|e| sf.locate(agent.location, e.to_string(), e))?;
            for h in handlers {
                let mut steps = Vec::new();
                for st in &h.statements {
                    if st.kind == StatementKind::ExecuteNative && !tier.is_native() {
                        let e = PlanError::ExecuteNativeOffNative {
                            agent: agent.name.clone(),
                            tier,
                        };
                        return Err(sf.locate(st.location, e.to_string(), e));
                    }
                    let argv0 = st.argv.first().map(String::as_str).unwrap_or("");
                    // The allowlist guards the host; a container's command runs in its image.
                    let program = if tier.is_native() {
                        ctx.allowlist
                            .resolve(argv0, &ctx.cwd)
                            .map_err(|e| sf.locate(st.location, e.to_string(), e.into()))?
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
                if operator.is_none() {
                    operator = Some(operator_env(loaded, host)?);
                }
                let agent_env: Vec<(String, String)> = agent
                    .env
                    .iter()
                    .map(|(k, v, _)| (k.clone(), v.clone()))
                    .chain(operator.iter().flatten().cloned())
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
                    sandbox: sandbox.clone(),
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

/// The operator's variables for every agent (`env_file`, then `--pass-env`), set over an
/// agent file's own; their values, and those of secret-looking passthrough variables, are
/// masked in logs and tails from now on. `symbiont check` calls it to check the env file.
pub fn operator_env(
    loaded: &LoadedConfig,
    host: &Host<'_>,
) -> Result<Vec<(String, String)>, PlanError> {
    let n = &loaded.config.native_execution;
    Ok(policy::operator_environment(
        n.env_file.as_deref(),
        &loaded.pass_env,
        &n.env_passthrough,
        host.env,
    )?)
}

/// The spec of an ad-hoc command (`symbiont exec`, the library's `execute_code`).
pub fn plan_command(
    loaded: &LoadedConfig,
    argv: Vec<String>,
    extra_env: &[(String, String)],
    host: &Host<'_>,
) -> Result<RunSpec, PlanError> {
    let cfg = &loaded.config;
    let tier = tier_for(loaded, None);
    if tier.is_native() && !cfg.security.allow_native_execution {
        return Err(PolicyError::NativeDisabled {
            what: "this command".into(),
        }
        .into());
    }
    let image = image_for(loaded, None);
    crate::supervisor::check_tier(tier, image.as_deref())?;
    let ctx = NativeContext::new(loaded, host)?;
    let argv0 = argv.first().cloned().unwrap_or_default();
    let program = if tier.is_native() {
        ctx.allowlist.resolve(&argv0, &ctx.cwd)?
    } else {
        PathBuf::from(&argv0)
    };
    let extra_env: Vec<(String, String)> = extra_env
        .iter()
        .cloned()
        .chain(operator_env(loaded, host)?)
        .collect();
    let env = policy::environment(
        &cfg.native_execution.env_passthrough,
        host.env,
        &extra_env,
        &[("SYMBIONT_AGENT", "exec"), ("SYMBIONT_TRIGGER", "exec")],
    );
    let asked = loaded.sandbox.unwrap_or_default();
    let sandbox = sandbox_for(loaded, host, tier, "exec", asked, &[])?;
    Ok(RunSpec {
        agent: "exec".into(),
        trigger: "exec".into(),
        tier,
        steps: vec![Step { program, argv }],
        cwd: ctx.cwd,
        env,
        limits: limits_for(loaded, None),
        enforce_limits: cfg.native_execution.enforce_resource_limits,
        kill_grace: Duration::from_secs_f64(
            cfg.native_execution.kill_grace_seconds.clamp(0.0, 3600.0),
        ),
        image,
        network: false,
        sandbox,
        source: None,
    })
}

/// The confinement of an agent of a file as `run` would decide it (`check` shows it).
pub fn agent_sandbox(
    loaded: &LoadedConfig,
    host: &Host<'_>,
    agent: &AgentDef,
) -> Result<Confinement, PlanError> {
    let asked = match agent.sandbox.as_deref() {
        None => SandboxLevel::Permissive,
        Some(name) => name.parse().map_err(|_| PolicyError::UnknownSandbox {
            agent: agent.name.clone(),
            name: name.to_string(),
        })?,
    };
    let tier = tier_for(loaded, Some(agent));
    sandbox_for(loaded, host, tier, &agent.name, asked, &agent.capabilities)
}

/// The confinement of one agent (or command) on `tier`: the policy's decision, then whether
/// this host can enforce it on the native tier (refused, never weakened, where it cannot).
fn sandbox_for(
    loaded: &LoadedConfig,
    host: &Host<'_>,
    tier: SecurityTier,
    agent: &str,
    asked: SandboxLevel,
    capabilities: &[String],
) -> Result<Confinement, PlanError> {
    let home = (host.env)("HOME").map(PathBuf::from);
    let c = policy::confinement(
        &loaded.config.native_execution,
        agent,
        asked,
        capabilities,
        home.as_deref(),
    )?;
    if tier.is_native() && c.any() {
        crate::sandbox::enforceable(&c).map_err(|message| {
            PlanError::Tier(LaunchError::SandboxUnavailable {
                agent: agent.to_string(),
                message,
            })
        })?;
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator;

    const MB: u64 = 1024 * 1024;

    fn source(text: &str) -> SourceFile {
        SourceFile {
            file: crate::dsl::parse_str(text, Path::new("agent.dsl")).unwrap(),
            text: text.to_string(),
        }
    }

    /// The defaults (Tier1, native execution disabled) with `flags` applied, working in a
    /// scratch directory.
    fn loaded(flags: &Flags) -> LoadedConfig {
        let mut l = LoadedConfig::default();
        l.config.native_execution.working_directory =
            std::env::temp_dir().join(format!("symbiont-plan-{}", std::process::id()));
        flags.apply(&mut l);
        l
    }

    fn sh() -> Vec<String> {
        vec!["sh".into(), "-c".into(), "true".into()]
    }

    #[test]
    fn a_native_command_without_consent_is_refused_as_native_disabled() {
        let mut l = loaded(&Flags::default());
        l.config.security.default_sandbox_tier = SecurityTier::None;
        let e = plan_command(&l, sh(), &[], &Host::real()).unwrap_err();
        assert!(
            matches!(&e, PlanError::Policy(PolicyError::NativeDisabled { what }) if what == "this command"),
            "{e:?}"
        );
        let m = e.to_string();
        assert!(
            m.starts_with("this command needs native execution")
                && m.contains("SYMBIONT_ALLOW_NATIVE_EXECUTION"),
            "{m}"
        );
        // The library keeps the domain, and the message.
        let e = orchestrator::Error::from(e);
        assert_eq!(e.to_string(), m);
        assert!(
            matches!(
                e,
                orchestrator::Error::Policy(PolicyError::NativeDisabled { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn a_container_command_the_tier_cannot_run_is_refused_by_the_tier() {
        let e = plan_command(&loaded(&Flags::default()), sh(), &[], &Host::real()).unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::Tier(LaunchError::NoImage {
                    tier: SecurityTier::Tier1
                })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            LaunchError::NoImage {
                tier: SecurityTier::Tier1
            }
            .to_string()
        );
        assert!(matches!(
            orchestrator::Error::from(e),
            orchestrator::Error::Launch(LaunchError::NoImage { .. })
        ));
        let tier3 = Flags {
            sandbox_tier: Some(SecurityTier::Tier3),
            image: Some("busybox".into()),
            ..Flags::default()
        };
        // Tier3's QEMU and guest are checked at launch; off Linux there is none.
        match plan_command(&loaded(&tier3), sh(), &[], &Host::real()) {
            Ok(spec) => assert!(cfg!(target_os = "linux") && spec.tier == SecurityTier::Tier3),
            Err(e) => assert!(
                matches!(
                    e,
                    PlanError::Tier(LaunchError::TierUnavailable {
                        tier: SecurityTier::Tier3,
                        ..
                    })
                ),
                "{e:?}"
            ),
        }
    }

    #[test]
    fn refusals_in_an_agent_file_keep_their_place_and_their_cause() {
        let l = loaded(&Flags::default());
        let native =
            source("agent W {\n  security { tier: None }\n  on start { execute(\"sh\") }\n}\n");
        let e = plan_runs(&l, &[], &[native], &Host::real()).unwrap_err();
        assert!(
            matches!(e.cause(), PlanError::Policy(PolicyError::NativeDisabled { what }) if what == "agent W"),
            "{e:?}"
        );
        let d = e.diagnostic().expect("located");
        assert_eq!((d.location.line, d.location.column), (2, 20));
        assert!(
            e.to_string()
                .starts_with("error: agent W needs native execution")
                && e.to_string().contains("--> agent.dsl:2:20"),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());

        let no_image =
            source("agent C {\n  security { tier: Tier2 }\n  on start { execute(\"sh\") }\n}\n");
        let e = plan_runs(&l, &[], &[no_image], &Host::real()).unwrap_err();
        assert!(
            matches!(
                e.cause(),
                PlanError::Tier(LaunchError::NoImage {
                    tier: SecurityTier::Tier2
                })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().starts_with("error: agent C: tier Tier2"),
            "{e}"
        );
        assert!(e.to_string().contains("--> agent.dsl:2:20"), "{e}");

        // The dsl refuses `execute_native` under a tier the file names; the plan, under the
        // configured default (or a flag's).
        let exec_native = source("agent X {\n  on start {\n    execute_native(\"sh\")\n  }\n}\n");
        let with_image = loaded(&Flags {
            image: Some("busybox".into()),
            ..Flags::default()
        });
        let e = plan_runs(&with_image, &[], &[exec_native], &Host::real()).unwrap_err();
        assert!(
            matches!(e.cause(), PlanError::ExecuteNativeOffNative { agent, tier: SecurityTier::Tier1 } if agent == "X"),
            "{e:?}"
        );
        assert_eq!(e.diagnostic().unwrap().location.line, 3);
        assert!(
            e.to_string().starts_with(
                "error: execute_native in agent X, whose tier is Tier1: use execute(...)\n --> agent.dsl:3:5"
            ),
            "{e}"
        );

        let two = source("agent T {\n  on trigger \"b\" { execute(\"sh\") }\n  on start { execute(\"sh\") }\n}\n");
        let e = plan_runs(&l, &["nope".into()], &[two], &Host::real()).unwrap_err();
        assert!(
            matches!(&e, PlanError::UnknownTrigger { trigger, available } if trigger == "nope" && *available == ["b", "start"]),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "--trigger nope: no agent has a trigger named `nope` (available: b, start)"
        );
    }

    const AGENT: &str = "agent A {\n  security { tier: Tier2 image: \"agent-image\" }\n  \
        limits { max_memory_mb: 512 max_cpu_cores: 1.5 timeout: 30s }\n  \
        on start { execute(\"sh\") }\n}\n";

    #[test]
    fn without_flags_the_agent_chooses_its_tier_and_tightens_the_configured_limits() {
        let mut l = loaded(&Flags::default());
        let specs = plan_runs(&l, &[], &[source(AGENT)], &Host::real()).unwrap();
        let s = &specs[0];
        assert_eq!(s.tier, SecurityTier::Tier2);
        assert_eq!(s.image.as_deref(), Some("agent-image"));
        assert_eq!(s.limits.memory_bytes, Some(512 * MB));
        assert_eq!(s.limits.cpu_cores, Some(1.5));
        assert_eq!(s.limits.timeout, Some(Duration::from_secs(30)));
        // A tighter configured value stays: the agent cannot loosen it.
        l.config.native_execution.max_memory_mb = Some(256);
        l.set_origin(
            MAX_MEMORY,
            Origin::Env("SYMBIONT_NATIVE_MAX_MEMORY_MB".into()),
        );
        let specs = plan_runs(&l, &[], &[source(AGENT)], &Host::real()).unwrap();
        assert_eq!(specs[0].limits.memory_bytes, Some(256 * MB));
    }

    #[test]
    fn a_flag_outranks_the_agent_file_through_the_configuration() {
        let flags = Flags {
            sandbox_tier: Some(SecurityTier::Tier1),
            image: Some("flag-image".into()),
            max_memory_mb: Some(4096),
            max_cpu: Some(4.0),
            timeout: Some(600),
            ..Flags::default()
        };
        let l = loaded(&flags);
        // The values live in the configuration, where `check` reports them with their flag.
        let n = &l.config.native_execution;
        assert_eq!(n.max_memory_mb, Some(4096));
        assert_eq!(n.max_cpu_cores, Some(4.0));
        assert_eq!(n.max_execution_time_seconds, 600);
        assert_eq!(
            l.config.containers.default_image.as_deref(),
            Some("flag-image")
        );
        assert_eq!(l.config.security.default_sandbox_tier, SecurityTier::Tier1);
        assert!(!l.config.security.allow_native_execution);
        assert_eq!(
            l.origin(MAX_MEMORY),
            Some(&Origin::Flag("--max-memory".into()))
        );
        let specs = plan_runs(&l, &[], &[source(AGENT)], &Host::real()).unwrap();
        let s = &specs[0];
        assert_eq!(s.tier, SecurityTier::Tier1);
        assert_eq!(s.image.as_deref(), Some("flag-image"));
        assert_eq!(s.limits.memory_bytes, Some(4096 * MB));
        assert_eq!(s.limits.cpu_cores, Some(4.0));
        assert_eq!(s.limits.timeout, Some(Duration::from_secs(600)));
        let c = plan_command(&l, sh(), &[], &Host::real()).unwrap();
        assert_eq!(c.tier, SecurityTier::Tier1);
        assert_eq!(c.limits, s.limits);
    }

    #[test]
    fn native_is_consent_and_tier_none_for_every_agent() {
        for (flags, by) in [
            (
                Flags {
                    native: true,
                    ..Flags::default()
                },
                "--native",
            ),
            (
                Flags {
                    sandbox_tier: Some(SecurityTier::None),
                    ..Flags::default()
                },
                "--sandbox-tier",
            ),
        ] {
            let l = loaded(&flags);
            assert!(l.config.security.allow_native_execution);
            assert_eq!(l.origin(ALLOW_NATIVE), Some(&Origin::Flag(by.into())));
            assert_eq!(l.origin(DEFAULT_TIER), Some(&Origin::Flag(by.into())));
            let a = source(AGENT);
            assert_eq!(tier_for(&l, Some(&a.file.agents[0])), SecurityTier::None);
        }
    }

    #[test]
    fn the_keys_the_flags_write_are_configuration_keys() {
        let d = LoadedConfig::default();
        for k in [
            ALLOW_NATIVE,
            DEFAULT_TIER,
            DEFAULT_IMAGE,
            MAX_MEMORY,
            MAX_CPU_CORES,
            TIMEOUT,
        ] {
            assert_eq!(d.origin(k), Some(&Origin::Default), "{k}");
        }
    }
}
