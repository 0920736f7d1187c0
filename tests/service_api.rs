//! The service's API against its description, `docs/api.json`: `symbiont serve` as a child, raw
//! HTTP/1.1 written by hand over its Unix socket (and its TCP listener with a token), every
//! documented path and method answered with a documented status and the documented shape, the
//! refusals (404, 405, 413, 400, 401) as `ApiError`s, and a bounded fuzz of random requests
//! that must never get a 5xx or kill the service.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;
use serde_json::Value;

/// The OpenAPI document the server is checked against.
fn doc() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A running `symbiont serve`, killed (and reaped) if the test ends without shutting it down.
struct Service {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Service {
    fn start(s: &Scratch, config: &Path, env: &[(&str, &str)]) -> Service {
        let log = s.path("serve.log");
        let mut cmd = s.command(&["serve", "--config", config.to_str().unwrap()]);
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap();
        let socket = s.path("run").join("symbiont").join("api.sock");
        let mut svc = Service { child, socket, log };
        let up = common::wait_for(
            || {
                if let Ok(Some(st)) = svc.child.try_wait() {
                    panic!("serve exited ({st}): {}", svc.stderr());
                }
                UnixStream::connect(&svc.socket).is_ok()
            },
            Duration::from_secs(30),
        );
        assert!(up, "no socket after 30 s: {}", svc.stderr());
        svc
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
        let stream = UnixStream::connect(&self.socket).unwrap();
        exchange(stream, method, path, &[], body, true)
    }

    /// `POST /v1/shutdown`, then the service must exit, leaving no socket.
    fn shutdown(mut self) {
        let r = self.call("POST", "/v1/shutdown", None);
        assert_eq!(r.status, 200, "{}", r.text());
        let until = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < until,
                "serve still runs 30 s after shutdown"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "serve: {status}: {}", self.stderr());
        assert!(!self.socket.exists(), "the socket was left behind");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An answer: status, headers (names lowercased) and the body (de-chunked).
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts an `ApiError` body of `kind`.
    fn api_error(&self, kind: &str) {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["kind"], kind, "{v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
}

/// Writes one request by hand and reads the answer to its end (`full`) or only its head.
fn exchange(
    mut stream: impl Read + Write,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    full: bool,
) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    // The server may answer (413) before it has read the whole body, and close.
    let _ = stream.write_all(&bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => panic!("{method} {path}: no answer: {e}"),
            Err(_) => break,
        }
        // Only the head of a stream (no length: it may not end); all of a sized answer.
        if let (false, Some(end)) = (full, raw.windows(4).position(|w| w == b"\r\n\r\n")) {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            match len {
                Some(len) if method != "HEAD" => {
                    if raw.len() >= end + 4 + len {
                        return parse(&raw, true).unwrap_or_else(|| {
                            panic!("{method} {path}: not an HTTP answer: {raw:?}")
                        });
                    }
                }
                _ => break,
            }
        }
    }
    parse(&raw, full).unwrap_or_else(|| {
        panic!(
            "{method} {path}: not an HTTP answer: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

fn parse(raw: &[u8], full: bool) -> Option<Resp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if parts.next()? != "HTTP/1.1" {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let mut headers = Vec::new();
    for l in lines {
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if !full {
        Vec::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(Some(rest.len()))?;
        if rest.len() != len {
            return None;
        }
        rest.to_vec()
    };
    Some(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// The frames of a framed stream (`application/vnd.symbiont.stream`), checking the header
/// format as documented: kind, three zero bytes, big-endian length.
fn frames(body: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a cut frame header: {rest:?}");
        assert_eq!(&rest[1..4], &[0, 0, 0], "header {:?}", &rest[..8]);
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        assert!([1, 2, 3].contains(&rest[0]), "frame kind {}", rest[0]);
        out.push((rest[0], rest[8..8 + len].to_vec()));
        rest = &rest[8 + len..];
    }
    out
}

/// The schema `s` with its `$ref` followed.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str() {
        Some(r) => {
            let r = r.strip_prefix("#/").unwrap();
            let mut v = doc;
            for part in r.split('/') {
                v = &v[part];
            }
            resolve(doc, v)
        }
        None => s,
    }
}

/// The top-level shape of `v` against `schema`: an object has every required property (and
/// no property the schema does not name, where it names them all), an array's items each do.
fn check_shape(doc: &Value, schema: &Value, v: &Value, what: &str) {
    let schema = resolve(doc, schema);
    match schema["type"].as_str() {
        Some("object") => {
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("{what}: not an object: {v}"));
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap();
                assert!(obj.contains_key(r), "{what}: no `{r}` in {v}");
            }
            if let Some(props) = schema["properties"].as_object() {
                for k in obj.keys() {
                    assert!(
                        props.contains_key(k),
                        "{what}: `{k}` is not documented: {v}"
                    );
                }
            }
        }
        Some("array") => {
            let items = v
                .as_array()
                .unwrap_or_else(|| panic!("{what}: not an array: {v}"));
            for item in items {
                check_shape(doc, &schema["items"], item, what);
            }
        }
        _ => {}
    }
}

/// Checks an answer to `method path_template` against the document: a documented status, the
/// documented content type, and for JSON the documented shape. Returns the status.
fn conform(doc: &Value, template: &str, method: &str, r: &Resp) -> u16 {
    let what = format!("{} {template} -> {}", method.to_uppercase(), r.status);
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{template} {method} is not documented");
    let status = r.status.to_string();
    let resp = resolve(doc, &op["responses"][&status]);
    assert!(
        resp.is_object(),
        "{what}: status not documented (documented: {:?}): {}",
        op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        r.text()
    );
    if r.status == 404 {
        assert!(
            !r.text().contains("no such endpoint"),
            "{what}: the fallback answered: {}",
            r.text()
        );
    }
    match resp["content"].as_object() {
        None => assert!(r.body.is_empty(), "{what}: a body where none is documented"),
        Some(content) => {
            let ct = r.header("content-type").unwrap_or("");
            let media = content
                .get(ct)
                .unwrap_or_else(|| panic!("{what}: content type `{ct}` not documented"));
            if ct == "application/json" {
                check_shape(doc, &media["schema"], &r.json(), &what);
            }
        }
    }
    r.status
}

/// Every path and method the document describes.
fn documented(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.push((path.clone(), method.clone()));
        }
    }
    out
}

