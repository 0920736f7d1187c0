//! The native tier on Unix: an agent's steps as host processes, each the leader of its own
//! process group, inside the run's cgroups (Linux) and under its rlimits, reaped by the
//! supervisor, killed by the guardian if the supervisor dies.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::process::census::Census;
use crate::process::guardian::{Guardian, Sweep};
use crate::process::reaper::{self, ExitInfo, Reaper};
use crate::process::signal;
use crate::process::tree::TreeHandle;
use crate::runner::native::{self, NativeLaunch};
use crate::sandbox::rlimit::RlimitSet;
use crate::sandbox::Enforced;
use crate::supervisor::output::{finish_drains, Forwarding, StreamSink};
use crate::supervisor::target::{Actions, Exit, Finals, Prepared, Sinks, Started, Target, Tree};
use crate::supervisor::watchdog::OsEnforced;
use crate::supervisor::{RunId, RunSpec, Sig, Step, SupervisorOptions};

/// The native tier's share of a supervisor: cgroup roots and the launcher pool (Linux), the
/// guardian and the reaper.
pub(crate) struct NativeHost {
    roots: crate::sandbox::cgroup::CgroupRoots,
    pool: Option<crate::process::pool::LaunchPool>,
    /// Removes the groups of ended runs, one after the other, off the async workers.
    remover: crate::process::remover::Remover,
    guardian: Option<Arc<Guardian>>,
    /// Keeps every run without a cgroup in view.
    census: Arc<Census>,
    reaper: Reaper,
    /// The watchdog's interval for runs without a cgroup memory limit.
    watchdog_interval: Duration,
    /// Confined runs' own temp directories, a few made ahead.
    tmpdirs: crate::sandbox::tmpdir::TempDirs,
}

impl NativeHost {
    /// Detects the cgroups this process may use, starts the guardian, the reaper and the pool.
    /// Inside a tokio runtime.
    pub fn start(opts: &SupervisorOptions, instance: u64) -> std::io::Result<NativeHost> {
        // Low descriptor numbers for the agents' start (see `reserve_slots`).
        #[cfg(target_os = "linux")]
        crate::runner::reserve_slots();
        crate::sandbox::rlimit::raise_open_files();
        let roots = if opts.use_cgroups {
            crate::sandbox::cgroup::CgroupRoots::detect(&instance.to_string())
        } else {
            crate::sandbox::cgroup::CgroupRoots::default()
        };
        if opts.own_all_children {
            reaper::become_subreaper();
        }
        let kill_file = roots.v2.as_ref().map(|b| b.join("cgroup.kill"));
        let guardian = Guardian::start(kill_file.as_deref(), sweep(instance))
            .ok()
            .map(Arc::new);
        let census = Arc::new(Census::new(opts.watchdog_interval, guardian.clone()));
        let reaper = Reaper::start(opts.own_all_children)?;
        let pool = crate::process::pool::LaunchPool::start(
            &roots,
            &reaper,
            crate::process::pool::configured_size(),
        );
        Ok(NativeHost {
            roots,
            pool,
            remover: crate::process::remover::Remover::start(),
            guardian,
            census,
            reaper,
            watchdog_interval: opts.watchdog_interval,
            tmpdirs: Default::default(),
        })
    }

