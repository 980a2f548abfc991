//! The control socket `<ca-dir>/mtlsca.sock`: created by `serve` (mode 0600),
//! answering only peers of the server's own uid (SO_PEERCRED; another uid gets
//! an error answer with the rule before the connection closes), removed at a
//! clean stop; a stale socket (no one listening) is replaced at start and
//! ignored by clients. Every refused connection (another uid, a request too
//! large, cut short, not complete within the read timeout, unreadable, of
//! another protocol version, with a relative path) is logged on the server's
//! stderr, one line each.
//!
//! The client resolves relative paths against its own working directory before
//! sending an operation, and reads its inputs (CSR, manifest, standard input)
//! itself; the server runs the one engine with absolute paths, and refuses a
//! relative one.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ops::{Paged, Part};
use super::protocol::frame::{read_frame, write_frame, MAX_REQUEST, MAX_RESPONSE};
use super::protocol::{self, Remote, WireError};
use crate::error::{Error, Result};

/// The socket's file name in the CA directory.
pub const SOCKET_NAME: &str = "mtlsca.sock";
/// Connections served at once; more wait to be accepted.
pub const MAX_CLIENTS: usize = 64;
/// Time a client has to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client waits for the answer (a large batch takes a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);

/// `<ca-dir>/mtlsca.sock`.
pub fn socket_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join(SOCKET_NAME)
}

/// An error about the control socket at `path`.
pub fn socket_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State(format!("the control socket {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

/// A connection to a running server's control socket.
pub struct Client {
    path: PathBuf,
    first: RefCell<Option<UnixStream>>,
}

impl Client {
    /// The server answering on `<ca-dir>/mtlsca.sock`, if one does: none when
    /// there is no socket or no one listens on it (a stale socket).
    pub fn connect(ca_dir: &Path) -> Result<Option<Client>> {
        let path = socket_path(ca_dir);
        match UnixStream::connect(&path) {
            Ok(s) => Ok(Some(Client {
                path,
                first: RefCell::new(Some(s)),
            })),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound
                        | ErrorKind::ConnectionRefused
                        | ErrorKind::NotADirectory
                        // A path too long for a socket: no server can listen there.
                        | ErrorKind::InvalidInput
                ) =>
            {
                Ok(None)
            }
            // A socket of another user (0600): say whose, not only EACCES.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                Err(other_user(&path).unwrap_or_else(|| socket_err(&path, e)))
            }
            Err(e) => Err(socket_err(&path, e)),
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn stream(&self) -> Result<UnixStream> {
        match self.first.borrow_mut().take() {
            Some(s) => Ok(s),
            None => UnixStream::connect(&self.path).map_err(|e| socket_err(&self.path, e)),
        }
    }

    /// Run an operation on the server. Relative paths in `op` are resolved
    /// against this process's working directory, and given back relative.
    pub fn call<O: Remote>(&self, mut op: O) -> Result<O::Answer> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        let relative = op.absolutize(&cwd);
        let mut stream = self.send(op)?;
        let mut answer = O::answer_in(self.read_answer::<O::Wire>(&mut stream)?);
        if relative {
            O::relativize(&mut answer, &cwd);
        }
        Ok(answer)
    }

    /// A read in parts streamed on one connection: `first` (sent with
    /// `stream` set), then every part after it, each given to `each` as it
    /// comes (the server asks the engine for the next part while it writes
    /// this one).
    pub fn call_parts<O: Remote + Paged>(
        &self,
        first: O,
        each: &mut dyn FnMut(Part<O::Item>),
    ) -> Result<()> {
        let page = super::PageRequest {
            stream: true,
            ..first.page().clone()
        };
        let mut stream = self.send(first.with_page(page))?;
        loop {
            let part = O::answer_in(self.read_answer::<O::Wire>(&mut stream)?);
            let last = part.next.is_none();
            each(part);
            if last {
                return Ok(());
            }
        }
    }

    /// Send `op` on a connection, which then carries the answer.
    fn send<O: Remote>(&self, op: O) -> Result<UnixStream> {
        let request = op
            .to_request()
            .and_then(|r| protocol::encode_request(&r))
            .map_err(|e| Error::State(e.to_string()))?;
        let mut stream = self.stream()?;
        let io = |e: std::io::Error| socket_err(&self.path, e);
        stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        match write_frame(&mut stream, &request, MAX_REQUEST) {
            Ok(()) => Ok(stream),
            // The server closed the connection without reading the request
            // (it refuses a peer of another user so): what it answered before,
            // if anything, says why, and `read_answer` reads it.
            Err(e) if closed(&e) => Ok(stream),
            Err(e) => Err(io(e)),
        }
    }

    /// One answer frame, read as the wire form `W` of the answer asked for.
    fn read_answer<W: serde::de::DeserializeOwned>(&self, stream: &mut UnixStream) -> Result<W> {
        let body = read_frame(stream, MAX_RESPONSE).map_err(|e| {
            if !closed(&e) {
                return socket_err(&self.path, e);
            }
            other_user(&self.path).unwrap_or_else(|| {
                socket_err(
                    &self.path,
                    "the server closed the connection without an answer",
                )
            })
        })?;
        protocol::decode_answer::<W>(&body)
            .map_err(|e| socket_err(&self.path, e))?
            .map_err(WireError::into_error)
    }
}

/// A connection the other end closed (before or while we wrote, or before its
/// answer was complete).
fn closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
    )
}

/// This process's effective uid, the one the server checks (Linux: the owner
/// of `/proc/self`; `None` where it cannot be known without unsafe code).
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The error for a socket of another user than this process's: the server
/// answers only its own user (exit 3). `None` when the socket is ours, or its
/// owner or ours cannot be known.
fn other_user(path: &Path) -> Option<Error> {
    let owner = std::fs::symlink_metadata(path).ok()?.uid();
    let own = own_uid()?;
    (owner != own).then(|| {
        Error::State(format!(
            "the control socket {} belongs to uid {owner} (the user `mtlsca serve` runs as), and the server answers only that user, not uid {own}: run the command as uid {owner}",
            path.display()
        ))
    })
}
