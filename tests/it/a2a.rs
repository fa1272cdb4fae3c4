//! A2A: the official Python client against the hub, 0.3 wire shapes, cards following the
//! registry, tasks shared with the other transports, the `a2a` executor against a remote
//! agent built with the official a2a-sdk server, and push notifications to a webhook.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::harness::*;

// ---------------------------------------------------------------------------------------------
// Helpers

fn a2a_url(th: &TestHub, agent: &str) -> String {
    format!("http://{}/a2a/{agent}", th.api)
}

fn base(th: &TestHub) -> String {
    format!("http://{}", th.api)
}

/// One JSON-RPC call; `version` is the A2A-Version header (None: no header).
async fn rpc(url: &str, version: Option<&str>, method: &str, params: Value) -> (u16, Value) {
    let mut headers = vec![];
    if let Some(v) = version {
        headers.push(("a2a-version", v));
    }
    let body = json!({"jsonrpc": "2.0", "id": "t1", "method": method, "params": params});
    let (s, v, _) = http("POST", url, Some(body), &headers).await;
    (s, v)
}

/// A streaming call: every `data:` payload of the SSE answer, until the server closes it.
async fn rpc_sse(url: &str, version: Option<&str>, method: &str, params: Value) -> Vec<Value> {
    let mut headers = vec![
        ("accept", "text/event-stream"),
        ("content-type", "application/json"),
    ];
    if let Some(v) = version {
        headers.push(("a2a-version", v));
    }
    let body = json!({"jsonrpc": "2.0", "id": "s1", "method": method, "params": params});
    let (status, text, h) = tokio::time::timeout(
        Duration::from_secs(30),
        http_raw("POST", url, body.to_string().into_bytes(), &headers),
    )
    .await
    .expect("stream closed within 30 s");
    assert_eq!(status, 200, "{text}");
    assert!(
        h.get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "not SSE: {h:?} {text}"
    );
    text.split("\n\n")
        .filter_map(|block| {
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data.join("\n")).unwrap())
        })
        .collect()
}

/// The first `n` events of a streaming call; then the connection is dropped.
async fn rpc_sse_first(url: &str, method: &str, params: Value, n: usize) -> Vec<Value> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let body = json!({"jsonrpc": "2.0", "id": "s1", "method": method, "params": params});
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "text/event-stream")
        .header("a2a-version", "1.0")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("event within 10 s")
            .expect("stream open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if let Some(d) = block.lines().find_map(|l| l.strip_prefix("data:")) {
                    out.push(serde_json::from_str(d.trim()).unwrap());
                }
            }
        }
    }
    out
}

fn user_message(text: &str) -> Value {
    json!({"messageId": uuid(), "role": "ROLE_USER", "parts": [{"text": text}]})
}

