//! `agent_control`, the original A2A MCP server's tool: every action with the original
//! server's argument names over a real MCP connection, its `{ok, data}` envelope, the
//! refusals of the roles and the actions that are not supported here. The permission actions
//! are in `agent_control_grants.rs`; the round trip of `describe_agent` into `deploy_agent`
//! and the output schemas in `mcp.rs`.

use std::time::Duration;

use a2a_mcp::model::Role;
use serde_json::{Value, json};

use super::harness::*;
use super::security::{key, mcp};

/// One `agent_control` call; returns the tool result.
pub async fn ctl(th: &TestHub, token: Option<&str>, args: Value) -> Value {
    call(th, token, "agent_control", args).await
}

pub async fn call(th: &TestHub, token: Option<&str>, name: &str, args: Value) -> Value {
    let (s, v) = mcp(
        &th.mcp_url(),
        token,
        "tools/call",
        json!({"name": name, "arguments": args}),
    )
    .await;
    assert_eq!(s, 200, "{name}: {v}");
    v["result"].clone()
}

/// The `data` of a successful envelope.
pub fn data(r: &Value) -> Value {
    assert_ne!(r["isError"], true, "{r}");
    let sc = &r["structuredContent"];
    assert_eq!(sc["ok"], true, "{r}");
    sc["data"].clone()
}

/// The `error` of a failed envelope (`isError` set, the original codes).
pub fn failure(r: &Value) -> Value {
    assert_eq!(r["isError"], true, "{r}");
    let sc = &r["structuredContent"];
    assert_eq!(sc["ok"], false, "{r}");
    assert!(sc["error"]["message"].is_string(), "{r}");
    sc["error"].clone()
}

pub async fn ok(th: &TestHub, args: Value) -> Value {
    data(&ctl(th, None, args).await)
}

pub fn chat(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

/// The original server's agent descriptor; the executor goes in `config` (it had none).
pub fn descriptor(id: &str, tags: &[&str], category: &str) -> Value {
    json!({
        "id": id, "name": format!("Agent {id}"), "version": "2.0.0",
        "category": category, "tags": tags, "enabled": true, "deployedAt": 1_700_000_000_000u64,
        "capabilities": [{
            "name": "chat", "description": "Echo the messages back.",
            "inputSchema": {"type": "object", "required": ["messages"]},
            "outputSchema": {"type": "object"}
        }],
        "config": {"executor": {"kind": "builtin", "name": "echo"}}
    })
}

async fn wait_done(th: &TestHub, id: &str) -> Value {
    for _ in 0..500 {
        let d = ok(th, json!({"action": "get_status", "requestId": id})).await;
        if d["status"] == "done" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("request {id} never finished");
}

#[tokio::test]
async fn list_agents_takes_the_original_filter() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("util-b", &["x"], "tools")}),
    )
    .await;
    ok(&th, json!({"action": "disable_agent", "id": "util-b"})).await;
    // No filter: every agent, disabled ones too, described in full.
    let all = ok(&th, json!({"action": "list_agents"})).await;
    let ids: Vec<&str> = all["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"echo") && ids.contains(&"util-b"), "{all}");
    assert!(
        all["agents"][0]["capabilities"][0]["inputSchema"].is_object(),
        "{all}"
    );
    let off = ok(
        &th,
        json!({"action": "list_agents", "filter": {"enabled": false}}),
    )
    .await;
    assert_eq!(off["agents"].as_array().unwrap().len(), 1, "{off}");
    assert_eq!(off["agents"][0]["id"], "util-b");
    let tagged = ok(
        &th,
        json!({"action": "list_agents", "filter": {"tags": ["builtin"], "search": "ECH"}}),
    )
    .await;
    assert_eq!(tagged["agents"].as_array().unwrap().len(), 1, "{tagged}");
    assert_eq!(tagged["agents"][0]["id"], "echo");
    th.stop().await;
}

