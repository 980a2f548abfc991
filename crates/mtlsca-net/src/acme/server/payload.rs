//! What a verified POST carries ([`Post`]) and its payload, typed per request
//! (RFC 8555 §7): newAccount, account update, keyChange, newOrder, a
//! challenge's response, finalize, revokeCert.
//!
//! Every payload is read by the same rules:
//!
//! - **A member the server does not know is ignored**, never an error (RFC 8555
//!   §7.3: the server "MUST ignore any values provided in the `orders` fields
//!   in account bodies sent by the client, as well as any other fields that it
//!   does not recognize"; this server reads every payload so).
//!   `termsOfServiceAgreed` is one of them here: the directory offers no terms
//!   of service, so there is nothing to agree to (§7.3.3).
//! - **A known member of the wrong type reads as absent** ([`Lenient`]), except
//!   where its presence alone decides ([`Option`] fields read with
//!   `present`: there a `null` is present too).
//! - **A payload that is JSON but not an object has no members.**
//!
//! A payload that is not JSON at all is `malformed`; an empty one is a
//! POST-as-GET ([`Post::payload`] answers `None`).

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::problem::Problem;
use crate::acme::jws::{Jwk, Jws};

/// A POST whose JWS verified and whose nonce was redeemed.
pub(super) struct Post {
    /// The request's JWS.
    pub(super) jws: Jws,
    /// The account that signed it (`kid`); `None` for a `jwk` (newAccount,
    /// revokeCert signed with the certificate's key).
    pub(super) account: Option<String>,
    /// The key its signature verified under.
    pub(super) key: Jwk,
}

impl Post {
    /// The payload as `T`; `None` for a POST-as-GET (an empty payload).
    pub(super) fn payload<T: DeserializeOwned + Default>(&self) -> Result<Option<T>, Problem> {
        if self.jws.payload.is_empty() {
            return Ok(None);
        }
        let v = self.jws.json().map_err(Problem::jws)?;
        Ok(Some(members(v)))
    }

    /// The payload of a request that needs one (`what` names it in the problem).
    pub(super) fn required<T: DeserializeOwned + Default>(&self, what: &str) -> Result<T, Problem> {
        self.payload()?
            .ok_or_else(|| Problem::malformed(format!("{what} needs a payload")))
    }
}

/// The members of a JSON value as `T`: an object's, or none for anything else.
pub(super) fn members<T: DeserializeOwned + Default>(v: Value) -> T {
    if v.is_object() {
        // Every member type here reads any JSON, so this does not fail.
        serde_json::from_value(v).unwrap_or_default()
    } else {
        T::default()
    }
}

/// A member whose wrong type reads as its absence (`{"onlyReturnExisting": 1}`
/// does not ask for anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lenient<T>(pub(super) Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Lenient<T> {
        Lenient(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Lenient<T>, D::Error> {
        let v = Value::deserialize(d)?;
        Ok(Lenient(serde_json::from_value(v).ok()))
    }
}

impl<T> Lenient<T> {
    /// The value, when the member was there with the right type.
    pub(super) fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

/// A JSON object inside a payload, read as `T` ([`members`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Object<T>(pub(super) T);

impl<'de, T: DeserializeOwned + Default> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Object<T>, D::Error> {
        Value::deserialize(d).map(|v| Object(members(v)))
    }
}

/// For a member whose presence decides: `Some` whenever it is there, `null`
/// included (with `#[serde(default)]`, `None` only when it is not).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `contact` (RFC 8555 §7.3): a list of URLs; what a member of the wrong type
/// is decides the problem (a list of something else: `unsupportedContact`;
/// not a list: `malformed`).
pub(super) type Contacts = Lenient<Vec<Lenient<String>>>;

/// newAccount (RFC 8555 §7.3).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct NewAccount {
    /// Only look the key's account up; never make one.
    pub(super) only_return_existing: Lenient<bool>,
    /// The account's contacts (`mailto:` URLs).
    #[serde(deserialize_with = "present")]
    pub(super) contact: Option<Contacts>,
    /// The binding to an EAB key (RFC 8555 §7.3.4): a JWS that
    /// [`crate::acme::eab::verify`] reads; any value, `null` included, is a
    /// binding to check.
    #[serde(deserialize_with = "present")]
    pub(super) external_account_binding: Option<Value>,
}

/// An update of an account (RFC 8555 §7.3.2, §7.3.6): POSTed to its URL.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct AccountUpdate {
    /// New contacts, replacing the old ones.
    #[serde(deserialize_with = "present")]
    pub(super) contact: Option<Contacts>,
    /// The status asked for (only `deactivated` may be).
    pub(super) status: Lenient<String>,
}

/// The payload of keyChange's inner JWS (RFC 8555 §7.3.5).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct KeyChange {
    /// The account's URL.
    pub(super) account: Lenient<String>,
    /// The account's current key, a JWK.
    #[serde(deserialize_with = "present")]
    pub(super) old_key: Option<Value>,
}

