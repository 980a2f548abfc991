//! Names: subjectAltName values and subject attributes, their syntax, and the
//! patterns (profile `permitted`, CA name constraints) that bound them. Requested
//! names are parsed here and never copied into a certificate unchecked.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::role::NameKind;
pub use crate::text::{printable, unsafe_on_terminal};

/// One subjectAltName, in canonical form (DNS names and email domains lowercased).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SanName {
    /// A dNSName (lowercase; may be a wildcard `*.domain`).
    Dns(String),
    /// An iPAddress.
    Ip(IpAddr),
    /// A uniformResourceIdentifier, as given (checked, never normalised).
    Uri(String),
    /// An rfc822Name (its domain lowercased).
    Email(String),
}

const MAX_DNS: usize = 253;
const MAX_URI: usize = 2048;
const MAX_EMAIL: usize = 254;
/// Upper bound of X.520 ub-common-name and ub-organization-name.
pub const MAX_DN_ATTR: usize = 64;

impl SanName {
    /// The kind of this name.
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

    /// A DNS name whose leftmost label is `*`.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, SanName::Dns(d) if d.starts_with("*."))
    }

    /// Check a requested name of a kind and give its canonical form; the error
    /// says what is wrong, showing the value safely.
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
    if scheme.eq_ignore_ascii_case("spiffe") {
        return check_spiffe_id(s, scheme, rest).map(|()| s.to_string());
    }
    let (authority, path) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    if let Some(authority) = authority {
        if authority.is_empty() && scheme != "file" {
            return Err(format!("URI `{shown}` has an empty authority"));
        }
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            return Err(format!(
                "URI `{shown}` has userinfo `{}@`: the part before `@` is not the host \
                 (this URI's host is `{}`); userinfo is not accepted",
                printable(userinfo),
                printable(host)
            ));
        }
        let host = authority.rsplit_once(':').map_or(authority, |(h, port)| {
            if h.starts_with('[') || port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                authority
            }
        });
        if host.ends_with('.') {
            return Err(format!(
                "URI `{shown}`: the host ends in `.` (name constraints compare hosts without it; write the host without the trailing dot)"
            ));
        }
        if authority.contains('%') {
            return Err(format!(
                "URI `{shown}`: percent-encoding in the host is not accepted"
            ));
        }
    }
    // Dot segments would let a name escape a permitted prefix for any verifier
    // that normalises the path (RFC 3986 5.2.4). They are looked for as a server
    // would see them: percent-decoded (a decoded `/` or `\` splits a segment)
    // and without `;parameters` (`..;` is `..`).
    for raw in path.split('/') {
        let decoded = percent_decode(raw)
            .ok_or_else(|| format!("URI `{shown}` has a malformed percent-encoding"))?;
        let dotted = decoded.split(['/', '\\']).any(|seg| {
            let seg = seg.split(';').next().unwrap_or("");
            seg == "." || seg == ".."
        });
        if dotted {
            return Err(format!(
                "URI `{shown}` has a `.` or `..` path segment (also when percent-encoded or followed by `;`)"
            ));
        }
    }
    Ok(s.to_string())
}

