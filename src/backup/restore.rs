//! Restoring a snapshot: verify it completely, write it into a fresh store, then switch.
//!
//! Embedded stores restore into a new file next to the current one; only when every record is
//! written and the new store is closed does it take the current name (`rename`, atomic), and
//! the previous file is kept under `<name>.pre-restore-<time>` (a hard link made before the
//! switch). A restore that fails at any point leaves the current store untouched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{BackupError, BackupResult, Manifest, read, verify};
use crate::config::{Config, StoreKind};
use crate::model::now_ms;
use crate::store::{DynStore, Record, StoreError};

const BATCH: usize = 2000;

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub manifest: Manifest,
    pub counts: BTreeMap<String, u64>,
    pub duration_ms: u128,
    /// Where the previous store was kept.
    pub previous: Option<PathBuf>,
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
    let handle = tokio::runtime::Handle::current();
    let mut batch = Vec::with_capacity(BATCH);
    let mut written = 0u64;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let flush = |batch: &mut Vec<Record>| -> BackupResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ops = batch.drain(..).map(Record::into_op).collect();
        handle
            .block_on(target.write(ops))
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
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    Ok(counts)
}

/// Opens a store file of the configured embedded backend.
type Opener = fn(&Path) -> Result<DynStore, StoreError>;

fn store_file(config: &Config) -> (PathBuf, Opener) {
    match config.store {
        StoreKind::Redb => (config.data_dir.join("a2a-mcp.redb"), |p| {
            Ok(Arc::new(crate::store::redb::RedbStore::open(p)?) as DynStore)
        }),
    }
}

/// Restores `snapshot` into the configured store. Refuses an unverifiable snapshot and a
/// store that a running server holds. Blocking (use from `spawn_blocking`).
pub fn restore(
    config: &Config,
    snapshot: &Path,
    opts: &RestoreOptions,
) -> BackupResult<RestoreSummary> {
    let started = Instant::now();
    let manifest = verify(snapshot)?;
    let (current, open) = store_file(config);
    // Hold the current store while restoring: proves no server runs, and keeps one from
    // starting half-way.
    let holder = if current.exists() {
        match open(&current) {
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
    let fresh = current.with_extension(format!("redb.restore-{stamp}"));
    let result = (|| -> BackupResult<BTreeMap<String, u64>> {
        let target = open(&fresh)?;
        let counts = write_records(snapshot, &target, opts.fail_after);
        let handle = tokio::runtime::Handle::current();
        let closed = handle.block_on(target.close());
        drop(target);
        let counts = counts?;
        closed?;
        Ok(counts)
    })();
    let counts = match result {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&fresh);
            return Err(e);
        }
    };
    if let Some(h) = holder {
        let handle = tokio::runtime::Handle::current();
        let _ = handle.block_on(h.close());
    }
    let mut previous = None;
    if current.exists() {
        let keep = current.with_extension(format!("redb.pre-restore-{stamp}"));
        std::fs::hard_link(&current, &keep).map_err(|e| {
            let _ = std::fs::remove_file(&fresh);
            BackupError::Io(format!(
                "cannot keep the previous store as {}: {e}",
                keep.display()
            ))
        })?;
        previous = Some(keep);
    }
    std::fs::rename(&fresh, &current).map_err(|e| {
        BackupError::Io(format!(
            "cannot move the restored store into place ({} -> {}): {e}",
            fresh.display(),
            current.display()
        ))
    })?;
    if let Some(dir) = current.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(RestoreSummary {
        manifest,
        counts,
        duration_ms: started.elapsed().as_millis(),
        previous,
    })
}
