//! Configuration: every setting documented once, resolved once, typed once.
//!
//! [`SETTINGS`] is the single list of settings (key, environment names, default, meaning). It
//! drives resolution, `check-config`, and `docs/CONFIGURATION.md` (a test fails when the doc
//! drifts). Precedence: command-line flags > environment > TOML file (`--config`) > defaults.
//! [`Config::load`] is the one function that turns raw strings into typed values; an invalid
//! value stops start-up with one line naming the setting, the value and what is allowed.
//! This is the only module that reads the process environment for settings.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store::{PostgresSettings, StoreKind, StoreSettings};

/// One documented setting.
pub struct Setting {
    /// Key in the TOML file and for `--set KEY=VALUE`.
    pub key: &'static str,
    /// Environment variables, first match wins.
    pub env: &'static [&'static str],
    /// Default value, as text ("" = unset).
    pub default: &'static str,
    /// Masked in `check-config`; also read from `<ENV>_FILE`.
    pub secret: bool,
    pub doc: &'static str,
}

macro_rules! s {
    ($key:literal, [$($env:literal),*], $default:literal, $doc:literal) => {
        Setting { key: $key, env: &[$($env),*], default: $default, secret: false, doc: $doc }
    };
    (secret $key:literal, [$($env:literal),*], $default:literal, $doc:literal) => {
        Setting { key: $key, env: &[$($env),*], default: $default, secret: true, doc: $doc }
    };
}