/// A config with native execution on, a small body limit and `extra` appended.
fn config(s: &Scratch, extra: &str) -> PathBuf {
    let p = s.config("");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

const MAX_BODY: usize = 4096;

/// A documented path, its method, the request's path, its body and the status it must get.
type Case<'a> = (&'a str, &'a str, String, Option<&'a [u8]>, u16);

#[test]
fn the_socket_answers_as_documented() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let s = Scratch::new("api-contract");
    let cfg = config(&s, &format!("[api]\nmax_body_size = {MAX_BODY}\n"));
    let svc = Service::start(&s, &cfg, &[]);

    // One request per documented path and method; `{id}`s come from the exec run.
    // The client's environment is the host's for the plan: PATH finds `sh`.
    let exec_body = serde_json::json!({
        "command": ["sh", "-c", "echo out-line; echo err-line >&2"],
        "env": {"PATH": std::env::var("PATH").unwrap()},
    })
    .to_string();
    let r = svc.call("POST", "/v1/exec", Some(exec_body.as_bytes()));
    conform(&doc, "/v1/exec", "post", &r);
    assert_eq!(r.status, 200, "{}", r.text());
    let fr = frames(&r.body);
    assert_eq!(fr.first().map(|f| f.0), Some(3), "{fr:?}");
    let first: Value = serde_json::from_slice(&fr[0].1).unwrap();
    check_shape(
        &doc,
        &doc["components"]["schemas"]["Launched"],
        &first["launched"],
        "launched",
    );
    let run_id = first["launched"]["run_id"].as_u64().unwrap();
    let last: Value = serde_json::from_slice(&fr.last().unwrap().1).unwrap();
    check_shape(
        &doc,
        &doc["components"]["schemas"]["RunRecord"],
        &last["record"],
        "record",
    );
    let stdout: Vec<u8> = fr
        .iter()
        .filter(|f| f.0 == 1)
        .flat_map(|f| f.1.clone())
        .collect();
    let stderr: Vec<u8> = fr
        .iter()
        .filter(|f| f.0 == 2)
        .flat_map(|f| f.1.clone())
        .collect();
    assert_eq!(stdout, b"out-line\n");
    assert_eq!(stderr, b"err-line\n");

    let cases: Vec<Case> = vec![
        ("/v1/health", "get", "/v1/health".into(), None, 200),
        ("/v1/runs", "get", "/v1/runs".into(), None, 200),
        ("/v1/runs", "post", "/v1/runs".into(), Some(b"{}"), 400),
        (
            "/v1/exec",
            "post",
            "/v1/exec".into(),
            Some(br#"{"command":["no-such-program-4711"]}"#),
            403,
        ),
        (
            "/v1/runs/{target}/kill",
            "post",
            "/v1/runs/no-such-agent/kill".into(),
            Some(b"{}"),
            404,
        ),
        (
            "/v1/runs/{target}/kill",
            "post",
            format!("/v1/runs/{run_id}/kill"),
            Some(b"{}"),
            409,
        ),
        (
            "/v1/runs/{target}/logs",
            "get",
            format!("/v1/runs/{run_id}/logs"),
            None,
            200,
        ),
        (
            "/v1/runs/{target}/logs",
            "get",
            "/v1/runs/no-such-agent/logs".into(),
            None,
            404,
        ),
        (
            "/v1/runs/{target}/logs",
            "get",
            format!("/v1/runs/{run_id}/logs?stream=neither"),
            None,
            400,
        ),
        (
            "/v1/runs/{id}/stdin",
            "post",
            format!("/v1/runs/{run_id}/stdin"),
            Some(b"x"),
            404,
        ),
        (
            "/v1/runs/{id}/stdin",
            "post",
            "/v1/runs/abc/stdin".into(),
            Some(b"x"),
            400,
        ),
        ("/v1/history", "get", "/v1/history".into(), None, 200),
        (
            "/v1/history",
            "get",
            "/v1/history?limit=x".into(),
            None,
            400,
        ),
        (
            "/v1/dashboard",
            "get",
            format!("/v1/dashboard?selected={run_id}&stream=stdout"),
            None,
            200,
        ),
        (
            "/v1/dashboard",
            "get",
            "/v1/dashboard?selected=x".into(),
            None,
            400,
        ),
    ];
    let mut seen: Vec<(String, String)> = vec![("/v1/exec".into(), "post".into())];
    for (template, method, path, body, want) in &cases {
        let r = svc.call(&method.to_uppercase(), path, *body);
        assert_eq!(r.status, *want, "{method} {path}: {}", r.text());
        conform(&doc, template, method, &r);
        if r.status >= 400 {
            r.api_error(match r.status {
                400 => "bad_request",
                403 => "program_not_found",
                404 => "not_found",
                409 => "ended",
                _ => unreachable!(),
            });
        }
        seen.push((template.to_string(), method.to_string()));
    }
    // The logs of the exec run, framed as documented.
    let r = svc.call("GET", &format!("/v1/runs/{run_id}/logs"), None);
    let fr = frames(&r.body);
    assert!(fr.contains(&(1, b"out-line\n".to_vec())), "{fr:?}");
    assert!(fr.contains(&(2, b"err-line\n".to_vec())), "{fr:?}");
    // History holds the exec run.
    let h = svc.call("GET", "/v1/history", None).json();
    assert!(
        h.as_array().unwrap().iter().any(|r| r["run_id"] == run_id),
        "{h}"
    );

    // The event stream: its head, and it stays open.
    let stream = UnixStream::connect(&svc.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = exchange(stream, "GET", "/v1/events", &[], None, false);
    assert_eq!(r.status, 200);
    conform(&doc, "/v1/events", "get", &r);
    seen.push(("/v1/events".into(), "get".into()));
    seen.push(("/v1/shutdown".into(), "post".into()));
    for pm in documented(&doc) {
        assert!(seen.contains(&pm), "{pm:?} is documented but not checked");
    }

    // Refusals, each an ApiError.
    let r = svc.call("GET", "/v1/no-such-endpoint", None);
    assert_eq!(r.status, 404);
    r.api_error("not_found");
    let r = svc.call("DELETE", "/v1/health", None);
    assert_eq!(r.status, 405, "{}", r.text());
    r.api_error("bad_request");
    let big = format!(
        r#"{{"files":[{{"path":"a","text":"{}"}}]}}"#,
        "x".repeat(MAX_BODY * 2)
    );
    let r = svc.call("POST", "/v1/runs", Some(big.as_bytes()));
    assert_eq!(r.status, 413, "{}", r.text());
    r.api_error("bad_request");
    conform(&doc, "/v1/runs", "post", &r);
    for bad in [
        &b"{"[..],
        b"[1,2",
        b"{\"files\": 3}",
        b"{\"nope\": true}",
        b"\xff\xfe",
    ] {
        for (path, template) in [("/v1/runs", "/v1/runs"), ("/v1/exec", "/v1/exec")] {
            let r = svc.call("POST", path, Some(bad));
            assert_eq!(r.status, 400, "{path} {bad:?}: {}", r.text());
            r.api_error("bad_request");
            conform(&doc, template, "post", &r);
        }
    }

    // Still there after all of it.
    let r = svc.call("GET", "/v1/health", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["pid"], svc.child.id());
    svc.shutdown();
}

/// A TCP port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pids of live processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    common::live_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[test]
fn tcp_needs_the_bearer_token() {
    let doc = doc();
    let s = Scratch::new("api-tcp");
    let port = free_port();
    let cfg = config(
        &s,
        &format!("[api]\nhost = \"127.0.0.1\"\nport = {port}\ntimeout_seconds = 30\n"),
    );
    // key_provider goes in [security], as the seed writes it.
    let text = std::fs::read_to_string(&cfg).unwrap().replacen(
        "[security]\n",
        "[security]\nkey_provider = { Environment = { var_name = \"SYMBIONT_KEY\" } }\n",
        1,
    );
    std::fs::write(&cfg, text).unwrap();

    // Without the token's variable, serve refuses to start, naming it, and binds nothing.
    let mut child = s
        .command(&["serve", "--config", cfg.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = common::wait_for(
        || child.try_wait().unwrap().is_some(),
        Duration::from_secs(30),
    );
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "serve started without SYMBIONT_KEY");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SYMBIONT_KEY"), "{err}");
    assert!(!s.path("run/symbiont/api.sock").exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    // Empty is not a token either.
    let out = s
        .command(&["serve", "--config", cfg.to_str().unwrap()])
        .env("SYMBIONT_KEY", "")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SYMBIONT_KEY"));

    // `check` lists the keys as used, with the variable's name and never its value.
    let token = "tok-3f9a1c77e2";
    let out = s
        .command(&["check", "--config", cfg.to_str().unwrap()])
        .env("SYMBIONT_KEY", token)
        .output()
        .unwrap();
    let text = common::stdout(&out);
    assert!(
        text.contains("api.port") && text.contains(&port.to_string()),
        "{text}"
    );
    assert!(text.contains("var_name = \"SYMBIONT_KEY\""), "{text}");
    assert!(!text.contains(token), "{text}");
    assert!(!text.contains("not used: api"), "{text}");

    let svc = Service::start(&s, &cfg, &[("SYMBIONT_KEY", token)]);
    let tcp = |method: &str, path: &str, auth: Option<&str>, body: Option<&[u8]>| {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        exchange(stream, method, path, &h, body, true)
    };
    let marker = "31.4159";
    let launch = serde_json::json!({
        "command": ["sh", "-c", format!("sleep {marker}")],
        "env": {"PATH": std::env::var("PATH").unwrap()},
    })
    .to_string();
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer tok-3f9a1c77e"),
        Some("Bearer tok-3f9a1c77e2x"),
        Some("Basic dG9rOnRvaw=="),
        Some(token),
    ] {
        for (m, p, b) in [
            ("POST", "/v1/exec", Some(launch.as_bytes())),
            ("POST", "/v1/runs", Some(b"{}".as_slice())),
            ("GET", "/v1/health", None),
            ("POST", "/v1/shutdown", None),
            ("GET", "/v1/nowhere", None),
        ] {
            let r = tcp(m, p, auth, b);
            assert_eq!(r.status, 401, "{m} {p} with {auth:?}: {}", r.text());
            r.api_error("unauthorized");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    // Nothing started, nothing stopped.
    std::thread::sleep(Duration::from_millis(300));
    let runs = svc.call("GET", "/v1/runs", None).json();
    assert_eq!(runs, serde_json::json!([]), "{runs}");
    assert!(processes_with(marker).is_empty());
    assert_eq!(svc.call("GET", "/v1/health", None).status, 200);

    // The right token: the same API.
    let bearer = format!("Bearer {token}");
    let r = tcp("GET", "/v1/health", Some(&bearer), None);
    assert_eq!(r.status, 200, "{}", r.text());
    conform(&doc, "/v1/health", "get", &r);
    let r = tcp("GET", "/v1/runs", Some(&format!("bearer {token}")), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = tcp("GET", "/v1/nowhere", Some(&bearer), None);
    assert_eq!(r.status, 404);
    r.api_error("not_found");
    // With the token a launch does start (so the checks above could see one), and a client
    // that goes away takes its command with it.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = [("Authorization", bearer.as_str())];
    let r = exchange(
        &mut stream,
        "POST",
        "/v1/exec",
        &auth,
        Some(launch.as_bytes()),
        false,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.symbiont.stream")
    );
    assert!(
        common::wait_for(
            || !processes_with(marker).is_empty(),
            Duration::from_secs(10)
        ),
        "the run with the token did not start"
    );
    drop(stream);
    assert!(
        common::wait_for(
            || processes_with(marker).is_empty(),
            Duration::from_secs(15)
        ),
        "the exec run outlived its client"
    );
    svc.shutdown();
    assert!(processes_with(marker).is_empty());
}

/// One random request: method, path (a documented one with random parameters, or an
/// undocumented one), query string and body (none, random bytes, random JSON, or a near-valid
/// launch or kill).
fn random_request(
    operations: Vec<(String, String)>,
) -> impl proptest::strategy::Strategy<Value = (String, String, Option<Vec<u8>>)> {
    use proptest::prelude::*;
    let templates: Vec<String> = operations.iter().map(|(p, _)| p.clone()).collect();
    let any_method = prop_oneof![
        4 => Just("GET"),
        4 => Just("POST"),
        1 => Just("PUT"),
        1 => Just("DELETE"),
        1 => Just("PATCH"),
        1 => Just("HEAD"),
        1 => Just("OPTIONS"),
    ];
    let param = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        "[0-9]{20,30}",
        "-?[0-9]{1,4}",
        "[A-Za-z0-9._~!$&'()*+,;=:@-]{0,24}",
        "(%[0-9A-Fa-f]{2}){1,6}",
    ];
    let fill =
        |t: String, a: String, b: String| t.replacen("{target}", &a, 1).replacen("{id}", &b, 1);
    // Mostly a documented operation, else a documented path with any method, else no path
    // the API has.
    let target = prop_oneof![
        4 => (proptest::sample::select(operations), param.clone(), param.clone())
            .prop_map(move |((t, m), a, b)| (m.to_uppercase(), fill(t, a, b))),
        1 => (any_method.clone(), proptest::sample::select(templates), param.clone(), param)
            .prop_map(move |(m, t, a, b)| (m.to_string(), fill(t, a, b))),
        1 => (any_method, "/(v1/)?x-[a-z0-9]{0,12}(/[a-z0-9]{0,8})?")
            .prop_map(|(m, p)| (m.to_string(), p)),
    ];
    let query = prop_oneof![
        2 => Just(String::new()),
        1 => proptest::collection::vec(
            (
                prop_oneof![Just("follow"), Just("stream"), Just("limit"), Just("x")],
                "[A-Za-z0-9%+.-]{0,12}"
            ),
            1..4
        )
        .prop_map(|kv| {
            let q: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("?{}", q.join("&"))
        }),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,16}".prop_map(Value::from),
        prop_oneof![
            Just("TERM"),
            Just("KILL"),
            Just("sh"),
            Just("echo"),
            Just("None"),
            Just("Tier1")
        ]
        .prop_map(Value::from),
    ];
    let json = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("command".to_string()),
                    Just("code".to_string()),
                    Just("files".to_string()),
                    Just("flags".to_string()),
                    Just("env".to_string()),
                    Just("stdin".to_string()),
                    Just("signal".to_string()),
                    Just("pid".to_string()),
                    Just("max_memory_mb".to_string()),
                    Just("sandbox_tier".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let body = prop_oneof![
        2 => Just(None),
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Some),
        4 => json.prop_map(|v| Some(v.to_string().into_bytes())),
    ];
    (target, query, body).prop_map(|((m, p), q, b)| (m, format!("{p}{q}"), b))
}

/// Random requests over the socket for a bounded time (`SYMBIONT_API_FUZZ_SECS`, default 20):
/// every answer is a well-formed HTTP answer under 500, every error an `ApiError`, and the
/// service never dies.
#[test]
fn random_requests_never_break_the_service() {
    use proptest::strategy::{Strategy, ValueTree};
    let doc = doc();
    let secs: u64 = std::env::var("SYMBIONT_API_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let s = Scratch::new("api-fuzz");
    // Only `echo` may run, whatever a random body asks.
    let p = s.config("allowed_executables = [\"echo\"]\ndefault_executable = \"echo\"\n");
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, format!("{text}\n[api]\nmax_body_size = {MAX_BODY}\n")).unwrap();
    let svc = Service::start(&s, &p, &[]);
    let operations: Vec<(String, String)> = documented(&doc)
        .into_iter()
        .filter(|(p, _)| p != "/v1/shutdown")
        .collect();
    let strategy = random_request(operations);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let until = Instant::now() + Duration::from_secs(secs);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while Instant::now() < until {
        let (method, path, body) = strategy.new_tree(&mut runner).unwrap().current();
        let mut stream = UnixStream::connect(&svc.socket)
            .unwrap_or_else(|e| panic!("the service is gone ({e}): {}", svc.stderr()));
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        // Only the head: a 200 of logs or events may be a stream that does not end.
        let r = exchange(&mut stream, &method, &path, &[], body.as_deref(), false);
        *statuses.entry(r.status).or_default() += 1;
        assert!(
            r.status < 500,
            "{method} {path} {:?}: {} ({})",
            body.as_deref().map(String::from_utf8_lossy),
            r.status,
            svc.stderr()
        );
        if r.status >= 400 && method != "HEAD" {
            let v = r.json();
            assert!(
                v["kind"].is_string() && v["error"].is_string(),
                "{method} {path}: {} {v}",
                r.status
            );
        }
        drop(stream);
    }
    let n: usize = statuses.values().sum();
    eprintln!("{n} random requests in {secs} s: {statuses:?}");
    assert!(n > 50, "only {n} requests");
    let r = svc.call("GET", "/v1/health", None);
    assert_eq!(r.status, 200);
    svc.shutdown();
}

/// `[api] timeout_seconds` bounds requests that end (its 503 is tested in the server's unit
/// tests), never the streams: an exec and the event stream both outlive it.
#[test]
fn the_timeout_never_cuts_a_stream() {
    let s = Scratch::new("api-timeout");
    let cfg = config(&s, "[api]\ntimeout_seconds = 1\n");
    let svc = Service::start(&s, &cfg, &[]);
    let mut events = UnixStream::connect(&svc.socket).unwrap();
    events
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let r = exchange(&mut events, "GET", "/v1/events", &[], None, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let body = serde_json::json!({
        "command": ["sh", "-c", "sleep 1.6; echo late"],
        "env": {"PATH": std::env::var("PATH").unwrap()},
    })
    .to_string();
    let started = Instant::now();
    let r = svc.call("POST", "/v1/exec", Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(started.elapsed() > Duration::from_millis(1500));
    let fr = frames(&r.body);
    assert!(fr.contains(&(1, b"late\n".to_vec())), "{fr:?}");
    let last: Value = serde_json::from_slice(&fr.last().unwrap().1).unwrap();
    assert_eq!(last["record"]["exit_code"], 0, "{last}");
    // The event stream, opened before, still delivers: the run's exit, one JSON line.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"event\":\"exited\"") {
        match events.read(&mut buf) {
            Ok(0) | Err(_) => panic!(
                "the event stream ended or stalled: {}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    drop(events);
    assert_eq!(svc.call("GET", "/v1/health", None).status, 200);
    svc.shutdown();
}
