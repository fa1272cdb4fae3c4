//! Views of the operations port: liveness (`/healthz`) and readiness (`/readyz`).

use schemars::JsonSchema;
use serde::Serialize;

/// `GET /healthz`: `ok` while the store answers (503 otherwise).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HealthView {
    pub ok: bool,
    /// `ok` or `store unavailable`.
    pub status: String,
    /// The product version.
    pub version: String,
    pub uptime_seconds: i64,
    pub queued: usize,
    pub running: usize,
    /// Enabled agents.
    pub agents: usize,
    pub store: StoreHealth,
}

/// The store part of [`HealthView`].
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct StoreHealth {
    /// `redb`, `sqlite` or `postgres`.
    pub backend: String,
    pub ok: bool,
    /// Why the store did not answer.
    pub error: Option<String>,
}

impl HealthView {
    /// The view from the hub statistics and the result of a store ping.
    pub fn new(stats: &crate::hub::Stats, store: Result<(), String>) -> Self {
        let ok = store.is_ok();
        HealthView {
            ok,
            status: if ok { "ok" } else { "store unavailable" }.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: stats.uptime_seconds,
            queued: stats.queued,
            running: stats.running,
            agents: stats.agents_enabled,
            store: StoreHealth {
                backend: stats.store_backend.to_string(),
                ok,
                error: store.err(),
            },
        }
    }
}

/// `GET /readyz`: ready once started and while the store answers (503 otherwise).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ReadyView {
    pub ready: bool,
    /// Start-up (recovery, catalog) has finished.
    pub started: bool,
    /// The store answers.
    pub store: bool,
}
