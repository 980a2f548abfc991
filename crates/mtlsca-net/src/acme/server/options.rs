//! How `mtlsca serve` runs ([`ServeOptions`]) and what its ACME server holds
//! at most ([`AcmeLimits`], issue 22): the server's public face, with the
//! connection defaults the command line shows.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ca::PassphraseSource;
use crate::conn_limit::ConnectionLimits;

/// Connections served at once by default (`--max-connections`); more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections one client network may hold by default (`--max-connections-per-client`).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// What the ACME server holds at most, in all and for one client. Every table
/// a remote client can grow has a bound here and a share per client; a full
/// table refuses (`rateLimited`, with Retry-After), it never pushes out
/// another client's live state; and everything in them expires.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeLimits {
    /// Accounts without EAB at once (accounts bound with an EAB key are the
    /// operator's, bounded by the keys the operator makes, and never refused
    /// for room).
    pub accounts: usize,
    /// Accounts without EAB that have not obtained a certificate yet, per
    /// registering client network (IPv4 address, IPv6 /64).
    pub unproven_accounts_per_client: usize,
    /// Live orders at once.
    pub orders: usize,
    /// Live orders of one account.
    pub orders_per_account: usize,
    /// Live authorizations at once.
    pub authzs: usize,
    /// Live authorizations of one account.
    pub authzs_per_account: usize,
    /// Challenge validations running at once (more wait their turn).
    pub validations: usize,
    /// Validations of one account running at once (more wait their turn).
    pub validations_per_account: usize,
    /// Requests per second from one client network (bursts of twice that); 0: no limit.
    pub requests_per_client: u32,
    /// Redeemed nonces remembered within their lifetime.
    pub nonces: usize,
}

impl Default for AcmeLimits {
    fn default() -> AcmeLimits {
        AcmeLimits {
            accounts: 100_000,
            unproven_accounts_per_client: 10,
            orders: 100_000,
            orders_per_account: 300,
            authzs: 100_000,
            authzs_per_account: 1_000,
            validations: 32,
            validations_per_account: 4,
            requests_per_client: 500,
            nonces: 500_000,
        }
    }
}

/// How `mtlsca serve` runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The CA directory.
    pub ca_dir: PathBuf,
    /// How long to wait for the store's lock at start.
    pub lock_timeout: Duration,
    /// Where the passphrase of encrypted CA keys comes from.
    pub passphrase: PassphraseSource,
    /// The address to listen on (port 0: any free port, printed at start).
    pub listen: SocketAddr,
    /// The server's DNS names (in its certificate).
    pub names: Vec<String>,
    /// The profile ACME certificates are issued from (a device profile).
    pub acme_profile: String,
    /// newAccount requires external account binding.
    pub require_eab: bool,
    /// The port http-01 challenges are fetched from.
    pub http01_port: u16,
    /// The port tls-alpn-01 challenges are validated on.
    pub tlsalpn01_port: u16,
    /// Requests per second each account may make (bursts of twice that); 0: no limit.
    pub rate_limit: u32,
    /// New accounts without EAB per client address and hour; 0: no limit.
    pub accounts_per_ip: u32,
    /// A connection is closed when no request headers arrive for this long:
    /// idle between keep-alive requests, or a client sending headers slowly.
    pub idle_timeout: Duration,
    /// The device profile the server's own certificate comes from.
    pub tls_profile: String,
    /// The DNS server the validator asks (`HOST:PORT`); None: the system's.
    pub resolver: Option<SocketAddr>,
    /// Where CRLs and CA certificates are published over plain HTTP; None: not published.
    pub publish_listen: Option<SocketAddr>,
    /// nextUpdate − thisUpdate of the CRLs the server publishes (at least
    /// [`super::MIN_CRL_NEXT_UPDATE`]); each is signed again before half of it has passed.
    pub crl_next_update: time::Duration,
    /// The connection limits of each listener (ACME, publication).
    pub connections: ConnectionLimits,
    /// What the ACME server holds at most, in all and per client.
    pub limits: AcmeLimits,
}
