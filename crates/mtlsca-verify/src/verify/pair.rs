//! A pair of certificates in one TLS connection: both chains validated, the
//! connection classified by the draft's table, names and expectation checked.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use serde::Serialize;
use time::OffsetDateTime;

use super::handshake::{Handshake, HandshakeReport, Identity};
use super::rustls_verifiers::DraftPolicy;
use super::{
    opt_rfc3339, verify_cert, CertVerdict, Finding, PeerName, Purpose, RevocationSource, Trust,
    Usage, VerifyOptions,
};
use crate::inspect::{joined, KeyPurpose, PresentedName};
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
    /// `initiator` or `responder`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Initiator => "initiator",
            Side::Responder => "responder",
        }
    }
}

/// One end of the pair: the certificate and the chain it was sent with.
pub struct PairEnd<'a> {
    /// The end's certificate.
    pub leaf: CertificateDer<'a>,
    /// Trust for this end: anchors, its intermediates, CRLs, revocation sources.
    pub trust: Trust<'a>,
    /// A name the certificate must be valid for.
    pub name: Option<PeerName>,
}

/// What a pair is checked against.
#[derive(Debug, Clone)]
pub struct PairOptions {
    /// The connection the pair must be.
    pub expect: Option<Connection>,
    /// The time to validate at.
    pub at: OffsetDateTime,
}

/// What the pair is, by the draft's table: one of the four connections, or
/// `ambiguous` when an end has no draft role. Serialised as the kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum PairConnection {
    /// Device to device.
    ServerToServer,
    /// Entity (initiator) to device.
    ClientToServer,
    /// Device (initiator) to entity.
    ServerToClient,
    /// Entity to entity.
    EndToEnd,
    /// An end has no draft role: the connection cannot be classified.
    Ambiguous,
}

impl PairConnection {
    /// The connection, unless ambiguous.
    pub fn connection(self) -> Option<Connection> {
        match self {
            PairConnection::ServerToServer => Some(Connection::ServerToServer),
            PairConnection::ClientToServer => Some(Connection::ClientToServer),
            PairConnection::ServerToClient => Some(Connection::ServerToClient),
            PairConnection::EndToEnd => Some(Connection::EndToEnd),
            PairConnection::Ambiguous => None,
        }
    }

    /// The kebab-case name (`server-to-server`, ..., `ambiguous`).
    pub fn as_str(self) -> &'static str {
        match self.connection() {
            Some(c) => c.as_str(),
            None => "ambiguous",
        }
    }
}

impl From<Connection> for PairConnection {
    fn from(c: Connection) -> PairConnection {
        match c {
            Connection::ServerToServer => PairConnection::ServerToServer,
            Connection::ClientToServer => PairConnection::ClientToServer,
            Connection::ServerToClient => PairConnection::ServerToClient,
            Connection::EndToEnd => PairConnection::EndToEnd,
        }
    }
}

impl fmt::Display for PairConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one end.
#[derive(Debug, Clone, Serialize)]
pub struct SideVerdict {
    /// device, entity, ambiguous, no-eku, ca (`null` when unreadable).
    pub role: Option<CertClass>,
    /// Subject, `CN=a, O=b`.
    pub subject: String,
    /// Its subjectAltNames (JSON: tagged text).
    pub names: Vec<PresentedName>,
    /// Its key purposes (JSON: names).
    pub ekus: Vec<KeyPurpose>,
    /// Whether its chain validated.
    pub chain_valid: bool,
    /// notAfter (JSON: RFC 3339).
    #[serde(serialize_with = "opt_rfc3339")]
    pub not_after: Option<OffsetDateTime>,
    /// Why this end is not acceptable (unprefixed: "certificate expired on ...").
    pub reasons: Vec<String>,
    /// Issuer-side findings about this end's path (unprefixed), not failing it
    /// unless the verdict is made strict.
    pub findings: Vec<Finding>,
}

