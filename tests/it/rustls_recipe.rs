//! The rustls recipe of docs/relying-parties.md ("rustls (mtlsca as a
//! library)"), compiled and run: the block between the markers below is that
//! file's, verbatim (a test checks it), and the configurations it builds meet
//! on loopback: a device named app.corp.internal is accepted by a device
//! responder, another name, a person and a revoked device are refused.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};

use crate::common::Env;

type Configs = (rustls::ServerConfig, rustls::ClientConfig);

#[rustfmt::skip]
fn doc_recipe(
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    db_chain: Vec<CertificateDer<'static>>,
    db_key: PrivateKeyDer<'static>,
    app_chain: Vec<CertificateDer<'static>>,
    app_key: PrivateKeyDer<'static>,
) -> Result<Configs, rustls::Error> {
    // docs rustls recipe begins
    use std::sync::Arc;
    use mtlsca::role::Connection;
    use mtlsca::verify::PeerName;
    use mtlsca::verify::rustls_verifiers::{DraftClientCertVerifier, DraftPolicy, DraftServerCertVerifier};

    // Responder of server-to-server links: device initiators only, named app.corp.internal.
    let accept_initiators = DraftPolicy::new(roots.clone())
        .for_initiators_of(Connection::ServerToServer)
        .names(vec![PeerName::Dns("app.corp.internal".into())])
        .crls(crls.clone());
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(DraftClientCertVerifier::new(accept_initiators)))
        .with_single_cert(db_chain, db_key)?;

    // Initiator: a device responder, checked against the name it dials.
    let accept_responders = DraftPolicy::new(roots).for_responders_of(Connection::ServerToServer);
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous() // a custom verifier, not "no verification"
        .with_custom_certificate_verifier(Arc::new(DraftServerCertVerifier::new(accept_responders)))
        .with_client_auth_cert(app_chain, app_key)?;
    // docs rustls recipe ends
    Ok((server, client))
}

#[test]
fn the_docs_show_this_recipe_verbatim() {
    let me = include_str!("rustls_recipe.rs");
    let begins = "// docs rustls recipe begins\n";
    let start = me.find(begins).expect("marker") + begins.len();
    let end = me.find("    // docs rustls recipe ends").expect("marker");
    let block: String = me[start..end]
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let doc = "docs/relying-parties.md";
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).expect(doc);
    assert!(
        text.contains(&format!("```rust\n{block}```\n")),
        "the rustls block of {doc} differs from tests/it/rustls_recipe.rs:\n{block}"
    );
}

/// One connection: `who` (NAME.chain.pem, NAME.key) initiates to db with the
/// recipe's configurations; Ok after an echoed byte, else the responder's
/// reason (or the initiator's).
fn link(env: &Env, who: &str) -> Result<(), String> {
    use mtlsca::verify::load;
    let ca = env.ca_dir();
    let roots = load::certs(&ca.join("root.pem"), "root").unwrap();
    let mut crls = Vec::new();
    for c in ["root", "device", "entity"] {
        crls.extend(load::crls(&ca.join(format!("crl/{c}.crl"))).unwrap());
    }
    let chain = |n: &str| load::certs(&env.path(&format!("{n}.chain.pem")), "chain").unwrap();
    let key = |n: &str| load::private_key(&env.path(&format!("{n}.key")), "key").unwrap();
    let (server, client) =
        doc_recipe(roots, crls, chain("db"), key("db"), chain(who), key(who)).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let srv = std::thread::spawn(move || {
        let (tcp, _) = l.accept().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(server)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut b = [0u8; 1];
        tls.read_exact(&mut b)
            .and_then(|_| tls.write_all(&b))
            .map_err(|e| mtlsca::verify::rustls_verifiers::describe_tls_error(&e))
    });
    let name = ServerName::try_from("db.corp.internal").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(client), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let r = tls
        .write_all(b"x")
        .and_then(|_| {
            let mut b = [0u8; 1];
            tls.read_exact(&mut b)
        })
        .map_err(|e| mtlsca::verify::rustls_verifiers::describe_tls_error(&e));
    drop(tls);
    // The responder's reason, else the initiator's.
    srv.join().unwrap().and(r)
}

#[test]
fn the_recipe_accepts_the_named_device_only() {
    let env = Env::with_ca();
    for (dns, out) in [
        ("db.corp.internal", "db"),
        ("app.corp.internal", "app"),
        ("other.corp.internal", "other"),
        ("app.corp.internal", "gone"),
    ] {
        env.ok(&["issue", "device", "--dns", dns, "--out", out]);
    }
    env.issue_alice();
    let gone = env.json(&["show", "gone.pem"]);
    let serial = gone["serial"].as_str().expect("serial").to_string();
    env.ok(&["revoke", &serial]);
    env.ok(&["crl"]);
    assert_eq!(link(&env, "app"), Ok(()));
    for (who, why) in [
        ("other", "app.corp.internal"),
        ("alice", "entity"),
        ("gone", "revoked"),
    ] {
        let e = link(&env, who).expect_err(who);
        assert!(e.contains(why), "{who}: {e}");
    }
}
