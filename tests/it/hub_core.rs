//! The hub core through its real transports: invocation, idempotency, queue limits,
//! cancellation, handoff, sessions, registry persistence, recovery, retention.

use std::time::Duration;

use a2a_mcp::hub::InvokeArgs;
use a2a_mcp::model::{Principal, Role};
use serde_json::json;

use super::harness::*;

#[tokio::test]
async fn invoke_and_wait_returns_the_echo() {
    let th = TestHub::start().await;
    let (s, v) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("hello hub", 3, 0), "wait": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "done");
    assert_eq!(v["result"]["messages"][0]["content"], "hello hub");
    assert_eq!(v["timedOut"], false);
    let stream = v["streamUrl"].as_str().unwrap();
    assert!(
        stream.starts_with(&format!("ws://{}/stream?requestId=", th.api)),
        "{stream}"
    );
    th.stop().await;
}

#[tokio::test]
async fn idempotency_is_scoped_to_caller_and_bound_to_arguments() {
    let th = TestHub::start().await;
    let alice = Principal::new("alice", Role::Invoker);
    let bob = Principal::new("bob", Role::Invoker);
    let args = |text: &str| InvokeArgs {
        agent_id: "echo".into(),
        capability: None,
        input: echo_input(text, 1, 0),
        session_id: None,
        idempotency_key: Some("key-1".into()),
    };
    let a1 = th.hub.invoke(&alice, args("same")).await.unwrap();
    let a2 = th.hub.invoke(&alice, args("same")).await.unwrap();
    assert_eq!(a1.id, a2.id, "same key + same arguments -> same request");
    let conflict = th.hub.invoke(&alice, args("different")).await.unwrap_err();
    assert_eq!(conflict.code.name(), "idempotency_conflict");
    let b1 = th.hub.invoke(&bob, args("same")).await.unwrap();
    assert_ne!(b1.id, a1.id, "another caller's key is another key");
    // Key order in the input does not matter (canonical hashing).
    let reordered = InvokeArgs {
        input: json!({"delay_ms": 0, "chunks": 1, "messages": [{"content": "same", "role": "user"}]}),
        ..args("same")
    };
    assert_eq!(th.hub.invoke(&alice, reordered).await.unwrap().id, a1.id);

    // ... and the mapping survives a restart.
    let dir = th.stop().await;
    let th = TestHub::start_in(dir, &[]).await;
    let again = th.hub.invoke(&alice, args("same")).await.unwrap();
    assert_eq!(again.id, a1.id);
    th.stop().await;
}

#[tokio::test]
async fn queue_full_is_refused_and_not_remembered() {
    let th = TestHub::start_with(&[("max_concurrency", "1"), ("max_queue_size", "2")]).await;
    let p = Principal::anonymous();
    let held = |n: u32| InvokeArgs {
        agent_id: "echo".into(),
        input: echo_input(&format!("held {n}"), 1, 3000),
        ..Default::default()
    };
    let first = th.hub.invoke(&p, held(1)).await.unwrap();
    wait_status(&th, &first.id, "running").await;
    th.hub.invoke(&p, held(2)).await.unwrap();
    th.hub.invoke(&p, held(3)).await.unwrap();
    let with_key = InvokeArgs {
        idempotency_key: Some("k-full".into()),
        ..held(4)
    };
    let err = th.hub.invoke(&p, with_key.clone()).await.unwrap_err();
    assert_eq!(err.code.name(), "queue_full", "{err}");
    assert!(err.message.contains("MAX_QUEUE_SIZE"));
    // Over REST: 503 with the code.
    let (s, v) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("x", 1, 0)}),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (503, Some("queue_full")));
    // Make room; the same key now creates a request (the refusal was not remembered).
    th.hub.cancel(&p, &first.id, None).await.unwrap();
    let stats = th.hub.stats();
    assert!(stats.queued <= 1, "{stats:?}");
    let created = th.hub.invoke(&p, with_key).await.unwrap();
    assert_eq!(created.idempotency_key.as_deref(), Some("k-full"));
    th.stop().await;
}

