//! The no-cgroup watchdog's own CPU (issue 13): 1000 idle agents (`sleep 30`, a memory limit
//! each) on a supervisor without cgroups, the watchdog thread's CPU time over a window, at the
//! short interval of runs without a cgroup memory limit (`watchdog_interval_ms`, 100 ms) and,
//! in the same run, with that interval equal to the default refresh (1000 ms: no short checks).
//!
//! Run it as the ordinary user it is about (as root it still takes the no-cgroup path, through
//! `use_cgroups: false`): `flock /tmp/symbiont-bench.lock runuser -u USER -- <bench binary>`,
//! or `cargo bench --bench watchdog [-- --quick] [--json PATH]`.

mod common;

fn main() {
    #[cfg(target_os = "linux")]
    bench::main();
}

#[cfg(target_os = "linux")]
mod bench {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use serde_json::json;
    use symbiont::supervisor::{Limits, RunSpec, RunState, Step, Supervisor, SupervisorOptions};
    use symbiont::SecurityTier;

    use super::common::*;

    const AGENTS: usize = 1000;

    /// User + system CPU ticks of this process's thread called `name`.
    fn thread_ticks(name: &str) -> Option<u64> {
        for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
                let rest = stat.rsplit_once(") ")?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
            }
        }
        None
    }

    fn spec(work: &Path, sleep: &Path, i: usize) -> RunSpec {
        RunSpec {
            agent: format!("idle{i}"),
            trigger: "bench".into(),
            tier: SecurityTier::None,
            steps: vec![Step {
                program: sleep.to_path_buf(),
                argv: vec!["sleep".into(), "30".into()],
            }],
            cwd: work.to_path_buf(),
            env: vec![
                ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
                (MARK.into(), format!("watchdog-bench-{i}")),
            ],
            limits: Limits {
                memory_bytes: Some(256 << 20),
                cpu_seconds: Some(60),
                cpu_cores: None,
                timeout: None,
                // RLIMIT_NPROC counts every process of an ordinary user: 1000 agents need room.
                max_processes: None,
                file_size_bytes: Some(1 << 30),
            },
            enforce_limits: true,
            kill_grace: Duration::from_secs(1),
            image: None,
            network: false,
            sandbox: Default::default(),
            source: None,
        }
    }

    /// The watchdog thread's CPU, in % of one core, with 1000 idle agents at `interval`.
    async fn measure(root: &Path, interval: Duration, window: Duration) -> Res<(f64, usize)> {
        let sleep = which("sleep").ok_or("no sleep")?;
        let work = root.join("work");
        std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        let sup = Supervisor::new(SupervisorOptions {
            data_dir: root.join("data"),
            audit_log: root.join("audit.log"),
            tail_lines: 10,
            max_log_mb: 64,
            first_run_id: 1,
            event_buffer: 4096,
            refresh: Duration::from_secs(1),
            watchdog_interval: interval,
            warn_ratio: 0.8,
            critical_ratio: 0.95,
            own_all_children: true,
            use_cgroups: false,
            docker_host: None,
            microvm: Default::default(),
        })
        .map_err(|e| e.to_string())?;
        for i in 0..AGENTS {
            sup.launch(spec(&work, &sleep, i))
                .map_err(|e| e.to_string())?;
        }
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let running = sup
                .snapshot()
                .iter()
                .filter(|s| s.state == RunState::Running)
                .count();
            if running == AGENTS {
                break;
            }
            if Instant::now() > until {
                let msg = sup
                    .snapshot()
                    .iter()
                    .find_map(|s| s.record.as_ref().and_then(|r| r.message.clone()));
                return Err(format!(
                    "only {running} of {AGENTS} agents running (one said: {msg:?})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every run sampled once (the first look at each is dearer).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let t0 = thread_ticks("symbiont-watch").ok_or("no watchdog thread")?;
        let w0 = Instant::now();
        tokio::time::sleep(window).await;
        let t1 = thread_ticks("symbiont-watch").ok_or("no watchdog thread")?;
        let secs = w0.elapsed().as_secs_f64();
        let tracked = sup.snapshot().iter().filter(|s| s.processes >= 1).count();
        let _ = tokio::time::timeout(Duration::from_secs(60), sup.shutdown()).await;
        drop(sup);
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(((t1 - t0) as f64 / clk_tck() / secs * 100.0, tracked))
    }

    pub fn main() {
        let args = Args::parse("watchdog", &[]);
        let window = Duration::from_secs(if args.quick { 5 } else { 20 });
        let root = scratch_dir("watchdog");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail("watchdog", &e.to_string()));
        let uid = nix::unistd::getuid().as_raw();
        let mut out = Vec::new();
        for ms in [100u64, 1000] {
            let r = rt.block_on(measure(
                &root.join(ms.to_string()),
                Duration::from_millis(ms),
                window,
            ));
            match r {
                Ok((pct, tracked)) => {
                    println!(
                        "watchdog, {AGENTS} idle agents without cgroups (uid {uid}), interval {ms} ms: {pct:.2} % of one core over {:.0} s ({tracked} runs sampled)",
                        window.as_secs_f64()
                    );
                    out.push(json!({"interval_ms": ms, "cpu_pct_of_one_core": pct, "agents": AGENTS, "runs_sampled": tracked}));
                }
                Err(e) => fail("watchdog", &e),
            }
        }
        write_json(
            &args.json,
            &json!({"bench": "watchdog", "uid": uid, "window_secs": window.as_secs_f64(), "figures": out, "machine": machine_facts()}),
        );
        if !args.keep {
            let _ = std::fs::remove_dir_all(&root);
        }
    }
}
