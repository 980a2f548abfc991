//! `mtlsca proxy`: a TLS proxy that applies the draft in front of servers (and
//! for clients) that cannot be configured to.
//!
//! * **Server mode** ([`run_server`]): TLS with a required client certificate in,
//!   plain TCP out. Initiators are judged by
//!   [`DraftClientCertVerifier`]: the chain, the draft's EKU (devices by
//!   serverAuth, entities by clientAuth; ambiguous, no-EKU and CA certificates
//!   refused), names and CRLs. With `http`, each request gets the peer's
//!   identity in `X-MTLS-*` headers, and incoming headers of those names are
//!   stripped ([`http`]).
//! * **Client mode** ([`run_client`]): plain TCP in, mTLS out, the responder
//!   judged by [`DraftServerCertVerifier`].
//!
//! Certificates, keys, trust files and CRLs are polled and reloaded when they
//! change (an atomic replace, as renewal does); connections in flight keep the
//! configuration they started with. One log line per connection on stderr
//! (text or JSON), limits on connections (a total, and a share per client
//! network: [`ConnectionGate`]), handshake and idle time, and a graceful drain
//! on SIGTERM or SIGINT.
//!
//! Both modes refuse, unless `lenient`, peers whose certificates break the
//! issuer rules ([`DraftPolicy::strict`]); a lenient proxy admits them and
//! logs the findings' codes with each admission.

pub mod crl_fetch;
pub mod http;
mod pipe;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use crl_fetch::FetchLimits;

use crate::conn_limit::{ConnectionGate, ConnectionLimits, RefusalLine, RefusalThrottle};
use crate::error::{Error, Result};
use crate::inspect::{self, CertFacts};
use crate::role::{self, Connection, Role};
use crate::verify::rustls_verifiers::{
    describe_tls_error, DraftClientCertVerifier, DraftPolicy, DraftServerCertVerifier, PeerSide,
};
use crate::verify::{load, PeerName};

/// The limits of one proxy.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more are accepted and closed at once, logged.
    pub max_connections: usize,
    /// Connections one client network (an IPv4 address, an IPv6 /64) may hold
    /// at once ([`crate::conn_limit`]); more from it are closed at once, logged.
    pub max_connections_per_client: usize,
    /// The most a TLS handshake (and the connection to the target) may take.
    pub handshake_timeout: Duration,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    /// How long SIGTERM waits for connections in flight before exiting.
    pub drain_timeout: Duration,
    /// In HTTP mode, the largest request head (request line and headers).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            max_connections_per_client: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LogFormat {
    /// `key=value` text, one line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// This end's certificate chain and key.
#[derive(Debug, Clone)]
pub struct IdentityFiles {
    /// The certificate, then its intermediates (PEM).
    pub chain: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// What peers are validated against.
#[derive(Debug, Clone, Default)]
pub struct TrustFiles {
    /// Trust anchors (root certificates).
    pub roots: Vec<PathBuf>,
    /// Intermediates that may be used to build paths.
    pub untrusted: Vec<PathBuf>,
    /// CRL files.
    pub crls: Vec<PathBuf>,
    /// Directories whose `*.crl` files are CRLs (a CA's published `crl/`).
    pub crl_dirs: Vec<PathBuf>,
    /// Fetch CRLs from the peers' own CRL distribution points, within these
    /// limits ([`crl_fetch`]): checked after each handshake, before a byte is
    /// passed on.
    pub crl_fetch: Option<FetchLimits>,
    /// Check no revocation at all. Without it, a proxy with no revocation
    /// source (CRL files or directories, `crl_fetch`) does not start
    /// ([`revocation_sources`]); with it, none may be given.
    pub no_revocation_check: bool,
}

/// What the proxy says at start about revocation: where it comes from, or a
/// warning that it is not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationPlan {
    /// The sources, in words (`from the CRL files ...; from ...`).
    Sources(String),
    /// Told not to check: the warning to log.
    Unchecked(String),
}

