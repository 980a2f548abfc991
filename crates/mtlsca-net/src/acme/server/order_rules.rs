//! The rules of an order, apart from HTTP and from the working copy: the
//! identifiers newOrder asks for (read and normalised), the challenges that
//! prove each, what finalize's CSR must ask for (exactly the order's
//! identifiers, its common name one of them, no URI or email, not the account's
//! key), the profile the certificate comes from, and who may revoke it. Pure
//! functions, called by the handlers; the engine's policy check comes after
//! [`order_identifiers`] and is the engine's.

use std::collections::HashSet;
use std::net::IpAddr;

use hyper::StatusCode;

use super::objects::{ChallengeType, Identifier};
use super::payload::{Lenient, NewOrder};
use super::problem::Problem;
use crate::acme::jws::Jwk;
use crate::acme::problem::ProblemType;
use crate::crl::Reason;
use crate::key::PublicKeyValue;
use crate::policy::RequestedContent;

/// Identifiers one order may name at most.
pub(super) const MAX_IDENTIFIERS: usize = 100;

/// newOrder's identifiers, in the order asked, each once: a DNS name in
/// lowercase (a wildcard `*.NAME` too: policy decides it, by the profile's
/// `allow_wildcards`), an IP address parsed (RFC 8738). `notBefore` and
/// `notAfter` are refused (the profile decides the validity), and so are an
/// empty list, more than [`MAX_IDENTIFIERS`], and other identifier types.
pub(super) fn order_identifiers(p: &NewOrder) -> Result<Vec<Identifier>, Problem> {
    if p.not_before.is_some() || p.not_after.is_some() {
        return Err(Problem::malformed(
            "notBefore and notAfter are not supported: the profile decides the validity",
        ));
    }
    let list = p
        .identifiers
        .get()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Problem::malformed("`identifiers` must be a non-empty list"))?;
    if list.len() > MAX_IDENTIFIERS {
        return Err(Problem::malformed(format!(
            "at most {MAX_IDENTIFIERS} identifiers per order"
        )));
    }
    let mut ids: Vec<Identifier> = Vec::new();
    for item in list {
        let i = &item.0;
        let value = i.value.get().map_or("", String::as_str);
        let id = match i.kind.get().map(String::as_str) {
            Some("dns") => Identifier::Dns(value.to_ascii_lowercase()),
            Some("ip") => Identifier::Ip(value.parse().map_err(|_| {
                Problem::malformed(format!(
                    "`{}` is not an IP address",
                    crate::names::printable(value)
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
    Ok(ids)
}

/// What the engine's policy check of a new order is asked: the identifiers as
/// the names of a request.
pub(super) fn requested_content(ids: &[Identifier]) -> RequestedContent {
    let mut content = RequestedContent::default();
    for i in ids {
        match i {
            Identifier::Dns(d) => content.dns.push(d.clone()),
            Identifier::Ip(ip) => content.ip.push(ip.to_string()),
        }
    }
    content
}

/// The challenges offered for an identifier: tls-alpn-01 and dns-01 for DNS
/// names only (an IP would need a reverse-DNS name), and a wildcard is proved
/// by dns-01 alone (RFC 8555 §7.1.3).
pub(super) fn challenge_types(id: &Identifier) -> &'static [ChallengeType] {
    match id {
        Identifier::Dns(d) if d.starts_with("*.") => &[ChallengeType::Dns01],
        Identifier::Dns(_) => &[
            ChallengeType::Http01,
            ChallengeType::TlsAlpn01,
            ChallengeType::Dns01,
        ],
        Identifier::Ip(_) => &[ChallengeType::Http01],
    }
}

/// What a finalize's CSR asks for must be exactly what the order proved: its
/// SANs are the order's identifiers (DNS names compared in lowercase), its
/// common name, when it has one, is one of them, and it asks for no URI or
/// email. `badCSR` otherwise (the common name is checked first, to name it).
pub(super) fn check_csr_names(
    content: &RequestedContent,
    order: &[Identifier],
) -> Result<(), Problem> {
    let expected: HashSet<&Identifier> = order.iter().collect();
    if let Some(cn) = &content.cn {
        if !expected.contains(&identifier_of_name(cn)) {
            return Err(bad_csr(format!(
                "the CSR's common name `{}` is not an identifier of the order",
                crate::names::printable(cn)
            )));
        }
    }
    let asked = csr_identifiers(content);
    if asked.iter().collect::<HashSet<_>>() != expected
        || !content.uri.is_empty()
        || !content.email.is_empty()
    {
        let mut want: Vec<String> = order.iter().map(Identifier::value).collect();
        want.sort();
        return Err(bad_csr(format!(
            "the CSR must ask for exactly the order's identifiers ({})",
            want.join(", ")
        )));
    }
    Ok(())
}

/// The CSR's key must not be the account key (RFC 8555 §11.1): `badCSR`.
pub(super) fn check_csr_key(account_key: Option<&Jwk>, csr_spki: &[u8]) -> Result<(), Problem> {
    if same_key(account_key, csr_spki) {
        return Err(bad_csr(
            "the CSR's key is the account key; use another key for the certificate",
        ));
    }
    Ok(())
}

fn bad_csr(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, ProblemType::BadCsr, detail)
}

/// The SANs of a CSR as identifiers: DNS names in lowercase, IP addresses
/// parsed (one that does not parse stays a name, and so matches nothing).
fn csr_identifiers(content: &RequestedContent) -> HashSet<Identifier> {
    let dns = content
        .dns
        .iter()
        .map(|d| Identifier::Dns(d.to_ascii_lowercase()));
    let ip = content.ip.iter().map(|ip| match ip.parse() {
        Ok(ip) => Identifier::Ip(ip),
        Err(_) => Identifier::Dns(ip.clone()),
    });
    dns.chain(ip).collect()
}

/// A common name as an identifier: an IP address, else a DNS name in lowercase.
fn identifier_of_name(cn: &str) -> Identifier {
    match cn.parse::<IpAddr>() {
        Ok(ip) => Identifier::Ip(ip),
        Err(_) => Identifier::Dns(cn.to_ascii_lowercase()),
    }
}

/// Whether a SubjectPublicKeyInfo holds the same public key as a JWK: the
/// project's one key comparison ([`PublicKeyValue`]), never bytes of one found
/// inside the other.
pub(super) fn same_key(jwk: Option<&Jwk>, spki_der: &[u8]) -> bool {
    let (Some(a), Some(b)) = (
        jwk.and_then(Jwk::value),
        PublicKeyValue::from_spki_der(spki_der),
    ) else {
        return false;
    };
    a == b
}

/// The profile an account's certificates come from: its EAB key's, else the
/// server's `--acme-profile`.
pub(super) fn profile_of(account_profile: Option<&str>, server_profile: &str) -> String {
    account_profile.unwrap_or(server_profile).to_string()
}

/// The request id an order's certificate is recorded under: it names the
/// account, so revocation by the account works after the order is gone.
pub(super) fn order_request_id(account: &str, order: &str) -> String {
    format!("acme/acct/{account}/order/{order}")
}

/// Whether a certificate recorded under `request_id` was ordered by `account`
/// ([`order_request_id`]).
pub(super) fn ordered_by(request_id: Option<&str>, account: &str) -> bool {
    request_id.is_some_and(|r| r.starts_with(&format!("acme/acct/{account}/order/")))
}

/// revokeCert's reason: unspecified when none is given, else an RFC 5280 code
/// the CA records (`badRevocationReason` for any other, or a non-code).
pub(super) fn revocation_reason(reason: Option<&Lenient<u64>>) -> Result<Reason, Problem> {
    let bad = |detail: String| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemType::BadRevocationReason,
            detail,
        )
    };
    match reason.map(Lenient::get) {
        None => Ok(Reason::Unspecified),
        Some(Some(&code)) => reason_of(code)
            .ok_or_else(|| bad(format!("reason code {code} is not one this CA uses"))),
        Some(None) => Err(bad("`reason` must be an RFC 5280 reason code".into())),
    }
}

/// An RFC 5280 reason code the CA records.
fn reason_of(code: u64) -> Option<Reason> {
    use Reason::*;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::server::payload::members;
    use serde_json::json;

    fn new_order(v: serde_json::Value) -> Result<Vec<Identifier>, Problem> {
        order_identifiers(&members(v))
    }

    fn dns(s: &str) -> Identifier {
        Identifier::Dns(s.into())
    }

    fn ip(s: &str) -> Identifier {
        Identifier::Ip(s.parse().unwrap())
    }

    #[test]
    fn new_order_identifiers_are_normalised_and_each_kept_once() {
        let ids = new_order(json!({"identifiers": [
            {"type": "dns", "value": "WWW.Example.TEST"},
            {"type": "ip", "value": "192.0.2.1"},
            {"type": "dns", "value": "www.example.test"},
            {"type": "dns", "value": "*.Apps.test"},
            {"type": "ip", "value": "2001:db8::1", "comment": "ignored"},
        ]}))
        .unwrap();
        assert_eq!(
            ids,
            [
                dns("www.example.test"),
                ip("192.0.2.1"),
                dns("*.apps.test"),
                ip("2001:db8::1")
            ]
        );
        // A DNS identifier without a value is an empty name: policy refuses it.
        assert_eq!(
            new_order(json!({"identifiers": [{"type": "dns"}]})).unwrap(),
            [dns("")]
        );
    }

    #[test]
    fn new_order_refusals_are_the_problems_they_were() {
        let kind = |v| new_order(v).unwrap_err().kind;
        for v in [
            json!({}),
            json!({"identifiers": []}),
            json!({"identifiers": "a.test"}),
            json!([{"type": "dns", "value": "a.test"}]),
            json!({"identifiers": [{"type": "ip", "value": "localhost"}]}),
            json!({"identifiers": [{"type": "dns", "value": "a.test"}], "notAfter": null}),
            json!({"identifiers": [{"type": "dns", "value": "a.test"}], "notBefore": "2030-01-01T00:00:00Z"}),
        ] {
            assert_eq!(kind(v.clone()), ProblemType::Malformed, "{v}");
        }
        let many: Vec<_> = (0..=MAX_IDENTIFIERS)
            .map(|i| json!({"type": "dns", "value": format!("n{i}.test")}))
            .collect();
        let p = new_order(json!({ "identifiers": many })).unwrap_err();
        assert_eq!(p.detail, "at most 100 identifiers per order");
        for v in [
            json!({"identifiers": [{"type": "email", "value": "a@b.test"}]}),
            json!({"identifiers": [{"value": "a.test"}]}),
            json!({"identifiers": [["dns", "a.test"]]}),
            // The first bad identifier decides.
            json!({"identifiers": [{"type": "uri", "value": "x"}, {"type": "ip", "value": "x"}]}),
        ] {
            assert_eq!(kind(v.clone()), ProblemType::UnsupportedIdentifier, "{v}");
        }
        let p = new_order(json!({"identifiers": [{"type": "ip", "value": "x"}, {"type": "uri"}]}))
            .unwrap_err();
        assert_eq!(
            (p.kind, p.detail.as_str()),
            (ProblemType::Malformed, "`x` is not an IP address")
        );
    }

    #[test]
    fn identifiers_go_to_policy_as_names_and_get_their_challenges() {
        let c = requested_content(&[dns("a.test"), ip("::1"), dns("*.b.test")]);
        assert_eq!(
            (c.dns, c.ip),
            (vec!["a.test".into(), "*.b.test".into()], vec!["::1".into()])
        );
        assert_eq!(challenge_types(&dns("*.b.test")), [ChallengeType::Dns01]);
        assert_eq!(challenge_types(&ip("192.0.2.1")), [ChallengeType::Http01]);
        assert_eq!(
            challenge_types(&dns("a.test")),
            [
                ChallengeType::Http01,
                ChallengeType::TlsAlpn01,
                ChallengeType::Dns01
            ]
        );
    }

    fn csr(dns: &[&str], ips: &[&str], cn: Option<&str>) -> RequestedContent {
        RequestedContent {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ip: ips.iter().map(|s| s.to_string()).collect(),
            cn: cn.map(str::to_string),
            ..RequestedContent::default()
        }
    }

    #[test]
    fn a_csr_asks_for_exactly_the_orders_identifiers() {
        let order = [dns("a.test"), dns("b.test"), ip("192.0.2.1")];
        let ok = |c: RequestedContent| check_csr_names(&c, &order);
        ok(csr(&["B.test", "a.test"], &["192.0.2.1"], None)).unwrap();
        ok(csr(&["a.test", "b.test"], &["192.0.2.1"], Some("A.TEST"))).unwrap();
        ok(csr(
            &["a.test", "b.test"],
            &["192.0.2.1"],
            Some("192.0.2.1"),
        ))
        .unwrap();
        let refused = |c: RequestedContent| {
            let p = ok(c).unwrap_err();
            assert_eq!(
                (p.kind, p.status),
                (ProblemType::BadCsr, StatusCode::BAD_REQUEST)
            );
            p.detail
        };
        let want =
            "the CSR must ask for exactly the order's identifiers (192.0.2.1, a.test, b.test)";
        // Fewer, more, or other names; an IP written as a name.
        assert_eq!(refused(csr(&["a.test"], &["192.0.2.1"], None)), want);
        assert_eq!(
            refused(csr(&["a.test", "b.test", "c.test"], &["192.0.2.1"], None)),
            want
        );
        assert_eq!(
            refused(csr(&["a.test", "b.test", "192.0.2.1"], &[], None)),
            want
        );
        assert_eq!(
            refused(csr(&["a.test", "b.test"], &["192.0.2.1", "nonsense"], None)),
            want
        );
        // A URI or an email besides the right names.
        let mut c = csr(&["a.test", "b.test"], &["192.0.2.1"], None);
        c.uri.push("spiffe://corp/x".into());
        assert_eq!(refused(c), want);
        let mut c = csr(&["a.test", "b.test"], &["192.0.2.1"], None);
        c.email.push("a@b.test".into());
        assert_eq!(refused(c), want);
        // A common name that is not an identifier is named.
        assert_eq!(
            refused(csr(
                &["a.test", "b.test"],
                &["192.0.2.1"],
                Some("evil.test")
            )),
            "the CSR's common name `evil.test` is not an identifier of the order"
        );
    }

    /// Issue 22, finding 1: the check that a revocation is signed by the
    /// certificate's own key took an RSA JWK whose modulus was any window of
    /// the certificate's key bytes. Keys are now compared as values.
    #[test]
    fn a_window_of_an_rsa_key_is_not_that_key() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| crate::acme::jws::tests::openssl_in(dir.path(), args);
        run(&["genrsa", "-out", "k.pem", "3072"]);
        let spki = run(&["pkey", "-in", "k.pem", "-pubout", "-outform", "DER"]);
        let value = PublicKeyValue::from_spki_der(&spki).unwrap();
        let PublicKeyValue::Rsa { modulus, exponent } = value.clone() else {
            panic!("{value:?}")
        };
        assert_eq!(modulus.len(), 384);
        let jwk = |n: &[u8], e: &[u8]| Jwk::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        };
        // The whole key, also with a leading zero byte, is the key.
        assert!(same_key(Some(&jwk(&modulus, &exponent)), &spki));
        let padded = [&[0u8][..], &modulus].concat();
        assert!(same_key(Some(&jwk(&padded, &exponent)), &spki));
        // Any window of it (and of the SPKI's bytes around it) is not.
        for (start, len) in [(0, 256), (1, 300), (100, 284), (128, 256), (0, 383)] {
            let w = &modulus[start..start + len];
            assert!(!same_key(Some(&jwk(w, &exponent)), &spki), "{start}+{len}");
        }
        for start in 0..spki.len() - 256 {
            let w = &spki[start..start + 256];
            assert!(!same_key(Some(&jwk(w, &exponent)), &spki), "spki {start}");
        }
        // Another exponent over the same modulus is another key.
        assert!(!same_key(Some(&jwk(&modulus, &[3])), &spki));
        assert!(!same_key(None, &spki));
        assert_eq!(jwk(&modulus, &exponent).value(), Some(value));
        // The CSR rule on top of it.
        let p = check_csr_key(Some(&jwk(&modulus, &exponent)), &spki).unwrap_err();
        assert_eq!(p.kind, ProblemType::BadCsr);
        check_csr_key(Some(&jwk(&modulus, &[3])), &spki).unwrap();
        check_csr_key(None, &spki).unwrap();
    }

    #[test]
    fn the_profile_the_account_and_the_revocation_reason() {
        assert_eq!(profile_of(Some("workload"), "device"), "workload");
        assert_eq!(profile_of(None, "device"), "device");
        let rid = order_request_id("A1", "O1");
        assert_eq!(rid, "acme/acct/A1/order/O1");
        assert!(ordered_by(Some(&rid), "A1"));
        assert!(
            !ordered_by(Some(&rid), "A"),
            "a prefix of the id is another account"
        );
        assert!(!ordered_by(None, "A1"));
        assert!(!ordered_by(Some("batch-7"), "A1"));
        assert_eq!(revocation_reason(None).unwrap(), Reason::Unspecified);
        assert_eq!(
            revocation_reason(Some(&Lenient(Some(4)))).unwrap(),
            Reason::Superseded
        );
        for (r, detail) in [
            (Lenient(Some(7)), "reason code 7 is not one this CA uses"),
            (Lenient(None), "`reason` must be an RFC 5280 reason code"),
        ] {
            let p = revocation_reason(Some(&r)).unwrap_err();
            assert_eq!(
                (p.kind, p.detail.as_str()),
                (ProblemType::BadRevocationReason, detail)
            );
        }
    }
}