#[tokio::test]
async fn filter_agents_answers_agents_and_count() {
    let th = TestHub::start().await;
    let batch = json!([
        descriptor("f-one", &["red"], "paint"),
        descriptor("f-two", &["blue"], "paint")
    ]);
    ok(&th, json!({"action": "deploy_batch", "agents": batch})).await;
    let d = ok(&th, json!({"action": "filter_agents", "category": "paint"})).await;
    assert_eq!(d["count"], 2, "{d}");
    let d = ok(
        &th,
        json!({"action": "filter_agents", "tags": ["blue", "green"], "enabled": true}),
    )
    .await;
    assert_eq!(
        (d["count"].clone(), d["agents"][0]["id"].clone()),
        (json!(1), json!("f-two")),
        "{d}"
    );
    let d = ok(&th, json!({"action": "filter_agents", "search": "no such"})).await;
    assert_eq!(d["count"], 0, "{d}");
    th.stop().await;
}

#[tokio::test]
async fn describe_agent_takes_id() {
    let th = TestHub::start().await;
    let d = ok(&th, json!({"action": "describe_agent", "id": "echo"})).await;
    assert_eq!(d["id"], "echo");
    assert_eq!(d["capabilities"][0]["name"], "chat");
    assert!(
        d["capabilities"][0]["inputSchema"]["required"].is_array(),
        "{d}"
    );
    let e = failure(
        &ctl(
            &th,
            None,
            json!({"action": "describe_agent", "id": "nobody"}),
        )
        .await,
    );
    assert_eq!(
        (e["code"].as_str(), e["reason"].as_str()),
        (Some("ERR_NOT_FOUND"), Some("agent_not_found")),
        "{e}"
    );
    th.stop().await;
}

#[tokio::test]
async fn open_session_keeps_the_given_session_id() {
    let th = TestHub::start().await;
    let d = ok(
        &th,
        json!({"action": "open_session", "sessionId": "client-chosen-1"}),
    )
    .await;
    assert_eq!(
        (d["sessionId"].as_str(), d["open"].as_bool()),
        (Some("client-chosen-1"), Some(true)),
        "{d}"
    );
    // Opening it again gives the same session; requests join it under that id.
    let again = ok(
        &th,
        json!({"action": "open_session", "sessionId": "client-chosen-1"}),
    )
    .await;
    assert_eq!(again["createdAt"], d["createdAt"]);
    let r = ok(
        &th,
        json!({"action": "invoke_agent", "agentId": "echo", "capability": "chat",
        "input": chat("hi"), "sessionId": "client-chosen-1"}),
    )
    .await;
    assert_eq!(r["sessionId"], "client-chosen-1", "{r}");
    // Without an id: a new one.
    let fresh = ok(&th, json!({"action": "open_session"})).await;
    assert!(
        fresh["sessionId"]
            .as_str()
            .is_some_and(|s| s != "client-chosen-1"),
        "{fresh}"
    );
    let e = failure(
        &ctl(
            &th,
            None,
            json!({"action": "open_session", "sessionId": "bad id/.."}),
        )
        .await,
    );
    assert_eq!(e["code"], "ERR_BAD_REQUEST", "{e}");
    th.stop().await;
}

#[tokio::test]
async fn a_chosen_session_id_belongs_to_who_opened_it() {
    let th = TestHub::start_with(&[("auth", "required")]).await;
    let alice = key(&th, Role::Invoker).await;
    let bob = key(&th, Role::Invoker).await;
    let d = data(
        &ctl(
            &th,
            Some(&alice),
            json!({"action": "open_session", "sessionId": "mine"}),
        )
        .await,
    );
    assert_eq!(d["sessionId"], "mine");
    let e = failure(
        &ctl(
            &th,
            Some(&bob),
            json!({"action": "open_session", "sessionId": "mine"}),
        )
        .await,
    );
    assert_eq!(e["code"], "ERR_BAD_REQUEST", "{e}");
    assert!(e["message"].as_str().unwrap().contains("taken"), "{e}");
    // Arguments may also come under `params`.
    let d = data(
        &ctl(
            &th,
            Some(&alice),
            json!({"action": "close_session", "params": {"sessionId": "mine"}}),
        )
        .await,
    );
    assert_eq!(d["closed"], true, "{d}");
    let e = failure(
        &ctl(
            &th,
            Some(&alice),
            json!({"action": "open_session", "sessionId": "mine"}),
        )
        .await,
    );
    assert_eq!(e["reason"], "session_closed", "{e}");
    th.stop().await;
}

