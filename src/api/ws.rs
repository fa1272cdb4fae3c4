//! WebSocket streams at `GET /stream`.
//!
//! `?requestId=ID&after=SEQ` replays the stored events after `SEQ`, follows live, and closes
//! with 1000 once the request's terminal event is sent. Any connection can also send
//! `{"type":"subscribe","requestId":ID,"after":SEQ}` / `{"type":"unsubscribe","requestId":ID}`
//! to follow several requests; a connection opened without `requestId` stays open until the
//! client closes it. Every event is a text frame with the wire shape of
//! [`crate::model::Event::to_json`]; problems are `{"type":"error","code","message"}` frames.
//!
//! Checked before the upgrade: Host, `Origin` and the credential (`STREAM_TOKEN`, Bearer or
//! `token=`) by the listener's admission (421/403/401), then an unknown request → 404, too
//! many subscribers → 429. The server pings every `A2A_WS_HEARTBEAT`; a client silent for
//! three intervals is dropped (close 1001). A connection opened with an API key ends when that
//! key is revoked or expires: an `unauthenticated` error frame, then close 1008 (policy
//! violation) with the reason.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use warp::filters::BoxedFilter;
use warp::ws::{Message, WebSocket};
use warp::{Filter, Reply};

use super::{ApiContext, ReqCtx, error_response};
use crate::error::{ErrorCode, HubError};
use crate::hub::EventStream;
use crate::metrics;
use crate::model::Principal;

/// Subscriptions one connection may hold at once.
const MAX_SUBS_PER_CONNECTION: usize = 1024;
/// Frames buffered towards a slow client before its subscriptions wait.
const OUTBOX: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    request_id: Option<String>,
    #[serde(default)]
    after: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMsg {
    Subscribe {
        #[serde(rename = "requestId")]
        request_id: String,
        #[serde(default)]
        after: Option<u64>,
    },
    Unsubscribe {
        #[serde(rename = "requestId")]
        request_id: String,
    },
    Ping,
}

pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(warp::reply::Response,)> {
    warp::path("stream")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::ws())
        .and(warp::query::<HashMap<String, String>>())
        .and(super::req_ctx(ctx))
        .then(|ws: warp::ws::Ws, raw: HashMap<String, String>, rc: ReqCtx| upgrade(rc, ws, raw))
        .boxed()
}

async fn upgrade(
    rc: ReqCtx,
    ws: warp::ws::Ws,
    raw_query: HashMap<String, String>,
) -> warp::reply::Response {
    let query: StreamQuery = match parse_query(raw_query) {
        Ok(q) => q,
        Err(e) => return error_response(&e),
    };
    // The listener's admission checked Host, Origin and the credential (Bearer, or token= for
    // browsers) already.
    let ctx = rc.ctx.clone();
    let principal = rc.caller();
    // The request named in the URL must exist and have a free subscriber slot before upgrading.
    let first = match &query.request_id {
        Some(id) => {
            match ctx
                .hub
                .subscribe(&principal, id, query.after.unwrap_or(0))
                .await
            {
                Ok(stream) => Some(stream),
                Err(e) => return error_response(&e),
            }
        }
        None => None,
    };
    let max = ctx.config.max_body_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection(ctx, principal, socket, first))
        .into_response()
}

fn parse_query(mut map: HashMap<String, String>) -> Result<StreamQuery, HubError> {
    let after = match map.remove("after") {
        Some(a) => Some(a.parse::<u64>().map_err(|_| {
            HubError::new(
                ErrorCode::InvalidParams,
                format!("after={a:?} is not a sequence number (a whole number >= 0)"),
            )
        })?),
        None => None,
    };
    Ok(StreamQuery {
        request_id: map.remove("requestId").or_else(|| map.remove("request_id")),
        after,
    })
}

struct Subscription {
    task: JoinHandle<()>,
}

/// Frames from subscription tasks to the connection writer.
enum Out {
    Frame(String),
    /// A subscription finished (terminal event sent or failed).
    Ended(String),
    /// The connection's API key was revoked or expired: close with 1008.
    KeyLapsed(HubError),
}

