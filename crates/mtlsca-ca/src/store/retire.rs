//! Retirement: the certificate a renewal replaced, revoked as `superseded`
//! at once or after a grace period (`--revoke-old --grace SPAN`).
//!
//! A deferred retirement is recorded (with an audit entry) in two trees,
//! opened on first use:
//! - `retire_due`:    due time (u64 BE seconds) ‖ serial → ()
//! - `retire_serial`: serial → the pending retirement (JSON)
//!
//! and becomes a real revocation, dated at its due time, when
//! [`Store::apply_due_retirements`] runs after that time: the CRL code calls
//! it before signing, and so do `renew`, `batch`, `revoke` and `store check`.

use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use time::OffsetDateTime;

use super::{append_audit, cat, hex_decode, store_err, tx_err, unix_be, Record, Status, Store};
use crate::error::{Error, Result};

const DUE_TREE: &str = "retire_due";
const SERIAL_TREE: &str = "retire_serial";

/// The reason every retirement is revoked with.
pub const RETIRE_REASON: &str = "superseded";

/// A retirement recorded for later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRetirement {
    /// The certificate to revoke.
    pub serial: String,
    /// Its issuing CA (`device`, `entity`).
    pub issuer: String,
    /// When it is revoked.
    #[serde(with = "time::serde::rfc3339")]
    pub due: OffsetDateTime,
    /// Why (`superseded`).
    pub reason: String,
}

/// What [`Store::retire`] did with a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retired {
    /// Revoked now (not yet flushed).
    Revoked(Box<Record>),
    /// Revoked before this call (by anyone): nothing done.
    AlreadyRevoked(Box<Record>),
    /// Recorded for later (not yet flushed); or recorded before, with the
    /// earlier due time kept.
    Scheduled(PendingRetirement),
}

impl Store {
    fn retire_trees(&self) -> Result<(sled::Tree, sled::Tree)> {
        let t = |n: &str| self.db.open_tree(n).map_err(store_err);
        Ok((t(DUE_TREE)?, t(SERIAL_TREE)?))
    }

