//! Stream and protocol hygiene: `SubscribeToTask` starts from the task as it stands, streams
//! end when their API key is revoked or expires, long finished logs replay to the end and
//! close, and the retention sweeper removes old sessions and permission requests.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use a2a_mcp::model::{Principal, Role, now_ms};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::harness::*;

fn admin() -> Principal {
    Principal::new("local", Role::Admin)
}

fn script(name: &str) -> String {
    repo_dir()
        .join("tests/agents")
        .join(name)
        .display()
        .to_string()
}

fn message_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("msg-{}-{}", now_ms(), N.fetch_add(1, Ordering::SeqCst))
}

async fn deploy(th: &TestHub, spec: Value) {
    let (s, v) = post(&th.rest("/agents"), spec).await;
    assert_eq!(s, 201, "deploy: {v}");
}

/// An SSE response read event by event.
struct Sse {
    body: hyper::body::Incoming,
    buf: String,
}

impl Sse {
    async fn open(method: &str, url: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Sse {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        let mut req = http::Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let resp = client
            .request(req.body(Full::new(bytes)).unwrap())
            .await
            .expect("http request");
        assert_eq!(resp.status(), 200, "{url}");
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "not SSE: {ct}");
        Sse {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// A JSON-RPC streaming call (`version` None: no A2A-Version header, i.e. 0.3).
    async fn rpc(url: &str, version: Option<&str>, method: &str, params: Value) -> Sse {
        let body = json!({"jsonrpc": "2.0", "id": "s1", "method": method, "params": params});
        let mut headers = vec![];
        if let Some(v) = version {
            headers.push(("a2a-version", v));
        }
        Sse::open("POST", url, Some(body), &headers).await
    }

    /// The next event (name, data); `None` once the server ended the stream. Keep-alive
    /// comments do not count: an event (or the end) must come within 30 s.
    async fn next(&mut self) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = "message".to_string();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data.join("\n")).unwrap()));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("an SSE event (or the end) within 30 s");
            match frame {
                None | Some(Err(_)) => return None,
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.push_str(&String::from_utf8_lossy(&d));
                    }
                }
            }
        }
    }

    /// Every remaining event until the server ends the stream.
    async fn rest(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        while let Some(e) = self.next().await {
            out.push(e);
        }
        out
    }
}

/// Frames until the server closes (within 30 s, pings or not): the JSON text frames and the
/// close code and reason.
async fn read_until_close(ws: &mut Ws) -> (Vec<Value>, Option<(u16, String)>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut frames = Vec::new();
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the server closes within 30 s");
        match msg {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(c))) => {
                return (
                    frames,
                    c.map(|c| (u16::from(c.code), c.reason.as_str().to_string())),
                );
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (frames, None),
        }
    }
}

fn state_rank(state: &str) -> u8 {
    match state {
        "TASK_STATE_SUBMITTED" => 0,
        "TASK_STATE_WORKING" => 1,
        "TASK_STATE_COMPLETED" | "TASK_STATE_FAILED" | "TASK_STATE_CANCELED" => 2,
        other => panic!("unexpected state {other}"),
    }
}

