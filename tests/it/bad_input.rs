//! Bad input gets a clear error, changes nothing, and the server keeps serving.

use serde_json::json;

use super::harness::*;

#[tokio::test]
async fn rest_rejects_bad_input_without_side_effects() {
    let th = TestHub::start().await;
    let before = th.hub.store_counts().await.unwrap();
    let invoke_url = th.rest("/agents/echo/invoke");
    let ct = ("content-type", "application/json");

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "invalid_json"),
        (b"[1,2,3]".to_vec(), 400, "invalid_request"),
        (b"\xff\xfe\x00".to_vec(), 400, "invalid_json"),
        (br#"{"input": "a string"}"#.to_vec(), 400, "invalid_params"),
        (
            br#"{"input": {"messages": 5}}"#.to_vec(),
            422,
            "input_validation_failed",
        ),
        (br#"{"input": {}}"#.to_vec(), 422, "input_validation_failed"),
        (
            br#"{"input": {"messages": [{"role":"user","content":"x"}]}, "capability": "nope"}"#
                .to_vec(),
            404,
            "capability_not_found",
        ),
        (
            br#"{"input": {"messages": [{"role":"user","content":"x"}]}, "surprise": true}"#
                .to_vec(),
            400,
            "invalid_params",
        ),
        (
            br#"{"input": {"messages": [{"role":"user","content":"x"}]}, "sessionId": "ghost"}"#
                .to_vec(),
            404,
            "session_not_found",
        ),
        (
            br#"{"input": {"messages": [{"role":"user","content":"x"}]}, "idempotencyKey": ""}"#
                .to_vec(),
            400,
            "invalid_params",
        ),
    ];
    for (body, status, code) in cases {
        let (s, text, _) = http_raw("POST", &invoke_url, body.clone(), &[ct]).await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "body {:?} -> {text}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Unknown agent, unknown request, unknown session, unknown route, wrong method.
    let (s, v) = post(&th.rest("/agents/ghost/invoke"), json!({"input": {}})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("agent_not_found"))
    );
    let (s, v) = get(&th.rest("/requests/ghost")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("request_not_found"))
    );
    let (s, v) = get(&th.rest("/sessions/ghost")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("session_not_found"))
    );
    let (s, v) = get(&th.rest("/nowhere")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _, _) = http("PUT", &th.rest("/agents"), Some(json!({})), &[]).await;
    assert!(s == 405 || s == 404, "wrong method -> {s}");
    let (s, v) = get(&th.rest("/requests?status=bogus")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_params"))
    );
    let (s, v) = get(&th.rest("/requests?limit=0")).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_params"))
    );
    // Oversized body: 413 before anything is parsed.
    let big = format!(
        r#"{{"input": {{"messages": [{{"role":"user","content":"{}"}}]}}}}"#,
        "a".repeat(2 << 20)
    );
    let (s, text, _) = http_raw("POST", &invoke_url, big.into_bytes(), &[ct]).await;
    assert_eq!(s, 413, "{text}");
    // Bad agent definitions: each refused with its own status and code.
    for (bad, status, code) in [
        (
            json!({"id": "Bad Id", "capabilities": [{"name": "c"}], "executor": {"kind": "builtin", "name": "echo"}}),
            400,
            "invalid_params",
        ),
        (
            json!({"id": "x", "capabilities": [], "executor": {"kind": "builtin", "name": "echo"}}),
            400,
            "invalid_params",
        ),
        (
            json!({"id": "x", "capabilities": [{"name": "c"}], "executor": {"kind": "builtin", "name": "nope"}}),
            400,
            "invalid_params",
        ),
        (
            json!({"id": "x", "capabilities": [{"name": "c", "input_schema": {"type": 12}}], "executor": {"kind": "builtin", "name": "echo"}}),
            400,
            "invalid_params",
        ),
        (
            json!({"id": "x", "capabilities": [{"name": "c"}], "executor": {"kind": "process", "command": []}}),
            400,
            "invalid_params",
        ),
        (
            json!({"id": "echo", "capabilities": [{"name": "c"}], "executor": {"kind": "builtin", "name": "echo"}}),
            409,
            "agent_exists",
        ),
    ] {
        let (s, v) = post(&th.rest("/agents"), bad.clone()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{bad} -> {s} {v}"
        );
    }
    let (s, v, _) = http(
        "PATCH",
        &th.rest("/agents/echo"),
        Some(json!({"id": "renamed"})),
        &[],
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_params"))
    );

    // Nothing was recorded, and the server still works.
    let after = th.hub.store_counts().await.unwrap();
    assert_eq!(before, after, "bad input must not change stored state");
    let (s, v) = post(
        &invoke_url,
        json!({"input": echo_input("still fine", 1, 0), "wait": true}),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")));
    th.stop().await;
}
