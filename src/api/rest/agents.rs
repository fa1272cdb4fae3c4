//! REST handlers of the agent routes: list, deploy, import a card, describe, update, remove,
//! enable, disable, and invoke (with the optional bounded wait, `Hub::wait`).

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use super::endpoint::AgentOp;
use super::{Answer, Call};
use crate::api::views::{
    self, AgentList, AgentPatchBody, AgentView, ImportCardBody, InvokeBody, RemovedAgent,
};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::hub::InvokeArgs;
use crate::model::AgentSpec;

pub(super) async fn handle(op: AgentOp, call: Call) -> HubResult<Answer> {
    let hub = &call.rc.hub;
    let p = call.rc.caller();
    let detailed = |a: &crate::hub::AgentEntry| AgentView::detailed(a);
    match op {
        AgentOp::List => {
            let q: views::ListAgentsQuery = call.query()?;
            let agents = hub
                .visible_agents(&p, views::flag(&q.include_disabled))
                .await?;
            Ok(Answer::view(
                StatusCode::OK,
                &AgentList::summaries(agents.iter().map(|a| &**a)),
            ))
        }
        AgentOp::Deploy => {
            let q: views::DeployQuery = call.query()?;
            let spec: AgentSpec = call.body()?;
            let a = hub.deploy_agent(&p, spec, views::flag(&q.replace)).await?;
            Ok(Answer::view(StatusCode::CREATED, &detailed(&a)))
        }
        AgentOp::ImportCard => {
            let b: ImportCardBody = call.body()?;
            let a = hub
                .import_agent_card(&p, &b.card_url, b.id.as_deref(), b.replace)
                .await?;
            Ok(Answer::view(StatusCode::CREATED, &detailed(&a)))
        }
        AgentOp::Get(id) => {
            let a = hub.describe_agent(&p, &id).await?;
            Ok(Answer::view(StatusCode::OK, &detailed(&a)))
        }
        AgentOp::Update(id) => {
            let AgentPatchBody(patch) = call.body()?;
            let a = hub.update_agent(&p, &id, &Value::Object(patch)).await?;
            Ok(Answer::view(StatusCode::OK, &detailed(&a)))
        }
        AgentOp::Remove(id) => {
            hub.remove_agent(&p, &id).await?;
            Ok(Answer::view(StatusCode::OK, &RemovedAgent { removed: id }))
        }
        AgentOp::Enable(ref id) | AgentOp::Disable(ref id) => {
            let enable = matches!(op, AgentOp::Enable(_));
            let a = hub.set_agent_enabled(&p, id, enable).await?;
            Ok(Answer::view(StatusCode::OK, &detailed(&a)))
        }
        AgentOp::Invoke(id) => invoke(id, call).await,
    }
}

async fn invoke(agent_id: String, call: Call) -> HubResult<Answer> {
    let p = call.rc.caller();
    let body: InvokeBody = call.body()?;
    let header_key = match call.headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(v.to_str().map(str::to_string).map_err(|_| {
            HubError::new(
                ErrorCode::InvalidRequest,
                "a required header is missing or invalid",
            )
        })?),
    };
    let args = InvokeArgs {
        agent_id,
        capability: body.capability,
        input: Value::Object(body.input),
        session_id: body.session_id,
        idempotency_key: body.idempotency_key.or(header_key),
    };
    let rec = call.rc.hub.invoke(&p, args).await?;
    if !body.wait {
        return Ok(Answer::view(
            StatusCode::ACCEPTED,
            &call.rc.request_view(&rec),
        ));
    }
    let timeout = Duration::from_millis(body.timeout_ms.unwrap_or(60_000));
    let w = call.rc.hub.wait(&p, &rec.id, timeout, |_| async {}).await?;
    let status = if w.finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let view = call.rc.request_view(&w.record).waited(w.finished);
    Ok(Answer::view(status, &view))
}
