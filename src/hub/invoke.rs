//! Accepting invocations: validation, idempotency, admission to the bounded queue, handoffs
//! and cancellation.
//!
//! Idempotency keys are scoped to the caller (hash of principal id and key) and bound to a
//! hash of (agent, capability, canonical input). Same key and same arguments return the same
//! request, also after a restart; same key and other arguments is an error. The key record is
//! committed in the same batch as the request, so one never exists without the other. A
//! refused invocation (queue full, validation error) writes nothing and remembers nothing.

use std::hash::{Hash, Hasher};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::push::NewPushConfig;
use super::{Hub, session_not_found};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{
    IdempotencyRecord, Principal, RequestRecord, RequestState, SessionRecord, new_id, now_ms,
};
use crate::policy::audit::Outcome;
use crate::store::{Op, StoreError};

/// Arguments of [`Hub::invoke`].
#[derive(Debug, Clone, Default)]
pub struct InvokeArgs {
    pub agent_id: String,
    pub capability: Option<String>,
    pub input: Value,
    pub session_id: Option<String>,
    pub idempotency_key: Option<String>,
}

/// Arguments of [`Hub::handoff`].
#[derive(Debug, Clone, Default)]
pub struct HandoffArgs {
    pub parent_id: String,
    pub agent_id: String,
    pub capability: Option<String>,
    pub input: Value,
    pub idempotency_key: Option<String>,
}

/// What an A2A `SendMessage` adds to an invocation: the task's first message, optionally a
/// new context (session) and a push notification config. [`Hub::start_task`] commits all of
/// it with the request in one batch, so a crash leaves either nothing or the whole task.
#[derive(Debug, Clone, Default)]
pub struct TaskStart {
    /// The message (A2A 1.0 JSON object); `taskId`, `contextId` and a missing `role` are
    /// filled in from the request.
    pub message: Value,
    /// Open a new session for the task with this metadata (instead of
    /// [`InvokeArgs::session_id`]).
    pub new_session: Option<Value>,
    /// A push notification config for the task, delivered from its first event.
    pub push: Option<NewPushConfig>,
}

const MAX_IDEMPOTENCY_KEY: usize = 256;

/// JSON with object keys sorted at every level, so equal values hash equally.
fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    write(v, &mut s);
    s
}

