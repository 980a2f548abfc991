//! Public keys: the key types mtlsca generates, the strength rules for keys
//! that arrive in CSRs, and the one comparison that decides whether two public
//! keys are the same key ([`PublicKeyValue`]). No I/O; private keys are the
//! CA's (`keypair` in the CA).

use std::fmt;

use serde::{Deserialize, Serialize};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{Error, Result};

/// Key types mtlsca generates. RSA is accepted from CSRs but never generated (ring
/// has no RSA key generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "ecdsa-p256")]
    /// ECDSA on P-256 with SHA-256 (the default).
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    #[serde(rename = "ed25519")]
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// Every key type, in the order help texts list them.
    pub const ALL: [KeyType; 3] = [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519];

    /// The command-line spelling: `ecdsa-p256`, `ecdsa-p384`, `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// A command-line spelling (exit 2 otherwise).
    pub fn parse(s: &str) -> Result<KeyType> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown key type `{s}` (expected ecdsa-p256, ecdsa-p384 or ed25519)"
                ))
            })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public key reduced to what makes it that key: the algorithm with its
/// parameters (the curve) and the key material as values — for RSA the modulus
/// and the exponent as integers (leading zeros dropped). Two encodings of one key
/// compare equal; a part of a key never passes for the whole.
///
/// This is the one way the project decides that two keys are the same key (a
/// CSR's key against an ACME account key, a revocation signed by the
/// certificate's key, a private key against its certificate): compare two
/// `PublicKeyValue`s with `==`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKeyValue {
    /// An EC key on a named curve, as an uncompressed point (`04 || x || y`).
    Ec {
        /// The curve's OID (dotted).
        curve: &'static str,
        /// The uncompressed point.
        point: Vec<u8>,
    },
    /// An Ed25519 key.
    Ed25519(Vec<u8>),
    /// An RSA key.
    Rsa {
        /// The modulus, big-endian, without leading zeros.
        modulus: Vec<u8>,
        /// The public exponent, big-endian, without leading zeros.
        exponent: Vec<u8>,
    },
}

/// The OID of P-256 (dotted).
pub const P256_OID: &str = "1.2.840.10045.3.1.7";
/// The OID of P-384 (dotted).
pub const P384_OID: &str = "1.3.132.0.34";

fn without_leading_zeros(b: &[u8]) -> Vec<u8> {
    b.iter().copied().skip_while(|x| *x == 0).collect()
}

impl PublicKeyValue {
    /// An EC key from its curve and coordinates (a JWK's `x` and `y`); `None`
    /// for another curve or coordinates of the wrong length.
    pub fn ec(curve_oid: &str, x: &[u8], y: &[u8]) -> Option<PublicKeyValue> {
        let (curve, len) = match curve_oid {
            P256_OID => (P256_OID, 32),
            P384_OID => (P384_OID, 48),
            _ => return None,
        };
        if x.len() != len || y.len() != len {
            return None;
        }
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Some(PublicKeyValue::Ec { curve, point })
    }

    /// An RSA key from its modulus and exponent (big-endian, any leading zeros);
    /// `None` when either is zero.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Option<PublicKeyValue> {
        let (modulus, exponent) = (
            without_leading_zeros(modulus),
            without_leading_zeros(exponent),
        );
        if modulus.is_empty() || exponent.is_empty() {
            return None;
        }
        Some(PublicKeyValue::Rsa { modulus, exponent })
    }

    /// An Ed25519 key from its 32 bytes.
    pub fn ed25519(key: &[u8]) -> Option<PublicKeyValue> {
        (key.len() == 32).then(|| PublicKeyValue::Ed25519(key.to_vec()))
    }

    /// The key of a SubjectPublicKeyInfo (DER, nothing after it); `None` when
    /// it is not a well-formed EC (P-256, P-384, uncompressed point), Ed25519
    /// or RSA key.
    pub fn from_spki_der(der: &[u8]) -> Option<PublicKeyValue> {
        use x509_parser::prelude::FromDer;
        match SubjectPublicKeyInfo::from_der(der) {
            Ok(([], spki)) => PublicKeyValue::from_spki(&spki),
            _ => None,
        }
    }

    /// The key of a parsed SubjectPublicKeyInfo (see [`PublicKeyValue::from_spki_der`]).
    pub fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Option<PublicKeyValue> {
        let bits: &[u8] = &spki.subject_public_key.data;
        if spki.subject_public_key.unused_bits != 0 {
            return None;
        }
        match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.2.840.10045.2.1" => {
                let curve = named_curve(spki)?;
                let len = match curve.as_str() {
                    P256_OID => 32,
                    P384_OID => 48,
                    _ => return None,
                };
                if bits.len() != 1 + 2 * len || bits[0] != 4 {
                    return None;
                }
                PublicKeyValue::ec(&curve, &bits[1..=len], &bits[1 + len..])
            }
            "1.3.101.112" => {
                if spki.algorithm.parameters.is_some() {
                    return None;
                }
                PublicKeyValue::ed25519(bits)
            }
            "1.2.840.113549.1.1.1" => match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => PublicKeyValue::rsa(rsa.modulus, rsa.exponent),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Whether two SubjectPublicKeyInfos (DER) hold the same public key, decided
