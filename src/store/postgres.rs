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

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures_util::StreamExt;
use futures_util::future::try_join_all;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{IsolationLevel, NoTls, Row};

use super::migrations::{self, Applied, Mode, Report};
use super::sqlite::{kind_columns, kind_from_columns, parse_source, parse_state, source_str};
use super::{
    Aux, Leases, ListOrder, Op, Record, RequestFilter, Store, StoreCounts, StoreError,
    StoreResult,
};
use super::PostgresSettings;
use crate::metrics;
use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord};

/// Largest number of ops merged into one transaction.
const MAX_BATCH_OPS: usize = 8192;
const BACKEND: &str = "postgres";

// ---------------------------------------------------------------------------------------------
// Errors

/// Maps a driver error: lost connections, shutdowns and overload are `Unavailable` (retry
/// later); anything else the database refused is `Other`.
/// The driver error with its causes ("db error: ERROR: …", "error performing TLS handshake:
/// invalid peer certificate: …"); the driver's own text names only the kind.
fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        // Raised by lease_lost() (migration 0002: the request is leased to another replica)
        // and idempotency_taken() (0003: the key is held by another writer).
        Some(code) if code.code() == "A2A01" || code.code() == "A2A02" => {
            StoreError::Conflict(format!(
                "postgres: {}",
                e.as_db_error()
                    .map_or_else(|| describe(&e), |d| d.message().to_string())
            ))
        }
        Some(code) => {
            let c = code.code();
            let transient = c.starts_with("08") // connection exception
                || c.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                || c.starts_with("53") // insufficient resources
                || c == "40001" // serialization failure
                || c == "40P01" // deadlock
                || c == "25006"; // read-only transaction (a failover in progress)
            if transient {
                StoreError::Unavailable(format!("postgres: {}", describe(&e)))
            } else {
                StoreError::Other(format!("postgres: {}", describe(&e)))
            }
        }
        // No SQLSTATE: I/O error, closed connection, protocol error.
        None => StoreError::Unavailable(format!("postgres: {}", describe(&e))),
    }
}

fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match pg_err(e) {
            // A connection that cannot be made (refused, auth, role cannot log in) means the
            // database is away for us, whatever the SQLSTATE.
            StoreError::Other(m) => StoreError::Unavailable(m),
            other => other,
        },
        PoolError::Timeout(t) => {
            StoreError::Unavailable(format!("postgres: no connection available ({t:?} timeout)"))
        }
        PoolError::Closed => StoreError::Unavailable("the postgres store is closed".into()),
        other => StoreError::Unavailable(format!("postgres pool: {other}")),
    }
}

fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

fn count_error() {
    metrics::STORE_ERRORS.with_label_values(&[BACKEND]).inc();
}

fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Other(format!("{what} {v} is too large to store")))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Connection settings

/// The driver configuration from the settings: URL or separate fields, the schema as
/// `search_path`, an application name that names the schema, timeouts and keepalives.
fn client_config(s: &PostgresSettings) -> StoreResult<tokio_postgres::Config> {
    let mut c = match &s.url {
        Some(url) => url.parse::<tokio_postgres::Config>().map_err(|e| {
            StoreError::Other(format!(
                "A2A_POSTGRES_URL is not a valid connection string: {e}"
            ))
        })?,
        None => {
            let mut c = tokio_postgres::Config::new();
            c.host(&s.host).port(s.port);
            if let Some(db) = &s.db {
                c.dbname(db);
            }
            c
        }
    };
    if c.get_user().is_none() {
        c.user(&s.user);
    }
    if c.get_password().is_none()
        && let Some(p) = &s.password
    {
        c.password(p.as_bytes());
    }
    let options = match c.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c search_path={}", s.schema),
        _ => format!("-c search_path={}", s.schema),
    };
    c.options(options);
    if c.get_application_name().is_none() {
        c.application_name(format!("a2a-mcp/{}", s.schema));
    }
    c.connect_timeout(s.timeout);
    c.keepalives(true);
    c.keepalives_idle(Duration::from_secs(30));
    Ok(c)
}

/// Where the data lives, for messages (never the password).
fn location(c: &tokio_postgres::Config, s: &PostgresSettings) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("");
    let db = c.get_dbname().unwrap_or(user);
    let tls = if wants_tls(s, c) { ", TLS" } else { "" };
    format!(
        "postgres://{user}@{host}:{port}/{db} (schema {}{tls})",
        s.schema
    )
}

/// Whether connections use TLS: the setting, or `sslmode=require` in the URL.
fn wants_tls(s: &PostgresSettings, c: &tokio_postgres::Config) -> bool {
    s.tls || c.get_ssl_mode() == tokio_postgres::config::SslMode::Require
}

