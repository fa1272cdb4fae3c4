//! Request admission: the one policy every HTTP request of both listeners passes before any
//! handler runs — REST, admin, MCP, A2A, the WebSocket upgrade, SSE and the ops routes alike.
//!
//! In order:
//! 1. **Host** (DNS rebinding): an IP literal or `localhost` is always served (a rebinding
//!    attack needs a name the attacker controls, and the browser sends that name); any other
//!    name only when listed in `A2A_ALLOWED_HOSTS` or the host of `A2A_PUBLIC_URL`. Otherwise
//!    421. HTTP/2 carries the host in `:authority`, HTTP/1.1 in `Host`; a request without
//!    either (HTTP/1.0) is not a browser's and passes.
//! 2. **Origin** (cross-site requests): absent → a non-browser client, fine. Present → only the
//!    request's own origin (the listener's scheme with the admitted Host), the origin of
//!    `A2A_PUBLIC_URL`, or one listed in `A2A_ALLOWED_ORIGINS`. Otherwise 403. There is no
//!    "any loopback port" allowance: another local web app is another origin.
//! 3. **Content type**: a request with a body must declare JSON (`application/json` or
//!    `application/*+json`), else 415. Browsers send cross-site "simple" requests only as
//!    `text/plain`, form or multipart bodies, so this closes the no-preflight path too.
//!    Bodiless requests are not affected.
//!
//! On the API listener, next: the credential becomes a [`Principal`] (401 when missing or not
//! valid while keys are required), an anonymous caller of an open hub must be on this machine
//! (loopback peer address, checked per connection; otherwise 403 naming how to create a key),
//! and the rate limits apply (429 with `Retry-After`). Refusals are rendered in the shape of
//! the surface (JSON-RPC for MCP and A2A, the error registry's JSON elsewhere), counted in
//! metrics and summarised in the audit log by the hub (`Hub::record_denial`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};

use super::{Kind, Resp, full};
use crate::api::{self, ApiContext};
use crate::config::{Config, HostName, default_port, normalize_origin};
use crate::error::{ErrorCode, HubError};
use crate::hub::AuthStatus;
use crate::metrics;
use crate::model::{Principal, PrincipalKind, Surface};
use crate::policy::audit::Denial;

/// The Host/Origin/content-type rules of one listener.
pub(super) struct Policy {
    listener: Kind,
    /// `http` or `https`: the scheme of the listener, for the request's own origin.
    scheme: &'static str,
    hosts: Vec<HostName>,
    /// Normalised origins admitted besides the request's own.
    origins: Vec<String>,
}

/// A request the policy refuses.
#[derive(Debug)]
pub(super) struct Refused {
    pub error: HubError,
    /// Metric and audit label.
    pub reason: &'static str,
}

impl Refused {
    fn new(code: ErrorCode, reason: &'static str, message: String) -> Self {
        Self {
            error: HubError::new(code, message),
            reason,
        }
    }
}

impl Policy {
    pub(super) fn new(config: &Config, listener: Kind, tls: bool) -> Self {
        let mut origins = config.allowed_origins.clone();
        if let Some(public) = config.public_url.as_deref().and_then(normalize_origin)
            && !origins.contains(&public)
        {
            origins.push(public);
        }
        Self {
            listener,
            scheme: if tls { "https" } else { "http" },
            hosts: config.allowed_hosts.clone(),
            origins,
        }
    }

    /// Host, Origin and content type of one request.
    pub(super) fn check<B: Body>(&self, req: &http::Request<B>) -> Result<(), Refused> {
        let host = self.check_host(req)?;
        self.check_origin(req.headers(), host.as_ref())?;
        check_content_type(req)
    }

    /// The request's Host (`:authority` under HTTP/2), when it is one this hub serves.
    fn check_host<B>(&self, req: &http::Request<B>) -> Result<Option<HostName>, Refused> {
        let raw = match req.uri().authority() {
            Some(a) => a.as_str().to_string(),
            None => match req.headers().get(http::header::HOST) {
                None => return Ok(None),
                Some(v) => v.to_str().unwrap_or("").to_string(),
            },
        };
        let Some(host) = HostName::parse(&raw) else {
            return Err(Refused::new(
                ErrorCode::HostNotAllowed,
                "host",
                format!("the Host header {raw:?} is not a valid host name"),
            ));
        };
        let ip_literal = host.name.parse::<IpAddr>().is_ok();
        if ip_literal || host.name == "localhost" || self.hosts.iter().any(|h| h.matches(&host)) {
            return Ok(Some(host));
        }
        Err(Refused::new(
            ErrorCode::HostNotAllowed,
            "host",
            format!(
                "this hub does not serve the host name {:?} (DNS-rebinding protection); if clients \
                 reach it under that name, add it to A2A_ALLOWED_HOSTS (or set A2A_PUBLIC_URL)",
                host.name
            ),
        ))
    }

