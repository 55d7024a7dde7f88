//! Where deliveries may go: only to global unicast addresses, unless
//! `webhooks.allow_private` lists the range.
//!
//! Without this a webhook is a server-side request forgery: aimed at
//! `127.0.0.1`, `169.254.169.254` or Courier's own API, its attempts (and the
//! response excerpts readable over the API) reach what only the server should.
//! Literal addresses are refused at registration; names are resolved on every
//! attempt by [`GuardedResolver`], the HTTP client's only resolver, which
//! hands the connector nothing but the addresses it checked, so a name that
//! rebinds between a check and the connection can't slip through.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use thiserror::Error;

/// Ranges of non-global addresses deliveries may reach anyway
/// (`webhooks.allow_private`, e.g. `["127.0.0.1/32", "::1/128"]`). Empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList(Vec<IpNet>);

/// An `allow_private` entry that is not a CIDR range or an address.
#[derive(Debug, Error)]
#[error("{0:?} is not an address range such as 10.0.0.0/8 or ::1/128")]
pub struct BadRange(pub String);

impl AllowList {
    /// Parses ranges (`10.0.0.0/8`) or single addresses (`127.0.0.1`).
    pub fn parse<S: AsRef<str>>(ranges: &[S]) -> Result<AllowList, BadRange> {
        ranges
            .iter()
            .map(|r| r.as_ref().trim())
            .filter(|r| !r.is_empty())
            .map(|r| {
                IpNet::from_str(r)
                    .or_else(|_| IpAddr::from_str(r).map(IpNet::from))
                    .map_err(|_| BadRange(r.to_string()))
            })
            .collect::<Result<_, _>>()
            .map(AllowList)
    }

    fn permits(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Why a destination was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DestinationError {
    /// The host is (or resolves to) an address that is not global.
    #[error("{host} is {address}, a non-global address ({kind}); list it in webhooks.allow_private to allow it")]
    NotGlobal {
        /// The host as written in the URL.
        host: String,
        /// The offending address.
        address: IpAddr,
        /// Which kind of range it is in.
        kind: &'static str,
    },
    /// The host's name did not resolve.
    #[error("{host} did not resolve: {reason}")]
    Unresolved {
        /// The host as written in the URL.
        host: String,
        /// Why.
        reason: String,
    },
}

/// The address itself when `ip` is an IPv4 address written as IPv6
/// (`::ffff:a.b.c.d`), so it is judged (and allowed) as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Which non-global range `ip` is in, if any.
pub fn non_global(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_global_v4(v4),
        IpAddr::V6(v6) => non_global_v6(v6),
    }
}

fn non_global_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "this network",
        (127, _, _) => "loopback",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared address space (CGNAT)",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "6to4 relay anycast",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn non_global_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    Some(match s {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        // IPv4-compatible (deprecated) and NAT64: judged by the IPv4 address they carry.
        [0, 0, 0, 0, 0, 0, hi, lo] => return non_global_v4(embedded(hi, lo)).or(Some("IPv4-compatible")),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return non_global_v4(embedded(hi, lo)),
        [0x64, 0xff9b, 1, ..] => "NAT64 local use",
        [0x100, 0, 0, 0, ..] => "discard-only",
        // 6to4 carries an IPv4 address in its prefix.
        [0x2002, hi, lo, ..] => return non_global_v4(embedded(hi, lo)),
        [0x2001, 0xdb8, ..] => "documentation",
        // Teredo (2001::/32) and the rest of the IETF protocol assignments.
        [0x2001, 0..=0x1ff, ..] => "IETF protocol assignments",
        [0x3fff, 0..=0x0fff, ..] => "documentation",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique local",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// Refuses `ip` (reached as `host`) unless it is global or allowed.
pub fn check(host: &str, ip: IpAddr, allow: &AllowList) -> Result<(), DestinationError> {
    match non_global(ip) {
        Some(_) if allow.permits(ip) || allow.permits(canonical(ip)) => Ok(()),
        Some(kind) => Err(DestinationError::NotGlobal {
            host: host.to_string(),
            address: ip,
            kind,
        }),
        None => Ok(()),
    }
}

/// The literal address a URL's host is, if it is one (the URL parser has
/// already turned `2130706433`, `0x7f.1` and the like into dotted form).
pub fn literal_host(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse().ok()
}

/// Resolves `host` and checks every address: all of them, or none.
pub async fn resolve(host: &str, allow: &AllowList) -> Result<Vec<SocketAddr>, DestinationError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| DestinationError::Unresolved {
            host: host.to_string(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DestinationError::Unresolved {
            host: host.to_string(),
            reason: "no addresses".into(),
        });
    }
    // One bad address refuses the name: a name mixing public and private
    // answers is exactly what a rebinding attacker serves.
    for addr in &addrs {
        check(host, addr.ip(), allow)?;
    }
    Ok(addrs)
}

