//! The directory (RFC 8555 §7.1.1) and renewalInfo (ARI, RFC 9773).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::json;
use time::OffsetDateTime;

use crate::acme::server::app::App;
use crate::acme::server::problem::Problem;
use crate::acme::server::reply::Reply;
use crate::acme::server::views::rfc3339;

impl App {
    /// The directory, its URLs under `base`.
    pub(in crate::acme::server) fn directory(&self, base: &str) -> Reply {
        Reply::json(
            StatusCode::OK,
            json!({
                "newNonce": format!("{base}/acme/new-nonce"),
                "newAccount": format!("{base}/acme/new-account"),
                "newOrder": format!("{base}/acme/new-order"),
                "revokeCert": format!("{base}/acme/revoke-cert"),
                "keyChange": format!("{base}/acme/key-change"),
                "renewalInfo": format!("{base}/acme/renewal-info"),
                "meta": {"externalAccountRequired": self.require_eab},
            }),
        )
    }

    /// renewalInfo (ARI, RFC 9773): `AKI.SERIAL` (base64url each) → the window
    /// to renew in: the last third of the lifetime but its final sixth; for a
    /// revoked certificate, a window already past (renew now).
    pub(in crate::acme::server) async fn renewal_info(
        &self,
        cert_id: &str,
    ) -> Result<Reply, Problem> {
        let bad = || Problem::malformed("a renewalInfo id is base64url(AKI).base64url(serial)");
        let (aki, serial) = cert_id.split_once('.').ok_or_else(bad)?;
        let aki = B64.decode(aki).map_err(|_| bad())?;
        let serial = B64.decode(serial).map_err(|_| bad())?;
        if aki.is_empty() || serial.is_empty() || serial.len() > 21 {
            return Err(bad());
        }
        let rec = self
            .engine
            .lookup(crate::hex::encode(&serial))
            .await
            .map_err(|e| Problem::internal(&e))?
            .filter(|r| {
                r.issuer_key_id
                    .eq_ignore_ascii_case(&crate::hex::encode(&aki))
            })
            .ok_or_else(Problem::not_found)?;
        let now = OffsetDateTime::now_utc();
        let (start, end) = if rec.status_at(now) == crate::store::Status::Revoked {
            (
                now - time::Duration::hours(1),
                now - time::Duration::minutes(1),
            )
        } else {
            let life = rec.not_after - rec.not_before;
            (rec.not_before + life * 2 / 3, rec.not_before + life * 5 / 6)
        };
        let mut r = Reply::json(
            StatusCode::OK,
            json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
        );
        r.retry_after = Some(21600);
        Ok(r)
    }
}
