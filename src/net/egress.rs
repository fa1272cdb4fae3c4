//! Where the hub's outgoing requests may go: a guard against server-side request forgery.
//!
//! Every outbound fetch the hub makes on behalf of someone goes through this policy: A2A push
//! notification webhooks (URLs come from any caller allowed to act on a task), Agent Card
//! reads (`deploy_agent {cardUrl}`, `POST /api/v1/agents/import-card`, `a2a-mcp agents
//! import-card`) and every call of an `a2a` agent (its card, and the JSON-RPC endpoint the
//! card names). Without it an API key could make the hub reach its own ops port, the cloud
//! metadata service (`169.254.169.254`) or any service on the internal network. By default a
//! destination must be a public address: loopback, private (RFC 1918, IPv6 unique-local),
//! link-local, carrier-grade NAT, multicast, broadcast, unspecified and other special-purpose
//! ranges are refused, unless `egress_allowed_networks` (`A2A_EGRESS_ALLOWED_NETWORKS`, old
//! name `A2A_PUSH_ALLOWED_NETWORKS`) lists a network that contains the address. Agents from
//! catalog files are no exception: an operator whose agents live on internal addresses lists
//! those networks.
//!
//! The check runs wherever an address appears: when a URL is given (an IP-literal host, or
//! what a host name resolves to then, so a client hears about it at once), before every
//! request (IP literals, which never reach a resolver: [`crate::net::http_client::HttpClient`]
//! checks them itself), and inside the connector's resolver on every address a name resolves
//! to at connect time, so a name re-pointed at an internal address later (DNS rebinding) is
//! refused too. The CLI talking to its own server does not go through the policy.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use ipnet::IpNet;

/// The setting that widens the policy, named in every refusal.
pub const SETTING: &str = "A2A_EGRESS_ALLOWED_NETWORKS";

/// Which destination addresses outgoing requests may reach.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Networks reachable even though they are internal.
    allowed: Vec<IpNet>,
}

impl EgressPolicy {
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Whether `ip` may be reached: a public address, or one inside an allowed network.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !is_internal(ip) || self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// Checks the host of a URL when it is an IP literal (those never reach the resolver);
    /// a host name is checked when it is resolved. The error says what was refused and how
    /// to allow it.
    pub fn check_url(&self, uri: &http::Uri) -> Result<(), String> {
        match literal(uri) {
            Some(ip) if !self.permits(ip) => Err(refusal(uri.host().unwrap_or_default(), &[ip])),
            _ => Ok(()),
        }
    }

    /// [`check_url`](Self::check_url), and for a host name, whether it resolves now to any
    /// permitted address, so a client setting a webhook or deploying an agent hears at once
    /// that it points inside. A name that does not resolve (yet) passes: every request
    /// resolves it again, through the guarded resolver, and reports a refusal there.
    pub async fn check_url_resolved(&self, uri: &http::Uri) -> Result<(), String> {
        self.check_url(uri)?;
        let Some(host) = uri.host() else {
            return Ok(());
        };
        if literal(uri).is_some() {
            return Ok(());
        }
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let lookup = tokio::net::lookup_host((host, port));
        let Ok(Ok(addrs)) = tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await else {
            return Ok(());
        };
        let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
        if !ips.is_empty() && !ips.iter().any(|ip| self.permits(*ip)) {
            return Err(refusal(host, &ips));
        }
        Ok(())
    }
}

/// How long a destination's name may take to resolve when it is given.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The address of an IP-literal URL host (`http://10.0.0.1/`, `http://[::1]/`).
fn literal(uri: &http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn refusal(host: &str, ips: &[IpAddr]) -> String {
    let list: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
    format!(
        "{host} is an internal address ({}), which the hub's outgoing requests (Agent Cards, a2a agents, push notifications) may not reach; an operator can allow its network with {SETTING} (e.g. 10.0.0.0/8 or 127.0.0.1)",
        list.join(", ")
    )
}

/// Loopback, private, link-local, shared, multicast, broadcast, unspecified, documentation
/// and reserved ranges (IANA special-purpose registries), for v4 and v6 (with embedded v4).
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => v4_internal(a),
        IpAddr::V6(a) => v6_internal(a),
    }
}

