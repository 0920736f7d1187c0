//! Property tests: no input makes the parser panic, and every error points into the input.

use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;

const SEED: &str = include_str!("../../tests/fixtures/seed_agent.dsl");

/// Parses `src` and checks that the result, error or not, only points into it.
fn check(src: &str) {
    let lines: Vec<&str> = src.lines().collect();
    let within = |loc: Location| {
        assert!(
            loc.line >= 1 && loc.line <= lines.len() + 1,
            "{loc} in {src:?}"
        );
        assert!(loc.column >= 1, "{loc} in {src:?}");
        if let Some(text) = lines.get(loc.line - 1) {
            assert!(
                loc.column <= text.chars().count() + 1,
                "{loc} past the end of {text:?}"
            );
        }
    };
    match parse_str(src, Path::new("fuzz.dsl")) {
        Ok(file) => {
            for a in &file.agents {
                within(a.location);
                a.tier.iter().for_each(|t| within(t.1));
                a.limits.location.into_iter().for_each(within);
                a.env.iter().for_each(|e| within(e.2));
                for h in &a.handlers {
                    within(h.location);
                    for s in &h.statements {
                        within(s.location);
                        assert!(!s.argv.is_empty());
                    }
                }
            }
        }
        Err(d) => {
            within(d.location);
            let rendered = d.to_string();
            assert!(rendered.starts_with("error: "), "{rendered}");
            assert!(
                rendered.contains(&format!(
                    "--> fuzz.dsl:{}:{}",
                    d.location.line, d.location.column
                )),
                "{rendered}"
            );
            if !d.line_text.is_empty() {
                assert!(rendered.contains('^'), "{rendered}");
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, u8),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = select(vec![
        b'{', b'}', b'"', b'\\', b'[', b']', b'(', b')', b':', b',', b'#', b'/', b'*', b'\n',
        b'\t', b'-', b'0', b'a', b' ', 0xff, 0xc3,
    ]);
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), interesting).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..40usize).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
    match *m {
        Mutation::Delete(p, n) => {
            let start = at(p, bytes.len());
            let end = (start + n).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert(p, b) => {
            let i = at(p, bytes.len());
            bytes.insert(i, b);
        }
        Mutation::Duplicate(p, n) => {
            let start = at(p, bytes.len());
            let end = (start + n).min(bytes.len());
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Truncate(p) => {
            let i = at(p, bytes.len());
            bytes.truncate(i);
        }
    }
}

const VOCAB: &[&str] = &[
    "agent",
    "A",
    "B",
    "metadata",
    "security",
    "limits",
    "env",
    "on",
    "start",
    "trigger",
    "execute",
    "execute_native",
    "tier",
    "None",
    "Tier1",
    "sandbox",
    "capabilities",
    "image",
    "timeout",
    "max_memory_mb",
    "max_cpu_cores",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    ",",
    ";",
    "\"ls -l\"",
    "\"x\"",
    "\"'\"",
    "\"\"",
    "30s",
    "0",
    "1.5",
    "-1",
    "\n",
    "//",
    "#",
    "/*",
    "*/",
];

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_text_never_panics(src in "\\PC{0,120}") {
        check(&src);
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..160)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup_never_panics(words in vec(select(VOCAB), 0..60)) {
        check(&words.join(" "));
    }

    #[test]
    fn mutated_seed_never_panics(mutations in vec(mutation(), 1..6)) {
        let mut bytes = SEED.as_bytes().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn every_prefix_of_the_seed() {
    for end in 0..=SEED.len() {
        check(&SEED[..end]);
    }
}
