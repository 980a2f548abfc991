//! The RFC 5280 profile checks that rustls-webpki leaves out, one small function
//! a rule. Each looks at one certificate in its position in the path (leaf,
//! intermediate CA, trust anchor) and returns the rule it breaks as a [`Problem`];
//! the text of every problem lives in one place (`reasons.rs`).

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::oid_registry as oids;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::inspect::{asn1_time, presented_names, KeyInfo, PresentedName};

/// Where a certificate sits in the path being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    Leaf,
    Intermediate,
    Anchor,
}

/// One certificate to check, with its position and the validation time.
pub(crate) struct Subject<'a> {
    pub cert: &'a X509Certificate<'a>,
    pub der: &'a [u8],
    pub pos: Position,
    pub at: OffsetDateTime,
}

impl Subject<'_> {
    fn is_issuer(&self) -> bool {
        self.pos != Position::Leaf
    }

    fn self_issued(&self) -> bool {
        self.cert.subject().as_raw() == self.cert.issuer().as_raw()
    }

    fn ext(&self, oid: &x509_parser::der_parser::Oid<'_>) -> Option<&X509Extension<'_>> {
        self.cert.extensions().iter().find(|e| &e.oid == oid)
    }

    fn basic_constraints(&self) -> Option<(bool, bool)> {
        let ext = self.ext(&oids::OID_X509_EXT_BASIC_CONSTRAINTS)?;
        match &ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => Some((bc.ca, ext.critical)),
            _ => Some((false, ext.critical)),
        }
    }

    fn is_ca(&self) -> bool {
        self.basic_constraints().is_some_and(|(ca, _)| ca)
    }

    fn key_usage(&self) -> Option<u16> {
        match &self.ext(&oids::OID_X509_EXT_KEY_USAGE)?.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => Some(ku.flags),
            _ => None,
        }
    }
}

/// A rule of the profile that a certificate breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    NotVersion3,
    SerialNotPositive,
    SerialTooLong(usize),
    DuplicateExtension(String),
    MalformedExtension(String),
    UnknownCriticalExtension(String),
    AkiCritical,
    AkiMissing,
    AkiWithoutKeyId,
    SelfSignedAkiMismatch,
    SkiCritical,
    SkiMissing,
    BasicConstraintsMissing,
    BasicConstraintsNotCritical,
    IssuerNotCa,
    KeyUsageEmpty,
    KeyCertSignWithoutCa,
    CaWithoutKeyCertSign,
    EkuCritical,
    AnchorWithEku,
    SanEmpty,
    SanMissingForEmptySubject,
    SanNotCriticalForEmptySubject,
    SanCriticalWithSubject,
    BadDnsName(String),
    IpInDnsName(String),
    WildcardTooBroad(String),
    NameConstraintsInLeaf,
    NameConstraintsNotCritical,
    NameConstraintsEmpty,
    BadNameConstraint(String),
    CommonNameNotInSan(String),
    CrlSignerWithoutCrlSign,
    PolicyConstraintsNotCritical,
    AiaCritical,
    ValidityEncoding(String),
    SignatureAlgorithmMismatch,
    EmptyIssuer,
    EmptySubject,
    WeakKey(String),
    Expired(OffsetDateTime),
    NotYetValid(OffsetDateTime),
}

/// Which level of the verdict a problem belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Path validation: the certificate cannot be relied on (RFC 5280 6, what
    /// rustls-webpki and relying parties enforce).
    Validation,
    /// An issuer-side profile rule: reported as a finding of this severity.
    Finding(crate::verify::Severity),
}

