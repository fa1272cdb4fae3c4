//! JSON REST at `/api/v1`, table-driven: [`endpoint::ROUTES`] lists every route once, a
//! request is parsed into an [`Endpoint`], and one handler per group answers it
//! (`agents.rs`, `requests.rs` with the SSE event stream, `sessions.rs`, `admin.rs` for
//! statistics, keys, audit, permissions and backups). The OpenAPI document served at
//! `GET /api/v1/openapi.json` is generated from the same table (`api::openapi`).
//!
//! Every handler parses, calls one hub method and renders a view (`api::views`). Errors
//! render in one place ([`render`]) from the error registry as `{"error":{"code","message"}}`
//! with the code's HTTP status; a path that exists with another method is 405, an unknown
//! path falls through to the server's 404. Bodies must be JSON objects of at most
//! `A2A_MAX_BODY_BYTES`; routes without a body do not read one. Who may call what is checked by
//! the hub; the table documents it.

mod admin;
mod agents;
pub mod endpoint;
mod requests;
mod sessions;

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use warp::Filter;
use warp::filters::BoxedFilter;

pub use endpoint::{Endpoint, Miss, ROUTES, Route};

use super::{ApiContext, ReqCtx, error_response, json_response, views};
use crate::error::{ErrorCode, HubError, HubResult};

type Resp = warp::reply::Response;

/// What a handler answers: a view with its status, or a ready response (SSE, the document).
pub(crate) enum Answer {
    Json(StatusCode, serde_json::Value),
    Raw(Resp),
}

impl Answer {
    /// A view as the JSON answer.
    pub(crate) fn view<T: Serialize>(status: StatusCode, v: &T) -> Answer {
        Answer::Json(status, views::to_json(v))
    }
}

/// One request as a handler sees it: the caller, the raw query, the headers and the body.
pub(crate) struct Call {
    pub rc: ReqCtx,
    query: String,
    pub headers: http::HeaderMap,
    body: Bytes,
}

impl Call {
    /// The query string as `T` (string fields; unknown parameters are ignored, a repeated
    /// one counts once with its last value).
    pub fn query<T: DeserializeOwned>(&self) -> HubResult<T> {
        let invalid = || HubError::new(ErrorCode::InvalidParams, "the query string is not valid");
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(&self.query).map_err(|_| invalid())?;
        let map: serde_json::Map<String, serde_json::Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|_| invalid())
    }

    /// The body as `T` (a JSON object; empty counts as `{}`).
    pub fn body<T: DeserializeOwned>(&self) -> HubResult<T> {
        super::parse_body(&self.body)
    }
}

/// Everything under `/api/v1`.
pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(Resp,)> {
    let max = ctx.config.max_body_bytes as u64;
    let parsed = warp::path::full().and(warp::method()).and_then(
        |full: warp::path::FullPath, method: http::Method| async move {
            match Endpoint::parse(&method, full.as_str()) {
                Ok((ep, route)) => Ok(Some((ep, route))),
                Err(Miss::WrongMethod) => Ok(None),
                Err(Miss::NotFound) => Err(warp::reject::not_found()),
            }
        },
    );
    // Routes with a body read it (bounded); the others never wait for one. A body route's
    // rejection (too large, no length) wins over the other branch's not-found.
    let with_body = parsed
        .and_then(|m: Matched| async move {
            match m {
                Some((_, route)) if route.reads_body() => Ok(m),
                _ => Err(warp::reject::not_found()),
            }
        })
        .and(warp::body::content_length_limit(max))
        .and(warp::body::bytes());
    let without_body = parsed
        .and_then(|m: Matched| async move {
            match m {
                Some((_, route)) if route.reads_body() => Err(warp::reject::not_found()),
                _ => Ok(m),
            }
        })
        .and(warp::any().map(Bytes::new));
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    with_body
        .or(without_body)
        .unify()
        .and(query)
        .and(warp::header::headers_cloned())
        .and(super::req_ctx(ctx))
        .then(
            |m: Matched, body: Bytes, query: String, headers: http::HeaderMap, rc: ReqCtx| async move {
                let Some((ep, _)) = m else {
                    let mut resp = render(Err(HubError::new(
                        ErrorCode::InvalidRequest,
                        "method not allowed on this route",
                    )));
                    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                    return resp;
                };
                let call = Call {
                    rc,
                    query,
                    headers,
                    body,
                };
                render(dispatch(ep, call).await)
            },
        )
        .boxed()
}

type Matched = Option<(Endpoint, &'static Route)>;

async fn dispatch(ep: Endpoint, call: Call) -> HubResult<Answer> {
    match ep {
        Endpoint::OpenApi => Ok(Answer::Raw(super::openapi::response())),
        Endpoint::Agents(op) => agents::handle(op, call).await,
        Endpoint::Requests(op) => requests::handle(op, call).await,
        Endpoint::Sessions(op) => sessions::handle(op, call).await,
        Endpoint::Admin(op) => admin::handle(op, call).await,
    }
}

/// The one renderer of REST answers and errors.
pub(crate) fn render(r: HubResult<Answer>) -> Resp {
    match r {
        Ok(Answer::Json(status, v)) => json_response(status, &v),
        Ok(Answer::Raw(resp)) => resp,
        Err(e) => error_response(&e),
    }
}

/// A `limit` query parameter: 1-1000, 100 when absent.
pub(crate) fn page_limit(v: &Option<String>) -> HubResult<usize> {
    match v {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| HubError::new(ErrorCode::InvalidParams, "limit must be 1-1000")),
        None => Ok(100),
    }
}
