//! Secrets: write-only in every read path (agent views over MCP and REST, A2A push config
//! views, the audit log), for every role; round trips keep the stored values; and the files
//! the real binary writes (store, SQLite companions, snapshots, their directories) are
//! private whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use a2a_mcp::model::Role;
use serde_json::{Value, json};

use super::a2a::LOCAL_PEERS;
use super::harness::*;
use super::security::{key, mcp, rest, tool};

/// Every secret value in these tests starts with this, so one search finds any leak.
const S: &str = "s3cret";

/// A process agent that answers with the value of `$SECRET_TOKEN` it was started with.
fn env_echo_agent(token: &str) -> Value {
    json!({
        "id": "envy", "capabilities": [{"name": "run"}],
        "executor": {
            "kind": "process",
            "command": ["/bin/sh", "-c",
                "read -r _; printf '{\"type\":\"final\",\"result\":{\"token\":\"%s\"}}\\n' \"$SECRET_TOKEN\""],
            "env": {"SECRET_TOKEN": token, "MODE": format!("{S}-mode")}
        }
    })
}

/// One A2A 1.0 JSON-RPC call on the hub's echo agent; returns the answer.
async fn a2a(th: &TestHub, token: &str, method: &str, params: Value) -> Value {
    let auth = format!("Bearer {token}");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (_, v, _) = http(
        "POST",
        &format!("http://{}/a2a/echo", th.api),
        Some(body),
        &[("a2a-version", "1.0"), ("authorization", &auth)],
    )
    .await;
    v
}

/// 0.3 shape of the same (no version header).
async fn a2a_v03(th: &TestHub, token: &str, method: &str, params: Value) -> Value {
    let auth = format!("Bearer {token}");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (_, v, _) = http(
        "POST",
        &format!("http://{}/a2a/echo", th.api),
        Some(body),
        &[("authorization", &auth)],
    )
    .await;
    v
}

