//! Key types: generation with ring (through rcgen), PKCS#8 encoding that OpenSSL 3.0
//! reads, and the strength rules for keys that arrive in CSRs.

use std::fmt;

use rcgen::{KeyPair, SignatureAlgorithm};
use serde::{Deserialize, Serialize};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{Error, Result};

/// Key types mtlsca generates. RSA is accepted from CSRs but never generated (ring
/// has no RSA key generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyType {
    pub const ALL: [KeyType; 3] = [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
        }
    }

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

    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    pub fn from_algorithm(alg: &SignatureAlgorithm) -> Option<KeyType> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.signature_algorithm() == alg)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A freshly generated key pair.
pub fn generate(key_type: KeyType) -> Result<KeyPair> {
    KeyPair::generate_for(key_type.signature_algorithm())
        .map_err(|e| Error::State(format!("key generation failed: {e}")))
}

/// ring's Ed25519 PKCS#8 v2 header (version 1 + public key); v1 is what OpenSSL 3.0 reads.
const ED25519_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const ED25519_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The private key as PKCS#8 DER that OpenSSL 3.0 opens: Ed25519 keys from ring come
/// as PKCS#8 v2 (with the public key), which OpenSSL 3.0 rejects, so they are
/// rewritten as v1 (seed only).
pub fn pkcs8_der(key: &KeyPair) -> Vec<u8> {
    let der = key.serialize_der();
    if der.starts_with(&ED25519_V2_PREFIX) {
        let seed = &der[16..48];
        let mut v1 = ED25519_V1_PREFIX.to_vec();
        v1.extend_from_slice(seed);
        return v1;
    }
    der
}

pub fn pkcs8_pem(key: &KeyPair) -> String {
    pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8_der(key)))
}

/// DER of the named-curve OIDs inside an EC PKCS#8 key.
const P256_CURVE_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_CURVE_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Load a PKCS#8 key (PEM) of one of our key types.
pub fn load_pem(pem_text: &str, what: &str) -> Result<KeyPair> {
    let parsed = pem::parse(pem_text)
        .map_err(|e| Error::State(format!("{what}: not a PEM private key: {e}")))?;
    load_der(parsed.contents(), what)
}

pub fn load_der(der: &[u8], what: &str) -> Result<KeyPair> {
    let contains = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    let alg = if der.starts_with(&ED25519_V1_PREFIX) || der.starts_with(&ED25519_V2_PREFIX) {
        &rcgen::PKCS_ED25519
    } else if contains(&P384_CURVE_OID) {
        &rcgen::PKCS_ECDSA_P384_SHA384
    } else if contains(&P256_CURVE_OID) {
        &rcgen::PKCS_ECDSA_P256_SHA256
    } else {
        return Err(Error::State(format!(
            "{what}: not an ECDSA P-256/P-384 or Ed25519 PKCS#8 key"
        )));
    };
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.to_vec());
    KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, alg)
        .map_err(|e| Error::State(format!("{what}: cannot load the private key: {e}")))
}

/// The key identifier of a SubjectPublicKeyInfo (DER): RFC 7093 method 1, the
/// leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING value, so
/// linters recognise how it was computed.
pub fn key_identifier(spki_der: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let bits = match SubjectPublicKeyInfo::from_der(spki_der) {
        Ok((_, spki)) => spki.subject_public_key.data.to_vec(),
        Err(_) => spki_der.to_vec(),
    };
    ring::digest::digest(&ring::digest::SHA256, &bits).as_ref()[..20].to_vec()
}

/// A public key that arrived in a CSR, after the strength rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: usize },
}

impl PublicKeyKind {
    pub fn describe(self) -> String {
        match self {
            PublicKeyKind::EcdsaP256 => "ECDSA P-256".into(),
            PublicKeyKind::EcdsaP384 => "ECDSA P-384".into(),
            PublicKeyKind::Ed25519 => "Ed25519".into(),
            PublicKeyKind::Rsa { bits } => format!("RSA-{bits}"),
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, PublicKeyKind::Rsa { .. })
    }
}

pub const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Classify a SubjectPublicKeyInfo and apply the strength rules (refusals are exit 1).
pub fn check_public_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<PublicKeyKind> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok(PublicKeyKind::EcdsaP256),
                Some("1.3.132.0.34") => Ok(PublicKeyKind::EcdsaP384),
                Some(other) => Err(Error::refused(format!(
                    "unsupported elliptic curve {other}: mtlsca accepts P-256 and P-384"
                ))),
                None => Err(Error::refused("EC public key without a named curve")),
            }
        }
        "1.3.101.112" => Ok(PublicKeyKind::Ed25519),
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let bits = rsa.key_size();
                if bits < MIN_RSA_BITS {
                    Err(Error::refused(format!(
                        "weak key: RSA-{bits} is under the minimum of {MIN_RSA_BITS} bits"
                    )))
                } else if bits > MAX_RSA_BITS {
                    Err(Error::refused(format!(
                        "RSA-{bits} is over the supported maximum of {MAX_RSA_BITS} bits"
                    )))
                } else {
                    Ok(PublicKeyKind::Rsa { bits })
                }
            }
            _ => Err(Error::refused("malformed RSA public key")),
        },
        other => Err(Error::refused(format!(
            "unsupported public key algorithm {other}: mtlsca accepts ECDSA P-256/P-384, Ed25519 and RSA >= 2048"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_is_written_as_pkcs8_v1_and_reloads() {
        let k = generate(KeyType::Ed25519).unwrap();
        let der = pkcs8_der(&k);
        assert!(der.starts_with(&ED25519_V1_PREFIX));
        assert_eq!(der.len(), 48);
        let back = load_der(&der, "test").unwrap();
        assert_eq!(back.public_key_raw(), k.public_key_raw());
    }

    #[test]
    fn ecdsa_keys_reload_with_their_curve() {
        for kt in [KeyType::EcdsaP256, KeyType::EcdsaP384] {
            let k = generate(kt).unwrap();
            let back = load_pem(&pkcs8_pem(&k), "test").unwrap();
            assert_eq!(back.algorithm(), kt.signature_algorithm());
        }
    }
}