/// The delivery client's resolver: resolves each name when a connection is
/// made and answers only with the addresses it checked.
pub(crate) struct GuardedResolver {
    pub(crate) allow: Arc<AllowList>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host, &allow).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `url` without its userinfo (`https://user:pass@host/` → `https://***@host/`),
/// for error texts and logs. Text that doesn't parse as a URL is cut at its
/// last `@` before the path, so credentials are dropped either way.
pub fn redact(url: &str) -> String {
    if let Ok(mut parsed) = reqwest::Url::parse(url) {
        if parsed.username().is_empty() && parsed.password().is_none() {
            return url.to_string();
        }
        if parsed.set_username("***").is_ok() && parsed.set_password(None).is_ok() {
            return parsed.to_string();
        }
    }
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!("{}***@{}", &url[..authority_start], &url[authority_start + at + 1..]),
        None => url.to_string(),
    }
}

/// A reqwest error as text: without its URL (which may carry credentials),
/// with its causes, and naming the refused destination if that was the cause
/// (then the flag is true).
pub(crate) fn describe(error: reqwest::Error) -> (String, bool) {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<DestinationError>() {
            // A name that didn't resolve may resolve later: only a refusal is final.
            return (
                refused.to_string(),
                matches!(refused, DestinationError::NotGlobal { .. }),
            );
        }
        source = cause.source();
    }
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    (text, false)
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ranges: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&ranges.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str, allow: &AllowList) -> bool {
        let url = reqwest::Url::parse(url).unwrap();
        let ip = literal_host(&url).expect("a literal");
        check("h", ip, allow).is_err()
    }

    #[test]
    fn every_non_global_form_is_refused() {
        let none = AllowList::default();
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://192.0.2.1/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://[2001::1]/",
        ] {
            assert!(refused(url, &none), "{url} should be refused");
        }
        for url in [
            "http://93.184.215.14/",
            "http://8.8.8.8/",
            "http://172.32.0.1/",
            "http://[2606:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
        ] {
            assert!(!refused(url, &none), "{url} is global");
        }
    }

    #[test]
    fn the_allow_list_opens_ranges_and_mapped_forms() {
        let allow = AllowList::parse(&["127.0.0.1/32", "::1", "10.0.0.0/8"]).unwrap();
        assert!(!refused("http://127.0.0.1/", &allow));
        assert!(!refused("http://[::ffff:127.0.0.1]/", &allow));
        assert!(!refused("http://[::1]/", &allow));
        assert!(!refused("http://10.9.9.9/", &allow));
        assert!(refused("http://127.0.0.2/", &allow));
        assert!(refused("http://169.254.169.254/", &allow));
        assert!(AllowList::parse(&["nope"]).is_err());
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact("https://user:pass@example.com/x"), "https://***@example.com/x");
        assert_eq!(redact("https://example.com/x"), "https://example.com/x");
        assert_eq!(redact("ht!tp://user:pass@host/x@y"), "ht!tp://***@host/x@y");
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused() {
        let err = resolve("localhost", &AllowList::default()).await.unwrap_err();
        assert!(matches!(err, DestinationError::NotGlobal { .. }), "{err}");
        let allow = AllowList::parse(&["127.0.0.0/8", "::1/128"]).unwrap();
        assert!(!resolve("localhost", &allow).await.unwrap().is_empty());
    }
}