/// Where the peers' revocation comes from, as the start line says it; a usage
/// error with no source unless told `no_revocation_check`, and with a
/// source and `no_revocation_check` both.
pub fn revocation_sources(t: &TrustFiles) -> Result<RevocationPlan> {
    let shown = |ps: &[PathBuf]| {
        ps.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !t.crls.is_empty() {
        parts.push(format!(
            "the CRL files {} (read again when they change)",
            shown(&t.crls)
        ));
    }
    for d in &t.crl_dirs {
        let ca = d
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(d);
        parts.push(format!(
            "the CA {}: the CRLs it publishes in {} (read again when `mtlsca crl` or `serve` renews them)",
            ca.display(),
            d.display()
        ));
    }
    if let Some(f) = &t.crl_fetch {
        parts.push(format!(
            "the peers' CRL distribution points (http:// only; {:?} and {} bytes at most per fetch, {} CRLs cached; no current CRL refuses the peer)",
            f.timeout, f.max_bytes, f.max_entries
        ));
    }
    match (parts.is_empty(), t.no_revocation_check) {
        (true, false) => Err(Error::Usage(
            "no revocation source: give --crl FILE (CRL files), --ca-dir DIR (the CRLs that CA publishes) or --crl-fetch (the CRLs the peers' certificates point to); --no-revocation-check runs without one, accepting revoked certificates".into(),
        )),
        (false, true) => Err(Error::Usage(format!(
            "--no-revocation-check with a revocation source: {} (leave out one or the other; --ca-dir or $MTLSCA_DIR names a CA whose CRLs would be read)",
            parts.join("; ")
        ))),
        (true, true) => Ok(RevocationPlan::Unchecked(
            "revocation is not checked (--no-revocation-check): a revoked peer certificate is accepted".into(),
        )),
        (false, false) => Ok(RevocationPlan::Sources(format!("from {}", parts.join("; from ")))),
    }
}

/// Log the plan at start: one line, event `revocation` or `warning`.
fn log_revocation_plan(fmt: LogFormat, plan: &RevocationPlan) {
    match plan {
        RevocationPlan::Sources(s) => log_event(fmt, "revocation", s),
        RevocationPlan::Unchecked(s) => log_event(fmt, "warning", s),
    }
}

/// Options of `proxy server`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where TLS connections come in.
    pub listen: SocketAddr,
    /// Where accepted connections are forwarded (`host:port`).
    pub target: String,
    /// This responder's certificate and key.
    pub identity: IdentityFiles,
    /// What initiators are validated against.
    pub trust: TrustFiles,
    /// The initiator roles accepted.
    pub accept: Vec<Role>,
    /// When not empty, initiators must present one of these names, exactly
    /// (their identity: a wildcard certificate matches none, and a wildcard
    /// entry is refused at start).
    pub allow_names: Vec<PeerName>,
    /// Admit initiators whose certificates break the issuer rules (findings),
    /// logging their codes; by default they are refused.
    pub lenient: bool,
    /// Add identity headers to each HTTP/1.x request.
    pub http: bool,
    /// Limits.
    pub limits: Limits,
    /// Log format.
    pub log: LogFormat,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

/// Options of `proxy client`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where plain connections come in.
    pub listen: SocketAddr,
    /// The TLS responder (`host:port`).
    pub target: String,
    /// This initiator's certificate and key.
    pub identity: IdentityFiles,
    /// What the responder is validated against.
    pub trust: TrustFiles,
    /// The name the responder must be valid for: a device's default is the
    /// target's host; an entity responder is accepted only when this names it
    /// (an email address or URI), see [`responder_roles`].
    pub name: Option<PeerName>,
    /// The connection kind the link must be.
    pub expect: Option<Connection>,
    /// Admit responders whose certificates break the issuer rules (findings),
    /// logging their codes; by default they are refused.
    pub lenient: bool,
    /// Limits.
    pub limits: Limits,
    /// Log format.
    pub log: LogFormat,
    /// How often the files are checked for changes.
    pub reload_interval: Duration,
}

// ------------------------------------------------------------------ loading

struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    role: Role,
    roots: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

