//! The ACME objects of the working copy (RFC 8555 §7.1): accounts, orders,
//! authorizations and their challenges, with typed statuses
//! ([`super::status`]), and their conversion to and from the records of
//! `store::acme` (whose string form on disk stays as it is).

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SecureRandom;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::status::{AccountStatus, AuthzStatus, ChallengeStatus, OrderStatus};
use crate::acme::jws::Jwk;
pub(super) use crate::store::acme::AcmeIdentifier as Identifier;
use crate::store::acme::{AcmeAccount, AcmeAuthz, AcmeChallenge, AcmeOrder};

/// An account (RFC 8555 §7.1.2) in the working copy.
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
    pub(super) fn unproven_network(&self) -> Option<IpAddr> {
        self.network
            .filter(|_| !self.proven && self.eab_kid.is_none())
    }
}

/// An order (RFC 8555 §7.1.3) in the working copy.
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

/// The challenges this server validates.
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

/// A challenge of an authorization (RFC 8555 §7.1.5).
pub(super) struct Challenge {
    pub(super) typ: ChallengeType,
    pub(super) id: String,
    pub(super) token: String,
    pub(super) status: ChallengeStatus,
    pub(super) validated: Option<OffsetDateTime>,
    pub(super) error: Option<Value>,
}

/// An authorization (RFC 8555 §7.1.4) with its challenges.
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
    pub(super) fn from_record(
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

    pub(super) fn from_record(r: AcmeOrder) -> (String, Order) {
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

    pub(super) fn from_record(r: AcmeAuthz) -> (String, Authz) {
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

/// A new random id of an ACME object (base64url of 16 bytes).
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn order(account: &str, authz: &str, expires: OffsetDateTime) -> Order {
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

    pub(crate) fn authz(order: &str, challenge: &str, expires: OffsetDateTime) -> Authz {
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

    pub(crate) fn account(now: OffsetDateTime, network: Option<&str>, eab: bool) -> Account {
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
}
