//! The ACME endpoints.

use super::*;
use crate::acme::server::status::{AccountStatus, AuthzStatus, ChallengeStatus, OrderStatus};

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// The ACME service: engine handle and state.
pub(super) struct App {
    pub(super) engine: Engine,
    pub(super) state: Mutex<State>,
    pub(super) profile: String,
    pub(super) require_eab: bool,
    /// The ACME trees of the engine's store (the working copy's backing).
    pub(super) acme: crate::store::acme::AcmeStore,
    pub(super) http01_port: u16,
    pub(super) tlsalpn01_port: u16,
    pub(super) rate_limit: u32,
    /// New accounts without EAB per client address and hour (0: no limit):
    /// without it a client that makes a new key at every start (a crash loop)
    /// would fill the server's account table, and then no one could register.
    pub(super) accounts_per_ip: u32,
    pub(super) idle_timeout: Duration,
    /// The `Host` values this server answers for (lowercase): each `--name`
    /// with and without the port, and the listen address unless a wildcard.
    /// URLs are built from the one the client used; any other is refused, so
    /// a forged `Host` never ends up in a URL the server hands out.
    pub(super) hosts: HashSet<String>,
    /// Where the validator's lookups go (`--acme-resolver`).
    pub(super) lookup: Lookup,
    /// What the server holds at most, in all and per client.
    pub(super) limits: AcmeLimits,
    /// Validations running at once (a validation waits for a place here after
    /// its account's own [`State::validation_slot`]).
    pub(super) validations: Arc<tokio::sync::Semaphore>,
}

