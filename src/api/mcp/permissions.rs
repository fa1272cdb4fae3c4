//! Permission tools: grant, request, approve or deny, revoke, and read grants and requests
//! (permissions of the form `agent:invoke:<agent id or glob>`, enforced on handoffs).

use std::time::Duration;

use crate::api::views::{GrantView, PermissionRequestView, to_json};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Call;
use crate::api::duration_param;
use crate::error::HubResult;
use crate::model::now_ms;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantArgs {
    /// The agent receiving the permission.
    #[serde(alias = "agent_id")]
    pub agent_id: String,
    /// e.g. `agent:invoke:billing` (the target may be a glob: `agent:invoke:billing-*`).
    pub permission: String,
    /// The holder may grant the same permission on.
    #[serde(default)]
    pub delegable: bool,
    /// How long the grant lasts, e.g. `1h`, `7d` (default: until revoked).
    #[serde(default, alias = "expires_in")]
    pub expires_in: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestPermissionArgs {
    /// The agent that needs the permission (an agent's own process may omit it).
    #[serde(default, alias = "agent_id")]
    pub agent_id: Option<String>,
    pub permission: String,
    #[serde(default)]
    pub reason: String,
    /// Wait for the decision (bounded by timeoutMs, default 60000).
    #[serde(default)]
    pub wait: bool,
    #[serde(default, alias = "timeout_ms")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveArgs {
    #[serde(alias = "permission_request_id", alias = "requestId")]
    pub permission_request_id: String,
    /// false denies the request.
    #[serde(default = "yes")]
    pub approve: bool,
    #[serde(default)]
    pub delegable: bool,
    #[serde(default, alias = "expires_in")]
    pub expires_in: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantIdArgs {
    #[serde(alias = "grant_id")]
    pub grant_id: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetPermissionsArgs {
    /// Only this agent's grants and requests.
    #[serde(default, alias = "agent_id")]
    pub agent_id: Option<String>,
}

pub async fn grant(c: &Call<'_>, a: GrantArgs) -> HubResult<Value> {
    let exp = duration_param("expiresIn", &a.expires_in)?;
    let g = c
        .hub()
        .grant_permission(&c.p, &a.agent_id, &a.permission, a.delegable, exp)
        .await?;
    Ok(to_json(&GrantView::at(&g, now_ms())))
}

pub async fn request(c: &Call<'_>, a: RequestPermissionArgs) -> HubResult<Value> {
    let wait = a
        .wait
        .then(|| Duration::from_millis(a.timeout_ms.unwrap_or(60_000)));
    let r = c
        .hub()
        .request_permission(&c.p, a.agent_id.as_deref(), &a.permission, &a.reason, wait)
        .await?;
    Ok(to_json(&PermissionRequestView::from(&r)))
}

pub async fn approve(c: &Call<'_>, a: ApproveArgs) -> HubResult<Value> {
    let exp = duration_param("expiresIn", &a.expires_in)?;
    let (r, g) = c
        .hub()
        .decide_permission(&c.p, &a.permission_request_id, a.approve, a.delegable, exp)
        .await?;
    Ok(json!({
        "request": to_json(&PermissionRequestView::from(&r)),
        "grant": g.map(|g| to_json(&GrantView::at(&g, now_ms()))),
    }))
}

pub async fn revoke(c: &Call<'_>, a: GrantIdArgs) -> HubResult<Value> {
    let g = c.hub().revoke_permission(&c.p, &a.grant_id).await?;
    Ok(to_json(&GrantView::at(&g, now_ms())))
}

pub async fn get(c: &Call<'_>, a: GetPermissionsArgs) -> HubResult<Value> {
    let perms = c.hub().get_permissions(&c.p, a.agent_id.as_deref()).await?;
    let now = now_ms();
    Ok(json!({
        "grants": perms.grants.iter().map(|g| to_json(&GrantView::at(g, now))).collect::<Vec<_>>(),
        "requests": perms.requests.iter().map(|r| to_json(&PermissionRequestView::from(r))).collect::<Vec<_>>(),
    }))
}