/// The verdict on the pair (`verify pair --json`).
#[derive(Debug, Clone, Serialize)]
pub struct PairVerdict {
    /// server-to-server, client-to-server, server-to-client, end-to-end, or
    /// ambiguous.
    pub connection: PairConnection,
    /// No reasons.
    pub valid: bool,
    /// The initiator's end.
    pub initiator: SideVerdict,
    /// The responder's end.
    pub responder: SideVerdict,
    /// Every reason, each naming the end it is about.
    pub reasons: Vec<String>,
    /// Every finding of both ends, each naming the end it is about; they do not
    /// make the pair invalid unless the verdict is made strict
    /// ([`PairVerdict::strict`]).
    pub findings: Vec<Finding>,
    /// The loopback handshake, when one was run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<HandshakeReport>,
}

impl PairVerdict {
    /// `--strict`: every finding becomes a reason of its end and of the pair.
    pub fn strict(mut self) -> PairVerdict {
        for end in [&mut self.initiator, &mut self.responder] {
            for f in &end.findings {
                end.reasons.push(format!("{} [{}]", f.message, f.code));
                end.chain_valid = false;
            }
        }
        // The pair's findings name the end, and a shared CA's only once.
        for f in &self.findings {
            self.reasons.push(format!("{} [{}]", f.message, f.code));
        }
        self.valid = self.reasons.is_empty();
        self
    }
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
        not_after: v.not_after,
        reasons,
        findings: v.findings.clone(),
    };
    (s, v)
}

