//! JSON Web Signatures as ACME uses them (RFC 8555 §6.2, RFC 7515 flattened JSON
//! serialization): the protected header read and checked (one of `jwk`/`kid`,
//! `url`, `nonce`, an asymmetric `alg`), the account key as a JWK (RFC 7517) with
//! its RFC 7638 thumbprint, and the signature verified with ring. ES256, ES384,
//! RS256 and EdDSA (Ed25519) are accepted; everything else is refused with the
//! ACME problem that says so.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use super::problem::ProblemType;

/// Largest JWS body read (RFC 8555 leaves it to the server; CSRs fit easily).
pub const MAX_JWS_BYTES: usize = 64 * 1024;

/// Why a JWS is not accepted, with the ACME problem type it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwsError {
    /// Not a flattened JWS, bad base64url, bad JSON, a missing or doubled member.
    Malformed(String),
    /// `alg` is not one of ES256, ES384, RS256, EdDSA, or does not fit the key.
    BadSignatureAlgorithm(String),
    /// The JWK is not a usable public key.
    BadPublicKey(String),
    /// The signature does not verify under the key.
    BadSignature,
}

impl JwsError {
    /// The ACME problem type.
    pub fn problem(&self) -> ProblemType {
        match self {
            JwsError::Malformed(_) | JwsError::BadSignature => ProblemType::Malformed,
            JwsError::BadSignatureAlgorithm(_) => ProblemType::BadSignatureAlgorithm,
            JwsError::BadPublicKey(_) => ProblemType::BadPublicKey,
        }
    }

    /// The ACME problem type's URN (`urn:ietf:params:acme:error:...`).
    pub fn problem_type(&self) -> &'static str {
        self.problem().urn()
    }
}

impl std::fmt::Display for JwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwsError::Malformed(m) => write!(f, "malformed JWS: {m}"),
            JwsError::BadSignatureAlgorithm(m) => write!(f, "signature algorithm: {m}"),
            JwsError::BadPublicKey(m) => write!(f, "public key: {m}"),
            JwsError::BadSignature => f.write_str("the JWS signature does not verify"),
        }
    }
}

impl std::error::Error for JwsError {}

/// The signature algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (2048 to 8192 bits).
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    fn parse(s: &str) -> Result<Alg, JwsError> {
        match s {
            "ES256" => Ok(Alg::Es256),
            "ES384" => Ok(Alg::Es384),
            "RS256" => Ok(Alg::Rs256),
            "EdDSA" => Ok(Alg::EdDsa),
            other => Err(JwsError::BadSignatureAlgorithm(format!(
                "`{}` is not accepted (ES256, ES384, RS256, EdDSA are)",
                crate::names::printable(other)
            ))),
        }
    }
}

/// An account public key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jwk {
    /// An EC key on P-256 or P-384: uncompressed point coordinates.
    Ec {
        /// `P-256` or `P-384`.
        crv: &'static str,
        /// The x coordinate.
        x: Vec<u8>,
        /// The y coordinate.
        y: Vec<u8>,
    },
    /// An RSA key.
    Rsa {
        /// The modulus.
        n: Vec<u8>,
        /// The public exponent.
        e: Vec<u8>,
    },
    /// An Ed25519 key.
    Ed25519 {
        /// The public key.
        x: Vec<u8>,
    },
}

fn b64(v: &Value, member: &str) -> Result<Vec<u8>, JwsError> {
    let s = v
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::BadPublicKey(format!("JWK member `{member}` is missing")))?;
    B64.decode(s)
        .map_err(|_| JwsError::BadPublicKey(format!("JWK member `{member}` is not base64url")))
}

