//! The one error type of the library, and the exit code each kind maps to
//! (the contract in DESIGN.md: 1 refused, 2 bad usage or unreadable input, 3 CA state).

use std::path::{Path, PathBuf};

use crate::rules::{Origin, Refusal, Refusals, Rule};

/// Everything that can stop a command. A failed *verification* is not an error but a
/// verdict (see `verify`); a refusal by policy is, because nothing was produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Refused by policy: the request is well-formed but mtlsca will not sign it.
    #[error("refused: {0}")]
    Refused(Refusals),
    /// A request that cannot be right as written (syntax of a name in the
    /// arguments, an oversized request, a missing output directory): bad input,
    /// with the rules it breaks.
    #[error("{0}")]
    Invalid(Refusals),
    /// Bad usage: an argument or value that cannot be right.
    #[error("{0}")]
    Usage(String),
    /// Input that cannot be read or parsed (a file, a CSR, a profile, a manifest).
    #[error("{what}: {msg}")]
    Input {
        /// What was read (`CSR`, `manifest m.toml`).
        what: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The CA is missing, damaged, locked, or its files cannot be used.
    #[error("{0}")]
    State(String),
    /// An I/O failure on a CA or output file.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store failed (sled), is corrupt, or was locked past the wait.
    #[error("store: {0}")]
    Store(String),
}

/// A result whose error is mtlsca's.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error (DESIGN.md, "Exit codes").
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Refused(_) => 1,
            Error::Usage(_) | Error::Input { .. } | Error::Invalid(_) => 2,
            Error::State(_) | Error::Io { .. } | Error::Store(_) => 3,
        }
    }

    /// "No such certificate": a refusal (exit 1) with rule `not-found`.
    pub fn refused(msg: impl Into<String>) -> Error {
        Error::refused_by(Rule::NotFound, msg)
    }

    /// A refusal of one rule, for a request made on the command line.
    pub fn refused_by(rule: Rule, detail: impl Into<String>) -> Error {
        Error::Refused(Refusals::new(
            Origin::Arguments,
            vec![Refusal::new(rule, detail)],
        ))
    }

    /// Refusals of a request of `origin` (exit 1).
    pub fn refusals(origin: Origin, reasons: Vec<Refusal>) -> Error {
        Error::Refused(Refusals::new(origin, reasons))
    }

    /// Bad input breaking one rule (exit 2).
    pub fn invalid(origin: Origin, reason: Refusal) -> Error {
        Error::Invalid(Refusals::new(origin, vec![reason]))
    }

    /// The rules this error names (empty for errors that are not about a rule).
    pub fn reasons(&self) -> Option<&Refusals> {
        match self {
            Error::Refused(r) | Error::Invalid(r) => Some(r),
            _ => None,
        }
    }

    /// A short word for the kind of error, for JSON (`refused`, `invalid`,
    /// `usage`, `input`, `state`, `io`, `store`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Refused(_) => "refused",
            Error::Invalid(_) => "invalid",
            Error::Usage(_) => "usage",
            Error::Input { .. } => "input",
            Error::State(_) => "state",
            Error::Io { .. } => "io",
            Error::Store(_) => "store",
        }
    }

    /// The same error for a request of another origin (a manifest entry, a CSR).
    pub fn with_origin(self, origin: Origin) -> Error {
        match self {
            Error::Refused(r) => Error::Refused(Refusals { origin, ..r }),
            Error::Invalid(r) => Error::Invalid(Refusals { origin, ..r }),
            other => other,
        }
    }

    /// `{"error": {"kind", "message", "reasons"}}`, what a failing command prints
    /// on stdout under `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "kind": self.kind(),
                "message": self.to_string(),
                "reasons": self.reasons().map(|r| r.to_json()).unwrap_or_else(|| serde_json::json!([])),
            }
        })
    }

    /// Unreadable input: what it is, and what is wrong with it (exit 2).
    pub fn input(what: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Input {
            what: what.into(),
            msg: msg.into(),
        }
    }

    /// An I/O failure on a file (exit 3).
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Attach a path to an `io::Result`.
pub trait IoContext<T> {
    /// The I/O error, with the path it concerns.
    fn at(self, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Why bytes that should be `expected` (PEM with `-----BEGIN LABEL-----`, or DER)
/// are not, in words: empty, text that is not PEM (with its first characters),
/// or binary data that is not DER. `None` when they may well be DER (let the
/// parser say more).
pub fn not_pem_or_der(bytes: &[u8], expected: &str, label: &str) -> Option<String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some(format!(
            "is empty; expected {expected} (PEM `-----BEGIN {label}-----` or DER)"
        ));
    }
    let text = bytes.len() >= 2
        && bytes[0] != 0x30
        && bytes
            .iter()
            .take(256)
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        let start: String = String::from_utf8_lossy(&bytes[..bytes.len().min(24)])
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        return Some(format!(
            "is text, not {expected}: expected PEM (a `-----BEGIN {label}-----` line) or DER; it starts with `{}`",
            crate::names::printable(&start)
        ));
    }
    if bytes[0] != 0x30 {
        return Some(format!(
            "is neither PEM nor DER: expected {expected} (PEM `-----BEGIN {label}-----`, or DER starting with a SEQUENCE)"
        ));
    }
    None
}
