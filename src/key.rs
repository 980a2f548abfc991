//! Key types: generation with ring (through rcgen), PKCS#8 encoding that OpenSSL 3.0
//! reads, passphrase protection of CA keys (encrypted PKCS#8), and the strength
//! rules for keys that arrive in CSRs.
//!
//! # Encrypted CA keys
//!
//! `init --encrypt` writes each CA key as an `ENCRYPTED PRIVATE KEY` (PKCS#8
//! `EncryptedPrivateKeyInfo`, PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, a fresh
//! 16-byte salt and IV per key), the form `openssl pkey -passin` opens. Every
//! buffer that holds key material in clear (the passphrase, the decrypted DER, the
//! PEM text) is zeroized when dropped; the copy ring keeps inside its key object
//! while signing is not reachable from here.

use std::fmt;

use rcgen::{KeyPair, SignatureAlgorithm};
use serde::{Deserialize, Serialize};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

/// Key types mtlsca generates. RSA is accepted from CSRs but never generated (ring
/// has no RSA key generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
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

    /// The signature algorithm keys of this type sign with.
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// The key type that signs with `alg`, if mtlsca generates such keys.
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
    let mut der = key.serialize_der();
    if der.starts_with(&ED25519_V2_PREFIX) {
        let mut v1 = ED25519_V1_PREFIX.to_vec();
        v1.extend_from_slice(&der[16..48]);
        der.zeroize();
        return v1;
    }
    der
}

/// A key as unencrypted PKCS#8 PEM (`PRIVATE KEY`; Ed25519 as v1).
pub fn pkcs8_pem(key: &KeyPair) -> String {
    crate::fsutil::pem_lf(&pem::Pem::new("PRIVATE KEY", pkcs8_der(key)))
}

/// PBKDF2 iterations for encrypted CA keys (OWASP's figure for PBKDF2-HMAC-SHA256).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
/// Longest passphrase file read.
pub const MAX_PASSPHRASE: u64 = 4096;
/// Shortest passphrase `init --encrypt` accepts.
pub const MIN_PASSPHRASE: usize = 8;
const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// A passphrase that unlocks CA keys: never printed, zeroized on drop.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// From bytes as read (a passphrase file, or `$MTLSCA_PASSPHRASE`): one
    /// trailing newline (`\n` or `\r\n`) is not part of it; an empty one is refused.
    pub fn new(mut bytes: Vec<u8>, source: &str) -> Result<Passphrase> {
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        let p = Passphrase(Zeroizing::new(bytes));
        if p.0.is_empty() {
            return Err(Error::Usage(format!(
                "the passphrase from {source} is empty"
            )));
        }
        Ok(p)
    }

    /// The passphrase's bytes (never printed).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// The private key as PEM text, encrypted under `passphrase` when one is given
/// (`ENCRYPTED PRIVATE KEY`, PBES2) and plain PKCS#8 (`PRIVATE KEY`) otherwise.
pub fn protected_pem(key: &KeyPair, passphrase: Option<&Passphrase>) -> Result<Zeroizing<String>> {
    let der = Zeroizing::new(pkcs8_der(key));
    let Some(pass) = passphrase else {
        let block = pem::Pem::new("PRIVATE KEY", der.to_vec());
        let text = Zeroizing::new(crate::fsutil::pem_lf(&block));
        block.into_contents().zeroize();
        return Ok(text);
    };
    Ok(Zeroizing::new(crate::fsutil::pem_lf(&pem::Pem::new(
        ENCRYPTED_LABEL,
        encrypt_pkcs8(&der, pass)?,
    ))))
}

/// PKCS#8 DER → `EncryptedPrivateKeyInfo` DER (PBES2: PBKDF2-SHA256, AES-256-CBC).
pub fn encrypt_pkcs8(der: &[u8], pass: &Passphrase) -> Result<Vec<u8>> {
    use pkcs8::der::Encode;
    use ring::rand::SecureRandom;
    let fail = |e: String| Error::State(format!("cannot encrypt the key: {e}"));
    let rng = ring::rand::SystemRandom::new();
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill(&mut salt)
        .and_then(|_| rng.fill(&mut iv))
        .map_err(|_| fail("the OS random number generator failed".into()))?;
    let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
        PBKDF2_ITERATIONS,
        &salt,
        iv,
    )
    .map_err(|e| fail(e.to_string()))?;
    let ciphertext = params
        .encrypt(pass.as_bytes(), der)
        .map_err(|e| fail(e.to_string()))?;
    let info = pkcs8::EncryptedPrivateKeyInfoOwned {
        encryption_algorithm: params.into(),
        encrypted_data: pkcs8::der::asn1::OctetString::new(ciphertext)
            .map_err(|e| fail(e.to_string()))?,
    };
    info.to_der().map_err(|e| fail(e.to_string()))
}

/// `EncryptedPrivateKeyInfo` DER → PKCS#8 DER (zeroized on drop). A wrong
/// passphrase and a damaged file both fail here (exit 3).
pub fn decrypt_pkcs8(der: &[u8], pass: &Passphrase, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der)
        .map_err(|e| Error::State(format!("{what}: not an encrypted PKCS#8 key: {e}")))?;
    let doc = info.decrypt(pass.as_bytes()).map_err(|_| {
        Error::State(format!(
            "{what}: wrong passphrase (or the key file is damaged); nothing was signed"
        ))
    })?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

/// Whether PEM text holds an encrypted key.
pub fn is_encrypted_pem(pem_text: &str) -> bool {
    pem_text
        .trim_start()
        .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
}

