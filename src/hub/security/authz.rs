//! Authorisation: role checks, request ownership, agent access lists and the
//! `agent:invoke:<target>` grants; every denial is audited.

use super::super::Hub;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{Principal, PrincipalKind, RequestRecord, Role};
use crate::policy::audit::Outcome;
use crate::policy::grants;
use crate::policy::{Action, require};

impl Hub {
    /// Role check with an audit entry for a denial.
    pub(crate) async fn authorize(&self, p: &Principal, action: Action) -> HubResult<()> {
        match require(p, action) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.audit_now(p, action.name(), "", Outcome::Denied, &e.message)
                    .await;
                Err(e)
            }
        }
    }

    /// The caller may see this request: its owner, or a role that reads all requests.
    pub(crate) async fn authorize_read(&self, p: &Principal, rec: &RequestRecord) -> HubResult<()> {
        if rec.principal == p.id || require(p, Action::RequestsReadAll).is_ok() {
            return Ok(());
        }
        let e = crate::policy::forbidden(p, Action::RequestsReadAll);
        self.audit_now(
            p,
            "requests.read",
            &rec.id,
            Outcome::Denied,
            "not the owner",
        )
        .await;
        Err(HubError::new(
            ErrorCode::Forbidden,
            format!(
                "request {:?} belongs to another caller; {}",
                rec.id, e.message
            ),
        ))
    }

    /// The caller may act on this request (cancel it, set its push configs): its owner (not
    /// a viewer), or a role that may cancel every request. A denial is audited as `action`.
    pub(crate) async fn authorize_modify(
        &self,
        p: &Principal,
        rec: &RequestRecord,
        action: &str,
    ) -> HubResult<()> {
        if p.kind != PrincipalKind::StreamToken
            && p.role != Role::Viewer
            && (rec.principal == p.id || require(p, Action::RequestsCancelAll).is_ok())
        {
            return Ok(());
        }
        let e = crate::policy::forbidden(p, Action::RequestsCancelAll);
        self.audit_now(p, action, &rec.id, Outcome::Denied, &e.message)
            .await;
        Err(e)
    }

    /// Invocation rules beyond the role: the agent's access list, and for agent principals
    /// (and handoffs) the `agent:invoke:<target>` grant.
    pub(crate) async fn authorize_invoke(
        &self,
        p: &Principal,
        target: &str,
        acting_agent: Option<&str>,
    ) -> HubResult<()> {
        self.authorize(p, Action::Invoke).await?;
        if !self.sec().access.may_invoke(p, target) {
            let msg = format!(
                "{} (role {}) is not on the access list of agent {target:?}",
                p.id,
                p.role.as_str()
            );
            metrics::AUTH_FAILURES
                .with_label_values(&[p.surface.as_str(), "forbidden"])
                .inc();
            self.audit_now(p, "invoke", target, Outcome::Denied, &msg)
                .await;
            return Err(HubError::new(ErrorCode::Forbidden, msg));
        }
        let acting = acting_agent.or(p.agent.as_ref().map(|a| a.agent_id.as_str()));
        if let Some(from) = acting
            && from != target
        {
            let wanted = grants::invoke_permission(target);
            if !self.has_grant(from, &wanted).await? {
                let msg = format!(
                    "agent {from:?} has no grant {wanted:?}; an operator can grant it (grant_permission) or the agent can ask (request_permission)"
                );
                metrics::AUTH_FAILURES
                    .with_label_values(&[p.surface.as_str(), "no_grant"])
                    .inc();
                self.audit_now(p, "invoke", target, Outcome::Denied, &msg)
                    .await;
                return Err(HubError::new(ErrorCode::Forbidden, msg));
            }
        }
        Ok(())
    }
}
