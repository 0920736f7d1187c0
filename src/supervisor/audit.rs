//! The audit log: one JSON line per launch, warning, kill and exit, written and flushed
//! before the action it records takes effect.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
    /// Lines that could not be written, and the first error.
    failed: Mutex<(u64, Option<String>)>,
}

impl AuditLog {
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot create the directory {} of the audit log: {e}; \
                             set supervisor.data_dir or supervisor.audit_log (SYMBIONT_DATA_DIR) to a writable place",
                            dir.display()
                        ),
                    )
                })?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open the audit log {}: {e}", path.display()),
                )
            })?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            failed: Mutex::new((0, None)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `{"ts": ..., "event": event, ...fields}` as one line, in one write. A line that
    /// cannot be written (a full or failing disk) is counted: see [`AuditLog::failures`].
    pub fn record(&self, event: &str, fields: Value) {
        // A failure is counted and logged by try_record.
        let _ = self.try_record(event, fields);
    }

    /// [`AuditLog::record`], saying whether the line reached the file: what the line records
    /// must not happen when it did not (a launch), or must be reported (an exit).
    pub fn try_record(&self, event: &str, fields: Value) -> io::Result<()> {
        let mut obj = json!({ "ts": super::now_rfc3339(), "event": event });
        if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
            o.extend(f);
        }
        let mut line = obj.to_string();
        // What the audit log says (names, never values), the diagnostic log says too.
        tracing::info!("audit: {line}");
        line.push('\n');
        let result = {
            let f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            write_line(&f, line.as_bytes())
        };
        if let Err(e) = &result {
            tracing::warn!(
                "cannot write the {event} line to the audit log {}: {e}",
                self.path.display()
            );
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.0 += 1;
            failed.1.get_or_insert_with(|| e.to_string());
        }
        result.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot write the audit log {}: {e}", self.path.display()),
            )
        })
    }

    /// How many lines could not be written so far, and the first error.
    pub fn failures(&self) -> Option<(u64, String)> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        (failed.0 > 0).then(|| (failed.0, failed.1.clone().unwrap_or_default()))
    }
}

/// Writes one line with O_APPEND (lines from concurrent writers never interleave) and flushes
/// it. A line cut short by a full disk is taken back, so the log stays one JSON value per line
/// (a line another process appended in that instant may go with it: the disk is full anyway).
fn write_line(mut f: &File, line: &[u8]) -> io::Result<()> {
    let before = f.metadata().map(|m| m.len()).ok();
    match f.write(line) {
        Ok(n) if n == line.len() => f.flush(),
        Ok(n) => {
            if let Some(len) = before {
                if let Err(e) = f.set_len(len) {
                    tracing::warn!("cannot take back a partial audit line: {e}");
                }
            }
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("only {n} of {} bytes written", line.len()),
            ))
        }
        Err(e) => Err(e),
    }
}
