//! `process` agents: NDJSON protocol, environment allow-list, cancel kills the process group,
//! timeout, output cap, agent-reported errors.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::*;

fn script(name: &str) -> String {
    repo_dir()
        .join("tests/agents")
        .join(name)
        .display()
        .to_string()
}

async fn deploy(th: &TestHub, id: &str, executor: Value) {
    let (s, v) = post(
        &th.rest("/agents"),
        json!({"id": id, "capabilities": [{"name": "run"}], "executor": executor}),
    )
    .await;
    assert_eq!(s, 201, "deploy {id}: {v}");
}

async fn run_wait(th: &TestHub, id: &str) -> Value {
    let (s, v) = post(
        &th.rest(&format!("/agents/{id}/invoke")),
        json!({"input": {"q": 1}, "wait": true, "timeoutMs": 20000}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Alive unless gone or a zombie (killed, waiting to be reaped by init).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn process_agent_streams_ndjson_with_an_allow_listed_environment() {
    // SAFETY of the test: the variables are read by the child started below only.
    let th = TestHub::start().await;
    deploy(
        &th,
        "streamer",
        json!({"kind": "process", "command": [script("stream.sh")],
               "env_allow": ["HOME"], "env": {"ALLOWED_VAR": "yes"}}),
    )
    .await;
    let v = run_wait(&th, "streamer").await;
    assert_eq!(v["status"], "done", "{v}");
    assert_eq!(v["result"]["ok"], true);
    assert_eq!(v["result"]["allowed"], "yes");
    assert_eq!(
        v["result"]["secret"], "unset",
        "variables outside the allow-list stay out"
    );
    assert_eq!(v["result"]["request"]["input"], json!({"q": 1}));
    assert_eq!(v["result"]["request"]["agentId"], "streamer");
    let id = v["requestId"].as_str().unwrap();
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
    let (events, _) = ws_read_all(&mut ws).await;
    assert_complete_stream(&events, "final");
    let chunks: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "chunk")
        .map(|e| &e["content"])
        .collect();
    assert_eq!(
        chunks,
        vec![
            &json!("hello "),
            &json!("plain text line"),
            &json!({"n": 2})
        ]
    );
    th.stop().await;
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group_and_stays_canceled() {
    let th = TestHub::start().await;
    let pids_dir = tempfile::tempdir().unwrap();
    deploy(
        &th,
        "holder",
        json!({"kind": "process", "command": [script("hold.sh")],
               "env": {"PIDFILE_DIR": pids_dir.path().display().to_string()}}),
    )
    .await;
    let id = invoke(&th, "holder", json!({})).await;
    let pidfile = pids_dir.path().join(format!("{id}.pids"));
    let mut pids = Vec::new();
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(&pidfile)
            && text.ends_with('\n')
        {
            pids = text
                .split_whitespace()
                .map(|p| p.parse::<i32>().unwrap())
                .collect();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pids.len(), 2, "the agent wrote its pids");
    assert!(
        pids.iter().all(|p| alive(*p)),
        "both processes run before the cancel"
    );
    let (s, v) = post(&th.rest(&format!("/requests/{id}/cancel")), json!({})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("canceled")), "{v}");
    for _ in 0..100 {
        if pids.iter().all(|p| !alive(*p)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in &pids {
        assert!(
            !alive(*p),
            "process {p} of the canceled request is still alive"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = get(&th.rest(&format!("/requests/{id}"))).await;
    assert_eq!(v["status"], "canceled");
    th.stop().await;
}

#[tokio::test]
async fn agent_errors_timeouts_and_floods_end_in_error() {
    let th = TestHub::start().await;
    deploy(
        &th,
        "says-no",
        json!({"kind": "process", "command": [script("behave.sh"), "error"]}),
    )
    .await;
    deploy(
        &th,
        "no-final",
        json!({"kind": "process", "command": [script("behave.sh"), "nofinal"]}),
    )
    .await;
    deploy(
        &th,
        "flooder",
        json!({"kind": "process", "command": [script("behave.sh"), "flood"], "max_output_bytes": 100000}),
    )
    .await;
    deploy(
        &th,
        "sleeper",
        json!({"kind": "process", "command": [script("behave.sh"), "slow"], "timeout_ms": 300}),
    )
    .await;
    deploy(
        &th,
        "missing",
        json!({"kind": "process", "command": ["/no/such/program"]}),
    )
    .await;

    let v = run_wait(&th, "says-no").await;
    assert_eq!(
        (v["status"].as_str(), v["error"].as_str()),
        (Some("error"), Some("the agent says no"))
    );
    let v = run_wait(&th, "no-final").await;
    assert_eq!(v["status"], "error");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("without a final event"),
        "{v}"
    );
    let v = run_wait(&th, "flooder").await;
    assert_eq!(v["status"], "error");
    assert!(
        v["error"].as_str().unwrap().contains("max_output_bytes"),
        "{v}"
    );
    let v = run_wait(&th, "sleeper").await;
    assert_eq!(v["status"], "error");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 300 ms"),
        "{v}"
    );
    let v = run_wait(&th, "missing").await;
    assert_eq!(v["status"], "error");
    assert!(v["error"].as_str().unwrap().contains("cannot start"), "{v}");
    th.stop().await;
}
