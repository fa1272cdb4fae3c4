//! What the A2A front door needs from the core besides invoke/cancel/subscribe: the stored
//! messages of a task (its `history`), a non-blocking read of a request's stored events, and
//! importing a remote Agent Card as a hosted `a2a` agent.
//!
//! Task messages live in the auxiliary table `task_messages`, keyed `taskId/NNNNNN`, one
//! versioned record per message (the message kept as JSON text). They are removed with their
//! request by the retention sweeper ([`Hub::a2a_cleanup_ops`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::{AgentEntry, Hub, request_not_found};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Event, Principal, RequestRecord, now_ms};
use crate::store::{Aux, Op, codec};

/// Messages kept per task (history beyond this is not recorded).
const MAX_MESSAGES_PER_TASK: usize = 1000;
/// Events read per page from the store.
const EVENT_PAGE: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredMessage {
    /// The message, A2A 1.0 JSON text.
    json: String,
    ts: i64,
}

fn message_key(task_id: &str, seq: usize) -> String {
    format!("{task_id}/{seq:06}")
}

/// The op that stores the first message of a new task (its history starts with it), in the
/// commit that creates the task: `taskId`, `contextId` (the session, or the task itself) and a
/// missing `role` are filled in from the request.
pub(in crate::hub) fn first_message_op(rec: &RequestRecord, mut message: Value) -> HubResult<Op> {
    let Some(m) = message.as_object_mut() else {
        return Err(HubError::new(
            ErrorCode::InvalidParams,
            "the message must be a JSON object",
        ));
    };
    m.insert("taskId".into(), Value::String(rec.id.clone()));
    let context = rec.session_id.as_deref().unwrap_or(&rec.id);
    m.insert("contextId".into(), Value::String(context.to_string()));
    m.entry("role")
        .or_insert_with(|| Value::String("ROLE_USER".into()));
    let stored = StoredMessage {
        json: message.to_string(),
        ts: now_ms(),
    };
    Ok(Op::PutAux {
        table: Aux::TaskMessages,
        key: message_key(&rec.id, 0),
        value: codec::encode(&stored)?,
    })
}

impl Hub {
    /// Cancelled when shutdown begins. Long-lived A2A streams end with it, so open
    /// connections do not hold up the listener's graceful stop (a running task can be
    /// resubscribed after the restart).
    pub fn shutdown_signal(&self) -> tokio_util::sync::CancellationToken {
        self.inner.stopping.clone()
    }

    /// The stored A2A messages of a task, oldest first.
    pub async fn task_messages(&self, task_id: &str) -> HubResult<Vec<Value>> {
        let rows = self
            .inner
            .store
            .scan_aux(
                Aux::TaskMessages,
                &format!("{task_id}/"),
                None,
                MAX_MESSAGES_PER_TASK,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (_, bytes) in rows {
            let rec: StoredMessage = codec::decode("task_messages", &bytes)?;
            if let Ok(v) = serde_json::from_str(&rec.json) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The events stored for a request right now, with `seq > after`, at most `limit`, in
    /// order. Unlike [`Hub::subscribe`] it never waits for live events.
    pub async fn stored_events(
        &self,
        _principal: &Principal,
        request_id: &str,
        after: u64,
        limit: usize,
    ) -> HubResult<Vec<Event>> {
        if self.inner.store.get_request(request_id).await?.is_none() {
            return Err(request_not_found(request_id));
        }
        let mut out = Vec::new();
        let mut after = after;
        while out.len() < limit {
            let page = self
                .inner
                .store
                .events(request_id, after, EVENT_PAGE.min(limit - out.len()))
                .await?;
            let n = page.len();
            if let Some(last) = page.last() {
                after = last.seq;
            }
            out.extend(page);
            if n < EVENT_PAGE.min(limit) {
                break;
            }
        }
        Ok(out)
    }

    /// Reads the Agent Card at `url` and deploys a hosted `a2a` agent whose capabilities are
    /// the card's skills (id: `id`, or derived from the card's name).
    ///
    /// The caller's role is checked before any network I/O (a caller who may not deploy
    /// agents cannot make the hub fetch anything), and the fetch goes through the egress
    /// policy with same-origin redirects only; errors name the URL and the HTTP status or
    /// the refusal, never the remote's answer.
    pub async fn import_agent_card(
        &self,
        principal: &Principal,
        url: &str,
        id: Option<&str>,
        replace: bool,
    ) -> HubResult<Arc<AgentEntry>> {
        self.authorize(principal, crate::policy::Action::AgentsWrite)
            .await?;
        if let Some(id) = id {
            crate::model::validate_agent_id(id)?;
        }
        let spec = crate::executor::remote_a2a::import_card(url, id, self.inner.cfg.egress.clone())
            .await
            .map_err(|e| HubError::new(ErrorCode::InvalidParams, e))?;
        self.deploy_agent(principal, spec, replace).await
    }

    /// At start: a catalog `a2a` agent whose URL is an internal address the egress policy
    /// refuses would fail every call; say so once, with the setting that allows it. (Catalog
    /// agents get no exemption: one policy covers every outgoing request.)
    pub(in crate::hub) fn warn_refused_catalog_agents(&self) {
        for a in self.inner.registry.all() {
            let crate::model::ExecutorSpec::A2a(spec) = &a.spec.executor else {
                continue;
            };
            if a.source != crate::model::AgentSource::Catalog {
                continue;
            }
            if let Ok(uri) = spec.url.parse::<http::Uri>()
                && let Err(e) = self.inner.cfg.egress.check_url(&uri)
            {
                tracing::warn!(agent = %a.spec.id, "catalog agent cannot be reached: {e}");
            }
        }
    }

    /// Store ops that remove the A2A records of requests being deleted (history, push
    /// configs), for the retention sweeper.
    pub(in crate::hub) async fn a2a_cleanup_ops(
        &self,
        request_ids: &[String],
    ) -> HubResult<Vec<Op>> {
        let mut ops = Vec::new();
        for id in request_ids {
            for table in [Aux::TaskMessages, Aux::PushConfigs] {
                let mut after: Option<String> = None;
                loop {
                    let rows = self
                        .inner
                        .store
                        .scan_aux(table, &format!("{id}/"), after.as_deref(), 500)
                        .await?;
                    let n = rows.len();
                    after = rows.last().map(|(k, _)| k.clone());
                    ops.extend(
                        rows.into_iter()
                            .map(|(key, _)| Op::DeleteAux { table, key }),
                    );
                    if n < 500 {
                        break;
                    }
                }
            }
            self.stop_push_followers(id);
        }
        Ok(ops)
    }
}
