//! ACME state in the CA's store (issue 14): accounts (by id, indexed by the
//! account key's RFC 7638 thumbprint), orders, authorizations with their
//! challenges, the certificate chains offered for download, external account
//! binding keys, and the replay nonces handed from one run of `serve` to the next.
//!
//! Records are typed and serialized with serde (JSON, like the certificate
//! records). The server keeps a working copy in memory and writes each change
//! through [`AcmeStore`]; what must survive a crash (accounts, EAB bindings) is
//! flushed before the reply, the rest becomes durable with the next flush (each
//! issued certificate's, or the one at shutdown).
//!
//! Nonces are not written per request: the server keeps them in memory, saves
//! what they need to live on at a clean shutdown ([`AcmeStore::save_nonces`])
//! and takes it back (deleting it, durably) at the next start
//! ([`AcmeStore::take_nonces`]). After a crash nothing was saved: every earlier
//! nonce is refused, so a replay never succeeds across a restart either way.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sled::Transactional;
use time::OffsetDateTime;

use super::{store_err, Store};
use crate::error::{Error, Result};

/// An ACME identifier (RFC 8555 §9.7.7; RFC 8738 for IPs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum AcmeIdentifier {
    /// A DNS name (lowercase).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl AcmeIdentifier {
    /// The identifier object of RFC 8555 §7.1.4 (`{"type", "value"}`).
    pub fn json(&self) -> Value {
        match self {
            AcmeIdentifier::Dns(d) => serde_json::json!({"type": "dns", "value": d}),
            AcmeIdentifier::Ip(ip) => serde_json::json!({"type": "ip", "value": ip.to_string()}),
        }
    }

    /// The identifier's value as text.
    pub fn value(&self) -> String {
        match self {
            AcmeIdentifier::Dns(d) => d.clone(),
            AcmeIdentifier::Ip(ip) => ip.to_string(),
        }
    }
}

/// An ACME account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeAccount {
    /// The account id (the last segment of its URL).
    pub id: String,
    /// The account's public key as a JWK (RFC 7517) object.
    pub key: Value,
    /// The key's RFC 7638 thumbprint (indexed).
    pub thumbprint: String,
    /// `valid` or `deactivated`.
    pub status: String,
    /// `mailto:` contacts.
    pub contact: Vec<String>,
    /// The profile its certificates come from: its EAB key's; `None`: the
    /// server's `--acme-profile`.
    pub profile: Option<String>,
    /// The EAB key id it was bound with.
    pub eab_kid: Option<String>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The client network (an IPv4 address, an IPv6 /64) that registered it,
    /// for an account without EAB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<IpAddr>,
    /// Whether it obtained a certificate; `None` in records from before this
    /// was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proven: Option<bool>,
    /// Its last request, as of the last time that was written.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<OffsetDateTime>,
}

/// An ACME order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeOrder {
    /// The order id.
    pub id: String,
    /// The account that made it.
    pub account: String,
    /// `pending`, `ready`, `processing`, `valid` or `invalid`.
    pub status: String,
    /// When it expires (and is pruned with its authorizations and chain).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// What it asks for.
    pub identifiers: Vec<AcmeIdentifier>,
    /// Its authorization ids.
    pub authzs: Vec<String>,
    /// The id of its certificate download, once issued.
    pub certificate: Option<String>,
    /// The issued certificate's SHA-256 (hex).
    pub cert_sha256: Option<String>,
    /// The problem document that made it invalid.
    pub error: Option<Value>,
}

/// A challenge of an authorization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeChallenge {
    /// `http-01`, `tls-alpn-01`, ...
    pub kind: String,
    /// The challenge id.
    pub id: String,
    /// The token.
    pub token: String,
    /// `pending`, `processing`, `valid` or `invalid`.
    pub status: String,
    /// When it was validated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub validated: Option<OffsetDateTime>,
    /// The problem document of a failed validation.
    pub error: Option<Value>,
}

/// An ACME authorization with its challenges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeAuthz {
    /// The authorization id.
    pub id: String,
    /// The account it belongs to.
    pub account: String,
    /// The order it belongs to.
    pub order: String,
    /// The identifier to prove.
    pub identifier: AcmeIdentifier,
    /// `pending`, `valid`, `invalid`, ...
    pub status: String,
    /// When it expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Its challenges.
    pub challenges: Vec<AcmeChallenge>,
}

/// A certificate chain offered for download (`/acme/cert/ID`), pruned with its order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcmeCert {
    /// The download id.
    pub id: String,
    /// The account that may download it.
    pub account: String,
    /// The order it was issued for.
    pub order: String,
    /// The PEM chain: the certificate, then its issuing CAs.
    pub chain_pem: String,
}