fn artifact_map(artifacts: &Value) -> BTreeMap<String, Vec<Value>> {
    artifacts
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    (
                        a["artifactId"].as_str().unwrap().to_string(),
                        a["parts"].as_array().unwrap().clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn texts(parts: &[Value]) -> Vec<&str> {
    parts.iter().map(|p| p["text"].as_str().unwrap()).collect()
}

/// Writes one command line to the paced agent.
fn say(w: &mut std::fs::File, line: &str) {
    writeln!(w, "{line}").unwrap();
    w.flush().unwrap();
}

#[tokio::test]
async fn subscribe_to_task_starts_from_the_current_state_after_a_drop() {
    let th = TestHub::start().await;
    let fifo = th.dir.path().join("control.fifo");
    nix::unistd::mkfifo(
        &fifo,
        nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
    )
    .unwrap();
    deploy(
        &th,
        json!({"id": "paced", "capabilities": [{"name": "run"}],
               "executor": {"kind": "process", "command": [script("paced.sh")],
                            "env": {"CONTROL_FIFO": fifo.display().to_string()}}}),
    )
    .await;
    let url = format!("http://{}/a2a/paced", th.api);
    // The agent opens its end of the FIFO once it runs; opening ours waits for that.
    let writer = {
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(fifo))
    };

    // A streaming task; read a few updates, then drop the connection.
    let msg = json!({"messageId": message_id(), "role": "ROLE_USER", "parts": [{"text": "go"}]});
    let mut first = Sse::rpc(
        &url,
        Some("1.0"),
        "SendStreamingMessage",
        json!({"message": msg}),
    )
    .await;
    let (_, d) = first.next().await.unwrap();
    let task = &d["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_SUBMITTED", "{d}");
    let tid = task["id"].as_str().unwrap().to_string();
    let (_, d) = first.next().await.unwrap();
    assert_eq!(
        d["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_WORKING",
        "{d}"
    );
    let mut w = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the agent opened its FIFO")
        .unwrap()
        .unwrap();
    for c in ["c1", "c2", "c3"] {
        say(&mut w, c);
        let (_, d) = first.next().await.unwrap();
        let u = &d["result"]["artifactUpdate"];
        assert_eq!(
            texts(u["artifact"]["parts"].as_array().unwrap()),
            [c],
            "{d}"
        );
    }
    drop(first);

    // Two more chunks while nobody follows over A2A (seen stored through a WebSocket).
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={tid}&after=4"))).await;
    say(&mut w, "c4");
    say(&mut w, "c5");
    loop {
        let f = ws_next(&mut ws).await;
        if f["content"] == "c5" {
            break;
        }
    }
    drop(ws);

    // Resubscribe: the first event is the task as it stands now.
    let mut second = Sse::rpc(&url, Some("1.0"), "SubscribeToTask", json!({"id": tid})).await;
    let (_, d) = second.next().await.unwrap();
    let snap = d["result"]["task"].clone();
    assert_eq!(snap["id"], tid.as_str());
    assert_eq!(snap["status"]["state"], "TASK_STATE_WORKING", "{d}");
    assert_eq!(snap["metadata"]["seq"], 6, "start + five chunks: {d}");
    assert_eq!(
        snap["artifacts"],
        json!([{"artifactId": "output", "name": "output",
                "parts": [{"text": "c1"}, {"text": "c2"}, {"text": "c3"}, {"text": "c4"}, {"text": "c5"}]}]),
        "{d}"
    );
    assert!(
        snap["history"].as_array().is_some_and(|h| !h.is_empty()),
        "{d}"
    );

    // The 0.3 name (tasks/resubscribe) starts the same way, in 0.3 shapes.
    let mut old = Sse::rpc(&url, None, "tasks/resubscribe", json!({"id": tid})).await;
    let (_, d) = old.next().await.unwrap();
    let t = &d["result"];
    assert_eq!(
        (t["kind"].as_str(), t["status"]["state"].as_str()),
        (Some("task"), Some("working")),
        "{d}"
    );
    let parts: Vec<&str> = t["artifacts"][0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["c1", "c2", "c3", "c4", "c5"], "{d}");
    drop(old);

    // Finish; the resubscribed stream carries only what came later, then closes.
    say(&mut w, "c6");
    say(&mut w, "end");
    let rest = second.rest().await;
    let mut arts = artifact_map(&snap["artifacts"]);
    let mut rank = state_rank(snap["status"]["state"].as_str().unwrap());
    let mut seqs = Vec::new();
    let mut last_state = String::new();
    for (_, d) in &rest {
        let r = &d["result"];
        if let Some(u) = r.get("artifactUpdate") {
            let id = u["artifact"]["artifactId"].as_str().unwrap().to_string();
            let parts = u["artifact"]["parts"].as_array().unwrap().clone();
            if u["append"] == true {
                arts.entry(id).or_default().extend(parts);
            } else {
                arts.insert(id, parts);
            }
            seqs.push(u["metadata"]["seq"].as_u64().unwrap());
        } else if let Some(u) = r.get("statusUpdate") {
            let state = u["status"]["state"].as_str().unwrap();
            let now = state_rank(state);
            assert!(now >= rank, "the state went back to {state}: {rest:?}");
            rank = now;
            last_state = state.to_string();
            seqs.push(u["metadata"]["seq"].as_u64().unwrap());
        } else {
            panic!("unexpected event {d}");
        }
    }
    assert_eq!(last_state, "TASK_STATE_COMPLETED", "{rest:?}");
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "in order: {seqs:?}");
    let mut distinct = seqs.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        [7, 8],
        "only the events after the task, each once"
    );
    // Task + later updates rebuild exactly the full artifacts.
    let (_, v) = post(
        &url,
        json!({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"id": tid}}),
    )
    .await;
    assert_eq!(v["result"]["status"]["state"], "completed", "{v}");
    let (_, v, _) = http(
        "POST",
        &url,
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": tid}})),
        &[("a2a-version", "1.0")],
    )
    .await;
    let full = artifact_map(&v["result"]["artifacts"]);
    assert_eq!(arts, full, "{v}");
    assert_eq!(texts(&full["output"]), ["c1", "c2", "c3", "c4", "c5", "c6"]);
    assert_eq!(full["result"], [json!({"data": {"chunks": 6}})]);
    th.stop().await;
}

