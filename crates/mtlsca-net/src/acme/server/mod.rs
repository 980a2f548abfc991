//! `mtlsca serve`: an HTTPS server (tokio, hyper, rustls with ring) that speaks
//! ACME (RFC 8555) and issues through the one engine.
//!
//! # What this first slice holds, and where
//!
//! - The engine (`Ca`, `Store`, `Issuer`) is the CA service ([`crate::service`]),
//!   on one thread of its own that keeps the store's lock for the whole run.
//!   Network tasks send it jobs (check identifiers, issue from a CSR) and await
//!   the answers; finalizes waiting together are group-committed (one flush).
//!   Every certificate is recorded in the store like any other.
//! - The control socket `<ca-dir>/mtlsca.sock` lets `list`, `show`, `issue`,
//!   `sign`, `batch`, `revoke`, `crl` and `audit` from another shell run through
//!   the same engine while the server holds the store.
//! - ACME state — accounts, orders, authorizations with challenges, chains for
//!   download, EAB keys — is in the same store (`store::acme`): the server keeps
//!   a working copy in memory (loaded at start, expired orders pruned) and writes
//!   each change through. Accounts, key rollovers and EAB bindings are flushed
//!   before the reply; orders and authorizations become durable with the next
//!   certificate's flush or at shutdown (after a crash a client at worst redoes
//!   an order). Nonces live in memory; a clean stop hands the live ones to the
//!   next start, a crash forgets them (refused, never replayable).
//! - The server's own certificate comes from `--tls-profile` (a device profile,
//!   default `device`) through the engine for `--name` (and the listen IP unless
//!   a wildcard), with a key that never leaves the process; it is renewed after
//!   two thirds of its lifetime and swapped in without a restart.
//! - URLs are built from the `Host` the client used, which must be one of
//!   `--name` (with or without the port) or the listen address: any other
//!   `Host` gets 421 and never reaches a URL.
//!
//! # Limits
//!
//! Request bodies ≤ 64 KiB, at most [`MAX_CONNECTIONS`] connections, a TLS
//! handshake within 10 s, request headers within `--idle-timeout` (default
//! 10 s; this also closes a keep-alive connection idle that long), a connection
//! at most 5 minutes;
//! SIGTERM (or Ctrl-C) stops accepting and lets requests in flight finish.
//!
//! # Validation (http-01, tls-alpn-01, dns-01)
//!
//! Only the identifier's own addresses (the resolved DNS name, or the IP) on the
//! configured port; http-01: one GET, no redirect followed, 10 s per attempt, at most
//! 16 KiB read; tls-alpn-01 (RFC 8737, DNS names): SNI and ALPN `acme-tls/1`,
//! the self-signed certificate must name exactly the identifier and carry the
//! critical acmeIdentifier extension over the key authorization; dns-01 (RFC 8555
//! §8.4, DNS names; the only challenge of a wildcard, which the profile must
//! allow): a TXT record at `_acme-challenge.NAME` holding base64url(SHA-256(key
//! authorization)).
//!
//! Lookups go to `--acme-resolver HOST:PORT` when given (A/AAAA and TXT, through
//! [`crate::acme::dns`]); without it addresses come from the system's resolution
//! (getaddrinfo) and TXT records from the servers of /etc/resolv.conf.
//!
//! # Publication
//!
//! With `--publish-listen ADDR`, a second, plain-HTTP listener serves the CRLs of
//! the CA's `crl/` and the CA certificates (`publish`: GET and HEAD, a fixed list
//! of paths, bounded connections, headers and files).

mod engine;
mod handlers;
mod publish;
mod reply;
mod state;
mod status;
mod validation;

use engine::*;
use handlers::*;
use reply::*;
use state::*;
use validation::*;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, HOST, LINK, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use ring::rand::SecureRandom;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::acme::jws::{Jwk, Jws, JwsError, Signer, MAX_JWS_BYTES};
use crate::acme::nonce::NonceBook;
use crate::acme::problem::ProblemType;
use crate::ca::{Ca, PassphraseSource};
use crate::conn_limit::client_network;
use crate::conn_limit::{ConnectionGate, ConnectionLimits, ConnectionPermit};
use crate::error::{Error, Result};
use crate::issue::{CheckedCsr, IssuanceRequest, Issued, KeySource, Output};
use crate::policy::RequestedContent;
use crate::role::Role;
use crate::rules::{Origin, Refusals};

