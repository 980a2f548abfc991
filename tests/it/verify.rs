//! The verifier from the outside: `inspect`, `verify cert`, `verify pair` (with a
//! real handshake) on certificates issued by mtlsca, on certificates OpenSSL makes
//! the way other CAs do (dual EKU, anyEKU, no EKU), and OpenSSL as the relying
//! party of a server-to-server link.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{code, free_port, text, Env};

/// A CA with two devices (a, b), a person (alice) and an organisation (acme).
fn env_with_parties() -> Env {
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
    env.issue_alice();
    env.ok(&["issue", "organization", "--org", "Acme", "--out", "acme"]);
    env
}

/// Run, insist on `want`, parse the JSON on stdout.
fn json_exit(env: &Env, args: &[&str], want: i32) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    assert_eq!(code(&out), want, "mtlsca {args:?}:\n{}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: bad JSON {e}:\n{}", text(&out)))
}

fn reasons(v: &Value) -> String {
    v["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn pairs_of_all_four_connection_kinds() {
    let env = env_with_parties();
    let kinds = [
        ("a.pem", "b.pem", "server-to-server", "device", "device"),
        ("alice.pem", "b.pem", "client-to-server", "entity", "device"),
        ("a.pem", "alice.pem", "server-to-client", "device", "entity"),
        ("alice.pem", "acme.pem", "end-to-end", "entity", "entity"),
    ];
    for (i, r, kind, ir, rr) in kinds {
        let v = json_exit(
            &env,
            &[
                "verify",
                "pair",
                "--initiator",
                i,
                "--responder",
                r,
                "--expect",
                kind,
            ],
            0,
        );
        assert_eq!(v["connection"], kind, "{v}");
        assert_eq!(v["valid"], true, "{v}");
        assert_eq!(v["initiator"]["role"], ir);
        assert_eq!(v["responder"]["role"], rr);
        assert_eq!(v["initiator"]["chain_valid"], true);
        assert!(v["initiator"]["subject"].as_str().unwrap().contains("CN="));
        assert!(v["responder"]["names"].is_array());
        assert_eq!(v["reasons"].as_array().unwrap().len(), 0);
    }
    // Chain files work as input: the leaf first, the issuing CA as intermediate.
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "a.chain.pem",
            "--responder",
            "b.chain.pem",
        ],
        0,
    );
    assert_eq!(v["connection"], "server-to-server");
    // The text verdict is a side-by-side table.
    let out = env.ok(&[
        "verify",
        "pair",
        "--initiator",
        "alice.pem",
        "--responder",
        "b.pem",
    ]);
    assert!(
        out.contains("initiator") && out.contains("responder"),
        "{out}"
    );
    assert!(
        out.contains("connection: client-to-server") && out.contains("VALID"),
        "{out}"
    );
}

#[test]
fn expectation_and_name_mismatches_are_reasoned_verdicts() {
    let env = env_with_parties();
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "alice.pem",
            "--responder",
            "acme.pem",
            "--expect",
            "server-to-server",
        ],
        1,
    );
    assert_eq!(v["connection"], "end-to-end");
    assert_eq!(v["valid"], false);
    let r = reasons(&v);
    assert!(r.contains("initiator's EKU is clientAuth: an entity cannot be the initiator of a server-to-server link"), "{r}");
    assert!(r.contains("responder's EKU is clientAuth: an entity cannot be the responder of a server-to-server link"), "{r}");
    // Both chains are fine: only the pair is wrong.
    assert_eq!(v["initiator"]["chain_valid"], true);

    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "a.pem",
            "--responder",
            "b.pem",
            "--responder-name",
            "wrong.test",
            "--initiator-name",
            "a.test",
        ],
        1,
    );
    let r = reasons(&v);
    assert!(
        r.contains("responder certificate is not valid for DNS:wrong.test (it names DNS:b.test"),
        "{r}"
    );
    assert!(!r.contains("initiator"), "{r}");
    json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "alice.pem",
            "--responder",
            "b.pem",
            "--initiator-name",
            "alice@test",
            "--responder-name",
            "127.0.0.1",
        ],
        0,
    );

    json_exit(&env, &["verify", "cert", "b.pem", "--name", "b.test"], 0);
    let v = json_exit(&env, &["verify", "cert", "b.pem", "--name", "a.test"], 1);
    assert_eq!(v["valid"], false);
    assert_eq!(v["role"], "device");
    assert!(reasons(&v).contains("not valid for DNS:a.test"));
}

