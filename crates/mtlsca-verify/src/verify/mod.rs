//! Verification: chain validation with rustls-webpki plus the RFC 5280 checks it
//! leaves out, the draft's role and pair semantics, rustls verifiers for relying
//! parties, and a real loopback handshake.
//!
//! A failed verification is a *verdict* (data with reasons), never an `Err`: the
//! functions here return [`CertVerdict`] and [`pair::PairVerdict`]. `Err` is kept for
//! input that cannot be read at all (see [`load`]). Nothing here reads the clock:
//! the time to validate at is always passed in.

mod chain;
mod checks;
pub mod handshake;
pub mod load;
pub mod pair;
mod reasons;
mod rfc5280;
pub mod rustls_verifiers;

use std::net::IpAddr;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::Serialize;
use time::OffsetDateTime;

use crate::inspect::{KeyPurpose, PresentedName};
use crate::role::{CertClass, Eku, Role};

pub use chain::{reason_name, verify_cert};
pub use pair::{
    check_pair, verify_pair, HandshakeKeys, PairConnection, PairEnd, PairOptions, PairParty,
    PairRequest, PairVerdict, Side, SideVerdict,
};

/// The classic TLS purposes (RFC 5280 reading of the EKU extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// id-kp-serverAuth, if the certificate has an EKU extension at all.
    Server,
    /// id-kp-clientAuth, if the certificate has an EKU extension at all.
    Client,
}

impl Purpose {
    /// `server` or `client`, as `--purpose` takes it.
    pub fn parse(s: &str) -> Option<Purpose> {
        match s {
            "server" => Some(Purpose::Server),
            "client" => Some(Purpose::Client),
            _ => None,
        }
    }
}

/// How the EKU of the certificate (and of the CAs above it) is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Usage {
    /// The draft: the leaf must carry an EKU extension whose TLS meaning is exactly
    /// the role's (device = serverAuth without clientAuth or anyExtendedKeyUsage;
    /// entity = clientAuth, perhaps emailProtection, without serverAuth), and every
    /// CA in the path that restricts EKUs must allow it.
    Role(Role),
    /// Classic RFC 5280: the EKU is required only if the extension is present
    /// (what `webpki::KeyUsage::server_auth()` / `client_auth()` do).
    Purpose(Purpose),
}

impl Usage {
    /// The TLS EKU the chain must allow.
    pub fn tls_eku(self) -> Eku {
        match self {
            Usage::Role(r) => r.tls_eku(),
            Usage::Purpose(Purpose::Server) => Eku::ServerAuth,
            Usage::Purpose(Purpose::Client) => Eku::ClientAuth,
        }
    }

    /// The TLS EKU OID (dotted) the chain must allow.
    pub fn tls_oid(self) -> &'static str {
        self.tls_eku().oid()
    }
}

/// What one certificate is checked against: the trust anchors, the untrusted
/// intermediates that may be used to build a path, CRLs and other revocation
/// sources.
#[derive(Default)]
pub struct Trust<'a> {
    /// Trust anchors (root certificates).
    pub anchors: Vec<CertificateDer<'a>>,
    /// Untrusted certificates that may be used to build a path.
    pub intermediates: Vec<CertificateDer<'a>>,
    /// CRLs, checked by rustls-webpki during path building.
    pub crls: Vec<CertificateRevocationListDer<'a>>,
    /// Other revocation sources (the CA's store, for instance).
    pub revocation: Vec<&'a dyn RevocationSource>,
}

/// Options of one certificate verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// How the EKU is judged.
    pub usage: Usage,
    /// A name the certificate must be valid for (RFC 6125 matching for DNS).
    pub name: Option<PeerName>,
    /// The time to validate at (only `main` reads the clock).
    pub at: OffsetDateTime,
}

/// A name a peer is expected to have: what `--name` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerName {
    /// A DNS name (lowercased, without a trailing dot).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// An email address.
    Email(String),
    /// A URI, matched exactly.
    Uri(String),
}

impl PeerName {
    /// Read a name as typed: an IP address, an email (has `@`), a URI (has `://`
    /// or is a `urn:`), else a DNS name. Syntax is judged when matching.
    pub fn parse(s: &str) -> PeerName {
        let s = s.trim();
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse() {
            PeerName::Ip(ip)
        } else if s.contains("://") || s.to_ascii_lowercase().starts_with("urn:") {
            PeerName::Uri(s.to_string())
        } else if s.contains('@') {
            PeerName::Email(s.to_string())
        } else {
            PeerName::Dns(s.trim_end_matches('.').to_ascii_lowercase())
        }
    }
}

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerName::Dns(s) => write!(f, "DNS:{}", crate::names::printable(s)),
            PeerName::Ip(ip) => write!(f, "IP:{ip}"),
            PeerName::Email(s) => write!(f, "email:{}", crate::names::printable(s)),
            PeerName::Uri(s) => write!(f, "URI:{}", crate::names::printable(s)),
        }
    }
}

/// A certificate whose revocation status is asked for, with what identifies its
/// issuer (the CA that signed it in the validated path).
#[derive(Debug, Clone, Copy)]
pub struct CertRef<'a> {
    /// The certificate, DER.
    pub der: &'a [u8],
    /// Serial number, big-endian bytes as encoded (may have a leading zero byte).
    pub serial: &'a [u8],
    /// The issuer's subject, DER of the Name.
    pub issuer_subject: &'a [u8],
    /// The issuer's SubjectPublicKeyInfo, DER.
    pub issuer_spki: &'a [u8],
    /// The issuer's subjectKeyIdentifier, when it has one.
    pub issuer_key_id: Option<&'a [u8]>,
}

