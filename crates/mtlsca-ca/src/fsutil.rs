//! File helpers: writes that never leave a half-written file under its final
//! name, directories made with their modes, locks; the bounded reads are the
//! verifier's (input sizes are capped before parsing).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub use crate::verify::load::{read_bounded, read_bounded_text, MAX_INPUT};

/// Write a file in one piece: a temporary sibling, fsync, rename. `mode` applies
/// before any byte is written (keys are never readable by others, even briefly).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_sibling(path, "tmp");
    remove_leftover(&tmp)?;
    write_new(&tmp, data, mode)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Write a file in one piece under a name that must not exist: a temporary
/// sibling (a leftover of a killed run is replaced), fsync, then a rename that
/// never replaces an existing file (exit 2 if one appeared meanwhile).
pub fn write_new_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_sibling(path, "tmp");
    remove_leftover(&tmp)?;
    write_new(&tmp, data, mode)?;
    match rename_no_replace(&tmp, path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Err(already_exists(path))
            } else {
                Err(Error::io(path, e))
            }
        }
    }
}

fn already_exists(path: &Path) -> Error {
    Error::Usage(format!(
        "{} already exists; refusing to overwrite it (pass --force to replace it)",
        path.display()
    ))
}

/// Check an output path before anything is done: its directory must exist, and
/// without `force` nothing may be there (a file, a directory, a symlink, even a
/// dangling one). Exit 2 otherwise.
pub fn check_output(path: &Path, force: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: the directory {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
        Ok(m) if m.is_dir() => Err(Error::Usage(format!("{} is a directory", path.display()))),
        Ok(_) if force => Ok(()),
        Ok(_) => Err(already_exists(path)),
    }
}

/// Remove a temporary file a killed run left (never a directory, never through a
/// symlink: `remove_file` unlinks the link itself).
pub fn remove_leftover(tmp: &Path) -> Result<()> {
    match fs::symlink_metadata(tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(tmp, e)),
        Ok(m) if m.is_dir() => Err(Error::State(format!(
            "{} is a directory where mtlsca keeps a temporary file; remove it",
            tmp.display()
        ))),
        Ok(_) => fs::remove_file(tmp).at(tmp),
    }
}

/// Create `path` (which must not exist) with `mode`, write, fsync.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).at(path)?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    if let Err(e) = written {
        // This call created the file: a torn copy (a full disk) does not stay.
        drop(f);
        let _ = fs::remove_file(path);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// `.name.suffix` beside `path`.
pub fn temp_sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}"))
}

/// Move `from` to `to` without ever replacing an existing `to`: one `renameat2`
/// with RENAME_NOREPLACE where the system has it, else a hard link and an unlink.
/// A `to` that already is `from` (a crash came between the link and the unlink)
/// completes the move; any other existing `to` is `AlreadyExists`.
pub fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // A file system without RENAME_NOREPLACE: fall back below.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) if e == rustix::io::Errno::EXIST && same_file(from, to) => {
                return fs::remove_file(from)
            }
            Err(e) => return Err(e.into()),
        }
    }
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && same_file(from, to) => {
            fs::remove_file(from)
        }
        Err(e) => Err(e),
    }
}

/// Whether two paths name one file (same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

/// fsync a directory so renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(d).and_then(|f| f.sync_all()).at(d)?;
    }
    Ok(())
}

/// An exclusive `flock` on a directory, released when dropped (and by the kernel
/// when the process dies, so a killed holder never leaves it stuck).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Take the lock on `dir`, waiting up to `wait` for another holder.
    pub fn acquire(dir: &Path, wait: std::time::Duration) -> Result<DirLock> {
        let file = File::open(dir).at(dir)?;
        #[cfg(unix)]
        {
            use rustix::fs::{flock, FlockOperation};
            let start = std::time::Instant::now();
            loop {
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => break,
                    Err(e)
                        if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR =>
                    {
                        if start.elapsed() >= wait {
                            return Err(Error::State(format!(
                                "{} is locked by another mtlsca process creating a CA there; gave up after {}s",
                                dir.display(),
                                wait.as_secs()
                            )));
                        }
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => return Err(Error::io(dir, e.into())),
                }
            }
        }
        Ok(DirLock { _file: file })
    }
}

/// Create the directory `dir` (its parent must exist) with exactly `mode`,
/// whatever the umask: created with `mode`, so never more open than that even
/// for a moment, then set to it (the umask can only have taken bits away).
pub fn create_dir_mode(dir: &Path, mode: u32) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(mode);
        builder.create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        builder.create(dir)
    }
}

/// Create `dir` and its missing parents, each with exactly `mode` whatever the
/// umask (for directories that receive private keys: 0700); directories that
/// already exist are left as they are. Exit 3 when one cannot be made, or when
/// `dir` exists and is not a directory.
pub fn create_dir_all_mode(dir: &Path, mode: u32) -> Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| {
            matches!(fs::symlink_metadata(a), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        })
        .collect();
    for d in missing.iter().rev() {
        match create_dir_mode(d, mode) {
            Ok(()) => {}
            // Made meanwhile by someone else: used as it is, like any existing one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(Error::io(d, e)),
        }
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a directory",
            ),
        ))
    }
}

/// Set a mode on a path (unix only).
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).at(path)?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// PEM text with LF line endings (the `pem` crate's default is CRLF): every PEM
/// file mtlsca writes uses LF.
pub fn pem_lf(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_dir_all_mode_makes_only_the_missing_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mtlsca-mkdir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        set_mode(&dir, 0o755).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        create_dir_all_mode(&dir.join("a/b"), 0o700).unwrap();
        assert_eq!(mode(&dir), 0o755, "an existing directory keeps its mode");
        assert_eq!(mode(&dir.join("a")), 0o700);
        assert_eq!(mode(&dir.join("a/b")), 0o700);
        // Again: nothing to make, nothing changed.
        set_mode(&dir.join("a"), 0o750).unwrap();
        create_dir_all_mode(&dir.join("a/b"), 0o700).unwrap();
        assert_eq!(mode(&dir.join("a")), 0o750);
        // A file where a directory goes, or above it: exit 3.
        fs::write(dir.join("f"), b"x").unwrap();
        assert_eq!(
            create_dir_all_mode(&dir.join("f"), 0o700)
                .unwrap_err()
                .exit_code(),
            3
        );
        assert!(create_dir_all_mode(&dir.join("f/g"), 0o700).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_move_interrupted_between_link_and_unlink_completes() {
        let dir = std::env::temp_dir().join(format!("mtlsca-fsutil-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let (from, to, other) = (dir.join(".a.partial"), dir.join("a"), dir.join("b"));
        fs::write(&from, b"data").unwrap();
        fs::hard_link(&from, &to).unwrap(); // the crash came here
        rename_no_replace(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read(&to).unwrap(), b"data");
        // A different file under the final name is never replaced.
        fs::write(&from, b"new").unwrap();
        fs::write(&other, b"old").unwrap();
        let e = rename_no_replace(&from, &other).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(fs::read(&other).unwrap(), b"old");
        fs::remove_dir_all(&dir).unwrap();
    }
}