#[tokio::test]
async fn close_session_closes_it() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "open_session", "sessionId": "to-close"}),
    )
    .await;
    let d = ok(
        &th,
        json!({"action": "close_session", "sessionId": "to-close"}),
    )
    .await;
    assert_eq!(
        (d["closed"].as_bool(), d["open"].as_bool()),
        (Some(true), Some(false)),
        "{d}"
    );
    let r = ctl(
        &th,
        None,
        json!({"action": "invoke_agent", "agentId": "echo", "capability": "chat",
        "input": chat("late"), "sessionId": "to-close"}),
    )
    .await;
    assert_eq!(failure(&r)["reason"], "session_closed", "{r}");
    let e = failure(&ctl(&th, None, json!({"action": "close_session"})).await);
    assert!(e["message"].as_str().unwrap().contains("sessionId"), "{e}");
    th.stop().await;
}

#[tokio::test]
async fn invoke_agent_answers_request_status_and_stream() {
    let th = TestHub::start().await;
    let args = json!({"action": "invoke_agent", "agentId": "echo", "capability": "chat",
        "input": chat("hello"), "idempotencyKey": "k-1"});
    let d = ok(&th, args.clone()).await;
    let id = d["requestId"].as_str().unwrap().to_string();
    assert!(
        d["status"].is_string() && d.get("streamUrl").is_some(),
        "{d}"
    );
    assert!(d["streamUrl"].as_str().unwrap().contains(&id), "{d}");
    assert_eq!(
        ok(&th, args).await["requestId"],
        id.as_str(),
        "same idempotency key, same request"
    );
    let done = wait_done(&th, &id).await;
    assert_eq!(done["result"]["messages"][0]["content"], "hello", "{done}");
    th.stop().await;
}

#[tokio::test]
async fn get_status_answers_the_record() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("status please", 1, 0)).await;
    let d = wait_done(&th, &id).await;
    assert_eq!(
        (d["id"].as_str(), d["requestId"].as_str()),
        (Some(id.as_str()), Some(id.as_str()))
    );
    assert_eq!(
        (d["agentId"].as_str(), d["capability"].as_str()),
        (Some("echo"), Some("chat"))
    );
    let e = failure(
        &ctl(
            &th,
            None,
            json!({"action": "get_status", "requestId": "nope"}),
        )
        .await,
    );
    assert_eq!(e["code"], "ERR_NOT_FOUND", "{e}");
    let e = failure(&ctl(&th, None, json!({"action": "get_status"})).await);
    assert_eq!(e["code"], "ERR_BAD_REQUEST", "{e}");
    th.stop().await;
}

#[tokio::test]
async fn cancel_answers_whether_it_canceled() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("slow", 100, 200)).await;
    let d = ok(&th, json!({"action": "cancel", "requestId": id})).await;
    assert_eq!(
        (d["canceled"].as_bool(), d["status"].as_str()),
        (Some(true), Some("canceled")),
        "{d}"
    );
    // A finished request: nothing to cancel, said as the original did.
    let d = ok(&th, json!({"action": "cancel", "requestId": id})).await;
    assert_eq!(d["canceled"], false, "{d}");
    th.stop().await;
}

#[tokio::test]
async fn handoff_takes_from_to_capability_and_payload() {
    let th = TestHub::start().await;
    let parent = ok(
        &th,
        json!({"action": "invoke_agent", "agentId": "echo", "capability": "chat",
        "input": chat("first")}),
    )
    .await;
    let pid = parent["requestId"].as_str().unwrap();
    let d = ok(
        &th,
        json!({"action": "handoff", "fromRequestId": pid, "toAgentId": "echo",
        "capability": "chat", "payload": chat("second")}),
    )
    .await;
    assert_eq!(
        (d["parentId"].as_str(), d["agentId"].as_str()),
        (Some(pid), Some("echo")),
        "{d}"
    );
    let done = wait_done(&th, d["requestId"].as_str().unwrap()).await;
    assert_eq!(done["result"]["messages"][0]["content"], "second", "{done}");
    th.stop().await;
}

