//! The outgoing HTTP client of the process: one TLS setup (rustls with the ring provider and
//! the system's root certificates; `SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured), a connector
//! whose name resolution goes through the egress guard, and [`HttpClient`] (JSON GETs that
//! follow redirects only within the same origin, and POSTs, with fixed extra headers).
//!
//! Used by the A2A peer calls ([`super::a2a_peer`]), card import, push delivery and the CLI
//! talking to a running server. Answers are size-capped, and every failure is a
//! [`ClientError`] whose message names the URL and what went wrong. Deadlines are the
//! caller's business (wrap calls in `tokio::time::timeout`); connecting is bounded here.
//!
//! Outbound hygiene (SSRF): a client made with an [`EgressPolicy`] connects only where the
//! policy permits (IP literals are checked before every request, names at connect time); no
//! error quotes what a remote answered besides its status code or JSON-RPC error: a body is
//! logged at debug level, never returned, so the hub cannot be used to read internal pages.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::egress::{EgressPolicy, GuardedResolver};
/// Largest JSON answer read from a peer.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The peer could not be reached (DNS, connect, TLS, reset).
    #[error("{0}")]
    Transport(String),
    /// A non-success HTTP status (the body is logged at debug level, never shown).
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The egress policy or the redirect rule refused the request; nothing was sent.
    #[error("{0}")]
    Refused(String),
    /// A JSON-RPC error object.
    #[error("the remote agent answered error {code}{}: {message}", crate::protocol::code::name(*.code).map(|n| format!(" ({n})")).unwrap_or_default())]
    Rpc { code: i32, message: String },
    /// An answer that is not what the protocol says.
    #[error("{0}")]
    Protocol(String),
}

/// The connector of every outgoing client: TLS over TCP, names resolved by the system
/// resolver through the egress guard (which only filters when given a policy).
pub type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;
type Inner = Client<Connector, Full<Bytes>>;

/// The TLS configuration every client shares: ring, safe defaults, system roots (loaded once).
static TLS: LazyLock<Result<rustls::ClientConfig, String>> = LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!(
            "no system root certificates found (errors: {:?}); https to remote agents will fail until SSL_CERT_FILE or the system store provides them",
            loaded.errors
        );
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
});

