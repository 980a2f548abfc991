//! `ca install`: the second half of a CA under an external root. The
//! certificates the root's owner signed for the two issuing CAs of a pending
//! CA directory (`ca::init_external`) are checked — each for the key kept in
//! `private/`, a CA with pathlen 0 that may sign certificates and CRLs, the
//! EKU of its role exactly, valid now, and a path to the root in `root.pem`,
//! validated by `verify` — and the CA is
//! completed as `init` completes one: profiles, store, bundle, the issuing
//! CAs' CRLs, and `ca.toml` last. Nothing is written before every check passed;
//! a failed run leaves the CA pending and a second run starts over.
//!
//! The name constraints the root and the issuing CA certificates carry become the CA's own (intersected with the
//! `--permit-*` given at init), so policy refuses a name outside them before
//! anything is signed. Constraints policy cannot hold (excluded subtrees,
//! directoryName, email, other name forms) are refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use zeroize::Zeroizing;

use crate::ca::{
    self, check_key_permissions, csr_file, read_pending, read_root_copy, write_bundle, Ca,
    CaConfig, CaKind, PassphraseSource, BUNDLE_FILE, CONFIG_FILE, ISSUING_KINDS, PENDING_FILE,
};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::keypair;
use crate::names::{printable, Pattern};
use crate::role::Role;
use crate::store::Store;
use crate::verify::{Trust, Usage, VerifyOptions};

/// What `ca install` is given: PEM (or DER) bytes and how to name each in messages.
#[derive(Debug, Clone)]
pub struct InstallInput {
    /// The device issuing CA's certificate, and its name in messages.
    pub device: (Vec<u8>, String),
    /// The entity issuing CA's certificate, and its name in messages.
    pub entity: (Vec<u8>, String),
}

/// What `ca install` did.
#[derive(Debug)]
pub struct Installed {
    /// The complete CA.
    pub ca: Ca,
    /// The name constraints in effect (`Pattern::as_text`).
    pub constraints: Vec<String>,
    /// The CRLs published (`crl/device.crl`, `crl/entity.crl`).
    pub crls: Vec<PathBuf>,
}

/// How long the first CRLs of the issuing CAs are valid (as `mtlsca crl`'s default).
const FIRST_CRL: time::Duration = time::Duration::days(7);

