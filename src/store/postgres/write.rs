//! The write side: each [`Op`] as pipelined SQL statements, the bulk-load (`COPY`) targets,
//! and the commit task that merges queued batches into one transaction (group commit),
//! retrying each caller's batch alone after a data error. Also the request listing query.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::future::try_join_all;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{Json, ToSql, Type};

use super::connection::{bounded, count_error, limit_i64, pg_err, pool_err, to_i64};
use super::rows::REQUEST_COLS;
use super::{BACKEND, MAX_BATCH_OPS};
use crate::metrics;
use crate::store::columns::{kind_columns, source_str};
use crate::store::{ListOrder, Op, RequestFilter, StoreError, StoreResult};

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
pub(super) fn t(s: &str) -> Param<'_> {
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
pub(super) fn request_listing(
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
pub(super) struct Writer<'a> {
    owner: &'a str,
    until_ms: i64,
}

/// The statements (index into [`WRITE_SQL`], parameters) that carry out one op.
pub(super) fn op_statements<'a>(
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
pub(super) fn copy_target(stmt: usize) -> Option<(&'static str, &'static [Type])> {
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

pub(super) enum Msg {
    Write(Vec<Op>, oneshot::Sender<StoreResult<()>>),
    Close(oneshot::Sender<()>),
}

/// The commit task: group commit over one connection at a time.
/// This process's identity as a lease owner and the lease time in ms (multi-replica only).
pub(super) type LeaseOwner = Arc<parking_lot::RwLock<Option<(String, i64)>>>;

pub(super) async fn commit_loop(
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
