//! Test harness: the real hub and listeners in-process ([`TestHub`]), the real binary as a
//! child process ([`TestBinary`]), and small HTTP/WebSocket helpers. Every instance binds
//! port 0, owns a temporary state directory and stops gracefully; nothing is shared, so tests
//! run in parallel and repeatedly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use a2a_mcp::api::ApiContext;
use a2a_mcp::config::{Config, Sources};
use a2a_mcp::hub::Hub;
use a2a_mcp::server::{self, Listener};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A configuration for tests: temp state dir, shipped catalog, ports 0, extra settings.
pub fn test_config(data_dir: &Path, extra: &[(&str, &str)]) -> Config {
    let mut flags = BTreeMap::new();
    flags.insert("data_dir".to_string(), data_dir.display().to_string());
    flags.insert(
        "catalog_dir".to_string(),
        repo_dir().join("data/catalog").display().to_string(),
    );
    flags.insert("stream_port".into(), "0".into());
    flags.insert("metrics_port".into(), "0".into());
    flags.insert("shutdown_grace".into(), "2s".into());
    flags.insert(
        "backup_dir".into(),
        data_dir.join("backup").display().to_string(),
    );
    flags.insert("backup_interval".into(), "off".into());
    for (k, v) in extra {
        flags.insert(k.to_string(), v.to_string());
    }
    let sources = Sources { file: None, flags };
    Config::load_with(&sources, |_| None).expect("test config")
}

pub struct TestHub {
    pub hub: Hub,
    pub ctx: Arc<ApiContext>,
    pub api: SocketAddr,
    pub ops: SocketAddr,
    listeners: Vec<Listener>,
    pub dir: Arc<tempfile::TempDir>,
    pub config: Arc<Config>,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> TestHub {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir, extra).await
    }

    /// Starts on an existing state directory (for restart tests).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, extra: &[(&str, &str)]) -> TestHub {
        let config = Arc::new(test_config(dir.path(), extra));
        let store = a2a_mcp::store::open(&(&*config).into())
            .await
            .expect("open store");
        let catalog = a2a_mcp::catalog::load(&config.catalog_dir).expect("catalog");
        let hub = Hub::start(a2a_mcp::cli::hub_config(&config), store, catalog)
            .await
            .expect("hub start");
        a2a_mcp::api::a2a::start_push_delivery(&hub);
        let ctx = ApiContext::new(hub.clone(), config.clone());
        let ops = server::start_ops(ctx.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("ops listener");
        let api = server::start_api(ctx.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .expect("api listener");
        TestHub {
            hub,
            ctx,
            api: api.addr,
            ops: ops.addr,
            listeners: vec![api, ops],
            dir,
            config,
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.api)
    }

    pub fn rest(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.api)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ops)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/stream{query}", self.api)
    }

    /// Graceful stop; returns the state directory for a restart.
    pub async fn stop(self) -> Arc<tempfile::TempDir> {
        for l in self.listeners {
            l.shutdown(Duration::from_secs(1)).await;
        }
        self.hub.shutdown(Duration::from_secs(2)).await;
        self.dir
    }
}

// -------------------------------------------------------------------------------------------
// HTTP helpers

pub async fn http(
    method: &str,
    url: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, http::HeaderMap) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    let bytes = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(bytes)).unwrap())
        .await
        .expect("http request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, v, headers)
}

/// POST raw bytes (for malformed bodies).
pub async fn http_raw(
    method: &str,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String, http::HeaderMap) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("http request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

pub async fn get(url: &str) -> (u16, Value) {
    let (s, v, _) = http("GET", url, None, &[]).await;
    (s, v)
}

pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let (s, v, _) = http("POST", url, Some(body), &[]).await;
    (s, v)
}

pub fn echo_input(text: &str, chunks: u32, delay_ms: u64) -> Value {
    json!({"messages": [{"role": "user", "content": text}], "chunks": chunks, "delay_ms": delay_ms})
}

/// Invokes `agent` over REST and returns the request id.
pub async fn invoke(th: &TestHub, agent: &str, input: Value) -> String {
    let (s, v) = post(
        &th.rest(&format!("/agents/{agent}/invoke")),
        json!({"input": input}),
    )
    .await;
    assert_eq!(s, 202, "invoke: {v}");
    v["requestId"].as_str().unwrap().to_string()
}

/// Polls a request until `pred` holds on its status (bounded).
pub async fn wait_status(th: &TestHub, id: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        let (_, v) = get(&th.rest(&format!("/requests/{id}"))).await;
        if v["status"] == want {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("request {id} never reached {want}: {last}");
}

// -------------------------------------------------------------------------------------------
// WebSocket helpers

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn ws_connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("ws connect {url}: {e}"))
        .0
}

