//! Replay nonces (RFC 8555 §6.5) that cost the server nothing to hand out.
//!
//! A nonce is a counter and its HMAC-SHA256 under a key of this run
//! (base64url of 8 + 32 bytes). The counter carries the second it was issued
//! in (`seconds << 20 | sequence`), so a nonce's age is read from the nonce
//! itself. Issuing one stores nothing: a client that fetches nonces by the
//! million grows no table and pushes nobody's nonce out. Redeeming one checks
//! the HMAC, the age (at most the lifetime) and that its counter is not in the
//! set of counters already redeemed; the set only holds redeemed nonces still
//! within their lifetime, and is bounded: past [`NonceBook::capacity`] the
//! oldest redeemed counters are dropped and every nonce issued before them is
//! refused from then on (its client gets `badNonce` and retries with the fresh
//! nonce that answer carries). Redemptions come only from POSTs, which the
//! server's request limits bound per client.
//!
//! At a clean stop the book (key, counters, redeemed set) is handed to the next
//! run ([`NonceBook::saved`], [`NonceBook::restore`]), so a nonce issued before
//! the stop is accepted once after it. After a crash nothing was saved: the
//! next run has a new key, and every earlier nonce is refused.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

/// Bits of the counter below the issuing second.
const SEQUENCE_BITS: u32 = 20;
const COUNTER_BYTES: usize = 8;
const TAG_BYTES: usize = 32;

/// The nonces of one server: a key, the last counter issued, the counters
/// redeemed within the lifetime.
pub struct NonceBook {
    key_bytes: [u8; 32],
    key: hmac::Key,
    last: u64,
    /// Counters below this are refused (raised when the redeemed set is full).
    floor: u64,
    redeemed: BTreeSet<u64>,
    capacity: usize,
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceBook")
            .field("redeemed", &self.redeemed.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// What a clean stop hands to the next run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedNonces {
    key: Vec<u8>,
    last: u64,
    floor: u64,
    redeemed: Vec<u64>,
}

impl NonceBook {
    /// A book with a new random key, remembering at most `capacity` redeemed
    /// nonces, each nonce accepted for `lifetime_secs`.
    pub fn new(capacity: usize, lifetime_secs: u64) -> Result<NonceBook, ring::error::Unspecified> {
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut key)?;
        Ok(NonceBook::with_key(key, capacity, lifetime_secs))
    }

