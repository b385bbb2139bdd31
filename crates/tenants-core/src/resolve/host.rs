//! Host-based resolvers: subdomain of a base domain, or a tenant's custom domain.

use std::sync::Arc;

use http::header::HOST;
use http::request::Parts;

use super::{Resolved, Resolver};
use crate::{Error, IdPolicy};

/// Longest host name accepted (the DNS limit for a name without the trailing dot).
const MAX_HOST_LEN: usize = 253;

/// The host a request is addressed to: the URI authority (HTTP/2 `:authority`, or an
/// absolute-form request target) or else the single `Host` header, as sent.
///
/// Returns `Ok(None)` when the request names no host, and an error when the `Host`
/// header is repeated or not visible ASCII.
pub fn request_host(parts: &Parts) -> Result<Option<&str>, Error> {
    if let Some(authority) = parts.uri.authority() {
        return Ok(Some(authority.as_str()));
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    let Some(value) = hosts.next() else {
        return Ok(None);
    };
    if hosts.next().is_some() {
        return Err(Error::Ambiguous("Host header"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| Error::invalid_host(&String::from_utf8_lossy(value.as_bytes()), "not ASCII"))
}

/// Validates a raw `host[:port]` and returns the host name without port and trailing
/// dot, in its original case. IP literals, empty labels, bad characters and over-long
/// names are refused.
pub(crate) fn host_name(raw: &str) -> Result<&str, Error> {
    host_labels(raw).map(|(host, _)| host)
}

/// A byte a host name may hold: letters, digits, `-`, `_` and the label dots.
fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// `host` equals `lowercase` (already lowercase), ignoring ASCII case in `host`.
///
/// Folds over every byte instead of stopping at the first difference, so the compiler
/// compares many bytes at once; these comparisons run on every request.
fn eq_folded(host: &[u8], lowercase: &[u8]) -> bool {
    host.len() == lowercase.len()
        && host
            .iter()
            .zip(lowercase)
            .fold(true, |eq, (h, l)| eq & (h.to_ascii_lowercase() == *l))
}

/// [`host_name`], plus the length of the host's first label. Runs on every request:
/// one branch-free pass checks the characters, one pass over the dots the labels.
fn host_labels(raw: &str) -> Result<(&str, usize), Error> {
    let bytes = raw.as_bytes();
    if bytes.first() == Some(&b'[') {
        return Err(Error::invalid_host(
            raw,
            "IP addresses do not name a tenant",
        ));
    }
    let mut end = bytes.len();
    if let Some(colon) = bytes.iter().rposition(|&b| b == b':') {
        if !valid_port(&bytes[colon + 1..]) {
            return Err(Error::invalid_host(
                raw,
                "the port is not a number from 0 to 65535",
            ));
        }
        end = colon;
    }
    let mut host = &bytes[..end];
    if let [name @ .., b'.'] = host {
        host = name;
    }
    if host.is_empty() {
        return Err(Error::invalid_host(raw, "the host is empty"));
    }
    if host.len() > MAX_HOST_LEN {
        return Err(Error::invalid_host(
            raw,
            "the host is longer than 253 characters",
        ));
    }
    if !host.iter().fold(true, |ok, &b| ok & host_byte(b)) {
        return Err(Error::invalid_host(
            raw,
            if host.contains(&b'@') {
                "user info is not allowed in a host"
            } else {
                "the host has an invalid character"
            },
        ));
    }
    let mut labels = host.split(|&b| b == b'.');
    let first = labels.next().unwrap_or_default();
    let mut last = first;
    for label in std::iter::once(first).chain(labels) {
        if label.is_empty() {
            return Err(Error::invalid_host(raw, "the host has an empty label"));
        }
        if label.len() > 63 {
            return Err(Error::invalid_host(
                raw,
                "a label is longer than 63 characters",
            ));
        }
        last = label;
    }
    // An IPv4 literal always ends in an all-digit label, and no top-level domain is
    // all digits, so this one test refuses every IPv4 form (dotted, short, numeric).
    if last.iter().all(u8::is_ascii_digit) {
        return Err(Error::invalid_host(
            raw,
            "IP addresses do not name a tenant",
        ));
    }
    // Only ASCII bytes were accepted, so the cut is on a character boundary.
    let host = raw.get(..host.len()).unwrap_or_default();
    Ok((host, first.len()))
}

/// A port as RFC 3986 §3.2.3 writes it (digits), within TCP's range.
fn valid_port(port: &[u8]) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')) <= u32::from(u16::MAX)
}

/// `raw` is an IP address (IPv4, or IPv6 in brackets) with an optional valid
/// port: what a load balancer's health check sends as `Host`.
fn ip_literal(raw: &str) -> bool {
    let (address_ok, rest) = match raw.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((v6, rest)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), rest),
            None => return false,
        },
        None => {
            let (v4, rest) = raw.split_at(raw.find(':').unwrap_or(raw.len()));
            (v4.parse::<std::net::Ipv4Addr>().is_ok(), rest)
        }
    };
    address_ok
        && match rest.strip_prefix(':') {
            Some(port) => valid_port(port.as_bytes()),
            None => rest.is_empty(),
        }
}

