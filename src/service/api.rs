//! What the service's API carries: the JSON bodies of its requests and answers, and the framing
//! of its output streams. `docs/api.json` (OpenAPI 3.1) describes the same for any client.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::supervisor::{RunId, RunRecord, RunState, RunStatus};
use crate::tier::SecurityTier;

/// `GET /v1/health`: who answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub pid: u32,
    pub version: String,
    pub data_dir: PathBuf,
    pub config_file: Option<PathBuf>,
    /// Runs the service holds in memory (live, and the last ones ended).
    pub runs: usize,
}

/// An agent file as the client read it: the service plans from its text, so a relative path in
/// a message still points where the user wrote it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentText {
    pub path: String,
    pub text: String,
}

/// The flags of `run` and `exec` that a launch carries, as the CLI takes them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaunchFlags {
    /// `--native`: consent to native execution, every agent on tier None.
    pub native: bool,
    pub sandbox_tier: Option<SecurityTier>,
    pub image: Option<String>,
    pub max_memory_mb: Option<u64>,
    pub max_cpu: Option<f64>,
    pub timeout_secs: Option<u64>,
    /// `--pass-env NAME`: host variables (from `env`) passed to the agents as secrets.
    pub pass_env: Vec<String>,
    /// `exec --sandbox LEVEL`.
    pub sandbox: Option<crate::tier::SandboxLevel>,
}

impl LaunchFlags {
    pub fn to_flags(&self) -> crate::plan::Flags {
        crate::plan::Flags {
            native: self.native,
            sandbox_tier: self.sandbox_tier,
            image: self.image.clone(),
            max_memory_mb: self.max_memory_mb,
            max_cpu: self.max_cpu,
            timeout: self.timeout_secs,
            pass_env: self.pass_env.clone(),
            sandbox: self.sandbox,
        }
    }

    pub fn from_flags(f: &crate::plan::Flags) -> LaunchFlags {
        LaunchFlags {
            native: f.native,
            sandbox_tier: f.sandbox_tier,
            image: f.image.clone(),
            max_memory_mb: f.max_memory_mb,
            max_cpu: f.max_cpu,
            timeout_secs: f.timeout,
            pass_env: f.pass_env.clone(),
            sandbox: f.sandbox,
        }
    }
}

/// `POST /v1/runs` (agent files, as `run --detach`) and `POST /v1/exec` (one command, as
/// `exec`). The service plans it under its own configuration and policy, with the client's
/// environment as the host's: only what `env_passthrough` and `pass_env` name is read from it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LaunchRequest {
    pub files: Vec<AgentText>,
    /// Triggers to fire (`--trigger`); none fires every `on start` and `on trigger` block.
    pub triggers: Vec<String>,
    /// `exec`: the command and its arguments.
    pub command: Vec<String>,
    /// `exec --code`: code for `native_execution.default_executable`.
    pub code: Option<String>,
    pub flags: LaunchFlags,
    pub env: BTreeMap<String, String>,
    /// `exec`: the agent reads a pipe the client feeds with `POST /v1/runs/{id}/stdin`
    /// (else /dev/null).
    pub stdin: bool,
}

/// One run a launch started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launched {
    pub run_id: RunId,
    pub agent: String,
    pub trigger: String,
}

/// `POST /v1/runs/{target}/kill`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KillRequest {
    /// TERM (the default: KILL after the grace period), KILL, INT, HUP, STOP, CONT.
    pub signal: Option<String>,
    /// One process of the run's tree instead of the whole tree.
    pub pid: Option<i32>,
}

/// The runs a kill reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Killed {
    pub run_ids: Vec<RunId>,
}

/// What `symbiont shutdown` stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stopped {
    pub runs: usize,
}

/// One row of `GET /v1/runs` (`symbiont ps`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub run_id: RunId,
    pub agent: String,
    pub trigger: String,
    pub tier: SecurityTier,
    pub state: RunState,
    pub pid: Option<i32>,
    pub argv: Vec<String>,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub processes: u64,
    pub elapsed_secs: f64,
    pub timeout_secs: Option<f64>,
    /// Why it ended, once it has.
    pub reason: Option<String>,
    pub exit_code: Option<i32>,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
}