impl Problem {
    /// The stable code of the rule, as a finding shows it (README table).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Problem::NotVersion3 => "not-v3",
            Problem::SerialNotPositive => "serial-not-positive",
            Problem::SerialTooLong(_) => "serial-too-long",
            Problem::DuplicateExtension(_) => "duplicate-extension",
            Problem::MalformedExtension(_) => "malformed-extension",
            Problem::UnknownCriticalExtension(_) => "unknown-critical-extension",
            Problem::AkiCritical => "aki-critical",
            Problem::AkiMissing => "aki-missing",
            Problem::AkiWithoutKeyId => "aki-without-key-id",
            Problem::SelfSignedAkiMismatch => "self-signed-aki-mismatch",
            Problem::SkiCritical => "ski-critical",
            Problem::SkiMissing => "ski-missing",
            Problem::BasicConstraintsMissing => "bc-missing",
            Problem::BasicConstraintsNotCritical => "bc-not-critical",
            Problem::IssuerNotCa => "issuer-not-ca",
            Problem::KeyUsageEmpty => "ku-empty",
            Problem::KeyCertSignWithoutCa => "ku-cert-sign-without-ca",
            Problem::CaWithoutKeyCertSign => "ca-without-cert-sign",
            Problem::EkuCritical => "eku-critical",
            Problem::AnchorWithEku => "root-with-eku",
            Problem::SanEmpty => "san-empty",
            Problem::SanMissingForEmptySubject => "san-missing",
            Problem::SanNotCriticalForEmptySubject => "san-not-critical",
            Problem::SanCriticalWithSubject => "san-critical",
            Problem::BadDnsName(_) => "bad-dns-name",
            Problem::IpInDnsName(_) => "ip-in-dns-name",
            Problem::WildcardTooBroad(_) => "wildcard-too-broad",
            Problem::NameConstraintsInLeaf => "nc-in-leaf",
            Problem::NameConstraintsNotCritical => "nc-not-critical",
            Problem::NameConstraintsEmpty => "nc-empty",
            Problem::BadNameConstraint(_) => "nc-bad-dns",
            Problem::CommonNameNotInSan(_) => "cn-not-in-san",
            Problem::CrlSignerWithoutCrlSign => "crl-signer-without-crl-sign",
            Problem::PolicyConstraintsNotCritical => "policy-constraints-not-critical",
            Problem::AiaCritical => "aia-critical",
            Problem::ValidityEncoding(_) => "validity-encoding",
            Problem::SignatureAlgorithmMismatch => "signature-algorithm-mismatch",
            Problem::EmptyIssuer => "empty-issuer",
            Problem::EmptySubject => "empty-subject",
            Problem::WeakKey(_) => "weak-key",
            Problem::Expired(_) => "expired",
            Problem::NotYetValid(_) => "not-yet-valid",
        }
    }

    /// Whether the problem fails validation or is a finding, for a certificate in
    /// position `pos`. A trust anchor is an input of path validation (RFC 5280
    /// 6.1.1: a name and a key): only its validity, its key and whether it is a
    /// CA are judged (RFC 5280 6.1.4 (k), (n) for intermediates); the rest of
    /// its encoding is findings.
    pub(crate) fn level(&self, pos: Position) -> Level {
        use crate::verify::Severity::{Error, Warning};
        match self {
            // What path validation and relying parties enforce.
            Problem::Expired(_) | Problem::NotYetValid(_) | Problem::WeakKey(_) => {
                Level::Validation
            }
            Problem::CrlSignerWithoutCrlSign => Level::Validation,
            // Whether a certificate is a CA at all is not a matter of encoding:
            // a trust anchor that says it is not one (cA FALSE, no
            // basicConstraints in a v3 certificate, a keyUsage without
            // keyCertSign) is refused, as OpenSSL refuses it.
            Problem::BasicConstraintsMissing
            | Problem::IssuerNotCa
            | Problem::CaWithoutKeyCertSign => Level::Validation,
            _ if pos == Position::Anchor => Level::Finding(match self {
                // RFC 5280 allows a self-signed certificate's AKI to carry the
                // issuer and serial; CABF does not.
                Problem::AnchorWithEku
                | Problem::SanCriticalWithSubject
                | Problem::SelfSignedAkiMismatch => Warning,
                _ => Error,
            }),
            Problem::NotVersion3
            | Problem::DuplicateExtension(_)
            | Problem::MalformedExtension(_)
            | Problem::UnknownCriticalExtension(_)
            | Problem::SignatureAlgorithmMismatch => Level::Validation,
            // Rules addressed to CAs and CA/Browser Forum rules.
            Problem::EkuCritical
            | Problem::AnchorWithEku
            | Problem::SanCriticalWithSubject
            | Problem::CommonNameNotInSan(_)
            | Problem::SelfSignedAkiMismatch
            | Problem::WildcardTooBroad(_) => Level::Finding(Warning),
            _ => Level::Finding(Error),
        }
    }
}

