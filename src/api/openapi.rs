//! The OpenAPI 3.1 document of the public HTTP surface, generated at run time (once) from the
//! REST route table ([`super::rest::ROUTES`]) and the JSON Schemas of the views
//! ([`super::views`], via `schemars`; JSON Schema 2020-12 is the schema dialect of OAS 3.1).
//!
//! Served at `GET /api/v1/openapi.json`. Besides the REST routes it lists, as operations with
//! a description, the endpoints whose bodies are protocols of their own (MCP Streamable HTTP,
//! A2A JSON-RPC and Agent Cards, the WebSocket stream) and the operations port (`/healthz`,
//! `/readyz`, `/metrics`, `/api/agent`). Nothing here is written by hand twice: adding a route
//! to the table adds it here.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::rest::ROUTES;
use super::rest::endpoint::{Access, Body, Content, Route, SchemaFn, error_schema};
use crate::model::Role;
use crate::policy::role_allows;

const SCHEMAS: &str = "/components/schemas";

/// A documented endpoint that is not a REST route: its body is a protocol of its own.
pub struct ExtraOperation {
    pub method: &'static str,
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    /// `true`: served on the operations port (`METRICS_PORT`), not the API port.
    pub ops_port: bool,
    pub public: bool,
    pub summary: &'static str,
    pub description: &'static str,
    /// Success status and media type.
    pub success: (u16, &'static str),
    /// The schema of the success body, where it is JSON the hub defines.
    pub schema: Option<SchemaFn>,
}

const fn extra(
    method: &'static str,
    path: &'static str,
    operation_id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    success: (u16, &'static str),
) -> ExtraOperation {
    ExtraOperation {
        method,
        path,
        operation_id,
        tag,
        ops_port: false,
        public: false,
        summary,
        description,
        success,
        schema: None,
    }
}

const fn on_ops(mut op: ExtraOperation) -> ExtraOperation {
    op.ops_port = true;
    op
}

const fn with_schema(mut op: ExtraOperation, f: SchemaFn) -> ExtraOperation {
    op.schema = Some(f);
    op
}

fn schema<T: schemars::JsonSchema>(g: &mut SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

const fn public(mut op: ExtraOperation) -> ExtraOperation {
    op.public = true;
    op
}

const JSON: &str = "application/json";
const OPS_NOTE: &str = " Served on the operations port (METRICS_PORT, default 3000), not on the API port; with A2A_OPS_TOKEN set, /metrics and /api/agent need it as a bearer token.";

/// The non-REST endpoints, documented as operations.
pub static EXTRA_OPERATIONS: &[ExtraOperation] = &[
    extra(
        "post",
        "/mcp",
        "mcpPost",
        "mcp",
        "MCP Streamable HTTP: one JSON-RPC message",
        "The Model Context Protocol endpoint (revisions 2025-03-26 to 2026-07-28). The body is a JSON-RPC 2.0 message; the answer is JSON or an SSE stream of JSON-RPC messages (Accept: application/json, text/event-stream). The tools and their schemas are listed by tools/list.",
        (200, JSON),
    ),
    extra(
        "get",
        "/mcp",
        "mcpGet",
        "mcp",
        "MCP Streamable HTTP: server-to-client SSE stream of a session",
        "Opens the SSE stream of an MCP session (Mcp-Session-Id header); the events are JSON-RPC messages.",
        (200, "text/event-stream"),
    ),
    extra(
        "delete",
        "/mcp",
        "mcpDelete",
        "mcp",
        "MCP Streamable HTTP: end a session",
        "Ends the MCP session named by the Mcp-Session-Id header.",
        (204, JSON),
    ),
    extra(
        "post",
        "/a2a/{agentId}",
        "a2aAgentRpc",
        "a2a",
        "A2A JSON-RPC of one agent",
        "Agent2Agent protocol (v0.3 and v1.0 method names) for the hosted agent: SendMessage, SendStreamingMessage (answered as SSE of JSON-RPC results), GetTask, CancelTask, task push configurations. The body is a JSON-RPC 2.0 request.",
        (200, JSON),
    ),
    extra(
        "post",
        "/a2a",
        "a2aHubRpc",
        "a2a",
        "A2A JSON-RPC of the hub",
        "The same JSON-RPC methods as /a2a/{agentId}; the target agent is named in the message metadata. The body is a JSON-RPC 2.0 request.",
        (200, JSON),
    ),
    public(extra(
        "get",
        "/.well-known/agent-card.json",
        "hubAgentCard",
        "a2a",
        "The hub's A2A Agent Card",
        "An Agent Card listing every enabled agent as a skill.",
        (200, JSON),
    )),
    public(extra(
        "get",
        "/a2a/{agentId}/.well-known/agent-card.json",
        "agentCard",
        "a2a",
        "One agent's A2A Agent Card",
        "The Agent Card of a hosted agent; its url is the agent's JSON-RPC endpoint.",
        (200, JSON),
    )),
    extra(
        "get",
        "/stream",
        "stream",
        "streams",
        "WebSocket stream of request events",
        "Upgrade to a WebSocket (requestId and after in the query, or subscribe messages). Frames are JSON events like the data of GET /api/v1/requests/{id}/events; stored events are replayed first, then live ones. A key may also be given as token= in the query. Absent when ENABLE_STREAMING=false.",
        (101, JSON),
    ),
    with_schema(
        public(on_ops(extra(
            "get",
            "/healthz",
            "healthz",
            "operations",
            "Liveness: {\"ok\":true,…} while the store answers",
            "503 with the same body and ok=false when the store does not answer.",
            (200, JSON),
        ))),
        schema::<super::views::HealthView>,
    ),
    with_schema(
        public(on_ops(extra(
            "get",
            "/readyz",
            "readyz",
            "operations",
            "Readiness: started and the store answers",
            "503 with the same body until ready.",
            (200, JSON),
        ))),
        schema::<super::views::ReadyView>,
    ),
    on_ops(extra(
        "get",
        "/metrics",
        "metrics",
        "operations",
        "Prometheus metrics (text exposition format)",
        "Every metric has the a2a_ prefix.",
        (200, "text/plain"),
    )),
    on_ops(extra(
        "get",
        "/api/agent",
        "agentStatus",
        "operations",
        "Agent and queue status (action=status) or the agent list (action=agents)",
        "The predecessor's status endpoint: stats, named workers, store counts and memory.",
        (200, JSON),
    )),
];

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// `GET /api/v1/openapi.json`.
pub fn response() -> warp::reply::Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string());
    let mut r = warp::reply::Response::new(text.clone().into());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn generator(serialize: bool) -> SchemaGenerator {
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = SCHEMAS.into();
        s.meta_schema = None;
    });
    if serialize {
        settings.for_serialize().into_generator()
    } else {
        settings.for_deserialize().into_generator()
    }
}

