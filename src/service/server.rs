//! `symbiont serve`: the supervisor behind the API. Every request is planned under the
//! service's own configuration and policy, as `run` and `exec` plan theirs; the runs it starts
//! outlive the clients that asked for them and die with the service.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::api::*;
use crate::config::LoadedConfig;
use crate::plan::{self, Host, PlanError, SourceFile};
use crate::supervisor::{
    records, Control, LaunchError, RunId, RunIo, RunSpec, Scope, Sig, Supervisor,
};

/// Ended runs kept in memory for `ps`; older ones are read from their records on disk.
const KEEP_ENDED: usize = 100;
/// Events the service keeps for a client that falls behind.
const EVENT_BUFFER: usize = 256;
/// Largest JSON body accepted when the configuration's `[api] max_body_size` says nothing.
const DEFAULT_MAX_BODY: usize = 4 << 20;

struct Service {
    sup: Supervisor,
    loaded: LoadedConfig,
    /// The write ends of the stdin pipes of `exec` runs, until their client takes them.
    stdin: Mutex<HashMap<RunId, tokio::net::unix::pipe::Sender>>,
    /// False once shutting down: launches are refused.
    accepting: std::sync::atomic::AtomicBool,
    /// Asks the service to stop (`POST /v1/shutdown`).
    quit: watch::Sender<bool>,
    /// Set once every agent is stopped: streams end, and the server with them.
    closing: watch::Sender<bool>,
}

type Shared = Arc<Service>;

/// An error answer: its status and its JSON body.
struct Refusal(StatusCode, ApiError);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn refusal(kind: ErrorKind, error: impl Into<String>) -> Refusal {
    let status = match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Refused | ErrorKind::ProgramNotFound => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Ended => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
    };
    Refusal(
        status,
        ApiError {
            kind,
            error: error.into(),
        },
    )
}

impl From<PlanError> for Refusal {
    fn from(e: PlanError) -> Self {
        let kind = if e.program_not_found() {
            ErrorKind::ProgramNotFound
        } else if e.refused_by_policy() {
            ErrorKind::Refused
        } else if matches!(e.cause(), PlanError::Tier(_)) {
            ErrorKind::Unavailable
        } else {
            ErrorKind::BadRequest
        };
        refusal(kind, e.render(false))
    }
}

impl From<LaunchError> for Refusal {
    fn from(e: LaunchError) -> Self {
        let kind = match e {
            LaunchError::NoImage { .. } | LaunchError::NothingToRun { .. } => ErrorKind::BadRequest,
            _ => ErrorKind::Unavailable,
        };
        refusal(kind, e.to_string())
    }
}

/// The token of the API on TCP: the value of the variable that `[security] key_provider`
/// names, which must be set and not empty. `Ok(None)` when `[api]` has no port.
fn tcp_token(loaded: &LoadedConfig) -> io::Result<Option<Vec<u8>>> {
    let api = &loaded.config.api;
    let Some(port) = api.port else {
        return Ok(None);
    };
    let refuse = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
    let Some(var) = loaded.config.security.key_provider.as_deref() else {
        return refuse(format!(
            "`[api] port = {port}` puts the API on TCP, which needs a bearer token: set \
             `[security] key_provider = {{ Environment = {{ var_name = \"SYMBIONT_KEY\" }} }}` \
             and the token in that variable (or remove the port: the Unix socket needs none)"
        ));
    };
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => Ok(Some(v.into_encoded_bytes())),
        _ => refuse(format!(
            "`[api] port = {port}` puts the API on TCP, which needs a bearer token: the \
             environment variable {var} (named by `[security] key_provider`) is not set or \
             empty; set it to a secret of your choosing, or remove the port"
        )),
    }
}

