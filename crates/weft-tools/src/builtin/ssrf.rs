//! The `http` tool's guard against server-side request forgery: a template must not be able to
//! reach the machine's own services, the cloud metadata endpoint or the private network unless
//! the operator allow-listed the host in `weft.toml`.
//!
//! The check runs on the addresses the connection will actually use: IP literals are checked
//! before the request, and names are checked inside the client's DNS resolver, whose answer is
//! the one connected to. Checking a name and then letting the client resolve it again would
//! let a rebinding DNS server answer differently the second time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A target the guard refused, with the words a user needs to allow it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refused: {subject} {kind}; allow it with [http] allow = [\"{host}\"] in weft.toml")]
pub struct Refused {
    /// The host as written in the URL.
    pub host: String,
    pub ip: IpAddr,
    /// e.g. "a loopback address".
    pub kind: &'static str,
    subject: String,
}

impl Refused {
    fn new(host: &str, ip: IpAddr, kind: &'static str) -> Self {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let subject = if literal.parse::<IpAddr>().is_ok() {
            format!("{ip} is")
        } else {
            format!("{host} resolves to {ip},")
        };
        Refused {
            host: host.to_string(),
            ip,
            kind,
            subject,
        }
    }
}

/// Why an address is off limits, or `None` for a public address.
///
/// IPv6 forms that embed an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::/96` and 6to4 `2002::/16`) are judged by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (CGNAT) address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.is_broadcast() || a >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if first & 0xffc0 == 0xfec0 {
        Some("a private (site-local) address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    let low = Ipv4Addr::new(
        (segments[6] >> 8) as u8,
        segments[6] as u8,
        (segments[7] >> 8) as u8,
        segments[7] as u8,
    );
    match segments {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible; `::` and `::1` stay IPv6).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(low),
        // NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 carries the IPv4 address in bits 16..48.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The operator's allow-list: `host` or `host:port` entries from `[http] allow`.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<String>,
}

impl AllowList {
    pub fn new(entries: &[String]) -> Self {
        AllowList {
            entries: entries
                .iter()
                .map(|entry| entry.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `host` (as in a URL, IPv6 in brackets) on `port` may bypass the guard.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let with_port = format!("{host}:{port}");
        self.entries
            .iter()
            .any(|entry| *entry == host || entry == bare || *entry == with_port)
    }
}

/// Checks an address that `host` stands for.
pub fn check(host: &str, ip: IpAddr) -> Result<(), Refused> {
    match classify(ip) {
        Some(kind) => Err(Refused::new(host, ip, kind)),
        None => Ok(()),
    }
}

/// Why [`resolve`] gave no address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("cannot resolve {host}: {source}")]
    Lookup {
        host: String,
        source: std::io::Error,
    },
}

/// The addresses `host` (a name or an IP literal, IPv6 with or without brackets) stands for on
/// `port`, refused as a whole when any of them is off limits. This one answer is what the
/// caller must connect to: resolving the name again would let a rebinding DNS server answer
/// differently the second time.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|source| ResolveError::Lookup {
            host: host.to_string(),
            source,
        })?
        .collect();
    for addr in &addrs {
        check(host, addr.ip())?;
    }
    Ok(addrs)
}

/// A DNS resolver that refuses names resolving to any off-limits address, so the client only
/// ever connects to addresses that passed the check.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            // The error types stay as they were: `http` finds a `Refused` in the chain.
            match resolve(&host, 0).await {
                Ok(addrs) => {
                    let addrs: Addrs = Box::new(addrs.into_iter());
                    Ok(addrs)
                }
                Err(ResolveError::Refused(refused)) => Err(refused.into()),
                Err(ResolveError::Lookup { source, .. }) => Err(source.into()),
            }
        })
    }
}
