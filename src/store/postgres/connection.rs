//! Connecting to Postgres: driver errors and how they are classified, the client
//! configuration built from [`PostgresSettings`] (URL or fields, schema as `search_path`, TLS),
//! the connection pool, and the bound on every operation.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::BACKEND;
use crate::metrics;
use crate::store::{PostgresSettings, StoreError, StoreResult};

// ---------------------------------------------------------------------------------------------
// Errors

/// Maps a driver error: lost connections, shutdowns and overload are `Unavailable` (retry
/// later); anything else the database refused is `Other`.
/// The driver error with its causes ("db error: ERROR: …", "error performing TLS handshake:
/// invalid peer certificate: …"); the driver's own text names only the kind.
fn describe(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

pub(super) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        // Raised by lease_lost() (migration 0002: the request is leased to another replica)
        // and idempotency_taken() (0003: the key is held by another writer).
        Some(code) if code.code() == "A2A01" || code.code() == "A2A02" => {
            StoreError::Conflict(format!(
                "postgres: {}",
                e.as_db_error()
                    .map_or_else(|| describe(&e), |d| d.message().to_string())
            ))
        }
        Some(code) => {
            let c = code.code();
            let transient = c.starts_with("08") // connection exception
                || c.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
                || c.starts_with("53") // insufficient resources
                || c == "40001" // serialization failure
                || c == "40P01" // deadlock
                || c == "25006"; // read-only transaction (a failover in progress)
            if transient {
                StoreError::Unavailable(format!("postgres: {}", describe(&e)))
            } else {
                StoreError::Other(format!("postgres: {}", describe(&e)))
            }
        }
        // No SQLSTATE: I/O error, closed connection, protocol error.
        None => StoreError::Unavailable(format!("postgres: {}", describe(&e))),
    }
}

pub(super) fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match pg_err(e) {
            // A connection that cannot be made (refused, auth, role cannot log in) means the
            // database is away for us, whatever the SQLSTATE.
            StoreError::Other(m) => StoreError::Unavailable(m),
            other => other,
        },
        PoolError::Timeout(t) => {
            StoreError::Unavailable(format!("postgres: no connection available ({t:?} timeout)"))
        }
        PoolError::Closed => StoreError::Unavailable("the postgres store is closed".into()),
        other => StoreError::Unavailable(format!("postgres pool: {other}")),
    }
}

pub(super) fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

pub(super) fn count_error() {
    metrics::STORE_ERRORS.with_label_values(&[BACKEND]).inc();
}

pub(super) fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Other(format!("{what} {v} is too large to store")))
}

pub(super) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Connection settings

/// The driver configuration from the settings: URL or separate fields, the schema as
/// `search_path`, an application name that names the schema, timeouts and keepalives.
pub(super) fn client_config(s: &PostgresSettings) -> StoreResult<tokio_postgres::Config> {
    let mut c = match &s.url {
        Some(url) => url.parse::<tokio_postgres::Config>().map_err(|e| {
            StoreError::Other(format!(
                "A2A_POSTGRES_URL is not a valid connection string: {e}"
            ))
        })?,
        None => {
            let mut c = tokio_postgres::Config::new();
            c.host(&s.host).port(s.port);
            if let Some(db) = &s.db {
                c.dbname(db);
            }
            c
        }
    };
    if c.get_user().is_none() {
        c.user(&s.user);
    }
    if c.get_password().is_none()
        && let Some(p) = &s.password
    {
        c.password(p.as_bytes());
    }
    let options = match c.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c search_path={}", s.schema),
        _ => format!("-c search_path={}", s.schema),
    };
    c.options(options);
    if c.get_application_name().is_none() {
        c.application_name(format!("a2a-mcp/{}", s.schema));
    }
    c.connect_timeout(s.timeout);
    c.keepalives(true);
    c.keepalives_idle(Duration::from_secs(30));
    Ok(c)
}