#[tokio::test]
async fn deploy_agent_takes_the_original_descriptor() {
    let th = TestHub::start().await;
    let d = ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("legacy-one", &["old"], "compat")}),
    )
    .await;
    assert_eq!(
        (d["deployed"].as_bool(), d["agentId"].as_str()),
        (Some(true), Some("legacy-one")),
        "{d}"
    );
    assert_eq!(d["agent"]["version"], "2.0.0");
    // It is a real agent: it runs.
    let r = ok(&th, json!({"action": "invoke_agent", "agentId": "legacy-one", "capability": "chat", "input": chat("works")})).await;
    let done = wait_done(&th, r["requestId"].as_str().unwrap()).await;
    assert_eq!(done["result"]["messages"][0]["content"], "works");
    // Deploying the same id again replaces it, as the original did.
    let mut newer = descriptor("legacy-one", &["old"], "compat");
    newer["version"] = json!("3.0.0");
    assert_eq!(
        ok(&th, json!({"action": "deploy_agent", "agent": newer})).await["agent"]["version"],
        "3.0.0"
    );
    // Without an executor the answer says what is missing.
    let mut bare = descriptor("legacy-two", &[], "");
    bare.as_object_mut().unwrap().remove("config");
    let e = failure(&ctl(&th, None, json!({"action": "deploy_agent", "agent": bare})).await);
    assert_eq!(e["code"], "ERR_BAD_REQUEST");
    assert!(e["message"].as_str().unwrap().contains("executor"), "{e}");
    th.stop().await;
}

#[tokio::test]
async fn deploy_batch_counts_successes_and_failures() {
    let th = TestHub::start().await;
    let mut broken = descriptor("batch-bad", &[], "");
    broken["capabilities"] = json!([]);
    let d = ok(
        &th,
        json!({"action": "deploy_batch",
        "agents": [descriptor("batch-a", &[], ""), descriptor("batch-b", &[], ""), broken]}),
    )
    .await;
    assert_eq!(
        (d["success"].as_u64(), d["failed"].as_u64()),
        (Some(2), Some(1)),
        "{d}"
    );
    assert!(
        d["errors"][0].as_str().unwrap().contains("batch-bad"),
        "{d}"
    );
    for id in ["batch-a", "batch-b"] {
        assert_eq!(
            ok(&th, json!({"action": "describe_agent", "id": id})).await["id"],
            id
        );
    }
    let e = failure(&ctl(&th, None, json!({"action": "deploy_batch"})).await);
    assert_eq!(e["code"], "ERR_BAD_REQUEST", "{e}");
    th.stop().await;
}

#[tokio::test]
async fn update_agent_takes_id_and_updates() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("upd", &["a"], "c")}),
    )
    .await;
    let caps = json!([{"name": "talk", "inputSchema": {"type": "object"}}]);
    let d = ok(
        &th,
        json!({"action": "update_agent", "id": "upd",
        "updates": {"name": "Renamed", "tags": ["b"], "capabilities": caps}}),
    )
    .await;
    assert_eq!(
        (d["updated"].as_bool(), d["agentId"].as_str()),
        (Some(true), Some("upd")),
        "{d}"
    );
    let desc = ok(&th, json!({"action": "describe_agent", "id": "upd"})).await;
    assert_eq!(
        (desc["name"].as_str(), desc["tags"].clone()),
        (Some("Renamed"), json!(["b"])),
        "{desc}"
    );
    assert_eq!(desc["capabilities"][0]["name"], "talk");
    let d = ok(
        &th,
        json!({"action": "update_agent", "id": "ghost", "updates": {"name": "x"}}),
    )
    .await;
    assert_eq!(d, json!({"updated": false, "agentId": "ghost"}));
    th.stop().await;
}

