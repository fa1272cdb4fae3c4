//! Leases: how several replicas share one store (Postgres) without running a request twice.
//!
//! An active request is leased to the replica that runs it; the replica renews its leases,
//! takes over requests whose lease ran out, and hands its work back when it stops. Named
//! leaderships (periodic duties such as the sweeper and scheduled backups, and each replica's
//! id) are leases too. The hub's `cluster` module drives these calls; the store only records
//! who holds what until when.
//!
//! The embedded stores serve one process and keep the defaults below: nothing is shared, so
//! nothing is leased and every leadership is held. Each backend's implementation lives in its
//! own file (`postgres/leases.rs`).

use std::time::Duration;

use async_trait::async_trait;

use super::StoreResult;
use crate::model::RequestRecord;

/// The lease side of a [`Store`](super::Store) (a supertrait of it, so every store handle
/// offers these calls).
#[async_trait]
pub trait Leases: Send + Sync {
    /// True when several processes may use this store at once.
    fn shared(&self) -> bool {
        false
    }

    /// From now on, requests this process writes in an active state are leased to `owner`
    /// for `ttl`, and a write to a request leased to someone else fails.
    fn set_lease_owner(&self, _owner: &str, _ttl: Duration) {}

    /// Extends every lease of `owner` to `until_ms`; returns the active requests it owns, each
    /// with the reason of a cancel another replica asked for.
    async fn renew_leases(
        &self,
        _owner: &str,
        _until_ms: i64,
    ) -> StoreResult<Vec<(String, Option<String>)>> {
        Ok(Vec::new())
    }

    /// Takes over (leases to `owner` until `until_ms`) at most `limit` active requests whose
    /// lease ran out before `now_ms` or that have none; with `own`, also those already leased
    /// to `owner` (a restart under the same replica id). Oldest first.
    async fn claim_expired(
        &self,
        _owner: &str,
        _own: bool,
        _until_ms: i64,
        _now_ms: i64,
        _limit: usize,
    ) -> StoreResult<Vec<RequestRecord>> {
        Ok(Vec::new())
    }

    /// Takes over (leases to `owner` until `until_ms`) at most `limit` queued requests of
    /// other replicas for one of `agents`, created before `before_ms`, oldest first, skipping
    /// rows another replica is claiming: an idle replica helping a busy one. The old owner's
    /// next write of such a request fails (the lease moved), so it is never run twice.
    async fn steal_queued(
        &self,
        _owner: &str,
        _agents: &[String],
        _until_ms: i64,
        _before_ms: i64,
        _limit: usize,
    ) -> StoreResult<Vec<RequestRecord>> {
        Ok(Vec::new())
    }

    /// Lets every lease of `owner` run out now (a replica shutting down hands its leftover
    /// work to the others). Returns how many requests it released.
    async fn release_leases(&self, _owner: &str) -> StoreResult<u64> {
        Ok(0)
    }

    /// Takes over one active request if its lease ran out (or it has none).
    async fn claim_request(
        &self,
        _id: &str,
        _owner: &str,
        _until_ms: i64,
        _now_ms: i64,
    ) -> StoreResult<Option<RequestRecord>> {
        Ok(None)
    }

    /// The lease of a request: (owner, expiry in ms).
    async fn lease_of(&self, _id: &str) -> StoreResult<Option<(String, i64)>> {
        Ok(None)
    }

    /// Asks the owner of an active request to cancel it (seen at its next renewal). False
    /// when the request is not active.
    async fn request_cancel(&self, _id: &str, _reason: &str) -> StoreResult<bool> {
        Ok(false)
    }

    /// Whether `owner` holds, or now takes, the leadership `name` until `until_ms` (a
    /// leadership is free once it expired before `now_ms`). Always true when not shared.
    async fn try_lead(
        &self,
        _name: &str,
        _owner: &str,
        _until_ms: i64,
        _now_ms: i64,
    ) -> StoreResult<bool> {
        Ok(true)
    }
}
