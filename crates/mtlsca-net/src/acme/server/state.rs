//! ACME state: accounts, orders, authorizations, challenges.

use super::*;
use crate::acme::server::status::{AccountStatus, AuthzStatus, ChallengeStatus, OrderStatus};

// ---------------------------------------------------------------------------
// ACME state: a working copy in memory, written through to the store
// ---------------------------------------------------------------------------

pub(super) use crate::store::acme::AcmeIdentifier as Identifier;
use crate::store::acme::{AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeOrder, AcmeStore};

pub(super) struct Account {
    pub(super) key: Jwk,
    pub(super) thumbprint: String,
    pub(super) status: AccountStatus,
    pub(super) contact: Vec<String>,
    /// Its EAB key's profile; `None`: the server's `--acme-profile`.
    pub(super) profile: Option<String>,
    pub(super) eab_kid: Option<String>,
    pub(super) created: OffsetDateTime,
    /// The client network that registered it, for an account without EAB
    /// (counted against that network's share of unproven accounts).
    pub(super) network: Option<IpAddr>,
    /// It obtained a certificate (so it proved control of a name once).
    pub(super) proven: bool,
    /// Its last request (written through when it moves by an hour or more).
    pub(super) last_seen: OffsetDateTime,
}

/// How long an account without EAB lives after its last request: one that
/// never obtained a certificate, and one that did.
pub(super) const UNPROVEN_ACCOUNT_IDLE: time::Duration = time::Duration::hours(72);
pub(super) const PROVEN_ACCOUNT_IDLE: time::Duration = time::Duration::days(400);

impl Account {
    /// When it is forgotten unless it makes a request before; `None`: never
    /// (accounts bound with an EAB key are the operator's to revoke).
    pub(super) fn expires(&self) -> Option<OffsetDateTime> {
        if self.eab_kid.is_some() {
            return None;
        }
        let idle = if self.proven {
            PROVEN_ACCOUNT_IDLE
        } else {
            UNPROVEN_ACCOUNT_IDLE
        };
        Some(self.last_seen.max(self.created) + idle)
    }

    /// Counted against its network's share of unproven accounts.
    fn unproven_network(&self) -> Option<IpAddr> {
        self.network
            .filter(|_| !self.proven && self.eab_kid.is_none())
    }
}

pub(super) struct Order {
    pub(super) account: String,
    pub(super) status: OrderStatus,
    pub(super) expires: OffsetDateTime,
    pub(super) identifiers: Vec<Identifier>,
    pub(super) authzs: Vec<String>,
    pub(super) certificate: Option<String>,
    /// The issued certificate's SHA-256 (hex).
    pub(super) cert_sha256: Option<String>,
    pub(super) error: Option<Value>,
    /// Counted as finished ([`State::finish_order`]); in memory only.
    pub(super) done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChallengeType {
    Http01,
    TlsAlpn01,
    Dns01,
}

impl ChallengeType {
    const ALL: &'static [ChallengeType] = &[
        ChallengeType::Http01,
        ChallengeType::TlsAlpn01,
        ChallengeType::Dns01,
    ];

    pub(super) fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
            ChallengeType::Dns01 => "dns-01",
        }
    }

    /// The type a stored challenge names (`None`: one this build does not know).
    fn parse(s: &str) -> Option<ChallengeType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// Fails to compile when a variant is added: add it to `ALL` as well, or
    /// stored challenges of that type are dropped at load.
    #[allow(dead_code)]
    fn every_variant_is_in_all(self) {
        match self {
            ChallengeType::Http01 | ChallengeType::TlsAlpn01 | ChallengeType::Dns01 => {}
        }
    }
}

pub(super) struct Challenge {
    pub(super) typ: ChallengeType,
    pub(super) id: String,
    pub(super) token: String,
    pub(super) status: ChallengeStatus,
    pub(super) validated: Option<OffsetDateTime>,
    pub(super) error: Option<Value>,
}

pub(super) struct Authz {
    pub(super) account: String,
    pub(super) order: String,
    pub(super) identifier: Identifier,
    pub(super) status: AuthzStatus,
    pub(super) expires: OffsetDateTime,
    pub(super) challenges: Vec<Challenge>,
}

