//! Path validation of one certificate: rustls-webpki builds and checks the path
//! (signatures, validity, basicConstraints, pathLen, name constraints, CRLs); our
//! EKU policy plugs into it as an `ExtendedKeyUsageValidator`; every candidate
//! path webpki finds is then held to the RFC 5280 rules it leaves out (`checks`)
//! and to the revocation sources, and rejected so that path building goes on.
//!
//! URI name constraints: webpki fails closed on any (a permitted URI subtree never
//! matches). A trust anchor's URI subtrees are therefore taken off the anchor
//! webpki sees and checked here, by host (`crate::name_constraints`), against the
//! URI names of the leaf and the intermediates of each candidate path. An
//! intermediate's URI constraints cannot be split off that way (webpki reads them
//! from its certificate); the reason then says so.

use std::cell::RefCell;

use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use time::OffsetDateTime;
use webpki::{
    CertRevocationList, EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter,
    OwnedCertRevocationList, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::checks::{self, Level, Position, Problem, Subject};
use super::rfc5280;
use super::{reasons, CertRef, CertVerdict, Finding, PeerName, Trust, Usage, VerifyOptions};
use crate::inspect::{self, joined, CertFacts, KeyPurpose, PresentedName};
use crate::name_constraints;
use crate::names::printable;
use crate::role::{CertClass, Eku, NameKind, Role};
use crate::rules::{self, Rule};

/// The OID bytes (DER contents) of the TLS EKUs.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// anyExtendedKeyUsage, 2.5.29.37.0.
const ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Our EKU policy inside webpki's path building. webpki applies it to the leaf
/// and to every intermediate: where an EKU extension is present it must include
/// the TLS purpose (a CA's EKU limits what it may issue). Whether the leaf has
/// the *exact* EKU of its role is checked on the leaf itself (`leaf_eku`),
/// because a validator cannot tell the leaf from a CA.
struct EkuPolicy {
    required: &'static [u8],
    /// EKU sets that were refused, for the reason text.
    refused: RefCell<Vec<Vec<String>>>,
}

impl ExtendedKeyUsageValidator for EkuPolicy {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let mut present = Vec::new();
        for id in iter {
            let id = id?;
            // RFC 5280 4.2.1.12: anyExtendedKeyUsage restricts nothing. (The
            // draft refuses it in a leaf, on the leaf itself: `draft_eku`.)
            if id == webpki::KeyPurposeId::new(self.required)
                || id == webpki::KeyPurposeId::new(ANY_EKU)
            {
                return Ok(());
            }
            present.push(id.to_decoded_oid());
        }
        if present.is_empty() {
            return Ok(());
        }
        self.refused.borrow_mut().push(
            present
                .iter()
                .map(|oid| {
                    oid.iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect(),
        );
        Err(webpki::Error::RequiredEkuNotFoundContext(
            webpki::RequiredEkuNotFoundContext {
                required: webpki::KeyUsage::required(self.required),
                present,
            },
        ))
    }
}

fn required_eku(usage: Usage) -> &'static [u8] {
    if usage.tls_eku() == Eku::ServerAuth {
        SERVER_AUTH
    } else {
        CLIENT_AUTH
    }
}

/// Validate one certificate. Never fails: what is wrong is in the verdict.
pub fn verify_cert(
    leaf: &CertificateDer<'_>,
    trust: &Trust<'_>,
    opts: &VerifyOptions,
) -> CertVerdict {
    let cert = match inspect::parse_der(leaf.as_ref()) {
        Ok(c) => c,
        Err(e) => return unreadable(&e),
    };
    let facts = CertFacts::of(&cert);
    let mut reasons = Vec::new();
    reasons.extend(leaf_eku(&facts, opts.usage));
    let leaf_subject = Subject {
        cert: &cert,
        der: leaf.as_ref(),
        pos: Position::Leaf,
        at: opts.at,
    };
    let mut leaf_problems = checks::check_cert(&leaf_subject);
    if opts.usage.tls_eku() == Eku::ServerAuth {
        leaf_problems.extend(checks::check_cn_in_san(&cert).err());
    }
    let mut findings = Vec::new();
    sort_problems(
        &leaf_problems,
        Position::Leaf,
        "certificate",
        &mut reasons,
        &mut findings,
    );
    let (chain, chain_reasons, chain_findings) =
        build_path(leaf, &cert, &facts, trust, opts, !reasons.is_empty());
    for f in chain_findings {
        if !findings.contains(&f) {
            findings.push(f);
        }
    }
    if facts.role == CertClass::Ca && matches!(opts.usage, Usage::Purpose(_)) {
        findings.push(Finding {
            code: "ca-as-leaf",
            severity: super::Severity::Warning,
            message: "certificate is a CA certificate used as a leaf (RFC 5280 allows it; CA/Browser Forum subscriber certificates are never CAs)".into(),
        });
    }
    for r in chain_reasons {
        if !reasons.contains(&r) {
            reasons.push(r);
        }
    }
    if let Some(name) = &opts.name {
        if let Err(r) = name_matches(leaf, &facts, name, NameMatch::Dialled) {
            reasons.push(r);
        }
    }
    CertVerdict {
        valid: reasons.is_empty(),
        role: Some(facts.role),
        subject: facts.subject.clone(),
        issuer: facts.issuer.clone(),
        serial: facts.serial_hex(),
        names: facts.names.clone(),
        ekus: facts.purposes().to_vec(),
        not_before: facts.not_before,
        not_after: facts.not_after,
        chain,
        reasons,
        findings,
    }
}

/// Put each problem where it belongs: a reason (validation) or a finding.
fn sort_problems(
    problems: &[Problem],
    pos: Position,
    who: &str,
    reasons: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) {
    for p in problems {
        let message = reasons::problem(who, p);
        match p.level(pos) {
            Level::Validation => reasons.push(message),
            Level::Finding(severity) => findings.push(Finding {
                code: p.code(),
                severity,
                message,
            }),
        }
    }
}

fn unreadable(e: &str) -> CertVerdict {
    CertVerdict {
        valid: false,
        role: None,
        subject: String::new(),
        issuer: String::new(),
        serial: String::new(),
        names: vec![],
        ekus: vec![],
        not_before: None,
        not_after: None,
        chain: vec![],
        reasons: vec![format!("certificate cannot be read: {e}")],
        findings: vec![],
    }
}

/// The leaf's own EKU against the usage: the draft's exact role, or the classic
/// "required if present".
fn leaf_eku(f: &CertFacts, usage: Usage) -> Vec<String> {
    match usage {
        Usage::Purpose(_) => {
            let want = usage.tls_eku();
            if f.has_eku() && !f.has_purpose(want) && !f.has_purpose(Eku::Any) {
                vec![format!(
                    "certificate's EKU ({}) does not include {}",
                    joined(f.purposes(), "+"),
                    want.display_name()
                )]
            } else {
                vec![]
            }
        }
        Usage::Role(role) => draft_eku(f, role).into_iter().collect(),
    }
}

/// Why a certificate does not carry exactly the EKU of `role` under the draft.
pub(crate) fn draft_eku(f: &CertFacts, role: Role) -> Option<String> {
    let has = |e: Eku| f.has_purpose(e);
    let article = |r: Role| if r == Role::Entity { "an" } else { "a" };
    let want = role.tls_eku();
    if f.role == CertClass::Ca {
        return Some(format!(
            "certificate is a CA certificate, not {} {role}",
            article(role)
        ));
    }
    if !f.has_eku() {
        return Some(format!(
            "certificate has no extendedKeyUsage: under the draft it is neither a device nor an entity, so it cannot be {} {role}",
            article(role)
        ));
    }
    // The rulebook's conflicts that make a certificate ambiguous under the draft.
    let known: Vec<Eku> = f.purposes().iter().filter_map(KeyPurpose::known).collect();
    match rules::eku_conflict(role, &known) {
        Some((Rule::EkuAny, _)) => return Some("certificate carries anyExtendedKeyUsage: ambiguous under the draft, neither a device nor an entity".into()),
        Some((Rule::EkuServerAndClient, _)) => return Some("certificate carries serverAuth and clientAuth: ambiguous under the draft, neither a device nor an entity".into()),
        _ => {}
    }
    if !has(want) {
        let what = match f.role.role() {
            Some(r) => format!(": it is {} {r}, not {} {role}", article(r), article(role)),
            None => String::new(),
        };
        return Some(format!(
            "certificate's EKU is {}{what}",
            joined(f.purposes(), "+")
        ));
    }
    let extra: Vec<KeyPurpose> = f
        .purposes()
        .iter()
        .filter(|p| {
            p.known() != Some(want)
                && !(role == Role::Entity && p.known() == Some(Eku::EmailProtection))
        })
        .cloned()
        .collect();
    if !extra.is_empty() {
        return Some(format!(
            "certificate also carries {} beside {}: the draft allows {} only",
            joined(&extra, ", "),
            want.display_name(),
            match role {
                Role::Device => "serverAuth",
                Role::Entity => "clientAuth (and emailProtection)",
            }
        ));
    }
    None
}

/// How a name is matched against a certificate: the one choice every name
/// check of the verifier and the proxy makes, in [`name_matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameMatch {
    /// The name a client dialled (RFC 6125 server identity, by webpki): a
    /// wildcard DNS name of the certificate matches one label, as in any TLS
    /// client. For the responder's host and `verify cert --name`.
    Dialled,
    /// The identity of a peer, as an allow-list or an entity's `--name` lists
    /// it: one of the names the certificate presents, exactly. A wildcard
    /// certificate names no one host, so it never matches.
    Identity,
}

