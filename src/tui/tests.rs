//! The dashboard drawn into a test backend and compared with snapshots, and its key and
//! mouse handling driven directly.

use std::time::Duration;

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{AgentRow, App, Cmd, Dialog, Launchable};
use super::keymap::Keymap;
use super::ui::draw;
use crate::supervisor::watchdog::ProcRow;
use crate::supervisor::Limits;
use crate::supervisor::{Reason, RunState, Scope, Sig};
use crate::tier::SecurityTier;

const MB: u64 = 1 << 20;

fn row(id: u64, agent: &str, rss_mb: u64, limit_mb: u64, elapsed: u64, timeout: u64) -> AgentRow {
    AgentRow {
        id,
        agent: agent.into(),
        trigger: "start".into(),
        tier: SecurityTier::None,
        sandbox: Default::default(),
        denials: 0,
        denied: Vec::new(),
        pid: Some(1000 + id as i32),
        state: RunState::Running,
        cpu_pct: 12.5,
        rss: rss_mb * MB,
        peak_rss: rss_mb * MB,
        cpu_secs: 1.5,
        processes: 1,
        elapsed: Duration::from_secs(elapsed),
        limits: Limits {
            memory_bytes: Some(limit_mb * MB),
            timeout: Some(Duration::from_secs(timeout)),
            cpu_seconds: Some(300),
            max_processes: Some(256),
            ..Limits::default()
        },
        exit_code: None,
        signal: None,
        reason: None,
        procs: vec![ProcRow {
            pid: 1000 + id as i32,
            ppid: 1,
            name: "python3".into(),
            cpu_pct: 12.5,
            rss_bytes: rss_mb * MB,
        }],
        history: (0..40)
            .map(|i| ((i % 10) as f32 * 5.0, (i as u64) * MB))
            .collect(),
        to_limit: None,
        argv: vec!["python3".into(), "worker.py".into(), "--fast".into()],
        cwd: "/tmp/symbiont-native".into(),
        env_names: vec!["PATH".into(), "HOME".into(), "SYMBIONT_AGENT".into()],
        note: None,
        actions: crate::tier::native::ACTIONS,
        version: 1,
    }
}

/// Three agents: a normal one, one at 85 % of its memory limit (warn) and one at 97 % of its
/// timeout (critical), plus one that exited.
fn app() -> App {
    let mut a = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
    let mut done = row(4, "Finished", 0, 256, 3, 60);
    done.state = RunState::Exited;
    done.reason = Some(Reason::Exited);
    done.exit_code = Some(0);
    done.procs.clear();
    done.peak_rss = 96 * MB;
    done.cpu_secs = 2.25;
    let mut killed = row(5, "Runaway", 0, 256, 7, 60);
    killed.state = RunState::Exited;
    killed.reason = Some(Reason::KilledByOperator);
    killed.signal = Some("SIGKILL".into());
    killed.procs.clear();
    a.set_rows(vec![
        row(1, "Steady", 40, 512, 20, 300),
        row(2, "Leaky", 218, 256, 30, 300),
        row(3, "Slowpoke", 5, 256, 58, 60),
        done,
        killed,
    ]);
    a
}

fn render(app: &mut App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    t
}

