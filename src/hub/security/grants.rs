//! Permission grants between agents: granting, revoking, agents asking for a permission (and
//! waiting for the decision), operators deciding, and listing what an agent holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::super::Hub;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Principal, PrincipalKind, new_id, now_ms};
use crate::policy::Action;
use crate::policy::audit::Outcome;
use crate::policy::grants::{
    self, GrantRecord, PermissionRequestRecord, RequestStatus, validate_permission,
};
use crate::store::codec::{decode, encode};
use crate::store::{Aux, Op};

/// Upper bound for a waiting permission request.
const MAX_PERMISSION_WAIT: Duration = Duration::from_secs(300);

/// What the permission tools return.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Permissions {
    pub grants: Vec<GrantRecord>,
    pub requests: Vec<PermissionRequestRecord>,
}

fn grant_key(g: &GrantRecord) -> String {
    format!("{}/{}", g.agent_id, g.id)
}

/// The op that stores a grant (new or changed).
fn put_grant(g: &GrantRecord) -> HubResult<Op> {
    Ok(Op::PutAux {
        table: Aux::Grants,
        key: grant_key(g),
        value: encode(g)?,
    })
}

impl Hub {
    async fn grants_of(&self, agent_id: &str) -> HubResult<Vec<GrantRecord>> {
        let page = self
            .inner
            .store
            .scan_aux(Aux::Grants, &format!("{agent_id}/"), None, 10_000)
            .await?;
        page.into_iter()
            .map(|(_, v)| decode("grants", &v).map_err(HubError::from))
            .collect()
    }

    async fn all_grants(&self) -> HubResult<Vec<GrantRecord>> {
        let page = self
            .inner
            .store
            .scan_aux(Aux::Grants, "", None, 100_000)
            .await?;
        page.into_iter()
            .map(|(_, v)| decode("grants", &v).map_err(HubError::from))
            .collect()
    }

    pub(crate) async fn has_grant(&self, agent_id: &str, permission: &str) -> HubResult<bool> {
        let now = now_ms();
        Ok(self
            .grants_of(agent_id)
            .await?
            .iter()
            .any(|g| g.is_active(now) && g.covers(permission)))
    }

    /// Grants `permission` to `agent_id`. Operators and admins may grant anything; an agent
    /// may pass on a permission it holds through a delegable grant.
    pub async fn grant_permission(
        &self,
        p: &Principal,
        agent_id: &str,
        permission: &str,
        delegable: bool,
        expires_in: Option<Duration>,
    ) -> HubResult<GrantRecord> {
        validate_permission(permission)?;
        crate::model::validate_agent_id(agent_id)?;
        if p.kind == PrincipalKind::Agent {
            let from = p
                .agent
                .as_ref()
                .map(|a| a.agent_id.clone())
                .unwrap_or_default();
            let now = now_ms();
            let delegates = self.grants_of(&from).await?.iter().any(|g| {
                g.is_active(now)
                    && g.delegable
                    && grants::permission_covers(&g.permission, permission)
            });
            if !delegates {
                let msg = format!(
                    "agent {from:?} holds no delegable grant covering {permission:?}, so it cannot grant it"
                );
                self.audit_now(p, "permissions.grant", agent_id, Outcome::Denied, &msg)
                    .await;
                return Err(HubError::new(ErrorCode::Forbidden, msg));
            }
        } else {
            self.authorize(p, Action::GrantsWrite).await?;
        }
        let now = now_ms();
        let grant = GrantRecord {
            id: format!("g_{}", new_id()),
            agent_id: agent_id.to_string(),
            permission: permission.to_string(),
            delegable,
            granted_by: p.id.clone(),
            created_at: now,
            expires_at: expires_in.map(|d| now.saturating_add(d.as_millis() as i64)),
            revoked_at: None,
            revoked_by: None,
            request_id: None,
        };
        let audit = self.audit_op(
            p,
            "permissions.grant",
            agent_id,
            Outcome::Ok,
            &format!("{permission} delegable={delegable}"),
        )?;
        self.inner
            .store
            .write(vec![put_grant(&grant)?, audit])
            .await?;
        Ok(grant)
    }