/// Whether the certificate is valid for `name`, matched as `mode` says. In
/// both modes only names of a kind the certificate's role carries count (a
/// device's DNS, IP and URI names, an entity's email and URI names: a
/// device's email address is nobody's), and email addresses and URIs are
/// compared exactly (an email's domain without regard to case, RFC 5280
/// 4.2.1.6).
pub(crate) fn name_matches(
    der: &CertificateDer<'_>,
    f: &CertFacts,
    name: &PeerName,
    mode: NameMatch,
) -> Result<(), String> {
    let shown = name.to_string();
    if let PeerName::Dns(d) = name {
        if ServerName::try_from(d.as_str()).is_err() {
            return Err(format!("{shown} is not a valid DNS name"));
        }
    }
    // Only the names its role may carry name the peer (a device's email is
    // not a person's, an entity's host name no host's).
    let role = f.role.role();
    let carried = |k: NameKind| role.is_none_or(|r| rules::name_kind_allowed(r, k));
    let valid_for = |n: ServerName<'_>| {
        EndEntityCert::try_from(der).is_ok_and(|ee| ee.verify_is_valid_for_subject_name(&n).is_ok())
    };
    let found = match (mode, name) {
        (NameMatch::Dialled, PeerName::Ip(ip)) => {
            carried(NameKind::Ip) && valid_for(ServerName::IpAddress((*ip).into()))
        }
        (NameMatch::Dialled, PeerName::Dns(d)) => {
            carried(NameKind::Dns) && ServerName::try_from(d.as_str()).is_ok_and(valid_for)
        }
        _ => f
            .names
            .iter()
            .filter(|n| n.kind().is_some_and(carried))
            .any(|n| match (name, n) {
                (PeerName::Dns(want), PresentedName::Dns(have)) => {
                    !have.starts_with("*.")
                        && have
                            .trim_end_matches('.')
                            .eq_ignore_ascii_case(want.trim_end_matches('.'))
                }
                (PeerName::Ip(want), PresentedName::Ip(have)) => want == have,
                (PeerName::Email(want), PresentedName::Email(have)) => email_eq(have, want),
                (PeerName::Uri(want), PresentedName::Uri(have)) => have == want,
                _ => false,
            }),
    };
    if found {
        Ok(())
    } else {
        Err(reasons::name_mismatch(&shown, &f.names))
    }
}

