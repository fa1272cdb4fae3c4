//! Backup and restore: consistent online snapshots, verification, restore with a switch that
//! keeps the old store on failure, retention, the schedule, and the CLI.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use a2a_mcp::backup;
use a2a_mcp::model::{EventKind, Principal, RequestState, Role};
use a2a_mcp::store::{DynStore, Record};
use serde_json::json;

use super::harness::*;

fn admin() -> Principal {
    Principal::new("local", Role::Admin)
}

fn records_of(path: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    backup::read(path, &mut |r| {
        out.push(r);
        Ok(())
    })
    .unwrap();
    out
}

async fn export_all(store: &DynStore) -> Vec<Record> {
    let mut out = Vec::new();
    store
        .export(&mut |r| {
            out.push(r);
            Ok(())
        })
        .await
        .unwrap();
    out
}

/// The snapshot is a point-in-time view: every request's events are gap-free from 1, a
/// terminal request ends with its terminal event, and no event lacks its request.
fn assert_consistent(records: &[Record]) {
    use std::collections::HashMap;
    let mut requests = HashMap::new();
    let mut events: HashMap<String, Vec<(u64, EventKind)>> = HashMap::new();
    for r in records {
        match r {
            Record::Request(req) => {
                requests.insert(req.id.clone(), req.state);
            }
            Record::Event(e) => events
                .entry(e.request_id.clone())
                .or_default()
                .push((e.seq, e.kind.clone())),
            _ => {}
        }
    }
    for (id, evs) in &events {
        let state = requests
            .get(id)
            .unwrap_or_else(|| panic!("event of unknown request {id}"));
        for (i, (seq, _)) in evs.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "gap in {id}");
        }
        if state.is_terminal() {
            assert!(
                evs.last().unwrap().1.is_terminal(),
                "{id} is {state:?} without its terminal event"
            );
        } else {
            assert!(
                !evs.iter().any(|(_, k)| k.is_terminal()),
                "{id} is {state:?} but has a terminal event"
            );
        }
    }
    for (id, state) in &requests {
        if matches!(state, RequestState::Done | RequestState::Error) {
            assert!(
                events.contains_key(id),
                "terminal request {id} without events"
            );
        }
    }
}

