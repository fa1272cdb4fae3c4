//! A2A `SendMessage` is one commit: a hub killed with SIGKILL while tasks are being created
//! leaves, for every task, its request, its session (context), its first message and its push
//! config — or nothing of it. Checked by reading the store directly after the kill.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde_json::json;

use super::harness::*;

/// One JSON-RPC POST; `None` once the hub is gone (connection refused or reset).
async fn try_rpc(url: &str, body: serde_json::Value) -> Option<serde_json::Value> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("a2a-version", "1.0")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .ok()?;
    let resp = client.request(req).await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&bytes).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_message_killed_mid_flight_leaves_whole_tasks_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Push configs to a loopback port nobody listens on: accepted (the egress policy allows
    // loopback here), their delivery just fails and is retried.
    let mut bin = TestBinary::serve(
        dir.path(),
        &[("A2A_EGRESS_ALLOWED_NETWORKS", "127.0.0.0/8")],
    )
    .await;
    let url = format!("http://{}/a2a/echo", bin.api);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for w in 0..16 {
        let (url, acked, sent) = (url.clone(), acked.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let msg = json!({"messageId": format!("m-{w}-{i}"), "role": "ROLE_USER",
                    "parts": [{"text": format!("hello {w} {i}")}]});
                let body = json!({"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
                    "params": {"message": msg, "configuration": {"returnImmediately": true,
                    "taskPushNotificationConfig": {"url": "http://127.0.0.1:9/hook", "token": "t"}}}});
                sent.fetch_add(1, Ordering::Relaxed);
                let v = try_rpc(&url, body).await.unwrap_or_default();
                match v["result"]["task"]["id"].as_str() {
                    Some(id) => acked.lock().push(id.to_string()),
                    // The hub is gone.
                    _ => break,
                }
            }
        }));
    }
    // Kill while sends are in flight: after a good number were answered.
    for _ in 0..600 {
        if acked.lock().len() >= 60 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(acked.lock().len() >= 60, "the hub answered too few sends");
    bin.kill9();
    let _ = bin.child.wait().await;
    for s in senders {
        let _ = s.await;
    }
    let acked = acked.lock().clone();
    assert!(
        sent.load(Ordering::Relaxed) > acked.len(),
        "some sends were in flight at the kill"
    );

    // Read what the crash left.
    let config = test_config(dir.path(), &[]);
    let store = a2a_mcp::store::open(&(&config).into())
        .await
        .expect("open store");
    let requests = store.list_requests(&Default::default()).await.unwrap();
    let ids: std::collections::HashSet<&str> = requests.iter().map(|r| r.id.as_str()).collect();
    for id in &acked {
        assert!(ids.contains(id.as_str()), "acknowledged task {id} lost");
    }
    for r in &requests {
        let session = r
            .session_id
            .as_deref()
            .expect("every A2A task has a context");
        assert!(
            store.get_session(session).await.unwrap().is_some(),
            "task {} has no session",
            r.id
        );
        let msgs = store
            .scan_aux(
                a2a_mcp::store::Aux::TaskMessages,
                &format!("{}/", r.id),
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(msgs.len(), 1, "task {} has its first message", r.id);
        let pushes = store
            .scan_aux(
                a2a_mcp::store::Aux::PushConfigs,
                &format!("{}/", r.id),
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(pushes.len(), 1, "task {} has its push config", r.id);
    }
    // No half task: no session, message or push config without its request.
    let counts = store.counts().await.unwrap();
    let n = requests.len() as u64;
    assert_eq!(counts.sessions, n, "sessions without a task: {counts:?}");
    assert_eq!(
        counts.aux.get("task_messages").copied().unwrap_or(0),
        n,
        "{counts:?}"
    );
    assert_eq!(
        counts.aux.get("push_configs").copied().unwrap_or(0),
        n,
        "{counts:?}"
    );
    store.close().await.unwrap();
}
