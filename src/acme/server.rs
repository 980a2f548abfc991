//! `mtlsca serve`: an HTTPS server (tokio, hyper, rustls with ring) that speaks
//! ACME (RFC 8555) and issues through the one engine.
//!
//! # What this first slice holds, and where
//!
//! - The engine (`Ca`, `Store`, `Issuer`) lives on one thread of its own: the
//!   issuer is not `Send`, and one owner keeps the store's lock for the whole run.
//!   Network tasks send it jobs (check identifiers, issue from a CSR) and await
//!   the answers. Every certificate is recorded in the store like any other.
//! - ACME state — accounts, orders, authorizations, challenges, nonces, issued
//!   chains for download — is **in memory** and lost when the server stops.
//! - The server's own certificate is a device certificate issued through the
//!   engine for `--name` (and the listen IP unless a wildcard), with a key that
//!   never leaves the process; it is renewed after two thirds of its lifetime.
//!
//! # Limits
//!
//! Request bodies ≤ 64 KiB, at most [`MAX_CONNECTIONS`] connections, a TLS
//! handshake and request headers within 10 s, a connection at most 5 minutes;
//! SIGTERM (or Ctrl-C) stops accepting and lets requests in flight finish.
//!
//! # Validation (http-01, tls-alpn-01)
//!
//! Only the identifier's own addresses (the resolved DNS name, or the IP) on the
//! configured port; http-01: one GET, no redirect followed, 10 s per attempt, at most
//! 16 KiB read; tls-alpn-01 (RFC 8737, DNS names): SNI and ALPN `acme-tls/1`,
//! the self-signed certificate must name exactly the identifier and carry the
//! critical acmeIdentifier extension over the key authorization.

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
use tokio::sync::{oneshot, watch, Semaphore};

use crate::acme::jws::{Jwk, Jws, JwsError, Signer, MAX_JWS_BYTES};
use crate::acme::nonce::NoncePool;
use crate::ca::{Ca, PassphraseSource};
use crate::error::{Error, Result};
use crate::issue::{IssuanceRequest, Issued, Issuer, KeySource, Output};
use crate::policy::RequestedContent;
use crate::role::Role;
use crate::rules::{Origin, Refusals};
use crate::store::Store;

/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_MAX: Duration = Duration::from_secs(300);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CHALLENGE_RESPONSE: u64 = 16 * 1024;
const MAX_IDENTIFIERS: usize = 100;
const MAX_ORDERS: usize = 100_000;
const MAX_ACCOUNTS: usize = 100_000;
const ORDER_LIFETIME: time::Duration = time::Duration::hours(24);

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
    /// EAB keys: key id → HMAC key (in memory; each usable once).
    pub eab_keys: HashMap<String, Vec<u8>>,
    /// The port http-01 challenges are fetched from.
    pub http01_port: u16,
    /// The port tls-alpn-01 challenges are validated on.
    pub tlsalpn01_port: u16,
    /// Requests per second each account may make (bursts of twice that); 0: no limit.
    pub rate_limit: u32,
}

/// Run the server until SIGTERM or Ctrl-C.
pub fn serve(opts: ServeOptions) -> Result<()> {
    let (engine, thread) = Engine::start(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::State(format!("cannot start the server runtime: {e}")))?;
    let result = rt.block_on(run(opts, engine.clone()));
    rt.shutdown_timeout(Duration::from_secs(5));
    // The last handle gone, the engine finishes its jobs, flushes and closes
    // the store: wait for that before the process ends.
    drop(engine);
    let _ = thread.join();
    result
}

// ---------------------------------------------------------------------------
// The engine thread
// ---------------------------------------------------------------------------

enum Job {
    Check {
        profile: String,
        content: Box<RequestedContent>,
        reply: oneshot::Sender<Result<()>>,
    },
    Issue {
        profile: String,
        csr: Vec<u8>,
        request_id: Option<String>,
        reply: oneshot::Sender<Result<Issued>>,
    },
    Lookup {
        serial: String,
        reply: oneshot::Sender<Result<Option<crate::store::Record>>>,
    },
    Revoke {
        sha256: String,
        reason: crate::crl::Reason,
        reply: oneshot::Sender<Result<crate::store::Record>>,
    },
}

/// A handle on the engine thread. When the last handle is dropped, the thread
/// finishes its jobs, closes the store and ends.
#[derive(Clone)]
struct Engine {
    jobs: std::sync::mpsc::Sender<Job>,
}

fn engine_gone() -> Error {
    Error::State("the issuing engine stopped".into())
}

impl Engine {
    /// Open the CA and the store on a thread of their own; fails as the CLI
    /// would (no CA, store locked, an entity profile for ACME).
    fn start(opts: &ServeOptions) -> Result<(Engine, std::thread::JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        let (dir, wait, pass, acme_profile) = (
            opts.ca_dir.clone(),
            opts.lock_timeout,
            opts.passphrase.clone(),
            opts.acme_profile.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("mtlsca-engine".into())
            .spawn(move || {
                let opened = (|| {
                    let ca = Ca::open(&dir)?.with_passphrase_source(pass);
                    let profile = ca.profile(&acme_profile)?;
                    if profile.role != Role::Device {
                        return Err(Error::Usage(format!(
                            "--acme-profile `{acme_profile}` is an entity profile; ACME proves control of DNS names and IPs, so it issues from device or workload profiles only"
                        )));
                    }
                    let store = Store::open(&dir, wait)?;
                    Ok((ca, store))
                })();
                let (ca, store) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let issuer = match Issuer::new(&ca, &store) {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = rx.recv() {
                    let now = OffsetDateTime::now_utc();
                    match job {
                        Job::Check {
                            profile,
                            content,
                            reply,
                        } => {
                            let req = IssuanceRequest {
                                profile,
                                content: *content,
                                key: KeySource::Generate(None),
                                request_id: None,
                                output: Output::None,
                                origin: Origin::Manifest,
                            };
                            let _ = reply.send(issuer.check_request(&req, now));
                        }
                        Job::Issue {
                            profile,
                            csr,
                            request_id,
                            reply,
                        } => {
                            let req = IssuanceRequest {
                                profile,
                                content: RequestedContent::default(),
                                key: KeySource::Csr(csr),
                                request_id,
                                output: Output::None,
                                origin: Origin::Csr,
                            };
                            let _ = reply.send(issuer.issue(&req, now));
                        }
                        Job::Lookup { serial, reply } => {
                            let _ = reply.send(store.find(&serial));
                        }
                        Job::Revoke {
                            sha256,
                            reason,
                            reply,
                        } => {
                            // Only the exact certificate (by fingerprint), durable on return.
                            let r = match store.find(&sha256) {
                                Ok(Some(rec)) if rec.sha256 == sha256 => {
                                    crate::crl::revoke(&store, &rec.serial, reason, now)
                                }
                                Ok(_) => Err(Error::refused("this CA did not issue the certificate")),
                                Err(e) => Err(e),
                            };
                            let _ = reply.send(r);
                        }
                    }
                }
                let _ = store.flush();
            })
            .map_err(|e| Error::State(format!("cannot start the engine thread: {e}")))?;
        ready_rx.recv().map_err(|_| engine_gone())??;
        Ok((Engine { jobs: tx }, thread))
    }

    async fn check(&self, profile: &str, content: RequestedContent) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Check {
                profile: profile.to_string(),
                content: Box::new(content),
                reply,
            })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }

