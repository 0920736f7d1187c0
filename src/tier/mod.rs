//! Security tiers (seed: "沙箱层级"), and each tier's implementation of the run lifecycle's
//! [`Target`](crate::supervisor::target::Target): the platform is chosen here, once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub(crate) mod container;
#[cfg_attr(target_os = "linux", path = "microvm.rs")]
#[cfg_attr(not(target_os = "linux"), path = "microvm_none.rs")]
pub(crate) mod microvm;
#[cfg_attr(unix, path = "native_unix.rs")]
#[cfg_attr(windows, path = "native_windows.rs")]
pub(crate) mod native;

/// What the operator can do to a run of each tier this build runs.
pub(crate) fn known_actions() -> &'static [crate::supervisor::Actions] {
    &[native::ACTIONS, container::ACTIONS, microvm::ACTIONS]
}

/// Where an agent runs. `None` is a plain host process with no isolation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum SecurityTier {
    /// Native execution: a host process, no isolation.
    None,
    /// A Docker-compatible container.
    #[default]
    Tier1,
    /// A container on the gVisor runtime (`runsc`).
    Tier2,
    /// A microVM (QEMU's `microvm` machine; see `tier::microvm`).
    Tier3,
}

impl SecurityTier {
    pub const ALL: [SecurityTier; 4] = [Self::None, Self::Tier1, Self::Tier2, Self::Tier3];

    /// The canonical name, as written in config files (`None`, `Tier1`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Tier1 => "Tier1",
            Self::Tier2 => "Tier2",
            Self::Tier3 => "Tier3",
        }
    }

    /// The short name a user reads in tables (`native`, `docker`, ...).
    pub fn runtime_name(self) -> &'static str {
        match self {
            Self::None => "native",
            Self::Tier1 => "docker",
            Self::Tier2 => "gvisor",
            Self::Tier3 => "microvm",
        }
    }

    pub fn is_native(self) -> bool {
        self == Self::None
    }
}

impl fmt::Display for SecurityTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a tier name that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTier(pub String);

impl fmt::Display for UnknownTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown security tier `{}` (expected one of: None/native, Tier1/docker, Tier2/gvisor, Tier3/microvm/firecracker)",
            self.0
        )
    }
}

impl std::error::Error for UnknownTier {}

impl FromStr for SecurityTier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "native" => Ok(Self::None),
            "tier1" | "docker" => Ok(Self::Tier1),
            "tier2" | "gvisor" => Ok(Self::Tier2),
            "tier3" | "firecracker" | "microvm" => Ok(Self::Tier3),
            _ => Err(UnknownTier(s.to_string())),
        }
    }
}

/// How much of the host a native agent may touch (SPEC 3.1; upstream Symbiont's names). Ordered
/// from the weakest: the operator's `min_sandbox` is a floor an agent file can only raise.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub enum SandboxLevel {
    /// Nothing is confined: the agent reads, writes and connects as the user.
    #[default]
    Permissive,
    /// Writes only in the working directory and the run's own temp directory; no network
    /// beyond Unix sockets.
    Moderate,
    /// Moderate, and no reads of secret locations, no ptrace of other processes, no io_uring.
    Strict,
}

impl SandboxLevel {
    pub const ALL: [SandboxLevel; 3] = [Self::Permissive, Self::Moderate, Self::Strict];

    pub fn name(self) -> &'static str {
        match self {
            Self::Permissive => "Permissive",
            Self::Moderate => "Moderate",
            Self::Strict => "Strict",
        }
    }
}

impl fmt::Display for SandboxLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a sandbox name that is none of the levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSandbox(pub String);

impl fmt::Display for UnknownSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown sandbox level `{}` (expected one of: Permissive, Moderate, Strict)",
            self.0
        )
    }
}

impl std::error::Error for UnknownSandbox {}

impl FromStr for SandboxLevel {
    type Err = UnknownSandbox;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSandbox(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_parses() {
        for (s, t) in [
            ("None", SecurityTier::None),
            ("none", SecurityTier::None),
            ("native", SecurityTier::None),
            ("Tier1", SecurityTier::Tier1),
            ("docker", SecurityTier::Tier1),
            ("TIER2", SecurityTier::Tier2),
            ("gvisor", SecurityTier::Tier2),
            ("tier3", SecurityTier::Tier3),
            ("firecracker", SecurityTier::Tier3),
            ("microvm", SecurityTier::Tier3),
        ] {
            assert_eq!(s.parse::<SecurityTier>().unwrap(), t, "{s}");
        }
        assert!("tier4".parse::<SecurityTier>().is_err());
    }

    #[test]
    fn sandbox_levels_parse_in_any_case_and_are_ordered() {
        assert_eq!("strict".parse::<SandboxLevel>(), Ok(SandboxLevel::Strict));
        assert_eq!(
            " MODERATE ".parse::<SandboxLevel>(),
            Ok(SandboxLevel::Moderate)
        );
        assert_eq!(
            "Permissive".parse::<SandboxLevel>(),
            Ok(SandboxLevel::Permissive)
        );
        let e = "lax".parse::<SandboxLevel>().unwrap_err().to_string();
        assert!(e.contains("`lax`") && e.contains("Moderate"), "{e}");
        assert!(SandboxLevel::Permissive < SandboxLevel::Moderate);
        assert!(SandboxLevel::Moderate < SandboxLevel::Strict);
    }
}
