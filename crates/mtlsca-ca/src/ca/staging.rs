//! Making a CA directory all at once: a staging directory filled and moved
//! into place, leftovers of a killed run cleaned, an existing CA refused.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;

use super::layout::{CaKind, BUNDLE_FILE, CONFIG_FILE};

/// The marker of a pending CA: the `ca.toml` to be, written by `init
/// --external-root`; `ca install` turns it into `ca.toml`.
pub const PENDING_FILE: &str = "pending.toml";

/// The certificate request of an issuing CA in a pending CA directory
/// (`device-ca.csr`, `entity-ca.csr`).
pub fn csr_file(kind: CaKind) -> &'static str {
    match kind {
        CaKind::Root => "root.csr",
        CaKind::Device => "device-ca.csr",
        CaKind::Entity => "entity-ca.csr",
    }
}

/// What any command but `ca install` says in a pending CA directory (exit 3).
pub fn pending_error(dir: &Path) -> Error {
    Error::State(format!(
        "the CA in {} waits for its issuing CA certificates: have the external root sign {} and {}, then run `mtlsca ca install --device DEVICE-CA.pem --entity ENTITY-CA.pem` (docs/operations.md, \"Under an existing root\")",
        dir.display(),
        dir.join(csr_file(CaKind::Device)).display(),
        dir.join(csr_file(CaKind::Entity)).display(),
    ))
}

/// What a CA directory holds; any of them marks a directory as taken.
const CA_ENTRIES: [&str; 12] = [
    CONFIG_FILE,
    PENDING_FILE,
    "device-ca.csr",
    "entity-ca.csr",
    BUNDLE_FILE,
    "root.pem",
    "device-ca.pem",
    "entity-ca.pem",
    "private",
    "profiles",
    "db",
    "crl",
];