/// Check the issuing CA certificates and complete the pending CA in `dir`.
/// A refusal (exit 1) names the file and what is wrong; nothing is written
/// then. `passphrase` unlocks encrypted keys.
pub fn install(
    dir: &Path,
    input: &InstallInput,
    passphrase: Option<&PassphraseSource>,
    lock_timeout: Duration,
    now: OffsetDateTime,
) -> Result<Installed> {
    let _lock = fsutil::DirLock::acquire(dir, lock_timeout)?;
    let pending = read_pending(dir)?;
    let root_pem = read_root_copy(dir)?;
    let root_der = ca::check_external_root(root_pem.as_bytes(), "root.pem")?;
    let (_, root) = x509_parser::parse_x509_certificate(&root_der)
        .map_err(|e| Error::State(format!("root.pem: {e}")))?;

    let passphrase = match passphrase {
        Some(src) if pending.encrypted_keys => ca::read_passphrase(src)?,
        _ => None,
    };
    let mut certs = Vec::new();
    for kind in ISSUING_KINDS {
        let (bytes, what) = match kind {
            CaKind::Device => &input.device,
            _ => &input.entity,
        };
        let found = crate::verify::load::certs_from_bytes(bytes, what)?;
        let [der] = found.as_slice() else {
            return Err(Error::input(
                what.as_str(),
                format!(
                    "holds {} certificates; give the {} issuing CA's certificate alone (intermediates go to --chain)",
                    found.len(),
                    kind.as_str()
                ),
            ));
        };
        let der = der.as_ref().to_vec();
        let key_path = dir.join("private").join(kind.key_file());
        check_key_permissions(&dir.join("private"), &key_path)?;
        let key_pem = Zeroizing::new(fsutil::read_bounded_text(&key_path, 256 * 1024, "CA key")?);
        let key = keypair::load_protected_pem(
            &key_pem,
            passphrase.as_ref(),
            &key_path.display().to_string(),
        )?;
        check_issuing(kind, &der, &key, what, &root, now)?;
        check_path(kind, &der, key, what, &root_der, now)?;
        certs.push((kind, der));
    }

    // The constraints of every certificate in the paths, and init's.
    let mut sets: Vec<(String, Vec<Pattern>)> =
        vec![("init's --permit-* options".into(), pending.constraints()?)];
    sets.push((
        "the root (root.pem)".into(),
        constraints_of(&root, "root.pem")?,
    ));
    for (kind, der) in &certs {
        let (_, x) =
            x509_parser::parse_x509_certificate(der).map_err(|e| Error::State(e.to_string()))?;
        let who = format!("the {} issuing CA", kind.as_str());
        sets.push((who.clone(), constraints_of(&x, &who)?));
    }
    let merged = intersect_all(&sets)?;
    let config = CaConfig {
        permit_dns: merged
            .iter()
            .filter(|p| matches!(p, Pattern::Dns(_)))
            .map(Pattern::as_text)
            .collect(),
        permit_ip: merged
            .iter()
            .filter(|p| matches!(p, Pattern::Ip { .. }))
            .map(Pattern::as_text)
            .collect(),
        permit_uri: merged.iter().filter_map(ca::uri_text).collect(),
        external_root: true,
        ..pending
    };
    let constraints = config.constraints()?.iter().map(Pattern::as_text).collect();

    // Every check passed: write. Leftovers of a failed run go first (a pending
    // CA never issued anything).
    for f in [
        CaKind::Device.cert_file(),
        CaKind::Entity.cert_file(),
        BUNDLE_FILE,
    ] {
        remove_if_there(&dir.join(f))?;
    }
    for d in ["profiles", "db", "crl"] {
        let p = dir.join(d);
        if p.exists() {
            std::fs::remove_dir_all(&p).at(&p)?;
        }
    }
    for (kind, der) in &certs {
        let pem = fsutil::pem_lf(&pem::Pem::new("CERTIFICATE", der.clone()));
        fsutil::write_new(&dir.join(kind.cert_file()), pem.as_bytes(), 0o644)?;
    }
    for (sub, mode) in [("profiles", 0o750), ("crl", 0o750)] {
        let d = dir.join(sub);
        fsutil::create_dir_mode(&d, mode).at(&d)?;
    }
    for (n, text) in crate::profile::BUILTIN {
        let path = dir.join("profiles").join(format!("{n}.toml"));
        fsutil::write_new(&path, text.as_bytes(), 0o644)?;
    }
    write_bundle(dir)?;
    let store = Store::create(dir, &ca::key_ids(dir)?)?;
    let mut ca = Ca::assembled(dir, config.clone());
    if let Some(p) = passphrase {
        ca = ca.with_passphrase(p);
    }
    let mut crls = Vec::new();
    for kind in ISSUING_KINDS {
        let signing = ca.signing_ca(kind)?;
        let next = FIRST_CRL.min(signing.not_after - now);
        let path = crate::crl::published_path(&ca, kind);
        crate::crl::publish(&ca, &store, kind, next, now, &path)?;
        crls.push(path);
    }
    store.flush()?;
    drop(store);
    let text = toml::to_string(&config).map_err(|e| Error::State(e.to_string()))?;
    fsutil::write_new(&dir.join(CONFIG_FILE), text.as_bytes(), 0o644)?;
    fsutil::sync_dir(dir)?;
    for f in [
        PENDING_FILE,
        csr_file(CaKind::Device),
        csr_file(CaKind::Entity),
    ] {
        remove_if_there(&dir.join(f))?;
    }
    fsutil::sync_dir(dir)?;
    Ok(Installed {
        ca,
        constraints,
        crls,
    })
}

fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// The checks on one issuing CA certificate that need no path: its key, its
/// basicConstraints, keyUsage and EKU, its validity, its key identifier, and
/// that its issuer is the root (no intermediate between: the chain files mtlsca
/// writes hold the issuing CA alone).
fn check_issuing(
    kind: CaKind,
    der: &[u8],
    key: &rcgen::KeyPair,
    what: &str,
    root: &X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<()> {
    let refuse = |why: String| Err(Error::refused(format!("{what}: {why}")));
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::input(what, format!("not a certificate: {e}")))?;
    let kept = rcgen::PublicKeyData::subject_public_key_info(key);
    if !crate::key::same_public_key(x.public_key().raw, &kept) {
        return refuse(format!(
            "its key is not the {} issuing CA's key kept in private/{} (was it made from {}?)",
            kind.as_str(),
            kind.key_file(),
            csr_file(kind)
        ));
    }
    match x.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => match bc.value.path_len_constraint {
            Some(0) => {}
            other => {
                return refuse(format!(
                    "basicConstraints pathlen is {}; an issuing CA signs leaves only: pathlen:0 expected",
                    other.map_or("absent".to_string(), |n| n.to_string())
                ))
            }
        },
        Ok(_) => return refuse("not a CA certificate (basicConstraints CA:TRUE, pathlen:0 expected)".into()),
        Err(e) => return refuse(format!("basicConstraints: {e}")),
    }
    match x.key_usage() {
        Ok(Some(ku)) if ku.value.key_cert_sign() && ku.value.crl_sign() => {}
        Ok(Some(_)) => {
            return refuse(
                "keyUsage lacks keyCertSign or cRLSign (an issuing CA signs certificates and CRLs)"
                    .into(),
            )
        }
        Ok(None) => return refuse("no keyUsage (keyCertSign, cRLSign expected)".into()),
        Err(e) => return refuse(format!("keyUsage: {e}")),
    }
    let (want, other) = match kind {
        CaKind::Device => ("serverAuth", "clientAuth"),
        _ => ("clientAuth", "serverAuth"),
    };
    match x.extended_key_usage() {
        Ok(Some(eku)) => {
            let e = eku.value;
            let has_want = if kind == CaKind::Device {
                e.server_auth
            } else {
                e.client_auth
            };
            let has_other = if kind == CaKind::Device {
                e.client_auth
            } else {
                e.server_auth
            };
            let extra = e.any
                || e.code_signing
                || e.email_protection
                || e.time_stamping
                || e.ocsp_signing
                || !e.other.is_empty();
            if !has_want || has_other || extra {
                return refuse(format!(
                    "extendedKeyUsage must be {want} alone: the {} issuing CA's certificate constrains what it signs to its role{}",
                    kind.as_str(),
                    if has_other {
                        format!(" ({other} is the other role's)")
                    } else {
                        String::new()
                    }
                ));
            }
        }
        Ok(None) => {
            return refuse(format!(
                "no extendedKeyUsage: the {} issuing CA must carry {want} alone (the draft's EKU constraint)",
                kind.as_str()
            ))
        }
        Err(e) => return refuse(format!("extendedKeyUsage: {e}")),
    }
    let nb = x.validity().not_before.to_datetime();
    let na = x.validity().not_after.to_datetime();
    if now < nb || now > na {
        return refuse(format!(
            "not valid now (valid from {} to {})",
            crate::timefmt::rfc3339(nb),
            crate::timefmt::rfc3339(na)
        ));
    }
    if ca::subject_key_id_of(&x).is_none() {
        return refuse("no subjectKeyIdentifier (CRLs and leaves name their issuer by it)".into());
    }
    let issuer = x.issuer().as_raw();
    if issuer != root.subject().as_raw() {
        return refuse(format!(
            "issued by `{}`, not by the root in root.pem (`{}`); mtlsca's issuing CAs sit directly under the root (an intermediate between them is not supported)",
            printable(&x.issuer().to_string()),
            printable(&root.subject().to_string())
        ));
    }
    Ok(())
}

/// The issuing CA as it will work: a throwaway leaf signed with its key must
/// validate (mtlsca's verifier: rustls-webpki path building, signatures, the
/// role's EKU along the path) to the root alone as trust anchor.
fn check_path(
    kind: CaKind,
    der: &[u8],
    key: rcgen::KeyPair,
    what: &str,
    root_der: &[u8],
    now: OffsetDateTime,
) -> Result<()> {
    let role = match kind {
        CaKind::Device => Role::Device,
        _ => Role::Entity,
    };
    let issuer = rcgen::Issuer::from_ca_cert_der(&der.to_vec().into(), key)
        .map_err(|e| Error::refused(format!("{what}: {e}")))?;
    let probe_key = keypair::generate(crate::key::KeyType::EcdsaP256)?;
    let mut p = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "mtlsca install check");
    p.distinguished_name = dn;
    p.extended_key_usages = ca::issuing_eku(kind).into_iter().collect();
    p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let now_s = now.replace_nanosecond(0).unwrap_or(now);
    p.not_before = now_s - time::Duration::minutes(1);
    p.not_after = now_s + time::Duration::minutes(1);
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&ca::random_serial()?));
    let leaf = p
        .signed_by(&probe_key, &issuer)
        .map_err(|e| Error::refused(format!("{what}: cannot sign with it: {e}")))?;
    let trust = Trust {
        anchors: vec![CertificateDer::from(root_der.to_vec())],
        intermediates: vec![CertificateDer::from(der.to_vec())],
        ..Trust::default()
    };
    let verdict = crate::verify::verify_cert(
        &CertificateDer::from(leaf.der().to_vec()),
        &trust,
        &VerifyOptions {
            usage: Usage::Role(role),
            name: None,
            at: now,
        },
    );
    if !verdict.valid {
        return Err(Error::refused(format!(
            "{what}: a certificate it signs does not validate to the root in root.pem: {}",
            verdict.reasons.join("; ")
        )));
    }
    Ok(())
}