#[test]
fn expired_untrusted_and_revoked_chains_are_refused() {
    let env = env_with_parties();
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "a.pem",
            "--responder",
            "b.pem",
            "--at",
            "2099-01-01T00:00:00Z",
        ],
        1,
    );
    let r = reasons(&v);
    assert!(r.contains("initiator certificate expired on "), "{r}");
    assert!(r.contains("responder certificate expired on "), "{r}");
    assert_eq!(v["initiator"]["chain_valid"], false);
    let v = json_exit(
        &env,
        &["verify", "cert", "a.pem", "--at", "2001-01-01T00:00:00Z"],
        1,
    );
    assert!(reasons(&v).contains("not valid before"), "{v}");

    // Another CA's root is not an anchor for these certificates.
    let other = Env::new();
    other.ok(&["init", "--name", "Other"]);
    let root = other.ca_dir().join("root.pem");
    let v = json_exit(
        &env,
        &[
            "verify",
            "cert",
            "a.chain.pem",
            "--trust",
            root.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        reasons(&v).contains("does not chain to a trusted root"),
        "{v}"
    );
    // With the right root given explicitly and the chain file, it validates.
    json_exit(
        &env,
        &["verify", "cert", "a.chain.pem", "--trust", "ca/root.pem"],
        0,
    );

    // Revoked: a CRL of the device issuing CA that lists b (made by OpenSSL's `ca`).
    let serial = env.openssl_ok(&["x509", "-in", "b.pem", "-noout", "-serial"]);
    let serial = serial
        .lines()
        .find_map(|l| l.strip_prefix("serial="))
        .expect("openssl prints the serial")
        .trim()
        .to_string();
    std::fs::create_dir_all(env.path("crlca")).unwrap();
    std::fs::write(
        env.path("crlca/index.txt"),
        format!("R\t491231235959Z\t260101000000Z,keyCompromise\t{serial}\tunknown\t/CN=b.test\n"),
    )
    .unwrap();
    std::fs::write(env.path("crlca/crlnumber"), "01\n").unwrap();
    std::fs::write(
        env.path("crlca/ca.cnf"),
        "[ca]\ndefault_ca=d\n[d]\ndatabase=crlca/index.txt\ncrlnumber=crlca/crlnumber\ndefault_md=sha256\ndefault_crl_days=30\ncrl_extensions=crlext\n[crlext]\nauthorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    env.openssl_ok(&[
        "ca",
        "-gencrl",
        "-config",
        "crlca/ca.cnf",
        "-cert",
        "ca/device-ca.pem",
        "-keyfile",
        "ca/private/device-ca.key",
        "-out",
        "device.crl",
    ]);
    let v = json_exit(&env, &["verify", "cert", "b.pem", "--crl", "device.crl"], 1);
    let r = reasons(&v);
    assert!(
        r.contains("was revoked") && r.contains("keyCompromise"),
        "{r}"
    );
    json_exit(&env, &["verify", "cert", "a.pem", "--crl", "device.crl"], 0);
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "a.pem",
            "--responder",
            "b.pem",
            "--crl",
            "device.crl",
        ],
        1,
    );
    assert!(reasons(&v).contains("responder certificate (serial"), "{v}");
}

#[test]
fn dual_any_and_no_eku_certificates_are_ambiguous_under_the_draft() {
    let env = env_with_parties();
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("anyeku", Some("anyExtendedKeyUsage"));
    env.openssl_leaf("noeku", None);
    let v = json_exit(
        &env,
        &["inspect", "dual.pem", "anyeku.pem", "noeku.pem", "a.pem"],
        0,
    );
    let roles: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["ambiguous", "ambiguous", "no-eku", "device"]);
    let findings = v[0]["findings"].to_string();
    assert!(
        findings.contains("serverAuth+clientAuth: ambiguous under the draft"),
        "{findings}"
    );
    assert_eq!(
        v[0]["ekus"],
        serde_json::json!(["serverAuth", "clientAuth"])
    );
    assert_eq!(v[0]["names"], serde_json::json!(["DNS:dual.test"]));

    for (leaf, why) in [
        ("dual.pem", "serverAuth and clientAuth"),
        ("anyeku.pem", "anyExtendedKeyUsage"),
        ("noeku.pem", "no extendedKeyUsage"),
    ] {
        let v = json_exit(&env, &["verify", "cert", leaf, "--role", "device"], 1);
        assert!(reasons(&v).contains(why), "{leaf}: {v}");
        let p = json_exit(
            &env,
            &[
                "verify",
                "pair",
                "--initiator",
                leaf,
                "--responder",
                "b.pem",
            ],
            1,
        );
        assert_eq!(p["connection"], "ambiguous", "{leaf}: {p}");
        assert!(reasons(&p).starts_with("initiator"), "{leaf}: {p}");
    }
    // The classic reading accepts what the draft refuses, anyEKU alone included
    // (RFC 5280 4.2.1.12: it restricts nothing; issue 11).
    json_exit(
        &env,
        &["verify", "cert", "dual.pem", "--purpose", "server"],
        0,
    );
    json_exit(
        &env,
        &["verify", "cert", "noeku.pem", "--purpose", "server"],
        0,
    );
    json_exit(
        &env,
        &["verify", "cert", "anyeku.pem", "--purpose", "server"],
        0,
    );
}

#[test]
fn a_ca_as_leaf_and_a_leaf_its_issuer_does_not_allow_are_refused() {
    let env = env_with_parties();
    let v = json_exit(
        &env,
        &["verify", "cert", "ca/device-ca.pem", "--role", "device"],
        1,
    );
    assert_eq!(v["role"], "ca");
    assert!(reasons(&v).contains("CA certificate"), "{v}");
    let p = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "ca/device-ca.pem",
            "--responder",
            "b.pem",
        ],
        1,
    );
    assert_eq!(p["connection"], "ambiguous");

    // clientAuth leaf signed by the device issuing CA, whose EKU is serverAuth only.
    env.openssl_leaf("wrongca", Some("clientAuth"));
    let v = json_exit(
        &env,
        &["verify", "cert", "wrongca.pem", "--role", "entity"],
        1,
    );
    let r = reasons(&v);
    assert!(
        r.contains("issuing CA does not allow clientAuth: its EKU is serverAuth"),
        "{r}"
    );
    let v = json_exit(
        &env,
        &["verify", "cert", "wrongca.pem", "--purpose", "client"],
        1,
    );
    assert!(reasons(&v).contains("does not allow clientAuth"), "{v}");
}

