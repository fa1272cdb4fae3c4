//! The MCP server: hub operations as MCP tools, on stdio and Streamable HTTP.
//!
//! Built on the official SDK (`rmcp`, pinned), which does the dual-era protocol work: the
//! `initialize` handshake of 2025-03-26 … 2025-11-25 and the stateless 2026-07-28 revision
//! (`server/discover`, per-request `_meta`, `resultType`/`ttlMs`/`cacheScope`). This file only
//! declares tools and maps each to one hub call. Decisions (see `src/api/MCP.md`):
//!
//! - Tool list order is fixed (the order of [`TOOLS`]); schemas come from the argument types.
//! - Unknown tool → JSON-RPC `-32602`. Bad arguments and hub errors → a result with
//!   `isError: true` whose text names the problem (`code: message`).
//! - `invoke_agent`/`handoff` answer at once with `{requestId, status, streamUrl}`; with
//!   `wait: true` they wait (bounded by `timeoutMs` and `A2A_MAX_WAIT`) and, when the client
//!   sent a `progressToken`, every chunk becomes a `notifications/progress` whose `message` is
//!   the chunk text and whose `progress` is the event's `seq` (strictly increasing). Cancelling
//!   such a waiting call (`notifications/cancelled`) cancels the request.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{ApiContext, agent_view, invocation_view, session_view};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::hub::{HandoffArgs, InvokeArgs};
use crate::metrics;
use crate::model::{AgentSpec, EventKind, Principal};

