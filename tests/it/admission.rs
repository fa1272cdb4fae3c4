//! The front gate, against the real binary: authentication that stays on once a key existed,
//! the request admission (Host, Origin, JSON bodies) on every surface, loopback-only open
//! hubs, connection deadlines and caps, refusals in the audit log, `/mcp` session ends and
//! HTTP/2 refusals.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::harness::*;
use super::security::mcp;

/// `a2a-mcp keys create` against a stopped store; returns the token (printed once).
fn keys_create(dir: &Path, role: &str, expires_in: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("--catalog-dir")
        .arg(repo_dir().join("data/catalog"))
        .args(["keys", "create", "--role", role, "--label", "test"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    if let Some(e) = expires_in {
        cmd.args(["--expires-in", e]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("a2a_"), "{token}");
    token
}

/// The public id inside a token (`a2a_<id>_<secret>`).
fn key_id(token: &str) -> &str {
    &token[4..16]
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The `auth` line of the binary's ready summary (printed after the addresses).
async fn auth_line(b: &TestBinary) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = b
            .stderr_tail
            .lock()
            .iter()
            .find(|l| l.trim_start().starts_with("auth "))
            .cloned();
        if let Some(l) = found {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no auth line: {:?}",
            b.stderr_tail.lock()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn a2a_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": "m1", "parts": [{"kind": "text", "text": "hi"}]}}})
}

/// Opens a WebSocket with extra headers; the HTTP status of the handshake (101 on success).
async fn ws_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("ws {url}: {e}"),
    }
}

/// Every surface of the API refuses a call without a key with 401.
async fn every_surface_requires_a_key(b: &TestBinary) {
    let (s, v, _) = http("GET", &b.rest("/agents"), None, &[]).await;
    assert_eq!(s, 401, "REST: {v}");
    let (s, v, _) = http(
        "POST",
        &b.rest("/admin/keys"),
        Some(json!({"role": "admin", "label": "drive-by"})),
        &[],
    )
    .await;
    assert_eq!(s, 401, "admin: no anonymous key minting: {v}");
    let (s, v) = mcp(
        &format!("http://{}/mcp", b.api),
        None,
        "tools/list",
        json!({}),
    )
    .await;
    assert_eq!(s, 401, "MCP: {v}");
    let (s, v, _) = http(
        "POST",
        &format!("http://{}/a2a/echo", b.api),
        Some(a2a_body()),
        &[],
    )
    .await;
    assert_eq!(s, 401, "A2A: {v}");
    assert_eq!(
        ws_status(&format!("ws://{}/stream", b.api), &[]).await,
        401,
        "WebSocket"
    );
    let (s, v, _) = http("GET", &b.rest("/requests/r_none/events"), None, &[]).await;
    assert_eq!(s, 401, "SSE: {v}");
}

#[tokio::test]
async fn the_expiry_of_the_last_key_keeps_every_surface_closed_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let token = keys_create(dir.path(), "admin", Some("3s"));
    let mut b = TestBinary::serve(dir.path(), &[]).await;
    let line = auth_line(&b).await;
    assert!(line.contains("required (keys exist)"), "{line}");
    // Wait until the server itself reports the key expired.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v, _) = http(
            "GET",
            &b.rest("/agents"),
            None,
            &[("authorization", &bearer(&token))],
        )
        .await;
        if s == 401 {
            assert!(v.to_string().contains("expired"), "{v}");
            break;
        }
        assert_eq!(s, 200, "{v}");
        assert!(Instant::now() < deadline, "the key never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    every_surface_requires_a_key(&b).await;
    assert!(b.sigterm_and_wait().await.success());
    // The store remembers that keys are required, also after a restart.
    let b = TestBinary::serve(dir.path(), &[]).await;
    let line = auth_line(&b).await;
    assert!(line.contains("required (keys exist)"), "{line}");
    every_surface_requires_a_key(&b).await;
}

#[tokio::test]
async fn the_revocation_of_the_last_key_keeps_every_surface_closed() {
    let dir = tempfile::tempdir().unwrap();
    let token = keys_create(dir.path(), "admin", None);
    let b = TestBinary::serve(dir.path(), &[]).await;
    let (s, v, _) = http(
        "DELETE",
        &b.rest(&format!("/admin/keys/{}", key_id(&token))),
        None,
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["revokedAt"].is_string(), "{v}");
    let (s, _, _) = http(
        "GET",
        &b.rest("/agents"),
        None,
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(s, 401, "the revoked key");
    every_surface_requires_a_key(&b).await;
}

#[tokio::test]
async fn a_store_with_keys_but_no_marker_gets_one_at_start() {
    use a2a_mcp::model::{Principal, Role};
    use a2a_mcp::store::{Aux, Op};
    let admin = Principal::new("local", Role::Admin);
    let th = TestHub::start().await;
    let (_, rec) = th
        .hub
        .create_key(&admin, Role::Admin, "old", None)
        .await
        .unwrap();
    th.hub.revoke_key(&admin, &rec.id).await.unwrap();
    let dir = th.stop().await;
    // A store written before the marker existed: keys, no marker.
    let config = test_config(dir.path(), &[]);
    let store = a2a_mcp::store::open(&(&config).into()).await.unwrap();
    store
        .write(vec![Op::DeleteAux {
            table: Aux::ApiKeys,
            key: a2a_mcp::policy::keys::AUTH_MARKER_KEY.to_string(),
        }])
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    let th = TestHub::start_in(dir, &[]).await;
    let (s, v) = get(&th.rest("/agents")).await;
    assert_eq!(s, 401, "{v}");
    let marker = th
        .hub
        .store_counts()
        .await
        .unwrap()
        .aux
        .get("api_keys")
        .copied();
    assert_eq!(marker, Some(2), "the revoked key and the backfilled marker");
    th.stop().await;
}

#[tokio::test]
async fn cross_site_and_rebinding_requests_are_refused_on_every_surface() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TestBinary::serve(dir.path(), &[]).await;
    let line = auth_line(&b).await;
    assert!(line.contains("open to loopback callers only"), "{line}");
    let own = format!("http://{}", b.api);
    let evil = ("origin", "http://evil.example");
    let plain = ("content-type", "text/plain");
    // The drive-by deploy of a web page: a cross-site "simple" request for a process agent.
    let process = json!({"id": "x", "capabilities": [{"name": "run"}],
        "executor": {"kind": "process", "command": ["/usr/bin/id"]}})
    .to_string();
    let (s, body, _) = http_raw(
        "POST",
        &b.rest("/agents"),
        process.clone().into_bytes(),
        &[plain, evil],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("A2A_ALLOWED_ORIGINS"), "{body}");
    // Without an Origin, a text/plain body is still not JSON.
    let (s, body, _) = http_raw(
        "POST",
        &b.rest("/agents"),
        process.clone().into_bytes(),
        &[plain],
    )
    .await;
    assert_eq!(s, 415, "{body}");
    assert!(body.contains("application/json"), "{body}");
    // DNS rebinding: the attacker's name as Host (and Origin), JSON and all.
    let (s, body, _) = http_raw(
        "POST",
        &b.rest("/agents"),
        process.clone().into_bytes(),
        &[
            ("content-type", "application/json"),
            ("host", "evil.example:80"),
            ("origin", "http://evil.example"),
        ],
    )
    .await;
    assert_eq!(s, 421, "{body}");
    assert!(body.contains("A2A_ALLOWED_HOSTS"), "{body}");
    let (s, _) = get(&b.rest("/agents/x")).await;
    assert_eq!(s, 404, "no agent was created");
    // Same-origin clients work (an agent that runs nothing).
    let harmless = json!({"id": "y", "capabilities": [{"name": "chat"}],
        "executor": {"kind": "builtin", "name": "echo"}});
    let (s, v, _) = http(
        "POST",
        &b.rest("/agents"),
        Some(harmless),
        &[("origin", &own)],
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The drive-by invoke: refused, nothing runs.
    let input = json!({"input": {"messages": [{"role": "user", "content": "hi"}]}});
    let (s, body, _) = http_raw(
        "POST",
        &b.rest("/agents/y/invoke"),
        input.to_string().into_bytes(),
        &[plain, evil],
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let (s, v) = get(&b.rest("/requests?agentId=y")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["requests"].as_array().map(Vec::len),
        Some(0),
        "nothing ran: {v}"
    );
    // Clients without an Origin (not browsers) work.
    let (s, v, _) = http("POST", &b.rest("/agents/y/invoke"), Some(input), &[]).await;
    assert_eq!(s, 202, "{v}");
    let (_, v) = get(&b.rest("/requests?agentId=y")).await;
    assert_eq!(v["requests"].as_array().map(Vec::len), Some(1), "{v}");

    // A foreign Host is refused everywhere: REST, MCP, A2A, WebSocket, SSE, ops.
    let foreign = ("host", "evil.example");
    let (s, _, _) = http("GET", &b.rest("/agents"), None, &[foreign]).await;
    assert_eq!(s, 421, "REST");
    let (s, body, _) = http_raw(
        "POST",
        &format!("http://{}/mcp", b.api),
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})
            .to_string()
            .into_bytes(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            foreign,
        ],
    )
    .await;
    assert_eq!(s, 421, "MCP: {body}");
    assert!(
        body.contains("\"jsonrpc\""),
        "MCP refusals are JSON-RPC: {body}"
    );
    let (s, _, _) = http(
        "POST",
        &format!("http://{}/a2a/echo", b.api),
        Some(a2a_body()),
        &[foreign],
    )
    .await;
    assert_eq!(s, 421, "A2A");
    assert_eq!(
        ws_status(&format!("ws://{}/stream", b.api), &[foreign]).await,
        421,
        "WebSocket"
    );
    let (s, _, _) = http("GET", &b.rest("/requests/r_none/events"), None, &[foreign]).await;
    assert_eq!(s, 421, "SSE");
    let (s, _, _) = http(
        "GET",
        &format!("http://{}/healthz", b.ops),
        None,
        &[foreign],
    )
    .await;
    assert_eq!(s, 421, "ops");
    // A foreign Origin too (WebSocket and MCP), while the own origin passes.
    assert_eq!(
        ws_status(&format!("ws://{}/stream", b.api), &[evil]).await,
        403
    );
    assert_eq!(
        ws_status(&format!("ws://{}/stream", b.api), &[("origin", &own)]).await,
        101
    );
    let (s, _, _) = http(
        "POST",
        &format!("http://{}/a2a/echo", b.api),
        Some(a2a_body()),
        &[("origin", &own)],
    )
    .await;
    assert_eq!(s, 200, "A2A, same origin");
    let (s, _) = get(&format!("http://{}/healthz", b.ops)).await;
    assert_eq!(s, 200);
    let (s, _, _) = http(
        "GET",
        &format!("http://localhost:{}/api/v1/agents", b.api.port()),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "localhost is always a Host of the hub");

    // stdio is not HTTP: the local user keeps working, keys or not.
    assert!(b.sigterm_and_wait().await.success());
    keys_create(dir.path(), "admin", None);
    let listed = stdio_list_agents(dir.path()).await;
    assert!(listed.contains("\"echo\""), "{listed}");
}

/// `a2a-mcp stdio` (no listener): initialize, then `list_agents`; returns the tool result.
async fn stdio_list_agents(dir: &Path) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--catalog-dir")
        .arg(repo_dir().join("data/catalog"))
        .arg("stdio")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENABLE_STREAMING", "false")
        .env("A2A_BACKUP_INTERVAL", "off")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let messages = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "list_agents", "arguments": {}}}),
    ];
    for m in messages {
        stdin.write_all(format!("{m}\n").as_bytes()).await.unwrap();
    }
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .expect("stdio answers")
            .unwrap()
            .expect("stdout open");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 2 {
            assert!(v["result"]["isError"] != true, "{v}");
            return v["result"].to_string();
        }
    }
}

