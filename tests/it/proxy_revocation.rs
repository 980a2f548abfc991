//! Where `mtlsca proxy` gets revocation from, or says it does not: a foreign
//! PKI made with `openssl` alone (root, issuing CA, serverAuth-only leaves with
//! a CRL distribution point on loopback, one revoked with `openssl ca
//! -revoke` and `-gencrl`), its CRL served over HTTP by a thread of the test;
//! a proxy trusting only that root with `--crl-fetch` refuses the revoked
//! leaf (initiator in server mode, responder in client mode), lets the other
//! one through, and refuses everyone when the CRL cannot be had. Without a
//! source the proxy does not start; `--no-revocation-check` starts with a
//! warning; `--ca-dir` names the CA's CRLs at start.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{code, free_port, Env, BIN};
use crate::proxy::{echo_once, echo_server, env_with_devices, spawn, tls_client, Proc};

/// A tiny HTTP/1.1 server on loopback: `GET /NAME` answers the file
/// `dir/NAME` (read at each request) or 404. Stopped when dropped.
struct CrlServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CrlServer {
    fn start(dir: std::path::PathBuf, port: u16) -> CrlServer {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("bind the CRL server");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            for s in l.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut s) = s else { continue };
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let file = dir.join(path.trim_start_matches('/'));
                let reply = match std::fs::read(&file) {
                    Ok(body) if !path.contains("..") => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = s.write_all(&reply);
            }
        });
        CrlServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for CrlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const FOREIGN_CNF: &str = "\
[ca]
default_ca = foreign
[foreign]
database = foreign/index.txt
new_certs_dir = foreign/newcerts
certificate = foreign/inter.pem
private_key = foreign/inter.key
serial = foreign/serial
crlnumber = foreign/crlnumber
default_md = sha256
default_days = 30
default_crl_days = 7
policy = any
copy_extensions = copy
unique_subject = no
crl_extensions = crl_ext
[any]
commonName = supplied
[crl_ext]
authorityKeyIdentifier = keyid:always
[inter]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://127.0.0.1:CRLPORT/foreign.crl
";

