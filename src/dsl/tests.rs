use std::path::Path;
use std::time::Duration;

use super::*;

const SEED: &str = include_str!("../../tests/fixtures/seed_agent.dsl");

fn parse(src: &str) -> AgentFile {
    match parse_str(src, Path::new("agent.dsl")) {
        Ok(f) => f,
        Err(d) => panic!("unexpected error:\n{d}"),
    }
}

fn one(src: &str) -> AgentDef {
    let mut f = parse(src);
    assert_eq!(f.agents.len(), 1, "{f:?}");
    f.agents.remove(0)
}

fn err(src: &str) -> Diagnostic {
    match parse_str(src, Path::new("agent.dsl")) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(d) => d,
    }
}

/// The message with its help line, as one string (`message; did you mean ...`).
fn full(d: &Diagnostic) -> String {
    match &d.help {
        Some(h) => format!("{}; {h}", d.message),
        None => d.message.clone(),
    }
}

/// Columns a terminal gives `text` in the rendering: a tab is 4, CJK characters are 2.
fn width(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '\t' => 4,
            c if c >= '\u{2E80}' => 2,
            _ => 1,
        })
        .sum()
}

/// The error is at `line:col`, its message (with its help) contains `needle`, and the
/// rendering shows `file:line:col`, the line and a caret under the column.
fn assert_err(src: &str, line: usize, col: usize, needle: &str) -> Diagnostic {
    let d = err(src);
    assert_eq!(
        (d.location.line, d.location.column),
        (line, col),
        "wrong location for:\n{d}"
    );
    assert!(full(&d).contains(needle), "message lacks {needle:?}:\n{d}");
    let text = src
        .split('\n')
        .nth(line - 1)
        .unwrap()
        .trim_end_matches('\r');
    assert_eq!(d.line_text, text);
    let rendered = d.to_string();
    let lines: Vec<&str> = rendered.lines().collect();
    assert_eq!(lines[0], format!("error: {}", d.message), "{rendered}");
    assert!(
        lines[1].ends_with(&format!("--> agent.dsl:{line}:{col}")),
        "{rendered}"
    );
    let gutter = format!("{line} | ");
    let at = lines
        .iter()
        .position(|l| l.starts_with(&gutter))
        .unwrap_or_else(|| panic!("no source line in\n{rendered}"));
    assert_eq!(
        &lines[at][gutter.len()..],
        text.replace('\t', "    ").trim_end(),
        "{rendered}"
    );
    let caret = &lines[at + 1][gutter.len()..];
    let before: String = text.chars().take(col - 1).collect();
    assert_eq!(caret.find('^'), Some(width(&before)), "{rendered}");
    assert!(caret.trim_start().chars().all(|c| c == '^'), "{rendered}");
    match &d.help {
        Some(h) => assert!(rendered.ends_with(&format!("= help: {h}")), "{rendered}"),
        None => assert_eq!(lines.len(), at + 2, "{rendered}"),
    }
    d
}

fn wrap(body: &str) -> String {
    format!("agent A {{\n{body}\n}}\n")
}

#[test]
fn seed_example_every_field() {
    let f = parse_str(SEED, Path::new("tests/fixtures/seed_agent.dsl")).unwrap();
    assert_eq!(f.path, Path::new("tests/fixtures/seed_agent.dsl"));
    assert_eq!(f.agents.len(), 1);
    let a = &f.agents[0];
    assert_eq!(a.name, "NativeWorker");
    assert_eq!(a.location, Location::new(1, 1));
    assert_eq!(
        a.metadata,
        vec![
            ("name".to_string(), "Local Development Agent".to_string()),
            ("version".to_string(), "1.0.0".to_string()),
        ]
    );
    assert_eq!(a.tier, Some((SecurityTier::None, Location::new(8, 11))));
    assert_eq!(a.sandbox.as_deref(), Some("Permissive"));
    assert_eq!(a.capabilities, vec!["local_filesystem", "network"]);
    assert_eq!(a.image, None);
    assert_eq!(a.limits, AgentLimits::default());
    assert!(a.env.is_empty());
    assert_eq!(a.handlers.len(), 1);
    let h = &a.handlers[0];
    assert_eq!(h.kind, HandlerKind::Trigger("local_processing".into()));
    assert_eq!(h.kind.name(), "local_processing");
    assert_eq!(h.location, Location::new(13, 3));
    assert_eq!(
        h.statements,
        vec![Statement {
            kind: StatementKind::ExecuteNative,
            command: "python3 process.py".into(),
            argv: vec!["python3".into(), "process.py".into()],
            location: Location::new(15, 5),
        }]
    );
}

