//! Agent definitions as MCP clients send them, turned into the hub's [`AgentSpec`].
//!
//! One shape is printed (`describe_agent`: camelCase field names, capabilities with
//! `inputSchema`/`outputSchema`, the full definition under `definition`) and every shape
//! below is accepted by `deploy_agent` and `agent_control`:
//!
//! - a catalog definition (snake_case names, as in the TOML files and `definition`);
//! - the same with camelCase names (`inputSchema`, `maxConcurrency`, `timeoutMs`, …);
//! - what `describe_agent` printed, as it is: `definition` gives the base, the other fields
//!   (edited or not) replace its fields; `source` is ignored and `executor` may be the kind
//!   name the view shows;
//! - the original server's descriptor (`id`, `name`, `version`, `capabilities`, `tags`,
//!   `category`, `enabled`, `deployedAt`, `config`): `deployedAt` is set by the hub, and the
//!   executor (which that server did not have) is `executor` or `config.executor`.
//!
//! Only the names of the definition's own fields, its capabilities' and its executor's are
//! converted; JSON Schemas, `env` and `headers` are data and are kept as they are.

use serde_json::{Map, Value};

use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::AgentSpec;

/// The [`AgentSpec`] an `agent` argument describes.
pub fn agent_spec(agent: Map<String, Value>) -> HubResult<AgentSpec> {
    let doc = definition(agent)?;
    serde_json::from_value::<AgentSpec>(Value::Object(doc)).map_err(|e| {
        HubError::new(
            ErrorCode::InvalidParams,
            format!("`agent` is not a valid agent definition: {e}"),
        )
    })
}

/// A merge patch for `update_agent`, with camelCase names converted like a definition's.
pub fn normalize_patch(patch: Map<String, Value>) -> Value {
    Value::Object(snake_definition(patch))
}

fn definition(mut agent: Map<String, Value>) -> HubResult<Map<String, Value>> {
    // The original server's fields: the hub sets the deployment time itself.
    agent.remove("deployedAt");
    agent.remove("deployed_at");
    if let Some(config) = agent.remove("config") {
        take_config(&mut agent, config)?;
    }
    let base = match agent.remove("definition") {
        Some(Value::Object(def)) => Some(snake_definition(def)),
        Some(_) => {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                "`agent.definition` must be an object (as describe_agent shows it)",
            ));
        }
        None => None,
    };
    let Some(mut doc) = base else {
        let doc = snake_definition(agent);
        if !doc.contains_key("executor") {
            return Err(no_executor(&doc));
        }
        return Ok(doc);
    };
    // A describe_agent view: its own fields win over the definition it carries.
    agent.remove("source");
    if let Some(Value::String(kind)) = agent.get("executor") {
        let stored = doc.get("executor").and_then(|e| e.get("kind"));
        if stored.and_then(Value::as_str) != Some(kind.as_str()) {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!(
                    "`agent.executor` is {kind:?} but `agent.definition.executor` is of another kind; give the executor as an object to change it"
                ),
            ));
        }
        agent.remove("executor");
    }
    for (k, v) in snake_definition(agent) {
        doc.insert(k, v);
    }
    Ok(doc)
}

/// `config` of the original server's descriptor: only its `executor` has a meaning here.
fn take_config(agent: &mut Map<String, Value>, config: Value) -> HubResult<()> {
    let Value::Object(mut config) = config else {
        return Err(HubError::new(
            ErrorCode::InvalidParams,
            "`agent.config` must be an object",
        ));
    };
    if let Some(exec) = config.remove("executor")
        && !agent.contains_key("executor")
    {
        agent.insert("executor".into(), exec);
    }
    if let Some(k) = config.keys().next() {
        return Err(HubError::new(
            ErrorCode::InvalidParams,
            format!(
                "`agent.config.{k}` is not supported: an agent here is its capabilities and an executor (`executor`, or `config.executor`)"
            ),
        ));
    }
    Ok(())
}