/// The JWK (RFC 7517) object of an account key, as the store keeps it.
pub(super) fn jwk_json(k: &Jwk) -> Value {
    let e = |b: &[u8]| B64.encode(b);
    match k {
        Jwk::Ec { crv, x, y } => json!({"kty": "EC", "crv": crv, "x": e(x), "y": e(y)}),
        Jwk::Rsa { n, e: ex } => json!({"kty": "RSA", "n": e(n), "e": e(ex)}),
        Jwk::Ed25519 { x } => json!({"kty": "OKP", "crv": "Ed25519", "x": e(x)}),
    }
}

impl Account {
    pub(super) fn record(&self, id: &str) -> AcmeAccount {
        AcmeAccount {
            id: id.to_string(),
            key: jwk_json(&self.key),
            thumbprint: self.thumbprint.clone(),
            status: self.status.to_string(),
            contact: self.contact.clone(),
            profile: self.profile.clone(),
            eab_kid: self.eab_kid.clone(),
            created: self.created,
            network: self.network,
            proven: Some(self.proven),
            last_seen: Some(self.last_seen),
        }
    }

    /// The working copy of a stored account; `has_certificates` answers for
    /// accounts stored before `proven` was (it looks for their certificates).
    fn from_record(
        r: AcmeAccount,
        has_certificates: impl FnOnce(&str) -> bool,
    ) -> Option<(String, Account)> {
        let key = Jwk::from_json(&r.key).ok()?;
        let proven = match r.proven {
            Some(p) => p,
            None => has_certificates(&r.id),
        };
        Some((
            r.id,
            Account {
                key,
                thumbprint: r.thumbprint,
                status: AccountStatus::from_stored(&r.status),
                contact: r.contact,
                profile: r.profile,
                eab_kid: r.eab_kid,
                created: r.created,
                network: r.network,
                proven,
                last_seen: r.last_seen.unwrap_or(r.created),
            },
        ))
    }
}

impl Order {
    pub(super) fn record(&self, id: &str) -> AcmeOrder {
        AcmeOrder {
            id: id.to_string(),
            account: self.account.clone(),
            status: self.status.to_string(),
            expires: self.expires,
            identifiers: self.identifiers.clone(),
            authzs: self.authzs.clone(),
            certificate: self.certificate.clone(),
            cert_sha256: self.cert_sha256.clone(),
            error: self.error.clone(),
        }
    }

    fn from_record(r: AcmeOrder) -> (String, Order) {
        // A finalize cut short by a stop: the client may finalize again (the
        // engine answers a repeated request id for the same key with the
        // certificate it recorded).
        let st = match OrderStatus::from_stored(&r.status) {
            OrderStatus::Processing => OrderStatus::Ready,
            s => s,
        };
        (
            r.id,
            Order {
                account: r.account,
                status: st,
                expires: r.expires,
                identifiers: r.identifiers,
                authzs: r.authzs,
                certificate: r.certificate,
                cert_sha256: r.cert_sha256,
                error: r.error,
                done: false,
            },
        )
    }
}

impl Authz {
    pub(super) fn record(&self, id: &str) -> AcmeAuthz {
        AcmeAuthz {
            id: id.to_string(),
            account: self.account.clone(),
            order: self.order.clone(),
            identifier: self.identifier.clone(),
            status: self.status.to_string(),
            expires: self.expires,
            challenges: self
                .challenges
                .iter()
                .map(|c| AcmeChallenge {
                    kind: c.typ.as_str().to_string(),
                    id: c.id.clone(),
                    token: c.token.clone(),
                    status: c.status.to_string(),
                    validated: c.validated,
                    error: c.error.clone(),
                })
                .collect(),
        }
    }

