//! Domain types shared by every layer: agents, capabilities, requests, stream events,
//! sessions, idempotency records and principals.
//!
//! These are plain data. They carry no behaviour beyond validation of their own shape and
//! their wire rendering; the rules that move them around live in `hub`. JSON payloads
//! (inputs, results, chunks) are kept as JSON *text* so that storing and serving them never
//! re-parses them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, HubError, HubResult};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 rendering of a millisecond timestamp (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// A new time-ordered identifier (UUIDv7), used for requests and sessions.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Agent ids: lower-case letters, digits, `.`, `_`, `-`; 1..=64 chars, starting alphanumeric.
pub fn validate_agent_id(id: &str) -> HubResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(HubError::new(
            ErrorCode::InvalidParams,
            format!(
                "invalid agent id {id:?}: use 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Agents

/// What to do with a request that was `running` when the server stopped unexpectedly.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum InterruptPolicy {
    /// Mark it `error` with "interrupted by restart" (the default: the agent may have had
    /// side effects).
    #[default]
    Fail,
    /// Run it again (for agents marked idempotent).
    Retry,
}

/// One invocable capability of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema (2020-12) the input must satisfy.
    #[serde(default = "default_object_schema")]
    pub input_schema: Value,
    /// JSON Schema of the result, when the agent declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

fn default_object_schema() -> Value {
    serde_json::json!({"type": "object"})
}

/// How an agent is executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ExecutorSpec {
    /// A helper compiled into the binary (`echo`, ...).
    Builtin { name: String },
    /// A local program speaking NDJSON on stdout (DESIGN.md §4).
    Process(ProcessSpec),
    /// A remote A2A agent (`src/executor/remote_a2a.rs`).
    A2a(A2aSpec),
}

impl ExecutorSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ExecutorSpec::Builtin { .. } => "builtin",
            ExecutorSpec::Process(_) => "process",
            ExecutorSpec::A2a(_) => "a2a",
        }
    }
}

/// Settings of a `process` agent. The command is an argv vector, never a shell string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Program and arguments. A relative program path resolves against the catalog directory.
    pub command: Vec<String>,
    /// Working directory (default: the state directory's `work/` folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Names of environment variables passed through from the server's environment.
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Extra environment variables set for the process. Write-only: views show the values as
    /// `***` (`crate::redact`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit per invocation (default 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Cap on bytes read from stdout (default 16 MiB); over it the process is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Resource limits applied to the process (rlimits); unset entries take the defaults
    /// of `A2A_PROCESS_LIMITS`, 0 lifts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ProcessLimits>,
    /// User the process runs as (name or numeric id); needs a hub with the privilege to
    /// switch users (root). Default: the hub's own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<AccountRef>,
    /// Group the process runs as (name or numeric id); default: the user's primary group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<AccountRef>,
}

/// A user or group account: a name, or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum AccountRef {
    Id(u32),
    Name(String),
}

impl std::fmt::Display for AccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountRef::Id(n) => write!(f, "{n}"),
            AccountRef::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// rlimits of a process agent; each is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessLimits {
    /// CPU time in seconds (RLIMIT_CPU); the kernel kills the process past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<u64>,
    /// Address space in MiB (RLIMIT_AS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// Open file descriptors (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_files: Option<u64>,
    /// Processes of the user (RLIMIT_NPROC), a fork-bomb guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes: Option<u64>,
}

/// Settings of an `a2a` agent: a remote A2A agent reached over JSON-RPC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct A2aSpec {
    /// The remote agent's Agent Card URL, or its base URL (the card is then read from
    /// `<url>/.well-known/agent-card.json`). `http://` or `https://`.
    pub url: String,
    /// Wall-clock limit per invocation (default 300 s); the remote task is canceled on expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Extra HTTP headers sent with every request to the remote agent (e.g. `Authorization`).
    /// Stored with the agent definition (and in snapshots); write-only: views show the values
    /// as `***` (`crate::redact`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// An agent definition, as in the catalog and the deploy API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Per-agent concurrency limit (default: the global limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default)]
    pub interrupt: InterruptPolicy,
    pub capabilities: Vec<Capability>,
    pub executor: ExecutorSpec,
}

