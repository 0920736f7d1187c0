//! The operator's secrets: which passed variables count as secrets, the operator's env file,
//! and masking their values in what symbiont itself keeps of an agent's output (the log files
//! and the tails the dashboard and the run records show).
//!
//! A passed secret is the value of a variable the operator passed with `--pass-env`, of a
//! line of `native_execution.env_file`, or of an `env_passthrough` variable whose name looks
//! secret ([`looks_secret`]: `*_KEY`, `*_TOKEN`, `*_SECRET`, `*PASSWORD*`, any case). Values of
//! at least [`MIN_MASKED`] bytes are masked as `***`; shorter ones would mask innocent text.
//! Only names ever reach the audit log, the records, `symbiont check` and the dashboard's
//! environment list.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// The shortest value masked, in bytes.
pub const MIN_MASKED: usize = 8;

/// What a masked value is shown as.
pub const MASK: &[u8] = b"***";

/// Whether the variable `name` holds a secret by its name: `*_KEY`, `*_TOKEN`, `*_SECRET`,
/// `*PASSWORD*` (any case).
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n.ends_with("_KEY") || n.ends_with("_TOKEN") || n.ends_with("_SECRET") || n.contains("PASSWORD")
}

/// Every secret value of this process, longest first.
static SECRETS: RwLock<Vec<Vec<u8>>> = RwLock::new(Vec::new());

/// Whether any secret was registered: output is only scanned when one was.
static ANY: AtomicBool = AtomicBool::new(false);

/// Whether any secret is registered (output needs masking at all).
pub fn any() -> bool {
    ANY.load(Ordering::Relaxed)
}

/// Masks `value` from now on, in every run's logs and tails (if it is at least
/// [`MIN_MASKED`] bytes long).
pub fn register(value: &str) {
    let v = value.as_bytes();
    if v.len() < MIN_MASKED {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|x| x == v) {
        s.push(v.to_vec());
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
    ANY.store(true, Ordering::Relaxed);
}

fn registered() -> Arc<Vec<Vec<u8>>> {
    Arc::new(SECRETS.read().unwrap_or_else(|e| e.into_inner()).clone())
}

/// Masks the secrets in one stream of output read in chunks. A secret split across two chunks
/// is still masked: the end of a chunk that could be the start of a secret is held back until
/// the next chunk (or [`Masker::finish`]) decides.
#[derive(Debug, Default)]
pub struct Masker {
    /// The secrets, taken when the first chunk comes (runs start after the plan registered
    /// them).
    secrets: Option<Arc<Vec<Vec<u8>>>>,
    carry: Vec<u8>,
}

impl Masker {
    /// A masker for `secrets` (longest first), whatever is registered.
    pub fn with(mut secrets: Vec<Vec<u8>>) -> Masker {
        secrets.retain(|s| s.len() >= MIN_MASKED);
        secrets.sort_by_key(|x| std::cmp::Reverse(x.len()));
        Masker {
            secrets: Some(Arc::new(secrets)),
            carry: Vec::new(),
        }
    }

    /// The bytes of `chunk` (after what was held back) that can be shown now, masked.
    pub fn mask<'a>(&mut self, chunk: &'a [u8]) -> Cow<'a, [u8]> {
        let secrets = self.secrets.get_or_insert_with(registered).clone();
        if secrets.is_empty() {
            return Cow::Borrowed(chunk);
        }
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk);
        let mut first = [false; 256];
        for s in secrets.iter() {
            first[s[0] as usize] = true;
        }
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        'scan: while i < data.len() {
            if first[data[i] as usize] {
                let rest = &data[i..];
                for s in secrets.iter() {
                    if rest.starts_with(s) {
                        out.extend_from_slice(MASK);
                        i += s.len();
                        continue 'scan;
                    }
                    if rest.len() < s.len() && s.starts_with(rest) {
                        // Maybe a secret whose end has not come yet.
                        self.carry = rest.to_vec();
                        break 'scan;
                    }
                }
            }
            out.push(data[i]);
            i += 1;
        }
        Cow::Owned(out)
    }

    /// The end of the stream: what was held back, which is no secret.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

/// `text` with every registered secret masked.
pub fn mask_str(text: &str) -> Cow<'_, str> {
    let mut m = Masker::default();
    match m.mask(text.as_bytes()) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(mut v) => {
            v.extend(m.finish());
            Cow::Owned(String::from_utf8_lossy(&v).into_owned())
        }
    }
}

/// Whether `name` can be an environment variable's name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(f) if f == '_' || f.is_ascii_alphabetic())
        && c.all(|x| x == '_' || x.is_ascii_alphanumeric())
}

