//! Every reason a verification gives, as a plain sentence, in one place: the
//! problems of our own checks and the errors of rustls-webpki.
//!
//! Reasons about the certificate being verified start with "certificate" so that
//! a pair verdict can say "initiator certificate expired on ...".

use time::OffsetDateTime;

use super::checks::{CrlProblem, Position, Problem};
use super::human_time;

/// Who a reason is about: "certificate", "intermediate CA `CN=x`", ...
pub(crate) fn who(pos: Position, subject: &str) -> String {
    match pos {
        Position::Leaf => "certificate".into(),
        Position::Intermediate => format!("intermediate CA `{subject}`"),
        Position::Anchor => format!("trust anchor `{subject}`"),
    }
}

pub(crate) fn problem(who: &str, p: &Problem) -> String {
    let what = match p {
        Problem::NotVersion3 => "is not an X.509 version 3 certificate".to_string(),
        Problem::SerialNotPositive => {
            "has a serial number that is zero or negative (RFC 5280 requires a positive integer)".into()
        }
        Problem::SerialTooLong(n) => {
            format!("has a serial number of {n} octets (RFC 5280 allows at most 20)")
        }
        Problem::DuplicateExtension(e) => format!("carries the {e} extension twice"),
        Problem::MalformedExtension(e) => format!("has a malformed {e} extension"),
        Problem::UnknownCriticalExtension(e) => {
            format!("has a critical extension that is not understood ({e})")
        }
        Problem::AkiCritical => "marks its authorityKeyIdentifier critical (RFC 5280 forbids it)".into(),
        Problem::AkiMissing => "has no authorityKeyIdentifier (RFC 5280 requires one in every certificate that is not self-signed)".into(),
        Problem::AkiWithoutKeyId => "has an authorityKeyIdentifier without a keyIdentifier".into(),
        Problem::SelfSignedAkiMismatch => "is self-signed but its authorityKeyIdentifier does not just repeat its subjectKeyIdentifier".into(),
        Problem::SkiCritical => "marks its subjectKeyIdentifier critical (RFC 5280 forbids it)".into(),
        Problem::SkiMissing => "is a CA without a subjectKeyIdentifier (RFC 5280 requires one)".into(),
        Problem::BasicConstraintsMissing => "signs certificates but has no basicConstraints extension".into(),
        Problem::BasicConstraintsNotCritical => "is a CA whose basicConstraints is not critical (RFC 5280 requires critical)".into(),
        Problem::IssuerNotCa => "signs certificates but is not a CA (basicConstraints cA is false)".into(),
        Problem::KeyUsageEmpty => "has a keyUsage extension with no bit set".into(),
        Problem::KeyCertSignWithoutCa => "asserts keyCertSign without being a CA (basicConstraints cA is not true)".into(),
        Problem::CaWithoutKeyCertSign => "signs certificates but its keyUsage lacks keyCertSign".into(),
        Problem::EkuCritical => "marks its extendedKeyUsage critical".into(),
        Problem::AnchorWithEku => "is a root that carries an extendedKeyUsage extension".into(),
        Problem::SanEmpty => "has an empty subjectAltName extension".into(),
        Problem::SanMissingForEmptySubject => "has an empty subject and no subjectAltName".into(),
        Problem::SanNotCriticalForEmptySubject => "has an empty subject but a non-critical subjectAltName (RFC 5280 requires critical)".into(),
        Problem::SanCriticalWithSubject => "marks its subjectAltName critical although its subject is not empty".into(),
        Problem::BadDnsName(n) => format!("has a DNS name `{n}` that is not a valid host name"),
        Problem::IpInDnsName(n) => format!("puts the IP address `{n}` in a DNS name"),
        Problem::WildcardTooBroad(n) => format!("has a wildcard name `{n}` over a top-level domain"),
        Problem::NameConstraintsInLeaf => "is not a CA but carries name constraints".into(),
        Problem::NameConstraintsNotCritical => "has name constraints that are not critical (RFC 5280 requires critical)".into(),
        Problem::NameConstraintsEmpty => "has a nameConstraints extension with no or empty subtrees".into(),
        Problem::BadNameConstraint(d) => {
            format!("has a DNS name constraint `{d}` that is not a host name (RFC 5280 4.2.1.10)")
        }
        Problem::CommonNameNotInSan(cn) => format!(
            "has a subject CN `{cn}` that is not a character-for-character copy of one of its subjectAltNames (CABF 7.1.4.3)"
        ),
        Problem::CrlSignerWithoutCrlSign => {
            "signs a CRL but its keyUsage lacks cRLSign".into()
        }
        Problem::PolicyConstraintsNotCritical => "has policy constraints that are not critical (RFC 5280 requires critical)".into(),
        Problem::AiaCritical => "marks authorityInfoAccess critical (RFC 5280 forbids it)".into(),
        Problem::ValidityEncoding(d) => format!("has a badly encoded validity: it {d}"),
        Problem::SignatureAlgorithmMismatch => "names different signature algorithms inside and outside its signed part".into(),
        Problem::EmptyIssuer => "has an empty issuer name".into(),
        Problem::EmptySubject => "is a CA with an empty subject".into(),
        Problem::WeakKey(k) => format!("has {k}, which relying parties do not accept"),
        Problem::Expired(t) => format!("expired on {}", human_time(*t)),
        Problem::NotYetValid(t) => format!("is not valid before {}", human_time(*t)),
    };
    format!("{who} {what}")
}