#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    s!(
        "env",
        ["A2A_ENV", "NODE_ENV"],
        "development",
        "`development` or `production`. Production logs JSON and refuses unsafe listeners."
    ),
    s!(
        "data_dir",
        ["A2A_DATA_DIR"],
        "data/state",
        "State directory: the embedded store file and the working directory of process agents."
    ),
    s!(
        "catalog_dir",
        ["A2A_CATALOG_DIR"],
        "data/catalog",
        "Directory of catalog TOML files (agents) loaded at start-up."
    ),
    s!(
        "store",
        ["A2A_STORE"],
        "redb",
        "Storage backend: `redb` (embedded file, default), `sqlite` (embedded file `a2a-mcp.sqlite`), or `postgres` (external database; builds with the `postgres` cargo feature)."
    ),
    s!(
        "auto_migrate",
        ["A2A_AUTO_MIGRATE"],
        "true",
        "Apply pending schema migrations of the SQL stores (sqlite, postgres) at start-up; with `false` a schema behind the binary stops start-up until `a2a-mcp migrate` has run. Migrations take a lock, run in one transaction and never downgrade."
    ),
    s!(secret "postgres_url", ["A2A_POSTGRES_URL"], "",
       "Postgres connection as one URL (`postgres://user:password@host:5432/db`) or key=value string; when set, the `POSTGRES_*` settings below are not used (except `POSTGRES_PASSWORD` when the URL has no password)."),
    s!(
        "postgres_host",
        ["POSTGRES_HOST"],
        "127.0.0.1",
        "Postgres host name, IP address, or Unix socket directory."
    ),
    s!("postgres_port", ["POSTGRES_PORT"], "5432", "Postgres port."),
    s!(
        "postgres_db",
        ["POSTGRES_DB"],
        "",
        "Postgres database (default: the user name)."
    ),
    s!(
        "postgres_user",
        ["POSTGRES_USER"],
        "postgres",
        "Postgres user."
    ),
    s!(secret "postgres_password", ["POSTGRES_PASSWORD"], "",
       "Postgres password (also from `POSTGRES_PASSWORD_FILE`)."),
    s!(
        "postgres_schema",
        ["A2A_POSTGRES_SCHEMA"],
        "a2a",
        "Postgres schema holding a2a-mcp's tables (created by the first migration); one schema per hub, so several hubs or tenants can share a database."
    ),
    s!(
        "postgres_tls",
        ["A2A_POSTGRES_TLS"],
        "false",
        "Connect to Postgres over TLS (rustls), verifying the server certificate and host name against the Mozilla roots plus `postgres_ca_file`; also on when the URL says `sslmode=require`. Otherwise connections are plain (`sslmode=prefer` does not encrypt here)."
    ),
    s!(
        "postgres_ca_file",
        ["A2A_POSTGRES_CA_FILE"],
        "",
        "PEM file of extra CA certificates trusted for Postgres TLS (e.g. a cloud provider's or your own CA)."
    ),
    s!(
        "postgres_pool_size",
        ["A2A_POSTGRES_POOL_SIZE"],
        "16",
        "Connections to Postgres kept by the pool (reads share them; writes use one at a time)."
    ),
    s!(
        "postgres_timeout",
        ["A2A_POSTGRES_TIMEOUT"],
        "5s",
        "How long a store operation may wait for a Postgres connection or answer before it fails with store_unavailable."
    ),
    s!(secret "redis_url", ["A2A_REDIS_URL", "REDIS_URL"], "",
       "Redis as one URL (`redis://[:password@]host:6379[/db]`, `rediss://` for TLS). With Redis, replicas sharing a Postgres store relay stream events to each other at once and share rate-limit counters; without it, followers on other replicas read new events from the store every `cluster_poll`. Wins over `REDIS_HOST`/`REDIS_PORT`."),
    s!(
        "redis_host",
        ["REDIS_HOST"],
        "",
        "Redis host (empty: no Redis unless `redis_url` is set)."
    ),
    s!("redis_port", ["REDIS_PORT"], "6379", "Redis port."),
    s!(secret "redis_password", ["REDIS_PASSWORD"], "",
       "Redis password (also from `REDIS_PASSWORD_FILE`), used with `REDIS_HOST`."),
    s!(
        "redis_prefix",
        ["A2A_REDIS_PREFIX"],
        "a2a",
        "Prefix of every Redis key and channel of this hub (several hubs can share one Redis)."
    ),
    s!(
        "replica_id",
        ["A2A_REPLICA_ID", "POD_NAME"],
        "",
        "Name of this replica in a multi-replica deployment (leases name their owner). Empty: host name, process id and a random suffix. A stable name (e.g. the pod name) lets a restarted replica take its own work back at once instead of after the lease time."
    ),
    s!(
        "lease_ttl",
        ["A2A_LEASE_TTL"],
        "15s",
        "Multi-replica: how long a replica's claim on a request lasts without renewal (renewed every third of it). The jobs of a replica that dies are taken over by the others this long after its last renewal; their interrupt policy applies."
    ),
    s!(
        "cluster_poll",
        ["A2A_CLUSTER_POLL"],
        "1s",
        "Multi-replica: how often a stream follower with nothing new re-reads the store (so events of jobs on other replicas arrive even without Redis, or when a relay message is lost), and how often registry changes of other replicas are looked for (every 5 polls)."
    ),
    s!(
        "stream_host",
        ["STREAM_HOST"],
        "127.0.0.1",
        "Address of the public API listener (MCP, WebSocket, REST)."
    ),
    s!(
        "stream_port",
        ["STREAM_PORT"],
        "8787",
        "Port of the public API listener; 0 picks a free port."
    ),
    s!(
        "metrics_host",
        ["METRICS_HOST"],
        "127.0.0.1",
        "Address of the operations listener (/healthz, /readyz, /metrics)."
    ),
    s!(
        "metrics_port",
        ["METRICS_PORT"],
        "3000",
        "Port of the operations listener; 0 picks a free port."
    ),
    s!(
        "public_url",
        ["A2A_PUBLIC_URL"],
        "",
        "Base URL clients use to reach the API listener (for streamUrl); default: the bound address."
    ),
    s!(secret "stream_token", ["STREAM_TOKEN"], "",
       "Shared token required on /stream and the SSE event endpoint when set (Bearer or token=)."),
    s!(
        "enable_streaming",
        ["ENABLE_STREAMING"],
        "true",
        "Serve the WebSocket/SSE streams. In `stdio` mode `false` starts no listener at all."
    ),
    s!(
        "max_concurrency",
        ["MAX_CONCURRENCY"],
        "50",
        "Requests running at once, over all agents (an agent's max_concurrency can only lower it)."
    ),
    s!(
        "max_queue_size",
        ["MAX_QUEUE_SIZE"],
        "10000",
        "Requests waiting for a slot; beyond it invocations fail with queue_full."
    ),
    s!(
        "max_subs_per_request",
        ["MAX_SUBS_PER_REQUEST"],
        "16",
        "Concurrent stream subscribers per request."
    ),
    s!(
        "idemp_ttl_ms",
        ["IDEMP_TTL_MS"],
        "900000",
        "How long an idempotency key is remembered, in milliseconds."
    ),
    s!(
        "retention",
        ["A2A_RETENTION"],
        "7d",
        "How long finished requests and their events are kept (e.g. `7d`, `12h`); also how long closed or idle sessions without requests and decided permission requests are kept."
    ),
    s!(
        "sweep_interval",
        ["A2A_SWEEP_INTERVAL"],
        "1m",
        "How often the retention sweeper runs."
    ),
    s!(
        "log_level",
        ["LOG_LEVEL"],
        "info",
        "Log level or filter (`error`, `warn`, `info`, `debug`, `trace`, or `a2a_mcp=debug,info`)."
    ),
    s!(
        "log_format",
        ["A2A_LOG_FORMAT"],
        "auto",
        "`auto` (JSON in production, text otherwise), `json` or `text`. Logs always go to stderr."
    ),
    s!(
        "allowed_hosts",
        ["A2A_ALLOWED_HOSTS"],
        "",
        "Host names clients use to reach the hub, comma-separated (`name` for any port, `name:port` for one). IP literals and `localhost` are always accepted, as is the host of `public_url`; a request naming any other Host is refused with 421 on every route of both listeners (DNS-rebinding protection). Behind a proxy or in a cluster, list the names it forwards (e.g. the Service DNS names)."
    ),
    s!(
        "allowed_origins",
        ["A2A_ALLOWED_ORIGINS"],
        "",
        "Browser origins (`scheme://host[:port]`, comma-separated; `null` for the opaque origin) that may call the hub besides its own origin (the listener's scheme with the request's Host, and the origin of `public_url`). A request carrying any other `Origin` is refused with 403 on every route (cross-site protection); requests without `Origin` (non-browser clients) are not affected."
    ),
    s!(
        "max_body_bytes",
        ["A2A_MAX_BODY_BYTES"],
        "1048576",
        "Largest accepted request body, in bytes."
    ),
    s!(
        "shutdown_grace",
        ["A2A_SHUTDOWN_GRACE"],
        "10s",
        "On SIGTERM/SIGINT, how long running jobs may finish before they are stopped."
    ),
    s!(
        "max_wait",
        ["A2A_MAX_WAIT"],
        "300s",
        "Upper bound for `invoke_agent` with `wait: true`."
    ),
    s!(
        "ws_heartbeat",
        ["A2A_WS_HEARTBEAT"],
        "20s",
        "WebSocket ping interval; a client silent for three intervals is dropped."
    ),
    s!("auth", ["A2A_AUTH"], "auto",
       "`auto`: API keys are required from the moment the first key is created, for the life of the store (expiring or revoking keys never reopens the hub); until then the hub is open to loopback callers only. `required`: always. `off`: never, and loopback callers only. Production mode never runs open: `auto` means `required` there, and `off` is refused."),
    s!("stdio_role", ["A2A_STDIO_ROLE"], "admin",
       "Role of the local user of `a2a-mcp stdio` (admin, operator, invoker, viewer)."),
    s!("rate_limits", ["A2A_RATE_LIMITS"], "default=100/s,admin=1000/s,ip=1000/s",
       "Rate limits: `name=N/s|N/m|off` for `default`, `admin`, `operator`, `invoker`, `viewer` (per key) and `ip` (per client address; loopback exempt unless `ip_loopback=on`)."),
    s!("tls_cert", ["A2A_TLS_CERT"], "",
       "PEM certificate chain; with `tls_key`, both listeners speak TLS (1.2+). Reloaded on SIGHUP and when the files change."),
    s!("tls_key", ["A2A_TLS_KEY"], "",
       "PEM private key for `tls_cert`."),
    s!("tls_client_ca", ["A2A_TLS_CLIENT_CA"], "",
       "PEM CA bundle: when set, clients of the API listener must present a certificate it signed (mTLS)."),
    s!(secret "ops_token", ["A2A_OPS_TOKEN"], "",
       "When set, `/metrics` and `/api/agent` on the operations listener require `Authorization: Bearer <token>` (Prometheus: `authorization.credentials_file`); `/healthz` and `/readyz` stay open for probes."),
    s!("ops_tls", ["A2A_OPS_TLS"], "on",
       "`on`: the operations listener uses TLS too when a certificate is set; `off`: plain HTTP (e.g. for an in-cluster scraper)."),
    s!("header_timeout", ["A2A_HEADER_TIMEOUT"], "10s",
       "Deadline for a connection's first complete request head, counted from accept (TLS handshake and protocol detection included): a connection that has not sent one by then is closed and its slot freed. Also the time an HTTP/1.1 client has to send each later request head, waiting on a kept-alive connection included (slowloris guard)."),
    s!("idle_timeout", ["A2A_IDLE_TIMEOUT"], "60s",
       "A connection with no request in flight for this long is closed (HTTP/2 with a GOAWAY). Streams in progress (SSE, MCP) keep their connection busy; WebSocket connections have their own heartbeat (`ws_heartbeat`)."),
    s!("keepalive_interval", ["A2A_KEEPALIVE_INTERVAL"], "30s",
       "HTTP/2 keep-alive: a PING is sent after this long without a frame from the client, and a client that does not answer within the same time is disconnected."),
    s!("max_connections", ["A2A_MAX_CONNECTIONS"], "4096",
       "Open connections per listener (the API and the operations listener each have their own budget); further connections wait in the kernel backlog until a slot frees."),
    s!("max_connections_per_ip", ["A2A_MAX_CONNECTIONS_PER_IP"], "256",
       "Open connections one client address may hold on a listener; a further connection from that address is closed at once. Every address counts on its own, loopback ones too (127.0.0.1 and 127.0.0.2 are two addresses). Behind a reverse proxy or an ingress every connection comes from the proxy's address: raise it towards `max_connections` there."),
    s!("max_streams_per_key", ["A2A_MAX_STREAMS_PER_KEY"], "256",
       "WebSocket/SSE subscriptions one credential may hold at once."),
    s!("audit_retention", ["A2A_AUDIT_RETENTION"], "90d",
       "How long audit log entries are kept."),
    s!("audit_denial_window", ["A2A_AUDIT_DENIAL_WINDOW"], "1m",
       "Refused requests (401, 429, and 403/421 from the request admission) are audited in summary: one entry per reason, surface and key or client address per window, with the count, so a flood cannot fill the disk. At most 256 such entries per window; further callers are counted together."),
    s!("key_refresh", ["A2A_KEY_REFRESH"], "10s",
       "How often API keys are re-read from the store, so keys created or revoked by `a2a-mcp keys` or another replica take effect (with Redis, other replicas' changes arrive at once)."),
    s!("egress_allowed_networks", ["A2A_EGRESS_ALLOWED_NETWORKS", "A2A_PUSH_ALLOWED_NETWORKS"], "",
       "Internal networks the hub's outgoing requests may reach, comma-separated CIDRs or addresses (e.g. `10.0.0.0/8,127.0.0.1`): A2A push webhooks, Agent Card imports and `a2a` agents (catalog ones included). By default they must resolve to public addresses: loopback, private, link-local (cloud metadata), CGNAT and other special ranges are refused. Old name: `push_allowed_networks` / `A2A_PUSH_ALLOWED_NETWORKS`."),
    s!("runtime_process_agents", ["A2A_RUNTIME_PROCESS_AGENTS"], "admin",
       "Who may deploy or change `process` agents (which run commands on this host) at run time: `admin`, `operator`, or `off` (catalog files only)."),
    s!("agent_callbacks", ["A2A_AGENT_CALLBACKS"], "true",
       "Give process agents A2A_HUB_URL and a per-request A2A_HUB_TOKEN so they can call back into the hub as themselves (subject to grants)."),
    s!("process_limits", ["A2A_PROCESS_LIMITS"], "cpu_seconds=600,memory_mb=4096,open_files=1024,processes=2048",
       "Default rlimits of every process agent, `name=N|off` pairs: `cpu_seconds` (RLIMIT_CPU), `memory_mb` (address space, RLIMIT_AS), `open_files` (RLIMIT_NOFILE), `processes` (RLIMIT_NPROC, counted per user). An agent's own `limits` table wins per entry (0 there lifts the limit); none goes above the hub's own hard limits."),
    s!("process_cgroup", ["A2A_PROCESS_CGROUP"], "auto",
       "`auto`: each process request runs in its own cgroup v2 (below the hub's cgroup) when the hub may create one (root, or systemd `Delegate=yes`), so cancel, timeout and the end of a request kill its whole process tree at once; otherwise, and with `off`, the tree is tracked through /proc."),
    s!("builtin_echo", ["A2A_BUILTIN_ECHO"], "auto",
       "Offer the builtin `echo` test helper (and the catalog's `echo` agent): `auto` (on in development, off in production), `on` or `off`."),
    s!("max_inflight_per_key", ["A2A_MAX_INFLIGHT_PER_KEY"], "25",
       "Requests of one caller (API key, or the anonymous/local identity) running at once; its further requests wait in the queue while other callers' run. Agents calling back (per-request agent tokens) are counted per agent and are exempt from this cap, so nested calls cannot wait on their own parent."),
    s!("max_queued_per_key", ["A2A_MAX_QUEUED_PER_KEY"], "1000",
       "Requests of one caller waiting in the queue; beyond it its invocations fail with 429 rate_limited while other callers still get in (MAX_QUEUE_SIZE bounds the queue as a whole)."),
    s!("backup_dir", ["A2A_BACKUP_DIR"], "backup",
       "Where snapshots are written (scheduled and API-triggered backups)."),
    s!("backup_interval", ["A2A_BACKUP_INTERVAL"], "1d",
       "How often `serve` takes a snapshot (e.g. `6h`, `1d`), or `off`. The next one is due this long after the newest snapshot in the directory."),
    s!("backup_retention_days", ["A2A_BACKUP_RETENTION_DAYS"], "30",
       "Snapshots older than this many days are deleted after each successful scheduled backup (the newest is always kept)."),
    s!("otel_endpoint", ["OTEL_EXPORTER_OTLP_ENDPOINT"], "",
       "OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`); when set, traces are exported to `<url>/v1/traces`."),
    s!("otel_protocol", ["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf",
       "OTLP encoding: `http/protobuf` or `http/json`."),
    s!("otel_service_name", ["OTEL_SERVICE_NAME"], "a2a-mcp",
       "`service.name` of exported spans."),
    s!("otel_export_interval", ["A2A_OTEL_EXPORT_INTERVAL"], "5s",
       "How often batched spans are exported."),
];

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
    /// Internal networks outgoing requests may reach (`crate::egress`).
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

