//! The ACME service below HTTP: the engine handle, the working copy of the
//! ACME state behind one lock, and its write-through to `store::acme`. The
//! handlers (the `handlers` folder) are its methods; the HTTP layer above
//! calls them with a verified request.

use std::sync::{Arc, Mutex, MutexGuard};

use time::OffsetDateTime;
use tokio::sync::Semaphore;

use super::engine::Engine;
use super::options::{AcmeLimits, ServeOptions};
use super::order_rules::profile_of;
use super::problem::Problem;
use super::state::{Pruned, State};
use super::status::AccountStatus;
use super::validation::Lookup;
use crate::acme::jws::Jwk;
use crate::acme::problem::ProblemType;
use crate::error::{Error, Result};
use crate::store::acme::AcmeStore;

/// The ACME service: engine handle and state.
pub(super) struct App {
    pub(super) engine: Engine,
    pub(super) state: Mutex<State>,
    /// The server's `--acme-profile` (an account bound with an EAB key has
    /// its key's).
    pub(super) profile: String,
    pub(super) require_eab: bool,
    /// The ACME trees of the engine's store (the working copy's backing).
    pub(super) acme: AcmeStore,
    pub(super) http01_port: u16,
    pub(super) tlsalpn01_port: u16,
    /// New accounts without EAB per client address and hour (0: no limit):
    /// without it a client that makes a new key at every start (a crash loop)
    /// would fill the server's account table, and then no one could register.
    pub(super) accounts_per_ip: u32,
    /// Where the validator's lookups go (`--acme-resolver`).
    pub(super) lookup: Lookup,
    /// What the server holds at most, in all and per client.
    pub(super) limits: AcmeLimits,
    /// Validations running at once (a validation waits for a place here after
    /// its account's own [`State::validation_slot`]).
    pub(super) validations: Arc<Semaphore>,
}

impl App {
    /// The service over `engine` and its store's ACME trees, with the working
    /// copy loaded (and what expired meanwhile pruned).
    pub(super) fn new(engine: Engine, acme: AcmeStore, opts: &ServeOptions) -> Result<App> {
        Ok(App {
            engine,
            state: Mutex::new(State::load(&acme, &opts.limits, OffsetDateTime::now_utc())?),
            validations: Arc::new(Semaphore::new(opts.limits.validations.max(1))),
            limits: opts.limits.clone(),
            acme,
            profile: opts.acme_profile.clone(),
            require_eab: opts.require_eab,
            http01_port: opts.http01_port,
            tlsalpn01_port: opts.tlsalpn01_port,
            accounts_per_ip: opts.accounts_per_ip,
            lookup: Lookup::new(opts.resolver),
        })
    }

    /// The working copy (a panic elsewhere does not lock everyone out).
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write an order through to the store (durable with the next flush).
    pub(super) fn save_order(&self, st: &State, id: &str) -> Result<(), Problem> {
        match st.orders.get(id) {
            Some(o) => self
                .acme
                .put_order(&o.record(id))
                .map_err(|e| Problem::internal(&e)),
            None => Ok(()),
        }
    }

    /// Write an authorization (with its challenges) through to the store.
    pub(super) fn save_authz(&self, st: &State, id: &str) -> Result<(), Problem> {
        match st.authzs.get(id) {
            Some(a) => self
                .acme
                .put_authz(&a.record(id))
                .map_err(|e| Problem::internal(&e)),
            None => Ok(()),
        }
    }

    /// Write an account through to the store; `old_thumbprint` after a rollover.
    pub(super) fn save_account(
        &self,
        st: &State,
        id: &str,
        old_thumbprint: Option<&str>,
    ) -> Result<(), Problem> {
        match st.accounts.get(id) {
            Some(a) => self
                .acme
                .put_account(&a.record(id), old_thumbprint)
                .map_err(|e| Problem::internal(&e)),
            None => Ok(()),
        }
    }

    /// Make what was written durable before the reply (accounts and their
    /// bindings: rare, and a lost one would strand the client or free an EAB key).
    pub(super) async fn flush(&self) -> Result<(), Problem> {
        let acme = self.acme.clone();
        tokio::task::spawn_blocking(move || acme.flush())
            .await
            .map_err(|_| Problem::internal(&Error::State("the flush task stopped".into())))?
            .map_err(|e| Problem::internal(&e))
    }

    /// The profile an account's certificates come from.
    pub(super) fn profile_of(&self, account: &str) -> String {
        let st = self.state();
        let bound = st.accounts.get(account).and_then(|a| a.profile.as_deref());
        profile_of(bound, &self.profile)
    }

    /// The key of the account a request names by its `kid`: it must exist
    /// (`accountDoesNotExist`) and be valid (`unauthorized`).
    pub(super) fn account_key(&self, id: Option<&str>) -> Result<Jwk, Problem> {
        let st = self.state();
        match id.and_then(|id| st.accounts.get(id)) {
            None => Err(Problem::new(
                hyper::StatusCode::BAD_REQUEST,
                ProblemType::AccountDoesNotExist,
                "no such account",
            )),
            Some(a) if a.status != AccountStatus::Valid => Err(Problem::unauthorized(format!(
                "the account is {}",
                a.status
            ))),
            Some(a) => Ok(a.key.clone()),
        }
    }

    /// Note a request by `account`: its last-seen time moves on (its expiry
    /// with it), written through when it moved by an hour or more.
    pub(super) fn seen(&self, account: &str) -> Result<(), Problem> {
        let now = OffsetDateTime::now_utc();
        let mut st = self.state();
        let Some(a) = st.accounts.get_mut(account) else {
            return Ok(());
        };
        if now - a.last_seen < time::Duration::hours(1) {
            return Ok(());
        }
        a.last_seen = now;
        self.save_account(&st, account, None)
    }

    /// Forget what expired by `now` in the working copy; what to remove
    /// from the store ([`App::remove_pruned`]).
    pub(super) fn prune(&self, now: OffsetDateTime) -> Pruned {
        self.state().prune(now)
    }

    /// Remove what [`App::prune`] forgot from the store too.
    pub(super) fn remove_pruned(&self, pruned: &Pruned) -> Result<(), Problem> {
        for o in &pruned.orders {
            self.acme
                .remove_order(o)
                .map_err(|e| Problem::internal(&e))?;
        }
        for (id, thumbprint) in &pruned.accounts {
            self.acme
                .remove_account(id, thumbprint)
                .map_err(|e| Problem::internal(&e))?;
        }
        Ok(())
    }
}
