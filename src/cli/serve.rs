//! `serve` and in-process `stdio`: open the store, start the hub, start the listeners, wait
//! for a signal (or stdin EOF), shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::ServiceExt;

use super::Exit;
use crate::api::ApiContext;
use crate::api::mcp::McpServer;
use crate::config::{AuthMode, Config};
use crate::executor::ExecutorEnv;
use crate::hub::{AuthStatus, Hub, HubConfig};
use crate::model::{Principal, Surface};
use crate::server::{self, Listener};
use crate::store::{self, StoreError};

/// The hub configuration derived from the server configuration.
pub fn hub_config(config: &Config) -> HubConfig {
    let egress = Arc::new(crate::net::egress::EgressPolicy::new(
        config.egress_allowed_networks.clone(),
    ));
    HubConfig {
        max_concurrency: config.max_concurrency,
        max_queue_size: config.max_queue_size,
        max_inflight_per_key: config.max_inflight_per_key,
        max_queued_per_key: config.max_queued_per_key,
        max_subs_per_request: config.max_subs_per_request,
        max_streams_per_key: config.max_streams_per_key,
        idempotency_ttl: config.idempotency_ttl,
        retention: config.retention,
        sweep_interval: config.sweep_interval,
        max_wait: config.max_wait,
        executor_env: ExecutorEnv {
            catalog_dir: config.catalog_dir.clone(),
            work_dir: config.data_dir.join("work"),
            egress: egress.clone(),
            builtin_echo: config.builtin_echo,
            process_limits: config.process_limits.clone(),
            process_cgroup: config.process_cgroup,
        },
        // Production mode never runs open: `auto` requires keys from the start there.
        auth: match (config.is_production(), config.auth) {
            (true, AuthMode::Auto) => AuthMode::Required,
            (_, mode) => mode,
        },
        stream_token: config.stream_token.clone(),
        rate_limits: config.rate_limits.clone(),
        audit_retention: config.audit_retention,
        audit_denial_window: config.audit_denial_window,
        key_refresh: config.key_refresh,
        agent_callbacks: config.agent_callbacks,
        runtime_process_agents: config.runtime_process_agents,
        backup_dir: config.backup_dir.clone(),
        backup_interval: config.backup_interval,
        backup_retention_days: config.backup_retention_days,
        replica_id: config.replica_id.clone(),
        lease_ttl: config.lease_ttl,
        cluster_poll: config.cluster_poll,
        redis_url: config.redis_url.clone(),
        redis_prefix: config.redis_prefix.clone(),
        egress,
    }
}

/// Opens the store and starts the hub; errors are one printable line. The state and backup
/// directories are made private first (`crate::files`).
pub async fn open_hub(config: &Config) -> Result<Hub, String> {
    crate::files::private_dir(&config.data_dir).map_err(|e| {
        format!(
            "cannot create the state directory {} (A2A_DATA_DIR): {e}",
            config.data_dir.display()
        )
    })?;
    crate::backup::secure_dir(&config.backup_dir).map_err(|e| e.to_string())?;
    let store = store::open(&config.into()).await.map_err(|e| match e {
        StoreError::Locked(m) | StoreError::TooNew(m) => m,
        other => format!("cannot open the store: {other}"),
    })?;
    let catalog = crate::catalog::load(&config.catalog_dir).map_err(|e| e.to_string())?;
    Hub::start(hub_config(config), store, catalog)
        .await
        .map_err(|e| format!("cannot start the hub: {}", e.message))
}

