//! Dashboard benchmark: the cost of watching 1000 idle agents.
//!
//!   cargo bench --bench dashboard             # 30 s measurement windows
//!   cargo bench --bench dashboard -- --quick  # 8 s windows, fewer frames
//!   cargo bench --bench dashboard -- --json PATH  # also write the figures as JSON
//!
//! Prints: the time to draw one frame of 1000 agents (200x50), and the dashboard's own CPU
//! (% of one core) and peak resident memory with 1000 idle native agents at a 1 s refresh in a
//! 200x50 pseudo-terminal; htop and btop on the same workload when installed, with the ratio.

mod common;
#[cfg(unix)]
#[path = "../tests/common/pty.rs"]
mod pty;

fn main() {
    #[cfg(unix)]
    bench::main();
    #[cfg(not(unix))]
    eprintln!("the dashboard benchmark drives a Unix pseudo-terminal; nothing to do here");
}

#[cfg(unix)]
mod bench {
    use super::common::{self, ms, write_json, Args, Figure, Stats, Target};
    use super::pty;

    use std::path::PathBuf;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::{json, Value};
    use symbiont::supervisor::Limits;
    use symbiont::supervisor::RunState;
    use symbiont::tier::SecurityTier;
    use symbiont::tui::app::{AgentRow, App};
    use symbiont::tui::keymap::Keymap;

    const AGENTS: usize = 1000;
    const W: u16 = 200;
    const H: u16 = 50;

    /// utime + stime of a process, in seconds.
    fn cpu_secs(pid: u32) -> f64 {
        common::cpu_ticks(pid).map_or(0.0, |(u, s)| (u + s) as f64 / common::clk_tck())
    }

    /// Every frame's draw time in milliseconds, in order.
    fn frame_time(iterations: usize) -> Vec<f64> {
        let mut app = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
        let rows = (0..AGENTS as u64)
            .map(|i| AgentRow {
                id: i,
                agent: format!("agent-{i:04}"),
                trigger: "start".into(),
                tier: SecurityTier::None,
                sandbox: Default::default(),
                denials: 0,
                denied: Vec::new(),
                pid: Some(10000 + i as i32),
                state: RunState::Running,
                cpu_pct: (i % 7) as f64,
                rss: (i % 50 + 1) << 20,
                peak_rss: (i % 50 + 1) << 20,
                cpu_secs: 0.5,
                processes: 1,
                elapsed: Duration::from_secs(i % 300),
                limits: Limits {
                    memory_bytes: Some(64 << 20),
                    timeout: Some(Duration::from_secs(600)),
                    ..Limits::default()
                },
                exit_code: None,
                signal: None,
                reason: None,
                procs: Vec::new(),
                history: Vec::new(),
                to_limit: None,
                argv: vec!["sleep".into(), "3600".into()],
                cwd: "/tmp".into(),
                env_names: vec!["PATH".into()],
                note: None,
                actions: Default::default(),
                version: 1,
            })
            .collect();
        app.set_rows(rows);
        let mut term = Terminal::new(TestBackend::new(W, H)).unwrap();
        let mut times = Vec::with_capacity(iterations);
        for i in 0..iterations {
            // Move the selection so every frame differs, as a live table's would.
            app.selected = (i * 37) % AGENTS;
            let t = Instant::now();
            term.draw(|f| symbiont::tui::ui::draw(f, &mut app)).unwrap();
            times.push(ms(t.elapsed()));
        }
        times
    }

    /// Own CPU (% of one core) and peak RSS (MiB) of `pid` over `window`.
    fn measure(pid: u32, window: Duration) -> (f64, f64) {
        let (c0, t0) = (cpu_secs(pid), Instant::now());
        std::thread::sleep(window);
        let (c1, dt) = (cpu_secs(pid), t0.elapsed().as_secs_f64());
        let hwm_kib = common::status_kib(pid, "VmHWM").unwrap_or(0);
        ((c1 - c0) / dt * 100.0, hwm_kib as f64 / 1024.0)
    }