#[test]
fn parse_file_reads_the_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed_agent.dsl");
    let f = parse_file(&path).unwrap();
    assert_eq!(f.path, path);
    assert_eq!(f.agents[0].name, "NativeWorker");
}

#[test]
fn spec_compact_form() {
    let a = one(r#"agent NativeWorker {
  metadata { name: "Local Development Agent" version: "1.0.0" }
  security { tier: None sandbox: Permissive capabilities: ["local_filesystem", "network"] }
  on trigger "local_processing" {
    // Executes directly on host
    execute_native("python3 process.py")
  }
}"#);
    let seed = one(SEED);
    assert_eq!(a.metadata, seed.metadata);
    assert_eq!(a.tier.map(|t| t.0), Some(SecurityTier::None));
    assert_eq!(a.sandbox, seed.sandbox);
    assert_eq!(a.capabilities, seed.capabilities);
    assert_eq!(a.handlers[0].statements[0].argv, ["python3", "process.py"]);
}

#[test]
fn several_agents() {
    let f = parse(
        r#"
agent First { on start { execute("echo one") } }
agent Second {
  security { tier: docker image: "busybox:latest" }
  on start { execute("echo two") }
}
agent Third {}
"#,
    );
    let names: Vec<&str> = f.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["First", "Second", "Third"]);
    assert_eq!(f.agents[1].location, Location::new(3, 1));
    assert_eq!(f.agents[1].tier.unwrap().0, SecurityTier::Tier1);
    assert_eq!(f.agents[1].image.as_deref(), Some("busybox:latest"));
    assert!(f.agents[2].handlers.is_empty());
}

#[test]
fn empty_file_has_no_agents() {
    assert!(parse("").agents.is_empty());
    assert!(parse("  // nothing\n# here\n/* at all */\n")
        .agents
        .is_empty());
}

#[test]
fn comments_of_all_three_kinds() {
    let a = one("# a hash comment at the top\n\
         agent A { // after the brace\n\
         /* a block\n   comment { over } lines */ metadata { # hash\n\
         note: \"// not a comment\" /* inline */ tag: \"# nor this\"\n\
         }\n\
         on start { execute(\"true\") /* } */ } // the end\n\
         } # no newline at the end");
    assert_eq!(
        a.metadata,
        vec![
            ("note".to_string(), "// not a comment".to_string()),
            ("tag".to_string(), "# nor this".to_string()),
        ]
    );
    assert_eq!(a.handlers[0].statements.len(), 1);
}

#[test]
fn commas_are_optional() {
    let with = one(
        r#"agent A { metadata { name: "x", version: "1", } security { tier: None, sandbox: Permissive, capabilities: ["a", "b",], } }"#,
    );
    let without = one(
        r#"agent A { metadata { name: "x" version: "1" } security { tier: None sandbox: Permissive capabilities: ["a", "b"] } }"#,
    );
    assert_eq!(with.metadata, without.metadata);
    assert_eq!(with.metadata[1], ("version".into(), "1".into()));
    assert_eq!(with.capabilities, ["a", "b"]);
    assert_eq!(with.capabilities, without.capabilities);
    assert_eq!(with.tier.map(|t| t.0), without.tier.map(|t| t.0));
    assert_eq!(with.sandbox, without.sandbox);
}

#[test]
fn limits_every_field_and_duration_form() {
    let a = one(&wrap(
        "  limits { max_memory_mb: 512 max_cpu_cores: 1.5 max_cpu_seconds: 60 timeout: 30s max_processes: 64 max_file_size_mb: 10 }",
    ));
    assert_eq!(
        a.limits,
        AgentLimits {
            max_memory_mb: Some(512),
            max_cpu_cores: Some(1.5),
            max_cpu_seconds: Some(60),
            timeout: Some(Duration::from_secs(30)),
            max_processes: Some(64),
            max_file_size_mb: Some(10),
            location: Some(Location::new(2, 3)),
        }
    );
    for (text, want) in [
        ("30s", Duration::from_secs(30)),
        ("500ms", Duration::from_millis(500)),
        ("5m", Duration::from_secs(300)),
        ("1h", Duration::from_secs(3600)),
        ("45", Duration::from_secs(45)),
        ("1.5s", Duration::from_millis(1500)),
        ("0.5", Duration::from_millis(500)),
        ("2.5m", Duration::from_secs(150)),
    ] {
        let a = one(&wrap(&format!("limits {{ timeout: {text} }}")));
        assert_eq!(a.limits.timeout, Some(want), "{text}");
    }
    assert_eq!(
        one(&wrap("limits { max_cpu_cores: 2 }"))
            .limits
            .max_cpu_cores,
        Some(2.0)
    );
}