/// What a host resolver does with a host under none of its base domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForeignHost {
    Reject,
    NoTenant,
}

/// Resolves the tenant from the first label of the host under one of the base domains:
/// `acme.example.com` → `acme`.
///
/// The port and one trailing dot are ignored, case is folded. IP literals, empty
/// labels, over-long hosts and nested subdomains (`a.b.example.com`) are refused. The
/// base domain itself (`example.com`) names no tenant. A host under no base domain is
/// refused unless [`no_tenant_for_foreign_hosts`](Self::no_tenant_for_foreign_hosts)
/// is set, which lets a [`CustomDomainResolver`] try it next.
///
/// # Examples
///
/// ```
/// use http::Request;
/// use tenants_core::{IdPolicy, resolve::{Resolver, SubdomainResolver}};
///
/// let resolver = SubdomainResolver::new(["example.com", "localhost"])
///     .id_policy(IdPolicy::new().reserve(["www", "api"]));
///
/// let (parts, ()) = Request::get("/").header("host", "acme.localhost:3000").body(())?.into_parts();
/// assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
///
/// let (parts, ()) = Request::get("/").header("host", "www.example.com").body(())?.into_parts();
/// assert!(resolver.resolve(&parts).is_err(), "www is reserved");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SubdomainResolver {
    /// Lowercase base domains, longest first so the most specific one matches.
    bases: Arc<[String]>,
    policy: IdPolicy,
    foreign: ForeignHost,
}

impl SubdomainResolver {
    /// A resolver for subdomains of the given base domains.
    pub fn new<I, S>(base_domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut bases: Vec<String> = base_domains
            .into_iter()
            .map(|b| {
                b.as_ref()
                    .trim_start_matches('.')
                    .trim_end_matches('.')
                    .to_ascii_lowercase()
            })
            .filter(|b| !b.is_empty())
            .collect();
        bases.sort_by_key(|b| std::cmp::Reverse(b.len()));
        bases.dedup();
        SubdomainResolver {
            bases: bases.into(),
            policy: IdPolicy::default(),
            foreign: ForeignHost::Reject,
        }
    }

    /// Sets the id policy (reserved ids such as `www`).
    pub fn id_policy(mut self, policy: IdPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Answers "no tenant" instead of an error for hosts under no base domain, and
    /// for IP addresses with a valid port (`10.0.0.5:8080`, `[::1]:8080`: a load
    /// balancer's health check), so a pass-through route can serve them.
    pub fn no_tenant_for_foreign_hosts(mut self) -> Self {
        self.foreign = ForeignHost::NoTenant;
        self
    }
}

impl Resolver for SubdomainResolver {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let Some(raw) = request_host(parts)? else {
            return Ok(None);
        };
        let (host, first_label) = match host_labels(raw) {
            Ok(found) => found,
            // A health check by address: foreign, not malformed.
            Err(_) if self.foreign == ForeignHost::NoTenant && ip_literal(raw) => {
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        for base in self.bases.iter() {
            let Some(split) = host.len().checked_sub(base.len() + 1) else {
                if eq_folded(host.as_bytes(), base.as_bytes()) {
                    return Ok(None);
                }
                continue;
            };
            let (label, rest) = host.split_at(split);
            if rest.as_bytes()[0] != b'.' || !eq_folded(&rest.as_bytes()[1..], base.as_bytes()) {
                continue;
            }
            if split != first_label {
                return Err(Error::invalid_host(
                    raw,
                    "nested subdomains do not name a tenant",
                ));
            }
            return self
                .policy
                .parse_bytes(label.as_bytes())
                .map(|id| Some(Resolved::from_id(id)))
                .map_err(|rule| Error::invalid_id(label, rule));
        }
        match self.foreign {
            ForeignHost::Reject => Err(Error::foreign_host(raw)),
            ForeignHost::NoTenant => Ok(None),
        }
    }
}

/// Resolves a tenant by its custom domain: the whole host (lowercase, without port or
/// trailing dot) becomes a [`TenantKey::Domain`](super::TenantKey::Domain) that the
/// layer looks up with [`TenantCatalog::get_by_domain`](crate::TenantCatalog::get_by_domain).
///
/// Put it after a [`SubdomainResolver`] that answers "no tenant" for foreign hosts, and
/// list your own hosts (the apex, `www`) in [`ignore`](Self::ignore) so they stay
/// central routes.
///
/// # Examples
///
/// ```
/// use http::Request;
/// use tenants_core::resolve::{CustomDomainResolver, Resolver, TenantKey};
///
/// let resolver = CustomDomainResolver::new().ignore(["example.com"]);
/// let (parts, ()) = Request::get("/").header("host", "Shop.Acme.test.").body(())?.into_parts();
/// let found = resolver.resolve(&parts)?.unwrap();
/// assert_eq!(found.key, TenantKey::Domain("shop.acme.test".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct CustomDomainResolver {
    ignored: Arc<[String]>,
}

impl CustomDomainResolver {
    /// A resolver that takes every valid host as a candidate custom domain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hosts that name no tenant (matched case-insensitively, without port).
    pub fn ignore<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ignored = self.ignored.to_vec();
        ignored.extend(
            hosts
                .into_iter()
                .map(|h| h.as_ref().trim_end_matches('.').to_ascii_lowercase()),
        );
        self.ignored = ignored.into();
        self
    }
}

