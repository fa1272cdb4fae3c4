//! Hub ↔ A2A shapes (1.0; the 0.3 forms come from [`crate::protocol::v03`] at the edge).
//!
//! - A message's parts become a capability input ([`message_to_input`]).
//! - A request record (+ its stored events and messages) becomes a Task ([`task_view`]).
//! - Stream events become StreamResponses ([`StreamMapper`]): `start` → WORKING status,
//!   `chunk` → an update of artifact `output` (`append` after the first chunk since the last
//!   `start`; a retried request's first chunk replaces the earlier attempt's output), `final` →
//!   artifact `result` (`lastChunk: true`) + COMPLETED, `error` → FAILED, `canceled` →
//!   CANCELED. Every status/artifact update carries the hub event's `seq` in its `metadata`.
//! - The events up to some `seq` become the Task as it stood then ([`task_at`]): the state and
//!   artifacts a client holds after applying those StreamResponses, which is what a
//!   resubscription starts from.

use serde_json::{Map, Value, json};

use super::jsonrpc::RpcError;
use crate::model::{Event, EventKind, RequestRecord, RequestState, rfc3339};
use crate::protocol::{self as a2a, TaskState, code};

/// Artifact that carries the streamed chunks.
pub const OUTPUT_ARTIFACT: &str = "output";
/// Artifact that carries the final result.
pub const RESULT_ARTIFACT: &str = "result";

pub fn state_of(s: RequestState) -> TaskState {
    match s {
        RequestState::Queued => TaskState::Submitted,
        RequestState::Running => TaskState::Working,
        RequestState::Done => TaskState::Completed,
        RequestState::Error => TaskState::Failed,
        RequestState::Canceled => TaskState::Canceled,
    }
}

/// The hub states a task-state filter selects (empty: none can match).
pub fn states_for(s: TaskState) -> Vec<RequestState> {
    match s {
        TaskState::Submitted => vec![RequestState::Queued],
        TaskState::Working => vec![RequestState::Running],
        TaskState::Completed => vec![RequestState::Done],
        TaskState::Failed => vec![RequestState::Error],
        TaskState::Canceled => vec![RequestState::Canceled],
        _ => Vec::new(),
    }
}

