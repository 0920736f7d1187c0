//! Headless output: one line per event and a summary table, or JSON Lines and a final JSON
//! array of run records.

use std::io::Write;
use std::sync::Arc;

use crate::supervisor::{Event, RunRecord};

/// Human-sized bytes: 1.5 KiB, 12.0 MiB.
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn clock() -> String {
    let s = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    // 2026-11-24T10:15:30.123Z -> 10:15:30.123
    s.get(11..23).unwrap_or(&s).to_string()
}

/// The line of one event, or JSON.
pub fn event_line(e: &Event, json: bool) -> String {
    if json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    let t = clock();
    match e {
        Event::Launched {
            agent,
            trigger,
            tier,
            pid,
            argv,
            ..
        } => {
            format!(
                "[{t}] launched  {agent}/{trigger}  tier={tier} pid={pid}  {}",
                shell_words::join(argv)
            )
        }
        Event::Warning {
            agent,
            limit,
            level,
            value,
            max,
            ..
        } => {
            let pct = if *max > 0.0 { value / max * 100.0 } else { 0.0 };
            let (v, m) = if *limit == "memory" {
                (bytes(*value as u64), bytes(*max as u64))
            } else {
                (format!("{value:.1}s"), format!("{max:.0}s"))
            };
            format!(
                "[{t}] warning   {agent}  {limit} at {pct:.0}% of its limit ({v} of {m}) [{}]",
                level.to_uppercase()
            )
        }
        Event::Killing {
            agent,
            by,
            reason,
            signal,
            ..
        } => {
            let by = serde_json::to_value(by)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            format!(
                "[{t}] killing   {agent}  by {by}: {} (SIG{signal}, whole tree)",
                reason.as_str()
            )
        }
        Event::Exited { record } => {
            let end = match (&record.exit_code, &record.signal) {
                (Some(c), _) => format!("code={c}"),
                (None, Some(s)) => format!("signal={s}"),
                _ => "not started".to_string(),
            };
            let mut l = format!(
                "[{t}] exited    {}/{}  {end} reason={} {:.2}s peak {} cpu {:.2}s",
                record.agent,
                record.trigger,
                record.reason.as_str(),
                record.duration_secs,
                bytes(record.peak_memory_bytes),
                record.cpu_seconds
            );
            if let Some(m) = &record.message {
                l.push_str(&format!("  ({m})"));
            }
            l
        }
    }
}

/// The summary table printed when every run has ended.
pub fn summary(records: &[Arc<RunRecord>]) -> String {
    let head = [
        "AGENT", "TRIGGER", "TIER", "PID", "EXIT", "REASON", "TIME", "PEAK MEM", "CPU", "PROCS",
    ];
    let rows: Vec<[String; 10]> = records
        .iter()
        .map(|r| {
            [
                r.agent.clone(),
                r.trigger.clone(),
                r.tier.to_string(),
                r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                match (&r.exit_code, &r.signal) {
                    (Some(c), _) => c.to_string(),
                    (None, Some(s)) => s.clone(),
                    _ => "-".into(),
                },
                r.reason.as_str().to_string(),
                format!("{:.2}s", r.duration_secs),
                bytes(r.peak_memory_bytes),
                format!("{:.2}s", r.cpu_seconds),
                r.processes.to_string(),
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&head.map(String::from));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    for r in records {
        if !r.success() {
            out.push_str(&format!(
                "\n{}/{}: {}",
                r.agent,
                r.trigger,
                r.reason.as_str()
            ));
            if let Some(m) = &r.message {
                out.push_str(&format!(": {m}"));
            }
            out.push('\n');
            for l in r.stderr_tail.iter().rev().take(5).rev() {
                out.push_str(&format!("  stderr| {l}\n"));
            }
            out.push_str(&format!(
                "  logs: {} {}\n",
                r.stdout_log.display(),
                r.stderr_log.display()
            ));
        }
    }
    out
}

/// Prints events as they arrive until the stream closes or `stop` fires.
pub fn print_event(e: &Event, json: bool) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event_line(e, json));
    let _ = out.flush();
}
