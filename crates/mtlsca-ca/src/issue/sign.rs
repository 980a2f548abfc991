//! Signing, without side effects: key (generated, or from a checked CSR) → policy →
//! serial → rcgen → self-check → the record to write. Batches run this on every
//! core; recording and files come after (`run`).

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};

use super::check::self_check;
use super::csr::read_csr;
use super::files::{write_partials, Durability, Files};
use super::{IssuanceRequest, KeySource, SignContext};
use crate::ca::{self};
use crate::error::{Error, Result};
use crate::key::{KeyType, PublicKeyKind};
use crate::keypair;
use crate::names::SanName;
use crate::policy::{self, Approved};
use crate::profile::Profile;
use crate::role::Eku;
use crate::rules::Origin;
use crate::store::{hex_encode, Record, Status, SCHEMA_VERSION};

/// A certificate signed and self-checked but not yet recorded, with the files it
/// will be written to.
pub(crate) struct Prepared {
    pub record: Record,
    pub der: Vec<u8>,
    pub issuer_key_id: Vec<u8>,
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: Option<String>,
    pub files: Option<Files>,
}

impl Prepared {
    /// Step 1 of the file protocol: the files under temporary names.
    pub fn write_partials(&self, durability: Durability) -> Result<()> {
        match &self.files {
            Some(f) => write_partials(
                f,
                self.key_pem.as_deref(),
                &self.cert_pem,
                &self.chain_pem,
                durability,
            ),
            None => Ok(()),
        }
    }

    /// Undo step 1 (the certificate was not recorded).
    pub fn discard_partials(&self) {
        if let Some(f) = &self.files {
            super::files::remove_partials(f);
        }
    }
}

/// The public key a certificate will carry.
enum KeyMaterial {
    Generated(Box<rcgen::KeyPair>),
    Csr(rcgen::SubjectPublicKeyInfo, Vec<u8>),
}

/// The policy-relevant facts of a request without signing anything: the content
/// (from arguments, or read from the CSR, whose signature is checked here), the
/// key kind, and where it came from.
pub(crate) fn intake(
    profile: &Profile,
    req: &IssuanceRequest,
) -> Result<(
    policy::RequestedContent,
    PublicKeyKind,
    Origin,
    Option<Vec<u8>>,
)> {
    let csr = match &req.key {
        KeySource::Generate(kt) => {
            return Ok((
                req.content.clone(),
                public_kind(kt.unwrap_or(profile.key)),
                req.origin,
                None,
            ))
        }
        KeySource::Csr(bytes) => read_csr(bytes)?,
        KeySource::CheckedCsr(c) => c.intake().clone(),
    };
    let mut content = csr.content;
    // Validity is the signer's choice, not the requester's.
    content.validity = req.content.validity.clone();
    Ok((content, csr.key, Origin::Csr, Some(csr.spki_der)))
}

