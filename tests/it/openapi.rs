//! The OpenAPI document against the real server: (a) the router (the REST route table) and
//! the document list the same operations, every documented operation is routed on the live
//! server and nothing else is; (b) real answers of every REST operation validate against the
//! documented schemas (`jsonschema`, 2020-12); (c) the document is structurally OpenAPI 3.1.

use std::collections::{BTreeSet, HashSet};

use a2a_mcp::api::openapi::EXTRA_OPERATIONS;
use a2a_mcp::api::rest::ROUTES;
use a2a_mcp::model::Role;
use serde_json::{Value, json};

use super::harness::*;
use super::security::key;

/// Every REST operation as of this change. Removing a route (from the table or the
/// document) fails the test; adding one means adding it here.
const REST_OPERATIONS: &[(&str, &str)] = &[
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/agents"),
    ("post", "/api/v1/agents"),
    ("post", "/api/v1/agents/import-card"),
    ("get", "/api/v1/agents/{id}"),
    ("patch", "/api/v1/agents/{id}"),
    ("delete", "/api/v1/agents/{id}"),
    ("post", "/api/v1/agents/{id}/enable"),
    ("post", "/api/v1/agents/{id}/disable"),
    ("post", "/api/v1/agents/{id}/invoke"),
    ("get", "/api/v1/requests"),
    ("get", "/api/v1/requests/{id}"),
    ("post", "/api/v1/requests/{id}/cancel"),
    ("post", "/api/v1/requests/{id}/handoff"),
    ("get", "/api/v1/requests/{id}/events"),
    ("post", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{id}"),
    ("delete", "/api/v1/sessions/{id}"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/admin/keys"),
    ("post", "/api/v1/admin/keys"),
    ("delete", "/api/v1/admin/keys/{id}"),
    ("get", "/api/v1/admin/audit"),
    ("get", "/api/v1/permissions"),
    ("post", "/api/v1/permissions/grants"),
    ("delete", "/api/v1/permissions/grants/{id}"),
    ("post", "/api/v1/permissions/requests"),
    ("post", "/api/v1/permissions/requests/{id}/approve"),
    ("post", "/api/v1/permissions/requests/{id}/deny"),
    ("post", "/api/v1/admin/backups"),
    ("get", "/api/v1/admin/backups"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn served_document(th: &TestHub) -> Value {
    // Public: no credentials even on a hub with keys.
    let (s, doc) = get(&th.rest("/openapi.json")).await;
    assert_eq!(s, 200, "{doc}");
    doc
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// A path with every `{param}` replaced by `value`.
fn concrete(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { value } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether a concrete path matches a path template (`{x}` matches one segment).
fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t.starts_with('{') && !p.is_empty() || t == p)
}

async fn send(url: &str, method: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (s, v, _) = http(
        &method.to_uppercase(),
        url,
        body,
        &[("authorization", auth.as_str())],
    )
    .await;
    (s, v)
}

#[tokio::test]
async fn router_and_document_list_the_same_operations_and_the_server_routes_exactly_those() {
    let th = TestHub::start().await;
    let token = key(&th, Role::Admin).await;
    let doc = served_document(&th).await;
    let documented = operations(&doc);

    // The router is the table: it holds exactly the expected REST operations…
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_lowercase(), r.path.to_string()))
        .collect();
    assert_eq!(
        table,
        pairs(REST_OPERATIONS),
        "route table vs expected list"
    );
    // …and the document holds the table plus the protocol endpoints, nothing else.
    let rest_documented: BTreeSet<_> = documented
        .iter()
        .filter(|(_, p)| p.starts_with("/api/v1/"))
        .cloned()
        .collect();
    let only_router: Vec<_> = table.difference(&rest_documented).collect();
    let only_doc: Vec<_> = rest_documented.difference(&table).collect();
    assert!(
        only_router.is_empty() && only_doc.is_empty(),
        "routed but undocumented: {only_router:?}; documented but not routed: {only_doc:?}"
    );
    let extra: BTreeSet<_> = EXTRA_OPERATIONS
        .iter()
        .map(|x| (x.method.to_string(), x.path.to_string()))
        .collect();
    let other_documented: BTreeSet<_> = documented.difference(&table).cloned().collect();
    assert_eq!(other_documented, extra, "non-REST operations");

    // Every documented operation is routed on the live server (for an admin).
    for (method, path) in &documented {
        let on_ops = EXTRA_OPERATIONS
            .iter()
            .any(|x| x.ops_port && x.path == path);
        let p = concrete(path, "no-such-id");
        let url = if on_ops {
            th.ops_url(&p)
        } else {
            format!("http://{}{p}", th.api)
        };
        let body = (method == "post" || method == "patch").then(|| json!({}));
        let (s, v) = send(&url, method, &token, body).await;
        let unrouted = s == 405 || (s == 404 && v["error"]["code"] == "not_found");
        assert!(
            !unrouted,
            "{method} {path} is documented but answers {s} {v}"
        );
    }
    // Nothing undocumented is routed: a method the document does not give for a concrete
    // path (no template matches both) is 405.
    let rest_paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
    for path in rest_paths {
        let p = concrete(path, "x");
        for method in METHODS {
            let routed = table
                .iter()
                .any(|(m, t)| m == method && template_matches(t, &p));
            if routed {
                continue;
            }
            let (s, v) = send(&format!("http://{}{p}", th.api), method, &token, None).await;
            assert_eq!(s, 405, "{method} {p} is not documented but answers {s} {v}");
        }
    }
    for path in [
        "/api/v1/nope",
        "/api/v1/agents/x/y/z",
        "/api/v1/permissions/requests/x/maybe",
        "/api/v2/agents",
        "/api/v1//agents",
    ] {
        let (s, v) = send(&format!("http://{}{path}", th.api), "get", &token, None).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {v}"
        );
    }
    th.stop().await;
}

#[tokio::test]
async fn the_document_is_structurally_openapi_3_1() {
    let th = TestHub::start().await;
    let doc = served_document(&th).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        assert!(path.starts_with('/'), "{path}");
        let declared: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            assert!(op["summary"].is_string(), "{id}: summary");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2') || k == "101"),
                "{id}"
            );
            let in_path: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| {
                            assert_eq!(p["required"], true, "{id}: path parameters are required");
                            p["name"].as_str().expect("name")
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(in_path, declared, "{id}: path parameters");
        }
    }
    // Every $ref resolves inside the document, and every schema compiles as JSON Schema
    // 2020-12.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 40, "{} refs", refs.len());
    for r in &refs {
        let pointer = r.strip_prefix('#').expect("local ref");
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        jsonschema::draft202012::meta::validate(schema)
            .unwrap_or_else(|e| panic!("schema {name} is not valid JSON Schema: {e}"));
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    th.stop().await;
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|c| collect_refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

/// Validates real answers against the document.
struct Checker {
    doc: Value,
    api: std::net::SocketAddr,
    token: String,
    checked: BTreeSet<(String, String)>,
}

impl Checker {
    /// The documented schema of one answer: the status's own, or the error body for 4xx/5xx.
    fn schema(&self, method: &str, template: &str, status: u16, mime: &str) -> Value {
        let op = &self.doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let resp = &op["responses"][status.to_string()];
        let resp = if resp.is_object() {
            resp
        } else {
            assert!(
                status >= 400,
                "{method} {template}: status {status} is not documented"
            );
            &self.doc["components"]["responses"]["Error"]
        };
        let schema = resp["content"][mime]["schema"].clone();
        assert!(
            !schema.is_null(),
            "{method} {template} {status}: no {mime} schema"
        );
        schema
    }

    fn validate(&self, what: &str, schema: Value, body: &Value) {
        // The document is the root, so `#/components/schemas/…` resolves.
        let mut root = json!({"allOf": [schema]});
        root["components"] = self.doc["components"].clone();
        let v = jsonschema::draft202012::new(&root).expect("schema compiles");
        let errors: Vec<String> = v.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{what}: {errors:?}\n{body}");
    }

    /// Calls `method path`, checks the status and validates the answer; returns the answer.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let url = format!("http://{}{path}", self.api);
        let (s, v) = send(&url, method, &self.token, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        let schema = self.schema(method, template, s, "application/json");
        self.validate(&format!("{method} {path} -> {s}"), schema, &v);
        if s < 300 {
            self.checked
                .insert((method.to_string(), template.to_string()));
        }
        v
    }
}

#[tokio::test]
async fn real_answers_of_every_rest_operation_match_the_documented_schemas() {
    let th = TestHub::start_with(&[("egress_allowed_networks", "127.0.0.0/8")]).await;
    let token = key(&th, Role::Admin).await;
    let doc = served_document(&th).await;
    let mut c = Checker {
        doc,
        api: th.api,
        token,
        checked: BTreeSet::new(),
    };
    let v1 = |p: &str| format!("/api/v1{p}");

    c.call(
        "get",
        "/api/v1/openapi.json",
        &v1("/openapi.json"),
        None,
        200,
    )
    .await;
    agents(&mut c).await;
    let rid = requests(&mut c, &th).await;
    sessions(&mut c).await;
    admin(&mut c, &rid).await;

    // The ops port's JSON answers have documented schemas too.
    for path in ["/healthz", "/readyz"] {
        let (s, v) = get(&th.ops_url(path)).await;
        assert_eq!(s, 200, "{path}: {v}");
        let schema = c.schema("get", path, 200, "application/json");
        c.validate(path, schema, &v);
    }

    // Every operation but the event stream (checked apart) answered 2xx and validated.
    let mut missing: BTreeSet<_> = pairs(REST_OPERATIONS);
    missing.retain(|op| !c.checked.contains(op));
    let expected_apart = pairs(&[("get", "/api/v1/requests/{id}/events")]);
    assert_eq!(
        missing, expected_apart,
        "operations without a validated 2xx answer"
    );
    th.stop().await;
}

async fn agents(c: &mut Checker) {
    let list = c
        .call(
            "get",
            "/api/v1/agents",
            "/api/v1/agents?includeDisabled=true",
            None,
            200,
        )
        .await;
    assert!(!list["agents"].as_array().unwrap().is_empty());
    let spec = json!({"id": "oa-echo", "name": "OpenAPI echo", "tags": ["t"],
        "capabilities": [{"name": "echo", "description": "echoes",
            "output_schema": {"type": "object"}}],
        "executor": {"kind": "builtin", "name": "echo"}});
    let a = c
        .call("post", "/api/v1/agents", "/api/v1/agents", Some(spec), 201)
        .await;
    // The detailed view's definition deploys back as it is.
    let again = c
        .call(
            "post",
            "/api/v1/agents",
            "/api/v1/agents?replace=true",
            Some(a["definition"].clone()),
            201,
        )
        .await;
    assert_eq!(again["definition"], a["definition"]);
    let t = "/api/v1/agents/{id}";
    c.call("get", t, "/api/v1/agents/oa-echo", None, 200).await;
    c.call("get", t, "/api/v1/agents/no-such-agent", None, 404)
        .await;
    let patched = c
        .call(
            "patch",
            t,
            "/api/v1/agents/oa-echo",
            Some(json!({"description": "d2"})),
            200,
        )
        .await;
    assert_eq!(patched["description"], "d2");
    c.call(
        "post",
        "/api/v1/agents/{id}/disable",
        "/api/v1/agents/oa-echo/disable",
        None,
        200,
    )
    .await;
    c.call(
        "post",
        "/api/v1/agents/{id}/enable",
        "/api/v1/agents/oa-echo/enable",
        None,
        200,
    )
    .await;
    c.call("delete", t, "/api/v1/agents/oa-echo", None, 200)
        .await;
    // The hub's own card of `echo` is a remote card like any other (loopback is allowed
    // as an egress network for this hub).
    let card = format!("http://{}/a2a/echo/.well-known/agent-card.json", c.api);
    let imported = c
        .call(
            "post",
            "/api/v1/agents/import-card",
            "/api/v1/agents/import-card",
            Some(json!({"cardUrl": card, "id": "oa-imported"})),
            201,
        )
        .await;
    assert_eq!(imported["executor"], "a2a");
}

/// Invoke (queued, waited), list, status, events, cancel, handoff. Returns a request id.
async fn requests(c: &mut Checker, th: &TestHub) -> String {
    let inv = "/api/v1/agents/{id}/invoke";
    let done = c
        .call(
            "post",
            inv,
            "/api/v1/agents/echo/invoke",
            Some(json!({"input": echo_input("hello", 2, 0), "wait": true, "timeoutMs": 10_000})),
            200,
        )
        .await;
    assert_eq!(
        (done["status"].as_str(), done["timedOut"].as_bool()),
        (Some("done"), Some(false))
    );
    let rid = done["requestId"].as_str().unwrap().to_string();
    let slow = c
        .call(
            "post",
            inv,
            "/api/v1/agents/echo/invoke",
            Some(json!({"input": echo_input("slow", 50, 200)})),
            202,
        )
        .await;
    let sid = slow["requestId"].as_str().unwrap();
    c.call(
        "post",
        inv,
        "/api/v1/agents/no-such-agent/invoke",
        Some(json!({})),
        404,
    )
    .await;
    let page = c
        .call(
            "get",
            "/api/v1/requests",
            "/api/v1/requests?limit=500&limit=1",
            None,
            200,
        )
        .await;
    assert!(page["next"].is_string(), "{page}");
    c.call(
        "get",
        "/api/v1/requests",
        "/api/v1/requests?status=bogus",
        None,
        400,
    )
    .await;
    c.call(
        "get",
        "/api/v1/requests/{id}",
        &format!("/api/v1/requests/{rid}"),
        None,
        200,
    )
    .await;
    let canceled = c
        .call(
            "post",
            "/api/v1/requests/{id}/cancel",
            &format!("/api/v1/requests/{sid}/cancel"),
            Some(json!({"reason": "test"})),
            200,
        )
        .await;
    assert!(canceled["status"].is_string());
    let child = c
        .call(
            "post",
            "/api/v1/requests/{id}/handoff",
            &format!("/api/v1/requests/{rid}/handoff"),
            Some(json!({"agentId": "echo", "input": echo_input("child", 1, 0)})),
            202,
        )
        .await;
    assert_eq!(child["parentId"], rid.as_str());

    // The event stream: every `data` line validates against the documented event schema.
    let url = th.rest(&format!("/requests/{rid}/events"));
    let auth = format!("Bearer {}", c.token);
    let (s, text, headers) = http_raw("GET", &url, Vec::new(), &[("authorization", &auth)]).await;
    assert_eq!(s, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let t = "/api/v1/requests/{id}/events";
    let schema = c.schema("get", t, 200, "text/event-stream");
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).expect("event JSON"))
        .collect();
    assert!(data.len() >= 4, "{text}");
    for ev in &data {
        c.validate("SSE event", schema.clone(), ev);
    }
    assert_eq!(data.last().unwrap()["type"], "final");
    rid
}