#[test]
fn handshake_succeeds_when_the_draft_allows_the_pair() {
    let env = env_with_parties();
    for (i, r, kind) in [
        ("a.pem", "b.pem", "server-to-server"),
        ("alice.pem", "b.chain.pem", "client-to-server"),
    ] {
        let v = json_exit(
            &env,
            &[
                "verify",
                "pair",
                "--initiator",
                i,
                "--responder",
                r,
                "--handshake",
                "--expect",
                kind,
            ],
            0,
        );
        assert_eq!(v["handshake"]["ok"], true, "{v}");
        assert_eq!(v["handshake"]["protocol"], "TLS 1.3", "{v}");
        assert!(
            v["handshake"]["cipher_suite"]
                .as_str()
                .unwrap()
                .starts_with("TLS13_"),
            "{v}"
        );
    }
    let out = env.ok(&[
        "verify",
        "pair",
        "--initiator",
        "a.pem",
        "--responder",
        "b.pem",
        "--handshake",
    ]);
    assert!(out.contains("handshake: TLS 1.3"), "{out}");
    // Explicit key paths work too.
    json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "a.pem",
            "--responder",
            "b.pem",
            "--handshake",
            "--initiator-key",
            "a.key",
            "--responder-key",
            "b.key",
        ],
        0,
    );
}

#[test]
fn handshake_fails_when_the_responder_must_refuse_the_initiator() {
    let env = env_with_parties();
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "alice.pem",
            "--responder",
            "b.pem",
            "--handshake",
            "--expect",
            "server-to-server",
        ],
        1,
    );
    assert_eq!(v["handshake"]["ok"], false, "{v}");
    let outcome = v["handshake"]["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("the responder aborted the handshake"),
        "{outcome}"
    );
    assert!(
        outcome.contains("accepts device certificates only"),
        "{outcome}"
    );
    assert!(reasons(&v).contains("handshake failed"), "{v}");

    // A dual-EKU initiator is neither a device nor an entity: refused by the verifier.
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "dual.pem",
            "--responder",
            "b.pem",
            "--handshake",
        ],
        1,
    );
    let outcome = v["handshake"]["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("peer certificate is ambiguous"),
        "{outcome}"
    );

    // No key beside the certificate: bad usage, nothing judged.
    std::fs::copy(env.path("a.pem"), env.path("lonely.pem")).unwrap();
    let err = env.fails(
        &[
            "verify",
            "pair",
            "--initiator",
            "lonely.pem",
            "--responder",
            "b.pem",
            "--handshake",
        ],
        2,
    );
    assert!(
        err.contains("error:") && err.contains("lonely.key"),
        "{err}"
    );
}

/// Wait until s_server says it accepts (probing the port would use up its
/// only connection).
fn wait_for_accept(log: &std::path::Path, server: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("ACCEPT")
    {
        assert!(
            server.try_wait().unwrap().is_none(),
            "s_server exited early"
        );
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for a child at most `limit`, killing it after; returns stdout+stderr.
fn finish(mut child: Child, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One s_server accepting one s_client connection that presents a.pem;
/// returns (server output, client output).
fn openssl_link(env: &Env, purpose: bool) -> (String, String) {
    let port = free_port().to_string();
    let mut args = vec![
        "s_server",
        "-accept",
        &port,
        "-naccept",
        "1",
        "-www",
        "-cert",
        "b.pem",
        "-key",
        "b.key",
        "-CAfile",
        "bundle.pem",
        "-Verify",
        "1",
        "-verify_return_error",
    ];
    if purpose {
        args.extend(["-purpose", "sslserver"]);
    }
    let log = env.path(&format!("s_server.{purpose}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut server = Command::new("openssl")
        .current_dir(env.dir.path())
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(Stdio::from(file))
        .spawn()
        .expect("openssl s_server");
    wait_for_accept(&log, &mut server);
    let mut client = Command::new("openssl")
        .current_dir(env.dir.path())
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "a.pem",
            "-key",
            "a.key",
            "-CAfile",
            "bundle.pem",
            "-servername",
            "b.test",
            "-ign_eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .unwrap();
    let c = finish(client, Duration::from_secs(15));
    finish(server, Duration::from_secs(5));
    (std::fs::read_to_string(&log).unwrap_or_default(), c)
}

/// Why the draft matters: OpenSSL accepts a device (serverAuth-only) certificate
/// from an initiator only when the accepting side checks the sslserver purpose;
/// its default for a client certificate wants clientAuth.
#[test]
fn openssl_as_relying_party_accepts_devices_only_with_purpose_sslserver() {
    let env = env_with_parties();
    let bundle: String = ["ca/root.pem", "ca/device-ca.pem", "ca/entity-ca.pem"]
        .iter()
        .map(|f| std::fs::read_to_string(env.path(f)).unwrap())
        .collect();
    std::fs::write(env.path("bundle.pem"), bundle).unwrap();

    let (server, client) = openssl_link(&env, true);
    assert!(
        client.contains("200 ok"),
        "s_client was not served:\n{client}\n--- s_server\n{server}"
    );

    let (server, client) = openssl_link(&env, false);
    assert!(
        !client.contains("200 ok"),
        "served without -purpose sslserver:\n{client}"
    );
    assert!(
        server.contains("unsuitable certificate purpose"),
        "s_server did not say why:\n{server}\n--- s_client\n{client}"
    );
}

#[test]
fn junk_empty_and_truncated_inputs_are_unreadable() {
    let env = env_with_parties();
    let pem = std::fs::read_to_string(env.path("a.pem")).unwrap();
    std::fs::write(env.path("junk.pem"), "hello, not a certificate\n").unwrap();
    std::fs::write(env.path("empty.pem"), "").unwrap();
    std::fs::write(env.path("truncated.pem"), &pem[..pem.len() / 2]).unwrap();
    std::fs::write(env.path("junk.der"), [0x30u8, 0x82, 0x01, 0x00, 0x02, 0x01]).unwrap();
    for f in [
        "junk.pem",
        "empty.pem",
        "truncated.pem",
        "junk.der",
        "a.key",
        "missing.pem",
    ] {
        for args in [
            vec!["inspect", f],
            vec!["verify", "cert", f],
            vec!["verify", "pair", "--initiator", f, "--responder", "b.pem"],
            vec!["verify", "pair", "--initiator", "a.pem", "--responder", f],
            vec!["verify", "cert", "a.pem", "--trust", f],
            vec!["verify", "cert", "a.pem", "--crl", f],
        ] {
            let err = env.fails(&args, 2);
            assert!(err.starts_with("error: "), "{args:?}: {err}");
        }
    }
    env.fails(&["verify", "cert", "a.pem", "--at", "yesterday"], 2);
    env.fails(
        &[
            "verify",
            "cert",
            "a.pem",
            "--role",
            "device",
            "--purpose",
            "server",
        ],
        2,
    );
    // No CA and no --trust: a CA state problem.
    let bare = Env::new();
    std::fs::copy(env.path("a.pem"), bare.path("a.pem")).unwrap();
    bare.fails(&["verify", "cert", "a.pem"], 3);
}

#[test]
fn inspect_reads_pem_bundles_der_and_directories_without_a_ca() {
    let env = env_with_parties();
    env.openssl_ok(&[
        "x509",
        "-in",
        "alice.pem",
        "-outform",
        "DER",
        "-out",
        "alice.der",
    ]);
    let bare = Env::new();
    let v = json_exit(
        &bare,
        &[
            "inspect",
            env.path("a.chain.pem").to_str().unwrap(),
            env.path("alice.der").to_str().unwrap(),
        ],
        0,
    );
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[0]["role"], "device");
    assert_eq!(items[1]["role"], "ca");
    assert_eq!(items[2]["role"], "entity");
    for i in items {
        for k in ["file", "role", "ekus", "names", "findings"] {
            assert!(!i[k].is_null(), "{k} missing in {i}");
        }
    }
    assert_eq!(items[2]["names"], serde_json::json!(["email:alice@test"]));
    // A directory: certificates are inspected, keys passed over with a note.
    let v = json_exit(&bare, &["inspect", env.path("").to_str().unwrap()], 0);
    let roles: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"device") && roles.contains(&"entity"),
        "{roles:?}"
    );
    let out = env.ok(&["inspect", "a.pem"]);
    assert!(
        out.contains("a.pem: device") && out.contains("findings:"),
        "{out}"
    );
}

/// A self-signed root made by OpenSSL with `nc` as its nameConstraints line, as
/// `NAME.pem` / `NAME.key`.
fn openssl_root(env: &Env, name: &str, nc: &str) {
    env.openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &format!("{name}.key"),
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "60",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        nc,
        "-out",
        &format!("{name}.pem"),
    ]);
}

