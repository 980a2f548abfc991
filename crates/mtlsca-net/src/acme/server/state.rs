//! The ACME state's working copy: accounts, orders, authorizations and
//! challenges in memory (loaded from `store::acme` at start, written through
//! by the handlers), with the counts that hold issue 22's limits
//! ([`AcmeLimits`]): what one account and one client network hold, what is
//! finished and what is not, and pruning of what expired. Only expired state
//! and the oldest finished orders are ever forgotten.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;
use time::OffsetDateTime;

use super::objects::{Account, Authz, Order};
use super::options::AcmeLimits;
use super::rate::ClientBuckets;
use super::status::{AuthzStatus, ChallengeStatus, OrderStatus};
use crate::error::Result;
use crate::store::acme::{AcmeAuthz, AcmeOrder, AcmeStore};

/// What one account holds now: unfinished orders and their authorizations
/// (counted against its shares).
#[derive(Default)]
pub(super) struct Usage {
    pub(super) orders: usize,
    pub(super) authzs: usize,
}

/// How long a finished order (valid or invalid) is kept: its client reads the
/// outcome and downloads the certificate right after. Sooner when finished
/// orders hold as many authorizations as the server keeps.
pub(super) const FINISHED_ORDER_KEEP: time::Duration = time::Duration::hours(1);

/// The working copy, behind the ACME service's one lock.
pub(super) struct State {
    pub(super) accounts: HashMap<String, Account>,
    pub(super) by_thumbprint: HashMap<String, String>,
    pub(super) orders: HashMap<String, Order>,
    /// Unfinished orders' ids, oldest first (every order lives as long):
    /// expired ones are pruned from the front. An id whose order finished is
    /// passed over.
    pub(super) order_queue: VecDeque<String>,
    /// Finished orders' ids, in the order they finished: pruned from the front
    /// when expired, or early when they hold more than the server keeps.
    pub(super) finished_queue: VecDeque<String>,
    /// Unfinished orders and their authorizations, in all (the bounds that
    /// refuse new orders).
    pub(super) unfinished_orders: usize,
    pub(super) unfinished_authzs: usize,
    /// Authorizations of finished orders (kept up to the same bound, oldest
    /// forgotten first).
    pub(super) finished_authzs: usize,
    /// Authorizations kept for finished orders at most.
    pub(super) finished_authz_room: usize,
    pub(super) authzs: HashMap<String, Authz>,
    pub(super) challenges: HashMap<String, String>,
    /// Per-network token buckets for new accounts without EAB.
    pub(super) account_buckets: ClientBuckets,
    /// Live orders and authorizations per account.
    pub(super) usage: HashMap<String, Usage>,
    /// Accounts without EAB, and how many of them have no certificate yet per
    /// registering network.
    pub(super) anonymous_accounts: usize,
    pub(super) unproven_by_network: HashMap<IpAddr, usize>,
    /// Validations each account may run at once.
    pub(super) validation_slots: HashMap<String, Arc<tokio::sync::Semaphore>>,
}

/// What [`State::prune`] forgot: to be removed from the store too.
#[derive(Default)]
pub(super) struct Pruned {
    pub(super) orders: Vec<AcmeOrder>,
    /// Account ids with their key thumbprints.
    pub(super) accounts: Vec<(String, String)>,
}

impl State {
    /// An empty working copy.
    pub(super) fn new(limits: &AcmeLimits) -> State {
        State {
            accounts: HashMap::new(),
            by_thumbprint: HashMap::new(),
            orders: HashMap::new(),
            order_queue: VecDeque::new(),
            finished_queue: VecDeque::new(),
            unfinished_orders: 0,
            unfinished_authzs: 0,
            finished_authzs: 0,
            finished_authz_room: limits.authzs,
            authzs: HashMap::new(),
            challenges: HashMap::new(),
            account_buckets: ClientBuckets::default(),
            usage: HashMap::new(),
            anonymous_accounts: 0,
            unproven_by_network: HashMap::new(),
            validation_slots: HashMap::new(),
        }
    }

