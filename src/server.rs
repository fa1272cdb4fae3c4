//! Listeners: our own hyper-util accept loop (warp 0.4 has no TLS and no pluggable acceptor),
//! with a tower-level dispatch that sends `/mcp` to rmcp's Streamable HTTP service and
//! everything else to the warp filter tree, on the same port (STACK.md §3).
//!
//! Two listeners: the public API (`STREAM_PORT`: `/mcp`, `/stream`, `/api/v1`, `/a2a`,
//! `/.well-known/agent-card.json`) and operations
//! (`METRICS_PORT`: `/healthz`, `/readyz`, `/metrics`, `/api/agent`). Every response gets the
//! security headers and is counted in `a2a_http_requests_total`. Stopping a listener stops
//! accepting at once and gives open connections the grace period to finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use warp::Filter;

use crate::api::{self, ApiContext, mcp::McpServer};
use crate::metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Resp = http::Response<BoxBody<Bytes, BoxError>>;

/// A running listener.
pub struct Listener {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Stops accepting and waits (up to `grace`) for open connections to finish.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), self.task).await;
    }
}

/// Which listener a response came from, for metrics.
#[derive(Clone, Copy)]
enum Kind {
    Api,
    Ops,
}

fn route_group(path: &str) -> &'static str {
    if path == "/mcp" || path.starts_with("/mcp/") {
        "mcp"
    } else if path.starts_with("/stream") {
        "stream"
    } else if path == "/a2a" || path.starts_with("/a2a/") || path.starts_with("/.well-known/") {
        "a2a"
    } else if path.starts_with("/api/v1") {
        "rest"
    } else if path.starts_with("/healthz") || path.starts_with("/readyz") {
        "health"
    } else if path.starts_with("/metrics") {
        "metrics"
    } else if path.starts_with("/api/agent") {
        "status"
    } else {
        "other"
    }
}

fn with_security_headers(mut resp: Resp) -> Resp {
    let h = resp.headers_mut();
    h.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        http::HeaderValue::from_static("no-referrer"),
    );
    h.insert("x-frame-options", http::HeaderValue::from_static("DENY"));
    h.entry(http::header::CACHE_CONTROL)
        .or_insert(http::HeaderValue::from_static("no-store"));
    resp
}

/// The whole public API as one warp filter (everything but `/mcp`).
fn api_filter(ctx: Arc<ApiContext>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    let rest = api::a2a::routes(ctx.clone())
        .or(api::rest::routes(ctx.clone()))
        .unify()
        .boxed();
    let routes = if ctx.config.enable_streaming {
        api::ws::routes(ctx.clone()).or(rest).unify().boxed()
    } else {
        rest
    };
    routes.recover(recover).unify().boxed()
}

fn ops_filter(ctx: Arc<ApiContext>) -> warp::filters::BoxedFilter<(warp::reply::Response,)> {
    api::ops::routes(ctx).recover(recover).unify().boxed()
}

/// Renders warp's own rejections as JSON errors.
async fn recover(r: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    use crate::error::{ErrorCode, HubError};
    let e = if r.is_not_found() {
        HubError::new(
            ErrorCode::RouteNotFound,
            "no such route; see /api/v1/openapi.json",
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        HubError::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than A2A_MAX_BODY_BYTES",
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        HubError::new(
            ErrorCode::InvalidRequest,
            "a Content-Length header is required on bodies",
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        let mut resp = api::error_response(&HubError::new(
            ErrorCode::InvalidRequest,
            "method not allowed on this route",
        ));
        *resp.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
        return Ok(resp);
    } else if r.find::<warp::reject::InvalidQuery>().is_some() {
        HubError::new(ErrorCode::InvalidParams, "the query string is not valid")
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        HubError::new(
            ErrorCode::InvalidRequest,
            "unsupported media type; send JSON",
        )
    } else if r.find::<warp::reject::MissingHeader>().is_some()
        || r.find::<warp::reject::InvalidHeader>().is_some()
    {
        HubError::new(
            ErrorCode::InvalidRequest,
            "a required header is missing or invalid",
        )
    } else {
        HubError::new(ErrorCode::InvalidRequest, format!("bad request: {r:?}"))
    };
    Ok(api::error_response(&e))
}

/// Starts the public API listener on `addr` (port 0 = any free port).
pub async fn start_api(ctx: Arc<ApiContext>, addr: SocketAddr) -> std::io::Result<Listener> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    ctx.set_stream_base(bound);
    let cfg = &ctx.config;
    let mut hosts: Vec<String> = cfg.allowed_hosts.clone();
    // The bound address itself is a legitimate Host (e.g. 127.0.0.1:PORT on any port).
    let ip = bound.ip().to_string();
    if !bound.ip().is_unspecified() && !hosts.contains(&ip) {
        hosts.push(ip);
    }
    let mut origins: Vec<String> = ["http", "https"]
        .iter()
        .flat_map(|s| {
            ["localhost", "127.0.0.1", "[::1]"]
                .iter()
                .map(move |h| format!("{s}://{h}:*"))
        })
        .collect();
    origins.extend(cfg.allowed_origins.iter().cloned());
    if let Some(u) = &cfg.public_url {
        origins.push(u.clone());
    }
    let mcp_cfg = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(cfg.max_body_bytes)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let mcp_ctx = ctx.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::http(mcp_ctx.clone())),
        Arc::new(LocalSessionManager::default()),
        mcp_cfg,
    );
    let warp_svc = warp::service(api_filter(ctx.clone()));
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        listener,
        stop.clone(),
        Kind::Api,
        Some(mcp),
        warp_svc,
        cfg.max_body_bytes,
    ));
    Ok(Listener {
        addr: bound,
        stop,
        task,
    })
}