/// A non-loopback IPv4 address of this machine, if it has one.
fn non_loopback_address() -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|i| i.address)
        .filter_map(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

#[tokio::test]
async fn an_open_hub_serves_loopback_callers_only() {
    let Some(outside) = non_loopback_address() else {
        // No second address to call from: the peer classification is covered by
        // server::admission::tests::loopback_classification.
        super::store_backends::pg::skip("this machine has no non-loopback IPv4 address");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(dir.path(), &[("STREAM_HOST", "0.0.0.0")]).await;
    let port = b.api.port();
    let from_outside = format!("http://{outside}:{port}/api/v1/agents");
    let (s, v, _) = http("GET", &from_outside, None, &[]).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "loopback_only", "{v}");
    assert!(v.to_string().contains("keys create"), "{v}");
    let (s, _, _) = http(
        "POST",
        &format!("http://{outside}:{port}/mcp"),
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})),
        &[("accept", "application/json, text/event-stream")],
    )
    .await;
    assert_eq!(s, 403, "MCP too");
    let (s, _) = get(&format!("http://127.0.0.1:{port}/api/v1/agents")).await;
    assert_eq!(s, 200, "loopback callers are served");
    // The first key, made from this machine, closes the hub; then keys work from anywhere.
    let (s, v, _) = http(
        "POST",
        &format!("http://127.0.0.1:{port}/api/v1/admin/keys"),
        Some(json!({"role": "viewer", "label": "remote"})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let token = v["key"].as_str().unwrap().to_string();
    let (s, _, _) = http(
        "GET",
        &from_outside,
        None,
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = http("GET", &from_outside, None, &[]).await;
    assert_eq!(s, 401);
    let (s, _) = get(&format!("http://127.0.0.1:{port}/api/v1/agents")).await;
    assert_eq!(s, 401, "loopback needs the key now too");
}

#[tokio::test]
async fn production_requires_keys_from_the_start_even_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(dir.path(), &[("A2A_ENV", "production")]).await;
    let line = auth_line(&b).await;
    assert!(
        line.contains("required (production mode); no key exists yet"),
        "{line}"
    );
    every_surface_requires_a_key(&b).await;
}

/// Connects from `from` (a loopback address of this machine) to `to`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends one HTTP/1.1 request on `stream`; the status code, or `None` when the server closed
/// the connection without answering.
async fn status_on(mut stream: TcpStream, path: &str) -> Option<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).await.is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("the server answers or closes");
    if read.is_err() && buf.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until the server closes the connection (bounded).
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn idle_sockets_beyond_the_cap_are_dropped_at_the_head_deadline_and_ops_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(
        dir.path(),
        &[
            ("A2A_MAX_CONNECTIONS", "4"),
            ("A2A_MAX_CONNECTIONS_PER_IP", "100"),
            ("A2A_HEADER_TIMEOUT", "1s"),
        ],
    )
    .await;
    // Three times the cap in sockets that never send a byte, and one that speaks HTTP/2 up to
    // its SETTINGS and then nothing.
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(b.api).await.unwrap());
    }
    let mut h2 = TcpStream::connect(b.api).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let api = tokio::spawn({
        let url = b.rest("/agents");
        async move { get(&url).await.0 }
    });
    // The ops listener has its own budget: it answers throughout.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !api.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the API did not answer again while idle sockets held its connections"
        );
        let (s, _) = tokio::time::timeout(
            Duration::from_secs(5),
            get(&format!("http://{}/healthz", b.ops)),
        )
        .await
        .expect("the ops port answers during the flood");
        assert_eq!(s, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = api.await.unwrap();
    assert_eq!(status, 200);
    for s in idle.iter_mut().chain(std::iter::once(&mut h2)) {
        assert!(
            closed_by_server(s).await,
            "an idle socket was closed by the server"
        );
    }
    let closed = metric_of(
        &b,
        "a2a_connections_closed_total{listener=\"api\",reason=\"head_timeout\"}",
    )
    .await;
    assert!(closed >= 13.0, "{closed}");
}

