//! Recursive descent over the tokens of [`super::lexer`]. See the grammar in [`super`].

use std::collections::HashMap;
use std::time::Duration;

use super::lexer::{Lexer, PResult, SyntaxError, Tok, Token};
use super::{AgentDef, AgentLimits, Handler, HandlerKind, Location, Statement, StatementKind};
use crate::tier::SecurityTier;

const BLOCKS: &[&str] = &["metadata", "security", "limits", "env", "on"];
const SECURITY_KEYS: &[&str] = &["tier", "sandbox", "capabilities", "image"];
const LIMIT_KEYS: &[&str] = &[
    "max_memory_mb",
    "max_cpu_cores",
    "max_cpu_seconds",
    "timeout",
    "max_processes",
    "max_file_size_mb",
];
const STATEMENTS: &[&str] = &["execute_native", "execute"];
const TIER_NAMES: &[&str] = &[
    "None",
    "native",
    "Tier1",
    "docker",
    "Tier2",
    "gvisor",
    "Tier3",
    "firecracker",
    "microvm",
];
/// How deeply lists may nest in a metadata value (keeps recursion bounded on hostile input).
const MAX_LIST_DEPTH: usize = 16;

/// Parses every agent in `src`.
pub(crate) fn parse_agents(src: &str) -> PResult<Vec<AgentDef>> {
    let mut p = Parser {
        lexer: Lexer::new(src),
        peeked: None,
    };
    let mut agents: Vec<AgentDef> = Vec::new();
    // Where each name was first defined: the duplicate check is one lookup per agent, so a
    // file of many agents loads in linear time.
    let mut defined: HashMap<String, Location> = HashMap::new();
    loop {
        let t = p.next()?;
        match t.tok {
            Tok::Eof => return Ok(agents),
            Tok::Ident(ref w) if w == "agent" => {
                let agent = p.agent(t.loc, &defined)?;
                defined.insert(agent.name.clone(), agent.location);
                agents.push(agent);
            }
            Tok::Ident(w) => {
                return Err(SyntaxError::new(
                    t.loc,
                    format!(
                        "expected `agent`, found `{w}`{}",
                        did_you_mean(&w, &["agent"])
                    ),
                ))
            }
            other => {
                return Err(SyntaxError::new(
                    t.loc,
                    format!("expected `agent`, found {other}"),
                ))
            }
        }
    }
}

/// A value on the right of `key:`.
#[derive(Debug, Clone)]
struct Value {
    kind: ValueKind,
    loc: Location,
}

#[derive(Debug, Clone)]
enum ValueKind {
    Str(String),
    Num { text: String, suffix: String },
    Ident(String),
    List(Vec<Value>),
}

impl Value {
    /// How the value reads in metadata: strings unquoted, lists as their items joined by `, `
    /// (nested lists in brackets).
    fn render(&self, top: bool) -> String {
        match &self.kind {
            ValueKind::Str(s) | ValueKind::Ident(s) => s.clone(),
            ValueKind::Num { text, suffix } => format!("{text}{suffix}"),
            ValueKind::List(items) => {
                let inner: Vec<String> = items.iter().map(|v| v.render(false)).collect();
                if top {
                    inner.join(", ")
                } else {
                    format!("[{}]", inner.join(", "))
                }
            }
        }
    }

    fn describe(&self) -> String {
        match &self.kind {
            ValueKind::Str(_) => "a string".to_string(),
            ValueKind::Num { text, suffix } => format!("number `{text}{suffix}`"),
            ValueKind::Ident(s) => format!("`{s}`"),
            ValueKind::List(_) => "a list".to_string(),
        }
    }
}

struct Parser {
    lexer: Lexer,
    peeked: Option<Token>,
}

/// What an agent collects while its body is parsed.
#[derive(Default)]
struct Seen {
    metadata: Option<Location>,
    security: Option<Location>,
    limits: Option<Location>,
    env: Option<Location>,
}

