//! `a2a` agents: a hosted agent backed by a remote A2A agent.
//!
//! Per invocation: read the remote Agent Card (cached for a minute), pick its JSON-RPC
//! interface (1.0 preferred, 0.3 spoken when that is all the peer has), turn the input into a
//! user message, and run it:
//! - the card says it streams → `SendStreamingMessage` (0.3: `message/stream`); every part
//!   of every artifact update becomes a chunk, the terminal status ends the run;
//! - otherwise → `SendMessage` with `returnImmediately` (0.3: `blocking: false`) and `GetTask`
//!   polling; new artifact parts become chunks.
//!
//! Every request (the card, and the JSON-RPC endpoint the card names) goes through the hub's
//! egress policy ([`crate::net::egress`]): an agent whose card or endpoint is an internal address
//! fails with an error naming `A2A_EGRESS_ALLOWED_NETWORKS`, unless that lists its network.
//!
//! If a stream ends before the task does, the executor falls back to polling `GetTask`.
//! Cancel (or a timeout, or the future being dropped) sends `CancelTask` to the peer, so the
//! remote job really stops. 1.0 requests carry `A2A-Version: 1.0`.
//!
//! Input → message: a string is one text part; an object's `text` (or the contents of its
//! `messages`) becomes a text part and its other fields one data part; anything else is one
//! data part. The message metadata names the capability as the skill (`{"skillId": …}`; the
//! capabilities of an imported agent are the card's skills), which another a2a-mcp hub uses to
//! pick the capability (on an agent's URL) or the agent (on the hub's URL). The result is
//! `{remoteTaskId, text?, data?, artifacts, statusMessage?}` (or `{text?, data?, message}` when
//! the peer answers with a message instead of a task).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};

use super::{ExecContext, ExecError, Executor, OutputSink};
use crate::model::{A2aSpec, AgentSpec, Capability, ExecutorSpec, InterruptPolicy};
use crate::net::a2a_peer::{self, Peer};
use crate::net::egress::EgressPolicy;
use crate::net::http_client::{ClientError, HttpClient};
use crate::protocol::{Method, TaskState, Version, v03};

const DEFAULT_TIMEOUT_MS: u64 = 300_000;
const CARD_TTL: Duration = Duration::from_secs(60);
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_START: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(2);

pub struct A2aExecutor {
    spec: A2aSpec,
    http: HttpClient,
    peer: tokio::sync::Mutex<Option<(Instant, Peer)>>,
}

impl A2aExecutor {
    /// An executor for `spec` whose requests may only go where `policy` permits.
    pub fn new(spec: A2aSpec, policy: Arc<EgressPolicy>) -> Result<Self, String> {
        let http = HttpClient::new(&spec.headers, Some(policy))
            .map_err(|e| format!("executor.headers: {e}"))?;
        Ok(Self {
            spec,
            http,
            peer: tokio::sync::Mutex::new(None),
        })
    }

    async fn peer(&self) -> Result<Peer, ExecError> {
        let mut cached = self.peer.lock().await;
        if let Some((at, p)) = cached.as_ref()
            && at.elapsed() < CARD_TTL
        {
            return Ok(p.clone());
        }
        let (at, card) = a2a_peer::fetch_card(&self.http, &self.spec.url)
            .await
            .map_err(|e| ExecError::Failed(format!("cannot read the remote Agent Card: {e}")))?;
        let peer = Peer::from_card(&card, &at).map_err(ExecError::Failed)?;
        *cached = Some((Instant::now(), peer.clone()));
        Ok(peer)
    }

    async fn forget_peer(&self) {
        *self.peer.lock().await = None;
    }
}

/// The remote task of a run; cancels it when dropped while still armed.
struct RemoteTask {
    http: HttpClient,
    peer: Peer,
    id: Arc<Mutex<Option<String>>>,
    armed: bool,
}

impl RemoteTask {
    async fn cancel(&mut self) {
        self.armed = false;
        let id = self.id.lock().clone();
        if let Some(id) = id {
            cancel_remote(&self.http, &self.peer, &id).await;
        }
    }
}

