//! Export of an issued certificate: PEM, DER, the chain, or PKCS#12 with its key.
//!
//! PKCS#12 is written by the `p12-keystore` crate (pure Rust, RustCrypto; no
//! OpenSSL): by default AES-256-CBC with PBKDF2-HMAC-SHA256 and an HMAC-SHA256
//! MAC, which OpenSSL 3, current Java and Windows read; `legacy` writes
//! PBE-SHA1-3DES with an HMAC-SHA1 MAC for older Java and Windows importers. A
//! PKCS#12 holds the private key, the leaf, its issuing CA and the root.

use std::path::Path;

use p12_keystore::{
    EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
};
use x509_parser::prelude::FromDer;

use crate::ca::{Ca, CaKind};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::issue::pem_cert;
use crate::store::{Record, Store};

/// Iterations of the PKCS#12 key derivations (OpenSSL 3 writes 2048; more costs
/// an attacker more and a legitimate import a few milliseconds).
const P12_ITERATIONS: u32 = 10_000;
/// Largest private key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// The leaf certificate, PEM.
    Pem,
    /// The leaf certificate, DER.
    Der,
    /// The leaf and its issuing CA, PEM (what a TLS server sends).
    Chain,
    /// PKCS#12: key, leaf, issuing CA, root; password-protected.
    P12,
}

impl Format {
    /// `pem`, `der`, `chain` or `p12` (exit 2 otherwise).
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "pem" => Ok(Format::Pem),
            "der" => Ok(Format::Der),
            "chain" => Ok(Format::Chain),
            "p12" | "pkcs12" | "pfx" => Ok(Format::P12),
            _ => Err(Error::Usage(format!(
                "unknown export format `{}` (expected pem, der, chain or p12)",
                crate::names::printable(s)
            ))),
        }
    }

    /// Whether the output is binary (not for a terminal).
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Der | Format::P12)
    }
}

/// Where the private key of a PKCS#12 comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum KeyInput {
    /// A PKCS#8 key (PEM or DER) read by the caller; `what` names it in errors.
    Given {
        /// The key file's bytes.
        bytes: Vec<u8>,
        /// What to call it in errors, e.g. `key web.key`.
        what: String,
    },
    /// The key file recorded at issuance (`PREFIX.key`).
    Recorded,
}

/// How to protect a PKCS#12.
#[derive(Debug, Clone)]
pub struct P12Options {
    /// Where the private key comes from.
    pub key: KeyInput,
    /// The password protecting the PKCS#12 file.
    pub password: String,
    /// 3DES and SHA-1 for old importers instead of AES-256 and SHA-256.
    pub legacy: bool,
}

/// The exported bytes and the record they came from.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The record of the exported certificate.
    pub record: Record,
    /// The bytes to write.
    pub bytes: Vec<u8>,
}

/// Export the certificate a serial or SHA-256 fingerprint names. Unknown serials
/// are refused (exit 1); a missing, unreadable or mismatched key is bad input (2).
pub fn export(
    ca: &Ca,
    store: &Store,
    query: &str,
    format: Format,
    p12: Option<&P12Options>,
) -> Result<Exported> {
    let record = store.find(query)?.ok_or_else(|| {
        Error::refused(format!(
            "no certificate with serial or fingerprint {}",
            crate::names::printable(query)
        ))
    })?;
    let der = store
        .der(&record)?
        .ok_or_else(|| Error::Store(format!("record {} has no certificate", record.serial)))?;
    export_record(ca, record, der, format, p12)
}

/// Export a certificate already looked up: its `record` and its `der`, with the
/// CA certificates of `ca` (never its keys). A PKCS#12's recorded key file is
/// read by the caller's process, relative to its working directory.
pub fn export_record(
    ca: &Ca,
    record: Record,
    der: Vec<u8>,
    format: Format,
    p12: Option<&P12Options>,
) -> Result<Exported> {
    // The CA generation that signed it (an old leaf keeps its own chain).
    let issuer = ca.issuer_by_key_id(&record.issuer_key_id, CaKind::for_role(record.role))?;
    let bytes = match format {
        Format::Pem => pem_cert(&der).into_bytes(),
        Format::Der => der,
        Format::Chain => format!("{}{}", pem_cert(&der), ca.cert_pem_of(issuer)?).into_bytes(),
        Format::P12 => {
            let opts = p12.ok_or_else(|| {
                Error::Usage("a PKCS#12 export needs a password and a key".into())
            })?;
            let root = ca.root_of(issuer)?;
            let chain = vec![der, ca.cert_der_of(issuer)?, ca.cert_der_of(root)?];
            pkcs12(&record, &chain, opts)?
        }
    };
    Ok(Exported { record, bytes })
}

/// Shortest PKCS#12 password accepted (as for CA key passphrases).
pub const MIN_P12_PASSWORD: usize = crate::keypair::MIN_PASSPHRASE;

