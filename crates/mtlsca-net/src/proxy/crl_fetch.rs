//! Revocation from the peers' own CRL distribution points (`--crl-fetch`):
//! what a peer of another PKI needs, whose CRLs the operator does not hold.
//!
//! rustls verifiers run inside the handshake and cannot wait for the network,
//! so the proxy checks here, right after the handshake and before a byte is
//! piped ([`check_peer`]): for each certificate of the peer's validated path
//! that carries a CRL distribution point (the leaf, and intermediates that
//! have one), a current CRL signed by that certificate's issuer must be had
//! and must not list it. No current CRL (fetch failed, timed out, too big,
//! badly signed, stale) refuses the peer: fail closed.
//!
//! * Only `http://` URIs of a distribution point's fullName are fetched
//!   ([`distribution_points`]); other names are ignored and reported.
//! * One GET over HTTP/1.1 ([`fetch`]): connect and the whole response within
//!   [`FetchLimits::timeout`], a body of at most [`FetchLimits::max_bytes`],
//!   redirects not followed, DER or PEM accepted.
//! * Each CRL is checked before use ([`CheckedCrl::check`]): the issuer's name
//!   and key identifier, its signature by the issuer's key (which may sign
//!   CRLs), a complete CRL (no delta, no indirect or partial one), then
//!   [`CheckedCrl::current_at`]: thisUpdate not in the future, nextUpdate not
//!   passed.
//! * A cache keyed by URL ([`CrlCache`]): at most
//!   [`FetchLimits::max_entries`] CRLs (the oldest is evicted), refreshed on
//!   demand once older than [`FetchLimits::max_age`] or within
//!   [`FetchLimits::refresh_margin`] of nextUpdate (a failed refresh keeps a
//!   CRL still current), one fetch at a time per URL (concurrent callers wait
//!   for it and share its result), and a failed fetch not retried for
//!   [`FetchLimits::retry_after`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::net::TcpStream;
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};

use crate::inspect;
use crate::text::printable;

/// The bounds of fetching and caching CRLs.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// Connecting and the whole response (head and body) of one fetch.
    pub timeout: Duration,
    /// The largest CRL body accepted, in bytes.
    pub max_bytes: usize,
    /// CRLs cached at once; beyond, the one cached first is evicted.
    pub max_entries: usize,
    /// A cached CRL is fetched again once it was fetched this long ago...
    pub max_age: Duration,
    /// ... or once its nextUpdate is this close.
    pub refresh_margin: Duration,
    /// A failed fetch of a URL is not tried again for this long.
    pub retry_after: Duration,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        FetchLimits {
            timeout: Duration::from_secs(5),
            max_bytes: 10 * 1024 * 1024,
            max_entries: 256,
            max_age: Duration::from_secs(3600),
            refresh_margin: Duration::from_secs(15 * 60),
            retry_after: Duration::from_secs(10),
        }
    }
}

/// The most URLs tried for one certificate, and certificates checked in one
/// peer's path: a peer's whole check makes at most this many fetches each.
const MAX_URLS_PER_CERT: usize = 4;
const MAX_PATH: usize = 8;

// ------------------------------------------------------------------ URLs

/// An `http://` URL to fetch a CRL from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
    text: String,
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl HttpUrl {
    /// `http://host[:port][/path]`; anything else (another scheme, user
    /// information, spaces or control characters, a bad port) is `Err` with
    /// the reason.
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        if s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(
                "not a URL this proxy fetches (too long, or spaces or control characters)".into(),
            );
        }
        let rest = match s.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("http://") => &s[7..],
            _ => return Err("not an http:// URL".into()),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') {
            return Err("user information in the URL".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("junk after the IPv6 address")?),
            };
            h.parse::<std::net::Ipv6Addr>()
                .map_err(|_| "not an IPv6 address in [ ]")?;
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => p.parse::<u16>().map_err(|_| "a bad port")?,
        };
        Ok(HttpUrl {
            host,
            port,
            path,
            text: s.to_string(),
        })
    }

    /// The `Host` header: the host (IPv6 in brackets), with the port unless 80.
    fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            80 => h,
            p => format!("{h}:{p}"),
        }
    }
}

/// What a certificate's CRL distribution points extension offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistributionPoints {
    /// The `http://` URIs to fetch from, in the certificate's order.
    pub urls: Vec<HttpUrl>,
    /// What was ignored, each with why (`ldap://...: not an http:// URL`).
    pub ignored: Vec<String>,
}

