//! Several replicas: real server processes on different ports sharing one Postgres schema
//! (and Redis when `A2A_TEST_REDIS_URL` is set): streams across replicas, cancel across
//! replicas, registry changes, shared rate limits, and the takeover of a killed replica's
//! work. Each test uses its own schema and Redis prefix and removes them.

#![cfg(all(feature = "postgres", feature = "redis"))]

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;
use super::store_backends::pg;

fn redis_url() -> Option<String> {
    match std::env::var("A2A_TEST_REDIS_URL") {
        Ok(u) if !u.trim().is_empty() => Some(u),
        _ => {
            pg::skip("A2A_TEST_REDIS_URL not set (the Redis part of this test)");
            None
        }
    }
}

/// Deletes the Redis keys of a prefix when dropped.
struct RedisCleanup {
    url: Option<String>,
    prefix: String,
}

impl Drop for RedisCleanup {
    fn drop(&mut self) {
        let Some(url) = self.url.clone() else { return };
        let pattern = format!("{}:*", self.prefix);
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(mut c) = client.get_connection() else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut c)
                .unwrap_or_default();
            for k in keys {
                let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut c);
            }
        })
        .join();
    }
}

struct Cluster {
    a: TestBinary,
    b: TestBinary,
    /// The environment both replicas share (store, schema, Redis, timings), without an id.
    env: Vec<(String, String)>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    _redis: RedisCleanup,
    _pg: pg::Cleanup,
}

/// Two replicas, `a` and `b`, on a fresh schema; `redis` adds the relay.
async fn cluster(url: &str, redis: Option<String>, extra: &[(&str, &str)]) -> Cluster {
    let pg_cleanup = pg::Cleanup::new(url);
    let schema = pg::unique("c");
    pg_cleanup.schemas.lock().push(schema.clone());
    let prefix = pg::unique("t");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut env: Vec<(&str, &str)> = vec![
        ("A2A_STORE", "postgres"),
        ("A2A_POSTGRES_URL", url),
        ("A2A_POSTGRES_SCHEMA", &schema),
        ("A2A_LEASE_TTL", "1s"),
        ("A2A_CLUSTER_POLL", "200ms"),
        ("A2A_REDIS_PREFIX", &prefix),
    ];
    if let Some(r) = &redis {
        env.push(("A2A_REDIS_URL", r));
    }
    env.extend_from_slice(extra);
    let a = TestBinary::serve(da.path(), &[&env[..], &[("A2A_REPLICA_ID", "a")]].concat()).await;
    let b = TestBinary::serve(db.path(), &[&env[..], &[("A2A_REPLICA_ID", "b")]].concat()).await;
    Cluster {
        a,
        b,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _dirs: (da, db),
        _redis: RedisCleanup { url: redis, prefix },
        _pg: pg_cleanup,
    }
}

impl Cluster {
    /// The environment of another replica of this cluster with the id `id`.
    fn env_of<'a>(&'a self, id: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("A2A_REPLICA_ID", id));
        env
    }
}

fn ws(b: &TestBinary, id: &str) -> String {
    format!("ws://{}/stream?requestId={id}", b.api)
}