fn setting(key: &str) -> Option<&'static Setting> {
    let key = canonical_key(key);
    SETTINGS.iter().find(|s| s.key == key)
}

/// Keys that were renamed, still accepted in files and flags: (old, new).
const RENAMED: &[(&str, &str)] = &[("push_allowed_networks", "egress_allowed_networks")];

fn canonical_key(key: &str) -> &str {
    RENAMED
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

fn toml_to_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(a) => a.iter().map(toml_to_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

struct Raw {
    values: BTreeMap<&'static str, (String, &'static str)>,
}

impl Raw {
    /// The raw value of a setting and the environment name shown in messages.
    fn get(&self, key: &str) -> (&str, &'static str) {
        let env_name = setting(key)
            .map(|s| s.env.first().copied().unwrap_or(s.key))
            .unwrap_or("");
        match self.values.get(key) {
            Some((v, _)) => (v.as_str(), env_name),
            None => ("", env_name),
        }
    }

    fn err(&self, key: &str, allowed: &str) -> ConfigError {
        let (v, env_name) = self.get(key);
        ConfigError(format!("{key} ({env_name}) = {v:?}: expected {allowed}"))
    }

    fn text(&self, key: &str) -> Option<String> {
        let (v, _) = self.get(key);
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, allowed: &str) -> Result<T, ConfigError> {
        let (v, _) = self.get(key);
        v.trim().parse().map_err(|_| self.err(key, allowed))
    }

    fn positive(&self, key: &str) -> Result<usize, ConfigError> {
        match self.parse::<usize>(key, "a whole number of at least 1")? {
            0 => Err(self.err(key, "a whole number of at least 1")),
            n => Ok(n),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        let (v, _) = self.get(key);
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(self.err(key, "true or false")),
        }
    }

    fn duration(&self, key: &str) -> Result<Duration, ConfigError> {
        let (v, _) = self.get(key);
        humantime::parse_duration(v.trim())
            .map_err(|_| self.err(key, "a duration such as 500ms, 30s, 5m, 12h or 7d"))
    }

    fn nonzero_duration(&self, key: &str) -> Result<Duration, ConfigError> {
        match self.duration(key)? {
            d if d.is_zero() => Err(self.err(key, "a duration longer than 0")),
            d => Ok(d),
        }
    }

    fn list(&self, key: &str) -> Vec<String> {
        let (v, _) = self.get(key);
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

impl Config {
    /// Resolves every setting (flags > env > file > defaults) and types it.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        Self::load_with(sources, |name| std::env::var(name).ok())
    }

    /// Like [`Config::load`] with an explicit environment (for tests).
    pub fn load_with(
        sources: &Sources,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file_table = match &sources.file {
            Some(p) => read_file(p)?,
            None => BTreeMap::new(),
        };
        for key in sources.flags.keys() {
            if setting(key).is_none() {
                return Err(ConfigError(format!(
                    "unknown setting {key:?} in --set; `a2a-mcp check-config --docs` lists them"
                )));
            }
        }
        let mut values = BTreeMap::new();
        for s in SETTINGS {
            let from_env = || -> Result<Option<(String, &'static str)>, ConfigError> {
                for name in s.env {
                    if let Some(v) = env(name) {
                        return Ok(Some((v, "env")));
                    }
                    if s.secret {
                        let file_var = format!("{name}_FILE");
                        if let Some(path) = env(&file_var) {
                            let v = std::fs::read_to_string(&path).map_err(|e| {
                                ConfigError(format!("{file_var} = {path:?}: cannot read: {e}"))
                            })?;
                            return Ok(Some((v.trim().to_string(), "env file")));
                        }
                    }
                }
                Ok(None)
            };
            let flag = sources
                .flags
                .iter()
                .find(|(k, _)| canonical_key(k) == s.key)
                .map(|(_, v)| v);
            let v = if let Some(v) = flag {
                (v.clone(), "flag")
            } else if let Some(v) = from_env()? {
                v
            } else if let Some(v) = file_table.get(s.key) {
                (v.clone(), "file")
            } else {
                (s.default.to_string(), "default")
            };
            values.insert(s.key, v);
        }
        let raw = Raw { values };

        let env_kind = match raw.get("env").0.trim() {
            "production" | "prod" => Env::Production,
            "development" | "dev" | "test" | "" => Env::Development,
            _ => return Err(raw.err("env", "development or production")),
        };
        let store = match raw.get("store").0.trim() {
            "redb" | "" => StoreKind::Redb,
            "sqlite" => StoreKind::Sqlite,
            "postgres" | "postgresql" if cfg!(feature = "postgres") => StoreKind::Postgres,
            "postgres" | "postgresql" => {
                return Err(ConfigError(
                    "store (A2A_STORE) = \"postgres\": this a2a-mcp was built without Postgres \
                     support (cargo feature `postgres`); use redb or sqlite, or a build with the feature"
                        .into(),
                ));
            }
            _ => return Err(raw.err("store", "redb, sqlite or postgres")),
        };
        let postgres = postgres_settings(&raw)?;
        let public_url = raw.text("public_url");
        if let Some(u) = &public_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(raw.err("public_url", "an http:// or https:// URL"));
        }
        let log_level = raw.text("log_level").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(raw.err(
                "log_level",
                "error, warn, info, debug, trace or a tracing filter",
            ));
        }
        let log_format = match raw.get("log_format").0.trim() {
            "auto" | "" => {
                if env_kind == Env::Production {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                }
            }
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => return Err(raw.err("log_format", "auto, json or text")),
        };
        let mut allowed_hosts = Vec::new();
        for entry in raw.list("allowed_hosts") {
            match HostName::parse(&entry) {
                Some(h) => allowed_hosts.push(h),
                None => {
                    return Err(ConfigError(format!(
                        "allowed_hosts (A2A_ALLOWED_HOSTS): {entry:?} is not a host name; \
                         expected `name` or `name:port`, comma-separated"
                    )));
                }
            }
        }
        if let Some(u) = &public_url
            && let Some(host) = url_host(u).and_then(|h| HostName::parse(&h))
            && !allowed_hosts.contains(&host)
        {
            allowed_hosts.push(host);
        }
        let mut allowed_origins = Vec::new();
        for entry in raw.list("allowed_origins") {
            match normalize_origin(&entry) {
                Some(o) => allowed_origins.push(o),
                None => {
                    return Err(ConfigError(format!(
                        "allowed_origins (A2A_ALLOWED_ORIGINS): {entry:?} is not an origin; \
                         expected `scheme://host[:port]` (no path, no wildcard) or `null`"
                    )));
                }
            }
        }
        let auth = match raw.get("auth").0.trim() {
            "auto" | "" => AuthMode::Auto,
            "required" | "on" => AuthMode::Required,
            "off" | "none" => AuthMode::Off,
            _ => return Err(raw.err("auth", "auto, required or off")),
        };
        if env_kind == Env::Production && auth == AuthMode::Off {
            return Err(ConfigError(
                "auth (A2A_AUTH) = \"off\": production mode never runs without authentication; \
                 remove A2A_AUTH (keys are then required) or run in development mode (A2A_ENV=development)"
                    .into(),
            ));
        }
        let max_body_bytes = raw.positive("max_body_bytes")?;
        if max_body_bytes < 1024 {
            return Err(raw.err("max_body_bytes", "at least 1024"));
        }
        let cfg = Config {
            env: env_kind,
            data_dir: PathBuf::from(raw.text("data_dir").unwrap_or_else(|| "data/state".into())),
            catalog_dir: PathBuf::from(
                raw.text("catalog_dir")
                    .unwrap_or_else(|| "data/catalog".into()),
            ),
            store,
            auto_migrate: raw.bool("auto_migrate")?,
            postgres,
            redis_url: redis_url(&raw)?,
            redis_prefix: raw.text("redis_prefix").unwrap_or_else(|| "a2a".into()),
            replica_id: raw.text("replica_id"),
            lease_ttl: {
                let d = raw.duration("lease_ttl")?;
                if d < Duration::from_millis(300) {
                    return Err(raw.err("lease_ttl", "a duration of at least 300ms"));
                }
                d
            },
            cluster_poll: {
                let d = raw.duration("cluster_poll")?;
                if d.is_zero() {
                    return Err(raw.err("cluster_poll", "a duration longer than 0"));
                }
                d
            },
            stream_host: raw.parse("stream_host", "an IP address such as 127.0.0.1 or 0.0.0.0")?,
            stream_port: raw.parse("stream_port", "a port number 0-65535")?,
            metrics_host: raw
                .parse("metrics_host", "an IP address such as 127.0.0.1 or 0.0.0.0")?,
            metrics_port: raw.parse("metrics_port", "a port number 0-65535")?,
            public_url: public_url.map(|u| u.trim_end_matches('/').to_string()),
            stream_token: raw.text("stream_token"),
            enable_streaming: raw.bool("enable_streaming")?,
            max_concurrency: raw.positive("max_concurrency")?,
            max_queue_size: raw.positive("max_queue_size")?,
            max_subs_per_request: raw.positive("max_subs_per_request")?,
            idempotency_ttl: Duration::from_millis(
                raw.parse("idemp_ttl_ms", "a number of milliseconds")?,
            ),
            retention: raw.duration("retention")?,
            sweep_interval: raw.duration("sweep_interval")?,
            log_level,
            log_format,
            allowed_hosts,
            allowed_origins,
            max_body_bytes,
            shutdown_grace: raw.duration("shutdown_grace")?,
            max_wait: raw.duration("max_wait")?,
            ws_heartbeat: raw.duration("ws_heartbeat")?,
            auth,
            stdio_role: raw.parse("stdio_role", "admin, operator, invoker or viewer")?,
            rate_limits: crate::policy::ratelimit::parse(raw.get("rate_limits").0)
                .map_err(|e| raw.err("rate_limits", &format!("name=N/s|N/m|off pairs ({e})")))?,
            tls_cert: raw.text("tls_cert").map(PathBuf::from),
            tls_key: raw.text("tls_key").map(PathBuf::from),
            tls_client_ca: raw.text("tls_client_ca").map(PathBuf::from),
            ops_tls: raw.bool("ops_tls")?,
            max_connections: raw.positive("max_connections")?,
            max_connections_per_ip: raw.positive("max_connections_per_ip")?,
            header_timeout: raw.nonzero_duration("header_timeout")?,
            idle_timeout: raw.nonzero_duration("idle_timeout")?,
            keepalive_interval: raw.nonzero_duration("keepalive_interval")?,
            backup_dir: PathBuf::from(raw.text("backup_dir").unwrap_or_else(|| "backup".into())),
            backup_interval: match raw.get("backup_interval").0.trim() {
                "off" | "0" | "" => None,
                _ => Some(raw.duration("backup_interval")?),
            },
            backup_retention_days: raw.parse("backup_retention_days", "a whole number of days")?,
            otel_endpoint: raw.text("otel_endpoint"),
            otel_protocol: match raw.get("otel_protocol").0.trim() {
                "http/protobuf" | "" => "http/protobuf".to_string(),
                "http/json" => "http/json".to_string(),
                _ => return Err(raw.err("otel_protocol", "http/protobuf or http/json")),
            },
            otel_service_name: raw
                .text("otel_service_name")
                .unwrap_or_else(|| "a2a-mcp".into()),
            otel_export_interval: raw.duration("otel_export_interval")?,
            max_streams_per_key: raw.positive("max_streams_per_key")?,
            audit_retention: raw.duration("audit_retention")?,
            audit_denial_window: {
                let d = raw.duration("audit_denial_window")?;
                if d < Duration::from_millis(100) {
                    return Err(raw.err("audit_denial_window", "a duration of at least 100ms"));
                }
                d
            },
            ops_token: raw.text("ops_token"),
            key_refresh: {
                let d = raw.duration("key_refresh")?;
                if d < Duration::from_millis(100) {
                    return Err(raw.err("key_refresh", "a duration of at least 100ms"));
                }
                d
            },
            egress_allowed_networks: crate::net::egress::parse_networks(
                &raw.list("egress_allowed_networks"),
            )
            .map_err(|e| {
                raw.err(
                    "egress_allowed_networks",
                    &format!("CIDR networks or addresses ({e})"),
                )
            })?,
            agent_callbacks: raw.bool("agent_callbacks")?,
            runtime_process_agents: match raw.get("runtime_process_agents").0.trim() {
                "admin" | "" => Some(crate::model::Role::Admin),
                "operator" => Some(crate::model::Role::Operator),
                "off" => None,
                _ => return Err(raw.err("runtime_process_agents", "admin, operator or off")),
            },
            process_limits: crate::executor::process::sandbox::parse_limits(
                raw.get("process_limits").0,
            )
            .map_err(|e| {
                raw.err(
                    "process_limits",
                    &format!(
                        "name=N|off pairs for cpu_seconds, memory_mb, open_files, processes ({e})"
                    ),
                )
            })?,
            process_cgroup: match raw.get("process_cgroup").0.trim() {
                "auto" | "" => true,
                "off" => false,
                _ => return Err(raw.err("process_cgroup", "auto or off")),
            },
            builtin_echo: match raw.get("builtin_echo").0.trim() {
                "auto" | "" => env_kind == Env::Development,
                "on" | "true" => true,
                "off" | "false" => false,
                _ => return Err(raw.err("builtin_echo", "auto, on or off")),
            },
            max_inflight_per_key: raw.positive("max_inflight_per_key")?,
            max_queued_per_key: raw.positive("max_queued_per_key")?,
            provenance: raw.values,
        };
        if cfg.tls_cert.is_some() != cfg.tls_key.is_some() {
            return Err(ConfigError(
                "tls_cert (A2A_TLS_CERT) and tls_key (A2A_TLS_KEY) must be set together".into(),
            ));
        }
        if cfg.tls_client_ca.is_some() && cfg.tls_cert.is_none() {
            return Err(ConfigError(
                "tls_client_ca (A2A_TLS_CLIENT_CA) needs tls_cert and tls_key: mTLS runs over TLS"
                    .into(),
            ));
        }
        if cfg.sweep_interval.is_zero() {
            return Err(ConfigError(
                "sweep_interval (A2A_SWEEP_INTERVAL) must be longer than 0".into(),
            ));
        }
        if cfg.ws_heartbeat.is_zero() {
            return Err(ConfigError(
                "ws_heartbeat (A2A_WS_HEARTBEAT) must be longer than 0".into(),
            ));
        }
        Ok(cfg)
    }

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

/// `redis_url`, or one built from `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`.
fn redis_url(raw: &Raw) -> Result<Option<String>, ConfigError> {
    if let Some(u) = raw.text("redis_url") {
        if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("unix://")) {
            // The value may hold a password: name the setting, never echo it.
            return Err(ConfigError(
                "redis_url (A2A_REDIS_URL / REDIS_URL): expected a redis://, rediss:// or unix:// URL"
                    .into(),
            ));
        }
        return Ok(Some(u));
    }
    let Some(host) = raw.text("redis_host") else {
        return Ok(None);
    };
    let port: u16 = raw.parse("redis_port", "a port number 1-65535")?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(Some(match raw.text("redis_password") {
        Some(p) => format!(
            "redis://:{}@{host}:{port}",
            percent_encoding::utf8_percent_encode(&p, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => format!("redis://{host}:{port}"),
    }))
}

fn postgres_settings(raw: &Raw) -> Result<PostgresSettings, ConfigError> {
    let url = raw.text("postgres_url");
    #[cfg(feature = "postgres")]
    if let Some(u) = &url
        && let Err(e) = u.parse::<tokio_postgres::Config>()
    {
        // The value may hold a password: name the setting, never echo it.
        return Err(ConfigError(format!(
            "postgres_url (A2A_POSTGRES_URL): not a valid Postgres connection URL or key=value string: {e}"
        )));
    }
    let schema = raw.text("postgres_schema").unwrap_or_else(|| "a2a".into());
    let valid_schema = schema.len() <= 63
        && schema
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_schema {
        return Err(raw.err(
            "postgres_schema",
            "a schema name of 1-63 characters a-z, 0-9 or _, starting with a letter or _",
        ));
    }
    let timeout = raw.duration("postgres_timeout")?;
    if timeout.is_zero() {
        return Err(raw.err("postgres_timeout", "a duration longer than 0"));
    }
    Ok(PostgresSettings {
        url,
        host: raw
            .text("postgres_host")
            .unwrap_or_else(|| "127.0.0.1".into()),
        port: raw.parse("postgres_port", "a port number 1-65535")?,
        db: raw.text("postgres_db"),
        user: raw
            .text("postgres_user")
            .unwrap_or_else(|| "postgres".into()),
        password: raw.text("postgres_password"),
        schema,
        tls: raw.bool("postgres_tls")?,
        ca_file: raw.text("postgres_ca_file").map(PathBuf::from),
        pool_size: raw.positive("postgres_pool_size")?,
        timeout,
    })
}

/// One name of `allowed_hosts`: lower-case, without a trailing dot; `port: None` accepts any
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    pub name: String,
    pub port: Option<u16>,
}

impl HostName {
    /// `name`, `name:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; `None` when it is not
    /// a valid host (the same grammar as a `Host` header).
    pub fn parse(s: &str) -> Option<HostName> {
        let s = s.trim();
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some(HostName {
                name: s.to_ascii_lowercase(),
                port: None,
            });
        }
        let authority: http::uri::Authority = s.parse().ok()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        Some(HostName {
            name,
            port: authority.port_u16(),
        })
    }

    /// Whether a request's Host (already parsed) is this entry.
    pub fn matches(&self, host: &HostName) -> bool {
        self.name == host.name && self.port.is_none_or(|p| Some(p) == host.port)
    }
}

