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
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore, TryAcquireError};

use super::wire::{self, Request, Response, WireError, MAX_REQUEST, MAX_RESPONSE, VERSION};
use super::{Answer, Op, Service};
use crate::error::{Error, Result};
use crate::issue::Output;

/// The socket's file name in the CA directory.
pub const SOCKET_NAME: &str = "mtlsca.sock";
/// Connections served at once; more wait to be accepted.
pub const MAX_CLIENTS: usize = 64;
/// Time a client has to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a client waits for the answer (a large batch takes a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);
/// Time requests in flight get to finish at a stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often, at most, the log says that every connection slot is taken.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

/// `<ca-dir>/mtlsca.sock`.
pub fn socket_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join(SOCKET_NAME)
}

fn socket_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::State(format!("the control socket {}: {e}", path.display()))
}

/// The bound control socket of a running server.
pub struct SocketServer {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    uid: u32,
}

impl SocketServer {
    /// Create `<ca-dir>/mtlsca.sock` (0600), replacing a stale one; refuses when
    /// a server already answers on it.
    pub fn bind(ca_dir: &Path) -> Result<SocketServer> {
        let path = socket_path(ca_dir);
        match std::fs::symlink_metadata(&path) {
            Ok(_) => match UnixStream::connect(&path) {
                Ok(_) => {
                    return Err(socket_err(
                        &path,
                        "another server answers on it (stop it first)",
                    ))
                }
                // Nobody listening: a server that did not stop cleanly left it.
                Err(_) => std::fs::remove_file(&path).map_err(|e| socket_err(&path, e))?,
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(socket_err(&path, e)),
        }
        // Bound in a directory only the owner can enter, made 0600 there, then
        // moved into place: never reachable by others, not even for a moment.
        let private = ca_dir.join(format!(".mtlsca.sock.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&private);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&private)
                .map_err(|e| socket_err(&private, e))?;
        }
        let staged = private.join(SOCKET_NAME);
        let bound = std::os::unix::net::UnixListener::bind(&staged)
            .and_then(|l| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
                std::fs::rename(&staged, &path)?;
                Ok(l)
            })
            .map_err(|e| socket_err(&path, e));
        let _ = std::fs::remove_dir_all(&private);
        let mut server = SocketServer {
            listener: bound?,
            uid: 0,
            path,
        };
        // The socket is ours: its owner is this process's uid, the only peer served.
        let uid = std::fs::metadata(&server.path)
            .map_err(|e| socket_err(&server.path, e))?
            .uid();
        server
            .listener
            .set_nonblocking(true)
            .map_err(|e| socket_err(&server.path, e))?;
        server.uid = uid;
        Ok(server)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answer connections until `shutdown` turns true, then let requests in
    /// flight finish and remove the socket. Runs inside a tokio runtime.
    pub async fn serve(self, service: Service, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let listener = match self.listener.try_clone() {
            Ok(l) => tokio::net::UnixListener::from_std(l),
            Err(e) => Err(e),
        }
        .map_err(|e| socket_err(&self.path, e))?;
        let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
        let mut cap_logged: Option<Instant> = None;
        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => break,
                Err(TryAcquireError::NoPermits) => {
                    // Every slot taken: said at most once per CAP_LOG_EVERY.
                    if cap_logged.is_none_or(|t| t.elapsed() >= CAP_LOG_EVERY) {
                        cap_logged = Some(Instant::now());
                        log_line(
                            "-",
                            "waiting",
                            "client-cap",
                            &format!(
                                "{MAX_CLIENTS} connections are being served; new ones wait until one ends"
                            ),
                        );
                    }
                    tokio::select! {
                        _ = shutdown.changed() => break,
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    }
                }
            };
            let stream = tokio::select! {
                _ = shutdown.changed() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let service = service.clone();
            let uid = self.uid;
            tokio::spawn(async move {
                let _permit = permit;
                connection(stream, service, uid).await;
            });
        }
        // No new connections; those in flight finish (each returns its slot).
        drop(listener);
        let _ = std::fs::remove_file(&self.path);
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(MAX_CLIENTS as u32)).await;
        Ok(())
    }
}

