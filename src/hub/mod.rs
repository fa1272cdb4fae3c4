//! The hub core: every behaviour of the product lives here, behind a typed API.
//!
//! Transports (`api/`) parse, authorise, call one `Hub` method and render the answer; they
//! hold no rules. The hub owns the agent registry, sessions, invocation (validation,
//! idempotency, the bounded queue, concurrency limits), the job pump that persists and then
//! publishes stream events, cancellation, handoffs, restart recovery and the retention
//! sweeper.
//!
//! Durability model: `invoke` returns only after the request record is committed; every stream
//! event is committed before it is published on the bus; a request's terminal state and its
//! terminal event are committed together. The job pump of a running request is the only
//! writer of that request's state, which is what makes a canceled job stay canceled.

mod backups;
mod cluster;
mod invoke;
mod key_guard;
mod named_session;
mod queue;
pub mod registry;
mod scheduler;
pub mod security;
mod stream;
mod sweeper;
pub mod tasks;
mod wait;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use invoke::{HandoffArgs, InvokeArgs, TaskStart};
pub use key_guard::KeyGuard;
pub use registry::AgentEntry;
pub use security::AuthStatus;
pub use stream::EventStream;
/// The push config types the A2A adapter takes and renders.
pub use tasks::push;
pub use wait::Waited;

use crate::bus::Bus;
use crate::catalog::Catalog;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::executor::ExecutorEnv;
use crate::model::{AgentSpec, Principal, RequestRecord, SessionRecord, now_ms};
use crate::policy::Action;
use crate::policy::audit::Outcome;
use crate::store::{DynStore, Op, StoreCounts};
use crate::{metrics, model};

use queue::Sched;
use registry::Registry;
use scheduler::JobControl;

/// Settings the hub core needs (a slice of the server configuration).
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub max_concurrency: usize,
    pub max_queue_size: usize,
    /// Requests of one caller running at once (`A2A_MAX_INFLIGHT_PER_KEY`).
    pub max_inflight_per_key: usize,
    /// Requests of one caller waiting in the queue (`A2A_MAX_QUEUED_PER_KEY`).
    pub max_queued_per_key: usize,
    /// Open event subscriptions per request (`MAX_SUBS_PER_REQUEST`).
    pub max_subs_per_request: usize,
    /// Open event subscriptions per caller, across transports (`A2A_MAX_STREAMS_PER_KEY`).
    pub max_streams_per_key: usize,
    pub idempotency_ttl: Duration,
    pub retention: Duration,
    pub sweep_interval: Duration,
    pub max_wait: Duration,
    pub executor_env: ExecutorEnv,
    pub auth: crate::config::AuthMode,
    /// The legacy shared stream token (stream-only credential).
    pub stream_token: Option<String>,
    pub rate_limits: crate::policy::ratelimit::Limits,
    pub audit_retention: Duration,
    /// How often refused requests are summarised in the audit log.
    pub audit_denial_window: Duration,
    /// How often API keys are re-read from the store.
    pub key_refresh: Duration,
    /// Give process agents a callback URL and token.
    pub agent_callbacks: bool,
    /// Lowest role that may deploy process agents at run time (`None`: nobody).
    pub runtime_process_agents: Option<crate::model::Role>,
    pub backup_dir: std::path::PathBuf,
    /// `None`: no scheduled backups.
    pub backup_interval: Option<Duration>,
    pub backup_retention_days: u64,
    /// Multi-replica (shared store): this replica's configured id.
    pub replica_id: Option<String>,
    pub lease_ttl: Duration,
    pub cluster_poll: Duration,
    /// Redis for the event relay and shared rate limits (shared store only).
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// Where outgoing requests (push webhooks, card imports) may go (`crate::net::egress`); the
    /// same policy is in `executor_env` for `a2a` agents.
    pub egress: Arc<crate::net::egress::EgressPolicy>,
}

/// A cheap, cloneable handle to the hub.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