type Check = fn(&Subject<'_>) -> Result<(), Problem>;

/// Every per-certificate check, in the order reasons are reported.
const CHECKS: &[Check] = &[
    check_version,
    check_serial,
    check_duplicate_extensions,
    check_malformed_extensions,
    check_unknown_critical_extensions,
    check_aki,
    check_ski,
    check_basic_constraints,
    check_key_usage,
    check_eku_extension,
    check_san,
    check_dns_names,
    check_name_constraints,
    check_policy_constraints,
    check_aia,
    check_validity_encoding,
    check_signature_algorithms,
    check_issuer_and_subject,
    check_key,
    check_anchor_validity,
];

/// Run every check on one certificate.
pub(crate) fn check_cert(s: &Subject<'_>) -> Vec<Problem> {
    CHECKS.iter().filter_map(|c| c(s).err()).collect()
}

/// RFC 5280 4.1.2.1: extensions need v3; CABF 7.1.1: only v3. Trust anchors may be
/// v1 (RFC 5280 6.1.1 takes only their name and key).
fn check_version(s: &Subject<'_>) -> Result<(), Problem> {
    let v3 = s.cert.version().0 == 2;
    if !v3 && (s.pos != Position::Anchor || !s.cert.extensions().is_empty()) {
        return Err(Problem::NotVersion3);
    }
    Ok(())
}

/// RFC 5280 4.1.2.2: a positive integer of at most 20 octets.
fn check_serial(s: &Subject<'_>) -> Result<(), Problem> {
    if s.pos == Position::Anchor {
        // RFC 5280 6.1.1 takes a trust anchor's name and key only; old roots
        // with a zero serial are still in use.
        return Ok(());
    }
    let raw = s.cert.raw_serial();
    if raw.first().is_some_and(|b| b & 0x80 != 0) || raw.iter().all(|b| *b == 0) {
        return Err(Problem::SerialNotPositive);
    }
    if raw.len() > 20 {
        return Err(Problem::SerialTooLong(raw.len()));
    }
    Ok(())
}

/// RFC 5280 4.2: at most one instance of an extension.
fn check_duplicate_extensions(s: &Subject<'_>) -> Result<(), Problem> {
    let exts = s.cert.extensions();
    for (i, e) in exts.iter().enumerate() {
        if exts[..i].iter().any(|p| p.oid == e.oid) {
            return Err(Problem::DuplicateExtension(ext_name(&e.oid)));
        }
    }
    Ok(())
}

/// An extension we rely on must decode.
fn check_malformed_extensions(s: &Subject<'_>) -> Result<(), Problem> {
    for e in s.cert.extensions() {
        if e.parsed_extension().error().is_some() {
            return Err(Problem::MalformedExtension(ext_name(&e.oid)));
        }
        if let ParsedExtension::SubjectAlternativeName(san) = &e.parsed_extension() {
            if san
                .general_names
                .iter()
                .any(|g| matches!(g, GeneralName::Invalid(..)))
            {
                return Err(Problem::MalformedExtension(ext_name(&e.oid)));
            }
        }
    }
    Ok(())
}

/// RFC 5280 4.2: a critical extension that is not processed makes the
/// certificate unusable. rustls-webpki enforces this for the certificates it
/// parses, not for trust anchors; the set here is what webpki processes.
fn check_unknown_critical_extensions(s: &Subject<'_>) -> Result<(), Problem> {
    let known = [
        oids::OID_X509_EXT_KEY_USAGE,
        oids::OID_X509_EXT_SUBJECT_ALT_NAME,
        oids::OID_X509_EXT_BASIC_CONSTRAINTS,
        oids::OID_X509_EXT_NAME_CONSTRAINTS,
        oids::OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
        oids::OID_X509_EXT_EXTENDED_KEY_USAGE,
    ];
    match s
        .cert
        .extensions()
        .iter()
        .find(|e| e.critical && !known.contains(&e.oid))
    {
        // Criticality rules of known extensions are reported by their own checks.
        Some(e) if !criticality_has_own_rule(&e.oid) => {
            Err(Problem::UnknownCriticalExtension(ext_name(&e.oid)))
        }
        _ => Ok(()),
    }
}

fn criticality_has_own_rule(oid: &x509_parser::der_parser::Oid<'_>) -> bool {
    [
        oids::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        oids::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        oids::OID_PKIX_AUTHORITY_INFO_ACCESS,
    ]
    .contains(oid)
}

/// RFC 5280 4.2.1.1: AKI non-critical, with a keyIdentifier, present in every
/// certificate but a self-signed one (or a trust anchor, which is taken as a
/// name and a key); in a self-signed certificate it may only
/// repeat the SKI.
fn check_aki(s: &Subject<'_>) -> Result<(), Problem> {
    let Some(ext) = s.ext(&oids::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER) else {
        return if s.self_issued() || s.pos == Position::Anchor {
            Ok(())
        } else {
            Err(Problem::AkiMissing)
        };
    };
    if ext.critical {
        return Err(Problem::AkiCritical);
    }
    let ParsedExtension::AuthorityKeyIdentifier(aki) = &ext.parsed_extension() else {
        return Err(Problem::MalformedExtension(ext_name(&ext.oid)));
    };
    let Some(kid) = &aki.key_identifier else {
        return Err(Problem::AkiWithoutKeyId);
    };
    if s.self_issued() && s.pos == Position::Anchor {
        let ski = s
            .cert
            .extensions()
            .iter()
            .find_map(|e| match &e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
                _ => None,
            });
        let issuer_fields =
            aki.authority_cert_issuer.is_some() || aki.authority_cert_serial.is_some();
        if issuer_fields || ski.is_some_and(|ski| ski != kid.0) {
            return Err(Problem::SelfSignedAkiMismatch);
        }
    }
    Ok(())
}

