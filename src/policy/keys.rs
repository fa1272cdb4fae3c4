//! API keys: random high-entropy secrets shown once, stored only as a SHA-256 hash.
//!
//! Token format: `a2a_<id>_<secret>` where `<id>` is 12 hex characters (public: listed, used to
//! revoke, safe to log) and `<secret>` is 32 random bytes in unpadded base64url. The store keys
//! records by the hex SHA-256 of the whole token; a fast hash is right for 256-bit random
//! secrets (nothing to brute-force), and lookups stay O(1). The same table holds the
//! [`AuthMarker`] under [`AUTH_MARKER_KEY`].

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Role;

pub const TOKEN_PREFIX: &str = "a2a_";

/// Store key (in the API-key table) of the [`AuthMarker`]. It cannot collide with a key
/// record: those are keyed by a 64-character hex hash.
pub const AUTH_MARKER_KEY: &str = "~auth-enabled";

/// The durable record that API keys have existed in this store. Written in the commit of the
/// first key (and at start-up when keys exist without it) and never removed, so that with
/// `A2A_AUTH=auto` a store that once had a key requires one for good: the expiry or revocation
/// of the last key does not reopen the hub. Restores carry it along with the keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthMarker {
    /// When authentication was turned on (ms since the epoch).
    pub since: i64,
    /// The key whose creation turned it on (or `backfill` when written at start-up).
    pub first_key: String,
}

/// Whether a key of the API-key table holds a key record (not the marker).
pub fn is_key_record(store_key: &str) -> bool {
    store_key.len() == 64 && store_key.bytes().all(|b| b.is_ascii_hexdigit())
}

/// An API key as stored (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub hash: String,
    pub role: Role,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub created_by: String,
}

impl ApiKeyRecord {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// The SHA-256 (hex) of a presented token: the store key.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The public id inside a well-formed token (`a2a_<id>_<secret>`), for logs and messages.
pub fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() >= 40)
        .then_some(id)
}

/// A fresh key: the token (to show once) and its record.
pub fn generate(
    role: Role,
    label: &str,
    expires_at: Option<i64>,
    created_by: &str,
    now: i64,
) -> Result<(String, ApiKeyRecord), String> {
    let mut id_bytes = [0u8; 6];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id_bytes).map_err(|e| format!("no randomness: {e}"))?;
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness: {e}"))?;
    let id = hex::encode(id_bytes);
    let token = format!(
        "{TOKEN_PREFIX}{id}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let record = ApiKeyRecord {
        id,
        hash: hash_token(&token),
        role,
        label: label.to_string(),
        created_at: now,
        expires_at,
        revoked_at: None,
        created_by: created_by.to_string(),
    };
    Ok((token, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_formed_and_hashed() {
        let (a, ra) = generate(Role::Invoker, "a", None, "test", 1).unwrap();
        let (b, rb) = generate(Role::Invoker, "b", None, "test", 1).unwrap();
        assert_ne!(a, b);
        assert_ne!(ra.hash, rb.hash);
        assert_eq!(token_id(&a), Some(ra.id.as_str()));
        assert_eq!(hash_token(&a), ra.hash);
        assert!(!ra.hash.contains(&a[16..]), "the secret is not stored");
        assert_eq!(token_id("a2a_short_x"), None);
        assert_eq!(token_id("Bearer xyz"), None);
    }

    #[test]
    fn expiry_and_revocation() {
        let (_, mut r) = generate(Role::Viewer, "", Some(100), "t", 1).unwrap();
        assert!(r.is_active(99));
        assert!(!r.is_active(100));
        r.expires_at = None;
        r.revoked_at = Some(5);
        assert!(!r.is_active(6));
    }
}