    pub async fn revoke_permission(&self, p: &Principal, grant_id: &str) -> HubResult<GrantRecord> {
        self.authorize(p, Action::GrantsWrite).await?;
        let found = self
            .all_grants()
            .await?
            .into_iter()
            .find(|g| g.id == grant_id);
        let Some(mut grant) = found else {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("no grant {grant_id:?}; get_permissions lists them"),
            ));
        };
        if grant.revoked_at.is_none() {
            grant.revoked_at = Some(now_ms());
            grant.revoked_by = Some(p.id.clone());
            let audit = self.audit_op(
                p,
                "permissions.revoke",
                &grant.agent_id,
                Outcome::Ok,
                &grant.permission,
            )?;
            self.inner
                .store
                .write(vec![put_grant(&grant)?, audit])
                .await?;
        }
        Ok(grant)
    }

    /// Asks for a permission. Agents ask for themselves; operators may file a request for any
    /// agent. With `wait`, waits (bounded) for the decision.
    pub async fn request_permission(
        &self,
        p: &Principal,
        agent_id: Option<&str>,
        permission: &str,
        reason: &str,
        wait: Option<Duration>,
    ) -> HubResult<PermissionRequestRecord> {
        validate_permission(permission)?;
        self.authorize(p, Action::PermissionRequest).await?;
        let agent_id = match (&p.agent, agent_id) {
            (Some(a), Some(other)) if other != a.agent_id => {
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    "an agent can request permissions only for itself",
                ));
            }
            (Some(a), _) => a.agent_id.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    "agentId is required: which agent needs the permission?",
                ));
            }
        };
        crate::model::validate_agent_id(&agent_id)?;
        let rec = PermissionRequestRecord {
            id: format!("pr_{}", new_id()),
            agent_id: agent_id.clone(),
            permission: permission.to_string(),
            reason: reason.chars().take(1000).collect(),
            requested_by: p.id.clone(),
            created_at: now_ms(),
            status: RequestStatus::Pending,
            decided_by: None,
            decided_at: None,
            grant_id: None,
        };
        let (tx, mut rx) = watch::channel(None);
        self.sec().waiters.lock().insert(rec.id.clone(), tx);
        let audit = self.audit_op(p, "permissions.request", &agent_id, Outcome::Ok, permission)?;
        let written = self
            .inner
            .store
            .write(vec![
                Op::PutAux {
                    table: Aux::PermissionRequests,
                    key: rec.id.clone(),
                    value: encode(&rec)?,
                },
                audit,
            ])
            .await;
        if let Err(e) = written {
            self.sec().waiters.lock().remove(&rec.id);
            return Err(e.into());
        }
        let Some(wait) = wait else {
            self.sec().waiters.lock().remove(&rec.id);
            return Ok(rec);
        };
        let deadline = tokio::time::Instant::now() + wait.min(MAX_PERMISSION_WAIT);
        let id = rec.id.clone();
        let outcome = loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() { break None; }
                    if let Some(d) = rx.borrow_and_update().clone() { break Some(d); }
                }
                // Decisions made by another replica: poll the store now and then.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Some(d) = self.permission_request(&id).await?
                        && d.status != RequestStatus::Pending
                    {
                        break Some(d);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        self.sec().waiters.lock().remove(&id);
        Ok(outcome.unwrap_or(rec))
    }

    async fn permission_request(&self, id: &str) -> HubResult<Option<PermissionRequestRecord>> {
        match self
            .inner
            .store
            .get_aux(Aux::PermissionRequests, id)
            .await?
        {
            Some(v) => Ok(Some(decode("permission_requests", &v)?)),
            None => Ok(None),
        }
    }

    /// Approves (creating the grant) or denies a pending permission request.
    pub async fn decide_permission(
        &self,
        p: &Principal,
        request_id: &str,
        approve: bool,
        delegable: bool,
        expires_in: Option<Duration>,
    ) -> HubResult<(PermissionRequestRecord, Option<GrantRecord>)> {
        self.authorize(p, Action::GrantsWrite).await?;
        let Some(mut req) = self.permission_request(request_id).await? else {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("no permission request {request_id:?}; get_permissions lists them"),
            ));
        };
        if req.status != RequestStatus::Pending {
            return Err(HubError::new(
                ErrorCode::NotCancelable,
                format!(
                    "permission request {request_id:?} was already {}",
                    req.status.as_str()
                ),
            ));
        }
        let now = now_ms();
        req.status = if approve {
            RequestStatus::Approved
        } else {
            RequestStatus::Denied
        };
        req.decided_by = Some(p.id.clone());
        req.decided_at = Some(now);
        let mut ops = Vec::new();
        let grant = approve.then(|| GrantRecord {
            id: format!("g_{}", new_id()),
            agent_id: req.agent_id.clone(),
            permission: req.permission.clone(),
            delegable,
            granted_by: p.id.clone(),
            created_at: now,
            expires_at: expires_in.map(|d| now.saturating_add(d.as_millis() as i64)),
            revoked_at: None,
            revoked_by: None,
            request_id: Some(req.id.clone()),
        });
        if let Some(g) = &grant {
            req.grant_id = Some(g.id.clone());
            ops.push(put_grant(g)?);
        }
        ops.push(Op::PutAux {
            table: Aux::PermissionRequests,
            key: req.id.clone(),
            value: encode(&req)?,
        });
        ops.push(self.audit_op(
            p,
            if approve {
                "permissions.approve"
            } else {
                "permissions.deny"
            },
            &req.agent_id,
            Outcome::Ok,
            &req.permission,
        )?);
        self.inner.store.write(ops).await?;
        if let Some(tx) = self.sec().waiters.lock().get(&req.id) {
            tx.send_replace(Some(req.clone()));
        }
        Ok((req, grant))
    }

    /// Grants and permission requests, of one agent or all.
    pub async fn get_permissions(
        &self,
        p: &Principal,
        agent_id: Option<&str>,
    ) -> HubResult<Permissions> {
        // An agent may always look at its own permissions.
        let own = p.agent.as_ref().map(|a| a.agent_id.as_str());
        if !(own.is_some() && own == agent_id) {
            self.authorize(p, Action::GrantsRead).await?;
        }
        let grants = match agent_id {
            Some(a) => self.grants_of(a).await?,
            None => self.all_grants().await?,
        };
        let page = self
            .inner
            .store
            .scan_aux(Aux::PermissionRequests, "", None, 100_000)
            .await?;
        let mut requests = Vec::new();
        for (_, v) in page {
            let r: PermissionRequestRecord = decode("permission_requests", &v)?;
            if agent_id.is_none_or(|a| a == r.agent_id) {
                requests.push(r);
            }
        }
        Ok(Permissions { grants, requests })
    }
}
