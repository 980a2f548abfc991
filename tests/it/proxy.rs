//! `mtlsca proxy` with real software around it: nginx behind `proxy server
//! --http`, curl, Python `ssl` and `openssl s_client` as initiators, a chain
//! curl → `proxy client` → `proxy server` → nginx, SIGTERM draining, and the
//! server certificate rotated under 1,000 connections. Every process is started
//! on loopback ports picked here and stopped by a drop guard. A missing tool
//! (nginx, curl, python3) skips its test with a message; `.ci/run` installs them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{code, free_port, text, Env};

/// Where `tool` is: on PATH, or in /usr/sbin (nginx, as root's PATH has it).
fn tool(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !p.is_empty() {
        return Some(p);
    }
    let sbin = format!("/usr/sbin/{name}");
    Path::new(&sbin).exists().then_some(sbin)
}

/// Whether `name` is installed; a skip says so, unless `.ci/run` requires it.
fn have(name: &str) -> bool {
    if tool(name).is_some() {
        return true;
    }
    assert!(
        std::env::var_os("MTLSCA_REQUIRE_PROXY_TOOLS").is_none(),
        "{name} is not installed, and MTLSCA_REQUIRE_PROXY_TOOLS is set"
    );
    eprintln!("SKIPPED: {name} is not installed (.ci/run installs it)");
    false
}

fn wait_port(port: u16, what: &str, log: Option<&Path>) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(20) {
            let l = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            panic!("{what} did not listen on {port}:\n{l}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process stopped when dropped: SIGTERM, then SIGKILL.
pub(crate) struct Proc {
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// The child's pid (0 once reaped: `term` never signals 0).
    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The exit code, once the child has exited (-1 for a signal); the
    /// child is reaped then, and never signalled again.
    pub(crate) fn exited(&mut self) -> Option<i32> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.code().unwrap_or(-1))
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log has a line containing all of `parts`; return it.
    pub(crate) fn wait_line(&self, parts: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let log = self.log();
            if let Some(l) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return l.to_string();
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("no log line with {parts:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn term(&self) {
        term(self.pid());
    }

    /// SIGTERM and wait for the exit code.
    pub(crate) fn stop(mut self) -> i32 {
        self.term();
        let mut child = self.child.take().expect("running");
        let start = Instant::now();
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return s.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// SIGTERM to one process; never to 0 (the whole process group).
fn term(pid: u32) {
    if pid > 0 {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            term(c.id());
            std::thread::sleep(Duration::from_millis(50));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
    let f = std::fs::File::create(&log).expect("log file");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn");
    Proc {
        child: Some(child),
        log,
    }
}

/// `mtlsca proxy ARGS`, waiting until it listens on `port`.
pub(crate) fn proxy(env: &Env, name: &str, port: u16, args: &[&str]) -> Proc {
    let mut c = env.cmd();
    c.arg("proxy")
        .args(args)
        .arg("--reload-interval")
        .arg("200ms");
    let p = spawn(c, env.path(&format!("{name}.log")));
    // Listening is logged once the port is bound (a probe would be a log line).
    p.wait_line(&["listening", &format!(":{port} ")]);
    p
}

/// nginx on `port` answering every request with the identity headers it got.
fn nginx(env: &Env, port: u16) -> Proc {
    nginx_with(env, port, "")
}

/// nginx as above; `tls` is extra `server` directives (ssl_*), `listen ... ssl` with it.
fn nginx_with(env: &Env, port: u16, tls: &str) -> Proc {
    let dir = env.path("nginx");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr info;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port}{ssl};
    {tls}
    location / {{
      default_type text/plain;
      return 200 "role=$http_x_mtls_peer_role\nconnection=$http_x_mtls_connection\nnames=$http_x_mtls_peer_names\nserial=$http_x_mtls_peer_serial\n";
    }}
  }}
}}
"#,
        d = dir.display(),
        ssl = if tls.is_empty() { "" } else { " ssl" },
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut c = Command::new(tool("nginx").expect("nginx"));
    c.args(["-e", "stderr", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    let p = spawn(c, env.path("nginx.log"));
    wait_port(port, "nginx", Some(&p.log));
    p
}

fn run(env: &Env, prog: &str, args: &[&str]) -> Output {
    Command::new(prog)
        .current_dir(env.dir.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"))
}

fn curl(env: &Env, args: &[&str]) -> Output {
    let mut a = vec!["-sS", "--max-time", "20"];
    a.extend_from_slice(args);
    run(env, "curl", &a)
}

/// A device `NAME.test` (`NAME.pem`), revoked, and the CRLs published.
fn issue_revoked(env: &Env, name: &str) {
    env.ok(&[
        "issue",
        "device",
        "--dns",
        &format!("{name}.test"),
        "--out",
        name,
    ]);
    let serial = serial_of(env, &format!("{name}.pem"));
    env.ok(&["revoke", &serial]);
    env.ok(&["crl"]);
}

pub(crate) fn serial_of(env: &Env, file: &str) -> String {
    env.openssl_ok(&["x509", "-in", file, "-noout", "-serial"])
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .expect("openssl prints the serial")
        .trim()
        .to_ascii_lowercase()
}

/// A CA with devices a (the initiator) and b (the proxy, b.test / 127.0.0.1).
pub(crate) fn env_with_devices() -> Env {
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "a.test", "--out", "a"]);
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "b.test",
        "--ip",
        "127.0.0.1",
        "--out",
        "b",
    ]);
    env
}

pub(crate) fn server_args<'a>(listen: &'a str, target: &'a str) -> Vec<&'a str> {
    vec![
        "server",
        "--listen",
        listen,
        "--target",
        target,
        "--cert",
        "b.chain.pem",
        "--trust",
        "ca/root.pem",
    ]
}

/// `proxy client` arguments: listen on `listen`, connect to `target` and
/// expect its certificate to name `name`, present `cert`, trust the CA's root.
pub(crate) fn client_args<'a>(
    listen: &'a str,
    target: &'a str,
    name: &'a str,
    cert: &'a str,
) -> Vec<&'a str> {
    vec![
        "client",
        "--listen",
        listen,
        "--target",
        target,
        "--name",
        name,
        "--cert",
        cert,
        "--trust",
        "ca/root.pem",
    ]
}

/// `dca.chain.pem` and `dca.key`: the device issuing CA's own certificate and
/// key, to present as an initiator (a CA certificate must be refused).
fn device_ca_as_client(env: &Env) {
    std::fs::copy(
        env.ca_dir().join("device-ca.pem"),
        env.path("dca.chain.pem"),
    )
    .unwrap();
    std::fs::copy(
        env.ca_dir().join("private/device-ca.key"),
        env.path("dca.key"),
    )
    .unwrap();
}

/// The curl options of a client presenting `who`'s chain to the proxy.
fn curl_as<'a>(who: &'a str, key: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["--cacert", "ca/root.pem", "--cert", who, "--key", key, url]
}