/// Close code for a connection whose credential stopped being valid (RFC 6455 §7.4.1).
const POLICY_VIOLATION: u16 = 1008;

/// A close reason fits in 123 bytes (RFC 6455 §5.5: control frame payload ≤ 125).
fn close_reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

async fn connection(
    ctx: Arc<ApiContext>,
    principal: Principal,
    socket: WebSocket,
    first: Option<EventStream>,
) {
    metrics::WS_CLIENTS.inc();
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(OUTBOX);
    let mut subs: HashMap<String, Subscription> = HashMap::new();
    let close_when_done = first.is_some();
    if let Some(stream) = first {
        let id = stream.request_id().to_string();
        let task = spawn_subscription(stream, out_tx.clone());
        subs.insert(id, Subscription { task });
    }
    let heartbeat = ctx.config.ws_heartbeat;
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.tick().await;
    let mut last_seen = tokio::time::Instant::now();
    // The connection lives as long as its key, whether or not it follows anything.
    let mut guard = ctx.hub.key_guard(&principal);
    let close: Option<(u16, String)> = loop {
        tokio::select! {
            e = async {
                match guard.as_mut() {
                    Some(g) => g.lapsed().await,
                    None => std::future::pending().await,
                }
            } => {
                let _ = sink.send(Message::text(error_frame(None, &e))).await;
                break Some((POLICY_VIOLATION, close_reason(&e.message)));
            }
            msg = incoming.next() => {
                let Some(Ok(msg)) = msg else { break None };
                last_seen = tokio::time::Instant::now();
                if msg.is_close() {
                    break None;
                }
                if msg.is_ping() || msg.is_pong() {
                    continue;
                }
                let reply = match msg.to_str() {
                    Ok(text) => handle_client_msg(&ctx, &principal, text, &mut subs, &out_tx).await,
                    Err(()) => Some(ClientReply::Frame(error_frame(None, &HubError::new(ErrorCode::InvalidRequest, "binary frames are not supported; send JSON text")))),
                };
                let (frame, close) = match reply {
                    Some(ClientReply::Frame(f)) => (f, false),
                    Some(ClientReply::Close(f)) => (f, true),
                    None => continue,
                };
                if sink.send(Message::text(frame)).await.is_err() {
                    break None;
                }
                if close {
                    break Some((1013, "rate limited; try again later".into()));
                }
            }
            out = out_rx.recv() => {
                match out {
                    Some(Out::Frame(f)) => {
                        if sink.send(Message::text(f)).await.is_err() {
                            break None;
                        }
                    }
                    Some(Out::KeyLapsed(e)) => {
                        let _ = sink.send(Message::text(error_frame(None, &e))).await;
                        break Some((POLICY_VIOLATION, close_reason(&e.message)));
                    }
                    Some(Out::Ended(id)) => {
                        if subs.remove(&id).is_some() {
                            metrics::WS_SUBSCRIPTIONS.dec();
                        }
                        if close_when_done && subs.is_empty() {
                            break Some((1000, "request finished".into()));
                        }
                    }
                    None => break None,
                }
            }
            _ = ticker.tick() => {
                if last_seen.elapsed() > heartbeat * 3 {
                    break Some((1001, "no answer to pings".into()));
                }
                if sink.send(Message::ping(Vec::new())).await.is_err() {
                    break None;
                }
            }
        }
    };
    for (_, s) in subs.drain() {
        s.task.abort();
        metrics::WS_SUBSCRIPTIONS.dec();
    }
    if let Some((code, reason)) = close {
        let _ = sink.send(Message::close_with(code, reason)).await;
    }
    let _ = sink.close().await;
    metrics::WS_CLIENTS.dec();
}