    fn with_key(key_bytes: [u8; 32], capacity: usize, lifetime_secs: u64) -> NonceBook {
        NonceBook {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key_bytes),
            key_bytes,
            last: 0,
            floor: 0,
            redeemed: BTreeSet::new(),
            capacity: capacity.max(1),
            lifetime_secs,
        }
    }

    /// The most redeemed nonces remembered.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A fresh nonce, issued at `now` (Unix seconds).
    pub fn issue(&mut self, now: u64) -> String {
        let counter = (self.last + 1).max(now << SEQUENCE_BITS);
        self.last = counter;
        let c = counter.to_be_bytes();
        let tag = hmac::sign(&self.key, &c);
        let mut raw = [0u8; COUNTER_BYTES + TAG_BYTES];
        raw[..COUNTER_BYTES].copy_from_slice(&c);
        raw[COUNTER_BYTES..].copy_from_slice(tag.as_ref());
        B64.encode(raw)
    }

    /// Use a nonce at `now`: `true` exactly once for a nonce this book issued
    /// within its lifetime; `false` for a forged, used, expired or too old one.
    pub fn redeem(&mut self, nonce: &str, now: u64) -> bool {
        let Some(counter) = self.counter_of(nonce) else {
            return false;
        };
        let issued = counter >> SEQUENCE_BITS;
        let oldest = now.saturating_sub(self.lifetime_secs);
        if counter < self.floor || issued < oldest || counter > self.last {
            return false;
        }
        // Redeemed counters past their lifetime are refused by age anyway.
        while let Some(first) = self.redeemed.first().copied() {
            if first >> SEQUENCE_BITS >= oldest {
                break;
            }
            self.redeemed.pop_first();
        }
        if !self.redeemed.insert(counter) {
            return false;
        }
        while self.redeemed.len() > self.capacity {
            if let Some(first) = self.redeemed.pop_first() {
                self.floor = self.floor.max(first + 1);
            }
        }
        true
    }

    /// The counter of a nonce whose HMAC verifies.
    fn counter_of(&self, nonce: &str) -> Option<u64> {
        if nonce.len() != ((COUNTER_BYTES + TAG_BYTES) * 4).div_ceil(3) {
            return None;
        }
        let raw = B64.decode(nonce).ok()?;
        if raw.len() != COUNTER_BYTES + TAG_BYTES {
            return None;
        }
        let (c, tag) = raw.split_at(COUNTER_BYTES);
        hmac::verify(&self.key, c, tag).ok()?;
        Some(u64::from_be_bytes(c.try_into().ok()?))
    }

    /// How many redeemed nonces are remembered.
    pub fn redeemed(&self) -> usize {
        self.redeemed.len()
    }

    /// The book as a clean stop hands it on.
    pub fn saved(&self) -> SavedNonces {
        SavedNonces {
            key: self.key_bytes.to_vec(),
            last: self.last,
            floor: self.floor,
            redeemed: self.redeemed.iter().copied().collect(),
        }
    }

    /// The book a clean stop saved, with this run's limits; `None` when the
    /// saved form is damaged (the caller then starts a new book, refusing every
    /// earlier nonce).
    pub fn restore(saved: SavedNonces, capacity: usize, lifetime_secs: u64) -> Option<NonceBook> {
        let key: [u8; 32] = saved.key.try_into().ok()?;
        let mut book = NonceBook::with_key(key, capacity, lifetime_secs);
        book.last = saved.last;
        book.floor = saved.floor;
        book.redeemed = saved.redeemed.into_iter().collect();
        while book.redeemed.len() > book.capacity {
            if let Some(first) = book.redeemed.pop_first() {
                book.floor = book.floor.max(first + 1);
            }
        }
        Some(book)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_nonce_is_accepted_once_within_its_lifetime() {
        let mut book = NonceBook::new(3, 60).unwrap();
        let a = book.issue(T0);
        assert_eq!(a.len(), 54);
        assert!(book.redeem(&a, T0));
        assert!(!book.redeem(&a, T0), "a replayed nonce is refused");
        assert!(!book.redeem("made-up", T0));
        let b = book.issue(T0);
        assert!(!book.redeem(&b, T0 + 61), "expired");
        let c = book.issue(T0 + 100);
        assert!(book.redeem(&c, T0 + 160), "within its lifetime");
    }

    #[test]
    fn a_forged_or_tampered_nonce_is_refused() {
        let mut book = NonceBook::new(10, 60).unwrap();
        let other = NonceBook::new(10, 60).unwrap().issue(T0);
        assert!(!book.redeem(&other, T0), "another key's nonce");
        let n = book.issue(T0);
        let mut raw = B64.decode(&n).unwrap();
        raw[7] ^= 1;
        assert!(!book.redeem(&B64.encode(&raw), T0), "another counter");
        assert!(book.redeem(&n, T0));
    }

    #[test]
    fn issuing_stores_nothing_so_a_flood_of_nonces_pushes_out_nobody() {
        let mut book = NonceBook::new(4, 60).unwrap();
        let mine = book.issue(T0);
        for _ in 0..100_000 {
            book.issue(T0);
        }
        assert_eq!(book.redeemed(), 0);
        assert!(book.redeem(&mine, T0 + 1));
    }

    #[test]
    fn the_redeemed_set_is_bounded_and_then_older_nonces_are_refused() {
        let mut book = NonceBook::new(2, 60).unwrap();
        let old = book.issue(T0);
        let n: Vec<String> = (0..3).map(|_| book.issue(T0 + 1)).collect();
        for x in &n {
            assert!(book.redeem(x, T0 + 1));
        }
        assert_eq!(book.redeemed(), 2);
        assert!(!book.redeem(&n[0], T0 + 1), "still refused as too old");
        assert!(!book.redeem(&old, T0 + 1), "issued before the dropped ones");
        let fresh = book.issue(T0 + 2);
        assert!(book.redeem(&fresh, T0 + 2));
        // Redeemed counters past their lifetime are forgotten.
        let late = book.issue(T0 + 100);
        assert!(book.redeem(&late, T0 + 100));
        assert_eq!(book.redeemed(), 1);
    }

    #[test]
    fn a_saved_book_accepts_its_unused_nonces_once_after_a_restart() {
        let mut a = NonceBook::new(10, 60).unwrap();
        let n1 = a.issue(T0);
        let n2 = a.issue(T0);
        assert!(a.redeem(&n2, T0));
        let saved: SavedNonces =
            serde_json::from_str(&serde_json::to_string(&a.saved()).unwrap()).unwrap();
        let mut b = NonceBook::restore(saved, 10, 60).unwrap();
        assert!(!b.redeem(&n2, T0 + 5), "a used nonce stays used");
        assert!(b.redeem(&n1, T0 + 5));
        assert!(!b.redeem(&n1, T0 + 5));
        let n3 = b.issue(T0 + 5);
        assert_ne!(n3, n1);
        assert!(b.redeem(&n3, T0 + 5));
        // A new book (after a crash) accepts none of them.
        let mut c = NonceBook::new(10, 60).unwrap();
        assert!(!c.redeem(&n1, T0 + 5));
    }
}
