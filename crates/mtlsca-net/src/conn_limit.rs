//! How many connections a listener holds, and how many of them one client may
//! hold: every TCP listener of mtlsca (`serve`'s ACME and publication
//! listeners, `proxy server` and `proxy client`) admits connections through a
//! [`ConnectionGate`].
//!
//! A total alone lets one client that opens idle connections shut everyone
//! else out; so each client network (an IPv4 address, or the /64 of an IPv6
//! address, [`client_network`]) may hold only its share of the total. A
//! connection over either limit is closed at once and the caller logs the
//! [`GateRefusal`]; a refusal never closes a connection that is already held.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The network a client is counted by: its IPv4 address, or the /64 of its
/// IPv6 address (an IPv4-mapped one counts as IPv4). A host usually holds a
/// whole /64 and could step through its addresses.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections held at once, by everyone.
    pub total: usize,
    /// Connections held at once by one client network.
    pub per_client: usize,
}

impl ConnectionLimits {
    /// `total` connections, `per_client` of them from one client network (both at least 1).
    pub fn new(total: usize, per_client: usize) -> ConnectionLimits {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimits {
            total,
            per_client: per_client.clamp(1, total),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GateRefusal {
    /// The listener holds its total.
    Full {
        /// The total.
        limit: usize,
    },
    /// This client network holds its share.
    ClientShare {
        /// The client's network.
        network: IpAddr,
        /// The share.
        limit: usize,
    },
}

impl std::fmt::Display for GateRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GateRefusal::Full { limit } => write!(f, "too many connections (limit {limit})"),
            GateRefusal::ClientShare { network, limit } => write!(
                f,
                "too many connections from {network} (limit {limit} per client)"
            ),
        }
    }
}

/// Admits connections within [`ConnectionLimits`]; cheap to clone (one gate
/// per listener, shared by its tasks).
#[derive(Debug, Clone)]
pub struct ConnectionGate {
    limits: ConnectionLimits,
    total: Arc<Semaphore>,
    /// Connections held per client network; a network without any has no entry,
    /// so the map never holds more than `limits.total` entries.
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection: its place is given back when this is dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    network: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.network) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.network);
            }
        }
    }
}

