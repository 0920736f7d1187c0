//! Benchmark of the native runner against SPEC section 6, each figure next to a baseline
//! measured in the same run:
//!
//! 1. launch latency with limits, `launch()` to the `Launched` event, against a bare
//!    `std::process::Command` spawn of the same program;
//! 2. 1000 agents launched (first `launch()` to the 1000th `Launched`), then shut down;
//! 3. killing a 100-process tree, command to the `Exited` event (every process reaped);
//! 4. timeout precision, how late a run ends past its deadline;
//! 5. watchdog precision, from an agent's memory passing its limit (seen by this bench polling
//!    its VmRSS every millisecond) to the `Exited` event, with no OS limit in the way
//!    (`use_cgroups: false`, `enforce_limits: false`), at a 1000 ms and a 100 ms refresh,
//!    against a bare polling loop at the same refresh. A repetition whose agent is killed
//!    between two of those looks (so that none saw it past the limit) has no crossing instant:
//!    it is listed under the figure's `not_measured` diagnostics and left out of the figure.
//! 11. sandbox launch: `/bin/true` launched to its `Exited` (and to `Launched`) as
//!     Permissive, Moderate and Strict through the launcher pool, Permissive and Strict forced
//!     onto the direct path, against a bare spawn + `wait()` and
//!     `bwrap --ro-bind / / --dev /dev --proc /proc --unshare-all --die-with-parent` of the
//!     same program, every way once per round in a random order; the target is Strict's
//!     median at most 0.2 ms over Permissive's. Then, with no supervisor alive, the parts
//!     alone (building the sandbox, the run's temp directory, a spawn with and without it).
//!
//! A figure that fails is reported (the JSON's `error`, exit status 1); the others still run
//! and their rows stand.
//!
//! `cargo bench --bench native [-- --quick] [--json PATH] [--only LIST] [--keep]`
//!
//! `--only` takes a comma-separated subset of
//! `launch,breakdown,many,tree,timeout,watchdog,check,sandbox` (for profiling, or one figure
//! alone). `--keep` leaves the scratch directory (run logs, audit log) in place.
//! A small hand-written timing loop, no criterion: the build stays lean.

mod common;

fn main() {
    #[cfg(target_os = "linux")]
    bench::main();
    #[cfg(not(target_os = "linux"))]
    eprintln!("the native runner benchmark measures Linux mechanisms; nothing to do here");
}

#[cfg(target_os = "linux")]
mod bench {
    use super::common::{
        self, marked, ms, num, num_median, own_status_kib, read_trim, write_json, Args, Figure,
        Res, Stats, Target, MARK,
    };

