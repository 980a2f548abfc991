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
use std::path::PathBuf;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use crate::ca::{Ca, CaKind};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::store::{Record, RevokeOutcome, Store};

/// nextUpdate when none is asked for.
pub const DEFAULT_NEXT_UPDATE: time::Duration = time::Duration::days(7);

/// Why a certificate was revoked: the RFC 5280 (section 5.3.1) reasons a
/// revocation that is never undone can carry. `certificateHold` (a suspension)
/// and `removeFromCRL` (its undoing, for delta CRLs) are not offered: mtlsca
/// revocations are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
    AaCompromise,
}

impl Reason {
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
            Err(Error::refused(format!(
                "certificate {} is already revoked (since {at}, reason {why})",
                rec.serial
            )))
        }
        RevokeOutcome::Unknown => Err(Error::refused(format!(
            "no certificate with serial {printable}"
        ))),
    }
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    pub issuer: CaKind,
    pub number: u64,
    pub revoked: usize,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub der: Vec<u8>,
    pub pem: String,
}

/// Sign the current CRL of one CA of the hierarchy. The CRL number is taken (and
/// made durable) first, so a number is never used twice even if the process dies.
pub fn build(
    ca: &Ca,
    store: &Store,
    issuer: CaKind,
    next_update: time::Duration,
    now: OffsetDateTime,
) -> Result<Crl> {
    if next_update <= time::Duration::ZERO {
        return Err(Error::Usage("--next-update must be positive".into()));
    }
    let signing = ca.signing_ca(issuer)?;
    let revoked = store.revoked_by(&signing.key_id)?;
    let number = store.next_crl_number(issuer.as_str(), &signing.key_id, revoked.len(), now)?;
    store.flush()?;
    let this_update = now.replace_nanosecond(0).unwrap_or(now);
    let next = this_update + next_update;
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
        .map_err(|e| Error::State(format!("cannot sign the {} CRL: {e}", issuer.as_str())))?;
    let der = crl.der().to_vec();
    let pem = crate::fsutil::pem_lf(&pem::Pem::new("X509 CRL", der.clone()));
    Ok(Crl {
        issuer,
        number,
        revoked: revoked.len(),
        this_update,
        next_update: next,
        der,
        pem,
    })
}

/// Where a CA's published CRL lives: `<ca-dir>/crl/<root|device|entity>.crl`.
pub fn published_path(ca: &Ca, issuer: CaKind) -> PathBuf {
    ca.dir.join("crl").join(format!("{}.crl", issuer.as_str()))
}

/// Sign the CRLs of all three CAs and replace the published files atomically.
pub fn publish_all(
    ca: &Ca,
    store: &Store,
    next_update: time::Duration,
    now: OffsetDateTime,
) -> Result<Vec<(Crl, PathBuf)>> {
    let dir = ca.dir.join("crl");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut out = Vec::new();
    for kind in CaKind::ALL {
        let crl = build(ca, store, kind, next_update, now)?;
        let path = published_path(ca, kind);
        fsutil::write_atomic(&path, crl.pem.as_bytes(), 0o644)?;
        out.push((crl, path));
    }
    fsutil::sync_dir(&dir)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