impl Parser {
    fn peek(&mut self) -> PResult<&Token> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.as_ref().expect("just filled"))
    }

    fn next(&mut self) -> PResult<Token> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next_token(),
        }
    }

    /// Consumes the next token if it is `tok`.
    fn eat(&mut self, tok: &Tok) -> PResult<bool> {
        if &self.peek()?.tok == tok {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// The next token, which must be `tok`; `what` says where it belongs in the error.
    fn expect(&mut self, tok: Tok, what: &str) -> PResult<Token> {
        let t = self.next()?;
        if t.tok == tok {
            Ok(t)
        } else {
            Err(SyntaxError::new(
                t.loc,
                format!("expected {tok} {what}, found {}", t.tok),
            ))
        }
    }

    /// An error for reaching `found` (the end of the file, or something else) where the `}`
    /// closing `what`, opened at `open`, was expected.
    fn unclosed(found: &Token, what: &str, open: Location, expected: &str) -> SyntaxError {
        match found.tok {
            Tok::Eof => SyntaxError::new(
                found.loc,
                format!("unexpected end of file: expected `}}` to close {what} opened at {open}"),
            ),
            ref other => SyntaxError::new(
                found.loc,
                format!("expected {expected} or `}}` to close {what}, found {other}"),
            ),
        }
    }

    fn agent(&mut self, loc: Location, defined: &HashMap<String, Location>) -> PResult<AgentDef> {
        let name_tok = self.next()?;
        let name = match name_tok.tok {
            Tok::Ident(n) => n,
            other => {
                return Err(SyntaxError::new(
                    name_tok.loc,
                    format!("expected an agent name after `agent`, found {other}"),
                ))
            }
        };
        if let Some(first) = defined.get(&name) {
            return Err(SyntaxError::new(
                name_tok.loc,
                format!(
                    "duplicate agent `{name}`: an agent of that name is already defined at {}",
                    first
                ),
            ));
        }
        let open = self.expect(Tok::LBrace, &format!("after `agent {name}`"))?;
        let what = format!("agent `{name}`");
        let mut agent = AgentDef {
            name,
            location: loc,
            metadata: Vec::new(),
            tier: None,
            sandbox: None,
            capabilities: Vec::new(),
            image: None,
            limits: AgentLimits::default(),
            env: Vec::new(),
            handlers: Vec::new(),
        };
        let mut seen = Seen::default();
        loop {
            let t = self.next()?;
            let block = match t.tok {
                Tok::RBrace => break,
                Tok::Ident(ref b) => b.clone(),
                _ => return Err(Self::unclosed(&t, &what, open.loc, "a block")),
            };
            match block.as_str() {
                "metadata" => {
                    once(&mut seen.metadata, "metadata", &agent.name, t.loc)?;
                    self.metadata(&mut agent)?;
                }
                "security" => {
                    once(&mut seen.security, "security", &agent.name, t.loc)?;
                    self.security(&mut agent)?;
                }
                "limits" => {
                    once(&mut seen.limits, "limits", &agent.name, t.loc)?;
                    agent.limits.location = Some(t.loc);
                    self.limits(&mut agent.limits)?;
                }
                "env" => {
                    once(&mut seen.env, "env", &agent.name, t.loc)?;
                    self.env(&mut agent)?;
                }
                "on" => {
                    let handler = self.handler(t.loc)?;
                    if let Some(first) = agent
                        .handlers
                        .iter()
                        .find(|h| h.kind.name() == handler.kind.name())
                    {
                        return Err(SyntaxError::new(
                            handler.location,
                            format!(
                                "duplicate handler `{}` in agent `{}` (first defined at {})",
                                handler.kind.name(),
                                agent.name,
                                first.location
                            ),
                        ));
                    }
                    agent.handlers.push(handler);
                }
                other if SECURITY_KEYS.contains(&other) || LIMIT_KEYS.contains(&other) => {
                    let block = if SECURITY_KEYS.contains(&other) {
                        "security"
                    } else {
                        "limits"
                    };
                    return Err(SyntaxError::new(
                        t.loc,
                        format!(
                            "`{other}` belongs inside a block: write `{block} {{ {other}: ... }}`"
                        ),
                    ));
                }
                other => {
                    let hint = match did_you_mean(other, BLOCKS) {
                        s if s.is_empty() => {
                            " (expected metadata, security, limits, env or on)".to_string()
                        }
                        s => s,
                    };
                    return Err(SyntaxError::new(
                        t.loc,
                        format!("unknown block `{other}`{hint}"),
                    ));
                }
            }
        }
        check_native(&agent)?;
        Ok(agent)
    }

    /// Parses `{ (key : value ,?)* }` after a block keyword, calling `entry` for each entry.
    /// Keys are names; with `string_keys`, strings too.
    fn entries(
        &mut self,
        block: &str,
        string_keys: bool,
        mut entry: impl FnMut(&mut Self, String, Location) -> PResult<()>,
    ) -> PResult<()> {
        let open = self.expect(Tok::LBrace, &format!("after `{block}`"))?;
        let what = format!("`{block}`");
        let expected = if string_keys { "a name" } else { "a key" };
        loop {
            let t = self.next()?;
            let key = match t.tok {
                Tok::RBrace => return Ok(()),
                Tok::Ident(k) => k,
                Tok::Str(k) if string_keys => k,
                _ => return Err(Self::unclosed(&t, &what, open.loc, expected)),
            };
            self.expect(Tok::Colon, &format!("after `{key}`"))?;
            entry(self, key, t.loc)?;
            self.eat(&Tok::Comma)?;
        }
    }

    fn value(&mut self, depth: usize) -> PResult<Value> {
        let t = self.next()?;
        let kind = match t.tok {
            Tok::Str(s) => ValueKind::Str(s),
            Tok::Num { text, suffix } => ValueKind::Num { text, suffix },
            Tok::Ident(s) => ValueKind::Ident(s),
            Tok::LBracket => {
                if depth >= MAX_LIST_DEPTH {
                    return Err(SyntaxError::new(t.loc, "lists nested too deeply"));
                }
                let mut items = Vec::new();
                loop {
                    if self.eat(&Tok::RBracket)? {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                    if self.eat(&Tok::Comma)? {
                        continue;
                    }
                    let end = self.next()?;
                    match end.tok {
                        Tok::RBracket => break,
                        Tok::Eof => {
                            return Err(SyntaxError::new(
                                end.loc,
                                format!(
                                    "unexpected end of file: expected `]` to close the list opened at {}",
                                    t.loc
                                ),
                            ))
                        }
                        other => {
                            return Err(SyntaxError::new(
                                end.loc,
                                format!("expected `,` or `]` in list, found {other}"),
                            ))
                        }
                    }
                }
                ValueKind::List(items)
            }
            other => {
                return Err(SyntaxError::new(
                    t.loc,
                    format!("expected a value (a string, number, name or list), found {other}"),
                ))
            }
        };
        Ok(Value { kind, loc: t.loc })
    }

    fn metadata(&mut self, agent: &mut AgentDef) -> PResult<()> {
        let mut locs: Vec<Location> = Vec::new();
        self.entries("metadata", false, |p, key, key_loc| {
            if let Some(i) = agent.metadata.iter().position(|(k, _)| *k == key) {
                return Err(duplicate_key(&key, "metadata", key_loc, locs[i]));
            }
            let v = p.value(0)?;
            agent.metadata.push((key, v.render(true)));
            locs.push(key_loc);
            Ok(())
        })
    }

    fn security(&mut self, agent: &mut AgentDef) -> PResult<()> {
        let mut seen: Vec<(String, Location)> = Vec::new();
        self.entries("security", false, |p, key, key_loc| {
            if !SECURITY_KEYS.contains(&key.as_str()) {
                return Err(unknown_key(&key, "security", key_loc, SECURITY_KEYS));
            }
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(duplicate_key(&key, "security", key_loc, *first));
            }
            seen.push((key.clone(), key_loc));
            let v = p.value(0)?;
            match key.as_str() {
                "tier" => {
                    let name = name_or_string(&v, "a tier name such as None or Tier1")?;
                    let tier = name.parse::<SecurityTier>().map_err(|e| {
                        let hint = did_you_mean(&name, TIER_NAMES);
                        let msg = if hint.is_empty() {
                            e.to_string()
                        } else {
                            format!(
                                "unknown security tier `{name}`{hint} (tiers: None/native, Tier1/docker, Tier2/gvisor, Tier3/microvm)"
                            )
                        };
                        SyntaxError::new(v.loc, msg)
                    })?;
                    agent.tier = Some((tier, v.loc));
                }
                "sandbox" => {
                    let name = name_or_string(&v, "a sandbox name such as Permissive")?;
                    if name.trim().is_empty() {
                        return Err(SyntaxError::new(v.loc, "empty sandbox name"));
                    }
                    agent.sandbox = Some(name);
                }
                "capabilities" => {
                    let ValueKind::List(items) = &v.kind else {
                        return Err(SyntaxError::new(
                            v.loc,
                            format!(
                                "expected a list of capabilities such as [\"network\"], found {}",
                                v.describe()
                            ),
                        ));
                    };
                    for item in items {
                        agent
                            .capabilities
                            .push(name_or_string(item, "a capability name")?);
                    }
                }
                _ => {
                    let ValueKind::Str(image) = &v.kind else {
                        return Err(SyntaxError::new(
                            v.loc,
                            format!(
                                "expected an image name in quotes such as \"busybox:latest\", found {}",
                                v.describe()
                            ),
                        ));
                    };
                    if image.trim().is_empty() {
                        return Err(SyntaxError::new(v.loc, "empty image name"));
                    }
                    agent.image = Some(image.clone());
                }
            }
            Ok(())
        })
    }

    fn limits(&mut self, limits: &mut AgentLimits) -> PResult<()> {
        let mut seen: Vec<(String, Location)> = Vec::new();
        self.entries("limits", false, |p, key, key_loc| {
            if !LIMIT_KEYS.contains(&key.as_str()) {
                return Err(unknown_key(&key, "limits", key_loc, LIMIT_KEYS));
            }
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                return Err(duplicate_key(&key, "limits", key_loc, *first));
            }
            seen.push((key.clone(), key_loc));
            let v = p.value(0)?;
            match key.as_str() {
                "max_memory_mb" => limits.max_memory_mb = Some(positive_int(&key, &v, "MiB")?),
                "max_cpu_seconds" => {
                    limits.max_cpu_seconds = Some(positive_int(&key, &v, "seconds")?)
                }
                "max_processes" => limits.max_processes = Some(positive_int(&key, &v, "")?),
                "max_file_size_mb" => {
                    limits.max_file_size_mb = Some(positive_int(&key, &v, "MiB")?)
                }
                "max_cpu_cores" => limits.max_cpu_cores = Some(positive_float(&key, &v)?),
                _ => limits.timeout = Some(duration(&key, &v)?),
            }
            in_range(&key, &v, limits)
        })
    }

    fn env(&mut self, agent: &mut AgentDef) -> PResult<()> {
        self.entries("env", true, |p, key, key_loc| {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return Err(SyntaxError::new(
                    key_loc,
                    format!("invalid environment variable name `{}`", key.escape_debug()),
                ));
            }
            if let Some(why) = loader_variable(&key) {
                return Err(SyntaxError::new(
                    key_loc,
                    format!(
                        "an agent file cannot set `{key}`: it {why}; the operator can, in the config (native_execution.env_passthrough)"
                    ),
                ));
            }
            if let Some((_, _, first)) = agent.env.iter().find(|(k, _, _)| *k == key) {
                return Err(duplicate_key(&key, "env", key_loc, *first));
            }
            let v = p.value(0)?;
            let value = match &v.kind {
                ValueKind::Str(s) => s.clone(),
                ValueKind::Num { .. } => v.render(true),
                _ => {
                    return Err(SyntaxError::new(
                        v.loc,
                        format!(
                            "expected a string value for `{key}`, found {}",
                            v.describe()
                        ),
                    ))
                }
            };
            if value.contains('\0') {
                return Err(SyntaxError::new(
                    v.loc,
                    "an environment variable cannot contain a NUL character",
                ));
            }
            agent.env.push((key, value, key_loc));
            Ok(())
        })
    }

    fn handler(&mut self, loc: Location) -> PResult<Handler> {
        let t = self.next()?;
        let kind = match t.tok {
            Tok::Ident(ref w) if w == "start" => HandlerKind::Start,
            Tok::Ident(ref w) if w == "trigger" => {
                let name_tok = self.next()?;
                let name = match name_tok.tok {
                    Tok::Str(s) | Tok::Ident(s) => s,
                    other => {
                        return Err(SyntaxError::new(
                            name_tok.loc,
                            format!("expected a trigger name after `on trigger`, found {other}"),
                        ))
                    }
                };
                if name.trim().is_empty() {
                    return Err(SyntaxError::new(name_tok.loc, "empty trigger name"));
                }
                HandlerKind::Trigger(name)
            }
            Tok::Ident(ref w) => {
                let hint = match did_you_mean(w, &["start", "trigger"]) {
                    s if s.is_empty() => " (expected `on start` or `on trigger \"name\"`)".into(),
                    s => s,
                };
                return Err(SyntaxError::new(
                    t.loc,
                    format!("unknown event `{w}`{hint}"),
                ));
            }
            other => {
                return Err(SyntaxError::new(
                    t.loc,
                    format!("expected `start` or `trigger` after `on`, found {other}"),
                ))
            }
        };
        let open = self.expect(Tok::LBrace, &format!("after `on {}`", describe_kind(&kind)))?;
        let what = format!("`on {}`", describe_kind(&kind));
        let mut statements = Vec::new();
        loop {
            let t = self.next()?;
            let word = match t.tok {
                Tok::RBrace => break,
                Tok::Semi => continue,
                Tok::Ident(ref w) => w.clone(),
                _ => return Err(Self::unclosed(&t, &what, open.loc, "a statement")),
            };
            let kind = match word.as_str() {
                "execute_native" => StatementKind::ExecuteNative,
                "execute" => StatementKind::Execute,
                other => {
                    let hint = match did_you_mean(other, STATEMENTS) {
                        s if s.is_empty() => {
                            " (expected execute_native(\"...\") or execute(\"...\"))".into()
                        }
                        s => s,
                    };
                    return Err(SyntaxError::new(
                        t.loc,
                        format!("unknown statement `{other}`{hint}"),
                    ));
                }
            };
            statements.push(self.statement(kind, &word, t.loc)?);
        }
        Ok(Handler {
            kind,
            location: loc,
            statements,
        })
    }

    fn statement(&mut self, kind: StatementKind, word: &str, loc: Location) -> PResult<Statement> {
        self.expect(Tok::LParen, &format!("after `{word}`"))?;
        let t = self.next()?;
        let command = match t.tok {
            Tok::Str(s) => s,
            other => {
                return Err(SyntaxError::new(
                    t.loc,
                    format!("expected a command string in `{word}(...)`, found {other}"),
                ))
            }
        };
        let argv = shell_words::split(&command).map_err(|_| {
            SyntaxError::new(
                t.loc,
                "cannot split the command into words: a quote in it is not closed",
            )
        })?;
        if argv.is_empty() {
            return Err(SyntaxError::new(t.loc, "empty command"));
        }
        if argv[0].is_empty() {
            return Err(SyntaxError::new(t.loc, "empty program name in command"));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(SyntaxError::new(
                t.loc,
                "a command cannot contain a NUL character",
            ));
        }
        self.expect(Tok::RParen, &format!("to close `{word}(`"))?;
        Ok(Statement {
            kind,
            command,
            argv,
            location: loc,
        })
    }
}