impl Drop for RemoteTask {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Some(id) = self.id.lock().clone() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (http, peer) = (self.http.clone(), self.peer.clone());
            rt.spawn(async move { cancel_remote(&http, &peer, &id).await });
        }
    }
}

async fn cancel_remote(http: &HttpClient, peer: &Peer, task_id: &str) {
    let params = json!({ "id": task_id });
    match tokio::time::timeout(
        CANCEL_TIMEOUT,
        a2a_peer::call(http, peer, Method::CancelTask, params),
    )
    .await
    {
        Ok(Ok(_)) => tracing::debug!(remote_task = %task_id, "remote task canceled"),
        Ok(Err(ClientError::Rpc { code, .. }))
            if code == crate::protocol::code::TASK_NOT_CANCELABLE =>
        {
            tracing::debug!(remote_task = %task_id, "remote task had already finished")
        }
        Ok(Err(e)) => {
            tracing::warn!(remote_task = %task_id, "canceling the remote task failed: {e}")
        }
        Err(_) => tracing::warn!(remote_task = %task_id, "canceling the remote task timed out"),
    }
}

#[async_trait]
impl Executor for A2aExecutor {
    async fn run(
        &self,
        ctx: ExecContext,
        input: Value,
        out: OutputSink,
    ) -> Result<Value, ExecError> {
        let timeout_ms = self.spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let peer = tokio::select! {
            p = self.peer() => p?,
            _ = ctx.cancel.cancelled() => return Err(ExecError::Canceled),
            _ = tokio::time::sleep_until(deadline) => return Err(ExecError::Timeout(timeout_ms)),
        };
        // The remote agent joins the job's trace (W3C trace context).
        let http = match &ctx.traceparent {
            Some(tp) => self.http.with_header("traceparent", tp),
            None => self.http.clone(),
        };
        let mut remote = RemoteTask {
            http: http.clone(),
            peer: peer.clone(),
            id: Arc::new(Mutex::new(None)),
            armed: true,
        };
        let message = input_to_message(&ctx, &input);
        let mut tracker = Tracker::new(remote.id.clone());
        let result = tokio::select! {
            r = drive(&http, &peer, message, &mut tracker, &out) => r,
            _ = ctx.cancel.cancelled() => {
                remote.cancel().await;
                return Err(ExecError::Canceled);
            }
            _ = tokio::time::sleep_until(deadline) => {
                remote.cancel().await;
                return Err(ExecError::Timeout(timeout_ms));
            }
        };
        match &result {
            // A failed call may mean the card moved; read it again next time.
            Err(ExecError::Failed(_)) if tracker.task_id().is_none() => self.forget_peer().await,
            _ => {}
        }
        if tracker.finished {
            remote.armed = false;
        }
        result
    }
}

/// Runs one message to the end: streaming when the peer streams, else send + poll.
async fn drive(
    http: &HttpClient,
    peer: &Peer,
    message: Value,
    tracker: &mut Tracker,
    out: &OutputSink,
) -> Result<Value, ExecError> {
    let remote_err = |e: ClientError| ExecError::Failed(format!("{}: {e}", peer.name));
    if peer.streaming {
        let params = send_params(peer, &message, false);
        let mut stream = a2a_peer::call_stream(http, peer, Method::SendStreamingMessage, params)
            .await
            .map_err(remote_err)?;
        while let Some(item) = stream.next().await {
            match item {
                Ok(result) => {
                    let sr = a2a_peer::normalize_result(peer, &result);
                    if let Some(done) = tracker.apply(&sr, out).await {
                        return done;
                    }
                }
                // The stream broke after the task started: fall back to polling.
                Err(ClientError::Transport(e)) if tracker.task_id().is_some() => {
                    tracing::warn!("{e}; following the remote task by polling");
                    break;
                }
                Err(e) => return Err(remote_err(e)),
            }
        }
        if tracker.task_id().is_none() {
            return Err(ExecError::Failed(format!(
                "{}: the event stream ended before the remote agent created a task or answered",
                peer.name
            )));
        }
    } else {
        let params = send_params(peer, &message, true);
        let result = a2a_peer::call(http, peer, Method::SendMessage, params)
            .await
            .map_err(remote_err)?;
        let sr = match peer.version {
            Version::V10 => result,
            Version::V03 => v03::stream_response_from_v03(&result),
        };
        if let Some(done) = tracker.apply(&sr, out).await {
            return done;
        }
        if tracker.task_id().is_none() {
            return Err(ExecError::Failed(format!(
                "{}: the answer to SendMessage was neither a task nor a message",
                peer.name
            )));
        }
    }
    poll(http, peer, tracker, out).await
}

