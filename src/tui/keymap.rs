//! Keys map to actions; the defaults follow htop and k9s habits and every binding can be
//! changed in `[dashboard.keys]` (`kill_dialog = ["x", "F9"]`).

use std::collections::BTreeMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the operator can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Detail,
    ExpandTree,
    KillDialog,
    KillTreeNow,
    PauseResume,
    Restart,
    Launch,
    Filter,
    SortCpu,
    SortMemory,
    SortTime,
    SortName,
    NearLimitOnly,
    Follow,
    Help,
    Quit,
}

impl Action {
    pub const ALL: [Action; 22] = [
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Home,
        Action::End,
        Action::Detail,
        Action::ExpandTree,
        Action::KillDialog,
        Action::KillTreeNow,
        Action::PauseResume,
        Action::Restart,
        Action::Launch,
        Action::Filter,
        Action::SortCpu,
        Action::SortMemory,
        Action::SortTime,
        Action::SortName,
        Action::NearLimitOnly,
        Action::Follow,
        Action::Help,
        Action::Quit,
    ];

    /// The name used in `[dashboard.keys]`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page_up",
            Action::PageDown => "page_down",
            Action::Home => "home",
            Action::End => "end",
            Action::Detail => "detail",
            Action::ExpandTree => "expand_tree",
            Action::KillDialog => "kill_dialog",
            Action::KillTreeNow => "kill_tree_now",
            Action::PauseResume => "pause_resume",
            Action::Restart => "restart",
            Action::Launch => "launch",
            Action::Filter => "filter",
            Action::SortCpu => "sort_cpu",
            Action::SortMemory => "sort_memory",
            Action::SortTime => "sort_time",
            Action::SortName => "sort_name",
            Action::NearLimitOnly => "near_limit_only",
            Action::Follow => "follow",
            Action::Help => "help",
            Action::Quit => "quit",
        }
    }

    /// One line of help.
    pub fn help(self) -> &'static str {
        match self {
            Action::Up => "move up",
            Action::Down => "move down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Home => "first agent",
            Action::End => "last agent",
            Action::Detail => "detail pane: sparklines, limits, argv, environment, logs",
            Action::ExpandTree => "expand the agent into its process tree",
            Action::KillDialog => "kill dialog: choose the signal, whole tree or one process",
            Action::KillTreeNow => "kill the agent's whole tree now (SIGKILL, no dialog)",
            Action::PauseResume => "pause / resume the agent (freeze its tree)",
            Action::Restart => "restart: fire the agent's trigger again",
            Action::Launch => "launch an agent from a loaded file, or a command",
            Action::Filter => "filter by name, trigger or command",
            Action::SortCpu => "sort by CPU",
            Action::SortMemory => "sort by memory",
            Action::SortTime => "sort by running time",
            Action::SortName => "sort by name",
            Action::NearLimitOnly => "show only agents near or over a limit",
            Action::Follow => "follow the log tail (detail pane)",
            Action::Help => "this help",
            Action::Quit => "quit (asks first if agents are alive)",
        }
    }

    fn defaults(self) -> &'static [&'static str] {
        match self {
            Action::Up => &["Up", "k"],
            Action::Down => &["Down", "j"],
            Action::PageUp => &["PageUp"],
            Action::PageDown => &["PageDown"],
            Action::Home => &["Home", "g"],
            Action::End => &["End", "G"],
            Action::Detail => &["Enter"],
            Action::ExpandTree => &["Tab", "t"],
            Action::KillDialog => &["x", "F9", "Delete"],
            Action::KillTreeNow => &["X"],
            Action::PauseResume => &["p"],
            Action::Restart => &["r"],
            Action::Launch => &["n"],
            Action::Filter => &["/"],
            Action::SortCpu => &["P"],
            Action::SortMemory => &["M"],
            Action::SortTime => &["T"],
            Action::SortName => &["N"],
            Action::NearLimitOnly => &["!"],
            Action::Follow => &["f"],
            Action::Help => &["?", "F1"],
            Action::Quit => &["q", "F10"],
        }
    }
}

/// A key as written in the config: `x`, `X`, `F9`, `Enter`, `Ctrl-k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