/// The rustls connector: ring provider, Mozilla roots plus the configured CA file.
fn tls_connector(s: &PostgresSettings) -> StoreResult<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &s.ca_file {
        let bad = |detail: String| {
            StoreError::Other(format!(
                "postgres_ca_file (A2A_POSTGRES_CA_FILE) = {}: {detail}",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(bad("holds no usable certificate".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn pool(s: &PostgresSettings, mut config: tokio_postgres::Config) -> StoreResult<Pool> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if wants_tls(s, &config) {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        Manager::from_config(config, tls_connector(s)?, manager_config)
    } else {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        Manager::from_config(config, NoTls, manager_config)
    };
    Pool::builder(manager)
        .max_size(s.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(s.timeout))
        .create_timeout(Some(s.timeout))
        .recycle_timeout(Some(s.timeout))
        .build()
        .map_err(|e| StoreError::Other(format!("cannot build the postgres pool: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Migrations

async fn history(c: &Object, schema: &str) -> StoreResult<Vec<Applied>> {
    let table = format!("\"{schema}\".schema_migrations");
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            &format!("SELECT version, name, applied_at::text FROM {table} ORDER BY version"),
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            let v: i32 = r.try_get(0).map_err(pg_err)?;
            Ok(Applied {
                version: u32::try_from(v)
                    .map_err(|_| corrupt("schema_migrations", format!("version {v}")))?,
                name: r.try_get(1).map_err(pg_err)?,
                applied_at: r.try_get(2).map_err(pg_err)?,
            })
        })
        .collect()
}

async fn run_migrations(
    c: &mut Object,
    schema: &str,
    location: &str,
    mode: Mode,
) -> StoreResult<Report> {
    let list = migrations::POSTGRES;
    let latest = migrations::latest(list);
    let mut report = Report {
        backend: BACKEND,
        location: location.to_string(),
        before: 0,
        after: 0,
        latest,
        applied_now: Vec::new(),
        pending: Vec::new(),
        history: Vec::new(),
    };
    if mode != Mode::Apply {
        let hist = history(c, schema).await?;
        let found = hist.last().map_or(0, |a| a.version);
        let todo = migrations::plan(BACKEND, location, list, found, mode)?;
        report.before = found;
        report.after = found;
        report.pending = todo.iter().map(|m| (m.version, m.name)).collect();
        report.history = hist;
        return Ok(report);
    }
    let tx = c.transaction().await.map_err(pg_err)?;
    // Replicas starting together migrate one after the other.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("a2a-mcp migrate {schema}")],
    )
    .await
    .map_err(pg_err)?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    // The schema name is a validated identifier (config.rs): quoting it is enough.
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .map_err(pg_err)?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(pg_err)?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    let found = u32::try_from(found).unwrap_or(0);
    let todo = migrations::plan(BACKEND, location, list, found, mode)?;
    for m in &todo {
        tx.batch_execute(m.sql).await.map_err(|e| {
            StoreError::Other(format!(
                "migration {:04}_{} failed on {location}: {}",
                m.version,
                m.name,
                pg_err(e)
            ))
        })?;
        let v = i32::try_from(m.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&v, &m.name],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    if !todo.is_empty() {
        tracing::info!(
            location,
            from = found,
            to = latest,
            "postgres schema migrated"
        );
    }
    report.before = found;
    report.after = todo.last().map_or(found, |m| m.version);
    report.applied_now = todo.iter().map(|m| (m.version, m.name)).collect();
    report.history = history(c, schema).await?;
    Ok(report)
}

/// `a2a-mcp migrate` on Postgres: connects, applies or reports, disconnects.
pub async fn migrate(s: &PostgresSettings, mode: Mode) -> StoreResult<Report> {
    let config = client_config(s)?;
    let loc = location(&config, s);
    let pool = pool(s, config)?;
    let mut c = pool
        .get()
        .await
        .map_err(|e| with_location(pool_err(e), &loc))?;
    let r = run_migrations(&mut c, &s.schema, &loc, mode).await;
    drop(c);
    pool.close();
    r
}

// ---------------------------------------------------------------------------------------------
// Restore support (`a2a-mcp backup restore` on Postgres)

/// One short-lived admin connection for the settings' database.
async fn admin_connection(s: &PostgresSettings) -> StoreResult<(Pool, Object, String)> {
    let config = client_config(s)?;
    let loc = location(&config, s);
    let mut one = s.clone();
    one.pool_size = 1;
    let pool = pool(&one, config)?;
    let c = pool
        .get()
        .await
        .map_err(|e| with_location(pool_err(e), &loc))?;
    Ok((pool, c, loc))
}

/// Connections of a2a-mcp servers (by application name) to the settings' schema, other
/// than this process's own.
pub async fn server_connections(s: &PostgresSettings) -> StoreResult<i64> {
    let (pool, c, _) = admin_connection(s).await?;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid() AND datname = current_database()",
            &[&format!("a2a-mcp/{}", s.schema)],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    drop(c);
    pool.close();
    Ok(n)
}

fn checked_ident(name: &str) -> StoreResult<&str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Other(format!(
            "{name:?} is not a plain lower-case schema name of at most 63 characters"
        )))
    }
}

/// Makes schema `fresh` the settings' schema in one transaction; the current one (if any)
/// becomes `keep`. Returns whether there was a current schema.
pub async fn swap_schema(s: &PostgresSettings, fresh: &str, keep: &str) -> StoreResult<bool> {
    let (schema, fresh, keep) = (
        checked_ident(&s.schema)?,
        checked_ident(fresh)?,
        checked_ident(keep)?,
    );
    let (pool, mut c, _) = admin_connection(s).await?;
    let r = async {
        let tx = c.transaction().await.map_err(pg_err)?;
        let had: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        if had {
            tx.batch_execute(&format!("ALTER SCHEMA \"{schema}\" RENAME TO \"{keep}\""))
                .await
                .map_err(pg_err)?;
        }
        tx.batch_execute(&format!("ALTER SCHEMA \"{fresh}\" RENAME TO \"{schema}\""))
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(had)
    }
    .await;
    drop(c);
    pool.close();
    r
}

/// Drops a schema and everything in it (a partial restore).
pub async fn drop_schema(s: &PostgresSettings, name: &str) -> StoreResult<()> {
    let name = checked_ident(name)?;
    let (pool, c, _) = admin_connection(s).await?;
    let r = c
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
        .await
        .map_err(pg_err);
    drop(c);
    pool.close();
    r
}

fn with_location(e: StoreError, loc: &str) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("cannot reach {loc}: {m}")),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

const PUT_AGENT: usize = 0;
const DELETE_AGENT: usize = 1;
const PUT_SESSION: usize = 2;
const PUT_REQUEST: usize = 3;
const DELETE_REQUEST: usize = 4;
const DELETE_EVENTS: usize = 5;
const PUT_EVENT: usize = 6;
const PUT_IDEM: usize = 7;
const DELETE_IDEM: usize = 8;
const PUT_AUX: usize = 9;
const DELETE_AUX: usize = 10;
const CLAIM_IDEM: usize = 11;
const DELETE_SESSION: usize = 12;

const WRITE_SQL: [&str; 13] = [
    "INSERT INTO agents (id, spec, source, removed, updated_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, source = EXCLUDED.source, \
     removed = EXCLUDED.removed, updated_at = EXCLUDED.updated_at",
    "DELETE FROM agents WHERE id = $1",
    "INSERT INTO sessions (id, principal, agent_id, metadata, created_at, closed_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET principal = EXCLUDED.principal, \
     agent_id = EXCLUDED.agent_id, metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at, \
     closed_at = EXCLUDED.closed_at",
    // The lease columns: an active request written by a replica is leased to it ($16, $17);
    // a replica that lost the lease ($18 is not the owner any more) fails the whole commit.
    "INSERT INTO requests (id, agent_id, capability, input, session_id, parent_id, \
     idempotency_key, principal, state, created_at, started_at, finished_at, result, error, \
     attempts, lease_owner, lease_expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
     ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, capability = EXCLUDED.capability, \
     input = EXCLUDED.input, session_id = EXCLUDED.session_id, parent_id = EXCLUDED.parent_id, \
     idempotency_key = EXCLUDED.idempotency_key, principal = EXCLUDED.principal, \
     state = EXCLUDED.state, created_at = EXCLUDED.created_at, started_at = EXCLUDED.started_at, \
     finished_at = EXCLUDED.finished_at, result = EXCLUDED.result, error = EXCLUDED.error, \
     attempts = EXCLUDED.attempts, lease_owner = EXCLUDED.lease_owner, \
     lease_expires_at = EXCLUDED.lease_expires_at \
     WHERE CASE WHEN $18::text IS NULL OR requests.lease_owner IS NULL \
     OR requests.lease_owner = $18::text THEN true \
     ELSE lease_lost(requests.id, $18::text) END",
    "DELETE FROM requests WHERE id = $1",
    "DELETE FROM events WHERE request_id = $1",
    "INSERT INTO events (request_id, seq, ts, kind, data) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (request_id, seq) DO UPDATE SET ts = EXCLUDED.ts, kind = EXCLUDED.kind, \
     data = EXCLUDED.data",
    "INSERT INTO idempotency (scope, request_id, args_hash, expires_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (scope) DO UPDATE SET request_id = EXCLUDED.request_id, \
     args_hash = EXCLUDED.args_hash, expires_at = EXCLUDED.expires_at",
    "DELETE FROM idempotency WHERE scope = $1",
    "INSERT INTO aux (tbl, key, value) VALUES ($1, $2, $3) \
     ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value",
    "DELETE FROM aux WHERE tbl = $1 AND key = $2",
    // A live record of another writer fails the whole commit (idempotency_taken(), SQLSTATE
    // A2A02); an expired one is replaced.
    "INSERT INTO idempotency (scope, request_id, args_hash, expires_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (scope) DO UPDATE SET request_id = EXCLUDED.request_id, \
     args_hash = EXCLUDED.args_hash, expires_at = EXCLUDED.expires_at \
     WHERE CASE WHEN idempotency.expires_at <= $5 THEN true \
     ELSE idempotency_taken(idempotency.scope) END",
    "DELETE FROM sessions WHERE id = $1",
];

type Param<'a> = Box<dyn ToSql + Sync + Send + 'a>;

/// A text parameter. Postgres `text` cannot hold NUL characters (the other backends can): a
/// NUL in free text such as an error message becomes U+FFFD instead of failing the commit.
fn t(s: &str) -> Param<'_> {
    if s.contains('\0') {
        Box::new(s.replace('\0', "\u{FFFD}"))
    } else {
        Box::new(s)
    }
}

fn ot(s: Option<&str>) -> Param<'_> {
    match s {
        Some(s) => t(s),
        None => Box::new(None::<&str>),
    }
}

/// The query of a request listing (of one principal, through `requests_by_principal`, or of
/// everyone) and its parameters.
fn request_listing(
    principal: Option<&str>,
    filter: &RequestFilter,
    order: ListOrder,
) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE true");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let cond = |sql: &mut String,
                args: &mut Vec<Box<dyn ToSql + Sync + Send>>,
                clause: &str,
                v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        sql.push_str(&format!(" AND {clause} ${}", args.len()));
    };
    if let Some(p) = principal {
        cond(&mut sql, &mut args, "principal =", Box::new(p.to_string()));
    }
    if let Some(s) = &filter.session_id {
        cond(&mut sql, &mut args, "session_id =", Box::new(s.clone()));
    }
    if let Some(a) = &filter.agent_id {
        cond(&mut sql, &mut args, "agent_id =", Box::new(a.clone()));
    }
    if !filter.states.is_empty() {
        let states: Vec<String> = filter
            .states
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        args.push(Box::new(states));
        sql.push_str(&format!(" AND state = ANY(${})", args.len()));
    }
    let (cmp, dir) = match order {
        ListOrder::OldestFirst => ("id >", "ASC"),
        ListOrder::NewestFirst => ("id <", "DESC"),
    };
    if let Some(after) = &filter.after_id {
        cond(&mut sql, &mut args, cmp, Box::new(after.clone()));
    }
    let limit: Option<i64> = (filter.limit != 0).then(|| limit_i64(filter.limit));
    args.push(Box::new(limit));
    sql.push_str(&format!(" ORDER BY id {dir} LIMIT ${}", args.len()));
    (sql, args)
}

