//! The hierarchy: creating it (`init`), loading it, and unlocking CA keys for signing.
//!
//! ```text
//! root CA (pathlen 1, keyCertSign+cRLSign, optional name constraints)
//! ├── device issuing CA (pathlen 0, EKU serverAuth) → device leaves
//! └── entity issuing CA (pathlen 0, EKU clientAuth) → entity leaves
//! ```

//!
//! The module is split by concern: [`config`] (`ca.toml`), [`layout`] (the
//! directory's files, the CA kinds, key identifiers), [`unlock`] (passphrases),
//! [`staging`] (making a CA directory all at once) and [`build`] (the
//! hierarchy's certificates); this file holds the loaded [`Ca`].

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};

use crate::keypair::{self, Passphrase};
use crate::names::printable;
use crate::profile::Profile;

mod build;
mod config;
mod external;
mod layout;
mod roll;
mod staging;
mod unlock;

pub use build::*;
pub use config::*;
pub use external::*;
pub use layout::*;
pub use roll::*;
pub use staging::*;
pub use unlock::*;

use layout::read_ca_file;

/// An opened CA directory.
#[derive(Debug, Clone)]
pub struct Ca {
    /// The CA directory.
    pub dir: PathBuf,
    /// Its `ca.toml`.
    pub config: CaConfig,
    /// Unlocks encrypted CA keys.
    passphrase: Option<Passphrase>,
    /// Where the passphrase is read from when a key is unlocked (the command
    /// line's `--passphrase-file`, else `$MTLSCA_PASSPHRASE`); read only then and
    /// zeroized after.
    passphrase_source: Option<PassphraseSource>,
}

/// A CA certificate with its unlocked key, ready to sign.
pub struct SigningCa {
    /// Which CA of the hierarchy.
    pub kind: CaKind,
    /// Which generation of it.
    pub generation: u32,
    /// Its certificate (DER).
    pub cert_der: Vec<u8>,
    /// Its certificate (PEM, as on disk).
    pub cert_pem: String,
    /// Its notAfter: nothing it signs may outlive it.
    pub not_after: OffsetDateTime,
    /// Its subjectKeyIdentifier (the authorityKeyIdentifier of what it signs).
    pub key_id: Vec<u8>,
    /// The CA's SubjectPublicKeyInfo (DER), to check signatures it made.
    pub spki_der: Vec<u8>,
    /// The CA's subject Name (DER), which every certificate it signs names as issuer.
    pub subject_der: Vec<u8>,
    /// The CA's subject, as text (for messages).
    pub subject: String,
    /// The unlocked key with the certificate, for rcgen.
    pub issuer: Issuer<'static, KeyPair>,
}

impl SigningCa {
    /// Which CA generation this is.
    pub fn id(&self) -> CaId {
        CaId::new(self.kind, self.generation)
    }

    /// Exit 3 when this CA has expired by `now`: nothing it signs could be
    /// valid. The message names the CA, its expiry and the command that rolls it.
    pub fn check_not_expired(&self, now: OffsetDateTime) -> Result<()> {
        if self.not_after > now {
            return Ok(());
        }
        let kind = self.kind.as_str();
        Err(Error::State(format!(
            "the {kind} CA ({}, {}) expired on {}: it can sign nothing more; roll it with `mtlsca ca roll {kind}` (a new generation signs from then on; certificates it signed stay valid until they expire)",
            self.id(),
            printable(&self.subject),
            crate::timefmt::rfc3339(self.not_after),
        )))
    }
}

/// What a relying party that trusts a CA needs ([`Ca::trust_material`]), DER.
#[derive(Debug, Clone, Default)]
pub struct TrustMaterial {
    /// Every root generation.
    pub anchors: Vec<Vec<u8>>,
    /// Every issuing generation and link certificate.
    pub intermediates: Vec<Vec<u8>>,
}