/// Why and when a certificate was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationInfo {
    /// When it was revoked, when known.
    pub revoked_at: Option<OffsetDateTime>,
    /// RFC 5280 reason name (keyCompromise, superseded, ...), when known.
    pub reason: Option<String>,
    /// Where the information comes from ("the CA's store", "CRL of ...").
    pub source: String,
}

/// Something that knows revoked certificates: the CA's store, for instance. A
/// source answers for the certificates it knows and returns `None` for the rest
/// (not revoked, or unknown to it). CRL files are checked by rustls-webpki inside
/// path building (signature, cRLSign, scope, expiry), not through this trait.
pub trait RevocationSource {
    /// Whether `cert` is revoked, as far as this source knows.
    fn revoked(&self, cert: &CertRef<'_>) -> Option<RevocationInfo>;
}

impl<F> RevocationSource for F
where
    F: Fn(&CertRef<'_>) -> Option<RevocationInfo>,
{
    fn revoked(&self, cert: &CertRef<'_>) -> Option<RevocationInfo> {
        self(cert)
    }
}

/// The verdict on one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertVerdict {
    /// No reasons: the certificate is valid for the usage, name and time.
    pub valid: bool,
    /// device, entity, ambiguous, no-eku or ca; `null` when unreadable.
    pub role: Option<CertClass>,
    /// Subject, `CN=a, O=b`.
    pub subject: String,
    /// Issuer, `CN=a, O=b`.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Its subjectAltNames (JSON: `DNS:a.test`, ...).
    pub names: Vec<PresentedName>,
    /// Its key purposes (JSON: serverAuth, ...).
    pub ekus: Vec<KeyPurpose>,
    #[serde(serialize_with = "opt_rfc3339")]
    /// notBefore (JSON: RFC 3339).
    pub not_before: Option<OffsetDateTime>,
    #[serde(serialize_with = "opt_rfc3339")]
    /// notAfter (JSON: RFC 3339).
    pub not_after: Option<OffsetDateTime>,
    /// Subjects from the leaf up to the trust anchor, when a path was found.
    pub chain: Vec<String>,
    /// Why it is not valid (empty when valid). Sentences that read after
    /// "initiator"/"responder" when they start with "certificate".
    pub reasons: Vec<String>,
    /// Issuer-side profile rules the certificates of the path break (RFC 5280
    /// rules addressed to CAs, CA/Browser Forum rules): reported, never failing
    /// the verdict unless made strict ([`CertVerdict::strict`]). Trust anchors are
    /// judged here only, never by validation, for their encoding.
    pub findings: Vec<Finding>,
}

impl CertVerdict {
    /// `--strict`: every finding becomes a reason, so a verdict with findings is
    /// not valid. For linting a PKI you own.
    pub fn strict(mut self) -> CertVerdict {
        for f in &self.findings {
            let text = format!("{} [{}]", f.message, f.code);
            if !self.reasons.contains(&text) {
                self.reasons.push(text);
            }
        }
        self.valid = self.reasons.is_empty();
        self
    }
}

/// Every code a [`Finding`] can have (the README lists them with their rule).
pub const FINDING_CODES: &[&str] = &[
    "serial-not-positive",
    "serial-too-long",
    "aki-critical",
    "aki-missing",
    "aki-without-key-id",
    "self-signed-aki-mismatch",
    "ski-critical",
    "ski-missing",
    "bc-not-critical",
    "ku-empty",
    "ku-cert-sign-without-ca",
    "eku-critical",
    "root-with-eku",
    "san-empty",
    "san-missing",
    "san-not-critical",
    "san-critical",
    "bad-dns-name",
    "ip-in-dns-name",
    "wildcard-too-broad",
    "nc-in-leaf",
    "nc-not-critical",
    "nc-empty",
    "nc-bad-dns",
    "cn-not-in-san",
    "policy-constraints-not-critical",
    "aia-critical",
    "validity-encoding",
    "empty-issuer",
    "empty-subject",
    "not-v3",
    "duplicate-extension",
    "malformed-extension",
    "unknown-critical-extension",
    "signature-algorithm-mismatch",
    "ca-as-leaf",
];

/// How serious a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// The issuer broke a MUST of RFC 5280.
    Error,
    /// The issuer broke a SHOULD of RFC 5280 or a CA/Browser Forum rule that a
    /// private PKI may choose not to follow.
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// An issuer-side profile rule that a certificate of the path breaks. It does not
/// make the verdict invalid unless the verdict is made strict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable code (`bc-not-critical`, `cn-not-in-san`, ...), listed in the README.
    pub code: &'static str,
    /// How serious it is.
    pub severity: Severity,
    /// The finding as a sentence ("trust anchor `CN=x` ...").
    pub message: String,
}

pub use crate::timefmt::{human_time, rfc3339};

/// A time as RFC 3339 text in JSON, `null` when absent.
pub(crate) fn opt_rfc3339<S: serde::Serializer>(
    t: &Option<OffsetDateTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}