fn text(buf: &Buffer) -> String {
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

fn line_of<'a>(screen: &'a str, needle: &str) -> (usize, &'a str) {
    screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in\n{screen}"))
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

#[test]
fn table_with_a_normal_a_yellow_and_a_red_agent() {
    let mut a = app();
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("table_levels", screen);
    // Colour is never the only signal: a marker says it in text too.
    let (y_leaky, l) = line_of(&screen, "Leaky");
    assert!(l.contains("▲mem 85%"), "{l}");
    let (y_slow, l) = line_of(&screen, "Slowpoke");
    assert!(l.contains("‼time 97%"), "{l}");
    let (y_steady, l) = line_of(&screen, "Steady");
    assert!(!l.contains('▲') && !l.contains('‼'), "{l}");
    let buf = t.backend().buffer();
    assert_eq!(buf[(4, y_leaky as u16)].fg, Color::Yellow);
    assert_eq!(buf[(4, y_slow as u16)].fg, Color::Red);
    assert_ne!(buf[(4, y_steady as u16)].fg, Color::Yellow);
    assert!(screen.contains("NATIVE: NO ISOLATION"));
    assert!(line_of(&screen, "Runaway").1.contains("killed by operator"));
    assert!(line_of(&screen, "Finished").1.contains("exit 0"));
}

#[test]
fn expanded_tree_shows_each_process() {
    let mut a = app();
    a.rows[1].procs = vec![
        ProcRow {
            pid: 1002,
            ppid: 1,
            name: "bash".into(),
            cpu_pct: 0.0,
            rss_bytes: 3 * MB,
        },
        ProcRow {
            pid: 1010,
            ppid: 1002,
            name: "python3".into(),
            cpu_pct: 40.0,
            rss_bytes: 200 * MB,
        },
        ProcRow {
            pid: 1011,
            ppid: 1010,
            name: "sleep".into(),
            cpu_pct: 0.0,
            rss_bytes: MB,
        },
    ];
    a.set_rows(a.rows.clone());
    a.on_key(key(KeyCode::Down));
    assert!(a.on_key(key(KeyCode::Tab)).is_empty());
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("expanded_tree", screen);
    let (yb, _) = line_of(&screen, "└ bash");
    let (yp, lp) = line_of(&screen, "└ python3");
    let (ys, _) = line_of(&screen, "└ sleep");
    assert!(yb < yp && yp < ys, "children follow their parents");
    assert!(
        lp.contains("1010") && lp.contains("200.0 MiB") && lp.contains("40.0"),
        "{lp}"
    );
}

#[test]
fn detail_pane_with_sparklines_and_logs() {
    let mut a = app();
    a.on_key(key(KeyCode::Enter));
    a.log_lines = (1..=30).map(|i| format!("log line {i}")).collect();
    let t = render(&mut a, 120, 40);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("detail_pane", screen);
    assert!(screen.contains("CPU 12.5%") && screen.contains("MEM 40.0 MiB of 512.0 MiB"));
    assert!(screen.contains("argv: python3 worker.py --fast"));
    assert!(screen.contains("env: PATH HOME SYMBIONT_AGENT"));
    assert!(
        screen.contains("log line 30"),
        "follow shows the newest line"
    );
    // Scroll back, then search.
    for _ in 0..10 {
        a.on_key(key(KeyCode::Up));
    }
    let screen = text(render(&mut a, 120, 40).backend().buffer());
    assert!(
        !screen.contains("log line 30")
            && screen.contains("log line 20")
            && screen.contains("scrolled")
    );
    a.on_key(key(KeyCode::Char('/')));
    for c in "line 3".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    a.on_key(key(KeyCode::Enter));
    assert_eq!(a.search.as_deref(), Some("line 3"));
    let screen = text(render(&mut a, 120, 40).backend().buffer());
    assert!(screen.contains("search `line 3`"));
}

/// Windows has no signals: the dialog offers terminating the job, suspend and resume.
#[cfg(windows)]
#[test]
fn kill_dialog_on_windows_offers_what_a_job_can_do() {
    let mut a = app();
    a.on_key(key(KeyCode::Down));
    assert!(a.on_key(key(KeyCode::Char('x'))).is_empty());
    let t = render(&mut a, 100, 30);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("terminate the job"), "{screen}");
    assert!(!screen.contains("SIGHUP"), "{screen}");
    let cmds = a.on_key(key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Cmd::Signal {
            run: 2,
            sig: Sig::Term,
            scope: Scope::Tree
        }]
    );
    a.on_key(key(KeyCode::Char('x')));
    a.on_key(key(KeyCode::Down));
    let cmds = a.on_key(key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Cmd::Signal {
            run: 2,
            sig: Sig::Stop,
            scope: Scope::Tree
        }]
    );
}