pub(crate) fn crl_problem(issuer: &str, p: &CrlProblem) -> String {
    let what = match p {
        CrlProblem::NotVersion2 => "is not a version 2 CRL",
        CrlProblem::CrlNumberMissing => "has no cRLNumber (RFC 5280 requires one)",
        CrlProblem::CrlNumberCritical => "marks its cRLNumber critical (RFC 5280 forbids it)",
        CrlProblem::AkiMissing => "has no authorityKeyIdentifier (RFC 5280 requires one)",
    };
    format!("the CRL of `{issuer}` {what}: its revocation status cannot be trusted")
}

/// What the path-building error of rustls-webpki means, as a sentence. `expiry`
/// names the certificate whose validity failed, when it is not the leaf.
#[allow(deprecated)]
pub(crate) fn webpki(err: &webpki::Error, at: OffsetDateTime, whose: &str) -> String {
    use webpki::Error as E;
    let t = |u: rustls_pki_types::UnixTime| {
        OffsetDateTime::from_unix_timestamp(u.as_secs() as i64)
            .map(human_time)
            .unwrap_or_else(|_| u.as_secs().to_string())
    };
    match err {
        E::CertExpired { not_after, .. } => format!("{whose} expired on {}", t(*not_after)),
        E::CertNotValidYet { not_before, .. } => {
            format!("{whose} is not valid before {}", t(*not_before))
        }
        E::InvalidCertValidity => format!("{whose} has a notAfter before its notBefore"),
        E::UnknownIssuer => "certificate does not chain to a trusted root (no path from it to a trust anchor with the given intermediates)".into(),
        E::CaUsedAsEndEntity => "certificate is a CA certificate used as a leaf".into(),
        E::EndEntityUsedAsCa => "certificate chain uses a leaf (not a CA) as an issuer".into(),
        E::PathLenConstraintViolated => "certificate chain is longer than a CA's pathLenConstraint allows".into(),
        E::NameConstraintViolation => "certificate has a name its issuing CAs' name constraints forbid".into(),
        E::InvalidSignatureForPublicKey => "certificate does not chain to a trusted root: a signature in the path does not verify (a CA of the same name but another key?)".into(),
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "certificate chain uses a signature algorithm or key that is not supported".into()
        }
        E::CertRevoked => "certificate or one of its CAs is revoked (CRL)".into(),
        E::UnknownRevocationStatus => "certificate's revocation status is unknown".into(),
        E::CertDistrusted => "certificate chain uses a distrusted key".into(),
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            "certificate chain has an extendedKeyUsage that does not allow the purpose".into()
        }
        E::EmptyEkuExtension => "certificate chain has an empty extendedKeyUsage extension".into(),
        E::UnsupportedCriticalExtension => {
            "certificate chain has a critical extension that is not understood".into()
        }
        E::UnsupportedCertVersion => "certificate chain has a certificate that is not X.509 version 3".into(),
        E::MaximumPathDepthExceeded => "certificate chain is longer than relying parties accept".into(),
        E::MaximumSignatureChecksExceeded
        | E::MaximumPathBuildCallsExceeded
        | E::MaximumNameConstraintComparisonsExceeded => {
            "certificate chain is too costly to validate (path building gave up)".into()
        }
        E::InvalidCrlSignatureForPublicKey => "a CRL's signature does not verify".into(),
        E::IssuerNotCrlSigner => "a CRL is signed by a CA whose keyUsage lacks cRLSign".into(),
        E::CrlExpired { next_update, .. } => {
            format!("a CRL is out of date (next update was due {})", t(*next_update))
        }
        E::UnsupportedDeltaCrl
        | E::UnsupportedIndirectCrl
        | E::UnsupportedCrlIssuingDistributionPoint
        | E::UnsupportedRevocationReasonsPartitioning
        | E::UnsupportedCrlVersion => "a CRL uses a feature that is not supported".into(),
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::MalformedExtensions
        | E::ExtensionValueInvalid | E::InvalidSerialNumber | E::MalformedNameConstraint
        | E::InvalidNetworkMaskConstraint | E::MalformedDnsIdentifier => {
            format!("certificate chain has a malformed certificate ({err:?})")
        }
        other => {
            let _ = at;
            format!("certificate chain is not valid ({other:?})")
        }
    }
}

/// The name mismatch, listing what the certificate does name.
pub(crate) fn name_mismatch(name: &str, has: &[crate::inspect::PresentedName]) -> String {
    let has = if has.is_empty() {
        "no subjectAltName at all".to_string()
    } else {
        crate::inspect::joined(has, ", ")
    };
    format!("certificate is not valid for {name} (it names {has})")
}
