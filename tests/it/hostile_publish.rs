//! The publication door (`serve --publish-listen`, plain HTTP) tried by an
//! attacker (issue 22): only the published files ever come out, whatever the
//! path, method or framing; oversized and slow requests are cut off; the
//! listener keeps serving, and every refusal is logged. A future change must
//! keep this module green.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use crate::acme::constrained_ca;
use crate::common::{connect_from, free_port, Env, Server};

/// A served CA publishing on its own port; the log file's path.
fn publishing(extra: &[&str]) -> (Env, Server, u16, std::path::PathBuf) {
    let env = constrained_ca();
    env.ok(&["crl"]);
    let publish = free_port();
    let at = format!("127.0.0.1:{publish}");
    let log = env.path("serve.err");
    let mut args = vec!["--publish-listen", at.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start_logging(&env, &args, &log);
    (env, server, publish, log)
}

/// Send raw bytes, read until the server closes (at most 20 s).
fn exchange(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).to_string()
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get(port: u16, path: &str) -> String {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Only the fixed list of files is served: traversal, encodings, other files
/// of the CA directory (its private keys, its store) are 404.
#[test]
fn no_path_reaches_a_file_that_is_not_published() {
    let (env, _server, port, log) = publishing(&[]);
    assert_eq!(status(&get(port, "/ca/root.pem")), 200);
    assert_eq!(status(&get(port, "/crl/device.crl")), 200);
    for path in [
        "/crl/../private/root.key",
        "/ca/../private/root.key.pem",
        "/ca/%2e%2e/private/root.key",
        "/ca/..%2fprivate%2froot.pem",
        "/crl/root.crl/../../private/root.key",
        "/private/root.key",
        "/db/conf",
        "/ca/root.pem.bak",
        "/CA/ROOT.PEM",
        "/ca//root.pem",
        "/ca/root.pem%00.crl",
        "/crl/root",
        "//etc/passwd",
        "/",
    ] {
        let a = get(port, path);
        assert_eq!(status(&a), 404, "{path}: {a}");
        assert!(!a.contains("PRIVATE KEY"), "{path}: {a}");
    }
    // An absolute-form target names the same fixed paths or nothing.
    let a = get(port, "http://evil.example/private/root.key");
    assert!(matches!(status(&a), 400 | 404), "{a}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("request=\"GET /crl/../private/root.key\""),
        "{logged}"
    );
    assert!(logged.contains("status=404"), "{logged}");
    drop(env);
}

/// Other methods are 405 with `Allow`; a request body on GET is not read as
/// a second request (no smuggling through Content-Length and chunked framing).
#[test]
fn methods_and_framing_tricks_get_nothing_more() {
    let (_env, _server, port, _log) = publishing(&[]);
    for m in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"] {
        let a = exchange(
            port,
            format!("{m} /ca/root.pem HTTP/1.1\r\nHost: ca\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(status(&a), 405, "{m}: {a}");
        assert!(a.to_ascii_lowercase().contains("allow: get, head"), "{a}");
    }
    // Content-Length and Transfer-Encoding together: refused, or the body is
    // consumed as a body; never a smuggled second request for another file.
    let smuggle = b"GET /ca/root.pem HTTP/1.1\r\nHost: ca\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /private/root.key HTTP/1.1\r\nHost: ca\r\n\r\n";
    let a = exchange(port, smuggle);
    assert!(!a.contains("PRIVATE KEY"), "{a}");
    assert!(a.matches("HTTP/1.1 200").count() <= 1, "{a}");
    // HEAD: the length, no body.
    let a = exchange(
        port,
        b"HEAD /ca/root.pem HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&a), 200, "{a}");
    assert!(!a.contains("BEGIN CERTIFICATE"), "{a}");
}

/// Oversized heads are refused, not buffered; headers that never end are cut
/// off by the idle timeout; and the listener serves meanwhile.
#[test]
fn oversized_and_slow_requests_are_cut_off_and_others_are_served() {
    let (_env, _server, port, _log) = publishing(&["--idle-timeout", "2s"]);
    let big = format!(
        "GET /ca/root.pem HTTP/1.1\r\nHost: ca\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let a = exchange(port, big.as_bytes());
    assert!(
        a.is_empty() || status(&a) == 431 || status(&a) == 400,
        "{a}"
    );
    let long_path = format!("/ca/{}.pem", "a".repeat(20_000));
    let a = get(port, &long_path);
    assert!(
        a.is_empty() || matches!(status(&a), 400 | 404 | 414 | 431),
        "{a}"
    );
    // A head sent one byte at a time and never finished.
    let mut slow = connect_from(Ipv4Addr::new(127, 0, 0, 3), port);
    slow.write_all(b"GET /ca/root.pem HTTP/1.1\r\nHost: c")
        .unwrap();
    assert_eq!(status(&get(port, "/ca/root.pem")), 200);
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    // Control characters and junk in the request line.
    for junk in [
        &b"GET /ca/root.pem\0 HTTP/1.1\r\nHost: ca\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"GET\r\n\r\n",
        b"GET /ca/root.pem HTTP/9.9\r\nHost: ca\r\n\r\n",
    ] {
        let a = exchange(port, junk);
        assert_ne!(status(&a), 200, "{a}");
    }
    assert_eq!(status(&get(port, "/crl/root.crl")), 200, "still serving");
}
