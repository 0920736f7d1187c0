//! The headless client: one line per event and a summary table, or JSON Lines and a final
//! JSON array of run records; `exec`'s single run with the command's own output; `check`'s
//! report. It decides the exit status of what it ran.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::{error::RecvError, Receiver};

use crate::config::LoadedConfig;
use crate::plan::{self, Host, PlanError, SourceFile};
use crate::report::{bytes, exec_status, exit_code, visible};
use crate::supervisor::{
    Event, LaunchError, OutputChunk, Reason, RunIo, RunRecord, RunSpec, Supervisor,
    SupervisorOptions,
};

fn clock() -> String {
    let s = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    // 2026-11-24T10:15:30.123Z -> 10:15:30.123
    s.get(11..23).unwrap_or(&s).to_string()
}

/// The line of one event, or JSON. What an agent wrote in it (a record's message quotes its
/// stderr) is shown through `visible`, as is all of the line: it reaches a terminal.
pub fn event_line(e: &Event, json: bool) -> String {
    if json {
        return serde_json::to_string(e).unwrap_or_default();
    }
    visible(&human_line(e)).into_owned()
}

fn human_line(e: &Event) -> String {
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
            if let Some(m) = record.losses() {
                l.push_str(&format!("  {m}"));
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
                out.push_str(&format!(": {}", visible(m)));
            }
            if let Some(m) = r.losses() {
                out.push_str(&format!(": {m}"));
            }
            out.push('\n');
            // The agent's own output: shown, never interpreted by the operator's terminal.
            for l in r.stderr_tail.iter().rev().take(5).rev() {
                out.push_str(&format!("  stderr| {}\n", visible(l)));
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

/// Prints one event (a line, or JSON) on stdout.
pub fn print_event(e: &Event, json: bool) {
    let mut out = std::io::stdout().lock();
    // A reader of stdout that has gone is not ours to report.
    let _ = writeln!(out, "{}", event_line(e, json));
    let _ = out.flush();
}

/// Launches `specs`, prints events until every run has ended (SIGINT, SIGTERM or SIGHUP stop
/// them all), then the summary table and the audit log's path, or with `json` the JSON array
/// of run records. Returns the exit status: 0 when every run succeeded.
pub async fn run(sup: Supervisor, specs: Vec<RunSpec>, json: bool) -> Result<u8, LaunchError> {
    let events = sup.subscribe();
    for spec in specs {
        if let Err(e) = sup.launch(spec) {
            sup.shutdown().await;
            return Err(e);
        }
    }
    let records = supervise(&sup, events, json).await;
    if json {
        println!(
            "{}",
            serde_json::to_string(&records.iter().map(|r| &**r).collect::<Vec<_>>())
                .unwrap_or_default()
        );
    } else {
        println!();
        print!("{}", summary(&records));
        println!("audit log: {}", sup.audit_path().display());
    }
    Ok(exit_code(&records).max(audit_status(&sup)))
}

/// 1 (said on stderr) when audit lines could not be written, else 0.
fn audit_status(sup: &Supervisor) -> u8 {
    match sup.audit_failures() {
        Some((n, e)) => {
            eprintln!(
                "symbiont: {n} audit line(s) could not be written to {}: {e}",
                sup.audit_path().display()
            );
            1
        }
        None => 0,
    }
}

/// Prints events until every run has ended (judged by the runs themselves, not by counting
/// events, which a lagging channel may drop); the operator's stop requests stop them all
/// (see [`until_done`]).
async fn supervise(
    sup: &Supervisor,
    mut events: Receiver<Event>,
    json: bool,
) -> Vec<Arc<RunRecord>> {
    let finished = async {
        let all = sup.wait_all();
        tokio::pin!(all);
        loop {
            tokio::select! {
                r = &mut all => break r,
                e = events.recv() => match e {
                    Ok(e) => print_event(&e, json),
                    Err(RecvError::Lagged(n)) => {
                        if !json {
                            eprintln!("symbiont: {n} events were not shown (output too slow)");
                        }
                    }
                    Err(_) => {}
                },
            }
        }
    };
    let records = until_done(sup, finished).await;
    // The last events (the final exits) may still be queued.
    while let Ok(e) = events.try_recv() {
        print_event(&e, json);
    }
    records
}

/// How long the supervisor still waits for its runs' records once it killed every agent with
/// SIGKILL; then it leaves, and dropping it takes whatever is left.
const AFTER_KILL_ALL: Duration = Duration::from_secs(1);

/// Waits for `finished` (every run's record) while serving the operator's stop requests
/// (SIGINT, SIGTERM, SIGHUP; Ctrl-C and friends on Windows): the first stops every agent (TERM,
/// then KILL after its grace period, whatever the agent does), the second kills every agent at
/// once and the supervisor leaves within [`AFTER_KILL_ALL`], as a second Ctrl-C does in docker.
/// Messages go to stderr.
pub async fn until_done(
    sup: &Supervisor,
    finished: impl std::future::Future<Output = Vec<Arc<RunRecord>>>,
) -> Vec<Arc<RunRecord>> {
    tokio::pin!(finished);
    let mut signals = crate::stop::StopSignals::new().ok();
    let mut seen = 0u32;
    let mut leave_at: Option<tokio::time::Instant> = None;
    loop {
        let stop = async {
            match signals.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let leave = async {
            match leave_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = &mut finished => return r,
            _ = stop => {
                seen += 1;
                if seen == 1 {
                    eprintln!("symbiont: stopping every agent (TERM, KILL after the grace period; again to kill at once)");
                    for id in sup.run_ids() {
                        sup.kill(id);
                    }
                } else {
                    eprintln!("symbiont: killing every agent now (SIGKILL)");
                    sup.kill_all_now();
                    leave_at.get_or_insert(tokio::time::Instant::now() + AFTER_KILL_ALL);
                }
            }
            _ = leave => {
                eprintln!("symbiont: not every run ended {AFTER_KILL_ALL:?} after SIGKILL; leaving");
                return sup.ended();
            }
        }
    }
}

/// Runs one command: this process's stdin reaches it, its own stdout and stderr stream through
/// as it writes them (events other than its launch and exit go to stderr), or with `json` its
/// run record is printed. A stop request kills it (see [`until_done`]). Returns the exit status
/// of [`exec_status`].
pub async fn exec(sup: Supervisor, spec: RunSpec, json: bool) -> Result<u8, LaunchError> {
    sup.preflight(std::slice::from_ref(&spec)).await?;
    let mut events = sup.subscribe();
    let stdin = crate::process::stdin_for_agent().ok();
    // With --json, stdout is the record's: the output stays in the logs and the record's tails.
    let (tx, rx) = tokio::sync::mpsc::channel(EXEC_CHUNKS);
    let output = (!json).then_some(tx);
    let id = sup.launch_with(spec, RunIo { stdin, output })?;
    // The reader of our stdout has gone (`symbiont exec -- yes | head -1`): as a pipe would,
    // that ends the agent, without a word.
    let reader_gone = std::sync::atomic::AtomicBool::new(false);
    // Events go to stderr here: stdout is the command's own output.
    let forward = async {
        while let Ok(e) = events.recv().await {
            let quiet = matches!(e, Event::Launched { .. } | Event::Exited { .. })
                || reader_gone.load(std::sync::atomic::Ordering::SeqCst);
            if !json && !quiet {
                eprintln!("{}", event_line(&e, false));
            }
            if matches!(e, Event::Exited { .. }) {
                break;
            }
        }
    };
    let finished = async {
        let gone = || {
            reader_gone.store(true, std::sync::atomic::Ordering::SeqCst);
            sup.kill(id);
        };
        tokio::join!(forward, copy_output(rx, gone));
        sup.wait_all().await
    };
    let records = until_done(&sup, finished).await;
    let Some(r) = records.first() else {
        return Ok(crate::report::FAILED);
    };
    if reader_gone.load(std::sync::atomic::Ordering::SeqCst) {
        return Ok(141);
    }
    exec_report(r, json);
    let code = exec_status(r);
    // Lost audit lines make a command that succeeded fail, as lost output does.
    Ok(if code == 0 && audit_status(&sup) != 0 {
        crate::report::FAILED
    } else {
        code
    })
}

/// What `exec` says once its command has ended: with `json` the record on stdout; else, on
/// stderr, what was lost and how the run ended when it did not exit on its own.
pub fn exec_report(r: &RunRecord, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        // The record says it all, unless symbiont itself failed (125): then stderr says why.
        if exec_status(r) != crate::report::FAILED {
            return;
        }
    }
    if let Some(m) = r.losses() {
        eprintln!("symbiont: {m}");
    }
    if !r.success() && r.reason != Reason::Exited {
        eprintln!(
            "symbiont: {} ({}){}",
            r.reason.as_str(),
            r.signal.as_deref().unwrap_or("-"),
            r.message
                .as_deref()
                .map(|m| format!(": {}", visible(m)))
                .unwrap_or_default()
        );
    } else if r.exit_code.is_none() && r.signal.is_none() && !r.success() {
        // Ended without a status of its own (a VM whose guest wrote no result): why, from here.
        let m = r.message.as_deref();
        eprintln!(
            "symbiont: {}",
            visible(m.unwrap_or("the run ended without an exit status"))
        );
    }
}

/// Chunks of output in flight between an `exec`'d agent and this process's stdout: with the
/// pipe's own megabyte, what a slow reader lets pile up.
const EXEC_CHUNKS: usize = 16;

/// Writes the agent's output to this process's stdout and stderr as it arrives, until the run
/// ends. When stdout's reader goes away (a broken pipe), calls `broken_pipe` and drops the rest
/// here (the logs keep it).
async fn copy_output(mut rx: tokio::sync::mpsc::Receiver<OutputChunk>, broken_pipe: impl FnOnce()) {
    let writer = StdWriter::start();
    while let Some(c) = rx.recv().await {
        if !writer.write(c.stderr, c.data).await {
            rx.close();
            broken_pipe();
            break;
        }
    }
    writer.finish().await;
}

/// This process's stdout and stderr, written by a thread of their own: a blocking write per
/// chunk, with no hop to a thread pool (the pace of `exec`'s output is the reader's), and a
/// flush whenever no more output waits (a partial line shows at once).
pub struct StdWriter {
    tx: tokio::sync::mpsc::Sender<(bool, bytes::Bytes)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StdWriter {
    pub fn start() -> StdWriter {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(bool, bytes::Bytes)>(4);
        let thread = std::thread::Builder::new()
            .name("symbiont-output".into())
            .spawn(move || {
                // Locked per chunk: the event lines of `exec` go to stderr meanwhile.
                let (out, err) = (std::io::stdout(), std::io::stderr());
                // Stdout unbuffered, as stderr is: std's line buffering looked for the last
                // newline in every chunk, a scan of all the output (12 % of the CPU of 1 GiB
                // through `exec`).
                // Not on a terminal, whose reader wants lines (and where Windows converts
                // text for the console).
                let _ = out.lock().flush();
                let mut raw = if std::io::IsTerminal::is_terminal(&out) {
                    None
                } else {
                    unbuffered_stdout()
                };
                while let Some((stderr, data)) = rx.blocking_recv() {
                    let (mut o, mut e);
                    let to: &mut dyn Write = if stderr {
                        e = err.lock();
                        &mut e
                    } else {
                        // Held for the raw write too: nothing else printed lands in a chunk.
                        o = out.lock();
                        match raw.as_mut() {
                            Some(f) => f,
                            None => &mut o,
                        }
                    };
                    let mut wrote = to.write_all(&data);
                    if wrote.is_ok() && rx.is_empty() {
                        wrote = to.flush();
                    }
                    // Our stdout's reader has gone: the receiver's end tells the sender.
                    if !stderr && wrote.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
                        return;
                    }
                }
                let _ = (out.lock().flush(), err.lock().flush());
            })
            .ok();
        StdWriter { tx, thread }
    }

    /// Hands one chunk to the writer, waiting while it is behind; false once stdout's reader
    /// has gone.
    pub async fn write(&self, stderr: bool, data: bytes::Bytes) -> bool {
        self.thread.is_some() && self.tx.send((stderr, data)).await.is_ok()
    }

    /// Waits until everything handed over is written.
    pub async fn finish(self) {
        drop(self.tx);
        if let Some(t) = self.thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// This process's stdout as a file of its own (a duplicate of the descriptor or handle), whose
/// writes go straight to the system; `None` where it cannot be duplicated.
fn unbuffered_stdout() -> Option<std::fs::File> {
    #[cfg(unix)]
    let owned = std::os::fd::AsFd::as_fd(&std::io::stdout()).try_clone_to_owned();
    #[cfg(windows)]
    let owned = std::os::windows::io::AsHandle::as_handle(&std::io::stdout()).try_clone_to_owned();
    owned.ok().map(std::fs::File::from)
}

/// `symbiont check`: the configuration file, every effective setting with its origin, each
/// agent file's agents with their effective tier and triggers (the files are planned, so a
/// refusal shows here as it would at `run`), and the enforcement mechanisms of this machine.
/// With `json`, one JSON object on stdout instead of the text (`config_file`, `settings`,
/// `not_used`, `allowed_executables`, `agent_files`, `enforcement`, `ok`); a refusal prints no
/// object, only the error. Writes nothing. Needs a Tokio runtime.
pub fn check(loaded: &LoadedConfig, files: &[PathBuf], json: bool) -> Result<(), PlanError> {
    let config_file = loaded.file.as_ref().map(|p| p.display().to_string());
    // What each allowed name really runs: a name trusts this PATH, an absolute entry pins a file.
    let path = std::env::var_os("PATH");
    let allowed = crate::policy::Allowlist::new(
        &loaded.config.native_execution.allowed_executables,
        path.as_deref(),
    )
    .explain();
    if !json {
        println!(
            "config file: {}",
            config_file.as_deref().unwrap_or("none (built-in defaults)")
        );
        print!("{}", loaded.render_effective());
        println!("allowed executables on this PATH:");
        for l in &allowed {
            println!("  {l}");
        }
    }
    let files = files
        .iter()
        .map(|f| SourceFile::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut agent_files = Vec::new();
    for f in &files {
        if !json {
            println!(
                "agent file {}: {} agent(s)",
                f.file.path.display(),
                f.file.agents.len()
            );
        }
        let mut agents = Vec::new();
        for ag in &f.file.agents {
            let triggers: Vec<&str> = ag.handlers.iter().map(|h| h.kind.name()).collect();
            let tier = plan::tier_for(loaded, Some(ag));
            // Refusals are reported by the plan below, at their place in the file.
            let sandbox = plan::agent_sandbox(loaded, &Host::checking(), ag).ok();
            let confines = sandbox.as_ref().map(|c| c.summary());
            if !json {
                let sandbox = match &sandbox {
                    Some(c) => format!(" sandbox={} (confines {})", c.level, c.summary()),
                    None => String::new(),
                };
                println!(
                    "  {} tier={} triggers=[{}]{sandbox}",
                    ag.name,
                    tier,
                    triggers.join(", ")
                );
            }
            agents.push(serde_json::json!({
                "name": ag.name,
                "tier": tier.to_string(),
                "triggers": triggers,
                "sandbox": sandbox.as_ref().map(|c| c.level),
                "confines": confines,
            }));
        }
        agent_files.push(serde_json::json!({
            "path": f.file.path.display().to_string(),
            "agents": agents,
        }));
    }
    if !files.is_empty() {
        plan::plan_runs(loaded, &[], &files, &Host::checking())?;
    }
    // The mechanisms only: no data directory, no audit log (`check` writes nothing).
    let enforcement =
        match Supervisor::mechanisms_for(&SupervisorOptions::from_config(&loaded.config)) {
            Ok(m) => m,
            Err(e) => vec![format!("supervisor cannot start: {e}")],
        };
    if json {
        let out = serde_json::json!({
            "config_file": config_file,
            "settings": loaded.effective_json(),
            "not_used": loaded.unused,
            "allowed_executables": allowed,
            "agent_files": agent_files,
            "enforcement": enforcement,
            "ok": true,
        });
        println!("{out}");
        return Ok(());
    }
    println!("enforcement on this machine:");
    for m in enforcement {
        println!("  {m}");
    }
    println!("ok");
    Ok(())
}
