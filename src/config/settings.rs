//! The one list of settings ([`SETTINGS`]: key, environment names, default, meaning), the
//! keys that were renamed, and the reference page generated from the list
//! (`docs/CONFIGURATION.md`, [`markdown`]).

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

pub(super) fn setting(key: &str) -> Option<&'static Setting> {
    let key = canonical_key(key);
    SETTINGS.iter().find(|s| s.key == key)
}

/// Keys that were renamed, still accepted in files and flags: (old, new).
const RENAMED: &[(&str, &str)] = &[("push_allowed_networks", "egress_allowed_networks")];

pub(super) fn canonical_key(key: &str) -> &str {
    RENAMED
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// `docs/CONFIGURATION.md`, generated from [`SETTINGS`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Configuration\n\n\
         Generated from `src/config/settings.rs` by `a2a-mcp check-config --docs`; a test fails when this file drifts.\n\n\
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
