//! External Account Binding (RFC 8555 §7.3.4): a newAccount request carries a
//! JWS, MACed with a key the CA handed out (`mtlsca acme eab create`), whose
//! payload is the account's own JWK. It binds the new account to that key id
//! (and so to the profile the key was made for).
//!
//! The keys live in the CA's store (`eab_keys`: made, listed and revoked by the
//! operator); each binds at most one account, whose certificates then come
//! from the key's profile.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::hmac;
use serde_json::Value;

use super::jws::{Jwk, JwsError};
use super::problem::ProblemType;

/// Why an external account binding is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EabError {
    /// Not a flattened JWS with `alg`, `kid` and `url`, or no `nonce` rule kept.
    Malformed(String),
    /// The key id is unknown (or already used).
    UnknownKey(String),
    /// The MAC does not verify, or the payload is not the account key.
    Unauthorized(String),
}

impl EabError {
    /// The ACME problem type.
    pub fn problem(&self) -> ProblemType {
        match self {
            EabError::Malformed(_) => ProblemType::Malformed,
            EabError::UnknownKey(_) | EabError::Unauthorized(_) => ProblemType::Unauthorized,
        }
    }

    /// The ACME problem type's URN.
    pub fn problem_type(&self) -> &'static str {
        self.problem().urn()
    }
}

impl std::fmt::Display for EabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EabError::Malformed(m) => write!(f, "external account binding: {m}"),
            EabError::UnknownKey(k) => write!(
                f,
                "external account binding: key id `{}` is unknown or used",
                crate::names::printable(k)
            ),
            EabError::Unauthorized(m) => write!(f, "external account binding: {m}"),
        }
    }
}

impl std::error::Error for EabError {}

/// Check an `externalAccountBinding` object of a newAccount payload: signed for
/// `url` (the newAccount URL), over `account_key`, MACed with the key that
/// `lookup` returns for its key id. Returns the key id.
pub fn verify(
    binding: &Value,
    url: &str,
    account_key: &Jwk,
    lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<String, EabError> {
    let part = |m: &str| {
        binding
            .get(m)
            .and_then(Value::as_str)
            .ok_or_else(|| EabError::Malformed(format!("member `{m}` is missing")))
    };
    let (protected, payload, signature) =
        (part("protected")?, part("payload")?, part("signature")?);
    let decode = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|_| EabError::Malformed(format!("`{what}` is not base64url")))
    };
    let header: Value = serde_json::from_slice(&decode("protected", protected)?)
        .map_err(|_| EabError::Malformed("the protected header is not JSON".into()))?;
    let text = |m: &str| header.get(m).and_then(Value::as_str);
    let alg = match text("alg") {
        Some("HS256") => hmac::HMAC_SHA256,
        Some("HS384") => hmac::HMAC_SHA384,
        Some("HS512") => hmac::HMAC_SHA512,
        _ => {
            return Err(EabError::Malformed(
                "`alg` must be HS256, HS384 or HS512".into(),
            ))
        }
    };
    if header.get("nonce").is_some() {
        return Err(EabError::Malformed(
            "the binding must not carry a `nonce` (RFC 8555 §7.3.4)".into(),
        ));
    }
    let kid = text("kid").ok_or_else(|| EabError::Malformed("`kid` is missing".into()))?;
    if text("url") != Some(url) {
        return Err(EabError::Malformed(
            "`url` must be the newAccount URL".into(),
        ));
    }
    let bound: Value = serde_json::from_slice(&decode("payload", payload)?)
        .map_err(|_| EabError::Malformed("the payload is not a JWK".into()))?;
    let bound = Jwk::from_json(&bound).map_err(|e: JwsError| EabError::Malformed(e.to_string()))?;
    if bound.thumbprint() != account_key.thumbprint() {
        return Err(EabError::Unauthorized(
            "the bound key is not the account's key".into(),
        ));
    }
    let secret = lookup(kid).ok_or_else(|| EabError::UnknownKey(kid.to_string()))?;
    let key = hmac::Key::new(alg, &secret);
    hmac::verify(
        &key,
        format!("{protected}.{payload}").as_bytes(),
        &decode("signature", signature)?,
    )
    .map_err(|_| EabError::Unauthorized("the MAC does not verify".into()))?;
    Ok(kid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn account_jwk() -> (Value, Jwk) {
        let v = json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode([7u8; 32])});
        let k = Jwk::from_json(&v).unwrap();
        (v, k)
    }

    fn binding(kid: &str, url: &str, jwk: &Value, secret: &[u8]) -> Value {
        let p = B64.encode(json!({"alg": "HS256", "kid": kid, "url": url}).to_string());
        let pl = B64.encode(jwk.to_string());
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            format!("{p}.{pl}").as_bytes(),
        );
        json!({"protected": p, "payload": pl, "signature": B64.encode(tag.as_ref())})
    }

    #[test]
    fn a_binding_verifies_for_its_key_url_and_account() {
        let (v, k) = account_jwk();
        let lookup = |kid: &str| (kid == "kid-1").then(|| b"secret-key-bytes".to_vec());
        let url = "https://ca/acme/new-account";
        let b = binding("kid-1", url, &v, b"secret-key-bytes");
        assert_eq!(verify(&b, url, &k, &lookup).unwrap(), "kid-1");
        // Wrong MAC key, unknown key id, another URL, another account key.
        let bad = binding("kid-1", url, &v, b"other");
        assert!(matches!(
            verify(&bad, url, &k, &lookup),
            Err(EabError::Unauthorized(_))
        ));
        let unknown = binding("kid-2", url, &v, b"secret-key-bytes");
        assert!(matches!(
            verify(&unknown, url, &k, &lookup),
            Err(EabError::UnknownKey(_))
        ));
        assert!(matches!(
            verify(&b, "https://ca/other", &k, &lookup),
            Err(EabError::Malformed(_))
        ));
        let other =
            Jwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode([9u8; 32])}))
                .unwrap();
        assert!(matches!(
            verify(&b, url, &other, &lookup),
            Err(EabError::Unauthorized(_))
        ));
        assert!(verify(&json!({}), url, &k, &lookup).is_err());
    }
}