/// Starts the operations listener.
pub async fn start_ops(ctx: Arc<ApiContext>, addr: SocketAddr) -> std::io::Result<Listener> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let max_body = ctx.config.max_body_bytes;
    let warp_svc = warp::service(ops_filter(ctx));
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        listener,
        stop.clone(),
        Kind::Ops,
        None,
        warp_svc,
        max_body,
    ));
    Ok(Listener {
        addr: bound,
        stop,
        task,
    })
}

type McpService = StreamableHttpService<McpServer, LocalSessionManager>;

async fn accept_loop<W>(
    listener: TcpListener,
    stop: CancellationToken,
    kind: Kind,
    mcp: Option<McpService>,
    warp_svc: W,
    max_body: usize,
) where
    W: Service<http::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    W::Future: Send,
{
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mcp = mcp.clone();
        let warp_svc = warp_svc.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let mut mcp = mcp.clone();
            let mut warp_svc = warp_svc.clone();
            req.extensions_mut().insert(PeerAddr(peer));
            async move {
                let started = Instant::now();
                let path = req.uri().path().to_string();
                let group = route_group(&path);
                let resp: Resp = match (&mut mcp, group) {
                    (Some(m), "mcp") => match buffer_mcp_body(req, max_body).await {
                        Ok(req) => {
                            let is_delete = req.method() == http::Method::DELETE;
                            let mut r = match m.call(req).await {
                                Ok(r) => r.map(|b| b.map_err(|e| match e {}).boxed()),
                                Err(e) => match e {},
                            };
                            // Ending a session answers 204 (clients expect 200/204, not 202).
                            if is_delete && r.status() == http::StatusCode::ACCEPTED {
                                *r.status_mut() = http::StatusCode::NO_CONTENT;
                            }
                            r
                        }
                        Err(early) => early,
                    },
                    _ => match warp_svc.call(req).await {
                        Ok(r) => r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()),
                        Err(e) => match e {},
                    },
                };
                let resp = with_security_headers(resp);
                let listener = match kind {
                    Kind::Api => "api",
                    Kind::Ops => "ops",
                };
                let class = match resp.status().as_u16() {
                    100..=199 => "1xx",
                    200..=299 => "2xx",
                    300..=399 => "3xx",
                    400..=499 => "4xx",
                    _ => "5xx",
                };
                metrics::HTTP_REQUESTS
                    .with_label_values(&[listener, group, class])
                    .inc();
                metrics::HTTP_DURATION
                    .with_label_values(&[listener, group])
                    .observe(started.elapsed().as_secs_f64());
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    // Let open connections finish (bounded by the caller's timeout).
    graceful.shutdown().await;
}

/// The remote address of an HTTP request (our accept loop sets it; warp's is always None).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// A JSON-RPC error answer produced before the MCP service sees the request.
fn rpc_error(status: http::StatusCode, code: i32, message: &str) -> Resp {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": code, "message": message},
    })
    .to_string();
    let mut resp = http::Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Reads an `/mcp` body (bounded by `A2A_MAX_BODY_BYTES`) so that an oversized body gets 413
/// and a body that is not JSON gets a JSON-RPC parse error (400, -32700) before the protocol
/// layer runs.
async fn buffer_mcp_body(
    req: http::Request<Incoming>,
    max: usize,
) -> Result<http::Request<http_body_util::Full<Bytes>>, Resp> {
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(rpc_error(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    -32600,
                    "the request body is larger than A2A_MAX_BODY_BYTES",
                ));
            }
            return Err(rpc_error(
                http::StatusCode::BAD_REQUEST,
                -32700,
                "the request body could not be read",
            ));
        }
    };
    if parts.method == http::Method::POST {
        if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(rpc_error(
                http::StatusCode::BAD_REQUEST,
                -32700,
                "parse error: the body is not valid JSON",
            ));
        }
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(rpc_error(
                http::StatusCode::BAD_REQUEST,
                -32600,
                "invalid request: send one JSON-RPC message (an object) per POST; batches are not supported",
            ));
        }
    }
    Ok(http::Request::from_parts(
        parts,
        http_body_util::Full::new(bytes),
    ))
}
