//! `mtlsca serve` with ACME (issue 14): a real client (certbot) when installed,
//! and an in-test ACME client (ES256 JWS over rustls) for refusals and hostile input.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use crate::common::{code, free_port, Env, Server};

/// An answer: status, headers (lowercase names), body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub(crate) fn problem(&self) -> String {
        let v = self.json();
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{v}"
        );
        v["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("urn:ietf:params:acme:error:")
            .to_string()
    }
}

/// HTTPS over rustls, trusting the CA's root; one request per connection.
pub(crate) fn https(
    env: &Env,
    port: u16,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> Answer {
    https_from(env, LOOPBACK, port, method, path, ctype, body)
}

/// The address test clients connect from unless they say otherwise.
pub(crate) const LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// [`https`] from the loopback address `from`.
pub(crate) fn https_from(
    env: &Env,
    from: Ipv4Addr,
    port: u16,
    method: &str,
    path: &str,
    ctype: &str,
    body: &[u8],
) -> Answer {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let mut tls = tls_stream_from(env, from, port);
    tls.write_all(&req).unwrap();
    read_answer(tls)
}

/// Send raw request bytes over HTTPS and read the answer.
fn send(env: &Env, port: u16, req: &[u8]) -> Answer {
    let mut tls = tls_stream(env, port);
    tls.write_all(req).unwrap();
    read_answer(tls)
}

/// A TLS connection to the server, trusting the CA's root.
fn tls_stream(env: &Env, port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    tls_stream_from(env, LOOPBACK, port)
}

/// [`tls_stream`] from the loopback address `from`.
pub(crate) fn tls_stream_from(
    env: &Env,
    from: Ipv4Addr,
    port: u16,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let root = std::fs::read_to_string(env.ca_dir().join("root.pem")).unwrap();
    for p in pem::parse_many(&root).unwrap() {
        roots
            .add(rustls_pki_types::CertificateDer::from(p.into_contents()))
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = crate::common::connect_from(from, port);
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Read an answer to the end of the connection.
pub(crate) fn read_answer(
    mut tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> Answer {
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        b = &b[eol + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
    out
}

/// A minimal ACME client: one ES256 account key.
pub(crate) struct Client<'a> {
    pub(crate) env: &'a Env,
    port: u16,
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    rng: ring::rand::SystemRandom,
    pub(crate) kid: Option<String>,
    /// The loopback address it connects from.
    pub(crate) from: Ipv4Addr,
}

impl<'a> Client<'a> {
    pub(crate) fn new(env: &'a Env, server: &Server) -> Client<'a> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Client {
            env,
            port: server.port,
            key,
            pkcs8: pkcs8.as_ref().to_vec(),
            rng,
            kid: None,
            from: LOOPBACK,
        }
    }

    /// A client connecting from the loopback address `from`.
    pub(crate) fn from(mut self, from: Ipv4Addr) -> Client<'a> {
        self.from = from;
        self
    }

    pub(crate) fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn jwk(&self) -> Value {
        let p = self.key.public_key().as_ref();
        json!({"crv": "P-256", "kty": "EC", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
    }

    pub(crate) fn thumbprint(&self) -> String {
        let j = self.jwk();
        let canon = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        B64.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canon.as_bytes(),
        ))
    }

    pub(crate) fn nonce(&self) -> String {
        let a = https_from(
            self.env,
            self.from,
            self.port,
            "HEAD",
            "/acme/new-nonce",
            "text/plain",
            b"",
        );
        a.header("replay-nonce").expect("a nonce").to_string()
    }

    /// A signed body for `url` (None payload: POST-as-GET).
    fn sign(&self, url: &str, payload: Option<&Value>, nonce: &str) -> Vec<u8> {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match &self.kid {
            Some(k) => protected["kid"] = json!(k),
            None => protected["jwk"] = self.jwk(),
        }
        let p = B64.encode(protected.to_string());
        let pl = payload
            .map(|v| B64.encode(v.to_string()))
            .unwrap_or_default();
        let sig = self
            .key
            .sign(&self.rng, format!("{p}.{pl}").as_bytes())
            .unwrap();
        json!({"protected": p, "payload": pl, "signature": B64.encode(sig.as_ref())})
            .to_string()
            .into_bytes()
    }

    pub(crate) fn post(&self, path: &str, payload: Option<&Value>) -> Answer {
        let url = format!("{}{path}", self.base());
        let body = self.sign(&url, payload, &self.nonce());
        self.raw(path, &body)
    }

    fn raw(&self, path: &str, body: &[u8]) -> Answer {
        https_from(
            self.env,
            self.from,
            self.port,
            "POST",
            path,
            "application/jose+json",
            body,
        )
    }

    pub(crate) fn path_of(&self, url: &str) -> String {
        url.strip_prefix(&self.base()).unwrap().to_string()
    }

    /// newAccount; the answer (the client keeps the account's URL on success).
    pub(crate) fn try_register(&mut self) -> Answer {
        let a = self.post(
            "/acme/new-account",
            Some(&json!({"termsOfServiceAgreed": true})),
        );
        if a.status == 201 || a.status == 200 {
            self.kid = Some(a.header("location").unwrap().to_string());
        }
        a
    }

    pub(crate) fn register(&mut self) {
        let a = self.try_register();
        assert!(
            a.status == 201 || a.status == 200,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
    }

    /// newOrder for DNS names; returns the answer.
    pub(crate) fn order(&self, names: &[&str]) -> Answer {
        let ids: Vec<Value> = names
            .iter()
            .map(|n| json!({"type": "dns", "value": n}))
            .collect();
        self.post("/acme/new-order", Some(&json!({"identifiers": ids})))
    }
}

/// A new EAB key for the device profile: its key id and HMAC key.
pub(crate) fn eab_key(env: &Env) -> (String, String) {
    let key = env.json(&["acme", "eab", "create", "--profile", "device"]);
    (
        key["kid"].as_str().unwrap().to_string(),
        key["hmac_key"].as_str().unwrap().to_string(),
    )
}

/// An http-01 responder on loopback answering every request with `body`.
pub(crate) fn responder(body: Arc<Mutex<String>>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            let b = body.lock().unwrap().clone();
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    port
}

/// A CA that permits DNS names under `localhost` and loopback IPs only.
pub(crate) fn constrained_ca() -> Env {
    let env = Env::new();
    env.ok(&[
        "init",
        "--name",
        "ACME Test",
        "--permit-dns",
        "localhost",
        "--permit-ip",
        "127.0.0.0/8",
    ]);
    env
}

/// Drive an order for `localhost` to `ready` (http-01 answered correctly by a
/// responder on loopback); returns the order's answer JSON and its path.
pub(crate) fn ready_order(client: &Client, answer: &Arc<Mutex<String>>) -> (Value, String) {
    let o = client.order(&["localhost"]);
    assert_eq!(o.status, 201, "{}", String::from_utf8_lossy(&o.body));
    let order_path = client.path_of(o.header("location").unwrap());
    let order = o.json();
    let authz = client.post(
        &client.path_of(order["authorizations"][0].as_str().unwrap()),
        None,
    );
    let chall = &authz.json()["challenges"][0];
    let token = chall["token"].as_str().unwrap();
    *answer.lock().unwrap() = format!("{token}.{}", client.thumbprint());
    let c = client.post(
        &client.path_of(chall["url"].as_str().unwrap()),
        Some(&json!({})),
    );
    assert_eq!(c.status, 200, "{}", String::from_utf8_lossy(&c.body));
    let mut last = Value::Null;
    for _ in 0..100 {
        last = client.post(&order_path, None).json();
        if last["status"] != "pending" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (last, order_path)
}

pub(crate) fn csr_der(env: &Env, name: &str, extra: &[&str]) -> Vec<u8> {
    let san = format!("subjectAltName=DNS:{name}");
    let mut out = extra.to_vec();
    out.extend(["-outform", "DER", "-out", "csr.der"]);
    env.openssl_csr("csr.key", &format!("/CN={name}"), &[&san], &out);
    std::fs::read(env.path("csr.der")).unwrap()
}

#[test]
fn serve_presents_a_device_certificate_of_the_ca_and_stops_on_sigterm() {
    let env = constrained_ca();
    let mut server = Server::start(&env, &[]);
    let a = https(
        &env,
        server.port,
        "GET",
        "/acme/directory",
        "text/plain",
        b"",
    );
    assert_eq!(a.status, 200);
    let d = a.json();
    assert_eq!(d["newOrder"], server.url("/acme/new-order"));
    assert_eq!(server.stop(), 0);
    // The server's own certificate is recorded like any other.
    let list = env.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["profile"], "device");
}

#[test]
fn an_entity_profile_is_refused_for_acme() {
    let env = constrained_ca();
    let out = env.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--name",
        "localhost",
        "--acme-profile",
        "person",
    ]);
    assert_eq!(
        crate::common::code(&out),
        2,
        "{}",
        crate::common::text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("entity profile"));
}

#[test]
fn acme_order_outside_the_name_constraints_is_a_rejected_identifier_with_the_rule() {
    let env = constrained_ca();
    let server = Server::start(&env, &[]);
    let mut c = Client::new(&env, &server);
    c.register();
    let a = c.order(&["www.evil.example"]);
    assert_eq!(a.status, 400);
    assert_eq!(a.problem(), "rejectedIdentifier");
    let v = a.json();
    let sub = &v["subproblems"][0];
    assert!(
        sub["rule"].as_str().is_some_and(|r| !r.is_empty()),
        "no rule code: {v}"
    );
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .contains(sub["rule"].as_str().unwrap()));
}

#[test]
fn acme_issues_through_the_engine_and_refuses_client_auth_and_ca_csrs() {
    let env = constrained_ca();
    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let mut server = Server::start(&env, &["--acme-http01-port", &http01]);
    let mut c = Client::new(&env, &server);
    c.register();
    let (order, order_path) = ready_order(&c, &answer);
    assert_eq!(order["status"], "ready", "{order}");
    let finalize = c.path_of(order["finalize"].as_str().unwrap());

    // A CSR asking for clientAuth, then one asking for CA:TRUE: badCSR, nothing issued.
    for extra in [
        ["-addext", "extendedKeyUsage=clientAuth"],
        ["-addext", "basicConstraints=critical,CA:TRUE"],
    ] {
        let csr = csr_der(&env, "localhost", &extra);
        let a = c.post(&finalize, Some(&json!({"csr": B64.encode(&csr)})));
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.problem(), "badCSR");
        assert!(
            a.json()["subproblems"][0]["rule"].is_string(),
            "{}",
            a.json()
        );
    }
    // A CSR for another name than the order's: badCSR.
    let csr = csr_der(&env, "other.localhost", &[]);
    let a = c.post(&finalize, Some(&json!({"csr": B64.encode(&csr)})));
    assert_eq!(a.problem(), "badCSR");

    // A good CSR: a certificate, serverAuth only, chaining to the root.
    let csr = csr_der(&env, "localhost", &[]);
    let a = c.post(&finalize, Some(&json!({"csr": B64.encode(&csr)})));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let order = c.post(&order_path, None).json();
    assert_eq!(order["status"], "valid");
    let cert = c.post(&c.path_of(order["certificate"].as_str().unwrap()), None);
    assert_eq!(
        cert.header("content-type"),
        Some("application/pem-certificate-chain")
    );
    std::fs::write(env.path("chain.pem"), &cert.body).unwrap();
    let blocks = pem::parse_many(&cert.body).unwrap();
    assert_eq!(blocks.len(), 2);
    std::fs::write(env.path("leaf.pem"), pem::encode(&blocks[0])).unwrap();
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "chain.pem",
        "-purpose",
        "sslserver",
        "leaf.pem",
    ]);
    let text = env.x509_text("leaf.pem");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("TLS Web Client Authentication"), "{text}");

    // renewalInfo (ARI): a window in the last third of the lifetime.
    let leaf_der = blocks[0].contents().to_vec();
    let ari = format!("/acme/renewal-info/{}", ari_id(&leaf_der));
    let w = https(&env, server.port, "GET", &ari, "text/plain", b"");
    assert_eq!(w.status, 200, "{}", String::from_utf8_lossy(&w.body));
    assert!(w.header("retry-after").is_some());
    let win = w.json();
    let start = win["suggestedWindow"]["start"]
        .as_str()
        .unwrap()
        .to_string();
    let end = win["suggestedWindow"]["end"].as_str().unwrap().to_string();
    assert!(start < end, "{win}");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(start > now, "{win}");
    let w = https(
        &env,
        server.port,
        "GET",
        "/acme/renewal-info/AAAA.AAAA",
        "text/plain",
        b"",
    );
    assert_eq!(w.status, 404);

    // revokeCert: another account may not; the ordering account may, once.
    let revoke = json!({"certificate": B64.encode(&leaf_der), "reason": 4});
    let mut other = Client::new(&env, &server);
    other.register();
    let a = other.post("/acme/revoke-cert", Some(&revoke));
    assert_eq!(a.problem(), "unauthorized");
    let a = c.post(
        "/acme/revoke-cert",
        Some(&json!({"certificate": B64.encode(&leaf_der), "reason": 7})),
    );
    assert_eq!(a.problem(), "badRevocationReason");
    let a = c.post("/acme/revoke-cert", Some(&revoke));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        c.post("/acme/revoke-cert", Some(&revoke)).problem(),
        "alreadyRevoked"
    );
    // ARI after revocation: a window already past (renew now).
    let win = https(&env, server.port, "GET", &ari, "text/plain", b"").json();
    let end = win["suggestedWindow"]["end"].as_str().unwrap().to_string();
    assert!(end < now && end < start, "{win}");

    assert_eq!(server.stop(), 0);
    // Recorded: the server's own certificate and this one, nothing for the refused CSRs.
    let list = env.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let revoked = env.json(&["list", "--status", "revoked"]);
    assert_eq!(revoked.as_array().unwrap().len(), 1, "{revoked}");
    assert_eq!(
        revoked[0]["revocation"]["reason"], "superseded",
        "{revoked}"
    );
    // The record and its audit entries name the ACME account and order.
    let account = c.kid.as_deref().unwrap().rsplit('/').next().unwrap();
    let rid = revoked[0]["request_id"].as_str().unwrap();
    assert!(
        rid.starts_with(&format!("acme/acct/{account}/order/")),
        "{rid}"
    );
    let audit = env.json(&["audit"]).to_string();
    assert!(audit.contains(account), "{audit}");
}

