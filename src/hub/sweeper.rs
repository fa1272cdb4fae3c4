//! The retention sweeper (named worker `retention-sweeper`).
//!
//! Every `sweep_interval` it deletes, older than the retention period (`A2A_RETENTION`):
//! finished requests (with their events), then sessions closed or idle that long that have no
//! request left (their requests finished before the cutoff and were just removed, and none is
//! active), and permission requests decided that long ago (or still pending after that long:
//! nobody will decide them any more). Also expired idempotency keys, and audit entries older
//! than `A2A_AUDIT_RETENTION`. It works in small batches through the normal group-committed
//! write path, so it never holds the writer for long and never blocks invocations.

use std::time::Duration;

use super::Hub;
use crate::metrics;
use crate::model::{now_ms, rfc3339};
use crate::policy::grants::{PermissionRequestRecord, RequestStatus};
use crate::store::{Aux, Op, RequestFilter};

const NAME: &str = "retention-sweeper";
const BATCH: usize = 200;

pub(super) fn spawn(hub: Hub) {
    hub.worker_update(NAME, |_| {});
    let stopping = hub.inner.stopping.clone();
    tokio::spawn(async move {
        let interval = hub.inner.cfg.sweep_interval.max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = stopping.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
            // Several replicas: one sweeps per interval.
            if !hub.lead(NAME, interval * 9 / 10).await {
                continue;
            }
            hub.worker_update(NAME, |w| w.state = "running");
            let result = sweep_once(&hub, &stopping).await;
            hub.worker_update(NAME, |w| {
                w.state = "idle";
                w.runs += 1;
                w.last_run = Some(rfc3339(now_ms()));
                if let Err(e) = &result {
                    w.errors += 1;
                    w.last_error = Some(e.clone());
                }
            });
        }
        hub.worker_update(NAME, |w| w.state = "stopped");
    });
}

