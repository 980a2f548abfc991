//! CSR intake: parse one PKCS#10 request (PEM or DER), check its key and signature
//! algorithm, verify its signature, and read what it asks for. Requested names and
//! extensions are read here and judged by policy, never copied blindly.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension, X509Extension};
use x509_parser::prelude::FromDer;

use crate::error::{Error, Result};
use crate::inspect::facts::ip_from_bytes;
use crate::key::{self, PublicKeyKind};
use crate::policy::RequestedContent;
use crate::rules::{Field, Origin, Refusal, Rule};

/// A CSR after its signature and key were checked.
#[derive(Debug, Clone)]
pub struct CsrIntake {
    /// The requester's SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The requester's key, classified.
    pub key: PublicKeyKind,
    /// What the CSR asks for.
    pub content: RequestedContent,
}

/// A CSR that `read_checked_csr` parsed and checked (key, signature algorithm,
/// signature), kept with its DER so the engine can take it without doing that
/// again: ACME's finalize must read the CSR to compare its names with the
/// order's, and a P-256 verification is a tenth of an order's CPU. Only
/// `read_checked_csr` makes one; it never crosses the control socket.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    der: Vec<u8>,
    intake: CsrIntake,
}

impl CheckedCsr {
    /// What the CSR asks for, and its key.
    pub fn intake(&self) -> &CsrIntake {
        &self.intake
    }

    /// The request's DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The request as a network front end (ACME, EST) passes it on: what its
    /// requester proved are names, so subject attributes nobody validated (`O=`,
    /// `C=`) are dropped and the subject comes from the profile and policy; the
    /// common name stays (the front end has held it to the proven names).
    pub fn names_only(mut self) -> CheckedCsr {
        self.intake.content.org = None;
        self.intake.content.country = None;
        self
    }
}

impl PartialEq for CheckedCsr {
    fn eq(&self, other: &CheckedCsr) -> bool {
        self.der == other.der
    }
}

impl Eq for CheckedCsr {}

/// `read_csr`, keeping the checked request for the engine.
pub fn read_checked_csr(bytes: &[u8]) -> Result<CheckedCsr> {
    let der = csr_der(bytes)?;
    let intake = read_csr(&der)?;
    Ok(CheckedCsr { der, intake })
}

/// Signature algorithms accepted on a CSR (SHA-2 family, EdDSA, RSA-PSS).
const ACCEPTED_SIGNATURES: [(&str, &str); 8] = [
    ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
    ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
    ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512"),
    ("1.3.101.112", "Ed25519"),
    ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
    ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
    ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
];

fn unreadable(detail: impl Into<String>) -> Error {
    Error::invalid(
        Origin::Csr,
        Refusal::new(Rule::CsrUnreadable, detail).on(Field::Csr),
    )
}

/// The DER of the one request in `bytes` (PEM with exactly one CERTIFICATE REQUEST
/// block, or DER).
fn csr_der(bytes: &[u8]) -> Result<Vec<u8>> {
    if !bytes.trim_ascii_start().starts_with(b"-----") {
        if let Some(m) =
            crate::error::not_pem_or_der(bytes, "a certificate request", "CERTIFICATE REQUEST")
        {
            return Err(unreadable(m));
        }
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| unreadable("is not valid PEM text"))?;
    let blocks = pem::parse_many(text).map_err(|e| unreadable(format!("is not valid PEM: {e}")))?;
    match blocks.as_slice() {
        [one] if one.tag() == "CERTIFICATE REQUEST" || one.tag() == "NEW CERTIFICATE REQUEST" => {
            Ok(one.contents().to_vec())
        }
        [one] => Err(unreadable(format!(
            "holds a PEM `{}` block, not a `CERTIFICATE REQUEST`",
            one.tag()
        ))),
        [] => Err(unreadable("holds no PEM block")),
        many => Err(unreadable(format!(
            "holds {} PEM blocks; give one request per file (mtlsca would otherwise sign one and ignore the rest)",
            many.len()
        ))),
    }
}

