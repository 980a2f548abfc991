//! What a certificate says about itself, as typed values: its names, its key, its
//! EKUs, its validity. Text is made at the edge (the `Display` impls here, the
//! CLI's renderers); nothing in these facts is a pre-rendered string to be parsed
//! again, apart from the distinguished names (shown as `CN=a, O=b`).

use std::fmt;
use std::net::IpAddr;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::names::printable;
use crate::role::{self, CertClass, Eku, NameKind};
use crate::timefmt::rfc3339;

/// Parse one DER certificate, refusing trailing bytes.
pub fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{} bytes after the certificate", rest.len())),
        Err(_) => Err(unreadable(der)),
    }
}

/// Why bytes are not a certificate, in plain words (never the parser's text).
fn unreadable(der: &[u8]) -> String {
    if der.is_empty() {
        return "is empty".into();
    }
    if der[0] != 0x30 {
        let text = der.iter().take(64).all(|b| b.is_ascii());
        return if text {
            "is not a certificate: a text file without a PEM CERTIFICATE block".into()
        } else {
            "is not a certificate: neither PEM nor DER".into()
        };
    }
    // The declared length of the outer SEQUENCE against what is there.
    let declared = match der.get(1) {
        Some(&l) if l < 0x80 => Some(2 + l as usize),
        Some(&l) if (0x81..=0x84).contains(&l) => {
            let n = (l & 0x7f) as usize;
            der.get(2..2 + n)
                .map(|b| 2 + n + b.iter().fold(0usize, |acc, x| (acc << 8) | *x as usize))
        }
        _ => None,
    };
    match declared {
        Some(len) if len > der.len() => format!(
            "is truncated: the certificate declares {len} bytes but only {} are there",
            der.len()
        ),
        _ => "is DER but not an X.509 certificate (its structure does not decode as one)".into(),
    }
}

/// One name a certificate presents in its subjectAltName, as encoded (not
/// normalised). `Display` renders the tagged form every command shows
/// (`DNS:a.test`, `IP:10.0.0.1`, `URI:...`, `email:...`), control characters
/// escaped; JSON carries the same text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresentedName {
    /// dNSName.
    Dns(String),
    /// iPAddress of 4 or 16 bytes.
    Ip(IpAddr),
    /// uniformResourceIdentifier.
    Uri(String),
    /// rfc822Name (an email address).
    Email(String),
    /// directoryName, as `CN=a, O=b`.
    DirectoryName(String),
    /// otherName, by its type OID (dotted).
    OtherName(String),
    /// registeredID (dotted OID).
    RegisteredId(String),
    /// An iPAddress whose length (given) is neither 4 nor 16 bytes.
    MalformedIp(usize),
    /// x400Address, ediPartyName, or a name that does not parse.
    Unsupported,
}

impl PresentedName {
    /// The typed form of one x509-parser GeneralName.
    pub fn of(gn: &GeneralName<'_>) -> PresentedName {
        match gn {
            GeneralName::DNSName(s) => PresentedName::Dns(s.to_string()),
            GeneralName::RFC822Name(s) => PresentedName::Email(s.to_string()),
            GeneralName::URI(s) => PresentedName::Uri(s.to_string()),
            GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                Some(ip) => PresentedName::Ip(ip),
                None => PresentedName::MalformedIp(b.len()),
            },
            GeneralName::DirectoryName(n) => PresentedName::DirectoryName(dn_string(n)),
            GeneralName::OtherName(oid, _) => PresentedName::OtherName(oid.to_id_string()),
            GeneralName::RegisteredID(oid) => PresentedName::RegisteredId(oid.to_id_string()),
            _ => PresentedName::Unsupported,
        }
    }

    /// The kind of name mtlsca issues this is (DNS, IP, URI, email), if any.
    pub fn kind(&self) -> Option<NameKind> {
        match self {
            PresentedName::Dns(_) => Some(NameKind::Dns),
            PresentedName::Ip(_) => Some(NameKind::Ip),
            PresentedName::Uri(_) => Some(NameKind::Uri),
            PresentedName::Email(_) => Some(NameKind::Email),
            _ => None,
        }
    }

    /// The DNS name, if this is one.
    pub fn dns(&self) -> Option<&str> {
        match self {
            PresentedName::Dns(d) => Some(d),
            _ => None,
        }
    }

    /// The IP address, if this is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            PresentedName::Ip(ip) => Some(*ip),
            _ => None,
        }
    }

    /// The URI, if this is one.
    pub fn uri(&self) -> Option<&str> {
        match self {
            PresentedName::Uri(u) => Some(u),
            _ => None,
        }
    }

    /// The email address, if this is one.
    pub fn email(&self) -> Option<&str> {
        match self {
            PresentedName::Email(e) => Some(e),
            _ => None,
        }
    }

    /// A wildcard DNS name (`*.example.com`): the parent domain (`example.com`).
    pub fn wildcard_parent(&self) -> Option<&str> {
        self.dns().and_then(|d| d.strip_prefix("*."))
    }
}