/// A certificate signed by `ca` (`ca.pem`, `ca.key`, or mtlsca's `device-ca`) with
/// the given extension lines, subject `/CN=workload NAME`, as `NAME.pem` / `NAME.key`.
fn openssl_signed(env: &Env, ca: &str, name: &str, ext: &str) {
    let (ca_pem, ca_key) = if ca == "device-ca" {
        (
            "ca/device-ca.pem".to_string(),
            "ca/private/device-ca.key".to_string(),
        )
    } else {
        (format!("{ca}.pem"), format!("{ca}.key"))
    };
    env.openssl_csr(
        &format!("{name}.key"),
        &format!("/CN=workload {name}"),
        &[],
        &["-out", &format!("{name}.csr")],
    );
    let ext = format!("[v3]\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n{ext}\n");
    std::fs::write(env.path(&format!("{name}.ext")), ext).unwrap();
    env.openssl_ok(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-set_serial",
        "0x5a17c0ffee01",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        &format!("{name}.ext"),
        "-extensions",
        "v3",
        "-out",
        &format!("{name}.pem"),
    ]);
}

/// A device leaf (serverAuth) with one URI name.
fn uri_leaf(env: &Env, ca: &str, name: &str, uri: &str) {
    openssl_signed(
        env,
        ca,
        name,
        &format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=URI:{uri}"
        ),
    );
}

/// `openssl verify` of `leaf` under `root`: Ok(()) or its error text.
fn openssl_verdict(env: &Env, root: &str, leaf: &str) -> Result<(), String> {
    let out = env.openssl(&[
        "verify",
        "-CAfile",
        &format!("{root}.pem"),
        "-purpose",
        "sslserver",
        &format!("{leaf}.pem"),
    ]);
    let all = text(&out);
    if out.status.success() {
        Ok(())
    } else {
        Err(all)
    }
}

