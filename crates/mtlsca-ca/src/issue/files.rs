//! The files of an issued certificate and the protocol that writes them: final
//! names checked before anything is signed, temporary siblings written first, the
//! final names linked only after the record is durable (see the module doc of
//! `issue`).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;
use crate::rules::{Field, Origin, Refusal, Rule};

/// Where the results go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// `PREFIX.key` (generated keys only), `PREFIX.pem`, `PREFIX.chain.pem`.
    Prefix(PathBuf),
    /// One PEM file with the leaf, and the chain beside it (`FILE` without
    /// `.pem`, then `.chain.pem`), for `sign --out FILE`.
    File(PathBuf),
    /// Like `Prefix`, but existing files are replaced atomically (`rename`), each
    /// kept as `NAME.prev` first (`renew` writing over the certificate it renews).
    Replace(PathBuf),
    /// Nothing written; the caller prints the PEM.
    None,
}

/// The final file names of an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    pub(crate) key: Option<PathBuf>,
    pub(crate) cert: PathBuf,
    pub(crate) chain: Option<PathBuf>,
    /// Existing files are replaced (kept as `NAME.prev`), not refused.
    pub(crate) replace: bool,
}

impl Files {
    /// The files of an output (`None` for `Output::None`); `with_key` when the
    /// engine generates the key.
    pub fn of(output: &Output, with_key: bool) -> Option<Files> {
        match output {
            Output::Prefix(p) | Output::Replace(p) => {
                let s = p.as_os_str().to_string_lossy();
                Some(Files {
                    key: with_key.then(|| PathBuf::from(format!("{s}.key"))),
                    cert: PathBuf::from(format!("{s}.pem")),
                    chain: Some(PathBuf::from(format!("{s}.chain.pem"))),
                    replace: matches!(output, Output::Replace(_)),
                })
            }
            Output::File(f) => {
                // `srv.pem` gets `srv.chain.pem` beside it, like `issue --out srv`.
                let s = f.as_os_str().to_string_lossy();
                let stem = s.strip_suffix(".pem").unwrap_or(&s);
                Some(Files {
                    key: None,
                    cert: f.clone(),
                    chain: Some(PathBuf::from(format!("{stem}.chain.pem"))),
                    replace: false,
                })
            }
            Output::None => None,
        }
    }

    /// Every final name, key first, certificate, chain.
    pub fn all(&self) -> Vec<&PathBuf> {
        self.key
            .iter()
            .chain([&self.cert])
            .chain(self.chain.iter())
            .collect()
    }

    /// Check the final names before anything is signed or recorded: each
    /// directory exists, and no name is taken — by a file, a directory or a
    /// symbolic link, dangling or not. Bad input (exit 2) naming the rule.
    pub fn check_free(&self, origin: Origin) -> Result<()> {
        for p in self.all() {
            check_dir(p, origin)?;
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(Error::invalid(
                        origin,
                        Refusal::new(
                            Rule::OutputIsSymlink,
                            "is a symbolic link; mtlsca writes only to names that do not exist (remove the link or choose another --out)",
                        )
                        .on(Field::Output)
                        .value(p.display().to_string()),
                    ))
                }
                Ok(m) if self.replace && m.is_file() => {}
                Ok(_) => {
                    return Err(Error::invalid(
                        origin,
                        Refusal::new(
                            Rule::OutputExists,
                            "already exists; refusing to overwrite it (choose another --out)",
                        )
                        .on(Field::Output)
                        .value(p.display().to_string()),
                    ))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(p, e)),
            }
        }
        Ok(())
    }

    /// Check that the directory of each file exists: bad input (exit 2, rule
    /// `output-dir-missing`) otherwise. For a request recorded before, whose
    /// missing files are written again.
    pub(crate) fn check_dirs(&self, origin: Origin) -> Result<()> {
        self.all()
            .into_iter()
            .try_for_each(|p| check_dir(p, origin))
    }

    /// fsync the directory the files are linked in.
    pub fn sync_dir(&self) -> Result<()> {
        match self.cert.parent() {
            Some(dir) => fsutil::sync_dir(dir),
            None => Ok(()),
        }
    }

    /// Whether the certificate's temporary file exists (an unfinished output).
    pub(crate) fn cert_partial(&self) -> PathBuf {
        partial(&self.cert)
    }
}

/// The directory of an output file exists; bad input naming the rule if not.
fn check_dir(p: &Path, origin: Origin) -> Result<()> {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::invalid(
        origin,
        Refusal::new(
            Rule::OutputDirMissing,
            format!(
                "directory {} does not exist; create it first or choose another --out",
                dir.display()
            ),
        )
        .on(Field::Output)
        .value(p.display().to_string()),
    ))
}

/// The temporary sibling of a final name.
pub(crate) fn partial(p: &Path) -> PathBuf {
    fsutil::temp_sibling(p, "partial")
}

/// How temporary files reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync each file as it is written (one request).
    EachFile,
    /// Write only; the caller makes a whole chunk durable at once (`sync_fs`)
    /// before recording it.
    Deferred,
}

