//! Persistence: one [`Store`] trait, one backend per file.
//!
//! The store owns bytes on disk and nothing else: it holds no business rules (no state
//! machine, no idempotency semantics, no retention policy). The hub decides *what* to write;
//! the store guarantees that a [`Store::write`] batch is atomic and durable when the call
//! returns, and that concurrent writers share fsyncs (group commit).
//!
//! Every backend passes the same conformance suite (`tests/it/store_conformance.rs`).
//!
//! Threading: all methods are `async` and safe to call from any task. Embedded backends (redb,
//! sqlite) run their single writer on a dedicated OS thread (see [`group_commit`]); reads run
//! on the calling task and are short. The postgres backend batches concurrent writes in one
//! commit task and reads over a connection pool.
//!
//! Schemas: redb versions its layout (`redb::SCHEMA_VERSION`) and every record (`codec`); the
//! SQL backends apply numbered [`migrations`] (at open when `A2A_AUTO_MIGRATE` is on, or with
//! `a2a-mcp migrate`).

pub mod codec;
pub(crate) mod columns;
pub mod group_commit;
pub mod leases;
pub mod migrations;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod redb;
pub mod settings;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{ErrorCode, HubError};
use crate::model::{
    AgentRecord, Event, IdempotencyRecord, RequestRecord, RequestState, SessionRecord,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or written (disk full, database away, ...).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt record in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// The file is held by another process.
    #[error("{0}")]
    Locked(String),
    /// The store was written by a newer version of the program.
    #[error("{0}")]
    TooNew(String),
    /// A conditional write found its condition false (e.g. [`Op::ClaimIdempotency`] on a key
    /// another writer holds); nothing of the batch was written.
    #[error("write conflict: {0}")]
    Conflict(String),
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub use leases::Leases;
pub use settings::{PostgresSettings, StoreKind, StoreSettings};

/// A store failure as the hub reports it: unavailability is a 503 the client may retry (the
/// detail goes to the log), anything else an internal error.
impl From<StoreError> for HubError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(msg) => {
                tracing::error!("store unavailable: {msg}");
                HubError::new(
                    ErrorCode::StoreUnavailable,
                    "the store is unavailable; the request was not recorded, retry later",
                )
            }
            other => HubError::internal(other),
        }
    }
}

/// The error of an [`Op::ClaimIdempotency`] that found a live record.
pub fn idempotency_taken(scope: &str) -> StoreError {
    StoreError::Conflict(format!(
        "idempotency scope {scope} is held by another request"
    ))
}

/// Auxiliary tables: records the store keeps as opaque bytes under a string key (encoded by
/// their owners with [`codec`]). Keys are ordered byte-wise, so time-ordered ids scan in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Aux {
    /// API keys, keyed by the hash of the secret.
    ApiKeys,
    /// Permission grants between agents, keyed by grant id.
    Grants,
    /// Pending and decided permission requests, keyed by request id.
    PermissionRequests,
    /// The audit log, keyed by time-ordered entry id.
    Audit,
    /// A2A push notification configs, keyed by `taskId/configId`.
    PushConfigs,
    /// A2A messages of a task (its history), keyed by `taskId/seq` (seq zero-padded).
    TaskMessages,
}

impl Aux {
    pub const ALL: [Aux; 6] = [
        Aux::ApiKeys,
        Aux::Grants,
        Aux::PermissionRequests,
        Aux::Audit,
        Aux::PushConfigs,
        Aux::TaskMessages,
    ];

    /// Stable name, used as the table name by backends and in snapshots.
    pub fn name(self) -> &'static str {
        match self {
            Aux::ApiKeys => "api_keys",
            Aux::Grants => "grants",
            Aux::PermissionRequests => "permission_requests",
            Aux::Audit => "audit",
            Aux::PushConfigs => "push_configs",
            Aux::TaskMessages => "task_messages",
        }
    }

    pub fn from_name(name: &str) -> Option<Aux> {
        Aux::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One stored record of any kind, as exported for snapshots (and written back on restore).
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Agent(AgentRecord),
    Session(SessionRecord),
    Request(RequestRecord),
    Event(Event),
    Idempotency(IdempotencyRecord),
    Aux {
        table: Aux,
        key: String,
        value: Vec<u8>,
    },
}

impl Record {
    /// The op that writes this record back.
    pub fn into_op(self) -> Op {
        match self {
            Record::Agent(r) => Op::PutAgent(r),
            Record::Session(r) => Op::PutSession(r),
            Record::Request(r) => Op::PutRequest(r),
            Record::Event(e) => Op::AppendEvent(e),
            Record::Idempotency(r) => Op::PutIdempotency(r),
            Record::Aux { table, key, value } => Op::PutAux { table, key, value },
        }
    }
}