/// RFC 5280 4.2.1.6: the local part is exact, the domain case-insensitive.
fn email_eq(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

/// The parsed trust anchors, the DER each came from, and the URI subtrees of
/// each: `list` holds the anchors as webpki sees them, without their URI
/// subtrees (webpki fails closed on any), which are checked here instead.
struct Anchors<'a> {
    list: Vec<TrustAnchor<'a>>,
    der: Vec<&'a [u8]>,
    uri: Vec<UriSubtrees>,
}

/// The URI subtrees of an anchor's name constraints (RFC 5280 4.2.1.10 host form).
#[derive(Default)]
struct UriSubtrees {
    permitted: Vec<String>,
    excluded: Vec<String>,
}

impl UriSubtrees {
    fn is_empty(&self) -> bool {
        self.permitted.is_empty() && self.excluded.is_empty()
    }
}

/// Split an anchor's URI subtrees off its name constraints: the anchor webpki
/// gets keeps the other subtrees (or none at all when nothing else is left).
fn split_uri_subtrees(ta: TrustAnchor<'_>) -> (TrustAnchor<'_>, UriSubtrees) {
    let Some(nc) = ta.name_constraints.as_ref() else {
        return (ta, UriSubtrees::default());
    };
    let (permitted, excluded) = name_constraints::uri_subtrees(nc.as_ref());
    let uri = UriSubtrees {
        permitted,
        excluded,
    };
    if uri.is_empty() {
        return (ta, uri);
    }
    let rest = name_constraints::without_uri_subtrees(nc.as_ref());
    let ta = TrustAnchor {
        subject: ta.subject,
        subject_public_key_info: ta.subject_public_key_info,
        name_constraints: rest.map(rustls_pki_types::Der::from),
    };
    (ta, uri)
}