/// Why the operator's env file was refused: the file and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    pub path: PathBuf,
    pub problem: String,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "env file {} (native_execution.env_file): {}",
            self.path.display(),
            self.problem
        )
    }
}

/// Reads the operator's env file: `KEY=VALUE` lines, blank lines and `#` comments, an optional
/// `export ` before the key, a value in single or double quotes taken as written between them
/// (no escapes, no `$` expansion). Like ssh with a private key, a file that others can read or
/// write (any group or other permission bit) or that someone else owns is refused.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    let err = |problem: String| EnvFileError {
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(err("is not a file".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "its permissions {mode:03o} let others read or write it; `chmod 600 {}`",
                path.display()
            )));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(err(format!(
                "it belongs to uid {}, not to this user (uid {me})",
                meta.uid()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot be read: {e}")))?;
    parse_env_file(&text).map_err(|(line, problem)| err(format!("line {line}: {problem}")))
}

/// The lines of an env file (see [`read_env_file`]); `Err((line, problem))`.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err((n + 1, "expected KEY=VALUE".into()));
        };
        let key = key.trim();
        if !valid_name(key) {
            return Err((n + 1, format!("`{key}` is not a variable name")));
        }
        let value = value.trim();
        let value = match value.as_bytes() {
            [q @ (b'"' | b'\''), .., last] if last == q && value.len() >= 2 => {
                &value[1..value.len() - 1]
            }
            [b'"' | b'\'', ..] => return Err((n + 1, "unterminated quote".into())),
            _ => value,
        };
        out.retain(|(k, _)| k != key);
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(m: &mut Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&m.mask(c));
        }
        out.extend(m.finish());
        out
    }

    #[test]
    fn secret_names() {
        for n in [
            "ANTHROPIC_API_KEY",
            "openai_api_key",
            "GH_TOKEN",
            "AWS_SECRET",
            "DB_PASSWORD_FILE",
        ] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["PATH", "HOME", "KEYBOARD", "TOKENS"] {
            assert!(!looks_secret(n), "{n}");
        }
    }

    #[test]
    fn masks_whole_and_split_secrets_and_keeps_short_values() {
        let mut m = Masker::with(vec![b"sk-abcdef123".to_vec(), b"short".to_vec()]);
        assert_eq!(
            all(&mut m, &[b"key=sk-abcdef123 short\n"]),
            b"key=*** short\n"
        );
        // Split across reads, at every place.
        let text = b"a sk-abcdef123 b sk-abcdef123";
        for cut in 0..text.len() {
            let mut m = Masker::with(vec![b"sk-abcdef123".to_vec()]);
            assert_eq!(
                all(&mut m, &[&text[..cut], &text[cut..]]),
                b"a *** b ***",
                "cut at {cut}"
            );
        }
        // A held-back start that turns out to be no secret comes out as it was.
        let mut m = Masker::with(vec![b"sk-abcdef123".to_vec()]);
        assert_eq!(m.mask(b"x sk-abc").as_ref(), b"x ");
        assert_eq!(all(&mut m, &[b"!"]), b"sk-abc!");
        // Nothing to mask: the chunk is passed through.
        let mut m = Masker::with(Vec::new());
        assert!(matches!(m.mask(b"hello"), Cow::Borrowed(_)));
    }

    #[test]
    fn env_file_lines() {
        let text = "# keys\n\nA_KEY=one\nexport B = \"two # not a comment\"\nC='x=y'\nA_KEY=three\nEMPTY=\n";
        assert_eq!(
            parse_env_file(text).unwrap(),
            vec![
                ("B".to_string(), "two # not a comment".to_string()),
                ("C".to_string(), "x=y".to_string()),
                ("A_KEY".to_string(), "three".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
        assert_eq!(parse_env_file("A=1\nnope\n").unwrap_err().0, 2);
        assert_eq!(parse_env_file("1A=x\n").unwrap_err().0, 1);
        assert_eq!(parse_env_file("A=\"x\n").unwrap_err().0, 1);
    }

    #[cfg(unix)]
    #[test]
    fn env_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!("symbiont-envfile-{}", std::process::id()));
        std::fs::write(&p, "A_KEY=abcdefgh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_env_file(&p).unwrap_err();
        assert!(e.to_string().contains("644"), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_env_file(&p).unwrap(),
            vec![("A_KEY".to_string(), "abcdefgh".to_string())]
        );
        let _ = std::fs::remove_file(&p);
    }
}