/// Step 1: the key, chain and certificate under temporary names (the
/// certificate last: its presence means all are complete).
///
/// `EachFile` creates and writes all three before it syncs any: a file created
/// while the journal commits another's fsync waits for that commit, and writeback
/// started for all three at once lets one commit carry them (measured on ext4:
/// about a quarter less time than write-and-fsync one by one). Each file is
/// still fsync'd, then the directory.
pub(crate) fn write_partials(
    f: &Files,
    key_pem: Option<&str>,
    cert_pem: &str,
    chain_pem: &str,
    durability: Durability,
) -> Result<()> {
    let mut items: Vec<(&PathBuf, &str, u32)> = Vec::new();
    if let (Some(k), Some(pem)) = (&f.key, key_pem) {
        items.push((k, pem, 0o600));
    }
    if let Some(c) = &f.chain {
        items.push((c, chain_pem, 0o644));
    }
    items.push((&f.cert, cert_pem, 0o644));
    let mut written = Vec::with_capacity(items.len());
    for (path, text, mode) in items {
        let tmp = partial(path);
        // A leftover of an interrupted run is replaced (removed only when found:
        // one syscall less per file in the common case).
        let file = match write_new_unsynced(&tmp, text.as_bytes(), mode) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&tmp);
                write_new_unsynced(&tmp, text.as_bytes(), mode)
            }
            other => other,
        };
        match file {
            Ok(file) => written.push((tmp, file)),
            Err(e) => {
                remove_partials(f);
                return Err(e);
            }
        }
    }
    if durability == Durability::Deferred {
        return Ok(());
    }
    // The partials' contents and names must be durable before the record is, so
    // that after a power loss a recorded certificate still finds its key (a
    // Deferred chunk gets this from the caller's `sync_fs`).
    let synced = sync_files(&written).and_then(|()| f.sync_dir());
    if synced.is_err() {
        remove_partials(f);
    }
    synced
}

/// fsync freshly written files, after starting the writeback of all of them.
fn sync_files(files: &[(PathBuf, std::fs::File)]) -> Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    for (_, file) in files {
        // POSIX_FADV_DONTNEED starts writeback of the dirty pages (the only
        // writeback hint without `unsafe`); a hint, so its failure is ignored.
        let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
    }
    for (path, file) in files {
        file.sync_all().map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Create `path` (which must not exist) with `mode` and write it, leaving the
/// fsync to the caller (`sync_files`, or a later `sync_fs` of the whole chunk).
/// A file this call created and could not fill is removed.
fn write_new_unsynced(path: &Path, data: &[u8], mode: u32) -> Result<std::fs::File> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(|e| Error::io(path, e))?;
    if let Err(e) = file.write_all(data) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(path, e));
    }
    Ok(file)
}

/// Remove every temporary file of an output (the certificate was not recorded).
pub(crate) fn remove_partials(f: &Files) {
    for p in f.all() {
        let _ = std::fs::remove_file(partial(p));
    }
}

/// Step 3: link every partial to its final name (never replacing a file); returns
/// the final names. The certificate goes last: while its partial exists, recovery
/// knows the output is unfinished. The directory still needs an fsync.
pub(crate) fn link_partials(f: &Files) -> Result<Vec<PathBuf>> {
    let mut order = f.all();
    order.retain(|p| **p != f.cert);
    order.push(&f.cert);
    for p in order {
        let tmp = partial(p);
        if f.replace && tmp.exists() {
            replace_keeping_prev(&tmp, p)?;
            continue;
        }
        match fsutil::rename_no_replace(&tmp, p) {
            Ok(()) => {}
            // Nothing to link (e.g. no key for a CSR, or completed before).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !tmp.exists() => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::State(format!(
                    "{} appeared while the certificate was being issued; the certificate is recorded and its files wait as {} (remove {} and re-run the same command to complete them)",
                    p.display(),
                    tmp.display(),
                    p.display()
                )))
            }
            Err(e) => return Err(Error::io(p, e)),
        }
    }
    Ok(f.all().into_iter().cloned().collect())
}

/// `NAME.prev`: where a replaced file is kept.
pub(crate) fn prev(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".prev");
    PathBuf::from(s)
}

/// Put `tmp` in place of `p` with one `rename` (readers see the old file or the
/// new one, never none), after keeping the old one as a hard link `NAME.prev`.
fn replace_keeping_prev(tmp: &Path, p: &Path) -> Result<()> {
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
        let keep = prev(p);
        match std::fs::remove_file(&keep) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&keep, e)),
        }
        std::fs::hard_link(p, &keep).map_err(|e| Error::io(&keep, e))?;
    }
    std::fs::rename(tmp, p).map_err(|e| Error::io(p, e))
}

/// Make everything written on the file system that holds `dir` durable: one
/// `syncfs` for a whole chunk of temporary files instead of an fsync per file.
pub(crate) fn sync_fs(dir: &Path) -> Result<()> {
    let d = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let f = std::fs::File::open(d).map_err(|e| Error::io(d, e))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::fs::syncfs(&f).map_err(|e| Error::io(d, e.into()))?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        // No syncfs: the directory's files one by one.
        for entry in std::fs::read_dir(d).map_err(|e| Error::io(d, e))? {
            let p = entry.map_err(|e| Error::io(d, e))?.path();
            if p.is_file() {
                std::fs::File::open(&p)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(&p, e))?;
            }
        }
        f.sync_all().map_err(|e| Error::io(d, e))?;
    }
    Ok(())
}
