//! The one renderer for errors that point into a file (a config file or an agent file), in the
//! layout of rustc and cargo (annotate-snippets):
//!
//! ```text
//! error: unknown key `max_memroy_mb` in [native_execution]
//!  --> config.toml:5:1
//!   |
//! 5 | max_memroy_mb = 512
//!   | ^^^^^^^^^^^^^
//!   |
//!   = help: did you mean `max_memory_mb`?
//! ```
//!
//! `Display` of the error types is the plain rendering; the command prints the coloured one on
//! a terminal ([`use_color`]).

use std::io::IsTerminal;

use annotate_snippets::{AnnotationKind, Group, Level, Origin, Renderer, Snippet};

/// Where an error is in a file, with the source line to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The file as the user named it (for display only).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// How many characters to underline (at least one caret is drawn).
    pub width: usize,
    /// The source line, without its line terminator; empty when the location is outside the
    /// source (or the source is unavailable): then only `file:line:column` is shown.
    pub line_text: String,
}

impl Excerpt {
    /// The excerpt for the byte range `span` of `text` (the contents of `file`). A span past
    /// the end, or inside a character, is clamped; a span over several lines underlines the
    /// rest of its first line.
    pub fn from_span(file: &str, text: &str, span: std::ops::Range<usize>) -> Excerpt {
        let start = floor_char_boundary(text, span.start);
        let end = floor_char_boundary(text, span.end.max(start));
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let line_text = text[line_start..line_end].strip_suffix('\r');
        let line_text = line_text.unwrap_or(&text[line_start..line_end]);
        let column = text[line_start..start].chars().count() + 1;
        let width = text[start..end.min(line_start + line_text.len()).max(start)]
            .chars()
            .count();
        Excerpt {
            file: file.to_string(),
            line: text[..start].matches('\n').count() + 1,
            column,
            width,
            line_text: line_text.to_string(),
        }
    }
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Whether the errors written to stderr are coloured: stderr is a terminal and `NO_COLOR` is
/// unset or empty (<https://no-color.org>).
pub fn use_color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// `message` at `at`, rendered as rustc renders its errors: the title, `--> file:line:column`,
/// the source line with an underline, then `= help: ...` when there is a help line. With
/// `color`, ANSI colours; without, plain text with no escape byte.
pub fn render(message: &str, at: &Excerpt, help: Option<&str>, color: bool) -> String {
    let renderer = if color {
        Renderer::styled()
    } else {
        Renderer::plain()
    };
    let mut group = Group::with_title(Level::ERROR.primary_title(message));
    if at.line_text.is_empty() || at.line == 0 {
        group = group.element(
            Origin::path(at.file.as_str())
                .line(at.line)
                .char_column(at.column),
        );
    } else {
        // Byte range of the underlined characters within the line; a column past the end of
        // the line points just after it.
        let byte_at = |chars: usize| {
            at.line_text
                .char_indices()
                .nth(chars)
                .map_or(at.line_text.len(), |(i, _)| i)
        };
        let start = byte_at(at.column.saturating_sub(1));
        let end = byte_at(at.column.saturating_sub(1) + at.width.max(1)).max(start);
        group = group.element(
            Snippet::source(at.line_text.as_str())
                .line_start(at.line)
                .path(at.file.as_str())
                .annotation(AnnotationKind::Primary.span(start..end)),
        );
    }
    if let Some(help) = help {
        group = group.element(Level::HELP.message(help));
    }
    renderer.render(&[group])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rendering_has_the_location_the_line_and_an_underline() {
        let text = "[native_execution]\nmax_memroy_mb = 512\n";
        let at = Excerpt::from_span("config.toml", text, 19..32);
        assert_eq!((at.line, at.column, at.width), (2, 1, 13));
        let out = render(
            "unknown key `max_memroy_mb`",
            &at,
            Some("did you mean `max_memory_mb`?"),
            false,
        );
        assert!(!out.contains('\x1b'), "{out}");
        for part in [
            "error: unknown key `max_memroy_mb`",
            "--> config.toml:2:1",
            "2 | max_memroy_mb = 512",
            "  | ^^^^^^^^^^^^^",
            "= help: did you mean `max_memory_mb`?",
        ] {
            assert!(out.contains(part), "{part:?} not in\n{out}");
        }
        assert!(render("m", &at, None, true).contains('\x1b'));
    }

    #[test]
    fn a_location_without_its_line_still_names_the_file_line_and_column() {
        let at = Excerpt {
            file: "f".into(),
            line: 9,
            column: 9,
            width: 1,
            line_text: String::new(),
        };
        let out = render("m", &at, None, false);
        assert!(out.contains("error: m") && out.contains("f:9:9"), "{out}");
    }

    #[test]
    fn spans_past_the_end_or_inside_a_character_are_clamped() {
        let at = Excerpt::from_span("f", "ab\ncdé", 6..100);
        assert_eq!((at.line, at.column, at.line_text.as_str()), (2, 3, "cdé"));
        let at = Excerpt::from_span("f", "a = [\n1", 4..7);
        assert_eq!((at.line, at.column, at.width), (1, 5, 1));
    }
}
