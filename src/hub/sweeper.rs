//! The retention sweeper (named worker `retention-sweeper`).
//!
//! Every `sweep_interval` it deletes finished requests (with their events) older than the
//! retention period, and expired idempotency keys. It works in small batches through the
//! normal group-committed write path, so it never holds the writer for long and never blocks
//! invocations.

use std::time::Duration;

use super::Hub;
use crate::metrics;
use crate::model::{now_ms, rfc3339};
use crate::store::Op;

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
        let n = scopes.len();
        store
            .write(scopes.into_iter().map(Op::DeleteIdempotency).collect())
            .await
            .map_err(|e| e.to_string())?;
        metrics::SWEPT
            .with_label_values(&["idempotency_key"])
            .inc_by(n as u64);
        removed += n;
        if n < BATCH {
            break;
        }
    }
    removed += sweep_audit(hub, stopping).await?;
    Ok(removed)
}

/// Audit entries older than `A2A_AUDIT_RETENTION` (keys are time-ordered UUIDv7 ids).
async fn sweep_audit(
    hub: &Hub,
    stopping: &tokio_util::sync::CancellationToken,
) -> Result<usize, String> {
    use crate::policy::audit::AuditRecord;
    use crate::store::Aux;
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
        let n = ops.len();
        if n > 0 {
            store.write(ops).await.map_err(|e| e.to_string())?;
            metrics::SWEPT
                .with_label_values(&["audit"])
                .inc_by(n as u64);
            removed += n;
        }
        if reached_recent || page.len() < BATCH {
            break;
        }
    }
    Ok(removed)
}
