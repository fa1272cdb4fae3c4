//! The SQL backends: the unchanged conformance suite on SQLite (always) and Postgres (when
//! `A2A_TEST_POSTGRES_URL` is set; otherwise each Postgres test prints "skipped: …"), the
//! SQLite process lock, servers running end to end on each backend, `a2a-mcp migrate` on the
//! real binary, and Postgres connection loss.
//!
//! Every Postgres test works in its own schema (and role, for connection loss) with a unique
//! name and drops it at the end, also when the test fails (guards clean up on drop).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use a2a_mcp::store::{DynStore, StoreError};
use async_trait::async_trait;
use serde_json::{Value, json};

use super::harness::*;
use super::store_conformance::Backend;

// ---------------------------------------------------------------------------------------------
// SQLite

pub struct Sqlite {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicU32,
    current: parking_lot::Mutex<PathBuf>,
}

impl Sqlite {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let current = parking_lot::Mutex::new(dir.path().join("s0.sqlite"));
        Self {
            dir,
            next: std::sync::atomic::AtomicU32::new(0),
            current,
        }
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn fresh(&self) -> DynStore {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = self.dir.path().join(format!("s{n}.sqlite"));
        *self.current.lock() = path.clone();
        Arc::new(a2a_mcp::store::sqlite::SqliteStore::open(&path, true).unwrap())
    }
    async fn reopen(&self, store: DynStore) -> DynStore {
        store.close().await.unwrap();
        drop(store);
        let path = self.current.lock().clone();
        Arc::new(a2a_mcp::store::sqlite::SqliteStore::open(&path, true).unwrap())
    }
}

crate::conformance_suite!(sqlite, Sqlite::new());

#[tokio::test]
async fn sqlite_file_is_locked_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let first = a2a_mcp::store::sqlite::SqliteStore::open(&path, true).unwrap();
    match a2a_mcp::store::sqlite::SqliteStore::open(&path, true) {
        Err(StoreError::Locked(msg)) => {
            assert!(msg.contains("in use by another"), "{msg}");
            assert!(msg.contains("--remote"), "says what to do instead: {msg}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second open of the same file must fail"),
    }
    // Closing releases the lock even while the first handle still exists.
    use a2a_mcp::store::Store;
    first.close().await.unwrap();
    let again = a2a_mcp::store::sqlite::SqliteStore::open(&path, true).unwrap();
    again.close().await.unwrap();
}

/// WAL mode: while another connection holds the write lock, the store still reads (the last
/// committed data) at once; its own writes wait for the lock and then land.
#[tokio::test]
async fn sqlite_readers_do_not_wait_for_a_writer() {
    use a2a_mcp::store::{Op, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let store = Arc::new(a2a_mcp::store::sqlite::SqliteStore::open(&path, true).unwrap());
    store
        .write(vec![Op::PutAgent(super::store_conformance::agent("a"))])
        .await
        .unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker
        .execute_batch("BEGIN IMMEDIATE; DELETE FROM agents;")
        .unwrap();
    let read = tokio::time::timeout(Duration::from_secs(1), store.get_agent("a"))
        .await
        .expect("a read does not wait for the writer");
    assert!(
        read.unwrap().is_some(),
        "readers see the last committed state"
    );
    let pending = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write(vec![Op::PutAgent(super::store_conformance::agent("b"))])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "the write waits for the lock");
    blocker.execute_batch("ROLLBACK;").unwrap();
    pending.await.unwrap().unwrap();
    assert_eq!(store.list_agents().await.unwrap().len(), 2);
    store.close().await.unwrap();
}