#[test]
fn acme_hostile_input_gets_the_right_problem_and_nothing_is_issued() {
    let env = constrained_ca();
    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let mut server = Server::start(&env, &["--acme-http01-port", &http01]);
    let mut c = Client::new(&env, &server);

    // Not a JWS.
    let a = c.raw("/acme/new-account", b"{not json");
    assert_eq!((a.status, a.problem().as_str()), (400, "malformed"));
    // Wrong content type.
    let a = https(
        &env,
        server.port,
        "POST",
        "/acme/new-account",
        "application/json",
        b"{}",
    );
    assert_eq!(a.status, 415);
    // A huge body, announced: refused before it is read.
    let head = format!(
        "POST /acme/new-account HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/jose+json\r\nContent-Length: {}\r\n\r\n",
        server.port,
        1 << 30
    );
    let a = send(&env, server.port, head.as_bytes());
    assert_eq!(a.status, 413);
    assert_eq!(a.problem(), "malformed");
    // Signed for another URL.
    let url = format!("{}/acme/new-order", c.base());
    let body = c.sign(&url, Some(&json!({})), &c.nonce());
    let a = c.raw("/acme/new-account", &body);
    assert_eq!(a.problem(), "unauthorized");
    // A replayed nonce.
    let url = format!("{}/acme/new-account", c.base());
    let body = c.sign(
        &url,
        Some(&json!({"termsOfServiceAgreed": true})),
        &c.nonce(),
    );
    assert_eq!(c.raw("/acme/new-account", &body).status, 201);
    let a = c.raw("/acme/new-account", &body);
    assert_eq!(a.problem(), "badNonce");
    // A made-up nonce.
    let body = c.sign(&url, Some(&json!({})), "AAAAAAAAAAAAAAAAAAAAAA");
    assert_eq!(c.raw("/acme/new-account", &body).problem(), "badNonce");
    // An unknown account.
    c.kid = Some(format!("{}/acme/acct/nobody", c.base()));
    assert_eq!(c.order(&["localhost"]).problem(), "accountDoesNotExist");
    // A bad signature (the body altered after signing).
    c.kid = None;
    c.register();
    let url = format!("{}/acme/new-order", c.base());
    let body = c.sign(&url, Some(&json!({"identifiers": []})), &c.nonce());
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["payload"] = json!(
        B64.encode(json!({"identifiers": [{"type": "dns", "value": "localhost"}]}).to_string())
    );
    let a = c.raw("/acme/new-order", v.to_string().as_bytes());
    assert_eq!(a.problem(), "malformed");
    assert!(a.json()["detail"].as_str().unwrap().contains("signature"));

    // The account key as certificate key: badCSR (needs a ready order).
    let (order, _) = ready_order(&c, &answer);
    assert_eq!(order["status"], "ready", "{order}");
    let key_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", c.pkcs8.clone()));
    std::fs::write(env.path("account.key"), key_pem).unwrap();
    env.openssl_ok(&[
        "req",
        "-new",
        "-key",
        "account.key",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-outform",
        "DER",
        "-out",
        "reuse.der",
    ]);
    let csr = std::fs::read(env.path("reuse.der")).unwrap();
    let fin = c.path_of(order["finalize"].as_str().unwrap());
    let a = c.post(&fin, Some(&json!({"csr": B64.encode(&csr)})));
    assert_eq!(a.problem(), "badCSR");
    assert!(a.json()["detail"].as_str().unwrap().contains("account key"));
    // A challenge answered with someone else's key authorization: invalid.
    *answer.lock().unwrap() = "wrong.answer".into();
    let o = c.order(&["localhost"]);
    let order_path = c.path_of(o.header("location").unwrap());
    let authz = c.post(
        &c.path_of(o.json()["authorizations"][0].as_str().unwrap()),
        None,
    );
    let chall = authz.json()["challenges"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    c.post(&c.path_of(&chall), Some(&json!({})));
    let mut status = Value::Null;
    for _ in 0..100 {
        status = c.post(&order_path, None).json()["status"].clone();
        if status != "pending" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, "invalid");
    let authz = c.post(
        &c.path_of(o.json()["authorizations"][0].as_str().unwrap()),
        None,
    );
    assert_eq!(
        authz.json()["challenges"][0]["error"]["type"],
        "urn:ietf:params:acme:error:incorrectResponse"
    );
    // Finalizing an invalid order: orderNotReady.
    let fin = c.path_of(o.json()["finalize"].as_str().unwrap());
    let csr = csr_der(&env, "localhost", &[]);
    let a = c.post(&fin, Some(&json!({"csr": B64.encode(&csr)})));
    assert_eq!(a.problem(), "orderNotReady");

    assert_eq!(server.stop(), 0);
    // Only the server's own certificate.
    assert_eq!(env.store_count(), 1);
}

#[test]
fn acme_require_eab_refuses_an_account_without_binding() {
    let env = constrained_ca();
    let server = Server::start(&env, &["--acme-require-eab"]);
    let d = https(
        &env,
        server.port,
        "GET",
        "/acme/directory",
        "text/plain",
        b"",
    )
    .json();
    assert_eq!(d["meta"]["externalAccountRequired"], true);
    let c = Client::new(&env, &server);
    let a = c.post(
        "/acme/new-account",
        Some(&json!({"termsOfServiceAgreed": true})),
    );
    assert_eq!(a.problem(), "externalAccountRequired");
}

/// certbot (Debian package), standalone http-01 on a loopback port.
#[test]
fn certbot_gets_a_server_auth_certificate_recorded_in_the_store() {
    if Command::new("certbot").arg("--version").output().is_err() {
        eprintln!("skipped: certbot is not installed (apt-get install certbot)");
        return;
    }
    let env = constrained_ca();
    let http01 = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let port = free_port();
    let mut server = Server::start_at(&env, port, &["--acme-http01-port", &http01]);
    let cb = env.path("certbot");
    let out = Command::new("certbot")
        .env("REQUESTS_CA_BUNDLE", env.ca_dir().join("root.pem"))
        .args([
            "certonly",
            "--standalone",
            "--non-interactive",
            "--agree-tos",
            "--register-unsafely-without-email",
            "--server",
            &server.url("/acme/directory"),
            "--http-01-port",
            &http01,
            "--http-01-address",
            "127.0.0.1",
            "-d",
            "localhost",
            "--config-dir",
        ])
        .arg(cb.join("config"))
        .arg("--work-dir")
        .arg(cb.join("work"))
        .arg("--logs-dir")
        .arg(cb.join("logs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certbot failed:\n{}",
        crate::common::text(&out)
    );
    // A restart: the account certbot keeps is in the store.
    assert_eq!(server.stop(), 0);
    let mut server = Server::start_at(&env, port, &["--acme-http01-port", &http01]);
    // `certbot renew --force-renewal`: a new certificate for the same name,
    // with the same account.
    let out = Command::new("certbot")
        .env("REQUESTS_CA_BUNDLE", env.ca_dir().join("root.pem"))
        .args([
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--non-interactive",
            "--config-dir",
        ])
        .arg(cb.join("config"))
        .arg("--work-dir")
        .arg(cb.join("work"))
        .arg("--logs-dir")
        .arg(cb.join("logs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certbot renew failed:\n{}",
        crate::common::text(&out)
    );
    // `certbot revoke` (by the account), then stop the server.
    let live_cert = cb.join("config/live/localhost/cert.pem");
    let revoked_copy = env.path("revoked.pem");
    std::fs::copy(&live_cert, &revoked_copy).unwrap();
    let out = Command::new("certbot")
        .env("REQUESTS_CA_BUNDLE", env.ca_dir().join("root.pem"))
        .args([
            "revoke",
            "--non-interactive",
            "--no-delete-after-revoke",
            "--reason",
            "keycompromise",
            "--server",
            &server.url("/acme/directory"),
            "--cert-path",
        ])
        .arg(&live_cert)
        .arg("--config-dir")
        .arg(cb.join("config"))
        .arg("--work-dir")
        .arg(cb.join("work"))
        .arg("--logs-dir")
        .arg(cb.join("logs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "certbot revoke failed:\n{}",
        crate::common::text(&out)
    );
    assert_eq!(server.stop(), 0);
    let revoked = env.json(&["list", "--status", "revoked"]);
    assert_eq!(revoked.as_array().unwrap().len(), 1, "{revoked}");
    assert_eq!(
        revoked[0]["revocation"]["reason"], "keyCompromise",
        "{revoked}"
    );
    // The next CRL lists it.
    env.ok(&["crl"]);
    let crl_text = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    let serial_upper = revoked[0]["serial"].as_str().unwrap().to_ascii_uppercase();
    assert!(
        crl_text.contains(&serial_upper),
        "{serial_upper} not in\n{crl_text}"
    );
    let live = "certbot/config/live/localhost";
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        &format!("{live}/chain.pem"),
        "-purpose",
        "sslserver",
        &format!("{live}/cert.pem"),
    ]);
    let text = env.x509_text(&format!("{live}/cert.pem"));
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("Client Authentication"), "{text}");
    assert!(text.contains("DNS:localhost"), "{text}");
    // Recorded: `list` sees it (and the server's own certificate).
    let serial = String::from_utf8_lossy(
        &env.openssl(&[
            "x509",
            "-in",
            &format!("{live}/cert.pem"),
            "-noout",
            "-serial",
        ])
        .stdout,
    )
    .trim()
    .trim_start_matches("serial=")
    .to_ascii_lowercase();
    let list = env.json(&["list"]);
    // Two server certificates (one per start), certbot's and its renewal.
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    let accounts: std::collections::HashSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["request_id"].as_str())
        .filter_map(|r| r.strip_prefix("acme/acct/"))
        .filter_map(|r| r.split('/').next())
        .collect();
    assert_eq!(accounts.len(), 1, "renewed with the same account: {list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["serial"].as_str() == Some(serial.as_str())),
        "{serial} not in {list}"
    );
}