/// An external account binding key (`mtlsca acme eab create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EabKey {
    /// The key id the client sends.
    pub kid: String,
    /// The HMAC key, base64url without padding; emptied once the key binds an
    /// account or is revoked (it is never checked again, and a secret kept is a
    /// secret that can leak, from the store or a backup).
    pub hmac_key: String,
    /// The profile of the account it binds.
    pub profile: String,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The account it bound (each key binds at most one).
    pub account: Option<String>,
    /// When it was revoked (it then binds nothing more).
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked: Option<OffsetDateTime>,
}

/// A handle on the ACME trees of an open [`Store`]; cheap to clone and usable
/// from any thread while the store stays open in this process.
#[derive(Clone)]
pub struct AcmeStore {
    db: sled::Db,
    path: std::path::PathBuf,
    accounts: sled::Tree,
    account_keys: sled::Tree,
    orders: sled::Tree,
    authzs: sled::Tree,
    certs: sled::Tree,
    eab: sled::Tree,
    nonces: sled::Tree,
    /// The certificates' request-id index (read only here).
    requests: sled::Tree,
}

impl std::fmt::Debug for AcmeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(store_err)
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("damaged ACME {what} record: {e}")))
}

impl Store {
    /// The ACME trees of this store.
    pub fn acme(&self) -> Result<AcmeStore> {
        let tree = |name: &str| self.db.open_tree(name).map_err(store_err);
        Ok(AcmeStore {
            accounts: tree("acme_accounts")?,
            account_keys: tree("acme_account_keys")?,
            orders: tree("acme_orders")?,
            authzs: tree("acme_authzs")?,
            certs: tree("acme_certs")?,
            eab: tree("acme_eab")?,
            nonces: tree("acme_nonces")?,
            requests: self.requests.clone(),
            db: self.db.clone(),
            path: self.path.clone(),
        })
    }
}

impl AcmeStore {
    /// Make every change durable (the whole store's, like [`Store::flush`]).
    pub fn flush(&self) -> Result<()> {
        super::flush_db(&self.db, &self.path)
    }

    /// Record an account (new or changed) and index its key's thumbprint;
    /// `old_thumbprint`: the index entry of its previous key, removed (rollover).
    /// Refuses a thumbprint that indexes another account.
    pub fn put_account(&self, a: &AcmeAccount, old_thumbprint: Option<&str>) -> Result<()> {
        let value = encode(a)?;
        let r = (&self.accounts, &self.account_keys).transaction(|(accounts, keys)| {
            if let Some(other) = keys.get(a.thumbprint.as_bytes())? {
                if other != a.id.as_bytes() {
                    return sled::transaction::abort(());
                }
            }
            if let Some(old) = old_thumbprint.filter(|t| *t != a.thumbprint) {
                keys.remove(old.as_bytes())?;
            }
            keys.insert(a.thumbprint.as_bytes(), a.id.as_bytes())?;
            accounts.insert(a.id.as_bytes(), value.clone())?;
            Ok(())
        });
        match r {
            Ok(()) => Ok(()),
            Err(sled::transaction::TransactionError::Abort(())) => Err(Error::refused(
                "the key is already another ACME account's key",
            )),
            Err(sled::transaction::TransactionError::Storage(e)) => Err(store_err(e)),
        }
    }

    /// Forget an account and its key's index entry (when it still names it).
    pub fn remove_account(&self, id: &str, thumbprint: &str) -> Result<()> {
        (&self.accounts, &self.account_keys)
            .transaction(|(accounts, keys)| {
                if keys.get(thumbprint.as_bytes())?.as_deref() == Some(id.as_bytes()) {
                    keys.remove(thumbprint.as_bytes())?;
                }
                accounts.remove(id.as_bytes())?;
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(e) => store_err(e),
                sled::transaction::TransactionError::Abort(()) => store_err("aborted"),
            })
    }

    /// Whether a certificate was issued to an account (the engine records ACME
    /// certificates under the request id `acme/acct/ID/order/ORDER`).
    pub fn has_certificates_of(&self, account: &str) -> Result<bool> {
        let prefix = format!("acme/acct/{account}/order/");
        match self.requests.scan_prefix(prefix.as_bytes()).next() {
            None => Ok(false),
            Some(r) => r.map(|_| true).map_err(store_err),
        }
    }

    /// Every account.
    pub fn accounts(&self) -> Result<Vec<AcmeAccount>> {
        self.accounts
            .iter()
            .values()
            .map(|v| decode("account", &v.map_err(store_err)?))
            .collect()
    }

