//! The configuration error and the byte-offset to line/column conversion it needs.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use crate::diagnostic::Excerpt;

/// A configuration problem. An error at one place in a config file carries that place and is
/// rendered with its source line ([`crate::diagnostic`]); any other message is complete: it
/// names the environment variable and its value, or the places it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
    at: Option<Excerpt>,
    help: Option<String>,
}

impl ConfigError {
    /// An error with a ready-made message (location, if any, included by the caller).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            at: None,
            help: None,
        }
    }

    /// An error at `at` in a config file, with an optional help line (the suggestion).
    pub fn at(at: Excerpt, message: impl Into<String>, help: Option<String>) -> Self {
        Self {
            message: message.into(),
            at: Some(at),
            help,
        }
    }

    /// What is wrong, without the location and the help line.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where in the config file, when the error is at one place in it.
    pub fn location(&self) -> Option<&Excerpt> {
        self.at.as_ref()
    }

    /// The suggestion, if any.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// The whole error, coloured or not; `Display` is `render(false)`.
    pub fn render(&self, color: bool) -> String {
        match &self.at {
            Some(at) => crate::diagnostic::render(&self.message, at, self.help.as_deref(), color),
            None => match &self.help {
                Some(help) => format!("{}; {help}", self.message),
                None => self.message.clone(),
            },
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line and column (in characters) of byte `offset` in `text`.
/// An offset past the end, or inside a character, is clamped to the nearest valid position.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Where things are in one config file: turns spans into `path:line:col` prefixes.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl Source<'_> {
    pub fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    /// `path:line:col`
    pub fn loc(&self, span: &Range<usize>) -> String {
        let (line, col) = line_col(self.text, span.start);
        format!("{}:{}:{}", self.path.display(), line, col)
    }

    pub fn error(&self, span: &Range<usize>, message: impl fmt::Display) -> ConfigError {
        self.error_with_help(span, message, None)
    }

    /// An error at `span`, shown with its source line and `help` under it.
    pub fn error_with_help(
        &self,
        span: &Range<usize>,
        message: impl fmt::Display,
        help: Option<String>,
    ) -> ConfigError {
        let at = Excerpt::from_span(&self.path.display().to_string(), self.text, span.clone());
        ConfigError::at(at, message.to_string(), help)
    }

    /// The source text of `span` if it is short and on one line, for "found ..." messages.
    pub fn snippet(&self, span: &Range<usize>) -> Option<&str> {
        let s = self.text.get(span.clone())?.trim();
        if s.is_empty() || s.contains('\n') || s.chars().count() > 40 {
            None
        } else {
            Some(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let t = "ab\ncdé\r\nxyz";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 1), (1, 2));
        assert_eq!(line_col(t, 3), (2, 1));
        // é is two bytes; the byte after it is column 4
        assert_eq!(line_col(t, 7), (2, 4));
        // inside é: clamped back to its start
        assert_eq!(line_col(t, 6), (2, 3));
        assert_eq!(line_col(t, 9), (3, 1));
        assert_eq!(line_col(t, 1000), (3, 4));
    }
}
