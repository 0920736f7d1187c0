//! Error reports that point into an agent file: `file:line:col: error: message`, then the
//! offending line and a caret under the column.

use std::fmt;

use super::Location;

/// One error in an agent file, with enough of the source to show where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (for display only).
    pub file: String,
    /// Where the error is (1-based line and column; the column counts chars).
    pub location: Location,
    /// What is wrong, on one line.
    pub message: String,
    /// The source line at `location.line`, without its line terminator; empty when the
    /// location is outside the source (or the source is unavailable).
    pub line_text: String,
}

impl Diagnostic {
    /// A diagnostic for `location` in `src`, which is the text of `file`. The line is taken from
    /// `src`; a location outside it is kept as given and shown without a source line.
    pub fn at(file: &str, src: &str, location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_string(),
            location,
            message: message.into(),
            line_text: source_line(src, location.line).unwrap_or_default(),
        }
    }

    /// The line under the source line: the characters before the column replaced by spaces
    /// (tabs kept, so that the caret lines up), then `^`.
    pub fn caret_line(&self) -> String {
        let mut out = String::new();
        let before = self.location.column.saturating_sub(1);
        let mut chars = self.line_text.chars();
        for _ in 0..before {
            match chars.next() {
                Some('\t') => out.push('\t'),
                _ => out.push(' '),
            }
        }
        out.push('^');
        out
    }
}

/// Line `line` (1-based) of `src`, without its `\n` or `\r\n`.
fn source_line(src: &str, line: usize) -> Option<String> {
    let text = src.split('\n').nth(line.checked_sub(1)?)?;
    Some(text.strip_suffix('\r').unwrap_or(text).to_string())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.location.line, self.location.column, self.message
        )?;
        // A report with no source line (an unreadable file) has nothing to point into.
        if !self.line_text.is_empty() {
            write!(f, "\n{}\n{}", self.line_text, self.caret_line())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}
