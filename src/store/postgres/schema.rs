//! The schema: numbered migrations (`migrations/postgres/`, recorded in `schema_migrations`,
//! one replica at a time), and the schema operations of `a2a-mcp backup restore` (counting
//! server connections, swapping a restored schema in, dropping the old one).

use deadpool_postgres::{Object, Pool};

use super::BACKEND;
use super::connection::{client_config, corrupt, location, pg_err, pool, pool_err};
use crate::store::migrations::{Applied, Mode, Report};
use crate::store::{PostgresSettings, StoreError, StoreResult, migrations};

// ---------------------------------------------------------------------------------------------
// Migrations

async fn history(c: &Object, schema: &str) -> StoreResult<Vec<Applied>> {
    let table = format!("\"{schema}\".schema_migrations");
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            &format!("SELECT version, name, applied_at::text FROM {table} ORDER BY version"),
            &[],
        )
        .await
        .map_err(pg_err)?;
    rows.iter()
        .map(|r| {
            let v: i32 = r.try_get(0).map_err(pg_err)?;
            Ok(Applied {
                version: u32::try_from(v)
                    .map_err(|_| corrupt("schema_migrations", format!("version {v}")))?,
                name: r.try_get(1).map_err(pg_err)?,
                applied_at: r.try_get(2).map_err(pg_err)?,
            })
        })
        .collect()
}

pub(super) async fn run_migrations(
    c: &mut Object,
    schema: &str,
    location: &str,
    mode: Mode,
) -> StoreResult<Report> {
    let list = migrations::POSTGRES;
    let latest = migrations::latest(list);
    let mut report = Report {
        backend: BACKEND,
        location: location.to_string(),
        before: 0,
        after: 0,
        latest,
        applied_now: Vec::new(),
        pending: Vec::new(),
        history: Vec::new(),
    };
    if mode != Mode::Apply {
        let hist = history(c, schema).await?;
        let found = hist.last().map_or(0, |a| a.version);
        let todo = migrations::plan(BACKEND, location, list, found, mode)?;
        report.before = found;
        report.after = found;
        report.pending = todo.iter().map(|m| (m.version, m.name)).collect();
        report.history = hist;
        return Ok(report);
    }
    let tx = c.transaction().await.map_err(pg_err)?;
    // Replicas starting together migrate one after the other.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("a2a-mcp migrate {schema}")],
    )
    .await
    .map_err(pg_err)?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    // The schema name is a validated identifier (`config::load`): quoting it is enough.
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .map_err(pg_err)?;
    }
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO \"{schema}\";
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    ))
    .await
    .map_err(pg_err)?;
    let found: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    let found = u32::try_from(found).unwrap_or(0);
    let todo = migrations::plan(BACKEND, location, list, found, mode)?;
    for m in &todo {
        tx.batch_execute(m.sql).await.map_err(|e| {
            StoreError::Other(format!(
                "migration {:04}_{} failed on {location}: {}",
                m.version,
                m.name,
                pg_err(e)
            ))
        })?;
        let v = i32::try_from(m.version).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&v, &m.name],
        )
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    if !todo.is_empty() {
        tracing::info!(
            location,
            from = found,
            to = latest,
            "postgres schema migrated"
        );
    }
    report.before = found;
    report.after = todo.last().map_or(found, |m| m.version);
    report.applied_now = todo.iter().map(|m| (m.version, m.name)).collect();
    report.history = history(c, schema).await?;
    Ok(report)
}

/// `a2a-mcp migrate` on Postgres: connects, applies or reports, disconnects.
pub async fn migrate(s: &PostgresSettings, mode: Mode) -> StoreResult<Report> {
    let config = client_config(s)?;
    let loc = location(&config, s);
    let pool = pool(s, config)?;
    let mut c = pool
        .get()
        .await
        .map_err(|e| with_location(pool_err(e), &loc))?;
    let r = run_migrations(&mut c, &s.schema, &loc, mode).await;
    drop(c);
    pool.close();
    r
}

// ---------------------------------------------------------------------------------------------
// Restore support (`a2a-mcp backup restore` on Postgres)

/// One short-lived admin connection for the settings' database.
async fn admin_connection(s: &PostgresSettings) -> StoreResult<(Pool, Object, String)> {
    let config = client_config(s)?;
    let loc = location(&config, s);
    let mut one = s.clone();
    one.pool_size = 1;
    let pool = pool(&one, config)?;
    let c = pool
        .get()
        .await
        .map_err(|e| with_location(pool_err(e), &loc))?;
    Ok((pool, c, loc))
}

/// Connections of a2a-mcp servers (by application name) to the settings' schema, other
/// than this process's own.
pub async fn server_connections(s: &PostgresSettings) -> StoreResult<i64> {
    let (pool, c, _) = admin_connection(s).await?;
    let n: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid() AND datname = current_database()",
            &[&format!("a2a-mcp/{}", s.schema)],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    drop(c);
    pool.close();
    Ok(n)
}

fn checked_ident(name: &str) -> StoreResult<&str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Other(format!(
            "{name:?} is not a plain lower-case schema name of at most 63 characters"
        )))
    }
}

/// Makes schema `fresh` the settings' schema in one transaction; the current one (if any)
/// becomes `keep`. Returns whether there was a current schema.
pub async fn swap_schema(s: &PostgresSettings, fresh: &str, keep: &str) -> StoreResult<bool> {
    let (schema, fresh, keep) = (
        checked_ident(&s.schema)?,
        checked_ident(fresh)?,
        checked_ident(keep)?,
    );
    let (pool, mut c, _) = admin_connection(s).await?;
    let r = async {
        let tx = c.transaction().await.map_err(pg_err)?;
        let had: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                &[&schema],
            )
            .await
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        if had {
            tx.batch_execute(&format!("ALTER SCHEMA \"{schema}\" RENAME TO \"{keep}\""))
                .await
                .map_err(pg_err)?;
        }
        tx.batch_execute(&format!("ALTER SCHEMA \"{fresh}\" RENAME TO \"{schema}\""))
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(had)
    }
    .await;
    drop(c);
    pool.close();
    r
}

/// Drops a schema and everything in it (a partial restore).
pub async fn drop_schema(s: &PostgresSettings, name: &str) -> StoreResult<()> {
    let name = checked_ident(name)?;
    let (pool, c, _) = admin_connection(s).await?;
    let r = c
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
        .await
        .map_err(pg_err);
    drop(c);
    pool.close();
    r
}

pub(super) fn with_location(e: StoreError, loc: &str) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("cannot reach {loc}: {m}")),
        other => other,
    }
}
