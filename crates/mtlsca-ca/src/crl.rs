//! Revocation and certificate revocation lists.
//!
//! A revocation is permanent: mtlsca records when and why (an RFC 5280 reason),
//! and every later CRL of the certificate's issuer lists it. Each CA of the
//! hierarchy signs its own CRL: the device and entity issuing CAs list the leaves
//! they signed, the root lists the issuing CAs (none unless one was revoked, which
//! mtlsca does not do). Each CRL carries a CRL number kept in the store that only
//! grows, the issuing CA's key identifier as its AKI, thisUpdate = now and a
//! nextUpdate (7 days unless asked otherwise).

use std::fmt;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use crate::ca::{Ca, CaId, CaKind, SigningCa};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::rules::Rule;
use crate::store::{Record, RevokeOutcome, Store};

/// nextUpdate when none is asked for.
pub const DEFAULT_NEXT_UPDATE: time::Duration = time::Duration::days(7);

/// Why a certificate was revoked: the RFC 5280 (section 5.3.1) reasons a
/// revocation that is never undone can carry. `certificateHold` (a suspension)
/// and `removeFromCRL` (its undoing, for delta CRLs) are not offered: mtlsca
/// revocations are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// No reason given (no reasonCode extension).
    Unspecified,
    /// The certificate's private key was compromised.
    KeyCompromise,
    /// The issuing CA's key was compromised.
    CaCompromise,
    /// The subject's name or affiliation changed.
    AffiliationChanged,
    /// The certificate was replaced.
    Superseded,
    /// The certificate is no longer needed.
    CessationOfOperation,
    /// A privilege the certificate carried was withdrawn.
    PrivilegeWithdrawn,
    /// An attribute authority was compromised.
    AaCompromise,
}

