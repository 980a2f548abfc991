//! CRLs that publish themselves (issue 24, deliverable 5): `serve` publishes
//! every CA's CRL before its publication listener answers, again within
//! seconds of every revocation (through the control socket, or certbot's
//! revokeCert over ACME), and before half of nextUpdate has passed; it never
//! serves a CRL past its nextUpdate. Without `serve`, `init` and `revoke`
//! leave current CRLs in `crl/`. Every CRL is read back with OpenSSL.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::acme::constrained_ca;
use crate::common::{free_port, text, Env, Server};

/// One HTTP/1.1 GET on a new connection: (status, headers, body).
fn fetch(stream: &mut TcpStream, path: &str) -> (u16, String, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: ca\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    let split = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&got)));
    let head = String::from_utf8_lossy(&got[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, got[split + 4..].to_vec())
}

fn get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    fetch(&mut s, path)
}

/// What OpenSSL reads in a DER CRL.
#[derive(Debug)]
struct CrlSeen {
    number: u64,
    next_update: OffsetDateTime,
    text: String,
}

fn openssl_crl(env: &Env, der: &[u8]) -> CrlSeen {
    let file = env.path(&format!("served-{}.der", std::process::id()));
    std::fs::write(&file, der).unwrap();
    let f = file.to_str().unwrap();
    let fields = env.openssl_ok(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        f,
        "-noout",
        "-crlnumber",
        "-nextupdate",
        "-dateopt",
        "iso_8601",
    ]);
    let field = |name: &str| {
        fields
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {fields}"))
            .trim()
            .to_string()
    };
    let number = u64::from_str_radix(field("crlNumber=").trim_start_matches("0x"), 16).unwrap();
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    let next_update = time::PrimitiveDateTime::parse(&field("nextUpdate="), &format)
        .unwrap_or_else(|e| panic!("nextUpdate in {fields}: {e}"))
        .assume_utc();
    let text = env.openssl_ok(&["crl", "-inform", "DER", "-in", f, "-noout", "-text"]);
    CrlSeen {
        number,
        next_update,
        text,
    }
}