/// Why a certificate without a draft role cannot take part in a classified pair.
fn class_reason(c: CertClass, ekus: &[KeyPurpose]) -> String {
    match c {
        CertClass::Ambiguous => format!(
            "certificate's EKU is {}: ambiguous under the draft, the connection cannot be classified",
            joined(ekus, "+")
        ),
        CertClass::NoEku if ekus.is_empty() => {
            "certificate has no EKU: under the draft it is neither a device nor an entity".into()
        }
        CertClass::NoEku => format!(
            "certificate's EKU is {}: no TLS meaning under the draft",
            joined(ekus, "+")
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
    // Findings about an end's certificate name the end; those about a CA (the
    // same for both ends when they share it) are said once.
    let side_finding = |side: Side, f: &Finding| Finding {
        message: if f.message.starts_with("certificate") {
            side_reason(side, &f.message)
        } else {
            f.message.clone()
        },
        ..f.clone()
    };
    let mut findings: Vec<Finding> = Vec::new();
    for f in i
        .findings
        .iter()
        .map(|f| side_finding(Side::Initiator, f))
        .chain(r.findings.iter().map(|f| side_finding(Side::Responder, f)))
    {
        if !findings.contains(&f) {
            findings.push(f);
        }
    }
    PairVerdict {
        connection: connection.map_or(PairConnection::Ambiguous, PairConnection::from),
        valid: reasons.is_empty(),
        initiator: i,
        responder: r,
        reasons,
        findings,
        handshake: None,
    }
}

/// One end of a [`PairRequest`]: what was loaded from its files.
pub struct PairParty {
    /// Its certificate first, then the intermediates it sends.
    pub chain: Vec<CertificateDer<'static>>,
    /// A name its certificate must be valid for.
    pub name: Option<PeerName>,
}

/// The private keys of a loopback handshake and how long it may take.
pub struct HandshakeKeys {
    /// The initiator's private key.
    pub initiator: PrivateKeyDer<'static>,
    /// The responder's private key.
    pub responder: PrivateKeyDer<'static>,
    /// How long the handshake may take, end to end.
    pub timeout: Duration,
}

/// A pair to verify, its inputs loaded: both ends, what they are trusted
/// against, the expectation and time, and optionally a real handshake.
pub struct PairRequest<'a> {
    /// The TLS client's end.
    pub initiator: PairParty,
    /// The TLS server's end.
    pub responder: PairParty,
    /// Trust anchors.
    pub anchors: Vec<CertificateDer<'static>>,
    /// Further intermediates that may be used to build either path.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// CRLs.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Other revocation sources (the CA's store, for instance).
    pub revocation: Vec<&'a dyn RevocationSource>,
    /// The connection the pair must be.
    pub expect: Option<Connection>,
    /// The time to validate (and run the handshake) at.
    pub at: OffsetDateTime,
    /// Run a TLS 1.3 handshake between the two over loopback with these keys.
    pub handshake: Option<HandshakeKeys>,
}

impl PairRequest<'_> {
    fn trust_for(&self, party: &PairParty) -> Trust<'_> {
        let mut intermediates: Vec<CertificateDer<'_>> =
            party.chain.iter().skip(1).cloned().collect();
        intermediates.extend(self.intermediates.iter().cloned());
        Trust {
            anchors: self.anchors.clone(),
            intermediates,
            crls: self.crls.clone(),
            revocation: self.revocation.clone(),
        }
    }

    fn end(&self, party: &PairParty) -> Option<PairEnd<'_>> {
        Some(PairEnd {
            leaf: party.chain.first()?.clone(),
            trust: self.trust_for(party),
            name: party.name.clone(),
        })
    }

    /// What one end accepts from its peer during the handshake; `revoked` is
    /// what the revocation sources say about the two leaves.
    fn policy(
        &self,
        roles: Vec<Role>,
        name: &Option<PeerName>,
        revoked: &Arc<RevokedLeaves>,
    ) -> DraftPolicy {
        let p = DraftPolicy::new(self.anchors.clone())
            .intermediates(self.intermediates.clone())
            .crls(self.crls.clone())
            .accept(&roles)
            .names(name.iter().cloned().collect());
        if revoked.0.is_empty() {
            p
        } else {
            p.revocation(revoked.clone())
        }
    }

    /// Ask the revocation sources (the CA's store) about both leaves, against
    /// every certificate that could have issued them, so that the handshake's
    /// verifiers (which run on other threads) know the same revocations.
    fn revoked_leaves(&self) -> RevokedLeaves {
        let mut out = Vec::new();
        if self.revocation.is_empty() {
            return RevokedLeaves(out);
        }
        let cas: Vec<&CertificateDer<'static>> = self
            .anchors
            .iter()
            .chain(&self.intermediates)
            .chain(self.initiator.chain.iter().skip(1))
            .chain(self.responder.chain.iter().skip(1))
            .collect();
        for party in [&self.initiator, &self.responder] {
            let Some(leaf) = party.chain.first() else {
                continue;
            };
            let Ok(l) = crate::inspect::parse_der(leaf.as_ref()) else {
                continue;
            };
            for ca in &cas {
                let Ok(c) = crate::inspect::parse_der(ca.as_ref()) else {
                    continue;
                };
                if c.subject().as_raw() != l.issuer().as_raw() {
                    continue;
                }
                let key_id = c
                    .extensions()
                    .iter()
                    .find_map(|e| match e.parsed_extension() {
                        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                            Some(k.0)
                        }
                        _ => None,
                    });
                let r = super::CertRef {
                    der: leaf.as_ref(),
                    serial: l.raw_serial(),
                    issuer_subject: c.subject().as_raw(),
                    issuer_spki: c.public_key().raw,
                    issuer_key_id: key_id,
                };
                for src in &self.revocation {
                    if let Some(info) = src.revoked(&r) {
                        out.push((l.raw_serial().to_vec(), c.public_key().raw.to_vec(), info));
                    }
                }
            }
        }
        RevokedLeaves(out)
    }
}

/// The revocations of the pair's leaves, known before the handshake: (serial,
/// issuer SubjectPublicKeyInfo, what the source said).
struct RevokedLeaves(Vec<(Vec<u8>, Vec<u8>, super::RevocationInfo)>);

impl RevocationSource for RevokedLeaves {
    fn revoked(&self, cert: &super::CertRef<'_>) -> Option<super::RevocationInfo> {
        self.0
            .iter()
            .find(|(serial, spki, _)| serial == cert.serial && spki == cert.issuer_spki)
            .map(|(_, _, info)| info.clone())
    }
}

