//! Conversions between the A2A 1.0 JSON shapes (canonical here) and the 0.3 ones.
//!
//! 0.3 differs by: a `kind` discriminator on messages, tasks, parts and stream events;
//! lowercase roles (`user`/`agent`) and states (`input-required`); parts as
//! `{kind:"text",text}` / `{kind:"data",data:{…}}` / `{kind:"file",file:{uri|bytes,mimeType,name}}`
//! (0.3 data must be an object: other values travel as `{"value": …}`); stream events as bare
//! objects with `final` on the last status; push configs nested under
//! `pushNotificationConfig` with `authentication.schemes[]`.
//!
//! Conversions are lenient: unknown fields are carried over, missing ones stay missing, and
//! an input already in the target shape passes through unchanged.

use serde_json::{Map, Value, json};

use super::TaskState;

fn obj(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn map_array(v: Option<&Value>, f: fn(&Value) -> Value) -> Option<Value> {
    v.and_then(Value::as_array)
        .map(|a| Value::Array(a.iter().map(f).collect()))
}

// ---------------------------------------------------------------------------------------------
// Parts

pub fn part_to_v03(p: &Value) -> Value {
    let mut m = obj(p);
    if m.contains_key("kind") {
        return p.clone();
    }
    let media = m.remove("mediaType");
    let filename = m.remove("filename");
    if let Some(text) = m.remove("text") {
        m.insert("kind".into(), json!("text"));
        m.insert("text".into(), text);
    } else if let Some(data) = m.remove("data") {
        m.insert("kind".into(), json!("data"));
        let data = if data.is_object() {
            data
        } else {
            json!({ "value": data })
        };
        m.insert("data".into(), data);
    } else {
        let mut file = Map::new();
        if let Some(url) = m.remove("url") {
            file.insert("uri".into(), url);
        }
        if let Some(raw) = m.remove("raw") {
            file.insert("bytes".into(), raw);
        }
        if let Some(mt) = media {
            file.insert("mimeType".into(), mt);
        }
        if let Some(name) = filename {
            file.insert("name".into(), name);
        }
        m.insert("kind".into(), json!("file"));
        m.insert("file".into(), Value::Object(file));
        return Value::Object(m);
    }
    if let Some(mt) = media {
        m.entry("metadata")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|md| md.insert("mediaType".into(), mt));
    }
    Value::Object(m)
}

