//! The Postgres implementation of [`Leases`]: request leases as columns of `requests`
//! (owner, expiry, a cancel asked by another replica) and named leaderships in
//! `leader_leases`, each taken with one conditional statement.

use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::PostgresStore;
use super::connection::limit_i64;
use super::rows::{REQUEST_COLS, get, request_from};
use crate::model::RequestRecord;
use crate::store::{Leases, StoreResult};

impl PostgresStore {
    /// Leases to `$1` until `$2` at most `$4` requests matching `condition`, oldest first,
    /// skipping rows another replica is claiming; returns them in id order.
    pub(super) async fn lease_where(
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
