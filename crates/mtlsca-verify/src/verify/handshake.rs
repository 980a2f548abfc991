//! A real TLS 1.3 handshake between two identities over loopback, with rustls
//! (ring): the responder is the TLS server, the initiator the TLS client, both
//! authenticated by the draft-aware verifiers. Bounded in time; 127.0.0.1 only.
//! The handshake runs at the time it is given (a fixed rustls time provider), so
//! it agrees with the static verdict at `--at`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use serde::Serialize;
use time::OffsetDateTime;

use super::rustls_verifiers::{
    describe_tls_error, DraftClientCertVerifier, DraftPolicy, DraftServerCertVerifier,
};

/// One end's identity: its chain (leaf first) and private key.
pub struct Identity {
    /// Its certificate first, then the intermediates it sends.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

/// What the handshake showed.
#[derive(Debug, Clone, Serialize)]
pub struct HandshakeReport {
    /// The handshake completed and both ends accepted each other.
    pub ok: bool,
    /// The TLS version negotiated, when it got that far.
    pub protocol: Option<String>,
    /// The cipher suite negotiated, when it got that far.
    pub cipher_suite: Option<String>,
    /// "completed", or who refused whom and why.
    pub outcome: String,
}

#[derive(Debug)]
struct FixedTime(UnixTime);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

/// Everything a loopback handshake needs.
pub struct Handshake {
    /// The TLS client.
    pub initiator: Identity,
    /// The TLS server.
    pub responder: Identity,
    /// What the initiator accepts as responder.
    pub initiator_accepts: DraftPolicy,
    /// What the responder accepts as initiator.
    pub responder_accepts: DraftPolicy,
    /// The name the initiator dials (checked only for device responders).
    pub server_name: ServerName<'static>,
    /// The time both ends validate at.
    pub at: OffsetDateTime,
    /// How long the handshake may take, end to end.
    pub timeout: Duration,
}

fn tls_error(e: &rustls::Error) -> String {
    describe_tls_error(e)
}

fn io_error(e: &std::io::Error) -> String {
    describe_tls_error(e)
}

/// Whether an end's error is the alert its peer sent (rustls: "received fatal
/// alert: ..."), rather than its own refusal.
fn received_alert(e: &str) -> bool {
    e.contains("received fatal alert") || e.contains("closed the connection")
}

impl Handshake {
    /// Run it. Never fails: setup problems are reported as the outcome.
    /// Run the handshake over 127.0.0.1; never fails, what went wrong is in the report.
    pub fn run(self) -> HandshakeReport {
        match self.run_inner() {
            Ok(r) => r,
            Err(outcome) => HandshakeReport {
                ok: false,
                protocol: None,
                cipher_suite: None,
                outcome,
            },
        }
    }

    fn configs(&self) -> Result<(ServerConfig, ClientConfig), String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let secs = self.at.unix_timestamp().max(0) as u64;
        let time = Arc::new(FixedTime(UnixTime::since_unix_epoch(Duration::from_secs(
            secs,
        ))));
        let server = ServerConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(Arc::new(DraftClientCertVerifier::new(
                self.responder_accepts.clone(),
            )))
            .with_single_cert(self.responder.chain.clone(), self.responder.key.clone_key())
            .map_err(|e| {
                format!(
                    "the responder's key cannot be used with its certificate: {}",
                    tls_error(&e)
                )
            })?;
        let client = ClientConfig::builder_with_details(provider, time)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DraftServerCertVerifier::new(
                self.initiator_accepts.clone(),
            )))
            .with_client_auth_cert(self.initiator.chain.clone(), self.initiator.key.clone_key())
            .map_err(|e| {
                format!(
                    "the initiator's key cannot be used with its certificate: {}",
                    tls_error(&e)
                )
            })?;
        Ok((server, client))
    }

    fn run_inner(&self) -> Result<HandshakeReport, String> {
        let (server_cfg, client_cfg) = self.configs()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let timeout = self.timeout;
        let server = std::thread::spawn(move || serve(listener, server_cfg, timeout));
        let client = dial(addr, client_cfg, self.server_name.clone(), timeout);
        let server = server
            .join()
            .unwrap_or_else(|_| Err("the responder thread failed".into()));
        Ok(match (server, client) {
            (Ok(()), Ok((protocol, suite))) => HandshakeReport {
                ok: true,
                protocol: Some(protocol),
                cipher_suite: Some(suite),
                outcome: "completed: both ends authenticated".into(),
            },
            // The end that refused sent the alert; the other one received it.
            (_, Err(c)) if !received_alert(&c) => HandshakeReport {
                ok: false,
                protocol: None,
                cipher_suite: None,
                outcome: format!("the initiator aborted the handshake: {c}"),
            },
            (Err(s), _) => HandshakeReport {
                ok: false,
                protocol: None,
                cipher_suite: None,
                outcome: format!("the responder aborted the handshake: {s}"),
            },
            (Ok(()), Err(c)) => HandshakeReport {
                ok: false,
                protocol: None,
                cipher_suite: None,
                outcome: format!("the initiator aborted the handshake: {c}"),
            },
        })
    }
}

/// Accept one connection, complete the handshake, send "ok".
fn serve(listener: TcpListener, cfg: ServerConfig, timeout: Duration) -> Result<(), String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let mut sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no initiator connected in time".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut conn = ServerConnection::new(Arc::new(cfg)).map_err(|e| tls_error(&e))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| io_error(&e))?;
    }
    conn.writer().write_all(b"ok").map_err(|e| e.to_string())?;
    conn.send_close_notify();
    while conn.wants_write() {
        conn.complete_io(&mut sock).map_err(|e| io_error(&e))?;
    }
    Ok(())
}

/// Connect, complete the handshake, and read the responder's "ok" (in TLS 1.3
/// the client finishes first; a refusal of its certificate arrives after).
fn dial(
    addr: SocketAddr,
    cfg: ClientConfig,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<(String, String), String> {
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut conn = ClientConnection::new(Arc::new(cfg), name).map_err(|e| tls_error(&e))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| io_error(&e))?;
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    while got.len() < 2 {
        if Instant::now() > deadline {
            return Err("no answer from the responder in time".into());
        }
        let (read, _) = conn.complete_io(&mut sock).map_err(|e| io_error(&e))?;
        let mut buf = [0u8; 16];
        match conn.reader().read(&mut buf) {
            Ok(0) => return Err("the responder closed the connection".into()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if read == 0 {
                    return Err("the responder closed the connection".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let protocol = conn
        .protocol_version()
        .map(|v| {
            format!("{v:?}")
                .replace("TLSv1_3", "TLS 1.3")
                .replace("TLSv1_2", "TLS 1.2")
        })
        .unwrap_or_default();
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    Ok((protocol, suite))
}
