//! The outbound-address guard (DESIGN §7): where partway may connect on a client's
//! behalf. It applies to every URL a client supplies (a bring-your-own `s3Endpoint`,
//! later webhook URLs); storage the operator configured is trusted and never checked.
//!
//! - [`forbidden`] classifies an address, pure: loopback, private, link-local (cloud
//!   metadata included), carrier-grade NAT, unique-local, multicast, unspecified,
//!   broadcast, documentation and benchmark ranges, and the IPv4-mapped/compatible IPv6
//!   forms of those.
//! - [`AllowList`] (`PARTWAY_ALLOWED_ENDPOINTS`) opens exceptions: CIDRs, and host names
//!   (exact, case-insensitive, optionally `host:port`).
//! - [`OutboundMode`] (`PARTWAY_OUTBOUND`): `guarded` refuses forbidden addresses;
//!   `allowlist` admits only what the allow list names, and no target without an
//!   endpoint (public AWS or R2) at all.
//! - [`OutboundPolicy::check`] checks a URL before anything is stored, resolving its host
//!   name through a [`Resolver`]; [`OutboundPolicy::resolve`] is the same rule at connect
//!   time (the S3 client of a bring-your-own target resolves through it), so an answer
//!   that changes after the check (DNS rebinding) is refused too.
use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6 addresses are
/// the IPv4 address they carry (`::` and `::1` stay IPv6: unspecified and loopback).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6].iter().all(|&x| x == 0) && (s[6] != 0 || s[7] > 1) {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "this network",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        (100, 64..=127, _) => "carrier-grade NAT",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xfe00 == 0xfc00 => "unique-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignment",
        // 64:ff9b::/96 (NAT64) carries an IPv4 address: judge that one.
        0x0064 if s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) => {
            let [a, b] = s[6].to_be_bytes();
            let [c, d] = s[7].to_be_bytes();
            return forbidden_v4(Ipv4Addr::new(a, b, c, d));
        }
        _ => return None,
    })
}

/// An address range, `10.0.0.0/8` or `fd00::/8`; a bare address is a single-address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let written = address
            .parse::<IpAddr>()
            .map_err(|_| format!("{text:?} is not an address or CIDR"))?;
        let network = canonical(written);
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?,
        };
        // `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
        let prefix = match (written, network) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix
                .checked_sub(96)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?,
            _ => prefix,
        };
        Ok(Cidr { network, prefix })
    }
}

/// A host name (or address literal) the allow list names, with its port if one is given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    name: String,
    port: Option<u16>,
}

/// `PARTWAY_ALLOWED_ENDPOINTS`: the exceptions to the guard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    cidrs: Vec<Cidr>,
    hosts: Vec<AllowedHost>,
}

