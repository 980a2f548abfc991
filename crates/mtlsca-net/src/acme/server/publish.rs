//! Publication over plain HTTP (`--publish-listen ADDR`): the CRLs published in
//! the CA's `crl/` and the CA certificates, for relying parties
//! and CRL fetchers (which do not speak HTTPS to the CA whose certificates they
//! check: RFC 5280 §4.2.1.13 names HTTP).
//!
//! - `GET /crl/NAME.crl`: the CRL as DER, `application/pkix-crl`; NAME is a
//!   CA generation (`root`, `device`, `entity`, `device-2`, …). Read from disk
//!   on each request, so a new one shows at once; `serve`'s publisher keeps
//!   them current (`publisher.rs`). A CRL past its nextUpdate is never served:
//!   503 with `Retry-After`, logged, and the publisher is asked for a new one
//!   (its times are parsed once per version of the file, not per request);
//! - `GET /ca/NAME.crt`: a CA certificate as DER,
//!   `application/pkix-cert`; `.pem` the same as PEM, and `/ca/ca-bundle.pem`
//!   the issuing CAs and the root, `application/x-pem-file`.
//!
//! GET and HEAD only (405 otherwise); nothing else is served (404). Limits: the
//! same connection limits as the ACME listener (`--max-connections`, and
//! `--max-connections-per-client` for one client network), request headers
//! within `--idle-timeout` and at most 16 KiB, a connection at most 60 s, files
//! of at most [`MAX_PUBLISHED_BYTES`].

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;

use super::accept::{accept_within, peer_text};
use super::log::log_refusal;
use super::publisher::Crls;
use crate::conn_limit::ConnectionGate;

/// The largest file served (a CRL of about 300,000 entries).
pub const MAX_PUBLISHED_BYTES: u64 = super::publisher::MAX_CRL_BYTES;
/// `Retry-After` of a 503 for a CRL past its nextUpdate (the publisher was
/// asked for a new one: a second or so unless signing fails).
const STALE_RETRY_AFTER_SECS: u64 = 5;
const PUBLISH_CONNECTION_MAX: Duration = Duration::from_secs(60);

/// What a path names: the file in the CA directory and how it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Published {
    /// A CRL (stored as PEM or DER), served as DER.
    Crl(String),
    /// A certificate file (PEM), served as DER.
    CertDer(String),
    /// A certificate file (PEM), served as it is.
    Pem(String),
}

/// The file behind a request path, or None. NAME is a CA generation's name
/// as `ca::CaId::parse` reads it (`root`, `device`, `entity`, `device-2`, …:
/// one spelling per generation, nothing else).
pub(super) fn route(path: &str) -> Option<Published> {
    let ca_file = |name: &str| crate::ca::CaId::parse(name).map(|id| id.cert_file());
    if let Some(name) = path
        .strip_prefix("/crl/")
        .and_then(|r| r.strip_suffix(".crl"))
    {
        return crate::ca::CaId::parse(name)
            .map(|id| Published::Crl(format!("crl/{}.crl", id.name())));
    }
    if path == "/ca/ca-bundle.pem" {
        return Some(Published::Pem("ca-bundle.pem".into()));
    }
    if let Some(name) = path
        .strip_prefix("/ca/")
        .and_then(|r| r.strip_suffix(".crt"))
    {
        return ca_file(name).map(Published::CertDer);
    }
    if let Some(name) = path
        .strip_prefix("/ca/")
        .and_then(|r| r.strip_suffix(".pem"))
    {
        return ca_file(name).map(Published::Pem);
    }
    None
}

/// A bounded read of a file in the CA directory, with the metadata of the
/// handle it was read from (the same version of the file, even when it is
/// replaced meanwhile).
fn read_bounded(path: &Path) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if meta.len() > MAX_PUBLISHED_BYTES {
        return Err(std::io::Error::other(
            "the file is over the publication limit",
        ));
    }
    let mut out = Vec::new();
    f.take(MAX_PUBLISHED_BYTES).read_to_end(&mut out)?;
    Ok((out, meta))
}

/// What the door serves from: the CA directory, and the CRLs' times shared
/// with the publisher.
#[derive(Debug)]
pub(super) struct Door {
    pub(super) ca_dir: PathBuf,
    pub(super) crls: Arc<Crls>,
}

/// The first PEM block of `tag` as DER; DER input is returned as it is.
fn der_of(bytes: Vec<u8>, tag: &str) -> Option<Vec<u8>> {
    if !bytes.starts_with(b"-----BEGIN") {
        // Already DER (an ASN.1 SEQUENCE), or not served.
        return (bytes.first() == Some(&0x30)).then_some(bytes);
    }
    pem::parse_many(&bytes)
        .ok()?
        .into_iter()
        .find(|p| p.tag() == tag)
        .map(|p| p.into_contents())
}

fn plain(status: StatusCode, text: &str) -> (StatusCode, &'static str, Vec<u8>) {
    (
        status,
        "text/plain; charset=utf-8",
        format!("{text}\n").into_bytes(),
    )
}