/// Verify a pair as `verify pair` does: both chains, the connection, names and
/// expectation; with [`PairRequest::handshake`], also a real TLS 1.3 handshake
/// whose failure makes the verdict invalid. Never fails: what is wrong is in the
/// verdict (an end without a certificate is one of those things).
pub fn check_pair(req: PairRequest<'_>) -> PairVerdict {
    let (Some(initiator), Some(responder)) = (req.end(&req.initiator), req.end(&req.responder))
    else {
        let missing = SideVerdict {
            role: None,
            subject: String::new(),
            names: vec![],
            ekus: vec![],
            chain_valid: false,
            not_after: None,
            reasons: vec!["no certificate was given".into()],
            findings: vec![],
        };
        return PairVerdict {
            connection: PairConnection::Ambiguous,
            valid: false,
            initiator: missing.clone(),
            responder: missing,
            reasons: vec!["a certificate of the pair is missing".into()],
            findings: vec![],
            handshake: None,
        };
    };
    let mut v = verify_pair(
        &initiator,
        &responder,
        &PairOptions {
            expect: req.expect,
            at: req.at,
        },
    );
    let Some(keys) = &req.handshake else {
        return v;
    };
    let (i_roles, r_roles) = match req.expect {
        Some(c) => (vec![c.roles().0], vec![c.roles().1]),
        None => (
            vec![Role::Device, Role::Entity],
            vec![Role::Device, Role::Entity],
        ),
    };
    let dial = dial_name(req.responder.name.as_ref(), &v.responder.names);
    let revoked = Arc::new(req.revoked_leaves());
    let mut initiator_accepts = req.policy(r_roles, &req.responder.name, &revoked);
    if dial.is_none() && req.responder.name.is_none() {
        // Nothing to dial by (a workload with URI names only): the initiator
        // expects the identity the responder presents, as the static verdict
        // checks no name either, instead of the placeholder it dials.
        let own: Vec<PeerName> = v
            .responder
            .names
            .iter()
            .filter_map(|n| n.uri().map(|u| PeerName::Uri(u.to_string())))
            .collect();
        initiator_accepts = initiator_accepts.names(own);
    }
    let report = Handshake {
        initiator: Identity {
            chain: req.initiator.chain.clone(),
            key: keys.initiator.clone_key(),
        },
        responder: Identity {
            chain: req.responder.chain.clone(),
            key: keys.responder.clone_key(),
        },
        initiator_accepts,
        responder_accepts: req.policy(i_roles, &req.initiator.name, &revoked),
        server_name: dial.unwrap_or_else(|| {
            ServerName::try_from("responder.invalid").expect("a valid DNS name")
        }),
        at: req.at,
        timeout: keys.timeout,
    }
    .run();
    if !report.ok {
        v.reasons
            .push(format!("handshake failed: {}", report.outcome));
        v.valid = false;
    }
    v.handshake = Some(report);
    v
}

/// The name the initiator dials: the given responder name, else its first DNS
/// name or IP address; `None` when there is none (entities and URI-only
/// workloads have no host name).
fn dial_name(given: Option<&PeerName>, names: &[PresentedName]) -> Option<ServerName<'static>> {
    let given = given.and_then(|n| match n {
        PeerName::Dns(d) => ServerName::try_from(d.clone()).ok(),
        PeerName::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
        // Email and URI names are checked by the verifier, not dialled.
        PeerName::Email(_) | PeerName::Uri(_) => None,
    });
    let from_cert = names.iter().find_map(|n| match n {
        PresentedName::Dns(d) => ServerName::try_from(d.clone()).ok(),
        PresentedName::Ip(ip) => Some(ServerName::IpAddress((*ip).into())),
        _ => None,
    });
    given.or(from_cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_serialise_as_their_kebab_case_names() {
        for c in Connection::ALL {
            let p = PairConnection::from(c);
            assert_eq!(p.connection(), Some(c));
            assert_eq!(p.to_string(), c.as_str());
            assert_eq!(serde_json::to_value(p).unwrap(), c.as_str());
        }
        assert_eq!(
            serde_json::to_value(PairConnection::Ambiguous).unwrap(),
            "ambiguous"
        );
        assert_eq!(PairConnection::Ambiguous.connection(), None);
    }

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
