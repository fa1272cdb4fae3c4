//! Host names and origins as the settings name them (`allowed_hosts`, `allowed_origins`,
//! URLs): parsing, default ports and the normalised `scheme://host:port` form the request
//! admission compares against.

/// One name of `allowed_hosts`: lower-case, without a trailing dot; `port: None` accepts any
/// port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostName {
    pub name: String,
    pub port: Option<u16>,
}

impl HostName {
    /// `name`, `name:port`, `[v6]`, `[v6]:port` or a bare IPv6 address; `None` when it is not
    /// a valid host (the same grammar as a `Host` header).
    pub fn parse(s: &str) -> Option<HostName> {
        let s = s.trim();
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Some(HostName {
                name: s.to_ascii_lowercase(),
                port: None,
            });
        }
        let authority: http::uri::Authority = s.parse().ok()?;
        if authority.as_str().contains('@') {
            return None;
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        Some(HostName {
            name,
            port: authority.port_u16(),
        })
    }

    /// Whether a request's Host (already parsed) is this entry.
    pub fn matches(&self, host: &HostName) -> bool {
        self.name == host.name && self.port.is_none_or(|p| Some(p) == host.port)
    }
}

/// The default port of a URL scheme (`None` when the scheme has none we know).
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// A browser origin (`scheme://host[:port]`, or `null`) in one canonical spelling: lower-case
/// scheme and host, IPv6 in brackets, the port always written when the scheme has a default
/// one. `None` when the text is not an origin (a path, a query, credentials, a wildcard).
pub fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("null") {
        return Some("null".into());
    }
    let s = s.strip_suffix('/').unwrap_or(s);
    let uri: http::Uri = s.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || authority.as_str().contains('*') {
        return None;
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return None;
    }
    let host = HostName::parse(authority.as_str())?;
    let shown = if host.name.contains(':') {
        format!("[{}]", host.name)
    } else {
        host.name
    };
    Some(match host.port.or(default_port(&scheme)) {
        Some(port) => format!("{scheme}://{shown}:{port}"),
        None => format!("{scheme}://{shown}"),
    })
}

/// Host part of an http(s) URL, without port or brackets.
pub(super) fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h.to_string());
    }
    Some(authority.split(':').next()?.to_string())
}
