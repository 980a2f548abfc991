//! `--http`: HTTP/1.x requests from the initiator get its identity in
//! `X-MTLS-*` headers; incoming headers of those names (also spelt with `_`,
//! as some backends read them) are removed. Request framing is checked
//! strictly (RFC 9112): a request head larger than the limit, folded or
//! malformed header lines (one check, `field_line`, for the head and for
//! chunked trailers), `Content-Length` with `Transfer-Encoding` (or
//! `Transfer-Encoding` in HTTP/1.0), more than one `Host`, or a transfer
//! coding other than `chunked` end the connection, with a 400/431/501 answer
//! when no response is under way. Chunked trailers, once checked, are never
//! forwarded (nor the `Trailer` header announcing them): backends merge them
//! with the headers in ways a proxy cannot vouch for.
//! Protocol switches are not forwarded (`Upgrade` is removed, CONNECT
//! refused: a refused switch would let the requests after it through
//! unseen), nor `Connection` tokens naming the identity headers (a next hop
//! would drop them). Responses are copied as they come.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::pipe::{copy, Activity};
use super::{Limits, PeerIdentity};

/// The identity headers, as sent to the target.
pub const HEADERS: [&str; 4] = [
    "X-MTLS-Peer-Role",
    "X-MTLS-Connection",
    "X-MTLS-Peer-Names",
    "X-MTLS-Peer-Serial",
];

const MAX_HEADERS: usize = 100;
const MAX_CHUNK_LINE: usize = 4096;

/// A request the proxy does not forward: status and reason.
#[derive(Debug)]
struct Bad(u16, String);

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request refused ({}): {}", self.0, self.1)
    }
}

impl std::error::Error for Bad {}

fn bad(status: u16, why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, Bad(status, why.into()))
}

/// How the body of a request is framed.
#[derive(Debug, PartialEq, Eq)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