/// Default bound of `wait: true` when the call gives no `timeoutMs`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Tool arguments

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListAgentsArgs {
    /// Include disabled agents (default false).
    #[serde(default, alias = "include_disabled")]
    include_disabled: bool,
    /// Only agents of this category.
    #[serde(default)]
    category: Option<String>,
    /// Only agents with this tag.
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AgentIdArgs {
    /// The agent's id.
    #[serde(alias = "agent_id", alias = "id")]
    agent_id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OpenSessionArgs {
    /// The agent this session is mainly for (optional).
    #[serde(default, alias = "agent_id")]
    agent_id: Option<String>,
    /// Free-form metadata stored with the session.
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionIdArgs {
    #[serde(alias = "session_id")]
    session_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvokeAgentArgs {
    /// The agent to invoke.
    #[serde(alias = "agent_id")]
    agent_id: String,
    /// The capability; may be omitted when the agent has only one.
    #[serde(default)]
    capability: Option<String>,
    /// The capability's input; must match its input schema (see describe_agent).
    #[serde(default)]
    input: Map<String, Value>,
    /// Session the request belongs to (from open_session).
    #[serde(default, alias = "session_id")]
    session_id: Option<String>,
    /// Same key and same arguments return the same request (per caller, IDEMP_TTL_MS).
    #[serde(default, alias = "idempotency_key")]
    idempotency_key: Option<String>,
    /// Wait for the result (streaming chunks as progress notifications when a progressToken is sent).
    #[serde(default)]
    wait: bool,
    /// Upper bound of the wait in milliseconds (default 60000; capped by A2A_MAX_WAIT).
    #[serde(default, alias = "timeout_ms")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HandoffToolArgs {
    /// The request handing work off; the new request joins its session and links to it.
    #[serde(
        alias = "parent_request_id",
        alias = "fromRequestId",
        alias = "requestId"
    )]
    parent_request_id: String,
    /// The agent receiving the work.
    #[serde(alias = "agent_id", alias = "toAgentId", alias = "to_agent_id")]
    agent_id: String,
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    input: Map<String, Value>,
    #[serde(default, alias = "idempotency_key")]
    idempotency_key: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default, alias = "timeout_ms")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelArgs {
    #[serde(alias = "request_id")]
    request_id: String,
    /// Why (stored with the request).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetStatusArgs {
    #[serde(alias = "request_id")]
    request_id: String,
    /// Also return the request's stored events.
    #[serde(default, alias = "include_events")]
    include_events: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeployAgentArgs {
    /// The agent definition (id, name, capabilities with JSON Schemas, executor, ...),
    /// as in a catalog file. Give this or `cardUrl`.
    #[serde(default)]
    agent: Option<Map<String, Value>>,
    /// Instead of `agent`: the URL of a remote A2A agent (its Agent Card, or its base URL).
    /// The hub hosts it as an `a2a` agent whose capabilities are the card's skills.
    #[serde(default, alias = "card_url")]
    card_url: Option<String>,
    /// With `cardUrl`: the id to register it under (default: derived from the card's name).
    #[serde(default)]
    id: Option<String>,
    /// Replace an existing agent with the same id.
    #[serde(default)]
    replace: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateAgentArgs {
    #[serde(alias = "agent_id", alias = "id")]
    agent_id: String,
    /// A JSON merge patch (RFC 7396) applied to the agent's definition.
    changes: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct AgentControlArgs {
    /// One of the tool names (list_agents, describe_agent, open_session, close_session,
    /// invoke_agent, handoff, cancel, get_status, deploy_agent, update_agent, enable_agent,
    /// disable_agent, remove_agent, get_stats) or a short alias (list, describe, invoke,
    /// status, deploy, update, enable, disable, remove, stats).
    action: String,
    /// The action's arguments (they may also be given next to `action`).
    #[serde(default)]
    params: Option<Map<String, Value>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrantArgs {
    /// The agent receiving the permission.
    #[serde(alias = "agent_id")]
    agent_id: String,
    /// e.g. `agent:invoke:billing` (the target may be a glob: `agent:invoke:billing-*`).
    permission: String,
    /// The holder may grant the same permission on.
    #[serde(default)]
    delegable: bool,
    /// How long the grant lasts, e.g. `1h`, `7d` (default: until revoked).
    #[serde(default, alias = "expires_in")]
    expires_in: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RequestPermissionArgs {
    /// The agent that needs the permission (an agent's own process may omit it).
    #[serde(default, alias = "agent_id")]
    agent_id: Option<String>,
    permission: String,
    #[serde(default)]
    reason: String,
    /// Wait for the decision (bounded by timeoutMs, default 60000).
    #[serde(default)]
    wait: bool,
    #[serde(default, alias = "timeout_ms")]
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApproveArgs {
    #[serde(alias = "permission_request_id", alias = "requestId")]
    permission_request_id: String,
    /// false denies the request.
    #[serde(default = "yes")]
    approve: bool,
    #[serde(default)]
    delegable: bool,
    #[serde(default, alias = "expires_in")]
    expires_in: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrantIdArgs {
    #[serde(alias = "grant_id")]
    grant_id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetPermissionsArgs {
    /// Only this agent's grants and requests.
    #[serde(default, alias = "agent_id")]
    agent_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKeyArgs {
    /// admin, operator, invoker or viewer.
    role: String,
    #[serde(default)]
    label: String,
    /// e.g. `30d` (default: no expiry).
    #[serde(default, alias = "expires_in")]
    expires_in: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyIdArgs {
    /// The key's public id (from list_api_keys).
    id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuditArgs {
    /// Entries after this entry id (for paging).
    #[serde(default)]
    after: Option<String>,
    /// At most this many entries (1-1000, default 100).
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListBackupsArgs {
    /// Check each snapshot's checksum and records (slower).
    #[serde(default)]
    verify: bool,
}

// ---------------------------------------------------------------------------------------------
// Tool table

fn object_schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(JsonObject::new()),
    }
}

fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = rmcp::handler::server::common::schema_for_type::<T>()
        .as_ref()
        .clone();
    schema.remove("title");
    schema.remove("$schema");
    schema.insert("type".into(), json!("object"));
    Arc::new(schema)
}

fn request_schema() -> Value {
    json!({
        "type": "object",
        "required": ["requestId", "agentId", "capability", "status"],
        "properties": {
            "requestId": {"type": "string"},
            "agentId": {"type": "string"},
            "capability": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "running", "done", "error", "canceled"]},
            "sessionId": {"type": ["string", "null"]},
            "parentId": {"type": ["string", "null"]},
            "streamUrl": {"type": ["string", "null"]},
            "result": {},
            "error": {"type": "string"},
            "timedOut": {"type": "boolean"},
            "events": {"type": "array"}
        }
    })
}

fn agent_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "name", "enabled", "capabilities"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "version": {"type": "string"},
            "description": {"type": "string"},
            "enabled": {"type": "boolean"},
            "capabilities": {"type": "array"}
        }
    })
}

fn session_schema() -> Value {
    json!({
        "type": "object",
        "required": ["sessionId", "open"],
        "properties": {
            "sessionId": {"type": "string"},
            "open": {"type": "boolean"},
            "agentId": {"type": ["string", "null"]},
            "createdAt": {"type": "string"},
            "closedAt": {"type": ["string", "null"]}
        }
    })
}

fn tool(
    name: &'static str,
    description: &'static str,
    input: Arc<JsonObject>,
    output: Value,
    annotations: ToolAnnotations,
) -> Tool {
    let mut t = Tool::new(name, description, input);
    t.output_schema = Some(object_schema(output));
    t.annotations = Some(annotations);
    t
}

fn ro() -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(true)
        .destructive(false)
        .idempotent(true)
        .open_world(false)
}

fn rw(destructive: bool, idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::new()
        .read_only(false)
        .destructive(destructive)
        .idempotent(idempotent)
        .open_world(false)
}

/// Every tool, in the order `tools/list` shows them.
pub static TOOLS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    vec![
        tool(
            "list_agents",
            "List the agents hosted by this hub with their capabilities.",
            input_schema::<ListAgentsArgs>(),
            json!({"type": "object", "required": ["agents"], "properties": {"agents": {"type": "array", "items": agent_schema()}}}),
            ro(),
        ),
        tool(
            "describe_agent",
            "Describe one agent: its capabilities with their input and output JSON Schemas, and its definition (secret env and header values shown as \"***\").",
            input_schema::<AgentIdArgs>(),
            agent_schema(),
            ro(),
        ),
        tool(
            "open_session",
            "Open a session; requests invoked with its sessionId are grouped in it.",
            input_schema::<OpenSessionArgs>(),
            session_schema(),
            rw(false, false),
        ),
        tool(
            "close_session",
            "Close a session; no new requests may join it.",
            input_schema::<SessionIdArgs>(),
            session_schema(),
            rw(false, true),
        ),
        tool(
            "invoke_agent",
            "Invoke an agent capability. Returns at once with requestId, status and streamUrl (a WebSocket to follow the output); with wait=true waits for the result and streams chunks as progress notifications.",
            input_schema::<InvokeAgentArgs>(),
            request_schema(),
            rw(false, false),
        ),
        tool(
            "handoff",
            "Hand work from a request to another agent: a new request in the same session, linked to the parent.",
            input_schema::<HandoffToolArgs>(),
            request_schema(),
            rw(false, false),
        ),
        tool(
            "cancel",
            "Cancel a queued or running request; a running job is stopped and the request ends canceled.",
            input_schema::<CancelArgs>(),
            request_schema(),
            rw(true, true),
        ),
        tool(
            "get_status",
            "Status of a request: state, timestamps, result or error (and its events on request).",
            input_schema::<GetStatusArgs>(),
            request_schema(),
            ro(),
        ),
        tool(
            "deploy_agent",
            "Register an agent at run time (persisted): `agent` is a definition with the shape of a catalog entry, or `cardUrl` names a remote A2A agent to host (its skills become capabilities; the hub reads the card, public addresses only unless the operator allows a network). Secret values shown as \"***\" by describe_agent keep their stored value when sent back.",
            input_schema::<DeployAgentArgs>(),
            agent_schema(),
            rw(false, true),
        ),
        tool(
            "update_agent",
            "Change an agent's definition with a JSON merge patch.",
            input_schema::<UpdateAgentArgs>(),
            agent_schema(),
            rw(false, true),
        ),
        tool(
            "enable_agent",
            "Enable an agent so it accepts invocations.",
            input_schema::<AgentIdArgs>(),
            agent_schema(),
            rw(false, true),
        ),
        tool(
            "disable_agent",
            "Disable an agent: it stays registered but refuses new invocations.",
            input_schema::<AgentIdArgs>(),
            agent_schema(),
            rw(false, true),
        ),
        tool(
            "remove_agent",
            "Remove an agent (a catalog agent stays removed across restarts).",
            input_schema::<AgentIdArgs>(),
            json!({"type": "object", "required": ["removed"], "properties": {"removed": {"type": "string"}}}),
            rw(true, true),
        ),
        tool(
            "get_stats",
            "Queue, concurrency and agent statistics of the hub.",
            input_schema::<NoArgs>(),
            json!({"type": "object", "required": ["queued", "running"], "properties": {"queued": {"type": "integer"}, "running": {"type": "integer"}}}),
            ro(),
        ),
        tool(
            "grant_permission",
            "Grant an agent a permission such as agent:invoke:billing (operators; agents may pass on delegable grants).",
            input_schema::<GrantArgs>(),
            json!({"type": "object", "required": ["grantId", "agentId", "permission"]}),
            rw(false, false),
        ),
        tool(
            "request_permission",
            "Ask for a permission for an agent; optionally wait for an operator's decision.",
            input_schema::<RequestPermissionArgs>(),
            json!({"type": "object", "required": ["permissionRequestId", "status"]}),
            rw(false, false),
        ),
        tool(
            "approve_permission",
            "Approve (creating the grant) or deny a pending permission request.",
            input_schema::<ApproveArgs>(),
            json!({"type": "object", "required": ["request"]}),
            rw(false, false),
        ),
        tool(
            "revoke_permission",
            "Revoke a grant; it stops counting at once.",
            input_schema::<GrantIdArgs>(),
            json!({"type": "object", "required": ["grantId"]}),
            rw(true, true),
        ),
        tool(
            "get_permissions",
            "Grants and permission requests, of one agent or all.",
            input_schema::<GetPermissionsArgs>(),
            json!({"type": "object", "required": ["grants", "requests"]}),
            ro(),
        ),
        tool(
            "create_api_key",
            "Create an API key with a role; the key is shown once in the answer.",
            input_schema::<CreateKeyArgs>(),
            json!({"type": "object", "required": ["id", "key", "role"]}),
            rw(false, false),
        ),
        tool(
            "list_api_keys",
            "List API keys (ids, roles, labels, expiry; never the secrets).",
            input_schema::<NoArgs>(),
            json!({"type": "object", "required": ["keys"]}),
            ro(),
        ),
        tool(
            "revoke_api_key",
            "Revoke an API key by its id; it stops working at once.",
            input_schema::<KeyIdArgs>(),
            json!({"type": "object", "required": ["id", "active"]}),
            rw(true, true),
        ),
        tool(
            "get_audit_log",
            "Audit log entries (who did what, when, through which door, and the outcome).",
            input_schema::<AuditArgs>(),
            json!({"type": "object", "required": ["entries"]}),
            ro(),
        ),
        tool(
            "create_backup",
            "Take a consistent snapshot of the hub's store into its backup directory.",
            input_schema::<NoArgs>(),
            json!({"type": "object", "required": ["path", "records"]}),
            rw(false, false),
        ),
        tool(
            "list_backups",
            "List the snapshots in the backup directory (verify=true checks each completely).",
            input_schema::<ListBackupsArgs>(),
            json!({"type": "object", "required": ["backups"]}),
            ro(),
        ),
        tool(
            "agent_control",
            "Compatibility entry point of the original server: {action, ...arguments} dispatched to the tool of that name.",
            input_schema::<AgentControlArgs>(),
            json!({"type": "object"}),
            rw(true, false),
        ),
    ]
});

// ---------------------------------------------------------------------------------------------
// Server

/// One MCP connection (stdio) or HTTP session.
#[derive(Clone)]
pub struct McpServer {
    ctx: Arc<ApiContext>,
    /// The caller on stdio (fixed for the process); `None` on HTTP.
    stdio_principal: Option<Principal>,
}

impl McpServer {
    pub fn stdio(ctx: Arc<ApiContext>, principal: Principal) -> Self {
        Self {
            ctx,
            stdio_principal: Some(principal),
        }
    }

    pub fn http(ctx: Arc<ApiContext>) -> Self {
        Self {
            ctx,
            stdio_principal: None,
        }
    }

    /// The caller: the stdio user, or the principal the listener authenticated for this HTTP
    /// request (carried in the request parts rmcp hands over).
    fn principal(&self, context: &RequestContext<RoleServer>) -> Option<Principal> {
        match &self.stdio_principal {
            Some(p) => Some(p.clone()),
            None => context
                .extensions
                .get::<http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .cloned(),
        }
    }

    async fn dispatch(
        &self,
        name: &str,
        args: Value,
        context: &RequestContext<RoleServer>,
    ) -> Option<HubResult<Value>> {
        let Some(p) = self.principal(context) else {
            return Some(Err(HubError::new(
                ErrorCode::Unauthenticated,
                "no authenticated caller",
            )));
        };
        let hub = &self.ctx.hub;
        Some(match name {
            "list_agents" => match parse::<ListAgentsArgs>(name, args) {
                Ok(a) => hub.visible_agents(&p, a.include_disabled).await.map(|all| {
                    let agents: Vec<Value> = all
                        .iter()
                        .filter(|x| a.category.as_ref().is_none_or(|c| &x.spec.category == c))
                        .filter(|x| a.tag.as_ref().is_none_or(|t| x.spec.tags.contains(t)))
                        .map(|x| agent_view(x, false))
                        .collect();
                    json!({ "agents": agents })
                }),
                Err(e) => Err(e),
            },
            "describe_agent" => match parse::<AgentIdArgs>(name, args) {
                Ok(a) => hub
                    .describe_agent(&p, &a.agent_id)
                    .await
                    .map(|x| agent_view(&x, true)),
                Err(e) => Err(e),
            },
            "open_session" => match parse::<OpenSessionArgs>(name, args) {
                Ok(a) => hub
                    .open_session(
                        &p,
                        a.agent_id,
                        Value::Object(a.metadata.unwrap_or_default()),
                    )
                    .await
                    .map(|s| session_view(&s)),
                Err(e) => Err(e),
            },
            "close_session" => match parse::<SessionIdArgs>(name, args) {
                Ok(a) => hub
                    .close_session(&p, &a.session_id)
                    .await
                    .map(|s| session_view(&s)),
                Err(e) => Err(e),
            },
            "invoke_agent" => match parse::<InvokeAgentArgs>(name, args) {
                Ok(a) => {
                    let (wait, timeout) = (a.wait, a.timeout_ms);
                    match hub
                        .invoke(
                            &p,
                            InvokeArgs {
                                agent_id: a.agent_id,
                                capability: a.capability,
                                input: Value::Object(a.input),
                                session_id: a.session_id,
                                idempotency_key: a.idempotency_key,
                            },
                        )
                        .await
                    {
                        Ok(rec) => self.answer(&p, rec, wait, timeout, context).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            "handoff" => match parse::<HandoffToolArgs>(name, args) {
                Ok(a) => {
                    let (wait, timeout) = (a.wait, a.timeout_ms);
                    match hub
                        .handoff(
                            &p,
                            HandoffArgs {
                                parent_id: a.parent_request_id,
                                agent_id: a.agent_id,
                                capability: a.capability,
                                input: Value::Object(a.input),
                                idempotency_key: a.idempotency_key,
                            },
                        )
                        .await
                    {
                        Ok(rec) => self.answer(&p, rec, wait, timeout, context).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            "cancel" => match parse::<CancelArgs>(name, args) {
                Ok(a) => hub
                    .cancel(&p, &a.request_id, a.reason)
                    .await
                    .map(|r| invocation_view(&self.ctx, &r)),
                Err(e) => Err(e),
            },
            "get_status" => match parse::<GetStatusArgs>(name, args) {
                Ok(a) => match hub.get_status(&p, &a.request_id).await {
                    Ok(rec) => {
                        let mut v = invocation_view(&self.ctx, &rec);
                        if a.include_events {
                            match collect_events(hub, &p, &rec.id).await {
                                Ok(evs) => {
                                    if let Value::Object(m) = &mut v {
                                        m.insert("events".into(), Value::Array(evs));
                                    }
                                    Ok(v)
                                }
                                Err(e) => Err(e),
                            }
                        } else {
                            Ok(v)
                        }
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            "deploy_agent" => match parse::<DeployAgentArgs>(name, args) {
                Ok(DeployAgentArgs {
                    agent: None,
                    card_url: Some(url),
                    id,
                    replace,
                }) => hub
                    .import_agent_card(&p, &url, id.as_deref(), replace)
                    .await
                    .map(|x| agent_view(&x, true)),
                Ok(DeployAgentArgs {
                    agent: Some(agent),
                    card_url: None,
                    id: None,
                    replace,
                }) => match serde_json::from_value::<AgentSpec>(Value::Object(agent)) {
                    Ok(spec) => hub
                        .deploy_agent(&p, spec, replace)
                        .await
                        .map(|x| agent_view(&x, true)),
                    Err(e) => Err(HubError::new(
                        ErrorCode::InvalidParams,
                        format!("`agent` is not a valid agent definition: {e}"),
                    )),
                },
                Ok(_) => Err(HubError::new(
                    ErrorCode::InvalidParams,
                    "give either `agent` (a definition) or `cardUrl` (a remote A2A agent, optionally with `id`)",
                )),
                Err(e) => Err(e),
            },
            "update_agent" => match parse::<UpdateAgentArgs>(name, args) {
                Ok(a) => hub
                    .update_agent(&p, &a.agent_id, &Value::Object(a.changes))
                    .await
                    .map(|x| agent_view(&x, true)),
                Err(e) => Err(e),
            },
            "enable_agent" | "disable_agent" => match parse::<AgentIdArgs>(name, args) {
                Ok(a) => hub
                    .set_agent_enabled(&p, &a.agent_id, name == "enable_agent")
                    .await
                    .map(|x| agent_view(&x, true)),
                Err(e) => Err(e),
            },
            "remove_agent" => match parse::<AgentIdArgs>(name, args) {
                Ok(a) => hub
                    .remove_agent(&p, &a.agent_id)
                    .await
                    .map(|()| json!({ "removed": a.agent_id })),
                Err(e) => Err(e),
            },
            "get_stats" => match parse::<NoArgs>(name, args) {
                Ok(_) => match hub.get_stats(&p).await {
                    Ok(st) => serde_json::to_value(st).map_err(HubError::internal),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            "grant_permission" => match parse::<GrantArgs>(name, args) {
                Ok(a) => match super::duration_param("expiresIn", &a.expires_in) {
                    Ok(exp) => hub
                        .grant_permission(&p, &a.agent_id, &a.permission, a.delegable, exp)
                        .await
                        .map(|g| g.view(crate::model::now_ms())),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            "request_permission" => match parse::<RequestPermissionArgs>(name, args) {
                Ok(a) => {
                    let wait = a
                        .wait
                        .then(|| Duration::from_millis(a.timeout_ms.unwrap_or(60_000)));
                    hub.request_permission(
                        &p,
                        a.agent_id.as_deref(),
                        &a.permission,
                        &a.reason,
                        wait,
                    )
                    .await
                    .map(|r| r.view())
                }
                Err(e) => Err(e),
            },
            "approve_permission" => match parse::<ApproveArgs>(name, args) {
                Ok(a) => match super::duration_param("expiresIn", &a.expires_in) {
                    Ok(exp) => hub
                        .decide_permission(
                            &p,
                            &a.permission_request_id,
                            a.approve,
                            a.delegable,
                            exp,
                        )
                        .await
                        .map(|(r, g)| {
                            json!({
                                "request": r.view(),
                                "grant": g.map(|g| g.view(crate::model::now_ms())),
                            })
                        }),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            },
            "revoke_permission" => match parse::<GrantIdArgs>(name, args) {
                Ok(a) => hub
                    .revoke_permission(&p, &a.grant_id)
                    .await
                    .map(|g| g.view(crate::model::now_ms())),
                Err(e) => Err(e),
            },
            "get_permissions" => match parse::<GetPermissionsArgs>(name, args) {
                Ok(a) => hub
                    .get_permissions(&p, a.agent_id.as_deref())
                    .await
                    .map(|perms| {
                        let now = crate::model::now_ms();
                        json!({
                            "grants": perms.grants.iter().map(|g| g.view(now)).collect::<Vec<_>>(),
                            "requests": perms.requests.iter().map(|r| r.view()).collect::<Vec<_>>(),
                        })
                    }),
                Err(e) => Err(e),
            },
            "create_api_key" => match parse::<CreateKeyArgs>(name, args) {
                Ok(a) => match (a.role.parse::<crate::model::Role>(), super::duration_param("expiresIn", &a.expires_in)) {
                    (Ok(role), Ok(exp)) => hub
                        .create_key(&p, role, &a.label, exp)
                        .await
                        .map(|(token, rec)| {
                            let mut v = rec.view(crate::model::now_ms());
                            if let Value::Object(m) = &mut v {
                                m.insert("key".into(), Value::String(token));
                            }
                            v
                        }),
                    (Err(e), _) => Err(HubError::new(ErrorCode::InvalidParams, e)),
                    (_, Err(e)) => Err(e),
                },
                Err(e) => Err(e),
            },
            "list_api_keys" => match parse::<NoArgs>(name, args) {
                Ok(_) => hub.list_keys(&p).await.map(|keys| {
                    let now = crate::model::now_ms();
                    json!({ "keys": keys.iter().map(|k| k.view(now)).collect::<Vec<_>>() })
                }),
                Err(e) => Err(e),
            },
            "revoke_api_key" => match parse::<KeyIdArgs>(name, args) {
                Ok(a) => hub
                    .revoke_key(&p, &a.id)
                    .await
                    .map(|k| k.view(crate::model::now_ms())),
                Err(e) => Err(e),
            },
            "create_backup" => match parse::<NoArgs>(name, args) {
                Ok(_) => hub
                    .create_backup(&p)
                    .await
                    .map(|s| super::views::to_json(&super::views::BackupView::from(&s))),
                Err(e) => Err(e),
            },
            "list_backups" => match parse::<ListBackupsArgs>(name, args) {
                Ok(a) => hub
                    .list_backups(&p, a.verify)
                    .await
                    .map(|b| json!({ "backups": b.iter().map(super::views::BackupView::from).collect::<Vec<_>>() })),
                Err(e) => Err(e),
            },
            "get_audit_log" => match parse::<AuditArgs>(name, args) {
                Ok(a) => hub
                    .list_audit(&p, a.after.as_deref(), a.limit.unwrap_or(100))
                    .await
                    .map(|entries| {
                        json!({ "entries": entries.iter().map(|e| e.view()).collect::<Vec<_>>() })
                    }),
                Err(e) => Err(e),
            },
            _ => return None,
        })
    }

    /// The answer of invoke/handoff: at once, or after waiting with progress notifications.
    async fn answer(
        &self,
        p: &Principal,
        rec: crate::model::RequestRecord,
        wait: bool,
        timeout_ms: Option<u64>,
        context: &RequestContext<RoleServer>,
    ) -> HubResult<Value> {
        if !wait {
            return Ok(invocation_view(&self.ctx, &rec));
        }
        let timeout = timeout_ms.map_or(DEFAULT_WAIT, Duration::from_millis);
        let token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let id = rec.id.clone();
        let waited = tokio::select! {
            r = super::wait_for(&self.ctx.hub, p, &id, timeout, |ev| {
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
            _ = context.ct.cancelled() => {
                // The client gave up on the call: the work it asked for stops too.
                let _ = self.ctx.hub.cancel(p, &id, Some("the MCP call was cancelled by the client".into())).await;
                return Err(HubError::new(ErrorCode::NotCancelable, "cancelled by the client"));
            }
        };
        let (rec, terminal) = waited?;
        let mut v = invocation_view(&self.ctx, &rec);
        if let Value::Object(m) = &mut v {
            m.insert("timedOut".into(), Value::Bool(!terminal));
        }
        Ok(v)
    }
}

fn parse<T: DeserializeOwned>(tool: &str, args: Value) -> HubResult<T> {
    serde_json::from_value(args).map_err(|e| {
        HubError::new(
            ErrorCode::InvalidParams,
            format!("invalid arguments for {tool}: {e}"),
        )
    })
}

/// Events `get_status` returns with `includeEvents` (the log is read in pages up to this).
const MAX_STATUS_EVENTS: usize = 100_000;

/// The events stored for a request now (no waiting for live ones), every page of the log.
async fn collect_events(hub: &crate::hub::Hub, p: &Principal, id: &str) -> HubResult<Vec<Value>> {
    Ok(hub
        .stored_events(p, id, 0, MAX_STATUS_EVENTS)
        .await?
        .iter()
        .map(|e| e.to_json())
        .collect())
}

/// Maps `agent_control` action names (the original server's and short aliases) to tools.
fn control_action(action: &str) -> Option<&'static str> {
    Some(match action {
        "list_agents" | "list" => "list_agents",
        "describe_agent" | "describe" | "get_agent" => "describe_agent",
        "open_session" => "open_session",
        "close_session" => "close_session",
        "invoke_agent" | "invoke" => "invoke_agent",
        "handoff" => "handoff",
        "cancel" | "cancel_request" => "cancel",
        "get_status" | "status" => "get_status",
        "deploy_agent" | "deploy" | "register_agent" => "deploy_agent",
        "update_agent" | "update" => "update_agent",
        "enable_agent" | "enable" => "enable_agent",
        "disable_agent" | "disable" => "disable_agent",
        "remove_agent" | "remove" | "undeploy" | "unregister_agent" => "remove_agent",
        "get_stats" | "stats" => "get_stats",
        "grant_permission" | "grant" => "grant_permission",
        "request_permission" => "request_permission",
        "approve_permission" | "approve" => "approve_permission",
        "revoke_permission" => "revoke_permission",
        "get_permissions" | "permissions" => "get_permissions",
        "create_api_key" => "create_api_key",
        "list_api_keys" => "list_api_keys",
        "revoke_api_key" => "revoke_api_key",
        "get_audit_log" | "audit" => "get_audit_log",
        "create_backup" | "backup" => "create_backup",
        "list_backups" => "list_backups",
        _ => return None,
    })
}

/// Whether `tools/list` shows a tool to this caller (the hub still checks every call).
fn tool_visible(name: &str, p: &Principal) -> bool {
    use crate::policy::{Action, require};
    let can = |a: Action| require(p, a).is_ok();
    match name {
        "list_agents" | "describe_agent" => can(Action::AgentsRead),
        "open_session" | "close_session" | "invoke_agent" | "handoff" => can(Action::Invoke),
        "cancel" => can(Action::Invoke) || can(Action::RequestsCancelAll),
        "get_status" => can(Action::Invoke) || can(Action::RequestsReadAll),
        "deploy_agent" | "update_agent" | "enable_agent" | "disable_agent" | "remove_agent" => {
            can(Action::AgentsWrite)
        }
        "get_stats" => can(Action::Stats),
        "grant_permission" => can(Action::GrantsWrite) || p.agent.is_some(),
        "approve_permission" | "revoke_permission" => can(Action::GrantsWrite),
        "request_permission" => can(Action::PermissionRequest),
        "get_permissions" => can(Action::GrantsRead) || p.agent.is_some(),
        "create_api_key" | "list_api_keys" | "revoke_api_key" => can(Action::KeysManage),
        "get_audit_log" => can(Action::AuditRead),
        "create_backup" | "list_backups" => can(Action::Backup),
        _ => true,
    }
}

fn tool_result(outcome: HubResult<Value>) -> CallToolResult {
    match outcome {
        Ok(v) => CallToolResult::structured(v),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
            "{}: {}",
            e.code.name(),
            e.message
        ))]),
    }
}

impl McpServer {
    fn server_config(&self) -> ServerConfig {
        // Logging is deprecated in 2026-07-28 but legacy clients (and the conformance suite)
        // still call logging/setLevel, so the capability stays declared.
        #[allow(deprecated)]
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_logging()
            .enable_resources()
            .enable_prompts()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("a2a-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "a2a-mcp hosts agents. list_agents shows them, describe_agent gives a capability's input schema, \
                 invoke_agent runs one (wait=true to get the result; streamUrl to follow it over WebSocket), \
                 get_status and cancel manage requests. Agents are also readable as resources (agent://ID).",
            )
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        self.server_config()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let Some(p) = self.principal(&context) else {
            return Ok(ListToolsResult::with_all_items(Vec::new()));
        };
        let tools = TOOLS
            .iter()
            .filter(|t| tool_visible(&t.name, &p))
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        TOOLS.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        // rmcp runs tools on its own tasks: re-enter the caller's trace from the HTTP headers.
        let span = tracing::info_span!("mcp.tool", tool = %request.name);
        if let Some(parts) = context.extensions.get::<http::request::Parts>() {
            crate::telemetry::extract(&span, &parts.headers);
        }
        use tracing::Instrument;
        self.call_tool_inner(request, context)
            .instrument(span)
            .await
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        // Accepted; the hub sends no log notifications over MCP (logs go to the server log).
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let visible = match self.principal(&context) {
            Some(p) => self
                .ctx
                .hub
                .visible_agents(&p, false)
                .await
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let resources = visible
            .iter()
            .map(|a| {
                Resource::new(format!("agent://{}", a.spec.id), a.spec.id.clone())
                    .with_description(a.spec.description.clone())
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let agent = match (self.principal(&context), uri.strip_prefix("agent://")) {
            (Some(p), Some(id)) => self.ctx.hub.describe_agent(&p, id).await.ok(),
            _ => None,
        };
        match agent {
            Some(a) => {
                let text = serde_json::to_string_pretty(&agent_view(&a, true)).unwrap_or_default();
                Ok(ReadResourceResponse::from(ReadResourceResult::new(vec![
                    ResourceContents::text(text, uri).with_mime_type("application/json"),
                ])))
            }
            None => Err(McpError::resource_not_found(
                format!("no resource {uri:?}; resources/list shows agent://ID resources"),
                Some(json!({ "uri": uri })),
            )),
        }
    }
}

impl McpServer {
    async fn call_tool_inner(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let args = Value::Object(request.arguments.unwrap_or_default());
        let outcome = if name == "agent_control" {
            match parse::<AgentControlArgs>(&name, args) {
                Ok(a) => match control_action(&a.action) {
                    Some(tool) => {
                        let params = a.params.unwrap_or(a.rest);
                        self.dispatch(tool, Value::Object(params), &context)
                            .await
                            .unwrap_or_else(|| Err(HubError::internal("unmapped action")))
                    }
                    None => Err(HubError::new(
                        ErrorCode::InvalidParams,
                        format!(
                            "unknown action {:?}; use one of list_agents, describe_agent, open_session, close_session, invoke_agent, handoff, cancel, get_status, deploy_agent, update_agent, enable_agent, disable_agent, remove_agent, get_stats",
                            a.action
                        ),
                    )),
                },
                Err(e) => Err(e),
            }
        } else {
            match self.dispatch(&name, args, &context).await {
                Some(r) => r,
                None => {
                    return Err(McpError::invalid_params(
                        format!("unknown tool {name:?}; tools/list shows the available tools"),
                        None,
                    ));
                }
            }
        };
        metrics::MCP_TOOL_CALLS
            .with_label_values(&[name.as_str(), if outcome.is_ok() { "ok" } else { "error" }])
            .inc();
        Ok(CallToolResponse::Complete(tool_result(outcome)))
    }
}