    /// The account of a key thumbprint.
    pub fn account_by_thumbprint(&self, thumbprint: &str) -> Result<Option<AcmeAccount>> {
        let Some(id) = self
            .account_keys
            .get(thumbprint.as_bytes())
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        match self.accounts.get(&id).map_err(store_err)? {
            Some(v) => decode("account", &v).map(Some),
            None => Ok(None),
        }
    }

    /// Record an order (new or changed).
    pub fn put_order(&self, o: &AcmeOrder) -> Result<()> {
        self.orders
            .insert(o.id.as_bytes(), encode(o)?)
            .map_err(store_err)?;
        Ok(())
    }

    /// Every order.
    pub fn orders(&self) -> Result<Vec<AcmeOrder>> {
        self.orders
            .iter()
            .values()
            .map(|v| decode("order", &v.map_err(store_err)?))
            .collect()
    }

    /// Record an authorization (new or changed).
    pub fn put_authz(&self, a: &AcmeAuthz) -> Result<()> {
        self.authzs
            .insert(a.id.as_bytes(), encode(a)?)
            .map_err(store_err)?;
        Ok(())
    }

    /// Every authorization.
    pub fn authzs(&self) -> Result<Vec<AcmeAuthz>> {
        self.authzs
            .iter()
            .values()
            .map(|v| decode("authorization", &v.map_err(store_err)?))
            .collect()
    }

    /// Forget an authorization (one whose order is gone).
    pub fn remove_authz(&self, id: &str) -> Result<()> {
        self.authzs.remove(id.as_bytes()).map_err(store_err)?;
        Ok(())
    }

    /// Record a chain for download.
    pub fn put_cert(&self, c: &AcmeCert) -> Result<()> {
        self.certs
            .insert(c.id.as_bytes(), encode(c)?)
            .map_err(store_err)?;
        Ok(())
    }

    /// A chain for download.
    pub fn cert(&self, id: &str) -> Result<Option<AcmeCert>> {
        match self.certs.get(id.as_bytes()).map_err(store_err)? {
            Some(v) => decode("certificate", &v).map(Some),
            None => Ok(None),
        }
    }

    /// Forget an order with its authorizations and chain download (the
    /// certificate itself stays recorded).
    pub fn remove_order(&self, o: &AcmeOrder) -> Result<()> {
        for a in &o.authzs {
            self.authzs.remove(a.as_bytes()).map_err(store_err)?;
        }
        if let Some(c) = &o.certificate {
            self.certs.remove(c.as_bytes()).map_err(store_err)?;
        }
        // The server names an order's download after the order.
        self.certs.remove(o.id.as_bytes()).map_err(store_err)?;
        self.orders.remove(o.id.as_bytes()).map_err(store_err)?;
        Ok(())
    }

    /// Record a new EAB key; refuses a key id that exists.
    pub fn put_new_eab(&self, k: &EabKey) -> Result<()> {
        let r = self
            .eab
            .compare_and_swap(k.kid.as_bytes(), None::<&[u8]>, Some(encode(k)?))
            .map_err(store_err)?;
        r.map_err(|_| Error::refused(format!("EAB key `{}` exists", k.kid)))
    }

    /// An EAB key by id.
    pub fn eab(&self, kid: &str) -> Result<Option<EabKey>> {
        match self.eab.get(kid.as_bytes()).map_err(store_err)? {
            Some(v) => decode("EAB key", &v).map(Some),
            None => Ok(None),
        }
    }

    /// Every EAB key, by key id.
    pub fn eab_keys(&self) -> Result<Vec<EabKey>> {
        self.eab
            .iter()
            .values()
            .map(|v| decode("EAB key", &v.map_err(store_err)?))
            .collect()
    }

    /// Bind an EAB key to `account`: `false` when it is unknown, revoked or
    /// already bound (also by a concurrent binding).
    pub fn bind_eab(&self, kid: &str, account: &str) -> Result<bool> {
        let Some(old) = self.eab.get(kid.as_bytes()).map_err(store_err)? else {
            return Ok(false);
        };
        let mut k: EabKey = decode("EAB key", &old)?;
        if k.account.is_some() || k.revoked.is_some() {
            return Ok(false);
        }
        k.account = Some(account.to_string());
        k.hmac_key.clear();
        let swapped = self
            .eab
            .compare_and_swap(kid.as_bytes(), Some(old), Some(encode(&k)?))
            .map_err(store_err)?;
        Ok(swapped.is_ok())
    }

