//! The MCP adapter: hub operations as MCP tools, on stdio and Streamable HTTP.
//!
//! Built on the official SDK (`rmcp`, pinned), which does the dual-era protocol work: the
//! `initialize` handshake of 2025-03-26 … 2025-11-25 and the stateless 2026-07-28 revision
//! (`server/discover`, per-request `_meta`, `resultType`/`ttlMs`/`cacheScope`). This module
//! declares tools and maps each to one hub call. Decisions are in `src/api/MCP.md`.
//!
//! One table, [`TOOLS`], describes every tool: name, the short names `agent_control` also
//! accepts, what a caller needs to see it, input type, output shape, handler, and the handler
//! `agent_control` uses when the original server's arguments differ. Everything else derives
//! from it: `tools/list` (order and role filter), `call_tool` dispatch, the `agent_control`
//! action mapping and its "unknown action" hint. Adding a tool is one argument type, one
//! handler and one entry here.
//!
//! Files: `server.rs` (the rmcp handler: callers, calls, resources), `agents.rs`,
//! `requests.rs` (sessions, invoke, handoff, cancel, status), `permissions.rs`, `admin.rs`
//! (keys, audit, backups), `control.rs` and `compat.rs` (`agent_control`: envelope, the
//! original server's actions and argument names), `descriptor.rs` (agent definitions in every accepted shape), `shapes.rs`
//! (schemas).

mod admin;
mod agents;
mod compat;
mod control;
mod descriptor;
mod permissions;
mod requests;
mod server;
mod shapes;

use std::sync::{Arc, LazyLock};

use futures_util::future::BoxFuture;
use rmcp::RoleServer;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use rmcp::service::RequestContext;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use server::McpServer;

use super::ApiContext;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::Principal;
use crate::policy::Action;
use shapes as s;

/// One tool call: the adapter context, the authenticated caller and rmcp's request context
/// (progress token, peer for notifications, cancellation).
pub struct Call<'a> {
    pub ctx: &'a Arc<ApiContext>,
    pub p: Principal,
    pub rc: &'a RequestContext<RoleServer>,
}

impl Call<'_> {
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.ctx.hub
    }
}

/// A handler as the table holds it: raw JSON arguments in, the JSON result out.
pub type Handler = for<'a> fn(&'a Call<'a>, Value) -> BoxFuture<'a, HubResult<Value>>;

/// What a caller needs for `tools/list` to show a tool (the hub checks every call itself).
#[derive(Clone, Copy)]
pub enum Need {
    Nothing,
    One(Action),
    Either(Action, Action),
    /// The action, or being an agent (agents act on their own grants).
    OrAgent(Action),
}

impl Need {
    pub fn allows(self, p: &Principal) -> bool {
        let can = |a: Action| crate::policy::require(p, a).is_ok();
        match self {
            Need::Nothing => true,
            Need::One(a) => can(a),
            Need::Either(a, b) => can(a) || can(b),
            Need::OrAgent(a) => can(a) || p.agent.is_some(),
        }
    }
}

/// The behaviour hints of a tool (MCP annotations).
#[derive(Clone, Copy)]
pub enum Hints {
    ReadOnly,
    Writes { destructive: bool, idempotent: bool },
}

impl Hints {
    fn annotations(self) -> ToolAnnotations {
        let (read_only, destructive, idempotent) = match self {
            Hints::ReadOnly => (true, false, true),
            Hints::Writes {
                destructive,
                idempotent,
            } => (false, destructive, idempotent),
        };
        ToolAnnotations::new()
            .read_only(read_only)
            .destructive(destructive)
            .idempotent(idempotent)
            .open_world(false)
    }
}

const RO: Hints = Hints::ReadOnly;
const fn rw(destructive: bool, idempotent: bool) -> Hints {
    Hints::Writes {
        destructive,
        idempotent,
    }
}

/// One tool.
pub struct ToolDef {
    pub name: &'static str,
    /// Other action names `agent_control` maps to this tool.
    pub aliases: &'static [&'static str],
    pub description: &'static str,
    pub need: Need,
    pub hints: Hints,
    pub input: fn() -> Arc<JsonObject>,
    pub output: fn() -> Arc<JsonObject>,
    pub handler: Handler,
    /// The handler `agent_control` uses: the original server's argument names and answer.
    /// `None`: the native handler (its answer wrapped in the envelope).
    pub compat: Option<Handler>,
}

