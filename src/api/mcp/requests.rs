//! Session and request tools: open and close sessions, invoke, hand off, cancel, status.
//!
//! `invoke_agent`/`handoff` answer at once with `{requestId, status, streamUrl}`; with
//! `wait: true` they wait (bounded by `timeoutMs` and `A2A_MAX_WAIT`) and, when the client
//! sent a `progressToken`, every chunk becomes a `notifications/progress` whose `message` is
//! the chunk text and whose `progress` is the event's `seq` (strictly increasing). Cancelling
//! such a waiting call (`notifications/cancelled`) cancels the request.

use std::time::Duration;

use rmcp::model::ProgressNotificationParam;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::Call;
use crate::api::{invocation_view, session_view};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::hub::{HandoffArgs, InvokeArgs};
use crate::model::{EventKind, RequestRecord};

/// Default bound of `wait: true` when the call gives no `timeoutMs`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Events `get_status` returns with `includeEvents` (the log is read in pages up to this).
const MAX_STATUS_EVENTS: usize = 100_000;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenSessionArgs {
    /// The agent this session is mainly for (optional).
    #[serde(default, alias = "agent_id")]
    pub agent_id: Option<String>,
    /// Free-form metadata stored with the session.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionIdArgs {
    #[serde(alias = "session_id")]
    pub session_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeAgentArgs {
    /// The agent to invoke.
    #[serde(alias = "agent_id")]
    pub agent_id: String,
    /// The capability; may be omitted when the agent has only one.
    #[serde(default)]
    pub capability: Option<String>,
    /// The capability's input; must match its input schema (see describe_agent).
    #[serde(default)]
    pub input: Map<String, Value>,
    /// Session the request belongs to (from open_session).
    #[serde(default, alias = "session_id")]
    pub session_id: Option<String>,
    /// Same key and same arguments return the same request (per caller, IDEMP_TTL_MS).
    #[serde(default, alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
    /// Wait for the result (streaming chunks as progress notifications when a progressToken is sent).
    #[serde(default)]
    pub wait: bool,
    /// Upper bound of the wait in milliseconds (default 60000; capped by A2A_MAX_WAIT).
    #[serde(default, alias = "timeout_ms")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandoffToolArgs {
    /// The request handing work off; the new request joins its session and links to it.
    #[serde(
        alias = "parent_request_id",
        alias = "fromRequestId",
        alias = "requestId"
    )]
    pub parent_request_id: String,
    /// The agent receiving the work.
    #[serde(alias = "agent_id", alias = "toAgentId", alias = "to_agent_id")]
    pub agent_id: String,
    #[serde(default)]
    pub capability: Option<String>,
    /// The input of the new request (the original server called it `payload`).
    #[serde(default, alias = "payload")]
    pub input: Map<String, Value>,
    #[serde(default, alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub wait: bool,
    #[serde(default, alias = "timeout_ms")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelArgs {
    #[serde(alias = "request_id")]
    pub request_id: String,
    /// Why (stored with the request).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetStatusArgs {
    #[serde(alias = "request_id")]
    pub request_id: String,
    /// Also return the request's stored events.
    #[serde(default, alias = "include_events")]
    pub include_events: bool,
}

pub async fn open_session(c: &Call<'_>, a: OpenSessionArgs) -> HubResult<Value> {
    let metadata = Value::Object(a.metadata.unwrap_or_default());
    let s = c.hub().open_session(&c.p, a.agent_id, metadata).await?;
    Ok(session_view(&s))
}

pub async fn close_session(c: &Call<'_>, a: SessionIdArgs) -> HubResult<Value> {
    let s = c.hub().close_session(&c.p, &a.session_id).await?;
    Ok(session_view(&s))
}

pub async fn invoke_agent(c: &Call<'_>, a: InvokeAgentArgs) -> HubResult<Value> {
    let args = InvokeArgs {
        agent_id: a.agent_id,
        capability: a.capability,
        input: Value::Object(a.input),
        session_id: a.session_id,
        idempotency_key: a.idempotency_key,
    };
    let rec = c.hub().invoke(&c.p, args).await?;
    answer(c, rec, a.wait, a.timeout_ms).await
}

pub async fn handoff(c: &Call<'_>, a: HandoffToolArgs) -> HubResult<Value> {
    let args = HandoffArgs {
        parent_id: a.parent_request_id,
        agent_id: a.agent_id,
        capability: a.capability,
        input: Value::Object(a.input),
        idempotency_key: a.idempotency_key,
    };
    let rec = c.hub().handoff(&c.p, args).await?;
    answer(c, rec, a.wait, a.timeout_ms).await
}

pub async fn cancel(c: &Call<'_>, a: CancelArgs) -> HubResult<Value> {
    let r = c.hub().cancel(&c.p, &a.request_id, a.reason).await?;
    Ok(invocation_view(c.ctx, &r))
}

pub async fn get_status(c: &Call<'_>, a: GetStatusArgs) -> HubResult<Value> {
    let rec = c.hub().get_status(&c.p, &a.request_id).await?;
    let mut v = invocation_view(c.ctx, &rec);
    if a.include_events {
        // The events stored now (no waiting for live ones), every page of the log.
        let events: Vec<Value> = c
            .hub()
            .stored_events(&c.p, &rec.id, 0, MAX_STATUS_EVENTS)
            .await?
            .iter()
            .map(|e| e.to_json())
            .collect();
        if let Value::Object(m) = &mut v {
            m.insert("events".into(), Value::Array(events));
        }
    }
    Ok(v)
}

/// The answer of invoke/handoff: at once, or after waiting with progress notifications.
async fn answer(
    c: &Call<'_>,
    rec: RequestRecord,
    wait: bool,
    timeout_ms: Option<u64>,
) -> HubResult<Value> {
    if !wait {
        return Ok(invocation_view(c.ctx, &rec));
    }
    let timeout = timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis);
    let token = c.rc.meta.get_progress_token();
    let peer = c.rc.peer.clone();
    let id = rec.id.clone();
    let waited = tokio::select! {
        r = c.hub().wait(&c.p, &id, timeout, |ev| {
            let token = token.clone();
            let peer = peer.clone();
            async move {
                if let (Some(token), EventKind::Chunk(text)) = (token, &ev.kind) {
                    let content: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                    let message = match content {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let mut param = ProgressNotificationParam::new(token, ev.seq as f64);
                    param.message = Some(message);
                    let _ = peer.notify_progress(param).await;
                }
            }
        }) => r,
        _ = c.rc.ct.cancelled() => {
            // The client gave up on the call: the work it asked for stops too.
            let why = Some("the MCP call was cancelled by the client".into());
            let _ = c.hub().cancel(&c.p, &id, why).await;
            return Err(HubError::new(ErrorCode::NotCancelable, "cancelled by the client"));
        }
    };
    let crate::hub::Waited {
        record: rec,
        finished: terminal,
    } = waited?;
    let mut v = invocation_view(c.ctx, &rec);
    if let Value::Object(m) = &mut v {
        m.insert("timedOut".into(), Value::Bool(!terminal));
    }
    Ok(v)
}