fn crl_dir_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn load_material(id: &IdentityFiles, trust: &TrustFiles) -> Result<Material> {
    let chain = load::certs(&id.chain, "certificate")?;
    let key = load::private_key(&id.key, "key")?;
    let facts = chain
        .first()
        .and_then(|c| inspect::parse_der(c.as_ref()).ok())
        .map(|c| CertFacts::of(&c))
        .ok_or_else(|| Error::input(format!("certificate {}", id.chain.display()), "unreadable"))?;
    let role = facts.role.role().ok_or_else(|| {
        Error::input(
            format!("certificate {}", id.chain.display()),
            format!(
                "is {}; the proxy needs a device or entity certificate",
                facts.role
            ),
        )
    })?;
    // A certificate out of its validity would fail every handshake: say so now.
    let now = time::OffsetDateTime::now_utc();
    if let Some(t) = facts.not_after.filter(|t| *t < now) {
        return Err(Error::input(
            format!("certificate {}", id.chain.display()),
            format!("expired on {}", crate::timefmt::rfc3339(t)),
        ));
    }
    if let Some(t) = facts.not_before.filter(|t| *t > now) {
        return Err(Error::input(
            format!("certificate {}", id.chain.display()),
            format!("is not valid before {}", crate::timefmt::rfc3339(t)),
        ));
    }
    // The key must belong to the certificate.
    let provider = rustls::crypto::ring::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| Error::input(format!("key {}", id.key.display()), e.to_string()))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|_| {
            Error::input(
                format!("key {}", id.key.display()),
                format!("does not belong to the certificate {}", id.chain.display()),
            )
        })?;
    if trust.roots.is_empty() {
        return Err(Error::input(
            "--trust",
            "at least one root certificate is needed",
        ));
    }
    let mut roots = Vec::new();
    for p in &trust.roots {
        roots.extend(load::certs(p, "trust anchor")?);
    }
    let mut intermediates = Vec::new();
    for p in &trust.untrusted {
        intermediates.extend(load::certs(p, "certificate")?);
    }
    let mut crls = Vec::new();
    for p in &trust.crls {
        crls.extend(load::crls(p)?);
    }
    for d in &trust.crl_dirs {
        if !d.is_dir() {
            return Err(Error::input(
                format!("CRL directory {}", d.display()),
                "is not a directory (the CA in --ca-dir publishes its CRLs there: `mtlsca crl`)",
            ));
        }
        for p in crl_dir_files(d) {
            crls.extend(load::crls(&p)?);
        }
    }
    Ok(Material {
        chain,
        key,
        role,
        roots,
        intermediates,
        crls,
    })
}

/// What identifies the state of the watched files: path, size, mtime, inode.
type Fingerprint = Vec<(PathBuf, Option<(u64, i64, i64, u64)>)>;

fn fingerprint(id: &IdentityFiles, trust: &TrustFiles) -> Fingerprint {
    let mut paths = vec![id.chain.clone(), id.key.clone()];
    paths.extend(trust.roots.iter().cloned());
    paths.extend(trust.untrusted.iter().cloned());
    paths.extend(trust.crls.iter().cloned());
    for d in &trust.crl_dirs {
        paths.push(d.clone());
        paths.extend(crl_dir_files(d));
    }
    paths
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p)
                .ok()
                .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
            (p, m)
        })
        .collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error) -> Error {
    Error::input("TLS configuration", e.to_string())
}

/// The acceptor of a server, the role of its certificate, and the policy its
/// verifier applies.
#[derive(Clone)]
struct ServerState {
    acceptor: TlsAcceptor,
    role: Role,
    policy: DraftPolicy,
    paths: PathCerts,
}

/// The certificates a peer's path may be built from (besides those it
/// sends), for the revocation check after the handshake.
#[derive(Clone, Default)]
struct PathCerts {
    anchors: Arc<Vec<CertificateDer<'static>>>,
    intermediates: Arc<Vec<CertificateDer<'static>>>,
}

impl PathCerts {
    fn of(m: &Material) -> PathCerts {
        PathCerts {
            anchors: Arc::new(m.roots.clone()),
            intermediates: Arc::new(m.intermediates.clone()),
        }
    }
}

/// A name the proxy checks peers against is one peer's: a wildcard is none
/// (an allow-list entry is an initiator's identity, `--name` the name dialled
/// or an entity's identity).
fn no_wildcard(flag: &str, names: &[PeerName]) -> Result<()> {
    match names
        .iter()
        .find(|n| matches!(n, PeerName::Dns(d) if d.contains('*')))
    {
        Some(n) => Err(Error::Usage(format!(
            "{flag} {n}: a wildcard names no one peer; give each name"
        ))),
        None => Ok(()),
    }
}

