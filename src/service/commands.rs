//! The commands that talk to the service, as the CLI runs them: each is a thin user of
//! [`Client`] that prints for a person (or JSON) and returns its exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use super::api::*;
use super::client::{Client, ClientError, FrameStream};
use crate::report::{bytes, exec_status, EXEC_NOT_FOUND, EXEC_REFUSED, FAILED};

/// How a command reports a failed request: the message, and exit 1 (the service refused or
/// is not there) or 2 (a bad request).
pub fn failed(e: &ClientError) -> u8 {
    eprintln!("symbiont: {e}");
    match e.kind() {
        Some(ErrorKind::BadRequest) => 2,
        _ => 1,
    }
}

/// The client's environment, sent with a launch: the service reads only what its
/// `env_passthrough` and the request's `pass_env` name.
pub fn client_env() -> std::collections::BTreeMap<String, String> {
    std::env::vars().collect()
}

/// `symbiont ps`: the service's runs.
pub async fn ps(client: &Client, json: bool) -> u8 {
    let runs = match client.list().await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return 0;
    }
    println!(
        "{:<20} {:>6} {:<9} {:>8} {:>6} {:>10} {:>9} {:<18} COMMAND",
        "AGENT", "RUN", "STATE", "PID", "CPU%", "MEM", "ELAPSED", "REASON"
    );
    for r in &runs {
        let state = serde_json::to_value(r.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mem = if r.reason.is_some() {
            format!("^{}", bytes(r.peak_memory_bytes))
        } else {
            bytes(r.memory_bytes)
        };
        let reason = match (&r.reason, r.exit_code) {
            (Some(reason), Some(c)) if reason == "exited" => format!("exited {c}"),
            (Some(reason), _) => reason.clone(),
            (None, _) => "-".into(),
        };
        println!(
            "{:<20} {:>6} {:<9} {:>8} {:>6.1} {:>10} {:>9} {:<18} {}",
            truncate(&r.agent, 20),
            r.run_id,
            state,
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.cpu_percent,
            mem,
            elapsed(r.elapsed_secs),
            reason,
            crate::report::visible(&shell_words::join(&r.argv)),
        );
    }
    0
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn elapsed(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{secs:.1}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `symbiont kill TARGET [--signal NAME]`.
pub async fn kill(client: &Client, target: &str, signal: Option<String>) -> u8 {
    let req = KillRequest { signal, pid: None };
    match client.kill(target, &req).await {
        Ok(k) => {
            let ids: Vec<String> = k.run_ids.iter().map(|i| i.to_string()).collect();
            eprintln!(
                "symbiont: {} sent to run {} (whole tree)",
                req.signal.as_deref().unwrap_or("TERM"),
                ids.join(", ")
            );
            0
        }
        Err(e) => failed(&e),
    }
}

/// Writes a framed stream's stdout and stderr to ours until it ends. Returns the messages it
/// carried, and whether our stdout's reader went away (a broken pipe).
async fn copy_frames(
    frames: &mut FrameStream,
    mut on_message: impl FnMut(StreamMessage),
) -> Result<bool, ClientError> {
    let writer = crate::headless::StdWriter::start();
    while let Some(f) = frames.next().await {
        let (kind, data) = f?;
        let written = match kind {
            STREAM_STDOUT | STREAM_STDERR => writer.write(kind == STREAM_STDERR, data).await,
            STREAM_MESSAGE => {
                on_message(FrameStream::message(&data)?);
                true
            }
            _ => true,
        };
        if !written {
            return Ok(true);
        }
    }
    writer.finish().await;
    Ok(false)
}

/// `symbiont logs TARGET [--follow] [--stream S]`.
pub async fn logs(client: &Client, target: &str, stream: &str, follow: bool) -> u8 {
    let mut frames = match client.logs(target, stream, follow).await {
        Ok(f) => f,
        Err(e) => return failed(&e),
    };
    match copy_frames(&mut frames, |_| {}).await {
        Ok(_) => 0,
        Err(e) => failed(&e),
    }
}

/// `symbiont history [--json] [--limit N]`.
pub async fn history(client: &Client, json: bool, limit: Option<usize>) -> u8 {
    let records = match client.history(limit).await {
        Ok(r) => r,
        Err(e) => return failed(&e),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
        return 0;
    }
    println!(
        "{:<24} {:<20} {:>6} {:<18} {:>5} {:>9} {:>10} COMMAND",
        "ENDED", "AGENT", "RUN", "REASON", "EXIT", "DURATION", "PEAK MEM"
    );
    for r in &records {
        println!(
            "{:<24} {:<20} {:>6} {:<18} {:>5} {:>9} {:>10} {}",
            r.ended_at,
            truncate(&r.agent, 20),
            r.run_id,
            r.reason.as_str(),
            r.exit_code.map_or("-".into(), |c| c.to_string()),
            elapsed(r.duration_secs),
            bytes(r.peak_memory_bytes),
            crate::report::visible(&shell_words::join(&r.argv)),
        );
    }
    0
}

/// `symbiont shutdown`: every agent stopped, then the service.
pub async fn shutdown(client: &Client) -> u8 {
    match client.shutdown().await {
        Ok(s) => {
            eprintln!(
                "symbiont: the service stopped {} running agent(s) and exited",
                s.runs
            );
            0
        }
        Err(e) => failed(&e),
    }
}

/// `symbiont run FILE... --detach`: hands the agents to the service (started when none runs)
/// and returns.
pub async fn detach(
    files: &[PathBuf],
    triggers: Vec<String>,
    flags: LaunchFlags,
    config: Option<&Path>,
) -> u8 {
    let mut texts = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(text) => texts.push(AgentText {
                path: f.display().to_string(),
                text,
            }),
            Err(e) => {
                eprintln!("symbiont: cannot read agent file {}: {e}", f.display());
                return 2;
            }
        }
    }
    let client = match ensure_service(config).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("symbiont: {e}");
            return 1;
        }
    };
    let req = LaunchRequest {
        files: texts,
        triggers,
        flags,
        env: client_env(),
        ..LaunchRequest::default()
    };
    match client.launch(&req).await {
        Ok(runs) => {
            for r in &runs {
                println!("{}\t{}\t{}", r.run_id, r.agent, r.trigger);
            }
            eprintln!(
                "symbiont: {} run(s) handed to the service (`symbiont ps`, `symbiont attach`)",
                runs.len()
            );
            0
        }
        Err(e) => failed(&e),
    }
}