/// Runs the service until `symbiont shutdown`, SIGTERM, SIGINT or SIGHUP: binds the socket in
/// `dir` (refusing when this user's service already runs) and, when `[api]` has a port, the
/// TCP listener (only with its token, see [`tcp_token`]), serves the API, then stops every
/// agent (TERM, KILL after the grace period; a second signal kills at once) and removes the
/// socket. `ready` is called once the socket accepts connections.
pub async fn serve(
    loaded: LoadedConfig,
    opts: crate::supervisor::SupervisorOptions,
    dir: &Path,
    ready: impl FnOnce(&Path),
) -> io::Result<()> {
    // Refused before anything is created or bound.
    let token = tcp_token(&loaded)?;
    super::prepare_runtime_dir(dir)?;
    let _lock = super::ServiceLock::take(dir)?;
    let socket = dir.join("api.sock");
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(&socket)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;
    }
    let mut opts = opts;
    // Clients that fall behind are told how much they missed; the service keeps no history
    // of events, so its memory does not grow with the runs it has finished.
    opts.event_buffer = EVENT_BUFFER;
    opts.first_run_id = records::last_run_id(&opts.data_dir) + 1;
    let api = loaded.config.api.clone();
    let tcp = match (token, api.port) {
        (Some(token), Some(port)) => {
            let l = tokio::net::TcpListener::bind((api.host.as_str(), port))
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("[api] {}:{port}: {e}", api.host)))?;
            Some((l, token))
        }
        _ => None,
    };
    let limits = Limits {
        max_body: api.max_body_size.map_or(DEFAULT_MAX_BODY, |b| {
            usize::try_from(b).unwrap_or(usize::MAX)
        }),
        timeout: api.timeout_seconds.map(Duration::from_secs),
    };
    let sup = Supervisor::new(opts)?;
    let (quit, mut quit_rx) = watch::channel(false);
    let (closing, _) = watch::channel(false);
    let service = Arc::new(Service {
        sup,
        loaded,
        stdin: Mutex::default(),
        accepting: true.into(),
        quit,
        closing,
    });
    tokio::spawn(forget_ended(Arc::downgrade(&service)));
    let app = router(service.clone(), limits);
    let tcp = tcp.map(|(listener, token)| {
        let app = app.clone().layer(axum::middleware::from_fn_with_state(
            Arc::<[u8]>::from(token),
            require_token,
        ));
        let mut closing = service.closing.subscribe();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = closing.wait_for(|c| *c).await;
                })
                .await
        })
    });
    ready(&socket);
    let stopping = service.clone();
    let shutdown = async move {
        let mut signals = crate::stop::StopSignals::new().ok();
        tokio::select! {
            _ = stop_signal(&mut signals) => {}
            _ = quit_rx.wait_for(|q| *q) => {}
        }
        stopping.stop_all(&mut signals).await;
        // The TCP listener, if any, may have ended already.
        let _ = stopping.closing.send(true);
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::warn!("cannot remove the socket {}: {e}", socket.display());
    }
    if let Some(t) = tcp {
        if let Ok(Err(e)) = t.await {
            tracing::warn!("the API on TCP failed: {e}");
        }
    }
    served
}

/// Equal bytes, in a time that does not depend on where they differ (nor on `given`'s length
/// beyond whether it matches): a token cannot be found byte by byte from how long its
/// refusals take.
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for (i, s) in secret.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(!*s) ^ s;
    }
    std::hint::black_box(diff) == 0
}

/// Every request on TCP carries `Authorization: Bearer <token>`, or is refused (401) before
/// anything else is looked at.
async fn require_token(State(token): State<Arc<[u8]>>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(|v| {
            let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
            scheme
                .eq_ignore_ascii_case(b"Bearer")
                .then(|| rest.trim_ascii_start())
        });
    if given.is_some_and(|g| same_secret(g, &token)) {
        return next.run(req).await;
    }
    let mut r = refusal(
        ErrorKind::Unauthorized,
        "the API on TCP needs `Authorization: Bearer <token>` with the token of the \
         variable named by `[security] key_provider`",
    )
    .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The limits of a request from `[api]`.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The largest JSON body (`max_body_size`).
    max_body: usize,
    /// How long a request that is not a stream may take (`timeout_seconds`).
    timeout: Option<Duration>,
}

/// A request that takes longer than `timeout_seconds` is answered 503 (its handling dropped).
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => refusal(
            ErrorKind::Unavailable,
            format!(
                "the request took longer than the service's `[api] timeout_seconds` ({}s)",
                limit.as_secs()
            ),
        )
        .into_response(),
    }
}

