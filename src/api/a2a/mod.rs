//! The A2A front door: every hosted agent is an A2A 1.0 agent (with 0.3 compatibility).
//!
//! Routes (protocol decisions in `README.md` beside this file):
//! - `GET /.well-known/agent-card.json` — the hub's card (every enabled agent is a skill);
//! - `GET /a2a/{agentId}/.well-known/agent-card.json` — one agent's card;
//! - `POST /a2a/{agentId}` — JSON-RPC for that agent, 1.0 and 0.3 method names;
//! - `POST /a2a` — JSON-RPC for the whole hub (`SendMessage` names the agent in
//!   `message.metadata.agentId` or `skillId`).
//!
//! Tasks are hub requests (task id = request id, context id = session id): `SendMessage`
//! invokes, `GetTask` reads the record and its events, `CancelTask` cancels, the streaming
//! methods follow the event log (replay, then live). This adapter parses, calls the hub and
//! renders; push config persistence and delivery are hub business (`hub/push.rs`), fed with
//! the StreamResponse rendering of [`convert::StreamMapper`]. This file holds the routes, the
//! JSON-RPC dispatch, the helpers the methods share and the SSE task streams; the methods are
//! in `send.rs`, `tasks.rs` and `push_configs.rs`.

mod card;
mod convert;
mod jsonrpc;
mod push_configs;
mod send;
mod tasks;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;

use self::jsonrpc::RpcError;
use super::{ApiContext, ReqCtx, error_response, json_response};
use crate::hub::{AgentEntry, EventStream};
use crate::metrics;
use crate::model::{Principal, RequestRecord};
use crate::protocol::{Method, Version, code, v03};

type Resp = warp::reply::Response;

/// Default and largest `pageSize` of `ListTasks`.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;
/// `ListTasks` counts (`totalSize`) and scans at most this many matching tasks.
const MAX_COUNT: usize = 10_000;
/// Events read to build a task's artifacts.
const MAX_ARTIFACT_EVENTS: usize = 100_000;

/// Starts push notification delivery: the hub delivers, this adapter says what a
/// notification looks like (the A2A stream response of each event). Called once by `serve`
/// and `stdio` after the hub starts, not as a side effect of building routes.
pub fn start_push_delivery(hub: &crate::hub::Hub) {
    hub.start_push_delivery(Arc::new(|after| {
        let mut mapper = convert::StreamMapper::resuming(after);
        Box::new(move |rec, ev| mapper.map(rec, ev))
    }));
}

/// The A2A routes.
pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(Resp,)> {
    let max = ctx.config.max_body_bytes as u64;
    let with = {
        let ctx = ctx.clone();
        move || {
            let ctx = ctx.clone();
            warp::any().map(move || ctx.clone())
        }
    };

    let hub_card = warp::path!(".well-known" / "agent-card.json")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with())
        .map(|headers: http::HeaderMap, ctx: Arc<ApiContext>| {
            let agents = ctx.hub.list_agents(false);
            let base = public_base(&ctx, &headers);
            card_response(&headers, &card::hub_card(&ctx, &agents, &base))
        })
        .boxed();

    let agent_card = warp::path!("a2a" / String / ".well-known" / "agent-card.json")
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(with())
        .map(
            |id: String, headers: http::HeaderMap, ctx: Arc<ApiContext>| match ctx
                .hub
                .enabled_agent(&id)
            {
                Ok(a) => {
                    let base = public_base(&ctx, &headers);
                    card_response(&headers, &card::agent_card(&ctx, &a, &base))
                }
                Err(e) => error_response(&e),
            },
        )
        .boxed();

    let rpc = |agent_path: bool| {
        let path = if agent_path {
            warp::path("a2a")
                .and(warp::path::param::<String>())
                .and(warp::path::end())
                .map(Some)
                .boxed()
        } else {
            warp::path("a2a")
                .and(warp::path::end())
                .map(|| None)
                .boxed()
        };
        path.and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::query::<HashMap<String, String>>())
            .and(warp::body::content_length_limit(max))
            .and(warp::body::bytes())
            .and(super::req_ctx(ctx.clone()))
            .then(
                |agent: Option<String>,
                 headers: http::HeaderMap,
                 query: HashMap<String, String>,
                 body: Bytes,
                 rc: ReqCtx| async move {
                    handle_rpc(rc, agent, headers, query, body).await
                },
            )
            .boxed()
    };

    hub_card
        .or(agent_card)
        .unify()
        .or(rpc(true))
        .unify()
        .or(rpc(false))
        .unify()
        .boxed()
}

