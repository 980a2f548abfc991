//! ACME state: accounts, orders, authorizations, challenges.

use super::*;

// ---------------------------------------------------------------------------
// ACME state (in memory)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Identifier {
    Dns(String),
    Ip(IpAddr),
}

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

pub(super) struct Account {
    pub(super) key: Jwk,
    pub(super) thumbprint: String,
    pub(super) status: &'static str,
    pub(super) contact: Vec<String>,
}

pub(super) struct Order {
    pub(super) account: String,
    pub(super) status: &'static str,
    pub(super) expires: OffsetDateTime,
    pub(super) identifiers: Vec<Identifier>,
    pub(super) authzs: Vec<String>,
    pub(super) certificate: Option<String>,
    /// The issued certificate's SHA-256 (hex), for revocation by the account.
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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ChallengeType::Http01 => "http-01",
            ChallengeType::TlsAlpn01 => "tls-alpn-01",
            ChallengeType::Dns01 => "dns-01",
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

pub(super) struct State {
    pub(super) nonces: NoncePool,
    pub(super) accounts: HashMap<String, Account>,
    pub(super) by_thumbprint: HashMap<String, String>,
    pub(super) orders: HashMap<String, Order>,
    /// Order ids, oldest first: the oldest are forgotten to bound memory.
    pub(super) order_queue: std::collections::VecDeque<String>,
    pub(super) authzs: HashMap<String, Authz>,
    pub(super) challenges: HashMap<String, String>,
    pub(super) certs: HashMap<String, (String, String)>,
    /// Certificates issued here (SHA-256 hex) → the account that ordered them.
    pub(super) issued_to: HashMap<String, String>,
    pub(super) used_eab: HashSet<String>,
    /// Per-account token buckets: tokens left, last refill.
    pub(super) buckets: HashMap<String, (f64, Instant)>,
}

impl State {
    pub(super) fn new() -> State {
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
    pub(super) fn make_room(&mut self, keep: usize) {
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

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
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
