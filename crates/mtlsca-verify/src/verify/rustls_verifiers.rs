//! rustls verifiers that apply the draft, for relying parties.
//!
//! A responder (TLS server) uses [`DraftClientCertVerifier`] to decide which
//! initiators it accepts: for a server-to-server link, devices (serverAuth
//! certificates) — which a classic rustls `WebPkiClientVerifier` refuses because
//! it wants clientAuth — and nothing ambiguous, no-EKU or of the wrong role. An
//! initiator (TLS client) uses [`DraftServerCertVerifier`] to decide which
//! responders it accepts. Both validate the chain with the same code as
//! `mtlsca verify cert --role`, optionally pin the peer's names, and verify
//! handshake signatures with the ring provider.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mtlsca_verify::role::Connection;
//! use mtlsca_verify::verify::rustls_verifiers::{DraftClientCertVerifier, DraftPolicy};
//! # fn roots() -> Vec<rustls_pki_types::CertificateDer<'static>> { vec![] }
//! // A responder of server-to-server links: accepts device certificates only.
//! let policy = DraftPolicy::new(roots()).for_initiators_of(Connection::ServerToServer);
//! let verifier = Arc::new(DraftClientCertVerifier::new(policy));
//! # let _ = verifier;
//! ```

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::chain::{self, NameMatch};
use super::{
    verify_cert, Finding, PeerName, RevocationSource, Severity, Trust, Usage, VerifyOptions,
};
use crate::inspect::{self, CertFacts, PresentedName};
use crate::role::{CertClass, Connection, Eku, NameKind, Role};
use crate::rules::{self, Rule};

/// Why a verifier refused a peer: the plain-sentence reasons of the verdict.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The text of an error from a TLS connection: a [`Refusal`] of these verifiers
/// comes out as its plain reasons (also from inside an `io::Error`, as
/// `complete_io` returns it), anything else as rustls says it.
pub fn describe_tls_error(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if let Some(inner) = io.get_ref() {
            return describe_tls_error(inner);
        }
    }
    match e.downcast_ref::<rustls::Error>() {
        Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) => {
            inner.to_string()
        }
        _ => e.to_string(),
    }
}

fn refuse(msg: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(msg)))))
}

/// Which peers one end accepts under the draft.
#[derive(Clone)]
pub struct DraftPolicy {
    roots: Vec<CertificateDer<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    accept: Vec<Role>,
    names: Vec<PeerName>,
    revocation: Option<Arc<dyn RevocationSource + Send + Sync>>,
    strict: bool,
}

impl std::fmt::Debug for DraftPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DraftPolicy")
            .field("roots", &self.roots.len())
            .field("accept", &self.accept)
            .field("names", &self.names)
            .finish()
    }
}

impl DraftPolicy {
    /// Peers chaining to `roots`, of either role (devices and entities), any name.
    pub fn new(roots: Vec<CertificateDer<'static>>) -> DraftPolicy {
        DraftPolicy {
            roots,
            intermediates: vec![],
            crls: vec![],
            accept: vec![Role::Device, Role::Entity],
            names: vec![],
            revocation: None,
            strict: false,
        }
    }

    /// Refuse peers whose path has findings too: the verifier's (issuer-side
    /// profile rules, trust anchors included, as `verify --strict` reports
    /// them) and the draft's issuer rules on the leaf ([`draft_findings`]:
    /// names of a kind its role does not carry or no name that identifies it,
    /// an EKU of the other role, a leaf signed by a root directly).
    /// Each is a certificate only a CA key holder could make, and none that
    /// mtlsca issues. Off by default: the peers TLS stacks accept are
    /// accepted, and [`DraftPolicy::judge`] says what they break.
    pub fn strict(mut self, strict: bool) -> DraftPolicy {
        self.strict = strict;
        self
    }

    /// Accept only peers of these roles.
    pub fn accept(mut self, roles: &[Role]) -> DraftPolicy {
        self.accept = roles.to_vec();
        self
    }

    /// As the responder of `connection`: accept initiators of its initiator role.
    pub fn for_initiators_of(self, connection: Connection) -> DraftPolicy {
        self.accept(&[connection.roles().0])
    }

    /// As the initiator of `connection`: accept responders of its responder role.
    pub fn for_responders_of(self, connection: Connection) -> DraftPolicy {
        self.accept(&[connection.roles().1])
    }

    /// Accept only peers valid for one of these names. An initiator's names are
    /// its identity: a name of the list must be one its certificate presents,
    /// exactly (a wildcard certificate matches no entry). A device responder
    /// is matched as the name a client dials (RFC 6125: a wildcard matches one
    /// label), and without names, the name the client dialled is checked. An
    /// entity responder is matched as an identity, and without names it is
    /// accepted whatever it names: a client that may meet one must give the
    /// names that identify it (its email or URI), as `proxy client` does.
    pub fn names(mut self, names: Vec<PeerName>) -> DraftPolicy {
        self.names = names;
        self
    }

    /// Extra intermediates to build paths with (beside those the peer sends).
    pub fn intermediates(mut self, certs: Vec<CertificateDer<'static>>) -> DraftPolicy {
        self.intermediates = certs;
        self
    }