pub(crate) struct HubInner {
    cfg: HubConfig,
    store: DynStore,
    bus: Bus,
    registry: Registry,
    /// Serialises registry changes so the store and the in-memory map change in the same order.
    registry_lock: tokio::sync::Mutex<()>,
    sched: Mutex<Sched>,
    jobs: Mutex<HashMap<String, Arc<JobControl>>>,
    idem_locks: Vec<tokio::sync::Mutex<()>>,
    tracker: TaskTracker,
    /// Cancelled at shutdown after the grace period: pumps stop without writing a terminal state
    /// (the restart's interrupt policy then applies).
    hard_stop: CancellationToken,
    /// Cancelled when shutdown begins: background workers stop.
    stopping: CancellationToken,
    /// Cancelled once the jobs have drained at shutdown: the lease heartbeat stops (it keeps
    /// renewing while jobs finish, so no other replica takes them over meanwhile).
    cluster_stop: CancellationToken,
    workers: Mutex<BTreeMap<&'static str, WorkerStatus>>,
    started_at: i64,
    ready: AtomicBool,
    security: security::SecurityState,
    /// Base URL of this hub's API listener, for agent callbacks (set once it is bound).
    hub_url: parking_lot::RwLock<Option<String>>,
    /// One snapshot at a time.
    backup_lock: tokio::sync::Mutex<()>,
    /// A2A push notification delivery (`tasks/push.rs`).
    push: tasks::push::PushState,
    /// Open subscriptions per request and per caller (`stream.rs`).
    subscribers: stream::Subscribers,
    /// Several replicas on a shared store (`cluster/`); `None` on an embedded store.
    cluster: Option<cluster::ClusterState>,
}

/// Status of a named background worker, for `/api/agent?action=status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    pub name: &'static str,
    pub state: &'static str,
    pub runs: u64,
    pub errors: u64,
    pub last_run: Option<String>,
    pub last_error: Option<String>,
}

/// Queue and agent statistics.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub queued: usize,
    pub running: usize,
    pub max_concurrency: usize,
    pub max_queue_size: usize,
    pub agents_total: usize,
    pub agents_enabled: usize,
    pub live_channels: usize,
    pub store_backend: &'static str,
    pub uptime_seconds: i64,
    pub per_agent: BTreeMap<String, AgentLoad>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentLoad {
    pub queued: usize,
    pub running: usize,
}

impl Hub {
    /// Opens the hub on an opened store: merges the catalog, recovers unfinished requests and
    /// starts the background workers.
    pub async fn start(cfg: HubConfig, store: DynStore, catalog: Catalog) -> HubResult<Hub> {
        Self::open(cfg, store, catalog, true).await
    }

    /// Opens the hub for offline administration (the CLI on a stopped store): registry, keys,
    /// grants and audit work; nothing is recovered, dispatched or swept, and invocations are
    /// refused.
    pub async fn open_admin(cfg: HubConfig, store: DynStore, catalog: Catalog) -> HubResult<Hub> {
        Self::open(cfg, store, catalog, false).await
    }