impl Reason {
    /// Every reason, in RFC 5280 order.
    pub const ALL: [Reason; 8] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::CaCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
        Reason::PrivilegeWithdrawn,
        Reason::AaCompromise,
    ];

    /// The RFC 5280 spelling, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "keyCompromise",
            Reason::CaCompromise => "cACompromise",
            Reason::AffiliationChanged => "affiliationChanged",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessationOfOperation",
            Reason::PrivilegeWithdrawn => "privilegeWithdrawn",
            Reason::AaCompromise => "aACompromise",
        }
    }

    /// The RFC 5280 name in any case (`keyCompromise`, `keycompromise`), or the
    /// same words with dashes (`key-compromise`).
    pub fn parse(s: &str) -> Result<Reason> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == folded)
            .ok_or_else(|| {
                let held = ["certificatehold", "removefromcrl"].contains(&folded.as_str());
                Error::Usage(format!(
                    "`{}` is not a revocation reason{} (expected one of: {})",
                    crate::names::printable(s),
                    if held {
                        " mtlsca uses: revocations are final, there is no hold"
                    } else {
                        ""
                    },
                    Reason::ALL.map(Reason::as_str).join(", ")
                ))
            })
    }

    /// The reasonCode CRL entry extension; RFC 5280 says to leave it out for
    /// `unspecified`.
    fn code(self) -> Option<RevocationReason> {
        match self {
            Reason::Unspecified => None,
            Reason::KeyCompromise => Some(RevocationReason::KeyCompromise),
            Reason::CaCompromise => Some(RevocationReason::CaCompromise),
            Reason::AffiliationChanged => Some(RevocationReason::AffiliationChanged),
            Reason::Superseded => Some(RevocationReason::Superseded),
            Reason::CessationOfOperation => Some(RevocationReason::CessationOfOperation),
            Reason::PrivilegeWithdrawn => Some(RevocationReason::PrivilegeWithdrawn),
            Reason::AaCompromise => Some(RevocationReason::AaCompromise),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Revoke the certificate a serial (any case, colons, leading zeros) or SHA-256
/// fingerprint names. Unknown and already revoked certificates are refused
/// (exit 1). The revocation is durable when this returns.
pub fn revoke(store: &Store, query: &str, reason: Reason, now: OffsetDateTime) -> Result<Record> {
    let printable = crate::names::printable(query);
    let rec = store
        .find(query)?
        .ok_or_else(|| Error::refused(format!("no certificate with serial {printable}")))?;
    match store.revoke(&rec.serial_bytes(), reason.as_str(), now)? {
        RevokeOutcome::Revoked(rec) => {
            store.flush()?;
            Ok(*rec)
        }
        RevokeOutcome::AlreadyRevoked(rec) => {
            let (at, why) = rec
                .revocation
                .as_ref()
                .map(|r| {
                    let at = r.at.replace_nanosecond(0).unwrap_or(r.at);
                    (
                        at.format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_else(|_| at.to_string()),
                        r.reason.clone(),
                    )
                })
                .unwrap_or_default();
            Err(Error::refused_by(
                Rule::AlreadyRevoked,
                format!(
                    "certificate {} is already revoked (since {at}, reason {why})",
                    rec.serial
                ),
            ))
        }
        // Found, but not in the hot store: archived by `store tidy`.
        RevokeOutcome::Unknown => Err(Error::refused(format!(
            "certificate {} expired on {} and is archived (`store tidy`): an expired certificate is not revoked",
            rec.serial,
            rec.not_after.date()
        ))),
    }
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    /// The CA that signed it.
    pub issuer: CaKind,
    /// Which generation of that CA (1 for what `init` made).
    pub generation: u32,
    /// Its CRL number.
    pub number: u64,
    /// How many revoked certificates it lists.
    pub revoked: usize,
    /// Its thisUpdate.
    pub this_update: OffsetDateTime,
    /// Its nextUpdate.
    pub next_update: OffsetDateTime,
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// The CRL, PEM (`X509 CRL`).
    pub pem: String,
}

/// Sign the current CRL of one CA of the hierarchy and record its number (durable
/// when this returns): for a CRL that is published as soon as it exists (standard
/// output). For a file use `publish`, which records the number only once the CRL
/// is written, so a failed publication never burns one.
pub fn build(
    ca: &Ca,
    store: &Store,
    issuer: CaKind,
    next_update: time::Duration,
    now: OffsetDateTime,
) -> Result<Crl> {
    build_of(ca, store, ca.current(issuer), next_update, now)
}

/// [`build`] for one generation of a CA.
pub fn build_of(
    ca: &Ca,
    store: &Store,
    issuer: CaId,
    next_update: time::Duration,
    now: OffsetDateTime,
) -> Result<Crl> {
    let signing = ca.signing_ca_of(issuer)?;
    let crl = sign(&signing, store, next_update, now)?;
    record(store, &signing, &crl, now)?;
    Ok(crl)
}

/// Sign the CRL that would come next (number = the last recorded + 1) without
/// recording anything.
fn sign(
    signing: &SigningCa,
    store: &Store,
    next_update: time::Duration,
    now: OffsetDateTime,
) -> Result<Crl> {
    let issuer = signing.id();
    if next_update <= time::Duration::ZERO {
        return Err(Error::Usage("--next-update must be positive".into()));
    }
    let this_update = now.replace_nanosecond(0).unwrap_or(now);
    let next = this_update
        .checked_add(next_update)
        .filter(|n| *n <= signing.not_after)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--next-update {} days reaches past the {} CA's own end of validity ({}); a CRL cannot promise an update its CA will not live to sign",
                next_update.whole_days(),
                issuer,
                signing
                    .not_after
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            ))
        })?;
    // Retirements due by now were applied by the caller (`before_publish`).
    let revoked = store.revoked_by(&signing.key_id)?;
    let number = store.crl_number(&signing.key_id)? + 1;
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for r in &revoked {
        let reason = Reason::parse(&r.revocation.reason).unwrap_or(Reason::Unspecified);
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&r.serial),
            revocation_time: r
                .revocation
                .at
                .replace_nanosecond(0)
                .unwrap_or(r.revocation.at),
            reason_code: reason.code(),
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update,
        next_update: next,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(signing.key_id.clone()),
    };
    let crl = params
        .signed_by(&signing.issuer)
        .map_err(|e| Error::State(format!("cannot sign the {issuer} CRL: {e}")))?;
    let der = crl.der().to_vec();
    let pem = crate::fsutil::pem_lf(&pem::Pem::new("X509 CRL", der.clone()));
    Ok(Crl {
        issuer: issuer.kind,
        generation: issuer.generation,
        number,
        revoked: revoked.len(),
        this_update,
        next_update: next,
        der,
        pem,
    })
}