#[tokio::test]
async fn streams_end_when_their_key_is_revoked_or_expires() {
    // No periodic key reload during the test: revocation must act at once, expiry on time.
    let th = TestHub::start_with(&[("key_refresh", "1h")]).await;
    let (token, rec) = th
        .hub
        .create_key(&admin(), Role::Invoker, "streams", None)
        .await
        .unwrap();
    let bearer = format!("Bearer {token}");
    let start_slow = |bearer: String| {
        let url = th.rest("/agents/echo/invoke");
        async move {
            let (s, v, _) = http(
                "POST",
                &url,
                Some(json!({"input": echo_input("slow", 1, 60_000)})),
                &[("authorization", bearer.as_str())],
            )
            .await;
            assert_eq!(s, 202, "{v}");
            v["requestId"].as_str().unwrap().to_string()
        }
    };
    let id = start_slow(bearer.clone()).await;

    // A WebSocket following the request, one following nothing, and an SSE stream.
    let mut following = ws_connect(&th.ws_url(&format!("?requestId={id}&token={token}"))).await;
    assert_eq!(ws_next(&mut following).await["type"], "start");
    let mut idle = ws_connect(&th.ws_url(&format!("?token={token}"))).await;
    ws_send(&mut idle, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut idle).await["type"], "pong");
    let mut sse = Sse::open(
        "GET",
        &th.rest(&format!("/requests/{id}/events")),
        None,
        &[("authorization", bearer.as_str())],
    )
    .await;
    assert_eq!(sse.next().await.unwrap().0, "start");

    th.hub.revoke_key(&admin(), &rec.id).await.unwrap();
    for ws in [&mut following, &mut idle] {
        let (frames, close) = read_until_close(ws).await;
        let (code, reason) = close.expect("a close frame");
        assert_eq!(code, 1008, "policy violation: {reason}");
        assert!(reason.contains("revoked"), "{reason}");
        let last = frames.last().expect("an error frame before the close");
        assert_eq!(
            (last["type"].as_str(), last["code"].as_str()),
            (Some("error"), Some("unauthenticated")),
            "{frames:?}"
        );
    }
    let rest = sse.rest().await;
    let (name, data) = rest.last().expect("a final error event");
    assert_eq!(name, "error", "{rest:?}");
    assert_eq!(data["error"]["code"], "unauthenticated", "{rest:?}");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
    // And the key opens nothing new.
    let err = tokio_tungstenite::connect_async(th.ws_url(&format!("?token={token}")).as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    // A key that expires while its streams are open: they end at its expiry.
    let (short, _) = th
        .hub
        .create_key(
            &admin(),
            Role::Invoker,
            "short-lived",
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let short_bearer = format!("Bearer {short}");
    let id2 = start_slow(short_bearer.clone()).await;
    let mut ws = ws_connect(&th.ws_url(&format!("?token={short}"))).await;
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong");
    let mut sse = Sse::open(
        "GET",
        &th.rest(&format!("/requests/{id2}/events")),
        None,
        &[("authorization", short_bearer.as_str())],
    )
    .await;
    assert_eq!(sse.next().await.unwrap().0, "start");
    let (_, close) = read_until_close(&mut ws).await;
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    let rest = sse.rest().await;
    let (name, data) = rest.last().expect("a final error event");
    assert_eq!(name, "error", "{rest:?}");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{rest:?}"
    );
    th.stop().await;
}