impl AllowList {
    /// Comma-separated CIDRs (`10.1.0.0/16`, `::1/128`, `127.0.0.1`) and host names
    /// (`minio`, `s3.internal:9000`, `[::1]:9000`).
    pub fn parse(text: &str) -> Result<AllowList, String> {
        let mut list = AllowList::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Ok(cidr) = entry.parse::<Cidr>() {
                list.cidrs.push(cidr);
                continue;
            }
            let (name, port) = split_host_port(entry)
                .ok_or_else(|| format!("{entry:?} is neither a CIDR nor a host[:port]"))?;
            if name.contains('/') || name.is_empty() {
                return Err(format!("{entry:?} is neither a CIDR nor a host[:port]"));
            }
            list.hosts.push(AllowedHost {
                name: name.to_ascii_lowercase(),
                port,
            });
        }
        Ok(list)
    }

    /// Adds one host:port (e.g. the embedded endpoint's).
    pub fn allow_host(&mut self, name: &str, port: Option<u16>) {
        self.hosts.push(AllowedHost {
            name: name.to_ascii_lowercase(),
            port,
        });
    }

    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|c| c.contains(ip))
    }

    /// `port` None: any port of that host (at connect time the port is the one checked
    /// before, since a stored endpoint never changes).
    pub fn allows_host(&self, name: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| {
            h.name.eq_ignore_ascii_case(name)
                && (h.port.is_none() || port.is_none() || h.port == port)
        })
    }

    pub fn has_cidrs(&self) -> bool {
        !self.cidrs.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.hosts.is_empty()
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`; the name without brackets.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((text, None)),
    }
}

/// `PARTWAY_OUTBOUND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboundMode {
    /// Refuse forbidden addresses unless the allow list names them.
    #[default]
    Guarded,
    /// Admit only what the allow list names; no bring-your-own target without an endpoint.
    Allowlist,
}

/// Why a client-supplied target is refused. The texts are safe for clients: they name
/// the host and the rule, never credentials or the full URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("the endpoint must be an http or https URL with a host")]
    InvalidUrl,
    #[error("the endpoint {host} is a {reason} address, which this server does not connect to")]
    Forbidden { host: String, reason: &'static str },
    #[error("the endpoint {host} is not in this server's allowed endpoints")]
    NotAllowed { host: String },
    #[error("the endpoint {host} cannot be resolved")]
    Unresolvable { host: String },
    #[error("this server accepts your own bucket only with an s3Endpoint it allows")]
    EndpointRequired,
}

/// Host name → addresses.
#[async_trait]
pub trait Resolver: Send + Sync + fmt::Debug {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system's resolver (tokio's `lookup_host`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

/// A resolver for tests: names map to answers without any network. A name given
/// several answers returns them in turn (the last one repeats), so a test can change
/// what a name resolves to between two lookups.
#[derive(Debug, Default)]
pub struct StaticResolver {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    lookups: Mutex<Vec<String>>,
}

impl StaticResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// `name` resolves to `answers[0]`, then `answers[1]`, …, then the last forever.
    pub fn with(self, name: &str, answers: Vec<Vec<IpAddr>>) -> Self {
        self.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_ascii_lowercase(), answers);
        self
    }

    /// Every name looked up so far, in order.
    pub fn lookups(&self) -> Vec<String> {
        self.lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let name = host.to_ascii_lowercase();
        self.lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let mut answers = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        match answers.get_mut(&name) {
            Some(queue) if queue.len() > 1 => Ok(queue.remove(0)),
            Some(queue) if !queue.is_empty() => Ok(queue[0].clone()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such test host",
            )),
        }
    }
}

/// The guard: what is allowed, how strictly, and how names are resolved.
#[derive(Debug, Clone)]
pub struct OutboundPolicy {
    pub allowed: AllowList,
    pub mode: OutboundMode,
    pub resolver: Arc<dyn Resolver>,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy {
            allowed: AllowList::default(),
            mode: OutboundMode::Guarded,
            resolver: Arc::new(SystemResolver),
        }
    }
}

impl OutboundPolicy {
    pub fn new(allowed: AllowList, mode: OutboundMode, resolver: Arc<dyn Resolver>) -> Self {
        OutboundPolicy {
            allowed,
            mode,
            resolver,
        }
    }

    /// A client-supplied target without an endpoint (public AWS S3, or R2's): only in
    /// guarded mode.
    pub fn check_without_endpoint(&self) -> Result<(), OutboundError> {
        match self.mode {
            OutboundMode::Guarded => Ok(()),
            OutboundMode::Allowlist => Err(OutboundError::EndpointRequired),
        }
    }

    /// Checks a client-supplied URL: its host (an address literal, or every address its
    /// name resolves to) must be allowed. Nothing is sent anywhere.
    pub async fn check(&self, url: &str) -> Result<(), OutboundError> {
        let (host, port) = host_of(url)?;
        if self.allowed.allows_host(&host, Some(port)) {
            return Ok(());
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => self.judge(&host, ip),
            // Nothing a name resolves to could be admitted: refused without a lookup.
            Err(_) if self.mode == OutboundMode::Allowlist && !self.allowed.has_cidrs() => {
                Err(OutboundError::NotAllowed { host })
            }
            Err(_) => self.resolve(&host).await.map(drop),
        }
    }