/// Load a CA key (plain or encrypted PKCS#8 PEM). An encrypted key needs the
/// passphrase; `what` names the file in messages.
pub fn load_protected_pem(
    pem_text: &str,
    passphrase: Option<&Passphrase>,
    what: &str,
) -> Result<KeyPair> {
    let parsed = pem::parse(pem_text)
        .map_err(|e| Error::State(format!("{what}: not a PEM private key: {e}")))?;
    let result = match parsed.tag() {
        "PRIVATE KEY" => load_der(parsed.contents(), what),
        ENCRYPTED_LABEL => {
            let pass = passphrase.ok_or_else(|| {
                Error::State(format!(
                    "{what} is encrypted: give its passphrase in $MTLSCA_PASSPHRASE or with --passphrase-file FILE"
                ))
            })?;
            let der = decrypt_pkcs8(parsed.contents(), pass, what)?;
            load_der(&der, what)
        }
        other => Err(Error::State(format!(
            "{what}: PEM block `{other}` is not a PKCS#8 private key"
        ))),
    };
    // The PEM crate keeps its own copy of the DER: clear it too.
    let mut contents = parsed.into_contents();
    contents.zeroize();
    result
}

/// DER of the named-curve OIDs inside an EC PKCS#8 key.
const P256_CURVE_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_CURVE_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Load a PKCS#8 DER private key (`what` names it in errors).
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

/// The public key of a PKCS#8 private key (ECDSA P-256/P-384, Ed25519 or RSA);
/// `None` when it is none of those.
pub fn public_key_of_pkcs8(pkcs8: &[u8]) -> Option<PublicKeyValue> {
    if let Ok(kp) = load_der(pkcs8, "key") {
        return PublicKeyValue::from_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&kp));
    }
    let rsa = ring::signature::RsaKeyPair::from_pkcs8(pkcs8).ok()?;
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    PublicKeyValue::rsa(&public.n, &public.e)
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
pub(crate) fn named_curve(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
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
    fn ed25519_is_written_as_pkcs8_v1_and_reloads() {
        let k = generate(KeyType::Ed25519).unwrap();
        let der = pkcs8_der(&k);
        assert!(der.starts_with(&ED25519_V1_PREFIX));
        assert_eq!(der.len(), 48);
        let back = load_der(&der, "test").unwrap();
        assert_eq!(back.public_key_raw(), k.public_key_raw());
    }

    #[test]
    fn encrypted_keys_round_trip_and_refuse_a_wrong_passphrase() {
        let pass = Passphrase::new(b"correct horse\n".to_vec(), "test").unwrap();
        assert_eq!(pass.as_bytes(), b"correct horse");
        for kt in KeyType::ALL {
            let k = generate(kt).unwrap();
            let pem = protected_pem(&k, Some(&pass)).unwrap();
            assert!(is_encrypted_pem(&pem));
            let back = load_protected_pem(&pem, Some(&pass), "test").unwrap();
            assert_eq!(back.public_key_raw(), k.public_key_raw());
            let wrong = Passphrase::new(b"battery staple".to_vec(), "test").unwrap();
            let e = load_protected_pem(&pem, Some(&wrong), "test").unwrap_err();
            assert_eq!(e.exit_code(), 3, "{e}");
            assert!(e.to_string().contains("wrong passphrase"), "{e}");
            let e = load_protected_pem(&pem, None, "test").unwrap_err();
            assert!(e.to_string().contains("MTLSCA_PASSPHRASE"), "{e}");
        }
        assert!(Passphrase::new(b"\n".to_vec(), "test").is_err());
    }

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

    #[test]
    fn public_keys_compare_as_values() {
        for kt in KeyType::ALL {
            let k = generate(kt).unwrap();
            let spki = rcgen::PublicKeyData::subject_public_key_info(&k);
            let v = PublicKeyValue::from_spki_der(&spki).unwrap();
            assert!(same_public_key(&spki, &spki));
            assert_eq!(public_key_of_pkcs8(&pkcs8_der(&k)), Some(v.clone()));
            let other = generate(kt).unwrap();
            let other_spki = rcgen::PublicKeyData::subject_public_key_info(&other);
            assert!(!same_public_key(&spki, &other_spki));
            // Trailing bytes, a truncation: not a key.
            assert!(PublicKeyValue::from_spki_der(&[&spki[..], &[0]].concat()).is_none());
            assert!(PublicKeyValue::from_spki_der(&spki[..spki.len() - 1]).is_none());
        }
        let p256 = generate(KeyType::EcdsaP256).unwrap();
        let raw = p256.public_key_raw();
        let v = PublicKeyValue::ec(P256_OID, &raw[1..33], &raw[33..]).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&p256);
        assert_eq!(PublicKeyValue::from_spki_der(&spki), Some(v));
        // The same coordinates on another curve, or cut short: not that key.
        assert!(PublicKeyValue::ec(P384_OID, &raw[1..33], &raw[33..]).is_none());
        assert!(PublicKeyValue::ec(P256_OID, &raw[1..32], &raw[33..]).is_none());
        assert_eq!(
            PublicKeyValue::rsa(&[0, 0, 5], &[0, 3]),
            PublicKeyValue::rsa(&[5], &[3])
        );
        assert!(PublicKeyValue::rsa(&[0, 0], &[3]).is_none());
    }

    #[test]
    fn ecdsa_keys_reload_with_their_curve() {
        for kt in [KeyType::EcdsaP256, KeyType::EcdsaP384] {
            let k = generate(kt).unwrap();
            let back = load_protected_pem(&pkcs8_pem(&k), None, "test").unwrap();
            assert_eq!(back.algorithm(), kt.signature_algorithm());
        }
    }
}
