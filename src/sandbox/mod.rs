//! Operating-system mechanisms that confine an agent: cgroups and rlimits on Linux,
//! rlimits on other Unix systems, job objects on Windows.

// The one place the platform's cgroups are chosen: none outside Linux.
#[cfg(unix)]
#[cfg_attr(target_os = "linux", path = "cgroup.rs")]
#[cfg_attr(not(target_os = "linux"), path = "cgroup_none.rs")]
pub mod cgroup;
#[cfg(windows)]
pub mod job;
#[cfg(target_os = "linux")]
pub mod systemd;

/// What a run's groups enforce, for the record and `symbiont check` (nothing where the system
/// has no cgroups).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enforced {
    pub memory: bool,
    pub pids: bool,
    pub cpu_quota: bool,
    pub tree: bool,
}
#[cfg(unix)]
pub mod rlimit;

// The native sandbox (SPEC 3.1): Landlock and seccomp, Linux only.
#[cfg(target_os = "linux")]
pub mod landlock;
#[cfg(target_os = "linux")]
pub mod seccomp;
#[cfg(unix)]
pub mod tmpdir;

/// Whether this host can enforce `c` on the native tier; the reason and the fix where not.
/// An agent that asks for what cannot be enforced is refused, never run unconfined.
pub fn enforceable(c: &crate::supervisor::Confinement) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        landlock::check(c)?;
        seccomp::check(c)
    }
    #[cfg(not(target_os = "linux"))]
    {
        if !c.any() {
            return Ok(());
        }
        Err(format!(
            "the {} sandbox is enforced with Linux's Landlock and seccomp, which this system \
             does not have: the agent is refused rather than run unconfined; run it on a \
             container tier or give it the `local_filesystem` and `network` capabilities",
            c.level
        ))
    }
}

/// What a confined agent's own process applies between clone and exec (Linux): Landlock
/// rulesets by descriptor, then a seccomp filter. Built by the supervisor for each run.
#[cfg(target_os = "linux")]
#[derive(Clone)]
pub struct ChildSandbox {
    pub rulesets: Vec<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// Flags of each `landlock_restrict_self`.
    pub restrict_flags: u32,
    pub filter: Option<&'static seccomp::Filter>,
}

#[cfg(target_os = "linux")]
impl std::fmt::Debug for ChildSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSandbox")
            .field("rulesets", &self.rulesets)
            .field("restrict_flags", &self.restrict_flags)
            .field("filter", &self.filter.is_some())
            .finish()
    }
}

#[cfg(target_os = "linux")]
impl ChildSandbox {
    /// The sandbox of a run confined as `c`, whose writable directories are `writable` (the
    /// working and temp directories; the operator's `allow_write` is added here).
    pub fn new(
        c: &crate::supervisor::Confinement,
        writable: &[&std::path::Path],
    ) -> Result<ChildSandbox, String> {
        enforceable(c)?;
        let mut rulesets = Vec::new();
        if c.writes {
            let mut dirs: Vec<&std::path::Path> = writable.to_vec();
            dirs.extend(c.allow_write.iter().map(std::path::PathBuf::as_path));
            rulesets.push(std::sync::Arc::new(landlock::write_layer(&dirs)?));
        }
        if c.reads {
            rulesets.push(landlock::read_layer(&c.deny_read, &c.allow_read)?);
        }
        Ok(ChildSandbox {
            rulesets,
            restrict_flags: landlock::restrict_flags(),
            filter: seccomp::filter(c.network, c.syscalls)?,
        })
    }
}

/// What this host can enforce of the sandbox levels, and what it reports of denials, for
/// `symbiont check`.
pub fn describe() -> Vec<String> {
    #[cfg(target_os = "linux")]
    {
        let abi = landlock::abi();
        let fs = if abi >= landlock::WRITE_ABI {
            format!("Landlock ABI {abi}: Moderate's and Strict's filesystem rules are enforced")
        } else if abi >= landlock::READ_ABI {
            format!(
                "Landlock ABI {abi}: too old to confine writes (needs {}): Moderate and Strict \
                 agents are refused unless they have `local_filesystem`",
                landlock::WRITE_ABI
            )
        } else {
            "no Landlock: Moderate and Strict agents are refused unless they have \
             `local_filesystem`"
                .to_string()
        };
        let net = if seccomp::available() {
            "seccomp: network sockets, io_uring and ptrace are denied as each level says"
        } else {
            "no seccomp filters: agents whose level denies the network or ptrace are refused"
        };
        let denials = if abi >= landlock::AUDIT_ABI {
            "denials: refused sockets, ptrace and io_uring are counted on the dashboard, in the \
             record and the audit log; refused file accesses only reach the kernel's own audit \
             log (where audit is enabled), which symbiont does not read"
        } else {
            "denials: refused sockets, ptrace and io_uring are counted on the dashboard, in the \
             record and the audit log; refused file accesses are not reported by this kernel \
             (Landlock audit needs ABI 7)"
        };
        vec![
            format!("sandbox (native): {fs}"),
            format!("  {net}"),
            format!("  {denials}"),
        ]
    }
    #[cfg(not(target_os = "linux"))]
    {
        vec![
            "sandbox (native): Moderate and Strict need Linux's Landlock and seccomp: agents \
             that ask for them are refused here"
                .to_string(),
        ]
    }
}