impl fmt::Display for PresentedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresentedName::Dns(s) => write!(f, "DNS:{}", printable(s)),
            PresentedName::Email(s) => write!(f, "email:{}", printable(s)),
            PresentedName::Uri(s) => write!(f, "URI:{}", printable(s)),
            PresentedName::Ip(ip) => write!(f, "IP:{ip}"),
            PresentedName::MalformedIp(n) => write!(f, "IP:<{n} bytes>"),
            PresentedName::DirectoryName(n) => write!(f, "dirName:{n}"),
            PresentedName::OtherName(oid) => write!(f, "otherName:{oid}"),
            PresentedName::RegisteredId(oid) => write!(f, "RID:{oid}"),
            PresentedName::Unsupported => f.write_str("other name"),
        }
    }
}

impl Serialize for PresentedName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The subjectAltNames of a certificate, in the order they are encoded.
pub fn presented_names(cert: &X509Certificate<'_>) -> Vec<PresentedName> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = &ext.parsed_extension() {
            out.extend(san.general_names.iter().map(PresentedName::of));
        }
    }
    out
}

/// An IP address from the 4 or 16 bytes of an iPAddress name (`None` for any
/// other length).
pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// An elliptic curve of an ECDSA key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
    /// NIST P-192 (secp192r1): too weak for modern verifiers.
    P192,
    /// Another named curve, by OID (dotted).
    Named(String),
    /// Explicit curve parameters instead of a named curve (RFC 5480 forbids them).
    Explicit,
}

/// The public key of a certificate: its algorithm and size.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyInfo {
    /// ECDSA on the given curve.
    Ecdsa(Curve),
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// RSA (rsaEncryption or RSASSA-PSS); `bits` is the exact modulus size,
    /// `None` when the key does not parse.
    Rsa {
        /// Modulus size in bits.
        bits: Option<usize>,
    },
    /// DSA.
    Dsa,
    /// Any other algorithm, by OID (dotted).
    Other(String),
}

impl KeyInfo {
    /// The key of a certificate.
    pub fn of(cert: &X509Certificate<'_>) -> KeyInfo {
        let spki = cert.public_key();
        match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.2.1" => {
                let curve = crate::key::named_curve(spki);
                KeyInfo::Ecdsa(match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => Curve::P256,
                    Some("1.3.132.0.34") => Curve::P384,
                    Some("1.3.132.0.35") => Curve::P521,
                    Some("1.2.840.10045.3.1.1") => Curve::P192,
                    Some(other) => Curve::Named(other.to_string()),
                    None => Curve::Explicit,
                })
            }
            "1.3.101.112" => KeyInfo::Ed25519,
            "1.3.101.113" => KeyInfo::Ed448,
            "1.2.840.10040.4.1" => KeyInfo::Dsa,
            "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => KeyInfo::Rsa {
                bits: rsa_bits(cert),
            },
            other => KeyInfo::Other(other.to_string()),
        }
    }

    /// Whether modern relying parties accept the key (CABF 6.1.5, 7.1.3.1): RSA
    /// of at least [`crate::rules::RSA_MIN_BITS`] bits in whole bytes, ECDSA on
    /// P-256, P-384 or P-521 as a named curve, Ed25519.
    pub fn acceptable(&self) -> bool {
        match self {
            KeyInfo::Rsa { bits: Some(b) } => *b >= crate::rules::RSA_MIN_BITS && b % 8 == 0,
            KeyInfo::Ecdsa(Curve::P256 | Curve::P384 | Curve::P521) | KeyInfo::Ed25519 => true,
            _ => false,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Curve::P256 => f.write_str("P-256"),
            Curve::P384 => f.write_str("P-384"),
            Curve::P521 => f.write_str("P-521"),
            Curve::P192 => f.write_str("P-192"),
            Curve::Named(oid) => write!(f, "(curve {oid})"),
            Curve::Explicit => f.write_str("(explicit curve parameters)"),
        }
    }
}

