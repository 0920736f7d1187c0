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
    let (_, line) = p.line_with("▸ HungryK").unwrap();
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
    unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
    p.wait_exit(Duration::from_secs(15));
    assert!(p.left_alternate_screen(), "alternate screen not left");
    assert!(p.cooked(), "raw mode not undone");
    for a in ["CalmT", "HungryT", "OtherT"] {
        assert_none_left(a);
    }
}
