//! A2A protocol vocabulary shared by the server adapter (`api::a2a`) and the client side
//! (`net::a2a_peer`, used by the `a2a` executor): versions, method names, task states, error
//! codes and the conversions between the 1.0 and 0.3 JSON shapes ([`v03`]).
//!
//! Pure data handling on `serde_json::Value`: no I/O, no hub types (the HTTP side is in
//! `net`). The 1.0 shape (PascalCase methods, `TASK_STATE_*`/`ROLE_*` enums, flattened parts,
//! no `kind`) is the canonical in-memory form; 0.3 peers are served and spoken to by
//! converting at the edge. Facts come from the A2A 1.0.1 specification and from running the official a2a-sdk
//! (see `/work/shared/PROTOCOLS.md` §2 and `src/api/a2a/README.md`).

pub mod v03;

use serde_json::{Value, json};

/// The request header that carries the protocol version (`Major.Minor`).
pub const VERSION_HEADER: &str = "a2a-version";

/// Protocol versions this build speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V03,
    V10,
}

impl Version {
    /// Parses an `A2A-Version` value (or a card's `protocolVersion`). `1`, `1.0` and `1.0.x`
    /// are 1.0; `0.3` and `0.3.x` are 0.3; anything else is unsupported (`None`).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let mut it = s.split('.');
        let major = it.next()?.parse::<u32>().ok()?;
        let minor = match it.next() {
            Some(m) => m.parse::<u32>().ok()?,
            None => 0,
        };
        if let Some(patch) = it.next() {
            patch.parse::<u32>().ok()?;
        }
        if it.next().is_some() {
            return None;
        }
        match (major, minor) {
            (1, 0) => Some(Version::V10),
            (0, 3) => Some(Version::V03),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V03 => "0.3",
            Version::V10 => "1.0",
        }
    }
}

/// The JSON-RPC methods of A2A, by their meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    SendMessage,
    SendStreamingMessage,
    GetTask,
    ListTasks,
    CancelTask,
    SubscribeToTask,
    CreatePushConfig,
    GetPushConfig,
    ListPushConfigs,
    DeletePushConfig,
    GetExtendedCard,
}

impl Method {
    pub const ALL: [Method; 11] = [
        Method::SendMessage,
        Method::SendStreamingMessage,
        Method::GetTask,
        Method::ListTasks,
        Method::CancelTask,
        Method::SubscribeToTask,
        Method::CreatePushConfig,
        Method::GetPushConfig,
        Method::ListPushConfigs,
        Method::DeletePushConfig,
        Method::GetExtendedCard,
    ];

    /// The wire name in a protocol version (`None`: the version has no such method).
    pub fn name(self, v: Version) -> Option<&'static str> {
        match v {
            Version::V10 => Some(match self {
                Method::SendMessage => "SendMessage",
                Method::SendStreamingMessage => "SendStreamingMessage",
                Method::GetTask => "GetTask",
                Method::ListTasks => "ListTasks",
                Method::CancelTask => "CancelTask",
                Method::SubscribeToTask => "SubscribeToTask",
                Method::CreatePushConfig => "CreateTaskPushNotificationConfig",
                Method::GetPushConfig => "GetTaskPushNotificationConfig",
                Method::ListPushConfigs => "ListTaskPushNotificationConfigs",
                Method::DeletePushConfig => "DeleteTaskPushNotificationConfig",
                Method::GetExtendedCard => "GetExtendedAgentCard",
            }),
            Version::V03 => match self {
                Method::SendMessage => Some("message/send"),
                Method::SendStreamingMessage => Some("message/stream"),
                Method::GetTask => Some("tasks/get"),
                Method::ListTasks => None,
                Method::CancelTask => Some("tasks/cancel"),
                Method::SubscribeToTask => Some("tasks/resubscribe"),
                Method::CreatePushConfig => Some("tasks/pushNotificationConfig/set"),
                Method::GetPushConfig => Some("tasks/pushNotificationConfig/get"),
                Method::ListPushConfigs => Some("tasks/pushNotificationConfig/list"),
                Method::DeletePushConfig => Some("tasks/pushNotificationConfig/delete"),
                Method::GetExtendedCard => Some("agent/getAuthenticatedExtendedCard"),
            },
        }
    }

    /// Which method a wire name is, and which version's naming it uses.
    pub fn parse(name: &str) -> Option<(Method, Version)> {
        for v in [Version::V10, Version::V03] {
            for m in Method::ALL {
                if m.name(v) == Some(name) {
                    return Some((m, v));
                }
            }
        }
        None
    }

    pub fn is_streaming(self) -> bool {
        matches!(self, Method::SendStreamingMessage | Method::SubscribeToTask)
    }
}

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Unspecified,
    Submitted,
    Working,
    InputRequired,
    AuthRequired,
    Completed,
    Failed,
    Canceled,
    Rejected,
}