/// Answer one request.
pub(super) async fn answer(
    door: Arc<Door>,
    req: Request<Incoming>,
    peer: &str,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut retry_after = None;
    let (status, ctype, body) = if method != Method::GET && method != Method::HEAD {
        plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD")
    } else {
        match route(&path) {
            None => plain(
                StatusCode::NOT_FOUND,
                "not found (served: /crl/NAME.crl, /ca/NAME.crt, /ca/NAME.pem, /ca/ca-bundle.pem)",
            ),
            Some(what) => {
                let file = match &what {
                    Published::Crl(f) | Published::CertDer(f) | Published::Pem(f) => f.clone(),
                };
                let full = door.ca_dir.join(&file);
                let is_crl = matches!(what, Published::Crl(_));
                let d = door.clone();
                let read = tokio::task::spawn_blocking(move || {
                    read_bounded(&full).map(|(bytes, meta)| {
                        // Parsed once per version of the file.
                        let times = is_crl.then(|| d.crls.times(&full, &meta, &bytes));
                        (bytes, times.flatten())
                    })
                })
                .await;
                let now = time::OffsetDateTime::now_utc();
                match read {
                    Ok(Ok((_, Some((_, next))))) if is_crl && next <= now => {
                        // Never a CRL past its nextUpdate: a relying party
                        // would refuse it, or worse, use it.
                        door.crls.poke();
                        retry_after = Some(STALE_RETRY_AFTER_SECS);
                        plain(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &format!(
                                "{file} is past its nextUpdate ({}); a new one is being signed",
                                crate::timefmt::rfc3339(next)
                            ),
                        )
                    }
                    Ok(Ok((bytes, times))) => {
                        let served = match what {
                            Published::Crl(_) => times
                                .and_then(|_| der_of(bytes, "X509 CRL"))
                                .map(|d| (StatusCode::OK, "application/pkix-crl", d)),
                            Published::CertDer(_) => der_of(bytes, "CERTIFICATE")
                                .map(|d| (StatusCode::OK, "application/pkix-cert", d)),
                            Published::Pem(_) => {
                                Some((StatusCode::OK, "application/x-pem-file", bytes))
                            }
                        };
                        served.unwrap_or_else(|| {
                            plain(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                &format!("{file} cannot be read as what it should hold"),
                            )
                        })
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                        if is_crl {
                            door.crls.poke();
                        }
                        plain(
                            StatusCode::NOT_FOUND,
                            &format!("{file} is not published yet (run `mtlsca crl`)"),
                        )
                    }
                    _ => plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &format!("{file} cannot be read"),
                    ),
                }
            }
        }
    };
    if !status.is_success() {
        let request = format!("{method} {}", crate::names::printable(&path));
        let reason = String::from_utf8_lossy(&body);
        log_refusal(peer, &request, status, "publication", &reason);
    }
    let mut builder = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, ctype)
        .header(CACHE_CONTROL, "no-cache");
    if status == StatusCode::METHOD_NOT_ALLOWED {
        builder = builder.header(hyper::header::ALLOW, "GET, HEAD");
    }
    if let Some(secs) = retry_after {
        builder = builder.header(hyper::header::RETRY_AFTER, secs);
    }
    let body = if method == Method::HEAD {
        builder = builder.header(hyper::header::CONTENT_LENGTH, body.len());
        Vec::new()
    } else {
        body
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Serve publication requests on `listener` until shutdown.
pub(super) async fn publish_loop(
    listener: tokio::net::TcpListener,
    door: Door,
    gate: ConnectionGate,
    idle_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let door = Arc::new(door);
    let mut refusals = crate::conn_limit::RefusalThrottle::default();
    loop {
        let Some((tcp, permit)) =
            accept_within(&listener, &gate, &mut refusals, &mut shutdown).await
        else {
            return;
        };
        let door = door.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let peer = peer_text(&tcp);
            let svc = hyper::service::service_fn(move |req| {
                let door = door.clone();
                let peer = peer.clone();
                async move { Ok::<_, Infallible>(answer(door, req, &peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle_timeout)
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            let mut conn = std::pin::pin!(conn);
            let deadline = tokio::time::sleep(PUBLISH_CONNECTION_MAX);
            tokio::pin!(deadline);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                }
                _ = &mut deadline => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_published_files_are_routed() {
        let crl = |f: &str| Some(Published::Crl(f.into()));
        assert_eq!(route("/crl/device.crl"), crl("crl/device.crl"));
        assert_eq!(route("/crl/device-2.crl"), crl("crl/device-2.crl"));
        assert_eq!(route("/crl/root-3.crl"), crl("crl/root-3.crl"));
        assert_eq!(
            route("/ca/root.crt"),
            Some(Published::CertDer("root.pem".into()))
        );
        assert_eq!(
            route("/ca/root-2.crt"),
            Some(Published::CertDer("root-2.pem".into()))
        );
        assert_eq!(
            route("/ca/entity.pem"),
            Some(Published::Pem("entity-ca.pem".into()))
        );
        assert_eq!(
            route("/ca/entity-4.pem"),
            Some(Published::Pem("entity-ca-4.pem".into()))
        );
        assert_eq!(
            route("/ca/ca-bundle.pem"),
            Some(Published::Pem("ca-bundle.pem".into()))
        );
        for p in [
            "/crl/../private/root.key.crl",
            "/crl/other.crl",
            "/crl/device-1.crl",
            "/crl/device-02.crl",
            "/crl/device-2/../x.crl",
            "/ca/../private/root.pem",
            "/ca/device-ca.pem",
            "/ca/device-ca-2.pem",
            "/ca/root-2-by-1.pem",
            "/private/root.key",
            "/",
            "/crl/device.crl/",
        ] {
            assert_eq!(route(p), None, "{p}");
        }
    }

    #[test]
    fn pem_is_served_as_der_and_other_bytes_are_not() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x01];
        let pem = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        assert_eq!(der_of(pem.into_bytes(), "X509 CRL"), Some(der.clone()));
        assert_eq!(der_of(der.clone(), "X509 CRL"), Some(der));
        assert_eq!(der_of(b"hello".to_vec(), "X509 CRL"), None);
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x00]));
        assert_eq!(der_of(cert.into_bytes(), "X509 CRL"), None);
    }
}