/// Follows a remote task with `GetTask` until it ends.
async fn poll(
    http: &HttpClient,
    peer: &Peer,
    tracker: &mut Tracker,
    out: &OutputSink,
) -> Result<Value, ExecError> {
    let Some(id) = tracker.task_id() else {
        return Err(ExecError::Failed("no remote task to follow".into()));
    };
    let mut wait = POLL_START;
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 3 / 2).min(POLL_MAX);
        let task = a2a_peer::call(
            http,
            peer,
            Method::GetTask,
            json!({ "id": id, "historyLength": 0 }),
        )
        .await
        .map_err(|e| ExecError::Failed(format!("{}: {e}", peer.name)))?;
        let task = match peer.version {
            Version::V10 => task,
            Version::V03 => v03::task_from_v03(&task),
        };
        if let Some(done) = tracker.apply(&json!({ "task": task }), out).await {
            return done;
        }
    }
}

fn send_params(peer: &Peer, message: &Value, immediate: bool) -> Value {
    match peer.version {
        Version::V10 => {
            let mut p = json!({ "message": message });
            if immediate {
                p["configuration"] = json!({ "returnImmediately": true });
            }
            p
        }
        Version::V03 => {
            let mut p = json!({ "message": v03::message_to_v03(message) });
            if immediate {
                p["configuration"] = json!({ "blocking": false });
            }
            p
        }
    }
}

