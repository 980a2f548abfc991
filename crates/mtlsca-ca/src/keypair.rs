//! Private keys: generation with ring (through rcgen), PKCS#8 encoding that
//! OpenSSL 3.0 reads, passphrase protection of CA keys (encrypted PKCS#8).
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
use x509_parser::x509::SubjectPublicKeyInfo;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::key::{KeyType, PublicKeyValue};

/// The signature algorithm keys of this type sign with.
pub fn signature_algorithm(key_type: KeyType) -> &'static SignatureAlgorithm {
    match key_type {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

/// The key type that signs with `alg`, if mtlsca generates such keys.
pub fn key_type_of(alg: &SignatureAlgorithm) -> Option<KeyType> {
    KeyType::ALL
        .into_iter()
        .find(|k| signature_algorithm(*k) == alg)
}

/// A freshly generated key pair.
pub fn generate(key_type: KeyType) -> Result<KeyPair> {
    KeyPair::generate_for(signature_algorithm(key_type))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{same_public_key, P256_OID, P384_OID};

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
            assert_eq!(back.algorithm(), signature_algorithm(kt));
        }
    }
}
