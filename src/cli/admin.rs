//! `a2a-mcp keys create|list|revoke` and `a2a-mcp audit list`.
//!
//! Offline (no server holds the store) the command opens the hub in admin mode and acts as
//! the local administrator. When a running server holds the store, it goes through that
//! server's admin API (`--url`, default the configured API address, with `--token` or
//! `A2A_ADMIN_TOKEN` — an admin key — unless the server requires no key) and says so.

use std::time::Duration;

use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::Exit;
use super::serve::hub_config;
use crate::config::Config;
use crate::hub::Hub;
use crate::model::{Principal, Role, Surface, now_ms};
use crate::store::{self, StoreError};

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create an API key; the key is printed once.
    Create {
        /// admin, operator, invoker or viewer.
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "")]
        label: String,
        /// e.g. 30d, 12h (default: no expiry).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List API keys (never the secrets).
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke an API key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print audit entries, oldest first.
    List {
        /// Entries after this entry id.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
}

/// How to reach a running server when the store is in use.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Remote {
    /// API base of a running server, e.g. http://127.0.0.1:8787.
    #[arg(long)]
    pub url: Option<String>,
    /// Admin API key for the running server (or A2A_ADMIN_TOKEN).
    #[arg(long, env = "A2A_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The configured API listener as a base URL, for commands that talk to a running server.
pub(super) fn default_api_base(config: &Config) -> String {
    let host = if config.stream_host.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.stream_host.to_string()
    };
    let scheme = if config.tls_enabled() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}:{}", config.stream_port)
}

fn local_admin() -> Principal {
    Principal::new("local", Role::Admin).with_surface(Surface::Cli)
}

enum Target {
    Local(Hub),
    Remote { base: String, token: Option<String> },
}

/// True when the store is a shared database (no process lock) and a server answers at
/// `base`: a running server would not notice direct writes, so commands go through it.
pub(super) async fn server_shares_the_store(config: &Config, base: &str) -> bool {
    if config.store != crate::store::StoreKind::Postgres {
        return false;
    }
    let url = format!("{}/api/v1/openapi.json", base.trim_end_matches('/'));
    if call(http::Method::GET, url, None, None).await.is_ok() {
        eprintln!("a server is running on this database; using its API at {base}");
        true
    } else {
        false
    }
}

async fn target(config: &Config, remote: &Remote) -> Result<Target, String> {
    let base = remote
        .url
        .clone()
        .unwrap_or_else(|| default_api_base(config));
    if server_shares_the_store(config, &base).await {
        return Ok(Target::Remote {
            base,
            token: remote.token.clone(),
        });
    }
    match store::open(&config.into()).await {
        Ok(st) => {
            let catalog = crate::catalog::load(&config.catalog_dir).map_err(|e| e.to_string())?;
            let hub = Hub::open_admin(hub_config(config), st, catalog)
                .await
                .map_err(|e| e.message)?;
            Ok(Target::Local(hub))
        }
        Err(StoreError::Locked(_)) => {
            eprintln!("the store is held by a running server; using its admin API at {base}");
            Ok(Target::Remote {
                base,
                token: remote.token.clone(),
            })
        }
        Err(e) => Err(format!("cannot open the store: {e}")),
    }
}

pub(super) async fn call(
    method: http::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Value, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(crate::net::http_client::https_connector()?);
    let mut req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = req
        .body(Full::new(bytes::Bytes::from(bytes)))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(v)
    } else {
        Err(v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}")))
    }
}

fn print_key(v: &Value) {
    println!(
        "{:<14} {:<9} {:<8} {:<26} {}",
        v["id"].as_str().unwrap_or(""),
        v["role"].as_str().unwrap_or(""),
        if v["active"].as_bool().unwrap_or(false) {
            "active"
        } else {
            "inactive"
        },
        v["expiresAt"].as_str().unwrap_or("never"),
        v["label"].as_str().unwrap_or("")
    );
}