/// Exit 3 when `dir` already holds (part of) a CA: nothing is written over one.
pub fn refuse_existing(dir: &Path, what_now: &str) -> Result<()> {
    if dir.join(STAGING).is_dir() && !dir.join(CONFIG_FILE).exists() {
        // An `init`/`restore` killed while moving a CA in: not a foreign CA.
        // `create_ca_dir` removes it under the lock, then checks again.
        return Ok(());
    }
    if dir.join(PENDING_FILE).exists() && !dir.join(CONFIG_FILE).exists() {
        return Err(pending_error(dir));
    }
    let markers = [CONFIG_FILE, "root.pem", "private", "db"];
    match markers.iter().find(|m| dir.join(m).exists()) {
        Some(m) if !dir.join(CONFIG_FILE).exists() => Err(Error::State(format!(
            "{} holds part of a CA ({m} exists) but no {CONFIG_FILE}: not a CA mtlsca made whole; {what_now} (move it away, or restore a backup into a new directory)",
            dir.display()
        ))),
        Some(m) => Err(Error::State(format!(
            "{} already holds a CA ({m} exists); {what_now}",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// The hidden directory inside an existing `--ca-dir` where `init` and `restore`
/// build a CA before moving it in; one left behind marks an interrupted run that
/// the next `init` or `restore` cleans up.
pub const STAGING: &str = ".mtlsca-init";

/// The hidden sibling `.<name>.mtlsca-init-<pid>` where a CA for a new directory
/// is built before it is renamed into place.
fn staging_prefix(name: &str) -> String {
    format!(".{name}.mtlsca-init-")
}

/// How long `init`/`restore` waits for another one working in the same parent
/// directory.
const INIT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Create a CA directory crash-safely and under a lock (`init`, `restore`).
///
/// `fill` builds the CA in a staging directory; for a new `dir` that is a hidden
/// sibling renamed to `dir` when complete (a kill leaves nothing under the name,
/// or a complete CA), for an existing (empty or foreign) `dir` a hidden
/// `dir/.mtlsca-init` whose entries are moved in, `ca.toml` last. Both run under
/// an exclusive lock on the parent directory, so two at once yield one CA and one
/// clear refusal (exit 3); leftovers of a killed run are removed first.
pub fn create_ca_dir<T>(
    dir: &Path,
    what_now: &str,
    fill: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let (parent, name) = split_dir(dir)?;
    // Missing parents are made 0755 whatever the umask: a parent others may
    // write to would let them move the CA directory away.
    fsutil::create_dir_all_mode(&parent, 0o755)?;
    let _lock = fsutil::DirLock::acquire(&parent, INIT_LOCK_WAIT)?;
    clean_interrupted(dir, &parent, &name)?;
    refuse_existing(dir, what_now)?;
    if dir.exists() {
        if let Some(e) = CA_ENTRIES.iter().find(|e| dir.join(e).exists()) {
            return Err(Error::State(format!(
                "{} already has `{e}`, which a CA would use; use a new or empty directory",
                dir.display()
            )));
        }
        let staging = dir.join(STAGING);
        fsutil::create_dir_mode(&staging, 0o700).at(&staging)?;
        let result = fill(&staging).and_then(|t| {
            move_in(&staging, dir)?;
            Ok(t)
        });
        if result.is_err() {
            remove_half_made(dir, false);
            let _ = fs::remove_dir_all(&staging);
        }
        result
    } else {
        let staging = parent.join(format!("{}{}", staging_prefix(&name), std::process::id()));
        fsutil::create_dir_mode(&staging, 0o750).at(&staging)?;
        let result = fill(&staging).and_then(|t| {
            fsutil::sync_dir(&staging)?;
            fs::rename(&staging, dir).map_err(|e| {
                Error::State(format!(
                    "cannot move the new CA into {}: {e}; {what_now}",
                    dir.display()
                ))
            })?;
            fsutil::sync_dir(&parent)?;
            Ok(t)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }
}

/// `dir`'s parent (absolute when `dir` exists, so `.` works) and its name.
fn split_dir(dir: &Path) -> Result<(PathBuf, String)> {
    let full = if dir.exists() {
        dir.canonicalize().at(dir)?
    } else {
        dir.to_path_buf()
    };
    let name = full
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} cannot be a CA directory (it has no name)",
                dir.display()
            ))
        })?;
    let parent = match full.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Remove what a killed `init`/`restore` left (the caller holds the lock, so no
/// other one is running): staging siblings, and a staging directory inside `dir`
/// with whatever it had moved in when `ca.toml` never followed.
fn clean_interrupted(dir: &Path, parent: &Path, name: &str) -> Result<()> {
    let prefix = staging_prefix(name);
    for entry in fs::read_dir(parent).at(parent)? {
        let entry = entry.at(parent)?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let p = entry.path();
            fs::remove_dir_all(&p).at(&p)?;
        }
    }
    let inner = dir.join(STAGING);
    if inner.exists() {
        if !dir.join(CONFIG_FILE).exists() {
            remove_half_made(dir, false);
        }
        fs::remove_dir_all(&inner).at(&inner)?;
        fsutil::sync_dir(dir)?;
    }
    Ok(())
}

/// Move a built CA from `staging` into `dir`, `ca.toml` last (or, for a CA
/// that waits for its issuing CA certificates, `pending.toml`), then remove
/// `staging`.
fn move_in(staging: &Path, dir: &Path) -> Result<()> {
    let marker = if staging.join(CONFIG_FILE).exists() {
        CONFIG_FILE
    } else {
        PENDING_FILE
    };
    for e in CA_ENTRIES.iter().filter(|e| **e != marker) {
        let from = staging.join(e);
        if from.exists() {
            let to = dir.join(e);
            fsutil::rename_no_replace(&from, &to).at(&to)?;
        }
    }
    fsutil::sync_dir(dir)?;
    let to = dir.join(marker);
    fsutil::rename_no_replace(&staging.join(marker), &to).at(&to)?;
    fsutil::sync_dir(dir)?;
    fs::remove_dir_all(staging).at(staging)?;
    fsutil::sync_dir(dir)
}

/// After a failed `init` or restore: remove what a CA directory holds (the caller
/// checked with `refuse_existing` that none of it was there before), and the
/// directory itself when the caller created it.
pub fn remove_half_made(dir: &Path, created_dir: bool) {
    for p in CA_ENTRIES {
        let path = dir.join(p);
        let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
    }
    if created_dir {
        let _ = fs::remove_dir(dir);
    }
}
