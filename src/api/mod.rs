//! Transport adapters: each parses, authorises, calls one hub method and renders the answer.
//!
//! - `a2a`: A2A JSON-RPC at `/a2a/{agentId}` (and `/a2a`), Agent Cards, SSE task streams.
//! - `mcp`: the MCP server (rmcp), on stdio and on Streamable HTTP at `/mcp`.
//! - `ws`: WebSocket streams at `/stream`.
//! - `rest`: JSON REST at `/api/v1` (with SSE event streams), table-driven (`rest::ROUTES`).
//! - `openapi`: the OpenAPI 3.1 document, generated from the REST table and the views.
//! - `views`: the typed JSON shapes (responses and request bodies) every transport renders.
//! - `ops`: `/healthz`, `/readyz`, `/metrics`, `/api/agent?action=status` on the ops port.
//!
//! Shared here: the [`ApiContext`] every adapter gets, principal resolution and the helpers
//! that render hub errors. Adapters must not hold business rules; if two need the same logic
//! it belongs in the hub.

pub mod a2a;
pub mod mcp;
pub mod openapi;
pub mod ops;
pub mod rest;
pub mod views;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::error::HubResult;
use crate::hub::Hub;
use crate::model::{Principal, RequestRecord};

/// What every adapter gets: the hub handle and the few settings transports need.
pub struct ApiContext {
    pub hub: Hub,
    pub config: Arc<Config>,
    /// `ws://host:port` (or `wss://`) of the stream listener, when one is running.
    pub stream_base: parking_lot::RwLock<Option<String>>,
}

impl ApiContext {
    pub fn new(hub: Hub, config: Arc<Config>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            config,
            stream_base: parking_lot::RwLock::new(None),
        })
    }

    /// The WebSocket URL a client can use as is to follow a request.
    pub fn stream_url(&self, request_id: &str) -> Option<String> {
        self.stream_base
            .read()
            .as_ref()
            .map(|b| format!("{b}/stream?requestId={request_id}"))
    }

    /// Sets the stream base from a TLS-aware scheme choice (see [`Self::set_stream_base`]).
    pub fn set_stream_base_tls(&self, bound: std::net::SocketAddr, tls: bool) {
        self.set_stream_base(bound);
        if tls && self.config.public_url.is_none() {
            let mut b = self.stream_base.write();
            if let Some(base) = b.as_mut() {
                *base = base.replacen("ws://", "wss://", 1);
            }
        }
    }

    /// `http://host:port` (or `https://…`) clients use to reach the API listener: the
    /// configured public URL (`A2A_PUBLIC_URL`), else derived from the bound address. Used for
    /// the `url`s of Agent Cards. `None` before a listener is bound.
    pub fn public_base_url(&self) -> Option<String> {
        self.stream_base.read().as_ref().map(|b| {
            b.replacen("wss://", "https://", 1)
                .replacen("ws://", "http://", 1)
                .trim_end_matches('/')
                .to_string()
        })
    }

    /// Sets the stream base from the bound address (or the configured public URL).
    pub fn set_stream_base(&self, bound: std::net::SocketAddr) {
        let base = match &self.config.public_url {
            Some(u) => u
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1),
            None => {
                let ip = if bound.ip().is_unspecified() {
                    match bound.ip() {
                        std::net::IpAddr::V4(_) => "127.0.0.1".to_string(),
                        std::net::IpAddr::V6(_) => "[::1]".to_string(),
                    }
                } else if bound.is_ipv6() {
                    format!("[{}]", bound.ip())
                } else {
                    bound.ip().to_string()
                };
                format!("ws://{ip}:{}", bound.port())
            }
        };
        *self.stream_base.write() = Some(base);
    }

    /// Cancelled when the hub begins shutting down.
    pub fn hub_stopping(&self) -> tokio_util::sync::CancellationToken {
        self.hub.stopping_token()
    }
}

/// The context of one HTTP request: the shared [`ApiContext`] and the authenticated caller
/// (set by the listener's dispatch in `server.rs` before any handler runs).
#[derive(Clone)]
pub struct ReqCtx {
    pub ctx: Arc<ApiContext>,
    pub principal: Principal,
}

impl std::ops::Deref for ReqCtx {
    type Target = ApiContext;
    fn deref(&self) -> &ApiContext {
        &self.ctx
    }
}

