//! Calls to A2A peers over [`HttpClient`]: fetching Agent Cards (card reads follow redirects
//! only to the same origin: scheme, host and port), choosing a peer's JSON-RPC interface from
//! its card, and JSON-RPC calls with plain JSON or SSE answers, in the peer's protocol version
//! (1.0, or 0.3 converted at the edge with [`crate::protocol::v03`]).
//!
//! Used by the `a2a` executor (`executor::remote_a2a`) and by card import (hub and CLI).

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use super::http_client::{ClientError, HttpClient, log_body, read_limited, resolve};
use crate::protocol::{Method, VERSION_HEADER, Version, v03};

// ---------------------------------------------------------------------------------------------
// Agent Cards

/// Where the card of `url` is: the URL itself when it names a `.json` document, otherwise
/// `<url>/.well-known/agent-card.json`.
pub fn card_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let path = trimmed
        .split_once("://")
        .map_or(trimmed, |(_, rest)| rest)
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    if path.ends_with(".json") {
        url.to_string()
    } else {
        format!("{trimmed}/.well-known/agent-card.json")
    }
}

/// Reads an Agent Card (with `A2A-Version: 1.0`, as the official clients do).
pub async fn fetch_card(http: &HttpClient, url: &str) -> Result<(String, Value), ClientError> {
    let at = card_url(url);
    let card = http
        .get_json(&at, &[(VERSION_HEADER, Version::V10.as_str().into())])
        .await?;
    if !card.is_object() {
        return Err(ClientError::Protocol(format!(
            "{at} is not an Agent Card (not a JSON object)"
        )));
    }
    Ok((at, card))
}

/// A JSON-RPC endpoint of a remote agent, as chosen from its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub url: String,
    pub version: Version,
    pub streaming: bool,
    pub name: String,
}