/// The user message an input becomes (1.0 shape).
pub fn input_to_message(ctx: &ExecContext, input: &Value) -> Value {
    let mut parts = Vec::new();
    match input {
        Value::String(s) => parts.push(crate::protocol::text_part(s.clone())),
        Value::Object(m) => {
            let mut rest = m.clone();
            if let Some(Value::String(t)) = m.get("text") {
                parts.push(crate::protocol::text_part(t.clone()));
                rest.remove("text");
            } else if let Some(Value::Array(msgs)) = m.get("messages") {
                let text = msgs
                    .iter()
                    .filter_map(|msg| match msg.get("content") {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(Value::Null) | None => None,
                        Some(other) => Some(other.to_string()),
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                parts.push(crate::protocol::text_part(text));
                rest.remove("messages");
            }
            if !rest.is_empty() || parts.is_empty() {
                parts.push(crate::protocol::data_part(Value::Object(rest)));
            }
        }
        other => parts.push(crate::protocol::data_part(other.clone())),
    }
    json!({
        "messageId": format!("{}-{}", ctx.request_id, ctx.attempt),
        "role": "ROLE_USER",
        "parts": parts,
        "metadata": { "skillId": ctx.capability },
    })
}

/// The chunk one artifact part becomes: text → string, data → its JSON, others → the part.
fn part_chunk(part: &Value) -> Value {
    if let Some(t) = part.get("text").and_then(Value::as_str) {
        return Value::String(t.to_string());
    }
    if let Some(d) = part.get("data") {
        return d.clone();
    }
    part.clone()
}

/// Accumulates a remote task's state from stream events or snapshots.
struct Tracker {
    task_id: Arc<Mutex<Option<String>>>,
    /// Artifacts in order of first appearance: (artifact JSON without parts, parts).
    artifacts: Vec<(String, Map<String, Value>, Vec<Value>)>,
    status_message: Option<String>,
    finished: bool,
}

impl Tracker {
    fn new(task_id: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            task_id,
            artifacts: Vec::new(),
            status_message: None,
            finished: false,
        }
    }

    fn task_id(&self) -> Option<String> {
        self.task_id.lock().clone()
    }

    fn set_task_id(&self, id: Option<&str>) {
        if let Some(id) = id {
            let mut g = self.task_id.lock();
            if g.is_none() {
                *g = Some(id.to_string());
            }
        }
    }

    fn artifact_slot(&mut self, a: &Value) -> usize {
        let id = a
            .get("artifactId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(i) = self.artifacts.iter().position(|(x, _, _)| *x == id) {
            return i;
        }
        let mut meta = a.as_object().cloned().unwrap_or_default();
        meta.remove("parts");
        self.artifacts.push((id, meta, Vec::new()));
        self.artifacts.len() - 1
    }

    /// Applies one StreamResponse (1.0 shape). Returns the run's outcome once known.
    async fn apply(&mut self, sr: &Value, out: &OutputSink) -> Option<Result<Value, ExecError>> {
        if let Some(task) = sr.get("task") {
            self.set_task_id(task.get("id").and_then(Value::as_str));
            // A snapshot: emit the parts not seen yet.
            for a in task
                .get("artifacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let i = self.artifact_slot(a);
                let parts = a
                    .get("parts")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let seen = self.artifacts[i].2.len();
                for p in parts.into_iter().skip(seen) {
                    if !out.chunk(part_chunk(&p)).await {
                        return Some(Err(ExecError::Canceled));
                    }
                    self.artifacts[i].2.push(p);
                }
            }
            return self.status(task.get("status"));
        }
        if let Some(msg) = sr.get("message") {
            self.finished = true;
            let parts = msg.get("parts").cloned().unwrap_or(json!([]));
            let mut result = summarize(parts.as_array().map(Vec::as_slice).unwrap_or(&[]));
            result.insert("message".into(), msg.clone());
            return Some(Ok(Value::Object(result)));
        }
        if let Some(su) = sr.get("statusUpdate") {
            self.set_task_id(su.get("taskId").and_then(Value::as_str));
            return self.status(su.get("status"));
        }
        if let Some(au) = sr.get("artifactUpdate") {
            self.set_task_id(au.get("taskId").and_then(Value::as_str));
            let a = au.get("artifact")?;
            let i = self.artifact_slot(a);
            if !au.get("append").and_then(Value::as_bool).unwrap_or(false) {
                self.artifacts[i].2.clear();
            }
            for p in a
                .get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !out.chunk(part_chunk(p)).await {
                    return Some(Err(ExecError::Canceled));
                }
                self.artifacts[i].2.push(p.clone());
            }
            return None;
        }
        None
    }

    fn status(&mut self, status: Option<&Value>) -> Option<Result<Value, ExecError>> {
        let status = status?;
        let text = crate::protocol::parts_text(status.pointer("/message/parts"));
        if !text.is_empty() {
            self.status_message = Some(text);
        }
        let state = status
            .get("state")
            .and_then(Value::as_str)
            .and_then(TaskState::parse)?;
        let why = || {
            self.status_message
                .clone()
                .unwrap_or_else(|| "no message".to_string())
        };
        match state {
            TaskState::Completed => {
                self.finished = true;
                Some(Ok(self.result()))
            }
            TaskState::Failed => {
                self.finished = true;
                Some(Err(ExecError::Failed(format!(
                    "the remote agent failed the task: {}",
                    why()
                ))))
            }
            TaskState::Rejected => {
                self.finished = true;
                Some(Err(ExecError::Failed(format!(
                    "the remote agent rejected the task: {}",
                    why()
                ))))
            }
            TaskState::Canceled => {
                self.finished = true;
                Some(Err(ExecError::Canceled))
            }
            TaskState::InputRequired | TaskState::AuthRequired => {
                Some(Err(ExecError::Failed(format!(
                    "the remote agent asked for {} ({}); a hosted a2a agent cannot continue a conversation, so the request ends here",
                    if state == TaskState::InputRequired {
                        "more input"
                    } else {
                        "authentication"
                    },
                    why()
                ))))
            }
            TaskState::Submitted | TaskState::Working | TaskState::Unspecified => None,
        }
    }

    fn result(&self) -> Value {
        let all_parts: Vec<Value> = self
            .artifacts
            .iter()
            .flat_map(|(_, _, p)| p.iter().cloned())
            .collect();
        let mut m = summarize(&all_parts);
        if let Some(id) = self.task_id() {
            m.insert("remoteTaskId".into(), Value::String(id));
        }
        let artifacts: Vec<Value> = self
            .artifacts
            .iter()
            .map(|(_, meta, parts)| {
                let mut a = meta.clone();
                a.insert("parts".into(), Value::Array(parts.clone()));
                Value::Object(a)
            })
            .collect();
        m.insert("artifacts".into(), Value::Array(artifacts));
        if let Some(s) = &self.status_message {
            m.insert("statusMessage".into(), Value::String(s.clone()));
        }
        Value::Object(m)
    }
}