fn spawn_subscription(mut stream: EventStream, out: mpsc::Sender<Out>) -> JoinHandle<()> {
    metrics::WS_SUBSCRIPTIONS.inc();
    tokio::spawn(async move {
        let id = stream.request_id().to_string();
        while let Some(item) = stream.next().await {
            let frame = match item {
                Ok(ev) => ev.to_json().to_string(),
                Err(e) if e.code == ErrorCode::Unauthenticated => {
                    // The key lapsed: the whole connection closes, not just this subscription.
                    let _ = out.send(Out::KeyLapsed(e)).await;
                    return;
                }
                Err(e) => {
                    let _ = out.send(Out::Frame(error_frame(Some(&id), &e))).await;
                    break;
                }
            };
            if out.send(Out::Frame(frame)).await.is_err() {
                return;
            }
        }
        let _ = out.send(Out::Ended(id)).await;
    })
}

fn rate_limited_frame(request_id: &str, retry_after: std::time::Duration) -> String {
    json!({
        "type": "error",
        "requestId": request_id,
        "code": "rate_limited",
        "message": "too many requests on this connection; slow down",
        "retryAfterSeconds": retry_after.as_secs_f64().ceil() as u64,
    })
    .to_string()
}

fn error_frame(request_id: Option<&str>, e: &HubError) -> String {
    json!({
        "type": "error",
        "requestId": request_id,
        "code": e.code.name(),
        "message": e.message,
    })
    .to_string()
}

/// What the connection sends back for one client message.
enum ClientReply {
    Frame(String),
    /// Send the frame, then close the connection with 1013 (try again later).
    Close(String),
}

async fn handle_client_msg(
    ctx: &Arc<ApiContext>,
    principal: &Principal,
    text: &str,
    subs: &mut HashMap<String, Subscription>,
    out: &mpsc::Sender<Out>,
) -> Option<ClientReply> {
    let err = |id: Option<&str>, e: HubError| Some(ClientReply::Frame(error_frame(id, &e)));
    let msg: ClientMsg = match serde_json::from_str::<Value>(text) {
        Err(e) => {
            return err(
                None,
                HubError::new(ErrorCode::InvalidJson, format!("not JSON: {e}")),
            );
        }
        Ok(v) => match serde_json::from_value(v) {
            Ok(m) => m,
            Err(e) => {
                return err(
                    None,
                    HubError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "expected {{\"type\":\"subscribe\"|\"unsubscribe\",\"requestId\":…}}: {e}"
                        ),
                    ),
                );
            }
        },
    };
    let frame = |v: Value| Some(ClientReply::Frame(v.to_string()));
    match msg {
        ClientMsg::Ping => frame(json!({"type": "pong"})),
        ClientMsg::Subscribe { request_id, after } => {
            if subs.contains_key(&request_id) {
                return frame(json!({"type": "subscribed", "requestId": request_id}));
            }
            if subs.len() >= MAX_SUBS_PER_CONNECTION {
                return err(
                    Some(&request_id),
                    HubError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "this connection already follows {MAX_SUBS_PER_CONNECTION} requests; unsubscribe first"
                        ),
                    ),
                );
            }
            // Subscribing is metered like any other call; a flood closes the connection.
            if let Err(refusal) = ctx.hub.check_rate(principal, None).await {
                return Some(ClientReply::Close(rate_limited_frame(
                    &request_id,
                    refusal.retry_after,
                )));
            }
            let stream = match ctx
                .hub
                .subscribe(principal, &request_id, after.unwrap_or(0))
                .await
            {
                Ok(s) => s,
                Err(e) => return err(Some(&request_id), e),
            };
            let task = spawn_subscription(stream, out.clone());
            subs.insert(request_id.clone(), Subscription { task });
            // The ack is sent before any event: the subscription's frames queue behind it.
            frame(json!({"type": "subscribed", "requestId": request_id}))
        }
        ClientMsg::Unsubscribe { request_id } => {
            if let Some(s) = subs.remove(&request_id) {
                s.task.abort();
                metrics::WS_SUBSCRIPTIONS.dec();
            }
            frame(json!({"type": "unsubscribed", "requestId": request_id}))
        }
    }
}
