//! Linux control groups: one group per run, so that the whole tree of an agent is found,
//! counted, frozen and killed even when a descendant calls `setsid` or double-forks.
//!
//! Works on cgroup v2 (unified), v1 and hybrid hosts. On a hybrid host the v2 tree usually
//! owns no controller, but it still gives `cgroup.kill`, `cgroup.freeze`, `cgroup.events`
//! and `cpu.stat`; the v1 memory, pids and cpu controllers then carry the limits.

use std::fs;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::supervisor::Limits;

/// The cgroup hierarchies this process may create groups in, each with the supervisor's
/// own base directory already created (`<own cgroup>/symbiont-<pid>-<instance>`).
#[derive(Debug, Default, Clone)]
pub struct CgroupRoots {
    /// The v2 base directory.
    pub v2: Option<PathBuf>,
    /// Where the v2 base was made, and how that place was had.
    pub v2_home: Option<V2Home>,
    /// Controllers enabled for children of the v2 base.
    pub v2_memory: bool,
    pub v2_pids: bool,
    pub v2_cpu: bool,
    /// v1 base directories, per controller.
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub freezer: Option<PathBuf>,
}

impl CgroupRoots {
    /// Finds the mounted hierarchies, creates this supervisor's base group in each one that is
    /// writable and removes groups left by supervisors that died. Never fails: a host where
    /// nothing is writable gives empty roots and the caller falls back to rlimits.
    pub fn detect(instance: &str) -> CgroupRoots {
        let mut roots = CgroupRoots::default();
        let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
            return roots;
        };
        let Ok(own) = fs::read_to_string("/proc/self/cgroup") else {
            return roots;
        };
        let base_name = format!("symbiont-{}-{instance}", std::process::id());
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut rf = right.split_whitespace();
            let fstype = rf.next().unwrap_or("");
            let _source = rf.next();
            let super_opts = rf.next().unwrap_or("");
            let fields: Vec<&str> = left.split_whitespace().collect();
            if fields.len() < 5 {
                continue;
            }
            let mount_root = fields[3];
            let mount_point = fields[4];
            match fstype {
                "cgroup2" => {
                    let home = v2_home(mount_point, mount_root, &own);
                    roots.v2_home = Some(home.clone());
                    let Some(dir) = &home.dir else {
                        continue;
                    };
                    if let Some(base) = make_base(dir, &base_name) {
                        let enabled = enable_controllers(&base);
                        roots.v2_memory = enabled.contains(&"memory");
                        roots.v2_pids = enabled.contains(&"pids");
                        roots.v2_cpu = enabled.contains(&"cpu");
                        roots.v2 = Some(base);
                    }
                }
                "cgroup" => {
                    for ctrl in super_opts.split(',') {
                        let slot = match ctrl {
                            "memory" => &mut roots.memory,
                            "pids" => &mut roots.pids,
                            "cpu" => &mut roots.cpu,
                            "cpuacct" => &mut roots.cpuacct,
                            "freezer" => &mut roots.freezer,
                            _ => continue,
                        };
                        if slot.is_some() {
                            continue;
                        }
                        let Some(rel) = own_path(&own, Some(ctrl)) else {
                            continue;
                        };
                        let Some(dir) = under_mount(mount_point, mount_root, &rel) else {
                            continue;
                        };
                        *slot = make_base(&dir, &base_name);
                    }
                }
                _ => {}
            }
        }
        roots
    }

    pub fn any(&self) -> bool {
        self.v2.is_some() || self.memory.is_some() || self.pids.is_some()
    }

    pub fn memory_limit_available(&self) -> bool {
        self.memory.is_some() || self.v2_memory
    }

    pub fn pids_limit_available(&self) -> bool {
        self.pids.is_some() || self.v2_pids
    }

    pub fn cpu_quota_available(&self) -> bool {
        self.cpu.is_some() || self.v2_cpu
    }

    /// The cgroup file that holds the `controller` limit ("memory", "pids", "cpu") of each run,
    /// if any does here.
    pub fn holds(&self, controller: &str) -> Option<&'static str> {
        match controller {
            "memory" if self.v2_memory => Some("cgroup v2 memory.max"),
            "memory" if self.memory.is_some() => Some("cgroup v1 memory.limit_in_bytes"),
            "pids" if self.v2_pids => Some("cgroup v2 pids.max"),
            "pids" if self.pids.is_some() => Some("cgroup v1 pids.max"),
            "cpu" if self.v2_cpu => Some("cgroup v2 cpu.max"),
            "cpu" if self.cpu.is_some() => Some("cgroup v1 cpu.cfs_quota_us"),
            _ => None,
        }
    }

    /// Where some limit has no cgroup here: the step that would give it one, if there is one.
    pub fn step(&self) -> Option<String> {
        if RUN_CONTROLLERS.iter().all(|c| self.holds(c).is_some()) {
            return None;
        }
        match self.v2_home.as_ref().map(|h| &h.how) {
            Some(HomeHow::Undelegated { step, why }) if !step.is_empty() => {
                Some(format!("{step} (here: {why})"))
            }
            Some(HomeHow::Scope(_) | HomeHow::Divided) => Some(
                "ask your administrator to delegate the missing controllers to users \
                 (Delegate=memory pids cpu in user@.service)"
                    .into(),
            ),
            _ if !nix::unistd::geteuid().is_root() => Some(
                "this host keeps the memory, pids and cpu controllers where only root can make \
                 groups (cgroup v1 or no delegation): run symbiont as root, or on a systemd host \
                 with the unified cgroup v2 hierarchy from a login session of yours"
                    .into(),
            ),
            _ => None,
        }
    }

    /// The CPU counter of the base group, which holds every run: v2 `cpu.stat` (true) or
    /// v1 `cpuacct.usage` (false).
    pub fn fleet_cpu_counter(&self) -> Option<(PathBuf, bool)> {
        cpu_counter(&self.v2, &self.cpuacct)
    }

    /// Every base directory, v2 first.
    pub fn bases(&self) -> Vec<PathBuf> {
        [
            &self.v2,
            &self.memory,
            &self.pids,
            &self.cpu,
            &self.cpuacct,
            &self.freezer,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// A human summary of the mechanisms in force, for `symbiont check`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v2) = &self.v2 {
            let mut c = Vec::new();
            if self.v2_memory {
                c.push("memory");
            }
            if self.v2_pids {
                c.push("pids");
            }
            if self.v2_cpu {
                c.push("cpu");
            }
            out.push(format!(
                "cgroup v2 group per run under {} (kill, freeze, populated{}{})",
                v2.display(),
                if c.is_empty() { "" } else { "; limits: " },
                c.join(", ")
            ));
            match self.v2_home.as_ref().map(|h| &h.how) {
                Some(HomeHow::Scope(name)) => out.push(format!(
                    "cgroup v2 delegation: the transient scope {name} from {} (Delegate=yes)",
                    super::systemd::Manager::for_this_user().describe()
                )),
                Some(HomeHow::Divided) => out.push(
                    "cgroup v2 delegation: this process's own cgroup, divided into a leaf for the supervisor and one group per run".into(),
                ),
                Some(HomeHow::Undelegated { why, .. }) => {
                    out.push(format!("cgroup v2 controllers not delegated: {why}"));
                }
                Some(HomeHow::Hybrid) | None => {}
            }
        }
        for (name, p) in [
            ("memory", &self.memory),
            ("pids", &self.pids),
            ("cpu", &self.cpu),
            ("cpuacct", &self.cpuacct),
            ("freezer", &self.freezer),
        ] {
            if let Some(p) = p {
                out.push(format!("cgroup v1 {name} controller under {}", p.display()));
            }
        }
        out
    }

    /// Removes this supervisor's base groups (they must be empty).
    pub fn remove_bases(&self) {
        for b in self.bases() {
            if let Err(e) = fs::remove_dir(&b) {
                tracing::warn!("cannot remove the cgroup {}: {e}", b.display());
            }
        }
    }
}