fn uuid() -> String {
    format!(
        "m-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The tests' peers (remote agents, upstream hubs, webhook receivers) listen on loopback,
/// which the hub's outgoing requests may only reach when the operator allows it.
pub const LOCAL_PEERS: (&str, &str) = ("egress_allowed_networks", "127.0.0.0/8,::1");
/// [`LOCAL_PEERS`] for the real binary and the CLI.
pub const LOCAL_PEERS_ENV: (&str, &str) = ("A2A_EGRESS_ALLOWED_NETWORKS", "127.0.0.0/8,::1");

/// A remote A2A agent (tests/python/a2a_remote_agent.py, a2a-sdk server) on a free port.
pub struct RemoteAgent {
    _child: tokio::process::Child,
    pub base: String,
}

impl RemoteAgent {
    pub async fn start(flags: &[&str]) -> RemoteAgent {
        let mut child = tokio::process::Command::new(python())
            .arg(repo_dir().join("tests/python/a2a_remote_agent.py"))
            .arg("0")
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the remote agent");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("remote agent ready within 30 s")
            .unwrap()
            .expect("READY line");
        let base = line
            .strip_prefix("READY ")
            .and_then(|rest| rest.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .to_string();
        RemoteAgent {
            _child: child,
            base,
        }
    }

    pub fn card_url(&self) -> String {
        format!("{}/.well-known/agent-card.json", self.base)
    }

    async fn cancels(&self) -> Vec<Value> {
        let (_, v) = get(&format!("{}/test/cancels", self.base)).await;
        v.as_array().cloned().unwrap_or_default()
    }

    pub async fn received(&self) -> Vec<Value> {
        let (_, v) = get(&format!("{}/test/received", self.base)).await;
        v.as_array().cloned().unwrap_or_default()
    }
}

/// Deploys an `a2a` agent pointing at `url`, through REST.
async fn deploy_a2a(th: &TestHub, id: &str, url: &str, extra: Value) -> Value {
    let mut executor = json!({"kind": "a2a", "url": url});
    if let (Value::Object(e), Value::Object(x)) = (&mut executor, extra) {
        e.extend(x);
    }
    let (s, v) = post(
        &th.rest("/agents"),
        json!({"id": id, "capabilities": [{"name": "echo"}], "executor": executor}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v
}

/// Invokes over REST and waits for the end; returns the request view.
async fn invoke_wait(th: &TestHub, agent: &str, input: Value) -> Value {
    let (s, v) = post(
        &th.rest(&format!("/agents/{agent}/invoke")),
        json!({"input": input, "wait": true, "timeoutMs": 30000}),
    )
    .await;
    assert!(s == 200 || s == 202, "{s} {v}");
    assert_eq!(v["timedOut"], false, "{v}");
    v
}

/// The stored events of a request, as the SSE endpoint serves them (it ends at the terminal).
async fn events_of(th: &TestHub, id: &str) -> Vec<Value> {
    let (s, text, _) = http_raw(
        "GET",
        &th.rest(&format!("/requests/{id}/events")),
        vec![],
        &[],
    )
    .await;
    assert_eq!(s, 200);
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

fn chunks(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "chunk")
        .map(|e| e["content"].clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The official client against the hub

#[tokio::test]
async fn python_sdk_client_against_the_hub() {
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let (s, v) = post(
        &th.rest("/agents"),
        json!({
            "id": "streamer",
            "capabilities": [{"name": "run"}],
            "executor": {"kind": "process", "command": [repo_dir().join("tests/agents/stream.sh")]},
        }),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let out = run_python("a2a_client_interop.py", &[base(&th), "streamer".into()]).await;
    assert!(out.contains("ALL OK"), "{out}");
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Wire shapes

#[tokio::test]
async fn v03_requests_get_v03_shapes() {
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let url = a2a_url(&th, "echo");
    let msg = json!({"kind": "message", "messageId": uuid(), "role": "user",
                     "parts": [{"kind": "text", "text": "old school"}]});

    // message/send, no version header: a 0.3 task.
    let (s, v) = rpc(&url, None, "message/send", json!({"message": msg})).await;
    assert_eq!(s, 200);
    let t = &v["result"];
    assert_eq!(t["kind"], "task", "{v}");
    assert_eq!(t["status"]["state"], "completed");
    assert_eq!(t["history"][0]["kind"], "message");
    assert_eq!(t["history"][0]["role"], "user");
    assert_eq!(t["artifacts"][0]["parts"][0]["kind"], "text");
    assert_eq!(t["artifacts"][1]["parts"][0]["kind"], "data");
    let id = t["id"].as_str().unwrap().to_string();

    let (_, v) = rpc(&url, None, "tasks/get", json!({"id": id})).await;
    assert_eq!(v["result"]["kind"], "task");
    assert_eq!(v["result"]["status"]["state"], "completed");

    // Errors in 0.3 shape: no ErrorInfo array.
    let (_, v) = rpc(&url, None, "tasks/cancel", json!({"id": id})).await;
    assert_eq!(v["error"]["code"], -32002, "{v}");
    assert!(!v["error"]["data"].is_array(), "{v}");
    let (_, v) = rpc(&url, None, "tasks/get", json!({"id": "nope"})).await;
    assert_eq!(v["error"]["code"], -32001);
    let (_, v) = rpc(&url, None, "tasks/resubscribe", json!({"id": id})).await;
    assert_eq!(v["error"]["code"], -32004);
    let (_, v) = rpc(&url, None, "agent/getAuthenticatedExtendedCard", json!({})).await;
    assert_eq!(v["error"]["code"], -32007);

    // message/stream: bare events with kind, `final` on the last status.
    let msg2 = json!({"kind": "message", "messageId": uuid(), "role": "user",
                      "parts": [{"kind": "text", "text": "a b c"}]});
    let evs = rpc_sse(&url, None, "message/stream", json!({"message": msg2})).await;
    assert!(
        evs.iter().all(|e| e["id"] == "s1" && e["jsonrpc"] == "2.0"),
        "{evs:?}"
    );
    let kinds: Vec<&str> = evs
        .iter()
        .map(|e| e["result"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "task");
    assert_eq!(kinds[1], "status-update");
    assert_eq!(*kinds.last().unwrap(), "status-update");
    assert!(
        kinds[2..kinds.len() - 1]
            .iter()
            .all(|k| *k == "artifact-update"),
        "{kinds:?}"
    );
    let last = &evs.last().unwrap()["result"];
    assert_eq!(
        (last["final"].as_bool(), last["status"]["state"].as_str()),
        (Some(true), Some("completed"))
    );
    assert_eq!(evs[1]["result"]["final"], false);
    assert_eq!(evs[1]["result"]["status"]["state"], "working");

    // Push configs in 0.3 shape.
    let (_, v) = rpc(
        &url,
        None,
        "tasks/pushNotificationConfig/set",
        json!({"taskId": id, "pushNotificationConfig": {"id": "c1", "url": "http://127.0.0.1:9/h",
               "token": "t", "authentication": {"schemes": ["Bearer"], "credentials": "x"}}}),
    )
    .await;
    assert_eq!(v["result"]["taskId"], id.as_str(), "{v}");
    assert_eq!(
        v["result"]["pushNotificationConfig"]["authentication"]["schemes"],
        json!(["Bearer"])
    );
    let (_, v) = rpc(
        &url,
        None,
        "tasks/pushNotificationConfig/get",
        json!({"id": id, "pushNotificationConfigId": "c1"}),
    )
    .await;
    assert_eq!(
        v["result"]["pushNotificationConfig"]["url"], "http://127.0.0.1:9/h",
        "{v}"
    );
    let (_, v) = rpc(
        &url,
        None,
        "tasks/pushNotificationConfig/list",
        json!({"id": id}),
    )
    .await;
    assert_eq!(v["result"].as_array().map(Vec::len), Some(1), "{v}");
    let (_, v) = rpc(
        &url,
        None,
        "tasks/pushNotificationConfig/delete",
        json!({"id": id, "pushNotificationConfigId": "c1"}),
    )
    .await;
    assert_eq!(v["result"], Value::Null, "{v}");
    assert!(v.get("error").is_none(), "{v}");

    // Versions: a 1.0 name needs the header; unknown versions are refused.
    let one = json!({"message": user_message("x")});
    let (_, v) = rpc(&url, None, "SendMessage", one.clone()).await;
    assert_eq!(v["error"]["code"], -32009, "{v}");
    assert_eq!(v["error"]["data"][0]["reason"], "VERSION_NOT_SUPPORTED");
    assert_eq!(
        v["error"]["data"][0]["@type"],
        "type.googleapis.com/google.rpc.ErrorInfo"
    );
    let (_, v) = rpc(&url, Some("2.0"), "SendMessage", one.clone()).await;
    assert_eq!(v["error"]["code"], -32009);
    let (_, v) = rpc(
        &format!("{url}?A2A-Version=1.0"),
        None,
        "GetTask",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        v["result"]["status"]["state"], "TASK_STATE_COMPLETED",
        "query-parameter version: {v}"
    );
    // 1.0 shape of the same task: no kind, upper-case enums.
    let (_, v) = rpc(&url, Some("1.0"), "GetTask", json!({"id": id})).await;
    assert!(v["result"].get("kind").is_none());
    assert_eq!(v["result"]["history"][0]["role"], "ROLE_USER");
    th.stop().await;
}

#[tokio::test]
async fn json_rpc_framing_and_bad_input() {
    let th = TestHub::start().await;
    let url = a2a_url(&th, "echo");
    let one = Some("1.0");
    let (s, body, _) = http_raw(
        "POST",
        &url,
        b"{nope".to_vec(),
        &[("content-type", "application/json")],
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (s, v["error"]["code"].clone(), v["id"].clone()),
        (200, json!(-32700), Value::Null)
    );
    let (_, body, _) = http_raw(
        "POST",
        &url,
        b"[]".to_vec(),
        &[("content-type", "application/json")],
    )
    .await;
    assert!(body.contains("-32600"), "{body}");
    // A body that does not say it is JSON is refused by the listener's admission.
    let (s, body, _) = http_raw("POST", &url, b"[]".to_vec(), &[]).await;
    assert_eq!(s, 415, "{body}");
    let (_, v) = rpc(&url, one, "Nope", json!({})).await;
    assert_eq!(v["error"]["code"], -32601);
    assert_eq!(v["id"], "t1");
    let (_, v) = rpc(&url, one, "GetTask", json!({"id": 5})).await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    let (s, v) = rpc(
        &a2a_url(&th, "no-such-agent"),
        one,
        "GetTask",
        json!({"id": "x"}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (_, v) = rpc(&url, one, "GetExtendedAgentCard", json!({})).await;
    assert_eq!(v["error"]["code"], -32004);

    // Messages the hub cannot take: clear errors, nothing stored.
    let before = th
        .hub
        .list_requests(&a2a_mcp::model::Principal::anonymous(), &Default::default())
        .await
        .unwrap()
        .len();
    let cases = [
        (
            json!({"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}}),
            -32602,
            "messageId",
        ),
        (
            json!({"message": {"messageId": "a", "role": "ROLE_USER", "parts": []}}),
            -32602,
            "parts",
        ),
        (
            json!({"message": {"messageId": "b", "role": "ROLE_AGENT", "parts": [{"text": "x"}]}}),
            -32602,
            "ROLE_USER",
        ),
        (
            json!({"message": {"messageId": "c", "contextId": "nope", "parts": [{"text": "x"}]}}),
            -32602,
            "contextId",
        ),
        (
            json!({"message": {"messageId": "d", "parts": [{"url": "http://x/f.pdf"}]}}),
            -32005,
            "files",
        ),
        (
            json!({"message": {"messageId": "e", "parts": [{"data": {"chunks": 2}}]}}),
            -32602,
            "schema",
        ),
        (
            json!({"message": {"messageId": "f", "parts": [{"text": "x"}], "metadata": {"capability": "nope"}}}),
            -32602,
            "capability",
        ),
        (
            json!({"message": {"messageId": "g", "parts": [{"text": "x"}]}, "configuration": {"acceptedOutputModes": ["image/png"]}}),
            -32005,
            "acceptedOutputModes",
        ),
        (
            json!({"message": {"messageId": "h", "parts": [{"text": "x"}]}, "configuration": {"taskPushNotificationConfig": {"url": "file:///etc/passwd"}}}),
            -32602,
            "http",
        ),
    ];
    for (params, code, needle) in cases {
        let (_, v) = rpc(&url, one, "SendMessage", params.clone()).await;
        assert_eq!(v["error"]["code"], code, "{params} -> {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{params} -> {msg}");
    }
    assert_eq!(
        th.hub
            .list_requests(&a2a_mcp::model::Principal::anonymous(), &Default::default())
            .await
            .unwrap()
            .len(),
        before
    );

    // A message for an existing task: no follow-ups.
    let (_, v) = rpc(
        &url,
        one,
        "SendMessage",
        json!({"message": user_message("first")}),
    )
    .await;
    let tid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    let mut follow = user_message("again");
    follow["taskId"] = json!(tid);
    let (_, v) = rpc(&url, one, "SendMessage", json!({"message": follow})).await;
    assert_eq!(v["error"]["code"], -32004, "{v}");
    // The same messageId again is the same task (retry-safe), different content is refused.
    let m = user_message("once");
    let (_, a) = rpc(&url, one, "SendMessage", json!({"message": m})).await;
    let (_, b) = rpc(&url, one, "SendMessage", json!({"message": m})).await;
    assert_eq!(a["result"]["task"]["id"], b["result"]["task"]["id"]);
    let mut changed = m.clone();
    changed["parts"] = json!([{"text": "different"}]);
    let (_, c) = rpc(&url, one, "SendMessage", json!({"message": changed})).await;
    assert!(c.get("error").is_some(), "{c}");
    th.stop().await;
}

#[tokio::test]
async fn cards_follow_the_registry() {
    let th = TestHub::start().await;
    let (s, card, h) = http(
        "GET",
        &format!("{}/a2a/echo/.well-known/agent-card.json", base(&th)),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let url = a2a_url(&th, "echo");
    assert_eq!(
        card["supportedInterfaces"],
        json!([{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
               {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3"}])
    );
    assert_eq!(
        (
            card["url"].as_str(),
            card["preferredTransport"].as_str(),
            card["protocolVersion"].as_str()
        ),
        (Some(url.as_str()), Some("JSONRPC"), Some("0.3"))
    );
    assert_eq!(
        card["capabilities"],
        json!({"streaming": true, "pushNotifications": true, "extendedAgentCard": false})
    );
    assert_eq!(card["skills"][0]["id"], "chat");
    assert!(card.get("securitySchemes").is_none(), "no auth configured");
    for k in [
        "name",
        "description",
        "version",
        "defaultInputModes",
        "defaultOutputModes",
    ] {
        assert!(!card[k].is_null(), "{k} missing");
    }
    // ETag revalidation.
    let etag = h.get("etag").unwrap().to_str().unwrap().to_string();
    let (s, _, _) = http_raw(
        "GET",
        &format!("{}/a2a/echo/.well-known/agent-card.json", base(&th)),
        vec![],
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(s, 304);

    // Deploy, update, disable: the cards follow.
    let (s, _) = post(
        &th.rest("/agents"),
        json!({"id": "second", "name": "Second", "description": "another",
        "capabilities": [{"name": "a", "description": "does a"}, {"name": "b"}],
        "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, hub) = get(&format!("{}/.well-known/agent-card.json", base(&th))).await;
    let ids: Vec<&str> = hub["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["echo", "second"]);
    assert_eq!(
        hub["supportedInterfaces"][0]["url"],
        format!("{}/a2a", base(&th))
    );
    let (_, c2) = get(&format!(
        "{}/a2a/second/.well-known/agent-card.json",
        base(&th)
    ))
    .await;
    let skills: Vec<&str> = c2["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["a", "b"]);
    let (s, _, _) = http(
        "PATCH",
        &th.rest("/agents/second"),
        Some(json!({"version": "2.5.0"})),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s2, c2b, h2) = http(
        "GET",
        &format!("{}/a2a/second/.well-known/agent-card.json", base(&th)),
        None,
        &[],
    )
    .await;
    assert_eq!((s2, c2b["version"].as_str()), (200, Some("2.5.0")));
    assert_ne!(h2.get("etag").unwrap().to_str().unwrap(), etag);
    let (s, _) = post(&th.rest("/agents/echo/disable"), json!({})).await;
    assert_eq!(s, 200);
    let (_, hub) = get(&format!("{}/.well-known/agent-card.json", base(&th))).await;
    let ids: Vec<&str> = hub["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["second"]);
    let (s, v) = get(&format!(
        "{}/a2a/echo/.well-known/agent-card.json",
        base(&th)
    ))
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("agent_disabled"))
    );
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "SendMessage",
        json!({"message": user_message("x")}),
    )
    .await;
    assert_eq!(
        v["error"]["data"][0]["metadata"]["errorCode"], "agent_disabled",
        "{v}"
    );
    th.stop().await;
}

#[tokio::test]
async fn a2a_tasks_are_hub_requests() {
    let th = TestHub::start().await;
    let url = a2a_url(&th, "echo");
    // Started over A2A, watched over WebSocket.
    let mut msg = user_message("watch me over websocket");
    msg["parts"] =
        json!([{"text": "watch me over websocket"}, {"data": {"chunks": 4, "delay_ms": 30}}]);
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "SendMessage",
        json!({"message": msg, "configuration": {"returnImmediately": true}}),
    )
    .await;
    let task = &v["result"]["task"];
    let tid = task["id"].as_str().unwrap().to_string();
    let ctx = task["contextId"].as_str().unwrap().to_string();
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={tid}"))).await;
    let (frames, close) = ws_read_all(&mut ws).await;
    assert_complete_stream(&frames, "final");
    assert_eq!(close, Some(1000));
    assert_eq!(chunks(&frames).len(), 4);
    let (_, r) = get(&th.rest(&format!("/requests/{tid}"))).await;
    assert_eq!(
        (r["status"].as_str(), r["sessionId"].as_str()),
        (Some("done"), Some(ctx.as_str()))
    );
    // The context is a hub session.
    let (s, sess) = get(&th.rest(&format!("/sessions/{ctx}"))).await;
    assert_eq!((s, sess["agentId"].as_str()), (200, Some("echo")));

    // Started over REST, read over A2A (history synthesized from the input).
    let rid = invoke(&th, "echo", echo_input("from rest", 2, 0)).await;
    wait_status(&th, &rid, "done").await;
    let (_, v) = rpc(&url, Some("1.0"), "GetTask", json!({"id": rid})).await;
    let t = &v["result"];
    assert_eq!(t["status"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(
        t["contextId"],
        rid.as_str(),
        "no session: the task is its own context"
    );
    let (_, v) = rpc(&url, Some("1.0"), "ListTasks", json!({"contextId": rid})).await;
    let listed: Vec<&str> = v["result"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [rid.as_str()],
        "listing by that context finds it: {v}"
    );
    assert_eq!(
        t["history"][0]["parts"][0]["data"]["messages"][0]["content"],
        "from rest"
    );
    let out: String = t["artifacts"][0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(out, "from rest");
    assert_eq!(t["artifacts"][1]["parts"][0]["data"]["chunks"], 2);

    // An agent's URL only knows that agent's tasks.
    let (_, s) = post(
        &th.rest("/agents"),
        json!({"id": "other", "capabilities": [{"name": "x"}],
        "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert!(s["id"] == "other", "{s}");
    let (_, v) = rpc(
        &a2a_url(&th, "other"),
        Some("1.0"),
        "GetTask",
        json!({"id": rid}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32001);
    let (_, v) = rpc(&a2a_url(&th, "other"), Some("1.0"), "ListTasks", json!({})).await;
    assert_eq!(
        (
            v["result"]["tasks"].as_array().map(Vec::len),
            v["result"]["totalSize"].as_u64()
        ),
        (Some(0), Some(0)),
        "{v}"
    );
    // The hub endpoint knows every task.
    let (_, v) = rpc(
        &format!("{}/a2a", base(&th)),
        Some("1.0"),
        "ListTasks",
        json!({"pageSize": 100}),
    )
    .await;
    assert_eq!(v["result"]["totalSize"], 2, "{v}");

    // Canceled over A2A, seen as canceled over REST; the job really stopped.
    let mut slow = user_message("slow");
    slow["parts"] = json!([{"text": "slow job"}, {"data": {"chunks": 3, "delay_ms": 5000}}]);
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "SendMessage",
        json!({"message": slow, "configuration": {"returnImmediately": true}}),
    )
    .await;
    let sid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    wait_status(&th, &sid, "running").await;
    let (_, v) = rpc(&url, Some("1.0"), "CancelTask", json!({"id": sid})).await;
    assert_eq!(v["result"]["status"]["state"], "TASK_STATE_CANCELED", "{v}");
    assert!(
        v["result"]["status"]["message"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("canceled over A2A")
    );
    let (_, r) = get(&th.rest(&format!("/requests/{sid}"))).await;
    assert_eq!(r["status"], "canceled");
    th.stop().await;
}

#[tokio::test]
async fn a_dropped_stream_frees_its_subscriber_slot() {
    // One subscriber per request: resubscribing only works if the dropped stream let go.
    let th = TestHub::start_with(&[("max_subs_per_request", "1")]).await;
    let url = a2a_url(&th, "echo");
    let mut msg = user_message("quiet job");
    msg["parts"] = json!([{"text": "quiet job"}, {"data": {"chunks": 2, "delay_ms": 4000}}]);
    let first = rpc_sse_first(&url, "SendStreamingMessage", json!({"message": msg}), 2).await;
    let tid = first[0]["result"]["task"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        first[1]["result"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_WORKING"
    );
    // The first chunk is 4 s away: the old stream must go now, not at the next event.
    let mut again = None;
    for _ in 0..100 {
        let (s, v) = rpc(&url, Some("1.0"), "GetTask", json!({"id": tid})).await;
        assert_eq!(s, 200);
        assert_eq!(v["result"]["status"]["state"], "TASK_STATE_WORKING");
        // A probe subscription (its slot is given back when the probe is dropped).
        if th
            .hub
            .subscribe(&a2a_mcp::model::Principal::anonymous(), &tid, 0)
            .await
            .is_ok()
        {
            again = Some(rpc_sse_first(&url, "SubscribeToTask", json!({"id": tid}), 2).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = again.expect("the slot of the dropped stream was freed");
    assert_eq!(again[0]["result"]["task"]["id"], tid.as_str());
    let (_, v) = rpc(&url, Some("1.0"), "CancelTask", json!({"id": tid})).await;
    assert_eq!(v["result"]["status"]["state"], "TASK_STATE_CANCELED");
    th.stop().await;
}

#[tokio::test]
async fn streaming_can_be_switched_off() {
    let th = TestHub::start_with(&[("enable_streaming", "false")]).await;
    let (_, card) = get(&format!(
        "{}/a2a/echo/.well-known/agent-card.json",
        base(&th)
    ))
    .await;
    assert_eq!(card["capabilities"]["streaming"], false);
    let (_, v) = rpc(
        &a2a_url(&th, "echo"),
        Some("1.0"),
        "SendStreamingMessage",
        json!({"message": user_message("x")}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32004, "{v}");
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The a2a executor against a remote a2a-sdk agent

#[tokio::test]
async fn a2a_executor_streams_a_remote_agent() {
    let remote = RemoteAgent::start(&[]).await;
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    // Imported from the card through the hub (behind a redirect): capabilities are the skills.
    let entry = th
        .hub
        .import_agent_card(
            &a2a_mcp::model::Principal::anonymous(),
            &format!("{}/moved-card.json", remote.base),
            Some("remote"),
            false,
        )
        .await
        .unwrap();
    let caps: Vec<&str> = entry
        .spec
        .capabilities
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(caps, ["echo", "shout"]);
    assert_eq!(entry.spec.version, "2.1.0");

    let (s, v) = post(
        &th.rest("/agents/remote/invoke"),
        json!({"capability": "shout", "input": {"text": "hello remote world", "mood": "loud"}, "wait": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "done", "{v}");
    let result = &v["result"];
    assert_eq!(result["text"], "hello remote world");
    assert_eq!(result["data"], json!([{"echo": {"mood": "loud"}}]));
    assert_eq!(result["statusMessage"], "done");
    assert!(result["remoteTaskId"].is_string());
    let evs = events_of(&th, v["requestId"].as_str().unwrap()).await;
    assert_eq!(
        chunks(&evs),
        vec![
            json!("hello "),
            json!("remote "),
            json!("world"),
            json!({"echo": {"mood": "loud"}})
        ]
    );
    // What the remote agent got: the text, the other fields as data, the capability named.
    let got = remote.received().await;
    let last = got.last().unwrap();
    assert_eq!(last["text"], "hello remote world");
    assert_eq!(last["data"], json!([{"mood": "loud"}]));
    assert_eq!(last["metadata"]["skillId"], "shout");
    th.stop().await;
}

#[tokio::test]
async fn a2a_executor_polls_peers_that_do_not_stream_and_speaks_0_3() {
    for flags in [
        &["--no-streaming"][..],
        &["--v03-only"][..],
        &["--v03-only", "--no-streaming"][..],
    ] {
        let remote = RemoteAgent::start(flags).await;
        let th = TestHub::start_with(&[LOCAL_PEERS]).await;
        deploy_a2a(&th, "remote", &remote.card_url(), json!({})).await;
        let v = invoke_wait(&th, "remote", json!({"text": "one two three"})).await;
        assert_eq!(v["status"], "done", "{flags:?}: {v}");
        assert_eq!(v["result"]["text"], "one two three", "{flags:?}");
        let evs = events_of(&th, v["requestId"].as_str().unwrap()).await;
        let text: String = chunks(&evs).iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(text, "one two three", "{flags:?}: chunks {evs:?}");
        th.stop().await;
    }
}

#[tokio::test]
async fn a2a_executor_cancels_times_out_and_reports_remote_errors() {
    let remote = RemoteAgent::start(&[]).await;
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    deploy_a2a(&th, "remote", &remote.base, json!({})).await;

    // Remote failure.
    let v = invoke_wait(&th, "remote", json!({"text": "fail on purpose"})).await;
    assert_eq!(v["status"], "error");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("remote failure: on purpose"), "{err}");

    // Cancel: the remote task is canceled too.
    let id = invoke(&th, "remote", json!({"text": "slow"})).await;
    for _ in 0..300 {
        if !chunks(&stored_events(&th, &id).await).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, v) = post(&th.rest(&format!("/requests/{id}/cancel")), json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")), "{v}");
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = remote.cancels().await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.len(), 1, "the remote agent saw the cancel");

    // Timeout: ends in error and cancels the remote task as well.
    deploy_a2a(
        &th,
        "remote-short",
        &remote.base,
        json!({"timeout_ms": 400}),
    )
    .await;
    let v = invoke_wait(&th, "remote-short", json!({"text": "slow"})).await;
    assert_eq!(v["status"], "error");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 400 ms"),
        "{v}"
    );
    for _ in 0..200 {
        if remote.cancels().await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(remote.cancels().await.len(), 2);

    // Header values (credentials for the peer) are not shown in agent views.
    deploy_a2a(
        &th,
        "with-auth",
        &remote.base,
        json!({"headers": {"Authorization": "Bearer s3cret"}}),
    )
    .await;
    let (_, v) = get(&th.rest("/agents/with-auth")).await;
    assert_eq!(
        v["definition"]["executor"]["headers"]["Authorization"],
        "***"
    );
    assert!(!v.to_string().contains("s3cret"));
    let v = invoke_wait(&th, "with-auth", json!({"text": "authorized"})).await;
    assert_eq!(v["status"], "done", "{v}");
    let got = remote.received().await;
    let last = got.last().unwrap();
    assert_eq!(
        (last["text"].as_str(), last["authorization"].as_str()),
        (Some("authorized"), Some("Bearer s3cret"))
    );
    assert_eq!(last["version"], "1.0", "A2A-Version: 1.0 is sent");
    let (s, v) = post(
        &th.rest("/agents"),
        json!({"id": "bad-header", "capabilities": [{"name": "x"}],
        "executor": {"kind": "a2a", "url": remote.base, "headers": {"bad name": "x"}}}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("bad name"),
        "{v}"
    );

    // Unreachable peer: a clear error, no hang.
    deploy_a2a(&th, "gone", "http://127.0.0.1:9/", json!({})).await;
    let v = invoke_wait(&th, "gone", json!({"text": "hi"})).await;
    assert_eq!(v["status"], "error");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("cannot read the remote Agent Card") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    th.stop().await;
}

#[tokio::test]
async fn a2a_executor_speaks_https() {
    // A test CA, and a certificate for `localhost` signed by it.
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "a2a-mcp test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (
        dir.path().join("ca.pem"),
        dir.path().join("leaf.pem"),
        dir.path().join("leaf.key"),
    );
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    let remote = RemoteAgent::start(&[
        "--tls",
        cert_pem.to_str().unwrap(),
        key_pem.to_str().unwrap(),
    ])
    .await;
    assert!(
        remote.base.starts_with("https://localhost:"),
        "{}",
        remote.base
    );

    // The real binary, trusting only the test CA.
    let mut bin = TestBinary::serve(
        &dir.path().join("state"),
        &[("SSL_CERT_FILE", ca_pem.to_str().unwrap()), LOCAL_PEERS_ENV],
    )
    .await;
    let deploy = |id: &str, url: String| {
        let rest = bin.rest("/agents");
        let body = json!({"id": id, "capabilities": [{"name": "echo"}], "executor": {"kind": "a2a", "url": url}});
        async move {
            let (s, v) = post(&rest, body).await;
            assert_eq!(s, 201, "{v}");
        }
    };
    deploy("tls", remote.base.clone()).await;
    // The same server reached by IP: the certificate does not name it.
    deploy(
        "tls-wrong-name",
        remote.base.replace("localhost", "127.0.0.1"),
    )
    .await;
    let run = |id: &str| {
        let url = bin.rest(&format!("/agents/{id}/invoke"));
        async move {
            let (_, v) = post(&url, json!({"input": {"text": "over tls"}, "wait": true})).await;
            v
        }
    };
    let v = run("tls").await;
    assert_eq!(
        (v["status"].as_str(), v["result"]["text"].as_str()),
        (Some("done"), Some("over tls")),
        "{v}"
    );
    let v = run("tls-wrong-name").await;
    assert_eq!(v["status"], "error", "{v}");
    let err = v["error"].as_str().unwrap().to_ascii_lowercase();
    assert!(err.contains("certificate"), "{err}");
    assert!(bin.sigterm_and_wait().await.success());
}

async fn stored_events(th: &TestHub, id: &str) -> Vec<Value> {
    th.hub
        .stored_events(&a2a_mcp::model::Principal::anonymous(), id, 0, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_json())
        .collect()
}

/// Runs `a2a-mcp --data-dir DIR ARGS…`; returns (success, stdout, stderr).
async fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let o = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--catalog-dir")
        .arg(repo_dir().join("data/catalog"))
        .args(args)
        .env(LOCAL_PEERS_ENV.0, LOCAL_PEERS_ENV.1)
        .output()
        .await
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn import_card_cli_offline_and_through_a_running_server() {
    let upstream = TestHub::start().await;
    let card = format!("{}/a2a/echo/.well-known/agent-card.json", base(&upstream));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    // Offline: straight into the store.
    let (ok, out, err) = cli(&state, &["agents", "import-card", &card, "--id", "up"]).await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("imported up from") && out.contains("chat"),
        "{out}"
    );
    let (ok, out, _) = cli(&state, &["agents", "import-card", &card, "--id", "up"]).await;
    assert!(
        !ok && out.is_empty(),
        "a second import without --replace is refused"
    );
    let (ok, _, err) = cli(&state, &["agents", "import-card", "http://127.0.0.1:9/"]).await;
    assert!(!ok && err.contains("cannot read the Agent Card"), "{err}");

    // Online: the server holds the store, the CLI goes through its API.
    let mut bin = TestBinary::serve(&state, &[LOCAL_PEERS_ENV]).await;
    let api = format!("http://{}", bin.api);
    let (ok, out, err) = cli(
        &state,
        &[
            "agents",
            "import-card",
            &base(&upstream),
            "--id",
            "up2",
            "--url",
            &api,
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("using its API"), "{err}");
    let (ok, out, _) = cli(&state, &["agents", "list", "--url", &api]).await;
    assert!(
        ok && out.contains("up ") && out.contains("up2") && out.contains("a2a"),
        "{out}"
    );
    for id in ["up", "up2"] {
        let (s, v) = post(
            &bin.rest(&format!("/agents/{id}/invoke")),
            json!({"input": {"messages": [{"role": "user", "content": "via cli"}]}, "wait": true}),
        )
        .await;
        assert_eq!(
            (s, v["result"]["text"].as_str()),
            (200, Some("via cli")),
            "{v}"
        );
    }
    let (ok, _, err) = cli(
        &state,
        &["agents", "import-card", &card, "--id", "up2", "--url", &api],
    )
    .await;
    assert!(!ok && err.contains("already exists"), "{err}");
    assert!(bin.sigterm_and_wait().await.success());
    upstream.stop().await;
}

#[tokio::test]
async fn hub_to_hub_and_mcp_bridge() {
    // One hub hosts another hub's echo agent over A2A (our client against our server).
    let upstream = TestHub::start().await;
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let card = format!("{}/a2a/echo/.well-known/agent-card.json", base(&upstream));
    // The same through MCP, into the running hub, then invoke it with progress.
    let remote = RemoteAgent::start(&[]).await;
    let py = run_python("a2a_mcp_bridge.py", &[th.mcp_url(), remote.card_url()]).await;
    assert!(py.contains("OK"), "{py}");

    let entry = th
        .hub
        .import_agent_card(
            &a2a_mcp::model::Principal::anonymous(),
            &card,
            Some("upstream-echo"),
            false,
        )
        .await
        .unwrap();
    assert_eq!(entry.spec.capabilities[0].name, "chat");
    let v = invoke_wait(
        &th,
        "upstream-echo",
        json!({"messages": [{"role": "user", "content": "across two hubs"}], "chunks": 3}),
    )
    .await;
    assert_eq!(v["status"], "done", "{v}");
    assert_eq!(v["result"]["text"], "across two hubs");
    // The upstream result (the echoed input) arrives as the data of the result artifact.
    assert_eq!(v["result"]["data"][0]["chunks"], 3);
    assert_eq!(
        v["result"]["data"][0]["messages"][0]["content"],
        "across two hubs"
    );
    let evs = events_of(&th, v["requestId"].as_str().unwrap()).await;
    assert_eq!(
        chunks(&evs).len(),
        4,
        "3 text chunks + the upstream result: {evs:?}"
    );
    upstream.stop().await;
    th.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Push notifications

/// The old setting name still opens loopback for push webhooks.
const LOCAL_HOOKS: (&str, &str) = ("push_allowed_networks", "127.0.0.0/8");

#[derive(Default)]
struct Hook {
    /// (token header, body) of every POST, in arrival order, with the status answered.
    received: Mutex<Vec<(Option<String>, Value, u16)>>,
    /// Answer 500 to this many requests first.
    fail_first: Mutex<usize>,
}

/// A webhook receiver on a free port.
async fn webhook(fail_first: usize) -> (String, Arc<Hook>) {
    let hook = Arc::new(Hook::default());
    *hook.fail_first.lock() = fail_first;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = hook.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let h = h.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let h = h.clone();
                        async move {
                            use http_body_util::BodyExt;
                            let token = req
                                .headers()
                                .get("x-a2a-notification-token")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                            let status = {
                                let mut f = h.fail_first.lock();
                                if *f > 0 {
                                    *f -= 1;
                                    500
                                } else {
                                    200
                                }
                            };
                            h.received.lock().push((token, v, status));
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/hook"), hook)
}

fn payload_kind(v: &Value) -> String {
    if let Some(s) = v.get("statusUpdate") {
        format!("status:{}", s["status"]["state"].as_str().unwrap_or(""))
    } else if let Some(a) = v.get("artifactUpdate") {
        format!(
            "artifact:{}",
            a["artifact"]["artifactId"].as_str().unwrap_or("")
        )
    } else {
        format!("other:{v}")
    }
}

async fn wait_for_completed(hook: &Hook) -> Vec<(Option<String>, Value, u16)> {
    for _ in 0..500 {
        {
            let r = hook.received.lock();
            if r.iter()
                .any(|(_, v, s)| *s == 200 && payload_kind(v) == "status:TASK_STATE_COMPLETED")
            {
                return r.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no COMPLETED notification: {:?}", hook.received.lock());
}

#[tokio::test]
async fn push_notifications_are_delivered_with_retries() {
    let th = TestHub::start_with(&[LOCAL_HOOKS]).await;
    let (hook_url, hook) = webhook(1).await;
    let url = a2a_url(&th, "echo");
    let mut msg = user_message("push me");
    msg["parts"] = json!([{"text": "push me"}, {"data": {"chunks": 3}}]);
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "SendMessage",
        json!({"message": msg, "configuration": {
        "returnImmediately": true,
        "taskPushNotificationConfig": {"url": hook_url, "token": "sekrit"}}}),
    )
    .await;
    let tid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    let got = wait_for_completed(&hook).await;
    // The first POST failed and was retried; then everything arrived once, in order.
    assert_eq!(got[0].2, 500);
    assert_eq!(got[0].1, got[1].1, "the failed notification is sent again");
    let delivered: Vec<String> = got
        .iter()
        .filter(|(_, _, s)| *s == 200)
        .map(|(_, v, _)| payload_kind(v))
        .collect();
    assert_eq!(
        delivered,
        [
            "status:TASK_STATE_WORKING",
            "artifact:output",
            "artifact:output",
            "artifact:output",
            "artifact:result",
            "status:TASK_STATE_COMPLETED"
        ]
    );
    assert!(
        got.iter().all(|(t, _, _)| t.as_deref() == Some("sekrit")),
        "token header on every POST"
    );
    assert!(got.iter().all(|(_, v, _)| {
        let body = v
            .get("statusUpdate")
            .or_else(|| v.get("artifactUpdate"))
            .unwrap();
        body["taskId"] == tid.as_str()
    }));
    let (_, metrics) = get(&th.ops_url("/metrics")).await;
    let metrics = metrics.as_str().unwrap().to_string();
    let value = |outcome: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "a2a_push_notifications_total{{outcome=\"{outcome}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("retried") >= 1.0 && value("delivered") >= 6.0,
        "{metrics}"
    );
    assert!(metrics.contains("a2a_a2a_rpc_calls_total{method=\"SendMessage\",outcome=\"ok\"}"));
    th.stop().await;
}

#[tokio::test]
async fn push_delivery_resumes_after_a_restart() {
    let (hook_url, hook) = webhook(0).await;
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let mut msg = user_message("restart");
    msg["parts"] =
        json!([{"text": "survives a restart"}, {"data": {"chunks": 6, "delay_ms": 250}}]);
    let (_, v) = rpc(
        &a2a_url(&th, "echo"),
        Some("1.0"),
        "SendMessage",
        json!({"message": msg, "configuration": {
        "returnImmediately": true, "taskPushNotificationConfig": {"url": hook_url}}}),
    )
    .await;
    let tid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    for _ in 0..300 {
        if hook
            .received
            .lock()
            .iter()
            .filter(|(_, v, _)| payload_kind(v) == "artifact:output")
            .count()
            >= 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stop: delivery stops at once, the job finishes within the grace period.
    let dir = th.stop().await;
    let before = hook.received.lock().len();
    assert!(
        !hook
            .received
            .lock()
            .iter()
            .any(|(_, v, _)| payload_kind(v) == "status:TASK_STATE_COMPLETED"),
        "the job should still have been running at the stop"
    );
    let th = TestHub::start_in(dir, &[LOCAL_PEERS]).await;
    let got = wait_for_completed(&hook).await;
    assert!(got.len() > before);
    let mut seqs: Vec<u64> = got
        .iter()
        .map(|(_, v, _)| {
            v.get("statusUpdate")
                .or_else(|| v.get("artifactUpdate"))
                .unwrap()["metadata"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.dedup();
    let last = *seqs.last().unwrap();
    let mut unique = seqs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique,
        (1..=last).collect::<Vec<_>>(),
        "every event delivered (at least once): {seqs:?}"
    );
    let (_, r) = get(&th.rest(&format!("/requests/{tid}"))).await;
    assert_eq!(r["status"], "done");
    th.stop().await;
}

#[tokio::test]
async fn push_configs_persist_and_only_see_later_events() {
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let url = a2a_url(&th, "echo");
    let mut msg = user_message("later");
    msg["parts"] = json!([{"text": "later events"}, {"data": {"chunks": 6, "delay_ms": 100}}]);
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "SendMessage",
        json!({"message": msg, "configuration": {"returnImmediately": true}}),
    )
    .await;
    let tid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    // Wait for a few chunks, then subscribe a webhook: it gets only what comes after.
    for _ in 0..300 {
        if chunks(&stored_events(&th, &tid).await).len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (hook_url, hook) = webhook(0).await;
    let (_, v) = rpc(&url, Some("1.0"), "CreateTaskPushNotificationConfig",
        json!({"taskId": tid, "id": "late", "url": hook_url, "authentication": {"scheme": "Bearer", "credentials": "c"}})).await;
    assert_eq!(v["result"]["id"], "late", "{v}");
    let got = wait_for_completed(&hook).await;
    let n_chunks = got
        .iter()
        .filter(|(_, v, _)| payload_kind(v) == "artifact:output")
        .count();
    assert!(n_chunks < 6, "only events after the config: {n_chunks}");
    assert!(
        !got.iter()
            .any(|(_, v, _)| payload_kind(v) == "status:TASK_STATE_WORKING")
    );
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, v, _)| {
            v.get("statusUpdate")
                .or_else(|| v.get("artifactUpdate"))
                .unwrap()["metadata"]["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "in order: {seqs:?}");

    // Bad configs change nothing.
    for bad in [
        json!({"taskId": tid, "url": "ftp://x/y"}),
        json!({"taskId": tid, "url": "not a url"}),
        json!({"taskId": tid}),
        json!({"taskId": "nope", "url": "http://x/"}),
    ] {
        let (_, v) = rpc(
            &url,
            Some("1.0"),
            "CreateTaskPushNotificationConfig",
            bad.clone(),
        )
        .await;
        assert!(v.get("error").is_some(), "{bad} -> {v}");
    }
    // Configs survive a restart.
    let dir = th.stop().await;
    let th = TestHub::start_in(dir, &[LOCAL_PEERS]).await;
    let (_, v) = rpc(
        &a2a_url(&th, "echo"),
        Some("1.0"),
        "ListTaskPushNotificationConfigs",
        json!({"taskId": tid}),
    )
    .await;
    let configs = v["result"]["configs"].as_array().unwrap();
    assert_eq!(configs.len(), 1, "{v}");
    assert_eq!(
        configs[0]["authentication"],
        json!({"scheme": "Bearer", "credentials": "***"}),
        "kept, shown write-only"
    );
    th.stop().await;
}

/// Push webhooks are an SSRF vector (any caller that may act on a task names the URL): by
/// default they may not point at loopback, private, link-local or other internal addresses,
/// neither as IP literals (refused when set) nor through names resolving there (refused at
/// connect time); `egress_allowed_networks` opens a network.
#[tokio::test]
async fn push_webhooks_may_not_reach_internal_addresses() {
    let th = TestHub::start().await;
    let (hook_url, hook) = webhook(0).await;
    let port = hook_url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/hook")
        .to_string();
    let url = a2a_url(&th, "echo");
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "SendMessage",
        json!({"message": user_message("hold"), "configuration": {"returnImmediately": true}}),
    )
    .await;
    let tid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    let tasks_before = th.hub.store_counts().await.unwrap().requests;
    for bad in [
        hook_url.clone(),
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.7/hook".to_string(),
        "http://[::1]:9/hook".to_string(),
        "http://[::ffff:192.168.1.1]/hook".to_string(),
        "http://0.0.0.0:9/hook".to_string(),
    ] {
        let (_, v) = rpc(
            &url,
            Some("1.0"),
            "CreateTaskPushNotificationConfig",
            json!({"taskId": tid, "id": "x", "url": bad}),
        )
        .await;
        assert_eq!(v["error"]["code"], -32602, "{bad}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("A2A_EGRESS_ALLOWED_NETWORKS"), "{bad}: {msg}");
        // The same config on a new message is refused before a task is created.
        let (_, v) = rpc(
            &url,
            Some("1.0"),
            "SendMessage",
            json!({"message": user_message("x"), "configuration": {
                "returnImmediately": true, "taskPushNotificationConfig": {"url": bad}}}),
        )
        .await;
        assert_eq!(v["error"]["code"], -32602, "{bad}: {v}");
    }
    assert_eq!(th.hub.store_counts().await.unwrap().requests, tasks_before);
    let (_, v) = rpc(
        &url,
        Some("1.0"),
        "ListTaskPushNotificationConfigs",
        json!({"taskId": tid}),
    )
    .await;
    assert_eq!(
        v["result"]["configs"].as_array().map_or(0, Vec::len),
        0,
        "{v}"
    );

    th.stop().await;

    // A webhook by name, set while the operator allowed loopback: delivered (the guarded
    // resolver passes allowed addresses). After a restart with the default policy, the
    // stored config's name is refused when the connection is made: nothing more arrives,
    // and the worker says why.
    let th = TestHub::start_with(&[LOCAL_PEERS]).await;
    let mut msg = user_message("by name");
    msg["parts"] = json!([{"text": "by name"}, {"data": {"chunks": 6, "delay_ms": 250}}]);
    let (_, v) = rpc(
        &a2a_url(&th, "echo"),
        Some("1.0"),
        "SendMessage",
        json!({"message": msg, "configuration": {"returnImmediately": true,
            "taskPushNotificationConfig": {"url": format!("http://localhost:{port}/hook")}}}),
    )
    .await;
    assert!(v["result"]["task"]["id"].is_string(), "{v}");
    for _ in 0..300 {
        if hook.received.lock().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = th.stop().await;
    let delivered = hook.received.lock().len();
    assert!(delivered >= 2, "delivered while allowed: {delivered}");
    let th = TestHub::start_in(dir, &[]).await;
    let mut why = None;
    for _ in 0..250 {
        why = th
            .hub
            .workers()
            .into_iter()
            .find(|w| w.name == "push-delivery")
            .and_then(|w| w.last_error);
        if why.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let why = why.expect("the push worker reports the refused connection");
    assert!(
        why.contains("internal address") && why.contains("A2A_EGRESS_ALLOWED_NETWORKS"),
        "{why}"
    );
    assert_eq!(hook.received.lock().len(), delivered);
    th.stop().await;
}