/// The A2A context of a request: its session, or the request itself when it has none.
pub fn context_id(rec: &RequestRecord) -> &str {
    rec.session_id.as_deref().unwrap_or(&rec.id)
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn agent_message(rec: &RequestRecord, id_suffix: &str, text: &str) -> Value {
    json!({
        "messageId": format!("{}-{id_suffix}", rec.id),
        "role": "ROLE_AGENT",
        "parts": [a2a::text_part(text)],
        "taskId": rec.id,
        "contextId": context_id(rec),
    })
}

fn status(rec: &RequestRecord, state: TaskState, ts: i64, message: Option<Value>) -> Value {
    let _ = rec;
    let mut s = json!({ "state": state.v10(), "timestamp": rfc3339(ts) });
    if let Some(m) = message {
        s["message"] = m;
    }
    s
}

/// The current status of a request.
pub fn current_status(rec: &RequestRecord) -> Value {
    let ts = rec.finished_at.or(rec.started_at).unwrap_or(rec.created_at);
    let message = match rec.state {
        RequestState::Error => rec
            .error
            .as_deref()
            .map(|e| agent_message(rec, "status", e)),
        RequestState::Canceled => rec
            .error
            .as_deref()
            .map(|e| agent_message(rec, "status", e)),
        _ => None,
    };
    status(rec, state_of(rec.state), ts, message)
}

/// The user message a request that did not come over A2A is shown with in `history`.
fn synthesized_input_message(rec: &RequestRecord) -> Value {
    json!({
        "messageId": format!("{}-input", rec.id),
        "role": "ROLE_USER",
        "parts": [a2a::data_part(parse(&rec.input))],
        "taskId": rec.id,
        "contextId": context_id(rec),
    })
}

/// `history` limited by `historyLength` (unset: all; 0: none; n: the last n).
fn limit_history(mut history: Vec<Value>, history_length: Option<u32>) -> Vec<Value> {
    if let Some(n) = history_length {
        let n = n as usize;
        if history.len() > n {
            history.drain(..history.len() - n);
        }
    }
    history
}

/// The `output` artifact's parts after `events`, as a client applying the stream's updates
/// holds them: every chunk appends, except the first chunk after a `start` (a new attempt),
/// which replaces what an earlier attempt sent.
fn output_parts<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<Value> {
    let mut parts = Vec::new();
    let mut replace_next = true;
    for e in events {
        match &e.kind {
            EventKind::Start => replace_next = true,
            EventKind::Chunk(c) => {
                if replace_next {
                    parts.clear();
                    replace_next = false;
                }
                parts.push(a2a::value_part(parse(c)));
            }
            _ => {}
        }
    }
    parts
}

fn output_artifact(parts: Vec<Value>) -> Value {
    json!({ "artifactId": OUTPUT_ARTIFACT, "name": OUTPUT_ARTIFACT, "parts": parts })
}

fn result_artifact(result: &str) -> Value {
    json!({
        "artifactId": RESULT_ARTIFACT,
        "name": RESULT_ARTIFACT,
        "parts": [a2a::value_part(parse(result))],
    })
}

/// The artifacts a request has produced so far, from its stored events and result.
pub fn artifacts(rec: &RequestRecord, events: &[Event]) -> Vec<Value> {
    let mut out = Vec::new();
    let parts = output_parts(events);
    if !parts.is_empty() {
        out.push(output_artifact(parts));
    }
    if rec.state == RequestState::Done
        && let Some(r) = &rec.result
    {
        out.push(result_artifact(r));
    }
    out
}

/// A request as an A2A Task. `events`: include artifacts built from them; `history`: the
/// stored messages (a synthesized input message when there are none).
pub fn task_view(
    rec: &RequestRecord,
    events: Option<&[Event]>,
    history: Vec<Value>,
    history_length: Option<u32>,
) -> Value {
    let history = if history.is_empty() {
        vec![synthesized_input_message(rec)]
    } else {
        history
    };
    let mut t = json!({
        "id": rec.id,
        "contextId": context_id(rec),
        "status": current_status(rec),
        "metadata": { "agentId": rec.agent_id, "capability": rec.capability },
    });
    if let Some(evs) = events {
        let arts = artifacts(rec, evs);
        if !arts.is_empty() {
            t["artifacts"] = Value::Array(arts);
        }
    }
    let h = limit_history(history, history_length);
    if !h.is_empty() {
        t["history"] = Value::Array(h);
    }
    t
}

/// The task as it stood after `events` (a prefix of its log, in order; empty: as created):
/// the status the last status-changing event set (SUBMITTED before any), the artifacts those
/// events built — exactly what a client holds after applying their StreamResponses — and the
/// history. `metadata.seq` is the `seq` of the last of them (0 for none): a stream that starts
/// with this task goes on with the events after it.
pub fn task_at<'a>(
    rec: &RequestRecord,
    events: impl IntoIterator<Item = &'a Event> + Clone,
    history: Vec<Value>,
) -> Value {
    let history = if history.is_empty() {
        vec![synthesized_input_message(rec)]
    } else {
        history
    };
    let mut current = status(rec, TaskState::Submitted, rec.created_at, None);
    let mut result = None;
    let mut seq = 0;
    for ev in events.clone() {
        seq = ev.seq;
        let msg = |m: &str| Some(agent_message(rec, &format!("status-{}", ev.seq), m));
        match &ev.kind {
            EventKind::Start => current = status(rec, TaskState::Working, ev.ts, None),
            EventKind::Chunk(_) => {}
            EventKind::Final(r) => {
                result = Some(result_artifact(r));
                current = status(rec, TaskState::Completed, ev.ts, None);
            }
            EventKind::Error(m) => current = status(rec, TaskState::Failed, ev.ts, msg(m)),
            EventKind::Canceled(m) => current = status(rec, TaskState::Canceled, ev.ts, msg(m)),
        }
    }
    let mut t = json!({
        "id": rec.id,
        "contextId": context_id(rec),
        "status": current,
        "history": history,
        "metadata": { "agentId": rec.agent_id, "capability": rec.capability, "seq": seq },
    });
    let parts = output_parts(events);
    let mut arts = Vec::new();
    if !parts.is_empty() {
        arts.push(output_artifact(parts));
    }
    arts.extend(result);
    if !arts.is_empty() {
        t["artifacts"] = Value::Array(arts);
    }
    t
}

