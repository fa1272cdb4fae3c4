//! Numbered schema migrations of the SQL backends, embedded in the binary.
//!
//! Each backend has its own list (`sqlite/NNNN_name.sql`, `postgres/NNNN_name.sql`), numbered
//! from 1 without gaps. A database records what it has applied in a `schema_migrations` table
//! (version, name, applied_at). Applying runs every pending migration and its bookkeeping row
//! in one transaction (DDL is transactional on both engines), so a failure leaves the schema
//! as it was. A database whose recorded version is newer than the newest migration this build
//! knows is refused ([`StoreError::TooNew`]) with a message naming both versions.
//!
//! Who calls it: the backends at open (`A2A_AUTO_MIGRATE`), and `a2a-mcp migrate`. The redb
//! backend has no migrations here: its records carry format bytes (`codec`) and its layout a
//! `SCHEMA_VERSION`.

use super::StoreError;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "owner_and_session_indexes",
        sql: include_str!("sqlite/0002_owner_and_session_indexes.sql"),
    },
];

#[cfg(feature = "postgres")]
pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "cluster",
        sql: include_str!("postgres/0002_cluster.sql"),
    },
    Migration {
        version: 3,
        name: "idempotency_claim",
        sql: include_str!("postgres/0003_idempotency_claim.sql"),
    },
    Migration {
        version: 4,
        name: "owner_and_session_indexes",
        sql: include_str!("postgres/0004_owner_and_session_indexes.sql"),
    },
];

/// The newest version in a list (0 for an empty list).
pub fn latest(list: &[Migration]) -> u32 {
    list.last().map_or(0, |m| m.version)
}

/// What to do with the schema when opening or inspecting a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apply pending migrations.
    Apply,
    /// Refuse to continue unless the schema is at the latest version (auto-migrate off).
    Require,
    /// Only report; change nothing.
    Status,
}

/// A migration recorded in a database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    pub applied_at: String,
}

/// What `a2a-mcp migrate` found and did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub backend: &'static str,
    /// Where the schema lives (file path, or Postgres address and schema; never a password).
    pub location: String,
    /// Version before this run (0: no schema yet).
    pub before: u32,
    /// Version after this run (equal to `before` for `--status`).
    pub after: u32,
    /// The newest version this build knows.
    pub latest: u32,
    /// Migrations applied by this run.
    pub applied_now: Vec<(u32, &'static str)>,
    /// Migrations still to apply (for `--status`).
    pub pending: Vec<(u32, &'static str)>,
    /// Every recorded migration, oldest first.
    pub history: Vec<Applied>,
}

impl Report {
    /// The human-readable summary printed by `a2a-mcp migrate`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} schema at {}: version {} (this build knows up to {})\n",
            self.backend, self.location, self.after, self.latest
        );
        for a in &self.history {
            out.push_str(&format!(
                "  applied  {:04} {:<24} {}\n",
                a.version, a.name, a.applied_at
            ));
        }
        for (v, name) in &self.pending {
            out.push_str(&format!("  pending  {v:04} {name}\n"));
        }
        if !self.applied_now.is_empty() {
            let list: Vec<String> = self
                .applied_now
                .iter()
                .map(|(v, n)| format!("{v:04}_{n}"))
                .collect();
            out.push_str(&format!(
                "migrated from version {} to {}: applied {}\n",
                self.before,
                self.after,
                list.join(", ")
            ));
        } else if self.pending.is_empty() {
            out.push_str("up to date; nothing to do\n");
        } else {
            out.push_str(&format!(
                "{} migration(s) pending; run `a2a-mcp migrate` to apply them\n",
                self.pending.len()
            ));
        }
        out
    }
}

/// Pending migrations of `list` above `current`.
pub fn pending(list: &[Migration], current: u32) -> Vec<Migration> {
    list.iter()
        .filter(|m| m.version > current)
        .copied()
        .collect()
}

/// The refusal for a schema written by a newer build.
pub fn too_new(backend: &str, location: &str, found: u32, known: u32) -> StoreError {
    StoreError::TooNew(format!(
        "the {backend} schema at {location} is at version {found}, but this a2a-mcp {} knows only up to version {known}; \
         run a newer a2a-mcp or restore a backup made by this version",
        env!("CARGO_PKG_VERSION")
    ))
}

/// The refusal for a schema that needs migrating while auto-migration is off.
pub fn behind(backend: &str, location: &str, found: u32, latest: u32) -> StoreError {
    StoreError::Other(format!(
        "the {backend} schema at {location} is at version {found}, this a2a-mcp needs version {latest}; \
         run `a2a-mcp migrate` (or set A2A_AUTO_MIGRATE=true)"
    ))
}

/// Checks the found version against the list and decides what to apply.
pub fn plan(
    backend: &str,
    location: &str,
    list: &[Migration],
    found: u32,
    mode: Mode,
) -> Result<Vec<Migration>, StoreError> {
    let latest = latest(list);
    if found > latest {
        return Err(too_new(backend, location, found, latest));
    }
    let todo = pending(list, found);
    if mode == Mode::Require && !todo.is_empty() {
        return Err(behind(backend, location, found, latest));
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(list: &[Migration]) {
        for (i, m) in list.iter().enumerate() {
            assert_eq!(
                m.version as usize,
                i + 1,
                "migrations are numbered 1.. without gaps"
            );
            assert!(!m.sql.trim().is_empty());
            assert!(
                !m.sql.contains("schema_migrations"),
                "bookkeeping is done by the runner"
            );
        }
    }

    #[test]
    fn lists_are_numbered_without_gaps() {
        check(SQLITE);
        #[cfg(feature = "postgres")]
        check(POSTGRES);
    }

    #[test]
    fn newer_schema_is_refused_naming_both_versions() {
        let e = plan("sqlite", "/x", SQLITE, 99, Mode::Apply).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StoreError::TooNew(_)));
        assert!(msg.contains("version 99") && msg.contains(&format!("version {}", latest(SQLITE))));
        assert_eq!(
            plan("sqlite", "/x", SQLITE, 0, Mode::Apply).unwrap().len(),
            SQLITE.len()
        );
        assert!(plan("sqlite", "/x", SQLITE, 0, Mode::Require).is_err());
        assert!(plan("sqlite", "/x", SQLITE, 1, Mode::Require).is_err());
        assert!(
            plan("sqlite", "/x", SQLITE, latest(SQLITE), Mode::Require)
                .unwrap()
                .is_empty()
        );
    }
}