async fn invoke_on(b: &TestBinary, agent: &str, input: Value) -> String {
    let (s, v) = post(
        &b.rest(&format!("/agents/{agent}/invoke")),
        json!({ "input": input }),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    v["requestId"].as_str().unwrap().to_string()
}

/// Polls a request on a replica until it is terminal (bounded); returns its view.
async fn wait_terminal(b: &TestBinary, id: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (s, v) = get(&b.rest(&format!("/requests/{id}"))).await;
        assert_eq!(s, 200, "{v}");
        if matches!(v["status"].as_str(), Some("done" | "error" | "canceled")) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request {id} still {} after {within:?}",
            v["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status_on(b: &TestBinary, id: &str, want: &str) {
    for _ in 0..400 {
        let (_, v) = get(&b.rest(&format!("/requests/{id}"))).await;
        if v["status"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("request {id} never reached {want}");
}

async fn metric(b: &TestBinary, name: &str) -> f64 {
    let (_, text, _) = http_raw("GET", &format!("http://{}/metrics", b.ops), vec![], &[]).await;
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Streams, cancel and registry changes across replicas, with or without Redis.
async fn work_is_shared(redis: Option<String>) {
    let Some(url) = pg::url() else { return };
    let with_redis = redis.is_some();
    let c = cluster(&url, redis, &[]).await;

    // A job accepted by A is followed, complete and in order, by a WebSocket client on B.
    let id = invoke_on(&c.a, "echo", echo_input("across replicas", 20, 40)).await;
    let mut sock = ws_connect(&ws(&c.b, &id)).await;
    let (events, close) = ws_read_all(&mut sock).await;
    assert_complete_stream(&events, "final");
    assert_eq!(close, Some(1000));
    let chunks = events.iter().filter(|e| e["type"] == "chunk").count();
    assert_eq!(chunks, 20, "{events:?}");
    if with_redis {
        assert!(
            metric(
                &c.b,
                "a2a_cluster_relay_messages_total{outcome=\"received\"}"
            )
            .await
                > 0.0,
            "B received A's events through Redis"
        );
        assert_eq!(metric(&c.b, "a2a_cluster_redis_up").await, 1.0);
    }

    // A job running on A is canceled through B; it stops on A and stays canceled.
    let long = invoke_on(&c.a, "echo", echo_input("long", 200, 100)).await;
    wait_status_on(&c.a, &long, "running").await;
    let (s, v) = post(&c.b.rest(&format!("/requests/{long}/cancel")), json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "canceled", "{v}");
    let (_, v) = get(&c.a.rest(&format!("/requests/{long}"))).await;
    assert_eq!(v["status"], "canceled");
    let mut sock = ws_connect(&ws(&c.a, &long)).await;
    let (events, _) = ws_read_all(&mut sock).await;
    assert_complete_stream(&events, "canceled");

    // One idempotency key sent to both replicas at the same moment (a client retrying
    // through a load balancer) creates one request: every answer names the same one.
    for round in 0..8 {
        let key = format!("retry-{round}");
        let body = json!({"input": echo_input("once", 1, 0), "idempotencyKey": key});
        let (url_a, url_b) = (
            c.a.rest("/agents/echo/invoke"),
            c.b.rest("/agents/echo/invoke"),
        );
        let send = |u: &String| {
            let (u, body) = (u.clone(), body.clone());
            async move { post(&u, body).await }
        };
        let answers = tokio::join!(
            send(&url_a),
            send(&url_b),
            send(&url_a),
            send(&url_b),
            send(&url_a),
            send(&url_b)
        );
        let answers = [
            answers.0, answers.1, answers.2, answers.3, answers.4, answers.5,
        ];
        let ids: Vec<&str> = answers
            .iter()
            .map(|(s, v)| {
                assert_eq!(*s, 202, "{v}");
                v["requestId"].as_str().unwrap()
            })
            .collect();
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "round {round}: one key, several requests: {ids:?}"
        );
    }
    // The same key with other arguments, on the other replica, is refused.
    let (s, v) = post(
        &c.b.rest("/agents/echo/invoke"),
        json!({"input": echo_input("different", 1, 0), "idempotencyKey": "retry-0"}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (409, Some("idempotency_conflict")),
        "{v}"
    );

    // An agent deployed on A becomes invocable on B.
    let (s, v) = post(
        &c.a.rest("/agents"),
        json!({"id": "late", "capabilities": [{"name": "chat"}],
               "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut seen = false;
    for _ in 0..100 {
        if get(&c.b.rest("/agents/late")).await.0 == 200 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "B picked up the agent deployed on A");
    let id = invoke_on(&c.b, "late", echo_input("hi", 1, 0)).await;
    assert_eq!(
        wait_terminal(&c.b, &id, Duration::from_secs(10)).await["status"],
        "done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_streams_cancel_and_agents_through_redis() {
    let Some(r) = redis_url() else { return };
    work_is_shared(Some(r)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_without_redis_share_through_the_store() {
    work_is_shared(None).await;
}

/// kill -9 of the replica running held jobs: after the lease time the other replica takes
/// its work over — `retry` agents run again, `fail` agents end with an error, queued work
/// runs — and every request the dead replica acknowledged reaches a terminal state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_work_is_taken_over() {
    let Some(url) = pg::url() else { return };
    let mut c = cluster(&url, redis_url(), &[("MAX_CONCURRENCY", "2")]).await;
    let (s, v) = post(
        &c.a.rest("/agents"),
        json!({"id": "fragile", "capabilities": [{"name": "chat"}],
               "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for _ in 0..100 {
        if get(&c.b.rest("/agents/fragile")).await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two held jobs fill A's two slots; more wait in A's queue.
    let retry = invoke_on(&c.a, "echo", echo_input("retry me", 10, 150)).await;
    let fail = invoke_on(&c.a, "fragile", echo_input("fail me", 100, 100)).await;
    wait_status_on(&c.a, &retry, "running").await;
    wait_status_on(&c.a, &fail, "running").await;
    let mut acknowledged = Vec::new();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let url = c.a.rest("/agents/echo/invoke");
            tokio::spawn(async move {
                post(&url, json!({"input": echo_input(&format!("q{i}"), 2, 5)})).await
            })
        })
        .collect();
    for call in calls {
        let (s, v) = call.await.unwrap();
        if s == 202 {
            acknowledged.push(v["requestId"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(acknowledged.len(), 20, "A acknowledged every invocation");
    c.a.kill9();
    let _ = c.a.child.wait().await;

    // B takes over after the lease time (1 s).
    let v = wait_terminal(&c.b, &retry, Duration::from_secs(30)).await;
    assert_eq!(v["status"], "done", "the retry agent ran again on B: {v}");
    let v = wait_terminal(&c.b, &fail, Duration::from_secs(30)).await;
    assert_eq!(v["status"], "error", "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("stopped renewing its lease"),
        "{v}"
    );
    for id in &acknowledged {
        let v = wait_terminal(&c.b, id, Duration::from_secs(30)).await;
        assert_eq!(v["status"], "done", "{id}: {v}");
    }
    // The retried request's stored log is gap-free and ends with its final event.
    let mut sock = ws_connect(&ws(&c.b, &retry)).await;
    let (events, _) = ws_read_all(&mut sock).await;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i as u64 + 1), "{events:?}");
    }
    assert_eq!(events.last().unwrap()["type"], "final");
    assert!(metric(&c.b, "a2a_cluster_takeovers_total").await >= 2.0);
}

/// Rate-limit counters live in Redis: a client's limit holds across replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_through_redis() {
    let Some(url) = pg::url() else { return };
    let Some(r) = redis_url() else { return };
    let c = cluster(
        &url,
        Some(r),
        &[("A2A_RATE_LIMITS", "default=100/s,ip=6/m,ip_loopback=on")],
    )
    .await;
    // Wait for both relays (the shared limiter is used while Redis is up).
    for b in [&c.a, &c.b] {
        for _ in 0..100 {
            if metric(b, "a2a_cluster_redis_up").await == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..10 {
        let b = if i % 2 == 0 { &c.a } else { &c.b };
        let (s, _, h) = http("GET", &b.rest("/agents"), None, &[]).await;
        match s {
            200 => ok += 1,
            429 => {
                refused += 1;
                assert!(h.get("retry-after").is_some());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (ok, refused),
        (6, 4),
        "6 per minute for the address across both replicas"
    );
}

/// SIGTERM: a replica drains what it can in its grace period and hands the rest to the others
/// at once (its leases are released), long before they would expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_hands_its_work_over() {
    let Some(url) = pg::url() else { return };
    let Some(r) = redis_url() else { return };
    let mut c = cluster(
        &url,
        Some(r),
        &[
            ("A2A_LEASE_TTL", "30s"),
            ("MAX_CONCURRENCY", "1"),
            ("A2A_SHUTDOWN_GRACE", "500ms"),
        ],
    )
    .await;
    let long = invoke_on(&c.a, "echo", echo_input("long", 30, 100)).await;
    wait_status_on(&c.a, &long, "running").await;
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(invoke_on(&c.a, "echo", echo_input(&format!("q{i}"), 1, 0)).await);
    }
    assert!(c.a.sigterm_and_wait().await.success());
    // (Its stderr is read by a task of its own: give it the last lines.)
    let mut log = String::new();
    for _ in 0..100 {
        log = c.a.stderr_tail.lock().join("\n");
        if log.contains("released unfinished work") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        log.contains("released unfinished work to the other replicas"),
        "A released what it could not finish: {log}"
    );
    // Without the release B would only see these after the 30 s lease; the waits end sooner.
    for id in std::iter::once(&long).chain(&queued) {
        let v = wait_terminal(&c.b, id, Duration::from_secs(20)).await;
        assert_eq!(v["status"], "done", "{id}: {v}");
    }
}

/// Two live processes may not share a replica id (each would renew, recover and run the
/// other's work): the second is refused with a message that says what to do. The id of a
/// killed process is free once its hold runs out (one lease time); a stopped one frees it at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_replica_id() {
    let Some(url) = pg::url() else { return };
    let mut c = cluster(&url, None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["--stream-port", "0", "--metrics-port", "0", "serve"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("A2A_BACKUP_INTERVAL", "off")
        .kill_on_drop(true);
    for (k, v) in c.env_of("a") {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("a duplicate replica gives up within the lease time")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("replica id \"a\" is in use") && err.contains("A2A_REPLICA_ID"),
        "{err}"
    );
    // The first A was not disturbed.
    let id = invoke_on(&c.a, "echo", echo_input("still here", 1, 0)).await;
    assert_eq!(
        wait_terminal(&c.a, &id, Duration::from_secs(10)).await["status"],
        "done"
    );

    // Killed: its id can be used again (after at most one lease time).
    c.a.kill9();
    let _ = c.a.child.wait().await;
    let d2 = tempfile::tempdir().unwrap();
    let mut again = TestBinary::serve(d2.path(), &c.env_of("a")).await;
    let id = invoke_on(&again, "echo", echo_input("new a", 1, 0)).await;
    assert_eq!(
        wait_terminal(&again, &id, Duration::from_secs(10)).await["status"],
        "done"
    );
    // Stopped cleanly: the id is free at once, no waiting.
    assert!(again.sigterm_and_wait().await.success());
    let d3 = tempfile::tempdir().unwrap();
    let third = TestBinary::serve(d3.path(), &c.env_of("a")).await;
    // (Lines before the ready summary are in the tail once `serve` returns.)
    let log = third.stderr_tail.lock().join("\n");
    assert!(!log.contains("held by another process"), "{log}");
}

/// The queue is shared: a replica with nothing to do takes requests that wait on a busy one
/// (their lease moves to it, so the busy one never runs them too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_takes_queued_work_from_a_busy_one() {
    let Some(url) = pg::url() else { return };
    let c = cluster(&url, None, &[("MAX_CONCURRENCY", "1")]).await;
    // A runs one job at a time; this one holds its slot for 60 s (canceled at the end), far
    // longer than the 30 s the waiting jobs are given to finish.
    let long = invoke_on(&c.a, "echo", echo_input("long", 600, 100)).await;
    wait_status_on(&c.a, &long, "running").await;
    let mut waiting = Vec::new();
    for i in 0..4 {
        waiting.push(invoke_on(&c.a, "echo", echo_input(&format!("w{i}"), 3, 10)).await);
    }
    for id in &waiting {
        let v = wait_terminal(&c.a, id, Duration::from_secs(30)).await;
        assert_eq!(v["status"], "done", "{id}: {v}");
    }
    // All finished while A's only slot was still taken: B ran them.
    let (_, v) = get(&c.a.rest(&format!("/requests/{long}"))).await;
    assert_eq!(v["status"], "running", "{v}");
    assert!(
        metric(&c.b, "a2a_cluster_takeovers_total{outcome=\"stolen\"}").await >= 4.0,
        "B counted what it took"
    );
    for id in &waiting {
        let mut sock = ws_connect(&ws(&c.a, id)).await;
        let (events, _) = ws_read_all(&mut sock).await;
        assert_complete_stream(&events, "final");
        assert_eq!(
            events.iter().filter(|e| e["type"] == "start").count(),
            1,
            "{events:?}"
        );
    }
    let (s, v) = post(&c.b.rest(&format!("/requests/{long}/cancel")), json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")), "{v}");
}

/// With Redis, API keys created or revoked on one replica take effect on the others at once
/// (here the periodic key refresh is an hour, so only the Redis announcement can do it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_reach_every_replica_through_redis() {
    let Some(url) = pg::url() else { return };
    let Some(r) = redis_url() else { return };
    let c = cluster(&url, Some(r), &[("A2A_KEY_REFRESH", "1h")]).await;
    for b in [&c.a, &c.b] {
        for _ in 0..100 {
            if metric(b, "a2a_cluster_redis_up").await == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Until B hears of a key it serves without one (auth `auto`).
    let (s, _) = get(&c.b.rest("/agents")).await;
    assert_eq!(s, 200);
    let (s, v) = post(
        &c.a.rest("/admin/keys"),
        json!({"role": "admin", "label": "kept"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let kept = v["key"].as_str().unwrap().to_string();
    let auth = |k: &str| format!("Bearer {k}");
    let (s, v, _) = http(
        "POST",
        &c.a.rest("/admin/keys"),
        Some(json!({"role": "admin", "label": "doomed"})),
        &[("authorization", &auth(&kept))],
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let doomed = v["key"].as_str().unwrap().to_string();
    let doomed_id = v["id"].as_str().unwrap().to_string();
    // Keys exist now: B requires one, and takes the key made on A.
    let agents_b = c.b.rest("/agents");
    assert_eq!(
        poll_status(&agents_b, None, 401).await,
        401,
        "B learned that keys exist"
    );
    assert_eq!(poll_status(&agents_b, Some(&doomed), 200).await, 200);
    // Revoked on B: refused on A.
    let (s, v, _) = http(
        "DELETE",
        &c.b.rest(&format!("/admin/keys/{doomed_id}")),
        None,
        &[("authorization", &auth(&kept))],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let agents_a = c.a.rest("/agents");
    assert_eq!(
        poll_status(&agents_a, Some(&doomed), 401).await,
        401,
        "the revoked key stopped working on A"
    );
    assert_eq!(poll_status(&agents_a, Some(&kept), 200).await, 200);
}

/// GETs `url` (with `key` as bearer) until it answers `want`, for up to 20 s; returns the
/// last status.
async fn poll_status(url: &str, key: Option<&str>, want: u16) -> u16 {
    let auth = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let mut status = 0;
    for _ in 0..400 {
        status = http("GET", url, None, &headers).await.0;
        if status == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    status
}