impl Resolver for CustomDomainResolver {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let Some(raw) = request_host(parts)? else {
            return Ok(None);
        };
        let host = host_name(raw)?;
        if self.ignored.iter().any(|h| host.eq_ignore_ascii_case(h)) {
            return Ok(None);
        }
        Ok(Some(Resolved::from_domain(host.to_ascii_lowercase())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdRule;
    use http::Request;
    use proptest::prelude::*;

    fn parts(host: &str) -> Parts {
        Request::get("/")
            .header(HOST, host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn sub(host: &str) -> Result<Option<String>, Error> {
        SubdomainResolver::new(["example.com", "eu.example.com", "localhost"])
            .id_policy(IdPolicy::new().reserve(["www"]))
            .resolve(&parts(host))
            .map(|r| r.and_then(|r| r.id()).map(|id| id.to_string()))
    }

    #[test]
    fn subdomain_happy_paths() {
        for (host, id) in [
            ("acme.example.com", "acme"),
            ("ACME.Example.COM", "acme"),
            ("acme.example.com:8443", "acme"),
            ("acme.example.com.", "acme"),
            ("acme.example.com.:80", "acme"),
            ("acme.eu.example.com", "acme"),
            ("tenant-a.localhost:3000", "tenant-a"),
        ] {
            assert_eq!(sub(host).unwrap().as_deref(), Some(id), "{host}");
        }
        assert_eq!(sub("example.com").unwrap(), None);
        assert_eq!(
            sub("eu.example.com").unwrap(),
            None,
            "a base domain names no tenant"
        );
    }

    #[test]
    fn subdomain_refusals() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]:3000",
            "[::1]",
            "a..example.com",
            ".example.com",
            "a.b.example.com",
            "acme.example.com:",
            "acme.example.com:http",
            "acme.example.com:99999999",
            "user@acme.example.com",
            "acme.example.com/x",
            "",
            "evil.com",
            "notexample.com",
            "acme.example.com.evil.com",
        ] {
            assert!(sub(host).is_err(), "{host:?} should be refused");
        }
        assert!(matches!(
            sub("www.example.com"),
            Err(Error::InvalidId {
                rule: IdRule::Reserved,
                ..
            })
        ));
        assert!(matches!(
            sub("under_score.example.com"),
            Err(Error::InvalidId {
                rule: IdRule::InvalidChar { .. },
                ..
            })
        ));
        let long = format!("{}.example.com", "a".repeat(300));
        assert!(sub(&long).is_err());
    }

    #[test]
    fn ports_are_checked_and_ip_hosts_are_foreign_when_foreign_hosts_are() {
        let r = SubdomainResolver::new(["example.com"]).no_tenant_for_foreign_hosts();
        for foreign in [
            "10.0.0.5:8080",
            "10.0.0.5",
            "[::1]:8080",
            "[2001:db8::1]",
            "127.0.0.1:0",
        ] {
            assert_eq!(r.resolve(&parts(foreign)).unwrap(), None, "{foreign}");
        }
        for malformed in [
            "10.0.0.5:65536",
            "10.0.0.5:99999",
            "[::1]:70000",
            "[::1",
            "[zz::1]:80",
            "[::1]x",
            "acme.example.com:65536",
            "acme.example.com:",
            "1.2.3:80",
        ] {
            assert!(
                matches!(r.resolve(&parts(malformed)), Err(Error::InvalidHost { .. })),
                "{malformed}"
            );
        }
        assert!(
            r.resolve(&parts("acme.example.com:65535"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn foreign_hosts_can_mean_no_tenant() {
        let r = SubdomainResolver::new(["example.com"]).no_tenant_for_foreign_hosts();
        assert_eq!(r.resolve(&parts("shop.acme.test")).unwrap(), None);
        for hostile in ["a..example.com", "bad_host!", "user@acme.example.com"] {
            assert!(
                r.resolve(&parts(hostile)).is_err(),
                "hostile hosts stay errors"
            );
        }
    }

    #[test]
    fn missing_and_repeated_host_headers() {
        let r = SubdomainResolver::new(["example.com"]);
        let none = Request::get("/").body(()).unwrap().into_parts().0;
        assert_eq!(r.resolve(&none).unwrap(), None);
        let twice = Request::get("/")
            .header(HOST, "a.example.com")
            .header(HOST, "b.example.com")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(matches!(r.resolve(&twice), Err(Error::Ambiguous(_))));
        let binary = Request::get("/")
            .header(
                HOST,
                http::HeaderValue::from_bytes(b"a\xffb.example.com").unwrap(),
            )
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert!(r.resolve(&binary).is_err());
    }

    #[test]
    fn authority_wins_over_host_header() {
        let p = Request::get("https://acme.example.com/x")
            .header(HOST, "other.example.com")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let r = SubdomainResolver::new(["example.com"]);
        assert_eq!(r.resolve(&p).unwrap().unwrap().id().unwrap(), "acme");
    }

    #[test]
    fn custom_domains_are_normalized_and_ignorable() {
        let r = CustomDomainResolver::new().ignore(["Example.com"]);
        let found = r.resolve(&parts("Shop.ACME.test:443")).unwrap().unwrap();
        assert_eq!(
            found.key,
            super::super::TenantKey::Domain("shop.acme.test".into())
        );
        assert_eq!(r.resolve(&parts("example.com")).unwrap(), None);
        assert!(r.resolve(&parts("10.0.0.1")).is_err());
    }

    proptest! {
        #[test]
        fn subdomain_never_panics_and_accepts_only_valid_ids(host in "[ -~]{0,300}") {
            if let Ok(header) = http::HeaderValue::from_str(&host) {
                let p = Request::get("/").header(HOST, header).body(()).unwrap().into_parts().0;
                if let Ok(Some(found)) = SubdomainResolver::new(["example.com"]).resolve(&p) {
                    let id = found.id().unwrap();
                    let expected = format!("{id}.example.com");
                    prop_assert!(host.to_ascii_lowercase().starts_with(&expected));
                }
            }
        }

        #[test]
        fn custom_domains_are_the_lowercase_host_without_port_or_dot(
            labels in proptest::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", 1..5),
            tld in "[a-zA-Z]{2,6}",
            dot in any::<bool>(),
            port in proptest::option::of(any::<u16>()),
        ) {
            let domain = format!("{}.{tld}", labels.join("."));
            let host = format!("{domain}{}{}", if dot { "." } else { "" }, port.map(|p| format!(":{p}")).unwrap_or_default());
            let found = CustomDomainResolver::new().resolve(&parts(&host)).unwrap().unwrap();
            prop_assert_eq!(found.key, super::super::TenantKey::Domain(domain.to_ascii_lowercase().into()));
            let ignoring = CustomDomainResolver::new().ignore([domain.to_ascii_uppercase()]);
            prop_assert_eq!(ignoring.resolve(&parts(&host)).unwrap(), None);
        }

        #[test]
        fn ip_literals_never_name_a_tenant(ip in any::<u32>(), port in proptest::option::of(any::<u16>())) {
            let ip = std::net::Ipv4Addr::from(ip);
            let host = match port { Some(p) => format!("{ip}:{p}"), None => ip.to_string() };
            prop_assert!(host_name(&host).is_err());
            // Refused by default; foreign, so no tenant, when foreign hosts are.
            prop_assert!(SubdomainResolver::new(["example.com"]).resolve(&parts(&host)).is_err());
            let r = SubdomainResolver::new(["example.com"]).no_tenant_for_foreign_hosts();
            prop_assert_eq!(r.resolve(&parts(&host)).unwrap(), None);
            prop_assert!(CustomDomainResolver::new().resolve(&parts(&host)).is_err());
        }

        #[test]
        fn any_valid_label_round_trips(label in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", port in proptest::option::of(0u16..)) {
            let host = match port { Some(p) => format!("{label}.example.com:{p}"), None => format!("{label}.example.com") };
            let p = parts(&host);
            let found = SubdomainResolver::new(["example.com"]).resolve(&p).unwrap().unwrap();
            let id = found.id().unwrap();
            prop_assert_eq!(id.as_str(), label.as_str());
        }
    }
}