/// Connections served at once by default (`--max-connections`); more are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections one client network may hold by default (`--max-connections-per-client`).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_MAX: Duration = Duration::from_secs(300);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answer to a challenge waits for its validation before it says
/// `processing`: long enough for a validation on a LAN, short enough that a slow
/// one does not hold the client's request.
const VALIDATION_WAIT: Duration = Duration::from_secs(2);
const MAX_CHALLENGE_RESPONSE: u64 = 16 * 1024;
const MAX_IDENTIFIERS: usize = 100;
const ORDER_LIFETIME: time::Duration = time::Duration::hours(24);
/// How often expired orders and accounts are pruned while the server runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

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
    /// The connection limits of each listener (ACME, publication).
    pub connections: ConnectionLimits,
    /// What the ACME server holds at most, in all and per client.
    pub limits: AcmeLimits,
}

/// How long a stopping server waits for its log lines to reach stderr.
const LOG_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Run the server until SIGTERM or Ctrl-C.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let (engine, acme, thread) = Engine::start(&opts)?;
    // Bound once the engine holds the store's lock: other commands reach the
    // CA through it while the server runs.
    let socket = crate::control::SocketServer::bind(&opts.ca_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::State(format!("cannot start the server runtime: {e}")))?;
    let result = rt.block_on(run(opts, engine.clone(), acme, socket));
    rt.shutdown_timeout(Duration::from_secs(5));
    // The last handle gone, the engine finishes its jobs, flushes and closes
    // the store: wait for that before the process ends.
    let stats = engine.service.stats();
    drop(engine);
    thread.join();
    crate::serverlog::flush(LOG_FLUSH_WAIT);
    if result.is_ok() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout().lock(),
            "stopped: {} issue requests in {} group commits (largest {}; engine time per group: mean {:.2} ms, longest {:.2} ms){}",
            stats.issue_jobs,
            stats.groups,
            stats.largest_group,
            stats.group_micros as f64 / 1e3 / stats.groups.max(1) as f64,
            stats.longest_group_micros as f64 / 1e3,
            match stats.batch_turns {
                0 => String::new(),
                n => format!("; batches gave way to other jobs {n} times"),
            }
        );
    }
    result
}

// ---------------------------------------------------------------------------
// The server's own certificate
// ---------------------------------------------------------------------------

/// The certificate rustls presents; swapped on renewal.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|g| g.clone())
    }
}

/// Issue the server's certificate through the engine (device profile), from a
/// CSR over a key generated here; returns it with the time to renew it.
async fn own_certificate(
    engine: &Engine,
    profile: &str,
    names: &[String],
    listen: SocketAddr,
) -> Result<(Arc<CertifiedKey>, OffsetDateTime)> {
    let fail = |m: String| Error::State(format!("the server's certificate: {m}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for n in names {
        let dns = rcgen::string::Ia5String::try_from(n.clone()).map_err(|_| {
            Error::Usage(format!(
                "--name `{}` is not a DNS name",
                crate::names::printable(n)
            ))
        })?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(dns));
    }
    if !listen.ip().is_unspecified() {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(listen.ip()));
    }
    let csr = params
        .serialize_request(&key)
        .map_err(|e| fail(e.to_string()))?;
    let csr = crate::issue::read_checked_csr(csr.der())?;
    let issued = engine.issue(profile, csr, None).await?;
    let certs = pem::parse_many(&issued.chain_pem)
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .map(|p| rustls_pki_types::CertificateDer::from(p.into_contents()))
        .collect::<Vec<_>>();
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(
        rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| fail(e.to_string()))?;
    let r = &issued.record;
    let renew_at = r.not_before + (r.not_after - r.not_before) * 2 / 3;
    Ok((Arc::new(CertifiedKey::new(certs, signing)), renew_at))
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

