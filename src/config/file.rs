//! Reading a config file: TOML with spans, checked key by key against the schema.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::schema::{is_no_limit, Field, Kind, Section, Val};
use super::{LoadedConfig, Origin};

type Key<'i> = Spanned<Cow<'i, str>>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Keys of the upstream `[security]` section that we accept and do not use (`key_provider`
/// too, in a form other than `{ Environment = { var_name = ... } }`).
const UPSTREAM_SECURITY_KEYS: [&str; 4] = [
    "key_provider",
    "enable_compression",
    "enable_backups",
    "enable_safety_checks",
];

/// One key found in the file, parsed but not yet stored.
struct Setting {
    field: Field,
    val: Val,
    /// The dotted name as the file wrote it, e.g. `security.native_execution.enabled`.
    written: String,
    key_span: Range<usize>,
}

#[derive(Default)]
struct Collected {
    settings: Vec<Setting>,
    /// (byte offset, dotted name)
    unused: Vec<(usize, String)>,
    /// (action, keys, span of the action's key)
    bindings: Vec<(String, Vec<String>, Range<usize>)>,
}

/// Parse `text` (the contents of `path`) into a config over the built-in defaults.
/// Cross-key checks (warn <= critical) are left to the caller, which runs them after the
/// environment has been applied.
pub(crate) fn parse_file(text: &str, path: &Path) -> Result<LoadedConfig, ConfigError> {
    let src = Source { text, path };
    let root = DeTable::parse(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        src.error(&span, format_args!("invalid TOML: {}", e.message().trim()))
    })?;

    let mut out = Collected::default();
    for (key, value) in entries(root.get_ref()) {
        let name = key.get_ref().as_ref();
        let section = match name {
            "security" => Section::Security,
            "native_execution" => Section::Native,
            "dashboard" => Section::Dashboard,
            "supervisor" => Section::Supervisor,
            "containers" => Section::Containers,
            "api" => Section::Api,
            "microvm" => Section::Microvm,
            other => {
                out.unused.push((key.span().start, other.to_string()));
                continue;
            }
        };
        read_section(&src, name, section, value, &mut out)?;
    }

    out.unused.sort();
    let mut loaded = LoadedConfig {
        file: Some(path.to_path_buf()),
        unused: out.unused.into_iter().map(|(_, name)| name).collect(),
        ..LoadedConfig::default()
    };

    for field in Field::ALL {
        let mut group: Vec<&Setting> = out.settings.iter().filter(|s| s.field == field).collect();
        group.sort_by_key(|s| s.key_span.start);
        let Some(first) = group.first() else { continue };
        if let Some(other) = group.iter().find(|s| s.val != first.val) {
            return Err(ConfigError::new(format!(
                "{} and {}: `{} = {}` and `{} = {}` disagree; set one of them",
                src.loc(&first.key_span),
                src.loc(&other.key_span),
                first.written,
                first.val,
                other.written,
                other.val,
            )));
        }
        field.set(&mut loaded.config, first.val.clone());
        loaded.set_origin(&field.key(), file_origin(&src, &first.key_span));
    }

    for (action, keys, span) in out.bindings {
        loaded.set_origin(
            &format!("dashboard.keys.{action}"),
            file_origin(&src, &span),
        );
        loaded.config.dashboard.keys.insert(action, keys);
    }
    Ok(loaded)
}

/// Whether a `key_provider` is the seed's `{ Environment = ... }` form, the one the service
/// reads (its other forms load and are listed as not used).
fn is_environment_provider(value: &Value<'_>) -> bool {
    value
        .get_ref()
        .as_table()
        .is_some_and(|t| t.contains_key("Environment"))
}

fn file_origin(src: &Source<'_>, span: &Range<usize>) -> Origin {
    Origin::File {
        path: src.path.to_path_buf(),
        line: src.line(span),
    }
}

/// The entries of a table in the order they appear in the file.
fn entries<'a, 'i>(table: &'a DeTable<'i>) -> Vec<(&'a Key<'i>, &'a Value<'i>)> {
    let mut all: Vec<_> = table.iter().collect();
    all.sort_by_key(|(k, _)| k.span().start);
    all
}

/// Read one section we use; `label` is its dotted name as written (`security.native_execution`).
fn read_section(
    src: &Source<'_>,
    label: &str,
    section: Section,
    value: &Value<'_>,
    out: &mut Collected,
) -> Result<(), ConfigError> {
    let table = as_table(src, label, value)?;
    for (key, value) in entries(table) {
        let name = key.get_ref().as_ref();
        let field = Field::lookup(section, name)
            .filter(|f| *f != Field::KeyProvider || is_environment_provider(value));
        if let Some(field) = field {
            let val = parse_value(src, field.kind(), name, value)?;
            if let Some(range) = field.out_of_range(&val) {
                return Err(src.error(
                    &value.span(),
                    format_args!("`{label}.{name}` {range}, found {}", found(src, value)),
                ));
            }
            out.settings.push(Setting {
                field,
                val,
                written: format!("{label}.{name}"),
                key_span: key.span(),
            });
            continue;
        }
        match (section, name) {
            (Section::Security, "native_execution") => {
                read_section(src, &format!("{label}.{name}"), Section::Native, value, out)?;
            }
            (Section::Security, upstream) if UPSTREAM_SECURITY_KEYS.contains(&upstream) => {
                out.unused
                    .push((key.span().start, format!("{label}.{name}")));
            }
            (Section::Dashboard, "keys") => read_bindings(src, label, value, out)?,
            _ => return Err(unknown_key(src, key, label, section)),
        }
    }
    Ok(())
}

