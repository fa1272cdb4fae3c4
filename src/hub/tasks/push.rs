//! A2A push notifications: per-task webhook configs (persisted) and their delivery worker.
//!
//! Configs live in the auxiliary table `push_configs`, keyed `taskId/configId`, one versioned
//! record each (with the delivery progress). Creating a config starts a *follower*: a task that
//! reads the request's events from the log (replay, then live, like any subscriber) and POSTs
//! what the A2A adapter renders for each event (StreamResponse JSON) to the webhook, in order,
//! with `X-A2A-Notification-Token` and the configured `Authorization`. The token and the
//! credentials are write-only: every view of a config shows them as `***`
//! ([`crate::redact`]); only the delivery worker reads them.
//!
//! Delivery policy: a failed POST (network error or non-2xx) is retried with exponential
//! backoff ([`RETRY_BACKOFF`], up to [`MAX_ATTEMPTS`] attempts), then given up for that
//! payload (counted as `failed`) and the follower moves on. A slow or dead webhook never
//! blocks the job: followers read the stored log and the pump never waits for them. Progress
//! (`delivered_seq`) is persisted at most once a second and at the end, so after a restart a
//! follower resumes where it was: delivery is at-least-once. Each outcome is counted in
//! `a2a_push_notifications_total{outcome="delivered|retried|failed"}`; the worker appears as
//! `push-delivery` in the status report.
//!
//! The payload format is the adapter's business: it hands [`Hub::start_push_delivery`] a
//! renderer once it serves A2A. Until then configs are stored but not delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::super::{Hub, request_not_found};
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{Event, Principal, RequestRecord, Role, new_id, now_ms, rfc3339};
use crate::net::egress::EgressPolicy;
use crate::net::http_client::HttpClient;
use crate::store::{Aux, Op, codec};

/// Attempts per payload before it is given up.
pub const MAX_ATTEMPTS: u32 = 6;
/// Wait before the first retry; doubles per attempt up to [`MAX_BACKOFF`].
pub const RETRY_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
const MAX_CONFIGS_PER_TASK: usize = 16;
const MAX_URL: usize = 2048;
const MAX_TOKEN: usize = 4096;
const WORKER: &str = "push-delivery";

/// Renders the events of one request, in order, as the payloads to POST (A2A
/// StreamResponse objects). Stateful: one per follower.
pub type PushRender = Box<dyn FnMut(&RequestRecord, &Event) -> Vec<Value> + Send>;
/// Makes a [`PushRender`] for each follower; the argument is the `seq` after which the
/// follower starts (0: from the first event).
pub type PushRenderer = Arc<dyn Fn(u64) -> PushRender + Send + Sync>;

/// A stored push notification config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushConfig {
    pub id: String,
    pub task_id: String,
    pub url: String,
    pub token: Option<String>,
    /// `Authorization` scheme (e.g. `Bearer`) and credentials, when configured.
    pub auth_scheme: Option<String>,
    pub auth_credentials: Option<String>,
    /// Who created it.
    pub principal: String,
    pub created_at: i64,
    /// Events with `seq` up to this one are not delivered (they happened before the config).
    pub start_after: u64,
    /// The highest `seq` handed to the webhook (delivered, or given up after retries).
    pub delivered_seq: u64,
}

/// What a client asks for when it sets a push config.
#[derive(Debug, Clone, Default)]
pub struct NewPushConfig {
    pub id: Option<String>,
    pub url: String,
    pub token: Option<String>,
    pub auth_scheme: Option<String>,
    pub auth_credentials: Option<String>,
}

impl PushConfig {
    /// A config as `principal` sets it on `task_id`, delivering events after `start_after`.
    fn new(principal: &Principal, task_id: &str, new: NewPushConfig, start_after: u64) -> Self {
        PushConfig {
            id: new.id.unwrap_or_else(new_id),
            task_id: task_id.to_string(),
            url: new.url,
            token: new.token,
            auth_scheme: new.auth_scheme.filter(|s| !s.is_empty()),
            auth_credentials: new.auth_credentials.filter(|s| !s.is_empty()),
            principal: principal.id.clone(),
            created_at: now_ms(),
            start_after,
            delivered_seq: start_after,
        }
    }
}

