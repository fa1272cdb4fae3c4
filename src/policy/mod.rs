//! Who may do what: roles and actions, per-agent access lists, API keys, agent permission
//! grants, rate limits and the audit record.
//!
//! This module holds the *rules* as plain functions and data; the hub calls them (every hub
//! method authorises its caller) and owns persistence. Transports only turn credentials into a
//! [`Principal`] (see `Hub::authenticate` in `hub::security::authn`).
//!
//! Roles (DESIGN.md §6): `admin` everything; `operator` agents, permissions, all requests;
//! `invoker` invoke/handoff and its own requests and sessions; `viewer` read-only.

pub mod audit;
pub mod grants;
pub mod keys;
pub mod ratelimit;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Principal, PrincipalKind, Role};

/// Everything a caller can ask for, as far as authorisation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List and describe agents.
    AgentsRead,
    /// Deploy, update, enable, disable, remove agents.
    AgentsWrite,
    /// Invoke, hand off, open sessions.
    Invoke,
    /// Read or follow any request (not only one's own).
    RequestsReadAll,
    /// Cancel any request (not only one's own).
    RequestsCancelAll,
    /// Queue and agent statistics.
    Stats,
    /// Read grants and permission requests.
    GrantsRead,
    /// Ask for a permission (agents do this for themselves).
    PermissionRequest,
    /// Grant, approve, deny, revoke permissions.
    GrantsWrite,
    /// Create, list and revoke API keys.
    KeysManage,
    /// Read the audit log.
    AuditRead,
    /// Create and list backups.
    Backup,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::AgentsRead => "agents.read",
            Action::AgentsWrite => "agents.write",
            Action::Invoke => "invoke",
            Action::RequestsReadAll => "requests.read_all",
            Action::RequestsCancelAll => "requests.cancel_all",
            Action::Stats => "stats",
            Action::GrantsRead => "grants.read",
            Action::PermissionRequest => "permissions.request",
            Action::GrantsWrite => "grants.write",
            Action::KeysManage => "keys.manage",
            Action::AuditRead => "audit.read",
            Action::Backup => "backup",
        }
    }
}

/// The role table.
pub fn role_allows(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Admin => true,
        Role::Operator => matches!(
            action,
            AgentsRead
                | AgentsWrite
                | Invoke
                | RequestsReadAll
                | RequestsCancelAll
                | Stats
                | GrantsRead
                | PermissionRequest
                | GrantsWrite
        ),
        Role::Invoker => matches!(action, AgentsRead | Invoke | PermissionRequest),
        Role::Viewer => matches!(action, AgentsRead | RequestsReadAll | Stats | GrantsRead),
    }
}

/// Checks the role table; the error says what was needed.
pub fn require(p: &Principal, action: Action) -> HubResult<()> {
    if p.kind == PrincipalKind::StreamToken && action != Action::RequestsReadAll {
        return Err(forbidden(p, action));
    }
    if role_allows(p.role, action) {
        Ok(())
    } else {
        Err(forbidden(p, action))
    }
}

pub fn forbidden(p: &Principal, action: Action) -> HubError {
    crate::metrics::AUTH_FAILURES
        .with_label_values(&[p.surface.as_str(), "forbidden"])
        .inc();
    HubError::new(
        ErrorCode::Forbidden,
        format!(
            "{} (role {}) may not {}; ask an admin for a key with a role that allows it",
            p.id,
            p.role.as_str(),
            action.name()
        ),
    )
}

/// One entry of the per-agent access lists (`[[policies]]` in catalog files): which roles or
/// keys may invoke the agents whose ids match `agents` (glob patterns).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicy {
    pub agents: Vec<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Compiled access lists. An agent no policy matches is open to every role that may invoke;
/// an agent some policy matches is open only to the roles and keys those policies list
/// (admins always pass).
#[derive(Default)]
pub struct AccessLists {
    entries: Vec<(Vec<GlobMatcher>, AgentPolicy)>,
}

impl AccessLists {
    pub fn compile(policies: Vec<AgentPolicy>) -> Result<Self, String> {
        let mut entries = Vec::new();
        for p in policies {
            let mut globs = Vec::new();
            for pat in &p.agents {
                let g = Glob::new(pat).map_err(|e| {
                    format!("policy agent pattern {pat:?} is not a valid glob: {e}")
                })?;
                globs.push(g.compile_matcher());
            }
            entries.push((globs, p));
        }
        Ok(Self { entries })
    }

    pub fn may_invoke(&self, p: &Principal, agent_id: &str) -> bool {
        if p.role == Role::Admin {
            return true;
        }
        let mut matched = false;
        for (globs, policy) in &self.entries {
            if globs.iter().any(|g| g.is_match(agent_id)) {
                matched = true;
                if policy.roles.contains(&p.role)
                    || p.key_id.as_ref().is_some_and(|k| policy.keys.contains(k))
                {
                    return true;
                }
            }
        }
        !matched
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table_follows_the_design() {
        assert!(role_allows(Role::Invoker, Action::Invoke));
        assert!(!role_allows(Role::Invoker, Action::RequestsReadAll));
        assert!(!role_allows(Role::Invoker, Action::AgentsWrite));
        assert!(role_allows(Role::Viewer, Action::RequestsReadAll));
        assert!(!role_allows(Role::Viewer, Action::Invoke));
        assert!(role_allows(Role::Operator, Action::GrantsWrite));
        assert!(!role_allows(Role::Operator, Action::KeysManage));
        assert!(role_allows(Role::Admin, Action::KeysManage));
    }

    #[test]
    fn access_lists_restrict_matching_agents_only() {
        let acl = AccessLists::compile(vec![AgentPolicy {
            agents: vec!["billing-*".into()],
            roles: vec![Role::Operator],
            keys: vec!["k1".into()],
        }])
        .unwrap();
        let invoker = Principal::new("key:k2", Role::Invoker).with_key("k2");
        let trusted = Principal::new("key:k1", Role::Invoker).with_key("k1");
        assert!(acl.may_invoke(&invoker, "echo"));
        assert!(!acl.may_invoke(&invoker, "billing-eu"));
        assert!(acl.may_invoke(&trusted, "billing-eu"));
        assert!(acl.may_invoke(&Principal::new("op", Role::Operator), "billing-eu"));
        assert!(acl.may_invoke(&Principal::new("root", Role::Admin), "billing-eu"));
    }
}