fn default_version() -> String {
    "1.0.0".into()
}
fn default_true() -> bool {
    true
}

impl AgentSpec {
    /// Checks the parts of an agent definition that do not need the executor registry.
    pub fn validate(&self) -> HubResult<()> {
        validate_agent_id(&self.id)?;
        if self.capabilities.is_empty() {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!(
                    "agent {:?} declares no capabilities; add at least one",
                    self.id
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for cap in &self.capabilities {
            if cap.name.is_empty() || cap.name.len() > 64 {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "agent {:?}: capability names must be 1-64 characters",
                        self.id
                    ),
                ));
            }
            if !seen.insert(cap.name.as_str()) {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "agent {:?}: capability {:?} is declared twice",
                        self.id, cap.name
                    ),
                ));
            }
        }
        if self.max_concurrency == Some(0) {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("agent {:?}: max_concurrency must be at least 1", self.id),
            ));
        }
        if let ExecutorSpec::Process(p) = &self.executor
            && p.command.first().is_none_or(|c| c.is_empty())
        {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("agent {:?}: executor.command must name a program", self.id),
            ));
        }
        if let ExecutorSpec::A2a(a) = &self.executor
            && !(a.url.starts_with("http://") || a.url.starts_with("https://"))
        {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!(
                    "agent {:?}: executor.url must be an http:// or https:// URL (the remote Agent Card or its base URL), got {:?}",
                    self.id, a.url
                ),
            ));
        }
        Ok(())
    }

    pub fn capability(&self, name: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.name == name)
    }

    pub fn display_name(&self) -> &str {
        if self.name.is_empty() {
            &self.id
        } else {
            &self.name
        }
    }
}

/// Where the stored definition of an agent came from. Run-time changes win over the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentSource {
    Catalog,
    Runtime,
}

/// An agent as persisted in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub spec: AgentSpec,
    pub source: AgentSource,
    /// A run-time removal of a catalog agent is remembered as a tombstone.
    pub removed: bool,
    pub updated_at: i64,
}

// ---------------------------------------------------------------------------------------------
// Principals

/// Roles of DESIGN.md §6, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Invoker,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Invoker => "invoker",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "invoker" => Ok(Role::Invoker),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?}; allowed: admin, operator, invoker, viewer"
            )),
        }
    }
}

/// Which front door a call came through (for audit, metrics and rate limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Surface {
    Mcp,
    Rest,
    A2a,
    Stream,
    Stdio,
    Cli,
    Internal,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Mcp => "mcp",
            Surface::Rest => "rest",
            Surface::A2a => "a2a",
            Surface::Stream => "stream",
            Surface::Stdio => "stdio",
            Surface::Cli => "cli",
            Surface::Internal => "internal",
        }
    }
}

/// How a caller was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// No credentials while authentication is not required (loopback development use).
    Anonymous,
    /// The local user of `a2a-mcp stdio` or the CLI.
    Local,
    /// An API key.
    Key,
    /// The legacy shared `STREAM_TOKEN`: may only follow streams.
    StreamToken,
    /// An agent's own process calling back into the hub while it runs a request.
    Agent,
}

/// The agent on whose behalf a call is made (agent principals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentActor {
    pub agent_id: String,
    pub request_id: String,
}

/// Who is calling. Idempotency keys and request ownership are scoped to `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable identity: `key:<id>`, `agent:<id>`, `local`, `anonymous`, `stream-token`.
    pub id: String,
    pub role: Role,
    pub kind: PrincipalKind,
    pub key_id: Option<String>,
    pub agent: Option<AgentActor>,
    pub surface: Surface,
}