fn build() -> Value {
    // Responses are described as they are written, requests as they are read.
    let mut out = generator(true);
    let mut input = generator(false);
    let error = error_schema(&mut out).to_value();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut request_side = Vec::new();
    for route in ROUTES {
        let (op, inputs) = operation(route, &mut out, &mut input);
        request_side.push((route.path, route.method.as_str().to_lowercase(), inputs));
        paths
            .entry(route.path.to_string())
            .or_default()
            .insert(route.method.as_str().to_lowercase(), Value::Object(op));
    }
    for x in EXTRA_OPERATIONS {
        paths
            .entry(x.path.to_string())
            .or_default()
            .insert(x.method.to_string(), extra_operation(x, &mut out));
    }
    let mut schemas = out.take_definitions(true);
    let mut input_defs = input.take_definitions(true);
    // Query types are documented as their parameters, not as schemas.
    for route in ROUTES {
        if let Some(f) = route.query {
            let mut g = generator(false);
            if let Some(name) = f(&mut g).get("$ref").and_then(Value::as_str) {
                input_defs.remove(name.rsplit('/').next().unwrap_or_default());
            }
        }
    }
    // A type read and written (e.g. the agent definition) can differ in what is required:
    // the read side gets its own name.
    let clashes: Vec<String> = input_defs
        .iter()
        .filter(|(k, v)| schemas.get(*k).is_some_and(|o| o != *v))
        .map(|(k, _)| k.clone())
        .collect();
    for name in &clashes {
        if let Some(v) = input_defs.remove(name) {
            input_defs.insert(format!("{name}Input"), v);
        }
    }
    let rename = |v: &mut Value| {
        for name in &clashes {
            rename_ref(v, name, &format!("{name}Input"));
        }
    };
    for v in input_defs.values_mut() {
        rename(v);
    }
    for (path, method, inputs) in request_side {
        if let Some(Value::Object(op)) = paths.get_mut(path).and_then(|p| p.get_mut(&method)) {
            for (key, mut v) in inputs {
                rename(&mut v);
                op.insert(key, v);
            }
        }
    }
    schemas.extend(input_defs);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "a2a-mcp HTTP API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The public HTTP surface of the a2a-mcp agent hub: JSON REST at /api/v1 (every route is here), and the MCP, A2A and WebSocket endpoints and the operations port, described as operations. The same actions are MCP tools at /mcp. Errors are {\"error\":{\"code\",\"message\"}} with the code's HTTP status. Authentication: an API key as Authorization: Bearer <key> (not needed while the hub has no keys and allows anonymous callers).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": tags(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (a2a_<id>_<secret>) or, on the stream routes, STREAM_TOKEN."},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token", "description": "The same credential as token= in the query; stream routes only (/stream, /api/v1/requests/{id}/events)."},
            },
            "responses": {
                "Error": {
                    "description": "An error from the error registry: code, message and the code's HTTP status",
                    "content": {"application/json": {"schema": error}},
                },
            },
        },
    })
}

