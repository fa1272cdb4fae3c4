//! The audit log: entries written with the operation they record (or on their own), the
//! [`DenialTally`](crate::policy::audit::DenialTally) of refusals flushed by the `denial-audit`
//! worker, and reading the log.

use super::super::Hub;
use crate::error::{HubError, HubResult};
use crate::model::{Principal, now_ms};
use crate::policy::Action;
use crate::policy::audit::{AuditRecord, Denial, Outcome};
use crate::store::codec::{decode, encode};
use crate::store::{Aux, Op};

impl Hub {
    pub(crate) fn audit_op(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> HubResult<Op> {
        let rec = AuditRecord::new(p, action, target, outcome, detail);
        Ok(Op::PutAux {
            table: Aux::Audit,
            key: rec.id.clone(),
            value: encode(&rec)?,
        })
    }

    /// Writes an audit entry on its own (for operations that have no other write).
    pub(crate) async fn audit_now(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) {
        let r = match self.audit_op(p, action, target, outcome, detail) {
            Ok(op) => self
                .inner
                .store
                .write(vec![op])
                .await
                .map_err(HubError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::error!(
                action,
                target,
                "could not write an audit entry: {}",
                e.message
            );
        }
    }

    /// Counts a refused request for the next summary in the audit log (no I/O here).
    pub fn record_denial(&self, d: Denial) {
        self.sec().denials.lock().add(d, now_ms());
    }

    /// Writes the tallied refusals to the audit log (one entry per reason, surface and
    /// caller, with the count) and starts a fresh window.
    pub(crate) async fn flush_denials(&self) {
        let records = self.sec().denials.lock().drain();
        if records.is_empty() {
            return;
        }
        let mut ops = Vec::with_capacity(records.len());
        for rec in &records {
            match encode(rec) {
                Ok(value) => ops.push(Op::PutAux {
                    table: Aux::Audit,
                    key: rec.id.clone(),
                    value,
                }),
                Err(e) => tracing::error!("could not encode an audit entry: {e}"),
            }
        }
        if let Err(e) = self.inner.store.write(ops).await {
            tracing::error!(
                entries = records.len(),
                "could not write the refusal summary to the audit log: {e}"
            );
        }
    }

    /// The `denial-audit` worker: flushes the refusal tally every `A2A_AUDIT_DENIAL_WINDOW`
    /// (and once more when the hub stops).
    pub(crate) fn spawn_denial_audit(&self) {
        let hub = self.clone();
        let stopping = self.inner.stopping.clone();
        let every = self.inner.cfg.audit_denial_window;
        self.worker_update("denial-audit", |_| {});
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                hub.flush_denials().await;
                hub.worker_update("denial-audit", |w| {
                    w.runs += 1;
                    w.last_run = Some(crate::model::rfc3339(now_ms()));
                });
            }
            hub.worker_update("denial-audit", |w| w.state = "stopped");
        });
    }

    /// Audit entries after `after` (an entry id), oldest first.
    pub async fn list_audit(
        &self,
        p: &Principal,
        after: Option<&str>,
        limit: usize,
    ) -> HubResult<Vec<AuditRecord>> {
        self.authorize(p, Action::AuditRead).await?;
        let page = self
            .inner
            .store
            .scan_aux(Aux::Audit, "", after, limit.clamp(1, 1000))
            .await?;
        page.into_iter()
            .map(|(_, v)| decode("audit", &v).map_err(HubError::from))
            .collect()
    }
}