    /// The mechanisms that confine native agents here, for `symbiont check`.
    pub fn mechanisms(&self) -> Vec<String> {
        let r = &self.roots;
        let every = format!(
            "every {} ms (native_execution.watchdog_interval_ms)",
            self.watchdog_interval.as_millis()
        );
        let per_run = |c: &str, what: &str| {
            r.holds(c)
                .map(|m| format!("{m} on each run's group: {what}"))
        };
        let mut out = vec![
            format!(
                "memory: {}",
                per_run("memory", "the kernel's OOM killer ends the run at the limit").unwrap_or_else(|| format!(
                    "RLIMIT_DATA per process (one allocation past the limit fails) plus the watchdog \
                     on the whole tree's resident memory {every}"
                ))
            ),
            format!(
                "processes: {}",
                per_run("pids", "a fork past the limit fails").unwrap_or_else(|| {
                    "RLIMIT_NPROC (ordinary users) plus the watchdog counting the tree's processes".into()
                })
            ),
            format!(
                "CPU cores: {}",
                per_run("cpu", "a quota of CPU time per period").unwrap_or_else(|| {
                    "CPU affinity: the run is pinned to as many whole CPUs as it may use".into()
                })
            ),
            "CPU time: RLIMIT_CPU per process (soft < hard: SIGXCPU first) plus the watchdog on the tree's total".into(),
            "file size: RLIMIT_FSIZE per process".into(),
            "timeout: the supervisor sends TERM to the tree, KILL after kill_grace_seconds".into(),
        ];
        let groups = r.describe();
        if groups.is_empty() {
            out.push(format!(
                "process tree: no writable cgroup; the main process is a child subreaper, and \
                 the tree is followed through /proc {every}, each process by pid and start \
                 time, plus the SYMBIONT_RUN marker"
            ));
        }
        out.extend(groups);
        if let Some(step) = r.step() {
            out.push(format!("  for limits the kernel enforces: {step}"));
        }
        if self.pool.is_some() {
            out.push(format!(
                "launch pool: {} launchers kept ready in fresh run groups (SYMBIONT_LAUNCH_POOL)",
                crate::process::pool::configured_size()
            ));
        }
        out.push(format!(
            "guardian: {}",
            if self.guardian.is_some() {
                "kills every agent if the supervisor dies"
            } else {
                "not running"
            }
        ));
        out
    }

    /// Launchers ready in the pool, and how many it keeps.
    pub fn launchers(&self) -> (usize, usize) {
        if let Some(p) = &self.pool {
            return (p.ready(), p.size());
        }
        (0, 0)
    }

    /// The CPU counter of the group holding every run: unchanged means no run ran.
    pub fn fleet_cpu_counter(&self) -> Option<(PathBuf, bool)> {
        self.roots.fleet_cpu_counter()
    }

    /// No launch will come any more: the unused launchers end.
    pub fn stop_launchers(&self) {
        if let Some(p) = &self.pool {
            p.stop();
        }
    }

    /// The guardian kills `pid`'s process group if the supervisor dies.
    pub fn guard(&self, pid: i32) {
        if let Some(g) = &self.guardian {
            g.register(pid);
        }
    }

    pub fn unguard(&self, pid: i32) {
        if let Some(g) = &self.guardian {
            g.unregister(pid);
        }
    }

    /// A native run of `spec`. `marker` (`SYMBIONT_RUN=<token>`) is in every process's
    /// environment.
    pub fn target(
        self: &Arc<Self>,
        id: RunId,
        spec: Arc<RunSpec>,
        marker: String,
        stdin: Option<std::fs::File>,
    ) -> NativeTarget {
        NativeTarget {
            host: self.clone(),
            id,
            spec,
            tree: Arc::new(TreeHandle::new(marker, self.census.clone())),
            held: None,
            rlimits: RlimitSet::default(),
            #[cfg(target_os = "linux")]
            affinity: None,
            pid: None,
            pipes: None,
            readers: Vec::new(),
            forwarding: None,
            stdin: stdin.map(OwnedFd::from),
            refill_due: false,
            tmpdir: None,
            confined: None,
            env: None,
            #[cfg(target_os = "linux")]
            sandbox: None,
        }
    }
}

impl Drop for NativeHost {
    fn drop(&mut self) {
        // Every run has ended (each holds the host): once the unused launchers are gone, the
        // base groups are empty.
        self.stop_launchers();
        // Whatever the removal thread still holds goes before the bases.
        self.remover.stop();
        self.roots.remove_bases();
    }
}

/// What the guardian execs after its own kills: `symbiont __sweep SYMBIONT_RUN=<pid>-<instance>-`,
/// which kills whatever still carries a marker of this supervisor's runs. Only in the
/// `symbiont` binary (`process::enable_sweep`): a library's host program has no such subcommand.
fn sweep(instance: u64) -> Option<Sweep> {
    use std::os::unix::ffi::OsStrExt;
    if !crate::process::sweep_enabled() {
        return None;
    }
    // This very binary, even if the file was replaced since it started.
    let exe = std::path::Path::new("/proc/self/exe");
    let program = if exe.exists() {
        exe.to_path_buf()
    } else {
        std::env::current_exe().ok()?
    };
    let c = |b: &[u8]| std::ffi::CString::new(b).ok();
    Some(Sweep {
        program: c(program.as_os_str().as_bytes())?,
        args: vec![
            c(b"__sweep")?,
            c(format!("SYMBIONT_RUN={}-{instance}-", std::process::id()).as_bytes())?,
        ],
    })
}