fn tags() -> Value {
    let tags = [
        ("agents", "Agents: list, deploy, change, remove"),
        (
            "requests",
            "Invocations, their status, cancel, handoff and event streams",
        ),
        ("sessions", "Sessions grouping requests"),
        ("permissions", "Permission grants between agents"),
        ("admin", "API keys, audit log, backups, statistics"),
        ("meta", "This document"),
        ("mcp", "Model Context Protocol (Streamable HTTP)"),
        ("a2a", "Agent2Agent protocol"),
        ("streams", "WebSocket event streams"),
        ("operations", "Health, readiness, metrics (operations port)"),
    ];
    tags.iter()
        .map(|(name, d)| json!({"name": name, "description": d}))
        .collect()
}

/// One REST operation, and its request-side parts (parameters, body) apart so that their
/// schema names can be fixed after all types are known.
fn operation(
    route: &Route,
    out: &mut SchemaGenerator,
    input: &mut SchemaGenerator,
) -> (Map<String, Value>, Vec<(String, Value)>) {
    let mut op = Map::new();
    op.insert("operationId".into(), json!(route.operation_id));
    op.insert("summary".into(), json!(route.summary));
    op.insert("tags".into(), json!([route.tag]));
    let (who, roles) = access_text(route.access);
    op.insert("description".into(), json!(who));
    op.insert("x-roles".into(), json!(roles));
    if matches!(route.access, Access::Public) {
        op.insert("security".into(), json!([]));
    } else if route.path.ends_with("/events") {
        op.insert(
            "security".into(),
            json!([{"bearer": []}, {"queryToken": []}]),
        );
    }
    let mut responses = Map::new();
    for (status, content) in route.responses {
        let (mime, f) = match content {
            Content::Json(f) => ("application/json", f),
            Content::EventStream(f) => ("text/event-stream", f),
        };
        responses.insert(
            status.to_string(),
            json!({
                "description": status_text(*status),
                "content": {mime: {"schema": f(out).to_value()}},
            }),
        );
    }
    for class in ["4XX", "5XX"] {
        responses.insert(
            class.into(),
            json!({"$ref": "#/components/responses/Error"}),
        );
    }
    op.insert("responses".into(), Value::Object(responses));
    let mut inputs = vec![("parameters".to_string(), parameters(route, input))];
    let body = match route.body {
        Body::None => None,
        Body::Optional(f) => Some((f, false)),
        Body::Required(f) => Some((f, true)),
    };
    if let Some((f, required)) = body {
        let schema = f(input).to_value();
        inputs.push((
            "requestBody".into(),
            json!({"required": required, "content": {"application/json": {"schema": schema}}}),
        ));
    }
    (op, inputs)
}