/// The v2 cgroup this process makes its groups under, settled once per process (every
/// supervisor of the process shares it), and how it was had.
#[derive(Debug, Clone)]
pub struct V2Home {
    /// `None`: no v2 group can be made here at all.
    pub dir: Option<PathBuf>,
    pub how: HomeHow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeHow {
    /// A hybrid host: the v2 tree owns no controller, the limits come from v1; the v2 group
    /// still gives kill, freeze and a populated flag.
    Hybrid,
    /// Our own cgroup was ours alone to divide (a delegated scope or container): the supervisor
    /// moved into its leaf `supervisor`, runs go beside it.
    Divided,
    /// The systemd manager (user's or system's) gave us a delegated scope of this name.
    Scope(String),
    /// Groups can be made, but their memory, pids and cpu controllers are not ours to enable;
    /// the reason, and the step that would give them, for `symbiont check`.
    Undelegated { why: String, step: String },
}

/// Controllers a run group needs, in the order they are enabled.
const RUN_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Where this process makes its v2 groups, decided on the first call:
/// - a hybrid host: under our own cgroup, as always (the limits are v1's);
/// - our own cgroup is the root or already hands controllers down: there;
/// - our own cgroup is writable and holds only this process (a delegated scope, a container):
///   move into its leaf `supervisor` and enable the controllers in it;
/// - a systemd host: ask the manager for a delegated scope of our own, then the same;
/// - else under our own cgroup without controllers, saying why and what would help.
fn v2_home(mount_point: &str, mount_root: &str, own: &str) -> V2Home {
    static HOME: std::sync::OnceLock<V2Home> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let at = |rel: &str| under_mount(mount_point, mount_root, rel);
        let Some(dir) = own_path(own, None).and_then(|r| at(&r)) else {
            return V2Home {
                dir: None,
                how: HomeHow::Hybrid,
            };
        };
        let unified = has_controller(Path::new(mount_point), "memory");
        if !unified {
            return V2Home {
                dir: Some(dir),
                how: HomeHow::Hybrid,
            };
        }
        if hands_down(&dir) {
            return V2Home {
                dir: Some(dir),
                how: HomeHow::Divided,
            };
        }
        // Ours to divide: it holds this process alone (looked at first: the common case, a
        // shared login or terminal group, needs no question to systemd) and nobody else manages
        // it (no systemd, or systemd delegated it).
        let me = std::process::id() as i32;
        let ours = read_pids(&dir).iter().all(|&p| p == me)
            && (!super::systemd::booted() || super::systemd::delegated(&dir));
        if ours
            && divide(&dir)
                .inspect_err(|e| tracing::debug!("cannot divide the cgroup {}: {e}", dir.display()))
                .is_ok()
        {
            return V2Home {
                dir: Some(dir),
                how: HomeHow::Divided,
            };
        }
        let undelegated = |why: String, step: String| V2Home {
            dir: Some(dir.clone()),
            how: HomeHow::Undelegated { why, step },
        };
        if !super::systemd::booted() {
            return undelegated(
                format!("{} is not this user's to divide", dir.display()),
                "start symbiont in a cgroup delegated to you (one holding only it)".into(),
            );
        }
        let manager = super::systemd::Manager::for_this_user();
        let name = format!("symbiont-{}.scope", std::process::id());
        match super::systemd::move_into_scope(&name, manager) {
            Ok(rel) => match at(&rel) {
                Some(scope) => match divide(&scope) {
                    Ok(()) => V2Home {
                        dir: Some(scope),
                        how: HomeHow::Scope(name),
                    },
                    Err(e) => V2Home {
                        dir: Some(scope.clone()),
                        how: HomeHow::Undelegated {
                            why: format!("cannot divide the scope {} ({e})", scope.display()),
                            step: "check that systemd delegates memory, pids and cpu to users (Delegate= in user@.service)".into(),
                        },
                    },
                },
                None => undelegated(
                    format!("the scope {rel} is not under {mount_point}"),
                    String::new(),
                ),
            },
            Err(why) => undelegated(
                why,
                match manager {
                    super::systemd::Manager::User => {
                        "run symbiont from a login session of yours (SSH, console or desktop), where the user manager's D-Bus is reachable".into()
                    }
                    super::systemd::Manager::System => "check that dbus and systemd are running".into(),
                },
            ),
        }
    })
    .clone()
}

