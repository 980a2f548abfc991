//! Attacks on `mtlsca proxy` (issue 22), each against the real binary on
//! loopback ports picked here: an entity accepted as any responder, a wildcard
//! or an entity taken for an allow-listed identity (both directions), issuer
//! rule breaches admitted, one client's idle connections shutting everyone
//! out, a slowloris initiator, and request smuggling in `--http` mode (folded,
//! duplicate and space-before-colon headers, Content-Length with
//! Transfer-Encoding, identity headers in the head and in chunked trailers).
//! A future change must keep this module green.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{connect_from, free_port, Env};
use crate::proxy::{
    client_args, echo_on, echo_once, echo_server, env_with_devices, proxy, serial_of, server_args,
    spawn, tls_client,
};

const PATIENCE: Duration = Duration::from_secs(20);

/// `mtlsca proxy ARGS` must refuse to start: exit 2 with an `error:` line,
/// returned. A proxy that starts instead is killed and the test fails.
fn must_not_start(env: &Env, name: &str, args: &[&str]) -> String {
    let mut c = env.cmd();
    c.arg("proxy").args(args);
    let mut p = spawn(c, env.path(&format!("{name}.log")));
    let start = Instant::now();
    loop {
        if let Some(code) = p.exited() {
            let log = p.log();
            assert_eq!(code, 2, "{args:?}:\n{log}");
            assert!(log.starts_with("error: "), "{log}");
            return log;
        }
        if start.elapsed() > PATIENCE || p.log().contains("listening") {
            let log = p.log();
            drop(p);
            panic!("`proxy {args:?}` started instead of refusing to:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll until `f` holds (at most [`PATIENCE`]); `what` and `log` say why not.
fn until(what: &str, log: impl Fn() -> String, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "{what}:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the peer closes `s` (EOF or reset) within `within`, reading and
/// discarding what comes.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

// ------------------------------------------------------------ finding 1

/// `proxy client` meets an entity (bob, a person) as the responder. The
/// target's host identifies a device only: an entity is accepted only when
/// `--name` gives its email, and `--expect` of an entity responder without
/// one does not start.
#[test]
fn proxy_client_accepts_an_entity_responder_only_by_its_name() {
    let env = env_with_devices();
    env.ok(&[
        "issue", "person", "--cn", "Bob", "--email", "bob@test", "--out", "bob",
    ]);
    let (sp, echo) = (free_port(), echo_server());
    let (sl, st) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&sl, &st);
    args[6] = "bob.chain.pem";
    let _bob = proxy(&env, "bob", sp, &args);

    // No --expect, no --name: devices only, for the target's host.
    let cp = free_port();
    let cl = format!("127.0.0.1:{cp}");
    let base = [
        "client",
        "--listen",
        &cl,
        "--target",
        &sl,
        "--cert",
        "a.chain.pem",
        "--trust",
        "ca/root.pem",
    ];
    let client = proxy(&env, "client-default", cp, &base);
    assert!(!relayed(cp), "{}", client.log());
    let line = client.wait_line(&["verdict=refused"]);
    assert!(
        line.contains("peer certificate is entity; this end accepts device certificates only"),
        "{line}"
    );
    drop(client);

    // --expect with an entity responder and no name (or a host name): bad usage.
    for extra in [
        &["--expect", "server-to-client"][..],
        &["--expect", "server-to-client", "--name", "bob.test"],
        &["--expect", "server-to-client", "--name", "127.0.0.1"],
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let e = must_not_start(&env, "client-unnamed", &args);
        assert!(
            e.contains("give --name with its email address or URI"),
            "{e}"
        );
    }

    // Named: bob is accepted for bob@test, refused for alice@test.
    for (name, accepted) in [("bob@test", true), ("alice@test", false)] {
        let cp = free_port();
        let cl = format!("127.0.0.1:{cp}");
        let mut args = client_args(&cl, &sl, name, "a.chain.pem");
        args.extend(["--expect", "server-to-client"]);
        let client = proxy(&env, "client-named", cp, &args);
        assert_eq!(relayed(cp), accepted, "{name}: {}", client.log());
        if !accepted {
            let line = client.wait_line(&["verdict=refused"]);
            assert!(
                line.contains("not valid for email:alice@test (it names email:bob@test)"),
                "{line}"
            );
        }
    }
}

/// Whether a line sent through `proxy client` on `port` comes back (the
/// target is an echo server behind `proxy server`).
fn relayed(port: u16) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(b"ping\n");
    let mut back = [0u8; 5];
    s.read_exact(&mut back).is_ok() && &back == b"ping\n"
}

// ------------------------------------------------------------ finding 2

/// Names are identities on the way in (`--allow-name`: exact, never a
/// wildcard, only names of the kinds the role carries, an email's local part
/// as written) and the name dialled on the way out (a wildcard device
/// certificate is valid for `db.corp.internal`, as in any TLS client).
#[test]
fn wildcard_and_entity_names_are_not_confused_either_way() {
    let env = env_with_devices();
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "db.corp.internal",
        "--out",
        "db",
    ]);
    env.issue_alice();
    env.ok(&[
        "issue",
        "person",
        "--cn",
        "Mallory",
        "--email",
        "ALICE@test",
        "--out",
        "mallory",
    ]);
    let device = "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth";
    env.openssl_signed(
        "wild",
        "device-ca",
        "/CN=*.corp.internal",
        &format!("{device}\nsubjectAltName=DNS:*.corp.internal"),
    );
    // An entity carrying a host name, and a device carrying alice's email.
    env.openssl_signed("entdns",
        "entity-ca",
        "/CN=Eve",
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=email:eve@test,DNS:db.corp.internal",
    );
    env.openssl_signed(
        "devalice",
        "device-ca",
        "/CN=devalice.test",
        &format!("{device}\nsubjectAltName=DNS:devalice.test,email:alice@test"),
    );
    let echo = echo_server();
    let target = format!("127.0.0.1:{echo}");

    // In: --allow-name db.corp.internal and alice@test; entdns is refused for
    // its findings, and leniently because its host name is not its identity.
    let pp = free_port();
    let listen = format!("127.0.0.1:{pp}");
    for lenient in [false, true] {
        let mut args = server_args(&listen, &target);
        args.extend([
            "--accept",
            "device,entity",
            "--allow-name",
            "db.corp.internal",
            "--allow-name",
            "alice@test",
        ]);
        if lenient {
            args.push("--lenient");
        }
        let p = proxy(&env, &format!("server-{lenient}"), pp, &args);
        for (who, admitted) in [
            ("db", true),
            ("alice", true),
            ("wild", false),
            ("mallory", false),
            ("entdns", false),
        ] {
            let got = echo_once(&tls_client(&env, who), pp, b"x\n");
            assert_eq!(got.is_ok(), admitted, "{who}: {got:?}\n{}", p.log());
        }
        until(
            "three refusals are logged",
            || p.log(),
            || p.log().matches("verdict=refused").count() == 3,
        );
        let log = p.log();
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("verdict=refused"))
            .collect();
        assert!(
            refused[0].contains("not valid for DNS:db.corp.internal or email:alice@test (it names DNS:*.corp.internal) (a wildcard name is not the identity of one peer)"),
            "{}",
            refused[0]
        );
        assert!(
            refused[1].contains("(it names email:ALICE@test)"),
            "{}",
            refused[1]
        );
        let why = match lenient {
            true => "(it names email:eve@test, DNS:db.corp.internal)",
            false => "[name-kind-for-role]",
        };
        assert!(refused[2].contains(why), "{}", refused[2]);
        assert_eq!(p.stop(), 0);
    }
    let e = must_not_start(
        &env,
        "server-wild",
        &[
            server_args(&listen, &target),
            vec!["--allow-name", "*.corp.internal"],
        ]
        .concat(),
    );
    assert!(e.contains("a wildcard names no one peer"), "{e}");

    // Out: the wildcard responder answers for db.corp.internal, the name dialled.
    let (sp, cp) = (free_port(), free_port());
    let (sl, cl) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{cp}"));
    let mut args = server_args(&sl, &target);
    args[6] = "wild.chain.pem";
    let wild = proxy(&env, "wild", sp, &args);
    let client = proxy(
        &env,
        "client-wild",
        cp,
        &client_args(&cl, &sl, "db.corp.internal", "a.chain.pem"),
    );
    assert!(relayed(cp), "{}\n{}", client.log(), wild.log());
    drop((client, wild));
    // A device carrying alice's email is not alice, even leniently.
    let (sp, cp) = (free_port(), free_port());
    let (sl, cl) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{cp}"));
    let mut args = server_args(&sl, &target);
    args[6] = "devalice.chain.pem";
    let _devalice = proxy(&env, "devalice", sp, &args);
    let mut args = client_args(&cl, &sl, "alice@test", "a.chain.pem");
    args.push("--lenient");
    let client = proxy(&env, "client-alice", cp, &args);
    assert!(!relayed(cp), "{}", client.log());
    let line = client.wait_line(&["verdict=refused"]);
    assert!(line.contains("not valid for email:alice@test"), "{line}");
}

