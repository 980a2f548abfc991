//! RFC 5280 §6.1 path validation for the chains rustls-webpki refuses for want of
//! a feature, not for a fault: rfc822Name and directoryName name constraints (and
//! URI constraints in an intermediate), self-issued intermediates (exempt from
//! pathLenConstraint, §6.1.4 (l), and from name constraints, §6.1.3 (b)), and a
//! CA certificate in leaf position under `--purpose` (RFC 5280 says nothing
//! against it). It runs only after webpki refused such a chain for one of those
//! reasons ([`applies`]); the path it finds then goes through the same checks as
//! a webpki path (profile, revocation sources, findings). CRL files are webpki's:
//! with CRLs given, this validator is not used.
//!
//! Signatures are verified with ring through x509-parser; the algorithms are
//! those webpki accepts (RSA of 2048 bits or more, ECDSA P-256/P-384, Ed25519).

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, NameConstraints, ParsedExtension};
use x509_parser::oid_registry as oids;

use crate::inspect::{self, asn1_time};
use crate::name_constraints::{dn_rdns, dn_within, email_within, uri_host, uri_host_within};
use crate::names::printable;

/// The most intermediates a path may have (as webpki's default depth).
const MAX_INTERMEDIATES: usize = 6;
/// The most signature checks one search may make.
const MAX_SIGNATURE_CHECKS: u32 = 200;

/// What the validator is given.
pub(crate) struct Input<'a, 'b> {
    pub leaf: &'b X509Certificate<'a>,
    pub intermediates: &'b [X509Certificate<'a>],
    pub anchors: &'b [X509Certificate<'a>],
    pub at: OffsetDateTime,
    /// The dotted EKU OID each CA's EKU (when present) must allow.
    pub eku: &'static str,
    /// Whether a CA certificate may be the leaf (`--purpose`, not `--role`).
    pub allow_ca_leaf: bool,
}

/// A path found: indexes into the intermediates (leaf side first) and the anchor.
pub(crate) struct Found {
    pub intermediates: Vec<usize>,
    pub anchor: usize,
}

/// Whether a chain webpki refused with `err` may be one this validator handles.
pub(crate) fn applies(
    err: &webpki::Error,
    leaf_is_ca: bool,
    allow_ca_leaf: bool,
    intermediates: &[X509Certificate<'_>],
    anchors: &[X509Certificate<'_>],
) -> bool {
    let self_issued = intermediates.iter().any(self_issued);
    let unsupported_nc = intermediates
        .iter()
        .chain(anchors)
        .any(|c| name_constraints(c).is_some_and(has_unsupported_subtrees));
    match err {
        webpki::Error::CaUsedAsEndEntity => leaf_is_ca && allow_ca_leaf,
        webpki::Error::PathLenConstraintViolated => self_issued,
        webpki::Error::NameConstraintViolation => self_issued || unsupported_nc,
        // webpki reports the error of the last candidate it tried: a self-issued
        // CA of the same name but another key reads as a bad signature.
        webpki::Error::InvalidSignatureForPublicKey | webpki::Error::UnknownIssuer => {
            self_issued || unsupported_nc
        }
        _ => false,
    }
}

fn self_issued(c: &X509Certificate<'_>) -> bool {
    c.subject().as_raw() == c.issuer().as_raw()
}

fn name_constraints<'c>(c: &'c X509Certificate<'_>) -> Option<&'c NameConstraints<'c>> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::NameConstraints(nc) => Some(nc),
            _ => None,
        })
}

/// Subtrees webpki cannot process: rfc822Name, directoryName, URI.
fn has_unsupported_subtrees(nc: &NameConstraints<'_>) -> bool {
    nc.permitted_subtrees
        .iter()
        .chain(nc.excluded_subtrees.iter())
        .flatten()
        .any(|t| {
            matches!(
                t.base,
                GeneralName::RFC822Name(_) | GeneralName::DirectoryName(_) | GeneralName::URI(_)
            )
        })
}

/// Find a valid path from the leaf to an anchor. `Err` holds why the first
/// complete candidate failed (or that none was found).
pub(crate) fn find_path(inp: &Input<'_, '_>) -> Result<Found, String> {
    if !inp.allow_ca_leaf && is_ca(inp.leaf) {
        return Err("certificate is a CA certificate used as a leaf".into());
    }
    let mut chain = Vec::new();
    let mut budget = MAX_SIGNATURE_CHECKS;
    let mut first_err = None;
    match search(inp, &mut chain, &mut budget, &mut first_err) {
        Some(f) => Ok(f),
        None => Err(first_err.unwrap_or_else(|| {
            "certificate does not chain to a trusted root (no path from it to a trust anchor with the given intermediates)".into()
        })),
    }
}

