//! `SendMessage` / `SendStreamingMessage`: a message becomes a hub invocation (see
//! `README.md` for the mapping), blocking until the task ends unless `returnImmediately`, or
//! streamed.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::jsonrpc::RpcError;
use super::push_configs::new_push_config;
use super::{
    Answer, Call, StreamStart, convert, history_length, params_as, render_task, stream_plan,
    task_record,
};
use crate::error::ErrorCode;
use crate::hub::{InvokeArgs, TaskStart};
use crate::protocol::{Version, code, v03};

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

pub(super) async fn send_message(
    call: &Call,
    params: Value,
    streaming: bool,
) -> Result<Answer, RpcError> {
    let hub = &call.ctx.hub;
    let p: SendParams = params_as(params)?;
    let message = match call.version {
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
    let message_id = check_message(call, msg).await?;
    let msg_meta = msg.get("metadata").and_then(Value::as_object);
    let params_meta = p.metadata.as_ref();

    let agent = pick_agent(call, msg_meta, params_meta)?;
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

    // The context: an existing session, or a new one opened with the task.
    let session_id = existing_context(call, msg).await?;
    let new_session = session_id.is_none().then(|| json!({ "openedBy": "a2a" }));
    // One commit: the request, its session, its first message and its push config. A resent
    // message (same messageId) finds its task again and records nothing.
    let rec = hub
        .start_task(
            &call.principal,
            InvokeArgs {
                agent_id: agent.spec.id.clone(),
                capability: Some(capability),
                input,
                session_id,
                idempotency_key: Some(format!("a2a:{message_id}")),
            },
            TaskStart {
                message,
                new_session,
                push,
            },
        )
        .await?;
    if streaming {
        let history = hub.task_messages(&rec.id).await?;
        return stream_plan(call, rec, history, StreamStart::Created).await;
    }
    let rec = if conf.return_immediately {
        rec
    } else {
        let max = hub.config().max_wait;
        hub.wait(&call.principal, &rec.id, max, |_| async {})
            .await?
            .record
    };
    let task = render_task(call, &rec, history_len, true).await?;
    Ok(Answer::Json(match call.version {
        Version::V10 => json!({ "task": task }),
        Version::V03 => v03::task_to_v03(&task),
    }))
}

/// The checks a message must pass before it becomes a task; returns its `messageId`.
async fn check_message(call: &Call, msg: &Map<String, Value>) -> Result<String, RpcError> {
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
    Ok(message_id)
}

/// Which agent a message is for. A skill id means a capability on an agent's URL (its card's
/// skills are capabilities) and an agent on the hub's URL (its card's skills are agents).
fn pick_agent(
    call: &Call,
    msg_meta: Option<&Map<String, Value>>,
    params_meta: Option<&Map<String, Value>>,
) -> Result<std::sync::Arc<crate::hub::AgentEntry>, RpcError> {
    let hub = &call.ctx.hub;
    if let Some(a) = &call.agent {
        return Ok(a.clone());
    }
    if let Some(id) = meta_str(msg_meta, params_meta, &["agentId", "agent", "skillId"]) {
        return Ok(hub.agent(id)?);
    }
    let enabled = hub.list_agents(false);
    match enabled.as_slice() {
        [only] => Ok(only.clone()),
        _ => Err(RpcError::new(
            code::INVALID_PARAMS,
            format!(
                "name the agent in message.metadata.agentId or skillId (one of: {}), or use the agent's own URL /a2a/{{agentId}}",
                enabled
                    .iter()
                    .map(|a| a.spec.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The session a message's `contextId` names (`None`: no contextId, a new context).
async fn existing_context(
    call: &Call,
    msg: &Map<String, Value>,
) -> Result<Option<String>, RpcError> {
    let Some(c) = msg.get("contextId").and_then(Value::as_str) else {
        return Ok(None);
    };
    match call.ctx.hub.get_session(&call.principal, c).await {
        Ok(s) => Ok(Some(s.id)),
        Err(e) if e.code == ErrorCode::SessionNotFound => Err(RpcError::new(
            code::INVALID_PARAMS,
            format!(
                "unknown contextId {c:?}; omit contextId to start a new context (the server assigns one)"
            ),
        )),
        Err(e) => Err(e.into()),
    }
}
