//! The HTTP layer of the ACME server ([`Front`]): what every request goes
//! through before an ACME handler sees it, and how every answer is written.
//!
//! - the `Host` check (a `--name` or the listen address, else 421: a forged
//!   name never reaches a URL), and the base URL built from it;
//! - the rate of one client network's requests (`--acme-client-rate-limit`);
//! - routing: the directory, renewalInfo, newNonce, and POSTs (`post`: body
//!   limits, JWS verification, nonce redemption, the account's rate), each to
//!   its handler (`super::handlers`);
//! - the reply or problem document written out with the headers every answer
//!   carries (the directory's Link, Replay-Nonce after a POST), and every
//!   refusal logged ([`log_refusal`]).
//!
//! Nonces are this layer's: handed out with answers, redeemed once a POST's
//! signature verified, and handed to the next run at a clean stop.

mod post;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, LINK, LOCATION,
};
use hyper::{Method, Request, Response, StatusCode};
use time::OffsetDateTime;

use super::accept::Peer;
use super::app::App;
use super::log::log_refusal;
use super::problem::Problem;
use super::rate::{AccountBuckets, ClientBuckets, ClientLimit, Rate};
use super::reply::Reply;
use crate::acme::jws::MAX_JWS_BYTES;
use crate::acme::nonce::NonceBook;
use crate::acme::problem::ProblemType;
use crate::conn_limit::client_network;
use crate::error::{Error, Result};

/// How long a nonce is accepted.
const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// The ACME service as HTTP serves it.
pub(super) struct Front {
    app: Arc<App>,
    /// The `Host` values this server answers for (lowercase): each `--name`
    /// with and without the port, and the listen address unless a wildcard.
    /// URLs are built from the one the client used; any other is refused, so
    /// a forged `Host` never ends up in a URL the server hands out.
    hosts: HashSet<String>,
    /// Requests per second of one account (bursts of twice that); 0: no limit.
    rate_limit: u32,
    door: Mutex<Door>,
}

/// What the door keeps: the nonces, and the request rates of client networks
/// and of accounts.
struct Door {
    nonces: NonceBook,
    requests: ClientBuckets,
    accounts: AccountBuckets,
}

impl Front {
    /// The HTTP layer of `app` for a server named `names` listening on
    /// `local`, with the nonces a clean stop handed over.
    pub(super) fn new(
        app: Arc<App>,
        names: &[String],
        local: SocketAddr,
        rate_limit: u32,
    ) -> Result<Front> {
        let capacity = app.limits.nonces;
        let lifetime = NONCE_LIFETIME.as_secs();
        let mut nonces = NonceBook::new(capacity, lifetime)
            .map_err(|_| Error::State("no random numbers for ACME nonces".into()))?;
        if let Some(saved) = app.acme.take_nonces()? {
            let restored = serde_json::from_slice(&saved)
                .ok()
                .and_then(|s| NonceBook::restore(s, capacity, lifetime));
            if let Some(book) = restored {
                nonces = book;
            }
        }
        Ok(Front {
            hosts: allowed_hosts(names, local),
            rate_limit,
            door: Mutex::new(Door {
                nonces,
                requests: ClientBuckets::default(),
                accounts: AccountBuckets::default(),
            }),
            app,
        })
    }

