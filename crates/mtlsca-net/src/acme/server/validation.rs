//! Challenge validation (http-01, tls-alpn-01, dns-01) and the lookups it
//! makes: whether a client proved control of an identifier. What the outcome
//! does to the challenge, its authorization and its order is the working
//! copy's (`State::record_validation`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::objects::{ChallengeType, Identifier};
use super::problem::Problem;
use crate::acme::dns::Resolver;
use crate::acme::problem::ProblemType;

/// How long one validation attempt (a lookup, a connection) may take.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an http-01 answer read.
const MAX_CHALLENGE_RESPONSE: u64 = 16 * 1024;

/// Where the validator's lookups go.
///
/// With `--acme-resolver HOST:PORT` every lookup (A/AAAA for http-01 and
/// tls-alpn-01, TXT for dns-01) asks that server. Without it, addresses come
/// from the system's resolution (getaddrinfo: /etc/hosts, then the servers of
/// /etc/resolv.conf) and TXT records from the servers of /etc/resolv.conf.
#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) resolver: Resolver,
    /// Addresses through getaddrinfo (no `--acme-resolver`).
    pub(super) system_addresses: bool,
}

impl Lookup {
    /// Lookups through `server`, or the system's (None).
    pub(super) fn new(server: Option<SocketAddr>) -> Lookup {
        match server {
            Some(s) => Lookup {
                resolver: Resolver::at(s),
                system_addresses: false,
            },
            None => Lookup {
                resolver: Resolver::system(),
                system_addresses: true,
            },
        }
    }
}

/// A challenge to validate, with what the validation needs.
pub(super) struct Validation {
    /// The authorization the challenge is of.
    pub(super) authz: String,
    /// The challenge's place among the authorization's.
    pub(super) index: usize,
    pub(super) typ: ChallengeType,
    pub(super) identifier: Identifier,
    pub(super) token: String,
    pub(super) key_authorization: String,
    pub(super) port: u16,
}

/// Validate a challenge: `Ok` when the client proved control of the
/// identifier, else the problem (403) its challenge, authorization and order
/// then carry.
pub(super) async fn validate(lookup: &Lookup, job: &Validation) -> Result<(), Problem> {
    let outcome = match job.typ {
        ChallengeType::Http01 => http01(lookup, job).await,
        ChallengeType::TlsAlpn01 => tls_alpn01(lookup, job).await,
        ChallengeType::Dns01 => dns01(lookup, job).await,
    };
    outcome.map_err(|(kind, detail)| Problem::new(StatusCode::FORBIDDEN, kind, detail))
}

