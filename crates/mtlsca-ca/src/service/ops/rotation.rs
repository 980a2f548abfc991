//! The operations of rotation: retiring the certificate a renewal replaced
//! (`--revoke-old [--grace SPAN]`), the retirements pending, and revoking
//! every certificate of a request id's lineage (`revoke ID`).

use time::OffsetDateTime;

use super::{Cx, Operation};
use crate::crl::Reason;
use crate::error::{Error, Result};
use crate::store::{PendingRetirement, Record, Retired, Store};

/// What retiring one certificate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retirement {
    /// The certificate retired, as it stands afterwards.
    pub record: Record,
    /// Revoked by this call (superseded, now).
    pub revoked: bool,
    /// When it will be revoked, when that is later.
    pub due: Option<OffsetDateTime>,
}

/// Retire the certificate with this serial: revoke it as superseded now, or
/// after `grace` (a pending retirement, applied by
/// [`Store::apply_due_retirements`]).
#[derive(Debug, Clone)]
pub struct Retire {
    /// The serial (lowercase hex, as recorded).
    pub serial: String,
    /// How long it stays valid.
    pub grace: Option<time::Duration>,
}

impl Operation for Retire {
    type Answer = Retirement;

    fn run(self, cx: &mut Cx<'_>) -> Result<Retirement> {
        let store = cx.store;
        store.apply_due_retirements(cx.now)?;
        let serial = crate::store::hex_decode(&self.serial)
            .ok_or_else(|| Error::Usage(format!("`{}` is not a serial", self.serial)))?;
        let due = cx.now + self.grace.unwrap_or(time::Duration::ZERO);
        let out = match store.retire(&serial, due, cx.now)? {
            Retired::Revoked(r) => Retirement {
                record: *r,
                revoked: true,
                due: None,
            },
            Retired::AlreadyRevoked(r) => Retirement {
                record: *r,
                revoked: false,
                due: None,
            },
            Retired::Scheduled(p) => Retirement {
                record: store
                    .get(&serial)?
                    .ok_or_else(|| Error::Store(format!("record {} is gone", p.serial)))?,
                revoked: false,
                due: Some(p.due),
            },
        };
        store.flush()?;
        Ok(out)
    }
}

/// Turn the retirements due by now into revocations (`superseded`, dated at
/// their due time): `renew --all` and `batch` before they look at what is
/// valid. How many were applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyRetirements;

impl Operation for ApplyRetirements {
    type Answer = u64;

    fn run(self, cx: &mut Cx<'_>) -> Result<u64> {
        Ok(cx.store.apply_due_retirements(cx.now)?.len() as u64)
    }
}

/// Every pending retirement, due or not (`show`, `list`): read only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retiring;

impl Operation for Retiring {
    type Answer = Vec<PendingRetirement>;

    fn run(self, cx: &mut Cx<'_>) -> Result<Vec<PendingRetirement>> {
        // A read: `list` and `show` write nothing (the due ones are applied by
        // the next command that revokes or publishes CRLs, and by `serve`).
        cx.store.pending_retirements()
    }
}

/// What `revoke` revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedLineage {
    /// The request id whose lineage was revoked (none when the query named
    /// one certificate: a serial, a fingerprint or a file).
    pub request_id: Option<String>,
    /// The certificates revoked by this call, oldest first.
    pub revoked: Vec<Record>,
}

/// Revoke what a query names: one certificate (a serial, prefix, fingerprint
/// or file), or, for a request id, every unexpired, unrevoked certificate
/// recorded under it and under its renewals.
#[derive(Debug, Clone)]
pub struct RevokeLineage {
    /// Serial, prefix, SHA-256, request id or certificate file (absolute).
    pub query: String,
    /// The RFC 5280 reason.
    pub reason: Reason,
}

impl Operation for RevokeLineage {
    type Answer = RevokedLineage;

    fn run(self, cx: &mut Cx<'_>) -> Result<RevokedLineage> {
        let (store, now) = (cx.store, cx.now);
        store.apply_due_retirements(now)?;
        let Some(first) = request_id_record(store, &self.query)? else {
            let named = crate::lookup::resolve(store, &self.query)?;
            let rec = crate::crl::revoke(store, &named.serial, self.reason, now)?;
            return Ok(RevokedLineage {
                request_id: None,
                revoked: vec![rec],
            });
        };
        let lineage = crate::renew::lineage(store, first)?;
        let mut revoked = Vec::new();
        for r in &lineage {
            if r.status_at(now) != crate::store::Status::Valid {
                continue;
            }
            if let crate::store::RevokeOutcome::Revoked(rec) =
                store.revoke(&r.serial_bytes(), self.reason.as_str(), now)?
            {
                revoked.push(*rec);
            }
        }
        if revoked.is_empty() {
            return Err(Error::refused_by(
                crate::rules::Rule::AlreadyRevoked,
                format!(
                    "every certificate recorded under request id `{}` ({}) is already revoked or expired",
                    crate::names::printable(&self.query),
                    lineage
                        .iter()
                        .map(|r| r.serial.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        store.flush()?;
        Ok(RevokedLineage {
            request_id: Some(self.query),
            revoked,
        })
    }
}

/// The first certificate recorded under the request id `query`, when the
/// query names a certificate by its request id (as [`crate::lookup::resolve`]
/// reads it: a file, a serial or a fingerprint first).
fn request_id_record(store: &Store, query: &str) -> Result<Option<Record>> {
    if crate::lookup::looks_like_file(query) {
        return Ok(None);
    }
    let hex: String = query
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) && store.find(&hex)?.is_some()
    {
        return Ok(None);
    }
    store.by_request_id(query)
}