#[cfg(unix)]
#[test]
fn kill_dialog_offers_signals_and_scope() {
    let mut a = app();
    a.on_key(key(KeyCode::Down));
    assert!(a.on_key(key(KeyCode::Char('x'))).is_empty());
    assert!(matches!(a.dialog, Some(Dialog::Kill { .. })));
    let t = render(&mut a, 100, 30);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("kill_dialog", screen);
    assert!(screen.contains("SIGTERM") && screen.contains("then KILL after the grace period"));
    assert!(screen.contains("[x] whole tree"));
    // Down to KILL, Enter: the whole tree of the selected agent (Leaky, run 2).
    a.on_key(key(KeyCode::Down));
    let cmds = a.on_key(key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Cmd::Signal {
            run: 2,
            sig: Sig::Kill,
            scope: Scope::Tree
        }]
    );
    assert!(a.dialog.is_none());
    // Default choice is TERM (with escalation); Tab switches to the one process.
    a.on_key(key(KeyCode::F(9)));
    a.on_key(key(KeyCode::Tab));
    let cmds = a.on_key(key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Cmd::Signal {
            run: 2,
            sig: Sig::Term,
            scope: Scope::Process(1002)
        }]
    );
}

#[test]
fn capital_x_kills_the_tree_at_once() {
    let mut a = app();
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Down));
    let cmds = a.on_key(key(KeyCode::Char('X')));
    assert_eq!(
        cmds,
        vec![Cmd::Signal {
            run: 3,
            sig: Sig::Kill,
            scope: Scope::Tree
        }]
    );
    assert!(a.dialog.is_none());
}

#[test]
fn help_lists_every_key() {
    let mut a = app();
    a.on_key(key(KeyCode::Char('?')));
    let t = render(&mut a, 120, 40);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("help", screen);
    for action in super::keymap::Action::ALL {
        assert!(
            screen.contains(action.name()),
            "help misses {}",
            action.name()
        );
    }
    a.on_key(key(KeyCode::Char('z')));
    assert!(a.dialog.is_none(), "any key closes the help");
}

#[test]
fn narrow_terminal_80x24() {
    let mut a = app();
    let t = render(&mut a, 80, 24);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("narrow_80x24", screen);
    assert!(screen.contains("Leaky") && screen.contains("▲mem"));
}

#[test]
fn mouse_selects_a_row_and_right_click_opens_the_kill_dialog() {
    let mut a = app();
    render(&mut a, 160, 20);
    let area = a.table_area;
    let click = |kind, row| MouseEvent {
        kind,
        column: area.x + 3,
        row,
        modifiers: KeyModifiers::NONE,
    };
    a.on_mouse(click(MouseEventKind::Down(MouseButton::Left), area.y + 2));
    assert_eq!(a.selected_row().unwrap().agent, "Slowpoke");
    a.on_mouse(click(MouseEventKind::Down(MouseButton::Right), area.y + 1));
    assert_eq!(a.selected_row().unwrap().agent, "Leaky");
    assert!(matches!(&a.dialog, Some(Dialog::Kill { agent, .. }) if agent == "Leaky"));
}

#[test]
fn filter_sort_and_near_limit_toggle() {
    let mut a = app();
    a.on_key(key(KeyCode::Char('!')));
    let names: Vec<&str> = a.items.iter().map(|_| "").collect();
    assert_eq!(names.len(), 2, "only Leaky and Slowpoke are near a limit");
    a.on_key(key(KeyCode::Char('!')));
    assert_eq!(
        a.selected_row().unwrap().agent,
        "Leaky",
        "Steady was hidden, the selection moved to Leaky"
    );
    a.on_key(key(KeyCode::Char('N')));
    assert_eq!(
        a.selected_row().unwrap().agent,
        "Leaky",
        "the selection stays on its agent"
    );
    a.on_key(key(KeyCode::Char('M')));
    a.selected = 0;
    assert_eq!(
        a.selected_row().unwrap().agent,
        "Leaky",
        "largest memory first"
    );
    a.on_key(key(KeyCode::Char('/')));
    for c in "slow".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    a.on_key(key(KeyCode::Enter));
    assert_eq!(a.items.len(), 1);
    assert_eq!(a.selected_row().unwrap().agent, "Slowpoke");
}