/// Populates a hub with every kind of record (agents, sessions, requests with events,
/// idempotency keys, grants, keys, audit), snapshots it while invocations keep running, and
/// returns the snapshot's path and records (checked for consistency).
async fn snapshot_under_load(th: &TestHub, backend: &str) -> (std::path::PathBuf, Vec<Record>) {
    let (s, _) = post(
        &th.rest("/agents"),
        json!({"id": "other", "capabilities": [{"name": "chat"}],
        "executor": {"kind": "builtin", "name": "echo"}}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, sess) = post(&th.rest("/sessions"), json!({"metadata": {"k": "v"}})).await;
    let sid = sess["sessionId"].as_str().unwrap().to_string();
    for i in 0..20 {
        let (s, _) = post(
            &th.rest("/agents/echo/invoke"),
            json!({"input": echo_input(&format!("r{i}"), 3, 0),
            "sessionId": sid, "idempotencyKey": format!("k{i}"), "wait": true}),
        )
        .await;
        assert_eq!(s, 200);
    }
    th.hub
        .grant_permission(&admin(), "other", "agent:invoke:echo", true, None)
        .await
        .unwrap();
    th.hub
        .create_key(&admin(), Role::Invoker, "k", None)
        .await
        .unwrap();
    // Keep invoking while the snapshot is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = th.rest("/agents/echo/invoke");
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                post(&url, json!({"input": echo_input("load", 4, 1)})).await;
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = th.hub.create_backup(&admin()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    assert!(load.await.unwrap() > 5, "the load ran during the snapshot");
    let manifest = backup::verify(&info.path).unwrap();
    assert_eq!(manifest.source_backend, backend);
    for kind in [
        "agents",
        "sessions",
        "requests",
        "events",
        "idempotency_keys",
        "grants",
        "api_keys",
        "audit",
    ] {
        assert!(
            manifest.counts.get(kind).copied().unwrap_or(0) > 0,
            "{kind} in {:?}",
            manifest.counts
        );
    }
    let snap = records_of(&info.path);
    assert_consistent(&snap);
    (info.path, snap)
}

/// Records in a backend-independent order (backends may sort text differently).
fn sorted(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_cached_key(|r| format!("{r:?}"));
    records
}

/// Writes the snapshot into `target` and checks that it holds exactly the snapshot's records.
async fn restore_and_compare(path: &Path, target: DynStore, snap: &[Record]) {
    let p = path.to_path_buf();
    let t = target.clone();
    tokio::task::spawn_blocking(move || backup::restore::write_records(&p, &t, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sorted(export_all(&target).await),
        sorted(snap.to_vec()),
        "restored records equal the snapshot's, field by field"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_load_is_consistent_and_restores_field_by_field() {
    let th = TestHub::start().await;
    let (path, snap) = snapshot_under_load(&th, "redb").await;
    let dir = tempfile::tempdir().unwrap();
    let fresh: DynStore =
        Arc::new(a2a_mcp::store::redb::RedbStore::open(&dir.path().join("r.redb")).unwrap());
    restore_and_compare(&path, fresh, &snap).await;
    th.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_snapshot_under_load_restores_field_by_field() {
    let th = TestHub::start_with(&[("store", "sqlite")]).await;
    let (path, snap) = snapshot_under_load(&th, "sqlite").await;
    let dir = tempfile::tempdir().unwrap();
    let fresh: DynStore = Arc::new(
        a2a_mcp::store::sqlite::SqliteStore::open(&dir.path().join("r.sqlite"), true).unwrap(),
    );
    restore_and_compare(&path, fresh, &snap).await;
    th.stop().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_snapshot_under_load_restores_field_by_field() {
    use super::store_backends::pg;
    let Some(url) = pg::url() else { return };
    let cleanup = pg::Cleanup::new(&url);
    let (source, target) = (pg::unique("bs"), pg::unique("bt"));
    cleanup
        .schemas
        .lock()
        .extend([source.clone(), target.clone()]);
    let th = TestHub::start_with(&[
        ("store", "postgres"),
        ("postgres_url", url.as_str()),
        ("postgres_schema", source.as_str()),
    ])
    .await;
    let (path, snap) = snapshot_under_load(&th, "postgres").await;
    let fresh: DynStore = Arc::new(
        a2a_mcp::store::postgres::PostgresStore::open(&pg::settings(&url, &target), true)
            .await
            .unwrap(),
    );
    restore_and_compare(&path, fresh.clone(), &snap).await;
    fresh.close().await.unwrap();
    th.stop().await;
}

/// A redb snapshot restored with the CLI into SQLite and Postgres (the way users move between
/// backends) gives the same records, and the servers run on the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_backend_restore_with_the_cli() {
    let th = TestHub::start().await;
    let (path, snap) = snapshot_under_load(&th, "redb").await;
    let done = th
        .hub
        .list_requests(&admin(), &Default::default())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.state == RequestState::Done)
        .unwrap()
        .id;
    let _source_dir = th.stop().await; // holds the snapshot
    let snap_arg = path.display().to_string();

    // Into SQLite.
    let dir = tempfile::tempdir().unwrap();
    let out = cli_env(
        dir.path(),
        &["backup", "restore", &snap_arg],
        &[("A2A_STORE", "sqlite")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("into the sqlite store"));
    let restored: DynStore = Arc::new(
        a2a_mcp::store::sqlite::SqliteStore::open(
            &dir.path().join(a2a_mcp::store::sqlite::FILE_NAME),
            true,
        )
        .unwrap(),
    );
    assert_eq!(sorted(export_all(&restored).await), sorted(snap.clone()));
    restored.close().await.unwrap();
    drop(restored);
    // (The snapshot holds an API key, so keys would be required: switch auth off to read.)
    let b = TestBinary::serve(dir.path(), &[("A2A_STORE", "sqlite"), ("A2A_AUTH", "off")]).await;
    let (s, v) = get(&b.rest(&format!("/requests/{done}"))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
    drop(b);

    // Into Postgres: a fresh schema, then again over it (the previous one is kept), and a
    // refusal while a server is connected.
    #[cfg(feature = "postgres")]
    {
        use super::store_backends::pg;
        let Some(url) = pg::url() else { return };
        let cleanup = pg::Cleanup::new(&url);
        let schema = pg::unique("x");
        cleanup.schemas.lock().push(schema.clone());
        let env = [
            ("A2A_STORE", "postgres"),
            ("A2A_POSTGRES_URL", url.as_str()),
            ("A2A_POSTGRES_SCHEMA", schema.as_str()),
        ];
        let pdir = tempfile::tempdir().unwrap();
        let out = cli_env(pdir.path(), &["backup", "restore", &snap_arg], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let settings = pg::settings(&url, &schema);
        let store: DynStore = Arc::new(
            a2a_mcp::store::postgres::PostgresStore::open(&settings, false)
                .await
                .unwrap(),
        );
        assert_eq!(sorted(export_all(&store).await), sorted(snap.clone()));
        // A store is connected under the schema's application name: refused.
        let out = cli_env(pdir.path(), &["backup", "restore", &snap_arg], &env);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("running a2a-mcp servers") && err.contains("unchanged"),
            "{err}"
        );
        store.close().await.unwrap();
        drop(store);
        let out = cli_env(pdir.path(), &["backup", "restore", &snap_arg], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let kept = text
            .split("kept as schema ")
            .nth(1)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("{text}"));
        cleanup.schemas.lock().push(kept.clone());
        let admin_db = pg::admin(&url).await;
        let n: i64 = admin_db
            .query_one(
                "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)",
                &[&vec![schema.clone(), kept.clone()]],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 2, "the restored schema and the previous one both exist");
        let b = TestBinary::serve(pdir.path(), &[&env[..], &[("A2A_AUTH", "off")]].concat()).await;
        let (s, v) = get(&b.rest(&format!("/requests/{done}"))).await;
        assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
        drop(b);
    }
}

fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    cli_env(dir, args, &[])
}

fn cli_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--catalog-dir")
        .arg(repo_dir().join("data/catalog"))
        .args(args)
        .env("A2A_BACKUP_DIR", dir.join("backup"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TestBinary::serve(dir.path(), &[]).await;
    let (_, v) = post(
        &b.rest("/agents/echo/invoke"),
        json!({"input": echo_input("before", 2, 0), "wait": true}),
    )
    .await;
    let before = v["requestId"].as_str().unwrap().to_string();
    // With the server running: create goes through its admin API; restore is refused.
    let out = cli(
        dir.path(),
        &["backup", "create", "--url", &format!("http://{}", b.api)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let online_snap = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(online_snap.ends_with(".a2asnap"), "{online_snap}");
    let out = cli(dir.path(), &["backup", "restore", &online_snap]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by a running server"));
    // The REST API lists it, verified.
    let (s, v) = get(&b.rest("/admin/backups?verify=true")).await;
    assert_eq!(s, 200);
    assert_eq!(v["backups"][0]["verified"], true, "{v}");
    assert!(b.sigterm_and_wait().await.success());

    // Offline: create, list (verified), change the store, restore, the change is gone.
    let snaps = dir.path().join("snaps");
    let out = cli(
        dir.path(),
        &["backup", "create", "--dir", &snaps.display().to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("records") && err.contains("ms"), "{err}");
    // Two snapshots: the newest is verified by default, every one with --verify.
    let out = cli(
        dir.path(),
        &["backup", "create", "--dir", &snaps.display().to_string()],
    );
    assert!(out.status.success());
    let newest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = cli(
        dir.path(),
        &["backup", "list", "--dir", &snaps.display().to_string()],
    );
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].contains(&snap) && lines[0].contains("--verify"),
        "{listed}"
    );
    assert!(
        lines[1].contains(&newest) && lines[1].ends_with("  verified"),
        "{listed}"
    );
    let out = cli(
        dir.path(),
        &[
            "backup",
            "list",
            "--verify",
            "--dir",
            &snaps.display().to_string(),
        ],
    );
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.lines().all(|l| l.ends_with("  verified")),
        "{listed}"
    );
    std::fs::remove_file(&newest).unwrap();
    let b = TestBinary::serve(dir.path(), &[]).await;
    let (_, v) = post(
        &b.rest("/agents/echo/invoke"),
        json!({"input": echo_input("after", 2, 0), "wait": true}),
    )
    .await;
    let after = v["requestId"].as_str().unwrap().to_string();
    let mut b = b;
    assert!(b.sigterm_and_wait().await.success());
    let out = cli(dir.path(), &["backup", "restore", &snap]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("restored") && text.contains("pre-restore"),
        "{text}"
    );
    let b = TestBinary::serve(dir.path(), &[]).await;
    assert_eq!(get(&b.rest(&format!("/requests/{before}"))).await.0, 200);
    assert_eq!(
        get(&b.rest(&format!("/requests/{after}"))).await.0,
        404,
        "later changes are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_snapshots_fail_verify_and_restore_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = TestBinary::serve(dir.path(), &[]).await;
    let (_, v) = post(
        &b.rest("/agents/echo/invoke"),
        json!({"input": echo_input("keep me", 2, 0), "wait": true}),
    )
    .await;
    let id = v["requestId"].as_str().unwrap().to_string();
    assert!(b.sigterm_and_wait().await.success());
    let out = cli(dir.path(), &["backup", "create"]);
    let snap = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let bytes = std::fs::read(&snap).unwrap();
    let truncated = dir.path().join("truncated.a2asnap");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let flipped = dir.path().join("flipped.a2asnap");
    let mut f = bytes.clone();
    f[bytes.len() / 3] ^= 0x40;
    std::fs::write(&flipped, &f).unwrap();
    let wrong_version = dir.path().join("future.a2asnap");
    let mut fv = bytes.clone();
    let pos = fv
        .windows(17)
        .position(|w| w == b"\"formatVersion\":1")
        .unwrap();
    fv[pos + 16] = b'9';
    std::fs::write(&wrong_version, &fv).unwrap();
    for (bad, needle) in [
        (&truncated, "truncated"),
        (&flipped, "damaged"),
        (&wrong_version, "newer"),
    ] {
        let out = cli(
            dir.path(),
            &["backup", "verify", &bad.display().to_string()],
        );
        assert_ne!(out.status.code(), Some(0), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{bad:?}: {err}");
        let out = cli(
            dir.path(),
            &["backup", "restore", &bad.display().to_string()],
        );
        assert_ne!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stderr).contains("unchanged"));
    }
    let out = cli(
        dir.path(),
        &["backup", "verify", &snap.display().to_string()],
    );
    assert!(out.status.success());
    // The store is untouched.
    let b = TestBinary::serve(dir.path(), &[]).await;
    let (s, v) = get(&b.rest(&format!("/requests/{id}"))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_leaves_the_previous_store_working() {
    let th = TestHub::start().await;
    let id = invoke(&th, "echo", echo_input("precious", 2, 0)).await;
    wait_status(&th, &id, "done").await;
    let info = th.hub.create_backup(&admin()).await.unwrap();
    let config = (*th.config).clone();
    let dir = th.stop().await;
    let snap = info.path.clone();
    let cfg = config.clone();
    let r = tokio::task::spawn_blocking(move || {
        backup::restore::restore(
            &cfg,
            &snap,
            &backup::restore::RestoreOptions {
                force: false,
                fail_after: Some(5),
            },
        )
    })
    .await
    .unwrap();
    assert!(r.is_err(), "the injected failure surfaces");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "the half-written store is removed");
    let th = TestHub::start_in(dir, &[]).await;
    let (s, v) = get(&th.rest(&format!("/requests/{id}"))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")));
    th.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_old_snapshots_and_keeps_the_newest() {
    let th = TestHub::start().await;
    let store = {
        // A small store to snapshot repeatedly with chosen timestamps.
        let dir = tempfile::tempdir().unwrap();
        let s: DynStore =
            Arc::new(a2a_mcp::store::redb::RedbStore::open(&dir.path().join("p.redb")).unwrap());
        (s, dir)
    };
    let snaps = tempfile::tempdir().unwrap();
    let day = 86_400_000i64;
    let now = a2a_mcp::model::now_ms();
    for age in [45, 40, 31, 29, 10, 1] {
        let (s, d) = (store.0.clone(), snaps.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            backup::create(&s, 1, &d, now - age * day, &mut |_| {})
        })
        .await
        .unwrap()
        .unwrap();
    }
    let dry = backup::prune(snaps.path(), 30, now, true).unwrap();
    assert_eq!(dry.len(), 3);
    assert_eq!(
        std::fs::read_dir(snaps.path()).unwrap().count(),
        6,
        "dry run deletes nothing"
    );
    let gone = backup::prune(snaps.path(), 30, now, false).unwrap();
    assert_eq!(gone.len(), 3);
    let left: Vec<i64> = backup::list(snaps.path())
        .unwrap()
        .into_iter()
        .flatten()
        .map(|s| (now - s.manifest.created_at_ms) / day)
        .collect();
    assert_eq!(left, vec![29, 10, 1]);
    // When every snapshot is old, the newest still stays.
    let gone = backup::prune(snaps.path(), 0, now + 100 * day, false).unwrap();
    assert_eq!(gone.len(), 2);
    assert_eq!(backup::list(snaps.path()).unwrap().len(), 1);
    th.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_and_update_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let b = TestBinary::serve(
        dir.path(),
        &[
            ("A2A_BACKUP_INTERVAL", "1s"),
            ("A2A_BACKUP_RETENTION_DAYS", "30"),
        ],
    )
    .await;
    let ops = |p: &str| format!("http://{}{p}", b.ops);
    let mut snapshots = 0;
    for _ in 0..100 {
        snapshots = backup::list(&dir.path().join("backup")).unwrap().len();
        if snapshots >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        snapshots >= 2,
        "two scheduled snapshots within 10 s: {snapshots}"
    );
    let (_, text, _) = http_raw("GET", &ops("/metrics"), vec![], &[]).await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(value("a2a_backup_last_success_timestamp_seconds") > 1.7e9);
    assert!(value("a2a_backup_last_size_bytes") > 0.0);
    let (_, status) = get(&ops("/api/agent?action=status")).await;
    let w = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "backup-scheduler")
        .unwrap()
        .clone();
    assert!(w["runs"].as_u64().unwrap() >= 2, "{w}");
}

/// `restore --latest` picks the newest snapshot of the backup directory, and the CLI shows the
/// verified manifest, the records written and the switch; with no snapshot it says where it
/// looked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_latest_takes_the_newest_snapshot_and_shows_progress() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["backup", "restore", "--latest"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no snapshot in") && err.contains("A2A_BACKUP_DIR"),
        "{err}"
    );
    let out = cli(dir.path(), &["backup", "restore"]);
    assert_eq!(out.status.code(), Some(2), "a file or --latest is required");

    // Three generations: a (snapshot 1), b (snapshot 2), c (no snapshot).
    let mut ids = Vec::new();
    let mut snaps = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let mut b = TestBinary::serve(dir.path(), &[]).await;
        let (_, v) = post(
            &b.rest("/agents/echo/invoke"),
            json!({"input": echo_input(name, 2, 0), "wait": true}),
        )
        .await;
        ids.push(v["requestId"].as_str().unwrap().to_string());
        assert!(b.sigterm_and_wait().await.success());
        if i < 2 {
            let out = cli(dir.path(), &["backup", "create"]);
            assert!(out.status.success());
            snaps.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
    }
    let out = cli(dir.path(), &["backup", "restore", "--latest"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("the newest snapshot is {}", snaps[1])),
        "{stderr}"
    );
    assert!(stderr.contains("verified: "), "{stderr}");
    let total = stderr
        .lines()
        .find_map(|l| l.strip_prefix("verified: "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    assert!(
        stderr.contains(&format!("{total} of {total} records written (100%)")),
        "{stderr}"
    );
    assert!(
        stderr.contains("switching to the restored store"),
        "{stderr}"
    );
    assert!(
        stdout.contains(&format!("restored {total} records")),
        "{stdout}"
    );

    let b = TestBinary::serve(dir.path(), &[]).await;
    for (id, want) in ids.iter().zip([200, 200, 404]) {
        assert_eq!(
            get(&b.rest(&format!("/requests/{id}"))).await.0,
            want,
            "{id}"
        );
    }
}

/// The runbook's rollback of a bad upgrade: a store migrated past this binary's schema is
/// refused by `migrate --status` and by a plain restore (which names `--force`); with the
/// server stopped, `restore --force` puts the pre-upgrade snapshot back, the server runs on it,
/// and the newer store is kept untouched for a roll forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_restores_over_a_newer_schema_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = [("A2A_STORE", "sqlite")];
    let mut b = TestBinary::serve(dir.path(), &sqlite).await;
    let (_, v) = post(
        &b.rest("/agents/echo/invoke"),
        json!({"input": echo_input("before the upgrade", 2, 0), "wait": true}),
    )
    .await;
    let id = v["requestId"].as_str().unwrap().to_string();
    assert!(b.sigterm_and_wait().await.success());
    let out = cli_env(dir.path(), &["backup", "create"], &sqlite);
    assert!(out.status.success());
    let snap = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // "The upgrade": a newer binary's migration, recorded in the store.
    let file = dir.path().join(a2a_mcp::store::sqlite::FILE_NAME);
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', '2099-01-01T00:00:00Z')",
        [],
    )
    .unwrap();
    drop(db);

    let out = cli_env(dir.path(), &["migrate", "--status"], &sqlite);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("version 99") && err.contains("knows only up to"),
        "{err}"
    );
    let out = cli_env(dir.path(), &["backup", "restore", &snap], &sqlite);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unchanged") && err.contains("--force") && err.contains("version 99"),
        "{err}"
    );
    let out = cli_env(
        dir.path(),
        &["backup", "restore", "--force", &snap],
        &sqlite,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kept = stdout
        .split("kept as ")
        .nth(1)
        .map(|s| std::path::PathBuf::from(s.trim()))
        .unwrap_or_else(|| panic!("{stdout}"));

    // This binary runs on the restored store, with the request of before the upgrade.
    let out = cli_env(dir.path(), &["migrate", "--status"], &sqlite);
    assert!(out.status.success());
    let b = TestBinary::serve(dir.path(), &sqlite).await;
    let (s, v) = get(&b.rest(&format!("/requests/{id}"))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
    drop(b);
    // The newer store is kept as it was.
    let db = rusqlite::Connection::open(&kept).unwrap();
    let newest: i64 = db
        .query_row("SELECT max(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(newest, 99);
}
