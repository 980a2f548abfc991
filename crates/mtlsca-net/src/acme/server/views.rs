//! The ACME objects as their clients read them (RFC 8555 §7.1): JSON with
//! the server's URLs, built from the `Host` the client used (`base`).

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::objects::{Account, Authz, Challenge, Identifier, Order};

/// An account object (RFC 8555 §7.1.2) as its client reads it.
pub(super) fn account_json(base: &str, id: &str, a: &Account) -> Value {
    json!({
        "status": a.status,
        "contact": a.contact,
        "orders": format!("{base}/acme/acct/{id}/orders"),
    })
}

/// An order object (RFC 8555 §7.1.3) as its client reads it.
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

/// A challenge object (RFC 8555 §7.1.5) as its client reads it.
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

/// An authorization object (RFC 8555 §7.1.4) as its client reads it.
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

/// A time as RFC 3339 (what ACME objects carry).
pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
