//! What a CA directory holds and how its files are read: the three CAs and
//! their file names, the bundle, the CA's key identifiers (which the store
//! checks it belongs to), and the modes its files must have.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::role::Role;

/// The CA configuration file in a CA directory.
pub const CONFIG_FILE: &str = "ca.toml";

/// The whole hierarchy in one file (root + both issuing CAs), for relying parties
/// and tools that take one CA file (`openssl s_server -CAfile ca-bundle.pem`).
pub const BUNDLE_FILE: &str = "ca-bundle.pem";
/// Largest CA file (configuration, certificate, key) read from a CA directory.
const MAX_CA_FILE: u64 = 256 * 1024;

/// The three CAs of the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaKind {
    /// The root CA.
    Root,
    /// The device issuing CA (EKU serverAuth).
    Device,
    /// The entity issuing CA (EKU clientAuth).
    Entity,
}

impl CaKind {
    /// The three, root first.
    pub const ALL: [CaKind; 3] = [CaKind::Root, CaKind::Device, CaKind::Entity];

    /// `root`, `device` or `entity` (as `crl --issuer` spells it).
    pub fn as_str(self) -> &'static str {
        match self {
            CaKind::Root => "root",
            CaKind::Device => "device",
            CaKind::Entity => "entity",
        }
    }

    /// The certificate's file name in the CA directory.
    pub fn cert_file(self) -> &'static str {
        match self {
            CaKind::Root => "root.pem",
            CaKind::Device => "device-ca.pem",
            CaKind::Entity => "entity-ca.pem",
        }
    }

    /// The key's file name in `private/`.
    pub fn key_file(self) -> &'static str {
        match self {
            CaKind::Root => "root.key",
            CaKind::Device => "device-ca.key",
            CaKind::Entity => "entity-ca.key",
        }
    }

    /// The issuing CA for leaves of a role.
    pub fn for_role(role: Role) -> CaKind {
        match role {
            Role::Device => CaKind::Device,
            Role::Entity => CaKind::Entity,
        }
    }

    /// The kind named by [`CaKind::as_str`].
    pub fn parse(s: &str) -> Option<CaKind> {
        CaKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Read a file of the CA directory (configuration, certificate, key), bounded so a
/// foreign or damaged `--ca-dir` cannot make mtlsca read without end (exit 3).
pub(super) fn read_ca_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = fs::File::open(path).at(path)?;
    let mut buf = Vec::new();
    f.take(MAX_CA_FILE + 1).read_to_end(&mut buf).at(path)?;
    if buf.len() as u64 > MAX_CA_FILE {
        buf.zeroize();
        return Err(Error::State(format!(
            "{} is larger than {} KiB: not a file mtlsca wrote",
            path.display(),
            MAX_CA_FILE / 1024
        )));
    }
    String::from_utf8(buf).map_err(|e| {
        let mut b = e.into_bytes();
        b.zeroize();
        Error::State(format!("{} is not UTF-8 text", path.display()))
    })
}

/// Refuse a CA key that others can read (and a `private/` they can enter).
pub fn check_key_permissions(private_dir: &Path, key_path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for (path, fix) in [(private_dir, "700"), (key_path, "600")] {
            let meta = fs::metadata(path).at(path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::State(format!(
                    "{} is readable by group or others (mode {:o}); fix it with `chmod {fix} {}`",
                    path.display(),
                    meta.permissions().mode() & 0o777,
                    path.display()
                )));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (private_dir, key_path);
    Ok(())
}

/// The key identifier (subjectKeyIdentifier, hex) of each CA certificate in
/// `dir`, by name (`root`, `device`, `entity`): what the store records as its
/// owner. Exit 3 when a certificate is missing or unreadable.
pub fn key_ids(dir: &Path) -> Result<crate::store::CaKeyIds> {
    let mut out = crate::store::CaKeyIds::new();
    for kind in CaKind::ALL {
        let path = dir.join(kind.cert_file());
        let text = read_ca_file(&path)?;
        let der = pem::parse(&text)
            .map(|p| p.into_contents())
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| Error::State(format!("{}: {e}", path.display())))?;
        let kid = subject_key_id(&x509)
            .ok_or_else(|| Error::State(format!("{}: no subjectKeyIdentifier", path.display())))?;
        out.insert(kind.as_str().to_string(), crate::hex::encode(&kid));
    }
    Ok(out)
}

/// Paths of a CA directory whose mode lets group or others write (or, under
/// `private/` and `db/`, read), with their mode and the `chmod` argument that
/// fixes it: what `store check` reports.
pub fn loose_modes(dir: &Path) -> Vec<(PathBuf, u32, &'static str)> {
    let mut out = Vec::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut check = |p: PathBuf, forbidden: u32| {
            if let Ok(m) = fs::symlink_metadata(&p) {
                let mode = m.permissions().mode() & 0o7777;
                if !m.file_type().is_symlink() && mode & forbidden != 0 {
                    let fix = if forbidden == 0o077 { "go-rwx" } else { "go-w" };
                    out.push((p, mode, fix));
                }
            }
        };
        check(dir.to_path_buf(), 0o022);
        for f in [CONFIG_FILE, "root.pem", "device-ca.pem", "entity-ca.pem"] {
            check(dir.join(f), 0o022);
        }
        for (sub, forbidden) in [
            ("private", 0o077),
            ("db", 0o077),
            ("profiles", 0o022),
            ("crl", 0o022),
        ] {
            let d = dir.join(sub);
            check(d.clone(), forbidden);
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    check(e.path(), forbidden);
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    out
}

/// Write `ca-bundle.pem` from the three CA certificates in `dir` (at `init`, and
/// when a backup is restored: the bundle is derived, never backed up).
pub fn write_bundle(dir: &Path) -> Result<()> {
    let mut pem = String::new();
    for kind in CaKind::ALL {
        pem.push_str(&read_ca_file(&dir.join(kind.cert_file()))?);
    }
    fsutil::write_new(&dir.join(BUNDLE_FILE), pem.as_bytes(), 0o644)
}

/// A CA certificate's subjectKeyIdentifier.
pub(super) fn subject_key_id(
    x509: &x509_parser::certificate::X509Certificate<'_>,
) -> Option<Vec<u8>> {
    x509.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}
