//! Drawing the dashboard. Only the visible lines are built, so a frame of a thousand agents
//! costs what a frame of fifty does.

use crate::tier::SandboxLevel;
use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, Wrap,
};
use ratatui::Frame;

use super::app::{
    approx, depth, tree_order, AgentRow, App, Dialog, Item, Level, Sort, Stream, LAUNCH_TIERS,
};
use super::keymap::Action;
use crate::report::bytes;
use crate::supervisor::RunState;

fn level_style(l: Level) -> Style {
    match l {
        Level::Ok => Style::default(),
        Level::Warn => Style::default().fg(Color::Yellow),
        Level::Critical => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

fn dur(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A text gauge: `█████░░░░░ 52%` (a table cell cannot hold a widget).
fn bar(ratio: f64, width: usize) -> String {
    let r = ratio.clamp(0.0, 1.0);
    let full = (r * width as f64).round() as usize;
    format!(
        "{}{} {:>3.0}%",
        "█".repeat(full),
        "░".repeat(width - full),
        ratio * 100.0
    )
}

/// `~` on a running agent whose limits no cgroup holds (the tier's note says what does).
fn weaker_hold(r: &AgentRow) -> &'static str {
    if r.alive() && r.note.is_some() {
        "~"
    } else {
        ""
    }
}

fn state_text(r: &AgentRow) -> &'static str {
    match r.state {
        RunState::Starting => "starting",
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Stopping => "stopping",
        RunState::Exited => "exited",
    }
}

/// The marker that says in text what the colour says: which limit, how close.
fn limit_marker(app: &App, r: &AgentRow) -> String {
    let l = app.level(r);
    if l == Level::Ok {
        // What the sandbox refused, where no limit is near.
        return if r.denials > 0 {
            format!("⊘{} denied", r.denials)
        } else {
            String::new()
        };
    }
    let (what, ratio) = [
        ("mem", r.mem_ratio()),
        ("time", r.time_ratio()),
        ("cpu", r.limits.cpu_seconds.map(|c| r.cpu_secs / c as f64)),
    ]
    .into_iter()
    .filter_map(|(w, x)| x.map(|x| (w, x)))
    .fold(("", 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let sym = if l == Level::Critical { "‼" } else { "▲" };
    format!("{sym}{what} {:.0}%", ratio * 100.0)
}

/// The most lines the status line grows to; a longer message shows in a box of its own.
const STATUS_LINES: usize = 3;

/// `text` wrapped at `width` columns: its own lines, each at spaces, and inside a word only
/// where the word alone is wider. Nothing is dropped.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        let mut w = 0;
        for word in para.split(' ') {
            let ww = Span::raw(word).width();
            if w > 0 && w + 1 + ww <= width {
                line.push(' ');
                line.push_str(word);
                w += 1 + ww;
                continue;
            }
            if w > 0 {
                out.push(std::mem::take(&mut line));
                w = 0;
            }
            for c in word.chars() {
                let cw = Span::raw(c.to_string()).width();
                if w + cw > width && w > 0 {
                    out.push(std::mem::take(&mut line));
                    w = 0;
                }
                line.push(c);
                w += cw;
            }
        }
        out.push(line);
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    // The status line shows the whole message: over several lines, or in a box when longer.
    let wrapped = app
        .message
        .as_deref()
        .map(|m| wrap(m, usize::from(area.width.saturating_sub(1))));
    let fits = wrapped.as_ref().is_none_or(|w| w.len() <= STATUS_LINES);
    app.message_box = !fits && app.dialog.is_none();
    let status = match &wrapped {
        Some(w) if fits => w.clone(),
        Some(_) if app.message_box => {
            vec!["a message too long for this line is in the box below; any key closes it".into()]
        }
        Some(w) => vec![format!("{}…", w[0])],
        None => Vec::new(),
    };
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1 + status.len().max(1) as u16),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, app, &status, header);
    if app.detail && body.height >= 12 {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
        draw_table(f, app, top);
        draw_detail(f, app, bottom);
    } else {
        draw_table(f, app, body);
    }
    draw_footer(f, app, footer);
    if let Some(d) = app.dialog.clone() {
        draw_dialog(f, app, &d, area);
    }
    if let (true, Some(m)) = (app.message_box, &app.message) {
        draw_message_box(f, m, area);
    }
    if app.mono {
        monochrome(f.buffer_mut());
    }
}

