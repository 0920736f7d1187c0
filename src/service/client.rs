//! The clients' side of the service's API: every command that talks to the service (`ps`,
//! `kill`, `logs`, `history`, `shutdown`, `run --detach`, `exec`) goes through [`Client`], and
//! so can a Rust program:
//!
//! ```no_run
//! # async fn f() -> Result<(), symbiont::service::ClientError> {
//! let client = symbiont::service::Client::connect().await?;
//! for run in client.list().await? {
//!     println!("{} {} {:?}", run.run_id, run.agent, run.state);
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::*;
use crate::supervisor::{RunId, RunRecord};

type ReqBody = BoxBody<Bytes, io::Error>;

/// Why a request to the service failed.
#[derive(Debug)]
pub enum ClientError {
    /// No service answers on the socket (none runs for this user).
    NoService { socket: PathBuf, source: io::Error },
    /// The service refused the request; its answer says why.
    Api { status: u16, error: ApiError },
    /// The connection broke, or the answer was not what the API describes.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NoService { socket, source } => write!(
                f,
                "no symbiont service runs for this user ({}: {source}); `symbiont serve` starts one",
                socket.display()
            ),
            ClientError::Api { error, .. } => f.write_str(error.error.trim_end()),
            ClientError::Protocol(m) => write!(f, "the service's answer: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The kind of refusal, when the service refused.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Api { error, .. } => Some(error.kind),
            _ => None,
        }
    }
}

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// A handle on this user's service (or the one at a given socket). Cheap: each request opens
/// its own connection.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// The service at `socket`, not yet contacted.
    pub fn at(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    /// This user's service, checked to answer.
    pub async fn connect() -> Result<Client, ClientError> {
        let c = Client::at(super::socket_path());
        c.health().await?;
        Ok(c)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(&self, req: Request<ReqBody>) -> Result<Response<Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::NoService {
                socket: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(protocol)?;
        tokio::spawn(conn);
        let res = sender.send_request(req).await.map_err(protocol)?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.map_err(protocol)?;
        let error = serde_json::from_slice::<ApiError>(&body.to_bytes())
            .map_err(|_| ClientError::Protocol(format!("HTTP {status} without an error body")))?;
        Err(ClientError::Api { status, error })
    }

    fn request(method: Method, path: &str, body: ReqBody) -> Request<ReqBody> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "symbiont")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(body)
            .expect("a valid request")
    }

    fn json_body(v: &impl Serialize) -> ReqBody {
        let bytes = serde_json::to_vec(v).unwrap_or_default();
        Full::new(Bytes::from(bytes))
            .map_err(|never| match never {})
            .boxed()
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let body = match body {
            Some(b) => Self::json_body(&b),
            None => Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        };
        let res = self.send(Self::request(method, path, body)).await?;
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(protocol)?
            .to_bytes();
        serde_json::from_slice(&bytes).map_err(protocol)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    /// Every run the service holds: live ones, and the last ones that ended.
    pub async fn list(&self) -> Result<Vec<RunView>, ClientError> {
        self.call(Method::GET, "/v1/runs", None::<&()>).await
    }

    /// Starts the agents of `req.files`; they outlive this client.
    pub async fn launch(&self, req: &LaunchRequest) -> Result<Vec<Launched>, ClientError> {
        self.call(Method::POST, "/v1/runs", Some(req)).await
    }

    /// Starts one command and streams its output: a `launched` message, stdout and stderr
    /// frames as written, and its `record` last.
    pub async fn exec(&self, req: &LaunchRequest) -> Result<FrameStream, ClientError> {
        let res = self
            .send(Self::request(
                Method::POST,
                "/v1/exec",
                Self::json_body(req),
            ))
            .await?;
        Ok(FrameStream::new(res.into_body()))
    }

    /// Feeds an `exec` run's stdin (launched with `stdin: true`) from `chunks`, closing it at
    /// their end.
    pub async fn send_stdin(
        &self,
        id: RunId,
        chunks: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<(), ClientError> {
        let stream = futures_util::stream::unfold(chunks, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, io::Error>(Frame::data(b)), rx))
        });
        let body = StreamBody::new(stream).boxed();
        let path = format!("/v1/runs/{id}/stdin");
        self.send(Self::request(Method::POST, &path, body)).await?;
        Ok(())
    }

    /// A signal to every live run of `target` (a run id or an agent name).
    pub async fn kill(&self, target: &str, req: &KillRequest) -> Result<Killed, ClientError> {
        let path = format!("/v1/runs/{}/kill", encode(target));
        self.call(Method::POST, &path, Some(req)).await
    }

    /// A run's logs (the latest run of an agent): `stream` is stdout, stderr or both; with
    /// `follow`, until the run ends.
    pub async fn logs(
        &self,
        target: &str,
        stream: &str,
        follow: bool,
    ) -> Result<FrameStream, ClientError> {
        let path = format!(
            "/v1/runs/{}/logs?stream={}&follow={follow}",
            encode(target),
            encode(stream)
        );
        let res = self
            .send(Self::request(Method::GET, &path, Self::json_body(&())))
            .await?;
        Ok(FrameStream::new(res.into_body()))
    }

    /// The records of ended runs, oldest first (the newest `limit`).
    pub async fn history(&self, limit: Option<usize>) -> Result<Vec<RunRecord>, ClientError> {
        let path = match limit {
            Some(n) => format!("/v1/history?limit={n}"),
            None => "/v1/history".into(),
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// What an attached dashboard draws: every run as a row, `selected`'s with its history,
    /// and the tail of its stdout (or `stderr`).
    /// With `since` (the `stamp` of the last answer), only the runs changed since come back.
    pub async fn dashboard(
        &self,
        selected: Option<RunId>,
        stderr: bool,
        since: Option<u64>,
    ) -> Result<DashboardView, ClientError> {
        let stream = if stderr { "stderr" } else { "stdout" };
        let mut path = format!("/v1/dashboard?stream={stream}");
        if let Some(id) = selected {
            path.push_str(&format!("&selected={id}"));
        }
        if let Some(s) = since {
            path.push_str(&format!("&since={s}"));
        }
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Stops every agent, then the service.
    pub async fn shutdown(&self) -> Result<Stopped, ClientError> {
        self.call(Method::POST, "/v1/shutdown", None::<&()>).await
    }

    /// Every event from now on, as JSON values, one per line of the stream.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let res = self
            .send(Self::request(
                Method::GET,
                "/v1/events",
                Self::json_body(&()),
            ))
            .await?;
        Ok(EventStream {
            body: res.into_body(),
            buf: Vec::new(),
        })
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A framed output stream of the service (see [`frame`]).
pub struct FrameStream {
    body: Incoming,
    de: Deframer,
}

impl FrameStream {
    fn new(body: Incoming) -> FrameStream {
        FrameStream {
            body,
            de: Deframer::default(),
        }
    }

    /// The next frame: its kind ([`STREAM_STDOUT`], [`STREAM_STDERR`], [`STREAM_MESSAGE`])
    /// and payload; `None` at the end.
    pub async fn next(&mut self) -> Option<Result<(u8, Bytes), ClientError>> {
        loop {
            if let Some(f) = self.de.next_frame() {
                return Some(Ok(f));
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.de.push(&data);
                    }
                }
                Some(Err(e)) => return Some(Err(protocol(e))),
                None if self.de.pending() > 0 => {
                    return Some(Err(protocol("the stream ended inside a frame")))
                }
                None => return None,
            }
        }
    }

    /// A message frame's content.
    pub fn message(data: &[u8]) -> Result<StreamMessage, ClientError> {
        serde_json::from_slice(data).map_err(protocol)
    }
}

/// The service's event stream: one JSON object per event.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` once the service closed the stream.
    pub async fn next(&mut self) -> Option<Result<serde_json::Value, ClientError>> {
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf) {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Some(serde_json::from_slice(&line).map_err(protocol));
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some(Err(protocol(e))),
                None => return None,
            }
        }
    }
}

/// Whether a request failed because no service runs (as opposed to a refusal).
pub fn no_service(e: &ClientError) -> bool {
    matches!(e, ClientError::NoService { .. })
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::encode("Worker 1/x"), "Worker%201%2Fx");
        assert_eq!(super::encode("a-b_c.d~e"), "a-b_c.d~e");
    }
}
