//! The client's address: the TCP peer, or, when the peer is one of the configured
//! trusted proxies (`http.trusted_proxies`, the gateway's addresses), what
//! `X-Forwarded-For` says.
//!
//! The walk is the standard one: from the right-most `X-Forwarded-For` entry leftwards,
//! skip the entries that are trusted proxies themselves; the first one that is not is
//! the client. Entries left of it were written by the client and are never believed,
//! so a spoofed left-most entry never wins. From an untrusted peer the header is
//! ignored. Rate limits, the CAPTCHA's `remoteip` and the request logs all take the
//! address from here.

use actix_web::http::header::HeaderMap;
use actix_web::{web, HttpRequest};
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// `http.trusted_proxies`: networks (`10.0.0.0/8`, `2001:db8::/32`) or single
/// addresses whose `X-Forwarded-For` is believed. Empty (the default) trusts no one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDRs or bare addresses; the error names the setting and the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        format!(
                            "http.trusted_proxies: `{e}` is not an address or a network in CIDR form (10.0.0.0/8)"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with these headers.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?.to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            // A hop that wrote something unreadable ends the walk: what is left of it
            // cannot be attributed, and the last address known is the client.
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        Some(client)
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = crate::settings::string_list(d)?;
        Self::parse(&entries).map_err(serde::de::Error::custom)
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:443`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// The client's address of `req`, by the trusted proxies the app was given
/// ([`data`]); with none, the peer's.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    of(
        req.app_data::<web::Data<TrustedProxies>>(),
        req.peer_addr(),
        req.headers(),
    )
}

/// [`client_ip`] as text (empty when unknown: a request without a peer address, as
/// in a unit test).
pub fn client_address(req: &HttpRequest) -> String {
    client_ip(req).map(|ip| ip.to_string()).unwrap_or_default()
}

pub(crate) fn of(
    trusted: Option<&web::Data<TrustedProxies>>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer.map(|a| a.ip());
    match trusted {
        Some(t) => t.client_ip(peer, headers),
        None => peer.map(|ip| ip.to_canonical()),
    }
}

/// Mounts the trusted proxies of `settings` as app data, where [`client_ip`] and the
/// request logs find them.
pub fn data(settings: &crate::Settings) -> impl Fn(&mut web::ServiceConfig) + Clone + Send {
    let trusted = web::Data::new(settings.http.trusted_proxies.clone());
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(trusted.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).expect("header"),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            none.client_ip(Some(ip("192.0.2.1")), &h),
            Some(ip("192.0.2.1"))
        );
        let gw = TrustedProxies::parse(&["10.0.0.0/8"]).expect("parse");
        assert_eq!(
            gw.client_ip(Some(ip("192.0.2.1")), &h),
            Some(ip("192.0.2.1"))
        );
    }

    #[test]
    fn a_trusted_peer_gives_the_right_most_untrusted_entry() {
        let gw = TrustedProxies::parse(&["10.0.0.0/8", "2001:db8::/32"]).expect("parse");
        let peer = Some(ip("10.1.2.3"));
        // The client wrote the left-most entry itself: it never wins.
        let h = headers(&["198.51.100.66, 203.0.113.9"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("203.0.113.9")));
        // Proxies in the chain are skipped, across repeated headers too.
        let h = headers(&["198.51.100.66, 203.0.113.9", "10.9.9.9"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("203.0.113.9")));
        // Ports and IPv6, and IPv4-mapped addresses.
        let h = headers(&["[2001:db9::5]:443, 2001:db8::1"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("2001:db9::5")));
        let h = headers(&["203.0.113.9:5678"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("203.0.113.9")));
        let mapped = Some(ip("::ffff:10.1.2.3"));
        assert_eq!(gw.client_ip(mapped, &h), Some(ip("203.0.113.9")));
        // No header: the proxy itself; all trusted: the left-most.
        assert_eq!(gw.client_ip(peer, &HeaderMap::new()), Some(ip("10.1.2.3")));
        let h = headers(&["10.5.5.5, 10.6.6.6"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("10.5.5.5")));
        // Garbage ends the walk at the last address known.
        let h = headers(&["203.0.113.9, unknown"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("10.1.2.3")));
        let h = headers(&["unknown, 203.0.113.9"]);
        assert_eq!(gw.client_ip(peer, &h), Some(ip("203.0.113.9")));
    }

    #[test]
    fn bad_entries_are_refused_naming_the_setting() {
        let e = TrustedProxies::parse(&["10.0.0.0/33"]).expect_err("bad prefix");
        assert!(
            e.contains("http.trusted_proxies") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        assert!(TrustedProxies::parse(&["gateway"]).is_err());
        let one = TrustedProxies::parse(&["192.0.2.7"]).expect("a bare address");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
    }
}
