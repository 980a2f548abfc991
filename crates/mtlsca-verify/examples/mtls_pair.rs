//! A tiny mTLS server and client on loopback that apply the draft with this
//! crate's rustls verifiers alone: the responder accepts server-to-server
//! links, so it takes *device* certificates (serverAuth only) from initiators —
//! which a stock rustls client-certificate verifier refuses, since it wants
//! clientAuth — and refuses a dual-EKU certificate (serverAuth and clientAuth:
//! ambiguous under the draft) and a person's certificate for the same link.
//!
//! It makes its own throw-away hierarchy (root, EKU-constrained issuing CAs,
//! devices, a person, and a dual-EKU leaf straight from the root) in memory
//! with rcgen:
//!
//!     cargo run -p mtlsca-verify --example mtls_pair
//!
//! `cargo test -p mtlsca-verify --example mtls_pair` runs it and checks the
//! outcome (device accepted, dual-EKU and person refused).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use mtlsca_verify::role::Connection;
use mtlsca_verify::verify::rustls_verifiers::{
    describe_tls_error, DraftClientCertVerifier, DraftPolicy, DraftServerCertVerifier,
};
use mtlsca_verify::verify::PeerName;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use time::{Duration as Span, OffsetDateTime};

type Fail = Box<dyn std::error::Error>;

/// A certificate with its key.
struct Party {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn params(cn: &str, serial: u8, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(SerialNumber::from_slice(&[
        0x40, serial, 0x17, 0x2a, 0x5c, 0x01, 0x99, 0x03,
    ]));
    p.not_before = now - Span::hours(1);
    p.not_after = now + Span::days(30);
    p.use_authority_key_identifier_extension = true;
    p
}

fn ca_params(
    cn: &str,
    serial: u8,
    now: OffsetDateTime,
    eku: Option<ExtendedKeyUsagePurpose>,
) -> CertificateParams {
    let mut p = params(cn, serial, now);
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(if eku.is_some() {
        0
    } else {
        1
    }));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.extended_key_usages = eku.into_iter().collect();
    p
}

