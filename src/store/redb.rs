//! The default backend: one redb file in the state directory.
//!
//! Writes go through [`GroupCommitter`] (one commit thread, `Durability::Immediate`, so a
//! returned write is on disk). Reads open a short MVCC read transaction on the calling task;
//! they never wait for the writer. The file is locked by the process that opened it: a second
//! process gets [`StoreError::Locked`] with a message that says what to do instead.
//!
//! Secondary indexes kept here (mechanics, not business rules), each written in the same
//! transaction as its record: `active` (non-terminal requests), `finished` (terminal requests
//! by finish time, for retention), `by_session`, `by_principal` (one caller's requests, for
//! listing), `sessions_by_time` (sessions by last change, for retention) and `idem_exp`
//! (idempotency keys by expiry).
//!
//! Layout versions: 1 had no `by_principal` / `sessions_by_time`; opening a version-1 file
//! builds both from the records in the open transaction and records version 2.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::codec::{decode, decode_json, encode, encode_json};
use super::group_commit::{BatchWriter, GroupCommitter};
use super::{
    Aux, Leases, ListOrder, Op, Record, RequestFilter, Store, StoreCounts, StoreError, StoreResult,
    idempotency_taken,
};
use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord};

/// Schema version of the redb layout. Bump with a migration when tables change.
pub const SCHEMA_VERSION: u64 = 2;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const AGENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("agents");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("requests_active");
const FINISHED: TableDefinition<(i64, &str), ()> = TableDefinition::new("requests_finished");
const BY_SESSION: TableDefinition<(&str, &str), ()> = TableDefinition::new("requests_by_session");
/// (principal, request id): one caller's requests (layout version 2).
const BY_PRINCIPAL: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("requests_by_principal");
/// (last change, session id): sessions by `closed_at`, else `created_at` (layout version 2).
const SESSIONS_BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("sessions_by_time");
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
const IDEM: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const IDEM_EXP: TableDefinition<(i64, &str), ()> = TableDefinition::new("idempotency_expiry");
/// All auxiliary tables in one: key (table name, record key).
const AUX: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("aux");

fn io<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Brings a file of an older layout up to [`SCHEMA_VERSION`], inside the transaction that
/// opens it (all or nothing).
fn upgrade(txn: &redb::WriteTransaction, from: u64) -> StoreResult<()> {
    if from < 2 {
        // Version 2 added the per-principal request index and the sessions-by-time index.
        let requests = txn.open_table(REQUESTS).map_err(io)?;
        let mut by_principal = txn.open_table(BY_PRINCIPAL).map_err(io)?;
        for item in requests.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            let r: RequestRecord = decode("requests", v.value())?;
            by_principal
                .insert((r.principal.as_str(), r.id.as_str()), ())
                .map_err(io)?;
        }
        let sessions = txn.open_table(SESSIONS).map_err(io)?;
        let mut by_time = txn.open_table(SESSIONS_BY_TIME).map_err(io)?;
        for item in sessions.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            let r: SessionRecord = decode("sessions", v.value())?;
            by_time
                .insert((r.last_change(), r.id.as_str()), ())
                .map_err(io)?;
        }
    }
    Ok(())
}

pub struct RedbStore {
    /// `None` once closed: the file (and its lock) is released as soon as in-flight reads end.
    db: parking_lot::RwLock<Option<Arc<Database>>>,
    committer: GroupCommitter,
    path: PathBuf,
    /// The layout version the file had when opened (0: created by this open).
    found_version: u64,
}

struct Writer {
    db: Arc<Database>,
}

