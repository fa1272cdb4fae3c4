//! Views of agents: the summary and detailed agent, the list, and the agent request bodies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hub::AgentEntry;
use crate::model::{AgentSource, AgentSpec};

/// One capability of an agent. The schemas are shown in the detailed view only.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CapabilityView {
    pub name: String,
    pub description: String,
    /// JSON Schema the input must satisfy (detailed view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// JSON Schema of the result, when the agent declares one (detailed view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

/// Where an agent's definition comes from: the catalog files or a run-time change.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentSourceView {
    Catalog,
    Runtime,
}

/// An agent as every transport shows it. The detailed form adds the capability schemas and
/// the full definition, with secret values (process `env`, a2a `headers`) shown as `***` for
/// every role ([`crate::redact`]); that definition can be deployed back as it is.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AgentView {
    pub id: String,
    /// Display name (the id when the definition has no name).
    pub name: String,
    pub version: String,
    pub description: String,
    pub category: String,
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Executor kind: `builtin`, `process` or `a2a`.
    pub executor: String,
    pub capabilities: Vec<CapabilityView>,
    pub source: AgentSourceView,
    /// The deployable definition, secrets redacted (detailed view only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<AgentSpec>,
}

impl AgentView {
    /// The summary view (lists).
    pub fn summary(a: &AgentEntry) -> Self {
        Self::build(a, false)
    }

    /// The detailed view (describe, deploy, update answers).
    pub fn detailed(a: &AgentEntry) -> Self {
        Self::build(a, true)
    }

    fn build(a: &AgentEntry, detailed: bool) -> Self {
        let spec = &a.spec;
        AgentView {
            id: spec.id.clone(),
            name: spec.display_name().to_string(),
            version: spec.version.clone(),
            description: spec.description.clone(),
            category: spec.category.clone(),
            tags: spec.tags.clone(),
            enabled: spec.enabled,
            executor: spec.executor.kind().to_string(),
            capabilities: spec
                .capabilities
                .iter()
                .map(|c| CapabilityView {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    input_schema: detailed.then(|| c.input_schema.clone()),
                    output_schema: c.output_schema.clone().filter(|_| detailed),
                })
                .collect(),
            source: match a.source {
                AgentSource::Catalog => AgentSourceView::Catalog,
                AgentSource::Runtime => AgentSourceView::Runtime,
            },
            definition: detailed.then(|| crate::redact::redacted_spec(spec)),
        }
    }
}

/// `GET /api/v1/agents`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AgentList {
    pub agents: Vec<AgentView>,
}

impl AgentList {
    pub fn summaries<'a>(agents: impl IntoIterator<Item = &'a AgentEntry>) -> Self {
        AgentList {
            agents: agents.into_iter().map(AgentView::summary).collect(),
        }
    }
}

/// The answer to removing an agent.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RemovedAgent {
    /// The id of the removed agent.
    pub removed: String,
}

/// Query of `GET /api/v1/agents`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListAgentsQuery {
    /// `true` lists disabled agents too.
    #[serde(default)]
    pub include_disabled: Option<String>,
}

/// Query of `POST /api/v1/agents`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployQuery {
    /// `true` replaces an agent with the same id.
    #[serde(default)]
    pub replace: Option<String>,
}

/// Whether a query flag is the string `true` (any other value, or none, is false).
pub fn flag(v: &Option<String>) -> bool {
    v.as_deref() == Some("true")
}

/// Body of `POST /api/v1/agents/import-card`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportCardBody {
    /// URL of the remote Agent Card (or the agent's base URL).
    pub card_url: String,
    /// Agent id to register under (default: derived from the card's name).
    #[serde(default)]
    pub id: Option<String>,
    /// Replace an agent with the same id.
    #[serde(default)]
    pub replace: bool,
}

/// Body of `PATCH /api/v1/agents/{id}`: a JSON merge patch of the agent definition.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct AgentPatchBody(pub super::JsonObject);