/// One mutation. A batch of them is applied atomically by [`Store::write`].
#[derive(Debug, Clone)]
pub enum Op {
    PutAgent(AgentRecord),
    DeleteAgent(String),
    PutSession(SessionRecord),
    /// Delete a session record (and its index entry). Its requests are not touched.
    DeleteSession(String),
    /// Insert or replace a request. Backends keep their secondary indexes (active requests,
    /// finished-by-time, by-session) in step with the record's state.
    PutRequest(RequestRecord),
    /// Delete a request, its events and its index entries.
    DeleteRequest(String),
    AppendEvent(Event),
    /// Insert or replace an idempotency record unconditionally (restores, migrations).
    PutIdempotency(IdempotencyRecord),
    /// Insert an idempotency record unless its scope holds one still live at `now`
    /// (`expires_at > now`); then the whole batch fails with [`StoreError::Conflict`] and
    /// none of it is written. What an invocation writes, so that two writers racing on one
    /// key (two replicas of a shared store) cannot both create a request for it.
    ClaimIdempotency {
        record: IdempotencyRecord,
        now: i64,
    },
    DeleteIdempotency(String),
    PutAux {
        table: Aux,
        key: String,
        value: Vec<u8>,
    },
    DeleteAux {
        table: Aux,
        key: String,
    },
}

/// Filter for [`Store::list_requests`] and [`Store::list_requests_of`]. Results are ordered
/// by request id (creation order; ids are time-ordered).
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub states: Vec<RequestState>,
    /// Exclusive cursor (for paging): ids strictly after it in the listing order, i.e.
    /// greater ids oldest-first, smaller ids newest-first.
    pub after_id: Option<String>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

impl RequestFilter {
    /// Whether a record meets the filter's agent, session and state conditions (the cursor
    /// and the limit are the listing's business).
    pub fn matches(&self, r: &RequestRecord) -> bool {
        self.agent_id.as_ref().is_none_or(|a| &r.agent_id == a)
            && self
                .session_id
                .as_ref()
                .is_none_or(|s| r.session_id.as_ref() == Some(s))
            && (self.states.is_empty() || self.states.contains(&r.state))
    }

    /// How many records the listing may return (`limit`, 0 meaning no limit).
    pub fn max_results(&self) -> usize {
        if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        }
    }
}

/// The order of a request listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Creation order (ascending id).
    #[default]
    OldestFirst,
    /// Newest first (descending id).
    NewestFirst,
}

/// Record counts, for `/healthz`, stats and backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    pub agents: u64,
    pub sessions: u64,
    pub requests: u64,
    pub events: u64,
    pub idempotency_keys: u64,
    /// Records per auxiliary table, by table name.
    pub aux: std::collections::BTreeMap<String, u64>,
}

