//! The dashboard: a client of the supervisor that shows every agent's live tree CPU and memory,
//! highlights agents near a limit and lets the operator kill, pause, restart and launch.
//!
//! The event loop merges keys (read on their own thread), the refresh tick, the supervisor's
//! events and signals; it redraws only when something changed and never waits on an agent.

pub mod app;
pub mod keymap;
pub mod source;
pub mod ui;

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event as TermEvent,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::config::LoadedConfig;
use crate::plan;
use crate::supervisor::{Control, RunId, RunRecord, RunSpec, Supervisor};
use crate::tier::SecurityTier;
use app::{AgentRow, App, Cmd, Launchable};
use keymap::Keymap;
use source::Source;

/// Builds the spec of an ad-hoc command typed in the launch dialog.
pub type CommandPlanner = Box<dyn Fn(&str, SecurityTier) -> Result<RunSpec, String> + Send>;

/// Everything the dashboard starts with.
pub struct Dashboard {
    pub source: Source,
    /// Runs to launch when the dashboard opens.
    pub initial: Vec<RunSpec>,
    /// What the launch dialog offers, with the spec of each.
    pub launchables: Vec<(Launchable, RunSpec)>,
    pub plan_command: CommandPlanner,
    pub app: App,
}

impl Dashboard {
    /// The dashboard of a plan: the configuration's `[dashboard]` settings and key bindings,
    /// `initial` to launch when it opens, `offered` in the launch dialog, and commands typed
    /// there planned under the same configuration on the tier the operator picks (consent to
    /// native execution stays the configuration's). The error is a bad key binding.
    pub fn from_plan(
        supervisor: Supervisor,
        loaded: &LoadedConfig,
        initial: Vec<RunSpec>,
        offered: Vec<RunSpec>,
    ) -> Result<Dashboard, String> {
        let c = &loaded.config;
        let keymap = Keymap::new(&c.dashboard.keys)?;
        let mut app = App::new(
            keymap,
            c.dashboard.warn_ratio,
            c.dashboard.critical_ratio,
            Duration::from_millis(c.dashboard.refresh_ms),
        );
        // https://no-color.org: present and not empty.
        app.mono = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let launchables = offered
            .into_iter()
            .map(|s| {
                (
                    Launchable {
                        agent: s.agent.clone(),
                        trigger: s.trigger.clone(),
                        tier: s.tier,
                    },
                    s,
                )
            })
            .collect();
        let loaded = loaded.clone();
        let plan_command: CommandPlanner = Box::new(move |command: &str, tier: SecurityTier| {
            let argv = shell_words::split(command).map_err(|e| format!("command: {e}"))?;
            let mut on_tier = loaded.clone();
            on_tier.config.security.default_sandbox_tier = tier;
            let spec = plan::plan_command(&on_tier, argv, &[], &plan::Host::real())
                .map_err(|e| e.to_string())?;
            // The row is named after the command; the agent's environment says the same.
            Ok(spec.as_command())
        });
        Ok(Dashboard {
            source: Source::Local(supervisor),
            initial,
            launchables,
            plan_command,
            app,
        })
    }

    /// The dashboard on the agents of this user's service (`symbiont attach`): quitting leaves
    /// them running unless the operator asks to stop them; commands typed in the launch dialog
    /// run in the service under its policy.
    #[cfg(unix)]
    pub fn attach(
        client: crate::service::Client,
        loaded: &LoadedConfig,
    ) -> Result<Dashboard, String> {
        let c = &loaded.config;
        let keymap = Keymap::new(&c.dashboard.keys)?;
        let refresh = Duration::from_millis(c.dashboard.refresh_ms);
        let mut app = App::new(
            keymap,
            c.dashboard.warn_ratio,
            c.dashboard.critical_ratio,
            refresh,
        );
        app.mono = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        app.attached = true;
        Ok(Dashboard {
            source: Source::Remote(source::Remote::start(client, refresh)),
            initial: Vec::new(),
            launchables: Vec::new(),
            plan_command: Box::new(|_, _| Err("planned by the service".into())),
            app,
        })
    }
}

/// Leaves raw mode and the alternate screen. Safe to call more than once.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let mut out = io::stdout();
    let _ = execute!(
        out,
        DisableMouseCapture,
        LeaveAlternateScreen,
        ratatui::crossterm::cursor::Show
    );
    let _ = out.flush();
}

struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

enum Input {
    Term(TermEvent),
    Lost,
}

/// Copies the supervisor's figures into the app. Rows whose figures did not change only get
/// their elapsed time moved on; only the selected agent's history is copied.
pub fn refresh_rows(sup: &Supervisor, app: &mut App) -> bool {
    let now = Instant::now();
    let selected = app.selected_row().map(|r| r.id);
    let period = app.refresh;
    let mut changed = false;
    let mut n = 0;
    let rows = &mut app.rows;
    sup.visit(|s| {
        let fresh = |hist| AgentRow::from_status(s, now, hist, period);
        match rows.get_mut(n) {
            Some(r) if r.id == s.id => {
                if r.version != s.version || r.state != s.state || Some(s.id) == selected {
                    *r = fresh(Some(s.id) == selected);
                    changed = true;
                } else if r.alive() {
                    r.elapsed = now.saturating_duration_since(s.started);
                    changed = true;
                }
            }
            Some(r) => {
                *r = fresh(Some(s.id) == selected);
                changed = true;
            }
            None => {
                rows.push(fresh(Some(s.id) == selected));
                changed = true;
            }
        }
        n += 1;
    });
    if changed {
        app.rows.truncate(n);
        let keep = app.selected_key();
        app.rebuild(keep);
    }
    changed
}