#[test]
fn http_server_mode_in_front_of_nginx_accepts_devices_and_refuses_the_rest_with_reasons() {
    if !have("nginx") || !have("curl") {
        return;
    }
    let env = env_with_devices();
    env.issue_alice();
    env.ok(&["issue", "device", "--dns", "c.test", "--out", "c"]);
    let c_serial = serial_of(&env, "c.pem");
    env.ok(&["revoke", &c_serial, "--reason", "keyCompromise"]);
    env.ok(&["crl"]);
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("noeku", None);
    let other = Env::new();
    other.ok(&["init", "--name", "Other"]);
    other.ok(&["issue", "device", "--dns", "a.test", "--out", "x"]);
    let foreign = other.path("x.chain.pem");
    let foreign_key = other.path("x.key");

    let (np, pp) = (free_port(), free_port());
    let _nginx = nginx(&env, np);
    let listen = format!("127.0.0.1:{pp}");
    let target = format!("127.0.0.1:{np}");
    let mut args = server_args(&listen, &target);
    args.extend(["--http", "--ca-crls"]);
    let p = proxy(&env, "server", pp, &args);
    let url = format!("https://127.0.0.1:{pp}/");

    // A device: 200 and its identity; spoofed identity headers are replaced.
    let mut a = curl_as("a.chain.pem", "a.key", &url);
    a.extend([
        "-H",
        "X-MTLS-Peer-Role: entity",
        "-H",
        "x-mtls-connection: end-to-end",
        "-H",
        "X-MTLS-Peer-Names: DNS:root.test",
        "-H",
        "X-MTLS-Peer-Serial: 01",
    ]);
    let out = curl(&env, &a);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let a_serial = serial_of(&env, "a.pem");
    assert_eq!(
        body,
        format!("role=device\nconnection=server-to-server\nnames=DNS:a.test\nserial={a_serial}\n"),
        "{}",
        p.log()
    );
    let line = p.wait_line(&["verdict=accepted", &a_serial]);
    assert!(
        line.contains("role=device connection=server-to-server"),
        "{line}"
    );

    // Refused, each with its reason in the log.
    let foreign_s = foreign.to_string_lossy().into_owned();
    let foreign_k = foreign_key.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            curl_as("alice.chain.pem", "alice.key", &url),
            "peer certificate is entity; this end accepts device certificates only",
        ),
        (curl_as("c.chain.pem", "c.key", &url), "revoked"),
        (
            curl_as("dual.chain.pem", "dual.key", &url),
            "peer certificate is ambiguous",
        ),
        (
            curl_as("noeku.chain.pem", "noeku.key", &url),
            "peer certificate is no-eku",
        ),
        (
            vec!["--cacert", "ca/root.pem", &url],
            "peer sent no certificates",
        ),
        (
            curl_as(&foreign_s, &foreign_k, &url),
            "does not chain to a trusted root",
        ),
    ];
    for (n, (args, reason)) in cases.iter().enumerate() {
        let out = curl(&env, args);
        assert!(!out.status.success(), "case {n} was let in: {}", text(&out));
        assert!(out.stdout.is_empty(), "case {n}: {}", text(&out));
        let refused = p
            .log()
            .lines()
            .filter(|l| l.contains("verdict=refused"))
            .count();
        let start = Instant::now();
        while p
            .log()
            .lines()
            .filter(|l| l.contains("verdict=refused"))
            .count()
            < n + 1
        {
            assert!(start.elapsed() < Duration::from_secs(10), "{}", p.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = refused;
        let line = p
            .log()
            .lines()
            .filter(|l| l.contains("verdict=refused"))
            .nth(n)
            .unwrap_or_default()
            .to_string();
        assert!(line.contains(reason), "case {n}: want {reason:?} in {line}");
    }
    assert_eq!(
        p.log().matches("verdict=accepted").count(),
        1,
        "{}",
        p.log()
    );

    // A request head over the limit is answered 431 and logged.
    let big = format!("X-Big: {}", "a".repeat(20_000));
    let mut a = curl_as("a.chain.pem", "a.key", &url);
    a.extend(["-H", &big, "-o", "/dev/null", "-w", "%{http_code}"]);
    let out = curl(&env, &a);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "431",
        "{}",
        text(&out)
    );
    p.wait_line(&["request refused (431)"]);
    assert_eq!(p.stop(), 0);
}

#[test]
fn chained_curl_client_proxy_server_proxy_nginx_and_other_initiators() {
    if !have("nginx") || !have("curl") || !have("python3") {
        return;
    }
    let env = env_with_devices();
    let (np, sp, cp) = (free_port(), free_port(), free_port());
    let _nginx = nginx(&env, np);
    let (sl, st) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{np}"));
    let mut args = server_args(&sl, &st);
    args.push("--http");
    let server = proxy(&env, "server", sp, &args);
    let (cl, ct) = (format!("127.0.0.1:{cp}"), format!("127.0.0.1:{sp}"));
    let client = proxy(
        &env,
        "client",
        cp,
        &[
            client_args(&cl, &ct, "b.test", "a.chain.pem"),
            vec!["--expect", "server-to-server", "--log-format", "json"],
        ]
        .concat(),
    );
    let out = curl(&env, &[&format!("http://127.0.0.1:{cp}/")]);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        body.starts_with("role=device\nconnection=server-to-server\nnames=DNS:a.test\n"),
        "{body}"
    );
    let line = client.wait_line(&["\"verdict\":\"accepted\""]);
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["connection"], "server-to-server", "{v}");
    assert_eq!(v["role"], "device", "{v}");
    assert_eq!(v["names"], "DNS:b.test, IP:127.0.0.1", "{v}");

    // A client proxy that wants another name refuses the responder, says why.
    let (xp, xl) = {
        let p = free_port();
        (p, format!("127.0.0.1:{p}"))
    };
    let wrong = proxy(
        &env,
        "wrong",
        xp,
        &client_args(&xl, &ct, "c.test", "a.chain.pem"),
    );
    let out = curl(&env, &[&format!("http://127.0.0.1:{xp}/")]);
    assert!(
        !out.status.success() || out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    let line = wrong.wait_line(&["verdict=refused"]);
    assert!(line.contains("not valid for DNS:c.test"), "{line}");

    // Python's ssl with a device certificate: what its own server side cannot accept.
    let py = format!(
        r#"
import ssl, socket
ctx = ssl.create_default_context(cafile="ca/root.pem")
ctx.load_cert_chain("a.chain.pem", "a.key")
with socket.create_connection(("127.0.0.1", {sp})) as s:
    with ctx.wrap_socket(s, server_hostname="b.test") as t:
        t.sendall(b"GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = t.recv(65536)
            if not d:
                break
            data += d
print(data.decode())
"#
    );
    let out = run(&env, "python3", &["-c", &py]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        s.contains("200 OK") && s.contains("role=device\nconnection=server-to-server"),
        "{s}"
    );

    // openssl s_client with the device chain.
    let mut child = Command::new("openssl")
        .current_dir(env.dir.path())
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &sl,
            "-servername",
            "b.test",
            "-CAfile",
            "ca/root.pem",
            "-cert",
            "a.pem",
            "-cert_chain",
            "a.chain.pem",
            "-key",
            "a.key",
            "-verify_return_error",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("200 OK") && s.contains("role=device"),
        "{}",
        text(&out)
    );
    assert_eq!(
        server.log().matches("verdict=accepted").count(),
        3,
        "{}",
        server.log()
    );
    assert_eq!(client.stop(), 0);
}

/// A TCP echo server on a thread; returns its port.
pub(crate) fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
            });
        }
    });
    port
}

/// A rustls client applying the draft to the proxy, as `who` (a device).
pub(crate) fn tls_client(env: &Env, who: &str) -> Arc<rustls::ClientConfig> {
    use mtlsca::verify::load;
    use mtlsca::verify::rustls_verifiers::{DraftPolicy, DraftServerCertVerifier};
    let roots = load::certs(&env.ca_dir().join("root.pem"), "root").unwrap();
    let chain = load::certs(&env.path(&format!("{who}.chain.pem")), "chain").unwrap();
    let key = load::private_key(&env.path(&format!("{who}.key")), "key").unwrap();
    let v = Arc::new(DraftServerCertVerifier::new(DraftPolicy::new(roots)));
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(v)
    .with_client_auth_cert(chain, key)
    .unwrap();
    Arc::new(cfg)
}

/// One TLS connection through the proxy to the echo server: the responder's
/// serial (lowercase hex) after a round trip of `msg`.
pub(crate) fn echo_once(
    cfg: &Arc<rustls::ClientConfig>,
    port: u16,
    msg: &[u8],
) -> Result<String, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    echo_on(cfg, tcp, msg)
}

