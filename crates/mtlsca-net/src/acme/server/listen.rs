//! The listeners of `mtlsca serve`: the ACME server over TLS with its own
//! certificate (issued through the engine and renewed in place), the
//! publication listener and the CRL publisher (every CRL published before
//! that listener accepts), the control socket, pruning every minute, and a
//! clean stop on SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::StatusCode;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::accept::{accept_within, Peer};
use super::app::App;
use super::engine::Engine;
use super::http::Front;
use super::log::log_refusal;
use super::options::ServeOptions;
use super::publish;
use super::publisher::{Crls, Publisher};
use crate::conn_limit::ConnectionGate;
use crate::error::{Error, Result};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_MAX: Duration = Duration::from_secs(300);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often expired orders and accounts are pruned while the server runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The certificate rustls presents; swapped on renewal.
#[derive(Debug)]
struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|g| g.clone())
    }
}

/// Issue the server's certificate through the engine (device profile), from a
/// CSR over a key generated here; returns it with the time to renew it.
async fn own_certificate(
    engine: &Engine,
    profile: &str,
    names: &[String],
    listen: SocketAddr,
) -> Result<(Arc<CertifiedKey>, OffsetDateTime)> {
    let fail = |m: String| Error::State(format!("the server's certificate: {m}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| fail(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    for n in names {
        let dns = rcgen::string::Ia5String::try_from(n.clone()).map_err(|_| {
            Error::Usage(format!(
                "--name `{}` is not a DNS name",
                crate::names::printable(n)
            ))
        })?;
        params.subject_alt_names.push(rcgen::SanType::DnsName(dns));
    }
    if !listen.ip().is_unspecified() {
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(listen.ip()));
    }
    let csr = params
        .serialize_request(&key)
        .map_err(|e| fail(e.to_string()))?;
    let csr = crate::issue::read_checked_csr(csr.der())?;
    let issued = engine.issue(profile, csr, None).await?;
    let certs = pem::parse_many(&issued.chain_pem)
        .map_err(|e| fail(e.to_string()))?
        .into_iter()
        .map(|p| rustls_pki_types::CertificateDer::from(p.into_contents()))
        .collect::<Vec<_>>();
    let key_der = rustls_pki_types::PrivateKeyDer::Pkcs8(
        rustls_pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    );
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| fail(e.to_string()))?;
    let r = &issued.record;
    let renew_at = r.not_before + (r.not_after - r.not_before) * 2 / 3;
    Ok((Arc::new(CertifiedKey::new(certs, signing)), renew_at))
}