impl Jwk {
    /// Read a JWK (RFC 7517) and check it is a usable public key.
    pub fn from_json(v: &Value) -> Result<Jwk, JwsError> {
        if v.get("d").is_some() {
            return Err(JwsError::BadPublicKey(
                "the JWK holds a private key (`d`)".into(),
            ));
        }
        match v.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                let (crv, len) = match v.get("crv").and_then(Value::as_str) {
                    Some("P-256") => ("P-256", 32),
                    Some("P-384") => ("P-384", 48),
                    _ => {
                        return Err(JwsError::BadPublicKey(
                            "EC keys must be on P-256 or P-384".into(),
                        ))
                    }
                };
                let (x, y) = (b64(v, "x")?, b64(v, "y")?);
                if x.len() != len || y.len() != len {
                    return Err(JwsError::BadPublicKey(format!(
                        "{crv} coordinates must be {len} bytes"
                    )));
                }
                Ok(Jwk::Ec { crv, x, y })
            }
            Some("RSA") => {
                let (n, e) = (b64(v, "n")?, b64(v, "e")?);
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if !(crate::rules::RSA_MIN_BITS..=crate::rules::RSA_MAX_BITS).contains(&bits) {
                    return Err(JwsError::BadPublicKey(format!(
                        "RSA keys must have {}-{} bits",
                        crate::rules::RSA_MIN_BITS,
                        crate::rules::RSA_MAX_BITS
                    )));
                }
                Ok(Jwk::Rsa { n, e })
            }
            Some("OKP") if v.get("crv").and_then(Value::as_str) == Some("Ed25519") => {
                let x = b64(v, "x")?;
                if x.len() != 32 {
                    return Err(JwsError::BadPublicKey("Ed25519 keys are 32 bytes".into()));
                }
                Ok(Jwk::Ed25519 { x })
            }
            _ => Err(JwsError::BadPublicKey(
                "the JWK is not an EC (P-256, P-384), RSA or Ed25519 key".into(),
            )),
        }
    }

    /// The RFC 7638 thumbprint: SHA-256 of the required members in
    /// lexicographic order, base64url (key authorizations and EAB use it).
    pub fn thumbprint(&self) -> String {
        let e = |b: &[u8]| B64.encode(b);
        let canonical = match self {
            Jwk::Ec { crv, x, y } => {
                format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    e(x),
                    e(y)
                )
            }
            Jwk::Rsa { n, e: ex } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, e(ex), e(n)),
            Jwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, e(x)),
        };
        B64.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ))
    }

    /// Verify `sig` over `msg` with this key under `alg` (which must fit it).
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        let mismatch = || {
            JwsError::BadSignatureAlgorithm(format!("{alg:?} does not fit a {} key", self.kind()))
        };
        let ok = match (self, alg) {
            (Jwk::Ec { crv: "P-256", x, y }, Alg::Es256) => {
                let point = [&[4u8][..], x, y].concat();
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            (Jwk::Ec { crv: "P-384", x, y }, Alg::Es384) => {
                let point = [&[4u8][..], x, y].concat();
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            (Jwk::Rsa { n, e }, Alg::Rs256) => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
                .is_ok(),
            (Jwk::Ed25519 { x }, Alg::EdDsa) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok(),
            _ => return Err(mismatch()),
        };
        if ok {
            Ok(())
        } else {
            Err(JwsError::BadSignature)
        }
    }

    /// The key as [`crate::key::PublicKeyValue`], the form every key comparison
    /// of the project uses (a CSR's key against the account key, a revocation
    /// by the certificate's key).
    pub fn value(&self) -> Option<crate::key::PublicKeyValue> {
        use crate::key::{PublicKeyValue, P256_OID, P384_OID};
        match self {
            Jwk::Ec { crv, x, y } => {
                let oid = match *crv {
                    "P-256" => P256_OID,
                    "P-384" => P384_OID,
                    _ => return None,
                };
                PublicKeyValue::ec(oid, x, y)
            }
            Jwk::Rsa { n, e } => PublicKeyValue::rsa(n, e),
            Jwk::Ed25519 { x } => PublicKeyValue::ed25519(x),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Jwk::Ec { crv, .. } => crv,
            Jwk::Rsa { .. } => "RSA",
            Jwk::Ed25519 { .. } => "Ed25519",
        }
    }
}

/// Who signed: a new key (`jwk`, for newAccount and revocation by certificate
/// key) or an account (`kid`, its URL).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signer {
    /// The key itself.
    Jwk(Jwk),
    /// An account URL.
    Kid(String),
}

