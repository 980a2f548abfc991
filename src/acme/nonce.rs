//! Replay nonces (RFC 8555 §6.5): 128 random bits, each accepted once, for a
//! bounded time, in a bounded pool (the oldest are forgotten first, so a client
//! that hoards nonces gets `badNonce` and retries with a fresh one).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SecureRandom;

/// Issued nonces waiting to be used once.
#[derive(Debug)]
pub struct NoncePool {
    issued: HashMap<String, Instant>,
    order: VecDeque<String>,
    capacity: usize,
    lifetime: Duration,
    rng: ring::rand::SystemRandom,
}

impl NoncePool {
    /// A pool that remembers at most `capacity` nonces, each for `lifetime`.
    pub fn new(capacity: usize, lifetime: Duration) -> NoncePool {
        NoncePool {
            issued: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            lifetime,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// A fresh nonce (base64url of 16 random bytes), remembered from `now`.
    pub fn issue(&mut self, now: Instant) -> Result<String, ring::error::Unspecified> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes)?;
        let nonce = B64.encode(bytes);
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.issued.remove(&old);
            }
        }
        self.issued.insert(nonce.clone(), now);
        self.order.push_back(nonce.clone());
        Ok(nonce)
    }

    /// Use a nonce: `true` exactly once for a nonce this pool issued within its
    /// lifetime; `false` for an unknown, used, forgotten or expired one.
    pub fn redeem(&mut self, nonce: &str, now: Instant) -> bool {
        match self.issued.remove(nonce) {
            Some(at) => {
                // The queue entry stays until it reaches the front; it no longer
                // names a live nonce.
                now.saturating_duration_since(at) <= self.lifetime
            }
            None => false,
        }
    }

    /// Take back a nonce issued at `at` (by an earlier run of the server,
    /// saved at its stop): it is accepted once, like one issued here.
    pub fn adopt(&mut self, nonce: String, at: Instant) {
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.issued.remove(&old);
            }
        }
        if self.issued.insert(nonce.clone(), at).is_none() {
            self.order.push_back(nonce);
        }
    }

    /// The nonces still live at `now`, each with its age (to hand to the next run).
    pub fn live(&self, now: Instant) -> Vec<(String, Duration)> {
        self.issued
            .iter()
            .map(|(n, at)| (n.clone(), now.saturating_duration_since(*at)))
            .filter(|(_, age)| *age <= self.lifetime)
            .collect()
    }

    /// How many nonces are live (issued, not used, not forgotten).
    pub fn len(&self) -> usize {
        self.issued.len()
    }

    /// Whether no nonce is live.
    pub fn is_empty(&self) -> bool {
        self.issued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_within_its_lifetime() {
        let t0 = Instant::now();
        let mut pool = NoncePool::new(3, Duration::from_secs(60));
        let a = pool.issue(t0).unwrap();
        assert_eq!(a.len(), 22);
        assert!(pool.redeem(&a, t0));
        assert!(!pool.redeem(&a, t0), "a replayed nonce is refused");
        assert!(!pool.redeem("made-up", t0));
        let b = pool.issue(t0).unwrap();
        assert!(!pool.redeem(&b, t0 + Duration::from_secs(61)), "expired");
    }

    #[test]
    fn the_pool_is_bounded_and_forgets_the_oldest() {
        let t0 = Instant::now();
        let mut pool = NoncePool::new(2, Duration::from_secs(60));
        let a = pool.issue(t0).unwrap();
        let b = pool.issue(t0).unwrap();
        let c = pool.issue(t0).unwrap();
        assert_eq!(pool.len(), 2);
        assert!(!pool.redeem(&a, t0));
        assert!(pool.redeem(&b, t0) && pool.redeem(&c, t0));
        assert!(pool.is_empty());
    }

    #[test]
    fn live_nonces_can_be_handed_to_another_pool_and_used_once_there() {
        let t0 = Instant::now();
        let mut a = NoncePool::new(10, Duration::from_secs(60));
        let n1 = a.issue(t0).unwrap();
        let n2 = a.issue(t0).unwrap();
        assert!(a.redeem(&n2, t0));
        let live = a.live(t0 + Duration::from_secs(5));
        assert_eq!(live, vec![(n1.clone(), Duration::from_secs(5))]);
        let t1 = t0 + Duration::from_secs(100);
        let mut b = NoncePool::new(10, Duration::from_secs(60));
        for (n, age) in live {
            b.adopt(n, t1 - age);
        }
        assert!(!b.redeem(&n2, t1), "a used nonce was not handed over");
        assert!(b.redeem(&n1, t1));
        assert!(!b.redeem(&n1, t1));
    }
}