/// `{text?, data?}` of a list of parts: the text parts concatenated, the data values listed.
fn summarize(parts: &[Value]) -> Map<String, Value> {
    let mut m = Map::new();
    let text: String = parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if parts.iter().any(|p| p.get("text").is_some()) {
        m.insert("text".into(), Value::String(text));
    }
    let data: Vec<Value> = parts
        .iter()
        .filter_map(|p| p.get("data").cloned())
        .collect();
    if !data.is_empty() {
        m.insert("data".into(), Value::Array(data));
    }
    m
}

// ---------------------------------------------------------------------------------------------
// Card import

/// An agent id derived from a card's name: lower-case, `[a-z0-9._-]`, at most 64 characters.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_') {
            c
        } else {
            '-'
        };
        if c == '-' && (s.is_empty() || s.ends_with('-')) {
            continue;
        }
        s.push(c);
    }
    let s: String = s
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .chars()
        .take(64)
        .collect();
    let s = s
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if s.is_empty() {
        "remote-agent".to_string()
    } else {
        s
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The input schema of an imported skill: open, with the two fields the message mapping
/// understands documented.
fn imported_input_schema() -> Value {
    json!({
        "type": "object",
        "description": "`text` (or the contents of `messages`) becomes the text part of the A2A message; any other fields travel as one data part.",
        "properties": {
            "text": {"type": "string"},
            "messages": {"type": "array"}
        }
    })
}

/// The hosted-agent definition of a remote Agent Card: one capability per skill (a card
/// without skills gets one `default` capability), executor `a2a` pointing at the card.
pub fn spec_from_card(card: &Value, card_at: &str, id: Option<&str>) -> Result<AgentSpec, String> {
    Peer::from_card(card, card_at)?;
    let name = str_of(card, "name");
    let id = match id {
        Some(i) => i.to_string(),
        None => slug(name),
    };
    let mut caps: Vec<Capability> = Vec::new();
    let mut tags: Vec<String> = vec!["a2a".to_string()];
    for skill in card
        .get("skills")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let sid: String = str_of(skill, "id").chars().take(64).collect();
        let sid = if sid.is_empty() {
            slug(str_of(skill, "name"))
        } else {
            sid
        };
        if caps.iter().any(|c| c.name == sid) {
            continue;
        }
        let mut description = str_of(skill, "description").to_string();
        let sname = str_of(skill, "name");
        if !sname.is_empty() && sname != sid {
            description = if description.is_empty() {
                sname.to_string()
            } else {
                format!("{sname}: {description}")
            };
        }
        for t in skill
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !tags.iter().any(|x| x == t) && tags.len() < 32 {
                tags.push(t.to_string());
            }
        }
        caps.push(Capability {
            name: sid,
            description,
            input_schema: imported_input_schema(),
            output_schema: None,
        });
    }
    if caps.is_empty() {
        caps.push(Capability {
            name: "default".into(),
            description: format!(
                "Send a message to {}",
                if name.is_empty() {
                    "the remote agent"
                } else {
                    name
                }
            ),
            input_schema: imported_input_schema(),
            output_schema: None,
        });
    }
    let spec = AgentSpec {
        id,
        name: name.to_string(),
        version: match str_of(card, "version") {
            "" => "1.0.0".to_string(),
            v => v.to_string(),
        },
        description: str_of(card, "description").to_string(),
        category: "a2a".into(),
        tags,
        enabled: true,
        max_concurrency: None,
        interrupt: InterruptPolicy::Fail,
        capabilities: caps,
        executor: ExecutorSpec::A2a(A2aSpec {
            url: card_at.to_string(),
            timeout_ms: None,
            headers: Default::default(),
        }),
    };
    spec.validate().map_err(|e| e.message)?;
    Ok(spec)
}