/// The `Host` values a server listening on `local` with `names` answers for.
pub(super) fn allowed_hosts(names: &[String], local: SocketAddr) -> HashSet<String> {
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

/// What a verified POST carries.
pub(super) struct Post {
    pub(super) jws: Jws,
    pub(super) account: Option<String>,
}

impl App {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write an order through to the store (durable with the next flush).
    pub(super) fn save_order(&self, st: &State, id: &str) -> Result<(), Problem> {
        match st.orders.get(id) {
            Some(o) => self
                .acme
                .put_order(&o.record(id))
                .map_err(|e| Problem::internal(&e)),
            None => Ok(()),
        }
    }

    /// Write an authorization (with its challenges) through to the store.
    pub(super) fn save_authz(&self, st: &State, id: &str) -> Result<(), Problem> {
        match st.authzs.get(id) {
            Some(a) => self
                .acme
                .put_authz(&a.record(id))
                .map_err(|e| Problem::internal(&e)),
            None => Ok(()),
        }
    }

    /// Write an account through to the store; `old_thumbprint` after a rollover.
    pub(super) fn save_account(
        &self,
        st: &State,
        id: &str,
        old_thumbprint: Option<&str>,
    ) -> Result<(), Problem> {
        match st.accounts.get(id) {
            Some(a) => self
                .acme
                .put_account(&a.record(id), old_thumbprint)
                .map_err(|e| Problem::internal(&e)),
            None => Ok(()),
        }
    }

    /// Make what was written durable before the reply (accounts and their
    /// bindings: rare, and a lost one would strand the client or free an EAB key).
    pub(super) async fn flush(&self) -> Result<(), Problem> {
        let acme = self.acme.clone();
        tokio::task::spawn_blocking(move || acme.flush())
            .await
            .map_err(|_| Problem::internal(&Error::State("the flush task stopped".into())))?
            .map_err(|e| Problem::internal(&e))
    }

    /// The profile an account's certificates come from.
    pub(super) fn profile_of(&self, account: &str) -> String {
        self.state()
            .accounts
            .get(account)
            .and_then(|a| a.profile.clone())
            .unwrap_or_else(|| self.profile.clone())
    }

    /// Hand the nonces to the next run (at a clean stop).
    pub(super) fn save_nonces(&self) -> Result<()> {
        let saved = serde_json::to_vec(&self.state().nonces.saved())
            .map_err(|e| Error::State(format!("saving nonces: {e}")))?;
        self.acme.save_nonces(&saved)?;
        self.acme.flush()
    }

    pub(super) fn nonce(&self) -> String {
        self.state().nonces.issue(unix_now())
    }

    /// Forget what expired by `now`, in the working copy and in the store.
    pub(super) fn prune(&self, now: OffsetDateTime) -> Result<(), Problem> {
        let pruned = self.state().prune(now);
        for o in &pruned.orders {
            self.acme
                .remove_order(o)
                .map_err(|e| Problem::internal(&e))?;
        }
        for (id, thumbprint) in &pruned.accounts {
            self.acme
                .remove_account(id, thumbprint)
                .map_err(|e| Problem::internal(&e))?;
        }
        Ok(())
    }

    /// One token of `peer`'s network's request bucket (`requests_per_client`).
    fn take_request_token(&self, peer: &Peer) -> Result<(), Problem> {
        let (Some(ip), n) = (peer.ip, self.limits.requests_per_client) else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let taken = self
            .state()
            .request_buckets
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

    /// Note a request by `account`: its last-seen time moves on (its expiry
    /// with it), written through when it moved by an hour or more.
    fn seen(&self, account: &str) -> Result<(), Problem> {
        let now = OffsetDateTime::now_utc();
        let mut st = self.state();
        let Some(a) = st.accounts.get_mut(account) else {
            return Ok(());
        };
        if now - a.last_seen < time::Duration::hours(1) {
            return Ok(());
        }
        a.last_seen = now;
        self.save_account(&st, account, None)
    }

    /// Answer one request from `peer`; a refusal is also logged (`log_refusal`).
    pub(super) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: &Peer,
    ) -> Response<Full<Bytes>> {
        // What the refusal log names the request by (built only for a refusal).
        let request =
            |method: &Method, path: &str| format!("{method} {}", crate::names::printable(path));
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase)
            .filter(|h| self.hosts.contains(h));
        let Some(host) = host else {
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
            let request = request(req.method(), req.uri().path());
            log_refusal(&peer.text, &request, p.status, p.kind.name(), &p.detail);
            return Response::builder()
                .status(p.status)
                .header(CONTENT_TYPE, "application/problem+json")
                .body(Full::new(Bytes::from(p.body().to_string())))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
        };
        let base = format!("https://{host}");
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        let (result, with_nonce) = match self.take_request_token(peer) {
            Err(p) => (Err(p), false),
            Ok(()) => match (&method, path.as_str()) {
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
                            ProblemType::Malformed,
                            format!("the body is over {} KiB", MAX_JWS_BYTES / 1024),
                        ))
                    } else if !ct_ok {
                        Err(Problem::new(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            ProblemType::Malformed,
                            "the Content-Type must be application/jose+json",
                        ))
                    } else {
                        match Limited::new(req.into_body(), MAX_JWS_BYTES).collect().await {
                            Ok(b) => self.post(&base, &path, &b.to_bytes(), peer).await,
                            Err(_) => Err(Problem::new(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                ProblemType::Malformed,
                                format!("the body is over {} KiB", MAX_JWS_BYTES / 1024),
                            )),
                        }
                    };
                    (r, true)
                }
                _ => (Err(Problem::not_found()), false),
            },
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
            Err(p) => {
                log_refusal(
                    &peer.text,
                    &request(&method, &path),
                    p.status,
                    p.kind.name(),
                    &p.detail,
                );
                (
                    p.status,
                    "application/problem+json",
                    p.body().to_string().into_bytes(),
                    None,
                    Vec::new(),
                    p.retry_after,
                )
            }
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

    pub(super) fn directory(&self, base: &str) -> Reply {
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
    pub(super) async fn renewal_info(&self, cert_id: &str) -> Result<Reply, Problem> {
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
    pub(super) async fn post(
        self: &Arc<Self>,
        base: &str,
        path: &str,
        body: &[u8],
        peer: &Peer,
    ) -> Result<Reply, Problem> {
        let jws = Jws::parse(body).map_err(Problem::jws)?;
        let expected = format!("{base}{path}");
        if jws.url != expected {
            return Err(Problem::unauthorized(format!(
                "the JWS is signed for `{}`, not for `{expected}`",
                crate::names::printable(&jws.url)
            )));
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
                            ProblemType::AccountDoesNotExist,
                            "no such account",
                        ))
                    }
                    Some((_, a)) if a.status != AccountStatus::Valid => {
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
        // The nonce after the signature: only a request signed by its key uses
        // up a place among the redeemed nonces.
        if !self.state().nonces.redeem(&jws.nonce, unix_now()) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                ProblemType::BadNonce,
                "the nonce is unknown, expired or used; get a fresh one",
            ));
        }
        if let Some(acct) = &account {
            self.seen(acct)?;
        }
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
                    ProblemType::RateLimited,
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
            return self.new_account(base, &post, &key, peer).await;
        }
        if revoke {
            return self.revoke(&post, &key).await;
        }
        let account = post.account.clone().unwrap_or_default();
        let rest = &path["/acme/".len()..];
        match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["new-order"] => self.new_order(base, &account, &post).await,
            ["key-change"] => self.key_change(base, &account, &post, &key).await,
            ["acct", id] => self.account(base, &account, id, &post).await,
            ["order", id] => self.order_get(base, &account, id),
            ["order", id, "finalize"] => self.finalize(base, &account, id, &post).await,
            ["authz", id] => self.authz_get(base, &account, id),
            ["chall", id] => self.challenge(base, &account, id, &post).await,
            ["cert", id] => self.certificate(&account, id),
            _ => Err(Problem::not_found()),
        }
    }

    pub(super) fn payload(post: &Post) -> Result<Option<Value>, Problem> {
        if post.jws.payload.is_empty() {
            return Ok(None);
        }
        post.jws.json().map(Some).map_err(Problem::jws)
    }

    pub(super) fn account_json(base: &str, id: &str, a: &Account) -> Value {
        json!({
            "status": a.status,
            "contact": a.contact,
            "orders": format!("{base}/acme/acct/{id}/orders"),
        })
    }

    /// Room for a new account without EAB from `peer`: the table's bound,
    /// the network's share of accounts without a certificate yet, and one
    /// token of the network's hourly bucket (taken last, so a refusal for room
    /// costs the network no token). `rateLimited` with Retry-After otherwise.
    fn admit_anonymous_account(
        &self,
        st: &mut State,
        peer: &Peer,
    ) -> Result<Option<IpAddr>, Problem> {
        let not_counted = "accounts with external account binding are not counted";
        if st.anonymous_accounts >= self.limits.accounts {
            return Err(Problem::rate_limited(
                format!(
                    "the server holds its limit of {} accounts ({not_counted})",
                    self.limits.accounts
                ),
                3600,
            ));
        }
        // No address: the connection is gone, and so is the reply.
        let Some(ip) = peer.ip else {
            return Ok(None);
        };
        let net = client_network(ip);
        let share = self.limits.unproven_accounts_per_client;
        if st.unproven_by_network.get(&net).copied().unwrap_or(0) >= share {
            return Err(Problem::rate_limited(
                format!(
                    "{net} holds {share} accounts that have not obtained a certificate yet; use one of them, or wait until one expires ({} hours after its last request; {not_counted})",
                    UNPROVEN_ACCOUNT_IDLE.whole_hours()
                ),
                3600,
            ));
        }
        if self.accounts_per_ip == 0 {
            return Ok(Some(net));
        }
        match st
            .account_buckets
            .take(ip, Rate::per_hour(self.accounts_per_ip), Instant::now())
        {
            Ok(()) => Ok(Some(net)),
            Err(ClientLimit::Network(wait)) => Err(Problem::rate_limited(
                format!(
                    "over {} new accounts an hour from {net} ({not_counted})",
                    self.accounts_per_ip
                ),
                wait,
            )),
            Err(ClientLimit::Table(wait)) => Err(Problem::rate_limited(
                format!("new accounts from too many networks at once ({not_counted})"),
                wait,
            )),
        }
    }

    /// newAccount; a new account is durable before the reply.
    pub(super) async fn new_account(
        &self,
        base: &str,
        post: &Post,
        key: &Jwk,
        peer: &Peer,
    ) -> Result<Reply, Problem> {
        let reply = self.new_account_now(base, post, key, peer)?;
        if reply.status == StatusCode::CREATED {
            self.flush().await?;
        }
        Ok(reply)
    }

    fn new_account_now(
        &self,
        base: &str,
        post: &Post,
        key: &Jwk,
        peer: &Peer,
    ) -> Result<Reply, Problem> {
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
                ProblemType::AccountDoesNotExist,
                "no account for this key",
            ));
        }
        let contact = parse_contact(&p)?;
        let url = format!("{base}/acme/new-account");
        let mut eab_kid = None;
        match p.get("externalAccountBinding") {
            Some(b) => {
                // Unknown, revoked and already bound keys are all "unknown or used".
                let lookup = |kid: &str| {
                    self.acme
                        .eab(kid)
                        .ok()
                        .flatten()
                        .filter(|k| k.account.is_none() && k.revoked.is_none())
                        .and_then(|k| B64.decode(k.hmac_key).ok())
                };
                let kid = crate::acme::eab::verify(b, &url, key, &lookup).map_err(|e| Problem {
                    status: StatusCode::UNAUTHORIZED,
                    kind: e.problem(),
                    detail: e.to_string(),
                    subproblems: Vec::new(),
                    retry_after: None,
                })?;
                eab_kid = Some(kid);
            }
            None if self.require_eab => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemType::ExternalAccountRequired,
                    "this server requires external account binding (mtlsca acme eab create)",
                ))
            }
            None => {}
        }
        let now = OffsetDateTime::now_utc();
        let mut st = self.state();
        // A concurrent newAccount with the same key may have won meanwhile:
        // answer with that account (and leave the EAB key unbound).
        if let Some(id) = st.by_thumbprint.get(&thumb) {
            if let Some(a) = st.accounts.get(id) {
                return Ok(Reply::json(StatusCode::OK, Self::account_json(base, id, a))
                    .at(format!("{base}/acme/acct/{id}")));
            }
        }
        let network = match eab_kid {
            None => self.admit_anonymous_account(&mut st, peer)?,
            Some(_) => None,
        };
        let id = random_id();
        let mut profile = None;
        if let Some(kid) = &eab_kid {
            let bound = self
                .acme
                .bind_eab(kid, &id)
                .map_err(|e| Problem::internal(&e))?;
            if !bound {
                return Err(Problem::unauthorized(
                    "external account binding: the key was used meanwhile",
                ));
            }
            profile = self
                .acme
                .eab(kid)
                .map_err(|e| Problem::internal(&e))?
                .map(|k| k.profile);
        }
        let a = Account {
            key: key.clone(),
            thumbprint: thumb.clone(),
            status: AccountStatus::Valid,
            contact,
            profile,
            eab_kid,
            created: now,
            network,
            proven: false,
            last_seen: now,
        };
        let body = Self::account_json(base, &id, &a);
        // The store first: the working copy only holds what was recorded.
        self.acme
            .put_account(&a.record(&id), None)
            .map_err(|e| Problem::internal(&e))?;
        st.add_account(id.clone(), a);
        Ok(Reply::json(StatusCode::CREATED, body).at(format!("{base}/acme/acct/{id}")))
    }

    /// Account key rollover (RFC 8555 §7.3.5): the outer JWS by the account's
    /// key, the inner by the new key over `{account, oldKey}`.
    pub(super) async fn key_change(
        &self,
        base: &str,
        account: &str,
        post: &Post,
        old: &Jwk,
    ) -> Result<Reply, Problem> {
        let reply = self.key_change_now(base, account, post, old)?;
        self.flush().await?;
        Ok(reply)
    }

    fn key_change_now(
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
                ProblemType::Malformed,
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
        self.save_account(&st, account, Some(&old_thumb))?;
        Ok(Reply::json(StatusCode::OK, body))
    }

    pub(super) async fn account(
        &self,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        if id != account {
            return Err(Problem::unauthorized("not this account's resource"));
        }
        let p = Self::payload(post)?;
        let changed = p.is_some();
        let reply = self.account_now(base, id, p)?;
        if changed {
            self.flush().await?;
        }
        Ok(reply)
    }

    fn account_now(&self, base: &str, id: &str, p: Option<Value>) -> Result<Reply, Problem> {
        let mut st = self.state();
        let a = st.accounts.get_mut(id).ok_or_else(Problem::not_found)?;
        if let Some(p) = p {
            if p.get("contact").is_some() {
                a.contact = parse_contact(&p)?;
            }
            match p.get("status").and_then(Value::as_str) {
                None => {}
                Some("deactivated") => a.status = AccountStatus::Deactivated,
                Some(s) => {
                    return Err(Problem::malformed(format!(
                        "an account's status can only become `deactivated`, not `{}`",
                        crate::names::printable(s)
                    )))
                }
            }
        }
        let body = Self::account_json(base, id, a);
        self.save_account(&st, id, None)?;
        Ok(Reply::json(StatusCode::OK, body))
    }

    pub(super) async fn new_order(
        &self,
        base: &str,
        account: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
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
                // A wildcard (`*.NAME`) goes to policy like any name (the profile's
                // `allow_wildcards`); its authorization offers dns-01 only.
                Some("dns") => Identifier::Dns(val.to_ascii_lowercase()),
                Some("ip") => Identifier::Ip(val.parse().map_err(|_| {
                    Problem::malformed(format!(
                        "`{}` is not an IP address",
                        crate::names::printable(val)
                    ))
                })?),
                _ => {
                    return Err(Problem::new(
                        StatusCode::BAD_REQUEST,
                        ProblemType::UnsupportedIdentifier,
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
            .check(&self.profile_of(account), content)
            .await
            // Refusals name the order's identifiers, not the CLI's flags.
            .map_err(|e| {
                Problem::engine(
                    ProblemType::RejectedIdentifier,
                    "the order",
                    &e.with_origin(Origin::Acme),
                )
            })?;

        let now = OffsetDateTime::now_utc();
        let expires = now + ORDER_LIFETIME;
        let order_id = random_id();
        let mut st = self.state();
        for gone in st.prune_orders(now) {
            self.acme
                .remove_order(&gone)
                .map_err(|e| Problem::internal(&e))?;
        }
        self.room_for_order(&st, account, ids.len(), now)?;
        let mut authzs = Vec::new();
        for i in &ids {
            let authz_id = random_id();
            let token = random_id() + &random_id();
            // tls-alpn-01 and dns-01 for DNS names only (an IP would need a
            // reverse-DNS name); a wildcard is proved by dns-01 alone (RFC 8555 §7.1.3).
            let types: &[ChallengeType] = match i {
                Identifier::Dns(d) if d.starts_with("*.") => &[ChallengeType::Dns01],
                Identifier::Dns(_) => &[
                    ChallengeType::Http01,
                    ChallengeType::TlsAlpn01,
                    ChallengeType::Dns01,
                ],
                Identifier::Ip(_) => &[ChallengeType::Http01],
            };
            let challenges = types
                .iter()
                .map(|typ| Challenge {
                    typ: *typ,
                    id: random_id(),
                    token: token.clone(),
                    status: ChallengeStatus::Pending,
                    validated: None,
                    error: None,
                })
                .collect();
            let authz = Authz {
                account: account.to_string(),
                order: order_id.clone(),
                identifier: i.clone(),
                status: AuthzStatus::Pending,
                expires,
                challenges,
            };
            self.acme
                .put_authz(&authz.record(&authz_id))
                .map_err(|e| Problem::internal(&e))?;
            authzs.push((authz_id, authz));
        }
        let order = Order {
            account: account.to_string(),
            status: OrderStatus::Pending,
            expires,
            identifiers: ids,
            authzs: authzs.iter().map(|(id, _)| id.clone()).collect(),
            certificate: None,
            cert_sha256: None,
            error: None,
            done: false,
        };
        let body = order_json(base, &order_id, &order);
        self.acme
            .put_order(&order.record(&order_id))
            .map_err(|e| Problem::internal(&e))?;
        st.add_order(order_id.clone(), order, authzs);
        Ok(Reply::json(StatusCode::CREATED, body).at(format!("{base}/acme/order/{order_id}")))
    }

    /// Room for a new order of `account` with `identifiers` authorizations:
    /// the account's shares, then the server's bounds. Refused with
    /// `rateLimited` and a Retry-After, never by pushing out another order.
    fn room_for_order(
        &self,
        st: &State,
        account: &str,
        identifiers: usize,
        now: OffsetDateTime,
    ) -> Result<(), Problem> {
        let l = &self.limits;
        let (orders, authzs) = st
            .usage
            .get(account)
            .map_or((0, 0), |u| (u.orders, u.authzs));
        // The account's own orders free room as they expire; a minute is a
        // fair time to look again (finding its oldest would cost a scan).
        let wait = || 60;
        if orders >= l.orders_per_account {
            return Err(Problem::rate_limited(
                format!(
                    "this account holds {orders} live orders, its limit; orders expire {} hours after they are made",
                    ORDER_LIFETIME.whole_hours()
                ),
                wait(),
            ));
        }
        if authzs + identifiers > l.authzs_per_account {
            return Err(Problem::rate_limited(
                format!(
                    "this account holds {authzs} live authorizations and may hold {}; this order would add {identifiers}",
                    l.authzs_per_account
                ),
                wait(),
            ));
        }
        if st.unfinished_orders >= l.orders || st.unfinished_authzs + identifiers > l.authzs {
            return Err(Problem::rate_limited(
                "the server holds as many orders as it keeps; try again later",
                st.next_expiry_secs(now),
            ));
        }
        Ok(())
    }

    pub(super) fn order_get(&self, base: &str, account: &str, id: &str) -> Result<Reply, Problem> {
        let st = self.state();
        let o = st.orders.get(id).ok_or_else(Problem::not_found)?;
        if o.account != account {
            return Err(Problem::unauthorized("not this account's order"));
        }
        Ok(Reply::json(StatusCode::OK, order_json(base, id, o)))
    }

    pub(super) fn authz_get(&self, base: &str, account: &str, id: &str) -> Result<Reply, Problem> {
        let st = self.state();
        let a = st.authzs.get(id).ok_or_else(Problem::not_found)?;
        if a.account != account {
            return Err(Problem::unauthorized("not this account's authorization"));
        }
        Ok(Reply::json(StatusCode::OK, authz_json(base, a)))
    }

    /// A challenge (POST-as-GET), or the client's answer to it (a payload): the
    /// validation starts, and the reply waits up to [`VALIDATION_WAIT`] for its
    /// outcome, so that a client's first poll usually finds the authorization
    /// decided (a slower validation is answered `processing`, and goes on).
    pub(super) async fn challenge(
        self: &Arc<App>,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let validation = self.start_challenge(account, id, post)?;
        if let Some(task) = validation {
            let _ = tokio::time::timeout(VALIDATION_WAIT, task).await;
        }
        let st = self.state();
        let authz_id = st.challenges.get(id).ok_or_else(Problem::not_found)?;
        let c = st
            .authzs
            .get(authz_id)
            .and_then(|a| a.challenges.iter().find(|c| c.id == id))
            .ok_or_else(Problem::not_found)?;
        let body = challenge_json(base, c);
        Ok(Reply::json(StatusCode::OK, body).link(&format!("{base}/acme/authz/{authz_id}"), "up"))
    }

    /// Check that `id` is `account`'s challenge and, when the client answers
    /// it, start its validation (one per authorization: the first answered).
    fn start_challenge(
        self: &Arc<App>,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Option<tokio::task::JoinHandle<()>>, Problem> {
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
        let busy = a
            .challenges
            .iter()
            .any(|c| c.status != ChallengeStatus::Pending);
        if respond && !busy && a.status == AuthzStatus::Pending {
            let c = &mut a.challenges[idx];
            c.status = ChallengeStatus::Processing;
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
                    ChallengeType::Dns01 => 53,
                },
            };
            let app = self.clone();
            let mine = st.validation_slot(account, self.limits.validations_per_account);
            return Ok(Some(tokio::spawn(async move {
                let authz = job.authz.clone();
                // A few at a time per account, then a place among all: one
                // account's hundred answers wait their turn and hold no sockets
                // meanwhile, and cannot take every place from the others.
                let (Ok(_mine), Ok(_place)) = (
                    mine.acquire_owned().await,
                    app.validations.clone().acquire_owned().await,
                ) else {
                    return;
                };
                validate(app.clone(), job).await;
                // Write the outcome (challenge, authorization, order) through.
                let st = app.state();
                let order = st.authzs.get(&authz).map(|a| a.order.clone());
                let saved = app.save_authz(&st, &authz).and_then(|()| match &order {
                    Some(o) => app.save_order(&st, o),
                    None => Ok(()),
                });
                if let Err(p) = saved {
                    crate::serverlog::line(format!("error: recording a validation: {}", p.detail));
                }
            })));
        }
        // Nothing to write here: a challenge being validated is `processing` only
        // in memory (after a crash it reads as `pending` again, as stored), and the
        // validation writes its outcome through when it ends.
        Ok(None)
    }

    pub(super) async fn finalize(
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
                    ProblemType::BadCsr,
                    "`csr` must be a base64url DER CSR",
                )
            })?;
        let expected: HashSet<Identifier> = {
            let mut st = self.state();
            let o = st.orders.get_mut(id).ok_or_else(Problem::not_found)?;
            if o.account != account {
                return Err(Problem::unauthorized("not this account's order"));
            }
            if o.status != OrderStatus::Ready {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    ProblemType::OrderNotReady,
                    format!("the order is {}, not ready", o.status),
                ));
            }
            o.identifiers.iter().cloned().collect()
        };
        // What the CSR asks for must be exactly what the order proved.
        let checked = crate::issue::read_checked_csr(&csr_der)
            .map_err(|e| Problem::engine(ProblemType::BadCsr, "the CSR", &e))?;
        let intake = checked.intake();
        if same_key(&post_key(self, account), &intake.spki_der) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                ProblemType::BadCsr,
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
                    ProblemType::BadCsr,
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
                ProblemType::BadCsr,
                format!(
                    "the CSR must ask for exactly the order's identifiers ({})",
                    want.join(", ")
                ),
            ));
        }
        {
            let mut st = self.state();
            match st.orders.get_mut(id) {
                Some(o) if o.status == OrderStatus::Ready => o.status = OrderStatus::Processing,
                _ => {
                    return Err(Problem::new(
                        StatusCode::FORBIDDEN,
                        ProblemType::OrderNotReady,
                        "the order is being finalized",
                    ))
                }
            }
        }
        // Issue 22, finding 6: a subject attribute nobody validated (an
        // anonymous client's `O=system:masters`) is not signed by the CA.
        let issued = self
            .engine
            .issue(
                &self.profile_of(account),
                checked.names_only(),
                Some(format!("acme/acct/{account}/order/{id}")),
            )
            .await;
        let mut st = self.state();
        match issued {
            Ok(i) => {
                // One certificate per order: the download is named by the order,
                // so pruning the order always finds it (even after a crash lost
                // the order's last write).
                let cert_id = id.to_string();
                self.acme
                    .put_cert(&crate::store::acme::AcmeCert {
                        id: cert_id.clone(),
                        account: account.to_string(),
                        order: id.to_string(),
                        chain_pem: i.chain_pem,
                    })
                    .map_err(|e| Problem::internal(&e))?;
                if st.mark_proven(account) {
                    self.save_account(&st, account, None)?;
                }
                st.finish_order(id, Some(OffsetDateTime::now_utc()));
                let o = st.orders.get_mut(id).ok_or_else(Problem::not_found)?;
                o.status = OrderStatus::Valid;
                o.certificate = Some(cert_id);
                o.cert_sha256 = Some(i.record.sha256.clone());
                let body = order_json(base, id, o);
                self.save_order(&st, id)?;
                Ok(Reply::json(StatusCode::OK, body).at(format!("{base}/acme/order/{id}")))
            }
            Err(e) => {
                // The client may finalize again with a better CSR.
                if let Some(o) = st.orders.get_mut(id) {
                    o.status = OrderStatus::Ready;
                }
                Err(Problem::engine(ProblemType::BadCsr, "the CSR", &e))
            }
        }
    }

    /// revokeCert (RFC 8555 §7.6): signed by the account that ordered the
    /// certificate, or by the certificate's own key.
    pub(super) async fn revoke(&self, post: &Post, key: &Jwk) -> Result<Reply, Problem> {
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
                    ProblemType::BadRevocationReason,
                    format!("reason code {code} is not one this CA uses"),
                )
            })?,
            Some(None) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemType::BadRevocationReason,
                    "`reason` must be an RFC 5280 reason code",
                ))
            }
        };
        let sha256 = crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
        let allowed = match &post.account {
            // The engine records ACME certificates under `acme/acct/A/order/O`.
            Some(acct) => self
                .engine
                .lookup(sha256.clone())
                .await
                .map_err(|e| Problem::internal(&e))?
                .filter(|r| r.sha256 == sha256)
                .and_then(|r| r.request_id)
                .is_some_and(|r| r.starts_with(&format!("acme/acct/{acct}/order/"))),
            None => same_key(&Some(key.clone()), cert.public_key().raw),
        };
        if !allowed {
            return Err(Problem::unauthorized(
                "revokeCert must be signed by the account that ordered the certificate or by its key",
            ));
        }
        match self.engine.revoke(sha256, reason).await {
            Ok(_) => Ok(Reply::body(StatusCode::OK, "application/json", Vec::new())),
            Err(Error::Refused(r)) if r.has(crate::rules::Rule::AlreadyRevoked) => {
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemType::AlreadyRevoked,
                    r.messages().join("; "),
                ))
            }
            Err(Error::Refused(r)) => Err(Problem::unauthorized(r.messages().join("; "))),
            Err(e) => Err(Problem::internal(&e)),
        }
    }

    pub(super) fn certificate(&self, account: &str, id: &str) -> Result<Reply, Problem> {
        let c = self
            .acme
            .cert(id)
            .map_err(|e| Problem::internal(&e))?
            .ok_or_else(Problem::not_found)?;
        if c.account != account {
            return Err(Problem::unauthorized("not this account's certificate"));
        }
        Ok(Reply::body(
            StatusCode::OK,
            "application/pem-certificate-chain",
            c.chain_pem.into_bytes(),
        ))
    }
}