/// One generation of a CA as its certificate describes it.
#[derive(Debug, Clone)]
pub struct CaGeneration {
    /// Which CA and generation.
    pub id: CaId,
    /// The generation that signs now (the others are retired).
    pub current: bool,
    /// Its subject, as text.
    pub subject: String,
    /// Its notBefore.
    pub not_before: OffsetDateTime,
    /// Its notAfter.
    pub not_after: OffsetDateTime,
    /// Its subjectKeyIdentifier.
    pub key_id: Vec<u8>,
    /// Its certificate (DER).
    pub cert_der: Vec<u8>,
    /// Its certificate (PEM, as on disk).
    pub cert_pem: String,
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("kind", &self.kind)
            .finish()
    }
}

impl Ca {
    /// Open an existing CA (exit 3 when there is none).
    pub fn open(dir: &Path) -> Result<Ca> {
        let cfg_path = dir.join(CONFIG_FILE);
        let text = match read_ca_file(&cfg_path) {
            Ok(t) => t,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                if dir.join(PENDING_FILE).exists() {
                    return Err(pending_error(dir));
                }
                refuse_existing(dir, "run `mtlsca init` elsewhere, or pass --ca-dir")?;
                let interrupted = if dir.join(STAGING).exists() {
                    " (an interrupted `init` left it half-made: run `mtlsca init` again)"
                } else {
                    ""
                };
                return Err(Error::State(format!(
                    "no CA in {}{interrupted} (run `mtlsca init` first, or pass --ca-dir)",
                    dir.display()
                )));
            }
            Err(e) => return Err(e),
        };
        let config: CaConfig = toml::from_str(&text).map_err(|e| {
            Error::State(format!(
                "{}: damaged CA configuration: {}",
                cfg_path.display(),
                e.message()
            ))
        })?;
        // Constraints that cannot be read stop every command: none is dropped.
        config.constraints()?;
        Ok(Ca {
            dir: dir.to_path_buf(),
            config,
            passphrase: None,
            passphrase_source: None,
        })
    }

    /// Unlock encrypted CA keys with this passphrase.
    pub fn with_passphrase(mut self, passphrase: Passphrase) -> Ca {
        self.passphrase = Some(passphrase);
        self
    }

    /// Read the passphrase of encrypted CA keys from `source` when a key is unlocked.
    pub fn with_passphrase_source(mut self, source: PassphraseSource) -> Ca {
        self.passphrase_source = Some(source);
        self
    }

    /// The current generation of a CA (what signs from now on).
    pub fn current(&self, kind: CaKind) -> CaId {
        self.config.current(kind)
    }

    /// Where the current generation's certificate lives.
    pub fn cert_path(&self, kind: CaKind) -> PathBuf {
        self.cert_path_of(self.current(kind))
    }

    /// Where the current generation's key lives.
    pub fn key_path(&self, kind: CaKind) -> PathBuf {
        self.key_path_of(self.current(kind))
    }

    /// The current generation's certificate as PEM text (bounded read).
    pub fn cert_pem(&self, kind: CaKind) -> Result<String> {
        self.cert_pem_of(self.current(kind))
    }

    /// The current generation's certificate as DER.
    pub fn cert_der(&self, kind: CaKind) -> Result<Vec<u8>> {
        self.cert_der_of(self.current(kind))
    }

    /// Where a CA generation's certificate lives.
    pub fn cert_path_of(&self, id: CaId) -> PathBuf {
        self.dir.join(id.cert_file())
    }

    /// Where a CA generation's key lives.
    pub fn key_path_of(&self, id: CaId) -> PathBuf {
        self.dir.join("private").join(id.key_file())
    }

    /// A CA generation's certificate as PEM text (bounded read).
    pub fn cert_pem_of(&self, id: CaId) -> Result<String> {
        read_ca_file(&self.cert_path_of(id))
    }

    /// A CA generation's certificate as DER.
    pub fn cert_der_of(&self, id: CaId) -> Result<Vec<u8>> {
        self.der_of(id, &self.cert_pem_of(id)?)
    }

    fn der_of(&self, id: CaId, pem_text: &str) -> Result<Vec<u8>> {
        pem::parse(pem_text)
            .map(|p| p.into_contents())
            .map_err(|e| Error::State(format!("{}: {e}", self.cert_path_of(id).display())))
    }

    /// Every generation of every CA that `ca.toml` records (root first, then
    /// device and entity; oldest first within each), with what its certificate
    /// says.
    pub fn generations(&self) -> Result<Vec<CaGeneration>> {
        let mut out = Vec::new();
        for kind in CaKind::ALL {
            for g in 1..=self.config.generation.of(kind) {
                out.push(self.generation(CaId::new(kind, g))?);
            }
        }
        Ok(out)
    }

    /// One generation of a CA, read from its certificate.
    pub fn generation(&self, id: CaId) -> Result<CaGeneration> {
        let cert_pem = self.cert_pem_of(id)?;
        let cert_der = self.der_of(id, &cert_pem)?;
        let path = self.cert_path_of(id);
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let key_id = layout::subject_key_id(&x509)
            .ok_or_else(|| Error::State(format!("{}: no subjectKeyIdentifier", path.display())))?;
        Ok(CaGeneration {
            id,
            current: self.current(id.kind) == id,
            subject: x509.subject().to_string(),
            not_before: x509.validity().not_before.to_datetime(),
            not_after: x509.validity().not_after.to_datetime(),
            key_id,
            cert_der,
            cert_pem,
        })
    }

    /// The generation whose key identifier is `key_id` (hex, as a record's
    /// `issuer_key_id`), if `ca.toml` records one.
    pub fn generation_by_key_id(&self, key_id: &str) -> Result<Option<CaGeneration>> {
        Ok(self
            .generations()?
            .into_iter()
            .find(|g| crate::hex::encode(&g.key_id).eq_ignore_ascii_case(key_id)))
    }

    /// What a relying party that trusts this CA needs (DER): every root
    /// generation as a trust anchor, and as intermediates every issuing
    /// generation and the link certificates between root generations.
    pub fn trust_material(&self) -> Result<TrustMaterial> {
        let mut anchors = Vec::new();
        let mut intermediates = Vec::new();
        for g in self.generations()? {
            if g.id.kind == CaKind::Root {
                anchors.push(g.cert_der);
            } else {
                intermediates.push(g.cert_der);
            }
        }
        let roots = self.config.generation.root;
        for g in 2..=roots {
            for file in [link_file(g, g - 1), link_file(g - 1, g)] {
                let path = self.dir.join(&file);
                if path.exists() {
                    let text = read_ca_file(&path)?;
                    let der = pem::parse(&text)
                        .map(|p| p.into_contents())
                        .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
                    intermediates.push(der);
                }
            }
        }
        Ok(TrustMaterial {
            anchors,
            intermediates,
        })
    }

    /// The issuing CA generation that signed a certificate, by its issuer key
    /// id (hex, a record's `issuer_key_id`); the current generation of `kind`
    /// when no generation has that key id.
    pub fn issuer_by_key_id(&self, issuer_key_id: &str, kind: CaKind) -> Result<CaId> {
        Ok(match self.generation_by_key_id(issuer_key_id)? {
            Some(g) => g.id,
            None => self.current(kind),
        })
    }

    /// The root generation that signed an issuing CA generation (by its
    /// authorityKeyIdentifier), else the current root.
    pub fn root_of(&self, issuing: CaId) -> Result<CaId> {
        let der = self.cert_der_of(issuing)?;
        let aki = x509_parser::parse_x509_certificate(&der)
            .ok()
            .and_then(|(_, x)| {
                x.extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                            a.key_identifier.as_ref().map(|k| k.0.to_vec())
                        }
                        _ => None,
                    })
            });
        if let Some(aki) = aki {
            for g in (1..=self.config.generation.root).rev() {
                let id = CaId::new(CaKind::Root, g);
                if self.generation(id)?.key_id == aki {
                    return Ok(id);
                }
            }
        }
        Ok(self.current(CaKind::Root))
    }

    /// The current generation's certificate and key, unlocked for signing.
    pub fn signing_ca(&self, kind: CaKind) -> Result<SigningCa> {
        self.signing_ca_of(self.current(kind))
    }

    /// Load a CA generation's certificate and unlock its key for signing.
    pub fn signing_ca_of(&self, id: CaId) -> Result<SigningCa> {
        let kind = id.kind;
        if !self.signing_kinds().contains(&kind) {
            return Err(external_root_error());
        }
        let cert_pem = self.cert_pem_of(id)?;
        let cert_der = self.der_of(id, &cert_pem)?;
        let key_path = self.key_path_of(id);
        check_key_permissions(&self.dir.join("private"), &key_path)?;
        let key_pem = Zeroizing::new(read_ca_file(&key_path)?);
        let what = key_path.display().to_string();
        let encrypted = keypair::is_encrypted_pem(&key_pem);
        if self.config.encrypted_keys && !encrypted {
            return Err(Error::State(format!(
                "{what} is not encrypted, but {CONFIG_FILE} says this CA's keys are: refusing a key that may have been replaced"
            )));
        }
        let passphrase = match (&self.passphrase, encrypted) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => match &self.passphrase_source {
                Some(src) => read_passphrase(src)?,
                None => None,
            },
            (None, false) => None,
        };
        let key = keypair::load_protected_pem(&key_pem, passphrase.as_ref(), &what)?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| Error::State(format!("{}: {e}", self.cert_path_of(id).display())))?;
        let not_after = x509.validity().not_after.to_datetime();
        let key_id = layout::subject_key_id(&x509)
            .ok_or_else(|| Error::State(format!("{}: no subjectKeyIdentifier", id.cert_file())))?;
        let spki_der = x509.public_key().raw.to_vec();
        let subject_der = x509.tbs_certificate.subject.as_raw().to_vec();
        let subject = x509.subject().to_string();
        if !crate::key::same_public_key(
            &spki_der,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        ) {
            return Err(Error::State(format!(
                "{} does not belong to {}",
                key_path.display(),
                id.cert_file()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| Error::State(format!("{}: {e}", id.cert_file())))?;
        Ok(SigningCa {
            kind,
            generation: id.generation,
            cert_der,
            cert_pem,
            not_after,
            key_id,
            spki_der,
            subject_der,
            subject,
            issuer,
        })
    }

    /// Where the CA's copy of a profile lives.
    pub fn profile_path(&self, name: &str) -> PathBuf {
        self.dir.join("profiles").join(format!("{name}.toml"))
    }

    /// A profile by name from the CA's own copies.
    pub fn profile(&self, name: &str) -> Result<Profile> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Usage(format!(
                "`{}` is not a profile name",
                printable(name)
            )));
        }
        let path = self.profile_path(name);
        if !path.exists() {
            let known: Vec<String> = self.profile_names()?;
            return Err(Error::invalid(
                crate::rules::Origin::Arguments,
                crate::rules::Refusal::new(
                    crate::rules::Rule::ProfileUnknown,
                    format!(
                        "there is no profile of that name in {} (known: {})",
                        self.dir.join("profiles").display(),
                        known.join(", ")
                    ),
                )
                .on(crate::rules::Field::Profile)
                .value(name),
            ));
        }
        let p = load_profile(&path)?;
        if p.name != name {
            return Err(Error::input(
                format!("profile {}", path.display()),
                format!(
                    "key `name`: `{}` does not match the file name `{name}`",
                    p.name
                ),
            ));
        }
        Ok(p)
    }

    /// The names of the CA's profiles, sorted.
    pub fn profile_names(&self) -> Result<Vec<String>> {
        let dir = self.dir.join("profiles");
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "toml") {
                if let Some(stem) = path.file_stem() {
                    names.push(stem.to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Read and validate a profile file of the CA.
fn load_profile(path: &Path) -> Result<Profile> {
    let text = crate::fsutil::read_bounded_text(path, MAX_PROFILE_FILE, "profile")?;
    Profile::parse(&text, &path.display().to_string())
}

/// Largest profile file read.
const MAX_PROFILE_FILE: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;
    use crate::names::Pattern;
    use x509_parser::extensions::{GeneralName, ParsedExtension};

    fn opts(dns: &[&str], ip: &[&str], uri: &[&str]) -> InitOptions {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        InitOptions {
            name: "T".into(),
            key_type: KeyType::EcdsaP256,
            permit_dns: v(dns),
            permit_ip: v(ip),
            permit_uri: v(uri),
        }
    }

    fn config(o: &InitOptions) -> CaConfig {
        CaConfig {
            name: o.name.clone(),
            key_type: o.key_type,
            permit_dns: o.permit_dns.clone(),
            permit_ip: o.permit_ip.clone(),
            permit_uri: o.permit_uri.clone(),
            created: OffsetDateTime::UNIX_EPOCH,
            encrypted_keys: false,
            generation: Default::default(),
            rollover: Default::default(),
            external_root: false,
        }
    }

    #[test]
    fn uri_constraints_are_explicit_or_derived_from_dns() {
        let texts = |o: &InitOptions| -> Vec<String> {
            config(o)
                .constraints()
                .unwrap()
                .iter()
                .map(Pattern::as_text)
                .collect()
        };
        assert_eq!(
            texts(&opts(&["corp.internal"], &["10.0.0.0/8"], &[])),
            [
                "corp.internal",
                "10.0.0.0/8",
                "URI:corp.internal",
                "URI:.corp.internal"
            ]
        );
        assert_eq!(
            texts(&opts(&["corp.internal"], &[], &[".mesh.internal"])),
            ["corp.internal", "URI:.mesh.internal"]
        );
        assert!(texts(&opts(&[], &["10.0.0.0/8"], &[]))
            .iter()
            .all(|t| !t.starts_with("URI:")));
        for bad in [
            opts(&["corp.internal."], &[], &[]),
            opts(&["*.corp.internal"], &[], &[]),
            opts(&[], &["10.0.0.0/33"], &[]),
            opts(&[], &["corp.internal"], &[]),
            opts(&[], &[], &["spiffe://corp.internal"]),
        ] {
            let err = config(&bad).constraints().unwrap_err().to_string();
            assert!(
                err.contains(CONFIG_FILE) && err.contains("key `permit_"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_root_carries_dns_ip_and_uri_subtrees_critically() {
        let dir = tempfile::tempdir().unwrap();
        let ca = init(
            &dir.path().join("ca"),
            &opts(&["Corp.Internal"], &["10.0.0.0/8"], &[]),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert_eq!(ca.config.permit_dns, ["corp.internal"]);
        assert!(ca.config.permit_uri.is_empty());
        let der = ca.cert_der(CaKind::Root).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid == x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS)
            .expect("nameConstraints");
        assert!(ext.critical);
        let ParsedExtension::NameConstraints(nc) = ext.parsed_extension() else {
            panic!("unparsed nameConstraints");
        };
        assert!(nc.excluded_subtrees.is_none());
        let bases: Vec<String> = nc
            .permitted_subtrees
            .iter()
            .flatten()
            .map(|t| match &t.base {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::URI(u) => format!("URI:{u}"),
                GeneralName::IPAddress(ip) => format!("IP:{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            bases,
            [
                "DNS:corp.internal",
                "IP:[10, 0, 0, 0, 255, 0, 0, 0]",
                "URI:corp.internal",
                "URI:.corp.internal"
            ]
        );
        // The issuing CAs carry none: the root constrains the whole hierarchy.
        let der = ca.cert_der(CaKind::Device).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert
            .extensions()
            .iter()
            .all(|e| e.oid != x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS));
    }
}
