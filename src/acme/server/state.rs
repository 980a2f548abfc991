//! ACME state: accounts, orders, authorizations, challenges.

use super::*;

// ---------------------------------------------------------------------------
// ACME state: a working copy in memory, written through to the store
// ---------------------------------------------------------------------------

pub(super) use crate::store::acme::AcmeIdentifier as Identifier;
use crate::store::acme::{AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeOrder, AcmeStore};

impl Identifier {
    pub(super) fn json(&self) -> Value {
        match self {
            Identifier::Dns(d) => json!({"type": "dns", "value": d}),
            Identifier::Ip(ip) => json!({"type": "ip", "value": ip.to_string()}),
        }
    }

    pub(super) fn value(&self) -> String {
        match self {
            Identifier::Dns(d) => d.clone(),
            Identifier::Ip(ip) => ip.to_string(),
        }
    }
}

/// The statuses of RFC 8555 §7.1.6, as `&'static str` for the working copy.
const STATUSES: &[&str] = &[
    "pending",
    "ready",
    "processing",
    "valid",
    "invalid",
    "deactivated",
    "expired",
    "revoked",
];

fn status(s: &str) -> &'static str {
    STATUSES
        .iter()
        .find(|k| **k == s)
        .copied()
        .unwrap_or("invalid")
}

pub(super) struct Account {
    pub(super) key: Jwk,
    pub(super) thumbprint: String,
    pub(super) status: &'static str,
    pub(super) contact: Vec<String>,
    /// Its EAB key's profile; `None`: the server's `--acme-profile`.
    pub(super) profile: Option<String>,
    pub(super) eab_kid: Option<String>,
    pub(super) created: OffsetDateTime,
}

pub(super) struct Order {
    pub(super) account: String,
    pub(super) status: &'static str,
    pub(super) expires: OffsetDateTime,
    pub(super) identifiers: Vec<Identifier>,
    pub(super) authzs: Vec<String>,
    pub(super) certificate: Option<String>,
    /// The issued certificate's SHA-256 (hex).
    pub(super) cert_sha256: Option<String>,
    pub(super) error: Option<Value>,
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
    pub(super) status: &'static str,
    pub(super) validated: Option<OffsetDateTime>,
    pub(super) error: Option<Value>,
}

