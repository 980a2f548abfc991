//! Names: subjectAltName values and subject attributes, their syntax, and the
//! patterns (profile `permitted`, CA name constraints) that bound them. Requested
//! names are parsed here and never copied into a certificate unchecked.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::role::NameKind;

/// One subjectAltName, in canonical form (DNS names and email domains lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SanName {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
}

const MAX_DNS: usize = 253;
const MAX_URI: usize = 2048;
const MAX_EMAIL: usize = 254;
/// Upper bound of X.520 ub-common-name and ub-organization-name.
pub const MAX_DN_ATTR: usize = 64;

impl SanName {
    pub fn kind(&self) -> NameKind {
        match self {
            SanName::Dns(_) => NameKind::Dns,
            SanName::Ip(_) => NameKind::Ip,
            SanName::Uri(_) => NameKind::Uri,
            SanName::Email(_) => NameKind::Email,
        }
    }

    /// The value without its kind prefix.
    pub fn value(&self) -> String {
        match self {
            SanName::Dns(s) | SanName::Uri(s) | SanName::Email(s) => s.clone(),
            SanName::Ip(ip) => ip.to_string(),
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, SanName::Dns(d) if d.starts_with("*."))
    }

    pub fn parse(kind: NameKind, s: &str) -> Result<SanName, String> {
        match kind {
            NameKind::Dns => parse_dns(s, true).map(SanName::Dns),
            NameKind::Ip => s
                .trim()
                .parse::<IpAddr>()
                .map(SanName::Ip)
                .map_err(|_| format!("`{}` is not an IP address", printable(s))),
            NameKind::Uri => parse_uri(s).map(SanName::Uri),
            NameKind::Email => parse_email(s).map(SanName::Email),
        }
    }

    /// Parse the "KIND:value" form used in records and output.
    pub fn parse_tagged(s: &str) -> Option<SanName> {
        let (tag, v) = s.split_once(':')?;
        let kind = match tag {
            "DNS" => NameKind::Dns,
            "IP" => NameKind::Ip,
            "URI" => NameKind::Uri,
            "email" => NameKind::Email,
            _ => return None,
        };
        SanName::parse(kind, v).ok()
    }
}

impl fmt::Display for SanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.value())
    }
}

/// Show untrusted input in a message without letting control characters through.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(80)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// A DNS name: LDH labels, at most 253 characters; a wildcard only as the whole
/// leftmost label (the caller decides whether wildcards are allowed).
pub fn parse_dns(s: &str, allow_wildcard_syntax: bool) -> Result<String, String> {
    let shown = printable(s);
    if s.is_empty() {
        return Err("empty DNS name".into());
    }
    if s.len() > MAX_DNS {
        return Err(format!(
            "DNS name `{shown}` is longer than {MAX_DNS} characters"
        ));
    }
    if s.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "`{shown}` is an IP address: give it with --ip, not --dns"
        ));
    }
    let lower = s.to_ascii_lowercase();
    let mut labels: Vec<&str> = lower.split('.').collect();
    if labels.first() == Some(&"*") {
        if !allow_wildcard_syntax {
            return Err(format!("`{shown}`: a wildcard is not allowed here"));
        }
        labels.remove(0);
        if labels.len() < 2 {
            return Err(format!(
                "wildcard `{shown}` must stand for a label under a domain of two or more labels"
            ));
        }
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!("DNS name `{shown}` has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("DNS name `{shown}` has a label over 63 characters"));
        }
        if label.contains('*') {
            return Err(format!(
                "DNS name `{shown}`: a wildcard may only be the whole leftmost label"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "DNS name `{shown}` may only hold letters, digits, `-` and `.`"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "DNS name `{shown}`: a label cannot start or end with `-`"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("DNS name `{shown}` ends in an all-numeric label"));
    }
    Ok(lower)
}

fn parse_uri(s: &str) -> Result<String, String> {
    let shown = printable(s);
    if s.len() > MAX_URI {
        return Err(format!("URI `{shown}` is longer than {MAX_URI} characters"));
    }
    let (scheme, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("`{shown}` is not a URI (no scheme)"))?;
    if scheme.is_empty()
        || !scheme.as_bytes()[0].is_ascii_alphabetic()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return Err(format!("URI `{shown}` has an invalid scheme"));
    }
    if rest.is_empty() {
        return Err(format!("URI `{shown}` is empty after its scheme"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "URI `{shown}` holds spaces, control or non-ASCII characters (percent-encode them)"
        ));
    }
    // RFC 3986 characters only: `\`, `"`, `<`, `>`, `{`, `}`, `|`, `^` and `` ` ``
    // are not part of any URI (and some parsers read `\` as `/`).
    if let Some(c) = s.chars().find(|c| "\\\"<>{}|^`".contains(*c)) {
        return Err(format!(
            "URI `{shown}` holds `{c}`, which RFC 3986 does not allow (percent-encode it)"
        ));
    }
    if let Some(after) = rest.strip_prefix("//") {
        let host = after.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() && scheme != "file" {
            return Err(format!("URI `{shown}` has an empty authority"));
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        // Dot segments (also percent-encoded) would let a name escape a permitted
        // prefix for any verifier that normalises the path (RFC 3986 5.2.4).
        let path = after.split(['?', '#']).next().unwrap_or("");
        let dotted = path.split('/').skip(1).any(|seg| {
            let seg = seg.to_ascii_lowercase().replace("%2e", ".");
            seg == "." || seg == ".."
        });
        if dotted {
            return Err(format!("URI `{shown}` has a `.` or `..` path segment"));
        }
    }
    if scheme.eq_ignore_ascii_case("spiffe") {
        let after = rest
            .strip_prefix("//")
            .ok_or_else(|| format!("SPIFFE ID `{shown}` must start with spiffe://"))?;
        let host = after.split('/').next().unwrap_or("");
        parse_dns(host, false).map_err(|m| format!("SPIFFE trust domain: {m}"))?;
    }
    Ok(s.to_string())
}

fn parse_email(s: &str) -> Result<String, String> {
    let shown = printable(s);
    if s.len() > MAX_EMAIL {
        return Err(format!(
            "email `{shown}` is longer than {MAX_EMAIL} characters"
        ));
    }
    let (local, domain) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("`{shown}` is not an email address (no @)"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(format!(
            "email `{shown}`: the local part must be 1-64 characters"
        ));
    }
    if !local
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b"@()<>[]:;,\\\"".contains(&b))
    {
        return Err(format!(
            "email `{shown}`: the local part holds characters mtlsca does not accept"
        ));
    }
    let domain = parse_dns(domain, false).map_err(|m| format!("email `{shown}`: domain: {m}"))?;
    Ok(format!("{local}@{domain}"))
}

