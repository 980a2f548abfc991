//! The hierarchy: creating it (`init`), loading it, and unlocking CA keys for signing.
//!
//! ```text
//! root CA (pathlen 1, keyCertSign+cRLSign, optional name constraints)
//! ├── device issuing CA (pathlen 0, EKU serverAuth) → device leaves
//! └── entity issuing CA (pathlen 0, EKU clientAuth) → entity leaves
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::key::{self, KeyType, Passphrase};
use crate::name_constraints::{self, Subtree};
use crate::names::{printable, Pattern};
use crate::profile::{self, Profile};
use crate::role::Role;

/// The CA configuration file in a CA directory.
pub const CONFIG_FILE: &str = "ca.toml";
/// The whole hierarchy in one file (root + both issuing CAs), for relying parties
/// and tools that take one CA file (`openssl s_server -CAfile ca-bundle.pem`).
pub const BUNDLE_FILE: &str = "ca-bundle.pem";
const ROOT_YEARS: i64 = 20;
const ISSUING_YEARS: i64 = 10;
/// Largest CA file (configuration, certificate, key) read from a CA directory.
const MAX_CA_FILE: u64 = 256 * 1024;

/// `<ca-dir>/ca.toml`: what `init` decided. Written last, so its presence marks a
/// complete CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// The CA's name.
    pub name: String,
    /// Key type of the CA keys.
    pub key_type: KeyType,
    /// DNS domain constraints: each covers the domain and every name under it.
    #[serde(default)]
    pub permit_dns: Vec<String>,
    /// IP range constraints (CIDR).
    #[serde(default)]
    pub permit_ip: Vec<String>,
    /// URI host constraints in RFC 5280 §4.2.1.10 form: `corp.internal` (exactly
    /// that host) or `.corp.internal` (any host under it). Empty with
    /// `permit_dns` set: URI hosts are held to the DNS domains. Not written when
    /// empty, so a CA without it stays readable by earlier versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permit_uri: Vec<String>,
    /// When `init` made the CA.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The CA keys in `private/` are encrypted PKCS#8 (`init --encrypt`): a plain
    /// key found there instead is refused as tampering.
    #[serde(default)]
    pub encrypted_keys: bool,
}

impl CaConfig {
    /// The CA's effective name constraints: the DNS domains (`Pattern::Dns`), the
    /// IP ranges, and the URI hosts: `permit_uri`, or, when it is empty and
    /// `permit_dns` is not, for each DNS domain `d` the hosts `d` and `.d`.
    /// An entry that does not parse is an error (exit 3) naming `ca.toml`, the
    /// key and the value; nothing is dropped.
    pub fn constraints(&self) -> Result<Vec<Pattern>> {
        effective_constraints(
            &self.permit_dns,
            &self.permit_ip,
            &self.permit_uri,
            |key, value, why| {
                Error::State(format!(
                    "{CONFIG_FILE}: key `{key}`: `{}` {why}",
                    printable(value)
                ))
            },
        )
    }
}

/// Parse the three constraint lists (`permit_dns`, `permit_ip`, `permit_uri`)
/// into patterns, deriving the URI hosts from the DNS domains when no URI
/// constraint is given; `err(key, value, why)` makes the error of a bad entry.
fn effective_constraints(
    dns: &[String],
    ip: &[String],
    uri: &[String],
    err: impl Fn(&str, &str, String) -> Error,
) -> Result<Vec<Pattern>> {
    let mut out = Vec::with_capacity(dns.len() * 3 + ip.len() + uri.len());
    for d in dns {
        match Pattern::parse(d) {
            Ok(p @ Pattern::Dns(_)) => out.push(p),
            Ok(Pattern::DnsUnder(domain)) => {
                return Err(err(
                    "permit_dns",
                    d,
                    format!("is not a DNS domain: a DNS constraint covers the domain and every name under it, and cannot leave the domain itself out; write `{domain}`"),
                ))
            }
            Ok(_) => {
                return Err(err(
                    "permit_dns",
                    d,
                    "is not a DNS domain such as corp.internal".into(),
                ))
            }
            Err(m) => return Err(err("permit_dns", d, format!("is not a DNS domain: {m}"))),
        }
    }
    for c in ip {
        match Pattern::parse(c) {
            Ok(p @ Pattern::Ip { .. }) => out.push(p),
            Ok(_) => {
                return Err(err(
                    "permit_ip",
                    c,
                    "is not an IP range such as 10.0.0.0/8".into(),
                ))
            }
            Err(m) => return Err(err("permit_ip", c, format!("is not an IP range: {m}"))),
        }
    }
    for u in uri {
        let p = Pattern::parse_uri_host(u).map_err(|m| {
            err(
                "permit_uri",
                u,
                format!("is not a URI host constraint: {m}"),
            )
        })?;
        out.push(p);
    }
    if uri.is_empty() {
        let derived: Vec<Pattern> = out
            .iter()
            .filter_map(|p| match p {
                Pattern::Dns(d) => Some([
                    Pattern::UriHost(d.clone()),
                    Pattern::UriHostUnder(d.clone()),
                ]),
                _ => None,
            })
            .flatten()
            .collect();
        out.extend(derived);
    }
    Ok(out)
}