/// As [`echo_once`], on a connection the caller made.
pub(crate) fn echo_on(
    cfg: &Arc<rustls::ClientConfig>,
    tcp: TcpStream,
    msg: &[u8],
) -> Result<String, String> {
    let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(msg).map_err(|e| e.to_string())?;
    let mut back = vec![0u8; msg.len()];
    tls.read_exact(&mut back).map_err(|e| e.to_string())?;
    if back != msg {
        return Err("echo differs".into());
    }
    let der = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no cert")?;
    let cert = mtlsca::inspect::parse_der(der.as_ref())?;
    Ok(cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn replace_atomically(env: &Env, from: &str, to: &str) {
    let tmp = env.path(&format!("{to}.new"));
    std::fs::copy(env.path(from), &tmp).unwrap();
    std::fs::rename(&tmp, env.path(to)).unwrap();
}

#[test]
fn the_server_certificate_rotates_under_1000_connections_without_a_failure() {
    let env = env_with_devices();
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "b.test",
        "--ip",
        "127.0.0.1",
        "--out",
        "b2",
    ]);
    let old = serial_of(&env, "b.pem");
    let new = serial_of(&env, "b2.pem");
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let p = proxy(&env, "server", pp, &server_args(&listen, &target));
    let cfg = tls_client(&env, "a");
    let total = 1000;
    let threads = 8;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Set once the proxy logs the reload; until then, connections after the
    // first third are paced, so that a fast machine cannot finish them all
    // before the new certificate is picked up.
    let reloaded = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (cfg, done, reloaded) = (cfg.clone(), done.clone(), reloaded.clone());
            std::thread::spawn(move || {
                let mut serials = Vec::new();
                for i in 0..total / threads {
                    if i > total / threads / 3
                        && !reloaded.load(std::sync::atomic::Ordering::Relaxed)
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    let msg = format!("connection {t}/{i}\n");
                    match echo_once(&cfg, pp, msg.as_bytes()) {
                        Ok(s) => serials.push(s),
                        Err(e) => return Err(format!("connection {t}/{i} failed: {e}")),
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(serials)
            })
        })
        .collect();
    // Rotate once a third of the connections are through, as renewal does.
    while done.load(std::sync::atomic::Ordering::Relaxed) < total / 3 {
        std::thread::sleep(Duration::from_millis(5));
    }
    replace_atomically(&env, "b2.key", "b.key");
    replace_atomically(&env, "b2.chain.pem", "b.chain.pem");
    p.wait_line(&["reloaded"]);
    reloaded.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut serials = Vec::new();
    for w in workers {
        serials.extend(
            w.join()
                .expect("worker")
                .unwrap_or_else(|e| panic!("{e}\n{}", p.log())),
        );
    }
    assert_eq!(serials.len(), total);
    assert!(serials.contains(&old), "no connection before the rotation");
    assert_eq!(echo_once(&cfg, pp, b"after\n").unwrap(), new, "{}", p.log());
    assert_eq!(p.log().matches("verdict=accepted").count(), total + 1);
    // Once a new certificate is served, no connection gets the old one again.
    let first_new = serials.iter().position(|s| *s == new);
    assert!(
        first_new.is_some(),
        "the rotation was not seen under load: {}",
        p.log()
    );
    assert_eq!(p.stop(), 0);
}

#[test]
fn sigterm_drains_connections_in_flight_and_reloads_crls() {
    let env = env_with_devices();
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    // No --ca-crls: the --ca-dir the harness gives is enough (issue 13).
    args.extend(["--log-format", "json"]);
    env.ok(&["crl"]);
    let p = proxy(&env, "server", pp, &args);
    let cfg = tls_client(&env, "a");
    assert!(echo_once(&cfg, pp, b"one\n").is_ok());

    // a is revoked and the CRL published: the proxy picks it up without a restart.
    let a = serial_of(&env, "a.pem");
    env.ok(&["revoke", &a]);
    env.ok(&["crl"]);
    p.wait_line(&["reloaded"]);
    let e = echo_once(&cfg, pp, b"two\n").unwrap_err();
    assert!(!e.is_empty());
    let line = p.wait_line(&["\"verdict\":\"refused\""]);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(
        v["reason"].as_str().unwrap_or_default().contains("revoked"),
        "{v}"
    );

    // A connection open across SIGTERM: the proxy stops accepting, lets it finish.
    env.ok(&["issue", "device", "--dns", "d.test", "--out", "d"]);
    let cfg = tls_client(&env, "d");
    let (connected_tx, connected_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
        let conn = rustls::ClientConnection::new(cfg, name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", pp)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
        r.get_mut().write_all(b"before\n").unwrap();
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        connected_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        r.get_mut().write_all(b"after sigterm\n").unwrap();
        let mut second = String::new();
        r.read_line(&mut second).unwrap();
        (first, second)
    });
    connected_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the held connection is up");
    p.term();
    p.wait_line(&["draining 1 connection"]);
    assert!(
        TcpStream::connect(("127.0.0.1", pp)).is_err(),
        "still accepting after SIGTERM"
    );
    go_tx.send(()).unwrap();
    let (first, second) = held.join().unwrap();
    assert_eq!(
        (first.as_str(), second.as_str()),
        ("before\n", "after sigterm\n")
    );
    p.wait_line(&["\"drained\""]);
    assert_eq!(p.stop(), 0);
}

/// `mtlsca proxy server ... EXTRA` to `target` run with only PATH and `envs`
/// from the environment, no `--ca-dir`.
fn proxy_without_ca_dir(
    env: &Env,
    name: &str,
    port: u16,
    target: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let mut c = Command::new(crate::common::BIN);
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(envs.iter().copied())
        .arg("proxy")
        .args(server_args(&listen, target))
        .args(extra);
    let p = spawn(c, env.path(&format!("{name}.log")));
    p.wait_line(&["listening", &format!(":{port} ")]);
    p
}

