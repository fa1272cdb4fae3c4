//! `GetTask`, `CancelTask`, `SubscribeToTask` (0.3: `tasks/resubscribe`), `ListTasks`.
//!
//! `SubscribeToTask` starts with the task as it stands (state and artifacts so far) and then
//! sends only later events, so a client that resubscribes after a dropped connection loses
//! and repeats nothing.

use serde::Deserialize;
use serde_json::{Value, json};

use super::jsonrpc::RpcError;
use super::{
    Answer, Call, DEFAULT_PAGE, MAX_COUNT, MAX_PAGE, StreamStart, convert, history_length,
    params_as, render_task, shape_task, stream_plan, task_record,
};
use crate::model::RequestRecord;
use crate::protocol::{TaskState, code};
use crate::store::RequestFilter;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskParams {
    id: String,
    #[serde(default)]
    history_length: Option<i64>,
}

pub(super) async fn get_task(call: &Call, params: Value) -> Result<Answer, RpcError> {
    let p: TaskParams = params_as(params)?;
    let rec = task_record(call, &p.id).await?;
    let task = render_task(call, &rec, history_length(p.history_length)?, true).await?;
    Ok(Answer::Json(shape_task(call, task)))
}

pub(super) async fn cancel_task(call: &Call, params: Value) -> Result<Answer, RpcError> {
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

pub(super) async fn subscribe(call: &Call, params: Value) -> Result<Answer, RpcError> {
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
    stream_plan(call, rec, history, StreamStart::Current).await
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

pub(super) async fn list_tasks(call: &Call, params: Value) -> Result<Answer, RpcError> {
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
    let Some(states) = states_of(p.status.as_deref())? else {
        // No hub task is ever in this state.
        return Ok(Answer::Json(json!({
            "tasks": [], "nextPageToken": "", "pageSize": page_size, "totalSize": 0,
        })));
    };
    let after_ts = time_after(p.status_timestamp_after.as_deref())?;
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
            .list_requests(
                &call.principal,
                &RequestFilter {
                    after_id: cursor.clone(),
                    limit: 500,
                    ..base.clone()
                },
            )
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
    let total = count_matches(call, &base, &keep).await?;
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

/// The request states a `status` filter means: empty for no filter, `None` when no hub task
/// is ever in that state.
fn states_of(status: Option<&str>) -> Result<Option<Vec<crate::model::RequestState>>, RpcError> {
    match status {
        None | Some("") | Some("TASK_STATE_UNSPECIFIED") => Ok(Some(Vec::new())),
        Some(s) => match TaskState::parse(s) {
            Some(st) => {
                let v = convert::states_for(st);
                Ok((!v.is_empty()).then_some(v))
            }
            None => Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("unknown status {s:?}; use a TASK_STATE_* value"),
            )),
        },
    }
}

/// `statusTimestampAfter` as milliseconds since the epoch.
fn time_after(t: Option<&str>) -> Result<Option<i64>, RpcError> {
    match t {
        None | Some("") => Ok(None),
        Some(t) => Ok(Some(
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
        )),
    }
}

/// Every task the filter and `keep` match, counted up to [`MAX_COUNT`].
async fn count_matches(
    call: &Call,
    base: &RequestFilter,
    keep: &impl Fn(&RequestRecord) -> bool,
) -> Result<usize, RpcError> {
    let mut total = 0usize;
    let mut cursor: Option<String> = None;
    loop {
        let batch = call
            .ctx
            .hub
            .list_requests(
                &call.principal,
                &RequestFilter {
                    after_id: cursor.clone(),
                    limit: 1000,
                    ..base.clone()
                },
            )
            .await?;
        let n = batch.len();
        cursor = batch.last().map(|r| r.id.clone());
        total += batch.iter().filter(|r| keep(r)).count();
        if n < 1000 || total >= MAX_COUNT {
            return Ok(total);
        }
    }
}