/// What `init` is asked for.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The CA's name (organizationName of its certificates).
    pub name: String,
    /// Key type of the three CA keys.
    pub key_type: KeyType,
    /// DNS domain constraints (`init --permit-dns`).
    pub permit_dns: Vec<String>,
    /// IP range constraints (`init --permit-ip`).
    pub permit_ip: Vec<String>,
    /// URI host constraints (`init --permit-uri`): `host` or `.domain`.
    pub permit_uri: Vec<String>,
}

/// Where the passphrase of encrypted CA keys comes from when the caller did not
/// give one to `Ca::with_passphrase`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassphraseSource {
    /// A file whose content (less one trailing newline) is the passphrase.
    File(PathBuf),
    /// An environment variable, read when a key is unlocked.
    Environment(String),
}

/// Read the passphrase from a source: `None` when the environment variable is unset.
pub fn read_passphrase(source: &PassphraseSource) -> Result<Option<Passphrase>> {
    match source {
        PassphraseSource::File(path) => {
            check_secret_file(path, "passphrase file")?;
            let bytes = fsutil::read_bounded(path, key::MAX_PASSPHRASE, "passphrase file")?;
            Passphrase::new(bytes, &format!("passphrase file {}", path.display())).map(Some)
        }
        PassphraseSource::Environment(var) => match std::env::var_os(var) {
            None => Ok(None),
            Some(v) => {
                let bytes = v.into_encoded_bytes();
                Passphrase::new(bytes, &format!("${var}")).map(Some)
            }
        },
    }
}

