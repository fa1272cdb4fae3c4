//! Contained agents: process agents cannot read the hub, run with default rlimits and no
//! capabilities (as another account where the hub may switch), lose every process on
//! cancel, timeout and exit (even `setsid` ones), leave no zombies; the echo helper is
//! bounded and off in production; one caller cannot hog the queue or the workers.

use std::path::Path;
use std::time::Duration;

use a2a_mcp::model::{Principal, Role};
use serde_json::{Value, json};

use super::harness::*;

fn script(name: &str) -> String {
    repo_dir()
        .join("tests/agents")
        .join(name)
        .display()
        .to_string()
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Polls `check` until it holds (bounded: a safety net, not a timing assertion).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: still not so after 20 s");
}

async fn deploy_at(rest: &str, id: &str, executor: Value) -> (u16, Value) {
    post(
        &format!("{rest}/agents"),
        json!({"id": id, "capabilities": [{"name": "run"}], "executor": executor}),
    )
    .await
}

async fn invoke_wait_at(rest: &str, id: &str) -> Value {
    let (s, v) = post(
        &format!("{rest}/agents/{id}/invoke"),
        json!({"input": {}, "wait": true, "timeoutMs": 20000}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// Every stream event of a finished request.
async fn events(api: std::net::SocketAddr, id: &str) -> Vec<Value> {
    let mut ws = ws_connect(&format!("ws://{api}/stream?requestId={id}")).await;
    ws_read_all(&mut ws).await.0
}

/// The text chunks of a finished request.
async fn text_chunks(api: std::net::SocketAddr, id: &str) -> Vec<String> {
    events(api, id)
        .await
        .iter()
        .filter(|e| e["type"] == "chunk")
        .filter_map(|e| e["content"].as_str().map(str::to_string))
        .collect()
}

fn pid_gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Direct children of a process, with their state letter.
fn children_of(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for c in text
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("")
                .to_string();
            out.push((c, state));
        }
    }
    out
}

async fn metric_at(ops: std::net::SocketAddr, name: &str) -> Option<f64> {
    let (_, v) = get(&format!("http://{ops}/metrics")).await;
    v.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_agent_cannot_read_the_hubs_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("hub-secret-{}", uuid::Uuid::new_v4().simple());
    let b = TestBinary::serve(dir.path(), &[("POSTGRES_PASSWORD", &secret)]).await;
    let hub_pid = b.child.id().unwrap() as i32;
    if let Ok(env) = std::fs::read(format!("/proc/{hub_pid}/environ")) {
        // The test itself (root) still sees it: the secret is really there to be stolen.
        assert!(String::from_utf8_lossy(&env).contains(&secret));
    }
    let rest = b.rest("");
    let (s, v) = deploy_at(
        &rest,
        "peeker",
        json!({"kind": "process", "command": [script("environ.sh")]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let v = invoke_wait_at(&rest, "peeker").await;
    assert_eq!(v["status"], "done", "{v}");
    assert_eq!(v["result"]["read"], false, "the read must fail: {v}");
    let id = v["requestId"].as_str().unwrap();
    let all = events(b.api, id).await;
    assert!(!all.is_empty());
    for e in &all {
        assert!(!e.to_string().contains(&secret), "secret leaked: {e}");
    }
}

/// The grandchild calls `setsid` (so a process-group kill misses it) and records its pid.
async fn setsid_grandchild(pids: &Path, id: &str) -> i32 {
    let file = pids.join(format!("{id}.pid"));
    let mut pid = None;
    eventually("the agent wrote its grandchild's pid", || {
        pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        pid.is_some()
    })
    .await;
    let pid = pid.unwrap();
    assert!(!pid_gone(pid), "the grandchild runs before the stop");
    pid
}

#[tokio::test]
async fn setsid_grandchildren_die_on_cancel_and_on_timeout() {
    for mode in ["auto", "off"] {
        let dir = tempfile::tempdir().unwrap();
        let pids = tempfile::tempdir().unwrap();
        let b = TestBinary::serve(dir.path(), &[("A2A_PROCESS_CGROUP", mode)]).await;
        let rest = b.rest("");
        let env = json!({"PIDFILE_DIR": pids.path().display().to_string()});
        for (id, arg, timeout) in [
            ("detacher", "hang", json!(null)),
            ("detacher-slow", "hang", json!(1500)),
            ("quitter", "exit", json!(null)),
        ] {
            let (s, v) = deploy_at(
                &rest,
                id,
                json!({"kind": "process", "command": [script("setsid.sh"), arg], "env": env,
                       "timeout_ms": timeout}),
            )
            .await;
            assert_eq!(s, 201, "{v}");
        }

        // Cancel.
        let (s, v) = post(
            &format!("{rest}/agents/detacher/invoke"),
            json!({"input": {}}),
        )
        .await;
        assert_eq!(s, 202, "{v}");
        let id = v["requestId"].as_str().unwrap().to_string();
        let grandchild = setsid_grandchild(pids.path(), &id).await;
        let (s, v) = post(&format!("{rest}/requests/{id}/cancel"), json!({})).await;
        assert_eq!((s, v["status"].as_str()), (200, Some("canceled")), "{v}");
        eventually(
            &format!("[{mode}] the setsid grandchild {grandchild} is gone after cancel"),
            || pid_gone(grandchild),
        )
        .await;

        // Timeout.
        let v = invoke_wait_at(&rest, "detacher-slow").await;
        assert_eq!(v["status"], "error", "{v}");
        assert!(v["error"].as_str().unwrap().contains("timed out"), "{v}");
        let id = v["requestId"].as_str().unwrap();
        let file = pids.path().join(format!("{id}.pid"));
        let grandchild: i32 = std::fs::read_to_string(&file)
            .expect("the agent ran before its timeout")
            .trim()
            .parse()
            .unwrap();
        eventually(
            &format!("[{mode}] the setsid grandchild {grandchild} is gone after the timeout"),
            || pid_gone(grandchild),
        )
        .await;

        // The main process ends the request: what it left running (here holding stdout
        // open) is killed then, and the request does not wait for it.
        let v = invoke_wait_at(&rest, "quitter").await;
        assert_eq!(
            (v["status"].as_str(), v["result"].as_str()),
            (Some("done"), Some("detached")),
            "{v}"
        );
        let id = v["requestId"].as_str().unwrap();
        let grandchild: i32 = std::fs::read_to_string(pids.path().join(format!("{id}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        eventually(
            &format!("[{mode}] the setsid grandchild {grandchild} is gone after its agent exited"),
            || pid_gone(grandchild),
        )
        .await;
    }
}

#[tokio::test]
async fn orphans_of_agents_are_reaped_when_the_hub_is_pid_1() {
    let dir = tempfile::tempdir().unwrap();
    // A new PID namespace makes the hub PID 1, as in a container without an init: every
    // orphan comes to it.
    let mut wrapper = vec!["unshare"];
    if !is_root() {
        wrapper.extend(["--user", "--map-root-user"]);
    }
    wrapper.extend(["--pid", "--mount-proc", "--kill-child", "--"]);
    let b = TestBinary::serve_wrapped(dir.path(), &[], &wrapper).await;
    let unshare = b.child.id().unwrap() as i32;
    let hub = children_of(unshare)
        .first()
        .map(|(p, _)| *p)
        .expect("the hub runs below unshare");
    let rest = b.rest("");
    let (s, v) = deploy_at(
        &rest,
        "leaver",
        json!({"kind": "process", "command": [script("orphan.sh")]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    for _ in 0..3 {
        let v = invoke_wait_at(&rest, "leaver").await;
        assert_eq!(v["status"], "done", "{v}");
    }
    let mut zombies = Vec::new();
    eventually("no zombie children of the hub", || {
        zombies = children_of(hub)
            .into_iter()
            .filter(|(_, state)| state == "Z")
            .collect();
        zombies.is_empty()
    })
    .await;
    let reaped = metric_at(b.ops, "a2a_agent_processes_reaped_total")
        .await
        .unwrap_or(0.0);
    assert!(reaped >= 3.0, "each request left one process: {reaped}");
}

/// `Max open files   1024   1024   files` → ("1024", "1024").
fn limit<'a>(lines: &'a [String], name: &str) -> (&'a str, &'a str) {
    let line = lines
        .iter()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in {lines:?}"));
    let mut f = line[name.len()..].split_whitespace();
    (f.next().unwrap(), f.next().unwrap())
}

fn status_field<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} in {lines:?}"))
        .trim()
}

/// What the hub's own hard limit allows of `want` (agents never get more than the hub has).
fn capped(resource: nix::sys::resource::Resource, want: u64) -> String {
    let (_, hard) = nix::sys::resource::getrlimit(resource).unwrap();
    want.min(hard).to_string()
}

#[tokio::test]
async fn process_agents_get_default_rlimits_and_no_capabilities() {
    use nix::sys::resource::Resource;
    let th = TestHub::start().await;
    let rest = th.rest("");
    let (s, v) = deploy_at(
        &rest,
        "limits",
        json!({"kind": "process", "command": [script("limits.sh")]}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = deploy_at(
        &rest,
        "limits-own",
        json!({"kind": "process", "command": [script("limits.sh")],
               "limits": {"open_files": 64, "cpu_seconds": 0}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");

    let v = invoke_wait_at(&rest, "limits").await;
    assert_eq!(v["status"], "done", "{v}");
    let lines = text_chunks(th.api, v["requestId"].as_str().unwrap()).await;
    let cpu = capped(Resource::RLIMIT_CPU, 600);
    assert_eq!(limit(&lines, "Max cpu time"), (cpu.as_str(), cpu.as_str()));
    let mem = capped(Resource::RLIMIT_AS, 4096 * 1024 * 1024);
    assert_eq!(
        limit(&lines, "Max address space"),
        (mem.as_str(), mem.as_str())
    );
    let files = capped(Resource::RLIMIT_NOFILE, 1024);
    assert_eq!(
        limit(&lines, "Max open files"),
        (files.as_str(), files.as_str())
    );
    let procs = capped(Resource::RLIMIT_NPROC, 2048);
    assert_eq!(
        limit(&lines, "Max processes"),
        (procs.as_str(), procs.as_str())
    );
    assert_eq!(status_field(&lines, "CapEff:"), "0000000000000000");
    assert_eq!(status_field(&lines, "CapPrm:"), "0000000000000000");
    assert_eq!(status_field(&lines, "CapAmb:"), "0000000000000000");
    if is_root() {
        // A root agent cannot regain root's capabilities through exec either.
        assert_eq!(status_field(&lines, "CapBnd:"), "0000000000000000");
    }
    assert_eq!(status_field(&lines, "NoNewPrivs:"), "1");

    // The agent's own table wins per entry; 0 lifts a default.
    let v = invoke_wait_at(&rest, "limits-own").await;
    let lines = text_chunks(th.api, v["requestId"].as_str().unwrap()).await;
    assert_eq!(limit(&lines, "Max open files"), ("64", "64"));
    assert_ne!(limit(&lines, "Max cpu time").0, cpu, "{lines:?}");
    assert_eq!(
        limit(&lines, "Max address space"),
        (mem.as_str(), mem.as_str())
    );
    th.stop().await;

    // A2A_PROCESS_LIMITS sets the defaults.
    let th = TestHub::start_with(&[("process_limits", "open_files=100")]).await;
    let rest = th.rest("");
    let (s, _) = deploy_at(
        &rest,
        "limits",
        json!({"kind": "process", "command": [script("limits.sh")]}),
    )
    .await;
    assert_eq!(s, 201);
    let v = invoke_wait_at(&rest, "limits").await;
    let lines = text_chunks(th.api, v["requestId"].as_str().unwrap()).await;
    assert_eq!(limit(&lines, "Max open files"), ("100", "100"));
    assert_ne!(limit(&lines, "Max cpu time").0, cpu);
    th.stop().await;
}

#[tokio::test]
async fn agents_run_as_a_configured_account_only_where_the_hub_may_switch() {
    let th = TestHub::start().await;
    let rest = th.rest("");
    let as_nobody = json!({"kind": "process", "command": [script("limits.sh")], "user": "nobody"});
    let (s, v) = deploy_at(&rest, "as-nobody", as_nobody.clone()).await;
    if !is_root() {
        assert_eq!(s, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("executor.user") && msg.contains("privilege"),
            "{msg}"
        );
        th.stop().await;
        return;
    }
    assert_eq!(s, 201, "{v}");
    let v = invoke_wait_at(&rest, "as-nobody").await;
    assert_eq!(v["status"], "done", "{v}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(v["result"]["uid"], json!(nobody.uid.as_raw()), "{v}");
    assert_eq!(v["result"]["gid"], json!(nobody.gid.as_raw()), "{v}");
    // Its own private working directory, which the agent's account owns.
    let cwd = th.dir.path().join("work").join("as-nobody");
    assert_eq!(v["result"]["cwd"], json!(cwd.display().to_string()));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&cwd).unwrap().uid(), nobody.uid.as_raw());
    let lines = text_chunks(th.api, v["requestId"].as_str().unwrap()).await;
    assert_eq!(status_field(&lines, "CapEff:"), "0000000000000000");

    // Accounts that cannot be used are refused at deploy, with the reason.
    for (user, want) in [
        (json!("no-such-user-a2a"), "no such user"),
        (json!(4_000_001), "set executor.group too"),
    ] {
        let (s, v) = deploy_at(
            &rest,
            "bad-account",
            json!({"kind": "process", "command": [script("limits.sh")], "user": user}),
        )
        .await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
    }
    th.stop().await;

    // A hub without the privilege to switch (here: running as nobody) refuses at deploy…
    let dir = tempfile::tempdir().unwrap();
    let uid = nobody.uid.as_raw().to_string();
    let gid = nobody.gid.as_raw().to_string();
    nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    let reuid = format!("--reuid={uid}");
    let regid = format!("--regid={gid}");
    let setpriv = [
        "setpriv",
        reuid.as_str(),
        regid.as_str(),
        "--clear-groups",
        "--",
    ];
    let b = TestBinary::serve_wrapped(dir.path(), &[], &setpriv).await;
    let (s, v) = deploy_at(
        &b.rest(""),
        "as-root",
        json!({"kind": "process", "command": [script("limits.sh")], "user": "root"}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("executor.user") && msg.contains("privilege"),
        "{msg}"
    );
    // Non-dumpable, an unprivileged hub still reads its own /proc files (process metrics).
    let fds = metric_at(b.ops, "a2a_process_open_fds")
        .await
        .unwrap_or(0.0);
    assert!(fds > 0.0, "open fds read from /proc/self/fd: {fds}");
    drop(b);

    // …and at start-up, for a catalog agent.
    let catalog = tempfile::tempdir().unwrap();
    std::fs::write(
        catalog.path().join("agents.toml"),
        format!(
            "[[agents]]\nid = \"as-root\"\n[agents.executor]\nkind = \"process\"\ncommand = [{:?}]\nuser = \"root\"\n[[agents.capabilities]]\nname = \"run\"\n",
            script("limits.sh")
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new("setpriv")
        .args([reuid.as_str(), regid.as_str(), "--clear-groups", "--", BIN])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--catalog-dir")
        .arg(catalog.path())
        .args(["--stream-port", "0", "--metrics-port", "0", "serve"])
        .env("A2A_BACKUP_INTERVAL", "off")
        .env("A2A_BACKUP_DIR", dir.path().join("backup"))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("the server stops by itself")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("as-root") && stderr.contains("privilege"),
        "{stderr}"
    );
}

#[tokio::test]
async fn echo_delays_are_bounded_and_echo_is_off_in_production() {
    let th = TestHub::start().await;
    // The catalog's schema says the bound …
    let (s, v) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("x", 1, 600_000)}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("input_validation_failed")),
        "{v}"
    );
    // … and the total of all delays is checked when the request is made.
    let (s, v) = post(
        &th.rest("/agents/echo/invoke"),
        json!({"input": echo_input("x", 1000, 100)}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_params")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("60000 ms"),
        "{v}"
    );
    // An echo deployed without any schema is held to the same bounds.
    let (s, v) = post(
        &th.rest("/agents"),
        json!({"id": "loose-echo", "capabilities": [{"name": "chat"}],
               "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = post(
        &th.rest("/agents/loose-echo/invoke"),
        json!({"input": echo_input("x", 1, 600_000)}),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_params")),
        "{v}"
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("delay_ms"),
        "{v}"
    );
    let (s, v) = post(
        &th.rest("/agents/loose-echo/invoke"),
        json!({"input": echo_input("within bounds", 2, 10), "wait": true}),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
    th.stop().await;

    let ids = |v: &Value| -> Vec<String> {
        v["agents"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .collect()
    };
    // Production mode requires a key from the start.
    let th = TestHub::start_with(&[("env", "production")]).await;
    let auth = format!("Bearer {}", super::security::key(&th, Role::Admin).await);
    let (s, v, _) = http(
        "GET",
        &th.rest("/agents"),
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(!ids(&v).contains(&"echo".to_string()), "{v}");
    let (s, v, _) = http(
        "POST",
        &th.rest("/agents"),
        Some(json!({"id": "echo", "capabilities": [{"name": "chat"}],
               "executor": {"kind": "builtin", "name": "echo"}})),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("A2A_BUILTIN_ECHO"),
        "{v}"
    );
    th.stop().await;

    let th = TestHub::start_with(&[("env", "production"), ("builtin_echo", "on")]).await;
    let token = key(&th).await;
    let (_, v) = call(&th, &token, "GET", "/agents", None).await;
    assert!(ids(&v).contains(&"echo".to_string()), "{v}");
    th.stop().await;
}

async fn key(th: &TestHub) -> String {
    th.hub
        .create_key(
            &Principal::new("local", Role::Admin),
            Role::Invoker,
            "caller",
            None,
        )
        .await
        .unwrap()
        .0
}

async fn call(
    th: &TestHub,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (s, v, _) = http(method, &th.rest(path), body, &[("authorization", &auth)]).await;
    (s, v)
}

async fn status_of(th: &TestHub, token: &str, id: &str) -> String {
    call(th, token, "GET", &format!("/requests/{id}"), None)
        .await
        .1["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn one_caller_cannot_hog_the_queue_or_the_workers() {
    let th = TestHub::start_with(&[
        ("auth", "required"),
        ("max_inflight_per_key", "1"),
        ("max_queued_per_key", "2"),
    ])
    .await;
    let busy = key(&th).await;
    let other = key(&th).await;
    let invoke = |input: Value| json!({"input": input});

    let (s, v) = call(
        &th,
        &busy,
        "POST",
        "/agents/echo/invoke",
        Some(invoke(echo_input("hold", 1, 60_000))),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let holder = v["requestId"].as_str().unwrap().to_string();
    let mut running = String::new();
    for _ in 0..500 {
        running = status_of(&th, &busy, &holder).await;
        if running == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(running, "running");
    let mut waiting = Vec::new();
    for i in 0..2 {
        let (s, v) = call(
            &th,
            &busy,
            "POST",
            "/agents/echo/invoke",
            Some(invoke(echo_input(&format!("w{i}"), 1, 0))),
        )
        .await;
        assert_eq!(s, 202, "{v}");
        waiting.push(v["requestId"].as_str().unwrap().to_string());
    }
    for id in &waiting {
        assert_eq!(
            status_of(&th, &busy, id).await,
            "queued",
            "over its running cap"
        );
    }
    // The third waiting request of the same caller is refused, naming the setting.
    let (s, v) = call(
        &th,
        &busy,
        "POST",
        "/agents/echo/invoke",
        Some(invoke(echo_input("w2", 1, 0))),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (429, Some("rate_limited")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("A2A_MAX_QUEUED_PER_KEY"),
        "{v}"
    );
    // MCP renders the same error.
    let (s, v) = super::security::mcp(
        &th.mcp_url(),
        Some(&busy),
        "tools/call",
        json!({"name": "invoke_agent", "arguments": {"agentId": "echo", "input": echo_input("m", 1, 0)}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["isError"], true, "{v}");
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("rate_limited") && text.contains("A2A_MAX_QUEUED_PER_KEY"),
        "{text}"
    );

    // Another caller gets in and runs at once, ahead of the busy caller's older requests.
    let (s, v) = call(
        &th,
        &other,
        "POST",
        "/agents/echo/invoke",
        Some(json!({"input": echo_input("mine", 1, 0), "wait": true})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
    for id in &waiting {
        assert_eq!(status_of(&th, &busy, id).await, "queued");
    }

    // Once the busy caller's running request ends, its waiting ones run.
    let (s, _) = call(
        &th,
        &busy,
        "POST",
        &format!("/requests/{holder}/cancel"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 200);
    for id in &waiting {
        let mut st = String::new();
        for _ in 0..500 {
            st = status_of(&th, &busy, id).await;
            if st == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(st, "done");
    }
    th.stop().await;
}