/// on their [`PublicKeyValue`]s; `false` when either cannot be read.
pub fn same_public_key(a_spki_der: &[u8], b_spki_der: &[u8]) -> bool {
    match (
        PublicKeyValue::from_spki_der(a_spki_der),
        PublicKeyValue::from_spki_der(b_spki_der),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A public key that arrived in a CSR, after the strength rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKeyKind {
    /// ECDSA P-256.
    EcdsaP256,
    /// ECDSA P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA.
    Rsa {
        /// The modulus size.
        bits: usize,
    },
}

impl PublicKeyKind {
    /// A short description such as `ECDSA P-256` or `RSA-2048`.
    pub fn describe(self) -> String {
        match self {
            PublicKeyKind::EcdsaP256 => "ECDSA P-256".into(),
            PublicKeyKind::EcdsaP384 => "ECDSA P-384".into(),
            PublicKeyKind::Ed25519 => "Ed25519".into(),
            PublicKeyKind::Rsa { bits } => format!("RSA-{bits}"),
        }
    }

    /// Whether it is an RSA key.
    pub fn is_rsa(self) -> bool {
        matches!(self, PublicKeyKind::Rsa { .. })
    }
}

pub use crate::rules::{RSA_MAX_BITS as MAX_RSA_BITS, RSA_MIN_BITS as MIN_RSA_BITS};

fn key_refusal(rule: crate::rules::Rule, detail: String) -> Error {
    Error::Refused(crate::rules::Refusals::new(
        crate::rules::Origin::Csr,
        vec![crate::rules::Refusal::new(rule, detail).on(crate::rules::Field::Key)],
    ))
}

/// Smallest RSA public exponent accepted (2^16 + 1).
pub const MIN_RSA_EXPONENT: u64 = 65_537;

/// An RSA public exponent (big-endian bytes) that is odd and at least
/// `MIN_RSA_EXPONENT`.
fn rsa_exponent_ok(e: &[u8]) -> bool {
    let digits: Vec<u8> = e.iter().copied().skip_while(|b| *b == 0).collect();
    let odd = digits.last().is_some_and(|b| b & 1 == 1);
    let big_enough = digits.len() > 8
        || digits
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            >= MIN_RSA_EXPONENT;
    odd && big_enough
}

/// The named curve (dotted OID) of an EC key; `None` for explicit parameters.
pub fn named_curve(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string())
}

/// Classify a SubjectPublicKeyInfo and apply the strength rules (refusals are exit 1).
pub fn check_public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKeyKind> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.10045.2.1" => {
            match named_curve(spki).as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok(PublicKeyKind::EcdsaP256),
                Some("1.3.132.0.34") => Ok(PublicKeyKind::EcdsaP384),
                Some(other) => Err(key_refusal(
                    crate::rules::Rule::KeyUnsupported,
                    format!("unsupported elliptic curve {other}: mtlsca accepts P-256 and P-384"),
                )),
                None => Err(key_refusal(
                    crate::rules::Rule::KeyUnsupported,
                    "EC public key without a named curve".into(),
                )),
            }
        }
        "1.3.101.112" => Ok(PublicKeyKind::Ed25519),
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let bits = rsa.key_size();
                if bits < MIN_RSA_BITS {
                    Err(key_refusal(
                        crate::rules::Rule::KeyTooWeak,
                        format!("weak key: RSA-{bits} is under the minimum of {MIN_RSA_BITS} bits"),
                    ))
                } else if bits > MAX_RSA_BITS {
                    Err(key_refusal(
                        crate::rules::Rule::KeyUnsupported,
                        format!("RSA-{bits} is over the supported maximum of {MAX_RSA_BITS} bits"),
                    ))
                } else if !rsa_exponent_ok(rsa.exponent) {
                    Err(key_refusal(crate::rules::Rule::KeyTooWeak, format!(
                        "weak key: RSA public exponent {} (mtlsca accepts odd exponents from {MIN_RSA_EXPONENT} on, as CA/Browser Forum rules advise; small ones such as 3 invite attacks on bad padding)",
                        rsa.try_exponent()
                            .map(|e| e.to_string())
                            .unwrap_or_else(|_| "too large to show".into())
                    )))
                } else {
                    Ok(PublicKeyKind::Rsa { bits })
                }
            }
            _ => Err(key_refusal(
                crate::rules::Rule::KeyUnsupported,
                "malformed RSA public key".into(),
            )),
        },
        other => Err(key_refusal(
            crate::rules::Rule::KeyUnsupported,
            format!("unsupported public key algorithm {other}: mtlsca accepts ECDSA P-256/P-384, Ed25519 and RSA >= 2048"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_exponents_must_be_odd_and_at_least_65537() {
        assert!(rsa_exponent_ok(&[0x01, 0x00, 0x01]));
        assert!(rsa_exponent_ok(&[0x00, 0x01, 0x00, 0x01]));
        assert!(rsa_exponent_ok(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0x01]));
        assert!(!rsa_exponent_ok(&[0x03]));
        assert!(!rsa_exponent_ok(&[0x01, 0x00, 0x02]));
        assert!(!rsa_exponent_ok(&[0xff, 0xff]));
        assert!(!rsa_exponent_ok(&[]));
        assert!(!rsa_exponent_ok(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0x00]));
    }
}