pub fn part_from_v03(p: &Value) -> Value {
    let mut m = obj(p);
    let kind = m.remove("kind");
    match kind.as_ref().and_then(Value::as_str) {
        Some("file") => {
            let file = m.remove("file").map(|f| obj(&f)).unwrap_or_default();
            if let Some(uri) = file.get("uri") {
                m.insert("url".into(), uri.clone());
            }
            if let Some(bytes) = file.get("bytes") {
                m.insert("raw".into(), bytes.clone());
            }
            if let Some(mt) = file.get("mimeType") {
                m.insert("mediaType".into(), mt.clone());
            }
            if let Some(name) = file.get("name") {
                m.insert("filename".into(), name.clone());
            }
            Value::Object(m)
        }
        _ => Value::Object(m),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages, statuses, artifacts, tasks

fn role_to_v03(r: &Value) -> Value {
    match r.as_str() {
        Some("ROLE_USER") => json!("user"),
        Some("ROLE_AGENT") => json!("agent"),
        _ => r.clone(),
    }
}

fn role_from_v03(r: &Value) -> Value {
    match r.as_str() {
        Some("user") => json!("ROLE_USER"),
        Some("agent") => json!("ROLE_AGENT"),
        _ => r.clone(),
    }
}

pub fn message_to_v03(msg: &Value) -> Value {
    let mut m = obj(msg);
    m.insert("kind".into(), json!("message"));
    if let Some(r) = m.get("role") {
        let r = role_to_v03(r);
        m.insert("role".into(), r);
    }
    if let Some(p) = map_array(m.get("parts"), part_to_v03) {
        m.insert("parts".into(), p);
    }
    Value::Object(m)
}

pub fn message_from_v03(msg: &Value) -> Value {
    let mut m = obj(msg);
    m.remove("kind");
    if let Some(r) = m.get("role") {
        let r = role_from_v03(r);
        m.insert("role".into(), r);
    }
    if let Some(p) = map_array(m.get("parts"), part_from_v03) {
        m.insert("parts".into(), p);
    }
    Value::Object(m)
}

pub fn status_to_v03(status: &Value) -> Value {
    let mut m = obj(status);
    if let Some(s) = m
        .get("state")
        .and_then(Value::as_str)
        .and_then(TaskState::parse)
    {
        m.insert("state".into(), json!(s.v03()));
    }
    if let Some(msg) = m.get("message") {
        let msg = message_to_v03(msg);
        m.insert("message".into(), msg);
    }
    Value::Object(m)
}

pub fn status_from_v03(status: &Value) -> Value {
    let mut m = obj(status);
    if let Some(s) = m
        .get("state")
        .and_then(Value::as_str)
        .and_then(TaskState::parse)
    {
        m.insert("state".into(), json!(s.v10()));
    }
    if let Some(msg) = m.get("message") {
        let msg = message_from_v03(msg);
        m.insert("message".into(), msg);
    }
    Value::Object(m)
}

pub fn artifact_to_v03(a: &Value) -> Value {
    let mut m = obj(a);
    if let Some(p) = map_array(m.get("parts"), part_to_v03) {
        m.insert("parts".into(), p);
    }
    Value::Object(m)
}

pub fn artifact_from_v03(a: &Value) -> Value {
    let mut m = obj(a);
    if let Some(p) = map_array(m.get("parts"), part_from_v03) {
        m.insert("parts".into(), p);
    }
    Value::Object(m)
}

pub fn task_to_v03(task: &Value) -> Value {
    let mut m = obj(task);
    m.insert("kind".into(), json!("task"));
    if let Some(s) = m.get("status") {
        let s = status_to_v03(s);
        m.insert("status".into(), s);
    }
    if let Some(a) = map_array(m.get("artifacts"), artifact_to_v03) {
        m.insert("artifacts".into(), a);
    }
    if let Some(h) = map_array(m.get("history"), message_to_v03) {
        m.insert("history".into(), h);
    }
    Value::Object(m)
}

pub fn task_from_v03(task: &Value) -> Value {
    let mut m = obj(task);
    m.remove("kind");
    if let Some(s) = m.get("status") {
        let s = status_from_v03(s);
        m.insert("status".into(), s);
    }
    if let Some(a) = map_array(m.get("artifacts"), artifact_from_v03) {
        m.insert("artifacts".into(), a);
    }
    if let Some(h) = map_array(m.get("history"), message_from_v03) {
        m.insert("history".into(), h);
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Stream events and send results

/// A 1.0 StreamResponse (`{task}|{message}|{statusUpdate}|{artifactUpdate}`) as the bare 0.3
/// event object.
pub fn stream_response_to_v03(sr: &Value) -> Value {
    if let Some(t) = sr.get("task") {
        return task_to_v03(t);
    }
    if let Some(msg) = sr.get("message") {
        return message_to_v03(msg);
    }
    if let Some(su) = sr.get("statusUpdate") {
        let mut m = obj(su);
        m.insert("kind".into(), json!("status-update"));
        let state = m
            .get("status")
            .and_then(|s| s.get("state"))
            .and_then(Value::as_str)
            .and_then(TaskState::parse);
        if let Some(s) = m.get("status") {
            let s = status_to_v03(s);
            m.insert("status".into(), s);
        }
        let fin = state.is_some_and(|s| s.is_terminal() || s.is_interrupted());
        m.insert("final".into(), json!(fin));
        return Value::Object(m);
    }
    if let Some(au) = sr.get("artifactUpdate") {
        let mut m = obj(au);
        m.insert("kind".into(), json!("artifact-update"));
        if let Some(a) = m.get("artifact") {
            let a = artifact_to_v03(a);
            m.insert("artifact".into(), a);
        }
        m.entry("append").or_insert(json!(false));
        m.entry("lastChunk").or_insert(json!(false));
        return Value::Object(m);
    }
    sr.clone()
}

/// A 0.3 result object (task, message or event, told apart by `kind`) as a 1.0
/// StreamResponse. An object that is already a 1.0 StreamResponse passes through.
pub fn stream_response_from_v03(r: &Value) -> Value {
    match r.get("kind").and_then(Value::as_str) {
        Some("task") => json!({ "task": task_from_v03(r) }),
        Some("message") => json!({ "message": message_from_v03(r) }),
        Some("status-update") => {
            let mut m = obj(r);
            m.remove("kind");
            m.remove("final");
            if let Some(s) = m.get("status") {
                let s = status_from_v03(s);
                m.insert("status".into(), s);
            }
            json!({ "statusUpdate": Value::Object(m) })
        }
        Some("artifact-update") => {
            let mut m = obj(r);
            m.remove("kind");
            if let Some(a) = m.get("artifact") {
                let a = artifact_from_v03(a);
                m.insert("artifact".into(), a);
            }
            json!({ "artifactUpdate": Value::Object(m) })
        }
        _ => r.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Push notification configs

/// 1.0 `TaskPushNotificationConfig {id, taskId, url, token, authentication{scheme,
/// credentials}}` as 0.3 `{taskId, pushNotificationConfig {id, url, token,
/// authentication{schemes[], credentials}}}`.
pub fn push_config_to_v03(cfg: &Value) -> Value {
    let mut inner = obj(cfg);
    let task_id = inner.remove("taskId").unwrap_or(Value::Null);
    inner.remove("tenant");
    if let Some(auth) = inner.remove("authentication") {
        let mut a = obj(&auth);
        if let Some(s) = a.remove("scheme") {
            a.insert("schemes".into(), json!([s]));
        }
        inner.insert("authentication".into(), Value::Object(a));
    }
    json!({ "taskId": task_id, "pushNotificationConfig": Value::Object(inner) })
}

/// The 1.0 shape of a 0.3 `TaskPushNotificationConfig` (or of a bare 0.3
/// `PushNotificationConfig` plus the task id given separately).
pub fn push_config_from_v03(cfg: &Value, task_id: Option<&str>) -> Value {
    let mut out = match cfg.get("pushNotificationConfig") {
        Some(inner) => obj(inner),
        None => obj(cfg),
    };
    let tid = cfg
        .get("taskId")
        .cloned()
        .or_else(|| task_id.map(|t| json!(t)));
    if let Some(t) = tid {
        out.insert("taskId".into(), t);
    }
    if let Some(auth) = out.remove("authentication") {
        let mut a = obj(&auth);
        if let Some(first) = a
            .remove("schemes")
            .and_then(|s| s.as_array().and_then(|x| x.first().cloned()))
        {
            a.insert("scheme".into(), first);
        }
        out.insert("authentication".into(), Value::Object(a));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        for p in [
            json!({"text": "hi"}),
            json!({"data": {"a": 1}}),
            json!({"url": "http://x/y", "mediaType": "text/plain", "filename": "y"}),
            json!({"raw": "aGk=", "filename": "h"}),
        ] {
            assert_eq!(part_from_v03(&part_to_v03(&p)), p, "{p}");
        }
        assert_eq!(
            part_to_v03(&json!({"data": [1, 2]})),
            json!({"kind": "data", "data": {"value": [1, 2]}})
        );
        assert_eq!(
            part_to_v03(&json!({"url": "u"})),
            json!({"kind": "file", "file": {"uri": "u"}})
        );
    }

    #[test]
    fn tasks_and_events_convert() {
        let task = json!({
            "id": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_INPUT_REQUIRED",
                       "message": {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "?"}]}},
            "history": [{"messageId": "u", "role": "ROLE_USER", "parts": [{"text": "hi"}]}],
            "artifacts": [{"artifactId": "a", "parts": [{"data": {"x": 1}}]}]
        });
        let old = task_to_v03(&task);
        assert_eq!(old["kind"], "task");
        assert_eq!(old["status"]["state"], "input-required");
        assert_eq!(old["status"]["message"]["role"], "agent");
        assert_eq!(old["history"][0]["parts"][0]["kind"], "text");
        assert_eq!(task_from_v03(&old), task);

        let su = json!({"statusUpdate": {"taskId": "t", "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED"}}});
        let ev = stream_response_to_v03(&su);
        assert_eq!(ev["kind"], "status-update");
        assert_eq!(ev["final"], true);
        assert_eq!(stream_response_from_v03(&ev), su);

        let au = json!({"artifactUpdate": {"taskId": "t", "contextId": "c",
            "artifact": {"artifactId": "a", "parts": [{"text": "x"}]}, "append": true, "lastChunk": false}});
        let ev = stream_response_to_v03(&au);
        assert_eq!(ev["kind"], "artifact-update");
        assert_eq!(ev["artifact"]["parts"][0]["kind"], "text");
        assert_eq!(stream_response_from_v03(&ev), au);
    }

    #[test]
    fn push_configs_convert() {
        let cfg = json!({"id": "p", "taskId": "t", "url": "http://h/", "token": "k",
                         "authentication": {"scheme": "Bearer", "credentials": "c"}});
        let old = push_config_to_v03(&cfg);
        assert_eq!(
            old["pushNotificationConfig"]["authentication"]["schemes"][0],
            "Bearer"
        );
        assert_eq!(push_config_from_v03(&old, None), cfg);
        let bare = json!({"url": "http://h/"});
        assert_eq!(
            push_config_from_v03(&bare, Some("t")),
            json!({"url": "http://h/", "taskId": "t"})
        );
    }
}
