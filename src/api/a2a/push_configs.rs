//! The push notification config methods (`Create`/`Get`/`List`/`Delete…`, 0.3
//! `tasks/pushNotificationConfig/*`). Storage and delivery are the hub's (`hub/push.rs`).

use serde_json::{Value, json};

use super::jsonrpc::RpcError;
use super::{Answer, Call, convert, task_record};
use crate::hub::push::NewPushConfig;
use crate::protocol::{Version, code, v03};

pub(super) fn new_push_config(v: &Value) -> Result<NewPushConfig, RpcError> {
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

pub(super) async fn create_push_config(call: &Call, params: Value) -> Result<Answer, RpcError> {
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

pub(super) async fn get_push_config(call: &Call, params: Value) -> Result<Answer, RpcError> {
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

pub(super) async fn list_push_configs(call: &Call, params: Value) -> Result<Answer, RpcError> {
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

pub(super) async fn delete_push_config(call: &Call, params: Value) -> Result<Answer, RpcError> {
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