/// Parse a CSR (PEM or DER), check its key and signature algorithm, verify its
/// signature and read what it requests. Unreadable input and a signature that does
/// not verify are bad input (exit 2); a weak key or algorithm is refused (exit 1);
/// what it asks for is judged later by policy.
pub fn read_csr(bytes: &[u8]) -> Result<CsrIntake> {
    let der = csr_der(bytes)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| unreadable(format!("is not a PKCS#10 request ({e})")))?;
    if !rest.is_empty() {
        return Err(unreadable("has trailing bytes after the request"));
    }
    let info = &csr.certification_request_info;
    // Key strength first: ring cannot even verify signatures of weak RSA keys, and
    // "weak key" is the answer the requester needs.
    let key = key::check_public_key(&info.subject_pki)?;
    let alg = csr.signature_algorithm.algorithm.to_id_string();
    if !ACCEPTED_SIGNATURES.iter().any(|(oid, _)| *oid == alg) {
        let name = match alg.as_str() {
            "1.2.840.10045.4.1" => "ecdsa-with-SHA1".to_string(),
            "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption".to_string(),
            "1.2.840.113549.1.1.4" => "md5WithRSAEncryption".to_string(),
            other => other.to_string(),
        };
        return Err(Error::refusals(
            Origin::Csr,
            vec![Refusal::new(
                Rule::CsrSignatureAlgorithm,
                format!(
                    "is signed with {name}, which mtlsca does not accept (use SHA-256 or better: {})",
                    ACCEPTED_SIGNATURES
                        .iter()
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .on(Field::Csr)],
        ));
    }
    csr.verify_signature().map_err(|_| {
        Error::invalid(
            Origin::Csr,
            Refusal::new(
                Rule::CsrSignature,
                "its signature does not verify (tampered, or signed by another key)",
            )
            .on(Field::Csr),
        )
    })?;
    let mut content = RequestedContent::default();
    for attr in info.subject.iter_attributes() {
        let value = attr.as_str().map(String::from).map_err(|_| {
            Error::refusals(
                Origin::Csr,
                vec![Refusal::new(
                    Rule::SubjectSyntax,
                    "a subject attribute is not a readable string",
                )
                .on(Field::Csr)],
            )
        });
        match attr.attr_type().to_id_string().as_str() {
            "2.5.4.3" => content.cn = Some(value?),
            "2.5.4.10" => content.org = Some(value?),
            "2.5.4.6" => content.country = Some(value?),
            // Other subject attributes are not copied: the subject is built from
            // the profile's rules only.
            _ => {}
        }
    }
    for attr in info.iter_attributes() {
        if let ParsedCriAttribute::ExtensionRequest(req) = attr.parsed_attribute() {
            for ext in &req.extensions {
                read_requested_extension(ext, &mut content)?;
            }
        }
    }
    Ok(CsrIntake {
        spki_der: info.subject_pki.raw.to_vec(),
        key,
        content,
    })
}

fn read_requested_extension(ext: &X509Extension<'_>, c: &mut RequestedContent) -> Result<()> {
    match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => {
            for gn in &san.general_names {
                match gn {
                    GeneralName::DNSName(d) => c.dns.push(d.to_string()),
                    GeneralName::RFC822Name(e) => c.email.push(e.to_string()),
                    GeneralName::URI(u) => c.uri.push(u.to_string()),
                    GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                        Some(ip) => c.ip.push(ip.to_string()),
                        None => c.unsupported_names.push("malformed IP".into()),
                    },
                    GeneralName::OtherName(oid, _)
                        if oid.to_id_string() == "1.3.6.1.4.1.311.20.2.3" =>
                    {
                        c.unsupported_names.push("UPN (userPrincipalName)".into())
                    }
                    GeneralName::OtherName(oid, _) => {
                        c.unsupported_names.push(format!("otherName {oid}"))
                    }
                    GeneralName::DirectoryName(_) => {
                        c.unsupported_names.push("directoryName".into())
                    }
                    GeneralName::RegisteredID(_) => c.unsupported_names.push("registeredID".into()),
                    _ => c.unsupported_names.push("unsupported GeneralName".into()),
                }
            }
        }
        ParsedExtension::ExtendedKeyUsage(eku) => {
            c.requested_ekus = Some(crate::inspect::eku_oid_list(eku));
        }
        ParsedExtension::BasicConstraints(bc) => {
            if bc.ca {
                c.requests_ca = true;
            }
        }
        // Key usage and key identifiers are decided by mtlsca, whatever is asked.
        ParsedExtension::KeyUsage(_) | ParsedExtension::SubjectKeyIdentifier(_) => {}
        ParsedExtension::ParseError { error } => {
            return Err(unreadable(format!(
                "requests extension {} in a malformed encoding ({error})",
                ext.oid
            )))
        }
        _ => {
            if ext.critical {
                c.unknown_critical.push(ext.oid.to_id_string());
            }
        }
    }
    Ok(())
}
