//! The control socket's protocol: one request and one response per connection,
//! each a 4-byte big-endian length and a JSON document (serde), both bounded.
//!
//! ```text
//! request:  {"v": 1, "op": Op}
//! response: {"v": 1, "result": {"Ok": Answer} | {"Err": WireError}}
//! ```
//!
//! Errors travel with their kind and their refusals, so a command run through
//! the server prints the same `error:` line, JSON error and exit code as a local run.

use std::io::{Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Answer, Op};
use crate::error::{Error, Result};
use crate::rules::Refusals;

/// The protocol version spoken; a peer speaking another is refused.
pub const VERSION: u32 = 1;
/// Largest request (a batch manifest is at most 64 MiB).
pub const MAX_REQUEST: u32 = 80 * 1024 * 1024;
/// Largest response (`list` of a large store).
pub const MAX_RESPONSE: u32 = 1024 * 1024 * 1024;

/// A request on the socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// The protocol version ([`VERSION`]).
    pub v: u32,
    /// The operation (left as JSON until the version is known).
    pub op: serde_json::Value,
}

/// A response on the socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// The protocol version ([`VERSION`]).
    pub v: u32,
    /// The answer, or the error.
    pub result: std::result::Result<Answer, WireError>,
}

/// An [`Error`] as it travels: its kind, its refusals or message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum WireError {
    /// [`Error::Refused`].
    Refused {
        /// The refusals.
        refusals: Refusals,
    },
    /// [`Error::Invalid`].
    Invalid {
        /// The refusals.
        refusals: Refusals,
    },
    /// [`Error::Usage`].
    Usage {
        /// The message.
        message: String,
    },
    /// [`Error::Input`].
    Input {
        /// What was read.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// [`Error::State`].
    State {
        /// The message.
        message: String,
    },
    /// [`Error::Io`].
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        message: String,
    },
    /// [`Error::Store`].
    Store {
        /// The message.
        message: String,
    },
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        match e {
            Error::Refused(r) => WireError::Refused {
                refusals: r.clone(),
            },
            Error::Invalid(r) => WireError::Invalid {
                refusals: r.clone(),
            },
            Error::Usage(m) => WireError::Usage { message: m.clone() },
            Error::Input { what, msg } => WireError::Input {
                what: what.clone(),
                message: msg.clone(),
            },
            Error::Io { path, source } => WireError::Io {
                path: path.clone(),
                message: source.to_string(),
            },
            Error::Store(m) => WireError::Store { message: m.clone() },
            other => WireError::State {
                message: other.to_string(),
            },
        }
    }
}

impl WireError {
    /// The error again, as it would have been raised locally.
    pub fn into_error(self) -> Error {
        match self {
            WireError::Refused { refusals } => Error::Refused(refusals),
            WireError::Invalid { refusals } => Error::Invalid(refusals),
            WireError::Usage { message } => Error::Usage(message),
            WireError::Input { what, message } => Error::Input { what, msg: message },
            WireError::State { message } => Error::State(message),
            WireError::Io { path, message } => Error::Io {
                path,
                source: std::io::Error::other(message),
            },
            WireError::Store { message } => Error::Store(message),
        }
    }
}

/// Write one frame: length, then the JSON document.
pub fn write_frame<T: Serialize>(w: &mut impl Write, v: &T, max: u32) -> std::io::Result<()> {
    let body = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= max)
        .ok_or_else(|| std::io::Error::other(format!("message of {} bytes", body.len())))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&body)?;
    w.flush()
}

/// Read one frame of at most `max` bytes.
pub fn read_frame(r: &mut impl Read, max: u32) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > max {
        return Err(std::io::Error::other(format!(
            "a message of {len} bytes (at most {max})"
        )));
    }
    let mut body = Vec::with_capacity((len as usize).min(1 << 20));
    r.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() != len as usize {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

/// A request for `op`.
pub fn request(op: &Op) -> Result<Request> {
    Ok(Request {
        v: VERSION,
        op: serde_json::to_value(op)
            .map_err(|e| Error::State(format!("cannot encode the request: {e}")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Origin, Refusal, Rule};

    /// Every kind of error comes back with the same text, kind, reasons and exit code.
    #[test]
    fn errors_round_trip_with_kind_text_and_exit_code() {
        let errors = [
            Error::refusals(
                Origin::Manifest,
                vec![Refusal::new(Rule::NameKindForRole, "no email on a device")
                    .on(crate::rules::Field::Name(crate::role::NameKind::Email))
                    .value("a@b.c")],
            ),
            Error::invalid(Origin::Csr, Refusal::new(Rule::CsrUnreadable, "bad")),
            Error::Usage("use --x".into()),
            Error::input("CSR", "not PEM"),
            Error::State("locked".into()),
            Error::io("/x/y", std::io::Error::other("disk full")),
            Error::Store("corrupt".into()),
        ];
        for e in errors {
            let json = serde_json::to_string(&WireError::from(&e)).unwrap();
            let back: WireError = serde_json::from_str(&json).unwrap();
            let back = back.into_error();
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(back.kind(), e.kind());
            assert_eq!(back.exit_code(), e.exit_code());
            assert_eq!(back.to_json(), e.to_json());
        }
    }

    #[test]
    fn frames_are_bounded() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &"hello", 100).unwrap();
        assert_eq!(read_frame(&mut &buf[..], 100).unwrap(), b"\"hello\"");
        assert!(read_frame(&mut &buf[..], 3).is_err());
        assert!(write_frame(&mut Vec::new(), &"hello", 3).is_err());
        // A length announcing more than is sent.
        assert!(read_frame(&mut &[0, 0, 0, 9, b'x'][..], 100).is_err());
    }
}
