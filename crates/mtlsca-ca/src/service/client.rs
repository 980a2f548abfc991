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

use super::wire::{self, Response, WireError, MAX_REQUEST, MAX_RESPONSE, VERSION};
use super::{Answer, Op};
use crate::error::{Error, Result};
use crate::issue::Output;

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

    /// Run a streamed read (a `List` or `Audit` whose
    /// [`PageRequest`](super::PageRequest) has `stream`): `each` gets every
    /// answer frame and says whether another follows (a server from before
    /// streamed reads answers with one frame).
    pub fn run_parts(&self, op: Op, each: &mut dyn FnMut(Answer) -> bool) -> Result<()> {
        let mut stream = self.send(&op)?;
        loop {
            let answer = self.read_answer(&mut stream)?;
            if !each(answer) {
                return Ok(());
            }
        }
    }

    /// Send `op` on a connection, which then carries the answer.
    fn send(&self, op: &Op) -> Result<UnixStream> {
        let mut stream = self.stream()?;
        let io = |e: std::io::Error| socket_err(&self.path, e);
        stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
        match wire::write_frame(&mut stream, &wire::request(op)?, MAX_REQUEST) {
            Ok(()) => Ok(stream),
            // The server closed the connection without reading the request
            // (it refuses a peer of another user so): what it answered before,
            // if anything, says why, and `read_answer` reads it.
            Err(e) if closed(&e) => Ok(stream),
            Err(e) => Err(io(e)),
        }
    }

    fn read_answer(&self, stream: &mut UnixStream) -> Result<Answer> {
        let body = wire::read_frame(stream, MAX_RESPONSE).map_err(|e| {
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
        let response: Response = serde_json::from_slice(&body).map_err(|e| {
            // A server of another version answers in a shape this client may
            // not read: its version is what to say then.
            #[derive(serde::Deserialize)]
            struct Versioned {
                v: u32,
            }
            match serde_json::from_slice::<Versioned>(&body) {
                Ok(Versioned { v }) if v != VERSION => socket_err(
                    &self.path,
                    format!(
                        "the server speaks control protocol {v}, this client {VERSION}: run the same mtlsca version"
                    ),
                ),
                _ => socket_err(&self.path, format!("a bad answer: {e}")),
            }
        })?;
        if response.v != VERSION {
            return Err(socket_err(
                &self.path,
                format!(
                    "the server speaks control protocol {}, this client {VERSION}: run the same mtlsca version",
                    response.v
                ),
            ));
        }
        response.result.map_err(WireError::into_error)
    }

    /// Run an operation on the server. Relative paths in `op` are resolved
    /// against this process's working directory, and given back relative.
    pub fn run(&self, mut op: Op) -> Result<Answer> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        let relative_output = absolutize(&mut op, &cwd);
        let mut stream = self.send(&op)?;
        let mut answer = self.read_answer(&mut stream)?;
        if relative_output {
            relativize(&mut answer, &cwd);
        }
        Ok(answer)
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

/// Make a relative path absolute against the client's directory; whether it
/// was relative. `-` is a name like any other here: standard input and output
/// never reach the server as paths.
fn make_absolute(p: &mut PathBuf, cwd: &Path) -> bool {
    if p.is_relative() {
        *p = cwd.join(&*p);
        true
    } else {
        false
    }
}

/// Resolve the operation's relative paths against `cwd`; whether an issue's
/// output or a backup's directory was relative (then shown relative again).
fn absolutize(op: &mut Op, cwd: &Path) -> bool {
    match op {
        Op::Issue(req) => match &mut req.output {
            Output::Prefix(p) | Output::File(p) | Output::Replace(p) => make_absolute(p, cwd),
            _ => false,
        },
        Op::Show { query } | Op::Revoke { query, .. } => {
            if crate::lookup::looks_like_file(query) && Path::new(query).is_relative() {
                *query = cwd.join(&*query).display().to_string();
            }
            false
        }
        Op::Crl {
            target: super::CrlTarget::File(p),
            ..
        } => {
            make_absolute(p, cwd);
            false
        }
        Op::Batch { opts, .. } => {
            make_absolute(&mut opts.out_dir, cwd);
            false
        }
        Op::Backup { dir } => make_absolute(dir, cwd),
        _ => false,
    }
}

/// Show an issued certificate's files as the command was given them: relative
/// to the working directory.
fn relativize(answer: &mut Answer, cwd: &Path) {
    let rel = |p: &mut PathBuf| {
        if let Ok(r) = p.strip_prefix(cwd) {
            *p = r.to_path_buf();
        }
    };
    match answer {
        Answer::Issued(i) => {
            i.files.iter_mut().for_each(rel);
            i.written.iter_mut().for_each(rel);
        }
        Answer::BackedUp(b) => rel(&mut b.dir),
        _ => {}
    }
}
