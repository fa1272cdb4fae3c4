//! `a2a-mcp agents list|deploy|remove|import-card`.
//!
//! Offline (no server holds the store): reads and writes the store directly, with the same
//! validation and records as the running hub. When a server holds the store, the command
//! goes through that server's REST API (`--url`, default the configured API address) and
//! says so. On Postgres (no process lock) a server that answers at that address is used.
//!
//! `import-card` never fetches the card in the CLI process when a server runs: the server
//! reads it (`POST /api/v1/agents/import-card`), after checking the key's role and through
//! its egress policy. Offline, the CLI reads it under the same policy from the same
//! configuration (`A2A_EGRESS_ALLOWED_NETWORKS` for a card on an internal address).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::Value;

use super::Exit;
use super::admin::call;
use super::serve::hub_config;
use crate::config::Config;
use crate::hub::Hub;
use crate::model::{AgentSpec, Principal, Role, Surface};
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
    /// Host a remote A2A agent: read its Agent Card and register an `a2a` agent whose
    /// capabilities are the card's skills.
    ImportCard {
        /// The remote Agent Card URL, or the remote agent's base URL
        /// (the card is then read from <URL>/.well-known/agent-card.json).
        card_url: String,
        /// Id to register the agent under (default: derived from the card's name).
        #[arg(long)]
        id: Option<String>,
        /// Replace an agent that already exists with that id.
        #[arg(long)]
        replace: bool,
        /// API base of a running server (default: the configured STREAM_HOST:STREAM_PORT).
        #[arg(long)]
        url: Option<String>,
    },
}

/// `imported ID from URL (N capabilities: a, b)`, from an agent view.
fn print_imported(view: &Value, card_url: &str) {
    let caps: Vec<&str> = view["capabilities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    println!(
        "imported {} from {card_url} ({} capabilities: {})",
        view["id"].as_str().unwrap_or(""),
        caps.len(),
        caps.join(", ")
    );
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
        | AgentsCommand::Remove { url, .. }
        | AgentsCommand::ImportCard { url, .. } => url.clone(),
    };
    let base = url.unwrap_or_else(|| super::admin::default_api_base(&config));
    if super::admin::server_shares_the_store(&config, &base).await {
        return online(&base, cmd).await;
    }
    match store::open(&(&config).into()).await {
        Ok(st) => {
            let catalog = match crate::catalog::load(&config.catalog_dir) {
                Ok(c) => c,
                Err(e) => return Exit::Failed(e.to_string()),
            };
            let hub = match Hub::open_admin(hub_config(&config), st, catalog).await {
                Ok(h) => h,
                Err(e) => return Exit::Failed(e.message),
            };
            let r = offline(&hub, cmd).await;
            hub.close_admin().await;
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

async fn offline(hub: &Hub, cmd: AgentsCommand) -> Exit {
    let me = Principal::new("local", Role::Admin).with_surface(Surface::Cli);
    match cmd {
        AgentsCommand::List { .. } => match hub.visible_agents(&me, true).await {
            Ok(agents) => {
                for a in &agents {
                    print_agent(&crate::api::agent_view(a, false));
                }
                Exit::Ok
            }
            Err(e) => Exit::Failed(e.message),
        },
        AgentsCommand::Deploy { file, replace, .. } => {
            let specs = match read_specs(&file) {
                Ok(s) => s,
                Err(e) => return Exit::Usage(e),
            };
            for spec in specs {
                let id = spec.id.clone();
                if let Err(e) = hub.deploy_agent(&me, spec, replace).await {
                    return Exit::Failed(format!("{id}: {}", e.message));
                }
                println!("deployed {id}");
            }
            Exit::Ok
        }
        AgentsCommand::ImportCard {
            card_url,
            id,
            replace,
            ..
        } => match hub
            .import_agent_card(&me, &card_url, id.as_deref(), replace)
            .await
        {
            Ok(entry) => {
                print_imported(&crate::api::agent_view(&entry, false), &card_url);
                Exit::Ok
            }
            Err(e) => Exit::Failed(e.message),
        },
        AgentsCommand::Remove { id, .. } => match hub.remove_agent(&me, &id).await {
            Ok(()) => {
                println!("removed {id}");
                Exit::Ok
            }
            Err(e) => Exit::Failed(e.message),
        },
    }
}

async fn online(base: &str, cmd: AgentsCommand) -> Exit {
    let api = format!("{}/api/v1", base.trim_end_matches('/'));
    let token = std::env::var("A2A_ADMIN_TOKEN").ok();
    let token = token.as_deref();
    match cmd {
        AgentsCommand::List { .. } => {
            match call(
                http::Method::GET,
                format!("{api}/agents?includeDisabled=true"),
                token,
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
                if let Err(e) = call(http::Method::POST, url, token, Some(body)).await {
                    return Exit::Failed(format!("{}: {e}", spec.id));
                }
                println!("deployed {}", spec.id);
            }
            Exit::Ok
        }
        AgentsCommand::ImportCard {
            card_url,
            id,
            replace,
            ..
        } => {
            // The server reads the card (after checking the key), not this process.
            let body = serde_json::json!({"cardUrl": card_url, "id": id, "replace": replace});
            let url = format!("{api}/agents/import-card");
            match call(http::Method::POST, url, token, Some(body)).await {
                Ok(v) => {
                    print_imported(&v, &card_url);
                    Exit::Ok
                }
                Err(e) => Exit::Failed(e),
            }
        }
        AgentsCommand::Remove { id, .. } => {
            match call(
                http::Method::DELETE,
                format!("{api}/agents/{id}"),
                token,
                None,
            )
            .await
            {
                Ok(_) => {
                    println!("removed {id}");
                    Exit::Ok
                }
                Err(e) => Exit::Failed(e),
            }
        }
    }
}