/// Who writes (multi-replica): the replica's id and when a lease taken now expires.
#[derive(Clone, Copy)]
struct Writer<'a> {
    owner: &'a str,
    until_ms: i64,
}

/// The statements (index into [`WRITE_SQL`], parameters) that carry out one op.
fn op_statements<'a>(
    op: &'a Op,
    writer: Option<Writer<'a>>,
    out: &mut Vec<(usize, Vec<Param<'a>>)>,
) -> StoreResult<()> {
    match op {
        Op::PutAgent(r) => out.push((
            PUT_AGENT,
            vec![
                t(&r.spec.id),
                Box::new(Json(&r.spec)),
                Box::new(source_str(r.source)),
                Box::new(r.removed),
                Box::new(r.updated_at),
            ],
        )),
        Op::DeleteAgent(id) => out.push((DELETE_AGENT, vec![t(id)])),
        Op::PutSession(r) => out.push((
            PUT_SESSION,
            vec![
                t(&r.id),
                t(&r.principal),
                ot(r.agent_id.as_deref()),
                t(&r.metadata),
                Box::new(r.created_at),
                Box::new(r.closed_at),
            ],
        )),
        Op::DeleteSession(id) => out.push((DELETE_SESSION, vec![t(id)])),
        Op::PutRequest(r) => out.push((
            PUT_REQUEST,
            vec![
                t(&r.id),
                t(&r.agent_id),
                t(&r.capability),
                t(&r.input),
                ot(r.session_id.as_deref()),
                ot(r.parent_id.as_deref()),
                ot(r.idempotency_key.as_deref()),
                t(&r.principal),
                Box::new(r.state.as_str()),
                Box::new(r.created_at),
                Box::new(r.started_at),
                Box::new(r.finished_at),
                ot(r.result.as_deref()),
                ot(r.error.as_deref()),
                Box::new(i32::try_from(r.attempts).unwrap_or(i32::MAX)),
                // Leased while active; a terminal request belongs to nobody.
                match writer {
                    Some(w) if !r.state.is_terminal() => Box::new(Some(w.owner)),
                    _ => Box::new(None::<&str>),
                },
                match writer {
                    Some(w) if !r.state.is_terminal() => Box::new(Some(w.until_ms)),
                    _ => Box::new(None::<i64>),
                },
                Box::new(writer.map(|w| w.owner)),
            ],
        )),
        Op::DeleteRequest(id) => {
            out.push((DELETE_REQUEST, vec![t(id)]));
            out.push((DELETE_EVENTS, vec![t(id)]));
        }
        Op::AppendEvent(ev) => {
            let (kind, data) = kind_columns(&ev.kind);
            out.push((
                PUT_EVENT,
                vec![
                    t(&ev.request_id),
                    Box::new(to_i64(ev.seq, "event seq")?),
                    Box::new(ev.ts),
                    Box::new(kind),
                    ot(data),
                ],
            ));
        }
        Op::PutIdempotency(r) => out.push((
            PUT_IDEM,
            vec![
                t(&r.scope),
                t(&r.request_id),
                t(&r.args_hash),
                Box::new(r.expires_at),
            ],
        )),
        Op::ClaimIdempotency { record: r, now } => out.push((
            CLAIM_IDEM,
            vec![
                t(&r.scope),
                t(&r.request_id),
                t(&r.args_hash),
                Box::new(r.expires_at),
                Box::new(*now),
            ],
        )),
        Op::DeleteIdempotency(scope) => out.push((DELETE_IDEM, vec![t(scope)])),
        Op::PutAux { table, key, value } => out.push((
            PUT_AUX,
            vec![Box::new(table.name()), t(key), Box::new(value.as_slice())],
        )),
        Op::DeleteAux { table, key } => {
            out.push((DELETE_AUX, vec![Box::new(table.name()), t(key)]))
        }
    }
    Ok(())
}