/// An RFC 5280 reason code the CA records.
pub(super) fn reason_of(code: u64) -> Option<crate::crl::Reason> {
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
pub(super) fn post_key(app: &App, account: &str) -> Option<Jwk> {
    app.state().accounts.get(account).map(|a| a.key.clone())
}

/// Whether a SubjectPublicKeyInfo holds the same public key as a JWK: the
/// project's one key comparison ([`crate::key::PublicKeyValue`]), never bytes
/// of one found inside the other.
pub(super) fn same_key(jwk: &Option<Jwk>, spki_der: &[u8]) -> bool {
    let (Some(a), Some(b)) = (
        jwk.as_ref().and_then(Jwk::value),
        crate::key::PublicKeyValue::from_spki_der(spki_der),
    ) else {
        return false;
    };
    a == b
}

pub(super) fn parse_contact(p: &Value) -> Result<Vec<String>, Problem> {
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
                            ProblemType::UnsupportedContact,
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

pub(super) fn order_json(base: &str, id: &str, o: &Order) -> Value {
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

pub(super) fn challenge_json(base: &str, c: &Challenge) -> Value {
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

pub(super) fn authz_json(base: &str, a: &Authz) -> Value {
    let mut v = json!({
        "status": a.status,
        "expires": rfc3339(a.expires),
        "identifier": a.identifier.json(),
        "challenges": a.challenges.iter().map(|c| challenge_json(base, c)).collect::<Vec<_>>(),
    });
    // RFC 8555 §7.1.4: a wildcard's authorization names the base domain.
    if let Identifier::Dns(d) = &a.identifier {
        if let Some(base_name) = d.strip_prefix("*.") {
            v["identifier"] = json!({"type": "dns", "value": base_name});
            v["wildcard"] = json!(true);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 22, finding 1: the check that a revocation is signed by the
    /// certificate's own key took an RSA JWK whose modulus was any window of
    /// the certificate's key bytes. Keys are now compared as values.
    #[test]
    fn a_window_of_an_rsa_key_is_not_that_key() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| crate::acme::jws::tests::openssl_in(dir.path(), args);
        run(&["genrsa", "-out", "k.pem", "3072"]);
        let spki = run(&["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"]);
        let value = crate::key::PublicKeyValue::from_spki_der(&spki).unwrap();
        let crate::key::PublicKeyValue::Rsa { modulus, exponent } = value.clone() else {
            panic!("{value:?}")
        };
        assert_eq!(modulus.len(), 384);
        let jwk = |n: &[u8], e: &[u8]| Jwk::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        };
        // The whole key, also with a leading zero byte, is the key.
        assert!(same_key(&Some(jwk(&modulus, &exponent)), &spki));
        let padded = [&[0u8][..], &modulus].concat();
        assert!(same_key(&Some(jwk(&padded, &exponent)), &spki));
        // Any window of it (and of the SPKI's bytes around it) is not.
        for (start, len) in [(0, 256), (1, 300), (100, 284), (128, 256), (0, 383)] {
            let w = &modulus[start..start + len];
            assert!(!same_key(&Some(jwk(w, &exponent)), &spki), "{start}+{len}");
        }
        for start in 0..spki.len() - 256 {
            let w = &spki[start..start + 256];
            assert!(!same_key(&Some(jwk(w, &exponent)), &spki), "spki {start}");
        }
        // Another exponent over the same modulus is another key.
        assert!(!same_key(&Some(jwk(&modulus, &[3])), &spki));
        assert!(!same_key(&None, &spki));
        assert_eq!(jwk(&modulus, &exponent).value(), Some(value));
    }
}