#[test]
fn an_explicit_ca_dir_or_mtlsca_dir_is_enough_for_the_cas_crls() {
    let env = env_with_devices();
    env.ok(&["issue", "device", "--dns", "d.test", "--out", "d"]);
    let a = serial_of(&env, "a.pem");
    env.ok(&["revoke", &a]);
    env.ok(&["crl"]);
    let (cfg_a, cfg_d) = (tls_client(&env, "a"), tls_client(&env, "d"));

    // $MTLSCA_DIR names the CA: its crl/ is read, the revoked a is refused.
    let pp = free_port();
    let p = proxy_without_ca_dir(
        &env,
        "by-env",
        pp,
        "127.0.0.1:1",
        &[],
        &[("MTLSCA_DIR", "ca")],
    );
    assert!(echo_once(&cfg_a, pp, b"x\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(line.contains("revoked"), "{line}");
    // d is not revoked: past the TLS layer (the target is closed, so "failed").
    let _ = echo_once(&cfg_d, pp, b"x\n");
    p.wait_line(&["verdict=failed", "d.test"]);
    drop(p);

    // --ca-dir given on the command line, after the subcommand: the same.
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), "127.0.0.1:1".to_string());
    let mut args = server_args(&listen, &target);
    args.extend(["--ca-dir", "ca"]);
    let mut c = Command::new(crate::common::BIN);
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("proxy")
        .args(&args);
    let p = spawn(c, env.path("by-flag.log"));
    p.wait_line(&["listening", &format!(":{pp} ")]);
    assert!(echo_once(&cfg_a, pp, b"x\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(line.contains("revoked"), "{line}");
    drop(p);

    // A CA directory without published CRLs: a startup error, not a proxy
    // that silently checks nothing.
    let out = Command::new(crate::common::BIN)
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MTLSCA_DIR", "elsewhere")
        .arg("proxy")
        .args(server_args("127.0.0.1:0", "127.0.0.1:1"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: CRL directory elsewhere/crl") && err.contains("--ca-dir"),
        "{err}"
    );

    // Neither: the default ./mtlsca is not read (there is none here), and a
    // proxy without a revocation source does not start (issue 24);
    // tests/it/proxy_revocation.rs has the rest.
    let out = Command::new(crate::common::BIN)
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("proxy")
        .args(server_args("127.0.0.1:0", "127.0.0.1:1"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: no revocation source"), "{err}");
}

/// Server-to-client and end-to-end: the responder holds an entity (clientAuth)
/// certificate. A stock initiator (curl) refuses it for want of serverAuth;
/// `proxy client --expect server-to-client` (a device) or `--expect end-to-end`
/// (a person) is the initiator's side, as docs/proxy.md shows.
#[test]
fn server_to_client_and_end_to_end_need_the_initiators_side_too() {
    if !have("nginx") || !have("curl") {
        return;
    }
    let env = env_with_devices();
    for (cn, email, out) in [("Alice", "alice@test", "alice"), ("Bob", "bob@test", "bob")] {
        env.ok(&[
            "issue", "person", "--cn", cn, "--email", email, "--out", out,
        ]);
    }
    let (np, sp) = (free_port(), free_port());
    let _ng = nginx(&env, np);
    let (sl, st) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{np}"));
    let server = proxy(
        &env,
        "server",
        sp,
        &[
            "server",
            "--listen",
            &sl,
            "--target",
            &st,
            "--cert",
            "alice.chain.pem",
            "--trust",
            "ca/root.pem",
            "--accept",
            "device,entity",
            "--http",
        ],
    );
    // curl as a device straight to the entity responder: refused by curl itself.
    let out = curl(
        &env,
        &curl_as("a.chain.pem", "a.key", &format!("https://127.0.0.1:{sp}/")),
    );
    assert!(
        !out.status.success() && text(&out).contains("unsuitable certificate purpose"),
        "{}",
        text(&out)
    );
    for (who, kind, role) in [
        ("a", "server-to-client", "device"),
        ("bob", "end-to-end", "entity"),
    ] {
        let cp = free_port();
        let cl = format!("127.0.0.1:{cp}");
        let chain = format!("{who}.chain.pem");
        let client = proxy(
            &env,
            &format!("client-{who}"),
            cp,
            &[
                client_args(&cl, &sl, "alice@test", &chain),
                vec!["--expect", kind],
            ]
            .concat(),
        );
        let out = curl(&env, &[&format!("http://127.0.0.1:{cp}/")]);
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            body.starts_with(&format!("role={role}\nconnection={kind}\n")),
            "{who}: {}\n{}\n{}",
            text(&out),
            client.log(),
            server.log()
        );
        let line = client.wait_line(&["verdict=accepted"]);
        assert!(
            line.contains(&format!("connection={kind}")) && line.contains("role=entity"),
            "{line}"
        );
        drop(client);
    }
    // A device's proxy client expecting server-to-server refuses the entity responder.
    let cp = free_port();
    let cl = format!("127.0.0.1:{cp}");
    let client = proxy(
        &env,
        "client-s2s",
        cp,
        &[
            client_args(&cl, &sl, "alice@test", "a.chain.pem"),
            vec!["--expect", "server-to-server"],
        ]
        .concat(),
    );
    let out = curl(&env, &[&format!("http://127.0.0.1:{cp}/")]);
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let line = client.wait_line(&["verdict=refused"]);
    assert!(line.contains("entity"), "{line}");
}

/// stunnel (OpenSSL underneath) as the table of docs/relying-parties.md says: a device initiator is
/// refused ("unsuitable certificate purpose"), a person is accepted.
#[test]
fn stunnel_refuses_a_device_initiator_and_accepts_a_person() {
    if !have("stunnel4") || !have("curl") {
        return;
    }
    let env = env_with_devices();
    env.issue_alice();
    let (sp, echo) = (free_port(), echo_server());
    let conf = format!(
        "foreground = yes\npid =\n[t]\naccept = 127.0.0.1:{sp}\nconnect = 127.0.0.1:{echo}\n\
         cert = {d}/b.chain.pem\nkey = {d}/b.key\nCAfile = {d}/ca/root.pem\n\
         verifyChain = yes\nrequireCert = yes\n",
        d = env.dir.path().display()
    );
    std::fs::write(env.path("stunnel.conf"), conf).unwrap();
    let mut c = Command::new(tool("stunnel4").expect("stunnel4"));
    c.arg(env.path("stunnel.conf"));
    let st = spawn(c, env.path("stunnel.log"));
    wait_port(sp, "stunnel", Some(&st.log));
    let url = format!("https://127.0.0.1:{sp}/");
    let out = curl(&env, &curl_as("a.chain.pem", "a.key", &url));
    assert!(!out.status.success(), "{}", text(&out));
    st.wait_line(&["Rejected by CERT at depth=0: CN=a.test"]);
    assert!(
        st.log().contains("unsuitable certificate purpose"),
        "{}",
        st.log()
    );
    let _ = curl(&env, &curl_as("alice.chain.pem", "alice.key", &url));
    st.wait_line(&["Certificate accepted at depth=0: CN=Alice"]);
}

/// `--crl FILE` alone (no CA directory): read at startup and reloaded when
/// `mtlsca crl` replaces it; a CA certificate cannot initiate.
#[test]
fn crl_files_are_reloaded_and_ca_certificates_cannot_initiate() {
    let env = env_with_devices();
    env.ok(&["crl"]);
    let echo = echo_server();
    let pp = free_port();
    let target = format!("127.0.0.1:{echo}");
    let extra = ["--crl", "ca/crl/device.crl", "--reload-interval", "200ms"];
    let p = proxy_without_ca_dir(&env, "crl-file", pp, &target, &extra, &[]);
    let cfg = tls_client(&env, "a");
    assert!(echo_once(&cfg, pp, b"one\n").is_ok(), "{}", p.log());
    // No session resumption: the client offers its cached session, and the
    // proxy verifies it in full again.
    let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"again\n").unwrap();
    let mut back = [0u8; 6];
    tls.read_exact(&mut back).unwrap();
    assert_eq!(
        tls.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full),
        "{}",
        p.log()
    );
    drop(tls);

    let a = serial_of(&env, "a.pem");
    env.ok(&["revoke", &a]);
    env.ok(&["crl"]);
    p.wait_line(&["reload:", "reloaded"]);
    assert!(echo_once(&cfg, pp, b"two\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(line.contains("revoked"), "{line}");

    // The device issuing CA's own certificate and key, presented as a client.
    device_ca_as_client(&env);
    assert!(echo_once(&tls_client(&env, "dca"), pp, b"x\n").is_err());
    let start = Instant::now();
    while p.log().matches("verdict=refused").count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = p.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("verdict=refused"))
        .collect();
    assert!(
        refused[1].contains("peer certificate is ca"),
        "{}",
        refused[1]
    );
    assert_eq!(log.matches("verdict=accepted").count(), 2, "{log}");
    assert_eq!(p.stop(), 0);
}

#[test]
fn bad_startup_files_are_clear_errors() {
    let env = env_with_devices();
    std::fs::write(env.path("junk.pem"), "not a certificate").unwrap();
    let pp = free_port().to_string();
    let listen = format!("127.0.0.1:{pp}");
    let base = [
        "proxy",
        "server",
        "--listen",
        &listen,
        "--target",
        "127.0.0.1:1",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a
    }
    let e = env.fails(
        &with(
            &base,
            &[
                "--cert",
                "junk.pem",
                "--key",
                "b.key",
                "--trust",
                "ca/root.pem",
            ],
        ),
        2,
    );
    assert!(e.starts_with("error: ") && e.contains("junk.pem"), "{e}");
    let e = env.fails(
        &with(
            &base,
            &[
                "--cert",
                "b.chain.pem",
                "--key",
                "a.key",
                "--trust",
                "ca/root.pem",
            ],
        ),
        2,
    );
    assert!(e.contains("does not belong to the certificate"), "{e}");
    let e = env.fails(
        &with(&base, &["--cert", "b.chain.pem", "--trust", "junk.pem"]),
        2,
    );
    assert!(e.contains("junk.pem"), "{e}");
    let e = env.fails(
        &with(
            &base,
            &[
                "--cert",
                "ca/device-ca.pem",
                "--key",
                "ca/private/device-ca.key",
                "--trust",
                "ca/root.pem",
            ],
        ),
        2,
    );
    assert!(e.contains("needs a device or entity certificate"), "{e}");
    let e = env.fails(&with(&base, &["--cert", "b.chain.pem"]), 2);
    assert!(e.contains("--trust"), "{e}");
    let out = env.run(&[
        "proxy",
        "client",
        "--listen",
        &listen,
        "--target",
        "nohost",
        "--cert",
        "a.chain.pem",
        "--trust",
        "ca/root.pem",
    ]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let e = env.fails(
        &[
            "proxy",
            "client",
            "--listen",
            &listen,
            "--target",
            "b.test:1",
            "--cert",
            "a.chain.pem",
            "--trust",
            "ca/root.pem",
            "--expect",
            "client-to-server",
        ],
        2,
    );
    assert!(
        e.contains("is a device certificate; the initiator of a client-to-server connection needs an entity one"),
        "{e}"
    );
}

#[test]
fn accepted_roles_and_allowed_names_decide_who_gets_through() {
    let env = env_with_devices();
    env.issue_alice();
    env.ok(&["issue", "device", "--dns", "d.test", "--out", "d"]);
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend([
        "--accept",
        "device,entity",
        "--allow-name",
        "a.test",
        "--allow-name",
        "alice@test",
    ]);
    let p = proxy(&env, "server", pp, &args);
    assert!(
        echo_once(&tls_client(&env, "a"), pp, b"a\n").is_ok(),
        "{}",
        p.log()
    );
    p.wait_line(&[
        "verdict=accepted",
        "role=device connection=server-to-server",
        "DNS:a.test",
    ]);
    assert!(
        echo_once(&tls_client(&env, "alice"), pp, b"alice\n").is_ok(),
        "{}",
        p.log()
    );
    p.wait_line(&[
        "verdict=accepted",
        "role=entity connection=client-to-server",
        "email:alice@test",
    ]);
    assert!(echo_once(&tls_client(&env, "d"), pp, b"d\n").is_err());
    let line = p.wait_line(&["verdict=refused"]);
    assert!(
        line.contains("not valid for DNS:a.test or email:alice@test"),
        "{line}"
    );
    assert_eq!(p.stop(), 0);
}

/// Junk before and after the handshake, in TCP and HTTP mode: refused or
/// closed, logged, never a panic, and the proxy keeps serving.
#[test]
fn hostile_input_is_refused_without_a_panic() {
    let env = env_with_devices();
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend([
        "--http",
        "--max-header-bytes",
        "1024",
        "--handshake-timeout",
        "2s",
    ]);
    let p = proxy(&env, "server", pp, &args);
    let cfg = tls_client(&env, "a");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..60 {
        let len = (next() % 3000) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| (next() & 0xff) as u8).collect();
        // Some of it shaped like HTTP, to get past the first checks.
        if i % 3 == 0 {
            let mut h = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n".to_vec();
            h.extend_from_slice(&junk);
            h.extend_from_slice(b"\r\n\r\nzz\r\n");
            junk = h;
        }
        if i % 2 == 0 {
            // Before any handshake: junk as the ClientHello.
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", pp)) {
                let _ = s.write_all(&junk);
            }
            continue;
        }
        let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
        let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", pp)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let _ = tls.write_all(&junk);
        tls.conn.send_close_notify();
        let _ = tls.flush();
        let mut sink = Vec::new();
        let _ = tls.read_to_end(&mut sink);
    }
    // Still serving, and nothing panicked.
    // (The echo target sends the rewritten request back.)
    let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: b\r\nX-MTLS-Peer-Role: entity\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(tls);
    let mut back = String::new();
    while !back.ends_with("\r\n\r\n") {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            break;
        }
        back.push_str(&l);
    }
    assert!(
        back.contains("X-MTLS-Peer-Role: device\r\n"),
        "{back}\n{}",
        p.log()
    );
    assert!(!back.contains("entity"), "{back}");
    drop(r);
    std::thread::sleep(Duration::from_millis(300));
    let log = p.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("request refused (4"), "{log}");
    assert_eq!(p.stop(), 0);
}