    fn from_record(r: AcmeAuthz) -> (String, Authz) {
        let challenges = r
            .challenges
            .into_iter()
            .filter_map(|c| {
                Some(Challenge {
                    typ: ChallengeType::parse(&c.kind)?,
                    id: c.id,
                    token: c.token,
                    // A validation cut short by a stop is tried again on the next answer.
                    status: match ChallengeStatus::from_stored(&c.status) {
                        ChallengeStatus::Processing => ChallengeStatus::Pending,
                        s => s,
                    },
                    validated: c.validated,
                    error: c.error,
                })
            })
            .collect();
        (
            r.id,
            Authz {
                account: r.account,
                order: r.order,
                identifier: r.identifier,
                status: AuthzStatus::from_stored(&r.status),
                expires: r.expires,
                challenges,
            },
        )
    }
}

/// What one account holds now: unfinished orders and their authorizations
/// (counted against its shares).
#[derive(Default)]
pub(super) struct Usage {
    pub(super) orders: usize,
    pub(super) authzs: usize,
}

/// How long a finished order (valid or invalid) is kept: its client reads the
/// outcome and downloads the certificate right after. Sooner when finished
/// orders hold as many authorizations as the server keeps.
pub(super) const FINISHED_ORDER_KEEP: time::Duration = time::Duration::hours(1);

pub(super) struct State {
    pub(super) nonces: NonceBook,
    pub(super) accounts: HashMap<String, Account>,
    pub(super) by_thumbprint: HashMap<String, String>,
    pub(super) orders: HashMap<String, Order>,
    /// Unfinished orders' ids, oldest first (every order lives as long):
    /// expired ones are pruned from the front. An id whose order finished is
    /// passed over.
    pub(super) order_queue: std::collections::VecDeque<String>,
    /// Finished orders' ids, in the order they finished: pruned from the front
    /// when expired, or early when they hold more than the server keeps.
    pub(super) finished_queue: std::collections::VecDeque<String>,
    /// Unfinished orders and their authorizations, in all (the bounds that
    /// refuse new orders).
    pub(super) unfinished_orders: usize,
    pub(super) unfinished_authzs: usize,
    /// Authorizations of finished orders (kept up to the same bound, oldest
    /// forgotten first).
    pub(super) finished_authzs: usize,
    /// Authorizations kept for finished orders at most.
    pub(super) finished_authz_room: usize,
    pub(super) authzs: HashMap<String, Authz>,
    pub(super) challenges: HashMap<String, String>,
    /// Per-account token buckets: tokens left, last refill.
    pub(super) buckets: HashMap<String, (f64, Instant)>,
    /// Per-network token buckets for new accounts without EAB.
    pub(super) account_buckets: ClientBuckets,
    /// Per-network token buckets for requests of any kind.
    pub(super) request_buckets: ClientBuckets,
    /// Live orders and authorizations per account.
    pub(super) usage: HashMap<String, Usage>,
    /// Accounts without EAB, and how many of them have no certificate yet per
    /// registering network.
    pub(super) anonymous_accounts: usize,
    pub(super) unproven_by_network: HashMap<IpAddr, usize>,
    /// Validations each account may run at once.
    pub(super) validation_slots: HashMap<String, Arc<tokio::sync::Semaphore>>,
}

/// How long a nonce is accepted.
pub(super) const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

/// What [`State::prune`] forgot: to be removed from the store too.
#[derive(Default)]
pub(super) struct Pruned {
    pub(super) orders: Vec<AcmeOrder>,
    /// Account ids with their key thumbprints.
    pub(super) accounts: Vec<(String, String)>,
}

impl State {
    pub(super) fn new(limits: &AcmeLimits) -> Result<State> {
        Ok(State {
            nonces: NonceBook::new(limits.nonces, NONCE_LIFETIME.as_secs())
                .map_err(|_| Error::State("no random numbers for ACME nonces".into()))?,
            accounts: HashMap::new(),
            by_thumbprint: HashMap::new(),
            orders: HashMap::new(),
            order_queue: std::collections::VecDeque::new(),
            finished_queue: std::collections::VecDeque::new(),
            unfinished_orders: 0,
            unfinished_authzs: 0,
            finished_authzs: 0,
            finished_authz_room: limits.authzs,
            authzs: HashMap::new(),
            challenges: HashMap::new(),
            buckets: HashMap::new(),
            account_buckets: ClientBuckets::default(),
            request_buckets: ClientBuckets::default(),
            usage: HashMap::new(),
            anonymous_accounts: 0,
            unproven_by_network: HashMap::new(),
            validation_slots: HashMap::new(),
        })
    }