fn build_server(o: &ServerOptions) -> Result<ServerState> {
    let m = load_material(&o.identity, &o.trust)?;
    let paths = PathCerts::of(&m);
    let policy = DraftPolicy::new(m.roots)
        .accept(&o.accept)
        .names(o.allow_names.clone())
        .intermediates(m.intermediates)
        .crls(m.crls)
        .strict(!o.lenient);
    let verifier = Arc::new(DraftClientCertVerifier::new(policy.clone()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain, m.key)
        .map_err(tls_error)?;
    // No session resumption: a resumed session skips the verifier, and every
    // connection is to be judged by the draft against the CRLs and the clock of
    // now. (Without tickets the server also writes nothing after the client's
    // Finished, so a client that closes at once is not logged as a reset.)
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(ServerState {
        acceptor: TlsAcceptor::from(Arc::new(cfg)),
        role: m.role,
        policy,
        paths,
    })
}

/// "a device", "an entity".
fn with_article(r: Role) -> String {
    match r {
        Role::Entity => format!("an {}", r.as_str()),
        _ => format!("a {}", r.as_str()),
    }
}

#[derive(Clone)]
struct ClientState {
    connector: TlsConnector,
    role: Role,
    policy: DraftPolicy,
    paths: PathCerts,
}

/// The responder roles `proxy client` accepts. A device answers for the
/// target's host (or `--name`); an entity is a person or an organisation,
/// which no host name identifies, so it is accepted only when `name` is its
/// email address or URI: `expect` of an entity responder without one is bad
/// usage, and without `expect` only devices are accepted unless it is given.
pub fn responder_roles(expect: Option<Connection>, name: Option<&PeerName>) -> Result<Vec<Role>> {
    let names_an_entity = matches!(name, Some(PeerName::Email(_) | PeerName::Uri(_)));
    match expect {
        Some(k) if k.roles().1 == Role::Entity && !names_an_entity => {
            let given = match name {
                Some(n) => format!("--name {n} does not identify one"),
                None => "the target's host does not identify one".into(),
            };
            Err(Error::Usage(format!(
                "--expect {}: the responder is an entity (a person or an organisation), and {given}: give --name with its email address or URI",
                k.as_str()
            )))
        }
        Some(k) => Ok(vec![k.roles().1]),
        None if names_an_entity => Ok(vec![Role::Device, Role::Entity]),
        None => Ok(vec![Role::Device]),
    }
}

fn build_client(o: &ClientOptions) -> Result<ClientState> {
    let m = load_material(&o.identity, &o.trust)?;
    if let Some(k) = o.expect {
        if k.roles().0 != m.role {
            return Err(Error::input(
                format!("certificate {}", o.identity.chain.display()),
                format!(
                    "is {} certificate; the initiator of a {} connection needs {} one",
                    with_article(m.role),
                    k.as_str(),
                    with_article(k.roles().0)
                ),
            ));
        }
    }
    let paths = PathCerts::of(&m);
    let policy = DraftPolicy::new(m.roots)
        .intermediates(m.intermediates)
        .crls(m.crls)
        .accept(&responder_roles(o.expect, o.name.as_ref())?)
        .names(o.name.clone().into_iter().collect())
        .strict(!o.lenient);
    let verifier = Arc::new(DraftServerCertVerifier::new(policy.clone()));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(m.chain, m.key)
        .map_err(tls_error)?;
    // Every responder judged in full, as in server mode.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(ClientState {
        connector: TlsConnector::from(Arc::new(cfg)),
        role: m.role,
        policy,
        paths,
    })
}

// ------------------------------------------------------------------ logging

/// One connection's log record.
#[derive(Debug, Default, Clone)]
struct Record {
    peer: String,
    verdict: &'static str,
    role: Option<&'static str>,
    connection: Option<&'static str>,
    names: Option<String>,
    serial: Option<String>,
    /// The codes of the findings a lenient proxy admitted the peer with.
    findings: Vec<&'static str>,
    /// The CRL a refusal after the handshake concerns (`--crl-fetch`).
    crl: Option<String>,
    reason: Option<String>,
}