/// Why one URI name breaks an anchor's URI subtrees, if it does (RFC 5280
/// 4.2.1.10: the host of the URI is matched; a URI without a host fails).
fn uri_violation(uri: &str, sub: &UriSubtrees) -> Option<String> {
    let Some(host) = name_constraints::uri_host(uri) else {
        return Some("has no host, so it cannot meet the URI name constraints".into());
    };
    if let Some(ex) = sub
        .excluded
        .iter()
        .find(|b| name_constraints::uri_host_within(&host, b))
    {
        return Some(format!(
            "is excluded by the URI name constraints (host {} is within excluded {})",
            printable(&host),
            printable(ex)
        ));
    }
    if !sub.permitted.is_empty()
        && !sub
            .permitted
            .iter()
            .any(|b| name_constraints::uri_host_within(&host, b))
    {
        return Some(format!(
            "is outside the URI name constraints (host {} is not within {})",
            printable(&host),
            sub.permitted
                .iter()
                .map(|b| printable(b))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    None
}

/// The URI names of the certificates below an anchor against its URI subtrees.
fn uri_problems(
    below: &[(&X509Certificate<'_>, Position)],
    sub: &UriSubtrees,
    anchor: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if sub.is_empty() {
        return out;
    }
    for (cert, pos) in below {
        for name in inspect::presented_names(cert) {
            let Some(uri) = name.uri() else {
                continue;
            };
            if let Some(why) = uri_violation(uri, sub) {
                let who = match pos {
                    Position::Leaf => "certificate's".to_string(),
                    _ => format!("intermediate CA `{}`'s", inspect::dn_string(cert.subject())),
                };
                out.push(format!(
                    "{who} URI name `{}` {why} of `{anchor}`",
                    printable(uri)
                ));
            }
        }
    }
    out
}

/// The intermediates offered that carry URI name constraints, which webpki
/// cannot process: it refuses every URI name below them.
fn uri_constrained_intermediates(trust: &Trust<'_>) -> Vec<String> {
    trust
        .intermediates
        .iter()
        .filter_map(|d| inspect::parse_der(d.as_ref()).ok())
        .filter(|c| {
            c.extensions().iter().any(|e| match e.parsed_extension() {
                ParsedExtension::NameConstraints(nc) => nc
                    .permitted_subtrees
                    .iter()
                    .chain(nc.excluded_subtrees.iter())
                    .flatten()
                    .any(|t| matches!(t.base, GeneralName::URI(_))),
                _ => false,
            })
        })
        .map(|c| inspect::dn_string(c.subject()))
        .collect()
}

fn anchors<'a>(trust: &'a Trust<'_>) -> (Anchors<'a>, Vec<String>) {
    let mut a = Anchors {
        list: vec![],
        der: vec![],
        uri: vec![],
    };
    let mut reasons = Vec::new();
    for (i, der) in trust.anchors.iter().enumerate() {
        match webpki::anchor_from_trusted_cert(der) {
            Ok(ta) => {
                let (ta, uri) = split_uri_subtrees(ta);
                a.list.push(ta);
                a.der.push(der.as_ref());
                a.uri.push(uri);
            }
            Err(_) => reasons.push(format!(
                "trust anchor {} cannot be used: {}",
                i + 1,
                inspect::parse_der(der.as_ref())
                    .err()
                    .unwrap_or_else(|| "its name or key cannot be read".into())
            )),
        }
    }
    (a, reasons)
}

/// Parse the CRLs for webpki, and hold them to RFC 5280's CRL profile.
fn crls(trust: &Trust<'_>) -> (Vec<CertRevocationList<'static>>, Vec<String>) {
    let mut out = Vec::new();
    let mut reasons = Vec::new();
    for (i, der) in trust.crls.iter().enumerate() {
        let issuer = match x509_parser::parse_x509_crl(der.as_ref()) {
            Ok((_, crl)) => {
                let issuer = inspect::dn_string(crl.issuer());
                if let Err(p) = checks::check_crl(&crl) {
                    reasons.push(reasons::crl_problem(&issuer, &p));
                }
                issuer
            }
            Err(e) => {
                reasons.push(format!("CRL {} cannot be read ({e})", i + 1));
                continue;
            }
        };
        match OwnedCertRevocationList::from_der(der.as_ref()) {
            Ok(crl) => out.push(CertRevocationList::Owned(crl)),
            Err(e) => reasons.push(format!("the CRL of `{issuer}` cannot be used ({e:?})")),
        }
    }
    (out, reasons)
}

fn unix(at: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        at.unix_timestamp().max(0) as u64
    ))
}

/// What a rejected candidate path was rejected for (the first one is reported,
/// with its findings), and the findings of the path accepted.
#[derive(Default)]
struct Rejections {
    first: Option<(Vec<String>, Vec<Finding>)>,
    accepted: Vec<Finding>,
}

/// Build and check the path; returns the subjects of the path (leaf first) when
/// one is found, and the reasons when not. `leaf_failed` says that the leaf's
/// own EKU or profile was already refused (its EKU error then says nothing new).
fn build_path(
    leaf: &CertificateDer<'_>,
    cert: &X509Certificate<'_>,
    facts: &CertFacts,
    trust: &Trust<'_>,
    opts: &VerifyOptions,
    leaf_failed: bool,
) -> (Vec<String>, Vec<String>, Vec<Finding>) {
    let (anchors, mut reasons) = anchors(trust);
    let (crl_list, crl_reasons) = crls(trust);
    reasons.extend(crl_reasons);
    let ee = match EndEntityCert::try_from(leaf) {
        Ok(ee) => ee,
        Err(e) => {
            reasons.push(reasons::webpki(&e, opts.at, "certificate"));
            return (vec![], reasons, vec![]);
        }
    };
    let crl_refs: Vec<&CertRevocationList<'_>> = crl_list.iter().collect();
    let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Allow)
            .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
            .build()
    });
    let eku = EkuPolicy {
        required: required_eku(opts.usage),
        refused: RefCell::new(vec![]),
    };
    let rejections = RefCell::new(Rejections::default());
    let check_path = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let inter: Vec<CertificateDer<'_>> =
            path.intermediate_certificates().map(|c| c.der()).collect();
        let inter: Vec<&[u8]> = inter.iter().map(|d| d.as_ref()).collect();
        let anchor_i = anchor_index(&anchors, path.anchor());
        let (found, findings) = path_problems(&inter, anchor_i, cert, &anchors, trust, opts);
        let mut r = rejections.borrow_mut();
        if found.is_empty() {
            r.accepted = findings;
            return Ok(());
        }
        if r.first.is_none() {
            r.first = Some((found, findings));
        }
        Err(webpki::Error::UnknownIssuer)
    };
    let result = ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors.list,
        &trust.intermediates,
        unix(opts.at),
        &eku,
        revocation,
        Some(&check_path),
    );
    match result {
        Ok(path) => {
            let mut chain = vec![facts.subject.clone()];
            for c in path.intermediate_certificates() {
                chain.push(subject_of(c.der().as_ref()));
            }
            if let Some(i) = anchor_index(&anchors, path.anchor()) {
                chain.push(subject_of(anchors.der[i]));
            }
            (chain, reasons, rejections.into_inner().accepted)
        }
        Err(e) => {
            if let Some((found, findings)) = rejections.into_inner().first {
                reasons.extend(found);
                return (vec![], reasons, findings);
            }
            #[allow(deprecated)]
            let eku_error = matches!(
                e,
                webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_)
            );
            if eku_error && leaf_failed {
                return (vec![], reasons, vec![]);
            }
            if let Some(done) = rfc5280_fallback(&e, cert, facts, &anchors, trust, opts) {
                let (chain, more, findings) = done;
                reasons.extend(more);
                return (chain, reasons, findings);
            }
            let uri_cas = match e {
                webpki::Error::NameConstraintViolation => uri_constrained_intermediates(trust),
                _ => vec![],
            };
            let text = match &e {
                _ if eku_error => ca_eku_reason(&eku.refused.borrow(), opts.usage),
                _ if !uri_cas.is_empty() => format!(
                    "certificate's URI names cannot be checked against the URI name constraints of intermediate CA {}: this verifier (rustls-webpki) refuses every URI name under an intermediate with URI name constraints; only a trust anchor's are processed",
                    uri_cas
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                webpki::Error::CertRevoked => revoked_reason(cert, trust),
                webpki::Error::CertExpired { not_after, .. }
                | webpki::Error::CertNotValidYet {
                    not_before: not_after,
                    ..
                } => {
                    let whose = whose_validity(*not_after, facts, trust);
                    reasons::webpki(&e, opts.at, &whose)
                }
                _ => reasons::webpki(&e, opts.at, "certificate"),
            };
            reasons.push(text);
            (vec![], reasons, vec![])
        }
    }
}

