//! The Postgres backend (`A2A_STORE=postgres`, cargo feature `postgres`).
//!
//! Tables live in one schema (`A2A_POSTGRES_SCHEMA`, default `a2a`), set as the `search_path`
//! of every pooled connection; the schema comes from numbered migrations
//! (`migrations/postgres/`), recorded in `schema_migrations`.
//!
//! Writes: one commit task owns the write side. Callers hand it batches of [`Op`]s and wait;
//! the task takes everything that queued up while the previous commit was in flight and
//! applies it in one transaction, its statements pipelined on one connection, then `COMMIT`
//! (the server's `synchronous_commit`, on by default, makes a returned write durable). If a
//! merged batch fails on a data error (not a connection error), each caller's batch is retried
//! alone so one bad record cannot fail its neighbours.
//!
//! Reads take a pooled connection (deadpool-postgres, prepared statements cached per
//! connection). Connection loss is survived: operations fail with
//! [`StoreError::Unavailable`] (the hub answers `store_unavailable`, HTTP 503) while the
//! database is away, every failure counts in `a2a_store_errors_total{backend="postgres"}`,
//! `ping` fails (so `/readyz` says not ready), and the pool drops closed connections and opens
//! new ones by itself. Every operation is bounded by `A2A_POSTGRES_TIMEOUT` (commits by four
//! times that); a commit that times out is reported as failed although the server may still
//! have applied it, as with any database client.
//!
//! TLS (`A2A_POSTGRES_TLS=true`, or `sslmode=require` in the URL) uses rustls with the ring
//! provider and always verifies the server certificate chain (Mozilla roots plus
//! `A2A_POSTGRES_CA_FILE`) and host name, like libpq's `verify-full`. Without it connections
//! are plain: `sslmode=prefer` (the driver default) does not encrypt here, because an
//! unverified session would not stop an active attacker anyway.
//!
//! Files: `connection` (settings, pool, errors), `schema` (migrations, restore support),
//! `write` (statements and the commit task), `rows` (row conversions), `export` (snapshot and
//! bulk load), `leases` (the [`Leases`](crate::store::Leases) implementation); the [`Store`]
//! reads are here.

mod connection;
mod export;
mod leases;
mod rows;
mod schema;
mod write;

pub use schema::{drop_schema, migrate, server_connections, swap_schema};

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Object, Pool};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord};
use crate::store::migrations::Mode;
use crate::store::{
    Aux, ListOrder, Op, PostgresSettings, Record, RequestFilter, Store, StoreCounts, StoreError,
    StoreResult,
};
use connection::{
    bounded, client_config, corrupt, count_error, limit_i64, location, pg_err, pool, pool_err,
    query,
};
use rows::{
    AGENT_COLS, EVENT_COLS, IDEM_COLS, REQUEST_COLS, SESSION_COLS, agent_from, event_from, get,
    idem_from, request_from, session_from,
};
use schema::{run_migrations, with_location};
use write::{LeaseOwner, Msg, commit_loop, request_listing};

/// Largest number of ops merged into one transaction.
const MAX_BATCH_OPS: usize = 8192;
const BACKEND: &str = "postgres";

pub struct PostgresStore {
    pool: Pool,
    tx: Mutex<Option<mpsc::UnboundedSender<Msg>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    timeout: Duration,
    location: String,
    lease: LeaseOwner,
}

impl PostgresStore {
    /// Connects, migrates (with `auto_migrate`) or checks the schema, and starts the commit
    /// task on the current Tokio runtime.
    pub async fn open(s: &PostgresSettings, auto_migrate: bool) -> StoreResult<Self> {
        let config = client_config(s)?;
        let loc = location(&config, s);
        let pool = pool(s, config)?;
        {
            let mut c = pool
                .get()
                .await
                .map_err(|e| with_location(pool_err(e), &loc))?;
            let mode = if auto_migrate {
                Mode::Apply
            } else {
                Mode::Require
            };
            run_migrations(&mut c, &s.schema, &loc, mode).await?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let lease: LeaseOwner = Default::default();
        let task = tokio::spawn(commit_loop(pool.clone(), rx, s.timeout, lease.clone()));
        Ok(Self {
            pool,
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            timeout: s.timeout,
            location: loc,
            lease,
        })
    }

    /// Where the data lives (no password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` with a pooled connection, bounded by the timeout; failures are counted.
    async fn with<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(Object) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let r = bounded(self.timeout, async {
            let c = self.pool.get().await.map_err(pool_err)?;
            f(c).await
        })
        .await;
        if r.is_err() {
            count_error();
        }
        r
    }

