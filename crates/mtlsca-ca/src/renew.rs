//! Renewal: a new key and certificate with the same profile, names and subject as
//! an issued one, through the one engine, recorded with a link to the certificate
//! it replaces (`Record::replaces`, and the audit entry says `renews SERIAL`).
//!
//! A renewal carries the serial it replaces ([`IssuanceRequest::replaces`]) and
//! is asked for under the request id `renewal-of:SERIAL`
//! ([`crate::issue::renewal_request_id`]; the engine reserves the prefix for
//! renewals): renewing one certificate twice returns the
//! first renewal, and the request id of the original keeps standing for the
//! latest renewal (so a batch manifest re-run answers `exists`).

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::issue::{renewal_request_id, IssuanceRequest, KeySource, Output};
use crate::key::{KeyType, PublicKeyKind};
use crate::policy::RequestedContent;
use crate::rules::Origin;
use crate::store::Record;

/// Where a renewal's files go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewOutput {
    /// Over the old certificate's files (from its recorded key file), each old
    /// file kept as `NAME.prev`.
    InPlace,
    /// Over the files at this prefix, each old file kept as `NAME.prev`.
    ReplaceAt(PathBuf),
    /// A new prefix (never overwriting a file).
    Prefix(PathBuf),
}

/// The engine request that renews `old` (its certificate `der`): same profile,
/// names and subject, a new key of the same type (the profile's when the old key
/// is one mtlsca does not generate, e.g. RSA from a CSR), `validity` or the
/// profile's default.
pub fn request(
    old: &Record,
    der: &[u8],
    output: RenewOutput,
    validity: Option<String>,
    origin: Origin,
) -> Result<IssuanceRequest> {
    let cert = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Store(format!("record {}: certificate: {e}", old.serial)))?
        .1;
    let attr = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(String::from)
    };
    let subject = cert.subject();
    let mut content = RequestedContent {
        cn: attr(&mut subject.iter_common_name()),
        org: attr(&mut subject.iter_organization()),
        country: attr(&mut subject.iter_country()),
        validity,
        ..Default::default()
    };
    for n in &old.names {
        let (kind, value) = n.split_once(':').unwrap_or(("", n));
        let value = value.to_string();
        match kind {
            "DNS" => content.dns.push(value),
            "IP" => content.ip.push(value),
            "URI" => content.uri.push(value),
            "email" => content.email.push(value),
            _ => {
                return Err(Error::State(format!(
                    "record {}: name `{n}` of an unknown kind",
                    old.serial
                )))
            }
        }
    }
    let key_type = match crate::key::check_public_key(cert.public_key()) {
        Ok(PublicKeyKind::EcdsaP256) => Some(KeyType::EcdsaP256),
        Ok(PublicKeyKind::EcdsaP384) => Some(KeyType::EcdsaP384),
        Ok(PublicKeyKind::Ed25519) => Some(KeyType::Ed25519),
        _ => None,
    };
    let output = match output {
        RenewOutput::Prefix(p) => Output::Prefix(p),
        RenewOutput::ReplaceAt(p) => Output::Replace(p),
        RenewOutput::InPlace => {
            let prefix = old
                .key_file
                .as_deref()
                .and_then(|k| k.strip_suffix(".key"))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "certificate {} has no recorded key file (it was signed from a CSR): \
                         say where the new key and certificate go with --out PREFIX",
                        old.serial
                    ))
                })?;
            Output::Replace(PathBuf::from(prefix))
        }
    };
    Ok(IssuanceRequest {
        profile: old.profile.clone(),
        content,
        key: KeySource::Generate(key_type),
        request_id: Some(renewal_request_id(&old.serial)),
        output,
        origin,
        replaces: Some(old.serial.clone()),
    })
}

/// The share of a certificate's lifetime a renewal window may cover at most:
/// two thirds. A certificate has more than that left just after it is issued,
/// so one renewed by a run is never due again in the same window (re-runs
/// renew nothing), while one renewed when due still has a third of its
/// lifetime left.
pub const WINDOW_CAP: (i64, i64) = (2, 3);

/// The renewal window that applies to `rec`: `within`, capped at
/// [`WINDOW_CAP`] of the certificate's own lifetime (notAfter − notBefore).
/// The second value is whether the cap applied.
pub fn effective_window(rec: &Record, within: time::Duration) -> (time::Duration, bool) {
    let lifetime = rec.not_after - rec.not_before;
    let cap = time::Duration::seconds(lifetime.whole_seconds() * WINDOW_CAP.0 / WINDOW_CAP.1);
    if within > cap {
        (cap.max(time::Duration::ZERO), true)
    } else {
        (within, false)
    }
}

/// The rule of `renew --all --within` and `batch --renew-within`: whether the
/// certificate `rec` (the current one of its lineage: see
/// [`crate::issue::current`]) is due for renewal at `now`. It is when it is
/// neither revoked nor expired and has less than the window left, the window
/// being `within` capped at two thirds of its lifetime ([`effective_window`]).
pub fn is_due(rec: &Record, within: time::Duration, now: OffsetDateTime) -> bool {
    if rec.status_at(now) != crate::store::Status::Valid {
        return false;
    }
    let (window, _) = effective_window(rec, within);
    rec.not_after - now < window
}

