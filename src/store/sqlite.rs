//! The SQLite backend (`A2A_STORE=sqlite`): one file `a2a-mcp.sqlite` in the state directory.
//!
//! Durability and threading match redb: writes go through [`GroupCommitter`] — one writer
//! connection on the commit thread, `BEGIN IMMEDIATE` … `COMMIT` per merged batch, WAL mode
//! with `synchronous=FULL`, so a returned write has been fsynced and concurrent writers share
//! one fsync. Reads use separate connections from a small idle pool and run on the calling
//! task; in WAL mode a reader sees the last committed snapshot and never waits for the writer.
//!
//! One process at a time: the store takes an exclusive `flock` on `a2a-mcp.sqlite.lock` next to
//! the database and keeps it until closed; a second process gets [`StoreError::Locked`] (SQLite's
//! own `locking_mode=EXCLUSIVE` would also shut out this process's read connections).
//!
//! The schema comes from numbered migrations (`migrations/sqlite/`), recorded in
//! `schema_migrations`; the secondary indexes of redb (active, finished-by-time, by-session,
//! by-principal, sessions by time, idempotency expiry) are SQL indexes, kept in step by the
//! engine.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};

use super::group_commit::{BatchWriter, GroupCommitter};
use super::migrations::{self, Applied, Mode, Report};
use super::{
    Leases,
    Aux, ListOrder, Op, Record, RequestFilter, Store, StoreCounts, StoreError, StoreResult,
    idempotency_taken,
};
use crate::model::{
    AgentRecord, AgentSource, Event, EventKind, IdempotencyRecord, RequestRecord, RequestState,
    SessionRecord,
};

/// File name of the database in the state directory.
pub const FILE_NAME: &str = "a2a-mcp.sqlite";
/// Read connections kept open between reads.
const MAX_IDLE_READERS: usize = 8;
/// How long a connection waits on SQLite's own locks (checkpoints, a migration) before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn io<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

/// Converts to SQLite's signed 64-bit integers (sequence numbers are `u64` in the model).
fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Other(format!("{what} {v} is too large to store")))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn source_str(s: AgentSource) -> &'static str {
    match s {
        AgentSource::Catalog => "catalog",
        AgentSource::Runtime => "runtime",
    }
}

pub(crate) fn parse_source(s: &str) -> Option<AgentSource> {
    match s {
        "catalog" => Some(AgentSource::Catalog),
        "runtime" => Some(AgentSource::Runtime),
        _ => None,
    }
}

pub(crate) fn parse_state(s: &str) -> Option<RequestState> {
    RequestState::ALL.into_iter().find(|st| st.as_str() == s)
}

/// Column form of an event kind: (kind, data).
pub(crate) fn kind_columns(k: &EventKind) -> (&'static str, Option<&str>) {
    match k {
        EventKind::Start => ("start", None),
        EventKind::Chunk(d) => ("chunk", Some(d)),
        EventKind::Final(d) => ("final", Some(d)),
        EventKind::Error(d) => ("error", Some(d)),
        EventKind::Canceled(d) => ("canceled", Some(d)),
    }
}

pub(crate) fn kind_from_columns(kind: &str, data: Option<String>) -> StoreResult<EventKind> {
    let data = || data.clone().unwrap_or_default();
    Ok(match kind {
        "start" => EventKind::Start,
        "chunk" => EventKind::Chunk(data()),
        "final" => EventKind::Final(data()),
        "error" => EventKind::Error(data()),
        "canceled" => EventKind::Canceled(data()),
        other => return Err(corrupt("events", format!("unknown event kind {other:?}"))),
    })
}

// ---------------------------------------------------------------------------------------------
// Rows

type RowResult<T> = rusqlite::Result<StoreResult<T>>;

const AGENT_COLS: &str = "spec, source, removed, updated_at";

fn agent_row(r: &Row<'_>) -> RowResult<AgentRecord> {
    let spec: String = r.get(0)?;
    let source: String = r.get(1)?;
    let removed: i64 = r.get(2)?;
    let updated_at: i64 = r.get(3)?;
    Ok((|| {
        let spec = serde_json::from_str(&spec).map_err(|e| corrupt("agents", e.to_string()))?;
        let source = parse_source(&source)
            .ok_or_else(|| corrupt("agents", format!("unknown source {source:?}")))?;
        Ok(AgentRecord {
            spec,
            source,
            removed: removed != 0,
            updated_at,
        })
    })())
}