#[test]
fn quitting_with_live_agents_asks_first() {
    let mut a = app();
    assert!(a.on_key(key(KeyCode::Char('q'))).is_empty());
    assert_eq!(a.dialog, Some(Dialog::ConfirmQuit { alive: 3 }));
    assert!(a.on_key(key(KeyCode::Esc)).is_empty());
    a.on_key(key(KeyCode::Char('q')));
    assert_eq!(
        a.on_key(key(KeyCode::Char('y'))),
        vec![Cmd::Quit { stop: true }]
    );
    // A second quit (q or Ctrl-C) while stopping kills at once, without asking.
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), vec![Cmd::KillAll]);
    assert_eq!(a.dialog, None);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(a.on_key(ctrl_c), vec![Cmd::KillAll]);
}

#[test]
fn launch_dialog_offers_loaded_agents_and_a_command() {
    let mut a = app();
    a.launchables = vec![Launchable {
        agent: "Steady".into(),
        trigger: "start".into(),
        tier: SecurityTier::None,
    }];
    a.on_key(key(KeyCode::Char('n')));
    assert_eq!(a.on_key(key(KeyCode::Enter)), vec![Cmd::Launch(0)]);
    a.on_key(key(KeyCode::Char('n')));
    a.on_key(key(KeyCode::Down));
    for c in "sh -c 'sleep 1'".chars() {
        a.on_key(key(KeyCode::Char(c)));
    }
    let screen = text(render(&mut a, 100, 30).backend().buffer());
    assert!(screen.contains("command: sh -c 'sleep 1'"), "{screen}");
    assert_eq!(
        a.on_key(key(KeyCode::Enter)),
        vec![Cmd::LaunchCommand {
            command: "sh -c 'sleep 1'".into(),
            tier: SecurityTier::None
        }]
    );
}

#[test]
fn drawing_a_thousand_agents_builds_only_the_visible_lines() {
    let mut a = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
    a.set_rows(
        (0..1000)
            .map(|i| row(i, &format!("agent-{i:04}"), 10, 512, 5, 300))
            .collect(),
    );
    a.selected = 700;
    let screen = text(render(&mut a, 200, 50).backend().buffer());
    assert!(screen.contains("agent-0700"));
    assert!(!screen.contains("agent-0000"));
    assert!(screen.contains("1000/1000"));
}

/// A container run: the dialog offers what a container can do, on the whole container only.
#[test]
fn kill_dialog_on_a_container_offers_only_what_its_tier_can_do() {
    let mut a = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
    let mut c = row(7, "Boxed", 40, 512, 20, 300);
    c.tier = SecurityTier::Tier1;
    c.actions = crate::tier::container::ACTIONS;
    a.set_rows(vec![c]);
    assert!(a.on_key(key(KeyCode::Char('x'))).is_empty());
    let screen = text(render(&mut a, 100, 30).backend().buffer());
    assert!(screen.contains("stop the container at once"), "{screen}");
    assert!(!screen.contains("SIGKILL"), "{screen}");
    assert!(
        screen.contains("this tier cannot aim at one process"),
        "{screen}"
    );
    // Tab cannot switch to one process; Enter sends the tree the first choice.
    a.on_key(key(KeyCode::Tab));
    let cmds = a.on_key(key(KeyCode::Enter));
    assert_eq!(
        cmds,
        vec![Cmd::Signal {
            run: 7,
            sig: Sig::Term,
            scope: Scope::Tree
        }]
    );
}

// ---------------------------------------------------------------- issue 15: charts, finished rows

use super::app::{approx, time_to_limit};

