//! The command line: `serve`, `stdio`, `check-config`, `agents`, `migrate`, `bench`, `version`.
//!
//! Every subcommand resolves the configuration through [`Config::load`] (flags > env > file >
//! defaults) and reports problems in one line. `main` maps the returned [`Exit`] to the
//! process exit code.

mod admin;
mod agents;
mod backup;
pub mod bench;
mod bridge;
mod mcp_client;
mod migrate;
mod serve;
pub mod version;

pub use serve::hub_config;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Sources};

#[derive(Parser, Debug)]
#[command(
    name = "a2a-mcp",
    version,
    about = "A production agent hub: MCP and A2A front doors, durable queue, live streams, embedded storage.",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings that every subcommand accepts (they override environment and file).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (keys as in `check-config --docs`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any setting, e.g. `--set max_concurrency=100` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// State directory (A2A_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Catalog directory (A2A_CATALOG_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub catalog_dir: Option<String>,
    /// Address of the API listener (STREAM_HOST).
    #[arg(long, global = true, value_name = "IP")]
    pub host: Option<String>,
    /// Port of the API listener (STREAM_PORT); 0 = any free port.
    #[arg(long, global = true, value_name = "PORT")]
    pub stream_port: Option<String>,
    /// Port of the operations listener (METRICS_PORT); 0 = any free port.
    #[arg(long, global = true, value_name = "PORT")]
    pub metrics_port: Option<String>,
    /// Log level or filter (LOG_LEVEL).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the hub: API listener (MCP, WebSocket, REST) and operations listener.
    Serve,
    /// Serve MCP over stdin/stdout for desktop clients (the hub runs in this process), or
    /// bridge stdio to a running server with --remote.
    Stdio {
        /// Streamable HTTP endpoint of a running server, e.g. http://127.0.0.1:8787/mcp.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        /// Bearer token sent to the remote server.
        #[arg(long, value_name = "TOKEN", requires = "remote")]
        token: Option<String>,
    },
    /// Print the effective configuration (secrets masked) and exit; non-zero if invalid.
    CheckConfig {
        /// Print the settings reference (docs/CONFIGURATION.md) instead.
        #[arg(long)]
        docs: bool,
    },
    /// Manage agents: offline against the store, or through a running server's API.
    Agents {
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Manage API keys: offline against the store, or through a running server's admin API.
    Keys {
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Snapshots: create, list, verify, restore, prune.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Read the audit log.
    Audit {
        #[command(subcommand)]
        command: admin::AuditCommand,
    },
    /// Load generator: concurrent MCP clients invoking `echo` and following each request
    /// over WebSocket, against a running server.
    Bench(bench::BenchArgs),
    /// Apply pending schema migrations of the configured store (sqlite, postgres); idempotent.
    Migrate {
        /// Only show the applied and pending migrations; change nothing.
        #[arg(long)]
        status: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what this binary is: version, git commit, enabled features, rustc, target.
    Version {
        /// As JSON (`version`, `commit`, `features`, `rustc`, `target`, `profile`).
        #[arg(long)]
        json: bool,
    },
}

/// How a command ended.
pub enum Exit {
    Ok,
    /// Runtime failure (exit 1), message already printed or included.
    Failed(String),
    /// Usage or configuration error (exit 2).
    Usage(String),
}

impl ConfigArgs {
    fn sources(&self) -> Result<Sources, String> {
        let mut flags = std::collections::BTreeMap::new();
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
            flags.insert(k.trim().to_string(), v.to_string());
        }
        let named = [
            ("data_dir", &self.data_dir),
            ("catalog_dir", &self.catalog_dir),
            ("stream_host", &self.host),
            ("stream_port", &self.stream_port),
            ("metrics_port", &self.metrics_port),
            ("log_level", &self.log_level),
        ];
        for (k, v) in named {
            if let Some(v) = v {
                flags.insert(k.to_string(), v.clone());
            }
        }
        Ok(Sources {
            file: self.config.clone(),
            flags,
        })
    }

    pub fn load(&self) -> Result<Config, String> {
        let sources = self.sources()?;
        Config::load(&sources).map_err(|e| e.to_string())
    }
}

/// Runs the parsed command line.
impl Cli {
    /// Whether this command runs the hub in this process, and with it process agents.
    pub fn runs_agents(&self) -> bool {
        matches!(
            self.command,
            Command::Serve | Command::Stdio { remote: None, .. }
        )
    }
}

pub fn run(cli: Cli) -> Exit {
    if let Command::CheckConfig { docs: true } = cli.command {
        print!("{}", crate::config::markdown());
        return Exit::Ok;
    }
    if let Command::Bench(args) = cli.command {
        return runtime(|| bench::run(args));
    }
    if let Command::Version { json } = cli.command {
        return version::run(json);
    }
    let config = match cli.config.load() {
        Ok(c) => c,
        Err(e) => return Exit::Usage(e),
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", config.describe());
            Exit::Ok
        }
        Command::Serve => runtime(|| async move {
            let t = crate::telemetry::init_with_traces(&config);
            let r = serve::serve(config).await;
            t.shutdown();
            r
        }),
        Command::Stdio {
            remote: Some(url),
            token,
        } => {
            crate::telemetry::init(&config);
            runtime(|| bridge::run(url, token))
        }
        Command::Stdio { remote: None, .. } => runtime(|| async move {
            let t = crate::telemetry::init_with_traces(&config);
            let r = serve::stdio(config).await;
            t.shutdown();
            r
        }),
        Command::Agents { command } => {
            crate::telemetry::init(&config);
            runtime(|| agents::run(config, command))
        }
        Command::Keys { command } => {
            crate::telemetry::init(&config);
            runtime(|| admin::keys(config, command))
        }
        Command::Backup { command } => {
            crate::telemetry::init(&config);
            runtime(|| backup::run(config, command))
        }
        Command::Audit { command } => {
            crate::telemetry::init(&config);
            runtime(|| admin::audit(config, command))
        }
        Command::Migrate { status, json } => {
            crate::telemetry::init(&config);
            runtime(|| migrate::run(config, status, json))
        }
        Command::Bench(_) | Command::Version { .. } => Exit::Ok,
    }
}

fn runtime<F, Fut>(f: F) -> Exit
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Exit>,
{
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f()),
        Err(e) => Exit::Failed(format!("cannot start the async runtime: {e}")),
    }
}
