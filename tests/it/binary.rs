//! The real binary: crash safety under kill -9, graceful SIGTERM, the embedded-store lock,
//! configuration errors, the stdio bridge, the ops endpoints.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;

async fn invoke_bin(b: &TestBinary, agent: &str, input: Value, key: Option<&str>) -> String {
    let mut body = json!({"input": input});
    if let Some(k) = key {
        body["idempotencyKey"] = json!(k);
    }
    let (s, v) = post(&b.rest(&format!("/agents/{agent}/invoke")), body).await;
    assert_eq!(s, 202, "{v}");
    v["requestId"].as_str().unwrap().to_string()
}

async fn status(b: &TestBinary, id: &str) -> Value {
    let (s, v) = get(&b.rest(&format!("/requests/{id}"))).await;
    assert_eq!(s, 200, "request {id} must still be known: {v}");
    v
}

async fn wait_bin(b: &TestBinary, id: &str, want: &str) -> Value {
    for _ in 0..500 {
        let v = status(b, id).await;
        if v["status"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} did not reach {want}: {}", status(b, id).await);
}

#[tokio::test]
async fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TestBinary::serve(dir.path(), &[("MAX_CONCURRENCY", "2")]).await;
    // A non-idempotent agent (interrupt = fail) next to the shipped echo (interrupt = retry).
    let (s, v) = post(
        &b.rest("/agents"),
        json!({"id": "once", "capabilities": [{"name": "chat"}], "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let done = invoke_bin(
        &b,
        "echo",
        echo_input("finished before the crash", 2, 0),
        Some("k-done"),
    )
    .await;
    wait_bin(&b, &done, "done").await;
    let held_fail = invoke_bin(
        &b,
        "once",
        echo_input("held, fails on restart", 1, 60_000),
        None,
    )
    .await;
    let held_retry = invoke_bin(
        &b,
        "echo",
        echo_input("held, retried on restart", 1, 60_000),
        Some("k-retry"),
    )
    .await;
    wait_bin(&b, &held_fail, "running").await;
    wait_bin(&b, &held_retry, "running").await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(
            invoke_bin(
                &b,
                "echo",
                echo_input(&format!("queued {i}"), 2, 0),
                Some(&format!("k-q{i}")),
            )
            .await,
        );
    }
    for id in &queued {
        assert_eq!(status(&b, id).await["status"], "queued");
    }
    b.kill9();
    let _ = b.child.wait().await;

    let b = TestBinary::serve(dir.path(), &[("MAX_CONCURRENCY", "2")]).await;
    assert_eq!(status(&b, &done).await["status"], "done");
    let v = wait_bin(&b, &held_fail, "error").await;
    assert_eq!(v["error"], "interrupted by restart");
    // The retried one runs again; cancel it rather than wait a minute.
    let v = wait_bin(&b, &held_retry, "running").await;
    assert_eq!(v["attempts"], 2, "{v}");
    let (s, v) = post(
        &b.rest(&format!("/requests/{held_retry}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")));
    for (i, id) in queued.iter().enumerate() {
        let v = wait_bin(&b, id, "done").await;
        assert_eq!(v["result"]["messages"][0]["content"], format!("queued {i}"));
    }
    // Idempotency keys still map to the same requests.
    let again = invoke_bin(
        &b,
        "echo",
        echo_input("finished before the crash", 2, 0),
        Some("k-done"),
    )
    .await;
    assert_eq!(again, done);
    let again = invoke_bin(&b, "echo", echo_input("queued 3", 2, 0), Some("k-q3")).await;
    assert_eq!(again, queued[3]);
    // Streams of recovered requests are complete and gap-free.
    let mut ws = ws_connect(&format!("ws://{}/stream?requestId={}", b.api, queued[0])).await;
    let (events, _) = ws_read_all(&mut ws).await;
    assert_complete_stream(&events, "final");
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TestBinary::serve(dir.path(), &[("A2A_SHUTDOWN_GRACE", "10s")]).await;
    let id = invoke_bin(
        &b,
        "echo",
        echo_input("finishing during shutdown", 2, 400),
        None,
    )
    .await;
    wait_bin(&b, &id, "running").await;
    let status = b.sigterm_and_wait().await;
    assert!(status.success(), "exit status {status}");
    // The running job was allowed to finish before the exit.
    let b = TestBinary::serve(dir.path(), &[]).await;
    assert_eq!(status_of(&b, &id).await, "done");
    // The ready summary names the directories in use, absolute.
    let log = b.stderr_tail.lock().join("\n");
    let store_line = format!("store        redb in {}", dir.path().display());
    let backups_line = format!(
        "backups      {} (no scheduled backups)",
        dir.path().join("backup").display()
    );
    assert!(
        log.contains(&store_line) && log.contains(&backups_line),
        "{log}"
    );
    assert!(log.contains("/data/catalog (1 agents, 1 enabled)"), "{log}");
}

async fn status_of(b: &TestBinary, id: &str) -> String {
    status(b, id).await["status"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn second_process_on_the_same_store_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _b = TestBinary::serve(dir.path(), &[]).await;
    let out = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--stream-port", "0", "--metrics-port", "0", "serve"])
        .env("A2A_BACKUP_DIR", dir.path().join("backup"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another a2a-mcp process"), "{err}");
    assert!(
        err.contains("A2A_STORE=postgres"),
        "says what to use instead: {err}"
    );
    // stdio says the same in one line, and nothing on stdout.
    let out = tokio::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--stream-port", "0", "stdio"])
        .env("A2A_BACKUP_DIR", dir.path().join("backup"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--remote"), "{err}");
}

#[tokio::test]
async fn invalid_configuration_stops_startup_with_one_line() {
    for (env, needle) in [
        (("STREAM_PORT", "eighty"), "STREAM_PORT"),
        (("MAX_CONCURRENCY", "0"), "MAX_CONCURRENCY"),
        (("A2A_RETENTION", "forever"), "A2A_RETENTION"),
        (("A2A_ENV", "staging"), "A2A_ENV"),
    ] {
        let out = tokio::process::Command::new(BIN)
            .args(["check-config"])
            .env(env.0, env.1)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle) && err.contains(env.1), "{err}");
    }
    let out = tokio::process::Command::new(BIN)
        .args(["check-config"])
        .env("STREAM_TOKEN", "very-secret")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("very-secret"), "secrets are masked: {text}");
    assert!(text.contains("stream_token"));
}

#[tokio::test]
async fn configuration_reference_is_up_to_date() {
    let out = tokio::process::Command::new(BIN)
        .args(["check-config", "--docs"])
        .output()
        .await
        .unwrap();
    let generated = String::from_utf8_lossy(&out.stdout);
    let committed = std::fs::read_to_string(repo_dir().join("docs/CONFIGURATION.md")).unwrap();
    assert_eq!(
        committed, generated,
        "docs/CONFIGURATION.md drifted: regenerate with `a2a-mcp check-config --docs > docs/CONFIGURATION.md`"
    );
}

#[tokio::test]
async fn stdio_remote_bridge_carries_the_python_client() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(dir.path(), &[]).await;
    let url = format!("http://{}/mcp", b.api);
    for mode in ["legacy", "auto"] {
        let args = vec![
            "stdio".to_string(),
            BIN.to_string(),
            mode.to_string(),
            "--".to_string(),
            "stdio".to_string(),
            "--remote".to_string(),
            url.clone(),
        ];
        run_python("mcp_interop.py", &args).await;
    }
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(dir.path(), &[]).await;
    let ops = |p: &str| format!("http://{}{p}", b.ops);
    let (s, v) = get(&ops("/healthz")).await;
    assert_eq!(s, 200);
    assert_eq!(v["ok"], true);
    assert!(v["queued"].is_u64() && v["running"].is_u64());
    let (s, v) = get(&ops("/readyz")).await;
    assert_eq!((s, v["ready"].as_bool()), (200, Some(true)));
    let id = invoke_bin(&b, "echo", echo_input("metrics", 2, 0), None).await;
    wait_bin(&b, &id, "done").await;
    let (s, text, h) = http_raw("GET", &ops("/metrics"), vec![], &[]).await;
    assert_eq!(s, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for name in [
        "a2a_requests_created_total",
        "a2a_requests_finished_total",
        "a2a_request_duration_seconds_bucket",
        "a2a_queue_length",
        "a2a_running_jobs",
        "a2a_websocket_clients",
        "a2a_websocket_subscriptions",
        "a2a_stream_events_total",
        "a2a_agents",
        "a2a_agents_enabled",
        "a2a_store_commit_seconds_bucket",
        "a2a_process_resident_memory_bytes",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
    let (s, v) = get(&ops("/api/agent?action=status")).await;
    assert_eq!(s, 200);
    assert_eq!(v["stats"]["agentsTotal"], 1);
    assert!(
        v["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "retention-sweeper")
    );
    assert!(v["store"]["requests"].as_u64().unwrap() >= 1);
    let (s, _) = get(&ops("/api/agent?action=nope")).await;
    assert_eq!(s, 400);
    let (s, v) = get(&ops("/nope")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
}
