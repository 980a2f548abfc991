//! One way to name an issued certificate, for every command that takes one
//! (`show`, `revoke`, `export`, `renew`): its serial (any case, colons, leading
//! zeros), a unique prefix of at least [`MIN_PREFIX`] hex digits of the serial,
//! its SHA-256 fingerprint, the request id it was issued under (which stands for
//! its latest renewal), or the certificate file itself (PEM or DER).

use std::path::Path;

use crate::error::{Error, Result};
use crate::store::{Record, Store};

/// The shortest serial prefix accepted.
pub const MIN_PREFIX: usize = 8;

/// Largest certificate file read when a certificate is named by its file.
const MAX_CERT_FILE: u64 = 1024 * 1024;

/// How many candidates an ambiguous prefix lists.
const MAX_CANDIDATES: usize = 10;

/// The record a user's name for a certificate stands for. No match is a refusal
/// (exit 1, rule `not-found`); an ambiguous prefix or an unreadable file is bad
/// input (exit 2), naming the candidates or what was expected.
pub fn resolve(store: &Store, query: &str) -> Result<Record> {
    let printable = crate::names::printable(query);
    let path = Path::new(query);
    if looks_like_file(query) {
        return by_file(store, path);
    }
    let hex: String = query
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        if let Some(r) = store.find(&hex)? {
            return Ok(r);
        }
    }
    if let Some(r) = store.by_request_id(query)? {
        // A request id stands for its latest renewal (the old ones by serial).
        return crate::issue::current(store, r);
    }
    if is_hex && hex.len() >= MIN_PREFIX {
        let trimmed = hex.trim_start_matches('0');
        let mut found = store.with_serial_prefix(&hex, MAX_CANDIDATES + 1)?;
        if found.is_empty() && trimmed.len() >= MIN_PREFIX && trimmed.len() < hex.len() {
            found = store.with_serial_prefix(trimmed, MAX_CANDIDATES + 1)?;
        }
        match found.len() {
            0 => {}
            1 => return Ok(found.remove(0)),
            n => {
                let more = if n > MAX_CANDIDATES { " and more" } else { "" };
                let list: Vec<String> = found
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(|r| {
                        format!(
                            "{} ({} {})",
                            r.serial,
                            r.profile,
                            r.names.first().unwrap_or(&r.subject)
                        )
                    })
                    .collect();
                return Err(Error::Usage(format!(
                    "`{printable}` is the start of several serials: {}{more}; give more digits",
                    list.join(", ")
                )));
            }
        }
    }
    // A file without a telling extension, when nothing else is named so.
    if path.is_file() {
        return by_file(store, path);
    }
    let hint = if is_hex && hex.len() < MIN_PREFIX {
        format!(" (a serial prefix needs at least {MIN_PREFIX} hex digits)")
    } else {
        String::new()
    };
    Err(Error::refused(format!(
        "no certificate is named `{printable}`{hint}: give a serial, a unique serial prefix, \
         a SHA-256 fingerprint, a request id or a certificate file (`mtlsca list` shows serials)"
    )))
}

/// A name that can only be meant as a file (a `/`, or a certificate file's extension).
pub fn looks_like_file(q: &str) -> bool {
    q.contains('/')
        || [".pem", ".crt", ".cer", ".der"]
            .iter()
            .any(|ext| q.to_ascii_lowercase().ends_with(ext))
}

/// The record of the certificate in a file (its first certificate if PEM).
fn by_file(store: &Store, path: &Path) -> Result<Record> {
    let what = format!("certificate file {}", path.display());
    if !path.is_file() {
        return Err(Error::input(what, "no such file"));
    }
    let bytes = crate::fsutil::read_bounded(path, MAX_CERT_FILE, "certificate file")?;
    let der = certificate_der(&bytes).ok_or_else(|| {
        Error::input(
            what.clone(),
            "holds no certificate: expected a PEM `CERTIFICATE` block or a DER X.509 certificate",
        )
    })?;
    let sha = ring::digest::digest(&ring::digest::SHA256, &der);
    store
        .find(&crate::hex::encode(sha.as_ref()))?
        .ok_or_else(|| {
            Error::refused(format!(
                "the certificate in {} was not issued by this CA (no record has its SHA-256)",
                path.display()
            ))
        })
}

/// The DER of the first certificate in PEM or DER bytes.
fn certificate_der(bytes: &[u8]) -> Option<Vec<u8>> {
    if let Ok(blocks) = pem::parse_many(bytes) {
        if let Some(b) = blocks.iter().find(|b| b.tag() == "CERTIFICATE") {
            return Some(b.contents().to_vec());
        }
    }
    x509_parser::parse_x509_certificate(bytes)
        .ok()
        .map(|_| bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Status, SCHEMA_VERSION};

    fn record(serial: &str, n: u8) -> Record {
        let now = time::OffsetDateTime::now_utc();
        Record {
            schema: SCHEMA_VERSION,
            serial: serial.into(),
            issuer: "device".into(),
            issuer_key_id: "01".into(),
            role: crate::role::Role::Device,
            profile: "device".into(),
            subject: String::new(),
            names: vec![format!("DNS:n{n}.test")],
            not_before: now,
            not_after: now + time::Duration::days(1),
            sha256: format!("{n:02x}").repeat(32),
            status: Status::Valid,
            revocation: None,
            request_id: Some(format!("req-{n}")),
            issued_at: now,
            key_file: None,
            replaces: None,
        }
    }

    #[test]
    fn prefixes_resolve_when_unique_and_list_candidates_when_not() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let (_ca, store) = crate::ca::test_ca(dir.path(), now);
        let a = record("7abbccdd01000000000000000000000a", 1);
        let b = record("7abbccdd02000000000000000000000b", 2);
        let items: Vec<crate::store::ChunkItem<'_>> = [&a, &b]
            .iter()
            .map(|r| crate::store::ChunkItem {
                record: r,
                der: b"x",
                issuer_key_id: &[1],
            })
            .collect();
        store.record_chunk(&items, now).unwrap();
        assert_eq!(resolve(&store, "7ABBCCDD01").unwrap().serial, a.serial);
        assert_eq!(resolve(&store, "7a:bb:cc:dd:02").unwrap().serial, b.serial);
        assert_eq!(resolve(&store, "req-2").unwrap().serial, b.serial);
        assert_eq!(resolve(&store, &"01".repeat(32)).unwrap().serial, a.serial);
        match resolve(&store, "7abbccdd") {
            Err(Error::Usage(m)) => {
                assert!(m.contains(&a.serial) && m.contains(&b.serial), "{m}")
            }
            other => panic!("{other:?}"),
        }
        // Too short to be a prefix; no match at all.
        let e = resolve(&store, "7abb").unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("at least 8"), "{e}");
        assert_eq!(resolve(&store, "ffffffff").unwrap_err().exit_code(), 1);
    }
}
