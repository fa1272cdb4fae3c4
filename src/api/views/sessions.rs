//! Views of sessions and the body that opens one.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JsonObject, time};
use crate::model::SessionRecord;

/// A session as every transport shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct SessionView {
    pub session_id: String,
    /// `false` once closed.
    pub open: bool,
    /// The agent the session is bound to, if any.
    pub agent_id: Option<String>,
    pub created_at: String,
    pub closed_at: Option<String>,
    /// The metadata given when it was opened.
    pub metadata: Value,
}

impl From<&SessionRecord> for SessionView {
    fn from(s: &SessionRecord) -> Self {
        SessionView {
            session_id: s.id.clone(),
            open: s.closed_at.is_none(),
            agent_id: s.agent_id.clone(),
            created_at: time(s.created_at),
            closed_at: s.closed_at.map(time),
            metadata: serde_json::from_str::<Value>(&s.metadata).unwrap_or(Value::Null),
        }
    }
}

/// Body of `POST /api/v1/sessions` (may be empty).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionBody {
    /// Bind the session to one agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Free-form metadata kept with the session.
    #[serde(default)]
    pub metadata: Option<JsonObject>,
}
