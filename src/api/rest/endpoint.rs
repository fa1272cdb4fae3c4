//! The REST endpoint table: every route of `/api/v1` once, with what it takes and returns.
//!
//! [`ROUTES`] is the single source for routing ([`Endpoint::parse`]) and for the OpenAPI
//! document (`api::openapi`): a route that is not in the table does not exist, and a route in
//! the table is documented. Each row names the method and path template, who may call it
//! ([`Access`]; the hub enforces it, the table documents it), the query, body and response
//! types (as schema functions of the views), a summary and a tag.

use http::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::api::views::{self, ErrorBody};
use crate::model::AgentSpec;
use crate::policy::Action;

/// One parsed REST request: the route and its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /api/v1/openapi.json`.
    OpenApi,
    Agents(AgentOp),
    Requests(RequestOp),
    Sessions(SessionOp),
    Admin(AdminOp),
}

/// Agent routes (`/agents…`); the `String` is the agent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentOp {
    List,
    Deploy,
    ImportCard,
    Get(String),
    Update(String),
    Remove(String),
    Enable(String),
    Disable(String),
    Invoke(String),
}

/// Request routes (`/requests…`); the `String` is the request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    List,
    Get(String),
    Cancel(String),
    Handoff(String),
    Events(String),
}

/// Session routes (`/sessions…`); the `String` is the session id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    Open,
    Get(String),
    Close(String),
}

/// Administration routes: statistics, keys, audit, permissions, backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    Stats,
    ListKeys,
    CreateKey,
    RevokeKey(String),
    Audit,
    Permissions,
    Grant,
    RevokeGrant(String),
    RequestPermission,
    Approve(String),
    Deny(String),
    CreateBackup,
    ListBackups,
}

/// Who may call a route. The hub checks it; the table says it for the document.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any authenticated caller; the hub limits the answer to the caller's own requests and
    /// sessions unless its role also allows the given action.
    Own(Action),
    /// Callers whose role allows the action.
    Role(Action),
}

/// A JSON Schema of a view, written into a generator (so shared types become `$ref`s).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The request body a route reads.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// None: the body is not read (no `Content-Length` needed).
    None,
    /// A JSON object; an empty body counts as `{}`.
    Optional(SchemaFn),
    /// A JSON object the route cannot do without.
    Required(SchemaFn),
}

/// The media type of a successful answer.
#[derive(Debug, Clone, Copy)]
pub enum Content {
    Json(SchemaFn),
    /// `text/event-stream` whose `data` lines are the given JSON.
    EventStream(SchemaFn),
}

