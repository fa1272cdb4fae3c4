//! Export and bulk load: a consistent snapshot streamed from one `REPEATABLE READ`
//! transaction, and binary `COPY` of snapshot records into a fresh schema.

use futures_util::StreamExt;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use super::PostgresStore;
use super::connection::{bounded, count_error, pg_err, pool_err};
use super::rows::{
    AGENT_COLS, EVENT_COLS, IDEM_COLS, REQUEST_COLS, SESSION_COLS, agent_from, aux_from,
    event_from, idem_from, request_from, session_from,
};
use super::write::{copy_target, op_statements};
use crate::store::{Op, Record, StoreError, StoreResult};

/// Turns one row of an exported table into its record.
type RowToRecord = fn(&Row) -> StoreResult<Record>;

impl PostgresStore {
    pub(super) async fn export_records(
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
            let tables: [(String, RowToRecord); 6] = [
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
    pub(super) async fn load_records(&self, records: Vec<Record>) -> StoreResult<()> {
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
}
