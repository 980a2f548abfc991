//! The rules of an account, apart from HTTP and from the working copy: its
//! contacts, the status a client may give it, and what a key rollover must
//! prove. Pure functions, called by the handlers.

use hyper::StatusCode;

use super::payload::{members, Contacts, KeyChange, Post};
use super::problem::Problem;
use super::status::AccountStatus;
use crate::acme::jws::{Jwk, Jws, Signer};
use crate::acme::problem::ProblemType;

/// Contacts an account may list at most.
const MAX_CONTACTS: usize = 8;
/// The longest contact URL.
const MAX_CONTACT_LEN: usize = 256;

/// An account's contacts (RFC 8555 §7.3): none when the member is absent, else
/// a list of up to 8 `mailto:` URLs of at most 256 characters
/// (`unsupportedContact` for another entry, `malformed` for anything but such
/// a list).
pub(super) fn contacts(member: Option<&Contacts>) -> Result<Vec<String>, Problem> {
    let Some(member) = member else {
        return Ok(Vec::new());
    };
    let list = member
        .get()
        .filter(|l| l.len() <= MAX_CONTACTS)
        .ok_or_else(|| Problem::malformed("`contact` must be a list of up to 8 URLs"))?;
    list.iter()
        .map(|c| {
            c.get()
                .filter(|s| s.len() <= MAX_CONTACT_LEN && s.starts_with("mailto:"))
                .cloned()
                .ok_or_else(|| {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        ProblemType::UnsupportedContact,
                        "contacts are up to 8 `mailto:` URLs",
                    )
                })
        })
        .collect()
}

/// The status an account update asks for (RFC 8555 §7.3.6): none (a status
/// that is not a string asks for nothing), or `deactivated`; any other is
/// `malformed`.
pub(super) fn requested_status(status: Option<&String>) -> Result<Option<AccountStatus>, Problem> {
    match status.map(String::as_str) {
        None => Ok(None),
        Some("deactivated") => Ok(Some(AccountStatus::Deactivated)),
        Some(s) => Err(Problem::malformed(format!(
            "an account's status can only become `deactivated`, not `{}`",
            crate::names::printable(s)
        ))),
    }
}

