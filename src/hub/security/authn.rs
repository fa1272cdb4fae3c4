//! Authentication: turning presented credentials (an API key, the legacy `STREAM_TOKEN`, a
//! per-request agent token) into a [`Principal`], and counting refused credentials. Whether
//! calls without a key are served follows from `A2A_AUTH` and whether a key ever existed.

use std::net::IpAddr;

use super::super::Hub;
use super::{AuthStatus, address};
use crate::config::AuthMode;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::metrics;
use crate::model::{Principal, PrincipalKind, Role, Surface, now_ms};
use crate::policy::audit::Denial;
use crate::policy::keys::{self, ApiKeyRecord};
use crate::store::Aux;
use crate::store::codec::decode;

impl Hub {
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
}
