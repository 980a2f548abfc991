//! Orders (RFC 8555 §7.4): newOrder, with the room for its orders and
//! authorizations (issue 22's limits), and reading an order or an
//! authorization.

use hyper::StatusCode;
use time::OffsetDateTime;

use crate::acme::problem::ProblemType;
use crate::acme::server::app::App;
use crate::acme::server::objects::{random_id, Authz, Challenge, Identifier, Order};
use crate::acme::server::order_rules::{challenge_types, order_identifiers, requested_content};
use crate::acme::server::payload::{NewOrder, Post};
use crate::acme::server::problem::Problem;
use crate::acme::server::reply::Reply;
use crate::acme::server::state::State;
use crate::acme::server::status::{AuthzStatus, ChallengeStatus, OrderStatus};
use crate::acme::server::views::{authz_json, order_json};
use crate::rules::Origin;

/// How long an order lives (once finished, an hour more at most).
const ORDER_LIFETIME: time::Duration = time::Duration::hours(24);

impl App {
    /// newOrder: identifiers read ([`order_identifiers`]) and checked by the
    /// engine's policy under the account's profile (`rejectedIdentifier`
    /// with the rules broken), then an order with one authorization per
    /// identifier, if the account and the server have room for them.
    pub(in crate::acme::server) async fn new_order(
        &self,
        base: &str,
        account: &str,
        post: &Post,
    ) -> Result<Reply, Problem> {
        let p: NewOrder = post.required("newOrder")?;
        let ids = order_identifiers(&p)?;
        self.engine
            .check(&self.profile_of(account), requested_content(&ids))
            .await
            // Refusals name the order's identifiers, not the CLI's flags.
            .map_err(|e| {
                Problem::engine(
                    ProblemType::RejectedIdentifier,
                    "the order",
                    &e.with_origin(Origin::Acme),
                )
            })?;

        let now = OffsetDateTime::now_utc();
        let expires = now + ORDER_LIFETIME;
        let order_id = random_id();
        let mut st = self.state();
        for gone in st.prune_orders(now) {
            self.acme
                .remove_order(&gone)
                .map_err(|e| Problem::internal(&e))?;
        }
        self.room_for_order(&st, account, ids.len(), now)?;
        let authzs = ids
            .iter()
            .map(|i| self.new_authz(account, &order_id, i, expires))
            .collect::<Result<Vec<_>, Problem>>()?;
        let order = Order {
            account: account.to_string(),
            status: OrderStatus::Pending,
            expires,
            identifiers: ids,
            authzs: authzs.iter().map(|(id, _)| id.clone()).collect(),
            certificate: None,
            cert_sha256: None,
            error: None,
            done: false,
        };
        let body = order_json(base, &order_id, &order);
        self.acme
            .put_order(&order.record(&order_id))
            .map_err(|e| Problem::internal(&e))?;
        st.add_order(order_id.clone(), order, authzs);
        Ok(Reply::json(StatusCode::CREATED, body).at(format!("{base}/acme/order/{order_id}")))
    }

    /// A new pending authorization of `order` for `identifier`, written to
    /// the store, with its challenges ([`challenge_types`]; one token for all:
    /// the client answers one of them).
    fn new_authz(
        &self,
        account: &str,
        order: &str,
        identifier: &Identifier,
        expires: OffsetDateTime,
    ) -> Result<(String, Authz), Problem> {
        let authz_id = random_id();
        let token = random_id() + &random_id();
        let challenges = challenge_types(identifier)
            .iter()
            .map(|typ| Challenge {
                typ: *typ,
                id: random_id(),
                token: token.clone(),
                status: ChallengeStatus::Pending,
                validated: None,
                error: None,
            })
            .collect();
        let authz = Authz {
            account: account.to_string(),
            order: order.to_string(),
            identifier: identifier.clone(),
            status: AuthzStatus::Pending,
            expires,
            challenges,
        };
        self.acme
            .put_authz(&authz.record(&authz_id))
            .map_err(|e| Problem::internal(&e))?;
        Ok((authz_id, authz))
    }

    /// Room for a new order of `account` with `identifiers` authorizations:
    /// the account's shares, then the server's bounds. Refused with
    /// `rateLimited` and a Retry-After, never by pushing out another order.
    fn room_for_order(
        &self,
        st: &State,
        account: &str,
        identifiers: usize,
        now: OffsetDateTime,
    ) -> Result<(), Problem> {
        let l = &self.limits;
        let (orders, authzs) = st
            .usage
            .get(account)
            .map_or((0, 0), |u| (u.orders, u.authzs));
        // The account's own orders free room as they expire (or finish); a
        // minute is a fair time to look again (finding its oldest would cost a scan).
        const ACCOUNT_RETRY_SECS: u32 = 60;
        if orders >= l.orders_per_account {
            return Err(Problem::rate_limited(
                format!(
                    "this account holds {orders} live orders, its limit; orders expire {} hours after they are made",
                    ORDER_LIFETIME.whole_hours()
                ),
                ACCOUNT_RETRY_SECS,
            ));
        }
        if authzs + identifiers > l.authzs_per_account {
            return Err(Problem::rate_limited(
                format!(
                    "this account holds {authzs} live authorizations and may hold {}; this order would add {identifiers}",
                    l.authzs_per_account
                ),
                ACCOUNT_RETRY_SECS,
            ));
        }
        if st.unfinished_orders >= l.orders || st.unfinished_authzs + identifiers > l.authzs {
            return Err(Problem::rate_limited(
                "the server holds as many orders as it keeps; try again later",
                st.next_expiry_secs(now),
            ));
        }
        Ok(())
    }

    /// An order (POST-as-GET) of `account`.
    pub(in crate::acme::server) fn order_get(
        &self,
        base: &str,
        account: &str,
        id: &str,
    ) -> Result<Reply, Problem> {
        let st = self.state();
        let o = st.orders.get(id).ok_or_else(Problem::not_found)?;
        if o.account != account {
            return Err(Problem::unauthorized("not this account's order"));
        }
        Ok(Reply::json(StatusCode::OK, order_json(base, id, o)))
    }

    /// An authorization (POST-as-GET) of `account`.
    pub(in crate::acme::server) fn authz_get(
        &self,
        base: &str,
        account: &str,
        id: &str,
    ) -> Result<Reply, Problem> {
        let st = self.state();
        let a = st.authzs.get(id).ok_or_else(Problem::not_found)?;
        if a.account != account {
            return Err(Problem::unauthorized("not this account's authorization"));
        }
        Ok(Reply::json(StatusCode::OK, authz_json(base, a)))
    }
}