async fn metric_of(b: &TestBinary, series: &str) -> f64 {
    let (_, text, _) = http_raw("GET", &format!("http://{}/metrics", b.ops), vec![], &[]).await;
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn one_address_over_its_connection_cap_is_refused_while_others_connect() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(
        dir.path(),
        &[
            ("A2A_MAX_CONNECTIONS_PER_IP", "3"),
            ("A2A_HEADER_TIMEOUT", "60s"),
        ],
    )
    .await;
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    let two: IpAddr = "127.0.0.2".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(one, b.api).await);
    }
    // Served in order of arrival: the fourth from the same address is closed unanswered.
    let fourth = connect_from(one, b.api).await;
    assert_eq!(status_on(fourth, "/api/v1/agents").await, None);
    // Another address is served meanwhile.
    assert_eq!(
        status_on(connect_from(two, b.api).await, "/api/v1/agents").await,
        Some(200)
    );
    // Closing one of the three frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if status_on(connect_from(one, b.api).await, "/api/v1/agents").await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = metric_of(
        &b,
        "a2a_connections_closed_total{listener=\"api\",reason=\"per_ip_cap\"}",
    )
    .await;
    assert!(refused >= 1.0, "{refused}");
}

#[tokio::test]
async fn deleting_an_unknown_mcp_session_answers_404_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(dir.path(), &[]).await;
    let url = format!("http://{}/mcp", b.api);
    let accept = ("accept", "application/json, text/event-stream");
    let started = Instant::now();
    let (s, body, _) = http_raw(
        "DELETE",
        &url,
        vec![],
        &[
            ("mcp-session-id", "no-such-session"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    )
    .await;
    assert_eq!(s, 404, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // A real session ends with 204, and is unknown afterwards.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let (s, _, headers) = http("POST", &url, Some(init), &[accept]).await;
    assert_eq!(s, 200);
    let sid = headers["mcp-session-id"].to_str().unwrap().to_string();
    let end = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (s, _, _) = http_raw("DELETE", &url, vec![], &end).await;
    assert_eq!(s, 204);
    let (s, _, _) = http_raw("DELETE", &url, vec![], &end).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn unauthenticated_mcp_over_http2_gets_401_every_time() {
    let dir = tempfile::tempdir().unwrap();
    keys_create(dir.path(), "admin", None);
    let b = TestBinary::serve(dir.path(), &[]).await;
    let url = format!("http://{}/mcp", b.api);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}})
    .to_string();
    for i in 0..100 {
        let out = tokio::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                "--max-time",
                "10",
            ])
            .args(["--http2-prior-knowledge", "-X", "POST", &url])
            .args(["-H", "content-type: application/json"])
            .args(["-H", "accept: application/json, text/event-stream"])
            .args(["--data-binary", &body])
            .output()
            .await
            .expect("curl is installed");
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && shown == "401 2",
            "try {i}: curl exit {:?}, {shown:?} (a reset stream instead of the 401?)",
            out.status.code()
        );
    }
}