    async fn lookup(&self, serial: String) -> Result<Option<crate::store::Record>> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Lookup { serial, reply })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }

    async fn revoke(
        &self,
        sha256: String,
        reason: crate::crl::Reason,
    ) -> Result<crate::store::Record> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Revoke {
                sha256,
                reason,
                reply,
            })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }

    async fn issue(
        &self,
        profile: &str,
        csr: Vec<u8>,
        request_id: Option<String>,
    ) -> Result<Issued> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Issue {
                profile: profile.to_string(),
                csr,
                request_id,
                reply,
            })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }
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
    let issued = engine.issue("device", csr.der().to_vec(), None).await?;
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

async fn run(opts: ServeOptions, engine: Engine) -> Result<()> {
    if opts.names.is_empty() {
        return Err(Error::Usage("give the server's name with --name".into()));
    }
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::State(format!("cannot listen on {}: {e}", opts.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::State(format!("cannot listen on {}: {e}", opts.listen)))?;
    let (cert, renew_at) = own_certificate(&engine, &opts.names, local).await?;
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
        state: Mutex::new(State::new()),
        profile: opts.acme_profile.clone(),
        require_eab: opts.require_eab,
        eab_keys: opts.eab_keys.clone(),
        http01_port: opts.http01_port,
        tlsalpn01_port: opts.tlsalpn01_port,
        rate_limit: opts.rate_limit,
        fallback_host: local.to_string(),
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(renew_loop(
        engine.clone(),
        opts.names.clone(),
        local,
        slot,
        renew_at,
        shutdown_rx.clone(),
    ));
    let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let accept = tokio::spawn(accept_loop(
        listener,
        acceptor,
        app.clone(),
        shutdown_rx,
        conns.clone(),
    ));
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "serving https://{local} (ACME directory https://{local}/acme/directory)"
        );
        let _ = out.flush();
    }
    stop_signal().await;
    let _ = shutdown_tx.send(true);
    let _ = accept.await;
    // Wait for connections in flight to finish (each returns its permit).
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conns.acquire_many(MAX_CONNECTIONS as u32)).await;
    Ok(())
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
    names: Vec<String>,
    local: SocketAddr,
    slot: Arc<CertSlot>,
    mut renew_at: OffsetDateTime,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = (renew_at - OffsetDateTime::now_utc())
            .clamp(time::Duration::minutes(1), time::Duration::hours(1));
        let wait = Duration::from_secs(wait.whole_seconds().max(60) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if OffsetDateTime::now_utc() < renew_at {
            continue;
        }
        match own_certificate(&engine, &names, local).await {
            Ok((cert, next)) => {
                if let Ok(mut g) = slot.0.write() {
                    *g = cert;
                }
                renew_at = next;
            }
            Err(e) => eprintln!("error: renewing the server's certificate: {e}"),
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
    conns: Arc<Semaphore>,
) {
    loop {
        let tcp = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    // Out of descriptors and the like: back off a little.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
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

// ---------------------------------------------------------------------------
// ACME state (in memory)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Identifier {
    Dns(String),
    Ip(IpAddr),
}

impl Identifier {
    fn json(&self) -> Value {
        match self {
            Identifier::Dns(d) => json!({"type": "dns", "value": d}),
            Identifier::Ip(ip) => json!({"type": "ip", "value": ip.to_string()}),
        }
    }

    fn value(&self) -> String {
        match self {
            Identifier::Dns(d) => d.clone(),
            Identifier::Ip(ip) => ip.to_string(),
        }
    }
}

struct Account {
    key: Jwk,
    thumbprint: String,
    status: &'static str,
    contact: Vec<String>,
}

struct Order {
    account: String,
    status: &'static str,
    expires: OffsetDateTime,
    identifiers: Vec<Identifier>,
    authzs: Vec<String>,
    certificate: Option<String>,
    /// The issued certificate's SHA-256 (hex), for revocation by the account.
    cert_sha256: Option<String>,
    error: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeType {
    Http01,
    TlsAlpn01,
}

impl ChallengeType {
    fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

struct Challenge {
    typ: ChallengeType,
    id: String,
    token: String,
    status: &'static str,
    validated: Option<OffsetDateTime>,
    error: Option<Value>,
}

struct Authz {
    account: String,
    order: String,
    identifier: Identifier,
    status: &'static str,
    expires: OffsetDateTime,
    challenges: Vec<Challenge>,
}

struct State {
    nonces: NoncePool,
    accounts: HashMap<String, Account>,
    by_thumbprint: HashMap<String, String>,
    orders: HashMap<String, Order>,
    /// Order ids, oldest first: the oldest are forgotten to bound memory.
    order_queue: std::collections::VecDeque<String>,
    authzs: HashMap<String, Authz>,
    challenges: HashMap<String, String>,
    certs: HashMap<String, (String, String)>,
    /// Certificates issued here (SHA-256 hex) → the account that ordered them.
    issued_to: HashMap<String, String>,
    used_eab: HashSet<String>,
    /// Per-account token buckets: tokens left, last refill.
    buckets: HashMap<String, (f64, Instant)>,
}

impl State {
    fn new() -> State {
        State {
            nonces: NoncePool::new(100_000, Duration::from_secs(3600)),
            accounts: HashMap::new(),
            by_thumbprint: HashMap::new(),
            orders: HashMap::new(),
            order_queue: std::collections::VecDeque::new(),
            authzs: HashMap::new(),
            challenges: HashMap::new(),
            certs: HashMap::new(),
            issued_to: HashMap::new(),
            used_eab: HashSet::new(),
            buckets: HashMap::new(),
        }
    }
}

impl State {
    /// Forget the oldest orders (with their authorizations, challenges and
    /// certificate downloads; the certificates stay in the store) until at most
    /// `keep` remain.
    fn make_room(&mut self, keep: usize) {
        while self.orders.len() > keep {
            let Some(id) = self.order_queue.pop_front() else {
                break;
            };
            let Some(o) = self.orders.remove(&id) else {
                continue;
            };
            for a in &o.authzs {
                if let Some(a) = self.authzs.remove(a) {
                    for c in &a.challenges {
                        self.challenges.remove(&c.id);
                    }
                }
            }
            if let Some(c) = &o.certificate {
                self.certs.remove(c);
            }
            if let Some(h) = &o.cert_sha256 {
                self.issued_to.remove(h);
            }
        }
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    // SystemRandom fails only without an OS RNG; the ids then are still unique
    // per process through the time, and never secret.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        let t = OffsetDateTime::now_utc()
            .unix_timestamp_nanos()
            .to_be_bytes();
        b.copy_from_slice(&t);
    }
    B64.encode(b)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Problems and replies
// ---------------------------------------------------------------------------

/// An ACME problem document (RFC 8555 §6.7).
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    kind: String,
    detail: String,
    subproblems: Vec<Value>,
    retry_after: Option<u32>,
}

const ACME_ERR: &str = "urn:ietf:params:acme:error:";

impl Problem {
    fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind: format!("{ACME_ERR}{kind}"),
            detail: detail.into(),
            subproblems: Vec::new(),
            retry_after: None,
        }
    }
    fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }
    fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "unauthorized", detail)
    }
    fn not_found() -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "malformed", "no such resource")
    }
    fn internal(e: &Error) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "serverInternal",
            e.to_string(),
        )
    }
    fn jws(e: JwsError) -> Problem {
        Problem {
            status: StatusCode::BAD_REQUEST,
            kind: e.problem_type().to_string(),
            detail: e.to_string(),
            subproblems: Vec::new(),
            retry_after: None,
        }
    }

    /// The engine's refusals as a problem of `kind`, one subproblem per rule
    /// broken (its code in `detail` and in `rule`).
    fn refusals(kind: &str, what: &str, r: &Refusals) -> Problem {
        let subs: Vec<Value> = r
            .reasons
            .iter()
            .map(|x| {
                let mut v = json!({
                    "type": format!("{ACME_ERR}{kind}"),
                    "detail": format!("{}: {}", x.rule.code(), r.message_of(x)),
                    "rule": x.rule.code(),
                });
                if let Some(val) = &x.value {
                    if kind == "rejectedIdentifier" {
                        v["identifier"] = json!({"type": if val.parse::<IpAddr>().is_ok() {"ip"} else {"dns"}, "value": val});
                    }
                }
                v
            })
            .collect();
        let codes: Vec<&str> = r.reasons.iter().map(|x| x.rule.code()).collect();
        Problem {
            status: StatusCode::BAD_REQUEST,
            kind: format!("{ACME_ERR}{kind}"),
            detail: format!(
                "{what} refused by policy ({}): {}",
                codes.join(", "),
                r.messages().join("; ")
            ),
            subproblems: subs,
            retry_after: None,
        }
    }

    /// From an engine error: refusals become `kind`, the rest serverInternal.
    fn engine(kind: &str, what: &str, e: &Error) -> Problem {
        match e {
            Error::Refused(r) | Error::Invalid(r) => Problem::refusals(kind, what, r),
            other => Problem::internal(other),
        }
    }

    fn body(&self) -> Value {
        let mut v = json!({
            "type": self.kind,
            "detail": self.detail,
            "status": self.status.as_u16(),
        });
        if !self.subproblems.is_empty() {
            v["subproblems"] = Value::Array(self.subproblems.clone());
        }
        v
    }
}