/// A JWS whose syntax and header were checked (not yet its signature: the key
/// of a `kid` must be looked up first).
#[derive(Debug, Clone)]
pub struct Jws {
    /// The algorithm.
    pub alg: Alg,
    /// The signer.
    pub signer: Signer,
    /// The anti-replay nonce.
    pub nonce: String,
    /// The URL the request was signed for.
    pub url: String,
    /// The payload, decoded (empty for POST-as-GET).
    pub payload: Vec<u8>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flattened {
    protected: String,
    payload: String,
    signature: String,
}

impl Jws {
    /// Parse a flattened JWS (RFC 8555 §6.2: exactly one of `jwk` and `kid`,
    /// `nonce` and `url` present, no unprotected header).
    pub fn parse(body: &[u8]) -> Result<Jws, JwsError> {
        if body.len() > MAX_JWS_BYTES {
            return Err(JwsError::Malformed(format!(
                "the body is over {} KiB",
                MAX_JWS_BYTES / 1024
            )));
        }
        let f: Flattened = serde_json::from_slice(body).map_err(|e| {
            JwsError::Malformed(format!(
                "not a flattened JWS ({})",
                e.to_string().lines().next().unwrap_or("")
            ))
        })?;
        let decode = |what: &str, s: &str| {
            B64.decode(s)
                .map_err(|_| JwsError::Malformed(format!("`{what}` is not base64url")))
        };
        let header: Value = serde_json::from_slice(&decode("protected", &f.protected)?)
            .map_err(|_| JwsError::Malformed("the protected header is not JSON".into()))?;
        let text = |m: &str| header.get(m).and_then(Value::as_str).map(String::from);
        let alg = Alg::parse(&text("alg").ok_or_else(|| {
            JwsError::BadSignatureAlgorithm("the protected header has no `alg`".into())
        })?)?;
        let signer = match (header.get("jwk"), text("kid")) {
            (Some(jwk), None) => Signer::Jwk(Jwk::from_json(jwk)?),
            (None, Some(kid)) => Signer::Kid(kid),
            _ => {
                return Err(JwsError::Malformed(
                    "the protected header must hold exactly one of `jwk` and `kid`".into(),
                ))
            }
        };
        let nonce = text("nonce")
            .ok_or_else(|| JwsError::Malformed("the protected header has no `nonce`".into()))?;
        let url = text("url")
            .ok_or_else(|| JwsError::Malformed("the protected header has no `url`".into()))?;
        Ok(Jws {
            alg,
            signer,
            nonce,
            url,
            payload: decode("payload", &f.payload)?,
            signing_input: format!("{}.{}", f.protected, f.payload).into_bytes(),
            signature: decode("signature", &f.signature)?,
        })
    }

    /// Parse the inner JWS of an account key change (RFC 8555 §7.3.5): signed
    /// by the new key (`jwk`), with `url` and without `nonce`. Its `nonce` is
    /// left empty.
    pub fn parse_key_change(body: &[u8]) -> Result<Jws, JwsError> {
        let f: Flattened = serde_json::from_slice(body).map_err(|_| {
            JwsError::Malformed("the key change payload is not a flattened JWS".into())
        })?;
        let decode = |what: &str, s: &str| {
            B64.decode(s)
                .map_err(|_| JwsError::Malformed(format!("inner `{what}` is not base64url")))
        };
        let header: Value = serde_json::from_slice(&decode("protected", &f.protected)?)
            .map_err(|_| JwsError::Malformed("the inner protected header is not JSON".into()))?;
        let text = |m: &str| header.get(m).and_then(Value::as_str).map(String::from);
        let alg = Alg::parse(&text("alg").ok_or_else(|| {
            JwsError::BadSignatureAlgorithm("the inner header has no `alg`".into())
        })?)?;
        if header.get("nonce").is_some() || header.get("kid").is_some() {
            return Err(JwsError::Malformed(
                "the inner JWS of a key change has a `jwk` and no `nonce` or `kid`".into(),
            ));
        }
        let jwk = header
            .get("jwk")
            .ok_or_else(|| JwsError::Malformed("the inner JWS has no `jwk`".into()))?;
        let url =
            text("url").ok_or_else(|| JwsError::Malformed("the inner JWS has no `url`".into()))?;
        Ok(Jws {
            alg,
            signer: Signer::Jwk(Jwk::from_json(jwk)?),
            nonce: String::new(),
            url,
            payload: decode("payload", &f.payload)?,
            signing_input: format!("{}.{}", f.protected, f.payload).into_bytes(),
            signature: decode("signature", &f.signature)?,
        })
    }

    /// Verify the signature under `key` (the `jwk` of the header, or the
    /// account's key for a `kid`).
    pub fn verify(&self, key: &Jwk) -> Result<(), JwsError> {
        key.verify(self.alg, &self.signing_input, &self.signature)
    }