/// `[dashboard.keys]`: `action = "k"` or `action = ["k", "F9"]`.
fn read_bindings(
    src: &Source<'_>,
    label: &str,
    value: &Value<'_>,
    out: &mut Collected,
) -> Result<(), ConfigError> {
    let table = as_table(src, &format!("{label}.keys"), value)?;
    for (key, value) in entries(table) {
        let action = key.get_ref().as_ref();
        let bad = |v: &Value<'_>| {
            src.error(
                &v.span(),
                format_args!(
                    "`{label}.keys.{action}` must be a key name or an array of key names, found {}",
                    found(src, v)
                ),
            )
        };
        let keys = match value.get_ref() {
            DeValue::String(s) if !s.trim().is_empty() => vec![s.to_string()],
            DeValue::Array(items) => items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(s) if !s.trim().is_empty() => Ok(s.to_string()),
                    _ => Err(bad(item)),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad(value)),
        };
        out.bindings.push((action.to_string(), keys, key.span()));
    }
    Ok(())
}

fn as_table<'a, 'i>(
    src: &Source<'_>,
    label: &str,
    value: &'a Value<'i>,
) -> Result<&'a DeTable<'i>, ConfigError> {
    value.get_ref().as_table().ok_or_else(|| {
        src.error(
            &value.span(),
            format_args!("`{label}` must be a table, found {}", found(src, value)),
        )
    })
}

fn unknown_key(src: &Source<'_>, key: &Key<'_>, label: &str, section: Section) -> ConfigError {
    let name = key.get_ref().as_ref();
    let valid = Field::names_in(section);
    let hint = match suggest(name, &valid) {
        Some(near) => format!("did you mean `{near}`?"),
        None => format!("valid keys: {}", valid.join(", ")),
    };
    src.error_with_help(
        &key.span(),
        format_args!("unknown key `{name}` in [{label}]"),
        Some(hint),
    )
}

/// The candidate nearest to `word`, if any is near enough to be a plausible misspelling.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// How a value reads in "found ..." messages: its source text when short, else its type.
fn found(src: &Source<'_>, value: &Value<'_>) -> String {
    let kind = match value.get_ref() {
        DeValue::Table(_) => return "a table".to_string(),
        DeValue::Array(_) => "an array",
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
    };
    match src.snippet(&value.span()) {
        Some(text) => text.to_string(),
        None => kind.to_string(),
    }
}

fn integer(value: &DeValue<'_>) -> Option<i128> {
    match value {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

fn number(value: &DeValue<'_>) -> Option<f64> {
    match value {
        DeValue::Float(f) => f.as_str().parse().ok(),
        DeValue::Integer(_) => integer(value).map(|i| i as f64),
        _ => None,
    }
}

fn non_empty_str<'a>(value: &'a DeValue<'_>) -> Option<&'a str> {
    value.as_str().filter(|s| !s.trim().is_empty())
}

/// Parse and check one value of `kind`; `name` is the key as written, for the message.
fn parse_value(
    src: &Source<'_>,
    kind: Kind,
    name: &str,
    value: &Value<'_>,
) -> Result<Val, ConfigError> {
    let bad = |v: &Value<'_>| {
        src.error(
            &v.span(),
            format_args!(
                "`{name}` must be {}, found {}",
                kind.expected(),
                found(src, v)
            ),
        )
    };
    let v = value.get_ref();
    let parsed = match kind {
        Kind::Bool => v.as_bool().map(Val::Bool),
        Kind::Tier => v.as_str().and_then(|s| s.parse().ok()).map(Val::Tier),
        Kind::Sandbox => v.as_str().and_then(|s| s.parse().ok()).map(Val::Sandbox),
        Kind::Str => non_empty_str(v).map(|s| Val::Str(s.to_string())),
        Kind::Path => non_empty_str(v).map(|s| Val::Path(s.into())),
        Kind::OptPath => non_empty_str(v).map(|s| Val::OptPath(Some(s.into()))),
        Kind::OptStr => non_empty_str(v).map(|s| Val::OptStr(Some(s.to_string()))),
        Kind::KeyProvider => v
            .as_table()
            .and_then(|t| t.get("Environment"))
            .and_then(|e| e.get_ref().as_table())
            .filter(|e| e.len() == 1)
            .and_then(|e| e.get("var_name"))
            .and_then(|n| n.get_ref().as_str())
            .filter(|n| super::schema::is_env_name(n))
            .map(|n| Val::KeyVar(Some(n.to_string()))),
        Kind::OptPosInt => match v.as_str() {
            Some(s) => is_no_limit(s).then_some(Val::OptU64(None)),
            None => integer(v)
                .filter(|i| *i > 0)
                .and_then(|i| u64::try_from(i).ok())
                .map(|i| Val::OptU64(Some(i))),
        },
        Kind::PosInt => integer(v)
            .filter(|i| *i > 0)
            .and_then(|i| u64::try_from(i).ok())
            .map(Val::U64),
        Kind::Count => integer(v)
            .and_then(|i| usize::try_from(i).ok())
            .map(Val::Usize),
        Kind::OptPosFloat if v.as_str().is_some_and(is_no_limit) => Some(Val::OptF64(None)),
        Kind::OptPosFloat | Kind::NonNegFloat | Kind::Ratio => {
            number(v).and_then(|n| kind.check_float(n))
        }
        Kind::Names | Kind::EnvNames | Kind::Paths => {
            let items = v.as_array().ok_or_else(|| bad(value))?;
            let mut names = Vec::with_capacity(items.len());
            for item in items.iter() {
                let ok = item
                    .get_ref()
                    .as_str()
                    .filter(|s| kind.check_list(vec![s.to_string()]).is_some());
                names.push(ok.ok_or_else(|| bad(item))?.to_string());
            }
            Some(Val::List(names))
        }
    };
    parsed.ok_or_else(|| bad(value))
}
