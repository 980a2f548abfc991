//! `ca roll`: a new generation of a CA.
//!
//! An issuing CA (device or entity) gets a new key and certificate signed by
//! the current root. The root gets a new key and a self-signed certificate
//! with the same subject (RFC 4210 §4.4 root key update), two link
//! certificates (the new root's name and key signed by the old root, and the
//! old root's signed by the new one: self-issued, so they do not count against
//! the old root's path length), and new generations of both issuing CAs under
//! it.
//!
//! The order makes a crash harmless: the new files are written under the new
//! generation's names (a leftover of an interrupted roll is replaced), then the
//! store records the new key ids with a `roll` audit entry and is flushed, then
//! `ca.toml` names the new generation (the commit point), then the bundle is
//! rewritten. Until `ca.toml` changes, the CA opens and issues as before.

use std::path::PathBuf;

use rcgen::{Issuer, KeyPair};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::build::{
    ca_params, dn, issuing_ca_params, name_constraints_extension, ISSUING_YEARS, ROOT_YEARS,
};
use super::layout::{link_file, rewrite_bundle, CaId, CaKind, CONFIG_FILE, MAX_GENERATION};
use super::unlock::read_passphrase;
use super::{Ca, CaGeneration};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::keypair::{self, Passphrase};
use crate::profile::Validity;
use crate::role::Role;
use crate::store::{CaKeyIds, Store};

/// What `ca roll` is asked for.
#[derive(Debug, Clone, Default)]
pub struct RollOptions {
    /// The new certificates' validity (`--validity`); default what `init`
    /// gives (20 years for a root, 10 for an issuing CA), an issuing CA's
    /// clipped to its root's notAfter.
    pub validity: Option<Validity>,
}

/// What a roll made.
#[derive(Debug)]
pub struct Rolled {
    /// The CA asked for.
    pub kind: CaKind,
    /// The generations that were current before (the root, then the issuing
    /// CAs rolled with it).
    pub old: Vec<CaGeneration>,
    /// The new current generations, in the same order.
    pub new: Vec<CaGeneration>,
    /// The link certificates written (a root roll).
    pub links: Vec<PathBuf>,
    /// Profiles whose `crl_url` the old and the new generation would share
    /// (it does not end in `<kind>.crl`, so it is not rewritten per generation).
    pub shared_crl_urls: Vec<String>,
    /// The CA reopened at its new generations.
    pub ca: Ca,
}

/// A new file of the roll: path, content, mode.
type NewFile = (PathBuf, Zeroizing<Vec<u8>>, u32);

