//! The write side: each [`Op`] as SQL statements in one `BEGIN IMMEDIATE` transaction per
//! merged batch, run by the [`GroupCommitter`](crate::store::group_commit::GroupCommitter)
//! thread; a checkpoint when the store closes.

use rusqlite::{Connection, TransactionBehavior, params};

use super::{io, to_i64};
use crate::store::columns::{kind_columns, source_str};
use crate::store::group_commit::BatchWriter;
use crate::store::{Op, StoreError, StoreResult, idempotency_taken};

pub(super) struct Writer {
    pub(super) conn: Connection,
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