/// SIGKILL to `pid` and its process group.
pub(crate) fn kill_process(pid: i32) {
    signal::to_group(pid, Sig::Kill);
    signal::to_process(pid, Sig::Kill);
}

/// One native run.
pub(crate) struct NativeTarget {
    host: Arc<NativeHost>,
    id: RunId,
    spec: Arc<RunSpec>,
    tree: Arc<TreeHandle>,
    /// What the run's cgroups hold, once they are made (or came with a pooled launcher).
    held: Option<Enforced>,
    rlimits: RlimitSet,
    /// No CPU quota without a cgroup: the agent is pinned to as many CPUs as it may use
    /// (boxed: 128 bytes that most runs, kept by every idle one, do not need).
    #[cfg(target_os = "linux")]
    affinity: Option<Box<libc::cpu_set_t>>,
    /// The current step's main process and output pipes, and the tasks draining them.
    pid: Option<i32>,
    pipes: Option<(OwnedFd, OwnedFd)>,
    readers: Vec<JoinHandle<()>>,
    /// The caller streaming the output, when one does.
    forwarding: Option<Arc<Forwarding>>,
    /// The agent's standard input (`RunIo::stdin`); /dev/null without one.
    stdin: Option<OwnedFd>,
    /// A launcher of the pool was used: a replacement is due.
    refill_due: bool,
    /// Under a sandbox that confines writes: the run's own temp directory (its `TMPDIR`),
    /// removed when the run ends, and the environment that names it.
    tmpdir: Option<crate::sandbox::tmpdir::RunTmp>,
    env: Option<Vec<(String, String)>>,
    /// What the agent's process applies to itself before its exec.
    #[cfg(target_os = "linux")]
    sandbox: Option<crate::sandbox::ChildSandbox>,
    /// Whether the sandbox was prepared (by the pooled start or by `prepare`), and how.
    confined: Option<Result<(), String>>,
}

/// The rlimits of a run. Where no cgroup limits memory, RLIMIT_DATA per process (never
/// RLIMIT_AS: it breaks the JVM and WebAssembly in Node) and the watchdog on the tree's sum.
fn rlimits_for(spec: &RunSpec, held: Enforced) -> RlimitSet {
    let mut rl = RlimitSet::default();
    rl.open_files_as_started();
    if !spec.enforce_limits {
        return rl;
    }
    let l = &spec.limits;
    if let Some(s) = l.cpu_seconds {
        rl.cpu_seconds(s);
    }
    if let Some(b) = l.file_size_bytes {
        rl.file_size(b);
    }
    if let (Some(b), false) = (l.memory_bytes, held.memory) {
        rl.data(b);
    }
    // RLIMIT_NPROC counts every process of the user and root ignores it: only a fallback for
    // ordinary users, set above what the user already runs.
    if let (Some(n), false) = (l.max_processes, held.pids) {
        let uid = nix::unistd::getuid();
        if !uid.is_root() {
            rl.processes(n + crate::sampler::user_process_count(uid.as_raw()));
        }
    }
    rl
}

/// Runs with a smaller memory limit do not go through a launcher (see `start_now`).
#[cfg(target_os = "linux")]
const MIN_POOLED_MEMORY: u64 = 16 << 20;

fn exit_of(e: ExitInfo) -> Exit {
    Exit {
        code: e.code,
        signal: e.signal.map(signal::name),
        cpu: e.cpu,
        max_rss_bytes: e.max_rss_bytes,
        cpu_limit: e.signal == Some(signal::SIGXCPU),
        killed: e.signal == Some(signal::SIGKILL),
        oom: false,
    }
}