pub(super) struct Authz {
    pub(super) account: String,
    pub(super) order: String,
    pub(super) identifier: Identifier,
    pub(super) status: &'static str,
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
        }
    }

    fn from_record(r: AcmeAccount) -> Option<(String, Account)> {
        let key = Jwk::from_json(&r.key).ok()?;
        Some((
            r.id,
            Account {
                key,
                thumbprint: r.thumbprint,
                status: status(&r.status),
                contact: r.contact,
                profile: r.profile,
                eab_kid: r.eab_kid,
                created: r.created,
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
        let st = match status(&r.status) {
            "processing" => "ready",
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
                    status: match status(&c.status) {
                        "processing" => "pending",
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
                status: status(&r.status),
                expires: r.expires,
                challenges,
            },
        )
    }
}

pub(super) struct State {
    pub(super) nonces: NoncePool,
    pub(super) accounts: HashMap<String, Account>,
    pub(super) by_thumbprint: HashMap<String, String>,
    pub(super) orders: HashMap<String, Order>,
    /// Order ids, oldest first: expired ones are pruned, and the oldest go
    /// first when there are too many.
    pub(super) order_queue: std::collections::VecDeque<String>,
    pub(super) authzs: HashMap<String, Authz>,
    pub(super) challenges: HashMap<String, String>,
    /// Per-account token buckets: tokens left, last refill.
    pub(super) buckets: HashMap<String, (f64, Instant)>,
    /// Per-network token buckets for new accounts without EAB.
    pub(super) account_buckets: AccountBuckets,
}

/// How long a nonce is accepted.
pub(super) const NONCE_LIFETIME: Duration = Duration::from_secs(3600);

impl State {
    pub(super) fn new() -> State {
        State {
            nonces: NoncePool::new(100_000, NONCE_LIFETIME),
            accounts: HashMap::new(),
            by_thumbprint: HashMap::new(),
            orders: HashMap::new(),
            order_queue: std::collections::VecDeque::new(),
            authzs: HashMap::new(),
            challenges: HashMap::new(),
            buckets: HashMap::new(),
            account_buckets: AccountBuckets::default(),
        }
    }

    /// The working copy of what the store holds; expired orders (with their
    /// authorizations and downloads) are pruned from the store on the way, the
    /// nonces a clean stop saved are taken back, and the secrets of EAB keys
    /// already bound or revoked are forgotten.
    pub(super) fn load(store: &AcmeStore, now: OffsetDateTime) -> Result<State> {
        let mut st = State::new();
        for r in store.accounts()? {
            if let Some((id, a)) = Account::from_record(r) {
                st.by_thumbprint.insert(a.thumbprint.clone(), id.clone());
                st.accounts.insert(id, a);
            }
        }
        let mut orders = store.orders()?;
        orders.sort_by_key(|o| o.expires);
        for r in orders {
            if r.expires <= now {
                store.remove_order(&r)?;
                continue;
            }
            let (id, o) = Order::from_record(r);
            st.order_queue.push_back(id.clone());
            st.orders.insert(id, o);
        }
        for r in store.authzs()? {
            if !st.orders.contains_key(&r.order) {
                store.remove_authz(&r.id)?;
                continue;
            }
            let (id, a) = Authz::from_record(r);
            for c in &a.challenges {
                st.challenges.insert(c.id.clone(), id.clone());
            }
            st.authzs.insert(id, a);
        }
        // A store from before spent EAB keys were emptied: forget their secrets.
        store.forget_spent_eab_secrets()?;
        let wall = now.unix_timestamp();
        let mono = Instant::now();
        for (nonce, at) in store.take_nonces()? {
            let age = Duration::from_secs(u64::try_from(wall.saturating_sub(at)).unwrap_or(0));
            if age <= NONCE_LIFETIME {
                st.nonces
                    .adopt(nonce, mono.checked_sub(age).unwrap_or(mono));
            }
        }
        Ok(st)
    }

    /// Forget orders that expired by `now` and, past that, the oldest orders
    /// until at most `keep` remain — with their authorizations, challenges and
    /// certificate downloads (the certificates stay in the store). Returns the
    /// forgotten orders as records, for the caller to remove from the store.
    pub(super) fn make_room(&mut self, keep: usize, now: OffsetDateTime) -> Vec<AcmeOrder> {
        let mut gone = Vec::new();
        while let Some(id) = self.order_queue.front() {
            let expired = self.orders.get(id).is_none_or(|o| o.expires <= now);
            if !expired && self.orders.len() <= keep {
                break;
            }
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
            gone.push(o.record(&id));
        }
        gone
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

/// The network a client registers from: its IPv4 address, or the /64 of its
/// IPv6 address (an IPv4-mapped one counts as IPv4). A host usually holds a
/// whole /64 and could step through its addresses, so the per-address limit on
/// new accounts counts the /64.
pub(super) fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
        v4 => v4,
    }
}

/// Networks tracked at once by [`AccountBuckets`].
pub(super) const MAX_TRACKED_NETWORKS: usize = 10_000;

/// Token buckets for new accounts without EAB, one per client network
/// ([`client_network`]): `per_hour` an hour, in bursts of as many. A network
/// whose bucket is full again is forgotten, so the table holds only recent
/// registrants, and never more than [`MAX_TRACKED_NETWORKS`]: while it is full
/// of networks still refilling, new networks wait too (else registering from
/// ever new addresses would grow it without bound).
#[derive(Default)]
pub(super) struct AccountBuckets {
    /// Tokens left and when they were counted, per network.
    map: HashMap<IpAddr, (f64, Instant)>,
}

/// Why [`AccountBuckets::take`] refused, with the seconds until it would not.
#[derive(Debug, PartialEq)]
pub(super) enum AccountLimit {
    /// This network registered `per_hour` accounts in the last hour.
    Network(u32),
    /// The table is full of networks that registered recently.
    Table(u32),
}

impl AccountBuckets {
    /// One token for a new account from `ip`'s network at `now`.
    pub(super) fn take(
        &mut self,
        ip: IpAddr,
        per_hour: u32,
        now: Instant,
    ) -> Result<(), AccountLimit> {
        let cap = f64::from(per_hour);
        let per_sec = cap / 3600.0;
        let level = |b: &(f64, Instant)| {
            (b.0 + now.saturating_duration_since(b.1).as_secs_f64() * per_sec).min(cap)
        };
        let net = client_network(ip);
        if !self.map.contains_key(&net) && self.map.len() >= MAX_TRACKED_NETWORKS {
            self.map.retain(|_, b| level(b) < cap);
            if self.map.len() >= MAX_TRACKED_NETWORKS {
                // The first bucket to fill up again frees a place.
                let wait = self
                    .map
                    .values()
                    .map(|b| (cap - level(b)) / per_sec)
                    .fold(f64::INFINITY, f64::min);
                return Err(AccountLimit::Table(wait.ceil().clamp(1.0, 3600.0) as u32));
            }
        }
        let b = self.map.entry(net).or_insert((cap, now));
        b.0 = level(b);
        b.1 = now;
        if b.0 < 1.0 {
            let wait = ((1.0 - b.0) / per_sec).ceil().clamp(1.0, 3600.0);
            return Err(AccountLimit::Network(wait as u32));
        }
        b.0 -= 1.0;
        Ok(())
    }
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
            status: "valid",
            expires,
            identifiers: vec![Identifier::Dns("a.test".into())],
            authzs: vec![authz.into()],
            certificate: Some(format!("cert-{authz}")),
            cert_sha256: Some(format!("sha-{authz}")),
            error: None,
        }
    }

    #[test]
    fn expired_and_then_the_oldest_orders_are_forgotten_with_what_hangs_on_them() {
        let now = OffsetDateTime::now_utc();
        let mut st = State::new();
        for i in 0..6 {
            let (o, a, c) = (format!("o{i}"), format!("a{i}"), format!("c{i}"));
            // o0 has expired; the others have not.
            let expires = if i == 0 {
                now - time::Duration::seconds(1)
            } else {
                now + time::Duration::hours(1)
            };
            st.orders.insert(o.clone(), order("acct", &a, expires));
            st.order_queue.push_back(o.clone());
            st.challenges.insert(c.clone(), a.clone());
            st.authzs.insert(
                a.clone(),
                Authz {
                    account: "acct".into(),
                    order: o,
                    identifier: Identifier::Dns("a.test".into()),
                    status: "valid",
                    expires,
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
        }
        let gone = st.make_room(10, now);
        assert_eq!(gone.len(), 1, "only the expired order");
        assert_eq!(gone[0].id, "o0");
        assert_eq!(gone[0].certificate.as_deref(), Some("cert-a0"));
        let gone = st.make_room(2, now);
        assert_eq!(gone.len(), 3);
        assert_eq!(st.orders.len(), 2);
        assert!(st.orders.contains_key("o4") && st.orders.contains_key("o5"));
        assert_eq!(st.authzs.len(), 2);
        assert_eq!(st.challenges.len(), 2);
        assert_eq!(st.order_queue.len(), 2);
    }

    #[test]
    fn records_come_back_as_they_were_saved_but_interrupted_work_is_retried() {
        let now = OffsetDateTime::now_utc();
        let mut o = order("acct", "a1", now);
        o.status = "processing";
        let (id, back) = Order::from_record(o.record("o1"));
        assert_eq!(id, "o1");
        assert_eq!(back.status, "ready");
        assert_eq!(back.authzs, o.authzs);
        let z = Authz {
            account: "acct".into(),
            order: "o1".into(),
            identifier: Identifier::Ip("::1".parse().unwrap()),
            status: "pending",
            expires: now,
            challenges: vec![Challenge {
                typ: ChallengeType::TlsAlpn01,
                id: "c".into(),
                token: "t".into(),
                status: "processing",
                validated: None,
                error: None,
            }],
        };
        let (_, back) = Authz::from_record(z.record("z"));
        assert_eq!(back.identifier, z.identifier);
        assert_eq!(back.challenges[0].typ, ChallengeType::TlsAlpn01);
        assert_eq!(back.challenges[0].status, "pending");
        let key =
            Jwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode([7u8; 32])}))
                .unwrap();
        let a = Account {
            thumbprint: key.thumbprint(),
            key,
            status: "valid",
            contact: vec!["mailto:a@b.test".into()],
            profile: Some("workload".into()),
            eab_kid: Some("k".into()),
            created: now,
        };
        let (_, back) = Account::from_record(a.record("acct")).unwrap();
        assert_eq!(back.key, a.key);
        assert_eq!(back.key.thumbprint(), a.thumbprint);
        assert_eq!(back.profile, a.profile);
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let net = |s: &str| client_network(s.parse().unwrap()).to_string();
        assert_eq!(net("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::");
        assert_eq!(net("2001:db8:1:3::1"), "2001:db8:1:3::");
        assert_eq!(net("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(net("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn new_accounts_are_limited_per_network_and_the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut b = AccountBuckets::default();
        let ip = |i: u128| IpAddr::V6(std::net::Ipv6Addr::from((0x2001_0db8u128 << 96) | i));
        // Two an hour: the third from another address of the same /64 waits
        // half an hour for its token.
        assert_eq!(b.take(ip(1), 2, t0), Ok(()));
        assert_eq!(b.take(ip(2), 2, t0), Ok(()));
        assert_eq!(b.take(ip(3), 2, t0), Err(AccountLimit::Network(1800)));
        assert_eq!(b.take(ip(4), 2, t0 + Duration::from_secs(1800)), Ok(()));
        // Other /64s, each still refilling, fill the table; then a new network
        // waits until the first bucket is full again, and is let in then.
        let mut t = t0 + Duration::from_secs(1800);
        for n in 1..MAX_TRACKED_NETWORKS as u128 {
            assert_eq!(b.take(ip(n << 64), 2, t), Ok(()));
        }
        t += Duration::from_secs(1);
        let refused = b.take(ip(1 << 90), 2, t);
        assert!(
            matches!(refused, Err(AccountLimit::Table(s)) if (1700..=1800).contains(&s)),
            "{refused:?}"
        );
        assert_eq!(b.map.len(), MAX_TRACKED_NETWORKS);
        assert_eq!(
            b.take(ip(1 << 90), 2, t + Duration::from_secs(1800)),
            Ok(())
        );
        assert!(b.map.len() <= MAX_TRACKED_NETWORKS);
    }
}