/// Turns a request's events, in order, into StreamResponses.
#[derive(Default)]
pub struct StreamMapper {
    /// Whether `output` has had an update since the last `start` (`None`: not known, the
    /// mapper started in the middle of the log).
    output_open: Option<bool>,
}

impl StreamMapper {
    pub fn new() -> Self {
        Self {
            output_open: Some(false),
        }
    }

    /// A mapper that starts after event `after` of the log.
    pub fn resuming(after: u64) -> Self {
        if after == 0 {
            Self::new()
        } else {
            Self { output_open: None }
        }
    }

    /// A mapper that goes on after `events` (the log from its start), as if it had mapped
    /// them: its next updates continue the artifacts [`task_at`] built from them.
    pub fn after<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut m = Self::new();
        for e in events {
            match e.kind {
                EventKind::Start => m.output_open = Some(false),
                EventKind::Chunk(_) => m.output_open = Some(true),
                _ => {}
            }
        }
        m
    }

    pub fn map(&mut self, rec: &RequestRecord, ev: &Event) -> Vec<Value> {
        let ctx = context_id(rec);
        let meta = json!({ "seq": ev.seq });
        let status_update = |state: TaskState, message: Option<Value>| {
            json!({ "statusUpdate": {
                "taskId": rec.id,
                "contextId": ctx,
                "status": status(rec, state, ev.ts, message),
                "metadata": meta,
            }})
        };
        match &ev.kind {
            EventKind::Start => {
                self.output_open = Some(false);
                vec![status_update(TaskState::Working, None)]
            }
            EventKind::Chunk(c) => {
                // The first chunk of a request is event 2 (right after `start`).
                let append = self.output_open.unwrap_or(ev.seq > 2);
                self.output_open = Some(true);
                vec![json!({ "artifactUpdate": {
                    "taskId": rec.id,
                    "contextId": ctx,
                    "artifact": {
                        "artifactId": OUTPUT_ARTIFACT,
                        "name": OUTPUT_ARTIFACT,
                        "parts": [a2a::value_part(parse(c))],
                    },
                    "append": append,
                    "lastChunk": false,
                    "metadata": meta,
                }})]
            }
            EventKind::Final(r) => vec![
                json!({ "artifactUpdate": {
                    "taskId": rec.id,
                    "contextId": ctx,
                    "artifact": {
                        "artifactId": RESULT_ARTIFACT,
                        "name": RESULT_ARTIFACT,
                        "parts": [a2a::value_part(parse(r))],
                    },
                    "append": false,
                    "lastChunk": true,
                    "metadata": meta,
                }}),
                status_update(TaskState::Completed, None),
            ],
            EventKind::Error(m) => vec![status_update(
                TaskState::Failed,
                Some(agent_message(rec, &format!("status-{}", ev.seq), m)),
            )],
            EventKind::Canceled(m) => vec![status_update(
                TaskState::Canceled,
                Some(agent_message(rec, &format!("status-{}", ev.seq), m)),
            )],
        }
    }
}

/// Integral floating-point numbers as integers, recursively. Protobuf-based clients (the
/// official SDKs) send every number of a data part as a double (`50.0`), which schemas that
/// ask for integers and agents that read integers would otherwise reject.
fn integral_numbers(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral_numbers).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, integral_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

fn schema_has_property(schema: &Value, name: &str) -> bool {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key(name))
}

