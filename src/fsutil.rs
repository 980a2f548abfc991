//! File helpers: bounded reads (input sizes are capped before parsing), and writes
//! that never leave a half-written file under its final name.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

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

pub fn read_bounded_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let bytes = read_bounded(path, limit, what)?;
    String::from_utf8(bytes)
        .map_err(|_| Error::input(format!("{what} {}", path.display()), "not UTF-8 text"))
}

/// Write a file in one piece: a temporary sibling, fsync, rename. `mode` applies
/// before any byte is written (keys are never readable by others, even briefly).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = temp_sibling(path, "tmp");
    write_new(&tmp, data, mode)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
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
    f.write_all(data).at(path)?;
    f.sync_all().at(path)?;
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