/// Refuse (exit 2) a file holding a secret that group or others can read or write.
pub fn check_secret_file(path: &Path, what: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path != Path::new("-") {
            if let Ok(meta) = fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if meta.is_file() && mode & 0o077 != 0 {
                    return Err(Error::input(
                        format!("{what} {}", path.display()),
                        format!(
                            "is readable or writable by group or others (mode {mode:o}); fix it with `chmod 600 {}`",
                            path.display()
                        ),
                    ));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

/// The three CAs of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaKind {
    /// The root CA.
    Root,
    /// The device issuing CA (EKU serverAuth).
    Device,
    /// The entity issuing CA (EKU clientAuth).
    Entity,
}

impl CaKind {
    /// The three, root first.
    pub const ALL: [CaKind; 3] = [CaKind::Root, CaKind::Device, CaKind::Entity];

    /// `root`, `device` or `entity` (as `crl --issuer` spells it).
    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::Root => "root",
            CaKind::Device => "device",
            CaKind::Entity => "entity",
        }
    }

    /// The certificate's file name in the CA directory.
    pub fn cert_file(self) -> &'static str {
        match self {
            CaKind::Root => "root.pem",
            CaKind::Device => "device-ca.pem",
            CaKind::Entity => "entity-ca.pem",
        }
    }

    /// The key's file name in `private/`.
    pub fn key_file(self) -> &'static str {
        match self {
            CaKind::Root => "root.key",
            CaKind::Device => "device-ca.key",
            CaKind::Entity => "entity-ca.key",
        }
    }

    /// The issuing CA for leaves of a role.
    pub fn for_role(role: Role) -> CaKind {
        match role {
            Role::Device => CaKind::Device,
            Role::Entity => CaKind::Entity,
        }
    }

    /// The kind named by [`CaKind::as_str`].
    pub fn parse(s: &str) -> Option<CaKind> {
        CaKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

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
    /// The unlocked key with the certificate, for rcgen.
    pub issuer: Issuer<'static, KeyPair>,
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

    /// Where a CA certificate lives.
    pub fn cert_path(&self, kind: CaKind) -> PathBuf {
        self.dir.join(kind.cert_file())
    }

    /// Where a CA key lives.
    pub fn key_path(&self, kind: CaKind) -> PathBuf {
        self.dir.join("private").join(kind.key_file())
    }

    /// A CA certificate as PEM text (bounded read).
    pub fn cert_pem(&self, kind: CaKind) -> Result<String> {
        read_ca_file(&self.cert_path(kind))
    }

    /// A CA certificate as DER.
    pub fn cert_der(&self, kind: CaKind) -> Result<Vec<u8>> {
        self.der_of(kind, &self.cert_pem(kind)?)
    }

    fn der_of(&self, kind: CaKind, pem_text: &str) -> Result<Vec<u8>> {
        pem::parse(pem_text)
            .map(|p| p.into_contents())
            .map_err(|e| Error::State(format!("{}: {e}", self.cert_path(kind).display())))
    }

    /// Load a CA certificate and unlock its key for signing.
    pub fn signing_ca(&self, kind: CaKind) -> Result<SigningCa> {
        let cert_pem = self.cert_pem(kind)?;
        let cert_der = self.der_of(kind, &cert_pem)?;
        let key_path = self.key_path(kind);
        check_key_permissions(&self.dir.join("private"), &key_path)?;
        let key_pem = Zeroizing::new(read_ca_file(&key_path)?);
        let what = key_path.display().to_string();
        let encrypted = key::is_encrypted_pem(&key_pem);
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
        let key = key::load_protected_pem(&key_pem, passphrase.as_ref(), &what)?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| Error::State(format!("{}: {e}", self.cert_path(kind).display())))?;
        let not_after = x509.validity().not_after.to_datetime();
        let key_id = x509
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| {
                Error::State(format!("{}: no subjectKeyIdentifier", kind.cert_file()))
            })?;
        let spki_der = x509.public_key().raw.to_vec();
        let subject_der = x509.tbs_certificate.subject.as_raw().to_vec();
        if !crate::key::same_public_key(
            &spki_der,
            &rcgen::PublicKeyData::subject_public_key_info(&key),
        ) {
            return Err(Error::State(format!(
                "{} does not belong to {}",
                key_path.display(),
                kind.cert_file()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)
            .map_err(|e| Error::State(format!("{}: {e}", kind.cert_file())))?;
        Ok(SigningCa {
            kind,
            cert_der,
            cert_pem,
            not_after,
            key_id,
            spki_der,
            subject_der,
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
        let p = Profile::load(&path)?;
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

/// Read a file of the CA directory (configuration, certificate, key), bounded so a
/// foreign or damaged `--ca-dir` cannot make mtlsca read without end (exit 3).
fn read_ca_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = fs::File::open(path).at(path)?;
    let mut buf = Vec::new();
    f.take(MAX_CA_FILE + 1).read_to_end(&mut buf).at(path)?;
    if buf.len() as u64 > MAX_CA_FILE {
        buf.zeroize();
        return Err(Error::State(format!(
            "{} is larger than {} KiB: not a file mtlsca wrote",
            path.display(),
            MAX_CA_FILE / 1024
        )));
    }
    String::from_utf8(buf).map_err(|e| {
        let mut b = e.into_bytes();
        b.zeroize();
        Error::State(format!("{} is not UTF-8 text", path.display()))
    })
}

/// Refuse a CA key that others can read (and a `private/` they can enter).
pub fn check_key_permissions(private_dir: &Path, key_path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (path, fix) in [(private_dir, "700"), (key_path, "600")] {
            let meta = fs::metadata(path).at(path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::State(format!(
                    "{} is readable by group or others (mode {:o}); fix it with `chmod {fix} {}`",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                )));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (private_dir, key_path);
    Ok(())
}

/// The key identifier (subjectKeyIdentifier, hex) of each CA certificate in
/// `dir`, by name (`root`, `device`, `entity`): what the store records as its
/// owner. Exit 3 when a certificate is missing or unreadable.
pub fn key_ids(dir: &Path) -> Result<crate::store::CaKeyIds> {
    let mut out = crate::store::CaKeyIds::new();
    for kind in CaKind::ALL {
        let path = dir.join(kind.cert_file());
        let text = read_ca_file(&path)?;
        let der = pem::parse(&text)
            .map(|p| p.into_contents())
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let kid = x509
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| Error::State(format!("{}: no subjectKeyIdentifier", path.display())))?;
        out.insert(kind.as_str().to_string(), crate::hex::encode(&kid));
    }
    Ok(out)
}

/// Paths of a CA directory whose mode lets group or others write (or, under
/// `private/` and `db/`, read), with their mode and the `chmod` argument that
/// fixes it: what `store check` reports.
pub fn loose_modes(dir: &Path) -> Vec<(PathBuf, u32, &'static str)> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut check = |p: PathBuf, forbidden: u32| {
            if let Ok(m) = fs::symlink_metadata(&p) {
                let mode = m.permissions().mode() & 0o7777;
                if !m.file_type().is_symlink() && mode & forbidden != 0 {
                    let fix = if forbidden == 0o077 { "go-rwx" } else { "go-w" };
                    out.push((p, mode, fix));
                }
            }
        };
        check(dir.to_path_buf(), 0o022);
        for f in [CONFIG_FILE, "root.pem", "device-ca.pem", "entity-ca.pem"] {
            check(dir.join(f), 0o022);
        }
        for (sub, forbidden) in [
            ("private", 0o077),
            ("db", 0o077),
            ("profiles", 0o022),
            ("crl", 0o022),
        ] {
            let d = dir.join(sub);
            check(d.clone(), forbidden);
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    check(e.path(), forbidden);
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    out
}

/// What a CA directory holds; any of them marks a directory as taken.
const CA_ENTRIES: [&str; 9] = [
    CONFIG_FILE,
    BUNDLE_FILE,
    "root.pem",
    "device-ca.pem",
    "entity-ca.pem",
    "private",
    "profiles",
    "db",
    "crl",
];

/// Exit 3 when `dir` already holds (part of) a CA: nothing is written over one.
pub fn refuse_existing(dir: &Path, what_now: &str) -> Result<()> {
    if dir.join(STAGING).is_dir() && !dir.join(CONFIG_FILE).exists() {
        // An `init`/`restore` killed while moving a CA in: not a foreign CA.
        // `create_ca_dir` removes it under the lock, then checks again.
        return Ok(());
    }
    let markers = [CONFIG_FILE, "root.pem", "private", "db"];
    match markers.iter().find(|m| dir.join(m).exists()) {
        Some(m) if !dir.join(CONFIG_FILE).exists() => Err(Error::State(format!(
            "{} holds part of a CA ({m} exists) but no {CONFIG_FILE}: not a CA mtlsca made whole; {what_now} (move it away, or restore a backup into a new directory)",
            dir.display()
        ))),
        Some(m) => Err(Error::State(format!(
            "{} already holds a CA ({m} exists); {what_now}",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// The hidden directory inside an existing `--ca-dir` where `init` and `restore`
/// build a CA before moving it in; one left behind marks an interrupted run that
/// the next `init` or `restore` cleans up.
pub const STAGING: &str = ".mtlsca-init";

/// The hidden sibling `.<name>.mtlsca-init-<pid>` where a CA for a new directory
/// is built before it is renamed into place.
fn staging_prefix(name: &str) -> String {
    format!(".{name}.mtlsca-init-")
}

/// How long `init`/`restore` waits for another one working in the same parent
/// directory.
const INIT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Create a CA directory crash-safely and under a lock (`init`, `restore`).
///
/// `fill` builds the CA in a staging directory; for a new `dir` that is a hidden
/// sibling renamed to `dir` when complete (a kill leaves nothing under the name,
/// or a complete CA), for an existing (empty or foreign) `dir` a hidden
/// `dir/.mtlsca-init` whose entries are moved in, `ca.toml` last. Both run under
/// an exclusive lock on the parent directory, so two at once yield one CA and one
/// clear refusal (exit 3); leftovers of a killed run are removed first.
pub fn create_ca_dir<T>(
    dir: &Path,
    what_now: &str,
    fill: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let (parent, name) = split_dir(dir)?;
    // Missing parents are made 0755 whatever the umask: a parent others may
    // write to would let them move the CA directory away.
    fsutil::create_dir_all_mode(&parent, 0o755)?;
    let _lock = fsutil::DirLock::acquire(&parent, INIT_LOCK_WAIT)?;
    clean_interrupted(dir, &parent, &name)?;
    refuse_existing(dir, what_now)?;
    if dir.exists() {
        if let Some(e) = CA_ENTRIES.iter().find(|e| dir.join(e).exists()) {
            return Err(Error::State(format!(
                "{} already has `{e}`, which a CA would use; use a new or empty directory",
                dir.display()
            )));
        }
        let staging = dir.join(STAGING);
        fsutil::create_dir_mode(&staging, 0o700).at(&staging)?;
        let result = fill(&staging).and_then(|t| {
            move_in(&staging, dir)?;
            Ok(t)
        });
        if result.is_err() {
            remove_half_made(dir, false);
            let _ = fs::remove_dir_all(&staging);
        }
        result
    } else {
        let staging = parent.join(format!("{}{}", staging_prefix(&name), std::process::id()));
        fsutil::create_dir_mode(&staging, 0o750).at(&staging)?;
        let result = fill(&staging).and_then(|t| {
            fsutil::sync_dir(&staging)?;
            fs::rename(&staging, dir).map_err(|e| {
                Error::State(format!(
                    "cannot move the new CA into {}: {e}; {what_now}",
                    dir.display()
                ))
            })?;
            fsutil::sync_dir(&parent)?;
            Ok(t)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }
}

/// `dir`'s parent (absolute when `dir` exists, so `.` works) and its name.
fn split_dir(dir: &Path) -> Result<(PathBuf, String)> {
    let full = if dir.exists() {
        dir.canonicalize().at(dir)?
    } else {
        dir.to_path_buf()
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} cannot be a CA directory (it has no name)",
                dir.display()
            ))
        })?;
    let parent = match full.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Remove what a killed `init`/`restore` left (the caller holds the lock, so no
/// other one is running): staging siblings, and a staging directory inside `dir`
/// with whatever it had moved in when `ca.toml` never followed.
fn clean_interrupted(dir: &Path, parent: &Path, name: &str) -> Result<()> {
    let prefix = staging_prefix(name);
    for entry in fs::read_dir(parent).at(parent)? {
        let entry = entry.at(parent)?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let p = entry.path();
            fs::remove_dir_all(&p).at(&p)?;
        }
    }
    let inner = dir.join(STAGING);
    if inner.exists() {
        if !dir.join(CONFIG_FILE).exists() {
            remove_half_made(dir, false);
        }
        fs::remove_dir_all(&inner).at(&inner)?;
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// Move a built CA from `staging` into `dir`, `ca.toml` last, then remove `staging`.
fn move_in(staging: &Path, dir: &Path) -> Result<()> {
    for e in CA_ENTRIES.iter().filter(|e| **e != CONFIG_FILE) {
        let from = staging.join(e);
        if from.exists() {
            let to = dir.join(e);
            fsutil::rename_no_replace(&from, &to).at(&to)?;
        }
    }
    fsutil::sync_dir(dir)?;
    let to = dir.join(CONFIG_FILE);
    fsutil::rename_no_replace(&staging.join(CONFIG_FILE), &to).at(&to)?;
    fsutil::sync_dir(dir)?;
    fs::remove_dir_all(staging).at(staging)?;
    fsutil::sync_dir(dir)
}

/// After a failed `init` or restore: remove what a CA directory holds (the caller
/// checked with `refuse_existing` that none of it was there before), and the
/// directory itself when the caller created it.
pub fn remove_half_made(dir: &Path, created_dir: bool) {
    for p in CA_ENTRIES {
        let path = dir.join(p);
        let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
    }
    if created_dir {
        let _ = fs::remove_dir(dir);
    }
}

/// Write `ca-bundle.pem` from the three CA certificates in `dir` (at `init`, and
/// when a backup is restored: the bundle is derived, never backed up).
pub fn write_bundle(dir: &Path) -> Result<()> {
    let mut pem = String::new();
    for kind in CaKind::ALL {
        pem.push_str(&read_ca_file(&dir.join(kind.cert_file()))?);
    }
    fsutil::write_new(&dir.join(BUNDLE_FILE), pem.as_bytes(), 0o644)
}

/// 16 random bytes from the OS CSPRNG, positive, first byte non-zero (so every
/// serial is 16 bytes long and prints as 32 hex digits).
pub fn random_serial() -> Result<[u8; 16]> {
    use ring::rand::SecureRandom;
    let rng = ring::rand::SystemRandom::new();
    let mut s = [0u8; 16];
    loop {
        rng.fill(&mut s)
            .map_err(|_| Error::State("the OS random number generator failed".into()))?;
        s[0] &= 0x7f;
        if s[0] != 0 {
            return Ok(s);
        }
    }
}

fn dn(name: &str, cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, name);
    d.push(DnType::CommonName, cn);
    d
}

fn ca_params(
    key: &KeyPair,
    subject: DistinguishedName,
    pathlen: u8,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(pathlen));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = not_before;
    p.not_after = not_after;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()?));
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key::key_identifier(
        &rcgen::PublicKeyData::subject_public_key_info(key),
    ));
    Ok(p)
}

/// The root's nameConstraints extension (critical, permitted subtrees only):
/// the DNS domains, IP ranges and URI hosts of the effective constraints.
/// rcgen cannot write URI subtrees, so the DER comes from `name_constraints`.
fn name_constraints_extension(constraints: &[Pattern]) -> Result<CustomExtension> {
    let subtrees = constraints
        .iter()
        .map(|p| match p {
            Pattern::Dns(d) => Ok(Subtree::Dns(d.clone())),
            Pattern::Ip { net, prefix } => Ok(Subtree::Ip {
                net: *net,
                prefix: *prefix,
            }),
            Pattern::UriHost(h) => Ok(Subtree::UriHost(h.clone())),
            Pattern::UriHostUnder(d) => Ok(Subtree::UriHost(format!(".{d}"))),
            other => Err(Error::State(format!(
                "the name constraint `{other}` cannot be written into a root"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut ext = CustomExtension::from_oid_content(
        OID_NAME_CONSTRAINTS,
        name_constraints::encode_permitted(&subtrees),
    );
    ext.set_criticality(true);
    Ok(ext)
}

/// id-ce-nameConstraints (2.5.29.30).
const OID_NAME_CONSTRAINTS: &[u64] = &[2, 5, 29, 30];

/// Create the hierarchy, the profiles and the store directory in `dir`.
/// Refuses (exit 3) a directory that already holds a CA; on failure removes what
/// it created, so a half-made CA never stays behind.
pub fn init(dir: &Path, opts: &InitOptions, now: OffsetDateTime) -> Result<Ca> {
    init_protected(dir, opts, None, now)
}

/// `init`, with the CA keys encrypted under `passphrase` when one is given
/// (`init --encrypt`; PKCS#8 PBES2, see `key`).
pub fn init_protected(
    dir: &Path,
    opts: &InitOptions,
    passphrase: Option<&Passphrase>,
    now: OffsetDateTime,
) -> Result<Ca> {
    refuse_existing(dir, "refusing to touch it")?;
    let name = crate::names::check_dn_value("CA name", &opts.name).map_err(Error::Usage)?;
    if let Some(p) = passphrase {
        if p.as_bytes().len() < key::MIN_PASSPHRASE {
            return Err(Error::Usage(format!(
                "the passphrase is too short to protect CA keys (at least {} characters)",
                key::MIN_PASSPHRASE
            )));
        }
    }
    let constraints = effective_constraints(
        &opts.permit_dns,
        &opts.permit_ip,
        &opts.permit_uri,
        |key, value, why| {
            Error::Usage(format!(
                "--{} `{}` {why}",
                key.replace('_', "-"),
                printable(value)
            ))
        },
    )?;

    let mut ca = create_ca_dir(dir, "refusing to touch it", |staging| {
        build(staging, opts, passphrase, &name, &constraints, now)
    })?;
    ca.dir = dir.to_path_buf();
    Ok(ca)
}

fn build(
    dir: &Path,
    opts: &InitOptions,
    passphrase: Option<&Passphrase>,
    name: &str,
    constraints: &[Pattern],
    now: OffsetDateTime,
) -> Result<Ca> {
    let private = dir.join("private");
    for (sub, mode) in [("private", 0o700), ("profiles", 0o750), ("crl", 0o750)] {
        let d = dir.join(sub);
        fsutil::create_dir_mode(&d, mode).at(&d)?;
    }
    let now = now.replace_nanosecond(0).unwrap_or(now);

    let root_key = key::generate(opts.key_type)?;
    let mut root = ca_params(
        &root_key,
        dn(name, &format!("{name} Root CA")),
        1,
        now,
        now + time::Duration::days(365 * ROOT_YEARS),
    )?;
    if !constraints.is_empty() {
        root.custom_extensions
            .push(name_constraints_extension(constraints)?);
    }
    let root_cert = root
        .self_signed(&root_key)
        .map_err(|e| Error::State(format!("cannot sign the root: {e}")))?;
    let root_issuer = Issuer::new(root, root_key);
    let pass = passphrase;

    let mut files: Vec<(PathBuf, Zeroizing<Vec<u8>>, u32)> = vec![
        (
            dir.join("root.pem"),
            Zeroizing::new(root_cert.pem().into_bytes()),
            0o644,
        ),
        (
            private.join(CaKind::Root.key_file()),
            Zeroizing::new(
                key::protected_pem(root_issuer.key(), pass)?
                    .as_bytes()
                    .to_vec(),
            ),
            0o600,
        ),
    ];
    for (kind, eku, label) in [
        (
            CaKind::Device,
            ExtendedKeyUsagePurpose::ServerAuth,
            "Device Issuing CA",
        ),
        (
            CaKind::Entity,
            ExtendedKeyUsagePurpose::ClientAuth,
            "Entity Issuing CA",
        ),
    ] {
        let mut k = key::generate(opts.key_type)?;
        let mut p = ca_params(
            &k,
            dn(name, &format!("{name} {label}")),
            0,
            now,
            now + time::Duration::days(365 * ISSUING_YEARS),
        )?;
        p.extended_key_usages = vec![eku];
        let cert = p
            .signed_by(&k, &root_issuer)
            .map_err(|e| Error::State(format!("cannot sign the {} CA: {e}", kind.as_str())))?;
        files.push((
            dir.join(kind.cert_file()),
            Zeroizing::new(cert.pem().into_bytes()),
            0o644,
        ));
        files.push((
            private.join(kind.key_file()),
            Zeroizing::new(key::protected_pem(&k, pass)?.as_bytes().to_vec()),
            0o600,
        ));
        k.zeroize();
    }
    for (path, data, mode) in &files {
        fsutil::write_new(path, data, *mode)?;
    }
    for (n, text) in profile::BUILTIN {
        let path = dir.join("profiles").join(format!("{n}.toml"));
        fsutil::write_new(&path, text.as_bytes(), 0o644)?;
    }
    write_bundle(dir)?;
    let config = CaConfig {
        name: name.to_string(),
        key_type: opts.key_type,
        // The canonical forms, so ca.toml reads back as what the root carries.
        permit_dns: constraints
            .iter()
            .filter(|p| matches!(p, Pattern::Dns(_)))
            .map(Pattern::as_text)
            .collect(),
        permit_ip: constraints
            .iter()
            .filter(|p| matches!(p, Pattern::Ip { .. }))
            .map(Pattern::as_text)
            .collect(),
        permit_uri: if opts.permit_uri.is_empty() {
            vec![]
        } else {
            constraints
                .iter()
                .filter_map(|p| match p {
                    Pattern::UriHost(h) => Some(h.clone()),
                    Pattern::UriHostUnder(d) => Some(format!(".{d}")),
                    _ => None,
                })
                .collect()
        },
        created: now,
        encrypted_keys: passphrase.is_some(),
    };
    // The store, made only here (and by `restore`), records which CA it belongs to.
    crate::store::Store::create(dir, &key_ids(dir)?)?;
    let text = toml::to_string(&config).map_err(|e| Error::State(e.to_string()))?;
    fsutil::write_new(&dir.join(CONFIG_FILE), text.as_bytes(), 0o644)?;
    fsutil::sync_dir(dir)?;
    Ok(Ca {
        dir: dir.to_path_buf(),
        config,
        passphrase: passphrase.cloned(),
        passphrase_source: None,
    })
}

/// For the unit tests of every module: a P-256 CA without name constraints in
/// `dir/ca`, and its store.
#[cfg(test)]
pub(crate) fn test_ca(dir: &Path, now: OffsetDateTime) -> (Ca, crate::store::Store) {
    let opts = InitOptions {
        name: "T".into(),
        key_type: KeyType::EcdsaP256,
        permit_dns: vec![],
        permit_ip: vec![],
        permit_uri: vec![],
    };
    let ca = init(&dir.join("ca"), &opts, now).unwrap();
    let store = crate::store::Store::open(&ca.dir, std::time::Duration::from_secs(5)).unwrap();
    (ca, store)
}

#[cfg(test)]
mod tests {
    use super::*;
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
