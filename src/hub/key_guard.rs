//! Streams end with their credential: a [`KeyGuard`] watches the API key a stream was opened
//! with and reports the moment it is revoked or expires, so a WebSocket, an SSE stream or an
//! A2A task stream cannot outlive the key that authorised it.
//!
//! It never reads the store. It looks at the hub's key cache (`security/keys.rs`) again whenever
//! that cache changes — a watch channel bumped by every key write of this process (at once)
//! and by every reload of the cache: the `key-cache` worker every `A2A_KEY_REFRESH`, and at
//! once when another replica announces a key change over Redis — and it wakes by itself at the
//! key's expiry. Checking it between events is two comparisons.
//!
//! Who uses it: [`crate::hub::EventStream`] (every stream of request events) and the
//! WebSocket connection loop (`api/ws.rs`), which also guards connections that follow nothing.

use std::time::Duration;

use tokio::sync::watch;

use super::Hub;
use crate::error::{ErrorCode, HubError};
use crate::model::{Principal, now_ms};

/// Watches one API key for revocation and expiry.
pub struct KeyGuard {
    hub: Hub,
    key_id: String,
    /// The cache key (hash) of the key, once found: later looks are one map lookup.
    hash: Option<String>,
    epoch: watch::Receiver<u64>,
    revoked: bool,
    expires_at: Option<i64>,
}

impl Hub {
    /// Tells every [`KeyGuard`] that the key cache changed (they look again).
    pub(crate) fn keys_changed(&self) {
        self.inner
            .security
            .key_epoch
            .send_modify(|e| *e = e.wrapping_add(1));
    }

    /// A guard for the key `principal` authenticated with; `None` for principals without a
    /// key (anonymous and local callers, the stream token, agent processes).
    pub fn key_guard(&self, principal: &Principal) -> Option<KeyGuard> {
        let key_id = principal.key_id.clone()?;
        let mut guard = KeyGuard {
            hub: self.clone(),
            key_id,
            hash: None,
            epoch: self.inner.security.key_epoch.subscribe(),
            revoked: false,
            expires_at: None,
        };
        guard.reload();
        Some(guard)
    }
}

impl KeyGuard {
    /// Reads the key's state from the cache. A key missing from it keeps its last known state:
    /// keys are never deleted, so a miss is a cache reload racing with a key created elsewhere.
    fn reload(&mut self) {
        let found = match &self.hash {
            Some(h) => self.hub.cached_key_by_hash(h),
            None => self.hub.cached_key(&self.key_id),
        };
        if let Some(k) = found {
            self.revoked = k.revoked_at.is_some();
            self.expires_at = k.expires_at;
            self.hash = Some(k.hash);
        }
    }

    /// `Err` once the key is revoked or expired (the error to end the stream with).
    pub fn check(&mut self) -> Result<(), HubError> {
        if self.epoch.has_changed().unwrap_or(false) {
            self.epoch.borrow_and_update();
            self.reload();
        }
        if self.revoked {
            return Err(HubError::new(
                ErrorCode::Unauthenticated,
                format!(
                    "the API key {} has been revoked; this stream is closed",
                    self.key_id
                ),
            ));
        }
        if let Some(e) = self.expires_at
            && e <= now_ms()
        {
            return Err(HubError::new(
                ErrorCode::Unauthenticated,
                format!(
                    "the API key {} has expired; this stream is closed (use a valid key to open it again)",
                    self.key_id
                ),
            ));
        }
        Ok(())
    }

    /// Waits until the key stops being valid; returns the error to end the stream with.
    /// Cancel-safe: drop it to stop waiting.
    pub async fn lapsed(&mut self) -> HubError {
        loop {
            if let Err(e) = self.check() {
                return e;
            }
            let expiry = self.expires_at.map(|e| {
                let left = u64::try_from(e.saturating_sub(now_ms())).unwrap_or(0);
                tokio::time::Instant::now() + Duration::from_millis(left)
            });
            let at_expiry = async move {
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let hub_gone = tokio::select! {
                changed = self.epoch.changed() => changed.is_err(),
                _ = at_expiry => false,
            };
            if hub_gone {
                // No more cache changes can come: only the expiry can still end the stream.
                match expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } else {
                self.reload();
            }
        }
    }
}