/// When webpki refused the chain for a feature it lacks (see `rfc5280`), our own
/// RFC 5280 validator looks for a path; the path it finds goes through the same
/// checks as a webpki path. `None` when it does not apply or finds no path.
fn rfc5280_fallback(
    err: &webpki::Error,
    cert: &X509Certificate<'_>,
    facts: &CertFacts,
    anchors: &Anchors<'_>,
    trust: &Trust<'_>,
    opts: &VerifyOptions,
) -> Option<(Vec<String>, Vec<String>, Vec<Finding>)> {
    if !trust.crls.is_empty() {
        return None;
    }
    let inter: Vec<X509Certificate<'_>> = trust
        .intermediates
        .iter()
        .filter_map(|d| inspect::parse_der(d.as_ref()).ok())
        .collect();
    let anchor_certs: Vec<X509Certificate<'_>> = anchors
        .der
        .iter()
        .filter_map(|d| inspect::parse_der(d).ok())
        .collect();
    if anchor_certs.len() != anchors.der.len() {
        return None;
    }
    let allow_ca_leaf = matches!(opts.usage, Usage::Purpose(_));
    if !rfc5280::applies(
        err,
        facts.role == CertClass::Ca,
        allow_ca_leaf,
        &inter,
        &anchor_certs,
    ) {
        return None;
    }
    let found = rfc5280::find_path(&rfc5280::Input {
        leaf: cert,
        intermediates: &inter,
        anchors: &anchor_certs,
        at: opts.at,
        eku: opts.usage.tls_oid(),
        allow_ca_leaf,
    });
    let found = match found {
        Ok(f) => f,
        Err(why) => return Some((vec![], vec![why], vec![])),
    };
    let ders: Vec<&[u8]> = found
        .intermediates
        .iter()
        .map(|&i| inter[i].as_raw())
        .collect();
    let (reasons, findings) = path_problems(&ders, Some(found.anchor), cert, anchors, trust, opts);
    if !reasons.is_empty() {
        return Some((vec![], reasons, findings));
    }
    let mut chain = vec![facts.subject.clone()];
    chain.extend(ders.iter().map(|d| subject_of(d)));
    chain.push(subject_of(anchors.der[found.anchor]));
    Some((chain, vec![], findings))
}