/// A partner's PKI, made with `openssl` only, in the env's directory:
/// `foreign-root.pem`; `partner-a` (revoked) and `partner-b` (not), each
/// `NAME.pem`, `NAME.key` and `NAME.chain.pem` (leaf, issuing CA), devices
/// (serverAuth only) with `DNS:NAME.test` and a CRL distribution point
/// `http://127.0.0.1:CRLPORT/foreign.crl`; the CRL (PEM) in `srv/foreign.crl`.
fn foreign_pki(env: &Env, crl_port: u16) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    std::fs::create_dir_all(env.path("foreign/newcerts")).unwrap();
    std::fs::create_dir_all(env.path("srv")).unwrap();
    std::fs::write(env.path("foreign/index.txt"), "").unwrap();
    std::fs::write(env.path("foreign/serial"), "1000\n").unwrap();
    std::fs::write(env.path("foreign/crlnumber"), "01\n").unwrap();
    std::fs::write(
        env.path("foreign.cnf"),
        FOREIGN_CNF.replace("CRLPORT", &crl_port.to_string()),
    )
    .unwrap();
    let mut root = vec!["req", "-x509"];
    root.extend(ec);
    root.extend([
        "-keyout",
        "foreign/root.key",
        "-out",
        "foreign-root.pem",
        "-subj",
        "/O=Partner/CN=Partner Root",
        "-days",
        "60",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    env.openssl_ok(&root);
    let mut inter = vec!["req", "-new"];
    inter.extend(ec);
    inter.extend([
        "-keyout",
        "foreign/inter.key",
        "-out",
        "foreign/inter.csr",
        "-subj",
        "/O=Partner/CN=Partner Issuing CA",
    ]);
    env.openssl_ok(&inter);
    env.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        "foreign/inter.csr",
        "-CA",
        "foreign-root.pem",
        "-CAkey",
        "foreign/root.key",
        "-set_serial",
        "0x77",
        "-days",
        "50",
        "-sha256",
        "-extfile",
        "foreign.cnf",
        "-extensions",
        "inter",
        "-out",
        "foreign/inter.pem",
    ]);
    let inter_pem = std::fs::read_to_string(env.path("foreign/inter.pem")).unwrap();
    for name in ["partner-a", "partner-b"] {
        let mut req = vec!["req", "-new"];
        req.extend(ec);
        let (key, csr, subj, san) = (
            format!("{name}.key"),
            format!("foreign/{name}.csr"),
            format!("/CN={name}.test"),
            format!("subjectAltName=DNS:{name}.test"),
        );
        req.extend([
            "-keyout", &key, "-out", &csr, "-subj", &subj, "-addext", &san,
        ]);
        env.openssl_ok(&req);
        let pem = format!("{name}.pem");
        env.openssl_ok(&[
            "ca",
            "-batch",
            "-notext",
            "-config",
            "foreign.cnf",
            "-extensions",
            "leaf",
            "-in",
            &csr,
            "-out",
            &pem,
        ]);
        let leaf = std::fs::read_to_string(env.path(&pem)).unwrap();
        std::fs::write(env.path(&format!("{name}.chain.pem")), leaf + &inter_pem).unwrap();
    }
    env.openssl_ok(&["ca", "-config", "foreign.cnf", "-revoke", "partner-a.pem"]);
    env.openssl_ok(&[
        "ca",
        "-config",
        "foreign.cnf",
        "-gencrl",
        "-out",
        "srv/foreign.crl",
    ]);
    // The tools we did not write agree: a is revoked, b is not.
    let untrusted = env.path("foreign/inter.pem");
    let untrusted = untrusted.to_str().unwrap();
    let crl = env.path("srv/foreign.crl");
    for (who, ok) in [("partner-a", false), ("partner-b", true)] {
        let out = env.openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            "foreign-root.pem",
            "-untrusted",
            untrusted,
            "-CRLfile",
            crl.to_str().unwrap(),
            &format!("{who}.pem"),
        ]);
        assert_eq!(
            out.status.success(),
            ok,
            "{who}: {}",
            crate::common::text(&out)
        );
    }
}

/// `mtlsca proxy ARGS` with nothing from the environment but PATH (no CA
/// directory), waiting until it listens on `port`.
fn proxy_bare(env: &Env, name: &str, port: u16, args: &[&str]) -> Proc {
    let mut c = Command::new(BIN);
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("proxy")
        .args(args);
    let p = spawn(c, env.path(&format!("{name}.log")));
    p.wait_line(&["listening", &format!(":{port} ")]);
    p
}