#[test]
fn env_block() {
    let a = one(&wrap(
        "  env {\n    LOG_LEVEL: \"debug\"\n    \"WITH SPACE\": \"a b\", PORT: 8080\n  }",
    ));
    assert_eq!(
        a.env,
        vec![
            ("LOG_LEVEL".into(), "debug".into(), Location::new(3, 5)),
            ("WITH SPACE".into(), "a b".into(), Location::new(4, 5)),
            ("PORT".into(), "8080".into(), Location::new(4, 26)),
        ]
    );
}

#[test]
fn on_start_and_statements_in_order() {
    let a = one(r#"agent A {
  on start {
    execute("echo one")
    execute_native("echo two");
    execute("echo three")
  }
  on trigger second { execute("true") }
}"#);
    assert_eq!(a.handlers.len(), 2);
    let start = &a.handlers[0];
    assert_eq!(start.kind, HandlerKind::Start);
    assert_eq!(start.kind.name(), "start");
    assert_eq!(start.location, Location::new(2, 3));
    let got: Vec<(StatementKind, &str, Location)> = start
        .statements
        .iter()
        .map(|s| (s.kind, s.command.as_str(), s.location))
        .collect();
    assert_eq!(
        got,
        [
            (StatementKind::Execute, "echo one", Location::new(3, 5)),
            (
                StatementKind::ExecuteNative,
                "echo two",
                Location::new(4, 5)
            ),
            (StatementKind::Execute, "echo three", Location::new(5, 5)),
        ]
    );
    assert_eq!(a.handlers[1].kind.name(), "second");
}

#[test]
fn argv_follows_shell_word_rules() {
    let a = one(&wrap(
        r#"on start {
  execute_native("bash -c 'echo hi; exit 3'")
  execute_native("python3  \"my script.py\"   --flag=a\\ b")
  execute("printf '%s\n' x")
}"#,
    ));
    let argv: Vec<&Vec<String>> = a.handlers[0].statements.iter().map(|s| &s.argv).collect();
    assert_eq!(argv[0], &["bash", "-c", "echo hi; exit 3"]);
    assert_eq!(argv[1], &["python3", "my script.py", "--flag=a b"]);
    // `\n` in the DSL string is a newline, which the shell rules keep inside quotes.
    assert_eq!(argv[2], &["printf", "%s\n", "x"]);
    assert_eq!(
        a.handlers[0].statements[0].command,
        "bash -c 'echo hi; exit 3'"
    );
}

#[test]
fn string_escapes() {
    let a = one(&wrap(r#"metadata { s: "q\"b\\n\nt\t" }"#));
    assert_eq!(a.metadata[0].1, "q\"b\\n\nt\t");
}

#[test]
fn tier_and_sandbox_names_are_case_insensitive() {
    for (text, tier) in [
        ("None", SecurityTier::None),
        ("NONE", SecurityTier::None),
        ("native", SecurityTier::None),
        ("\"none\"", SecurityTier::None),
        ("tier1", SecurityTier::Tier1),
        ("Docker", SecurityTier::Tier1),
        ("TIER2", SecurityTier::Tier2),
        ("gVisor", SecurityTier::Tier2),
        ("tier3", SecurityTier::Tier3),
        ("Firecracker", SecurityTier::Tier3),
    ] {
        let a = one(&wrap(&format!("security {{ tier: {text} }}")));
        assert_eq!(a.tier.unwrap().0, tier, "{text}");
    }
    for s in ["Permissive", "strict", "STANDARD"] {
        let a = one(&wrap(&format!("security {{ sandbox: {s} }}")));
        assert_eq!(a.sandbox.as_deref(), Some(s));
    }
}

#[test]
fn metadata_value_kinds() {
    let a = one(&wrap(
        r#"metadata { name: "n" version: 1.0.0 retries: 3 owner: platform_team tags: ["a", b, 3, ["x", "y"]] empty: [] }"#,
    ));
    let m: Vec<(&str, &str)> = a
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            ("name", "n"),
            ("version", "1.0.0"),
            ("retries", "3"),
            ("owner", "platform_team"),
            ("tags", "a, b, 3, [x, y]"),
            ("empty", ""),
        ]
    );
}