#[tokio::test]
async fn enable_and_disable_agent_take_id() {
    let th = TestHub::start().await;
    let d = ok(&th, json!({"action": "disable_agent", "id": "echo"})).await;
    assert_eq!(
        (d["disabled"].as_bool(), d["agent"]["enabled"].as_bool()),
        (Some(true), Some(false)),
        "{d}"
    );
    let r = ctl(&th, None, json!({"action": "invoke_agent", "agentId": "echo", "capability": "chat", "input": chat("x")})).await;
    assert_eq!(failure(&r)["reason"], "agent_disabled", "{r}");
    let d = ok(&th, json!({"action": "enable_agent", "id": "echo"})).await;
    assert_eq!(
        (d["enabled"].as_bool(), d["agent"]["enabled"].as_bool()),
        (Some(true), Some(true)),
        "{d}"
    );
    let d = ok(&th, json!({"action": "enable_agent", "id": "ghost"})).await;
    assert_eq!(d, json!({"enabled": false, "agentId": "ghost"}));
    th.stop().await;
}

#[tokio::test]
async fn remove_agent_takes_id() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("gone-soon", &[], "")}),
    )
    .await;
    let d = ok(&th, json!({"action": "remove_agent", "id": "gone-soon"})).await;
    assert_eq!(d, json!({"removed": true, "agentId": "gone-soon"}));
    let d = ok(&th, json!({"action": "remove_agent", "id": "gone-soon"})).await;
    assert_eq!(d, json!({"removed": false, "agentId": "gone-soon"}));
    th.stop().await;
}

#[tokio::test]
async fn get_stats_has_the_original_counts() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("st-a", &["t1", "t2"], "cat-a")}),
    )
    .await;
    ok(&th, json!({"action": "disable_agent", "id": "st-a"})).await;
    let d = ok(&th, json!({"action": "get_stats"})).await;
    let n = th.hub.list_agents(true).len() as u64;
    assert_eq!(d["total"].as_u64(), Some(n), "{d}");
    assert_eq!(d["disabled"].as_u64(), Some(1), "{d}");
    assert_eq!(d["enabled"].as_u64(), Some(n - 1), "{d}");
    assert!(
        d["categories"].as_u64().unwrap() >= 2 && d["tags"].as_u64().unwrap() >= 2,
        "{d}"
    );
    assert!(d["queued"].is_u64() && d["running"].is_u64(), "{d}");
    th.stop().await;
}

#[tokio::test]
async fn discover_tools_lists_capabilities_as_tools() {
    let th = TestHub::start().await;
    ok(
        &th,
        json!({"action": "deploy_agent", "agent": descriptor("disc-x", &[], "found")}),
    )
    .await;
    let d = ok(
        &th,
        json!({"action": "discover_tools", "discoveryFilters": {"agentType": "disc"}}),
    )
    .await;
    assert_eq!(d["count"], 1, "{d}");
    let t = &d["tools"][0];
    assert_eq!(
        (t["agentId"].as_str(), t["toolName"].as_str()),
        (Some("disc-x"), Some("chat")),
        "{d}"
    );
    assert_eq!(
        t["tool"]["inputSchema"]["required"],
        json!(["messages"]),
        "{d}"
    );
    let d = ok(&th, json!({"action": "discover_tools", "discoveryFilters": {"category": "found", "maxCost": 0}})).await;
    assert_eq!(d["count"], 1, "{d}");
    let d = ok(&th, json!({"action": "discover_tools"})).await;
    assert!(d["count"].as_u64().unwrap() >= 2, "{d}");
    th.stop().await;
}