impl TaskState {
    const TABLE: [(TaskState, &'static str, &'static str); 9] = [
        (TaskState::Unspecified, "TASK_STATE_UNSPECIFIED", "unknown"),
        (TaskState::Submitted, "TASK_STATE_SUBMITTED", "submitted"),
        (TaskState::Working, "TASK_STATE_WORKING", "working"),
        (
            TaskState::InputRequired,
            "TASK_STATE_INPUT_REQUIRED",
            "input-required",
        ),
        (
            TaskState::AuthRequired,
            "TASK_STATE_AUTH_REQUIRED",
            "auth-required",
        ),
        (TaskState::Completed, "TASK_STATE_COMPLETED", "completed"),
        (TaskState::Failed, "TASK_STATE_FAILED", "failed"),
        (TaskState::Canceled, "TASK_STATE_CANCELED", "canceled"),
        (TaskState::Rejected, "TASK_STATE_REJECTED", "rejected"),
    ];

    pub fn v10(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(s, _, _)| *s == self)
            .map_or("TASK_STATE_UNSPECIFIED", |(_, n, _)| n)
    }

    pub fn v03(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(s, _, _)| *s == self)
            .map_or("unknown", |(_, _, n)| n)
    }

    /// Parses either spelling (1.0 `TASK_STATE_WORKING` or 0.3 `working`). 0.3 also wrote
    /// `cancelled` in some peers.
    pub fn parse(s: &str) -> Option<TaskState> {
        if s == "cancelled" {
            return Some(TaskState::Canceled);
        }
        Self::TABLE
            .iter()
            .find(|(_, a, b)| *a == s || *b == s)
            .map(|(t, _, _)| *t)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }

    /// Input-required and auth-required: the task waits for the client.
    pub fn is_interrupted(self) -> bool {
        matches!(self, TaskState::InputRequired | TaskState::AuthRequired)
    }
}

/// A2A JSON-RPC error codes (specification §2.6 of PROTOCOLS.md) and their 1.0 `reason`.
pub mod code {
    pub const PARSE_ERROR: i32 = -32700;
    pub const INVALID_REQUEST: i32 = -32600;
    pub const METHOD_NOT_FOUND: i32 = -32601;
    pub const INVALID_PARAMS: i32 = -32602;
    pub const INTERNAL_ERROR: i32 = -32603;
    pub const TASK_NOT_FOUND: i32 = -32001;
    pub const TASK_NOT_CANCELABLE: i32 = -32002;
    pub const PUSH_NOTIFICATION_NOT_SUPPORTED: i32 = -32003;
    pub const UNSUPPORTED_OPERATION: i32 = -32004;
    pub const CONTENT_TYPE_NOT_SUPPORTED: i32 = -32005;
    pub const INVALID_AGENT_RESPONSE: i32 = -32006;
    pub const EXTENDED_CARD_NOT_CONFIGURED: i32 = -32007;
    pub const EXTENSION_SUPPORT_REQUIRED: i32 = -32008;
    pub const VERSION_NOT_SUPPORTED: i32 = -32009;