#[test]
fn connection_handshake_and_idle_limits_are_enforced_and_logged() {
    let env = env_with_devices();
    let echo = echo_server();
    let pp = free_port();
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{echo}"));
    let mut args = server_args(&listen, &target);
    args.extend([
        "--max-connections",
        "1",
        "--handshake-timeout",
        "1s",
        "--idle-timeout",
        "1s",
    ]);
    let p = proxy(&env, "server", pp, &args);
    // A silent TCP connection holds the only slot; the next one is refused.
    let silent = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let second = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    // (With a total of 1, a client's share is 1 too: that is the limit met.)
    p.wait_line(&[
        "verdict=refused",
        "too many connections from 127.0.0.1 (limit 1 per client)",
    ]);
    drop(second);
    // The silent one is dropped when the handshake time is up.
    p.wait_line(&["verdict=refused", "TLS handshake not done within 1s"]);
    drop(silent);
    std::thread::sleep(Duration::from_millis(100));
    // A TLS link with no traffic either way is closed after the idle timeout.
    let cfg = tls_client(&env, "a");
    let name = rustls_pki_types::ServerName::try_from("b.test").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", pp)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"hi\n").unwrap();
    let mut buf = [0u8; 3];
    tls.read_exact(&mut buf).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    // The slot is free again: a new connection works.
    assert!(echo_once(&cfg, pp, b"again\n").is_ok(), "{}", p.log());
    assert_eq!(p.stop(), 0);
}

/// What docs/relying-parties.md says of stock relying parties, shown: nginx and Python's
/// `ssl` refuse a device initiator ("unsuitable certificate purpose") and have
/// no setting for it; OpenSSL's `-purpose sslserver` takes the device but also
/// lets dual-EKU and no-EKU certificates in. The proxy is the answer for them.
#[test]
fn stock_relying_parties_refuse_devices_or_let_ambiguous_ones_in() {
    if !have("nginx") || !have("curl") || !have("python3") {
        return;
    }
    let env = env_with_devices();
    let np = free_port();
    let tls = "ssl_certificate b.chain.pem; ssl_certificate_key b.key; \
               ssl_client_certificate ca/root.pem; ssl_verify_client on; ssl_verify_depth 3;"
        .replace(
            "b.chain.pem",
            &env.path("b.chain.pem").display().to_string(),
        )
        .replace("b.key", &env.path("b.key").display().to_string())
        .replace(
            "ca/root.pem",
            &env.ca_dir().join("root.pem").display().to_string(),
        );
    let ng = nginx_with(&env, np, &tls);
    let url = format!("https://127.0.0.1:{np}/");
    let mut a = curl_as("a.chain.pem", "a.key", &url);
    a.extend(["-o", "/dev/null", "-w", "%{http_code}"]);
    let out = curl(&env, &a);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "400",
        "{}",
        text(&out)
    );
    let start = Instant::now();
    while !ng.log().contains("unsuitable certificate purpose") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", ng.log());
        std::thread::sleep(Duration::from_millis(20));
    }

    // Python's ssl, CERT_REQUIRED: the device is refused in the handshake.
    let pp = free_port();
    let py = format!(
        r#"
import ssl, socket, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("b.chain.pem", "b.key")
ctx.load_verify_locations("ca/root.pem")
ctx.verify_mode = ssl.CERT_REQUIRED
with socket.create_server(("127.0.0.1", {pp})) as srv:
    print("listening", flush=True)
    conn, _ = srv.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as t:
            t.recv(1)
            print("ACCEPTED", flush=True)
    except ssl.SSLError as e:
        print("REFUSED", e, flush=True)
"#
    );
    let mut c = Command::new("python3");
    c.current_dir(env.dir.path()).args(["-u", "-c", &py]);
    let f = std::fs::File::create(env.path("py.out")).unwrap();
    let mut child = c
        .stdout(f)
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // It accepts one connection: wait for its word, not with a probe.
    let start = Instant::now();
    while !std::fs::read_to_string(env.path("py.out"))
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "python did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = curl(
        &env,
        &curl_as("a.chain.pem", "a.key", &format!("https://127.0.0.1:{pp}/")),
    );
    let start = Instant::now();
    let said = loop {
        let s = std::fs::read_to_string(env.path("py.out")).unwrap_or_default();
        if s.contains("REFUSED") || s.contains("ACCEPTED") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        said.contains("REFUSED") && said.contains("unsuitable certificate purpose"),
        "{said}"
    );

    // OpenSSL's classic purpose check lets ambiguous and no-EKU initiators through.
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("noeku", None);
    for leaf in ["a.pem", "dual.pem", "noeku.pem"] {
        env.openssl_ok(&[
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/device-ca.pem",
            "-purpose",
            "sslserver",
            leaf,
        ]);
    }
}

/// The C block of the OpenSSL recipe in docs/relying-parties.md, as it stands there.
fn doc_c_recipe() -> String {
    doc_block("c", "#include <openssl/ssl.h>")
}