/// Poll the served CRL at `path` until it lists `serial` (lowercase hex), at
/// most `within`; panics with the last CRL otherwise.
fn wait_listed(env: &Env, port: u16, path: &str, serial: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let serial = serial.to_ascii_uppercase();
    loop {
        let (status, head, body) = get(port, path);
        assert_eq!(status, 200, "{head}");
        let crl = openssl_crl(env, &body);
        if crl.text.contains(&serial) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{serial} not in the served CRL within {within:?}:\n{}",
            crl.text
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mtlsca serve` spawned without waiting for anything, its stderr in `log`.
fn spawn_serve(env: &Env, publish: u16, extra: &[&str], log: &std::path::Path) -> Child {
    env.cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--name", "localhost"])
        .args(["--publish-listen", &format!("127.0.0.1:{publish}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "serve did not stop cleanly");
}

/// A fresh server, no CRL on disk: the first connection the publication
/// listener accepts already gets 200 for every CA's CRL, and OpenSSL reads
/// each one.
#[test]
fn the_crl_url_answers_200_from_the_first_connection() {
    let env = Env::with_ca();
    // No CRL on disk: only the server's own publication can answer.
    std::fs::remove_dir_all(env.ca_dir().join("crl")).unwrap();
    let port = free_port();
    let log = env.path("serve.err");
    let child = spawn_serve(&env, port, &[], &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("the publication listener never accepted: {e}"),
        }
    };
    let (status, head, body) = fetch(&mut first, "/crl/device.crl");
    assert_eq!(status, 200, "the first answer: {head}");
    assert!(head.contains("application/pkix-crl"), "{head}");
    let device = openssl_crl(&env, &body);
    assert!(device.text.contains("Device Issuing CA"), "{}", device.text);
    for (path, ca) in [
        ("/crl/entity.crl", "Entity Issuing CA"),
        ("/crl/root.crl", "Test Root CA"),
    ] {
        let (status, head, body) = get(port, path);
        assert_eq!(status, 200, "{path}: {head}");
        let crl = openssl_crl(&env, &body);
        assert!(crl.text.contains(ca), "{path}: {}", crl.text);
        assert!(crl.next_update > OffsetDateTime::now_utc());
    }
    stop(child);
    let log = std::fs::read_to_string(&log).unwrap();
    for ca in ["root", "device", "entity"] {
        assert!(
            log.contains(&format!("crl=published ca={ca} ")) && log.contains("why=start"),
            "{log}"
        );
    }
}

/// `mtlsca revoke` while serve runs goes through the control socket; the
/// server's publisher puts it in the served CRL within seconds.
#[test]
fn a_revocation_through_the_socket_is_served_within_seconds() {
    let env = Env::with_ca();
    let port = free_port();
    let log = env.path("serve.err");
    let at = format!("127.0.0.1:{port}");
    let mut server = Server::start_logging(&env, &["--publish-listen", &at], &log);
    let v = env.json(&[
        "issue",
        "device",
        "--dns",
        "gone.corp.internal",
        "--out",
        "gone",
    ]);
    let serial = v["serial"].as_str().unwrap().to_string();
    let before = openssl_crl(&env, &get(port, "/crl/device.crl").2);
    assert!(!before.text.contains(&serial.to_ascii_uppercase()));
    let out = env.ok(&["revoke", &serial, "--reason", "keyCompromise"]);
    assert!(
        out.contains("the running server publishes the CRLs"),
        "{out}"
    );
    wait_listed(
        &env,
        port,
        "/crl/device.crl",
        &serial,
        Duration::from_secs(5),
    );
    let after = openssl_crl(&env, &get(port, "/crl/device.crl").2);
    assert!(after.number > before.number, "{before:?} {after:?}");
    // The file on disk is the one served.
    let disk = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(disk.contains(&serial.to_ascii_uppercase()), "{disk}");
    assert_eq!(server.stop(), 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("crl=published ca=device") && l.contains("why=revocation")),
        "{log}"
    );
}

/// Whether certbot is missing: a skip locally, a failure under
/// `MTLSCA_REQUIRE_CERTBOT` (CI installs it).
fn certbot_missing() -> bool {
    if Command::new("certbot").arg("--version").output().is_ok() {
        return false;
    }
    assert!(
        std::env::var_os("MTLSCA_REQUIRE_CERTBOT").is_none(),
        "certbot is not installed, and MTLSCA_REQUIRE_CERTBOT is set"
    );
    eprintln!("skipped: certbot is not installed (apt-get install certbot)");
    true
}

/// certbot's revokeCert (ACME) is in the served CRL within 5 s.
#[test]
fn a_certbot_revocation_is_served_within_seconds() {
    if certbot_missing() {
        return;
    }
    let env = constrained_ca();
    let http01 = free_port().to_string();
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    let log = env.path("serve.err");
    let mut server = Server::start_logging(
        &env,
        &["--acme-http01-port", &http01, "--publish-listen", &at],
        &log,
    );
    let cb = env.path("certbot");
    let certbot = |args: &[&str]| {
        let out = Command::new("certbot")
            .env("REQUESTS_CA_BUNDLE", env.ca_dir().join("root.pem"))
            .args(args)
            .arg("--non-interactive")
            .arg("--server")
            .arg(server.url("/acme/directory"))
            .arg("--config-dir")
            .arg(cb.join("config"))
            .arg("--work-dir")
            .arg(cb.join("work"))
            .arg("--logs-dir")
            .arg(cb.join("logs"))
            .output()
            .unwrap();
        assert!(out.status.success(), "certbot {args:?}:\n{}", text(&out));
    };
    certbot(&[
        "certonly",
        "--standalone",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--http-01-port",
        &http01,
        "--http-01-address",
        "127.0.0.1",
        "-d",
        "localhost",
    ]);
    let cert = cb.join("config/live/localhost/cert.pem");
    let out = env.openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-serial"]);
    assert!(out.status.success(), "{}", text(&out));
    let serial = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    certbot(&[
        "revoke",
        "--no-delete-after-revoke",
        "--reason",
        "keycompromise",
        "--cert-path",
        cert.to_str().unwrap(),
    ]);
    wait_listed(
        &env,
        port,
        "/crl/device.crl",
        &serial,
        Duration::from_secs(5),
    );
    // And OpenSSL refuses the leaf with that CRL.
    let served = get(port, "/crl/device.crl").2;
    std::fs::write(env.path("device.crl.der"), served).unwrap();
    env.openssl_ok(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        "device.crl.der",
        "-out",
        "device.crl.pem",
    ]);
    let out = env.openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        "ca/ca-bundle.pem",
        "-CRLfile",
        "device.crl.pem",
        cert.to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
    assert_eq!(server.stop(), 0);
}

/// With `--crl-next-update 10s`, CRLs are fetched for about 20 s: every one
/// served is current when it is fetched, and new ones keep coming.
#[test]
fn nothing_served_is_past_its_next_update() {
    let env = Env::with_ca();
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    let log = env.path("serve.err");
    let mut server = Server::start_logging(
        &env,
        &["--publish-listen", &at, "--crl-next-update", "10s"],
        &log,
    );
    let start = Instant::now();
    let mut first: Option<u64> = None;
    let mut last = 0;
    let mut fetched = 0;
    while start.elapsed() < Duration::from_secs(20) {
        for path in ["/crl/device.crl", "/crl/entity.crl", "/crl/root.crl"] {
            // Whole seconds: a CRL's times are.
            let fetched_at = OffsetDateTime::now_utc();
            let (status, head, body) = get(port, path);
            assert_eq!(status, 200, "{path}: {head}");
            let crl = openssl_crl(&env, &body);
            assert!(
                crl.next_update > fetched_at,
                "{path} fetched at {fetched_at} says nextUpdate {}",
                crl.next_update
            );
            if path == "/crl/device.crl" {
                assert!(crl.number >= last, "CRL numbers only grow");
                last = crl.number;
                first.get_or_insert(crl.number);
            }
            fetched += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(fetched > 10);
    // 20 s of CRLs signed for 10 s, each again after 5 s: republished at
    // least twice (three times unless the machine is slow).
    assert!(last >= first.unwrap() + 2, "{first:?} then {last}");
    assert_eq!(server.stop(), 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("why=refresh"), "{log}");
}

/// When no new CRL can be signed, the served one is refused once past its
/// nextUpdate (503 with Retry-After, logged) rather than served stale; the
/// failures are logged, the server keeps running, and the CRL comes back once
/// signing works again.
#[test]
fn a_crl_past_its_next_update_is_refused_until_a_new_one_is_signed() {
    let env = Env::with_ca();
    let port = free_port();
    let at = format!("127.0.0.1:{port}");
    let log = env.path("serve.err");
    let mut server = Server::start_logging(
        &env,
        &["--publish-listen", &at, "--crl-next-update", "10s"],
        &log,
    );
    // What no publication gets past: a directory where the device CRL's
    // temporary file goes.
    let blocker = env.ca_dir().join("crl/.device.crl.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let head = loop {
        let fetched_at = OffsetDateTime::now_utc();
        let (status, head, body) = get(port, "/crl/device.crl");
        if status == 503 {
            break head;
        }
        assert_eq!(status, 200, "{head}");
        assert!(openssl_crl(&env, &body).next_update > fetched_at);
        assert!(Instant::now() < deadline, "never refused");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    // The server kept running; once signing works again, so does the CRL.
    std::fs::remove_dir(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fetched_at = OffsetDateTime::now_utc();
        let (status, head, body) = get(port, "/crl/device.crl");
        if status == 200 {
            assert!(openssl_crl(&env, &body).next_update > fetched_at);
            break;
        }
        assert_eq!(status, 503, "{head}");
        assert!(Instant::now() < deadline, "never published again");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.stop(), 0);
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("crl=failed"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("status=503") && l.contains("past its nextUpdate")),
        "{log}"
    );
}

/// Without a server: `init` leaves every CA's CRL in crl/, and `revoke`
/// publishes the CRLs again, so OpenSSL refuses the revoked leaf at once.
#[test]
fn without_serve_init_and_revoke_leave_current_crls() {
    let env = Env::with_ca();
    for ca in ["root", "device", "entity"] {
        let f = format!("ca/crl/{ca}.crl");
        let t = env.openssl_ok(&["crl", "-in", &f, "-noout", "-text"]);
        assert!(t.contains("No Revoked Certificates"), "{f}: {t}");
    }
    let v = env.json(&["issue", "device", "--dns", "x.corp.internal", "--out", "x"]);
    let serial = v["serial"].as_str().unwrap().to_string();
    let verify = || {
        env.openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            "ca/ca-bundle.pem",
            "-CRLfile",
            "ca/crl/device.crl",
            "x.pem",
        ])
    };
    let out = verify();
    assert!(out.status.success(), "{}", text(&out));
    let out = env.ok(&["revoke", &serial]);
    assert!(out.contains("CRLs published"), "{out}");
    let t = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(t.contains(&serial.to_ascii_uppercase()), "{t}");
    let out = verify();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("certificate revoked"), "{}", text(&out));
}

/// A publication that fails after a durable revocation: the revocation
/// stands, `warning:` says how to publish, and the exit code is 0.
#[test]
fn a_revocation_stands_when_its_crl_cannot_be_published() {
    let env = Env::with_ca();
    let v = env.json(&["issue", "device", "--dns", "y.corp.internal", "--out", "y"]);
    let serial = v["serial"].as_str().unwrap().to_string();
    std::fs::create_dir(env.ca_dir().join("crl/.device.crl.tmp")).unwrap();
    let out = env.run(&["--json", "revoke", &serial]);
    assert_eq!(crate::common::code(&out), 0, "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("warning: the CRLs were not published"),
        "{err}"
    );
    assert!(err.contains("mtlsca crl"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "revoked", "{v}");
    assert_eq!(v["crl_publication"], "failed", "{v}");
    assert_eq!(env.json(&["show", &serial])["status"], "revoked");
    // The fix the warning names.
    std::fs::remove_dir(env.ca_dir().join("crl/.device.crl.tmp")).unwrap();
    env.ok(&["crl"]);
    let t = env.openssl_ok(&["crl", "-in", "ca/crl/device.crl", "-noout", "-text"]);
    assert!(t.contains(&serial.to_ascii_uppercase()), "{t}");
}