/// RFC 5280 4.2.1.2: SKI non-critical, and present in every CA certificate.
fn check_ski(s: &Subject<'_>) -> Result<(), Problem> {
    match s.ext(&oids::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER) {
        Some(e) if e.critical => Err(Problem::SkiCritical),
        Some(_) => Ok(()),
        None if s.is_issuer() && s.cert.version().0 == 2 => Err(Problem::SkiMissing),
        None => Ok(()),
    }
}

/// RFC 5280 4.2.1.9: a CA certificate has basicConstraints, critical, cA TRUE.
fn check_basic_constraints(s: &Subject<'_>) -> Result<(), Problem> {
    if !s.is_issuer() || s.cert.version().0 != 2 {
        return Ok(());
    }
    match s.basic_constraints() {
        None => Err(Problem::BasicConstraintsMissing),
        Some((false, _)) => Err(Problem::IssuerNotCa),
        Some((true, false)) => Err(Problem::BasicConstraintsNotCritical),
        Some((true, true)) => Ok(()),
    }
}

const KU_KEY_CERT_SIGN: u16 = 1 << 5;

/// RFC 5280 4.2.1.3 and 4.2.1.9: at least one bit; keyCertSign only with cA, and a
/// CA that signs certificates asserts keyCertSign when it has a key usage.
fn check_key_usage(s: &Subject<'_>) -> Result<(), Problem> {
    let Some(flags) = s.key_usage() else {
        return Ok(());
    };
    if flags == 0 {
        return Err(Problem::KeyUsageEmpty);
    }
    let cert_sign = flags & KU_KEY_CERT_SIGN != 0;
    if cert_sign && !s.is_ca() {
        return Err(Problem::KeyCertSignWithoutCa);
    }
    if s.is_issuer() && !cert_sign {
        return Err(Problem::CaWithoutKeyCertSign);
    }
    Ok(())
}

/// CABF 7.1.2.7.10 / 7.1.2.1: a subscriber's EKU is not critical, and a root
/// (a self-signed trust anchor) carries no EKU.
fn check_eku_extension(s: &Subject<'_>) -> Result<(), Problem> {
    let Some(ext) = s.ext(&oids::OID_X509_EXT_EXTENDED_KEY_USAGE) else {
        return Ok(());
    };
    if s.pos == Position::Leaf && ext.critical {
        return Err(Problem::EkuCritical);
    }
    if s.pos == Position::Anchor && s.self_issued() {
        return Err(Problem::AnchorWithEku);
    }
    Ok(())
}

/// RFC 5280 4.2.1.6: not empty; with an empty subject it must be there and
/// critical; with a subject it should not be critical.
fn check_san(s: &Subject<'_>) -> Result<(), Problem> {
    let subject_empty = s.cert.subject().iter_attributes().next().is_none();
    match s.ext(&oids::OID_X509_EXT_SUBJECT_ALT_NAME) {
        None if subject_empty && s.pos == Position::Leaf => Err(Problem::SanMissingForEmptySubject),
        None => Ok(()),
        Some(e) => {
            if let ParsedExtension::SubjectAlternativeName(san) = &e.parsed_extension() {
                if san.general_names.is_empty() {
                    return Err(Problem::SanEmpty);
                }
            }
            match (subject_empty, e.critical) {
                (true, false) => Err(Problem::SanNotCriticalForEmptySubject),
                (false, true) => Err(Problem::SanCriticalWithSubject),
                _ => Ok(()),
            }
        }
    }
}

