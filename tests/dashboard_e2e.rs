//! The real binary in a real pseudo-terminal: the screen is read back through a terminal
//! emulator (vt100), keys and mouse clicks are typed into it.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::pty::Pty;
use common::*;

const W: u16 = 160;
const H: u16 = 40;

fn three_agents(s: &Scratch, tag: &str) -> std::path::PathBuf {
    s.config("max_memory_mb = 256");
    s.write(
        "agents.dsl",
        &format!(
            "agent Calm{tag} {{ security {{ tier: None }} on start {{ execute_native(\"sh -c 'sleep 300'\") }} }}\n\
             agent Hungry{tag} {{ security {{ tier: None }} on start {{ execute_native(\"python3 -c 'import time, subprocess; b = bytearray(225 << 20); subprocess.Popen([\\\"sleep\\\", \\\"300\\\"]); print(\\\"allocated\\\", flush=True); time.sleep(300)'\") }} }}\n\
             agent Other{tag} {{ security {{ tier: None }} on start {{ execute_native(\"bash -c 'sleep 300 & wait'\") }} }}\n"
        ),
    )
}

#[test]
fn warning_shown_then_keyboard_kill_takes_the_tree_and_shows_the_reason() {
    let s = Scratch::new("e2e-kbd");
    let f = three_agents(&s, "K");
    let mut p = Pty::spawn(s.command(&["run", f.to_str().unwrap()]), W, H);
    p.wait_for("NATIVE: NO ISOLATION", Duration::from_secs(10));
    p.wait_for("▲mem", Duration::from_secs(15));
    let (_, line) = p.line_with("▸ HungryK").unwrap();
    assert!(
        line.contains("▲mem"),
        "the warning is on the hungry agent: {line}"
    );
    assert!(
        wait_for(|| agent_pids("HungryK").len() >= 2, Duration::from_secs(5)),
        "python and its sleep child"
    );
    // Keyboard only: down to the second agent, the kill dialog, Enter (TERM, whole tree).
    p.send("j");
    p.send("x");
    p.wait_for("kill HungryK", Duration::from_secs(5));
    p.send("\r");
    let screen = p.wait_for("killed by operator", Duration::from_secs(10));
    // An exited agent has no tree to expand: no ▸.
    let (_, line) = p.line_with("  HungryK").unwrap();
    assert!(
        line.contains("killed by operator") && line.contains("exited"),
        "{line}\n{screen}"
    );
    assert_none_left("HungryK");
    // The others are untouched.
    assert!(!agent_pids("CalmK").is_empty() && !agent_pids("OtherK").is_empty());
    // Quit asks, then stops everything and gives the terminal back.
    p.send("q");
    p.wait_for("still running", Duration::from_secs(5));
    p.send("y");
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(1));
    assert!(
        p.left_alternate_screen() && p.cooked(),
        "terminal not restored"
    );
    assert_none_left("CalmK");
    assert_none_left("OtherK");
}

#[test]
fn mouse_right_click_reaches_the_kill_dialog_and_capital_x_kills_at_once() {
    let s = Scratch::new("e2e-mouse");
    let f = three_agents(&s, "M");
    let mut p = Pty::spawn(s.command(&["run", f.to_str().unwrap()]), W, H);
    p.wait_for("OtherM", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let (row, _) = p.line_with("▸ OtherM").unwrap();
    // SGR mouse report: right button press at column 5 of that line (1-based).
    p.send(&format!("\x1b[<2;5;{}M", row + 1));
    p.wait_for("kill OtherM", Duration::from_secs(5));
    p.send("\x1b");
    std::thread::sleep(Duration::from_millis(300));
    // `X` on the selected (clicked) agent: SIGKILL to its tree, no dialog.
    p.send("X");
    p.wait_for("killed by operator", Duration::from_secs(10));
    assert_none_left("OtherM");
    p.send("q");
    p.send("y");
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(1));
    assert_none_left("CalmM");
    assert_none_left("HungryM");
}