/// A successful answer.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    location: Option<String>,
    links: Vec<String>,
    retry_after: Option<u32>,
}

impl Reply {
    /// A reply with this body and content type, no headers beyond them.
    fn body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            content_type,
            body,
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }
    fn json(status: StatusCode, v: Value) -> Reply {
        Reply::body(status, "application/json", v.to_string().into_bytes())
    }
    fn at(mut self, url: String) -> Reply {
        self.location = Some(url);
        self
    }
    fn link(mut self, url: &str, rel: &str) -> Reply {
        self.links.push(format!("<{url}>;rel=\"{rel}\""));
        self
    }
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The ACME service: engine handle and state.
struct App {
    engine: Engine,
    state: Mutex<State>,
    profile: String,
    require_eab: bool,
    eab_keys: HashMap<String, Vec<u8>>,
    http01_port: u16,
    tlsalpn01_port: u16,
    rate_limit: u32,
    fallback_host: String,
}

/// What a verified POST carries.
struct Post {
    jws: Jws,
    account: Option<String>,
}

impl App {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nonce(&self) -> String {
        self.state()
            .nonces
            .issue(Instant::now())
            .unwrap_or_default()
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c))
            })
            .map(str::to_string)
            .unwrap_or_else(|| self.fallback_host.clone());
        let base = format!("https://{host}");
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let (result, with_nonce) = match (&method, path.as_str()) {
            (&Method::GET, "/acme/directory") => (Ok(self.directory(&base)), false),
            (&Method::GET, p) if p.starts_with("/acme/renewal-info/") => (
                self.renewal_info(&p["/acme/renewal-info/".len()..]).await,
                false,
            ),
            (&Method::HEAD, "/acme/new-nonce") => (
                Ok(Reply::body(StatusCode::OK, "application/json", Vec::new())),
                true,
            ),
            (&Method::GET, "/acme/new-nonce") => (
                Ok(Reply::body(
                    StatusCode::NO_CONTENT,
                    "application/json",
                    Vec::new(),
                )),
                true,
            ),
            (&Method::POST, p) if p.starts_with("/acme/") => {
                let ct_ok = req
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim() == "application/jose+json");
                let too_big = req
                    .headers()
                    .get(hyper::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .is_some_and(|n| n > MAX_JWS_BYTES as u64);
                let r = if too_big {
                    Err(Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "malformed",
                        format!("the body is over {} KiB", MAX_JWS_BYTES / 1024),
                    ))
                } else if !ct_ok {
                    Err(Problem::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "malformed",
                        "the Content-Type must be application/jose+json",
                    ))
                } else {
                    match Limited::new(req.into_body(), MAX_JWS_BYTES).collect().await {
                        Ok(b) => self.post(&base, &path, &b.to_bytes()).await,
                        Err(_) => Err(Problem::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "malformed",
                            format!("the body is over {} KiB", MAX_JWS_BYTES / 1024),
                        )),
                    }
                };
                (r, true)
            }
            _ => (Err(Problem::not_found()), false),
        };
        let mut builder = Response::builder();
        let (status, ctype, body, location, links, retry_after) = match result {
            Ok(r) => (
                r.status,
                r.content_type,
                r.body,
                r.location,
                r.links,
                r.retry_after,
            ),
            Err(p) => (
                p.status,
                "application/problem+json",
                p.body().to_string().into_bytes(),
                None,
                Vec::new(),
                p.retry_after,
            ),
        };
        if let Some(secs) = retry_after {
            builder = builder.header(hyper::header::RETRY_AFTER, secs);
        }
        builder = builder.status(status).header(CONTENT_TYPE, ctype).header(
            LINK,
            header(&format!("<{base}/acme/directory>;rel=\"index\"")),
        );
        for l in links {
            builder = builder.header(LINK, header(&l));
        }
        if let Some(l) = location {
            builder = builder.header(LOCATION, header(&l));
        }
        if with_nonce {
            builder = builder
                .header("Replay-Nonce", header(&self.nonce()))
                .header(CACHE_CONTROL, "no-store");
        }
        builder
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    fn directory(&self, base: &str) -> Reply {
        Reply::json(
            StatusCode::OK,
            json!({
                "newNonce": format!("{base}/acme/new-nonce"),
                "newAccount": format!("{base}/acme/new-account"),
                "newOrder": format!("{base}/acme/new-order"),
                "revokeCert": format!("{base}/acme/revoke-cert"),
                "keyChange": format!("{base}/acme/key-change"),
                "renewalInfo": format!("{base}/acme/renewal-info"),
                "meta": {"externalAccountRequired": self.require_eab},
            }),
        )
    }

    /// renewalInfo (ARI, RFC 9773): `AKI.SERIAL` (base64url each) → the window
    /// to renew in: the last third of the lifetime but its final sixth; for a
    /// revoked certificate, a window already past (renew now).
    async fn renewal_info(&self, cert_id: &str) -> Result<Reply, Problem> {
        let bad = || Problem::malformed("a renewalInfo id is base64url(AKI).base64url(serial)");
        let (aki, serial) = cert_id.split_once('.').ok_or_else(bad)?;
        let aki = B64.decode(aki).map_err(|_| bad())?;
        let serial = B64.decode(serial).map_err(|_| bad())?;
        if aki.is_empty() || serial.is_empty() || serial.len() > 21 {
            return Err(bad());
        }
        let rec = self
            .engine
            .lookup(crate::hex::encode(&serial))
            .await
            .map_err(|e| Problem::internal(&e))?
            .filter(|r| {
                r.issuer_key_id
                    .eq_ignore_ascii_case(&crate::hex::encode(&aki))
            })
            .ok_or_else(Problem::not_found)?;
        let now = OffsetDateTime::now_utc();
        let (start, end) = if rec.status_at(now) == crate::store::Status::Revoked {
            (
                now - time::Duration::hours(1),
                now - time::Duration::minutes(1),
            )
        } else {
            let life = rec.not_after - rec.not_before;
            (rec.not_before + life * 2 / 3, rec.not_before + life * 5 / 6)
        };
        let mut r = Reply::json(
            StatusCode::OK,
            json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
        );
        r.retry_after = Some(21600);
        Ok(r)
    }

    /// Verify a POST's JWS (RFC 8555 §6.2–6.5) and route it.
    async fn post(self: &Arc<Self>, base: &str, path: &str, body: &[u8]) -> Result<Reply, Problem> {
        let jws = Jws::parse(body).map_err(Problem::jws)?;
        let expected = format!("{base}{path}");
        if jws.url != expected {
            return Err(Problem::unauthorized(format!(
                "the JWS is signed for `{}`, not for `{expected}`",
                crate::names::printable(&jws.url)
            )));
        }
        if !self.state().nonces.redeem(&jws.nonce, Instant::now()) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "badNonce",
                "the nonce is unknown, expired or used; get a fresh one",
            ));
        }
        let new_account = path == "/acme/new-account";
        let revoke = path == "/acme/revoke-cert";
        let (account, key) = match &jws.signer {
            Signer::Jwk(k) if new_account || revoke => (None, k.clone()),
            Signer::Jwk(_) => {
                return Err(Problem::malformed(
                    "this request must be signed by an account (`kid`), not a `jwk`",
                ))
            }
            Signer::Kid(_) if new_account => {
                return Err(Problem::malformed(
                    "newAccount must be signed with the account's `jwk`, not a `kid`",
                ))
            }
            Signer::Kid(kid) => {
                let prefix = format!("{base}/acme/acct/");
                let st = self.state();
                let acct = kid
                    .strip_prefix(&prefix)
                    .and_then(|id| st.accounts.get(id).map(|a| (id, a)));
                match acct {
                    None => {
                        return Err(Problem::new(
                            StatusCode::BAD_REQUEST,
                            "accountDoesNotExist",
                            "no such account",
                        ))
                    }
                    Some((_, a)) if a.status != "valid" => {
                        return Err(Problem::unauthorized(format!(
                            "the account is {}",
                            a.status
                        )))
                    }
                    Some((id, a)) => (Some(id.to_string()), a.key.clone()),
                }
            }
        };
        jws.verify(&key).map_err(Problem::jws)?;
        if let (Some(acct), true) = (&account, self.rate_limit > 0) {
            let rate = f64::from(self.rate_limit);
            let now = Instant::now();
            let mut st = self.state();
            let b = st.buckets.entry(acct.clone()).or_insert((2.0 * rate, now));
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(2.0 * rate);
            b.1 = now;
            if b.0 < 1.0 {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rateLimited",
                    format!(
                        "over {} requests per second for this account",
                        self.rate_limit
                    ),
                );
                p.retry_after = Some(1);
                return Err(p);
            }
            b.0 -= 1.0;
        }
        let post = Post { jws, account };
        if new_account {
            return self.new_account(base, &post, &key);
        }
        if revoke {
            return self.revoke(&post, &key).await;
        }
        let account = post.account.clone().unwrap_or_default();
        let rest = &path["/acme/".len()..];
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["new-order"] => self.new_order(base, &account, &post).await,
            ["key-change"] => self.key_change(base, &account, &post, &key),
            ["acct", id] => self.account(base, &account, id, &post),
            ["order", id] => self.order_get(base, &account, id),
            ["order", id, "finalize"] => self.finalize(base, &account, id, &post).await,
            ["authz", id] => self.authz_get(base, &account, id),
            ["chall", id] => self.challenge(base, &account, id, &post),
            ["cert", id] => self.certificate(&account, id),
            _ => Err(Problem::not_found()),
        }
    }

    fn payload(post: &Post) -> Result<Option<Value>, Problem> {
        if post.jws.payload.is_empty() {
            return Ok(None);
        }
        post.jws.json().map(Some).map_err(Problem::jws)
    }

    fn account_json(base: &str, id: &str, a: &Account) -> Value {
        json!({
            "status": a.status,
            "contact": a.contact,
            "orders": format!("{base}/acme/acct/{id}/orders"),
        })
    }

    fn new_account(&self, base: &str, post: &Post, key: &Jwk) -> Result<Reply, Problem> {
        let p = Self::payload(post)?.unwrap_or(json!({}));
        let thumb = key.thumbprint();
        {
            let st = self.state();
            if let Some(id) = st.by_thumbprint.get(&thumb) {
                if let Some(a) = st.accounts.get(id) {
                    return Ok(Reply::json(StatusCode::OK, Self::account_json(base, id, a))
                        .at(format!("{base}/acme/acct/{id}")));
                }
            }
        }
        if p.get("onlyReturnExisting").and_then(Value::as_bool) == Some(true) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "accountDoesNotExist",
                "no account for this key",
            ));
        }
        let contact = parse_contact(&p)?;
        let url = format!("{base}/acme/new-account");
        let mut eab_kid = None;
        match p.get("externalAccountBinding") {
            Some(b) => {
                let used = self.state().used_eab.clone();
                let lookup = |kid: &str| {
                    if used.contains(kid) {
                        None
                    } else {
                        self.eab_keys.get(kid).cloned()
                    }
                };
                let kid = crate::acme::eab::verify(b, &url, key, &lookup).map_err(|e| Problem {
                    status: StatusCode::UNAUTHORIZED,
                    kind: e.problem_type().to_string(),
                    detail: e.to_string(),
                    subproblems: Vec::new(),
                    retry_after: None,
                })?;
                eab_kid = Some(kid);
            }
            None if self.require_eab => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "externalAccountRequired",
                    "this server requires external account binding (mtlsca acme eab create)",
                ))
            }
            None => {}
        }
        let mut st = self.state();
        if st.accounts.len() >= MAX_ACCOUNTS {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rateLimited",
                "too many accounts",
            ));
        }
        if let Some(kid) = eab_kid {
            if !st.used_eab.insert(kid) {
                return Err(Problem::unauthorized(
                    "external account binding: the key was used meanwhile",
                ));
            }
        }
        let id = random_id();
        let a = Account {
            key: key.clone(),
            thumbprint: thumb.clone(),
            status: "valid",
            contact,
        };
        let body = Self::account_json(base, &id, &a);
        st.accounts.insert(id.clone(), a);
        st.by_thumbprint.insert(thumb, id.clone());
        Ok(Reply::json(StatusCode::CREATED, body).at(format!("{base}/acme/acct/{id}")))
    }

    /// Account key rollover (RFC 8555 §7.3.5): the outer JWS by the account's
    /// key, the inner by the new key over `{account, oldKey}`.
    fn key_change(
        &self,
        base: &str,
        account: &str,
        post: &Post,
        old: &Jwk,
    ) -> Result<Reply, Problem> {
        let inner = Jws::parse_key_change(&post.jws.payload).map_err(Problem::jws)?;
        let Signer::Jwk(new) = &inner.signer else {
            return Err(Problem::malformed("the inner JWS must carry the new key"));
        };
        inner.verify(new).map_err(Problem::jws)?;
        if inner.url != post.jws.url {
            return Err(Problem::malformed(
                "the inner JWS must be signed for the same URL as the outer",
            ));
        }
        let p = inner.json().map_err(Problem::jws)?;
        let kid = format!("{base}/acme/acct/{account}");
        if p.get("account").and_then(Value::as_str) != Some(kid.as_str()) {
            return Err(Problem::malformed(
                "the inner payload names another account",
            ));
        }
        let old_key = p
            .get("oldKey")
            .map(Jwk::from_json)
            .transpose()
            .map_err(Problem::jws)?;
        if old_key.as_ref() != Some(old) {
            return Err(Problem::malformed(
                "the inner payload's `oldKey` is not the account's key",
            ));
        }
        let thumb = new.thumbprint();
        let mut st = self.state();
        if let Some(other) = st.by_thumbprint.get(&thumb) {
            let mut p = Problem::new(
                StatusCode::CONFLICT,
                "malformed",
                "the new key is already an account's key",
            );
            p.detail = format!("{} ({base}/acme/acct/{other})", p.detail);
            return Err(p);
        }
        let a = st
            .accounts
            .get_mut(account)
            .ok_or_else(Problem::not_found)?;
        let old_thumb = std::mem::replace(&mut a.thumbprint, thumb.clone());
        a.key = new.clone();
        let body = Self::account_json(base, account, a);
        st.by_thumbprint.remove(&old_thumb);
        st.by_thumbprint.insert(thumb, account.to_string());
        Ok(Reply::json(StatusCode::OK, body))
    }

    fn account(&self, base: &str, account: &str, id: &str, post: &Post) -> Result<Reply, Problem> {
        if id != account {
            return Err(Problem::unauthorized("not this account's resource"));
        }
        let p = Self::payload(post)?;
        let mut st = self.state();
        let a = st.accounts.get_mut(id).ok_or_else(Problem::not_found)?;
        if let Some(p) = p {
            if p.get("contact").is_some() {
                a.contact = parse_contact(&p)?;
            }
            match p.get("status").and_then(Value::as_str) {
                None => {}
                Some("deactivated") => a.status = "deactivated",
                Some(s) => {
                    return Err(Problem::malformed(format!(
                        "an account's status can only become `deactivated`, not `{}`",
                        crate::names::printable(s)
                    )))
                }
            }
        }
        let body = Self::account_json(base, id, a);
        Ok(Reply::json(StatusCode::OK, body))
    }

    async fn new_order(&self, base: &str, account: &str, post: &Post) -> Result<Reply, Problem> {
        let p =
            Self::payload(post)?.ok_or_else(|| Problem::malformed("newOrder needs a payload"))?;
        if p.get("notBefore").is_some() || p.get("notAfter").is_some() {
            return Err(Problem::malformed(
                "notBefore and notAfter are not supported: the profile decides the validity",
            ));
        }
        let list = p
            .get("identifiers")
            .and_then(Value::as_array)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| Problem::malformed("`identifiers` must be a non-empty list"))?;
        if list.len() > MAX_IDENTIFIERS {
            return Err(Problem::malformed(format!(
                "at most {MAX_IDENTIFIERS} identifiers per order"
            )));
        }
        let mut ids: Vec<Identifier> = Vec::new();
        for i in list {
            let typ = i.get("type").and_then(Value::as_str);
            let val = i.get("value").and_then(Value::as_str).unwrap_or("");
            let id = match typ {
                Some("dns") => {
                    if val.starts_with("*.") {
                        return Err(Problem::new(
                            StatusCode::BAD_REQUEST,
                            "rejectedIdentifier",
                            format!(
                                "`{}`: wildcard names need dns-01, which this server does not offer yet",
                                crate::names::printable(val)
                            ),
                        ));
                    }
                    Identifier::Dns(val.to_ascii_lowercase())
                }
                Some("ip") => Identifier::Ip(val.parse().map_err(|_| {
                    Problem::malformed(format!(
                        "`{}` is not an IP address",
                        crate::names::printable(val)
                    ))
                })?),
                _ => {
                    return Err(Problem::new(
                        StatusCode::BAD_REQUEST,
                        "unsupportedIdentifier",
                        "identifiers are of type `dns` or `ip`",
                    ))
                }
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut content = RequestedContent::default();
        for i in &ids {
            match i {
                Identifier::Dns(d) => content.dns.push(d.clone()),
                Identifier::Ip(ip) => content.ip.push(ip.to_string()),
            }
        }
        self.engine
            .check(&self.profile, content)
            .await
            .map_err(|e| Problem::engine("rejectedIdentifier", "the order", &e))?;

        let now = OffsetDateTime::now_utc();
        let expires = now + ORDER_LIFETIME;
        let order_id = random_id();
        let mut st = self.state();
        st.make_room(MAX_ORDERS - 1);
        let mut authzs = Vec::new();
        for i in &ids {
            let authz_id = random_id();
            let token = random_id() + &random_id();
            // tls-alpn-01 for DNS names only (an IP would need a reverse-DNS SNI).
            let types: &[ChallengeType] = match i {
                Identifier::Dns(_) => &[ChallengeType::Http01, ChallengeType::TlsAlpn01],
                Identifier::Ip(_) => &[ChallengeType::Http01],
            };
            let mut challenges = Vec::new();
            for typ in types {
                let chall_id = random_id();
                st.challenges.insert(chall_id.clone(), authz_id.clone());
                challenges.push(Challenge {
                    typ: *typ,
                    id: chall_id,
                    token: token.clone(),
                    status: "pending",
                    validated: None,
                    error: None,
                });
            }
            st.authzs.insert(
                authz_id.clone(),
                Authz {
                    account: account.to_string(),
                    order: order_id.clone(),
                    identifier: i.clone(),
                    status: "pending",
                    expires,
                    challenges,
                },
            );
            authzs.push(authz_id);
        }
        let order = Order {
            account: account.to_string(),
            status: "pending",
            expires,
            identifiers: ids,
            authzs,
            certificate: None,
            cert_sha256: None,
            error: None,
        };
        let body = order_json(base, &order_id, &order);
        st.orders.insert(order_id.clone(), order);
        st.order_queue.push_back(order_id.clone());
        Ok(Reply::json(StatusCode::CREATED, body).at(format!("{base}/acme/order/{order_id}")))
    }

    fn order_get(&self, base: &str, account: &str, id: &str) -> Result<Reply, Problem> {
        let st = self.state();
        let o = st.orders.get(id).ok_or_else(Problem::not_found)?;
        if o.account != account {
            return Err(Problem::unauthorized("not this account's order"));
        }
        Ok(Reply::json(StatusCode::OK, order_json(base, id, o)))
    }

    fn authz_get(&self, base: &str, account: &str, id: &str) -> Result<Reply, Problem> {
        let st = self.state();
        let a = st.authzs.get(id).ok_or_else(Problem::not_found)?;
        if a.account != account {
            return Err(Problem::unauthorized("not this account's authorization"));
        }
        Ok(Reply::json(StatusCode::OK, authz_json(base, a)))
    }

    fn challenge(
        self: &Arc<App>,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let respond = Self::payload(post)?.is_some();
        let mut st = self.state();
        let authz_id = st
            .challenges
            .get(id)
            .cloned()
            .ok_or_else(Problem::not_found)?;
        let thumb = st
            .accounts
            .get(account)
            .map(|a| a.thumbprint.clone())
            .unwrap_or_default();
        let a = st
            .authzs
            .get_mut(&authz_id)
            .ok_or_else(Problem::not_found)?;
        if a.account != account {
            return Err(Problem::unauthorized("not this account's challenge"));
        }
        let idx = a
            .challenges
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(Problem::not_found)?;
        // One challenge per authorization is tried: the first the client answers.
        let busy = a.challenges.iter().any(|c| c.status != "pending");
        if respond && !busy && a.status == "pending" {
            let c = &mut a.challenges[idx];
            c.status = "processing";
            let job = Validation {
                authz: authz_id.clone(),
                index: idx,
                typ: c.typ,
                identifier: a.identifier.clone(),
                token: c.token.clone(),
                key_authorization: format!("{}.{thumb}", c.token),
                port: match c.typ {
                    ChallengeType::Http01 => self.http01_port,
                    ChallengeType::TlsAlpn01 => self.tlsalpn01_port,
                },
            };
            tokio::spawn(validate(self.clone(), job));
        }
        let body = challenge_json(base, &a.challenges[idx]);
        Ok(Reply::json(StatusCode::OK, body).link(&format!("{base}/acme/authz/{authz_id}"), "up"))
    }

    async fn finalize(
        &self,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let p =
            Self::payload(post)?.ok_or_else(|| Problem::malformed("finalize needs a payload"))?;
        let csr_der = p
            .get("csr")
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "badCSR",
                    "`csr` must be a base64url DER CSR",
                )
            })?;
        let expected: HashSet<Identifier> = {
            let mut st = self.state();
            let o = st.orders.get_mut(id).ok_or_else(Problem::not_found)?;
            if o.account != account {
                return Err(Problem::unauthorized("not this account's order"));
            }
            if o.status != "ready" {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "orderNotReady",
                    format!("the order is {}, not ready", o.status),
                ));
            }
            o.identifiers.iter().cloned().collect()
        };
        // What the CSR asks for must be exactly what the order proved.
        let intake = crate::issue::read_csr(&csr_der)
            .map_err(|e| Problem::engine("badCSR", "the CSR", &e))?;
        if same_key(&post_key(self, account), &intake.spki_der) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "badCSR",
                "the CSR's key is the account key; use another key for the certificate",
            ));
        }
        let mut asked: HashSet<Identifier> = HashSet::new();
        for d in &intake.content.dns {
            asked.insert(Identifier::Dns(d.to_ascii_lowercase()));
        }
        for ip in &intake.content.ip {
            match ip.parse() {
                Ok(ip) => asked.insert(Identifier::Ip(ip)),
                Err(_) => asked.insert(Identifier::Dns(ip.clone())),
            };
        }
        if let Some(cn) = &intake.content.cn {
            let cn_id = match cn.parse::<IpAddr>() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => Identifier::Dns(cn.to_ascii_lowercase()),
            };
            if !expected.contains(&cn_id) {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "badCSR",
                    format!(
                        "the CSR's common name `{}` is not an identifier of the order",
                        crate::names::printable(cn)
                    ),
                ));
            }
        }
        if asked != expected || !intake.content.uri.is_empty() || !intake.content.email.is_empty() {
            let mut want: Vec<String> = expected.iter().map(Identifier::value).collect();
            want.sort();
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "badCSR",
                format!(
                    "the CSR must ask for exactly the order's identifiers ({})",
                    want.join(", ")
                ),
            ));
        }
        {
            let mut st = self.state();
            match st.orders.get_mut(id) {
                Some(o) if o.status == "ready" => o.status = "processing",
                _ => {
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        "orderNotReady",
                        "the order is being finalized",
                    ))
                }
            }
        }
        let issued = self
            .engine
            .issue(
                &self.profile,
                csr_der,
                Some(format!("acme/acct/{account}/order/{id}")),
            )
            .await;
        let mut st = self.state();
        match issued {
            Ok(i) => {
                let cert_id = random_id();
                st.issued_to
                    .insert(i.record.sha256.clone(), account.to_string());
                st.certs
                    .insert(cert_id.clone(), (account.to_string(), i.chain_pem));
                let o = st.orders.get_mut(id).ok_or_else(Problem::not_found)?;
                o.status = "valid";
                o.certificate = Some(cert_id);
                o.cert_sha256 = Some(i.record.sha256.clone());
                Ok(Reply::json(StatusCode::OK, order_json(base, id, o))
                    .at(format!("{base}/acme/order/{id}")))
            }
            Err(e) => {
                // The client may finalize again with a better CSR.
                if let Some(o) = st.orders.get_mut(id) {
                    o.status = "ready";
                }
                Err(Problem::engine("badCSR", "the CSR", &e))
            }
        }
    }

    /// revokeCert (RFC 8555 §7.6): signed by the account that ordered the
    /// certificate, or by the certificate's own key.
    async fn revoke(&self, post: &Post, key: &Jwk) -> Result<Reply, Problem> {
        use x509_parser::prelude::FromDer;
        let p =
            Self::payload(post)?.ok_or_else(|| Problem::malformed("revokeCert needs a payload"))?;
        let der = p
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| Problem::malformed("`certificate` must be base64url DER"))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|_| Problem::malformed("`certificate` is not an X.509 certificate"))?;
        let reason = match p.get("reason").map(Value::as_u64) {
            None => crate::crl::Reason::Unspecified,
            Some(Some(code)) => reason_of(code).ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "badRevocationReason",
                    format!("reason code {code} is not one this CA uses"),
                )
            })?,
            Some(None) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "badRevocationReason",
                    "`reason` must be an RFC 5280 reason code",
                ))
            }
        };
        let sha256 = crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
        let allowed = match &post.account {
            Some(acct) => self.state().issued_to.get(&sha256) == Some(acct),
            None => same_key(&Some(key.clone()), cert.public_key().raw),
        };
        if !allowed {
            return Err(Problem::unauthorized(
                "revokeCert must be signed by the account that ordered the certificate or by its key",
            ));
        }
        match self.engine.revoke(sha256, reason).await {
            Ok(_) => Ok(Reply::body(StatusCode::OK, "application/json", Vec::new())),
            Err(Error::Refused(r))
                if r.messages().iter().any(|m| m.contains("already revoked")) =>
            {
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "alreadyRevoked",
                    r.messages().join("; "),
                ))
            }
            Err(Error::Refused(r)) => Err(Problem::unauthorized(r.messages().join("; "))),
            Err(e) => Err(Problem::internal(&e)),
        }
    }

    fn certificate(&self, account: &str, id: &str) -> Result<Reply, Problem> {
        let st = self.state();
        let (owner, chain) = st.certs.get(id).ok_or_else(Problem::not_found)?;
        if owner != account {
            return Err(Problem::unauthorized("not this account's certificate"));
        }
        Ok(Reply::body(
            StatusCode::OK,
            "application/pem-certificate-chain",
            chain.clone().into_bytes(),
        ))
    }
}