/// RFC 5280 4.2.1.6: a dNSName is in the preferred name syntax (RFC 1034 3.5 as
/// modified by RFC 1123 2.1); a wildcard is a whole leftmost label above at least
/// two labels (CABF 3.2.2.6).
fn check_dns_names(s: &Subject<'_>) -> Result<(), Problem> {
    for e in s.cert.extensions() {
        let ParsedExtension::SubjectAlternativeName(san) = &e.parsed_extension() else {
            continue;
        };
        for gn in &san.general_names {
            if let GeneralName::DNSName(name) = gn {
                dns_syntax(name)?;
            }
        }
    }
    Ok(())
}

fn dns_syntax(name: &str) -> Result<(), Problem> {
    let shown = crate::names::printable(name);
    if name.parse::<std::net::Ipv4Addr>().is_ok() || name.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(Problem::IpInDnsName(shown));
    }
    let (wild, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    if name == "*" || (wild && !rest.contains('.')) {
        return Err(Problem::WildcardTooBroad(shown));
    }
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(ok_label) {
        return Err(Problem::BadDnsName(shown));
    }
    Ok(())
}

/// RFC 5280 4.2.1.10: only in CA certificates, always critical, never empty, and
/// a dNSName subtree is a host name (no leading period, no wildcard).
fn check_name_constraints(s: &Subject<'_>) -> Result<(), Problem> {
    let Some(ext) = s.ext(&oids::OID_X509_EXT_NAME_CONSTRAINTS) else {
        return Ok(());
    };
    if s.pos == Position::Leaf && !s.is_ca() {
        return Err(Problem::NameConstraintsInLeaf);
    }
    if !ext.critical {
        return Err(Problem::NameConstraintsNotCritical);
    }
    if let ParsedExtension::NameConstraints(nc) = &ext.parsed_extension() {
        let empty = |v: &Option<Vec<_>>| !matches!(v, Some(v) if !v.is_empty());
        let present_but_empty = |v: &Option<Vec<_>>| v.as_ref().is_some_and(|v| v.is_empty());
        if (empty(&nc.permitted_subtrees) && empty(&nc.excluded_subtrees))
            || present_but_empty(&nc.permitted_subtrees)
            || present_but_empty(&nc.excluded_subtrees)
        {
            return Err(Problem::NameConstraintsEmpty);
        }
        let subtrees = nc
            .permitted_subtrees
            .iter()
            .chain(nc.excluded_subtrees.iter())
            .flatten();
        for t in subtrees {
            if let GeneralName::DNSName(d) = t.base {
                if d.starts_with('.') || d.contains('*') {
                    return Err(Problem::BadNameConstraint(crate::names::printable(d)));
                }
            }
        }
    }
    Ok(())
}

/// RFC 5280 4.2.1.11 and 4.2.1.14: policyConstraints and inhibitAnyPolicy are
/// critical.
fn check_policy_constraints(s: &Subject<'_>) -> Result<(), Problem> {
    let must_be_critical = [
        oids::OID_X509_EXT_POLICY_CONSTRAINTS,
        oids::OID_X509_EXT_INHIBIT_ANY_POLICY,
    ];
    if s.cert
        .extensions()
        .iter()
        .any(|e| must_be_critical.contains(&e.oid) && !e.critical)
    {
        return Err(Problem::PolicyConstraintsNotCritical);
    }
    Ok(())
}

/// RFC 5280 4.2.2.1: authorityInfoAccess is not critical.
fn check_aia(s: &Subject<'_>) -> Result<(), Problem> {
    match s.ext(&oids::OID_PKIX_AUTHORITY_INFO_ACCESS) {
        Some(e) if e.critical => Err(Problem::AiaCritical),
        _ => Ok(()),
    }
}

/// RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, both in
/// whole seconds with `Z`.
fn check_validity_encoding(s: &Subject<'_>) -> Result<(), Problem> {
    let Some(times) = der::validity_times(s.der) else {
        return Err(Problem::ValidityEncoding("cannot be read".into()));
    };
    for (tag, value) in times {
        let text = std::str::from_utf8(value).unwrap_or("");
        let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        match tag {
            der::UTC_TIME if text.len() == 13 && text.ends_with('Z') && digits(&text[..12]) => {}
            der::GENERALIZED_TIME
                if text.len() == 15 && text.ends_with('Z') && digits(&text[..14]) =>
            {
                if text[..4].parse::<u32>().unwrap_or(0) < 2050 {
                    return Err(Problem::ValidityEncoding(format!(
                        "uses GeneralizedTime for {text}, a date before 2050"
                    )));
                }
            }
            _ => {
                return Err(Problem::ValidityEncoding(format!(
                "has a time `{}` that is not UTCTime or GeneralizedTime in whole seconds with Z",
                crate::names::printable(text)
            )))
            }
        }
    }
    Ok(())
}

