//! The issuance engine, one for every front end (`issue`, `sign`, `batch`, and the
//! network front ends to come):
//!
//! ```text
//! request → profile → policy → serial → sign → self-check → record → files
//! ```
//!
//! [`Issuer::issue`] is a batch of one; [`Issuer::issue_all`] runs many requests
//! in chunks, signing on every core. Both go through the same stages:
//!
//! - **stage** (`run.rs`): request id syntax, the profile, leftovers of an
//!   interrupted run completed or removed, a request id recorded before answered
//!   from the store, the output names checked (directory exists, nothing there,
//!   no symbolic link) — all before anything is signed;
//! - **sign** (`sign.rs`): CSR intake (`csr.rs`) or key generation, policy,
//!   serial, rcgen, and the self-check (`check.rs`) that every certificate gets;
//! - **commit** (`run.rs`): the one path that records issued certificates.
//!
//! # Exactly once, with files
//!
//! Nothing leaves the CA unrecorded, and a crash at any point leaves either no
//! certificate or a recorded one whose files can be completed:
//!
//! 1. the key and certificate are written to temporary siblings of their final
//!    names (`.NAME.partial`, key mode 0600) and made durable (an fsync each for
//!    one request; one `syncfs` for a chunk);
//! 2. the certificates are recorded in the store (one transaction: records,
//!    indexes, audit entries) and the store is flushed;
//! 3. the temporary files are linked to their final names (never replacing an
//!    existing file) and the directory is fsynced.
//!
//! Before step 1 of a request, leftovers of an interrupted run for the same output
//! are looked at: temporary files whose certificate is recorded are completed
//! (step 3); temporary files whose certificate is not recorded are removed (the
//! crash came before step 2, so nothing was issued).

mod check;
mod csr;
mod files;
mod run;
mod sign;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::ca::{Ca, CaKind, SigningCa};
use crate::error::{Error, Result};
use crate::key::KeyType;
use crate::names::Pattern;
use crate::policy::RequestedContent;
use crate::profile::Profile;
use crate::rules::{self, Field, Origin, Refusal, Rule};
use crate::store::{Record, Store};

/// What signing needs, shared by the threads of a batch: the issuing CA, the root
/// (for the once-per-process path validation), the CA's name constraints and the
/// time.
#[derive(Clone, Copy)]
pub(crate) struct SignContext<'s> {
    pub signing: &'s SigningCa,
    pub root_der: &'s [u8],
    /// Whether a full path through `signing` was validated in this process.
    pub chain_validated: &'s std::sync::OnceLock<()>,
    pub constraints: &'s [Pattern],
    pub now: OffsetDateTime,
}

pub use csr::{read_checked_csr, read_csr, CheckedCsr, CsrIntake};
pub use files::{Files, Output};
pub use run::{Counts, RunOptions, DEFAULT_CHUNK};
pub use sign::pem_cert;

/// Where a file replaced by a renewal is kept: `NAME.prev`.
pub fn prev_name(p: &std::path::Path) -> std::path::PathBuf {
    files::prev(p)
}

/// The request id the engine gives a renewal of certificate `SERIAL`:
/// `renewal-of:SERIAL`. Being a request id, it makes renewing one certificate
/// twice return the first renewal, and lets a request id be followed to the
/// certificate that currently stands for it ([`Issuer::current`]). The prefix
/// is reserved (rule `request-id-reserved`): a request whose
/// [`IssuanceRequest::replaces`] is not that serial may not use it, whatever
/// front end it comes from.
pub const RENEWAL_PREFIX: &str = "renewal-of:";

/// The request id of a renewal of the certificate `serial`: `renewal-of:SERIAL`.
pub fn renewal_request_id(serial: &str) -> String {
    format!("{RENEWAL_PREFIX}{serial}")
}

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// Generate one (the profile's key type unless given).
    Generate(Option<KeyType>),
    /// A CSR (PEM or DER), whose signature and requests are checked.
    Csr(Vec<u8>),
    /// A CSR checked before (`read_checked_csr`); its requests are judged by
    /// policy like any other's. In-process only: it is not sent to a server.
    CheckedCsr(Box<csr::CheckedCsr>),
}