    /// Revoke an EAB key (it binds no more accounts; an account it bound stays).
    /// Returns the key as it is now, `None` when unknown.
    pub fn revoke_eab(&self, kid: &str, now: OffsetDateTime) -> Result<Option<EabKey>> {
        let Some(v) = self.eab.get(kid.as_bytes()).map_err(store_err)? else {
            return Ok(None);
        };
        let mut k: EabKey = decode("EAB key", &v)?;
        if k.revoked.is_none() || !k.hmac_key.is_empty() {
            k.revoked.get_or_insert(now);
            k.hmac_key.clear();
            self.eab
                .insert(kid.as_bytes(), encode(&k)?)
                .map_err(store_err)?;
        }
        Ok(Some(k))
    }

    /// Empty the HMAC key of every EAB key that is bound or revoked (stores
    /// from before keys were emptied when spent); returns how many. The caller
    /// flushes.
    pub fn forget_spent_eab_secrets(&self) -> Result<usize> {
        let mut forgotten = 0;
        for k in self.eab_keys()? {
            if k.hmac_key.is_empty() || (k.account.is_none() && k.revoked.is_none()) {
                continue;
            }
            let old = encode(&k)?;
            let spent = EabKey {
                hmac_key: String::new(),
                ..k
            };
            // A concurrent change (a binding, a revocation) empties it too.
            let swapped = self
                .eab
                .compare_and_swap(spent.kid.as_bytes(), Some(old), Some(encode(&spent)?))
                .map_err(store_err)?;
            forgotten += usize::from(swapped.is_ok());
        }
        Ok(forgotten)
    }

    /// Save what the nonces of this run need to live on (opaque bytes, see
    /// `acme::nonce`) at a clean shutdown; the caller flushes.
    pub fn save_nonces(&self, saved: &[u8]) -> Result<()> {
        self.nonces.insert(NONCE_STATE, saved).map_err(store_err)?;
        Ok(())
    }

    /// Take what the previous run saved: it is deleted (with whatever else the
    /// tree holds, such as nonces of older versions) and the deletion flushed
    /// before it is returned, so each nonce is redeemed at most once whatever
    /// happens next. `None` after a crash.
    pub fn take_nonces(&self) -> Result<Option<Vec<u8>>> {
        let mut out = None;
        let mut batch = sled::Batch::default();
        let mut any = false;
        for item in self.nonces.iter() {
            let (k, v) = item.map_err(store_err)?;
            if k.as_ref() == NONCE_STATE {
                out = Some(v.to_vec());
            }
            batch.remove(k);
            any = true;
        }
        if any {
            self.nonces.apply_batch(batch).map_err(store_err)?;
            self.flush()?;
        }
        Ok(out)
    }
}

