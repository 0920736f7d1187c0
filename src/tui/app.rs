//! The dashboard's state and its answers to keys and mouse clicks. Pure data: it never touches
//! the terminal or the supervisor; what it wants done comes back as [`Cmd`]s.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;

use super::keymap::{Action, Keymap};
use crate::supervisor::watchdog::ProcRow;
use crate::supervisor::Limits;
use crate::supervisor::{Actions, Reason, RunId, RunState, RunStatus, Scope, Sig};
use crate::tier::SecurityTier;

/// One agent as the dashboard shows it: a copy of the supervisor's figures at one instant.
/// The service sends these to an attached dashboard as they are.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentRow {
    pub id: RunId,
    pub agent: String,
    pub trigger: String,
    pub tier: SecurityTier,
    /// The native sandbox level.
    #[serde(default)]
    pub sandbox: crate::tier::SandboxLevel,
    /// What the sandbox refused: how often, and the latest few.
    #[serde(default)]
    pub denials: u64,
    #[serde(default)]
    pub denied: Vec<String>,
    pub pid: Option<i32>,
    pub state: RunState,
    pub cpu_pct: f64,
    pub rss: u64,
    /// The highest resident memory seen (the record's once the run ended).
    pub peak_rss: u64,
    pub cpu_secs: f64,
    pub processes: u64,
    pub elapsed: Duration,
    pub limits: Limits,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub reason: Option<Reason>,
    pub procs: Vec<ProcRow>,
    pub history: Vec<(f32, u64)>,
    /// When the memory reaches its limit at the present growth ([`time_to_limit`]).
    pub to_limit: Option<Duration>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub env_names: Vec<String>,
    /// What the run's tier or record says beyond its figures: a weaker mechanism the host
    /// forces on its limits, why it ended, output that could not be logged.
    pub note: Option<String>,
    /// What the operator can do to this run on its tier.
    pub actions: Actions,
    pub version: u64,
}

impl AgentRow {
    /// A copy of a run's status; the history (for the detail pane's charts) only when asked.
    /// `period` is the time between two samples of the history.
    pub fn from_status(
        s: &RunStatus,
        now: Instant,
        with_history: bool,
        period: Duration,
    ) -> AgentRow {
        let rec = s.record.as_ref();
        let to_limit = match s.limits.memory_bytes {
            Some(limit) if rec.is_none() && s.history.len() >= MIN_PROJECTION_SAMPLES => {
                let from = s.history.len().saturating_sub(PROJECTION_SAMPLES);
                let mut mem = [0u64; PROJECTION_SAMPLES];
                let n = s.history.len() - from;
                for (m, (_, b)) in mem.iter_mut().zip(s.history.iter().skip(from)) {
                    *m = b;
                }
                time_to_limit(&mem[..n], period, limit)
            }
            _ => None,
        };
        AgentRow {
            id: s.id,
            agent: s.agent.clone(),
            trigger: s.spec.trigger.clone(),
            tier: s.tier,
            sandbox: s.sandbox,
            denials: rec.map_or(s.denials, |r| r.denials),
            denied: match rec {
                Some(r) => r.denied.clone(),
                None => s.denied.clone(),
            },
            pid: s.pid,
            state: s.state,
            cpu_pct: s.cpu_pct,
            rss: s.rss_bytes,
            peak_rss: rec.map_or(s.peak_rss_bytes, |r| {
                r.peak_memory_bytes.max(s.peak_rss_bytes)
            }),
            cpu_secs: rec.map_or(s.cpu_ns as f64 / 1e9, |r| r.cpu_seconds),
            processes: s.processes,
            elapsed: match rec {
                Some(r) => Duration::from_secs_f64(r.duration_secs),
                None => now.saturating_duration_since(s.started),
            },
            limits: s.limits.clone(),
            exit_code: rec.and_then(|r| r.exit_code),
            signal: rec.and_then(|r| r.signal.clone()),
            reason: rec.map(|r| r.reason),
            procs: s.procs.clone(),
            history: if with_history {
                s.history.iter().collect()
            } else {
                Vec::new()
            },
            to_limit,
            argv: s.argv().to_vec(),
            cwd: s.spec.cwd.display().to_string(),
            env_names: s.spec.env.iter().map(|(k, _)| k.clone()).collect(),
            note: match rec {
                Some(r) => {
                    let parts: Vec<String> = r.message.iter().cloned().chain(r.losses()).collect();
                    (!parts.is_empty()).then(|| parts.join("; "))
                }
                None => s.note.clone(),
            },
            actions: s.actions,
            version: s.version,
        }
    }