/// Push delivery state held by the hub.
#[derive(Default)]
pub(crate) struct PushState {
    renderer: OnceLock<PushRenderer>,
    http: OnceLock<HttpClient>,
    /// Running followers by config key, with their generation and stop token.
    followers: Mutex<HashMap<String, (u64, CancellationToken)>>,
    generation: AtomicU64,
    /// Serialises config writes, so a progress update never resurrects a deleted config.
    write_lock: tokio::sync::Mutex<()>,
}

fn key(task_id: &str, id: &str) -> String {
    format!("{task_id}/{id}")
}

fn invalid(msg: impl Into<String>) -> HubError {
    HubError::new(ErrorCode::InvalidParams, msg)
}

fn config_not_found(task_id: &str, id: &str) -> HubError {
    HubError::new(
        ErrorCode::PushConfigNotFound,
        format!("task {task_id:?} has no push notification config {id:?}"),
    )
}

/// Checks a push config a client asks for (URL and where it points, header-safe token and
/// credentials, id).
pub fn validate(cfg: &NewPushConfig, policy: &EgressPolicy) -> HubResult<()> {
    if cfg.url.len() > MAX_URL {
        return Err(invalid(format!(
            "the push notification url is longer than {MAX_URL} characters"
        )));
    }
    let uri: http::Uri = cfg.url.parse().map_err(|e| {
        invalid(format!(
            "the push notification url {:?} is not a valid absolute http:// or https:// URL: {e}",
            cfg.url
        ))
    })?;
    if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
        return Err(invalid(format!(
            "the push notification url must be an absolute http:// or https:// URL, got {:?}",
            cfg.url
        )));
    }
    policy
        .check_url(&uri)
        .map_err(|e| invalid(format!("the push notification url is refused: {e}")))?;
    if cfg.token.as_ref().is_some_and(|t| t.len() > MAX_TOKEN)
        || cfg
            .auth_credentials
            .as_ref()
            .is_some_and(|t| t.len() > MAX_TOKEN)
    {
        return Err(invalid(format!(
            "push notification tokens and credentials are limited to {MAX_TOKEN} bytes"
        )));
    }
    for (what, v) in [
        ("token", &cfg.token),
        ("authentication.scheme", &cfg.auth_scheme),
        ("authentication.credentials", &cfg.auth_credentials),
    ] {
        if let Some(v) = v
            && http::HeaderValue::from_str(v).is_err()
        {
            return Err(invalid(format!(
                "push notification {what} must be printable ASCII (it is sent as an HTTP header)"
            )));
        }
    }
    if let Some(id) = &cfg.id
        && (id.is_empty() || id.len() > 128 || id.contains('/'))
    {
        return Err(invalid(
            "a push notification config id must be 1-128 characters without '/'",
        ));
    }
    Ok(())
}

/// A config for a task that has none yet (given with the message that creates it) cannot
/// carry the write-only placeholder: there is no stored value to keep. Checked before the
/// task is created, so a refused config leaves nothing behind.
pub fn refuse_placeholders(cfg: &NewPushConfig) -> HubResult<()> {
    let mut probe = PushConfig {
        id: String::new(),
        task_id: String::new(),
        url: String::new(),
        token: cfg.token.clone(),
        auth_scheme: None,
        auth_credentials: cfg.auth_credentials.clone(),
        principal: String::new(),
        created_at: 0,
        start_after: 0,
        delivered_seq: 0,
    };
    keep_secrets(&mut probe, None)
}

