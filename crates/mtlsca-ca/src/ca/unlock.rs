//! Where the passphrase of encrypted CA keys comes from, and the checks on a
//! secret file.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// Asked by the caller (the command line asks on the terminal), only when a
    /// key is unlocked, and at most once: the answer serves every key after.
    Ask(PassphrasePrompt),
    /// The first of these sources that gives a passphrase (an unset
    /// environment variable gives none).
    FirstOf(Vec<PassphraseSource>),
}

/// The function that asks for a passphrase (`PassphraseSource::Ask`), called at
/// most once however often the source is read and however many clones of it
/// there are; a failure is returned to that one caller and not kept.
#[derive(Clone)]
pub struct PassphrasePrompt {
    ask: Arc<dyn Fn() -> Result<Passphrase> + Send + Sync>,
    answer: Arc<Mutex<Option<Passphrase>>>,
}

impl PassphrasePrompt {
    /// A prompt that calls `ask` the first time a passphrase is needed.
    pub fn new(ask: impl Fn() -> Result<Passphrase> + Send + Sync + 'static) -> PassphrasePrompt {
        PassphrasePrompt {
            ask: Arc::new(ask),
            answer: Arc::new(Mutex::new(None)),
        }
    }

    /// The answer: asked now if it was never given.
    pub fn passphrase(&self) -> Result<Passphrase> {
        // Held while asking, so two threads unlocking keys at once ask once.
        let mut answer = self
            .answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = answer.as_ref() {
            return Ok(p.clone());
        }
        let p = (self.ask)()?;
        *answer = Some(p.clone());
        Ok(p)
    }
}

impl std::fmt::Debug for PassphrasePrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PassphrasePrompt")
    }
}

impl PartialEq for PassphrasePrompt {
    /// The same prompt (clones of one), not the same answer.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.answer, &other.answer)
    }
}

impl Eq for PassphrasePrompt {}

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
        PassphraseSource::Ask(prompt) => prompt.passphrase().map(Some),
        PassphraseSource::FirstOf(sources) => {
            for s in sources {
                if let Some(p) = read_passphrase(s)? {
                    return Ok(Some(p));
                }
            }
            Ok(None)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_prompt_is_asked_once_and_only_when_read() {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let prompt = PassphrasePrompt::new(move || {
            a.fetch_add(1, Ordering::SeqCst);
            Passphrase::new(b"correct horse".to_vec(), "the test")
        });
        let var = "MTLSCA_TEST_UNSET_PASSPHRASE_VARIABLE";
        let source = PassphraseSource::FirstOf(vec![
            PassphraseSource::Environment(var.into()),
            PassphraseSource::Ask(prompt),
        ]);
        assert_eq!(asked.load(Ordering::SeqCst), 0);
        let copy = source.clone();
        for s in [&source, &copy, &source] {
            let p = read_passphrase(s).unwrap().unwrap();
            assert_eq!(p.as_bytes(), b"correct horse");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(source, copy);
    }

    #[test]
    fn a_failed_prompt_is_the_callers_error_and_is_asked_again() {
        let asked = Arc::new(AtomicUsize::new(0));
        let a = asked.clone();
        let prompt = PassphrasePrompt::new(move || {
            a.fetch_add(1, Ordering::SeqCst);
            Err(Error::Usage("no terminal".into()))
        });
        let source = PassphraseSource::Ask(prompt);
        for _ in 0..2 {
            assert!(read_passphrase(&source)
                .unwrap_err()
                .to_string()
                .contains("no terminal"));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
