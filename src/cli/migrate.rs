//! `a2a-mcp migrate [--status]`: brings the configured store's schema to this build's version
//! (or, with `--status`, only shows it). Idempotent: a second run finds nothing to do.
//!
//! SQLite: takes the store's process lock, so it is refused while a server holds the file
//! (stop the server first, or let the server migrate at start with `A2A_AUTO_MIGRATE`).
//! Postgres: safe while servers run; concurrent migrators serialize on an advisory lock.
//! redb: has no SQL migrations; the command reports the layout version and upgrades an older
//! layout (building the indexes it lacks, as the next start would); refused while a server
//! holds the file.
//! A schema newer than this build is refused, naming both versions (exit 1).

use super::Exit;
use crate::config::Config;
use crate::store::{self, StoreError, StoreKind, StoreSettings};

pub async fn run(config: Config, status_only: bool, json: bool) -> Exit {
    match store::migrate(&StoreSettings::from(&config), status_only).await {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => return Exit::Failed(format!("cannot render the report: {e}")),
                }
            } else if config.store == StoreKind::Redb {
                if report.after == 0 {
                    println!(
                        "redb store at {}: no store yet (it is created at layout version {} on first start)",
                        report.location, report.latest
                    );
                } else if !report.applied_now.is_empty() {
                    println!(
                        "redb store at {}: upgraded from layout version {} to {} (indexes built)",
                        report.location, report.before, report.after
                    );
                } else if !report.pending.is_empty() {
                    println!(
                        "redb store at {}: layout version {} (this build knows up to {}); `a2a-mcp migrate` or the next start upgrades it",
                        report.location, report.after, report.latest
                    );
                } else {
                    println!(
                        "redb store at {}: layout version {} (this build knows up to {}); up to date, nothing to do",
                        report.location, report.after, report.latest
                    );
                }
            } else {
                print!("{}", report.render());
            }
            Exit::Ok
        }
        Err(StoreError::Locked(m) | StoreError::TooNew(m)) => Exit::Failed(m),
        Err(e) => Exit::Failed(format!("a2a-mcp migrate: {e}")),
    }
}
