//! The client's address, as rate limits, lockouts and audit events see it.
//!
//! It is the socket's peer address, unless that peer is a proxy listed in
//! `TRUSTED_PROXIES` (CIDRs): then `Forwarded` (RFC 7239) or, without it,
//! `X-Forwarded-For` is read from the right, skipping hops that are trusted
//! proxies themselves, and the right-most untrusted hop is the client
//! (RFC 9700 §4.13). Anything left of it was written by the client and is
//! ignored, so a spoofed header from an untrusted peer changes nothing, and a
//! spoofed one relayed by a trusted proxy changes nothing either.
//!
//! [`ClientIp::key`] is the rate-limit key: an IPv4 address, or the /64 of an
//! IPv6 address (one host commonly holds a whole /64, so counting single
//! IPv6 addresses would give an attacker 2^64 buckets).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, HeaderName, StatusCode};
use ipnet::IpNet;

const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// At most this many hops are read from a forwarding header.
const MAX_HOPS: usize = 32;

/// The proxies whose forwarding headers are believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses a comma-separated list of CIDRs or single addresses.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        crate::config::split_list(value)
            .iter()
            .map(|item| {
                IpNet::from_str(item)
                    .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!("TRUSTED_PROXIES: {item:?} is not an address or a CIDR")
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = if headers.contains_key(FORWARDED) {
            forwarded_hops(headers)
        } else {
            x_forwarded_for_hops(headers)
        };
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            // A hop that is no address (`unknown`, an obfuscated name) ends
            // the walk: the last trusted hop is the best we know.
            let Some(ip) = hop else { break };
            client = canonical(*ip);
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses count as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Every `X-Forwarded-For` value, left to right, across header lines.
fn x_forwarded_for_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    header_items(headers, &X_FORWARDED_FOR)
        .map(|item| parse_node(item.trim_matches('"')))
        .collect()
}

/// The `for=` of every `Forwarded` element, left to right (RFC 7239 §4).
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    header_items(headers, &FORWARDED)
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_node(value.trim().trim_matches('"')))
        })
        .collect()
}

fn header_items<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl DoubleEndedIterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .collect::<Vec<_>>()
        .into_iter()
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(node) {
        return Some(ip);
    }
    if let Ok(socket) = SocketAddr::from_str(node) {
        return Some(socket.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| Ipv6Addr::from_str(inner).ok())
        .map(IpAddr::V6)
}

/// The client address of a request, put there by [`layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The rate-limit key: the IPv4 address, or the IPv6 /64.
    pub fn key(&self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Middleware: works out the client address once per request and stores it
/// as a [`ClientIp`] extension (and in the access line's identity slot,
/// `crate::access`). Requests that did not come through
/// `crate::serve` (no `ConnectInfo`) count as from `0.0.0.0`.
pub async fn layer(
    State(proxies): State<std::sync::Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    resolve(&proxies, &mut request);
    next.run(request).await
}

/// What [`layer`] does before the route runs (also done by
/// `crate::http::harden_with_client_ip`, without a layer of its own).
pub fn resolve(proxies: &TrustedProxies, request: &mut Request) {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let ip = proxies.client_ip(peer, request.headers());
    request.extensions_mut().insert(ClientIp(ip));
    // For the access line (`crate::access`).
    if let Some(identity) = request.extensions().get::<crate::access::AccessIdentity>() {
        identity.set_client_ip(ip);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The request's `User-Agent` for an audit event: at most 200 characters,
/// control and bidi characters dropped (it is the client's word).
pub fn user_agent(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::USER_AGENT)?.to_str().ok()?;
    Some(
        value
            .chars()
            .filter(|c| !c.is_control() && !crate::text::is_bidi_override(*c))
            .take(200)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append((*name).clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn client_ip_ignores_forwarding_headers_from_untrusted_peer() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let spoofed = headers(&[
            (&X_FORWARDED_FOR, "203.0.113.9"),
            (&FORWARDED, "for=1.2.3.4"),
        ]);
        assert_eq!(
            proxies.client_ip(ip("198.51.100.7"), &spoofed),
            ip("198.51.100.7")
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.0.0.1"), &spoofed), ip("10.0.0.1"));
    }

    #[test]
    fn client_ip_takes_rightmost_untrusted_hop_behind_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        // The client wrote "1.1.1.1" itself; the proxies appended the rest.
        let h = headers(&[(&X_FORWARDED_FOR, "1.1.1.1, 203.0.113.9, 192.168.1.1")]);
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // Several header lines are one list.
        let h = headers(&[
            (&X_FORWARDED_FOR, "1.1.1.1"),
            (&X_FORWARDED_FOR, "203.0.113.9:4711"),
        ]);
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // Every hop trusted: the left-most one.
        let h = headers(&[(&X_FORWARDED_FOR, "10.9.9.9")]);
        assert_eq!(proxies.client_ip(ip("10.1.2.3"), &h), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn client_ip_reads_forwarded_before_x_forwarded_for() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = headers(&[
            (
                &FORWARDED,
                r#"for=1.1.1.1;proto=https, for="[2001:db8::7]:4711";by=10.0.0.2"#,
            ),
            (&X_FORWARDED_FOR, "198.51.100.1"),
        ]);
        assert_eq!(proxies.client_ip(ip("10.0.0.2"), &h), ip("2001:db8::7"));
        // `unknown` stops the walk at the last trusted hop.
        let h = headers(&[(&FORWARDED, "for=1.1.1.1, for=unknown")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn client_ip_treats_ipv4_mapped_peer_as_ipv4() {
        let proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        let h = headers(&[(&X_FORWARDED_FOR, "203.0.113.5")]);
        assert_eq!(
            proxies.client_ip(ip("::ffff:127.0.0.1"), &h),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn key_groups_ipv6_by_64_and_keeps_ipv4() {
        assert_eq!(ClientIp(ip("203.0.113.5")).key(), "203.0.113.5");
        assert_eq!(
            ClientIp(ip("2001:db8:1:2:aaaa::1")).key(),
            ClientIp(ip("2001:db8:1:2:bbbb::9")).key()
        );
        assert_ne!(
            ClientIp(ip("2001:db8:1:2::1")).key(),
            ClientIp(ip("2001:db8:1:3::1")).key()
        );
    }

    #[test]
    fn parse_refuses_garbage() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.example").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
