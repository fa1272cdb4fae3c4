//! Restoring a snapshot: verify it completely, write it into a fresh store, then switch.
//!
//! Embedded stores (redb, SQLite) restore into a new file next to the current one; only when
//! every record is written and the new store is closed does it take the current name
//! (`rename`, atomic), and the previous file is kept under `<name>.pre-restore-<time>` (a hard
//! link made before the switch). Postgres restores into a new schema and swaps the schema
//! names in one transaction, keeping the previous one as `<schema>_pre_restore_<time>`. A
//! restore that fails at any point leaves the current store untouched.
//!
//! A large restore reports its progress ([`Progress`]): the verified manifest, the records
//! written so far (about once a second), and the switch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BackupError, BackupResult, Manifest, read, verify};
use crate::config::Config;
use crate::model::now_ms;
use crate::store::{DynStore, Record, StoreError, StoreKind};

const BATCH: usize = 2000;
/// How often a restore reports the records written so far.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a restore reports while it runs.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The snapshot verified completely (checksum and every record); writing starts.
    Verified(Manifest),
    /// Records written into the new store so far, of `total` (about once a second, and once
    /// at the end).
    Written { done: u64, total: u64 },
    /// Every record is written; switching to the restored store.
    Switching,
}

/// A progress callback that ignores everything.
pub fn no_progress(_: Progress) {}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub manifest: Manifest,
    pub counts: BTreeMap<String, u64>,
    pub duration_ms: u128,
    /// Where the previous store was kept (a file, or a Postgres schema).
    pub previous: Option<String>,
}

/// Options of a restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Proceed although the store's owner could not be proven absent (shared databases).
    pub force: bool,
    /// Fault injection for tests of the failure path: fail after writing this many records.
    pub fail_after: Option<u64>,
}

/// Writes every record of a snapshot into `target`. Blocking (use from `spawn_blocking`).
pub fn write_records(
    snapshot: &Path,
    target: &DynStore,
    fail_after: Option<u64>,
) -> BackupResult<BTreeMap<String, u64>> {
    write_records_with(snapshot, target, fail_after, 0, &mut no_progress)
}