fn no_executor(doc: &Map<String, Value>) -> HubError {
    let id = doc.get("id").and_then(Value::as_str).unwrap_or("");
    HubError::new(
        ErrorCode::InvalidParams,
        format!(
            "agent {id:?} has no `executor`: say how it runs, e.g. {{\"kind\": \"process\", \"command\": [\"./agent\"]}}, {{\"kind\": \"a2a\", \"url\": \"https://…\"}} or {{\"kind\": \"builtin\", \"name\": \"echo\"}}"
        ),
    )
}

/// The definition with snake_case names for its fields, its capabilities' and its
/// executor's.
fn snake_definition(def: Map<String, Value>) -> Map<String, Value> {
    def.into_iter()
        .map(|(k, v)| {
            let k = snake(&k);
            let v = match (k.as_str(), v) {
                ("capabilities", Value::Array(caps)) => Value::Array(
                    caps.into_iter()
                        .map(|c| match c {
                            Value::Object(m) => Value::Object(snake_keys(m)),
                            other => other,
                        })
                        .collect(),
                ),
                ("executor", Value::Object(m)) => Value::Object(snake_keys(m)),
                (_, v) => v,
            };
            (k, v)
        })
        .collect()
}

fn snake_keys(m: Map<String, Value>) -> Map<String, Value> {
    m.into_iter().map(|(k, v)| (snake(&k), v)).collect()
}

/// `inputSchema` → `input_schema`; snake_case names stay as they are.
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for ch in name.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn camel_and_snake_names_give_the_same_spec() {
        let snake_def = json!({"id": "a", "max_concurrency": 2, "capabilities": [
            {"name": "c", "input_schema": {"type": "object", "properties": {"camelCase": {}}}}],
            "executor": {"kind": "process", "command": ["x"], "timeout_ms": 5, "env": {"someVar": "1"}}});
        let camel_def = json!({"id": "a", "maxConcurrency": 2, "capabilities": [
            {"name": "c", "inputSchema": {"type": "object", "properties": {"camelCase": {}}}}],
            "executor": {"kind": "process", "command": ["x"], "timeoutMs": 5, "env": {"someVar": "1"}}});
        let a = agent_spec(obj(snake_def)).unwrap();
        let b = agent_spec(obj(camel_def)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.max_concurrency, Some(2));
        // Data inside schemas and env keeps its names.
        assert!(a.capabilities[0].input_schema["properties"]["camelCase"].is_object());
        let crate::model::ExecutorSpec::Process(p) = &a.executor else {
            panic!("process executor expected");
        };
        assert!(p.env.contains_key("someVar"));
    }

    #[test]
    fn the_original_descriptor_needs_an_executor_and_keeps_nothing_else_silently() {
        let desc = json!({"id": "old", "name": "Old", "version": "1.0.0", "deployedAt": 1,
            "capabilities": [{"name": "chat", "inputSchema": {"type": "object"}, "outputSchema": {"type": "object"}}]});
        let e = agent_spec(obj(desc.clone())).unwrap_err();
        assert!(e.message.contains("no `executor`"), "{}", e.message);
        let mut with_config = obj(desc.clone());
        with_config.insert(
            "config".into(),
            json!({"executor": {"kind": "builtin", "name": "echo"}}),
        );
        let spec = agent_spec(with_config).unwrap();
        assert_eq!(spec.executor.kind(), "builtin");
        let mut bad = obj(desc);
        bad.insert("config".into(), json!({"temperature": 1}));
        let e = agent_spec(bad).unwrap_err();
        assert!(e.message.contains("config.temperature"), "{}", e.message);
    }

    #[test]
    fn a_view_with_another_executor_kind_is_refused() {
        let view = json!({"id": "a", "executor": "a2a", "source": "runtime", "definition": {
            "id": "a", "capabilities": [{"name": "c"}], "executor": {"kind": "builtin", "name": "echo"}}});
        let e = agent_spec(obj(view)).unwrap_err();
        assert!(e.message.contains("another kind"), "{}", e.message);
    }
}
