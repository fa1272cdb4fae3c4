//! Listeners: our own hyper-util accept loop (warp 0.4 has no TLS and no pluggable acceptor),
//! with a tower-level dispatch that sends `/mcp` to rmcp's Streamable HTTP service and
//! everything else to the warp filter tree, on the same port (STACK.md §3).
//!
//! Two listeners: the public API (`STREAM_PORT`: `/mcp`, `/stream`, `/api/v1`, `/a2a`,
//! `/.well-known/agent-card.json`) and operations (`METRICS_PORT`: `/healthz`, `/readyz`,
//! `/metrics`, `/api/agent`). Both speak TLS when a certificate is configured (the ops port can
//! opt out with `A2A_OPS_TLS=off`).
//!
//! - `conn.rs`: accepting, the connection budgets (per listener and per client address) and
//!   the per-connection deadlines (first request head, idle, HTTP/2 keep-alive).
//! - `admission.rs`: the one request-admission policy (Host, Origin, JSON bodies) on both
//!   listeners, then on the API listener authentication, the open-hub loopback rule and the
//!   rate limits — once, before any handler runs; the principal goes into the request's
//!   extensions.
//! - here: the listeners, routing (`/mcp` vs warp), security headers on every response and
//!   `a2a_http_requests_total`. rmcp's own Host/Origin checks are switched off: the admission
//!   policy is the only rule, for MCP as for every other route.

pub mod admission;
mod conn;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use rmcp::transport::StreamableHttpServerConfig;
use rmcp::transport::StreamableHttpService;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::Instrument;
use warp::Filter;

use crate::api::{self, ApiContext, mcp::McpServer};
use crate::error::ErrorCode;
use crate::metrics;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Resp = http::Response<BoxBody<Bytes, BoxError>>;

/// Time a client has to send an `/mcp` body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running listener.
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: bool,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Listener {
    /// Stops accepting and waits (up to `grace`) for open connections to finish.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), self.task).await;
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Which listener a connection or response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Api,
    Ops,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Ops => "ops",
        }
    }
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

fn with_security_headers(mut resp: Resp, tls: bool) -> Resp {
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
    h.insert(
        "content-security-policy",
        http::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.entry(http::header::CACHE_CONTROL)
        .or_insert(http::HeaderValue::from_static("no-store"));
    if tls {
        h.insert(
            "strict-transport-security",
            http::HeaderValue::from_static("max-age=31536000"),
        );
    }
    resp
}

fn full(body: String) -> BoxBody<Bytes, BoxError> {
    http_body_util::Full::new(Bytes::from(body))
        .map_err(|e| match e {})
        .boxed()
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

/// TLS for a listener, when configured (`client_auth`: verify client certificates).
fn tls_acceptor(ctx: &ApiContext, client_auth: bool) -> std::io::Result<Option<TlsAcceptor>> {
    let cfg = &ctx.config;
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let reloading = crate::tls::ReloadingCert::load(cert, key).map_err(std::io::Error::other)?;
    reloading.watch(ctx.hub_stopping());
    let ca = if client_auth {
        cfg.tls_client_ca.as_deref()
    } else {
        None
    };
    let server = crate::tls::server_config(reloading, ca).map_err(std::io::Error::other)?;
    Ok(Some(TlsAcceptor::from(server)))
}

/// Starts the public API listener on `addr` (port 0 = any free port).
pub async fn start_api(ctx: Arc<ApiContext>, addr: SocketAddr) -> std::io::Result<Listener> {
    let tls = tls_acceptor(&ctx, true)?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    ctx.set_stream_base_tls(bound, tls.is_some());
    // Agent processes run on this host and must reach this replica (their callback token
    // lives here): the bound address, loopback when bound to all interfaces. Under TLS with a
    // public URL, that URL (the certificate names its host).
    let local = {
        let ip = match bound.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{ip}:{}", bound.port())
    };
    match (&tls, ctx.config.public_url.is_some(), ctx.public_base_url()) {
        (Some(_), true, Some(public)) => ctx.hub.set_hub_url(public),
        _ => ctx.hub.set_hub_url(local),
    }
    let cfg = &ctx.config;
    // One admission rule for every route (admission.rs): rmcp's own Host and Origin checks
    // are off, so MCP cannot answer differently from the rest of the API.
    let mcp_cfg = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .disable_allowed_origins()
        .with_max_request_body_bytes(cfg.max_body_bytes)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let mcp_ctx = ctx.clone();
    let sessions = Arc::new(LocalSessionManager::default());
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::http(mcp_ctx.clone())),
        sessions.clone(),
        mcp_cfg,
    );
    let shared = Arc::new(Shared {
        kind: Kind::Api,
        ctx: ctx.clone(),
        policy: admission::Policy::new(&ctx.config, Kind::Api, tls.is_some()),
        mcp: Some((mcp, sessions)),
        warp: api_filter(ctx.clone()),
        tls: tls.is_some(),
    });
    let stop = CancellationToken::new();
    let is_tls = tls.is_some();
    let task = tokio::spawn(conn::accept_loop(listener, stop.clone(), shared, tls));
    Ok(Listener {
        addr: bound,
        tls: is_tls,
        stop,
        task,
    })
}