    /// Resolves a host name and refuses if ANY answer is not allowed: the rule at
    /// connect time, and for names at check time. A host name the allow list names is
    /// trusted with whatever it resolves to.
    pub async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, OutboundError> {
        let unresolvable = || OutboundError::Unresolvable {
            host: host.to_string(),
        };
        let answers = self
            .resolver
            .resolve(host)
            .await
            .map_err(|_| unresolvable())?;
        if answers.is_empty() {
            return Err(unresolvable());
        }
        if !self.allowed.allows_host(host, None) {
            for ip in &answers {
                self.judge(host, *ip)?;
            }
        }
        Ok(answers)
    }

    fn judge(&self, host: &str, ip: IpAddr) -> Result<(), OutboundError> {
        if self.allowed.allows_ip(ip) {
            return Ok(());
        }
        if self.mode == OutboundMode::Allowlist {
            return Err(OutboundError::NotAllowed {
                host: host.to_string(),
            });
        }
        match forbidden(ip) {
            Some(reason) => Err(OutboundError::Forbidden {
                host: host.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// The host (without brackets, lower case) and port of an http(s) URL. URLs with user
/// information are refused: `http://allowed@169.254.169.254/` reads two ways.
pub fn host_of(url: &str) -> Result<(String, u16), OutboundError> {
    let uri: http::Uri = url.trim().parse().map_err(|_| OutboundError::InvalidUrl)?;
    let default_port = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => 80,
        Some(s) if s.eq_ignore_ascii_case("https") => 443,
        _ => return Err(OutboundError::InvalidUrl),
    };
    let authority = uri.authority().ok_or(OutboundError::InvalidUrl)?;
    if authority.as_str().contains('@') {
        return Err(OutboundError::InvalidUrl);
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(OutboundError::InvalidUrl);
    }
    Ok((
        host.to_ascii_lowercase(),
        authority.port_u16().unwrap_or(default_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_ranges_are_refused() {
        for (addr, reason) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.0.0.1", "private"),
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
        ] {
            assert_eq!(forbidden(ip(addr)), Some(reason), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "1.1.1.1",
            "8.8.8.8",
            "52.216.0.1",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.0.1",
            "2606:4700::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(forbidden(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn allow_list_parses_cidrs_and_hosts() {
        let list = AllowList::parse(
            " 10.1.0.0/16, ::1/128 ,127.0.0.1, MinIO, s3.internal:9000, [::1]:9001,",
        )
        .unwrap();
        assert!(list.allows_ip(ip("10.1.200.3")));
        assert!(!list.allows_ip(ip("10.2.0.1")));
        assert!(list.allows_ip(ip("::1")));
        assert!(list.allows_ip(ip("127.0.0.1")));
        assert!(
            list.allows_ip(ip("::ffff:127.0.0.1")),
            "mapped form matches"
        );
        assert!(!list.allows_ip(ip("127.0.0.2")));
        assert!(list.allows_host("minio", Some(1234)));
        assert!(list.allows_host("MINIO", None));
        assert!(list.allows_host("s3.internal", Some(9000)));
        assert!(!list.allows_host("s3.internal", Some(9001)));
        assert!(list.allows_host("::1", Some(9001)));
        assert!(!list.allows_host("minio.evil", Some(80)));
        for bad in ["10.0.0.0/33", "host:port", "a/b", "[::1", "::1/200"] {
            assert!(AllowList::parse(bad).is_err(), "{bad}");
        }
        assert!(AllowList::parse("").unwrap().is_empty());
    }

    #[test]
    fn host_of_reads_host_and_port() {
        assert_eq!(
            host_of("http://127.0.0.1:5432").unwrap(),
            ("127.0.0.1".into(), 5432)
        );
        assert_eq!(host_of("http://[::1]:1/").unwrap(), ("::1".into(), 1));
        assert_eq!(
            host_of("https://S3.Example.com").unwrap(),
            ("s3.example.com".into(), 443)
        );
        assert_eq!(
            host_of("http://localhost").unwrap(),
            ("localhost".into(), 80)
        );
        for bad in [
            "ftp://example.com",
            "example.com",
            "http://",
            "http://user:pw@169.254.169.254/",
            "/path",
            "",
        ] {
            assert_eq!(host_of(bad), Err(OutboundError::InvalidUrl), "{bad}");
        }
    }

    fn policy(allowed: &str, mode: OutboundMode, resolver: StaticResolver) -> OutboundPolicy {
        OutboundPolicy::new(AllowList::parse(allowed).unwrap(), mode, Arc::new(resolver))
    }

    #[tokio::test]
    async fn check_refuses_forbidden_literals_and_names() {
        let resolver = StaticResolver::new()
            .with("metadata.test", vec![vec![ip("169.254.169.254")]])
            .with(
                "mixed.test",
                vec![vec![ip("93.184.216.34"), ip("10.0.0.1")]],
            )
            .with("public.test", vec![vec![ip("93.184.216.34")]]);
        let guard = policy("", OutboundMode::Guarded, resolver);
        for url in [
            "http://127.0.0.1:5432",
            "http://[::1]:1",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:127.0.0.1]:80",
            "http://metadata.test",
            "http://mixed.test",
            "http://nowhere.test",
        ] {
            assert!(guard.check(url).await.is_err(), "{url}");
        }
        assert!(guard.check("https://public.test").await.is_ok());
        assert!(guard.check("https://93.184.216.34:9000").await.is_ok());
        assert!(guard.check_without_endpoint().is_ok());
        let err = guard.check("http://metadata.test").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the endpoint metadata.test is a link-local address, which this server does not connect to"
        );
    }

    #[tokio::test]
    async fn allow_list_opens_exceptions() {
        let resolver = StaticResolver::new()
            .with("minio", vec![vec![ip("10.0.0.5")]])
            .with("lan.test", vec![vec![ip("192.168.7.7")]]);
        let guard = policy(
            "127.0.0.1:9000, minio, 192.168.0.0/16",
            OutboundMode::Guarded,
            resolver,
        );
        assert!(guard.check("http://127.0.0.1:9000").await.is_ok());
        assert!(
            guard.check("http://127.0.0.1:9001").await.is_err(),
            "only that port"
        );
        assert!(guard.check("http://minio:9000").await.is_ok());
        assert!(guard.check("http://lan.test").await.is_ok());
        assert!(guard.check("http://[::ffff:192.168.1.1]").await.is_ok());
    }

    #[tokio::test]
    async fn allowlist_mode_admits_only_the_list() {
        let resolver = StaticResolver::new()
            .with("public.test", vec![vec![ip("93.184.216.34")]])
            .with("listed.test", vec![vec![ip("93.184.216.34")]]);
        let guard = policy(
            "listed.test, 127.0.0.0/8",
            OutboundMode::Allowlist,
            resolver,
        );
        assert_eq!(
            guard.check("http://public.test").await,
            Err(OutboundError::NotAllowed {
                host: "public.test".into()
            })
        );
        assert!(guard.check("http://93.184.216.34").await.is_err());
        assert!(guard.check("http://listed.test").await.is_ok());
        assert!(guard.check("http://127.0.0.1:1").await.is_ok());
        assert_eq!(
            guard.check_without_endpoint(),
            Err(OutboundError::EndpointRequired)
        );
        // Without CIDRs, an unlisted name is refused without a lookup.
        let resolver = Arc::new(StaticResolver::new());
        let hosts_only = OutboundPolicy::new(
            AllowList::parse("listed.test").unwrap(),
            OutboundMode::Allowlist,
            resolver.clone(),
        );
        assert!(hosts_only.check("http://localhost:9").await.is_err());
        assert!(resolver.lookups().is_empty());
    }

    #[tokio::test]
    async fn answers_that_change_are_judged_each_time() {
        let resolver = StaticResolver::new().with(
            "rebind.test",
            vec![vec![ip("127.0.0.1")], vec![ip("169.254.169.254")]],
        );
        let guard = policy("127.0.0.0/8", OutboundMode::Guarded, resolver);
        assert!(guard.check("http://rebind.test:9").await.is_ok());
        assert!(guard.resolve("rebind.test").await.is_err());
    }

    #[test]
    fn mode_parses_from_config_text() {
        let guarded: OutboundMode = serde_json::from_str("\"guarded\"").unwrap();
        let allowlist: OutboundMode = serde_json::from_str("\"allowlist\"").unwrap();
        assert_eq!(guarded, OutboundMode::Guarded);
        assert_eq!(allowlist, OutboundMode::Allowlist);
        assert_eq!(OutboundMode::default(), OutboundMode::Guarded);
        assert!(serde_json::from_str::<OutboundMode>("\"open\"").is_err());
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
            any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        ]
    }

    proptest! {
        /// An IPv4 address and its mapped and compatible IPv6 forms are judged alike.
        #[test]
        fn mapped_forms_judged_like_ipv4(n in any::<u32>()) {
            let v4 = Ipv4Addr::from(n);
            prop_assert_eq!(forbidden(IpAddr::V6(v4.to_ipv6_mapped())), forbidden(IpAddr::V4(v4)));
            if n > 1 {
                prop_assert_eq!(forbidden(IpAddr::V6(v4.to_ipv6_compatible())), forbidden(IpAddr::V4(v4)));
            }
        }

        /// Every address of a forbidden range is forbidden.
        #[test]
        fn forbidden_ranges_hold_for_every_member(
            range in prop::sample::select(vec![
                "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                "169.254.0.0/16", "100.64.0.0/10", "224.0.0.0/4", "0.0.0.0/8",
                "fe80::/10", "fc00::/7", "ff00::/8", "::ffff:127.0.0.0/104",
            ]),
            bits in any::<u128>(),
        ) {
            let cidr: Cidr = range.parse().unwrap();
            let member = match cidr.network {
                IpAddr::V4(net) => {
                    let host = (bits as u32).checked_shr(u32::from(cidr.prefix)).unwrap_or(0);
                    IpAddr::V4(Ipv4Addr::from(u32::from(net) | host))
                }
                IpAddr::V6(net) => {
                    let host = bits.checked_shr(u32::from(cidr.prefix)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from(u128::from(net) | host))
                }
            };
            prop_assert!(cidr.contains(member), "{member} in {range}");
            prop_assert!(forbidden(member).is_some(), "{member} of {range}");
        }

        /// A CIDR contains its own network address, every address is in /0 of its
        /// family, and a single-address range contains only that address.
        #[test]
        fn cidr_membership(a in any_ip(), b in any_ip()) {
            let a = canonical(a);
            let b = canonical(b);
            let single: Cidr = a.to_string().parse().unwrap();
            prop_assert!(single.contains(a));
            prop_assert_eq!(single.contains(b), a == b);
            let all: Cidr = if a.is_ipv4() { "0.0.0.0/0" } else { "::/0" }.parse().unwrap();
            prop_assert!(all.contains(a));
            prop_assert_eq!(all.contains(b), a.is_ipv4() == b.is_ipv4());
        }

        /// Classification is total (never panics), and whatever std calls loopback,
        /// unspecified or multicast is forbidden, in either family or a mapped form.
        #[test]
        fn classification_is_total(a in any_ip()) {
            let reason = forbidden(a);
            if a.is_loopback() || a.is_unspecified() || a.is_multicast() {
                prop_assert!(reason.is_some());
            }
        }
    }
}