/// A one-connection-at-a-time server around the docs' callback: prints
/// ACCEPTED or REFUSED with OpenSSL's reason for each of `n` connections.
const C_SERVER_MAIN: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
int main(int argc, char **argv) {
    if (argc != 6) return 2;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1
        || SSL_CTX_load_verify_locations(ctx, argv[4], NULL) != 1)
        return 3;
    require_device_initiators(ctx, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) return 4;
    printf("listening\n");
    fflush(stdout);
    for (int i = 0; i < atoi(argv[5]); i++) {
        int c = accept(s, NULL, NULL);
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) == 1) {
            const char *r = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
            SSL_write(ssl, r, strlen(r));
            SSL_shutdown(ssl);
            printf("ACCEPTED\n");
        } else {
            printf("REFUSED %s\n", X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
        }
        fflush(stdout);
        SSL_free(ssl);
        close(c);
    }
    return 0;
}
"#;

#[test]
fn openssl_verify_callback_recipe_accepts_devices_only() {
    if !have("gcc") || !have("curl") {
        return;
    }
    if !Path::new("/usr/include/openssl/ssl.h").exists() {
        assert!(
            std::env::var_os("MTLSCA_REQUIRE_PROXY_TOOLS").is_none(),
            "OpenSSL headers (libssl-dev) are missing"
        );
        eprintln!("SKIPPED: OpenSSL headers (libssl-dev) are not installed");
        return;
    }
    let env = env_with_devices();
    env.issue_alice();
    issue_revoked(&env, "c");
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("noeku", None);
    let bundle = std::fs::read_to_string(env.ca_dir().join("root.pem")).unwrap()
        + &std::fs::read_to_string(env.ca_dir().join("crl/device.crl")).unwrap();
    std::fs::write(env.path("root-and-crls.pem"), bundle).unwrap();
    std::fs::write(env.path("srv.c"), doc_c_recipe() + C_SERVER_MAIN).unwrap();
    let out = run(
        &env,
        "gcc",
        &[
            "-Wall", "-Werror", "-o", "srv", "srv.c", "-lssl", "-lcrypto",
        ],
    );
    assert!(
        out.status.success(),
        "the C of docs/relying-parties.md does not compile: {}",
        text(&out)
    );

    let cases = [
        ("a", "ACCEPTED"),
        ("alice", "REFUSED unsuitable certificate purpose"),
        ("dual", "REFUSED unsuitable certificate purpose"),
        ("noeku", "REFUSED unsuitable certificate purpose"),
        ("c", "REFUSED certificate revoked"),
    ];
    let port = free_port();
    let mut c = Command::new(env.path("srv"));
    c.current_dir(env.dir.path()).args([
        &port.to_string(),
        "b.chain.pem",
        "b.key",
        "root-and-crls.pem",
        &cases.len().to_string(),
    ]);
    let f = std::fs::File::create(env.path("srv.out")).unwrap();
    let mut child = c.stdout(f).stderr(Stdio::null()).spawn().unwrap();
    let out_text = || std::fs::read_to_string(env.path("srv.out")).unwrap_or_default();
    let start = Instant::now();
    while !out_text().contains("listening") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the C server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://127.0.0.1:{port}/");
    for (n, (who, want)) in cases.iter().enumerate() {
        let (chain, key) = (format!("{who}.chain.pem"), format!("{who}.key"));
        let _ = curl(&env, &curl_as(&chain, &key, &url));
        let start = Instant::now();
        while out_text().lines().count() < n + 2 {
            assert!(start.elapsed() < Duration::from_secs(10), "{}", out_text());
            std::thread::sleep(Duration::from_millis(20));
        }
        let said = out_text()
            .lines()
            .nth(n + 1)
            .unwrap_or_default()
            .to_string();
        assert_eq!(said, *want, "{who}");
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The Go recipe of docs/relying-parties.md, as it stands there.
fn doc_go_recipe() -> String {
    doc_block("go", "package main")
}

/// A TLS responder built with the recipe's `DeviceResponder` on loopback; each
/// initiator named on the command line connects once: "NAME accepted" or
/// "NAME refused: REASON".
const GO_HARNESS: &str = r#"package main

// Test harness around the Go recipe of docs/relying-parties.md: a responder built with
// DeviceResponder on loopback; each initiator named on the command line
// connects once and the result is printed as "NAME accepted" or
// "NAME refused: REASON". Usage: main ROOT CRL,CRL SERVERCHAIN SERVERKEY NAME...
// (NAME.chain.pem and NAME.key in the working directory).

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
)

func main() {
	rootPEM, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		panic("no root")
	}
	cert, err := tls.LoadX509KeyPair(os.Args[3], os.Args[4])
	if err != nil {
		panic(err)
	}
	cfg := DeviceResponder(cert, roots, strings.Split(os.Args[2], ","), "")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		panic(err)
	}
	verdicts := make(chan error)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			err = c.(*tls.Conn).Handshake()
			if err == nil {
				_, err = c.Write([]byte("hello\n"))
			}
			c.Close()
			verdicts <- err
		}
	}()
	for _, name := range os.Args[5:] {
		kp, err := tls.LoadX509KeyPair(name+".chain.pem", name+".key")
		if err != nil {
			panic(err)
		}
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs: roots, ServerName: "b.test", Certificates: []tls.Certificate{kp},
		})
		if err == nil {
			_, _ = bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
		if v := <-verdicts; v != nil {
			fmt.Printf("%s refused: %v\n", name, v)
		} else {
			fmt.Printf("%s accepted\n", name)
		}
	}
}
"#;