fn pkcs12(record: &Record, chain: &[Vec<u8>], opts: &P12Options) -> Result<Vec<u8>> {
    if opts.password.is_empty() {
        return Err(Error::Usage(
            "the PKCS#12 password is empty; an unprotected key is not exported".into(),
        ));
    }
    if opts.password.chars().count() < MIN_P12_PASSWORD {
        return Err(Error::Usage(format!(
            "the PKCS#12 password is too short to protect a private key (at least {MIN_P12_PASSWORD} characters)"
        )));
    }
    let (key_bytes, what) = match &opts.key {
        KeyInput::Given { bytes, what } => (bytes.clone(), what.clone()),
        KeyInput::Recorded => {
            let path = record.key_file.as_deref().ok_or_else(|| {
                Error::Usage(format!(
                    "certificate {} was signed from a CSR, so mtlsca never had its key: pass --key FILE",
                    record.serial
                ))
            })?;
            let p = Path::new(path);
            if !p.exists() {
                return Err(Error::input(
                    format!("key file {path}"),
                    "recorded at issuance but no longer there; pass --key FILE",
                ));
            }
            (
                fsutil::read_bounded(p, MAX_KEY_FILE, "key file")?,
                format!("key file {path}"),
            )
        }
    };
    let pkcs8 = pkcs8_der(&key_bytes, &what)?;
    check_key_matches(&pkcs8, &chain[0], &what, &record.serial)?;

    let key = PrivateKey::from_der(&pkcs8)
        .map_err(|e| Error::input(&what, format!("not a PKCS#8 private key: {e}")))?;
    let certs = chain
        .iter()
        .map(|d| p12_keystore::Certificate::from_der(d))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::State(format!("a certificate of the chain cannot be encoded: {e}")))?;
    let local_key_id = ring::digest::digest(&ring::digest::SHA256, &chain[0]);
    let mut store = KeyStore::new();
    let alias = alias(record);
    store.add_entry(
        &alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(
            &local_key_id.as_ref()[..20],
            key,
            certs,
        )),
    );
    let (enc, mac) = if opts.legacy {
        (
            EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
            MacAlgorithm::HmacSha1,
        )
    } else {
        (
            EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
            MacAlgorithm::HmacSha256,
        )
    };
    store
        .writer(&opts.password)
        .encryption_algorithm(enc)
        .encryption_iterations(P12_ITERATIONS)
        .mac_algorithm(mac)
        .mac_iterations(P12_ITERATIONS)
        .write()
        .map_err(|e| Error::State(format!("cannot write the PKCS#12: {e}")))
}

/// The friendly name of the key entry: the first name, else the subject, else the serial.
fn alias(r: &Record) -> String {
    r.names
        .first()
        .map(|n| n.split_once(':').map_or(n.as_str(), |(_, v)| v).to_string())
        .or_else(|| (!r.subject.is_empty()).then(|| r.subject.clone()))
        .unwrap_or_else(|| r.serial.clone())
}

/// A PKCS#8 private key from PEM (`PRIVATE KEY`) or DER; other encodings are
/// named with the command that converts them.
fn pkcs8_der(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    if !bytes.trim_ascii_start().starts_with(b"-----") {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Error::input(what, "not PEM text"))?;
    let p = pem::parse(text).map_err(|e| Error::input(what, format!("bad PEM: {e}")))?;
    match p.tag() {
        "PRIVATE KEY" => Ok(p.into_contents()),
        "ENCRYPTED PRIVATE KEY" => Err(Error::input(
            what,
            "the key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out PLAIN.key)",
        )),
        "EC PRIVATE KEY" | "RSA PRIVATE KEY" => Err(Error::input(
            what,
            format!(
                "`{}` is not PKCS#8; convert it (openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8)",
                p.tag()
            ),
        )),
        other => Err(Error::input(
            what,
            format!("PEM block is `{other}`, not `PRIVATE KEY`"),
        )),
    }
}

/// The key must be the certificate's: its public half must equal the
/// certificate's subjectPublicKey.
fn check_key_matches(pkcs8: &[u8], cert_der: &[u8], what: &str, serial: &str) -> Result<()> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(cert_der)
        .map_err(|e| Error::Store(format!("stored certificate {serial} is damaged: {e}")))?;
    let cert_key = crate::key::PublicKeyValue::from_spki(cert.public_key());
    let Some(key_public) = crate::keypair::public_key_of_pkcs8(pkcs8) else {
        return Err(Error::input(
            what,
            "not a PKCS#8 ECDSA P-256/P-384, Ed25519 or RSA private key",
        ));
    };
    if cert_key.as_ref() != Some(&key_public) {
        return Err(Error::input(
            what,
            format!("this key does not belong to certificate {serial}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("p12").unwrap(), Format::P12);
        assert_eq!(Format::parse("pfx").unwrap(), Format::P12);
        assert!(Format::parse("jks").is_err());
        assert!(Format::Der.is_binary() && !Format::Chain.is_binary());
    }

    #[test]
    fn non_pkcs8_keys_are_named() {
        let e = pkcs8_der(
            b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
            "k",
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("topk8"), "{e}");
    }
}
