//! Authentication, authorisation, API keys, permission grants and the audit log — the hub
//! side of `policy`.
//!
//! Every public hub method authorises its caller with the helpers here. Keys are cached in
//! memory (loaded at start, refreshed every 10 s by the `key-cache` worker so keys created or
//! revoked by another replica take effect within that time; this process's own changes take
//! effect at once). Agent processes get a per-request token that authenticates them as
//! `agent:<id>` for the life of the request; what they may invoke is decided by grants.
//!
//! Fail closed: with `A2A_AUTH=auto` calls without a key are refused from the moment any key
//! has existed in the store, for the life of the store. The [`AuthMarker`] is written in the
//! commit of the first key (and backfilled at start-up when keys exist without it); expiring
//! or revoking keys never reopens the hub. While the hub is open (no key ever, or `off`) the
//! listener serves loopback callers only (`server::admission`).
//!
//! Refusals (401 here, 429 from the rate limits, 403/421 from the request admission) are
//! counted in a [`DenialTally`] and written to the audit log once per `A2A_AUDIT_DENIAL_WINDOW`
//! by the `denial-audit` worker (and at shutdown), one entry per reason, surface and caller.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Hub;
use crate::config::AuthMode;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{Principal, PrincipalKind, RequestRecord, Role, Surface, new_id, now_ms};
use crate::policy::audit::{AuditRecord, Denial, DenialTally, Outcome};
use crate::policy::grants::{
    self, GrantRecord, PermissionRequestRecord, RequestStatus, validate_permission,
};
use crate::policy::keys::{self, ApiKeyRecord, AuthMarker};
use crate::policy::ratelimit::{Limiter, Refusal};
use crate::policy::{AccessLists, Action, require};
use crate::store::codec::{decode, encode};
use crate::store::{Aux, Op};

/// Upper bound for a waiting permission request.
const MAX_PERMISSION_WAIT: Duration = Duration::from_secs(300);

/// Distinct callers whose refusals are audited on their own per window (the rest together).
const DENIAL_SUBJECTS_PER_WINDOW: usize = 256;

/// Whether and why calls without a key are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStatus {
    /// `A2A_AUTH=required` (production mode implies it).
    Required,
    /// `A2A_AUTH=auto` and a key has existed in this store: required for good.
    KeysExist,
    /// `A2A_AUTH=auto` and no key was ever created: open to loopback callers only.
    OpenNoKeyYet,
    /// `A2A_AUTH=off`: open to loopback callers only.
    Off,
}

impl AuthStatus {
    pub fn is_open(self) -> bool {
        matches!(self, AuthStatus::OpenNoKeyYet | AuthStatus::Off)
    }
}

/// In-memory security state of the hub.
pub(crate) struct SecurityState {
    pub(crate) mode: AuthMode,
    pub(crate) stream_token: Option<String>,
    pub(crate) access: AccessLists,
    pub(crate) limiter: Limiter,
    /// hash → key.
    keys: parking_lot::RwLock<HashMap<String, ApiKeyRecord>>,
    /// hash → agent principal, for running process agents.
    agent_tokens: parking_lot::Mutex<HashMap<String, Principal>>,
    /// permission request id → decision channel.
    waiters: parking_lot::Mutex<HashMap<String, watch::Sender<Option<PermissionRequestRecord>>>>,
    /// A key has existed in this store (the marker or a key record was seen, or one was made).
    keys_ever: AtomicBool,
    /// The [`AuthMarker`] is known to be in the store.
    marker_stored: AtomicBool,
    /// Refusals waiting for the next `denial-audit` flush.
    denials: parking_lot::Mutex<DenialTally>,
}

impl SecurityState {
    pub(crate) fn new(
        mode: AuthMode,
        stream_token: Option<String>,
        access: AccessLists,
        limiter: Limiter,
    ) -> Self {
        Self {
            mode,
            stream_token,
            access,
            limiter,
            keys: parking_lot::RwLock::new(HashMap::new()),
            agent_tokens: parking_lot::Mutex::new(HashMap::new()),
            waiters: parking_lot::Mutex::new(HashMap::new()),
            keys_ever: AtomicBool::new(false),
            marker_stored: AtomicBool::new(false),
            denials: parking_lot::Mutex::new(DenialTally::new(DENIAL_SUBJECTS_PER_WINDOW)),
        }
    }
}