    /// The `google.rpc.ErrorInfo` reason of a protocol code (`None` for other codes).
    pub fn reason(code: i32) -> Option<&'static str> {
        Some(match code {
            PARSE_ERROR => "PARSE_ERROR",
            INVALID_REQUEST => "INVALID_REQUEST",
            METHOD_NOT_FOUND => "METHOD_NOT_FOUND",
            INVALID_PARAMS => "INVALID_PARAMS",
            INTERNAL_ERROR => "INTERNAL_ERROR",
            TASK_NOT_FOUND => "TASK_NOT_FOUND",
            TASK_NOT_CANCELABLE => "TASK_NOT_CANCELABLE",
            PUSH_NOTIFICATION_NOT_SUPPORTED => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            UNSUPPORTED_OPERATION => "UNSUPPORTED_OPERATION",
            CONTENT_TYPE_NOT_SUPPORTED => "CONTENT_TYPE_NOT_SUPPORTED",
            INVALID_AGENT_RESPONSE => "INVALID_AGENT_RESPONSE",
            EXTENDED_CARD_NOT_CONFIGURED => "EXTENDED_AGENT_CARD_NOT_CONFIGURED",
            EXTENSION_SUPPORT_REQUIRED => "EXTENSION_SUPPORT_REQUIRED",
            VERSION_NOT_SUPPORTED => "VERSION_NOT_SUPPORTED",
            _ => return None,
        })
    }

    /// A human name of a code for messages (`TaskNotFound`), or `None`.
    pub fn name(code: i32) -> Option<&'static str> {
        Some(match code {
            PARSE_ERROR => "ParseError",
            INVALID_REQUEST => "InvalidRequest",
            METHOD_NOT_FOUND => "MethodNotFound",
            INVALID_PARAMS => "InvalidParams",
            INTERNAL_ERROR => "InternalError",
            TASK_NOT_FOUND => "TaskNotFound",
            TASK_NOT_CANCELABLE => "TaskNotCancelable",
            PUSH_NOTIFICATION_NOT_SUPPORTED => "PushNotificationNotSupported",
            UNSUPPORTED_OPERATION => "UnsupportedOperation",
            CONTENT_TYPE_NOT_SUPPORTED => "ContentTypeNotSupported",
            INVALID_AGENT_RESPONSE => "InvalidAgentResponse",
            EXTENDED_CARD_NOT_CONFIGURED => "ExtendedAgentCardNotConfigured",
            EXTENSION_SUPPORT_REQUIRED => "ExtensionSupportRequired",
            VERSION_NOT_SUPPORTED => "VersionNotSupported",
            _ => return None,
        })
    }
}

/// The `@type` of the 1.0 error detail.
pub const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// The ErrorInfo domain of protocol errors.
pub const ERROR_DOMAIN: &str = "a2a-protocol.org";

/// A 1.0 text part.
pub fn text_part(text: impl Into<String>) -> Value {
    json!({ "text": text.into() })
}

/// A 1.0 data part (any JSON value).
pub fn data_part(data: Value) -> Value {
    json!({ "data": data })
}

/// The part a JSON value becomes: a string is a text part, anything else a data part.
pub fn value_part(v: Value) -> Value {
    match v {
        Value::String(s) => text_part(s),
        other => data_part(other),
    }
}

/// The state of a 1.0 or 0.3 task object (`status.state`).
pub fn task_state(task: &Value) -> Option<TaskState> {
    task.pointer("/status/state")
        .and_then(Value::as_str)
        .and_then(TaskState::parse)
}

/// The concatenated text parts of a message (or any object with `parts`), in either shape.
pub fn parts_text(parts: Option<&Value>) -> String {
    parts
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(Version::parse("1.0"), Some(Version::V10));
        assert_eq!(Version::parse("1"), Some(Version::V10));
        assert_eq!(Version::parse(" 1.0.1 "), Some(Version::V10));
        assert_eq!(Version::parse("0.3"), Some(Version::V03));
        assert_eq!(Version::parse("0.3.0"), Some(Version::V03));
        for bad in ["", "2.0", "1.1", "0.2", "x", "1.0.0.0", "1.a"] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn methods_round_trip() {
        for m in Method::ALL {
            for v in [Version::V10, Version::V03] {
                if let Some(n) = m.name(v) {
                    assert_eq!(Method::parse(n), Some((m, v)));
                }
            }
        }
        assert_eq!(Method::parse("tasks/list"), None);
    }

    #[test]
    fn states_parse_both_spellings() {
        assert_eq!(
            TaskState::parse("TASK_STATE_INPUT_REQUIRED"),
            Some(TaskState::InputRequired)
        );
        assert_eq!(
            TaskState::parse("input-required"),
            Some(TaskState::InputRequired)
        );
        assert_eq!(TaskState::Canceled.v03(), "canceled");
        assert_eq!(TaskState::parse("cancelled"), Some(TaskState::Canceled));
        assert!(TaskState::Rejected.is_terminal());
        assert!(!TaskState::AuthRequired.is_terminal());
    }
}