/// One request for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuanceRequest {
    /// The profile's name.
    pub profile: String,
    /// What is asked for (names, subject, validity); for a CSR, only the validity.
    pub content: RequestedContent,
    /// Where the key comes from.
    pub key: KeySource,
    /// The idempotency key: a request id recorded before returns its certificate.
    pub request_id: Option<String>,
    /// Where the files go.
    pub output: Output,
    /// How the request was made (arguments, a manifest entry): decides how
    /// refusals name their fields. A CSR's own content always reads as the CSR's.
    pub origin: Origin,
    /// The serial of the certificate this request renews (`renew::request`);
    /// the engine records it as [`Record::replaces`]. A renewal is asked for
    /// under the request id [`renewal_request_id`] of that serial, and only a
    /// renewal may use that form of request id.
    pub replaces: Option<String>,
}

/// Whether a call issued the certificate or found it issued before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueStatus {
    /// Issued by this call.
    Issued,
    /// Issued before under the same request id.
    Exists,
}

impl IssueStatus {
    /// `issued` or `exists`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueStatus::Issued => "issued",
            IssueStatus::Exists => "exists",
        }
    }
}

/// What the engine produced for one request.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Issued now, or found issued before.
    pub status: IssueStatus,
    /// The store's record.
    pub record: Record,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate and its issuing CA, PEM.
    pub chain_pem: String,
    /// Its files: those written now and those that were already there.
    pub files: Vec<std::path::PathBuf>,
    /// The files this call wrote (a subset of `files`): for a certificate found
    /// issued before, only the missing ones it completed.
    pub written: Vec<std::path::PathBuf>,
}

/// A CA opened for issuing: configuration, profiles and signing CAs loaded once
/// (a batch reuses them for every entry).
pub struct Issuer<'a> {
    ca: &'a Ca,
    store: &'a Store,
    root_der: Vec<u8>,
    /// Set once rustls-webpki has validated a full path (leaf → issuing CA → root)
    /// for each issuing CA in this process; see `check`.
    chain_validated: [std::sync::OnceLock<()>; 2],
    signing: RefCell<Vec<(CaKind, Rc<SigningCa>)>>,
    profiles: RefCell<HashMap<String, (Arc<Profile>, ProfileStamp)>>,
    constraints: Vec<Pattern>,
}

/// A profile file's modification time and length when it was read.
type ProfileStamp = Option<(Option<std::time::SystemTime>, u64)>;

