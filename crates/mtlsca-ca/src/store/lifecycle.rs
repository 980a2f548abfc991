//! The lifecycle half of the store: recording a batch chunk in one transaction,
//! revocation, CRL numbers.
//!
//! One more tree lives here, opened on first use:
//! - `revoked`: issuer key id ‖ serial → revocation (JSON), so a CRL reads only
//!   the revoked certificates of its issuer.
//!
//! CRL numbers are kept in `meta` under `crl_number/` ‖ issuer key id (u64 BE).

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use time::OffsetDateTime;

use super::{
    append_audit, cat, decode_record, hex_decode, index_names, insert_issued, store_err, tx_err,
    unix_be, IssueTx, Issuing, Record, Recorded, Revocation, Status, Store, AUDIT_BY_SERIAL,
};
use crate::error::{Error, Result};

const REVOKED_TREE: &str = "revoked";
const CRL_NUMBER_PREFIX: &[u8] = b"crl_number/";

/// One certificate of a chunk to record.
#[derive(Debug, Clone, Copy)]
pub struct ChunkItem<'a> {
    /// The record to store.
    pub record: &'a Record,
    /// The certificate, DER.
    pub der: &'a [u8],
    /// The issuing CA's key identifier.
    pub issuer_key_id: &'a [u8],
}

/// What `revoke` did.
#[derive(Debug)]
#[non_exhaustive]
pub enum RevokeOutcome {
    /// Revoked now (not yet flushed: call `flush`); the updated record.
    Revoked(Box<Record>),
    /// Already revoked before; the record as it stands.
    AlreadyRevoked(Box<Record>),
    /// No certificate with that serial.
    Unknown,
}

/// A revoked certificate as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial, as bytes.
    pub serial: Vec<u8>,
    /// When and why.
    pub revocation: Revocation,
}

impl Store {
    fn revoked_tree(&self) -> Result<sled::Tree> {
        self.db.open_tree(REVOKED_TREE).map_err(store_err)
    }

    /// Read, without changing anything, every entry `record_chunk` will look up
    /// or insert for `item`: in a large store those entries' pages are mostly
    /// not cached, and reading them in costs about a millisecond at 1,000,000
    /// records. Called while the item's files are being fsync'd, it takes that
    /// millisecond off the wait; the transaction then finds the pages cached.
    /// Errors are ignored: the transaction reads the same entries again.
    pub fn warm_for(&self, item: &ChunkItem<'_>) {
        let rec = item.record;
        let (Some(serial), Some(sha)) = (hex_decode(&rec.serial), hex_decode(&rec.sha256)) else {
            return;
        };
        let serial = serial.as_slice();
        let _ = self.records.get(serial);
        let _ = self.certs.get(cat(&[item.issuer_key_id, serial]));
        let _ = self.sha256.get(&sha);
        let _ = self.expiry.get(cat(&[&unix_be(rec.not_after), serial]));
        for n in index_names(rec) {
            let _ = self.names.get(cat(&[n.as_bytes(), &[0], serial]));
        }
        if let Some(id) = &rec.request_id {
            let _ = self.requests.get(id.as_bytes());
        }
        // The audit entry's by-serial index key ends in a sequence number not
        // known yet; its serial prefix lands on the same page.
        let _ = self.meta.get(cat(&[AUDIT_BY_SERIAL, serial]));
    }

