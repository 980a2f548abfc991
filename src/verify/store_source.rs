//! The CA's store as a revocation source: a serial it issued and revoked is
//! revoked, even before a CRL is published. Uses the store's read API only.

use super::{CertRef, RevocationInfo, RevocationSource};
use crate::store::{Status, Store};

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
        // Serials are recorded without the DER sign byte; try both spellings.
        let trimmed: &[u8] = match cert.serial {
            [0, rest @ ..] if !rest.is_empty() => rest,
            s => s,
        };
        let rec = [trimmed, cert.serial]
            .iter()
            .find_map(|s| self.store.get(s).ok().flatten())?;
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
}
