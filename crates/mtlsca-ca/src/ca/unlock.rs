//! Where the passphrase of encrypted CA keys comes from, and the checks on a
//! secret file.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

use crate::keypair::{self, Passphrase};

/// Where the passphrase of encrypted CA keys comes from when the caller did not
/// give one to `Ca::with_passphrase`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassphraseSource {
    /// A file whose content (less one trailing newline) is the passphrase.
    File(PathBuf),
    /// An environment variable, read when a key is unlocked.
    Environment(String),
}

/// Read the passphrase from a source: `None` when the environment variable is unset.
pub fn read_passphrase(source: &PassphraseSource) -> Result<Option<Passphrase>> {
    match source {
        PassphraseSource::File(path) => {
            check_secret_file(path, "passphrase file")?;
            let bytes = fsutil::read_bounded(path, keypair::MAX_PASSPHRASE, "passphrase file")?;
            Passphrase::new(bytes, &format!("passphrase file {}", path.display())).map(Some)
        }
        PassphraseSource::Environment(var) => match std::env::var_os(var) {
            None => Ok(None),
            Some(v) => {
                let bytes = v.into_encoded_bytes();
                Passphrase::new(bytes, &format!("${var}")).map(Some)
            }
        },
    }
}

/// Refuse (exit 2) a file holding a secret that group or others can read or write.
pub fn check_secret_file(path: &Path, what: &str) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if path != Path::new("-") {
            if let Ok(meta) = fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if meta.is_file() && mode & 0o077 != 0 {
                    return Err(Error::input(
                        format!("{what} {}", path.display()),
                        format!(
                            "is readable or writable by group or others (mode {mode:o}); fix it with `chmod 600 {}`",
                            path.display()
                        ),
                    ));
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}