    async fn open(
        cfg: HubConfig,
        store: DynStore,
        catalog: Catalog,
        serve: bool,
    ) -> HubResult<Hub> {
        metrics::init();
        let access = crate::policy::AccessLists::compile(catalog.policies)
            .map_err(|e| HubError::new(ErrorCode::InvalidParams, e))?;
        let security = security::SecurityState::new(
            cfg.auth,
            cfg.stream_token.clone(),
            access,
            crate::policy::ratelimit::Limiter::new(cfg.rate_limits.clone()),
        );
        let stored = store.list_agents().await?;
        let (entries, ops) = registry::merge_catalog(catalog.agents, stored, &cfg.executor_env)?;
        store.write(ops).await?;
        let registry = Registry::default();
        for e in entries {
            registry.insert(e);
        }
        let cluster = if serve && store.shared() {
            let id = cluster::replica_id(cfg.replica_id.as_deref());
            store.set_lease_owner(&id, cfg.lease_ttl);
            #[cfg(feature = "redis")]
            let redis = match &cfg.redis_url {
                Some(url) => Some(
                    cluster::redis::RedisLink::new(url, &cfg.redis_prefix, &id)
                        .map_err(|e| HubError::new(ErrorCode::InvalidParams, e))?,
                ),
                None => None,
            };
            #[cfg(not(feature = "redis"))]
            if cfg.redis_url.is_some() {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    "Redis is configured but this a2a-mcp was built without Redis support (cargo feature `redis`)",
                ));
            }
            tracing::info!(replica = %id, lease_ttl = ?cfg.lease_ttl, "shared store: running as one replica of several");
            Some(cluster::ClusterState {
                id,
                instance: cluster::instance_token(),
                ttl: cfg.lease_ttl,
                poll: cfg.cluster_poll,
                wake: Default::default(),
                agents_changed: Default::default(),
                #[cfg(feature = "redis")]
                redis,
            })
        } else {
            if serve && cfg.redis_url.is_some() {
                tracing::info!(
                    "Redis is configured but the store is embedded (one replica): Redis is not used"
                );
            }
            None
        };
        let inner = Arc::new(HubInner {
            idem_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            sched: Mutex::new(Sched::new(
                cfg.max_concurrency,
                cfg.max_queue_size,
                cfg.max_inflight_per_key,
                cfg.max_queued_per_key,
            )),
            cfg,
            store,
            bus: Bus::new(),
            registry,
            registry_lock: tokio::sync::Mutex::new(()),
            jobs: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            stopping: CancellationToken::new(),
            cluster_stop: CancellationToken::new(),
            workers: Mutex::new(BTreeMap::new()),
            started_at: now_ms(),
            ready: AtomicBool::new(false),
            security,
            hub_url: parking_lot::RwLock::new(None),
            backup_lock: tokio::sync::Mutex::new(()),
            push: Default::default(),
            subscribers: Default::default(),
            cluster,
        });
        let hub = Hub { inner };
        hub.refresh_agent_metrics();
        hub.warn_refused_catalog_agents();
        hub.refresh_keys().await?;
        hub.backfill_auth_marker().await?;
        if !serve {
            hub.inner.sched.lock().stop_accepting();
            return Ok(hub);
        }
        hub.claim_identity().await?;
        hub.recover().await?;
        hub.spawn_cluster_workers();
        sweeper::spawn(hub.clone());
        scheduler::spawn_reaper(&hub);
        hub.spawn_key_refresh();
        hub.spawn_denial_audit();
        backups::spawn_scheduler(hub.clone());
        hub.inner.ready.store(true, Ordering::SeqCst);
        Ok(hub)
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.cfg
    }

    /// True once start-up (catalog, recovery) has finished and until shutdown begins.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }

    /// Cancelled when shutdown begins (for workers outside the hub, e.g. certificate watchers).
    pub fn stopping_token(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// Records where this hub's API listener can be reached (for agent callbacks).
    pub fn set_hub_url(&self, url: String) {
        *self.inner.hub_url.write() = Some(url);
    }

    pub fn store_backend(&self) -> &'static str {
        self.inner.store.backend()
    }

    /// Store liveness, for `/healthz` and `/readyz`.
    pub async fn store_ping(&self) -> HubResult<()> {
        self.inner.store.ping().await.map_err(HubError::from)
    }

    pub async fn store_counts(&self) -> HubResult<StoreCounts> {
        self.inner.store.counts().await.map_err(HubError::from)
    }

    // -----------------------------------------------------------------------------------------
    // Agents

    /// Agents in id order; disabled ones only when asked. Internal (no caller check): for
    /// operations endpoints, public agent cards and the like.
    pub fn list_agents(&self, include_disabled: bool) -> Vec<Arc<AgentEntry>> {
        self.inner
            .registry
            .all()
            .into_iter()
            .filter(|a| include_disabled || a.spec.enabled)
            .collect()
    }

    /// The agents a caller may see.
    pub async fn visible_agents(
        &self,
        p: &Principal,
        include_disabled: bool,
    ) -> HubResult<Vec<Arc<AgentEntry>>> {
        self.authorize(p, Action::AgentsRead).await?;
        Ok(self.list_agents(include_disabled))
    }

    /// One agent, for a caller.
    pub async fn describe_agent(&self, p: &Principal, id: &str) -> HubResult<Arc<AgentEntry>> {
        self.authorize(p, Action::AgentsRead).await?;
        self.agent(id)
    }

    /// One agent (internal lookup, no caller check).
    pub fn agent(&self, id: &str) -> HubResult<Arc<AgentEntry>> {
        self.inner
            .registry
            .get(id)
            .ok_or_else(|| agent_not_found(id))
    }

    /// An agent that takes work: `agent_disabled` when it is switched off. The one place the
    /// rule lives (invocations, and the A2A card and URL of the agent).
    pub fn enabled_agent(&self, id: &str) -> HubResult<Arc<AgentEntry>> {
        let a = self.agent(id)?;
        if !a.spec.enabled {
            return Err(crate::error::HubError::new(
                crate::error::ErrorCode::AgentDisabled,
                format!("agent {id:?} is disabled; enable_agent turns it back on"),
            ));
        }
        Ok(a)
    }

    /// Registers a new agent at run time (persisted; wins over the catalog from now on).
    /// Secret values sent back as the `***` placeholder keep the replaced agent's values.
    pub async fn deploy_agent(
        &self,
        p: &Principal,
        mut spec: AgentSpec,
        replace: bool,
    ) -> HubResult<Arc<AgentEntry>> {
        self.authorize(p, Action::AgentsWrite).await?;
        if let crate::model::ExecutorSpec::A2a(a) = &spec.executor {
            self.check_agent_egress(&spec.id, &a.url).await?;
        }
        let _g = self.inner.registry_lock.lock().await;
        let existing = self.inner.registry.get(&spec.id);
        if !replace && existing.is_some() {
            return Err(HubError::new(
                ErrorCode::AgentExists,
                format!(
                    "agent {:?} already exists; use update_agent, or deploy with replace=true",
                    spec.id
                ),
            ));
        }
        crate::redact::keep_agent_secrets(&mut spec, existing.as_ref().map(|e| &e.spec))?;
        self.check_process_agent(p, &spec)?;
        let audit = self.audit_op(
            p,
            "agents.deploy",
            &spec.id,
            Outcome::Ok,
            spec.executor.kind(),
        )?;
        self.put_agent(spec, audit).await
    }

    /// Applies a JSON merge patch (RFC 7396) to an agent's definition.
    pub async fn update_agent(
        &self,
        p: &Principal,
        id: &str,
        patch: &Value,
    ) -> HubResult<Arc<AgentEntry>> {
        self.authorize(p, Action::AgentsWrite).await?;
        if let Some(url) = patch.pointer("/executor/url").and_then(Value::as_str) {
            self.check_agent_egress(id, url).await?;
        }
        let _g = self.inner.registry_lock.lock().await;
        let current = self.agent(id)?;
        let mut doc = serde_json::to_value(&current.spec).map_err(HubError::internal)?;
        registry::merge_patch(&mut doc, patch);
        if doc.get("id").and_then(Value::as_str) != Some(id) {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                "an agent's id cannot be changed; deploy a new agent and remove the old one",
            ));
        }
        let mut spec: AgentSpec = serde_json::from_value(doc).map_err(|e| {
            HubError::new(
                ErrorCode::InvalidParams,
                format!("the updated definition of {id:?} is not valid: {e}"),
            )
        })?;
        crate::redact::keep_agent_secrets(&mut spec, Some(&current.spec))?;
        if spec.executor != current.spec.executor {
            self.check_process_agent(p, &spec)?;
        }
        let detail: String = crate::redact::redact_agent_patch(patch)
            .to_string()
            .chars()
            .take(300)
            .collect();
        let audit = self.audit_op(p, "agents.update", id, Outcome::Ok, &detail)?;
        self.put_agent(spec, audit).await
    }

    pub async fn set_agent_enabled(
        &self,
        principal: &Principal,
        id: &str,
        enabled: bool,
    ) -> HubResult<Arc<AgentEntry>> {
        self.update_agent(principal, id, &json!({ "enabled": enabled }))
            .await
    }

    /// Process agents run commands on this host: only the configured roles may create or
    /// change them at run time (A2A_RUNTIME_PROCESS_AGENTS).
    fn check_process_agent(&self, p: &Principal, spec: &AgentSpec) -> HubResult<()> {
        if !matches!(spec.executor, crate::model::ExecutorSpec::Process(_)) {
            return Ok(());
        }
        match self.inner.cfg.runtime_process_agents {
            Some(min) if p.role >= min => Ok(()),
            Some(min) => Err(HubError::new(
                ErrorCode::Forbidden,
                format!(
                    "process agents run commands on the host; deploying or changing them at run time needs the {} role (A2A_RUNTIME_PROCESS_AGENTS)",
                    min.as_str()
                ),
            )),
            None => Err(HubError::new(
                ErrorCode::Forbidden,
                "process agents can only be defined in catalog files here (A2A_RUNTIME_PROCESS_AGENTS=off)",
            )),
        }
    }

    /// An `a2a` agent deployed at run time must point where the egress policy permits
    /// (`A2A_EGRESS_ALLOWED_NETWORKS`): checked now, so the caller hears at once; every
    /// request of the agent is checked again when it connects.
    async fn check_agent_egress(&self, id: &str, url: &str) -> HubResult<()> {
        let Ok(uri) = url.parse::<http::Uri>() else {
            // Not a URL at all: the definition's own validation names the problem.
            return Ok(());
        };
        self.inner
            .cfg
            .egress
            .check_url_resolved(&uri)
            .await
            .map_err(|e| {
                HubError::new(
                    ErrorCode::InvalidParams,
                    format!("agent {id:?}: executor.url is refused: {e}"),
                )
            })
    }

    async fn put_agent(&self, spec: AgentSpec, audit: Op) -> HubResult<Arc<AgentEntry>> {
        let (entry, op) = registry::deploy_op(spec, &self.inner.cfg.executor_env)?;
        self.inner.store.write(vec![op, audit]).await?;
        let id = entry.spec.id.clone();
        self.inner.registry.insert(entry);
        self.refresh_agent_metrics();
        self.announce_agents_changed();
        self.agent(&id)
    }

    /// Removes an agent. A catalog agent stays removed across restarts (a tombstone).
    pub async fn remove_agent(&self, p: &Principal, id: &str) -> HubResult<()> {
        self.authorize(p, Action::AgentsWrite).await?;
        let _g = self.inner.registry_lock.lock().await;
        let current = self.agent(id)?;
        let op = registry::remove_op(&current);
        let audit = self.audit_op(p, "agents.remove", id, Outcome::Ok, "")?;
        self.inner.store.write(vec![op, audit]).await?;
        self.inner.registry.remove(id);
        self.refresh_agent_metrics();
        self.announce_agents_changed();
        Ok(())
    }

    fn refresh_agent_metrics(&self) {
        let (total, enabled) = self.inner.registry.counts();
        metrics::AGENTS_TOTAL.set(total as i64);
        metrics::AGENTS_ENABLED.set(enabled as i64);
    }

    // -----------------------------------------------------------------------------------------
    // Sessions

    pub async fn open_session(
        &self,
        principal: &Principal,
        agent_id: Option<String>,
        metadata: Value,
    ) -> HubResult<SessionRecord> {
        self.authorize(principal, Action::Invoke).await?;
        if let Some(a) = &agent_id {
            self.agent(a)?;
        }
        let rec = SessionRecord {
            id: model::new_id(),
            principal: principal.id.clone(),
            agent_id,
            metadata: metadata.to_string(),
            created_at: now_ms(),
            closed_at: None,
        };
        let audit = self.audit_op(principal, "sessions.open", &rec.id, Outcome::Ok, "")?;
        self.inner
            .store
            .write(vec![Op::PutSession(rec.clone()), audit])
            .await?;
        Ok(rec)
    }

    /// A session, for its owner or a caller who may read all requests.
    pub async fn get_session(&self, p: &Principal, id: &str) -> HubResult<SessionRecord> {
        let rec = self.load_session(id).await?;
        if rec.principal != p.id {
            self.authorize(p, Action::RequestsReadAll).await?;
        }
        Ok(rec)
    }

    pub(crate) async fn load_session(&self, id: &str) -> HubResult<SessionRecord> {
        self.inner
            .store
            .get_session(id)
            .await?
            .ok_or_else(|| session_not_found(id))
    }

    /// Closes a session: no new requests may join it. Running requests are not affected.
    pub async fn close_session(&self, p: &Principal, id: &str) -> HubResult<SessionRecord> {
        let mut rec = self.load_session(id).await?;
        if rec.principal != p.id {
            self.authorize(p, Action::RequestsCancelAll).await?;
        }
        if rec.closed_at.is_none() {
            rec.closed_at = Some(now_ms());
            let audit = self.audit_op(p, "sessions.close", id, Outcome::Ok, "")?;
            self.inner
                .store
                .write(vec![Op::PutSession(rec.clone()), audit])
                .await?;
        }
        Ok(rec)
    }

    // -----------------------------------------------------------------------------------------
    // Requests

    pub async fn get_status(&self, p: &Principal, id: &str) -> HubResult<RequestRecord> {
        let rec = self.load_request(id).await?;
        self.authorize_read(p, &rec).await?;
        Ok(rec)
    }

    pub(crate) async fn load_request(&self, id: &str) -> HubResult<RequestRecord> {
        self.inner
            .store
            .get_request(id)
            .await?
            .ok_or_else(|| request_not_found(id))
    }

    /// Requests matching `filter`, in creation order; callers who may not read all requests
    /// see their own (read through the store's per-principal index, so the cost follows the
    /// caller's own requests, not everyone's).
    pub async fn list_requests(
        &self,
        p: &Principal,
        filter: &crate::store::RequestFilter,
    ) -> HubResult<Vec<RequestRecord>> {
        if crate::policy::require(p, Action::RequestsReadAll).is_ok() {
            return Ok(self.inner.store.list_requests(filter).await?);
        }
        if p.role < crate::model::Role::Invoker {
            return Err(crate::policy::forbidden(p, Action::RequestsReadAll));
        }
        Ok(self
            .inner
            .store
            .list_requests_of(&p.id, filter, crate::store::ListOrder::OldestFirst)
            .await?)
    }

    /// Queue and agent statistics, for a caller.
    pub async fn get_stats(&self, p: &Principal) -> HubResult<Stats> {
        self.authorize(p, Action::Stats).await?;
        Ok(self.stats())
    }

    // -----------------------------------------------------------------------------------------
    // Statistics and lifecycle

    pub fn stats(&self) -> Stats {
        let (agents_total, agents_enabled) = self.inner.registry.counts();
        let sched = self.inner.sched.lock();
        let mut per_agent: BTreeMap<String, AgentLoad> = BTreeMap::new();
        for (agent, q) in sched.queues() {
            per_agent.entry(agent.clone()).or_default().queued = q;
        }
        for (agent, r) in sched.running_per_agent() {
            per_agent.entry(agent.clone()).or_default().running = r;
        }
        Stats {
            queued: sched.queued(),
            running: sched.running(),
            max_concurrency: self.inner.cfg.max_concurrency,
            max_queue_size: self.inner.cfg.max_queue_size,
            agents_total,
            agents_enabled,
            live_channels: self.inner.bus.channels(),
            store_backend: self.inner.store.backend(),
            uptime_seconds: (now_ms() - self.inner.started_at) / 1000,
            per_agent,
        }
    }

    pub fn workers(&self) -> Vec<WorkerStatus> {
        self.inner.workers.lock().values().cloned().collect()
    }

    pub(crate) fn worker_update(&self, name: &'static str, f: impl FnOnce(&mut WorkerStatus)) {
        let mut map = self.inner.workers.lock();
        let w = map.entry(name).or_insert_with(|| WorkerStatus {
            name,
            state: "idle",
            runs: 0,
            errors: 0,
            last_run: None,
            last_error: None,
        });
        f(w);
    }

    /// Stops accepting work, lets running jobs finish for up to `grace`, then stops the rest
    /// without marking them (the interrupt policy applies at the next start) and closes the
    /// store. Queued requests stay queued and run after the restart.
    /// Closes a hub opened with [`Hub::open_admin`] (flushes and releases the store).
    pub async fn close_admin(&self) {
        if let Err(e) = self.inner.store.close().await {
            tracing::error!("closing the store failed: {e}");
        }
    }

    pub async fn shutdown(&self, grace: Duration) {
        self.inner.ready.store(false, Ordering::SeqCst);
        self.inner.stopping.cancel();
        self.inner.sched.lock().stop_accepting();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            let n = self.inner.sched.lock().running();
            tracing::warn!(
                running = n,
                "grace period over; stopping the remaining jobs (they follow the interrupt policy at the next start)"
            );
            self.inner.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.tracker.wait()).await;
        }
        // Several replicas: what is left here goes to the others now, not when leases expire.
        self.release_work().await;
        self.flush_denials().await;
        self.inner.cluster_stop.cancel();
        if let Err(e) = self.inner.store.close().await {
            tracing::error!("closing the store failed: {e}");
        }
    }
}

fn agent_not_found(id: &str) -> HubError {
    HubError::new(
        ErrorCode::AgentNotFound,
        format!("no agent {id:?}; list_agents shows the registered agents"),
    )
}

fn request_not_found(id: &str) -> HubError {
    HubError::new(
        ErrorCode::RequestNotFound,
        format!("no request {id:?} (unknown, or removed by retention)"),
    )
}

fn session_not_found(id: &str) -> HubError {
    HubError::new(ErrorCode::SessionNotFound, format!("no session {id:?}"))
}