fn parameters(route: &Route, input: &mut SchemaGenerator) -> Value {
    let mut params = Vec::new();
    for part in route.path.split('/') {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            params.push(
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}),
            );
        }
    }
    if let Some(f) = route.query {
        params.extend(query_parameters(f, input));
    }
    for (name, description) in route.headers {
        params.push(json!({"name": name, "in": "header", "required": false,
            "description": description, "schema": {"type": "string"}}));
    }
    Value::Array(params)
}

/// The properties of a query type as `in: query` parameters.
fn query_parameters(f: SchemaFn, input: &mut SchemaGenerator) -> Vec<Value> {
    let schema = f(input).to_value();
    let resolved = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            input
                .definitions()
                .get(name)
                .cloned()
                .unwrap_or(Value::Null)
        }
        None => schema,
    };
    let Some(props) = resolved.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, s)| {
            let mut s = s.clone();
            let description = s
                .as_object_mut()
                .and_then(|m| m.remove("description"))
                .unwrap_or(Value::Null);
            if let Some(m) = s.as_object_mut() {
                m.remove("default");
                // Absent and empty are the same for a query parameter: no `null` type.
                if let Some(Value::Array(types)) = m.get_mut("type") {
                    types.retain(|t| t != "null");
                    if types.len() == 1 {
                        let only = types.remove(0);
                        m.insert("type".into(), only);
                    }
                }
            }
            let mut p = json!({"name": name, "in": "query", "required": false, "schema": s});
            if description.is_string() {
                p["description"] = description;
            }
            p
        })
        .collect()
}

fn extra_operation(x: &ExtraOperation, out: &mut SchemaGenerator) -> Value {
    let (status, mime) = x.success;
    let media = match x.schema {
        Some(f) => json!({"schema": f(out).to_value()}),
        None => json!({}),
    };
    let mut description = x.description.to_string();
    if x.ops_port {
        description.push_str(OPS_NOTE);
    }
    let mut op = json!({
        "operationId": x.operation_id,
        "summary": x.summary,
        "description": description,
        "tags": [x.tag],
        "responses": {
            status.to_string(): {"description": status_text(status), "content": {mime: media}},
            "4XX": {"$ref": "#/components/responses/Error"},
            "5XX": {"$ref": "#/components/responses/Error"},
        },
    });
    if x.public {
        op["security"] = json!([]);
    }
    if x.ops_port {
        op["servers"] =
            json!([{"url": "/", "description": "the operations listener (METRICS_PORT)"}]);
    }
    if x.path.contains("{agentId}") {
        op["parameters"] = json!([{"name": "agentId", "in": "path", "required": true, "schema": {"type": "string"}}]);
    }
    op
}

/// Who may call a route, in words and as the list of roles.
fn access_text(access: Access) -> (String, Vec<&'static str>) {
    let roles = |a| {
        [Role::Viewer, Role::Invoker, Role::Operator, Role::Admin]
            .into_iter()
            .filter(|r| role_allows(*r, a))
            .map(Role::as_str)
            .collect::<Vec<_>>()
    };
    match access {
        Access::Public => ("Public: no credentials needed.".into(), Vec::new()),
        Access::Role(a) => {
            let r = roles(a);
            (format!("Roles: {} ({}).", r.join(", "), a.name()), r)
        }
        Access::Own(a) => (
            format!(
                "Any authenticated caller, for its own requests and sessions; roles {} ({}) for all.",
                roles(a).join(", "),
                a.name()
            ),
            vec!["viewer", "invoker", "operator", "admin"],
        ),
    }
}

fn status_text(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("OK")
}

/// Points every `$ref` to schema `from` at schema `to`.
fn rename_ref(v: &mut Value, from: &str, to: &str) {
    let target = format!("#{SCHEMAS}/{from}");
    match v {
        Value::Object(m) => {
            if m.get("$ref").and_then(Value::as_str) == Some(target.as_str()) {
                m.insert("$ref".into(), json!(format!("#{SCHEMAS}/{to}")));
            }
            for child in m.values_mut() {
                rename_ref(child, from, to);
            }
        }
        Value::Array(a) => {
            for child in a {
                rename_ref(child, from, to);
            }
        }
        _ => {}
    }
}