fn refresh_logs(src: &Source, app: &mut App) -> bool {
    let Some(id) = app.selected_row().map(|r| r.id) else {
        return false;
    };
    let Some(mut lines) = src.tail(id, app.stream == app::Stream::Stderr) else {
        return false;
    };
    // The agent's output, shown and never interpreted (ratatui would drop the control
    // characters silently and print the rest of an escape sequence).
    for l in &mut lines {
        if let std::borrow::Cow::Owned(v) = crate::report::visible(l) {
            *l = v;
        }
    }
    if lines != app.log_lines {
        app.log_lines = lines;
        if app.follow {
            app.log_scroll = 0;
        }
        app.log_scroll = app.log_scroll.min(app.log_lines.len());
        return true;
    }
    false
}

impl Dashboard {
    /// Runs the dashboard until the operator quits (stopping every agent first) or a signal
    /// arrives. Returns every run's record.
    pub async fn run(mut self) -> io::Result<Vec<Arc<RunRecord>>> {
        enable_raw_mode()?;
        let _guard = TerminalGuard;
        execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        let prev_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev_hook(info);
        }));
        // No `terminal.clear()`: it asks the terminal for the cursor position, and a terminal
        // that does not answer would stall the start. The alternate screen starts blank.
        execute!(
            io::stdout(),
            ratatui::crossterm::terminal::Clear(ratatui::crossterm::terminal::ClearType::All)
        )?;
        let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;

        let (tx, mut input) = mpsc::channel::<Input>(64);
        std::thread::Builder::new()
            .name("symbiont-keys".into())
            .spawn(move || loop {
                match event::read() {
                    Ok(e) => {
                        if tx.blocking_send(Input::Term(e)).is_err() {
                            break;
                        }
                    }
                    Err(_) => {
                        let _ = tx.blocking_send(Input::Lost);
                        break;
                    }
                }
            })?;

        let mut stop = crate::stop::StopSignals::new()?;

        let Dashboard {
            source,
            initial,
            launchables,
            plan_command,
            app,
        } = &mut self;
        let src = source;
        let mut events = src.changes();
        let mut specs: HashMap<RunId, RunSpec> = HashMap::new();
        app.launchables = launchables.iter().map(|(l, _)| l.clone()).collect();
        for spec in std::mem::take(initial) {
            match src.launch(spec.clone()) {
                Ok(id) => {
                    specs.insert(id, spec);
                }
                Err(e) => app.message = Some(e),
            }
        }
        let mut tick = tokio::time::interval(app.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut log_tick = tokio::time::interval(Duration::from_millis(250));
        log_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dirty = true;
        // The rows need the supervisor's latest figures before the next frame.
        let mut stale = true;
        let mut stopping = false;
        // Once every agent was killed at once: the dashboard leaves by then, whatever is left.
        let mut leave_at: Option<tokio::time::Instant> = None;
        let mut input_open = true;
        // At most one frame per FRAME: a burst of events (a thousand launches) is one redraw.
        const FRAME: Duration = Duration::from_millis(40);
        let mut next_frame = tokio::time::Instant::now();
        loop {
            if dirty && tokio::time::Instant::now() >= next_frame {
                if stale {
                    src.refresh_rows(app);
                    stale = false;
                }
                if let Some(n) = src.note() {
                    app.message = Some(n);
                }
                if app.detail {
                    refresh_logs(src, app);
                }
                terminal.draw(|f| ui::draw(f, app))?;
                dirty = false;
                next_frame = tokio::time::Instant::now() + FRAME;
            }
            if stopping && app.alive() == 0 {
                break;
            }
            tokio::select! {
                i = input.recv(), if input_open => match i {
                    Some(Input::Term(TermEvent::Key(k))) if k.kind == event::KeyEventKind::Press => {
                        let cmds = app.on_key(k);
                        if cmds.contains(&Cmd::KillAll) {
                            leave_at.get_or_insert(tokio::time::Instant::now() + AFTER_KILL_ALL);
                        }
                        stopping |= self::exec(src, app, launchables, plan_command, &mut specs, cmds);
                        if app.quitting && !stopping {
                            break;
                        }
                        dirty = true;
                    }
                    Some(Input::Term(TermEvent::Mouse(m))) => {
                        let cmds = app.on_mouse(m);
                        stopping |= self::exec(src, app, launchables, plan_command, &mut specs, cmds);
                        dirty = true;
                    }
                    Some(Input::Term(TermEvent::Resize(..))) => {
                        terminal.autoresize()?;
                        dirty = true;
                    }
                    Some(Input::Term(_)) => {}
                    Some(Input::Lost) | None => {
                        input_open = false;
                        if src.attached() {
                            // The terminal is gone: the service keeps its agents.
                            break;
                        }
                        // The terminal is gone: nobody can watch the agents, so stop them (once).
                        src.stop_all(app);
                        stopping = true;
                        app.quitting = true;
                    }
                },
                _ = tokio::time::sleep_until(next_frame), if dirty => {}
                _ = tokio::time::sleep_until(leave_at.unwrap_or(next_frame)), if leave_at.is_some() => break,
                _ = tick.tick() => {
                    dirty = src.refresh_rows(app) || dirty;
                }
                _ = log_tick.tick(), if app.detail => {
                    dirty = refresh_logs(src, app) || dirty;
                }
                alive = events.next() => {
                    dirty = true;
                    stale = true;
                    if !alive || src.lost().is_some() {
                        break;
                    }
                }
                _ = stop.recv() => {
                    if src.attached() {
                        // A signal to an attached dashboard ends the dashboard, not the agents.
                        break;
                    }
                    // The first stop request stops every agent; the next ones kill at once.
                    if stopping {
                        src.kill_all_now(app);
                        leave_at.get_or_insert(tokio::time::Instant::now() + AFTER_KILL_ALL);
                    } else {
                        src.stop_all(app);
                    }
                    stopping = true;
                    app.quitting = true;
                    dirty = true;
                }
            }
        }
        drop(terminal);
        restore_terminal();
        let records = match src {
            Source::Local(sup) => {
                let records = if leave_at.is_some_and(|t| tokio::time::Instant::now() >= t) {
                    sup.ended()
                } else {
                    sup.wait_all().await
                };
                print!("{}", session_summary(&records, sup.audit_path()));
                records
            }
            #[cfg(unix)]
            Source::Remote(r) => {
                r.farewell(app);
                Vec::new()
            }
        };
        let _ = io::stdout().flush();
        Ok(records)
    }
}

