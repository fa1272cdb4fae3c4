//! The one error-code registry.
//!
//! Every failure a client can see is a [`HubError`] carrying an [`ErrorCode`]. The code fixes
//! the stable snake_case name, the kind, the HTTP status and the JSON-RPC code, so REST, MCP,
//! A2A and WebSocket close frames all render from this single mapping. Client mistakes carry
//! a message that names the fix; internal failures carry a generic message and the detail goes
//! to the log.

use std::fmt;

/// Broad classes of failure; they decide how a transport renders an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Auth,
    NotFound,
    Conflict,
    Unavailable,
    Internal,
}

macro_rules! error_codes {
    ($( $variant:ident => ($name:literal, $kind:ident, $http:literal, $rpc:literal) ),* $(,)?) => {
        /// Stable error codes. Names never change once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $( $variant ),* }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant ),* ];
            pub fn name(self) -> &'static str { match self { $( ErrorCode::$variant => $name ),* } }
            pub fn kind(self) -> ErrorKind { match self { $( ErrorCode::$variant => ErrorKind::$kind ),* } }
            pub fn http_status(self) -> u16 { match self { $( ErrorCode::$variant => $http ),* } }
            /// JSON-RPC error code. Application codes live outside -32768..-32000, except the
            /// JSON-RPC standard ones (-32600/-32601/-32602/-32603).
            pub fn rpc_code(self) -> i32 { match self { $( ErrorCode::$variant => $rpc ),* } }
        }
    };
}

error_codes! {
    InvalidJson => ("invalid_json", InvalidRequest, 400, -32700),
    InvalidRequest => ("invalid_request", InvalidRequest, 400, -32600),
    InvalidParams => ("invalid_params", InvalidRequest, 400, -32602),
    InputValidation => ("input_validation_failed", InvalidRequest, 422, -32602),
    PayloadTooLarge => ("payload_too_large", InvalidRequest, 413, -32600),
    UnsupportedMediaType => ("unsupported_media_type", InvalidRequest, 415, 41500),
    Unauthenticated => ("unauthenticated", Auth, 401, 40100),
    Forbidden => ("forbidden", Auth, 403, 40300),
    OriginNotAllowed => ("origin_not_allowed", Auth, 403, 40301),
    LoopbackOnly => ("loopback_only", Auth, 403, 40302),
    HostNotAllowed => ("host_not_allowed", Auth, 421, 42100),
    AgentNotFound => ("agent_not_found", NotFound, 404, 40401),
    CapabilityNotFound => ("capability_not_found", NotFound, 404, 40402),
    RequestNotFound => ("request_not_found", NotFound, 404, 40403),
    SessionNotFound => ("session_not_found", NotFound, 404, 40404),
    PushConfigNotFound => ("push_config_not_found", NotFound, 404, 40405),
    RouteNotFound => ("not_found", NotFound, 404, -32601),
    AgentDisabled => ("agent_disabled", Conflict, 409, 40901),
    AgentExists => ("agent_exists", Conflict, 409, 40902),
    SessionClosed => ("session_closed", Conflict, 409, 40903),
    IdempotencyConflict => ("idempotency_conflict", Conflict, 409, 40904),
    NotCancelable => ("not_cancelable", Conflict, 409, 40905),
    QueueFull => ("queue_full", Unavailable, 503, 50301),
    RateLimited => ("rate_limited", Unavailable, 429, 42900),
    ShuttingDown => ("shutting_down", Unavailable, 503, 50302),
    StoreUnavailable => ("store_unavailable", Unavailable, 503, 50303),
    Timeout => ("timeout", Unavailable, 504, 50401),
    Internal => ("internal_error", Internal, 500, -32603),
}

/// An error a client can be shown.
#[derive(Debug, Clone, thiserror::Error)]
pub struct HubError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl HubError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// An internal failure: the detail is logged, the client sees a generic message.
    pub fn internal(detail: impl fmt::Display) -> Self {
        let reference = uuid::Uuid::new_v4().simple().to_string();
        tracing::error!(error_ref = %reference, "internal error: {detail}");
        Self::new(
            ErrorCode::Internal,
            format!("internal error (reference {reference}); see the server log"),
        )
    }

    /// JSON body used by REST and as `data` on JSON-RPC errors.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "code": self.code.name(),
                "message": self.message,
            }
        })
    }
}

pub type HubResult<T> = Result<T, HubError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_rpc_codes_are_unique() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        let app_codes: Vec<_> = ErrorCode::ALL
            .iter()
            .map(|c| c.rpc_code())
            .filter(|c| !(-32768..=-32000).contains(c))
            .collect();
        let unique: HashSet<_> = app_codes.iter().collect();
        assert_eq!(unique.len(), app_codes.len());
    }
}