/// The next stop request from the platform (never, without a way to listen).
async fn stop_signal(signals: &mut Option<crate::stop::StopSignals>) {
    match signals.as_mut() {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

impl Service {
    /// Refuses launches from now on and stops every agent (TERM, KILL after the grace
    /// period); a stop signal meanwhile kills what is left at once.
    async fn stop_all(&self, signals: &mut Option<crate::stop::StopSignals>) {
        self.accepting
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let all = self.sup.shutdown();
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => return,
            _ = stop_signal(signals) => self.sup.kill_all_now(),
        }
        all.await;
    }

    fn check_accepting(&self) -> Result<(), Refusal> {
        if self.accepting.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(())
        } else {
            Err(refusal(
                ErrorKind::Unavailable,
                "the service is shutting down",
            ))
        }
    }

    /// The service's configuration with the request's flags written into it.
    fn config_for(&self, flags: &LaunchFlags) -> Result<LoadedConfig, Refusal> {
        let flags = flags.to_flags();
        flags
            .check()
            .map_err(|e| refusal(ErrorKind::BadRequest, e))?;
        let mut loaded = self.loaded.clone();
        flags.apply(&mut loaded);
        Ok(loaded)
    }

    /// Runs of `target`: a run id, or every run of the agent of that name, oldest first.
    fn resolve(&self, target: &str) -> Vec<(RunId, bool)> {
        let id = target.parse::<RunId>().ok();
        let mut out = Vec::new();
        self.sup.visit(|s| {
            if Some(s.id) == id || (id.is_none() && s.agent == target) {
                out.push((s.id, s.record.is_none()));
            }
        });
        out
    }
}

/// Drops ended runs from memory beyond the newest [`KEEP_ENDED`], as they end: the service's
/// memory does not grow with the runs it has finished (their records and logs stay on disk).
async fn forget_ended(service: std::sync::Weak<Service>) {
    let Some(mut events) = service.upgrade().map(|s| s.sup.subscribe()) else {
        return;
    };
    let mut ended: std::collections::VecDeque<RunId> = Default::default();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let lagged = tokio::select! {
            e = events.recv() => match e {
                Ok(crate::supervisor::Event::Exited { record }) => {
                    ended.push_back(record.run_id);
                    false
                }
                Ok(_) => false,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = sweep.tick() => true,
        };
        let Some(s) = service.upgrade() else { return };
        if lagged {
            crate::process::release_free_memory();
            // Events were missed, or it is time to look: the ended runs, as the service holds them.
            ended.clear();
            let mut live = std::collections::HashSet::new();
            s.sup.visit(|r| {
                if r.record.is_some() {
                    ended.push_back(r.id);
                } else {
                    live.insert(r.id);
                }
            });
            s.stdin
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|id, _| live.contains(id));
        }
        while ended.len() > KEEP_ENDED {
            if let Some(id) = ended.pop_front() {
                s.sup.forget(id);
                s.stdin
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
        }
    }
}

fn router(service: Shared, limits: Limits) -> Router {
    // Answers that end: bounded by `timeout_seconds`.
    let mut quick = Router::new()
        .route("/v1/health", get(health))
        .route("/v1/runs", get(list).post(launch))
        .route("/v1/runs/{target}/kill", post(kill))
        .route("/v1/history", get(history))
        .route("/v1/dashboard", get(dashboard));
    if let Some(t) = limits.timeout {
        quick = quick.route_layer(axum::middleware::from_fn_with_state(t, time_limit));
    }
    // Streams last as long as their run or the service; shutdown as long as the agents take
    // to stop (its handling must not be dropped half way).
    quick
        .route("/v1/exec", post(exec))
        .route("/v1/runs/{target}/logs", get(logs))
        .route(
            "/v1/runs/{id}/stdin",
            post(stdin).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/events", get(events))
        .route("/v1/shutdown", post(shutdown))
        .fallback(|| async { refusal(ErrorKind::NotFound, "no such endpoint (see docs/api.json)") })
        .method_not_allowed_fallback(|| async {
            Refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                ApiError {
                    kind: ErrorKind::BadRequest,
                    error: "this endpoint does not take that method (see docs/api.json)".into(),
                },
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body))
        .with_state(service)
}

/// A path parameter, or the refusal that says what is wrong with it.
struct UrlPath<T>(T);

impl<T, S> axum::extract::FromRequestParts<S> for UrlPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| UrlPath(v))
            .map_err(|e| refusal(ErrorKind::BadRequest, e.body_text()))
    }
}

/// A query string, or the refusal that says what is wrong with it.
struct Query<T>(T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| refusal(ErrorKind::BadRequest, e.body_text()))
    }
}