/// [`write_records`], reporting [`Progress::Written`] against `total` records.
fn write_records_with(
    snapshot: &Path,
    target: &DynStore,
    fail_after: Option<u64>,
    total: u64,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> BackupResult<BTreeMap<String, u64>> {
    let handle = tokio::runtime::Handle::current();
    let mut batch = Vec::with_capacity(BATCH);
    let mut written = 0u64;
    let mut reported = Instant::now();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let flush = |batch: &mut Vec<Record>| -> BackupResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(batch);
        handle
            .block_on(target.load(records))
            .map_err(BackupError::from)
    };
    read(snapshot, &mut |r| {
        if fail_after.is_some_and(|n| written >= n) {
            return Err(BackupError::Io(
                "injected failure while restoring (fault injection)".into(),
            ));
        }
        let kind = match &r {
            Record::Agent(_) => "agents".to_string(),
            Record::Session(_) => "sessions".into(),
            Record::Request(_) => "requests".into(),
            Record::Event(_) => "events".into(),
            Record::Idempotency(_) => "idempotency_keys".into(),
            Record::Aux { table, .. } => table.name().to_string(),
        };
        *counts.entry(kind).or_insert(0) += 1;
        batch.push(r);
        written += 1;
        if batch.len() >= BATCH {
            flush(&mut batch)?;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = Instant::now();
                progress(Progress::Written {
                    done: written,
                    total,
                });
            }
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    progress(Progress::Written {
        done: written,
        total,
    });
    Ok(counts)
}

/// Opens a store file of an embedded backend.
type Opener = fn(&Path) -> Result<DynStore, StoreError>;

/// The embedded store file of the configured backend, how to open one, and the suffix its
/// siblings get (`<file>.restore-<time>`, `<file>.pre-restore-<time>`).
fn store_file(config: &Config) -> Option<(PathBuf, Opener)> {
    match config.store {
        StoreKind::Redb => Some((config.data_dir.join("a2a-mcp.redb"), |p| {
            Ok(Arc::new(crate::store::redb::RedbStore::open(p)?) as DynStore)
        })),
        StoreKind::Sqlite => Some(
            (config.data_dir.join(crate::store::sqlite::FILE_NAME), |p| {
                Ok(Arc::new(crate::store::sqlite::SqliteStore::open(p, true)?) as DynStore)
            }),
        ),
        StoreKind::Postgres => None,
    }
}

/// Restores `snapshot` into the configured store. Refuses an unverifiable snapshot and a
/// store that a running server holds. Blocking (use from `spawn_blocking`).
pub fn restore(
    config: &Config,
    snapshot: &Path,
    opts: &RestoreOptions,
) -> BackupResult<RestoreSummary> {
    restore_with_progress(config, snapshot, opts, &mut no_progress)
}

/// [`restore`], reporting its [`Progress`].
pub fn restore_with_progress(
    config: &Config,
    snapshot: &Path,
    opts: &RestoreOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> BackupResult<RestoreSummary> {
    let started = Instant::now();
    let manifest = verify(snapshot)?;
    progress(Progress::Verified(manifest.clone()));
    let total = manifest.records;
    let (counts, previous) = match store_file(config) {
        Some((current, open)) => restore_file(&current, open, snapshot, opts, total, progress)?,
        None => restore_postgres(config, snapshot, opts, total, progress)?,
    };
    Ok(RestoreSummary {
        manifest,
        counts,
        duration_ms: started.elapsed().as_millis(),
        previous,
    })
}

/// A path next to `p` with `suffix` appended to its file name.
fn sibling(p: &Path, suffix: &str) -> PathBuf {
    let mut name = p.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    p.with_file_name(name)
}

/// SQLite's companions of a database file (write-ahead log, shared memory, our lock file).
fn companions(p: &Path) -> [PathBuf; 3] {
    [sibling(p, "-wal"), sibling(p, "-shm"), sibling(p, ".lock")]
}

fn remove_with_companions(p: &Path) {
    let _ = std::fs::remove_file(p);
    for c in companions(p) {
        let _ = std::fs::remove_file(c);
    }
}

type Restored = (BTreeMap<String, u64>, Option<String>);

/// Embedded stores: write a new file next to the current one, then rename it into place.
fn restore_file(
    current: &Path,
    open: Opener,
    snapshot: &Path,
    opts: &RestoreOptions,
    total: u64,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> BackupResult<Restored> {
    // Hold the current store while restoring: proves no server runs, and keeps one from
    // starting half-way.
    let holder = if current.exists() {
        match open(current) {
            Ok(s) => Some(s),
            Err(StoreError::Locked(_)) => {
                return Err(BackupError::Refused(format!(
                    "the store {} is in use by a running server; stop it (e.g. `systemctl stop a2a-mcp` or scale the StatefulSet to 0), then restore",
                    current.display()
                )));
            }
            Err(e) => {
                if !opts.force {
                    return Err(BackupError::Refused(format!(
                        "the current store {} does not open ({e}); restore anyway with --force (the server must be stopped)",
                        current.display()
                    )));
                }
                None
            }
        }
    } else {
        None
    };
    let stamp = now_ms();
    let fresh = sibling(current, &format!(".restore-{stamp}"));
    let handle = tokio::runtime::Handle::current();
    let result = (|| -> BackupResult<BTreeMap<String, u64>> {
        let target = open(&fresh)?;
        let counts = write_records_with(snapshot, &target, opts.fail_after, total, progress);
        let closed = handle.block_on(target.close());
        drop(target);
        let counts = counts?;
        closed?;
        Ok(counts)
    })();
    let counts = match result {
        Ok(c) => c,
        Err(e) => {
            remove_with_companions(&fresh);
            return Err(e);
        }
    };
    progress(Progress::Switching);
    if let Some(h) = holder {
        let _ = handle.block_on(h.close());
    }
    // A closed SQLite database has checkpointed its log; a log left behind would be replayed
    // into the restored file, so refuse to switch rather than mix the two.
    let [wal, shm, _] = companions(current);
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        remove_with_companions(&fresh);
        return Err(BackupError::Refused(format!(
            "{} still holds unmerged writes of the current store; start and stop the server once (or open it with sqlite3) so it is checkpointed, then restore",
            wal.display()
        )));
    }
    let _ = std::fs::remove_file(&wal);
    let _ = std::fs::remove_file(&shm);
    let mut previous = None;
    if current.exists() {
        let keep = sibling(current, &format!(".pre-restore-{stamp}"));
        std::fs::hard_link(current, &keep).map_err(|e| {
            remove_with_companions(&fresh);
            BackupError::Io(format!(
                "cannot keep the previous store as {}: {e}",
                keep.display()
            ))
        })?;
        previous = Some(keep.display().to_string());
    }
    std::fs::rename(&fresh, current).map_err(|e| {
        BackupError::Io(format!(
            "cannot move the restored store into place ({} -> {}): {e}",
            fresh.display(),
            current.display()
        ))
    })?;
    for c in companions(&fresh) {
        let _ = std::fs::remove_file(c);
    }
    if let Some(dir) = current.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok((counts, previous))
}

/// Postgres: write into a fresh schema, then swap the schemas in one transaction; the
/// previous schema is kept as `<schema>_pre_restore_<time>`.
#[cfg(feature = "postgres")]
fn restore_postgres(
    config: &Config,
    snapshot: &Path,
    opts: &RestoreOptions,
    total: u64,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> BackupResult<Restored> {
    use crate::store::postgres;
    let handle = tokio::runtime::Handle::current();
    let settings = &config.postgres;
    let busy = handle.block_on(postgres::server_connections(settings))?;
    if busy > 0 && !opts.force {
        return Err(BackupError::Refused(format!(
            "{busy} connection(s) of running a2a-mcp servers use schema {:?}; stop every replica (e.g. scale the Deployment to 0), then restore (--force skips this check)",
            settings.schema
        )));
    }
    let stamp = now_ms();
    let fresh_name = format!("{}_restore_{stamp}", settings.schema);
    let keep_name = format!("{}_pre_restore_{stamp}", settings.schema);
    let mut fresh = settings.clone();
    fresh.schema = fresh_name.clone();
    let result = (|| -> BackupResult<BTreeMap<String, u64>> {
        let target: DynStore =
            Arc::new(handle.block_on(postgres::PostgresStore::open(&fresh, true))?);
        let counts = write_records_with(snapshot, &target, opts.fail_after, total, progress);
        let closed = handle.block_on(target.close());
        let counts = counts?;
        closed?;
        Ok(counts)
    })();
    let swapped = result.and_then(|counts| {
        progress(Progress::Switching);
        let had = handle.block_on(postgres::swap_schema(settings, &fresh_name, &keep_name))?;
        Ok((counts, had))
    });
    match swapped {
        Ok((counts, had)) => Ok((counts, had.then(|| format!("schema {keep_name}")))),
        Err(e) => {
            if let Err(d) = handle.block_on(postgres::drop_schema(settings, &fresh_name)) {
                tracing::warn!(schema = %fresh_name, error = %d, "cannot drop the partial restore schema");
            }
            Err(e)
        }
    }
}

#[cfg(not(feature = "postgres"))]
fn restore_postgres(
    _: &Config,
    _: &Path,
    _: &RestoreOptions,
    _: u64,
    _: &mut (dyn FnMut(Progress) + Send),
) -> BackupResult<Restored> {
    Err(BackupError::Refused(
        "this a2a-mcp was built without Postgres support (cargo feature `postgres`)".into(),
    ))
}
