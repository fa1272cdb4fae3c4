//! The agent registry: catalog definitions merged with run-time changes.
//!
//! Every agent lives in memory as an [`AgentEntry`] (definition, compiled input validators,
//! executor) and in the store as an [`AgentRecord`]. Start-up rule: a record changed at run
//! time (deployed, updated, enabled/disabled or removed through the API) wins over the catalog;
//! catalog-sourced records follow the catalog (new catalog agents appear, ones deleted from
//! the catalog disappear).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::Value;

use crate::error::{ErrorCode, HubError, HubResult};
use crate::executor::{self, Executor, ExecutorEnv};
use crate::model::{AgentRecord, AgentSource, AgentSpec, Capability, now_ms};
use crate::store::Op;

/// A registered agent, ready to run.
pub struct AgentEntry {
    pub spec: AgentSpec,
    pub source: AgentSource,
    pub executor: Arc<dyn Executor>,
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl AgentEntry {
    pub fn build(spec: AgentSpec, source: AgentSource, env: &ExecutorEnv) -> HubResult<Self> {
        spec.validate()?;
        let mut validators = BTreeMap::new();
        for cap in &spec.capabilities {
            validators.insert(cap.name.clone(), compile_schema(&spec.id, cap)?);
            if let Some(out) = &cap.output_schema {
                jsonschema::validator_for(out).map_err(|e| {
                    HubError::new(
                        ErrorCode::InvalidParams,
                        format!(
                            "agent {:?} capability {:?}: output_schema is not a valid JSON Schema: {e}",
                            spec.id, cap.name
                        ),
                    )
                })?;
            }
        }
        let executor = executor::build(&spec, env).map_err(|e| {
            HubError::new(
                ErrorCode::InvalidParams,
                format!("agent {:?}: {e}", spec.id),
            )
        })?;
        Ok(Self {
            spec,
            source,
            executor,
            validators,
        })
    }

    /// Resolves the capability to invoke: the named one, or the only one.
    pub fn resolve_capability(&self, name: Option<&str>) -> HubResult<&Capability> {
        match name {
            Some(n) => self.spec.capability(n).ok_or_else(|| {
                HubError::new(
                    ErrorCode::CapabilityNotFound,
                    format!(
                        "agent {:?} has no capability {n:?}; it has: {}",
                        self.spec.id,
                        self.capability_names()
                    ),
                )
            }),
            None if self.spec.capabilities.len() == 1 => Ok(&self.spec.capabilities[0]),
            None => Err(HubError::new(
                ErrorCode::InvalidParams,
                format!(
                    "agent {:?} has several capabilities ({}); name one in `capability`",
                    self.spec.id,
                    self.capability_names()
                ),
            )),
        }
    }

    fn capability_names(&self) -> String {
        self.spec
            .capabilities
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `input` against the capability's input schema.
    pub fn validate_input(&self, capability: &str, input: &Value) -> HubResult<()> {
        let Some(v) = self.validators.get(capability) else {
            return Ok(());
        };
        let problems: Vec<String> = v
            .iter_errors(input)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("at {path}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(HubError::new(
                ErrorCode::InputValidation,
                format!(
                    "input does not match the schema of {}/{capability}: {}",
                    self.spec.id,
                    problems.join("; ")
                ),
            ))
        }
    }

    pub fn concurrency_limit(&self, global: usize) -> usize {
        self.spec
            .max_concurrency
            .map(|c| c as usize)
            .unwrap_or(global)
            .min(global)
    }
}

fn compile_schema(agent: &str, cap: &Capability) -> HubResult<jsonschema::Validator> {
    jsonschema::validator_for(&cap.input_schema).map_err(|e| {
        HubError::new(
            ErrorCode::InvalidParams,
            format!(
                "agent {agent:?} capability {:?}: input_schema is not a valid JSON Schema: {e}",
                cap.name
            ),
        )
    })
}

#[derive(Default)]
pub struct Registry {
    agents: RwLock<BTreeMap<String, Arc<AgentEntry>>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<AgentEntry>> {
        self.agents.read().get(id).cloned()
    }