async fn invoke_as(th: &TestHub, token: &str, agent: &str) -> Value {
    let (s, v) = rest(
        th,
        "POST",
        &format!("/agents/{agent}/invoke"),
        Some(token),
        Some(json!({"input": {"text": "hi"}, "wait": true, "timeoutMs": 30000})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test]
async fn secrets_are_write_only_for_every_role() {
    let th = TestHub::start_with(&[("auth", "required"), LOCAL_PEERS]).await;
    let admin = key(&th, Role::Admin).await;
    let operator = key(&th, Role::Operator).await;
    let invoker = key(&th, Role::Invoker).await;
    let viewer = key(&th, Role::Viewer).await;

    // A process agent with an env secret; an a2a agent (this hub's own echo, reached with the
    // invoker's key as its outbound credential) with header secrets.
    let (s, v) = rest(
        &th,
        "POST",
        "/agents",
        Some(&admin),
        Some(env_echo_agent(&format!("{S}-env"))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = rest(
        &th,
        "POST",
        "/agents",
        Some(&admin),
        Some(json!({
            "id": "remote-auth", "capabilities": [{"name": "chat"}],
            "executor": {"kind": "a2a", "url": format!("http://{}/a2a/echo", th.api),
                         "headers": {"Authorization": format!("Bearer {invoker}")}}
        })),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // An update carrying header values (it lands in the audit log).
    let r = tool(
        &th,
        &admin,
        "update_agent",
        json!({"agentId": "remote-auth",
        "changes": {"executor": {"headers": {"X-Api-Key": format!("{S}-hdr")}}}}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    let v = invoke_as(&th, &admin, "remote-auth").await;
    assert_eq!(v["status"], "done", "the header reached the remote: {v}");

    // A task of the invoker with two push configs carrying a token and credentials.
    let v = a2a(
        &th,
        &invoker,
        "SendMessage",
        json!({
        "message": {"messageId": "m-secret", "role": "ROLE_USER", "parts": [{"text": "x"}]},
        "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {
            "id": "c1", "url": "http://127.0.0.1:9/hook", "token": format!("{S}-push")}}}),
    )
    .await;
    let tid = v["result"]["task"]["id"].as_str().unwrap().to_string();
    let created = a2a(
        &th,
        &invoker,
        "CreateTaskPushNotificationConfig",
        json!({
        "taskId": tid, "id": "c2", "url": "http://127.0.0.1:9/hook", "token": format!("{S}-push2"),
        "authentication": {"scheme": "Bearer", "credentials": format!("{S}-cred")}}),
    )
    .await;
    assert_eq!(created["result"]["token"], "***", "{created}");
    assert_eq!(
        created["result"]["authentication"],
        json!({"scheme": "Bearer", "credentials": "***"})
    );

    // Every read path, for every role: no secret value anywhere.
    for (role, token) in [
        ("viewer", &viewer),
        ("invoker", &invoker),
        ("operator", &operator),
        ("admin", &admin),
    ] {
        let mut seen = Vec::new();
        for args in [json!({}), json!({"includeDisabled": true})] {
            seen.push(tool(&th, token, "list_agents", args).await);
        }
        for id in ["envy", "remote-auth"] {
            seen.push(tool(&th, token, "describe_agent", json!({"agentId": id})).await);
            seen.push(
                tool(
                    &th,
                    token,
                    "agent_control",
                    json!({"action": "describe", "agentId": id}),
                )
                .await,
            );
            seen.push(
                rest(&th, "GET", &format!("/agents/{id}"), Some(token), None)
                    .await
                    .1,
            );
            let (_, r) = mcp(
                &th.mcp_url(),
                Some(token),
                "resources/read",
                json!({"uri": format!("agent://{id}")}),
            )
            .await;
            seen.push(r);
        }
        seen.push(
            rest(
                &th,
                "GET",
                "/agents?includeDisabled=true",
                Some(token),
                None,
            )
            .await
            .1,
        );
        seen.push(
            a2a(
                &th,
                token,
                "GetTaskPushNotificationConfig",
                json!({"taskId": tid, "id": "c2"}),
            )
            .await,
        );
        seen.push(
            a2a(
                &th,
                token,
                "GetTaskPushNotificationConfig",
                json!({"taskId": tid, "id": "c1"}),
            )
            .await,
        );
        seen.push(
            a2a(
                &th,
                token,
                "ListTaskPushNotificationConfigs",
                json!({"taskId": tid}),
            )
            .await,
        );
        seen.push(
            a2a_v03(
                &th,
                token,
                "tasks/pushNotificationConfig/list",
                json!({"id": tid}),
            )
            .await,
        );
        seen.push(
            a2a_v03(
                &th,
                token,
                "tasks/pushNotificationConfig/get",
                json!({"id": tid, "pushNotificationConfigId": "c2"}),
            )
            .await,
        );
        seen.push(tool(&th, token, "get_audit_log", json!({"limit": 1000})).await);
        seen.push(
            rest(&th, "GET", "/admin/audit?limit=1000", Some(token), None)
                .await
                .1,
        );
        let all = Value::Array(seen).to_string();
        assert!(!all.contains(S), "{role} saw a secret: {all}");
        assert!(
            !all.contains(invoker.as_str()),
            "{role} saw the outbound key"
        );
        // What a role may read, it reads: the names, with the values replaced.
        let list = a2a(
            &th,
            token,
            "ListTaskPushNotificationConfigs",
            json!({"taskId": tid}),
        )
        .await;
        let configs = list["result"]["configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(configs.len(), 2, "{role}: {list}");
        assert!(
            configs.iter().all(|c| c["token"] == "***"),
            "{role}: {list}"
        );
        let d = tool(&th, token, "describe_agent", json!({"agentId": "envy"})).await;
        assert_eq!(
            d["structuredContent"]["definition"]["executor"]["env"],
            json!({"SECRET_TOKEN": "***", "MODE": "***"}),
            "{role}: {d}"
        );
        let d = tool(
            &th,
            token,
            "describe_agent",
            json!({"agentId": "remote-auth"}),
        )
        .await;
        assert_eq!(
            d["structuredContent"]["definition"]["executor"]["headers"],
            json!({"Authorization": "***", "X-Api-Key": "***"}),
            "{role}: {d}"
        );
    }
    // The admin's audit log records the update with the header names only.
    let log = tool(&th, &admin, "get_audit_log", json!({"limit": 1000})).await;
    let update = log["structuredContent"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains("agents.update"))
        .cloned()
        .unwrap_or_else(|| panic!("no agents.update entry: {log}"));
    assert!(
        update.to_string().contains("X-Api-Key") && update.to_string().contains("***"),
        "{update}"
    );

    // Round trips: a definition read back (with `***`) and deployed or patched again keeps
    // the stored secrets; the agents still work with them.
    let d = tool(&th, &admin, "describe_agent", json!({"agentId": "envy"})).await;
    let def = d["structuredContent"]["definition"].clone();
    let r = tool(
        &th,
        &admin,
        "deploy_agent",
        json!({"agent": def, "replace": true}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    let r = tool(
        &th,
        &admin,
        "update_agent",
        json!({"agentId": "envy",
        "changes": {"executor": def["executor"], "description": "read back and patched"}}),
    )
    .await;
    assert_ne!(r["isError"], true, "{r}");
    let (s, v) = rest(
        &th,
        "PATCH",
        "/agents/envy",
        Some(&admin),
        Some(json!({"executor": def["executor"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let v = invoke_as(&th, &admin, "envy").await;
    assert_eq!(v["result"]["token"], format!("{S}-env"), "{v}");
    // A placeholder with no stored value to keep is refused; nothing changes.
    let (s, v) = rest(
        &th,
        "PATCH",
        "/agents/envy",
        Some(&admin),
        Some(json!({"executor": {"env": {"NEW_ONE": "***"}}})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("executor.env.NEW_ONE"),
        "{v}"
    );
    let v = invoke_as(&th, &admin, "envy").await;
    assert_eq!(v["result"]["token"], format!("{S}-env"), "{v}");
    // The a2a agent's headers survive the same round trip through REST.
    let (_, d) = rest(&th, "GET", "/agents/remote-auth", Some(&admin), None).await;
    let (s, v) = rest(
        &th,
        "POST",
        "/agents?replace=true",
        Some(&admin),
        Some(d["definition"].clone()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let v = invoke_as(&th, &admin, "remote-auth").await;
    assert_eq!(v["status"], "done", "the kept header still authorizes: {v}");
    // A push config set again from its view keeps its token; a new one cannot start with `***`.
    let v = a2a(
        &th,
        &invoker,
        "CreateTaskPushNotificationConfig",
        json!({
        "taskId": tid, "id": "c2", "url": "http://127.0.0.1:9/hook", "token": "***",
        "authentication": {"scheme": "Bearer", "credentials": "***"}}),
    )
    .await;
    assert_eq!(v["result"]["id"], "c2", "{v}");
    let v = a2a(
        &th,
        &invoker,
        "CreateTaskPushNotificationConfig",
        json!({
        "taskId": tid, "id": "c3", "url": "http://127.0.0.1:9/hook", "token": "***"}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    // Nor can the config given with a new task's first message; the task is not created.
    let before = th.hub.store_counts().await.unwrap().requests;
    let v = a2a(
        &th,
        &invoker,
        "SendMessage",
        json!({
            "message": {"messageId": "m-placeholder", "role": "ROLE_USER", "parts": [{"text": "x"}]},
            "configuration": {"returnImmediately": true, "taskPushNotificationConfig": {
                "url": "http://127.0.0.1:9/hook", "token": "***"}}}),
    )
    .await;
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("placeholder"),
        "{v}"
    );
    assert_eq!(th.hub.store_counts().await.unwrap().requests, before);
    th.stop().await;
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "a2asnap"))
        .collect()
}

#[tokio::test]
async fn state_files_are_private_whatever_the_umask() {
    for store in ["redb", "sqlite"] {
        let tmp = tempfile::tempdir().unwrap();
        let (state, backups) = (tmp.path().join("state"), tmp.path().join("backups"));
        let backups_env = backups.display().to_string();
        let env = [
            ("A2A_STORE", store),
            ("A2A_BACKUP_DIR", backups_env.as_str()),
        ];
        let mut b = TestBinary::serve_with_umask(&state, &env, "022").await;
        // A write (SQLite keeps its -wal and -shm while open) and a snapshot.
        let (s, v) = post(
            &b.rest("/agents/echo/invoke"),
            json!({"input": echo_input("x", 1, 0), "wait": true}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = post(&b.rest("/admin/backups"), json!({})).await;
        assert_eq!(s, 201, "{v}");
        let files: Vec<std::path::PathBuf> = match store {
            "redb" => vec![state.join("a2a-mcp.redb")],
            _ => ["", "-wal", "-shm", ".lock"]
                .iter()
                .map(|x| state.join(format!("a2a-mcp.sqlite{x}")))
                .collect(),
        };
        let snaps = snapshots(&backups);
        assert_eq!(snaps.len(), 1, "{store}");
        assert_eq!(mode(&state), 0o700, "{store}: the data dir");
        assert_eq!(mode(&backups), 0o700, "{store}: the backup dir");
        for f in files.iter().chain(&snaps) {
            assert_eq!(mode(f), 0o600, "{store}: {}", f.display());
        }
        assert!(b.sigterm_and_wait().await.success());

        // Left open by hand (or by an older version): tightened at the next start, logged.
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&state, 0o755);
        set(&backups, 0o755);
        set(&files[0], 0o644);
        set(&snaps[0], 0o644);
        let mut b = TestBinary::serve_with_umask(&state, &env, "022").await;
        assert_eq!((mode(&state), mode(&backups)), (0o700, 0o700), "{store}");
        assert_eq!(
            (mode(&files[0]), mode(&snaps[0])),
            (0o600, 0o600),
            "{store}"
        );
        let log = b.stderr_tail.lock().join("\n");
        assert!(log.contains("tightened"), "{store}: {log}");
        assert!(b.sigterm_and_wait().await.success());
    }
}
