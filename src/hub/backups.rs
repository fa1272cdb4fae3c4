//! Backups from a running hub: on request (admin API, MCP tools) and on a schedule (named
//! worker `backup-scheduler`). The snapshot itself is `crate::backup`; this module owns the
//! policy: one snapshot at a time, the schedule (due `A2A_BACKUP_INTERVAL` after the newest
//! snapshot in the directory, so restarts do not postpone it), retention after each
//! successful scheduled backup, metrics and the audit entry.

use std::time::{Duration, Instant};

use super::Hub;
use crate::backup::{self, BackupListing, SnapshotInfo};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{Principal, now_ms, rfc3339};
use crate::policy::Action;
use crate::policy::audit::Outcome;

const NAME: &str = "backup-scheduler";

impl Hub {
    /// Takes a snapshot into the configured backup directory.
    pub async fn create_backup(&self, p: &Principal) -> HubResult<SnapshotInfo> {
        self.authorize(p, Action::Backup).await?;
        let r = self.snapshot_now("api").await;
        let (outcome, detail) = match &r {
            Ok(s) => (Outcome::Ok, s.path.display().to_string()),
            Err(e) => (Outcome::Failed, e.message.clone()),
        };
        self.audit_now(p, "backup.create", "", outcome, &detail)
            .await;
        r
    }

    /// Snapshots in the backup directory (`verify`: check each completely).
    pub async fn list_backups(&self, p: &Principal, verify: bool) -> HubResult<Vec<BackupListing>> {
        self.authorize(p, Action::Backup).await?;
        let dir = self.inner.cfg.backup_dir.clone();
        tokio::task::spawn_blocking(move || -> HubResult<Vec<BackupListing>> {
            let list = backup::list(&dir).map_err(HubError::internal)?;
            Ok(list
                .into_iter()
                .map(|item| match item {
                    Ok(s) => BackupListing {
                        path: s.path.clone(),
                        verified: verify.then(|| {
                            backup::verify(&s.path)
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        }),
                        snapshot: Ok(s),
                    },
                    Err((path, err)) => BackupListing {
                        path,
                        snapshot: Err(err),
                        verified: None,
                    },
                })
                .collect())
        })
        .await
        .map_err(HubError::internal)?
    }

    async fn snapshot_now(&self, trigger: &str) -> HubResult<SnapshotInfo> {
        let _one = self.inner.backup_lock.lock().await;
        let store = self.inner.store.clone();
        let dir = self.inner.cfg.backup_dir.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let schema = store.schema_version();
            backup::create(&store, schema, &dir, now_ms(), &mut |_| {})
        })
        .await
        .map_err(HubError::internal)?;
        match result {
            Ok(info) => {
                metrics::BACKUP_LAST_SUCCESS.set(now_ms() / 1000);
                metrics::BACKUP_DURATION.set(started.elapsed().as_secs_f64());
                metrics::BACKUP_SIZE.set(info.size as i64);
                tracing::info!(path = %info.path.display(), bytes = info.size, records = info.manifest.records, trigger, "backup written");
                Ok(info)
            }
            Err(e) => {
                metrics::BACKUP_FAILURES.with_label_values(&[trigger]).inc();
                tracing::error!(trigger, "backup failed: {e}");
                Err(HubError::new(
                    ErrorCode::StoreUnavailable,
                    format!("the backup failed: {e}"),
                ))
            }
        }
    }
}

/// When the next scheduled backup is due, from the newest snapshot on disk.
fn next_due(hub: &Hub, interval: Duration) -> tokio::time::Instant {
    let newest = backup::newest(&hub.inner.cfg.backup_dir)
        .ok()
        .flatten()
        .map(|s| s.manifest.created_at_ms);
    let now = now_ms();
    let wait_ms = match newest {
        Some(t) => (t + interval.as_millis() as i64 - now).max(0) as u64,
        None => 0,
    };
    tokio::time::Instant::now() + Duration::from_millis(wait_ms)
}

pub(super) fn spawn_scheduler(hub: Hub) {
    let Some(interval) = hub.inner.cfg.backup_interval else {
        return;
    };
    hub.worker_update(NAME, |_| {});
    let stopping = hub.inner.stopping.clone();
    tokio::spawn(async move {
        // Seed the age metric from disk so the "no backup in 26 h" alert is right after a restart.
        if let Ok(Some(s)) = backup::newest(&hub.inner.cfg.backup_dir) {
            metrics::BACKUP_LAST_SUCCESS.set(s.manifest.created_at_ms / 1000);
        }
        loop {
            let due = next_due(&hub, interval);
            tokio::select! {
                _ = stopping.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
            // Several replicas: one takes the scheduled snapshot per interval.
            if !hub.lead(NAME, interval * 9 / 10).await {
                tracing::debug!("scheduled backup skipped: another replica takes this one");
                hub.worker_update(NAME, |w| w.state = "idle (another replica backs up)");
                tokio::time::sleep(interval.min(std::time::Duration::from_secs(3600))).await;
                continue;
            }
            hub.worker_update(NAME, |w| w.state = "running");
            let r = hub.snapshot_now("schedule").await;
            if r.is_ok() {
                let dir = hub.inner.cfg.backup_dir.clone();
                let days = hub.inner.cfg.backup_retention_days;
                let pruned =
                    tokio::task::spawn_blocking(move || backup::prune(&dir, days, now_ms(), false))
                        .await;
                match pruned {
                    Ok(Ok(gone)) if !gone.is_empty() => {
                        tracing::info!(deleted = gone.len(), "old snapshots deleted by retention")
                    }
                    Ok(Err(e)) => tracing::error!("retention of snapshots failed: {e}"),
                    _ => {}
                }
            }
            hub.worker_update(NAME, |w| {
                w.state = "idle";
                w.runs += 1;
                w.last_run = Some(rfc3339(now_ms()));
                if let Err(e) = &r {
                    w.errors += 1;
                    w.last_error = Some(e.message.clone());
                }
            });
            if r.is_err() {
                // Do not hammer a failing disk: try again after a pause.
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    _ = tokio::time::sleep(interval.min(Duration::from_secs(600))) => {}
                }
            }
        }
        hub.worker_update(NAME, |w| w.state = "stopped");
    });
}
