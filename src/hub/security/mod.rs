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
//! has existed in the store, for the life of the store. The [`AuthMarker`](crate::policy::keys::AuthMarker) is written in the
//! commit of the first key (and backfilled at start-up when keys exist without it); expiring
//! or revoking keys never reopens the hub. While the hub is open (no key ever, or `off`) the
//! listener serves loopback callers only (`server::admission`).
//!
//! Refusals (401 here, 429 from the rate limits, 403/421 from the request admission) are
//! counted in a [`DenialTally`] and written to the audit log once per `A2A_AUDIT_DENIAL_WINDOW`
//! by the `denial-audit` worker (and at shutdown), one entry per reason, surface and caller.
//!
//! This module holds the shared state ([`SecurityState`]) and the facade types; the `Hub`
//! methods live in the parts: `authn` (credentials → principal), `authz` (roles, ownership,
//! access lists, grants on invoke), `keys` (key cache and lifecycle), `grants` (permission
//! requests and grants), `audit` (audit entries and the refusal tally), `quotas` (rate limits).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;

use tokio::sync::watch;

use super::Hub;
use crate::config::AuthMode;
use crate::model::Principal;
use crate::policy::AccessLists;
use crate::policy::audit::DenialTally;
use crate::policy::grants::PermissionRequestRecord;
use crate::policy::keys::ApiKeyRecord;
use crate::policy::ratelimit::Limiter;

mod audit;
mod authn;
mod authz;
mod grants;
mod keys;
mod quotas;

pub use grants::Permissions;

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
    /// Bumped whenever the key cache changes; stream [`KeyGuard`](super::KeyGuard)s watch it.
    pub(in crate::hub) key_epoch: watch::Sender<u64>,
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
            key_epoch: watch::channel(0).0,
        }
    }
}

/// A client address for the audit log (`unknown` when the transport has none).
fn address(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_canonical().to_string())
}

impl Hub {
    fn sec(&self) -> &SecurityState {
        &self.inner.security
    }
}