fn now_text() -> String {
    crate::timefmt::rfc3339(time::OffsetDateTime::now_utc())
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn log_record(fmt: LogFormat, r: &Record) {
    match fmt {
        LogFormat::Json => {
            let v = serde_json::json!({
                "time": now_text(),
                "event": "connection",
                "peer": r.peer,
                "verdict": r.verdict,
                "role": r.role,
                "connection": r.connection,
                "names": r.names,
                "serial": r.serial,
                "findings": (!r.findings.is_empty()).then_some(&r.findings),
                "crl": r.crl,
                "reason": r.reason,
            });
            crate::serverlog::line(v.to_string());
        }
        LogFormat::Text => {
            let mut line = format!("{} peer={} verdict={}", now_text(), r.peer, r.verdict);
            if let Some(x) = r.role {
                line.push_str(&format!(" role={x}"));
            }
            if let Some(x) = r.connection {
                line.push_str(&format!(" connection={x}"));
            }
            if let Some(x) = &r.names {
                line.push_str(&format!(" names={}", quote(x)));
            }
            if let Some(x) = &r.serial {
                line.push_str(&format!(" serial={x}"));
            }
            if !r.findings.is_empty() {
                line.push_str(&format!(" findings={}", r.findings.join(",")));
            }
            if let Some(x) = &r.crl {
                line.push_str(&format!(" crl={}", quote(x)));
            }
            if let Some(x) = &r.reason {
                line.push_str(&format!(" reason={}", quote(x)));
            }
            crate::serverlog::line(line);
        }
    }
}

fn log_event(fmt: LogFormat, event: &str, message: &str) {
    match fmt {
        LogFormat::Json => crate::serverlog::line(
            serde_json::json!({"time": now_text(), "event": event, "message": message}).to_string(),
        ),
        LogFormat::Text => crate::serverlog::line(format!("{} {event}: {message}", now_text())),
    }
}

// ------------------------------------------------------------------ running

/// The peer's identity, as the log and the HTTP headers give it.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// device or entity.
    pub role: Role,
    /// The connection kind.
    pub connection: Connection,
    /// Its subjectAltNames, `DNS:a.test, email:x@y`.
    pub names: String,
    /// Serial number, lowercase hex.
    pub serial: String,
}

fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<(Role, String, String)> {
    let c = inspect::parse_der(certs?.first()?.as_ref()).ok()?;
    let f = CertFacts::of(&c);
    let role = f.role.role()?;
    Some((
        role,
        inspect::joined(&f.names, ", "),
        crate::hex::encode(&f.serial),
    ))
}

/// The codes of the findings a lenient proxy admitted the peer presenting
/// `certs` with: its policy judges them once more (a verifier cannot hand
/// them to the connection); nothing when strict, where there are none.
fn admitted_with(
    policy: &DraftPolicy,
    lenient: bool,
    certs: Option<&[CertificateDer<'_>]>,
    side: PeerSide,
) -> Vec<&'static str> {
    let Some((leaf, rest)) = certs.and_then(|c| c.split_first()).filter(|_| lenient) else {
        return vec![];
    };
    let mut codes: Vec<&'static str> = policy
        .judge(leaf, rest, UnixTime::now(), side)
        .map(|j| j.findings.iter().map(|f| f.code).collect())
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    codes.retain(|c| seen.insert(*c));
    codes
}

/// The CRL fetching of one proxy: the cache, and the notes (ignored
/// distribution point names, failed refreshes) already logged, so that a
/// peer connecting often does not repeat them.
struct Fetching {
    cache: crl_fetch::CrlCache,
    noted: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Distinct notes remembered; past this the memory is cleared.
const MAX_NOTES: usize = 1024;

impl Fetching {
    fn new(limits: Option<FetchLimits>) -> Option<Arc<Fetching>> {
        limits.map(|l| {
            Arc::new(Fetching {
                cache: crl_fetch::CrlCache::new(l),
                noted: Default::default(),
            })
        })
    }

    /// Check the peer presenting `certs` against its CRL distribution points
    /// (all of a peer's fetches within three fetch timeouts): `Err` with the
    /// reason and the CRL concerned when it is to be refused.
    async fn check(
        &self,
        certs: Option<&[CertificateDer<'_>]>,
        paths: &PathCerts,
        fmt: LogFormat,
    ) -> std::result::Result<(), crl_fetch::PeerRefusal> {
        let certs = certs.unwrap_or_default();
        let note = |s: String| {
            let mut n = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            if n.len() >= MAX_NOTES {
                n.clear();
            }
            if n.insert(s.clone()) {
                log_event(fmt, "revocation", &s);
            }
        };
        let budget = self.cache.limits().timeout.saturating_mul(3);
        let check = crl_fetch::check_peer(
            &self.cache,
            certs,
            &paths.intermediates,
            &paths.anchors,
            time::OffsetDateTime::now_utc(),
            &note,
        );
        match tokio::time::timeout(budget, check).await {
            Ok(r) => r,
            Err(_) => Err(crl_fetch::PeerRefusal {
                reason: format!("revocation check not done within {budget:?}"),
                crl: None,
                revoked: false,
            }),
        }
    }
}

/// The reason of a failed handshake, in words a log reader follows.
fn handshake_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the TLS handshake".into()
        }
        _ => describe_tls_error(e),
    }
}

async fn shutdown_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::input("signal handler", e.to_string()))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::input("signal handler", e.to_string()))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

