//! The server side of the control socket `<ca-dir>/mtlsca.sock`: created by
//! `serve` (mode 0600), answering only peers of the server's own uid
//! (SO_PEERCRED; another uid gets an error answer with the rule before the
//! connection closes), removed at a clean stop; a stale socket (no one
//! listening) is replaced at start. Every refused connection (another uid, a
//! request too large, cut short, not complete within the read timeout,
//! unreadable, of another protocol version, with a relative path) is logged on
//! the server's stderr, one line each. Operations run on the CA's one engine
//! ([`crate::service::Service`]); the client is `service::client`.

use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore, TryAcquireError};

use crate::error::{Error, Result};
use crate::service::client::{socket_err, socket_path, MAX_CLIENTS, READ_TIMEOUT, SOCKET_NAME};
use crate::service::protocol::frame::{frame_head, frame_length, HEAD, MAX_REQUEST, MAX_RESPONSE};
use crate::service::protocol::{self, Dispatch, Remote, WireError};
use crate::service::{Paged, Service};

/// Time a client has to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Time requests in flight get to finish at a stop.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often, at most, the log says that every connection slot is taken.
const CAP_LOG_EVERY: Duration = Duration::from_secs(10);

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
    TooLarge(u64),
    /// Closed after `got` of `want` bytes.
    Truncated { got: usize, want: usize },
    /// The socket failed.
    Io(std::io::Error),
}

/// Read one request frame into `body`; `head` counts the length bytes read
/// (with `body.len()`, what a client that timed out had sent). The framing is
/// the protocol's ([`frame_length`]); this is only its async reader.
async fn read_request(
    stream: &mut tokio::net::UnixStream,
    head: &mut usize,
    body: &mut Vec<u8>,
) -> std::result::Result<(), ReadFail> {
    let mut len = [0u8; HEAD];
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
    let len = frame_length(len, MAX_REQUEST).map_err(|e| ReadFail::TooLarge(e.len))?;
    body.reserve(len.min(1 << 20));
    (&mut *stream)
        .take(len as u64)
        .read_to_end(body)
        .await
        .map_err(ReadFail::Io)?;
    if body.len() != len {
        return Err(ReadFail::Truncated {
            got: HEAD + body.len(),
            want: HEAD + len,
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
    let state = |m: &str| -> std::result::Result<(), WireError> {
        Err(WireError::from(&Error::State(m.to_string())))
    };
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            let reason = format!("cannot check the peer's user: {e}");
            log_line("unknown", "refused", "peer-unknown", &reason);
            write_answer(&mut stream, &state(&reason)).await;
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
        write_answer(&mut stream, &state(&reason)).await;
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
        Ok(Ok(())) => {
            let refused = match protocol::decode_request(&body) {
                Ok(request) => {
                    let answering = Answering {
                        stream: &mut stream,
                        service: &service,
                    };
                    match request.dispatch(answering) {
                        Ok(answered) => return answered.await,
                        Err(e) => protocol::malformed_request(&e),
                    }
                }
                Err(bad) => bad,
            };
            log_line(&peer, "refused", refused.problem, &refused.message);
            write_answer(&mut stream, &state(&refused.message)).await;
            return;
        }
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
/// away, or was too slow to read it). The framing is the protocol's
/// ([`frame_head`]); this is only its async writer.
async fn write_answer<W: serde::Serialize>(
    stream: &mut tokio::net::UnixStream,
    result: &std::result::Result<W, WireError>,
) -> bool {
    let Ok(body) = protocol::encode_answer(result) else {
        return false;
    };
    let Ok(head) = frame_head(body.len(), MAX_RESPONSE) else {
        return false;
    };
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, async {
            stream.write_all(&head).await?;
            stream.write_all(&body).await?;
            stream.flush().await
        })
        .await,
        Ok(Ok(()))
    )
}

/// A request being answered on its connection, by its operation's type.
struct Answering<'s> {
    stream: &'s mut tokio::net::UnixStream,
    service: &'s Service,
}

type Answered<'s> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>>;

impl<'s> Dispatch for Answering<'s> {
    type Out = Answered<'s>;

    /// One engine job, one answer frame.
    fn one<O: Remote>(self, op: O) -> Answered<'s> {
        Box::pin(async move {
            let result = self
                .service
                .call(op)
                .await
                .map(O::answer_out)
                .map_err(|e| WireError::from(&e));
            write_answer(self.stream, &result).await;
        })
    }

    /// A streamed read: one answer frame per part on this connection. Each
    /// part is one engine job, so other jobs run between parts; the next part
    /// is asked for before this one is written, so that the engine, this task
    /// and the client work at once. Ends after the last part, an error, or
    /// when the client stops reading.
    fn parts<O: Remote + Paged>(self, first: O) -> Answered<'s> {
        Box::pin(async move {
            let service = self.service;
            let mut asked = Some((service.submit(first.clone()), first));
            while let Some((reply, op)) = asked.take() {
                let result = match reply {
                    Ok(rx) => rx
                        .await
                        .unwrap_or_else(|_| Err(crate::service::engine_gone())),
                    Err(e) => Err(e),
                };
                if let Ok(part) = &result {
                    asked = op
                        .after(part)
                        .map(|next| (service.submit(next.clone()), next));
                }
                let result = result.map(O::answer_out).map_err(|e| WireError::from(&e));
                if !write_answer(self.stream, &result).await {
                    return;
                }
            }
        })
    }
}
