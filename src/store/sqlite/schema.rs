//! Opening the file: the exclusive lock next to the database, writer and reader
//! connections with their pragmas, and the numbered migrations (`migrations/sqlite/`,
//! recorded in `schema_migrations`) applied at open or by `a2a-mcp migrate`.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{BUSY_TIMEOUT, io};
use crate::store::migrations::{Applied, Mode, Report};
use crate::store::{StoreError, StoreResult, migrations};

// ---------------------------------------------------------------------------------------------
// Opening, locking, migrating

/// The exclusive lock file next to the database; held for as long as the store is open.
pub(super) fn lock(path: &Path) -> StoreResult<File> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let file = crate::files::open_private(&lock_path).map_err(|e| {
        StoreError::Unavailable(format!("cannot open {}: {e}", lock_path.display()))
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(format!(
            "the store {} is in use by another a2a-mcp process (embedded stores serve one process); \
             stop that process, talk to it with `a2a-mcp stdio --remote http://HOST:PORT/mcp`, \
             or point A2A_DATA_DIR elsewhere; to run several replicas, use A2A_STORE=postgres \
             (docs/SCALING_GUIDE.md)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

fn open_conn(path: &Path, flags: OpenFlags) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(io)?;
    // Room for every statement of the store (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

pub(super) fn open_writer(path: &Path) -> StoreResult<Connection> {
    let conn = open_conn(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{}: cannot switch to WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")
        .map_err(io)?;
    Ok(conn)
}

pub(super) fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = open_conn(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch("PRAGMA query_only=1;").map_err(io)?;
    Ok(conn)
}

fn has_migrations_table(conn: &Connection) -> StoreResult<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(io)
}

fn history(conn: &Connection) -> StoreResult<Vec<Applied>> {
    if !has_migrations_table(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        .map_err(io)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Applied {
                version: r.get(0)?,
                name: r.get(1)?,
                applied_at: r.get(2)?,
            })
        })
        .map_err(io)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(io)
}

/// Brings the schema of an open writer connection to the latest version (or checks it).
pub(super) fn run_migrations(
    conn: &mut Connection,
    path: &Path,
    mode: Mode,
) -> StoreResult<Report> {
    let location = path.display().to_string();
    let list = migrations::SQLITE;
    let latest = migrations::latest(list);
    let mut report = Report {
        backend: "sqlite",
        location: location.clone(),
        before: 0,
        after: 0,
        latest,
        applied_now: Vec::new(),
        pending: Vec::new(),
        history: Vec::new(),
    };
    if mode != Mode::Apply {
        let hist = history(conn)?;
        let found = hist.last().map_or(0, |a| a.version);
        let todo = migrations::plan("sqlite", &location, list, found, mode)?;
        report.before = found;
        report.after = found;
        report.pending = todo.iter().map(|m| (m.version, m.name)).collect();
        report.history = hist;
        return Ok(report);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(io)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY NOT NULL,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL
         ) STRICT;",
    )
    .map_err(io)?;
    let found: u32 = tx
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(io)?;
    let todo = migrations::plan("sqlite", &location, list, found, mode)?;
    for m in &todo {
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Other(format!(
                "migration {:04}_{} failed on {location}: {e}",
                m.version, m.name
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![
                m.version,
                m.name,
                crate::model::rfc3339(crate::model::now_ms())
            ],
        )
        .map_err(io)?;
    }
    tx.commit().map_err(io)?;
    if !todo.is_empty() {
        tracing::info!(
            path = %location,
            from = found,
            to = latest,
            "sqlite schema migrated"
        );
    }
    report.before = found;
    report.after = todo.last().map_or(found, |m| m.version);
    report.applied_now = todo.iter().map(|m| (m.version, m.name)).collect();
    report.history = history(conn)?;
    Ok(report)
}

/// `a2a-mcp migrate` on a SQLite file: takes the process lock (so it is refused while a server
/// holds the store), applies or reports, releases.
pub fn migrate(path: &Path, mode: Mode) -> StoreResult<Report> {
    if mode == Mode::Status && !path.exists() {
        return Ok(Report {
            backend: "sqlite",
            location: path.display().to_string(),
            before: 0,
            after: 0,
            latest: migrations::latest(migrations::SQLITE),
            applied_now: Vec::new(),
            pending: migrations::SQLITE
                .iter()
                .map(|m| (m.version, m.name))
                .collect(),
            history: Vec::new(),
        });
    }
    prepare_files(path)?;
    let _lock = lock(path)?;
    let mut conn = open_writer(path)?;
    run_migrations(&mut conn, path, mode)
}

/// The state directory (0700) and the database file (0600) exist before SQLite opens it:
/// SQLite creates `-wal` and `-shm` with the database file's mode, so they are private too
/// (ones left by an older run are tightened here).
pub(super) fn prepare_files(path: &Path) -> StoreResult<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::private_dir(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create the state directory {}: {e}",
                dir.display()
            ))
        })?;
    }
    crate::files::private_file(path)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", path.display())))?;
    for suffix in ["-wal", "-shm"] {
        crate::files::tighten_existing(&PathBuf::from(format!("{}{suffix}", path.display())));
    }
    Ok(())
}
