//! Write-only secrets: the one rule for how a secret value looks wherever it is read back.
//!
//! Secrets are accepted on write and never shown again, to any role: the values of a process
//! agent's `executor.env`, the values of an `a2a` agent's `executor.headers` (outbound
//! credentials), the token and credentials of an A2A push notification config, and secret
//! settings in `check-config`. Every view replaces the value with [`REDACTED`] and keeps the
//! names visible, so an operator sees *which* variables and headers are set.
//!
//! Round trips are safe: a definition read with `describe_agent` (or `GET /api/v1/agents/ID`)
//! and deployed or patched back carries the placeholder, and [`keep_agent_secrets`] puts the
//! stored value in its place instead of storing `***`. A placeholder with no stored value to
//! keep is refused with a clear error. Audit entries of agent updates record the patch through
//! [`redact_agent_patch`].
//!
//! Who calls it: the agent views (`api::agent_view`), the push config view
//! (`api::a2a::convert`), the hub when it deploys or updates an agent, and `check-config`.
//! It holds no state and does no I/O.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{AgentSpec, ExecutorSpec};

/// What every view shows instead of a secret value.
pub const REDACTED: &str = "***";

/// The view of an optional secret: `***` when set.
pub fn redact_opt(v: Option<&str>) -> Option<String> {
    v.map(|_| REDACTED.to_string())
}

/// The field of an executor whose values are secrets (`env` of process agents, `headers` of
/// a2a agents), with its name.
fn secret_map(e: &ExecutorSpec) -> Option<(&'static str, &BTreeMap<String, String>)> {
    match e {
        ExecutorSpec::Process(p) => Some(("env", &p.env)),
        ExecutorSpec::A2a(a) => Some(("headers", &a.headers)),
        ExecutorSpec::Builtin { .. } => None,
    }
}

fn secret_map_mut(e: &mut ExecutorSpec) -> Option<(&'static str, &mut BTreeMap<String, String>)> {
    match e {
        ExecutorSpec::Process(p) => Some(("env", &mut p.env)),
        ExecutorSpec::A2a(a) => Some(("headers", &mut a.headers)),
        ExecutorSpec::Builtin { .. } => None,
    }
}

/// An agent definition as views show it: secret values replaced, names kept.
pub fn redacted_spec(spec: &AgentSpec) -> AgentSpec {
    let mut out = spec.clone();
    if let Some((_, map)) = secret_map_mut(&mut out.executor) {
        for v in map.values_mut() {
            *v = REDACTED.to_string();
        }
    }
    out
}

/// Replaces every placeholder value in `new` with the value stored for the same name in
/// `old` (the agent being replaced or updated). A placeholder without a stored value of the
/// same executor kind is an error: nothing would be left to send.
pub fn keep_agent_secrets(new: &mut AgentSpec, old: Option<&AgentSpec>) -> HubResult<()> {
    let stored = old.and_then(|o| {
        secret_map(&o.executor)
            .filter(|_| o.executor.kind() == new.executor.kind())
            .map(|(_, m)| m)
    });
    let id = new.id.clone();
    let Some((field, map)) = secret_map_mut(&mut new.executor) else {
        return Ok(());
    };
    for (name, value) in map.iter_mut() {
        if value != REDACTED {
            continue;
        }
        match stored.and_then(|m| m.get(name)) {
            Some(old) => value.clone_from(old),
            None => {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "agent {id:?}: executor.{field}.{name} is {REDACTED:?}, the placeholder views show instead of secret values, and there is no stored value to keep; give the real value"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A merge patch of an agent definition as the audit log records it: the values under
/// `executor.env` and `executor.headers` replaced.
pub fn redact_agent_patch(patch: &Value) -> Value {
    let mut out = patch.clone();
    for ptr in ["/executor/env", "/executor/headers"] {
        if let Some(Value::Object(m)) = out.pointer_mut(ptr) {
            for v in m.values_mut() {
                if !v.is_null() {
                    *v = Value::String(REDACTED.into());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn process(env: Value) -> AgentSpec {
        serde_json::from_value(json!({
            "id": "p", "capabilities": [{"name": "run"}],
            "executor": {"kind": "process", "command": ["x"], "env": env}
        }))
        .unwrap()
    }

    #[test]
    fn views_hide_values_and_keep_names() {
        let spec = process(json!({"TOKEN": "s3cret", "MODE": "fast"}));
        let v = serde_json::to_value(redacted_spec(&spec)).unwrap();
        assert_eq!(v["executor"]["env"], json!({"TOKEN": "***", "MODE": "***"}));
        assert_eq!(redact_opt(Some("t")).as_deref(), Some("***"));
        assert_eq!(redact_opt(None), None);
    }

    #[test]
    fn placeholders_keep_the_stored_value() {
        let old = process(json!({"TOKEN": "s3cret", "MODE": "fast"}));
        let mut new = process(json!({"TOKEN": "***", "MODE": "slow"}));
        keep_agent_secrets(&mut new, Some(&old)).unwrap();
        assert_eq!(new, process(json!({"TOKEN": "s3cret", "MODE": "slow"})));
        // A placeholder with nothing to keep is refused.
        let mut fresh = process(json!({"NEW": "***"}));
        let e = keep_agent_secrets(&mut fresh, Some(&old)).unwrap_err();
        assert!(e.message.contains("executor.env.NEW"), "{}", e.message);
        assert!(keep_agent_secrets(&mut process(json!({"X": "***"})), None).is_err());
    }

    #[test]
    fn audited_patches_hide_values() {
        let p = json!({"executor": {"headers": {"Authorization": "Bearer x", "Gone": null}}, "enabled": false});
        assert_eq!(
            redact_agent_patch(&p),
            json!({"executor": {"headers": {"Authorization": "***", "Gone": null}}, "enabled": false})
        );
    }
}