    fn door(&self) -> MutexGuard<'_, Door> {
        self.door.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answer one request from `peer`; a refusal is also logged.
    pub(super) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: &Peer,
    ) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let Some(host) = self.host_of(&req) else {
            return self.misdirected(&method, &path, peer);
        };
        let base = format!("https://{host}");
        let (result, with_nonce) = match self.take_request_token(peer) {
            Err(p) => (Err(p), false),
            Ok(()) => self.route(req, &method, &base, &path, peer).await,
        };
        let reply = result.unwrap_or_else(|p| {
            let request = request_text(&method, &path);
            log_refusal(&peer.text, &request, p.status, p.kind.name(), &p.detail);
            problem_reply(&p)
        });
        self.render(reply, &base, with_nonce)
    }

    /// The `Host` the request names, when it is this server.
    fn host_of(&self, req: &Request<Incoming>) -> Option<String> {
        req.headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase)
            .filter(|h| self.hosts.contains(h))
    }

    /// 421 for a `Host` that is not this server: no URL is built from it, and
    /// the answer carries no nonce.
    fn misdirected(&self, method: &Method, path: &str, peer: &Peer) -> Response<Full<Bytes>> {
        let mut names: Vec<&str> = self.hosts.iter().map(String::as_str).collect();
        names.sort_unstable();
        let p = Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            ProblemType::Malformed,
            format!(
                "the Host header must name this server ({})",
                names.join(", ")
            ),
        );
        let request = request_text(method, path);
        log_refusal(&peer.text, &request, p.status, p.kind.name(), &p.detail);
        Response::builder()
            .status(p.status)
            .header(CONTENT_TYPE, "application/problem+json")
            .body(Full::new(Bytes::from(p.body().to_string())))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    /// One token of `peer`'s network's request bucket (`requests_per_client`).
    fn take_request_token(&self, peer: &Peer) -> Result<(), Problem> {
        let (Some(ip), n) = (peer.ip, self.app.limits.requests_per_client) else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let taken = self
            .door()
            .requests
            .take(ip, Rate::per_second(n), Instant::now());
        match taken {
            Ok(()) => Ok(()),
            Err(ClientLimit::Network(wait)) => Err(Problem::rate_limited(
                format!("over {n} requests a second from {}", client_network(ip)),
                wait,
            )),
            Err(ClientLimit::Table(wait)) => Err(Problem::rate_limited(
                "requests from too many networks at once",
                wait,
            )),
        }
    }

    /// The answer to a request of this server, and whether it carries a nonce.
    async fn route(
        &self,
        req: Request<Incoming>,
        method: &Method,
        base: &str,
        path: &str,
        peer: &Peer,
    ) -> (Result<Reply, Problem>, bool) {
        match (method, path) {
            (&Method::GET, "/acme/directory") => (Ok(self.app.directory(base)), false),
            (&Method::GET, p) if p.starts_with("/acme/renewal-info/") => (
                self.app
                    .renewal_info(&p["/acme/renewal-info/".len()..])
                    .await,
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
                let answer = match read_body(req).await {
                    Ok(body) => self.post(base, path, &body, peer).await,
                    Err(p) => Err(p),
                };
                (answer, true)
            }
            _ => (Err(Problem::not_found()), false),
        }
    }

    /// The reply as HTTP: with the directory's Link, its own Links and
    /// Location, Retry-After, and a fresh nonce when `with_nonce`.
    fn render(&self, r: Reply, base: &str, with_nonce: bool) -> Response<Full<Bytes>> {
        let mut builder = Response::builder();
        if let Some(secs) = r.retry_after {
            builder = builder.header(hyper::header::RETRY_AFTER, secs);
        }
        builder = builder
            .status(r.status)
            .header(CONTENT_TYPE, r.content_type)
            .header(
                LINK,
                header(&format!("<{base}/acme/directory>;rel=\"index\"")),
            );
        for l in &r.links {
            builder = builder.header(LINK, header(l));
        }
        if let Some(l) = &r.location {
            builder = builder.header(LOCATION, header(l));
        }
        if with_nonce {
            builder = builder
                .header("Replay-Nonce", header(&self.nonce()))
                .header(CACHE_CONTROL, "no-store");
        }
        builder
            .body(Full::new(Bytes::from(r.body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    /// A fresh nonce.
    fn nonce(&self) -> String {
        self.door().nonces.issue(unix_now())
    }

    /// Forget what expired by `now` (the ACME state, and the rate buckets of
    /// the accounts forgotten), in memory and in the store.
    pub(super) fn prune(&self, now: OffsetDateTime) -> Result<(), Problem> {
        let pruned = self.app.prune(now);
        {
            let mut door = self.door();
            for (id, _) in &pruned.accounts {
                door.accounts.forget(id);
            }
        }
        self.app.remove_pruned(&pruned)
    }

    /// Hand the nonces to the next run (at a clean stop).
    pub(super) fn save_nonces(&self) -> Result<()> {
        let saved = serde_json::to_vec(&self.door().nonces.saved())
            .map_err(|e| Error::State(format!("saving nonces: {e}")))?;
        self.app.acme.save_nonces(&saved)?;
        self.app.acme.flush()
    }
}

/// The `Host` values a server listening on `local` with `names` answers for.
fn allowed_hosts(names: &[String], local: SocketAddr) -> HashSet<String> {
    let port = local.port();
    let mut hosts = HashSet::new();
    for n in names {
        let n = n.to_ascii_lowercase();
        hosts.insert(format!("{n}:{port}"));
        hosts.insert(n);
    }
    if !local.ip().is_unspecified() {
        hosts.insert(local.to_string());
        if port == 443 {
            hosts.insert(match local.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
    }
    hosts
}

/// A POST's body: `application/jose+json` of at most [`MAX_JWS_BYTES`] (413
/// before reading when Content-Length says more).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Problem> {
    let too_big = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ProblemType::Malformed,
            format!("the body is over {} KiB", MAX_JWS_BYTES / 1024),
        )
    };
    let headers = req.headers();
    let declared_too_big = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_JWS_BYTES as u64);
    let jose = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "application/jose+json");
    if declared_too_big {
        return Err(too_big());
    }
    if !jose {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemType::Malformed,
            "the Content-Type must be application/jose+json",
        ));
    }
    match Limited::new(req.into_body(), MAX_JWS_BYTES).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(too_big()),
    }
}

/// A problem document as the reply that carries it.
fn problem_reply(p: &Problem) -> Reply {
    let mut r = Reply::body(
        p.status,
        "application/problem+json",
        p.body().to_string().into_bytes(),
    );
    r.retry_after = p.retry_after;
    r
}

/// What the refusal log names a request by.
fn request_text(method: &Method, path: &str) -> String {
    format!("{method} {}", crate::names::printable(path))
}

fn header(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Now, in Unix seconds (what nonces carry).
fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}