#[tokio::test]
async fn a2a_stream_ends_with_an_error_when_its_key_is_revoked() {
    let th = TestHub::start().await;
    let (token, rec) = th
        .hub
        .create_key(&admin(), Role::Invoker, "a2a", None)
        .await
        .unwrap();
    let bearer = format!("Bearer {token}");
    let msg = json!({"messageId": message_id(), "role": "ROLE_USER",
                     "parts": [{"text": "slow"}, {"data": {"chunks": 1, "delay_ms": 60000}}]});
    let mut s = Sse::open(
        "POST",
        &format!("http://{}/a2a/echo", th.api),
        Some(
            json!({"jsonrpc": "2.0", "id": "s1", "method": "SendStreamingMessage",
                    "params": {"message": msg}}),
        ),
        &[("a2a-version", "1.0"), ("authorization", bearer.as_str())],
    )
    .await;
    assert!(s.next().await.unwrap().1["result"]["task"].is_object());
    let (_, d) = s.next().await.unwrap();
    assert_eq!(
        d["result"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_WORKING"
    );
    th.hub.revoke_key(&admin(), &rec.id).await.unwrap();
    let rest = s.rest().await;
    let (_, last) = rest.last().expect("an error event");
    assert_eq!(last["id"], "s1", "{rest:?}");
    assert!(
        last["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("revoked")),
        "{rest:?}"
    );
    th.stop().await;
}

#[tokio::test]
async fn a_finished_request_with_many_events_replays_completely_and_closes() {
    let th = TestHub::start().await;
    deploy(
        &th,
        json!({"id": "many", "capabilities": [{"name": "run"}],
               "executor": {"kind": "process", "command": [script("many.sh"), "1500"]}}),
    )
    .await;
    let url = format!("http://{}/a2a/many", th.api);
    let mid = message_id();
    let msg = json!({"messageId": mid, "role": "ROLE_USER", "parts": [{"text": "go"}]});
    let (_, v, _) = http(
        "POST",
        &url,
        Some(json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                    "params": {"message": msg, "configuration": {"returnImmediately": true}}})),
        &[("a2a-version", "1.0")],
    )
    .await;
    let id = v["result"]["task"]["id"].as_str().unwrap().to_string();
    let mut finished = false;
    for _ in 0..600 {
        let (_, r) = get(&th.rest(&format!("/requests/{id}"))).await;
        assert!(r["status"] != "error", "{r}");
        if r["status"] == "done" {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(finished, "the request finished");

    // WebSocket: every event, then a normal close.
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
    let (events, close) = ws_read_all(&mut ws).await;
    assert_eq!(events.len(), 1502, "start + 1500 chunks + final");
    assert_complete_stream(&events, "final");
    assert_eq!(close, Some(1000));

    // SSE: every event, then the response ends.
    let mut sse = Sse::open(
        "GET",
        &th.rest(&format!("/requests/{id}/events")),
        None,
        &[],
    )
    .await;
    let all: Vec<Value> = sse.rest().await.into_iter().map(|(_, d)| d).collect();
    assert_eq!(all.len(), 1502);
    assert_complete_stream(&all, "final");

    // A2A: the same message again finds the task; its stream replays all and closes.
    let mut a2a = Sse::rpc(
        &url,
        Some("1.0"),
        "SendStreamingMessage",
        json!({"message": msg}),
    )
    .await;
    let all = a2a.rest().await;
    let chunks = all
        .iter()
        .filter(|(_, d)| d["result"]["artifactUpdate"]["artifact"]["artifactId"] == "output")
        .count();
    assert_eq!(chunks, 1500);
    assert_eq!(
        all.last().unwrap().1["result"]["statusUpdate"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );

    // MCP get_status with events: the whole log.
    let (_, v) = super::security::mcp(
        &th.mcp_url(),
        None,
        "tools/call",
        json!({"name": "get_status", "arguments": {"requestId": id, "includeEvents": true}}),
    )
    .await;
    let evs = v["result"]["structuredContent"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(evs.len(), 1502);
    th.stop().await;
}

#[tokio::test]
async fn the_sweeper_removes_old_sessions_and_permission_requests_and_keeps_live_ones() {
    use a2a_mcp::model::{RequestRecord, RequestState, SessionRecord};
    use a2a_mcp::policy::grants::{PermissionRequestRecord, RequestStatus};
    use a2a_mcp::store::{Aux, Op, Store, codec};

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let now = now_ms();
    let hour = 3_600_000;
    let day = 24 * hour;
    {
        let store =
            a2a_mcp::store::redb::RedbStore::open(&dir.path().join("a2a-mcp.redb")).unwrap();
        let session = |id: &str, created: i64, closed: Option<i64>| {
            Op::PutSession(SessionRecord {
                id: id.into(),
                principal: "p".into(),
                agent_id: None,
                metadata: "{}".into(),
                created_at: created,
                closed_at: closed,
            })
        };
        let request = |id: &str, session: &str, finished: i64| {
            Op::PutRequest(RequestRecord {
                id: id.into(),
                agent_id: "echo".into(),
                capability: "chat".into(),
                input: "{}".into(),
                session_id: Some(session.into()),
                parent_id: None,
                idempotency_key: None,
                principal: "p".into(),
                state: RequestState::Done,
                created_at: finished - 1000,
                started_at: Some(finished - 900),
                finished_at: Some(finished),
                result: Some("{}".into()),
                error: None,
                attempts: 1,
            })
        };
        let permission = |id: &str, status: RequestStatus, created: i64, decided: Option<i64>| {
            let rec = PermissionRequestRecord {
                id: id.into(),
                agent_id: "echo".into(),
                permission: "agent:invoke:echo".into(),
                reason: "test".into(),
                requested_by: "p".into(),
                created_at: created,
                status,
                decided_by: decided.map(|_| "local".to_string()),
                decided_at: decided,
                grant_id: None,
            };
            Op::PutAux {
                table: Aux::PermissionRequests,
                key: id.into(),
                value: codec::encode(&rec).unwrap(),
            }
        };
        store
            .write(vec![
                session("s-closed-old", now - 10 * day, Some(now - 9 * day)),
                session("s-idle-old", now - 10 * day, None),
                request("r-idle-old", "s-idle-old", now - 9 * day),
                session("s-busy-old", now - 10 * day, None),
                request("r-recent", "s-busy-old", now - hour),
                session("s-new", now - hour, None),
                session("s-closed-new", now - 10 * day, Some(now - hour)),
                permission(
                    "pr-decided-old",
                    RequestStatus::Approved,
                    now - 10 * day,
                    Some(now - 9 * day),
                ),
                permission(
                    "pr-decided-new",
                    RequestStatus::Denied,
                    now - 10 * day,
                    Some(now - hour),
                ),
                permission(
                    "pr-pending-old",
                    RequestStatus::Pending,
                    now - 9 * day,
                    None,
                ),
                permission("pr-pending-new", RequestStatus::Pending, now - hour, None),
            ])
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let th = TestHub::start_in(dir, &[("sweep_interval", "50ms")]).await;
    let mut swept = false;
    for _ in 0..600 {
        if th
            .hub
            .workers()
            .iter()
            .any(|w| w.name == "retention-sweeper" && w.runs >= 1)
        {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(swept, "the sweeper ran");
    let hub = &th.hub;
    for gone in ["s-closed-old", "s-idle-old"] {
        let e = hub.get_session(&admin(), gone).await.unwrap_err();
        assert_eq!(e.code.name(), "session_not_found", "{gone}");
    }
    for kept in ["s-busy-old", "s-new", "s-closed-new"] {
        hub.get_session(&admin(), kept)
            .await
            .unwrap_or_else(|e| panic!("{kept}: {}", e.message));
    }
    assert!(hub.get_status(&admin(), "r-idle-old").await.is_err());
    hub.get_status(&admin(), "r-recent").await.unwrap();
    let mut left: Vec<String> = hub
        .get_permissions(&admin(), None)
        .await
        .unwrap()
        .requests
        .into_iter()
        .map(|r| r.id)
        .collect();
    left.sort();
    assert_eq!(left, ["pr-decided-new", "pr-pending-new"]);
    th.stop().await;
}

/// Subscription slots belong to the hub's streams, whatever the transport: a key at its cap
/// (`A2A_MAX_STREAMS_PER_KEY`) holding a WebSocket subscription is refused an SSE stream and
/// an A2A stream (429), while a blocking REST wait (bounded, part of one call) still works;
/// once the WebSocket closes, the slot is free again.
#[tokio::test]
async fn a_keys_stream_cap_counts_every_transport_and_frees_on_close() {
    let th = TestHub::start_with(&[("max_streams_per_key", "1")]).await;
    let k = super::security::key(&th, Role::Invoker).await;
    let bearer = format!("Bearer {k}");
    let auth = [("authorization", bearer.as_str())];
    let (s, v, _) = http(
        "POST",
        &th.rest("/agents/echo/invoke"),
        Some(json!({"input": echo_input("slow", 2, 3000)})),
        &auth,
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}&token={k}"))).await;
    let first = ws_next(&mut ws).await;
    assert_eq!(first["requestId"], id.as_str(), "{first}");

    // SSE: refused while the WebSocket holds the key's slot.
    let (s, v, _) = http(
        "GET",
        &th.rest(&format!("/requests/{id}/events")),
        None,
        &auth,
    )
    .await;
    assert_eq!(s, 429, "SSE over the cap: {v}");
    assert!(v.to_string().contains("A2A_MAX_STREAMS_PER_KEY"), "{v}");
    // A2A SubscribeToTask: refused too.
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "SubscribeToTask", "params": {"id": id}});
    let (_, v, _) = http(
        "POST",
        &format!("http://{}/a2a/echo", th.api),
        Some(body),
        &[("authorization", bearer.as_str()), ("a2a-version", "1.0")],
    )
    .await;
    assert!(
        v.to_string().contains("A2A_MAX_STREAMS_PER_KEY"),
        "A2A stream over the cap: {v}"
    );
    // A blocking wait is not a stream: it still answers.
    let (s, v, _) = http(
        "POST",
        &th.rest("/agents/echo/invoke"),
        Some(json!({"input": echo_input("quick", 1, 0), "wait": true})),
        &auth,
    )
    .await;
    assert_eq!(s, 200, "blocking wait: {v}");
    assert_eq!(v["status"], "done", "{v}");

    // Closing the WebSocket gives the slot back.
    ws.close(None).await.unwrap();
    drop(ws);
    let mut freed = false;
    for _ in 0..200 {
        let (s, _, _) = http_status_only(&th.rest(&format!("/requests/{id}/events")), &auth).await;
        if s == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(freed, "the WebSocket's slot was given back");
    th.stop().await;
}

/// The status of a GET whose body may be an endless stream: reads only the head.
async fn http_status_only(url: &str, headers: &[(&str, &str)]) -> (u16, (), ()) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request");
    (resp.status().as_u16(), (), ())
}