/// Reads `pipe` to its end into `sink`. The read buffer is allocated on the first byte: a
/// thousand silent agents cost nothing, while they run or when they end (the first read goes
/// to a small buffer on the stack, so an end of file with no output allocates nothing).
async fn drain(pipe: tokio::net::unix::pipe::Receiver, mut sink: StreamSink) {
    let mut buf: Vec<u8> = Vec::new();
    let mut wide = false;
    loop {
        // A widened pipe whose agent fell quiet for a second gives its room back (it is empty
        // then, so the kernel cannot refuse): a burst at start-up does not keep it for good.
        let ready = if wide {
            match tokio::time::timeout(Duration::from_secs(1), pipe.readable()).await {
                Ok(r) => r,
                Err(_) => {
                    wide = !native::set_pipe_size(&pipe, native::DEFAULT_PIPE);
                    continue;
                }
            }
        } else {
            pipe.readable().await
        };
        if ready.is_err() {
            break;
        }
        let read = if buf.is_empty() {
            // The small buffer ends before any await: an idle agent's drain keeps no 4 KiB in
            // its task.
            let first = {
                let mut first = [0u8; 4096];
                match pipe.try_read(&mut first) {
                    Ok(n) if n > 0 => {
                        buf = vec![0u8; 128 * 1024];
                        buf[..n].copy_from_slice(&first[..n]);
                        Ok(n)
                    }
                    r => Err(r),
                }
            };
            match first {
                Ok(n) => {
                    sink.pass(&buf[..n]).await;
                    continue;
                }
                Err(r) => r,
            }
        } else {
            pipe.try_read(&mut buf)
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                // A full pipe: the agent writes faster than this reads, so it gets room to
                // write in bigger strides; a trickle gives the room back (see `set_pipe_size`).
                if !wide && n >= native::DEFAULT_PIPE {
                    wide = native::set_pipe_size(&pipe, native::WIDE_PIPE);
                } else if wide && n < native::DEFAULT_PIPE / 4 {
                    // Refused while more than the default is in the pipe: tried again later.
                    wide = !native::set_pipe_size(&pipe, native::DEFAULT_PIPE);
                }
                sink.pass(&buf[..n]).await
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => break,
        }
    }
    sink.finish().await;
}

impl NativeTarget {
    /// The run's groups hold these limits: the rlimits and CPU affinity follow from them.
    fn hold(&mut self, held: Enforced) {
        self.held = Some(held);
        self.rlimits = rlimits_for(&self.spec, held);
        #[cfg(target_os = "linux")]
        {
            self.affinity = match self.spec.limits.cpu_cores {
                Some(c) if self.spec.enforce_limits && !held.cpu_quota => {
                    native::affinity_for(c).map(Box::new)
                }
                _ => None,
            };
        }
    }

    /// The run's groups: one per hierarchy, limits written before anything runs. A note for
    /// the record where the host cannot give them; an error naming the setting where the
    /// kernel refuses a limit's value (the run does not start).
    fn make_groups(&mut self) -> Result<Option<String>, String> {
        if self.held.is_some() || !self.host.roots.any() {
            return Ok(None);
        }
        match crate::sandbox::cgroup::RunCgroup::create(
            &self.host.roots,
            &format!("run-{}", self.id),
            &self.spec.limits,
            self.spec.enforce_limits,
        ) {
            Ok(cg) => {
                self.hold(cg.enforced);
                *self.tree.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = Some(cg);
                Ok(None)
            }
            // A value the kernel will not take is the operator's to fix, not a reason to run
            // with weaker limits.
            Err(e) => match crate::sandbox::cgroup::refused_limit(&e) {
                Some(refused) => Err(refused.to_string()),
                None => Ok(Some(format!(
                    "no cgroup for this run ({e}); rlimits and the watchdog enforce its limits"
                ))),
            },
        }
    }

    /// What holds this run's limits where no cgroup does, for its record.
    fn fallback_note(&self, held: Enforced) -> Option<String> {
        let l = &self.spec.limits;
        if !self.spec.enforce_limits {
            return None;
        }
        let mut weaker = Vec::new();
        if l.memory_bytes.is_some() && !held.memory {
            weaker.push(format!(
                "memory by RLIMIT_DATA per process and the watchdog every {} ms",
                self.host.watchdog_interval.as_millis()
            ));
        }
        if l.max_processes.is_some() && !held.pids {
            weaker.push("processes by RLIMIT_NPROC and the watchdog".to_string());
        }
        if weaker.is_empty() {
            return None;
        }
        Some(format!(
            "no cgroup holds this run's limits here: {} (`symbiont check` says why)",
            weaker.join("; ")
        ))
    }

