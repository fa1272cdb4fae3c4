//! The original server's actions, with its argument names and its answers (`data` of the
//! `agent_control` envelope), each mapped onto the same hub calls as the tools.
//!
//! Answers keep the original fields (`{deployed, agentId}`, `{canceled}`, `{success,
//! grantId}`, …) and add this hub's view of the object next to them. Unknown fields are
//! ignored here, as the original server ignored the fields an action did not use. What the
//! original accepted but has no meaning here is listed in `src/api/MCP.md`.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::api::views::{GrantView, PermissionRequestView, to_json};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Call, Handler, descriptor, handler};
use crate::api::{agent_view, invocation_view, session_view};
use crate::error::{ErrorCode, ErrorKind, HubError, HubResult};
use crate::hub::AgentEntry;
use crate::model::{Principal, RequestState, now_ms};
use crate::policy::{Action, grants};

/// `expiresIn`: milliseconds (the original server) or a duration such as `1h`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpiresIn {
    Millis(u64),
    Text(String),
}

fn expires(v: Option<ExpiresIn>) -> HubResult<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(ExpiresIn::Millis(ms)) => Ok(Some(Duration::from_millis(ms))),
        Some(ExpiresIn::Text(s)) => crate::api::duration_param("expiresIn", &Some(s)),
    }
}