fn sha256_hex(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Hub {
    /// Accepts an invocation: returns the request once it is durably recorded and queued.
    pub async fn invoke(
        &self,
        principal: &Principal,
        args: InvokeArgs,
    ) -> HubResult<RequestRecord> {
        self.create_request(principal, args, None, None).await
    }

    /// Accepts an A2A task: the invocation, its first message, its new session (if asked)
    /// and its push config, committed together. A message sent again (same idempotency key
    /// and arguments) finds its task and writes nothing.
    pub async fn start_task(
        &self,
        principal: &Principal,
        args: InvokeArgs,
        task: TaskStart,
    ) -> HubResult<RequestRecord> {
        if task.new_session.is_some() && args.session_id.is_some() {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                "a task joins an existing session or opens a new one, not both",
            ));
        }
        if let Some(push) = &task.push {
            self.validate_push_config(push).await?;
            super::push::refuse_placeholders(push)?;
        }
        self.create_request(principal, args, None, Some(task)).await
    }

    /// Hands work from a request to another agent: a new request in the parent's session,
    /// linked to the parent.
    pub async fn handoff(
        &self,
        principal: &Principal,
        args: HandoffArgs,
    ) -> HubResult<RequestRecord> {
        let parent = self.load_request(&args.parent_id).await?;
        self.authorize_read(principal, &parent).await?;
        self.create_request(
            principal,
            InvokeArgs {
                agent_id: args.agent_id,
                capability: args.capability,
                input: args.input,
                session_id: parent.session_id.clone(),
                idempotency_key: args.idempotency_key,
            },
            Some((parent.id, parent.agent_id)),
            None,
        )
        .await
    }

    /// `parent` is the (request id, agent id) a handoff comes from.
    async fn create_request(
        &self,
        principal: &Principal,
        args: InvokeArgs,
        parent: Option<(String, String)>,
        task: Option<TaskStart>,
    ) -> HubResult<RequestRecord> {
        let result = self
            .create_request_inner(principal, args, parent, task)
            .await;
        if let Err(e) = &result {
            metrics::REQUESTS_REJECTED
                .with_label_values(&[e.code.name()])
                .inc();
        }
        result
    }

    async fn create_request_inner(
        &self,
        principal: &Principal,
        mut args: InvokeArgs,
        parent: Option<(String, String)>,
        mut task: Option<TaskStart>,
    ) -> HubResult<RequestRecord> {
        let acting_agent = parent.as_ref().map(|(_, agent)| agent.as_str());
        self.authorize_invoke(principal, &args.agent_id, acting_agent)
            .await?;
        let parent_id = parent.as_ref().map(|(id, _)| id.clone());
        let agent = self.enabled_agent(&args.agent_id)?;
        let capability = agent
            .resolve_capability(args.capability.as_deref())?
            .name
            .clone();
        agent.validate_input(&capability, &args.input)?;
        agent.executor.check_input(&args.input).map_err(|m| {
            HubError::new(
                ErrorCode::InvalidParams,
                format!("invalid input for {}/{capability}: {m}", agent.spec.id),
            )
        })?;
        let now = now_ms();
        let new_session = task
            .as_mut()
            .and_then(|t| t.new_session.take())
            .map(|metadata| SessionRecord {
                id: new_id(),
                principal: principal.id.clone(),
                agent_id: Some(agent.spec.id.clone()),
                metadata: metadata.to_string(),
                created_at: now,
                closed_at: None,
            });
        if let Some(s) = &new_session {
            args.session_id = Some(s.id.clone());
        }
        if let Some(s) = args.session_id.as_ref().filter(|_| new_session.is_none()) {
            let session = self
                .inner
                .store
                .get_session(s)
                .await?
                .ok_or_else(|| session_not_found(s))?;
            if session.closed_at.is_some() {
                return Err(HubError::new(
                    ErrorCode::SessionClosed,
                    format!("session {s:?} is closed; open a new session"),
                ));
            }
            // A session is joined by its owner (handoffs continue the parent's session).
            if parent.is_none()
                && session.principal != principal.id
                && crate::policy::require(principal, crate::policy::Action::RequestsReadAll)
                    .is_err()
            {
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    format!("session {s:?} belongs to another caller"),
                ));
            }
        }
        let input_text = canonical_json(&args.input);

        // Idempotency: serialise callers of the same scope.
        let idem = match &args.idempotency_key {
            Some(key) => {
                if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                    return Err(HubError::new(
                        ErrorCode::InvalidParams,
                        format!("idempotencyKey must be 1-{MAX_IDEMPOTENCY_KEY} characters"),
                    ));
                }
                let scope = sha256_hex(&[&principal.id, key]);
                let args_hash = sha256_hex(&[&agent.spec.id, &capability, &input_text]);
                Some((key.clone(), scope, args_hash))
            }
            None => None,
        };
        let _idem_guard = match &idem {
            Some((_, scope, _)) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                scope.hash(&mut h);
                let i = (h.finish() as usize) % self.inner.idem_locks.len();
                Some(self.inner.idem_locks[i].lock().await)
            }
            None => None,
        };
        if let Some((_, scope, args_hash)) = &idem
            && let Some(rec) = self.remembered(scope, args_hash, now).await?
        {
            return Ok(rec);
        }

        let rec = RequestRecord {
            id: new_id(),
            agent_id: agent.spec.id.clone(),
            capability,
            input: input_text,
            session_id: args.session_id,
            parent_id,
            idempotency_key: idem.as_ref().map(|(k, _, _)| k.clone()),
            principal: principal.id.clone(),
            state: RequestState::Queued,
            created_at: now,
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
            attempts: 0,
        };
        let action = if rec.parent_id.is_some() {
            "handoff"
        } else {
            "invoke"
        };
        let audit = self.audit_op(
            principal,
            action,
            &rec.id,
            Outcome::Ok,
            &format!("{}/{}", rec.agent_id, rec.capability),
        )?;
        let mut ops = Vec::with_capacity(8);
        if let Some(s) = new_session {
            ops.push(self.audit_op(principal, "sessions.open", &s.id, Outcome::Ok, "")?);
            ops.push(Op::PutSession(s));
        }
        ops.extend([Op::PutRequest(rec.clone()), audit]);
        if let Some((_, scope, args_hash)) = &idem {
            ops.push(Op::ClaimIdempotency {
                record: IdempotencyRecord {
                    scope: scope.clone(),
                    request_id: rec.id.clone(),
                    args_hash: args_hash.clone(),
                    expires_at: now + self.inner.cfg.idempotency_ttl.as_millis() as i64,
                },
                now,
            });
        }
        let mut push_config = None;
        if let Some(t) = task {
            ops.push(super::tasks::history::first_message_op(&rec, t.message)?);
            if let Some(new) = t.push {
                let (cfg, cfg_ops) = self.first_push_config(principal, &rec.id, new)?;
                ops.extend(cfg_ops);
                push_config = Some(cfg);
            }
        }
        // Admission: a slot in the bounded queue, taken before anything is written.
        self.inner.sched.lock().reserve(&principal.id)?;
        if let Err(e) = self.inner.store.write(ops).await {
            self.inner.sched.lock().unreserve(&principal.id);
            // Another replica of a shared store claimed the key first: its request is the
            // answer (nothing of ours was written).
            if let (StoreError::Conflict(_), Some((_, scope, args_hash))) = (&e, &idem)
                && let Some(winner) = self.remembered(scope, args_hash, now).await?
            {
                return Ok(winner);
            }
            return Err(e.into());
        }
        metrics::REQUESTS_CREATED
            .with_label_values(&[&rec.agent_id])
            .inc();
        let traceparent = crate::telemetry::traceparent(&tracing::Span::current());
        tracing::debug!(request_id = %rec.id, agent = %rec.agent_id, capability = %rec.capability,
            key_id = principal.key_id.as_deref().unwrap_or(""), "request accepted");
        self.enqueue(rec.clone(), 1, true, traceparent);
        if let Some(cfg) = push_config {
            self.spawn_follower(cfg);
        }
        Ok(rec)
    }

    /// The request an idempotency scope still remembers: `None` when the key is new (or its
    /// record expired), an error when it was used with other arguments.
    async fn remembered(
        &self,
        scope: &str,
        args_hash: &str,
        now: i64,
    ) -> HubResult<Option<RequestRecord>> {
        let Some(existing) = self.inner.store.get_idempotency(scope).await? else {
            return Ok(None);
        };
        if existing.expires_at <= now {
            return Ok(None);
        }
        if existing.args_hash != args_hash {
            return Err(HubError::new(
                ErrorCode::IdempotencyConflict,
                "this idempotencyKey was already used with different arguments; use a new key for a different invocation",
            ));
        }
        let rec = self.inner.store.get_request(&existing.request_id).await?;
        if rec.is_none() {
            // Its request is gone (deleted, or swept by a retention shorter than the key's
            // time to live): the key is free again.
            self.inner
                .store
                .write(vec![Op::DeleteIdempotency(scope.to_string())])
                .await?;
        }
        Ok(rec)
    }

    /// Cancels a queued or running request. A running job is stopped (its executor dropped,
    /// a process group killed) and the request ends `canceled`. Returns the final record.
    pub async fn cancel(
        &self,
        principal: &Principal,
        id: &str,
        reason: Option<String>,
    ) -> HubResult<RequestRecord> {
        let rec = self.load_request(id).await?;
        self.authorize_modify(principal, &rec, "requests.cancel")
            .await?;
        if rec.state.is_terminal() {
            return Err(HubError::new(
                ErrorCode::NotCancelable,
                format!(
                    "request {id:?} has already finished ({}); nothing to cancel",
                    rec.state.as_str()
                ),
            ));
        }
        let reason = reason.unwrap_or_else(|| format!("canceled by {}", principal.id));
        self.audit_now(principal, "cancel", id, Outcome::Ok, &reason)
            .await;
        match self.cancel_local(id, reason.clone()).await {
            // Queued here, but an idle replica took it in the meantime (our write of the
            // cancel was refused): its new owner cancels it.
            Some(Err(_)) if self.leased_elsewhere(id).await => {
                self.cancel_remote(rec, reason).await
            }
            Some(r) => r,
            // Not ours: on a shared store another replica owns it.
            None if self.cluster().is_some() => self.cancel_remote(rec, reason).await,
            // Not queued and no pump: it finished in the meantime (the queue lock and the
            // running-jobs map change together, so there is no gap in between).
            None => self.load_request(id).await,
        }
    }

    /// Cancels a request queued or running in this process; `None` when it is neither.
    pub(super) async fn cancel_local(
        &self,
        id: &str,
        reason: String,
    ) -> Option<HubResult<RequestRecord>> {
        // Still queued? Then nobody else writes its state: take it out and finish it here.
        let queued = self.inner.sched.lock().remove_queued(id);
        if let Some(job) = queued {
            return Some(
                self.finish_unstarted(job.record, job.next_seq, RequestState::Canceled, reason)
                    .await,
            );
        }
        let control = self.inner.jobs.lock().get(id).cloned()?;
        control.request_cancel(reason);
        Some(
            match tokio::time::timeout(std::time::Duration::from_secs(30), control.finished()).await
            {
                Ok(Some(rec)) => Ok(rec),
                _ => self.load_request(id).await,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let a = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn hashes_are_length_prefixed() {
        assert_ne!(sha256_hex(&["ab", "c"]), sha256_hex(&["a", "bc"]));
    }
}