/// One row of [`ROUTES`].
pub struct Route {
    pub method: Method,
    /// Path template, e.g. `/api/v1/agents/{id}/invoke`.
    pub path: &'static str,
    /// Unique operation name (OpenAPI `operationId`).
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    pub access: Access,
    pub query: Option<SchemaFn>,
    /// Request headers the route reads: name and meaning.
    pub headers: &'static [(&'static str, &'static str)],
    pub body: Body,
    /// Success statuses and what they carry (errors are always [`ErrorBody`]).
    pub responses: &'static [(u16, Content)],
    make: fn(&mut Params) -> Endpoint,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Route {
    /// Whether the route reads a request body.
    pub fn reads_body(&self) -> bool {
        !matches!(self.body, Body::None)
    }
}

/// The path parameters of a matched route, in template order.
pub struct Params(std::vec::IntoIter<String>);

impl Params {
    fn next(&mut self) -> String {
        self.0.next().unwrap_or_default()
    }
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The schema of the error body, for the document.
pub fn error_schema(g: &mut SchemaGenerator) -> Schema {
    schema::<ErrorBody>(g)
}

const fn json(status: u16, f: SchemaFn) -> (u16, Content) {
    (status, Content::Json(f))
}

const IDEMPOTENCY: (&str, &str) = (
    "Idempotency-Key",
    "Same key, same request: a retry returns the first request (the body's idempotencyKey wins)",
);
const LAST_EVENT_ID: (&str, &str) = (
    "Last-Event-ID",
    "Resume after this event sequence number (SSE reconnects send it)",
);

macro_rules! route {
    ($method:ident $path:literal, $op:literal, $tag:literal, $access:expr, $summary:literal,
     query: $query:expr, headers: $headers:expr, body: $body:expr, responses: $resp:expr,
     $make:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            operation_id: $op,
            summary: $summary,
            tag: $tag,
            access: $access,
            query: $query,
            headers: $headers,
            body: $body,
            responses: $resp,
            make: $make,
        }
    };
}

use Access::{Own, Public, Role};
use Action as A;

/// Every REST route. Order matters only where templates overlap (`/agents/import-card`
/// before `/agents/{id}`); a method that does not match any row of a matching path is 405.
pub static ROUTES: &[Route] = &[
    route!(GET "/api/v1/openapi.json", "getOpenApi", "meta", Public,
        "This document (OpenAPI 3.1, generated from the route table and the views)",
        query: None, headers: &[], body: Body::None,
        responses: &[json(200, |_| Schema::from(true))], |_| Endpoint::OpenApi),
    route!(GET "/api/v1/agents", "listAgents", "agents", Role(A::AgentsRead),
        "List agents (enabled ones unless includeDisabled=true)",
        query: Some(schema::<views::ListAgentsQuery>), headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::AgentList>)],
        |_| Endpoint::Agents(AgentOp::List)),
    route!(POST "/api/v1/agents", "deployAgent", "agents", Role(A::AgentsWrite),
        "Deploy an agent from its definition (replace=true to overwrite)",
        query: Some(schema::<views::DeployQuery>), headers: &[],
        body: Body::Required(schema::<AgentSpec>),
        responses: &[json(201, schema::<views::AgentView>)],
        |_| Endpoint::Agents(AgentOp::Deploy)),
    route!(POST "/api/v1/agents/import-card", "importAgentCard", "agents", Role(A::AgentsWrite),
        "Register a remote A2A agent from its Agent Card URL",
        query: None, headers: &[], body: Body::Required(schema::<views::ImportCardBody>),
        responses: &[json(201, schema::<views::AgentView>)],
        |_| Endpoint::Agents(AgentOp::ImportCard)),
    route!(GET "/api/v1/agents/{id}", "describeAgent", "agents", Role(A::AgentsRead),
        "Describe an agent: capabilities with schemas and its (redacted) definition",
        query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::AgentView>)],
        |p| Endpoint::Agents(AgentOp::Get(p.next()))),
    route!(PATCH "/api/v1/agents/{id}", "updateAgent", "agents", Role(A::AgentsWrite),
        "Change an agent with a JSON merge patch of its definition",
        query: None, headers: &[], body: Body::Required(schema::<views::AgentPatchBody>),
        responses: &[json(200, schema::<views::AgentView>)],
        |p| Endpoint::Agents(AgentOp::Update(p.next()))),
    route!(DELETE "/api/v1/agents/{id}", "removeAgent", "agents", Role(A::AgentsWrite),
        "Remove a run-time agent",
        query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::RemovedAgent>)],
        |p| Endpoint::Agents(AgentOp::Remove(p.next()))),
    route!(POST "/api/v1/agents/{id}/enable", "enableAgent", "agents", Role(A::AgentsWrite),
        "Enable an agent", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::AgentView>)],
        |p| Endpoint::Agents(AgentOp::Enable(p.next()))),
    route!(POST "/api/v1/agents/{id}/disable", "disableAgent", "agents", Role(A::AgentsWrite),
        "Disable an agent (new invocations are refused)", query: None, headers: &[],
        body: Body::None, responses: &[json(200, schema::<views::AgentView>)],
        |p| Endpoint::Agents(AgentOp::Disable(p.next()))),
    route!(POST "/api/v1/agents/{id}/invoke", "invokeAgent", "requests", Role(A::Invoke),
        "Invoke a capability: 202 with the queued request, or with wait=true 200 once it ended (202 with timedOut=true if the wait ran out)",
        query: None, headers: &[IDEMPOTENCY], body: Body::Optional(schema::<views::InvokeBody>),
        responses: &[json(200, schema::<views::RequestView>), json(202, schema::<views::RequestView>)],
        |p| Endpoint::Agents(AgentOp::Invoke(p.next()))),
    route!(GET "/api/v1/requests", "listRequests", "requests", Own(A::RequestsReadAll),
        "List requests, newest first, one page at a time",
        query: Some(schema::<views::ListRequestsQuery>), headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::RequestList>)],
        |_| Endpoint::Requests(RequestOp::List)),
    route!(GET "/api/v1/requests/{id}", "getRequest", "requests", Own(A::RequestsReadAll),
        "The status (and result) of a request", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::RequestView>)],
        |p| Endpoint::Requests(RequestOp::Get(p.next()))),
    route!(POST "/api/v1/requests/{id}/cancel", "cancelRequest", "requests", Own(A::RequestsCancelAll),
        "Cancel a queued or running request", query: None, headers: &[],
        body: Body::Optional(schema::<views::CancelBody>),
        responses: &[json(200, schema::<views::RequestView>)],
        |p| Endpoint::Requests(RequestOp::Cancel(p.next()))),
    route!(POST "/api/v1/requests/{id}/handoff", "handoff", "requests", Role(A::Invoke),
        "Hand a request's work on to another agent (a child request)", query: None,
        headers: &[], body: Body::Required(schema::<views::HandoffBody>),
        responses: &[json(202, schema::<views::RequestView>)],
        |p| Endpoint::Requests(RequestOp::Handoff(p.next()))),
    route!(GET "/api/v1/requests/{id}/events", "requestEvents", "requests", Own(A::RequestsReadAll),
        "Follow a request's events as Server-Sent Events (stored ones first, then live; ends after the terminal event)",
        query: Some(schema::<views::EventsQuery>), headers: &[LAST_EVENT_ID], body: Body::None,
        responses: &[(200, Content::EventStream(schema::<views::EventView>))],
        |p| Endpoint::Requests(RequestOp::Events(p.next()))),
    route!(POST "/api/v1/sessions", "openSession", "sessions", Role(A::Invoke),
        "Open a session (optionally bound to one agent)", query: None, headers: &[],
        body: Body::Optional(schema::<views::SessionBody>),
        responses: &[json(201, schema::<views::SessionView>)],
        |_| Endpoint::Sessions(SessionOp::Open)),
    route!(GET "/api/v1/sessions/{id}", "getSession", "sessions", Own(A::RequestsReadAll),
        "A session", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::SessionView>)],
        |p| Endpoint::Sessions(SessionOp::Get(p.next()))),
    route!(DELETE "/api/v1/sessions/{id}", "closeSession", "sessions", Own(A::RequestsCancelAll),
        "Close a session", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::SessionView>)],
        |p| Endpoint::Sessions(SessionOp::Close(p.next()))),
    route!(GET "/api/v1/stats", "getStats", "admin", Role(A::Stats),
        "Queue and agent statistics", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::StatsView>)],
        |_| Endpoint::Admin(AdminOp::Stats)),
    route!(GET "/api/v1/admin/keys", "listKeys", "admin", Role(A::KeysManage),
        "List API keys (never their secrets)", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::KeyList>)],
        |_| Endpoint::Admin(AdminOp::ListKeys)),
    route!(POST "/api/v1/admin/keys", "createKey", "admin", Role(A::KeysManage),
        "Create an API key; the answer shows its token once", query: None, headers: &[],
        body: Body::Required(schema::<views::NewKeyBody>),
        responses: &[json(201, schema::<views::CreatedKey>)],
        |_| Endpoint::Admin(AdminOp::CreateKey)),
    route!(DELETE "/api/v1/admin/keys/{id}", "revokeKey", "admin", Role(A::KeysManage),
        "Revoke an API key", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::KeyView>)],
        |p| Endpoint::Admin(AdminOp::RevokeKey(p.next()))),
    route!(GET "/api/v1/admin/audit", "getAuditLog", "admin", Role(A::AuditRead),
        "Read the audit log, oldest first, one page at a time",
        query: Some(schema::<views::AuditQuery>), headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::AuditPage>)],
        |_| Endpoint::Admin(AdminOp::Audit)),
    route!(GET "/api/v1/permissions", "getPermissions", "permissions", Role(A::GrantsRead),
        "Permission grants and requests", query: Some(schema::<views::PermissionsQuery>),
        headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::PermissionsView>)],
        |_| Endpoint::Admin(AdminOp::Permissions)),
    route!(POST "/api/v1/permissions/grants", "grantPermission", "permissions", Role(A::GrantsWrite),
        "Grant an agent a permission", query: None, headers: &[],
        body: Body::Required(schema::<views::NewGrantBody>),
        responses: &[json(201, schema::<views::GrantView>)],
        |_| Endpoint::Admin(AdminOp::Grant)),
    route!(DELETE "/api/v1/permissions/grants/{id}", "revokePermission", "permissions", Role(A::GrantsWrite),
        "Revoke a grant", query: None, headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::GrantView>)],
        |p| Endpoint::Admin(AdminOp::RevokeGrant(p.next()))),
    route!(POST "/api/v1/permissions/requests", "requestPermission", "permissions", Role(A::PermissionRequest),
        "Ask for a permission (wait=true waits for the decision)", query: None, headers: &[],
        body: Body::Required(schema::<views::NewPermissionRequestBody>),
        responses: &[json(201, schema::<views::PermissionRequestView>)],
        |_| Endpoint::Admin(AdminOp::RequestPermission)),
    route!(POST "/api/v1/permissions/requests/{id}/approve", "approvePermission", "permissions", Role(A::GrantsWrite),
        "Approve a permission request (makes the grant)", query: None, headers: &[],
        body: Body::Optional(schema::<views::DecisionBody>),
        responses: &[json(200, schema::<views::DecisionView>)],
        |p| Endpoint::Admin(AdminOp::Approve(p.next()))),
    route!(POST "/api/v1/permissions/requests/{id}/deny", "denyPermission", "permissions", Role(A::GrantsWrite),
        "Deny a permission request", query: None, headers: &[],
        body: Body::Optional(schema::<views::DecisionBody>),
        responses: &[json(200, schema::<views::DecisionView>)],
        |p| Endpoint::Admin(AdminOp::Deny(p.next()))),
    route!(POST "/api/v1/admin/backups", "createBackup", "admin", Role(A::Backup),
        "Take a consistent snapshot into the backup directory now", query: None, headers: &[],
        body: Body::None, responses: &[json(201, schema::<views::BackupView>)],
        |_| Endpoint::Admin(AdminOp::CreateBackup)),
    route!(GET "/api/v1/admin/backups", "listBackups", "admin", Role(A::Backup),
        "List the snapshots in the backup directory (verify=true checks each completely)",
        query: Some(schema::<views::ListBackupsQuery>), headers: &[], body: Body::None,
        responses: &[json(200, schema::<views::BackupList>)],
        |_| Endpoint::Admin(AdminOp::ListBackups)),
];