pub fn parse_key(s: &str) -> Option<Key> {
    let (ctrl, rest) = match s.strip_prefix("Ctrl-").or_else(|| s.strip_prefix("ctrl-")) {
        Some(r) => (true, r),
        None => (false, s),
    };
    let code = match rest {
        "Up" => KeyCode::Up,
        "Down" => KeyCode::Down,
        "Left" => KeyCode::Left,
        "Right" => KeyCode::Right,
        "PageUp" => KeyCode::PageUp,
        "PageDown" => KeyCode::PageDown,
        "Home" => KeyCode::Home,
        "End" => KeyCode::End,
        "Enter" => KeyCode::Enter,
        "Tab" => KeyCode::Tab,
        "Esc" => KeyCode::Esc,
        "Delete" => KeyCode::Delete,
        "Backspace" => KeyCode::Backspace,
        "Space" => KeyCode::Char(' '),
        f if f.len() >= 2 && f.starts_with('F') && f[1..].parse::<u8>().is_ok() => {
            KeyCode::F(f[1..].parse().ok()?)
        }
        c if c.chars().count() == 1 => KeyCode::Char(c.chars().next()?),
        _ => return None,
    };
    Some(Key { code, ctrl })
}

pub fn key_name(k: &Key) -> String {
    let base = match k.code {
        KeyCode::Char(' ') => "Space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::F(n) => format!("F{n}"),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        other => format!("{other:?}"),
    };
    if k.ctrl {
        format!("Ctrl-{base}")
    } else {
        base
    }
}

/// The bindings in force.
#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: Vec<(Key, Action)>,
}

impl Keymap {
    /// Defaults, with each action named in `overrides` rebound to exactly the keys given.
    pub fn new(overrides: &BTreeMap<String, Vec<String>>) -> Result<Keymap, String> {
        let mut bindings = Vec::new();
        for a in Action::ALL {
            let keys: Vec<String> = match overrides.get(a.name()) {
                Some(k) => k.clone(),
                None => a.defaults().iter().map(|s| s.to_string()).collect(),
            };
            for k in keys {
                let key = parse_key(&k)
                    .ok_or_else(|| format!("[dashboard.keys] {}: unknown key `{k}`", a.name()))?;
                bindings.push((key, a));
            }
        }
        for name in overrides.keys() {
            if !Action::ALL.iter().any(|a| a.name() == name) {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                return Err(format!(
                    "[dashboard.keys]: unknown action `{name}` (actions: {})",
                    names.join(", ")
                ));
            }
        }
        Ok(Keymap { bindings })
    }

    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        self.bindings
            .iter()
            .find(|(k, _)| k.code == ev.code && k.ctrl == ctrl)
            .map(|(_, a)| *a)
    }

    /// The keys bound to an action, for the help screen and the key bar.
    pub fn keys(&self, a: Action) -> Vec<String> {
        self.bindings
            .iter()
            .filter(|(_, b)| *b == a)
            .map(|(k, _)| key_name(k))
            .collect()
    }
}

impl Default for Keymap {
    fn default() -> Self {
        Keymap::new(&BTreeMap::new()).expect("default keys parse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn defaults_follow_the_spec() {
        let k = Keymap::default();
        assert_eq!(k.action(&ev(KeyCode::Char('j'))), Some(Action::Down));
        assert_eq!(k.action(&ev(KeyCode::F(9))), Some(Action::KillDialog));
        assert_eq!(k.action(&ev(KeyCode::Delete)), Some(Action::KillDialog));
        assert_eq!(k.action(&ev(KeyCode::Char('X'))), Some(Action::KillTreeNow));
        assert_eq!(
            k.action(&ev(KeyCode::Char('!'))),
            Some(Action::NearLimitOnly)
        );
        assert_eq!(k.action(&ev(KeyCode::Tab)), Some(Action::ExpandTree));
    }

    #[test]
    fn a_remapped_action_loses_its_default_keys() {
        let mut o = BTreeMap::new();
        o.insert(
            "kill_dialog".to_string(),
            vec!["K".to_string(), "Ctrl-d".to_string()],
        );
        let k = Keymap::new(&o).unwrap();
        assert_eq!(k.action(&ev(KeyCode::Char('K'))), Some(Action::KillDialog));
        assert_eq!(k.action(&ev(KeyCode::Char('x'))), None);
        let ctrl_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
        assert_eq!(k.action(&ctrl_d), Some(Action::KillDialog));
        assert_eq!(k.keys(Action::KillDialog), vec!["K", "Ctrl-d"]);
    }

    #[test]
    fn unknown_actions_and_keys_are_errors() {
        let mut o = BTreeMap::new();
        o.insert("explode".to_string(), vec!["e".to_string()]);
        assert!(Keymap::new(&o)
            .unwrap_err()
            .contains("unknown action `explode`"));
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), vec!["Hyper-q".to_string()]);
        assert!(Keymap::new(&o).unwrap_err().contains("unknown key"));
    }
}