impl Peer {
    /// Picks the card's JSON-RPC interface: protocol 1.0 first, else 0.3; a card without
    /// `supportedInterfaces` (0.3 style) uses its top-level `url`/`preferredTransport`.
    pub fn from_card(card: &Value, card_at: &str) -> Result<Peer, String> {
        let name = card
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("remote agent")
            .to_string();
        let streaming = card
            .pointer("/capabilities/streaming")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut candidates: Vec<(String, Version)> = Vec::new();
        for iface in card
            .get("supportedInterfaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let binding = iface
                .get("protocolBinding")
                .and_then(Value::as_str)
                .unwrap_or("JSONRPC");
            if !binding.eq_ignore_ascii_case("JSONRPC") {
                continue;
            }
            let (Some(url), Some(v)) = (
                iface
                    .get("url")
                    .and_then(Value::as_str)
                    .and_then(|u| resolve(card_at, u)),
                iface
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .and_then(Version::parse),
            ) else {
                continue;
            };
            candidates.push((url, v));
        }
        if candidates.is_empty()
            && let Some(url) = card
                .get("url")
                .and_then(Value::as_str)
                .and_then(|u| resolve(card_at, u))
        {
            let transport = card
                .get("preferredTransport")
                .and_then(Value::as_str)
                .unwrap_or("JSONRPC");
            let version = card
                .get("protocolVersion")
                .and_then(Value::as_str)
                .and_then(Version::parse)
                .unwrap_or(Version::V03);
            if transport.eq_ignore_ascii_case("JSONRPC") {
                candidates.push((url, version));
            }
        }
        let pick = candidates
            .iter()
            .find(|(_, v)| *v == Version::V10)
            .or_else(|| candidates.iter().find(|(_, v)| *v == Version::V03))
            .cloned();
        match pick {
            Some((url, version)) => Ok(Peer {
                url,
                version,
                streaming,
                name,
            }),
            None => Err(format!(
                "the Agent Card at {card_at} offers no JSON-RPC interface with protocol version 1.0 or 0.3 (this hub speaks JSON-RPC only)"
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC

fn rpc_headers(peer: &Peer, streaming: bool) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    if peer.version == Version::V10 {
        h.push((VERSION_HEADER, Version::V10.as_str().to_string()));
    }
    h.push((
        "accept",
        if streaming {
            "text/event-stream".to_string()
        } else {
            "application/json".to_string()
        },
    ));
    h
}

fn rpc_body(peer: &Peer, method: Method, params: Value) -> Result<Value, ClientError> {
    let name = method.name(peer.version).ok_or_else(|| {
        ClientError::Protocol(format!(
            "the remote agent speaks A2A {} only, which has no {method:?} method",
            peer.version.as_str()
        ))
    })?;
    Ok(json!({
        "jsonrpc": "2.0",
        "id": crate::model::new_id(),
        "method": name,
        "params": params,
    }))
}

/// The `result` of a JSON-RPC answer, or its error.
fn rpc_result(answer: Value, url: &str) -> Result<Value, ClientError> {
    if let Some(err) = answer.get("error") {
        return Err(ClientError::Rpc {
            code: err
                .get("code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(crate::protocol::code::INTERNAL_ERROR),
            message: err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
                .to_string(),
        });
    }
    match answer {
        Value::Object(mut m) if m.contains_key("result") => {
            Ok(m.remove("result").unwrap_or(Value::Null))
        }
        _ => Err(ClientError::Protocol(format!(
            "{url} sent something that is not a JSON-RPC response"
        ))),
    }
}

/// One JSON-RPC call with a JSON answer. Returns the `result`.
pub async fn call(
    http: &HttpClient,
    peer: &Peer,
    method: Method,
    params: Value,
) -> Result<Value, ClientError> {
    let body = rpc_body(peer, method, params)?;
    let resp = http
        .post(&peer.url, &rpc_headers(peer, false), &body)
        .await?;
    let status = resp.status();
    let bytes = read_limited(resp.into_body(), &peer.url).await?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v.get("jsonrpc").is_some() => rpc_result(v, &peer.url),
        _ if !status.is_success() => {
            log_body(&peer.url, status.as_u16(), &bytes);
            Err(ClientError::Status {
                url: peer.url.clone(),
                status: status.as_u16(),
            })
        }
        _ => {
            log_body(&peer.url, status.as_u16(), &bytes);
            Err(ClientError::Protocol(format!(
                "{} did not answer with a JSON-RPC response",
                peer.url
            )))
        }
    }
}

/// The events of a streaming JSON-RPC call: each item is one `result` (or the error that
/// ended the stream).
pub struct RpcStream {
    inner: Pin<Box<dyn Stream<Item = Result<Value, ClientError>> + Send>>,
}

impl RpcStream {
    pub async fn next(&mut self) -> Option<Result<Value, ClientError>> {
        self.inner.next().await
    }
}

/// A streaming JSON-RPC call (`SendStreamingMessage`, `SubscribeToTask`). An upfront error
/// (a plain JSON answer) is returned as the first item.
pub async fn call_stream(
    http: &HttpClient,
    peer: &Peer,
    method: Method,
    params: Value,
) -> Result<RpcStream, ClientError> {
    let body = rpc_body(peer, method, params)?;
    let resp = http
        .post(&peer.url, &rpc_headers(peer, true), &body)
        .await?;
    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let url = peer.url.clone();
    if !is_sse {
        let bytes = read_limited(resp.into_body(), &url).await?;
        let item = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) if v.get("jsonrpc").is_some() => rpc_result(v, &url),
            _ if !status.is_success() => {
                log_body(&url, status.as_u16(), &bytes);
                Err(ClientError::Status {
                    url: url.clone(),
                    status: status.as_u16(),
                })
            }
            _ => Err(ClientError::Protocol(format!(
                "{url} answered a streaming call with neither an event stream nor a JSON-RPC response"
            ))),
        };
        return Ok(RpcStream {
            inner: Box::pin(futures_util::stream::iter([item])),
        });
    }
    let events = sse_stream::SseStream::new(resp.into_body());
    let inner = events.filter_map(move |ev| {
        let url = url.clone();
        async move {
            match ev {
                Err(e) => Some(Err(ClientError::Transport(format!(
                    "the event stream from {url} broke: {e}"
                )))),
                Ok(sse) => {
                    let data = sse.data?;
                    if data.trim().is_empty() {
                        return None;
                    }
                    Some(match serde_json::from_str::<Value>(&data) {
                        Ok(v) => rpc_result(v, &url),
                        Err(e) => Err(ClientError::Protocol(format!(
                            "{url} sent an event that is not JSON: {e}"
                        ))),
                    })
                }
            }
        }
    });
    Ok(RpcStream {
        inner: Box::pin(inner),
    })
}

/// A stream result (or SendMessage result) of a peer, normalised to a 1.0 StreamResponse
/// (`{task}|{message}|{statusUpdate}|{artifactUpdate}`).
pub fn normalize_result(peer: &Peer, result: &Value) -> Value {
    match peer.version {
        Version::V10 => result.clone(),
        Version::V03 => v03::stream_response_from_v03(result),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_urls() {
        assert_eq!(
            card_url("http://h:1"),
            "http://h:1/.well-known/agent-card.json"
        );
        assert_eq!(
            card_url("http://h:1/a2a/x/"),
            "http://h:1/a2a/x/.well-known/agent-card.json"
        );
        assert_eq!(
            card_url("http://h/.well-known/agent-card.json"),
            "http://h/.well-known/agent-card.json"
        );
        assert_eq!(
            card_url("https://h/card.json?x=1"),
            "https://h/card.json?x=1"
        );
    }

    #[test]
    fn interface_choice_prefers_1_0() {
        let card = json!({
            "name": "x", "capabilities": {"streaming": true},
            "supportedInterfaces": [
                {"url": "http://a/03", "protocolBinding": "JSONRPC", "protocolVersion": "0.3"},
                {"url": "http://a/rest", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"},
                {"url": "http://a/10", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
            ]
        });
        let p = Peer::from_card(&card, "c").unwrap();
        assert_eq!(
            (p.url.as_str(), p.version, p.streaming),
            ("http://a/10", Version::V10, true)
        );
        let old = json!({"name": "o", "url": "http://o/rpc", "protocolVersion": "0.3.0"});
        let p = Peer::from_card(&old, "c").unwrap();
        assert_eq!(
            (p.url.as_str(), p.version, p.streaming),
            ("http://o/rpc", Version::V03, false)
        );
        let rel = json!({"supportedInterfaces": [{"url": "/rpc", "protocolVersion": "1.0"}]});
        let p = Peer::from_card(&rel, "http://r:1/.well-known/agent-card.json").unwrap();
        assert_eq!(p.url, "http://r:1/rpc");
        let grpc = json!({"supportedInterfaces": [{"url": "g", "protocolBinding": "GRPC", "protocolVersion": "1.0"}]});
        assert!(
            Peer::from_card(&grpc, "c")
                .unwrap_err()
                .contains("JSON-RPC")
        );
    }
}