/// `http(s)://host:port` of this server as clients reach it.
fn public_base(ctx: &ApiContext, headers: &http::HeaderMap) -> String {
    if let Some(b) = ctx.public_base_url() {
        return b;
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A card as JSON with an ETag (`If-None-Match` → 304).
fn card_response(headers: &http::HeaderMap, card: &Value) -> Resp {
    use sha2::{Digest, Sha256};
    let body = card.to_string();
    let etag = format!(
        "\"{}\"",
        hex::encode(&Sha256::digest(body.as_bytes())[..16])
    );
    let hit = headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if hit {
        let mut r = Resp::new(Bytes::new().into());
        *r.status_mut() = http::StatusCode::NOT_MODIFIED;
        r
    } else {
        json_response(http::StatusCode::OK, card)
    };
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC dispatch

/// One JSON-RPC call being served.
struct Call {
    ctx: Arc<ApiContext>,
    /// The agent of the URL (`None` on the hub endpoint).
    agent: Option<Arc<AgentEntry>>,
    /// The shapes to answer in.
    version: Version,
    principal: Principal,
}

enum Answer {
    Json(Value),
    Stream(Box<StreamPlan>),
}

/// A task stream to serve as SSE: the initial task, then the mapped events.
struct StreamPlan {
    record: RequestRecord,
    initial: Value,
    events: EventStream,
    /// Maps the events after the initial task (knows what that task already holds).
    mapper: convert::StreamMapper,
}

fn rpc_json(status: http::StatusCode, body: &Value) -> Resp {
    json_response(status, body)
}

async fn handle_rpc(
    rc: ReqCtx,
    agent_id: Option<String>,
    headers: http::HeaderMap,
    query: HashMap<String, String>,
    body: Bytes,
) -> Resp {
    // Host and Origin were checked by the listener's admission (server/admission.rs).
    let ctx = rc.ctx.clone();
    let agent = match agent_id {
        Some(id) => match ctx.hub.agent(&id) {
            Ok(a) => Some(a),
            Err(e) => {
                return rpc_json(
                    http::StatusCode::NOT_FOUND,
                    &jsonrpc::error_response(&Value::Null, &RpcError::from_hub(&e), Version::V10),
                );
            }
        },
        None => None,
    };
    let env = match jsonrpc::parse_envelope(&body) {
        Ok(e) => e,
        Err((id, e)) => {
            count("invalid", false);
            return rpc_json(
                http::StatusCode::OK,
                &jsonrpc::error_response(&id, &e, Version::V10),
            );
        }
    };
    let requested = headers
        .get(crate::protocol::VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(crate::protocol::VERSION_HEADER))
                .map(|(_, v)| v.clone())
        });
    let (method, version) = match jsonrpc::select(&env.method, requested.as_deref()) {
        Ok(x) => x,
        Err((v, e)) => {
            count("unknown", false);
            return rpc_json(
                http::StatusCode::OK,
                &jsonrpc::error_response(&env.id, &e, v),
            );
        }
    };
    let call = Call {
        principal: rc.caller(),
        ctx,
        agent,
        version,
    };
    let label = method.name(Version::V10).unwrap_or("unknown");
    match dispatch(&call, method, env.params).await {
        Ok(Answer::Json(result)) => {
            count(label, true);
            rpc_json(http::StatusCode::OK, &jsonrpc::response(&env.id, result))
        }
        Ok(Answer::Stream(plan)) => {
            count(label, true);
            sse(&call.ctx, call.version, env.id, *plan)
        }
        Err(e) => {
            count(label, false);
            rpc_json(
                http::StatusCode::OK,
                &jsonrpc::error_response(&env.id, &e, call.version),
            )
        }
    }
}

fn count(method: &str, ok: bool) {
    metrics::A2A_RPC_CALLS
        .with_label_values(&[method, if ok { "ok" } else { "error" }])
        .inc();
}

async fn dispatch(call: &Call, method: Method, params: Value) -> Result<Answer, RpcError> {
    match method {
        Method::SendMessage => send::send_message(call, params, false).await,
        Method::SendStreamingMessage => send::send_message(call, params, true).await,
        Method::GetTask => tasks::get_task(call, params).await,
        Method::ListTasks => tasks::list_tasks(call, params).await,
        Method::CancelTask => tasks::cancel_task(call, params).await,
        Method::SubscribeToTask => tasks::subscribe(call, params).await,
        Method::CreatePushConfig => push_configs::create_push_config(call, params).await,
        Method::GetPushConfig => push_configs::get_push_config(call, params).await,
        Method::ListPushConfigs => push_configs::list_push_configs(call, params).await,
        Method::DeletePushConfig => push_configs::delete_push_config(call, params).await,
        Method::GetExtendedCard => Err(match call.version {
            Version::V10 => RpcError::new(
                code::UNSUPPORTED_OPERATION,
                "this agent has no extended agent card (capabilities.extendedAgentCard is false)",
            ),
            Version::V03 => RpcError::new(
                code::EXTENDED_CARD_NOT_CONFIGURED,
                "this agent has no authenticated extended card",
            ),
        }),
    }
}

fn params_as<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}")))
}