const SESSION_COLS: &str = "id, principal, agent_id, metadata, created_at, closed_at";

fn session_row(r: &Row<'_>) -> RowResult<SessionRecord> {
    Ok(Ok(SessionRecord {
        id: r.get(0)?,
        principal: r.get(1)?,
        agent_id: r.get(2)?,
        metadata: r.get(3)?,
        created_at: r.get(4)?,
        closed_at: r.get(5)?,
    }))
}

const REQUEST_COLS: &str = "id, agent_id, capability, input, session_id, parent_id, \
     idempotency_key, principal, state, created_at, started_at, finished_at, result, error, attempts";

fn request_row(r: &Row<'_>) -> RowResult<RequestRecord> {
    let state: String = r.get(8)?;
    let attempts: i64 = r.get(14)?;
    let Some(state) = parse_state(&state) else {
        return Ok(Err(corrupt("requests", format!("unknown state {state:?}"))));
    };
    let Ok(attempts) = u32::try_from(attempts) else {
        return Ok(Err(corrupt("requests", format!("attempts {attempts}"))));
    };
    Ok(Ok(RequestRecord {
        id: r.get(0)?,
        agent_id: r.get(1)?,
        capability: r.get(2)?,
        input: r.get(3)?,
        session_id: r.get(4)?,
        parent_id: r.get(5)?,
        idempotency_key: r.get(6)?,
        principal: r.get(7)?,
        state,
        created_at: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        result: r.get(12)?,
        error: r.get(13)?,
        attempts,
    }))
}

const EVENT_COLS: &str = "request_id, seq, ts, kind, data";

fn event_row(r: &Row<'_>) -> RowResult<Event> {
    let seq: i64 = r.get(1)?;
    let kind: String = r.get(3)?;
    let data: Option<String> = r.get(4)?;
    let request_id: String = r.get(0)?;
    let ts: i64 = r.get(2)?;
    Ok((|| {
        Ok(Event {
            request_id,
            seq: u64::try_from(seq).map_err(|_| corrupt("events", format!("seq {seq}")))?,
            ts,
            kind: kind_from_columns(&kind, data)?,
        })
    })())
}

const IDEM_COLS: &str = "scope, request_id, args_hash, expires_at";

fn idem_row(r: &Row<'_>) -> RowResult<IdempotencyRecord> {
    Ok(Ok(IdempotencyRecord {
        scope: r.get(0)?,
        request_id: r.get(1)?,
        args_hash: r.get(2)?,
        expires_at: r.get(3)?,
    }))
}

fn aux_row(r: &Row<'_>) -> RowResult<(String, String, Vec<u8>)> {
    Ok(Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

fn query<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: fn(&Row<'_>) -> RowResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(io)?;
    let rows = stmt.query_map(params, f).map_err(io)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r.map_err(io)??);
    }
    Ok(out)
}