/// Check a subject attribute value: bounded length, no control characters.
pub fn check_dn_value(attr: &str, s: &str) -> Result<String, String> {
    let v = s.trim();
    if v.is_empty() {
        return Err(format!("{attr} is empty"));
    }
    if v.chars().count() > MAX_DN_ATTR {
        return Err(format!(
            "{attr} `{}` is longer than {MAX_DN_ATTR} characters",
            printable(v)
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(format!(
            "{attr} `{}` holds control characters",
            printable(v)
        ));
    }
    Ok(v.to_string())
}

/// A country: two ASCII letters (ISO 3166-1 alpha-2), uppercased.
pub fn check_country(s: &str) -> Result<String, String> {
    let v = s.trim();
    if v.len() == 2 && v.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(v.to_ascii_uppercase())
    } else {
        Err(format!(
            "country `{}` must be a two-letter ISO 3166 code such as DE or US",
            printable(v)
        ))
    }
}

/// A name pattern: DNS domain (`corp.internal` matches itself and every name under
/// it), IP range in CIDR, URI prefix (`spiffe://corp/`), or email domain (`@corp.example`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Dns(String),
    Ip { net: IpAddr, prefix: u8 },
    Uri(String),
    Email(String),
}

impl Pattern {
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let s = s.trim();
        if s.contains("://") {
            return parse_uri(s).map(Pattern::Uri);
        }
        if let Some(domain) = s.strip_prefix('@') {
            return parse_dns(domain, false).map(Pattern::Email);
        }
        if s.contains('/') || s.parse::<IpAddr>().is_ok() {
            return parse_cidr(s).map(|(net, prefix)| Pattern::Ip { net, prefix });
        }
        let domain = s.trim_start_matches("*.").trim_start_matches('.');
        parse_dns(domain, false).map(Pattern::Dns)
    }

    pub fn kind(&self) -> NameKind {
        match self {
            Pattern::Dns(_) => NameKind::Dns,
            Pattern::Ip { .. } => NameKind::Ip,
            Pattern::Uri(_) => NameKind::Uri,
            Pattern::Email(_) => NameKind::Email,
        }
    }

    pub fn as_text(&self) -> String {
        match self {
            Pattern::Dns(d) => d.clone(),
            Pattern::Ip { net, prefix } => format!("{net}/{prefix}"),
            Pattern::Uri(u) => u.clone(),
            Pattern::Email(d) => format!("@{d}"),
        }
    }

    /// Whether `name` lies within this pattern. Names of another kind do not match.
    pub fn matches(&self, name: &SanName) -> bool {
        match (self, name) {
            (Pattern::Dns(d), SanName::Dns(n)) => dns_within(n.trim_start_matches("*."), d),
            (Pattern::Ip { net, prefix }, SanName::Ip(ip)) => ip_within(*ip, *net, *prefix),
            // A prefix ends on a boundary: `spiffe://corp.internal` covers
            // `spiffe://corp.internal/x`, not `spiffe://corp.internal.evil.example/x`.
            (Pattern::Uri(p), SanName::Uri(u)) => u.strip_prefix(p.as_str()).is_some_and(|rest| {
                rest.is_empty() || p.ends_with('/') || rest.starts_with(['/', '?', '#'])
            }),
            (Pattern::Email(d), SanName::Email(e)) => e
                .rsplit_once('@')
                .is_some_and(|(_, domain)| dns_within(domain, d)),
            _ => false,
        }
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

/// `name` equals `domain` or is a subdomain of it.
pub fn dns_within(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

pub fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{}` is not an IP address or CIDR range", printable(s)))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{}`: prefix length must be 0-{max}", printable(s)))?,
    };
    if !ip_within(ip, ip, prefix) || mask(ip, prefix) != ip {
        return Err(format!(
            "`{}` has host bits set below the prefix (did you mean {}/{prefix}?)",
            printable(s),
            mask(ip, prefix)
        ));
    }
    Ok((ip, prefix))
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

pub fn ip_within(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    ip.is_ipv4() == net.is_ipv4() && mask(ip, prefix) == mask(net, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_patterns_match_on_boundaries_and_dot_segments_are_refused() {
        let p = Pattern::parse("spiffe://corp.internal").unwrap();
        let uri = |s: &str| SanName::parse(NameKind::Uri, s).unwrap();
        assert!(p.matches(&uri("spiffe://corp.internal/ns/prod/sa/web")));
        assert!(!p.matches(&uri("spiffe://corp.internal.evil.example/x")));
        assert!(!p.matches(&uri("spiffe://corp.internalx/x")));
        let q = Pattern::parse("spiffe://corp.internal/ns/prod").unwrap();
        assert!(q.matches(&uri("spiffe://corp.internal/ns/prod/sa/web")));
        assert!(!q.matches(&uri("spiffe://corp.internal/ns/production/sa/web")));
        for bad in [
            "spiffe://corp.internal\\evil/x",
            "https://corp.internal/a\"b",
            "https://corp.internal/{x}",
            "spiffe://corp.internal/ns/prod/../admin",
            "spiffe://corp.internal/./x",
            "https://corp.internal/a/%2E%2e/b",
        ] {
            assert!(SanName::parse(NameKind::Uri, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names() {
        assert_eq!(
            parse_dns("Web-01.Corp.Internal", true).unwrap(),
            "web-01.corp.internal"
        );
        assert!(parse_dns("*.corp.internal", true).is_ok());
        for bad in [
            "", "a..b", "-a.b", "a-.b", "a b.c", "a_b.c", "*.com", "a.*.b", "f*o.bar", "1.2.3.4",
            "a.123", "x\n.y",
        ] {
            assert!(parse_dns(bad, true).is_err(), "{bad:?}");
        }
        assert!(parse_dns(&"a".repeat(64), true).is_err());
        assert!(parse_dns(&format!("{}.x", "a.".repeat(130)), true).is_err());
        assert!(parse_dns("*.corp.internal", false).is_err());
    }

    #[test]
    fn uris_and_emails() {
        assert!(parse_uri("spiffe://corp.internal/ns/prod/sa/web").is_ok());
        assert!(parse_uri("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427").is_ok());
        for bad in [
            "no-scheme",
            "1http://x",
            "http://",
            "spiffe:x",
            "http://a b",
            "spiffe://bad_host/x",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_email("alice@Corp.Example").unwrap(),
            "alice@corp.example"
        );
        for bad in [
            "alice",
            "@corp.example",
            "a b@c.d",
            "alice@",
            "alice@bad_domain",
            "a<b>@c.de",
        ] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_their_kind_only() {
        let dns = Pattern::parse("corp.internal").unwrap();
        assert!(dns.matches(&SanName::Dns("corp.internal".into())));
        assert!(dns.matches(&SanName::Dns("a.b.corp.internal".into())));
        assert!(dns.matches(&SanName::Dns("*.corp.internal".into())));
        assert!(!dns.matches(&SanName::Dns("evilcorp.internal".into())));
        assert!(!dns.matches(&SanName::Dns("corp.internal.evil".into())));
        let ip = Pattern::parse("10.0.0.0/8").unwrap();
        assert!(ip.matches(&SanName::Ip("10.1.2.3".parse().unwrap())));
        assert!(!ip.matches(&SanName::Ip("11.0.0.1".parse().unwrap())));
        assert!(!ip.matches(&SanName::Ip("::1".parse().unwrap())));
        assert!(Pattern::parse("10.0.0.1/8").is_err());
        let email = Pattern::parse("@corp.example").unwrap();
        assert!(email.matches(&SanName::Email("a@corp.example".into())));
        assert!(!email.matches(&SanName::Email("a@example".into())));
        let uri = Pattern::parse("spiffe://corp.internal/").unwrap();
        assert!(uri.matches(&SanName::Uri("spiffe://corp.internal/web".into())));
        assert!(!dns.matches(&SanName::Uri("spiffe://corp.internal/web".into())));
    }

    #[test]
    fn dn_values() {
        assert!(check_dn_value("CN", "Alice Example").is_ok());
        assert!(check_dn_value("CN", "").is_err());
        assert!(check_dn_value("CN", &"x".repeat(65)).is_err());
        assert!(check_dn_value("CN", "a\u{7}b").is_err());
        assert_eq!(check_country("de").unwrap(), "DE");
        assert!(check_country("DEU").is_err());
    }
}
