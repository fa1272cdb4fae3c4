//! `a2a-mcp agents list|deploy|remove`.
//!
//! Offline (no server holds the store): reads and writes the store directly, with the same
//! validation and records as the running hub. When a server holds the store, the command
//! goes through that server's REST API (`--url`, default the configured API address) and
//! says so. On Postgres (no process lock) a server that answers at that address is used.

use std::path::PathBuf;

use clap::Subcommand;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use super::Exit;
use super::serve::hub_config;
use crate::config::Config;
use crate::hub::registry;
use crate::model::AgentSpec;
use crate::store::{self, StoreError};

#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// List the agents (catalog merged with run-time changes).
    List {
        /// API base of a running server (default: the configured STREAM_HOST:STREAM_PORT).
        #[arg(long)]
        url: Option<String>,
    },
    /// Deploy the agents of a catalog-format TOML file (or one JSON agent definition).
    Deploy {
        file: PathBuf,
        /// Replace agents that already exist.
        #[arg(long)]
        replace: bool,
        #[arg(long)]
        url: Option<String>,
    },
    /// Remove an agent.
    Remove {
        id: String,
        #[arg(long)]
        url: Option<String>,
    },
}

fn read_specs(path: &PathBuf) -> Result<Vec<AgentSpec>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if path.extension().is_some_and(|x| x == "json") {
        let spec: AgentSpec = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a valid agent definition: {e}", path.display()))?;
        return Ok(vec![spec]);
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        agents: Vec<AgentSpec>,
    }
    let f: File =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    Ok(f.agents)
}

pub async fn run(config: Config, cmd: AgentsCommand) -> Exit {
    let url = match &cmd {
        AgentsCommand::List { url }
        | AgentsCommand::Deploy { url, .. }
        | AgentsCommand::Remove { url, .. } => url.clone(),
    };
    let base = url.unwrap_or_else(|| {
        let host = if config.stream_host.is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            config.stream_host.to_string()
        };
        format!("http://{host}:{}", config.stream_port)
    });
    if config.store == crate::config::StoreKind::Postgres
        && call(http::Method::GET, format!("{base}/api/v1/agents"), None)
            .await
            .is_ok()
    {
        // A shared database has no process lock, and a running server would not notice
        // direct writes: when a server answers, go through it.
        eprintln!("a server is running on this database; using its API at {base}");
        return online(&base, cmd).await;
    }
    match store::open(&config).await {
        Ok(st) => {
            let r = offline(&config, st.clone(), cmd).await;
            let _ = st.close().await;
            r
        }
        Err(StoreError::Locked(_)) => {
            eprintln!("the store is held by a running server; using its API at {base}");
            online(&base, cmd).await
        }
        Err(e) => Exit::Failed(format!("cannot open the store: {e}")),
    }
}

fn print_agent(v: &Value) {
    println!(
        "{:<24} {:<8} {:<9} {}",
        v["id"].as_str().unwrap_or(""),
        if v["enabled"].as_bool().unwrap_or(false) {
            "enabled"
        } else {
            "disabled"
        },
        v["executor"].as_str().unwrap_or(""),
        v["capabilities"]
            .as_array()
            .map(|c| c
                .iter()
                .filter_map(|x| x["name"].as_str())
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default()
    );
}

async fn offline(config: &Config, st: store::DynStore, cmd: AgentsCommand) -> Exit {
    let env = hub_config(config).executor_env;
    let catalog = match crate::catalog::load(&config.catalog_dir) {
        Ok(c) => c,
        Err(e) => return Exit::Failed(e.to_string()),
    };
    let stored = match st.list_agents().await {
        Ok(s) => s,
        Err(e) => return Exit::Failed(e.to_string()),
    };
    let entries = match registry::merge_catalog(catalog, stored, &env) {
        Ok((entries, _)) => entries,
        Err(e) => return Exit::Failed(e.message),
    };
    match cmd {
        AgentsCommand::List { .. } => {
            let mut entries = entries;
            entries.sort_by(|a, b| a.spec.id.cmp(&b.spec.id));
            for e in &entries {
                print_agent(&crate::api::agent_view(e, false));
            }
            Exit::Ok
        }
        AgentsCommand::Deploy { file, replace, .. } => {
            let specs = match read_specs(&file) {
                Ok(s) => s,
                Err(e) => return Exit::Usage(e),
            };
            let mut ops = Vec::new();
            for spec in specs {
                if !replace && entries.iter().any(|e| e.spec.id == spec.id) {
                    return Exit::Failed(format!(
                        "agent {:?} already exists; use --replace",
                        spec.id
                    ));
                }
                let id = spec.id.clone();
                match registry::deploy_op(spec, &env) {
                    Ok((_, op)) => ops.push(op),
                    Err(e) => return Exit::Failed(e.message),
                }
                println!("deployed {id}");
            }
            match st.write(ops).await {
                Ok(()) => Exit::Ok,
                Err(e) => Exit::Failed(e.to_string()),
            }
        }
        AgentsCommand::Remove { id, .. } => {
            let Some(entry) = entries.iter().find(|e| e.spec.id == id) else {
                return Exit::Failed(format!("no agent {id:?}"));
            };
            match st.write(vec![registry::remove_op(entry)]).await {
                Ok(()) => {
                    println!("removed {id}");
                    Exit::Ok
                }
                Err(e) => Exit::Failed(e.to_string()),
            }
        }
    }
}

async fn call(method: http::Method, url: String, body: Option<Value>) -> Result<Value, String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header(http::header::CONTENT_TYPE, "application/json")
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

async fn online(base: &str, cmd: AgentsCommand) -> Exit {
    let api = format!("{}/api/v1", base.trim_end_matches('/'));
    match cmd {
        AgentsCommand::List { .. } => {
            match call(
                http::Method::GET,
                format!("{api}/agents?includeDisabled=true"),
                None,
            )
            .await
            {
                Ok(v) => {
                    for a in v["agents"].as_array().into_iter().flatten() {
                        print_agent(a);
                    }
                    Exit::Ok
                }
                Err(e) => Exit::Failed(e),
            }
        }
        AgentsCommand::Deploy { file, replace, .. } => {
            let specs = match read_specs(&file) {
                Ok(s) => s,
                Err(e) => return Exit::Usage(e),
            };
            for spec in specs {
                let body = match serde_json::to_value(&spec) {
                    Ok(b) => b,
                    Err(e) => return Exit::Failed(e.to_string()),
                };
                let url = format!("{api}/agents?replace={replace}");
                if let Err(e) = call(http::Method::POST, url, Some(body)).await {
                    return Exit::Failed(format!("{}: {e}", spec.id));
                }
                println!("deployed {}", spec.id);
            }
            Exit::Ok
        }
        AgentsCommand::Remove { id, .. } => {
            match call(http::Method::DELETE, format!("{api}/agents/{id}"), None).await {
                Ok(_) => {
                    println!("removed {id}");
                    Exit::Ok
                }
                Err(e) => Exit::Failed(e),
            }
        }
    }
}