/// "ECDSA P-256", "RSA 2048", "Ed25519", ...
impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyInfo::Ecdsa(c) => write!(f, "ECDSA {c}"),
            KeyInfo::Ed25519 => f.write_str("Ed25519"),
            KeyInfo::Ed448 => f.write_str("Ed448"),
            KeyInfo::Rsa { bits: Some(b) } => write!(f, "RSA {b}"),
            KeyInfo::Rsa { bits: None } => f.write_str("RSA (malformed)"),
            KeyInfo::Dsa => f.write_str("DSA"),
            KeyInfo::Other(oid) => write!(f, "unknown key algorithm {oid}"),
        }
    }
}

impl Serialize for KeyInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The exact modulus size of an RSA key, in bits.
fn rsa_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    match cert.public_key().parsed().ok()? {
        PublicKey::RSA(rsa) => {
            let m = rsa.modulus;
            let start = m.iter().position(|b| *b != 0)?;
            let m = &m[start..];
            Some((m.len() - 1) * 8 + (8 - m[0].leading_zeros() as usize))
        }
        _ => None,
    }
}

const OID_CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
const OID_TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";
const OID_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";

/// One key purpose of an EKU extension. `Display` gives the name OpenSSL prints
/// (serverAuth, codeSigning, ...) or the dotted OID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// One mtlsca knows by name (serverAuth, clientAuth, emailProtection, anyExtendedKeyUsage).
    Known(Eku),
    /// id-kp-codeSigning.
    CodeSigning,
    /// id-kp-timeStamping.
    TimeStamping,
    /// id-kp-OCSPSigning.
    OcspSigning,
    /// Any other, by OID (dotted).
    Other(String),
}

impl KeyPurpose {
    /// The purpose of a dotted OID.
    pub fn from_oid(oid: &str) -> KeyPurpose {
        if let Some(e) = Eku::from_oid(oid) {
            return KeyPurpose::Known(e);
        }
        match oid {
            OID_CODE_SIGNING => KeyPurpose::CodeSigning,
            OID_TIME_STAMPING => KeyPurpose::TimeStamping,
            OID_OCSP_SIGNING => KeyPurpose::OcspSigning,
            other => KeyPurpose::Other(other.to_string()),
        }
    }

    /// The dotted OID.
    pub fn oid(&self) -> &str {
        match self {
            KeyPurpose::Known(e) => e.oid(),
            KeyPurpose::CodeSigning => OID_CODE_SIGNING,
            KeyPurpose::TimeStamping => OID_TIME_STAMPING,
            KeyPurpose::OcspSigning => OID_OCSP_SIGNING,
            KeyPurpose::Other(oid) => oid,
        }
    }

    /// The mtlsca EKU this is, if it is one.
    pub fn known(&self) -> Option<Eku> {
        match self {
            KeyPurpose::Known(e) => Some(*e),
            _ => None,
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPurpose::Known(e) => f.write_str(e.display_name()),
            KeyPurpose::CodeSigning => f.write_str("codeSigning"),
            KeyPurpose::TimeStamping => f.write_str("timeStamping"),
            KeyPurpose::OcspSigning => f.write_str("OCSPSigning"),
            KeyPurpose::Other(oid) => f.write_str(oid),
        }
    }
}

