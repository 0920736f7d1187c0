//! Each run's record on disk, beside its logs: `runs/<session>/<run>/record.json`, written when
//! the run ends, so `logs` and `history` outlive the supervisor that ran it.

use std::io;
use std::path::Path;

use super::RunRecord;

/// The file name of a run's record in its directory.
pub const FILE: &str = "record.json";

/// Writes `r` to `dir/record.json` (creating `dir`, which a run that failed to start never
/// made) as `--json` prints it. Atomically: a reader finds the whole record or none.
pub fn write(dir: &Path, r: &RunRecord) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut text = serde_json::to_vec(r)?;
    text.push(b'\n');
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, dir.join(FILE)).inspect_err(|_| {
        if let Err(e) = std::fs::remove_file(&tmp) {
            tracing::warn!("cannot remove {}: {e}", tmp.display());
        }
    })
}

/// The highest run id of any run directory under `data_dir/runs` (`<id>-<agent>-<trigger>`),
/// ended or not (a run killed with its supervisor has no record): 0 when there is none.
pub fn last_run_id(data_dir: &Path) -> super::RunId {
    let entries = |p: &Path| std::fs::read_dir(p).into_iter().flatten().flatten();
    entries(&data_dir.join("runs"))
        .flat_map(|session| entries(&session.path()))
        .filter_map(|run| {
            let name = run.file_name();
            let name = name.to_str()?;
            name.split('-').next()?.parse::<super::RunId>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// Every record under `data_dir/runs/*/*/record.json`, oldest end first (then by run id);
/// files that cannot be read or parsed are skipped.
pub fn read_all(data_dir: &Path) -> Vec<RunRecord> {
    let dirs = |p: &Path| {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let mut out: Vec<RunRecord> = dirs(&data_dir.join("runs"))
        .iter()
        .flat_map(|session| dirs(session))
        .filter_map(|run| std::fs::read(run.join(FILE)).ok())
        .filter_map(|text| serde_json::from_slice(&text).ok())
        .collect();
    out.sort_by(|a, b| (&a.ended_at, a.run_id).cmp(&(&b.ended_at, b.run_id)));
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Actor, Reason};
    use super::*;
    use crate::tier::SecurityTier;

    pub(crate) fn record(run_id: u64, ended_at: &str) -> RunRecord {
        RunRecord {
            run_id,
            agent: "Agent \"q\"".into(),
            trigger: "start".into(),
            tier: SecurityTier::None,
            sandbox: Default::default(),
            denials: 0,
            denied: Vec::new(),
            pid: Some(4242),
            container_id: None,
            argv: vec!["sh".into(), "-c".into(), "echo hi; exit 3".into()],
            started_at: "2026-01-02T03:04:05.006Z".into(),
            ended_at: ended_at.into(),
            duration_secs: 0.123456789,
            exit_code: Some(3),
            signal: Some("SIGTERM".into()),
            reason: Reason::KilledByOperator,
            killed_by: Some(Actor::Operator),
            message: Some("é ✓ \n".into()),
            peak_memory_bytes: 1 << 40,
            cpu_seconds: 0.1 + 0.2,
            processes: 3,
            stdout_tail: vec!["hi".into()],
            stderr_tail: vec![],
            stdout_log: "/d/runs/s/1-a-start/stdout.log".into(),
            stderr_log: "/d/runs/s/1-a-start/stderr.log".into(),
            log_dropped_bytes: 7,
            log_dropped_since: Some("2026-01-02T03:04:05.100Z".into()),
            log_truncated_bytes: u64::MAX,
            audit_error: Some("exit: No space left on device".into()),
            record_error: None,
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("symbiont-records-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_record_round_trips_exactly() {
        let data = scratch("trip");
        let dir = data.join("runs").join("s1").join("1-a-start");
        let r = record(1, "2026-01-02T03:04:06.000Z");
        write(&dir, &r).unwrap();
        assert!(!dir.join("record.json.tmp").exists());
        let text = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert_eq!(text.trim_end(), serde_json::to_string(&r).unwrap());
        assert_eq!(read_all(&data), vec![r.clone()]);
        // Written again (a rewrite replaces it whole).
        let mut r2 = r;
        r2.exit_code = None;
        write(&dir, &r2).unwrap();
        assert_eq!(read_all(&data), vec![r2]);
        std::fs::remove_dir_all(&data).unwrap();
    }

    #[test]
    fn every_session_is_read_in_end_order_and_bad_files_are_skipped() {
        let data = scratch("all");
        let runs = data.join("runs");
        let (a, b, c) = (
            record(2, "2026-01-02T03:04:07.000Z"),
            record(1, "2026-01-02T03:04:07.000Z"),
            record(9, "2026-01-02T03:04:06.000Z"),
        );
        write(&runs.join("s2").join("2-a-start"), &a).unwrap();
        write(&runs.join("s2").join("1-a-start"), &b).unwrap();
        write(&runs.join("s1").join("9-a-start"), &c).unwrap();
        std::fs::create_dir_all(runs.join("s1").join("3-bad")).unwrap();
        std::fs::write(runs.join("s1").join("3-bad").join(FILE), b"{\"run_id\": 3").unwrap();
        std::fs::create_dir_all(runs.join("s1").join("4-none")).unwrap();
        std::fs::write(runs.join("stray-file"), b"x").unwrap();
        assert_eq!(read_all(&data), vec![c, b, a]);
        assert_eq!(read_all(&data.join("missing")), vec![]);
        std::fs::remove_dir_all(&data).unwrap();
    }
}