fn describe_kind(kind: &HandlerKind) -> String {
    match kind {
        HandlerKind::Start => "start".to_string(),
        HandlerKind::Trigger(name) => format!("trigger \"{}\"", name.escape_debug()),
    }
}

/// Records the first `block` of an agent; a second one is an error.
fn once(slot: &mut Option<Location>, block: &str, agent: &str, loc: Location) -> PResult<()> {
    if let Some(first) = slot {
        return Err(SyntaxError::new(
            loc,
            format!("duplicate `{block}` block in agent `{agent}` (first at {first})"),
        ));
    }
    *slot = Some(loc);
    Ok(())
}

/// `execute_native` is only for agents whose tier is None (or not set).
fn check_native(agent: &AgentDef) -> PResult<()> {
    let Some((tier, tier_loc)) = agent.tier else {
        return Ok(());
    };
    if tier.is_native() {
        return Ok(());
    }
    let stmt = agent
        .handlers
        .iter()
        .flat_map(|h| &h.statements)
        .find(|s| s.kind == StatementKind::ExecuteNative);
    match stmt {
        Some(s) => Err(SyntaxError::new(
            s.location,
            format!(
                "`execute_native` in agent `{}`, whose tier is {tier} (set at {tier_loc}); use `execute` to run on {tier}, or set `tier: None`",
                agent.name
            ),
        )),
        None => Ok(()),
    }
}