/// The CRL distribution points of `cert`; `None` when it has none.
pub fn distribution_points(cert: &X509Certificate<'_>) -> Option<DistributionPoints> {
    let points = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(p) => Some(p),
            _ => None,
        })?;
    let mut out = DistributionPoints::default();
    for p in points.iter() {
        if p.crl_issuer.is_some() {
            out.ignored
                .push("a distribution point with a cRLIssuer (an indirect CRL)".into());
            continue;
        }
        if p.reasons.is_some() {
            out.ignored
                .push("a distribution point for some reasons only (a partial CRL)".into());
            continue;
        }
        match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => {
                for n in names {
                    match n {
                        GeneralName::URI(u) => match HttpUrl::parse(u) {
                            Ok(url) => out.urls.push(url),
                            Err(why) => out.ignored.push(format!("{}: {why}", printable(u))),
                        },
                        other => out.ignored.push(format!("{other}: not a URI")),
                    }
                }
            }
            Some(DistributionPointName::NameRelativeToCRLIssuer(_)) => out
                .ignored
                .push("a distribution point named relative to the CRL issuer".into()),
            None => out
                .ignored
                .push("a distribution point without a name".into()),
        }
    }
    Some(out)
}

// ------------------------------------------------------------------ fetching

/// Why a fetch gave no CRL body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Connecting and the response took longer than the limit.
    Timeout(Duration),
    /// The connection failed.
    Connect(String),
    /// The HTTP exchange failed.
    Http(String),
    /// A redirect, not followed.
    Redirect(u16, String),
    /// Another status than 200.
    Status(u16),
    /// The body is over the cap.
    TooBig(usize),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Timeout(d) => write!(f, "no answer within {d:?}"),
            FetchError::Connect(e) => write!(f, "cannot connect: {e}"),
            FetchError::Http(e) => write!(f, "HTTP error: {e}"),
            FetchError::Redirect(s, to) => {
                write!(
                    f,
                    "HTTP {s}, a redirect to {to} (redirects are not followed)"
                )
            }
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::TooBig(n) => write!(f, "the CRL is larger than {n} bytes"),
        }
    }
}

/// Aborts the task of a connection when the fetch is over, whatever its end.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// GET `url` once: the body, within the limits' time and size.
pub async fn fetch(url: &HttpUrl, limits: &FetchLimits) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(limits.timeout, fetch_unbounded(url, limits.max_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout(limits.timeout)),
    }
}

