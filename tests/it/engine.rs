//! The issuance engine and the rulebook (issue 9): the holes a hostile review
//! found, each reproduced through the CLI, a CSR and a manifest; every rule code
//! seen in JSON through `issue`, `sign`, `batch` or `profile check`; a 300-entry
//! batch cross-checked with OpenSSL and `verify cert --role`.

use std::collections::BTreeSet;

use crate::common::*;

/// Run with `--json`; the rule codes of the failure (JSON error object on stdout,
/// or the reasons of batch JSON lines).
fn rules_of(env: &Env, args: &[&str]) -> (i32, BTreeSet<String>) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        text(&out)
    );
    let mut rules = BTreeSet::new();
    let mut collect = |v: &serde_json::Value| {
        let reasons = v
            .get("error")
            .and_then(|e| e.get("reasons"))
            .or_else(|| v.get("reasons"));
        for r in reasons.and_then(|r| r.as_array()).into_iter().flatten() {
            if let Some(rule) = r["rule"].as_str() {
                rules.insert(rule.to_string());
            }
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
        }
    };
    match serde_json::from_str::<serde_json::Value>(&stdout) {
        Ok(v) => collect(&v),
        Err(_) => {
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                collect(&v);
            }
        }
    }
    (code(&out), rules)
}

fn expect_rule(env: &Env, args: &[&str], want_code: i32, rule: &str) {
    let (c, rules) = rules_of(env, args);
    assert_eq!(c, want_code, "{args:?}: exit {c}, rules {rules:?}");
    assert!(rules.contains(rule), "{args:?}: {rules:?} lacks {rule}");
}

/// `openssl req` with a new key: `name.key`, `name.csr`.
fn csr(env: &Env, name: &str, newkey: &[&str], subj: &str, exts: &[&str], extra: &[&str]) {
    let key = format!("{name}.key");
    let out = format!("{name}.csr");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &key, "-out", &out, "-subj", subj,
    ];
    args.extend_from_slice(newkey);
    for e in exts {
        args.push("-addext");
        args.push(e);
    }
    args.extend_from_slice(extra);
    env.openssl_ok(&args);
}

const EC: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn write(env: &Env, rel: &str, text: &str) {
    std::fs::write(env.path(rel), text).unwrap();
}

fn manifest(env: &Env, name: &str, entries: &str) -> String {
    write(env, name, entries);
    name.to_string()
}

// --- the review's findings -------------------------------------------------

#[test]
fn a_device_cn_is_held_to_its_dns_names_and_the_constraints() {
    let env = Env::constrained();
    // 1. CN=evil.com beside an IP inside the constraints.
    expect_rule(
        &env,
        &["issue", "device", "--ip", "10.0.0.5", "--cn", "evil.com"],
        1,
        "device-cn-not-a-dns-name",
    );
    expect_rule(
        &env,
        &[
            "issue",
            "device",
            "--dns",
            "web.corp.internal",
            "--cn",
            "192.168.1.1",
        ],
        1,
        "device-cn-not-a-dns-name",
    );
    // Through a CSR: the requester chooses the subject.
    csr(
        &env,
        "evil",
        EC,
        "/CN=evil.com",
        &["subjectAltName=IP:10.0.0.9"],
        &[],
    );
    expect_rule(
        &env,
        &["sign", "device", "--csr", "evil.csr", "--out", "evil.pem"],
        1,
        "device-cn-not-a-dns-name",
    );
    assert!(!env.path("evil.pem").exists());
    // Through a manifest.
    let m = manifest(
        &env,
        "m.toml",
        "[[certificate]]\nid = \"e\"\nprofile = \"device\"\nip = [\"10.0.0.5\"]\ncn = \"evil.com\"\n",
    );
    expect_rule(
        &env,
        &["batch", "--manifest", &m, "--out-dir", "o"],
        1,
        "device-cn-not-a-dns-name",
    );
    assert_eq!(env.store_count(), 0);
    // A CN that repeats a DNS name is fine, and OpenSSL agrees with the result.
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "web.corp.internal",
        "--cn",
        "WEB.corp.internal",
        "--out",
        "web",
    ]);
    let t = env.x509_text("web.pem");
    assert!(
        t.contains("CN = web.corp.internal") || t.contains("CN=web.corp.internal"),
        "{t}"
    );
}