/// A JSON body, or the refusal that says what is wrong with it.
struct JsonBody<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = Refusal;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => {
                let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(Refusal(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ApiError {
                            kind: ErrorKind::BadRequest,
                            error: format!(
                                "the body is larger than the service accepts: {}",
                                e.body_text()
                            ),
                        },
                    ));
                } else {
                    ErrorKind::BadRequest
                };
                Err(refusal(kind, e.body_text()))
            }
        }
    }
}

async fn health(State(s): State<Shared>) -> Json<Health> {
    let mut runs = 0;
    s.sup.visit(|_| runs += 1);
    Json(Health {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
        data_dir: s.sup.options().data_dir.clone(),
        config_file: s.loaded.file.clone(),
        runs,
    })
}

async fn list(State(s): State<Shared>) -> Json<Vec<RunView>> {
    let mut out = Vec::new();
    s.sup.visit(|r| out.push(RunView::of(r)));
    Json(out)
}

/// The client's environment as the plan's host.
fn host_of(
    env: &std::collections::BTreeMap<String, String>,
) -> impl Fn(&str) -> Option<String> + '_ {
    |k| env.get(k).cloned()
}

fn source_files(files: &[AgentText]) -> Result<Vec<SourceFile>, Refusal> {
    files
        .iter()
        .map(|f| SourceFile::from_text(Path::new(&f.path), &f.text).map_err(Refusal::from))
        .collect()
}

/// `POST /v1/runs`: agent files, as `run --detach` sends them.
async fn launch(
    State(s): State<Shared>,
    JsonBody(req): JsonBody<LaunchRequest>,
) -> Result<(StatusCode, Json<Vec<Launched>>), Refusal> {
    s.check_accepting()?;
    let specs = if req.files.is_empty() && !req.command.is_empty() {
        // One command, detached (the dashboard's launch dialog): named after its program.
        vec![plan_exec(&s, &req)?.as_command()]
    } else if req.files.is_empty() {
        return Err(refusal(
            ErrorKind::BadRequest,
            "nothing to launch: give `files` (agent files) or `command` (POST /v1/exec streams one command)",
        ));
    } else {
        let loaded = s.config_for(&req.flags)?;
        let files = source_files(&req.files)?;
        let env = host_of(&req.env);
        let host = Host {
            env: &env,
            make_dirs: true,
        };
        plan::plan_runs(&loaded, &req.triggers, &files, &host)?
    };
    if specs.is_empty() {
        return Err(refusal(
            ErrorKind::BadRequest,
            "nothing to run: no agent has an `on start` or `on trigger` block with a statement",
        ));
    }
    s.sup.preflight(&specs).await?;
    let mut out = Vec::new();
    for spec in specs {
        let (agent, trigger) = (spec.agent.clone(), spec.trigger.clone());
        let run_id = s.sup.launch(spec)?;
        out.push(Launched {
            run_id,
            agent,
            trigger,
        });
    }
    Ok((StatusCode::CREATED, Json(out)))
}

fn plan_exec(s: &Service, req: &LaunchRequest) -> Result<RunSpec, Refusal> {
    let loaded = s.config_for(&req.flags)?;
    let argv = match (&req.code, req.command.is_empty()) {
        (Some(code), true) => {
            crate::policy::code_argv(&loaded.config.native_execution.default_executable, code)
        }
        (None, false) => req.command.clone(),
        _ => {
            return Err(refusal(
                ErrorKind::BadRequest,
                "exec needs exactly one of `command` and `code`",
            ))
        }
    };
    let env = host_of(&req.env);
    Ok(plan::plan_command(
        &loaded,
        argv,
        &[],
        &Host {
            env: &env,
            make_dirs: true,
        },
    )?)
}

/// Chunks of output in flight to an `exec` client, beyond its socket's own buffer.
const EXEC_FRAMES: usize = 16;