/// The permitted subtrees of a certificate's nameConstraints, as patterns;
/// a refusal for what policy cannot hold.
fn constraints_of(x: &X509Certificate<'_>, who: &str) -> Result<Vec<Pattern>> {
    let nc = match x.name_constraints() {
        Ok(Some(nc)) => nc.value,
        Ok(None) => return Ok(vec![]),
        Err(e) => return Err(Error::refused(format!("{who}: nameConstraints: {e}"))),
    };
    let cannot = |what: String| {
        Err(Error::refused(format!(
            "{who} carries the name constraint {what}, which mtlsca's policy cannot hold (it holds permitted DNS domains, IP ranges and URI hosts); nothing was installed"
        )))
    };
    if let Some(ex) = &nc.excluded_subtrees {
        if !ex.is_empty() {
            let list: Vec<String> = ex.iter().map(|s| describe(&s.base)).collect();
            return cannot(format!("excluded {}", list.join(", ")));
        }
    }
    let mut out = Vec::new();
    for s in nc.permitted_subtrees.iter().flatten() {
        match &s.base {
            GeneralName::DNSName(d) => {
                let d = d.to_ascii_lowercase();
                match Pattern::parse(&d) {
                    Ok(p @ Pattern::Dns(_)) => out.push(p),
                    _ => return cannot(format!("permitted {}", describe(&s.base))),
                }
            }
            GeneralName::IPAddress(bytes) => match ip_subtree(bytes) {
                Some(p) => out.push(p),
                None => return cannot(format!("permitted {}", describe(&s.base))),
            },
            GeneralName::URI(u) => match Pattern::parse_uri_host(u) {
                Ok(p) => out.push(p),
                Err(_) => return cannot(format!("permitted {}", describe(&s.base))),
            },
            other => return cannot(format!("permitted {}", describe(other))),
        }
    }
    Ok(out)
}

fn describe(g: &GeneralName<'_>) -> String {
    match g {
        GeneralName::DNSName(d) => format!("DNS:{}", printable(d)),
        GeneralName::URI(u) => format!("URI:{}", printable(u)),
        GeneralName::RFC822Name(e) => format!("email:{}", printable(e)),
        GeneralName::DirectoryName(n) => format!("dirName:{}", printable(&n.to_string())),
        GeneralName::IPAddress(b) => match ip_subtree(b) {
            Some(p) => format!("IP:{}", p.as_text()),
            None => format!("IP:{}", crate::hex::encode(b)),
        },
        other => format!("{other:?}"),
    }
}

/// An iPAddress subtree (address then mask, 8 or 32 bytes) as an IP range; `None`
/// for a mask that is not a prefix or host bits set.
fn ip_subtree(b: &[u8]) -> Option<Pattern> {
    let half = b.len() / 2;
    if half != 4 && half != 16 {
        return None;
    }
    let (addr, mask) = b.split_at(half);
    let bits: Vec<bool> = mask
        .iter()
        .flat_map(|m| (0..8).rev().map(move |i| m >> i & 1 == 1))
        .collect();
    let prefix = bits.iter().take_while(|b| **b).count();
    if bits[prefix..].iter().any(|b| *b) || addr.iter().zip(mask).any(|(a, m)| a & !m != 0) {
        return None;
    }
    let net: std::net::IpAddr = if half == 4 {
        <[u8; 4]>::try_from(addr).ok()?.into()
    } else {
        <[u8; 16]>::try_from(addr).ok()?.into()
    };
    Pattern::parse(&format!("{net}/{prefix}")).ok()
}

/// Which name kind a pattern constrains (RFC 5280: each kind on its own).
fn kind_of(p: &Pattern) -> u8 {
    match p {
        Pattern::Dns(_) | Pattern::DnsUnder(_) => 0,
        Pattern::Ip { .. } => 1,
        _ => 2,
    }
}

/// Whether every name `a` permits, `b` permits too (same kind).
fn within(a: &Pattern, b: &Pattern) -> bool {
    let under = |x: &str, d: &str| x == d || x.ends_with(&format!(".{d}"));
    match (a, b) {
        (Pattern::Dns(x), Pattern::Dns(d)) => under(x, d),
        (
            Pattern::Ip {
                net: n1,
                prefix: p1,
            },
            Pattern::Ip {
                net: n2,
                prefix: p2,
            },
        ) => p1 >= p2 && masked(*n1, *p2) == Some(*n2),
        (Pattern::UriHost(h), Pattern::UriHost(g)) => h == g,
        (Pattern::UriHost(h), Pattern::UriHostUnder(d)) => h.ends_with(&format!(".{d}")),
        (Pattern::UriHostUnder(x), Pattern::UriHostUnder(d)) => under(x, d),
        _ => false,
    }
}