/// Where the cap of [`effective_window`] applied in a run, by lifetime: the
/// `note:` a renewing command prints once ("window 91d is longer than 2/3 of
/// the 90d lifetime of 50 certificates: renewing those with less than 60d
/// left").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowCaps {
    /// Lifetime (seconds) → (certificates of that lifetime, the window applied, seconds).
    pub by_lifetime: std::collections::BTreeMap<i64, (usize, i64)>,
}

impl WindowCaps {
    /// Count `rec` when the cap applies to it under `within`.
    pub fn note(&mut self, rec: &Record, within: time::Duration) {
        let (window, capped) = effective_window(rec, within);
        if capped {
            let lifetime = (rec.not_after - rec.not_before).whole_seconds();
            let e = self
                .by_lifetime
                .entry(lifetime)
                .or_insert((0, window.whole_seconds()));
            e.0 += 1;
        }
    }

    /// Add the counts of another run's caps.
    pub fn merge(&mut self, other: &WindowCaps) {
        for (l, (n, w)) in &other.by_lifetime {
            self.by_lifetime.entry(*l).or_insert((0, *w)).0 += n;
        }
    }

    /// The note lines, one per lifetime (none when the cap never applied).
    pub fn lines(&self, within: time::Duration) -> Vec<String> {
        let span = |s: i64| crate::profile::Validity(s).to_string();
        self.by_lifetime
            .iter()
            .map(|(lifetime, (n, window))| {
                format!(
                    "window {} is longer than 2/3 of the {} lifetime of {n} certificate{}: renewing those with less than {} left",
                    span(within.whole_seconds()),
                    span(*lifetime),
                    if *n == 1 { "" } else { "s" },
                    span(*window)
                )
            })
            .collect()
    }
}

/// The certificates recorded under a request id's lineage: `first` (the
/// certificate first issued for the id) and each renewal after it, following
/// the request ids `renewal-of:SERIAL` as [`crate::issue::current`] does, in
/// that order.
pub fn lineage(store: &crate::store::Store, first: Record) -> Result<Vec<Record>> {
    let mut out = vec![first];
    // A chain of renewals is finite; the bound only guards a damaged store.
    for _ in 0..10_000 {
        let last = &out[out.len() - 1];
        match store.by_request_id(&renewal_request_id(&last.serial))? {
            Some(next) if out.iter().all(|r| r.serial != next.serial) => out.push(next),
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn rec(not_before: OffsetDateTime, lifetime: Duration) -> Record {
        Record {
            schema: crate::store::SCHEMA_VERSION,
            serial: "0a".into(),
            issuer: "device".into(),
            issuer_key_id: "00".into(),
            role: crate::role::Role::Device,
            profile: "device".into(),
            subject: String::new(),
            names: vec![],
            not_before,
            not_after: not_before + lifetime,
            sha256: String::new(),
            status: crate::store::Status::Valid,
            revocation: None,
            request_id: None,
            issued_at: not_before,
            key_file: None,
            replaces: None,
        }
    }

    const T0: OffsetDateTime = time::macros::datetime!(2026-01-01 0:00 UTC);

    #[test]
    fn a_window_shorter_than_two_thirds_applies_as_given() {
        let r = rec(T0, Duration::days(90));
        assert_eq!(
            effective_window(&r, Duration::days(30)),
            (Duration::days(30), false)
        );
        // 30d left exactly: not due (less than the window is); a second less: due.
        assert!(!is_due(&r, Duration::days(30), T0 + Duration::days(60)));
        assert!(is_due(
            &r,
            Duration::days(30),
            T0 + Duration::days(60) + Duration::seconds(1)
        ));
    }

    #[test]
    fn a_window_at_least_the_lifetime_is_capped_at_two_thirds() {
        let r = rec(T0, Duration::days(90));
        for within in [Duration::days(61), Duration::days(90), Duration::days(91)] {
            assert_eq!(effective_window(&r, within), (Duration::days(60), true));
            // Just issued: never due, however long the window.
            assert!(!is_due(&r, within, T0));
            assert!(!is_due(&r, within, T0 + Duration::days(30)));
            assert!(is_due(
                &r,
                within,
                T0 + Duration::days(30) + Duration::seconds(1)
            ));
        }
        // Exactly two thirds: not capped.
        assert_eq!(
            effective_window(&r, Duration::days(60)),
            (Duration::days(60), false)
        );
    }

    #[test]
    fn expired_and_revoked_certificates_are_never_due() {
        let mut r = rec(T0, Duration::days(90));
        assert!(!is_due(&r, Duration::days(30), T0 + Duration::days(91)));
        r.status = crate::store::Status::Revoked;
        assert!(!is_due(&r, Duration::days(30), T0 + Duration::days(89)));
    }

    #[test]
    fn the_cap_note_counts_by_lifetime() {
        let mut caps = WindowCaps::default();
        for _ in 0..50 {
            caps.note(&rec(T0, Duration::days(90)), Duration::days(91));
        }
        caps.note(&rec(T0, Duration::days(365)), Duration::days(91));
        assert_eq!(
            caps.lines(Duration::days(91)),
            ["window 91d is longer than 2/3 of the 90d lifetime of 50 certificates: renewing those with less than 60d left"]
        );
        let mut other = WindowCaps::default();
        other.note(&rec(T0, Duration::days(90)), Duration::days(91));
        caps.merge(&other);
        assert!(caps.lines(Duration::days(91))[0].contains("of 51 certificates"));
    }
}