/// One pass; returns the number of records removed.
pub(super) async fn sweep_once(
    hub: &Hub,
    stopping: &tokio_util::sync::CancellationToken,
) -> Result<usize, String> {
    let store = &hub.inner.store;
    let cutoff = now_ms() - hub.inner.cfg.retention.as_millis() as i64;
    let mut removed = 0;
    loop {
        if stopping.is_cancelled() {
            break;
        }
        let ids = store
            .finished_before(cutoff, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if ids.is_empty() {
            break;
        }
        let n = ids.len();
        // A2A history and push configs of these requests go with them.
        let mut ops = hub.a2a_cleanup_ops(&ids).await.map_err(|e| e.message)?;
        ops.extend(ids.into_iter().map(Op::DeleteRequest));
        store.write(ops).await.map_err(|e| e.to_string())?;
        metrics::SWEPT
            .with_label_values(&["request"])
            .inc_by(n as u64);
        removed += n;
        if n < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    loop {
        if stopping.is_cancelled() {
            break;
        }
        let scopes = store
            .expired_idempotency(now_ms(), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if scopes.is_empty() {
            break;
        }
        let ops = scopes.into_iter().map(Op::DeleteIdempotency).collect();
        let n = delete_swept(store, ops, "idempotency_key").await?;
        removed += n;
        if n < BATCH {
            break;
        }
    }
    removed += sweep_sessions(hub, stopping, cutoff).await?;
    removed += sweep_permission_requests(hub, stopping, cutoff).await?;
    removed += sweep_audit(hub, stopping).await?;
    Ok(removed)
}

/// Sessions whose last change (close, else creation) is older than `cutoff` and that have no
/// request left. Runs after the request sweep, so a session whose requests all finished
/// before the cutoff has none left; one with an active or a recent request is kept.
async fn sweep_sessions(
    hub: &Hub,
    stopping: &tokio_util::sync::CancellationToken,
    cutoff: i64,
) -> Result<usize, String> {
    let store = &hub.inner.store;
    let mut removed = 0;
    let mut cursor: Option<(i64, String)> = None;
    loop {
        if stopping.is_cancelled() {
            break;
        }
        let page = store
            .sessions_before(
                cutoff,
                cursor.as_ref().map(|(t, id)| (*t, id.as_str())),
                BATCH,
            )
            .await
            .map_err(|e| e.to_string())?;
        let n = page.len();
        cursor = page.last().map(|s| (s.last_change(), s.id.clone()));
        let mut ops = Vec::new();
        for session in page {
            let left = store
                .list_requests(&RequestFilter {
                    session_id: Some(session.id.clone()),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            if left.is_empty() {
                ops.push(Op::DeleteSession(session.id));
            }
        }
        removed += delete_swept(store, ops, "session").await?;
        if n < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(removed)
}

/// Permission requests decided before `cutoff`, and pending ones filed before it.
async fn sweep_permission_requests(
    hub: &Hub,
    stopping: &tokio_util::sync::CancellationToken,
    cutoff: i64,
) -> Result<usize, String> {
    let store = &hub.inner.store;
    let mut removed = 0;
    let mut after: Option<String> = None;
    loop {
        if stopping.is_cancelled() {
            break;
        }
        let page = store
            .scan_aux(Aux::PermissionRequests, "", after.as_deref(), BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let n = page.len();
        after = page.last().map(|(k, _)| k.clone());
        let mut ops = Vec::new();
        for (key, value) in page {
            let old = match crate::store::codec::decode::<PermissionRequestRecord>(
                "permission_requests",
                &value,
            ) {
                Ok(r) => match r.status {
                    RequestStatus::Pending => r.created_at < cutoff,
                    RequestStatus::Approved | RequestStatus::Denied => {
                        r.decided_at.unwrap_or(r.created_at) < cutoff
                    }
                },
                // Unreadable: kept for an operator to look at (the audit sweep deletes, this
                // one must not guess).
                Err(_) => false,
            };
            if old {
                ops.push(Op::DeleteAux {
                    table: Aux::PermissionRequests,
                    key,
                });
            }
        }
        removed += delete_swept(store, ops, "permission_request").await?;
        if n < BATCH {
            break;
        }
        tokio::task::yield_now().await;
    }
    Ok(removed)
}

/// Commits one page of a sweep's deletions and counts them (`a2a_retention_deleted_total{kind}`).
async fn delete_swept(
    store: &crate::store::DynStore,
    ops: Vec<Op>,
    kind: &str,
) -> Result<usize, String> {
    let n = ops.len();
    if n > 0 {
        store.write(ops).await.map_err(|e| e.to_string())?;
        metrics::SWEPT.with_label_values(&[kind]).inc_by(n as u64);
    }
    Ok(n)
}

/// Audit entries older than `A2A_AUDIT_RETENTION` (keys are time-ordered UUIDv7 ids).
async fn sweep_audit(
    hub: &Hub,
    stopping: &tokio_util::sync::CancellationToken,
) -> Result<usize, String> {
    use crate::policy::audit::AuditRecord;
    let store = &hub.inner.store;
    let cutoff = now_ms() - hub.inner.cfg.audit_retention.as_millis() as i64;
    let mut removed = 0;
    loop {
        if stopping.is_cancelled() {
            break;
        }
        let page = store
            .scan_aux(Aux::Audit, "", None, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        let mut ops = Vec::new();
        let mut reached_recent = false;
        for (key, value) in &page {
            match crate::store::codec::decode::<AuditRecord>("audit", value) {
                Ok(rec) if rec.ts >= cutoff => {
                    reached_recent = true;
                    break;
                }
                // Old, or unreadable: either way it goes.
                _ => ops.push(Op::DeleteAux {
                    table: Aux::Audit,
                    key: key.clone(),
                }),
            }
        }
        removed += delete_swept(store, ops, "audit").await?;
        if reached_recent || page.len() < BATCH {
            break;
        }
    }
    Ok(removed)
}
