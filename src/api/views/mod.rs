//! Typed views: the JSON shapes of the front doors, as Rust types.
//!
//! Every response a transport sends about a hub record is one of these types, built from the
//! record in one place (`From<&Record>` or a `new` that takes the few extra facts a view needs,
//! such as the current time or the stream URL). Request bodies of the REST API are here too.
//! All derive `schemars::JsonSchema`: the OpenAPI document (`api::openapi`) and, later, the MCP
//! tool schemas are generated from them, so the shapes are described exactly once.
//!
//! Rules: field names are camelCase; an absent optional fact is `null` unless the field says it
//! is omitted (`skip_serializing_if`); views hold no business rules and do no I/O. Responses
//! are rendered through [`to_json`], so object keys come out sorted, as they always have.
//!
//! Who uses it: `api::rest` (every response), `api::openapi` (schemas), `api::ops`, the CLI, and
//! the shared renderers in `api` (`agent_view`, `session_view`, `invocation_view`) that MCP
//! still calls.

mod admin;
mod agents;
mod ops;
mod requests;
mod sessions;

pub use admin::*;
pub use agents::*;
pub use ops::*;
pub use requests::*;
pub use sessions::*;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

/// A view as a JSON value (keys sorted). Views are plain data, so this cannot fail in
/// practice; a failure renders as `null` rather than panicking.
pub fn to_json<T: Serialize>(view: &T) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// The error body every REST (and ops) error uses: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable snake_case error code from the error registry (e.g. `agent_not_found`).
    pub code: String,
    /// What failed and how to fix it.
    pub message: String,
}

impl From<&crate::error::HubError> for ErrorBody {
    fn from(e: &crate::error::HubError) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: e.code.name().to_string(),
                message: e.message.clone(),
            },
        }
    }
}

/// Any JSON object (free-form metadata, agent input, a JSON merge patch).
pub type JsonObject = serde_json::Map<String, Value>;

/// An RFC 3339 timestamp (UTC, milliseconds), from milliseconds since the epoch.
pub(crate) fn time(ms: i64) -> String {
    crate::model::rfc3339(ms)
}
