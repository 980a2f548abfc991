//! Admitting connections on `serve`'s listeners (ACME and publication): the
//! connection gate's limits applied on accept, and who a connection is from.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::log::log_dropped_at_limit;
use crate::conn_limit::{ConnectionGate, ConnectionPermit, RefusalThrottle};

/// Who sent a request: its address (per-network limits) and how the refusal
/// log writes it.
#[derive(Clone)]
pub(super) struct Peer {
    /// `None` when the socket no longer knows it: the connection is gone.
    pub(super) ip: Option<IpAddr>,
    pub(super) text: Arc<str>,
}

impl Peer {
    pub(super) fn of(tcp: &tokio::net::TcpStream) -> Peer {
        let addr = tcp.peer_addr().ok();
        Peer {
            ip: addr.map(|a| a.ip()),
            text: addr.map_or_else(|| "unknown".into(), |a| a.to_string().into()),
        }
    }
}

/// The peer's address as the refusal log writes it.
pub(super) fn peer_text(tcp: &tokio::net::TcpStream) -> Arc<str> {
    Peer::of(tcp).text
}

/// The next connection the gate admits, or None once shutdown is signalled. A
/// connection over the gate's limits (the total, or its client's share) is
/// closed on accept, and logged (through the listener's `refusals`, at most
/// once a second with their count).
pub(super) async fn accept_within(
    listener: &tokio::net::TcpListener,
    gate: &ConnectionGate,
    refusals: &mut RefusalThrottle,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, ConnectionPermit)> {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.changed() => return None,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(_) => {
                    // Out of descriptors and the like: back off a little.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        match gate.admit(peer.ip()) {
            Ok(permit) => return Some((tcp, permit)),
            Err(refusal) => {
                drop(tcp);
                if let Some(line) = refusals.refused(peer, refusal, std::time::Instant::now()) {
                    log_dropped_at_limit(&line);
                }
            }
        }
    }
}