    /// The working copy of what the store holds. Expired orders (with their
    /// authorizations and downloads) and expired accounts are pruned from the
    /// store on the way, the nonces a clean stop saved are taken back, and the
    /// secrets of EAB keys already bound or revoked are forgotten.
    pub(super) fn load(
        store: &AcmeStore,
        limits: &AcmeLimits,
        now: OffsetDateTime,
    ) -> Result<State> {
        let mut st = State::new(limits)?;
        for r in store.accounts()? {
            let back = Account::from_record(r, |id| store.has_certificates_of(id).unwrap_or(true));
            if let Some((id, a)) = back {
                st.add_account(id, a);
            }
        }
        let mut stored_authzs: HashMap<String, AcmeAuthz> = store
            .authzs()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut orders = store.orders()?;
        orders.sort_by_key(|o| o.expires);
        for r in orders {
            if r.expires <= now {
                store.remove_order(&r)?;
                continue;
            }
            let (id, o) = Order::from_record(r);
            let authzs = o
                .authzs
                .iter()
                .filter_map(|a| stored_authzs.remove(a))
                .map(Authz::from_record)
                .collect();
            let done = o.status.is_finished();
            st.add_order(id.clone(), o, authzs);
            if done {
                st.finish_order(&id, None);
            }
        }
        // Authorizations whose order is gone.
        for id in stored_authzs.keys() {
            store.remove_authz(id)?;
        }
        let pruned = st.prune(now);
        for o in &pruned.orders {
            store.remove_order(o)?;
        }
        for (id, thumbprint) in pruned.accounts {
            store.remove_account(&id, &thumbprint)?;
        }
        // A store from before spent EAB keys were emptied: forget their secrets.
        store.forget_spent_eab_secrets()?;
        if let Some(saved) = store.take_nonces()? {
            let restored = serde_json::from_slice(&saved)
                .ok()
                .and_then(|s| NonceBook::restore(s, limits.nonces, NONCE_LIFETIME.as_secs()));
            if let Some(book) = restored {
                st.nonces = book;
            }
        }
        Ok(st)
    }

    /// Add an account to the working copy, with its counts.
    pub(super) fn add_account(&mut self, id: String, a: Account) {
        if a.eab_kid.is_none() {
            self.anonymous_accounts += 1;
        }
        if let Some(net) = a.unproven_network() {
            *self.unproven_by_network.entry(net).or_default() += 1;
        }
        self.by_thumbprint.insert(a.thumbprint.clone(), id.clone());
        if let Some(old) = self.accounts.insert(id.clone(), a) {
            self.uncount_account(&old);
        }
    }