// ------------------------------------------------------------ finding 3

/// One client that opens idle connections holds its share only: with the
/// default share (64) and a total of 65, the 65th connection from 127.0.0.1
/// is closed at once, and a client at 127.0.0.2 is still served.
#[test]
fn one_clients_idle_connections_leave_room_for_others_by_default() {
    let env = env_with_devices();
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend(["--max-connections", "65", "--handshake-timeout", "60s"]);
    let p = proxy(&env, "server", pp, &args);
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", pp)).unwrap())
        .collect();
    let mut over = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(10)),
        "the 65th connection from 127.0.0.1 was held:\n{}",
        p.log()
    );
    p.wait_line(&[
        "verdict=refused",
        "too many connections from 127.0.0.1 (limit 64 per client)",
    ]);
    let cfg = tls_client(&env, "a");
    let other = connect_from(Ipv4Addr::new(127, 0, 0, 2), pp);
    let served = echo_on(&cfg, other, b"from .2\n");
    assert!(served.is_ok(), "{served:?}\n{}", p.log());
    drop(idle);
    assert_eq!(p.stop(), 0);
}

/// `--max-connections-per-client` sets the share; a flood of refused
/// connections is logged once a second with a count, not line by line.
#[test]
fn the_per_client_share_is_a_flag_and_refusals_are_logged_with_a_count() {
    let env = env_with_devices();
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend([
        "--max-connections",
        "8",
        "--max-connections-per-client",
        "2",
        "--handshake-timeout",
        "60s",
    ]);
    let p = proxy(&env, "server", pp, &args);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", pp)).unwrap())
        .collect();
    let started = Instant::now();
    let flood = 40;
    for _ in 0..flood {
        let mut s = TcpStream::connect(("127.0.0.1", pp)).unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(10)),
            "{}",
            p.log()
        );
    }
    let secs = started.elapsed().as_secs() as usize;
    let cfg = tls_client(&env, "a");
    let served = echo_on(&cfg, connect_from(Ipv4Addr::new(127, 0, 0, 2), pp), b"hi\n");
    assert!(served.is_ok(), "{served:?}\n{}", p.log());
    // Every refused connection is counted in a line, within a second or so.
    let counted = || {
        p.log()
            .lines()
            .filter(|l| l.contains("too many connections from 127.0.0.1 (limit 2 per client)"))
            .map(|l| {
                l.split("; ")
                    .nth(1)
                    .and_then(|r| r.split(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(1)
            })
            .collect::<Vec<usize>>()
    };
    until(
        "not every refused connection was logged",
        || p.log(),
        || counted().iter().sum::<usize>() == flood,
    );
    let lines = counted().len();
    assert!(
        lines <= secs + 2,
        "{lines} lines for {flood} refusals in {secs} s:\n{}",
        p.log()
    );
    drop(idle);
    assert_eq!(p.stop(), 0);
}

/// A slowloris initiator: one connection that never sends a byte, one that
/// sends part of a ClientHello. Both are closed at the handshake timeout, and
/// meanwhile another client is served.
#[test]
fn a_slowloris_initiator_is_closed_by_the_handshake_timeout() {
    let env = env_with_devices();
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend(["--handshake-timeout", "2s"]);
    let p = proxy(&env, "server", pp, &args);
    let started = Instant::now();
    let mut silent = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    let mut partial = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    // A handshake record of 512 bytes, of which 9 are sent.
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .unwrap();
    let cfg = tls_client(&env, "a");
    assert!(echo_once(&cfg, pp, b"meanwhile\n").is_ok(), "{}", p.log());
    for s in [&mut silent, &mut partial] {
        assert!(closed_within(s, PATIENCE), "still open:\n{}", p.log());
    }
    assert!(started.elapsed() >= Duration::from_millis(1500));
    until(
        "two handshake timeouts are logged",
        || p.log(),
        || p.log().matches("TLS handshake not done within 2s").count() == 2,
    );
    assert_eq!(p.stop(), 0);
}

// ------------------------------------------------------------ finding 4, smuggling

/// A target that records every byte it gets; the second value counts the
/// connections that ended.
fn recorder() -> (u16, Arc<Mutex<Vec<u8>>>, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ended = Arc::new(AtomicUsize::new(0));
    let (s2, e2) = (seen.clone(), ended.clone());
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (seen, ended) = (s2.clone(), e2.clone());
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, seen, ended)
}