/// Parses a tool's arguments into its input type.
pub fn parse<T: DeserializeOwned>(tool: &str, args: Value) -> HubResult<T> {
    serde_json::from_value(args).map_err(|e| {
        HubError::new(
            ErrorCode::InvalidParams,
            format!("invalid arguments for {tool}: {e}"),
        )
    })
}

/// A [`Handler`] from a typed handler `async fn(&Call, Args) -> HubResult<Value>`.
macro_rules! handler {
    ($name:expr, $args:ty, $f:path) => {{
        fn run<'a>(
            c: &'a $crate::api::mcp::Call<'a>,
            v: serde_json::Value,
        ) -> futures_util::future::BoxFuture<'a, $crate::error::HubResult<serde_json::Value>>
        {
            Box::pin(async move { $f(c, $crate::api::mcp::parse::<$args>($name, v)?).await })
        }
        run as $crate::api::mcp::Handler
    }};
}
pub(crate) use handler;

/// One table entry.
macro_rules! tool {
    (
        $name:literal $([$($alias:literal),*])?, $need:expr, $hints:expr,
        $args:ty => $out:ty, $f:path, $desc:expr $(, compat: $compat:expr)? $(,)?
    ) => {
        ToolDef {
            name: $name,
            aliases: &[$($($alias),*)?],
            description: $desc,
            need: $need,
            hints: $hints,
            input: shapes::input::<$args>,
            output: shapes::output::<$out>,
            handler: handler!($name, $args, $f),
            compat: tool!(@compat $($compat)?),
        }
    };
    (@compat) => { None };
    (@compat $c:expr) => { Some($c) };
}

use Action as A;
use Need::{Either, Nothing, One, OrAgent};