#[tokio::test]
async fn cancel_running_echo_stays_canceled() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("slow", 3, 500)).await;
    wait_status(&th, &id, "running").await;
    let (s, v) = post(
        &th.rest(&format!("/requests/{id}/cancel")),
        json!({"reason": "test"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "canceled");
    assert_eq!(v["error"], "test");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (_, v) = get(&th.rest(&format!("/requests/{id}"))).await;
    assert_eq!(
        v["status"], "canceled",
        "a canceled job never flips to done: {v}"
    );
    // Cancelling again is a clear conflict.
    let (s, v) = post(&th.rest(&format!("/requests/{id}/cancel")), json!({})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("not_cancelable"))
    );
    th.stop().await;
}

#[tokio::test]
async fn cancel_queued_request() {
    let th = TestHub::start_with(&[("max_concurrency", "1")]).await;
    let blocker = invoke(&th, "echo", echo_input("block", 1, 2000)).await;
    wait_status(&th, &blocker, "running").await;
    let queued = invoke(&th, "echo", echo_input("waiting", 1, 0)).await;
    let (_, v) = get(&th.rest(&format!("/requests/{queued}"))).await;
    assert_eq!(v["status"], "queued");
    let (s, v) = post(&th.rest(&format!("/requests/{queued}/cancel")), json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")));
    // Its stream is complete: one canceled event.
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={queued}"))).await;
    let (frames, close) = ws_read_all(&mut ws).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "canceled");
    assert_eq!(close, Some(1000));
    th.stop().await;
}

#[tokio::test]
async fn per_agent_concurrency_limit_holds() {
    let th = TestHub::start().await;
    let p = Principal::anonymous();
    let spec = json!({
        "id": "slow-echo", "max_concurrency": 2,
        "capabilities": [{"name": "chat"}],
        "executor": {"kind": "builtin", "name": "echo"}
    });
    let (s, v) = post(&th.rest("/agents"), spec).await;
    assert_eq!(s, 201, "{v}");
    let mut ids = vec![];
    for i in 0..5 {
        let r = th
            .hub
            .invoke(
                &p,
                InvokeArgs {
                    agent_id: "slow-echo".into(),
                    input: echo_input(&format!("{i}"), 1, 300),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        ids.push(r.id);
    }
    let mut max_running = 0;
    for _ in 0..60 {
        let st = th.hub.stats();
        let running = st.per_agent.get("slow-echo").map_or(0, |l| l.running);
        max_running = max_running.max(running);
        assert!(running <= 2, "per-agent limit exceeded: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(max_running, 2);
    for id in ids {
        wait_status(&th, &id, "done").await;
    }
    th.stop().await;
}

#[tokio::test]
async fn handoff_links_to_parent_and_joins_its_session() {
    let th = TestHub::start().await;
    let (s, sess) = post(&th.rest("/sessions"), json!({"metadata": {"who": "test"}})).await;
    assert_eq!(s, 201, "{sess}");
    let sid = sess["sessionId"].as_str().unwrap();
    let (s, parent) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("parent", 1, 0), "sessionId": sid, "wait": true}),
    )
    .await;
    assert_eq!(s, 200, "{parent}");
    let pid = parent["requestId"].as_str().unwrap();
    let (s, child) = post(
        &th.rest(&format!("/requests/{pid}/handoff")),
        json!({"agentId": "echo", "input": echo_input("child", 1, 0)}),
    )
    .await;
    assert_eq!(s, 202, "{child}");
    assert_eq!(child["parentId"], pid);
    assert_eq!(child["sessionId"], sid);
    let (_, listed) = get(&th.rest(&format!("/requests?sessionId={sid}"))).await;
    assert_eq!(listed["requests"].as_array().unwrap().len(), 2);
    // Closing the session stops new requests from joining it.
    let (s, _, _) = http("DELETE", &th.rest(&format!("/sessions/{sid}")), None, &[]).await;
    assert_eq!(s, 200);
    let (s, v) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("late", 1, 0), "sessionId": sid}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("session_closed"))
    );
    let (s, v) = post(
        &th.rest("/requests/no-such-parent/handoff"),
        json!({"agentId": "echo", "input": echo_input("x", 1, 0)}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("request_not_found"))
    );
    th.stop().await;
}

