//! JSON REST at `/api/v1` (documented in `GET /api/v1/openapi.json`).
//!
//! Every handler parses, calls one hub method and renders with [`invocation_view`] /
//! [`agent_view`]; errors render from the error registry as
//! `{"error":{"code","message"}}` with the code's HTTP status. Bodies must be JSON objects of at
//! most `A2A_MAX_BODY_BYTES`. Request events are also served as SSE at
//! `GET /api/v1/requests/{id}/events` (`Last-Event-ID` or `?after=` to resume); the stream ends
//! after the terminal event, or after an `error` event (a store failure, or the caller's API
//! key revoked or expired).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;

use serde_json::{Map, Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;

use super::{
    ApiContext, ReqCtx, agent_view, error_response, invocation_view, json_response, parse_body,
    reply, session_view,
};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::hub::{HandoffArgs, InvokeArgs};
use crate::model::{AgentSpec, Principal, RequestState};
use crate::store::RequestFilter;

const OPENAPI: &str = include_str!("openapi.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvokeBody {
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    input: Map<String, Value>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default)]
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HandoffBody {
    agent_id: String,
    #[serde(default)]
    capability: Option<String>,
    #[serde(default)]
    input: Map<String, Value>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportCardBody {
    card_url: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    replace: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SessionBody {
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

type Resp = warp::reply::Response;

/// Everything under `/api/v1`.
pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(Resp,)> {
    let max = ctx.config.max_body_bytes as u64;
    let with = {
        let ctx = ctx.clone();
        move || super::req_ctx(ctx.clone())
    };
    let body = move || warp::body::content_length_limit(max).and(warp::body::bytes());
    let base = warp::path("api").and(warp::path("v1"));

    let openapi = base
        .and(warp::path!("openapi.json"))
        .and(warp::get())
        .map(|| {
            let mut r = Resp::new(OPENAPI.into());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        })
        .boxed();

    let list_agents = base
        .and(warp::path!("agents"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .then(|q: HashMap<String, String>, ctx: ReqCtx| async move {
            let all = q.get("includeDisabled").is_some_and(|v| v == "true");
            let r = ctx
                .hub
                .visible_agents(&ctx.caller(), all)
                .await
                .map(|agents| {
                    let agents: Vec<Value> = agents.iter().map(|a| agent_view(a, false)).collect();
                    json!({ "agents": agents })
                });
            reply(r, StatusCode::OK)
        })
        .boxed();

    let deploy = base
        .and(warp::path!("agents"))
        .and(warp::post())
        .and(warp::query::<HashMap<String, String>>())
        .and(body())
        .and(with())
        .then(
            |q: HashMap<String, String>, b: Bytes, ctx: ReqCtx| async move {
                let p = ctx.caller();
                let replace = q.get("replace").is_some_and(|v| v == "true");
                let r = match parse_body::<AgentSpec>(&b) {
                    Ok(spec) => ctx
                        .hub
                        .deploy_agent(&p, spec, replace)
                        .await
                        .map(|a| agent_view(&a, true)),
                    Err(e) => Err(e),
                };
                reply(r, StatusCode::CREATED)
            },
        )
        .boxed();

    // The hub checks the caller's role before it fetches anything.
    let import_card = base
        .and(warp::path!("agents" / "import-card"))
        .and(warp::post())
        .and(body())
        .and(with())
        .then(|b: Bytes, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = match parse_body::<ImportCardBody>(&b) {
                Ok(a) => ctx
                    .hub
                    .import_agent_card(&p, &a.card_url, a.id.as_deref(), a.replace)
                    .await
                    .map(|a| agent_view(&a, true)),
                Err(e) => Err(e),
            };
            reply(r, StatusCode::CREATED)
        })
        .boxed();

    let get_agent = base
        .and(warp::path!("agents" / String))
        .and(warp::get())
        .and(with())
        .then(|id: String, ctx: ReqCtx| async move {
            let r = ctx
                .hub
                .describe_agent(&ctx.caller(), &id)
                .await
                .map(|a| agent_view(&a, true));
            reply(r, StatusCode::OK)
        })
        .boxed();

    let patch_agent = base
        .and(warp::path!("agents" / String))
        .and(warp::patch())
        .and(body())
        .and(with())
        .then(|id: String, b: Bytes, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = match parse_body::<Map<String, Value>>(&b) {
                Ok(patch) => ctx
                    .hub
                    .update_agent(&p, &id, &Value::Object(patch))
                    .await
                    .map(|a| agent_view(&a, true)),
                Err(e) => Err(e),
            };
            reply(r, StatusCode::OK)
        })
        .boxed();

    let delete_agent = base
        .and(warp::path!("agents" / String))
        .and(warp::delete())
        .and(with())
        .then(|id: String, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = ctx
                .hub
                .remove_agent(&p, &id)
                .await
                .map(|()| json!({ "removed": id }));
            reply(r, StatusCode::OK)
        })
        .boxed();

    let toggle = |enable: bool| {
        let path = if enable { "enable" } else { "disable" };
        base.and(warp::path("agents"))
            .and(warp::path::param::<String>())
            .and(warp::path(path))
            .and(warp::path::end())
            .and(warp::post())
            .and(with())
            .then(move |id: String, ctx: ReqCtx| async move {
                let p = ctx.caller();
                let r = ctx
                    .hub
                    .set_agent_enabled(&p, &id, enable)
                    .await
                    .map(|a| agent_view(&a, true));
                reply(r, StatusCode::OK)
            })
            .boxed()
    };
    let toggle_agent = toggle(true).or(toggle(false)).unify().boxed();

    let invoke = base
        .and(warp::path!("agents" / String / "invoke"))
        .and(warp::post())
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(body())
        .and(with())
        .then(
            |id: String, idem: Option<String>, b: Bytes, ctx: ReqCtx| async move {
                let p = ctx.caller();
                let body = match parse_body::<InvokeBody>(&b) {
                    Ok(body) => body,
                    Err(e) => return error_response(&e),
                };
                let rec = match ctx
                    .hub
                    .invoke(
                        &p,
                        InvokeArgs {
                            agent_id: id,
                            capability: body.capability,
                            input: Value::Object(body.input),
                            session_id: body.session_id,
                            idempotency_key: body.idempotency_key.or(idem),
                        },
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(e) => return error_response(&e),
                };
                answer(&ctx, &p, rec, body.wait, body.timeout_ms).await
            },
        )
        .boxed();

    let list_requests = base
        .and(warp::path!("requests"))
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .then(|q: HashMap<String, String>, ctx: ReqCtx| async move {
            let r = list_requests(&ctx, q).await;
            reply(r, StatusCode::OK)
        })
        .boxed();

    let get_request = base
        .and(warp::path!("requests" / String))
        .and(warp::get())
        .and(with())
        .then(|id: String, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = ctx
                .hub
                .get_status(&p, &id)
                .await
                .map(|rec| invocation_view(&ctx, &rec));
            reply(r, StatusCode::OK)
        })
        .boxed();

    let cancel = base
        .and(warp::path!("requests" / String / "cancel"))
        .and(warp::post())
        .and(body())
        .and(with())
        .then(|id: String, b: Bytes, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = match parse_body::<CancelBody>(&b) {
                Ok(c) => ctx
                    .hub
                    .cancel(&p, &id, c.reason)
                    .await
                    .map(|rec| invocation_view(&ctx, &rec)),
                Err(e) => Err(e),
            };
            reply(r, StatusCode::OK)
        })
        .boxed();

    let handoff = base
        .and(warp::path!("requests" / String / "handoff"))
        .and(warp::post())
        .and(body())
        .and(with())
        .then(|id: String, b: Bytes, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = match parse_body::<HandoffBody>(&b) {
                Ok(h) => ctx
                    .hub
                    .handoff(
                        &p,
                        HandoffArgs {
                            parent_id: id,
                            agent_id: h.agent_id,
                            capability: h.capability,
                            input: Value::Object(h.input),
                            idempotency_key: h.idempotency_key,
                        },
                    )
                    .await
                    .map(|rec| invocation_view(&ctx, &rec)),
                Err(e) => Err(e),
            };
            reply(r, StatusCode::ACCEPTED)
        })
        .boxed();

    let events = base
        .and(warp::path!("requests" / String / "events"))
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::query::<HashMap<String, String>>())
        .and(with())
        .then(
            |id: String,
             headers: http::HeaderMap,
             q: HashMap<String, String>,
             ctx: ReqCtx| async move { sse(ctx, id, headers, q).await },
        )
        .boxed();

    let open_session = base
        .and(warp::path!("sessions"))
        .and(warp::post())
        .and(body())
        .and(with())
        .then(|b: Bytes, ctx: ReqCtx| async move {
            let p = ctx.caller();
            let r = match parse_body::<SessionBody>(&b) {
                Ok(s) => ctx
                    .hub
                    .open_session(
                        &p,
                        s.agent_id,
                        Value::Object(s.metadata.unwrap_or_default()),
                    )
                    .await
                    .map(|s| session_view(&s)),
                Err(e) => Err(e),
            };
            reply(r, StatusCode::CREATED)
        })
        .boxed();

    let get_session = base
        .and(warp::path!("sessions" / String))
        .and(warp::get())
        .and(with())
        .then(|id: String, ctx: ReqCtx| async move {
            reply(
                ctx.hub
                    .get_session(&ctx.caller(), &id)
                    .await
                    .map(|s| session_view(&s)),
                StatusCode::OK,
            )
        })
        .boxed();

    let close_session = base
        .and(warp::path!("sessions" / String))
        .and(warp::delete())
        .and(with())
        .then(|id: String, ctx: ReqCtx| async move {
            let p = ctx.caller();
            reply(
                ctx.hub
                    .close_session(&p, &id)
                    .await
                    .map(|s| session_view(&s)),
                StatusCode::OK,
            )
        })
        .boxed();

    let stats = base
        .and(warp::path!("stats"))
        .and(warp::get())
        .and(with())
        .then(|ctx: ReqCtx| async move {
            let r = match ctx.hub.get_stats(&ctx.caller()).await {
                Ok(st) => serde_json::to_value(st).map_err(HubError::internal),
                Err(e) => Err(e),
            };
            reply(r, StatusCode::OK)
        })
        .boxed();

    openapi
        .or(list_agents)
        .unify()
        .or(deploy)
        .unify()
        .or(import_card)
        .unify()
        .or(get_agent)
        .unify()
        .or(patch_agent)
        .unify()
        .or(delete_agent)
        .unify()
        .or(toggle_agent)
        .unify()
        .or(invoke)
        .unify()
        .or(list_requests)
        .unify()
        .or(get_request)
        .unify()
        .or(cancel)
        .unify()
        .or(handoff)
        .unify()
        .or(events)
        .unify()
        .or(open_session)
        .unify()
        .or(get_session)
        .unify()
        .or(close_session)
        .unify()
        .or(stats)
        .unify()
        .boxed()
}

