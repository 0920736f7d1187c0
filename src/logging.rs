//! The diagnostic log: what symbiont itself did and what failed on the way (a cgroup it could
//! not write or remove, a kill that failed, a record it could not save), through `tracing`.
//!
//! The library only emits events: a program that uses the crate sees nothing unless it installs
//! a subscriber of its own. The `symbiont` binary installs [`install`]: warnings to stderr by
//! default, more with `-v`/`-vv`, errors only with `-q`, anything `SYMBIONT_LOG` (env-filter
//! syntax, e.g. `symbiont=debug`) says. While the dashboard owns the terminal the log goes to a
//! file instead ([`to_file`]), never onto the screen.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use tracing_subscriber::filter::{filter_fn, EnvFilter, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// The variable that chooses what is logged (env-filter directives), over `-v`/`-q`.
pub const ENV: &str = "SYMBIONT_LOG";

/// The log file's name in the data directory, while the dashboard shows.
pub const FILE_NAME: &str = "symbiont.log";

/// A log file past this size is moved to `symbiont.log.1` when the next dashboard opens it.
const ROTATE_BYTES: u64 = 8 << 20;

const STDERR: u8 = 0;
const FILE: u8 = 1;
const NOWHERE: u8 = 2;

static SINK: AtomicU8 = AtomicU8::new(STDERR);
static LOG_FILE: Mutex<Option<File>> = Mutex::new(None);

/// The level of `symbiont`'s own events for `-v` (counted) and `-q`: warnings by default.
pub fn level(verbose: u8, quiet: bool) -> LevelFilter {
    match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// The filter: `SYMBIONT_LOG` when set (an invalid one is reported and ignored), else the
/// level of `-v`/`-q` for symbiont and warnings (errors with `-q`) for the crates under it.
fn filter(verbose: u8, quiet: bool) -> EnvFilter {
    let own = level(verbose, quiet);
    let others = own.min(LevelFilter::WARN);
    let default = || EnvFilter::new(format!("{others},symbiont={own}"));
    match std::env::var(ENV) {
        Ok(s) if !s.trim().is_empty() => match EnvFilter::builder().parse(&s) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("symbiont: {ENV}={s:?} is not a valid filter ({e}); using the default");
                default()
            }
        },
        _ => default(),
    }
}

/// Installs the binary's subscriber: events to stderr (with timestamps when `timestamps`, as
/// the service wants in its service.log), or to the file [`to_file`] opened.
pub fn install(verbose: u8, quiet: bool, timestamps: bool) {
    let to_stderr = || filter_fn(|_| SINK.load(Ordering::Relaxed) == STDERR);
    let stderr_timed = timestamps.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_filter(to_stderr())
    });
    let stderr_plain = (!timestamps).then(|| {
        tracing_subscriber::fmt::layer()
            .without_time()
            .with_writer(io::stderr)
            .with_filter(to_stderr())
    });
    let file = tracing_subscriber::fmt::layer()
        .with_writer(FileWriter)
        .with_filter(filter_fn(|_| SINK.load(Ordering::Relaxed) == FILE));
    let _already = tracing_subscriber::registry()
        .with(filter(verbose, quiet))
        .with(stderr_timed)
        .with(stderr_plain)
        .with(file)
        .try_init();
}

/// The log file in the data directory `data_dir`.
pub fn file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Sends the log to `path` (appended; moved to `.1` first when large) from now on, and never to
/// the terminal: if the file cannot be opened, the log goes nowhere and the error is returned.
pub fn to_file(path: &Path) -> io::Result<()> {
    SINK.store(NOWHERE, Ordering::Relaxed);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > ROTATE_BYTES) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old)?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    SINK.store(FILE, Ordering::Relaxed);
    Ok(())
}

/// Writes to the file [`to_file`] opened (each event is one write).
struct FileWriter;

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write_all(buf),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = FileWriter;

    fn make_writer(&'a self) -> FileWriter {
        FileWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_of_the_flags() {
        assert_eq!(level(0, false), LevelFilter::WARN);
        assert_eq!(level(1, false), LevelFilter::INFO);
        assert_eq!(level(2, false), LevelFilter::DEBUG);
        assert_eq!(level(5, false), LevelFilter::TRACE);
        // -q wins over -v.
        assert_eq!(level(2, true), LevelFilter::ERROR);
    }
}