/// The capability input a message's parts become:
/// - data parts: an object part's fields are the input (several are merged, later keys
///   win); a non-object data part goes under `data`;
/// - text parts (joined with newlines): `messages: [{role: "user", content}]` when the
///   capability's input schema declares `messages`, otherwise `text`;
/// - file parts (`url`/`raw`): a `files` array, only for capabilities that declare `files`
///   (others answer ContentTypeNotSupported).
pub fn message_to_input(message: &Value, input_schema: &Value) -> Result<Value, RpcError> {
    let parts = message
        .get("parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            RpcError::new(
                code::INVALID_PARAMS,
                "message.parts must be a non-empty array of parts",
            )
        })?;
    let mut input = Map::new();
    let mut texts = Vec::new();
    let mut files = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if let Some(t) = p.get("text") {
            let Some(t) = t.as_str() else {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    format!("message.parts[{i}].text must be a string"),
                ));
            };
            texts.push(t.to_string());
        } else if let Some(d) = p.get("data") {
            match integral_numbers(d.clone()) {
                Value::Object(m) => input.extend(m),
                other => {
                    input.insert("data".into(), other);
                }
            }
        } else if p.get("url").is_some() || p.get("raw").is_some() {
            let mut f = Map::new();
            for k in ["url", "raw", "mediaType", "filename"] {
                if let Some(v) = p.get(k) {
                    f.insert(k.into(), v.clone());
                }
            }
            files.push(Value::Object(f));
        } else {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("message.parts[{i}] has none of text, data, url or raw"),
            ));
        }
    }
    if !texts.is_empty() {
        let text = texts.join("\n");
        if schema_has_property(input_schema, "messages") {
            input
                .entry("messages")
                .or_insert_with(|| json!([{ "role": "user", "content": text }]));
        } else {
            input.entry("text").or_insert(Value::String(text));
        }
    }
    if !files.is_empty() {
        if schema_has_property(input_schema, "files") {
            input.insert("files".into(), Value::Array(files));
        } else {
            return Err(RpcError::new(
                code::CONTENT_TYPE_NOT_SUPPORTED,
                "this capability takes no files (its input schema declares no `files`); send text or data parts",
            ));
        }
    }
    Ok(Value::Object(input))
}

/// Whether a client that accepts `modes` can take what the hub produces (text and JSON).
pub fn output_modes_ok(modes: &[String]) -> bool {
    modes.is_empty()
        || modes.iter().any(|m| {
            let m = m.trim().to_ascii_lowercase();
            matches!(
                m.as_str(),
                "text/plain" | "application/json" | "text/*" | "application/*" | "*/*" | "text"
            )
        })
}