impl ConnectionGate {
    /// A gate with these limits.
    pub fn new(limits: ConnectionLimits) -> ConnectionGate {
        ConnectionGate {
            limits,
            total: Arc::new(Semaphore::new(limits.total)),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The limits.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn admit(&self, peer: IpAddr) -> Result<ConnectionPermit, GateRefusal> {
        let network = client_network(peer);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.get(&network).copied().unwrap_or(0);
        if n >= self.limits.per_client {
            return Err(GateRefusal::ClientShare {
                network,
                limit: self.limits.per_client,
            });
        }
        let total = self
            .total
            .clone()
            .try_acquire_owned()
            .map_err(|_| GateRefusal::Full {
                limit: self.limits.total,
            })?;
        held.insert(network, n + 1);
        Ok(ConnectionPermit {
            held: self.held.clone(),
            network,
            _total: total,
        })
    }

    /// Connections held now.
    pub fn busy(&self) -> usize {
        self.limits.total - self.total.available_permits()
    }

    /// Wait until every connection is given back, at most `timeout`; whether they were.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.limits.total).unwrap_or(u32::MAX);
        tokio::time::timeout(timeout, self.total.acquire_many(all))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The connections a listener closed at accept, written to its log at most once
/// a second with their count, so that a flood cannot fill the log. Each
/// listener keeps one; the caller writes the line in its own format.
#[derive(Debug, Default)]
pub struct RefusalThrottle {
    /// When the last line was written.
    last_line: Option<Instant>,
    /// Connections closed since then, not yet in a line.
    unlogged: u64,
    /// The latest of them, for the next line.
    latest: Option<(SocketAddr, GateRefusal)>,
}

/// A log line about refused connections: the latest peer, and the reason with
/// the count of the others since the last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalLine {
    /// The latest connection refused.
    pub peer: SocketAddr,
    /// Why, and how many were closed since the last line when more than one.
    pub reason: String,
}

impl RefusalThrottle {
    /// At most one line this often.
    pub const EVERY: Duration = Duration::from_secs(1);

    /// Count a refused connection at `now`; the line to write when one is due.
    pub fn refused(
        &mut self,
        peer: SocketAddr,
        why: GateRefusal,
        now: Instant,
    ) -> Option<RefusalLine> {
        self.unlogged += 1;
        self.latest = Some((peer, why));
        if self
            .last_line
            .is_none_or(|t| now.saturating_duration_since(t) >= Self::EVERY)
        {
            return self.flush(now);
        }
        None
    }

    /// When the refusals counted since the last line are due in one (for a
    /// listener that writes them even after the flood stops).
    pub fn due(&self) -> Option<Instant> {
        self.latest.as_ref()?;
        Some(self.last_line? + Self::EVERY)
    }

    /// The line for the refusals not yet written, if any.
    pub fn flush(&mut self, now: Instant) -> Option<RefusalLine> {
        let (peer, why) = self.latest.take()?;
        let reason = match self.unlogged {
            1 => why.to_string(),
            n => format!("{why}; {n} connections closed at once since the last such line"),
        };
        self.unlogged = 0;
        self.last_line = Some(now);
        Some(RefusalLine { peer, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let net = |s: &str| client_network(ip(s)).to_string();
        assert_eq!(net("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:3::1"), "2001:db8:1:3::");
        assert_eq!(net("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(net("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn one_client_holds_only_its_share_and_gives_it_back() {
        let gate = ConnectionGate::new(ConnectionLimits::new(4, 2));
        let a1 = gate.admit(ip("192.0.2.1")).unwrap();
        let _a2 = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            gate.admit(ip("192.0.2.1")).unwrap_err(),
            GateRefusal::ClientShare {
                network: ip("192.0.2.1"),
                limit: 2
            }
        );
        // Another address of the same /64 is the same client.
        let _b1 = gate.admit(ip("2001:db8::1")).unwrap();
        let _b2 = gate.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(gate.busy(), 4);
        // Full: a third client is refused, and nobody's connection is closed.
        assert_eq!(
            gate.admit(ip("198.51.100.1")).unwrap_err(),
            GateRefusal::Full { limit: 4 }
        );
        drop(a1);
        assert_eq!(gate.busy(), 3);
        let _c = gate.admit(ip("198.51.100.1")).unwrap();
        assert!(
            gate.admit(ip("192.0.2.1")).is_err(),
            "the gate is full again"
        );
        assert_eq!(gate.held.lock().unwrap().len(), 3);
    }

    #[test]
    fn refusals_are_written_at_most_once_a_second_with_their_count() {
        let t0 = Instant::now();
        let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
        let why = GateRefusal::Full { limit: 4 };
        let mut log = RefusalThrottle::default();
        let first = log.refused(peer, why.clone(), t0).unwrap();
        assert_eq!(first.reason, "too many connections (limit 4)");
        assert_eq!(log.due(), None);
        for i in 1..=3 {
            assert_eq!(
                log.refused(peer, why.clone(), t0 + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(log.due(), Some(t0 + RefusalThrottle::EVERY));
        let later = log.flush(t0 + RefusalThrottle::EVERY).unwrap();
        assert_eq!(
            later.reason,
            "too many connections (limit 4); 3 connections closed at once since the last such line"
        );
        assert_eq!(log.flush(t0 + RefusalThrottle::EVERY), None);
        let t2 = t0 + 2 * RefusalThrottle::EVERY;
        assert!(log.refused(peer, why, t2).is_some(), "a second on, at once");
    }

    #[test]
    fn limits_are_at_least_one_and_a_share_at_most_the_total() {
        assert_eq!(ConnectionLimits::new(0, 0), ConnectionLimits::new(1, 1));
        assert_eq!(ConnectionLimits::new(8, 100).per_client, 8);
    }
}