fn unknown_key(key: &str, block: &str, loc: Location, known: &[&str]) -> SyntaxError {
    let hint = match did_you_mean(key, known) {
        s if s.is_empty() => format!(" (expected one of: {})", known.join(", ")),
        s => s,
    };
    SyntaxError::new(loc, format!("unknown key `{key}` in `{block}`{hint}"))
}

fn duplicate_key(key: &str, block: &str, loc: Location, first: Location) -> SyntaxError {
    SyntaxError::new(
        loc,
        format!("duplicate key `{key}` in `{block}` (first at {first})"),
    )
}

/// `; did you mean `x`?` for the candidate nearest to `word`, or "" when none is near.
fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    let lower = word.to_lowercase();
    let best = candidates
        .iter()
        .map(|c| {
            let d = strsim::damerau_levenshtein(&lower, &c.to_lowercase());
            (d, *c)
        })
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, c)) => {
            let len = lower.chars().count().max(c.chars().count());
            let near = d <= 1.max(len / 3) && d < len;
            let prefix = c.len() >= 4 && lower.starts_with(&c.to_lowercase())
                || lower.len() >= 3 && c.to_lowercase().starts_with(&lower);
            if near || prefix {
                format!("; did you mean `{c}`?")
            } else {
                String::new()
            }
        }
        None => String::new(),
    }
}