/// Record a signed CRL's number (with an audit entry) and make it durable.
fn record(store: &Store, signing: &SigningCa, crl: &Crl, now: OffsetDateTime) -> Result<()> {
    store.record_crl_number(&crl.name(), &signing.key_id, crl.number, crl.revoked, now)?;
    store.flush()
}

/// Where the current generation of a CA publishes its CRL:
/// `<ca-dir>/crl/<root|device|entity>.crl` (see [`published_path_of`]).
pub fn published_path(ca: &Ca, issuer: CaKind) -> PathBuf {
    published_path_of(ca, ca.current(issuer))
}

/// Where a CA generation's published CRL lives: `<ca-dir>/crl/<name>.crl`
/// (`device.crl`, `device-2.crl`, …).
pub fn published_path_of(ca: &Ca, issuer: CaId) -> PathBuf {
    ca.dir.join("crl").join(format!("{}.crl", issuer.name()))
}

impl Crl {
    /// The CA generation that signed it.
    pub fn id(&self) -> CaId {
        CaId::new(self.issuer, self.generation)
    }

    /// Its name (`device`, `device-2`): the CRL file's stem.
    pub fn name(&self) -> String {
        self.id().name()
    }
}

/// The temporary name a CRL is written to before it replaces `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    fsutil::temp_sibling(path, "tmp")
}

/// Sign one CA's CRL and publish it at `path`: written to a temporary sibling,
/// its number recorded, then renamed into place. A leftover of an interrupted
/// run is completed first when its number was recorded (so it was meant to be
/// published), and removed otherwise; a failure before the number is recorded
/// burns no number.
pub fn publish(
    ca: &Ca,
    store: &Store,
    issuer: CaKind,
    next_update: time::Duration,
    now: OffsetDateTime,
    path: &Path,
) -> Result<Crl> {
    publish_of(ca, store, ca.current(issuer), next_update, now, path)
}

/// [`publish`] for one generation of a CA.
pub fn publish_of(
    ca: &Ca,
    store: &Store,
    issuer: CaId,
    next_update: time::Duration,
    now: OffsetDateTime,
    path: &Path,
) -> Result<Crl> {
    let signing = ca.signing_ca_of(issuer)?;
    complete_leftover(store, &signing, path)?;
    let crl = sign(&signing, store, next_update, now)?;
    let tmp = temp_path(path);
    fsutil::write_new(&tmp, crl.pem.as_bytes(), 0o644)?;
    let done = record(store, &signing, &crl, now).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))
    });
    if done.is_err() && store.crl_number(&signing.key_id).ok() != Some(crl.number) {
        // Not recorded: the file must not carry the number either.
        let _ = std::fs::remove_file(&tmp);
    }
    done.map(|()| crl)
}

/// The CRL number and authority key identifier of a PEM CRL file, if it is one.
fn crl_file_number(path: &Path) -> Option<(u64, Vec<u8>)> {
    let bytes = fsutil::read_bounded(path, 64 * 1024 * 1024, "CRL").ok()?;
    let der = pem::parse(&bytes).ok()?.into_contents();
    let (_, crl) = x509_parser::parse_x509_crl(&der).ok()?;
    let digits = crl.crl_number()?.to_u64_digits();
    let number = match digits.as_slice() {
        [] => 0,
        [n] => *n,
        _ => return None,
    };
    let aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    Some((number, aki))
}