/// The `COPY` target (table and columns) and column types for the rows of a write statement:
/// the first parameters of the statement, in column order.
fn copy_target(stmt: usize) -> Option<(&'static str, &'static [Type])> {
    const AGENTS: &[Type] = &[Type::TEXT, Type::JSONB, Type::TEXT, Type::BOOL, Type::INT8];
    const SESSIONS: &[Type] = &[
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT8,
    ];
    const REQUESTS: &[Type] = &[
        Type::TEXT, // id
        Type::TEXT, // agent_id
        Type::TEXT, // capability
        Type::TEXT, // input
        Type::TEXT, // session_id
        Type::TEXT, // parent_id
        Type::TEXT, // idempotency_key
        Type::TEXT, // principal
        Type::TEXT, // state
        Type::INT8, // created_at
        Type::INT8, // started_at
        Type::INT8, // finished_at
        Type::TEXT, // result
        Type::TEXT, // error
        Type::INT4, // attempts
        Type::TEXT, // lease_owner
        Type::INT8, // lease_expires_at
    ];
    const EVENTS: &[Type] = &[Type::TEXT, Type::INT8, Type::INT8, Type::TEXT, Type::TEXT];
    const IDEMPOTENCY: &[Type] = &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8];
    const AUX: &[Type] = &[Type::TEXT, Type::TEXT, Type::BYTEA];
    Some(match stmt {
        PUT_AGENT => ("agents (id, spec, source, removed, updated_at)", AGENTS),
        PUT_SESSION => (
            "sessions (id, principal, agent_id, metadata, created_at, closed_at)",
            SESSIONS,
        ),
        PUT_REQUEST => (
            "requests (id, agent_id, capability, input, session_id, parent_id, idempotency_key, \
             principal, state, created_at, started_at, finished_at, result, error, attempts, \
             lease_owner, lease_expires_at)",
            REQUESTS,
        ),
        PUT_EVENT => ("events (request_id, seq, ts, kind, data)", EVENTS),
        PUT_IDEM => (
            "idempotency (scope, request_id, args_hash, expires_at)",
            IDEMPOTENCY,
        ),
        PUT_AUX => ("aux (tbl, key, value)", AUX),
        _ => return None,
    })
}

