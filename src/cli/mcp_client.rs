//! A small MCP Streamable HTTP client transport shared by `stdio --remote` (the bridge) and
//! `bench`: POST one JSON-RPC message, get back the JSON-RPC messages of the answer as they
//! arrive (a JSON body, or the events of an SSE body). It does not interpret MCP beyond the
//! transport headers (session id, protocol version, `Mcp-Method`/`Mcp-Name`).

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::Value;
use sse_stream::SseStream;

pub struct McpHttp {
    client: Client<crate::net::http_client::Connector, Full<Bytes>>,
    url: http::Uri,
    token: Option<String>,
    session: Mutex<Option<String>>,
    /// The negotiated protocol version (legacy handshake), sent as MCP-Protocol-Version.
    version: Mutex<Option<String>>,
}

pub enum Answer {
    /// 202: a notification or response was accepted.
    Accepted,
    /// JSON-RPC messages (the response last).
    Messages,
}

impl McpHttp {
    pub fn new(url: &str, token: Option<String>) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(format!("{url:?}: expected an http:// or https:// URL")),
        }
        // https: the system's roots, or a private CA through SSL_CERT_FILE.
        let connector = crate::net::http_client::https_connector()?;
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            client,
            url: uri,
            token,
            session: Mutex::new(None),
            version: Mutex::new(None),
        })
    }

    /// Sends one message; `on_message` gets every JSON-RPC message of the answer in order.
    pub async fn send(
        &self,
        msg: &Value,
        mut on_message: impl FnMut(Value),
    ) -> Result<Answer, String> {
        let mut req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream");
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let method = msg.get("method").and_then(Value::as_str).unwrap_or("");
        let modern_version = msg
            .pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(v) = &modern_version {
            req = req.header("mcp-protocol-version", v.as_str());
            if !method.is_empty() {
                req = req.header("mcp-method", header_value(method));
            }
            let name = match method {
                "tools/call" | "prompts/get" => msg.pointer("/params/name"),
                "resources/read" => msg.pointer("/params/uri"),
                "tasks/get" | "tasks/update" | "tasks/cancel" => msg.pointer("/params/taskId"),
                _ => None,
            };
            if let Some(Value::String(n)) = name {
                req = req.header("mcp-name", header_value(n));
            }
        } else {
            if let Some(s) = self.session.lock().clone() {
                req = req.header("mcp-session-id", s);
            }
            if let Some(v) = self.version.lock().clone() {
                req = req.header("mcp-protocol-version", v);
            }
        }
        let body = Full::new(Bytes::from(msg.to_string()));
        let req = req.body(body).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.url))?;
        if let Some(s) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *self.session.lock() = Some(s.to_string());
        }
        let status = resp.status();
        if status == http::StatusCode::ACCEPTED {
            return Ok(Answer::Accepted);
        }
        let is_sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if is_sse {
            let mut events = SseStream::new(resp.into_body());
            while let Some(ev) = events.next().await {
                let ev = ev.map_err(|e| format!("broken event stream: {e}"))?;
                if let Some(data) = ev.data
                    && !data.trim().is_empty()
                    && let Ok(v) = serde_json::from_str::<Value>(&data)
                {
                    self.learn_version(&v);
                    on_message(v);
                }
            }
            return Ok(Answer::Messages);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer failed: {e}"))?
            .to_bytes();
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("jsonrpc").is_some() => {
                self.learn_version(&v);
                on_message(v);
                Ok(Answer::Messages)
            }
            _ => Err(format!(
                "HTTP {status} from {}: {}",
                self.url,
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )),
        }
    }

    fn learn_version(&self, v: &Value) {
        if let Some(ver) = v.pointer("/result/protocolVersion").and_then(Value::as_str) {
            *self.version.lock() = Some(ver.to_string());
        }
    }

    /// Ends the legacy session (DELETE), if there is one.
    pub async fn close(&self) {
        let Some(s) = self.session.lock().take() else {
            return;
        };
        let mut req = http::Request::delete(self.url.clone()).header("mcp-session-id", s);
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Ok(req) = req.body(Full::new(Bytes::new())) {
            let _ = self.client.request(req).await;
        }
    }
}

/// A header value: visible ASCII as is, anything else as the `=?base64?…?=` sentinel.
fn header_value(s: &str) -> String {
    use base64::Engine;
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.trim() == s {
        s.to_string()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
        )
    }
}