/// Send `request` through the proxy as device `a`, close, and return what
/// came back.
fn exchange(cfg: &Arc<rustls::ClientConfig>, port: u16, request: &[u8]) -> String {
    let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let _ = tls.write_all(request);
    tls.conn.send_close_notify();
    let _ = tls.flush();
    let mut back = Vec::new();
    let _ = tls.read_to_end(&mut back);
    String::from_utf8_lossy(&back).into_owned()
}

/// Each request is sent on its own connection through `proxy server --http`
/// to a recording target: the malformed ones get the proxy's 400/501 and
/// nothing reaches the target; identity headers a client sends, in the head
/// or in chunked trailers, never reach it.
#[test]
fn request_smuggling_and_identity_header_injection_are_refused() {
    let env = env_with_devices();
    let (tp, seen, ended) = recorder();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{tp}"));
    let mut args = server_args(&listen, &target);
    args.push("--http");
    let p = proxy(&env, "server", pp, &args);
    let cfg = tls_client(&env, "a");
    let refused: &[(&[u8], &str)] = &[
        (b"GET / HTTP/1.1\r\nHost: b\r\nX-MTLS-Peer-Role : entity\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: b\r\nX-MTLS-Peer-Role\t: entity\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: b\r\nX-A: 1\r\n X-MTLS-Peer-Role: entity\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nHost: b\r\nHost: evil\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "501"),
        (b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding : chunked\r\n\r\n", "400"),
        (b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "501"),
        (b"POST / HTTP/1.0\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n", "400"),
    ];
    for (n, (req, status)) in refused.iter().enumerate() {
        let back = exchange(&cfg, pp, req);
        assert!(
            back.starts_with(&format!("HTTP/1.1 {status} ")),
            "case {n}: {back:?}\n{}",
            p.log()
        );
        until(
            "the target's connection ends",
            || p.log(),
            || ended.load(Ordering::SeqCst) == n + 1,
        );
        let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        assert!(got.is_empty(), "case {n} reached the target: {got:?}");
    }

    // Identity headers in the head and in trailers, well-formed: the target
    // gets ours once each, no trailer and no Trailer header.
    let body = b"POST /up HTTP/1.1\r\nHost: b\r\nx-mtls-peer-role: entity\r\nX_MTLS_Peer_Names: email:ceo@corp\r\nConnection: X-MTLS-Peer-Serial\r\nTrailer: X-MTLS-Peer-Role\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-MTLS-Peer-Role: entity\r\nX-Other: 1\r\n\r\n";
    let _ = exchange(&cfg, pp, body);
    let n = refused.len();
    until(
        "the target's connection ends",
        || p.log(),
        || ended.load(Ordering::SeqCst) == n + 1,
    );
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(got.starts_with("POST /up HTTP/1.1\r\n"), "{got:?}");
    assert_eq!(
        got.matches("X-MTLS-Peer-Role: device\r\n").count(),
        1,
        "{got:?}"
    );
    assert!(got.contains("X-MTLS-Peer-Names: DNS:a.test\r\n"), "{got:?}");
    assert!(
        got.contains("X-MTLS-Connection: server-to-server\r\n"),
        "{got:?}"
    );
    assert!(got.ends_with("2\r\nok\r\n0\r\n\r\n"), "{got:?}");
    for leak in [
        "entity",
        "ceo@corp",
        "Trailer",
        "X-Other",
        "\r\nConnection:",
    ] {
        assert!(!got.contains(leak), "{leak} reached the target: {got:?}");
    }
    seen.lock().unwrap().clear();

    assert_eq!(p.stop(), 0);
}

/// Chunked trailers get the head's checks (one function): a trailer line the
/// head would refuse ends the connection before it reaches the target (Go's
/// net/http reads `X-MTLS-Peer-Role : entity` into Request.Trailer), and
/// well-formed trailers, identity headers or not, are not forwarded, nor the
/// `Trailer` header that announces them.
#[test]
fn chunked_trailers_get_the_heads_checks_and_are_never_forwarded() {
    let env = env_with_devices();
    let (tp, seen, ended) = recorder();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{tp}"));
    let mut args = server_args(&listen, &target);
    args.push("--http");
    let p = proxy(&env, "server", pp, &args);
    let cfg = tls_client(&env, "a");
    // A trailer the head's check refuses (Go's net/http would read
    // `X-MTLS-Peer-Role : entity` into Request.Trailer) ends the connection
    // before it reaches the target.
    for (i, trailer) in [
        &b"X-MTLS-Peer-Role : entity\r\n"[..],
        b"X-MTLS-Peer-Role\t: entity\r\n",
        b"X-A: 1\r\n X-MTLS-Peer-Role: entity\r\n",
        b"X-MTLS-Peer-Role entity\r\n",
    ]
    .iter()
    .enumerate()
    {
        let mut req =
            b"POST /t HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                .to_vec();
        req.extend_from_slice(trailer);
        req.extend_from_slice(b"\r\n");
        let _ = exchange(&cfg, pp, &req);
        until(
            "the target's connection ends",
            || p.log(),
            || ended.load(Ordering::SeqCst) == 1 + i,
        );
        let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        assert!(got.ends_with("2\r\nok\r\n0\r\n"), "trailer {i}: {got:?}");
        assert!(!got.contains("entity"), "trailer {i}: {got:?}");
        seen.lock().unwrap().clear();
    }
    until(
        "the bad trailers are logged",
        || p.log(),
        || p.log().matches("request refused (400)").count() == 4,
    );
    let ok = b"POST /t HTTP/1.1\r\nHost: b\r\nTrailer: X-MTLS-Peer-Role, X-Other\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-MTLS-Peer-Role: entity\r\nX-Other: 1\r\n\r\n";
    let _ = exchange(&cfg, pp, ok);
    until(
        "the target's connection ends",
        || p.log(),
        || ended.load(Ordering::SeqCst) == 5,
    );
    let got = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(got.ends_with("\r\n\r\n2\r\nok\r\n0\r\n\r\n"), "{got:?}");
    for leak in ["entity", "Trailer", "X-Other"] {
        assert!(!got.contains(leak), "{leak} reached the target: {got:?}");
    }
    assert_eq!(p.stop(), 0);
}

// ------------------------------------------------------------ finding 5

/// Leaves that only a holder of a CA key could make, breaking the issuer
/// rules: refused by default in both directions, each with its finding's
/// code; `--lenient` admits them and logs the codes with each admission.
#[test]
fn issuer_rule_breaches_are_refused_unless_lenient() {
    let env = env_with_devices();
    let device = "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth";
    let cases = [
        (
            "devemail",
            "device-ca",
            "/CN=devemail.test",
            format!("{device}\nsubjectAltName=DNS:devemail.test,email:ceo@test"),
            "name-kind-for-role",
        ),
        (
            "devkcs",
            "device-ca",
            "/CN=devkcs.test",
            "keyUsage=critical,digitalSignature,keyCertSign\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:devkcs.test".to_string(),
            "ku-cert-sign-without-ca",
        ),
        (
            "devnosan",
            "device-ca",
            "/CN=devnosan.test",
            device.to_string(),
            "no-identity",
        ),
        (
            "devroot",
            "root",
            "/CN=devroot.test",
            format!("{device}\nsubjectAltName=DNS:devroot.test"),
            "leaf-issued-by-root",
        ),
        (
            "entdns",
            "entity-ca",
            "/CN=Eve",
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=email:eve@test,DNS:eve.test".to_string(),
            "name-kind-for-role",
        ),
    ];
    for (name, issuer, subj, ext, _) in &cases {
        env.openssl_signed(name, issuer, subj, ext);
    }
    let echo = echo_server();
    let target = format!("127.0.0.1:{echo}");
    for lenient in [false, true] {
        let pp = free_port();
        let listen = format!("127.0.0.1:{pp}");
        let mut args = server_args(&listen, &target);
        args.extend(["--accept", "device,entity"]);
        if lenient {
            args.push("--lenient");
        }
        let p = proxy(&env, &format!("server-{lenient}"), pp, &args);
        assert!(echo_once(&tls_client(&env, "a"), pp, b"a\n").is_ok());
        for (name, _, _, _, code) in &cases {
            let got = echo_once(&tls_client(&env, name), pp, b"x\n");
            assert_eq!(got.is_ok(), lenient, "{name}: {got:?}\n{}", p.log());
            let serial = serial_of(&env, &format!("{name}.pem"));
            if lenient {
                let line = p.wait_line(&["verdict=accepted", &serial]);
                assert!(line.contains(&format!("findings={code}")), "{name}: {line}");
            } else {
                until(
                    &format!("{name} is refused with [{code}]"),
                    || p.log(),
                    || {
                        p.log().lines().any(|l| {
                            l.contains("verdict=refused") && l.contains(&format!("[{code}]"))
                        })
                    },
                );
            }
        }
        // The conformant device is admitted without findings.
        let a = serial_of(&env, "a.pem");
        let line = p.wait_line(&["verdict=accepted", &a]);
        assert!(!line.contains("findings"), "{line}");
        assert_eq!(p.stop(), 0);
    }

    // Out: devemail as the responder, `proxy client` beside the initiator.
    let sp = free_port();
    let sl = format!("127.0.0.1:{sp}");
    let mut args = server_args(&sl, &target);
    args[6] = "devemail.chain.pem";
    let _responder = proxy(&env, "devemail", sp, &args);
    for lenient in [false, true] {
        let cp = free_port();
        let cl = format!("127.0.0.1:{cp}");
        let mut args = client_args(&cl, &sl, "devemail.test", "a.chain.pem");
        if lenient {
            args.push("--lenient");
        }
        let client = proxy(&env, &format!("client-{lenient}"), cp, &args);
        assert_eq!(relayed(cp), lenient, "{}", client.log());
        let line = client.wait_line(&[if lenient {
            "verdict=accepted"
        } else {
            "verdict=refused"
        }]);
        let want = if lenient {
            "findings=name-kind-for-role"
        } else {
            "[name-kind-for-role]"
        };
        assert!(line.contains(want), "{line}");
    }
    // An issuing CA trusted as the anchor is not a root: its leaves get in.
    let pp = free_port();
    let listen = format!("127.0.0.1:{pp}");
    let mut args = server_args(&listen, &target);
    args[8] = "ca/device-ca.pem";
    let p = proxy(&env, "pinned", pp, &args);
    let got = echo_once(&tls_client(&env, "a"), pp, b"a\n");
    assert!(got.is_ok(), "{got:?}\n{}", p.log());
    assert_eq!(p.stop(), 0);

    // --strict, the default, is still accepted; with --lenient it is bad usage.
    let pp = free_port();
    let listen = format!("127.0.0.1:{pp}");
    let mut args = server_args(&listen, &target);
    args.push("--strict");
    let p = proxy(&env, "strict", pp, &args);
    assert!(echo_once(&tls_client(&env, "devkcs"), pp, b"x\n").is_err());
    p.wait_line(&["verdict=refused", "[ku-cert-sign-without-ca]"]);
    assert_eq!(p.stop(), 0);
    args.push("--lenient");
    let e = must_not_start(&env, "both", &args);
    assert!(e.contains("--lenient"), "{e}");
}
