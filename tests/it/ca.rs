//! The issuing side: init, profiles, issue, sign, refusals, store, cross-checked
//! with OpenSSL.

use crate::common::*;

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// `openssl verify` of a leaf against root + one issuing CA with a purpose.
fn verify(env: &Env, leaf: &str, issuing: &str, purpose: &str) -> std::process::Output {
    env.openssl(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        &format!("ca/{issuing}"),
        "-purpose",
        purpose,
        leaf,
    ])
}

#[test]
fn init_creates_the_hierarchy_with_private_files() {
    let env = Env::new();
    let v = env.json(&["init", "--name", "Acme"]);
    assert_eq!(v["key_type"], "ecdsa-p256");
    let ca = env.ca_dir();
    for f in ["root.pem", "device-ca.pem", "entity-ca.pem", "ca.toml"] {
        assert!(ca.join(f).is_file(), "{f}");
    }
    assert_eq!(mode(&ca.join("private")), 0o700);
    for k in ["root.key", "device-ca.key", "entity-ca.key"] {
        assert_eq!(mode(&ca.join("private").join(k)), 0o600, "{k}");
    }
    for p in ["device", "workload", "person", "organization"] {
        assert!(
            ca.join("profiles").join(format!("{p}.toml")).is_file(),
            "{p}"
        );
    }
    assert!(ca.join("db").is_dir());

    // The root: CA, pathlen 1, certSign + cRLSign.
    let root = env.x509_text("ca/root.pem");
    assert!(root.contains("CA:TRUE, pathlen:1"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    // The issuing CAs: pathlen 0 and one TLS EKU each.
    let dev = env.x509_text("ca/device-ca.pem");
    assert!(dev.contains("CA:TRUE, pathlen:0"), "{dev}");
    assert!(dev.contains("TLS Web Server Authentication"));
    assert!(!dev.contains("TLS Web Client Authentication"));
    let ent = env.x509_text("ca/entity-ca.pem");
    assert!(ent.contains("CA:TRUE, pathlen:0"));
    assert!(ent.contains("TLS Web Client Authentication"));
    assert!(!ent.contains("TLS Web Server Authentication"));
    for issuing in ["device-ca.pem", "entity-ca.pem"] {
        env.openssl_ok(&["verify", "-CAfile", "ca/root.pem", &format!("ca/{issuing}")]);
    }
}

#[test]
fn init_refuses_an_existing_ca_and_commands_need_one() {
    let env = Env::with_ca();
    let before = std::fs::read(env.ca_dir().join("root.pem")).unwrap();
    let err = env.fails(&["init"], 3);
    assert!(
        err.contains("error:") && err.contains("already holds a CA"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(env.ca_dir().join("root.pem")).unwrap(),
        before
    );

    let empty = Env::new();
    let err = empty.fails(&["issue", "device", "--dns", "a.test"], 3);
    assert!(err.contains("no CA in"), "{err}");
    let err = empty.fails(&["list"], 3);
    assert!(err.contains("error:"), "{err}");
}

#[test]
fn init_with_other_key_types() {
    for kt in ["ecdsa-p384", "ed25519"] {
        let env = Env::new();
        env.ok(&["init", "--key-type", kt]);
        env.ok(&["issue", "device", "--dns", "a.test", "--out", "a"]);
        env.openssl_ok(&[
            "verify",
            "-CAfile",
            "ca/root.pem",
            "-untrusted",
            "ca/device-ca.pem",
            "a.pem",
        ]);
        env.openssl_ok(&["pkey", "-in", "ca/private/root.key", "-noout"]);
    }
}

#[test]
fn device_leaf_is_server_auth_only_and_verifies_as_sslserver() {
    let env = Env::with_ca();
    let v = env.json(&[
        "issue",
        "device",
        "--dns",
        "web-01.corp.internal",
        "--ip",
        "10.0.0.11",
        "--out",
        "web",
    ]);
    assert_eq!(v["role"], "device");
    assert_eq!(v["profile"], "device");
    assert_eq!(v["status"], "issued");
    for key in [
        "serial",
        "subject",
        "names",
        "not_before",
        "not_after",
        "sha256",
        "files",
    ] {
        assert!(!v[key].is_null(), "issue --json lacks {key}: {v}");
    }
    let serial = v["serial"].as_str().unwrap();
    assert_eq!(serial.len(), 32);
    assert!(serial
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(mode(&env.path("web.key")), 0o600);

    let t = env.x509_text("web.pem");
    assert!(t.contains("TLS Web Server Authentication"), "{t}");
    assert!(!t.contains("Client Authentication"), "{t}");
    assert!(
        t.contains("DNS:web-01.corp.internal, IP Address:10.0.0.11"),
        "{t}"
    );
    assert!(t.contains("CA:FALSE"));
    assert!(t.contains("Authority Key Identifier"));
    assert!(t.contains("Digital Signature"));
    assert!(!t.contains("rcgen"), "rcgen's default DN leaked: {t}");
    assert!(t.contains("Subject: CN = web-01.corp.internal"), "{t}");

    let out = verify(&env, "web.pem", "device-ca.pem", "sslserver");
    assert_eq!(code(&out), 0, "{}", text(&out));
    // A device is not a client in the classic sense: OpenSSL refuses it as sslclient.
    let out = verify(&env, "web.pem", "device-ca.pem", "sslclient");
    assert_ne!(code(&out), 0);
    // The chain file holds leaf + issuing CA.
    let chain = std::fs::read_to_string(env.path("web.chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "web.chain.pem",
        "web.pem",
    ]);
    // The key matches the certificate.
    let pk_cert = env.openssl_ok(&["x509", "-in", "web.pem", "-noout", "-pubkey"]);
    let pk_key = env.openssl_ok(&["pkey", "-in", "web.key", "-pubout"]);
    assert_eq!(pk_cert, pk_key);
}

#[test]
fn person_leaf_is_client_auth_only_and_verifies_as_sslclient() {
    let env = Env::with_ca();
    env.ok(&[
        "issue",
        "person",
        "--cn",
        "Alice Example",
        "--email",
        "alice@corp.example",
        "--out",
        "alice",
    ]);
    let t = env.x509_text("alice.pem");
    assert!(t.contains("TLS Web Client Authentication"), "{t}");
    assert!(!t.contains("Server Authentication"), "{t}");
    assert!(t.contains("email:alice@corp.example"));
    assert!(t.contains("CN = Alice Example"));
    let out = verify(&env, "alice.pem", "entity-ca.pem", "sslclient");
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[test]
fn organization_leaf_carries_o_and_workload_its_uri() {
    let env = Env::with_ca();
    env.ok(&[
        "issue",
        "organization",
        "--org",
        "Acme Corp",
        "--country",
        "DE",
        "--out",
        "acme",
    ]);
    let t = env.x509_text("acme.pem");
    assert!(t.contains("C = DE, O = Acme Corp"), "{t}");
    assert!(t.contains("TLS Web Client Authentication"));
    assert_eq!(
        code(&verify(&env, "acme.pem", "entity-ca.pem", "sslclient")),
        0
    );

    let uri = "spiffe://corp.internal/ns/prod/sa/web";
    let v = env.json(&["issue", "workload", "--uri", uri, "--out", "wl"]);
    let t = env.x509_text("wl.pem");
    assert!(t.contains(&format!("URI:{uri}")), "{t}");
    assert!(t.contains("TLS Web Server Authentication"));
    // 24 h default validity.
    let nb = time::OffsetDateTime::parse(
        v["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let na = time::OffsetDateTime::parse(
        v["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(na - nb, time::Duration::hours(24));
    assert_eq!(
        code(&verify(&env, "wl.pem", "device-ca.pem", "sslserver")),
        0
    );
}

fn make_csr(env: &Env, name: &str, newkey: &[&str], subj: &str, exts: &[&str]) {
    let mut args = vec!["req", "-new", "-nodes", "-keyout"];
    let key = format!("{name}.key");
    let out = format!("{name}.csr");
    args.push(&key);
    args.extend_from_slice(newkey);
    args.extend_from_slice(&["-subj", subj, "-out", &out]);
    let mut ext_args = Vec::new();
    for e in exts {
        ext_args.push("-addext".to_string());
        ext_args.push(e.to_string());
    }
    let ext_refs: Vec<&str> = ext_args.iter().map(String::as_str).collect();
    args.extend_from_slice(&ext_refs);
    env.openssl_ok(&args);
}

#[test]
fn openssl_csrs_are_signed_and_verify() {
    let env = Env::with_ca();
    make_csr(
        &env,
        "rsa",
        &["-newkey", "rsa:2048"],
        "/CN=rsa.test",
        &["subjectAltName=DNS:rsa.test"],
    );
    make_csr(
        &env,
        "p384",
        &[
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-sha256",
        ],
        "/CN=p384.test",
        &["subjectAltName=DNS:p384.test"],
    );
    make_csr(
        &env,
        "ed",
        &["-newkey", "ed25519"],
        "/CN=Eve Example",
        &["subjectAltName=email:eve@corp.example"],
    );

    env.ok(&["sign", "device", "--csr", "rsa.csr", "--out", "rsa.pem"]);
    assert_eq!(
        code(&verify(&env, "rsa.pem", "device-ca.pem", "sslserver")),
        0
    );
    let t = env.x509_text("rsa.pem");
    assert!(
        t.contains("Digital Signature, Key Encipherment"),
        "RSA device keys get keyEncipherment: {t}"
    );

    env.ok(&["sign", "device", "--csr", "p384.csr", "--out", "p384.pem"]);
    assert_eq!(
        code(&verify(&env, "p384.pem", "device-ca.pem", "sslserver")),
        0
    );
    assert!(env.x509_text("p384.pem").contains("NIST CURVE: P-384"));

    // stdin → stdout
    let csr = std::fs::read(env.path("ed.csr")).unwrap();
    let out = env.run_stdin(&["sign", "person", "--csr", "-", "--out", "-"], &csr);
    assert_eq!(code(&out), 0, "{}", text(&out));
    std::fs::write(env.path("ed.pem"), &out.stdout).unwrap();
    assert_eq!(
        code(&verify(&env, "ed.pem", "entity-ca.pem", "sslclient")),
        0
    );
    // Leaf keys of CSRs are never stored, but the certificates are.
    assert_eq!(env.store_count(), 3);
}

#[test]
fn bad_csrs_are_refused_with_no_output() {
    let env = Env::with_ca();
    make_csr(
        &env,
        "dual",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=d.test",
        &[
            "subjectAltName=DNS:d.test",
            "extendedKeyUsage=serverAuth,clientAuth",
        ],
    );
    make_csr(
        &env,
        "ca",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=c.test",
        &[
            "subjectAltName=DNS:c.test",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    std::fs::write(env.path("junk.csr"), b"this is not a CSR at all\n").unwrap();
    // Tamper: flip a bit inside the signed part of a good CSR.
    make_csr(
        &env,
        "good",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=g.test",
        &["subjectAltName=DNS:g.test"],
    );
    let der = env
        .openssl(&["req", "-in", "good.csr", "-outform", "DER"])
        .stdout;
    let mut tampered = der.clone();
    let at = tampered.len() / 3;
    tampered[at] ^= 0x01;
    std::fs::write(env.path("tampered.csr"), &tampered).unwrap();
    let mut truncated = std::fs::read_to_string(env.path("good.csr")).unwrap();
    truncated.truncate(truncated.len() / 2);
    std::fs::write(env.path("truncated.csr"), truncated).unwrap();

    let cases: &[(&str, i32, &str)] = &[
        ("dual.csr", 1, "serverAuth + clientAuth"),
        ("ca.csr", 1, "CA:TRUE"),
        ("junk.csr", 2, "CSR"),
        ("tampered.csr", 2, "CSR"),
        ("truncated.csr", 2, "CSR"),
        ("missing.csr", 2, "missing.csr"),
    ];
    for (file, want, needle) in cases {
        let err = env.fails(
            &["sign", "device", "--csr", file, "--out", "out.pem"],
            *want,
        );
        assert!(
            err.starts_with("error:") && err.contains(needle),
            "{file}: {err}"
        );
        assert!(!env.path("out.pem").exists(), "{file} left an output file");
    }
    // The DER of the good CSR is accepted (DER input works).
    std::fs::write(env.path("good.der"), &der).unwrap();
    env.ok(&["sign", "device", "--csr", "good.der", "--out", "good.pem"]);
    assert_eq!(env.store_count(), 1);
}

/// Each refusal of the design: exit 1, a message naming the rule, no files, no record.
#[test]
fn refusals_name_the_rule_and_change_nothing() {
    let env = Env::new();
    env.ok(&[
        "init",
        "--permit-dns",
        "corp.internal",
        "--permit-ip",
        "10.0.0.0/8",
    ]);
    make_csr(
        &env,
        "weak",
        &["-newkey", "rsa:1024"],
        "/CN=w.corp.internal",
        &["subjectAltName=DNS:w.corp.internal"],
    );
    make_csr(
        &env,
        "upn",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=u.corp.internal",
        &["subjectAltName=DNS:u.corp.internal,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:bob@corp.example"],
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "issue",
                "device",
                "--dns",
                "a.corp.internal",
                "--email",
                "a@corp.example",
            ],
            "device certificate cannot carry email",
        ),
        (&["sign", "device", "--csr", "upn.csr"], "UPN"),
        (
            &[
                "issue",
                "person",
                "--cn",
                "Alice",
                "--email",
                "a@corp.example",
                "--dns",
                "a.corp.internal",
            ],
            "entity certificate cannot carry DNS",
        ),
        (
            &[
                "issue",
                "person",
                "--cn",
                "Alice",
                "--email",
                "a@corp.example",
                "--ip",
                "10.0.0.1",
            ],
            "entity certificate cannot carry IP",
        ),
        (&["issue", "device"], "no identity"),
        (&["issue", "person", "--cn", "Alice"], "no identity"),
        (
            &["issue", "organization", "--cn", "Acme"],
            "requires organizationName",
        ),
        (
            &["issue", "device", "--dns", "*.corp.internal"],
            "wildcards are not allowed",
        ),
        (
            &["issue", "device", "--dns", "evil.example"],
            "outside the CA's name constraints",
        ),
        (
            &["issue", "device", "--ip", "192.0.2.1"],
            "outside the CA's name constraints",
        ),
        (
            &[
                "issue",
                "device",
                "--dns",
                "a.corp.internal",
                "--validity",
                "398d",
            ],
            "maximum of 397d",
        ),
        (&["sign", "device", "--csr", "weak.csr"], "RSA-1024"),
    ];
    for (args, needle) in cases {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--out", "refused"]);
        let err = env.fails(&a, 1);
        assert!(
            err.starts_with("error: refused") && err.contains(needle),
            "{args:?}: {err}"
        );
        for f in ["refused", "refused.key", "refused.pem", "refused.chain.pem"] {
            assert!(!env.path(f).exists(), "{args:?} wrote {f}");
        }
        assert_eq!(env.store_count(), 0, "{args:?} changed the store");
    }
    // The same names inside the constraints are fine, and the root carries them.
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "a.corp.internal",
        "--ip",
        "10.1.2.3",
        "--out",
        "ok",
    ]);
    let root = env.x509_text("ca/root.pem");
    assert!(
        root.contains("Permitted") && root.contains("DNS:corp.internal"),
        "{root}"
    );
    assert_eq!(
        code(&verify(&env, "ok.pem", "device-ca.pem", "sslserver")),
        0
    );
}

#[test]
fn bad_usage_is_exit_2() {
    let env = Env::with_ca();
    let cases: &[(&[&str], &str)] = &[
        (
            &["issue", "device", "--ip", "999.1.1.1"],
            "not an IP address",
        ),
        (
            &["issue", "device", "--dns", "a.test", "--validity", "soon"],
            "--validity",
        ),
        (&["issue", "device", "--dns", "bad name.test"], "DNS name"),
        (
            &["issue", "nosuch", "--dns", "a.test"],
            "profile `nosuch`: there is no profile",
        ),
        (
            &["issue", "device", "--dns", "a.test", "--key-type", "rsa"],
            "key type",
        ),
        (
            &["list", "--expiring-within", "a while"],
            "--expiring-within",
        ),
        (&["show", "nosuch/web.pem"], "no such file"),
        (&["frobnicate"], "frobnicate"),
    ];
    for (args, needle) in cases {
        let err = env.fails(args, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(env.store_count(), 0);
    }
}

#[test]
fn existing_files_are_never_overwritten() {
    let env = Env::with_ca();
    std::fs::write(env.path("web.key"), b"precious").unwrap();
    let err = env.fails(&["issue", "device", "--dns", "a.test", "--out", "web"], 2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(env.path("web.key")).unwrap(), b"precious");
    assert_eq!(env.store_count(), 0);
}

#[test]
fn request_id_makes_issue_idempotent() {
    let env = Env::with_ca();
    let a = env.json(&[
        "issue",
        "device",
        "--dns",
        "a.test",
        "--out",
        "a",
        "--request-id",
        "r-1",
    ]);
    let b = env.json(&[
        "issue",
        "device",
        "--dns",
        "a.test",
        "--out",
        "a",
        "--request-id",
        "r-1",
    ]);
    assert_eq!(a["serial"], b["serial"]);
    assert_eq!(b["status"], "exists");
    assert_eq!(env.store_count(), 1);
    // Files lost since are rewritten from the store (the key cannot be).
    std::fs::remove_file(env.path("a.pem")).unwrap();
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "a.test",
        "--out",
        "a",
        "--request-id",
        "r-1",
    ]);
    assert!(env.path("a.pem").exists());
    assert_eq!(env.store_count(), 1);
}

#[test]
fn list_and_show_read_the_store() {
    let env = Env::with_ca();
    let web = env.json(&[
        "issue",
        "device",
        "--dns",
        "web.corp.internal",
        "--out",
        "web",
    ]);
    env.ok(&[
        "issue",
        "workload",
        "--uri",
        "spiffe://corp.internal/api",
        "--out",
        "api",
    ]);
    env.ok(&[
        "issue",
        "person",
        "--cn",
        "Alice Example",
        "--email",
        "alice@corp.example",
        "--out",
        "alice",
    ]);

    let all = env.json(&["list"]);
    assert_eq!(all.as_array().unwrap().len(), 3);
    for r in all.as_array().unwrap() {
        for key in [
            "serial",
            "role",
            "profile",
            "subject",
            "names",
            "not_before",
            "not_after",
            "status",
            "sha256",
            "request_id",
        ] {
            assert!(r.get(key).is_some(), "list record lacks {key}: {r}");
        }
        assert_eq!(r["status"], "valid");
    }
    assert_eq!(
        env.json(&["list", "--role", "device"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        env.json(&["list", "--role", "entity"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["list", "--name", "*.corp.internal"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["list", "--name", "alice"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["list", "--profile", "workload"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The workload lives 24 h; the others months.
    assert_eq!(
        env.json(&["list", "--expiring-within", "2d"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        env.json(&["list", "--expiring-within", "400d"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        env.json(&["list", "--status", "revoked"])
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let serial = web["serial"].as_str().unwrap();
    // Serial input: any case, colons, leading zeros.
    let upper_colons: String = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for q in [
        serial.to_string(),
        upper_colons,
        format!("00{serial}"),
        web["sha256"].as_str().unwrap().to_string(),
    ] {
        let v = env.json(&["show", &q]);
        assert_eq!(v["serial"], serial, "show {q}");
    }
    let pem = env.ok(&["show", serial, "--pem"]);
    assert_eq!(pem, std::fs::read_to_string(env.path("web.pem")).unwrap());
    let err = env.fails(&["show", "01"], 1);
    assert!(err.contains("no certificate"), "{err}");
    let text = env.ok(&["show", serial]);
    assert!(text.contains("audit") && text.contains("issue"), "{text}");
}

#[test]
fn profiles_list_show_check() {
    let env = Env::with_ca();
    let list = env.json(&["profile", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["device", "organization", "person", "workload"]);
    let shown = env.ok(&["profile", "show", "device"]);
    assert!(
        shown.contains("role = \"device\"") && shown.contains("max = \"397d\""),
        "{shown}"
    );
    std::fs::write(env.path("shown.toml"), &shown).unwrap();
    env.ok(&["profile", "check", "shown.toml"]);

    std::fs::write(env.path("dual.toml"), "name = \"dual\"\nrole = \"device\"\nextended_key_usage = [\"server-auth\", \"client-auth\"]\n").unwrap();
    let err = env.fails(&["profile", "check", "dual.toml"], 1);
    assert!(
        err.contains("dual.toml") && err.contains("extended_key_usage") && err.contains("together"),
        "{err}"
    );
    std::fs::write(
        env.path("any.toml"),
        "name = \"any\"\nrole = \"entity\"\nkind = \"person\"\nextended_key_usage = [\"any\"]\n",
    )
    .unwrap();
    let err = env.fails(&["profile", "check", "any.toml"], 1);
    assert!(err.contains("anyExtendedKeyUsage"), "{err}");
    std::fs::write(env.path("srv.toml"), "name = \"srv\"\nrole = \"entity\"\nkind = \"person\"\nextended_key_usage = [\"server-auth\"]\n").unwrap();
    assert!(env
        .fails(&["profile", "check", "srv.toml"], 1)
        .contains("serverAuth on an entity"));
    std::fs::write(
        env.path("cli.toml"),
        "name = \"cli\"\nrole = \"device\"\nextended_key_usage = [\"client-auth\"]\n",
    )
    .unwrap();
    assert!(env
        .fails(&["profile", "check", "cli.toml"], 1)
        .contains("clientAuth on a device"));
    std::fs::write(
        env.path("unknown.toml"),
        "name = \"u\"\nrole = \"device\"\nflavour = 1\n",
    )
    .unwrap();
    // The answer is "no" (exit 1) for a syntax error as for a rule (issue 10).
    let err = env.fails(&["profile", "check", "unknown.toml"], 1);
    assert!(
        err.contains("unknown.toml") && err.contains("flavour"),
        "{err}"
    );

    // A CA's own profile: a copy edited to allow wildcards is used at issuance.
    let dir = env.ca_dir().join("profiles");
    std::fs::write(
        dir.join("wild.toml"),
        "name = \"wild\"\nrole = \"device\"\nallow_wildcards = true\npermitted = [\"corp.internal\"]\n",
    )
    .unwrap();
    env.ok(&["issue", "wild", "--dns", "*.corp.internal", "--out", "wild"]);
    assert!(env.x509_text("wild.pem").contains("DNS:*.corp.internal"));
    let err = env.fails(
        &["issue", "wild", "--dns", "*.other.internal", "--out", "w2"],
        1,
    );
    assert!(err.contains("permitted"), "{err}");
    // An ambiguous profile in the CA is refused at load.
    std::fs::write(
        dir.join("bad.toml"),
        "name = \"bad\"\nrole = \"device\"\nextended_key_usage = [\"any\"]\n",
    )
    .unwrap();
    let err = env.fails(&["issue", "bad", "--dns", "a.test"], 1);
    assert!(
        err.contains("bad.toml") && err.contains("anyExtendedKeyUsage"),
        "{err}"
    );
}

#[test]
fn four_concurrent_issues_all_succeed() {
    let env = Env::with_ca();
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.cmd()
                .args([
                    "--json",
                    "issue",
                    "device",
                    "--dns",
                    &format!("c{i}.test"),
                    "--out",
                    &format!("c{i}"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut serials = std::collections::HashSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(code(&out), 0, "{}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        serials.insert(v["serial"].as_str().unwrap().to_string());
    }
    assert_eq!(serials.len(), 4);
    assert_eq!(env.store_count(), 4);
}

#[test]
fn quickstart_builds_a_demo() {
    let env = Env::new();
    let out = env.ok(&["quickstart", "demo"]);
    assert!(out.contains("[1]"), "{out}");
    // Both pairs verified, each with a real handshake.
    assert!(out.contains("connection: server-to-server"), "{out}");
    assert!(out.contains("connection: client-to-server"), "{out}");
    assert_eq!(out.matches("verdict: VALID").count(), 2, "{out}");
    assert_eq!(out.matches("both ends authenticated").count(), 2, "{out}");
    for f in [
        "demo/ca/root.pem",
        "demo/web.pem",
        "demo/web.key",
        "demo/api.pem",
        "demo/alice.pem",
    ] {
        assert!(env.path(f).exists(), "{f}");
    }
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "demo/ca/root.pem",
        "-untrusted",
        "demo/web.chain.pem",
        "demo/web.pem",
    ]);
    // Without a directory it picks a fresh one each time.
    env.ok(&["quickstart"]);
    env.ok(&["quickstart"]);
    assert!(env.path("mtlsca-quickstart/ca/root.pem").exists());
    assert!(env.path("mtlsca-quickstart-2/ca/root.pem").exists());
}