/// The key of the saved nonce state in the nonce tree.
const NONCE_STATE: &[u8] = b"\0state";

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_sled_waiting(&dir.path().join("db"), Duration::from_secs(1)).unwrap();
        (dir, store)
    }

    fn account(id: &str, thumb: &str) -> AcmeAccount {
        AcmeAccount {
            id: id.into(),
            key: serde_json::json!({"kty": "OKP"}),
            thumbprint: thumb.into(),
            status: "valid".into(),
            contact: vec![],
            profile: None,
            eab_kid: None,
            created: OffsetDateTime::UNIX_EPOCH,
            network: None,
            proven: None,
            last_seen: None,
        }
    }

    #[test]
    fn accounts_are_indexed_by_key_and_a_key_names_one_account() {
        let (_d, s) = store();
        let a = s.acme().unwrap();
        a.put_account(&account("a1", "t1"), None).unwrap();
        assert!(a.put_account(&account("a2", "t1"), None).is_err());
        assert_eq!(a.account_by_thumbprint("t1").unwrap().unwrap().id, "a1");
        // Rollover: the old thumbprint no longer finds it.
        a.put_account(&account("a1", "t2"), Some("t1")).unwrap();
        assert!(a.account_by_thumbprint("t1").unwrap().is_none());
        assert_eq!(a.account_by_thumbprint("t2").unwrap().unwrap().id, "a1");
        assert_eq!(a.accounts().unwrap().len(), 1);
    }

    #[test]
    fn an_eab_key_binds_one_account_and_none_once_revoked() {
        let (_d, s) = store();
        let a = s.acme().unwrap();
        let k = EabKey {
            kid: "k1".into(),
            hmac_key: "x".into(),
            profile: "device".into(),
            created: OffsetDateTime::UNIX_EPOCH,
            account: None,
            revoked: None,
        };
        a.put_new_eab(&k).unwrap();
        assert!(a.put_new_eab(&k).is_err(), "a key id is unique");
        assert!(a.bind_eab("k1", "acct1").unwrap());
        assert!(!a.bind_eab("k1", "acct2").unwrap());
        assert!(!a.bind_eab("nope", "acct2").unwrap());
        let k2 = EabKey {
            kid: "k2".into(),
            ..k.clone()
        };
        a.put_new_eab(&k2).unwrap();
        a.revoke_eab("k2", OffsetDateTime::UNIX_EPOCH).unwrap();
        assert!(!a.bind_eab("k2", "acct3").unwrap());
        assert_eq!(a.eab_keys().unwrap().len(), 2);
        // Spent keys keep no secret: bound, revoked.
        let secret = |kid: &str| a.eab(kid).unwrap().unwrap().hmac_key;
        assert_eq!((secret("k1"), secret("k2")), (String::new(), String::new()));
        assert_eq!(
            a.eab("k1").unwrap().unwrap().account.as_deref(),
            Some("acct1")
        );

        // Keys spent in a store from before: forgotten by the sweep, and only
        // those (an unused key keeps its secret).
        let old_bound = EabKey {
            kid: "k3".into(),
            account: Some("acct9".into()),
            ..k.clone()
        };
        let old_revoked = EabKey {
            kid: "k4".into(),
            revoked: Some(OffsetDateTime::UNIX_EPOCH),
            ..k.clone()
        };
        let unused = EabKey {
            kid: "k5".into(),
            ..k
        };
        for key in [&old_bound, &old_revoked, &unused] {
            a.put_new_eab(key).unwrap();
        }
        assert_eq!(a.forget_spent_eab_secrets().unwrap(), 2);
        assert_eq!((secret("k3"), secret("k4")), (String::new(), String::new()));
        assert_eq!(secret("k5"), "x");
        assert_eq!(a.forget_spent_eab_secrets().unwrap(), 0);
        // Revoking a key of an old store that was revoked but kept its secret
        // empties it too.
        let old_revoked = EabKey {
            kid: "k6".into(),
            ..old_revoked
        };
        a.put_new_eab(&old_revoked).unwrap();
        a.revoke_eab("k6", OffsetDateTime::now_utc()).unwrap();
        assert_eq!(secret("k6"), "");
        assert_eq!(
            a.eab("k6").unwrap().unwrap().revoked,
            Some(OffsetDateTime::UNIX_EPOCH),
            "the first revocation's time stays"
        );
    }

    #[test]
    fn saved_nonces_are_taken_back_once() {
        let (_d, s) = store();
        let a = s.acme().unwrap();
        // A nonce of an older version is taken away with it, unread.
        a.nonces.insert(b"n1", &5i64.to_be_bytes()[..]).unwrap();
        a.save_nonces(b"saved").unwrap();
        assert_eq!(a.take_nonces().unwrap().as_deref(), Some(&b"saved"[..]));
        assert_eq!(a.take_nonces().unwrap(), None);
        assert!(a.nonces.is_empty());
    }

    #[test]
    fn an_order_is_removed_with_its_authorizations_and_chain() {
        let (_d, s) = store();
        let a = s.acme().unwrap();
        let o = AcmeOrder {
            id: "o1".into(),
            account: "a1".into(),
            status: "valid".into(),
            expires: OffsetDateTime::UNIX_EPOCH,
            identifiers: vec![AcmeIdentifier::Dns("a.test".into())],
            authzs: vec!["z1".into()],
            certificate: Some("c1".into()),
            cert_sha256: None,
            error: None,
        };
        a.put_order(&o).unwrap();
        a.put_authz(&AcmeAuthz {
            id: "z1".into(),
            account: "a1".into(),
            order: "o1".into(),
            identifier: AcmeIdentifier::Ip("127.0.0.1".parse().unwrap()),
            status: "valid".into(),
            expires: OffsetDateTime::UNIX_EPOCH,
            challenges: vec![],
        })
        .unwrap();
        a.put_cert(&AcmeCert {
            id: "c1".into(),
            account: "a1".into(),
            order: "o1".into(),
            chain_pem: "pem".into(),
        })
        .unwrap();
        assert_eq!(a.orders().unwrap(), vec![o.clone()]);
        assert_eq!(a.authzs().unwrap().len(), 1);
        a.remove_order(&o).unwrap();
        assert!(a.orders().unwrap().is_empty());
        assert!(a.authzs().unwrap().is_empty());
        assert!(a.cert("c1").unwrap().is_none());
    }
}