    /// The payload as JSON (`{}` for POST-as-GET is refused: its payload is empty).
    pub fn json(&self) -> Result<Value, JwsError> {
        serde_json::from_slice(&self.payload)
            .map_err(|_| JwsError::Malformed("the payload is not JSON".into()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use serde_json::json;

    fn jws(header: Value, payload: &[u8], sign: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let p = B64.encode(header.to_string());
        let pl = B64.encode(payload);
        let sig = sign(format!("{p}.{pl}").as_bytes());
        json!({"protected": p, "payload": pl, "signature": B64.encode(sig)})
            .to_string()
            .into_bytes()
    }

    fn p256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let k = EcdsaKeyPair::from_pkcs8(alg, pk.as_ref(), &rng).unwrap();
        let pt = k.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": B64.encode(&pt[1..33]), "y": B64.encode(&pt[33..])});
        (k, jwk)
    }

    #[test]
    fn es256_and_eddsa_verify_and_tampering_is_caught() {
        let rng = SystemRandom::new();
        let (k, jwk) = p256();
        let h = json!({"alg": "ES256", "jwk": jwk, "nonce": "n1", "url": "https://a/new-acct"});
        let body = jws(h, b"{\"termsOfServiceAgreed\":true}", |m| {
            k.sign(&rng, m).unwrap().as_ref().to_vec()
        });
        let j = Jws::parse(&body).unwrap();
        let Signer::Jwk(key) = &j.signer else {
            panic!()
        };
        j.verify(key).unwrap();
        assert_eq!(j.json().unwrap()["termsOfServiceAgreed"], true);
        assert_eq!(
            (j.nonce.as_str(), j.url.as_str()),
            ("n1", "https://a/new-acct")
        );
        let mut bad = j.clone();
        bad.payload = b"{}".to_vec();
        bad.signing_input.push(b'x');
        assert_eq!(bad.verify(key), Err(JwsError::BadSignature));

        let ed = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
            .unwrap();
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(ed.public_key().as_ref())});
        let h = json!({"alg": "EdDSA", "jwk": jwk, "nonce": "n2", "url": "u"});
        let body = jws(h, b"", |m| ed.sign(m).as_ref().to_vec());
        let j = Jws::parse(&body).unwrap();
        let Signer::Jwk(key) = &j.signer else {
            panic!()
        };
        j.verify(key).unwrap();
        // The wrong algorithm for the key is refused as such.
        assert!(matches!(
            key.verify(Alg::Es256, b"x", b"y"),
            Err(JwsError::BadSignatureAlgorithm(_))
        ));
    }

    #[test]
    fn headers_are_held_to_rfc_8555() {
        let (_, jwk) = p256();
        let sig = |_: &[u8]| vec![0u8; 64];
        let cases = [
            (
                json!({"alg": "HS256", "jwk": jwk, "nonce": "n", "url": "u"}),
                "badSignatureAlgorithm",
            ),
            (
                json!({"alg": "none", "jwk": jwk, "nonce": "n", "url": "u"}),
                "badSignatureAlgorithm",
            ),
            (
                json!({"alg": "ES256", "jwk": jwk, "kid": "k", "nonce": "n", "url": "u"}),
                "malformed",
            ),
            (
                json!({"alg": "ES256", "nonce": "n", "url": "u"}),
                "malformed",
            ),
            (json!({"alg": "ES256", "kid": "k", "url": "u"}), "malformed"),
            (
                json!({"alg": "ES256", "kid": "k", "nonce": "n"}),
                "malformed",
            ),
            (
                json!({"alg": "ES256", "jwk": {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}, "nonce": "n", "url": "u"}),
                "badPublicKey",
            ),
            (
                json!({"alg": "ES256", "jwk": {"kty": "oct", "k": "AA"}, "nonce": "n", "url": "u"}),
                "badPublicKey",
            ),
        ];
        for (h, want) in cases {
            let e = Jws::parse(&jws(h.clone(), b"", sig)).unwrap_err();
            assert!(e.problem_type().ends_with(want), "{h}: {e}");
        }
        for junk in [
            &b"not json"[..],
            b"{}",
            b"{\"protected\":\"!\",\"payload\":\"\",\"signature\":\"\"}",
        ] {
            assert!(matches!(Jws::parse(junk), Err(JwsError::Malformed(_))));
        }
        assert!(Jws::parse(&vec![b' '; MAX_JWS_BYTES + 1]).is_err());
    }

    /// Run `openssl` in `dir`; its standard output.
    pub(crate) fn openssl_in(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(out.status.success(), "{args:?}");
        out.stdout
    }

    /// RS256 with a key and signature made by OpenSSL.
    #[test]
    fn rs256_verifies_an_openssl_signature() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| openssl_in(dir.path(), args);
        run(&["genrsa", "-out", "k.pem", "2048"]);
        std::fs::write(dir.path().join("m"), b"prot.payload").unwrap();
        run(&["dgst", "-sha256", "-sign", "k.pem", "-out", "sig", "m"]);
        let modulus =
            String::from_utf8(run(&["rsa", "-in", "k.pem", "-noout", "-modulus"])).unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let jwk = Jwk::from_json(&json!({"kty": "RSA", "n": B64.encode(&n), "e": "AQAB"})).unwrap();
        let sig = std::fs::read(dir.path().join("sig")).unwrap();
        jwk.verify(Alg::Rs256, b"prot.payload", &sig).unwrap();
        assert_eq!(
            jwk.verify(Alg::Rs256, b"prot.payloaX", &sig),
            Err(JwsError::BadSignature)
        );
        // A 1024-bit key is refused as a public key.
        let short = json!({"kty": "RSA", "n": B64.encode(&n[..128]), "e": "AQAB"});
        assert!(matches!(
            Jwk::from_json(&short),
            Err(JwsError::BadPublicKey(_))
        ));
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1.
        let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(
            Jwk::from_json(&jwk).unwrap().thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