/// `NO_COLOR`: every colour goes; what had a background colour (the native banner, a search
/// match) is shown in reverse video instead, so nothing that colour said is lost.
pub fn monochrome(buf: &mut Buffer) {
    for c in buf.content.iter_mut() {
        if c.bg != Color::Reset {
            c.modifier.insert(Modifier::REVERSED);
        }
        c.fg = Color::Reset;
        c.bg = Color::Reset;
    }
}

/// A message too long for the status line, whole, in a box over the screen.
fn draw_message_box(f: &mut Frame, message: &str, area: Rect) {
    let w = area.width.min(100);
    let lines: Vec<Line> = wrap(message, usize::from(w.saturating_sub(4)))
        .into_iter()
        .map(|l| Line::from(format!(" {l}")))
        .collect();
    let r = centered(area, w, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .style(Style::default().fg(Color::Cyan))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" message ")
                    .title_bottom(" any key closes this "),
            ),
        r,
    );
}

/// `status`: the message's lines (empty: the sort, filter and toggles instead).
fn draw_header(f: &mut Frame, app: &App, message: &[String], area: Rect) {
    let count = |s: RunState| app.rows.iter().filter(|r| r.state == s).count();
    let exited_ok = app
        .rows
        .iter()
        .filter(|r| r.state == RunState::Exited && r.outcome() == "exit 0")
        .count();
    let failed = count(RunState::Exited) - exited_ok;
    // A fold from +0.0: an empty f64 sum is -0.0, which prints as `-0`.
    let cpu = app
        .rows
        .iter()
        .filter(|r| r.alive())
        .fold(0.0_f64, |a, r| a + r.cpu_pct.max(0.0));
    let mem: u64 = app.rows.iter().filter(|r| r.alive()).map(|r| r.rss).sum();
    let native_alive = app.rows.iter().any(|r| r.alive() && r.tier.is_native());
    let mut spans = vec![Span::styled(
        " symbiont ",
        Style::default()
            .add_modifier(Modifier::BOLD)
            .fg(Color::Cyan),
    )];
    // The warning goes first, so that no terminal is too narrow to show it.
    if native_alive {
        spans.push(Span::styled(
            " NATIVE: NO ISOLATION ",
            Style::default()
                .bg(Color::Red)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(Span::raw(format!(
        " {} agents: {} running, {} paused, {} stopping, {} done, {} failed/killed │ CPU {:.0}% │ MEM {} │ refresh {:.1}s",
        app.rows.len(),
        count(RunState::Running) + count(RunState::Starting),
        count(RunState::Paused),
        count(RunState::Stopping),
        exited_ok,
        failed,
        cpu,
        bytes(mem),
        app.refresh.as_secs_f64()
    )));
    let mut status = Vec::new();
    if app.sort != Sort::Launch {
        status.push(format!("sort: {:?}", app.sort).to_lowercase());
    }
    if !app.filter.is_empty() {
        status.push(format!("filter: {}", app.filter));
    }
    if app.near_only {
        status.push("only agents near a limit".to_string());
    }
    let mut lines = vec![Line::from(spans)];
    if message.is_empty() {
        lines.push(Line::from(Span::styled(
            format!(" {}", status.join(" │ ")),
            Style::default().fg(Color::DarkGray),
        )));
    }
    for l in message {
        lines.push(Line::from(Span::styled(
            format!(" {l}"),
            Style::default().fg(Color::Cyan),
        )));
    }
    f.render_widget(Paragraph::new(lines), area);
}

/// Columns for the width at hand: everything from 130 columns (the projection to the memory
/// limit last), less below, the essentials at 80.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Agent,
    Trigger,
    Tier,
    Pid,
    State,
    Cpu,
    Mem,
    MemBar,
    MemPct,
    Procs,
    Time,
    TimeShort,
    Limit,
    ToLimit,
    Result,
}

fn columns(width: u16) -> Vec<(Col, &'static str, Constraint)> {
    use Col::*;
    let all = [
        (Agent, "AGENT", Constraint::Min(12)),
        (Trigger, "TRIGGER", Constraint::Min(10)),
        (Tier, "TIER", Constraint::Length(8)),
        (Pid, "PID", Constraint::Length(7)),
        (State, "STATE", Constraint::Length(8)),
        (Cpu, "CPU%", Constraint::Length(6)),
        (Mem, "MEM", Constraint::Length(9)),
        (MemBar, "MEM/LIMIT", Constraint::Length(14)),
        (MemPct, "MEM%", Constraint::Length(4)),
        (Procs, "PROCS", Constraint::Length(5)),
        (Time, "TIME/TIMEOUT", Constraint::Length(13)),
        (TimeShort, "TIME", Constraint::Length(7)),
        (Limit, "LIMIT", Constraint::Length(10)),
        (ToLimit, "→LIMIT", Constraint::Length(7)),
        (Result, "RESULT", Constraint::Min(10)),
    ];
    let keep: &[Col] = if width >= 130 {
        &[
            Agent, Trigger, Tier, Pid, State, Cpu, Mem, MemBar, Procs, Time, Limit, ToLimit, Result,
        ]
    } else if width >= 110 {
        &[
            Agent, Trigger, Tier, Pid, State, Cpu, Mem, MemBar, Procs, Time, Limit, Result,
        ]
    } else if width >= 90 {
        &[
            Agent, Tier, Pid, State, Cpu, Mem, MemBar, Time, Limit, Result,
        ]
    } else {
        &[
            Agent, Pid, State, Cpu, Mem, MemPct, TimeShort, Limit, Result,
        ]
    };
    all.into_iter()
        .filter(|(c, _, _)| keep.contains(c))
        .collect()
}

/// Memory against its limit: now while the run lives, its peak once it ended.
fn mem_ratio(r: &AgentRow) -> Option<f64> {
    if r.alive() {
        return r.mem_ratio();
    }
    let l = r.limits.memory_bytes.filter(|&m| m > 0)?;
    Some(r.peak_rss as f64 / l as f64)
}

fn agent_cell(app: &App, r: &AgentRow, c: Col) -> String {
    match c {
        Col::Agent => format!(
            "{}{}",
            if r.procs.is_empty() || !r.alive() {
                "  "
            } else if app.expanded.contains(&r.id) {
                "▾ "
            } else {
                "▸ "
            },
            r.agent
        ),
        Col::Trigger => r.trigger.clone(),
        Col::Tier => match r.sandbox {
            // The level's initial: the detail pane names it.
            SandboxLevel::Permissive => r.tier.runtime_name().to_string(),
            l => format!("{}/{}", r.tier.runtime_name(), &l.name()[..1]),
        },
        Col::Pid => r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        Col::State => state_text(r).to_string(),
        Col::Cpu if r.alive() => format!("{:.1}", r.cpu_pct),
        Col::Mem if r.alive() => bytes(r.rss),
        // A finished run: its peak against the limit.
        // `~`: no cgroup holds this run's limits, the watchdog and rlimits do (the detail
        // pane's note says which).
        Col::MemBar => match mem_ratio(r) {
            Some(x) => format!("{}{}", bar(x, 8), weaker_hold(r)),
            _ => "-".into(),
        },
        Col::MemPct => match mem_ratio(r) {
            Some(x) => format!("{:.0}%{}", x * 100.0, weaker_hold(r)),
            _ => "-".into(),
        },
        Col::Procs => r.processes.to_string(),
        // A finished run keeps what it used: its CPU time and its peak memory.
        Col::Cpu => format!("{:.1}s", r.cpu_secs),
        Col::Mem => format!("↑{}", bytes(r.peak_rss)),
        Col::ToLimit => match r.to_limit {
            Some(d) if r.alive() => approx(d),
            _ => String::new(),
        },
        Col::Time => match r.limits.timeout {
            Some(t) => format!("{}/{}", dur(r.elapsed), dur(t)),
            None => dur(r.elapsed),
        },
        Col::TimeShort => dur(r.elapsed),
        Col::Limit => limit_marker(app, r),
        Col::Result => r.outcome(),
    }
}

fn proc_cell(r: &AgentRow, p: usize, c: Col) -> String {
    let pr = &r.procs[p];
    match c {
        Col::Agent => format!(
            "{}{} {}",
            "  ".repeat(depth(&r.procs, p) + 1),
            if last_sibling(&r.procs, p) {
                "└"
            } else {
                "├"
            },
            pr.name
        ),
        Col::Pid => pr.pid.to_string(),
        Col::Cpu => format!("{:.1}", pr.cpu_pct),
        Col::Mem => bytes(pr.rss_bytes),
        _ => String::new(),
    }
}

/// Whether no process after `p` (in tree order) has the same parent: `└` rather than `├`.
fn last_sibling(procs: &[super::super::supervisor::watchdog::ProcRow], p: usize) -> bool {
    let order = tree_order(procs);
    let pids: std::collections::HashSet<i32> = procs.iter().map(|x| x.pid).collect();
    let root = |i: usize| !pids.contains(&procs[i].ppid);
    let sibling = |i: usize| i != p && (procs[i].ppid == procs[p].ppid || (root(i) && root(p)));
    let at = order.iter().position(|&i| i == p).unwrap_or(0);
    !order[at + 1..].iter().any(|&i| sibling(i))
}

fn draw_table(f: &mut Frame, app: &mut App, area: Rect) {
    let cols = columns(area.width);
    let block = Block::default().borders(Borders::TOP | Borders::BOTTOM);
    let inner = block.inner(area);
    // First line inside the block is the header; agent lines follow.
    let visible = inner.height.saturating_sub(1) as usize;
    app.table_area = Rect {
        x: inner.x,
        y: inner.y + 1,
        width: inner.width,
        height: visible as u16,
    };
    if app.selected < app.offset {
        app.offset = app.selected;
    } else if visible > 0 && app.selected >= app.offset + visible {
        app.offset = app.selected + 1 - visible;
    }
    app.offset = app
        .offset
        .min(app.items.len().saturating_sub(visible.max(1)));
    let end = (app.offset + visible).min(app.items.len());
    let mut rows = Vec::with_capacity(end - app.offset);
    for (n, item) in app.items[app.offset..end].iter().enumerate() {
        let selected = app.offset + n == app.selected;
        let row = match *item {
            Item::Agent(i) => {
                let r = &app.rows[i];
                Row::new(
                    cols.iter()
                        .map(|(c, _, _)| Cell::from(agent_cell(app, r, *c))),
                )
                .style(level_style(app.level(r)))
            }
            Item::Proc(i, p) => {
                let r = &app.rows[i];
                Row::new(cols.iter().map(|(c, _, _)| Cell::from(proc_cell(r, p, *c))))
                    .style(Style::default().fg(Color::Gray))
            }
        };
        rows.push(if selected {
            row.add_modifier(Modifier::REVERSED)
        } else {
            row
        });
    }
    let header = Row::new(cols.iter().map(|(_, h, _)| *h))
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let title = format!(
        " agents {}/{} ",
        app.items
            .iter()
            .filter(|i| matches!(i, Item::Agent(_)))
            .count(),
        app.rows.len()
    );
    let widths: Vec<Constraint> = cols.iter().map(|(_, _, w)| *w).collect();
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(block.title(title));
    f.render_widget(table, area);
    if app.items.is_empty() {
        let msg = if app.rows.is_empty() {
            "no agents yet: press n to launch one"
        } else {
            "no agent matches the filter"
        };
        f.render_widget(Paragraph::new(msg).italic(), app.table_area);
    }
}

fn draw_detail(f: &mut Frame, app: &App, area: Rect) {
    let Some(r) = app.selected_row() else { return };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} / {} (run {}) ", r.agent, r.trigger, r.id));
    let inner = block.inner(area);
    f.render_widget(block, area);
    // The charts across the pane's whole width, the facts and the log below them.
    let chart_h = (inner.height / 2).clamp(3, 10);
    let [charts, rest] =
        Layout::vertical([Constraint::Length(chart_h), Constraint::Min(1)]).areas(inner);
    let [cpu_a, mem_a] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let [info_a, right] = Layout::horizontal([
        Constraint::Length(44.min(rest.width / 2)),
        Constraint::Min(10),
    ])
    .areas(rest);
    draw_charts(f, app, r, cpu_a, mem_a);
    let l = &r.limits;
    let lim = |v: Option<String>| v.unwrap_or_else(|| "none".into());
    let mut info = vec![
        Line::from(format!(
            "limits: mem {} · cpu {} · cores {} · timeout {} · procs {}",
            lim(l.memory_bytes.map(bytes)),
            lim(l.cpu_seconds.map(|s| format!("{s}s"))),
            lim(l.cpu_cores.map(|c| format!("{c}"))),
            lim(l.timeout.map(dur)),
            lim(l.max_processes.map(|p| p.to_string()))
        )),
        Line::from(format!(
            "cpu time {:.2}s · peak mem {} · processes {}{}",
            r.cpu_secs,
            bytes(r.peak_rss),
            r.processes,
            if r.alive() {
                String::new()
            } else {
                format!(" · ran {}", dur(r.elapsed))
            }
        )),
    ];
    // argv as written: an argument's own newlines start new lines here.
    let argv = shell_words::join(&r.argv);
    for (i, part) in argv.split('\n').enumerate() {
        let part = crate::report::visible(part);
        info.push(Line::from(if i == 0 {
            format!("argv: {part}")
        } else {
            format!("      {part}")
        }));
    }
    info.push(Line::from(format!("cwd: {}", r.cwd)));
    info.push(Line::from(format!("env: {}", r.env_names.join(" "))));
    if r.sandbox != SandboxLevel::Permissive {
        info.push(Line::from(match r.denials {
            0 => format!("sandbox: {}, nothing denied", r.sandbox),
            n => format!("sandbox: {}, {n} denied, latest:", r.sandbox),
        }));
        for d in r.denied.iter().rev().take(4) {
            info.push(Line::from(format!("  ⊘ {}", crate::report::visible(d))));
        }
    }
    if let Some(n) = &r.note {
        info.push(Line::from(Span::styled(
            format!("note: {}", crate::report::visible(n)),
            Style::default().add_modifier(Modifier::BOLD),
        )));
    }
    f.render_widget(Paragraph::new(info).wrap(Wrap { trim: false }), info_a);

    let stream = match app.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let h = right.height.saturating_sub(1) as usize;
    let n = app.log_lines.len();
    let end = n.saturating_sub(app.log_scroll);
    let start = end.saturating_sub(h);
    let q = app.search.as_deref().unwrap_or("");
    let lines: Vec<Line> = app.log_lines[start..end]
        .iter()
        .map(|l| {
            if !q.is_empty() && l.contains(q) {
                Line::from(Span::styled(
                    l.clone(),
                    Style::default().bg(Color::Yellow).fg(Color::Black),
                ))
            } else {
                Line::from(l.as_str())
            }
        })
        .collect();
    let title = format!(
        "{stream} · {} · lines {}-{} of {}{}  (s: switch stream, /: search, f: follow)",
        if app.follow { "following" } else { "scrolled" },
        start + 1,
        end,
        n,
        if q.is_empty() {
            String::new()
        } else {
            format!(" · search `{q}`")
        }
    );
    let [t, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(right);
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(
            title,
            Style::default().add_modifier(Modifier::BOLD),
        ))),
        t,
    );
    f.render_widget(Paragraph::new(lines), body);
}

