//! A POST to the ACME server (RFC 8555 §6.2–6.5): its JWS is signed for the
//! URL it was sent to, by the right kind of signer (a new key for newAccount,
//! a key or an account for revokeCert, an account for everything else), the
//! signature verifies, then its nonce is redeemed and the account's rate
//! taken; only then does the request reach its handler, as a [`Post`].

use std::time::Instant;

use hyper::StatusCode;

use super::{unix_now, Front};
use crate::acme::jws::{Jwk, Jws, Signer};
use crate::acme::problem::ProblemType;
use crate::acme::server::accept::Peer;
use crate::acme::server::payload::Post;
use crate::acme::server::problem::Problem;
use crate::acme::server::reply::Reply;

/// What a POST's path names (RFC 8555 §7.1's resources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource<'p> {
    NewAccount,
    RevokeCert,
    NewOrder,
    KeyChange,
    Account(&'p str),
    Order(&'p str),
    Finalize(&'p str),
    Authz(&'p str),
    Challenge(&'p str),
    Cert(&'p str),
}

impl<'p> Resource<'p> {
    /// The resource of a path under `/acme/`; None for any other.
    fn of(path: &'p str) -> Option<Resource<'p>> {
        let rest = path.strip_prefix("/acme/")?;
        Some(match rest.split('/').collect::<Vec<_>>().as_slice() {
            ["new-account"] => Resource::NewAccount,
            ["revoke-cert"] => Resource::RevokeCert,
            ["new-order"] => Resource::NewOrder,
            ["key-change"] => Resource::KeyChange,
            ["acct", id] => Resource::Account(id),
            ["order", id] => Resource::Order(id),
            ["order", id, "finalize"] => Resource::Finalize(id),
            ["authz", id] => Resource::Authz(id),
            ["chall", id] => Resource::Challenge(id),
            ["cert", id] => Resource::Cert(id),
            _ => return None,
        })
    }
}

impl Front {
    /// Verify a POST's JWS and answer it. A path that names nothing is
    /// answered 404 only after the request verified (its nonce is spent).
    pub(super) async fn post(
        &self,
        base: &str,
        path: &str,
        body: &[u8],
        peer: &Peer,
    ) -> Result<Reply, Problem> {
        let resource = Resource::of(path);
        let post = self.verify(base, path, resource, body)?;
        self.dispatch(resource, base, &post, peer).await
    }

    /// The request as a [`Post`] once it holds (the steps of RFC 8555 §6.2–6.5,
    /// in this order: a nonce is redeemed only for a request signed by its key).
    fn verify(
        &self,
        base: &str,
        path: &str,
        resource: Option<Resource<'_>>,
        body: &[u8],
    ) -> Result<Post, Problem> {
        let jws = Jws::parse(body).map_err(Problem::jws)?;
        let expected = format!("{base}{path}");
        if jws.url != expected {
            return Err(Problem::unauthorized(format!(
                "the JWS is signed for `{}`, not for `{expected}`",
                crate::names::printable(&jws.url)
            )));
        }
        let (account, key) = self.signer(base, &jws, resource)?;
        jws.verify(&key).map_err(Problem::jws)?;
        self.redeem(&jws.nonce)?;
        if let Some(acct) = &account {
            self.app.seen(acct)?;
            self.take_account_token(acct)?;
        }
        Ok(Post { jws, account, key })
    }

    /// Who signed, and the key the signature must verify under: the `jwk`
    /// of a newAccount or revokeCert, else the key of the account its `kid`
    /// names (which must exist and be valid).
    fn signer(
        &self,
        base: &str,
        jws: &Jws,
        resource: Option<Resource<'_>>,
    ) -> Result<(Option<String>, Jwk), Problem> {
        let new_account = resource == Some(Resource::NewAccount);
        let by_key = new_account || resource == Some(Resource::RevokeCert);
        match &jws.signer {
            Signer::Jwk(k) if by_key => Ok((None, k.clone())),
            Signer::Jwk(_) => Err(Problem::malformed(
                "this request must be signed by an account (`kid`), not a `jwk`",
            )),
            Signer::Kid(_) if new_account => Err(Problem::malformed(
                "newAccount must be signed with the account's `jwk`, not a `kid`",
            )),
            Signer::Kid(kid) => {
                let id = kid.strip_prefix(&format!("{base}/acme/acct/"));
                let key = self.app.account_key(id)?;
                Ok((id.map(str::to_string), key))
            }
        }
    }

    /// Redeem a nonce: unknown, expired and used ones are `badNonce`.
    fn redeem(&self, nonce: &str) -> Result<(), Problem> {
        if self.door().nonces.redeem(nonce, unix_now()) {
            return Ok(());
        }
        Err(Problem::new(
            StatusCode::BAD_REQUEST,
            ProblemType::BadNonce,
            "the nonce is unknown, expired or used; get a fresh one",
        ))
    }

    /// One token of `account`'s bucket (`--acme-rate-limit`).
    fn take_account_token(&self, account: &str) -> Result<(), Problem> {
        if self.rate_limit == 0
            || self
                .door()
                .accounts
                .take(account, self.rate_limit, Instant::now())
        {
            return Ok(());
        }
        Err(Problem::rate_limited(
            format!(
                "over {} requests per second for this account",
                self.rate_limit
            ),
            1,
        ))
    }

    /// The handler of `resource` (a verified request).
    async fn dispatch(
        &self,
        resource: Option<Resource<'_>>,
        base: &str,
        post: &Post,
        peer: &Peer,
    ) -> Result<Reply, Problem> {
        let app = &self.app;
        // Every resource but newAccount and revokeCert is signed by an account.
        let account = post.account.as_deref().unwrap_or_default();
        match resource {
            None => Err(Problem::not_found()),
            Some(Resource::NewAccount) => app.new_account(base, post, peer.ip).await,
            Some(Resource::RevokeCert) => app.revoke(post).await,
            Some(Resource::NewOrder) => app.new_order(base, account, post).await,
            Some(Resource::KeyChange) => app.key_change(base, account, post).await,
            Some(Resource::Account(id)) => app.account(base, account, id, post).await,
            Some(Resource::Order(id)) => app.order_get(base, account, id),
            Some(Resource::Finalize(id)) => app.finalize(base, account, id, post).await,
            Some(Resource::Authz(id)) => app.authz_get(base, account, id),
            Some(Resource::Challenge(id)) => app.challenge(base, account, id, post).await,
            Some(Resource::Cert(id)) => app.certificate(account, id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_resources_and_nothing_else() {
        assert_eq!(
            Resource::of("/acme/new-account"),
            Some(Resource::NewAccount)
        );
        assert_eq!(
            Resource::of("/acme/order/O1/finalize"),
            Some(Resource::Finalize("O1"))
        );
        assert_eq!(
            Resource::of("/acme/chall/C"),
            Some(Resource::Challenge("C"))
        );
        assert_eq!(Resource::of("/acme/acct/"), Some(Resource::Account("")));
        for p in [
            "/acme/new-account/",
            "/acme/order/O1/finalize/x",
            "/acme/",
            "/acme/directory",
            "/other/new-order",
        ] {
            assert_eq!(Resource::of(p), None, "{p}");
        }
    }
}