    fn uncount_account(&mut self, a: &Account) {
        if a.eab_kid.is_none() {
            self.anonymous_accounts = self.anonymous_accounts.saturating_sub(1);
        }
        if let Some(net) = a.unproven_network() {
            if let Some(n) = self.unproven_by_network.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.unproven_by_network.remove(&net);
                }
            }
        }
    }

    /// Forget an account with what hangs on it in memory (its orders expire on
    /// their own); returns its key's thumbprint.
    pub(super) fn remove_account(&mut self, id: &str) -> Option<String> {
        let a = self.accounts.remove(id)?;
        self.uncount_account(&a);
        if self
            .by_thumbprint
            .get(&a.thumbprint)
            .is_some_and(|x| x == id)
        {
            self.by_thumbprint.remove(&a.thumbprint);
        }
        self.buckets.remove(id);
        self.validation_slots.remove(id);
        if self
            .usage
            .get(id)
            .is_some_and(|u| u.orders == 0 && u.authzs == 0)
        {
            self.usage.remove(id);
        }
        Some(a.thumbprint)
    }

    /// The account obtained a certificate: it no longer counts against its
    /// network's share of unproven accounts. Whether it changed.
    pub(super) fn mark_proven(&mut self, id: &str) -> bool {
        let Some(a) = self.accounts.get(id) else {
            return false;
        };
        if a.proven {
            return false;
        }
        let net = a.unproven_network();
        if let Some(a) = self.accounts.get_mut(id) {
            a.proven = true;
        }
        if let Some(net) = net {
            if let Some(n) = self.unproven_by_network.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.unproven_by_network.remove(&net);
                }
            }
        }
        true
    }

    /// Add an unfinished order with its authorizations to the working copy.
    pub(super) fn add_order(&mut self, id: String, o: Order, authzs: Vec<(String, Authz)>) {
        let u = self.usage.entry(o.account.clone()).or_default();
        u.orders += 1;
        u.authzs += authzs.len();
        self.unfinished_orders += 1;
        self.unfinished_authzs += authzs.len();
        for (authz_id, a) in authzs {
            for c in &a.challenges {
                self.challenges.insert(c.id.clone(), authz_id.clone());
            }
            self.authzs.insert(authz_id, a);
        }
        self.order_queue.push_back(id.clone());
        self.orders.insert(id, o);
    }

    /// The authorizations of an order that the working copy holds.
    fn held_authzs(&self, o: &Order) -> usize {
        o.authzs
            .iter()
            .filter(|a| self.authzs.contains_key(*a))
            .count()
    }

    /// An order became valid or invalid at `now` (`None`: it was stored so):
    /// it no longer counts against its account's shares, and it is kept
    /// [`FINISHED_ORDER_KEEP`] longer at most. Whether it was unfinished.
    pub(super) fn finish_order(&mut self, id: &str, now: Option<OffsetDateTime>) -> bool {
        let Some(o) = self.orders.get(id) else {
            return false;
        };
        if o.done {
            return false;
        }
        let (account, n) = (o.account.clone(), self.held_authzs(o));
        if let Some(o) = self.orders.get_mut(id) {
            o.done = true;
            if let Some(now) = now {
                o.expires = o.expires.min(now + FINISHED_ORDER_KEEP);
            }
        }
        self.uncount_unfinished(&account, n);
        self.finished_authzs += n;
        self.finished_queue.push_back(id.to_string());
        true
    }

    fn uncount_unfinished(&mut self, account: &str, authzs: usize) {
        self.unfinished_orders = self.unfinished_orders.saturating_sub(1);
        self.unfinished_authzs = self.unfinished_authzs.saturating_sub(authzs);
        if let Some(u) = self.usage.get_mut(account) {
            u.orders = u.orders.saturating_sub(1);
            u.authzs = u.authzs.saturating_sub(authzs);
            if u.orders == 0 && u.authzs == 0 && !self.accounts.contains_key(account) {
                self.usage.remove(account);
            }
        }
    }

    /// Forget one order with its authorizations and challenges; its record.
    fn remove_order(&mut self, id: &str) -> Option<AcmeOrder> {
        let o = self.orders.remove(id)?;
        let mut authzs = 0;
        for a in &o.authzs {
            if let Some(a) = self.authzs.remove(a) {
                authzs += 1;
                for c in &a.challenges {
                    self.challenges.remove(&c.id);
                }
            }
        }
        if o.done {
            self.finished_authzs = self.finished_authzs.saturating_sub(authzs);
        } else {
            self.uncount_unfinished(&o.account, authzs);
        }
        Some(o.record(id))
    }

    /// Forget the orders that expired by `now`, and the oldest finished ones
    /// while finished orders hold more authorizations than the server keeps
    /// (with their authorizations, challenges and certificate downloads; the
    /// certificates stay in the store). An unfinished order is forgotten only
    /// when it expires: a full table refuses new orders, it never pushes out
    /// another client's order in progress.
    pub(super) fn prune_orders(&mut self, now: OffsetDateTime) -> Vec<AcmeOrder> {
        let mut gone = Vec::new();
        while let Some(id) = self.order_queue.front() {
            match self.orders.get(id) {
                // Gone, or finished (the finished queue has it): pass over.
                None => {}
                Some(o) if o.done => {}
                Some(o) if o.expires > now => break,
                Some(_) => {
                    let id = id.clone();
                    gone.extend(self.remove_order(&id));
                }
            }
            self.order_queue.pop_front();
        }
        while let Some(id) = self.finished_queue.front() {
            let expired = self.orders.get(id).is_none_or(|o| o.expires <= now);
            if !expired && self.finished_authzs <= self.finished_authz_room {
                break;
            }
            if let Some(id) = self.finished_queue.pop_front() {
                gone.extend(self.remove_order(&id));
            }
        }
        gone
    }

    /// [`State::prune_orders`], then the accounts that expired by `now`
    /// ([`Account::expires`]) and hold no unfinished order.
    pub(super) fn prune(&mut self, now: OffsetDateTime) -> Pruned {
        let orders = self.prune_orders(now);
        let expired: Vec<String> = self
            .accounts
            .iter()
            .filter(|(id, a)| {
                a.expires().is_some_and(|t| t <= now)
                    && self.usage.get(*id).is_none_or(|u| u.orders == 0)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let accounts = expired
            .into_iter()
            .filter_map(|id| self.remove_account(&id).map(|t| (id, t)))
            .collect();
        Pruned { orders, accounts }
    }

    /// Seconds until the oldest live order expires (a full table's Retry-After).
    pub(super) fn next_expiry_secs(&self, now: OffsetDateTime) -> u32 {
        self.order_queue
            .front()
            .and_then(|id| self.orders.get(id))
            .map(|o| (o.expires - now).whole_seconds().clamp(1, 86_400) as u32)
            .unwrap_or(60)
    }

    /// The semaphore of `account`'s validations.
    pub(super) fn validation_slot(
        &mut self,
        account: &str,
        per_account: usize,
    ) -> Arc<tokio::sync::Semaphore> {
        self.validation_slots
            .entry(account.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(per_account.max(1))))
            .clone()
    }
}