impl<'a> Issuer<'a> {
    /// Open the CA for issuing into `store`.
    pub fn new(ca: &'a Ca, store: &'a Store) -> Result<Issuer<'a>> {
        Ok(Issuer {
            ca,
            store,
            root_der: ca.cert_der(CaKind::Root)?,
            chain_validated: Default::default(),
            signing: Default::default(),
            profiles: Default::default(),
            constraints: ca.config.constraints()?,
        })
    }

    /// An issuing CA, loaded and unlocked once per `Issuer`.
    fn signing_ca(&self, kind: CaKind) -> Result<Rc<SigningCa>> {
        if let Some((_, s)) = self.signing.borrow().iter().find(|(k, _)| *k == kind) {
            return Ok(s.clone());
        }
        let s = Rc::new(self.ca.signing_ca(kind)?);
        self.signing.borrow_mut().push((kind, s.clone()));
        Ok(s)
    }

    /// A profile of the CA, read again only when its file changed: a long-lived
    /// `Issuer` (`mtlsca serve`) sees an edited profile at its next request, as
    /// a new process would.
    fn profile(&self, name: &str) -> Result<Arc<Profile>> {
        let stamp = |path: &std::path::Path| {
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()))
        };
        if let Some((p, seen)) = self.profiles.borrow().get(name) {
            if *seen == stamp(&self.ca.profile_path(name)) {
                return Ok(p.clone());
            }
        }
        // Stamp before reading: an edit while reading is seen next time.
        let seen = stamp(&self.ca.profile_path(name));
        let p = Arc::new(self.ca.profile(name)?);
        self.profiles
            .borrow_mut()
            .insert(name.to_string(), (p.clone(), seen));
        Ok(p)
    }

    /// The context signing runs in, for a loaded issuing CA.
    fn sign_context<'s>(&'s self, signing: &'s SigningCa, now: OffsetDateTime) -> SignContext<'s> {
        let chain_validated = match signing.kind {
            CaKind::Entity => &self.chain_validated[1],
            _ => &self.chain_validated[0],
        };
        SignContext {
            signing,
            root_der: &self.root_der,
            chain_validated,
            constraints: &self.constraints,
            now,
        }
    }

    /// Run the pipeline for one request: a batch of one.
    pub fn issue(&self, req: &IssuanceRequest, now: OffsetDateTime) -> Result<Issued> {
        let mut out = None;
        self.issue_all(
            std::slice::from_ref(req),
            &RunOptions::single(),
            now,
            &mut |_, r| out = Some(r),
        )?;
        out.unwrap_or_else(|| Err(Error::State("the engine reported no outcome".into())))
    }

    /// Check a request as far as can be done without signing or touching files:
    /// request id, profile, and policy (for a CSR: its signature and what it asks
    /// for). A batch checks its whole manifest this way first.
    pub fn check_request(&self, req: &IssuanceRequest, now: OffsetDateTime) -> Result<()> {
        check_request_id(req)?;
        let profile = self.profile(&req.profile)?;
        let signing = self.signing_ca(CaKind::for_role(profile.role))?;
        signing.check_not_expired(now)?;
        let (content, key_kind, origin, _) = sign::intake(&profile, req)?;
        crate::policy::check(
            &profile,
            &self.constraints,
            &content,
            key_kind,
            signing.not_after,
            origin,
            now,
        )
        .map(|_| ())
    }

    /// The certificate that currently stands for `rec`: `rec` itself, or the last
    /// of its renewals.
    pub fn current(&self, rec: Record) -> Result<Record> {
        current(self.store, rec)
    }

    /// A certificate issued earlier for the same request id: if this is the same
    /// request, complete its missing certificate files (its key is never stored, so
    /// a lost key stays lost); a different request under a recorded id is refused.
    fn existing(
        &self,
        rec: Record,
        req: &IssuanceRequest,
        files: Option<&Files>,
        now: OffsetDateTime,
    ) -> Result<Issued> {
        let der = self
            .store
            .der(&rec)?
            .ok_or_else(|| Error::Store(format!("record {} has no certificate", rec.serial)))?;
        self.same_request(&rec, &der, req, now)?;
        let cert_pem = pem_cert(&der);
        let chain_pem = format!(
            "{cert_pem}{}",
            self.ca.cert_pem_of(
                self.ca
                    .issuer_by_key_id(&rec.issuer_key_id, CaKind::for_role(rec.role))?
            )?
        );
        let mut all = Vec::new();
        let mut written = Vec::new();
        if let Some(f) = files {
            // Bad input like a first request's (not an I/O error on a temporary file).
            f.check_dirs(req.origin)?;
            if let Some(k) = &f.key {
                if k.exists() {
                    all.push(k.clone());
                }
            }
            for (path, text) in [
                (&f.cert, &cert_pem),
                (f.chain.as_ref().unwrap_or(&f.cert), &chain_pem),
            ] {
                if std::fs::symlink_metadata(path).is_err() {
                    crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)?;
                    written.push(path.clone());
                }
                if !all.contains(path) {
                    all.push(path.clone());
                }
            }
        }
        Ok(Issued {
            status: IssueStatus::Exists,
            record: rec,
            cert_pem,
            chain_pem,
            files: all,
            written,
        })
    }

    /// Whether `req` is the request `rec` was issued for (profile, names, subject,
    /// key type); `Err` with rule `request-id-conflict` when not.
    pub fn check_same_request(
        &self,
        rec: &Record,
        req: &IssuanceRequest,
        now: OffsetDateTime,
    ) -> Result<()> {
        let der = self
            .store
            .der(rec)?
            .ok_or_else(|| Error::Store(format!("record {} has no certificate", rec.serial)))?;
        self.same_request(rec, &der, req, now)
    }

    /// A request id stands for one request: the recorded certificate must have the
    /// profile, names, subject and key type (for a CSR: the very key) this request
    /// asks for. Names are compared as policy would write them (a DNS name in any
    /// case is the same name), in any order; the validity is not compared.
    fn same_request(
        &self,
        rec: &Record,
        der: &[u8],
        req: &IssuanceRequest,
        now: OffsetDateTime,
    ) -> Result<()> {
        let id = req.request_id.as_deref().unwrap_or("");
        let conflict = |recorded: Vec<String>, asked: Vec<String>| {
            Error::refusals(
                req.origin,
                vec![Refusal::new(
                    Rule::RequestIdConflict,
                    format!(
                        "was recorded for certificate {} with {}; this request asks for {}. \
                         A request id stands for one request: use a new request id for a new request, \
                         or `mtlsca renew {}` to replace that certificate",
                        rec.serial,
                        recorded.join(", "),
                        asked.join(", "),
                        rec.serial,
                    ),
                )
                .on(Field::RequestId)
                .value(id)],
            )
        };
        if rec.profile != req.profile {
            return Err(conflict(
                vec![format!("profile `{}`", rec.profile)],
                vec![format!("profile `{}`", req.profile)],
            ));
        }
        let profile = self.profile(&req.profile)?;
        let (mut content, key_kind, origin, csr_spki) = sign::intake(&profile, req)?;
        // Validity is not part of what a request id stands for.
        content.validity = None;
        let far = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap_or(now);
        let approved = crate::policy::check(
            &profile,
            &self.constraints,
            &content,
            key_kind,
            far,
            origin,
            now,
        )?;
        let mut recorded = Vec::new();
        let mut asked = Vec::new();
        let mut want_names: Vec<String> = approved.names.iter().map(|n| n.to_string()).collect();
        let mut have_names = rec.names.clone();
        want_names.sort();
        have_names.sort();
        if want_names != have_names {
            recorded.push(format!("names {}", list_or_none(&rec.names)));
            asked.push(format!(
                "names {}",
                list_or_none(
                    &approved
                        .names
                        .iter()
                        .map(|n| n.to_string())
                        .collect::<Vec<_>>()
                )
            ));
        }
        let subject = approved.subject.to_text();
        if subject != rec.subject {
            recorded.push(format!("subject `{}`", rec.subject));
            asked.push(format!("subject `{subject}`"));
        }
        let cert = x509_parser::parse_x509_certificate(der)
            .map_err(|e| Error::Store(format!("record {}: certificate: {e}", rec.serial)))?
            .1;
        let spki = cert.public_key();
        match csr_spki {
            Some(csr) if !crate::key::same_public_key(&csr, spki.raw) => {
                recorded.push("the key of its CSR".into());
                asked.push("another key (a different CSR)".into());
            }
            Some(_) => {}
            None => {
                let have = crate::key::check_public_key(spki).ok();
                if have != Some(key_kind) {
                    recorded.push(format!(
                        "key type {}",
                        have.map(|k| k.describe()).unwrap_or_else(|| "?".into())
                    ));
                    asked.push(format!("key type {}", key_kind.describe()));
                }
            }
        }
        if recorded.is_empty() {
            Ok(())
        } else {
            Err(conflict(recorded, asked))
        }
    }

    /// Complete or clean up what an interrupted run left for these files.
    fn recover(&self, f: &Files) -> Result<()> {
        let cert_tmp = f.cert_partial();
        if !cert_tmp.exists() {
            // Stray partials without a certificate partial: the crash came before
            // step 1 ended (the certificate's partial is written last and linked last).
            files::remove_partials(f);
            return Ok(());
        }
        // A leftover is at most a certificate chain; anything larger is not ours.
        let recorded =
            crate::fsutil::read_bounded(&cert_tmp, crate::fsutil::MAX_INPUT, "temporary file")
                .ok()
                .and_then(|b| pem::parse(b).ok())
                .map(|p| ring::digest::digest(&ring::digest::SHA256, p.contents()))
                .map(|d| self.store.find(&crate::hex::encode(d.as_ref())))
                .transpose()?
                .flatten();
        match recorded {
            Some(_) => {
                files::link_partials(f)?;
                f.sync_dir()?;
            }
            None => files::remove_partials(f),
        }
        Ok(())
    }
}

