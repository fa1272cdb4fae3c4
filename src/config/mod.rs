//! Configuration: every setting documented once, resolved once, typed once.
//!
//! [`SETTINGS`] is the single list of settings (key, environment names, default, meaning). It
//! drives resolution, `check-config`, and `docs/CONFIGURATION.md` (a test fails when the doc
//! drifts). Precedence: command-line flags > environment > TOML file (`--config`) > defaults.
//! [`Config::load`] is the one function that turns raw strings into typed values; an invalid
//! value stops start-up with one line naming the setting, the value and what is allowed.
//! This is the only module that reads the process environment for settings.
//!
//! Files: `settings` (the list and the reference page), `load` (resolution and typing),
//! `hosts` (host names and origins); the typed [`Config`] and its small enums are here.

mod hosts;
mod load;
mod settings;
#[cfg(test)]
mod tests;

pub use hosts::{HostName, default_port, normalize_origin};
pub use settings::{SETTINGS, Setting, markdown};

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::store::{PostgresSettings, StoreKind, StoreSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Auto,
    Required,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The typed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Env,
    pub data_dir: PathBuf,
    pub catalog_dir: PathBuf,
    pub store: StoreKind,
    pub auto_migrate: bool,
    pub postgres: PostgresSettings,
    /// Redis connection URL (`None`: no Redis).
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub replica_id: Option<String>,
    pub lease_ttl: Duration,
    pub cluster_poll: Duration,
    pub stream_host: IpAddr,
    pub stream_port: u16,
    pub metrics_host: IpAddr,
    pub metrics_port: u16,
    pub public_url: Option<String>,
    pub stream_token: Option<String>,
    pub enable_streaming: bool,
    pub max_concurrency: usize,
    pub max_queue_size: usize,
    pub max_subs_per_request: usize,
    pub idempotency_ttl: Duration,
    pub retention: Duration,
    pub sweep_interval: Duration,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Host names accepted besides IP literals and `localhost` (public_url's host included).
    pub allowed_hosts: Vec<HostName>,
    /// Extra browser origins, normalised by [`normalize_origin`].
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_wait: Duration,
    pub ws_heartbeat: Duration,
    pub auth: AuthMode,
    pub stdio_role: crate::model::Role,
    pub rate_limits: crate::policy::ratelimit::Limits,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub ops_tls: bool,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub keepalive_interval: Duration,
    pub backup_dir: PathBuf,
    /// `None`: no scheduled backups.
    pub backup_interval: Option<Duration>,
    pub backup_retention_days: u64,
    pub otel_endpoint: Option<String>,
    pub otel_protocol: String,
    pub otel_service_name: String,
    pub otel_export_interval: Duration,
    pub max_streams_per_key: usize,
    pub audit_retention: Duration,
    pub audit_denial_window: Duration,
    /// Bearer token for `/metrics` and `/api/agent` on the operations listener.
    pub ops_token: Option<String>,
    pub key_refresh: Duration,
    /// Internal networks outgoing requests may reach (`crate::net::egress`).
    pub egress_allowed_networks: Vec<ipnet::IpNet>,
    pub agent_callbacks: bool,
    /// Lowest role that may deploy process agents at run time (`None`: nobody).
    pub runtime_process_agents: Option<crate::model::Role>,
    /// Default rlimits of process agents.
    pub process_limits: crate::model::ProcessLimits,
    /// Contain process requests in cgroups when possible.
    pub process_cgroup: bool,
    /// Offer the builtin `echo` helper.
    pub builtin_echo: bool,
    pub max_inflight_per_key: usize,
    pub max_queued_per_key: usize,
    /// Where each setting's value came from, for `check-config`.
    pub provenance: BTreeMap<&'static str, (String, &'static str)>,
}

/// The store's own settings, taken from the configuration (the one place they are built).
impl From<&Config> for StoreSettings {
    fn from(c: &Config) -> Self {
        StoreSettings {
            kind: c.store,
            data_dir: c.data_dir.clone(),
            auto_migrate: c.auto_migrate,
            postgres: c.postgres.clone(),
        }
    }
}

/// One-line configuration error naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Inputs to [`Config::load`].
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub file: Option<PathBuf>,
    /// Flag values by setting key.
    pub flags: BTreeMap<String, String>,
}

impl Config {
    pub fn is_production(&self) -> bool {
        self.env == Env::Production
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The effective configuration, one `key = value  (source)` line each, secrets masked.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for s in SETTINGS {
            let (v, src) = self.provenance.get(s.key).cloned().unwrap_or_default();
            let shown = if s.secret && !v.is_empty() {
                crate::redact::REDACTED.to_string()
            } else {
                v
            };
            out.push_str(&format!(
                "{:<22} = {:<40} ({src})\n",
                s.key,
                format!("{shown:?}")
            ));
        }
        out
    }
}