/// Decode `%XX` escapes (bytes that are not UTF-8 are replaced); `None` when a
/// `%` is not followed by two hex digits.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A SPIFFE ID as the SPIFFE ID specification defines it: `spiffe://` in lower
/// case, a trust domain of `[a-z0-9._-]`, a path of segments of
/// `[A-Za-z0-9._-]` (none empty, `.` or `..`); no port, userinfo, query,
/// fragment or percent-encoding. Nothing is normalised: a non-conforming ID is
/// refused, never fixed.
fn check_spiffe_id(s: &str, scheme: &str, rest: &str) -> Result<(), String> {
    let shown = printable(s);
    if scheme != "spiffe" {
        return Err(format!(
            "SPIFFE ID `{shown}`: the scheme must be `spiffe` in lower case"
        ));
    }
    let after = rest
        .strip_prefix("//")
        .ok_or_else(|| format!("SPIFFE ID `{shown}` must start with spiffe://"))?;
    if let Some(c) = after.chars().find(|c| ['?', '#'].contains(c)) {
        let part = if c == '?' { "query" } else { "fragment" };
        return Err(format!("SPIFFE ID `{shown}` cannot have a {part}"));
    }
    let (domain, path) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    if domain.is_empty() {
        return Err(format!("SPIFFE ID `{shown}` has an empty trust domain"));
    }
    if domain.contains('@') {
        return Err(format!(
            "SPIFFE ID `{shown}`: userinfo (the part before `@`) is not allowed; the trust domain comes right after spiffe://"
        ));
    }
    if domain.contains(':') {
        return Err(format!("SPIFFE ID `{shown}`: a port is not allowed"));
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(format!(
            "SPIFFE ID `{shown}`: the trust domain may only hold lower-case letters, digits, `.`, `-` and `_`"
        ));
    }
    if path.is_empty() {
        return Ok(());
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() {
            return Err(format!(
                "SPIFFE ID `{shown}` has an empty path segment (`//` or a trailing `/`)"
            ));
        }
        if seg == "." || seg == ".." {
            return Err(format!(
                "SPIFFE ID `{shown}` has a `.` or `..` path segment"
            ));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(format!(
                "SPIFFE ID `{shown}`: path segments may only hold letters, digits, `.`, `-` and `_` (no percent-encoding, `;` or other characters)"
            ));
        }
    }
    Ok(())
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

/// Whether a subject value (an entity's CN) looks like a host name or an IP
/// address, which OpenSSL and others may read as one: IP literals (also
/// bracketed or with a zone or port), dotted names of host-name characters
/// (letters, digits, `-`, `_`, `*`) with no space, also with a trailing dot
/// (`web.corp.internal.`), a wildcard or a port. A person's or organisation's
/// name (`Alice Example`, `Acme Corp.`, `J. R. R. Tolkien`) does not.
pub fn looks_like_host(s: &str) -> bool {
    let s = s.trim();
    let unbracketed = s
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map(|(inner, _)| inner);
    let ip_candidate = unbracketed.unwrap_or(s);
    let without_zone = ip_candidate.split('%').next().unwrap_or(ip_candidate);
    if without_zone.parse::<IpAddr>().is_ok() {
        return true;
    }
    // `host:port`
    let host = match s.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => s,
    };
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.*".contains(&b))
    {
        return false;
    }
    host.split('.').filter(|l| !l.is_empty()).count() >= 2 || host == "*"
}