impl Serialize for KeyPurpose {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The OIDs (dotted) an EKU extension lists: the TLS and S/MIME ones first, in
/// the order mtlsca writes them, then the rest.
pub fn eku_oid_list(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let known = [
        (eku.server_auth, role::OID_SERVER_AUTH),
        (eku.client_auth, role::OID_CLIENT_AUTH),
        (eku.email_protection, role::OID_EMAIL_PROTECTION),
        (eku.any, role::OID_ANY_EKU),
        (eku.code_signing, OID_CODE_SIGNING),
        (eku.time_stamping, OID_TIME_STAMPING),
        (eku.ocsp_signing, OID_OCSP_SIGNING),
    ];
    known
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, o)| o.to_string())
        .chain(eku.other.iter().map(|o| o.to_id_string()))
        .collect()
}

/// The key purposes of a certificate, `None` without an EKU extension.
pub fn key_purposes(cert: &X509Certificate<'_>) -> Option<Vec<KeyPurpose>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match &ext.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(eku) => Some(
                eku_oid_list(eku)
                    .iter()
                    .map(|o| KeyPurpose::from_oid(o))
                    .collect(),
            ),
            _ => None,
        })
}

/// A list as messages show it: key purposes `serverAuth+clientAuth`, names
/// `DNS:a.test, IP:10.0.0.1`.
pub fn joined<T: fmt::Display>(items: &[T], sep: &str) -> String {
    items
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// `CN=a, O=b`, or `(empty)`, never with control characters.
pub fn dn_string(name: &x509_parser::x509::X509Name<'_>) -> String {
    let s = name.to_string();
    if s.is_empty() {
        "(empty)".into()
    } else {
        printable(&s)
    }
}

/// An ASN.1 time as a date-time, `None` outside what `time` represents.
pub fn asn1_time(t: x509_parser::time::ASN1Time) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

fn has_attr(
    name: &x509_parser::x509::X509Name<'_>,
    oid: &x509_parser::der_parser::Oid<'_>,
) -> bool {
    name.iter_attributes().any(|a| a.attr_type() == oid)
}

/// What a certificate says about itself. Serialises (`inspect --json`) as
/// `role`, `ekus` (names), `has_eku`, `names` (tagged text), `subject`, `issuer`,
/// `serial` (hex), `not_before`/`not_after` (RFC 3339), `key` (text), `self_signed`.
#[derive(Debug, Clone)]
pub struct CertFacts {
    /// How the draft reads it.
    pub role: CertClass,
    /// The key purposes of its EKU extension; `None` when it has none.
    pub ekus: Option<Vec<KeyPurpose>>,
    /// Its subjectAltNames.
    pub names: Vec<PresentedName>,
    /// Subject, `CN=a, O=b`.
    pub subject: String,
    /// Issuer, `CN=a, O=b`.
    pub issuer: String,
    /// Serial number, as encoded (big-endian).
    pub serial: Vec<u8>,
    /// notBefore (`None` when out of range).
    pub not_before: Option<OffsetDateTime>,
    /// notAfter (`None` when out of range).
    pub not_after: Option<OffsetDateTime>,
    /// The public key.
    pub key: KeyInfo,
    /// Subject and issuer are the same name.
    pub self_signed: bool,
    /// basicConstraints pathLenConstraint.
    pub path_len: Option<u32>,
    /// The subject has an organizationName.
    pub has_org: bool,
    /// The subject has a commonName.
    pub has_cn: bool,
    /// Extensions that appear more than once or do not parse (dotted OIDs): the
    /// certificate is malformed (RFC 5280 section 4.2), and what it claims cannot be trusted.
    pub malformed_extensions: Vec<String>,
}

impl CertFacts {
    /// The facts of a parsed certificate.
    pub fn of(cert: &X509Certificate<'_>) -> CertFacts {
        let ekus = key_purposes(cert);
        let bc = cert
            .extensions()
            .iter()
            .find_map(|e| match &e.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => Some(bc.clone()),
                _ => None,
            });
        let is_ca = bc.as_ref().is_some_and(|b| b.ca);
        let oids: Option<Vec<String>> = ekus
            .as_ref()
            .map(|v| v.iter().map(|p| p.oid().to_string()).collect());
        CertFacts {
            role: role::classify(is_ca, oids.as_deref()),
            ekus,
            names: presented_names(cert),
            subject: dn_string(cert.subject()),
            issuer: dn_string(cert.issuer()),
            serial: cert.raw_serial().to_vec(),
            not_before: asn1_time(cert.validity().not_before),
            not_after: asn1_time(cert.validity().not_after),
            key: KeyInfo::of(cert),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            path_len: bc.and_then(|b| b.path_len_constraint),
            has_org: has_attr(
                cert.subject(),
                &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
            ),
            has_cn: has_attr(
                cert.subject(),
                &x509_parser::oid_registry::OID_X509_COMMON_NAME,
            ),
            malformed_extensions: malformed_extensions(cert),
        }
    }

    /// Whether it has an EKU extension.
    pub fn has_eku(&self) -> bool {
        self.ekus.is_some()
    }

    /// The key purposes (empty without an EKU extension).
    pub fn purposes(&self) -> &[KeyPurpose] {
        self.ekus.as_deref().unwrap_or(&[])
    }

    /// Whether the EKU extension lists `eku`.
    pub fn has_purpose(&self, eku: Eku) -> bool {
        self.purposes().iter().any(|p| p.known() == Some(eku))
    }

    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        crate::hex::encode(&self.serial)
    }
}