    fn launch<'a>(&'a self, step: &'a Step, cgroup_fds: Vec<i32>) -> NativeLaunch<'a> {
        NativeLaunch {
            program: &step.program,
            argv: &step.argv,
            cwd: &self.spec.cwd,
            env: self.env.as_deref().unwrap_or(&self.spec.env),
            cgroup_fds,
            rlimits: self.rlimits,
            #[cfg(target_os = "linux")]
            affinity: self.affinity.as_deref().copied(),
            subreaper: !self.held.is_some_and(|h| h.tree),
            stdin: self.stdin.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
            #[cfg(target_os = "linux")]
            sandbox: self.sandbox.as_ref(),
        }
    }

    /// Prepares the run's sandbox (SPEC 3.1), once: its own temp directory where writes are
    /// confined, and the rules its process applies to itself. An error refuses the run.
    fn confine(&mut self) -> Result<(), String> {
        if let Some(done) = &self.confined {
            return done.clone();
        }
        let done = self.make_confinement();
        self.confined = Some(done.clone());
        done
    }

    fn make_confinement(&mut self) -> Result<(), String> {
        let c = &self.spec.sandbox;
        if !c.any() {
            return Ok(());
        }
        crate::sandbox::enforceable(c)?;
        let mut writable = vec![self.spec.cwd.clone()];
        if c.writes {
            let dir = self.host.tmpdirs.take().map_err(|e| e.to_string())?;
            let mut env = self.spec.env.clone();
            env.retain(|(k, _)| k != "TMPDIR");
            env.push(("TMPDIR".into(), dir.path.to_string_lossy().into_owned()));
            self.env = Some(env);
            writable.push(dir.path.clone());
            self.tmpdir = Some(dir);
        }
        #[cfg(target_os = "linux")]
        {
            let dirs: Vec<&std::path::Path> = writable.iter().map(PathBuf::as_path).collect();
            self.sandbox = Some(crate::sandbox::ChildSandbox::new(c, &dirs)?);
        }
        Ok(())
    }

    /// A confined run took a temp directory: the next runs' are made, off the async workers
    /// (two directories, up to 0.3 ms on an ext4 /tmp) and after the agent started.
    fn refill_tmpdirs(&self) {
        if self.tmpdir.is_some() {
            let host = self.host.clone();
            tokio::task::spawn_blocking(move || host.tmpdirs.refill());
        }
    }

    /// A step's process runs: it is the tree's main process, the guardian knows its group.
    fn started(
        &mut self,
        pid: i32,
        s: native::Started,
        exit: tokio::sync::oneshot::Receiver<ExitInfo>,
    ) -> Started {
        self.tree.set_main(pid);
        self.host.guard(pid);
        self.pid = Some(pid);
        #[cfg(target_os = "linux")]
        if let Some(listener) = s.denials {
            // Each call the sandbox refuses is counted and described before it is answered.
            let tree = self.tree.clone();
            tokio::spawn(crate::sandbox::seccomp::serve_denials(listener, move |d| {
                tree.denials.push(d)
            }));
        }
        self.pipes = Some((s.stdout, s.stderr));
        Started {
            pid: Some(pid),
            container_id: None,
            exit: Box::pin(async move {
                exit.await
                    .map(exit_of)
                    .map_err(|_| "the agent's exit status was lost".to_string())
            }),
        }
    }

