//! The CA's store as a revocation source: a serial it issued and revoked is
//! revoked, even before a CRL is published. Uses the store's read API only.

use super::{Record, Status, Store};
use crate::verify::{CertRef, RevocationInfo, RevocationSource};

/// A [`RevocationSource`] backed by an open [`Store`].
pub struct StoreRevocation {
    store: Store,
}

impl StoreRevocation {
    /// Answer from this store.
    pub fn new(store: Store) -> StoreRevocation {
        StoreRevocation { store }
    }
}

impl RevocationSource for StoreRevocation {
    fn revoked(&self, cert: &CertRef<'_>) -> Option<RevocationInfo> {
        let rec = serial_spellings(cert)
            .iter()
            .find_map(|s| self.store.get(s).ok().flatten())?;
        revocation_of(&rec, cert)
    }
}

/// The spellings of `cert`'s serial a record may be under: serials are
/// recorded without the DER sign byte; try both.
pub fn serial_spellings<'c>(cert: &CertRef<'c>) -> [&'c [u8]; 2] {
    let trimmed: &[u8] = match cert.serial {
        [0, rest @ ..] if !rest.is_empty() => rest,
        s => s,
    };
    [trimmed, cert.serial]
}

/// What the CA's record `rec` of `cert`'s serial says about its revocation.
pub fn revocation_of(rec: &Record, cert: &CertRef<'_>) -> Option<RevocationInfo> {
    // Another CA's certificate with the same serial is not ours to judge.
    if let Some(kid) = cert.issuer_key_id {
        if !rec
            .issuer_key_id
            .eq_ignore_ascii_case(&crate::hex::encode(kid))
        {
            return None;
        }
    }
    if rec.status != Status::Revoked {
        return None;
    }
    Some(RevocationInfo {
        revoked_at: rec.revocation.as_ref().map(|r| r.at),
        reason: rec.revocation.as_ref().map(|r| r.reason.clone()),
        source: "the CA's store".into(),
    })
}
