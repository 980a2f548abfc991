//! The control socket `<ca-dir>/mtlsca.sock`: created by `serve` (mode 0600),
//! answering only peers of the server's own uid (SO_PEERCRED), removed at a
//! clean stop; a stale socket (no one listening) is replaced at start and
//! ignored by clients.
//!
//! The client resolves relative paths against its own working directory before
//! sending an operation, and reads its inputs (CSR, manifest, standard input)
//! itself; the server runs the one engine with absolute paths.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

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
        loop {
            let permit = tokio::select! {
                _ = shutdown.changed() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
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

async fn read_request(stream: &mut tokio::net::UnixStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await?;
    if len > MAX_REQUEST {
        return Err(std::io::Error::other(format!(
            "a request of {len} bytes (at most {MAX_REQUEST})"
        )));
    }
    let mut body = Vec::with_capacity((len as usize).min(1 << 20));
    (&mut *stream)
        .take(u64::from(len))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len as usize {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

async fn connection(mut stream: tokio::net::UnixStream, service: Service, uid: u32) {
    let refuse = |m: String| -> std::result::Result<Answer, WireError> {
        Err(WireError::from(&Error::State(m)))
    };
    let result = match stream.peer_cred() {
        Ok(c) if c.uid() == uid => {
            match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
                Ok(Ok(body)) => match request_op(&body) {
                    Ok(op) if op.streams() => return stream_parts(stream, op, &service).await,
                    Ok(op) => service.run(op).await.map_err(|e| WireError::from(&e)),
                    Err(e) => Err(e),
                },
                // A client that connected only to see whether a server runs, or
                // sent nothing useful in time: no answer.
                _ => return,
            }
        }
        Ok(c) => refuse(format!(
            "the server answers only its own user (uid {uid}), not uid {}",
            c.uid()
        )),
        Err(e) => refuse(format!("cannot check the peer's user: {e}")),
    };
    write_response(&mut stream, result).await;
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

fn request_op(body: &[u8]) -> std::result::Result<Op, WireError> {
    let state = |m: String| WireError::from(&Error::State(m));
    let req: Request =
        serde_json::from_slice(body).map_err(|e| state(format!("a bad request: {e}")))?;
    if req.v != VERSION {
        return Err(state(format!(
            "the client speaks control protocol {}, this server {VERSION}: run the same mtlsca version",
            req.v
        )));
    }
    serde_json::from_value(req.op).map_err(|e| state(format!("a bad request: {e}")))
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
        wire::write_frame(&mut stream, &wire::request(op)?, MAX_REQUEST).map_err(io)?;
        Ok(stream)
    }

    fn read_answer(&self, stream: &mut UnixStream) -> Result<Answer> {
        let io = |e: std::io::Error| socket_err(&self.path, e);
        let body = wire::read_frame(stream, MAX_RESPONSE).map_err(io)?;
        let response: Response = serde_json::from_slice(&body)
            .map_err(|e| socket_err(&self.path, format!("a bad answer: {e}")))?;
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

fn make_absolute(p: &mut PathBuf, cwd: &Path) -> bool {
    if p.is_relative() && p.as_os_str() != "-" {
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
