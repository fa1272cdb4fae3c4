//! REST handlers of the administration routes: statistics, API keys, the audit log,
//! permission grants and requests, and backups.

use std::time::Duration;

use http::StatusCode;

use super::endpoint::AdminOp;
use super::{Answer, Call, page_limit};
use crate::api::duration_param;
use crate::api::views::{
    self, AuditEntryView, AuditPage, BackupList, BackupView, CreatedKey, DecisionBody,
    DecisionView, GrantView, KeyList, KeyView, NewGrantBody, NewKeyBody, NewPermissionRequestBody,
    PermissionRequestView, PermissionsView, StatsView,
};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Role, now_ms};

pub(super) async fn handle(op: AdminOp, call: Call) -> HubResult<Answer> {
    let hub = &call.rc.hub;
    let p = call.rc.caller();
    match op {
        AdminOp::Stats => ok(&StatsView::from(&hub.get_stats(&p).await?)),
        AdminOp::ListKeys => {
            let now = now_ms();
            let keys = hub.list_keys(&p).await?;
            let keys = keys.iter().map(|k| KeyView::at(k, now)).collect();
            ok(&KeyList { keys })
        }
        AdminOp::CreateKey => {
            let k: NewKeyBody = call.body()?;
            let role: Role = k
                .role
                .parse()
                .map_err(|e: String| HubError::new(ErrorCode::InvalidParams, e))?;
            let exp = duration_param("expiresIn", &k.expires_in)?;
            let (token, rec) = hub.create_key(&p, role, &k.label, exp).await?;
            let view = CreatedKey {
                view: KeyView::at(&rec, now_ms()),
                key: token,
            };
            Ok(Answer::view(StatusCode::CREATED, &view))
        }
        AdminOp::RevokeKey(id) => ok(&KeyView::at(&hub.revoke_key(&p, &id).await?, now_ms())),
        AdminOp::Audit => {
            let q: views::AuditQuery = call.query()?;
            let limit = page_limit(&q.limit)?;
            let entries = hub.list_audit(&p, q.after.as_deref(), limit).await?;
            let next = (entries.len() == limit)
                .then(|| entries.last().map(|e| e.id.clone()))
                .flatten();
            let entries = entries.iter().map(AuditEntryView::from).collect();
            ok(&AuditPage { entries, next })
        }
        AdminOp::Permissions => {
            let q: views::PermissionsQuery = call.query()?;
            let perms = hub.get_permissions(&p, q.agent_id.as_deref()).await?;
            ok(&PermissionsView::at(
                &perms.grants,
                &perms.requests,
                now_ms(),
            ))
        }
        AdminOp::Grant => {
            let g: NewGrantBody = call.body()?;
            let exp = duration_param("expiresIn", &g.expires_in)?;
            let rec = hub
                .grant_permission(&p, &g.agent_id, &g.permission, g.delegable, exp)
                .await?;
            Ok(Answer::view(
                StatusCode::CREATED,
                &GrantView::at(&rec, now_ms()),
            ))
        }
        AdminOp::RevokeGrant(id) => ok(&GrantView::at(
            &hub.revoke_permission(&p, &id).await?,
            now_ms(),
        )),
        AdminOp::RequestPermission => {
            let q: NewPermissionRequestBody = call.body()?;
            let wait = q
                .wait
                .then(|| Duration::from_millis(q.timeout_ms.unwrap_or(60_000)));
            let rec = hub
                .request_permission(&p, q.agent_id.as_deref(), &q.permission, &q.reason, wait)
                .await?;
            Ok(Answer::view(
                StatusCode::CREATED,
                &PermissionRequestView::from(&rec),
            ))
        }
        AdminOp::Approve(ref id) | AdminOp::Deny(ref id) => {
            let approve = matches!(op, AdminOp::Approve(_));
            let d: DecisionBody = call.body()?;
            let exp = duration_param("expiresIn", &d.expires_in)?;
            let (req, grant) = hub
                .decide_permission(&p, id, approve, d.delegable, exp)
                .await?;
            let now = now_ms();
            ok(&DecisionView {
                request: PermissionRequestView::from(&req),
                grant: grant.map(|g| GrantView::at(&g, now)),
            })
        }
        AdminOp::CreateBackup => {
            let s = hub.create_backup(&p).await?;
            Ok(Answer::view(StatusCode::CREATED, &BackupView::from(&s)))
        }
        AdminOp::ListBackups => {
            let q: views::ListBackupsQuery = call.query()?;
            let list = hub.list_backups(&p, views::flag(&q.verify)).await?;
            ok(&BackupList {
                backups: list.iter().map(BackupView::from).collect(),
            })
        }
    }
}

/// A view as the `200 OK` answer.
fn ok<T: serde::Serialize>(v: &T) -> HubResult<Answer> {
    Ok(Answer::view(StatusCode::OK, v))
}
