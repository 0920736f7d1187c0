//! Starting an agent into its cgroups: does `clone3(CLONE_INTO_CGROUP)` (Linux 5.7, cgroup v2:
//! the child is born in the group, nothing joins it afterwards, no threadgroup lock taken for
//! writing) beat what the native runner does, measured side by side in the same run:
//!
//! - `bare`: `Command::spawn` of `/bin/true` (posix_spawn), no cgroup: the floor;
//! - `native_nocg`: the runner's own spawn (`native::spawn`, a `CLONE_VM | CLONE_VFORK` child),
//!   no cgroup;
//! - `direct_hybrid`: today's direct path on this host: `RunCgroup::create` (v2 group + v1
//!   memory and pids groups, limits written), their `cgroup.procs` opened, the child joins
//!   them between clone and exec;
//! - `direct_v2`: the same with a v2 group only (what a unified host without limits pays);
//! - `clone3_v2`: a fresh v2 group, `clone3(CLONE_INTO_CGROUP)` into it (fork-like: no
//!   `CLONE_VM`), exec: what a unified host would do;
//! - `clone3_hybrid`: the groups of `direct_hybrid`, born into the v2 one by clone3, the v1
//!   ones still joined in the child (v1 has no `CLONE_INTO_CGROUP`);
//! - `clone3_join_v2` and `clone3_nocg`: the same fork-like clone3 child joining the v2 group by
//!   a write, and with no group: they separate what `CLONE_INTO_CGROUP` saves from what a
//!   fork-like child costs against the runner's vfork-like one.
//!
//! Latency: from "launch requested" (before the groups are made) to "agent running" (the child
//! has exec'd: `native::spawn` and posix_spawn return after the exec, the clone3 variants read a
//! close-on-exec pipe to its end), each launch alone after a pause, the variants interleaved.
//! Throughput: a burst of launches back to back, then every child reaped and every group
//! removed; launches per second over the whole burst, group removal included (the real code
//! pays it per run).
//!
//! Then the pool, through the public API: a `Supervisor` launching `/bin/true` with limits,
//! `launch()` to `Launched`, with the launcher pool (default size) and with
//! `SYMBIONT_LAUNCH_POOL=0` (every launch takes the direct path); and a burst of launches,
//! first `launch()` to the last run ended (groups removed).
//!
//! `cargo bench --bench clone3 [-- --quick] [--json PATH] [--only LIST]`, LIST from `raw` (every
//! variant above), `supervisor`, or single variants (`direct_v2,clone3_v2`).
//! Needs root and a writable cgroup v2 hierarchy; otherwise it says so and measures what it can.

mod common;

fn main() {
    #[cfg(target_os = "linux")]
    bench::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the clone3 benchmark measures Linux cgroups; nothing to do here");
}

