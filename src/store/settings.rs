//! What the store needs to open: the backend, where it keeps its files, whether it migrates at
//! open, and the Postgres connection. Plain data, built from the configuration in one place
//! (`impl From<&Config> for StoreSettings` in `config`), so the store does not depend on the
//! configuration module.

use std::path::PathBuf;
use std::time::Duration;

/// Which backend holds the data (`A2A_STORE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Redb,
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Redb => "redb",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

/// Connection settings of the Postgres backend (plain data; the backend builds the client
/// configuration from them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    /// One connection URL or key=value string; wins over the separate fields.
    pub url: Option<String>,
    pub host: String,
    pub port: u16,
    /// Database; `None` = the user name.
    pub db: Option<String>,
    pub user: String,
    pub password: Option<String>,
    /// Schema holding the tables; a plain lower-case identifier.
    pub schema: String,
    /// TLS with certificate and host name verification.
    pub tls: bool,
    /// Extra trusted CA certificates (PEM) for TLS.
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub timeout: Duration,
}

/// Everything [`open`](super::open) and [`migrate`](super::migrate) need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// Directory of the embedded backends' files (redb, sqlite).
    pub data_dir: PathBuf,
    /// Apply pending SQL migrations when opening (`A2A_AUTO_MIGRATE`).
    pub auto_migrate: bool,
    pub postgres: PostgresSettings,
}
