//! REST for API keys, the audit log and agent permissions (`/api/v1/admin/…`,
//! `/api/v1/permissions…`). Same rules as `rest.rs`: parse, one hub call, render.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;

use super::{ApiContext, ReqCtx, duration_param, parse_body, reply};
use crate::error::{ErrorCode, HubError};
use crate::model::{Role, now_ms};

type Resp = warp::reply::Response;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewKey {
    role: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewGrant {
    agent_id: String,
    permission: String,
    #[serde(default)]
    delegable: bool,
    #[serde(default)]
    expires_in: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewPermissionRequest {
    #[serde(default)]
    agent_id: Option<String>,
    permission: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    delegable: bool,
    #[serde(default)]
    expires_in: Option<String>,
}

pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(Resp,)> {
    let max = ctx.config.max_body_bytes as u64;
    let with = move || super::req_ctx(ctx.clone());
    let bytes = move || warp::body::content_length_limit(max).and(warp::body::bytes());
    let v1 = warp::path("api").and(warp::path("v1"));

    let list_keys = v1
        .and(warp::path!("admin" / "keys"))
        .and(warp::get())
        .and(with())
        .then(|rc: ReqCtx| async move {
            let r = rc.hub.list_keys(&rc.caller()).await.map(|keys| {
                let now = now_ms();
                json!({"keys": keys.iter().map(|k| k.view(now)).collect::<Vec<_>>()})
            });
            reply(r, StatusCode::OK)
        })
        .boxed();

    let create_key = v1
        .and(warp::path!("admin" / "keys"))
        .and(warp::post())
        .and(bytes())
        .and(with())
        .then(|b: Bytes, rc: ReqCtx| async move {
            let r = async {
                let k: NewKey = parse_body(&b)?;
                let role: Role = k
                    .role
                    .parse()
                    .map_err(|e: String| HubError::new(ErrorCode::InvalidParams, e))?;
                let exp = duration_param("expiresIn", &k.expires_in)?;
                let (token, rec) = rc.hub.create_key(&rc.caller(), role, &k.label, exp).await?;
                let mut v = rec.view(now_ms());
                v["key"] = Value::String(token);
                Ok(v)
            }
            .await;
            reply(r, StatusCode::CREATED)
        })
        .boxed();

    let revoke_key = v1
        .and(warp::path!("admin" / "keys" / String))
        .and(warp::delete())
        .and(with())
        .then(|id: String, rc: ReqCtx| async move {
            let r = rc
                .hub
                .revoke_key(&rc.caller(), &id)
                .await
                .map(|k| k.view(now_ms()));
            reply(r, StatusCode::OK)
        })
        .boxed();

    let audit = v1
        .and(warp::path!("admin" / "audit"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .then(|q: HashMap<String, String>, rc: ReqCtx| async move {
            let r = async {
                let limit = match q.get("limit") {
                    Some(l) => l
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            HubError::new(ErrorCode::InvalidParams, "limit must be 1-1000")
                        })?,
                    None => 100,
                };
                let entries = rc
                    .hub
                    .list_audit(&rc.caller(), q.get("after").map(String::as_str), limit)
                    .await?;
                let next = (entries.len() == limit)
                    .then(|| entries.last().map(|e| e.id.clone()))
                    .flatten();
                Ok(json!({
                    "entries": entries.iter().map(|e| e.view()).collect::<Vec<_>>(),
                    "next": next,
                }))
            }
            .await;
            reply(r, StatusCode::OK)
        })
        .boxed();

    let permissions = v1
        .and(warp::path!("permissions"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .then(|q: HashMap<String, String>, rc: ReqCtx| async move {
            let r = rc
                .hub
                .get_permissions(&rc.caller(), q.get("agentId").map(String::as_str))
                .await
                .map(|p| {
                    let now = now_ms();
                    json!({
                        "grants": p.grants.iter().map(|g| g.view(now)).collect::<Vec<_>>(),
                        "requests": p.requests.iter().map(|r| r.view()).collect::<Vec<_>>(),
                    })
                });
            reply(r, StatusCode::OK)
        })
        .boxed();

    let grant = v1
        .and(warp::path!("permissions" / "grants"))
        .and(warp::post())
        .and(bytes())
        .and(with())
        .then(|b: Bytes, rc: ReqCtx| async move {
            let r = async {
                let g: NewGrant = parse_body(&b)?;
                let exp = duration_param("expiresIn", &g.expires_in)?;
                let rec = rc
                    .hub
                    .grant_permission(&rc.caller(), &g.agent_id, &g.permission, g.delegable, exp)
                    .await?;
                Ok(rec.view(now_ms()))
            }
            .await;
            reply(r, StatusCode::CREATED)
        })
        .boxed();

    let revoke_grant = v1
        .and(warp::path!("permissions" / "grants" / String))
        .and(warp::delete())
        .and(with())
        .then(|id: String, rc: ReqCtx| async move {
            let r = rc
                .hub
                .revoke_permission(&rc.caller(), &id)
                .await
                .map(|g| g.view(now_ms()));
            reply(r, StatusCode::OK)
        })
        .boxed();

    let request = v1
        .and(warp::path!("permissions" / "requests"))
        .and(warp::post())
        .and(bytes())
        .and(with())
        .then(|b: Bytes, rc: ReqCtx| async move {
            let r = async {
                let q: NewPermissionRequest = parse_body(&b)?;
                let wait = q
                    .wait
                    .then(|| Duration::from_millis(q.timeout_ms.unwrap_or(60_000)));
                let rec = rc
                    .hub
                    .request_permission(
                        &rc.caller(),
                        q.agent_id.as_deref(),
                        &q.permission,
                        &q.reason,
                        wait,
                    )
                    .await?;
                Ok(rec.view())
            }
            .await;
            reply(r, StatusCode::CREATED)
        })
        .boxed();

    let decide = v1
        .and(warp::path("permissions"))
        .and(warp::path("requests"))
        .and(warp::path::param::<String>())
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::post())
        .and(bytes())
        .and(with())
        .then(|id: String, verb: String, b: Bytes, rc: ReqCtx| async move {
            let r = async {
                let approve = match verb.as_str() {
                    "approve" => true,
                    "deny" => false,
                    other => {
                        return Err(HubError::new(
                            ErrorCode::RouteNotFound,
                            format!("no route POST /api/v1/permissions/requests/{id}/{other}; use approve or deny"),
                        ));
                    }
                };
                let d: Decision = parse_body(&b)?;
                let exp = duration_param("expiresIn", &d.expires_in)?;
                let (req, grant) = rc
                    .hub
                    .decide_permission(&rc.caller(), &id, approve, d.delegable, exp)
                    .await?;
                Ok(json!({"request": req.view(), "grant": grant.map(|g| g.view(now_ms()))}))
            }
            .await;
            reply(r, StatusCode::OK)
        })
        .boxed();

    let create_backup = v1
        .and(warp::path!("admin" / "backups"))
        .and(warp::post())
        .and(with())
        .then(|rc: ReqCtx| async move {
            let r = rc
                .hub
                .create_backup(&rc.caller())
                .await
                .map(|s| crate::backup::info_view(&s));
            reply(r, StatusCode::CREATED)
        })
        .boxed();

    let list_backups = v1
        .and(warp::path!("admin" / "backups"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .then(|q: HashMap<String, String>, rc: ReqCtx| async move {
            let verify = q.get("verify").is_some_and(|v| v == "true");
            let r = rc
                .hub
                .list_backups(&rc.caller(), verify)
                .await
                .map(|b| json!({ "backups": b }));
            reply(r, StatusCode::OK)
        })
        .boxed();

    list_keys
        .or(create_backup)
        .unify()
        .or(list_backups)
        .unify()
        .or(create_key)
        .unify()
        .or(revoke_key)
        .unify()
        .or(audit)
        .unify()
        .or(permissions)
        .unify()
        .or(grant)
        .unify()
        .or(revoke_grant)
        .unify()
        .or(request)
        .unify()
        .or(decide)
        .unify()
        .boxed()
}