#[test]
fn time_to_limit_projects_a_steady_growth_and_nothing_else() {
    let s = Duration::from_secs(1);
    // 10 MiB a second from 100 MiB: at 190 MiB after 10 samples, 256 MiB in 6.6 s.
    let growing: Vec<u64> = (0..10).map(|i| (100 + 10 * i) * MB).collect();
    let d = time_to_limit(&growing, s, 256 * MB).unwrap();
    assert!((d.as_secs_f64() - 6.6).abs() < 1e-6, "{d:?}");
    assert_eq!(approx(d), "~7 s");
    // Only the last samples count: an old plateau does not slow the projection.
    let mut late: Vec<u64> = vec![100 * MB; 50];
    late.extend(&growing);
    assert_eq!(time_to_limit(&late, s, 256 * MB), Some(d));
    // The period scales it: samples half a second apart reach the limit twice as fast.
    let half = time_to_limit(&growing, Duration::from_millis(500), 256 * MB).unwrap();
    assert!((half.as_secs_f64() - 3.3).abs() < 1e-6, "{half:?}");
    // Flat, shrinking, noisy, too short: no projection.
    assert_eq!(time_to_limit(&[50 * MB; 10], s, 256 * MB), None);
    let shrinking: Vec<u64> = (0..10).map(|i| (200 - 10 * i) * MB).collect();
    assert_eq!(time_to_limit(&shrinking, s, 256 * MB), None);
    let noisy: Vec<u64> = [100, 180, 90, 170, 95, 175, 100, 185, 105, 170]
        .iter()
        .map(|m| m * MB)
        .collect();
    assert_eq!(time_to_limit(&noisy, s, 256 * MB), None);
    assert_eq!(time_to_limit(&growing[..3], s, 256 * MB), None);
    // A growth too slow to matter (under 0.1 % of the limit a sample) is flat.
    let creeping: Vec<u64> = (0..10).map(|i| 100 * MB + i * 1024).collect();
    assert_eq!(time_to_limit(&creeping, s, 256 * MB), None);
    // At or past the limit: now.
    let over: Vec<u64> = (0..10).map(|i| (200 + 10 * i) * MB).collect();
    assert_eq!(time_to_limit(&over, s, 256 * MB), Some(Duration::ZERO));
    // Beyond a day: nothing to warn about.
    assert_eq!(time_to_limit(&growing, s, 1 << 50), None);
}

/// A growing agent: its memory climbs toward the limit in the history.
fn growing_app() -> App {
    let mut a = app();
    let r = &mut a.rows[1];
    r.history = (0..60)
        .map(|i| ((20 + i % 7 * 10) as f32, (100 + 2 * i as u64) * MB))
        .collect();
    r.rss = 218 * MB;
    r.to_limit = Some(Duration::from_secs(19));
    r.argv = vec![
        "python3".into(),
        "-c".into(),
        "import time\nb=[]\nfor i in range(60):\n    b.append(1)".into(),
    ];
    a.set_rows(a.rows.clone());
    a.on_key(key(KeyCode::Down));
    a.on_key(key(KeyCode::Enter));
    a
}

#[test]
fn detail_pane_charts_draw_cpu_memory_and_the_limit_line() {
    let mut a = growing_app();
    let t = render(&mut a, 120, 40);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("detail_charts", screen);
    assert!(
        screen.contains("MEM 218.0 MiB of 256.0 MiB · limit in ~19 s"),
        "{screen}"
    );
    assert!(screen.contains("CPU 12.5%"));
    // The legend names the lines (not only their colours) and the axis runs to now.
    assert!(screen.contains("limit") && screen.contains("now"));
    // The limit is a line of its own marker across the chart's width.
    let (_, l) = line_of(&screen, "256.0 MiB│");
    assert!(l.matches('•').count() > 20, "{l}");
    // argv keeps its newlines.
    assert!(screen.contains("argv: python3 -c 'import time"), "{screen}");
    assert!(screen.contains("      b=[]"), "{screen}");
    assert!(screen.contains("      for i in range(60):"), "{screen}");
}

#[test]
fn table_has_the_projection_column() {
    let mut a = growing_app();
    a.detail = false;
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    assert!(line_of(&screen, "→LIMIT").1.contains("AGENT"));
    assert!(line_of(&screen, "Leaky").1.contains("~19 s"), "{screen}");
    assert!(!line_of(&screen, "Steady").1.contains("~"), "{screen}");
}

#[test]
fn finished_row_keeps_peak_memory_cpu_time_and_duration() {
    let mut a = app();
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    let (_, l) = line_of(&screen, "Finished");
    insta::assert_snapshot!("finished_row", l.trim_end());
    assert!(
        l.contains("↑96.0 MiB") && l.contains("2.2s") && l.contains("3.0s/1m00s"),
        "{l}"
    );
    assert!(!l.contains(" - "), "{l}");
    // No tree to expand on a finished row: no ▸.
    assert!(!l.contains('▸') && line_of(&screen, "Steady").1.contains("▸ Steady"));
    // Its detail pane shows the peak, not the last sample (0 B).
    let i = a
        .items
        .iter()
        .position(|it| matches!(*it, super::app::Item::Agent(3)))
        .unwrap();
    a.selected = i;
    a.on_key(key(KeyCode::Enter));
    let t = render(&mut a, 120, 40);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("finished_detail", screen);
    assert!(
        screen.contains("MEM peak 96.0 MiB of 256.0 MiB"),
        "{screen}"
    );
    assert!(
        screen.contains("peak mem 96.0 MiB") && screen.contains("ran 3.0s"),
        "{screen}"
    );
    assert!(!screen.contains("MEM 0 B"));
}