/// Reads the card at `url` (only where `policy` permits, redirects within its origin) and
/// builds the hosted-agent definition for it. Errors name the URL and the HTTP status or
/// the refusal, never what the remote sent.
pub async fn import_card(
    url: &str,
    id: Option<&str>,
    policy: Arc<EgressPolicy>,
) -> Result<AgentSpec, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("{url:?} is not a valid http:// or https:// URL"))?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
        return Err(format!(
            "the Agent Card URL must be an absolute http:// or https:// URL, got {url:?}"
        ));
    }
    policy
        .check_url_resolved(&uri)
        .await
        .map_err(|e| format!("cannot read the Agent Card: {e}"))?;
    let http = HttpClient::new(&Default::default(), Some(policy))?;
    let (at, card) =
        tokio::time::timeout(Duration::from_secs(30), a2a_peer::fetch_card(&http, url))
            .await
            .map_err(|_| format!("reading the Agent Card at {url} timed out"))?
            .map_err(|e| format!("cannot read the Agent Card: {e}"))?;
    spec_from_card(&card, &at, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ExecContext {
        ExecContext {
            request_id: "r".into(),
            agent_id: "a".into(),
            capability: "chat".into(),
            session_id: None,
            parent_id: None,
            attempt: 1,
            cancel: Default::default(),
            callback: None,
            traceparent: None,
        }
    }

    #[test]
    fn inputs_become_messages() {
        let m = input_to_message(&ctx(), &json!({"text": "hi", "n": 1}));
        assert_eq!(m["parts"], json!([{"text": "hi"}, {"data": {"n": 1}}]));
        assert_eq!(m["messageId"], "r-1");
        assert_eq!(m["metadata"]["skillId"], "chat");
        let m = input_to_message(
            &ctx(),
            &json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
        );
        assert_eq!(m["parts"], json!([{"text": "a\nb"}]));
        let m = input_to_message(&ctx(), &json!({"x": [1]}));
        assert_eq!(m["parts"], json!([{"data": {"x": [1]}}]));
        let m = input_to_message(&ctx(), &json!("plain"));
        assert_eq!(m["parts"], json!([{"text": "plain"}]));
        let m = input_to_message(&ctx(), &json!({}));
        assert_eq!(m["parts"], json!([{"data": {}}]));
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Remote test agent"), "remote-test-agent");
        assert_eq!(slug("  --Hello, World!! v2.0 "), "hello-world-v2.0");
        assert_eq!(slug("***"), "remote-agent");
        assert_eq!(slug(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn cards_become_specs() {
        let card = json!({
            "name": "Weather Bot", "description": "d", "version": "2.0.0",
            "capabilities": {"streaming": true},
            "supportedInterfaces": [{"url": "http://w/rpc", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}],
            "skills": [
                {"id": "forecast", "name": "Forecast", "description": "f", "tags": ["weather"]},
                {"id": "forecast", "name": "dup", "description": "", "tags": []},
                {"id": "", "name": "Radar Maps", "description": "", "tags": []}
            ]
        });
        let spec = spec_from_card(&card, "http://w/.well-known/agent-card.json", None).unwrap();
        assert_eq!(spec.id, "weather-bot");
        assert_eq!(spec.version, "2.0.0");
        let names: Vec<_> = spec.capabilities.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["forecast", "radar-maps"]);
        assert_eq!(spec.capabilities[0].description, "Forecast: f");
        assert!(spec.tags.contains(&"weather".to_string()));
        assert!(
            matches!(spec.executor, ExecutorSpec::A2a(ref a) if a.url == "http://w/.well-known/agent-card.json")
        );
        let bare = json!({"name": "x", "url": "http://x/rpc"});
        let spec = spec_from_card(&bare, "http://x/card.json", Some("mine")).unwrap();
        assert_eq!(spec.id, "mine");
        assert_eq!(spec.capabilities[0].name, "default");
        assert!(spec_from_card(&json!({"name": "n"}), "c", None).is_err());
    }
}
