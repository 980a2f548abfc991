//! Challenges (RFC 8555 §7.5.1): reading one, and the client's answer that
//! starts its validation ([`crate::acme::server::validation`]), a few at a
//! time per account and in all (issue 22's limits).

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::acme::server::app::App;
use crate::acme::server::objects::ChallengeType;
use crate::acme::server::payload::{ChallengeResponse, Post};
use crate::acme::server::problem::Problem;
use crate::acme::server::reply::Reply;
use crate::acme::server::status::{AuthzStatus, ChallengeStatus};
use crate::acme::server::validation::{validate, Validation};
use crate::acme::server::views::challenge_json;

/// How long the answer to a challenge waits for its validation before it says
/// `processing`: long enough for a validation on a LAN, short enough that a slow
/// one does not hold the client's request.
const VALIDATION_WAIT: Duration = Duration::from_secs(2);

impl App {
    /// A challenge (POST-as-GET), or the client's answer to it (a payload): the
    /// validation starts, and the reply waits up to [`VALIDATION_WAIT`] for its
    /// outcome, so that a client's first poll usually finds the authorization
    /// decided (a slower validation is answered `processing`, and goes on).
    pub(in crate::acme::server) async fn challenge(
        self: &Arc<App>,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let validation = self.start_challenge(account, id, post)?;
        if let Some(task) = validation {
            let _ = tokio::time::timeout(VALIDATION_WAIT, task).await;
        }
        let st = self.state();
        let authz_id = st.challenges.get(id).ok_or_else(Problem::not_found)?;
        let c = st
            .authzs
            .get(authz_id)
            .and_then(|a| a.challenges.iter().find(|c| c.id == id))
            .ok_or_else(Problem::not_found)?;
        let body = challenge_json(base, c);
        Ok(Reply::json(StatusCode::OK, body).link(&format!("{base}/acme/authz/{authz_id}"), "up"))
    }

    /// Check that `id` is `account`'s challenge and, when the client answers
    /// it, start its validation (one per authorization: the first answered).
    fn start_challenge(
        self: &Arc<App>,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Option<JoinHandle<()>>, Problem> {
        let respond = post.payload::<ChallengeResponse>()?.is_some();
        let mut st = self.state();
        let authz_id = st
            .challenges
            .get(id)
            .cloned()
            .ok_or_else(Problem::not_found)?;
        let thumb = st
            .accounts
            .get(account)
            .map(|a| a.thumbprint.clone())
            .unwrap_or_default();
        let a = st
            .authzs
            .get_mut(&authz_id)
            .ok_or_else(Problem::not_found)?;
        if a.account != account {
            return Err(Problem::unauthorized("not this account's challenge"));
        }
        let idx = a
            .challenges
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(Problem::not_found)?;
        // One challenge per authorization is tried: the first the client answers.
        let busy = a
            .challenges
            .iter()
            .any(|c| c.status != ChallengeStatus::Pending);
        if !respond || busy || a.status != AuthzStatus::Pending {
            // Nothing to write here: a challenge being validated is
            // `processing` only in memory (after a crash it reads as `pending`
            // again, as stored), and the validation writes its outcome
            // through when it ends.
            return Ok(None);
        }
        let c = &mut a.challenges[idx];
        c.status = ChallengeStatus::Processing;
        let job = Validation {
            authz: authz_id.clone(),
            index: idx,
            typ: c.typ,
            identifier: a.identifier.clone(),
            token: c.token.clone(),
            key_authorization: format!("{}.{thumb}", c.token),
            port: match c.typ {
                ChallengeType::Http01 => self.http01_port,
                ChallengeType::TlsAlpn01 => self.tlsalpn01_port,
                ChallengeType::Dns01 => 53,
            },
        };
        let mine = st.validation_slot(account, self.limits.validations_per_account);
        Ok(Some(tokio::spawn(self.clone().run_validation(job, mine))))
    }

    /// Run a validation when its turn comes: a few at a time per account
    /// (`mine`), then a place among all. One account's hundred answers wait
    /// their turn and hold no sockets meanwhile, and cannot take every place
    /// from the others. Its outcome is written through (challenge,
    /// authorization, order).
    async fn run_validation(self: Arc<App>, job: Validation, mine: Arc<Semaphore>) {
        let (Ok(_mine), Ok(_place)) = (
            mine.acquire_owned().await,
            self.validations.clone().acquire_owned().await,
        ) else {
            return;
        };
        let outcome = validate(&self.lookup, &job).await.map_err(|p| p.body());
        let mut st = self.state();
        st.record_validation(&job.authz, job.index, outcome, OffsetDateTime::now_utc());
        let order = st.authzs.get(&job.authz).map(|a| a.order.clone());
        let saved = self
            .save_authz(&st, &job.authz)
            .and_then(|()| match &order {
                Some(o) => self.save_order(&st, o),
                None => Ok(()),
            });
        if let Err(p) = saved {
            crate::serverlog::line(format!("error: recording a validation: {}", p.detail));
        }
    }
}