    async fn rows(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        self.with(|c| async move { query(&c, sql, params).await })
            .await
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn write(&self, ops: Vec<Op>) -> StoreResult<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let closed = || StoreError::Unavailable("the postgres store is closed".into());
        let (done_tx, done_rx) = oneshot::channel();
        {
            let guard = self.tx.lock();
            let Some(tx) = guard.as_ref() else {
                return Err(closed());
            };
            tx.send(Msg::Write(ops, done_tx)).map_err(|_| closed())?;
        }
        done_rx.await.map_err(|_| closed())?
    }

    async fn get_agent(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLS} FROM agents WHERE id = $1");
        self.rows(&sql, &[&id])
            .await?
            .first()
            .map(agent_from)
            .transpose()
    }

    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>> {
        let sql = format!("SELECT {AGENT_COLS} FROM agents ORDER BY id");
        self.rows(&sql, &[]).await?.iter().map(agent_from).collect()
    }

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let sql = format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1");
        self.rows(&sql, &[&id])
            .await?
            .first()
            .map(session_from)
            .transpose()
    }

    async fn get_request(&self, id: &str) -> StoreResult<Option<RequestRecord>> {
        let sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE id = $1");
        self.rows(&sql, &[&id])
            .await?
            .first()
            .map(request_from)
            .transpose()
    }

    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>> {
        let (sql, args) = request_listing(None, filter, ListOrder::OldestFirst);
        let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as _).collect();
        self.rows(&sql, &args)
            .await?
            .iter()
            .map(request_from)
            .collect()
    }

    async fn list_requests_of(
        &self,
        principal: &str,
        filter: &RequestFilter,
        order: ListOrder,
    ) -> StoreResult<Vec<RequestRecord>> {
        let (sql, args) = request_listing(Some(principal), filter, order);
        let args: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as _).collect();
        self.rows(&sql, &args)
            .await?
            .iter()
            .map(request_from)
            .collect()
    }

    async fn sessions_before(
        &self,
        before_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<SessionRecord>> {
        let (after_ts, after_id) = after.unwrap_or((i64::MIN, ""));
        let limit = limit_i64(limit);
        let sql = format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE coalesce(closed_at, created_at) < $1 \
             AND (coalesce(closed_at, created_at), id) > ($2, $3) \
             ORDER BY coalesce(closed_at, created_at), id LIMIT $4"
        );
        self.rows(&sql, &[&before_ms, &after_ts, &after_id, &limit])
            .await?
            .iter()
            .map(session_from)
            .collect()
    }

    async fn active_requests(&self) -> StoreResult<Vec<RequestRecord>> {
        let sql = format!(
            "SELECT {REQUEST_COLS} FROM requests WHERE state IN ('queued', 'running') ORDER BY id"
        );
        self.rows(&sql, &[])
            .await?
            .iter()
            .map(request_from)
            .collect()
    }

    async fn finished_before(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        let limit = limit_i64(limit);
        self.rows(
            "SELECT id FROM requests WHERE state IN ('done', 'error', 'canceled') \
             AND coalesce(finished_at, created_at) < $1 \
             ORDER BY coalesce(finished_at, created_at), id LIMIT $2",
            &[&before_ms, &limit],
        )
        .await?
        .iter()
        .map(|r| get(r, 0, "requests"))
        .collect()
    }

    async fn events(&self, request_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = limit_i64(limit);
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events WHERE request_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        self.rows(&sql, &[&request_id, &after, &limit])
            .await?
            .iter()
            .map(event_from)
            .collect()
    }

    async fn last_seq(&self, request_id: &str) -> StoreResult<u64> {
        let rows = self
            .rows(
                "SELECT max(seq) FROM events WHERE request_id = $1",
                &[&request_id],
            )
            .await?;
        let last: Option<i64> = match rows.first() {
            Some(r) => get(r, 0, "events")?,
            None => None,
        };
        match last {
            None => Ok(0),
            Some(v) => u64::try_from(v).map_err(|_| corrupt("events", format!("seq {v}"))),
        }
    }

    async fn get_idempotency(&self, scope: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let sql = format!("SELECT {IDEM_COLS} FROM idempotency WHERE scope = $1");
        self.rows(&sql, &[&scope])
            .await?
            .first()
            .map(idem_from)
            .transpose()
    }

    async fn expired_idempotency(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        let limit = limit_i64(limit);
        self.rows(
            "SELECT scope FROM idempotency WHERE expires_at < $1 ORDER BY expires_at, scope LIMIT $2",
            &[&before_ms, &limit],
        )
        .await?
        .iter()
        .map(|r| get(r, 0, "idempotency"))
        .collect()
    }

    async fn get_aux(&self, table: Aux, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let name = table.name();
        self.rows(
            "SELECT value FROM aux WHERE tbl = $1 AND key = $2",
            &[&name, &key],
        )
        .await?
        .first()
        .map(|r| get(r, 0, "aux"))
        .transpose()
    }

    async fn scan_aux(
        &self,
        table: Aux,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        // As in redb and sqlite: from max(prefix, after) to prefix + U+10FFFF, exact prefix test.
        let start = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let end = format!("{prefix}\u{10FFFF}");
        let name = table.name();
        let limit = limit_i64(limit);
        self.rows(
            "SELECT key, value FROM aux WHERE tbl = $1 AND key >= $2 AND key < $3 \
             AND starts_with(key, $4) AND ($5::text IS NULL OR key > $5) ORDER BY key LIMIT $6",
            &[&name, &start, &end, &prefix, &after, &limit],
        )
        .await?
        .iter()
        .map(|r| Ok((get(r, 0, "aux")?, get(r, 1, "aux")?)))
        .collect()
    }

    async fn export(
        &self,
        out: &mut (dyn FnMut(Record) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        self.export_records(out).await
    }

    /// Binary `COPY` per run of records of one table, in one transaction: several times
    /// faster than upserts for a restore into a fresh schema.
    async fn load(&self, records: Vec<Record>) -> StoreResult<()> {
        self.load_records(records).await
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        self.with(|c| async move {
            let totals = query(
                &c,
                "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM sessions), \
                 (SELECT count(*) FROM requests), (SELECT count(*) FROM events), \
                 (SELECT count(*) FROM idempotency)",
                &[],
            )
            .await?;
            let per_aux = query(&c, "SELECT tbl, count(*) FROM aux GROUP BY tbl", &[]).await?;
            let Some(t) = totals.first() else {
                return Err(StoreError::Other("count query returned no row".into()));
            };
            let n = |i: usize| -> StoreResult<u64> {
                let v: i64 = get(t, i, "counts")?;
                Ok(u64::try_from(v).unwrap_or(0))
            };
            let mut aux: std::collections::BTreeMap<String, u64> =
                Aux::ALL.iter().map(|a| (a.name().to_string(), 0)).collect();
            for r in &per_aux {
                let name: String = get(r, 0, "aux")?;
                let v: i64 = get(r, 1, "aux")?;
                aux.insert(name, u64::try_from(v).unwrap_or(0));
            }
            Ok(StoreCounts {
                agents: n(0)?,
                sessions: n(1)?,
                requests: n(2)?,
                events: n(3)?,
                idempotency_keys: n(4)?,
                aux,
            })
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.with(|c| async move {
            c.simple_query("SELECT 1").await.map_err(pg_err)?;
            Ok(())
        })
        .await
    }

    async fn close(&self) -> StoreResult<()> {
        let tx = self.tx.lock().take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(Msg::Close(done_tx)).is_ok() {
                let _ = done_rx.await;
            }
        }
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = t.await;
        }
        self.pool.close();
        Ok(())
    }
}