#[test]
fn uri_name_constraints_of_the_root_are_enforced_by_host() {
    let env = Env::new();
    openssl_root(
        &env,
        "uriroot",
        "nameConstraints=critical,permitted;DNS:corp.internal,permitted;URI:corp.internal,permitted;URI:.corp.internal",
    );
    let good = [
        ("spiffe", "spiffe://corp.internal/ns/a"),
        ("api", "https://api.corp.internal/x"),
    ];
    let bad = [
        ("evil", "spiffe://evil.com/x"),
        ("userinfo", "https://web.corp.internal@evil.com/"),
    ];
    for (name, uri) in good.iter().chain(bad.iter()) {
        uri_leaf(&env, "uriroot", name, uri);
    }
    for (name, uri) in good {
        let file = format!("{name}.pem");
        let v = json_exit(
            &env,
            &[
                "verify",
                "cert",
                &file,
                "--trust",
                "uriroot.pem",
                "--role",
                "device",
            ],
            0,
        );
        assert_eq!(v["valid"], true, "{uri}: {v}");
        assert_eq!(v["names"][0], format!("URI:{uri}"), "{v}");
        assert_eq!(openssl_verdict(&env, "uriroot", name), Ok(()), "{uri}");
    }
    for (name, uri) in bad {
        let file = format!("{name}.pem");
        let v = json_exit(
            &env,
            &[
                "verify",
                "cert",
                &file,
                "--trust",
                "uriroot.pem",
                "--role",
                "device",
            ],
            1,
        );
        let why = reasons(&v);
        assert!(
            why.contains("URI name constraint") && why.contains(uri),
            "{uri}: {why}"
        );
        let ossl = openssl_verdict(&env, "uriroot", name).unwrap_err();
        assert!(
            ossl.contains("permitted subtree violation"),
            "{uri}: {ossl}"
        );
    }
    // Both workloads in one connection, with a real handshake (rustls verifiers).
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "api.pem",
            "--responder",
            "spiffe.pem",
            "--responder-name",
            "spiffe://corp.internal/ns/a",
            "--trust",
            "uriroot.pem",
            "--expect",
            "server-to-server",
            "--handshake",
        ],
        0,
    );
    assert_eq!(v["handshake"]["ok"], true, "{v}");
    // Without a name to dial, the initiator takes the identity it is shown, as
    // the static verdict does.
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "api.pem",
            "--responder",
            "spiffe.pem",
            "--trust",
            "uriroot.pem",
            "--handshake",
        ],
        0,
    );
    assert_eq!(v["handshake"]["ok"], true, "{v}");
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "evil.pem",
            "--responder",
            "spiffe.pem",
            "--responder-name",
            "spiffe://corp.internal/ns/a",
            "--trust",
            "uriroot.pem",
            "--handshake",
        ],
        1,
    );
    assert_eq!(v["handshake"]["ok"], false, "{v}");
    assert!(reasons(&v).contains("URI name constraint"), "{v}");
    // The text verdict says the same.
    let out = text(&env.run(&[
        "verify",
        "cert",
        "evil.pem",
        "--trust",
        "uriroot.pem",
        "--role",
        "device",
    ]));
    assert!(
        out.contains("INVALID") && out.contains("URI name constraint"),
        "{out}"
    );
}

#[test]
fn excluded_uri_subtrees_and_uris_without_a_host_are_refused() {
    let env = Env::new();
    openssl_root(
        &env,
        "exroot",
        "nameConstraints=critical,permitted;URI:.corp.internal,excluded;URI:.secret.corp.internal",
    );
    uri_leaf(&env, "exroot", "ok", "https://web.corp.internal/");
    uri_leaf(&env, "exroot", "secret", "https://db.secret.corp.internal/");
    uri_leaf(
        &env,
        "exroot",
        "urn",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    );
    let args = |f: &'static str| {
        [
            "verify",
            "cert",
            f,
            "--trust",
            "exroot.pem",
            "--role",
            "device",
        ]
    };
    assert_eq!(json_exit(&env, &args("ok.pem"), 0)["valid"], true);
    let v = json_exit(&env, &args("secret.pem"), 1);
    assert!(reasons(&v).contains("excluded"), "{v}");
    let v = json_exit(&env, &args("urn.pem"), 1);
    assert!(reasons(&v).contains("no host"), "{v}");
}

#[test]
fn an_intermediate_with_uri_name_constraints_is_processed() {
    // rustls-webpki refuses every URI name under such an intermediate; mtlsca's
    // RFC 5280 validator processes the constraint (issue 11), as OpenSSL does.
    let env = Env::new();
    openssl_root(
        &env,
        "plainroot",
        "nameConstraints=critical,permitted;DNS:corp.internal",
    );
    openssl_signed(
        &env,
        "plainroot",
        "uriica",
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nnameConstraints=critical,permitted;URI:.corp.internal",
    );
    uri_leaf(&env, "uriica", "wl", "spiffe://a.corp.internal/x");
    uri_leaf(&env, "uriica", "out", "spiffe://evil.com/x");
    let args = |leaf: &'static str| {
        [
            "verify",
            "cert",
            leaf,
            "--trust",
            "plainroot.pem",
            "--untrusted",
            "uriica.pem",
            "--role",
            "device",
        ]
    };
    let v = json_exit(&env, &args("wl.pem"), 0);
    assert_eq!(v["chain"].as_array().map(|c| c.len()), Some(3), "{v}");
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "plainroot.pem",
        "-untrusted",
        "uriica.pem",
        "wl.pem",
    ]);
    let v = json_exit(&env, &args("out.pem"), 1);
    let why = reasons(&v);
    assert!(
        why.contains("URI:spiffe://evil.com/x") && why.contains("outside the permitted"),
        "{why}"
    );
}

#[test]
fn uri_names_under_an_mtlsca_root_with_uri_subtrees_are_checked_below_the_issuing_ca() {
    let env = Env::new();
    env.ok(&["init", "--name", "Corp", "--permit-dns", "corp.internal"]);
    // Leaves the CA would never sign, signed with its device CA's key.
    uri_leaf(&env, "device-ca", "good", "spiffe://corp.internal/ns/a");
    uri_leaf(&env, "device-ca", "evil", "spiffe://evil.com/x");
    let v = json_exit(&env, &["verify", "cert", "good.pem", "--role", "device"], 0);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["chain"].as_array().map(|c| c.len()), Some(3), "{v}");
    let v = json_exit(&env, &["verify", "cert", "evil.pem", "--role", "device"], 1);
    let why = reasons(&v);
    assert!(
        why.contains("URI name constraint") && why.contains("spiffe://evil.com/x"),
        "{why}"
    );
    // OpenSSL, given the same root and issuing CA, agrees on both.
    for (leaf, ok) in [("good.pem", true), ("evil.pem", false)] {
        let out = env.openssl(&[
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/device-ca.pem",
            "-purpose",
            "sslserver",
            leaf,
        ]);
        assert_eq!(out.status.success(), ok, "{leaf}: {}", text(&out));
    }
}

