//! Error reports that point into an agent file: the message, `--> file:line:col`, the
//! offending line with a caret under the column, and a help line with the suggestion when
//! there is one; rendered by [`crate::diagnostic`], as config errors are.

use std::fmt;

use super::Location;
use crate::diagnostic::{render, Excerpt};

/// One error in an agent file, with enough of the source to show where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (for display only).
    pub file: String,
    /// Where the error is (1-based line and column; the column counts chars).
    pub location: Location,
    /// What is wrong, on one line.
    pub message: String,
    /// The suggestion ("did you mean `security`?"), shown as a help line.
    pub help: Option<String>,
    /// The source line at `location.line`, without its line terminator; empty when the
    /// location is outside the source (or the source is unavailable).
    pub line_text: String,
}

impl Diagnostic {
    /// A diagnostic for `location` in `src`, which is the text of `file`. The line is taken from
    /// `src`; a location outside it is kept as given and shown without a source line. A
    /// suggestion in the message (`...; did you mean `x`?`) becomes the help line.
    pub fn at(file: &str, src: &str, location: Location, message: impl Into<String>) -> Diagnostic {
        let mut message = message.into();
        let mut help = None;
        if let Some(i) = message.find("; did you mean `") {
            help = Some(message[i + 2..].to_string());
            message.truncate(i);
        }
        Diagnostic {
            file: file.to_string(),
            location,
            message,
            help,
            line_text: source_line(src, location.line).unwrap_or_default(),
        }
    }

    /// The place to show: a word (an identifier or a number) at the column is underlined
    /// whole, anything else gets one caret.
    pub fn excerpt(&self) -> Excerpt {
        let word = |c: char| c.is_alphanumeric() || c == '_';
        let rest = self
            .line_text
            .chars()
            .skip(self.location.column.saturating_sub(1));
        let width = rest.take_while(|c| word(*c)).count().max(1);
        Excerpt {
            file: self.file.clone(),
            line: self.location.line,
            column: self.location.column,
            width,
            line_text: self.line_text.clone(),
        }
    }

    /// The whole report, coloured or not; `Display` is `render(false)`.
    pub fn render(&self, color: bool) -> String {
        render(&self.message, &self.excerpt(), self.help.as_deref(), color)
    }
}

/// Line `line` (1-based) of `src`, without its `\n` or `\r\n`.
fn source_line(src: &str, line: usize) -> Option<String> {
    let text = src.split('\n').nth(line.checked_sub(1)?)?;
    Some(text.strip_suffix('\r').unwrap_or(text).to_string())
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostic {}
