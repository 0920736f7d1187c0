//! Agent files: the seed's DSL.
//!
//! ```text
//! agent NativeWorker {
//!   metadata { name: "Local Development Agent" version: "1.0.0" }
//!   security { tier: None sandbox: Permissive capabilities: ["local_filesystem", "network"] }
//!   limits   { max_memory_mb: 512 max_cpu_cores: 1.5 max_cpu_seconds: 60 timeout: 30s }
//!   env      { LOG_LEVEL: "debug" }
//!   on start { execute("python3 setup.py") }
//!   on trigger "local_processing" {
//!     // Executes directly on host
//!     execute_native("python3 process.py")
//!   }
//! }
//! ```
//!
//! Grammar (keywords are case-sensitive; commas between entries are optional; comments are
//! `// ...`, `# ...` and `/* ... */`):
//!
//! ```text
//! file      = agent*
//! agent     = "agent" IDENT "{" block* "}"
//! block     = "metadata" "{" (KEY ":" value ","?)* "}"
//!           | "security" "{" (("tier" | "sandbox" | "capabilities" | "image") ":" value ","?)* "}"
//!           | "limits"   "{" (LIMIT ":" NUMBER ","?)* "}"
//!           | "env"      "{" ((IDENT | STRING) ":" (STRING | NUMBER) ","?)* "}"
//!           | "on" ("start" | "trigger" (STRING | IDENT)) "{" (statement ";"?)* "}"
//! statement = ("execute_native" | "execute") "(" STRING ")"
//! value     = STRING | NUMBER | IDENT | "[" (value ("," value)* ","?)? "]"
//! ```
//!
//! The parser is a hand-written recursive descent over [`lexer`]; the first error stops it and
//! comes back as a [`Diagnostic`] that renders as `file:line:col: error: ...`, the line and a caret.

mod diagnostic;
mod lexer;
mod parser;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tier::SecurityTier;

pub use diagnostic::Diagnostic;

/// A duration as agent files write it: `30s`, `500ms`, `5m`, `1h` or a bare number of seconds
/// (fractions allowed). The error says what is wrong, for a flag's message.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    use parser::DurationError;
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (text, unit) = s.split_at(split);
    let result = if text.is_empty() {
        Err(DurationError::NotANumber)
    } else {
        parser::duration_of(text.strip_prefix('+').unwrap_or(text), unit)
    };
    result.map_err(|e| match e {
        DurationError::UnknownUnit => {
            format!("unknown unit `{unit}` in `{s}` (expected ms, s, m or h, e.g. 30s or 5m)")
        }
        DurationError::NotPositive => format!("`{s}` is not a positive duration"),
        DurationError::TooLarge => format!("`{s}` is too large"),
        DurationError::NotANumber => {
            format!("`{s}` is not a duration (e.g. 30s, 5m, 1h, or 300 for seconds)")
        }
    })
}

/// A place in an agent file: 1-based line, and 1-based column counted in chars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    pub fn new(line: usize, column: usize) -> Location {
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One parsed agent file.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFile {
    pub path: PathBuf,
    pub agents: Vec<AgentDef>,
}

/// One `agent NAME { ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentDef {
    pub name: String,
    /// Where the `agent` keyword is.
    pub location: Location,
    /// `metadata { ... }` in file order; strings unquoted, numbers and names as written, lists as
    /// their items joined by `, `.
    pub metadata: Vec<(String, String)>,
    /// `security { tier: ... }` and where the tier's value is written.
    pub tier: Option<(SecurityTier, Location)>,
    /// `security { sandbox: ... }`, as written.
    pub sandbox: Option<String>,
    pub capabilities: Vec<String>,
    /// `security { image: "..." }`, for container tiers.
    pub image: Option<String>,
    pub limits: AgentLimits,
    /// `env { KEY: "value" }`: name, value and where the name is.
    pub env: Vec<(String, String, Location)>,
    /// `on start` and `on trigger` blocks in file order.
    pub handlers: Vec<Handler>,
}

/// `limits { ... }`: every value present is positive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentLimits {
    pub max_memory_mb: Option<u64>,
    pub max_cpu_cores: Option<f64>,
    pub max_cpu_seconds: Option<u64>,
    pub timeout: Option<Duration>,
    pub max_processes: Option<u64>,
    pub max_file_size_mb: Option<u64>,
    /// Where the `limits` keyword is; `None` without a `limits` block.
    pub location: Option<Location>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// `on start { ... }`
    Start,
    /// `on trigger "name" { ... }`
    Trigger(String),
}

impl HandlerKind {
    /// `start`, or the trigger's name.
    pub fn name(&self) -> &str {
        match self {
            HandlerKind::Start => "start",
            HandlerKind::Trigger(name) => name,
        }
    }
}

/// An `on ...` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Handler {
    pub kind: HandlerKind,
    /// Where the `on` keyword is.
    pub location: Location,
    /// Run in order.
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// `execute_native("...")`: a host process; only in an agent whose tier is None or unset.
    ExecuteNative,
    /// `execute("...")`: runs on the agent's tier.
    Execute,
}

/// `execute_native("...")` or `execute("...")`.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub kind: StatementKind,
    /// The command string as written (escapes resolved).
    pub command: String,
    /// The command split into words by POSIX shell rules; never empty.
    pub argv: Vec<String>,
    /// Where the statement's keyword is.
    pub location: Location,
}

/// Parses the text of an agent file; `path` is used for the result and in diagnostics.
pub fn parse_str(src: &str, path: &Path) -> Result<AgentFile, Diagnostic> {
    let file = path.display().to_string();
    match parser::parse_agents(src) {
        Ok(agents) => Ok(AgentFile {
            path: path.to_path_buf(),
            agents,
        }),
        Err(e) => Err(Diagnostic::at(&file, src, e.loc, e.msg)),
    }
}

/// Reads and parses an agent file. A file that cannot be read is a diagnostic at 1:1 with the
/// I/O error; a file that is not UTF-8 is one at the first byte that is not.
pub fn parse_file(path: &Path) -> Result<AgentFile, Diagnostic> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        Diagnostic::at(
            &file,
            "",
            Location::new(1, 1),
            format!("cannot read agent file: {e}"),
        )
    })?;
    match String::from_utf8(bytes) {
        Ok(src) => parse_str(&src, path),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let line = prefix.matches('\n').count() + 1;
            let column = prefix.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            let lossy = String::from_utf8_lossy(e.as_bytes());
            Err(Diagnostic::at(
                &file,
                &lossy,
                Location::new(line, column),
                "agent file is not valid UTF-8",
            ))
        }
    }
}