async fn fetch_unbounded(url: &HttpUrl, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| FetchError::Connect(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = hyper::Request::builder()
        .method("GET")
        .uri(url.path.as_str())
        .header(hyper::header::HOST, url.host_header())
        .header(
            hyper::header::ACCEPT,
            "application/pkix-crl, application/x-pem-file, */*",
        )
        .header(hyper::header::CONNECTION, "close")
        .header(hyper::header::USER_AGENT, "mtlsca-proxy")
        .body(Empty::<Bytes>::new())
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| FetchError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    if (300..400).contains(&status) {
        let to = resp
            .headers()
            .get(hyper::header::LOCATION)
            .map(|v| printable(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_else(|| "(no Location)".into());
        return Err(FetchError::Redirect(status, to));
    }
    if status != 200 {
        return Err(FetchError::Status(status));
    }
    let announced = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooBig(max_bytes));
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Http(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > max_bytes {
                return Err(FetchError::TooBig(max_bytes));
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// A CRL body as DER: DER as it is, or the first `X509 CRL` PEM block.
pub fn crl_der(body: &[u8]) -> Result<Vec<u8>, String> {
    let head = body.iter().position(|b| !b.is_ascii_whitespace());
    if head.is_some_and(|i| body[i..].starts_with(b"-----BEGIN")) {
        let blocks = pem::parse_many(body).map_err(|e| format!("bad PEM: {e}"))?;
        return blocks
            .into_iter()
            .find(|p| p.tag() == "X509 CRL")
            .map(|p| p.into_contents())
            .ok_or_else(|| "PEM without an X509 CRL block".into());
    }
    Ok(body.to_vec())
}

// ------------------------------------------------------------------ checking

/// Why a CRL cannot be used for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlError {
    /// Not a CRL.
    Unreadable(String),
    /// Issued by another name than the certificate's issuer.
    WrongIssuer {
        /// The CRL's issuer.
        crl: String,
        /// The certificate's issuer.
        expected: String,
    },
    /// Its authority key identifier is not the issuer's key identifier.
    WrongKeyId,
    /// The issuer's key did not sign it.
    BadSignature,
    /// The issuer's key usage does not include cRLSign.
    SignerWithoutCrlSign,
    /// A delta, indirect or partial CRL, or one with an unknown critical extension.
    Unsupported(String),
    /// thisUpdate is in the future.
    NotYetValid(OffsetDateTime),
    /// nextUpdate has passed.
    Expired(OffsetDateTime),
}

impl std::fmt::Display for CrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = |t: &OffsetDateTime| crate::timefmt::rfc3339(*t);
        match self {
            CrlError::Unreadable(e) => write!(f, "not a CRL ({e})"),
            CrlError::WrongIssuer { crl, expected } => write!(
                f,
                "the CRL is issued by `{crl}`, not by the certificate's issuer `{expected}`"
            ),
            CrlError::WrongKeyId => {
                f.write_str("the CRL's authority key identifier is not the issuer's key")
            }
            CrlError::BadSignature => {
                f.write_str("the CRL is not signed by the certificate's issuer")
            }
            CrlError::SignerWithoutCrlSign => {
                f.write_str("the certificate's issuer may not sign CRLs (no cRLSign key usage)")
            }
            CrlError::Unsupported(what) => write!(f, "unsupported CRL: {what}"),
            CrlError::NotYetValid(at) => write!(f, "the CRL is not valid before {}", t(at)),
            CrlError::Expired(at) => write!(f, "the CRL is stale: its nextUpdate was {}", t(at)),
        }
    }
}

/// One revoked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// When it was revoked.
    pub at: Option<OffsetDateTime>,
    /// The reason's name, when the CRL gives one.
    pub reason: Option<String>,
}

/// A CRL checked against its issuer: what a revocation check needs of it.
#[derive(Debug, Clone)]
pub struct CheckedCrl {
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate (`None`: the CRL does not say when the next one comes).
    pub next_update: Option<OffsetDateTime>,
    /// The issuer's subject (DER) and public key (SPKI DER) it was checked with.
    issuer_name: Vec<u8>,
    issuer_spki: Vec<u8>,
    /// Covers only end-entity or only CA certificates (issuingDistributionPoint).
    only_user: bool,
    only_ca: bool,
    /// Revoked serials (big-endian, no leading zero bytes).
    revoked: HashMap<Vec<u8>, RevokedEntry>,
}

fn serial_key(raw: &[u8]) -> Vec<u8> {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    raw[start..].to_vec()
}

fn key_id_of(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

impl CheckedCrl {
    /// Check `der` as the CRL of `issuer`'s certificates: its issuer name and
    /// key identifier, the issuer's right to sign CRLs, its signature, a
    /// complete CRL. Time is not looked at: see [`CheckedCrl::current_at`].
    pub fn check(der: &[u8], issuer: &X509Certificate<'_>) -> Result<CheckedCrl, CrlError> {
        let crl = match CertificateRevocationList::from_der(der) {
            Ok(([], crl)) => crl,
            Ok((rest, _)) => {
                return Err(CrlError::Unreadable(format!(
                    "{} bytes after the CRL",
                    rest.len()
                )))
            }
            Err(e) => return Err(CrlError::Unreadable(e.to_string())),
        };
        if crl.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(CrlError::WrongIssuer {
                crl: inspect::dn_string(crl.issuer()),
                expected: inspect::dn_string(issuer.subject()),
            });
        }
        let mut only_user = false;
        let mut only_ca = false;
        for e in crl.extensions() {
            if e.oid.to_id_string() == "2.5.29.27" {
                return Err(CrlError::Unsupported("a delta CRL".into()));
            }
            match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    if let (Some(want), Some(got)) = (key_id_of(issuer), &aki.key_identifier) {
                        if want != got.0 {
                            return Err(CrlError::WrongKeyId);
                        }
                    }
                }
                ParsedExtension::IssuingDistributionPoint(idp) => {
                    if idp.indirect_crl {
                        return Err(CrlError::Unsupported("an indirect CRL".into()));
                    }
                    if idp.only_some_reasons.is_some() {
                        return Err(CrlError::Unsupported("a CRL for some reasons only".into()));
                    }
                    if idp.only_contains_attribute_certs {
                        return Err(CrlError::Unsupported(
                            "a CRL of attribute certificates".into(),
                        ));
                    }
                    only_user = idp.only_contains_user_certs;
                    only_ca = idp.only_contains_ca_certs;
                }
                ParsedExtension::CRLNumber(_) => {}
                _ if e.critical => {
                    return Err(CrlError::Unsupported(format!(
                        "an unknown critical extension {}",
                        e.oid
                    )))
                }
                _ => {}
            }
        }
        let ku = issuer
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => Some(ku.crl_sign()),
                _ => None,
            });
        if ku == Some(false) {
            return Err(CrlError::SignerWithoutCrlSign);
        }
        crl.verify_signature(issuer.public_key())
            .map_err(|_| CrlError::BadSignature)?;
        let mut revoked = HashMap::new();
        for r in crl.iter_revoked_certificates() {
            revoked.insert(
                serial_key(r.raw_serial()),
                RevokedEntry {
                    at: inspect::asn1_time(r.revocation_date),
                    reason: r
                        .reason_code()
                        .map(|(_, c)| crate::verify::reason_name(c.0)),
                },
            );
        }
        Ok(CheckedCrl {
            this_update: inspect::asn1_time(crl.last_update())
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            next_update: crl.next_update().and_then(inspect::asn1_time),
            issuer_name: issuer.subject().as_raw().to_vec(),
            issuer_spki: issuer.public_key().raw.to_vec(),
            only_user,
            only_ca,
            revoked,
        })
    }

    /// Whether the CRL is current at `now`: thisUpdate not in the future, and
    /// nextUpdate present and not passed.
    pub fn current_at(&self, now: OffsetDateTime) -> Result<(), CrlError> {
        if self.this_update > now {
            return Err(CrlError::NotYetValid(self.this_update));
        }
        match self.next_update {
            None => Err(CrlError::Unsupported(
                "no nextUpdate: nothing says whether it is current".into(),
            )),
            Some(t) if t <= now => Err(CrlError::Expired(t)),
            Some(_) => Ok(()),
        }
    }

    /// Whether this CRL was checked against `issuer` (name and key).
    fn is_of(&self, issuer: &X509Certificate<'_>) -> bool {
        self.issuer_name == issuer.subject().as_raw() && self.issuer_spki == issuer.public_key().raw
    }

    /// Whether the CRL covers `cert` (a CRL of end-entity certificates only
    /// does not cover a CA, and the reverse).
    fn covers(&self, cert: &X509Certificate<'_>) -> bool {
        let ca = cert.is_ca();
        !(self.only_user && ca || self.only_ca && !ca)
    }

    /// The entry of `cert`'s serial, if it is revoked.
    pub fn revoked(&self, cert: &X509Certificate<'_>) -> Option<&RevokedEntry> {
        self.revoked.get(&serial_key(cert.raw_serial()))
    }

    /// How many serials it lists.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }
}

