//! A pair of certificates in one TLS connection: both chains validated, the
//! connection classified by the draft's table, names and expectation checked.

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;

use super::{verify_cert, CertVerdict, PeerName, Purpose, Trust, Usage, VerifyOptions};
use crate::role::{self, CertClass, Connection, Role};

/// Which end of the connection a certificate is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Sends the first packet: the TLS client.
    Initiator,
    /// Accepts: the TLS server.
    Responder,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Initiator => "initiator",
            Side::Responder => "responder",
        }
    }
}

/// One end of the pair: the certificate and the chain it was sent with.
pub struct PairEnd<'a> {
    pub leaf: CertificateDer<'a>,
    /// Trust for this end: anchors, its intermediates, CRLs, revocation sources.
    pub trust: Trust<'a>,
    pub name: Option<PeerName>,
}

/// What a pair is checked against.
#[derive(Debug, Clone)]
pub struct PairOptions {
    pub expect: Option<Connection>,
    pub at: OffsetDateTime,
}

/// The verdict on one end.
#[derive(Debug, Clone, Serialize)]
pub struct SideVerdict {
    /// device, entity, ambiguous, no-eku, ca (`null` when unreadable).
    pub role: Option<CertClass>,
    pub subject: String,
    pub names: Vec<String>,
    pub ekus: Vec<String>,
    pub chain_valid: bool,
    pub not_after: Option<String>,
    /// Why this end is not acceptable (unprefixed: "certificate expired on ...").
    pub reasons: Vec<String>,
}

/// The verdict on the pair (`verify pair --json`).
#[derive(Debug, Clone, Serialize)]
pub struct PairVerdict {
    /// server-to-server, client-to-server, server-to-client, end-to-end, or
    /// ambiguous.
    pub connection: String,
    pub valid: bool,
    pub initiator: SideVerdict,
    pub responder: SideVerdict,
    /// Every reason, each naming the end it is about.
    pub reasons: Vec<String>,
    /// The loopback handshake, when one was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<super::handshake::HandshakeReport>,
}

/// Prefix a reason of one end with its side: "certificate expired" becomes
/// "initiator certificate expired", anything else "initiator: ...".
pub fn side_reason(side: Side, reason: &str) -> String {
    let s = side.as_str();
    if let Some(rest) = reason.strip_prefix("certificate's ") {
        format!("{s}'s {rest}")
    } else if reason.starts_with("certificate ") {
        format!("{s} {reason}")
    } else {
        format!("{s}: {reason}")
    }
}

/// The usage a chain is validated with: the draft's role when the certificate
/// has one; otherwise the classic purpose of that end, so that `chain_valid`
/// still says whether the path itself holds.
fn usage_for(class: Option<CertClass>, side: Side) -> Usage {
    match class.and_then(|c| c.role()) {
        Some(role) => Usage::Role(role),
        None => Usage::Purpose(match side {
            Side::Initiator => Purpose::Client,
            Side::Responder => Purpose::Server,
        }),
    }
}

fn classify_leaf(leaf: &CertificateDer<'_>) -> Option<CertClass> {
    crate::inspect::parse_der(leaf.as_ref())
        .ok()
        .map(|c| crate::inspect::CertFacts::of(&c).role)
}

fn side_verdict(end: &PairEnd<'_>, side: Side, at: OffsetDateTime) -> (SideVerdict, CertVerdict) {
    let class = classify_leaf(&end.leaf);
    let opts = VerifyOptions {
        usage: usage_for(class, side),
        name: end.name.clone(),
        at,
    };
    let v = verify_cert(&end.leaf, &end.trust, &opts);
    let mut reasons = v.reasons.clone();
    if let Some(c) = class.filter(|c| c.role().is_none()) {
        reasons.insert(0, class_reason(c, &v.ekus));
    }
    let s = SideVerdict {
        role: v.role,
        subject: v.subject.clone(),
        names: v.names.clone(),
        ekus: v.ekus.clone(),
        chain_valid: v.valid,
        not_after: v.not_after.clone(),
        reasons,
    };
    (s, v)
}