/// Where the data lives, for messages (never the password).
pub(super) fn location(c: &tokio_postgres::Config, s: &PostgresSettings) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("");
    let db = c.get_dbname().unwrap_or(user);
    let tls = if wants_tls(s, c) { ", TLS" } else { "" };
    format!(
        "postgres://{user}@{host}:{port}/{db} (schema {}{tls})",
        s.schema
    )
}

/// Whether connections use TLS: the setting, or `sslmode=require` in the URL.
fn wants_tls(s: &PostgresSettings, c: &tokio_postgres::Config) -> bool {
    s.tls || c.get_ssl_mode() == tokio_postgres::config::SslMode::Require
}

/// The rustls connector: ring provider, Mozilla roots plus the configured CA file.
fn tls_connector(s: &PostgresSettings) -> StoreResult<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = &s.ca_file {
        let bad = |detail: String| {
            StoreError::Other(format!(
                "postgres_ca_file (A2A_POSTGRES_CA_FILE) = {}: {detail}",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(bad("holds no usable certificate".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Other(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

pub(super) fn pool(s: &PostgresSettings, mut config: tokio_postgres::Config) -> StoreResult<Pool> {
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if wants_tls(s, &config) {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        Manager::from_config(config, tls_connector(s)?, manager_config)
    } else {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        Manager::from_config(config, NoTls, manager_config)
    };
    Pool::builder(manager)
        .max_size(s.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(s.timeout))
        .create_timeout(Some(s.timeout))
        .recycle_timeout(Some(s.timeout))
        .build()
        .map_err(|e| StoreError::Other(format!("cannot build the postgres pool: {e}")))
}

pub(super) async fn bounded<T>(
    limit: Duration,
    f: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "postgres did not answer within {limit:?}"
        ))),
    }
}

pub(super) async fn query(
    c: &Object,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&st, params).await.map_err(pg_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PostgresSettings {
        PostgresSettings {
            url: None,
            host: "db.internal".into(),
            port: 6543,
            db: Some("hub".into()),
            user: "app".into(),
            password: Some("s3cret".into()),
            schema: "tenant_1".into(),
            tls: false,
            ca_file: None,
            pool_size: 4,
            timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn separate_settings_build_the_connection() {
        let s = settings();
        let c = client_config(&s).unwrap();
        assert_eq!(c.get_user(), Some("app"));
        assert_eq!(c.get_dbname(), Some("hub"));
        assert_eq!(c.get_ports(), &[6543]);
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(c.get_options(), Some("-c search_path=tenant_1"));
        assert_eq!(c.get_application_name(), Some("a2a-mcp/tenant_1"));
        let loc = location(&c, &s);
        assert_eq!(loc, "postgres://app@db.internal:6543/hub (schema tenant_1)");
        assert!(!loc.contains("s3cret"));
    }

    #[test]
    fn url_wins_and_takes_the_password_setting_when_it_has_none() {
        let s = PostgresSettings {
            url: Some("postgres://u@h:5433/d?options=-c%20statement_timeout%3D5000".into()),
            ..settings()
        };
        let c = client_config(&s).unwrap();
        assert_eq!((c.get_user(), c.get_dbname()), (Some("u"), Some("d")));
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=5000 -c search_path=tenant_1")
        );
        let s = PostgresSettings {
            url: Some("postgres://u:inurl@h/d?sslmode=require".into()),
            ..settings()
        };
        let c = client_config(&s).unwrap();
        assert_eq!(c.get_password(), Some(&b"inurl"[..]));
        assert!(wants_tls(&s, &c), "sslmode=require turns TLS on");
        assert!(location(&c, &s).ends_with("(schema tenant_1, TLS)"));
    }

    #[test]
    fn driver_errors_are_classified() {
        // No SQLSTATE (I/O, closed): the database is away.
        let closed = pool_err(PoolError::Closed);
        assert!(matches!(closed, StoreError::Unavailable(_)));
        assert!(matches!(
            pool_err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)),
            StoreError::Unavailable(_)
        ));
    }
}
