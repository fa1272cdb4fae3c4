//! Security: the authorisation matrix over every surface and role, grants, rate limits,
//! hostile input, production refusal and the keys CLI. (TLS is in `tls.rs`.)

use std::time::Duration;

use a2a_mcp::model::{Principal, Role};
use serde_json::{Value, json};

use super::harness::*;

fn admin() -> Principal {
    Principal::new("local", Role::Admin)
}

pub async fn key(th: &TestHub, role: Role) -> String {
    th.hub
        .create_key(&admin(), role, &format!("test {}", role.as_str()), None)
        .await
        .unwrap()
        .0
}

pub async fn rest(
    th: &TestHub,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (s, v, _) = http(method, &th.rest(path), body, &headers).await;
    (s, v)
}

/// One stateless (2026-07-28) MCP request; returns (HTTP status, the JSON-RPC answer).
pub async fn mcp(url: &str, token: Option<&str>, method: &str, params: Value) -> (u16, Value) {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}
    });
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let auth = token.map(|t| format!("Bearer {t}"));
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut headers = vec![
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", method),
    ];
    if let Some(n) = &name {
        headers.push(("mcp-name", n.as_str()));
    }
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (s, text, _) = http_raw(
        "POST",
        url,
        body.to_string().into_bytes(),
        &[&[("content-type", "application/json")][..], &headers[..]].concat(),
    )
    .await;
    let answer = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("id").is_some())
        .or_else(|| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    (s, answer)
}