fn name_or_string(v: &Value, expected: &str) -> PResult<String> {
    match &v.kind {
        ValueKind::Ident(s) | ValueKind::Str(s) => Ok(s.clone()),
        _ => Err(SyntaxError::new(
            v.loc,
            format!("expected {expected}, found {}", v.describe()),
        )),
    }
}

/// The number in `v`, which must have no unit.
fn plain_number<'v>(key: &str, v: &'v Value, unit: &str) -> PResult<&'v str> {
    let ValueKind::Num { text, suffix } = &v.kind else {
        return Err(SyntaxError::new(
            v.loc,
            format!("expected a number for `{key}`, found {}", v.describe()),
        ));
    };
    if !suffix.is_empty() {
        let what = if unit.is_empty() {
            String::new()
        } else {
            format!(" (the value is in {unit})")
        };
        return Err(SyntaxError::new(
            v.loc,
            format!("unexpected unit `{suffix}` after `{key}: {text}`; write a plain number{what}"),
        ));
    }
    if text.starts_with('-') {
        return Err(not_positive(key, v.loc));
    }
    Ok(text)
}

/// Variables that change how a program is loaded or where names are found. An agent file
/// cannot set them (the operator can, in the config). Names compare without case, as
/// Windows compares them. README, "Agent files", lists them.
pub(crate) const LOADER_VARIABLES: &[&str] = &[
    "PATH",
    "PATHEXT",
    "BASH_ENV",
    "ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "NODE_PATH",
    "NODE_OPTIONS",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYLIB",
    "RUBYOPT",
    "JAVA_TOOL_OPTIONS",
    "GCONV_PATH",
];