/// A temporary CRL left by a killed or failed run: rename it into place when it
/// is this CA's CRL with the last recorded number and newer than the published
/// one (its number was recorded, so it must be published); otherwise remove it.
fn complete_leftover(store: &Store, signing: &SigningCa, path: &Path) -> Result<()> {
    let tmp = temp_path(path);
    match std::fs::symlink_metadata(&tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&tmp, e)),
        Ok(m) if !m.file_type().is_file() => {
            return Err(Error::State(format!(
                "{} is not a file mtlsca wrote; remove it",
                tmp.display()
            )))
        }
        Ok(_) => {}
    }
    let recorded = store.crl_number(&signing.key_id)?;
    let complete = match crl_file_number(&tmp) {
        Some((n, aki)) if n == recorded && aki == signing.key_id => {
            crl_file_number(path).is_none_or(|(p, _)| p < n)
        }
        _ => false,
    };
    if complete {
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    } else {
        std::fs::remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    fsutil::sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The CRLs a publication signed, each with the file it replaced.
pub type Published = Vec<(Crl, PathBuf)>;

/// What runs before any CRL is signed for publication (`publish_all`, `crl
/// --issuer`): the place for store changes that must be in the CRL about to be
/// signed: revocations that were deferred and are due by `now`.
pub fn before_publish(ca: &Ca, store: &Store, now: OffsetDateTime) -> Result<()> {
    let _ = ca;
    // Retirements of replaced certificates that fell due are revocations the
    // CRLs must list.
    store.apply_due_retirements(now)?;
    Ok(())
}

/// Sign the CRLs of every CA generation that has not expired and whose key
/// the CA holds (the current three, or the two issuing CAs under an external
/// root, and the retired ones whose certificates may still be in use) and
/// replace the published files atomically (after [`before_publish`]). A
/// generation's `nextUpdate` is cut to its own notAfter when `next_update`
/// would reach past it. Every publisher calls this one function:
/// `mtlsca crl`, `init`, a local `revoke`, and `serve`'s publisher.
pub fn publish_all(
    ca: &Ca,
    store: &Store,
    next_update: time::Duration,
    now: OffsetDateTime,
) -> Result<Published> {
    before_publish(ca, store, now)?;
    // Every revocation made through this handle so far is in what follows.
    let covered = store.revocations();
    let dir = ca.dir.join("crl");
    if !dir.is_dir() {
        fsutil::create_dir_mode(&dir, 0o750).map_err(|e| Error::io(&dir, e))?;
    }
    let mut out = Vec::new();
    let mut failed: Vec<(CaId, Error)> = Vec::new();
    let this_update = now.replace_nanosecond(0).unwrap_or(now);
    // Under an external root, the issuing CAs' only: the root's are its owner's.
    let live: Vec<_> = ca
        .generations()?
        .into_iter()
        .filter(|g| g.not_after > now && ca.signing_kinds().contains(&g.id.kind))
        .collect();
    // A span no CA lives to honour is a mistake; a CA nearer its end than the
    // span promises an update no later than its end.
    if let Some(last) = live.iter().map(|g| g.not_after).max() {
        if this_update + next_update > last {
            return Err(Error::Usage(format!(
                "--next-update {} days reaches past the end of validity of every CA here (the last ends {}); a CRL cannot promise an update its CA will not live to sign",
                next_update.whole_days(),
                last.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            )));
        }
    }
    for g in live {
        let path = published_path_of(ca, g.id);
        // A CA near its end promises no update past it (the current one too:
        // its CRL must go on being published until it is rolled).
        let span = next_update.min(g.not_after - this_update);
        // One CA that cannot publish does not keep the others' CRLs stale.
        match publish_of(ca, store, g.id, span, now, &path) {
            Ok(crl) => out.push((crl, path)),
            Err(e) => failed.push((g.id, e)),
        }
    }
    if let Some((id, first)) = failed.first() {
        // The revocations are not all published: a later publication retries.
        let others = match failed.len() {
            1 => String::new(),
            n => format!(" (and {} other CA(s))", n - 1),
        };
        return Err(Error::State(format!(
            "the {id} CA's CRL could not be published{others}: {first}; {} other CRL(s) were",
            out.len()
        )));
    }
    store.note_published(covered);
    Ok(out)
}

/// The thisUpdate and nextUpdate a CRL says (DER, or the first `X509 CRL`
/// block of PEM); `None` when the bytes are not a CRL or it has no nextUpdate.
pub fn crl_times(bytes: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let pem_der;
    let der = if bytes.starts_with(b"-----BEGIN") {
        pem_der = pem::parse_many(bytes)
            .ok()?
            .into_iter()
            .find(|p| p.tag() == "X509 CRL")?
            .into_contents();
        &pem_der[..]
    } else {
        bytes
    };
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let this = crl.last_update().to_datetime();
    let next = crl.next_update()?.to_datetime();
    Some((this, next))
}

/// Whether a CRL published at `this_update` with `next_update` must be signed
/// again at `now` by a publisher that signs them for `interval`: once half of
/// its own span or half of `interval` has passed (whichever is first), so a
/// relying party that fetches it late still gets one that is current, and a
/// failed publication has the other half to be retried in.
pub fn republish_due(
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    interval: time::Duration,
    now: OffsetDateTime,
) -> bool {
    let own = (next_update - this_update).max(time::Duration::ZERO);
    let half = own.min(interval) / 2;
    this_update + half <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn republication_is_due_at_half_the_shorter_span() {
        let t = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let week = time::Duration::days(7);
        let s = time::Duration::seconds;
        // Published for a week by a publisher that signs for a week.
        assert!(!republish_due(t, t + week, week, t));
        assert!(!republish_due(t, t + week, week, t + week / 2 - s(1)));
        assert!(republish_due(t, t + week, week, t + week / 2));
        // Published for a day (`crl --next-update 1d`): half a day.
        let day = time::Duration::days(1);
        assert!(republish_due(t, t + day, week, t + day / 2));
        // Published for a week; the publisher now signs for 10 s: 5 s.
        assert!(republish_due(t, t + week, s(10), t + s(5)));
        assert!(!republish_due(t, t + week, s(10), t + s(4)));
        // A CRL whose nextUpdate is not after its thisUpdate: at once.
        assert!(republish_due(t, t, week, t));
        assert!(republish_due(t, t - s(5), week, t));
    }

    #[test]
    fn published_crls_say_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let published = publish_all(&ca, &store, DEFAULT_NEXT_UPDATE, now).unwrap();
        assert_eq!(published.len(), CaKind::ALL.len());
        for (crl, path) in published {
            let pem = std::fs::read(&path).unwrap();
            let times = Some((crl.this_update, crl.next_update));
            assert_eq!(crl_times(&pem), times, "{}", path.display());
            assert_eq!(crl_times(&crl.der), times);
            assert!(!republish_due(
                crl.this_update,
                crl.next_update,
                DEFAULT_NEXT_UPDATE,
                now
            ));
        }
        assert_eq!(crl_times(b"not a CRL"), None);
        assert_eq!(
            crl_times(b"-----BEGIN X509 CRL-----\nAA==\n-----END X509 CRL-----\n"),
            None
        );
    }

    #[test]
    fn reasons_parse_in_any_case_and_with_dashes() {
        assert_eq!(
            Reason::parse("keyCompromise").unwrap(),
            Reason::KeyCompromise
        );
        assert_eq!(
            Reason::parse("KEYCOMPROMISE").unwrap(),
            Reason::KeyCompromise
        );
        assert_eq!(
            Reason::parse("cessation-of-operation").unwrap(),
            Reason::CessationOfOperation
        );
        assert_eq!(Reason::parse("cACompromise").unwrap(), Reason::CaCompromise);
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()).unwrap(), r);
        }
    }

    #[test]
    fn holds_and_unknown_reasons_are_bad_usage() {
        let e = Reason::parse("certificateHold").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("final"), "{e}");
        assert_eq!(Reason::parse("stolen").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn unspecified_has_no_reason_code() {
        assert_eq!(Reason::Unspecified.code(), None);
        assert_eq!(
            Reason::KeyCompromise.code(),
            Some(RevocationReason::KeyCompromise)
        );
    }
}