/// Replaces the write-only placeholder (`***`) in the token or credentials of `cfg` with the
/// value stored in `old` (the config it replaces); a placeholder with nothing stored is an
/// error.
fn keep_secrets(cfg: &mut PushConfig, old: Option<&PushConfig>) -> HubResult<()> {
    use crate::redact::REDACTED;
    for (what, new, stored) in [
        ("token", &mut cfg.token, old.and_then(|o| o.token.as_ref())),
        (
            "authentication.credentials",
            &mut cfg.auth_credentials,
            old.and_then(|o| o.auth_credentials.as_ref()),
        ),
    ] {
        if new.as_deref() == Some(REDACTED) {
            match stored {
                Some(v) => *new = Some(v.clone()),
                None => {
                    return Err(invalid(format!(
                        "the push notification {what} is {REDACTED:?}, the placeholder views show instead of secrets, and this config has no stored value to keep; give the real value"
                    )));
                }
            }
        }
    }
    Ok(())
}

impl Hub {
    /// Stores a push config for a task (replacing one with the same id) and starts its
    /// delivery. `from_start`: deliver the task's events from the first one (a config given
    /// with the message that creates the task); otherwise only events after now.
    pub async fn create_push_config(
        &self,
        principal: &Principal,
        task_id: &str,
        new: NewPushConfig,
        from_start: bool,
    ) -> HubResult<PushConfig> {
        self.validate_push_config(&new).await?;
        let Some(rec) = self.inner.store.get_request(task_id).await? else {
            return Err(request_not_found(task_id));
        };
        // Events of the task go to the URL: only who may act on the task may set one.
        self.authorize_modify(principal, &rec, "push_configs.write")
            .await?;
        let start_after = if from_start {
            0
        } else {
            self.inner.store.last_seq(task_id).await?
        };
        let mut cfg = PushConfig::new(principal, task_id, new, start_after);
        let id = cfg.id.clone();
        {
            let _g = self.inner.push.write_lock.lock().await;
            let existing = self.list_push_configs(principal, task_id).await?;
            // A config read back (secrets shown as `***`) and set again keeps its secrets.
            keep_secrets(&mut cfg, existing.iter().find(|c| c.id == id))?;
            if !existing.iter().any(|c| c.id == id) && existing.len() >= MAX_CONFIGS_PER_TASK {
                return Err(invalid(format!(
                    "task {task_id:?} already has {MAX_CONFIGS_PER_TASK} push notification configs; delete one first"
                )));
            }
            let audit = self.audit_op(
                principal,
                "push_configs.write",
                task_id,
                crate::policy::audit::Outcome::Ok,
                &cfg.url,
            )?;
            self.inner
                .store
                .write(vec![
                    Op::PutAux {
                        table: Aux::PushConfigs,
                        key: key(task_id, &id),
                        value: codec::encode(&cfg)?,
                    },
                    audit,
                ])
                .await?;
        }
        // A replaced config restarts its follower with the new settings.
        if let Some((_, t)) = self.inner.push.followers.lock().remove(&key(task_id, &id)) {
            t.cancel();
        }
        self.spawn_follower(cfg.clone());
        Ok(cfg)
    }

    /// The push config a new task starts with (delivered from its first event) and the ops
    /// that store it with its audit record, for the commit that creates the task. The caller
    /// validated it ([`Hub::validate_push_config`], [`refuse_placeholders`]) and starts its
    /// follower ([`Hub::spawn_follower`]) once the commit is done.
    pub(in crate::hub) fn first_push_config(
        &self,
        principal: &Principal,
        task_id: &str,
        new: NewPushConfig,
    ) -> HubResult<(PushConfig, Vec<Op>)> {
        let mut cfg = PushConfig::new(principal, task_id, new, 0);
        keep_secrets(&mut cfg, None)?;
        let audit = self.audit_op(
            principal,
            "push_configs.write",
            task_id,
            crate::policy::audit::Outcome::Ok,
            &cfg.url,
        )?;
        let put = Op::PutAux {
            table: Aux::PushConfigs,
            key: key(task_id, &cfg.id),
            value: codec::encode(&cfg)?,
        };
        Ok((cfg, vec![put, audit]))
    }