/// Prefixes of the same: the dynamic loaders of Linux (`LD_PRELOAD`, `LD_LIBRARY_PATH`, ...)
/// and macOS (`DYLD_INSERT_LIBRARIES`, ...).
pub(crate) const LOADER_PREFIXES: &[&str] = &["LD_", "DYLD_"];

/// Why an agent file may not set `name`, if it may not.
fn loader_variable(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if LOADER_PREFIXES.iter().any(|p| upper.starts_with(p)) {
        Some("changes how the program is loaded")
    } else if LOADER_VARIABLES.contains(&upper.as_str()) {
        Some("changes where the program and its libraries are found")
    } else {
        None
    }
}

/// The value just set for `key` must lie in the range of its configuration key (the agent
/// file's `timeout` is `max_execution_time_seconds`, of which only the top applies: a timeout
/// may be shorter than a second).
fn in_range(key: &str, v: &Value, limits: &AgentLimits) -> PResult<()> {
    let (name, value) = match key {
        "max_memory_mb" => (key, limits.max_memory_mb.map(|n| n as f64)),
        "max_cpu_seconds" => (key, limits.max_cpu_seconds.map(|n| n as f64)),
        "max_processes" => (key, limits.max_processes.map(|n| n as f64)),
        "max_file_size_mb" => (key, limits.max_file_size_mb.map(|n| n as f64)),
        "max_cpu_cores" => (key, limits.max_cpu_cores),
        _ => (
            "max_execution_time_seconds",
            limits.timeout.map(|d| d.as_secs_f64()),
        ),
    };
    let Some(value) = value else { return Ok(()) };
    let Some((lo, hi, text)) = crate::config::native_range(name) else {
        return Ok(());
    };
    let lo = if key == "timeout" { 0.0 } else { lo };
    if value >= lo && value <= hi {
        return Ok(());
    }
    Err(SyntaxError::new(
        v.loc,
        format!("`{key}: {}` is out of range: {text}", v.render(true)),
    ))
}