    /// A peer tool on the same workload: its own CPU and peak RSS, or None if it is not installed
    /// or did not keep running. Each gets a private HOME with a 1 s refresh configured.
    fn peer(cmd: &str, args: &[&str], settle: Duration, window: Duration) -> Option<(f64, f64)> {
        common::which(cmd)?;
        let home = common::scratch_dir(cmd);
        let conf = home.join(".config/btop");
        std::fs::create_dir_all(&conf).ok()?;
        std::fs::write(conf.join("btop.conf"), "update_ms = 1000\n").ok()?;
        let mut c = Command::new(cmd);
        c.args(args)
            .env("HOME", &home)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8");
        let mut p = pty::Pty::spawn(c, W, H);
        std::thread::sleep(settle);
        let pid = p.child.id();
        let r = measure(pid, window);
        let alive = p.child.try_wait().ok().flatten().is_none();
        drop(p);
        let _ = std::fs::remove_dir_all(&home);
        alive.then_some(r)
    }

    pub fn main() {
        let args = Args::parse("dashboard", &[]);
        let quick = args.quick;
        let window = Duration::from_secs(if quick { 8 } else { 30 });
        let facts = common::machine_facts();
        let load = facts["load_average"].as_str().unwrap_or("");
        println!(
            "machine: {} cores, load {}, kernel {}",
            facts["cores"],
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            facts["kernel"].as_str().unwrap_or("?")
        );

        let frames = frame_time(if quick { 100 } else { 500 });
        let fs = Stats::of(&frames);
        let (f50, f90) = (fs.median, fs.p90);

        // The workload: 1000 idle native agents.
        let dir = common::scratch_dir("dash");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work")).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[security]\nallow_native_execution = true\n[native_execution]\nworking_directory = \"{}\"\n\
                 allowed_executables = [\"sleep\"]\nmax_execution_time_seconds = 3600\n\
                 [supervisor]\ndata_dir = \"{}\"\n[dashboard]\nrefresh_ms = 1000\n",
                dir.join("work").display(),
                dir.join("data").display()
            ),
        )
        .unwrap();
        let mut dsl = String::new();
        for i in 0..AGENTS {
            dsl.push_str(&format!("agent Idle{i:04} {{ security {{ tier: None }} on start {{ execute_native(\"sleep 3600\") }} }}\n"));
        }
        let file: PathBuf = dir.join("idle.dsl");
        std::fs::write(&file, dsl).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_symbiont"));
        cmd.args([
            "run",
            file.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .current_dir(&dir);
        let t = Instant::now();
        let mut p = pty::Pty::spawn(cmd, W, H);
        p.wait_for(
            &format!("{AGENTS} agents: {AGENTS} running"),
            Duration::from_secs(120),
        );
        let launch_all = t.elapsed();
        let pid = p.child.id();
        // Steady state: wait until the launches' after-work is over (a 1 s slice under 2 % of a
        // core, three in a row), at most 30 s.
        let settle_start = Instant::now();
        let mut calm = 0;
        while calm < 3 && settle_start.elapsed() < Duration::from_secs(30) {
            let (c, _) = measure(pid, Duration::from_secs(1));
            calm = if c < 2.0 { calm + 1 } else { 0 };
        }
        let settled = settle_start.elapsed();
        let (ours_cpu, ours_rss) = measure(pid, window);

        let settle = Duration::from_secs(3);
        let htop = peer("htop", &["-d", "10"], settle, window);
        let btop = peer("btop", &[], settle, window);

        let t = Instant::now();
        p.send("q");
        p.send("y");
        let code = p.wait_exit(Duration::from_secs(120));
        let stop_all = t.elapsed();
        // The agents are Idle0000...: SYMBIONT_AGENT=Idle....
        let left = common::marked("I", true).len();
        let _ = std::fs::remove_dir_all(&dir);

        write_figures(
            &args,
            window,
            frames,
            (ours_cpu, ours_rss),
            [("htop", htop), ("btop", btop)],
            json!({
                "launch_all_until_shown_running_secs": launch_all.as_secs_f64(),
                "settled_after_secs": settled.as_secs_f64(),
                "quit_with_stop_secs": stop_all.as_secs_f64(),
                "exit_code": code,
                "agent_processes_left": left,
                "window_secs": window.as_secs(),
            }),
        );

        let ratio = |o: Option<(f64, f64)>| {
            o.map(|(c, _)| format!("{:.1}x", c / ours_cpu.max(0.001)))
                .unwrap_or_else(|| "n/a".into())
        };
        let pass = |ok: bool| if ok { "PASS" } else { "FAIL" };
        println!();
        println!(
            "{:<46} {:>12} {:>14} {:>12} {:>12}  result",
            "figure", "symbiont", "target", "htop", "btop"
        );
        println!(
            "{:<46} {:>11.2}ms {:>14} {:>12} {:>12}  {} (p90 {:.2} ms)",
            "draw one frame, 1000 agents, 200x50 (median)",
            f50,
            "<= 2 ms",
            "-",
            "-",
            pass(f50 <= 2.0),
            f90
        );
        // The peers' columns of a figure: `field` of each one's (CPU, RSS), as `show` writes it.
        let peers = |field: fn((f64, f64)) -> f64, show: fn(f64) -> String| {
            [htop, btop].map(|p| p.map(|p| show(field(p))).unwrap_or_else(|| "n/a".into()))
        };
        let [htop_cpu, btop_cpu] = peers(|p| p.0, |c| format!("{c:.2}%"));
        let [htop_rss, btop_rss] = peers(|p| p.1, |m| format!("{m:.1}MiB"));
        println!(
            "{:<46} {:>11.2}% {:>14} {:>12} {:>12}  {}",
            format!(
                "own CPU, 1000 idle agents, 1 s refresh, {}s",
                window.as_secs()
            ),
            ours_cpu,
            "<= 0.5 %",
            htop_cpu,
            btop_cpu,
            pass(ours_cpu <= 0.5)
        );
        println!(
            "{:<46} {:>10.1}MiB {:>14} {:>12} {:>12}  {}",
            "peak resident memory",
            ours_rss,
            "<= 32 MiB",
            htop_rss,
            btop_rss,
            pass(ours_rss <= 32.0)
        );
        println!(
            "CPU used by the peer for every unit symbiont used: htop {}, btop {}",
            ratio(htop),
            ratio(btop)
        );
        println!(
            "launching all {AGENTS} agents until the screen showed them running: {:.2} s; settled after {:.1} s more; quit with stop: {:.2} s (exit {code:?}); agent processes left: {left}",
            launch_all.as_secs_f64(),
            settled.as_secs_f64(),
            stop_all.as_secs_f64()
        );
    }

    /// The figures as JSON, in the shape the other benches write (`scripts/bench` merges them).
    /// The CPU and memory figures are one measurement window each (n = 1); htop is the baseline
    /// (SPEC 6 names its figure), btop is listed beside it.
    fn write_figures(
        args: &Args,
        window: Duration,
        frames: Vec<f64>,
        ours: (f64, f64),
        peers: [(&str, Option<(f64, f64)>); 2],
        diag: Value,
    ) {
        let peer_figure =
            |i: usize, ours: f64, key: &str, name: String, unit: &'static str, max: f64| {
                let pick = |p: (f64, f64)| if i == 0 { p.0 } else { p.1 };
                let baselines: Vec<Value> = peers
                    .iter()
                    .map(|(n, p)| {
                        let v = p.map(pick);
                        json!({"name": n, "median": v, "ratio": v.map(|v| ours / v)})
                    })
                    .collect();
                let what = format!(
                    "{} in the same 200x50 pty, same 1000 agents, 1 s refresh",
                    peers[0].0
                );
                let f = Figure::new(key, name, unit).ours(vec![ours]);
                let f = match peers[0].1.map(pick) {
                    Some(b) => f.baseline(vec![b], what),
                    None => f.no_baseline(what),
                };
                let mut v = f.target(Target::Median(max)).json();
                v["baselines"] = Value::Array(baselines);
                v
            };
        let figures = vec![
            Figure::new("frame_1000", "7. draw one frame, 1000 agents, 200x50", "ms")
                .ours(frames)
                .no_baseline("none (no peer draws our table)")
                .target(Target::Median(2.0))
                .json(),
            peer_figure(
                0,
                ours.0,
                "dashboard_cpu",
                format!(
                    "8. dashboard own CPU, 1000 idle agents, {} s",
                    window.as_secs()
                ),
                "% of a core",
                0.5,
            ),
            peer_figure(
                1,
                ours.1,
                "dashboard_rss",
                "8b. dashboard peak RSS, 1000 idle agents".into(),
                "MiB",
                32.0,
            ),
        ];
        write_json(
            &args.json,
            &json!({
                "bench": "dashboard",
                "mode": args.mode(),
                "figures": figures,
                "diagnostics": diag,
            }),
        );
    }
}