async fn answer(
    ctx: &ApiContext,
    p: &Principal,
    rec: crate::model::RequestRecord,
    wait: bool,
    timeout_ms: Option<u64>,
) -> Resp {
    if !wait {
        return json_response(StatusCode::ACCEPTED, &invocation_view(ctx, &rec));
    }
    let timeout = Duration::from_millis(timeout_ms.unwrap_or(60_000));
    match super::wait_for(&ctx.hub, p, &rec.id, timeout, |_| async {}).await {
        Ok((rec, terminal)) => {
            let mut v = invocation_view(ctx, &rec);
            if let Value::Object(m) = &mut v {
                m.insert("timedOut".into(), Value::Bool(!terminal));
            }
            json_response(
                if terminal {
                    StatusCode::OK
                } else {
                    StatusCode::ACCEPTED
                },
                &v,
            )
        }
        Err(e) => error_response(&e),
    }
}

async fn list_requests(ctx: &ReqCtx, q: HashMap<String, String>) -> HubResult<Value> {
    let mut states = Vec::new();
    if let Some(s) = q.get("status") {
        for part in s.split(',') {
            let state = RequestState::ALL
                .into_iter()
                .find(|st| st.as_str() == part.trim())
                .ok_or_else(|| {
                    HubError::new(
                        ErrorCode::InvalidParams,
                        format!(
                            "unknown status {part:?}; use queued, running, done, error or canceled"
                        ),
                    )
                })?;
            states.push(state);
        }
    }
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| HubError::new(ErrorCode::InvalidParams, "limit must be 1-1000"))?,
        None => 100,
    };
    let filter = RequestFilter {
        session_id: q.get("sessionId").cloned(),
        agent_id: q.get("agentId").cloned(),
        states,
        after_id: q.get("after").cloned(),
        limit,
    };
    let recs = ctx.hub.list_requests(&ctx.caller(), &filter).await?;
    let next = (recs.len() == limit)
        .then(|| recs.last().map(|r| r.id.clone()))
        .flatten();
    let items: Vec<Value> = recs.iter().map(|r| invocation_view(ctx, r)).collect();
    Ok(json!({ "requests": items, "next": next }))
}

async fn sse(
    ctx: ReqCtx,
    id: String,
    headers: http::HeaderMap,
    q: HashMap<String, String>,
) -> Resp {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| q.get("after").cloned());
    let after = match resume {
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return error_response(&HubError::new(
                    ErrorCode::InvalidParams,
                    format!("Last-Event-ID/after {s:?} is not a sequence number"),
                ));
            }
        },
        None => 0,
    };
    let p = ctx.caller();
    let events = match ctx.hub.subscribe(&p, &id, after).await {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let client = super::SseClient::open();
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    tokio::spawn(async move {
        let _client = client;
        let mut events = events;
        while let Some(item) = events.next().await {
            let (ev, last) = match item {
                Ok(ev) => (
                    warp::sse::Event::default()
                        .id(ev.seq.to_string())
                        .event(ev.kind.type_name())
                        .data(ev.to_json().to_string()),
                    false,
                ),
                Err(e) => (
                    warp::sse::Event::default()
                        .event("error")
                        .data(e.to_json().to_string()),
                    true,
                ),
            };
            if tx.send(ev).await.is_err() || last {
                break;
            }
        }
    });
    super::sse_reply(rx)
}