    use std::ffi::OsStr;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::mpsc as std_mpsc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};
    use symbiont::runner::native::{self, NativeLaunch};
    use symbiont::sampler::procfs;
    use symbiont::sandbox::cgroup::{CgroupRoots, RunCgroup};
    use symbiont::sandbox::rlimit::RlimitSet;
    use symbiont::supervisor::audit::AuditLog;
    use symbiont::supervisor::Limits;
    use symbiont::supervisor::{
        Actor, Confinement, Control, Event, Reason, RunId, RunIo, RunRecord, RunSpec, Scope, Sig,
        Step, Supervisor, SupervisorOptions,
    };
    use symbiont::SecurityTier;
    use tokio::sync::broadcast;

    const TREE_SCRIPT: &str = "for i in $(seq 99); do sleep 1000 & done; wait";
    const TREE_SIZE: usize = 100;
    const MANY: usize = 1000;
    const TIMEOUT: Duration = Duration::from_millis(300);
    /// A pause before each timed launch, so that the clean-up of the previous sample (process
    /// exit, cgroup removal in kernel workers) does not land in the next one.
    const SETTLE: Duration = Duration::from_millis(3);

    // ---------------------------------------------------------------- the table

    fn print_table(rows: &[Figure]) {
        let header = [
            "figure",
            "ours median",
            "spread p10..p90 [min..max]",
            "baseline",
            "ratio",
            "target",
            "result",
        ];
        let mut lines: Vec<[String; 7]> = vec![header.map(String::from)];
        for r in rows {
            let o = r.ours_stats();
            lines.push([
                r.name.clone(),
                format!("{} ms", num(o.median)),
                o.spread(),
                r.base_stats()
                    .map(|b| format!("{} ms", num(b.median)))
                    .unwrap_or_else(|| "-".into()),
                r.ratio()
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                r.target_text(),
                match r.pass() {
                    Some(true) => "PASS".into(),
                    Some(false) => "FAIL".into(),
                    None => "info".into(),
                },
            ]);
        }
        let mut w = [0usize; 7];
        for l in &lines {
            for (i, c) in l.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let fmt = |l: &[String; 7]| {
            let cells: Vec<String> = l
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<width$}", width = w[i]))
                .collect();
            format!("| {} |", cells.join(" | "))
        };
        println!("{}", fmt(&lines[0]));
        let sep: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
        println!("|-{}-|", sep.join("-|-"));
        for l in &lines[1..] {
            println!("{}", fmt(l));
        }
        println!();
        for r in rows {
            println!(
                "  {}: n = {}; baseline: {}",
                r.name,
                r.ours.len(),
                r.base_what
            );
            if let Some(n) = &r.note {
                println!("    note: {n}");
            }
        }
    }

    // ---------------------------------------------------------------- supervisor helpers

    struct Ctx {
        root: PathBuf,
        work: PathBuf,
        sleep: PathBuf,
        bash: PathBuf,
        /// The real python3 (not a version manager's shim), for the watchdog figure.
        python: Option<PathBuf>,
        quick: bool,
        mechanisms: Vec<String>,
    }

    fn std_limits() -> Limits {
        Limits {
            memory_bytes: Some(256 << 20),
            cpu_seconds: Some(60),
            cpu_cores: None,
            timeout: None,
            max_processes: Some(64),
            file_size_bytes: Some(1 << 30),
        }
    }

    fn spec(ctx: &Ctx, agent: &str, program: &Path, argv: &[&str], limits: Limits) -> RunSpec {
        RunSpec {
            agent: agent.to_string(),
            trigger: "bench".into(),
            tier: SecurityTier::None,
            steps: vec![Step {
                program: program.to_path_buf(),
                argv: argv.iter().map(|s| s.to_string()).collect(),
            }],
            cwd: ctx.work.clone(),
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                (MARK.into(), agent.to_string()),
            ],
            limits,
            enforce_limits: true,
            kill_grace: Duration::from_secs(2),
            image: None,
            network: false,
            sandbox: Default::default(),
            source: None,
        }
    }

    fn new_sup(ctx: &Ctx, refresh: Duration) -> Res<Supervisor> {
        new_sup_with(ctx, refresh, true)
    }

    fn new_sup_with(ctx: &Ctx, refresh: Duration, use_cgroups: bool) -> Res<Supervisor> {
        Supervisor::new(sup_options(ctx, refresh, use_cgroups))
            .map_err(|e| format!("cannot start a supervisor: {e}"))
    }

    fn sup_options(ctx: &Ctx, refresh: Duration, use_cgroups: bool) -> SupervisorOptions {
        SupervisorOptions {
            data_dir: ctx.root.join("data"),
            audit_log: ctx.root.join("audit.log"),
            tail_lines: 50,
            max_log_mb: 64,
            first_run_id: 1,
            event_buffer: 4096,
            refresh,
            watchdog_interval: Duration::from_millis(100),
            warn_ratio: 0.8,
            critical_ratio: 0.95,
            own_all_children: true,
            use_cgroups,
            docker_host: None,
            microvm: Default::default(),
        }
    }

    /// Stops every run, drops the supervisor and gives its reaper task time to end, so that
    /// two reapers (each reaping every child) never run at once.
    async fn retire(sup: Supervisor) {
        let _ = tokio::time::timeout(Duration::from_secs(30), sup.shutdown()).await;
        drop(sup);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }

    fn kill_ctl() -> Control {
        Control::Kill {
            sig: Sig::Kill,
            scope: Scope::Tree,
            by: Actor::Operator,
            reason: Reason::KilledByOperator,
        }
    }

    fn is_launched(e: &Event, id: RunId) -> bool {
        matches!(e, Event::Launched { run_id, .. } if *run_id == id)
    }

    /// Receives events until one matches; its arrival time. An `Exited` of the same run that
    /// does not match ends the wait with an error.
    async fn wait_for(
        rx: &mut broadcast::Receiver<Event>,
        id: RunId,
        what: &str,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Res<(Instant, Event)> {
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Err(_) => return Err(format!("run {id}: no {what} event within 20 s")),
                Ok(Ok(e)) => {
                    if pred(&e) {
                        return Ok((Instant::now(), e));
                    }
                    if let Event::Exited { record } = &e {
                        if record.run_id == id {
                            return Err(format!(
                                "run {id} ended while waiting for {what}: {} {:?}",
                                record.reason.as_str(),
                                record.message
                            ));
                        }
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err("the event stream closed".into())
                }
            }
        }
    }

    /// Receives events of run `id` until its `Exited`: (time of `Killing`, time of `Exited`, record).
    async fn until_exit(
        rx: &mut broadcast::Receiver<Event>,
        id: RunId,
    ) -> Res<(Option<Instant>, Instant, Box<RunRecord>)> {
        let mut killing = None;
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Err(_) => return Err(format!("run {id}: no Exited event within 20 s")),
                Ok(Ok(Event::Killing { run_id, .. })) if run_id == id => {
                    killing.get_or_insert(Instant::now());
                }
                Ok(Ok(Event::Exited { record })) if record.run_id == id => {
                    return Ok((killing, Instant::now(), record))
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err("the event stream closed".into())
                }
            }
        }
    }

    // ---------------------------------------------------------------- /proc helpers

    /// Unreaped children of this process, as (pid, name).
    fn zombie_children() -> Vec<(i32, String)> {
        let me = std::process::id() as i32;
        procfs::all_processes()
            .into_iter()
            .filter(|p| p.ppid == me && p.state == 'Z')
            .map(|p| (p.pid, p.name))
            .collect()
    }

    fn live_in_group(pgid: i32) -> usize {
        procfs::all_processes()
            .iter()
            .filter(|p| p.pgid == pgid && p.state != 'Z')
            .count()
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// A bare `/bin/sleep SECS` child (a baseline, or a process to move between groups).
    fn bare_sleep(secs: &str) -> Res<std::process::Child> {
        Command::new("/bin/sleep")
            .arg(secs)
            .spawn()
            .map_err(|e| format!("baseline spawn: {e}"))
    }

    /// A bare `PROGRAM -c SCRIPT` child in a process group of its own, `SYMBIONT_AGENT=mark`,
    /// no input or output (a baseline: bash or python3).
    fn bare_script(program: &Path, script: &str, mark: &str) -> Res<std::process::Child> {
        Command::new(program)
            .args(["-c", script])
            .process_group(0)
            .env(MARK, mark)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("baseline {}: {e}", program.display()))
    }

    /// Kills a baseline child and reaps it (or lets a supervisor's reaper have it: then `wait`
    /// fails with ECHILD, which is fine).
    fn kill_child(mut c: std::process::Child) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = c.wait();
    }

    /// A thread that polls (every 200 us) until the process group `pgid` is gone (every
    /// member reaped: `kill(-pgid, 0)` fails with ESRCH), measuring from the instant it is sent.
    fn group_gone_watcher(pgid: i32) -> (std_mpsc::Sender<Instant>, std_mpsc::Receiver<f64>) {
        let (start_tx, start_rx) = std_mpsc::channel::<Instant>();
        let (done_tx, done_rx) = std_mpsc::channel::<f64>();
        std::thread::spawn(move || {
            let Ok(t0) = start_rx.recv() else { return };
            let until = t0 + Duration::from_secs(10);
            loop {
                if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_err() {
                    let _ = done_tx.send(ms(t0.elapsed()));
                    return;
                }
                if Instant::now() > until {
                    let _ = done_tx.send(f64::NAN);
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        (start_tx, done_rx)
    }

    // ---------------------------------------------------------------- 1. launch latency

    async fn quiet(sup: &Supervisor) {
        common::pool_quiet(sup, Duration::from_millis(200), SETTLE).await;
    }

    async fn fig_launch(ctx: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<()> {
        let n = if ctx.quick { 30 } else { 200 };
        let warm = 5;
        let sup = new_sup(ctx, Duration::from_secs(1))?;
        let mut rx = sup.subscribe();
        let (mut ours, mut base, mut call, mut exit) = (vec![], vec![], vec![], vec![]);
        for i in 0..warm + n {
            let base_first = i % 2 == 0;
            let baseline = || -> Res<f64> {
                let t = Instant::now();
                let c = bare_sleep("5")?;
                let d = ms(t.elapsed());
                kill_child(c);
                Ok(d)
            };
            let b = if base_first {
                quiet(&sup).await;
                Some(baseline()?)
            } else {
                None
            };

            let agent = format!("bench-launch-{i}");
            quiet(&sup).await;
            let t0 = Instant::now();
            let id = sup
                .launch(spec(ctx, &agent, &ctx.sleep, &["sleep", "5"], std_limits()))
                .map_err(|e| e.to_string())?;
            let returned = t0.elapsed();
            let (t1, _) = wait_for(&mut rx, id, "Launched", |e| is_launched(e, id)).await?;
            let o = ms(t1 - t0);
            let tk = Instant::now();
            sup.control(id, kill_ctl());
            let (_, te, rec) = until_exit(&mut rx, id).await?;
            if rec.reason != Reason::KilledByOperator {
                return Err(format!("launch run {id} ended as {}", rec.reason.as_str()));
            }

            let b = match b {
                Some(b) => b,
                None => {
                    quiet(&sup).await;
                    baseline()?
                }
            };
            if i >= warm {
                ours.push(o);
                base.push(b);
                call.push(ms(returned));
                exit.push(ms(te - tk));
            }
        }
        retire(sup).await;
        diag["launch"] = json!({
            "launch_call_returns_ms": Stats::of(&call).json(),
            "kill_sigkill_to_exited_single_sleep_ms": Stats::of(&exit).json(),
            "limits": "memory 256 MiB, pids 64, cpu 60 s, file size 1 GiB; enforce_limits = true",
        });
        println!(
            "  launch() call itself returns after {} ms (median); KILL of that one sleep to Exited {} ms",
            num_median(&call),
            num_median(&exit)
        );
        rows.push(
            Figure::new("launch_latency", "1. launch with limits -> Launched", "ms")
                .ours(ours)
                .baseline(
                    base,
                    "Command::new(\"/bin/sleep\").arg(\"5\").spawn(), interleaved",
                )
                .target(Target::Ratio(1.5)),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- launch breakdown

    /// The parts of a launch, each timed on its own with the crate's own pieces (no
    /// supervisor alive: this loop reaps its own children).
    async fn breakdown(ctx: &Ctx, diag: &mut Value) -> Res<()> {
        let n = if ctx.quick { 30 } else { 200 };
        let roots = CgroupRoots::detect("bench");
        let audit = AuditLog::open(&ctx.root.join("breakdown-audit.log"))
            .map_err(|e| format!("audit log: {e}"))?;
        let env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            (MARK.into(), "bench-breakdown".into()),
        ];
        let argv: Vec<String> = vec!["sleep".into(), "5".into()];
        let mut rl = RlimitSet::default();
        rl.cpu_seconds(60);
        rl.file_size(1 << 30);
        let names = [
            "a_bare_command_spawn",
            "b_runner_shaped_command_no_pre_exec",
            "c_runner_shaped_command_pre_exec_setpgid",
            "d_native_spawn_rlimits_no_cgroup",
            "e_cgroup_create_mkdirs_limits_opens",
            "f_native_spawn_full_cgroup_join_rlimits",
            "g_cgroup_destroy_after_exit",
            "h_run_dir_and_two_log_files",
            "i_audit_record_launch",
            "j_tokio_spawn_and_broadcast_hop",
        ];
        let mut t: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let runner_cmd = || {
            let mut c = Command::new(&ctx.sleep);
            c.arg0("sleep")
                .arg("5")
                .current_dir(&ctx.work)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            c
        };
        // One `native::spawn`, timed, then its child killed and reaped.
        let timed_spawn = |l: &NativeLaunch| -> Res<f64> {
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            let st = native::spawn(l).map_err(|e| e.to_string())?;
            let d = ms(t0.elapsed());
            let pid = nix::unistd::Pid::from_raw(st.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
            Ok(d)
        };
        let (etx, _) = broadcast::channel::<u64>(16);
        for i in 0..n + 5 {
            let mut s = [0f64; 10];
            // a
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            let c = bare_sleep("5")?;
            s[0] = ms(t0.elapsed());
            kill_child(c);
            // b
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            let c = runner_cmd().spawn().map_err(|e| e.to_string())?;
            s[1] = ms(t0.elapsed());
            kill_child(c);
            // c
            let mut cmd = runner_cmd();
            // SAFETY: the hook runs in the forked child before exec and makes one
            // async-signal-safe call.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setpgid(0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            let c = cmd.spawn().map_err(|e| e.to_string())?;
            s[2] = ms(t0.elapsed());
            kill_child(c);
            // d
            let l = NativeLaunch {
                program: &ctx.sleep,
                argv: &argv,
                cwd: &ctx.work,
                env: &env,
                cgroup_fds: Vec::new(),
                rlimits: rl,
                affinity: None,
                subreaper: false,
                stdin: None,
                sandbox: None,
            };
            s[3] = timed_spawn(&l)?;
            // e, f, g
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            let mut cg = RunCgroup::create(&roots, &format!("run-b{i}"), &std_limits(), true)
                .map_err(|e| format!("cgroup: {e}"))?;
            s[4] = ms(t0.elapsed());
            let join = cg.open_join().map_err(|e| format!("cgroup join: {e}"))?;
            let l = NativeLaunch {
                cgroup_fds: join.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect(),
                ..l
            };
            s[5] = timed_spawn(&l)?;
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            cg.destroy();
            s[6] = ms(t0.elapsed());
            drop(cg);
            // h
            let dir = ctx.root.join("breakdown").join(format!("{i}-bench-x"));
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            for f in ["stdout.log", "stderr.log"] {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(f))
                    .map_err(|e| e.to_string())?;
            }
            s[7] = ms(t0.elapsed());
            // i
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            audit.record(
                "launch",
                json!({
                    "run_id": i, "agent": "bench-breakdown", "trigger": "bench", "tier": "None",
                    "argv": [&argv], "program": [&ctx.sleep], "cwd": &ctx.work, "source": null,
                    "env_names": ["PATH", MARK],
                    "limits": {"memory_bytes": 256u64 << 20, "cpu_seconds": 60, "cpu_cores": null,
                        "timeout_secs": null, "max_processes": 64, "file_size_bytes": 1u64 << 30,
                        "enforced_by_os": true, "cgroup_memory": true, "cgroup_pids": true},
                }),
            );
            s[8] = ms(t0.elapsed());
            // j
            let mut erx = etx.subscribe();
            let tx = etx.clone();
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            tokio::spawn(async move {
                let _ = tx.send(1);
            });
            let _ = erx.recv().await;
            s[9] = ms(t0.elapsed());
            if i >= 5 {
                for (k, v) in s.iter().enumerate() {
                    t[k].push(*v);
                }
            }
        }
        // Joining a cgroup (a write to cgroup.procs) takes the kernel's global
        // cgroup_threadgroup_rwsem for writing; after a quiet spell that waits for an RCU
        // grace period. Timed here from the parent, moving a bare child into a v2 group.
        let mut joins = (Vec::new(), Vec::new());
        if let Some(v2) = &roots.v2 {
            let g = v2.join("join-test");
            let _ = std::fs::create_dir(&g);
            for i in 0..(n / 2).max(10) {
                for (k, pause) in [(0, 0u64), (1, 50)] {
                    let c = bare_sleep("5")?;
                    if k == 0 {
                        // Back to back: another join just before.
                        let _ = std::fs::write(g.join("cgroup.procs"), c.id().to_string());
                    }
                    std::thread::sleep(Duration::from_millis(pause));
                    let c2 = bare_sleep("5")?;
                    if k == 0 {
                        let _ = std::fs::write(g.join("cgroup.procs"), c.id().to_string());
                    }
                    let t0 = Instant::now();
                    let r = std::fs::write(g.join("cgroup.procs"), c2.id().to_string());
                    let d = ms(t0.elapsed());
                    if r.is_ok() && i > 0 {
                        if k == 0 {
                            joins.0.push(d);
                        } else {
                            joins.1.push(d);
                        }
                    }
                    kill_child(c);
                    kill_child(c2);
                }
            }
            let _ = std::fs::remove_dir(&g);
        }
        roots.remove_bases();
        let mut obj = serde_json::Map::new();
        println!("  launch breakdown (each part timed alone, median / p90 of {n}):");
        for (k, name) in names.iter().enumerate() {
            let st = Stats::of(&t[k]);
            println!(
                "    {name:<44} {:>8} ms  p90 {:>8} ms",
                num(st.median),
                num(st.p90)
            );
            obj.insert(name.to_string(), st.json());
        }
        obj.insert(
            "cgroup_hierarchies".into(),
            json!(roots
                .bases()
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()),
        );
        for (name, v) in [
            ("k_cgroup_join_write_back_to_back", &joins.0),
            ("l_cgroup_join_write_after_50ms_quiet", &joins.1),
        ] {
            let st = Stats::of(v);
            println!(
                "    {name:<44} {:>8} ms  p90 {:>8} ms",
                num(st.median),
                num(st.p90)
            );
            obj.insert(name.to_string(), st.json());
        }
        diag["launch_breakdown_ms"] = Value::Object(obj);
        Ok(())
    }

    // ---------------------------------------------------------------- 2. 1000 agents

    async fn fig_many(ctx: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<()> {
        let reps = if ctx.quick { 1 } else { 3 };
        let (mut ours, mut ours_down, mut base, mut base_down) = (vec![], vec![], vec![], vec![]);
        let (mut per_run, mut loop_ms, mut fds) = (vec![], vec![], vec![]);
        let (mut rss, mut pte, mut gap_first, mut gap_last) = (vec![], vec![], vec![], vec![]);
        let (mut vmas, mut fs_ms) = (vec![], vec![]);
        for r in 0..reps {
            // Baseline: 1000 bare spawns, then SIGKILL and reap all (no supervisor alive).
            let t0 = Instant::now();
            let mut kids = Vec::with_capacity(MANY);
            for _ in 0..MANY {
                kids.push(bare_sleep("1000")?);
            }
            base.push(ms(t0.elapsed()));
            let t0 = Instant::now();
            for k in &kids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(k.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            for k in &mut kids {
                let _ = k.wait();
            }
            base_down.push(ms(t0.elapsed()));
            drop(kids);

            // What the data directory's filesystem costs alone: the inodes of 1000 runs (a
            // directory and two log files each), created where the supervisor makes them and
            // kept until the bench ends (deleting them would slow the next rep's allocations).
            let fs_dir = ctx.root.join(format!("fs-{r}"));
            let t0 = Instant::now();
            for i in 0..MANY {
                let d = fs_dir.join(i.to_string());
                std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                for f in ["stdout.log", "stderr.log"] {
                    std::fs::File::create(d.join(f)).map_err(|e| format!("{f}: {e}"))?;
                }
            }
            fs_ms.push(ms(t0.elapsed()));

            // Ours.
            let rss_before = own_status_kib("VmRSS") / 1024.0;
            let sup = new_sup(ctx, Duration::from_secs(1))?;
            let mut rx = sup.subscribe();
            let (wtx, wrx) = std_mpsc::channel();
            std::thread::spawn(move || {
                // Timestamps every Launched as it is sent, off the launching thread.
                let mut seen = Vec::with_capacity(MANY);
                let mut failed = Vec::new();
                while seen.len() + failed.len() < MANY {
                    match rx.blocking_recv() {
                        Ok(Event::Launched { run_id, .. }) => seen.push((run_id, Instant::now())),
                        Ok(Event::Exited { record }) if record.reason == Reason::FailedToStart => {
                            failed.push(format!("{:?}", record.message))
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
                let _ = wtx.send((seen, failed));
            });
            let mut calls = Vec::with_capacity(MANY);
            let t0 = Instant::now();
            for i in 0..MANY {
                let agent = format!("bench-many-{r}-{i}");
                let tc = Instant::now();
                let id = sup
                    .launch(spec(
                        ctx,
                        &agent,
                        &ctx.sleep,
                        &["sleep", "1000"],
                        std_limits(),
                    ))
                    .map_err(|e| e.to_string())?;
                calls.push((id, tc));
            }
            loop_ms.push(ms(t0.elapsed()));
            let (seen, failed) = wrx
                .recv_timeout(Duration::from_secs(60))
                .map_err(|_| "1000 agents: not all launched within 60 s".to_string())?;
            if !failed.is_empty() {
                return Err(format!(
                    "{} of 1000 agents failed to start, first: {}",
                    failed.len(),
                    failed[0]
                ));
            }
            let last = seen.iter().map(|(_, t)| *t).max().unwrap_or(t0);
            ours.push(ms(last - t0));
            let called: std::collections::HashMap<RunId, Instant> = calls.into_iter().collect();
            per_run.extend(
                seen.iter()
                    .filter_map(|(id, t)| called.get(id).map(|c| ms(*t - *c))),
            );
            fds.push(open_fds() as f64);
            rss.push(own_status_kib("VmRSS") / 1024.0);
            pte.push(own_status_kib("VmPTE") / 1024.0);
            vmas.push(
                std::fs::read_to_string("/proc/self/maps")
                    .map(|m| m.lines().count())
                    .unwrap_or(0) as f64,
            );
            // Launch rate at the start and at the end: time per launch over the first and
            // the last 100 Launched events.
            let mut ts: Vec<Instant> = seen.iter().map(|(_, t)| *t).collect();
            ts.sort();
            if ts.len() >= 200 {
                gap_first.push(ms(ts[100] - ts[0]) / 100.0);
                gap_last.push(ms(ts[ts.len() - 1] - ts[ts.len() - 101]) / 100.0);
            }
            let alive = marked(&format!("bench-many-{r}-"), true).len();
            if alive != MANY {
                println!("  warning: {alive} of {MANY} agents found alive in /proc after launch");
            }

            let t0 = Instant::now();
            let recs = tokio::time::timeout(Duration::from_secs(60), sup.shutdown())
                .await
                .map_err(|_| "shutdown of 1000 agents took over 60 s".to_string())?;
            ours_down.push(ms(t0.elapsed()));
            let not_killed = recs
                .iter()
                .filter(|r| r.reason != Reason::KilledByOperator)
                .count();
            if recs.len() != MANY || not_killed > 0 {
                println!(
                    "  warning: shutdown returned {} records, {not_killed} not killed_by_operator",
                    recs.len()
                );
            }
            drop(sup);
            tokio::time::sleep(Duration::from_millis(400)).await;
            println!(
                "  rep {r}: 1000th Launched at {} ms (launch() loop {} ms); shutdown {} ms; baseline spawn {} ms, kill+reap {} ms; supervisor RSS {} MiB before, {} MiB with 1000 running",
                num(*ours.last().unwrap_or(&0.0)),
                num(*loop_ms.last().unwrap_or(&0.0)),
                num(*ours_down.last().unwrap_or(&0.0)),
                num(*base.last().unwrap_or(&0.0)),
                num(*base_down.last().unwrap_or(&0.0)),
                num(rss_before),
                num(*rss.last().unwrap_or(&0.0)),
            );
        }
        diag["many"] = json!({
            "launch_loop_ms": Stats::of(&loop_ms).json(),
            "per_run_launch_to_launched_ms": Stats::of(&per_run).json(),
            "open_fds_with_1000_running": Stats::of(&fds).json(),
            "supervisor_rss_mib_with_1000_running": Stats::of(&rss).json(),
            "supervisor_page_tables_mib_with_1000_running": Stats::of(&pte).json(),
            "supervisor_memory_mappings_with_1000_running": Stats::of(&vmas).json(),
            "ms_per_launch_first_100": Stats::of(&gap_first).json(),
            "ms_per_launch_last_100": Stats::of(&gap_last).json(),
            "data_dir_fs_1000_dirs_2000_files_ms": Stats::of(&fs_ms).json(),
        });
        println!(
            "  with 1000 running: {} open fds, RSS {} MiB, page tables {} MiB, {} mappings; {} ms per launch over the first 100, {} ms over the last 100",
            num_median(&fds),
            num_median(&rss),
            num_median(&pte),
            num_median(&vmas),
            num_median(&gap_first),
            num_median(&gap_last)
        );
        println!(
            "  the data directory's filesystem alone: 1000 directories and 2000 log files made in {} ms (median), as a launch of 1000 makes them",
            num_median(&fs_ms)
        );
        rows.push(
            Figure::new(
                "launch_1000",
                "2. 1000 agents: 1st launch -> 1000th Launched",
                "ms",
            )
            .ours(ours)
            .baseline(
                base,
                "1000 serial Command::new(\"/bin/sleep\").arg(\"1000\").spawn()",
            )
            .target(Target::Median(1000.0)),
        );
        rows.push(
            Figure::new("shutdown_1000", "2b. shutdown() of those 1000", "ms")
                .ours(ours_down)
                .baseline(base_down, "SIGKILL to 1000 bare children, then wait() each")
                .target(Target::Info),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- 3. kill a 100-process tree

    async fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Res<()> {
        let until = Instant::now() + Duration::from_secs(10);
        while !f() {
            if Instant::now() > until {
                return Err(format!("timed out waiting for {what}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn fig_tree(ctx: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<()> {
        let reps = if ctx.quick { 3 } else { 10 };
        // Baseline first, with no supervisor alive (this loop reaps the orphans itself; the
        // bench process is a child subreaper, so they come back to it).
        let mut base = vec![];
        for r in 0..reps {
            let agent = format!("bench-basetree-{r}");
            let mut child = bare_script(&ctx.bash, TREE_SCRIPT, &agent)?;
            let pg = child.id() as i32;
            wait_until("the baseline tree", || live_in_group(pg) == TREE_SIZE).await?;
            // The same watcher thread as for ours, so both sides share its CPU cost.
            let (start, done) = group_gone_watcher(pg);
            let t0 = Instant::now();
            let _ = start.send(t0);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-pg),
                nix::sys::signal::Signal::SIGKILL,
            );
            loop {
                if nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pg), None).is_err() {
                    break;
                }
                if nix::sys::wait::waitpid(None, None).is_err() {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            base.push(ms(t0.elapsed()));
            let _ = done.recv_timeout(Duration::from_secs(11));
            let _ = child.try_wait();
        }

        let sup = new_sup(ctx, Duration::from_millis(20))?;
        let mut rx = sup.subscribe();
        let (mut ours, mut gone, mut killing, mut left) = (vec![], vec![], vec![], 0usize);
        for r in 0..reps {
            let agent = format!("bench-tree-{r}");
            let limits = Limits {
                memory_bytes: Some(512 << 20),
                max_processes: Some(256),
                ..std_limits()
            };
            let id = sup
                .launch(spec(
                    ctx,
                    &agent,
                    &ctx.bash,
                    &["bash", "-c", TREE_SCRIPT],
                    limits,
                ))
                .map_err(|e| e.to_string())?;
            wait_for(&mut rx, id, "Launched", |e| is_launched(e, id)).await?;
            wait_until("the agent's tree of 100 (status.processes)", || {
                sup.status(id)
                    .is_some_and(|s| s.processes == TREE_SIZE as u64)
            })
            .await?;
            wait_until("100 processes in /proc", || {
                marked(&agent, false).len() == TREE_SIZE
            })
            .await?;
            let pgid = sup.status(id).and_then(|s| s.pid).unwrap_or(0);
            let (start, done) = group_gone_watcher(pgid);
            let t0 = Instant::now();
            let _ = start.send(t0);
            sup.control(id, kill_ctl());
            let (tk, te, rec) = until_exit(&mut rx, id).await?;
            ours.push(ms(te - t0));
            if let Some(tk) = tk {
                killing.push(ms(tk - t0));
            }
            gone.push(
                done.recv_timeout(Duration::from_secs(11))
                    .unwrap_or(f64::NAN),
            );
            if rec.reason != Reason::KilledByOperator || rec.processes < TREE_SIZE as u64 {
                println!(
                    "  warning: tree run {id} ended as {} with peak {} processes",
                    rec.reason.as_str(),
                    rec.processes
                );
            }
            left += marked(&agent, false).len();
        }
        retire(sup).await;
        // Whether Exited came only after the watcher saw the whole group reaped (within the
        // watcher's 200 us polling).
        let reaped_first = ours
            .iter()
            .zip(&gone)
            .filter(|(e, g)| **g <= **e + 0.2)
            .count();
        let g = Stats::of(&gone);
        println!(
            "  tree: process group fully reaped {} ms after the command (median), Killing event at {} ms; group reaped before Exited in {reaped_first} of {reps}; {} processes of the trees left",
            num(g.median),
            num_median(&killing),
            left
        );
        diag["tree"] = json!({
            "command_to_group_reaped_ms": g.json(),
            "command_to_killing_event_ms": Stats::of(&killing).json(),
            "left_alive_after_exited": left,
            "reps_where_group_was_reaped_before_exited": reaped_first,
            "refresh_ms": 20,
        });
        let base_what =
            "bash tree in its own process group: killpg(SIGKILL), waitpid until the group is gone";
        rows.push(
            Figure::new("kill_tree_100", "3. kill 100-process tree -> Exited", "ms")
                .ours(ours)
                .baseline(base, base_what)
                .target(Target::Median(10.0)),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- 4. timeout precision

    // ---------------------------------------------------------------- 10. loading

    /// `symbiont check` of one agent file of 100k agents, against ten times the same of 10k:
    /// loading is linear when the two match; the target is the absolute 2 s.
    fn fig_check(ctx: &Ctx, rows: &mut Vec<Figure>) -> Res<()> {
        let file = |n: usize| -> Res<PathBuf> {
            let mut text = String::with_capacity(n * 130);
            for i in 0..n {
                text.push_str(&format!(
                    "agent A{i} {{\n  security {{ tier: None }}\n  limits {{ max_memory_mb: 512 timeout: 30s }}\n  on trigger \"t\" {{ execute_native(\"sh -c true\") }}\n}}\n"
                ));
            }
            let p = ctx.root.join(format!("agents-{n}.dsl"));
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        let (small, large) = (file(10_000)?, file(100_000)?);
        let check = |p: &Path| -> Res<f64> {
            let t0 = Instant::now();
            let o = Command::new(env!("CARGO_BIN_EXE_symbiont"))
                .args(["check", "--native"])
                .arg(p)
                .current_dir(&ctx.work)
                .env("SYMBIONT_DATA_DIR", ctx.root.join("check-data"))
                .output()
                .map_err(|e| format!("symbiont check: {e}"))?;
            let took = ms(t0.elapsed());
            if !o.status.success() {
                return Err(format!(
                    "symbiont check failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Ok(took)
        };
        let reps = if ctx.quick { 1 } else { 3 };
        let (mut ours, mut base) = (vec![], vec![]);
        for _ in 0..reps {
            base.push(10.0 * check(&small)?);
            ours.push(check(&large)?);
        }
        rows.push(
            Figure::new("check_100k", "10. `symbiont check` of 100k agents", "ms")
                .ours(ours)
                .baseline(base, "10 x `symbiont check` of 10k agents (linear loading)")
                .target(Target::Median(2000.0)),
        );
        Ok(())
    }

    async fn fig_timeout(ctx: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<()> {
        let reps = if ctx.quick { 3 } else { 10 };
        let mut base = vec![];
        for _ in 0..reps {
            let t0 = Instant::now();
            let mut c = bare_sleep("10")?;
            tokio::time::sleep_until((t0 + TIMEOUT).into()).await;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
            base.push(ms(t0.elapsed()) - ms(TIMEOUT));
        }

        let sup = new_sup(ctx, Duration::from_secs(1))?;
        let mut rx = sup.subscribe();
        let (mut ours, mut killing, mut exited) = (vec![], vec![], vec![]);
        for r in 0..reps {
            let agent = format!("bench-timeout-{r}");
            let limits = Limits {
                timeout: Some(TIMEOUT),
                ..std_limits()
            };
            let t0 = Instant::now();
            let id = sup
                .launch(spec(ctx, &agent, &ctx.sleep, &["sleep", "10"], limits))
                .map_err(|e| e.to_string())?;
            let (tk, te, rec) = until_exit(&mut rx, id).await?;
            if rec.reason != Reason::Timeout {
                return Err(format!("timeout run ended as {}", rec.reason.as_str()));
            }
            ours.push(rec.duration_secs * 1e3 - ms(TIMEOUT));
            if let Some(tk) = tk {
                killing.push(ms(tk - t0) - ms(TIMEOUT));
            }
            exited.push(ms(te - t0) - ms(TIMEOUT));
        }
        retire(sup).await;
        println!(
            "  timeout: Killing event {} ms and Exited event {} ms past launch() + 300 ms (medians)",
            num_median(&killing),
            num_median(&exited)
        );
        diag["timeout"] = json!({
            "killing_event_past_launch_call_plus_timeout_ms": Stats::of(&killing).json(),
            "exited_event_past_launch_call_plus_timeout_ms": Stats::of(&exited).json(),
        });
        rows.push(
            Figure::new(
                "timeout_precision",
                "4. timeout 300 ms: record end past deadline",
                "ms",
            )
            .ours(ours)
            .baseline(
                base,
                "bare spawn, tokio sleep_until(+300 ms), SIGTERM, wait()",
            )
            .target(Target::Median(50.0)),
        );
        Ok(())
    }

    // ---------------------------------------------------------------- 5. watchdog precision

    /// The memory limit of the watchdog figure.
    const WATCH_LIMIT: u64 = 64 << 20;
    /// Grows by 2 MiB every 10 ms (every page written), up to 768 MiB, then idles.
    const GROW_SCRIPT: &str = "import time\nb = []\nwhile len(b) < 384:\n    b.append(b'\\x01' * (2 << 20))\n    time.sleep(0.01)\ntime.sleep(60)\n";

    /// The interpreter that `python3` on PATH really runs (a pyenv shim is a bash script).
    fn real_python() -> Option<PathBuf> {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        p.canonicalize().ok().filter(|p| p.is_file())
    }

    /// What the bench saw of an agent's resident size against the limit.
    #[derive(Default)]
    struct Crossing {
        /// The first instant its VmRSS was seen above the limit.
        at: Option<Instant>,
        /// The last look that found it at or under the limit: when, and its VmRSS in bytes.
        last_under: Option<(Instant, u64)>,
        /// The first look, after one that found a VmRSS, that found none: the process had
        /// ended (a zombie, or reaped).
        gone: Option<Instant>,
        /// Looks, and the longest time between two (the polling thread runs late when the
        /// machine is busy).
        looks: u64,
        longest_gap: Duration,
    }

    impl Crossing {
        /// Milliseconds from the crossing to `end`. When the agent was gone before a look saw it
        /// past the limit (it was killed between two looks: the faster the kill, the likelier),
        /// there is no crossing instant: what is known of that repetition instead, to report
        /// it. `kill` is when the killer acted (the `Killing` event; the bare loop's SIGKILL).
        fn to(
            &self,
            end: Instant,
            kill: Option<Instant>,
            side: &str,
            run: Value,
        ) -> Result<f64, Value> {
            if let Some(tc) = self.at {
                return Ok(ms(end.saturating_duration_since(tc)));
            }
            // Signed milliseconds from `a` to `b`.
            let span = |a: Instant, b: Instant| {
                if b >= a {
                    ms(b - a)
                } else {
                    -ms(a - b)
                }
            };
            let under = self.last_under;
            Err(json!({
                "side": side,
                "run": run,
                "looks": self.looks,
                "longest_gap_between_looks_ms": ms(self.longest_gap),
                "last_vmrss_under_limit_mib": under.map(|(_, b)| b as f64 / 1048576.0),
                // Positive: that look came before the kill, and the crossing between the two.
                "last_look_under_limit_to_kill_ms": under.zip(kill).map(|((t, _), k)| span(t, k)),
                "next_look_found_it_gone_ms_later": under.zip(self.gone).map(|((t, _), g)| span(t, g)),
                // The latency was at most this: the crossing came after that last look.
                "last_look_under_limit_to_end_ms": under.map(|(t, _)| span(t, end)),
            }))
        }
    }

    /// A thread polling the VmRSS of `pid` every millisecond until it is seen above `limit`,
    /// the process is gone, or 30 s have passed.
    fn crossing_watcher(pid: i32, limit: u64) -> std_mpsc::Receiver<Crossing> {
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(30);
            let mut c = Crossing::default();
            let mut prev: Option<Instant> = None;
            loop {
                let rss = common::status_kib(pid as u32, "VmRSS").map(|kib| kib * 1024);
                let now = Instant::now();
                c.looks += 1;
                if let Some(p) = prev {
                    c.longest_gap = c.longest_gap.max(now - p);
                }
                prev = Some(now);
                match rss {
                    Some(b) if b > limit => {
                        c.at = Some(now);
                        break;
                    }
                    Some(b) if now < until => {
                        c.last_under = Some((now, b));
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    // No VmRSS line: not yet (the process is still being set up), or no more
                    // (it has ended and is a zombie). Look again while it exists.
                    None if now < until
                        && std::path::Path::new(&format!("/proc/{pid}")).exists() =>
                    {
                        if c.last_under.is_some() && c.gone.is_none() {
                            c.gone = Some(now);
                        }
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    _ => {
                        if c.last_under.is_some() && c.gone.is_none() && rss.is_none() {
                            c.gone = Some(now);
                        }
                        break;
                    }
                }
            }
            let _ = tx.send(c);
        });
        rx
    }

    /// A pseudo-random part of `max` (so that launches fall at every phase of the refresh).
    fn jitter(seed: &mut u64, max: Duration) -> Duration {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        max.mul_f64((*seed >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// The baseline: the same program as a bare child, watched by a plain loop at the same
    /// refresh (first look after `phase`): read /proc/PID/stat, SIGKILL once the resident size
    /// is past the limit, wait(). Milliseconds from the crossing to wait() returning (or, see
    /// `Crossing::to`, what is known of a repetition whose crossing was not seen).
    fn bare_watchdog(
        python: &Path,
        refresh: Duration,
        phase: Duration,
        rep: usize,
    ) -> Res<Result<f64, Value>> {
        let mut child = bare_script(python, GROW_SCRIPT, "bench-baseline")?;
        let pid = child.id() as i32;
        let crossing = crossing_watcher(pid, WATCH_LIMIT);
        let until = Instant::now() + Duration::from_secs(20);
        let mut next = Instant::now() + phase;
        loop {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += refresh;
            let rss = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| procfs::parse_stat(&t))
                .map(|s| s.rss_bytes)
                .unwrap_or(0);
            if rss > WATCH_LIMIT || Instant::now() > until {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                break;
            }
        }
        let tk = Instant::now();
        let st = child.wait();
        let te = Instant::now();
        let c = crossing
            .recv_timeout(Duration::from_secs(31))
            .unwrap_or_default();
        let ended = st.map_or_else(|e| e.to_string(), |s| s.to_string());
        Ok(c.to(
            te,
            Some(tk),
            "baseline",
            json!({"rep": rep, "ended": ended}),
        ))
    }

    async fn fig_watchdog(ctx: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<()> {
        let Some(python) = ctx.python.clone() else {
            println!("  skipped: no python3 on PATH");
            diag["watchdog"] = json!({"skipped": "no python3 on PATH"});
            return Ok(());
        };
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let mut d = serde_json::Map::new();
        for (refresh_ms, reps) in [
            (1000u64, if ctx.quick { 3 } else { 8 }),
            (100, if ctx.quick { 5 } else { 16 }),
        ] {
            let refresh = Duration::from_millis(refresh_ms);
            // Baseline first, with no supervisor (and so no second reaper) alive.
            let (mut base, mut unseen) = (vec![], vec![]);
            for r in 0..reps {
                let phase = jitter(&mut seed, refresh);
                match bare_watchdog(&python, refresh, phase, r)? {
                    Ok(x) => base.push(x),
                    Err(u) => unseen.push(u),
                }
            }

            // Only the watchdog acts: no cgroup, no rlimit (RLIMIT_AS would stop the
            // allocation with a MemoryError instead).
            let sup = new_sup_with(ctx, refresh, false)?;
            let mut rx = sup.subscribe();
            let (mut ours, mut killing, mut peak) = (vec![], vec![], vec![]);
            let mut wrong = Vec::new();
            for r in 0..reps {
                tokio::time::sleep(jitter(&mut seed, refresh)).await;
                let agent = format!("bench-watchdog-{refresh_ms}-{r}");
                let limits = Limits {
                    memory_bytes: Some(WATCH_LIMIT),
                    ..std_limits()
                };
                let mut sp = spec(
                    ctx,
                    &agent,
                    &python,
                    &["python3", "-c", GROW_SCRIPT],
                    limits,
                );
                sp.enforce_limits = false;
                let id = sup.launch(sp).map_err(|e| e.to_string())?;
                let (_, ev) = wait_for(&mut rx, id, "Launched", |e| is_launched(e, id)).await?;
                let Event::Launched { pid, .. } = ev else {
                    return Err("watchdog: expected a Launched event".into());
                };
                let crossing = crossing_watcher(pid, WATCH_LIMIT);
                match until_exit(&mut rx, id).await {
                    Ok((tk, te, rec)) => {
                        let c = crossing
                            .recv_timeout(Duration::from_secs(31))
                            .unwrap_or_default();
                        let run = json!({
                            "run": id, "reason": rec.reason.as_str(), "killed_by": rec.killed_by,
                            "peak_memory_mib": rec.peak_memory_bytes as f64 / 1048576.0,
                            "killing_event_to_exited_ms": tk.map(|tk| ms(te.saturating_duration_since(tk))),
                        });
                        match c.to(te, tk, "ours", run) {
                            Ok(x) => {
                                ours.push(x);
                                if let (Some(tk), Some(tc)) = (tk, c.at) {
                                    killing.push(ms(tk.saturating_duration_since(tc)));
                                }
                            }
                            Err(u) => unseen.push(u),
                        }
                        peak.push(rec.peak_memory_bytes as f64 / 1048576.0);
                        if rec.reason != Reason::MemoryLimit
                            || rec.killed_by != Some(Actor::Watchdog)
                        {
                            wrong.push(format!(
                                "run {id}: {} by {:?}",
                                rec.reason.as_str(),
                                rec.killed_by
                            ));
                        }
                    }
                    Err(e) => {
                        // Never killed: an infinite sample fails the figure.
                        println!("  warning: {e}");
                        wrong.push(e);
                        ours.push(f64::INFINITY);
                    }
                }
            }
            retire(sup).await;
            for w in &wrong {
                println!("  warning: watchdog run ended unexpectedly: {w}");
            }
            for u in &unseen {
                println!(
                    "  note: {} repetition not measured: the agent was gone before a look saw it past the limit ({u})",
                    u["side"].as_str().unwrap_or("?")
                );
            }
            println!(
                "  watchdog at {refresh_ms} ms: limit passed -> Killing {} ms, -> Exited {} ms (medians, max {} ms); bare loop {} ms; peak sampled {} MiB against a limit of {} MiB",
                num_median(&killing),
                num_median(&ours),
                num(Stats::of(&ours).max),
                num_median(&base),
                num_median(&peak),
                WATCH_LIMIT >> 20
            );
            d.insert(
                format!("refresh_{refresh_ms}ms"),
                json!({
                    "limit_passed_to_killing_event_ms": Stats::of(&killing).json(),
                    "limit_passed_to_exited_event_ms": Stats::of(&ours).json(),
                    "peak_memory_sampled_mib": Stats::of(&peak).json(),
                    "unexpected_endings": wrong,
                    "not_measured": unseen,
                }),
            );
            let key = if refresh_ms == 1000 {
                "watchdog_memory_1000ms"
            } else {
                "watchdog_memory_100ms"
            };
            let name = format!("5. watchdog, refresh {refresh_ms} ms: RSS past limit -> Exited");
            let base_what = "bare child; a loop reading /proc/PID/stat once per refresh, SIGKILL past the limit, wait()";
            let side = |s: &str| unseen.iter().filter(|u| u["side"] == s).count();
            let note = (!unseen.is_empty()).then(|| {
                format!(
                    "not measured (killed between two looks of the bench's 1 ms VmRSS poll, so no crossing instant; see diagnostics.watchdog): {} of {reps} ours, {} of {reps} baseline",
                    side("ours"),
                    side("baseline")
                )
            });
            rows.push(
                Figure::new(key, name, "ms")
                    .ours(ours)
                    .baseline(base, base_what)
                    .target(Target::Max(refresh_ms as f64 + 50.0))
                    .note(note),
            );
        }
        d.insert(
            "agent".into(),
            json!({
                "program": python, "grows": "2 MiB every 10 ms, pages written",
                "limit_mib": WATCH_LIMIT >> 20,
                "os_limits": "none: use_cgroups = false, enforce_limits = false",
                "crossing": "first VmRSS above the limit, /proc/PID/status polled every 1 ms by the bench",
                "not_measured": "a repetition whose agent was killed between two of those looks (before one saw it past the limit) has no crossing instant: it is listed under not_measured with the bound on its latency, and left out of the figure",
            }),
        );
        diag["watchdog"] = Value::Object(d);
        Ok(())
    }

    // ---------------------------------------------------------------- 11. sandbox launch

    /// The ways figure 11 starts the same tiny program, in the order of its rows.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Way {
        /// `Command::spawn` + `wait()`, no supervisor in the way.
        Bare,
        /// Permissive through the supervisor: a ready launcher of the pool.
        Pooled,
        /// Permissive through the supervisor forced onto the direct vfork path (the run is
        /// given a standard input, which a launcher does not take).
        Direct,
        /// Moderate and Strict through a launcher of the pool, as confined runs start.
        Moderate,
        Strict,
        /// Debian's bubblewrap around the same program, spawned bare.
        Bwrap,
        /// Strict forced onto the direct path: with `Direct`, the sandbox's own cost.
        StrictDirect,
    }

    const WAYS: [Way; 7] = [
        Way::Bare,
        Way::Pooled,
        Way::Direct,
        Way::Moderate,
        Way::Strict,
        Way::Bwrap,
        Way::StrictDirect,
    ];

    impl Way {
        fn key(self) -> &'static str {
            match self {
                Way::Bare => "bare_spawn",
                Way::Pooled => "permissive_pool",
                Way::Direct => "permissive_direct",
                Way::Moderate => "moderate",
                Way::Strict => "strict",
                Way::Bwrap => "bwrap",
                Way::StrictDirect => "strict_direct",
            }
        }

        fn label(self) -> &'static str {
            match self {
                Way::Bare => "bare spawn",
                Way::Pooled => "Permissive (pool)",
                Way::Direct => "Permissive (direct path)",
                Way::Moderate => "Moderate",
                Way::Strict => "Strict",
                Way::Bwrap => "bwrap --unshare-all",
                Way::StrictDirect => "Strict (direct path)",
            }
        }
    }

    /// `bwrap ARGS PROGRAM`: the whole host read-only, fresh /dev and /proc, every namespace
    /// new (user, mount, pid, net, ipc, uts, cgroup).
    const BWRAP_ARGS: [&str; 9] = [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-all",
        "--die-with-parent",
    ];

    /// One bare start of `program ARGS`, no input or output: (spawn returned, exited) in ms
    /// from just before the spawn. The spawn returns once the exec succeeded.
    fn bare_run(program: &Path, args: &[&OsStr]) -> Res<(f64, f64)> {
        let mut c = Command::new(program);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let t0 = Instant::now();
        let mut child = c
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let t1 = Instant::now();
        let st = child
            .wait()
            .map_err(|e| format!("{}: wait: {e}", program.display()))?;
        let te = Instant::now();
        if !st.success() {
            return Err(format!("{} ended with {st}", program.display()));
        }
        Ok((ms(t1 - t0), ms(te - t0)))
    }

    /// One supervised run of `program` confined as `sandbox`: (`Launched`, `Exited`) in ms from
    /// just before `launch_with`, whether the call took a launcher of the pool, and whether the
    /// pool was still making its replacement at `Exited`.
    async fn supervised_run(
        ctx: &Ctx,
        sup: &Supervisor,
        rx: &mut broadcast::Receiver<Event>,
        agent: &str,
        program: &Path,
        sandbox: &Confinement,
        direct: bool,
    ) -> Res<(f64, f64, bool, bool)> {
        let mut sp = spec(ctx, agent, program, &["true"], std_limits());
        sp.sandbox = sandbox.clone();
        let stdin = if direct {
            Some(std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?)
        } else {
            None
        };
        let io = RunIo {
            stdin,
            output: None,
        };
        let ready = sup.launchers().0;
        let t0 = Instant::now();
        let id = sup.launch_with(sp, io).map_err(|e| e.to_string())?;
        let took = sup.launchers().0 < ready;
        let (t1, _) = wait_for(rx, id, "Launched", |e| is_launched(e, id)).await?;
        let (_, te, rec) = until_exit(rx, id).await?;
        let (ready, size) = sup.launchers();
        if rec.reason != Reason::Exited || rec.exit_code != Some(0) {
            return Err(format!(
                "{agent} (run {id}) ended as {} (exit {:?}): {:?}",
                rec.reason.as_str(),
                rec.exit_code,
                rec.message
            ));
        }
        Ok((ms(t1 - t0), ms(te - t0), took, ready < size))
    }

    /// Reaps this process's zombie children named `name` (every one for `None`): the names of
    /// those reaped. Orphans come back to this process (a child subreaper).
    fn reap_zombies(name: Option<&str>) -> Vec<String> {
        let mut reaped = Vec::new();
        for (pid, comm) in zombie_children() {
            if name.is_some_and(|n| n != comm) {
                continue;
            }
            let r = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            if matches!(r, Ok(s) if s != nix::sys::wait::WaitStatus::StillAlive) {
                reaped.push(comm);
            }
        }
        reaped
    }

    /// With no supervisor alive, waits (up to `within`) for every child of this process to end
    /// and reaps it: the names of those reaped, and of those still running after.
    async fn settle_children(within: Duration) -> (Vec<String>, Vec<String>) {
        let me = std::process::id() as i32;
        let until = Instant::now() + within;
        let mut reaped = Vec::new();
        loop {
            reaped.extend(reap_zombies(None));
            let alive: Vec<String> = procfs::all_processes()
                .into_iter()
                .filter(|p| p.ppid == me)
                .map(|p| format!("{} {}", p.pid, p.name))
                .collect();
            if alive.is_empty() || Instant::now() >= until {
                return (reaped, alive);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether bwrap runs here: its path, or why the row is n/a.
    fn bwrap_usable(program: &Path) -> Result<PathBuf, String> {
        let Some(bwrap) = common::which("bwrap") else {
            return Err(
                "bwrap is not installed (Debian: apt-get install bubblewrap; \
                        scripts/bench installs it when it runs as root)"
                    .into(),
            );
        };
        let out = Command::new(&bwrap)
            .args(BWRAP_ARGS)
            .arg(program)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", bwrap.display()))?;
        reap_zombies(Some("bwrap"));
        if out.status.success() {
            return Ok(bwrap);
        }
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "bwrap cannot run here ({}): {}",
            out.status,
            err.lines().last().unwrap_or("no message").trim()
        ))
    }

    /// Figure 11: the launch of `/bin/true` bare, through the supervisor as Permissive (pool and
    /// direct path), Moderate and Strict, and under bwrap, round by round in the same run. Then,
    /// with no supervisor alive, where the sandbox's time goes.
    async fn fig_sandbox(ctx: &Ctx, rows: &mut Vec<Figure>, diag: &mut Value) -> Res<()> {
        // The reaper of a supervisor that reaps every child (the one of another figure) ends
        // up to a second after its supervisor is dropped: until then it would reap this
        // figure's bare children too.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let program = common::which("true").ok_or("true not found on PATH")?;
        // A scratch home outside the temp directory, like a real one: the Strict read layer is
        // cached while the directories on the way to the denied paths do not change, and each
        // confined run makes and removes its own directory in the temp directory.
        let home = common::target_dir().join(format!("bench-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
        let r = sandbox_figure(ctx, rows, diag, &program, &home).await;
        let _ = std::fs::remove_dir_all(&home);
        r
    }

    async fn sandbox_figure(
        ctx: &Ctx,
        rows: &mut Vec<Figure>,
        diag: &mut Value,
        program: &Path,
        home: &Path,
    ) -> Res<()> {
        use symbiont::SandboxLevel;

        let n = if ctx.quick { 30 } else { 200 };
        let warm = 5;
        let confine = |level| {
            symbiont::policy::confinement(
                &symbiont::config::NativeExecutionConfig::default(),
                "bench-sandbox",
                level,
                &[],
                Some(home),
            )
            .map_err(|e| format!("{level} confinement: {e}"))
        };
        let permissive = Confinement::default();
        let moderate = confine(SandboxLevel::Moderate)?;
        let strict = confine(SandboxLevel::Strict)?;
        for c in [&moderate, &strict] {
            symbiont::sandbox::enforceable(c)
                .map_err(|e| format!("the {} sandbox cannot be measured here: {e}", c.level))?;
        }
        let abi = symbiont::sandbox::landlock::abi();
        println!(
            "  Landlock ABI {abi}; temp directory {} ({})",
            std::env::temp_dir().display(),
            common::read_trim("/proc/self/mountinfo")
                .lines()
                .filter_map(|l| {
                    let (pre, post) = l.split_once(" - ")?;
                    let mount = pre.split_whitespace().nth(4)?;
                    let fs = post.split_whitespace().next()?;
                    std::env::temp_dir()
                        .starts_with(mount)
                        .then(|| (mount.len(), fs.to_string()))
                })
                .max()
                .map_or_else(|| "?".into(), |(_, fs)| fs)
        );
        let bwrap = bwrap_usable(program);
        match &bwrap {
            Ok(b) => println!("  bwrap: {}", b.display()),
            Err(why) => println!("  bwrap: n/a: {why}"),
        }
        let mut bwrap_args: Vec<&OsStr> = BWRAP_ARGS.iter().map(OsStr::new).collect();
        bwrap_args.push(program.as_os_str());

        // The library's default: the supervisor reaps only its own runs, so the bare children
        // of the same rounds are this loop's to wait for.
        let mut opts = sup_options(ctx, Duration::from_secs(1), true);
        opts.own_all_children = false;
        let sup = Supervisor::new(opts).map_err(|e| format!("cannot start a supervisor: {e}"))?;
        let mut rx = sup.subscribe();
        let k = WAYS.len();
        // [way] -> (to running, to exit); NaN where not seen.
        let mut run: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut exit: Vec<Vec<f64>> = vec![Vec::new(); k];
        let mut took = vec![0usize; k];
        let mut refilling = 0usize;
        let mut bwrap_orphans = 0usize;
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let result: Res<()> = async {
            for i in 0..warm + n {
                // Every way once per round, in a new random order each round: drift, and what
                // one way leaves behind (the pool's replacement, cgroup removals), fall on
                // every way alike.
                let mut order = WAYS;
                for j in (1..k).rev() {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    order.swap(j, ((seed >> 33) % (j as u64 + 1)) as usize);
                }
                for w in order {
                    let agent = format!("bench-sandbox-{}-{i}", w.key());
                    quiet(&sup).await;
                    let (r, e, pool, busy) = match w {
                        Way::Bare => {
                            let (r, e) = bare_run(program, &[])?;
                            (r, e, false, false)
                        }
                        Way::Bwrap => match &bwrap {
                            Ok(b) => {
                                // The spawn returns once bwrap runs, not the program.
                                let (_, e) = bare_run(b, &bwrap_args)?;
                                // bwrap's own child, orphaned to this process when it ends.
                                bwrap_orphans += reap_zombies(Some("bwrap")).len();
                                (f64::NAN, e, false, false)
                            }
                            Err(_) => continue,
                        },
                        Way::Pooled | Way::Direct => {
                            let direct = w == Way::Direct;
                            supervised_run(ctx, &sup, &mut rx, &agent, program, &permissive, direct)
                                .await?
                        }
                        Way::Moderate => {
                            supervised_run(ctx, &sup, &mut rx, &agent, program, &moderate, false)
                                .await?
                        }
                        Way::Strict | Way::StrictDirect => {
                            let direct = w == Way::StrictDirect;
                            supervised_run(ctx, &sup, &mut rx, &agent, program, &strict, direct)
                                .await?
                        }
                    };
                    if i >= warm {
                        let x = w as usize;
                        run[x].push(r);
                        exit[x].push(e);
                        took[x] += usize::from(pool);
                        refilling += usize::from(pool && busy);
                    }
                }
            }
            Ok(())
        }
        .await;
        retire(sup).await;
        // With no supervisor alive, whatever it left unreaped (this supervisor reaps only its
        // runs and launchers).
        result?;

        let idx = |w: Way| w as usize;
        let st = |v: &[f64]| Stats::of(v);
        println!("  /bin/true, {n} rounds (medians, p10..p90 [min..max], ms):");
        println!(
            "    {:<26} {:<40} launch -> exit (Exited)",
            "", "launch -> running (Launched)"
        );
        let mut per_way = serde_json::Map::new();
        for w in WAYS {
            let (r, e) = (&run[idx(w)], &exit[idx(w)]);
            if e.is_empty() {
                println!("    {:<26} n/a", w.label());
                continue;
            }
            let cell = |v: &[f64]| {
                let s = st(v);
                if s.median.is_nan() {
                    "-".to_string()
                } else {
                    format!("{} {}", num(s.median), s.spread())
                }
            };
            let rr: Vec<f64> = r.iter().copied().filter(|x| !x.is_nan()).collect();
            println!("    {:<26} {:<40} {}", w.label(), cell(&rr), cell(e));
            per_way.insert(
                w.key().into(),
                json!({
                    "launch_to_running_ms": (!rr.is_empty()).then(|| st(&rr).json()),
                    "launch_to_exit_ms": st(e).json(),
                    "took_a_pooled_launcher": took[idx(w)],
                }),
            );
        }
        // Per-round differences: the same round's two samples, so drift cancels.
        let paired =
            |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x - y).collect() };
        let med = |v: &[f64]| st(v).median;
        let p10 = |v: &[f64]| st(v).p10;
        let (s, p, d) = (idx(Way::Strict), idx(Way::Pooled), idx(Way::Direct));
        let sd = idx(Way::StrictDirect);
        let over = |v: &[Vec<f64>], a: usize, b: usize| med(&v[a]) - med(&v[b]);
        let deltas = json!({
            "strict_minus_permissive_pool_exit_ms": over(&exit, s, p),
            "strict_minus_permissive_pool_running_ms": over(&run, s, p),
            "strict_direct_minus_permissive_direct_exit_ms": over(&exit, sd, d),
            "strict_direct_minus_permissive_direct_running_ms": over(&run, sd, d),
            "moderate_minus_permissive_pool_exit_ms": over(&exit, idx(Way::Moderate), p),
            "moderate_minus_permissive_pool_running_ms": over(&run, idx(Way::Moderate), p),
            "permissive_direct_minus_pool_exit_ms": over(&exit, d, p),
            "permissive_direct_minus_pool_running_ms": over(&run, d, p),
            "paired_median_strict_minus_pool_exit_ms": med(&paired(&exit[s], &exit[p])),
            "paired_median_strict_direct_minus_direct_exit_ms": med(&paired(&exit[sd], &exit[d])),
            "paired_median_strict_minus_pool_running_ms": med(&paired(&run[s], &run[p])),
            "paired_median_strict_direct_minus_direct_running_ms": med(&paired(&run[sd], &run[d])),
            // The lowest tenth is the least disturbed by other load on the machine.
            "p10_strict_minus_permissive_pool_running_ms": p10(&run[s]) - p10(&run[p]),
            "p10_strict_direct_minus_permissive_direct_running_ms": p10(&run[sd]) - p10(&run[d]),
            "p10_strict_direct_minus_permissive_direct_exit_ms": p10(&exit[sd]) - p10(&exit[d]),
        });
        println!(
            "  Strict - Permissive, both through the pool: {} ms to exit, {} ms to running; both on \
             the direct path: {} ms to exit, {} ms to running; the path itself (Permissive direct - \
             pool): {} ms to exit, {} ms to running (differences of medians)",
            num(over(&exit, s, p)),
            num(over(&run, s, p)),
            num(over(&exit, sd, d)),
            num(over(&run, sd, d)),
            num(over(&exit, d, p)),
            num(over(&run, d, p)),
        );

        let bare_what = "bare Command::spawn(/bin/true) + wait(), the same rounds";
        let name = |w: Way| match w {
            Way::Bwrap => "11e. bwrap --unshare-all /bin/true: spawn -> exit".to_string(),
            Way::StrictDirect => {
                "11i. /bin/true Strict (direct path): launch -> Exited".to_string()
            }
            _ => {
                let l = (b'a' + w as u8 - 1) as char;
                format!("11{l}. /bin/true {}: launch -> Exited", w.label())
            }
        };
        for w in [
            Way::Pooled,
            Way::Direct,
            Way::Moderate,
            Way::Strict,
            Way::Bwrap,
            Way::StrictDirect,
        ] {
            let mut f = Figure::new(format!("sandbox_{}_exit", w.key()), name(w), "ms")
                .ours(exit[idx(w)].clone())
                .baseline(exit[idx(Way::Bare)].clone(), bare_what);
            f = match (w, &bwrap) {
                (Way::Bwrap, Err(why)) => f.note(Some(format!("n/a: {why}"))),
                (Way::Bwrap, Ok(b)) => f.note(Some(format!(
                    "{} {} PROGRAM, spawned bare; the bare spawn is its baseline",
                    b.display(),
                    BWRAP_ARGS.join(" ")
                ))),
                (Way::Direct | Way::StrictDirect, _) => f.note(Some(
                    "given a standard input (/dev/null), which a launcher of the pool does not \
                     take: the direct vfork path"
                        .into(),
                )),
                _ => f,
            };
            rows.push(f);
        }
        // A target row: `ours` at most 0.2 ms over `base`, measured `what` way.
        let over_row = |id: &str, label: &str, ours: &[f64], base: &[f64], what: &str, note| {
            Figure::new(id, label, "ms")
                .ours(ours.to_vec())
                .baseline(base.to_vec(), what)
                .target(Target::OverBaseline(0.2))
                .note(Some(note))
        };
        let pool_what = "Permissive through a launcher of the pool (the default path), same rounds";
        let direct_what = "Permissive forced onto the direct vfork path (given a standard input), \
                           against Strict forced onto it too, same rounds: the sandbox's own cost, \
                           the path aside";
        rows.push(over_row(
            "sandbox_strict_over_permissive_running",
            "11f. Strict over Permissive (pool): launch -> Launched",
            &run[s],
            &run[p],
            pool_what,
            format!(
                "Strict - Permissive, both through the pool = {} ms (medians; median of the \
                 per-round differences {} ms; p10s {} ms); Moderate - Permissive = {} ms ({} of \
                 {n} pooled runs ended while the pool was still making the used launcher's \
                 replacement)",
                num(over(&run, s, p)),
                num(med(&paired(&run[s], &run[p]))),
                num(p10(&run[s]) - p10(&run[p])),
                num(over(&run, idx(Way::Moderate), p)),
                refilling,
            ),
        ));
        rows.push(over_row(
            "sandbox_strict_over_direct_running",
            "11g. Strict over Permissive (both direct path): launch -> Launched",
            &run[sd],
            &run[d],
            direct_what,
            format!(
                "Strict direct - Permissive direct = {} ms (median of the per-round differences \
                 {} ms; p10s {} ms); the path (Permissive direct - pool) {} ms",
                num(over(&run, sd, d)),
                num(med(&paired(&run[sd], &run[d]))),
                num(p10(&run[sd]) - p10(&run[d])),
                num(over(&run, d, p)),
            ),
        ));
        rows.push(over_row(
            "sandbox_strict_over_permissive_exit",
            "11h. Strict over Permissive (pool): launch -> Exited",
            &exit[s],
            &exit[p],
            pool_what,
            format!(
                "Strict - Permissive = {} ms (median of the per-round differences {} ms; p10s {} \
                 ms); Moderate - Permissive = {} ms; both on the direct path: Strict - Permissive \
                 = {} ms",
                num(over(&exit, s, p)),
                num(med(&paired(&exit[s], &exit[p]))),
                num(p10(&exit[s]) - p10(&exit[p])),
                num(over(&exit, idx(Way::Moderate), p)),
                num(over(&exit, sd, d)),
            ),
        ));

        let parts = sandbox_parts(ctx, n, program, &moderate, &strict, home);
        // This supervisor reaps only its runs and launchers: its guardian (a fork of this
        // process) ends some time after the drop (still running 0.4 s after it, seen here) and
        // is this process's to reap, as is the guardian of an earlier reap-all supervisor
        // whose reaper ended first.
        let (left_reaped, left_alive) = settle_children(Duration::from_secs(3)).await;
        let parts = parts?;
        diag["sandbox"] = json!({
            "program": program,
            "rounds": n,
            "warm_up_rounds": warm,
            "order": "every way once per round, in a new random order each round; 3 ms settle and a full launcher pool before each sample",
            "supervisor": "own_all_children = false (the library's default: only its runs are reaped), cgroups on, limits as figure 1",
            "home": home,
            "landlock_abi": abi,
            "temp_dir": std::env::temp_dir(),
            "confinement": {"moderate": moderate, "strict": strict},
            "bwrap": match &bwrap {
                Ok(b) => json!({"program": b, "args": BWRAP_ARGS}),
                Err(why) => json!({"n/a": why}),
            },
            "ways": per_way,
            "pooled_runs_whose_pool_was_refilling_at_exited": refilling,
            "bwrap_orphans_reaped": bwrap_orphans,
            "left_by_supervisors": {"reaped_here": left_reaped, "still_running": left_alive},
            "differences": deltas,
            "parts_ms": parts,
        });
        Ok(())
    }

    /// Where a confined launch's time goes, each part timed alone with the crate's own pieces
    /// and no supervisor alive: building the sandbox (per run), the run's temp directory, and a
    /// `native::spawn` of the program to its exit with no sandbox, Moderate's and Strict's
    /// (interleaved).
    fn sandbox_parts(
        ctx: &Ctx,
        n: usize,
        program: &Path,
        moderate: &Confinement,
        strict: &Confinement,
        home: &Path,
    ) -> Res<Value> {
        use symbiont::sandbox::ChildSandbox;
        let tmp = ctx.root.join("sandbox-tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        let dirs = [ctx.work.as_path(), tmp.as_path()];
        let env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            (MARK.into(), "bench-sandbox-parts".into()),
        ];
        let argv: Vec<String> = vec!["true".into()];
        let mut rl = RlimitSet::default();
        rl.cpu_seconds(60);
        rl.file_size(1 << 30);
        let sb_moderate = ChildSandbox::new(moderate, &dirs)?;
        let sb_strict = ChildSandbox::new(strict, &dirs)?;
        let spawn_to_exit = |sb: Option<&ChildSandbox>| -> Res<f64> {
            let l = NativeLaunch {
                program,
                argv: &argv,
                cwd: &ctx.work,
                env: &env,
                cgroup_fds: Vec::new(),
                rlimits: rl,
                affinity: None,
                subreaper: false,
                stdin: None,
                sandbox: sb,
            };
            std::thread::sleep(SETTLE);
            let t0 = Instant::now();
            let s = native::spawn(&l).map_err(|e| e.to_string())?;
            let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(s.pid), None);
            let d = ms(t0.elapsed());
            match st {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(d),
                other => Err(format!("sandboxed /bin/true: {other:?}")),
            }
        };
        let names = [
            "a_native_spawn_to_exit_no_sandbox",
            "b_native_spawn_to_exit_moderate",
            "c_native_spawn_to_exit_strict",
            "d_build_moderate_sandbox",
            "e_build_strict_sandbox_read_layer_cached",
            "f_build_strict_sandbox_read_layer_rebuilt",
            "g_run_temp_dir_make",
            "h_run_temp_dir_remove_its_write_layer_held",
            "i_drop_the_write_layer_after",
        ];
        let mut t: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        let touch = home.join(".bench-touch");
        for i in 0..n + 5 {
            let mut s = [0f64; 9];
            // What `confine` does for a run that confines writes: its temp directory, then its
            // sandbox, whose write layer holds the directory (Landlock keeps a reference to
            // the inode); `finish` removes the directory once the run ended, and the layer
            // goes with the run.
            let t0 = Instant::now();
            let dir = nix::unistd::mkdtemp(&std::env::temp_dir().join("symbiont-runB-XXXXXX"))
                .map_err(|e| format!("mkdtemp: {e}"))?;
            s[6] = ms(t0.elapsed());
            let t0 = Instant::now();
            let run_sandbox = ChildSandbox::new(moderate, &[ctx.work.as_path(), dir.as_path()])?;
            s[3] = ms(t0.elapsed());
            // The three spawns in a turning order.
            for j in 0..3 {
                let which = (i + j) % 3;
                let sb = [None, Some(&sb_moderate), Some(&sb_strict)][which];
                s[which] = spawn_to_exit(sb)?;
            }
            let t0 = Instant::now();
            drop(ChildSandbox::new(strict, &dirs)?);
            s[4] = ms(t0.elapsed());
            // A new entry in the home directory: the read layer is built again.
            let _ = std::fs::write(&touch, b"");
            let _ = std::fs::remove_file(&touch);
            let t0 = Instant::now();
            drop(ChildSandbox::new(strict, &dirs)?);
            s[5] = ms(t0.elapsed());
            let t0 = Instant::now();
            let _ = std::fs::remove_dir_all(dir);
            s[7] = ms(t0.elapsed());
            // The last reference to the removed directory: its blocks are freed here.
            let t0 = Instant::now();
            drop(run_sandbox);
            s[8] = ms(t0.elapsed());
            if i >= 5 {
                for (k, v) in s.iter().enumerate() {
                    t[k].push(*v);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
        println!("  where the time goes (each part alone, no supervisor; median / p90 of {n}):");
        let mut obj = serde_json::Map::new();
        for (k, name) in names.iter().enumerate() {
            let st = Stats::of(&t[k]);
            println!(
                "    {name:<44} {:>8} ms  p90 {:>8} ms",
                num(st.median),
                num(st.p90)
            );
            obj.insert(name.to_string(), st.json());
        }
        obj.insert("strict_rulesets".into(), json!(sb_strict.rulesets.len()));
        Ok(Value::Object(obj))
    }

    // ---------------------------------------------------------------- main

    /// The figures in the order they run, with their headings (`--only` picks by name).
    const FIGURES: [(&str, &str); 8] = [
        ("launch", "[1] launch latency"),
        ("breakdown", "[1b] launch breakdown"),
        ("many", "[2] 1000 agents"),
        ("tree", "[3] kill a 100-process tree"),
        ("timeout", "[4] timeout precision"),
        (
            "watchdog",
            "[5] watchdog precision (memory limit, no OS limit)",
        ),
        ("check", "[10] `symbiont check` of 100k agents"),
        (
            "sandbox",
            "[11] sandbox launch: bare, Permissive, Moderate, Strict, bwrap",
        ),
    ];

    /// Runs the figures: their rows, the diagnostics and the error of each figure that could
    /// not be measured (the others' rows stand).
    async fn run(args: &Args, ctx: &mut Ctx) -> Res<(Vec<Figure>, Value, Vec<String>)> {
        let mut rows = Vec::new();
        let mut diag = json!({});
        let mut errors = Vec::new();
        {
            let sup = new_sup(ctx, Duration::from_secs(1))?;
            ctx.mechanisms = sup.mechanisms();
            retire(sup).await;
        }
        println!("mechanisms:");
        for m in &ctx.mechanisms {
            println!("  {m}");
        }
        println!();
        for (what, heading) in FIGURES {
            if !args.wants(what) {
                continue;
            }
            println!("{heading} ...");
            let (rows, diag) = (&mut rows, &mut diag);
            let r = match what {
                "launch" => fig_launch(ctx, rows, diag).await,
                "breakdown" => breakdown(ctx, diag).await,
                "many" => fig_many(ctx, rows, diag).await,
                "tree" => fig_tree(ctx, rows, diag).await,
                "timeout" => fig_timeout(ctx, rows, diag).await,
                "check" => fig_check(ctx, rows),
                "sandbox" => fig_sandbox(ctx, rows, diag).await,
                _ => fig_watchdog(ctx, rows, diag).await,
            };
            if let Err(e) = r {
                println!("  FAILED: {e}");
                errors.push(format!("{what}: {e}"));
                // Its supervisor was dropped without `retire`'s pause: give its reaper time.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok((rows, diag, errors))
    }

    pub fn main() {
        let args = Args::parse("native", &FIGURES.map(|f| f.0));
        // Bare baseline children inherit this (their environment is left alone), so they are
        // found in /proc too if one is left behind. Set before any thread exists.
        std::env::set_var(MARK, "bench-baseline");
        // Orphans of every tree come back to this process, with or without a supervisor.
        let _ = nix::sys::prctl::set_child_subreaper(true);

        let facts = common::machine_facts();
        let root = common::scratch_dir("");
        let _ = std::fs::remove_dir_all(&root);
        let work = root.join("work");
        if let Err(e) = std::fs::create_dir_all(&work) {
            args.fail(&format!("cannot create {}: {e}", work.display()));
        }
        let resolve = |name: &str| {
            common::which(name).unwrap_or_else(|| args.fail(&format!("{name} not found on PATH")))
        };
        let mut ctx = Ctx {
            root: root.clone(),
            work,
            sleep: resolve("sleep"),
            bash: resolve("bash"),
            python: real_python(),
            quick: args.quick,
            mechanisms: Vec::new(),
        };

        println!("symbiont native runner benchmark ({})", args.mode());
        println!(
            "machine: {} cores ({}), {} MiB, kernel {}, uid {}",
            facts["cores"],
            facts["cpu_model"].as_str().unwrap_or("?"),
            facts["memory_mib"],
            facts["kernel"].as_str().unwrap_or("?"),
            facts["uid"]
        );
        println!(
            "load average at start: {}",
            facts["load_average"].as_str().unwrap_or("?")
        );
        println!(
            "programs: sleep = {}, bash = {}; scratch {}",
            ctx.sleep.display(),
            ctx.bash.display(),
            root.display()
        );

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| args.fail(&format!("runtime: {e}")));
        let started = Instant::now();
        let result = rt.block_on(run(&args, &mut ctx));
        let elapsed = started.elapsed();
        let (rows, diag, error) = match result {
            Ok((r, d, errors)) => (r, d, (!errors.is_empty()).then(|| errors.join("; "))),
            Err(e) => (Vec::new(), json!({}), Some(e)),
        };
        // Give the last runs' clean-up a moment, then look for anything left behind.
        std::thread::sleep(Duration::from_millis(300));
        let left = marked("bench-", true);
        let left_sleep = left.iter().filter(|(_, n)| n == "sleep").count();
        let zombie_list = zombie_children();
        let zombies = zombie_list.len();
        drop(rt);

        println!();
        let load_end = read_trim("/proc/loadavg");
        println!(
            "load average at end: {load_end}; bench took {:.1} s",
            elapsed.as_secs_f64()
        );
        println!();
        print_table(&rows);
        println!();
        println!(
            "leftover processes carrying {MARK}=bench-*: {} (sleep: {left_sleep}); unreaped children: {zombies}",
            left.len()
        );
        for (pid, name) in left.iter().take(10) {
            println!("  left: pid {pid} {name}");
        }
        for (pid, name) in zombie_list.iter().take(10) {
            println!("  unreaped: pid {pid} {name}");
        }

        let out = json!({
            "bench": "native",
            "mode": args.mode(),
            "machine": facts,
            "load_average_end": load_end,
            "mechanisms": ctx.mechanisms,
            "programs": {"sleep": ctx.sleep, "bash": ctx.bash},
            "figures": rows.iter().map(Figure::json).collect::<Vec<_>>(),
            "diagnostics": diag,
            "leftovers": {"processes": left.len(), "sleep": left_sleep, "unreaped_children": zombies},
            "error": error,
            "elapsed_secs": elapsed.as_secs_f64(),
        });
        write_json(&args.json, &out);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&root);
        }
        if let Some(e) = error {
            eprintln!("native bench failed: {e}");
            std::process::exit(1);
        }
        if !left.is_empty() || zombies > 0 {
            std::process::exit(1);
        }
    }
}