    /// Starts the first step through a ready launcher of the pool: no task hop and no cgroup
    /// work between the request and the running agent.
    #[cfg(target_os = "linux")]
    fn start_pooled(&mut self, step: &Step) -> Option<Result<Started, String>> {
        let host = self.host.clone();
        let pool = host.pool.as_ref()?;
        let spec = self.spec.clone();
        if self.stdin.is_some() {
            return None;
        }
        // The launcher applies the sandbox too; one that cannot be prepared is refused in
        // `prepare`, on the way every refusal takes.
        if spec.sandbox.any() && self.confine().is_err() {
            return None;
        }
        let env = self.env.as_deref().unwrap_or(&spec.env);
        if !crate::runner::zygote::Zygote::fits(&step.program, &spec.cwd, &step.argv, env) {
            return None;
        }
        // The launcher shares the supervisor's memory until its exec, which is charged to the
        // run's memory group: under a tiny limit the kernel's OOM killer would pick it, and with
        // it every process sharing that memory. A vfork child is exempt, so such runs take the
        // direct path.
        if spec.enforce_limits
            && spec
                .limits
                .memory_bytes
                .is_some_and(|m| m < MIN_POOLED_MEMORY)
        {
            return None;
        }
        let filter = self.sandbox.as_ref().and_then(|sb| sb.filter);
        let mut p = pool.take(filter)?;
        let usable = p.zygote.alive()
            && p.cgroup
                .can_carry(&host.roots, &spec.limits, spec.enforce_limits)
            && p.cgroup
                .apply_limits(&host.roots, &spec.limits, spec.enforce_limits)
                .is_ok();
        if !usable {
            // Now, not later on another thread: the pool's thread must outlive its launchers.
            p.discard(&host.reaper);
            return None;
        }
        pool.expect(&spec.limits, spec.enforce_limits, filter);
        self.hold(p.cgroup.enforced);
        *self.tree.cgroup.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.cgroup);
        let result = p
            .zygote
            .exec(&self.launch(step, Vec::new()))
            .map_err(|e| crate::sampler::budget::spawn_error(&step.program.display(), &e));
        // The replacement is made once the agent is announced (in `prepare`): making it
        // competes for the CPU with the `Launched` event on a small machine.
        match &result {
            Ok(_) => self.refill_due = true,
            Err(_) => pool.refill(),
        }
        Some(result.map(|s| self.started(s.pid, s, p.exit)))
    }
}

/// What the operator can do to a run of this tier.
pub(crate) const ACTIONS: Actions = Actions {
    choices: &[
        (Sig::Term, "TERM, then KILL after the grace period"),
        (Sig::Kill, "KILL at once"),
        (Sig::Int, "INT (interrupt)"),
        (Sig::Hup, "HUP (hang up)"),
        (Sig::Stop, "STOP (pause)"),
        (Sig::Cont, "CONT (resume)"),
    ],
    signal_names: true,
    one_process: true,
    graceful_term: true,
    pause: true,
};

impl Target for NativeTarget {
    fn actions(&self) -> Actions {
        ACTIONS
    }

    fn tree(&self) -> Arc<dyn Tree> {
        self.tree.clone()
    }

    fn start_now(&mut self, step: &Step) -> Option<Result<Started, String>> {
        #[cfg(target_os = "linux")]
        return self.start_pooled(step);
        #[cfg(not(target_os = "linux"))]
        {
            let _ = step;
            None
        }
    }

    async fn prepare(&mut self) -> Prepared {
        if std::mem::take(&mut self.refill_due) {
            if let Some(pool) = &self.host.pool {
                pool.refill();
            }
            self.refill_tmpdirs();
        }
        let (note, mut fatal) = match self.make_groups() {
            Ok(note) => (note, None),
            Err(refused) => (None, Some(refused)),
        };
        if fatal.is_none() {
            fatal = self.confine().err();
        }
        if self.held.is_none() {
            self.hold(Enforced::default());
        }
        let held = self.held.unwrap_or_default();
        // A weaker mechanism the host forces on this run is said in its record, not only in
        // `check`.
        let note = note.or_else(|| self.fallback_note(held));
        let mut audit_limits = Map::new();
        audit_limits.insert("enforced_by_os".into(), json!(self.spec.enforce_limits));
        audit_limits.insert("cgroup_memory".into(), json!(held.memory));
        audit_limits.insert("cgroup_pids".into(), json!(held.pids));
        audit_limits.insert("cgroup_cpu".into(), json!(held.cpu_quota));
        audit_limits.insert(
            "rlimit_data".into(),
            json!(
                !held.memory && self.spec.enforce_limits && self.spec.limits.memory_bytes.is_some()
            ),
        );
        let mut audit = Map::new();
        let programs: Vec<Value> = self.spec.steps.iter().map(|s| json!(s.program)).collect();
        audit.insert("program".into(), Value::Array(programs));
        let c = &self.spec.sandbox;
        audit.insert(
            "sandbox".into(),
            json!({"level": c.level, "confines": c.summary(), "tmpdir": self.tmpdir.as_ref().map(|t| &t.path)}),
        );
        Prepared {
            os: OsEnforced {
                memory: held.memory,
                pids: held.pids,
                per_process_memory: !held.memory
                    && self.spec.enforce_limits
                    && self.spec.limits.memory_bytes.is_some(),
            },
            audit,
            audit_limits,
            note,
            fatal,
        }
    }