/// `go` in the test's directory: offline, GOPATH mode, no flags from outside.
fn go_run(env: &Env, cache: &Path) -> Command {
    let mut c = Command::new(tool("go").expect("go"));
    c.current_dir(env.dir.path())
        .env("GOCACHE", cache)
        .env("GOPATH", env.path("gopath"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "off");
    c
}

#[test]
fn go_recipe_accepts_devices_and_refuses_ambiguous_no_eku_and_revoked_ones() {
    if !have("go") {
        return;
    }
    let env = env_with_devices();
    env.issue_alice();
    issue_revoked(&env, "r");
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("anyeku", Some("serverAuth,anyExtendedKeyUsage"));
    env.openssl_leaf("noeku", None);
    // The device issuing CA's own certificate, presented as a client.
    device_ca_as_client(&env);
    std::fs::write(env.path("recipe.go"), doc_go_recipe()).unwrap();
    std::fs::write(env.path("main.go"), GO_HARNESS).unwrap();
    // Offline, standard library only; the build cache survives between runs.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
    let out = go_run(&env, &cache)
        .args([
            "run",
            "recipe.go",
            "main.go",
            "ca/root.pem",
            "ca/crl/device.crl,ca/crl/root.crl",
            "b.chain.pem",
            "b.key",
        ])
        .args(["a", "alice", "dual", "anyeku", "noeku", "r", "dca"])
        .stdin(Stdio::null())
        .output()
        .expect("go run");
    let said = text(&out);
    assert_eq!(code(&out), 0, "{said}");
    let verdict = |who: &str| {
        said.lines()
            .find(|l| l.starts_with(&format!("{who} ")))
            .unwrap_or_else(|| panic!("no verdict for {who}:\n{said}"))
            .to_string()
    };
    assert_eq!(verdict("a"), "a accepted", "{said}");
    for (who, why) in [
        ("alice", "incompatible key usage"),
        ("dual", "ambiguous certificate"),
        ("anyeku", "ambiguous certificate"),
        ("noeku", "no-EKU certificate"),
        ("r", "revoked"),
        ("dca", "a CA certificate cannot initiate"),
    ] {
        let v = verdict(who);
        assert!(
            v.starts_with(&format!("{who} refused: ")) && v.contains(why),
            "{who}: {v}"
        );
    }

    // Revocation fails closed: without the device CA's CRL, even a is refused.
    let out = go_run(&env, &cache)
        .args([
            "run",
            "recipe.go",
            "main.go",
            "ca/root.pem",
            "ca/crl/root.crl",
        ])
        .args(["b.chain.pem", "b.key", "a"])
        .stdin(Stdio::null())
        .output()
        .expect("go run");
    let said = text(&out);
    assert!(said.contains("a refused: no CRL from"), "{said}");
}

/// Wait until `p`'s log has `n` lines with `pat` (the proxy logs a refusal
/// as the client sees it), and not more.
fn wait_count(p: &Proc, pat: &str, n: usize) {
    let start = Instant::now();
    while p.log().matches(pat).count() < n {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", p.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.log().matches(pat).count(), n, "{}", p.log());
}

/// The HAProxy frontend of docs/relying-parties.md, as it stands there.
fn doc_haproxy_frontend() -> String {
    doc_block("haproxy", "")
}

/// HAProxy 2.6 in the foreground with `body` after global and defaults sections.
fn haproxy(env: &Env, name: &str, port: u16, body: &str) -> Proc {
    let conf = format!(
        "global\n  log stderr format raw local0 info\n\
         defaults\n  mode http\n  log global\n  option httplog\n  \
         timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n{body}"
    );
    let file = env.path(&format!("{name}.cfg"));
    std::fs::write(&file, conf).unwrap();
    let mut c = Command::new(tool("haproxy").expect("haproxy"));
    c.arg("-db").arg("-f").arg(&file);
    let p = spawn(c, env.path(&format!("{name}.log")));
    wait_port(port, "haproxy", Some(&p.log));
    p
}

/// What docs/relying-parties.md, "HAProxy", says, shown: `verify required` refuses a device,
/// `crt-ignore-err 26` alone still does, with `ca-ignore-err 26` too it takes
/// the device and dual-EKU, anyEKU and no-EKU certificates alike; the docs'
/// frontend behind `proxy server --http` works.
#[test]
fn haproxy_refuses_devices_leaks_with_ignore_err_and_works_behind_the_proxy() {
    if !have("haproxy") || !have("curl") {
        return;
    }
    let env = env_with_devices();
    env.issue_alice();
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("anyeku", Some("serverAuth,anyExtendedKeyUsage"));
    env.openssl_leaf("noeku", None);
    let crt = std::fs::read_to_string(env.path("b.chain.pem")).unwrap()
        + &std::fs::read_to_string(env.path("b.key")).unwrap();
    std::fs::write(env.path("b.haproxy.pem"), crt).unwrap();
    let who = ["a", "alice", "dual", "anyeku", "noeku"];
    // (bind options, who gets 200)
    let settings: [(&str, [bool; 5]); 3] = [
        ("verify required", [false, true, false, false, false]),
        (
            "verify required crt-ignore-err 26",
            [false, true, false, false, false],
        ),
        (
            "verify required crt-ignore-err 26 ca-ignore-err 26",
            [true, true, true, true, true],
        ),
    ];
    for (n, (opts, want)) in settings.iter().enumerate() {
        let hp = free_port();
        let body = format!(
            "frontend tls\n  bind 127.0.0.1:{hp} ssl crt {crt} ca-file {root} {opts}\n  \
             http-request return status 200 content-type text/plain \
             lf-string \"verify=%[ssl_c_verify]\\n\"\n",
            crt = env.path("b.haproxy.pem").display(),
            root = env.ca_dir().join("root.pem").display(),
        );
        let h = haproxy(&env, &format!("haproxy{n}"), hp, &body);
        let url = format!("https://127.0.0.1:{hp}/");
        for (w, ok) in who.iter().zip(want) {
            let (chain, key) = (format!("{w}.chain.pem"), format!("{w}.key"));
            let out = curl(&env, &curl_as(&chain, &key, &url));
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            match ok {
                true => assert!(
                    out.status.success() && said.starts_with("verify="),
                    "{opts}: {w} refused: {}\n{}",
                    text(&out),
                    h.log()
                ),
                false => assert!(
                    !out.status.success() && text(&out).contains("unsupported certificate"),
                    "{opts}: {w} let in: {}",
                    text(&out)
                ),
            }
        }
        drop(h);
    }

    // The working setup: the docs' frontend behind proxy server --http.
    let (hp, pp) = (free_port(), free_port());
    let frontend = doc_haproxy_frontend().replace("127.0.0.1:8080", &format!("127.0.0.1:{hp}"));
    assert!(
        frontend.contains(&format!("bind 127.0.0.1:{hp}")),
        "{frontend}"
    );
    let body = format!(
        "{frontend}\nbackend app\n  http-request return status 200 content-type text/plain \
         lf-string \"role=%[req.hdr(X-MTLS-Peer-Role)] connection=%[req.hdr(X-MTLS-Connection)] \
         peer=%[req.hdr(X-Peer)]\\n\"\n"
    );
    let h = haproxy(&env, "haproxy-app", hp, &body);
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{hp}"));
    // The docs' proxy command line, as it stands there: the CA's CRLs.
    issue_revoked(&env, "r");
    let p = doc_command(
        &env,
        "server",
        pp,
        &doc_block("sh", "mtlsca --ca-dir ca proxy server"),
        &[
            ("0.0.0.0:8443", &listen),
            ("127.0.0.1:8080", &target),
            ("lb.", "b."),
        ],
        &["--accept", "device,entity"],
    );
    let start = p.wait_line(&["revocation:"]);
    assert!(start.contains("the CRLs it publishes in ca/crl"), "{start}");
    let url = format!("https://127.0.0.1:{pp}/");
    let mut a = curl_as("a.chain.pem", "a.key", &url);
    a.extend(["-H", "X-MTLS-Peer-Role: device"]);
    let out = curl(&env, &a);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "role=device connection=server-to-server peer=DNS:a.test\n",
        "{}\n{}",
        text(&out),
        h.log()
    );
    // A person passes the proxy (entity accepted) and HAProxy's rule answers 403.
    let mut a = curl_as("alice.chain.pem", "alice.key", &url);
    a.extend([
        "-H",
        "X-MTLS-Peer-Role: device",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ]);
    let out = curl(&env, &a);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "403",
        "{}",
        text(&out)
    );
    p.wait_line(&["verdict=accepted", "role=entity"]);
    for w in ["dual", "noeku", "r"] {
        let (chain, key) = (format!("{w}.chain.pem"), format!("{w}.key"));
        let out = curl(&env, &curl_as(&chain, &key, &url));
        assert!(
            out.stdout.is_empty() && !out.status.success(),
            "{w}: {}",
            text(&out)
        );
    }
    wait_count(&p, "verdict=refused", 3);
    p.wait_line(&["verdict=refused", "revoked"]);
    assert_eq!(p.stop(), 0);
}

/// `java tests/it/Jsse.java ARGS` (source-file mode), once it says "listening".
fn jsse(env: &Env, name: &str, args: &[&str]) -> Proc {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/Jsse.java");
    let out = env.path(&format!("{name}.out"));
    let mut c = Command::new(tool("java").expect("java"));
    c.current_dir(env.dir.path()).arg(&src).args(args);
    let f = std::fs::File::create(&out).unwrap();
    let child = c
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(Stdio::null())
        .spawn()
        .expect("java");
    let p = Proc {
        child: Some(child),
        log: out,
    };
    p.wait_line(&["listening"]);
    p
}