impl BatchWriter for Writer {
    fn apply(&mut self, ops: &[Op]) -> StoreResult<()> {
        let mut txn = self.db.begin_write().map_err(io)?;
        txn.set_durability(Durability::Immediate).map_err(io)?;
        // Any failure (a conflict of a conditional op included) aborts the whole batch.
        let written = (|| -> StoreResult<()> {
            let mut agents = txn.open_table(AGENTS).map_err(io)?;
            let mut sessions = txn.open_table(SESSIONS).map_err(io)?;
            let mut requests = txn.open_table(REQUESTS).map_err(io)?;
            let mut active = txn.open_table(ACTIVE).map_err(io)?;
            let mut finished = txn.open_table(FINISHED).map_err(io)?;
            let mut by_session = txn.open_table(BY_SESSION).map_err(io)?;
            let mut by_principal = txn.open_table(BY_PRINCIPAL).map_err(io)?;
            let mut sessions_by_time = txn.open_table(SESSIONS_BY_TIME).map_err(io)?;
            let mut events = txn.open_table(EVENTS).map_err(io)?;
            let mut idem = txn.open_table(IDEM).map_err(io)?;
            let mut idem_exp = txn.open_table(IDEM_EXP).map_err(io)?;
            let mut aux = txn.open_table(AUX).map_err(io)?;
            for op in ops {
                match op {
                    Op::PutAgent(rec) => {
                        agents
                            .insert(rec.spec.id.as_str(), encode_json(rec)?.as_slice())
                            .map_err(io)?;
                    }
                    Op::DeleteAgent(id) => {
                        agents.remove(id.as_str()).map_err(io)?;
                    }
                    Op::PutSession(rec) => {
                        let old: Option<SessionRecord> =
                            match sessions.get(rec.id.as_str()).map_err(io)? {
                                Some(v) => Some(decode("sessions", v.value())?),
                                None => None,
                            };
                        if let Some(old) = old {
                            sessions_by_time
                                .remove((old.last_change(), old.id.as_str()))
                                .map_err(io)?;
                        }
                        sessions
                            .insert(rec.id.as_str(), encode(rec)?.as_slice())
                            .map_err(io)?;
                        sessions_by_time
                            .insert((rec.last_change(), rec.id.as_str()), ())
                            .map_err(io)?;
                    }
                    Op::DeleteSession(id) => {
                        let old: Option<SessionRecord> =
                            match sessions.remove(id.as_str()).map_err(io)? {
                                Some(v) => Some(decode("sessions", v.value())?),
                                None => None,
                            };
                        if let Some(old) = old {
                            sessions_by_time
                                .remove((old.last_change(), id.as_str()))
                                .map_err(io)?;
                        }
                    }
                    Op::PutRequest(rec) => {
                        let old: Option<RequestRecord> =
                            match requests.get(rec.id.as_str()).map_err(io)? {
                                Some(v) => Some(decode("requests", v.value())?),
                                None => None,
                            };
                        if let Some(old) = &old
                            && let Some(f) = old.finished_at
                            && old.state.is_terminal()
                        {
                            finished.remove((f, old.id.as_str())).map_err(io)?;
                        }
                        if let Some(old) = &old
                            && old.principal != rec.principal
                        {
                            by_principal
                                .remove((old.principal.as_str(), old.id.as_str()))
                                .map_err(io)?;
                        }
                        by_principal
                            .insert((rec.principal.as_str(), rec.id.as_str()), ())
                            .map_err(io)?;
                        requests
                            .insert(rec.id.as_str(), encode(rec)?.as_slice())
                            .map_err(io)?;
                        if rec.state.is_terminal() {
                            active.remove(rec.id.as_str()).map_err(io)?;
                            let f = rec.finished_at.unwrap_or(rec.created_at);
                            finished.insert((f, rec.id.as_str()), ()).map_err(io)?;
                        } else {
                            active.insert(rec.id.as_str(), ()).map_err(io)?;
                        }
                        if let Some(s) = &rec.session_id {
                            by_session
                                .insert((s.as_str(), rec.id.as_str()), ())
                                .map_err(io)?;
                        }
                    }
                    Op::DeleteRequest(id) => {
                        let old: Option<RequestRecord> =
                            match requests.remove(id.as_str()).map_err(io)? {
                                Some(v) => Some(decode("requests", v.value())?),
                                None => None,
                            };
                        if let Some(old) = old {
                            active.remove(id.as_str()).map_err(io)?;
                            if old.state.is_terminal() {
                                let f = old.finished_at.unwrap_or(old.created_at);
                                finished.remove((f, id.as_str())).map_err(io)?;
                            }
                            if let Some(s) = &old.session_id {
                                by_session.remove((s.as_str(), id.as_str())).map_err(io)?;
                            }
                            by_principal
                                .remove((old.principal.as_str(), id.as_str()))
                                .map_err(io)?;
                        }
                        events
                            .retain_in((id.as_str(), 0u64)..=(id.as_str(), u64::MAX), |_, _| false)
                            .map_err(io)?;
                    }
                    Op::AppendEvent(ev) => {
                        events
                            .insert((ev.request_id.as_str(), ev.seq), encode(ev)?.as_slice())
                            .map_err(io)?;
                    }
                    Op::PutIdempotency(rec) | Op::ClaimIdempotency { record: rec, .. } => {
                        let old: Option<IdempotencyRecord> =
                            match idem.get(rec.scope.as_str()).map_err(io)? {
                                Some(v) => Some(decode("idempotency", v.value())?),
                                None => None,
                            };
                        if let Op::ClaimIdempotency { now, .. } = op
                            && old.as_ref().is_some_and(|o| o.expires_at > *now)
                        {
                            return Err(idempotency_taken(&rec.scope));
                        }
                        if let Some(old) = old {
                            idem_exp
                                .remove((old.expires_at, old.scope.as_str()))
                                .map_err(io)?;
                        }
                        idem.insert(rec.scope.as_str(), encode(rec)?.as_slice())
                            .map_err(io)?;
                        idem_exp
                            .insert((rec.expires_at, rec.scope.as_str()), ())
                            .map_err(io)?;
                    }
                    Op::PutAux { table, key, value } => {
                        aux.insert((table.name(), key.as_str()), value.as_slice())
                            .map_err(io)?;
                    }
                    Op::DeleteAux { table, key } => {
                        aux.remove((table.name(), key.as_str())).map_err(io)?;
                    }
                    Op::DeleteIdempotency(scope) => {
                        let old: Option<IdempotencyRecord> =
                            match idem.remove(scope.as_str()).map_err(io)? {
                                Some(v) => Some(decode("idempotency", v.value())?),
                                None => None,
                            };
                        if let Some(old) = old {
                            idem_exp
                                .remove((old.expires_at, old.scope.as_str()))
                                .map_err(io)?;
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = txn.abort();
            return Err(e);
        }
        txn.commit().map_err(io)
    }
}

/// What opening upgrades: the layout changes after each older version, for `a2a-mcp migrate`.
pub const LAYOUT_CHANGES: &[(u32, &str)] = &[(2, "owner_and_session_indexes")];

/// The layout version recorded in the file at `path` (`None`: no file yet), read without
/// changing anything. Fails like [`RedbStore::open`] when another process holds the file.
pub fn layout_version(path: &Path) -> StoreResult<Option<u64>> {
    if !path.exists() {
        return Ok(None);
    }
    let db = Database::open(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(format!(
            "the store {} is in use by another a2a-mcp process; stop it first",
            path.display()
        )),
        other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
    })?;
    let txn = db.begin_read().map_err(io)?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Some(0)),
        Err(e) => return Err(io(e)),
    };
    Ok(Some(
        meta.get("schema_version")
            .map_err(io)?
            .map_or(0, |v| v.value()),
    ))
}

impl RedbStore {
    /// Opens (or creates) the store file. Fails with [`StoreError::Locked`] when another
    /// process holds it and [`StoreError::TooNew`] when a newer version wrote it.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::private_dir(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the state directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        // Created 0600 before redb opens it (redb initialises an empty file).
        crate::files::private_file(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", path.display()))
        })?;
        let db = Database::builder()
            .set_cache_size(16 * 1024 * 1024)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked(format!(
                    "the store {} is in use by another a2a-mcp process (embedded stores serve one process); \
                     stop that process, talk to it with `a2a-mcp stdio --remote http://HOST:PORT/mcp`, \
                     or point A2A_DATA_DIR elsewhere; to run several replicas, use A2A_STORE=postgres \
                     (docs/SCALING_GUIDE.md)",
                    path.display()
                )),
                other => StoreError::Unavailable(format!("cannot open {}: {other}", path.display())),
            })?;
        let db = Arc::new(db);
        // Create every table and check the schema version.
        let found_version;
        {
            let mut txn = db.begin_write().map_err(io)?;
            txn.set_durability(Durability::Immediate).map_err(io)?;
            {
                let mut meta = txn.open_table(META).map_err(io)?;
                let found = meta.get("schema_version").map_err(io)?.map(|v| v.value());
                found_version = found.unwrap_or(0);
                match found {
                    Some(v) if v > SCHEMA_VERSION => {
                        return Err(StoreError::TooNew(format!(
                            "the store {} has schema version {v}, but this a2a-mcp {} knows only up to {SCHEMA_VERSION}; \
                             run a newer a2a-mcp or restore a backup made by this version",
                            path.display(),
                            env!("CARGO_PKG_VERSION")
                        )));
                    }
                    Some(v) if v == SCHEMA_VERSION => {}
                    Some(v) => {
                        upgrade(&txn, v)?;
                        meta.insert("schema_version", SCHEMA_VERSION).map_err(io)?;
                        tracing::info!(
                            "the redb store {} was upgraded from layout version {v} to {SCHEMA_VERSION}",
                            path.display()
                        );
                    }
                    None => {
                        meta.insert("schema_version", SCHEMA_VERSION).map_err(io)?;
                    }
                }
                txn.open_table(AGENTS).map_err(io)?;
                txn.open_table(SESSIONS).map_err(io)?;
                txn.open_table(REQUESTS).map_err(io)?;
                txn.open_table(ACTIVE).map_err(io)?;
                txn.open_table(FINISHED).map_err(io)?;
                txn.open_table(BY_SESSION).map_err(io)?;
                txn.open_table(BY_PRINCIPAL).map_err(io)?;
                txn.open_table(SESSIONS_BY_TIME).map_err(io)?;
                txn.open_table(EVENTS).map_err(io)?;
                txn.open_table(IDEM).map_err(io)?;
                txn.open_table(IDEM_EXP).map_err(io)?;
                txn.open_table(AUX).map_err(io)?;
            }
            txn.commit().map_err(io)?;
        }
        let committer = GroupCommitter::start("redb", Writer { db: db.clone() })?;
        Ok(Self {
            db: parking_lot::RwLock::new(Some(db)),
            committer,
            path: path.to_path_buf(),
            found_version,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout version the file had before this open (0: it was created now). Below
    /// [`SCHEMA_VERSION`], the open upgraded it.
    pub fn found_version(&self) -> u64 {
        self.found_version
    }

    fn read(&self) -> StoreResult<redb::ReadTransaction> {
        let db = self.db.read().clone();
        match db {
            Some(db) => db.begin_read().map_err(io),
            None => Err(StoreError::Unavailable(format!(
                "the store {} is closed",
                self.path.display()
            ))),
        }
    }
}

/// One process owns the file: nothing is shared, so nothing is leased (the defaults).
impl Leases for RedbStore {}

#[async_trait]
impl Store for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn schema_version(&self) -> u64 {
        SCHEMA_VERSION
    }

    async fn write(&self, ops: Vec<Op>) -> StoreResult<()> {
        self.committer.write(ops).await
    }

    async fn get_agent(&self, id: &str) -> StoreResult<Option<AgentRecord>> {
        let t = self.read()?.open_table(AGENTS).map_err(io)?;
        match t.get(id).map_err(io)? {
            Some(v) => Ok(Some(decode_json("agents", v.value())?)),
            None => Ok(None),
        }
    }

    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>> {
        let t = self.read()?.open_table(AGENTS).map_err(io)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            out.push(decode_json("agents", v.value())?);
        }
        Ok(out)
    }

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        let t = self.read()?.open_table(SESSIONS).map_err(io)?;
        match t.get(id).map_err(io)? {
            Some(v) => Ok(Some(decode("sessions", v.value())?)),
            None => Ok(None),
        }
    }

    async fn get_request(&self, id: &str) -> StoreResult<Option<RequestRecord>> {
        let t = self.read()?.open_table(REQUESTS).map_err(io)?;
        match t.get(id).map_err(io)? {
            Some(v) => Ok(Some(decode("requests", v.value())?)),
            None => Ok(None),
        }
    }

    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>> {
        let txn = self.read()?;
        let requests = txn.open_table(REQUESTS).map_err(io)?;
        let limit = filter.max_results();
        let after = filter.after_id.as_deref().unwrap_or("");
        let keep = |r: &RequestRecord| filter.matches(r);
        let mut out = Vec::new();
        if let Some(session) = &filter.session_id {
            let idx = txn.open_table(BY_SESSION).map_err(io)?;
            let range = idx
                .range((session.as_str(), after)..=(session.as_str(), "\u{10FFFF}"))
                .map_err(io)?;
            for item in range {
                let (k, _) = item.map_err(io)?;
                let (_, id) = k.value();
                if id == after {
                    continue;
                }
                if let Some(v) = requests.get(id).map_err(io)? {
                    let r: RequestRecord = decode("requests", v.value())?;
                    if keep(&r) {
                        out.push(r);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
            }
        } else {
            for item in requests.range(after..).map_err(io)? {
                let (k, v) = item.map_err(io)?;
                if k.value() == after {
                    continue;
                }
                let r: RequestRecord = decode("requests", v.value())?;
                if keep(&r) {
                    out.push(r);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn list_requests_of(
        &self,
        principal: &str,
        filter: &RequestFilter,
        order: ListOrder,
    ) -> StoreResult<Vec<RequestRecord>> {
        let txn = self.read()?;
        let requests = txn.open_table(REQUESTS).map_err(io)?;
        let idx = txn.open_table(BY_PRINCIPAL).map_err(io)?;
        let limit = filter.max_results();
        let keep = |r: &RequestRecord| filter.matches(r);
        let cursor = filter.after_id.as_deref();
        let range = match (order, cursor) {
            (ListOrder::OldestFirst, Some(c)) => {
                idx.range((principal, c)..=(principal, "\u{10FFFF}"))
            }
            (ListOrder::OldestFirst, None) | (ListOrder::NewestFirst, None) => {
                idx.range((principal, "")..=(principal, "\u{10FFFF}"))
            }
            (ListOrder::NewestFirst, Some(c)) => idx.range((principal, "")..=(principal, c)),
        }
        .map_err(io)?;
        let ids: Box<dyn Iterator<Item = _>> = match order {
            ListOrder::OldestFirst => Box::new(range),
            ListOrder::NewestFirst => Box::new(range.rev()),
        };
        let mut out = Vec::new();
        for item in ids {
            let (k, _) = item.map_err(io)?;
            let (_, id) = k.value();
            if cursor == Some(id) {
                continue;
            }
            if let Some(v) = requests.get(id).map_err(io)? {
                let r: RequestRecord = decode("requests", v.value())?;
                if keep(&r) {
                    out.push(r);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    async fn sessions_before(
        &self,
        before_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<SessionRecord>> {
        let txn = self.read()?;
        let idx = txn.open_table(SESSIONS_BY_TIME).map_err(io)?;
        let sessions = txn.open_table(SESSIONS).map_err(io)?;
        let start = after.unwrap_or((i64::MIN, ""));
        let mut out = Vec::new();
        if start.0 >= before_ms {
            return Ok(out);
        }
        for item in idx.range(start..(before_ms, "")).map_err(io)? {
            let (k, _) = item.map_err(io)?;
            let (ts, id) = k.value();
            if after == Some((ts, id)) {
                continue;
            }
            if let Some(v) = sessions.get(id).map_err(io)? {
                out.push(decode("sessions", v.value())?);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    async fn active_requests(&self) -> StoreResult<Vec<RequestRecord>> {
        let txn = self.read()?;
        let active = txn.open_table(ACTIVE).map_err(io)?;
        let requests = txn.open_table(REQUESTS).map_err(io)?;
        let mut out = Vec::new();
        for item in active.iter().map_err(io)? {
            let (k, _) = item.map_err(io)?;
            if let Some(v) = requests.get(k.value()).map_err(io)? {
                out.push(decode("requests", v.value())?);
            }
        }
        Ok(out)
    }

    async fn finished_before(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        let t = self.read()?.open_table(FINISHED).map_err(io)?;
        let mut out = Vec::new();
        for item in t.range((i64::MIN, "")..(before_ms, "")).map_err(io)? {
            let (k, _) = item.map_err(io)?;
            out.push(k.value().1.to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn events(&self, request_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Event>> {
        let t = self.read()?.open_table(EVENTS).map_err(io)?;
        let mut out = Vec::new();
        if after == u64::MAX {
            return Ok(out);
        }
        for item in t
            .range((request_id, after + 1)..=(request_id, u64::MAX))
            .map_err(io)?
        {
            let (_, v) = item.map_err(io)?;
            out.push(decode("events", v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn last_seq(&self, request_id: &str) -> StoreResult<u64> {
        let t = self.read()?.open_table(EVENTS).map_err(io)?;
        let last = t
            .range((request_id, 0u64)..=(request_id, u64::MAX))
            .map_err(io)?
            .next_back();
        match last {
            Some(item) => Ok(item.map_err(io)?.0.value().1),
            None => Ok(0),
        }
    }

    async fn get_idempotency(&self, scope: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let t = self.read()?.open_table(IDEM).map_err(io)?;
        match t.get(scope).map_err(io)? {
            Some(v) => Ok(Some(decode("idempotency", v.value())?)),
            None => Ok(None),
        }
    }

    async fn expired_idempotency(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>> {
        let t = self.read()?.open_table(IDEM_EXP).map_err(io)?;
        let mut out = Vec::new();
        for item in t.range((i64::MIN, "")..(before_ms, "")).map_err(io)? {
            let (k, _) = item.map_err(io)?;
            out.push(k.value().1.to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn get_aux(&self, table: Aux, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let t = self.read()?.open_table(AUX).map_err(io)?;
        Ok(t.get((table.name(), key))
            .map_err(io)?
            .map(|v| v.value().to_vec()))
    }

    async fn scan_aux(
        &self,
        table: Aux,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let t = self.read()?.open_table(AUX).map_err(io)?;
        let start = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let mut out = Vec::new();
        for item in t
            .range((table.name(), start)..(table.name(), "\u{10FFFF}"))
            .map_err(io)?
        {
            let (k, v) = item.map_err(io)?;
            let (_, key) = k.value();
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_string(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn export(
        &self,
        out: &mut (dyn FnMut(Record) -> StoreResult<()> + Send),
    ) -> StoreResult<()> {
        // One read transaction: a consistent snapshot; writers are not blocked (MVCC).
        let txn = self.read()?;
        for item in txn.open_table(AGENTS).map_err(io)?.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            out(Record::Agent(decode_json("agents", v.value())?))?;
        }
        for item in txn.open_table(SESSIONS).map_err(io)?.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            out(Record::Session(decode("sessions", v.value())?))?;
        }
        for item in txn.open_table(REQUESTS).map_err(io)?.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            out(Record::Request(decode("requests", v.value())?))?;
        }
        for item in txn.open_table(EVENTS).map_err(io)?.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            out(Record::Event(decode("events", v.value())?))?;
        }
        for item in txn.open_table(IDEM).map_err(io)?.iter().map_err(io)? {
            let (_, v) = item.map_err(io)?;
            out(Record::Idempotency(decode("idempotency", v.value())?))?;
        }
        for item in txn.open_table(AUX).map_err(io)?.iter().map_err(io)? {
            let (k, v) = item.map_err(io)?;
            let (table, key) = k.value();
            let Some(table) = Aux::from_name(table) else {
                return Err(StoreError::Corrupt {
                    table: "aux",
                    detail: format!("unknown auxiliary table {table:?}"),
                });
            };
            out(Record::Aux {
                table,
                key: key.to_string(),
                value: v.value().to_vec(),
            })?;
        }
        Ok(())
    }

    async fn counts(&self) -> StoreResult<StoreCounts> {
        let txn = self.read()?;
        let aux_table = txn.open_table(AUX).map_err(io)?;
        let mut aux = std::collections::BTreeMap::new();
        for a in Aux::ALL {
            let n = aux_table
                .range((a.name(), "")..(a.name(), "\u{10FFFF}"))
                .map_err(io)?
                .count() as u64;
            aux.insert(a.name().to_string(), n);
        }
        Ok(StoreCounts {
            agents: txn.open_table(AGENTS).map_err(io)?.len().map_err(io)?,
            sessions: txn.open_table(SESSIONS).map_err(io)?.len().map_err(io)?,
            requests: txn.open_table(REQUESTS).map_err(io)?.len().map_err(io)?,
            events: txn.open_table(EVENTS).map_err(io)?.len().map_err(io)?,
            idempotency_keys: txn.open_table(IDEM).map_err(io)?.len().map_err(io)?,
            aux,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        let txn = self.read()?;
        txn.open_table(META).map_err(io)?;
        Ok(())
    }

    async fn close(&self) -> StoreResult<()> {
        self.committer.close().await;
        self.db.write().take();
        Ok(())
    }
}
