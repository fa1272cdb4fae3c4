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
//! the StreamResponse rendering of [`convert::StreamMapper`].

mod card;
mod convert;
mod jsonrpc;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use warp::filters::BoxedFilter;
use warp::{Filter, Reply};

use self::jsonrpc::RpcError;
use super::{ApiContext, SubscriberSlot, error_response, json_response};
use crate::a2a::{Method, TaskState, Version, code, v03};
use crate::error::{ErrorCode, HubError};
use crate::hub::push::NewPushConfig;
use crate::hub::{AgentEntry, EventStream, InvokeArgs};
use crate::metrics;
use crate::model::{Principal, RequestRecord};
use crate::store::RequestFilter;

type Resp = warp::reply::Response;

/// Default and largest `pageSize` of `ListTasks`.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 100;
/// `ListTasks` counts (`totalSize`) and scans at most this many matching tasks.
const MAX_COUNT: usize = 10_000;
/// Events read to build a task's artifacts.
const MAX_ARTIFACT_EVENTS: usize = 100_000;

/// The A2A routes. Also starts push notification delivery (the hub delivers; this adapter
/// says what a notification looks like).
pub fn routes(ctx: Arc<ApiContext>) -> BoxedFilter<(Resp,)> {
    ctx.hub.start_push_delivery(Arc::new(|after| {
        let mut mapper = convert::StreamMapper::resuming(after);
        Box::new(move |rec, ev| mapper.map(rec, ev))
    }));
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
            |id: String, headers: http::HeaderMap, ctx: Arc<ApiContext>| match enabled_agent(
                &ctx, &id,
            ) {
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
            .and(with())
            .then(
                |agent: Option<String>,
                 headers: http::HeaderMap,
                 query: HashMap<String, String>,
                 body: Bytes,
                 ctx: Arc<ApiContext>| async move {
                    handle_rpc(ctx, agent, headers, query, body).await
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

fn enabled_agent(ctx: &ApiContext, id: &str) -> Result<Arc<AgentEntry>, HubError> {
    let a = ctx.hub.agent(id)?;
    if !a.spec.enabled {
        return Err(HubError::new(
            ErrorCode::AgentDisabled,
            format!("agent {id:?} is disabled; enable_agent turns it back on"),
        ));
    }
    Ok(a)
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
    slot: SubscriberSlot,
}

fn rpc_json(status: http::StatusCode, body: &Value) -> Resp {
    json_response(status, body)
}

async fn handle_rpc(
    ctx: Arc<ApiContext>,
    agent_id: Option<String>,
    headers: http::HeaderMap,
    query: HashMap<String, String>,
    body: Bytes,
) -> Resp {
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    if !super::origin_allowed(origin, host, &ctx.config) {
        let e = RpcError::new(
            code::INVALID_REQUEST,
            "this Origin may not call the A2A endpoint; add it to A2A_ALLOWED_ORIGINS",
        );
        return rpc_json(
            http::StatusCode::FORBIDDEN,
            &jsonrpc::error_response(&Value::Null, &e, Version::V10),
        );
    }
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
        .get(crate::a2a::VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(crate::a2a::VERSION_HEADER))
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
        principal: ctx.http_principal(),
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
        Method::SendMessage => send_message(call, params, false).await,
        Method::SendStreamingMessage => send_message(call, params, true).await,
        Method::GetTask => get_task(call, params).await,
        Method::ListTasks => list_tasks(call, params).await,
        Method::CancelTask => cancel_task(call, params).await,
        Method::SubscribeToTask => subscribe(call, params).await,
        Method::CreatePushConfig => create_push_config(call, params).await,
        Method::GetPushConfig => get_push_config(call, params).await,
        Method::ListPushConfigs => list_push_configs(call, params).await,
        Method::DeletePushConfig => delete_push_config(call, params).await,
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
// SendMessage / SendStreamingMessage

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendParams {
    message: Value,
    #[serde(default)]
    configuration: Option<SendConfiguration>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SendConfiguration {
    #[serde(default)]
    accepted_output_modes: Vec<String>,
    #[serde(default)]
    history_length: Option<i64>,
    #[serde(default)]
    return_immediately: bool,
    #[serde(default)]
    task_push_notification_config: Option<Value>,
    /// 0.3: the inverse of `returnImmediately`.
    #[serde(default)]
    blocking: Option<bool>,
    /// 0.3 name of the push config.
    #[serde(default)]
    push_notification_config: Option<Value>,
}

fn meta_str<'a>(
    msg_meta: Option<&'a Map<String, Value>>,
    params_meta: Option<&'a Map<String, Value>>,
    keys: &[&str],
) -> Option<&'a str> {
    for m in [msg_meta, params_meta].into_iter().flatten() {
        for k in keys {
            if let Some(s) = m.get(*k).and_then(Value::as_str) {
                return Some(s);
            }
        }
    }
    None
}

fn new_push_config(v: &Value) -> Result<NewPushConfig, RpcError> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let url = s("url").ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            "a push notification config needs a `url`",
        )
    })?;
    Ok(NewPushConfig {
        id: s("id").filter(|x| !x.is_empty()),
        url,
        token: s("token").filter(|x| !x.is_empty()),
        auth_scheme: v
            .pointer("/authentication/scheme")
            .and_then(Value::as_str)
            .map(str::to_string),
        auth_credentials: v
            .pointer("/authentication/credentials")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

async fn send_message(call: &Call, params: Value, streaming: bool) -> Result<Answer, RpcError> {
    let hub = &call.ctx.hub;
    let p: SendParams = params_as(params)?;
    let mut message = match call.version {
        Version::V10 => p.message,
        Version::V03 => v03::message_from_v03(&p.message),
    };
    let mut conf = p.configuration.unwrap_or_default();
    if conf.blocking == Some(false) {
        conf.return_immediately = true;
    }
    let push = match (
        &conf.task_push_notification_config,
        &conf.push_notification_config,
    ) {
        (Some(c), _) => Some(new_push_config(c)?),
        (None, Some(c)) => Some(new_push_config(&v03::push_config_from_v03(c, None))?),
        (None, None) => None,
    };
    if let Some(cfg) = &push {
        crate::hub::push::validate(cfg)?;
    }
    if streaming && !call.ctx.config.enable_streaming {
        return Err(RpcError::new(
            code::UNSUPPORTED_OPERATION,
            "streaming is off on this server (ENABLE_STREAMING=false); use SendMessage",
        ));
    }
    if !convert::output_modes_ok(&conf.accepted_output_modes) {
        return Err(RpcError::new(
            code::CONTENT_TYPE_NOT_SUPPORTED,
            "this agent answers in text/plain and application/json, none of which acceptedOutputModes lists",
        ));
    }
    let history_len = history_length(conf.history_length)?;
    let Some(msg) = message.as_object() else {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "`message` must be an object",
        ));
    };
    let message_id = msg
        .get("messageId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "message.messageId is required"))?
        .to_string();
    if message_id.len() > 200 {
        return Err(RpcError::new(
            code::INVALID_PARAMS,
            "message.messageId must be at most 200 characters",
        ));
    }
    match msg.get("role").and_then(Value::as_str) {
        None | Some("ROLE_USER") | Some("ROLE_UNSPECIFIED") => {}
        Some(other) => {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("message.role must be ROLE_USER (got {other:?})"),
            ));
        }
    }
    if let Some(task_id) = msg.get("taskId").and_then(Value::as_str) {
        let rec = task_record(call, task_id).await?;
        return Err(RpcError::new(
            code::UNSUPPORTED_OPERATION,
            format!(
                "task {:?} is {}; tasks of this hub take no follow-up messages: send a new message without taskId (referenceTaskIds may name the earlier task)",
                rec.id,
                convert::state_of(rec.state).v10()
            ),
        ));
    }
    let msg_meta = msg.get("metadata").and_then(Value::as_object);
    let params_meta = p.metadata.as_ref();

    // Which agent and capability. A skill id means a capability on an agent's URL (its card's
    // skills are capabilities) and an agent on the hub's URL (its card's skills are agents).
    let agent = match &call.agent {
        Some(a) => a.clone(),
        None => match meta_str(msg_meta, params_meta, &["agentId", "agent", "skillId"]) {
            Some(id) => hub.agent(id)?,
            None => {
                let enabled = hub.list_agents(false);
                match enabled.as_slice() {
                    [only] => only.clone(),
                    _ => {
                        return Err(RpcError::new(
                            code::INVALID_PARAMS,
                            format!(
                                "name the agent in message.metadata.agentId or skillId (one of: {}), or use the agent's own URL /a2a/{{agentId}}",
                                enabled
                                    .iter()
                                    .map(|a| a.spec.id.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                }
            }
        },
    };
    let capability_keys: &[&str] = if call.agent.is_some() {
        &["capability", "skillId"]
    } else {
        &["capability"]
    };
    let capability =
        match meta_str(msg_meta, params_meta, capability_keys) {
            Some(c) => agent.resolve_capability(Some(c))?,
            None => agent.spec.capabilities.first().ok_or_else(|| {
                RpcError::new(code::INTERNAL_ERROR, "the agent has no capabilities")
            })?,
        };
    let input = convert::message_to_input(&message, &capability.input_schema)?;
    let capability = capability.name.clone();
    // Checked before a context is opened for it (invoke checks again).
    if !agent.spec.enabled {
        return Err(HubError::new(
            ErrorCode::AgentDisabled,
            format!(
                "agent {:?} is disabled; enable_agent turns it back on",
                agent.spec.id
            ),
        )
        .into());
    }
    agent.validate_input(&capability, &input)?;

    // The context: an existing session, or a new one.
    let session_id = match msg.get("contextId").and_then(Value::as_str) {
        Some(c) => match hub.get_session(c).await {
            Ok(s) => s.id,
            Err(e) if e.code == ErrorCode::SessionNotFound => {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!(
                        "unknown contextId {c:?}; omit contextId to start a new context (the server assigns one)"
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        },
        None => {
            hub.open_session(
                &call.principal,
                Some(agent.spec.id.clone()),
                json!({ "openedBy": "a2a" }),
            )
            .await?
            .id
        }
    };
    let rec = hub
        .invoke(
            &call.principal,
            InvokeArgs {
                agent_id: agent.spec.id.clone(),
                capability: Some(capability),
                input,
                session_id: Some(session_id),
                idempotency_key: Some(format!("a2a:{message_id}")),
            },
        )
        .await?;
    // The message is the task's history. A resent message (same messageId) found its task
    // again: nothing more to record, and its push config is already registered.
    let first_time = hub.task_messages(&rec.id).await?.is_empty();
    let record_history = async {
        if first_time {
            if let Some(m) = message.as_object_mut() {
                m.insert("taskId".into(), json!(rec.id));
                m.insert("contextId".into(), json!(convert::context_id(&rec)));
                m.entry("role").or_insert(json!("ROLE_USER"));
            }
            hub.add_task_message(&rec.id, &message).await?;
            if let Some(cfg) = push {
                hub.create_push_config(&call.principal, &rec.id, cfg, true)
                    .await?;
            }
        }
        Ok::<(), RpcError>(())
    };
    if streaming {
        record_history.await?;
        let history = hub.task_messages(&rec.id).await?;
        let initial = convert::initial_task(&rec, history);
        return stream_plan(call, rec, initial).await;
    }
    let rec = if conf.return_immediately {
        record_history.await?;
        rec
    } else {
        // The history commit shares its fsync with the job's first commits.
        let max = hub.config().max_wait;
        let (recorded, waited) = tokio::join!(
            record_history,
            super::wait_for(hub, &call.principal, &rec.id, max, |_| async {})
        );
        recorded?;
        waited?.0
    };
    let task = render_task(call, &rec, history_len, true).await?;
    Ok(Answer::Json(match call.version {
        Version::V10 => json!({ "task": task }),
        Version::V03 => v03::task_to_v03(&task),
    }))
}

async fn stream_plan(call: &Call, rec: RequestRecord, initial: Value) -> Result<Answer, RpcError> {
    let slot = call.ctx.acquire_subscriber(&rec.id)?;
    let events = call.ctx.hub.subscribe(&call.principal, &rec.id, 0).await?;
    Ok(Answer::Stream(Box::new(StreamPlan {
        record: rec,
        initial,
        events,
        slot,
    })))
}

/// Serves a task stream: `{task}` first, then one StreamResponse per mapped event, each a
/// JSON-RPC response with the request's id; closes after the terminal status.
fn sse(ctx: &ApiContext, version: Version, id: Value, plan: StreamPlan) -> Resp {
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    let shutdown = ctx.hub.shutdown_signal();
    tokio::spawn(async move {
        let StreamPlan {
            record,
            initial,
            mut events,
            slot,
        } = plan;
        let _slot = slot;
        metrics::SSE_CLIENTS.inc();
        let _guard = SseGuard;
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
        let mut mapper = convert::StreamMapper::new();
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
    let s = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>);
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

struct SseGuard;
impl Drop for SseGuard {
    fn drop(&mut self) {
        metrics::SSE_CLIENTS.dec();
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskParams {
    id: String,
    #[serde(default)]
    history_length: Option<i64>,
}

async fn get_task(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let p: TaskParams = params_as(params)?;
    let rec = task_record(call, &p.id).await?;
    let task = render_task(call, &rec, history_length(p.history_length)?, true).await?;
    Ok(Answer::Json(shape_task(call, task)))
}

async fn cancel_task(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let p: TaskParams = params_as(params)?;
    task_record(call, &p.id).await?;
    let rec = call
        .ctx
        .hub
        .cancel(
            &call.principal,
            &p.id,
            Some(format!("canceled over A2A by {}", call.principal.id)),
        )
        .await?;
    let task = render_task(call, &rec, None, true).await?;
    Ok(Answer::Json(shape_task(call, task)))
}

async fn subscribe(call: &Call, params: Value) -> Result<Answer, RpcError> {
    if !call.ctx.config.enable_streaming {
        return Err(RpcError::new(
            code::UNSUPPORTED_OPERATION,
            "streaming is off on this server (ENABLE_STREAMING=false); poll GetTask",
        ));
    }
    let p: TaskParams = params_as(params)?;
    let rec = task_record(call, &p.id).await?;
    if rec.state.is_terminal() {
        return Err(RpcError::new(
            code::UNSUPPORTED_OPERATION,
            format!(
                "task {:?} is in a terminal state ({}); there is nothing to follow, use GetTask",
                rec.id,
                convert::state_of(rec.state).v10()
            ),
        ));
    }
    let history = call.ctx.hub.task_messages(&rec.id).await?;
    let initial = convert::initial_task(&rec, history);
    stream_plan(call, rec, initial).await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    page_size: Option<i64>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    history_length: Option<i64>,
    #[serde(default)]
    status_timestamp_after: Option<String>,
    #[serde(default)]
    include_artifacts: Option<bool>,
}

fn status_time(rec: &RequestRecord) -> i64 {
    rec.finished_at.or(rec.started_at).unwrap_or(rec.created_at)
}

async fn list_tasks(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let p: ListParams = params_as(params)?;
    let page_size = match p.page_size {
        None | Some(0) => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("pageSize must be 1-{MAX_PAGE}"),
            ));
        }
    };
    let history_len = history_length(p.history_length)?;
    let states = match p.status.as_deref() {
        None | Some("") | Some("TASK_STATE_UNSPECIFIED") => Vec::new(),
        Some(s) => match TaskState::parse(s) {
            Some(st) => {
                let v = convert::states_for(st);
                if v.is_empty() {
                    // No hub task is ever in this state.
                    return Ok(Answer::Json(json!({
                        "tasks": [], "nextPageToken": "", "pageSize": page_size, "totalSize": 0,
                    })));
                }
                v
            }
            None => {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!("unknown status {s:?}; use a TASK_STATE_* value"),
                ));
            }
        },
    };
    let after_ts = match p.status_timestamp_after.as_deref() {
        None | Some("") => None,
        Some(t) => Some(
            humantime::parse_rfc3339_weak(t)
                .map_err(|e| {
                    RpcError::new(
                        code::INVALID_PARAMS,
                        format!("statusTimestampAfter {t:?} is not an RFC 3339 time: {e}"),
                    )
                })?
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        ),
    };
    let keep = |r: &RequestRecord| after_ts.is_none_or(|t| status_time(r) > t);
    let base = RequestFilter {
        session_id: p.context_id.filter(|c| !c.is_empty()),
        agent_id: call.agent.as_ref().map(|a| a.spec.id.clone()),
        states,
        after_id: None,
        limit: 0,
    };
    let hub = &call.ctx.hub;
    // A request made without a session is its own context.
    if let Some(ctx_id) = &base.session_id
        && let Ok(rec) = hub.get_status(&call.principal, ctx_id).await
        && rec.session_id.is_none()
    {
        let matches = base.agent_id.as_ref().is_none_or(|a| *a == rec.agent_id)
            && (base.states.is_empty() || base.states.contains(&rec.state))
            && keep(&rec)
            && p.page_token.as_deref().is_none_or(|t| t.is_empty());
        let mut tasks = Vec::new();
        if matches {
            tasks.push(
                render_task(
                    call,
                    &rec,
                    history_len,
                    p.include_artifacts.unwrap_or(false),
                )
                .await?,
            );
        }
        return Ok(Answer::Json(json!({
            "tasks": tasks, "nextPageToken": "", "pageSize": page_size, "totalSize": tasks.len(),
        })));
    }
    // The page (one extra to know whether there is more).
    let mut page: Vec<RequestRecord> = Vec::new();
    let mut cursor = p.page_token.filter(|t| !t.is_empty());
    let mut scanned = 0usize;
    loop {
        let batch = hub
            .list_requests(&RequestFilter {
                after_id: cursor.clone(),
                limit: 500,
                ..base.clone()
            })
            .await?;
        let n = batch.len();
        scanned += n;
        cursor = batch.last().map(|r| r.id.clone());
        page.extend(batch.into_iter().filter(|r| keep(r)));
        if page.len() > page_size || n < 500 || scanned >= MAX_COUNT {
            break;
        }
    }
    let more = page.len() > page_size;
    page.truncate(page_size);
    let next = if more {
        page.last().map(|r| r.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    // totalSize: every match, not just this page (counted up to MAX_COUNT).
    let mut total = 0usize;
    let mut cursor: Option<String> = None;
    loop {
        let batch = hub
            .list_requests(&RequestFilter {
                after_id: cursor.clone(),
                limit: 1000,
                ..base.clone()
            })
            .await?;
        let n = batch.len();
        cursor = batch.last().map(|r| r.id.clone());
        total += batch.iter().filter(|r| keep(r)).count();
        if n < 1000 || total >= MAX_COUNT {
            break;
        }
    }
    let mut tasks = Vec::with_capacity(page.len());
    for rec in &page {
        let t = render_task(call, rec, history_len, p.include_artifacts.unwrap_or(false)).await?;
        tasks.push(t);
    }
    Ok(Answer::Json(json!({
        "tasks": tasks,
        "nextPageToken": next,
        "pageSize": page_size,
        "totalSize": total.min(MAX_COUNT),
    })))
}

// ---------------------------------------------------------------------------------------------
// Push notification configs

fn shape_push(call: &Call, cfg: &crate::hub::push::PushConfig) -> Value {
    let v = convert::push_config_view(cfg);
    match call.version {
        Version::V10 => v,
        Version::V03 => v03::push_config_to_v03(&v),
    }
}

/// (task id, config id) of a Get/Delete call in either version.
fn push_ids(call: &Call, params: &Value) -> Result<(String, Option<String>), RpcError> {
    let s = |k: &str| params.get(k).and_then(Value::as_str).map(str::to_string);
    let (task, cfg) = match call.version {
        Version::V10 => (s("taskId"), s("id")),
        Version::V03 => (s("id"), s("pushNotificationConfigId")),
    };
    let task = task.ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            match call.version {
                Version::V10 => "params.taskId is required",
                Version::V03 => "params.id (the task id) is required",
            },
        )
    })?;
    Ok((task, cfg))
}

async fn create_push_config(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let params = match call.version {
        Version::V10 => params,
        Version::V03 => v03::push_config_from_v03(&params, None),
    };
    let task_id = params
        .get("taskId")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(code::INVALID_PARAMS, "params.taskId is required"))?
        .to_string();
    task_record(call, &task_id).await?;
    let cfg = call
        .ctx
        .hub
        .create_push_config(&call.principal, &task_id, new_push_config(&params)?, false)
        .await?;
    Ok(Answer::Json(shape_push(call, &cfg)))
}

async fn get_push_config(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let (task, cfg) = push_ids(call, &params)?;
    task_record(call, &task).await?;
    let hub = &call.ctx.hub;
    let found = match cfg {
        Some(id) => hub.get_push_config(&call.principal, &task, &id).await?,
        // 0.3 without a config id: the task's (first) config.
        None if call.version == Version::V03 => hub
            .list_push_configs(&call.principal, &task)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                RpcError::new(
                    code::TASK_NOT_FOUND,
                    format!("task {task:?} has no push notification config"),
                )
            })?,
        None => {
            return Err(RpcError::new(code::INVALID_PARAMS, "params.id is required"));
        }
    };
    Ok(Answer::Json(shape_push(call, &found)))
}

async fn list_push_configs(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let (task, _) = push_ids(call, &params)?;
    task_record(call, &task).await?;
    let configs = call
        .ctx
        .hub
        .list_push_configs(&call.principal, &task)
        .await?;
    let items: Vec<Value> = configs.iter().map(|c| shape_push(call, c)).collect();
    Ok(Answer::Json(match call.version {
        Version::V10 => json!({ "configs": items, "nextPageToken": "" }),
        Version::V03 => Value::Array(items),
    }))
}

async fn delete_push_config(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let (task, cfg) = push_ids(call, &params)?;
    let cfg = cfg.ok_or_else(|| {
        RpcError::new(
            code::INVALID_PARAMS,
            match call.version {
                Version::V10 => "params.id (the config id) is required",
                Version::V03 => "params.pushNotificationConfigId is required",
            },
        )
    })?;
    task_record(call, &task).await?;
    call.ctx
        .hub
        .delete_push_config(&call.principal, &task, &cfg)
        .await?;
    Ok(Answer::Json(match call.version {
        Version::V10 => json!({}),
        Version::V03 => Value::Null,
    }))
}
