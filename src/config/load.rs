//! Resolving and typing: raw strings from flags, environment (and `*_FILE` for secrets), the
//! TOML file and defaults become a typed [`Config`] in [`Config::load`], which refuses an
//! invalid value with one line naming the setting, the value and what is allowed. This is the
//! only place that reads the process environment for settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::hosts::{HostName, normalize_origin, url_host};
use super::settings::{SETTINGS, canonical_key, setting};
use super::{AuthMode, Config, ConfigError, Env, LogFormat, Sources};
use crate::store::{PostgresSettings, StoreKind};

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