/// lego (Debian package): tls-alpn-01 on a loopback port, with
/// `--acme-require-eab`: refused without a binding, served with one.
#[test]
fn lego_with_eab_gets_a_certificate_through_tls_alpn_01() {
    if Command::new("lego").arg("--version").output().is_err() {
        eprintln!("skipped: lego is not installed (apt-get install lego)");
        return;
    }
    let env = constrained_ca();
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string()
    };
    let alpn_port = free();
    // The key is made before the server starts, kept in the store.
    let key = env.json(&["acme", "eab", "create", "--profile", "device"]);
    let (kid, hmac) = (
        key["kid"].as_str().unwrap().to_string(),
        key["hmac_key"].as_str().unwrap().to_string(),
    );
    let mut server = Server::start(
        &env,
        &["--acme-require-eab", "--acme-tlsalpn01-port", &alpn_port],
    );
    let lego = |dir: &str, extra: &[&str]| {
        Command::new("lego")
            .env("LEGO_CA_CERTIFICATES", env.ca_dir().join("root.pem"))
            .args([
                "--server",
                &server.url("/acme/directory"),
                "--email",
                "ops@localhost",
                "--domains",
                "localhost",
                "--tls",
                "--tls.port",
                &format!("127.0.0.1:{alpn_port}"),
                "--accept-tos",
                "--path",
            ])
            .arg(env.path(dir))
            .args(extra)
            .arg("run")
            .output()
            .unwrap()
    };
    let out = lego("lego-no-eab", &[]);
    assert!(!out.status.success(), "{}", crate::common::text(&out));
    let out = lego("lego", &["--eab", "--kid", &kid, "--hmac", &hmac]);
    assert!(
        out.status.success(),
        "lego failed:\n{}",
        crate::common::text(&out)
    );
    // The key binds one account: a second account (another lego directory,
    // another account key) with the same key is refused.
    let out = lego("lego-again", &["--eab", "--kid", &kid, "--hmac", &hmac]);
    assert!(!out.status.success(), "{}", crate::common::text(&out));
    assert!(
        crate::common::text(&out).contains("unauthorized"),
        "{}",
        crate::common::text(&out)
    );
    assert_eq!(server.stop(), 0);
    let keys = env.json(&["acme", "eab", "list"]);
    assert_eq!(keys[0]["kid"], kid.as_str(), "{keys}");
    assert!(keys[0]["account"].is_string(), "bound: {keys}");
    assert!(keys[0].get("hmac_key").is_none(), "list never shows keys");
    let crt = "lego/certificates/localhost.crt";
    let text = env.x509_text(crt);
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("Client Authentication"), "{text}");
    env.openssl_ok(&["verify", "-CAfile", "ca/root.pem", "-untrusted", crt, crt]);
    // Recorded: the server's own certificate and lego's.
    assert_eq!(env.store_count(), 2);
}