fn bin() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_LEVEL", "warn")
        .env("A2A_BACKUP_INTERVAL", "off")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(mut cmd: tokio::process::Command) -> Out {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the command finishes within 60 s")
        .expect("the binary runs");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn sqlite_cmd(dir: &Path, args: &[&str]) -> Out {
    let mut cmd = bin();
    cmd.arg("--data-dir")
        .arg(dir)
        .args([
            "--set",
            "store=sqlite",
            "--stream-port",
            "0",
            "--metrics-port",
            "0",
        ])
        .args(args);
    run(cmd).await
}

/// Invokes echo over REST, follows it over the WebSocket; returns (id, events).
async fn echo_and_stream(rest: &str, ws_base: &str, text: &str) -> (String, Vec<Value>) {
    let (s, v) = post(
        &format!("{rest}/agents/echo/invoke"),
        json!({"input": echo_input(text, 4, 10)}),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    let id = v["requestId"].as_str().unwrap().to_string();
    let mut ws = ws_connect(&format!("{ws_base}?requestId={id}")).await;
    let (events, close) = ws_read_all(&mut ws).await;
    assert_complete_stream(&events, "final");
    assert_eq!(events.len(), 6, "start + 4 chunks + final: {events:?}");
    assert_eq!(close, Some(1000));
    let streamed: String = events[1..5]
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(streamed, text);
    (id, events)
}

#[tokio::test]
async fn sqlite_hub_runs_end_to_end() {
    let th = TestHub::start_with(&[("store", "sqlite")]).await;
    assert_eq!(th.hub.store_backend(), "sqlite");
    assert!(th.dir.path().join("a2a-mcp.sqlite").exists());
    let (id, events) = echo_and_stream(&th.rest(""), &th.ws_url(""), "sqlite streams").await;
    let v = wait_status(&th, &id, "done").await;
    assert_eq!(v["result"]["messages"][0]["content"], "sqlite streams");
    // Concurrent invocations share commits and all land.
    let ids = futures_util::future::join_all(
        (0..20).map(|i| invoke(&th, "echo", echo_input(&format!("n{i}"), 1, 0))),
    )
    .await;
    for id in &ids {
        wait_status(&th, id, "done").await;
    }
    // A restart on the same directory replays the stored stream.
    let dir = th.stop().await;
    let th = TestHub::start_in(dir, &[("store", "sqlite")]).await;
    let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
    let (replayed, _) = ws_read_all(&mut ws).await;
    assert_eq!(replayed, events);
    th.stop().await;
}

#[tokio::test]
async fn sqlite_server_refuses_a_second_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TestBinary::serve(dir.path(), &[("A2A_STORE", "sqlite")]).await;
    let (s, v) = get(&format!("http://{}/readyz", b.ops)).await;
    assert_eq!(s, 200, "{v}");
    echo_and_stream(
        &b.rest(""),
        &format!("ws://{}/stream", b.api),
        "from the binary",
    )
    .await;
    for args in [&["serve"][..], &["migrate"][..]] {
        let out = sqlite_cmd(dir.path(), args).await;
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("in use by another a2a-mcp process"),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }
    assert!(b.sigterm_and_wait().await.success());
    // Once the server is gone the lock is free.
    let out = sqlite_cmd(dir.path(), &["migrate", "--status"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
}

/// Acknowledged means durable on SQLite too: every invocation answered 202 before a kill -9
/// is known after the restart, with its stream.
#[tokio::test]
async fn sqlite_kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("A2A_STORE", "sqlite")];
    let mut b = TestBinary::serve(dir.path(), &env).await;
    let invoke_url = b.rest("/agents/echo/invoke");
    let acked = futures_util::future::join_all((0..30).map(|i| {
        let url = invoke_url.clone();
        async move {
            let (s, v) = post(&url, json!({"input": echo_input(&format!("k{i}"), 2, 0)})).await;
            assert_eq!(s, 202, "{v}");
            v["requestId"].as_str().unwrap().to_string()
        }
    }))
    .await;
    b.kill9();
    let _ = b.child.wait().await;
    let b = TestBinary::serve(dir.path(), &env).await;
    for id in &acked {
        let mut last = Value::Null;
        for _ in 0..200 {
            let (s, v) = get(&b.rest(&format!("/requests/{id}"))).await;
            assert_eq!(s, 200, "acknowledged request {id} survived the crash: {v}");
            if v["status"] == "done" {
                last = v;
                break;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(last["status"], "done", "{last}");
    }
}

fn sqlite_versions(path: &Path) -> Vec<i64> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut st = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test]
async fn sqlite_migrate_applies_once_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a2a-mcp.sqlite");
    let latest = a2a_mcp::store::migrations::latest(a2a_mcp::store::migrations::SQLITE);

    let out = sqlite_cmd(dir.path(), &["migrate", "--status"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("pending  0001 init"), "{}", out.stdout);
    assert!(!db.exists(), "--status changes nothing");

    // Auto-migration off: a server refuses a schema behind the binary and says what to run.
    let mut cmd = bin();
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["--stream-port", "0", "--metrics-port", "0", "serve"])
        .env("A2A_STORE", "sqlite")
        .env("A2A_AUTO_MIGRATE", "false");
    let out = run(cmd).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("a2a-mcp migrate"), "{}", out.stderr);

    let out = sqlite_cmd(dir.path(), &["migrate"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("migrated from version 0 to {latest}")),
        "{}",
        out.stdout
    );
    assert_eq!(
        sqlite_versions(&db),
        (1..=i64::from(latest)).collect::<Vec<_>>()
    );
    let out = sqlite_cmd(dir.path(), &["migrate"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("up to date; nothing to do"),
        "{}",
        out.stdout
    );
    assert_eq!(sqlite_versions(&db).len(), latest as usize, "no-op");

    let out = sqlite_cmd(dir.path(), &["migrate", "--status", "--json"]).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (v["after"].as_u64(), v["latest"].as_u64()),
        (Some(latest.into()), Some(latest.into()))
    );

    // A database from a newer version is refused by migrate and by serve, naming both.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 'later')",
            [],
        )
        .unwrap();
    }
    for args in [
        &["migrate"][..],
        &["migrate", "--status"][..],
        &["serve"][..],
    ] {
        let out = sqlite_cmd(dir.path(), args).await;
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("version 999") && out.stderr.contains(&format!("version {latest}")),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn redb_migrate_reports_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(dir.path()).arg("migrate");
    let out = run(cmd).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("no store yet"), "{}", out.stdout);
    assert!(!dir.path().join("a2a-mcp.redb").exists());
    {
        use a2a_mcp::store::Store;
        let store =
            a2a_mcp::store::redb::RedbStore::open(&dir.path().join("a2a-mcp.redb")).unwrap();
        store.close().await.unwrap();
    }
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(dir.path()).arg("migrate");
    let out = run(cmd).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let current = format!("layout version {}", a2a_mcp::store::redb::SCHEMA_VERSION);
    assert!(out.stdout.contains(&current), "{}", out.stdout);
    assert!(out.stdout.contains("up to date"), "{}", out.stdout);
}