    pub fn alive(&self) -> bool {
        self.state != RunState::Exited
    }

    pub fn mem_ratio(&self) -> Option<f64> {
        self.limits
            .memory_bytes
            .filter(|&m| m > 0)
            .map(|m| self.rss as f64 / m as f64)
    }

    pub fn time_ratio(&self) -> Option<f64> {
        self.limits
            .timeout
            .filter(|t| !t.is_zero())
            .map(|t| self.elapsed.as_secs_f64() / t.as_secs_f64())
    }

    /// The largest use of any limit, as a fraction of it.
    pub fn pressure(&self) -> f64 {
        if !self.alive() {
            return 0.0;
        }
        let cpu = self.limits.cpu_seconds.map(|c| self.cpu_secs / c as f64);
        [self.mem_ratio(), self.time_ratio(), cpu]
            .into_iter()
            .flatten()
            .fold(0.0, f64::max)
    }

    /// "exited 0", "timeout", "killed (operator)", ...
    pub fn outcome(&self) -> String {
        match (self.reason, self.exit_code, &self.signal) {
            (None, _, _) => String::new(),
            (Some(Reason::Exited), Some(c), _) => format!("exit {c}"),
            (Some(Reason::Exited), None, Some(s)) => s.clone(),
            (Some(r), _, _) => r.as_str().replace('_', " "),
        }
    }
}

/// How many of the last samples the projection to the memory limit fits a line through.
pub const PROJECTION_SAMPLES: usize = 10;
/// Fewer samples than this project nothing.
pub const MIN_PROJECTION_SAMPLES: usize = 5;

/// When a growing memory series reaches `limit`, samples taken `period` apart, oldest first:
/// a least-squares line through the last [`PROJECTION_SAMPLES`], from the last sample at its
/// slope. `None` unless the memory grows steadily: too few samples, a flat or shrinking slope
/// (under 0.1 % of the limit per sample), or noise the line does not explain (R² under 0.8);
/// also `None` beyond a day. Zero once the last sample is at or past the limit.
pub fn time_to_limit(mem: &[u64], period: Duration, limit: u64) -> Option<Duration> {
    let s = &mem[mem.len().saturating_sub(PROJECTION_SAMPLES)..];
    let n = s.len();
    if n < MIN_PROJECTION_SAMPLES || period.is_zero() || limit == 0 {
        return None;
    }
    let nf = n as f64;
    let mx = (nf - 1.0) / 2.0;
    let my = s.iter().map(|&y| y as f64).sum::<f64>() / nf;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (i, &y) in s.iter().enumerate() {
        let (dx, dy) = (i as f64 - mx, y as f64 - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let slope = sxy / sxx; // bytes per sample
    if slope < limit as f64 * 0.001 || syy == 0.0 || sxy * sxy / (sxx * syy) < 0.8 {
        return None;
    }
    let last = s[n - 1];
    if last >= limit {
        return Some(Duration::ZERO);
    }
    let secs = (limit - last) as f64 / slope * period.as_secs_f64();
    (secs <= 86_400.0).then(|| Duration::from_secs_f64(secs))
}

/// `~12 s`, `~3 min`, `~2 h`: a projection, rounded as one.
pub fn approx(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    if s < 120 {
        format!("~{s} s")
    } else if s < 7200 {
        format!("~{} min", s / 60)
    } else {
        format!("~{} h", s / 3600)
    }
}

/// How close to a limit: the row's colour and its text marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Launch,
    Cpu,
    Memory,
    Time,
    Name,
}

/// A line of the table: an agent, or one process of an expanded agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    Agent(usize),
    Proc(usize, usize),
}

/// What `X` does, for the status line.
const KILL_NOW: &str = if cfg!(windows) {
    "terminating its job"
} else {
    "SIGKILL"
};

