//! revokeCert (RFC 8555 §7.6) and a certificate's download (§7.4.2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hyper::StatusCode;
use x509_parser::prelude::FromDer;

use crate::acme::problem::ProblemType;
use crate::acme::server::app::App;
use crate::acme::server::order_rules::{ordered_by, revocation_reason, same_key};
use crate::acme::server::payload::{Post, RevokeCert};
use crate::acme::server::problem::Problem;
use crate::acme::server::reply::Reply;
use crate::error::Error;

impl App {
    /// revokeCert: signed by the account that ordered the certificate, or by
    /// the certificate's own key; durable when answered.
    pub(in crate::acme::server) async fn revoke(&self, post: &Post) -> Result<Reply, Problem> {
        let p: RevokeCert = post.required("revokeCert")?;
        let der = p
            .certificate
            .get()
            .and_then(|s| B64.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| Problem::malformed("`certificate` must be base64url DER"))?;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|_| Problem::malformed("`certificate` is not an X.509 certificate"))?;
        let reason = revocation_reason(p.reason.as_ref())?;
        let sha256 = crate::hex::encode(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
        let allowed = match &post.account {
            // The engine records ACME certificates under `acme/acct/A/order/O`.
            Some(acct) => {
                let record = self
                    .engine
                    .lookup(sha256.clone())
                    .await
                    .map_err(|e| Problem::internal(&e))?
                    .filter(|r| r.sha256 == sha256);
                ordered_by(record.and_then(|r| r.request_id).as_deref(), acct)
            }
            None => same_key(Some(&post.key), cert.public_key().raw),
        };
        if !allowed {
            return Err(Problem::unauthorized(
                "revokeCert must be signed by the account that ordered the certificate or by its key",
            ));
        }
        match self.engine.revoke(sha256, reason).await {
            Ok(_) => Ok(Reply::body(StatusCode::OK, "application/json", Vec::new())),
            Err(Error::Refused(r)) if r.has(crate::rules::Rule::AlreadyRevoked) => {
                Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemType::AlreadyRevoked,
                    r.messages().join("; "),
                ))
            }
            Err(Error::Refused(r)) => Err(Problem::unauthorized(r.messages().join("; "))),
            Err(e) => Err(Problem::internal(&e)),
        }
    }

    /// The certificate chain of one of `account`'s orders (PEM).
    pub(in crate::acme::server) fn certificate(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Reply, Problem> {
        let c = self
            .acme
            .cert(id)
            .map_err(|e| Problem::internal(&e))?
            .ok_or_else(Problem::not_found)?;
        if c.account != account {
            return Err(Problem::unauthorized("not this account's certificate"));
        }
        Ok(Reply::body(
            StatusCode::OK,
            "application/pem-certificate-chain",
            c.chain_pem.into_bytes(),
        ))
    }
}