    pub async fn get_push_config(
        &self,
        principal: &Principal,
        task_id: &str,
        id: &str,
    ) -> HubResult<PushConfig> {
        self.get_status(principal, task_id).await?;
        match self
            .inner
            .store
            .get_aux(Aux::PushConfigs, &key(task_id, id))
            .await?
        {
            Some(bytes) => Ok(codec::decode("push_configs", &bytes)?),
            None => Err(config_not_found(task_id, id)),
        }
    }

    /// The push configs of a task, by id.
    pub async fn list_push_configs(
        &self,
        principal: &Principal,
        task_id: &str,
    ) -> HubResult<Vec<PushConfig>> {
        self.get_status(principal, task_id).await?;
        let rows = self
            .inner
            .store
            .scan_aux(
                Aux::PushConfigs,
                &format!("{task_id}/"),
                None,
                MAX_CONFIGS_PER_TASK * 4,
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (_, bytes) in rows {
            out.push(codec::decode::<PushConfig>("push_configs", &bytes)?);
        }
        Ok(out)
    }

    pub async fn delete_push_config(
        &self,
        principal: &Principal,
        task_id: &str,
        id: &str,
    ) -> HubResult<()> {
        let rec = self.get_status(principal, task_id).await?;
        self.authorize_modify(principal, &rec, "push_configs.delete")
            .await?;
        let k = key(task_id, id);
        {
            let _g = self.inner.push.write_lock.lock().await;
            if self
                .inner
                .store
                .get_aux(Aux::PushConfigs, &k)
                .await?
                .is_none()
            {
                return Err(config_not_found(task_id, id));
            }
            let audit = self.audit_op(
                principal,
                "push_configs.delete",
                task_id,
                crate::policy::audit::Outcome::Ok,
                id,
            )?;
            self.inner
                .store
                .write(vec![
                    Op::DeleteAux {
                        table: Aux::PushConfigs,
                        key: k.clone(),
                    },
                    audit,
                ])
                .await?;
        }
        if let Some((_, t)) = self.inner.push.followers.lock().remove(&k) {
            t.cancel();
        }
        Ok(())
    }

    /// Where push webhooks may point: public addresses and `egress_allowed_networks`.
    fn push_policy(&self) -> Arc<EgressPolicy> {
        self.inner.cfg.egress.clone()
    }

    /// Checks a push config a client asks for: [`validate`] with this hub's egress policy,
    /// and where the URL's host name resolves to now.
    pub async fn validate_push_config(&self, cfg: &NewPushConfig) -> HubResult<()> {
        let policy = self.push_policy();
        validate(cfg, &policy)?;
        if let Ok(uri) = cfg.url.parse::<http::Uri>() {
            policy
                .check_url_resolved(&uri)
                .await
                .map_err(|e| invalid(format!("the push notification url is refused: {e}")))?;
        }
        Ok(())
    }

    /// Starts push delivery with the adapter's payload renderer: followers for every stored
    /// config with something left to deliver, and for every config created from now on.
    /// Calling it again keeps the first renderer.
    pub fn start_push_delivery(&self, renderer: PushRenderer) {
        if self.inner.push.renderer.set(renderer).is_err() {
            return;
        }
        match HttpClient::guarded(self.push_policy()) {
            Ok(c) => {
                let _ = self.inner.push.http.set(c);
            }
            Err(e) => {
                tracing::error!("push notifications are off: {e}");
                return;
            }
        }
        self.worker_update(WORKER, |w| w.state = "idle");
        let hub = self.clone();
        // On the hub's tracker: shutdown waits for push tasks (they stop at its start).
        self.inner.tracker.spawn(async move {
            if let Err(e) = hub.recover_push_followers().await {
                tracing::error!("resuming push notification delivery failed: {}", e.message);
                hub.worker_update(WORKER, |w| {
                    w.errors += 1;
                    w.last_error = Some(e.message.clone());
                });
            }
        });
    }

    async fn recover_push_followers(&self) -> HubResult<()> {
        let mut after: Option<String> = None;
        let mut resumed = 0usize;
        loop {
            if self.inner.stopping.is_cancelled() {
                break;
            }
            let rows = self
                .inner
                .store
                .scan_aux(Aux::PushConfigs, "", after.as_deref(), 500)
                .await?;
            let n = rows.len();
            after = rows.last().map(|(k, _)| k.clone());
            for (k, bytes) in rows {
                let cfg: PushConfig = match codec::decode("push_configs", &bytes) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(key = %k, "unreadable push config skipped: {e}");
                        continue;
                    }
                };
                let Some(rec) = self.inner.store.get_request(&cfg.task_id).await? else {
                    continue;
                };
                let last = self.inner.store.last_seq(&cfg.task_id).await?;
                if !rec.state.is_terminal() || cfg.delivered_seq < last {
                    self.spawn_follower(cfg);
                    resumed += 1;
                }
            }
            if n < 500 {
                break;
            }
        }
        if resumed > 0 {
            tracing::info!(resumed, "resumed push notification delivery");
        }
        Ok(())
    }

    /// Stops the followers of a task's configs (its records are being removed).
    pub(in crate::hub) fn stop_push_followers(&self, task_id: &str) {
        let prefix = format!("{task_id}/");
        let mut map = self.inner.push.followers.lock();
        map.retain(|k, (_, t)| {
            if k.starts_with(&prefix) {
                t.cancel();
                false
            } else {
                true
            }
        });
    }

    pub(in crate::hub) fn spawn_follower(&self, cfg: PushConfig) {
        let (Some(render), Some(http)) = (
            self.inner.push.renderer.get().cloned(),
            self.inner.push.http.get().cloned(),
        ) else {
            return;
        };
        let k = key(&cfg.task_id, &cfg.id);
        let token = self.inner.stopping.child_token();
        let generation = self.inner.push.generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = self.inner.push.followers.lock();
            if map.contains_key(&k) {
                return;
            }
            map.insert(k.clone(), (generation, token.clone()));
        }
        let hub = self.clone();
        self.inner.tracker.spawn(async move {
            hub.follow(cfg, render, http, token).await;
            let mut map = hub.inner.push.followers.lock();
            // Only remove our own entry (a replacement may have registered since).
            if map.get(&k).is_some_and(|(g, _)| *g == generation) {
                map.remove(&k);
            }
        });
    }

    async fn follow(
        &self,
        mut cfg: PushConfig,
        renderer: PushRenderer,
        http: HttpClient,
        stop: CancellationToken,
    ) {
        let system = Principal::new("system:push-delivery", Role::Admin);
        let after = cfg.delivered_seq.max(cfg.start_after);
        let mut render = renderer(after);
        let mut stream = match self.subscribe_unmetered(&system, &cfg.task_id, after).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(task = %cfg.task_id, "push delivery cannot follow the task: {}", e.message);
                return;
            }
        };
        let Ok(rec) = self.get_status(&system, &cfg.task_id).await else {
            return;
        };
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(t) = &cfg.token {
            headers.push(("x-a2a-notification-token", t.clone()));
        }
        if let (Some(s), Some(c)) = (&cfg.auth_scheme, &cfg.auth_credentials) {
            headers.push(("authorization", format!("{s} {c}")));
        }
        let mut saved_at = Instant::now();
        let mut saved_seq = cfg.delivered_seq;
        loop {
            let ev = tokio::select! {
                _ = stop.cancelled() => break,
                ev = stream.next() => ev,
            };
            let ev = match ev {
                Some(Ok(ev)) => ev,
                Some(Err(e)) => {
                    tracing::warn!(task = %cfg.task_id, "push delivery lost the event stream: {}", e.message);
                    break;
                }
                None => break,
            };
            for payload in render(&rec, &ev) {
                if !self.deliver(&cfg, &http, &headers, &payload, &stop).await {
                    return;
                }
            }
            cfg.delivered_seq = ev.seq;
            let terminal = ev.kind.is_terminal();
            if terminal || saved_at.elapsed() >= PROGRESS_EVERY {
                self.save_progress(&cfg).await;
                saved_at = Instant::now();
                saved_seq = cfg.delivered_seq;
            }
            if terminal {
                break;
            }
        }
        if cfg.delivered_seq > saved_seq {
            self.save_progress(&cfg).await;
        }
    }

    /// POSTs one payload with retries. False when the follower is told to stop.
    async fn deliver(
        &self,
        cfg: &PushConfig,
        http: &HttpClient,
        headers: &[(&str, String)],
        payload: &Value,
        stop: &CancellationToken,
    ) -> bool {
        // A config stored before the policy was narrowed: no attempt will be allowed.
        let refused = match cfg.url.parse::<http::Uri>() {
            Ok(uri) => self.push_policy().check_url(&uri).err(),
            Err(e) => Some(format!("{:?} is not a valid URL: {e}", cfg.url)),
        };
        if let Some(err) = refused {
            self.give_up(cfg, err, 1);
            return true;
        }
        let mut backoff = RETRY_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let r = tokio::select! {
                _ = stop.cancelled() => return false,
                r = tokio::time::timeout(ATTEMPT_TIMEOUT, http.post_expect_success(&cfg.url, headers, payload)) => r,
            };
            let err = match r {
                Ok(Ok(_)) => {
                    metrics::PUSH_DELIVERIES
                        .with_label_values(&["delivered"])
                        .inc();
                    self.worker_update(WORKER, |w| {
                        w.runs += 1;
                        w.last_run = Some(rfc3339(now_ms()));
                    });
                    return true;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!(
                    "{} did not answer within {} s",
                    cfg.url,
                    ATTEMPT_TIMEOUT.as_secs()
                ),
            };
            if attempt == MAX_ATTEMPTS {
                self.give_up(cfg, err, attempt);
                return true;
            }
            tracing::debug!(task = %cfg.task_id, config = %cfg.id, attempt, "push notification failed, retrying: {err}");
            self.worker_update(WORKER, |w| w.last_error = Some(err.clone()));
            metrics::PUSH_DELIVERIES
                .with_label_values(&["retried"])
                .inc();
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        true
    }

    /// Counts a payload as given up and reports why.
    fn give_up(&self, cfg: &PushConfig, err: String, attempts: u32) {
        tracing::warn!(task = %cfg.task_id, config = %cfg.id, "push notification given up after {attempts} attempt(s): {err}");
        metrics::PUSH_DELIVERIES
            .with_label_values(&["failed"])
            .inc();
        self.worker_update(WORKER, |w| {
            w.errors += 1;
            w.last_error = Some(err);
        });
    }

    /// Records how far a follower got (also when it is stopped by shutdown, so the next
    /// start resumes there). A deleted or replaced config is left alone.
    async fn save_progress(&self, cfg: &PushConfig) {
        let _g = self.inner.push.write_lock.lock().await;
        let k = key(&cfg.task_id, &cfg.id);
        // Only update a config that still exists (and is still this one).
        let current = match self.inner.store.get_aux(Aux::PushConfigs, &k).await {
            Ok(Some(b)) => codec::decode::<PushConfig>("push_configs", &b).ok(),
            _ => None,
        };
        let Some(mut current) = current else { return };
        if current.created_at != cfg.created_at {
            return;
        }
        current.delivered_seq = cfg.delivered_seq;
        let op = match codec::encode(&current) {
            Ok(v) => Op::PutAux {
                table: Aux::PushConfigs,
                key: k,
                value: v,
            },
            Err(e) => {
                tracing::error!("cannot encode a push config: {e}");
                return;
            }
        };
        if let Err(e) = self.inner.store.write(vec![op]).await {
            tracing::warn!(task = %cfg.task_id, "cannot record push delivery progress: {e}");
        }
    }
}