/// A connector for `http://` and `https://` (rustls, ring, the system's roots and
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`), with a bounded connect time. Shared by every outgoing
/// client of the process (A2A peers, webhooks, the CLI talking to a running server).
pub fn https_connector() -> Result<Connector, String> {
    guarded_connector(None)
}

/// [`https_connector`] whose host names may only resolve to addresses `policy` permits
/// (push webhooks, [`crate::net::egress`]); `None` permits every address.
pub fn guarded_connector(policy: Option<Arc<EgressPolicy>>) -> Result<Connector, String> {
    let tls = match &*TLS {
        Ok(c) => c.clone(),
        Err(e) => return Err(format!("cannot set up TLS for outgoing requests: {e}")),
    };
    let mut http = HttpConnector::new_with_resolver(GuardedResolver::new(policy));
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

/// A cheap, cloneable HTTP client with a connection pool and fixed extra headers.
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
    headers: Arc<Vec<(http::HeaderName, http::HeaderValue)>>,
    /// Where requests may go (`None`: anywhere).
    policy: Option<Arc<EgressPolicy>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("headers", &self.headers.len())
            .field("guarded", &self.policy.is_some())
            .finish()
    }
}

impl HttpClient {
    /// A client that sends `headers` with every request and, with a `policy`, only reaches
    /// the addresses it permits: IP-literal URLs are checked before each request, host names
    /// when they are resolved (a name resolving only to refused addresses fails to connect).
    /// Bad header names or values are an error naming the header (never its value).
    pub fn new(
        headers: &BTreeMap<String, String>,
        policy: Option<Arc<EgressPolicy>>,
    ) -> Result<Self, String> {
        Self::build(headers, policy)
    }

    /// A client without extra headers that only connects where `policy` permits.
    pub fn guarded(policy: Arc<EgressPolicy>) -> Result<Self, String> {
        Self::build(&BTreeMap::new(), Some(policy))
    }

    fn build(
        headers: &BTreeMap<String, String>,
        policy: Option<Arc<EgressPolicy>>,
    ) -> Result<Self, String> {
        let mut hs = Vec::new();
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{k:?} is not a valid HTTP header name"))?;
            let value = http::HeaderValue::from_str(v).map_err(|_| {
                format!("the value of header {k:?} is not a valid HTTP header value")
            })?;
            hs.push((name, value));
        }
        let connector = guarded_connector(policy.clone())?;
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            inner,
            headers: Arc::new(hs),
            policy,
        })
    }

    /// The same client (and connection pool) sending one more header, e.g. the W3C
    /// `traceparent` of the job making the calls. An invalid value is left out.
    pub fn with_header(&self, name: &'static str, value: &str) -> HttpClient {
        let mut headers = (*self.headers).clone();
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.retain(|(k, _)| k.as_str() != name);
            headers.push((http::HeaderName::from_static(name), v));
        }
        HttpClient {
            inner: self.inner.clone(),
            headers: Arc::new(headers),
            policy: self.policy.clone(),
        }
    }

    fn request(
        &self,
        method: http::Method,
        url: &str,
        extra: &[(&str, String)],
        body: Bytes,
    ) -> Result<http::Request<Full<Bytes>>, ClientError> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ClientError::Transport(format!("{url:?} is not a valid URL: {e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(ClientError::Transport(format!(
                    "{url:?}: only http:// and https:// URLs are supported"
                )));
            }
        }
        if let Some(policy) = &self.policy {
            policy.check_url(&uri).map_err(ClientError::Refused)?;
        }
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in self.headers.iter() {
            req = req.header(k, v);
        }
        for (k, v) in extra {
            req = req.header(*k, v.as_str());
        }
        req.body(Full::new(body))
            .map_err(|e| ClientError::Transport(format!("cannot build a request to {url}: {e}")))
    }

    async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let url = req.uri().to_string();
        self.inner.request(req).await.map_err(|e| {
            let mut msg = format!("cannot reach {url}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            ClientError::Transport(msg)
        })
    }

    /// GET a JSON document, following up to 5 redirects within the same origin (scheme,
    /// host and port); a redirect elsewhere is refused, not followed.
    pub async fn get_json(
        &self,
        url: &str,
        extra: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        let mut extra: Vec<(&str, String)> = extra.to_vec();
        extra.push(("accept", "application/json".into()));
        let mut url = url.to_string();
        for _ in 0..=5 {
            let req = self.request(http::Method::GET, &url, &extra, Bytes::new())?;
            let resp = self.send(req).await?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(next) = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| resolve(&url, l))
            {
                if !same_origin(&url, &next) {
                    tracing::debug!(from = %url, to = %next, "cross-origin redirect refused");
                    return Err(ClientError::Refused(format!(
                        "{url} redirected to another origin, which is not followed (only redirects to the same scheme, host and port are); give the final URL instead"
                    )));
                }
                url = next;
                continue;
            }
            let body = read_limited(resp.into_body(), &url).await?;
            if !status.is_success() {
                log_body(&url, status.as_u16(), &body);
                return Err(ClientError::Status {
                    url,
                    status: status.as_u16(),
                });
            }
            return serde_json::from_slice(&body).map_err(|e| {
                ClientError::Protocol(format!("{url} did not answer with JSON: {e}"))
            });
        }
        Err(ClientError::Transport(format!(
            "{url}: too many redirects (more than 5)"
        )))
    }

    /// POST a JSON body and return the raw response.
    pub async fn post(
        &self,
        url: &str,
        extra: &[(&str, String)],
        body: &Value,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
        let mut extra: Vec<(&str, String)> = extra.to_vec();
        extra.push(("content-type", "application/json".into()));
        let req = self.request(
            http::Method::POST,
            url,
            &extra,
            Bytes::from(body.to_string()),
        )?;
        self.send(req).await
    }

    /// POST a JSON body; success is any 2xx status (the body is read and dropped).
    pub async fn post_expect_success(
        &self,
        url: &str,
        extra: &[(&str, String)],
        body: &Value,
    ) -> Result<u16, ClientError> {
        let resp = self.post(url, extra, body).await?;
        let status = resp.status();
        let body = read_limited(resp.into_body(), url)
            .await
            .unwrap_or_default();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            log_body(url, status.as_u16(), &body);
            Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            })
        }
    }
}

pub(super) async fn read_limited(
    body: hyper::body::Incoming,
    url: &str,
) -> Result<Bytes, ClientError> {
    match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(ClientError::Transport(format!(
            "reading the answer of {url} failed: {e}"
        ))),
    }
}

/// What a remote answered with an error status, for the operator's log only (DEBUG): it may
/// be an internal page and must not reach the caller.
pub(super) fn log_body(url: &str, status: u16, body: &[u8]) {
    tracing::debug!(%url, status, body = %snippet(body), "remote answered with an error status");
}

fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Whether two absolute URLs share scheme, host (case-insensitive) and port (explicit or the
/// scheme's default).
pub fn same_origin(a: &str, b: &str) -> bool {
    fn origin(u: &str) -> Option<(String, String, u16)> {
        let uri: http::Uri = u.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })?;
        Some((scheme, uri.host()?.to_ascii_lowercase(), port))
    }
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// `reference` made absolute against `base`: absolute URLs as they are; `//host/…` and
/// `/path` against `base`'s scheme and authority. Other relative forms are not supported.
pub fn resolve(base: &str, reference: &str) -> Option<String> {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return Some(reference.to_string());
    }
    let b: http::Uri = base.parse().ok()?;
    let scheme = b.scheme_str()?;
    if let Some(rest) = reference.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if reference.starts_with('/') {
        return Some(format!("{scheme}://{}{reference}", b.authority()?));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert!(same_origin("http://h/a", "http://H:80/b?c"));
        assert!(same_origin("https://h:443/a", "https://h/b"));
        assert!(!same_origin("http://h/a", "https://h/a"));
        assert!(!same_origin("http://h/a", "http://h:8080/a"));
        assert!(!same_origin("http://h/a", "http://h.evil/a"));
        assert!(!same_origin("http://h/a", "not a url"));
    }

    #[test]
    fn references_resolve() {
        let b = "https://h:8/a/card.json";
        assert_eq!(resolve(b, "http://x/y").as_deref(), Some("http://x/y"));
        assert_eq!(resolve(b, "/rpc").as_deref(), Some("https://h:8/rpc"));
        assert_eq!(resolve(b, "//o/rpc").as_deref(), Some("https://o/rpc"));
        assert_eq!(resolve(b, "rpc"), None);
    }
}
