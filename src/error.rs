//! The one error type of the library, and the exit code each kind maps to
//! (the contract in DESIGN.md: 1 refused, 2 bad usage or unreadable input, 3 CA state).

use std::path::{Path, PathBuf};

/// Everything that can stop a command. A failed *verification* is not an error but a
/// verdict (see `verify`); a refusal by policy is, because nothing was produced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused by policy: the request is well-formed but mtlsca will not sign it.
    #[error("refused: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// Bad usage: an argument or value that cannot be right.
    #[error("{0}")]
    Usage(String),
    /// Input that cannot be read or parsed (a file, a CSR, a profile, a manifest).
    #[error("{what}: {msg}")]
    Input { what: String, msg: String },
    /// The CA is missing, damaged, locked, or its files cannot be used.
    #[error("{0}")]
    State(String),
    /// An I/O failure on a CA or output file.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store failed (sled), is corrupt, or was locked past the wait.
    #[error("store: {0}")]
    Store(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error (DESIGN.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused(_) => 1,
            Error::Usage(_) | Error::Input { .. } => 2,
            Error::State(_) | Error::Io { .. } | Error::Store(_) => 3,
        }
    }

    pub fn refused(msg: impl Into<String>) -> Error {
        Error::Refused(vec![msg.into()])
    }

    pub fn input(what: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Input {
            what: what.into(),
            msg: msg.into(),
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