fn required<T>(v: Option<T>, what: &str, action: &str) -> HubResult<T> {
    v.ok_or_else(|| {
        HubError::new(
            ErrorCode::InvalidParams,
            format!("{what} is required for {action}"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Agents

/// The original server's agent filter.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Agents with at least one of these tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Case-insensitive text in the id, name or a capability name.
    #[serde(default)]
    pub search: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListArgs {
    #[serde(default)]
    pub filter: Option<Filter>,
    /// This hub's names, next to `filter`.
    #[serde(default, alias = "include_disabled")]
    pub include_disabled: Option<bool>,
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(flatten)]
    pub top: Filter,
}

fn matches(a: &AgentEntry, f: &Filter) -> bool {
    let s = &a.spec;
    f.enabled.is_none_or(|e| s.enabled == e)
        && f.category.as_ref().is_none_or(|c| &s.category == c)
        && f.tags
            .as_ref()
            .is_none_or(|t| t.is_empty() || t.iter().any(|t| s.tags.contains(t)))
        && f.search.as_ref().is_none_or(|q| {
            let q = q.to_lowercase();
            s.id.to_lowercase().contains(&q)
                || s.display_name().to_lowercase().contains(&q)
                || s.capabilities
                    .iter()
                    .any(|c| c.name.to_lowercase().contains(&q))
        })
}

/// The agents a caller may see that pass the filter, described in full (the original server
/// listed whole descriptors, disabled ones included unless the filter says otherwise).
async fn filtered(c: &Call<'_>, f: &Filter) -> HubResult<Vec<Value>> {
    let all = c.hub().visible_agents(&c.p, true).await?;
    Ok(all
        .iter()
        .filter(|a| matches(a, f))
        .map(|a| agent_view(a, true))
        .collect())
}

async fn list_agents(c: &Call<'_>, a: ListArgs) -> HubResult<Value> {
    let mut f = a.filter.unwrap_or_default();
    f.tags = f.tags.or(a.top.tags).or(a.tag.map(|t| vec![t]));
    f.category = f.category.or(a.top.category);
    f.search = f.search.or(a.top.search);
    f.enabled = f
        .enabled
        .or(a.top.enabled)
        .or(a.include_disabled.and_then(|all| (!all).then_some(true)));
    Ok(json!({ "agents": filtered(c, &f).await? }))
}

async fn filter_agents(c: &Call<'_>, f: Filter) -> HubResult<Value> {
    let agents = filtered(c, &f).await?;
    Ok(json!({ "count": agents.len(), "agents": agents }))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployArgs {
    #[serde(default)]
    pub agent: Option<Map<String, Value>>,
    #[serde(default, alias = "card_url")]
    pub card_url: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    /// Default true: the original server replaced an agent deployed under the same id.
    #[serde(default)]
    pub replace: Option<bool>,
}

async fn deploy_agent(c: &Call<'_>, a: DeployArgs) -> HubResult<Value> {
    let replace = a.replace.unwrap_or(true);
    let entry = match (a.agent, a.card_url) {
        (Some(agent), None) => {
            let spec = descriptor::agent_spec(agent)?;
            c.hub().deploy_agent(&c.p, spec, replace).await?
        }
        (None, Some(url)) => {
            c.hub()
                .import_agent_card(&c.p, &url, a.id.as_deref(), replace)
                .await?
        }
        _ => {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                "agent is required for deploy_agent (or cardUrl, a remote A2A agent)",
            ));
        }
    };
    Ok(json!({ "deployed": true, "agentId": entry.spec.id, "agent": agent_view(&entry, true) }))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BatchArgs {
    pub agents: Vec<Value>,
}

async fn deploy_batch(c: &Call<'_>, a: BatchArgs) -> HubResult<Value> {
    // The same role check as deploy_agent (audited the same way), once: a caller who may not
    // deploy gets that answer, not a batch of failures.
    c.hub().authorize(&c.p, Action::AgentsWrite).await?;
    let (mut ok, mut errors, mut ids) = (0u64, Vec::new(), Vec::new());
    for agent in a.agents {
        let id = agent
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let deployed = match agent {
            Value::Object(m) => match descriptor::agent_spec(m) {
                Ok(spec) => c.hub().deploy_agent(&c.p, spec, true).await,
                Err(e) => Err(e),
            },
            _ => Err(HubError::new(ErrorCode::InvalidParams, "not an object")),
        };
        match deployed {
            Ok(entry) => {
                ok += 1;
                ids.push(entry.spec.id.clone());
            }
            Err(e) => errors.push(format!(
                "Failed to deploy {id}: {}: {}",
                e.code.name(),
                e.message
            )),
        }
    }
    Ok(json!({ "success": ok, "failed": errors.len(), "errors": errors, "deployed": ids }))
}

/// `{id, updates}` (the original) or `{agentId, changes}` (the tool's names).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateArgs {
    #[serde(alias = "agentId", alias = "agent_id")]
    pub id: String,
    #[serde(alias = "changes")]
    pub updates: Map<String, Value>,
}

/// A missing agent is `{<flag>: false}` in the original answers, not an error.
fn or_missing(r: HubResult<Value>, flag: &str, id: &str) -> HubResult<Value> {
    match r {
        Err(e) if e.code == ErrorCode::AgentNotFound => Ok(json!({ flag: false, "agentId": id })),
        other => other,
    }
}

async fn update_agent(c: &Call<'_>, a: UpdateArgs) -> HubResult<Value> {
    let patch = descriptor::normalize_patch(a.updates);
    let r = c.hub().update_agent(&c.p, &a.id, &patch).await;
    let r = r.map(|x| json!({ "updated": true, "agentId": a.id, "agent": agent_view(&x, true) }));
    or_missing(r, "updated", &a.id)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdArgs {
    #[serde(alias = "agentId", alias = "agent_id")]
    pub id: String,
}

async fn set_enabled(c: &Call<'_>, id: &str, on: bool) -> HubResult<Value> {
    let flag = if on { "enabled" } else { "disabled" };
    let r = c.hub().set_agent_enabled(&c.p, id, on).await;
    let r = r.map(|x| json!({ flag: true, "agentId": id, "agent": agent_view(&x, true) }));
    or_missing(r, flag, id)
}

async fn enable_agent(c: &Call<'_>, a: IdArgs) -> HubResult<Value> {
    set_enabled(c, &a.id, true).await
}

async fn disable_agent(c: &Call<'_>, a: IdArgs) -> HubResult<Value> {
    set_enabled(c, &a.id, false).await
}

async fn remove_agent(c: &Call<'_>, a: IdArgs) -> HubResult<Value> {
    let r = c.hub().remove_agent(&c.p, &a.id).await;
    or_missing(
        r.map(|()| json!({ "removed": true, "agentId": a.id })),
        "removed",
        &a.id,
    )
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Nothing {}

/// The original registry counts (`total`, `enabled`, `disabled`, `categories`, `tags`)
/// next to this hub's statistics.
async fn get_stats(c: &Call<'_>, _: Nothing) -> HubResult<Value> {
    let stats = c.hub().get_stats(&c.p).await?;
    let agents = c.hub().list_agents(true);
    let enabled = agents.iter().filter(|a| a.spec.enabled).count();
    let categories: BTreeSet<&str> = agents
        .iter()
        .map(|a| a.spec.category.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    let tags: BTreeSet<&str> = agents
        .iter()
        .flat_map(|a| a.spec.tags.iter().map(String::as_str))
        .collect();
    let mut v = serde_json::to_value(stats).map_err(HubError::internal)?;
    if let Value::Object(m) = &mut v {
        m.insert("total".into(), json!(agents.len()));
        m.insert("enabled".into(), json!(enabled));
        m.insert("disabled".into(), json!(agents.len() - enabled));
        m.insert("categories".into(), json!(categories.len()));
        m.insert("tags".into(), json!(tags.len()));
    }
    Ok(v)
}

/// `{discoveryFilters: {agentType, category, maxCost, permissions}}`: every capability of
/// every enabled agent as a tool (capabilities are this hub's tools; none has a cost).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverArgs {
    #[serde(default)]
    pub discovery_filters: Option<DiscoveryFilters>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryFilters {
    /// Text the agent id contains.
    #[serde(default)]
    pub agent_type: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// Every capability costs 0 here.
    #[serde(default)]
    pub max_cost: Option<f64>,
}

async fn discover_tools(c: &Call<'_>, a: DiscoverArgs) -> HubResult<Value> {
    let f = a.discovery_filters.unwrap_or_default();
    let agents = c.hub().visible_agents(&c.p, false).await?;
    let tools: Vec<Value> = agents
        .iter()
        .filter(|a| {
            f.agent_type
                .as_ref()
                .is_none_or(|t| a.spec.id.contains(t.as_str()))
        })
        .filter(|a| f.category.as_ref().is_none_or(|k| &a.spec.category == k))
        .filter(|_| f.max_cost.is_none_or(|m| m >= 0.0))
        .flat_map(|a| {
            a.spec.capabilities.iter().map(|cap| {
                json!({
                    "agentId": a.spec.id,
                    "toolName": cap.name,
                    "tool": {
                        "name": cap.name,
                        "description": cap.description,
                        "inputSchema": cap.input_schema,
                        "outputSchema": cap.output_schema,
                    },
                    "cost": 0,
                })
            })
        })
        .collect();
    Ok(json!({ "count": tools.len(), "tools": tools }))
}

// ---------------------------------------------------------------------------------------------
// Sessions and requests

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenArgs {
    /// The id to open the session under (default: a new one).
    #[serde(default, alias = "session_id")]
    pub session_id: Option<String>,
    #[serde(default, alias = "agent_id")]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

async fn open_session(c: &Call<'_>, a: OpenArgs) -> HubResult<Value> {
    let metadata = Value::Object(a.metadata.unwrap_or_default());
    let s = match a.session_id {
        Some(id) => {
            c.hub()
                .open_named_session(&c.p, &id, a.agent_id, metadata)
                .await?
        }
        None => c.hub().open_session(&c.p, a.agent_id, metadata).await?,
    };
    Ok(session_view(&s))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloseArgs {
    #[serde(default, alias = "session_id")]
    pub session_id: Option<String>,
}

async fn close_session(c: &Call<'_>, a: CloseArgs) -> HubResult<Value> {
    let id = required(a.session_id, "sessionId", "close_session")?;
    let s = c.hub().close_session(&c.p, &id).await?;
    let mut v = session_view(&s);
    if let Value::Object(m) = &mut v {
        m.insert("closed".into(), Value::Bool(true));
    }
    Ok(v)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestIdArgs {
    #[serde(default, alias = "request_id")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, alias = "include_events")]
    pub include_events: bool,
}

/// `{canceled: true}` when this call canceled it, `{canceled: false}` when it had already
/// finished; the request's view next to it.
async fn cancel(c: &Call<'_>, a: RequestIdArgs) -> HubResult<Value> {
    let id = required(a.request_id, "requestId", "cancel")?;
    let (rec, canceled) = match c.hub().cancel(&c.p, &id, a.reason).await {
        Ok(rec) => {
            let done = rec.state == RequestState::Canceled;
            (rec, done)
        }
        Err(e) if e.code == ErrorCode::NotCancelable => {
            (c.hub().get_status(&c.p, &id).await?, false)
        }
        Err(e) => return Err(e),
    };
    let mut v = invocation_view(c.ctx, &rec);
    if let Value::Object(m) = &mut v {
        m.insert("canceled".into(), Value::Bool(canceled));
    }
    Ok(v)
}

/// The request's view, with the original record's `id` next to `requestId`.
async fn get_status(c: &Call<'_>, a: RequestIdArgs) -> HubResult<Value> {
    let id = required(a.request_id, "requestId", "get_status")?;
    let args = super::requests::GetStatusArgs {
        request_id: id.clone(),
        include_events: a.include_events,
    };
    let mut v = super::requests::get_status(c, args).await?;
    if let Value::Object(m) = &mut v {
        m.insert("id".into(), Value::String(id));
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Permissions

/// The original permission arguments: `id` is the acting agent (granter, requester,
/// approver or revoker), `targetAgentId` the other party.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermArgs {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, alias = "target_agent_id")]
    pub target_agent_id: Option<String>,
    /// This hub's name for the agent the permission is about.
    #[serde(default, alias = "agent_id")]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub permission: Option<String>,
    #[serde(default)]
    pub delegable: bool,
    #[serde(default, alias = "expires_in")]
    pub expires_in: Option<ExpiresIn>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default, alias = "permission_request_id")]
    pub request_id: Option<String>,
    #[serde(default, alias = "grant_id")]
    pub grant_id: Option<String>,
    /// approve_permission: false denies.
    #[serde(default)]
    pub approve: Option<bool>,
}

/// An agent acts as itself: `id` naming another agent is refused. Operators act as
/// themselves whatever `id` says (grants record the caller).
fn acting_as(p: &Principal, id: Option<&str>) -> HubResult<()> {
    match (&p.agent, id) {
        (Some(own), Some(id)) if own.agent_id != id => Err(HubError::new(
            ErrorCode::Forbidden,
            format!("agent {:?} cannot act as agent {id:?}", own.agent_id),
        )),
        _ => Ok(()),
    }
}

async fn grant_permission(c: &Call<'_>, a: PermArgs) -> HubResult<Value> {
    acting_as(&c.p, a.id.as_deref())?;
    let to = required(
        a.target_agent_id.or(a.agent_id),
        "targetAgentId",
        "grant_permission",
    )?;
    let perm = required(a.permission, "permission", "grant_permission")?;
    let exp = expires(a.expires_in)?;
    let g = c
        .hub()
        .grant_permission(&c.p, &to, &perm, a.delegable, exp)
        .await?;
    Ok(json!({ "success": true, "grantId": g.id, "grant": to_json(&GrantView::at(&g, now_ms())) }))
}

async fn request_permission(c: &Call<'_>, a: PermArgs) -> HubResult<Value> {
    // The requester is the agent that needs the permission (`id`); decisions are the
    // operators' here, so `targetAgentId` only names who was asked.
    let who = a.id.or(a.agent_id);
    let perm = required(a.permission, "permission", "request_permission")?;
    let reason = a.reason.unwrap_or_default();
    let r = c
        .hub()
        .request_permission(&c.p, who.as_deref(), &perm, &reason, None)
        .await?;
    Ok(
        json!({ "success": true, "requestId": r.id, "request": to_json(&PermissionRequestView::from(&r)) }),
    )
}

async fn approve_permission(c: &Call<'_>, a: PermArgs) -> HubResult<Value> {
    acting_as(&c.p, a.id.as_deref())?;
    let rid = required(a.request_id, "requestId", "approve_permission")?;
    let exp = expires(a.expires_in)?;
    let approve = a.approve.unwrap_or(true);
    let (r, g) = c
        .hub()
        .decide_permission(&c.p, &rid, approve, a.delegable, exp)
        .await?;
    let now = now_ms();
    Ok(json!({
        "success": true,
        "grantId": g.as_ref().map(|g| g.id.clone()),
        "request": to_json(&PermissionRequestView::from(&r)),
        "grant": g.map(|g| to_json(&GrantView::at(&g, now))),
    }))
}

async fn revoke_permission(c: &Call<'_>, a: PermArgs) -> HubResult<Value> {
    acting_as(&c.p, a.id.as_deref())?;
    let gid = required(a.grant_id, "grantId", "revoke_permission")?;
    let g = c.hub().revoke_permission(&c.p, &gid).await?;
    Ok(json!({ "success": true, "grant": to_json(&GrantView::at(&g, now_ms())) }))
}

/// `{permissions: {base, granted, effective}, pendingRequests}` as the original answered,
/// and this hub's `grants` and `requests`. Agents have no base permissions here.
async fn get_permissions(c: &Call<'_>, a: PermArgs) -> HubResult<Value> {
    let id = a.id.or(a.agent_id);
    let perms = c.hub().get_permissions(&c.p, id.as_deref()).await?;
    let now = now_ms();
    let active: Vec<_> = perms.grants.iter().filter(|g| g.is_active(now)).collect();
    let effective: BTreeSet<&str> = active.iter().map(|g| g.permission.as_str()).collect();
    let pending: Vec<Value> = perms
        .requests
        .iter()
        .filter(|r| r.status == grants::RequestStatus::Pending)
        .map(|r| to_json(&PermissionRequestView::from(r)))
        .collect();
    Ok(json!({
        "permissions": {
            "base": [],
            "granted": active.iter().map(|g| to_json(&GrantView::at(g, now))).collect::<Vec<_>>(),
            "effective": effective,
        },
        "pendingRequests": pending,
        "grants": perms.grants.iter().map(|g| to_json(&GrantView::at(g, now))).collect::<Vec<_>>(),
        "requests": perms.requests.iter().map(|r| to_json(&PermissionRequestView::from(r))).collect::<Vec<_>>(),
    }))
}

/// `{providing, consuming}`: the grants that let other agents invoke agent `id`, and the
/// grants agent `id` holds, as the original's sharing agreements (a grant covers every
/// capability of its target, so `toolName` is `*`).
async fn get_sharing_agreements(c: &Call<'_>, a: IdArgs) -> HubResult<Value> {
    let perms = match c.hub().get_permissions(&c.p, None).await {
        Err(e) if e.code.kind() == ErrorKind::Auth => {
            // An agent may see its own side (what it holds) without reading every grant.
            c.hub()
                .get_permissions(&c.p, Some(&a.id))
                .await
                .map_err(|_| e)?
        }
        other => other?,
    };
    let now = now_ms();
    let agreement = |g: &grants::GrantRecord| {
        let provider = g.permission.splitn(3, ':').nth(2).unwrap_or("");
        json!({
            "id": g.id,
            "providerAgentId": provider,
            "consumerAgentId": g.agent_id,
            "toolName": "*",
            "permissions": [g.permission],
            "expiresAt": g.expires_at,
            "createdAt": g.created_at,
            "active": g.is_active(now),
        })
    };
    let wanted = grants::invoke_permission(&a.id);
    let providing: Vec<Value> = perms
        .grants
        .iter()
        .filter(|g| g.agent_id != a.id && g.covers(&wanted))
        .map(agreement)
        .collect();
    let consuming: Vec<Value> = perms
        .grants
        .iter()
        .filter(|g| g.agent_id == a.id)
        .map(agreement)
        .collect();
    Ok(json!({ "providing": providing, "consuming": consuming }))
}

// ---------------------------------------------------------------------------------------------
// The handlers, for the tool table and `control.rs`

pub const LIST_AGENTS: Handler = handler!("list_agents", ListArgs, list_agents);
pub const FILTER_AGENTS: Handler = handler!("filter_agents", Filter, filter_agents);
pub const DEPLOY_AGENT: Handler = handler!("deploy_agent", DeployArgs, deploy_agent);
pub const DEPLOY_BATCH: Handler = handler!("deploy_batch", BatchArgs, deploy_batch);
pub const UPDATE_AGENT: Handler = handler!("update_agent", UpdateArgs, update_agent);
pub const ENABLE_AGENT: Handler = handler!("enable_agent", IdArgs, enable_agent);
pub const DISABLE_AGENT: Handler = handler!("disable_agent", IdArgs, disable_agent);
pub const REMOVE_AGENT: Handler = handler!("remove_agent", IdArgs, remove_agent);
pub const GET_STATS: Handler = handler!("get_stats", Nothing, get_stats);
pub const DISCOVER_TOOLS: Handler = handler!("discover_tools", DiscoverArgs, discover_tools);
pub const OPEN_SESSION: Handler = handler!("open_session", OpenArgs, open_session);
pub const CLOSE_SESSION: Handler = handler!("close_session", CloseArgs, close_session);
pub const CANCEL: Handler = handler!("cancel", RequestIdArgs, cancel);
pub const GET_STATUS: Handler = handler!("get_status", RequestIdArgs, get_status);
pub const GRANT_PERMISSION: Handler = handler!("grant_permission", PermArgs, grant_permission);
pub const REQUEST_PERMISSION: Handler =
    handler!("request_permission", PermArgs, request_permission);
pub const APPROVE_PERMISSION: Handler =
    handler!("approve_permission", PermArgs, approve_permission);
pub const REVOKE_PERMISSION: Handler = handler!("revoke_permission", PermArgs, revoke_permission);
pub const GET_PERMISSIONS: Handler = handler!("get_permissions", PermArgs, get_permissions);
pub const GET_SHARING_AGREEMENTS: Handler =
    handler!("get_sharing_agreements", IdArgs, get_sharing_agreements);
