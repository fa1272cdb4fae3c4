//! Streams: WebSocket and SSE replay-then-live, late subscribers, resume points, limits.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;

#[tokio::test]
async fn late_websocket_subscriber_gets_every_event() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("abcdefghij", 5, 0)).await;
    wait_status(&th, &id, "done").await;
    // Connect after the final event: everything is replayed, then a normal close.
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
    let (events, close) = ws_read_all(&mut ws).await;
    assert_eq!(events.len(), 7, "start + 5 chunks + final: {events:?}");
    assert_complete_stream(&events, "final");
    let text: String = events[1..6]
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "abcdefghij");
    assert_eq!(events[6]["result"]["messages"][0]["content"], "abcdefghij");
    assert_eq!(close, Some(1000));

    // Reconnect with after=k: exactly the events after k.
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}&after=3"))).await;
    let (rest, _) = ws_read_all(&mut ws).await;
    let seqs: Vec<u64> = rest.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![4, 5, 6, 7]);
    th.stop().await;
}

#[tokio::test]
async fn live_subscriber_mid_stream_sees_no_gap() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("0123456789", 10, 60)).await;
    // Join while chunks are flowing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
    let (events, close) = ws_read_all(&mut ws).await;
    assert_complete_stream(&events, "final");
    assert_eq!(events.len(), 12);
    assert_eq!(close, Some(1000));
    // A second client resuming in the middle of the live part.
    let id2 = invoke(&th, "echo", echo_input("0123456789", 10, 40)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut a = ws_connect(&th.ws_url(&format!("?requestId={id2}"))).await;
    let first_three: Vec<Value> = vec![
        ws_next(&mut a).await,
        ws_next(&mut a).await,
        ws_next(&mut a).await,
    ];
    drop(a);
    let k = first_three[2]["seq"].as_u64().unwrap();
    let mut b = ws_connect(&th.ws_url(&format!("?requestId={id2}&after={k}"))).await;
    let (rest, _) = ws_read_all(&mut b).await;
    let mut all = first_three;
    all.extend(rest);
    assert_complete_stream(&all, "final");
    th.stop().await;
}

#[tokio::test]
async fn one_connection_follows_many_requests() {
    let th = TestHub::start().await;
    let mut ws = ws_connect(&th.ws_url("")).await;
    let ids: Vec<String> = futures_util::future::join_all(
        (0..3).map(|i| invoke(&th, "echo", echo_input(&format!("req {i}"), 2, 20))),
    )
    .await;
    for id in &ids {
        ws_send(&mut ws, json!({"type": "subscribe", "requestId": id})).await;
    }
    let mut finals = std::collections::HashSet::new();
    let mut acks = 0;
    while finals.len() < 3 {
        let f = ws_next(&mut ws).await;
        match f["type"].as_str() {
            Some("subscribed") => acks += 1,
            Some("final") => {
                finals.insert(f["requestId"].as_str().unwrap().to_string());
            }
            Some("start" | "chunk") => {}
            other => panic!("unexpected frame {other:?}: {f}"),
        }
    }
    assert_eq!(acks, 3);
    // The connection stays open for more; bad messages get an error frame, not a close.
    ws_send(
        &mut ws,
        json!({"type": "subscribe", "requestId": "no-such-id"}),
    )
    .await;
    let e = ws_next(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("request_not_found"))
    );
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text("{not json"))
        .await
        .unwrap();
    let e = ws_next(&mut ws).await;
    assert_eq!(e["code"], "invalid_json");
    ws_send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "pong");
    th.stop().await;
}

#[tokio::test]
async fn websocket_errors_before_upgrade() {
    let th =
        TestHub::start_with(&[("stream_token", "s3cret"), ("max_subs_per_request", "2")]).await;
    let id = invoke(&th, "echo", echo_input("x", 1, 2000)).await;
    let url = th.ws_url(&format!("?requestId={id}"));
    // No token: 401 before the upgrade.
    let err = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Wrong token.
    let err = tokio_tungstenite::connect_async(format!("{url}&token=nope").as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // Unknown request: 404.
    let err =
        tokio_tungstenite::connect_async(th.ws_url("?requestId=unknown&token=s3cret").as_str())
            .await
            .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // Foreign Origin: 403.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("{url}&token=s3cret").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // MAX_SUBS_PER_REQUEST: the third subscriber gets 429.
    let _a = ws_connect(&format!("{url}&token=s3cret")).await;
    let _b = ws_connect(&format!("{url}&token=s3cret")).await;
    let err = tokio_tungstenite::connect_async(format!("{url}&token=s3cret").as_str())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
    // Bearer works as well as token=.
    drop(_a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("bearer accepted");
    th.stop().await;
}

async fn sse_events(url: &str, headers: &[(&str, &str)]) -> Vec<Value> {
    let (status, body, h) = http_raw("GET", url, vec![], headers).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect()
}

#[tokio::test]
async fn sse_replays_and_resumes_with_last_event_id() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("server sent", 4, 0)).await;
    wait_status(&th, &id, "done").await;
    let url = th.rest(&format!("/requests/{id}/events"));
    let all = sse_events(&url, &[]).await;
    assert_complete_stream(&all, "final");
    assert_eq!(all.len(), 6);
    let tail = sse_events(&url, &[("last-event-id", "4")]).await;
    let seqs: Vec<u64> = tail.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![5, 6]);
    let (s, body, _) = http_raw("GET", &format!("{url}?after=x"), vec![], &[]).await;
    assert_eq!(s, 400, "{body}");
    let (s, _, _) = http_raw("GET", &th.rest("/requests/nope/events"), vec![], &[]).await;
    assert_eq!(s, 404);
    th.stop().await;
}