/// What docs/relying-parties.md, "Java", says, shown: JSSE's default trust manager refuses a
/// device initiator ("Extended key usage does not permit use for TLS client
/// authentication") and takes a person, but also dual-EKU and no-EKU
/// certificates under the device CA; a Java HTTP server behind `proxy server
/// --http` gets the device with its identity headers.
#[test]
fn java_jsse_refuses_devices_and_works_behind_the_proxy() {
    if !have("java") || !have("curl") {
        return;
    }
    let env = env_with_devices();
    env.issue_alice();
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("noeku", None);
    env.openssl_ok(&[
        "pkcs12",
        "-export",
        "-in",
        "b.chain.pem",
        "-inkey",
        "b.key",
        "-out",
        "b.p12",
        "-passout",
        "pass:changeit",
    ]);
    let jp = free_port();
    let j = jsse(
        &env,
        "jsse",
        &["tls", &jp.to_string(), "b.p12", "ca/root.pem"],
    );
    let url = format!("https://127.0.0.1:{jp}/");
    for (n, w) in ["a", "alice", "dual", "noeku"].iter().enumerate() {
        let (chain, key) = (format!("{w}.chain.pem"), format!("{w}.key"));
        let _ = curl(&env, &curl_as(&chain, &key, &url));
        let start = Instant::now();
        while j.log().lines().count() < n + 2 {
            assert!(start.elapsed() < Duration::from_secs(20), "{}", j.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let said: Vec<String> = j.log().lines().skip(1).map(str::to_string).collect();
    assert!(
        said[0].starts_with("REFUSED")
            && said[0]
                .contains("Extended key usage does not permit use for TLS client authentication"),
        "{said:?}"
    );
    assert_eq!(
        &said[1..],
        [
            "ACCEPTED CN=Alice",
            "ACCEPTED CN=dual.test",
            "ACCEPTED CN=noeku.test"
        ],
        "{said:?}"
    );
    drop(j);

    // The answer: a plain Java HTTP server on loopback behind the proxy.
    let (hp, pp) = (free_port(), free_port());
    let h = jsse(&env, "jsse-http", &["http", &hp.to_string()]);
    let (listen, target) = (format!("127.0.0.1:{pp}"), format!("127.0.0.1:{hp}"));
    let mut args = server_args(&listen, &target);
    args.push("--http");
    let p = proxy(&env, "server", pp, &args);
    let url = format!("https://127.0.0.1:{pp}/");
    let out = curl(&env, &curl_as("a.chain.pem", "a.key", &url));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "role=device connection=server-to-server names=DNS:a.test\n",
        "{}",
        text(&out)
    );
    for w in ["alice", "dual", "noeku"] {
        let (chain, key) = (format!("{w}.chain.pem"), format!("{w}.key"));
        let out = curl(&env, &curl_as(&chain, &key, &url));
        assert!(
            out.stdout.is_empty() && !out.status.success(),
            "{w}: {}",
            text(&out)
        );
    }
    wait_count(&p, "verdict=refused", 3);
    assert_eq!(p.stop(), 0);
    drop(h);
}

/// The fenced block of docs/relying-parties.md (where the recipes a test runs
/// live) that starts with `first` (after the fence line), as it stands there.
fn doc_block(fence: &str, first: &str) -> String {
    doc_block_in("docs/relying-parties.md", fence, first)
}

/// The fenced block of `doc` that starts with `first`, as it stands there.
fn doc_block_in(doc: &str, fence: &str, first: &str) -> String {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).expect(doc);
    let open = format!("```{fence}\n{first}");
    let start = text
        .find(&open)
        .unwrap_or_else(|| panic!("{doc} has no block starting {open:?}"))
        + fence.len()
        + 4;
    let end = start + text[start..].find("```\n").expect("the block ends");
    text[start..end].to_string()
}

/// The OpenSSL command lines of docs/relying-parties.md as they stand there
/// (trust files, then `s_server` and `s_client`), with db as b, app as a and a
/// port of the test's: the device is served, a person and a revoked device are
/// refused, and as the docs say, the purpose switch alone lets a dual-EKU
/// certificate in too.
#[test]
fn openssl_recipe_command_lines_serve_a_device_and_check_its_crl() {
    let env = env_with_devices();
    env.issue_alice();
    issue_revoked(&env, "r");
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    let trust = doc_block(
        "sh",
        "cat ca/device-ca.pem ca/entity-ca.pem > issuing-cas.pem",
    );
    let out = run(&env, "sh", &["-c", &trust]);
    assert!(out.status.success(), "{}", text(&out));
    let bundle = std::fs::read_to_string(env.path("ca-bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3, "{bundle}");

    let port = free_port().to_string();
    let cmds = doc_block("sh", "openssl s_server -accept 8443")
        .replace("\\\n", " ")
        .replace("db:8443", &format!("127.0.0.1:{port}"))
        .replace("8443", &port)
        .replace("db.", "b.")
        .replace("app.", "a.");
    let lines: Vec<Vec<String>> = cmds
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(lines.len(), 2, "{cmds}");
    let (server, client) = (&lines[0], &lines[1]);
    assert_eq!(
        (&server[..2], &client[..2]),
        (
            &["openssl".to_string(), "s_server".to_string()][..],
            &["openssl".to_string(), "s_client".to_string()][..]
        )
    );

    let log = env.path("s_server.log");
    let f = std::fs::File::create(&log).unwrap();
    let mut srv = Command::new(&server[0])
        .current_dir(env.dir.path())
        .args(&server[1..])
        .stdin(Stdio::piped())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .expect("openssl s_server");
    // Held open (s_server quits at EOF on stdin); the guard stops it.
    let _stdin = srv.stdin.take();
    let srv_proc = Proc {
        child: Some(srv),
        log: log.clone(),
    };
    wait_port(port.parse().unwrap(), "s_server", Some(&log));
    let mut said = 0;
    for (who, want) in [
        ("a", "hello from a"),
        ("alice", "unsuitable certificate purpose"),
        ("r", "certificate revoked"),
        ("dual", "hello from dual"),
    ] {
        let args: Vec<String> = client[1..]
            .iter()
            .map(|x| x.replace("a.", &format!("{who}.")))
            .collect();
        let mut c = Command::new(&client[0])
            .current_dir(env.dir.path())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_client");
        let mut stdin = c.stdin.take().unwrap();
        let _ = stdin.write_all(format!("hello from {who}\n").as_bytes());
        let start = Instant::now();
        while !srv_proc.log().contains(want) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{who}: no {want:?} in\n{}",
                srv_proc.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stdin);
        let _ = c.wait();
        said += 1;
    }
    assert_eq!(said, 4);
    let log_text = srv_proc.log();
    assert!(
        !log_text.contains("hello from alice") && !log_text.contains("hello from r"),
        "{log_text}"
    );
}

/// A recipe's `mtlsca ...` command line (`block`, continuation lines joined),
/// with `swap` applied and `extra` arguments added, run in the env's
/// directory with nothing from the environment but PATH, until it listens on
/// `port`.
fn doc_command(
    env: &Env,
    name: &str,
    port: u16,
    block: &str,
    swap: &[(&str, &str)],
    extra: &[&str],
) -> Proc {
    let mut line = block.replace("\\\n", " ");
    for (from, to) in swap {
        line = line.replace(from, to);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"mtlsca"), "{block}");
    let mut c = Command::new(crate::common::BIN);
    c.current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(&words[1..])
        .args(extra);
    let p = spawn(c, env.path(&format!("{name}.log")));
    p.wait_line(&["listening", &format!(":{port} ")]);
    p
}

/// The `proxy client` recipe of docs/proxy.md as it stands there (its
/// revocation source, `--crl ca/crl/device.crl`, included), the responder a
/// `proxy server` in front of an echo server: a device responder gets the
/// bytes; a revoked one is refused, the reason logged.
#[test]
fn the_proxy_client_recipe_names_its_crl_and_refuses_a_revoked_responder() {
    let env = env_with_devices();
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "r.test",
        "--ip",
        "127.0.0.1",
        "--out",
        "r",
    ]);
    let r = serial_of(&env, "r.pem");
    env.ok(&["revoke", &r]);
    env.ok(&["crl"]);
    let echo = echo_server();
    let recipe = doc_block_in("docs/proxy.md", "sh", "mtlsca proxy client");
    let recipe = recipe
        .lines()
        .take_while(|l| !l.starts_with("curl"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(recipe.contains("--crl ca/crl/device.crl"), "{recipe}");
    for (who, fine) in [("b", true), ("r", false)] {
        let sp = free_port();
        let (sl, st) = (format!("127.0.0.1:{sp}"), format!("127.0.0.1:{echo}"));
        let mut args = server_args(&sl, &st);
        args[6] = if who == "b" {
            "b.chain.pem"
        } else {
            "r.chain.pem"
        };
        let _server = proxy(&env, &format!("server-{who}"), sp, &args);
        let cp = free_port();
        let (cl, ct) = (format!("127.0.0.1:{cp}"), format!("127.0.0.1:{sp}"));
        let client = doc_command(
            &env,
            &format!("client-{who}"),
            cp,
            &recipe,
            &[
                ("127.0.0.1:8080", &cl),
                ("db.corp.internal:8443", &ct),
                ("app.", "a."),
            ],
            &[],
        );
        let mut tcp = TcpStream::connect(("127.0.0.1", cp)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
        tcp.write_all(b"hello\n").unwrap();
        let mut back = [0u8; 6];
        let got = tcp.read_exact(&mut back).map(|_| back);
        if fine {
            assert_eq!(got.ok().as_ref(), Some(b"hello\n"), "{}", client.log());
            client.wait_line(&["verdict=accepted"]);
        } else {
            assert!(got.is_err(), "{}", client.log());
            let line = client.wait_line(&["verdict=refused"]);
            assert!(line.contains("revoked"), "{line}");
        }
    }
}