/// The detail pane's charts: CPU % and memory over the kept history (oldest left, now at the
/// right edge), the memory limit as a line of its own marker and name, and the projected time
/// to it in the title.
fn draw_charts(f: &mut Frame, app: &App, r: &AgentRow, cpu_a: Rect, mem_a: Rect) {
    let period = app.refresh.as_secs_f64();
    let n = r.history.len();
    let x = |i: usize| (i as f64 - (n as f64 - 1.0)) * period;
    let span = crate::supervisor::watchdog::HISTORY as f64 * period;
    let x_axis = || {
        Axis::default()
            .bounds([-span, 0.0])
            .labels([format!("-{}", dur_short(span)), "now".to_string()])
    };
    let cpu: Vec<(f64, f64)> = r
        .history
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (x(i), f64::from(*c)))
        .collect();
    let cpu_max = cpu.iter().map(|p| p.1).fold(100.0, f64::max);
    let cpu_title = if r.alive() {
        format!(" CPU {:.1}% ", r.cpu_pct)
    } else {
        format!(" CPU time {:.2}s ", r.cpu_secs)
    };
    f.render_widget(
        Chart::new(vec![Dataset::default()
            .name("cpu")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Green))
            .data(&cpu)])
        .block(Block::default().borders(Borders::TOP).title(cpu_title))
        .x_axis(x_axis())
        .y_axis(
            Axis::default()
                .bounds([0.0, cpu_max])
                .labels(["0%".to_string(), format!("{cpu_max:.0}%")]),
        )
        .legend_position(None),
        cpu_a,
    );
    let mem: Vec<(f64, f64)> = r
        .history
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (x(i), *m as f64))
        .collect();
    let seen = mem.iter().map(|p| p.1).fold(r.peak_rss as f64, f64::max);
    let mem_max = r.limits.memory_bytes.map_or(seen, |l| (l as f64).max(seen)) * 1.05;
    let limit_line: Vec<(f64, f64)> = r
        .limits
        .memory_bytes
        .map(|l| vec![(-span, l as f64), (0.0, l as f64)])
        .unwrap_or_default();
    let mut title = if r.alive() {
        format!(" MEM {}", bytes(r.rss))
    } else {
        format!(" MEM peak {}", bytes(r.peak_rss))
    };
    if let Some(l) = r.limits.memory_bytes {
        title.push_str(&format!(" of {}", bytes(l)));
    }
    if let (Some(d), true) = (r.to_limit, r.alive()) {
        title.push_str(&format!(" · limit in {}", approx(d)));
    }
    title.push(' ');
    let mut sets = vec![Dataset::default()
        .name("mem")
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(Color::Magenta))
        .data(&mem)];
    if !limit_line.is_empty() {
        sets.push(
            Dataset::default()
                .name("limit")
                .marker(Marker::Dot)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(Color::Red))
                .data(&limit_line),
        );
    }
    f.render_widget(
        Chart::new(sets)
            .block(Block::default().borders(Borders::TOP).title(title))
            .x_axis(x_axis())
            .y_axis(
                Axis::default()
                    .bounds([0.0, mem_max.max(1.0)])
                    .labels(["0".to_string(), bytes((mem_max / 1.05) as u64)]),
            )
            .legend_position(Some(ratatui::widgets::LegendPosition::TopLeft))
            .hidden_legend_constraints((Constraint::Ratio(1, 2), Constraint::Ratio(1, 2))),
        mem_a,
    );
}

