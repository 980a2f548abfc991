//! Building the hierarchy: the root and the two issuing CAs, their keys and
//! certificates (`init`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

use super::config::effective_constraints;
use super::layout::{key_ids, write_bundle, CaKind, CONFIG_FILE};
use super::staging::{create_ca_dir, refuse_existing};
use super::{Ca, CaConfig};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::key::KeyType;
use crate::keypair::{self, Passphrase};
use crate::name_constraints::{self, Subtree};
use crate::names::{printable, Pattern};
use crate::profile::{self};

/// How long a root lives (years of 365 days) when `init` or `ca roll root` makes it.
pub const ROOT_YEARS: i64 = 20;
/// How long an issuing CA lives (years of 365 days) when `init` or `ca roll` makes it.
pub const ISSUING_YEARS: i64 = 10;

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

pub(super) fn dn(name: &str, cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, name);
    d.push(DnType::CommonName, cn);
    d
}

pub(super) fn ca_params(
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
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(keypair::key_identifier(
        &rcgen::PublicKeyData::subject_public_key_info(key),
    ));
    Ok(p)
}

/// The root's nameConstraints extension (critical, permitted subtrees only):
/// the DNS domains, IP ranges and URI hosts of the effective constraints.
/// rcgen cannot write URI subtrees, so the DER comes from `name_constraints`.
pub(super) fn name_constraints_extension(constraints: &[Pattern]) -> Result<CustomExtension> {
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

/// The certificate of an issuing CA generation (`id.kind` device or entity):
/// pathlen 0, keyCertSign and cRLSign, the EKU of its role; subject
/// `O=<name>, CN=<name> Device Issuing CA` for generation 1 and `… Device
/// Issuing CA <g>` after, so no two generations share an issuer name (their
/// CRLs would).
pub(super) fn issuing_ca_params(
    key: &KeyPair,
    name: &str,
    id: super::CaId,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams> {
    let (eku, label) = match id.kind {
        CaKind::Device => (ExtendedKeyUsagePurpose::ServerAuth, "Device Issuing CA"),
        CaKind::Entity => (ExtendedKeyUsagePurpose::ClientAuth, "Entity Issuing CA"),
        CaKind::Root => {
            return Err(Error::State("the root is not an issuing CA".into()));
        }
    };
    let cn = if id.generation <= 1 {
        format!("{name} {label}")
    } else {
        format!("{name} {label} {}", id.generation)
    };
    let mut p = ca_params(key, dn(name, &cn), 0, not_before, not_after)?;
    p.extended_key_usages = vec![eku];
    Ok(p)
}

/// id-ce-nameConstraints (2.5.29.30).
const OID_NAME_CONSTRAINTS: &[u64] = &[2, 5, 29, 30];

/// Create the hierarchy, the profiles and the store directory in `dir`.
/// Refuses (exit 3) a directory that already holds a CA; on failure removes what
/// it created, so a half-made CA never stays behind.
pub fn init(dir: &Path, opts: &InitOptions, now: OffsetDateTime) -> Result<Ca> {
    init_protected(dir, opts, None, now)
}

/// What every `init` checks before it makes anything (exit 2, or 3 for a
/// directory that holds a CA): the directory, the CA name as a DN value, the
/// passphrase's length, the constraints. The name and the constraints.
pub(super) fn check_init(
    dir: &Path,
    opts: &InitOptions,
    passphrase: Option<&Passphrase>,
) -> Result<(String, Vec<Pattern>)> {
    refuse_existing(dir, "refusing to touch it")?;
    let name = crate::names::check_dn_value("CA name", &opts.name).map_err(Error::Usage)?;
    if let Some(p) = passphrase {
        if p.as_bytes().len() < keypair::MIN_PASSPHRASE {
            return Err(Error::Usage(format!(
                "the passphrase is too short to protect CA keys (at least {} characters)",
                keypair::MIN_PASSPHRASE
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
    Ok((name, constraints))
}

/// `init`, with the CA keys encrypted under `passphrase` when one is given
/// (`init --encrypt`; PKCS#8 PBES2, see `key`).
pub fn init_protected(
    dir: &Path,
    opts: &InitOptions,
    passphrase: Option<&Passphrase>,
    now: OffsetDateTime,
) -> Result<Ca> {
    let (name, constraints) = check_init(dir, opts, passphrase)?;

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

    let root_key = keypair::generate(opts.key_type)?;
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
                keypair::protected_pem(root_issuer.key(), pass)?
                    .as_bytes()
                    .to_vec(),
            ),
            0o600,
        ),
    ];
    for kind in [CaKind::Device, CaKind::Entity] {
        let mut k = keypair::generate(opts.key_type)?;
        let p = issuing_ca_params(
            &k,
            name,
            super::CaId::first(kind),
            now,
            now + time::Duration::days(365 * ISSUING_YEARS),
        )?;
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
            Zeroizing::new(keypair::protected_pem(&k, pass)?.as_bytes().to_vec()),
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
        generation: Default::default(),
        rollover: Default::default(),
        external_root: false,
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