fn has_controller(dir: &Path, c: &str) -> bool {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|x| x == c)
}

/// Whether `dir`'s children already get the memory controller.
fn hands_down(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.subtree_control"))
        .unwrap_or_default()
        .split_whitespace()
        .any(|x| x == "memory")
}

/// Makes `dir`, which must hold this process alone and be writable, ours to divide: the process
/// moves into the leaf `dir/supervisor` (a group with processes cannot hand controllers down)
/// and the run controllers `dir` has are enabled for its children.
fn divide(dir: &Path) -> io::Result<()> {
    let me = std::process::id() as i32;
    let others = read_pids(dir).into_iter().any(|p| p != me);
    if others {
        return Err(io::Error::other("it holds other processes"));
    }
    for f in ["cgroup.procs", "cgroup.subtree_control"] {
        fs::OpenOptions::new().write(true).open(dir.join(f))?;
    }
    let leaf = dir.join("supervisor");
    match fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !read_pids(dir).is_empty() {
        // "0": the writing process, with all its threads.
        fs::write(leaf.join("cgroup.procs"), "0")?;
    }
    enable_controllers(dir);
    Ok(())
}

/// Enables for `dir`'s children each run controller `dir` has (one by one: one refused does not
/// stop the others), and returns those enabled.
fn enable_controllers(dir: &Path) -> Vec<&'static str> {
    for c in RUN_CONTROLLERS {
        if has_controller(dir, c) {
            // A controller the parent does not delegate is refused: the caller reads which took.
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
                tracing::debug!("cannot enable the {c} controller in {}: {e}", dir.display());
            }
        }
    }
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    RUN_CONTROLLERS
        .into_iter()
        .filter(|c| enabled.split_whitespace().any(|x| x == *c))
        .collect()
}

