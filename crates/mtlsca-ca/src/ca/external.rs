//! Issuing CAs under an external root (`init --external-root`): the first
//! half, a *pending* CA directory. It holds the two issuing CAs' keys, their
//! certificate requests for the external root's owner to sign, a copy of the
//! root certificate, and `pending.toml` (the `ca.toml` to be, which marks the
//! directory as waiting). `ca install` (the crate's `external` module) checks
//! the signed certificates and completes the CA. The root's key never touches
//! mtlsca.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use zeroize::Zeroize;

use super::build::dn;
use super::layout::{read_ca_file, subject_key_id, CaKind, CONFIG_FILE};
use super::staging::{create_ca_dir, csr_file, PENDING_FILE};
use super::{Ca, CaConfig, InitOptions};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::keypair::{self, Passphrase};
use crate::names::{printable, Pattern};

/// The two issuing CAs an external root signs, device first.
pub const ISSUING_KINDS: [CaKind; 2] = [CaKind::Device, CaKind::Entity];

/// Largest external root certificate file read.
const MAX_ROOT_FILE: u64 = 256 * 1024;

/// The role's EKU an issuing CA carries (serverAuth for device, clientAuth for
/// entity); `None` for the root.
pub fn issuing_eku(kind: CaKind) -> Option<ExtendedKeyUsagePurpose> {
    match kind {
        CaKind::Root => None,
        CaKind::Device => Some(ExtendedKeyUsagePurpose::ServerAuth),
        CaKind::Entity => Some(ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// What a command that would sign with the root says when the root is
/// external (exit 3).
pub fn external_root_error() -> Error {
    Error::State(
        "the root is external: mtlsca holds no key for it, and its CRLs are its owner's (`mtlsca crl` publishes the issuing CAs' CRLs)".into(),
    )
}

/// A pending CA directory, as `init --external-root` made it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The CA directory.
    pub dir: PathBuf,
    /// What `ca.toml` will say (less the constraints the certificates add).
    pub config: CaConfig,
    /// The certificate requests to have signed: device, then entity.
    pub csrs: Vec<(CaKind, PathBuf)>,
    /// The external root's subject (for messages).
    pub root_subject: String,
}

/// The checks on an external root certificate: one certificate, a CA
/// (basicConstraints cA), self-signed (its own key verifies its signature),
/// with a subjectKeyIdentifier. Returns its DER.
pub fn check_external_root(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let certs = crate::verify::load::certs_from_bytes(bytes, what)?;
    let [der] = certs.as_slice() else {
        return Err(Error::input(
            what,
            format!(
                "holds {} certificates; give the root certificate alone (the trust anchor)",
                certs.len()
            ),
        ));
    };
    let der = der.as_ref().to_vec();
    let (_, x) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::input(what, format!("not a certificate: {e}")))?;
    if !x.is_ca() {
        return Err(Error::input(
            what,
            "is not a CA certificate (no basicConstraints cA:TRUE); give the root certificate",
        ));
    }
    let self_signed =
        x.subject().as_raw() == x.issuer().as_raw() && x.verify_signature(None).is_ok();
    if !self_signed {
        return Err(Error::input(
            what,
            format!(
                "is not self-signed (it is issued by `{}`): give the trust anchor, the self-signed root at the top of the chain (an intermediate goes to `ca install --chain`)",
                printable(&x.issuer().to_string())
            ),
        ));
    }
    if subject_key_id(&x).is_none() {
        return Err(Error::input(
            what,
            "has no subjectKeyIdentifier (RFC 5280 requires one in a CA certificate)",
        ));
    }
    Ok(der)
}

/// A certificate's subjectKeyIdentifier (the one reader, `layout`'s).
pub fn subject_key_id_of(x: &X509Certificate<'_>) -> Option<Vec<u8>> {
    subject_key_id(x)
}

/// `init --external-root`: a pending CA directory in `dir` (see the module
/// doc). Refuses (exit 3) a directory that holds a CA; nothing half-made stays.
pub fn init_external(
    dir: &Path,
    opts: &InitOptions,
    root_bytes: &[u8],
    root_what: &str,
    passphrase: Option<&Passphrase>,
    now: OffsetDateTime,
) -> Result<Pending> {
    let (name, constraints) = super::build::check_init(dir, opts, passphrase)?;
    let root_der = check_external_root(root_bytes, root_what)?;
    let (_, root) = x509_parser::parse_x509_certificate(&root_der)
        .map_err(|e| Error::input(root_what, e.to_string()))?;
    let root_subject = root.subject().to_string();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let config = CaConfig {
        name: name.clone(),
        key_type: opts.key_type,
        permit_dns: canonical(&constraints, |p| matches!(p, Pattern::Dns(_))),
        permit_ip: canonical(&constraints, |p| matches!(p, Pattern::Ip { .. })),
        permit_uri: if opts.permit_uri.is_empty() {
            vec![]
        } else {
            constraints.iter().filter_map(uri_text).collect()
        },
        created: now,
        encrypted_keys: passphrase.is_some(),
        external_root: true,
        generation: Default::default(),
        rollover: Default::default(),
    };
    let csrs = create_ca_dir(dir, "refusing to touch it", |staging| {
        fill_pending(staging, &config, &root, &root_der, passphrase)
    })?;
    Ok(Pending {
        dir: dir.to_path_buf(),
        config,
        csrs: csrs.into_iter().map(|(k, f)| (k, dir.join(f))).collect(),
        root_subject: printable(&root_subject),
    })
}

fn canonical(constraints: &[Pattern], keep: impl Fn(&Pattern) -> bool) -> Vec<String> {
    constraints
        .iter()
        .filter(|p| keep(p))
        .map(Pattern::as_text)
        .collect()
}

/// A URI host constraint as `permit_uri` spells it.
pub(crate) fn uri_text(p: &Pattern) -> Option<String> {
    match p {
        Pattern::UriHost(h) => Some(h.clone()),
        Pattern::UriHostUnder(d) => Some(format!(".{d}")),
        _ => None,
    }
}

fn fill_pending(
    dir: &Path,
    config: &CaConfig,
    root: &X509Certificate<'_>,
    root_der: &[u8],
    passphrase: Option<&Passphrase>,
) -> Result<Vec<(CaKind, &'static str)>> {
    let private = dir.join("private");
    fsutil::create_dir_mode(&private, 0o700).at(&private)?;
    let _ = root;
    let root_pem = fsutil::pem_lf(&pem::Pem::new("CERTIFICATE", root_der.to_vec()));
    fsutil::write_new(
        &dir.join(CaKind::Root.cert_file()),
        root_pem.as_bytes(),
        0o644,
    )?;
    let mut out = Vec::new();
    for kind in ISSUING_KINDS {
        let mut key = keypair::generate(config.key_type)?;
        let label = match kind {
            CaKind::Device => "Device Issuing CA",
            _ => "Entity Issuing CA",
        };
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(&config.name, &format!("{} {label}", config.name));
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.extended_key_usages = issuing_eku(kind).into_iter().collect();
        let csr = p
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| {
                Error::State(format!(
                    "cannot make the {} CA's request: {e}",
                    kind.as_str()
                ))
            })?;
        fsutil::write_new(
            &private.join(kind.key_file()),
            keypair::protected_pem(&key, passphrase)?.as_bytes(),
            0o600,
        )?;
        key.zeroize();
        fsutil::write_new(&dir.join(csr_file(kind)), csr.as_bytes(), 0o644)?;
        out.push((kind, csr_file(kind)));
    }
    let text = toml::to_string(config).map_err(|e| Error::State(e.to_string()))?;
    fsutil::write_new(&dir.join(PENDING_FILE), text.as_bytes(), 0o644)?;
    fsutil::sync_dir(dir)?;
    Ok(out)
}

