//! API key lifecycle: the in-memory key cache (loaded at start, refreshed by the `key-cache`
//! worker), the [`AuthMarker`] that keeps a store closed once a key has existed, and creating,
//! listing and revoking keys (each change one commit with its audit entry).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::Hub;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Principal, Role, now_ms};
use crate::policy::Action;
use crate::policy::audit::Outcome;
use crate::policy::keys::{self, ApiKeyRecord, AuthMarker};
use crate::store::codec::{decode, encode};
use crate::store::{Aux, Op};

impl Hub {
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