/// `POST /v1/exec`: one command; the answer streams its output as written (framed, see
/// [`frame`]), between a `launched` message and the run's `record`. The agent writes no faster
/// than the client reads; a client that goes away ends the run.
async fn exec(State(s): State<Shared>, JsonBody(req): JsonBody<LaunchRequest>) -> Response {
    let started = async {
        s.check_accepting()?;
        let spec = plan_exec(&s, &req)?;
        s.sup.preflight(std::slice::from_ref(&spec)).await?;
        let (agent, trigger) = (spec.agent.clone(), spec.trigger.clone());
        let (out_tx, out_rx) = mpsc::channel(EXEC_FRAMES);
        let (stdin, feed) = if req.stdin {
            let (tx, rx) = tokio::net::unix::pipe::pipe()
                .map_err(|e| refusal(ErrorKind::Unavailable, format!("stdin pipe: {e}")))?;
            let fd = rx
                .into_blocking_fd()
                .map_err(|e| refusal(ErrorKind::Unavailable, format!("stdin pipe: {e}")))?;
            (Some(std::fs::File::from(fd)), Some(tx))
        } else {
            (None, None)
        };
        let run_id = s.sup.launch_with(
            spec,
            RunIo {
                stdin,
                output: Some(out_tx),
            },
        )?;
        if let Some(tx) = feed {
            s.stdin
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(run_id, tx);
        }
        Ok::<_, Refusal>((
            Launched {
                run_id,
                agent,
                trigger,
            },
            out_rx,
        ))
    };
    let (launched, mut out_rx) = match started.await {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let id = launched.run_id;
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let send = async |b: Bytes| body_tx.send(b).await.is_ok();
        let mut client = send(message_frame(&StreamMessage::Launched(launched))).await;
        while client {
            tokio::select! {
                c = out_rx.recv() => match c {
                    Some(c) => {
                        let kind = if c.stderr { STREAM_STDERR } else { STREAM_STDOUT };
                        client = send(frame(kind, &c.data)).await;
                    }
                    None => break,
                },
                _ = body_tx.closed() => client = false,
            }
        }
        if !client {
            // The client went away: its command goes with it.
            drop(out_rx);
            s.sup.kill(id);
        }
        if let Some(r) = s.sup.wait(id).await {
            let _ = send(message_frame(&StreamMessage::Record(Box::new(
                (*r).clone(),
            ))))
            .await;
        }
    });
    framed_response(body_rx)
}