fn spawn_reloader<T: Send + Sync + 'static>(
    mut last: Fingerprint,
    every: Duration,
    fmt: LogFormat,
    finger: impl Fn() -> Fingerprint + Send + 'static,
    build: impl Fn() -> Result<T> + Send + 'static,
    slot: Arc<RwLock<T>>,
) {
    tokio::spawn(async move {
        let mut failed: Option<Fingerprint> = None;
        loop {
            tokio::time::sleep(every).await;
            let now = finger();
            if now == last || failed.as_ref() == Some(&now) {
                continue;
            }
            // Let a renewal that replaces several files finish first.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = finger();
            match build() {
                Ok(state) => {
                    *slot.write().unwrap_or_else(|p| p.into_inner()) = state;
                    log_event(fmt, "reload", "certificates, keys and CRLs reloaded");
                    last = now;
                    failed = None;
                }
                Err(e) => {
                    log_event(
                        fmt,
                        "reload",
                        &format!("reload failed, the previous configuration is kept: {e}"),
                    );
                    failed = Some(now);
                }
            }
        }
    });
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::input(format!("--listen {addr}"), e.to_string()))
}

/// The line about connections the gate refused, in the proxy's log format.
fn log_refusals(fmt: LogFormat, line: Option<RefusalLine>) {
    if let Some(line) = line {
        log_record(
            fmt,
            &Record {
                peer: line.peer.to_string(),
                verdict: "refused",
                reason: Some(line.reason),
                ..Record::default()
            },
        );
    }
}

