//! Per-caller rate limits: this replica's counters, or the shared counters in Redis when
//! several replicas run; a refusal is counted in metrics and tallied for the audit log.

use std::net::IpAddr;

use super::super::Hub;
use super::address;
use crate::metrics;
use crate::model::{Principal, PrincipalKind};
use crate::policy::audit::Denial;
use crate::policy::ratelimit::Refusal;

impl Hub {
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
}
