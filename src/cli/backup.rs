//! `a2a-mcp backup create|list|verify|restore|prune`.
//!
//! `create` works offline against a stopped store, or — when a running server holds the
//! store — asks that server to take the snapshot through its admin API (`--url`, `--token`).
//! `list`, `verify` and `prune` only read or delete files and are safe while a server runs.
//! `restore` refuses while a server holds the store; it prints its progress on stderr (the
//! verified manifest, records written about once a second, the switch) and, with `--latest`,
//! picks the newest snapshot in the backup directory.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;

use super::Exit;
use super::admin::{Remote, call};
use crate::backup::{
    self,
    restore::{Progress, RestoreOptions},
};
use crate::config::Config;
use crate::model::now_ms;
use crate::store::{self, StoreError};

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Take a consistent snapshot (through the running server's admin API if one holds the store).
    Create {
        /// Directory for the snapshot (offline only; a running server uses A2A_BACKUP_DIR).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List snapshots with time, size and counts; the newest (what `restore --latest` takes)
    /// is verified completely, every one with --verify.
    List {
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Verify every snapshot completely (reads them all: about 0.3 s per 100,000
        /// requests each).
        #[arg(long)]
        verify: bool,
    },
    /// Check a snapshot's checksum and decode every record.
    Verify { file: PathBuf },
    /// Replace the configured store with a snapshot (the server must be stopped).
    Restore {
        /// The snapshot file (or --latest).
        #[arg(required_unless_present = "latest")]
        file: Option<PathBuf>,
        /// Restore the newest snapshot in the backup directory (A2A_BACKUP_DIR or --dir).
        #[arg(long, conflicts_with = "file")]
        latest: bool,
        /// Backup directory for --latest.
        #[arg(long, requires = "latest")]
        dir: Option<PathBuf>,
        /// Restore even if the current store cannot be opened (the server must be stopped).
        #[arg(long)]
        force: bool,
    },
    /// Delete snapshots older than the retention, never the newest one.
    Prune {
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Days to keep (default A2A_BACKUP_RETENTION_DAYS, 30).
        #[arg(long)]
        retention_days: Option<u64>,
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

fn print_counts(counts: &std::collections::BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(config: Config, cmd: BackupCommand) -> Exit {
    match cmd {
        BackupCommand::Create { dir, remote } => create(config, dir, remote).await,
        BackupCommand::List { dir, verify } => {
            let dir = dir.unwrap_or(config.backup_dir.clone());
            let listed = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
                let items = backup::list(&dir).map_err(|e| e.to_string())?;
                // Oldest first: the newest readable snapshot is the last Ok.
                let newest = items.iter().rposition(Result::is_ok);
                Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| match item {
                        Ok(s) => {
                            let verified = if verify || Some(i) == newest {
                                match backup::verify(&s.path) {
                                    Ok(_) => "verified".to_string(),
                                    Err(e) => format!("DAMAGED: {e}"),
                                }
                            } else {
                                "manifest ok (--verify checks it completely)".to_string()
                            };
                            format!(
                                "{}  {}  {:>10} bytes  {}  {}",
                                s.manifest.created_at,
                                s.path.display(),
                                s.size,
                                print_counts(&s.manifest.counts),
                                verified
                            )
                        }
                        Err((path, e)) => format!("{}  DAMAGED: {e}", path.display()),
                    })
                    .collect())
            })
            .await;
            match listed {
                Ok(Ok(lines)) => {
                    if lines.is_empty() {
                        eprintln!("no snapshots");
                    }
                    for l in lines {
                        println!("{l}");
                    }
                    Exit::Ok
                }
                Ok(Err(e)) => Exit::Failed(e),
                Err(e) => Exit::Failed(e.to_string()),
            }
        }
        BackupCommand::Verify { file } => {
            let shown = file.display().to_string();
            match tokio::task::spawn_blocking(move || backup::verify(&file)).await {
                Ok(Ok(m)) => {
                    println!(
                        "{shown}: ok ({} records: {}; created {} from {} by a2a-mcp {})",
                        m.records,
                        print_counts(&m.counts),
                        m.created_at,
                        m.source_backend,
                        m.product_version
                    );
                    Exit::Ok
                }
                Ok(Err(e)) => Exit::Failed(format!("verification failed: {e}")),
                Err(e) => Exit::Failed(e.to_string()),
            }
        }
        BackupCommand::Restore {
            file,
            latest,
            dir,
            force,
        } => restore(config, file, latest, dir, force).await,
        BackupCommand::Prune {
            dir,
            retention_days,
            dry_run,
        } => {
            let dir = dir.unwrap_or(config.backup_dir.clone());
            let days = retention_days.unwrap_or(config.backup_retention_days);
            match tokio::task::spawn_blocking(move || backup::prune(&dir, days, now_ms(), dry_run))
                .await
            {
                Ok(Ok(gone)) => {
                    for p in &gone {
                        println!(
                            "{}{}",
                            if dry_run { "would delete " } else { "deleted " },
                            p.display()
                        );
                    }
                    eprintln!(
                        "{} snapshot(s) older than {days} days {}",
                        gone.len(),
                        if dry_run {
                            "would be deleted"
                        } else {
                            "deleted"
                        }
                    );
                    Exit::Ok
                }
                Ok(Err(e)) => Exit::Failed(e.to_string()),
                Err(e) => Exit::Failed(e.to_string()),
            }
        }
    }
}

/// The newest snapshot in `dir` whose framing is intact (it is verified completely by the
/// restore itself).
fn newest_snapshot(dir: &std::path::Path) -> Result<PathBuf, String> {
    backup::newest(dir)
        .map_err(|e| e.to_string())?
        .map(|s| s.path)
        .ok_or_else(|| {
            format!(
                "no snapshot in {} to restore (set A2A_BACKUP_DIR or --dir to the directory that holds them, or name the file)",
                dir.display()
            )
        })
}

async fn restore(
    config: Config,
    file: Option<PathBuf>,
    latest: bool,
    dir: Option<PathBuf>,
    force: bool,
) -> Exit {
    let file = match (file, latest) {
        (Some(f), _) => f,
        (None, true) => {
            let dir = dir.unwrap_or(config.backup_dir.clone());
            match tokio::task::spawn_blocking(move || newest_snapshot(&dir)).await {
                Ok(Ok(f)) => {
                    eprintln!("the newest snapshot is {}", f.display());
                    f
                }
                Ok(Err(e)) => return Exit::Failed(e),
                Err(e) => return Exit::Failed(e.to_string()),
            }
        }
        (None, false) => return Exit::Usage("name a snapshot file, or --latest".into()),
    };
    let opts = RestoreOptions {
        force,
        fail_after: None,
    };
    let cfg = config.clone();
    let shown = file.display().to_string();
    let target = store_name(&config);
    eprintln!("verifying {shown} (checksum and every record)");
    let done = tokio::task::spawn_blocking(move || {
        let mut report = |p: Progress| match p {
            Progress::Verified(m) => eprintln!(
                "verified: {} records ({}), created {} from {} by a2a-mcp {}; writing a new {target} store",
                m.records,
                print_counts(&m.counts),
                m.created_at,
                m.source_backend,
                m.product_version
            ),
            Progress::Written { done, total } => eprintln!(
                "  {done} of {total} records written ({}%)",
                done.saturating_mul(100).checked_div(total).unwrap_or(100)
            ),
            Progress::Switching => eprintln!("every record written; switching to the restored store"),
        };
        backup::restore::restore_with_progress(&cfg, &file, &opts, &mut report)
    })
    .await;
    match done {
        Ok(Ok(s)) => {
            println!(
                "restored {} records ({}) into the {target} store in {} ms",
                s.manifest.records,
                print_counts(&s.counts),
                s.duration_ms
            );
            if let Some(p) = s.previous {
                println!("the previous store is kept as {p}");
            }
            Exit::Ok
        }
        Ok(Err(e)) => {
            let hint = if latest && matches!(e, backup::BackupError::Invalid { .. }) {
                "; the newest snapshot is damaged: pick an older one from `a2a-mcp backup list` and name its file"
            } else {
                ""
            };
            Exit::Failed(format!(
                "restore refused or failed, the current store is unchanged: {e}{hint}"
            ))
        }
        Err(e) => Exit::Failed(e.to_string()),
    }
}

fn store_name(config: &Config) -> &'static str {
    match config.store {
        crate::store::StoreKind::Redb => "redb",
        crate::store::StoreKind::Sqlite => "sqlite",
        crate::store::StoreKind::Postgres => "postgres",
    }
}