/// The new key of a key rollover (RFC 8555 §7.3.5): the outer JWS (`post`,
/// verified under the account's key) carries an inner JWS signed by the new
/// key (`jwk`) for the same URL, over `{account, oldKey}` naming this account
/// (`kid`, its URL) and its current key.
pub(super) fn rollover_key(post: &Post, kid: &str) -> Result<Jwk, Problem> {
    let inner = Jws::parse_key_change(&post.jws.payload).map_err(Problem::jws)?;
    let Signer::Jwk(new) = &inner.signer else {
        return Err(Problem::malformed("the inner JWS must carry the new key"));
    };
    inner.verify(new).map_err(Problem::jws)?;
    if inner.url != post.jws.url {
        return Err(Problem::malformed(
            "the inner JWS must be signed for the same URL as the outer",
        ));
    }
    let p: KeyChange = members(inner.json().map_err(Problem::jws)?);
    if p.account.get().map(String::as_str) != Some(kid) {
        return Err(Problem::malformed(
            "the inner payload names another account",
        ));
    }
    let old_key = p
        .old_key
        .as_ref()
        .map(Jwk::from_json)
        .transpose()
        .map_err(Problem::jws)?;
    if old_key.as_ref() != Some(&post.key) {
        return Err(Problem::malformed(
            "the inner payload's `oldKey` is not the account's key",
        ));
    }
    Ok(new.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::server::payload::Lenient;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    fn list(items: &[Value]) -> Contacts {
        members::<crate::acme::server::payload::NewAccount>(json!({ "contact": items }))
            .contact
            .unwrap()
    }

    #[test]
    fn contacts_are_up_to_eight_mailto_urls() {
        assert_eq!(contacts(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            contacts(Some(&list(&[json!("mailto:a@b.test")]))).unwrap(),
            ["mailto:a@b.test"]
        );
        let kind = |c: Contacts| contacts(Some(&c)).unwrap_err().kind;
        assert_eq!(
            kind(list(&[json!("tel:+1")])),
            ProblemType::UnsupportedContact
        );
        assert_eq!(kind(list(&[json!(7)])), ProblemType::UnsupportedContact);
        let long = format!("mailto:{}@b.test", "a".repeat(250));
        assert_eq!(kind(list(&[json!(long)])), ProblemType::UnsupportedContact);
        let nine = vec![json!("mailto:a@b.test"); 9];
        assert_eq!(kind(list(&nine)), ProblemType::Malformed);
        assert_eq!(
            kind(Lenient(None)),
            ProblemType::Malformed,
            "null, or not a list"
        );
    }

    #[test]
    fn an_account_may_only_be_deactivated() {
        assert_eq!(requested_status(None).unwrap(), None);
        assert_eq!(
            requested_status(Some(&"deactivated".into())).unwrap(),
            Some(AccountStatus::Deactivated)
        );
        let p = requested_status(Some(&"valid".into())).unwrap_err();
        assert_eq!(
            (p.kind, p.detail.as_str()),
            (
                ProblemType::Malformed,
                "an account's status can only become `deactivated`, not `valid`"
            )
        );
    }

    struct Key(EcdsaKeyPair);

    impl Key {
        fn new() -> Key {
            let rng = SystemRandom::new();
            let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
            let pk = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            Key(EcdsaKeyPair::from_pkcs8(alg, pk.as_ref(), &rng).unwrap())
        }
        fn json(&self) -> Value {
            let p = self.0.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..])})
        }
        fn jwk(&self) -> Jwk {
            Jwk::from_json(&self.json()).unwrap()
        }
        fn sign(&self, header: Value, payload: &Value) -> Vec<u8> {
            let p = B64.encode(header.to_string());
            let pl = B64.encode(payload.to_string());
            let sig = self
                .0
                .sign(&SystemRandom::new(), format!("{p}.{pl}").as_bytes())
                .unwrap();
            json!({"protected": p, "payload": pl, "signature": B64.encode(sig.as_ref())})
                .to_string()
                .into_bytes()
        }
    }

    /// The outer request as the HTTP layer hands it over: verified under `old`.
    fn outer(old: &Key, url: &str, inner: Vec<u8>) -> Post {
        let body = old.sign(
            json!({"alg": "ES256", "kid": "k", "nonce": "n", "url": url}),
            &serde_json::from_slice::<Value>(&inner).unwrap(),
        );
        Post {
            jws: Jws::parse(&body).unwrap(),
            account: Some("A1".into()),
            key: old.jwk(),
        }
    }

    #[test]
    fn a_rollover_proves_the_new_key_for_this_account_and_its_old_key() {
        let (old, new) = (Key::new(), Key::new());
        let url = "https://ca/acme/key-change";
        let kid = "https://ca/acme/acct/A1";
        let inner = |signer: &Key, url: &str, payload: Value| {
            signer.sign(
                json!({"alg": "ES256", "jwk": signer.json(), "url": url}),
                &payload,
            )
        };
        let good = json!({"account": kid, "oldKey": old.json()});
        let got = rollover_key(&outer(&old, url, inner(&new, url, good.clone())), kid).unwrap();
        assert_eq!(got, new.jwk());
        let refused = |post: Post| rollover_key(&post, kid).unwrap_err().detail;
        assert_eq!(
            refused(outer(
                &old,
                url,
                inner(&new, "https://ca/other", good.clone())
            )),
            "the inner JWS must be signed for the same URL as the outer"
        );
        assert_eq!(
            refused(outer(
                &old,
                url,
                inner(
                    &new,
                    url,
                    json!({"account": "https://ca/acme/acct/B", "oldKey": old.json()})
                )
            )),
            "the inner payload names another account"
        );
        assert_eq!(
            refused(outer(
                &old,
                url,
                inner(&new, url, json!({"account": kid, "oldKey": new.json()}))
            )),
            "the inner payload's `oldKey` is not the account's key"
        );
        assert_eq!(
            refused(outer(&old, url, inner(&new, url, json!({"account": kid})))),
            "the inner payload's `oldKey` is not the account's key"
        );
        let p = rollover_key(
            &outer(
                &old,
                url,
                inner(&new, url, json!({"account": kid, "oldKey": null})),
            ),
            kid,
        )
        .unwrap_err();
        assert_eq!(p.kind, ProblemType::BadPublicKey);
    }
}