/// A client address for the audit log (`unknown` when the transport has none).
fn address(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_canonical().to_string())
}

/// What the permission tools return.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Permissions {
    pub grants: Vec<GrantRecord>,
    pub requests: Vec<PermissionRequestRecord>,
}

fn grant_key(g: &GrantRecord) -> String {
    format!("{}/{}", g.agent_id, g.id)
}

impl Hub {
    fn sec(&self) -> &SecurityState {
        &self.inner.security
    }

    // -----------------------------------------------------------------------------------------
    // Authentication

    /// Loads every key into the cache (start-up and the refresh worker).
    pub(crate) async fn refresh_keys(&self) -> HubResult<()> {
        let mut fresh = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .inner
                .store
                .scan_aux(Aux::ApiKeys, "", after.as_deref(), 500)
                .await?;
            let n = page.len();
            for (k, v) in page {
                after = Some(k.clone());
                if k == keys::AUTH_MARKER_KEY {
                    self.sec().marker_stored.store(true, Ordering::SeqCst);
                    continue;
                }
                if !keys::is_key_record(&k) {
                    continue;
                }
                let rec: ApiKeyRecord = decode("api_keys", &v)?;
                fresh.insert(k, rec);
            }
            if n < 500 {
                break;
            }
        }
        if !fresh.is_empty() || self.sec().marker_stored.load(Ordering::SeqCst) {
            self.sec().keys_ever.store(true, Ordering::SeqCst);
        }
        *self.sec().keys.write() = fresh;
        self.keys_changed();
        Ok(())
    }

    /// Start-up: a store that holds keys but no [`AuthMarker`] (written by an older version,
    /// or restored from an older snapshot) gets one now, so that it stays closed when its
    /// last key expires.
    pub(crate) async fn backfill_auth_marker(&self) -> HubResult<()> {
        if self.sec().marker_stored.load(Ordering::SeqCst) || self.sec().keys.read().is_empty() {
            return Ok(());
        }
        let op = self.auth_marker_op("backfill")?;
        self.inner.store.write(vec![op]).await?;
        self.sec().marker_stored.store(true, Ordering::SeqCst);
        tracing::info!("API keys exist: recorded that this store requires keys from now on");
        Ok(())
    }

    fn auth_marker_op(&self, first_key: &str) -> HubResult<Op> {
        Ok(Op::PutAux {
            table: Aux::ApiKeys,
            key: keys::AUTH_MARKER_KEY.to_string(),
            value: encode(&AuthMarker {
                since: now_ms(),
                first_key: first_key.to_string(),
            })?,
        })
    }

    pub(crate) fn spawn_key_refresh(&self) {
        let hub = self.clone();
        let stopping = self.inner.stopping.clone();
        let every = self.inner.cfg.key_refresh;
        self.worker_update("key-cache", |_| {});
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                let r = hub.refresh_keys().await;
                hub.sec().limiter.shrink();
                hub.worker_update("key-cache", |w| {
                    w.runs += 1;
                    w.last_run = Some(crate::model::rfc3339(now_ms()));
                    if let Err(e) = &r {
                        w.errors += 1;
                        w.last_error = Some(e.message.clone());
                    }
                });
            }
            hub.worker_update("key-cache", |w| w.state = "stopped");
        });
    }

    /// Whether at least one API key is active.
    pub fn has_active_keys(&self) -> bool {
        let now = now_ms();
        self.sec().keys.read().values().any(|k| k.is_active(now))
    }

    /// Whether an API key has ever existed in this store.
    pub fn keys_ever_existed(&self) -> bool {
        self.sec().keys_ever.load(Ordering::SeqCst)
    }

    /// Whether and why calls without a key are served.
    pub fn auth_status(&self) -> AuthStatus {
        match self.sec().mode {
            AuthMode::Required => AuthStatus::Required,
            AuthMode::Off => AuthStatus::Off,
            AuthMode::Auto if self.keys_ever_existed() => AuthStatus::KeysExist,
            AuthMode::Auto => AuthStatus::OpenNoKeyYet,
        }
    }

    /// Whether calls without a key are refused right now.
    pub fn auth_required(&self) -> bool {
        !self.auth_status().is_open()
    }

    /// A refused credential: counted in metrics and tallied for the audit log.
    fn unauthenticated(
        &self,
        surface: Surface,
        reason: &'static str,
        subject: String,
        role: &'static str,
        message: &str,
    ) -> HubError {
        metrics::AUTH_FAILURES
            .with_label_values(&[surface.as_str(), reason])
            .inc();
        self.record_denial(Denial {
            action: "http.unauthenticated",
            reason,
            surface: surface.as_str(),
            subject,
            role,
            message: message.to_string(),
        });
        HubError::new(ErrorCode::Unauthenticated, message)
    }

    /// Turns presented credentials into a principal. `stream_route` admits the legacy
    /// `STREAM_TOKEN` (stream-only); `peer` (the client address) names the caller of a
    /// refusal in the audit log.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        surface: Surface,
        stream_route: bool,
        peer: Option<IpAddr>,
    ) -> HubResult<Principal> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            // A configured STREAM_TOKEN keeps guarding the stream routes on its own.
            if self.auth_required() || (stream_route && self.sec().stream_token.is_some()) {
                return Err(self.unauthenticated(
                    surface,
                    "missing",
                    address(peer),
                    "none",
                    "an API key is required: send Authorization: Bearer <key> (create one with `a2a-mcp keys create --role invoker`)",
                ));
            }
            return Ok(Principal::anonymous().with_surface(surface));
        };
        if stream_route
            && let Some(expected) = &self.sec().stream_token
            && keys::hash_token(expected) == keys::hash_token(token)
        {
            return Ok(Principal {
                kind: PrincipalKind::StreamToken,
                ..Principal::new("stream-token", Role::Viewer).with_surface(surface)
            });
        }
        let hash = keys::hash_token(token);
        if let Some(p) = self.sec().agent_tokens.lock().get(&hash) {
            return Ok(p.clone().with_surface(surface));
        }
        let cached = self.sec().keys.read().get(&hash).cloned();
        let key = match cached {
            Some(k) => Some(k),
            None => match self.inner.store.get_aux(Aux::ApiKeys, &hash).await? {
                Some(bytes) => {
                    let k: ApiKeyRecord = decode("api_keys", &bytes)?;
                    self.sec().keys.write().insert(hash.clone(), k.clone());
                    Some(k)
                }
                None => None,
            },
        };
        let now = now_ms();
        match key {
            None => Err(self.unauthenticated(
                surface,
                "invalid",
                address(peer),
                "none",
                "the API key is not valid (unknown key)",
            )),
            Some(k) if k.revoked_at.is_some() => Err(self.unauthenticated(
                surface,
                "revoked",
                format!("key:{}", k.id),
                k.role.as_str(),
                &format!("the API key {} has been revoked", k.id),
            )),
            Some(k) if !k.is_active(now) => Err(self.unauthenticated(
                surface,
                "expired",
                format!("key:{}", k.id),
                k.role.as_str(),
                &format!("the API key {} has expired", k.id),
            )),
            Some(k) => Ok(Principal::new(format!("key:{}", k.id), k.role)
                .with_key(&k.id)
                .with_surface(surface)),
        }
    }

    /// Applies the rate limits to one call; counts refusals.
    pub async fn check_rate(&self, p: &Principal, addr: Option<IpAddr>) -> Result<(), Refusal> {
        let r = match self.shared_rate(p, addr).await {
            Some(r) => r,
            None => self.sec().limiter.check(p, addr),
        };
        if let Err(refusal) = &r {
            let label = p.key_id.as_deref().unwrap_or(match p.kind {
                PrincipalKind::Agent => "agent",
                PrincipalKind::StreamToken => "stream-token",
                _ => "anonymous",
            });
            metrics::RATE_LIMIT_HITS
                .with_label_values(&[p.surface.as_str(), label])
                .inc();
            let subject = match (&p.key_id, p.kind) {
                (Some(k), _) => format!("key:{k}"),
                (None, PrincipalKind::Anonymous) => address(addr),
                (None, _) => p.id.clone(),
            };
            self.record_denial(Denial {
                action: "http.rate_limited",
                reason: if refusal.by_address {
                    "per_address"
                } else {
                    "per_key"
                },
                surface: p.surface.as_str(),
                subject,
                role: p.role.as_str(),
                message: format!(
                    "rate limit exceeded; retry after {} s",
                    refusal.retry_after.as_secs_f64().ceil() as u64
                ),
            });
        }
        r
    }

    /// Several replicas with Redis: the counters live in Redis, so a client's limit holds
    /// across replicas. `None` (use this replica's counters) without Redis or while it is away.
    async fn shared_rate(
        &self,
        _p: &Principal,
        _addr: Option<IpAddr>,
    ) -> Option<Result<(), Refusal>> {
        #[cfg(feature = "redis")]
        {
            let redis = self.cluster()?.redis.as_ref()?;
            if !redis.is_connected() {
                return None;
            }
            for (key, interval, burst, by_address) in self.sec().limiter.plan(_p, _addr) {
                match redis.rate_check(&key, interval, burst).await {
                    Ok(None) => {}
                    Ok(Some(wait)) => {
                        return Some(Err(Refusal {
                            retry_after: wait,
                            by_address,
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(
                            "shared rate limit unavailable ({e}); using this replica's counters"
                        );
                        return None;
                    }
                }
            }
            Some(Ok(()))
        }
        #[cfg(not(feature = "redis"))]
        None
    }

    /// A token that authenticates an agent's process as `agent:<id>` while it runs a request.
    pub(crate) fn issue_agent_token(&self, agent_id: &str, request_id: &str) -> Option<String> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).ok()?;
        let token = format!("a2a_agent_{}", hex::encode(secret));
        self.sec().agent_tokens.lock().insert(
            keys::hash_token(&token),
            Principal::agent(agent_id, request_id),
        );
        Some(token)
    }

    pub(crate) fn revoke_agent_token(&self, token: &str) {
        self.sec()
            .agent_tokens
            .lock()
            .remove(&keys::hash_token(token));
    }

    // -----------------------------------------------------------------------------------------
    // Authorisation helpers

    /// Role check with an audit entry for a denial.
    pub(crate) async fn authorize(&self, p: &Principal, action: Action) -> HubResult<()> {
        match require(p, action) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.audit_now(p, action.name(), "", Outcome::Denied, &e.message)
                    .await;
                Err(e)
            }
        }
    }

    /// The caller may see this request: its owner, or a role that reads all requests.
    pub(crate) async fn authorize_read(&self, p: &Principal, rec: &RequestRecord) -> HubResult<()> {
        if rec.principal == p.id || require(p, Action::RequestsReadAll).is_ok() {
            return Ok(());
        }
        let e = crate::policy::forbidden(p, Action::RequestsReadAll);
        self.audit_now(
            p,
            "requests.read",
            &rec.id,
            Outcome::Denied,
            "not the owner",
        )
        .await;
        Err(HubError::new(
            ErrorCode::Forbidden,
            format!(
                "request {:?} belongs to another caller; {}",
                rec.id, e.message
            ),
        ))
    }

    /// The caller may act on this request (cancel it, set its push configs): its owner (not
    /// a viewer), or a role that may cancel every request. A denial is audited as `action`.
    pub(crate) async fn authorize_modify(
        &self,
        p: &Principal,
        rec: &RequestRecord,
        action: &str,
    ) -> HubResult<()> {
        if p.kind != PrincipalKind::StreamToken
            && p.role != Role::Viewer
            && (rec.principal == p.id || require(p, Action::RequestsCancelAll).is_ok())
        {
            return Ok(());
        }
        let e = crate::policy::forbidden(p, Action::RequestsCancelAll);
        self.audit_now(p, action, &rec.id, Outcome::Denied, &e.message)
            .await;
        Err(e)
    }

    /// Invocation rules beyond the role: the agent's access list, and for agent principals
    /// (and handoffs) the `agent:invoke:<target>` grant.
    pub(crate) async fn authorize_invoke(
        &self,
        p: &Principal,
        target: &str,
        acting_agent: Option<&str>,
    ) -> HubResult<()> {
        self.authorize(p, Action::Invoke).await?;
        if !self.sec().access.may_invoke(p, target) {
            let msg = format!(
                "{} (role {}) is not on the access list of agent {target:?}",
                p.id,
                p.role.as_str()
            );
            metrics::AUTH_FAILURES
                .with_label_values(&[p.surface.as_str(), "forbidden"])
                .inc();
            self.audit_now(p, "invoke", target, Outcome::Denied, &msg)
                .await;
            return Err(HubError::new(ErrorCode::Forbidden, msg));
        }
        let acting = acting_agent.or(p.agent.as_ref().map(|a| a.agent_id.as_str()));
        if let Some(from) = acting
            && from != target
        {
            let wanted = grants::invoke_permission(target);
            if !self.has_grant(from, &wanted).await? {
                let msg = format!(
                    "agent {from:?} has no grant {wanted:?}; an operator can grant it (grant_permission) or the agent can ask (request_permission)"
                );
                metrics::AUTH_FAILURES
                    .with_label_values(&[p.surface.as_str(), "no_grant"])
                    .inc();
                self.audit_now(p, "invoke", target, Outcome::Denied, &msg)
                    .await;
                return Err(HubError::new(ErrorCode::Forbidden, msg));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Audit

    pub(crate) fn audit_op(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> HubResult<Op> {
        let rec = AuditRecord::new(p, action, target, outcome, detail);
        Ok(Op::PutAux {
            table: Aux::Audit,
            key: rec.id.clone(),
            value: encode(&rec)?,
        })
    }

    /// Writes an audit entry on its own (for operations that have no other write).
    pub(crate) async fn audit_now(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) {
        let r = match self.audit_op(p, action, target, outcome, detail) {
            Ok(op) => self
                .inner
                .store
                .write(vec![op])
                .await
                .map_err(HubError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            tracing::error!(
                action,
                target,
                "could not write an audit entry: {}",
                e.message
            );
        }
    }

    /// Counts a refused request for the next summary in the audit log (no I/O here).
    pub fn record_denial(&self, d: Denial) {
        self.sec().denials.lock().add(d, now_ms());
    }

    /// Writes the tallied refusals to the audit log (one entry per reason, surface and
    /// caller, with the count) and starts a fresh window.
    pub(crate) async fn flush_denials(&self) {
        let records = self.sec().denials.lock().drain();
        if records.is_empty() {
            return;
        }
        let mut ops = Vec::with_capacity(records.len());
        for rec in &records {
            match encode(rec) {
                Ok(value) => ops.push(Op::PutAux {
                    table: Aux::Audit,
                    key: rec.id.clone(),
                    value,
                }),
                Err(e) => tracing::error!("could not encode an audit entry: {e}"),
            }
        }
        if let Err(e) = self.inner.store.write(ops).await {
            tracing::error!(
                entries = records.len(),
                "could not write the refusal summary to the audit log: {e}"
            );
        }
    }

    /// The `denial-audit` worker: flushes the refusal tally every `A2A_AUDIT_DENIAL_WINDOW`
    /// (and once more when the hub stops).
    pub(crate) fn spawn_denial_audit(&self) {
        let hub = self.clone();
        let stopping = self.inner.stopping.clone();
        let every = self.inner.cfg.audit_denial_window;
        self.worker_update("denial-audit", |_| {});
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopping.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                hub.flush_denials().await;
                hub.worker_update("denial-audit", |w| {
                    w.runs += 1;
                    w.last_run = Some(crate::model::rfc3339(now_ms()));
                });
            }
            hub.worker_update("denial-audit", |w| w.state = "stopped");
        });
    }

    /// Audit entries after `after` (an entry id), oldest first.
    pub async fn list_audit(
        &self,
        p: &Principal,
        after: Option<&str>,
        limit: usize,
    ) -> HubResult<Vec<AuditRecord>> {
        self.authorize(p, Action::AuditRead).await?;
        let page = self
            .inner
            .store
            .scan_aux(Aux::Audit, "", after, limit.clamp(1, 1000))
            .await?;
        page.into_iter()
            .map(|(_, v)| decode("audit", &v).map_err(HubError::from))
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // API keys

    pub async fn create_key(
        &self,
        p: &Principal,
        role: Role,
        label: &str,
        expires_in: Option<Duration>,
    ) -> HubResult<(String, ApiKeyRecord)> {
        self.authorize(p, Action::KeysManage).await?;
        if label.len() > 200 {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                "the label is longer than 200 characters",
            ));
        }
        let now = now_ms();
        let expires_at = match expires_in {
            Some(d) if d.is_zero() => {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    "expires-in must be longer than 0",
                ));
            }
            Some(d) => Some(now.saturating_add(d.as_millis() as i64)),
            None => None,
        };
        let (token, rec) =
            keys::generate(role, label, expires_at, &p.id, now).map_err(HubError::internal)?;
        let audit = self.audit_op(p, "keys.create", &rec.id, Outcome::Ok, role.as_str())?;
        self.put_key(&rec, audit).await?;
        Ok((token, rec))
    }

    /// Stores a key record with its audit entry (one commit) and updates the cache. The
    /// first key of a store carries the [`AuthMarker`] in the same commit.
    async fn put_key(&self, rec: &ApiKeyRecord, audit: Op) -> HubResult<()> {
        let mut ops = vec![
            Op::PutAux {
                table: Aux::ApiKeys,
                key: rec.hash.clone(),
                value: encode(rec)?,
            },
            audit,
        ];
        let with_marker = !self.sec().marker_stored.load(Ordering::SeqCst);
        if with_marker {
            ops.push(self.auth_marker_op(&rec.id)?);
        }
        self.inner.store.write(ops).await?;
        if with_marker {
            self.sec().marker_stored.store(true, Ordering::SeqCst);
        }
        self.sec().keys_ever.store(true, Ordering::SeqCst);
        self.sec()
            .keys
            .write()
            .insert(rec.hash.clone(), rec.clone());
        self.keys_changed();
        self.announce_keys_changed();
        Ok(())
    }

    pub async fn list_keys(&self, p: &Principal) -> HubResult<Vec<ApiKeyRecord>> {
        self.authorize(p, Action::KeysManage).await?;
        self.refresh_keys().await?;
        let mut keys: Vec<ApiKeyRecord> = self.sec().keys.read().values().cloned().collect();
        keys.sort_by_key(|k| k.created_at);
        Ok(keys)
    }

    pub async fn revoke_key(&self, p: &Principal, id: &str) -> HubResult<ApiKeyRecord> {
        self.authorize(p, Action::KeysManage).await?;
        self.refresh_keys().await?;
        let found = self
            .sec()
            .keys
            .read()
            .values()
            .find(|k| k.id == id)
            .cloned();
        let Some(mut rec) = found else {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("no API key {id:?}; `keys list` shows the ids"),
            ));
        };
        if rec.revoked_at.is_none() {
            rec.revoked_at = Some(now_ms());
            let audit = self.audit_op(p, "keys.revoke", id, Outcome::Ok, "")?;
            self.put_key(&rec, audit).await?;
        }
        Ok(rec)
    }

    // -----------------------------------------------------------------------------------------
    // Grants

    async fn grants_of(&self, agent_id: &str) -> HubResult<Vec<GrantRecord>> {
        let page = self
            .inner
            .store
            .scan_aux(Aux::Grants, &format!("{agent_id}/"), None, 10_000)
            .await?;
        page.into_iter()
            .map(|(_, v)| decode("grants", &v).map_err(HubError::from))
            .collect()
    }

    async fn all_grants(&self) -> HubResult<Vec<GrantRecord>> {
        let page = self
            .inner
            .store
            .scan_aux(Aux::Grants, "", None, 100_000)
            .await?;
        page.into_iter()
            .map(|(_, v)| decode("grants", &v).map_err(HubError::from))
            .collect()
    }

    pub(crate) async fn has_grant(&self, agent_id: &str, permission: &str) -> HubResult<bool> {
        let now = now_ms();
        Ok(self
            .grants_of(agent_id)
            .await?
            .iter()
            .any(|g| g.is_active(now) && g.covers(permission)))
    }

    /// Grants `permission` to `agent_id`. Operators and admins may grant anything; an agent
    /// may pass on a permission it holds through a delegable grant.
    pub async fn grant_permission(
        &self,
        p: &Principal,
        agent_id: &str,
        permission: &str,
        delegable: bool,
        expires_in: Option<Duration>,
    ) -> HubResult<GrantRecord> {
        validate_permission(permission)?;
        crate::model::validate_agent_id(agent_id)?;
        if p.kind == PrincipalKind::Agent {
            let from = p
                .agent
                .as_ref()
                .map(|a| a.agent_id.clone())
                .unwrap_or_default();
            let now = now_ms();
            let delegates = self.grants_of(&from).await?.iter().any(|g| {
                g.is_active(now)
                    && g.delegable
                    && grants::permission_covers(&g.permission, permission)
            });
            if !delegates {
                let msg = format!(
                    "agent {from:?} holds no delegable grant covering {permission:?}, so it cannot grant it"
                );
                self.audit_now(p, "permissions.grant", agent_id, Outcome::Denied, &msg)
                    .await;
                return Err(HubError::new(ErrorCode::Forbidden, msg));
            }
        } else {
            self.authorize(p, Action::GrantsWrite).await?;
        }
        let now = now_ms();
        let grant = GrantRecord {
            id: format!("g_{}", new_id()),
            agent_id: agent_id.to_string(),
            permission: permission.to_string(),
            delegable,
            granted_by: p.id.clone(),
            created_at: now,
            expires_at: expires_in.map(|d| now.saturating_add(d.as_millis() as i64)),
            revoked_at: None,
            revoked_by: None,
            request_id: None,
        };
        let audit = self.audit_op(
            p,
            "permissions.grant",
            agent_id,
            Outcome::Ok,
            &format!("{permission} delegable={delegable}"),
        )?;
        self.inner
            .store
            .write(vec![
                Op::PutAux {
                    table: Aux::Grants,
                    key: grant_key(&grant),
                    value: encode(&grant)?,
                },
                audit,
            ])
            .await?;
        Ok(grant)
    }

    pub async fn revoke_permission(&self, p: &Principal, grant_id: &str) -> HubResult<GrantRecord> {
        self.authorize(p, Action::GrantsWrite).await?;
        let found = self
            .all_grants()
            .await?
            .into_iter()
            .find(|g| g.id == grant_id);
        let Some(mut grant) = found else {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("no grant {grant_id:?}; get_permissions lists them"),
            ));
        };
        if grant.revoked_at.is_none() {
            grant.revoked_at = Some(now_ms());
            grant.revoked_by = Some(p.id.clone());
            let audit = self.audit_op(
                p,
                "permissions.revoke",
                &grant.agent_id,
                Outcome::Ok,
                &grant.permission,
            )?;
            self.inner
                .store
                .write(vec![
                    Op::PutAux {
                        table: Aux::Grants,
                        key: grant_key(&grant),
                        value: encode(&grant)?,
                    },
                    audit,
                ])
                .await?;
        }
        Ok(grant)
    }

    /// Asks for a permission. Agents ask for themselves; operators may file a request for any
    /// agent. With `wait`, waits (bounded) for the decision.
    pub async fn request_permission(
        &self,
        p: &Principal,
        agent_id: Option<&str>,
        permission: &str,
        reason: &str,
        wait: Option<Duration>,
    ) -> HubResult<PermissionRequestRecord> {
        validate_permission(permission)?;
        self.authorize(p, Action::PermissionRequest).await?;
        let agent_id = match (&p.agent, agent_id) {
            (Some(a), Some(other)) if other != a.agent_id => {
                return Err(HubError::new(
                    ErrorCode::Forbidden,
                    "an agent can request permissions only for itself",
                ));
            }
            (Some(a), _) => a.agent_id.clone(),
            (None, Some(id)) => id.to_string(),
            (None, None) => {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    "agentId is required: which agent needs the permission?",
                ));
            }
        };
        crate::model::validate_agent_id(&agent_id)?;
        let rec = PermissionRequestRecord {
            id: format!("pr_{}", new_id()),
            agent_id: agent_id.clone(),
            permission: permission.to_string(),
            reason: reason.chars().take(1000).collect(),
            requested_by: p.id.clone(),
            created_at: now_ms(),
            status: RequestStatus::Pending,
            decided_by: None,
            decided_at: None,
            grant_id: None,
        };
        let (tx, mut rx) = watch::channel(None);
        self.sec().waiters.lock().insert(rec.id.clone(), tx);
        let audit = self.audit_op(p, "permissions.request", &agent_id, Outcome::Ok, permission)?;
        let written = self
            .inner
            .store
            .write(vec![
                Op::PutAux {
                    table: Aux::PermissionRequests,
                    key: rec.id.clone(),
                    value: encode(&rec)?,
                },
                audit,
            ])
            .await;
        if let Err(e) = written {
            self.sec().waiters.lock().remove(&rec.id);
            return Err(e.into());
        }
        let Some(wait) = wait else {
            self.sec().waiters.lock().remove(&rec.id);
            return Ok(rec);
        };
        let deadline = tokio::time::Instant::now() + wait.min(MAX_PERMISSION_WAIT);
        let id = rec.id.clone();
        let outcome = loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() { break None; }
                    if let Some(d) = rx.borrow_and_update().clone() { break Some(d); }
                }
                // Decisions made by another replica: poll the store now and then.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Some(d) = self.permission_request(&id).await?
                        && d.status != RequestStatus::Pending
                    {
                        break Some(d);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break None,
            }
        };
        self.sec().waiters.lock().remove(&id);
        Ok(outcome.unwrap_or(rec))
    }

    async fn permission_request(&self, id: &str) -> HubResult<Option<PermissionRequestRecord>> {
        match self
            .inner
            .store
            .get_aux(Aux::PermissionRequests, id)
            .await?
        {
            Some(v) => Ok(Some(decode("permission_requests", &v)?)),
            None => Ok(None),
        }
    }

    /// Approves (creating the grant) or denies a pending permission request.
    pub async fn decide_permission(
        &self,
        p: &Principal,
        request_id: &str,
        approve: bool,
        delegable: bool,
        expires_in: Option<Duration>,
    ) -> HubResult<(PermissionRequestRecord, Option<GrantRecord>)> {
        self.authorize(p, Action::GrantsWrite).await?;
        let Some(mut req) = self.permission_request(request_id).await? else {
            return Err(HubError::new(
                ErrorCode::InvalidParams,
                format!("no permission request {request_id:?}; get_permissions lists them"),
            ));
        };
        if req.status != RequestStatus::Pending {
            return Err(HubError::new(
                ErrorCode::NotCancelable,
                format!(
                    "permission request {request_id:?} was already {}",
                    req.status.as_str()
                ),
            ));
        }
        let now = now_ms();
        req.status = if approve {
            RequestStatus::Approved
        } else {
            RequestStatus::Denied
        };
        req.decided_by = Some(p.id.clone());
        req.decided_at = Some(now);
        let mut ops = Vec::new();
        let grant = approve.then(|| GrantRecord {
            id: format!("g_{}", new_id()),
            agent_id: req.agent_id.clone(),
            permission: req.permission.clone(),
            delegable,
            granted_by: p.id.clone(),
            created_at: now,
            expires_at: expires_in.map(|d| now.saturating_add(d.as_millis() as i64)),
            revoked_at: None,
            revoked_by: None,
            request_id: Some(req.id.clone()),
        });
        if let Some(g) = &grant {
            req.grant_id = Some(g.id.clone());
            ops.push(Op::PutAux {
                table: Aux::Grants,
                key: grant_key(g),
                value: encode(g)?,
            });
        }
        ops.push(Op::PutAux {
            table: Aux::PermissionRequests,
            key: req.id.clone(),
            value: encode(&req)?,
        });
        ops.push(self.audit_op(
            p,
            if approve {
                "permissions.approve"
            } else {
                "permissions.deny"
            },
            &req.agent_id,
            Outcome::Ok,
            &req.permission,
        )?);
        self.inner.store.write(ops).await?;
        if let Some(tx) = self.sec().waiters.lock().get(&req.id) {
            tx.send_replace(Some(req.clone()));
        }
        Ok((req, grant))
    }

    /// Grants and permission requests, of one agent or all.
    pub async fn get_permissions(
        &self,
        p: &Principal,
        agent_id: Option<&str>,
    ) -> HubResult<Permissions> {
        // An agent may always look at its own permissions.
        let own = p.agent.as_ref().map(|a| a.agent_id.as_str());
        if !(own.is_some() && own == agent_id) {
            self.authorize(p, Action::GrantsRead).await?;
        }
        let grants = match agent_id {
            Some(a) => self.grants_of(a).await?,
            None => self.all_grants().await?,
        };
        let page = self
            .inner
            .store
            .scan_aux(Aux::PermissionRequests, "", None, 100_000)
            .await?;
        let mut requests = Vec::new();
        for (_, v) in page {
            let r: PermissionRequestRecord = decode("permission_requests", &v)?;
            if agent_id.is_none_or(|a| a == r.agent_id) {
                requests.push(r);
            }
        }
        Ok(Permissions { grants, requests })
    }
}

// ---------------------------------------------------------------------------------------------
// For stream key guards (`key_guard.rs`)

impl Hub {
    /// The cached record of the API key with public id `key_id` (no store read; a scan of
    /// the cache).
    pub(crate) fn cached_key(&self, key_id: &str) -> Option<ApiKeyRecord> {
        self.sec()
            .keys
            .read()
            .values()
            .find(|k| k.id == key_id)
            .cloned()
    }

    /// The cached record of the API key whose secret hashes to `hash` (no store read).
    pub(crate) fn cached_key_by_hash(&self, hash: &str) -> Option<ApiKeyRecord> {
        self.sec().keys.read().get(hash).cloned()
    }
}