/// Roll `kind`: see the module doc. `store` must be the CA's store, held by
/// the caller (so `serve` is not running).
pub fn roll(
    ca: &Ca,
    store: &Store,
    kind: CaKind,
    opts: &RollOptions,
    now: OffsetDateTime,
) -> Result<Rolled> {
    let now = now.replace_nanosecond(0).unwrap_or(now);
    if ca.config.external_root {
        // The issuing CAs are signed by a root whose key mtlsca never holds.
        return Err(Error::State(format!(
            "the {} CA cannot be rolled here: this CA's root is external (`init --external-root`), and only its owner can sign a new {}; make a new CA with `mtlsca init --external-root` and have the root sign its requests",
            kind.as_str(),
            if kind == CaKind::Root { "root" } else { "issuing CA" }
        )));
    }
    let name = ca.config.name.clone();
    let pass = ca.new_key_passphrase()?;
    let mut files: Vec<NewFile> = Vec::new();
    let mut links = Vec::new();
    let mut added = CaKeyIds::new();
    let mut old = Vec::new();
    let mut new_ids = Vec::new();
    let mut generations = ca.config.generation;

    let old_root = ca.signing_ca(CaKind::Root)?;
    let next = |id: CaId| -> Result<CaId> {
        if id.generation >= MAX_GENERATION {
            return Err(Error::State(format!(
                "{id} is generation {MAX_GENERATION}, the last one a CA name can carry"
            )));
        }
        Ok(CaId::new(id.kind, id.generation + 1))
    };

    // The issuer of the new issuing generations: the current root, or the new one.
    let new_root_issuer: Issuer<'static, KeyPair>;
    let (issuing_kinds, root_issuer, root_not_after): (Vec<CaKind>, &Issuer<'_, KeyPair>, _) =
        if kind == CaKind::Root {
            let old_id = ca.current(CaKind::Root);
            let new_id = next(old_id)?;
            old.push(ca.generation(old_id)?);
            let key = keypair::generate(ca.config.key_type)?;
            let not_after = now
                + opts
                    .validity
                    .map_or(time::Duration::days(365 * ROOT_YEARS), |v| v.duration());
            let constraints = ca.config.constraints()?;
            let params =
                |key: &KeyPair, not_after: OffsetDateTime| -> Result<rcgen::CertificateParams> {
                    let mut p = ca_params(
                        key,
                        dn(&name, &format!("{name} Root CA")),
                        1,
                        now,
                        not_after,
                    )?;
                    if !constraints.is_empty() {
                        p.custom_extensions
                            .push(name_constraints_extension(&constraints)?);
                    }
                    Ok(p)
                };
            let p = params(&key, not_after)?;
            let cert = p
                .self_signed(&key)
                .map_err(|e| Error::State(format!("cannot sign the new root: {e}")))?;
            if subject_of(cert.der())? != old_root.subject_der {
                return Err(Error::State(format!(
                    "the new root's subject would differ from {}'s: a root roll keeps the root's name (the link certificates rely on it)",
                    old_id.cert_file()
                )));
            }
            new_generation(
                ca,
                new_id,
                cert.pem(),
                &key,
                pass.as_ref(),
                &mut files,
                &mut added,
            )?;
            // The link certificates, while the old root is valid.
            if old_root.not_after > now {
                let link_not_after = not_after.min(old_root.not_after);
                let new_by_old = params(&key, link_not_after)?
                    .signed_by(&key, &old_root.issuer)
                    .map_err(|e| Error::State(format!("cannot sign a link certificate: {e}")))?;
                let new_issuer = Issuer::new(params(&key, not_after)?, key);
                let old_key = old_root.issuer.key();
                let old_by_new = params(old_key, old_root.not_after.min(not_after))?
                    .signed_by(old_key, &new_issuer)
                    .map_err(|e| Error::State(format!("cannot sign a link certificate: {e}")))?;
                for (file, cert) in [
                    (link_file(new_id.generation, old_id.generation), new_by_old),
                    (link_file(old_id.generation, new_id.generation), old_by_new),
                ] {
                    let path = ca.dir.join(file);
                    files.push((path.clone(), pem_bytes(cert.pem()), 0o644));
                    links.push(path);
                }
                new_root_issuer = new_issuer;
            } else {
                new_root_issuer = Issuer::new(params(&key, not_after)?, key);
            }
            generations.set(CaKind::Root, new_id.generation);
            new_ids.push(new_id);
            (
                vec![CaKind::Device, CaKind::Entity],
                &new_root_issuer,
                not_after,
            )
        } else {
            if old_root.not_after <= now {
                return Err(Error::State(format!(
                    "the root ({}) expired on {}: it cannot sign a new {} CA; roll the root first with `mtlsca ca roll root`",
                    ca.current(CaKind::Root),
                    crate::timefmt::date(old_root.not_after),
                    kind.as_str()
                )));
            }
            (vec![kind], &old_root.issuer, old_root.not_after)
        };

    for k in issuing_kinds {
        let old_id = ca.current(k);
        let new_id = next(old_id)?;
        old.push(ca.generation(old_id)?);
        let mut key = keypair::generate(ca.config.key_type)?;
        let wanted = now
            + opts
                .validity
                .filter(|_| kind != CaKind::Root)
                .map_or(time::Duration::days(365 * ISSUING_YEARS), |v| v.duration());
        let p = issuing_ca_params(&key, &name, new_id, now, wanted.min(root_not_after))?;
        let cert = p
            .signed_by(&key, root_issuer)
            .map_err(|e| Error::State(format!("cannot sign the new {} CA: {e}", k.as_str())))?;
        new_generation(
            ca,
            new_id,
            cert.pem(),
            &key,
            pass.as_ref(),
            &mut files,
            &mut added,
        )?;
        use zeroize::Zeroize;
        key.zeroize();
        generations.set(k, new_id.generation);
        new_ids.push(new_id);
    }

    // 1. The files, each whole and durable (a leftover of an interrupted roll is replaced).
    for (path, data, mode) in &files {
        fsutil::write_atomic(path, data, *mode)?;
    }
    fsutil::sync_dir(&ca.dir.join("private"))?;
    fsutil::sync_dir(&ca.dir)?;

    // 2. The store learns the new key ids, with the audit entry.
    let detail = old
        .iter()
        .zip(&new_ids)
        .map(|(o, n)| {
            format!(
                "{} key id {} (notAfter {}) -> {} key id {}",
                o.id,
                crate::hex::encode(&o.key_id),
                crate::timefmt::rfc3339(o.not_after),
                n,
                added.get(&n.name()).map_or("", String::as_str),
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    store.record_roll(&added, &detail, now)?;
    store.flush()?;

    // 3. The commit point: ca.toml names the new generations.
    let mut config = ca.config.clone();
    config.generation = generations;
    let text = toml::to_string(&config).map_err(|e| Error::State(e.to_string()))?;
    fsutil::write_atomic(&ca.dir.join(CONFIG_FILE), text.as_bytes(), 0o644)?;
    fsutil::sync_dir(&ca.dir)?;
    let mut rolled_ca = ca.clone();
    rolled_ca.config = config;

    // 4. The bundle follows.
    rewrite_bundle(&ca.dir, now)?;

    let new = new_ids
        .iter()
        .map(|id| rolled_ca.generation(*id))
        .collect::<Result<Vec<_>>>()?;
    let shared_crl_urls = shared_crl_urls(&rolled_ca, &new_ids)?;
    Ok(Rolled {
        kind,
        old,
        new,
        links,
        shared_crl_urls,
        ca: rolled_ca,
    })
}

/// The profiles of the rolled issuing CAs' roles whose `crl_url` stays the same
/// for the new generation (see [`crl_url_for`]).
fn shared_crl_urls(ca: &Ca, new_ids: &[CaId]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in ca.profile_names()? {
        let Ok(p) = ca.profile(&name) else { continue };
        let Some(url) = &p.crl_url else { continue };
        let kind = CaKind::for_role(p.role);
        if let Some(id) = new_ids.iter().find(|id| id.kind == kind) {
            if crl_url_for(url, *id) == *url {
                out.push(name);
            }
        }
    }
    Ok(out)
}

/// The CRL distribution point a leaf signed by generation `id` carries for a
/// profile's `crl_url`: when the URL's last path segment is `<kind>.crl` (the
/// layout `serve --publish-listen` serves), generation g ≥ 2 puts
/// `<kind>-g.crl` in its place, so each generation's leaves point at their
/// own CA's CRL; any other URL is used as given.
pub fn crl_url_for(url: &str, id: CaId) -> String {
    if id.generation <= 1 || url.contains(['?', '#']) {
        return url.to_string();
    }
    match url.rsplit_once('/') {
        Some((head, last)) if last == format!("{}.crl", id.kind.as_str()) => {
            format!("{head}/{}.crl", id.name())
        }
        _ => url.to_string(),
    }
}

/// The rollover window of a role's issuing CA by default: the longest
/// `validity.max` of the CA's profiles of that role (a leaf asked for then
/// still fits).
fn longest_max_validity(ca: &Ca, role: Role) -> Result<Option<Validity>> {
    let mut best: Option<Validity> = None;
    for name in ca.profile_names()? {
        if let Ok(p) = ca.profile(&name) {
            if p.role == role && best.is_none_or(|b| p.max_validity > b) {
                best = Some(p.max_validity);
            }
        }
    }
    Ok(best)
}

impl Ca {
    /// How long before a CA's notAfter it should be rolled: `[rollover]` in
    /// `ca.toml`, else for an issuing CA the longest `validity.max` of its
    /// role's profiles, for the root the issuing CAs' lifetime.
    pub fn rollover_window(&self, kind: CaKind) -> Result<Validity> {
        if let Some(v) = self.config.rollover.of(kind)? {
            return Ok(v);
        }
        Ok(match kind {
            CaKind::Root => Validity(365 * 86_400 * ISSUING_YEARS),
            CaKind::Device => longest_max_validity(self, Role::Device)?.unwrap_or(Validity(0)),
            CaKind::Entity => longest_max_validity(self, Role::Entity)?.unwrap_or(Validity(0)),
        })
    }

    /// The current CAs with less than their rollover window left at `now`
    /// (the expired ones included).
    pub fn rollover_due(&self, now: OffsetDateTime) -> Result<Vec<RolloverDue>> {
        let mut out = Vec::new();
        for kind in CaKind::ALL {
            let g = self.generation(self.current(kind))?;
            let window = self.rollover_window(kind)?;
            if g.not_after - now < window.duration() {
                out.push(RolloverDue {
                    days_left: (g.not_after - now).whole_days(),
                    window,
                    generation: g,
                });
            }
        }
        Ok(out)
    }

    /// The passphrase a new CA key is encrypted with: the CA's own, when its
    /// keys are encrypted.
    fn new_key_passphrase(&self) -> Result<Option<Passphrase>> {
        if !self.config.encrypted_keys {
            return Ok(None);
        }
        if let Some(p) = &self.passphrase {
            return Ok(Some(p.clone()));
        }
        let p = match &self.passphrase_source {
            Some(src) => read_passphrase(src)?,
            None => None,
        };
        p.map(Some).ok_or_else(|| {
            Error::State(
                "this CA's keys are encrypted: give their passphrase (--passphrase-file, or $MTLSCA_PASSPHRASE) to encrypt the new key with it".into(),
            )
        })
    }
}

/// A current CA whose rollover window is reached.
#[derive(Debug, Clone)]
pub struct RolloverDue {
    /// The CA generation.
    pub generation: CaGeneration,
    /// Whole days left until its notAfter (negative once expired).
    pub days_left: i64,
    /// Its rollover window.
    pub window: Validity,
}

impl RolloverDue {
    /// The warning `store check` and `list` print.
    pub fn message(&self) -> String {
        let id = self.generation.id;
        let when = crate::timefmt::rfc3339(self.generation.not_after);
        if self.days_left < 0 || self.generation.not_after <= OffsetDateTime::UNIX_EPOCH {
            format!(
                "the {} CA ({id}) expired on {when}: roll it with `mtlsca ca roll {}`",
                id.kind.as_str(),
                id.kind.as_str()
            )
        } else {
            format!(
                "the {} CA ({id}) expires on {when}, in {} days (less than its rollover window of {}): roll it with `mtlsca ca roll {}`",
                id.kind.as_str(),
                self.days_left,
                self.window,
                id.kind.as_str()
            )
        }
    }
}

/// A new generation's two files (its certificate, its key under the CA's
/// passphrase if any) to write, and its key id for the store.
fn new_generation(
    ca: &Ca,
    id: CaId,
    cert_pem: String,
    key: &KeyPair,
    pass: Option<&Passphrase>,
    files: &mut Vec<NewFile>,
    added: &mut CaKeyIds,
) -> Result<()> {
    files.push((ca.dir.join(id.cert_file()), pem_bytes(cert_pem), 0o644));
    files.push((
        ca.key_path_of(id),
        Zeroizing::new(keypair::protected_pem(key, pass)?.as_bytes().to_vec()),
        0o600,
    ));
    added.insert(id.name(), crate::hex::encode(&key_id_of(key)));
    Ok(())
}

fn pem_bytes(pem: String) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(pem.into_bytes())
}

fn key_id_of(key: &KeyPair) -> Vec<u8> {
    keypair::key_identifier(&rcgen::PublicKeyData::subject_public_key_info(key))
}

fn subject_of(der: &[u8]) -> Result<Vec<u8>> {
    let (_, x509) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::State(format!("cannot read back a new certificate: {e}")))?;
    Ok(x509.tbs_certificate.subject.as_raw().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files_of_generations() {
        let d2 = CaId::new(CaKind::Device, 2);
        assert_eq!(d2.name(), "device-2");
        assert_eq!(d2.cert_file(), "device-ca-2.pem");
        assert_eq!(d2.key_file(), "device-ca-2.key");
        let r1 = CaId::first(CaKind::Root);
        assert_eq!(
            (r1.name().as_str(), r1.cert_file().as_str()),
            ("root", "root.pem")
        );
        assert_eq!(
            CaId::parse("entity-12"),
            Some(CaId::new(CaKind::Entity, 12))
        );
        assert_eq!(CaId::parse("root"), Some(r1));
        for bad in [
            "device-1",
            "device-02",
            "device-",
            "device-+2",
            "device-0",
            "dev-2",
            "device-999999",
            "device-2/",
            "",
        ] {
            assert_eq!(CaId::parse(bad), None, "{bad}");
        }
        assert_eq!(
            CaId::parse_arg("device-1"),
            Some(CaId::first(CaKind::Device))
        );
    }

    #[test]
    fn crl_urls_follow_the_generation_only_in_the_published_layout() {
        let d2 = CaId::new(CaKind::Device, 2);
        assert_eq!(
            crl_url_for("http://ca.example/crl/device.crl", d2),
            "http://ca.example/crl/device-2.crl"
        );
        assert_eq!(
            crl_url_for(
                "http://ca.example/crl/device.crl",
                CaId::first(CaKind::Device)
            ),
            "http://ca.example/crl/device.crl"
        );
        assert_eq!(
            crl_url_for("http://ca.example/crl/entity.crl", d2),
            "http://ca.example/crl/entity.crl"
        );
        assert_eq!(
            crl_url_for("http://ca.example/my.crl", d2),
            "http://ca.example/my.crl"
        );
        assert_eq!(
            crl_url_for("http://ca.example/device.crl?x", d2),
            "http://ca.example/device.crl?x"
        );
    }

    #[test]
    fn an_issuing_roll_commits_at_ca_toml_and_the_store_knows_both() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = super::super::build::test_ca(dir.path(), now);
        let rolled = roll(&ca, &store, CaKind::Device, &RollOptions::default(), now).unwrap();
        assert_eq!(rolled.new[0].id, CaId::new(CaKind::Device, 2));
        assert!(
            rolled.new[0].subject.contains("Device Issuing CA 2"),
            "{}",
            rolled.new[0].subject
        );
        let reopened = Ca::open(&ca.dir).unwrap();
        assert_eq!(
            reopened.current(CaKind::Device),
            CaId::new(CaKind::Device, 2)
        );
        assert_eq!(
            reopened.current(CaKind::Entity),
            CaId::first(CaKind::Entity)
        );
        let signing = reopened.signing_ca(CaKind::Device).unwrap();
        assert_eq!(signing.generation, 2);
        let owner = store.owner().unwrap().unwrap();
        assert!(owner.contains_key("device") && owner.contains_key("device-2"));
        drop(store);
        Store::open(&ca.dir, std::time::Duration::from_secs(5)).unwrap();
        let bundle = std::fs::read_to_string(ca.dir.join(super::super::BUNDLE_FILE)).unwrap();
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 4);
    }

    #[test]
    fn a_root_roll_keeps_the_name_and_links_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = super::super::build::test_ca(dir.path(), now);
        let rolled = roll(&ca, &store, CaKind::Root, &RollOptions::default(), now).unwrap();
        assert_eq!(rolled.new.len(), 3);
        assert_eq!(rolled.links.len(), 2);
        assert_eq!(rolled.old[0].subject, rolled.new[0].subject);
        assert_ne!(rolled.old[0].key_id, rolled.new[0].key_id);
        let c = &rolled.ca;
        assert_eq!(c.current(CaKind::Entity).generation, 2);
        let (_, link) = {
            let t = std::fs::read_to_string(c.dir.join("root-2-by-1.pem")).unwrap();
            let der = pem::parse(t).unwrap().into_contents();
            let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
            (
                0,
                (x.public_key().raw.to_vec(), x.issuer().as_raw().to_vec()),
            )
        };
        let root2 = c.generation(c.current(CaKind::Root)).unwrap();
        let (_, r2) = x509_parser::parse_x509_certificate(&root2.cert_der).unwrap();
        assert_eq!(link.0, r2.public_key().raw);
        assert_eq!(link.1, r2.subject().as_raw());
    }
}