/// Applies `ops` in one transaction in one round trip: `BEGIN`, the statements and `COMMIT`
/// are prepared statements sent back to back (pipelined) on one connection. If a statement
/// fails, the server skips the rest of the transaction and turns the queued `COMMIT` into a
/// rollback, so the connection is clean again for its next user.
async fn apply(pool: &Pool, ops: &[&Op], lease: &LeaseOwner) -> StoreResult<()> {
    let owner = lease.read().clone();
    let writer = owner.as_ref().map(|(o, ttl)| Writer {
        owner: o.as_str(),
        until_ms: crate::model::now_ms() + ttl,
    });
    let mut statements = Vec::with_capacity(ops.len() + 1);
    for op in ops {
        op_statements(op, writer, &mut statements)?;
    }
    let client = pool.get().await.map_err(pool_err)?;
    let prepared = try_join_all(WRITE_SQL.iter().map(|sql| client.prepare_cached(sql)))
        .await
        .map_err(pg_err)?;
    let begin = client.prepare_cached("BEGIN").await.map_err(pg_err)?;
    let commit = client.prepare_cached("COMMIT").await.map_err(pg_err)?;
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|(_, ps)| {
            ps.iter()
                .map(|p| &**p as &(dyn ToSql + Sync))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut calls = Vec::with_capacity(statements.len() + 2);
    calls.push(Box::pin(client.execute(&begin, &[])));
    for ((i, _), p) in statements.iter().zip(&params) {
        calls.push(Box::pin(client.execute(&prepared[*i], p.as_slice())));
    }
    calls.push(Box::pin(client.execute(&commit, &[])));
    // An execute sends its messages when first polled: poll every call once, in order, so
    // BEGIN, the statements in op order and COMMIT all leave before any answer is awaited;
    // then collect the answers in the same order (the server answers in order).
    let mut early: Vec<Option<Result<u64, tokio_postgres::Error>>> =
        calls.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (call, slot) in calls.iter_mut().zip(early.iter_mut()) {
            if let Poll::Ready(r) = call.as_mut().poll(cx) {
                *slot = Some(r);
            }
        }
        Poll::Ready(())
    })
    .await;
    for (call, slot) in calls.into_iter().zip(early) {
        match slot {
            Some(r) => r.map_err(pg_err)?,
            None => call.await.map_err(pg_err)?,
        };
    }
    Ok(())
}

enum Msg {
    Write(Vec<Op>, oneshot::Sender<StoreResult<()>>),
    Close(oneshot::Sender<()>),
}

/// The commit task: group commit over one connection at a time.
/// This process's identity as a lease owner and the lease time in ms (multi-replica only).
type LeaseOwner = Arc<parking_lot::RwLock<Option<(String, i64)>>>;