/// This user's service, started in the background when none answers: `symbiont serve` in its
/// own session (no terminal's hangup reaches it), its output in `service.log` of its directory.
pub async fn ensure_service(config: Option<&Path>) -> Result<Client, String> {
    let client = Client::at(super::socket_path());
    match client.health().await {
        Ok(_) => return Ok(client),
        Err(e) if super::client::no_service(&e) => {}
        Err(e) => return Err(e.to_string()),
    }
    let dir = super::runtime_dir();
    super::prepare_runtime_dir(&dir).map_err(|e| format!("the service's directory: {e}"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("service.log"))
        .map_err(|e| format!("{}: {e}", dir.join("service.log").display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("serve");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    crate::process::detach_session(&mut cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the service: {e}"))?;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if client.health().await.is_ok() {
            // Reaped by whoever adopts it once this client exits.
            drop(child);
            return Ok(client);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let tail = std::fs::read_to_string(dir.join("service.log")).unwrap_or_default();
            let last: Vec<&str> = tail.lines().rev().take(5).collect();
            return Err(format!(
                "the service exited at its start ({st}): {}",
                last.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        if std::time::Instant::now() > until {
            return Err(format!(
                "the service did not answer within 10 s (see {})",
                dir.join("service.log").display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `symbiont exec` through the service: the same wrapper as standalone (output streamed,
/// stdin passed, timeout(1)'s exit codes), and the run shows in `ps` and the dashboard.
pub async fn exec(client: &Client, req: LaunchRequest, json: bool) -> u8 {
    let mut req = req;
    req.stdin = true;
    let mut frames = match client.exec(&req).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("symbiont: {e}");
            return match e.kind() {
                Some(ErrorKind::Refused) => EXEC_REFUSED,
                Some(ErrorKind::ProgramNotFound) => EXEC_NOT_FOUND,
                _ => FAILED,
            };
        }
    };
    // The first frame says which run it is.
    let id = match frames.next().await {
        Some(Ok((STREAM_MESSAGE, m))) => match FrameStream::message(&m) {
            Ok(StreamMessage::Launched(l)) => l.run_id,
            Ok(StreamMessage::Error(e)) => {
                eprintln!("symbiont: {}", e.error);
                return FAILED;
            }
            _ => return protocol_failure("no launch message"),
        },
        Some(Err(e)) => return protocol_failure(&e.to_string()),
        _ => return protocol_failure("no launch message"),
    };
    feed_stdin(client.clone(), id);
    let mut signals = crate::stop::StopSignals::new().ok();
    let mut stops = 0;
    let copying = async {
        let mut record = None;
        let broken = if json {
            // The record only: the output stays in the logs.
            while let Some(f) = frames.next().await {
                if let Ok((STREAM_MESSAGE, m)) = f {
                    if let Ok(StreamMessage::Record(r)) = FrameStream::message(&m) {
                        record = Some(r);
                    }
                }
            }
            false
        } else {
            copy_frames(&mut frames, |m| {
                if let StreamMessage::Record(r) = m {
                    record = Some(r);
                }
            })
            .await?
        };
        Ok::<_, ClientError>((broken, record))
    };
    tokio::pin!(copying);
    let copied = loop {
        tokio::select! {
            r = &mut copying => break r,
            _ = async { match signals.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                stops += 1;
                let signal = if stops == 1 { "TERM" } else { "KILL" };
                if let Err(e) = client.kill(&id.to_string(), &KillRequest { signal: Some(signal.into()), pid: None }).await {
                    tracing::warn!("run {id}: cannot ask the service to send {signal}: {e}");
                }
            }
        }
    };
    let record = match copied {
        Ok((true, _)) => {
            // Our reader went away: the command ends as it would in a pipe.
            if let Err(e) = client.kill(&id.to_string(), &KillRequest::default()).await {
                tracing::warn!("run {id}: cannot ask the service to stop it: {e}");
            }
            return 141;
        }
        Ok((false, record)) => record,
        Err(e) => return protocol_failure(&e.to_string()),
    };
    let Some(r) = record else {
        return protocol_failure("the stream ended without the run's record");
    };
    crate::headless::exec_report(&r, json);
    exec_status(&r)
}

fn protocol_failure(m: &str) -> u8 {
    eprintln!("symbiont: the service's answer: {m}");
    FAILED
}

/// Copies this process's stdin to run `id`'s, on a thread of its own (reading a terminal or a
/// pipe blocks): it ends at our stdin's end, or with this process.
fn feed_stdin(client: Client, id: crate::supervisor::RunId) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let reader = std::thread::Builder::new()
        .name("symbiont-stdin".into())
        .spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    if reader.is_ok() {
        tokio::spawn(async move {
            if let Err(e) = client.send_stdin(id, rx).await {
                tracing::debug!("run {id}: stdin no longer reaches it: {e}");
            }
        });
    }
}