    /// Record a chunk of issued certificates in ONE transaction (records, indexes,
    /// an audit entry each, in the given order). The result has one entry per item:
    /// `New` (recorded; call `flush` before linking any file), `SerialTaken` (sign
    /// that one again) or `RequestExists` (its request id was recorded meanwhile).
    pub fn record_chunk(
        &self,
        items: &[ChunkItem<'_>],
        now: OffsetDateTime,
    ) -> Result<Vec<Recorded>> {
        let encoded = items
            .iter()
            .map(|i| Issuing::new(i.record, i.der, i.issuer_key_id))
            .collect::<Result<Vec<_>>>()?;
        self.issue_trees()
            .transaction(|t| {
                let tx = IssueTx::of(t);
                let mut out = Vec::with_capacity(encoded.len());
                for item in &encoded {
                    out.push(insert_issued(&tx, item, now)?.unwrap_or(Recorded::New));
                }
                Ok(out)
            })
            .map_err(tx_err)
    }

    /// Mark a certificate revoked (by its serial bytes), with when and why, and
    /// append an audit entry: one transaction. Call `flush` afterwards.
    pub fn revoke(
        &self,
        serial: &[u8],
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<RevokeOutcome> {
        let revoked = self.revoked_tree()?;
        let result = (&self.records, &revoked, &self.audit, &self.meta).transaction(
            |(records, revoked, audit, meta)| {
                let Some(bytes) = records.get(serial)? else {
                    return Ok(RevokeOutcome::Unknown);
                };
                let mut rec = decode_record(&bytes).map_err(ConflictableTransactionError::Abort)?;
                if rec.status == Status::Revoked {
                    return Ok(RevokeOutcome::AlreadyRevoked(Box::new(rec)));
                }
                let revocation = Revocation {
                    at: now,
                    reason: reason.to_string(),
                };
                rec.status = Status::Revoked;
                rec.revocation = Some(revocation.clone());
                let abort =
                    |e: serde_json::Error| ConflictableTransactionError::Abort(store_err(e));
                records.insert(serial, serde_json::to_vec(&rec).map_err(abort)?)?;
                let kid = hex_decode(&rec.issuer_key_id).unwrap_or_default();
                revoked.insert(
                    cat(&[&kid, serial]),
                    serde_json::to_vec(&revocation).map_err(abort)?,
                )?;
                append_audit(
                    audit,
                    meta,
                    now,
                    "revoke",
                    Some(&rec.serial),
                    rec.request_id.as_deref(),
                    &format!("reason {reason}"),
                )?;
                Ok(RevokeOutcome::Revoked(Box::new(rec)))
            },
        );
        let outcome = result.map_err(tx_err)?;
        if matches!(outcome, RevokeOutcome::Revoked(_)) {
            self.revocations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// How many certificates were revoked through this handle since the store
    /// was opened, whatever operation revoked them: what tells the publisher
    /// of CRLs (`serve`'s, or a local command's) that the CRLs are out of date.
    /// Every revocation goes through [`Store::revoke`], so nothing escapes it.
    pub fn revocations(&self) -> u64 {
        self.revocations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Record that every CRL was published covering the first `revocations`
    /// revocations of this handle ([`Store::revocations`]).
    pub fn note_published(&self, revocations: u64) {
        self.published_upto
            .fetch_max(revocations, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this handle revoked a certificate that no CRL published since
    /// lists (a local command then publishes them before it ends).
    pub fn unpublished_revocations(&self) -> bool {
        self.revocations()
            > self
                .published_upto
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The revoked certificates of one issuer (by its key identifier), in serial order.
    pub fn revoked_by(&self, issuer_key_id: &[u8]) -> Result<Vec<RevokedEntry>> {
        let mut out = Vec::new();
        for item in self.revoked_tree()?.scan_prefix(issuer_key_id) {
            let (k, v) = item.map_err(store_err)?;
            let revocation: Revocation = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("damaged revocation entry: {e}")))?;
            out.push(RevokedEntry {
                serial: k[issuer_key_id.len()..].to_vec(),
                revocation,
            });
        }
        Ok(out)
    }

    /// Record that an issuer's CRL `number` is published (it must be the last
    /// recorded + 1, so numbers only ever grow and none is used twice), with an
    /// audit entry, in one transaction. Call `flush` afterwards.
    pub fn record_crl_number(
        &self,
        issuer: &str,
        issuer_key_id: &[u8],
        number: u64,
        listed: usize,
        now: OffsetDateTime,
    ) -> Result<()> {
        let key = cat(&[CRL_NUMBER_PREFIX, issuer_key_id]);
        let result = (&self.audit, &self.meta).transaction(|(audit, meta)| {
            let last = match meta.get(&key)? {
                Some(v) if v.len() == 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&v);
                    u64::from_be_bytes(b)
                }
                _ => 0,
            };
            if number != last + 1 {
                return Err(ConflictableTransactionError::Abort(Error::State(format!(
                    "{issuer} CRL number {number} does not follow the last recorded one ({last})"
                ))));
            }
            meta.insert(key.as_slice(), &number.to_be_bytes())?;
            // When this issuer last published: `tidy` archives a revoked
            // certificate only after a CRL later than its notAfter.
            meta.insert(
                cat(&[super::archive::CRL_TIME_PREFIX, issuer_key_id]),
                &unix_be(now),
            )?;
            append_audit(
                audit,
                meta,
                now,
                "crl",
                None,
                None,
                &format!("{issuer} CRL number {number}, {listed} revoked"),
            )?;
            Ok(())
        });
        result.map_err(tx_err)
    }

    /// The last CRL number issued by an issuer (0 when none was).
    pub fn crl_number(&self, issuer_key_id: &[u8]) -> Result<u64> {
        let key = cat(&[CRL_NUMBER_PREFIX, issuer_key_id]);
        Ok(match self.meta.get(key).map_err(store_err)? {
            Some(v) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                u64::from_be_bytes(b)
            }
            _ => 0,
        })
    }
}
