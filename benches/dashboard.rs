//! Dashboard benchmark: the cost of watching 1000 idle agents.
//!
//!   cargo bench --bench dashboard             # 30 s measurement windows
//!   cargo bench --bench dashboard -- --quick  # 8 s windows, fewer frames
//!
//! Prints: the time to draw one frame of 1000 agents (200x50), and the dashboard's own CPU
//! (% of one core) and peak resident memory with 1000 idle native agents at a 1 s refresh in a
//! 200x50 pseudo-terminal; htop and btop on the same workload when installed, with the ratio.

#[path = "../tests/common/pty.rs"]
mod pty;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use symbiont::sandbox::Limits;
use symbiont::supervisor::RunState;
use symbiont::tier::SecurityTier;
use symbiont::tui::app::{AgentRow, App};
use symbiont::tui::keymap::Keymap;

const AGENTS: usize = 1000;
const W: u16 = 200;
const H: u16 = 50;

fn clk_tck() -> f64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// utime + stime of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = s
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let f = |i: usize| {
        rest.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (f(11) + f(12)) / clk_tck()
}

fn hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn frame_time(iterations: usize) -> (f64, f64) {
    let mut app = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
    let rows = (0..AGENTS as u64)
        .map(|i| AgentRow {
            id: i,
            agent: format!("agent-{i:04}"),
            trigger: "start".into(),
            tier: SecurityTier::None,
            pid: Some(10000 + i as i32),
            state: RunState::Running,
            cpu_pct: (i % 7) as f64,
            rss: (i % 50 + 1) << 20,
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
            argv: vec!["sleep".into(), "3600".into()],
            cwd: "/tmp".into(),
            env_names: vec!["PATH".into()],
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
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (
        percentile(&mut times.clone(), 0.5),
        percentile(&mut times, 0.9),
    )
}

/// Own CPU (% of one core) and peak RSS (MiB) of `pid` over `window`.
fn measure(pid: u32, window: Duration) -> (f64, f64) {
    let (c0, t0) = (cpu_secs(pid), Instant::now());
    std::thread::sleep(window);
    let (c1, dt) = (cpu_secs(pid), t0.elapsed().as_secs_f64());
    ((c1 - c0) / dt * 100.0, hwm_kib(pid) as f64 / 1024.0)
}

/// A peer tool on the same workload: its own CPU and peak RSS, or None if it is not installed
/// or did not keep running. Each gets a private HOME with a 1 s refresh configured.
fn peer(cmd: &str, args: &[&str], settle: Duration, window: Duration) -> Option<(f64, f64)> {
    let path = std::env::var_os("PATH")?;
    if !std::env::split_paths(&path).any(|d| d.join(cmd).is_file()) {
        return None;
    }
    let home = std::env::temp_dir().join(format!("symbiont-bench-{cmd}-{}", std::process::id()));
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let window = Duration::from_secs(if quick { 8 } else { 30 });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load {}, kernel {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );

    let (f50, f90) = frame_time(if quick { 100 } else { 500 });

    // The workload: 1000 idle native agents.
    let dir = std::env::temp_dir().join(format!("symbiont-bench-dash-{}", std::process::id()));
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
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .map(|env| env.windows(16).any(|w| w == b"SYMBIONT_AGENT=I"))
                .unwrap_or(false)
        })
        .count();
    let _ = std::fs::remove_dir_all(&dir);

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
    println!(
        "{:<46} {:>11.2}% {:>14} {:>12} {:>12}  {}",
        format!(
            "own CPU, 1000 idle agents, 1 s refresh, {}s",
            window.as_secs()
        ),
        ours_cpu,
        "<= 0.5 %",
        htop.map(|h| format!("{:.2}%", h.0))
            .unwrap_or_else(|| "n/a".into()),
        btop.map(|h| format!("{:.2}%", h.0))
            .unwrap_or_else(|| "n/a".into()),
        pass(ours_cpu <= 0.5)
    );
    println!(
        "{:<46} {:>10.1}MiB {:>14} {:>12} {:>12}  {}",
        "peak resident memory",
        ours_rss,
        "<= 32 MiB",
        htop.map(|h| format!("{:.1}MiB", h.1))
            .unwrap_or_else(|| "n/a".into()),
        btop.map(|h| format!("{:.1}MiB", h.1))
            .unwrap_or_else(|| "n/a".into()),
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