/// Reads JSON text frames until the socket closes; returns them and the close code.
pub async fn ws_read_all(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("ws frame within 10 s");
        match msg {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(c))) => return (frames, c.map(|c| u16::from(c.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

pub async fn ws_send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

pub async fn ws_next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("ws frame within 10 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Checks a list of stream events: seq 1..n without gaps, start first, one terminal last.
pub fn assert_complete_stream(events: &[Value], terminal: &str) {
    assert!(!events.is_empty(), "no events");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"],
            json!(i as u64 + 1),
            "gap or disorder at {i}: {events:?}"
        );
    }
    assert_eq!(events[0]["type"], "start");
    assert_eq!(events.last().unwrap()["type"], terminal, "{events:?}");
}

// -------------------------------------------------------------------------------------------
// The real binary

pub const BIN: &str = env!("CARGO_BIN_EXE_a2a-mcp");

pub struct TestBinary {
    pub child: tokio::process::Child,
    pub api: SocketAddr,
    pub ops: SocketAddr,
    pub stderr_tail: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl TestBinary {
    /// Runs `a2a-mcp serve` on `data_dir` with ports 0 and waits for its ready summary.
    pub async fn serve(data_dir: &Path, extra_env: &[(&str, &str)]) -> TestBinary {
        Self::serve_wrapped(data_dir, extra_env, &[]).await
    }

    /// [`TestBinary::serve`] under the given umask (`sh -c 'umask U; exec a2a-mcp …'`).
    pub async fn serve_with_umask(
        data_dir: &Path,
        extra_env: &[(&str, &str)],
        umask: &str,
    ) -> TestBinary {
        let script = format!("umask {umask}; exec \"$0\" \"$@\"");
        Self::serve_wrapped(data_dir, extra_env, &["/bin/sh", "-c", &script]).await
    }

    /// Like [`TestBinary::serve`], started through `wrapper` (a program and its arguments
    /// that end by running the command after them, e.g. `unshare … --` or `setpriv …`).
    pub async fn serve_wrapped(
        data_dir: &Path,
        extra_env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> TestBinary {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = tokio::process::Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => tokio::process::Command::new(BIN),
        };
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--catalog-dir")
            .arg(repo_dir().join("data/catalog"))
            .arg("--stream-port")
            .arg("0")
            .arg("--metrics-port")
            .arg("0")
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_LEVEL", "info")
            .env("A2A_BACKUP_DIR", data_dir.join("backup"))
            .env("A2A_BACKUP_INTERVAL", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a2a-mcp");
        let stderr = child.stderr.take().unwrap();
        let tail = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let tail2 = tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tail2.lock().push(l.clone());
                let _ = tx.send(l);
            }
        });
        let (mut api, mut ops) = (None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while api.is_none() || ops.is_none() {
            let line = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("server did not start: {:?}", tail.lock()))
                .unwrap_or_else(|| panic!("server exited: {:?}", tail.lock()));
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("mcp") {
                let url = rest
                    .trim()
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches("/mcp");
                api = url.parse().ok();
            } else if let Some(rest) = t.strip_prefix("ops") {
                let url = rest
                    .trim()
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let url = url.split('/').next().unwrap_or("");
                ops = url.parse().ok();
            }
        }
        TestBinary {
            child,
            api: api.unwrap(),
            ops: ops.unwrap(),
            stderr_tail: tail,
        }
    }

    pub fn rest(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.api)
    }

    pub fn kill9(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    pub async fn sigterm_and_wait(&mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exit after SIGTERM")
            .expect("wait")
    }
}

// -------------------------------------------------------------------------------------------
// External tools installed by scripts/test-tools.sh

pub fn tools_dir() -> PathBuf {
    std::env::var("A2A_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_dir().join(".tools"))
}

pub fn python() -> PathBuf {
    let p = tools_dir().join("venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make test` (or scripts/test-tools.sh) to install the test clients",
        p.display()
    );
    p
}

/// Runs a Python script from tests/python with the venv; asserts it exits 0.
pub async fn run_python(script: &str, args: &[String]) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python())
            .arg(repo_dir().join("tests/python").join(script))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python script finished within 120 s")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    stdout
}

/// What a command printed and how it ended.
pub struct CmdOut {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOut {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for CmdOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a command to completion with `stdin` (if any) and captures its output.
pub fn run_command(cmd: &mut std::process::Command, stdin: Option<&str>) -> CmdOut {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_string();
        // A writer thread, so a tool that answers before reading all of stdin cannot deadlock.
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, input.as_bytes());
        });
    }
    let out = child.wait_with_output().unwrap();
    CmdOut {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