/// Policy → serial → signature → self-check → the record. `files` are the final
/// names the certificate will get.
pub(crate) fn prepare(
    cx: &SignContext<'_>,
    profile: &Profile,
    req: &IssuanceRequest,
    files: Option<Files>,
) -> Result<Prepared> {
    let (content, key_kind, origin, csr_spki) = intake(profile, req)?;
    let signing = cx.signing;
    let approved = policy::check(
        profile,
        cx.constraints,
        &content,
        key_kind,
        signing.not_after,
        origin,
        cx.now,
    )?;
    let material = match (&req.key, csr_spki) {
        (KeySource::Generate(kt), _) => {
            KeyMaterial::Generated(Box::new(keypair::generate(kt.unwrap_or(profile.key))?))
        }
        (KeySource::Csr(_) | KeySource::CheckedCsr(_), Some(spki)) => KeyMaterial::Csr(
            rcgen::SubjectPublicKeyInfo::from_der(&spki).map_err(|e| {
                Error::refused_by(
                    crate::rules::Rule::KeyUnsupported,
                    format!("unsupported public key in the CSR: {e}"),
                )
            })?,
            spki,
        ),
        (KeySource::Csr(_) | KeySource::CheckedCsr(_), None) => {
            unreachable!("a CSR intake always has a key")
        }
    };
    let expected_spki = match &material {
        KeyMaterial::Generated(k) => rcgen::PublicKeyData::subject_public_key_info(k.as_ref()),
        KeyMaterial::Csr(_, raw) => raw.clone(),
    };
    let serial = ca::random_serial()?;
    let mut params = leaf_params(&approved, &serial)?;
    // Each CA generation's leaves point at their own CA's CRL (`crl_url_for`).
    let crl_url = profile
        .crl_url
        .as_deref()
        .map(|u| ca::crl_url_for(u, signing.id()));
    if let Some(url) = &crl_url {
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec![url.clone()],
        }];
    }
    params.key_identifier_method =
        rcgen::KeyIdMethod::PreSpecified(keypair::key_identifier(&expected_spki));
    let cert = match &material {
        KeyMaterial::Generated(k) => params.signed_by(k.as_ref(), &signing.issuer),
        KeyMaterial::Csr(s, _) => params.signed_by(s, &signing.issuer),
    }
    .map_err(|e| Error::State(format!("signing failed: {e}")))?;
    let der = cert.der().to_vec();
    self_check(
        &der,
        &serial,
        &expected_spki,
        &approved,
        crl_url.as_deref(),
        cx,
    )?;

    let cert_pem = pem_cert(&der);
    let chain_pem = format!("{cert_pem}{}", signing.cert_pem);
    let sha = ring::digest::digest(&ring::digest::SHA256, &der);
    let key_file = files
        .as_ref()
        .and_then(|f| f.key.as_ref())
        .map(|k| absolute(k).display().to_string());
    let record = Record {
        schema: SCHEMA_VERSION,
        serial: hex_encode(&serial),
        issuer: signing.id().name(),
        issuer_key_id: hex_encode(&signing.key_id),
        role: profile.role,
        profile: profile.name.clone(),
        subject: approved.subject.to_text(),
        names: approved.names.iter().map(|n| n.to_string()).collect(),
        not_before: approved.not_before,
        not_after: approved.not_after,
        sha256: hex_encode(sha.as_ref()),
        status: Status::Valid,
        revocation: None,
        request_id: req.request_id.clone(),
        issued_at: cx.now,
        key_file,
        replaces: req.replaces.clone(),
    };
    Ok(Prepared {
        record,
        der,
        issuer_key_id: signing.key_id.clone(),
        cert_pem,
        chain_pem,
        key_pem: match &material {
            KeyMaterial::Generated(k) => Some(keypair::pkcs8_pem(k)),
            KeyMaterial::Csr(..) => None,
        },
        files,
    })
}

/// The kind of a key the engine generates.
pub(crate) fn public_kind(kt: KeyType) -> PublicKeyKind {
    match kt {
        KeyType::EcdsaP256 => PublicKeyKind::EcdsaP256,
        KeyType::EcdsaP384 => PublicKeyKind::EcdsaP384,
        KeyType::Ed25519 => PublicKeyKind::Ed25519,
    }
}

fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A certificate as PEM.
pub fn pem_cert(der: &[u8]) -> String {
    crate::fsutil::pem_lf(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// The rcgen parameters of a leaf: explicit DN (never rcgen's default), our serial,
/// AKI, basicConstraints CA:FALSE, key usage, the role's EKU, SANs (critical when
/// the subject is empty, which rcgen does).
fn leaf_params(a: &Approved, serial: &[u8]) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(c) = &a.subject.country {
        // X.520 countryName is a PrintableString (policy checked: two ASCII letters).
        let printable = c
            .as_str()
            .try_into()
            .map_err(|e| Error::State(format!("country `{c}` cannot be encoded: {e}")))?;
        dn.push(
            DnType::CountryName,
            rcgen::DnValue::PrintableString(printable),
        );
    }
    if let Some(o) = &a.subject.org {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    if let Some(cn) = &a.subject.cn {
        dn.push(DnType::CommonName, cn.as_str());
    }
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.not_before = a.not_before;
    p.not_after = a.not_after;
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if a.key_encipherment {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = a
        .ekus
        .iter()
        .map(|e| match e {
            Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Eku::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
            Eku::Any => ExtendedKeyUsagePurpose::Any,
        })
        .collect();
    p.subject_alt_names = a
        .names
        .iter()
        .map(|n| {
            Ok(match n {
                SanName::Dns(d) => SanType::DnsName(d.clone().try_into()?),
                SanName::Ip(ip) => SanType::IpAddress(*ip),
                SanName::Uri(u) => SanType::URI(u.clone().try_into()?),
                SanName::Email(e) => SanType::Rfc822Name(e.clone().try_into()?),
            })
        })
        .collect::<std::result::Result<_, rcgen::Error>>()
        .map_err(|e| Error::State(format!("a name cannot be encoded: {e}")))?;
    Ok(p)
}