    async fn start(&mut self, _n: usize, step: &Step) -> Result<Started, String> {
        let join = match self
            .tree
            .cgroup
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.open_join()))
        {
            Some(Ok(fds)) => fds,
            Some(Err(e)) => {
                return Err(crate::sampler::budget::spawn_error(
                    &"cannot join the run's cgroups",
                    &e,
                ))
            }
            None => Vec::new(),
        };
        let fds = join.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        let launch = self.launch(step, fds);
        let spawned = self
            .host
            .reaper
            .spawn_registered(|| native::spawn(&launch).map(|s| (s.pid, s)))
            .map_err(|e| crate::sampler::budget::spawn_error(&step.program.display(), &e));
        drop(join);
        let (pid, s, exit) = spawned?;
        self.refill_tmpdirs();
        Ok(self.started(pid, s, exit))
    }

    fn drain(&mut self, sinks: Sinks) {
        let Some((out, err)) = self.pipes.take() else {
            return;
        };
        self.forwarding = sinks.forwarding;
        for (fd, sink) in [(out, sinks.stdout), (err, sinks.stderr)] {
            if let Ok(p) = native::async_pipe(fd) {
                self.readers.push(tokio::spawn(drain(p, sink)));
            }
        }
    }

    async fn signal(&self, sig: Sig, pid: Option<i32>) -> bool {
        match pid {
            Some(p) => self.tree.send_to(p, sig),
            None => {
                self.tree.send(sig);
                true
            }
        }
    }

    async fn pause(&self, paused: bool) -> bool {
        self.tree.freeze(paused);
        true
    }

    async fn end_step(&mut self) {
        // The main process is gone: its pid may be reused from now on, so the tree is found by
        // its group and cgroup only. Whatever it left behind dies with it.
        self.tree.main_reaped();
        if let Some(pid) = self.pid.take() {
            self.host.unguard(pid);
        }
        // Mostly the main process was all there was: one look says so, and a tree that is empty
        // stays empty (nothing is left in it to fork), so there is nothing to wait for after.
        let empty = self.tree.is_empty();
        if !empty {
            self.tree.kill_now();
        }
        finish_drains(self.readers.drain(..), self.forwarding.as_deref()).await;
        if empty {
            return;
        }
        // Wait for the tree to be gone (the reaper collects the zombies).
        let until = Instant::now() + Duration::from_secs(2);
        while !self.tree.is_empty() && Instant::now() < until {
            self.tree.kill_now();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn finish(&mut self) -> Finals {
        let finals = Finals {
            memory_peak: self.tree.cgroup_memory_peak(),
            cpu_time: self.tree.cgroup_cpu_time(),
            oom_kills: self.tree.oom_kills(),
        };
        // Removing the groups happens under the kernel's cgroup mutex and may wait for the
        // kernel to empty them: on the removal thread. The record waits for it, so a run that
        // has ended has no group left.
        if let Some(cg) = self.tree.take_cgroup() {
            if let Some(cg) = self.host.remover.remove(cg).await {
                self.tree.put_back(cg);
            }
        }
        if let Some(dir) = self.tmpdir.take() {
            // Whatever the agent left there goes with the run.
            let _ = tokio::task::spawn_blocking(move || {
                // Removed while still held: no sweep of another supervisor can come between.
                if let Err(e) = std::fs::remove_dir_all(&dir.path) {
                    tracing::warn!(
                        "cannot remove the run's temp directory {}: {e}",
                        dir.path.display()
                    );
                }
            })
            .await;
        }
        finals
    }
}
