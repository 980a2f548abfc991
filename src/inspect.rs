//! Reading any certificate: what it is under the draft (device, entity, ambiguous,
//! no-EKU, CA), its EKUs, names and validity, and the draft's findings about it.
//! Used by `inspect` (a migration lint over existing certificates) and by `verify`
//! to describe what it validated. No I/O, no clock: the time is passed in.

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::names::printable;
use crate::role::{self, CertClass, Eku, Role};
use crate::verify::{human_time, rfc3339};

/// Parse one DER certificate, refusing trailing bytes.
pub fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(format!("{} bytes after the certificate", rest.len())),
        Err(e) => Err(format!("not a DER X.509 certificate ({e})")),
    }
}

/// What a certificate says about itself, in printable form.
#[derive(Debug, Clone, Serialize)]
pub struct CertFacts {
    pub role: CertClass,
    /// EKU names as OpenSSL spells them (serverAuth, ...) or dotted OIDs; empty
    /// when the certificate has no EKU extension (see `has_eku`).
    pub ekus: Vec<String>,
    pub has_eku: bool,
    pub names: Vec<String>,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub key: String,
    pub self_signed: bool,
    #[serde(skip)]
    pub eku_oids: Option<Vec<String>>,
    #[serde(skip)]
    pub not_before_t: Option<OffsetDateTime>,
    #[serde(skip)]
    pub not_after_t: Option<OffsetDateTime>,
    #[serde(skip)]
    pub path_len: Option<u32>,
    #[serde(skip)]
    pub has_org: bool,
    #[serde(skip)]
    pub has_cn: bool,
    /// Extensions that appear more than once or do not parse (dotted OIDs): the
    /// certificate is malformed (RFC 5280 section 4.2), and what it claims cannot be trusted.
    #[serde(skip)]
    pub malformed_extensions: Vec<String>,
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

/// The EKU OIDs of a certificate (dotted), `None` without an EKU extension.
pub fn eku_oids(cert: &X509Certificate<'_>) -> Option<Vec<String>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match &ext.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(eku) => Some(eku_oid_list(eku)),
            _ => None,
        })
}

/// The OIDs (dotted) an EKU extension lists: the TLS and S/MIME ones first, in
/// the order mtlsca writes them, then the rest.
pub fn eku_oid_list(eku: &x509_parser::extensions::ExtendedKeyUsage<'_>) -> Vec<String> {
    let known = [
        (eku.server_auth, role::OID_SERVER_AUTH),
        (eku.client_auth, role::OID_CLIENT_AUTH),
        (eku.email_protection, role::OID_EMAIL_PROTECTION),
        (eku.any, role::OID_ANY_EKU),
        (eku.code_signing, "1.3.6.1.5.5.7.3.3"),
        (eku.time_stamping, "1.3.6.1.5.5.7.3.8"),
        (eku.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
    ];
    known
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, o)| o.to_string())
        .chain(eku.other.iter().map(|o| o.to_id_string()))
        .collect()
}

/// The name OpenSSL prints for an EKU OID, else the OID.
pub fn eku_name(oid: &str) -> String {
    if let Some(e) = Eku::from_oid(oid) {
        return e.display_name().to_string();
    }
    match oid {
        "1.3.6.1.5.5.7.3.3" => "codeSigning".into(),
        "1.3.6.1.5.5.7.3.8" => "timeStamping".into(),
        "1.3.6.1.5.5.7.3.9" => "OCSPSigning".into(),
        other => other.to_string(),
    }
}

/// The subjectAltNames, rendered `DNS:x`, `IP:x`, `email:x`, `URI:x`.
pub fn san_strings(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = &ext.parsed_extension() {
            for gn in &san.general_names {
                out.push(general_name_string(gn));
            }
        }
    }
    out
}

pub fn general_name_string(gn: &GeneralName<'_>) -> String {
    match gn {
        GeneralName::DNSName(s) => format!("DNS:{}", printable(s)),
        GeneralName::RFC822Name(s) => format!("email:{}", printable(s)),
        GeneralName::URI(s) => format!("URI:{}", printable(s)),
        GeneralName::IPAddress(b) => match ip_from_bytes(b) {
            Some(ip) => format!("IP:{ip}"),
            None => format!("IP:<{} bytes>", b.len()),
        },
        GeneralName::DirectoryName(n) => format!("dirName:{}", dn_string(n)),
        GeneralName::OtherName(oid, _) => format!("otherName:{}", oid.to_id_string()),
        GeneralName::RegisteredID(oid) => format!("RID:{}", oid.to_id_string()),
        _ => "other name".into(),
    }
}

pub fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

pub fn asn1_time(t: x509_parser::time::ASN1Time) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
}

