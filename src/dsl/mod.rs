//! Agent files (temporary stub with the agreed API; the real module lands from branch `dsl`).
use std::path::{Path, PathBuf};
use crate::tier::SecurityTier;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location { pub line: usize, pub column: usize }
#[derive(Debug, Clone)]
pub struct AgentFile { pub path: PathBuf, pub agents: Vec<AgentDef> }
#[derive(Debug, Clone)]
pub struct AgentDef {
    pub name: String, pub location: Location,
    pub metadata: Vec<(String, String)>,
    pub tier: Option<(SecurityTier, Location)>,
    pub sandbox: Option<String>,
    pub capabilities: Vec<String>,
    pub image: Option<String>,
    pub limits: AgentLimits,
    pub env: Vec<(String, String, Location)>,
    pub handlers: Vec<Handler>,
}
#[derive(Debug, Clone, Default)]
pub struct AgentLimits { pub max_memory_mb: Option<u64>, pub max_cpu_cores: Option<f64>, pub max_cpu_seconds: Option<u64>, pub timeout: Option<std::time::Duration>, pub max_processes: Option<u64>, pub max_file_size_mb: Option<u64>, pub location: Option<Location> }
#[derive(Debug, Clone)]
pub enum HandlerKind { Start, Trigger(String) }
impl HandlerKind { pub fn name(&self) -> &str { match self { Self::Start => "start", Self::Trigger(n) => n } } }
#[derive(Debug, Clone)]
pub struct Handler { pub kind: HandlerKind, pub location: Location, pub statements: Vec<Statement> }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind { ExecuteNative, Execute }
#[derive(Debug, Clone)]
pub struct Statement { pub kind: StatementKind, pub command: String, pub argv: Vec<String>, pub location: Location }
#[derive(Debug, Clone)]
pub struct Diagnostic { pub file: String, pub location: Location, pub message: String, pub line_text: String }
impl std::fmt::Display for Diagnostic { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}:{}:{}: error: {}", self.file, self.location.line, self.location.column, self.message) } }
impl std::error::Error for Diagnostic {}
impl Diagnostic { pub fn at(file: &str, _src: &str, location: Location, message: impl Into<String>) -> Diagnostic { Diagnostic { file: file.into(), location, message: message.into(), line_text: String::new() } } }
pub fn parse_file(path: &Path) -> Result<AgentFile, Diagnostic> { Err(Diagnostic::at(&path.display().to_string(), "", Location { line: 1, column: 1 }, "stub")) }
