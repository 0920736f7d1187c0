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
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `{"ts": ..., "event": event, ...fields}` as one line, in one write.
    pub fn record(&self, event: &str, fields: Value) {
        let mut obj = json!({ "ts": super::now_rfc3339(), "event": event });
        if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
            o.extend(f);
        }
        let mut line = obj.to_string();
        line.push('\n');
        if let Ok(mut f) = self.file.lock() {
            // O_APPEND and one write per line: lines from concurrent writers never interleave.
            let _ = f.write_all(line.as_bytes());
            let _ = f.flush();
        }
    }
}