#[test]
fn acme_account_key_rollover_moves_the_account_to_the_new_key() {
    let env = constrained_ca();
    let server = Server::start(&env, &[]);
    let mut c = Client::new(&env, &server);
    c.register();
    let kid = c.kid.clone().unwrap();
    let new = Client::new(&env, &server);
    let url = format!("{}/acme/key-change", c.base());
    // The inner JWS: the new key over {account, oldKey}, no nonce.
    let protected = B64.encode(json!({"alg": "ES256", "jwk": new.jwk(), "url": url}).to_string());
    let payload = B64.encode(json!({"account": kid, "oldKey": c.jwk()}).to_string());
    let sig = new
        .key
        .sign(&new.rng, format!("{protected}.{payload}").as_bytes())
        .unwrap();
    let inner =
        json!({"protected": protected, "payload": payload, "signature": B64.encode(sig.as_ref())});
    // oldKey wrong: refused.
    let bad_payload = B64.encode(json!({"account": kid, "oldKey": new.jwk()}).to_string());
    let bad_sig = new
        .key
        .sign(&new.rng, format!("{protected}.{bad_payload}").as_bytes())
        .unwrap();
    let bad = json!({"protected": protected, "payload": bad_payload, "signature": B64.encode(bad_sig.as_ref())});
    assert_eq!(
        c.post("/acme/key-change", Some(&bad)).problem(),
        "malformed"
    );
    let a = c.post("/acme/key-change", Some(&inner));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // The old key no longer signs for the account; the new one does.
    assert_eq!(c.order(&["localhost"]).problem(), "malformed");
    let mut moved = new;
    moved.kid = Some(kid);
    assert_eq!(moved.order(&["localhost"]).status, 201);
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    let env = constrained_ca();
    let mut server = Server::start(&env, &[]);
    let body = b"{\"protected\":\"x\"}";
    let head = format!(
        "POST /acme/new-account HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/jose+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.port,
        body.len()
    );
    let mut tls = tls_stream(&env, server.port);
    tls.write_all(head.as_bytes()).unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    // Still answering the request it had begun; no new connections.
    tls.write_all(body).unwrap();
    let a = read_answer(tls);
    assert_eq!(a.status, 400);
    assert_eq!(a.problem(), "malformed");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_err());
    assert_eq!(env.store_count(), 1);
}