#[tokio::test]
async fn runtime_agent_changes_persist_and_win_over_the_catalog() {
    let th = TestHub::start().await;
    // Deploy a runtime agent, disable the catalog's echo.
    let (s, _) = post(
        &th.rest("/agents"),
        json!({"id": "failer", "capabilities": [{"name": "run"}], "executor": {"kind": "builtin", "name": "fail"}}),
    )
    .await;
    assert_eq!(s, 201);
    let (s, v) = post(&th.rest("/agents/echo/disable"), json!({})).await;
    assert_eq!((s, v["enabled"].as_bool()), (200, Some(false)));
    let (s, v) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("x", 1, 0)}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("agent_disabled"))
    );
    let (s, v, _) = http(
        "PATCH",
        &th.rest("/agents/failer"),
        Some(json!({"description": "fails on purpose"})),
        &[],
    )
    .await;
    assert_eq!(
        (s, v["description"].as_str()),
        (200, Some("fails on purpose"))
    );

    let dir = th.stop().await;
    let th = TestHub::start_in(dir, &[]).await;
    let (_, v) = get(&th.rest("/agents/echo")).await;
    assert_eq!(
        v["enabled"], false,
        "run-time disable wins over the catalog: {v}"
    );
    let (_, v) = get(&th.rest("/agents/failer")).await;
    assert_eq!(v["description"], "fails on purpose");
    // Removing a catalog agent is remembered too.
    let (s, _, _) = http("DELETE", &th.rest("/agents/echo"), None, &[]).await;
    assert_eq!(s, 200);
    let dir = th.stop().await;
    let th = TestHub::start_in(dir, &[]).await;
    let (s, v) = get(&th.rest("/agents/echo")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("agent_not_found"))
    );
    // A failing agent ends in error with its message.
    let (s, v) = post(
        &th.rest("/agents/failer/invoke"),
        json!({"input": {"message": "nope"}, "wait": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["error"].as_str()),
        (Some("error"), Some("nope"))
    );
    th.stop().await;
}

#[tokio::test]
async fn retention_sweeper_removes_old_requests() {
    let th = TestHub::start_with(&[("retention", "200ms"), ("sweep_interval", "100ms")]).await;
    let id = invoke(&th, "echo", echo_input("old", 1, 0)).await;
    wait_status(&th, &id, "done").await;
    let mut gone = false;
    for _ in 0..100 {
        let (s, _) = get(&th.rest(&format!("/requests/{id}"))).await;
        if s == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the sweeper should remove a request older than the retention"
    );
    let counts = th.hub.store_counts().await.unwrap();
    assert_eq!(counts.events, 0, "its events go with it");
    let workers = th.hub.workers();
    assert!(
        workers
            .iter()
            .any(|w| w.name == "retention-sweeper" && w.runs > 0)
    );
    th.stop().await;
}

#[tokio::test]
async fn recovery_requeues_queued_and_applies_interrupt_policy() {
    // A hub stopped with a job still running (grace too short) leaves it `running`.
    let th = TestHub::start_with(&[("max_concurrency", "1")]).await;
    let (s, _) = post(
        &th.rest("/agents"),
        json!({"id": "fragile", "capabilities": [{"name": "chat"}], "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201);
    let running = invoke(&th, "fragile", echo_input("long", 1, 60_000)).await;
    wait_status(&th, &running, "running").await;
    let queued = invoke(&th, "echo", echo_input("queued", 2, 0)).await;
    let dir = th.stop().await;

    let th = TestHub::start_in(dir, &[]).await;
    let v = wait_status(&th, &running, "error").await;
    assert_eq!(v["error"], "interrupted by restart");
    let v = wait_status(&th, &queued, "done").await;
    assert_eq!(v["result"]["messages"][0]["content"], "queued");
    th.stop().await;
}