fn server_args(listen: &str, target: &str) -> Vec<String> {
    [
        "server",
        "--listen",
        listen,
        "--target",
        target,
        "--cert",
        "b.chain.pem",
        "--trust",
        "foreign-root.pem",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `openssl s_client` presenting `who` to the proxy on `port`, sending a line.
fn s_client(env: &Env, who: &str, port: u16) {
    let mut c = Command::new("openssl")
        .current_dir(env.dir.path())
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-cert",
            &format!("{who}.pem"),
            "-key",
            &format!("{who}.key"),
            "-cert_chain",
            "foreign/inter.pem",
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = c.stdin.take().unwrap();
    let _ = stdin.write_all(b"hello\n");
    drop(stdin);
    let start = Instant::now();
    while c.try_wait().ok().flatten().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = c.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.wait();
}

#[test]
fn a_proxy_trusting_a_foreign_root_fetches_its_crl_and_refuses_the_revoked_leaf() {
    let env = env_with_devices();
    let crl_port = free_port();
    foreign_pki(&env, crl_port);
    let crl_url = format!("http://127.0.0.1:{crl_port}/foreign.crl");
    let srv = CrlServer::start(env.path("srv"), crl_port);
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.push("--crl-fetch".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = proxy_bare(&env, "fetch", pp, &args);
    let start = p.wait_line(&["revocation:"]);
    assert!(start.contains("CRL distribution points"), "{start}");

    // The revoked partner-a, as initiator with openssl s_client: refused, logged.
    s_client(&env, "partner-a", pp);
    let line = p.wait_line(&["verdict=refused"]);
    let serial_a = crate::proxy::serial_of(&env, "partner-a.pem");
    assert!(
        line.contains("reason=\"revoked:")
            && line.contains(&format!("serial={serial_a}"))
            && line.contains(&format!("crl=\"{crl_url}\"")),
        "{line}"
    );
    // partner-b, from the same CA, not revoked: bytes flow to the backend.
    let cfg_b = tls_client(&env, "partner-b");
    echo_once(&cfg_b, pp, b"through\n").expect("partner-b gets through");
    p.wait_line(&["verdict=accepted", "partner-b.test"]);
    // partner-a again through rustls: still refused (from the cache).
    let cfg_a = tls_client(&env, "partner-a");
    assert!(echo_once(&cfg_a, pp, b"x\n").is_err());
    assert_eq!(p.stop(), 0);

    // proxy client beside a local program, the revoked leaf as responder
    // (openssl s_server): refused before a byte is passed on.
    let sp = free_port();
    let mut s_server = Command::new("openssl")
        .current_dir(env.dir.path())
        .args([
            "s_server",
            "-accept",
            &sp.to_string(),
            "-cert",
            "partner-a.pem",
            "-key",
            "partner-a.key",
            "-cert_chain",
            "foreign/inter.pem",
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let _hold = s_server.stdin.take();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", sp)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "s_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cp = free_port();
    let (listen, target) = (format!("127.0.0.1:{cp}"), format!("127.0.0.1:{sp}"));
    let p = proxy_bare(
        &env,
        "client",
        cp,
        &[
            "client",
            "--listen",
            &listen,
            "--target",
            &target,
            "--name",
            "partner-a.test",
            "--cert",
            "a.chain.pem",
            "--trust",
            "foreign-root.pem",
            "--crl-fetch",
        ],
    );
    let mut plain = TcpStream::connect(("127.0.0.1", cp)).unwrap();
    let _ = plain.write_all(b"hello\n");
    let line = p.wait_line(&["verdict=refused"]);
    assert!(
        line.contains("reason=\"revoked:") && line.contains(&crl_url),
        "{line}"
    );
    drop(p);
    let _ = s_server.kill();
    let _ = s_server.wait();

    // The CRL server stopped, a fresh proxy: nobody gets in, the reason logged.
    drop(srv);
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend([
        "--crl-fetch".into(),
        "--crl-fetch-timeout".into(),
        "2s".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = proxy_bare(&env, "no-crl", pp, &args);
    assert!(echo_once(&cfg_b, pp, b"x\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(
        line.contains("partner-b.test")
            && line.contains("reason=\"no current CRL for the certificate")
            && line.contains("cannot connect"),
        "{line}"
    );
    assert!(!p.log().contains("verdict=accepted"), "{}", p.log());
}

#[test]
fn without_a_revocation_source_the_proxy_does_not_start_unless_told() {
    let env = env_with_devices();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .current_dir(env.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("proxy")
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--target",
                "127.0.0.1:1",
                "--cert",
                "b.chain.pem",
                "--trust",
                "ca/root.pem",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.starts_with("error: no revocation source")
            && [
                "--crl FILE",
                "--ca-dir DIR",
                "--crl-fetch",
                "--no-revocation-check"
            ]
            .iter()
            .all(|f| err.contains(f)),
        "{err}"
    );
    // The contradiction is bad usage too.
    let out = run(&["--no-revocation-check", "--crl", "ca/crl/device.crl"]);
    assert_eq!(code(&out), 2, "{}", crate::common::text(&out));
    let out = run(&["--no-revocation-check", "--ca-dir", "ca"]);
    assert_eq!(code(&out), 2, "{}", crate::common::text(&out));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("--no-revocation-check with a revocation source"));
    // --crl-fetch-timeout without --crl-fetch.
    let out = run(&["--crl-fetch-timeout", "1s", "--crl", "ca/crl/device.crl"]);
    assert_eq!(code(&out), 2, "{}", crate::common::text(&out));

    // Told: it starts, with a warning, and lets a revoked device through.
    let a = crate::proxy::serial_of(&env, "a.pem");
    env.ok(&["revoke", &a]);
    env.ok(&["crl"]);
    let pp = free_port();
    let listen = format!("127.0.0.1:{pp}");
    let p = proxy_bare(
        &env,
        "unchecked",
        pp,
        &[
            "server",
            "--listen",
            &listen,
            "--target",
            "127.0.0.1:1",
            "--cert",
            "b.chain.pem",
            "--trust",
            "ca/root.pem",
            "--no-revocation-check",
        ],
    );
    let warning = p.wait_line(&["warning:"]);
    assert!(warning.contains("revocation is not checked"), "{warning}");
    let _ = echo_once(&tls_client(&env, "a"), pp, b"x\n");
    p.wait_line(&["verdict=failed", "a.test"]);
    drop(p);

    // --ca-dir: the start line names the CA and its CRLs; a is refused.
    let pp = free_port();
    let listen = format!("127.0.0.1:{pp}");
    let p = proxy_bare(
        &env,
        "ca-dir",
        pp,
        &[
            "server",
            "--listen",
            &listen,
            "--target",
            "127.0.0.1:1",
            "--cert",
            "b.chain.pem",
            "--trust",
            "ca/root.pem",
            "--ca-dir",
            "ca",
        ],
    );
    let line = p.wait_line(&["revocation:"]);
    assert!(
        line.contains("from the CA ca: the CRLs it publishes in ca/crl"),
        "{line}"
    );
    assert!(echo_once(&tls_client(&env, "a"), pp, b"x\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(line.contains("revoked"), "{line}");
}

/// What the CRL address answers is hostile input too: a body over
/// `--crl-fetch-max-bytes`, or one that is no CRL, refuses the peer (fail
/// closed) with the reason, and the proxy goes on serving.
#[test]
fn a_crl_too_big_or_not_a_crl_refuses_the_peer_with_the_reason() {
    let env = env_with_devices();
    let crl_port = free_port();
    foreign_pki(&env, crl_port);
    let _srv = CrlServer::start(env.path("srv"), crl_port);
    std::fs::write(env.path("srv/foreign.crl"), vec![b'x'; 2000]).unwrap();
    let echo = echo_server();
    let cfg_b = tls_client(&env, "partner-b");
    for (n, (extra, want)) in [
        (
            &["--crl-fetch-max-bytes", "1000"][..],
            "the CRL is larger than 1000 bytes",
        ),
        (&[][..], "not a CRL"),
    ]
    .into_iter()
    .enumerate()
    {
        let pp = free_port();
        let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
        let mut args = server_args(&listen, &target);
        args.push("--crl-fetch".into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = proxy_bare(&env, &format!("hostile-{n}"), pp, &args);
        for _ in 0..2 {
            assert!(echo_once(&cfg_b, pp, b"x\n").is_err());
        }
        wait_refusals(&p, 2);
        for line in p.log().lines().filter(|l| l.contains("verdict=refused")) {
            assert!(
                line.contains("no current CRL for the certificate") && line.contains(want),
                "{line}"
            );
        }
        assert!(!p.log().contains("verdict=accepted"), "{}", p.log());
        assert_eq!(p.stop(), 0);
    }
}

/// Wait until `p` has logged `n` refusals.
fn wait_refusals(p: &Proc, n: usize) {
    let start = Instant::now();
    while p.log().matches("verdict=refused").count() < n {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}
