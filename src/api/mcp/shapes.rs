//! The JSON Schemas of the MCP tools: input schemas from the argument structs, output schemas
//! from the result shapes below.
//!
//! The shapes describe what the handlers return (the shared views in `api/mod.rs`,
//! `hub::request_view`, the policy records' `view`s): the fields every answer carries, with
//! their types; other fields may appear. They are schema types only (serialize contract),
//! not builders. `tests/it/agent_control.rs` checks real results against them.

use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

/// The input schema of a tool: the deserialize contract of its argument type, as an object
/// schema without `title` and `$schema`.
pub fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = rmcp::handler::server::common::schema_for_type::<T>()
        .as_ref()
        .clone();
    schema.remove("title");
    schema.remove("$schema");
    schema.insert("type".into(), json!("object"));
    Arc::new(schema)
}

/// The output schema of a tool: the serialize contract of its result shape.
pub fn output<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = rmcp::handler::server::common::schema_for_output::<T>()
        .as_ref()
        .clone();
    schema.remove("$schema");
    Arc::new(schema)
}

/// A request (invocation) as `invoke_agent`, `handoff`, `cancel` and `get_status` return it.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestShape {
    pub request_id: String,
    pub agent_id: String,
    pub capability: String,
    pub status: RequestState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Option<String>>,
    /// A WebSocket URL to follow the request (null when no stream listener runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_url: Option<Option<String>>,
    /// The result, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// With `wait`: true when the wait ended before the request did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timed_out: Option<bool>,
    /// With `includeEvents`: the stored stream events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Value>>,
}

/// (Schema only: the views write the state as a string.)
#[allow(dead_code)]
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Queued,
    Running,
    Done,
    Error,
    Canceled,
}

/// An agent as `describe_agent` and the admin tools return it.
#[derive(Serialize, JsonSchema)]
pub struct AgentShape {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    /// Each with name and description (and, in detail, inputSchema and outputSchema).
    pub capabilities: Vec<Value>,
}

#[derive(Serialize, JsonSchema)]
pub struct AgentListShape {
    pub agents: Vec<AgentShape>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionShape {
    pub session_id: String,
    pub open: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Option<String>>,
}

#[derive(Serialize, JsonSchema)]
pub struct RemovedShape {
    /// The id of the removed agent.
    pub removed: String,
}

#[derive(Serialize, JsonSchema)]
pub struct StatsShape {
    pub queued: u64,
    pub running: u64,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantShape {
    pub grant_id: String,
    pub agent_id: String,
    pub permission: String,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRequestShape {
    pub permission_request_id: String,
    /// pending, approved or denied.
    pub status: String,
}

#[derive(Serialize, JsonSchema)]
pub struct DecisionShape {
    /// The permission request, decided.
    pub request: Value,
}

#[derive(Serialize, JsonSchema)]
pub struct PermissionsShape {
    pub grants: Vec<Value>,
    pub requests: Vec<Value>,
}

#[derive(Serialize, JsonSchema)]
pub struct NewKeyShape {
    pub id: String,
    /// The secret, shown this once.
    pub key: String,
    pub role: String,
}

#[derive(Serialize, JsonSchema)]
pub struct KeyListShape {
    pub keys: Vec<Value>,
}

#[derive(Serialize, JsonSchema)]
pub struct KeyShape {
    pub id: String,
    pub active: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct AuditShape {
    pub entries: Vec<Value>,
}

#[derive(Serialize, JsonSchema)]
pub struct BackupShape {
    pub path: String,
    pub records: u64,
}

#[derive(Serialize, JsonSchema)]
pub struct BackupListShape {
    pub backups: Vec<Value>,
}

/// `agent_control`'s envelope: `{ok: true, data}`, or `{ok: false, error: {code, message}}`
/// (the original server's shape).
#[derive(Serialize, JsonSchema)]
pub struct EnvelopeShape {
    pub ok: bool,
    /// The action's answer (when `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BTreeMap<String, String>>,
}