fn framed_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, FRAMED)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `POST /v1/runs/{id}/stdin`: the body becomes the run's standard input, closed at its end.
async fn stdin(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<RunId>,
    body: Body,
) -> Result<StatusCode, Refusal> {
    let tx = s
        .stdin
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
        .ok_or_else(|| {
            refusal(
                ErrorKind::NotFound,
                format!("run {id} has no stdin waiting (not an exec run with stdin, taken already, or ended)"),
            )
        })?;
    let mut tx = tx;
    let mut body = body.into_data_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        if tokio::io::AsyncWriteExt::write_all(&mut tx, &chunk)
            .await
            .is_err()
        {
            // The agent closed its stdin or ended: the rest is not wanted.
            break;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

fn parse_signal(name: &str) -> Option<Sig> {
    let n = name.trim().to_ascii_uppercase();
    let n = n.strip_prefix("SIG").unwrap_or(&n);
    Some(match n {
        "TERM" | "15" => Sig::Term,
        "KILL" | "9" => Sig::Kill,
        "INT" | "2" => Sig::Int,
        "HUP" | "1" => Sig::Hup,
        "STOP" | "19" => Sig::Stop,
        "CONT" | "18" => Sig::Cont,
        _ => return None,
    })
}

/// `POST /v1/runs/{target}/kill`: the signal to every live run of the target, whole tree (as
/// the dashboard's kill) or one process.
async fn kill(
    State(s): State<Shared>,
    UrlPath(target): UrlPath<String>,
    JsonBody(req): JsonBody<KillRequest>,
) -> Result<Json<Killed>, Refusal> {
    let sig = match req.signal.as_deref() {
        None => Sig::Term,
        Some(n) => parse_signal(n).ok_or_else(|| {
            refusal(
                ErrorKind::BadRequest,
                format!("unknown signal `{n}`: TERM, KILL, INT, HUP, STOP or CONT"),
            )
        })?,
    };
    let runs = s.resolve(&target);
    if runs.is_empty() {
        return Err(refusal(
            ErrorKind::NotFound,
            format!("no run or agent `{target}` in the service (`symbiont ps` lists them)"),
        ));
    }
    let scope = req.pid.map_or(Scope::Tree, Scope::Process);
    let mut run_ids = Vec::new();
    for (id, live) in runs {
        let sent = live && s.sup.control(id, Control::by_operator(sig, scope));
        if sent {
            run_ids.push(id);
        }
    }
    if run_ids.is_empty() {
        return Err(refusal(
            ErrorKind::Ended,
            format!(
                "`{target}` has no live run (or its tier cannot take {})",
                sig.name()
            ),
        ));
    }
    Ok(Json(Killed { run_ids }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
    /// stdout, stderr or both (the default).
    stream: Option<String>,
}

/// Where a run's logs are, and whether it still runs.
fn logs_of(s: &Service, target: &str) -> Option<(PathBuf, PathBuf, Option<RunId>)> {
    let runs = s.resolve(target);
    if let Some(&(id, live)) = runs.last() {
        let st = s.sup.status(id)?;
        return Some((st.stdout_log(), st.stderr_log(), live.then_some(id)));
    }
    // An ended run the service no longer holds, or one of an earlier service.
    let id = target.parse::<RunId>().ok();
    records::read_all(&s.sup.options().data_dir)
        .into_iter()
        .rev()
        .find(|r| Some(r.run_id) == id || (id.is_none() && r.agent == target))
        .map(|r| (r.stdout_log, r.stderr_log, None))
}

/// `GET /v1/runs/{target}/logs`: a run's logs (the latest run of an agent), framed as stdout
/// and stderr; with `follow`, new output as it is written until the run ends.
async fn logs(
    State(s): State<Shared>,
    UrlPath(target): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, Refusal> {
    let (out, err) = match q.stream.as_deref().unwrap_or("both") {
        "both" => (true, true),
        "stdout" => (true, false),
        "stderr" => (false, true),
        o => {
            return Err(refusal(
                ErrorKind::BadRequest,
                format!("stream `{o}`: stdout, stderr or both"),
            ))
        }
    };
    let (stdout_log, stderr_log, live) = logs_of(&s, &target).ok_or_else(|| {
        refusal(
            ErrorKind::NotFound,
            format!("no run or agent `{target}` (`symbiont history` lists the ended ones)"),
        )
    })?;
    let mut files = Vec::new();
    if out {
        files.push((STREAM_STDOUT, LogFollower::new(stdout_log)));
    }
    if err {
        files.push((STREAM_STDERR, LogFollower::new(stderr_log)));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let follow = q.follow.then_some(live).flatten();
    let mut closing = s.closing.subscribe();
    tokio::spawn(async move {
        loop {
            // Whether the run had ended before this pass: then this pass reads the last bytes.
            let done = match follow {
                Some(id) => s.sup.status(id).is_none_or(|st| st.record.is_some()),
                None => true,
            };
            for (kind, f) in files.iter_mut() {
                while let Some(chunk) = f.read_some() {
                    if tx.send(frame(*kind, &chunk)).await.is_err() {
                        return;
                    }
                }
            }
            if done || *closing.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tx.closed() => return,
                _ = closing.changed() => {}
            }
        }
    });
    Ok(framed_response(rx))
}

/// Reads a log as it grows, across the cap's rotation (`stdout.log` renamed `stdout.log.1`):
/// the rotated file is read from where this left off before the new one is read, and a log
/// first seen rotated starts with its `.1`.
struct LogFollower {
    path: PathBuf,
    file: Option<std::fs::File>,
    started: bool,
}

impl LogFollower {
    fn new(path: PathBuf) -> LogFollower {
        LogFollower {
            path,
            file: None,
            started: false,
        }
    }

    /// The next piece of the log, or `None` when nothing more is there now.
    fn read_some(&mut self) -> Option<Vec<u8>> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        if !self.started {
            self.started = true;
            let rotated = PathBuf::from(format!("{}.1", self.path.display()));
            self.file = std::fs::File::open(&rotated)
                .or_else(|_| std::fs::File::open(&self.path))
                .ok();
        }
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let Some(f) = self.file.as_mut() else {
                self.file = std::fs::File::open(&self.path).ok();
                self.file.as_ref()?;
                continue;
            };
            match f.read(&mut buf) {
                Ok(n) if n > 0 => {
                    buf.truncate(n);
                    return Some(buf);
                }
                Ok(_) => {
                    // At its end: the path holds a newer file once the log rotated.
                    let held = f.metadata().ok().map(|m| m.ino());
                    let now = std::fs::metadata(&self.path).ok().map(|m| m.ino());
                    if now.is_some() && held != now {
                        self.file = std::fs::File::open(&self.path).ok();
                        continue;
                    }
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// The newest N records only.
    limit: Option<usize>,
}

/// `GET /v1/history`: the records of ended runs, this service's and earlier ones', oldest first.
async fn history(
    State(s): State<Shared>,
    Query(q): Query<HistoryQuery>,
) -> Json<Vec<crate::supervisor::RunRecord>> {
    let dir = s.sup.options().data_dir.clone();
    let mut all = tokio::task::spawn_blocking(move || records::read_all(&dir))
        .await
        .unwrap_or_default();
    if let Some(n) = q.limit {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    Json(all)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardQuery {
    /// The selected run: its history and its tail come with the rows.
    selected: Option<RunId>,
    /// The tail's stream: stdout (the default) or stderr.
    stream: Option<String>,
    /// The `stamp` of the client's last answer: only the runs changed since come back.
    since: Option<u64>,
}

/// Lines of the selected run's tail an attached dashboard gets.
const DASHBOARD_TAIL: usize = 1000;

/// `GET /v1/dashboard`: the rows an attached dashboard draws.
async fn dashboard(
    State(s): State<Shared>,
    Query(q): Query<DashboardQuery>,
) -> Json<DashboardView> {
    let now = std::time::Instant::now();
    let period = s.sup.options().refresh;
    // Read before the runs: a change made while they are read is in this answer or the next.
    let stamp = crate::supervisor::current_stamp();
    let (mut rows, mut ids) = (Vec::new(), Vec::new());
    s.sup.visit(|st| {
        ids.push(st.id);
        let selected = Some(st.id) == q.selected;
        if selected || q.since.is_none_or(|since| st.version > since) {
            rows.push(crate::tui::app::AgentRow::from_status(
                st, now, selected, period,
            ))
        }
    });
    let stderr = q.stream.as_deref() == Some("stderr");
    let mut tail = q
        .selected
        .and_then(|id| s.sup.tail(id, stderr))
        .unwrap_or_default();
    let skip = tail.len().saturating_sub(DASHBOARD_TAIL);
    tail.drain(..skip);
    Json(DashboardView {
        rows,
        ids,
        stamp,
        tail,
        refresh_ms: period.as_millis() as u64,
    })
}

/// `GET /v1/events`: every event from now on, one JSON object per line, until the service
/// stops.
async fn events(State(s): State<Shared>) -> Response {
    let mut rx = s.sup.subscribe();
    let mut closing = s.closing.subscribe();
    let (tx, body_rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        loop {
            let line = tokio::select! {
                e = rx.recv() => match e {
                    Ok(e) => serde_json::to_string(&e).unwrap_or_default(),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        format!("{{\"event\":\"lagged\",\"missed\":{n}}}")
                    }
                    Err(_) => return,
                },
                _ = tx.closed() => return,
                _ = closing.wait_for(|c| *c) => return,
            };
            if tx.send(Bytes::from(line + "\n")).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `POST /v1/shutdown`: stops every agent, answers how many runs there were, then the
/// service exits.
async fn shutdown(State(s): State<Shared>) -> Json<Stopped> {
    let mut live = 0;
    s.sup.visit(|r| live += usize::from(r.record.is_none()));
    s.stop_all(&mut None).await;
    let _ = s.quit.send(true);
    Json(Stopped { runs: live })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `time_limit` answers 503 with an ApiError once the handler takes longer than the limit.
    #[tokio::test]
    async fn a_slow_answer_is_cut_at_the_timeout() {
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route("/quick", get(|| async { "quick" }))
            .route_layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(300),
                time_limit,
            ));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(l, app).await });
        for (path, status, body) in [
            ("/slow", "503", "\"kind\":\"unavailable\""),
            ("/quick", "200", "quick"),
        ] {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let started = std::time::Instant::now();
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.unwrap();
            assert!(started.elapsed() < Duration::from_secs(5));
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
            assert!(text.contains(body), "{text}");
        }
        server.abort();
    }

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret(b"tok-123", b"tok-123"));
        for other in [
            &b""[..],
            b"tok-12",
            b"tok-1234",
            b"tok-124",
            b"Tok-123",
            b"\0\0\0\0\0\0\0",
        ] {
            assert!(!same_secret(other, b"tok-123"), "{other:?}");
        }
        // A byte that is the complement of the secret's, past its end, is still a difference.
        assert!(!same_secret(&[!b'a', b'a'], b"a"));
        assert!(!same_secret(b"a", b""));
        assert!(same_secret(b"", b""));
    }
}