/// What the terminal keeps once the dashboard has gone: the session's runs as headless prints
/// them, where their logs are and the audit log.
pub fn session_summary(records: &[Arc<RunRecord>], audit: &std::path::Path) -> String {
    if records.is_empty() {
        return format!("no runs this session\naudit log: {}\n", audit.display());
    }
    let mut out = crate::headless::summary(records);
    // Each run's logs are in a directory of their own: say where those directories are.
    let mut dirs: Vec<&std::path::Path> = records
        .iter()
        .filter_map(|r| r.stdout_log.parent().and_then(|d| d.parent()))
        .collect();
    dirs.dedup();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        out.push_str(&format!("logs: {}\n", d.display()));
    }
    out.push_str(&format!("audit log: {}\n", audit.display()));
    out
}

/// How long the dashboard still waits for its runs' records once it killed every agent with
/// SIGKILL.
const AFTER_KILL_ALL: Duration = Duration::from_secs(1);

/// Carries out the app's commands. Returns true once the dashboard is stopping every agent.
fn exec(
    src: &Source,
    app: &mut App,
    launchables: &[(Launchable, RunSpec)],
    plan_command: &CommandPlanner,
    specs: &mut HashMap<RunId, RunSpec>,
    cmds: Vec<Cmd>,
) -> bool {
    let mut stopping = false;
    let launch = |spec: RunSpec, app: &mut App, specs: &mut HashMap<RunId, RunSpec>| match src
        .launch(spec.clone())
    {
        Ok(id) => {
            app.message = Some(format!(
                "launched {} / {} (run {id})",
                spec.agent, spec.trigger
            ));
            specs.insert(id, spec);
        }
        Err(e) => app.message = Some(e),
    };
    for c in cmds {
        match c {
            Cmd::Signal { run, sig, scope } => {
                src.control(run, Control::by_operator(sig, scope));
            }
            Cmd::Pause(run) => {
                src.control(run, Control::Pause);
            }
            Cmd::Resume(run) => {
                src.control(run, Control::Resume);
            }
            Cmd::Restart(run) => match specs.get(&run).cloned() {
                Some(spec) => {
                    if src.is_running(run) {
                        src.kill(run);
                    }
                    launch(spec, app, specs);
                }
                None => app.message = Some("this run cannot be restarted".into()),
            },
            Cmd::Launch(i) => {
                if let Some((_, spec)) = launchables.get(i) {
                    launch(spec.clone(), app, specs);
                }
            }
            Cmd::LaunchCommand { command, tier } => match src.launch_command(&command, tier) {
                Some(Ok(m)) => app.message = Some(m),
                Some(Err(e)) => app.message = Some(e),
                None => match plan_command(&command, tier) {
                    Ok(spec) => launch(spec, app, specs),
                    Err(e) => app.message = Some(e),
                },
            },
            Cmd::Quit { stop } => {
                if stop {
                    src.stop_all(app);
                    stopping = true;
                }
            }
            Cmd::KillAll => {
                src.kill_all_now(app);
                stopping = true;
            }
        }
    }
    stopping
}

#[cfg(test)]
mod tests;
