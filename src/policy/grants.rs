//! Permission grants between agents (the predecessor's model, made real and enforced).
//!
//! A grant gives an agent a permission such as `agent:invoke:billing` (the target may be a
//! glob: `agent:invoke:billing-*`, `agent:invoke:*`). Grants can be delegable (the holder may
//! grant the same permission on) and can expire; revoked and expired grants stop counting at
//! once. Agents ask with a permission request, which waits for an operator's decision.

use globset::Glob;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, HubError, HubResult};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub id: String,
    /// The agent holding the permission.
    pub agent_id: String,
    pub permission: String,
    pub delegable: bool,
    pub granted_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    /// The permission request this grant answered, if any.
    pub request_id: Option<String>,
}

impl GrantRecord {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// Whether this grant's permission covers `wanted` (glob on the grant side).
    pub fn covers(&self, wanted: &str) -> bool {
        permission_covers(&self.permission, wanted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestStatus {
    Pending,
    Approved,
    Denied,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionRequestRecord {
    pub id: String,
    pub agent_id: String,
    pub permission: String,
    pub reason: String,
    pub requested_by: String,
    pub created_at: i64,
    pub status: RequestStatus,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub grant_id: Option<String>,
}

impl PermissionRequestRecord {}

/// The permission an agent needs to invoke another agent.
pub fn invoke_permission(target_agent: &str) -> String {
    format!("agent:invoke:{target_agent}")
}

/// Permissions have the shape `agent:<verb>:<target>` with verb `invoke` or `*` and a target
/// agent id or glob.
pub fn validate_permission(p: &str) -> HubResult<()> {
    let bad = || {
        HubError::new(
            ErrorCode::InvalidParams,
            format!(
                "permission {p:?} is not valid; use agent:invoke:<agent id or glob>, e.g. agent:invoke:billing or agent:invoke:*"
            ),
        )
    };
    let mut parts = p.splitn(3, ':');
    let (Some("agent"), Some(verb), Some(target)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !matches!(verb, "invoke" | "*") || target.is_empty() || target.len() > 128 {
        return Err(bad());
    }
    Glob::new(target).map_err(|_| bad())?;
    Ok(())
}

/// Whether `granted` (may contain globs) covers the concrete permission `wanted`.
pub fn permission_covers(granted: &str, wanted: &str) -> bool {
    let (Some((gns, grest)), Some((wns, wrest))) =
        (granted.split_once(':'), wanted.split_once(':'))
    else {
        return false;
    };
    let (Some((gverb, gtarget)), Some((wverb, wtarget))) =
        (grest.split_once(':'), wrest.split_once(':'))
    else {
        return false;
    };
    if gns != wns || (gverb != "*" && gverb != wverb) {
        return false;
    }
    match Glob::new(gtarget) {
        Ok(g) => g.compile_matcher().is_match(wtarget),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_validate_and_match() {
        assert!(validate_permission("agent:invoke:billing").is_ok());
        assert!(validate_permission("agent:invoke:billing-*").is_ok());
        assert!(validate_permission("agent:*:*").is_ok());
        for bad in [
            "",
            "agent",
            "agent:invoke",
            "agent:delete:x",
            "user:invoke:x",
            "agent:invoke:",
        ] {
            assert!(validate_permission(bad).is_err(), "{bad}");
        }
        assert!(permission_covers(
            "agent:invoke:billing",
            "agent:invoke:billing"
        ));
        assert!(!permission_covers(
            "agent:invoke:billing",
            "agent:invoke:billing2"
        ));
        assert!(permission_covers(
            "agent:invoke:bill*",
            "agent:invoke:billing"
        ));
        assert!(permission_covers("agent:*:*", "agent:invoke:x"));
        assert!(!permission_covers("agent:invoke:x", "agent:other:x"));
    }
}