/// Every tool, in the order `tools/list` shows them.
pub static TOOLS: &[ToolDef] = &[
    tool!("list_agents" ["list"], One(A::AgentsRead), RO,
        agents::ListAgentsArgs => s::AgentListShape, agents::list_agents,
        "List the agents hosted by this hub with their capabilities.",
        compat: compat::LIST_AGENTS),
    tool!("describe_agent" ["describe", "get_agent"], One(A::AgentsRead), RO,
        agents::AgentIdArgs => s::AgentShape, agents::describe_agent,
        "Describe one agent: its capabilities with their input and output JSON Schemas, and its definition (secret env and header values shown as \"***\"). The answer can be given back to deploy_agent as `agent`."),
    tool!("open_session", One(A::Invoke), rw(false, false),
        requests::OpenSessionArgs => s::SessionShape, requests::open_session,
        "Open a session; requests invoked with its sessionId are grouped in it.",
        compat: compat::OPEN_SESSION),
    tool!("close_session", One(A::Invoke), rw(false, true),
        requests::SessionIdArgs => s::SessionShape, requests::close_session,
        "Close a session; no new requests may join it.",
        compat: compat::CLOSE_SESSION),
    tool!("invoke_agent" ["invoke"], One(A::Invoke), rw(false, false),
        requests::InvokeAgentArgs => s::RequestShape, requests::invoke_agent,
        "Invoke an agent capability. Returns at once with requestId, status and streamUrl (a WebSocket to follow the output); with wait=true waits for the result and streams chunks as progress notifications."),
    tool!("handoff", One(A::Invoke), rw(false, false),
        requests::HandoffToolArgs => s::RequestShape, requests::handoff,
        "Hand work from a request to another agent: a new request in the same session, linked to the parent."),
    tool!("cancel" ["cancel_request"], Either(A::Invoke, A::RequestsCancelAll), rw(true, true),
        requests::CancelArgs => s::RequestShape, requests::cancel,
        "Cancel a queued or running request; a running job is stopped and the request ends canceled.",
        compat: compat::CANCEL),
    tool!("get_status" ["status"], Either(A::Invoke, A::RequestsReadAll), RO,
        requests::GetStatusArgs => s::RequestShape, requests::get_status,
        "Status of a request: state, timestamps, result or error (and its events on request).",
        compat: compat::GET_STATUS),
    tool!("deploy_agent" ["deploy", "register_agent"], One(A::AgentsWrite), rw(false, true),
        agents::DeployAgentArgs => s::AgentShape, agents::deploy_agent,
        "Register an agent at run time (persisted): `agent` is a definition with the shape of a catalog entry (or what describe_agent shows), or `cardUrl` names a remote A2A agent to host (its skills become capabilities; the hub reads the card, public addresses only unless the operator allows a network). Secret values shown as \"***\" by describe_agent keep their stored value when sent back.",
        compat: compat::DEPLOY_AGENT),
    tool!("update_agent" ["update"], One(A::AgentsWrite), rw(false, true),
        agents::UpdateAgentArgs => s::AgentShape, agents::update_agent,
        "Change an agent's definition with a JSON merge patch.",
        compat: compat::UPDATE_AGENT),
    tool!("enable_agent" ["enable"], One(A::AgentsWrite), rw(false, true),
        agents::AgentIdArgs => s::AgentShape, agents::enable_agent,
        "Enable an agent so it accepts invocations.",
        compat: compat::ENABLE_AGENT),
    tool!("disable_agent" ["disable"], One(A::AgentsWrite), rw(false, true),
        agents::AgentIdArgs => s::AgentShape, agents::disable_agent,
        "Disable an agent: it stays registered but refuses new invocations.",
        compat: compat::DISABLE_AGENT),
    tool!("remove_agent" ["remove", "undeploy", "unregister_agent"], One(A::AgentsWrite), rw(true, true),
        agents::AgentIdArgs => s::RemovedShape, agents::remove_agent,
        "Remove an agent (a catalog agent stays removed across restarts).",
        compat: compat::REMOVE_AGENT),
    tool!("get_stats" ["stats"], One(A::Stats), RO,
        agents::NoArgs => s::StatsShape, agents::get_stats,
        "Queue, concurrency and agent statistics of the hub.",
        compat: compat::GET_STATS),
    tool!("grant_permission" ["grant"], OrAgent(A::GrantsWrite), rw(false, false),
        permissions::GrantArgs => s::GrantShape, permissions::grant,
        "Grant an agent a permission such as agent:invoke:billing (operators; agents may pass on delegable grants).",
        compat: compat::GRANT_PERMISSION),
    tool!("request_permission", One(A::PermissionRequest), rw(false, false),
        permissions::RequestPermissionArgs => s::PermissionRequestShape, permissions::request,
        "Ask for a permission for an agent; optionally wait for an operator's decision.",
        compat: compat::REQUEST_PERMISSION),
    tool!("approve_permission" ["approve"], One(A::GrantsWrite), rw(false, false),
        permissions::ApproveArgs => s::DecisionShape, permissions::approve,
        "Approve (creating the grant) or deny a pending permission request.",
        compat: compat::APPROVE_PERMISSION),
    tool!("revoke_permission", One(A::GrantsWrite), rw(true, true),
        permissions::GrantIdArgs => s::GrantShape, permissions::revoke,
        "Revoke a grant; it stops counting at once.",
        compat: compat::REVOKE_PERMISSION),
    tool!("get_permissions" ["permissions"], OrAgent(A::GrantsRead), RO,
        permissions::GetPermissionsArgs => s::PermissionsShape, permissions::get,
        "Grants and permission requests, of one agent or all.",
        compat: compat::GET_PERMISSIONS),
    tool!("create_api_key", One(A::KeysManage), rw(false, false),
        admin::CreateKeyArgs => s::NewKeyShape, admin::create_key,
        "Create an API key with a role; the key is shown once in the answer."),
    tool!("list_api_keys", One(A::KeysManage), RO,
        agents::NoArgs => s::KeyListShape, admin::list_keys,
        "List API keys (ids, roles, labels, expiry; never the secrets)."),
    tool!("revoke_api_key", One(A::KeysManage), rw(true, true),
        admin::KeyIdArgs => s::KeyShape, admin::revoke_key,
        "Revoke an API key by its id; it stops working at once."),
    tool!("get_audit_log" ["audit"], One(A::AuditRead), RO,
        admin::AuditArgs => s::AuditShape, admin::audit_log,
        "Audit log entries (who did what, when, through which door, and the outcome)."),
    tool!("create_backup" ["backup"], One(A::Backup), rw(false, false),
        agents::NoArgs => s::BackupShape, admin::create_backup,
        "Take a consistent snapshot of the hub's store into its backup directory."),
    tool!("list_backups", One(A::Backup), RO,
        admin::ListBackupsArgs => s::BackupListShape, admin::list_backups,
        "List the snapshots in the backup directory (verify=true checks each completely)."),
    tool!("agent_control", Nothing, rw(true, false),
        control::AgentControlArgs => s::EnvelopeShape, control::agent_control,
        "Compatibility entry point of the original A2A MCP server: {action, ...arguments} with the original action and argument names, answered as {ok: true, data} or {ok: false, error: {code, message}}. Actions: the other tools' names, and filter_agents, deploy_batch, discover_tools, get_sharing_agreements."),
];