fn v4_internal(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o0 == 0 // "this network"
        || (o0 == 100 && (64..128).contains(&o1)) // shared address space (CGNAT)
        || (o0 == 192 && o1 == 0 && o2 == 0) // IETF protocol assignments
        || (o0 == 198 && (o1 == 18 || o1 == 19)) // benchmarking
        || o0 >= 240 // reserved
}

fn v6_internal(a: Ipv6Addr) -> bool {
    let s = a.segments();
    if let Some(v4) = a.to_ipv4_mapped() {
        return v4_internal(v4);
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return v4_internal(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return v4_internal(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated)
}

/// The DNS resolver of outgoing connections: the system resolver, and with a policy, only
/// the permitted addresses of a name (none permitted: the connection is refused).
#[derive(Clone)]
pub struct GuardedResolver {
    inner: GaiResolver,
    policy: Option<Arc<EgressPolicy>>,
}

impl GuardedResolver {
    pub fn new(policy: Option<Arc<EgressPolicy>>) -> Self {
        Self {
            inner: GaiResolver::new(),
            policy,
        }
    }
}

type Resolving = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolving = self.inner.call(name.clone());
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = resolving.await?.collect();
            let Some(policy) = policy else {
                return Ok(addrs.into_iter());
            };
            let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
                addrs.into_iter().partition(|a| policy.permits(a.ip()));
            if ok.is_empty() && !refused.is_empty() {
                let ips: Vec<IpAddr> = refused.iter().map(|a| a.ip()).collect();
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    refusal(name.as_str(), &ips),
                ));
            }
            Ok(ok.into_iter())
        })
    }
}

/// Parses `A2A_EGRESS_ALLOWED_NETWORKS` entries: CIDR networks or single addresses.
pub fn parse_networks(items: &[String]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not a network (10.0.0.0/8) or an address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_public_ones_pass() {
        let p = EgressPolicy::default();
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!p.permits(ip(s)), "{s} should be refused");
        }
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(p.permits(ip(s)), "{s} should pass");
        }
    }

    #[test]
    fn allowed_networks_open_internal_ranges() {
        let nets = parse_networks(&["10.0.0.0/8".into(), "127.0.0.1".into()]).unwrap();
        let p = EgressPolicy::new(nets);
        assert!(p.permits(ip("10.9.8.7")));
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:10.0.0.1")));
        assert!(!p.permits(ip("127.0.0.2")));
        assert!(!p.permits(ip("192.168.0.1")));
        assert!(parse_networks(&["10.0.0.0/33".into()]).is_err());
        assert!(parse_networks(&["example.com".into()]).is_err());
    }

    #[tokio::test]
    async fn urls_are_checked_literally_and_by_what_their_names_resolve_to() {
        let p = EgressPolicy::default();
        let u = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(p.check_url(&u("http://127.0.0.1:9/hook")).is_err());
        assert!(p.check_url(&u("http://[::1]:9/hook")).is_err());
        let e = p.check_url(&u("http://169.254.169.254/")).unwrap_err();
        assert!(e.contains(SETTING), "{e}");
        assert!(p.check_url(&u("https://8.8.8.8/x")).is_ok());
        // Names are left to resolution.
        assert!(p.check_url(&u("http://localhost:9/hook")).is_ok());
        let e = p
            .check_url_resolved(&u("http://localhost:9/hook"))
            .await
            .unwrap_err();
        assert!(e.contains("localhost") && e.contains("127.0.0.1"), "{e}");
        // A name that does not resolve here passes (delivery checks it again).
        assert!(
            p.check_url_resolved(&u("http://no-such-host.invalid/x"))
                .await
                .is_ok()
        );
        let open = EgressPolicy::new(parse_networks(&["127.0.0.0/8".into()]).unwrap());
        assert!(
            open.check_url_resolved(&u("http://localhost:9/"))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        use tower_service::Service;
        let name: Name = "localhost".parse().unwrap();
        let mut guarded = GuardedResolver::new(Some(Arc::new(EgressPolicy::default())));
        let e = guarded.call(name.clone()).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains(SETTING), "{e}");
        let mut open = GuardedResolver::new(None);
        let addrs: Vec<SocketAddr> = open.call(name).await.unwrap().collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
