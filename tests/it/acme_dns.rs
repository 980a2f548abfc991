//! `mtlsca serve` validating through a DNS server of the test's own
//! (`--acme-resolver`): pebble-challtestsrv (Debian package `pebble`) answers
//! A queries for every name with 127.0.0.1 and TXT queries with what its
//! management API was told. Clients: lego (dns-01 with the `exec` provider,
//! and http-01 for a name only challtestsrv resolves).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{text, Env};

/// Whether a tool is missing: a skip, or an error under `MTLSCA_REQUIRE_ACME_DNS_TOOLS`.
fn missing(tool: &str, package: &str) -> bool {
    if Command::new(tool)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
    {
        return false;
    }
    if std::env::var_os("MTLSCA_REQUIRE_ACME_DNS_TOOLS").is_some() {
        panic!("{tool} is required (MTLSCA_REQUIRE_ACME_DNS_TOOLS) but not installed (apt-get install {package})");
    }
    eprintln!("skipped: {tool} is not installed (apt-get install {package})");
    true
}

fn tools_missing() -> bool {
    missing("pebble-challtestsrv", "pebble") || missing("lego", "lego") || missing("curl", "curl")
}

/// A free TCP port on loopback (also free for UDP, checked).
fn free_port() -> u16 {
    loop {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A running pebble-challtestsrv: DNS on `dns` (UDP and TCP), management API
/// on `mgmt`; killed on drop.
struct ChallTestSrv {
    child: Child,
    dns: u16,
    mgmt: u16,
}

impl ChallTestSrv {
    fn start() -> ChallTestSrv {
        let dns = free_port();
        let mgmt = free_port();
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{mgmt}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pebble-challtestsrv");
        let srv = ChallTestSrv { child, dns, mgmt };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", mgmt)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "pebble-challtestsrv did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        srv
    }

    fn resolver(&self) -> String {
        format!("127.0.0.1:{}", self.dns)
    }

    /// An `exec` provider script for lego: `present FQDN VALUE` sets the TXT
    /// record through the management API (the value replaced by `fixed` when
    /// given), `cleanup FQDN VALUE` clears it.
    fn lego_script(&self, env: &Env, fixed: Option<&str>) -> std::path::PathBuf {
        let value = match fixed {
            Some(v) => format!("\"{v}\""),
            None => "\"$3\"".into(),
        };
        let script = format!(
            "#!/bin/sh\nset -e\nmgmt=http://127.0.0.1:{}\ncase \"$1\" in\n  present) curl -fsS -d \"{{\\\"host\\\":\\\"$2\\\",\\\"value\\\":\\\"\"{value}\"\\\"}}\" $mgmt/set-txt ;;\n  cleanup) curl -fsS -d \"{{\\\"host\\\":\\\"$2\\\"}}\" $mgmt/clear-txt ;;\nesac\n",
            self.mgmt
        );
        let path = env.path("dns-exec.sh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mtlsca serve`; SIGTERMed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(env: &Env, extra: &[&str]) -> Server {
        Server::start_reading(env, extra, 1).0
    }

    /// Start and read `lines` lines of what serve prints first.
    fn start_reading(env: &Env, extra: &[&str], lines: usize) -> (Server, Vec<String>) {
        let mut child = env
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0", "--name", "localhost"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mtlsca serve");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut said = Vec::new();
        for _ in 0..lines {
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            said.push(l);
        }
        let line = &said[0];
        let port = crate::common::Server::port_in(line);
        (Server { child, port }, said)
    }

    fn stop(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/acme/directory", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// A CA for names under `acme.test` (and the server's `localhost`), wildcards
/// allowed in the device profile.
fn acme_test_ca() -> Env {
    let env = Env::new();
    env.ok(&[
        "init",
        "--name",
        "ACME DNS Test",
        "--permit-dns",
        "acme.test",
        "--permit-dns",
        "localhost",
        "--permit-ip",
        "127.0.0.0/8",
    ]);
    env
}

/// lego against `server`, in `dir`, with the given challenge arguments; the
/// `exec` DNS provider runs `script` when given.
fn lego(
    env: &Env,
    server: &Server,
    dir: &str,
    domains: &[&str],
    script: Option<&std::path::Path>,
    args: &[&str],
) -> Output {
    let mut cmd = Command::new("lego");
    if let Some(s) = script {
        cmd.env("EXEC_PATH", s);
    }
    cmd.env("LEGO_CA_CERTIFICATES", env.ca_dir().join("root.pem"))
        .env("EXEC_PROPAGATION_TIMEOUT", "20")
        .env("EXEC_POLLING_INTERVAL", "1")
        .args(["--server", &server.directory()])
        .args(["--email", "ops@acme.test", "--accept-tos", "--path"])
        .arg(env.path(dir));
    for d in domains {
        cmd.args(["--domains", d]);
    }
    cmd.args(args).arg("run").output().unwrap()
}

/// lego's dns-01 arguments: the exec provider, challtestsrv as its resolver,
/// no wait for authoritative servers (challtestsrv is the only one).
fn dns01_args(dns: &ChallTestSrv) -> Vec<String> {
    vec![
        "--dns".into(),
        "exec".into(),
        "--dns.resolvers".into(),
        dns.resolver(),
        "--dns.disable-cp".into(),
    ]
}

#[test]
fn lego_gets_a_certificate_with_dns_01_through_challtestsrv() {
    if tools_missing() {
        return;
    }
    let env = acme_test_ca();
    let dns = ChallTestSrv::start();
    let script = dns.lego_script(&env, None);
    // Twelve decoy records of 200 bytes first: the answer (about 3 KB) is larger
    // than the advertised EDNS size, and challtestsrv sends it whole over UDP.
    for i in 0..12 {
        let body = format!(
            "{{\"host\":\"_acme-challenge.web1.acme.test.\",\"value\":\"decoy{i:02}{}\"}}",
            "x".repeat(200)
        );
        let out = curl(&[
            "-f",
            "-d",
            &body,
            &format!("http://127.0.0.1:{}/set-txt", dns.mgmt),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let mut server = Server::start(&env, &["--acme-resolver", &dns.resolver()]);
    let args = dns01_args(&dns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lego(
        &env,
        &server,
        "lego",
        &["web1.acme.test"],
        Some(&script),
        &args,
    );
    assert!(out.status.success(), "lego failed:\n{}", text(&out));
    assert_eq!(server.stop(), 0);
    let crt = "lego/certificates/web1.acme.test.crt";
    let t = env.x509_text(crt);
    assert!(t.contains("DNS:web1.acme.test"), "{t}");
    assert!(t.contains("TLS Web Server Authentication"), "{t}");
    env.openssl_ok(&["verify", "-CAfile", "ca/root.pem", "-untrusted", crt, crt]);
    // Recorded: the server's own certificate and lego's.
    assert_eq!(env.store_count(), 2);
}

#[test]
fn a_wrong_txt_record_makes_the_dns_01_challenge_invalid_and_nothing_is_issued() {
    if tools_missing() {
        return;
    }
    let env = acme_test_ca();
    let dns = ChallTestSrv::start();
    let script = dns.lego_script(&env, Some("not-the-digest"));
    let mut server = Server::start(&env, &["--acme-resolver", &dns.resolver()]);
    let args = dns01_args(&dns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lego(
        &env,
        &server,
        "lego",
        &["web3.acme.test"],
        Some(&script),
        &args,
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    // lego shows the server's problem: the type and what the TXT record held.
    assert!(said.contains("incorrectResponse"), "{said}");
    assert!(said.contains("_acme-challenge.web3.acme.test"), "{said}");
    assert!(said.contains("not-the-digest"), "{said}");
    assert_eq!(server.stop(), 0);
    assert!(!env.path("lego/certificates/web3.acme.test.crt").exists());
    // Only the server's own certificate.
    assert_eq!(env.store_count(), 1);
}

#[test]
fn lego_http_01_for_a_name_only_the_configured_resolver_knows() {
    if tools_missing() {
        return;
    }
    let env = acme_test_ca();
    let dns = ChallTestSrv::start();
    let http_port = free_port().to_string();
    let mut server = Server::start(
        &env,
        &[
            "--acme-resolver",
            &dns.resolver(),
            "--acme-http01-port",
            &http_port,
        ],
    );
    let listen = format!("127.0.0.1:{http_port}");
    let out = lego(
        &env,
        &server,
        "lego",
        &["web2.acme.test"],
        None,
        &["--http", "--http.port", &listen],
    );
    assert!(out.status.success(), "lego failed:\n{}", text(&out));
    assert_eq!(server.stop(), 0);
    let t = env.x509_text("lego/certificates/web2.acme.test.crt");
    assert!(t.contains("DNS:web2.acme.test"), "{t}");
    assert_eq!(env.store_count(), 2);

    // Without --acme-resolver the system's resolution does not know the name:
    // the challenge fails with a DNS problem and nothing is issued.
    let mut server = Server::start(&env, &["--acme-http01-port", &http_port]);
    let out = lego(
        &env,
        &server,
        "lego-sys",
        &["web2.acme.test"],
        None,
        &["--http", "--http.port", &listen],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("web2.acme.test"), "{said}");
    assert_eq!(server.stop(), 0);
    assert_eq!(
        env.store_count(),
        3,
        "only the second server's own certificate"
    );
}

#[test]
fn a_wildcard_is_proved_by_dns_01_when_the_profile_allows_wildcards() {
    if tools_missing() {
        return;
    }
    let env = acme_test_ca();
    let dns = ChallTestSrv::start();
    let script = dns.lego_script(&env, None);
    let args = dns01_args(&dns);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The device profile does not allow wildcards: refused at newOrder with the rule.
    let mut server = Server::start(&env, &["--acme-resolver", &dns.resolver()]);
    let out = lego(
        &env,
        &server,
        "lego-no",
        &["*.apps.acme.test"],
        Some(&script),
        &args,
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("rejectedIdentifier"), "{said}");
    assert!(said.contains("wildcards are not allowed"), "{said}");
    assert_eq!(server.stop(), 0);
    assert_eq!(env.store_count(), 1);

    // A device profile that allows them: proved with dns-01.
    let device = std::fs::read_to_string(env.ca_dir().join("profiles/device.toml")).unwrap();
    let wild = device
        .replace("name = \"device\"", "name = \"wild\"")
        .replace("allow_wildcards = false", "allow_wildcards = true");
    assert!(wild.contains("allow_wildcards = true"), "{wild}");
    std::fs::write(env.ca_dir().join("profiles/wild.toml"), wild).unwrap();
    let mut server = Server::start(
        &env,
        &["--acme-resolver", &dns.resolver(), "--acme-profile", "wild"],
    );
    let out = lego(
        &env,
        &server,
        "lego",
        &["*.apps.acme.test"],
        Some(&script),
        &args,
    );
    assert!(out.status.success(), "lego failed:\n{}", text(&out));
    assert_eq!(server.stop(), 0);
    let t = env.x509_text("lego/certificates/_.apps.acme.test.crt");
    assert!(t.contains("DNS:*.apps.acme.test"), "{t}");
    assert_eq!(env.store_count(), 3);
}

/// `curl -sS -D - URL` (with extra arguments): the status line, headers and body as text.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn serve_publishes_crls_and_ca_certificates_and_the_profile_puts_the_cdp_in_certificates() {
    if missing("curl", "curl") {
        return;
    }
    let env = acme_test_ca();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/crl/device.crl");
    let device = std::fs::read_to_string(env.ca_dir().join("profiles/device.toml")).unwrap();
    let cdp =
        device.replace("name = \"device\"", "name = \"cdp\"") + &format!("crl_url = \"{url}\"\n");
    std::fs::write(env.ca_dir().join("profiles/cdp.toml"), cdp).unwrap();
    env.ok(&["profile", "check", "ca/profiles/cdp.toml"]);
    env.ok(&["issue", "cdp", "--dns", "good.acme.test", "--out", "good"]);
    env.ok(&["issue", "cdp", "--dns", "bad.acme.test", "--out", "bad"]);
    env.ok(&["revoke", "bad.pem", "--reason", "keyCompromise"]);
    env.ok(&["crl"]);

    // The certificate names the CRL's URL as its distribution point.
    let t = env.x509_text("good.pem");
    assert!(t.contains("X509v3 CRL Distribution Points"), "{t}");
    assert!(t.contains(&format!("URI:{url}")), "{t}");
    // A profile without crl_url: no distribution point.
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "plain.acme.test",
        "--out",
        "plain",
    ]);
    assert!(!env.x509_text("plain.pem").contains("CRL Distribution"));

    let listen = format!("127.0.0.1:{port}");
    let (mut server, said) = Server::start_reading(&env, &["--publish-listen", &listen], 2);
    assert!(
        said[1].starts_with(&format!("publishing http://{listen}")),
        "{said:?}"
    );

    // openssl fetches the CRL from the URL in the certificate.
    let verify = |file: &str| {
        env.openssl(&[
            "verify",
            "-crl_check",
            "-crl_download",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/device-ca.pem",
            file,
        ])
    };
    let ok = verify("good.pem");
    assert!(ok.status.success(), "{}", text(&ok));
    let revoked = verify("bad.pem");
    assert!(!revoked.status.success(), "{}", text(&revoked));
    assert!(
        text(&revoked).contains("certificate revoked"),
        "{}",
        text(&revoked)
    );

    // The CRL as DER with its content type; it lists the revoked serial.
    let got = curl(&[
        "-D",
        &env.path("crl.head").display().to_string(),
        "-o",
        &env.path("device.crl.der").display().to_string(),
        &url,
    ]);
    assert!(got.status.success(), "{}", text(&got));
    let head = std::fs::read_to_string(env.path("crl.head")).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/pkix-crl"),
        "{head}"
    );
    let crl = env.openssl_ok(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        "device.crl.der",
        "-noout",
        "-text",
    ]);
    let serial = env.openssl(&["x509", "-in", "bad.pem", "-noout", "-serial"]);
    let serial = String::from_utf8_lossy(&serial.stdout).to_string();
    let serial = serial.trim().trim_start_matches("serial=");
    assert!(serial.len() >= 16, "{serial}");
    assert!(crl.contains(serial), "{serial} not in\n{crl}");
    assert!(crl.contains("Key Compromise"), "{crl}");

    // The CA certificates, DER and PEM.
    let base = format!("http://127.0.0.1:{port}");
    let got = curl(&[
        "-o",
        &env.path("root.der").display().to_string(),
        &format!("{base}/ca/root.crt"),
    ]);
    assert!(got.status.success(), "{}", text(&got));
    let root = env.openssl_ok(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        "root.der",
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    assert_eq!(
        root,
        env.openssl_ok(&[
            "x509",
            "-in",
            "ca/root.pem",
            "-noout",
            "-fingerprint",
            "-sha256"
        ])
    );
    let pem = curl(&[&format!("{base}/ca/device.pem")]);
    assert_eq!(
        String::from_utf8_lossy(&pem.stdout),
        std::fs::read_to_string(env.ca_dir().join("device-ca.pem")).unwrap()
    );

    // GET and HEAD only; nothing outside the list (no private key, no traversal).
    let code = |args: &[&str]| {
        let o = curl(&[&["-o", "/dev/null", "-w", "%{http_code}"][..], args].concat());
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(code(&["-X", "POST", "-d", "x", &url]), "405");
    assert_eq!(code(&["-I", &url]), "200");
    assert_eq!(code(&[&format!("{base}/private/root.key")]), "404");
    assert_eq!(
        code(&["--path-as-is", &format!("{base}/ca/../private/root.key")]),
        "404"
    );
    assert_eq!(code(&[&format!("{base}/crl/other.crl")]), "404");
    // Request headers over the limit (16 KiB) are refused, not read on.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let big = format!(
        "GET /crl/device.crl HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = std::io::Write::write_all(&mut tcp, big.as_bytes());
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tcp, &mut reply);
    let reply = String::from_utf8_lossy(&reply);
    // 431, or a reset when the kernel drops the rest of what was sent.
    assert!(
        reply.starts_with("HTTP/1.1 431") || reply.is_empty(),
        "{reply}"
    );
    assert_eq!(server.stop(), 0);
}

/// The Caddyfile of docs/acme.md, as it stands there.
fn doc_caddyfile() -> String {
    let doc = "docs/acme.md";
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(doc))
        .expect(doc);
    let open = "```caddyfile\n";
    let start = text
        .find(open)
        .unwrap_or_else(|| panic!("{doc} has no Caddyfile block"))
        + open.len();
    let end = start + text[start..].find("```\n").expect("the block ends");
    text[start..end].to_string()
}

/// Caddy (Debian's 2.6) with the Caddyfile of docs/acme.md (`acme_ca`,
/// `acme_ca_root`), as it stands there but for this test's server, names,
/// loopback ports and a `respond` in place of the backend: it gets its
/// certificate (tls-alpn-01 on its https_port, the name resolved through
/// challtestsrv) and serves with it.
#[test]
fn caddy_gets_its_certificate_from_serve_with_the_docs_recipe() {
    if tools_missing() || missing("caddy", "caddy") {
        return;
    }
    let env = acme_test_ca();
    let dns = ChallTestSrv::start();
    let http_port = free_port();
    let https_port = free_port();
    let mut server = Server::start(
        &env,
        &[
            "--acme-resolver",
            &dns.resolver(),
            "--acme-http01-port",
            &http_port.to_string(),
            "--acme-tlsalpn01-port",
            &https_port.to_string(),
        ],
    );
    let home = env.path("caddy-home");
    std::fs::create_dir_all(&home).unwrap();
    // The recipe's global options get this test's ports and a storage of its
    // own; its server, root, names and backend become this test's.
    let local = format!(
        "{{\n\thttp_port {http_port}\n\thttps_port {https_port}\n\tadmin off\n\tskip_install_trust\n\tstorage file_system {}\n",
        home.join("data").display()
    );
    let root_pem = env.ca_dir().join("root.pem").display().to_string();
    let mut caddyfile = doc_caddyfile();
    for (from, to) in [
        ("{\n", local.as_str()),
        (
            "https://ca.corp.internal:8443/acme/directory",
            &server.directory(),
        ),
        ("/etc/caddy/mtlsca-root.pem", &root_pem),
        ("ops@corp.internal", "ops@acme.test"),
        ("web.corp.internal", "web4.acme.test"),
        (
            "reverse_proxy localhost:8080",
            "respond \"hello from caddy\"",
        ),
    ] {
        assert!(
            caddyfile.contains(from),
            "the Caddyfile of docs/acme.md has no {from:?}:\n{caddyfile}"
        );
        caddyfile = caddyfile.replacen(from, to, 1);
    }
    std::fs::write(env.path("Caddyfile"), caddyfile).unwrap();
    let mut caddy = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(env.path("Caddyfile"))
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join("xdg"))
        .env("XDG_CONFIG_HOME", home.join("xdg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(env.path("caddy.log")).unwrap(),
        ))
        .spawn()
        .expect("spawn caddy");
    let url = format!("https://web4.acme.test:{https_port}/");
    let resolve = format!("web4.acme.test:{https_port}:127.0.0.1");
    let root = env.ca_dir().join("root.pem").display().to_string();
    let t = Instant::now();
    let mut last = String::new();
    let mut served = false;
    while t.elapsed() < Duration::from_secs(60) {
        let out = curl(&["--resolve", &resolve, "--cacert", &root, &url]);
        last = text(&out);
        if out.status.success() && String::from_utf8_lossy(&out.stdout) == "hello from caddy" {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = caddy.kill();
    let _ = caddy.wait();
    let log = std::fs::read_to_string(env.path("caddy.log")).unwrap_or_default();
    assert!(
        served,
        "caddy did not serve with a certificate of the CA:\n{last}\n{log}"
    );
    assert!(log.contains("certificate obtained successfully"), "{log}");
    assert_eq!(server.stop(), 0);
    // Recorded: the server's own certificate and Caddy's.
    assert_eq!(env.store_count(), 2);
    let list = env.ok(&["list"]);
    assert!(list.contains("web4.acme.test"), "{list}");
}

#[test]
fn a_resolver_that_is_not_an_address_is_bad_usage() {
    let env = acme_test_ca();
    for bad in [
        "nonsense",
        "no-such-host.invalid:53",
        "127.0.0.1:99999",
        "127.0.0.1:0",
    ] {
        let err = env.fails(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--name",
                "localhost",
                "--acme-resolver",
                bad,
            ],
            2,
        );
        assert!(err.contains("--acme-resolver"), "{bad}: {err}");
    }
}