/// Fetch `http://IDENTIFIER:PORT/.well-known/acme-challenge/TOKEN` from the
/// identifier's own addresses only, following no redirect.
async fn http01(
    lookup: &Lookup,
    job: &Validation,
) -> std::result::Result<(), (ProblemType, String)> {
    let host = match &job.identifier {
        Identifier::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
        other => other.value(),
    };
    let addrs = addresses(lookup, &job.identifier, job.port).await?;
    if addrs.is_empty() {
        return Err((ProblemType::Dns, format!("`{host}` has no address")));
    }
    let host_header = if job.port == 80 {
        host.clone()
    } else {
        format!("{host}:{}", job.port)
    };
    let mut last = String::new();
    for addr in addrs {
        match tokio::time::timeout(VALIDATION_TIMEOUT, fetch(addr, &host_header, &job.token)).await
        {
            Ok(Ok((200, body))) => {
                let got = String::from_utf8_lossy(&body);
                return if got.trim_end() == job.key_authorization {
                    Ok(())
                } else {
                    // Never echo what the target answered: the validator can be
                    // pointed at internal addresses, and an error body must not
                    // carry what they serve to the requester.
                    Err((
                        ProblemType::IncorrectResponse,
                        format!(
                            "{addr} answered HTTP 200 with {} bytes that are not this challenge's key authorization",
                            body.len()
                        ),
                    ))
                };
            }
            Ok(Ok((code, _))) => {
                return Err((
                    ProblemType::Unauthorized,
                    format!("{addr} answered HTTP {code} (redirects are not followed)"),
                ))
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err((ProblemType::Connection, last))
}

/// The identifier's own addresses on `port` (a DNS name resolved, at most 8).
async fn addresses(
    lookup: &Lookup,
    id: &Identifier,
    port: u16,
) -> std::result::Result<Vec<SocketAddr>, (ProblemType, String)> {
    let name = match id {
        Identifier::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Identifier::Dns(name) => name,
    };
    let shown = crate::names::printable(name);
    if lookup.system_addresses {
        return match tokio::time::timeout(
            VALIDATION_TIMEOUT,
            tokio::net::lookup_host((name.as_str(), port)),
        )
        .await
        {
            Ok(Ok(a)) => Ok(a.take(8).collect()),
            Ok(Err(e)) => Err((ProblemType::Dns, format!("cannot resolve `{shown}`: {e}"))),
            Err(_) => Err((ProblemType::Dns, format!("resolving `{shown}` timed out"))),
        };
    }
    match tokio::time::timeout(VALIDATION_TIMEOUT, lookup.resolver.lookup_ip(name)).await {
        Ok(Ok(ips)) => Ok(ips
            .into_iter()
            .take(8)
            .map(|ip| SocketAddr::new(ip, port))
            .collect()),
        Ok(Err(e)) => Err((ProblemType::Dns, format!("cannot resolve `{shown}`: {e}"))),
        Err(_) => Err((ProblemType::Dns, format!("resolving `{shown}` timed out"))),
    }
}

// ---------------------------------------------------------------------------
// dns-01
// ---------------------------------------------------------------------------

/// The name a dns-01 TXT record is looked up at (RFC 8555 §8.4): the
/// identifier without a wildcard label, under `_acme-challenge`.
fn dns01_name(identifier: &str) -> String {
    let base = identifier.strip_prefix("*.").unwrap_or(identifier);
    format!("_acme-challenge.{base}")
}

/// The value a dns-01 TXT record must hold: base64url(SHA-256(key authorization)).
fn dns01_value(key_authorization: &str) -> String {
    B64.encode(ring::digest::digest(
        &ring::digest::SHA256,
        key_authorization.as_bytes(),
    ))
}

/// dns-01 (RFC 8555 §8.4): one of the TXT records at `_acme-challenge.NAME`,
/// asked of the configured resolver, holds the expected value.
async fn dns01(
    lookup: &Lookup,
    job: &Validation,
) -> std::result::Result<(), (ProblemType, String)> {
    let Identifier::Dns(name) = &job.identifier else {
        return Err((ProblemType::Malformed, "dns-01 is for DNS names".into()));
    };
    let at = dns01_name(name);
    let shown = crate::names::printable(&at);
    let want = dns01_value(&job.key_authorization);
    let records =
        match tokio::time::timeout(VALIDATION_TIMEOUT, lookup.resolver.lookup_txt(&at)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err((ProblemType::Dns, format!("looking up TXT `{shown}`: {e}"))),
            Err(_) => {
                return Err((
                    ProblemType::Dns,
                    format!("looking up TXT `{shown}` timed out"),
                ))
            }
        };
    if records.iter().any(|r| r == want.as_bytes()) {
        return Ok(());
    }
    if records.is_empty() {
        return Err((
            ProblemType::Unauthorized,
            format!("no TXT record at `{shown}` (expected `{want}`)"),
        ));
    }
    // Show what was found, bounded: at most 4 records of 100 characters.
    let found = records
        .iter()
        .take(4)
        .map(|r| {
            let t = String::from_utf8_lossy(r);
            format!(
                "`{}`",
                crate::names::printable(&t.chars().take(100).collect::<String>())
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err((
        ProblemType::IncorrectResponse,
        format!(
            "the TXT records at `{shown}` do not hold the key authorization's digest `{want}`: found {found}"
        ),
    ))
}

/// The OID of the acmeIdentifier extension (RFC 8737).
const ACME_IDENTIFIER_OID: &str = "1.3.6.1.5.5.7.1.31";

/// tls-alpn-01 (RFC 8737): a TLS handshake with SNI = the name and ALPN
/// `acme-tls/1` on the identifier's own addresses; the self-signed certificate
/// must name exactly that DNS name and carry the critical acmeIdentifier
/// extension with SHA-256 of the key authorization.
async fn tls_alpn01(
    lookup: &Lookup,
    job: &Validation,
) -> std::result::Result<(), (ProblemType, String)> {
    let Identifier::Dns(name) = &job.identifier else {
        return Err((
            ProblemType::Malformed,
            "tls-alpn-01 is for DNS names".into(),
        ));
    };
    let addrs = addresses(lookup, &job.identifier, job.port).await?;
    if addrs.is_empty() {
        return Err((ProblemType::Dns, format!("`{name}` has no address")));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth(),
        Err(e) => return Err((ProblemType::ServerInternal, e.to_string())),
    };
    config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let sni = rustls_pki_types::ServerName::try_from(name.clone()).map_err(|_| {
        (
            ProblemType::Malformed,
            format!("`{name}` cannot be an SNI name"),
        )
    })?;
    let want = ring::digest::digest(&ring::digest::SHA256, job.key_authorization.as_bytes());
    let mut last = String::new();
    for addr in addrs {
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let tls = connector
                .connect(sni.clone(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (_, conn) = tls.get_ref();
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            let cert = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            Ok::<_, String>((alpn, cert))
        };
        match tokio::time::timeout(VALIDATION_TIMEOUT, attempt).await {
            Ok(Ok((alpn, cert))) => {
                if alpn.as_deref() != Some(b"acme-tls/1".as_slice()) {
                    return Err((
                        ProblemType::Unauthorized,
                        format!("{addr} did not negotiate ALPN acme-tls/1"),
                    ));
                }
                let Some(der) = cert else {
                    return Err((
                        ProblemType::Unauthorized,
                        format!("{addr} sent no certificate"),
                    ));
                };
                return check_alpn_cert(&der, name, want.as_ref())
                    .map_err(|m| (ProblemType::IncorrectResponse, format!("{addr}: {m}")));
            }
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err((ProblemType::Connection, last))
}

/// Whether a tls-alpn-01 certificate names exactly `name` and carries the
/// critical acmeIdentifier extension holding `want` (SHA-256 of the key
/// authorization).
fn check_alpn_cert(der: &[u8], name: &str, want: &[u8]) -> std::result::Result<(), String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|_| "the certificate cannot be parsed".to_string())?;
    let mut dns = Vec::new();
    let mut proof = None;
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push(d.to_ascii_lowercase()),
                    _ => return Err("the certificate names more than the DNS name".into()),
                }
            }
        }
        if ext.oid.to_id_string() == ACME_IDENTIFIER_OID {
            if !ext.critical {
                return Err("the acmeIdentifier extension is not critical".into());
            }
            proof = Some(ext.value.to_vec());
        }
    }
    if dns != [name.to_string()] {
        return Err(format!("the certificate must name exactly `{name}`"));
    }
    // The extension's value is an OCTET STRING of the 32-byte digest.
    let mut expected = vec![0x04, 0x20];
    expected.extend_from_slice(want);
    match proof {
        Some(v) if v == expected => Ok(()),
        Some(_) => Err("the acmeIdentifier does not match the key authorization".into()),
        None => Err("the certificate has no acmeIdentifier extension".into()),
    }
}

/// A verifier for the tls-alpn-01 handshake: the certificate is self-signed
/// and judged by `check_alpn_cert`; handshake signatures are still verified.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        use rustls::SignatureScheme::*;
        vec![
            ECDSA_NISTP256_SHA256,
            ECDSA_NISTP384_SHA384,
            ED25519,
            RSA_PSS_SHA256,
            RSA_PSS_SHA384,
            RSA_PSS_SHA512,
            RSA_PKCS1_SHA256,
            RSA_PKCS1_SHA384,
            RSA_PKCS1_SHA512,
        ]
    }
}

/// Verify a handshake signature with the key of a certificate webpki would not
/// parse (the acmeIdentifier extension is critical and unknown to it).
fn handshake_signature(
    message: &[u8],
    cert: &rustls_pki_types::CertificateDer<'_>,
    dss: &rustls::DigitallySignedStruct,
) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
    use ring::signature as sig;
    use rustls::SignatureScheme::*;
    use x509_parser::prelude::FromDer;
    let bad = || rustls::Error::General("tls-alpn-01: bad handshake signature".into());
    let (_, c) =
        x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
    let key: &[u8] = &c.public_key().subject_public_key.data;
    let alg: &dyn sig::VerificationAlgorithm = match dss.scheme {
        ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        ED25519 => &sig::ED25519,
        RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        _ => return Err(bad()),
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map_err(|_| bad())?;
    Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
}

/// One HTTP/1.1 GET of the challenge's path from `addr`: the status and at
/// most [`MAX_CHALLENGE_RESPONSE`] bytes of body (dechunked).
async fn fetch(
    addr: SocketAddr,
    host: &str,
    token: &str,
) -> std::result::Result<(u16, Vec<u8>), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mtlsca-acme\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    (&mut s)
        .take(MAX_CHALLENGE_RESPONSE)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut body = buf[split + 4..].to_vec();
    let status_line = head.lines().next().unwrap_or("");
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or("not an HTTP/1 response")?;
    let chunked = head.lines().skip(1).any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or("bad chunked encoding")?;
    }
    Ok((code, body))
}

/// A chunked body's bytes; None when it is not chunked well.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_txt = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..)?;
    }
}