async fn commit_loop(
    pool: Pool,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    timeout: Duration,
    lease: LeaseOwner,
) {
    let commit_timeout = timeout * 4;
    while let Some(first) = rx.recv().await {
        let mut writes: Vec<(Vec<Op>, oneshot::Sender<StoreResult<()>>)> = Vec::new();
        let mut close = None;
        let mut n_ops = 0usize;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Msg::Write(ops, done) => {
                    n_ops += ops.len();
                    writes.push((ops, done));
                }
                Msg::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if n_ops < MAX_BATCH_OPS {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            let all: Vec<&Op> = writes.iter().flat_map(|(ops, _)| ops.iter()).collect();
            let started = Instant::now();
            let result = bounded(commit_timeout, apply(&pool, &all, &lease)).await;
            metrics::STORE_COMMIT_SECONDS
                .with_label_values(&[BACKEND])
                .observe(started.elapsed().as_secs_f64());
            metrics::STORE_COMMIT_OPS
                .with_label_values(&[BACKEND])
                .observe(all.len() as f64);
            match result {
                Ok(()) => {
                    for (_, done) in writes {
                        let _ = done.send(Ok(()));
                    }
                }
                Err(e) if writes.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
                    // A data error in someone's batch: commit each caller's batch alone.
                    tracing::warn!(
                        "postgres group commit failed ({e}); retrying batches one by one"
                    );
                    for (ops, done) in writes {
                        let refs: Vec<&Op> = ops.iter().collect();
                        let r = bounded(commit_timeout, apply(&pool, &refs, &lease)).await;
                        if let Err(e) = &r {
                            count_error();
                            tracing::error!(backend = BACKEND, "commit failed: {e}");
                        }
                        let _ = done.send(r);
                    }
                }
                Err(e) => {
                    count_error();
                    tracing::error!(backend = BACKEND, "commit failed: {e}");
                    for (_, done) in writes {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
        }
        if let Some(done) = close {
            let _ = done.send(());
            return;
        }
    }
}

async fn bounded<T>(limit: Duration, f: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "postgres did not answer within {limit:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Rows

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    table: &'static str,
) -> StoreResult<T> {
    row.try_get(i).map_err(|e| corrupt(table, e.to_string()))
}

const AGENT_COLS: &str = "spec, source, removed, updated_at";

fn agent_from(r: &Row) -> StoreResult<AgentRecord> {
    let Json(spec) = get(r, 0, "agents")?;
    let source: &str = get(r, 1, "agents")?;
    Ok(AgentRecord {
        spec,
        source: parse_source(source)
            .ok_or_else(|| corrupt("agents", format!("unknown source {source:?}")))?,
        removed: get(r, 2, "agents")?,
        updated_at: get(r, 3, "agents")?,
    })
}

const SESSION_COLS: &str = "id, principal, agent_id, metadata, created_at, closed_at";

fn session_from(r: &Row) -> StoreResult<SessionRecord> {
    let t = "sessions";
    Ok(SessionRecord {
        id: get(r, 0, t)?,
        principal: get(r, 1, t)?,
        agent_id: get(r, 2, t)?,
        metadata: get(r, 3, t)?,
        created_at: get(r, 4, t)?,
        closed_at: get(r, 5, t)?,
    })
}

const REQUEST_COLS: &str = "id, agent_id, capability, input, session_id, parent_id, \
     idempotency_key, principal, state, created_at, started_at, finished_at, result, error, attempts";

fn request_from(r: &Row) -> StoreResult<RequestRecord> {
    let t = "requests";
    let state: &str = get(r, 8, t)?;
    let attempts: i32 = get(r, 14, t)?;
    Ok(RequestRecord {
        id: get(r, 0, t)?,
        agent_id: get(r, 1, t)?,
        capability: get(r, 2, t)?,
        input: get(r, 3, t)?,
        session_id: get(r, 4, t)?,
        parent_id: get(r, 5, t)?,
        idempotency_key: get(r, 6, t)?,
        principal: get(r, 7, t)?,
        state: parse_state(state).ok_or_else(|| corrupt(t, format!("unknown state {state:?}")))?,
        created_at: get(r, 9, t)?,
        started_at: get(r, 10, t)?,
        finished_at: get(r, 11, t)?,
        result: get(r, 12, t)?,
        error: get(r, 13, t)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(t, format!("attempts {attempts}")))?,
    })
}

const EVENT_COLS: &str = "request_id, seq, ts, kind, data";

fn event_from(r: &Row) -> StoreResult<Event> {
    let t = "events";
    let seq: i64 = get(r, 1, t)?;
    let kind: &str = get(r, 3, t)?;
    Ok(Event {
        request_id: get(r, 0, t)?,
        seq: u64::try_from(seq).map_err(|_| corrupt(t, format!("seq {seq}")))?,
        ts: get(r, 2, t)?,
        kind: kind_from_columns(kind, get(r, 4, t)?)?,
    })
}

const IDEM_COLS: &str = "scope, request_id, args_hash, expires_at";

fn idem_from(r: &Row) -> StoreResult<IdempotencyRecord> {
    let t = "idempotency";
    Ok(IdempotencyRecord {
        scope: get(r, 0, t)?,
        request_id: get(r, 1, t)?,
        args_hash: get(r, 2, t)?,
        expires_at: get(r, 3, t)?,
    })
}

fn aux_from(r: &Row) -> StoreResult<Record> {
    let name: &str = get(r, 0, "aux")?;
    let Some(table) = Aux::from_name(name) else {
        return Err(corrupt("aux", format!("unknown auxiliary table {name:?}")));
    };
    Ok(Record::Aux {
        table,
        key: get(r, 1, "aux")?,
        value: get(r, 2, "aux")?,
    })
}

async fn query(c: &Object, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&st, params).await.map_err(pg_err)
}

