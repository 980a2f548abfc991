//! Renewal: a new key and certificate with the same profile, names and subject as
//! an issued one, through the one engine, recorded with a link to the certificate
//! it replaces (`Record::replaces`, and the audit entry says `renews SERIAL`).
//!
//! A renewal carries the serial it replaces ([`IssuanceRequest::replaces`]) and
//! is asked for under the request id `renewal-of:SERIAL`
//! ([`crate::issue::renewal_request_id`]; the engine reserves the prefix for
//! renewals): renewing one certificate twice returns the
//! first renewal, and the request id of the original keeps standing for the
//! latest renewal (so a batch manifest re-run answers `exists`).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::issue::{renewal_request_id, IssuanceRequest, KeySource, Output};
use crate::key::{KeyType, PublicKeyKind};
use crate::policy::RequestedContent;
use crate::rules::Origin;
use crate::store::Record;

/// Where a renewal's files go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewOutput {
    /// Over the old certificate's files (from its recorded key file), each old
    /// file kept as `NAME.prev`.
    InPlace,
    /// Over the files at this prefix, each old file kept as `NAME.prev`.
    ReplaceAt(PathBuf),
    /// A new prefix (never overwriting a file).
    Prefix(PathBuf),
}

/// The engine request that renews `old` (its certificate `der`): same profile,
/// names and subject, a new key of the same type (the profile's when the old key
/// is one mtlsca does not generate, e.g. RSA from a CSR), `validity` or the
/// profile's default.
pub fn request(
    old: &Record,
    der: &[u8],
    output: RenewOutput,
    validity: Option<String>,
    origin: Origin,
) -> Result<IssuanceRequest> {
    let cert = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Store(format!("record {}: certificate: {e}", old.serial)))?
        .1;
    let attr = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(String::from)
    };
    let subject = cert.subject();
    let mut content = RequestedContent {
        cn: attr(&mut subject.iter_common_name()),
        org: attr(&mut subject.iter_organization()),
        country: attr(&mut subject.iter_country()),
        validity,
        ..Default::default()
    };
    for n in &old.names {
        let (kind, value) = n.split_once(':').unwrap_or(("", n));
        let value = value.to_string();
        match kind {
            "DNS" => content.dns.push(value),
            "IP" => content.ip.push(value),
            "URI" => content.uri.push(value),
            "email" => content.email.push(value),
            _ => {
                return Err(Error::State(format!(
                    "record {}: name `{n}` of an unknown kind",
                    old.serial
                )))
            }
        }
    }
    let key_type = match crate::key::check_public_key(cert.public_key()) {
        Ok(PublicKeyKind::EcdsaP256) => Some(KeyType::EcdsaP256),
        Ok(PublicKeyKind::EcdsaP384) => Some(KeyType::EcdsaP384),
        Ok(PublicKeyKind::Ed25519) => Some(KeyType::Ed25519),
        _ => None,
    };
    let output = match output {
        RenewOutput::Prefix(p) => Output::Prefix(p),
        RenewOutput::ReplaceAt(p) => Output::Replace(p),
        RenewOutput::InPlace => {
            let prefix = old
                .key_file
                .as_deref()
                .and_then(|k| k.strip_suffix(".key"))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "certificate {} has no recorded key file (it was signed from a CSR): \
                         say where the new key and certificate go with --out PREFIX",
                        old.serial
                    ))
                })?;
            Output::Replace(PathBuf::from(prefix))
        }
    };
    Ok(IssuanceRequest {
        profile: old.profile.clone(),
        content,
        key: KeySource::Generate(key_type),
        request_id: Some(renewal_request_id(&old.serial)),
        output,
        origin,
        replaces: Some(old.serial.clone()),
    })
}