    /// Check revocation against these CRLs.
    pub fn crls(mut self, crls: Vec<CertificateRevocationListDer<'static>>) -> DraftPolicy {
        self.crls = crls;
        self
    }

    /// Also ask this revocation source (the CA's store, for instance).
    pub fn revocation(mut self, source: Arc<dyn RevocationSource + Send + Sync>) -> DraftPolicy {
        self.revocation = Some(source);
        self
    }

    /// Check a presented chain: `connected_to` is the name a client dialled
    /// when the peer is a responder, `None` for an initiator (see
    /// [`DraftPolicy::judge`]).
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        connected_to: Option<PeerName>,
    ) -> Result<CertClass, String> {
        let side = match connected_to {
            Some(name) => PeerSide::Responder(Some(name)),
            None => PeerSide::Initiator,
        };
        self.judge(end_entity, intermediates, now, side)
            .map(|j| j.class)
    }

    /// Judge a presented chain from the `side` it comes from: `Err` with the
    /// reasons when the peer is refused, else its class and the findings it
    /// was admitted with (none when the policy is strict).
    pub fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        side: PeerSide,
    ) -> Result<Judged, String> {
        let cert = inspect::parse_der(end_entity.as_ref())
            .map_err(|e| format!("peer certificate cannot be read: {e}"))?;
        let facts = CertFacts::of(&cert);
        let Some(role) = facts.role.role().filter(|r| self.accept.contains(r)) else {
            let wanted: Vec<&str> = self.accept.iter().map(|r| r.as_str()).collect();
            let why = match facts.role.role() {
                Some(_) => String::new(),
                None => format!(
                    " ({})",
                    chain::draft_eku(&facts, self.accept.first().copied().unwrap_or(Role::Device))
                        .unwrap_or_default()
                ),
            };
            return Err(format!(
                "peer certificate is {}{why}; this end accepts {} certificates only",
                facts.role,
                wanted.join(" or ")
            ));
        };
        let mut chain_certs: Vec<CertificateDer<'_>> = intermediates.to_vec();
        chain_certs.extend(self.intermediates.iter().cloned());
        let revocation: Vec<&dyn RevocationSource> = self
            .revocation
            .as_deref()
            .map(|r| r as &dyn RevocationSource)
            .into_iter()
            .collect();
        let trust = Trust {
            anchors: self.roots.clone(),
            intermediates: chain_certs,
            crls: self.crls.clone(),
            revocation,
        };
        let at = OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut v = verify_cert(
            end_entity,
            &trust,
            &VerifyOptions {
                usage: Usage::Role(role),
                name: None,
                at,
            },
        );
        if v.valid {
            for f in draft_findings(&facts, role, self.signed_by_a_root(&v.chain)) {
                if !v.findings.contains(&f) {
                    v.findings.push(f);
                }
            }
        }
        let v = if self.strict { v.strict() } else { v };
        if !v.valid {
            return Err(v.reasons.join("; "));
        }
        // The names to check, and how: an initiator's and an entity's names
        // are identities; a device responder answers for the name dialled.
        let mode = match side {
            PeerSide::Responder(_) if role == Role::Device => NameMatch::Dialled,
            _ => NameMatch::Identity,
        };
        let names: Vec<PeerName> = match side {
            PeerSide::Responder(Some(host)) if self.names.is_empty() && role == Role::Device => {
                vec![host]
            }
            _ => self.names.clone(),
        };
        if !names.is_empty()
            && !names
                .iter()
                .any(|n| chain::name_matches(end_entity, &facts, n, mode).is_ok())
        {
            let want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let how = match mode {
                NameMatch::Identity
                    if facts.names.iter().any(|n| n.wildcard_parent().is_some()) =>
                {
                    " (a wildcard name is not the identity of one peer)"
                }
                _ => "",
            };
            return Err(format!(
                "peer certificate is not valid for {} (it names {}){how}",
                want.join(" or "),
                inspect::joined(&facts.names, ", ")
            ));
        }
        Ok(Judged {
            class: facts.role,
            findings: v.findings,
        })
    }
}

impl DraftPolicy {
    /// Whether a validated path (subjects, leaf to anchor) is a leaf signed
    /// by a root directly: two certificates, the anchor self-issued. (An
    /// issuing CA trusted as the anchor is not a root.)
    fn signed_by_a_root(&self, path: &[String]) -> bool {
        let [_, anchor] = path else {
            return false;
        };
        self.roots.iter().any(|r| {
            inspect::parse_der(r.as_ref()).is_ok_and(|c| {
                let f = CertFacts::of(&c);
                f.subject == *anchor && f.subject == f.issuer
            })
        })
    }
}

/// Which end of a connection a judged peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerSide {
    /// An initiator (TLS client): its names are identities, matched exactly.
    Initiator,
    /// A responder (TLS server), with the name the client dialled (checked
    /// for a device when the policy names nobody).
    Responder(Option<PeerName>),
}

