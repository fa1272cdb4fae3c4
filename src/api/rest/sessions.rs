//! REST handlers of the session routes: open, get, close.

use http::StatusCode;
use serde_json::Value;

use super::endpoint::SessionOp;
use super::{Answer, Call};
use crate::api::views::{SessionBody, SessionView};
use crate::error::HubResult;

pub(super) async fn handle(op: SessionOp, call: Call) -> HubResult<Answer> {
    let hub = &call.rc.hub;
    let p = call.rc.caller();
    let (status, s) = match op {
        SessionOp::Open => {
            let b: SessionBody = call.body()?;
            let metadata = Value::Object(b.metadata.unwrap_or_default());
            let s = hub.open_session(&p, b.agent_id, metadata).await?;
            (StatusCode::CREATED, s)
        }
        SessionOp::Get(id) => (StatusCode::OK, hub.get_session(&p, &id).await?),
        SessionOp::Close(id) => (StatusCode::OK, hub.close_session(&p, &id).await?),
    };
    Ok(Answer::view(status, &SessionView::from(&s)))
}
