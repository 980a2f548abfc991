//! The ACME server's handle on the CA service ([`crate::service`]): the engine
//! thread (CA, store, issuer) lives there; this adapter keeps the calls the
//! handlers make.

use super::options::ServeOptions;
use crate::ca::Ca;
use crate::error::{Error, Result};
use crate::issue::{CheckedCsr, IssuanceRequest, Issued, KeySource, Output};
use crate::policy::RequestedContent;
use crate::role::Role;
use crate::rules::Origin;
use crate::service::{ops, Service, ServiceOptions};

/// A handle on the CA service. When the last handle is dropped, the engine
/// finishes its jobs, closes the store and ends.
#[derive(Clone)]
pub(super) struct Engine {
    pub(super) service: Service,
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
        crate::service::Engine,
    )> {
        let profile = Ca::open(&opts.ca_dir)?.profile(&opts.acme_profile)?;
        if profile.role != Role::Device {
            return Err(Error::Usage(format!(
                "--acme-profile `{}` is an entity profile; ACME proves control of DNS names and IPs, so it issues from device or workload profiles only",
                opts.acme_profile
            )));
        }
        let (service, thread, acme) = Service::start_with(
            &ServiceOptions {
                ca_dir: opts.ca_dir.clone(),
                lock_timeout: opts.lock_timeout,
                passphrase: opts.passphrase.clone(),
            },
            |_, store| store.acme(),
        )?;
        Ok((Engine { service }, acme, thread))
    }

    pub(super) async fn check(&self, profile: &str, content: RequestedContent) -> Result<()> {
        let op = ops::Check {
            profile: profile.to_string(),
            content,
        };
        self.service.call(op).await
    }

    pub(super) async fn lookup(&self, serial: String) -> Result<Option<crate::store::Record>> {
        self.service.call(ops::Lookup { query: serial }).await
    }

    /// Revoke exactly the certificate of this fingerprint (durable on return).
    pub(super) async fn revoke(
        &self,
        sha256: String,
        reason: crate::crl::Reason,
    ) -> Result<crate::store::Record> {
        self.service.call(ops::RevokeExact { sha256, reason }).await
    }

    /// Whether a deferred retirement (`--revoke-old --grace`) fell due: the
    /// CRLs must then be published (publication applies it first).
    pub(super) async fn retirement_due(&self) -> Result<bool> {
        let now = time::OffsetDateTime::now_utc();
        let pending = self.service.call(ops::Retiring).await?;
        Ok(pending.iter().any(|p| p.due <= now))
    }

    /// Sign every CA's CRL valid for `next_update` and publish it in the CA's
    /// `crl/` (`crl::publish_all`, on the engine thread).
    pub(super) async fn publish_crls(
        &self,
        next_update: time::Duration,
    ) -> Result<Vec<crate::service::SignedCrl>> {
        let op = ops::SignCrls {
            issuer: None,
            generation: None,
            target: ops::CrlTarget::Published,
            next_update,
        };
        self.service.call(op).await
    }

    /// Issue from a CSR: group-committed with the other issues waiting; answered
    /// once the record is durable.
    pub(super) async fn issue(
        &self,
        profile: &str,
        csr: CheckedCsr,
        request_id: Option<String>,
    ) -> Result<Issued> {
        self.service
            .issue(IssuanceRequest {
                profile: profile.to_string(),
                content: RequestedContent::default(),
                key: KeySource::CheckedCsr(Box::new(csr)),
                request_id,
                output: Output::None,
                origin: Origin::Csr,
                replaces: None,
            })
            .await
    }
}