/// An OpenSSL root with the given extension lines (no defaults of ours).
fn openssl_root_with(env: &Env, name: &str, exts: &[&str]) {
    let subj = format!("/CN={name}");
    let key = format!("{name}.key");
    let out = format!("{name}.pem");
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        &subj,
        "-days",
        "60",
        "-sha256",
        "-out",
        &out,
    ];
    for e in exts {
        args.push("-addext");
        args.push(e);
    }
    env.openssl_ok(&args);
}

#[test]
fn a_trust_anchors_encoding_is_a_finding_and_strict_makes_it_fail() {
    // easy-rsa's root: basicConstraints not critical, AKI with issuer and serial.
    let env = Env::new();
    openssl_root_with(
        &env,
        "easyroot",
        &[
            "basicConstraints=CA:TRUE",
            "authorityKeyIdentifier=keyid:always,issuer:always",
            "keyUsage=keyCertSign,cRLSign",
        ],
    );
    openssl_signed(
        &env,
        "easyroot",
        "srv",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:srv.test",
    );
    env.openssl_ok(&["verify", "-CAfile", "easyroot.pem", "srv.pem"]);
    let args = [
        "verify",
        "cert",
        "srv.pem",
        "--trust",
        "easyroot.pem",
        "--role",
        "device",
    ];
    let v = json_exit(&env, &args, 0);
    assert_eq!(v["valid"], true, "{v}");
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert!(codes.contains(&"bc-not-critical"), "{v}");
    assert!(codes.contains(&"self-signed-aki-mismatch"), "{v}");
    assert!(
        v["findings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("trust anchor `CN=easyroot`")),
        "{v}"
    );
    assert!(v["findings"][0]["severity"].is_string(), "{v}");
    // The text says VALID and lists the findings.
    let out = env.ok(&args);
    assert!(out.contains("VALID (device)"), "{out}");
    assert!(
        out.contains("findings") && out.contains("[bc-not-critical, error]"),
        "{out}"
    );
    // --strict: the findings fail the verdict.
    let mut strict = args.to_vec();
    strict.push("--strict");
    let v = json_exit(&env, &strict, 1);
    assert!(
        reasons(&v).contains("basicConstraints is not critical"),
        "{v}"
    );
    // Nothing that is wrong with the path itself became a finding: an expired
    // leaf is still INVALID without --strict.
    json_exit(
        &env,
        &[
            "verify",
            "cert",
            "srv.pem",
            "--trust",
            "easyroot.pem",
            "--role",
            "device",
            "--at",
            "2099-01-01T00:00:00Z",
        ],
        1,
    );
}

#[test]
fn entities_under_an_email_constrained_ca_verify() {
    // RFC 5280 4.2.1.10 rfc822Name constraints in their three forms, on SAN
    // emails and on the subject's emailAddress; rustls-webpki refuses any.
    let env = Env::new();
    openssl_root_with(
        &env,
        "mailroot",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
            "nameConstraints=critical,permitted;email:example.test,permitted;email:.corp.test,permitted;email:boss@other.test",
        ],
    );
    let leaf = |name: &str, email: &str| {
        openssl_signed(
            &env,
            "mailroot",
            name,
            &format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth,emailProtection\nsubjectAltName=email:{email}"
            ),
        );
    };
    let cases = [
        ("host", "alice@example.test", true),
        ("domain", "bob@eu.corp.test", true),
        ("mailbox", "boss@other.test", true),
        ("subhost", "carol@sub.example.test", false),
        ("domainitself", "dave@corp.test", false),
        ("othermailbox", "eve@other.test", false),
    ];
    for (name, email, ok) in cases {
        leaf(name, email);
        let pem = format!("{name}.pem");
        let args = [
            "verify",
            "cert",
            &pem,
            "--trust",
            "mailroot.pem",
            "--role",
            "entity",
        ];
        let v = json_exit(&env, &args, if ok { 0 } else { 1 });
        if !ok {
            assert!(
                reasons(&v).contains(&format!("email:{email} is outside the permitted")),
                "{v}"
            );
        }
        let ossl = env.openssl(&["verify", "-CAfile", "mailroot.pem", &pem]);
        assert_eq!(
            ossl.status.success(),
            ok,
            "OpenSSL on {email}: {}",
            text(&ossl)
        );
    }
}