/// The default port of a URL scheme (`None` when the scheme has none we know).
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// A browser origin (`scheme://host[:port]`, or `null`) in one canonical spelling: lower-case
/// scheme and host, IPv6 in brackets, the port always written when the scheme has a default
/// one. `None` when the text is not an origin (a path, a query, credentials, a wildcard).
pub fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("null") {
        return Some("null".into());
    }
    let s = s.strip_suffix('/').unwrap_or(s);
    let uri: http::Uri = s.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.as_str().contains('*') {
        return None;
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return None;
    }
    let host = HostName::parse(authority.as_str())?;
    let shown = if host.name.contains(':') {
        format!("[{}]", host.name)
    } else {
        host.name
    };
    Some(match host.port.or(default_port(&scheme)) {
        Some(port) => format!("{scheme}://{shown}:{port}"),
        None => format!("{scheme}://{shown}"),
    })
}

/// Host part of an http(s) URL, without port or brackets.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h.to_string());
    }
    Some(authority.split(':').next()?.to_string())
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config {}: cannot read: {e}", path.display())))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError(format!(
            "--config {}: not valid TOML: {}",
            path.display(),
            e.message()
        ))
    })?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        if setting(&k).is_none() {
            return Err(ConfigError(format!(
                "--config {}: unknown setting {k:?}; `a2a-mcp check-config --docs` lists them",
                path.display()
            )));
        }
        out.insert(canonical_key(&k).to_string(), toml_to_text(&v));
    }
    Ok(out)
}