impl Drop for SocketServer {
    fn drop(&mut self) {
        // Removed at a stop, and when the server fails to start after binding.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why no request was read.
enum ReadFail {
    /// Closed before sending a byte: a client that only looked whether a
    /// server answers (`Client::connect`, a second `serve`), not an attack.
    Closed,
    /// A length over [`MAX_REQUEST`].
    TooLarge(u32),
    /// Closed after `got` of `want` bytes.
    Truncated { got: usize, want: usize },
    /// The socket failed.
    Io(std::io::Error),
}

/// Read one request frame into `body`; `head` counts the length bytes read
/// (with `body.len()`, what a client that timed out had sent).
async fn read_request(
    stream: &mut tokio::net::UnixStream,
    head: &mut usize,
    body: &mut Vec<u8>,
) -> std::result::Result<(), ReadFail> {
    let mut len = [0u8; 4];
    while *head < len.len() {
        match stream.read(&mut len[*head..]).await {
            Ok(0) if *head == 0 => return Err(ReadFail::Closed),
            Ok(0) => {
                return Err(ReadFail::Truncated {
                    got: *head,
                    want: len.len(),
                })
            }
            Ok(n) => *head += n,
            Err(e) => return Err(ReadFail::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > MAX_REQUEST {
        return Err(ReadFail::TooLarge(len));
    }
    body.reserve((len as usize).min(1 << 20));
    (&mut *stream)
        .take(u64::from(len))
        .read_to_end(body)
        .await
        .map_err(ReadFail::Io)?;
    if body.len() != len as usize {
        return Err(ReadFail::Truncated {
            got: 4 + body.len(),
            want: 4 + len as usize,
        });
    }
    Ok(())
}

/// One line in the server's log about a control-socket connection, in the
/// format of serve's refusal log: `TIME peer=uid:U,pid:P request="control
/// socket" verdict=refused problem=TYPE reason="…"`.
fn log_line(peer: &str, verdict: &str, problem: &str, reason: &str) {
    let quote = |s: &str| serde_json::Value::String(s.trim().to_string()).to_string();
    crate::serverlog::line(format!(
        "{} peer={peer} request=\"control socket\" verdict={verdict} problem={problem} reason={}",
        crate::timefmt::rfc3339(time::OffsetDateTime::now_utc()),
        quote(reason)
    ));
}

async fn connection(mut stream: tokio::net::UnixStream, service: Service, uid: u32) {
    let state = |m: &str| Err(WireError::from(&Error::State(m.to_string())));
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot check the peer's user: {e}");
            log_line("unknown", "refused", "peer-unknown", &reason);
            write_response(&mut stream, state(&reason)).await;
            return;
        }
    };
    let peer = match cred.pid() {
        Some(pid) => format!("uid:{},pid:{pid}", cred.uid()),
        None => format!("uid:{}", cred.uid()),
    };
    if cred.uid() != uid {
        // Answered before the request is read (nothing of another user is
        // read); the client reads this answer even when its write failed
        // because the connection was closed.
        let reason = format!(
            "the control socket answers only uid {uid}, the user `mtlsca serve` runs as, not uid {}: run the command as uid {uid}",
            cred.uid()
        );
        log_line(&peer, "refused", "other-user", &reason);
        write_response(&mut stream, state(&reason)).await;
        return;
    }
    let (mut head, mut body) = (0, Vec::new());
    let read = tokio::time::timeout(
        READ_TIMEOUT,
        read_request(&mut stream, &mut head, &mut body),
    );
    // A request that cannot be read is not answered (there is no request to
    // answer); the connection is closed and the log says why.
    let (problem, reason) = match read.await {
        Ok(Ok(())) => match request_op(&body) {
            Ok(op) if op.streams() => return stream_parts(stream, op, &service).await,
            Ok(op) => {
                let result = service.run(op).await.map_err(|e| WireError::from(&e));
                write_response(&mut stream, result).await;
                return;
            }
            Err((problem, reason)) => {
                log_line(&peer, "refused", problem, &reason);
                write_response(&mut stream, state(&reason)).await;
                return;
            }
        },
        Ok(Err(ReadFail::Closed)) => return,
        Ok(Err(ReadFail::TooLarge(len))) => (
            "too-large",
            format!("a request of {len} bytes (at most {MAX_REQUEST})"),
        ),
        Ok(Err(ReadFail::Truncated { got, want })) => (
            "truncated",
            format!("the connection closed after {got} of the request's {want} bytes"),
        ),
        Ok(Err(ReadFail::Io(e))) => ("read-error", format!("reading the request: {e}")),
        Err(_) => (
            "timeout",
            format!(
                "no complete request within {} s ({} bytes received)",
                READ_TIMEOUT.as_secs(),
                head + body.len()
            ),
        ),
    };
    log_line(&peer, "refused", problem, &reason);
}

/// Write one answer frame; false when it could not be written (the client went
/// away, or was too slow to read it).
async fn write_response(
    stream: &mut tokio::net::UnixStream,
    result: std::result::Result<Answer, WireError>,
) -> bool {
    let response = Response { v: VERSION, result };
    let Ok(body) = serde_json::to_vec(&response) else {
        return false;
    };
    let Ok(len) = u32::try_from(body.len()) else {
        return false;
    };
    if len > MAX_RESPONSE {
        return false;
    }
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_u32(len).await?;
            stream.write_all(&body).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// A streamed read (`Op::streams`): one answer frame per part on this
/// connection. Each part is one engine job, so other jobs run between parts;
/// the next part is asked for before this one is written, so that the engine,
/// this task and the client work at once. Ends after the last part, an error,
/// or when the client stops reading.
async fn stream_parts(mut stream: tokio::net::UnixStream, first: Op, service: &Service) {
    let mut asked = Some((service.submit(first.clone()), first));
    while let Some((reply, op)) = asked.take() {
        let result = match reply {
            Ok(rx) => rx.await.unwrap_or_else(|_| Err(super::engine_gone())),
            Err(e) => Err(e),
        };
        if let Ok(answer) = &result {
            asked = op
                .continued(answer)
                .map(|next| (service.submit(next.clone()), next));
        }
        if !write_response(&mut stream, result.map_err(|e| WireError::from(&e))).await {
            return;
        }
    }
}

/// The operation of a request, or why it is refused: the log's problem and
/// the message answered.
fn request_op(body: &[u8]) -> std::result::Result<Op, (&'static str, String)> {
    let bad = |e: serde_json::Error| ("bad-request", format!("a bad request: {e}"));
    let req: Request = serde_json::from_slice(body).map_err(bad)?;
    if req.v != VERSION {
        return Err((
            "protocol-version",
            format!(
                "the client speaks control protocol {}, this server {VERSION}: run the same mtlsca version",
                req.v
            ),
        ));
    }
    let op: Op = serde_json::from_value(req.op).map_err(bad)?;
    check_paths(&op).map_err(|m| ("bad-request", format!("a bad request: {m}")))?;
    Ok(op)
}

/// The paths of an operation are absolute and hold no NUL byte: the client
/// resolves them against its own working directory (`absolutize`), so a
/// relative one would be resolved against the server's, which nobody meant.
fn check_paths(op: &Op) -> std::result::Result<(), String> {
    let check = |what: &str, p: &Path| {
        if p.as_os_str().as_encoded_bytes().contains(&0) {
            Err(format!("{what} holds a NUL byte"))
        } else if !p.is_absolute() {
            Err(format!(
                "{what} `{}` is relative (a client sends absolute paths)",
                crate::names::printable(&p.to_string_lossy())
            ))
        } else {
            Ok(())
        }
    };
    match op {
        Op::Issue(req) => match &req.output {
            Output::Prefix(p) | Output::File(p) | Output::Replace(p) => check("the output", p),
            _ => Ok(()),
        },
        Op::Show { query } | Op::Revoke { query, .. } if query.contains('\0') => {
            Err("the certificate named holds a NUL byte".into())
        }
        Op::Crl {
            target: super::CrlTarget::File(p),
            ..
        } => check("the CRL file", p),
        Op::Batch { opts, .. } => check("the output directory", &opts.out_dir),
        Op::Backup { dir } => check("the backup directory", dir),
        _ => Ok(()),
    }
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
