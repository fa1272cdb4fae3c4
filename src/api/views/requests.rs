//! Views of requests (invocations) and their stream events, and the request bodies of
//! invoke, handoff and cancel.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonObject, time};
use crate::model::{Event, EventKind, RequestRecord};

/// A request (one invocation) as every transport shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RequestView {
    pub request_id: String,
    pub agent_id: String,
    pub capability: String,
    /// `queued`, `running`, `done`, `error` or `canceled`.
    pub status: String,
    pub session_id: Option<String>,
    /// The request this one was handed off from.
    pub parent_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub attempts: u32,
    /// The final result (when done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error message (when it failed or was canceled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// WebSocket URL that follows this request (`null` when no stream listener runs).
    pub stream_url: Option<String>,
    /// Present on answers that waited: whether the wait ended before the request did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
}

impl RequestView {
    /// The view of `rec`, with the stream URL a client can follow it at.
    pub fn new(rec: &RequestRecord, stream_url: Option<String>) -> Self {
        let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or(Value::Null);
        RequestView {
            request_id: rec.id.clone(),
            agent_id: rec.agent_id.clone(),
            capability: rec.capability.clone(),
            status: rec.state.as_str().to_string(),
            session_id: rec.session_id.clone(),
            parent_id: rec.parent_id.clone(),
            created_at: time(rec.created_at),
            started_at: rec.started_at.map(time),
            finished_at: rec.finished_at.map(time),
            attempts: rec.attempts,
            result: rec.result.as_deref().map(parse),
            error: rec.error.clone(),
            idempotency_key: rec.idempotency_key.clone(),
            stream_url,
            timed_out: None,
        }
    }

    /// Marks an answer that waited for the request (`timedOut`).
    pub fn waited(mut self, finished: bool) -> Self {
        self.timed_out = Some(!finished);
        self
    }
}

/// `GET /api/v1/requests`: one page, newest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RequestList {
    pub requests: Vec<RequestView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next: Option<String>,
}

/// One stream event (WebSocket frame, SSE `data`): `type` says which of the optional fields
/// is present.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct EventView {
    /// `start`, `chunk`, `final`, `error` or `canceled`.
    #[serde(rename = "type")]
    pub kind: String,
    pub request_id: String,
    /// 1, 2, 3, … per request, without gaps.
    pub seq: u64,
    /// Milliseconds since the epoch.
    pub ts: i64,
    /// A piece of output (`chunk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// The result (`final`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// What failed (`error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why it was canceled (`canceled`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<&Event> for EventView {
    fn from(ev: &Event) -> Self {
        let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or(Value::Null);
        let mut v = EventView {
            kind: ev.kind.type_name().to_string(),
            request_id: ev.request_id.clone(),
            seq: ev.seq,
            ts: ev.ts,
            content: None,
            result: None,
            message: None,
            reason: None,
        };
        match &ev.kind {
            EventKind::Start => {}
            EventKind::Chunk(c) => v.content = Some(parse(c)),
            EventKind::Final(r) => v.result = Some(parse(r)),
            EventKind::Error(m) => v.message = Some(m.clone()),
            EventKind::Canceled(m) => v.reason = Some(m.clone()),
        }
        v
    }
}

/// Body of `POST /api/v1/agents/{id}/invoke`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvokeBody {
    /// Capability to call (default: the agent's only or first capability).
    #[serde(default)]
    pub capability: Option<String>,
    /// The input, checked against the capability's input schema.
    #[serde(default)]
    pub input: JsonObject,
    #[serde(default)]
    pub session_id: Option<String>,
    /// Same key, same request: a retry returns the first request (also the
    /// `Idempotency-Key` header).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Wait (bounded by `timeoutMs` and `A2A_MAX_WAIT`) for the request to end.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait, in milliseconds (default 60000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Body of `POST /api/v1/requests/{id}/handoff`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandoffBody {
    /// The agent that takes over.
    pub agent_id: String,
    #[serde(default)]
    pub capability: Option<String>,
    #[serde(default)]
    pub input: JsonObject,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Body of `POST /api/v1/requests/{id}/cancel` (may be empty).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelBody {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Query of `GET /api/v1/requests`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListRequestsQuery {
    /// Comma-separated states: queued, running, done, error, canceled.
    #[serde(default)]
    pub status: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub agent_id: Option<String>,
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// Query of `GET /api/v1/requests/{id}/events`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    /// Replay events after this `seq` (the `Last-Event-ID` header wins).
    #[serde(default)]
    pub after: Option<String>,
    /// API key, for clients that cannot set headers (stream routes only).
    #[serde(default)]
    pub token: Option<String>,
}