fn not_positive(key: &str, loc: Location) -> SyntaxError {
    SyntaxError::new(loc, format!("`{key}` must be positive (greater than 0)"))
}

fn positive_int(key: &str, v: &Value, unit: &str) -> PResult<u64> {
    let text = plain_number(key, v, unit)?;
    if text.contains('.') {
        return Err(SyntaxError::new(
            v.loc,
            format!("expected a whole number for `{key}`, found `{text}`"),
        ));
    }
    let n: u64 = text
        .parse()
        .map_err(|_| SyntaxError::new(v.loc, format!("`{key}`: number `{text}` is too large")))?;
    if n == 0 {
        return Err(not_positive(key, v.loc));
    }
    Ok(n)
}

fn positive_float(key: &str, v: &Value) -> PResult<f64> {
    let text = plain_number(key, v, "")?;
    let n: f64 = text
        .parse()
        .map_err(|_| SyntaxError::new(v.loc, format!("`{key}`: `{text}` is not a number")))?;
    if !n.is_finite() {
        return Err(SyntaxError::new(
            v.loc,
            format!("`{key}`: number `{text}` is too large"),
        ));
    }
    if n <= 0.0 {
        return Err(not_positive(key, v.loc));
    }
    Ok(n)
}

/// `30s`, `500ms`, `5m`, `1h`, or a bare number of seconds; fractions allowed (`1.5s`).
fn duration(key: &str, v: &Value) -> PResult<Duration> {
    let ValueKind::Num { text, suffix } = &v.kind else {
        return Err(SyntaxError::new(
            v.loc,
            format!(
                "expected a duration such as 30s, 500ms, 5m or 1h for `{key}`, found {}",
                v.describe()
            ),
        ));
    };
    duration_of(text, suffix).map_err(|e| {
        let msg = match e {
            DurationError::UnknownUnit => format!(
                "unknown unit `{suffix}` in `{key}: {text}{suffix}` (expected ms, s, m or h)"
            ),
            DurationError::NotPositive => return not_positive(key, v.loc),
            DurationError::TooLarge => format!("`{key}`: duration `{text}{suffix}` is too large"),
            DurationError::NotANumber => format!("`{key}`: `{text}` is not a number"),
        };
        SyntaxError::new(v.loc, msg)
    })
}

/// Why a duration is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    UnknownUnit,
    NotPositive,
    TooLarge,
    NotANumber,
}

/// The duration `text` (a number, fractions allowed) in `unit` (`ms`, `s` or none, `m`, `h`):
/// the one reading of durations, for agent files and the `--timeout` flag.
pub(crate) fn duration_of(text: &str, unit: &str) -> Result<Duration, DurationError> {
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError::UnknownUnit),
    };
    if text.starts_with('-') {
        return Err(DurationError::NotPositive);
    }
    let d = if text.contains('.') {
        let n: f64 = text.parse().map_err(|_| DurationError::NotANumber)?;
        Duration::try_from_secs_f64(n * millis_per_unit as f64 / 1000.0)
            .map_err(|_| DurationError::TooLarge)?
    } else if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DurationError::NotANumber);
    } else {
        let n: u64 = text.parse().map_err(|_| DurationError::TooLarge)?;
        Duration::from_millis(
            n.checked_mul(millis_per_unit)
                .ok_or(DurationError::TooLarge)?,
        )
    };
    if d.is_zero() {
        return Err(DurationError::NotPositive);
    }
    Ok(d)
}