/// A short description of the public key ("ECDSA P-256", "RSA 2048").
pub fn key_description(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                Some("1.3.132.0.34") => "ECDSA P-384".into(),
                Some("1.3.132.0.35") => "ECDSA P-521".into(),
                Some("1.2.840.10045.3.1.1") => "ECDSA P-192".into(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => "ECDSA (explicit curve parameters)".into(),
            }
        }
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => match rsa_bits(cert) {
            Some(bits) => format!("RSA {bits}"),
            None => "RSA (malformed)".into(),
        },
        other => format!("unknown key algorithm {other}"),
    }
}

/// The exact modulus size of an RSA key, in bits.
pub fn rsa_bits(cert: &X509Certificate<'_>) -> Option<usize> {
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

fn has_attr(
    name: &x509_parser::x509::X509Name<'_>,
    oid: &x509_parser::der_parser::Oid<'_>,
) -> bool {
    name.iter_attributes().any(|a| a.attr_type() == oid)
}

impl CertFacts {
    pub fn of(cert: &X509Certificate<'_>) -> CertFacts {
        let oids = eku_oids(cert);
        let bc = cert
            .extensions()
            .iter()
            .find_map(|e| match &e.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => Some(bc.clone()),
                _ => None,
            });
        let is_ca = bc.as_ref().is_some_and(|b| b.ca);
        let role = role::classify(is_ca, oids.as_deref());
        let nb = asn1_time(cert.validity().not_before);
        let na = asn1_time(cert.validity().not_after);
        CertFacts {
            role,
            ekus: oids.iter().flatten().map(|o| eku_name(o)).collect(),
            has_eku: oids.is_some(),
            names: san_strings(cert),
            subject: dn_string(cert.subject()),
            issuer: dn_string(cert.issuer()),
            serial: crate::hex::encode(cert.raw_serial()),
            not_before: nb.map(rfc3339).unwrap_or_default(),
            not_after: na.map(rfc3339).unwrap_or_default(),
            key: key_description(cert),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            eku_oids: oids,
            not_before_t: nb,
            not_after_t: na,
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

    fn has_oid(&self, oid: &str) -> bool {
        self.eku_oids.iter().flatten().any(|o| o == oid)
    }

    fn names_of(&self, prefix: &str) -> Vec<&str> {
        self.names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| n.as_str())
            .collect()
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

/// What the draft says about a certificate: one sentence a finding. `at` is the
/// time the validity is judged at.
pub fn findings(f: &CertFacts, at: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    let server = f.has_oid(role::OID_SERVER_AUTH);
    let client = f.has_oid(role::OID_CLIENT_AUTH);
    let any = f.has_oid(role::OID_ANY_EKU);
    match f.role {
        CertClass::Ca => {
            let scope = match (server, client, f.has_eku) {
                (_, _, false) => "no EKU restriction: it may issue any kind of leaf".to_string(),
                (true, false, true) => {
                    "EKU-constrained to serverAuth: it issues device certificates".to_string()
                }
                (false, true, true) => {
                    "EKU-constrained to clientAuth: it issues entity certificates".to_string()
                }
                (true, true, true) => "EKU allows serverAuth and clientAuth: it can issue both kinds; the draft prefers dedicated issuing CAs".to_string(),
                (false, false, true) if any => "EKU anyExtendedKeyUsage: no restriction on what it issues".to_string(),
                (false, false, true) => "EKU allows neither serverAuth nor clientAuth: TLS certificates it issues will not validate".to_string(),
            };
            let pathlen = f
                .path_len
                .map(|n| format!(" (pathlen {n})"))
                .unwrap_or_default();
            out.push(format!("CA certificate{pathlen}; {scope}"));
        }
        CertClass::Ambiguous if any => out.push(
            "anyExtendedKeyUsage: ambiguous under the draft; strict relying parties cannot tell whether it is a device or a person, and mtlsca refuses to issue it".into(),
        ),
        CertClass::Ambiguous => out.push(
            "serverAuth+clientAuth: ambiguous under the draft; strict relying parties will treat it as both a device and a person, and mtlsca refuses to issue it".into(),
        ),
        CertClass::NoEku if f.has_eku => out.push(format!(
            "EKU {} has no TLS meaning: neither a device nor an entity under the draft",
            f.ekus.join("+")
        )),
        CertClass::NoEku => out.push(
            "no EKU extension: classic verifiers accept it for any purpose; under the draft it is neither a device nor an entity, and mtlsca refuses to issue it".into(),
        ),
        CertClass::Device => {
            out.push("serverAuth only: a device under the draft. As an initiator (TLS client) it is accepted by relying parties that apply the draft (mtlsca's verifier, OpenSSL with -purpose sslserver on the accepting side); classic TLS servers refuse it as a client certificate (\"unsuitable certificate purpose\")".into());
        }
        CertClass::Entity => {
            let smime = if f.has_oid(role::OID_EMAIL_PROTECTION) {
                " with S/MIME (emailProtection)"
            } else {
                ""
            };
            out.push(format!("clientAuth: an entity (a person or an organisation){smime} under the draft"));
        }
    }
    if let Some(role) = f.role.role() {
        let others: Vec<String> = f
            .eku_oids
            .iter()
            .flatten()
            .filter(|o| {
                Eku::from_oid(o).is_none()
                    || (role == Role::Device && o.as_str() == role::OID_EMAIL_PROTECTION)
            })
            .map(|o| eku_name(o))
            .collect();
        if !others.is_empty() {
            out.push(format!(
                "also carries {}: mtlsca would not issue that beside {}",
                others.join(", "),
                role.tls_eku().display_name()
            ));
        }
        out.extend(name_findings(f, role));
    }
    if !f.malformed_extensions.is_empty() {
        out.push(format!(
            "malformed: extension {} appears more than once or does not parse (RFC 5280 4.2); what the certificate claims cannot be relied on",
            f.malformed_extensions.join(", ")
        ));
    }
    out.extend(validity_findings(f, at));
    if f.key.starts_with("RSA ") {
        if let Some(bits) = f.key[4..].parse::<usize>().ok().filter(|b| *b < 2048) {
            out.push(format!(
                "RSA key of {bits} bits is weak: mtlsca refuses keys under 2048 bits"
            ));
        }
    } else if f.key.contains("P-192") || f.key == "DSA" || f.key.contains("explicit") {
        out.push(format!("{} key: not accepted by modern verifiers", f.key));
    }
    out
}

fn name_findings(f: &CertFacts, role: Role) -> Vec<String> {
    let mut out = Vec::new();
    let dns = f.names_of("DNS:");
    let ip = f.names_of("IP:");
    let uri = f.names_of("URI:");
    let email = f.names_of("email:");
    match role {
        Role::Device => {
            if !email.is_empty() {
                out.push(format!(
                    "a device carrying a person's identity ({}): names of the wrong kind for its role",
                    email.join(", ")
                ));
            }
            if dns.is_empty() && ip.is_empty() && uri.is_empty() {
                let cn = if f.has_cn {
                    "; its subject CN is ignored by verifiers"
                } else {
                    ""
                };
                out.push(format!("a device without a DNS, IP or URI name{cn}"));
            }
            if let Some(w) = dns.iter().find(|d| d.starts_with("DNS:*.")) {
                out.push(format!(
                    "wildcard name {w}: allowed only by profiles that say so"
                ));
            }
        }
        Role::Entity => {
            let host: Vec<&str> = dns.iter().chain(ip.iter()).copied().collect();
            if !host.is_empty() {
                out.push(format!(
                    "an entity carrying host names ({}): names of the wrong kind for its role",
                    host.join(", ")
                ));
            }
            if email.is_empty() && !f.has_org {
                out.push(
                    "an entity with neither an email address (person) nor an organizationName (organisation)"
                        .into(),
                );
            }
        }
    }
    out
}

fn validity_findings(f: &CertFacts, at: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    match (f.not_before_t, f.not_after_t) {
        (Some(_), Some(na)) if at > na => out.push(format!("expired on {}", human_time(na))),
        (Some(nb), Some(_)) if at < nb => out.push(format!("not valid before {}", human_time(nb))),
        (Some(nb), Some(na)) if f.role.role() == Some(Role::Device) => {
            let days = (na - nb).whole_days();
            if days > 397 {
                out.push(format!(
                    "valid for {days} days: more than the 397 days TLS clients accept for server certificates"
                ));
            }
        }
        (Some(_), Some(_)) => {}
        _ => out.push("validity dates cannot be read".into()),
    }
    out
}

/// One inspected certificate, as `inspect --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub file: String,
    /// Position in the file (0 = first certificate).
    pub index: usize,
    #[serde(flatten)]
    pub facts: CertFacts,
    pub findings: Vec<String>,
    /// Whether mtlsca would issue a certificate like this one (no conflicting EKUs,
    /// names of the right kind).
    pub draft_conformant: bool,
}

/// Inspect one DER certificate.
pub fn inspect_der(
    file: &str,
    index: usize,
    der: &[u8],
    at: OffsetDateTime,
) -> Result<Inspection, String> {
    let cert = parse_der(der)?;
    let facts = CertFacts::of(&cert);
    let findings = findings(&facts, at);
    let draft_conformant = facts.malformed_extensions.is_empty()
        && match facts.role {
            CertClass::Ca => true,
            CertClass::Device | CertClass::Entity => {
                let role = facts.role.role().unwrap_or(Role::Device);
                let ekus: Vec<Eku> = facts
                    .eku_oids
                    .iter()
                    .flatten()
                    .filter_map(|o| Eku::from_oid(o))
                    .collect();
                role::eku_conflict(role, &ekus).is_none()
                    && name_findings(&facts, role)
                        .iter()
                        .all(|f| f.starts_with("wildcard"))
            }
            CertClass::Ambiguous | CertClass::NoEku => false,
        };
    Ok(Inspection {
        file: file.to_string(),
        index,
        facts,
        findings,
        draft_conformant,
    })
}
