//! Views of the administration surface: API keys, the audit log, permission grants and
//! requests, backups, statistics; and the bodies that create or decide them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::time;
use crate::backup::{BackupListing, SnapshotInfo};
use crate::policy::audit::AuditRecord;
use crate::policy::grants::{GrantRecord, PermissionRequestRecord};
use crate::policy::keys::ApiKeyRecord;

/// An API key (never its secret, except once in [`CreatedKey`]).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct KeyView {
    /// Public key id (the middle part of the token).
    pub id: String,
    /// `viewer`, `invoker`, `operator` or `admin`.
    pub role: String,
    pub label: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_by: String,
    /// Neither revoked nor expired at the time of the answer.
    pub active: bool,
}

impl KeyView {
    /// The view of `k` at time `now` (ms since the epoch).
    pub fn at(k: &ApiKeyRecord, now: i64) -> Self {
        KeyView {
            id: k.id.clone(),
            role: k.role.as_str().to_string(),
            label: k.label.clone(),
            created_at: time(k.created_at),
            expires_at: k.expires_at.map(time),
            revoked_at: k.revoked_at.map(time),
            created_by: k.created_by.clone(),
            active: k.is_active(now),
        }
    }
}

/// The answer to creating a key: the key and, this once, its secret token.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    /// The token to send as `Authorization: Bearer …`; shown only here.
    pub key: String,
}

/// `GET /api/v1/admin/keys`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

/// One audit log entry.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AuditEntryView {
    pub id: String,
    pub time: String,
    /// Who acted (key id, `local`, `anonymous`, …).
    pub principal: String,
    pub key_id: Option<String>,
    pub role: String,
    /// Where: `rest`, `mcp`, `a2a`, `stream`, `cli`, …
    pub surface: String,
    pub action: String,
    pub target: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    pub detail: String,
}

impl From<&AuditRecord> for AuditEntryView {
    fn from(e: &AuditRecord) -> Self {
        AuditEntryView {
            id: e.id.clone(),
            time: time(e.ts),
            principal: e.principal.clone(),
            key_id: e.key_id.clone(),
            role: e.role.clone(),
            surface: e.surface.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.as_str().to_string(),
            detail: e.detail.clone(),
        }
    }
}

/// `GET /api/v1/admin/audit`: one page, oldest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AuditPage {
    pub entries: Vec<AuditEntryView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    pub next: Option<String>,
}

/// A permission grant held by an agent.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct GrantView {
    pub grant_id: String,
    /// The agent holding the permission.
    pub agent_id: String,
    /// e.g. `agent:invoke:billing` (the target may be a glob).
    pub permission: String,
    /// Whether the holder may grant it on.
    pub delegable: bool,
    pub granted_by: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// The permission request this grant answered, if any.
    pub request_id: Option<String>,
    /// Neither revoked nor expired at the time of the answer.
    pub active: bool,
}

impl GrantView {
    /// The view of `g` at time `now` (ms since the epoch).
    pub fn at(g: &GrantRecord, now: i64) -> Self {
        GrantView {
            grant_id: g.id.clone(),
            agent_id: g.agent_id.clone(),
            permission: g.permission.clone(),
            delegable: g.delegable,
            granted_by: g.granted_by.clone(),
            created_at: time(g.created_at),
            expires_at: g.expires_at.map(time),
            revoked_at: g.revoked_at.map(time),
            revoked_by: g.revoked_by.clone(),
            request_id: g.request_id.clone(),
            active: g.is_active(now),
        }
    }
}

/// A request for a permission, waiting for (or after) an operator's decision.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PermissionRequestView {
    pub permission_request_id: String,
    pub agent_id: String,
    pub permission: String,
    pub reason: String,
    pub requested_by: String,
    pub created_at: String,
    /// `pending`, `approved` or `denied`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The grant made on approval.
    pub grant_id: Option<String>,
}

impl From<&PermissionRequestRecord> for PermissionRequestView {
    fn from(r: &PermissionRequestRecord) -> Self {
        PermissionRequestView {
            permission_request_id: r.id.clone(),
            agent_id: r.agent_id.clone(),
            permission: r.permission.clone(),
            reason: r.reason.clone(),
            requested_by: r.requested_by.clone(),
            created_at: time(r.created_at),
            status: r.status.as_str().to_string(),
            decided_by: r.decided_by.clone(),
            decided_at: r.decided_at.map(time),
            grant_id: r.grant_id.clone(),
        }
    }
}

/// `GET /api/v1/permissions`: grants and permission requests.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PermissionsView {
    pub grants: Vec<GrantView>,
    pub requests: Vec<PermissionRequestView>,
}

impl PermissionsView {
    pub fn at(grants: &[GrantRecord], requests: &[PermissionRequestRecord], now: i64) -> Self {
        PermissionsView {
            grants: grants.iter().map(|g| GrantView::at(g, now)).collect(),
            requests: requests.iter().map(PermissionRequestView::from).collect(),
        }
    }
}

/// The answer to approving or denying a permission request.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct DecisionView {
    pub request: PermissionRequestView,
    /// The grant made on approval; `null` on denial.
    pub grant: Option<GrantView>,
}