    /// The working copy of what the store holds. Expired orders (with their
    /// authorizations and downloads) and expired accounts are pruned from the
    /// store on the way, and the secrets of EAB keys already bound or revoked
    /// are forgotten.
    pub(super) fn load(
        store: &AcmeStore,
        limits: &AcmeLimits,
        now: OffsetDateTime,
    ) -> Result<State> {
        let mut st = State::new(limits);
        for r in store.accounts()? {
            let back = Account::from_record(r, |id| store.has_certificates_of(id).unwrap_or(true));
            if let Some((id, a)) = back {
                st.add_account(id, a);
            }
        }
        let mut stored_authzs: HashMap<String, AcmeAuthz> = store
            .authzs()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut orders = store.orders()?;
        orders.sort_by_key(|o| o.expires);
        for r in orders {
            if r.expires <= now {
                store.remove_order(&r)?;
                continue;
            }
            let (id, o) = Order::from_record(r);
            let authzs = o
                .authzs
                .iter()
                .filter_map(|a| stored_authzs.remove(a))
                .map(Authz::from_record)
                .collect();
            let done = o.status.is_finished();
            st.add_order(id.clone(), o, authzs);
            if done {
                st.finish_order(&id, None);
            }
        }
        // Authorizations whose order is gone.
        for id in stored_authzs.keys() {
            store.remove_authz(id)?;
        }
        let pruned = st.prune(now);
        for o in &pruned.orders {
            store.remove_order(o)?;
        }
        for (id, thumbprint) in pruned.accounts {
            store.remove_account(&id, &thumbprint)?;
        }
        // A store from before spent EAB keys were emptied: forget their secrets.
        store.forget_spent_eab_secrets()?;
        Ok(st)
    }

    /// Add an account to the working copy, with its counts.
    pub(super) fn add_account(&mut self, id: String, a: Account) {
        if a.eab_kid.is_none() {
            self.anonymous_accounts += 1;
        }
        if let Some(net) = a.unproven_network() {
            *self.unproven_by_network.entry(net).or_default() += 1;
        }
        self.by_thumbprint.insert(a.thumbprint.clone(), id.clone());
        if let Some(old) = self.accounts.insert(id.clone(), a) {
            self.uncount_account(&old);
        }
    }

