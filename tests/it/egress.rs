//! Outbound fetches: Agent Card imports (MCP `deploy_agent {cardUrl}`, REST
//! `POST /api/v1/agents/import-card`, `a2a-mcp agents import-card`) and `a2a` agents check
//! the caller's role before any network I/O, go through the egress guard
//! (`A2A_EGRESS_ALLOWED_NETWORKS`), follow redirects only within one origin and never quote
//! what a remote answered. A stand-in "remote host" on loopback counts every connection it
//! accepts, so "no connection at all" is observed, not assumed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use a2a_mcp::model::Role;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::a2a::{LOCAL_PEERS, LOCAL_PEERS_ENV};
use super::harness::*;
use super::security::{is_forbidden, key, mcp, rest, tool};

/// Text a remote puts in its error pages; it must never reach a caller.
const MARKER: &str = "sEcReT-mArKeR-7f3a";

/// A stand-in remote host on 127.0.0.1: answers by path, records every connection and path.
struct Target {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn card(interface: &str) -> Value {
    json!({
        "name": "Stand-in", "description": "a stand-in remote agent", "version": "1.0.0",
        "capabilities": {"streaming": false},
        "supportedInterfaces": [{"url": interface, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
        "skills": [{"id": "echo", "name": "echo", "description": "echo", "tags": []}]
    })
}

impl Target {
    async fn start() -> Target {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (c, p) = (connections.clone(), paths.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let p = p.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let Ok(Some(first)) = lines.next_line().await else {
                        return;
                    };
                    while let Ok(Some(l)) = lines.next_line().await {
                        if l.is_empty() {
                            break;
                        }
                    }
                    let path = first.split(' ').nth(1).unwrap_or("").to_string();
                    p.lock().push(path.clone());
                    let port = addr.port();
                    let (status, extra, ctype, body) = match path.as_str() {
                        "/card.json" => (
                            "200 OK",
                            String::new(),
                            "application/json",
                            card("/rpc").to_string(),
                        ),
                        "/bad-interface.json" => (
                            "200 OK",
                            String::new(),
                            "application/json",
                            card(&format!("http://0.0.0.0:{port}/rpc")).to_string(),
                        ),
                        "/moved.json" => (
                            "301 Moved Permanently",
                            "location: /card.json\r\n".into(),
                            "text/plain",
                            String::new(),
                        ),
                        "/away.json" => (
                            "302 Found",
                            format!("location: http://localhost:{port}/card.json\r\n"),
                            "text/plain",
                            String::new(),
                        ),
                        "/error.json" => (
                            "500 Internal Server Error",
                            String::new(),
                            "text/plain",
                            format!("internal page {MARKER}"),
                        ),
                        "/not-json.json" => (
                            "200 OK",
                            String::new(),
                            "text/html",
                            format!("<html>{MARKER}</html>"),
                        ),
                        _ => (
                            "404 Not Found",
                            String::new(),
                            "text/plain",
                            format!("no such page {MARKER}"),
                        ),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                        body.len()
                    );
                    let _ = w.write_all(resp.as_bytes()).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Target {
            addr,
            connections,
            paths,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().clone()
    }
}

/// `a2a-mcp --data-dir DIR agents import-card URL ARGS…` with `env`; (success, stdout+stderr).
async fn import_cli(
    dir: &std::path::Path,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir)
        .arg("--catalog-dir")
        .arg(repo_dir().join("data/catalog"))
        .args(["agents", "import-card", url])
        .args(args)
        .env_remove("A2A_EGRESS_ALLOWED_NETWORKS")
        .env_remove("A2A_PUSH_ALLOWED_NETWORKS")
        .env_remove("A2A_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().await.unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The text of an MCP tool result that is an error (panics on success).
fn tool_error(result: &Value) -> String {
    assert_eq!(result["isError"], true, "expected an error: {result}");
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// One MCP tool call without a key (authentication off).
async fn tool_anon(th: &TestHub, name: &str, args: Value) -> Value {
    let (s, v) = mcp(
        &th.mcp_url(),
        None,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
    .await;
    assert_eq!(s, 200, "{name}: {v}");
    v["result"].clone()
}

#[tokio::test]
async fn card_imports_check_the_role_before_any_connection() {
    // Loopback is allowed here, so only the role check can keep the hub from connecting.
    let th = TestHub::start_with(&[("auth", "required"), LOCAL_PEERS]).await;
    let admin = key(&th, Role::Admin).await;
    let target = Target::start().await;
    let card_url = target.url("/card.json");
    let api = format!("http://{}", th.api);
    for role in [Role::Viewer, Role::Invoker] {
        let token = key(&th, role).await;
        let r = tool(
            &th,
            &token,
            "deploy_agent",
            json!({"cardUrl": card_url, "id": "stand-in"}),
        )
        .await;
        assert!(is_forbidden(&r), "{role:?} MCP: {r}");
        let r = tool(
            &th,
            &token,
            "agent_control",
            json!({"action": "deploy", "cardUrl": card_url}),
        )
        .await;
        assert!(is_forbidden(&r), "{role:?} agent_control: {r}");
        let (s, v) = rest(
            &th,
            "POST",
            "/agents/import-card",
            Some(&token),
            Some(json!({"cardUrl": card_url, "id": "stand-in"})),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{role:?} REST: {v}"
        );
        // The CLI while the server holds the store: the server decides, and fetches nothing.
        let (ok, out) = import_cli(
            th.dir.path(),
            &card_url,
            &["--id", "stand-in", "--url", &api],
            &[("A2A_ADMIN_TOKEN", &token), LOCAL_PEERS_ENV],
        )
        .await;
        assert!(!ok && out.contains("may not"), "{role:?} CLI: {out}");
        assert_eq!(
            target.connections(),
            0,
            "{role:?}: the stand-in saw a connection: {:?}",
            target.paths()
        );
    }
    assert!(th.hub.agent("stand-in").is_err(), "nothing was deployed");

    // The same calls with an admin key do reach it (the stand-in is reachable).
    let (s, v) = rest(
        &th,
        "POST",
        "/agents/import-card",
        Some(&admin),
        Some(json!({"cardUrl": card_url, "id": "stand-in"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["capabilities"][0]["name"], "echo", "{v}");
    let (ok, out) = import_cli(
        th.dir.path(),
        &card_url,
        &["--id", "stand-in-2", "--url", &api],
        &[("A2A_ADMIN_TOKEN", &admin)],
    )
    .await;
    assert!(ok && out.contains("imported stand-in-2"), "{out}");
    assert_eq!(target.paths(), ["/card.json", "/card.json"]);
    th.stop().await;
}

#[tokio::test]
async fn card_fetches_go_through_the_egress_guard_and_quote_nothing_remote() {
    let target = Target::start().await;
    let port = target.addr.port();

    // The default policy: loopback (by address or by name) is refused before connecting.
    let th = TestHub::start().await;
    for url in [
        target.url("/card.json"),
        format!("http://localhost:{port}/card.json"),
    ] {
        let (s, v) = rest(
            &th,
            "POST",
            "/agents/import-card",
            None,
            Some(json!({"cardUrl": url})),
        )
        .await;
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, 400, "{url}: {v}");
        assert!(
            msg.contains("internal address") && msg.contains("A2A_EGRESS_ALLOWED_NETWORKS"),
            "{url}: {msg}"
        );
        let r = tool_anon(&th, "deploy_agent", json!({"cardUrl": url})).await;
        let text = tool_error(&r);
        assert!(text.contains("A2A_EGRESS_ALLOWED_NETWORKS"), "{text}");
    }
    // An a2a agent deployed at run time with such a URL is refused the same way.
    let (s, v) = post(
        &th.rest("/agents"),
        json!({"id": "inside", "capabilities": [{"name": "x"}],
               "executor": {"kind": "a2a", "url": target.url("/card.json")}}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("A2A_EGRESS_ALLOWED_NETWORKS"),
        "{v}"
    );
    // The CLI on a stopped store, under the same (default) configuration.
    let offline = tempfile::tempdir().unwrap();
    let (ok, out) = import_cli(offline.path(), &target.url("/card.json"), &[], &[]).await;
    assert!(!ok && out.contains("A2A_EGRESS_ALLOWED_NETWORKS"), "{out}");
    assert_eq!(target.connections(), 0, "{:?}", target.paths());
    th.stop().await;

    // The operator allows loopback: the same imports work, also offline.
    let (ok, out) = import_cli(
        offline.path(),
        &target.url("/card.json"),
        &["--id", "offline"],
        &[LOCAL_PEERS_ENV],
    )
    .await;
    assert!(ok && out.contains("imported offline"), "{out}");
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let import = |url: String, id: &str| {
        let th_rest = th.rest("/agents/import-card");
        let body = json!({"cardUrl": url, "id": id});
        async move { post(&th_rest, body).await }
    };
    let (s, v) = import(target.url("/card.json"), "direct").await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = import(target.url("/moved.json"), "moved").await;
    assert_eq!(s, 201, "a redirect within the origin is followed: {v}");

    // A redirect to another origin (here: another host name for the same server) is not
    // followed: the stand-in sees the first request only.
    let before = target.paths().len();
    let (s, v) = import(target.url("/away.json"), "away").await;
    let msg = v["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(s, 400, "{v}");
    assert!(msg.contains("another origin"), "{msg}");
    assert_eq!(target.paths()[before..], ["/away.json"]);

    // Error pages and non-JSON answers: the status or the reason, never the remote's text.
    for (path, want) in [
        ("/error.json", "HTTP 500"),
        ("/nowhere.json", "HTTP 404"),
        ("/not-json.json", "did not answer with JSON"),
    ] {
        let (s, v) = import(target.url(path), "page").await;
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(s, 400, "{path}: {v}");
        assert!(msg.contains(want), "{path}: {msg}");
        assert!(!v.to_string().contains(MARKER), "{path}: {v}");
        let r = tool_anon(&th, "deploy_agent", json!({"cardUrl": target.url(path)})).await;
        let text = tool_error(&r);
        assert!(text.contains(want) && !text.contains(MARKER), "{text}");
    }

    // The a2a executor: a card (on an allowed host) naming a refused JSON-RPC endpoint gets
    // no request through, and an agent whose card is an error page reports only the status.
    let (s, v) = import(target.url("/bad-interface.json"), "iface").await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &th.rest("/agents"),
        json!({"id": "broken", "capabilities": [{"name": "echo"}],
               "executor": {"kind": "a2a", "url": target.url("/error.json")}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for (agent, want) in [
        ("iface", "A2A_EGRESS_ALLOWED_NETWORKS"),
        ("broken", "HTTP 500"),
    ] {
        let (s, v) = post(
            &th.rest(&format!("/agents/{agent}/invoke")),
            json!({"input": {"text": "hi"}, "wait": true, "timeoutMs": 30000}),
        )
        .await;
        assert_eq!((s, v["status"].as_str()), (200, Some("error")), "{v}");
        let err = v["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(want) && !err.contains(MARKER),
            "{agent}: {err}"
        );
    }
    assert!(
        !target.paths().iter().any(|p| p == "/rpc"),
        "{:?}",
        target.paths()
    );
    th.stop().await;
}
