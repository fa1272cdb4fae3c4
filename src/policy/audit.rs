//! The audit record: who did what, to what, through which door, and how it ended.
//!
//! Entries are keyed by a time-ordered id (UUIDv7), so the audit table scans in time order and
//! retention can delete from the front. The hub writes an entry for every state-changing
//! operation and every authorisation denial, usually in the same commit as the change itself.
//! Refusals at the front door (401, 429, admission 403/421) are summarised instead: a
//! [`DenialTally`] counts them per reason, surface and caller, and the hub writes one entry
//! per window with the count, so a flood cannot fill the disk.

use serde::{Deserialize, Serialize};

use crate::model::{Principal, new_id, now_ms, rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: String,
    pub ts: i64,
    pub principal: String,
    pub key_id: Option<String>,
    pub role: String,
    pub surface: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl AuditRecord {
    pub fn new(p: &Principal, action: &str, target: &str, outcome: Outcome, detail: &str) -> Self {
        Self {
            id: new_id(),
            ts: now_ms(),
            principal: p.id.clone(),
            key_id: p.key_id.clone(),
            role: p.role.as_str().to_string(),
            surface: p.surface.as_str().to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            detail: detail.chars().take(500).collect(),
        }
    }
}

/// One refused request, as the request admission and authentication see it.
#[derive(Debug, Clone)]
pub struct Denial {
    /// Audit action: `http.unauthenticated` (401), `http.rate_limited` (429) or
    /// `http.refused` (403/421 from the request admission).
    pub action: &'static str,
    /// Why, in one word (`missing`, `invalid`, `expired`, `revoked`, `per_key`,
    /// `per_address`, `host`, `origin`, `loopback_only`).
    pub reason: &'static str,
    /// `mcp`, `rest`, `a2a`, `stream` or `ops`.
    pub surface: &'static str,
    /// Whose: `key:<id>` when a key is known, else the client address (or `unknown`).
    pub subject: String,
    /// Role of the key when one is known (`none` otherwise).
    pub role: &'static str,
    /// The message the caller got.
    pub message: String,
}

/// Refusals counted per (action, reason, surface, subject) until the next flush, so a flood
/// becomes a bounded number of audit entries with counts instead of one entry per request.
///
/// At most `cap` distinct subjects are tracked per window; refusals of further subjects are
/// counted together under the subject `(other callers)`.
pub struct DenialTally {
    cap: usize,
    entries: std::collections::BTreeMap<(&'static str, &'static str, &'static str, String), Tally>,
}

struct Tally {
    count: u64,
    first: i64,
    last: i64,
    role: &'static str,
    message: String,
}

/// Subject under which refusals beyond the tally's cap are counted.
pub const OTHER_CALLERS: &str = "(other callers)";

impl DenialTally {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            entries: Default::default(),
        }
    }

    pub fn add(&mut self, d: Denial, now: i64) {
        let mut key = (d.action, d.reason, d.surface, d.subject);
        if !self.entries.contains_key(&key) && self.entries.len() >= self.cap {
            key.3 = OTHER_CALLERS.to_string();
        }
        let t = self.entries.entry(key).or_insert_with(|| Tally {
            count: 0,
            first: now,
            last: now,
            role: d.role,
            message: d.message,
        });
        t.count += 1;
        t.last = now;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One audit record per tallied key, and a fresh window.
    pub fn drain(&mut self) -> Vec<AuditRecord> {
        std::mem::take(&mut self.entries)
            .into_iter()
            .map(|((action, reason, surface, subject), t)| {
                let key_id = subject.strip_prefix("key:").map(str::to_string);
                AuditRecord {
                    id: new_id(),
                    ts: now_ms(),
                    principal: if key_id.is_some() {
                        subject.clone()
                    } else {
                        "anonymous".into()
                    },
                    key_id,
                    role: t.role.to_string(),
                    surface: surface.to_string(),
                    action: action.to_string(),
                    target: subject,
                    outcome: Outcome::Denied,
                    detail: format!(
                        "count={} reason={reason} first={} last={}: {}",
                        t.count,
                        rfc3339(t.first),
                        rfc3339(t.last),
                        t.message
                    )
                    .chars()
                    .take(500)
                    .collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denial(subject: &str) -> Denial {
        Denial {
            action: "http.unauthenticated",
            reason: "missing",
            surface: "rest",
            subject: subject.into(),
            role: "none",
            message: "an API key is required".into(),
        }
    }

    #[test]
    fn a_flood_becomes_one_counted_entry_per_subject_and_the_rest_is_capped() {
        let mut t = DenialTally::new(2);
        for _ in 0..1000 {
            t.add(denial("10.0.0.1"), 1);
        }
        t.add(denial("key:abc"), 2);
        for i in 0..50 {
            t.add(denial(&format!("10.0.1.{i}")), 3);
        }
        let recs = t.drain();
        assert_eq!(recs.len(), 3, "{recs:?}");
        let by = |s: &str| recs.iter().find(|r| r.target == s).unwrap();
        assert!(
            by("10.0.0.1")
                .detail
                .starts_with("count=1000 reason=missing")
        );
        assert_eq!(by("key:abc").key_id.as_deref(), Some("abc"));
        assert!(by(OTHER_CALLERS).detail.starts_with("count=50 "));
        assert!(recs.iter().all(|r| r.outcome == Outcome::Denied));
        assert!(t.is_empty() && t.drain().is_empty());
    }
}