/// Why a certificate without a draft role cannot take part in a classified pair.
fn class_reason(c: CertClass, ekus: &[String]) -> String {
    match c {
        CertClass::Ambiguous => format!(
            "certificate's EKU is {}: ambiguous under the draft, the connection cannot be classified",
            ekus.join("+")
        ),
        CertClass::NoEku if ekus.is_empty() => {
            "certificate has no EKU: under the draft it is neither a device nor an entity".into()
        }
        CertClass::NoEku => format!(
            "certificate's EKU is {}: no TLS meaning under the draft",
            ekus.join("+")
        ),
        CertClass::Ca => "certificate is a CA certificate, not a device or an entity".into(),
        CertClass::Device | CertClass::Entity => String::new(),
    }
}

/// Why an end's role does not fit the expected connection.
pub fn role_mismatch(side: Side, actual: Role, expect: Connection) -> Option<String> {
    let (want_i, want_r) = expect.roles();
    let want = match side {
        Side::Initiator => want_i,
        Side::Responder => want_r,
    };
    if actual == want {
        return None;
    }
    let article = |r: Role| if r == Role::Entity { "an" } else { "a" };
    Some(format!(
        "{}'s EKU is {}: {} {actual} cannot be the {} of a {expect} link",
        side.as_str(),
        actual.tls_eku().display_name(),
        article(actual),
        side.as_str()
    ))
}

/// Verify a pair. Never fails: what is wrong is in the verdict.
pub fn verify_pair(
    initiator: &PairEnd<'_>,
    responder: &PairEnd<'_>,
    opts: &PairOptions,
) -> PairVerdict {
    let (i, _) = side_verdict(initiator, Side::Initiator, opts.at);
    let (r, _) = side_verdict(responder, Side::Responder, opts.at);
    let roles = (
        i.role.and_then(CertClass::role),
        r.role.and_then(CertClass::role),
    );
    let connection = match roles {
        (Some(a), Some(b)) => Some(role::connection(a, b)),
        _ => None,
    };
    let mut reasons: Vec<String> = i
        .reasons
        .iter()
        .map(|x| side_reason(Side::Initiator, x))
        .chain(r.reasons.iter().map(|x| side_reason(Side::Responder, x)))
        .collect();
    if let Some(expect) = opts.expect {
        match connection {
            Some(c) if c == expect => {}
            Some(c) => {
                let (a, b) = (
                    roles.0.unwrap_or(Role::Device),
                    roles.1.unwrap_or(Role::Device),
                );
                reasons.extend(role_mismatch(Side::Initiator, a, expect));
                reasons.extend(role_mismatch(Side::Responder, b, expect));
                reasons.push(format!("the pair is a {c} link, not the expected {expect}"));
            }
            None => reasons.push(format!(
                "the pair cannot be classified, so it is not the expected {expect} link"
            )),
        }
    }
    PairVerdict {
        connection: connection.map_or("ambiguous".to_string(), |c| c.as_str().to_string()),
        valid: reasons.is_empty(),
        initiator: i,
        responder: r,
        reasons,
        handshake: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_with_their_side() {
        assert_eq!(
            side_reason(Side::Initiator, "certificate expired on 2027-02-25"),
            "initiator certificate expired on 2027-02-25"
        );
        assert_eq!(
            side_reason(Side::Responder, "certificate's EKU is clientAuth"),
            "responder's EKU is clientAuth"
        );
        assert_eq!(
            side_reason(Side::Responder, "the CRL ..."),
            "responder: the CRL ..."
        );
    }

    #[test]
    fn mismatches_name_the_rule() {
        let m = role_mismatch(Side::Responder, Role::Entity, Connection::ServerToServer).unwrap();
        assert_eq!(
            m,
            "responder's EKU is clientAuth: an entity cannot be the responder of a server-to-server link"
        );
        assert!(role_mismatch(Side::Initiator, Role::Entity, Connection::ClientToServer).is_none());
    }
}