    fn check_origin(
        &self,
        headers: &http::HeaderMap,
        host: Option<&HostName>,
    ) -> Result<(), Refused> {
        let Some(value) = headers.get(http::header::ORIGIN) else {
            return Ok(());
        };
        let raw = value.to_str().unwrap_or("");
        let origin = normalize_origin(raw);
        if let Some(o) = &origin {
            if self.origins.contains(o) {
                return Ok(());
            }
            if let Some(h) = host {
                let port = h.port.or(default_port(self.scheme));
                let name = if h.name.contains(':') {
                    format!("[{}]", h.name)
                } else {
                    h.name.clone()
                };
                let own = match port {
                    Some(p) => format!("{}://{name}:{p}", self.scheme),
                    None => format!("{}://{name}", self.scheme),
                };
                if *o == own {
                    return Ok(());
                }
            }
        }
        Err(Refused::new(
            ErrorCode::OriginNotAllowed,
            "origin",
            format!(
                "requests from the web origin {raw:?} are not allowed (cross-site request \
                 protection); to let a web app on that origin call the hub, add it to \
                 A2A_ALLOWED_ORIGINS"
            ),
        ))
    }

    pub(super) fn listener(&self) -> &'static str {
        self.listener.name()
    }
}

/// Whether a request carries a body (beyond an empty one): a non-zero `Content-Length`, a
/// `Transfer-Encoding`, or (HTTP/2, where both may be absent) a stream still open after the
/// headers of a method that takes a body. A GET whose HTTP/2 stream ends in a separate empty
/// frame is not mistaken for one with a body.
fn has_body<B: Body>(req: &http::Request<B>) -> bool {
    let length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(0) => false,
        Some(_) => true,
        None => {
            let bodiless_method = matches!(
                *req.method(),
                http::Method::GET
                    | http::Method::HEAD
                    | http::Method::DELETE
                    | http::Method::OPTIONS
            );
            req.headers().contains_key(http::header::TRANSFER_ENCODING)
                || (!bodiless_method && !req.body().is_end_stream())
        }
    }
}

/// A body must be JSON: `application/json` or `application/<something>+json`.
fn check_content_type<B: Body>(req: &http::Request<B>) -> Result<(), Refused> {
    if !has_body(req) {
        return Ok(());
    }
    let declared = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let json = declared.is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|sub| sub.ends_with("+json") && sub.len() > "+json".len())
    });
    if json {
        return Ok(());
    }
    Err(Refused::new(
        ErrorCode::UnsupportedMediaType,
        "content_type",
        match declared {
            Some(ct) => format!(
                "request bodies must be JSON: send Content-Type: application/json (got {ct:?})"
            ),
            None => "request bodies must be JSON: send Content-Type: application/json (the \
                     request has a body but no Content-Type)"
                .to_string(),
        },
    ))
}

/// Loopback, also as an IPv4-mapped IPv6 address.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Routes anyone may read: the API description and A2A agent cards.
fn is_public(path: &str) -> bool {
    path == "/api/v1/openapi.json"
        || path == "/.well-known/agent-card.json"
        || path == "/.well-known/agent.json"
        || (path.starts_with("/a2a/") && path.ends_with("/.well-known/agent-card.json"))
}

/// Routes where the legacy `STREAM_TOKEN` and `token=` are accepted.
fn is_stream_route(path: &str) -> bool {
    path == "/stream" || (path.starts_with("/api/v1/requests/") && path.ends_with("/events"))
}

/// The credential of a request: `Authorization: Bearer`, or `token=` on stream routes.
fn credential<B>(req: &http::Request<B>, stream_route: bool) -> Option<String> {
    if let Some(b) = api::bearer(req.headers()) {
        return Some(b.to_string());
    }
    if stream_route {
        let q = req.uri().query()?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).ok()?;
        return pairs
            .into_iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v);
    }
    None
}

pub(super) fn surface_of(group: &str) -> Surface {
    match group {
        "mcp" => Surface::Mcp,
        "stream" => Surface::Stream,
        "a2a" => Surface::A2a,
        _ => Surface::Rest,
    }
}

