//! The audit record: who did what, to what, through which door, and how it ended.
//!
//! Entries are keyed by a time-ordered id (UUIDv7), so the audit table scans in time order and
//! retention can delete from the front. The hub writes an entry for every state-changing
//! operation and every authorisation denial, usually in the same commit as the change itself.

use serde::{Deserialize, Serialize};

use crate::model::{Principal, new_id, now_ms, rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub ts: i64,
    pub principal: String,
    pub key_id: Option<String>,
    pub role: String,
    pub surface: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl AuditRecord {
    pub fn new(p: &Principal, action: &str, target: &str, outcome: Outcome, detail: &str) -> Self {
        Self {
            id: new_id(),
            ts: now_ms(),
            principal: p.id.clone(),
            key_id: p.key_id.clone(),
            role: p.role.as_str().to_string(),
            surface: p.surface.as_str().to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            detail: detail.chars().take(500).collect(),
        }
    }

    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "time": rfc3339(self.ts),
            "principal": self.principal,
            "keyId": self.key_id,
            "role": self.role,
            "surface": self.surface,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome.as_str(),
            "detail": self.detail,
        })
    }
}
