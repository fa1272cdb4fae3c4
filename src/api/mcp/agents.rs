//! Agent tools: list, describe, deploy, update, enable, disable, remove, and the hub's
//! statistics. Each parses its arguments, makes one hub call and renders the shared views.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Call;
use super::descriptor;
use crate::api::agent_view;
use crate::error::{ErrorCode, HubError, HubResult};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListAgentsArgs {
    /// Include disabled agents (default false).
    #[serde(default, alias = "include_disabled")]
    pub include_disabled: bool,
    /// Only agents of this category.
    #[serde(default)]
    pub category: Option<String>,
    /// Only agents with this tag.
    #[serde(default)]
    pub tag: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentIdArgs {
    /// The agent's id.
    #[serde(alias = "agent_id", alias = "id")]
    pub agent_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeployAgentArgs {
    /// The agent definition (id, name, capabilities with JSON Schemas, executor, ...), as in
    /// a catalog file or as describe_agent shows it. Give this or `cardUrl`.
    #[serde(default)]
    pub agent: Option<Map<String, Value>>,
    /// Instead of `agent`: the URL of a remote A2A agent (its Agent Card, or its base URL).
    /// The hub hosts it as an `a2a` agent whose capabilities are the card's skills.
    #[serde(default, alias = "card_url")]
    pub card_url: Option<String>,
    /// With `cardUrl`: the id to register it under (default: derived from the card's name).
    #[serde(default)]
    pub id: Option<String>,
    /// Replace an existing agent with the same id.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAgentArgs {
    #[serde(alias = "agent_id", alias = "id")]
    pub agent_id: String,
    /// A JSON merge patch (RFC 7396) applied to the agent's definition.
    pub changes: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

pub async fn list_agents(c: &Call<'_>, a: ListAgentsArgs) -> HubResult<Value> {
    let all = c.hub().visible_agents(&c.p, a.include_disabled).await?;
    let agents: Vec<Value> = all
        .iter()
        .filter(|x| a.category.as_ref().is_none_or(|k| &x.spec.category == k))
        .filter(|x| a.tag.as_ref().is_none_or(|t| x.spec.tags.contains(t)))
        .map(|x| agent_view(x, false))
        .collect();
    Ok(json!({ "agents": agents }))
}

pub async fn describe_agent(c: &Call<'_>, a: AgentIdArgs) -> HubResult<Value> {
    let x = c.hub().describe_agent(&c.p, &a.agent_id).await?;
    Ok(agent_view(&x, true))
}

pub async fn deploy_agent(c: &Call<'_>, a: DeployAgentArgs) -> HubResult<Value> {
    let hub = c.hub();
    let entry = match a {
        DeployAgentArgs {
            agent: None,
            card_url: Some(url),
            id,
            replace,
        } => {
            hub.import_agent_card(&c.p, &url, id.as_deref(), replace)
                .await?
        }
        DeployAgentArgs {
            agent: Some(agent),
            card_url: None,
            id: None,
            replace,
        } => {
            let spec = descriptor::agent_spec(agent)?;
            hub.deploy_agent(&c.p, spec, replace).await?
        }
        _ => {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                "give either `agent` (a definition) or `cardUrl` (a remote A2A agent, optionally with `id`)",
            ));
        }
    };
    Ok(agent_view(&entry, true))
}

pub async fn update_agent(c: &Call<'_>, a: UpdateAgentArgs) -> HubResult<Value> {
    let patch = descriptor::normalize_patch(a.changes);
    let x = c.hub().update_agent(&c.p, &a.agent_id, &patch).await?;
    Ok(agent_view(&x, true))
}

pub async fn enable_agent(c: &Call<'_>, a: AgentIdArgs) -> HubResult<Value> {
    let x = c.hub().set_agent_enabled(&c.p, &a.agent_id, true).await?;
    Ok(agent_view(&x, true))
}

pub async fn disable_agent(c: &Call<'_>, a: AgentIdArgs) -> HubResult<Value> {
    let x = c.hub().set_agent_enabled(&c.p, &a.agent_id, false).await?;
    Ok(agent_view(&x, true))
}

pub async fn remove_agent(c: &Call<'_>, a: AgentIdArgs) -> HubResult<Value> {
    c.hub().remove_agent(&c.p, &a.agent_id).await?;
    Ok(json!({ "removed": a.agent_id }))
}

pub async fn get_stats(c: &Call<'_>, _: NoArgs) -> HubResult<Value> {
    let st = c.hub().get_stats(&c.p).await?;
    serde_json::to_value(st).map_err(HubError::internal)
}