#[test]
fn directory_name_constraints_are_processed() {
    // A root that permits subjects under O=Acme only (rustls-webpki refuses any
    // directoryName constraint).
    let env = Env::new();
    let cnf = "[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nnameConstraints=critical,permitted;dirName:acme_dn\n[acme_dn]\nO=Acme\n";
    std::fs::write(env.path("dnroot.cnf"), cnf).unwrap();
    env.openssl_ok(&[
        "req",
        "-x509",
        "-config",
        "dnroot.cnf",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "dnroot.key",
        "-subj",
        "/O=Acme/CN=Acme Root",
        "-days",
        "60",
        "-out",
        "dnroot.pem",
    ]);
    for (name, subj, ok) in [
        ("inside", "/O=Acme/CN=srv", true),
        ("outside", "/O=Evil/CN=srv", false),
    ] {
        env.openssl_csr(
            &format!("{name}.key"),
            subj,
            &[],
            &["-out", &format!("{name}.csr")],
        );
        std::fs::write(
            env.path(&format!("{name}.ext")),
            "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:srv.test\nauthorityKeyIdentifier=keyid\n",
        )
        .unwrap();
        env.openssl_ok(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "dnroot.pem",
            "-CAkey",
            "dnroot.key",
            "-set_serial",
            "0x1001",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-extensions",
            "v3",
            "-out",
            &format!("{name}.pem"),
        ]);
        let pem = format!("{name}.pem");
        let v = json_exit(
            &env,
            &[
                "verify",
                "cert",
                &pem,
                "--trust",
                "dnroot.pem",
                "--role",
                "device",
            ],
            if ok { 0 } else { 1 },
        );
        if !ok {
            assert!(reasons(&v).contains("directory name"), "{v}");
        }
        let ossl = env.openssl(&["verify", "-CAfile", "dnroot.pem", &pem]);
        assert_eq!(
            ossl.status.success(),
            ok,
            "OpenSSL on {subj}: {}",
            text(&ossl)
        );
    }
}

#[test]
fn a_revoked_peer_fails_the_handshake_and_the_end_that_refused_is_named() {
    let env = env_with_parties();
    let serial = env.json(&["verify", "cert", "b.pem"])["serial"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(&["revoke", &serial, "--reason", "keyCompromise"]);
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "alice.pem",
            "--responder",
            "b.pem",
            "--handshake",
        ],
        1,
    );
    assert_eq!(v["handshake"]["ok"], false, "{v}");
    let outcome = v["handshake"]["outcome"].as_str().unwrap();
    // The initiator refused the revoked responder: it sent the alert.
    assert!(
        outcome.contains("the initiator aborted the handshake") && outcome.contains("revoked"),
        "{outcome}"
    );
}

#[test]
fn sign_writes_the_chain_beside_the_certificate_like_issue() {
    let env = Env::with_ca();
    env.openssl_csr(
        "srv.key",
        "/CN=srv.test",
        &["subjectAltName=DNS:srv.test"],
        &["-out", "srv.csr"],
    );
    let out = env.ok(&["sign", "device", "--csr", "srv.csr", "--out", "srv.pem"]);
    assert!(out.contains("srv.chain.pem"), "{out}");
    let chain = std::fs::read_to_string(env.path("srv.chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    // The chain file is what a server sends: it verifies under the root alone.
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "srv.chain.pem",
        "srv.pem",
    ]);
    let v = json_exit(
        &env,
        &[
            "verify",
            "cert",
            "srv.chain.pem",
            "--trust",
            "ca/root.pem",
            "--role",
            "device",
        ],
        0,
    );
    assert_eq!(v["chain"].as_array().map(|c| c.len()), Some(3), "{v}");
}

