//! Accounts (RFC 8555 §7.3): newAccount, with external account binding and
//! the room for accounts without it (issue 22's limits); an account's update
//! and deactivation; key rollover. Accounts, their bindings and their keys
//! are durable before the reply.

use std::net::IpAddr;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hyper::StatusCode;
use time::OffsetDateTime;

use crate::acme::jws::Jwk;
use crate::acme::problem::ProblemType;
use crate::acme::server::account_rules::{contacts, requested_status, rollover_key};
use crate::acme::server::app::App;
use crate::acme::server::objects::{random_id, Account, UNPROVEN_ACCOUNT_IDLE};
use crate::acme::server::payload::{AccountUpdate, NewAccount, Post};
use crate::acme::server::problem::Problem;
use crate::acme::server::rate::{ClientLimit, Rate};
use crate::acme::server::reply::Reply;
use crate::acme::server::state::State;
use crate::acme::server::status::AccountStatus;
use crate::acme::server::views::account_json;
use crate::conn_limit::client_network;

impl App {
    /// newAccount (RFC 8555 §7.3), from the client at `ip`; a new account is
    /// durable before the reply.
    pub(in crate::acme::server) async fn new_account(
        &self,
        base: &str,
        post: &Post,
        ip: Option<IpAddr>,
    ) -> Result<Reply, Problem> {
        let reply = self.new_account_now(base, post, ip)?;
        if reply.status == StatusCode::CREATED {
            self.flush().await?;
        }
        Ok(reply)
    }