// ---------------------------------------------------------------------------------------------
// The store

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

    /// Leases to `$1` until `$2` at most `$4` requests matching `condition`, oldest first,
    /// skipping rows another replica is claiming; returns them in id order.
    async fn lease_where(
        &self,
        condition: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<RequestRecord>> {
        let sql = format!(
            "UPDATE requests SET lease_owner = $1, lease_expires_at = $2 WHERE id IN ( \
               SELECT id FROM requests WHERE {condition} \
               ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING {REQUEST_COLS}"
        );
        let mut out: Vec<RequestRecord> = self
            .rows(&sql, params)
            .await?
            .iter()
            .map(request_from)
            .collect::<StoreResult<_>>()?;
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
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
        // One REPEATABLE READ transaction: a consistent snapshot while writers go on. Rows are
        // streamed, not collected.
        let r = async {
            let mut c = bounded(self.timeout, async {
                self.pool.get().await.map_err(pool_err)
            })
            .await?;
            let tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg_err)?;
            let tables: [(String, fn(&Row) -> StoreResult<Record>); 6] = [
                (
                    format!("SELECT {AGENT_COLS} FROM agents ORDER BY id"),
                    |r| agent_from(r).map(Record::Agent),
                ),
                (
                    format!("SELECT {SESSION_COLS} FROM sessions ORDER BY id"),
                    |r| session_from(r).map(Record::Session),
                ),
                (
                    format!("SELECT {REQUEST_COLS} FROM requests ORDER BY id"),
                    |r| request_from(r).map(Record::Request),
                ),
                (
                    format!("SELECT {EVENT_COLS} FROM events ORDER BY request_id, seq"),
                    |r| event_from(r).map(Record::Event),
                ),
                (
                    format!("SELECT {IDEM_COLS} FROM idempotency ORDER BY scope"),
                    |r| idem_from(r).map(Record::Idempotency),
                ),
                (
                    "SELECT tbl, key, value FROM aux ORDER BY tbl, key".to_string(),
                    aux_from,
                ),
            ];
            for (sql, convert) in tables {
                let stream = tx
                    .query_raw(sql.as_str(), std::iter::empty::<&(dyn ToSql + Sync)>())
                    .await
                    .map_err(pg_err)?;
                let mut stream = std::pin::pin!(stream);
                while let Some(row) = stream.next().await {
                    out(convert(&row.map_err(pg_err)?)?)?;
                }
            }
            tx.commit().await.map_err(pg_err)
        }
        .await;
        if let Err(StoreError::Unavailable(_)) = &r {
            count_error();
        }
        r
    }

    /// Binary `COPY` per run of records of one table, in one transaction: several times
    /// faster than upserts for a restore into a fresh schema.
    async fn load(&self, records: Vec<Record>) -> StoreResult<()> {
        let ops: Vec<Op> = records.into_iter().map(Record::into_op).collect();
        let mut rows = Vec::with_capacity(ops.len());
        for op in &ops {
            op_statements(op, None, &mut rows)?;
        }
        let mut client = self.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg_err)?;
        let mut start = 0;
        while start < rows.len() {
            let stmt = rows[start].0;
            let end = rows[start..]
                .iter()
                .position(|(s, _)| *s != stmt)
                .map_or(rows.len(), |n| start + n);
            let Some((target, types)) = copy_target(stmt) else {
                return Err(StoreError::Other(format!(
                    "statement {stmt} has no bulk load; records of this kind cannot be loaded"
                )));
            };
            let sink = tx
                .copy_in(&format!("COPY {target} FROM STDIN (FORMAT binary)"))
                .await
                .map_err(pg_err)?;
            let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, types));
            for (_, params) in &rows[start..end] {
                let row: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .take(types.len())
                    .map(|p| &**p as &(dyn ToSql + Sync))
                    .collect();
                writer.as_mut().write(&row).await.map_err(pg_err)?;
            }
            writer.finish().await.map_err(pg_err)?;
            start = end;
        }
        tx.commit().await.map_err(pg_err)
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

#[async_trait]
impl Leases for PostgresStore {
    fn shared(&self) -> bool {
        true
    }

    fn set_lease_owner(&self, owner: &str, ttl: Duration) {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        *self.lease.write() = Some((owner.to_string(), ttl_ms));
    }

    async fn renew_leases(
        &self,
        owner: &str,
        until_ms: i64,
    ) -> StoreResult<Vec<(String, Option<String>)>> {
        let rows = self
            .rows(
                "UPDATE requests SET lease_expires_at = $2 \
                 WHERE lease_owner = $1 AND state IN ('queued', 'running') \
                 RETURNING id, cancel_requested",
                &[&owner, &until_ms],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((get(r, 0, "requests")?, get(r, 1, "requests")?)))
            .collect()
    }

