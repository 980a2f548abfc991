//! The self-check every certificate gets before it is recorded, whatever the front
//! end: read back whole and within size, compared field by field with what policy
//! approved, its names held to the CA's constraints again (independently of
//! policy), and its signature verified under the issuing CA's key. The issuing CA's
//! own path (leaf → issuing CA → root, with rustls-webpki) is validated once per
//! issuing CA and process.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::SignContext;
use crate::error::{Error, Result};
use crate::inspect::facts::ip_from_bytes;
use crate::names::SanName;
use crate::policy::{self, Approved};
use crate::role::Role;
use crate::rules;

/// Check a freshly signed certificate; any difference is a CA fault (exit 3) and
/// nothing is issued. `crl_url` is the profile's CRL distribution point (the
/// certificate carries exactly that one, or none).
pub(crate) fn self_check(
    der: &[u8],
    serial: &[u8],
    expected_spki: &[u8],
    a: &Approved,
    crl_url: Option<&str>,
    cx: &SignContext<'_>,
) -> Result<()> {
    let x = parse_back(der)?;
    check_fields(&x, serial, expected_spki, a, cx)?;
    let ext = Extensions::of(&x)?;
    ext.compare(a, crl_url)?;
    check_constraints_again(&ext.names, &subject_of(&x), a.role, cx)?;
    check_signature(&x, der, a.role, cx)
}

/// A self-check failure: a CA fault, exit 3.
fn fail(m: impl std::fmt::Display) -> Error {
    Error::State(format!("self-check failed, nothing was issued: {m}"))
}

/// The certificate read back whole, within the size limit, nothing after it.
fn parse_back(der: &[u8]) -> Result<X509Certificate<'_>> {
    if der.len() > rules::MAX_CERT_DER {
        return Err(fail(format!(
            "the certificate has {} bytes, over the limit of {}",
            der.len(),
            rules::MAX_CERT_DER
        )));
    }
    match X509Certificate::from_der(der) {
        Ok(([], x)) => Ok(x),
        Ok((rest, _)) => Err(fail(format!("{} bytes after the certificate", rest.len()))),
        Err(e) => Err(fail(format!("it does not parse back: {e}"))),
    }
}

/// Serial, key, issuer, validity and subject are what was drawn and approved.
fn check_fields(
    x: &X509Certificate<'_>,
    serial: &[u8],
    expected_spki: &[u8],
    a: &Approved,
    cx: &SignContext<'_>,
) -> Result<()> {
    let tbs = &x.tbs_certificate;
    if tbs.raw_serial() != serial {
        return Err(fail("the serial differs from the one drawn"));
    }
    if x.public_key().raw != expected_spki {
        return Err(fail("the public key differs from the requested one"));
    }
    if tbs.issuer.as_raw() != cx.signing.subject_der.as_slice() {
        return Err(fail("the issuer is not the issuing CA's subject"));
    }
    let t = |o: time::OffsetDateTime| o.unix_timestamp();
    if tbs.validity.not_before.timestamp() != t(a.not_before)
        || tbs.validity.not_after.timestamp() != t(a.not_after)
    {
        return Err(fail("the validity differs from the approved one"));
    }
    let subject = subject_of(x);
    if subject != a.subject {
        return Err(fail(format!(
            "the subject is `{}`, policy approved `{}`",
            subject.to_text(),
            a.subject.to_text()
        )));
    }
    Ok(())
}

/// The extensions a leaf of mtlsca carries, as read back.
struct Extensions {
    ekus: Option<Vec<String>>,
    names: Vec<SanName>,
    san_critical: Option<bool>,
    ca_flag: bool,
    key_usage: Option<u16>,
    cdp: Option<Vec<String>>,
}

