//! Sessions opened under an id the caller chose: the original server's
//! `open_session {sessionId}`, kept for its clients (`agent_control`). The other session
//! operations are in `mod.rs`; this adds only the creation under a given id.

use serde_json::Value;

use super::Hub;
use crate::error::{ErrorCode, HubError, HubResult};
use crate::model::{Principal, SessionRecord, now_ms};
use crate::policy::Action;
use crate::policy::audit::Outcome;
use crate::store::Op;

impl Hub {
    /// Opens a session under `id`. An id this caller already holds and has not closed gives
    /// back that session (so a client may open "its" session again); an id held by another
    /// caller, or closed, is refused.
    pub async fn open_named_session(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<String>,
        metadata: Value,
    ) -> HubResult<SessionRecord> {
        self.authorize(p, Action::Invoke).await?;
        validate_session_id(id)?;
        if let Some(a) = &agent_id {
            self.agent(a)?;
        }
        // Two opens of one id here must not both create it: the idempotency lock stripe of
        // the id serialises them.
        let _g = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ("session", id).hash(&mut h);
            let i = (h.finish() as usize) % self.inner.idem_locks.len();
            self.inner.idem_locks[i].lock().await
        };
        if let Some(existing) = self.inner.store.get_session(id).await? {
            if existing.principal != p.id {
                return Err(HubError::new(
                    ErrorCode::InvalidParams,
                    format!(
                        "session id {id:?} is taken; choose another, or omit sessionId to get a new one"
                    ),
                ));
            }
            if existing.closed_at.is_some() {
                return Err(HubError::new(
                    ErrorCode::SessionClosed,
                    format!("session {id:?} was closed; open a session under another id"),
                ));
            }
            return Ok(existing);
        }
        let rec = SessionRecord {
            id: id.to_string(),
            principal: p.id.clone(),
            agent_id,
            metadata: metadata.to_string(),
            created_at: now_ms(),
            closed_at: None,
        };
        let audit = self.audit_op(p, "sessions.open", &rec.id, Outcome::Ok, "named")?;
        self.inner
            .store
            .write(vec![Op::PutSession(rec.clone()), audit])
            .await?;
        Ok(rec)
    }
}

/// Session ids a caller may choose: 1-128 letters, digits, `.`, `_`, `-` or `:`.
fn validate_session_id(id: &str) -> HubResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(HubError::new(
            ErrorCode::InvalidParams,
            format!(
                "sessionId {id:?} is not valid: use 1-128 letters, digits, '.', '_', '-' or ':'"
            ),
        ))
    }
}
