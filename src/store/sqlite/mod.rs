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
//!
//! Files: `schema` (lock, connections, migrations), `rows` (row conversions and read
//! helpers), `write` (statements and the commit thread's writer); the [`Store`] reads are
//! here.

mod rows;
mod schema;
mod write;

pub use schema::migrate;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use rusqlite::{Connection, params};

use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord};
use crate::store::group_commit::GroupCommitter;
use crate::store::migrations::Mode;
use crate::store::{
    Aux, Leases, ListOrder, Op, Record, RequestFilter, Store, StoreCounts, StoreError, StoreResult,
};
use rows::{
    AGENT_COLS, EVENT_COLS, IDEM_COLS, REQUEST_COLS, SESSION_COLS, agent_row, aux_row, event_row,
    for_each, idem_row, query, query_one, request_listing, request_row, session_row,
};
use schema::{lock, open_reader, open_writer, prepare_files, run_migrations};
use write::Writer;

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