impl RunView {
    pub fn of(s: &RunStatus) -> RunView {
        let r = s.record.as_deref();
        RunView {
            run_id: s.id,
            agent: s.agent.clone(),
            trigger: s.spec.trigger.clone(),
            tier: s.tier,
            state: s.state,
            pid: s.pid,
            argv: s.argv().to_vec(),
            cpu_percent: if r.is_some() { 0.0 } else { s.cpu_pct },
            memory_bytes: if r.is_some() { 0 } else { s.rss_bytes },
            peak_memory_bytes: r.map_or(s.peak_rss_bytes, |r| r.peak_memory_bytes),
            memory_limit_bytes: s.limits.memory_bytes,
            processes: if r.is_some() { 0 } else { s.processes },
            elapsed_secs: r.map_or_else(|| s.started.elapsed().as_secs_f64(), |r| r.duration_secs),
            timeout_secs: s.limits.timeout.map(|t| t.as_secs_f64()),
            reason: r.map(|r| r.reason.as_str().to_string()),
            exit_code: r.and_then(|r| r.exit_code),
            stdout_log: s.stdout_log(),
            stderr_log: s.stderr_log(),
        }
    }
}

/// `GET /v1/dashboard`: what an attached dashboard draws, as its own rows: the runs that
/// changed since the client's last look (every run on the first), the selected one always,
/// with its history for the charts, and the tail of its chosen stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DashboardView {
    pub rows: Vec<crate::tui::app::AgentRow>,
    /// Every run the service holds, in order: a row not sent is as the client last saw it.
    #[serde(default)]
    pub ids: Vec<RunId>,
    /// Ask with `since` = this next time: every change up to here is in this answer.
    #[serde(default)]
    pub stamp: u64,
    pub tail: Vec<String>,
    /// The service's sampling interval.
    pub refresh_ms: u64,
}

/// What went wrong, as every error answer carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// For a person: what and why, and what to do.
    pub error: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A malformed request, a bad agent file or flag.
    BadRequest,
    /// Policy refused it (native execution disabled, a program not allowed).
    Refused,
    /// The program to run was not found.
    ProgramNotFound,
    /// No run or agent by that name.
    NotFound,
    /// The run has ended already.
    Ended,
    /// The host cannot do it now (a container daemon missing, a full disk).
    Unavailable,
    /// The request has no valid token (TCP).
    Unauthorized,
}

/// A message inside an output stream (frame [`STREAM_MESSAGE`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamMessage {
    /// The run started (first in an `exec` stream).
    Launched(Launched),
    /// The run ended (last in an `exec` stream).
    Record(Box<RunRecord>),
    /// The launch was refused: nothing ran.
    Error(ApiError),
}

/// Frame of the agent's stdout.
pub const STREAM_STDOUT: u8 = 1;
/// Frame of the agent's stderr.
pub const STREAM_STDERR: u8 = 2;
/// Frame of a JSON [`StreamMessage`].
pub const STREAM_MESSAGE: u8 = 3;
/// The media type of framed output streams.
pub const FRAMED: &str = "application/vnd.symbiont.stream";

/// One frame of an output stream, as Docker multiplexes attach streams: one byte of stream
/// kind, three zero bytes, the payload's length as a big-endian u32, the payload.
pub fn frame(kind: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(8 + data.len());
    b.put_u8(kind);
    b.put_slice(&[0, 0, 0]);
    b.put_u32(data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

/// A [`StreamMessage`] frame.
pub fn message_frame(m: &StreamMessage) -> Bytes {
    frame(
        STREAM_MESSAGE,
        &serde_json::to_vec(m).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// Splits a framed stream back into frames, whatever the chunks it arrives in.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Option<(u8, Bytes)> {
        if self.buf.len() < 8 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < 8 + len {
            return None;
        }
        let kind = self.buf[0];
        self.buf.advance(8);
        Some((kind, self.buf.split_to(len).freeze()))
    }

    /// Bytes of an unfinished frame left at the end.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_chunking() {
        let frames = [
            frame(STREAM_STDOUT, b"hello\n"),
            frame(STREAM_STDERR, b""),
            frame(STREAM_MESSAGE, br#"{"x":1}"#),
        ];
        let all: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        for size in 1..all.len() {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for c in all.chunks(size) {
                d.push(c);
                while let Some(f) = d.next_frame() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 3, "chunks of {size}");
            assert_eq!(got[0], (STREAM_STDOUT, Bytes::from_static(b"hello\n")));
            assert_eq!(got[1], (STREAM_STDERR, Bytes::new()));
            assert_eq!(got[2].0, STREAM_MESSAGE);
            assert_eq!(d.pending(), 0);
        }
    }
}