/// An RFC 5280 reason code the CA records.
fn reason_of(code: u64) -> Option<crate::crl::Reason> {
    use crate::crl::Reason::*;
    Some(match code {
        0 => Unspecified,
        1 => KeyCompromise,
        2 => CaCompromise,
        3 => AffiliationChanged,
        4 => Superseded,
        5 => CessationOfOperation,
        9 => PrivilegeWithdrawn,
        10 => AaCompromise,
        _ => return None,
    })
}

/// The key of `account` (None when it is gone).
fn post_key(app: &App, account: &str) -> Option<Jwk> {
    app.state().accounts.get(account).map(|a| a.key.clone())
}

/// Whether a SubjectPublicKeyInfo holds the same public key as a JWK.
fn same_key(jwk: &Option<Jwk>, spki_der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    let Some(jwk) = jwk else { return false };
    let Ok((_, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der) else {
        return false;
    };
    let bits: &[u8] = &spki.subject_public_key.data;
    match jwk {
        Jwk::Ec { x, y, .. } => {
            bits.len() == 1 + x.len() + y.len()
                && bits[0] == 4
                && bits[1..=x.len()] == x[..]
                && bits[1 + x.len()..] == y[..]
        }
        Jwk::Ed25519 { x } => bits == &x[..],
        Jwk::Rsa { n, .. } => {
            let n = match n.iter().position(|b| *b != 0) {
                Some(i) => &n[i..],
                None => return false,
            };
            bits.windows(n.len()).any(|w| w == n)
        }
    }
}

fn parse_contact(p: &Value) -> Result<Vec<String>, Problem> {
    match p.get("contact") {
        None => Ok(Vec::new()),
        Some(Value::Array(l)) if l.len() <= 8 => l
            .iter()
            .map(|c| {
                c.as_str()
                    .filter(|s| s.len() <= 256 && s.starts_with("mailto:"))
                    .map(str::to_string)
                    .ok_or_else(|| {
                        Problem::new(
                            StatusCode::BAD_REQUEST,
                            "unsupportedContact",
                            "contacts are up to 8 `mailto:` URLs",
                        )
                    })
            })
            .collect(),
        Some(_) => Err(Problem::malformed(
            "`contact` must be a list of up to 8 URLs",
        )),
    }
}

fn order_json(base: &str, id: &str, o: &Order) -> Value {
    let mut v = json!({
        "status": o.status,
        "expires": rfc3339(o.expires),
        "identifiers": o.identifiers.iter().map(Identifier::json).collect::<Vec<_>>(),
        "authorizations": o.authzs.iter().map(|a| format!("{base}/acme/authz/{a}")).collect::<Vec<_>>(),
        "finalize": format!("{base}/acme/order/{id}/finalize"),
    });
    if let Some(c) = &o.certificate {
        v["certificate"] = json!(format!("{base}/acme/cert/{c}"));
    }
    if let Some(e) = &o.error {
        v["error"] = e.clone();
    }
    v
}

fn challenge_json(base: &str, c: &Challenge) -> Value {
    let mut v = json!({
        "type": c.typ.as_str(),
        "url": format!("{base}/acme/chall/{}", c.id),
        "status": c.status,
        "token": c.token,
    });
    if let Some(t) = c.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error {
        v["error"] = e.clone();
    }
    v
}

fn authz_json(base: &str, a: &Authz) -> Value {
    json!({
        "status": a.status,
        "expires": rfc3339(a.expires),
        "identifier": a.identifier.json(),
        "challenges": a.challenges.iter().map(|c| challenge_json(base, c)).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------
// http-01 validation
// ---------------------------------------------------------------------------

struct Validation {
    authz: String,
    index: usize,
    typ: ChallengeType,
    identifier: Identifier,
    token: String,
    key_authorization: String,
    port: u16,
}

async fn validate(app: Arc<App>, job: Validation) {
    let outcome = match job.typ {
        ChallengeType::Http01 => http01(&job).await,
        ChallengeType::TlsAlpn01 => tls_alpn01(&job).await,
    };
    let now = OffsetDateTime::now_utc();
    let mut st = app.state();
    let Some(a) = st.authzs.get_mut(&job.authz) else {
        return;
    };
    let order_id = a.order.clone();
    let Some(c) = a.challenges.get_mut(job.index) else {
        return;
    };
    match outcome {
        Ok(()) => {
            c.status = "valid";
            c.validated = Some(now);
            a.status = "valid";
        }
        Err((kind, detail)) => {
            let err = json!({"type": format!("{ACME_ERR}{kind}"), "detail": detail, "status": 403});
            c.status = "invalid";
            c.error = Some(err.clone());
            a.status = "invalid";
            if let Some(o) = st.orders.get_mut(&order_id) {
                o.status = "invalid";
                o.error = Some(err);
            }
            return;
        }
    }
    let all_valid = st.orders.get(&order_id).is_some_and(|o| {
        o.authzs
            .iter()
            .all(|id| st.authzs.get(id).is_some_and(|a| a.status == "valid"))
    });
    if let Some(o) = st.orders.get_mut(&order_id) {
        if all_valid && o.status == "pending" {
            o.status = "ready";
        }
    }
}

/// Fetch `http://IDENTIFIER:PORT/.well-known/acme-challenge/TOKEN` from the
/// identifier's own addresses only, following no redirect.
async fn http01(job: &Validation) -> std::result::Result<(), (&'static str, String)> {
    let host = match &job.identifier {
        Identifier::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
        other => other.value(),
    };
    let addrs = addresses(&job.identifier, job.port).await?;
    if addrs.is_empty() {
        return Err(("dns", format!("`{host}` has no address")));
    }
    let host_header = if job.port == 80 {
        host.clone()
    } else {
        format!("{host}:{}", job.port)
    };
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(VALIDATION_TIMEOUT, fetch(addr, &host_header, &job.token)).await
        {
            Ok(Ok((200, body))) => {
                let got = String::from_utf8_lossy(&body);
                return if got.trim_end() == job.key_authorization {
                    Ok(())
                } else {
                    Err((
                        "incorrectResponse",
                        format!(
                            "{addr} answered with a key authorization that does not match: `{}`",
                            crate::names::printable(&got.chars().take(200).collect::<String>())
                        ),
                    ))
                };
            }
            Ok(Ok((code, _))) => {
                return Err((
                    "unauthorized",
                    format!("{addr} answered HTTP {code} (redirects are not followed)"),
                ))
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err(("connection", last))
}

/// The identifier's own addresses on `port` (a DNS name resolved, at most 8).
async fn addresses(
    id: &Identifier,
    port: u16,
) -> std::result::Result<Vec<SocketAddr>, (&'static str, String)> {
    match id {
        Identifier::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Identifier::Dns(name) => {
            match tokio::time::timeout(
                VALIDATION_TIMEOUT,
                tokio::net::lookup_host((name.as_str(), port)),
            )
            .await
            {
                Ok(Ok(a)) => Ok(a.take(8).collect()),
                Ok(Err(e)) => Err(("dns", format!("cannot resolve `{name}`: {e}"))),
                Err(_) => Err(("dns", format!("resolving `{name}` timed out"))),
            }
        }
    }
}

/// The OID of the acmeIdentifier extension (RFC 8737).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// tls-alpn-01 (RFC 8737): a TLS handshake with SNI = the name and ALPN
/// `acme-tls/1` on the identifier's own addresses; the self-signed certificate
/// must name exactly that DNS name and carry the critical acmeIdentifier
/// extension with SHA-256 of the key authorization.
async fn tls_alpn01(job: &Validation) -> std::result::Result<(), (&'static str, String)> {
    let Identifier::Dns(name) = &job.identifier else {
        return Err(("malformed", "tls-alpn-01 is for DNS names".into()));
    };
    let addrs = addresses(&job.identifier, job.port).await?;
    if addrs.is_empty() {
        return Err(("dns", format!("`{name}` has no address")));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth(),
        Err(e) => return Err(("serverInternal", e.to_string())),
    };
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let sni = rustls_pki_types::ServerName::try_from(name.clone())
        .map_err(|_| ("malformed", format!("`{name}` cannot be an SNI name")))?;
    let want = ring::digest::digest(&ring::digest::SHA256, job.key_authorization.as_bytes());
    let mut last = String::new();
    for addr in addrs {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let tls = connector
                .connect(sni.clone(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (_, conn) = tls.get_ref();
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            Ok::<_, String>((alpn, cert))
        };
        match tokio::time::timeout(VALIDATION_TIMEOUT, attempt).await {
            Ok(Ok((alpn, cert))) => {
                if alpn.as_deref() != Some(b"acme-tls/1".as_slice()) {
                    return Err((
                        "unauthorized",
                        format!("{addr} did not negotiate ALPN acme-tls/1"),
                    ));
                }
                let Some(der) = cert else {
                    return Err(("unauthorized", format!("{addr} sent no certificate")));
                };
                return check_alpn_cert(&der, name, want.as_ref())
                    .map_err(|m| ("incorrectResponse", format!("{addr}: {m}")));
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err(("connection", last))
}

fn check_alpn_cert(der: &[u8], name: &str, want: &[u8]) -> std::result::Result<(), String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|_| "the certificate cannot be parsed".to_string())?;
    let mut dns = Vec::new();
    let mut proof = None;
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
                    _ => return Err("the certificate names more than the DNS name".into()),
                }
            }
        }
        if ext.oid.to_id_string() == ACME_IDENTIFIER_OID {
            if !ext.critical {
                return Err("the acmeIdentifier extension is not critical".into());
            }
            proof = Some(ext.value.to_vec());
        }
    }
    if dns != [name.to_string()] {
        return Err(format!("the certificate must name exactly `{name}`"));
    }
    // The extension's value is an OCTET STRING of the 32-byte digest.
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(want);
    match proof {
        Some(v) if v == expected => Ok(()),
        Some(_) => Err("the acmeIdentifier does not match the key authorization".into()),
        None => Err("the certificate has no acmeIdentifier extension".into()),
    }
}

/// A verifier for the tls-alpn-01 handshake: the certificate is self-signed
/// and judged by `check_alpn_cert`; handshake signatures are still verified.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme::*;
        vec![
            ECDSA_NISTP256_SHA256,
            ECDSA_NISTP384_SHA384,
            ED25519,
            RSA_PSS_SHA256,
            RSA_PSS_SHA384,
            RSA_PSS_SHA512,
            RSA_PKCS1_SHA256,
            RSA_PKCS1_SHA384,
            RSA_PKCS1_SHA512,
        ]
    }
}

/// Verify a handshake signature with the key of a certificate webpki would not
/// parse (the acmeIdentifier extension is critical and unknown to it).
fn handshake_signature(
    message: &[u8],
    cert: &rustls_pki_types::CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use ring::signature as sig;
    use rustls::SignatureScheme::*;
    use x509_parser::prelude::FromDer;
    let bad = || rustls::Error::General("tls-alpn-01: bad handshake signature".into());
    let (_, c) =
        x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
    let key: &[u8] = &c.public_key().subject_public_key.data;
    let alg: &dyn sig::VerificationAlgorithm = match dss.scheme {
        ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        ED25519 => &sig::ED25519,
        RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        _ => return Err(bad()),
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map_err(|_| bad())?;
    Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
}

async fn fetch(
    addr: SocketAddr,
    host: &str,
    token: &str,
) -> std::result::Result<(u16, Vec<u8>), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mtlsca-acme\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    (&mut s)
        .take(MAX_CHALLENGE_RESPONSE)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut body = buf[split + 4..].to_vec();
    let status_line = head.lines().next().unwrap_or("");
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or("not an HTTP/1 response")?;
    let chunked = head.lines().skip(1).any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or("bad chunked encoding")?;
    }
    Ok((code, body))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_txt = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(account: &str, authz: &str) -> Order {
        Order {
            account: account.into(),
            status: "valid",
            expires: OffsetDateTime::now_utc(),
            identifiers: vec![Identifier::Dns("a.test".into())],
            authzs: vec![authz.into()],
            certificate: Some(format!("cert-{authz}")),
            cert_sha256: Some(format!("sha-{authz}")),
            error: None,
        }
    }

    #[test]
    fn the_oldest_orders_are_forgotten_with_what_hangs_on_them() {
        let mut st = State::new();
        for i in 0..5 {
            let (o, a, c) = (format!("o{i}"), format!("a{i}"), format!("c{i}"));
            st.orders.insert(o.clone(), order("acct", &a));
            st.order_queue.push_back(o.clone());
            st.challenges.insert(c.clone(), a.clone());
            st.authzs.insert(
                a.clone(),
                Authz {
                    account: "acct".into(),
                    order: o,
                    identifier: Identifier::Dns("a.test".into()),
                    status: "valid",
                    expires: OffsetDateTime::now_utc(),
                    challenges: vec![Challenge {
                        typ: ChallengeType::Http01,
                        id: c,
                        token: "t".into(),
                        status: "valid",
                        validated: None,
                        error: None,
                    }],
                },
            );
            st.certs
                .insert(format!("cert-{a}"), ("acct".into(), "pem".into()));
            st.issued_to.insert(format!("sha-{a}"), "acct".into());
        }
        st.make_room(2);
        assert_eq!(st.orders.len(), 2);
        assert!(st.orders.contains_key("o3") && st.orders.contains_key("o4"));
        assert_eq!(st.authzs.len(), 2);
        assert_eq!(st.challenges.len(), 2);
        assert_eq!(st.certs.len(), 2);
        assert_eq!(st.issued_to.len(), 2);
        assert_eq!(st.order_queue.len(), 2);
    }
}