#[tokio::test]
async fn the_original_servers_pretend_actions_name_their_replacement() {
    let th = TestHub::start().await;
    for (action, names) in [
        ("generate_agents", "deploy_batch"),
        ("create_enhanced_agent", "deploy_agent"),
        ("create_agent_ecosystem", "deploy_batch"),
        ("list_enhanced_types", "list_agents"),
        ("create_advanced_agent", "deploy_agent"),
        ("create_advanced_ecosystem", "deploy_batch"),
        ("list_advanced_types", "list_agents"),
        ("list_advanced_tools", "discover_tools"),
        ("list_practical_tools", "discover_tools"),
        ("execute_practical_tool", "invoke_agent"),
        ("execute_advanced_tool", "invoke_agent"),
        ("create_mcp_server", "invoke_agent"),
        ("add_tool_to_agent", "update_agent"),
        ("share_tool", "grant_permission"),
        ("connect_to_agent_mcp", "handoff"),
        ("execute_shared_tool", "invoke_agent"),
    ] {
        let e = failure(
            &ctl(
                &th,
                None,
                json!({"action": action, "count": 3, "agentType": "x"}),
            )
            .await,
        );
        assert_eq!(e["code"], "ERR_NOT_SUPPORTED", "{action}: {e}");
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains(action) && msg.contains(names),
            "{action}: {msg}"
        );
    }
    // An unknown action lists every action there is.
    let e = failure(&ctl(&th, None, json!({"action": "fly"})).await);
    let msg = e["message"].as_str().unwrap();
    for a in [
        "list_agents",
        "deploy_batch",
        "filter_agents",
        "discover_tools",
        "get_sharing_agreements",
        "get_permissions",
        "create_backup",
        "list_backups",
        "get_audit_log",
    ] {
        assert!(msg.contains(a), "{a} missing: {msg}");
    }
    th.stop().await;
}

#[tokio::test]
async fn roles_are_checked_as_for_the_tools() {
    let th = TestHub::start_with(&[("auth", "required")]).await;
    let viewer = key(&th, Role::Viewer).await;
    let invoker = key(&th, Role::Invoker).await;
    let operator = key(&th, Role::Operator).await;
    let agent = descriptor("role-x", &[], "");
    for (token, args) in [
        (&viewer, json!({"action": "deploy_agent", "agent": agent})),
        (
            &invoker,
            json!({"action": "deploy_batch", "agents": [agent]}),
        ),
        (
            &viewer,
            json!({"action": "update_agent", "id": "echo", "updates": {"name": "x"}}),
        ),
        (&invoker, json!({"action": "disable_agent", "id": "echo"})),
        (
            &viewer,
            json!({"action": "invoke_agent", "agentId": "echo", "capability": "chat", "input": chat("x")}),
        ),
        (
            &invoker,
            json!({"action": "grant_permission", "targetAgentId": "echo", "permission": "agent:invoke:a"}),
        ),
        (
            &invoker,
            json!({"action": "get_sharing_agreements", "id": "echo"}),
        ),
        (&operator, json!({"action": "create_backup"})),
    ] {
        let r = ctl(&th, Some(token), args.clone()).await;
        let e = failure(&r);
        assert_eq!(
            (e["code"].as_str(), e["reason"].as_str()),
            (Some("ERR_FORBIDDEN"), Some("forbidden")),
            "{args}: {r}"
        );
        assert!(
            r["content"][0]["text"]
                .as_str()
                .unwrap()
                .starts_with("forbidden"),
            "{r}"
        );
        // Nothing was deployed.
        assert!(th.hub.agent("role-x").is_err());
    }
    // deploy_batch's refusal is audited like the tools' (as an agents.write denial).
    let admin = a2a_mcp::model::Principal::new("local", Role::Admin);
    let audit = th.hub.list_audit(&admin, None, 1000).await.unwrap();
    let denied = audit
        .iter()
        .map(|e| a2a_mcp::api::views::to_json(&a2a_mcp::api::views::AuditEntryView::from(e)))
        .filter(|v| v["action"] == "agents.write" && v["outcome"] == "denied")
        .count();
    assert_eq!(
        denied, 4,
        "the four agents.write refusals above, deploy_batch included"
    );
    // What a role may do, it may do through agent_control too.
    let d = data(
        &ctl(
            &th,
            Some(&viewer),
            json!({"action": "filter_agents", "search": "echo"}),
        )
        .await,
    );
    assert_eq!(d["count"], 1, "{d}");
    let d = data(
        &ctl(
            &th,
            Some(&operator),
            json!({"action": "deploy_batch", "agents": [agent]}),
        )
        .await,
    );
    assert_eq!(d["success"], 1, "{d}");
    th.stop().await;
}