/// The certificate that currently stands for `rec`: `rec`, or the last of its
/// renewals (each recorded under the request id `renewal-of:SERIAL`).
pub fn current(store: &Store, mut rec: Record) -> Result<Record> {
    // A chain of renewals is finite; the bound only guards a damaged store.
    for _ in 0..10_000 {
        match store.by_request_id(&renewal_request_id(&rec.serial))? {
            Some(next) if next.serial != rec.serial => rec = next,
            _ => break,
        }
    }
    Ok(rec)
}

/// `a, b` or `(none)`.
fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// A request id is 1-256 characters without control characters, and of the
/// form `renewal-of:SERIAL` exactly when the request renews `SERIAL`.
fn check_request_id(req: &IssuanceRequest) -> Result<()> {
    let reserved = |id: &str, detail: String| {
        Err(Error::invalid(
            req.origin,
            Refusal::new(Rule::RequestIdReserved, detail)
                .on(Field::RequestId)
                .value(id),
        ))
    };
    match (&req.request_id, &req.replaces) {
        (Some(id), None) if id.starts_with(RENEWAL_PREFIX) => {
            return reserved(
                id,
                format!(
                    "request ids starting with `{RENEWAL_PREFIX}` are reserved for renewals (use `mtlsca renew`)"
                ),
            )
        }
        (id, Some(serial)) if id.as_deref() != Some(&*renewal_request_id(serial)) => {
            return reserved(
                id.as_deref().unwrap_or(""),
                format!(
                    "a renewal of certificate {} is asked for under the request id `{}`",
                    crate::names::printable(serial),
                    crate::names::printable(&renewal_request_id(serial))
                ),
            )
        }
        _ => {}
    }
    match &req.request_id {
        Some(id)
            if id.is_empty()
                || id.len() > rules::MAX_REQUEST_ID
                || id.chars().any(|c| c.is_control()) =>
        {
            Err(Error::invalid(
                req.origin,
                Refusal::new(
                    Rule::RequestIdSyntax,
                    format!(
                        "a request id must be 1-{} characters without control characters",
                        rules::MAX_REQUEST_ID
                    ),
                )
                .on(Field::RequestId)
                .value(id),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::PublicKeyKind;
    use x509_parser::prelude::FromDer;

    /// The device CA of a test CA, ready to sign: its signing context, the
    /// device profile, the store, the CA's validity end and `now`, handed to `f`.
    fn with_device_signer(
        f: impl FnOnce(&SignContext<'_>, &Profile, &crate::store::Store, OffsetDateTime, OffsetDateTime),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let issuer = Issuer::new(&ca, &store).unwrap();
        let signing = issuer.signing_ca(CaKind::Device).unwrap();
        let cx = issuer.sign_context(&signing, now);
        let profile = ca.profile("device").unwrap();
        f(&cx, &profile, &store, signing.not_after, now);
    }

    /// A device certificate for `a.test`, key generated, no files.
    fn device_request(request_id: Option<&str>) -> IssuanceRequest {
        IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent {
                dns: vec!["a.test".into()],
                ..Default::default()
            },
            key: KeySource::Generate(None),
            request_id: request_id.map(String::from),
            output: Output::None,
            origin: Origin::Arguments,
            replaces: None,
        }
    }

    /// `renewal-of:` request ids are the engine's: refused on a request that
    /// renews nothing or another certificate, accepted on the renewal of a
    /// recorded certificate, whose `replaces` the engine records as given.
    #[test]
    fn renewal_ids_are_reserved_for_renewals() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let issuer = Issuer::new(&ca, &store).unwrap();
        let old = issuer
            .issue(&device_request(Some("r")), now)
            .unwrap()
            .record;
        let rule_of = |e: Error| match e {
            Error::Invalid(r) | Error::Refused(r) => r.reasons[0].rule,
            other => panic!("{other}"),
        };
        // A renewal id on a request that renews nothing.
        let id = renewal_request_id(&old.serial);
        let e = issuer.issue(&device_request(Some(&id)), now).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("reserved for renewals"), "{e}");
        assert_eq!(rule_of(e), Rule::RequestIdReserved);
        // A renewal under another id, or none.
        for other in [Some("r2"), None] {
            let req = IssuanceRequest {
                replaces: Some(old.serial.clone()),
                ..device_request(other)
            };
            assert_eq!(
                rule_of(issuer.issue(&req, now).unwrap_err()),
                Rule::RequestIdReserved
            );
        }
        // The renewal of a certificate this CA did not issue.
        let unknown = "00".repeat(16);
        let req = IssuanceRequest {
            replaces: Some(unknown.clone()),
            ..device_request(Some(&renewal_request_id(&unknown)))
        };
        let e = issuer.issue(&req, now).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(rule_of(e), Rule::NotFound);
        assert_eq!(store.count(), 1, "nothing refused was issued");
        // The renewal itself: recorded with what it replaces, and followed from
        // the original's request id.
        let req = IssuanceRequest {
            replaces: Some(old.serial.clone()),
            ..device_request(Some(&id))
        };
        let new = issuer.issue(&req, now).unwrap().record;
        assert_eq!(new.replaces.as_deref(), Some(&*old.serial));
        assert_eq!(new.request_id.as_deref(), Some(&*id));
        assert_eq!(issuer.current(old).unwrap().serial, new.serial);
    }

    /// The self-check refuses a certificate whose signature does not verify, both
    /// on the first certificate (full webpki path) and on later ones (one
    /// signature verification against the issuing CA).
    #[test]
    fn self_check_catches_a_bad_signature() {
        with_device_signer(|cx, profile, _, ca_not_after, now| {
            self_check_catches_a_bad_signature_with(cx, profile, ca_not_after, now)
        });
    }

    fn self_check_catches_a_bad_signature_with(
        cx: &SignContext<'_>,
        profile: &Profile,
        ca_not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) {
        let req = device_request(None);
        let approved = crate::policy::check(
            profile,
            &[],
            &req.content,
            PublicKeyKind::EcdsaP256,
            ca_not_after,
            Origin::Arguments,
            now,
        )
        .unwrap();
        let p = sign::prepare(cx, profile, &req, None).unwrap();
        let (_, x) = x509_parser::certificate::X509Certificate::from_der(&p.der).unwrap();
        let spki = x.public_key().raw.to_vec();
        let serial = x.tbs_certificate.raw_serial().to_vec();
        let approved = crate::policy::Approved {
            not_before: p.record.not_before,
            not_after: p.record.not_after,
            ..approved
        };
        assert!(
            cx.chain_validated.get().is_some(),
            "first certificate validated the path"
        );
        check::self_check(&p.der, &serial, &spki, &approved, None, cx).unwrap();
        // A CRL distribution point the profile names but the certificate lacks.
        let err = check::self_check(
            &p.der,
            &serial,
            &spki,
            &approved,
            Some("http://ca.corp.internal/crl/device.crl"),
            cx,
        )
        .unwrap_err();
        assert!(err.to_string().contains("CRL distribution points"), "{err}");
        // Flip a bit in the signature value (the last bytes of the DER).
        let mut bad = p.der.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        let err = check::self_check(&bad, &serial, &spki, &approved, None, cx).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        let fresh = std::sync::OnceLock::new();
        let cx_first = SignContext {
            chain_validated: &fresh,
            ..*cx
        };
        let err = check::self_check(&bad, &serial, &spki, &approved, None, &cx_first).unwrap_err();
        assert!(err.to_string().contains("rustls-webpki"), "{err}");
    }

    /// A CSR checked once (ACME's finalize) issues what the same bytes issue
    /// through `KeySource::Csr`; a tampered one is refused by the check itself,
    /// so it never reaches the engine.
    #[test]
    fn a_checked_csr_issues_like_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let issuer = Issuer::new(&ca, &store).unwrap();
        let csr_for = |name: &str| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.serialize_request(&key).unwrap().der().to_vec()
        };
        let request = |key: KeySource| IssuanceRequest {
            profile: "device".into(),
            content: RequestedContent::default(),
            key,
            request_id: None,
            output: Output::None,
            origin: Origin::Csr,
            replaces: None,
        };
        let spki = |der: &[u8]| {
            let (_, x) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
            (
                x.public_key().raw.to_vec(),
                format!("{:?}", x.subject_alternative_name()),
            )
        };
        let bytes = csr_for("a.test");
        let checked = read_checked_csr(&bytes).unwrap();
        assert_eq!(checked.der(), bytes.as_slice());
        let one = issuer
            .issue(
                &request(KeySource::CheckedCsr(Box::new(checked.clone()))),
                now,
            )
            .unwrap();
        let two = issuer
            .issue(&request(KeySource::Csr(bytes.clone())), now)
            .unwrap();
        let der = |i: &Issued| pem::parse(&i.cert_pem).unwrap().into_contents();
        assert_eq!(spki(&der(&one)), spki(&der(&two)));
        assert_eq!(spki(&der(&one)).0, checked.intake().spki_der);
        // The signature is the last field: flip a bit in it.
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 3] ^= 0x40;
        let err = read_checked_csr(&bad).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
    }

    /// `warm_for` (run beside a single request's fsyncs) only reads: the store
    /// holds neither the record nor an audit entry until the transaction, which
    /// then records the certificate as new.
    #[test]
    fn warming_the_store_for_a_record_changes_nothing() {
        with_device_signer(|cx, profile, store, _, now| {
            let req = device_request(Some("warm-1"));
            let p = sign::prepare(cx, profile, &req, None).unwrap();
            let item = crate::store::ChunkItem {
                record: &p.record,
                der: &p.der,
                issuer_key_id: &p.issuer_key_id,
            };
            let serial = crate::hex::decode(&p.record.serial).unwrap();
            let audit_before = store.audit(None).unwrap().len();
            store.warm_for(&item);
            assert!(store.get(&serial).unwrap().is_none());
            assert!(store.by_request_id("warm-1").unwrap().is_none());
            assert_eq!(store.audit(None).unwrap().len(), audit_before);
            assert_eq!(store.count(), 0);
            let recorded = store.record_chunk(&[item], now).unwrap();
            assert!(matches!(recorded[..], [crate::store::Recorded::New]));
            assert!(store.get(&serial).unwrap().is_some());
            assert_eq!(store.audit(None).unwrap().len(), audit_before + 1);
        });
    }
}