/// RFC 5280 4.1.1.2: the signature algorithm inside and outside the TBS match.
fn check_signature_algorithms(s: &Subject<'_>) -> Result<(), Problem> {
    match der::signature_algorithms(s.der) {
        Some((inner, outer)) if inner == outer => Ok(()),
        _ => Err(Problem::SignatureAlgorithmMismatch),
    }
}

/// RFC 5280 4.1.2.4 and 4.1.2.6: the issuer is never empty, and neither is the
/// subject of a CA.
fn check_issuer_and_subject(s: &Subject<'_>) -> Result<(), Problem> {
    if s.cert.issuer().iter_attributes().next().is_none() {
        return Err(Problem::EmptyIssuer);
    }
    if (s.is_issuer() || s.is_ca()) && s.cert.subject().iter_attributes().next().is_none() {
        return Err(Problem::EmptySubject);
    }
    Ok(())
}

/// Keys a relying party accepts (CABF 6.1.5, 7.1.3.1): RSA of at least 2048
/// bits in whole bytes, ECDSA on P-256, P-384 or P-521 as a named curve, Ed25519.
fn check_key(s: &Subject<'_>) -> Result<(), Problem> {
    let key = KeyInfo::of(s.cert);
    match key {
        _ if key.acceptable() => Ok(()),
        KeyInfo::Rsa { bits: Some(bits) } => {
            Err(Problem::WeakKey(format!("an RSA key of {bits} bits")))
        }
        other => Err(Problem::WeakKey(format!("a key of type {other}"))),
    }
}

/// rustls-webpki takes a trust anchor's name and key only; an expired root is
/// still refused here (RFC 5280 6.1 leaves that to the relying party).
fn check_anchor_validity(s: &Subject<'_>) -> Result<(), Problem> {
    if s.pos != Position::Anchor {
        return Ok(());
    }
    let v = s.cert.validity();
    // Whole seconds, as webpki compares (validity has no finer granularity).
    let at = s.at.replace_nanosecond(0).unwrap_or(s.at);
    if let Some(na) = asn1_time(v.not_after).filter(|na| at > *na) {
        return Err(Problem::Expired(na));
    }
    if let Some(nb) = asn1_time(v.not_before).filter(|nb| at < *nb) {
        return Err(Problem::NotYetValid(nb));
    }
    Ok(())
}

/// CABF 7.1.4.3, the parts that cannot be mistaken for a free-form CN: in a
/// server certificate, a subject CN holding an IP address (in any spelling) is
/// the canonical text (RFC 3986 / RFC 5952) of one of its IP subjectAltNames; a
/// CN that names a DNS subjectAltName does so in the same letter case; and a host
/// name in a CN is in A-labels, never UTF-8.
pub(crate) fn check_cn_in_san(cert: &X509Certificate<'_>) -> Result<(), Problem> {
    let sans = presented_names(cert);
    for cn in cert.subject().iter_common_name() {
        let Ok(cn) = cn.as_str() else {
            continue;
        };
        let shown = || Problem::CommonNameNotInSan(crate::names::printable(cn));
        if cn.chars().any(char::is_whitespace) {
            continue;
        }
        let is_ip_san = |text: &str| {
            sans.iter()
                .filter_map(PresentedName::ip)
                .any(|ip| ip.to_string() == text)
        };
        if looks_like_ip(cn) && !is_ip_san(cn) {
            return Err(shown());
        }
        let case_only = sans
            .iter()
            .filter_map(PresentedName::dns)
            .any(|d| d != cn && d.eq_ignore_ascii_case(cn));
        if case_only || (!cn.is_ascii() && cn.contains('.')) {
            return Err(shown());
        }
    }
    Ok(())
}

/// An IP address in any spelling resolvers accept: dotted decimal (also with
/// leading zeros), a 0x integer, or IPv6.
fn looks_like_ip(s: &str) -> bool {
    let dotted = s.contains('.') && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let hex = s.len() > 2
        && (s.starts_with("0x") || s.starts_with("0X"))
        && s[2..].bytes().all(|b| b.is_ascii_hexdigit());
    dotted || hex || s.parse::<std::net::Ipv6Addr>().is_ok()
}

/// RFC 5280 4.2.1.3: a CA that signs CRLs asserts cRLSign when it has a key
/// usage (rustls-webpki does not look at a trust anchor's key usage).
pub(crate) fn check_crl_signer(ca: &X509Certificate<'_>) -> Result<(), Problem> {
    let ku = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::KeyUsage(ku) => Some(ku.crl_sign()),
            _ => None,
        });
    match ku {
        Some(false) => Err(Problem::CrlSignerWithoutCrlSign),
        _ => Ok(()),
    }
}