/// This process's path in a hierarchy, from /proc/self/cgroup (`None` = the v2 line).
pub(super) fn own_path(own: &str, controller: Option<&str>) -> Option<String> {
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let ctrls = parts.next()?;
        let path = parts.next()?;
        match controller {
            None if ctrls.is_empty() => return Some(path.to_string()),
            Some(c) if ctrls.split(',').any(|x| x == c) => return Some(path.to_string()),
            _ => {}
        }
    }
    None
}

fn under_mount(mount_point: &str, mount_root: &str, rel: &str) -> Option<PathBuf> {
    let rel = rel.strip_prefix(mount_root).unwrap_or(rel);
    let rel = rel.trim_start_matches('/');
    let dir = Path::new(mount_point).join(rel);
    dir.is_dir().then_some(dir)
}

/// Creates `<dir>/<name>` and sweeps siblings left by dead supervisors.
fn make_base(dir: &Path, name: &str) -> Option<PathBuf> {
    sweep_stale(dir);
    let base = dir.join(name);
    match fs::create_dir(&base) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            tracing::debug!("cannot create the cgroup {}: {e}", base.display());
            return None;
        }
    }
    // A group we cannot join is no use to us.
    let procs = base.join("cgroup.procs");
    if let Err(e) = fs::OpenOptions::new().write(true).open(&procs) {
        tracing::debug!("cgroup {} cannot be joined: {e}", base.display());
        if let Err(e) = fs::remove_dir(&base) {
            tracing::warn!("cannot remove the cgroup {}: {e}", base.display());
        }
        return None;
    }
    Some(base)
}

/// Removes `symbiont-<pid>` groups whose supervisor is gone, killing anything left in them.
fn sweep_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("symbiont-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() as i32 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let base = e.path();
        if let Ok(runs) = fs::read_dir(&base) {
            for r in runs.flatten() {
                if r.path().is_dir() {
                    kill_all_in(&r.path());
                    if let Err(e) = remove_dir_retry(&r.path(), Duration::from_millis(200)) {
                        tracing::warn!(
                            "cannot remove the cgroup {} of a dead supervisor: {e}",
                            r.path().display()
                        );
                    }
                }
            }
        }
        if let Err(e) = fs::remove_dir(&base) {
            tracing::warn!(
                "cannot remove the cgroup {} of a dead supervisor: {e}",
                base.display()
            );
        }
    }
}

/// Writes a limit file that exists only where the kernel accounts swap: its absence is no news.
fn write_optional(path: &Path, v: &str) {
    match fs::write(path, v) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot write {v} to {}: {e}", path.display()),
    }
}

/// A signal's result with ESRCH (the process is already gone) taken as done.
fn unless_gone(r: nix::Result<()>) -> nix::Result<()> {
    match r {
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        r => r,
    }
}