/// `1d`, `6h`, `90m`, `45s`: how intervals are written in the configuration.
fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// A directory as an absolute path: the working directory of a service or a desktop client
/// is often not what the reader assumes.
fn shown(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

fn summary(config: &Config, hub: &Hub, api: Option<&Listener>, ops: Option<&Listener>) {
    let stats = hub.stats();
    let line = |k: &str, v: String| eprintln!("  {k:<12} {v}");
    eprintln!("a2a-mcp {} ready", env!("CARGO_PKG_VERSION"));
    line(
        "mode",
        if config.is_production() {
            "production"
        } else {
            "development"
        }
        .into(),
    );
    line(
        "store",
        match config.store {
            crate::store::StoreKind::Postgres => {
                format!("postgres, schema {}", config.postgres.schema)
            }
            _ => format!("{} in {}", hub.store_backend(), shown(&config.data_dir)),
        },
    );
    line(
        "catalog",
        if config.catalog_dir.is_dir() {
            format!(
                "{} ({} agents, {} enabled)",
                shown(&config.catalog_dir),
                stats.agents_total,
                stats.agents_enabled
            )
        } else {
            format!(
                "{} does not exist ({} agents from the store); set --catalog-dir",
                shown(&config.catalog_dir),
                stats.agents_total
            )
        },
    );
    line(
        "backups",
        match config.backup_interval {
            Some(every) => format!(
                "{}, every {}, kept {} days",
                shown(&config.backup_dir),
                short_duration(every),
                config.backup_retention_days
            ),
            None => format!("{} (no scheduled backups)", shown(&config.backup_dir)),
        },
    );
    if let Some(api) = api {
        let ws = if api.tls { "wss" } else { "ws" };
        line("mcp", format!("{}://{}/mcp", api.scheme(), api.addr));
        if config.enable_streaming {
            line("stream", format!("{ws}://{}/stream", api.addr));
        }
        line("rest", format!("{}://{}/api/v1", api.scheme(), api.addr));
        line(
            "a2a",
            format!(
                "{}://{}/.well-known/agent-card.json  /a2a/{{agentId}}",
                api.scheme(),
                api.addr
            ),
        );
    }
    if let Some(ops) = ops {
        line(
            "ops",
            format!("{}://{}/healthz  /readyz  /metrics", ops.scheme(), ops.addr),
        );
    }
    line(
        "limits",
        format!(
            "concurrency {}, queue {}",
            config.max_concurrency, config.max_queue_size
        ),
    );
    line("auth", auth_line(config, hub));
    line(
        "tls",
        match &config.tls_cert {
            Some(c) => format!("on ({})", c.display()),
            None => "off".to_string(),
        },
    );
}

/// The `auth` line of the summary: whether keys are required and why, or who may call.
fn auth_line(config: &Config, hub: &Hub) -> String {
    match hub.auth_status() {
        AuthStatus::Required if config.is_production() && !hub.keys_ever_existed() => {
            "required (production mode); no key exists yet: stop the server, run \
             `a2a-mcp keys create --role admin`, start again"
                .into()
        }
        AuthStatus::Required if config.auth == AuthMode::Required => {
            "required (A2A_AUTH=required)".into()
        }
        AuthStatus::Required => "required (production mode)".into(),
        AuthStatus::KeysExist => "required (keys exist)".into(),
        AuthStatus::OpenNoKeyYet => "open to loopback callers only (no key created yet; after \
             `a2a-mcp keys create --role admin` keys are required for good)"
            .into(),
        AuthStatus::Off => "off: open to loopback callers only (A2A_AUTH=off)".into(),
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called,
/// not when the future is first polled: call it before the ready summary, so a signal sent as
/// soon as the server says it is ready stops it gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        if let (Ok(mut term), Ok(mut int)) = handlers {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Production mode requires keys (it never runs open) and refuses an API listener on a
/// non-loopback address while no key is usable: nobody could call it, and nobody could create
/// a key through it.
fn refuse_unsafe_start(config: &Config, hub: &Hub) -> Option<String> {
    if !config.is_production() || config.stream_host.is_loopback() || hub.has_active_keys() {
        return None;
    }
    Some(format!(
        "refusing to listen on {}:{} in production without an API key: create an admin key \
         first with `a2a-mcp --data-dir {} keys create --role admin` (server stopped), then \
         start again",
        config.stream_host,
        config.stream_port,
        config.data_dir.display(),
    ))
}

pub async fn serve(config: Config) -> Exit {
    let config = Arc::new(config);
    let hub = match open_hub(&config).await {
        Ok(h) => h,
        Err(e) => return Exit::Failed(e),
    };
    if let Some(msg) = refuse_unsafe_start(&config, &hub) {
        hub.shutdown(config.shutdown_grace).await;
        return Exit::Failed(msg);
    }
    crate::api::a2a::start_push_delivery(&hub);
    let ctx = ApiContext::new(hub.clone(), config.clone());
    let ops_addr = SocketAddr::new(config.metrics_host, config.metrics_port);
    let ops = match server::start_ops(ctx.clone(), ops_addr).await {
        Ok(l) => l,
        Err(e) => {
            hub.shutdown(config.shutdown_grace).await;
            return Exit::Failed(format!("cannot listen on {ops_addr} (METRICS_PORT): {e}"));
        }
    };
    let api_addr = SocketAddr::new(config.stream_host, config.stream_port);
    let api = match server::start_api(ctx.clone(), api_addr).await {
        Ok(l) => l,
        Err(e) => {
            hub.shutdown(config.shutdown_grace).await;
            return Exit::Failed(format!(
                "cannot listen on {api_addr} (STREAM_HOST/STREAM_PORT): {e}"
            ));
        }
    };
    let stop = shutdown_signal();
    summary(&config, &hub, Some(&api), Some(&ops));
    stop.await;
    tracing::info!(
        grace = ?config.shutdown_grace,
        "shutting down: no new connections; running jobs may finish"
    );
    let grace = config.shutdown_grace;
    // Readiness drops first (hub.shutdown), listeners stop accepting, jobs get the grace.
    let hub_done = hub.shutdown(grace);
    let api_done = api.shutdown(grace);
    let ops_done = ops.shutdown(grace);
    tokio::join!(hub_done, api_done, ops_done);
    tracing::info!("stopped");
    Exit::Ok
}

/// MCP over stdio with the hub in this process. The stream listener still runs (so
/// `streamUrl` works), on `STREAM_PORT` or a free port when that one is taken.
pub async fn stdio(config: Config) -> Exit {
    let config = Arc::new(config);
    let hub = match open_hub(&config).await {
        Ok(h) => h,
        Err(e) => return Exit::Failed(format!("a2a-mcp stdio: {e}")),
    };
    crate::api::a2a::start_push_delivery(&hub);
    let ctx = ApiContext::new(hub.clone(), config.clone());
    let mut api = None;
    if config.enable_streaming {
        let wanted = SocketAddr::new(config.stream_host, config.stream_port);
        let listener = match server::start_api(ctx.clone(), wanted).await {
            Ok(l) => Ok(l),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tracing::warn!(%wanted, "STREAM_PORT is taken; serving streams on a free port instead");
                server::start_api(ctx.clone(), SocketAddr::new(config.stream_host, 0)).await
            }
            Err(e) => Err(e),
        };
        match listener {
            Ok(l) => api = Some(l),
            Err(e) => tracing::warn!("no stream listener ({e}); streamUrl will be null"),
        }
    }
    let stop = shutdown_signal();
    summary(&config, &hub, api.as_ref(), None);
    let principal = Principal::new("local", config.stdio_role).with_surface(Surface::Stdio);
    let server = McpServer::stdio(ctx, principal);
    let result = match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            tokio::select! {
                r = running.waiting() => r.map(|_| ()).map_err(|e| e.to_string()),
                _ = stop => Ok(()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    if let Some(api) = api {
        api.shutdown(config.shutdown_grace).await;
    }
    hub.shutdown(config.shutdown_grace).await;
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => Exit::Failed(format!("a2a-mcp stdio: {e}")),
    }
}
