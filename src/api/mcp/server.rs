//! The rmcp server handler: one per stdio connection or HTTP session. It finds the caller,
//! lists and runs tools from the table in `mod.rs`, and serves agents as resources.
//!
//! Unknown tool → JSON-RPC `-32602`. Bad arguments and hub errors → a result with
//! `isError: true` whose text names the problem (`code: message`).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use super::{Call, control, declared, dispatch, visible_tools};
use crate::api::{ApiContext, agent_view};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::Principal;

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

    async fn call_tool_inner(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let args = Value::Object(request.arguments.unwrap_or_default());
        let Some(p) = self.principal(&context) else {
            let e = HubError::new(ErrorCode::Unauthenticated, "no authenticated caller");
            count(&name, false);
            return Ok(CallToolResponse::Complete(tool_result(Err(e))));
        };
        let call = Call {
            ctx: &self.ctx,
            p,
            rc: &context,
        };
        let Some(outcome) = dispatch(&call, &name, args).await else {
            return Err(McpError::invalid_params(
                format!("unknown tool {name:?}; tools/list shows the available tools"),
                None,
            ));
        };
        count(&name, outcome.is_ok());
        let result = if name == "agent_control" {
            control::render(outcome)
        } else {
            tool_result(outcome)
        };
        Ok(CallToolResponse::Complete(result))
    }
}

fn count(tool: &str, ok: bool) {
    metrics::MCP_TOOL_CALLS
        .with_label_values(&[tool, if ok { "ok" } else { "error" }])
        .inc();
}

/// A tool's answer: the structured result, or `isError` with `code: message` text.
pub fn tool_result(outcome: HubResult<Value>) -> CallToolResult {
    match outcome {
        Ok(v) => CallToolResult::structured(v),
        Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
            "{}: {}",
            e.code.name(),
            e.message
        ))]),
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
        let tools = match self.principal(&context) {
            Some(p) => visible_tools(&p),
            None => Vec::new(),
        };
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        declared(name)
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