fn remove_dir_retry(p: &Path, within: Duration) -> io::Result<()> {
    let until = Instant::now() + within;
    loop {
        match fs::remove_dir(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                if Instant::now() >= until {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// SIGKILL every process of a group, through `cgroup.kill` where the kernel has it.
fn kill_all_in(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..100 {
        let pids = read_pids(dir);
        if pids.is_empty() {
            return;
        }
        for p in pids {
            // ESRCH: it died meanwhile.
            if let Err(e) = unless_gone(kill(Pid::from_raw(p), Signal::SIGKILL)) {
                tracing::warn!("cannot kill pid {p} of the cgroup {}: {e}", dir.display());
            }
        }
    }
}

fn read_pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The file counting a group's CPU time: v2 `cpu.stat` (true), else v1 `cpuacct.usage` (false).
fn cpu_counter(v2: &Option<PathBuf>, cpuacct: &Option<PathBuf>) -> Option<(PathBuf, bool)> {
    if let Some(p) = v2
        .as_ref()
        .map(|d| d.join("cpu.stat"))
        .filter(|p| p.exists())
    {
        return Some((p, true));
    }
    cpuacct.as_ref().map(|a| (a.join("cpuacct.usage"), false))
}

fn read_u64(p: &Path) -> Option<u64> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// `key value` lines, as in memory.events, memory.oom_control, pids.events, cpu.stat.
fn read_keyed(p: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(p).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub use super::Enforced;

const MEMORY_KEY: &str = "native_execution.max_memory_mb (--max-memory, an agent's memory limit)";
const PIDS_KEY: &str = "native_execution.max_processes (an agent's process limit)";
const CPU_KEY: &str = "native_execution.max_cpu_cores (--max-cpu, an agent's CPU limit)";

/// A limit the kernel refused to write into a run's group (a value out of its range): the run
/// must not start without it, and the error names the setting. Carried inside an `io::Error`.
#[derive(Debug)]
pub struct LimitRefused {
    pub key: &'static str,
    pub value: String,
    pub file: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for LimitRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the kernel refused the limit {} for {} ({}: {})",
            self.value,
            self.key,
            self.file.display(),
            self.error
        )
    }
}

impl std::error::Error for LimitRefused {}

/// The refused limit inside `e`, if that is what `e` is.
pub fn refused_limit(e: &io::Error) -> Option<&LimitRefused> {
    e.get_ref().and_then(|i| i.downcast_ref::<LimitRefused>())
}

fn write_limit(file: &Path, value: &str, key: &'static str) -> io::Result<()> {
    fs::write(file, value).map_err(|error| {
        io::Error::other(LimitRefused {
            key,
            value: value.to_string(),
            file: file.to_path_buf(),
            error,
        })
    })
}

/// The groups of one run.
#[derive(Debug)]
pub struct RunCgroup {
    v2: Option<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    freezer: Option<PathBuf>,
    pub enforced: Enforced,
    /// What the groups carry now (nothing, as created); `None` after a failed write.
    applied: Option<GroupLimits>,
}

/// The limits a run's groups carry: what `apply_limits` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct GroupLimits {
    memory_bytes: Option<u64>,
    max_processes: Option<u64>,
    /// CPU quota in microseconds per `CPU_PERIOD_US`.
    cpu_quota_us: Option<u64>,
}

/// The period of a CPU quota, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

impl GroupLimits {
    /// The part of `limits` that groups enforce, when `enforce`.
    fn of(limits: &Limits, enforce: bool) -> GroupLimits {
        if !enforce {
            return GroupLimits::default();
        }
        GroupLimits {
            memory_bytes: limits.memory_bytes,
            max_processes: limits.max_processes,
            cpu_quota_us: limits
                .cpu_cores
                .map(|c| ((c * CPU_PERIOD_US as f64).round() as u64).max(1000)),
        }
    }
}

impl RunCgroup {
    /// Creates the groups of a run named `name` and writes its limits.
    pub fn create(
        roots: &CgroupRoots,
        name: &str,
        limits: &Limits,
        enforce: bool,
    ) -> io::Result<RunCgroup> {
        let mut cg = RunCgroup::create_groups(roots, name, enforce && limits.cpu_cores.is_some())?;
        tracing::debug!("cgroup {name}: created {:?}", cg.dirs().collect::<Vec<_>>());
        cg.apply_limits(roots, limits, enforce)
            .inspect_err(|e| tracing::debug!("cgroup {name}: limits not written: {e}"))?;
        Ok(cg)
    }

    /// Creates the groups of a run named `name`, without limits; a v1 cpu group only when
    /// `cpu_group` (a run with a CPU quota).
    fn create_groups(roots: &CgroupRoots, name: &str, cpu_group: bool) -> io::Result<RunCgroup> {
        let mk = |base: &Option<PathBuf>| -> io::Result<Option<PathBuf>> {
            match base {
                Some(b) => {
                    let d = b.join(name);
                    match fs::create_dir(&d) {
                        Ok(()) => Ok(Some(d)),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Some(d)),
                        Err(e) => Err(io::Error::new(
                            e.kind(),
                            format!("creating cgroup {}: {e}", d.display()),
                        )),
                    }
                }
                None => Ok(None),
            }
        };
        // Only the groups this run needs: each one costs a mkdir, a join and an rmdir. A v2
        // group already counts CPU time and freezes, so v1 cpuacct and freezer are then spared.
        let none = None;
        let v2 = roots.v2.is_some();
        // Filled one group at a time: if one cannot be made, dropping `cg` removes the others.
        let mut cg = RunCgroup {
            v2: None,
            memory: None,
            pids: None,
            cpu: None,
            cpuacct: None,
            freezer: None,
            enforced: Enforced::default(),
            applied: Some(GroupLimits::default()),
        };
        cg.v2 = mk(&roots.v2)?;
        cg.memory = mk(&roots.memory)?;
        cg.pids = mk(&roots.pids)?;
        cg.cpu = mk(if cpu_group { &roots.cpu } else { &none })?;
        cg.cpuacct = mk(if v2 { &none } else { &roots.cpuacct })?;
        cg.freezer = mk(if v2 { &none } else { &roots.freezer })?;
        cg.enforced.tree = cg.v2.is_some() || cg.memory.is_some() || cg.pids.is_some();
        Ok(cg)
    }

    /// Whether these groups can carry `limits` (a CPU quota needs the v1 cpu group where the
    /// v2 tree has no cpu controller).
    pub fn can_carry(&self, roots: &CgroupRoots, limits: &Limits, enforce: bool) -> bool {
        !(enforce && limits.cpu_cores.is_some() && roots.cpu.is_some() && self.cpu.is_none())
    }

    /// Writes the run's limits into its groups: only those that differ from what the groups
    /// carry already (a pooled group may carry the previous run's), lifting any it should not.
    pub fn apply_limits(
        &mut self,
        roots: &CgroupRoots,
        limits: &Limits,
        enforce: bool,
    ) -> io::Result<()> {
        let want = GroupLimits::of(limits, enforce);
        // Until every write is done, what the groups carry is not known for sure.
        let had = self.applied.take();
        let changed = |f: fn(&GroupLimits) -> Option<u64>| had.is_none_or(|h| f(&h) != f(&want));
        let v2 = self.v2.clone();
        let v2_file = |name: &str| v2.as_ref().map(|d| d.join(name));
        let mut enforced = Enforced {
            tree: self.enforced.tree,
            ..Enforced::default()
        };

        let mem = want.memory_bytes;
        if let Some(m) = &self.memory {
            if changed(|g| g.memory_bytes) {
                let v = mem.map_or("-1".to_string(), |b| b.to_string());
                // The memory+swap limit may never be below the memory limit: raise it first,
                // lower it last (both when the old one is unknown). It exists only where the
                // kernel accounts swap.
                let old = had.map(|h| h.memory_bytes);
                let (first, last) = match (mem, old) {
                    (_, None) => (true, true),
                    (None, _) => (true, false),
                    (Some(_), Some(None)) => (false, true),
                    (Some(new), Some(Some(old))) => (new > old, new <= old),
                };
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if first {
                    write_optional(&memsw, &v);
                }
                write_limit(&m.join("memory.limit_in_bytes"), &v, MEMORY_KEY)?;
                if last {
                    write_optional(&memsw, &v);
                }
            }
            enforced.memory = mem.is_some();
        } else if roots.v2_memory {
            if changed(|g| g.memory_bytes) {
                let v = mem.map_or("max".to_string(), |b| b.to_string());
                write_limit(&v2_file("memory.max").expect("v2 group"), &v, MEMORY_KEY)?;
                let swap = if mem.is_some() { "0" } else { "max" };
                write_optional(&v2_file("memory.swap.max").expect("v2 group"), swap);
            }
            enforced.memory = mem.is_some();
        }

        let pids = want.max_processes;
        let pids_file = match &self.pids {
            Some(p) => Some(p.join("pids.max")),
            None if roots.v2_pids => v2_file("pids.max"),
            None => None,
        };
        if let Some(f) = pids_file {
            if changed(|g| g.max_processes) {
                let v = pids.map_or("max".to_string(), |n| n.to_string());
                write_limit(&f, &v, PIDS_KEY)?;
            }
            enforced.pids = pids.is_some();
        }

        let quota = want.cpu_quota_us;
        if let Some(c) = &self.cpu {
            if changed(|g| g.cpu_quota_us) {
                write_limit(
                    &c.join("cpu.cfs_period_us"),
                    &CPU_PERIOD_US.to_string(),
                    CPU_KEY,
                )?;
                let q = quota.map_or("-1".to_string(), |q| q.to_string());
                write_limit(&c.join("cpu.cfs_quota_us"), &q, CPU_KEY)?;
            }
            enforced.cpu_quota = quota.is_some();
        } else if roots.v2_cpu {
            if changed(|g| g.cpu_quota_us) {
                let q = quota.map_or("max".to_string(), |q| q.to_string());
                write_limit(
                    &v2_file("cpu.max").expect("v2 group"),
                    &format!("{q} {CPU_PERIOD_US}"),
                    CPU_KEY,
                )?;
            }
            enforced.cpu_quota = quota.is_some();
        }
        let or_none = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
        tracing::debug!(
            "cgroup {}: limits written: memory {} bytes, processes {}, CPU quota {} us per {CPU_PERIOD_US} us",
            self.dirs().next().map_or(Path::new("-"), |d| d.as_path()).display(),
            or_none(want.memory_bytes),
            or_none(want.max_processes),
            or_none(want.cpu_quota_us)
        );
        self.applied = Some(want);
        self.enforced = enforced;
        Ok(())
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [
            &self.v2,
            &self.memory,
            &self.pids,
            &self.cpu,
            &self.cpuacct,
            &self.freezer,
        ]
        .into_iter()
        .flatten()
    }

    /// The `cgroup.procs` files, open for writing, for the next child to write "0" into between
    /// fork and exec. Opened per spawn and dropped right after, so a run holds no descriptor
    /// (every descriptor held would be copied by each later fork).
    pub fn open_join(&self) -> io::Result<Vec<OwnedFd>> {
        self.dirs()
            .map(|d| {
                fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(d.join("cgroup.procs"))
                    .map(OwnedFd::from)
            })
            .collect()
    }

    /// The group that holds every process of the run.
    fn tree_dir(&self) -> Option<&PathBuf> {
        self.v2
            .as_ref()
            .or(self.memory.as_ref())
            .or(self.pids.as_ref())
            .or(self.freezer.as_ref())
    }

    pub fn pids(&self) -> Vec<i32> {
        self.tree_dir().map(|d| read_pids(d)).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        if let Some(v2) = &self.v2 {
            if let Some(p) = read_keyed(&v2.join("cgroup.events"), "populated") {
                return p == 0;
            }
        }
        self.pids().is_empty()
    }

    /// Sends `sig` to every process of the group. SIGKILL goes through `cgroup.kill`, which is
    /// atomic against forks; other signals are sent to each process found, twice over, so that
    /// children forked during the first pass get it too.
    ///
    /// `sig` is one of the standard signals (nix's `Signal`, as the supervisor's `Sig` numbers
    /// are); any other number (0, a real-time signal) sends nothing.
    pub fn signal(&self, sig: i32) {
        let Ok(signal) = Signal::try_from(sig) else {
            return;
        };
        if sig == libc::SIGKILL {
            if let Some(v2) = &self.v2 {
                if fs::write(v2.join("cgroup.kill"), "1").is_ok() {
                    return;
                }
            }
        }
        let mut sent = std::collections::HashSet::new();
        for _ in 0..3 {
            let mut new = false;
            for p in self.pids() {
                if sent.insert(p) {
                    new = true;
                    if let Err(e) = unless_gone(kill(Pid::from_raw(p), signal)) {
                        tracing::warn!("cannot send {signal} to pid {p}: {e}");
                    }
                }
            }
            if !new {
                break;
            }
        }
    }

    /// Freezes or thaws the whole group, where a freezer exists.
    pub fn freeze(&self, frozen: bool) -> bool {
        if let Some(v2) = &self.v2 {
            if fs::write(v2.join("cgroup.freeze"), if frozen { "1" } else { "0" }).is_ok() {
                return true;
            }
        }
        if let Some(f) = &self.freezer {
            return fs::write(
                f.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )
            .is_ok();
        }
        false
    }

    /// Times the kernel's OOM killer acted in this group.
    pub fn oom_kills(&self) -> u64 {
        if let Some(m) = &self.memory {
            return read_keyed(&m.join("memory.oom_control"), "oom_kill").unwrap_or(0);
        }
        if let Some(v2) = &self.v2 {
            return read_keyed(&v2.join("memory.events"), "oom_kill").unwrap_or(0);
        }
        0
    }

    /// Times a fork was refused because of the pids limit.
    pub fn fork_refusals(&self) -> u64 {
        if let Some(p) = &self.pids {
            return read_keyed(&p.join("pids.events"), "max").unwrap_or(0);
        }
        if let Some(v2) = &self.v2 {
            return read_keyed(&v2.join("pids.events"), "max").unwrap_or(0);
        }
        0
    }

    /// CPU time of the whole tree so far, including processes that have exited.
    /// The group's own high-water mark of memory, where its memory controller keeps one:
    /// v2 `memory.peak` (Linux 5.19), v1 `memory.max_usage_in_bytes`.
    pub fn memory_peak(&self) -> Option<u64> {
        if let Some(m) = &self.memory {
            return read_u64(&m.join("memory.max_usage_in_bytes"));
        }
        self.v2
            .as_ref()
            .and_then(|d| read_u64(&d.join("memory.peak")))
    }

    pub fn cpu_time(&self) -> Option<Duration> {
        if let Some(v2) = &self.v2 {
            if let Some(us) = read_keyed(&v2.join("cpu.stat"), "usage_usec") {
                return Some(Duration::from_micros(us));
            }
        }
        if let Some(a) = &self.cpuacct {
            return read_u64(&a.join("cpuacct.usage")).map(Duration::from_nanos);
        }
        None
    }

    /// The file that counts the whole tree's CPU time, and whether it is v2's `cpu.stat`.
    pub fn cpu_counter_path(&self) -> Option<(PathBuf, bool)> {
        cpu_counter(&self.v2, &self.cpuacct)
    }

    /// Kills what is left, waits for the groups to empty and removes them. False when some
    /// could not be removed within half a second.
    pub fn destroy(&mut self) -> bool {
        let until = Instant::now() + Duration::from_millis(500);
        loop {
            if self.try_remove() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// One attempt at removing the groups: true once every one is gone. The removal is the
    /// test for emptiness (the kernel refuses to remove a group that holds a process), so an
    /// empty run costs one rmdir per group and nothing else; a group that still holds
    /// processes has them thawed and killed, for the next attempt.
    pub fn try_remove(&mut self) -> bool {
        let mut busy = false;
        for slot in [
            &mut self.freezer,
            &mut self.cpuacct,
            &mut self.cpu,
            &mut self.pids,
            &mut self.memory,
            &mut self.v2,
        ] {
            let Some(d) = slot.as_ref() else {
                continue;
            };
            match fs::remove_dir(d) {
                Ok(()) => {
                    tracing::debug!("cgroup {}: removed", d.display());
                    *slot = None
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => *slot = None,
                // Still holds a process: killed below, removed at the next attempt.
                Err(e) => {
                    tracing::debug!("cgroup {}: not removed yet: {e}", d.display());
                    busy = true
                }
            }
        }
        if busy {
            self.freeze(false);
            self.signal(libc::SIGKILL);
            for d in self.dirs() {
                kill_all_in(d);
            }
        }
        !busy
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // A group that is already gone costs nothing here.
        for d in self.dirs() {
            if d.exists() {
                if let Err(e) = fs::remove_dir(d) {
                    tracing::warn!("cannot remove the run's cgroup {}: {e}", d.display());
                }
            }
        }
    }
}

/// Writes "0" to each descriptor: the calling process joins those groups.
/// Async-signal-safe: called between fork and exec.
pub fn join_in_child(fds: &[RawFd]) -> io::Result<()> {
    for &fd in fds {
        // SAFETY: write(2) reads one byte from a static byte string, valid for the whole
        // program; a bad `fd` makes it fail (EBADF) and writes nothing. Raw libc, no `AsFd`:
        // this runs in a child between fork and exec (async-signal-safe, no allocation), on
        // descriptors the caller keeps open across the call.
        let r = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if r != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