#[test]
fn an_ip_only_device_has_no_cn_and_verifies_in_openssl() {
    let env = Env::constrained();
    env.ok(&["issue", "device", "--ip", "10.0.0.11", "--out", "ip"]);
    let t = env.x509_text("ip.pem");
    // The subject is empty: no CN that OpenSSL could read as a host name.
    let out = env.openssl(&["x509", "-in", "ip.pem", "-noout", "-subject"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "subject=",
        "{t}"
    );
    assert!(
        t.contains("X509v3 Subject Alternative Name: critical"),
        "{t}"
    );
    let out = env.openssl(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "-verify_ip",
        "10.0.0.11",
        "ip.pem",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // A CSR asking for CN=10.0.0.9 beside that IP is refused, not fixed.
    csr(
        &env,
        "ipcn",
        EC,
        "/CN=10.0.0.9",
        &["subjectAltName=IP:10.0.0.9"],
        &[],
    );
    expect_rule(
        &env,
        &["sign", "device", "--csr", "ipcn.csr"],
        1,
        "device-cn-not-a-dns-name",
    );
}

#[test]
fn batch_checks_every_entry_like_issue() {
    let env = Env::constrained();
    // 300 entries and one with 10,000 DNS names: bad input, nothing issued.
    let mut m = String::new();
    for i in 0..300 {
        m.push_str(&format!(
            "[[certificate]]\nid = \"e{i}\"\nprofile = \"device\"\ndns = [\"e{i}.corp.internal\"]\n"
        ));
    }
    let big: Vec<String> = (0..10_000)
        .map(|i| format!("\"n{i}.corp.internal\""))
        .collect();
    m.push_str(&format!(
        "[[certificate]]\nid = \"big\"\nprofile = \"device\"\ndns = [{}]\n",
        big.join(",")
    ));
    write(&env, "big.toml", &m);
    expect_rule(
        &env,
        &["batch", "--manifest", "big.toml", "--out-dir", "o"],
        2,
        "request-too-large",
    );
    assert_eq!(env.store_count(), 0);
    // `issue` says the same.
    let mut args = vec!["issue".to_string(), "device".into()];
    for i in 0..101 {
        args.push("--dns".into());
        args.push(format!("n{i}.corp.internal"));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    expect_rule(&env, &a, 2, "request-too-large");
    // A CSR with 10,000 names is bad input too (exit 2), not a CA state problem.
    let sans: Vec<String> = (0..10_000)
        .map(|i| format!("DNS:n{i}.corp.internal"))
        .collect();
    write(
        &env,
        "sans.cnf",
        &format!(
            "[req]\ndistinguished_name=dn\nreq_extensions=ext\n[dn]\n[ext]\nsubjectAltName={}\n",
            sans.join(",")
        ),
    );
    csr(
        &env,
        "many",
        EC,
        "/CN=n0.corp.internal",
        &[],
        &["-config", "sans.cnf"],
    );
    expect_rule(
        &env,
        &["sign", "device", "--csr", "many.csr"],
        2,
        "request-too-large",
    );
}

#[test]
fn a_batch_entry_outside_the_constraints_is_refused_after_a_valid_one() {
    let env = Env::constrained();
    let m = manifest(
        &env,
        "m.toml",
        "[[certificate]]\nid = \"ok\"\nprofile = \"device\"\ndns = [\"ok.corp.internal\"]\n\
         [[certificate]]\nid = \"evil\"\nprofile = \"device\"\ndns = [\"evil.com\"]\n",
    );
    expect_rule(
        &env,
        &["batch", "--manifest", &m, "--out-dir", "o"],
        1,
        "name-outside-constraints",
    );
    assert_eq!(env.store_count(), 1);
    assert!(env.path("o/ok.pem").exists() && !env.path("o/evil.pem").exists());
}

#[test]
fn batch_ids_whose_files_collide_are_refused() {
    let env = Env::with_ca();
    let m = manifest(
        &env,
        "m.toml",
        "[[certificate]]\nid = \"web\"\nprofile = \"device\"\ndns = [\"web.test\"]\n\
         [[certificate]]\nid = \"web.chain\"\nprofile = \"device\"\ndns = [\"chain.test\"]\n",
    );
    expect_rule(
        &env,
        &["batch", "--manifest", &m, "--out-dir", "o"],
        2,
        "batch-id-collision",
    );
    assert_eq!(env.store_count(), 0);
    assert!(!env.path("o/web.chain.pem").exists());
}

#[test]
fn input_problems_are_bad_input_not_ca_state() {
    let env = Env::with_ca();
    // A missing output directory: exit 2 with a plain message, nothing recorded.
    let err = env.fails(
        &["issue", "device", "--dns", "a.test", "--out", "nodir/a"],
        2,
    );
    assert!(
        err.contains("does not exist") && !err.contains("partial"),
        "{err}"
    );
    assert_eq!(env.store_count(), 0);
    expect_rule(
        &env,
        &["issue", "device", "--dns", "a.test", "--out", "nodir/a"],
        2,
        "output-dir-missing",
    );
    // A dangling symbolic link at an output name: refused before anything is recorded.
    std::fs::create_dir(env.path("o")).unwrap();
    std::os::unix::fs::symlink("/nowhere", env.path("o/c.key")).unwrap();
    expect_rule(
        &env,
        &["issue", "device", "--dns", "c.test", "--out", "o/c"],
        2,
        "output-is-symlink",
    );
    assert_eq!(env.store_count(), 0);
    assert!(!env.path("o/.c.key.partial").exists());
}

#[test]
fn an_entity_cn_that_looks_like_a_host_is_refused() {
    let env = Env::with_ca();
    for cn in ["web.corp.internal.", "evil_host.com", "10.0.0.1", "[::1]"] {
        expect_rule(
            &env,
            &["issue", "person", "--cn", cn, "--email", "a@corp.example"],
            1,
            "entity-cn-is-a-host",
        );
    }
    env.ok(&[
        "issue",
        "person",
        "--cn",
        "J. R. R. Tolkien",
        "--email",
        "jrr@corp.example",
    ]);
}

#[test]
fn json_errors_are_one_object_with_kind_message_reasons() {
    let env = Env::with_ca();
    let out = env.run(&[
        "--json", "issue", "device", "--dns", "a.test", "--email", "a@b.test",
    ]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "refused");
    let r = &v["error"]["reasons"][0];
    assert_eq!(r["rule"], "name-kind-for-role");
    assert_eq!(r["field"], "email");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("--email `a@b.test`"),
        "{r}"
    );
    // A manifest names the key, not the flag.
    let m = manifest(
        &env,
        "m.toml",
        "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"x.test\"]\nemail = [\"a@b.test\"]\n",
    );
    let out = env.run(&["--json", "batch", "--manifest", &m, "--out-dir", "o"]);
    assert_eq!(code(&out), 1);
    let line: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(line["status"], "refused");
    assert!(
        line["reasons"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("email `a@b.test`"),
        "{line}"
    );
    // Other failures carry their kind; the exit code stays.
    let out = Env::new().run(&["--json", "list"]);
    assert_eq!(code(&out), 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "state");
}

// --- every rule code ----------------------------------------------------------

/// The rule codes docs/rules.md lists (its table of rule codes).
fn documented_rules() -> BTreeSet<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rules.md")).unwrap();
    let start = doc
        .find("<!-- rule-codes -->")
        .expect("docs/rules.md has the rule code table");
    let end = doc[start..].find("<!-- /rule-codes -->").unwrap() + start;
    doc[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect()
}

#[test]
fn every_rule_code_is_reported_in_json() {
    let env = Env::constrained();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut check = |args: &[&str], want_code: i32, rule: &str| {
        expect_rule(&env, args, want_code, rule);
        seen.insert(rule.to_string());
    };
    let dns = "a.corp.internal";
    // Names.
    check(
        &["issue", "device", "--dns", "a..corp.internal"],
        2,
        "name-syntax",
    );
    check(
        &["issue", "device", "--dns", dns, "--email", "a@b.test"],
        1,
        "name-kind-for-role",
    );
    check(
        &[
            "issue", "person", "--cn", "A", "--email", "a@b.test", "--dns", dns,
        ],
        1,
        "name-kind-for-role",
    );
    check(
        &["issue", "workload", "--ip", "10.0.0.1"],
        1,
        "name-kind-for-profile",
    );
    check(
        &["issue", "device", "--dns", "*.corp.internal"],
        1,
        "wildcard-not-allowed",
    );
    check(
        &["issue", "device", "--dns", "evil.com"],
        1,
        "name-outside-constraints",
    );
    check(&["issue", "device"], 1, "no-identity");
    let many: Vec<String> = (0..101)
        .map(|i| format!("--dns=n{i}.corp.internal"))
        .collect();
    let mut a = vec!["issue", "device"];
    a.extend(many.iter().map(String::as_str));
    check(&a, 2, "request-too-large");
    // Subject.
    check(
        &["issue", "organization", "--org", "Acme", "--country", "DEU"],
        2,
        "subject-syntax",
    );
    check(
        &[
            "issue",
            "workload",
            "--uri",
            "spiffe://corp.internal/x",
            "--country",
            "DE",
        ],
        1,
        "subject-attribute-forbidden",
    );
    check(
        &["issue", "person", "--email", "a@b.test"],
        1,
        "subject-attribute-required",
    );
    check(
        &["issue", "device", "--ip", "10.0.0.5", "--cn", "evil.com"],
        1,
        "device-cn-not-a-dns-name",
    );
    check(
        &[
            "issue",
            "person",
            "--cn",
            "web.corp.internal",
            "--email",
            "a@b.test",
        ],
        1,
        "entity-cn-is-a-host",
    );
    // Validity, request id, output, profile.
    check(
        &["issue", "device", "--dns", dns, "--validity", "soon"],
        2,
        "validity-syntax",
    );
    check(
        &["issue", "device", "--dns", dns, "--validity", "398d"],
        1,
        "validity-over-profile-max",
    );
    check(
        &["issue", "device", "--dns", dns, "--request-id", "a\u{1}b"],
        2,
        "request-id-syntax",
    );
    env.ok(&[
        "issue",
        "device",
        "--dns",
        "r1.corp.internal",
        "--request-id",
        "r1",
        "--out",
        "r1",
    ]);
    check(
        &[
            "issue",
            "person",
            "--cn",
            "A",
            "--email",
            "a@b.test",
            "--request-id",
            "r1",
            "--out",
            "r1b",
        ],
        1,
        "request-id-conflict",
    );
    // `renewal-of:` ids are the engine's own (a renewal carries what it replaces).
    check(
        &[
            "issue",
            "device",
            "--dns",
            dns,
            "--request-id",
            "renewal-of:0123456789abcdef",
        ],
        2,
        "request-id-reserved",
    );
    check(
        &[
            "issue",
            "device",
            "--dns",
            "r2.corp.internal",
            "--out",
            "r1",
        ],
        2,
        "output-exists",
    );
    check(
        &["issue", "device", "--dns", dns, "--out", "nodir/x"],
        2,
        "output-dir-missing",
    );
    std::os::unix::fs::symlink("/nowhere", env.path("l.key")).unwrap();
    check(
        &["issue", "device", "--dns", dns, "--out", "l"],
        2,
        "output-is-symlink",
    );
    check(
        &["issue", "nosuchprofile", "--dns", dns],
        2,
        "profile-unknown",
    );
    check(
        &["show", "ffffffffffffffffffffffffffffffff"],
        1,
        "not-found",
    );
    env.ok(&["revoke", "r1"]);
    check(&["revoke", "r1"], 1, "already-revoked");
    // A profile with `permitted` patterns and one longer than the issuing CA.
    write(
        &env,
        "ca/profiles/narrow.toml",
        "name = \"narrow\"\nrole = \"device\"\npermitted = [\"web.corp.internal\"]\n",
    );
    check(
        &["issue", "narrow", "--dns", "db.corp.internal"],
        1,
        "name-outside-profile",
    );
    write(
        &env,
        "ca/profiles/long.toml",
        "name = \"long\"\nrole = \"device\"\nvalidity = { default = \"90d\", max = \"10y\" }\n",
    );
    // The issuing CAs live 10y from init: 10y plus a day outlives them even when
    // init and issue run within the same second.
    check(
        &["issue", "long", "--dns", dns, "--validity", "3651d"],
        1,
        "validity-past-issuing-ca",
    );

    // CSRs.
    csr(
        &env,
        "upn",
        EC,
        "/CN=a.corp.internal",
        &["subjectAltName=DNS:a.corp.internal,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:u@corp"],
        &[],
    );
    check(
        &["sign", "device", "--csr", "upn.csr"],
        1,
        "name-type-unsupported",
    );
    csr(
        &env,
        "any",
        EC,
        "/CN=a.corp.internal",
        &[
            "subjectAltName=DNS:a.corp.internal",
            "extendedKeyUsage=anyExtendedKeyUsage",
        ],
        &[],
    );
    check(&["sign", "device", "--csr", "any.csr"], 1, "eku-any");
    csr(
        &env,
        "dual",
        EC,
        "/CN=a.corp.internal",
        &[
            "subjectAltName=DNS:a.corp.internal",
            "extendedKeyUsage=serverAuth,clientAuth",
        ],
        &[],
    );
    check(
        &["sign", "device", "--csr", "dual.csr"],
        1,
        "eku-server-and-client",
    );
    csr(
        &env,
        "client",
        EC,
        "/CN=a.corp.internal",
        &[
            "subjectAltName=DNS:a.corp.internal",
            "extendedKeyUsage=clientAuth",
        ],
        &[],
    );
    check(
        &["sign", "device", "--csr", "client.csr"],
        1,
        "eku-wrong-role",
    );
    csr(
        &env,
        "code",
        EC,
        "/CN=a.corp.internal",
        &[
            "subjectAltName=DNS:a.corp.internal",
            "extendedKeyUsage=codeSigning",
        ],
        &[],
    );
    check(
        &["sign", "device", "--csr", "code.csr"],
        1,
        "eku-not-in-profile",
    );
    csr(
        &env,
        "ca",
        EC,
        "/CN=a.corp.internal",
        &[
            "subjectAltName=DNS:a.corp.internal",
            "basicConstraints=critical,CA:TRUE",
        ],
        &[],
    );
    check(&["sign", "device", "--csr", "ca.csr"], 1, "csr-requests-ca");
    csr(
        &env,
        "crit",
        EC,
        "/CN=a.corp.internal",
        &[
            "subjectAltName=DNS:a.corp.internal",
            "1.2.3.4=critical,DER:05:00",
        ],
        &[],
    );
    check(
        &["sign", "device", "--csr", "crit.csr"],
        1,
        "csr-unknown-critical-extension",
    );
    write(
        &env,
        "junk.csr",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    );
    check(
        &["sign", "device", "--csr", "junk.csr"],
        2,
        "csr-unreadable",
    );
    // Two requests in one file: refused, not "the first one signed".
    let two = format!(
        "{}{}",
        std::fs::read_to_string(env.path("any.csr")).unwrap(),
        std::fs::read_to_string(env.path("dual.csr")).unwrap()
    );
    write(&env, "two.csr", &two);
    check(&["sign", "device", "--csr", "two.csr"], 2, "csr-unreadable");
    csr(
        &env,
        "ok",
        EC,
        "/CN=a.corp.internal",
        &["subjectAltName=DNS:a.corp.internal"],
        &["-outform", "DER"],
    );
    let mut der = std::fs::read(env.path("ok.csr")).unwrap();
    let n = der.len();
    der[n - 5] ^= 0x01;
    std::fs::write(env.path("tampered.csr"), der).unwrap();
    check(
        &["sign", "device", "--csr", "tampered.csr"],
        2,
        "csr-signature",
    );
    csr(
        &env,
        "sha1",
        EC,
        "/CN=a.corp.internal",
        &["subjectAltName=DNS:a.corp.internal"],
        &["-sha1"],
    );
    check(
        &["sign", "device", "--csr", "sha1.csr"],
        1,
        "csr-signature-algorithm",
    );
    csr(
        &env,
        "weak",
        &["-newkey", "rsa:1024"],
        "/CN=a.corp.internal",
        &["subjectAltName=DNS:a.corp.internal"],
        &[],
    );
    check(&["sign", "device", "--csr", "weak.csr"], 1, "key-too-weak");
    csr(
        &env,
        "p521",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
        "/CN=a.corp.internal",
        &["subjectAltName=DNS:a.corp.internal"],
        &[],
    );
    check(
        &["sign", "device", "--csr", "p521.csr"],
        1,
        "key-unsupported",
    );
    // The same rules through a CSR and a manifest, where they apply.
    csr(
        &env,
        "email",
        EC,
        "/CN=a.corp.internal",
        &["subjectAltName=DNS:a.corp.internal,email:a@b.test"],
        &[],
    );
    check(
        &["sign", "device", "--csr", "email.csr"],
        1,
        "name-kind-for-role",
    );
    csr(
        &env,
        "outside",
        EC,
        "/CN=evil.com",
        &["subjectAltName=DNS:evil.com"],
        &[],
    );
    check(
        &["sign", "device", "--csr", "outside.csr"],
        1,
        "name-outside-constraints",
    );
    csr(
        &env,
        "bad",
        EC,
        "/CN=x",
        &["subjectAltName=DNS:bad_name.corp.internal"],
        &[],
    );
    check(&["sign", "device", "--csr", "bad.csr"], 1, "name-syntax");

    // Batch manifests.
    let m = |env: &Env, name: &str, body: &str| manifest(env, name, body);
    let b1 = m(&env, "b1.toml", "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"x.corp.internal\"]\nemail = [\"a@b.test\"]\n");
    check(
        &["batch", "--manifest", &b1, "--out-dir", "ob"],
        1,
        "name-kind-for-role",
    );
    let b2 = m(
        &env,
        "b2.toml",
        "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"a..b\"]\n",
    );
    check(
        &["batch", "--manifest", &b2, "--out-dir", "ob"],
        2,
        "name-syntax",
    );
    let b3 = m(
        &env,
        "b3.toml",
        "[[certificate]]\nid = \"../x\"\nprofile = \"device\"\ndns = [\"x.corp.internal\"]\n",
    );
    check(
        &["batch", "--manifest", &b3, "--out-dir", "ob"],
        2,
        "batch-id-syntax",
    );
    let b4 = m(&env, "b4.toml", "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"x.corp.internal\"]\n[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"y.corp.internal\"]\n");
    check(
        &["batch", "--manifest", &b4, "--out-dir", "ob"],
        2,
        "batch-id-duplicate",
    );
    let b5 = m(&env, "b5.toml", "[[certificate]]\nid = \"w\"\nprofile = \"device\"\ndns = [\"w.corp.internal\"]\n[[certificate]]\nid = \"w.chain\"\nprofile = \"device\"\ndns = [\"v.corp.internal\"]\n");
    check(
        &["batch", "--manifest", &b5, "--out-dir", "ob"],
        2,
        "batch-id-collision",
    );
    let b6 = m(
        &env,
        "b6.toml",
        "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"evil.com\"]\n",
    );
    check(
        &["batch", "--manifest", &b6, "--out-dir", "ob"],
        1,
        "name-outside-constraints",
    );
    let b7 = m(
        &env,
        "b7.toml",
        "[[certificate]]\nid = \"x\"\nprofile = \"nosuch\"\ndns = [\"x.corp.internal\"]\n",
    );
    check(
        &["batch", "--manifest", &b7, "--out-dir", "ob"],
        2,
        "profile-unknown",
    );

    // Profiles, through `profile check` (exit 1: the answer is no).
    let profiles: &[(&str, &str)] = &[
        ("profile-syntax", "name = \"p\"\nrole = \"device\"\ncolour = \"red\"\n"),
        ("profile-name", "name = \"bad name\"\nrole = \"device\"\n"),
        ("profile-kind", "name = \"p\"\nrole = \"device\"\nkind = \"person\"\n"),
        ("profile-eku", "name = \"p\"\nrole = \"entity\"\nkind = \"person\"\nextended_key_usage = [\"client-auth\", \"email-protection\"]\n"),
        ("eku-wrong-role", "name = \"p\"\nrole = \"device\"\nextended_key_usage = [\"client-auth\"]\n"),
        ("eku-server-and-client", "name = \"p\"\nrole = \"device\"\nextended_key_usage = [\"server-auth\", \"client-auth\"]\n"),
        ("profile-smime", "name = \"p\"\nrole = \"device\"\nsmime = true\n"),
        ("profile-validity", "name = \"p\"\nrole = \"device\"\nvalidity = { default = \"2y\", max = \"1y\" }\n"),
        ("profile-subject", "name = \"p\"\nrole = \"entity\"\nkind = \"person\"\nsubject = { common_name = \"optional\" }\n"),
        ("profile-names", "name = \"p\"\nrole = \"device\"\nnames = { email = true }\n"),
        ("profile-wildcards", "name = \"p\"\nrole = \"device\"\nnames = { dns = false }\nallow_wildcards = true\n"),
        ("profile-permitted", "name = \"p\"\nrole = \"device\"\npermitted = [\"10.0.0.0/99\"]\n"),
        ("profile-crl-url", "name = \"p\"\nrole = \"device\"\ncrl_url = \"https://ca.corp.internal/crl/device.crl\"\n"),
    ];
    for (rule, text) in profiles {
        write(&env, "p.toml", text);
        check(&["profile", "check", "p.toml"], 1, rule);
    }

    // Every code docs/rules.md lists was seen, and nothing was issued by a refusal.
    let listed = documented_rules();
    let missing: Vec<&String> = listed.difference(&seen).collect();
    assert!(missing.is_empty(), "rule codes not exercised: {missing:?}");
    let unlisted: Vec<&String> = seen.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "rule codes missing from docs/rules.md: {unlisted:?}"
    );
    assert_eq!(env.store_count(), 1, "only r1 was issued");
}

// --- a 300-entry batch, cross-checked -------------------------------------------

#[test]
fn every_certificate_of_a_300_entry_batch_verifies_in_openssl_and_mtlsca() {
    let env = Env::constrained();
    let mut m = String::new();
    for i in 0..300 {
        match i % 4 {
            0 => m.push_str(&format!("[[certificate]]\nid = \"d{i}\"\nprofile = \"device\"\ndns = [\"d{i}.corp.internal\"]\nip = [\"10.0.{}.{}\"]\n", i / 250, i % 250)),
            1 => m.push_str(&format!("[[certificate]]\nid = \"i{i}\"\nprofile = \"device\"\nip = [\"10.1.{}.{}\"]\n", i / 250, i % 250)),
            2 => m.push_str(&format!("[[certificate]]\nid = \"w{i}\"\nprofile = \"workload\"\nuri = [\"spiffe://corp.internal/ns/prod/sa/w{i}\"]\n")),
            _ => m.push_str(&format!("[[certificate]]\nid = \"p{i}\"\nprofile = \"person\"\ncn = \"Person {i}\"\nemail = [\"p{i}@corp.example\"]\n")),
        }
    }
    write(&env, "m.toml", &m);
    env.ok(&["batch", "--manifest", "m.toml", "--out-dir", "o"]);
    assert_eq!(env.store_count(), 300);
    let mut files: Vec<(String, &str, &str)> = Vec::new();
    for i in 0..300 {
        let (id, ca, role) = match i % 4 {
            0 => (format!("d{i}"), "device-ca.pem", "device"),
            1 => (format!("i{i}"), "device-ca.pem", "device"),
            2 => (format!("w{i}"), "device-ca.pem", "device"),
            _ => (format!("p{i}"), "entity-ca.pem", "entity"),
        };
        files.push((id, ca, role));
    }
    for (ca, purpose) in [
        ("device-ca.pem", "sslserver"),
        ("entity-ca.pem", "sslclient"),
    ] {
        let mine: Vec<String> = files
            .iter()
            .filter(|(_, c, _)| *c == ca)
            .map(|(id, _, _)| format!("o/{id}.pem"))
            .collect();
        let mut args = vec!["verify", "-CAfile", "ca/root.pem", "-untrusted"];
        let untrusted = format!("ca/{ca}");
        args.push(&untrusted);
        args.extend(["-purpose", purpose]);
        args.extend(mine.iter().map(String::as_str));
        let out = env.openssl_ok(&args);
        assert_eq!(out.matches(": OK").count(), mine.len(), "{out}");
    }
    for (id, _, role) in &files {
        let f = format!("o/{id}.pem");
        env.ok(&["verify", "cert", &f, "--role", role]);
    }
}