/// The tool named `name` (exact tool name, not an alias).
pub fn tool_named(name: &str) -> Option<&'static ToolDef> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The tool an `agent_control` action names: a tool name or one of its aliases.
pub fn tool_for_action(action: &str) -> Option<&'static ToolDef> {
    TOOLS
        .iter()
        .filter(|t| t.name != "agent_control")
        .find(|t| t.name == action || t.aliases.contains(&action))
}

/// The MCP declaration of every tool, built once from [`TOOLS`].
static DECLARED: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    TOOLS
        .iter()
        .map(|d| {
            let mut t = Tool::new(d.name, d.description, (d.input)());
            t.output_schema = Some((d.output)());
            t.annotations = Some(d.hints.annotations());
            t
        })
        .collect()
});

/// The tools a caller sees in `tools/list`, in table order.
pub fn visible_tools(p: &Principal) -> Vec<Tool> {
    TOOLS
        .iter()
        .zip(DECLARED.iter())
        .filter(|(d, _)| d.need.allows(p))
        .map(|(_, t)| t.clone())
        .collect()
}

/// The declaration of one tool (rmcp's `get_tool`).
pub fn declared(name: &str) -> Option<Tool> {
    DECLARED.iter().find(|t| t.name == name).cloned()
}

/// Runs the tool `name` for a call; `None` when there is no such tool.
pub async fn dispatch(c: &Call<'_>, name: &str, args: Value) -> Option<HubResult<Value>> {
    let def = tool_named(name)?;
    Some((def.handler)(c, args).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique_and_every_schema_is_an_object() {
        let mut seen = std::collections::HashSet::new();
        for d in TOOLS {
            for n in std::iter::once(&d.name).chain(d.aliases.iter()) {
                assert!(seen.insert(*n), "{n} appears twice in the tool table");
            }
            assert_eq!((d.input)().get("type"), Some(&serde_json::json!("object")));
            assert_eq!(
                (d.output)().get("type"),
                Some(&serde_json::json!("object")),
                "{}",
                d.name
            );
        }
        for n in control::EXTRA_ACTIONS.iter().map(|a| a.name) {
            assert!(seen.insert(n), "{n} is both a tool and an extra action");
        }
        for (n, _) in control::NOT_SUPPORTED {
            assert!(seen.insert(n), "{n} is both supported and not");
        }
    }

    /// The MCP spec schema wants every `properties` entry of a tool schema to be an object
    /// (a bare `true`, which schemars writes for an undocumented `Value`, is refused).
    #[test]
    fn every_property_schema_is_an_object() {
        fn walk(tool: &str, v: &Value) {
            if let Some(Value::Object(props)) = v.get("properties") {
                for (name, p) in props {
                    assert!(p.is_object(), "{tool}: property {name} is {p}");
                    walk(tool, p);
                }
            }
            if let Some(Value::Object(defs)) = v.get("$defs") {
                defs.values().for_each(|d| walk(tool, d));
            }
        }
        for d in TOOLS {
            walk(d.name, &Value::Object((d.input)().as_ref().clone()));
            walk(d.name, &Value::Object((d.output)().as_ref().clone()));
        }
    }

    #[test]
    fn the_unknown_action_hint_names_every_action() {
        let hint = control::unknown_action("nope").message;
        for d in TOOLS.iter().filter(|d| d.name != "agent_control") {
            assert!(hint.contains(d.name), "{} missing from {hint}", d.name);
        }
        for a in control::EXTRA_ACTIONS {
            assert!(hint.contains(a.name), "{} missing from {hint}", a.name);
        }
    }
}