fn issued_by(child: &X509Certificate<'_>, parent: &X509Certificate<'_>, budget: &mut u32) -> bool {
    if *budget == 0 || child.issuer().as_raw() != parent.subject().as_raw() {
        return false;
    }
    *budget -= 1;
    // x509-parser (ring) still verifies SHA-1 RSA signatures; relying parties
    // and webpki do not.
    let alg = &child.signature_algorithm.algorithm;
    if *alg == oids::OID_PKCS1_SHA1WITHRSA || *alg == oids::OID_SHA1_WITH_RSA {
        return false;
    }
    child.verify_signature(Some(parent.public_key())).is_ok()
}

fn search(
    inp: &Input<'_, '_>,
    chain: &mut Vec<usize>,
    budget: &mut u32,
    first_err: &mut Option<String>,
) -> Option<Found> {
    let current = chain.last().map_or(inp.leaf, |&i| &inp.intermediates[i]);
    for (a, anchor) in inp.anchors.iter().enumerate() {
        if issued_by(current, anchor, budget) {
            match check_path(inp, chain, a) {
                Ok(()) => {
                    return Some(Found {
                        intermediates: chain.clone(),
                        anchor: a,
                    })
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    if chain.len() >= MAX_INTERMEDIATES {
        return None;
    }
    for (i, ca) in inp.intermediates.iter().enumerate() {
        if chain.contains(&i) || ca.as_raw() == inp.leaf.as_raw() {
            continue;
        }
        if issued_by(current, ca, budget) {
            chain.push(i);
            if let Some(f) = search(inp, chain, budget, first_err) {
                return Some(f);
            }
            chain.pop();
        }
    }
    None
}

fn is_ca(c: &X509Certificate<'_>) -> bool {
    c.basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
}

fn subject_text(c: &X509Certificate<'_>) -> String {
    inspect::dn_string(c.subject())
}

/// One complete candidate: `chain` indexes the intermediates leaf side first.
fn check_path(inp: &Input<'_, '_>, chain: &[usize], anchor: usize) -> Result<(), String> {
    // Top-down: the intermediates from the anchor's side, then the leaf.
    let below: Vec<&X509Certificate<'_>> = chain
        .iter()
        .rev()
        .map(|&i| &inp.intermediates[i])
        .chain(std::iter::once(inp.leaf))
        .collect();
    let n = below.len();
    let at = inp.at.replace_nanosecond(0).unwrap_or(inp.at);
    let mut max_path_len: Option<u32> = None;
    for (k, c) in below.iter().enumerate() {
        let last = k + 1 == n;
        let who = if last {
            "certificate".to_string()
        } else {
            format!("intermediate CA `{}`", subject_text(c))
        };
        let v = c.validity();
        if let Some(na) = asn1_time(v.not_after).filter(|na| at > *na) {
            return Err(format!("{who} expired on {}", super::human_time(na)));
        }
        if let Some(nb) = asn1_time(v.not_before).filter(|nb| at < *nb) {
            return Err(format!(
                "{who} is not valid before {}",
                super::human_time(nb)
            ));
        }
        if last {
            break;
        }
        // §6.1.4 (k): an intermediate is a CA.
        let Some(bc) = c.basic_constraints().ok().flatten().map(|b| b.value) else {
            return Err(format!(
                "{who} signs certificates but has no basicConstraints extension"
            ));
        };
        if !bc.ca {
            return Err(format!("{who} signs certificates but is not a CA"));
        }
        // §6.1.4 (n)
        if let Ok(Some(ku)) = c.key_usage() {
            if !ku.value.key_cert_sign() {
                return Err(format!(
                    "{who} signs certificates but its keyUsage lacks keyCertSign"
                ));
            }
        }
        // A CA's EKU, when present, limits what it may issue (as webpki does).
        if let Ok(Some(eku)) = c.extended_key_usage() {
            let e = eku.value;
            let allowed = e.any
                || e.other.iter().any(|o| o.to_id_string() == inp.eku)
                || (inp.eku == "1.3.6.1.5.5.7.3.1" && e.server_auth)
                || (inp.eku == "1.3.6.1.5.5.7.3.2" && e.client_auth);
            if !allowed {
                return Err(format!(
                    "certificate's issuing CA `{}` does not allow the purpose in its EKU",
                    subject_text(c)
                ));
            }
        }
        // §6.1.4 (l), (m): self-issued intermediates do not count.
        if !self_issued(c) {
            match max_path_len {
                Some(0) => {
                    return Err(
                        "certificate chain is longer than a CA's pathLenConstraint allows".into(),
                    )
                }
                Some(m) => max_path_len = Some(m - 1),
                None => {}
            }
        }
        if let Some(p) = bc.path_len_constraint {
            max_path_len = Some(max_path_len.map_or(p, |m| m.min(p)));
        }
    }
    // Name constraints of the anchor and of each intermediate, over the
    // certificates below it (self-issued intermediates exempt, §6.1.3 (b)).
    let holders: Vec<&X509Certificate<'_>> = std::iter::once(&inp.anchors[anchor])
        .chain(below[..n - 1].iter().copied())
        .collect();
    for (h, holder) in holders.iter().enumerate() {
        let Some(nc) = name_constraints(holder) else {
            continue;
        };
        // holders[h] constrains below[h..] (the anchor is above below[0]).
        for (k, c) in below.iter().enumerate().skip(h) {
            let last = k + 1 == n;
            if !last && self_issued(c) {
                continue;
            }
            if let Err(why) = names_conform(c, nc) {
                let who = if last {
                    "certificate".to_string()
                } else {
                    format!("intermediate CA `{}`", subject_text(c))
                };
                return Err(format!(
                    "{who} has a name the name constraints of `{}` forbid: {why}",
                    subject_text(holder)
                ));
            }
        }
    }
    Ok(())
}

/// The subject emailAddress attributes of the certificates below each CA of a
/// path against that CA's rfc822Name constraints. rustls-webpki checks SAN names
/// only, so on a path it accepted an address in the subject would escape them.
/// `path` runs from the leaf up to the anchor.
pub(crate) fn subject_email_problem(path: &[&X509Certificate<'_>]) -> Option<String> {
    for (h, holder) in path.iter().enumerate().skip(1) {
        let Some(nc) = name_constraints(holder) else {
            continue;
        };
        for (k, c) in path[..h].iter().enumerate() {
            if k > 0 && self_issued(c) {
                continue;
            }
            let emails: Vec<Name<'_>> = c
                .subject()
                .iter_email()
                .filter_map(|e| e.as_str().ok())
                .map(|e| Name::Email(e.to_string()))
                .collect();
            if let Err(why) = conform(emails, nc) {
                let who = if k == 0 {
                    "certificate".to_string()
                } else {
                    format!("intermediate CA `{}`", subject_text(c))
                };
                return Some(format!(
                    "{who} has a subject emailAddress the name constraints of `{}` forbid: {why}",
                    subject_text(holder)
                ));
            }
        }
    }
    None
}

/// A name of a certificate, as name constraints see it.
enum Name<'a> {
    Dns(&'a str),
    Ip(&'a [u8]),
    Email(String),
    Uri(&'a str),
    Dn(Vec<Vec<crate::name_constraints::DnAttribute>>),
    /// Another GeneralName form (by its context tag).
    Other(u8),
}

fn tag_of(g: &GeneralName<'_>) -> u8 {
    match g {
        GeneralName::OtherName(..) => 0,
        GeneralName::RFC822Name(_) => 1,
        GeneralName::DNSName(_) => 2,
        GeneralName::X400Address(_) => 3,
        GeneralName::DirectoryName(_) => 4,
        GeneralName::EDIPartyName(_) => 5,
        GeneralName::URI(_) => 6,
        GeneralName::IPAddress(_) => 7,
        GeneralName::RegisteredID(_) => 8,
        GeneralName::Invalid(t, _) => t.0 as u8,
    }
}

fn names_of<'a>(c: &'a X509Certificate<'a>) -> Vec<Name<'a>> {
    let mut out = Vec::new();
    if c.subject().iter().next().is_some() {
        out.push(Name::Dn(dn_rdns(c.subject())));
    }
    for e in c.subject().iter_email() {
        if let Ok(s) = e.as_str() {
            out.push(Name::Email(s.to_string()));
        }
    }
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for g in &san.value.general_names {
            out.push(match g {
                GeneralName::DNSName(d) => Name::Dns(d),
                GeneralName::IPAddress(b) => Name::Ip(b),
                GeneralName::RFC822Name(e) => Name::Email(e.to_string()),
                GeneralName::URI(u) => Name::Uri(u),
                GeneralName::DirectoryName(n) => Name::Dn(dn_rdns(n)),
                other => Name::Other(tag_of(other)),
            });
        }
    }
    out
}

/// Whether `name` is within `base`; `None` when the two are of different forms,
/// `Some(None)` when it cannot be judged (malformed): that fails the constraint.
fn within(name: &Name<'_>, base: &GeneralName<'_>) -> Option<Option<bool>> {
    Some(match (name, base) {
        (Name::Dns(n), GeneralName::DNSName(b)) => Some(dns_within_base(n, b)),
        (Name::Ip(n), GeneralName::IPAddress(b)) => ip_within_base(n, b),
        (Name::Email(n), GeneralName::RFC822Name(b)) => email_within(n, b),
        (Name::Uri(n), GeneralName::URI(b)) => {
            Some(uri_host(n).is_some_and(|h| uri_host_within(&h, b)))
        }
        (Name::Dn(n), GeneralName::DirectoryName(b)) => Some(dn_within(n, &dn_rdns(b))),
        (Name::Other(t), b) if *t == tag_of(b) => None,
        _ => return None,
    })
}

fn dns_within_base(name: &str, base: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let base = base.trim_end_matches('.').to_ascii_lowercase();
    if base.is_empty() {
        return true;
    }
    match base.strip_prefix('.') {
        Some(domain) => crate::names::dns_under(&name, domain),
        None => crate::names::dns_within(&name, &base),
    }
}

fn ip_within_base(name: &[u8], base: &[u8]) -> Option<bool> {
    if base.len() != 2 * name.len() || !(name.len() == 4 || name.len() == 16) {
        return Some(false).filter(|_| base.len() == 8 || base.len() == 32);
    }
    let (net, mask) = base.split_at(name.len());
    // The mask is contiguous ones then zeros.
    let bits: Vec<bool> = mask
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .collect();
    if bits.windows(2).any(|w| !w[0] && w[1]) {
        return None;
    }
    Some(
        name.iter()
            .zip(net)
            .zip(mask)
            .all(|((n, b), m)| n & m == b & m),
    )
}

fn names_conform(c: &X509Certificate<'_>, nc: &NameConstraints<'_>) -> Result<(), String> {
    conform(names_of(c), nc)
}

fn conform(names: Vec<Name<'_>>, nc: &NameConstraints<'_>) -> Result<(), String> {
    let permitted: Vec<&GeneralName<'_>> = nc
        .permitted_subtrees
        .iter()
        .flatten()
        .map(|t| &t.base)
        .collect();
    let excluded: Vec<&GeneralName<'_>> = nc
        .excluded_subtrees
        .iter()
        .flatten()
        .map(|t| &t.base)
        .collect();
    for name in names {
        let shown = show(&name);
        for b in &excluded {
            match within(&name, b) {
                Some(Some(false)) | None => {}
                Some(Some(true)) => return Err(format!("{shown} is excluded")),
                Some(None) => {
                    return Err(format!(
                        "{shown} cannot be judged against an excluded subtree"
                    ))
                }
            }
        }
        let mut same_form = false;
        let mut ok = false;
        for b in &permitted {
            match within(&name, b) {
                None => {}
                Some(Some(true)) => {
                    same_form = true;
                    ok = true;
                }
                Some(Some(false)) => same_form = true,
                Some(None) => {
                    return Err(format!(
                        "{shown} cannot be judged against a permitted subtree"
                    ))
                }
            }
        }
        if same_form && !ok {
            return Err(format!("{shown} is outside the permitted subtrees"));
        }
    }
    Ok(())
}

fn show(n: &Name<'_>) -> String {
    match n {
        Name::Dns(d) => format!("DNS:{}", printable(d)),
        Name::Ip(b) => match b.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()).to_string(),
            16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()).to_string(),
            _ => "IP:(malformed)".into(),
        },
        Name::Email(e) => format!("email:{}", printable(e)),
        Name::Uri(u) => format!("URI:{}", printable(u)),
        Name::Dn(_) => "its directory name".into(),
        Name::Other(t) => format!("a name of form [{t}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_and_ip_subtrees_match_as_rfc_5280_says() {
        assert!(dns_within_base("a.example.com", "example.com"));
        assert!(dns_within_base("example.com", "example.com"));
        assert!(!dns_within_base("badexample.com", "example.com"));
        assert!(dns_within_base("a.example.com", ".example.com"));
        assert!(!dns_within_base("example.com", ".example.com"));
        assert!(dns_within_base("anything.test", ""));
        let net = [10, 1, 0, 0, 255, 255, 0, 0];
        assert_eq!(ip_within_base(&[10, 1, 2, 3], &net), Some(true));
        assert_eq!(ip_within_base(&[10, 2, 2, 3], &net), Some(false));
        // A mask that is not contiguous cannot be judged.
        assert_eq!(
            ip_within_base(&[10, 1, 2, 3], &[10, 1, 0, 0, 255, 0, 255, 0]),
            None
        );
        // Another family never matches.
        assert_eq!(ip_within_base(&[0; 16], &net), Some(false));
    }
}