/// newOrder (RFC 8555 §7.4).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct NewOrder {
    /// What the certificate is to name.
    pub(super) identifiers: Lenient<Vec<Object<IdentifierPayload>>>,
    /// Refused whatever it holds: the profile decides the validity.
    #[serde(deserialize_with = "present")]
    pub(super) not_before: Option<IgnoredAny>,
    /// Refused whatever it holds: the profile decides the validity.
    #[serde(deserialize_with = "present")]
    pub(super) not_after: Option<IgnoredAny>,
}

/// An identifier object of newOrder (RFC 8555 §7.1.4, §9.7.7).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(super) struct IdentifierPayload {
    /// `dns` or `ip` (RFC 8738).
    #[serde(rename = "type")]
    pub(super) kind: Lenient<String>,
    /// The name or address.
    pub(super) value: Lenient<String>,
}

/// A client's answer to a challenge (RFC 8555 §7.5.1): `{}`. Any JSON
/// payload is an answer; an empty one is a POST-as-GET.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ChallengeResponse {}

/// finalize (RFC 8555 §7.4).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Finalize {
    /// The CSR, base64url DER.
    pub(super) csr: Lenient<String>,
}

/// revokeCert (RFC 8555 §7.6).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RevokeCert {
    /// The certificate, base64url DER.
    pub(super) certificate: Lenient<String>,
    /// An RFC 5280 reason code; when it is there it must be one.
    #[serde(deserialize_with = "present")]
    pub(super) reason: Option<Lenient<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_members_are_ignored_and_wrong_types_read_as_absent() {
        let p: NewAccount = members(json!({
            "termsOfServiceAgreed": "yes",
            "orders": "https://elsewhere/",
            "somethingNew": {"a": 1},
            "onlyReturnExisting": 1,
        }));
        assert_eq!(p.only_return_existing, Lenient(None));
        assert!(p.contact.is_none() && p.external_account_binding.is_none());
        let p: NewAccount = members(json!({"onlyReturnExisting": true, "contact": null}));
        assert_eq!(p.only_return_existing.get(), Some(&true));
        // Present, but not a list: the contact rule refuses it.
        assert_eq!(p.contact, Some(Lenient(None)));
        let p: NewAccount = members(json!({"externalAccountBinding": null}));
        assert_eq!(p.external_account_binding, Some(Value::Null));
        let p: NewAccount = members(json!({"contact": ["mailto:a@b.test", 7]}));
        assert_eq!(
            p.contact,
            Some(Lenient(Some(vec![
                Lenient(Some("mailto:a@b.test".to_string())),
                Lenient(None)
            ])))
        );
    }

    #[test]
    fn a_payload_that_is_not_an_object_has_no_members() {
        let p: NewOrder = members(json!([{"type": "dns", "value": "a.test"}]));
        assert_eq!(p.identifiers, Lenient(None));
        let p: NewOrder = members(json!({"identifiers": [["dns", "a.test"], 5]}));
        let items = p.identifiers.get().unwrap();
        assert_eq!(items[0].0, IdentifierPayload::default());
        assert_eq!(items[1].0, IdentifierPayload::default());
        let p: NewOrder = members(json!({
            "identifiers": [{"type": "dns", "value": "a.test", "extra": 1}],
            "notAfter": null,
        }));
        let i = &p.identifiers.get().unwrap()[0].0;
        assert_eq!(
            (
                i.kind.get().unwrap().as_str(),
                i.value.get().unwrap().as_str()
            ),
            ("dns", "a.test")
        );
        assert!(p.not_before.is_none() && p.not_after.is_some());
    }

    #[test]
    fn revocation_reasons_and_key_changes_read_as_before() {
        let p: RevokeCert = members(json!({"certificate": "AAAA", "reason": 4}));
        assert_eq!(p.reason, Some(Lenient(Some(4))));
        for bad in [json!(-1), json!(4.0), json!("4"), json!(null)] {
            let p: RevokeCert = members(json!({ "reason": bad }));
            assert_eq!(p.reason, Some(Lenient(None)), "{bad}");
        }
        let p: RevokeCert = members(json!({}));
        assert_eq!((p.certificate, p.reason), (Lenient(None), None));
        let p: KeyChange = members(json!({"account": 5, "oldKey": null}));
        assert_eq!((p.account, p.old_key), (Lenient(None), Some(Value::Null)));
        let p: AccountUpdate = members(json!({"status": "deactivated"}));
        assert_eq!(p.status.get().map(String::as_str), Some("deactivated"));
        assert!(p.contact.is_none());
        let _: ChallengeResponse = members(json!({"keyAuthorization": "x"}));
        let p: Finalize = members(json!({"csr": ["x"]}));
        assert_eq!(p.csr, Lenient(None));
    }
}