/// The whole admission of one request: the policy on both listeners, then (API listener)
/// authentication, the open-hub loopback rule and the rate limits. On success the principal
/// is in the request's extensions.
pub(super) async fn admit(
    policy: &Policy,
    ctx: &ApiContext,
    req: &mut http::Request<Incoming>,
    group: &'static str,
    peer: SocketAddr,
) -> Result<(), Resp> {
    let surface = match policy.listener {
        Kind::Ops => "ops",
        Kind::Api => surface_of(group).as_str(),
    };
    if let Err(r) = policy.check(req) {
        metrics::HTTP_REFUSALS
            .with_label_values(&[policy.listener(), r.reason])
            .inc();
        if r.error.code != ErrorCode::UnsupportedMediaType {
            ctx.hub.record_denial(Denial {
                action: "http.refused",
                reason: r.reason,
                surface,
                subject: peer.ip().to_canonical().to_string(),
                role: "none",
                message: r.error.message.clone(),
            });
        }
        return Err(refusal(group, &r.error, None));
    }
    if policy.listener == Kind::Ops {
        return Ok(());
    }
    let path = req.uri().path().to_string();
    let surface = surface_of(group);
    let principal = if is_public(&path) {
        Principal::anonymous().with_surface(surface)
    } else {
        let stream_route = is_stream_route(&path);
        let token = credential(req, stream_route);
        match ctx
            .hub
            .authenticate(token.as_deref(), surface, stream_route, Some(peer.ip()))
            .await
        {
            Ok(p) => p,
            Err(e) => return Err(refusal(group, &e, None)),
        }
    };
    if principal.kind == PrincipalKind::Anonymous && !is_loopback(peer.ip()) {
        let status = ctx.hub.auth_status();
        if status.is_open() {
            let message = match status {
                AuthStatus::Off => {
                    "A2A_AUTH=off: this hub serves callers on its own machine (loopback) only; \
                     to serve other machines, remove A2A_AUTH=off and create an API key \
                     (`a2a-mcp keys create --role admin`)"
                }
                _ => {
                    "this hub has no API key yet, so it serves callers on its own machine \
                     (loopback) only; create one with `a2a-mcp keys create --role admin` (on the \
                     hub's machine: offline, or through the admin API from loopback), then call \
                     with Authorization: Bearer <key>"
                }
            };
            metrics::HTTP_REFUSALS
                .with_label_values(&[policy.listener(), "loopback_only"])
                .inc();
            ctx.hub.record_denial(Denial {
                action: "http.refused",
                reason: "loopback_only",
                surface: surface.as_str(),
                subject: peer.ip().to_canonical().to_string(),
                role: "none",
                message: message.to_string(),
            });
            return Err(refusal(
                group,
                &HubError::new(ErrorCode::LoopbackOnly, message),
                None,
            ));
        }
    }
    if let Err(r) = ctx.hub.check_rate(&principal, Some(peer.ip())).await {
        let e = HubError::new(
            ErrorCode::RateLimited,
            format!(
                "rate limit exceeded ({}); retry after {} s",
                if r.by_address {
                    "per client address"
                } else {
                    "per key"
                },
                r.retry_after.as_secs_f64().ceil() as u64
            ),
        );
        return Err(refusal(group, &e, Some(r.retry_after)));
    }
    if let Some(k) = &principal.key_id {
        tracing::Span::current().record("key_id", k.as_str());
    }
    req.extensions_mut().insert(principal);
    Ok(())
}

/// A refusal in the shape of the surface: a JSON-RPC error for MCP and A2A, the error
/// registry's JSON otherwise.
pub(super) fn refusal(group: &str, e: &HubError, retry_after: Option<Duration>) -> Resp {
    let body = if group == "mcp" || group == "a2a" {
        let mut err = serde_json::json!({"code": e.code.rpc_code(), "message": e.message,
            "data": {"code": e.code.name()}});
        if let Some(d) = retry_after {
            err["data"]["retryAfterSeconds"] = serde_json::json!(d.as_secs_f64().ceil() as u64);
        }
        serde_json::json!({"jsonrpc": "2.0", "id": null, "error": err}).to_string()
    } else {
        e.to_json().to_string()
    };
    let mut resp = http::Response::new(full(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(e.code.http_status()).unwrap_or(http::StatusCode::BAD_REQUEST);
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if e.code == ErrorCode::Unauthenticated {
        h.insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"a2a-mcp\""),
        );
    }
    if let Some(d) = retry_after
        && let Ok(v) =
            http::HeaderValue::from_str(&(d.as_secs_f64().ceil() as u64).max(1).to_string())
    {
        h.insert(http::header::RETRY_AFTER, v);
    }
    resp
}