// ------------------------------------------------------------------ the cache

#[derive(Default)]
struct Slot {
    crl: Option<Arc<CheckedCrl>>,
    fetched: Option<Instant>,
    /// The last failed attempt, and why.
    failed: Option<(Instant, String)>,
}

#[derive(Default)]
struct Table {
    map: HashMap<String, Arc<tokio::sync::Mutex<Slot>>>,
    order: VecDeque<String>,
}

/// The CRLs fetched so far, by URL (see the module documentation).
pub struct CrlCache {
    limits: FetchLimits,
    table: Mutex<Table>,
}

impl std::fmt::Debug for CrlCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlCache")
            .field("limits", &self.limits)
            .finish()
    }
}

impl CrlCache {
    /// An empty cache with these limits.
    pub fn new(limits: FetchLimits) -> CrlCache {
        CrlCache {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// How many URLs it holds.
    pub fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, url: &HttpUrl) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = t.map.get(&url.text) {
            return s.clone();
        }
        while t.map.len() >= self.limits.max_entries.max(1) {
            match t.order.pop_front() {
                Some(old) => {
                    t.map.remove(&old);
                }
                None => break,
            }
        }
        let s = Arc::new(tokio::sync::Mutex::new(Slot::default()));
        t.map.insert(url.text.clone(), s.clone());
        t.order.push_back(url.text.clone());
        s
    }

    /// A current CRL from `url` for the certificates `issuer` signed: the
    /// cached one, or fetched and checked now. `note` hears of a refresh that
    /// failed while the cached CRL was still current (and is kept).
    pub async fn current(
        &self,
        url: &HttpUrl,
        issuer: &X509Certificate<'_>,
        now: OffsetDateTime,
        note: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Arc<CheckedCrl>, String> {
        let slot = self.slot(url);
        let mut s = slot.lock().await;
        let cached = s
            .crl
            .clone()
            .filter(|c| c.is_of(issuer) && c.current_at(now).is_ok());
        let stale_soon = |c: &CheckedCrl| {
            c.next_update.is_none_or(|t| {
                t - now < time::Duration::try_from(self.limits.refresh_margin).unwrap_or_default()
            })
        };
        let due = match &cached {
            None => true,
            // A CRL fetched within `retry_after` is not fetched again, even
            // near its nextUpdate: a CA whose CRLs live shorter than the
            // margin costs one fetch per `retry_after`, not one per peer.
            Some(c) => s.fetched.is_none_or(|f| {
                let age = f.elapsed();
                age >= self.limits.retry_after && (age >= self.limits.max_age || stale_soon(c))
            }),
        };
        let recently_failed = s
            .failed
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.limits.retry_after)
            .map(|(_, why)| why.clone());
        if !due {
            return cached.ok_or_else(|| "no CRL".into());
        }
        if let Some(why) = recently_failed {
            return cached.ok_or(why);
        }
        let got = match fetch(url, &self.limits).await {
            Err(e) => Err(e.to_string()),
            Ok(body) => crl_der(&body).and_then(|der| {
                let c = CheckedCrl::check(&der, issuer).map_err(|e| e.to_string())?;
                c.current_at(now).map_err(|e| e.to_string())?;
                Ok(c)
            }),
        };
        match got {
            Ok(c) => {
                let c = Arc::new(c);
                s.crl = Some(c.clone());
                s.fetched = Some(Instant::now());
                s.failed = None;
                Ok(c)
            }
            Err(why) => {
                s.failed = Some((Instant::now(), why.clone()));
                match cached {
                    Some(c) => {
                        note(format!(
                            "refreshing the CRL {url} failed, the cached one (current until its nextUpdate) is kept: {why}"
                        ));
                        Ok(c)
                    }
                    None => Err(why),
                }
            }
        }
    }
}

// ------------------------------------------------------------------ a peer

/// Why a peer is refused after its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRefusal {
    /// The reason, in words.
    pub reason: String,
    /// The CRL's URL, when one is concerned.
    pub crl: Option<String>,
    /// Whether a CRL lists the certificate (else no current CRL could be had).
    pub revoked: bool,
}