#[test]
fn acme_ip_identifier_is_validated_over_http_01() {
    let env = constrained_ca();
    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let server = Server::start(&env, &["--acme-http01-port", &http01]);
    let mut c = Client::new(&env, &server);
    c.register();
    let o = c.post(
        "/acme/new-order",
        Some(&json!({"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})),
    );
    assert_eq!(o.status, 201, "{}", String::from_utf8_lossy(&o.body));
    let order_path = c.path_of(o.header("location").unwrap());
    let authz = c
        .post(
            &c.path_of(o.json()["authorizations"][0].as_str().unwrap()),
            None,
        )
        .json();
    // Only http-01 for an IP.
    assert_eq!(authz["challenges"].as_array().unwrap().len(), 1, "{authz}");
    let chall = &authz["challenges"][0];
    *answer.lock().unwrap() = format!("{}.{}", chall["token"].as_str().unwrap(), c.thumbprint());
    c.post(&c.path_of(chall["url"].as_str().unwrap()), Some(&json!({})));
    let mut status = Value::Null;
    for _ in 0..100 {
        status = c.post(&order_path, None).json()["status"].clone();
        if status != "pending" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status, "ready");
    // An IP outside the constraints is a rejected identifier.
    let o = c.post(
        "/acme/new-order",
        Some(&json!({"identifiers": [{"type": "ip", "value": "192.0.2.1"}]})),
    );
    assert_eq!(o.problem(), "rejectedIdentifier");
}

/// The ARI certificate id: base64url(authorityKeyIdentifier).base64url(serial).
fn ari_id(der: &[u8]) -> String {
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    let aki = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref(),
            _ => None,
        })
        .unwrap()
        .0;
    format!("{}.{}", B64.encode(aki), B64.encode(cert.raw_serial()))
}

#[test]
fn acme_requests_over_the_account_rate_limit_are_rate_limited() {
    let env = constrained_ca();
    let server = Server::start(&env, &["--acme-rate-limit", "1"]);
    let mut c = Client::new(&env, &server);
    c.register();
    // A burst of twice the rate passes, then rateLimited with Retry-After.
    assert_eq!(c.order(&["localhost"]).status, 201);
    assert_eq!(c.order(&["localhost"]).status, 201);
    let a = c.order(&["localhost"]);
    assert_eq!(a.status, 429);
    assert_eq!(a.problem(), "rateLimited");
    assert_eq!(a.header("retry-after"), Some("1"));
}

/// New accounts without EAB are limited per client address: the third of
/// `--acme-accounts-per-ip 2` is `rateLimited` with Retry-After (and logged);
/// an existing account's key is answered as before, and a binding with an EAB
/// key is not counted.
#[test]
fn new_accounts_per_client_address_are_limited_without_eab() {
    let env = constrained_ca();
    let log = env.path("serve.err");
    let mut server = Server::start_logging(&env, &["--acme-accounts-per-ip", "2"], &log);
    let mut one = Client::new(&env, &server);
    one.register();
    let mut two = Client::new(&env, &server);
    two.register();
    let three = Client::new(&env, &server);
    let a = three.post(
        "/acme/new-account",
        Some(&json!({"termsOfServiceAgreed": true})),
    );
    assert_eq!(a.status, 429, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.problem(), "rateLimited");
    let wait: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1800).contains(&wait), "{wait}");
    // The account that exists is found, not counted.
    let mut again = Client::new(&env, &server);
    again.key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &one.pkcs8, &again.rng).unwrap();
    let a = again.post(
        "/acme/new-account",
        Some(&json!({"onlyReturnExisting": true})),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // With an EAB key: not counted.
    let out = env.run(&["--json", "acme", "eab", "create", "--profile", "device"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let eab: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut four = Client::new(&env, &server);
    let a = four.register_with_eab(
        eab["kid"].as_str().unwrap(),
        eab["hmac_key"].as_str().unwrap(),
    );
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(server.stop(), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("status=429")
            && l.contains("problem=rateLimited")
            && l.contains("new accounts an hour from 127.0.0.1")),
        "{text}"
    );
}

impl Client<'_> {
    /// newAccount with an external account binding (RFC 8555 §7.3.4, HS256).
    pub(crate) fn register_with_eab(&mut self, kid: &str, hmac_b64: &str) -> Answer {
        let url = format!("{}/acme/new-account", self.base());
        let p = B64.encode(json!({"alg": "HS256", "kid": kid, "url": url}).to_string());
        let pl = B64.encode(self.jwk().to_string());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &B64.decode(hmac_b64).unwrap());
        let tag = ring::hmac::sign(&key, format!("{p}.{pl}").as_bytes());
        let eab = json!({"protected": p, "payload": pl, "signature": B64.encode(tag.as_ref())});
        let a = self.post(
            "/acme/new-account",
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab})),
        );
        if a.status == 201 {
            self.kid = Some(a.header("location").unwrap().to_string());
        }
        a
    }

    /// Finalize a ready order for `localhost` and download the chain.
    pub(crate) fn finalize_localhost(&self, order: &Value, order_path: &str) -> Vec<u8> {
        let finalize = self.path_of(order["finalize"].as_str().unwrap());
        let csr = csr_der(self.env, "localhost", &[]);
        let a = self.post(&finalize, Some(&json!({"csr": B64.encode(&csr)})));
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let order = self.post(order_path, None).json();
        assert_eq!(order["status"], "valid", "{order}");
        let cert = self.post(&self.path_of(order["certificate"].as_str().unwrap()), None);
        assert_eq!(cert.status, 200, "{}", String::from_utf8_lossy(&cert.body));
        cert.body
    }
}

/// Accounts, orders and certificate downloads are in the store: a restarted
/// server knows them. A nonce used before the restart is refused after it; one
/// handed out and not used survives a clean stop and is accepted once.
#[test]
fn acme_state_survives_a_restart_and_a_replayed_nonce_stays_refused() {
    let env = constrained_ca();
    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let port = free_port();
    let mut server = Server::start_at(&env, port, &["--acme-http01-port", &http01]);
    let mut c = Client::new(&env, &server);
    c.register();
    let (order, order_path) = ready_order(&c, &answer);
    assert_eq!(order["status"], "ready", "{order}");
    let chain = c.finalize_localhost(&order, &order_path);
    // A request whose nonce is used now, to replay later; and a nonce not used.
    let replayed = c.sign(&format!("{}{order_path}", c.base()), None, &c.nonce());
    assert_eq!(c.raw(&order_path, &replayed).status, 200);
    assert_eq!(c.raw(&order_path, &replayed).problem(), "badNonce");
    let unused = c.nonce();
    let pending = c.order(&["localhost"]);
    assert_eq!(pending.status, 201);
    let pending_path = c.path_of(pending.header("location").unwrap());
    assert_eq!(server.stop(), 0);

    let mut server = Server::start_at(&env, port, &["--acme-http01-port", &http01]);
    assert_eq!(server.port, port);
    // The replay is refused after the restart too.
    let a = c.raw(&order_path, &replayed);
    assert_eq!(
        a.problem(),
        "badNonce",
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    // The unused nonce works, once.
    let url = format!("{}{order_path}", c.base());
    let fresh = c.sign(&url, None, &unused);
    let a = c.raw(&order_path, &fresh);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["status"], "valid");
    assert_eq!(c.raw(&order_path, &fresh).problem(), "badNonce");
    // The certificate is still offered for download, the same chain.
    let cert_path = c.path_of(a.json()["certificate"].as_str().unwrap());
    assert_eq!(c.post(&cert_path, None).body, chain);
    // The pending order and the account carry on: validate and finalize it.
    let pending = c.post(&pending_path, None).json();
    assert_eq!(pending["status"], "pending", "{pending}");
    let authz = c.post(
        &c.path_of(pending["authorizations"][0].as_str().unwrap()),
        None,
    );
    let chall = &authz.json()["challenges"][0];
    *answer.lock().unwrap() = format!("{}.{}", chall["token"].as_str().unwrap(), c.thumbprint());
    assert_eq!(
        c.post(&c.path_of(chall["url"].as_str().unwrap()), Some(&json!({})))
            .status,
        200
    );
    let mut ready = Value::Null;
    for _ in 0..100 {
        ready = c.post(&pending_path, None).json();
        if ready["status"] != "pending" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ready["status"], "ready", "{ready}");
    c.finalize_localhost(&ready, &pending_path);
    // The same key finds the same account (newAccount answers 200, same URL).
    let kid = c.kid.take();
    let again = c.post(
        "/acme/new-account",
        Some(&json!({"onlyReturnExisting": true})),
    );
    assert_eq!(
        again.status,
        200,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.header("location"), kid.as_deref());
    assert_eq!(server.stop(), 0);
    // Each certificate recorded once, under its ACME request id; two server certificates.
    let list = env.json(&["list"]);
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
}