// ---------------------------------------------------------------------------------------------
// Postgres

#[cfg(feature = "postgres")]
pub mod pg {
    use super::*;
    use a2a_mcp::store::PostgresSettings;
    use a2a_mcp::store::Store;
    use a2a_mcp::store::postgres::PostgresStore;

    pub fn url() -> Option<String> {
        match std::env::var("A2A_TEST_POSTGRES_URL") {
            Ok(u) if !u.trim().is_empty() => Some(u),
            _ => {
                skip("A2A_TEST_POSTGRES_URL not set");
                None
            }
        }
    }

    /// A test that cannot run here: a failure under CI (`CI=true`, which `.ci/run` sets), a
    /// visible skip elsewhere.
    pub fn skip(why: &str) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("under CI this test must run: {why}");
        }
        eprintln!("skipped: {why}");
    }

    pub fn unique(prefix: &str) -> String {
        format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
    }

    pub async fn admin(url: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to A2A_TEST_POSTGRES_URL: {e}"));
        tokio::spawn(conn);
        client
    }

    /// Drops the named schemas and roles when dropped (also on a failed assertion), from a
    /// thread of its own since `Drop` cannot await.
    pub struct Cleanup {
        pub url: String,
        pub schemas: parking_lot::Mutex<Vec<String>>,
        pub roles: parking_lot::Mutex<Vec<String>>,
    }

    impl Cleanup {
        pub fn new(url: &str) -> Self {
            Self {
                url: url.to_string(),
                schemas: Default::default(),
                roles: Default::default(),
            }
        }
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let schemas = std::mem::take(&mut *self.schemas.lock());
            let roles = std::mem::take(&mut *self.roles.lock());
            if schemas.is_empty() && roles.is_empty() {
                return;
            }
            let url = self.url.clone();
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                    else {
                        return;
                    };
                    tokio::spawn(conn);
                    for s in schemas {
                        // Sessions a dropped store left behind (their runtime is blocked
                        // while this runs) could hold locks: end them first.
                        let _ = c
                            .execute(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                                &[&format!("a2a-mcp/{s}")],
                            )
                            .await;
                        if let Err(e) = c
                            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"))
                            .await
                        {
                            eprintln!("cleanup: cannot drop schema {s}: {e}");
                        }
                    }
                    for r in roles {
                        let _ = c
                            .execute(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                                &[&r],
                            )
                            .await;
                        if let Err(e) = c.batch_execute(&format!("DROP ROLE IF EXISTS \"{r}\"")).await
                        {
                            eprintln!("cleanup: cannot drop role {r}: {e}");
                        }
                    }
                });
            })
            .join();
        }
    }

    pub fn settings(url: &str, schema: &str) -> PostgresSettings {
        PostgresSettings {
            url: Some(url.to_string()),
            host: String::new(),
            port: 5432,
            db: None,
            user: "postgres".into(),
            password: None,
            schema: schema.to_string(),
            tls: false,
            ca_file: None,
            pool_size: 4,
            timeout: Duration::from_secs(5),
        }
    }

    pub struct Postgres {
        url: String,
        cleanup: Cleanup,
        current: parking_lot::Mutex<String>,
    }

    impl Postgres {
        pub fn from_env() -> Option<Self> {
            let url = url()?;
            Some(Self {
                cleanup: Cleanup::new(&url),
                url,
                current: Default::default(),
            })
        }
    }

    #[async_trait]
    impl Backend for Postgres {
        async fn fresh(&self) -> DynStore {
            let schema = unique("t");
            self.cleanup.schemas.lock().push(schema.clone());
            *self.current.lock() = schema.clone();
            Arc::new(
                PostgresStore::open(&settings(&self.url, &schema), true)
                    .await
                    .unwrap(),
            )
        }
        async fn reopen(&self, store: DynStore) -> DynStore {
            store.close().await.unwrap();
            drop(store);
            let schema = self.current.lock().clone();
            Arc::new(
                PostgresStore::open(&settings(&self.url, &schema), true)
                    .await
                    .unwrap(),
            )
        }
    }

    crate::conformance_suite!(
        postgres,
        match Postgres::from_env() {
            Some(b) => b,
            None => return,
        }
    );

    async fn pg_cmd(url: &str, schema: &str, args: &[&str]) -> Out {
        let mut cmd = bin();
        let dir = tempfile::tempdir().unwrap();
        cmd.arg("--data-dir")
            .arg(dir.path())
            .args(["--stream-port", "0", "--metrics-port", "0"])
            .args(args)
            .env("A2A_STORE", "postgres")
            .env("A2A_POSTGRES_URL", url)
            .env("A2A_POSTGRES_SCHEMA", schema);
        run(cmd).await
    }

    #[tokio::test]
    async fn postgres_migrate_applies_once_and_refuses_newer_schemas() {
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let schema = unique("m");
        cleanup.schemas.lock().push(schema.clone());
        let latest = a2a_mcp::store::migrations::latest(a2a_mcp::store::migrations::POSTGRES);
        let admin = admin(&url).await;
        let versions = || async {
            admin
                .query(
                    &format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"),
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .collect::<Vec<_>>()
        };

        let out = pg_cmd(&url, &schema, &["migrate", "--status"]).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.contains("pending  0001 init"), "{}", out.stdout);
        let out = pg_cmd(&url, &schema, &["migrate"]).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(
            out.stdout
                .contains(&format!("migrated from version 0 to {latest}")),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&schema),
            "names the schema: {}",
            out.stdout
        );
        assert!(!out.stdout.contains("password"), "{}", out.stdout);
        assert_eq!(versions().await, (1..=latest as i32).collect::<Vec<_>>());
        // The tables are there, in the schema.
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
                &[&schema],
            )
            .await
            .unwrap()
            .get(0);
        assert!(n >= 7, "{n} tables");

        let out = pg_cmd(&url, &schema, &["migrate"]).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(
            out.stdout.contains("up to date; nothing to do"),
            "{}",
            out.stdout
        );
        assert_eq!(versions().await.len(), latest as usize, "no-op");

        admin
            .batch_execute(&format!(
                "INSERT INTO \"{schema}\".schema_migrations (version, name) VALUES (999, 'future')"
            ))
            .await
            .unwrap();
        for args in [&["migrate"][..], &["serve"][..]] {
            let out = pg_cmd(&url, &schema, args).await;
            assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.contains("version 999")
                    && out.stderr.contains(&format!("version {latest}")),
                "{args:?}: {}",
                out.stderr
            );
        }
    }

    #[tokio::test]
    async fn postgres_migrations_run_concurrently_without_conflict() {
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let schema = unique("c");
        cleanup.schemas.lock().push(schema.clone());
        let s = settings(&url, &schema);
        let runs = futures_util::future::join_all((0..4).map(|_| {
            a2a_mcp::store::postgres::migrate(&s, a2a_mcp::store::migrations::Mode::Apply)
        }))
        .await;
        let applied: usize = runs.into_iter().map(|r| r.unwrap().applied_now.len()).sum();
        assert_eq!(
            applied,
            a2a_mcp::store::migrations::POSTGRES.len(),
            "each migration applied exactly once"
        );
    }

    #[tokio::test]
    async fn postgres_hub_runs_end_to_end() {
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let schema = unique("e");
        cleanup.schemas.lock().push(schema.clone());
        let extra = [
            ("store", "postgres"),
            ("postgres_url", url.as_str()),
            ("postgres_schema", schema.as_str()),
        ];
        let th = TestHub::start_with(&extra).await;
        assert_eq!(th.hub.store_backend(), "postgres");
        let (id, events) = echo_and_stream(&th.rest(""), &th.ws_url(""), "postgres streams").await;
        wait_status(&th, &id, "done").await;
        let dir = th.stop().await;
        let th = TestHub::start_in(dir, &extra).await;
        let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
        let (replayed, _) = ws_read_all(&mut ws).await;
        assert_eq!(replayed, events);
        th.stop().await;
    }

    /// `a2a-mcp agents` on a shared database goes through the running server, so the server
    /// sees the change at once.
    #[tokio::test]
    async fn postgres_agents_cli_uses_the_running_server() {
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let schema = unique("a");
        cleanup.schemas.lock().push(schema.clone());
        let th = TestHub::start_with(&[
            ("store", "postgres"),
            ("postgres_url", url.as_str()),
            ("postgres_schema", schema.as_str()),
        ])
        .await;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            r#"[[agents]]
id = "via-api"
capabilities = [{ name = "chat" }]
executor = { kind = "builtin", name = "echo" }
"#,
        )
        .unwrap();
        let mut cmd = bin();
        cmd.args(["agents", "deploy"])
            .arg(file.path())
            .args(["--url", &format!("http://{}", th.api)])
            .env("A2A_STORE", "postgres")
            .env("A2A_POSTGRES_URL", &url)
            .env("A2A_POSTGRES_SCHEMA", &schema);
        let out = run(cmd).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stderr.contains("using its API"), "{}", out.stderr);
        let (s, v) = get(&th.rest("/agents/via-api")).await;
        assert_eq!(s, 200, "the running hub knows the agent: {v}");
        th.stop().await;
    }

    fn metric(text: &str, name: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    async fn store_errors(th: &TestHub) -> f64 {
        let (_, text, _) = http_raw("GET", &th.ops_url("/metrics"), vec![], &[]).await;
        metric(&text, "a2a_store_errors_total{backend=\"postgres\"}")
    }

    /// The database goes away under load (its connections are killed and it refuses new
    /// ones), then comes back: requests fail cleanly meanwhile, the hub recovers by itself and
    /// nothing committed before is lost or altered.
    #[tokio::test]
    async fn postgres_connection_loss_is_survived() {
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let admin = admin(&url).await;
        let role = unique("r");
        let schema = unique("l");
        cleanup.roles.lock().push(role.clone());
        cleanup.schemas.lock().push(schema.clone());
        admin
            .batch_execute(&format!(
                "CREATE ROLE \"{role}\" LOGIN; CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{role}\";"
            ))
            .await
            .unwrap();
        // Same server and database as the admin URL, as the test's own role.
        let base: tokio_postgres::Config = url.parse().unwrap();
        let host = match base.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = base.get_ports().first().copied().unwrap_or(5432);
        let db = base
            .get_dbname()
            .or(base.get_user())
            .unwrap_or("postgres")
            .to_string();
        let conn_str = format!("host={host} port={port} dbname={db} user={role}");
        let th = TestHub::start_with(&[
            ("store", "postgres"),
            ("postgres_url", conn_str.as_str()),
            ("postgres_schema", schema.as_str()),
            ("postgres_timeout", "2s"),
        ])
        .await;

        // Committed before the outage.
        let mut before = Vec::new();
        for i in 0..3 {
            let (id, events) =
                echo_and_stream(&th.rest(""), &th.ws_url(""), &format!("before {i}")).await;
            let rec = wait_status(&th, &id, "done").await;
            before.push((id, rec, events));
        }
        let errors_before = store_errors(&th).await;

        // Writers keep invoking throughout.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let statuses = Arc::new(parking_lot::Mutex::new(Vec::<(u16, Value)>::new()));
        let writer = {
            let (stop, statuses, url) = (
                stop.clone(),
                statuses.clone(),
                th.rest("/agents/echo/invoke"),
            );
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (s, v) = post(&url, json!({"input": echo_input("during", 1, 0)})).await;
                    statuses.lock().push((s, v));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;

        // The database goes away: no new logins for the role, its connections killed.
        admin
            .batch_execute(&format!("ALTER ROLE \"{role}\" NOLOGIN"))
            .await
            .unwrap();
        let killed = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&role],
            )
            .await
            .unwrap();
        assert!(!killed.is_empty(), "the hub had connections to kill");

        // Meanwhile: invocations fail with store_unavailable, /readyz says not ready.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let refused = statuses.lock().iter().any(|(s, _)| *s == 503);
            let (ready, _) = get(&th.ops_url("/readyz")).await;
            if refused && ready == 503 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no clean failure seen while the database was away (readyz {ready}): {:?}",
                statuses.lock().iter().rev().take(3).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (s, v) = get(&th.rest(&format!("/requests/{}", before[0].0))).await;
        assert_eq!(s, 503, "reads fail cleanly too: {v}");
        assert_eq!(v["error"]["code"], "store_unavailable", "{v}");

        // The database comes back: the pool reconnects by itself.
        admin
            .batch_execute(&format!("ALTER ROLE \"{role}\" LOGIN"))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let recovered_id = loop {
            let (s, v) = post(
                &th.rest("/agents/echo/invoke"),
                json!({"input": echo_input("after", 1, 0)}),
            )
            .await;
            if s == 202 {
                break v["requestId"].as_str().unwrap().to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no recovery: {s} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        wait_status(&th, &recovered_id, "done").await;
        let (ready, _) = get(&th.ops_url("/readyz")).await;
        assert_eq!(ready, 200);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        writer.await.unwrap();

        // Every failure was a clean store_unavailable; some writes went through.
        let statuses = statuses.lock().clone();
        for (s, v) in &statuses {
            match s {
                202 => {}
                503 => assert_eq!(v["error"]["code"], "store_unavailable", "{v}"),
                other => panic!("unexpected status {other}: {v}"),
            }
        }
        assert!(statuses.iter().any(|(s, _)| *s == 503));
        assert!(
            store_errors(&th).await > errors_before,
            "a2a_store_errors_total grew"
        );

        // Nothing committed before the outage changed.
        for (id, rec, events) in &before {
            let (s, now) = get(&th.rest(&format!("/requests/{id}"))).await;
            assert_eq!(s, 200);
            assert_eq!(&now, rec);
            let mut ws = ws_connect(&th.ws_url(&format!("?requestId={id}"))).await;
            let (replayed, _) = ws_read_all(&mut ws).await;
            assert_eq!(&replayed, events);
        }
        th.stop().await;
    }

    /// TLS against the test server, when it offers TLS (Debian's default server does, with
    /// its self-signed "snakeoil" certificate for `localhost`): verified with the certificate
    /// as CA it works and the session is encrypted; without trusting it, or under another
    /// host name, the connection is refused.
    #[tokio::test]
    async fn postgres_tls_verifies_the_server() {
        let Some(url) = url() else { return };
        let admin = admin(&url).await;
        let row = admin
            .query_one(
                "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
                &[],
            )
            .await
            .unwrap();
        let (ssl, cert): (String, String) = (row.get(0), row.get(1));
        let cert = PathBuf::from(cert);
        if ssl != "on" || !cert.is_absolute() || std::fs::read(&cert).is_err() {
            skip("the test server offers no TLS with a readable certificate");
            return;
        }
        let pem = std::fs::read_to_string(&cert).unwrap();
        if !pem.contains("BEGIN CERTIFICATE") {
            skip(&format!("{} is not a PEM certificate", cert.display()));
            return;
        }
        let base: tokio_postgres::Config = url.parse().unwrap();
        let port = base.get_ports().first().copied().unwrap_or(5432);
        let user = base.get_user().unwrap_or("postgres").to_string();
        let db = base.get_dbname().unwrap_or(&user).to_string();
        let cleanup = Cleanup::new(&url);
        let schema = unique("s");
        cleanup.schemas.lock().push(schema.clone());
        let with = |host: &str, ca: Option<PathBuf>| PostgresSettings {
            url: Some(format!("host={host} port={port} dbname={db} user={user}")),
            tls: true,
            ca_file: ca,
            ..settings(&url, &schema)
        };

        let store = PostgresStore::open(&with("localhost", Some(cert.clone())), true)
            .await
            .unwrap_or_else(|e| panic!("TLS with the server's certificate trusted: {e}"));
        assert!(store.location().contains("TLS"), "{}", store.location());
        store
            .write(vec![a2a_mcp::store::Op::PutAgent(
                super::super::store_conformance::agent("tls"),
            )])
            .await
            .unwrap();
        assert!(store.get_agent("tls").await.unwrap().is_some());
        let encrypted: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1 AND s.ssl",
                &[&format!("a2a-mcp/{schema}")],
            )
            .await
            .unwrap()
            .get(0);
        assert!(encrypted > 0, "the store's sessions use TLS");
        store.close().await.unwrap();

        // Not trusted (only the public roots): refused, saying why.
        let e = PostgresStore::open(&with("localhost", None), true)
            .await
            .err()
            .expect("an untrusted certificate is refused");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
        // Trusted, but the name does not match the certificate (it is for localhost).
        let e = PostgresStore::open(&with("127.0.0.1", Some(cert.clone())), true)
            .await
            .err()
            .expect("a host name mismatch is refused");
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
        // A CA file that is not one is a clear configuration error.
        let junk = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(junk.path(), "not a certificate").unwrap();
        let e = PostgresStore::open(&with("localhost", Some(junk.path().to_path_buf())), true)
            .await
            .err()
            .expect("a bad CA file is refused");
        assert!(e.to_string().contains("A2A_POSTGRES_CA_FILE"), "{e}");
    }

    /// One caller's bad batch fails alone: concurrent callers merged into the same commit
    /// still land, and the connection is clean for the next commit.
    #[tokio::test]
    async fn postgres_bad_batch_does_not_fail_its_neighbours() {
        use super::super::store_conformance::{event, request};
        use a2a_mcp::model::{EventKind, RequestState};
        use a2a_mcp::store::Op;
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let schema = unique("b");
        cleanup.schemas.lock().push(schema.clone());
        let store = Arc::new(
            PostgresStore::open(&settings(&url, &schema), true)
                .await
                .unwrap(),
        );
        for round in 0..5u64 {
            let mut tasks = Vec::new();
            for w in 0..10u64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let seq = if w == 3 { u64::MAX } else { round + 1 };
                    let r = store
                        .write(vec![Op::AppendEvent(event(
                            &format!("w{w}"),
                            seq,
                            EventKind::Start,
                        ))])
                        .await;
                    (w, r)
                }));
            }
            for t in tasks {
                let (w, r) = t.await.unwrap();
                if w == 3 {
                    assert!(matches!(r, Err(StoreError::Other(_))), "{r:?}");
                } else {
                    r.unwrap();
                }
            }
        }
        for w in (0..10).filter(|w| *w != 3) {
            assert_eq!(store.last_seq(&format!("w{w}")).await.unwrap(), 5);
        }
        assert_eq!(store.last_seq("w3").await.unwrap(), 0);
        // Text Postgres cannot hold (NUL) is stored with U+FFFD instead of failing the commit.
        let mut rec = request("nul", RequestState::Error, None, "a");
        rec.error = Some("bad\0byte".into());
        store.write(vec![Op::PutRequest(rec)]).await.unwrap();
        let back = store.get_request("nul").await.unwrap().unwrap();
        assert_eq!(back.error.as_deref(), Some("bad\u{FFFD}byte"));
        store.close().await.unwrap();
    }

    /// The store used directly: a connection killed under a running writer load gives
    /// Unavailable errors (never a panic or a wrong answer) and the store carries on.
    #[tokio::test]
    async fn postgres_store_recovers_after_its_connections_are_killed() {
        let Some(url) = url() else { return };
        let cleanup = Cleanup::new(&url);
        let schema = unique("k");
        cleanup.schemas.lock().push(schema.clone());
        let store = Arc::new(
            PostgresStore::open(&settings(&url, &schema), true)
                .await
                .unwrap(),
        );
        let admin = admin(&url).await;
        let app = format!("a2a-mcp/{schema}");
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (Vec::new(), 0);
                for i in 0..150u64 {
                    let ev = super::super::store_conformance::event(
                        &format!("w{w}"),
                        i + 1,
                        a2a_mcp::model::EventKind::Start,
                    );
                    match store.write(vec![a2a_mcp::store::Op::AppendEvent(ev)]).await {
                        Ok(()) => ok.push(i + 1),
                        Err(StoreError::Unavailable(_)) => failed += 1,
                        Err(e) => panic!("unexpected error kind: {e}"),
                    }
                }
                (w, ok, failed)
            }));
        }
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                    &[&app],
                )
                .await
                .unwrap();
        }
        for t in tasks {
            let (w, ok, _failed) = t.await.unwrap();
            // Every acknowledged write is stored. (A commit cut off after the server applied
            // it may be reported failed yet stored, as with any database client.)
            let stored: Vec<u64> = store
                .events(&format!("w{w}"), 0, 1000)
                .await
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            for seq in &ok {
                assert!(
                    stored.contains(seq),
                    "writer {w}: acknowledged seq {seq} is stored"
                );
            }
            assert!(stored.windows(2).all(|p| p[0] < p[1]) && stored.iter().all(|s| *s <= 150));
        }
        store.ping().await.unwrap();
        store.close().await.unwrap();
    }
}