/// A snapshot in the backup directory. An unreadable file shows only `path`, `verified`
/// (false) and `error`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct BackupView {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The store backend the snapshot was taken from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format_version: Option<u32>,
    /// Records per kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Whether a full check passed (listings with `verify=true`, and unreadable files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Why the file is unreadable or failed the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&SnapshotInfo> for BackupView {
    fn from(s: &SnapshotInfo) -> Self {
        let m = &s.manifest;
        BackupView {
            path: s.path.display().to_string(),
            file: s.path.file_name().map(|n| n.to_string_lossy().to_string()),
            size_bytes: Some(s.size),
            created_at: Some(m.created_at.clone()),
            source_backend: Some(m.source_backend.clone()),
            product_version: Some(m.product_version.clone()),
            schema_version: Some(m.schema_version),
            format_version: Some(m.format_version),
            counts: Some(m.counts.clone()),
            records: Some(m.records),
            verified: None,
            error: None,
        }
    }
}

impl From<&BackupListing> for BackupView {
    fn from(l: &BackupListing) -> Self {
        match &l.snapshot {
            Ok(s) => {
                let mut v = BackupView::from(s);
                if let Some(check) = &l.verified {
                    v.verified = Some(check.is_ok());
                    v.error = check.as_ref().err().cloned();
                }
                v
            }
            Err(e) => BackupView {
                path: l.path.display().to_string(),
                file: None,
                size_bytes: None,
                created_at: None,
                source_backend: None,
                product_version: None,
                schema_version: None,
                format_version: None,
                counts: None,
                records: None,
                verified: Some(false),
                error: Some(e.clone()),
            },
        }
    }
}

/// `GET /api/v1/admin/backups`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct BackupList {
    pub backups: Vec<BackupView>,
}

/// Query of `GET /api/v1/admin/backups`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct ListBackupsQuery {
    /// `true` checks every snapshot completely.
    #[serde(default)]
    pub verify: Option<String>,
}

/// Query of `GET /api/v1/admin/audit`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
pub struct AuditQuery {
    /// The `next` of the previous page.
    #[serde(default)]
    pub after: Option<String>,
    /// Page size, 1-1000 (default 100).
    #[serde(default)]
    pub limit: Option<String>,
}

/// Query of `GET /api/v1/permissions`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsQuery {
    /// Only this agent's grants and requests.
    #[serde(default)]
    pub agent_id: Option<String>,
}

/// Queue and agent statistics (`GET /api/v1/stats`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct StatsView {
    pub queued: usize,
    pub running: usize,
    pub max_concurrency: usize,
    pub max_queue_size: usize,
    pub agents_total: usize,
    pub agents_enabled: usize,
    /// Live event channels (requests being followed).
    pub live_channels: usize,
    pub store_backend: String,
    pub uptime_seconds: i64,
    /// Queued and running requests per agent.
    pub per_agent: BTreeMap<String, AgentLoadView>,
}

/// Queued and running requests of one agent.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AgentLoadView {
    pub queued: usize,
    pub running: usize,
}

impl From<&crate::hub::Stats> for StatsView {
    fn from(s: &crate::hub::Stats) -> Self {
        StatsView {
            queued: s.queued,
            running: s.running,
            max_concurrency: s.max_concurrency,
            max_queue_size: s.max_queue_size,
            agents_total: s.agents_total,
            agents_enabled: s.agents_enabled,
            live_channels: s.live_channels,
            store_backend: s.store_backend.to_string(),
            uptime_seconds: s.uptime_seconds,
            per_agent: s
                .per_agent
                .iter()
                .map(|(k, l)| {
                    let load = AgentLoadView {
                        queued: l.queued,
                        running: l.running,
                    };
                    (k.clone(), load)
                })
                .collect(),
        }
    }
}

/// Body of `POST /api/v1/admin/keys`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewKeyBody {
    /// `viewer`, `invoker`, `operator` or `admin`.
    pub role: String,
    #[serde(default)]
    pub label: String,
    /// Lifetime such as `30d` or `12h` (default: no expiry).
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// Body of `POST /api/v1/permissions/grants`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewGrantBody {
    pub agent_id: String,
    /// `agent:invoke:<agent id or glob>`.
    pub permission: String,
    #[serde(default)]
    pub delegable: bool,
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// Body of `POST /api/v1/permissions/requests`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewPermissionRequestBody {
    /// The agent asking (default: the caller's own agent).
    #[serde(default)]
    pub agent_id: Option<String>,
    pub permission: String,
    #[serde(default)]
    pub reason: String,
    /// Wait (bounded by `timeoutMs`) for the decision.
    #[serde(default)]
    pub wait: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Body of `POST /api/v1/permissions/requests/{id}/approve` (or `/deny`; may be empty).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionBody {
    /// On approval: whether the grant is delegable.
    #[serde(default)]
    pub delegable: bool,
    /// On approval: the grant's lifetime such as `30d`.
    #[serde(default)]
    pub expires_in: Option<String>,
}