/// The path of the peer's `presented` chain up to a trust anchor, each
/// certificate with its issuer, found among the presented certificates, the
/// configured `intermediates` and the `anchors` by name and signature (the
/// handshake validated such a path already; a key that signs the certificate
/// under that name is its issuer). Ends at an anchor.
fn path_to_anchor<'a>(
    presented: &'a [CertificateDer<'a>],
    intermediates: &'a [CertificateDer<'a>],
    anchors: &'a [CertificateDer<'a>],
) -> Result<Vec<(X509Certificate<'a>, X509Certificate<'a>)>, String> {
    let parse = |d: &'a CertificateDer<'a>| inspect::parse_der(d.as_ref()).ok();
    let leaf = presented
        .first()
        .and_then(parse)
        .ok_or("the peer's certificate cannot be read")?;
    let pool: Vec<(X509Certificate<'a>, bool)> = presented
        .iter()
        .skip(1)
        .chain(intermediates)
        .filter_map(|d| parse(d).map(|c| (c, false)))
        .chain(anchors.iter().filter_map(|d| parse(d).map(|c| (c, true))))
        .collect();
    let mut out = Vec::new();
    let mut cur = leaf;
    for _ in 0..MAX_PATH {
        let Some((issuer, anchor)) = pool.iter().find(|(c, _)| {
            c.subject().as_raw() == cur.issuer().as_raw()
                && cur.verify_signature(Some(c.public_key())).is_ok()
        }) else {
            return Err(format!(
                "the issuer `{}` of `{}` is not among the certificates given",
                inspect::dn_string(cur.issuer()),
                inspect::dn_string(cur.subject())
            ));
        };
        out.push((cur, issuer.clone()));
        if *anchor {
            return Ok(out);
        }
        cur = issuer.clone();
    }
    Err(format!("a path longer than {MAX_PATH} certificates"))
}

fn who(i: usize, cert: &X509Certificate<'_>) -> String {
    let serial = crate::hex::encode(cert.raw_serial());
    match i {
        0 => format!("the certificate (serial {serial})"),
        _ => format!(
            "intermediate CA `{}` (serial {serial})",
            inspect::dn_string(cert.subject())
        ),
    }
}

/// Check the peer's path (see the module documentation) against CRLs from
/// its distribution points. `Ok` when every certificate of the path with a
/// distribution point has a current CRL that does not list it; `note`
/// hears of ignored distribution point names and failed refreshes.
pub async fn check_peer(
    cache: &CrlCache,
    presented: &[CertificateDer<'_>],
    intermediates: &[CertificateDer<'_>],
    anchors: &[CertificateDer<'_>],
    now: OffsetDateTime,
    note: &(dyn Fn(String) + Send + Sync),
) -> Result<(), PeerRefusal> {
    let fail = |reason: String, crl: Option<String>| PeerRefusal {
        reason,
        crl,
        revoked: false,
    };
    let path = path_to_anchor(presented, intermediates, anchors)
        .map_err(|e| fail(format!("revocation not checked: {e}"), None))?;
    for (i, (cert, issuer)) in path.iter().enumerate() {
        let Some(points) = distribution_points(cert) else {
            continue;
        };
        let whom = who(i, cert);
        for why in &points.ignored {
            note(format!("{whom}: CRL distribution point ignored: {why}"));
        }
        if points.urls.is_empty() {
            return Err(fail(
                format!(
                    "no current CRL for {whom}: its CRL distribution points name no http:// URI"
                ),
                None,
            ));
        }
        let mut failures = Vec::new();
        let mut found = None;
        for url in points.urls.iter().take(MAX_URLS_PER_CERT) {
            match cache.current(url, issuer, now, note).await {
                Ok(crl) => {
                    found = Some((url, crl));
                    break;
                }
                Err(why) => failures.push((url, why)),
            }
        }
        let Some((url, crl)) = found else {
            let (url, why) = &failures[0];
            let more = match failures.len() {
                1 => String::new(),
                n => format!(" (and {} other URL(s) failed)", n - 1),
            };
            return Err(fail(
                format!("no current CRL for {whom} from {url}: {why}{more}"),
                Some(url.to_string()),
            ));
        };
        if !crl.covers(cert) {
            return Err(fail(
                format!("no current CRL for {whom}: the CRL from {url} does not cover it (issuingDistributionPoint)"),
                Some(url.to_string()),
            ));
        }
        if let Some(e) = crl.revoked(cert) {
            let when =
                e.at.map(|t| format!(" on {}", crate::timefmt::rfc3339(t)))
                    .unwrap_or_default();
            let why = e
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return Err(PeerRefusal {
                reason: format!(
                    "revoked: {whom} was revoked{when}{why} according to the CRL from {url}"
                ),
                crl: Some(url.to_string()),
                revoked: true,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
        DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SerialNumber,
    };

    struct Ca {
        der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str, crl_sign: bool) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        if crl_sign {
            p.key_usages.push(KeyUsagePurpose::CrlSign);
        }
        let cert = p.self_signed(&key).unwrap();
        // rcgen signs CRLs only for an issuer with cRLSign: the certificate
        // says whether it has it, the signing parameters always do.
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(p, key),
        }
    }

    fn leaf(ca: &Ca, serial: u64, cdp: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["peer.test".into()]).unwrap();
        p.serial_number = Some(SerialNumber::from(serial));
        if !cdp.is_empty() {
            p.crl_distribution_points = vec![CrlDistributionPoint {
                uris: cdp.iter().map(|s| s.to_string()).collect(),
            }];
        }
        p.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    }

    fn crl(ca: &Ca, revoked: &[u64], this: OffsetDateTime, next: OffsetDateTime) -> Vec<u8> {
        CertificateRevocationListParams {
            this_update: this,
            next_update: next,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: this,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&ca.issuer)
        .unwrap()
        .der()
        .to_vec()
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        inspect::parse_der(der).unwrap()
    }

    #[test]
    fn urls_are_http_only() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/x.crl").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/x.crl")
        );
        let u = HttpUrl::parse("HTTP://crl.example").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (80, "/", "crl.example")
        );
        let u = HttpUrl::parse("http://[::1]:81/a?b#c").unwrap();
        assert_eq!(
            (u.host.as_str(), u.path.as_str(), u.host_header().as_str()),
            ("::1", "/a?b", "[::1]:81")
        );
        for bad in [
            "https://crl.example/x.crl",
            "ldap://ldap.example/cn=CA?certificateRevocationList",
            "http://user@crl.example/",
            "http://crl.example:99999/",
            "http:///x.crl",
            "http://a b/",
            "file:///etc/passwd",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn distribution_points_keep_http_and_report_the_rest() {
        let ca = ca("CA", true);
        let der = leaf(
            &ca,
            7,
            &[
                "ldap://ldap.example/cn=CA",
                "http://127.0.0.1:1/ca.crl",
                "https://x.example/ca.crl",
            ],
        );
        let dp = distribution_points(&parse(&der)).unwrap();
        assert_eq!(
            dp.urls.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
            ["http://127.0.0.1:1/ca.crl"]
        );
        assert_eq!(dp.ignored.len(), 2, "{:?}", dp.ignored);
        assert!(dp.ignored[0].starts_with("ldap://"), "{:?}", dp.ignored);
        let none = leaf(&ca, 8, &[]);
        assert_eq!(distribution_points(&parse(&none)), None);
    }

    #[test]
    fn a_crl_is_checked_against_its_issuer_and_the_clock() {
        let (ca1, ca2) = (ca("CA", true), ca("CA", true));
        let other = ca("Other", true);
        let n = now();
        let day = time::Duration::days(1);
        let good = crl(&ca1, &[7], n - day, n + day);
        let issuer = parse(&ca1.der);
        let c = CheckedCrl::check(&good, &issuer).unwrap();
        assert!(c.current_at(n).is_ok());
        let l7 = leaf(&ca1, 7, &[]);
        let l8 = leaf(&ca1, 8, &[]);
        assert!(c.revoked(&parse(&l7)).is_some());
        assert!(c.revoked(&parse(&l8)).is_none());

        // Signed by another key under the same name: refused.
        let forged = crl(&ca2, &[], n - day, n + day);
        assert_eq!(
            CheckedCrl::check(&forged, &issuer).unwrap_err(),
            CrlError::WrongKeyId
        );
        // Same name, no key identifier to tell: the signature decides.
        let mut forged_params = CertificateRevocationListParams {
            this_update: n - day,
            next_update: n + day,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: vec![],
            key_identifier_method: KeyIdMethod::PreSpecified(vec![]),
        };
        if let Some(k) = key_id_of(&issuer) {
            forged_params.key_identifier_method = KeyIdMethod::PreSpecified(k);
        }
        let forged = forged_params.signed_by(&ca2.issuer).unwrap().der().to_vec();
        assert_eq!(
            CheckedCrl::check(&forged, &issuer).unwrap_err(),
            CrlError::BadSignature
        );
        // Another issuer's name.
        let theirs = crl(&other, &[], n - day, n + day);
        assert!(matches!(
            CheckedCrl::check(&theirs, &issuer).unwrap_err(),
            CrlError::WrongIssuer { .. }
        ));
        // Expired, and not yet valid.
        let old = crl(&ca1, &[], n - day - day, n - day);
        let c = CheckedCrl::check(&old, &issuer).unwrap();
        assert_eq!(c.current_at(n).unwrap_err(), CrlError::Expired(n - day));
        let early = crl(&ca1, &[], n + day, n + day + day);
        let c = CheckedCrl::check(&early, &issuer).unwrap();
        assert_eq!(c.current_at(n).unwrap_err(), CrlError::NotYetValid(n + day));
        // Not a CRL.
        assert!(matches!(
            CheckedCrl::check(b"junk", &issuer).unwrap_err(),
            CrlError::Unreadable(_)
        ));
        // A CA whose key usage lacks cRLSign.
        let nosign = ca("NoSign", false);
        let c = crl(&nosign, &[], n - day, n + day);
        assert_eq!(
            CheckedCrl::check(&c, &parse(&nosign.der)).unwrap_err(),
            CrlError::SignerWithoutCrlSign
        );
    }

    #[test]
    fn pem_and_der_bodies() {
        let ca = ca("CA", true);
        let n = now();
        let der = crl(&ca, &[], n, n + time::Duration::days(1));
        assert_eq!(crl_der(&der).unwrap(), der);
        let pem = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        assert_eq!(crl_der(format!("\n{pem}").as_bytes()).unwrap(), der);
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", der.clone()));
        assert!(crl_der(cert.as_bytes()).is_err());
    }

    /// A one-shot HTTP server on loopback: answers each connection with
    /// `reply` (None: reads and never answers). Returns its port.
    fn server(reply: Option<Vec<u8>>) -> (u16, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                // The client's side may outlive its fetch until its runtime
                // runs again: never wait for it longer than this.
                s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                match reply {
                    Some(r) => {
                        let _ = s.write_all(&r);
                    }
                    // Hold the connection until the client gives up.
                    None => {
                        let _ = s.read(&mut buf);
                    }
                }
            }
        });
        (port, h)
    }

    fn ok_reply(body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn fetching_is_bounded_in_size_and_time_and_follows_no_redirect() {
        let rt = rt();
        let limits = FetchLimits {
            timeout: Duration::from_millis(300),
            max_bytes: 100,
            ..FetchLimits::default()
        };
        let url = |p: u16| HttpUrl::parse(&format!("http://127.0.0.1:{p}/x.crl")).unwrap();

        let (p, h) = server(Some(ok_reply(&[1u8; 100])));
        assert_eq!(
            rt.block_on(fetch(&url(p), &limits)).unwrap(),
            vec![1u8; 100]
        );
        h.join().unwrap();

        // Announced too big, and too big without a length (chunked).
        let (p, h) = server(Some(ok_reply(&[1u8; 101])));
        assert_eq!(
            rt.block_on(fetch(&url(p), &limits)),
            Err(FetchError::TooBig(100))
        );
        h.join().unwrap();
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            chunked.extend_from_slice(b"32\r\n");
            chunked.extend_from_slice(&[2u8; 50]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (p, h) = server(Some(chunked));
        assert_eq!(
            rt.block_on(fetch(&url(p), &limits)),
            Err(FetchError::TooBig(100))
        );
        h.join().unwrap();

        // A server that never answers: the timeout.
        let (p, h) = server(None);
        assert_eq!(
            rt.block_on(fetch(&url(p), &limits)),
            Err(FetchError::Timeout(Duration::from_millis(300)))
        );
        h.join().unwrap();

        // A redirect is not followed; another status is an error.
        let (p, h) = server(Some(
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        ));
        assert_eq!(
            rt.block_on(fetch(&url(p), &limits)),
            Err(FetchError::Redirect(302, "http://elsewhere/".into()))
        );
        h.join().unwrap();
        let (p, h) = server(Some(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ));
        assert_eq!(
            rt.block_on(fetch(&url(p), &limits)),
            Err(FetchError::Status(404))
        );
        h.join().unwrap();
    }

    #[test]
    fn a_peer_is_refused_when_revoked_or_without_a_current_crl() {
        let rt = rt();
        let ca1 = ca("CA", true);
        let n = now();
        let day = time::Duration::days(1);
        let body = crl(&ca1, &[7], n - day, n + day);
        let (p, h) = server(Some(ok_reply(&body)));
        let u = format!("http://127.0.0.1:{p}/ca.crl");
        let revoked = leaf(&ca1, 7, &["ldap://x.example/", &u]);
        let fine = leaf(&ca1, 8, &[&u]);
        let no_cdp = leaf(&ca1, 9, &[]);
        let anchors = [CertificateDer::from(ca1.der.clone())];
        let cache = CrlCache::new(FetchLimits {
            timeout: Duration::from_millis(500),
            ..FetchLimits::default()
        });
        let notes = Mutex::new(Vec::new());
        let note = |s: String| notes.lock().unwrap().push(s);
        let check = |der: &Vec<u8>| {
            rt.block_on(check_peer(
                &cache,
                &[CertificateDer::from(der.clone())],
                &[],
                &anchors,
                n,
                &note,
            ))
        };
        let r = check(&revoked).unwrap_err();
        assert!(r.revoked && r.reason.starts_with("revoked:"), "{r:?}");
        assert_eq!(r.crl.as_deref(), Some(u.as_str()));
        assert!(notes.lock().unwrap()[0].contains("ldap://"), "{notes:?}");
        h.join().unwrap();
        // Served from the cache: the server is gone.
        assert!(check(&fine).is_ok());
        assert!(check(&no_cdp).is_ok());
        assert_eq!(cache.len(), 1);

        // A URL that does not answer: refused, fail closed, with the reason.
        let (p, h) = server(None);
        let silent = leaf(&ca1, 10, &[&format!("http://127.0.0.1:{p}/ca.crl")]);
        let r = check(&silent).unwrap_err();
        assert!(!r.revoked && r.reason.contains("no answer within"), "{r:?}");
        h.join().unwrap();
        // A CRL signed by another CA: refused.
        let other = ca("CA", true);
        let (p, h) = server(Some(ok_reply(&crl(&other, &[], n - day, n + day))));
        let l = leaf(&ca1, 11, &[&format!("http://127.0.0.1:{p}/other.crl")]);
        let r = check(&l).unwrap_err();
        assert!(r.reason.contains("issuer"), "{r:?}");
        h.join().unwrap();
    }

    /// A server answering `body` to every connection, counting them, until
    /// `stop` is set; returns its port and count.
    fn counting_server(
        body: Vec<u8>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> (
        u16,
        Arc<std::sync::atomic::AtomicUsize>,
        std::thread::JoinHandle<()>,
    ) {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = count.clone();
        let h = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).ok();
                        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
                        // Slow enough that a second caller arrives meanwhile.
                        std::thread::sleep(Duration::from_millis(200));
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        let _ = s.write_all(&ok_reply(&body));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        (port, count, h)
    }

    #[test]
    fn concurrent_lookups_share_one_fetch_and_refreshes_are_spaced() {
        use std::sync::atomic::Ordering;
        let rt = rt();
        let ca1 = ca("CA", true);
        let issuer = parse(&ca1.der);
        let n = now();
        let day = time::Duration::days(1);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (port, count, h) = counting_server(crl(&ca1, &[], n - day, n + day), stop.clone());
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/ca.crl")).unwrap();
        let note = |_: String| {};
        // nextUpdate within the margin: due for a refresh at every lookup,
        // but not within `retry_after` of the last fetch.
        let spaced = CrlCache::new(FetchLimits {
            refresh_margin: Duration::from_secs(7 * 86400),
            retry_after: Duration::from_secs(3600),
            ..FetchLimits::default()
        });
        let (a, b, c) = rt.block_on(async {
            tokio::join!(
                spaced.current(&url, &issuer, n, &note),
                spaced.current(&url, &issuer, n, &note),
                spaced.current(&url, &issuer, n, &note),
            )
        });
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(rt.block_on(spaced.current(&url, &issuer, n, &note)).is_ok());
        assert_eq!(count.load(Ordering::SeqCst), 1);
        // Without the spacing, the CRL near its nextUpdate is fetched again.
        let eager = CrlCache::new(FetchLimits {
            refresh_margin: Duration::from_secs(7 * 86400),
            retry_after: Duration::ZERO,
            ..FetchLimits::default()
        });
        for want in [2, 3] {
            assert!(rt.block_on(eager.current(&url, &issuer, n, &note)).is_ok());
            assert_eq!(count.load(Ordering::SeqCst), want);
        }
        stop.store(true, Ordering::SeqCst);
        h.join().unwrap();
    }

    #[test]
    fn an_intermediate_with_a_distribution_point_is_checked_against_its_issuers_crl() {
        let rt = rt();
        let root = ca("Root", true);
        let n = now();
        let day = time::Duration::days(1);
        // The root's CRL lists the intermediate (serial 5).
        let (p, h) = server(Some(ok_reply(&crl(&root, &[5], n - day, n + day))));
        let root_url = format!("http://127.0.0.1:{p}/root.crl");
        let ikey = KeyPair::generate().unwrap();
        let mut ip = CertificateParams::new(vec![]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Issuing");
        ip.distinguished_name = dn;
        ip.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ip.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ip.serial_number = Some(SerialNumber::from(5u64));
        ip.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![root_url.clone()],
        }];
        let inter_der = ip.signed_by(&ikey, &root.issuer).unwrap().der().to_vec();
        let inter = Ca {
            der: inter_der.clone(),
            issuer: Issuer::new(ip, ikey),
        };
        // The leaf has no distribution point: only the intermediate is looked up.
        let leaf_der = leaf(&inter, 9, &[]);
        let cache = CrlCache::new(FetchLimits::default());
        let r = rt
            .block_on(check_peer(
                &cache,
                &[
                    CertificateDer::from(leaf_der),
                    CertificateDer::from(inter_der),
                ],
                &[],
                &[CertificateDer::from(root.der.clone())],
                n,
                &|_| {},
            ))
            .unwrap_err();
        assert!(
            r.revoked && r.reason.contains("intermediate CA `CN=Issuing`"),
            "{r:?}"
        );
        assert_eq!(r.crl.as_deref(), Some(root_url.as_str()));
        h.join().unwrap();
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = CrlCache::new(FetchLimits {
            max_entries: 3,
            ..FetchLimits::default()
        });
        for i in 0..10 {
            let _ = cache.slot(&HttpUrl::parse(&format!("http://h/{i}")).unwrap());
        }
        assert_eq!(cache.len(), 3);
        let t = cache.table.lock().unwrap();
        assert!(t.map.contains_key("http://h/9") && !t.map.contains_key("http://h/0"));
    }
}