impl Extensions {
    fn of(x: &X509Certificate<'_>) -> Result<Extensions> {
        let mut e = Extensions {
            ekus: None,
            names: Vec::new(),
            san_critical: None,
            ca_flag: false,
            key_usage: None,
            cdp: None,
        };
        for ext in x.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::ExtendedKeyUsage(k) => {
                    e.ekus = Some(crate::inspect::eku_oid_list(k))
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    e.san_critical = Some(ext.critical);
                    for g in &san.general_names {
                        e.names.push(san_name(g)?);
                    }
                }
                ParsedExtension::BasicConstraints(bc) => e.ca_flag = bc.ca,
                ParsedExtension::KeyUsage(ku) => e.key_usage = Some(ku.flags),
                ParsedExtension::CRLDistributionPoints(points) => {
                    e.cdp = Some(cdp_uris(points)?);
                }
                ParsedExtension::ParseError { error } => {
                    return Err(fail(format!(
                        "extension {} does not parse: {error}",
                        ext.oid
                    )))
                }
                _ => {}
            }
        }
        Ok(e)
    }

    /// EKU, CA flag, CRL distribution point, key usage and names are exactly
    /// what policy approved and the profile says.
    fn compare(&self, a: &Approved, crl_url: Option<&str>) -> Result<()> {
        let want: Vec<String> = a.ekus.iter().map(|e| e.oid().to_string()).collect();
        if self.ekus.as_ref() != Some(&want) {
            return Err(fail(format!(
                "EKU is {:?}, policy approved {want:?}",
                self.ekus
            )));
        }
        if self.ca_flag {
            return Err(fail("the leaf says CA:TRUE"));
        }
        let want_cdp = crl_url.map(|u| vec![u.to_string()]);
        if self.cdp != want_cdp {
            return Err(fail(format!(
                "the CRL distribution points are {:?}, the profile says {want_cdp:?}",
                self.cdp
            )));
        }
        // digitalSignature (bit 0 → 0x1), keyEncipherment (bit 2 → 0x4).
        let want_ku: u16 = if a.key_encipherment { 0x5 } else { 0x1 };
        if self.key_usage != Some(want_ku) {
            return Err(fail(format!(
                "key usage is {:?}, policy approved {want_ku:#x}",
                self.key_usage
            )));
        }
        if self.names != a.names {
            return Err(fail(format!(
                "names are {:?}, policy approved {:?}",
                self.names, a.names
            )));
        }
        if !self.names.is_empty() && self.san_critical != Some(a.subject.is_empty()) {
            return Err(fail(
                "subjectAltName must be critical exactly when the subject is empty",
            ));
        }
        Ok(())
    }
}

/// A subjectAltName entry as mtlsca writes them (DNS, email, URI, IP).
fn san_name(g: &GeneralName<'_>) -> Result<SanName> {
    Ok(match g {
        GeneralName::DNSName(d) => SanName::Dns(d.to_string()),
        GeneralName::RFC822Name(e) => SanName::Email(e.to_string()),
        GeneralName::URI(u) => SanName::Uri(u.to_string()),
        GeneralName::IPAddress(b) => match ip_from_bytes(b) {
            Some(ip) => SanName::Ip(ip),
            None => return Err(fail("a malformed IP name")),
        },
        other => return Err(fail(format!("an unexpected name {other:?}"))),
    })
}

/// The URIs of CRL distribution points that carry nothing but full-name URIs.
fn cdp_uris(points: &x509_parser::extensions::CRLDistributionPoints<'_>) -> Result<Vec<String>> {
    let mut uris = Vec::new();
    for p in points.iter() {
        if p.reasons.is_some() || p.crl_issuer.is_some() {
            return Err(fail("a CRL distribution point with reasons or an issuer"));
        }
        match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => {
                for n in names {
                    match n {
                        GeneralName::URI(u) => uris.push(u.to_string()),
                        other => {
                            return Err(fail(format!("a CRL distribution point names {other:?}")))
                        }
                    }
                }
            }
            _ => return Err(fail("a CRL distribution point without a URI")),
        }
    }
    Ok(uris)
}