/// An account bound to a workload EAB key gets workload certificates (24 hours,
/// serverAuth only); the key binds no second account; `acme eab` refuses entity
/// and unknown profiles, and works through the control socket while `serve` runs.
#[test]
fn an_account_bound_to_a_workload_eab_key_gets_workload_certificates() {
    let env = constrained_ca();
    let person = env.fails(&["acme", "eab", "create", "--profile", "person"], 2);
    assert!(person.contains("entity profile"), "{person}");
    env.fails(&["acme", "eab", "create", "--profile", "nosuch"], 2);
    let key = env.json(&["acme", "eab", "create", "--profile", "workload"]);
    let (kid, hmac) = (
        key["kid"].as_str().unwrap().to_string(),
        key["hmac_key"].as_str().unwrap().to_string(),
    );
    assert_eq!(B64.decode(&hmac).unwrap().len(), 32);
    let text = env.ok(&["acme", "eab", "create"]);
    assert!(
        text.contains("kid: eab-") && text.contains("hmac_key: "),
        "{text}"
    );
    let revoked_kid = text
        .lines()
        .find_map(|l| l.strip_prefix("kid: "))
        .unwrap()
        .to_string();
    let revoked_hmac = text
        .lines()
        .find_map(|l| l.strip_prefix("hmac_key: "))
        .unwrap()
        .to_string();
    env.ok(&["acme", "eab", "revoke", &revoked_kid]);
    env.fails(&["acme", "eab", "revoke", "eab-nosuch"], 1);

    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let mut server = Server::start(&env, &["--acme-require-eab", "--acme-http01-port", &http01]);
    // While the server holds the store, `acme eab` goes through its control
    // socket (no wait for the lock), and the server takes the new key at once.
    let live = env.json(&[
        "--lock-timeout",
        "0s",
        "acme",
        "eab",
        "create",
        "--profile",
        "device",
    ]);
    let listed = env.json(&["--lock-timeout", "0s", "acme", "eab", "list"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == live["kid"] && k.get("hmac_key").is_none()),
        "{listed}"
    );
    let mut fresh = Client::new(&env, &server);
    let a = fresh.register_with_eab(
        live["kid"].as_str().unwrap(),
        live["hmac_key"].as_str().unwrap(),
    );
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));

    let mut revoked = Client::new(&env, &server);
    let a = revoked.register_with_eab(&revoked_kid, &revoked_hmac);
    assert_eq!(a.problem(), "unauthorized", "a revoked key binds nothing");
    let mut c = Client::new(&env, &server);
    let a = c.register_with_eab(&kid, &hmac);
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let mut other = Client::new(&env, &server);
    let a = other.register_with_eab(&kid, &hmac);
    assert_eq!(a.problem(), "unauthorized", "the key binds one account");

    let (order, order_path) = ready_order(&c, &answer);
    assert_eq!(order["status"], "ready", "{order}");
    let chain = c.finalize_localhost(&order, &order_path);
    assert_eq!(server.stop(), 0);
    std::fs::write(env.path("w.pem"), &chain).unwrap();
    let blocks = pem::parse_many(&chain).unwrap();
    std::fs::write(env.path("leaf.pem"), pem::encode(&blocks[0])).unwrap();
    let text = env.x509_text("leaf.pem");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(!text.contains("Client Authentication"), "{text}");
    // Valid for 24 hours: openssl's -checkend.
    env.openssl_ok(&["x509", "-in", "leaf.pem", "-noout", "-checkend", "86000"]);
    let out = env.openssl(&["x509", "-in", "leaf.pem", "-noout", "-checkend", "86500"]);
    assert!(
        !out.status.success(),
        "a workload certificate lives 24 hours"
    );
    let list = env.json(&["list"]);
    let w: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["profile"] == "workload")
        .collect();
    assert_eq!(w.len(), 1, "{list}");
    let keys = env.json(&["acme", "eab", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 3, "{keys}");
    assert!(keys
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["revoked"].is_string()));
    // The store keeps no secret of a spent key: the two that bound an account
    // and the revoked one.
    let store = mtlsca::store::Store::open(&env.ca_dir(), std::time::Duration::from_secs(5))
        .unwrap()
        .acme()
        .unwrap();
    for spent in [kid.as_str(), live["kid"].as_str().unwrap(), &revoked_kid] {
        let k = store.eab(spent).unwrap().expect("the key is listed");
        assert_eq!(
            k.hmac_key, "",
            "{spent} is spent: its HMAC key is forgotten"
        );
    }
}