    /// Retire the certificate `serial` (bytes): revoke it as `superseded` at
    /// `now` when `due` is not after `now`, else record it to be revoked at
    /// `due` (with an audit entry, in one transaction; a retirement recorded
    /// before keeps the earlier due time). Call `flush` afterwards.
    pub fn retire(
        &self,
        serial: &[u8],
        due: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Retired> {
        let rec = self.get(serial)?.ok_or_else(|| {
            Error::refused(format!(
                "no certificate with serial {}",
                crate::hex::encode(serial)
            ))
        })?;
        if rec.status == Status::Revoked {
            return Ok(Retired::AlreadyRevoked(Box::new(rec)));
        }
        if due <= now {
            return Ok(match self.revoke(serial, RETIRE_REASON, now)? {
                super::RevokeOutcome::Revoked(r) => Retired::Revoked(r),
                super::RevokeOutcome::AlreadyRevoked(r) => Retired::AlreadyRevoked(r),
                super::RevokeOutcome::Unknown => {
                    return Err(Error::refused(format!(
                        "no certificate with serial {}",
                        rec.serial
                    )))
                }
            });
        }
        let (due_tree, serial_tree) = self.retire_trees()?;
        let pending = PendingRetirement {
            serial: rec.serial.clone(),
            issuer: rec.issuer.clone(),
            due: due.replace_nanosecond(0).unwrap_or(due),
            reason: RETIRE_REASON.into(),
        };
        let json = serde_json::to_vec(&pending).map_err(store_err)?;
        let result = (&due_tree, &serial_tree, &self.audit, &self.meta).transaction(
            |(due_tree, serial_tree, audit, meta)| {
                if let Some(v) = serial_tree.get(serial)? {
                    let before: PendingRetirement = serde_json::from_slice(&v).map_err(|e| {
                        ConflictableTransactionError::Abort(Error::Store(format!(
                            "damaged retirement entry: {e}"
                        )))
                    })?;
                    if before.due <= pending.due {
                        return Ok(before);
                    }
                    due_tree.remove(cat(&[&unix_be(before.due), serial]))?;
                }
                due_tree.insert(cat(&[&unix_be(pending.due), serial]), &[] as &[u8])?;
                serial_tree.insert(serial, json.as_slice())?;
                append_audit(
                    audit,
                    meta,
                    now,
                    "retire",
                    Some(&rec.serial),
                    rec.request_id.as_deref(),
                    &format!(
                        "revoke as {RETIRE_REASON} at {}",
                        crate::timefmt::rfc3339(pending.due)
                    ),
                )?;
                Ok(pending.clone())
            },
        );
        result.map(Retired::Scheduled).map_err(tx_err)
    }

    /// The retirement recorded for a serial, if one is pending.
    pub fn pending_retirement(&self, serial: &str) -> Result<Option<PendingRetirement>> {
        let Some(bytes) = hex_decode(serial) else {
            return Ok(None);
        };
        let (_, serial_tree) = self.retire_trees()?;
        match serial_tree.get(bytes).map_err(store_err)? {
            None => Ok(None),
            Some(v) => decode_pending(&v).map(Some),
        }
    }

    /// Every pending retirement, earliest due first.
    pub fn pending_retirements(&self) -> Result<Vec<PendingRetirement>> {
        let (due_tree, serial_tree) = self.retire_trees()?;
        let mut out = Vec::new();
        for item in due_tree.iter() {
            let (k, _) = item.map_err(store_err)?;
            if let Some(v) = serial_tree.get(&k[8..]).map_err(store_err)? {
                out.push(decode_pending(&v)?);
            }
        }
        Ok(out)
    }

    /// Turn every retirement due at `now` into a revocation (reason
    /// `superseded`, revocation and audit entry dated at its due time) and
    /// make them durable; the certificates revoked, earliest first. Cheap when
    /// nothing is due (one read of an index range), so every command that
    /// touches revocations calls it: the CRL code before it signs, `renew`,
    /// `batch`, `revoke`, `store check`, and `serve`'s CRL publisher. A
    /// certificate revoked meanwhile by other means is only taken off the list.
    pub fn apply_due_retirements(&self, now: OffsetDateTime) -> Result<Vec<Record>> {
        let (due_tree, serial_tree) = self.retire_trees()?;
        let mut end = unix_be(now).to_vec();
        end.push(0xff);
        let due: Vec<sled::IVec> = due_tree
            .range(..end)
            .keys()
            .collect::<sled::Result<_>>()
            .map_err(store_err)?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut revoked = Vec::new();
        for key in &due {
            let serial = &key[8..];
            let pending = match serial_tree.get(serial).map_err(store_err)? {
                Some(v) => decode_pending(&v)?,
                None => {
                    due_tree.remove(key).map_err(store_err)?;
                    continue;
                }
            };
            // The revocation first: a crash before the entry is removed leaves
            // an entry the next call finds revoked and removes.
            if let super::RevokeOutcome::Revoked(r) =
                self.revoke(serial, &pending.reason, pending.due)?
            {
                revoked.push(*r);
            }
            (&due_tree, &serial_tree)
                .transaction(|(d, s)| {
                    d.remove(key)?;
                    s.remove(serial)?;
                    Ok::<_, ConflictableTransactionError<Error>>(())
                })
                .map_err(tx_err)?;
        }
        self.flush()?;
        Ok(revoked)
    }
}

fn decode_pending(v: &[u8]) -> Result<PendingRetirement> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("damaged retirement entry: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{IssuanceRequest, Issuer, KeySource, Output};
    use time::Duration;

    fn issue_one(ca: &crate::ca::Ca, store: &Store, now: OffsetDateTime) -> Record {
        let req = IssuanceRequest {
            profile: "device".into(),
            content: crate::policy::RequestedContent {
                dns: vec!["h.test".into()],
                ..Default::default()
            },
            key: KeySource::Generate(None),
            request_id: None,
            output: Output::None,
            origin: crate::rules::Origin::Arguments,
            replaces: None,
        };
        Issuer::new(ca, store)
            .unwrap()
            .issue(&req, now)
            .unwrap()
            .record
    }

    #[test]
    fn a_deferred_retirement_is_applied_at_its_due_time_once() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let rec = issue_one(&ca, &store, now);
        let due = now + Duration::hours(1);
        let r = store.retire(&rec.serial_bytes(), due, now).unwrap();
        assert!(matches!(&r, Retired::Scheduled(p) if p.due == due), "{r:?}");
        // A later due time does not move it.
        let again = store
            .retire(&rec.serial_bytes(), due + Duration::hours(5), now)
            .unwrap();
        assert!(matches!(&again, Retired::Scheduled(p) if p.due == due));
        assert_eq!(store.pending_retirements().unwrap().len(), 1);
        assert_eq!(
            store.pending_retirement(&rec.serial).unwrap().unwrap().due,
            due
        );
        // Not yet due: nothing happens, to the second.
        assert!(store
            .apply_due_retirements(due - Duration::seconds(1))
            .unwrap()
            .is_empty());
        let kid = hex_decode(&rec.issuer_key_id).unwrap();
        assert!(store.revoked_by(&kid).unwrap().is_empty());
        let done = store
            .apply_due_retirements(due + Duration::hours(1))
            .unwrap();
        assert_eq!(done.len(), 1);
        let got = store.get(&rec.serial_bytes()).unwrap().unwrap();
        assert_eq!(got.status, Status::Revoked);
        let rev = got.revocation.unwrap();
        assert_eq!((rev.at, rev.reason.as_str()), (due, "superseded"));
        assert_eq!(store.revoked_by(&kid).unwrap().len(), 1);
        assert!(store.pending_retirements().unwrap().is_empty());
        assert!(store
            .apply_due_retirements(due + Duration::hours(2))
            .unwrap()
            .is_empty());
        let trail = store.audit_of(&rec.serial).unwrap();
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["issue", "retire", "revoke"]);
        assert_eq!(trail[2].at, due);
    }

    #[test]
    fn a_retirement_due_now_revokes_at_once_and_a_revoked_one_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let (ca, store) = crate::ca::test_ca(dir.path(), now);
        let rec = issue_one(&ca, &store, now);
        let r = store.retire(&rec.serial_bytes(), now, now).unwrap();
        assert!(matches!(r, Retired::Revoked(_)));
        let r = store.retire(&rec.serial_bytes(), now, now).unwrap();
        assert!(matches!(r, Retired::AlreadyRevoked(_)));
        // Scheduled, then revoked by other means: the entry is only dropped.
        let other = issue_one(&ca, &store, now);
        store
            .retire(&other.serial_bytes(), now + Duration::hours(1), now)
            .unwrap();
        store
            .revoke(&other.serial_bytes(), "keyCompromise", now)
            .unwrap();
        assert!(store
            .apply_due_retirements(now + Duration::hours(2))
            .unwrap()
            .is_empty());
        assert!(store.pending_retirements().unwrap().is_empty());
        let got = store.get(&other.serial_bytes()).unwrap().unwrap();
        assert_eq!(got.revocation.unwrap().reason, "keyCompromise");
    }
}