    /// All agents in id order (deterministic).
    pub fn all(&self) -> Vec<Arc<AgentEntry>> {
        self.agents.read().values().cloned().collect()
    }

    pub fn insert(&self, entry: AgentEntry) {
        self.agents
            .write()
            .insert(entry.spec.id.clone(), Arc::new(entry));
    }

    pub fn remove(&self, id: &str) -> Option<Arc<AgentEntry>> {
        self.agents.write().remove(id)
    }

    pub fn counts(&self) -> (usize, usize) {
        let map = self.agents.read();
        (map.len(), map.values().filter(|a| a.spec.enabled).count())
    }
}

/// Computes the start-up state of the registry from the catalog and the stored records.
/// Returns the entries to register and the store ops that bring the store in line.
pub fn merge_catalog(
    catalog: Vec<AgentSpec>,
    stored: Vec<AgentRecord>,
    env: &ExecutorEnv,
) -> HubResult<(Vec<AgentEntry>, Vec<Op>)> {
    let mut stored: BTreeMap<String, AgentRecord> =
        stored.into_iter().map(|r| (r.spec.id.clone(), r)).collect();
    let mut entries = Vec::new();
    let mut ops = Vec::new();
    let now = now_ms();
    for spec in catalog {
        if let Some(reason) = executor::unavailable(&spec, env) {
            // Left out like an agent deleted from the catalog (a stored copy goes too).
            tracing::info!(agent = %spec.id, "catalog agent not loaded: {reason}");
            continue;
        }
        match stored.remove(&spec.id) {
            Some(rec) if rec.source == AgentSource::Runtime => {
                if !rec.removed {
                    entries.extend(build_stored(rec, env));
                }
            }
            existing => {
                let entry = AgentEntry::build(spec.clone(), AgentSource::Catalog, env)?;
                if existing.as_ref().is_none_or(|r| r.spec != spec) {
                    ops.push(Op::PutAgent(AgentRecord {
                        spec,
                        source: AgentSource::Catalog,
                        removed: false,
                        updated_at: now,
                    }));
                }
                entries.push(entry);
            }
        }
    }
    for (id, rec) in stored {
        match rec.source {
            // Gone from the catalog: gone from the hub.
            AgentSource::Catalog => ops.push(Op::DeleteAgent(id)),
            AgentSource::Runtime if rec.removed => {
                // Tombstone of a catalog agent that is no longer in the catalog.
                ops.push(Op::DeleteAgent(id));
            }
            AgentSource::Runtime => entries.extend(build_stored(rec, env)),
        }
    }
    Ok((entries, ops))
}

/// A stored run-time agent that no longer builds (e.g. its program moved) is skipped with an
/// error in the log rather than keeping the whole hub from starting.
fn build_stored(rec: AgentRecord, env: &ExecutorEnv) -> Option<AgentEntry> {
    let id = rec.spec.id.clone();
    match AgentEntry::build(rec.spec, rec.source, env) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(agent = %id, "stored agent is not valid any more and is not loaded: {}", e.message);
            None
        }
    }
}

/// RFC 7396 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The entry and store op that register `spec` as a run-time agent.
pub fn deploy_op(spec: AgentSpec, env: &ExecutorEnv) -> HubResult<(AgentEntry, Op)> {
    let entry = AgentEntry::build(spec.clone(), AgentSource::Runtime, env)?;
    let op = Op::PutAgent(AgentRecord {
        spec,
        source: AgentSource::Runtime,
        removed: false,
        updated_at: now_ms(),
    });
    Ok((entry, op))
}

/// The store op that removes an agent: always a tombstone, so an agent that is also in the
/// catalog stays removed across restarts (a tombstone of an agent the catalog does not have
/// is dropped at the next start).
pub fn remove_op(entry: &AgentEntry) -> Op {
    Op::PutAgent(AgentRecord {
        spec: entry.spec.clone(),
        source: AgentSource::Runtime,
        removed: true,
        updated_at: now_ms(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut t = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &serde_json::json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, serde_json::json!({"a": "z", "c": {"d": "e"}}));
    }
}