    async fn claim_expired(
        &self,
        owner: &str,
        own: bool,
        until_ms: i64,
        now_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<RequestRecord>> {
        self.lease_where(
            "state IN ('queued', 'running') AND (lease_owner IS NULL OR lease_expires_at IS NULL \
             OR lease_expires_at < $3 OR ($5 AND lease_owner = $1))",
            &[&owner, &until_ms, &now_ms, &limit_i64(limit), &own],
        )
        .await
    }

    async fn steal_queued(
        &self,
        owner: &str,
        agents: &[String],
        until_ms: i64,
        before_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<RequestRecord>> {
        self.lease_where(
            "state = 'queued' AND lease_owner IS DISTINCT FROM $1 AND created_at < $3 \
             AND agent_id = ANY($5)",
            &[&owner, &until_ms, &before_ms, &limit_i64(limit), &agents],
        )
        .await
    }

    async fn release_leases(&self, owner: &str) -> StoreResult<u64> {
        let rows = self
            .rows(
                "UPDATE requests SET lease_expires_at = 0 \
                 WHERE lease_owner = $1 AND state IN ('queued', 'running') RETURNING id",
                &[&owner],
            )
            .await?;
        Ok(rows.len() as u64)
    }

    async fn claim_request(
        &self,
        id: &str,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Option<RequestRecord>> {
        let sql = format!(
            "UPDATE requests SET lease_owner = $2, lease_expires_at = $3 \
             WHERE id = $1 AND state IN ('queued', 'running') \
             AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < $4) \
             RETURNING {REQUEST_COLS}"
        );
        match self
            .rows(&sql, &[&id, &owner, &until_ms, &now_ms])
            .await?
            .first()
        {
            Some(r) => Ok(Some(request_from(r)?)),
            None => Ok(None),
        }
    }

    async fn lease_of(&self, id: &str) -> StoreResult<Option<(String, i64)>> {
        let rows = self
            .rows(
                "SELECT lease_owner, lease_expires_at FROM requests WHERE id = $1 \
                 AND lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL",
                &[&id],
            )
            .await?;
        match rows.first() {
            Some(r) => Ok(Some((get(r, 0, "requests")?, get(r, 1, "requests")?))),
            None => Ok(None),
        }
    }

    async fn request_cancel(&self, id: &str, reason: &str) -> StoreResult<bool> {
        let rows = self
            .rows(
                "UPDATE requests SET cancel_requested = $2 \
                 WHERE id = $1 AND state IN ('queued', 'running') RETURNING id",
                &[&id, &reason],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn try_lead(
        &self,
        name: &str,
        owner: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let rows = self
            .rows(
                "INSERT INTO leader_leases (name, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, \
                 expires_at = EXCLUDED.expires_at \
                 WHERE leader_leases.owner = EXCLUDED.owner OR leader_leases.expires_at < $4 \
                 RETURNING owner",
                &[&name, &owner, &until_ms, &now_ms],
            )
            .await?;
        Ok(!rows.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PostgresSettings {
        PostgresSettings {
            url: None,
            host: "db.internal".into(),
            port: 6543,
            db: Some("hub".into()),
            user: "app".into(),
            password: Some("s3cret".into()),
            schema: "tenant_1".into(),
            tls: false,
            ca_file: None,
            pool_size: 4,
            timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn separate_settings_build_the_connection() {
        let s = settings();
        let c = client_config(&s).unwrap();
        assert_eq!(c.get_user(), Some("app"));
        assert_eq!(c.get_dbname(), Some("hub"));
        assert_eq!(c.get_ports(), &[6543]);
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(c.get_options(), Some("-c search_path=tenant_1"));
        assert_eq!(c.get_application_name(), Some("a2a-mcp/tenant_1"));
        let loc = location(&c, &s);
        assert_eq!(loc, "postgres://app@db.internal:6543/hub (schema tenant_1)");
        assert!(!loc.contains("s3cret"));
    }

    #[test]
    fn url_wins_and_takes_the_password_setting_when_it_has_none() {
        let s = PostgresSettings {
            url: Some("postgres://u@h:5433/d?options=-c%20statement_timeout%3D5000".into()),
            ..settings()
        };
        let c = client_config(&s).unwrap();
        assert_eq!((c.get_user(), c.get_dbname()), (Some("u"), Some("d")));
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=5000 -c search_path=tenant_1")
        );
        let s = PostgresSettings {
            url: Some("postgres://u:inurl@h/d?sslmode=require".into()),
            ..settings()
        };
        let c = client_config(&s).unwrap();
        assert_eq!(c.get_password(), Some(&b"inurl"[..]));
        assert!(wants_tls(&s, &c), "sslmode=require turns TLS on");
        assert!(location(&c, &s).ends_with("(schema tenant_1, TLS)"));
    }

    #[test]
    fn driver_errors_are_classified() {
        // No SQLSTATE (I/O, closed): the database is away.
        let closed = pool_err(PoolError::Closed);
        assert!(matches!(closed, StoreError::Unavailable(_)));
        assert!(matches!(
            pool_err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)),
            StoreError::Unavailable(_)
        ));
    }
}