/// Whether a header name is one of ours, whatever its case or `_` for `-`.
fn is_identity_header(name: &[u8]) -> bool {
    let n: Vec<u8> = name
        .iter()
        .map(|b| {
            if *b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    HEADERS
        .iter()
        .any(|h| h.as_bytes().eq_ignore_ascii_case(&n))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn header_value(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// One header field line (of a request head or of chunked trailers, without
/// its CRLF): its name and its value without surrounding whitespace. Refused:
/// a bare CR, LF or NUL, a folded line (obs-fold), no colon, and a name that
/// is not a token (so also whitespace before the colon, RFC 9112 5.1).
fn field_line(line: &[u8]) -> Result<(&[u8], &[u8]), std::io::Error> {
    if line.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad(400, "a bare CR, LF or NUL in a header line"));
    }
    if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return Err(bad(400, "folded header line (obs-fold)"));
    }
    let colon = line
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| bad(400, "header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|b| is_tchar(*b)) {
        return Err(bad(400, "malformed header name"));
    }
    Ok((name, value.trim_ascii()))
}

/// Check and rewrite one request head (ending in CRLF CRLF).
fn rewrite(head: &[u8], id: &PeerIdentity) -> Result<(Vec<u8>, Body), std::io::Error> {
    let text = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or_else(|| bad(400, "request head not ended by an empty line"))?;
    let mut lines = text.split(|b| *b == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let parts: Vec<&[u8]> = request_line.split(|b| *b == b' ').collect();
    if parts.len() != 3
        || parts[0].is_empty()
        || !parts[0].iter().all(|b| is_tchar(*b))
        || parts[1].is_empty()
        || parts[1].iter().any(|b| *b <= b' ' || *b == 0x7f)
        || !(parts[2] == b"HTTP/1.1" || parts[2] == b"HTTP/1.0")
    {
        return Err(bad(400, "malformed request line"));
    }
    if parts[0] == b"CONNECT" {
        return Err(bad(501, "CONNECT is not forwarded in --http mode"));
    }
    let mut out = Vec::with_capacity(head.len() + 256);
    out.extend_from_slice(request_line);
    out.extend_from_slice(b"\r\n");
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut hosts = 0;
    let mut count = 0;
    for line in lines {
        // The last line has no "\r\n" left (stripped above); the others end in '\r'.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        count += 1;
        if count > MAX_HEADERS {
            return Err(bad(431, format!("more than {MAX_HEADERS} header lines")));
        }
        let (name, value) = field_line(line)?;
        if is_identity_header(name) || name.eq_ignore_ascii_case(b"trailer") {
            // Ours are set below; trailers are not forwarded, so not announced.
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if hosts > 1 {
                return Err(bad(400, "more than one Host header"));
            }
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| bad(400, "malformed Content-Length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(bad(400, "conflicting Content-Length headers"));
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(bad(
                    501,
                    "only one Transfer-Encoding, chunked, is forwarded",
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            // No protocol switch: after one the proxy could not see the requests
            // that follow (were it refused), so it is not asked for.
            continue;
        } else if name.eq_ignore_ascii_case(b"connection") {
            // Hop-by-hop names must not make a next hop drop our headers.
            let kept: Vec<&[u8]> = value
                .split(|b| *b == b',')
                .map(|t| t.trim_ascii())
                .filter(|t| {
                    !t.is_empty() && !is_identity_header(t) && !t.eq_ignore_ascii_case(b"upgrade")
                })
                .collect();
            if !kept.is_empty() {
                out.extend_from_slice(b"Connection: ");
                out.extend_from_slice(&kept.join(&b", "[..]));
                out.extend_from_slice(b"\r\n");
            }
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    if chunked && length.is_some() {
        return Err(bad(400, "both Content-Length and Transfer-Encoding"));
    }
    if chunked && parts[2] == b"HTTP/1.0" {
        // RFC 9112 6.1: faulty framing; an HTTP/1.0 backend would read the
        // chunks as the next request.
        return Err(bad(400, "Transfer-Encoding in an HTTP/1.0 request"));
    }
    let values = [
        id.role.as_str().to_string(),
        id.connection.as_str().to_string(),
        header_value(&id.names),
        header_value(&id.serial),
    ];
    for (h, v) in HEADERS.iter().zip(values) {
        out.extend_from_slice(format!("{h}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    let body = if chunked {
        Body::Chunked
    } else {
        match length {
            Some(0) | None => Body::None,
            Some(n) => Body::Length(n),
        }
    };
    Ok((out, body))
}

/// Read up to and including the next `\r\n\r\n` (a head) or `\r\n` (a line),
/// at most `max` bytes. `None` at a clean EOF before anything.
async fn read_until<R: AsyncBufRead + Unpin>(
    r: &mut R,
    end: &[u8],
    max: usize,
    act: &Activity,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut got: Vec<u8> = Vec::new();
    loop {
        let buf = act.io(r.fill_buf()).await?;
        if buf.is_empty() {
            if got.is_empty() {
                return Ok(None);
            }
            return Err(bad(400, "connection closed inside a request"));
        }
        let from = got.len().saturating_sub(end.len() - 1);
        let n = buf.len();
        got.extend_from_slice(buf);
        if let Some(pos) = got[from..].windows(end.len()).position(|w| w == end) {
            let stop = from + pos + end.len();
            let extra = got.len() - stop;
            r.consume(n - extra);
            got.truncate(stop);
            if got.len() > max {
                return Err(bad(431, format!("request head over {max} bytes")));
            }
            return Ok(Some(got));
        }
        r.consume(n);
        if got.len() > max {
            return Err(bad(431, format!("request head over {max} bytes")));
        }
    }
}

/// Copy exactly `n` bytes.
async fn copy_exact<R, W>(r: &mut R, w: &mut W, mut n: u64, act: &Activity) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while n > 0 {
        let buf = act.io(r.fill_buf()).await?;
        if buf.is_empty() {
            return Err(bad(400, "connection closed inside a request body"));
        }
        let take = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        act.io(w.write_all(&buf[..take])).await?;
        r.consume(take);
        act.touch();
        n -= take as u64;
    }
    Ok(())
}

async fn copy_chunked<R, W>(r: &mut R, w: &mut W, act: &Activity, max: usize) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let line = read_until(r, b"\r\n", MAX_CHUNK_LINE, act)
            .await?
            .ok_or_else(|| bad(400, "connection closed inside a chunked body"))?;
        let size_text = line[..line.len() - 2]
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let size = std::str::from_utf8(size_text)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| bad(400, "malformed chunk size"))?;
        if line[..line.len() - 2].contains(&b'\r') || line[..line.len() - 2].contains(&b'\n') {
            return Err(bad(400, "a bare CR or LF in a chunk line"));
        }
        act.io(w.write_all(&line)).await?;
        if size == 0 {
            break;
        }
        copy_exact(r, w, size, act).await?;
        let crlf = read_until(r, b"\r\n", 2, act)
            .await?
            .ok_or_else(|| bad(400, "connection closed inside a chunked body"))?;
        if crlf != b"\r\n" {
            return Err(bad(400, "chunk data not followed by CRLF"));
        }
        act.io(w.write_all(b"\r\n")).await?;
    }
    // Trailers, each checked as a header line is, then dropped; the empty
    // line ends the body.
    let (mut used, mut count) = (0, 0);
    loop {
        let line = read_until(r, b"\r\n", max, act)
            .await?
            .ok_or_else(|| bad(400, "connection closed inside chunked trailers"))?;
        used += line.len();
        if used > max {
            return Err(bad(431, format!("trailers over {max} bytes")));
        }
        if line == b"\r\n" {
            act.io(w.write_all(b"\r\n")).await?;
            return Ok(());
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(bad(431, format!("more than {MAX_HEADERS} trailer lines")));
        }
        field_line(&line[..line.len() - 2])?;
    }
}

async fn requests<R, W>(
    r: &mut R,
    w: &mut W,
    id: &PeerIdentity,
    limits: &Limits,
    act: &Activity,
    forwarded: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let head = match read_until(r, b"\r\n\r\n", limits.max_header_bytes, act).await? {
            None => break,
            // Empty lines before a request line are ignored (RFC 9112 2.2).
            Some(h) => {
                let skip = h
                    .iter()
                    .position(|b| *b != b'\r' && *b != b'\n')
                    .unwrap_or(h.len());
                if skip == h.len() {
                    continue;
                }
                h[skip..].to_vec()
            }
        };
        let (out, body) = rewrite(&head, id)?;
        forwarded.fetch_add(1, Ordering::Relaxed);
        act.io(w.write_all(&out)).await?;
        act.touch();
        match body {
            Body::None => {}
            Body::Length(n) => copy_exact(r, w, n, act).await?,
            Body::Chunked => copy_chunked(r, w, act, limits.max_header_bytes).await?,
        }
        act.io(w.flush()).await?;
    }
    let _ = w.shutdown().await;
    Ok(())
}

/// Forward HTTP/1.x from `client` to `target`, adding `id` to each request.
/// `Err` carries the reason a request was refused or the link dropped.
pub(crate) async fn forward<C, T>(
    client: C,
    target: T,
    id: &PeerIdentity,
    limits: &Limits,
) -> Result<(), String>
where
    C: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let act = Activity::new(limits.idle_timeout);
    let (cr, mut cw) = tokio::io::split(client);
    let (mut tr, mut tw) = tokio::io::split(target);
    let mut cr = BufReader::new(cr);
    // Requests forwarded so far: once one is, a response may be under way and
    // the proxy cannot answer in its place.
    let forwarded = AtomicU64::new(0);
    let res = tokio::try_join!(
        requests(&mut cr, &mut tw, id, limits, &act, &forwarded),
        copy(&mut tr, &mut cw, &act)
    );
    match res {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Some(Bad(status, why)) = e.get_ref().and_then(|x| x.downcast_ref::<Bad>()) {
                if forwarded.load(Ordering::Relaxed) == 0 {
                    let text = match status {
                        431 => "Request Header Fields Too Large",
                        501 => "Not Implemented",
                        _ => "Bad Request",
                    };
                    let answer = format!(
                        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{why}\n",
                        why.len() + 1
                    );
                    let _ = cw.write_all(answer.as_bytes()).await;
                    let _ = cw.shutdown().await;
                }
                return Err(format!("request refused ({status}): {why}"));
            }
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::{Connection, Role};

    fn id() -> PeerIdentity {
        PeerIdentity {
            role: Role::Device,
            connection: Connection::ServerToServer,
            names: "DNS:a.test".into(),
            serial: "0a".into(),
        }
    }

    fn status(head: &[u8]) -> u16 {
        let e = rewrite(head, &id()).unwrap_err();
        e.get_ref().unwrap().downcast_ref::<Bad>().unwrap().0
    }

    #[test]
    fn spoofed_identity_headers_are_replaced() {
        let (out, body) = rewrite(
            b"GET / HTTP/1.1\r\nHost: x\r\nx-mtls-peer-role: entity\r\nX_MTLS_Connection: end-to-end\r\nX-Mtls-Peer-Names: DNS:evil\r\n\r\n",
            &id(),
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(body, Body::None);
        assert!(
            !out.contains("entity") && !out.contains("evil") && !out.contains("end-to-end"),
            "{out}"
        );
        assert!(out.contains("X-MTLS-Peer-Role: device\r\n"), "{out}");
        assert!(
            out.contains("X-MTLS-Connection: server-to-server\r\n"),
            "{out}"
        );
        assert!(out.ends_with("X-MTLS-Peer-Serial: 0a\r\n\r\n"), "{out}");
    }

    #[test]
    fn framing_is_strict() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(status(b"GET / HTTP/2\r\n\r\n"), 400);
        assert!(rewrite(b"GET / HTTP/1.0\r\n\r\n", &id()).is_ok());
        assert_eq!(status(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nA: x\rB: y\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT a:443 HTTP/1.1\r\n\r\n"), 501);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nX-MTLS-Peer-Role : x\r\n\r\n"),
            400
        );
        let (out, _) = rewrite(
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade, X-MTLS-Peer-Role, keep-alive\r\n\r\n",
            &id(),
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            !out.contains("websocket") && !out.contains("Upgrade"),
            "{out}"
        );
        assert!(out.contains("\r\nConnection: keep-alive\r\n"), "{out}");
        let (out, _) = rewrite(
            b"GET / HTTP/1.1\r\nConnection: x-mtls-peer-names\r\n\r\n",
            &id(),
        )
        .unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("\r\nConnection:"));
        let (_, b) = rewrite(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", &id()).unwrap();
        assert_eq!(b, Body::Length(5));
        let (_, b) = rewrite(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n",
            &id(),
        )
        .unwrap();
        assert_eq!(b, Body::Chunked);
    }

    /// A trailer line gets the head's checks: one that the head refuses ends
    /// the connection, and nothing of it reaches the target.
    #[tokio::test]
    async fn trailers_are_checked_as_header_lines_are() {
        use tokio::io::AsyncReadExt;
        for trailer in [
            &b"X-MTLS-Peer-Role : entity\r\n"[..],
            b"X-MTLS-Peer-Role\t: entity\r\n",
            b"Ok: 1\r\n folded: x\r\n",
            b"no colon\r\n",
            b"A: b\x00c\r\n",
        ] {
            let (mut client, proxy_side) = tokio::io::duplex(1 << 16);
            let (target_side, mut target) = tokio::io::duplex(1 << 16);
            let task = tokio::spawn(async move {
                forward(proxy_side, target_side, &id(), &Limits::default()).await
            });
            let mut req =
                b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
                    .to_vec();
            req.extend_from_slice(trailer);
            req.extend_from_slice(b"\r\n");
            client.write_all(&req).await.unwrap();
            let mut seen = Vec::new();
            target.read_to_end(&mut seen).await.unwrap();
            let seen = String::from_utf8_lossy(&seen);
            let why = task.await.unwrap().unwrap_err();
            assert!(why.contains("request refused (400)"), "{why}");
            assert!(seen.ends_with("1\r\na\r\n0\r\n"), "{seen:?}");
        }
    }

    #[test]
    fn junk_never_panics() {
        for junk in [
            &b""[..],
            b"\r\n\r\n",
            b"\n\r\n\r\n",
            b"GET\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
            b"GET / HTTP/1.1\r\n:\r\n\r\n",
        ] {
            let _ = rewrite(junk, &id());
        }
    }

    /// Two requests on one connection: a chunked one whose trailers spoof an
    /// identity header, then one with a body; the target sees both rewritten,
    /// and no trailer.
    #[tokio::test]
    async fn keep_alive_requests_and_chunked_trailers_are_rewritten() {
        use tokio::io::AsyncReadExt;
        let (mut client, proxy_side) = tokio::io::duplex(1 << 16);
        let (target_side, mut target) = tokio::io::duplex(1 << 16);
        let limits = Limits::default();
        let task = tokio::spawn(async move {
            let id = id();
            forward(proxy_side, target_side, &id, &limits).await
        });
        client
            .write_all(
                b"POST /a HTTP/1.1\r\nHost: x\r\nTrailer: X-MTLS-Peer-Role, Ok\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nabc\r\n0\r\nX-MTLS-Peer-Role: entity\r\nOk: 1\r\n\r\n\
                  POST /b HTTP/1.1\r\nContent-Length: 4\r\nX_MTLS_Peer_Serial: ff\r\n\r\nwxyz",
            )
            .await
            .unwrap();
        client.shutdown().await.unwrap();
        let mut seen = Vec::new();
        target.read_to_end(&mut seen).await.unwrap();
        let seen = String::from_utf8(seen).unwrap();
        assert_eq!(
            seen.matches("X-MTLS-Peer-Role: device\r\n").count(),
            2,
            "{seen}"
        );
        assert!(
            !seen.contains("entity") && !seen.contains("ff\r\n"),
            "{seen}"
        );
        assert!(seen.contains("3\r\nabc\r\n0\r\n\r\nPOST /b"), "{seen}");
        assert!(!seen.contains("Trailer") && !seen.contains("Ok"), "{seen}");
        assert!(seen.ends_with("\r\n\r\nwxyz"), "{seen}");
        drop(target);
        let _ = task.await;
    }
}
