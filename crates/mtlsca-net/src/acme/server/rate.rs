//! Token buckets: the request rates of client networks and of accounts, and
//! the new accounts of a client network (issue 22's limits, `AcmeLimits`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::conn_limit::client_network;

/// Client networks tracked at once by one [`ClientBuckets`].
pub(super) const MAX_TRACKED_NETWORKS: usize = 10_000;

/// A rate: `per_sec` tokens a second, in bursts of at most `burst`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rate {
    pub(super) per_sec: f64,
    pub(super) burst: f64,
}

impl Rate {
    /// `n` an hour, in bursts of as many.
    pub(super) fn per_hour(n: u32) -> Rate {
        Rate {
            per_sec: f64::from(n) / 3600.0,
            burst: f64::from(n),
        }
    }

    /// `n` a second, in bursts of twice that.
    pub(super) fn per_second(n: u32) -> Rate {
        Rate {
            per_sec: f64::from(n),
            burst: 2.0 * f64::from(n),
        }
    }
}

/// Token buckets, one per client network ([`client_network`]). A network
/// whose bucket is full again is forgotten, so the table holds only recent
/// clients, and never more than [`MAX_TRACKED_NETWORKS`]: while it is full of
/// networks still refilling, new networks wait too (else coming from ever new
/// addresses would grow it without bound).
#[derive(Default)]
pub(super) struct ClientBuckets {
    /// Tokens left and when they were counted, per network.
    map: HashMap<IpAddr, (f64, Instant)>,
}

/// Why [`ClientBuckets::take`] refused, with the seconds until it would not.
#[derive(Debug, PartialEq)]
pub(super) enum ClientLimit {
    /// This network used its rate.
    Network(u32),
    /// The table is full of networks that came recently.
    Table(u32),
}

impl ClientBuckets {
    /// One token for a client at `ip` at `now`.
    pub(super) fn take(&mut self, ip: IpAddr, rate: Rate, now: Instant) -> Result<(), ClientLimit> {
        let level = |b: &(f64, Instant)| {
            (b.0 + now.saturating_duration_since(b.1).as_secs_f64() * rate.per_sec).min(rate.burst)
        };
        let wait_secs = |t: f64| t.ceil().clamp(1.0, 3600.0) as u32;
        let net = client_network(ip);
        if !self.map.contains_key(&net) && self.map.len() >= MAX_TRACKED_NETWORKS {
            self.map.retain(|_, b| level(b) < rate.burst);
            if self.map.len() >= MAX_TRACKED_NETWORKS {
                // The first bucket to fill up again frees a place.
                let wait = self
                    .map
                    .values()
                    .map(|b| (rate.burst - level(b)) / rate.per_sec)
                    .fold(f64::INFINITY, f64::min);
                return Err(ClientLimit::Table(wait_secs(wait)));
            }
        }
        let b = self.map.entry(net).or_insert((rate.burst, now));
        b.0 = level(b);
        b.1 = now;
        if b.0 < 1.0 {
            return Err(ClientLimit::Network(wait_secs((1.0 - b.0) / rate.per_sec)));
        }
        b.0 -= 1.0;
        Ok(())
    }
}

/// Token buckets, one per account (`--acme-rate-limit`): `per_sec` requests
/// a second, in bursts of twice that. An account's bucket is forgotten with
/// the account, so the table is bounded by the accounts.
#[derive(Default)]
pub(super) struct AccountBuckets {
    /// Tokens left and when they were counted, per account id.
    map: HashMap<String, (f64, Instant)>,
}

impl AccountBuckets {
    /// One token of `account`'s bucket at `now`; false when it has none.
    pub(super) fn take(&mut self, account: &str, per_sec: u32, now: Instant) -> bool {
        let rate = f64::from(per_sec);
        let b = self
            .map
            .entry(account.to_string())
            .or_insert((2.0 * rate, now));
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(2.0 * rate);
        b.1 = now;
        if b.0 < 1.0 {
            return false;
        }
        b.0 -= 1.0;
        true
    }

    /// Forget a removed account's bucket.
    pub(super) fn forget(&mut self, account: &str) {
        self.map.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clients_are_limited_per_network_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut b = ClientBuckets::default();
        let rate = Rate::per_hour(2);
        let ip = |i: u128| IpAddr::V6(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | i));
        // Two an hour: the third from another address of the same /64 waits
        // half an hour for its token.
        assert_eq!(b.take(ip(1), rate, t0), Ok(()));
        assert_eq!(b.take(ip(2), rate, t0), Ok(()));
        assert_eq!(b.take(ip(3), rate, t0), Err(ClientLimit::Network(1800)));
        assert_eq!(b.take(ip(4), rate, t0 + Duration::from_secs(1800)), Ok(()));
        // Other /64s, each still refilling, fill the table; then a new network
        // waits until the first bucket is full again, and is let in then.
        let mut t = t0 + Duration::from_secs(1800);
        for n in 1..MAX_TRACKED_NETWORKS as u128 {
            assert_eq!(b.take(ip(n << 64), rate, t), Ok(()));
        }
        t += Duration::from_secs(1);
        let refused = b.take(ip(1 << 90), rate, t);
        assert!(
            matches!(refused, Err(ClientLimit::Table(s)) if (1700..=1800).contains(&s)),
            "{refused:?}"
        );
        assert_eq!(b.map.len(), MAX_TRACKED_NETWORKS);
        assert_eq!(
            b.take(ip(1 << 90), rate, t + Duration::from_secs(1800)),
            Ok(())
        );
        assert!(b.map.len() <= MAX_TRACKED_NETWORKS);
        // A per-second rate: bursts of twice the rate, then one token each 1/rate s.
        let mut r = ClientBuckets::default();
        let fast = Rate::per_second(2);
        for _ in 0..4 {
            assert_eq!(r.take(ip(7), fast, t0), Ok(()));
        }
        assert_eq!(r.take(ip(7), fast, t0), Err(ClientLimit::Network(1)));
        assert_eq!(r.take(ip(7), fast, t0 + Duration::from_millis(500)), Ok(()));
    }

    #[test]
    fn an_account_gets_bursts_of_twice_its_rate_and_is_forgotten_with_it() {
        let t0 = Instant::now();
        let mut b = AccountBuckets::default();
        for _ in 0..4 {
            assert!(b.take("a", 2, t0));
        }
        assert!(!b.take("a", 2, t0));
        assert!(b.take("other", 2, t0), "accounts are apart");
        assert!(b.take("a", 2, t0 + Duration::from_millis(500)));
        b.forget("a");
        b.forget("other");
        assert!(b.map.is_empty());
    }
}