impl Principal {
    pub fn new(id: impl Into<String>, role: Role) -> Self {
        Self {
            id: id.into(),
            role,
            kind: PrincipalKind::Local,
            key_id: None,
            agent: None,
            surface: Surface::Internal,
        }
    }
    /// The caller on an unauthenticated surface while authentication is not required.
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            ..Self::new("anonymous", Role::Admin)
        }
    }
    pub fn with_key(mut self, key_id: &str) -> Self {
        self.kind = PrincipalKind::Key;
        self.key_id = Some(key_id.to_string());
        self
    }
    pub fn with_surface(mut self, surface: Surface) -> Self {
        self.surface = surface;
        self
    }
    /// An agent process acting while it runs `request_id`.
    pub fn agent(agent_id: &str, request_id: &str) -> Self {
        Self {
            kind: PrincipalKind::Agent,
            agent: Some(AgentActor {
                agent_id: agent_id.to_string(),
                request_id: request_id.to_string(),
            }),
            ..Self::new(format!("agent:{agent_id}"), Role::Invoker)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and events

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    Queued,
    Running,
    Done,
    Error,
    Canceled,
}

impl RequestState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestState::Done | RequestState::Error | RequestState::Canceled
        )
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Queued => "queued",
            RequestState::Running => "running",
            RequestState::Done => "done",
            RequestState::Error => "error",
            RequestState::Canceled => "canceled",
        }
    }
    pub const ALL: [RequestState; 5] = [
        RequestState::Queued,
        RequestState::Running,
        RequestState::Done,
        RequestState::Error,
        RequestState::Canceled,
    ];
}

/// A request (an invocation of one capability), as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: String,
    pub agent_id: String,
    pub capability: String,
    /// The input, as JSON text.
    pub input: String,
    pub session_id: Option<String>,
    pub parent_id: Option<String>,
    pub idempotency_key: Option<String>,
    pub principal: String,
    pub state: RequestState,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The final result, as JSON text.
    pub result: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
}

/// What happened, in order, during a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    Start,
    /// A piece of output; JSON text (usually a string).
    Chunk(String),
    /// The result; JSON text.
    Final(String),
    Error(String),
    Canceled(String),
}

impl EventKind {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::Final(_) | EventKind::Error(_) | EventKind::Canceled(_)
        )
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Chunk(_) => "chunk",
            EventKind::Final(_) => "final",
            EventKind::Error(_) => "error",
            EventKind::Canceled(_) => "canceled",
        }
    }
}

/// One stream event of a request. `seq` starts at 1 and has no gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub request_id: String,
    pub seq: u64,
    pub ts: i64,
    pub kind: EventKind,
}

fn parse_or_null(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

impl Event {
    /// The wire shape used by WebSocket and SSE:
    /// `{"type":"chunk","requestId":…,"seq":2,"ts":…,"content":…}`.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "type": self.kind.type_name(),
            "requestId": self.request_id,
            "seq": self.seq,
            "ts": self.ts,
        });
        if let Value::Object(map) = &mut v {
            match &self.kind {
                EventKind::Start => {}
                EventKind::Chunk(c) => {
                    map.insert("content".into(), parse_or_null(c));
                }
                EventKind::Final(r) => {
                    map.insert("result".into(), parse_or_null(r));
                }
                EventKind::Error(m) => {
                    map.insert("message".into(), Value::String(m.clone()));
                }
                EventKind::Canceled(m) => {
                    map.insert("reason".into(), Value::String(m.clone()));
                }
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions and idempotency

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub principal: String,
    pub agent_id: Option<String>,
    /// Free-form metadata, JSON text.
    pub metadata: String,
    pub created_at: i64,
    pub closed_at: Option<i64>,
}

impl SessionRecord {
    /// When the session last changed: its close, else its creation (retention counts from it).
    pub fn last_change(&self) -> i64 {
        self.closed_at.unwrap_or(self.created_at)
    }
}

/// An idempotency key, scoped to its caller and bound to the arguments it was first used with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Hash of (principal, key); the store key.
    pub scope: String,
    pub request_id: String,
    /// Hash of (agent, capability, canonical input).
    pub args_hash: String,
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_renders_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_910_400_000), "2026-11-29T00:00:00.000Z");
    }

    #[test]
    fn agent_ids_are_checked() {
        assert!(validate_agent_id("echo").is_ok());
        assert!(validate_agent_id("my-agent.v2_x").is_ok());
        for bad in ["", "Echo", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(validate_agent_id(bad).is_err(), "{bad:?}");
        }
    }
}