/// `ip` with all but the first `prefix` bits cleared; `None` past its length.
fn masked(ip: std::net::IpAddr, prefix: u8) -> Option<std::net::IpAddr> {
    match ip {
        std::net::IpAddr::V4(v) => {
            let p = u32::from(prefix);
            (p <= 32).then(|| {
                let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
                std::net::Ipv4Addr::from(u32::from(v) & m).into()
            })
        }
        std::net::IpAddr::V6(v) => {
            let p = u32::from(prefix);
            (p <= 128).then(|| {
                let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
                std::net::Ipv6Addr::from(u128::from(v) & m).into()
            })
        }
    }
}

/// The names every set permits: per name kind, a set without patterns of
/// that kind does not constrain it; two sets that both do permit what lies
/// within a pattern of each. A kind left with nothing is refused (a CA that
/// could issue no name of it cannot be written as constraints).
fn intersect_all(sets: &[(String, Vec<Pattern>)]) -> Result<Vec<Pattern>> {
    let mut out: Vec<Pattern> = Vec::new();
    for kind in 0..3u8 {
        let mut acc: Option<(Vec<Pattern>, Vec<&str>)> = None;
        for (who, set) in sets {
            let mine: Vec<Pattern> = set.iter().filter(|p| kind_of(p) == kind).cloned().collect();
            if mine.is_empty() {
                continue;
            }
            acc = Some(match acc {
                None => (mine, vec![who.as_str()]),
                Some((have, mut whos)) => {
                    let mut next: Vec<Pattern> = Vec::new();
                    for a in &have {
                        for b in &mine {
                            let meet = if within(a, b) {
                                Some(a)
                            } else if within(b, a) {
                                Some(b)
                            } else {
                                None
                            };
                            if let Some(m) = meet {
                                if !next.contains(m) {
                                    next.push(m.clone());
                                }
                            }
                        }
                    }
                    whos.push(who.as_str());
                    if next.is_empty() {
                        return Err(Error::refused(format!(
                            "the name constraints of {} leave no {} name that all of them permit; nothing was installed",
                            whos.join(" and "),
                            ["DNS", "IP", "URI"][kind as usize]
                        )));
                    }
                    (next, whos)
                }
            });
        }
        if let Some((set, _)) = acc {
            out.extend(set);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(v: &[&str]) -> Vec<Pattern> {
        v.iter().map(|s| Pattern::parse(s).unwrap()).collect()
    }

    fn texts(v: &[Pattern]) -> Vec<String> {
        v.iter().map(Pattern::as_text).collect()
    }

    #[test]
    fn constraints_meet_per_kind() {
        let sets = vec![
            ("a".to_string(), pats(&["corp.internal", "10.0.0.0/8"])),
            (
                "b".to_string(),
                pats(&["web.corp.internal", "other.example"]),
            ),
            ("c".to_string(), vec![]),
        ];
        assert_eq!(
            texts(&intersect_all(&sets).unwrap()),
            ["web.corp.internal", "10.0.0.0/8"]
        );
        let sets = vec![
            ("a".to_string(), pats(&["10.0.0.0/8"])),
            ("b".to_string(), pats(&["10.1.0.0/16", "192.168.0.0/16"])),
        ];
        assert_eq!(texts(&intersect_all(&sets).unwrap()), ["10.1.0.0/16"]);
        let sets = vec![
            ("the root".to_string(), pats(&["corp.internal"])),
            ("init".to_string(), pats(&["other.example"])),
        ];
        let e = intersect_all(&sets).unwrap_err().to_string();
        assert!(e.contains("the root and init leave no DNS name"), "{e}");
    }

    #[test]
    fn ip_subtrees_need_a_prefix_mask() {
        assert_eq!(
            ip_subtree(&[10, 0, 0, 0, 255, 0, 0, 0]).unwrap().as_text(),
            "10.0.0.0/8"
        );
        assert!(ip_subtree(&[10, 0, 0, 1, 255, 0, 0, 0]).is_none());
        assert!(ip_subtree(&[10, 0, 0, 0, 255, 0, 255, 0]).is_none());
        assert!(ip_subtree(&[10, 0, 0]).is_none());
    }
}
