//! Several replicas on one shared store (Postgres, optionally Redis).
//!
//! Ownership: a request belongs to the replica that wrote it last in an active state — the
//! store leases it to that replica (`lease_owner`, `lease_expires_at`). The replica that
//! accepts an invocation owns it and runs it in its own queue, so the single-process rules
//! (the pump is the only writer of a request's state) hold per request across the cluster.
//!
//! The heartbeat worker, every third of `A2A_LEASE_TTL`:
//! - renews every lease of this replica in one statement, which also returns cancel requests
//!   made on other replicas (the owner cancels its own job);
//! - drops local work whose lease it lost (another replica took it over while this one was
//!   cut off; the store also refuses the stale writes);
//! - takes over requests whose lease ran out (their replica died): queued ones join the local
//!   queue, running ones follow their agent's interrupt policy, as at a restart;
//! - every fifth `A2A_CLUSTER_POLL`, reloads the agent registry when another replica changed it
//!   (at once when Redis announces it).
//!
//! Between heartbeats, every `A2A_CLUSTER_POLL`, an idle replica takes queued requests that
//! wait on busier ones (their lease moves to it; the old owner's start write then fails with
//! a conflict and it drops the job). A replica's id is held by one process at a time through
//! the leader lease `replica-id:<id>`.
//!
//! Streams: events are persisted, then published on the local bus and relayed through Redis to
//! the other replicas' buses; followers on other replicas also re-read the store when idle
//! (`stream.rs`), so a lost relay message, or no Redis at all, only delays delivery.
//!
//! Leaderships (scheduled backups, retention sweeps) go to one replica at a time through
//! expiring leader leases in the store.
//!
//! Parts: `leases` (the heartbeat, takeovers, ownership checks and leaderships, as `Hub`
//! methods) and, with the `redis` feature, `redis` (the pub/sub relay and shared rate-limit
//! counters).

#[cfg(feature = "redis")]
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

mod leases;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// Most requests taken over in one heartbeat.
const TAKEOVER_BATCH: usize = 64;

pub(crate) struct ClusterState {
    pub id: String,
    /// This process's claim on `id` (random per start): two live processes cannot share an id.
    pub instance: String,
    pub ttl: Duration,
    pub poll: Duration,
    /// Wakes the heartbeat early (a cancel request for one of our requests).
    pub wake: Notify,
    /// Wakes the registry sync early (Redis said the agents changed).
    pub agents_changed: Notify,
    #[cfg(feature = "redis")]
    pub redis: Option<Arc<redis::RedisLink>>,
}

/// A replica id: the configured one, else host name, process id and a random suffix.
pub(crate) fn replica_id(configured: Option<&str>) -> String {
    if let Some(id) = configured.filter(|s| !s.trim().is_empty()) {
        return id.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "replica".into());
    let mut r = [0u8; 3];
    let _ = getrandom::fill(&mut r);
    format!("{host}-{}-{}", std::process::id(), hex::encode(r))
}

/// A random token naming this process's hold on its replica id.
pub(crate) fn instance_token() -> String {
    let mut r = [0u8; 8];
    let _ = getrandom::fill(&mut r);
    hex::encode(r)
}

/// The leader lease that holds a replica id for the process using it.
fn identity_lease(id: &str) -> String {
    format!("replica-id:{id}")
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