/// Why a path did not yield an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// No route has this path.
    NotFound,
    /// A route has this path, with another method.
    WrongMethod,
}

impl Endpoint {
    /// The endpoint of `method path` (path without the query), or why there is none.
    pub fn parse(method: &Method, path: &str) -> Result<(Endpoint, &'static Route), Miss> {
        let Some(segments) = split(path) else {
            return Err(Miss::NotFound);
        };
        let mut path_matched = false;
        for route in ROUTES {
            let Some(params) = match_template(route.path, &segments) else {
                continue;
            };
            if route.method != *method {
                path_matched = true;
                continue;
            }
            let ep = (route.make)(&mut Params(params.into_iter()));
            return Ok((ep, route));
        }
        Err(if path_matched {
            Miss::WrongMethod
        } else {
            Miss::NotFound
        })
    }
}

/// The segments of a request path; one trailing `/` is allowed, empty segments are not.
fn split(path: &str) -> Option<Vec<&str>> {
    let path = path.strip_prefix('/')?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    segments.iter().all(|s| !s.is_empty()).then_some(segments)
}

/// The parameters of `segments` under `template`, when it matches.
fn match_template(template: &str, segments: &[&str]) -> Option<Vec<String>> {
    let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, seg) in parts.iter().zip(segments) {
        if part.starts_with('{') {
            params.push((*seg).to_string());
        } else if part != seg {
            return None;
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_templates_methods_and_trailing_slashes() {
        let (ep, route) = Endpoint::parse(&Method::POST, "/api/v1/agents/echo/invoke").unwrap();
        assert_eq!(ep, Endpoint::Agents(AgentOp::Invoke("echo".into())));
        assert_eq!(route.operation_id, "invokeAgent");
        let (ep, _) = Endpoint::parse(&Method::GET, "/api/v1/agents/").unwrap();
        assert_eq!(ep, Endpoint::Agents(AgentOp::List));
        let (ep, _) = Endpoint::parse(&Method::POST, "/api/v1/agents/import-card").unwrap();
        assert_eq!(ep, Endpoint::Agents(AgentOp::ImportCard));
        let (ep, _) = Endpoint::parse(&Method::GET, "/api/v1/agents/import-card").unwrap();
        assert_eq!(ep, Endpoint::Agents(AgentOp::Get("import-card".into())));
        let (ep, _) =
            Endpoint::parse(&Method::POST, "/api/v1/permissions/requests/r1/deny").unwrap();
        assert_eq!(ep, Endpoint::Admin(AdminOp::Deny("r1".into())));
        assert_eq!(
            Endpoint::parse(&Method::PUT, "/api/v1/agents").unwrap_err(),
            Miss::WrongMethod
        );
        for missing in [
            "/api/v1/nope",
            "/api/v1/agents//invoke",
            "/api/v1",
            "/api/v2/agents",
        ] {
            assert_eq!(
                Endpoint::parse(&Method::GET, missing).unwrap_err(),
                Miss::NotFound,
                "{missing}"
            );
        }
    }

    #[test]
    fn operation_ids_and_routes_are_unique() {
        let mut ids = std::collections::HashSet::new();
        let mut routes = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(ids.insert(r.operation_id), "{} twice", r.operation_id);
            assert!(routes.insert((r.method.clone(), r.path)), "{r:?} twice");
        }
    }
}
