//! `agent_control`: the original A2A MCP server's single tool, kept for its clients.
//!
//! `{action, ...arguments}` (or `{action, params: {...}}`) runs the tool the action names
//! (a tool name or one of its aliases in the table of `mod.rs`), using the tool's `compat`
//! handler when the original server's argument names or answer differ (`compat.rs`), or one
//! of [`EXTRA_ACTIONS`], the original actions that have no tool of their own. Answers use the
//! original envelope: `{ok: true, data}`, or `isError: true` with `{ok: false, error: {code,
//! message}}` (the original codes: `ERR_BAD_REQUEST`, `ERR_NOT_FOUND`, …; `reason` carries
//! this hub's code; the text content is `reason: message`, as for the other tools). The
//! original server's actions that did no real work ([`NOT_SUPPORTED`]) answer an error
//! naming what to use instead.

use rmcp::model::{CallToolResult, ContentBlock};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::compat;
use super::{Call, Handler, TOOLS, tool_for_action};
use crate::error::{ErrorCode, ErrorKind, HubError, HubResult};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentControlArgs {
    /// The action: a tool name (list_agents, describe_agent, open_session, close_session,
    /// invoke_agent, handoff, cancel, get_status, deploy_agent, update_agent, enable_agent,
    /// disable_agent, remove_agent, get_stats, the permission, key, audit and backup tools),
    /// one of the original server's actions without a tool of their own (filter_agents,
    /// deploy_batch, discover_tools, get_sharing_agreements), or a short alias (list,
    /// describe, invoke, status, deploy, update, enable, disable, remove, stats, …).
    pub action: String,
    /// The action's arguments (they may also be given next to `action`).
    #[serde(default)]
    pub params: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// An action of the original server without a tool of its own.
pub struct Extra {
    pub name: &'static str,
    pub handler: Handler,
}

/// The original server's actions that have no tool here.
pub static EXTRA_ACTIONS: &[Extra] = &[
    Extra {
        name: "filter_agents",
        handler: compat::FILTER_AGENTS,
    },
    Extra {
        name: "deploy_batch",
        handler: compat::DEPLOY_BATCH,
    },
    Extra {
        name: "discover_tools",
        handler: compat::DISCOVER_TOOLS,
    },
    Extra {
        name: "get_sharing_agreements",
        handler: compat::GET_SHARING_AGREEMENTS,
    },
];

/// The original server's actions that did no real work there, each with what to use here.
pub static NOT_SUPPORTED: &[(&str, &str)] = &[
    (
        "generate_agents",
        "deploy agents with real executors through deploy_batch",
    ),
    (
        "create_enhanced_agent",
        "deploy_agent with a definition (e.g. a process executor)",
    ),
    (
        "create_agent_ecosystem",
        "deploy_batch with the agents' definitions",
    ),
    (
        "list_enhanced_types",
        "list_agents (agents come from the catalog and deploy_agent)",
    ),
    (
        "create_advanced_agent",
        "deploy_agent with a definition (e.g. a process executor)",
    ),
    (
        "create_advanced_ecosystem",
        "deploy_batch with the agents' definitions",
    ),
    (
        "list_advanced_types",
        "list_agents (agents come from the catalog and deploy_agent)",
    ),
    (
        "list_advanced_tools",
        "discover_tools (every capability of every agent)",
    ),
    (
        "list_practical_tools",
        "discover_tools (every capability of every agent)",
    ),
    (
        "execute_practical_tool",
        "invoke_agent on an agent offering the capability",
    ),
    (
        "execute_advanced_tool",
        "invoke_agent on an agent offering the capability",
    ),
    (
        "create_mcp_server",
        "this hub's MCP endpoint (/mcp or stdio): every agent is reachable through invoke_agent",
    ),
    (
        "add_tool_to_agent",
        "update_agent with the new capability in `capabilities`",
    ),
    (
        "share_tool",
        "grant_permission with agent:invoke:<provider agent id>",
    ),
    (
        "connect_to_agent_mcp",
        "invoke_agent or handoff to the other agent",
    ),
    (
        "execute_shared_tool",
        "invoke_agent or handoff (with a grant agent:invoke:<provider>)",
    ),
];

/// The `agent_control` tool: resolves the action and answers in the original envelope.
pub async fn agent_control(c: &Call<'_>, a: AgentControlArgs) -> HubResult<Value> {
    let params = Value::Object(a.params.unwrap_or(a.rest));
    let action = a.action.as_str();
    let handler = if let Some(def) = tool_for_action(action) {
        def.compat.unwrap_or(def.handler)
    } else if let Some(x) = EXTRA_ACTIONS.iter().find(|x| x.name == action) {
        x.handler
    } else if let Some((_, instead)) = NOT_SUPPORTED.iter().find(|(n, _)| *n == action) {
        return Err(HubError::new(
            ErrorCode::InvalidParams,
            format!("action {action:?} is not supported by this hub; use {instead}"),
        ));
    } else {
        return Err(unknown_action(action));
    };
    let data = handler(c, params).await?;
    Ok(json!({ "ok": true, "data": data }))
}

/// The error for an action nobody knows, listing every action there is.
pub fn unknown_action(action: &str) -> HubError {
    let names: Vec<&str> = TOOLS
        .iter()
        .map(|t| t.name)
        .filter(|n| *n != "agent_control")
        .chain(EXTRA_ACTIONS.iter().map(|x| x.name))
        .collect();
    HubError::new(
        ErrorCode::InvalidParams,
        format!("unknown action {action:?}; use one of {}", names.join(", ")),
    )
}

/// `agent_control`'s answer: the envelope as structured content; an error also has
/// `isError` and the `code: message` text every tool error has.
pub fn render(outcome: HubResult<Value>) -> CallToolResult {
    match outcome {
        Ok(v) => CallToolResult::structured(v),
        Err(e) => {
            let envelope = json!({
                "ok": false,
                "error": {
                    "code": original_code(&e),
                    "message": e.message,
                    "reason": e.code.name(),
                },
            });
            let mut r = CallToolResult::error(vec![ContentBlock::text(format!(
                "{}: {}",
                e.code.name(),
                e.message
            ))]);
            r.structured_content = Some(envelope);
            r
        }
    }
}

/// The original server's error code for one of ours.
fn original_code(e: &HubError) -> &'static str {
    let not_supported = NOT_SUPPORTED.iter().any(|(n, _)| {
        e.message
            .starts_with(&format!("action {n:?} is not supported"))
    });
    if not_supported {
        return "ERR_NOT_SUPPORTED";
    }
    match e.code {
        ErrorCode::QueueFull => "ERR_QUEUE_FULL",
        ErrorCode::Unauthenticated => "ERR_UNAUTHENTICATED",
        ErrorCode::RateLimited => "ERR_RATE_LIMITED",
        _ => match e.code.kind() {
            ErrorKind::InvalidRequest => "ERR_BAD_REQUEST",
            ErrorKind::NotFound => "ERR_NOT_FOUND",
            ErrorKind::Auth => "ERR_FORBIDDEN",
            ErrorKind::Conflict => "ERR_CONFLICT",
            ErrorKind::Unavailable => "ERR_UNAVAILABLE",
            ErrorKind::Internal => "ERR_INTERNAL",
        },
    }
}