/// Accept until SIGTERM, then drain. `serve` handles one connection; a
/// connection over the gate's limits (the total, or its client's share) is
/// closed at once and logged.
async fn accept_loop<F, Fut>(listener: TcpListener, limits: &Limits, fmt: LogFormat, serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let gate = ConnectionGate::new(ConnectionLimits::new(
        limits.max_connections,
        limits.max_connections_per_client,
    ));
    let mut refusals = RefusalThrottle::default();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let due = refusals.due();
        tokio::select! {
            r = &mut stop => {
                if let Err(e) = r {
                    log_event(fmt, "error", &e.to_string());
                }
                break;
            }
            _ = tokio::time::sleep_until(due.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if due.is_some() => {
                log_refusals(fmt, refusals.flush(Instant::now()));
            }
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    let permit = match gate.admit(peer.ip()) {
                        Ok(p) => p,
                        Err(why) => {
                            drop(tcp);
                            log_refusals(fmt, refusals.refused(peer, why, Instant::now()));
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let fut = serve(tcp, peer);
                    tokio::spawn(async move {
                        fut.await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little.
                    log_event(fmt, "error", &format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    log_refusals(fmt, refusals.flush(Instant::now()));
    log_event(
        fmt,
        "shutdown",
        &format!("stopped accepting; draining {} connection(s)", gate.busy()),
    );
    match gate.drain(limits.drain_timeout).await {
        true => log_event(fmt, "shutdown", "drained"),
        false => log_event(
            fmt,
            "shutdown",
            &format!("drain timeout: closing {} connection(s)", gate.busy()),
        ),
    }
}

/// How many bytes of TLS records are read from the socket at once.
const TLS_READ_BUFFER: usize = 64 * 1024;

/// The TCP side of a TLS connection, with a read buffer: rustls asks for at
/// most 4 KiB per read, so without it a 16 KiB record costs four or five
/// `read` calls (benches/proxy.sh, BENCHMARKS.md). Writes pass through.
fn tls_transport(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, tcp)
}

/// Run `proxy server` until SIGTERM or SIGINT. Startup problems (a bad
/// certificate, key or trust file, a port in use) are errors; everything
/// after is logged.
pub async fn run_server(o: ServerOptions) -> Result<()> {
    no_wildcard("--allow-name", &o.allow_names)?;
    let plan = revocation_sources(&o.trust)?;
    let state = build_server(&o)?;
    let listener = bind(o.listen).await?;
    log_revocation_plan(o.log, &plan);
    let fetching = Fetching::new(o.trust.crl_fetch.clone());
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    log_event(
        o.log,
        "listening",
        &format!(
            "proxy server on {local} ({} certificate), forwarding to {}{}",
            state.role.as_str(),
            o.target,
            if o.http { " as HTTP" } else { "" }
        ),
    );
    let slot = Arc::new(RwLock::new(state));
    let o = Arc::new(o);
    {
        let (a, b) = (o.clone(), o.clone());
        spawn_reloader(
            fingerprint(&o.identity, &o.trust),
            o.reload_interval,
            o.log,
            move || fingerprint(&a.identity, &a.trust),
            move || build_server(&b),
            slot.clone(),
        );
    }
    let limits = o.limits.clone();
    accept_loop(listener, &limits, o.log, |tcp, peer| {
        let st = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
        serve_server(tcp, peer, st, o.clone(), fetching.clone())
    })
    .await;
    Ok(())
}

async fn serve_server(
    tcp: TcpStream,
    peer: SocketAddr,
    st: ServerState,
    o: Arc<ServerOptions>,
    fetching: Option<Arc<Fetching>>,
) {
    let mut rec = Record {
        peer: peer.to_string(),
        verdict: "refused",
        ..Record::default()
    };
    let tcp = tls_transport(tcp);
    let tls = match tokio::time::timeout(o.limits.handshake_timeout, st.acceptor.accept(tcp)).await
    {
        Err(_) => {
            rec.reason = Some(format!(
                "TLS handshake not done within {:?}",
                o.limits.handshake_timeout
            ));
            return log_record(o.log, &rec);
        }
        Ok(Err(e)) => {
            rec.reason = Some(handshake_error(&e));
            return log_record(o.log, &rec);
        }
        Ok(Ok(t)) => t,
    };
    let Some((role, names, serial)) = peer_identity(tls.get_ref().1.peer_certificates()) else {
        rec.reason = Some("the initiator presented no usable certificate".into());
        return log_record(o.log, &rec);
    };
    let connection = role::connection(role, st.role);
    rec.role = Some(role.as_str());
    rec.connection = Some(connection.as_str());
    rec.names = Some(names.clone());
    rec.serial = Some(serial.clone());
    rec.findings = admitted_with(
        &st.policy,
        o.lenient,
        tls.get_ref().1.peer_certificates(),
        PeerSide::Initiator,
    );
    if let Some(f) = &fetching {
        if let Err(r) = f
            .check(tls.get_ref().1.peer_certificates(), &st.paths, o.log)
            .await
        {
            rec.crl = r.crl;
            rec.reason = Some(r.reason);
            return log_record(o.log, &rec);
        }
    }
    let upstream =
        match tokio::time::timeout(o.limits.handshake_timeout, TcpStream::connect(&o.target)).await
        {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                rec.verdict = "failed";
                rec.reason = Some(format!("target {} unreachable: {e}", o.target));
                return log_record(o.log, &rec);
            }
            Err(_) => {
                rec.verdict = "failed";
                rec.reason = Some(format!("target {} did not answer in time", o.target));
                return log_record(o.log, &rec);
            }
        };
    let _ = upstream.set_nodelay(true);
    rec.verdict = "accepted";
    log_record(o.log, &rec);
    if o.http {
        let id = PeerIdentity {
            role,
            connection,
            names,
            serial,
        };
        if let Err(reason) = http::forward(tls, upstream, &id, &o.limits).await {
            rec.verdict = "closed";
            rec.reason = Some(reason);
            log_record(o.log, &rec);
        }
    } else {
        pipe::pipe(tls, upstream, o.limits.idle_timeout).await;
    }
}

/// Run `proxy client` until SIGTERM or SIGINT.
pub async fn run_client(o: ClientOptions) -> Result<()> {
    no_wildcard("--name", o.name.as_slice())?;
    let plan = revocation_sources(&o.trust)?;
    let state = build_client(&o)?;
    let (host, _) = split_host_port(&o.target)?;
    let server_name = match &o.name {
        Some(PeerName::Dns(d)) => ServerName::try_from(d.clone()),
        Some(PeerName::Ip(ip)) => Ok(ServerName::IpAddress((*ip).into())),
        _ => ServerName::try_from(host.to_string()),
    }
    .map_err(|e| Error::input(format!("--target {}", o.target), e.to_string()))?;
    let listener = bind(o.listen).await?;
    log_revocation_plan(o.log, &plan);
    let fetching = Fetching::new(o.trust.crl_fetch.clone());
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    log_event(
        o.log,
        "listening",
        &format!(
            "proxy client on {local} ({} certificate), connecting to {}",
            state.role.as_str(),
            o.target
        ),
    );
    let slot = Arc::new(RwLock::new(state));
    let o = Arc::new(o);
    {
        let (a, b) = (o.clone(), o.clone());
        spawn_reloader(
            fingerprint(&o.identity, &o.trust),
            o.reload_interval,
            o.log,
            move || fingerprint(&a.identity, &a.trust),
            move || build_client(&b),
            slot.clone(),
        );
    }
    let limits = o.limits.clone();
    accept_loop(listener, &limits, o.log, |tcp, peer| {
        let st = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
        serve_client(
            tcp,
            peer,
            st,
            o.clone(),
            server_name.clone(),
            fetching.clone(),
        )
    })
    .await;
    Ok(())
}

/// `host:port` (host may be `[v6]`) → (host, port).
fn split_host_port(s: &str) -> Result<(&str, u16)> {
    let bad = || Error::input(format!("--target {s}"), "is not HOST:PORT");
    let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = p.parse().map_err(|_| bad())?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() {
        return Err(bad());
    }
    Ok((h, port))
}

async fn serve_client(
    local: TcpStream,
    peer: SocketAddr,
    st: ClientState,
    o: Arc<ClientOptions>,
    name: ServerName<'static>,
    fetching: Option<Arc<Fetching>>,
) {
    let mut rec = Record {
        peer: peer.to_string(),
        verdict: "refused",
        ..Record::default()
    };
    let started = Instant::now();
    let side = PeerSide::responder(&name);
    let hs = async {
        let tcp = TcpStream::connect(&o.target)
            .await
            .map_err(|e| format!("target {} unreachable: {e}", o.target))?;
        let _ = tcp.set_nodelay(true);
        st.connector
            .connect(name, tls_transport(tcp))
            .await
            .map_err(|e| handshake_error(&e))
    };
    let tls = match tokio::time::timeout(o.limits.handshake_timeout, hs).await {
        Err(_) => {
            rec.reason = Some(format!(
                "TLS handshake with {} not done within {:?}",
                o.target,
                started.elapsed()
            ));
            return log_record(o.log, &rec);
        }
        Ok(Err(reason)) => {
            rec.reason = Some(reason);
            return log_record(o.log, &rec);
        }
        Ok(Ok(t)) => t,
    };
    let Some((role, names, serial)) = peer_identity(tls.get_ref().1.peer_certificates()) else {
        rec.reason = Some("the responder presented no usable certificate".into());
        return log_record(o.log, &rec);
    };
    let connection = role::connection(st.role, role);
    rec.role = Some(role.as_str());
    rec.connection = Some(connection.as_str());
    rec.names = Some(names);
    rec.serial = Some(serial);
    rec.findings = admitted_with(
        &st.policy,
        o.lenient,
        tls.get_ref().1.peer_certificates(),
        side,
    );
    if let Some(f) = &fetching {
        if let Err(r) = f
            .check(tls.get_ref().1.peer_certificates(), &st.paths, o.log)
            .await
        {
            rec.crl = r.crl;
            rec.reason = Some(r.reason);
            return log_record(o.log, &rec);
        }
    }
    rec.verdict = "accepted";
    log_record(o.log, &rec);
    pipe::pipe(local, tls, o.limits.idle_timeout).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_host_and_port() {
        assert_eq!(split_host_port("a.test:443").unwrap(), ("a.test", 443));
        assert_eq!(split_host_port("[::1]:8443").unwrap(), ("::1", 8443));
        assert!(split_host_port("a.test").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("a:99999").is_err());
    }

    #[test]
    fn an_entity_responder_is_accepted_only_by_its_email_or_uri() {
        use Connection::{EndToEnd, ServerToClient, ServerToServer};
        let (dns, email, uri) = (
            PeerName::parse("db.test"),
            PeerName::parse("alice@test"),
            PeerName::parse("spiffe://corp/alice"),
        );
        let roles = |k, n: Option<&PeerName>| responder_roles(k, n).map_err(|e| e.to_string());
        assert_eq!(roles(None, None), Ok(vec![Role::Device]));
        assert_eq!(roles(None, Some(&dns)), Ok(vec![Role::Device]));
        assert_eq!(
            roles(None, Some(&email)),
            Ok(vec![Role::Device, Role::Entity])
        );
        assert_eq!(roles(Some(ServerToServer), None), Ok(vec![Role::Device]));
        assert_eq!(roles(Some(EndToEnd), Some(&uri)), Ok(vec![Role::Entity]));
        for n in [None, Some(&dns), Some(&PeerName::parse("10.0.0.1"))] {
            let e = roles(Some(ServerToClient), n).unwrap_err();
            assert!(
                e.contains("give --name with its email address or URI"),
                "{e}"
            );
        }
    }
}