fn anchor_index(anchors: &Anchors<'_>, ta: &TrustAnchor<'_>) -> Option<usize> {
    anchors.list.iter().position(|a| {
        std::ptr::eq(a, ta)
            || (a.subject == ta.subject && a.subject_public_key_info == ta.subject_public_key_info)
    })
}

fn subject_of(der: &[u8]) -> String {
    inspect::parse_der(der)
        .map(|c| inspect::dn_string(c.subject()))
        .unwrap_or_else(|_| "(unreadable)".into())
}

/// Everything wrong with one complete candidate path: the profile of each CA
/// and of the anchor, wildcard names against name constraints, and revocation
/// by the sources other than CRL files.
fn path_problems(
    inter_der: &[&[u8]],
    anchor_i: Option<usize>,
    leaf: &X509Certificate<'_>,
    anchors: &Anchors<'_>,
    trust: &Trust<'_>,
    opts: &VerifyOptions,
) -> (Vec<String>, Vec<Finding>) {
    let mut out = Vec::new();
    let mut findings = Vec::new();
    let anchor_der = anchor_i.map(|i| anchors.der[i]);
    let mut ders: Vec<(&[u8], Position)> = inter_der
        .iter()
        .map(|d| (*d, Position::Intermediate))
        .collect();
    if let Some(d) = anchor_der {
        ders.push((d, Position::Anchor));
    }
    let parsed: Vec<(X509Certificate<'_>, &[u8], Position)> = ders
        .iter()
        .filter_map(|(d, p)| inspect::parse_der(d).ok().map(|c| (c, *d, *p)))
        .collect();
    if let Some(i) = anchor_i {
        let below: Vec<(&X509Certificate<'_>, Position)> = std::iter::once((leaf, Position::Leaf))
            .chain(
                parsed
                    .iter()
                    .filter(|(_, _, p)| *p == Position::Intermediate)
                    .map(|(c, _, p)| (c, *p)),
            )
            .collect();
        out.extend(uri_problems(
            &below,
            &anchors.uri[i],
            &subject_of(anchors.der[i]),
        ));
    }
    // Subject emailAddress attributes against rfc822Name constraints (webpki
    // looks at SAN names only).
    let path_certs: Vec<&X509Certificate<'_>> = std::iter::once(leaf)
        .chain(parsed.iter().map(|(c, _, _)| c))
        .collect();
    out.extend(rfc5280::subject_email_problem(&path_certs));
    // The CAs of this path that signed a CRL we were given.
    let crl_der: Vec<_> = trust
        .crls
        .iter()
        .filter_map(|d| x509_parser::parse_x509_crl(d.as_ref()).ok())
        .collect();
    let crl_issuers: Vec<&[u8]> = crl_der.iter().map(|(_, c)| c.issuer().as_raw()).collect();
    for (cert, der, pos) in &parsed {
        let who = reasons::who(*pos, &inspect::dn_string(cert.subject()));
        let s = Subject {
            cert,
            der,
            pos: *pos,
            at: opts.at,
        };
        sort_problems(&checks::check_cert(&s), *pos, &who, &mut out, &mut findings);
        if crl_issuers.contains(&cert.subject().as_raw()) {
            if let Err(p) = checks::check_crl_signer(cert) {
                out.push(reasons::problem(&who, &p));
            }
        }
        if let Some(why) = checks::wildcard_escapes_constraints(leaf, cert) {
            out.push(format!(
                "certificate's {why} (`{}`)",
                inspect::dn_string(cert.subject())
            ));
        }
    }
    if !trust.revocation.is_empty() {
        // Each certificate below the anchor, with the CA that signed it.
        let mut chain: Vec<&X509Certificate<'_>> = vec![leaf];
        chain.extend(parsed.iter().map(|(c, _, _)| c));
        let leaf_der_bytes: Vec<&[u8]> = std::iter::once(leaf.as_raw())
            .chain(parsed.iter().map(|(_, d, _)| *d))
            .collect();
        for i in 0..chain.len().saturating_sub(1) {
            let (subject, issuer) = (chain[i], chain[i + 1]);
            let key_id = issuer
                .extensions()
                .iter()
                .find_map(|e| match &e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
                    _ => None,
                });
            let r = CertRef {
                der: leaf_der_bytes[i],
                serial: subject.raw_serial(),
                issuer_subject: issuer.subject().as_raw(),
                issuer_spki: issuer.public_key().raw,
                issuer_key_id: key_id,
            };
            for src in &trust.revocation {
                if let Some(info) = src.revoked(&r) {
                    let who = if i == 0 {
                        "certificate".to_string()
                    } else {
                        format!(
                            "intermediate CA `{}`",
                            inspect::dn_string(subject.subject())
                        )
                    };
                    out.push(revocation_text(
                        &who,
                        &crate::hex::encode(subject.raw_serial()),
                        &info,
                    ));
                }
            }
        }
    }
    (out, findings)
}

fn revocation_text(who: &str, serial: &str, info: &super::RevocationInfo) -> String {
    let when = info
        .revoked_at
        .map(|t| format!(" on {}", super::human_time(t)))
        .unwrap_or_default();
    let why = info
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    format!(
        "{who} (serial {serial}) was revoked{when}{why} according to {}",
        info.source
    )
}

/// The reason for a CRL hit, with the date and reason from the CRL when the
/// leaf is the one listed.
fn revoked_reason(leaf: &X509Certificate<'_>, trust: &Trust<'_>) -> String {
    for der in &trust.crls {
        let Ok((_, crl)) = x509_parser::parse_x509_crl(der.as_ref()) else {
            continue;
        };
        if crl.issuer().as_raw() != leaf.issuer().as_raw() {
            continue;
        }
        let hit = crl
            .iter_revoked_certificates()
            .find(|rc| rc.raw_serial() == leaf.raw_serial());
        if let Some(rc) = hit {
            let info = super::RevocationInfo {
                revoked_at: inspect::asn1_time(rc.revocation_date),
                reason: rc.reason_code().map(|(_, r)| reason_name(r.0)),
                source: format!("the CRL of `{}`", inspect::dn_string(crl.issuer())),
            };
            return revocation_text("certificate", &crate::hex::encode(leaf.raw_serial()), &info);
        }
    }
    reasons::webpki(
        &webpki::Error::CertRevoked,
        OffsetDateTime::UNIX_EPOCH,
        "certificate",
    )
}

/// RFC 5280 5.3.1 reason names.
pub fn reason_name(code: u8) -> String {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        _ => "unknown reason",
    }
    .to_string()
}