pub async fn tool(th: &TestHub, token: &str, name: &str, args: Value) -> Value {
    let (s, v) = mcp(
        &th.mcp_url(),
        Some(token),
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
    .await;
    assert_eq!(s, 200, "{name}: {v}");
    v["result"].clone()
}

pub fn is_forbidden(result: &Value) -> bool {
    result["isError"] == true
        && result["content"][0]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("forbidden")
}

#[tokio::test]
async fn authorization_matrix_across_surfaces_and_roles() {
    let th = TestHub::start_with(&[("auth", "required")]).await;
    let admin_k = key(&th, Role::Admin).await;
    let operator = key(&th, Role::Operator).await;
    let alice = key(&th, Role::Invoker).await;
    let bob = key(&th, Role::Invoker).await;
    let viewer = key(&th, Role::Viewer).await;

    // No key, a bad key: 401 on every surface.
    for token in [
        None,
        Some("a2a_000000000000_notakeyatallnotakeyatallnotakeyatall"),
    ] {
        let (s, v) = rest(&th, "GET", "/agents", token, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "{token:?}"
        );
        let (s, v) = mcp(&th.mcp_url(), token, "tools/list", json!({})).await;
        assert_eq!(s, 401, "{v}");
        assert!(v["error"]["message"].is_string());
        let err = tokio_tungstenite::connect_async(th.ws_url("").as_str())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
    let (_, _, h) = http("GET", &th.rest("/agents"), None, &[]).await;
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // Public: the OpenAPI document.
    let (s, _) = rest(&th, "GET", "/openapi.json", None, None).await;
    assert_eq!(s, 200);

    // Alice and Bob each invoke; invokers see and cancel only their own requests.
    let (s, a_req) = rest(
        &th,
        "POST",
        "/agents/echo/invoke",
        Some(&alice),
        Some(json!({"input": echo_input("alice", 1, 3000)})),
    )
    .await;
    assert_eq!(s, 202, "{a_req}");
    let a_id = a_req["requestId"].as_str().unwrap().to_string();
    let (s, b_req) = rest(
        &th,
        "POST",
        "/agents/echo/invoke",
        Some(&bob),
        Some(json!({"input": echo_input("bob", 1, 0)})),
    )
    .await;
    assert_eq!(s, 202);
    let b_id = b_req["requestId"].as_str().unwrap().to_string();
    assert_eq!(
        rest(&th, "GET", &format!("/requests/{a_id}"), Some(&alice), None)
            .await
            .0,
        200
    );
    assert_eq!(
        rest(&th, "GET", &format!("/requests/{b_id}"), Some(&alice), None)
            .await
            .0,
        403
    );
    assert_eq!(
        rest(
            &th,
            "POST",
            &format!("/requests/{b_id}/cancel"),
            Some(&alice),
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    let (_, listed) = rest(&th, "GET", "/requests", Some(&alice), None).await;
    let ids: Vec<&str> = listed["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requestId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![a_id.as_str()],
        "an invoker lists only its own requests"
    );
    // The stream of another caller's request is refused before the upgrade.
    let err = tokio_tungstenite::connect_async(
        th.ws_url(&format!("?requestId={b_id}&token={alice}"))
            .as_str(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={b_id}&token={bob}"))).await;
    let (events, _) = ws_read_all(&mut ws).await;
    assert_complete_stream(&events, "final");
    // Invokers may not change agents, read stats, keys or the audit log.
    let spec = json!({"id": "x1", "capabilities": [{"name": "c"}], "executor": {"kind": "builtin", "name": "echo"}});
    assert_eq!(
        rest(&th, "POST", "/agents", Some(&alice), Some(spec.clone()))
            .await
            .0,
        403
    );
    assert_eq!(rest(&th, "GET", "/stats", Some(&alice), None).await.0, 403);
    assert_eq!(
        rest(&th, "GET", "/admin/keys", Some(&alice), None).await.0,
        403
    );
    assert_eq!(
        rest(&th, "GET", "/admin/audit", Some(&alice), None).await.0,
        403
    );

    // Viewers read everything but change nothing.
    assert_eq!(
        rest(&th, "GET", "/agents", Some(&viewer), None).await.0,
        200
    );
    assert_eq!(
        rest(
            &th,
            "GET",
            &format!("/requests/{b_id}"),
            Some(&viewer),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(rest(&th, "GET", "/stats", Some(&viewer), None).await.0, 200);
    let (s, _) = rest(
        &th,
        "POST",
        "/agents/echo/invoke",
        Some(&viewer),
        Some(json!({"input": echo_input("v", 1, 0)})),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        rest(
            &th,
            "POST",
            &format!("/requests/{a_id}/cancel"),
            Some(&viewer),
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        rest(&th, "POST", "/agents", Some(&viewer), Some(spec.clone()))
            .await
            .0,
        403
    );

    // Operators manage agents and all requests, but not keys or the audit log.
    assert_eq!(
        rest(&th, "POST", "/agents", Some(&operator), Some(spec.clone()))
            .await
            .0,
        201
    );
    assert_eq!(
        rest(
            &th,
            "POST",
            &format!("/requests/{a_id}/cancel"),
            Some(&operator),
            Some(json!({}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        rest(&th, "GET", "/admin/keys", Some(&operator), None)
            .await
            .0,
        403
    );
    assert_eq!(
        rest(&th, "GET", "/admin/audit", Some(&operator), None)
            .await
            .0,
        403
    );
    // Process agents need an admin at run time (A2A_RUNTIME_PROCESS_AGENTS=admin).
    let proc_spec = json!({"id": "p1", "capabilities": [{"name": "c"}], "executor": {"kind": "process", "command": ["/bin/true"]}});
    assert_eq!(
        rest(
            &th,
            "POST",
            "/agents",
            Some(&operator),
            Some(proc_spec.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        rest(&th, "POST", "/agents", Some(&admin_k), Some(proc_spec))
            .await
            .0,
        201
    );

    // Admins: keys and audit.
    let (s, keys) = rest(&th, "GET", "/admin/keys", Some(&admin_k), None).await;
    assert_eq!(s, 200);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 5);
    assert!(
        !keys.to_string().contains(&alice),
        "secrets are never listed"
    );

    // MCP: the same rules, and tools/list shows only what the caller may use.
    let names = |v: &Value| -> Vec<String> {
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = mcp(&th.mcp_url(), Some(&viewer), "tools/list", json!({})).await;
    let viewer_tools = names(&v);
    assert!(
        viewer_tools.contains(&"list_agents".into()) && viewer_tools.contains(&"get_status".into())
    );
    assert!(
        !viewer_tools.contains(&"invoke_agent".into())
            && !viewer_tools.contains(&"create_api_key".into())
    );
    let (_, v) = mcp(&th.mcp_url(), Some(&alice), "tools/list", json!({})).await;
    let alice_tools = names(&v);
    assert!(alice_tools.contains(&"invoke_agent".into()));
    assert!(
        !alice_tools.contains(&"deploy_agent".into())
            && !alice_tools.contains(&"get_audit_log".into())
    );
    let (_, v) = mcp(&th.mcp_url(), Some(&admin_k), "tools/list", json!({})).await;
    assert_eq!(names(&v).len(), 26, "admins see every tool");
    assert!(is_forbidden(
        &tool(
            &th,
            &viewer,
            "invoke_agent",
            json!({"agentId": "echo", "input": echo_input("x", 1, 0)})
        )
        .await
    ));
    assert!(is_forbidden(
        &tool(&th, &alice, "get_status", json!({"requestId": b_id})).await
    ));
    assert!(is_forbidden(
        &tool(&th, &alice, "create_api_key", json!({"role": "admin"})).await
    ));
    let ok = tool(&th, &alice, "get_status", json!({"requestId": a_id})).await;
    assert_eq!(ok["isError"], false, "{ok}");

    // Revoked and expired keys stop working at once.
    let bob_id = a2a_mcp::policy::keys::token_id(&bob).unwrap().to_string();
    assert_eq!(
        rest(
            &th,
            "DELETE",
            &format!("/admin/keys/{bob_id}"),
            Some(&admin_k),
            None
        )
        .await
        .0,
        200
    );
    let (s, v) = rest(&th, "GET", "/agents", Some(&bob), None).await;
    assert_eq!(s, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("revoked"));
    let (short, _) = th
        .hub
        .create_key(
            &admin(),
            Role::Viewer,
            "short",
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    assert_eq!(rest(&th, "GET", "/agents", Some(&short), None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, v) = rest(&th, "GET", "/agents", Some(&short), None).await;
    assert_eq!(s, 401);
    assert!(v["error"]["message"].as_str().unwrap().contains("expired"));

    // Every decision is in the audit log, with who, role, surface, action and outcome.
    let (_, audit) = rest(&th, "GET", "/admin/audit?limit=1000", Some(&admin_k), None).await;
    let entries = audit["entries"].as_array().unwrap();
    let has = |action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["outcome"] == outcome)
    };
    assert!(has("invoke", "ok") && has("invoke", "denied"));
    assert!(has("agents.deploy", "ok") && has("agents.write", "denied"));
    assert!(has("keys.create", "ok") && has("keys.revoke", "ok"));
    assert!(has("cancel", "ok"));
    let e = entries
        .iter()
        .find(|e| e["action"] == "invoke" && e["outcome"] == "ok")
        .unwrap();
    assert!(
        e["keyId"].is_string() && e["role"] == "invoker" && e["surface"] == "rest",
        "{e}"
    );
    th.stop().await;
}

#[tokio::test]
async fn per_agent_access_lists_from_the_catalog() {
    let catalog = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_dir().join("data/catalog/echo.toml"),
        catalog.path().join("echo.toml"),
    )
    .unwrap();
    std::fs::write(
        catalog.path().join("policy.toml"),
        r#"
[[agents]]
id = "billing-eu"
capabilities = [{ name = "chat" }]
executor = { kind = "builtin", name = "echo" }

[[policies]]
agents = ["billing-*"]
roles = ["operator"]
"#,
    )
    .unwrap();
    let dir = catalog.path().display().to_string();
    let th = TestHub::start_with(&[("auth", "required"), ("catalog_dir", &dir)]).await;
    let invoker = key(&th, Role::Invoker).await;
    let operator = key(&th, Role::Operator).await;
    let body = json!({"input": echo_input("x", 1, 0)});
    let (s, v) = rest(
        &th,
        "POST",
        "/agents/billing-eu/invoke",
        Some(&invoker),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("access list")
    );
    assert_eq!(
        rest(
            &th,
            "POST",
            "/agents/echo/invoke",
            Some(&invoker),
            Some(body.clone())
        )
        .await
        .0,
        202
    );
    assert_eq!(
        rest(
            &th,
            "POST",
            "/agents/billing-eu/invoke",
            Some(&operator),
            Some(body)
        )
        .await
        .0,
        202
    );
    th.stop().await;
}

#[tokio::test]
async fn grants_gate_handoffs_and_agent_callbacks() {
    let th = TestHub::start().await;
    for id in ["alpha", "beta"] {
        let (s, v) = post(
            &th.rest("/agents"),
            json!({"id": id, "capabilities": [{"name": "chat"}],
            "executor": {"kind": "builtin", "name": "echo"}}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let (_, parent) = post(
        &th.rest("/agents/alpha/invoke"),
        json!({"input": echo_input("p", 1, 0), "wait": true}),
    )
    .await;
    let pid = parent["requestId"].as_str().unwrap();
    let handoff_url = th.rest(&format!("/requests/{pid}/handoff"));
    let handoff = || {
        post(
            &handoff_url,
            json!({"agentId": "beta", "input": echo_input("h", 1, 0)}),
        )
    };
    let (s, v) = handoff().await;
    assert_eq!(s, 403, "no grant yet: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("agent:invoke:beta")
    );

    let (s, g) = post(
        &th.rest("/permissions/grants"),
        json!({"agentId": "alpha", "permission": "agent:invoke:beta"}),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(handoff().await.0, 202);
    let gid = g["grantId"].as_str().unwrap();
    let (s, _, _) = http(
        "DELETE",
        &th.rest(&format!("/permissions/grants/{gid}")),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(handoff().await.0, 403, "revoked grants stop counting");

    // An expiring grant.
    let (s, _) = post(
        &th.rest("/permissions/grants"),
        json!({"agentId": "alpha", "permission": "agent:invoke:be*", "expiresIn": "400ms"}),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(handoff().await.0, 202, "globs match");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handoff().await.0, 403, "expired grants stop counting");

    // Request, wait, approve.
    let th2 = th.hub.clone();
    let waiting = tokio::spawn(async move {
        th2.request_permission(
            &admin(),
            Some("alpha"),
            "agent:invoke:beta",
            "needs beta",
            Some(Duration::from_secs(20)),
        )
        .await
        .unwrap()
    });
    let mut pending = None;
    for _ in 0..100 {
        let (_, perms) = get(&th.rest("/permissions?agentId=alpha")).await;
        pending = perms["requests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["status"] == "pending")
            .map(|r| r["permissionRequestId"].as_str().unwrap().to_string());
        if pending.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let prid = pending.expect("a pending request");
    let (s, d) = post(
        &th.rest(&format!("/permissions/requests/{prid}/approve")),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{d}");
    let decided = waiting.await.unwrap();
    assert_eq!(
        decided.status,
        a2a_mcp::policy::grants::RequestStatus::Approved
    );
    assert!(decided.grant_id.is_some());
    assert_eq!(handoff().await.0, 202);
    let (s, v) = post(
        &th.rest(&format!("/permissions/requests/{prid}/deny")),
        json!({}),
    )
    .await;
    assert_eq!(s, 409, "decided once: {v}");

    // A process agent calling back into the hub acts as itself and needs the grant.
    let (s, v) = post(&th.rest("/agents"), json!({"id": "caller", "capabilities": [{"name": "run"}],
        "executor": {"kind": "process", "command": [repo_dir().join("tests/agents/callback.sh").display().to_string()]}})).await;
    assert_eq!(s, 201, "{v}");
    let run_url = th.rest("/agents/caller/invoke");
    let run = || {
        post(
            &run_url,
            json!({"input": {"target": "beta"}, "wait": true, "timeoutMs": 20000}),
        )
    };
    let (s, v) = run().await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["status"], 403, "no grant for caller: {v}");
    post(
        &th.rest("/permissions/grants"),
        json!({"agentId": "caller", "permission": "agent:invoke:beta"}),
    )
    .await;
    let (_, v) = run().await;
    assert_eq!(v["result"]["status"], 202, "with the grant: {v}");

    // Decisions are audited.
    let entries = th.hub.list_audit(&admin(), None, 1000).await.unwrap();
    for action in [
        "permissions.grant",
        "permissions.revoke",
        "permissions.request",
        "permissions.approve",
    ] {
        assert!(
            entries.iter().any(|e| e.action == action),
            "{action} audited"
        );
    }
    assert!(entries.iter().any(|e| e.action == "invoke"
        && e.principal == "agent:caller"
        && e.outcome.as_str() == "denied"));
    th.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_and_spare_other_keys() {
    let th = TestHub::start_with(&[
        ("auth", "required"),
        ("rate_limits", "default=5/s,admin=off"),
    ])
    .await;
    let noisy = key(&th, Role::Invoker).await;
    let quiet = key(&th, Role::Invoker).await;
    let before = metric(&th, "a2a_rate_limit_hits_total").await;
    let mut limited = 0;
    let mut retry_after = None;
    for _ in 0..20 {
        let (s, v, h) = http(
            "GET",
            &th.rest("/agents"),
            None,
            &[("authorization", &format!("Bearer {noisy}"))],
        )
        .await;
        if s == 429 {
            limited += 1;
            assert_eq!(v["error"]["code"], "rate_limited");
            retry_after = h
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
    }
    assert!(
        limited >= 10,
        "a burst of 20 against 5/s must be refused: {limited}"
    );
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        rest(&th, "GET", "/agents", Some(&quiet), None).await.0,
        200,
        "other keys are unaffected"
    );
    // MCP: the same limit, as a JSON-RPC error with the retry time.
    let (s, v) = mcp(&th.mcp_url(), Some(&noisy), "tools/list", json!({})).await;
    assert_eq!(s, 429, "{v}");
    assert!(v["error"]["data"]["retryAfterSeconds"].as_u64().unwrap() >= 1);
    let after = metric(&th, "a2a_rate_limit_hits_total").await;
    assert!(after >= before + limited as f64, "{before} -> {after}");
    let (s, _) = get(&th.ops_url("/healthz")).await;
    assert_eq!(s, 200);
    th.stop().await;
}

#[tokio::test]
async fn websocket_subscribe_flood_closes_with_1013() {
    let th = TestHub::start_with(&[("auth", "required"), ("rate_limits", "default=3/s")]).await;
    let k = key(&th, Role::Invoker).await;
    let (_, v) = rest(
        &th,
        "POST",
        "/agents/echo/invoke",
        Some(&k),
        Some(json!({"input": echo_input("x", 1, 0)})),
    )
    .await;
    let id = v["requestId"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ws = ws_connect(&th.ws_url(&format!("?token={k}"))).await;
    for _ in 0..10 {
        ws_send(&mut ws, json!({"type": "unsubscribe", "requestId": id})).await;
        ws_send(&mut ws, json!({"type": "subscribe", "requestId": id})).await;
    }
    let (frames, close) = ws_read_all(&mut ws).await;
    assert_eq!(close, Some(1013), "{frames:?}");
    assert!(frames.iter().any(|f| f["code"] == "rate_limited"));
    th.stop().await;
}

pub async fn metric(th: &TestHub, name: &str) -> f64 {
    let (_, text, _) = http_raw("GET", &th.ops_url("/metrics"), vec![], &[]).await;
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn hostile_input_gets_clear_errors_and_changes_nothing() {
    let th = TestHub::start_with(&[("header_timeout", "1s")]).await;
    let before = th.hub.store_counts().await.unwrap();
    let ct = ("content-type", "application/json");
    // Deeply nested JSON: REST and MCP answer 400, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (s, body, _) = http_raw(
        "POST",
        &th.rest("/agents/echo/invoke"),
        deep.clone().into_bytes(),
        &[ct],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, body, _) = http_raw(
        "POST",
        &th.mcp_url(),
        deep.into_bytes(),
        &[ct, ("accept", "application/json, text/event-stream")],
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let nested_input = format!(
        r#"{{"input": {{"messages": [{{"role":"user","content":"x"}}], "extra": {}{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let (s, _, _) = http_raw(
        "POST",
        &th.rest("/agents/echo/invoke"),
        nested_input.into_bytes(),
        &[ct],
    )
    .await;
    assert_eq!(s, 400);
    // Bad tokens: malformed, non-ASCII, absurdly long.
    for auth in [
        "Bearer",
        "Basic Zm9vOmJhcg==",
        "Bearer a2a_zzzzzzzzzzzz_x",
        &format!("Bearer {}", "k".repeat(10_000)),
    ] {
        let (s, _, _) = http_raw(
            "GET",
            &th.rest("/agents"),
            vec![],
            &[("authorization", auth)],
        )
        .await;
        assert!(s == 200 || s == 401, "{auth:.20} -> {s}");
    }
    let th_req = TestHub::start_with(&[("auth", "required"), ("header_timeout", "1s")]).await;
    for auth in [
        "Bearer",
        "Bearer a2a_zzzzzzzzzzzz_x",
        &format!("Bearer {}", "k".repeat(10_000)),
    ] {
        let (s, _, _) = http_raw(
            "GET",
            &th_req.rest("/agents"),
            vec![],
            &[("authorization", auth)],
        )
        .await;
        assert_eq!(s, 401, "{auth:.20}");
    }
    th_req.stop().await;
    // Forged Origin on MCP and the WebSocket upgrade: 403.
    let (s, _, _) = http_raw(
        "POST",
        &th.mcp_url(),
        b"{}".to_vec(),
        &[ct, ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(s, 403);
    // A slow client (slowloris): headers never finish; the server closes the connection.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(th.api).await.unwrap();
    slow.write_all(b"GET /api/v1/agents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a client that never finishes its headers is disconnected"
    );
    // Invalid UTF-8 in a query string and a path.
    let (s, _, _) = http_raw(
        "GET",
        &format!("{}/requests/%FF%FE", th.rest("")),
        vec![],
        &[],
    )
    .await;
    assert!((400..500).contains(&s), "{s}");
    // Nothing changed, the server still serves.
    assert_eq!(th.hub.store_counts().await.unwrap(), before);
    let (s, _) = get(&th.ops_url("/healthz")).await;
    assert_eq!(s, 200);
    th.stop().await;
}

#[tokio::test]
async fn production_refuses_an_open_listener_until_a_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(dir.path())
            .arg("--catalog-dir")
            .arg(repo_dir().join("data/catalog"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("A2A_BACKUP_DIR", dir.path().join("backup"))
            .env("A2A_ENV", "production");
        cmd.output().unwrap()
    };
    let out = run(&[
        "--host",
        "0.0.0.0",
        "--stream-port",
        "0",
        "--metrics-port",
        "0",
        "serve",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen") && err.contains("keys create --role admin"),
        "{err}"
    );
    // Create a key offline (the server is stopped); it prints the key once.
    let out = run(&["keys", "create", "--role", "admin", "--label", "ops"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("a2a_"), "{token}");
    let out = run(&["keys", "list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("admin") && listed.contains("ops") && !listed.contains(&token),
        "{listed}"
    );
    // Now production starts on 0.0.0.0 and requires the key.
    let mut b = TestBinary::serve(
        dir.path(),
        &[("A2A_ENV", "production"), ("STREAM_HOST", "0.0.0.0")],
    )
    .await;
    let url = format!("http://127.0.0.1:{}/api/v1/agents", b.api.port());
    let (s, _, _) = http("GET", &url, None, &[]).await;
    assert_eq!(s, 401);
    let (s, _, _) = http(
        "GET",
        &url,
        None,
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(s, 200);
    // keys list against the running server goes through its admin API.
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "keys",
            "list",
            "--url",
            &format!("http://127.0.0.1:{}", b.api.port()),
            "--token",
            &token,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ops"));
    let status = b.sigterm_and_wait().await;
    assert!(status.success());
}

/// One A2A 1.0 JSON-RPC call with an optional key; returns (status, answer, headers).
async fn a2a(
    th: &TestHub,
    token: Option<&str>,
    method: &str,
    params: Value,
) -> (u16, Value, http::HeaderMap) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("a2a-version", "1.0")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    http(
        "POST",
        &format!("http://{}/a2a/echo", th.api),
        Some(body),
        &headers,
    )
    .await
}

fn a2a_message(text: &str) -> Value {
    json!({"message": {"messageId": format!("m-{text}"), "role": "ROLE_USER",
        "parts": [{"text": text}]}, "configuration": {"returnImmediately": false}})
}

#[tokio::test]
async fn a2a_surface_enforces_keys_roles_and_ownership() {
    let th = TestHub::start_with(&[("auth", "required")]).await;
    let admin_k = key(&th, Role::Admin).await;
    let alice = key(&th, Role::Invoker).await;
    let bob = key(&th, Role::Invoker).await;
    let viewer = key(&th, Role::Viewer).await;

    // The card is public and says how to authenticate.
    let (s, card, _) = http(
        "GET",
        &format!("http://{}/a2a/echo/.well-known/agent-card.json", th.api),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200, "{card}");
    assert_eq!(
        card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"],
        "Bearer"
    );
    assert!(card["securityRequirements"][0]["schemes"]["bearer"].is_object());

    // No key, a bad key: 401 with a JSON-RPC error body and a challenge; nothing runs.
    for token in [
        None,
        Some("a2a_000000000000_notakeyatallnotakeyatallnotakeyatall"),
    ] {
        let (s, v, h) = a2a(&th, token, "SendMessage", a2a_message("anon")).await;
        assert_eq!(s, 401, "{v}");
        assert_eq!(v["jsonrpc"], "2.0");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    assert!(
        th.hub
            .list_requests(&admin(), &Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // A viewer may read but not invoke.
    let (s, v, _) = a2a(&th, Some(&viewer), "SendMessage", a2a_message("viewer")).await;
    assert_eq!(s, 200);
    assert_eq!(v["error"]["code"], 40300, "{v}");
    assert_eq!(
        v["error"]["data"][0]["metadata"]["errorCode"], "forbidden",
        "{v}"
    );

    // Alice's task is hers: Bob can neither read, list nor cancel it (as on REST: forbidden).
    let (s, v, _) = a2a(&th, Some(&alice), "SendMessage", a2a_message("alice")).await;
    assert_eq!(s, 200, "{v}");
    let task = v["result"]["task"].clone();
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{v}");
    let tid = task["id"].as_str().unwrap().to_string();
    let (_, v, _) = a2a(&th, Some(&alice), "GetTask", json!({"id": tid})).await;
    assert_eq!(v["result"]["id"], tid.as_str(), "{v}");
    for method in ["GetTask", "CancelTask"] {
        let (_, v, _) = a2a(&th, Some(&bob), method, json!({"id": tid})).await;
        assert_eq!(v["error"]["code"], 40300, "{method}: {v}");
    }
    let (_, v, _) = a2a(&th, Some(&bob), "ListTasks", json!({})).await;
    assert_eq!(v["result"]["tasks"], json!([]), "{v}");
    let (_, v, _) = a2a(&th, Some(&alice), "ListTasks", json!({})).await;
    assert_eq!(v["result"]["tasks"].as_array().unwrap().len(), 1, "{v}");
    // An admin sees every task.
    let (_, v, _) = a2a(&th, Some(&admin_k), "GetTask", json!({"id": tid})).await;
    assert_eq!(v["result"]["id"], tid.as_str(), "{v}");
    // Push configs send the task's events away: only who may act on the task sets one.
    let push = json!({"taskId": tid, "id": "hook", "url": "https://hooks.example.com/a2a"});
    for who in [&bob, &viewer] {
        let (_, v, _) = a2a(
            &th,
            Some(who),
            "CreateTaskPushNotificationConfig",
            push.clone(),
        )
        .await;
        assert_eq!(v["error"]["code"], 40300, "{v}");
    }
    let (_, v, _) = a2a(
        &th,
        Some(&alice),
        "CreateTaskPushNotificationConfig",
        push.clone(),
    )
    .await;
    assert_eq!(v["result"]["id"], "hook", "{v}");
    let del = json!({"taskId": tid, "id": "hook"});
    let (_, v, _) = a2a(
        &th,
        Some(&bob),
        "DeleteTaskPushNotificationConfig",
        del.clone(),
    )
    .await;
    assert_eq!(v["error"]["code"], 40300, "{v}");
    let (_, v, _) = a2a(&th, Some(&alice), "DeleteTaskPushNotificationConfig", del).await;
    assert!(v.get("error").is_none(), "{v}");

    // The decisions are audited with the A2A surface.
    let (_, audit) = rest(&th, "GET", "/admin/audit?limit=1000", Some(&admin_k), None).await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "invoke" && e["outcome"] == "ok" && e["surface"] == "a2a"),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "invoke" && e["outcome"] == "denied" && e["surface"] == "a2a"),
        "{audit}"
    );
    for (action, outcome) in [
        ("push_configs.write", "ok"),
        ("push_configs.write", "denied"),
        ("push_configs.delete", "ok"),
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["outcome"] == outcome),
            "{action} {outcome}: {audit}"
        );
    }

    // The official client authenticates with the key on its HTTP session.
    let out = run_python(
        "a2a_client_auth.py",
        &[format!("http://{}", th.api), alice.clone()],
    )
    .await;
    assert!(out.contains("ALL OK"), "{out}");
    th.stop().await;
}

/// `A2A_OPS_TOKEN` puts the metrics and the status report behind a bearer token; the probes
/// stay open (kubelet and load balancers send no credentials).
#[tokio::test]
async fn ops_token_guards_metrics_and_status_but_not_probes() {
    let th = TestHub::start_with(&[("ops_token", "ops-s3cret")]).await;
    for probe in ["/healthz", "/readyz"] {
        let (s, _) = get(&th.ops_url(probe)).await;
        assert_eq!(s, 200, "{probe}");
    }
    for path in ["/metrics", "/api/agent?action=status"] {
        let url = th.ops_url(path);
        let (s, v, h) = http("GET", &url, None, &[]).await;
        assert_eq!(s, 401, "{path}: {v}");
        assert!(h.get("www-authenticate").is_some(), "{path}");
        assert!(v.to_string().contains("A2A_OPS_TOKEN"), "{v}");
        let (s, _, _) = http("GET", &url, None, &[("authorization", "Bearer wrong")]).await;
        assert_eq!(s, 401, "{path}");
        // An API key is not the ops token.
        let (s, _, _) = http("GET", &url, None, &[("authorization", "Bearer ops-s3cre")]).await;
        assert_eq!(s, 401, "{path}");
        let (s, v, _) = http("GET", &url, None, &[("authorization", "Bearer ops-s3cret")]).await;
        assert_eq!(s, 200, "{path}");
        let served = if path == "/metrics" {
            v.as_str().is_some_and(|t| t.contains("# TYPE a2a_"))
        } else {
            v["stats"].is_object()
        };
        assert!(served, "{path}: {v}");
    }
    th.stop().await;
}