pub(super) fn random_id() -> String {
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

/// Now, in Unix seconds (what nonces carry).
pub(super) fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(account: &str, authz: &str, expires: OffsetDateTime) -> Order {
        Order {
            account: account.into(),
            status: OrderStatus::Valid,
            expires,
            identifiers: vec![Identifier::Dns("a.test".into())],
            authzs: vec![authz.into()],
            certificate: Some(format!("cert-{authz}")),
            cert_sha256: Some(format!("sha-{authz}")),
            error: None,
            done: false,
        }
    }

    fn authz(order: &str, challenge: &str, expires: OffsetDateTime) -> Authz {
        Authz {
            account: "acct".into(),
            order: order.into(),
            identifier: Identifier::Dns("a.test".into()),
            status: AuthzStatus::Valid,
            expires,
            challenges: vec![Challenge {
                typ: ChallengeType::Http01,
                id: challenge.into(),
                token: "t".into(),
                status: ChallengeStatus::Valid,
                validated: None,
                error: None,
            }],
        }
    }

    fn account(now: OffsetDateTime, network: Option<&str>, eab: bool) -> Account {
        // Any 32 bytes do as a key here; random ones keep thumbprints apart.
        let x: Vec<u8> = random_id()
            .bytes()
            .chain(random_id().bytes())
            .take(32)
            .collect();
        let key =
            Jwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(x)})).unwrap();
        Account {
            thumbprint: key.thumbprint(),
            key,
            status: AccountStatus::Valid,
            contact: vec![],
            profile: None,
            eab_kid: eab.then(|| "kid".to_string()),
            created: now,
            network: network.map(|n| n.parse().unwrap()),
            proven: false,
            last_seen: now,
        }
    }

    /// Issue 22, finding 4: a full order table pushed out the oldest orders,
    /// whoever owned them. Only expired orders are forgotten now.
    #[test]
    fn only_expired_orders_are_forgotten_with_what_hangs_on_them() {
        let now = OffsetDateTime::now_utc();
        let mut st = State::new(&AcmeLimits::default()).unwrap();
        for i in 0..6 {
            let (o, a, c) = (format!("o{i}"), format!("a{i}"), format!("c{i}"));
            // o0 has expired; the others have not.
            let expires = if i == 0 {
                now - time::Duration::seconds(1)
            } else {
                now + time::Duration::hours(1)
            };
            st.add_order(
                o.clone(),
                order("acct", &a, expires),
                vec![(a, authz(&o, &c, expires))],
            );
        }
        assert_eq!(st.usage["acct"].orders, 6);
        let gone = st.prune_orders(now);
        assert_eq!(gone.len(), 1, "only the expired order");
        assert_eq!(gone[0].id, "o0");
        assert_eq!(gone[0].certificate.as_deref(), Some("cert-a0"));
        assert_eq!(
            (st.orders.len(), st.authzs.len(), st.challenges.len()),
            (5, 5, 5)
        );
        assert_eq!((st.usage["acct"].orders, st.usage["acct"].authzs), (5, 5));
        let later = now + time::Duration::hours(2);
        assert_eq!(st.prune_orders(later).len(), 5);
        assert!(st.orders.is_empty() && st.authzs.is_empty() && st.challenges.is_empty());
        assert!(st.order_queue.is_empty());
        assert!(!st.usage.contains_key("acct"), "no account, no usage left");
    }

    /// Finished orders stop counting against their account's shares and are
    /// kept an hour at most; while they hold more authorizations than the
    /// server keeps, the oldest finished go first. Unfinished ones never do.
    #[test]
    fn finished_orders_leave_room_and_go_first() {
        let now = OffsetDateTime::now_utc();
        let limits = AcmeLimits {
            authzs: 2,
            ..AcmeLimits::default()
        };
        let mut st = State::new(&limits).unwrap();
        let day = now + time::Duration::hours(24);
        for i in 0..4 {
            let (o, a, c) = (format!("o{i}"), format!("a{i}"), format!("c{i}"));
            st.add_order(
                o.clone(),
                order("acct", &a, day),
                vec![(a, authz(&o, &c, day))],
            );
        }
        assert_eq!((st.unfinished_orders, st.unfinished_authzs), (4, 4));
        for i in 0..3 {
            assert!(st.finish_order(&format!("o{i}"), Some(now)));
        }
        assert!(!st.finish_order("o0", Some(now)), "once");
        assert_eq!(st.orders["o0"].expires, now + FINISHED_ORDER_KEEP);
        assert_eq!((st.unfinished_orders, st.usage["acct"].orders), (1, 1));
        assert_eq!(st.finished_authzs, 3);
        // Three finished authorizations, room for two: the oldest goes now.
        let gone = st.prune_orders(now);
        assert_eq!(
            gone.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            ["o0"]
        );
        // An hour on, the other finished ones have expired; o3 stays.
        let gone = st.prune_orders(now + FINISHED_ORDER_KEEP);
        assert_eq!(gone.len(), 2);
        assert_eq!(st.orders.keys().collect::<Vec<_>>(), ["o3"]);
        assert_eq!((st.finished_authzs, st.unfinished_authzs), (0, 1));
    }

    /// Issue 22, finding 5: accounts were never removed. An account without
    /// EAB expires after its last request (sooner when it never obtained a
    /// certificate); one bound with EAB never does.
    #[test]
    fn idle_accounts_without_eab_expire_and_their_network_share_comes_back() {
        let now = OffsetDateTime::now_utc();
        let mut st = State::new(&AcmeLimits::default()).unwrap();
        st.add_account("anon".into(), account(now, Some("192.0.2.1"), false));
        st.add_account("proven".into(), account(now, Some("192.0.2.1"), false));
        st.add_account("eab".into(), account(now, None, true));
        assert!(st.mark_proven("proven"));
        assert!(!st.mark_proven("proven"));
        let net: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(st.unproven_by_network[&net], 1);
        assert_eq!(st.anonymous_accounts, 2);
        let pruned = st.prune(now + UNPROVEN_ACCOUNT_IDLE - time::Duration::seconds(1));
        assert!(pruned.accounts.is_empty());
        let pruned = st.prune(now + UNPROVEN_ACCOUNT_IDLE);
        assert_eq!(pruned.accounts.len(), 1);
        assert_eq!(pruned.accounts[0].0, "anon");
        assert!(!st.unproven_by_network.contains_key(&net));
        assert_eq!(st.anonymous_accounts, 1);
        assert_eq!(st.by_thumbprint.len(), 2);
        let pruned = st.prune(now + PROVEN_ACCOUNT_IDLE);
        assert_eq!(pruned.accounts.len(), 1);
        assert_eq!(pruned.accounts[0].0, "proven");
        assert!(st
            .prune(now + time::Duration::days(10_000))
            .accounts
            .is_empty());
        assert!(st.accounts.contains_key("eab"));
    }

    /// "A restart does not help": what expired while the server was stopped
    /// is pruned from the store when it starts.
    #[test]
    fn a_start_prunes_from_the_store_what_expired_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open_sled_waiting(&dir.path().join("db"), Duration::from_secs(1))
                .unwrap();
        let acme = store.acme().unwrap();
        let now = OffsetDateTime::now_utc();
        let long_ago = now - time::Duration::days(30);
        let mut idle = account(long_ago, Some("192.0.2.1"), false);
        acme.put_account(&idle.record("idle"), None).unwrap();
        idle.thumbprint = "other".into();
        idle.last_seen = now;
        acme.put_account(&idle.record("recent"), None).unwrap();
        acme.put_order(&order("idle", "z1", now - time::Duration::seconds(1)).record("gone"))
            .unwrap();
        acme.put_authz(&authz("gone", "c1", now).record("z1"))
            .unwrap();
        acme.put_authz(&authz("nowhere", "c2", now).record("orphan"))
            .unwrap();
        let st = State::load(&acme, &AcmeLimits::default(), now).unwrap();
        assert_eq!(st.accounts.keys().collect::<Vec<_>>(), ["recent"]);
        let stored: Vec<String> = acme.accounts().unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(stored, ["recent"]);
        assert!(acme.orders().unwrap().is_empty());
        assert!(acme.authzs().unwrap().is_empty());
        assert_eq!(st.unproven_by_network.values().sum::<usize>(), 1);
    }

    #[test]
    fn records_come_back_as_they_were_saved_but_interrupted_work_is_retried() {
        let now = OffsetDateTime::now_utc();
        let mut o = order("acct", "a1", now);
        o.status = OrderStatus::Processing;
        let (id, back) = Order::from_record(o.record("o1"));
        assert_eq!(id, "o1");
        assert_eq!(back.status, OrderStatus::Ready);
        assert_eq!(back.authzs, o.authzs);
        let z = Authz {
            account: "acct".into(),
            order: "o1".into(),
            identifier: Identifier::Ip("::1".parse().unwrap()),
            status: AuthzStatus::Pending,
            expires: now,
            challenges: vec![Challenge {
                typ: ChallengeType::TlsAlpn01,
                id: "c".into(),
                token: "t".into(),
                status: ChallengeStatus::Processing,
                validated: None,
                error: None,
            }],
        };
        let (_, back) = Authz::from_record(z.record("z"));
        assert_eq!(back.identifier, z.identifier);
        assert_eq!(back.challenges[0].typ, ChallengeType::TlsAlpn01);
        assert_eq!(back.challenges[0].status, ChallengeStatus::Pending);
        let mut a = account(now, Some("2001:db8::"), false);
        a.profile = Some("workload".into());
        a.contact = vec!["mailto:a@b.test".into()];
        a.proven = true;
        let (_, back) = Account::from_record(a.record("acct"), |_| unreachable!()).unwrap();
        assert_eq!(back.key, a.key);
        assert_eq!(back.key.thumbprint(), a.thumbprint);
        assert_eq!(back.profile, a.profile);
        assert_eq!(
            (back.network, back.proven, back.last_seen),
            (a.network, true, now)
        );
        // An account stored before `proven` was: proven when it has certificates.
        let mut old = a.record("acct");
        old.proven = None;
        old.last_seen = None;
        let (_, back) = Account::from_record(old.clone(), |id| id == "acct").unwrap();
        assert!(back.proven);
        assert_eq!(back.last_seen, back.created);
        let (_, back) = Account::from_record(old, |_| false).unwrap();
        assert!(!back.proven);
    }

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
}