async fn sessions(c: &mut Checker) {
    let s = c
        .call(
            "post",
            "/api/v1/sessions",
            "/api/v1/sessions",
            Some(json!({"metadata": {"who": "openapi"}})),
            201,
        )
        .await;
    let id = s["sessionId"].as_str().unwrap();
    let t = "/api/v1/sessions/{id}";
    c.call("get", t, &format!("/api/v1/sessions/{id}"), None, 200)
        .await;
    let closed = c
        .call("delete", t, &format!("/api/v1/sessions/{id}"), None, 200)
        .await;
    assert_eq!(closed["open"], false);
    c.call("get", t, "/api/v1/sessions/no-such-session", None, 404)
        .await;
}

async fn admin(c: &mut Checker, rid: &str) {
    let stats = c
        .call("get", "/api/v1/stats", "/api/v1/stats", None, 200)
        .await;
    assert!(stats["perAgent"].is_object());
    c.call("get", "/api/v1/admin/keys", "/api/v1/admin/keys", None, 200)
        .await;
    let k = c
        .call(
            "post",
            "/api/v1/admin/keys",
            "/api/v1/admin/keys",
            Some(json!({"role": "viewer", "label": "oa", "expiresIn": "1h"})),
            201,
        )
        .await;
    assert!(k["key"].as_str().unwrap().starts_with("a2a_"));
    c.call(
        "post",
        "/api/v1/admin/keys",
        "/api/v1/admin/keys",
        Some(json!({"role": "king"})),
        400,
    )
    .await;
    let kid = k["id"].as_str().unwrap();
    c.call(
        "delete",
        "/api/v1/admin/keys/{id}",
        &format!("/api/v1/admin/keys/{kid}"),
        None,
        200,
    )
    .await;
    let audit = c
        .call(
            "get",
            "/api/v1/admin/audit",
            "/api/v1/admin/audit?limit=2",
            None,
            200,
        )
        .await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 2);

    let g = c
        .call(
            "post",
            "/api/v1/permissions/grants",
            "/api/v1/permissions/grants",
            Some(json!({"agentId": "echo", "permission": "agent:invoke:oa-*", "delegable": true})),
            201,
        )
        .await;
    let gid = g["grantId"].as_str().unwrap();
    c.call(
        "get",
        "/api/v1/permissions",
        "/api/v1/permissions?agentId=echo",
        None,
        200,
    )
    .await;
    c.call(
        "delete",
        "/api/v1/permissions/grants/{id}",
        &format!("/api/v1/permissions/grants/{gid}"),
        None,
        200,
    )
    .await;
    for verb in ["approve", "deny"] {
        let r = c
            .call(
                "post",
                "/api/v1/permissions/requests",
                "/api/v1/permissions/requests",
                Some(json!({"agentId": "echo", "permission": "agent:invoke:x", "reason": rid})),
                201,
            )
            .await;
        let pid = r["permissionRequestId"].as_str().unwrap();
        let d = c
            .call(
                "post",
                &format!("/api/v1/permissions/requests/{{id}}/{verb}"),
                &format!("/api/v1/permissions/requests/{pid}/{verb}"),
                Some(json!({})),
                200,
            )
            .await;
        assert_eq!(d["grant"].is_object(), verb == "approve", "{d}");
    }
    c.call(
        "post",
        "/api/v1/admin/backups",
        "/api/v1/admin/backups",
        None,
        201,
    )
    .await;
    let list = c
        .call(
            "get",
            "/api/v1/admin/backups",
            "/api/v1/admin/backups?verify=true",
            None,
            200,
        )
        .await;
    assert_eq!(list["backups"][0]["verified"], true, "{list}");
}
