//! RFC 5280 §4.2.1.10 name constraints: the pure pieces that policy (what the CA
//! signs), the engine's self-check and the verifier (what a relying party accepts)
//! share, so a rule is written once.
//!
//! rustls-webpki 0.103 fails closed on URI constraints (a permitted URI subtree never
//! matches), so mtlsca processes URI subtrees itself: the trust anchor handed to
//! webpki has them removed (`without_uri_subtrees`) and the URI names are checked
//! against them here (`uri_host`, `uri_host_within`).

use std::net::IpAddr;

/// DER tags of the GeneralName choices used in constraints (context-specific).
const TAG_DNS: u8 = 0x82;
const TAG_URI: u8 = 0x86;
const TAG_IP: u8 = 0x87;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_PERMITTED: u8 = 0xa0;
const TAG_EXCLUDED: u8 = 0xa1;

/// The host of a URI with an authority (`scheme://[userinfo@]host[:port]/...`),
/// lowercased, without userinfo, port or IPv6 brackets. `None` for a URI without an
/// authority (`urn:...`) or with an empty host: such a URI cannot satisfy a URI
/// constraint.
pub fn uri_host(uri: &str) -> Option<String> {
    let (_, rest) = uri.split_once(':')?;
    let after = rest.strip_prefix("//")?;
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether a URI's host lies within a URI constraint's base (RFC 5280 §4.2.1.10):
/// a base starting with `.` matches every host under that domain (not the domain
/// itself); any other base matches exactly that host.
pub fn uri_host_within(host: &str, base: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let base = base.to_ascii_lowercase();
    match base.strip_prefix('.') {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host.ends_with(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => host == base,
    }
}

/// One permitted subtree the CA writes into its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subtree {
    /// A DNS domain: the name itself and every name under it.
    Dns(String),
    /// An IP range.
    Ip {
        /// The network address.
        net: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// A URI host (`corp.internal`) or domain (`.corp.internal`), RFC 5280 host form.
    UriHost(String),
}

/// The DER of a NameConstraints value (the whole SEQUENCE, as the extension's
/// OCTET STRING holds it) with only permitted subtrees.
pub fn encode_permitted(subtrees: &[Subtree]) -> Vec<u8> {
    let mut list = Vec::new();
    for s in subtrees {
        let base = match s {
            Subtree::Dns(d) => tlv(TAG_DNS, d.as_bytes()),
            Subtree::UriHost(h) => tlv(TAG_URI, h.as_bytes()),
            Subtree::Ip { net, prefix } => {
                let (addr, len): (Vec<u8>, usize) = match net {
                    IpAddr::V4(a) => (a.octets().to_vec(), 32),
                    IpAddr::V6(a) => (a.octets().to_vec(), 128),
                };
                let mut mask = vec![0u8; len / 8];
                for bit in 0..usize::from(*prefix).min(len) {
                    mask[bit / 8] |= 0x80 >> (bit % 8);
                }
                tlv(TAG_IP, &[addr, mask].concat())
            }
        };
        list.extend(tlv(TAG_SEQUENCE, &base));
    }
    tlv(TAG_SEQUENCE, &tlv(TAG_PERMITTED, &list))
}

/// The permitted and excluded URI bases of NameConstraints *contents* (the bytes
/// inside the SEQUENCE, as a webpki trust anchor holds them). Malformed input
/// yields what could be read.
pub fn uri_subtrees(contents: &[u8]) -> (Vec<String>, Vec<String>) {
    let (mut permitted, mut excluded) = (Vec::new(), Vec::new());
    for (tag, subtrees) in Tlvs(contents) {
        let out = match tag {
            TAG_PERMITTED => &mut permitted,
            TAG_EXCLUDED => &mut excluded,
            _ => continue,
        };
        for (_, subtree) in Tlvs(subtrees) {
            if let Some((TAG_URI, base)) = Tlvs(subtree).next() {
                out.push(String::from_utf8_lossy(base).into_owned());
            }
        }
    }
    (permitted, excluded)
}

/// NameConstraints contents with every URI subtree removed, for rustls-webpki
/// (which rejects all URI names under a URI constraint). `None` when nothing is
/// left. Unreadable input is returned unchanged, so webpki still judges it.
pub fn without_uri_subtrees(contents: &[u8]) -> Option<Vec<u8>> {
    if !well_formed(contents) {
        return Some(contents.to_vec());
    }
    let mut out = Vec::new();
    for (tag, subtrees) in Tlvs(contents) {
        let kept: Vec<u8> = Tlvs(subtrees)
            .filter(|(_, subtree)| !matches!(Tlvs(subtree).next(), Some((TAG_URI, _))))
            .flat_map(|(t, v)| tlv(t, v))
            .collect();
        if !kept.is_empty() {
            out.extend(tlv(tag, &kept));
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `contents` parses as a list of subtree lists of TLVs to its last byte.
fn well_formed(contents: &[u8]) -> bool {
    let mut total = 0;
    for (_, subtrees) in Tlvs(contents) {
        let mut inner = 0;
        for (_, v) in Tlvs(subtrees) {
            inner += encoded_len(v.len());
        }
        if inner != subtrees.len() {
            return false;
        }
        total += encoded_len(subtrees.len());
    }
    total == contents.len()
}

fn encoded_len(content: usize) -> usize {
    1 + len_bytes(content).len() + content
}

fn len_bytes(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n
        .to_be_bytes()
        .iter()
        .copied()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(len_bytes(value.len()));
    out.extend_from_slice(value);
    out
}

/// Iterate over the DER TLVs of a byte string (stops at the first malformed one).
struct Tlvs<'a>(&'a [u8]);

impl<'a> Iterator for Tlvs<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                self.0 = &[];
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            self.0 = &[];
            return None;
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Some((tag, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_hosts() {
        let h = |s: &str| uri_host(s);
        assert_eq!(
            h("spiffe://corp.internal/ns/a").as_deref(),
            Some("corp.internal")
        );
        assert_eq!(
            h("https://web.corp.internal@evil.com/").as_deref(),
            Some("evil.com")
        );
        assert_eq!(
            h("https://Web.Corp.Internal:8443/x").as_deref(),
            Some("web.corp.internal")
        );
        assert_eq!(h("https://[::1]:8443/x").as_deref(), Some("::1"));
        assert_eq!(h("urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"), None);
        assert_eq!(h("https:///x"), None);
        assert_eq!(h("no-scheme"), None);
    }

    #[test]
    fn host_or_domain_bases() {
        assert!(uri_host_within("corp.internal", "corp.internal"));
        assert!(!uri_host_within("a.corp.internal", "corp.internal"));
        assert!(uri_host_within("a.corp.internal", ".corp.internal"));
        assert!(!uri_host_within("corp.internal", ".corp.internal"));
        assert!(!uri_host_within("evilcorp.internal", ".corp.internal"));
        assert!(!uri_host_within("evil.com", "corp.internal"));
    }

    #[test]
    fn encode_read_and_strip() {
        let der = encode_permitted(&[
            Subtree::Dns("corp.internal".into()),
            Subtree::Ip {
                net: "10.0.0.0".parse().unwrap(),
                prefix: 8,
            },
            Subtree::UriHost("corp.internal".into()),
            Subtree::UriHost(".corp.internal".into()),
        ]);
        // Parses as a NameConstraints extension for x509-parser.
        use x509_parser::prelude::FromDer;
        let (rest, nc) = x509_parser::extensions::NameConstraints::from_der(&der).expect("parses");
        assert!(rest.is_empty());
        assert_eq!(nc.permitted_subtrees.as_ref().map(|p| p.len()), Some(4));
        let (_, contents) = Tlvs(&der).next().unwrap();
        let (permitted, excluded) = uri_subtrees(contents);
        assert_eq!(permitted, vec!["corp.internal", ".corp.internal"]);
        assert!(excluded.is_empty());
        let stripped = without_uri_subtrees(contents).unwrap();
        assert!(uri_subtrees(&stripped).0.is_empty());
        assert_eq!(Tlvs(&stripped).count(), 1);
        let only_uri = encode_permitted(&[Subtree::UriHost("x.test".into())]);
        let (_, c) = Tlvs(&only_uri).next().unwrap();
        assert_eq!(without_uri_subtrees(c), None);
        // Garbage is handed back for webpki to judge.
        assert_eq!(without_uri_subtrees(&[0xa0, 0x05]), Some(vec![0xa0, 0x05]));
    }

    #[test]
    fn long_lengths() {
        let long = "a".repeat(300);
        let der = encode_permitted(&[Subtree::UriHost(long.clone())]);
        let (_, contents) = Tlvs(&der).next().unwrap();
        assert_eq!(uri_subtrees(contents).0, vec![long]);
    }
}

/// Whether an email address (an rfc822Name, or a subject emailAddress) lies within
/// an rfc822Name constraint's base, in the three forms of RFC 5280 §4.2.1.10: a
/// mailbox (`user@host`, matched exactly: the local part as written, the host
/// case-insensitively), a host (`host`: every mailbox on that host), or a domain
/// (`.domain`: every mailbox on a host under that domain, not on the domain
/// itself). Characters such as `*` are literal. `None` when the address or the
/// base is malformed (no `@`, or more than one): such a name cannot be judged and
/// fails the constraint.
pub fn email_within(email: &str, base: &str) -> Option<bool> {
    let (local, host) = email.split_once('@')?;
    if local.is_empty() || host.is_empty() || host.contains('@') {
        return None;
    }
    if base.is_empty() {
        return None;
    }
    if let Some((b_local, b_host)) = base.split_once('@') {
        if b_local.is_empty() || b_host.is_empty() || b_host.contains('@') {
            return None;
        }
        return Some(local == b_local && host.eq_ignore_ascii_case(b_host));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let base = base.to_ascii_lowercase();
    Some(match base.strip_prefix('.') {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host.ends_with(domain)
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => host == base,
    })
}

/// One attribute of a distinguished name, as compared for directoryName
/// constraints: its OID (dotted) and its value, case-folded with inner white
/// space collapsed when it is a string (RFC 5280 §7.1, simplified), else its DER.
pub type DnAttribute = (String, Vec<u8>);

/// The relative distinguished names of a Name, each as its attributes in order.
pub fn dn_rdns(name: &x509_parser::x509::X509Name<'_>) -> Vec<Vec<DnAttribute>> {
    name.iter()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let value = match atv.as_str() {
                        Ok(s) => s
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                            .to_lowercase()
                            .into_bytes(),
                        Err(_) => atv.attr_value().data.to_vec(),
                    };
                    (atv.attr_type().to_id_string(), value)
                })
                .collect()
        })
        .collect()
}

/// RFC 5280 §4.2.1.10 directoryName: a name is within a base when the base's
/// RDNs are the first RDNs of the name (the name is the base or below it).
pub fn dn_within(name: &[Vec<DnAttribute>], base: &[Vec<DnAttribute>]) -> bool {
    base.len() <= name.len()
        && base.iter().zip(name).all(|(b, n)| {
            let (mut b, mut n) = (b.clone(), n.clone());
            b.sort();
            n.sort();
            b == n
        })
}

#[cfg(test)]
mod email_tests {
    use super::email_within;

    #[test]
    fn rfc822_constraints_in_their_three_forms() {
        // A mailbox: exact, the host without regard to case.
        assert_eq!(
            email_within("foo@example.com", "foo@example.com"),
            Some(true)
        );
        assert_eq!(
            email_within("foo@EXAMPLE.com", "foo@example.com"),
            Some(true)
        );
        assert_eq!(
            email_within("Foo@example.com", "foo@example.com"),
            Some(false)
        );
        assert_eq!(
            email_within("bar@example.com", "foo@example.com"),
            Some(false)
        );
        // `*` is a literal character.
        assert_eq!(email_within("*@example.com", "*@example.com"), Some(true));
        assert_eq!(
            email_within("user@example.com", "*@example.com"),
            Some(false)
        );
        assert_eq!(email_within("*@example.com", "**@example.com"), Some(false));
        // A host: every mailbox on it, not on hosts below it.
        assert_eq!(email_within("foo@example.com", "example.com"), Some(true));
        assert_eq!(
            email_within("foo@sub.example.com", "example.com"),
            Some(false)
        );
        // A domain: every host below it, not the domain itself.
        assert_eq!(
            email_within("foo@sub.example.com", ".example.com"),
            Some(true)
        );
        assert_eq!(email_within("foo@example.com", ".example.com"), Some(false));
        assert_eq!(
            email_within("foo@badexample.com", ".example.com"),
            Some(false)
        );
        // Malformed addresses and bases cannot be judged.
        assert_eq!(
            email_within("invalid@address@example.com", "example.com"),
            None
        );
        assert_eq!(
            email_within("foo@example.com", "invalid@invalid@example.com"),
            None
        );
    }
}