#[test]
fn crlf_line_endings() {
    let src = SEED.replace('\n', "\r\n");
    assert_eq!(one(&src), one(SEED));
    let d = err("agent A {\r\n  securty {}\r\n}\r\n");
    assert_eq!(d.line_text, "  securty {}");
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn error_unterminated_string() {
    assert_err(
        "agent A {\n  metadata {\n    name: \"Local Development Agent\n  }\n}\n",
        3,
        11,
        "unterminated string",
    );
    assert_err(
        "agent A { metadata { name: \"abc",
        1,
        28,
        "unterminated string",
    );
    assert_err(
        "agent A { metadata { name: \"abc\\",
        1,
        28,
        "unterminated string",
    );
}

#[test]
fn error_unknown_block_with_suggestion() {
    let src = "agent A {\n  metadata { name: \"x\" }\n    securty {\n      tier: None\n    }\n}\n";
    let d = assert_err(
        src,
        3,
        5,
        "unknown block `securty`; did you mean `security`?",
    );
    assert_eq!(
        d.to_string(),
        "error: unknown block `securty`\n --> agent.dsl:3:5\n  |\n3 |     securty {\n  \
         |     ^^^^^^^\n  |\n  = help: did you mean `security`?"
    );
    let d = assert_err(
        "agent A {\n  widgets { }\n}",
        2,
        3,
        "unknown block `widgets`",
    );
    assert!(d
        .message
        .contains("expected metadata, security, limits, env or on"));
    assert!(!d.message.contains("did you mean"));
}

#[test]
fn error_unknown_key_with_suggestion() {
    assert_err(
        &wrap("  limits { max_memroy_mb: 5 }"),
        2,
        12,
        "unknown key `max_memroy_mb` in `limits`; did you mean `max_memory_mb`?",
    );
    assert_err(
        &wrap("  security { tiers: None }"),
        2,
        14,
        "did you mean `tier`?",
    );
    let d = assert_err(
        &wrap("  security { color: red }"),
        2,
        14,
        "unknown key `color`",
    );
    assert!(
        d.message.contains("tier, sandbox, capabilities, image"),
        "{d}"
    );
    assert_err(
        &wrap("  on start { execute_nativ(\"ls\") }"),
        2,
        14,
        "unknown statement `execute_nativ`; did you mean `execute_native`?",
    );
    assert_err(
        "agnet A {}",
        1,
        1,
        "expected `agent`, found `agnet`; did you mean `agent`?",
    );
}

#[test]
fn error_bad_tier() {
    assert_err(
        &wrap("  security {\n    tier: Tier4\n  }"),
        3,
        11,
        "unknown security tier `Tier4`; did you mean `Tier1`?",
    );
    let d = assert_err(
        &wrap("  security { tier: Bogus }"),
        2,
        20,
        "unknown security tier `Bogus`",
    );
    assert!(d.message.contains("expected one of"), "{d}");
    assert_err(
        &wrap("  security { tier: 3 }"),
        2,
        20,
        "expected a tier name",
    );
}

#[test]
fn error_execute_native_on_a_container_tier() {
    let src = "agent Boxed {\n  security { tier: Tier1 }\n  on start {\n    execute(\"ls\")\n    execute_native(\"ls\")\n  }\n}\n";
    let d = assert_err(
        src,
        5,
        5,
        "`execute_native` in agent `Boxed`, whose tier is Tier1",
    );
    assert!(d.message.contains("set at 2:20"), "{d}");
    // The security block may come after the handler.
    let src =
        "agent Boxed {\n  on start { execute_native(\"ls\") }\n  security { tier: gvisor }\n}\n";
    assert_err(src, 2, 14, "whose tier is Tier2");
    // Explicit None and no tier at all are fine.
    one("agent A { security { tier: native } on start { execute_native(\"ls\") } }");
    one("agent A { on start { execute_native(\"ls\") } }");
}

#[test]
fn error_zero_and_bad_limits() {
    assert_err(
        &wrap("  limits {\n    max_memory_mb: 0\n  }"),
        3,
        20,
        "`max_memory_mb` must be positive",
    );
    assert_err(
        &wrap("limits { timeout: 0s }"),
        2,
        19,
        "`timeout` must be positive",
    );
    assert_err(&wrap("limits { timeout: 0ms }"), 2, 19, "must be positive");
    assert_err(
        &wrap("limits { max_cpu_cores: 0.0 }"),
        2,
        25,
        "must be positive",
    );
    assert_err(
        &wrap("limits { max_processes: -5 }"),
        2,
        25,
        "must be positive",
    );
    assert_err(
        &wrap("limits { max_memory_mb: 1.5 }"),
        2,
        25,
        "expected a whole number",
    );
    assert_err(
        &wrap("limits { max_memory_mb: 512mb }"),
        2,
        25,
        "unexpected unit `mb`",
    );
    assert_err(&wrap("limits { timeout: 30x }"), 2, 19, "unknown unit `x`");
    assert_err(
        &wrap("limits { timeout: \"30s\" }"),
        2,
        19,
        "expected a duration",
    );
    assert_err(
        &wrap("limits { max_memory_mb: 99999999999999999999999 }"),
        2,
        25,
        "too large",
    );
    assert_err(
        &wrap("limits { timeout: 99999999999999999h }"),
        2,
        19,
        "too large",
    );
    assert_err(
        &wrap("limits { timeout: 1s timeout: 2s }"),
        2,
        22,
        "duplicate key `timeout` in `limits` (first at 2:10)",
    );
}

#[test]
fn error_duplicates() {
    assert_err(
        "agent Twin {}\n\nagent Twin {}\n",
        3,
        7,
        "duplicate agent `Twin`: an agent of that name is already defined at 1:1",
    );
    assert_err(
        "agent A {\n  on trigger \"go\" { execute(\"a\") }\n  on trigger go { execute(\"b\") }\n}",
        3,
        3,
        "duplicate handler `go` in agent `A` (first defined at 2:3)",
    );
    assert_err(
        "agent A {\n  on start {}\n  on start {}\n}",
        3,
        3,
        "duplicate handler `start`",
    );
    assert_err(
        "agent A {\n  security {}\n  security {}\n}",
        3,
        3,
        "duplicate `security` block",
    );
    assert_err(
        &wrap("env { K: \"1\"\n K: \"2\" }"),
        3,
        2,
        "duplicate key `K` in `env`",
    );
}

#[test]
fn error_missing_brace_at_eof() {
    let truncated = SEED.trim_end().trim_end_matches('}');
    let d = assert_err(
        truncated,
        16,
        4,
        "unexpected end of file: expected `}` to close agent `NativeWorker` opened at 1:20",
    );
    assert_eq!(d.line_text, "  }");
    assert_err(
        "agent A {\n  on start {\n    execute(\"x\")\n",
        3,
        17,
        "expected `}` to close `on start` opened at 2:12",
    );
    assert_err(
        "agent A {\n  metadata {\n",
        2,
        13,
        "to close `metadata` opened at 2:12",
    );
    assert_err(
        "agent A",
        1,
        8,
        "expected `{` after `agent A`, found end of file",
    );
}

#[test]
fn error_commands() {
    assert_err(
        &wrap("on start {\n  execute(\"bash -c 'echo hi\")\n}"),
        3,
        11,
        "a quote in it is not closed",
    );
    assert_err(
        &wrap("on start { execute(\"   \") }"),
        2,
        20,
        "empty command",
    );
    assert_err(&wrap("on start { execute(\"\") }"), 2, 20, "empty command");
    assert_err(
        &wrap("on start { execute(ls) }"),
        2,
        20,
        "expected a command string",
    );
    assert_err(&wrap("on start { execute(\"ls\" }"), 2, 25, "expected `)`");
}

#[test]
fn error_other_syntax() {
    assert_err(
        &wrap("metadata { name = \"x\" }"),
        2,
        17,
        "write `key: value`",
    );
    assert_err(&wrap("metadata { name: 'x' }"), 2, 18, "double quotes");
    assert_err(
        &wrap("metadata { name: \"a\\q\" }"),
        2,
        20,
        "unknown escape `\\q`",
    );
    assert_err(
        &wrap("  /* never closed\n"),
        2,
        3,
        "unterminated block comment",
    );
    assert_err(
        &wrap("metadata { tags: [\"a\" \"b\"] }"),
        2,
        23,
        "expected `,` or `]`",
    );
    assert_err(&wrap("on later { }"), 2, 4, "unknown event `later`");
    assert_err(
        &wrap("  tier: None"),
        2,
        3,
        "`tier` belongs inside a block: write `security { tier: ... }`",
    );
    assert_err(
        &wrap("timeout: 5s"),
        2,
        1,
        "write `limits { timeout: ... }`",
    );
    assert_err(&wrap("on trigger \"\" { }"), 2, 12, "empty trigger name");
    assert_err(&wrap("metadata { @ }"), 2, 12, "unexpected character `@`");
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    assert_err(
        &wrap(&format!("metadata {{ x: {deep} }}")),
        2,
        31,
        "nested too deeply",
    );
}

#[test]
fn caret_lines_up_under_tabs_and_wide_text() {
    let src = "agent A {\n\tmetadata { note: \"é\" }\n\t\tsecurty {}\n}";
    let d = assert_err(src, 3, 3, "did you mean `security`?");
    assert!(d
        .to_string()
        .contains("\n3 |         securty {}\n  |         ^^^^^^^\n"));
    let d = assert_err(
        "agent A { metadata { x: \"日本\" y: = } }",
        1,
        33,
        "write `key: value`",
    );
    // The caret is under the `=` on a terminal, where each of 日本 takes two columns.
    assert!(d
        .to_string()
        .ends_with(&format!("\n  | {}^", " ".repeat(34))));
}

#[test]
fn diagnostic_at_for_plan_time_errors() {
    let a = one(SEED);
    let stmt = &a.handlers[0].statements[0];
    let d = Diagnostic::at(
        "seed_agent.dsl",
        SEED,
        stmt.location,
        "executable `python3` is not allowed",
    );
    assert_eq!(
        d.to_string(),
        "error: executable `python3` is not allowed\n  --> seed_agent.dsl:15:5\n   |\n\
         15 |     execute_native(\"python3 process.py\")\n   |     ^^^^^^^^^^^^^^"
    );
    // Outside the source: no line to show, and no panic.
    let d = Diagnostic::at("f", "x", Location::new(9, 9), "m");
    assert_eq!(d.to_string(), "error: m\n --> f:9:9");
    let d = Diagnostic::at("f", "x", Location::new(0, 0), "m");
    assert!(d.to_string().starts_with("error: m\n --> f"), "{d}");
}

#[test]
fn parse_file_errors() {
    let dir = std::env::temp_dir().join(format!("symbiont-dsl-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let missing = dir.join("missing.dsl");
    let d = parse_file(&missing).unwrap_err();
    assert_eq!(d.location, Location::new(1, 1));
    assert!(d.message.starts_with("cannot read agent file: "), "{d}");
    assert!(d
        .to_string()
        .contains(&format!("--> {}:1:1", missing.display())));

    let bad = dir.join("bad.dsl");
    std::fs::write(&bad, b"agent A {\n  metadata { x: \"ab\xff\" }\n}\n").unwrap();
    let d = parse_file(&bad).unwrap_err();
    assert_eq!(d.location, Location::new(2, 20));
    assert!(d.message.contains("not valid UTF-8"), "{d}");
    assert_eq!(d.line_text, "  metadata { x: \"ab\u{fffd}\" }");

    let bad_first = dir.join("bad_first.dsl");
    std::fs::write(&bad_first, b"\xc3(").unwrap();
    assert_eq!(
        parse_file(&bad_first).unwrap_err().location,
        Location::new(1, 1)
    );

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn multi_agent_fixture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multi_agent.dsl");
    let f = parse_file(&path).unwrap();
    let [b, s] = &f.agents[..] else {
        panic!("{f:?}")
    };
    assert_eq!(b.name, "Builder");
    assert_eq!(b.location, Location::new(2, 1));
    assert_eq!(b.metadata[2], ("tags".into(), "ci, local".into()));
    assert_eq!(b.tier, Some((SecurityTier::None, Location::new(5, 20))));
    assert_eq!(b.sandbox.as_deref(), Some("Strict"));
    assert_eq!(b.limits.max_memory_mb, Some(512));
    assert_eq!(b.limits.timeout, Some(Duration::from_secs(30)));
    assert_eq!(b.limits.location, Some(Location::new(7, 3)));
    assert_eq!(
        b.env[1],
        ("RETRIES".into(), "3".into(), Location::new(18, 5))
    );
    let names: Vec<&str> = b.handlers.iter().map(|h| h.kind.name()).collect();
    assert_eq!(names, ["start", "build"]);
    assert_eq!(b.handlers[1].statements[1].argv, ["sh", "-c", "echo done"]);
    assert_eq!(s.tier.unwrap().0, SecurityTier::Tier1);
    assert_eq!(s.image.as_deref(), Some("busybox:latest"));
    assert_eq!(s.limits.timeout, Some(Duration::from_millis(500)));
    assert_eq!(s.handlers[0].statements[0].kind, StatementKind::Execute);
}
