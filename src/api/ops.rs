//! The operations listener (`METRICS_PORT`, default 3000).
//!
//! - `GET /healthz` → `{"ok":true,…}` with queue and running counts; `ok:false` and 503 when
//!   the store is unusable (liveness).
//! - `GET /readyz` → 200 when start-up has finished (catalog loaded, recovery done) and the
//!   store answers; 503 otherwise, and during shutdown (readiness).
//! - `GET /metrics` → Prometheus text format.
//! - `GET /api/agent?action=status` → agent, queue, worker and store statistics (the original
//!   server's endpoint); `action=agents` lists the agents.
//!
//! `A2A_OPS_TOKEN` puts `/metrics` and `/api/agent` behind a bearer token; the probes stay
//! open.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;

use super::{ApiContext, agent_view, bearer, json_response, views};
use crate::metrics;
use crate::policy::keys::hash_token;

pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(warp::reply::Response,)> {
    let health = {
        let ctx = ctx.clone();
        warp::path("healthz")
            .and(warp::path::end())
            .and(warp::get())
            .then(move || healthz(ctx.clone()))
    };
    let ready = {
        let ctx = ctx.clone();
        warp::path("readyz")
            .and(warp::path::end())
            .and(warp::get())
            .then(move || readyz(ctx.clone()))
    };
    let metrics_route = {
        let ctx = ctx.clone();
        warp::path("metrics")
            .and(warp::path::end())
            .and(warp::get())
            .and(warp::header::headers_cloned())
            .map(move |headers: http::HeaderMap| {
                if let Some(denied) = ops_denied(&ctx, &headers) {
                    return denied;
                }
                refresh_gauges(&ctx);
                let mut resp = warp::reply::Response::new(metrics::render().into());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            })
    };
    let status = {
        let ctx = ctx.clone();
        warp::path!("api" / "agent")
            .and(warp::get())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::header::headers_cloned())
            .then(
                move |q: HashMap<String, String>, headers: http::HeaderMap| {
                    let ctx = ctx.clone();
                    async move {
                        match ops_denied(&ctx, &headers) {
                            Some(denied) => denied,
                            None => agent_api(ctx, q).await,
                        }
                    }
                },
            )
    };
    health
        .or(ready)
        .unify()
        .or(metrics_route)
        .unify()
        .or(status)
        .unify()
        .boxed()
}

/// With `A2A_OPS_TOKEN` set, `/metrics` and `/api/agent` answer only `Authorization: Bearer
/// <token>` (compared as SHA-256 digests, so the time taken says nothing about the token);
/// `/healthz` and `/readyz` stay open for probes.
fn ops_denied(ctx: &ApiContext, headers: &http::HeaderMap) -> Option<warp::reply::Response> {
    let want = ctx.config.ops_token.as_deref()?;
    let given = bearer(headers).unwrap_or("");
    if hash_token(given) == hash_token(want) {
        return None;
    }
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"error": {"code": "unauthenticated",
            "message": "this endpoint needs the operations token: send Authorization: Bearer <A2A_OPS_TOKEN>"}}),
    );
    resp.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer realm=\"a2a-mcp ops\""),
    );
    Some(resp)
}

fn refresh_gauges(ctx: &ApiContext) {
    let stats = ctx.hub.stats();
    metrics::QUEUE_LENGTH.set(stats.queued as i64);
    metrics::RUNNING_JOBS.set(stats.running as i64);
    metrics::AGENTS_TOTAL.set(stats.agents_total as i64);
    metrics::AGENTS_ENABLED.set(stats.agents_enabled as i64);
    metrics::refresh_process();
}

async fn healthz(ctx: Arc<ApiContext>) -> warp::reply::Response {
    let stats = ctx.hub.stats();
    let store = ctx.hub.store_ping().await;
    let ok = store.is_ok();
    metrics::HEALTH_CHECKS
        .with_label_values(&["healthz", if ok { "ok" } else { "fail" }])
        .inc();
    let body = views::to_json(&views::HealthView::new(
        &stats,
        store.map_err(|e| e.message),
    ));
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

async fn readyz(ctx: Arc<ApiContext>) -> warp::reply::Response {
    let started = ctx.hub.is_ready();
    let store_ok = ctx.hub.store_ping().await.is_ok();
    let ready = started && store_ok;
    metrics::HEALTH_CHECKS
        .with_label_values(&["readyz", if ready { "ok" } else { "fail" }])
        .inc();
    json_response(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &views::to_json(&views::ReadyView {
            ready,
            started,
            store: store_ok,
        }),
    )
}

async fn agent_api(ctx: Arc<ApiContext>, q: HashMap<String, String>) -> warp::reply::Response {
    match q.get("action").map(String::as_str).unwrap_or("status") {
        "status" => {
            let stats = ctx.hub.stats();
            let counts = ctx.hub.store_counts().await.ok();
            let body = json!({
                "ok": true,
                "version": env!("CARGO_PKG_VERSION"),
                "stats": stats,
                "workers": ctx.hub.workers(),
                "store": counts,
                "memory": { "residentBytes": metrics::resident_bytes() },
            });
            json_response(StatusCode::OK, &body)
        }
        "agents" | "list" => {
            let agents: Vec<Value> = ctx
                .hub
                .list_agents(true)
                .iter()
                .map(|a| agent_view(a, false))
                .collect();
            json_response(StatusCode::OK, &json!({ "agents": agents }))
        }
        other => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": {"code": "invalid_params", "message": format!("unknown action {other:?}; use status or agents")}}),
        ),
    }
}
