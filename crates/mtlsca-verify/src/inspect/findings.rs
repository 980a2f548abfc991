//! The draft's findings about one certificate: one sentence a finding, made from
//! its [`CertFacts`]. `at` is the time its validity is judged at.

use serde::Serialize;
use time::OffsetDateTime;

use super::facts::{joined, parse_der, CertFacts, Curve, KeyInfo, KeyPurpose, PresentedName};
use crate::role::{CertClass, Eku, NameKind, Role};
use crate::rules;
use crate::timefmt::human_time;

/// What the draft says about a certificate: one sentence a finding. `at` is the
/// time the validity is judged at.
pub fn findings(f: &CertFacts, at: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    let server = f.has_purpose(Eku::ServerAuth);
    let client = f.has_purpose(Eku::ClientAuth);
    let any = f.has_purpose(Eku::Any);
    match f.role {
        CertClass::Ca => {
            let scope = match (server, client, f.has_eku()) {
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
        CertClass::NoEku if f.has_eku() => out.push(format!(
            "EKU {} has no TLS meaning: neither a device nor an entity under the draft",
            joined(f.purposes(), "+")
        )),
        CertClass::NoEku => out.push(
            "no EKU extension: classic verifiers accept it for any purpose; under the draft it is neither a device nor an entity, and mtlsca refuses to issue it".into(),
        ),
        CertClass::Device => {
            out.push("serverAuth only: a device under the draft. As an initiator (TLS client) it is accepted by relying parties that apply the draft (mtlsca's verifier, OpenSSL with -purpose sslserver on the accepting side); classic TLS servers refuse it as a client certificate (\"unsuitable certificate purpose\")".into());
        }
        CertClass::Entity => {
            let smime = if f.has_purpose(Eku::EmailProtection) {
                " with S/MIME (emailProtection)"
            } else {
                ""
            };
            out.push(format!("clientAuth: an entity (a person or an organisation){smime} under the draft"));
        }
    }
    if let Some(role) = f.role.role() {
        let others: Vec<KeyPurpose> = f
            .purposes()
            .iter()
            .filter(|p| match p.known() {
                None => true,
                Some(e) => role == Role::Device && e == Eku::EmailProtection,
            })
            .cloned()
            .collect();
        if !others.is_empty() {
            out.push(format!(
                "also carries {}: mtlsca would not issue that beside {}",
                joined(&others, ", "),
                role.tls_eku().display_name()
            ));
        }
        out.extend(name_findings(f, role).into_iter().map(|n| n.text));
    }
    if !f.malformed_extensions.is_empty() {
        out.push(format!(
            "malformed: extension {} appears more than once or does not parse (RFC 5280 4.2); what the certificate claims cannot be relied on",
            f.malformed_extensions.join(", ")
        ));
    }
    out.extend(validity_findings(f, at));
    match &f.key {
        KeyInfo::Rsa { bits: Some(bits) } if *bits < rules::RSA_MIN_BITS => out.push(format!(
            "RSA key of {bits} bits is weak: mtlsca refuses keys under {} bits",
            rules::RSA_MIN_BITS
        )),
        KeyInfo::Ecdsa(Curve::Explicit | Curve::P192) | KeyInfo::Dsa => {
            out.push(format!("{} key: not accepted by modern verifiers", f.key))
        }
        _ => {}
    }
    out
}

/// A finding about the names of a certificate; `wildcard` findings do not make it
/// non-conformant (profiles may allow wildcards).
struct NameFinding {
    text: String,
    wildcard: bool,
}

fn listed(names: &[&PresentedName]) -> String {
    names
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn name_findings(f: &CertFacts, role: Role) -> Vec<NameFinding> {
    let mut out = Vec::new();
    let plain = |text: String| NameFinding {
        text,
        wildcard: false,
    };
    // Names of a kind the rulebook does not give this role.
    let wrong: Vec<&PresentedName> = f
        .names
        .iter()
        .filter(|n| n.kind().is_some_and(|k| !rules::name_kind_allowed(role, k)))
        .collect();
    match role {
        Role::Device => {
            if !wrong.is_empty() {
                out.push(plain(format!(
                    "a device carrying a person's identity ({}): names of the wrong kind for its role",
                    listed(&wrong)
                )));
            }
            let identity = rules::kind_rules(Role::Device, None).identity;
            let has_identity = f
                .names
                .iter()
                .any(|n| n.kind().is_some_and(|k| identity.contains(&k)));
            if !has_identity {
                let cn = if f.has_cn {
                    "; its subject CN is ignored by verifiers"
                } else {
                    ""
                };
                out.push(plain(format!("a device without a DNS, IP or URI name{cn}")));
            }
            if let Some(w) = f.names.iter().find(|d| d.wildcard_parent().is_some()) {
                out.push(NameFinding {
                    text: format!("wildcard name {w}: allowed only by profiles that say so"),
                    wildcard: true,
                });
            }
        }
        Role::Entity => {
            if !wrong.is_empty() {
                out.push(plain(format!(
                    "an entity carrying host names ({}): names of the wrong kind for its role",
                    listed(&wrong)
                )));
            }
            let has_email = f.names.iter().any(|n| n.kind() == Some(NameKind::Email));
            if !has_email && !f.has_org {
                out.push(plain(
                    "an entity with neither an email address (person) nor an organizationName (organisation)"
                        .into(),
                ));
            }
        }
    }
    out
}

fn validity_findings(f: &CertFacts, at: OffsetDateTime) -> Vec<String> {
    let mut out = Vec::new();
    match (f.not_before, f.not_after) {
        (Some(_), Some(na)) if at > na => out.push(format!("expired on {}", human_time(na))),
        (Some(nb), Some(_)) if at < nb => out.push(format!("not valid before {}", human_time(nb))),
        (Some(nb), Some(na)) if f.role.role() == Some(Role::Device) => {
            let days = (na - nb).whole_days();
            let max = rules::kind_rules(Role::Device, None).validity.1 / 86_400;
            if days > max {
                out.push(format!(
                    "valid for {days} days: more than the {max} days TLS clients accept for server certificates"
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
    /// The file it was read from.
    pub file: String,
    /// Position in the file (0 = first certificate).
    pub index: usize,
    /// What it says about itself.
    #[serde(flatten)]
    pub facts: CertFacts,
    /// The draft's findings, one sentence each.
    pub findings: Vec<String>,
    /// Whether mtlsca would issue a certificate like this one (no conflicting EKUs,
    /// names of the right kind).
    pub draft_conformant: bool,
}

/// Whether mtlsca would issue a certificate like this one.
fn draft_conformant(facts: &CertFacts) -> bool {
    if !facts.malformed_extensions.is_empty() {
        return false;
    }
    match facts.role {
        CertClass::Ca => true,
        CertClass::Device | CertClass::Entity => {
            let role = facts.role.role().unwrap_or(Role::Device);
            let ekus: Vec<Eku> = facts.purposes().iter().filter_map(|p| p.known()).collect();
            rules::eku_conflict(role, &ekus).is_none()
                && name_findings(facts, role).iter().all(|f| f.wildcard)
        }
        CertClass::Ambiguous | CertClass::NoEku => false,
    }
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
    let draft_conformant = draft_conformant(&facts);
    Ok(Inspection {
        file: file.to_string(),
        index,
        facts,
        findings,
        draft_conformant,
    })
}