#[test]
fn header_cpu_is_zero_without_agents() {
    let mut a = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("│ CPU 0% │"), "{screen}");
    assert!(!screen.contains("-0%"));
}

#[test]
fn tree_lines_branch_and_end() {
    let mut a = app();
    let p = |pid, ppid, name: &str| ProcRow {
        pid,
        ppid,
        name: name.into(),
        cpu_pct: 0.0,
        rss_bytes: MB,
    };
    a.rows[0].procs = vec![p(1001, 1, "bash"), p(1020, 1001, "a"), p(1021, 1001, "b")];
    a.set_rows(a.rows.clone());
    a.on_key(key(KeyCode::Tab));
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("└ bash"), "{screen}");
    assert!(screen.contains("├ a"), "{screen}");
    assert!(screen.contains("└ b"), "{screen}");
}

#[test]
fn no_color_draws_no_colour_and_keeps_every_signal() {
    let mut a = growing_app();
    a.mono = true;
    a.search = Some("line".into());
    a.log_lines = vec!["a line".into()];
    let t = render(&mut a, 160, 40);
    let buf = t.backend().buffer();
    for c in buf.content.iter() {
        assert_eq!((c.fg, c.bg), (Color::Reset, Color::Reset), "{c:?}");
    }
    let screen = text(buf);
    // The banner and the markers are still there, the banner in reverse video.
    let (y, l) = line_of(&screen, "NATIVE: NO ISOLATION");
    let x = l.chars().position(|c| c == 'N').unwrap() as u16;
    assert!(buf[(x, y as u16)]
        .modifier
        .contains(ratatui::style::Modifier::REVERSED));
    assert!(screen.contains("▲mem") && screen.contains("‼time"));
}

#[test]
fn the_detail_pane_says_what_holds_a_runs_limits_where_no_cgroup_does() {
    let mut a = app();
    // The first agent's row, as the tier describes a host without cgroups for this user.
    let i = a
        .items
        .iter()
        .position(|it| matches!(*it, super::app::Item::Agent(_)))
        .unwrap();
    let super::app::Item::Agent(idx) = a.items[i] else {
        unreachable!()
    };
    a.rows[idx].note = Some(
        "no cgroup holds this run's limits here: memory by RLIMIT_DATA per process and the \
         watchdog every 100 ms\x1b[2J"
            .into(),
    );
    // Its row marks the weaker hold beside the memory figure.
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    let agent = a.rows[idx].agent.clone();
    let (_, l) = line_of(&screen, &agent);
    assert!(l.contains("%~"), "{l}");
    a.selected = i;
    a.on_key(key(KeyCode::Enter));
    let t = render(&mut a, 160, 40);
    let screen = text(t.backend().buffer());
    assert!(
        screen.contains("note: no cgroup holds this run's limits"),
        "{screen}"
    );
    assert!(screen.contains("RLIMIT_DATA"), "{screen}");
    // Shown, never interpreted.
    assert!(screen.contains("^[[2J"), "{screen}");
}

/// Every word of `message`, in order, on `screen` (however it was wrapped).
fn shows_whole(screen: &str, message: &str) -> bool {
    let squeezed: String = screen
        .lines()
        .map(|l| l.trim_matches(|c: char| c == ' ' || c == '│'))
        .collect::<Vec<_>>()
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    squeezed.contains(message)
}

const LONG_ERROR: &str = "launch failed: `ruby` (/usr/bin/ruby) is not an allowed executable. \
     Allowed: bash (/usr/bin/bash), sh (/usr/bin/sh), python3 (/usr/bin/python3), python \
     (/usr/bin/python), node (/usr/bin/node). To allow it, add its name or absolute path to \
     native_execution.allowed_executables";