fn history_length(n: Option<i64>) -> Result<Option<u32>, RpcError> {
    match n {
        None => Ok(None),
        Some(n) if n >= 0 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
        Some(_) => Err(RpcError::new(
            code::INVALID_PARAMS,
            "historyLength must not be negative",
        )),
    }
}

/// Shapes a task for the call's version (0.3 adds `kind`, lowercase enums, …).
fn shape_task(call: &Call, task: Value) -> Value {
    match call.version {
        Version::V10 => task,
        Version::V03 => v03::task_to_v03(&task),
    }
}

/// A request the call may see: on an agent's URL only that agent's tasks exist.
async fn task_record(call: &Call, id: &str) -> Result<RequestRecord, RpcError> {
    let rec = call.ctx.hub.get_status(&call.principal, id).await?;
    if let Some(a) = &call.agent
        && rec.agent_id != a.spec.id
    {
        return Err(RpcError::new(
            code::TASK_NOT_FOUND,
            format!("agent {:?} has no task {id:?}", a.spec.id),
        ));
    }
    Ok(rec)
}

/// The full task view: record, artifacts from the stored events, history.
async fn render_task(
    call: &Call,
    rec: &RequestRecord,
    history_len: Option<u32>,
    with_artifacts: bool,
) -> Result<Value, RpcError> {
    let hub = &call.ctx.hub;
    let events = if with_artifacts {
        Some(
            hub.stored_events(&call.principal, &rec.id, 0, MAX_ARTIFACT_EVENTS)
                .await?,
        )
    } else {
        None
    };
    let history = if history_len == Some(0) {
        Vec::new()
    } else {
        hub.task_messages(&rec.id).await?
    };
    Ok(convert::task_view(
        rec,
        events.as_deref(),
        history,
        history_len,
    ))
}

// ---------------------------------------------------------------------------------------------
// Task streams

/// Where a task stream starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamStart {
    /// With the task as created (SUBMITTED, no artifacts), then every event of its log
    /// (`SendStreamingMessage`).
    Created,
    /// With the task as it stands now — state and artifacts built from the events stored so
    /// far — then only the events after those (`SubscribeToTask`, A2A 1.0 §3.1.6). The task's
    /// `metadata.seq` names the last event it includes.
    Current,
}

async fn stream_plan(
    call: &Call,
    rec: RequestRecord,
    history: Vec<Value>,
    start: StreamStart,
) -> Result<Answer, RpcError> {
    let mut events = call.ctx.hub.subscribe(&call.principal, &rec.id, 0).await?;
    let (initial, mapper) = match start {
        StreamStart::Created => (
            convert::task_at(&rec, std::iter::empty(), history),
            convert::StreamMapper::new(),
        ),
        StreamStart::Current => {
            // Subscribed before reading: whatever is stored after this point arrives through
            // the stream, nothing twice.
            let so_far = events.catch_up().await?;
            let log = so_far.iter().map(|e| &**e);
            (
                convert::task_at(&rec, log.clone(), history),
                convert::StreamMapper::after(log),
            )
        }
    };
    Ok(Answer::Stream(Box::new(StreamPlan {
        record: rec,
        initial,
        events,
        mapper,
    })))
}

/// Serves a task stream: `{task}` first, then one StreamResponse per mapped event, each a
/// JSON-RPC response with the request's id; closes after the terminal status, or after an
/// error event (e.g. the caller's API key was revoked or expired).
fn sse(ctx: &ApiContext, version: Version, id: Value, plan: StreamPlan) -> Resp {
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    let shutdown = ctx.hub.shutdown_signal();
    tokio::spawn(async move {
        let StreamPlan {
            record,
            initial,
            mut events,
            mut mapper,
        } = plan;
        let _client = super::SseClient::open();
        let shape = |sr: Value| match version {
            Version::V10 => sr,
            Version::V03 => v03::stream_response_to_v03(&sr),
        };
        let frame = |body: Value| warp::sse::Event::default().data(body.to_string());
        if tx
            .send(frame(jsonrpc::response(
                &id,
                shape(json!({ "task": initial })),
            )))
            .await
            .is_err()
        {
            return;
        }
        loop {
            // A client that went away frees its subscriber slot at once, not at the next event.
            let item = tokio::select! {
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => return,
                item = events.next() => match item {
                    Some(i) => i,
                    None => return,
                },
            };
            match item {
                Ok(ev) => {
                    for sr in mapper.map(&record, &ev) {
                        if tx
                            .send(frame(jsonrpc::response(&id, shape(sr))))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send(frame(jsonrpc::error_response(
                            &id,
                            &RpcError::from_hub(&e),
                            version,
                        )))
                        .await;
                    return;
                }
            }
        }
    });
    super::sse_reply(rx)
}