/// `2m`, `40s`: an axis label.
fn dur_short(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn draw_footer(f: &mut Frame, app: &App, area: Rect) {
    let k = |a: Action| app.keymap.keys(a).first().cloned().unwrap_or_default();
    let items = if app.detail {
        vec![
            ("Esc", "table"),
            ("↑↓", "scroll"),
            ("/", "search"),
            ("s", "stream"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b))
        .collect::<Vec<_>>()
    } else {
        vec![
            (k(Action::Detail), "detail"),
            (k(Action::ExpandTree), "tree"),
            (k(Action::KillDialog), "kill…"),
            (k(Action::KillTreeNow), "kill now"),
            (k(Action::PauseResume), "pause"),
            (k(Action::Restart), "restart"),
            (k(Action::Launch), "launch"),
            (k(Action::Filter), "filter"),
            (k(Action::NearLimitOnly), "near limit"),
            (k(Action::Help), "help"),
            (k(Action::Quit), "quit"),
        ]
    };
    let mut spans = Vec::new();
    for (key, what) in items {
        spans.push(Span::styled(
            format!(" {key} "),
            Style::default().add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(format!(" {what} ")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_dialog(f: &mut Frame, app: &App, d: &Dialog, area: Rect) {
    match d {
        Dialog::Help => {
            let mut lines = vec![
                Line::from("keys (remap them under [dashboard.keys] in the config)").bold(),
                Line::from(""),
            ];
            for a in Action::ALL {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("{:<18}", app.keymap.keys(a).join(" ")),
                        Style::default().fg(Color::Cyan),
                    ),
                    Span::raw(format!("{:<16}", a.name())),
                    Span::raw(a.help()),
                ]));
            }
            lines.push(Line::from(""));
            lines.push(Line::from("detail pane: ↑↓ PgUp PgDn scroll · / search · n N next/previous match · s stdout/stderr · Esc back"));
            lines.push(Line::from(
                "mouse: click selects a line · right click opens the kill dialog · wheel scrolls",
            ));
            lines.push(Line::from("rows: yellow ▲ at warn_ratio of a limit, red ‼ at critical_ratio · press any key to close"));
            let r = centered(area, 110, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" help ")),
                r,
            );
        }
        Dialog::Kill {
            agent,
            signal,
            tree,
            pid,
            actions,
            ..
        } => {
            let mut lines = vec![Line::from(format!("kill {agent}")).bold(), Line::from("")];
            for (i, (sig, text)) in actions.choices.iter().enumerate() {
                let mark = if i == *signal { "▶ " } else { "  " };
                let l = Line::from(if actions.signal_names {
                    format!("{mark}SIG{:<5} {text}", sig.name())
                } else {
                    format!("{mark}{text}")
                });
                lines.push(if i == *signal {
                    l.add_modifier(Modifier::REVERSED)
                } else {
                    l
                });
            }
            lines.push(Line::from(""));
            let scope = if !actions.one_process {
                "[x] whole tree (this tier cannot aim at one process)".to_string()
            } else if *tree {
                "[x] whole tree   [ ] this process only".to_string()
            } else {
                format!(
                    "[ ] whole tree   [x] this process only (pid {})",
                    pid.unwrap_or(0)
                )
            };
            lines.push(Line::from(format!("target: {scope}")));
            lines.push(Line::from(""));
            lines.push(
                Line::from("↑↓ signal · Tab whole tree/process · Enter send · Esc cancel").italic(),
            );
            let r = centered(area, 64, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" kill ")
                        .border_style(Style::default().fg(Color::Red)),
                ),
                r,
            );
        }
        Dialog::Filter(s) | Dialog::Search(s) => {
            let what = if matches!(d, Dialog::Filter(_)) {
                "filter agents"
            } else {
                "search the log"
            };
            let r = Rect {
                x: area.x,
                y: area.y + area.height.saturating_sub(1),
                width: area.width,
                height: 1,
            };
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(format!("{what}: {s}█   (Enter keep · Esc clear)")),
                r,
            );
        }
        Dialog::Launch {
            choice,
            command,
            tier,
        } => {
            let mut lines = vec![Line::from("launch").bold(), Line::from("")];
            for (i, l) in app.launchables.iter().enumerate() {
                let t = format!(
                    "{}{} / {}  (tier {})",
                    if i == *choice { "▶ " } else { "  " },
                    l.agent,
                    l.trigger,
                    l.tier
                );
                let line = Line::from(t);
                lines.push(if i == *choice {
                    line.add_modifier(Modifier::REVERSED)
                } else {
                    line
                });
            }
            let typing = *choice == app.launchables.len();
            let cmd = Line::from(format!(
                "{}command: {}{}   tier: {} (Tab)",
                if typing { "▶ " } else { "  " },
                command,
                if typing { "█" } else { "" },
                LAUNCH_TIERS[*tier]
            ));
            lines.push(if typing {
                cmd.add_modifier(Modifier::REVERSED)
            } else {
                cmd
            });
            lines.push(Line::from(""));
            lines.push(
                Line::from(
                    "↑↓ choose · type a command on the last line · Enter launch · Esc cancel",
                )
                .italic(),
            );
            let r = centered(area, 80, lines.len() as u16 + 2);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines)
                    .block(Block::default().borders(Borders::ALL).title(" launch ")),
                r,
            );
        }
        Dialog::ConfirmQuit { alive } => {
            let lines = if app.attached {
                vec![
                    Line::from(format!("{alive} agent(s) running in the service.")),
                    Line::from("Quit and leave them running, or stop them first?"),
                    Line::from(""),
                    Line::from(
                        "l / Enter: leave them and quit    s: stop them and quit    Esc: stay",
                    )
                    .italic(),
                ]
            } else {
                vec![
                    Line::from(format!("{alive} agent(s) still running.")),
                    Line::from("Stop them all and quit? (TERM, then KILL after the grace period)"),
                    Line::from(""),
                    Line::from("y / Enter: stop and quit    n / Esc: stay").italic(),
                ]
            };
            let r = centered(area, 70, 6);
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" quit ")),
                r,
            );
        }
    }
}
