//! What every client reports the same way: human-sized figures, and the exit status of a set
//! of runs. The headless printer and the dashboard both use it; neither borrows from the other.

use std::borrow::Cow;
use std::sync::Arc;

use crate::supervisor::{Reason, RunRecord};

/// Human-sized bytes: 1.5 KiB, 12.0 MiB.
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Text an agent wrote, made safe to show on a terminal: every C0 control character but tab,
/// DEL and the C1 controls are shown, never interpreted: ESC as `^[`, BEL as `^G`, DEL as `^?`
/// (caret notation), U+009B as `M-^[` (as `cat -v` shows the byte 0x9b). Everything else,
/// UTF-8 text included, is kept as it is. The one filter for every place symbiont itself shows
/// an agent's output (headless lines and summary, the dashboard); `exec` passes the agent's
/// bytes through untouched instead.
pub fn visible(s: &str) -> Cow<'_, str> {
    let shown = |c: char| c == '\t' || !c.is_control();
    if s.chars().all(shown) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c as u32 {
            _ if shown(c) => out.push(c),
            n @ 0..=0x1f => {
                out.push('^');
                out.push(char::from(b'@' + n as u8));
            }
            0x7f => out.push_str("^?"),
            n @ 0x80..=0x9f => {
                out.push_str("M-^");
                out.push(char::from(b'@' + (n - 0x80) as u8));
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The process exit status of a set of runs: 0 when every run succeeded, else 1.
pub fn exit_code(records: &[Arc<RunRecord>]) -> u8 {
    if records.iter().all(|r| r.success()) {
        0
    } else {
        1
    }
}

/// `exec`'s status for symbiont's own failures and bad usage (env(1)'s 125).
pub const FAILED: u8 = 125;
/// `exec`'s status for a program policy refused or that could not be executed.
pub const EXEC_REFUSED: u8 = 126;
/// `exec`'s status for a program not found.
pub const EXEC_NOT_FOUND: u8 = 127;

/// `exec`'s status for what was refused before anything ran.
pub fn exec_refusal_status(e: &crate::plan::PlanError) -> u8 {
    if e.program_not_found() {
        EXEC_NOT_FOUND
    } else if e.refused_by_policy() {
        EXEC_REFUSED
    } else {
        FAILED
    }
}

/// `symbiont exec`'s exit status, with the conventions of timeout(1) and env(1): the agent's
/// own code; 124 when its timeout ended it; 128+N when signal N did (137 for the memory limit
/// and SIGKILL, 143 for SIGTERM); 126 when its program could not be executed, 127 when it was
/// not found; 125 for symbiont's own failures, a run that succeeded but whose output or audit
/// lines were lost included.
pub fn exec_status(r: &RunRecord) -> u8 {
    let by_signal = |name: &str| {
        crate::process::signal_number(name).map_or(FAILED, |n| (128 + n).clamp(0, 255) as u8)
    };
    match r.reason {
        Reason::Timeout => 124,
        Reason::MemoryLimit => 137,
        Reason::FailedToStart => {
            let m = r.message.as_deref().unwrap_or("");
            if m.contains("(os error 2)") {
                EXEC_NOT_FOUND
            } else if m.contains("(os error 13)") || m.contains("(os error 8)") {
                EXEC_REFUSED
            } else {
                FAILED
            }
        }
        _ => match (r.exit_code, r.signal.as_deref()) {
            (Some(0), _) if !r.complete() => FAILED,
            (Some(c), _) => c.clamp(0, 255) as u8,
            (None, Some(s)) => by_signal(s),
            // Ended by a kill that left no status (a container stopped from outside).
            (None, None) => FAILED,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{bytes, visible};

    #[test]
    fn control_characters_are_shown_not_interpreted() {
        assert_eq!(visible("\x1b]0;pwned\x07\x1b[2J"), "^[]0;pwned^G^[[2J");
        assert_eq!(visible("a\rb\x7f\u{9b}31m\0"), "a^Mb^?M-^[31m^@");
        // UTF-8 text and tabs are kept, borrowed when nothing needs showing.
        let text = "沙箱层级\tüñí ✓";
        assert!(matches!(visible(text), std::borrow::Cow::Borrowed(t) if t == text));
        assert_eq!(visible("é\x1bé"), "é^[é");
    }

    #[test]
    fn bytes_are_human_sized() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(bytes(3 << 40), "3.0 TiB");
    }
}