impl ReqCtx {
    pub fn caller(&self) -> Principal {
        self.principal.clone()
    }
}

/// A warp filter yielding the [`ReqCtx`] of a request; a request without an authenticated
/// caller (which the dispatch never lets through) is rejected.
pub fn req_ctx(
    ctx: Arc<ApiContext>,
) -> impl warp::Filter<Extract = (ReqCtx,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    warp::ext::get::<Principal>().map(move |principal: Principal| ReqCtx {
        ctx: ctx.clone(),
        principal,
    })
}

/// The invocation summary every transport returns ([`views::RequestView`] as JSON).
pub fn invocation_view(ctx: &ApiContext, rec: &RequestRecord) -> Value {
    views::to_json(&ctx.request_view(rec))
}

impl ApiContext {
    /// The typed view of a request, with the stream URL of this listener.
    pub fn request_view(&self, rec: &RequestRecord) -> views::RequestView {
        views::RequestView::new(rec, self.stream_url(&rec.id))
    }
}

/// The JSON view of an agent shared by every transport ([`views::AgentView`]). `detailed`
/// adds schemas and the full definition, with secret values shown as `***`.
pub fn agent_view(a: &crate::hub::AgentEntry, detailed: bool) -> Value {
    if detailed {
        views::to_json(&views::AgentView::detailed(a))
    } else {
        views::to_json(&views::AgentView::summary(a))
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A hub error as an HTTP response with a JSON body.
pub fn error_response(e: &crate::error::HubError) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(e.to_json().to_string().into());
    *resp.status_mut() =
        http::StatusCode::from_u16(e.code.http_status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON value as an HTTP response.
pub fn json_response(status: http::StatusCode, v: &Value) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(v.to_string().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The JSON view of a session shared by every transport ([`views::SessionView`]).
pub fn session_view(s: &crate::model::SessionRecord) -> Value {
    views::to_json(&views::SessionView::from(s))
}

/// A hub answer as an HTTP response: `ok` status with the JSON, or the error's.
pub fn reply(r: HubResult<Value>, ok: http::StatusCode) -> warp::reply::Response {
    match r {
        Ok(v) => json_response(ok, &v),
        Err(e) => error_response(&e),
    }
}

/// Parses a JSON request body (an object; empty counts as `{}`) into `T`.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &bytes::Bytes) -> HubResult<T> {
    use crate::error::{ErrorCode, HubError};
    let v: Value = if body.is_empty() {
        Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            HubError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?
    };
    if !v.is_object() {
        return Err(HubError::new(
            ErrorCode::InvalidRequest,
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(v)
        .map_err(|e| HubError::new(ErrorCode::InvalidParams, format!("invalid body: {e}")))
}

/// Parses an optional duration argument such as `30m`, `12h` or `7d`.
pub fn duration_param(field: &str, v: &Option<String>) -> HubResult<Option<Duration>> {
    use crate::error::{ErrorCode, HubError};
    match v {
        None => Ok(None),
        Some(s) => humantime::parse_duration(s).map(Some).map_err(|_| {
            HubError::new(
                ErrorCode::InvalidParams,
                format!("{field} {s:?} is not a duration such as 30m, 12h or 7d"),
            )
        }),
    }
}

/// Counts one open SSE stream in `a2a_sse_clients` while it is alive.
pub struct SseClient(());

impl SseClient {
    pub fn open() -> Self {
        crate::metrics::SSE_CLIENTS.inc();
        SseClient(())
    }
}

impl Drop for SseClient {
    fn drop(&mut self) {
        crate::metrics::SSE_CLIENTS.dec();
    }
}

/// An SSE response fed by `rx` (a task sends the events: warp needs a `Sync` stream, which
/// the hub's event stream is not), with keep-alives and proxy buffering off.
pub fn sse_reply(rx: tokio::sync::mpsc::Receiver<warp::sse::Event>) -> warp::reply::Response {
    use futures_util::StreamExt;
    use warp::Reply;
    let s = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    let mut resp = warp::sse::reply(
        warp::sse::keep_alive()
            .interval(Duration::from_secs(15))
            .stream(s),
    )
    .into_response();
    resp.headers_mut()
        .insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    resp
}