/// A stored push config as A2A 1.0 `TaskPushNotificationConfig`, the token and credentials
/// write-only (`***`, [`crate::redact`]): every answer (create, get, list) shows this view.
pub fn push_config_view(c: &crate::hub::push::PushConfig) -> Value {
    use crate::redact::redact_opt;
    let mut v = json!({ "id": c.id, "taskId": c.task_id, "url": c.url });
    if let Some(t) = redact_opt(c.token.as_deref()) {
        v["token"] = json!(t);
    }
    if let Some(s) = &c.auth_scheme {
        let mut a = json!({ "scheme": s });
        if let Some(cr) = redact_opt(c.auth_credentials.as_deref()) {
            a["credentials"] = json!(cr);
        }
        v["authentication"] = a;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: RequestState) -> RequestRecord {
        RequestRecord {
            id: "r1".into(),
            agent_id: "echo".into(),
            capability: "chat".into(),
            input: r#"{"text":"hi"}"#.into(),
            session_id: Some("s1".into()),
            parent_id: None,
            idempotency_key: None,
            principal: "p".into(),
            state,
            created_at: 0,
            started_at: Some(1),
            finished_at: Some(2),
            result: Some(r#"{"ok":true}"#.into()),
            error: Some("boom".into()),
            attempts: 1,
        }
    }

    fn ev(seq: u64, kind: EventKind) -> Event {
        Event {
            request_id: "r1".into(),
            seq,
            ts: 5,
            kind,
        }
    }

    #[test]
    fn messages_become_inputs() {
        let chat = json!({"type": "object", "properties": {"messages": {"type": "array"}}});
        let plain = json!({"type": "object"});
        let m = json!({"parts": [{"text": "a"}, {"text": "b"}, {"data": {"chunks": 2}}]});
        assert_eq!(
            message_to_input(&m, &chat).unwrap(),
            json!({"chunks": 2, "messages": [{"role": "user", "content": "a\nb"}]})
        );
        assert_eq!(
            message_to_input(&m, &plain).unwrap(),
            json!({"chunks": 2, "text": "a\nb"})
        );
        let n = json!({"parts": [{"data": {"chunks": 50.0, "x": [1.5, 2.0]}}]});
        assert_eq!(
            message_to_input(&n, &plain).unwrap(),
            json!({"chunks": 50, "x": [1.5, 2]})
        );
        let d = json!({"parts": [{"data": [1, 2]}]});
        assert_eq!(
            message_to_input(&d, &plain).unwrap(),
            json!({"data": [1, 2]})
        );
        let f = json!({"parts": [{"url": "http://x/f", "mediaType": "text/plain"}]});
        assert_eq!(
            message_to_input(&f, &plain).unwrap_err().code,
            code::CONTENT_TYPE_NOT_SUPPORTED
        );
        let files = json!({"type": "object", "properties": {"files": {}}});
        assert_eq!(
            message_to_input(&f, &files).unwrap(),
            json!({"files": [{"url": "http://x/f", "mediaType": "text/plain"}]})
        );
        for bad in [
            json!({}),
            json!({"parts": []}),
            json!({"parts": [{"x": 1}]}),
            json!({"parts": [{"text": 3}]}),
        ] {
            assert_eq!(
                message_to_input(&bad, &plain).unwrap_err().code,
                code::INVALID_PARAMS
            );
        }
    }

    #[test]
    fn tasks_render() {
        let r = rec(RequestState::Done);
        let events = vec![
            ev(1, EventKind::Start),
            ev(2, EventKind::Chunk("\"he\"".into())),
            ev(3, EventKind::Chunk("{\"n\":1}".into())),
            ev(4, EventKind::Final(r#"{"ok":true}"#.into())),
        ];
        let t = task_view(&r, Some(&events), vec![], None);
        assert_eq!(t["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(t["contextId"], "s1");
        assert_eq!(
            t["artifacts"][0]["parts"],
            json!([{"text": "he"}, {"data": {"n": 1}}])
        );
        assert_eq!(t["artifacts"][1]["parts"], json!([{"data": {"ok": true}}]));
        assert_eq!(t["history"][0]["parts"][0]["data"], json!({"text": "hi"}));
        let t = task_view(&r, None, vec![json!({"m": 1}), json!({"m": 2})], Some(1));
        assert_eq!(t["history"], json!([{"m": 2}]));
        assert!(t.get("artifacts").is_none());
        let t = task_view(&r, None, vec![json!({"m": 1})], Some(0));
        assert!(t.get("history").is_none());
        let failed = task_view(&rec(RequestState::Error), Some(&[]), vec![], None);
        assert_eq!(failed["status"]["state"], "TASK_STATE_FAILED");
        assert_eq!(failed["status"]["message"]["parts"][0]["text"], "boom");
    }

    /// For every cut of a log, the task at the cut plus the mapped updates after it rebuild
    /// the task at the end: artifacts exactly, state never going back. The log has a retry
    /// (a second `start`), whose first chunk replaces the first attempt's output.
    #[test]
    fn task_at_any_cut_plus_later_updates_is_the_whole_task() {
        let mut r = rec(RequestState::Running);
        r.finished_at = None;
        let log = vec![
            ev(1, EventKind::Start),
            ev(2, EventKind::Chunk("\"a\"".into())),
            ev(3, EventKind::Chunk("{\"n\":1}".into())),
            ev(4, EventKind::Start),
            ev(5, EventKind::Chunk("\"b\"".into())),
            ev(6, EventKind::Chunk("\"c\"".into())),
            ev(7, EventKind::Final("{\"ok\":true}".into())),
        ];
        let rank = |t: &Value| match t["state"].as_str().unwrap() {
            "TASK_STATE_SUBMITTED" => 0,
            "TASK_STATE_WORKING" => 1,
            _ => 2,
        };
        let end = task_at(&r, log.iter(), vec![]);
        assert_eq!(end["status"]["state"], "TASK_STATE_COMPLETED");
        assert_eq!(end["metadata"]["seq"], 7);
        assert_eq!(
            end["artifacts"],
            json!([
                {"artifactId": "output", "name": "output", "parts": [{"text": "b"}, {"text": "c"}]},
                {"artifactId": "result", "name": "result", "parts": [{"data": {"ok": true}}]},
            ])
        );
        for cut in 0..=log.len() {
            let (before, after) = log.split_at(cut);
            let start = task_at(&r, before.iter(), vec![]);
            assert_eq!(start["metadata"]["seq"], cut as u64);
            let mut arts: Vec<Value> = start["artifacts"].as_array().cloned().unwrap_or_default();
            let mut state = start["status"].clone();
            let mut m = StreamMapper::after(before.iter());
            for e in after {
                for sr in m.map(&r, e) {
                    if let Some(u) = sr.get("artifactUpdate") {
                        let a = &u["artifact"];
                        match arts.iter_mut().find(|x| x["artifactId"] == a["artifactId"]) {
                            Some(x) if u["append"] == true => x["parts"]
                                .as_array_mut()
                                .unwrap()
                                .extend(a["parts"].as_array().unwrap().iter().cloned()),
                            Some(x) => *x = a.clone(),
                            None => arts.push(a.clone()),
                        }
                    } else {
                        let next = sr["statusUpdate"]["status"].clone();
                        assert!(rank(&next) >= rank(&state), "cut {cut}: state went back");
                        state = next;
                    }
                }
            }
            assert_eq!(Value::Array(arts), end["artifacts"], "cut {cut}");
            assert_eq!(state["state"], end["status"]["state"], "cut {cut}");
        }
        // GetTask shows the same output: the last attempt's.
        let done = rec(RequestState::Done);
        assert_eq!(
            artifacts(&done, &log)[0]["parts"],
            end["artifacts"][0]["parts"]
        );
    }

    #[test]
    fn events_map_to_stream_responses() {
        let r = rec(RequestState::Done);
        let mut m = StreamMapper::new();
        let out: Vec<Value> = [
            ev(1, EventKind::Start),
            ev(2, EventKind::Chunk("\"a\"".into())),
            ev(3, EventKind::Chunk("\"b\"".into())),
            ev(4, EventKind::Final("\"ab\"".into())),
        ]
        .iter()
        .flat_map(|e| m.map(&r, e))
        .collect();
        assert_eq!(out.len(), 5);
        assert_eq!(
            out[0]["statusUpdate"]["status"]["state"],
            "TASK_STATE_WORKING"
        );
        assert_eq!(out[1]["artifactUpdate"]["append"], false);
        assert_eq!(out[2]["artifactUpdate"]["append"], true);
        assert_eq!(out[2]["artifactUpdate"]["metadata"]["seq"], 3);
        assert_eq!(out[3]["artifactUpdate"]["artifact"]["artifactId"], "result");
        assert_eq!(out[3]["artifactUpdate"]["lastChunk"], true);
        assert_eq!(
            out[4]["statusUpdate"]["status"]["state"],
            "TASK_STATE_COMPLETED"
        );
        let mut mid = StreamMapper::resuming(2);
        let o = mid.map(&r, &ev(3, EventKind::Chunk("\"b\"".into())));
        assert_eq!(o[0]["artifactUpdate"]["append"], true);
    }
}