/// Something to launch from the loaded agent files.
#[derive(Debug, Clone, PartialEq)]
pub struct Launchable {
    pub agent: String,
    pub trigger: String,
    pub tier: SecurityTier,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Dialog {
    Kill {
        run: RunId,
        agent: String,
        signal: usize,
        tree: bool,
        pid: Option<i32>,
        /// What the run's tier can do: the dialog offers exactly this.
        actions: Actions,
    },
    Help,
    Filter(String),
    Search(String),
    Launch {
        choice: usize,
        command: String,
        tier: usize,
    },
    ConfirmQuit {
        alive: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What the dashboard asks of the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum Cmd {
    Signal {
        run: RunId,
        sig: Sig,
        scope: Scope,
    },
    Pause(RunId),
    Resume(RunId),
    Restart(RunId),
    Launch(usize),
    LaunchCommand {
        command: String,
        tier: SecurityTier,
    },
    /// Quit; `stop` first stops every live agent.
    Quit {
        stop: bool,
    },
    /// Quit while already stopping: SIGKILL to every live agent at once.
    KillAll,
}

pub const LAUNCH_TIERS: [SecurityTier; 4] = [
    SecurityTier::None,
    SecurityTier::Tier1,
    SecurityTier::Tier2,
    SecurityTier::Tier3,
];

pub struct App {
    pub rows: Vec<AgentRow>,
    pub items: Vec<Item>,
    pub selected: usize,
    pub offset: usize,
    pub sort: Sort,
    pub filter: String,
    pub near_only: bool,
    pub expanded: HashSet<RunId>,
    pub detail: bool,
    pub dialog: Option<Dialog>,
    pub keymap: Keymap,
    pub warn_ratio: f64,
    pub critical_ratio: f64,
    pub refresh: Duration,
    pub launchables: Vec<Launchable>,
    pub message: Option<String>,
    /// Detail pane: which stream, its lines, scroll (lines up from the end), follow, search.
    pub stream: Stream,
    pub log_lines: Vec<String>,
    pub log_scroll: usize,
    pub follow: bool,
    pub search: Option<String>,
    /// Where the table's first agent line was drawn, for mouse clicks.
    pub table_area: Rect,
    pub quitting: bool,
    /// No colour (`NO_COLOR`): what colour says, reverse video and text say.
    pub mono: bool,
    /// On the service's agents (`symbiont attach`): quitting leaves them running unless the
    /// operator asks to stop them.
    pub attached: bool,
    /// The message did not fit the status line and shows in a box of its own (set by the
    /// drawing): the next key closes it and does nothing else.
    pub message_box: bool,
}

impl App {
    pub fn new(keymap: Keymap, warn_ratio: f64, critical_ratio: f64, refresh: Duration) -> App {
        App {
            rows: Vec::new(),
            items: Vec::new(),
            selected: 0,
            offset: 0,
            sort: Sort::Launch,
            filter: String::new(),
            near_only: false,
            expanded: HashSet::new(),
            detail: false,
            dialog: None,
            keymap,
            warn_ratio,
            critical_ratio,
            refresh,
            launchables: Vec::new(),
            message: None,
            stream: Stream::Stdout,
            log_lines: Vec::new(),
            log_scroll: 0,
            follow: true,
            search: None,
            table_area: Rect::default(),
            quitting: false,
            mono: false,
            attached: false,
            message_box: false,
        }
    }

    pub fn level(&self, r: &AgentRow) -> Level {
        let p = r.pressure();
        if p >= self.critical_ratio {
            Level::Critical
        } else if p >= self.warn_ratio {
            Level::Warn
        } else {
            Level::Ok
        }
    }

    /// Replaces the rows and rebuilds the visible lines, keeping the selection on the same
    /// agent (or process) where it still shows.
    pub fn set_rows(&mut self, rows: Vec<AgentRow>) {
        let keep = self.selected_key();
        self.rows = rows;
        self.rebuild(keep);
    }

    pub fn selected_key(&self) -> Option<(RunId, Option<i32>)> {
        match self.items.get(self.selected)? {
            Item::Agent(i) => Some((self.rows.get(*i)?.id, None)),
            Item::Proc(i, p) => {
                let r = self.rows.get(*i)?;
                Some((r.id, r.procs.get(*p).map(|p| p.pid)))
            }
        }
    }

    pub fn rebuild(&mut self, keep: Option<(RunId, Option<i32>)>) {
        let f = self.filter.to_lowercase();
        let mut idx: Vec<usize> = (0..self.rows.len())
            .filter(|&i| {
                let r = &self.rows[i];
                (f.is_empty()
                    || r.agent.to_lowercase().contains(&f)
                    || r.trigger.to_lowercase().contains(&f)
                    || r.argv.join(" ").to_lowercase().contains(&f))
                    && (!self.near_only || self.level(r) != Level::Ok)
            })
            .collect();
        let rows = &self.rows;
        match self.sort {
            Sort::Launch => {}
            Sort::Cpu => idx.sort_by(|&a, &b| rows[b].cpu_pct.total_cmp(&rows[a].cpu_pct)),
            Sort::Memory => idx.sort_by(|&a, &b| rows[b].rss.cmp(&rows[a].rss)),
            Sort::Time => idx.sort_by(|&a, &b| rows[b].elapsed.cmp(&rows[a].elapsed)),
            Sort::Name => idx.sort_by(|&a, &b| {
                rows[a]
                    .agent
                    .to_lowercase()
                    .cmp(&rows[b].agent.to_lowercase())
            }),
        }
        self.items.clear();
        for i in idx {
            self.items.push(Item::Agent(i));
            if self.expanded.contains(&self.rows[i].id) {
                for p in tree_order(&self.rows[i].procs) {
                    self.items.push(Item::Proc(i, p));
                }
            }
        }
        if let Some((id, pid)) = keep {
            let found = self.items.iter().position(|it| match *it {
                Item::Agent(i) => pid.is_none() && self.rows[i].id == id,
                Item::Proc(i, p) => self.rows[i].id == id && Some(self.rows[i].procs[p].pid) == pid,
            });
            let found = found.or_else(|| {
                self.items
                    .iter()
                    .position(|it| matches!(*it, Item::Agent(i) if self.rows[i].id == id))
            });
            if let Some(f) = found {
                self.selected = f;
            }
        }
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }

    /// The agent under the selection (an agent line or one of its processes).
    pub fn selected_row(&self) -> Option<&AgentRow> {
        match self.items.get(self.selected)? {
            Item::Agent(i) | Item::Proc(i, _) => self.rows.get(*i),
        }
    }

    fn selected_pid(&self) -> Option<i32> {
        match self.items.get(self.selected)? {
            Item::Agent(i) => self.rows.get(*i)?.pid,
            Item::Proc(i, p) => self.rows.get(*i)?.procs.get(*p).map(|p| p.pid),
        }
    }

    pub fn alive(&self) -> usize {
        self.rows.iter().filter(|r| r.alive()).count()
    }

    fn move_by(&mut self, d: isize) {
        if self.items.is_empty() {
            return;
        }
        let n = self.items.len() as isize;
        self.selected = (self.selected as isize + d).clamp(0, n - 1) as usize;
    }

    fn page(&self) -> isize {
        (self.table_area.height.saturating_sub(1) as isize).max(1)
    }

    fn open_kill_dialog(&mut self) {
        let pid = self.selected_pid();
        let tree = matches!(self.items.get(self.selected), Some(Item::Agent(_)));
        if let Some(r) = self.selected_row().filter(|r| r.alive()) {
            // A tier that cannot aim at one process gets the whole tree.
            let tree = tree || !r.actions.one_process;
            self.dialog = Some(Dialog::Kill {
                run: r.id,
                agent: r.agent.clone(),
                signal: 0,
                tree,
                pid,
                actions: r.actions,
            });
        } else {
            self.message = Some("nothing to kill: the agent has exited".into());
        }
    }

    /// A key press; returns what the supervisor must do.
    pub fn on_key(&mut self, ev: KeyEvent) -> Vec<Cmd> {
        let message_box = std::mem::take(&mut self.message_box);
        self.message = None;
        if ev.modifiers.contains(KeyModifiers::CONTROL) && ev.code == KeyCode::Char('c') {
            return self.ask_quit();
        }
        if message_box {
            return vec![];
        }
        if let Some(d) = self.dialog.take() {
            return self.on_dialog_key(d, ev);
        }
        if self.detail {
            match ev.code {
                KeyCode::Esc => {
                    self.detail = false;
                    return vec![];
                }
                KeyCode::Char('s') => {
                    self.stream = if self.stream == Stream::Stdout {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    };
                    self.log_scroll = 0;
                    return vec![];
                }
                KeyCode::Char('/') => {
                    self.dialog = Some(Dialog::Search(self.search.clone().unwrap_or_default()));
                    return vec![];
                }
                KeyCode::Char('n') if self.search.is_some() => {
                    self.jump_to_match(true);
                    return vec![];
                }
                KeyCode::Char('N') if self.search.is_some() => {
                    self.jump_to_match(false);
                    return vec![];
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.log_scroll = (self.log_scroll + 1).min(self.log_lines.len());
                    self.follow = false;
                    return vec![];
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.log_scroll = self.log_scroll.saturating_sub(1);
                    return vec![];
                }
                KeyCode::PageUp => {
                    self.log_scroll = (self.log_scroll + 20).min(self.log_lines.len());
                    self.follow = false;
                    return vec![];
                }
                KeyCode::PageDown => {
                    self.log_scroll = self.log_scroll.saturating_sub(20);
                    return vec![];
                }
                _ => {}
            }
        }
        let Some(a) = self.keymap.action(&ev) else {
            return vec![];
        };
        self.on_action(a)
    }

    pub fn on_action(&mut self, a: Action) -> Vec<Cmd> {
        let keep = self.selected_key();
        match a {
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-self.page()),
            Action::PageDown => self.move_by(self.page()),
            Action::Home => self.selected = 0,
            Action::End => self.selected = self.items.len().saturating_sub(1),
            Action::Detail => {
                self.detail = !self.detail;
                self.log_scroll = 0;
                self.follow = true;
            }
            Action::ExpandTree => {
                if let Some(id) = self.selected_row().map(|r| r.id) {
                    if !self.expanded.remove(&id) {
                        self.expanded.insert(id);
                    }
                    // Collapsing leaves the selection on the agent.
                    let key = keep.map(|(id, _)| (id, None));
                    self.rebuild(key);
                }
            }
            Action::KillDialog => self.open_kill_dialog(),
            Action::KillTreeNow => {
                if let Some((id, agent)) = self
                    .selected_row()
                    .filter(|r| r.alive())
                    .map(|r| (r.id, r.agent.clone()))
                {
                    self.message = Some(format!("killing {agent} and its whole tree ({KILL_NOW})"));
                    return vec![Cmd::Signal {
                        run: id,
                        sig: Sig::Kill,
                        scope: Scope::Tree,
                    }];
                }
            }
            Action::PauseResume => {
                if let Some(r) = self.selected_row() {
                    match r.state {
                        RunState::Paused => return vec![Cmd::Resume(r.id)],
                        RunState::Running => return vec![Cmd::Pause(r.id)],
                        _ => {}
                    }
                }
            }
            Action::Restart => {
                if let Some(r) = self.selected_row() {
                    return vec![Cmd::Restart(r.id)];
                }
            }
            Action::Launch => {
                self.dialog = Some(Dialog::Launch {
                    choice: 0,
                    command: String::new(),
                    tier: 0,
                })
            }
            Action::Filter => self.dialog = Some(Dialog::Filter(self.filter.clone())),
            Action::SortCpu => self.set_sort(Sort::Cpu),
            Action::SortMemory => self.set_sort(Sort::Memory),
            Action::SortTime => self.set_sort(Sort::Time),
            Action::SortName => self.set_sort(Sort::Name),
            Action::NearLimitOnly => {
                self.near_only = !self.near_only;
                self.rebuild(keep);
            }
            Action::Follow => {
                self.follow = !self.follow;
                if self.follow {
                    self.log_scroll = 0;
                }
            }
            Action::Help => self.dialog = Some(Dialog::Help),
            Action::Quit => return self.ask_quit(),
        }
        vec![]
    }

    fn set_sort(&mut self, s: Sort) {
        let keep = self.selected_key();
        self.sort = if self.sort == s { Sort::Launch } else { s };
        self.rebuild(keep);
    }

    fn ask_quit(&mut self) -> Vec<Cmd> {
        let alive = self.alive();
        if alive == 0 {
            self.quitting = true;
            return vec![Cmd::Quit { stop: false }];
        }
        if self.quitting {
            // A second quit while every agent is being stopped: no grace period any more.
            self.message = Some(format!("killing {alive} agent(s) now (SIGKILL)..."));
            return vec![Cmd::KillAll];
        }
        self.dialog = Some(Dialog::ConfirmQuit { alive });
        vec![]
    }

    fn jump_to_match(&mut self, older: bool) {
        let Some(q) = self.search.clone().filter(|q| !q.is_empty()) else {
            return;
        };
        let n = self.log_lines.len();
        self.log_scroll = self.log_scroll.min(n);
        // Lines are indexed from the end: scroll s shows line n-1-s at the bottom.
        let range: Vec<usize> = if older {
            (self.log_scroll + 1..n).collect()
        } else {
            (0..self.log_scroll).rev().collect()
        };
        if let Some(s) = range
            .into_iter()
            .find(|&s| self.log_lines[n - 1 - s].contains(&q))
        {
            self.log_scroll = s;
            self.follow = false;
        } else {
            self.message = Some(format!("no more matches for `{q}`"));
        }
    }

    fn on_dialog_key(&mut self, d: Dialog, ev: KeyEvent) -> Vec<Cmd> {
        match d {
            Dialog::Help => {
                // Any key closes the help.
            }
            Dialog::ConfirmQuit { alive } if self.attached => match ev.code {
                // Attached: the agents are the service's; leaving them is the default.
                KeyCode::Char('l') | KeyCode::Char('L') | KeyCode::Enter | KeyCode::Char('y') => {
                    self.quitting = true;
                    return vec![Cmd::Quit { stop: false }];
                }
                KeyCode::Char('s') | KeyCode::Char('S') => {
                    self.quitting = true;
                    self.message = Some(format!("stopping {alive} agent(s)..."));
                    return vec![Cmd::Quit { stop: true }];
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {}
                _ => self.dialog = Some(Dialog::ConfirmQuit { alive }),
            },
            Dialog::ConfirmQuit { alive } => match ev.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                    self.quitting = true;
                    self.message = Some(format!("stopping {alive} agent(s)..."));
                    return vec![Cmd::Quit { stop: true }];
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Char('q') => {}
                _ => self.dialog = Some(Dialog::ConfirmQuit { alive }),
            },
            Dialog::Kill {
                run,
                agent,
                signal,
                tree,
                pid,
                actions,
            } => match ev.code {
                KeyCode::Esc | KeyCode::Char('q') => {}
                KeyCode::Up | KeyCode::Char('k') => {
                    self.dialog = Some(Dialog::Kill {
                        run,
                        agent,
                        signal: signal.saturating_sub(1),
                        tree,
                        pid,
                        actions,
                    })
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.dialog = Some(Dialog::Kill {
                        run,
                        agent,
                        signal: (signal + 1).min(actions.choices.len().saturating_sub(1)),
                        tree,
                        pid,
                        actions,
                    })
                }
                KeyCode::Tab | KeyCode::Char(' ') | KeyCode::Left | KeyCode::Right => {
                    self.dialog = Some(Dialog::Kill {
                        run,
                        agent,
                        signal,
                        tree: !tree || pid.is_none() || !actions.one_process,
                        pid,
                        actions,
                    })
                }
                KeyCode::Enter => {
                    let Some(&(sig, _)) = actions.choices.get(signal) else {
                        return Vec::new();
                    };
                    let scope = match (tree, pid) {
                        (false, Some(p)) => Scope::Process(p),
                        _ => Scope::Tree,
                    };
                    self.message = Some(format!(
                        "SIG{} to {}",
                        sig.name(),
                        match scope {
                            Scope::Tree => format!("{agent} (whole tree)"),
                            Scope::Process(p) => format!("pid {p} of {agent}"),
                        }
                    ));
                    return vec![Cmd::Signal { run, sig, scope }];
                }
                _ => {
                    self.dialog = Some(Dialog::Kill {
                        run,
                        agent,
                        signal,
                        tree,
                        pid,
                        actions,
                    })
                }
            },
            Dialog::Filter(mut s) => match ev.code {
                KeyCode::Esc => {
                    self.filter.clear();
                    self.rebuild(self.selected_key());
                }
                KeyCode::Enter => {}
                KeyCode::Backspace => {
                    s.pop();
                    self.filter = s.clone();
                    self.rebuild(self.selected_key());
                    self.dialog = Some(Dialog::Filter(s));
                }
                KeyCode::Char(c) => {
                    s.push(c);
                    self.filter = s.clone();
                    self.rebuild(self.selected_key());
                    self.dialog = Some(Dialog::Filter(s));
                }
                _ => self.dialog = Some(Dialog::Filter(s)),
            },
            Dialog::Search(mut s) => match ev.code {
                KeyCode::Esc => self.search = None,
                KeyCode::Enter => {
                    self.search = Some(s);
                    self.log_scroll = 0;
                    self.jump_to_match(true);
                    if self
                        .log_lines
                        .last()
                        .is_some_and(|l| self.search.as_ref().is_some_and(|q| l.contains(q)))
                    {
                        self.message = None;
                    }
                }
                KeyCode::Backspace => {
                    s.pop();
                    self.dialog = Some(Dialog::Search(s));
                }
                KeyCode::Char(c) => {
                    s.push(c);
                    self.dialog = Some(Dialog::Search(s));
                }
                _ => self.dialog = Some(Dialog::Search(s)),
            },
            Dialog::Launch {
                choice,
                mut command,
                tier,
            } => {
                let n = self.launchables.len() + 1; // the last choice is "a command"
                let typing = choice == n - 1;
                match ev.code {
                    KeyCode::Esc => {}
                    KeyCode::Up => {
                        self.dialog = Some(Dialog::Launch {
                            choice: choice.saturating_sub(1),
                            command,
                            tier,
                        })
                    }
                    KeyCode::Down => {
                        self.dialog = Some(Dialog::Launch {
                            choice: (choice + 1).min(n - 1),
                            command,
                            tier,
                        })
                    }
                    KeyCode::Tab => {
                        self.dialog = Some(Dialog::Launch {
                            choice,
                            command,
                            tier: (tier + 1) % LAUNCH_TIERS.len(),
                        })
                    }
                    KeyCode::Enter => {
                        if typing {
                            if command.trim().is_empty() {
                                self.dialog = Some(Dialog::Launch {
                                    choice,
                                    command,
                                    tier,
                                });
                            } else {
                                return vec![Cmd::LaunchCommand {
                                    command,
                                    tier: LAUNCH_TIERS[tier],
                                }];
                            }
                        } else {
                            return vec![Cmd::Launch(choice)];
                        }
                    }
                    KeyCode::Backspace if typing => {
                        command.pop();
                        self.dialog = Some(Dialog::Launch {
                            choice,
                            command,
                            tier,
                        });
                    }
                    KeyCode::Char(c) if typing => {
                        command.push(c);
                        self.dialog = Some(Dialog::Launch {
                            choice,
                            command,
                            tier,
                        });
                    }
                    _ => {
                        self.dialog = Some(Dialog::Launch {
                            choice,
                            command,
                            tier,
                        })
                    }
                }
            }
        }
        vec![]
    }

    /// A mouse event: a click selects a line; a right click opens the kill dialog for it; the
    /// wheel moves the selection.
    pub fn on_mouse(&mut self, m: MouseEvent) -> Vec<Cmd> {
        match m.kind {
            MouseEventKind::ScrollDown => self.move_by(3),
            MouseEventKind::ScrollUp => self.move_by(-3),
            MouseEventKind::Down(b @ (MouseButton::Left | MouseButton::Right)) => {
                if self.dialog.is_some() {
                    return vec![];
                }
                let a = self.table_area;
                if m.column >= a.x
                    && m.column < a.x + a.width
                    && m.row >= a.y
                    && m.row < a.y + a.height
                {
                    let i = self.offset + (m.row - a.y) as usize;
                    if i < self.items.len() {
                        self.selected = i;
                        if b == MouseButton::Right {
                            self.open_kill_dialog();
                        }
                    }
                }
            }
            _ => {}
        }
        vec![]
    }
}

/// The processes of a tree in depth-first order, each child after its parent.
pub fn tree_order(procs: &[ProcRow]) -> Vec<usize> {
    let pids: HashSet<i32> = procs.iter().map(|p| p.pid).collect();
    let mut out = Vec::with_capacity(procs.len());
    let mut stack: Vec<usize> = procs
        .iter()
        .enumerate()
        .filter(|(_, p)| !pids.contains(&p.ppid))
        .map(|(i, _)| i)
        .rev()
        .collect();
    let mut seen = HashSet::new();
    while let Some(i) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        out.push(i);
        let pid = procs[i].pid;
        let kids: Vec<usize> = procs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.ppid == pid)
            .map(|(j, _)| j)
            .rev()
            .collect();
        stack.extend(kids);
    }
    for i in 0..procs.len() {
        if !seen.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Depth of each process in its tree (0 for a root), for indentation.
pub fn depth(procs: &[ProcRow], i: usize) -> usize {
    let mut d = 0;
    let mut cur = procs[i].ppid;
    while let Some(p) = procs.iter().find(|p| p.pid == cur) {
        d += 1;
        cur = p.ppid;
        if d > 32 {
            break;
        }
    }
    d
}