    /// newAccount up to the store's write: the key's account when it has one,
    /// else a new account (bound to an EAB key, or admitted without).
    fn new_account_now(
        &self,
        base: &str,
        post: &Post,
        ip: Option<IpAddr>,
    ) -> Result<Reply, Problem> {
        let p: NewAccount = post.payload()?.unwrap_or_default();
        let thumb = post.key.thumbprint();
        if let Some(existing) = existing_account(&self.state(), base, &thumb) {
            return Ok(existing);
        }
        if p.only_return_existing.get() == Some(&true) {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                ProblemType::AccountDoesNotExist,
                "no account for this key",
            ));
        }
        let contact = contacts(p.contact.as_ref())?;
        let eab_kid = self.external_binding(&p, base, &post.key)?;
        let now = OffsetDateTime::now_utc();
        let mut st = self.state();
        // A concurrent newAccount with the same key may have won meanwhile:
        // answer with that account (and leave the EAB key unbound).
        if let Some(existing) = existing_account(&st, base, &thumb) {
            return Ok(existing);
        }
        let network = match eab_kid {
            None => self.admit_anonymous_account(&mut st, ip)?,
            Some(_) => None,
        };
        let id = random_id();
        let profile = match &eab_kid {
            Some(kid) => self.bind_eab(kid, &id)?,
            None => None,
        };
        let a = Account {
            key: post.key.clone(),
            thumbprint: thumb,
            status: AccountStatus::Valid,
            contact,
            profile,
            eab_kid,
            created: now,
            network,
            proven: false,
            last_seen: now,
        };
        let body = account_json(base, &id, &a);
        // The store first: the working copy only holds what was recorded.
        self.acme
            .put_account(&a.record(&id), None)
            .map_err(|e| Problem::internal(&e))?;
        st.add_account(id.clone(), a);
        Ok(Reply::json(StatusCode::CREATED, body).at(format!("{base}/acme/acct/{id}")))
    }

    /// The EAB key id a newAccount binds to (verified: RFC 8555 §7.3.4), or
    /// none; `externalAccountRequired` when the server requires one.
    fn external_binding(
        &self,
        p: &NewAccount,
        base: &str,
        key: &Jwk,
    ) -> Result<Option<String>, Problem> {
        let Some(binding) = &p.external_account_binding else {
            if self.require_eab {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    ProblemType::ExternalAccountRequired,
                    "this server requires external account binding (mtlsca acme eab create)",
                ));
            }
            return Ok(None);
        };
        // Unknown, revoked and already bound keys are all "unknown or used".
        let lookup = |kid: &str| {
            self.acme
                .eab(kid)
                .ok()
                .flatten()
                .filter(|k| k.account.is_none() && k.revoked.is_none())
                .and_then(|k| B64.decode(k.hmac_key).ok())
        };
        let url = format!("{base}/acme/new-account");
        crate::acme::eab::verify(binding, &url, key, &lookup)
            .map(Some)
            .map_err(Problem::eab)
    }

    /// Bind EAB key `kid` to the new account `id` (durable with the flush
    /// before the reply); the key's profile.
    fn bind_eab(&self, kid: &str, id: &str) -> Result<Option<String>, Problem> {
        let bound = self
            .acme
            .bind_eab(kid, id)
            .map_err(|e| Problem::internal(&e))?;
        if !bound {
            return Err(Problem::unauthorized(
                "external account binding: the key was used meanwhile",
            ));
        }
        Ok(self
            .acme
            .eab(kid)
            .map_err(|e| Problem::internal(&e))?
            .map(|k| k.profile))
    }

    /// Room for a new account without EAB from `ip`: the table's bound,
    /// the network's share of accounts without a certificate yet, and one
    /// token of the network's hourly bucket (taken last, so a refusal for room
    /// costs the network no token). `rateLimited` with Retry-After otherwise.
    /// The network the account is counted against.
    fn admit_anonymous_account(
        &self,
        st: &mut State,
        ip: Option<IpAddr>,
    ) -> Result<Option<IpAddr>, Problem> {
        let not_counted = "accounts with external account binding are not counted";
        if st.anonymous_accounts >= self.limits.accounts {
            return Err(Problem::rate_limited(
                format!(
                    "the server holds its limit of {} accounts ({not_counted})",
                    self.limits.accounts
                ),
                3600,
            ));
        }
        // No address: the connection is gone, and so is the reply.
        let Some(ip) = ip else {
            return Ok(None);
        };
        let net = client_network(ip);
        let share = self.limits.unproven_accounts_per_client;
        if st.unproven_by_network.get(&net).copied().unwrap_or(0) >= share {
            return Err(Problem::rate_limited(
                format!(
                    "{net} holds {share} accounts that have not obtained a certificate yet; use one of them, or wait until one expires ({} hours after its last request; {not_counted})",
                    UNPROVEN_ACCOUNT_IDLE.whole_hours()
                ),
                3600,
            ));
        }
        if self.accounts_per_ip == 0 {
            return Ok(Some(net));
        }
        match st
            .account_buckets
            .take(ip, Rate::per_hour(self.accounts_per_ip), Instant::now())
        {
            Ok(()) => Ok(Some(net)),
            Err(ClientLimit::Network(wait)) => Err(Problem::rate_limited(
                format!(
                    "over {} new accounts an hour from {net} ({not_counted})",
                    self.accounts_per_ip
                ),
                wait,
            )),
            Err(ClientLimit::Table(wait)) => Err(Problem::rate_limited(
                format!("new accounts from too many networks at once ({not_counted})"),
                wait,
            )),
        }
    }

    /// Account key rollover (RFC 8555 §7.3.5): the outer JWS by the account's
    /// key, the inner by the new key over `{account, oldKey}`; durable before
    /// the reply.
    pub(in crate::acme::server) async fn key_change(
        &self,
        base: &str,
        account: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let reply = self.key_change_now(base, account, post)?;
        self.flush().await?;
        Ok(reply)
    }

    fn key_change_now(&self, base: &str, account: &str, post: &Post) -> Result<Reply, Problem> {
        let new = rollover_key(post, &format!("{base}/acme/acct/{account}"))?;
        let thumb = new.thumbprint();
        let mut st = self.state();
        if let Some(other) = st.by_thumbprint.get(&thumb) {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                ProblemType::Malformed,
                format!("the new key is already an account's key ({base}/acme/acct/{other})"),
            ));
        }
        let a = st
            .accounts
            .get_mut(account)
            .ok_or_else(Problem::not_found)?;
        let old_thumb = std::mem::replace(&mut a.thumbprint, thumb.clone());
        a.key = new;
        let body = account_json(base, account, a);
        st.by_thumbprint.remove(&old_thumb);
        st.by_thumbprint.insert(thumb, account.to_string());
        self.save_account(&st, account, Some(&old_thumb))?;
        Ok(Reply::json(StatusCode::OK, body))
    }

    /// An account (POST-as-GET), or its update (RFC 8555 §7.3.2: contacts;
    /// §7.3.6: deactivation), durable before the reply.
    pub(in crate::acme::server) async fn account(
        &self,
        base: &str,
        account: &str,
        id: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        if id != account {
            return Err(Problem::unauthorized("not this account's resource"));
        }
        let update: Option<AccountUpdate> = post.payload()?;
        let changed = update.is_some();
        let reply = self.account_now(base, id, update)?;
        if changed {
            self.flush().await?;
        }
        Ok(reply)
    }

    fn account_now(
        &self,
        base: &str,
        id: &str,
        update: Option<AccountUpdate>,
    ) -> Result<Reply, Problem> {
        let mut st = self.state();
        let a = st.accounts.get_mut(id).ok_or_else(Problem::not_found)?;
        if let Some(p) = update {
            if p.contact.is_some() {
                a.contact = contacts(p.contact.as_ref())?;
            }
            if let Some(status) = requested_status(p.status.get())? {
                a.status = status;
            }
        }
        let body = account_json(base, id, a);
        self.save_account(&st, id, None)?;
        Ok(Reply::json(StatusCode::OK, body))
    }
}

/// The answer to a newAccount whose key has an account: that account (200).
fn existing_account(st: &State, base: &str, thumbprint: &str) -> Option<Reply> {
    let id = st.by_thumbprint.get(thumbprint)?;
    let a = st.accounts.get(id)?;
    Some(
        Reply::json(StatusCode::OK, account_json(base, id, a)).at(format!("{base}/acme/acct/{id}")),
    )
}
