//! REST handlers of the request routes: list, status, cancel, handoff, and the request's
//! events as Server-Sent Events (`Last-Event-ID` or `?after=` to resume; the stream ends after
//! the terminal event, or after an `error` event: a store failure, or the caller's API key
//! revoked or expired).

use http::StatusCode;
use serde_json::Value;

use super::endpoint::RequestOp;
use super::{Answer, Call, page_limit};
use crate::api::views::{self, CancelBody, EventView, HandoffBody, RequestList};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::hub::HandoffArgs;
use crate::model::RequestState;
use crate::store::RequestFilter;

pub(super) async fn handle(op: RequestOp, call: Call) -> HubResult<Answer> {
    let hub = &call.rc.hub;
    let p = call.rc.caller();
    match op {
        RequestOp::List => list(&call).await,
        RequestOp::Get(id) => {
            let rec = hub.get_status(&p, &id).await?;
            Ok(Answer::view(StatusCode::OK, &call.rc.request_view(&rec)))
        }
        RequestOp::Cancel(id) => {
            let c: CancelBody = call.body()?;
            let rec = hub.cancel(&p, &id, c.reason).await?;
            Ok(Answer::view(StatusCode::OK, &call.rc.request_view(&rec)))
        }
        RequestOp::Handoff(id) => {
            let h: HandoffBody = call.body()?;
            let args = HandoffArgs {
                parent_id: id,
                agent_id: h.agent_id,
                capability: h.capability,
                input: Value::Object(h.input),
                idempotency_key: h.idempotency_key,
            };
            let rec = hub.handoff(&p, args).await?;
            Ok(Answer::view(
                StatusCode::ACCEPTED,
                &call.rc.request_view(&rec),
            ))
        }
        RequestOp::Events(id) => events(call, id).await.map(Answer::Raw),
    }
}

async fn list(call: &Call) -> HubResult<Answer> {
    let q: views::ListRequestsQuery = call.query()?;
    let mut states = Vec::new();
    if let Some(s) = &q.status {
        for part in s.split(',') {
            let state = RequestState::ALL
                .into_iter()
                .find(|st| st.as_str() == part.trim())
                .ok_or_else(|| {
                    HubError::new(
                        ErrorCode::InvalidParams,
                        format!(
                            "unknown status {part:?}; use queued, running, done, error or canceled"
                        ),
                    )
                })?;
            states.push(state);
        }
    }
    let limit = page_limit(&q.limit)?;
    let filter = RequestFilter {
        session_id: q.session_id,
        agent_id: q.agent_id,
        states,
        after_id: q.after,
        limit,
    };
    let recs = call
        .rc
        .hub
        .list_requests(&call.rc.caller(), &filter)
        .await?;
    let next = (recs.len() == limit)
        .then(|| recs.last().map(|r| r.id.clone()))
        .flatten();
    let page = RequestList {
        requests: recs.iter().map(|r| call.rc.request_view(r)).collect(),
        next,
    };
    Ok(Answer::view(StatusCode::OK, &page))
}

async fn events(call: Call, id: String) -> HubResult<warp::reply::Response> {
    let q: views::EventsQuery = call.query()?;
    let resume = call
        .headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.after);
    let after = match resume {
        Some(s) => s.trim().parse::<u64>().map_err(|_| {
            HubError::new(
                ErrorCode::InvalidParams,
                format!("Last-Event-ID/after {s:?} is not a sequence number"),
            )
        })?,
        None => 0,
    };
    let p = call.rc.caller();
    let events = call.rc.hub.subscribe(&p, &id, after).await?;
    let client = crate::api::SseClient::open();
    let (tx, rx) = tokio::sync::mpsc::channel::<warp::sse::Event>(64);
    tokio::spawn(async move {
        let _client = client;
        let mut events = events;
        while let Some(item) = events.next().await {
            let (ev, last) = match item {
                Ok(ev) => (
                    warp::sse::Event::default()
                        .id(ev.seq.to_string())
                        .event(ev.kind.type_name())
                        .data(views::to_json(&EventView::from(&*ev)).to_string()),
                    false,
                ),
                Err(e) => (
                    warp::sse::Event::default()
                        .event("error")
                        .data(e.to_json().to_string()),
                    true,
                ),
            };
            if tx.send(ev).await.is_err() || last {
                break;
            }
        }
    });
    Ok(crate::api::sse_reply(rx))
}
