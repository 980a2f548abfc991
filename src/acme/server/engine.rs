//! The engine thread: the CA, its store and the issuer, owned by one thread.

use super::*;

// ---------------------------------------------------------------------------
// The engine thread
// ---------------------------------------------------------------------------

pub(super) enum Job {
    Check {
        profile: String,
        content: Box<RequestedContent>,
        reply: oneshot::Sender<Result<()>>,
    },
    Issue {
        profile: String,
        csr: Vec<u8>,
        request_id: Option<String>,
        reply: oneshot::Sender<Result<Issued>>,
    },
    Lookup {
        serial: String,
        reply: oneshot::Sender<Result<Option<crate::store::Record>>>,
    },
    Revoke {
        sha256: String,
        reason: crate::crl::Reason,
        reply: oneshot::Sender<Result<crate::store::Record>>,
    },
}

/// A handle on the engine thread. When the last handle is dropped, the thread
/// finishes its jobs, closes the store and ends.
#[derive(Clone)]
pub(super) struct Engine {
    pub(super) jobs: std::sync::mpsc::Sender<Job>,
}

pub(super) fn engine_gone() -> Error {
    Error::State("the issuing engine stopped".into())
}

impl Engine {
    /// Open the CA and the store on a thread of their own; fails as the CLI
    /// would (no CA, store locked, an entity profile for ACME).
    /// Also returns the ACME trees of the store (ACME state is written from the
    /// network tasks; sled handles are shared across threads).
    pub(super) fn start(
        opts: &ServeOptions,
    ) -> Result<(
        Engine,
        crate::store::acme::AcmeStore,
        std::thread::JoinHandle<()>,
    )> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<Result<crate::store::acme::AcmeStore>>();
        let (dir, wait, pass, acme_profile) = (
            opts.ca_dir.clone(),
            opts.lock_timeout,
            opts.passphrase.clone(),
            opts.acme_profile.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("mtlsca-engine".into())
            .spawn(move || {
                let opened = (|| {
                    let ca = Ca::open(&dir)?.with_passphrase_source(pass);
                    let profile = ca.profile(&acme_profile)?;
                    if profile.role != Role::Device {
                        return Err(Error::Usage(format!(
                            "--acme-profile `{acme_profile}` is an entity profile; ACME proves control of DNS names and IPs, so it issues from device or workload profiles only"
                        )));
                    }
                    let store = Store::open(&dir, wait)?;
                    let acme = store.acme()?;
                    Ok((ca, store, acme))
                })();
                let (ca, store, acme) = match opened {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let issuer = match Issuer::new(&ca, &store) {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(acme));
                while let Ok(job) = rx.recv() {
                    let now = OffsetDateTime::now_utc();
                    match job {
                        Job::Check {
                            profile,
                            content,
                            reply,
                        } => {
                            let req = IssuanceRequest {
                                profile,
                                content: *content,
                                key: KeySource::Generate(None),
                                request_id: None,
                                output: Output::None,
                                origin: Origin::Manifest,
                            };
                            let _ = reply.send(issuer.check_request(&req, now));
                        }
                        Job::Issue {
                            profile,
                            csr,
                            request_id,
                            reply,
                        } => {
                            let req = IssuanceRequest {
                                profile,
                                content: RequestedContent::default(),
                                key: KeySource::Csr(csr),
                                request_id,
                                output: Output::None,
                                origin: Origin::Csr,
                            };
                            let _ = reply.send(issuer.issue(&req, now));
                        }
                        Job::Lookup { serial, reply } => {
                            let _ = reply.send(store.find(&serial));
                        }
                        Job::Revoke {
                            sha256,
                            reason,
                            reply,
                        } => {
                            // Only the exact certificate (by fingerprint), durable on return.
                            let r = match store.find(&sha256) {
                                Ok(Some(rec)) if rec.sha256 == sha256 => {
                                    crate::crl::revoke(&store, &rec.serial, reason, now)
                                }
                                Ok(_) => Err(Error::refused("this CA did not issue the certificate")),
                                Err(e) => Err(e),
                            };
                            let _ = reply.send(r);
                        }
                    }
                }
                let _ = store.flush();
            })
            .map_err(|e| Error::State(format!("cannot start the engine thread: {e}")))?;
        let acme = ready_rx.recv().map_err(|_| engine_gone())??;
        Ok((Engine { jobs: tx }, acme, thread))
    }

    pub(super) async fn check(&self, profile: &str, content: RequestedContent) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Check {
                profile: profile.to_string(),
                content: Box::new(content),
                reply,
            })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }

    pub(super) async fn lookup(&self, serial: String) -> Result<Option<crate::store::Record>> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Lookup { serial, reply })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }

    pub(super) async fn revoke(
        &self,
        sha256: String,
        reason: crate::crl::Reason,
    ) -> Result<crate::store::Record> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Revoke {
                sha256,
                reason,
                reply,
            })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }

    pub(super) async fn issue(
        &self,
        profile: &str,
        csr: Vec<u8>,
        request_id: Option<String>,
    ) -> Result<Issued> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job::Issue {
                profile: profile.to_string(),
                csr,
                request_id,
                reply,
            })
            .map_err(|_| engine_gone())?;
        rx.await.map_err(|_| engine_gone())?
    }
}