/// Read a pending CA directory's `pending.toml` (exit 3 when there is none, or
/// when the CA is complete already).
pub fn read_pending(dir: &Path) -> Result<CaConfig> {
    if dir.join(CONFIG_FILE).exists() {
        return Err(Error::State(format!(
            "the CA in {} is complete already ({CONFIG_FILE} exists): its issuing CA certificates are installed",
            dir.display()
        )));
    }
    let path = dir.join(PENDING_FILE);
    let text = match read_ca_file(&path) {
        Ok(t) => t,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::State(format!(
                "no CA waits for its issuing CA certificates in {} (make one with `mtlsca init --external-root ROOT.pem`)",
                dir.display()
            )))
        }
        Err(e) => return Err(e),
    };
    let config: CaConfig = toml::from_str(&text).map_err(|e| {
        Error::State(format!(
            "{}: damaged pending CA configuration: {}",
            path.display(),
            e.message()
        ))
    })?;
    config.constraints()?;
    Ok(config)
}

/// Read the bounded external root copy `root.pem` of a pending CA.
pub fn read_root_copy(dir: &Path) -> Result<String> {
    let path = dir.join(CaKind::Root.cert_file());
    let text = fsutil::read_bounded_text(&path, MAX_ROOT_FILE, "root certificate")?;
    Ok(text)
}

impl Ca {
    /// A CA not yet marked complete (`ca install` signs its first CRLs with it
    /// before `ca.toml` is written).
    pub(crate) fn assembled(dir: &Path, config: CaConfig) -> Ca {
        Ca {
            dir: dir.to_path_buf(),
            config,
            passphrase: None,
            passphrase_source: None,
        }
    }

    /// The CAs whose keys this CA holds: the three, or the two issuing CAs
    /// under an external root.
    pub fn signing_kinds(&self) -> Vec<CaKind> {
        if self.config.external_root {
            ISSUING_KINDS.to_vec()
        } else {
            CaKind::ALL.to_vec()
        }
    }
}