/// An error longer than the status line is wrapped over the header's lines, whole, and the
/// table moves down to make room.
#[test]
fn a_long_error_is_wrapped_whole_on_the_status_line() {
    let mut a = app();
    a.message = Some(LONG_ERROR.into());
    let t = render(&mut a, 100, 20);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("long_error_wrapped", screen);
    assert!(shows_whole(&screen, LONG_ERROR), "{screen}");
    assert!(!a.message_box);
    // The header grew: the table's heading is below the message's last line.
    let (last, _) = line_of(&screen, "native_execution.allowed_executables");
    let (heading, _) = line_of(&screen, "AGENT");
    assert!(heading > last, "{screen}");
    // A key goes on to do what it does (`q` with agents alive asks first), and the message goes.
    a.on_key(key(KeyCode::Char('q')));
    assert!(matches!(a.dialog, Some(Dialog::ConfirmQuit { .. })));
    assert_eq!(a.message, None);
}

/// One too long for a few lines shows whole in a box; any key closes the box and does
/// nothing else.
#[test]
fn a_very_long_error_shows_whole_in_a_box_that_any_key_closes() {
    let mut a = app();
    let message = format!("{LONG_ERROR}. {LONG_ERROR}");
    a.message = Some(message.clone());
    let t = render(&mut a, 80, 24);
    let screen = text(t.backend().buffer());
    insta::assert_snapshot!("long_error_box", screen);
    assert!(a.message_box);
    assert!(shows_whole(&screen, &message), "{screen}");
    assert!(screen.contains("any key closes this"), "{screen}");
    // `q` closes the box, and does not quit.
    assert_eq!(a.on_key(key(KeyCode::Char('q'))), vec![]);
    assert!(a.dialog.is_none() && !a.quitting);
    assert_eq!(a.message, None);
    let screen = text(render(&mut a, 80, 24).backend().buffer());
    assert!(!screen.contains("any key closes this"), "{screen}");
    assert!(!a.message_box);
}

#[test]
fn wrapping_keeps_every_character() {
    use super::ui::wrap;
    assert_eq!(wrap("ab cd ef", 5), vec!["ab cd", "ef"]);
    // A word wider than the line is cut inside, nothing is lost.
    assert_eq!(wrap("abcdefgh ij", 3), vec!["abc", "def", "gh", "ij"]);
    // The message's own lines stay lines.
    assert_eq!(wrap("one\ntwo three", 20), vec!["one", "two three"]);
    assert_eq!(wrap("", 10), vec![""]);
    assert_eq!(wrap("日本語のエラー", 6), vec!["日本語", "のエラ", "ー"]);
}

#[test]
fn a_confined_row_shows_its_sandbox_level() {
    let mut a = App::new(Keymap::default(), 0.8, 0.95, Duration::from_secs(1));
    let mut strict = row(1, "Strict1", 40, 512, 20, 300);
    strict.sandbox = crate::tier::SandboxLevel::Strict;
    strict.denials = 2;
    strict.denied = vec!["socket(AF_INET): network".into(), "io_uring".into()];
    let mut moderate = row(2, "Moderate1", 40, 512, 20, 300);
    moderate.sandbox = crate::tier::SandboxLevel::Moderate;
    a.set_rows(vec![strict, moderate, row(3, "Open1", 40, 512, 20, 300)]);
    let t = render(&mut a, 160, 20);
    let screen = text(t.backend().buffer());
    assert!(
        line_of(&screen, "Strict1").1.contains(" native/S "),
        "{screen}"
    );
    assert!(
        line_of(&screen, "Moderate1").1.contains(" native/M ")
            && !line_of(&screen, "Moderate1").1.contains("denied")
            && line_of(&screen, "Strict1").1.contains("⊘2 denied"),
        "{screen}"
    );
    assert!(line_of(&screen, "Open1").1.contains(" native "), "{screen}");
    a.on_key(key(KeyCode::Enter));
    let t = render(&mut a, 120, 40);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("sandbox: Strict, 2 denied"), "{screen}");
    assert!(screen.contains("⊘ socket(AF_INET): network") && screen.contains("⊘ io_uring"));
}