fn leaf(
    cn: &str,
    serial: u8,
    san: SanType,
    ekus: &[ExtendedKeyUsagePurpose],
    issuer: &Issuer<'_, KeyPair>,
    issuer_der: &CertificateDer<'static>,
    now: OffsetDateTime,
) -> Result<Party, Fail> {
    let mut p = params(cn, serial, now);
    p.subject_alt_names = vec![san];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = ekus.to_vec();
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok(Party {
        chain: vec![cert.der().clone(), issuer_der.clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The responder: one connection, accepting initiators the policy allows.
fn respond(listener: TcpListener, me: Party, accepts: DraftPolicy) -> Result<String, Fail> {
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(DraftClientCertVerifier::new(accepts)))
            .with_single_cert(me.chain, me.key)?;
    let (mut sock, _) = listener.accept()?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = ServerConnection::new(Arc::new(config))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    conn.writer().write_all(b"hello, device")?;
    conn.send_close_notify();
    conn.complete_io(&mut sock)?;
    Ok("accepted the initiator".into())
}

/// The initiator: connect, authenticate, read the greeting.
fn initiate(port: u16, me: Party, accepts: DraftPolicy) -> Result<String, Fail> {
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DraftServerCertVerifier::new(accepts)))
            .with_client_auth_cert(me.chain, me.key)?;
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut conn =
        ClientConnection::new(Arc::new(config), ServerName::try_from("db.example.test")?)?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut greeting = String::new();
    tls.read_to_string(&mut greeting)?;
    Ok(greeting)
}

/// One link: the responder in a thread, the initiator here; whether the
/// responder accepted the initiator.
fn link(
    label: &str,
    initiator: Party,
    responder: Party,
    roots: &[CertificateDer<'static>],
) -> Result<bool, Fail> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    // The responder of server-to-server links accepts device initiators only.
    let responder_accepts =
        DraftPolicy::new(roots.to_vec()).for_initiators_of(Connection::ServerToServer);
    // The initiator wants a device responder named db.example.test.
    let initiator_accepts = DraftPolicy::new(roots.to_vec())
        .for_responders_of(Connection::ServerToServer)
        .names(vec![PeerName::Dns("db.example.test".into())]);
    let server = std::thread::spawn(move || {
        respond(listener, responder, responder_accepts).map_err(|e| describe_tls_error(e.as_ref()))
    });
    let client = initiate(port, initiator, initiator_accepts);
    let server = server.join().map_err(|_| "responder thread panicked")?;
    Ok(match (server, client) {
        (Ok(s), Ok(c)) => {
            println!("{label}: responder {s}; initiator read {c:?}");
            true
        }
        (Err(s), _) => {
            println!("{label}: refused by the responder: {s}");
            false
        }
        (Ok(_), Err(c)) => {
            println!(
                "{label}: the initiator failed: {}",
                describe_tls_error(c.as_ref())
            );
            false
        }
    })
}

/// The three links; whether each initiator was accepted (device, dual-EKU, person).
fn run() -> Result<[bool; 3], Fail> {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate()?;
    let root_params = ca_params("Example Root CA", 1, now, None);
    let root = root_params.self_signed(&root_key)?;
    let root_issuer = Issuer::new(root_params, root_key);

    let issuing = |cn: &str,
                   serial: u8,
                   eku|
     -> Result<(Issuer<'static, KeyPair>, CertificateDer<'static>), Fail> {
        let key = KeyPair::generate()?;
        let p = ca_params(cn, serial, now, Some(eku));
        let cert = p.signed_by(&key, &root_issuer)?;
        Ok((Issuer::new(p, key), cert.der().clone()))
    };
    let (device_ca, device_ca_der) =
        issuing("Example Device CA", 2, ExtendedKeyUsagePurpose::ServerAuth)?;
    let (entity_ca, entity_ca_der) =
        issuing("Example Entity CA", 3, ExtendedKeyUsagePurpose::ClientAuth)?;

    let dns = |n: &str| -> Result<SanType, Fail> { Ok(SanType::DnsName(n.try_into()?)) };
    let device = |cn: &str, serial: u8| -> Result<Party, Fail> {
        leaf(
            cn,
            serial,
            dns(cn)?,
            &[ExtendedKeyUsagePurpose::ServerAuth],
            &device_ca,
            &device_ca_der,
            now,
        )
    };
    let person = leaf(
        "Alice",
        6,
        SanType::Rfc822Name("alice@example.test".try_into()?),
        &[ExtendedKeyUsagePurpose::ClientAuth],
        &entity_ca,
        &entity_ca_der,
        now,
    )?;
    // Both EKUs, from the root (whose certificate restricts no EKU): what
    // public CAs issued until 2026, and what the draft calls ambiguous.
    let dual = leaf(
        "legacy.example.test",
        8,
        dns("legacy.example.test")?,
        &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        &root_issuer,
        root.der(),
        now,
    )?;
    let roots = vec![root.der().clone()];

    println!("server-to-server under the draft: the responder accepts device certificates from initiators\n");
    let device_link = link(
        "device app.example.test -> device db.example.test",
        device("app.example.test", 4)?,
        device("db.example.test", 5)?,
        &roots,
    )?;
    let dual_link = link(
        "dual-EKU legacy         -> device db.example.test",
        dual,
        device("db.example.test", 9)?,
        &roots,
    )?;
    let person_link = link(
        "person Alice            -> device db.example.test",
        person,
        device("db.example.test", 7)?,
        &roots,
    )?;
    Ok([device_link, dual_link, person_link])
}

fn main() -> Result<(), Fail> {
    let accepted = run()?;
    if accepted != [true, false, false] {
        return Err(format!(
            "unexpected outcome (device, dual-EKU, person accepted): {accepted:?}"
        )
        .into());
    }
    Ok(())
}

#[test]
fn a_device_initiator_is_accepted_and_dual_eku_and_person_ones_are_refused() {
    assert_eq!(run().unwrap(), [true, false, false]);
}
