//! Agent Cards, built from the registry on every request (so they follow deploy, update,
//! enable and disable at once).
//!
//! Per agent (`/a2a/{agentId}/.well-known/agent-card.json`): name, description, version,
//! `supportedInterfaces` (JSON-RPC at `/a2a/{agentId}`, protocol 1.0 first, then 0.3 on the
//! same URL), capabilities, default modes, one skill per capability, and the 0.3 top-level
//! fields (`url`, `preferredTransport`, `protocolVersion: "0.3"`) so 0.3 readers work. The
//! hub's card (`/.well-known/agent-card.json`) points at `/a2a` and lists every enabled agent
//! as a skill (skill id = agent id; name it in `message.metadata.agentId` or `skillId`).
//!
//! Security: [`security`] returns the schemes and requirements to advertise; it is empty
//! while the hub has no authentication, and is the one place to wire API keys in.

use serde_json::{Map, Value, json};

use super::super::ApiContext;
use crate::hub::AgentEntry;

/// Media types the hub takes and produces.
const MODES: [&str; 2] = ["text/plain", "application/json"];

/// `securitySchemes` and `securityRequirements` of the cards, when authentication is on.
///
/// Each scheme carries the 1.0 shape (`httpAuthSecurityScheme`) and the 0.3 fields (`type`,
/// `scheme`) side by side: 1.0 parsers ignore the extra fields, the official SDK's 0.3
/// conversion folds them into the 1.0 shape, and 0.3 readers find what they expect.
pub fn security(ctx: &ApiContext) -> Option<(Map<String, Value>, Vec<Value>)> {
    if !ctx.hub.auth_required() {
        return None;
    }
    let mut schemes = Map::new();
    schemes.insert(
        "bearer".into(),
        json!({
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "a2a-mcp API key",
            "httpAuthSecurityScheme": {
                "scheme": "Bearer",
                "bearerFormat": "a2a-mcp API key",
                "description": "Authorization: Bearer <API key> (a2a-mcp keys create)",
            },
        }),
    );
    let mut requirement = json!({"schemes": {"bearer": {"list": []}}});
    if ctx.config.tls_client_ca.is_some() {
        schemes.insert(
            "mtls".into(),
            json!({"type": "mutualTLS", "mtlsSecurityScheme": {
                "description": "a client certificate signed by the hub's client CA"}}),
        );
        requirement["schemes"]["mtls"] = json!({"list": []});
    }
    Some((schemes, vec![requirement]))
}

fn interfaces(url: &str) -> Value {
    json!([
        { "url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0" },
        { "url": url, "protocolBinding": "JSONRPC", "protocolVersion": "0.3" },
    ])
}

fn finish(ctx: &ApiContext, mut card: Value, url: &str) -> Value {
    let streaming = ctx.config.enable_streaming;
    card["capabilities"] = json!({
        "streaming": streaming,
        "pushNotifications": true,
        "extendedAgentCard": false,
    });
    card["defaultInputModes"] = json!(MODES);
    card["defaultOutputModes"] = json!(MODES);
    if let Some((schemes, reqs)) = security(ctx) {
        // 0.3 readers: `security` as a list of {scheme: [scopes]}.
        let legacy: Vec<Value> = reqs
            .iter()
            .map(|r| {
                let names: Map<String, Value> = r["schemes"]
                    .as_object()
                    .map(|m| m.keys().map(|k| (k.clone(), json!([]))).collect())
                    .unwrap_or_default();
                Value::Object(names)
            })
            .collect();
        card["securitySchemes"] = Value::Object(schemes);
        card["securityRequirements"] = Value::Array(reqs);
        card["security"] = Value::Array(legacy);
    }
    // 0.3 readers.
    card["url"] = json!(url);
    card["preferredTransport"] = json!("JSONRPC");
    card["protocolVersion"] = json!("0.3");
    card
}

fn provider(base: &str) -> Value {
    json!({ "organization": "a2a-mcp", "url": base })
}

fn tags_of(a: &AgentEntry) -> Vec<String> {
    let mut tags = a.spec.tags.clone();
    if !a.spec.category.is_empty() && !tags.contains(&a.spec.category) {
        tags.push(a.spec.category.clone());
    }
    if tags.is_empty() {
        tags.push(a.spec.id.clone());
    }
    tags
}

fn description_of(a: &AgentEntry) -> String {
    if a.spec.description.is_empty() {
        format!("{} (hosted by a2a-mcp)", a.spec.display_name())
    } else {
        a.spec.description.clone()
    }
}

/// The card of one hosted agent.
pub fn agent_card(ctx: &ApiContext, a: &AgentEntry, base: &str) -> Value {
    let url = format!("{base}/a2a/{}", a.spec.id);
    let tags = tags_of(a);
    let skills: Vec<Value> = a
        .spec
        .capabilities
        .iter()
        .map(|c| {
            json!({
                "id": c.name,
                "name": c.name,
                "description": if c.description.is_empty() {
                    format!("Capability {} of {}", c.name, a.spec.display_name())
                } else {
                    c.description.clone()
                },
                "tags": tags,
                "inputModes": MODES,
                "outputModes": MODES,
            })
        })
        .collect();
    let card = json!({
        "name": a.spec.display_name(),
        "description": description_of(a),
        "version": a.spec.version,
        "supportedInterfaces": interfaces(&url),
        "provider": provider(base),
        "skills": skills,
    });
    finish(ctx, card, &url)
}

/// The hub's own card: every enabled agent is a skill.
pub fn hub_card(ctx: &ApiContext, agents: &[std::sync::Arc<AgentEntry>], base: &str) -> Value {
    let url = format!("{base}/a2a");
    let skills: Vec<Value> = agents
        .iter()
        .map(|a| {
            json!({
                "id": a.spec.id,
                "name": a.spec.display_name(),
                "description": description_of(a),
                "tags": tags_of(a),
                "inputModes": MODES,
                "outputModes": MODES,
            })
        })
        .collect();
    let card = json!({
        "name": "a2a-mcp hub",
        "description": "An a2a-mcp agent hub. Every skill is a hosted agent: name it in message.metadata.agentId (or skillId), or use the agent's own card at /a2a/{agentId}/.well-known/agent-card.json.",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": interfaces(&url),
        "provider": provider(base),
        "skills": skills,
    });
    finish(ctx, card, &url)
}