async fn create(config: Config, dir: Option<PathBuf>, remote: Remote) -> Exit {
    let started = Instant::now();
    let base = remote
        .url
        .clone()
        .unwrap_or_else(|| super::admin::default_api_base(&config));
    // On a shared database a snapshot can be taken directly (`--dir`), or by the server.
    let opened = if dir.is_none() && super::admin::server_shares_the_store(&config, &base).await {
        Err(StoreError::Locked("a server runs on this database".into()))
    } else {
        store::open(&(&config).into()).await
    };
    match opened {
        Ok(st) => {
            let dir = dir.unwrap_or(config.backup_dir.clone());
            let made = tokio::task::spawn_blocking(move || {
                let schema = st.schema_version();
                let r = backup::create(&st, schema, &dir, now_ms(), &mut |n| {
                    eprintln!("  {n} records written");
                });
                let _ = tokio::runtime::Handle::current().block_on(st.close());
                r
            })
            .await;
            match made {
                Ok(Ok(info)) => {
                    println!("{}", info.path.display());
                    eprintln!(
                        "snapshot: {} bytes, {} records ({}), {} ms",
                        info.size,
                        info.manifest.records,
                        print_counts(&info.manifest.counts),
                        started.elapsed().as_millis()
                    );
                    Exit::Ok
                }
                Ok(Err(e)) => Exit::Failed(format!("backup failed: {e}")),
                Err(e) => Exit::Failed(e.to_string()),
            }
        }
        Err(StoreError::Locked(_)) => {
            if dir.is_some() {
                return Exit::Usage(
                    "a running server writes snapshots into its own A2A_BACKUP_DIR; --dir applies only to a stopped store".into(),
                );
            }
            eprintln!("the store is held by a running server; asking it for a snapshot at {base}");
            match call(
                http::Method::POST,
                format!("{base}/api/v1/admin/backups"),
                remote.token.as_deref(),
                None,
            )
            .await
            {
                Ok(v) => {
                    println!("{}", v["path"].as_str().unwrap_or(""));
                    eprintln!(
                        "snapshot: {} bytes, {} records, {} ms",
                        v["sizeBytes"],
                        v["records"],
                        started.elapsed().as_millis()
                    );
                    Exit::Ok
                }
                Err(e) => Exit::Failed(format!("backup failed: {e}")),
            }
        }
        Err(e) => Exit::Failed(format!("cannot open the store: {e}")),
    }
}
