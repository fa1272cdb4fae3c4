//! Rate limits (governor, GCRA): per credential with a quota per role, and per client address.
//!
//! Configured by one setting (`A2A_RATE_LIMITS`), e.g. `default=100/s,admin=off,ip=1000/s`:
//! names `default` (any role without its own entry), `admin`, `operator`, `invoker`, `viewer`,
//! `ip`; rates `N/s`, `N/m` or `off`. The burst equals one period's worth. Loopback addresses are
//! not limited per address (a local proxy or load test would otherwise be throttled as one
//! client) unless `ip_loopback=on` is given.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as Gcra};

use crate::model::{Principal, PrincipalKind, Role};

/// Parsed limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub per_role: HashMap<Role, Option<Quota>>,
    pub default: Option<Quota>,
    pub per_ip: Option<Quota>,
    pub ip_loopback: bool,
}

impl Default for Limits {
    fn default() -> Self {
        parse(DEFAULT).unwrap_or(Limits {
            per_role: HashMap::new(),
            default: None,
            per_ip: None,
            ip_loopback: false,
        })
    }
}

/// The default of `A2A_RATE_LIMITS`.
pub const DEFAULT: &str = "default=100/s,admin=1000/s,ip=1000/s";

fn quota(rate: &str) -> Result<Option<Quota>, String> {
    let rate = rate.trim();
    if rate == "off" || rate == "0" {
        return Ok(None);
    }
    let (n, per) = rate
        .split_once('/')
        .ok_or_else(|| format!("{rate:?}: expected N/s, N/m or off"))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{rate:?}: {n:?} is not a whole number"))?;
    let Some(n) = NonZeroU32::new(n) else {
        return Ok(None);
    };
    match per.trim() {
        "s" | "sec" | "second" => Ok(Some(Quota::per_second(n))),
        "m" | "min" | "minute" => Ok(Some(Quota::per_minute(n))),
        other => Err(format!("{rate:?}: unknown period {other:?}; use s or m")),
    }
}

/// Parses `A2A_RATE_LIMITS`.
pub fn parse(spec: &str) -> Result<Limits, String> {
    let mut limits = Limits {
        per_role: HashMap::new(),
        default: None,
        per_ip: None,
        ip_loopback: false,
    };
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, rate) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected name=rate"))?;
        let name = name.trim();
        match name {
            "default" => limits.default = quota(rate)?,
            "ip" => limits.per_ip = quota(rate)?,
            "ip_loopback" => limits.ip_loopback = matches!(rate.trim(), "on" | "true" | "1"),
            role => {
                let role: Role = role.parse()?;
                limits.per_role.insert(role, quota(rate)?);
            }
        }
    }
    Ok(limits)
}

/// Why a call was refused, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after: Duration,
    /// Which limit: the credential's or the address's.
    pub by_address: bool,
}

/// The rate limiter of one process.
pub struct Limiter {
    limits: Limits,
    per_role: HashMap<Role, DefaultKeyedRateLimiter<String>>,
    default: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        let per_role = limits
            .per_role
            .iter()
            .filter_map(|(r, q)| q.map(|q| (*r, Gcra::keyed(q))))
            .collect();
        Self {
            default: limits.default.map(Gcra::keyed),
            per_ip: limits.per_ip.map(Gcra::keyed),
            per_role,
            limits,
            clock: DefaultClock::default(),
        }
    }

    fn limiter_for(&self, role: Role) -> Option<&DefaultKeyedRateLimiter<String>> {
        match self.limits.per_role.get(&role) {
            Some(None) => None,
            Some(Some(_)) => self.per_role.get(&role),
            None => self.default.as_ref(),
        }
    }

    /// Checks one call. Anonymous and local callers are limited per address only.
    pub fn check(&self, p: &Principal, addr: Option<IpAddr>) -> Result<(), Refusal> {
        if let (Some(ip_limiter), Some(ip)) = (&self.per_ip, addr)
            && (self.limits.ip_loopback || !ip.is_loopback())
            && let Err(not_until) = ip_limiter.check_key(&ip)
        {
            return Err(Refusal {
                retry_after: not_until.wait_time_from(self.clock.now()),
                by_address: true,
            });
        }
        if matches!(p.kind, PrincipalKind::Anonymous | PrincipalKind::Local) {
            return Ok(());
        }
        if let Some(l) = self.limiter_for(p.role)
            && let Err(not_until) = l.check_key(&p.id)
        {
            return Err(Refusal {
                retry_after: not_until.wait_time_from(self.clock.now()),
                by_address: false,
            });
        }
        Ok(())
    }

    /// The limits that apply to one call, as (counter key, interval between calls, burst,
    /// by address): what a limiter shared by several replicas must check.
    pub fn plan(&self, p: &Principal, addr: Option<IpAddr>) -> Vec<(String, Duration, u32, bool)> {
        let mut out = Vec::new();
        if let (Some(q), Some(ip)) = (self.limits.per_ip, addr)
            && (self.limits.ip_loopback || !ip.is_loopback())
        {
            out.push((
                format!("ip:{ip}"),
                q.replenish_interval(),
                q.burst_size().get(),
                true,
            ));
        }
        if matches!(p.kind, PrincipalKind::Anonymous | PrincipalKind::Local) {
            return out;
        }
        let q = match self.limits.per_role.get(&p.role) {
            Some(q) => *q,
            None => self.limits.default,
        };
        if let Some(q) = q {
            out.push((
                format!("p:{}", p.id),
                q.replenish_interval(),
                q.burst_size().get(),
                false,
            ));
        }
        out
    }

    /// Forgets idle keys (bounded memory); called by the sweeper.
    pub fn shrink(&self) {
        for l in self.per_role.values() {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.default {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setting() {
        let l = parse("default=5/s,admin=off,viewer=10/m,ip=100/s").unwrap();
        assert!(l.default.is_some());
        assert_eq!(l.per_role.get(&Role::Admin), Some(&None));
        assert!(l.per_role.get(&Role::Viewer).unwrap().is_some());
        assert!(l.per_ip.is_some());
        assert!(parse("default=fast").is_err());
        assert!(parse("root=1/s").is_err());
        assert!(parse(DEFAULT).is_ok());
    }

    #[test]
    fn a_burst_over_the_limit_is_refused_per_key() {
        let limiter = Limiter::new(parse("default=3/s").unwrap());
        let a = Principal::new("key:a", Role::Invoker).with_key("a");
        let b = Principal::new("key:b", Role::Invoker).with_key("b");
        for _ in 0..3 {
            assert!(limiter.check(&a, None).is_ok());
        }
        let refused = limiter.check(&a, None).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        assert!(
            limiter.check(&b, None).is_ok(),
            "other keys are not affected"
        );
    }
}