/// Reads what is left of a refused request's body (at most `limit` bytes, for at most
/// `within`) before the refusal is sent. Answering while the client is still sending makes
/// HTTP/2 end the stream with a reset, which some clients report instead of the response;
/// HTTP/1.1 would have to close the connection. A body over the limit or too slow is left.
pub(super) async fn drain(body: Incoming, limit: usize, within: Duration) {
    if body.is_end_stream() {
        return;
    }
    let read = async {
        let mut body = body;
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            if let Some(data) = frame.data_ref() {
                seen = seen.saturating_add(data.len());
                if seen > limit {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn policy(extra: &[(&str, &str)], tls: bool) -> Policy {
        let env: std::collections::BTreeMap<String, String> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg = Config::load_with(&Default::default(), |k| env.get(k).cloned()).unwrap();
        Policy::new(&cfg, Kind::Api, tls)
    }

    fn req(headers: &[(&str, &str)]) -> http::Request<http_body_util::Empty<Bytes>> {
        let mut b = http::Request::builder().method("GET").uri("/api/v1/agents");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(http_body_util::Empty::new()).unwrap()
    }

    fn reason(p: &Policy, headers: &[(&str, &str)]) -> Option<&'static str> {
        p.check(&req(headers)).err().map(|r| r.reason)
    }

    #[test]
    fn hosts_ip_literals_and_localhost_pass_other_names_only_when_listed() {
        let p = policy(
            &[("A2A_ALLOWED_HOSTS", "hub.internal,api.example.com:8443")],
            false,
        );
        for ok in [
            "127.0.0.1:8787",
            "[::1]:8787",
            "192.0.2.7",
            "localhost:8787",
            "LOCALHOST",
            "hub.internal:1",
            "api.example.com:8443",
        ] {
            assert_eq!(reason(&p, &[("host", ok)]), None, "{ok}");
        }
        for bad in [
            "evil.example",
            "api.example.com:8444",
            "localhost.evil.example",
            "a b",
        ] {
            assert_eq!(reason(&p, &[("host", bad)]), Some("host"), "{bad}");
        }
        assert_eq!(reason(&p, &[]), None, "HTTP/1.0 without Host");
        // HTTP/2: the authority of the URI wins.
        let h2 = http::Request::builder()
            .uri("http://evil.example/mcp")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        assert_eq!(p.check(&h2).err().map(|r| r.reason), Some("host"));
        let public = policy(&[("A2A_PUBLIC_URL", "https://hub.example.com")], false);
        assert_eq!(reason(&public, &[("host", "hub.example.com")]), None);
    }

    #[test]
    fn origins_own_listed_or_public_only() {
        let p = policy(&[("A2A_ALLOWED_ORIGINS", "https://app.example.com")], false);
        let host = ("host", "127.0.0.1:8787");
        assert_eq!(reason(&p, &[host]), None, "no Origin: not a browser");
        assert_eq!(
            reason(&p, &[host, ("origin", "http://127.0.0.1:8787")]),
            None
        );
        assert_eq!(
            reason(&p, &[host, ("origin", "https://app.example.com")]),
            None
        );
        for bad in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "http://localhost:8787",
            "https://127.0.0.1:8787",
            "null",
            "garbage",
        ] {
            assert_eq!(
                reason(&p, &[host, ("origin", bad)]),
                Some("origin"),
                "{bad}"
            );
        }
        // Default ports are the same origin.
        assert_eq!(
            reason(
                &p,
                &[("host", "localhost"), ("origin", "http://localhost:80")]
            ),
            None
        );
        let tls = policy(&[("A2A_PUBLIC_URL", "https://hub.example.com")], true);
        assert_eq!(
            reason(
                &tls,
                &[
                    ("host", "hub.example.com"),
                    ("origin", "https://hub.example.com")
                ]
            ),
            None
        );
    }

    #[test]
    fn bodies_must_be_json() {
        let p = policy(&[], false);
        let post = |ct: Option<&str>, len: &str| {
            let mut b = http::Request::builder()
                .method("POST")
                .uri("/api/v1/agents")
                .header("content-length", len);
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            b.body(http_body_util::Full::new(Bytes::from("{}")))
                .unwrap()
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(p.check(&post(Some(ok), "2")).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/+json",
        ] {
            let r = p.check(&post(Some(bad), "2")).unwrap_err();
            assert_eq!(r.error.code.http_status(), 415, "{bad}");
        }
        assert!(p.check(&post(None, "2")).is_err(), "a body without a type");
        assert!(p.check(&post(None, "0")).is_ok(), "no body, no type needed");
        // HTTP/2 without Content-Length: a POST stream still open has a body, a GET not.
        let open = |method: &str| {
            http::Request::builder()
                .method(method)
                .uri("/mcp")
                .body(http_body_util::Full::new(Bytes::from("{}")))
                .unwrap()
        };
        assert!(p.check(&open("POST")).is_err());
        assert!(p.check(&open("GET")).is_ok());
    }

    #[test]
    fn loopback_classification() {
        for ip in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "192.0.2.2",
            "10.0.0.1",
            "::ffff:10.0.0.1",
            "fd00::2",
            "0.0.0.0",
        ] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