/// URLs come from the configured names: a request naming another host is
/// refused (421) and the name never appears in what the server says.
#[test]
fn a_host_header_that_is_not_the_server_is_refused() {
    let env = constrained_ca();
    let server = Server::start(&env, &[]);
    let port = server.port;
    let get = |host: &str| {
        send(
            &env,
            port,
            format!("GET /acme/directory HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let a = get("evil.example");
    assert_eq!(a.status, 421);
    assert!(!String::from_utf8_lossy(&a.body).contains("evil"));
    assert_eq!(get(&format!("evil.example:{port}")).status, 421);
    assert_eq!(get("127.0.0.2").status, 421);
    // Missing Host: refused too.
    let a = send(
        &env,
        port,
        b"GET /acme/directory HTTP/1.0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(a.status, 421);
    // The configured name (any case), with or without the port, and the listen address.
    let a = get(&format!("LocalHost:{port}"));
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json()["newOrder"],
        format!("https://localhost:{port}/acme/new-order")
    );
    assert_eq!(
        get("localhost").json()["newOrder"],
        "https://localhost/acme/new-order"
    );
    assert_eq!(get(&format!("127.0.0.1:{port}")).status, 200);
}

/// Every refusal is one line on serve's standard error with the peer, the
/// request, the status, the problem type and the reason; an answered request
/// writes nothing.
#[test]
fn every_refusal_is_logged_with_its_reason() {
    let env = constrained_ca();
    let log = env.path("serve.err");
    let publish = free_port().to_string();
    let publish_at = format!("127.0.0.1:{publish}");
    let mut server = Server::start_logging(&env, &["--publish-listen", &publish_at], &log);
    let port = server.port;
    let get = |host: &str, path: &str| {
        send(
            &env,
            port,
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    assert_eq!(
        get(&format!("127.0.0.1:{port}"), "/acme/directory").status,
        200
    );
    assert_eq!(get("evil.example", "/acme/directory").status, 421);
    assert_eq!(
        get(&format!("127.0.0.1:{port}"), "/nothing/here").status,
        404
    );
    let a = https(
        &env,
        port,
        "POST",
        "/acme/new-account",
        "application/json",
        b"{}",
    );
    assert_eq!(a.status, 415);
    let c = Client::new(&env, &server);
    assert_eq!(c.raw("/acme/new-account", b"{not json").status, 400);
    // Not TLS at all.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink);
    // The publication listener: a path it does not serve.
    let mut tcp = TcpStream::connect(&publish_at).unwrap();
    tcp.write_all(b"GET /private/root.key HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = tcp.read_to_end(&mut sink);
    assert_eq!(server.stop(), 0);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" verdict=")).collect();
    let find = |needle: &[&str]| {
        lines
            .iter()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
            .to_string()
    };
    let host = find(&["status=421", "problem=malformed"]);
    assert!(host.contains("peer=127.0.0.1:"), "{host}");
    assert!(host.contains(r#"request="GET /acme/directory""#), "{host}");
    assert!(host.contains("verdict=refused"), "{host}");
    assert!(
        host.contains("the Host header must name this server"),
        "{host}"
    );
    find(&[r#"request="GET /nothing/here""#, "status=404"]);
    find(&[
        r#"request="POST /acme/new-account""#,
        "status=415",
        "Content-Type",
    ]);
    find(&[
        r#"request="POST /acme/new-account""#,
        "status=400",
        "problem=malformed",
    ]);
    find(&[
        r#"request="connection""#,
        "problem=tls",
        "TLS handshake failed",
    ]);
    find(&[
        r#"request="GET /private/root.key""#,
        "status=404",
        "problem=publication",
    ]);
    // Four refused requests, one refused handshake, one publication refusal:
    // the requests that were answered left no line.
    assert_eq!(lines.len(), 6, "{text}");
}

/// An idle keep-alive connection, and one that never finishes its headers,
/// are closed after `--idle-timeout`.
#[test]
fn idle_and_slow_connections_are_closed_after_the_idle_timeout() {
    let env = constrained_ca();
    let server = Server::start(&env, &["--idle-timeout", "1s"]);
    let mut tls = tls_stream(&env, server.port);
    tls.write_all(
        format!(
            "GET /acme/directory HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            server.port
        )
        .as_bytes(),
    )
    .unwrap();
    let t = std::time::Instant::now();
    // read_answer reads to the end of the connection: it returns once the
    // server closes the idle connection (the client's own timeout is 30 s).
    let a = read_answer(tls);
    assert_eq!(a.status, 200);
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    let mut tls = tls_stream(&env, server.port);
    tls.write_all(b"GET /acme/directory HTTP/1.1\r\nHost: 127.0.0.1")
        .unwrap();
    let t = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// The server renews its own certificate before it expires and keeps serving:
/// a 15-second profile, renewed after 10 seconds.
#[test]
fn serve_renews_its_own_certificate_before_it_expires() {
    let env = constrained_ca();
    let device = std::fs::read_to_string(env.ca_dir().join("profiles/device.toml")).unwrap();
    let short = device
        .replace("name = \"device\"", "name = \"short\"")
        .replace(
            "validity = { default = \"90d\", max = \"397d\" }",
            "validity = { default = \"15s\", max = \"15s\" }",
        );
    assert!(short.contains("\"15s\""));
    std::fs::write(env.ca_dir().join("profiles/short.toml"), short).unwrap();
    let mut server = Server::start(&env, &["--tls-profile", "short"]);
    let presented = || {
        let mut tls = tls_stream(&env, server.port);
        tls.write_all(
            format!(
                "GET /acme/directory HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                server.port
            )
            .as_bytes(),
        )
        .unwrap();
        let cert = tls.conn.peer_certificates().unwrap()[0].to_vec();
        let a = read_answer(tls);
        (cert, a.status)
    };
    let (first, status) = presented();
    assert_eq!(status, 200);
    let mut renewed = None;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(500));
        let (now, status) = presented();
        assert_eq!(status, 200, "keeps serving (the certificate verifies)");
        if now != first {
            renewed = Some(now);
            break;
        }
    }
    let renewed = renewed.expect("a new certificate within 20 s");
    std::fs::write(
        env.path("renewed.pem"),
        pem::encode(&pem::Pem::new("CERTIFICATE", renewed)),
    )
    .unwrap();
    let text = env.x509_text("renewed.pem");
    assert!(text.contains("DNS:localhost"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    assert_eq!(server.stop(), 0);
    let list = env.json(&["list"]);
    let short: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["profile"] == "short")
        .collect();
    assert!(short.len() >= 2, "{list}");
}

/// A kill (no clean stop): an account and its EAB binding, answered before the
/// kill, are still there; nonces handed out before it are all refused.
#[test]
fn accounts_and_eab_bindings_survive_a_kill_and_nonces_do_not() {
    let env = constrained_ca();
    let (kid, hmac) = eab_key(&env);
    let port = free_port();
    let mut server = Server::start_at(&env, port, &["--acme-require-eab"]);
    let mut c = Client::new(&env, &server);
    let a = c.register_with_eab(&kid, &hmac);
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let unused = c.nonce();
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let again = Server::start_at(&env, port, &["--acme-require-eab"]);
    let acct = c.path_of(c.kid.as_deref().unwrap());
    let a = c.post(&acct, None);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["status"], "valid");
    // The key stays bound: another account cannot use it.
    let mut other = Client::new(&env, &again);
    assert_eq!(
        other.register_with_eab(&kid, &hmac).problem(),
        "unauthorized"
    );
    // A nonce from before the kill is unknown now.
    let body = c.sign(&format!("{}{acct}", c.base()), None, &unused);
    assert_eq!(c.raw(&acct, &body).problem(), "badNonce");
}

/// dns-01 is offered for DNS names beside http-01 and tls-alpn-01; a wildcard
/// (under a profile that allows it) gets dns-01 only, and its authorization
/// names the base domain with `"wildcard": true` (RFC 8555 §7.1.3-7.1.4).
#[test]
fn acme_offers_dns_01_and_only_dns_01_for_a_wildcard() {
    let env = constrained_ca();
    let device = std::fs::read_to_string(env.ca_dir().join("profiles/device.toml")).unwrap();
    let wild = device
        .replace("name = \"device\"", "name = \"wild\"")
        .replace("allow_wildcards = false", "allow_wildcards = true");
    std::fs::write(env.ca_dir().join("profiles/wild.toml"), wild).unwrap();
    let server = Server::start(&env, &["--acme-profile", "wild"]);
    let mut c = Client::new(&env, &server);
    c.register();
    let types_of = |order: &Answer| {
        let authz = c
            .post(
                &c.path_of(order.json()["authorizations"][0].as_str().unwrap()),
                None,
            )
            .json();
        let types: Vec<String> = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ch| ch["type"].as_str().unwrap().to_string())
            .collect();
        (authz, types)
    };
    let o = c.order(&["localhost"]);
    assert_eq!(o.status, 201, "{}", String::from_utf8_lossy(&o.body));
    let (authz, types) = types_of(&o);
    assert_eq!(types, ["http-01", "tls-alpn-01", "dns-01"], "{authz}");
    assert!(authz.get("wildcard").is_none(), "{authz}");

    let o = c.order(&["*.app.localhost"]);
    assert_eq!(o.status, 201, "{}", String::from_utf8_lossy(&o.body));
    assert_eq!(o.json()["identifiers"][0]["value"], "*.app.localhost");
    let (authz, types) = types_of(&o);
    assert_eq!(types, ["dns-01"], "{authz}");
    assert_eq!(authz["identifier"]["value"], "app.localhost", "{authz}");
    assert_eq!(authz["wildcard"], true, "{authz}");
}

/// While ACME clients complete orders, `list`, `issue` and `revoke` from other
/// processes go through the server's control socket: none waits for the store's
/// lock (a 200 ms lock timeout would fail it), and everything ends up recorded.
#[test]
fn the_cli_works_while_acme_orders_are_under_way() {
    let env = constrained_ca();
    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let server = Server::start(
        &env,
        &["--acme-http01-port", &http01, "--acme-rate-limit", "0"],
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acme_certs = std::thread::scope(|s| {
        let orders = s.spawn(|| {
            let mut c = Client::new(&env, &server);
            c.register();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                let (order, path) = ready_order(&c, &answer);
                assert_eq!(order["status"], "ready", "{order}");
                c.finalize_localhost(&order, &path);
                n += 1;
            }
            n
        });
        let fast = ["--lock-timeout", "200ms"];
        for i in 0..6 {
            let name = format!("cli{i}.localhost");
            let out = format!("cli{i}");
            env.ok(&[
                &fast[..],
                &["issue", "device", "--dns", &name, "--out", &out],
            ]
            .concat());
            let listed = env.json(&[&fast[..], &["list"]].concat());
            assert!(listed.as_array().unwrap().len() > i, "{listed}");
            if i % 2 == 0 {
                env.ok(&[&fast[..], &["revoke", &format!("{out}.pem")]].concat());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        orders.join().unwrap()
    });
    drop(server);
    let all = env.json(&["list"]);
    let all = all.as_array().unwrap();
    let acme = all
        .iter()
        .filter(|r| {
            r["request_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("acme/"))
        })
        .count();
    // Every ACME certificate handed out is recorded (plus the server's own).
    assert!(
        acme >= acme_certs,
        "{acme} recorded, {acme_certs} handed out"
    );
    assert_eq!(
        all.iter()
            .filter(|r| r["subject"].as_str().is_some_and(|s| s.contains("cli")))
            .count(),
        6
    );
    let revoked = env.json(&["list", "--status", "revoked"]);
    assert_eq!(revoked.as_array().unwrap().len(), 3, "{revoked}");
    env.ok(&["store", "check"]);
}

/// A log nobody reads never stalls the server: with serve's stderr a pipe that
/// is not read, 3,000 refused requests (far more than the pipe and the log's
/// queue hold) are each answered at once, the ACME directory still answers,
/// and once stderr is read the log says how many lines it had to drop.
#[test]
fn an_unread_log_never_stalls_the_server() {
    let env = constrained_ca();
    let publish_at = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start_with_unread_stderr(&env, &["--publish-listen", &publish_at]);
    const REFUSED: usize = 3000;
    for i in 0..REFUSED {
        let mut tcp = TcpStream::connect(&publish_at).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(format!("GET /nothing/{i} HTTP/1.0\r\n\r\n").as_bytes())
            .unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("request {i}: no answer while the log is unread: {e}"));
        assert!(
            answer.starts_with(b"HTTP/1.0 404") || answer.starts_with(b"HTTP/1.1 404"),
            "request {i}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let port = server.port;
    assert_eq!(
        https(&env, port, "GET", "/acme/directory", "text/plain", b"").status,
        200
    );
    // Now read the log: the writer catches up and reports what it dropped.
    let mut stderr = server.child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    assert_eq!(server.stop(), 0);
    let text = reader.join().unwrap();
    let logged = text
        .lines()
        .filter(|l| l.contains(r#"request="GET /nothing/"#) && l.contains("status=404"))
        .count();
    let dropped: usize = text
        .lines()
        .filter_map(|l| l.split(" log: ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(
        dropped > 0,
        "nothing dropped; log:\n{}",
        &text[..text.len().min(2000)]
    );
    assert_eq!(
        logged + dropped,
        REFUSED,
        "logged {logged}, dropped {dropped}"
    );
}

/// Whether a text names a command-line flag (`--ip`, `(--permit-dns`), as
/// opposed to a DNS label holding `--` (`xn--bcher-kva.example`).
fn names_a_flag(text: &str) -> bool {
    text.match_indices("--").any(|(i, _)| {
        let before = text[..i].chars().last();
        let after = text[i + 2..].chars().next();
        before.is_none_or(|c| c.is_whitespace() || "(`'\"/,".contains(c))
            && after.is_some_and(|c| c.is_ascii_lowercase())
    })
}

/// Every `detail` of a problem document, its subproblems' included.
fn details(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["detail"].as_str().map(String::from).into_iter().collect();
    for s in v["subproblems"].as_array().into_iter().flatten() {
        out.extend(s["detail"].as_str().map(String::from));
    }
    out
}

#[test]
fn acme_problem_details_name_identifiers_not_command_line_flags() {
    assert!(names_a_flag("give it with --ip, not --dns"));
    assert!(!names_a_flag("`xn--bcher-kva.localhost` is outside"));
    let env = constrained_ca();
    // A device profile whose validity reaches past the issuing CAs' lifetime.
    std::fs::write(
        env.path("ca/profiles/long.toml"),
        "name = \"long\"\nrole = \"device\"\nvalidity = { default = \"10y\", max = \"10y\" }\n",
    )
    .unwrap();
    let answer = Arc::new(Mutex::new(String::new()));
    let http01 = responder(answer.clone()).to_string();
    let server = Server::start(&env, &["--acme-http01-port", &http01]);
    let mut c = Client::new(&env, &server);
    c.register();
    let mut seen: Vec<(String, Value)> = Vec::new();
    let order = |ids: Value| c.post("/acme/new-order", Some(&json!({ "identifiers": ids })));
    for ids in [
        json!([{"type": "dns", "value": "127.0.0.1"}]),
        json!([{"type": "dns", "value": "::1"}]),
        json!([{"type": "dns", "value": "www.evil.example"}]),
        json!([{"type": "ip", "value": "10.9.9.9"}]),
        json!([{"type": "dns", "value": "bad_name.localhost"}]),
        json!([{"type": "dns", "value": "*.localhost"}]),
        json!([{"type": "dns", "value": "a..localhost"}]),
        json!([{"type": "ip", "value": "localhost"}]),
    ] {
        let a = order(ids.clone());
        assert_eq!(a.status, 400, "{ids}: {}", String::from_utf8_lossy(&a.body));
        seen.push((ids.to_string(), a.json()));
    }
    // The IP written as a DNS name is told the identifier type it needs.
    let ip_as_dns = &seen[0].1;
    assert_eq!(
        ip_as_dns["type"],
        "urn:ietf:params:acme:error:rejectedIdentifier"
    );
    assert!(
        details(ip_as_dns)
            .iter()
            .all(|d| d.contains("identifier of type `ip`")),
        "{ip_as_dns}"
    );
    // Finalize: CSRs the order's profile refuses.
    let (ready, _) = ready_order(&c, &answer);
    let finalize = c.path_of(ready["finalize"].as_str().unwrap());
    for extra in [
        ["-addext", "extendedKeyUsage=clientAuth"],
        ["-addext", "basicConstraints=critical,CA:TRUE"],
    ] {
        let csr = csr_der(&env, "localhost", &extra);
        let a = c.post(&finalize, Some(&json!({"csr": B64.encode(&csr)})));
        assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
        seen.push((format!("finalize {extra:?}"), a.json()));
    }
    drop(server);
    // An account whose profile outlives the issuing CA (asked a second after
    // init at least, so that ten years from now is past the CAs' notAfter).
    std::thread::sleep(Duration::from_millis(1100));
    let server = Server::start(
        &env,
        &["--acme-http01-port", &http01, "--acme-profile", "long"],
    );
    let mut c = Client::new(&env, &server);
    c.register();
    let a = c.order(&["localhost"]);
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    assert!(
        v["subproblems"][0]["rule"] == "validity-past-issuing-ca",
        "{v}"
    );
    seen.push(("long".into(), v));

    for (what, v) in &seen {
        for d in details(v) {
            assert!(
                !names_a_flag(&d),
                "{what}: a command-line flag in {d:?}: {v}"
            );
        }
    }
}