/// Starts the operations listener.
pub async fn start_ops(ctx: Arc<ApiContext>, addr: SocketAddr) -> std::io::Result<Listener> {
    let tls = if ctx.config.ops_tls {
        tls_acceptor(&ctx, false)?
    } else {
        None
    };
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared {
        kind: Kind::Ops,
        ctx: ctx.clone(),
        policy: admission::Policy::new(&ctx.config, Kind::Ops, tls.is_some()),
        mcp: None,
        warp: ops_filter(ctx),
        tls: tls.is_some(),
    });
    let stop = CancellationToken::new();
    let is_tls = tls.is_some();
    let task = tokio::spawn(conn::accept_loop(listener, stop.clone(), shared, tls));
    Ok(Listener {
        addr: bound,
        tls: is_tls,
        stop,
        task,
    })
}

type McpService = StreamableHttpService<McpServer, LocalSessionManager>;
type Routes = warp::filters::BoxedFilter<(warp::reply::Response,)>;

/// What every connection of a listener shares.
struct Shared {
    kind: Kind,
    ctx: Arc<ApiContext>,
    policy: admission::Policy,
    /// The MCP service and its session table (API listener only).
    mcp: Option<(McpService, Arc<LocalSessionManager>)>,
    warp: Routes,
    tls: bool,
}

/// One HTTP request in its trace span (parented by an incoming `traceparent`).
async fn handle(shared: &Shared, req: http::Request<Incoming>, peer: SocketAddr) -> Resp {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.method = %req.method(),
        http.route = route_group(req.uri().path()),
        http.status = tracing::field::Empty,
        key_id = tracing::field::Empty,
    );
    crate::telemetry::extract(&span, req.headers());
    let resp = handle_inner(shared, req, peer)
        .instrument(span.clone())
        .await;
    span.record("http.status", resp.status().as_u16());
    resp
}

/// Admission, routing, security headers, metrics.
async fn handle_inner(shared: &Shared, mut req: http::Request<Incoming>, peer: SocketAddr) -> Resp {
    let started = Instant::now();
    req.extensions_mut().insert(PeerAddr(peer));
    let group = route_group(req.uri().path());
    let admitted = admission::admit(&shared.policy, &shared.ctx, &mut req, group, peer).await;
    let resp: Resp = match admitted {
        Err(refusal) => {
            // Read the rest of the body first: answering mid-upload resets HTTP/2 streams.
            let cfg = &shared.ctx.config;
            admission::drain(req.into_body(), cfg.max_body_bytes, cfg.header_timeout).await;
            refusal
        }
        Ok(()) => match (&shared.mcp, group) {
            (Some((mcp, sessions)), "mcp") => serve_mcp(mcp, sessions, req, shared).await,
            _ => {
                let mut w = warp::service(shared.warp.clone());
                match w.call(req).await {
                    Ok(r) => r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()),
                    Err(e) => match e {},
                }
            }
        },
    };
    let resp = with_security_headers(resp, shared.tls);
    let listener = shared.kind.name();
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
    resp
}

/// `/mcp`: ending a session that does not exist answers 404 at once; everything else goes to
/// rmcp with its body read (and checked) first.
async fn serve_mcp(
    mcp: &McpService,
    sessions: &LocalSessionManager,
    req: http::Request<Incoming>,
    shared: &Shared,
) -> Resp {
    let is_delete = req.method() == http::Method::DELETE;
    if is_delete
        && let Some(id) = req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        let known = sessions.has_session(&id.into()).await.unwrap_or(false);
        if !known {
            return rpc_error(
                http::StatusCode::NOT_FOUND,
                ErrorCode::SessionNotFound.rpc_code(),
                "no such MCP session: it has ended or never existed",
            );
        }
    }
    let mut m = mcp.clone();
    match buffer_mcp_body(req, shared.ctx.config.max_body_bytes).await {
        Ok(req) => {
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
    }
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
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        http_body_util::Limited::new(body, max).collect(),
    )
    .await;
    let Ok(collected) = collected else {
        return Err(rpc_error(
            http::StatusCode::REQUEST_TIMEOUT,
            -32600,
            "the request body did not arrive in time",
        ));
    };
    let bytes = match collected {
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