pub async fn keys(config: Config, cmd: KeysCommand) -> Exit {
    let remote = match &cmd {
        KeysCommand::Create { remote, .. }
        | KeysCommand::List { remote }
        | KeysCommand::Revoke { remote, .. } => remote.clone(),
    };
    let t = match target(&config, &remote).await {
        Ok(t) => t,
        Err(e) => return Exit::Failed(e),
    };
    let result: Result<(), String> = match (&t, cmd) {
        (
            Target::Local(hub),
            KeysCommand::Create {
                role,
                label,
                expires_in,
                ..
            },
        ) => match role.parse::<Role>() {
            Err(e) => Err(e),
            Ok(role) => match hub
                .create_key(&local_admin(), role, &label, expires_in)
                .await
            {
                Ok((token, rec)) => {
                    println!("{token}");
                    eprintln!(
                        "created key {} (role {}); the key above is shown only once: store it now",
                        rec.id,
                        rec.role.as_str()
                    );
                    Ok(())
                }
                Err(e) => Err(e.message),
            },
        },
        (Target::Local(hub), KeysCommand::List { .. }) => match hub.list_keys(&local_admin()).await
        {
            Ok(keys) => {
                let now = now_ms();
                for k in keys {
                    print_key(&crate::api::views::to_json(
                        &crate::api::views::KeyView::at(&k, now),
                    ));
                }
                Ok(())
            }
            Err(e) => Err(e.message),
        },
        (Target::Local(hub), KeysCommand::Revoke { id, .. }) => {
            match hub.revoke_key(&local_admin(), &id).await {
                Ok(_) => {
                    println!("revoked {id}");
                    Ok(())
                }
                Err(e) => Err(e.message),
            }
        }
        (
            Target::Remote { base, token },
            KeysCommand::Create {
                role,
                label,
                expires_in,
                ..
            },
        ) => {
            let mut body = serde_json::json!({"role": role, "label": label});
            if let Some(d) = expires_in {
                body["expiresIn"] = Value::String(humantime::format_duration(d).to_string());
            }
            call(
                http::Method::POST,
                format!("{base}/api/v1/admin/keys"),
                token.as_deref(),
                Some(body),
            )
            .await
            .map(|v| {
                println!("{}", v["key"].as_str().unwrap_or(""));
                eprintln!(
                    "created key {}; the key above is shown only once: store it now",
                    v["id"].as_str().unwrap_or("")
                );
            })
        }
        (Target::Remote { base, token }, KeysCommand::List { .. }) => call(
            http::Method::GET,
            format!("{base}/api/v1/admin/keys"),
            token.as_deref(),
            None,
        )
        .await
        .map(|v| {
            for k in v["keys"].as_array().into_iter().flatten() {
                print_key(k);
            }
        }),
        (Target::Remote { base, token }, KeysCommand::Revoke { id, .. }) => call(
            http::Method::DELETE,
            format!("{base}/api/v1/admin/keys/{id}"),
            token.as_deref(),
            None,
        )
        .await
        .map(|_| println!("revoked {id}")),
    };
    if let Target::Local(hub) = &t {
        hub.close_admin().await;
    }
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => Exit::Failed(e),
    }
}

pub async fn audit(config: Config, cmd: AuditCommand) -> Exit {
    let AuditCommand::List {
        after,
        limit,
        remote,
    } = cmd;
    let t = match target(&config, &remote).await {
        Ok(t) => t,
        Err(e) => return Exit::Failed(e),
    };
    let entries: Result<Vec<Value>, String> = match &t {
        Target::Local(hub) => hub
            .list_audit(&local_admin(), after.as_deref(), limit)
            .await
            .map(|es| {
                es.iter()
                    .map(|e| {
                        crate::api::views::to_json(&crate::api::views::AuditEntryView::from(e))
                    })
                    .collect()
            })
            .map_err(|e| e.message),
        Target::Remote { base, token } => {
            let mut url = format!("{base}/api/v1/admin/audit?limit={limit}");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            call(http::Method::GET, url, token.as_deref(), None)
                .await
                .map(|v| v["entries"].as_array().cloned().unwrap_or_default())
        }
    };
    if let Target::Local(hub) = &t {
        hub.close_admin().await;
    }
    match entries {
        Ok(es) => {
            for e in es {
                println!("{e}");
            }
            Exit::Ok
        }
        Err(e) => Exit::Failed(e),
    }
}