impl Serialize for CertFacts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let time = |t: Option<OffsetDateTime>| t.map(rfc3339).unwrap_or_default();
        let mut st = s.serialize_struct("CertFacts", 11)?;
        st.serialize_field("role", &self.role)?;
        st.serialize_field("ekus", self.purposes())?;
        st.serialize_field("has_eku", &self.has_eku())?;
        st.serialize_field("names", &self.names)?;
        st.serialize_field("subject", &self.subject)?;
        st.serialize_field("issuer", &self.issuer)?;
        st.serialize_field("serial", &self.serial_hex())?;
        st.serialize_field("not_before", &time(self.not_before))?;
        st.serialize_field("not_after", &time(self.not_after))?;
        st.serialize_field("key", &self.key)?;
        st.serialize_field("self_signed", &self.self_signed)?;
        st.end()
    }
}

/// Extensions present twice, or whose value does not parse.
fn malformed_extensions(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for e in cert.extensions() {
        let oid = e.oid.to_id_string();
        let broken = matches!(e.parsed_extension(), ParsedExtension::ParseError { .. });
        if (!seen.insert(oid.clone()) || broken) && !out.contains(&oid) {
            out.push(oid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_render_tagged_and_escaped() {
        assert_eq!(
            PresentedName::Dns("a.test".into()).to_string(),
            "DNS:a.test"
        );
        assert_eq!(
            PresentedName::Ip("10.0.0.1".parse().unwrap()).to_string(),
            "IP:10.0.0.1"
        );
        assert_eq!(
            PresentedName::Email("a\nb@x".into()).to_string(),
            "email:a\\nb@x"
        );
        assert_eq!(PresentedName::MalformedIp(5).to_string(), "IP:<5 bytes>");
        assert_eq!(
            PresentedName::Dns("*.x.test".into()).wildcard_parent(),
            Some("x.test")
        );
    }

    #[test]
    fn keys_render_and_judge() {
        assert_eq!(KeyInfo::Ecdsa(Curve::P256).to_string(), "ECDSA P-256");
        assert_eq!(KeyInfo::Ecdsa(Curve::P192).to_string(), "ECDSA P-192");
        assert_eq!(KeyInfo::Rsa { bits: Some(2048) }.to_string(), "RSA 2048");
        assert!(KeyInfo::Rsa { bits: Some(2048) }.acceptable());
        assert!(!KeyInfo::Rsa { bits: Some(2047) }.acceptable());
        assert!(!KeyInfo::Rsa { bits: Some(1024) }.acceptable());
        assert!(!KeyInfo::Ecdsa(Curve::Explicit).acceptable());
        assert!(!KeyInfo::Dsa.acceptable());
    }

    #[test]
    fn purposes_by_oid() {
        assert_eq!(
            KeyPurpose::from_oid(role::OID_SERVER_AUTH),
            KeyPurpose::Known(Eku::ServerAuth)
        );
        assert_eq!(
            KeyPurpose::from_oid(OID_CODE_SIGNING).to_string(),
            "codeSigning"
        );
        assert_eq!(KeyPurpose::from_oid("1.2.3").to_string(), "1.2.3");
    }
}