#[async_trait]
pub trait Store: Leases + Send + Sync + 'static {
    /// Backend name (`redb`, ...).
    fn backend(&self) -> &'static str;

    /// Version of this backend's schema (recorded in snapshots).
    fn schema_version(&self) -> u64 {
        1
    }

    /// Applies `ops` atomically; durable on return. Concurrent calls share commits.
    async fn write(&self, ops: Vec<Op>) -> StoreResult<()>;

    async fn get_agent(&self, id: &str) -> StoreResult<Option<AgentRecord>>;
    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>>;

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    /// Sessions whose last change (`closed_at`, else `created_at`) is strictly before
    /// `before_ms`, ordered by (that time, id), strictly after the cursor `after` (a previous
    /// page's last (time, id)), at most `limit`. For the retention sweeper.
    async fn sessions_before(
        &self,
        before_ms: i64,
        after: Option<(i64, &str)>,
        limit: usize,
    ) -> StoreResult<Vec<SessionRecord>>;

    async fn get_request(&self, id: &str) -> StoreResult<Option<RequestRecord>>;
    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>>;
    /// Requests made by `principal` that match `filter`, in `order`. Served from a
    /// per-principal index, so it reads that caller's requests only, never the whole table.
    async fn list_requests_of(
        &self,
        principal: &str,
        filter: &RequestFilter,
        order: ListOrder,
    ) -> StoreResult<Vec<RequestRecord>>;
    /// Requests not in a terminal state, in creation order.
    async fn active_requests(&self) -> StoreResult<Vec<RequestRecord>>;
    /// Ids of terminal requests finished strictly before `before_ms`, oldest first.
    async fn finished_before(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>>;

    /// Events of a request with `seq > after`, in order, at most `limit`.
    async fn events(&self, request_id: &str, after: u64, limit: usize) -> StoreResult<Vec<Event>>;
    /// The highest stored `seq` of a request (0 when it has none).
    async fn last_seq(&self, request_id: &str) -> StoreResult<u64>;

    async fn get_idempotency(&self, scope: &str) -> StoreResult<Option<IdempotencyRecord>>;
    /// Scopes of idempotency records that expired strictly before `before_ms`.
    async fn expired_idempotency(&self, before_ms: i64, limit: usize) -> StoreResult<Vec<String>>;

    async fn get_aux(&self, table: Aux, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Records of `table` whose key starts with `prefix`, in key order, with keys strictly
    /// after `after` (when given), at most `limit`.
    async fn scan_aux(
        &self,
        table: Aux,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Vec<u8>)>>;

    /// Hands every stored record to `out`, from one consistent point-in-time view, while
    /// writers keep going. Order: agents, sessions, requests, events, idempotency keys, aux.
    async fn export(
        &self,
        out: &mut (dyn FnMut(Record) -> StoreResult<()> + Send),
    ) -> StoreResult<()>;

    /// Adds records read from a snapshot to a store being filled (restore, backend
    /// migration): none of them may exist yet. Atomic per call. Backends with a faster bulk
    /// path than [`Store::write`] (Postgres `COPY`) override it.
    async fn load(&self, records: Vec<Record>) -> StoreResult<()> {
        self.write(records.into_iter().map(Record::into_op).collect())
            .await
    }

    async fn counts(&self) -> StoreResult<StoreCounts>;
    /// Cheap liveness probe.
    async fn ping(&self) -> StoreResult<()>;
    /// Flushes and releases the store (the writer thread stops).
    async fn close(&self) -> StoreResult<()>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the configured backend (for Postgres: connects, and migrates or checks the schema).
pub async fn open(settings: &StoreSettings) -> StoreResult<DynStore> {
    match settings.kind {
        StoreKind::Redb => {
            let path = settings.data_dir.join("a2a-mcp.redb");
            Ok(Arc::new(redb::RedbStore::open(&path)?))
        }
        StoreKind::Sqlite => {
            let path = settings.data_dir.join(sqlite::FILE_NAME);
            Ok(Arc::new(sqlite::SqliteStore::open(
                &path,
                settings.auto_migrate,
            )?))
        }
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => Ok(Arc::new(
            postgres::PostgresStore::open(&settings.postgres, settings.auto_migrate).await?,
        )),
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => Err(StoreError::Other(
            "this a2a-mcp was built without Postgres support (cargo feature `postgres`)".into(),
        )),
    }
}

/// `a2a-mcp migrate`: applies pending migrations (`status_only`: only reports) on the
/// configured backend. redb has no migrations: its version is reported and nothing changes.
pub async fn migrate(
    settings: &StoreSettings,
    status_only: bool,
) -> StoreResult<migrations::Report> {
    let mode = if status_only {
        migrations::Mode::Status
    } else {
        migrations::Mode::Apply
    };
    match settings.kind {
        StoreKind::Redb => {
            let path = settings.data_dir.join("a2a-mcp.redb");
            let known = u32::try_from(redb::SCHEMA_VERSION).unwrap_or(u32::MAX);
            let version = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
            let changes_after = |v: u32| -> Vec<(u32, &'static str)> {
                redb::LAYOUT_CHANGES
                    .iter()
                    .copied()
                    .filter(|(n, _)| *n > v)
                    .collect()
            };
            let (before, after, applied_now, pending) = match redb::layout_version(&path)? {
                None => (0, 0, Vec::new(), Vec::new()),
                Some(found) if found > redb::SCHEMA_VERSION || mode == migrations::Mode::Status => {
                    if found > redb::SCHEMA_VERSION {
                        // Opening refuses it with the message that names both versions.
                        redb::RedbStore::open(&path)?;
                    }
                    let v = version(found);
                    (v, v, Vec::new(), changes_after(v))
                }
                Some(found) => {
                    // Opening upgrades an older layout (and checks the lock).
                    let store = redb::RedbStore::open(&path)?;
                    store.close().await?;
                    let v = version(found);
                    (v, known, changes_after(v), Vec::new())
                }
            };
            Ok(migrations::Report {
                backend: "redb",
                location: path.display().to_string(),
                before,
                after,
                latest: known,
                applied_now,
                pending,
                history: Vec::new(),
            })
        }
        StoreKind::Sqlite => {
            let path = settings.data_dir.join(sqlite::FILE_NAME);
            tokio::task::spawn_blocking(move || sqlite::migrate(&path, mode))
                .await
                .map_err(|e| StoreError::Other(format!("migration task failed: {e}")))?
        }
        #[cfg(feature = "postgres")]
        StoreKind::Postgres => postgres::migrate(&settings.postgres, mode).await,
        #[cfg(not(feature = "postgres"))]
        StoreKind::Postgres => Err(StoreError::Other(
            "this a2a-mcp was built without Postgres support (cargo feature `postgres`)".into(),
        )),
    }
}