/// Serve until SIGTERM or Ctrl-C, then stop cleanly: connections drained,
/// the nonces handed to the next run.
pub(super) async fn run(
    opts: ServeOptions,
    engine: Engine,
    acme: crate::store::acme::AcmeStore,
    socket: crate::control::SocketServer,
) -> Result<()> {
    if opts.names.is_empty() {
        return Err(Error::Usage("give the server's name with --name".into()));
    }
    let (listener, local) = bind(opts.listen).await?;
    let publish = match opts.publish_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    // Every CA's CRL, before the publication listener accepts anything: its
    // CRL URLs never answer 404. A failure is logged and retried by the
    // publisher; it does not stop the server.
    let crls = Arc::new(Crls::default());
    let publisher = Publisher::new(engine.clone(), crls.clone(), opts.crl_next_update);
    let start_failed = publisher.publish("start").await.is_err();
    let (cert, renew_at) = own_certificate(&engine, &opts.tls_profile, &opts.names, local).await?;
    let slot = Arc::new(CertSlot(RwLock::new(cert)));
    let acceptor = tls_acceptor(slot.clone())?;

    let app = Arc::new(App::new(engine.clone(), acme, &opts)?);
    let front = Arc::new(Front::new(app, &opts.names, local, opts.rate_limit)?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(renew_loop(
        engine.clone(),
        opts.tls_profile.clone(),
        opts.names.clone(),
        local,
        slot,
        renew_at,
        shutdown_rx.clone(),
    ));
    let control = tokio::spawn(socket.serve(engine.service.clone(), shutdown_rx.clone()));
    tokio::spawn(publisher.run(start_failed, shutdown_rx.clone()));
    tokio::spawn(prune_loop(front.clone(), shutdown_rx.clone()));
    let gate = ConnectionGate::new(opts.connections);
    let accept = tokio::spawn(accept_loop(
        listener,
        acceptor,
        front.clone(),
        opts.idle_timeout,
        shutdown_rx.clone(),
        gate.clone(),
    ));
    let publishing = publish.map(|(l, at)| {
        (
            tokio::spawn(publish::publish_loop(
                l,
                publish::Door {
                    ca_dir: opts.ca_dir.clone(),
                    crls,
                },
                ConnectionGate::new(opts.connections),
                opts.idle_timeout,
                shutdown_rx.clone(),
            )),
            at,
        )
    });
    announce(local, publishing.as_ref().map(|(_, at)| *at));
    stop_signal().await;
    let _ = shutdown_tx.send(true);
    let _ = accept.await;
    if let Some((task, _)) = publishing {
        let _ = task.await;
    }
    let _ = control.await;
    // Wait for connections in flight to finish (each returns its permit).
    gate.drain(DRAIN_TIMEOUT).await;
    // Validations still running write their outcome after this; the engine's
    // final flush covers them.
    front.save_nonces()
}

/// A listener on `addr`, and the address it got (port 0: any free port).
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let fail = |e: std::io::Error| Error::State(format!("cannot listen on {addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(fail)?;
    let local = listener.local_addr().map_err(fail)?;
    Ok((listener, local))
}

/// TLS for the ACME listener: HTTP/1.1, the certificate in `slot`.
fn tls_acceptor(slot: Arc<CertSlot>) -> Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::State(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(slot);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
}

/// The lines that say where the server listens (tests and scripts read them).
fn announce(local: SocketAddr, publishing: Option<SocketAddr>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "serving https://{local} (ACME directory https://{local}/acme/directory)"
    );
    if let Some(at) = publishing {
        let _ = writeln!(
            out,
            "publishing http://{at} (CRLs /crl/NAME.crl, CA certificates /ca/NAME.crt and /ca/NAME.pem)"
        );
    }
    let _ = out.flush();
}

/// Forget expired orders and accounts, in memory and in the store, every
/// [`PRUNE_EVERY`] (also when nobody makes new orders).
async fn prune_loop(front: Arc<Front>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(p) = front.prune(OffsetDateTime::now_utc()) {
            crate::serverlog::line(format!("error: pruning expired ACME state: {}", p.detail));
        }
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn renew_loop(
    engine: Engine,
    profile: String,
    names: Vec<String>,
    local: SocketAddr,
    slot: Arc<CertSlot>,
    mut renew_at: OffsetDateTime,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Wake at the renewal time (checked at least hourly, against clock jumps).
        let wait = (renew_at - OffsetDateTime::now_utc())
            .clamp(time::Duration::seconds(1), time::Duration::hours(1));
        let wait = Duration::from_millis(wait.whole_milliseconds().max(1000) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        if OffsetDateTime::now_utc() < renew_at {
            continue;
        }
        match own_certificate(&engine, &profile, &names, local).await {
            Ok((cert, next)) => {
                if let Ok(mut g) = slot.0.write() {
                    *g = cert;
                }
                renew_at = next;
            }
            Err(e) => {
                crate::serverlog::line(format!(
                    "error: renewing the server's certificate (next try in a minute): {e}"
                ));
                renew_at = OffsetDateTime::now_utc() + time::Duration::minutes(1);
            }
        }
    }
}

/// Accept TLS connections the gate admits until shutdown, each served on a
/// task of its own.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    front: Arc<Front>,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
    gate: ConnectionGate,
) {
    let mut refusals = crate::conn_limit::RefusalThrottle::default();
    loop {
        let Some((tcp, permit)) =
            accept_within(&listener, &gate, &mut refusals, &mut shutdown).await
        else {
            return;
        };
        let (acceptor, front, shutdown) = (acceptor.clone(), front.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(tcp, acceptor, front, idle, shutdown).await;
        });
    }
}

/// One connection: the TLS handshake within [`HANDSHAKE_TIMEOUT`] (a failed
/// or slow one is logged), then HTTP/1.1 requests until the client is done,
/// idle for `idle`, [`CONNECTION_MAX`] has passed, or the server stops.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    front: Arc<Front>,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = Peer::of(&tcp);
    let handshake = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err((
            StatusCode::BAD_REQUEST,
            format!("TLS handshake failed: {e}"),
        )),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            format!("TLS handshake not done within {HANDSHAKE_TIMEOUT:?}"),
        )),
    };
    let stream = match handshake {
        Ok(stream) => stream,
        Err((status, reason)) => {
            return log_refusal(&peer.text, "connection", status, "tls", &reason)
        }
    };
    let svc = hyper::service::service_fn(move |req| {
        let front = front.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(front.handle(req, &peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle)
        .max_buf_size(64 * 1024)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    let deadline = tokio::time::sleep(CONNECTION_MAX);
    tokio::pin!(deadline);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, conn.as_mut()).await;
        }
        _ = &mut deadline => {}
    }
}