/// The CA's name constraints once more, independently of policy: every name,
/// and a device's CN, which verifiers read as a host name.
fn check_constraints_again(
    names: &[SanName],
    subject: &policy::Subject,
    role: Role,
    cx: &SignContext<'_>,
) -> Result<()> {
    for n in names {
        if !policy::within(cx.constraints, n) {
            return Err(fail(format!("{n} lies outside the CA's name constraints")));
        }
    }
    if role == Role::Device {
        if let Some(cn) = &subject.cn {
            if !names.contains(&SanName::Dns(cn.clone())) {
                return Err(fail(format!(
                    "the device CN `{cn}` is not one of its DNS names"
                )));
            }
        }
    }
    Ok(())
}

/// The first certificate of an issuing CA in this process: its whole path,
/// validated with rustls-webpki; after that, the signature under the issuing
/// CA's key.
fn check_signature(
    x: &X509Certificate<'_>,
    der: &[u8],
    role: Role,
    cx: &SignContext<'_>,
) -> Result<()> {
    if cx.chain_validated.get().is_none() {
        validate_path(der, role, cx).map_err(fail)?;
        let _ = cx.chain_validated.set(());
        return Ok(());
    }
    let (_, issuer_key) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&cx.signing.spki_der)
        .map_err(|e| fail(format!("issuing CA key: {e}")))?;
    x.verify_signature(Some(&issuer_key))
        .map_err(|e| fail(format!("the signature does not verify: {e}")))
}

/// The C, O and CN a certificate carries (exactly one each at most, in that order
/// as mtlsca writes them; anything else reads as a different subject).
fn subject_of(x: &X509Certificate<'_>) -> policy::Subject {
    let mut s = policy::Subject::default();
    let mut other = false;
    for attr in x.subject().iter_attributes() {
        let v = attr.as_str().ok().map(String::from);
        let slot = match attr.attr_type().to_id_string().as_str() {
            "2.5.4.6" => &mut s.country,
            "2.5.4.10" => &mut s.org,
            "2.5.4.3" => &mut s.cn,
            _ => {
                other = true;
                continue;
            }
        };
        if slot.is_some() || v.is_none() {
            other = true;
        }
        *slot = v;
    }
    if other {
        // Never equal to an approved subject.
        s.cn = Some("\u{0}unexpected subject attributes".into());
    }
    s
}

/// Full path validation with rustls-webpki: leaf → issuing CA → root, the role's
/// EKU required along the path, validity at `cx.now`. The root's URI constraints
/// are left out for webpki (it rejects every URI name under one); `self_check`
/// holds the names to them.
fn validate_path(der: &[u8], role: Role, cx: &SignContext<'_>) -> std::result::Result<(), String> {
    let eku_oid = match role {
        // DER contents of id-kp-serverAuth / id-kp-clientAuth.
        Role::Device => webpki::KeyUsage::required(&[0x2b, 6, 1, 5, 5, 7, 3, 1]),
        Role::Entity => webpki::KeyUsage::required(&[0x2b, 6, 1, 5, 5, 7, 3, 2]),
    };
    let der_cert = rustls_pki_types::CertificateDer::from(der);
    let ee = webpki::EndEntityCert::try_from(&der_cert).map_err(|e| format!("{e:?}"))?;
    let root = rustls_pki_types::CertificateDer::from(cx.root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| format!("{e:?}"))?;
    let anchor = rustls_pki_types::TrustAnchor {
        subject: anchor.subject,
        subject_public_key_info: anchor.subject_public_key_info,
        name_constraints: anchor.name_constraints.and_then(|nc| {
            crate::name_constraints::without_uri_subtrees(nc.as_ref()).map(Into::into)
        }),
    };
    let inter = rustls_pki_types::CertificateDer::from(cx.signing.cert_der.as_slice());
    let t = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        cx.now.unix_timestamp().max(0) as u64,
    ));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[inter],
        t,
        eku_oid,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| format!("rustls-webpki rejects the chain: {e:?}"))
}
