//! Persistence: one [`Store`] trait, one backend per file.
//!
//! The store owns bytes on disk and nothing else: it holds no business rules (no state
//! machine, no idempotency semantics, no retention policy). The hub decides *what* to write;
//! the store guarantees that a [`Store::write`] batch is atomic and durable when the call
//! returns, and that concurrent writers share fsyncs (group commit).
//!
//! Every backend passes the same conformance suite (`tests/it/store_conformance.rs`).
//!
//! Threading: all methods are `async` and safe to call from any task. Embedded backends run
//! their single writer on a dedicated OS thread (see [`group_commit`]); reads run on the
//! calling task and are short.

pub mod codec;
pub mod group_commit;
pub mod redb;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{
    AgentRecord, Event, IdempotencyRecord, RequestRecord, RequestState, SessionRecord,
};

#[derive(Debug, thiserror::Error)]
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
    #[error("store error: {0}")]
    Other(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One mutation. A batch of them is applied atomically by [`Store::write`].
#[derive(Debug, Clone)]
pub enum Op {
    PutAgent(AgentRecord),
    DeleteAgent(String),
    PutSession(SessionRecord),
    /// Insert or replace a request. Backends keep their secondary indexes (active requests,
    /// finished-by-time, by-session) in step with the record's state.
    PutRequest(RequestRecord),
    /// Delete a request, its events and its index entries.
    DeleteRequest(String),
    AppendEvent(Event),
    PutIdempotency(IdempotencyRecord),
    DeleteIdempotency(String),
}

/// Filter for [`Store::list_requests`]. Results are ordered by request id (creation order).
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub session_id: Option<String>,
    pub agent_id: Option<String>,
    pub states: Vec<RequestState>,
    /// Exclusive lower bound on the request id (for paging).
    pub after_id: Option<String>,
    pub limit: usize,
}

/// Record counts, for `/healthz`, stats and backups.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreCounts {
    pub agents: u64,
    pub sessions: u64,
    pub requests: u64,
    pub events: u64,
    pub idempotency_keys: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Backend name (`redb`, ...).
    fn backend(&self) -> &'static str;

    /// Applies `ops` atomically; durable on return. Concurrent calls share commits.
    async fn write(&self, ops: Vec<Op>) -> StoreResult<()>;

    async fn get_agent(&self, id: &str) -> StoreResult<Option<AgentRecord>>;
    async fn list_agents(&self) -> StoreResult<Vec<AgentRecord>>;

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;

    async fn get_request(&self, id: &str) -> StoreResult<Option<RequestRecord>>;
    async fn list_requests(&self, filter: &RequestFilter) -> StoreResult<Vec<RequestRecord>>;
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

    async fn counts(&self) -> StoreResult<StoreCounts>;
    /// Cheap liveness probe.
    async fn ping(&self) -> StoreResult<()>;
    /// Flushes and releases the store (the writer thread stops).
    async fn close(&self) -> StoreResult<()>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the configured backend.
pub fn open(config: &crate::config::Config) -> StoreResult<DynStore> {
    match config.store {
        crate::config::StoreKind::Redb => {
            let path = config.data_dir.join("a2a-mcp.redb");
            Ok(Arc::new(redb::RedbStore::open(&path)?))
        }
    }
}