impl PeerSide {
    /// A responder dialled as `server_name`.
    pub fn responder(server_name: &ServerName<'_>) -> PeerSide {
        PeerSide::Responder(match server_name {
            ServerName::DnsName(d) => Some(PeerName::Dns(d.as_ref().to_string())),
            ServerName::IpAddress(ip) => Some(PeerName::Ip(std::net::IpAddr::from(*ip))),
            _ => None,
        })
    }
}

/// A peer a [`DraftPolicy`] admits.
#[derive(Debug, Clone)]
pub struct Judged {
    /// Device or entity.
    pub class: CertClass,
    /// The findings it was admitted with: the verifier's and the draft's
    /// issuer rules ([`draft_findings`]). Always empty under a strict policy.
    pub findings: Vec<Finding>,
}

/// The stable code of a leaf signed by a root directly.
pub const LEAF_ISSUED_BY_ROOT: &str = "leaf-issued-by-root";

/// The draft's issuer rules on a validated leaf of `role`, `signed_by_root`
/// or by an issuing CA: names of a kind the role does not carry or of a type
/// mtlsca never issues, no name that identifies it, an EKU of the other role,
/// a leaf signed by a root directly. Each
/// finding's code is the rulebook's (`name-kind-for-role`, `no-identity`,
/// `name-type-unsupported`, `eku-wrong-role`) or [`LEAF_ISSUED_BY_ROOT`].
pub fn draft_findings(f: &CertFacts, role: Role, signed_by_root: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |code: &'static str, message: String| {
        out.push(Finding {
            code,
            severity: Severity::Error,
            message,
        })
    };
    let listed = |names: Vec<&PresentedName>| inspect::joined(&names, ", ");
    let wrong: Vec<&PresentedName> = f
        .names
        .iter()
        .filter(|n| n.kind().is_some_and(|k| !rules::name_kind_allowed(role, k)))
        .collect();
    if !wrong.is_empty() {
        add(
            Rule::NameKindForRole.code(),
            format!(
                "certificate is {} carrying names of the other role ({}): an issuer broke the draft's name rule",
                match role {
                    Role::Device => "a device",
                    Role::Entity => "an entity",
                },
                listed(wrong)
            ),
        );
    }
    let unsupported: Vec<&PresentedName> = f.names.iter().filter(|n| n.kind().is_none()).collect();
    if !unsupported.is_empty() {
        add(
            Rule::NameTypeUnsupported.code(),
            format!(
                "certificate carries names mtlsca never issues ({})",
                listed(unsupported)
            ),
        );
    }
    let kinds = |k: &[NameKind]| {
        f.names
            .iter()
            .any(|n| n.kind().is_some_and(|x| k.contains(&x)))
    };
    let identified = match role {
        Role::Device => kinds(rules::kind_rules(Role::Device, None).identity),
        Role::Entity => kinds(&[NameKind::Email]) || f.has_org,
    };
    if !identified {
        add(
            Rule::NoIdentity.code(),
            match role {
                Role::Device => "certificate is a device without a DNS, IP or URI name".into(),
                Role::Entity => "certificate is an entity with neither an email address (a person) nor an organizationName (an organisation)".into(),
            },
        );
    }
    let ekus: Vec<Eku> = f.purposes().iter().filter_map(|p| p.known()).collect();
    if let Some((rule, why)) = rules::eku_conflict(role, &ekus) {
        add(rule.code(), format!("certificate: {why}"));
    }
    if signed_by_root {
        add(
            LEAF_ISSUED_BY_ROOT,
            "certificate is signed by the root itself, not by an issuing CA: a root's key signs CAs only, as in mtlsca's hierarchy".into(),
        );
    }
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// For a responder (TLS server): which initiators it accepts.
#[derive(Debug)]
pub struct DraftClientCertVerifier {
    policy: DraftPolicy,
    provider: Arc<CryptoProvider>,
    hints: Vec<DistinguishedName>,
}

impl DraftClientCertVerifier {
    /// A client-certificate verifier (for a TLS server) applying `policy`.
    pub fn new(policy: DraftPolicy) -> DraftClientCertVerifier {
        let hints = policy
            .roots
            .iter()
            .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
            .map(|a| DistinguishedName::in_sequence(a.subject.as_ref()))
            .collect();
        DraftClientCertVerifier {
            policy,
            provider: provider(),
            hints,
        }
    }
}

impl ClientCertVerifier for DraftClientCertVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.policy
            .judge(end_entity, intermediates, now, PeerSide::Initiator)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|r| refuse(format!("initiator refused: {r}")))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// For an initiator (TLS client): which responders it accepts.
#[derive(Debug)]
pub struct DraftServerCertVerifier {
    policy: DraftPolicy,
    provider: Arc<CryptoProvider>,
}

impl DraftServerCertVerifier {
    /// A server-certificate verifier (for a TLS client) applying `policy`.
    pub fn new(policy: DraftPolicy) -> DraftServerCertVerifier {
        DraftServerCertVerifier {
            policy,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for DraftServerCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.policy
            .judge(
                end_entity,
                intermediates,
                now,
                PeerSide::responder(server_name),
            )
            .map(|_| ServerCertVerified::assertion())
            .map_err(|r| refuse(format!("responder refused: {r}")))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