/// Whose validity failed: the leaf, or which CA (matched by the date webpki
/// reports).
fn whose_validity(t: UnixTime, facts: &CertFacts, trust: &Trust<'_>) -> String {
    let secs = t.as_secs() as i64;
    let matches = |x: Option<OffsetDateTime>| x.is_some_and(|x| x.unix_timestamp() == secs);
    if matches(facts.not_after) || matches(facts.not_before) {
        return "certificate".into();
    }
    for der in &trust.intermediates {
        if let Ok(c) = inspect::parse_der(der.as_ref()) {
            let f = CertFacts::of(&c);
            if matches(f.not_after) || matches(f.not_before) {
                return format!("certificate's issuing CA `{}`", f.subject);
            }
        }
    }
    "a CA certificate in the chain".into()
}

/// The leaf's EKU passed, so a CA's EKU refused the purpose.
fn ca_eku_reason(refused: &[Vec<String>], usage: Usage) -> String {
    let want = usage.tls_eku().display_name();
    match refused.last() {
        Some(ekus) => format!(
            "certificate's issuing CA does not allow {want}: its EKU is {}",
            ekus.iter()
                .map(|o| KeyPurpose::from_oid(o).to_string())
                .collect::<Vec<_>>()
                .join("+")
        ),
        None => format!("certificate's issuing CA does not allow {want}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed leaf with `eku` and these SANs (`DNS:`, `IP:`, `email:`, `URI:`).
    fn leaf(eku: rcgen::ExtendedKeyUsagePurpose, sans: &[&str]) -> CertificateDer<'static> {
        use rcgen::SanType;
        let mut p = rcgen::CertificateParams::default();
        p.extended_key_usages = vec![eku];
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.split_once(':').unwrap() {
                ("DNS", v) => SanType::DnsName(v.to_string().try_into().unwrap()),
                ("IP", v) => SanType::IpAddress(v.parse().unwrap()),
                ("email", v) => SanType::Rfc822Name(v.to_string().try_into().unwrap()),
                (_, v) => SanType::URI(v.to_string().try_into().unwrap()),
            })
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().clone()
    }

    fn matches(der: &CertificateDer<'_>, name: &str, mode: NameMatch) -> bool {
        let cert = inspect::parse_der(der.as_ref()).unwrap();
        name_matches(der, &CertFacts::of(&cert), &PeerName::parse(name), mode).is_ok()
    }

    #[test]
    fn an_identity_is_a_name_presented_exactly_the_name_dialled_follows_rfc_6125() {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        use NameMatch::{Dialled, Identity};
        let wild = leaf(
            ServerAuth,
            &["DNS:*.corp.internal", "DNS:Web.Corp.Internal"],
        );
        assert!(matches(&wild, "db.corp.internal", Dialled));
        assert!(!matches(&wild, "db.corp.internal", Identity));
        assert!(!matches(&wild, "*.corp.internal", Identity));
        assert!(matches(&wild, "web.corp.internal.", Identity));
        assert!(!matches(&wild, "corp.internal", Dialled));
        // A device's email names nobody; an entity's host name no host.
        let device = leaf(
            ServerAuth,
            &["DNS:d.test", "IP:10.0.0.1", "email:alice@test"],
        );
        assert!(matches(&device, "10.0.0.1", Identity));
        assert!(!matches(&device, "10.0.0.2", Identity));
        for mode in [Dialled, Identity] {
            assert!(!matches(&device, "alice@test", mode));
        }
        let entity = leaf(
            ClientAuth,
            &["email:alice@Test", "DNS:db.test", "URI:urn:x:alice"],
        );
        assert!(matches(&entity, "alice@test", Identity));
        assert!(matches(&entity, "urn:x:alice", Identity));
        for mode in [Dialled, Identity] {
            assert!(
                !matches(&entity, "ALICE@test", mode),
                "the local part is exact"
            );
            assert!(!matches(&entity, "db.test", mode));
        }
    }

    #[test]
    fn uri_names_are_held_to_an_anchors_uri_subtrees_by_host() {
        let sub = UriSubtrees {
            permitted: vec!["corp.internal".into(), ".corp.internal".into()],
            excluded: vec![".secret.corp.internal".into()],
        };
        for ok in [
            "spiffe://corp.internal/ns/a",
            "https://api.corp.internal/x",
            "https://api.corp.internal:8443/x",
            "https://user@API.Corp.Internal/x",
        ] {
            assert_eq!(uri_violation(ok, &sub), None, "{ok}");
        }
        for (bad, why) in [
            ("spiffe://evil.com/x", "outside"),
            ("https://web.corp.internal@evil.com/", "outside"),
            ("https://evilcorp.internal/", "outside"),
            ("https://corp.internal.evil.com/", "outside"),
            ("https://db.secret.corp.internal/", "excluded"),
            ("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "no host"),
        ] {
            let got = uri_violation(bad, &sub).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
        // Only excluded subtrees: everything else is allowed.
        let only_ex = UriSubtrees {
            permitted: vec![],
            excluded: vec!["evil.com".into()],
        };
        assert_eq!(uri_violation("https://good.com/", &only_ex), None);
        assert!(uri_violation("https://evil.com/", &only_ex).is_some());
    }
}