fn query_one<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: fn(&Row<'_>) -> RowResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(io)?;
    match stmt.query_row(params, f).optional().map_err(io)? {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}

/// Streams every row of `sql` to `each` (for exports: no intermediate vector).
fn for_each<T>(
    conn: &Connection,
    sql: &str,
    f: fn(&Row<'_>) -> RowResult<T>,
    mut each: impl FnMut(T) -> StoreResult<()>,
) -> StoreResult<()> {
    let mut stmt = conn.prepare(sql).map_err(io)?;
    let rows = stmt.query_map([], f).map_err(io)?;
    for r in rows {
        each(r.map_err(io)??)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Opening, locking, migrating

/// The exclusive lock file next to the database; held for as long as the store is open.
fn lock(path: &Path) -> StoreResult<File> {
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

fn open_writer(path: &Path) -> StoreResult<Connection> {
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

fn open_reader(path: &Path) -> StoreResult<Connection> {
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
fn run_migrations(conn: &mut Connection, path: &Path, mode: Mode) -> StoreResult<Report> {
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
fn prepare_files(path: &Path) -> StoreResult<()> {
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

/// The query of a request listing (of one principal, through `requests_by_principal`, or of
/// everyone) and its parameters.
fn request_listing(
    principal: Option<&str>,
    filter: &RequestFilter,
    order: ListOrder,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE 1 = 1");
    let mut args: Vec<V> = Vec::new();
    let cond = |sql: &mut String, args: &mut Vec<V>, clause: &str, v: V| {
        args.push(v);
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(p) = principal {
        cond(&mut sql, &mut args, "principal =", V::Text(p.to_string()));
    }
    if let Some(s) = &filter.session_id {
        cond(&mut sql, &mut args, "session_id =", V::Text(s.clone()));
    }
    if let Some(a) = &filter.agent_id {
        cond(&mut sql, &mut args, "agent_id =", V::Text(a.clone()));
    }
    if !filter.states.is_empty() {
        let mut marks = Vec::new();
        for s in &filter.states {
            args.push(V::Text(s.as_str().to_string()));
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
    }
    let (cmp, dir) = match order {
        ListOrder::OldestFirst => ("id >", "ASC"),
        ListOrder::NewestFirst => ("id <", "DESC"),
    };
    if let Some(after) = &filter.after_id {
        cond(&mut sql, &mut args, cmp, V::Text(after.clone()));
    }
    let limit = if filter.limit == 0 {
        -1
    } else {
        limit_i64(filter.limit)
    };
    args.push(V::Integer(limit));
    sql.push_str(&format!(" ORDER BY id {dir} LIMIT ?{}", args.len()));
    (sql, args)
}

// ---------------------------------------------------------------------------------------------
// Writing

struct Writer {
    conn: Connection,
}

const PUT_AGENT: &str = "INSERT INTO agents (id, spec, source, removed, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, \
     source = excluded.source, removed = excluded.removed, updated_at = excluded.updated_at";
const PUT_SESSION: &str = "INSERT INTO sessions (id, principal, agent_id, metadata, created_at, closed_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET principal = excluded.principal, \
     agent_id = excluded.agent_id, metadata = excluded.metadata, created_at = excluded.created_at, \
     closed_at = excluded.closed_at";
const PUT_REQUEST: &str = "INSERT INTO requests (id, agent_id, capability, input, session_id, \
     parent_id, idempotency_key, principal, state, created_at, started_at, finished_at, result, \
     error, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, capability = excluded.capability, \
     input = excluded.input, session_id = excluded.session_id, parent_id = excluded.parent_id, \
     idempotency_key = excluded.idempotency_key, principal = excluded.principal, \
     state = excluded.state, created_at = excluded.created_at, started_at = excluded.started_at, \
     finished_at = excluded.finished_at, result = excluded.result, error = excluded.error, \
     attempts = excluded.attempts";
const PUT_EVENT: &str = "INSERT INTO events (request_id, seq, ts, kind, data) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (request_id, seq) DO UPDATE SET ts = excluded.ts, kind = excluded.kind, data = excluded.data";
const PUT_IDEM: &str = "INSERT INTO idempotency (scope, request_id, args_hash, expires_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (scope) DO UPDATE SET request_id = excluded.request_id, \
     args_hash = excluded.args_hash, expires_at = excluded.expires_at";
/// Inserts, or replaces an expired record; a live one is left alone (0 rows changed).
const CLAIM_IDEM: &str = "INSERT INTO idempotency (scope, request_id, args_hash, expires_at) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (scope) DO UPDATE SET request_id = excluded.request_id, \
     args_hash = excluded.args_hash, expires_at = excluded.expires_at \
     WHERE idempotency.expires_at <= ?5";
const PUT_AUX: &str = "INSERT INTO aux (tbl, key, value) VALUES (?1, ?2, ?3) \
     ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value";

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &Op) -> StoreResult<()> {
    let exec = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> StoreResult<()> {
        tx.prepare_cached(sql).map_err(io)?.execute(p).map_err(io)?;
        Ok(())
    };
    match op {
        Op::PutAgent(rec) => {
            let spec =
                serde_json::to_string(&rec.spec).map_err(|e| StoreError::Other(e.to_string()))?;
            exec(
                PUT_AGENT,
                &[
                    &rec.spec.id,
                    &spec,
                    &source_str(rec.source),
                    &rec.removed,
                    &rec.updated_at,
                ],
            )
        }
        Op::DeleteAgent(id) => exec("DELETE FROM agents WHERE id = ?1", &[id]),
        Op::PutSession(rec) => exec(
            PUT_SESSION,
            &[
                &rec.id,
                &rec.principal,
                &rec.agent_id,
                &rec.metadata,
                &rec.created_at,
                &rec.closed_at,
            ],
        ),
        Op::PutRequest(r) => exec(
            PUT_REQUEST,
            &[
                &r.id,
                &r.agent_id,
                &r.capability,
                &r.input,
                &r.session_id,
                &r.parent_id,
                &r.idempotency_key,
                &r.principal,
                &r.state.as_str(),
                &r.created_at,
                &r.started_at,
                &r.finished_at,
                &r.result,
                &r.error,
                &i64::from(r.attempts),
            ],
        ),
        Op::DeleteSession(id) => exec("DELETE FROM sessions WHERE id = ?1", &[id]),
        Op::DeleteRequest(id) => {
            exec("DELETE FROM requests WHERE id = ?1", &[id])?;
            exec("DELETE FROM events WHERE request_id = ?1", &[id])
        }
        Op::AppendEvent(ev) => {
            let (kind, data) = kind_columns(&ev.kind);
            exec(
                PUT_EVENT,
                &[
                    &ev.request_id,
                    &to_i64(ev.seq, "event seq")?,
                    &ev.ts,
                    &kind,
                    &data,
                ],
            )
        }
        Op::PutIdempotency(rec) => exec(
            PUT_IDEM,
            &[&rec.scope, &rec.request_id, &rec.args_hash, &rec.expires_at],
        ),
        Op::ClaimIdempotency { record: rec, now } => {
            let changed = tx
                .prepare_cached(CLAIM_IDEM)
                .map_err(io)?
                .execute(params![
                    rec.scope,
                    rec.request_id,
                    rec.args_hash,
                    rec.expires_at,
                    now
                ])
                .map_err(io)?;
            if changed == 0 {
                return Err(idempotency_taken(&rec.scope));
            }
            Ok(())
        }
        Op::DeleteIdempotency(scope) => exec("DELETE FROM idempotency WHERE scope = ?1", &[scope]),
        Op::PutAux { table, key, value } => exec(PUT_AUX, &[&table.name(), key, value]),
        Op::DeleteAux { table, key } => exec(
            "DELETE FROM aux WHERE tbl = ?1 AND key = ?2",
            &[&table.name(), key],
        ),
    }
}

impl BatchWriter for Writer {
    fn apply(&mut self, ops: &[Op]) -> StoreResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(io)?;
        for op in ops {
            apply_op(&tx, op)?;
        }
        tx.commit().map_err(io)
    }

    fn shutdown(&mut self) {
        // Fold the WAL back into the database so the file is self-contained at rest.
        if let Err(e) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
            tracing::warn!("sqlite checkpoint at close failed: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The store

pub struct SqliteStore {
    path: PathBuf,
    committer: GroupCommitter,
    readers: Mutex<Vec<Connection>>,
    closed: AtomicBool,
    /// The held process lock; dropped (released) on close.
    lock: Mutex<Option<File>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`. With `auto_migrate` pending migrations are
    /// applied; without, a schema behind this build is refused. Fails with
    /// [`StoreError::Locked`] when another process holds the file and [`StoreError::TooNew`]
    /// when a newer version wrote it.
    pub fn open(path: &Path, auto_migrate: bool) -> StoreResult<Self> {
        prepare_files(path)?;
        let lock = lock(path)?;
        let mut conn = open_writer(path)?;
        let mode = if auto_migrate {
            Mode::Apply
        } else {
            Mode::Require
        };
        run_migrations(&mut conn, path, mode)?;
        let reader = open_reader(path)?;
        let committer = GroupCommitter::start("sqlite", Writer { conn })?;
        Ok(Self {
            path: path.to_path_buf(),
            committer,
            readers: Mutex::new(vec![reader]),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on an idle read connection (opening one when none is idle).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable("the sqlite store is closed".into()));
        }
        let conn = self.readers.lock().pop();
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = f(&conn);
        if !self.closed.load(Ordering::Acquire) {
            let mut idle = self.readers.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }
}

/// One process owns the file: nothing is shared, so nothing is leased (the defaults).
impl Leases for SqliteStore {}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn write(&self, ops: Vec<Op>) -> StoreResult<()> {
        self.committer.write(ops).await
    }

    async fn get_agent(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        self.read(|c| {
            query_one(
                c,
                &format!("SELECT {AGENT_COLS} FROM agents WHERE id = ?1"),
                [id],
                agent_row,
            )
        })
    }

    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>> {
        self.read(|c| {
            query(
                c,
                &format!("SELECT {AGENT_COLS} FROM agents ORDER BY id"),
                [],
                agent_row,
            )
        })
    }

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        self.read(|c| {
            query_one(
                c,
                &format!("SELECT {SESSION_COLS} FROM sessions WHERE id = ?1"),
                [id],
                session_row,
            )
        })
    }

    async fn get_request(&self, id: &str) -> StoreResult<Option<RequestRecord>> {
        self.read(|c| {
            query_one(
                c,
                &format!("SELECT {REQUEST_COLS} FROM requests WHERE id = ?1"),
                [id],
                request_row,
            )
        })
    }

    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>> {
        let (sql, args) = request_listing(None, filter, ListOrder::OldestFirst);
        self.read(|c| query(c, &sql, rusqlite::params_from_iter(args), request_row))
    }

    async fn list_requests_of(
        &self,
        principal: &str,
        filter: &RequestFilter,
        order: ListOrder,
    ) -> StoreResult<Vec<RequestRecord>> {
        let (sql, args) = request_listing(Some(principal), filter, order);
        self.read(|c| query(c, &sql, rusqlite::params_from_iter(args), request_row))
    }

    async fn sessions_before(
        &self,
        before_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<SessionRecord>> {
        let (after_ts, after_id) = after.unwrap_or((i64::MIN, ""));
        self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {SESSION_COLS} FROM sessions \
                     WHERE coalesce(closed_at, created_at) < ?1 \
                     AND (coalesce(closed_at, created_at), id) > (?2, ?3) \
                     ORDER BY coalesce(closed_at, created_at), id LIMIT ?4"
                ),
                params![before_ms, after_ts, after_id, limit_i64(limit)],
                session_row,
            )
        })
    }

    async fn active_requests(&self) -> StoreResult<Vec<RequestRecord>> {
        self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {REQUEST_COLS} FROM requests WHERE state IN ('queued', 'running') ORDER BY id"
                ),
                [],
                request_row,
            )
        })
    }

    async fn finished_before(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        self.read(|c| {
            query(
                c,
                "SELECT id FROM requests WHERE state IN ('done', 'error', 'canceled') \
                 AND coalesce(finished_at, created_at) < ?1 \
                 ORDER BY coalesce(finished_at, created_at), id LIMIT ?2",
                params![before_ms, limit_i64(limit)],
                |r| Ok(Ok(r.get(0)?)),
            )
        })
    }

    async fn events(&self, request_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {EVENT_COLS} FROM events WHERE request_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                ),
                params![request_id, after, limit_i64(limit)],
                event_row,
            )
        })
    }

    async fn last_seq(&self, request_id: &str) -> StoreResult<u64> {
        let last: Option<i64> = self.read(|c| {
            query_one(
                c,
                "SELECT max(seq) FROM events WHERE request_id = ?1",
                [request_id],
                |r| Ok(Ok(r.get(0)?)),
            )
            .map(Option::flatten)
        })?;
        match last {
            None => Ok(0),
            Some(v) => u64::try_from(v).map_err(|_| corrupt("events", format!("seq {v}"))),
        }
    }

    async fn get_idempotency(&self, scope: &str) -> StoreResult<Option<IdempotencyRecord>> {
        self.read(|c| {
            query_one(
                c,
                &format!("SELECT {IDEM_COLS} FROM idempotency WHERE scope = ?1"),
                [scope],
                idem_row,
            )
        })
    }

    async fn expired_idempotency(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        self.read(|c| {
            query(
                c,
                "SELECT scope FROM idempotency WHERE expires_at < ?1 ORDER BY expires_at, scope LIMIT ?2",
                params![before_ms, limit_i64(limit)],
                |r| Ok(Ok(r.get(0)?)),
            )
        })
    }

    async fn get_aux(&self, table: Aux, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read(|c| {
            query_one(
                c,
                "SELECT value FROM aux WHERE tbl = ?1 AND key = ?2",
                params![table.name(), key],
                |r| Ok(Ok(r.get(0)?)),
            )
        })
    }

    async fn scan_aux(
        &self,
        table: Aux,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        // Keys from max(prefix, after) up to the prefix's end; as in redb, the range ends at
        // prefix + U+10FFFF (a noncharacter no key uses), and the exact prefix test filters.
        let start = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let end = format!("{prefix}\u{10FFFF}");
        let rows = self.read(|c| {
            query(
                c,
                "SELECT tbl, key, value FROM aux WHERE tbl = ?1 AND key >= ?2 AND key < ?3 \
                 AND substr(key, 1, length(?4)) = ?4 AND (?5 IS NULL OR key > ?5) \
                 ORDER BY key LIMIT ?6",
                params![table.name(), start, end, prefix, after, limit_i64(limit)],
                aux_row,
            )
        })?;
        Ok(rows.into_iter().map(|(_, k, v)| (k, v)).collect())
    }

    async fn export(
        &self,
        out: &mut (dyn FnMut(Record) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        // One read transaction: a consistent snapshot (WAL); the writer is not blocked.
        self.read(|c| {
            let tx = c.unchecked_transaction().map_err(io)?;
            for_each(
                &tx,
                &format!("SELECT {AGENT_COLS} FROM agents ORDER BY id"),
                agent_row,
                |r| out(Record::Agent(r)),
            )?;
            for_each(
                &tx,
                &format!("SELECT {SESSION_COLS} FROM sessions ORDER BY id"),
                session_row,
                |r| out(Record::Session(r)),
            )?;
            for_each(
                &tx,
                &format!("SELECT {REQUEST_COLS} FROM requests ORDER BY id"),
                request_row,
                |r| out(Record::Request(r)),
            )?;
            for_each(
                &tx,
                &format!("SELECT {EVENT_COLS} FROM events ORDER BY request_id, seq"),
                event_row,
                |r| out(Record::Event(r)),
            )?;
            for_each(
                &tx,
                &format!("SELECT {IDEM_COLS} FROM idempotency ORDER BY scope"),
                idem_row,
                |r| out(Record::Idempotency(r)),
            )?;
            for_each(
                &tx,
                "SELECT tbl, key, value FROM aux ORDER BY tbl, key",
                aux_row,
                |(table, key, value)| {
                    let Some(table) = Aux::from_name(&table) else {
                        return Err(corrupt("aux", format!("unknown auxiliary table {table:?}")));
                    };
                    out(Record::Aux { table, key, value })
                },
            )?;
            tx.finish().map_err(io)
        })
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        self.read(|c| {
            let tx = c.unchecked_transaction().map_err(io)?;
            let count = |t: &str| -> StoreResult<u64> {
                let n: i64 = tx
                    .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                    .map_err(io)?;
                Ok(u64::try_from(n).unwrap_or(0))
            };
            let mut aux = std::collections::BTreeMap::new();
            for a in Aux::ALL {
                let n: i64 = tx
                    .query_row("SELECT count(*) FROM aux WHERE tbl = ?1", [a.name()], |r| {
                        r.get(0)
                    })
                    .map_err(io)?;
                aux.insert(a.name().to_string(), u64::try_from(n).unwrap_or(0));
            }
            Ok(StoreCounts {
                agents: count("agents")?,
                sessions: count("sessions")?,
                requests: count("requests")?,
                events: count("events")?,
                idempotency_keys: count("idempotency")?,
                aux,
            })
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(io)?;
            Ok(())
        })
    }

    async fn close(&self) -> StoreResult<()> {
        self.committer.close().await;
        self.closed.store(true, Ordering::Release);
        self.readers.lock().clear();
        self.lock.lock().take();
        Ok(())
    }
}