#[tokio::test]
async fn a_flood_of_refusals_becomes_a_few_counted_audit_entries() {
    let dir = tempfile::tempdir().unwrap();
    let admin = keys_create(dir.path(), "admin", None);
    let viewer = keys_create(dir.path(), "viewer", None);
    let b = TestBinary::serve(
        dir.path(),
        &[
            ("A2A_AUDIT_DENIAL_WINDOW", "1s"),
            ("A2A_RATE_LIMITS", "default=100/s,admin=1000/s,viewer=2/s"),
        ],
    )
    .await;
    let started = Instant::now();
    let mcp_url = format!("http://{}/mcp", b.api);
    for _ in 0..200 {
        let (s, _, _) = http("GET", &b.rest("/agents"), None, &[]).await;
        assert_eq!(s, 401);
    }
    for _ in 0..100 {
        let (s, _) = mcp(&mcp_url, None, "tools/list", json!({})).await;
        assert_eq!(s, 401);
    }
    let mut limited = 0u64;
    for _ in 0..40 {
        let (s, _, _) = http(
            "GET",
            &b.rest("/agents"),
            None,
            &[("authorization", &bearer(&viewer))],
        )
        .await;
        if s == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "the viewer's limit of 2/s was hit");
    let windows = started.elapsed().as_secs() + 2;
    // Summaries arrive with the next window; read the audit log until all are in.
    let count = |e: &Value| -> u64 {
        e["detail"]
            .as_str()
            .and_then(|d| d.strip_prefix("count="))
            .and_then(|d| d.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (unauth, rated) = loop {
        let (s, v, _) = http(
            "GET",
            &b.rest("/admin/audit?limit=1000"),
            None,
            &[("authorization", &bearer(&admin))],
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        let unauth: Vec<Value> = entries
            .iter()
            .filter(|e| e["action"] == "http.unauthenticated")
            .cloned()
            .collect();
        let rated: Vec<Value> = entries
            .iter()
            .filter(|e| e["action"] == "http.rate_limited")
            .cloned()
            .collect();
        let done = unauth.iter().map(count).sum::<u64>() == 300
            && rated.iter().map(count).sum::<u64>() == limited;
        if done {
            break (unauth, rated);
        }
        assert!(
            Instant::now() < deadline,
            "summaries incomplete: {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // At most one entry per surface (rest, mcp) and window, each with its count.
    assert!(
        unauth.len() as u64 <= 2 * windows,
        "{} entries for 300 refusals in {windows} windows: {unauth:?}",
        unauth.len()
    );
    for e in &unauth {
        assert_eq!(e["outcome"], "denied");
        assert_eq!(e["target"], "127.0.0.1", "{e}");
        assert!(
            e["detail"].as_str().unwrap().contains("reason=missing"),
            "{e}"
        );
    }
    let surfaces: std::collections::BTreeSet<&str> = unauth
        .iter()
        .filter_map(|e| e["surface"].as_str())
        .collect();
    assert_eq!(surfaces, ["mcp", "rest"].into_iter().collect());
    for e in &rated {
        assert_eq!(e["target"], format!("key:{}", key_id(&viewer)), "{e}");
        assert_eq!(e["keyId"], key_id(&viewer));
    }
}
