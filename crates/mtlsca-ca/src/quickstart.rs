//! The quickstart use case: a demo CA in a directory, two device certificates and
//! one person certificate issued through the engine, and both pairs verified as
//! the draft reads them — with a real TLS 1.3 handshake over loopback. The CLI
//! only renders what is reported here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::ca::{self, CaKind, InitOptions};
use crate::error::Result;
use crate::issue::{IssuanceRequest, Issued, Issuer, KeySource, Output};
use crate::key::KeyType;
use crate::policy::RequestedContent;
use crate::role::Connection;
use crate::rules::Origin;
use crate::store::revocation::StoreRevocation;
use crate::store::Store;
use crate::verify::{
    self, load, HandshakeKeys, PairParty, PairRequest, PairVerdict, RevocationSource,
};

/// How long each loopback handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the quickstart reports as it goes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A numbered step begins.
    Step {
        /// Its number, from 1.
        n: u32,
        /// What it does.
        text: String,
    },
    /// The CA exists.
    CaCreated {
        /// Its directory.
        ca_dir: &'a Path,
    },
    /// A certificate was issued.
    Issued(&'a Issued),
    /// A pair was verified.
    Pair {
        /// The initiator's chain file.
        initiator: &'a Path,
        /// The responder's chain file.
        responder: &'a Path,
        /// The verdict.
        verdict: &'a PairVerdict,
    },
}

/// What the quickstart made.
#[derive(Debug)]
pub struct Quickstart {
    /// The demo directory.
    pub dir: PathBuf,
    /// The CA inside it.
    pub ca_dir: PathBuf,
    /// The three certificates.
    pub issued: Vec<Issued>,
    /// The two pair verdicts.
    pub pairs: Vec<PairVerdict>,
}

impl Quickstart {
    /// Whether both pairs verified.
    pub fn valid(&self) -> bool {
        self.pairs.iter().all(|p| p.valid)
    }
}

/// The certificates the demo issues: (profile, file stem, content, what).
fn plans() -> [(&'static str, &'static str, RequestedContent, &'static str); 3] {
    [
        (
            "device",
            "web",
            RequestedContent {
                dns: vec!["web.quickstart.internal".into()],
                ip: vec!["127.0.0.1".into()],
                ..Default::default()
            },
            "a device certificate for web.quickstart.internal (serverAuth)",
        ),
        (
            "device",
            "api",
            RequestedContent {
                dns: vec!["api.quickstart.internal".into()],
                ..Default::default()
            },
            "a second device certificate for api.quickstart.internal (serverAuth)",
        ),
        (
            "person",
            "alice",
            RequestedContent {
                cn: Some("Alice Example".into()),
                email: vec!["alice@quickstart.example".into()],
                ..Default::default()
            },
            "a person certificate for Alice Example (clientAuth)",
        ),
    ]
}

/// Build the demo in `dir` (which must not hold a CA), reporting each step.
pub fn run(
    dir: &Path,
    lock_timeout: Duration,
    now: OffsetDateTime,
    report: &mut dyn FnMut(Event<'_>),
) -> Result<Quickstart> {
    let ca_dir = dir.join("ca");
    report(Event::Step {
        n: 1,
        text: format!("create a CA in {}", ca_dir.display()),
    });
    let ca = ca::init(
        &ca_dir,
        &InitOptions {
            name: "Quickstart".into(),
            key_type: KeyType::EcdsaP256,
            permit_dns: vec![],
            permit_ip: vec![],
            permit_uri: vec![],
        },
        now,
    )?;
    report(Event::CaCreated { ca_dir: &ca_dir });

    let store = Store::open(&ca_dir, lock_timeout)?;
    let issuer = Issuer::new(&ca, &store)?;
    let mut issued = Vec::new();
    for (i, (profile, file, content, what)) in plans().into_iter().enumerate() {
        report(Event::Step {
            n: 2 + i as u32,
            text: format!("issue {what}"),
        });
        let req = IssuanceRequest {
            profile: profile.into(),
            content,
            key: KeySource::Generate(None),
            request_id: Some(format!("quickstart-{file}")),
            output: Output::Prefix(dir.join(file)),
            origin: Origin::Arguments,
            replaces: None,
        };
        let out = issuer.issue(&req, now)?;
        report(Event::Issued(&out));
        issued.push(out);
    }
    drop(issuer);

    // Both pairs, through the verifier and a real TLS 1.3 handshake on loopback;
    // the CA's store is the revocation source.
    let anchors = vec![CertificateDer::from(ca.cert_der(CaKind::Root)?)];
    let intermediates = vec![
        CertificateDer::from(ca.cert_der(CaKind::Device)?),
        CertificateDer::from(ca.cert_der(CaKind::Entity)?),
    ];
    let revocation = StoreRevocation::new(store);
    let pairs_to_check = [
        (
            "web",
            "api",
            Connection::ServerToServer,
            "web -> api: two devices, a server-to-server link",
        ),
        (
            "alice",
            "web",
            Connection::ClientToServer,
            "alice -> web: a person to a device, a client-to-server link",
        ),
    ];
    let mut pairs = Vec::new();
    for (n, (initiator, responder, expect, what)) in pairs_to_check.into_iter().enumerate() {
        report(Event::Step {
            n: 5 + n as u32,
            text: format!("verify the pair {what}, with a TLS 1.3 handshake"),
        });
        let i_file = dir.join(format!("{initiator}.chain.pem"));
        let r_file = dir.join(format!("{responder}.chain.pem"));
        let party = |f: &Path| -> Result<PairParty> {
            Ok(PairParty {
                chain: load::certs(f, "certificate")?,
                name: None,
            })
        };
        let req = PairRequest {
            initiator: party(&i_file)?,
            responder: party(&r_file)?,
            anchors: anchors.clone(),
            intermediates: intermediates.clone(),
            crls: vec![],
            revocation: vec![&revocation as &dyn RevocationSource],
            expect: Some(expect),
            at: now,
            handshake: Some(HandshakeKeys {
                initiator: load::private_key(&dir.join(format!("{initiator}.key")), "key")?,
                responder: load::private_key(&dir.join(format!("{responder}.key")), "key")?,
                timeout: HANDSHAKE_TIMEOUT,
            }),
        };
        let verdict = verify::check_pair(req);
        report(Event::Pair {
            initiator: &i_file,
            responder: &r_file,
            verdict: &verdict,
        });
        pairs.push(verdict);
    }
    Ok(Quickstart {
        dir: dir.to_path_buf(),
        ca_dir,
        issued,
        pairs,
    })
}