/// `docs/CONFIGURATION.md`, generated from [`SETTINGS`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         Generated from `src/config.rs` by `a2a-mcp check-config --docs`; a test fails when this file drifts.\n\n\
         Precedence: command-line flags (`--set KEY=VALUE` and the named flags) > environment > \
         TOML file (`--config FILE`, keys as below) > defaults. Secrets can also be read from a \
         file named by `<ENV>_FILE`. `a2a-mcp check-config` prints the effective values and where \
         each came from, with secrets masked.\n\n\
         | Key | Environment | Default | Meaning |\n|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let env = s
            .env
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let default = if s.default.is_empty() {
            "(unset)".to_string()
        } else {
            format!("`{}`", s.default)
        };
        out.push_str(&format!(
            "| `{}` | {env} | {default} | {} |\n",
            s.key, s.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], flags: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sources = Sources {
            file: None,
            flags: flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        Config::load_with(&sources, |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_are_valid() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.stream_port, 8787);
        assert_eq!(c.metrics_port, 3000);
        assert_eq!(c.max_concurrency, 50);
        assert_eq!(c.max_queue_size, 10_000);
        assert_eq!(c.idempotency_ttl, Duration::from_secs(900));
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn flags_beat_env_and_node_env_is_an_alias() {
        let c = load(
            &[("STREAM_PORT", "9000"), ("NODE_ENV", "production")],
            &[("stream_port", "9100")],
        )
        .unwrap();
        assert_eq!(c.stream_port, 9100);
        assert_eq!(c.env, Env::Production);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = load(&[("STREAM_PORT", "eighty")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stream_port") && e.contains("STREAM_PORT") && e.contains("eighty"),
            "{e}"
        );
        let e = load(&[("MAX_CONCURRENCY", "0")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("MAX_CONCURRENCY"), "{e}");
        let e = load(&[("A2A_RETENTION", "forever")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("A2A_RETENTION"), "{e}");
    }

    #[test]
    fn egress_networks_keep_their_old_names() {
        let net: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
        for (env, flags) in [
            (vec![("A2A_EGRESS_ALLOWED_NETWORKS", "127.0.0.0/8")], vec![]),
            (vec![("A2A_PUSH_ALLOWED_NETWORKS", "127.0.0.0/8")], vec![]),
            (vec![], vec![("push_allowed_networks", "127.0.0.0/8")]),
            (vec![], vec![("egress_allowed_networks", "127.0.0.0/8")]),
        ] {
            let c = load(&env, &flags).unwrap();
            assert_eq!(c.egress_allowed_networks, vec![net], "{env:?} {flags:?}");
        }
        let e = load(&[("A2A_PUSH_ALLOWED_NETWORKS", "nope")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("A2A_EGRESS_ALLOWED_NETWORKS") && e.contains("nope"),
            "{e}"
        );
    }

    #[test]
    fn store_settings() {
        let c = load(&[("A2A_STORE", "sqlite")], &[]).unwrap();
        assert_eq!(c.store, StoreKind::Sqlite);
        assert!(c.auto_migrate);
        assert_eq!(c.postgres.schema, "a2a");
        assert_eq!(c.postgres.port, 5432);
        let e = load(&[("A2A_STORE", "mysql")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("A2A_STORE") && e.contains("sqlite"), "{e}");
        let e = load(&[("A2A_POSTGRES_SCHEMA", "Robert'); DROP")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("A2A_POSTGRES_SCHEMA"), "{e}");
        #[cfg(feature = "postgres")]
        {
            let c = load(
                &[
                    ("A2A_STORE", "postgres"),
                    ("A2A_POSTGRES_URL", "postgres://u:pw@db:5433/hub"),
                ],
                &[],
            )
            .unwrap();
            assert_eq!(c.store, StoreKind::Postgres);
            let e = load(
                &[("A2A_POSTGRES_URL", "postgres://u:secret@db:notaport/x")],
                &[],
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("A2A_POSTGRES_URL") && !e.contains("secret"),
                "{e}"
            );
        }
    }

    #[test]
    fn hosts_and_origins_are_normalised_and_checked() {
        assert_eq!(
            HostName::parse("Hub.Example.com.:8443"),
            Some(HostName {
                name: "hub.example.com".into(),
                port: Some(8443)
            })
        );
        assert_eq!(HostName::parse("::1").map(|h| h.name), Some("::1".into()));
        assert_eq!(HostName::parse("[::1]:80").and_then(|h| h.port), Some(80));
        assert_eq!(HostName::parse("user@host"), None);
        assert_eq!(HostName::parse("a b"), None);
        let any = HostName::parse("hub.example.com").unwrap();
        assert!(any.matches(&HostName::parse("hub.example.com:1234").unwrap()));
        let one = HostName::parse("hub.example.com:8443").unwrap();
        assert!(!one.matches(&HostName::parse("hub.example.com:8444").unwrap()));
        assert_eq!(
            normalize_origin("HTTPS://App.Example.com/").as_deref(),
            Some("https://app.example.com:443")
        );
        assert_eq!(
            normalize_origin("http://[::1]:8787").as_deref(),
            Some("http://[::1]:8787")
        );
        assert_eq!(normalize_origin("null").as_deref(), Some("null"));
        for bad in [
            "*",
            "https://*.example.com",
            "https://a/path",
            "app.example.com",
            "",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
        let e = load(&[("A2A_ALLOWED_ORIGINS", "https://a.example/x")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("A2A_ALLOWED_ORIGINS"), "{e}");
        let c = load(&[("A2A_PUBLIC_URL", "https://hub.example.com")], &[]).unwrap();
        assert_eq!(c.allowed_hosts[0].name, "hub.example.com");
    }

    #[test]
    fn production_never_runs_without_authentication() {
        let e = load(&[("A2A_ENV", "production"), ("A2A_AUTH", "off")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("A2A_AUTH") && e.contains("production"), "{e}");
        assert!(load(&[("A2A_AUTH", "off")], &[]).is_ok());
    }

    #[test]
    fn url_host_parses() {
        assert_eq!(
            url_host("https://hub.example.com:8443/x").as_deref(),
            Some("hub.example.com")
        );
        assert_eq!(url_host("http://[::1]:80").as_deref(), Some("::1"));
    }
}
