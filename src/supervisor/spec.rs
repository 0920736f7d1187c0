//! What a run is, as the plan hands it to the supervisor: decided entirely before launch.

use std::path::PathBuf;
use std::time::Duration;

use crate::tier::SecurityTier;

/// One command of a run: argv as written, and the program it resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub program: PathBuf,
    pub argv: Vec<String>,
}

/// A run to launch: decided entirely by the policy before it reaches the supervisor.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub agent: String,
    pub trigger: String,
    pub tier: SecurityTier,
    /// Run in order; the run stops at the first step that fails.
    pub steps: Vec<Step>,
    pub cwd: PathBuf,
    /// The complete environment of the agent.
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    /// Apply OS limits (cgroups, rlimits); off leaves only the watchdog.
    pub enforce_limits: bool,
    pub kill_grace: Duration,
    pub image: Option<String>,
    /// Container tiers: the agent may reach the network (its capabilities include `network`).
    pub network: bool,
    /// The native sandbox: what the agent's own process is confined to (SPEC 3.1).
    pub sandbox: Confinement,
    /// Where the run was defined ("agent.dsl:13:5"), for the audit log.
    pub source: Option<String>,
}

impl RunSpec {
    /// An ad-hoc command as its own agent, named after its program (`cmd:python3`), its
    /// environment saying the same.
    pub fn as_command(mut self) -> RunSpec {
        let program = self.steps.first().and_then(|s| s.argv.first()).cloned();
        let name = program
            .as_deref()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or_default();
        self.agent = format!("cmd:{name}");
        self.trigger = "command".into();
        for (k, v) in &mut self.env {
            match k.as_str() {
                "SYMBIONT_AGENT" => *v = self.agent.clone(),
                "SYMBIONT_TRIGGER" => *v = self.trigger.clone(),
                _ => {}
            }
        }
        self
    }
}

/// What a native agent is confined to, decided by the policy from its sandbox level, its
/// capabilities and the operator's floor (SPEC 3.1). Everything off is Permissive.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Confinement {
    /// The effective level, for the record, the dashboard and `check`.
    pub level: crate::tier::SandboxLevel,
    /// Writes only in the working directory, the run's own temp directory (`TMPDIR`, made for
    /// the run and removed after it) and `allow_write`.
    pub writes: bool,
    /// Reads as the user except under `deny_read`.
    pub reads: bool,
    /// No sockets beyond Unix (and netlink) ones, and no io_uring, which makes sockets without
    /// `socket()`.
    pub network: bool,
    /// No ptrace or `process_vm_*` of other processes, no io_uring.
    pub syscalls: bool,
    /// Secret locations no read reaches (absolute; only with `reads`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_read: Vec<PathBuf>,
    /// Writable beyond the working and temp directories (absolute; only with `writes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_write: Vec<PathBuf>,
    /// Readable although beneath `deny_read` (absolute; only with `reads`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_read: Vec<PathBuf>,
}

impl Confinement {
    /// Whether anything is confined at all.
    pub fn any(&self) -> bool {
        self.writes || self.reads || self.network || self.syscalls
    }

    /// What is confined, for `check` and the record: "writes, network, ...", or "nothing".
    pub fn summary(&self) -> String {
        let parts: Vec<&str> = [
            (self.writes, "writes"),
            (self.reads, "secret reads"),
            (self.network, "network"),
            (self.syscalls, "ptrace and io_uring"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, what)| what)
        .collect();
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The effective limits of one run, decided once by the policy before launch.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory of the whole agent (all its processes).
    pub memory_bytes: Option<u64>,
    /// CPU time of the whole agent.
    pub cpu_seconds: Option<u64>,
    /// CPU bandwidth, in cores.
    pub cpu_cores: Option<f64>,
    /// Wall-clock timeout of the run.
    pub timeout: Option<Duration>,
    /// Processes alive at once in the agent's tree.
    pub max_processes: Option<u64>,
    /// Largest file the agent may write.
    pub file_size_bytes: Option<u64>,
}

/// Why a launch was refused before anything started. The messages are what users read; a
/// program embedding the library matches on the variant.
#[derive(Debug)]
#[non_exhaustive]
pub enum LaunchError {
    /// This build or machine cannot run the tier at all (Tier3 off Linux).
    TierUnavailable { tier: SecurityTier, message: String },
    /// A container tier without an image to run.
    NoImage { tier: SecurityTier },
    /// The run has no command for its trigger.
    NothingToRun { agent: String, trigger: String },
    /// The launch could not be written to the audit log, so nothing was started.
    Audit { agent: String, message: String },
    /// The directory for the run's logs cannot be made.
    LogDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The container daemon does not answer (or cannot be reached at the configured address).
    DaemonUnreachable {
        agent: String,
        tier: SecurityTier,
        message: String,
    },
    /// The daemon lacks the runtime the tier needs (`runsc` for Tier2).
    RuntimeMissing { agent: String, message: String },
    /// The agent's image is not on the daemon.
    ImageMissing {
        agent: String,
        image: String,
        message: String,
    },
    /// The host cannot enforce the agent's sandbox level (no Landlock, an older ABI, no
    /// seccomp, another OS): the agent is refused, never run unconfined.
    SandboxUnavailable { agent: String, message: String },
}

impl std::fmt::Display for LaunchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LaunchError::TierUnavailable { message, .. } => f.write_str(message),
            LaunchError::NoImage { tier } => write!(
                f,
                "tier {tier} ({}) runs in a container and needs an image: set `security {{ image: \"...\" }}` \
                 in the agent, pass --image, or set containers.default_image",
                tier.runtime_name()
            ),
            LaunchError::NothingToRun { agent, trigger } => {
                write!(f, "agent {agent} has nothing to run for {trigger}")
            }
            LaunchError::Audit { agent, message } => write!(
                f,
                "agent {agent} not launched: {message}; every launch is recorded before it \
                 happens (free space there, or set supervisor.audit_log to a writable place)"
            ),
            LaunchError::LogDirectory { path, source } => write!(
                f,
                "cannot create the run log directory {}: {source}",
                path.display()
            ),
            LaunchError::DaemonUnreachable {
                agent,
                tier,
                message,
            } => write!(f, "agent {agent} on tier {tier}: {message}"),
            LaunchError::RuntimeMissing { agent, message }
            | LaunchError::SandboxUnavailable { agent, message }
            | LaunchError::ImageMissing { agent, message, .. } => {
                write!(f, "agent {agent}: {message}")
            }
        }
    }
}

impl std::error::Error for LaunchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LaunchError::LogDirectory { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Whether the supervisor can run `tier` with `image` at all; the plan asks before it builds
/// a run, the supervisor again at launch.
pub fn check_tier(tier: SecurityTier, image: Option<&str>) -> Result<(), LaunchError> {
    match tier {
        SecurityTier::None => Ok(()),
        SecurityTier::Tier1 | SecurityTier::Tier2 if image.is_none() => {
            Err(LaunchError::NoImage { tier })
        }
        SecurityTier::Tier1 | SecurityTier::Tier2 => Ok(()),
        // Its QEMU and guest are checked at launch (`tier::microvm`).
        SecurityTier::Tier3 if cfg!(target_os = "linux") => Ok(()),
        SecurityTier::Tier3 => Err(LaunchError::TierUnavailable {
            tier,
            message:
                "tier Tier3 (microvm) runs agents in a QEMU microVM, which symbiont supports on \
                      Linux only: run the agent on Tier2 (gvisor) or Tier1 (docker) here"
                    .to_string(),
        }),
    }
}