async fn run(
    opts: ServeOptions,
    engine: Engine,
    acme: crate::store::acme::AcmeStore,
    socket: crate::control::SocketServer,
) -> Result<()> {
    if opts.names.is_empty() {
        return Err(Error::Usage("give the server's name with --name".into()));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::State(format!("cannot listen on {}: {e}", opts.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::State(format!("cannot listen on {}: {e}", opts.listen)))?;
    let publish = match opts.publish_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::State(format!("cannot listen on {addr}: {e}")))?;
            let at = l
                .local_addr()
                .map_err(|e| Error::State(format!("cannot listen on {addr}: {e}")))?;
            Some((l, at))
        }
        None => None,
    };
    let (cert, renew_at) = own_certificate(&engine, &opts.tls_profile, &opts.names, local).await?;
    let slot = Arc::new(CertSlot(RwLock::new(cert)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::State(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(slot.clone());
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let app = Arc::new(App {
        engine: engine.clone(),
        state: Mutex::new(State::load(&acme, &opts.limits, OffsetDateTime::now_utc())?),
        validations: Arc::new(tokio::sync::Semaphore::new(opts.limits.validations.max(1))),
        limits: opts.limits.clone(),
        acme,
        profile: opts.acme_profile.clone(),
        require_eab: opts.require_eab,
        http01_port: opts.http01_port,
        tlsalpn01_port: opts.tlsalpn01_port,
        rate_limit: opts.rate_limit,
        accounts_per_ip: opts.accounts_per_ip,
        idle_timeout: opts.idle_timeout,
        hosts: allowed_hosts(&opts.names, local),
        lookup: Lookup::new(opts.resolver),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(renew_loop(
        engine.clone(),
        opts.tls_profile.clone(),
        opts.names.clone(),
        local,
        slot,
        renew_at,
        shutdown_rx.clone(),
    ));
    let control = tokio::spawn(socket.serve(engine.service.clone(), shutdown_rx.clone()));
    tokio::spawn(prune_loop(app.clone(), shutdown_rx.clone()));
    let gate = ConnectionGate::new(opts.connections);
    let accept = tokio::spawn(accept_loop(
        listener,
        acceptor,
        app.clone(),
        shutdown_rx.clone(),
        gate.clone(),
    ));
    let publishing = publish.map(|(l, at)| {
        (
            tokio::spawn(publish::publish_loop(
                l,
                opts.ca_dir.clone(),
                ConnectionGate::new(opts.connections),
                opts.idle_timeout,
                shutdown_rx.clone(),
            )),
            at,
        )
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "serving https://{local} (ACME directory https://{local}/acme/directory)"
        );
        if let Some((_, at)) = &publishing {
            let _ = writeln!(
                out,
                "publishing http://{at} (CRLs /crl/NAME.crl, CA certificates /ca/NAME.crt and /ca/NAME.pem)"
            );
        }
        let _ = out.flush();
    }
    stop_signal().await;
    let _ = shutdown_tx.send(true);
    let _ = accept.await;
    if let Some((task, _)) = publishing {
        let _ = task.await;
    }
    let _ = control.await;
    // Wait for connections in flight to finish (each returns its permit).
    gate.drain(DRAIN_TIMEOUT).await;
    // Validations still running write their outcome after this; the engine's
    // final flush covers them.
    app.save_nonces()
}

/// Forget expired orders and accounts, in memory and in the store, every
/// [`PRUNE_EVERY`] (also when nobody makes new orders).
async fn prune_loop(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(p) = app.prune(OffsetDateTime::now_utc()) {
            crate::serverlog::line(format!("error: pruning expired ACME state: {}", p.detail));
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn renew_loop(
    engine: Engine,
    profile: String,
    names: Vec<String>,
    local: SocketAddr,
    slot: Arc<CertSlot>,
    mut renew_at: OffsetDateTime,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Wake at the renewal time (checked at least hourly, against clock jumps).
        let wait = (renew_at - OffsetDateTime::now_utc())
            .clamp(time::Duration::seconds(1), time::Duration::hours(1));
        let wait = Duration::from_millis(wait.whole_milliseconds().max(1000) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if OffsetDateTime::now_utc() < renew_at {
            continue;
        }
        match own_certificate(&engine, &profile, &names, local).await {
            Ok((cert, next)) => {
                if let Ok(mut g) = slot.0.write() {
                    *g = cert;
                }
                renew_at = next;
            }
            Err(e) => {
                crate::serverlog::line(format!(
                    "error: renewing the server's certificate (next try in a minute): {e}"
                ));
                renew_at = OffsetDateTime::now_utc() + time::Duration::minutes(1);
            }
        }
    }
}

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
/// closed on accept, and logged.
pub(super) async fn accept_within(
    listener: &tokio::net::TcpListener,
    gate: &ConnectionGate,
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
                log_dropped_at_limit(&peer.to_string(), &refusal);
            }
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
    gate: ConnectionGate,
) {
    loop {
        let Some((tcp, permit)) = accept_within(&listener, &gate, &mut shutdown).await else {
            return;
        };
        let acceptor = acceptor.clone();
        let idle = app.idle_timeout;
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = Peer::of(&tcp);
            let handshake =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => Ok(stream),
                    Ok(Err(e)) => Err((
                        StatusCode::BAD_REQUEST,
                        format!("TLS handshake failed: {e}"),
                    )),
                    Err(_) => Err((
                        StatusCode::REQUEST_TIMEOUT,
                        format!("TLS handshake not done within {HANDSHAKE_TIMEOUT:?}"),
                    )),
                };
            let stream = match handshake {
                Ok(stream) => stream,
                Err((status, reason)) => {
                    return log_refusal(&peer.text, "connection", status, "tls", &reason)
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(app.handle(req, &peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle)
                .max_buf_size(64 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let deadline = tokio::time::sleep(CONNECTION_MAX);
            tokio::pin!(deadline);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn.as_mut()).await;
                }
                _ = &mut deadline => {}
            }
        });
    }
}
