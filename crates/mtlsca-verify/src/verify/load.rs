//! Reading certificates, CRLs and private keys from files (PEM with one or many
//! blocks, or DER). Unreadable input is `Error::Input` (exit 2); everything that
//! parses is handed on for a verdict.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::inspect::parse_der;

/// Largest certificate, CSR or PEM bundle mtlsca reads.
pub const MAX_INPUT: u64 = 1024 * 1024;

/// Read at most `limit` bytes from a file (or stdin for "-"); larger input is refused
/// before anything parses it.
pub fn read_bounded(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::input(what, format!("cannot read standard input: {e}")))?;
    } else {
        let f = File::open(path)
            .map_err(|e| Error::input(format!("{what} {}", path.display()), e.to_string()))?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(Error::input(
                format!("{what} {}", path.display()),
                "is a directory",
            ));
        }
        f.take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::input(format!("{what} {}", path.display()), e.to_string()))?;
    }
    if buf.len() as u64 > limit {
        return Err(Error::input(
            format!("{what} {}", path.display()),
            format!("larger than {} KiB", limit / 1024),
        ));
    }
    if buf.is_empty() {
        return Err(Error::input(format!("{what} {}", path.display()), "empty"));
    }
    Ok(buf)
}

/// `read_bounded`, as UTF-8 text (exit 2 otherwise).
pub fn read_bounded_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let bytes = read_bounded(path, limit, what)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::input(format!("{what} {}", path.display()), "not UTF-8 text"))
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn label(what: &str, path: &Path) -> String {
    format!("{what} {}", path.display())
}

/// Certificates from bytes: every CERTIFICATE block of a PEM file (other blocks,
/// such as keys, are ignored), or one DER certificate. Each must parse as X.509.
pub fn certs_from_bytes(bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = if looks_like_pem(bytes) {
        CertificateDer::pem_slice_iter(bytes)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::input(what, format!("bad PEM: {e}")))?
    } else if let Some(m) = crate::error::not_pem_or_der(bytes, "a certificate", "CERTIFICATE") {
        return Err(Error::input(what, m));
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    if certs.is_empty() {
        return Err(Error::input(what, "holds no CERTIFICATE block"));
    }
    for (i, c) in certs.iter().enumerate() {
        parse_der(c.as_ref()).map_err(|m| {
            let which = if certs.len() > 1 {
                format!(" (certificate {})", i + 1)
            } else {
                String::new()
            };
            Error::input(what, format!("{m}{which}"))
        })?;
    }
    Ok(certs)
}

/// All certificates of a file (or stdin for "-").
pub fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read_bounded(path, MAX_INPUT, what)?;
    certs_from_bytes(&bytes, &label(what, path))
}

/// CRLs of a file: every X509 CRL block of a PEM file, or one DER CRL.
pub fn crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let what = label("CRL", path);
    let bytes = read_bounded(path, MAX_INPUT, "CRL")?;
    let crls: Vec<CertificateRevocationListDer<'static>> = if looks_like_pem(&bytes) {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::input(&what, format!("bad PEM: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(Error::input(&what, "holds no X509 CRL block"));
    }
    for c in &crls {
        match x509_parser::parse_x509_crl(c.as_ref()) {
            Ok(([], _)) => {}
            Ok(_) => return Err(Error::input(&what, "trailing bytes after the CRL")),
            Err(e) => return Err(Error::input(&what, format!("not a DER CRL ({e})"))),
        }
    }
    Ok(crls)
}

/// A private key (PKCS#8, SEC1 or PKCS#1 PEM).
pub fn private_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>> {
    let bytes = read_bounded(path, MAX_INPUT, what)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        Error::input(
            label(what, path),
            format!("no usable PEM private key ({e})"),
        )
    })
}

/// The key that belongs beside a certificate file: `a.pem` → `a.key`,
/// `a.chain.pem` → `a.key`.
pub fn key_beside(cert: &Path) -> Option<std::path::PathBuf> {
    let name = cert.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".chain.pem")
        .or_else(|| name.strip_suffix(".pem"))
        .or_else(|| name.strip_suffix(".crt"))
        .or_else(|| name.strip_suffix(".der"))
        .unwrap_or(name);
    Some(cert.with_file_name(format!("{stem}.key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_beside_certificates() {
        assert_eq!(
            key_beside(Path::new("d/a.pem")).unwrap(),
            Path::new("d/a.key")
        );
        assert_eq!(
            key_beside(Path::new("d/a.chain.pem")).unwrap(),
            Path::new("d/a.key")
        );
        assert_eq!(key_beside(Path::new("a.crt")).unwrap(), Path::new("a.key"));
    }

    #[test]
    fn junk_is_unreadable_input() {
        for junk in [
            &b"hello"[..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
            b"\x30\x03\x02\x01",
        ] {
            let e = certs_from_bytes(junk, "certificate").unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
        }
    }
}
