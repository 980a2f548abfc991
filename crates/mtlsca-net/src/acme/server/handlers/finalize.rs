//! finalize (RFC 8555 §7.4): a ready order's CSR held to the order's rules
//! ([`crate::acme::server::order_rules`]) and issued through the engine under
//! the account's profile; the order then names its certificate.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hyper::StatusCode;
use time::OffsetDateTime;

use crate::acme::problem::ProblemType;
use crate::acme::server::app::App;
use crate::acme::server::objects::Identifier;
use crate::acme::server::order_rules::{check_csr_key, check_csr_names, order_request_id};
use crate::acme::server::payload::{Finalize, Post};
use crate::acme::server::problem::Problem;
use crate::acme::server::reply::Reply;
use crate::acme::server::status::OrderStatus;
use crate::acme::server::views::order_json;
use crate::issue::Issued;
use crate::store::acme::AcmeCert;

impl App {
    /// finalize: the order must be ready and the CSR ask for exactly its
    /// identifiers with a key other than the account's; then it is issued
    /// (group-committed with the other issues waiting) and the order becomes
    /// valid. A refused CSR leaves the order ready for a better one.
    pub(in crate::acme::server) async fn finalize(
        &self,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let p: Finalize = post.required("finalize")?;
        let csr_der = p
            .csr
            .get()
            .and_then(|s| B64.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemType::BadCsr,
                    "`csr` must be a base64url DER CSR",
                )
            })?;
        let expected = self.ready_order(account, id)?;
        let checked = crate::issue::read_checked_csr(&csr_der)
            .map_err(|e| Problem::engine(ProblemType::BadCsr, "the CSR", &e))?;
        let intake = checked.intake();
        let account_key = self.state().accounts.get(account).map(|a| a.key.clone());
        check_csr_key(account_key.as_ref(), &intake.spki_der)?;
        check_csr_names(&intake.content, &expected)?;
        self.begin_finalizing(id)?;
        // Issue 22, finding 6: a subject attribute nobody validated (an
        // anonymous client's `O=system:masters`) is not signed by the CA.
        let issued = self
            .engine
            .issue(
                &self.profile_of(account),
                checked.names_only(),
                Some(order_request_id(account, id)),
            )
            .await;
        match issued {
            Ok(i) => self.order_issued(base, account, id, i),
            Err(e) => {
                // The client may finalize again with a better CSR.
                if let Some(o) = self.state().orders.get_mut(id) {
                    o.status = OrderStatus::Ready;
                }
                Err(Problem::engine(ProblemType::BadCsr, "the CSR", &e))
            }
        }
    }

    /// The identifiers of `account`'s order `id`, which must be ready.
    fn ready_order(&self, account: &str, id: &str) -> Result<Vec<Identifier>, Problem> {
        let st = self.state();
        let o = st.orders.get(id).ok_or_else(Problem::not_found)?;
        if o.account != account {
            return Err(Problem::unauthorized("not this account's order"));
        }
        if o.status != OrderStatus::Ready {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                ProblemType::OrderNotReady,
                format!("the order is {}, not ready", o.status),
            ));
        }
        Ok(o.identifiers.clone())
    }

    /// The order is being finalized (`processing`): one finalize at a time.
    fn begin_finalizing(&self, id: &str) -> Result<(), Problem> {
        match self.state().orders.get_mut(id) {
            Some(o) if o.status == OrderStatus::Ready => {
                o.status = OrderStatus::Processing;
                Ok(())
            }
            _ => Err(Problem::new(
                StatusCode::FORBIDDEN,
                ProblemType::OrderNotReady,
                "the order is being finalized",
            )),
        }
    }

    /// The order's certificate was issued (and recorded, durably): offered for
    /// download, the account proven, the order valid and finished.
    fn order_issued(
        &self,
        base: &str,
        account: &str,
        id: &str,
        issued: Issued,
    ) -> Result<Reply, Problem> {
        let mut st = self.state();
        // One certificate per order: the download is named by the order,
        // so pruning the order always finds it (even after a crash lost
        // the order's last write).
        let cert_id = id.to_string();
        self.acme
            .put_cert(&AcmeCert {
                id: cert_id.clone(),
                account: account.to_string(),
                order: id.to_string(),
                chain_pem: issued.chain_pem,
            })
            .map_err(|e| Problem::internal(&e))?;
        if st.mark_proven(account) {
            self.save_account(&st, account, None)?;
        }
        st.finish_order(id, Some(OffsetDateTime::now_utc()));
        let o = st.orders.get_mut(id).ok_or_else(Problem::not_found)?;
        o.status = OrderStatus::Valid;
        o.certificate = Some(cert_id);
        o.cert_sha256 = Some(issued.record.sha256.clone());
        let body = order_json(base, id, o);
        self.save_order(&st, id)?;
        Ok(Reply::json(StatusCode::OK, body).at(format!("{base}/acme/order/{id}")))
    }
}