#[test]
fn no_color_draws_no_colour_and_quitting_prints_the_runs_and_their_logs() {
    let s = Scratch::new("e2e-mono");
    let f = three_agents(&s, "C");
    let mut cmd = s.command(&["run", f.to_str().unwrap()]);
    cmd.env("NO_COLOR", "1");
    let mut p = Pty::spawn(cmd, W, H);
    p.wait_for("NATIVE: NO ISOLATION", Duration::from_secs(10));
    p.wait_for("▲mem", Duration::from_secs(15));
    // The detail pane too (its charts are coloured otherwise).
    p.send("\r");
    p.wait_for("limits:", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(p.coloured_cells(), 0, "{}", p.text());
    assert!(p.reversed_text().contains("NATIVE: NO ISOLATION"));
    p.send("q");
    p.wait_for("still running", Duration::from_secs(5));
    p.send("y");
    assert_eq!(p.wait_exit(Duration::from_secs(15)), Some(1));
    // Back on the normal screen: the session's runs and where their logs are.
    let out = p.text();
    for a in ["CalmC", "HungryC", "OtherC"] {
        assert!(out.contains(a), "{out}");
    }
    assert!(out.contains("PEAK MEM") && out.contains("logs: "), "{out}");
    assert!(out.contains("audit log: "), "{out}");
}

#[test]
fn sigterm_restores_the_terminal_and_leaves_no_agent() {
    let s = Scratch::new("e2e-term");
    let f = three_agents(&s, "T");
    let mut p = Pty::spawn(s.command(&["run", f.to_str().unwrap()]), W, H);
    p.wait_for("OtherT", Duration::from_secs(10));
    assert!(wait_for(
        || !agent_pids("OtherT").is_empty(),
        Duration::from_secs(5)
    ));
    assert!(!p.cooked(), "the dashboard runs in raw mode");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    p.wait_exit(Duration::from_secs(15));
    assert!(p.left_alternate_screen(), "alternate screen not left");
    assert!(p.cooked(), "raw mode not undone");
    for a in ["CalmT", "HungryT", "OtherT"] {
        assert_none_left(a);
    }
}

/// The Windows build's dashboard in a console, under Wine (crossterm on the Windows console
/// API, which Wine maps onto this pty): it lists the agent, `X` terminates the agent's job (cmd
/// and its ping child), `q` quits. Wine's console draws imperfectly, so the kill is read from
/// the audit log and the process table rather than from the screen. Needs the Windows binary in
/// `SYMBIONT_WINDOWS_EXE` and a prefix in `WINEPREFIX`; CI builds both (`.ci/run`).
#[test]
fn windows_build_dashboard_under_wine_lists_the_agent_and_capital_x_terminates_its_job() {
    let test =
        "windows_build_dashboard_under_wine_lists_the_agent_and_capital_x_terminates_its_job";
    let Some(exe) = std::env::var_os("SYMBIONT_WINDOWS_EXE") else {
        common::skip(
            test,
            "no Windows build (set SYMBIONT_WINDOWS_EXE, see scripts/windows-env)",
        );
        return;
    };
    let s = Scratch::new("e2e-wine");
    let win = |p: &std::path::Path| format!("Z:{}", p.display().to_string().replace('/', "\\"));
    let cfg = s.write(
        "wine.toml",
        &format!(
            "[native_execution]\nallowed_executables = [\"cmd\"]\nworking_directory = '{}'\n\n\
             [supervisor]\ndata_dir = '{}'\n",
            win(&s.work()),
            win(&s.path("data"))
        ),
    );
    let dsl = s.write(
        "wine.dsl",
        "agent WinePinger {\n  security { tier: None }\n  limits { timeout: 90s }\n  on start {\n    execute_native(\"cmd /C ping -n 83 127.0.0.1\")\n  }\n}\n",
    );
    // Wine's processes are host processes; a command line is one string or NUL-separated.
    let pids = || {
        let mut p = pids_with_cmdline(b"-n 83 127.0.0.1");
        p.extend(pids_with_cmdline(b"-n\x0083\x00127.0.0.1"));
        p
    };
    let mut cmd = std::process::Command::new("/usr/lib/wine/wine64");
    cmd.arg(exe)
        .args(["run", "--native", "--config", &win(&cfg), &win(&dsl)])
        .env("WINEDEBUG", "-all");
    let mut p = Pty::spawn(cmd, 120, 30);
    p.wait_for("WinePinger", Duration::from_secs(60));
    assert!(
        wait_for(|| pids().len() >= 2, Duration::from_secs(30)),
        "cmd and ping never ran: {:?}",
        pids()
    );
    p.send("X");
    let audit = s.path("data").join("audit.jsonl");
    let killed = wait_for(
        || {
            std::fs::read_to_string(&audit).is_ok_and(|a| {
                a.lines()
                    .any(|l| l.contains("\"exit\"") && l.contains("killed_by_operator"))
            })
        },
        Duration::from_secs(20),
    );
    wait_for(|| pids().is_empty(), Duration::from_secs(5));
    let left = pids();
    p.send("q");
    let exited = p.wait_exit(Duration::from_secs(20)).is_some();
    for &pid in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    if !exited {
        let _ = p.child.kill();
    }
    assert!(
        killed,
        "no operator kill in the audit log: {:?}\n{}",
        std::fs::read_to_string(&audit),
        p.text()
    );
    assert!(left.is_empty(), "cmd or ping left behind: {left:?}");
    assert!(exited, "the dashboard did not quit on q:\n{}", p.text());
}