#[cfg(target_os = "linux")]
mod bench {
    use super::common::{
        self, marked, ms, num, read_trim, write_json, Args, Figure, Res, Stats, Target, MARK,
    };

    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};
    use symbiont::runner::native::{self, NativeLaunch};
    use symbiont::sandbox::cgroup::{CgroupRoots, RunCgroup};
    use symbiont::sandbox::rlimit::RlimitSet;
    use symbiont::supervisor::{Event, Limits, RunSpec, Step, Supervisor, SupervisorOptions};
    use symbiont::SecurityTier;
    use tokio::sync::broadcast;

    /// What `--only` takes: every raw variant (`raw`), the supervisor figures, or single variants.
    const FIGURES: [&str; 10] = [
        "raw",
        "supervisor",
        "bare",
        "native_nocg",
        "direct_hybrid",
        "direct_v2",
        "clone3_v2",
        "clone3_hybrid",
        "clone3_join_v2",
        "clone3_nocg",
    ];
    const TRUE: &str = "/bin/true";
    /// A pause before each timed launch: the previous sample's exit and group removal must not
    /// land in the next one. Long enough for the kernel's cgroup threadgroup lock to go back to
    /// its fast path, as between two launches that are not part of a burst.
    const SETTLE: Duration = Duration::from_millis(10);

    // ---------------------------------------------------------------- clone3

    /// `CLONE_INTO_CGROUP` and `CLONE_CLEAR_SIGHAND` from linux/sched.h (libc declares them as
    /// `c_int`, which they overflow).
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;

    /// `struct clone_args` of linux/sched.h (version 2, with `cgroup`: 88 bytes). Declared here:
    /// libc has it for a few targets only.
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }

    /// The program, argv and environment as the child needs them, made before any clone.
    struct Exe {
        program: CString,
        _strings: Vec<CString>,
        argv: Vec<*const libc::c_char>,
        envp: Vec<*const libc::c_char>,
    }

    impl Exe {
        fn new(program: &Path, argv: &[String], env: &[(String, String)]) -> Exe {
            let c = |s: &[u8]| CString::new(s).expect("no NUL byte");
            let args: Vec<CString> = argv.iter().map(|a| c(a.as_bytes())).collect();
            let vars: Vec<CString> = env
                .iter()
                .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
                .collect();
            let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
            argv.push(std::ptr::null());
            let mut envp: Vec<*const libc::c_char> = vars.iter().map(|a| a.as_ptr()).collect();
            envp.push(std::ptr::null());
            // The pointers point into the `CString`s' heap buffers, which moving them into
            // `_strings` does not move.
            Exe {
                program: c(program.as_os_str().as_bytes()),
                _strings: args.into_iter().chain(vars).collect(),
                argv,
                envp,
            }
        }
    }

    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
    }

    /// The child of `clone3_spawn`: a copy of the parent's memory (no `CLONE_VM`), one thread.
    /// Another thread of the parent may have held a lock (malloc's) at the clone, so this only
    /// makes async-signal-safe system calls on data prepared before the clone, then execs or
    /// `_exit`s; on failure it writes errno to `status`.
    ///
    /// # Safety
    /// Only in the child of a fork-like clone, before exec: `_exit` ends the process, and the
    /// descriptors it dups over 0, 1 and 2 are the child's own copies.
    unsafe fn child(exe: &Exe, stdio: [RawFd; 3], join: &[RawFd], status: RawFd) -> ! {
        // SAFETY (for every call below): each is an async-signal-safe libc wrapper of one system
        // call, on memory of this process's own copy made before the clone: `empty` is a live
        // local; `exe`'s strings are NUL-terminated and its `argv`/`envp` end in a null pointer;
        // the descriptors are this child's copies; errno is read through its thread-local
        // location, which this single-threaded child owns. Nothing allocates, locks or unwinds.
        // All signals were blocked by the parent around the clone; handlers were reset by
        // `CLONE_CLEAR_SIGHAND`; unblock now.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        let ok = libc::setpgid(0, 0) == 0
            && join
                .iter()
                .all(|&fd| libc::write(fd, b"0".as_ptr().cast(), 1) == 1)
            && (0..3).all(|i| libc::dup2(stdio[i], i as RawFd) == i as RawFd);
        if ok {
            libc::execve(exe.program.as_ptr(), exe.argv.as_ptr(), exe.envp.as_ptr());
        }
        let e: i32 = *libc::__errno_location();
        libc::write(status, (&e as *const i32).cast(), 4);
        libc::_exit(127)
    }

    /// A started child: its pid and the read ends of its output pipes.
    struct Spawned {
        pid: i32,
        _out: OwnedFd,
        _err: OwnedFd,
    }

    /// `clone3` fork-like, into the v2 group open as `into` (a directory descriptor) when given,
    /// the child writing itself into each of `join` (`cgroup.procs` descriptors); returns once
    /// the child has exec'd. The same shape as the runner's child: a process group of its own,
    /// stdin from /dev/null, stdout and stderr to pipes.
    fn clone3_spawn(exe: &Exe, into: Option<RawFd>, join: &[RawFd]) -> io::Result<Spawned> {
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (st_r, st_w) = pipe()?;
        let mut args = CloneArgs {
            flags: CLONE_CLEAR_SIGHAND | into.map_or(0, |_| CLONE_INTO_CGROUP),
            exit_signal: libc::SIGCHLD as u64,
            cgroup: into.map_or(0, |fd| fd as u64),
            ..CloneArgs::default()
        };
        let stdio = [devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        let status = st_w.as_raw_fd();
        // Every signal is blocked across the clone so that none is handled in the child before
        // its handlers are reset (by the kernel: `CLONE_CLEAR_SIGHAND`); the parent's mask is
        // put back right after.
        // SAFETY: `sigset_t` is a plain integer array: all-zero is a valid (empty) set.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigfillset and pthread_sigmask only write into `all` and `old`, live locals
        // of the type they expect; SIG_SETMASK with a valid set does not fail.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        }
        // SAFETY: clone3 reads `size_of::<CloneArgs>()` bytes from `args`, a live
        // `#[repr(C)]` `struct clone_args`; without `CLONE_VM` the child gets a copy of this
        // address space and returns here on the same stack, like fork(). The parent is
        // multi-threaded: the child then only runs `child`, which makes async-signal-safe
        // system calls on data made before the clone (`exe`, `stdio`, `join`, `status` are in
        // its copy of memory) and execs or `_exit`s, never returning into Rust code that could
        // allocate or unwind. `into` is an open directory of the cgroup v2 hierarchy, or unused.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &mut args as *mut CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid == 0 {
            // SAFETY: this is the child of the fork-like clone just made (see `child`).
            unsafe { child(exe, stdio, join, status) }
        }
        let err = io::Error::last_os_error();
        // SAFETY: puts back the mask saved above, from a live local.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        drop((out_w, err_w, st_w, devnull));
        if pid < 0 {
            return Err(err);
        }
        let pid = pid as i32;
        // The exec closes the child's copy of `st_w`: end of file = running.
        let mut buf = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match nix::unistd::read(&st_r, &mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if got == 4 {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(buf)));
        }
        Ok(Spawned {
            pid,
            _out: out_r,
            _err: err_r,
        })
    }

    // ---------------------------------------------------------------- the variants

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum V {
        Bare,
        NativeNoCg,
        DirectHybrid,
        DirectV2,
        Clone3V2,
        Clone3Hybrid,
        Clone3JoinV2,
        Clone3NoCg,
    }

    const ALL: [V; 8] = [
        V::Bare,
        V::NativeNoCg,
        V::DirectHybrid,
        V::DirectV2,
        V::Clone3V2,
        V::Clone3Hybrid,
        V::Clone3JoinV2,
        V::Clone3NoCg,
    ];

    impl V {
        fn key(self) -> &'static str {
            match self {
                V::Bare => "bare",
                V::NativeNoCg => "native_nocg",
                V::DirectHybrid => "direct_hybrid",
                V::DirectV2 => "direct_v2",
                V::Clone3V2 => "clone3_v2",
                V::Clone3Hybrid => "clone3_hybrid",
                V::Clone3JoinV2 => "clone3_join_v2",
                V::Clone3NoCg => "clone3_nocg",
            }
        }

        fn what(self) -> &'static str {
            match self {
                V::Bare => "(a) bare Command::spawn (posix_spawn), no cgroup",
                V::NativeNoCg => "native::spawn (vfork-like), no cgroup",
                V::DirectHybrid => "(b) today's direct path: v2 + v1 memory/pids, join in child",
                V::DirectV2 => "(b) today's direct path, v2 group only, join in child",
                V::Clone3V2 => "(c) clone3 CLONE_INTO_CGROUP, v2 group only",
                V::Clone3Hybrid => "(c) clone3 into v2 + join v1 memory/pids in child",
                V::Clone3JoinV2 => "control: clone3 fork-like, join v2 in child",
                V::Clone3NoCg => "control: clone3 fork-like, no cgroup",
            }
        }

        fn needs_v2(self) -> bool {
            !matches!(self, V::Bare | V::NativeNoCg | V::Clone3NoCg)
        }
    }

    struct Ctx {
        roots: CgroupRoots,
        exe: Exe,
        program: PathBuf,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        work: PathBuf,
        limits: Limits,
    }

    /// What a launch leaves to clean up.
    enum Groups {
        None,
        Run(RunCgroup),
        Dir(PathBuf),
    }

    struct Launched {
        pid: i32,
        groups: Groups,
    }

    fn open_procs(dir: &Path) -> io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dir.join("cgroup.procs"))?
            .into())
    }

    fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
        Ok(std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(dir)?
            .into())
    }

    fn mkdir(dir: &Path) -> io::Result<()> {
        std::fs::create_dir(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
    }

    /// One launch of `v`, from the request to the running agent: groups made, child exec'd.
    fn launch(c: &Ctx, v: V, name: &str) -> Res<Launched> {
        let err = |e: io::Error| format!("{}: {e}", v.key());
        let native_launch = |fds: Vec<RawFd>| -> Res<i32> {
            let l = NativeLaunch {
                program: &c.program,
                argv: &c.argv,
                cwd: &c.work,
                env: &c.env,
                cgroup_fds: fds,
                rlimits: RlimitSet::default(),
                affinity: None,
                subreaper: false,
                stdin: None,
                sandbox: None,
            };
            native::spawn(&l).map(|s| s.pid).map_err(err)
        };
        let v2_dir = || c.roots.v2.as_ref().map(|b| b.join(name));
        match v {
            V::Bare => {
                let child = Command::new(&c.program)
                    .arg0(&c.argv[0])
                    .current_dir(&c.work)
                    .env_clear()
                    .envs(c.env.iter().map(|(k, v)| (k, v)))
                    .process_group(0)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(err)?;
                // Dropping a `Child` neither waits nor kills: the pid is reaped below.
                Ok(Launched {
                    pid: child.id() as i32,
                    groups: Groups::None,
                })
            }
            V::NativeNoCg => Ok(Launched {
                pid: native_launch(Vec::new())?,
                groups: Groups::None,
            }),
            V::DirectHybrid | V::Clone3Hybrid => {
                let cg = RunCgroup::create(&c.roots, name, &c.limits, true).map_err(err)?;
                let join = cg.open_join().map_err(err)?;
                let fds: Vec<RawFd> = join.iter().map(AsRawFd::as_raw_fd).collect();
                let pid = if v == V::DirectHybrid {
                    native_launch(fds)
                } else {
                    // `open_join` lists the v2 group first: born there, the v1 ones joined.
                    let dir = open_dir(&v2_dir().expect("v2")).map_err(err)?;
                    clone3_spawn(&c.exe, Some(dir.as_raw_fd()), &fds[1..])
                        .map(|s| s.pid)
                        .map_err(err)
                };
                let pid = match pid {
                    Ok(p) => p,
                    Err(e) => {
                        let mut cg = cg;
                        cg.destroy();
                        return Err(e);
                    }
                };
                Ok(Launched {
                    pid,
                    groups: Groups::Run(cg),
                })
            }
            V::DirectV2 | V::Clone3V2 | V::Clone3JoinV2 => {
                let d = v2_dir().expect("v2");
                mkdir(&d).map_err(err)?;
                let r = match v {
                    V::DirectV2 => open_procs(&d)
                        .map_err(err)
                        .and_then(|f| native_launch(vec![f.as_raw_fd()])),
                    V::Clone3V2 => open_dir(&d).map_err(err).and_then(|f| {
                        clone3_spawn(&c.exe, Some(f.as_raw_fd()), &[])
                            .map(|s| s.pid)
                            .map_err(err)
                    }),
                    _ => open_procs(&d).map_err(err).and_then(|f| {
                        clone3_spawn(&c.exe, None, &[f.as_raw_fd()])
                            .map(|s| s.pid)
                            .map_err(err)
                    }),
                };
                match r {
                    Ok(pid) => Ok(Launched {
                        pid,
                        groups: Groups::Dir(d),
                    }),
                    Err(e) => {
                        let _ = std::fs::remove_dir(&d);
                        Err(e)
                    }
                }
            }
            V::Clone3NoCg => Ok(Launched {
                pid: clone3_spawn(&c.exe, None, &[])
                    .map(|s| s.pid)
                    .map_err(err)?,
                groups: Groups::None,
            }),
        }
    }

    /// Reaps the child and removes its groups.
    fn finish(l: Launched) -> Res<()> {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(l.pid), None);
        match l.groups {
            Groups::None => Ok(()),
            Groups::Run(mut cg) => {
                if cg.destroy() {
                    Ok(())
                } else {
                    Err("a run's groups could not be removed".into())
                }
            }
            Groups::Dir(d) => {
                // The child has exited: the group is empty (a zombie holds none).
                let until = Instant::now() + Duration::from_millis(500);
                loop {
                    match std::fs::remove_dir(&d) {
                        Ok(()) => return Ok(()),
                        Err(e) if Instant::now() >= until => {
                            return Err(format!("{}: {e}", d.display()))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }
        }
    }

    /// The `p`-quantile (nearest sample) of `v`.
    fn quantile(v: &[f64], p: f64) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        if s.is_empty() {
            return f64::NAN;
        }
        s[((s.len() - 1) as f64 * p).round() as usize]
    }

    struct Measured {
        v: V,
        lat: Vec<f64>,
        rate: Vec<f64>,
    }

    fn raw(args: &Args, c: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<Vec<Measured>> {
        let n = if args.quick { 30 } else { 300 };
        let burst = if args.quick { 100 } else { 500 };
        let reps = if args.quick { 1 } else { 3 };
        let warm = 5;
        let picked = |v: &V| args.only.is_none() || args.wants("raw") || args.wants(v.key());
        let vs: Vec<V> = ALL.into_iter().filter(picked).collect();
        let n_picked = vs.len();
        let vs: Vec<V> = vs
            .into_iter()
            .filter(|v| !v.needs_v2() || c.roots.v2.is_some())
            .collect();
        if vs.len() < n_picked {
            println!("  no writable cgroup v2 hierarchy: only the variants without groups run");
        }
        let mut m: Vec<Measured> = vs
            .iter()
            .map(|&v| Measured {
                v,
                lat: Vec::new(),
                rate: Vec::new(),
            })
            .collect();
        // Latency: each launch alone, the variants interleaved, in a new order each round (so
        // that no variant always follows the same one and inherits its clean-up).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut order: Vec<usize> = (0..m.len()).collect();
        for i in 0..warm + n {
            for k in (1..order.len()).rev() {
                // xorshift64: a fixed, reproducible shuffle.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(k, (seed % (k as u64 + 1)) as usize);
            }
            for &j in &order {
                let v = m[j].v;
                std::thread::sleep(SETTLE);
                let t0 = Instant::now();
                let l = launch(c, v, &format!("c3-{}-{i}", v.key()))?;
                let d = ms(t0.elapsed());
                finish(l)?;
                if i >= warm {
                    m[j].lat.push(d);
                }
            }
        }
        // Throughput: bursts, the variants in a rotating order.
        for r in 0..reps {
            for k in 0..m.len() {
                let j = (r + k) % m.len();
                let v = m[j].v;
                std::thread::sleep(Duration::from_millis(50));
                let t0 = Instant::now();
                let mut ls = Vec::with_capacity(burst);
                for i in 0..burst {
                    ls.push(launch(c, v, &format!("c3b-{}-{r}-{i}", v.key()))?);
                }
                for l in ls {
                    finish(l)?;
                }
                m[j].rate.push(burst as f64 / t0.elapsed().as_secs_f64());
            }
        }
        let base = m
            .iter()
            .find(|x| x.v == V::Bare)
            .map(|x| (x.lat.clone(), x.rate.clone()));
        let mut obj = serde_json::Map::new();
        for x in &m {
            let mut f = Figure::new(
                format!("latency_{}", x.v.key()),
                format!("launch -> exec'd: {}", x.v.what()),
                "ms",
            )
            .ours(x.lat.clone());
            let mut t = Figure::new(
                format!("throughput_{}", x.v.key()),
                format!("{burst} launches, groups removed: {}", x.v.what()),
                "launches/s",
            )
            .ours(x.rate.clone())
            .higher_is_better();
            if let Some((bl, br)) = &base {
                f = f.baseline(bl.clone(), "bare Command::spawn of /bin/true, interleaved");
                t = t.baseline(br.clone(), "bare Command::spawn bursts, same run");
            }
            rows.push(f.target(Target::Info));
            rows.push(t.target(Target::Info));
            obj.insert(
                x.v.key().into(),
                json!({
                    "what": x.v.what(),
                    "latency_ms": Stats::of(&x.lat).json(),
                    "latency_p99_ms": quantile(&x.lat, 0.99),
                    "launches_per_s": Stats::of(&x.rate).json(),
                    "burst": burst,
                }),
            );
        }
        diag["raw"] = Value::Object(obj);
        Ok(m)
    }

    // ---------------------------------------------------------------- through the supervisor

    fn spec(c: &Ctx, agent: &str) -> RunSpec {
        RunSpec {
            agent: agent.to_string(),
            trigger: "bench".into(),
            tier: SecurityTier::None,
            steps: vec![Step {
                program: c.program.clone(),
                argv: c.argv.clone(),
            }],
            cwd: c.work.clone(),
            env: c.env.clone(),
            limits: c.limits.clone(),
            enforce_limits: true,
            kill_grace: Duration::from_secs(2),
            image: None,
            network: false,
            sandbox: Default::default(),
            source: None,
        }
    }

    async fn wait_launched(rx: &mut broadcast::Receiver<Event>, id: u64) -> Res<Instant> {
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Err(_) => return Err(format!("run {id}: no Launched within 20 s")),
                Ok(Ok(Event::Launched { run_id, .. })) if run_id == id => return Ok(Instant::now()),
                Ok(Ok(Event::Exited { record })) if record.run_id == id => {
                    return Err(format!(
                        "run {id} ended before Launched: {:?}",
                        record.message
                    ))
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err("the event stream closed".into())
                }
            }
        }
    }

    /// `launch()` to `Launched` of `/bin/true`, one at a time, then bursts (first `launch()`
    /// to the last run ended); with the pool of `pool` launchers (0: none).
    async fn supervised(
        args: &Args,
        c: &Ctx,
        root: &Path,
        pool: usize,
    ) -> Res<(Vec<f64>, Vec<f64>, Vec<String>)> {
        let n = if args.quick { 30 } else { 200 };
        let burst = if args.quick { 100 } else { 500 };
        let reps = if args.quick { 1 } else { 3 };
        // Read once by `Supervisor::new`. The runtime's threads are idle here and nothing else
        // reads the environment meanwhile.
        std::env::set_var("SYMBIONT_LAUNCH_POOL", pool.to_string());
        let sup = Supervisor::new(SupervisorOptions {
            data_dir: root.join(format!("data-{pool}")),
            audit_log: root.join(format!("audit-{pool}.log")),
            tail_lines: 50,
            max_log_mb: 64,
            first_run_id: 1,
            event_buffer: 4096,
            refresh: Duration::from_secs(1),
            watchdog_interval: Duration::from_millis(100),
            warn_ratio: 0.8,
            critical_ratio: 0.95,
            own_all_children: true,
            use_cgroups: true,
            docker_host: None,
            microvm: Default::default(),
        })
        .map_err(|e| format!("cannot start a supervisor: {e}"))?;
        std::env::remove_var("SYMBIONT_LAUNCH_POOL");
        let mechanisms = sup.mechanisms();
        let mut rx = sup.subscribe();
        let mut lat = Vec::new();
        let result: Res<Vec<f64>> = async {
            for i in 0..5 + n {
                // The pool full again, then the same pause as the raw launches.
                common::pool_quiet(&sup, Duration::from_millis(300), SETTLE).await;
                let t0 = Instant::now();
                let id = sup
                    .launch(spec(c, &format!("bench-clone3-{pool}-{i}")))
                    .map_err(|e| e.to_string())?;
                let t1 = wait_launched(&mut rx, id).await?;
                if i >= 5 {
                    lat.push(ms(t1 - t0));
                }
                sup.wait(id).await;
                sup.forget(id);
            }
            let mut rates = Vec::new();
            for r in 0..reps {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let t0 = Instant::now();
                for i in 0..burst {
                    sup.launch(spec(c, &format!("bench-clone3-{pool}-b{r}-{i}")))
                        .map_err(|e| e.to_string())?;
                }
                let recs = sup.wait_all().await;
                rates.push(burst as f64 / t0.elapsed().as_secs_f64());
                let bad = recs.iter().filter(|r| !r.success()).count();
                if bad > 0 {
                    return Err(format!("{bad} runs of a burst did not succeed"));
                }
                for id in sup.run_ids() {
                    sup.forget(id);
                }
            }
            Ok(rates)
        }
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(30), sup.shutdown()).await;
        drop(sup);
        // Two reapers (each reaping every child) must never run at once.
        tokio::time::sleep(Duration::from_millis(400)).await;
        Ok((lat, result?, mechanisms))
    }

    // ---------------------------------------------------------------- main

    fn leftover_groups(c: &CgroupRoots) -> Vec<String> {
        c.bases()
            .iter()
            .flat_map(|b| std::fs::read_dir(b).into_iter().flatten().flatten())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path().display().to_string())
            .collect()
    }

    fn print_table(ms_rows: &[(String, Vec<f64>, Vec<f64>)]) {
        println!(
            "| {:<62} | {:>8} | {:>8} | {:>8} | {:>8} | {:>12} |",
            "variant", "median", "p90", "p99", "max", "launches/s"
        );
        println!(
            "|-{}-|-{}-|-{}-|-{}-|-{}-|-{}-|",
            "-".repeat(62),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(8),
            "-".repeat(12)
        );
        for (name, lat, rate) in ms_rows {
            let s = Stats::of(lat);
            println!(
                "| {:<62} | {:>8} | {:>8} | {:>8} | {:>8} | {:>12} |",
                name,
                num(s.median),
                num(s.p90),
                num(quantile(lat, 0.99)),
                num(s.max),
                format!(
                    "{} {}",
                    num(Stats::of(rate).median),
                    Stats::of(rate).spread()
                ),
            );
        }
    }

    pub fn main() {
        let args = Args::parse("clone3", &FIGURES);
        let facts = common::machine_facts();
        let root = common::scratch_dir("clone3");
        let _ = std::fs::remove_dir_all(&root);
        let work = root.join("work");
        if let Err(e) = std::fs::create_dir_all(&work) {
            args.fail(&format!("cannot create {}: {e}", work.display()));
        }
        println!("symbiont clone3 benchmark ({})", args.mode());
        println!(
            "machine: {} cores ({}), {} MiB, kernel {}, uid {}; load {}",
            facts["cores"],
            facts["cpu_model"].as_str().unwrap_or("?"),
            facts["memory_mib"],
            facts["kernel"].as_str().unwrap_or("?"),
            facts["uid"],
            facts["load_average"].as_str().unwrap_or("?"),
        );
        let program = PathBuf::from(TRUE);
        let argv = vec!["true".to_string()];
        let env = vec![
            (
                "PATH".to_string(),
                "/usr/local/bin:/usr/bin:/bin".to_string(),
            ),
            (MARK.to_string(), "bench-clone3".to_string()),
        ];
        let roots = CgroupRoots::detect("clone3-bench");
        for b in roots.bases() {
            println!("  cgroup base: {}", b.display());
        }
        let c = Ctx {
            exe: Exe::new(&program, &argv, &env),
            roots,
            program,
            argv,
            env,
            work,
            limits: Limits {
                memory_bytes: Some(256 << 20),
                max_processes: Some(64),
                ..Limits::default()
            },
        };
        let started = Instant::now();
        let mut rows = Vec::new();
        let mut diag = json!({});
        let mut table: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
        let mut errors = Vec::new();
        if FIGURES.iter().any(|f| *f != "supervisor" && args.wants(f)) {
            println!("raw launches of {TRUE} ...");
            match raw(&args, &c, &mut rows, &mut diag) {
                Ok(m) => {
                    for x in m {
                        table.push((format!("{} {}", x.v.key(), x.v.what()), x.lat, x.rate));
                    }
                }
                Err(e) => {
                    println!("  FAILED: {e}");
                    errors.push(format!("raw: {e}"));
                }
            }
        }
        // The raw variants reaped their own children; the supervisors below reap every child.
        let left_groups_raw = leftover_groups(&c.roots);
        c.roots.remove_bases();
        if args.wants("supervisor") {
            println!("through the Supervisor: pool on, then SYMBIONT_LAUNCH_POOL=0 ...");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| args.fail(&format!("runtime: {e}")));
            // The pool's default size (`SYMBIONT_LAUNCH_POOL` unset).
            let size = 4;
            let r = rt.block_on(async {
                let on = supervised(&args, &c, &root, size).await?;
                let off = supervised(&args, &c, &root, 0).await?;
                Ok::<_, String>((on, off))
            });
            match r {
                Ok(((lon, ron, mech), (loff, roff, _))) => {
                    diag["supervisor_mechanisms"] = json!(mech);
                    diag["supervisor"] = json!({
                        "pool_on": {"latency_ms": Stats::of(&lon).json(), "latency_p99_ms": quantile(&lon, 0.99), "launches_per_s": Stats::of(&ron).json()},
                        "pool_off": {"latency_ms": Stats::of(&loff).json(), "latency_p99_ms": quantile(&loff, 0.99), "launches_per_s": Stats::of(&roff).json()},
                    });
                    rows.push(
                        Figure::new(
                            "sup_latency_pool",
                            "(d) Supervisor launch() -> Launched, pool",
                            "ms",
                        )
                        .ours(lon.clone())
                        .baseline(
                            loff.clone(),
                            "the same with SYMBIONT_LAUNCH_POOL=0 (direct path)",
                        )
                        .target(Target::Info),
                    );
                    rows.push(
                        Figure::new(
                            "sup_throughput_pool",
                            "(d) Supervisor burst, launch() -> all ended, pool",
                            "launches/s",
                        )
                        .ours(ron.clone())
                        .baseline(roff.clone(), "the same with SYMBIONT_LAUNCH_POOL=0")
                        .higher_is_better()
                        .target(Target::Info),
                    );
                    table.push((
                        "sup_pool (d) Supervisor launch() -> Launched, pool of 4".into(),
                        lon,
                        ron,
                    ));
                    table.push((
                        "sup_nopool (d) Supervisor, SYMBIONT_LAUNCH_POOL=0 (direct path)".into(),
                        loff,
                        roff,
                    ));
                }
                Err(e) => {
                    println!("  FAILED: {e}");
                    errors.push(format!("supervisor: {e}"));
                }
            }
            drop(rt);
        }
        let elapsed = started.elapsed();
        std::thread::sleep(Duration::from_millis(300));
        let left = marked("bench-clone3", true);
        println!();
        println!(
            "latency: launch requested -> agent exec'd (ms); throughput: bursts, reaped and groups removed; load at end {}; took {:.1} s",
            read_trim("/proc/loadavg"),
            elapsed.as_secs_f64()
        );
        print_table(&table);
        println!(
            "leftover processes: {}; leftover groups after the raw variants: {}",
            left.len(),
            left_groups_raw.len()
        );
        for g in left_groups_raw.iter().take(10) {
            println!("  left: {g}");
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let out = json!({
            "bench": "clone3",
            "mode": args.mode(),
            "machine": facts,
            "figures": rows.iter().map(Figure::json).collect::<Vec<_>>(),
            "diagnostics": diag,
            "leftovers": {"processes": left.len(), "groups": left_groups_raw},
            "error": error,
            "elapsed_secs": elapsed.as_secs_f64(),
        });
        write_json(&args.json, &out);
        let _ = std::fs::remove_dir_all(&root);
        if let Some(e) = error {
            eprintln!("clone3 bench failed: {e}");
            std::process::exit(1);
        }
        if !left.is_empty() || !left_groups_raw.is_empty() {
            std::process::exit(1);
        }
    }
}