/// A name pattern (profile `permitted`, the CA's name constraints). Its text
/// form, as written in profiles and printed back by [`Pattern::as_text`]:
///
/// | text | variant | matches |
/// |---|---|---|
/// | `corp.internal` | `Dns` | DNS names equal to the domain or under it |
/// | `*.corp.internal`, `.corp.internal` | `DnsUnder` | DNS names under the domain only |
/// | `10.0.0.0/8`, `10.0.0.1` | `Ip` | IP addresses in the range |
/// | `spiffe://corp.internal/ns/prod` | `Uri` | URIs that start with the prefix, on a boundary |
/// | `URI:corp.internal` | `UriHost` | URIs whose host is exactly that (RFC 5280 §4.2.1.10) |
/// | `URI:.corp.internal` | `UriHostUnder` | URIs whose host is under the domain |
/// | `@corp.example` | `Email` | mailboxes at exactly that domain (RFC 5280 host form) |
/// | `@.corp.example` | `EmailUnder` | mailboxes at any subdomain of it, not the domain itself |
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pattern {
    /// A DNS domain and every name under it.
    Dns(String),
    /// Only the names under a DNS domain, not the domain itself.
    DnsUnder(String),
    /// An IP range.
    Ip {
        /// The network address (host bits zero).
        net: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// A URI prefix, matched on a boundary (`/`, `?`, `#` or the end).
    Uri(String),
    /// A URI host, exactly (lowercase).
    UriHost(String),
    /// Any URI host under a domain (lowercase, without the leading `.`).
    UriHostUnder(String),
    /// Mailboxes at exactly this domain.
    Email(String),
    /// Mailboxes at any subdomain of this domain.
    EmailUnder(String),
}

/// The prefix that marks a URI host pattern in the text form.
const URI_HOST_TAG: &str = "URI:";

impl Pattern {
    /// Parse the text form (see the table on [`Pattern`]).
    pub fn parse(s: &str) -> Result<Pattern, String> {
        let s = s.trim();
        if let Some(host) = s.strip_prefix(URI_HOST_TAG) {
            return Pattern::parse_uri_host(host);
        }
        if s.contains("://") {
            // A prefix may end in `/` (`spiffe://corp.internal/`): the URI
            // before it must be valid on its own.
            let body = s.strip_suffix('/').filter(|b| !b.ends_with("//"));
            parse_uri(body.unwrap_or(s))?;
            return Ok(Pattern::Uri(s.to_string()));
        }
        if let Some(domain) = s.strip_prefix('@') {
            return match domain.strip_prefix('.') {
                Some(d) => parse_dns(d, false).map(Pattern::EmailUnder),
                None => parse_dns(domain, false).map(Pattern::Email),
            };
        }
        if s.contains('/') || s.parse::<IpAddr>().is_ok() {
            return parse_cidr(s).map(|(net, prefix)| Pattern::Ip { net, prefix });
        }
        match s.strip_prefix("*.").or_else(|| s.strip_prefix('.')) {
            Some(d) => parse_dns(d, false).map(Pattern::DnsUnder),
            None => parse_dns(s, false).map(Pattern::Dns),
        }
    }

    /// Parse a URI host constraint in RFC 5280 §4.2.1.10 form: `corp.internal`
    /// (exactly that host) or `.corp.internal` (any host under it).
    pub fn parse_uri_host(s: &str) -> Result<Pattern, String> {
        let s = s.trim();
        if s.contains(':') || s.contains('/') || s.contains('@') {
            return Err(format!(
                "`{}` is not a URI host: give a host name (`corp.internal`, exactly that host) or a domain with a leading dot (`.corp.internal`, any host under it)",
                printable(s)
            ));
        }
        if s.parse::<IpAddr>().is_ok() {
            return Err(format!(
                "`{}` is an IP address: a URI constraint names a host (RFC 5280 §4.2.1.10)",
                printable(s)
            ));
        }
        match s.strip_prefix('.') {
            Some(d) => parse_dns(d, false).map(Pattern::UriHostUnder),
            None => parse_dns(s, false).map(Pattern::UriHost),
        }
    }

    /// The kind of name this pattern is about.
    pub fn kind(&self) -> NameKind {
        match self {
            Pattern::Dns(_) | Pattern::DnsUnder(_) => NameKind::Dns,
            Pattern::Ip { .. } => NameKind::Ip,
            Pattern::Uri(_) | Pattern::UriHost(_) | Pattern::UriHostUnder(_) => NameKind::Uri,
            Pattern::Email(_) | Pattern::EmailUnder(_) => NameKind::Email,
        }
    }

    /// The text form; [`Pattern::parse`] of it gives this pattern back.
    pub fn as_text(&self) -> String {
        match self {
            Pattern::Dns(d) => d.clone(),
            Pattern::DnsUnder(d) => format!("*.{d}"),
            Pattern::Ip { net, prefix } => format!("{net}/{prefix}"),
            Pattern::Uri(u) => u.clone(),
            Pattern::UriHost(h) => format!("{URI_HOST_TAG}{h}"),
            Pattern::UriHostUnder(d) => format!("{URI_HOST_TAG}.{d}"),
            Pattern::Email(d) => format!("@{d}"),
            Pattern::EmailUnder(d) => format!("@.{d}"),
        }
    }

    /// Whether `name` lies within this pattern. Names of another kind do not match.
    pub fn matches(&self, name: &SanName) -> bool {
        match (self, name) {
            (Pattern::Dns(d), SanName::Dns(n)) => dns_within(n.trim_start_matches("*."), d),
            // `*.corp.internal` stands for names under corp.internal only, so it
            // is under it; a plain name must be strictly below the domain.
            (Pattern::DnsUnder(d), SanName::Dns(n)) => match n.strip_prefix("*.") {
                Some(parent) => dns_within(parent, d),
                None => dns_under(n, d),
            },
            (Pattern::Ip { net, prefix }, SanName::Ip(ip)) => ip_within(*ip, *net, *prefix),
            // A prefix ends on a boundary: `spiffe://corp.internal` covers
            // `spiffe://corp.internal/x`, not `spiffe://corp.internal.evil.example/x`.
            (Pattern::Uri(p), SanName::Uri(u)) => u.strip_prefix(p.as_str()).is_some_and(|rest| {
                rest.is_empty() || p.ends_with('/') || rest.starts_with(['/', '?', '#'])
            }),
            (Pattern::UriHost(h), SanName::Uri(u)) => uri_host_matches(u, h),
            (Pattern::UriHostUnder(d), SanName::Uri(u)) => uri_host_matches(u, &format!(".{d}")),
            (Pattern::Email(d), SanName::Email(e)) => {
                e.rsplit_once('@').is_some_and(|(_, domain)| domain == d)
            }
            (Pattern::EmailUnder(d), SanName::Email(e)) => e
                .rsplit_once('@')
                .is_some_and(|(_, domain)| dns_under(domain, d)),
            _ => false,
        }
    }
}

/// Whether the host of `uri` lies within `base` in RFC 5280 §4.2.1.10 form
/// (`host` exactly, `.domain` any host under it); a URI without a host matches
/// nothing.
fn uri_host_matches(uri: &str, base: &str) -> bool {
    crate::name_constraints::uri_host(uri)
        .is_some_and(|host| crate::name_constraints::uri_host_within(&host, base))
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

/// `name` is a subdomain of `domain` (not `domain` itself).
pub fn dns_under(name: &str, domain: &str) -> bool {
    name.len() > domain.len() && dns_within(name, domain)
}

/// `name` equals `domain` or is a subdomain of it.
pub fn dns_within(name: &str, domain: &str) -> bool {
    name == domain
        || (name.len() > domain.len()
            && name.ends_with(domain)
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.')
}

/// An IP address or CIDR range (`10.0.0.0/8`); host bits below the prefix are
/// an error, not masked away.
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

/// `ip` lies in `net/prefix` (and is of the same family).
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
            "spiffe://Bad.Host/x",
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
        assert!(!email.matches(&SanName::Email("a@sub.corp.example".into())));
        let email_under = Pattern::parse("@.corp.example").unwrap();
        assert!(email_under.matches(&SanName::Email("a@sub.corp.example".into())));
        assert!(email_under.matches(&SanName::Email("a@x.y.corp.example".into())));
        assert!(!email_under.matches(&SanName::Email("a@corp.example".into())));
        assert!(!email_under.matches(&SanName::Email("a@evilcorp.example".into())));
        let uri = Pattern::parse("spiffe://corp.internal/").unwrap();
        assert!(uri.matches(&SanName::Uri("spiffe://corp.internal/web".into())));
        assert!(!dns.matches(&SanName::Uri("spiffe://corp.internal/web".into())));
    }

    #[test]
    fn spiffe_ids_follow_the_spec() {
        for good in [
            "spiffe://corp.internal",
            "spiffe://corp.internal/ns/prod/sa/api",
            "spiffe://trust_domain-1.example/a.b/c-d/E_F",
        ] {
            assert!(parse_uri(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("SPIFFE://corp.internal/x", "lower case"),
            ("Spiffe://corp.internal/x", "lower case"),
            ("spiffe://Corp.Internal/x", "trust domain"),
            ("spiffe://corp.internal/ns/prod/..%2fadmin", "path segments"),
            ("spiffe://corp.internal/ns/%2e%2e/admin", "path segments"),
            ("spiffe://corp.internal/a/..;/b", "path segments"),
            ("spiffe://corp.internal/a/../b", "`..`"),
            ("spiffe://corp.internal/a/./b", "`.`"),
            ("spiffe://corp.internal/a//b", "empty path segment"),
            ("spiffe://corp.internal/a/", "empty path segment"),
            ("spiffe://corp.internal/a?x=1", "query"),
            ("spiffe://corp.internal/a#f", "fragment"),
            ("spiffe://corp.internal:8443/a", "port"),
            ("spiffe://u@corp.internal/a", "userinfo"),
            ("spiffe:///a", "empty trust domain"),
            ("spiffe:corp.internal", "spiffe://"),
        ] {
            let err = parse_uri(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn other_uris_dot_segments_after_decoding_and_userinfo() {
        for good in [
            "https://web.corp.internal/a/b;v=1/c",
            "https://web.corp.internal/a%20b/..x/.y",
            "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "file:///etc/x",
        ] {
            assert!(parse_uri(good).is_ok(), "{good}");
        }
        for bad in [
            "https://web.corp.internal/a/..%2fadmin",
            "https://web.corp.internal/a/..%2Fadmin",
            "https://web.corp.internal/a/x%2f..%2fadmin",
            "https://web.corp.internal/a/..%5cadmin",
            "https://web.corp.internal/a/..;/b",
            "https://web.corp.internal/a/.;x=1/b",
            "https://web.corp.internal/a/%2e%2e%3b/b",
            "https://web.corp.internal/a/..",
            "https://web.corp.internal/a%zz",
            "https://web.corp.internal/a%2",
            "https://web.corp.internal/a%+1",
            "https://web.corp.internal./a",
            "https://web.corp.internal.:443/a",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
        let err = parse_uri("https://web.corp.internal@evil.com/").unwrap_err();
        assert!(err.contains("the part before `@` is not the host"), "{err}");
        assert!(err.contains("`evil.com`"), "{err}");
        assert!(parse_uri("https://web.corp.internal%40evil.com/").is_err());
    }

    #[test]
    fn dns_patterns_under_a_domain_exclude_the_domain() {
        let d = |s: &str| SanName::Dns(s.into());
        for text in ["*.corp.internal", ".corp.internal"] {
            let p = Pattern::parse(text).unwrap();
            assert_eq!(p, Pattern::DnsUnder("corp.internal".into()));
            assert!(p.matches(&d("web.corp.internal")), "{text}");
            assert!(p.matches(&d("a.b.corp.internal")), "{text}");
            assert!(p.matches(&d("*.corp.internal")), "{text}");
            assert!(!p.matches(&d("corp.internal")), "{text}");
            assert!(!p.matches(&d("evilcorp.internal")), "{text}");
        }
        let p = Pattern::parse("corp.internal").unwrap();
        assert!(p.matches(&d("corp.internal")));
        assert!(p.matches(&d("web.corp.internal")));
        assert!(Pattern::parse("*.*.corp.internal").is_err());
        assert!(Pattern::parse("..corp.internal").is_err());
    }

    #[test]
    fn uri_host_patterns() {
        let u = |s: &str| SanName::parse(NameKind::Uri, s).unwrap();
        let exact = Pattern::parse_uri_host("corp.internal").unwrap();
        let under = Pattern::parse_uri_host(".corp.internal").unwrap();
        assert_eq!(exact, Pattern::UriHost("corp.internal".into()));
        assert_eq!(under, Pattern::UriHostUnder("corp.internal".into()));
        assert_eq!(exact.kind(), NameKind::Uri);
        assert!(exact.matches(&u("spiffe://corp.internal/ns/prod/sa/api")));
        assert!(exact.matches(&u("https://corp.internal:8443/x")));
        assert!(!exact.matches(&u("https://web.corp.internal/x")));
        assert!(!exact.matches(&u("spiffe://evil.com/x")));
        assert!(under.matches(&u("https://web.corp.internal/x")));
        assert!(!under.matches(&u("spiffe://corp.internal/x")));
        assert!(!under.matches(&u("https://webcorp.internal/x")));
        for no_host in [
            "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "file:///etc/x",
        ] {
            assert!(!exact.matches(&u(no_host)), "{no_host}");
            assert!(!under.matches(&u(no_host)), "{no_host}");
        }
        // A DNS name is no URI and the reverse.
        assert!(!exact.matches(&SanName::Dns("corp.internal".into())));
        for bad in [
            "spiffe://corp.internal",
            "corp.internal:443",
            "",
            ".",
            "a..b",
            "u@corp.internal",
            "10.0.0.1",
        ] {
            assert!(Pattern::parse_uri_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_print_back_to_themselves() {
        for text in [
            "corp.internal",
            "*.corp.internal",
            ".corp.internal",
            "10.0.0.0/8",
            "10.0.0.1",
            "fd00::/8",
            "spiffe://corp.internal/ns/prod",
            "spiffe://corp.internal/",
            "URI:corp.internal",
            "URI:.corp.internal",
            "@corp.example",
            "@.corp.example",
            " Corp.Internal ",
        ] {
            let p = Pattern::parse(text).unwrap();
            let again = Pattern::parse(&p.as_text()).unwrap();
            assert_eq!(p, again, "{text} -> {}", p.as_text());
            assert_eq!(p.to_string(), p.as_text());
        }
    }

    #[test]
    fn host_like_subject_values() {
        for host in [
            "10.0.0.5",
            "192.168.1.1",
            "::1",
            "fe80::1",
            "[::1]",
            "[fe80::1%eth0]",
            "10.0.0.5:443",
            "web.corp.internal",
            "web.corp.internal.",
            "evil_host.com",
            "*.corp.internal",
            "*",
            "Web.Corp.Internal",
            "a.b",
            "web.corp.internal:8443",
            "xn--bcher-kva.example",
        ] {
            assert!(looks_like_host(host), "{host}");
        }
        for person in [
            "Alice Example",
            "Acme Corp.",
            "J. R. R. Tolkien",
            "Dr. Smith",
            "Alice",
            "Acme GmbH & Co. KG",
            "O'Brien",
            "Zoë Müller",
            "Acme.",
            "",
        ] {
            assert!(!looks_like_host(person), "{person}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "",
            ":",
            "a:",
            "a://",
            "a://@",
            "a://[",
            "a://x/%",
            "a://x/%e",
            "%",
            "spiffe:",
            "spiffe://",
            "spiffe:///",
            "spiffe://a/",
            "spiffe://a//",
            "[",
            "]",
            "[]",
            "[::1",
            "::",
            "1.2.3.4:",
            ":80",
            "*",
            "*.",
            ".",
            "..",
            "@",
            "@.",
            "URI:",
            "URI:.",
            "é://x",
            "a://é",
            "a://x/\u{0}",
        ] {
            let _ = parse_uri(s);
            let _ = looks_like_host(s);
            let _ = Pattern::parse(s);
            let _ = Pattern::parse_uri_host(s);
            let _ = SanName::parse(NameKind::Uri, s);
        }
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