#[test]
fn inspect_descends_fails_on_classes_for_ci_and_speaks_plainly() {
    let env = env_with_parties();
    std::fs::create_dir_all(env.path("fleet/web/old")).unwrap();
    std::fs::copy(env.path("a.pem"), env.path("fleet/a.pem")).unwrap();
    std::fs::copy(env.path("b.pem"), env.path("fleet/web/b.pem")).unwrap();
    env.openssl_leaf("dual", Some("serverAuth,clientAuth"));
    env.openssl_leaf("mail", Some("emailProtection"));
    std::fs::copy(env.path("dual.pem"), env.path("fleet/web/old/dual.pem")).unwrap();
    std::fs::write(env.path("fleet/notes.txt"), "not a certificate\n").unwrap();

    // Without -r, only the top directory.
    let v = env.json(&["inspect", "fleet"]);
    assert_eq!(v.as_array().map(|a| a.len()), Some(1), "{v}");
    // -r descends.
    let v = env.json(&["inspect", "-r", "fleet"]);
    assert_eq!(v.as_array().map(|a| a.len()), Some(3), "{v}");

    // --fail-on: exit 1 when a certificate is of a listed class; the output is
    // still the full report.
    let out = env.run(&["inspect", "-r", "fleet", "--fail-on", "ambiguous,no-eku"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(text(&out).contains("ambiguous"), "{}", text(&out));
    env.ok(&["inspect", "-r", "fleet", "--fail-on", "ca"]);
    let out = env.run(&["--json", "inspect", "fleet/a.pem", "--fail-on", "device"]);
    assert_eq!(code(&out), 1);
    assert!(serde_json::from_slice::<Value>(&out.stdout).is_ok());

    // An emailProtection-only certificate is named by what it holds.
    let out = env.ok(&["inspect", "mail.pem"]);
    assert!(out.contains("no TLS EKU (emailProtection)"), "{out}");

    // A file that is not a certificate: a plain sentence, no parser internals.
    let err = env.fails(&["inspect", "fleet/notes.txt"], 2);
    assert!(
        err.contains("not a certificate") && !err.contains("Der(") && !err.contains("Nom"),
        "{err}"
    );
    std::fs::write(
        env.path("trunc.der"),
        &std::fs::read(env.path("a.pem")).unwrap()[..0],
    )
    .unwrap();
    let der = env.openssl_ok(&["x509", "-in", "a.pem", "-outform", "DER", "-out", "a.der"]);
    let _ = der;
    let bytes = std::fs::read(env.path("a.der")).unwrap();
    std::fs::write(env.path("trunc.der"), &bytes[..bytes.len() / 2]).unwrap();
    let err = env.fails(&["inspect", "trunc.der"], 2);
    assert!(err.contains("truncated"), "{err}");
}

#[test]
fn any_eku_and_dual_eku_get_the_same_classic_verdict() {
    // RFC 5280 4.2.1.12: anyExtendedKeyUsage restricts nothing, so under the
    // classic purpose it is as acceptable as serverAuth+clientAuth; under the
    // draft both are ambiguous. A root without EKU restriction issues them.
    let env = env_with_parties();
    openssl_root_with(
        &env,
        "plain",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    for (name, eku) in [
        ("any", "anyExtendedKeyUsage"),
        ("dual", "serverAuth,clientAuth"),
    ] {
        openssl_signed(
            &env,
            "plain",
            name,
            &format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={eku}\nsubjectAltName=DNS:{name}.test"),
        );
    }
    openssl_signed(
        &env,
        "plain",
        "srv",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:srv.test",
    );
    for leaf in ["any.pem", "dual.pem"] {
        for purpose in ["server", "client"] {
            let v = json_exit(
                &env,
                &[
                    "verify",
                    "cert",
                    leaf,
                    "--trust",
                    "plain.pem",
                    "--purpose",
                    purpose,
                ],
                0,
            );
            assert_eq!(v["valid"], true, "{leaf} {purpose}: {v}");
        }
        let v = json_exit(
            &env,
            &[
                "verify",
                "cert",
                leaf,
                "--trust",
                "plain.pem",
                "--role",
                "device",
            ],
            1,
        );
        assert!(reasons(&v).contains("ambiguous"), "{v}");
        let v = json_exit(
            &env,
            &[
                "verify",
                "pair",
                "--initiator",
                leaf,
                "--responder",
                "srv.pem",
                "--trust",
                "plain.pem",
            ],
            1,
        );
        assert_eq!(v["initiator"]["chain_valid"], true, "{leaf}: {v}");
        assert!(!reasons(&v).contains("does not include"), "{leaf}: {v}");
    }
}

#[test]
fn the_docs_list_every_finding_code() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/verify.md"),
    )
    .unwrap();
    for code in mtlsca::verify::FINDING_CODES {
        assert!(
            doc.contains(&format!("| `{code}` |")),
            "docs/verify.md has no row for the finding code {code}"
        );
    }
}

#[test]
fn mtlscas_own_certificates_have_no_findings() {
    let env = env_with_parties();
    for leaf in ["a.pem", "b.pem", "alice.pem", "acme.pem"] {
        let v = json_exit(&env, &["verify", "cert", leaf, "--strict"], 0);
        assert_eq!(v["findings"], serde_json::json!([]), "{leaf}: {v}");
    }
    let v = json_exit(
        &env,
        &[
            "verify",
            "pair",
            "--initiator",
            "alice.pem",
            "--responder",
            "b.pem",
            "--strict",
        ],
        0,
    );
    assert_eq!(v["findings"], serde_json::json!([]), "{v}");
}

#[test]
fn a_subject_email_address_is_held_to_email_constraints() {
    // rustls-webpki checks SAN names only: an emailAddress in the subject would
    // escape an rfc822Name constraint (RFC 5280 4.2.1.10 applies them to it).
    let env = Env::new();
    openssl_root_with(
        &env,
        "mailroot",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
            "nameConstraints=critical,permitted;email:example.test,permitted;DNS:srv.test",
        ],
    );
    for (name, email, ok) in [
        ("inside", "ok@example.test", true),
        ("outside", "eve@evil.test", false),
    ] {
        env.openssl_csr(
            &format!("{name}.key"),
            &format!("/CN=srv/emailAddress={email}"),
            &[],
            &["-out", &format!("{name}.csr")],
        );
        std::fs::write(
            env.path(&format!("{name}.ext")),
            "[v3]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:srv.test\nauthorityKeyIdentifier=keyid\n",
        )
        .unwrap();
        env.openssl_ok(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "mailroot.pem",
            "-CAkey",
            "mailroot.key",
            "-set_serial",
            "0x2002",
            "-days",
            "30",
            "-extfile",
            &format!("{name}.ext"),
            "-extensions",
            "v3",
            "-out",
            &format!("{name}.pem"),
        ]);
        let pem = format!("{name}.pem");
        let v = json_exit(
            &env,
            &[
                "verify",
                "cert",
                &pem,
                "--trust",
                "mailroot.pem",
                "--role",
                "device",
            ],
            if ok { 0 } else { 1 },
        );
        if !ok {
            assert!(reasons(&v).contains("subject emailAddress"), "{v}");
        }
        let ossl = env.openssl(&["verify", "-CAfile", "mailroot.pem", &pem]);
        assert_eq!(
            ossl.status.success(),
            ok,
            "OpenSSL on {email}: {}",
            text(&ossl)
        );
    }
}

#[test]
fn the_rustls_policy_accepts_what_tls_stacks_accept_unless_strict() {
    use mtlsca::verify::rustls_verifiers::DraftPolicy;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, UnixTime};
    let env = Env::new();
    openssl_root_with(
        &env,
        "easyroot",
        &["basicConstraints=CA:TRUE", "keyUsage=keyCertSign,cRLSign"],
    );
    openssl_signed(
        &env,
        "easyroot",
        "srv",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:srv.test",
    );
    let pem = |f: &str| CertificateDer::from_pem_file(env.path(f)).unwrap();
    let policy = DraftPolicy::new(vec![pem("easyroot.pem")]);
    let now = UnixTime::now();
    assert!(policy.check(&pem("srv.pem"), &[], now, None).is_ok());
    let err = policy
        .strict(true)
        .check(&pem("srv.pem"), &[], now, None)
        .unwrap_err();
    assert!(err.contains("basicConstraints is not critical"), "{err}");
}