/// The readable name of an extension OID.
pub(crate) fn ext_name(oid: &x509_parser::der_parser::Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(|s| s.to_string())
        .unwrap_or_else(|_| oid.to_id_string())
}

/// A rule a CRL breaks (RFC 5280 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CrlProblem {
    NotVersion2,
    CrlNumberMissing,
    CrlNumberCritical,
    AkiMissing,
}

/// RFC 5280 5.1.2.1, 5.2.1, 5.2.3: a v2 CRL with a non-critical cRLNumber and an
/// authorityKeyIdentifier.
pub(crate) fn check_crl(crl: &CertificateRevocationList<'_>) -> Result<(), CrlProblem> {
    if crl.version().map(|v| v.0) != Some(1) {
        return Err(CrlProblem::NotVersion2);
    }
    match crl
        .extensions()
        .iter()
        .find(|e| e.oid == oids::OID_X509_EXT_CRL_NUMBER)
    {
        None => return Err(CrlProblem::CrlNumberMissing),
        Some(e) if e.critical => return Err(CrlProblem::CrlNumberCritical),
        Some(_) => {}
    }
    if !crl
        .extensions()
        .iter()
        .any(|e| e.oid == oids::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
    {
        return Err(CrlProblem::AkiMissing);
    }
    Ok(())
}

/// Wildcard names against the name constraints of the CAs above them (the
/// ambiguity of CVE-2025-61727): `*.example.com` under a CA that excludes
/// `bar.example.com` could stand for the excluded name, and under a CA that only
/// permits `foo.example.com` it covers names outside the permitted subtree.
pub(crate) fn wildcard_escapes_constraints(
    leaf: &X509Certificate<'_>,
    ca: &X509Certificate<'_>,
) -> Option<String> {
    let nc = ca
        .extensions()
        .iter()
        .find_map(|e| match &e.parsed_extension() {
            ParsedExtension::NameConstraints(nc) => Some(nc),
            _ => None,
        })?;
    let dns_bases = |v: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| -> Vec<String> {
        v.iter()
            .flatten()
            .filter_map(|t| match t.base {
                GeneralName::DNSName(d) => Some(d.trim_start_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect()
    };
    let permitted = dns_bases(&nc.permitted_subtrees);
    let excluded = dns_bases(&nc.excluded_subtrees);
    for name in presented_names(leaf) {
        let Some(parent) = name.wildcard_parent() else {
            continue;
        };
        let parent = parent.to_ascii_lowercase();
        let within = |n: &str, d: &str| crate::names::dns_within(n, d);
        for ex in &excluded {
            let child_of_parent = ex.split_once('.').is_some_and(|(_, p)| p == parent);
            if within(&parent, ex) || child_of_parent {
                return Some(format!(
                    "wildcard name *.{parent} could stand for {ex}, which the CA excludes"
                ));
            }
        }
        if !permitted.is_empty() && !permitted.iter().any(|p| within(&parent, p)) {
            return Some(format!(
                "wildcard name *.{parent} covers names outside what the CA permits ({})",
                permitted.join(", ")
            ));
        }
    }
    None
}

/// A few DER walks the parsers above do not expose: the encoding of the validity
/// times, and the two signature AlgorithmIdentifiers.
mod der {
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;

    /// One TLV: (tag, whole encoding, contents, rest).
    type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

    fn tlv(b: &[u8]) -> Option<Tlv<'_>> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, hdr) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = hdr.checked_add(len)?;
        if end > b.len() {
            return None;
        }
        Some((tag, &b[..end], &b[hdr..end], &b[end..]))
    }

    /// The TBS contents and the outer signature AlgorithmIdentifier.
    fn tbs_and_outer_alg(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        let (_, _, body, _) = tlv(cert)?;
        let (_, _, tbs, rest) = tlv(body)?;
        let (_, alg, _, _) = tlv(rest)?;
        Some((tbs, alg))
    }

    /// The TBS fields after the optional version: serial, signature, issuer,
    /// validity.
    fn tbs_fields(tbs: &[u8]) -> Option<[&[u8]; 4]> {
        let mut rest = tbs;
        let (tag, _, _, r) = tlv(rest)?;
        if tag == 0xa0 {
            rest = r;
        }
        let mut out = [&[][..]; 4];
        for slot in &mut out {
            let (_, whole, _, r) = tlv(rest)?;
            *slot = whole;
            rest = r;
        }
        Some(out)
    }

    pub fn signature_algorithms(cert: &[u8]) -> Option<(&[u8], &[u8])> {
        let (tbs, outer) = tbs_and_outer_alg(cert)?;
        let [_, inner, _, _] = tbs_fields(tbs)?;
        Some((inner, outer))
    }

    pub fn validity_times(cert: &[u8]) -> Option<Vec<(u8, &[u8])>> {
        let (tbs, _) = tbs_and_outer_alg(cert)?;
        let [_, _, _, validity] = tbs_fields(tbs)?;
        let (_, _, mut body, _) = tlv(validity)?;
        let mut out = Vec::new();
        while !body.is_empty() {
            let (tag, _, value, r) = tlv(body)?;
            out.push((tag, value));
            body = r;
        }
        (out.len() == 2).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_code_is_listed() {
        let t = OffsetDateTime::UNIX_EPOCH;
        let all = [
            Problem::NotVersion3,
            Problem::SerialNotPositive,
            Problem::SerialTooLong(21),
            Problem::DuplicateExtension(String::new()),
            Problem::MalformedExtension(String::new()),
            Problem::UnknownCriticalExtension(String::new()),
            Problem::AkiCritical,
            Problem::AkiMissing,
            Problem::AkiWithoutKeyId,
            Problem::SelfSignedAkiMismatch,
            Problem::SkiCritical,
            Problem::SkiMissing,
            Problem::BasicConstraintsMissing,
            Problem::BasicConstraintsNotCritical,
            Problem::IssuerNotCa,
            Problem::KeyUsageEmpty,
            Problem::KeyCertSignWithoutCa,
            Problem::CaWithoutKeyCertSign,
            Problem::EkuCritical,
            Problem::AnchorWithEku,
            Problem::SanEmpty,
            Problem::SanMissingForEmptySubject,
            Problem::SanNotCriticalForEmptySubject,
            Problem::SanCriticalWithSubject,
            Problem::BadDnsName(String::new()),
            Problem::IpInDnsName(String::new()),
            Problem::WildcardTooBroad(String::new()),
            Problem::NameConstraintsInLeaf,
            Problem::NameConstraintsNotCritical,
            Problem::NameConstraintsEmpty,
            Problem::BadNameConstraint(String::new()),
            Problem::CommonNameNotInSan(String::new()),
            Problem::CrlSignerWithoutCrlSign,
            Problem::PolicyConstraintsNotCritical,
            Problem::AiaCritical,
            Problem::ValidityEncoding(String::new()),
            Problem::SignatureAlgorithmMismatch,
            Problem::EmptyIssuer,
            Problem::EmptySubject,
            Problem::WeakKey(String::new()),
            Problem::Expired(t),
            Problem::NotYetValid(t),
        ];
        for p in &all {
            for pos in [Position::Leaf, Position::Intermediate, Position::Anchor] {
                if let Level::Finding(_) = p.level(pos) {
                    assert!(
                        crate::verify::FINDING_CODES.contains(&p.code()),
                        "{} is not in FINDING_CODES",
                        p.code()
                    );
                }
            }
        }
        // Expiry, weak keys and CRL signers are validation wherever they are.
        for p in [Problem::Expired(t), Problem::WeakKey(String::new())] {
            assert_eq!(p.level(Position::Anchor), Level::Validation);
        }
    }

    #[test]
    fn dns_syntax_follows_the_preferred_name_syntax() {
        for ok in [
            "a.example",
            "*.example.com",
            "xn--bcher-kva.example",
            "a-b.c",
        ] {
            assert_eq!(dns_syntax(ok), Ok(()), "{ok}");
        }
        assert!(matches!(
            dns_syntax("foo_bar.example"),
            Err(Problem::BadDnsName(_))
        ));
        assert!(matches!(
            dns_syntax("8.8.8.8"),
            Err(Problem::IpInDnsName(_))
        ));
        assert!(matches!(dns_syntax("*"), Err(Problem::WildcardTooBroad(_))));
        assert!(matches!(
            dns_syntax("*.com"),
            Err(Problem::WildcardTooBroad(_))
        ));
        assert!(matches!(
            dns_syntax("f*o.example"),
            Err(Problem::BadDnsName(_))
        ));
        assert!(matches!(
            dns_syntax("a.*.example"),
            Err(Problem::BadDnsName(_))
        ));
        assert!(matches!(
            dns_syntax("-a.example"),
            Err(Problem::BadDnsName(_))
        ));
    }
}