    fn uncount_account(&mut self, a: &Account) {
        if a.eab_kid.is_none() {
            self.anonymous_accounts = self.anonymous_accounts.saturating_sub(1);
        }
        if let Some(net) = a.unproven_network() {
            if let Some(n) = self.unproven_by_network.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.unproven_by_network.remove(&net);
                }
            }
        }
    }

    /// Forget an account with what hangs on it in memory (its orders expire on
    /// their own); returns its key's thumbprint.
    pub(super) fn remove_account(&mut self, id: &str) -> Option<String> {
        let a = self.accounts.remove(id)?;
        self.uncount_account(&a);
        if self
            .by_thumbprint
            .get(&a.thumbprint)
            .is_some_and(|x| x == id)
        {
            self.by_thumbprint.remove(&a.thumbprint);
        }
        self.validation_slots.remove(id);
        if self
            .usage
            .get(id)
            .is_some_and(|u| u.orders == 0 && u.authzs == 0)
        {
            self.usage.remove(id);
        }
        Some(a.thumbprint)
    }

    /// The account obtained a certificate: it no longer counts against its
    /// network's share of unproven accounts. Whether it changed.
    pub(super) fn mark_proven(&mut self, id: &str) -> bool {
        let Some(a) = self.accounts.get(id) else {
            return false;
        };
        if a.proven {
            return false;
        }
        let net = a.unproven_network();
        if let Some(a) = self.accounts.get_mut(id) {
            a.proven = true;
        }
        if let Some(net) = net {
            if let Some(n) = self.unproven_by_network.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.unproven_by_network.remove(&net);
                }
            }
        }
        true
    }

    /// Add an unfinished order with its authorizations to the working copy.
    pub(super) fn add_order(&mut self, id: String, o: Order, authzs: Vec<(String, Authz)>) {
        let u = self.usage.entry(o.account.clone()).or_default();
        u.orders += 1;
        u.authzs += authzs.len();
        self.unfinished_orders += 1;
        self.unfinished_authzs += authzs.len();
        for (authz_id, a) in authzs {
            for c in &a.challenges {
                self.challenges.insert(c.id.clone(), authz_id.clone());
            }
            self.authzs.insert(authz_id, a);
        }
        self.order_queue.push_back(id.clone());
        self.orders.insert(id, o);
    }

    /// The authorizations of an order that the working copy holds.
    fn held_authzs(&self, o: &Order) -> usize {
        o.authzs
            .iter()
            .filter(|a| self.authzs.contains_key(*a))
            .count()
    }

    /// An order became valid or invalid at `now` (`None`: it was stored so):
    /// it no longer counts against its account's shares, and it is kept
    /// [`FINISHED_ORDER_KEEP`] longer at most. Whether it was unfinished.
    pub(super) fn finish_order(&mut self, id: &str, now: Option<OffsetDateTime>) -> bool {
        let Some(o) = self.orders.get(id) else {
            return false;
        };
        if o.done {
            return false;
        }
        let (account, n) = (o.account.clone(), self.held_authzs(o));
        if let Some(o) = self.orders.get_mut(id) {
            o.done = true;
            if let Some(now) = now {
                o.expires = o.expires.min(now + FINISHED_ORDER_KEEP);
            }
        }
        self.uncount_unfinished(&account, n);
        self.finished_authzs += n;
        self.finished_queue.push_back(id.to_string());
        true
    }

    /// A challenge's validation ended at `now`: the challenge and its
    /// authorization become valid, or invalid with `Err`'s problem document,
    /// which then also makes the order invalid (and finished); the order whose
    /// authorizations are all valid becomes ready.
    pub(super) fn record_validation(
        &mut self,
        authz: &str,
        index: usize,
        outcome: std::result::Result<(), Value>,
        now: OffsetDateTime,
    ) {
        let Some(a) = self.authzs.get_mut(authz) else {
            return;
        };
        let order_id = a.order.clone();
        let Some(c) = a.challenges.get_mut(index) else {
            return;
        };
        match outcome {
            Ok(()) => {
                c.status = ChallengeStatus::Valid;
                c.validated = Some(now);
                a.status = AuthzStatus::Valid;
            }
            Err(err) => {
                c.status = ChallengeStatus::Invalid;
                c.error = Some(err.clone());
                a.status = AuthzStatus::Invalid;
                if let Some(o) = self.orders.get_mut(&order_id) {
                    o.status = OrderStatus::Invalid;
                    o.error = Some(err);
                }
                self.finish_order(&order_id, Some(now));
                return;
            }
        }
        let all_valid = self.orders.get(&order_id).is_some_and(|o| {
            o.authzs.iter().all(|id| {
                self.authzs
                    .get(id)
                    .is_some_and(|a| a.status == AuthzStatus::Valid)
            })
        });
        if let Some(o) = self.orders.get_mut(&order_id) {
            if all_valid && o.status == OrderStatus::Pending {
                o.status = OrderStatus::Ready;
            }
        }
    }

    fn uncount_unfinished(&mut self, account: &str, authzs: usize) {
        self.unfinished_orders = self.unfinished_orders.saturating_sub(1);
        self.unfinished_authzs = self.unfinished_authzs.saturating_sub(authzs);
        if let Some(u) = self.usage.get_mut(account) {
            u.orders = u.orders.saturating_sub(1);
            u.authzs = u.authzs.saturating_sub(authzs);
            if u.orders == 0 && u.authzs == 0 && !self.accounts.contains_key(account) {
                self.usage.remove(account);
            }
        }
    }

    /// Forget one order with its authorizations and challenges; its record.
    fn remove_order(&mut self, id: &str) -> Option<AcmeOrder> {
        let o = self.orders.remove(id)?;
        let mut authzs = 0;
        for a in &o.authzs {
            if let Some(a) = self.authzs.remove(a) {
                authzs += 1;
                for c in &a.challenges {
                    self.challenges.remove(&c.id);
                }
            }
        }
        if o.done {
            self.finished_authzs = self.finished_authzs.saturating_sub(authzs);
        } else {
            self.uncount_unfinished(&o.account, authzs);
        }
        Some(o.record(id))
    }

    /// Forget the orders that expired by `now`, and the oldest finished ones
    /// while finished orders hold more authorizations than the server keeps
    /// (with their authorizations, challenges and certificate downloads; the
    /// certificates stay in the store). An unfinished order is forgotten only
    /// when it expires: a full table refuses new orders, it never pushes out
    /// another client's order in progress.
    pub(super) fn prune_orders(&mut self, now: OffsetDateTime) -> Vec<AcmeOrder> {
        let mut gone = Vec::new();
        while let Some(id) = self.order_queue.front() {
            match self.orders.get(id) {
                // Gone, or finished (the finished queue has it): pass over.
                None => {}
                Some(o) if o.done => {}
                Some(o) if o.expires > now => break,
                Some(_) => {
                    let id = id.clone();
                    gone.extend(self.remove_order(&id));
                }
            }
            self.order_queue.pop_front();
        }
        while let Some(id) = self.finished_queue.front() {
            let expired = self.orders.get(id).is_none_or(|o| o.expires <= now);
            if !expired && self.finished_authzs <= self.finished_authz_room {
                break;
            }
            if let Some(id) = self.finished_queue.pop_front() {
                gone.extend(self.remove_order(&id));
            }
        }
        gone
    }

    /// [`State::prune_orders`], then the accounts that expired by `now`
    /// ([`Account::expires`]) and hold no unfinished order.
    pub(super) fn prune(&mut self, now: OffsetDateTime) -> Pruned {
        let orders = self.prune_orders(now);
        let expired: Vec<String> = self
            .accounts
            .iter()
            .filter(|(id, a)| {
                a.expires().is_some_and(|t| t <= now)
                    && self.usage.get(*id).is_none_or(|u| u.orders == 0)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let accounts = expired
            .into_iter()
            .filter_map(|id| self.remove_account(&id).map(|t| (id, t)))
            .collect();
        Pruned { orders, accounts }
    }

    /// Seconds until the oldest live order expires (a full table's Retry-After).
    pub(super) fn next_expiry_secs(&self, now: OffsetDateTime) -> u32 {
        self.order_queue
            .front()
            .and_then(|id| self.orders.get(id))
            .map(|o| (o.expires - now).whole_seconds().clamp(1, 86_400) as u32)
            .unwrap_or(60)
    }

    /// The semaphore of `account`'s validations.
    pub(super) fn validation_slot(
        &mut self,
        account: &str,
        per_account: usize,
    ) -> Arc<tokio::sync::Semaphore> {
        self.validation_slots
            .entry(account.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(per_account.max(1))))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::server::objects::tests::{account, authz, order};
    use crate::acme::server::objects::{PROVEN_ACCOUNT_IDLE, UNPROVEN_ACCOUNT_IDLE};
    use std::time::Duration;

    /// Issue 22, finding 4: a full order table pushed out the oldest orders,
    /// whoever owned them. Only expired orders are forgotten now.
    #[test]
    fn only_expired_orders_are_forgotten_with_what_hangs_on_them() {
        let now = OffsetDateTime::now_utc();
        let mut st = State::new(&AcmeLimits::default());
        for i in 0..6 {
            let (o, a, c) = (format!("o{i}"), format!("a{i}"), format!("c{i}"));
            // o0 has expired; the others have not.
            let expires = if i == 0 {
                now - time::Duration::seconds(1)
            } else {
                now + time::Duration::hours(1)
            };
            st.add_order(
                o.clone(),
                order("acct", &a, expires),
                vec![(a, authz(&o, &c, expires))],
            );
        }
        assert_eq!(st.usage["acct"].orders, 6);
        let gone = st.prune_orders(now);
        assert_eq!(gone.len(), 1, "only the expired order");
        assert_eq!(gone[0].id, "o0");
        assert_eq!(gone[0].certificate.as_deref(), Some("cert-a0"));
        assert_eq!(
            (st.orders.len(), st.authzs.len(), st.challenges.len()),
            (5, 5, 5)
        );
        assert_eq!((st.usage["acct"].orders, st.usage["acct"].authzs), (5, 5));
        let later = now + time::Duration::hours(2);
        assert_eq!(st.prune_orders(later).len(), 5);
        assert!(st.orders.is_empty() && st.authzs.is_empty() && st.challenges.is_empty());
        assert!(st.order_queue.is_empty());
        assert!(!st.usage.contains_key("acct"), "no account, no usage left");
    }

    /// Finished orders stop counting against their account's shares and are
    /// kept an hour at most; while they hold more authorizations than the
    /// server keeps, the oldest finished go first. Unfinished ones never do.
    #[test]
    fn finished_orders_leave_room_and_go_first() {
        let now = OffsetDateTime::now_utc();
        let limits = AcmeLimits {
            authzs: 2,
            ..AcmeLimits::default()
        };
        let mut st = State::new(&limits);
        let day = now + time::Duration::hours(24);
        for i in 0..4 {
            let (o, a, c) = (format!("o{i}"), format!("a{i}"), format!("c{i}"));
            st.add_order(
                o.clone(),
                order("acct", &a, day),
                vec![(a, authz(&o, &c, day))],
            );
        }
        assert_eq!((st.unfinished_orders, st.unfinished_authzs), (4, 4));
        for i in 0..3 {
            assert!(st.finish_order(&format!("o{i}"), Some(now)));
        }
        assert!(!st.finish_order("o0", Some(now)), "once");
        assert_eq!(st.orders["o0"].expires, now + FINISHED_ORDER_KEEP);
        assert_eq!((st.unfinished_orders, st.usage["acct"].orders), (1, 1));
        assert_eq!(st.finished_authzs, 3);
        // Three finished authorizations, room for two: the oldest goes now.
        let gone = st.prune_orders(now);
        assert_eq!(
            gone.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            ["o0"]
        );
        // An hour on, the other finished ones have expired; o3 stays.
        let gone = st.prune_orders(now + FINISHED_ORDER_KEEP);
        assert_eq!(gone.len(), 2);
        assert_eq!(st.orders.keys().collect::<Vec<_>>(), ["o3"]);
        assert_eq!((st.finished_authzs, st.unfinished_authzs), (0, 1));
    }

    /// Issue 22, finding 5: accounts were never removed. An account without
    /// EAB expires after its last request (sooner when it never obtained a
    /// certificate); one bound with EAB never does.
    #[test]
    fn idle_accounts_without_eab_expire_and_their_network_share_comes_back() {
        let now = OffsetDateTime::now_utc();
        let mut st = State::new(&AcmeLimits::default());
        st.add_account("anon".into(), account(now, Some("192.0.2.1"), false));
        st.add_account("proven".into(), account(now, Some("192.0.2.1"), false));
        st.add_account("eab".into(), account(now, None, true));
        assert!(st.mark_proven("proven"));
        assert!(!st.mark_proven("proven"));
        let net: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(st.unproven_by_network[&net], 1);
        assert_eq!(st.anonymous_accounts, 2);
        let pruned = st.prune(now + UNPROVEN_ACCOUNT_IDLE - time::Duration::seconds(1));
        assert!(pruned.accounts.is_empty());
        let pruned = st.prune(now + UNPROVEN_ACCOUNT_IDLE);
        assert_eq!(pruned.accounts.len(), 1);
        assert_eq!(pruned.accounts[0].0, "anon");
        assert!(!st.unproven_by_network.contains_key(&net));
        assert_eq!(st.anonymous_accounts, 1);
        assert_eq!(st.by_thumbprint.len(), 2);
        let pruned = st.prune(now + PROVEN_ACCOUNT_IDLE);
        assert_eq!(pruned.accounts.len(), 1);
        assert_eq!(pruned.accounts[0].0, "proven");
        assert!(st
            .prune(now + time::Duration::days(10_000))
            .accounts
            .is_empty());
        assert!(st.accounts.contains_key("eab"));
    }

    /// "A restart does not help": what expired while the server was stopped
    /// is pruned from the store when it starts.
    #[test]
    fn a_start_prunes_from_the_store_what_expired_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open_sled_waiting(&dir.path().join("db"), Duration::from_secs(1))
                .unwrap();
        let acme = store.acme().unwrap();
        let now = OffsetDateTime::now_utc();
        let long_ago = now - time::Duration::days(30);
        let mut idle = account(long_ago, Some("192.0.2.1"), false);
        acme.put_account(&idle.record("idle"), None).unwrap();
        idle.thumbprint = "other".into();
        idle.last_seen = now;
        acme.put_account(&idle.record("recent"), None).unwrap();
        acme.put_order(&order("idle", "z1", now - time::Duration::seconds(1)).record("gone"))
            .unwrap();
        acme.put_authz(&authz("gone", "c1", now).record("z1"))
            .unwrap();
        acme.put_authz(&authz("nowhere", "c2", now).record("orphan"))
            .unwrap();
        let st = State::load(&acme, &AcmeLimits::default(), now).unwrap();
        assert_eq!(st.accounts.keys().collect::<Vec<_>>(), ["recent"]);
        let stored: Vec<String> = acme.accounts().unwrap().into_iter().map(|a| a.id).collect();
        assert_eq!(stored, ["recent"]);
        assert!(acme.orders().unwrap().is_empty());
        assert!(acme.authzs().unwrap().is_empty());
        assert_eq!(st.unproven_by_network.values().sum::<usize>(), 1);
    }

    /// A validation's outcome moves its challenge, its authorization and its
    /// order: all valid makes the order ready; one invalid makes it invalid
    /// and finished (no longer counted against its account).
    #[test]
    fn a_validation_decides_its_challenge_authorization_and_order() {
        let now = OffsetDateTime::now_utc();
        let day = now + time::Duration::hours(24);
        let mut st = State::new(&AcmeLimits::default());
        let pending = |o: &str, a: &str, c: &str| {
            let mut z = authz(o, c, day);
            z.status = AuthzStatus::Pending;
            z.challenges[0].status = ChallengeStatus::Processing;
            (a.to_string(), z)
        };
        for (o, authzs) in [("o1", ["a1", "a2"]), ("o2", ["b1", "b2"])] {
            let mut order = order("acct", authzs[0], day);
            order.status = OrderStatus::Pending;
            order.authzs = authzs.iter().map(|a| a.to_string()).collect();
            let zs = authzs
                .iter()
                .map(|a| pending(o, a, &format!("c-{a}")))
                .collect();
            st.add_order(o.into(), order, zs);
        }
        st.record_validation("a1", 0, Ok(()), now);
        assert_eq!(st.authzs["a1"].status, AuthzStatus::Valid);
        assert_eq!(st.authzs["a1"].challenges[0].validated, Some(now));
        assert_eq!(
            st.orders["o1"].status,
            OrderStatus::Pending,
            "a2 is not valid yet"
        );
        st.record_validation("a2", 0, Ok(()), now);
        assert_eq!(st.orders["o1"].status, OrderStatus::Ready);
        assert_eq!(st.usage["acct"].orders, 2, "ready is not finished");

        let problem = serde_json::json!({"type": "urn:ietf:params:acme:error:dns", "status": 403});
        st.record_validation("b1", 0, Err(problem.clone()), now);
        let (z, o) = (&st.authzs["b1"], &st.orders["o2"]);
        assert_eq!(z.status, AuthzStatus::Invalid);
        assert_eq!(z.challenges[0].status, ChallengeStatus::Invalid);
        assert_eq!(z.challenges[0].error.as_ref(), Some(&problem));
        assert_eq!(
            (o.status, o.error.as_ref()),
            (OrderStatus::Invalid, Some(&problem))
        );
        assert_eq!(st.usage["acct"].orders, 1, "the invalid order is finished");
        // An authorization or challenge that is gone is passed over.
        st.record_validation("nowhere", 0, Ok(()), now);
        st.record_validation("b2", 7, Ok(()), now);
        assert_eq!(st.authzs["b2"].status, AuthzStatus::Pending);
    }
}
