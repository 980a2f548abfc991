//! Issue 12: what a pipeline and a person trip over — request-id drift, naming a
//! certificate, renewal, validity spelling, errors with the fix, files, help.

use serde_json::Value;

use crate::common::*;

/// `--json` run: exit code and the parsed stdout (one document).
fn json_run(env: &Env, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = env.run(&a);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    (code(&out), v)
}

fn rules(v: &Value) -> Vec<String> {
    v["error"]["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["rule"].as_str().map(String::from))
        .collect()
}

// 1. Request-id drift.

#[test]
fn a_different_request_under_a_recorded_id_is_refused_showing_both() {
    let env = Env::with_ca();
    env.ok(&[
        "issue",
        "device",
        "--request-id",
        "r1",
        "--dns",
        "r.example",
        "--out",
        "r1",
    ]);
    let err = env.fails(
        &[
            "issue",
            "device",
            "--request-id",
            "r1",
            "--dns",
            "other.example",
            "--out",
            "r1b",
        ],
        1,
    );
    assert!(
        err.contains("DNS:r.example") && err.contains("DNS:other.example"),
        "{err}"
    );
    assert!(
        !env.path("r1b.pem").exists(),
        "nothing written for a conflict"
    );
    let (c, v) = json_run(
        &env,
        &[
            "issue",
            "device",
            "--request-id",
            "r1",
            "--dns",
            "other.example",
            "--out",
            "r1b",
        ],
    );
    assert_eq!(c, 1);
    assert_eq!(rules(&v), ["request-id-conflict"], "{v}");
    // Another profile, another key type, another subject: each a conflict.
    env.fails(
        &[
            "issue",
            "workload",
            "--request-id",
            "r1",
            "--dns",
            "r.example",
            "--out",
            "r1c",
        ],
        1,
    );
    let err = env.fails(
        &[
            "issue",
            "device",
            "--request-id",
            "r1",
            "--dns",
            "r.example",
            "--key-type",
            "ed25519",
            "--out",
            "r1c",
        ],
        1,
    );
    assert!(err.contains("Ed25519") && err.contains("P-256"), "{err}");
    env.fails(
        &[
            "issue",
            "device",
            "--request-id",
            "r1",
            "--dns",
            "r.example",
            "--org",
            "Acme",
            "--out",
            "r1c",
        ],
        1,
    );
    assert_eq!(env.store_count(), 1);
}

#[test]
fn the_same_request_again_claims_no_file_it_did_not_write() {
    let env = Env::with_ca();
    let args = [
        "issue",
        "device",
        "--request-id",
        "r1",
        "--dns",
        "r.example",
        "--out",
        "r1",
    ];
    let first = env.ok(&args);
    assert!(first.contains("wrote    r1.key"), "{first}");
    let again = env.ok(&args);
    assert!(!again.contains("wrote"), "nothing was written: {again}");
    assert!(again.contains("exists   r1.key"), "{again}");
    // The same name in another case is the same request; a missing certificate
    // file is completed and said so.
    std::fs::remove_file(env.path("r1.chain.pem")).unwrap();
    let again = env.ok(&[
        "issue",
        "device",
        "--request-id",
        "r1",
        "--dns",
        "R.Example",
        "--out",
        "r1",
    ]);
    assert!(again.contains("wrote    r1.chain.pem"), "{again}");
    assert!(!again.contains("wrote    r1.pem"), "{again}");
    let (c, v) = json_run(&env, &args);
    assert_eq!(c, 0);
    assert_eq!(v["status"], "exists");
    assert_eq!(v["written"].as_array().map(Vec::len), Some(0), "{v}");
    assert_eq!(env.store_count(), 1);
}

#[test]
fn sign_under_a_recorded_id_with_another_csr_is_a_conflict() {
    let env = Env::with_ca();
    for n in ["a", "b"] {
        env.openssl_csr(
            &format!("{n}.key"),
            "/CN=db.example",
            &["subjectAltName=DNS:db.example"],
            &["-out", &format!("{n}.csr")],
        );
    }
    env.ok(&[
        "sign",
        "device",
        "--csr",
        "a.csr",
        "--request-id",
        "db",
        "--out",
        "a.pem",
    ]);
    env.ok(&[
        "sign",
        "device",
        "--csr",
        "a.csr",
        "--request-id",
        "db",
        "--out",
        "a.pem",
    ]);
    let err = env.fails(
        &[
            "sign",
            "device",
            "--csr",
            "b.csr",
            "--request-id",
            "db",
            "--out",
            "b.pem",
        ],
        1,
    );
    assert!(
        err.contains("request id") || err.contains("request-id"),
        "{err}"
    );
    assert!(!env.path("b.pem").exists());
}

#[test]
fn a_manifest_entry_whose_names_changed_is_refused_not_already_issued() {
    let env = Env::with_ca();
    std::fs::create_dir(env.path("out")).unwrap();
    let m = |dns: &str| {
        format!("[[certificate]]\nid = \"web\"\nprofile = \"device\"\ndns = [\"{dns}\"]\n")
    };
    std::fs::write(env.path("m.toml"), m("web.example")).unwrap();
    env.ok(&["batch", "--manifest", "m.toml", "--out-dir", "out"]);
    std::fs::write(env.path("m.toml"), m("web2.example")).unwrap();
    let out = env.run(&[
        "--json",
        "batch",
        "--manifest",
        "m.toml",
        "--out-dir",
        "out",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "refused");
    assert_eq!(line["reasons"][0]["rule"], "request-id-conflict", "{line}");
    let msg = line["reasons"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("DNS:web.example") && msg.contains("DNS:web2.example"),
        "{msg}"
    );
}

// 2. One way to name a certificate.

#[test]
fn a_certificate_is_named_by_serial_prefix_request_id_or_file_everywhere() {
    let env = Env::with_ca();
    let web = env.json(&[
        "issue",
        "device",
        "--dns",
        "web.example",
        "--request-id",
        "web-1",
        "--out",
        "web",
    ]);
    let serial = web["serial"].as_str().unwrap().to_string();
    let alice = env.json(&[
        "issue",
        "person",
        "--cn",
        "Alice",
        "--email",
        "alice@example.com",
        "--out",
        "alice",
    ]);
    let alice_serial = alice["serial"].as_str().unwrap().to_string();
    let colons: String = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for name in [&serial[..8], "web-1", "web.pem", "./web.chain.pem", &colons] {
        let v = env.json(&["show", name]);
        assert_eq!(v["serial"], serial.as_str(), "show {name}");
    }
    let pem = env.ok(&["export", "web-1", "--format", "pem"]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let der = env.run(&[
        "export",
        &serial[..10],
        "--format",
        "der",
        "--out",
        "web.der",
    ]);
    assert_eq!(code(&der), 0, "{}", text(&der));
    assert_eq!(env.json(&["show", "web.der"])["serial"], serial.as_str());
    // The issue's example: revoke alice.pem.
    let v = env.json(&["revoke", "alice.pem", "--reason", "superseded"]);
    assert_eq!(v["serial"], alice_serial.as_str());
    assert_eq!(v["status"], "revoked");
    // Not a certificate: said in words, naming the file.
    std::fs::write(env.path("notes.txt"), "hello\n").unwrap();
    let err = env.fails(&["show", "notes.txt"], 2);
    assert!(
        err.contains("notes.txt") && err.contains("no certificate"),
        "{err}"
    );
    assert!(!err.contains("NomError"), "{err}");
    // Unknown: exit 1 with what would work.
    let err = env.fails(&["show", "nothing-here"], 1);
    assert!(err.contains("request id"), "{err}");
}

// 3. Renewal.

#[test]
fn renew_replaces_the_files_keeps_prev_links_the_records_and_revokes_the_old() {
    let env = Env::with_ca();
    let old = env.json(&[
        "issue",
        "device",
        "--dns",
        "web.example",
        "--ip",
        "10.0.0.1",
        "--org",
        "Acme",
        "--out",
        "web",
        "--request-id",
        "web-01",
    ]);
    let old_serial = old["serial"].as_str().unwrap().to_string();
    let old_pem = std::fs::read_to_string(env.path("web.pem")).unwrap();
    let old_key = std::fs::read_to_string(env.path("web.key")).unwrap();
    let out = env.ok(&["renew", "web.pem", "--revoke-old"]);
    assert!(
        out.contains("replaces") && out.contains(&old_serial),
        "{out}"
    );
    assert!(out.contains("valid until"), "{out}");
    // Old files kept as .prev, new files in place, a new key.
    assert_eq!(
        std::fs::read_to_string(env.path("web.pem.prev")).unwrap(),
        old_pem
    );
    assert_eq!(
        std::fs::read_to_string(env.path("web.key.prev")).unwrap(),
        old_key
    );
    assert!(env.path("web.chain.pem.prev").exists());
    assert_ne!(
        std::fs::read_to_string(env.path("web.key")).unwrap(),
        old_key
    );
    let new = env.json(&["show", "web.pem"]);
    let new_serial = new["serial"].as_str().unwrap().to_string();
    assert_ne!(new_serial, old_serial);
    assert_eq!(new["replaces"], old_serial.as_str());
    assert_eq!(new["names"], old["names"]);
    assert_eq!(new["subject"], old["subject"]);
    assert_eq!(new["profile"], "device");
    assert!(
        new["audit"][0]["detail"]
            .as_str()
            .unwrap()
            .contains(&old_serial),
        "{new}"
    );
    let was = env.json(&["show", &old_serial]);
    assert_eq!(was["status"], "revoked");
    assert_eq!(was["renewed_by"], new_serial.as_str());
    let shown = env.ok(&["show", &new_serial]);
    assert!(
        shown.contains(&format!("replaces    {old_serial}")),
        "{shown}"
    );
    // The new key matches the new certificate; OpenSSL verifies the chain.
    let cert_pub = env.openssl_ok(&["x509", "-in", "web.pem", "-noout", "-pubkey"]);
    let key_pub = env.openssl_ok(&["pkey", "-in", "web.key", "-pubout"]);
    assert_eq!(cert_pub, key_pub);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "web.pem",
    ]);
    // The request id now stands for the renewal: the same request is `exists`.
    let again = env.json(&[
        "issue",
        "device",
        "--dns",
        "web.example",
        "--ip",
        "10.0.0.1",
        "--org",
        "Acme",
        "--out",
        "web",
        "--request-id",
        "web-01",
    ]);
    assert_eq!(again["status"], "exists");
    assert_eq!(again["serial"], new_serial.as_str());
    // Renewing the old one again returns the same renewal.
    let twice = env.json(&["renew", &old_serial]);
    assert_eq!(twice["status"], "exists");
    assert_eq!(twice["serial"], new_serial.as_str());
    // --out writes new names and never overwrites.
    let other = env.json(&["renew", &new_serial, "--out", "web2", "--validity", "2w"]);
    assert_eq!(other["replaces"], new_serial.as_str());
    assert!(env.path("web2.key").exists());
    // Renewing the same certificate again returns that renewal.
    let again = env.json(&["renew", &new_serial, "--out", "web2"]);
    assert_eq!(again["status"], "exists");
}

// 4. Validity spelling.

#[test]
fn validity_takes_s_m_h_d_w_y_and_not_after_and_prints_the_date() {
    let env = Env::with_ca();
    let v = env.json(&[
        "issue",
        "workload",
        "--uri",
        "spiffe://corp/a",
        "--validity",
        "90m",
        "--out",
        "a",
    ]);
    let secs = |v: &Value| {
        let p = |k: &str| {
            time::OffsetDateTime::parse(
                v[k].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        (p("not_after") - p("not_before")).whole_seconds()
    };
    assert_eq!(secs(&v), 90 * 60);
    let v = env.json(&[
        "issue",
        "device",
        "--dns",
        "b.example",
        "--validity",
        "2w",
        "--out",
        "b",
    ]);
    assert_eq!(secs(&v), 14 * 86_400);
    let v = env.json(&[
        "issue",
        "device",
        "--dns",
        "c.example",
        "--not-after",
        "3d",
        "--out",
        "c",
    ]);
    assert_eq!(secs(&v), 3 * 86_400);
    let when = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .replace_time(time::Time::MIDNIGHT);
    let stamp = when
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let out = env.ok(&[
        "issue",
        "device",
        "--dns",
        "d.example",
        "--not-after",
        &stamp,
        "--out",
        "d",
    ]);
    let date = format!(
        "{:04}-{:02}-{:02} 00:00:00 UTC",
        when.year(),
        u8::from(when.month()),
        when.day()
    );
    assert!(out.contains(&format!("valid until {date}")), "{out}");
    let end = env.openssl_ok(&["x509", "-in", "d.pem", "-noout", "-enddate"]);
    assert!(end.contains("00:00:00"), "{end}");
    // Over the maximum: the message gives the maximum, the latest date and the setting.
    let err = env.fails(
        &[
            "issue",
            "device",
            "--dns",
            "e.example",
            "--validity",
            "60w",
            "--out",
            "e",
        ],
        1,
    );
    assert!(
        err.contains("397d") && err.contains("validity.max"),
        "{err}"
    );
    let err = env.fails(
        &[
            "issue",
            "device",
            "--dns",
            "e.example",
            "--not-after",
            "2001-01-01T00:00:00Z",
        ],
        2,
    );
    assert!(err.contains("not in the future"), "{err}");
    let err = env.fails(
        &["issue", "device", "--dns", "e.example", "--validity", "5x"],
        2,
    );
    assert!(err.contains("s, m, h, d, w or y"), "{err}");
    env.fails(
        &[
            "issue",
            "device",
            "--dns",
            "e.example",
            "--validity",
            "5d",
            "--not-after",
            "5d",
        ],
        2,
    );
}

#[test]
fn batch_renew_within_renews_the_entries_that_expire_in_the_window() {
    // A certificate just issued is never due (the window is capped at 2/3 of
    // its lifetime): the renewal runs 20 hours later (faketime).
    if crate::rotation::no_faketime() {
        return;
    }
    let env = Env::with_ca();
    std::fs::create_dir(env.path("out")).unwrap();
    std::fs::write(
        env.path("m.toml"),
        "[[certificate]]\nid = \"api\"\nprofile = \"workload\"\nuri = [\"spiffe://corp/api\"]\n\n\
         [[certificate]]\nid = \"web\"\nprofile = \"device\"\ndns = [\"web.example\"]\n",
    )
    .unwrap();
    let later = "+20h";
    let lines = |offset: &str, args: &[&str]| -> Vec<Value> {
        let mut a = vec![
            "--json",
            "batch",
            "--manifest",
            "m.toml",
            "--out-dir",
            "out",
        ];
        a.extend_from_slice(args);
        crate::rotation::at_ok(&env, offset, &a)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let first = lines("+0h", &[]);
    let api_serial = first[0]["serial"].as_str().unwrap().to_string();
    let api_key = std::fs::read_to_string(env.path("out/api.key")).unwrap();
    // Right after issuance, nothing is due, however long the window.
    let fresh = lines("+0h", &["--renew-within", "7d"]);
    assert!(fresh.iter().all(|l| l["status"] == "exists"), "{fresh:?}");
    // The workload certificate lives 24h (4h left), the device one 90d: only
    // api is renewed.
    let renewed = lines(later, &["--renew-within", "7d"]);
    assert_eq!(renewed[0]["status"], "renewed", "{renewed:?}");
    assert_eq!(renewed[1]["status"], "exists", "{renewed:?}");
    assert_ne!(renewed[0]["serial"], api_serial.as_str());
    assert_eq!(
        std::fs::read_to_string(env.path("out/api.key.prev")).unwrap(),
        api_key
    );
    assert_eq!(
        env.json(&["show", "out/api.pem"])["replaces"],
        api_serial.as_str()
    );
    // A plain re-run: both exist, the renewed one under its new serial.
    let again = lines(later, &[]);
    assert_eq!(again[0]["status"], "exists");
    assert_eq!(again[0]["serial"], renewed[0]["serial"]);
    let text = crate::rotation::at_ok(
        &env,
        later,
        &[
            "batch",
            "--manifest",
            "m.toml",
            "--out-dir",
            "out",
            "--renew-within",
            "7d",
        ],
    );
    assert!(text.contains("0 renewed, 2 already issued"), "{text}");
}

// 6. Files.

#[test]
fn every_file_has_lf_line_endings_and_names_come_from_the_normalized_name() {
    let env = Env::with_ca();
    let out = env.ok(&["issue", "device", "--dns", "Web.Example.COM"]);
    assert!(out.contains("web.example.com.key"), "{out}");
    for f in [
        "web.example.com.key",
        "web.example.com.pem",
        "web.example.com.chain.pem",
    ] {
        assert!(env.path(f).exists(), "{f}: {out}");
    }
    env.ok(&["crl"]);
    env.ok(&["crl", "--issuer", "device", "--out", "device.crl"]);
    env.ok(&[
        "export",
        "web.example.com.pem",
        "--format",
        "chain",
        "--out",
        "x.pem",
    ]);
    let mut files = vec![
        env.path("web.example.com.key"),
        env.path("web.example.com.pem"),
        env.path("web.example.com.chain.pem"),
        env.path("device.crl"),
        env.path("x.pem"),
    ];
    for sub in ["", "private", "crl"] {
        for e in std::fs::read_dir(env.ca_dir().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        if bytes.starts_with(b"-----") {
            assert!(!bytes.contains(&b'\r'), "{} has CR characters", f.display());
        }
    }
    env.openssl_ok(&["pkey", "-in", "web.example.com.key", "-noout"]);
    env.openssl_ok(&["crl", "-in", "device.crl", "-noout"]);
}

#[test]
fn init_writes_a_ca_bundle_and_says_what_a_relying_party_needs() {
    let env = Env::new();
    let out = env.ok(&["init", "--name", "Test"]);
    assert!(
        out.contains("ca-bundle.pem") && out.contains("relying parties"),
        "{out}"
    );
    let bundle = std::fs::read_to_string(env.ca_dir().join("ca-bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);
    // Into an existing, empty directory too (the CA is moved in from a staging
    // directory inside it).
    let existing = Env::new();
    std::fs::create_dir(existing.ca_dir()).unwrap();
    existing.ok(&["init", "--name", "Test"]);
    assert!(existing.ca_dir().join("ca-bundle.pem").is_file());
    for f in ["root.pem", "device-ca.pem", "entity-ca.pem"] {
        let one = std::fs::read_to_string(env.ca_dir().join(f)).unwrap();
        assert!(bundle.contains(&one), "{f}");
    }
    env.ok(&["issue", "device", "--dns", "db.example", "--out", "db"]);
    env.openssl_ok(&["verify", "-CAfile", "ca/ca-bundle.pem", "db.pem"]);
}

// 5. Errors with the fix.

#[test]
fn usage_errors_suggest_what_was_meant() {
    let env = Env::with_ca();
    let err = env.fails(&["issue", "device", "--dsn", "a.example"], 2);
    assert!(err.contains("'--dns'"), "{err}");
    assert!(!err.contains("--json"), "{err}");
    assert!(
        err.contains("Usage: mtlsca issue [OPTIONS] <PROFILE>"),
        "{err}"
    );
    let err = env.fails(&["issue", "device", "a.example"], 2);
    assert!(err.contains("--dns a.example"), "{err}");
    let err = env.fails(&["issue", "person", "--cn", "A", "a@b.example"], 2);
    assert!(err.contains("--email a@b.example"), "{err}");
    let (c, v) = json_run(&env, &["issue", "device", "--dsn", "a.example"]);
    assert_eq!(c, 2);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--dns"),
        "{v}"
    );
    // --san as other tools spell it.
    let v = env.json(&[
        "issue",
        "device",
        "--san",
        "dns:web.example,ip:10.0.0.1",
        "--san",
        "DNS:www.example",
        "--out",
        "web",
    ]);
    assert_eq!(
        v["names"],
        serde_json::json!(["DNS:web.example", "DNS:www.example", "IP:10.0.0.1"])
    );
    env.fails(&["issue", "device", "--san", "web.example"], 2);
}

#[test]
fn refusals_name_the_setting_and_files_are_described_in_words() {
    let env = Env::new();
    env.ok(&["init", "--permit-dns", "corp.internal"]);
    let err = env.fails(&["issue", "device", "--dns", "*.corp.internal"], 1);
    assert!(err.contains("allow_wildcards"), "{err}");
    let err = env.fails(&["issue", "device", "--dns", "evil.example"], 1);
    assert!(err.contains("--permit-dns"), "{err}");
    let err = env.fails(&["issue", "organization", "--cn", "Acme"], 1);
    assert!(err.contains("subject.organization"), "{err}");
    let err = env.fails(
        &[
            "issue",
            "workload",
            "--uri",
            "spiffe://corp.internal/a",
            "--validity",
            "8d",
        ],
        1,
    );
    assert!(err.contains("7d") && err.contains("validity.max"), "{err}");
    // A text file given as a certificate or a CSR.
    std::fs::write(env.path("notes.txt"), "hello world\n").unwrap();
    for args in [
        vec!["inspect", "notes.txt"],
        vec!["verify", "cert", "notes.txt"],
        vec!["sign", "device", "--csr", "notes.txt"],
    ] {
        let err = env.fails(&args, 2);
        assert!(err.contains("notes.txt"), "{args:?}: {err}");
        assert!(
            err.contains("is text") && err.contains("-----BEGIN"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("NomError"), "{args:?}: {err}");
    }
}

// 7. Help, man pages, completions, the PKCS#12 password, progress.

/// Every command path of the CLI (nested ones included), from `--help` output.
fn command_paths(env: &Env) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = env.ok(&args);
        if let Some(cmds) = help.split("Commands:\n").nth(1) {
            for line in cmds.lines().take_while(|l| !l.trim().is_empty()) {
                if let Some(name) = line
                    .strip_prefix("  ")
                    .and_then(|l| l.split_whitespace().next())
                {
                    if name != "help" && !line.starts_with("   ") {
                        let mut p = path.clone();
                        p.push(name.to_string());
                        todo.push(p);
                    }
                }
            }
        }
        out.push(path);
    }
    out
}

#[test]
fn every_command_has_examples_in_its_help_and_a_man_page_that_renders_cleanly() {
    let env = Env::new();
    let paths = command_paths(&env);
    assert!(paths.len() >= 25, "{paths:?}");
    for p in &paths {
        let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
        args.push("--help");
        let help = env.ok(&args);
        assert!(
            help.contains("\nExamples:\n  mtlsca"),
            "{p:?} has no examples:\n{help}"
        );
        assert!(
            !help.contains("MTLSCA_DIR="),
            "{p:?}: empty env value shown"
        );
    }
    env.ok(&["man", "--out-dir", "man"]);
    for p in &paths {
        let name = if p.is_empty() {
            "mtlsca".to_string()
        } else {
            format!("mtlsca-{}", p.join("-"))
        };
        let file = env.path(&format!("man/{name}.1"));
        assert!(file.exists(), "no man page for {p:?}");
        let page = std::fs::read_to_string(&file).unwrap();
        for section in [
            "EXAMPLES",
            "\"EXIT STATUS\"",
            "ENVIRONMENT",
            "FILES",
            "\"SEE ALSO\"",
        ] {
            assert!(
                page.contains(&format!(".SH {section}")),
                "{name}: no {section}"
            );
        }
        // Every page it points to exists.
        for seen in page.split("\\fB").skip(1) {
            if let Some(target) = seen
                .split("\\fR(1)")
                .next()
                .filter(|_| seen.contains("\\fR(1)"))
            {
                let target = target.replace("\\-", "-");
                if target.starts_with("mtlsca") && !target.contains(' ') {
                    assert!(
                        env.path(&format!("man/{target}.1")).exists(),
                        "{name} -> {target}"
                    );
                }
            }
        }
        let out = std::process::Command::new("man")
            .arg("-l")
            .arg(&file)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output();
        if let Ok(out) = out {
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{name}: {all}");
            assert!(!all.contains("warning:"), "{name}: {all}");
            assert!(all.contains("EXIT STATUS"), "{name}");
        }
    }
    // The root page points to the nested ones (the issue's example).
    let root = std::fs::read_to_string(env.path("man/mtlsca-verify.1")).unwrap();
    assert!(root.contains("mtlsca\\-verify\\-pair"), "{root}");
}

#[test]
fn completions_offer_profiles_key_types_reasons_and_connections() {
    let env = Env::new();
    let bash = env.ok(&["completions", "bash"]);
    for want in [
        "ecdsa-p256 ecdsa-p384 ed25519",
        "keyCompromise",
        "server-to-server",
    ] {
        assert!(bash.contains(want), "bash lacks {want}");
    }
    let zsh = env.ok(&["completions", "zsh"]);
    assert!(
        zsh.contains("device workload person organization"),
        "zsh lacks profiles"
    );
}

#[test]
fn the_p12_password_flag_is_named_and_asked_twice_on_a_terminal() {
    let env = Env::with_ca();
    env.ok(&["issue", "device", "--dns", "p.example", "--out", "p"]);
    std::fs::write(env.path("pw"), "secret-pw\n").unwrap();
    env.ok(&[
        "export",
        "p.pem",
        "--format",
        "p12",
        "--p12-password-file",
        "pw",
        "--out",
        "a.p12",
    ]);
    env.openssl_ok(&[
        "pkcs12",
        "-in",
        "a.p12",
        "-passin",
        "pass:secret-pw",
        "-nokeys",
    ]);
    let help = env.ok(&["export", "--help"]);
    assert!(help.contains("--p12-password-file"), "{help}");
    // No terminal, no file, no environment: exit 2 naming the ways.
    let err = env.fails(&["export", "p.pem", "--format", "p12", "--out", "b.p12"], 2);
    assert!(err.contains("--p12-password-file"), "{err}");
    // On a terminal (util-linux `script` gives one): asked twice, never echoed.
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped the terminal part: no `script`");
        return;
    }
    let cmdline = format!(
        "{BIN} --ca-dir {} export p.pem --format p12 --out c.p12",
        env.ca_dir().display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for _ in 0..2 {
            std::thread::sleep(std::time::Duration::from_millis(700));
            stdin.write_all(b"tty-secret\n").unwrap();
            stdin.flush().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(shown.matches("PKCS#12 password").count(), 2, "{shown}");
    assert!(!shown.contains("tty-secret"), "echoed: {shown}");
    env.openssl_ok(&[
        "pkcs12",
        "-in",
        "c.p12",
        "-passin",
        "pass:tty-secret",
        "-nokeys",
    ]);
}

#[test]
fn a_request_id_names_its_latest_renewal() {
    let env = Env::with_ca();
    let first = env.json(&[
        "issue",
        "device",
        "--dns",
        "r.example",
        "--request-id",
        "r",
        "--out",
        "r",
    ]);
    let out = env.ok(&["renew", "r"]);
    assert!(out.starts_with("renewed"), "{out}");
    let current = env.json(&["show", "r"]);
    assert_eq!(current["replaces"], first["serial"]);
    // Renewing by request id again renews the current one.
    let third = env.json(&["renew", "r", "--out", "r3"]);
    assert_eq!(third["replaces"], current["serial"]);
    assert_eq!(env.json(&["show", "r"])["serial"], third["serial"]);
    // Renewal ids are the engine's own.
    let err = env.fails(
        &[
            "issue",
            "device",
            "--dns",
            "x.example",
            "--request-id",
            &format!("renewal-of:{}", first["serial"].as_str().unwrap()),
        ],
        2,
    );
    assert!(err.contains("reserved for renewals"), "{err}");
    // The first is still there by serial.
    assert_eq!(
        env.json(&["show", first["serial"].as_str().unwrap()])["renewed_by"],
        current["serial"]
    );
}

#[test]
fn the_batch_progress_rate_is_a_whole_number() {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("skipped: no `script` for a terminal");
        return;
    }
    let env = Env::with_ca();
    let mut m = String::new();
    for i in 0..400 {
        m.push_str(&format!(
            "[[certificate]]\nid = \"w{i}\"\nprofile = \"device\"\ndns = [\"w{i}.example\"]\n"
        ));
    }
    std::fs::write(env.path("m.toml"), m).unwrap();
    std::fs::create_dir(env.path("out")).unwrap();
    let cmdline = format!(
        "{BIN} --ca-dir {} batch --manifest m.toml --out-dir out",
        env.ca_dir().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .current_dir(env.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("400 issued"), "{shown}");
    // Whatever the bar drew: no rate with decimals.
    for part in shown.split("/s").collect::<Vec<_>>().iter().rev().skip(1) {
        let tail: String = part
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        assert!(!tail.contains('.'), "a rate with decimals: {shown}");
    }
}

/// `ca-bundle.pem` is part of the CA that `init` builds (crash-safe with it) and
/// is derived again when a backup is restored; a relying party can verify with it.
#[test]
fn the_ca_bundle_is_made_at_init_and_at_restore() {
    let env = Env::with_ca();
    let bundle = std::fs::read_to_string(env.ca_dir().join("ca-bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);
    // Into an existing, empty directory too (the CA is moved in from a staging
    // directory inside it).
    let existing = Env::new();
    std::fs::create_dir(existing.ca_dir()).unwrap();
    existing.ok(&["init", "--name", "Test"]);
    assert!(existing.ca_dir().join("ca-bundle.pem").is_file());
    env.ok(&["issue", "device", "--dns", "b.test", "--out", "b"]);
    env.ok(&["backup", "bk"]);
    let restored = Env::new();
    let bk = env.path("bk");
    restored.ok(&["restore", bk.to_str().unwrap()]);
    let again = std::fs::read_to_string(restored.ca_dir().join("ca-bundle.pem")).unwrap();
    assert_eq!(again, bundle);
    let ca_bundle = restored.ca_dir().join("ca-bundle.pem");
    let leaf = env.path("b.pem");
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        ca_bundle.to_str().unwrap(),
        "-purpose",
        "sslserver",
        leaf.to_str().unwrap(),
    ]);
}

// 8. Issue 23: the command line as a newcomer meets it.

/// The summaries a `--help` lists under `Commands:`, as (name, summary), with
/// wrapped lines joined.
fn listed_summaries(help: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some(cmds) = help.split("Commands:\n").nth(1) else {
        return out;
    };
    for line in cmds.lines().take_while(|l| !l.trim().is_empty()) {
        if let Some(entry) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            let (name, summary) = entry.split_once(' ').unwrap_or((entry, ""));
            out.push((name.to_string(), summary.trim().to_string()));
        } else if let Some(last) = out.last_mut() {
            last.1.push(' ');
            last.1.push_str(line.trim());
        }
    }
    out
}

/// What a summary written for users never holds: markup, the code's module
/// names, or a reference to the command itself in place of what it does.
fn developer_note(path: &[String], name: &str, summary: &str) -> Option<&'static str> {
    let lower = summary.to_ascii_lowercase();
    let own = path
        .iter()
        .map(String::as_str)
        .chain([name])
        .collect::<Vec<_>>()
        .join(" ");
    if summary.is_empty() {
        Some("empty")
    } else if summary.contains('`') {
        Some("a backtick")
    } else if ["_cmds", "cli::", "::", ".rs"]
        .iter()
        .any(|m| summary.contains(m))
    {
        Some("a module name")
    } else if lower.contains(&format!("mtlsca {own}"))
        || lower.starts_with(&format!("{name}:"))
        || lower.trim_end_matches('.') == name
    {
        Some("the command's own name")
    } else {
        None
    }
}

#[test]
fn every_command_summary_is_written_for_users() {
    let env = Env::new();
    let mut bad = Vec::new();
    let mut seen = 0;
    for path in command_paths(&env) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = env.ok(&args);
        // The command's own summary: the text above `Usage:`.
        if let Some(name) = path.last() {
            let about = help.split("\nUsage:").next().unwrap_or("").trim();
            let about = about.split("\n\n").next().unwrap_or("").replace('\n', " ");
            if let Some(why) = developer_note(&path[..path.len() - 1], name, &about) {
                bad.push(format!("{path:?} --help: {why}: {about}"));
            }
        }
        for (name, summary) in listed_summaries(&help) {
            seen += 1;
            if let Some(why) = developer_note(&path, &name, &summary) {
                bad.push(format!("{path:?} lists {name}: {why}: {summary}"));
            }
        }
    }
    assert!(seen >= 30, "only {seen} summaries found");
    assert!(
        bad.is_empty(),
        "summaries for developers:\n{}",
        bad.join("\n")
    );
}

#[test]
fn profile_names_from_other_tools_get_the_profile_they_mean() {
    let env = Env::with_ca();
    // What other tools call a server's or a client's certificate: exit 2, with
    // the profile to use.
    let err = env.fails(&["issue", "server", "--dns", "a.example"], 2);
    assert!(err.contains("`device`"), "{err}");
    assert!(err.contains("serverAuth"), "{err}");
    for word in ["tls-server", "host"] {
        let err = env.fails(&["issue", word, "--dns", "a.example"], 2);
        assert!(err.contains("`device`"), "{word}: {err}");
    }
    let err = env.fails(
        &["issue", "client", "--cn", "A", "--email", "a@b.example"],
        2,
    );
    assert!(
        err.contains("`person`") && err.contains("`device`"),
        "{err}"
    );
    for word in ["user", "tls-client"] {
        let err = env.fails(&["issue", word, "--email", "a@b.example"], 2);
        assert!(err.contains("`person`"), "{word}: {err}");
    }
    let err = env.fails(&["issue", "org", "--org", "Acme"], 2);
    assert!(err.contains("`organization`"), "{err}");
    // A typo gets the nearest profile.
    let err = env.fails(&["issue", "devcie", "--dns", "a.example"], 2);
    assert!(err.contains("`device`"), "{err}");
    // Still exit 2 with the rule, as JSON too.
    let (c, v) = json_run(&env, &["issue", "server", "--dns", "a.example"]);
    assert_eq!(c, 2);
    assert_eq!(v["error"]["kind"], "invalid", "{v}");
    assert_eq!(rules(&v), ["profile-unknown"]);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("`device`"),
        "{v}"
    );
    // A name with no likely meaning: exit 2, no guess.
    let err = env.fails(&["issue", "zzzzzz", "--dns", "a.example"], 2);
    assert!(!err.contains("did you mean"), "{err}");

    // Both spellings of organisation name the profile `organization`.
    let v = env.json(&["issue", "organisation", "--org", "Acme", "--out", "acme"]);
    assert_eq!(v["profile"], "organization", "{v}");
    let shown = env.ok(&["profile", "show", "organisation"]);
    assert!(shown.contains("name = \"organization\""), "{shown}");
    let shown = Env::new().ok(&["profile", "show", "organisation"]);
    assert!(shown.contains("name = \"organization\""), "{shown}");
    // sign takes the same names.
    env.openssl_csr(
        "s.key",
        "/CN=s.example",
        &["subjectAltName=DNS:s.example"],
        &["-out", "s.csr"],
    );
    let err = env.fails(&["sign", "server", "--csr", "s.csr"], 2);
    assert!(err.contains("`device`"), "{err}");
}

/// The tip of a usage error (the `tip:` line), or the whole text.
fn tip_of(err: &str) -> String {
    err.lines()
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .unwrap_or(err)
        .to_string()
}

#[test]
fn wrong_flags_get_the_flag_they_meant() {
    let env = Env::with_ca();
    let issue = |extra: &[&str]| {
        let mut a = vec!["issue", "device", "--dns", "a.example"];
        a.extend_from_slice(extra);
        tip_of(&env.fails(&a, 2))
    };
    // A lifetime in days, as other tools ask for it.
    for (flag, want) in [
        ("--days", "'--validity 30d'"),
        ("--valid", "'--validity 30d'"),
        ("--expires", "'--validity 30d'"),
        ("--expire", "'--validity 30d'"),
        ("--lifetime", "'--validity 30d'"),
    ] {
        let tip = issue(&[flag, "30"]);
        assert!(tip.contains(want), "{flag}: {tip}");
        assert!(!tip.contains("--dns"), "{flag}: {tip}");
    }
    let tip = issue(&["--days=90"]);
    assert!(tip.contains("'--validity 90d'"), "{tip}");
    let tip = issue(&["--ttl", "24h"]);
    assert!(tip.contains("'--validity 24h'"), "{tip}");
    let tip = issue(&["--expires", "2027-01-31T00:00:00Z"]);
    assert!(tip.contains("'--not-after 2027-01-31T00:00:00Z'"), "{tip}");
    // Other commands point to their own span flag.
    let tip = tip_of(&env.fails(&["renew", "a.pem", "--days", "30"], 2));
    assert!(tip.contains("'--validity 30d'"), "{tip}");
    let tip = tip_of(&env.fails(&["crl", "--days", "7"], 2));
    assert!(tip.contains("'--next-update 7d'"), "{tip}");

    // A host name, as other tools ask for it.
    for flag in ["--host", "--hostname", "--domain"] {
        let err = env.fails(&["issue", "device", flag, "a.example"], 2);
        let tip = tip_of(&err);
        assert!(tip.contains("'--dns a.example'"), "{flag}: {tip}");
        assert!(!tip.contains("--out"), "{flag}: {tip}");
    }
    let tip = tip_of(&env.fails(&["issue", "device", "--host", "10.0.0.1"], 2));
    assert!(tip.contains("'--ip 10.0.0.1'"), "{tip}");

    // A span in two words: the unit syntax, not a name.
    let tip = issue(&["--validity", "5", "years"]);
    assert!(tip.contains("'--validity 5y'"), "{tip}");
    assert!(tip.contains("1825d"), "{tip}");
    assert!(!tip.contains("names are given"), "{tip}");
    let tip = issue(&["--validity", "2", "weeks"]);
    assert!(tip.contains("'--validity 2w'"), "{tip}");

    // The tip is in the JSON message too.
    let (c, v) = json_run(
        &env,
        &["issue", "device", "--dns", "a.example", "--days", "30"],
    );
    assert_eq!(c, 2);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--validity 30d"),
        "{v}"
    );
    // Misspellings still get the nearest flag.
    let tip = issue(&["--valdity", "30d"]);
    assert!(tip.contains("'--validity'"), "{tip}");
}

#[test]
fn a_missing_output_directory_is_bad_input_for_a_repeated_request_too() {
    let env = Env::with_ca();
    let args = |out: &'static str| {
        vec![
            "issue",
            "device",
            "--dns",
            "r.example",
            "--request-id",
            "r1",
            "--out",
            out,
        ]
    };
    // A fresh request into a missing directory.
    let (c, v) = json_run(&env, &args("nodir/x"));
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["error"]["kind"], "invalid", "{v}");
    assert_eq!(rules(&v), ["output-dir-missing"]);
    // The same request id, issued once, repeated into a directory that is gone.
    std::fs::create_dir(env.path("d")).unwrap();
    env.ok(&args("d/x"));
    std::fs::remove_dir_all(env.path("d")).unwrap();
    let (c, v) = json_run(&env, &args("d/x"));
    assert_eq!(c, 2, "{v}");
    assert_eq!(v["error"]["kind"], "invalid", "{v}");
    assert_eq!(rules(&v), ["output-dir-missing"], "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(!message.contains(".tmp"), "{message}");
    let (c, v) = json_run(&env, &args("other/y"));
    assert_eq!((c, rules(&v)), (2, vec!["output-dir-missing".to_string()]));
    // Into a directory that exists, the repeat completes the files.
    std::fs::create_dir(env.path("d")).unwrap();
    let v = env.json(&args("d/x"));
    assert_eq!(v["status"], "exists", "{v}");
    assert!(env.path("d/x.pem").exists());
}

#[test]
fn under_json_an_error_is_one_object_on_stdout_and_one_line_on_stderr() {
    let env = Env::with_ca();
    let no_ca = Env::new();
    let cases: Vec<(&Env, Vec<&str>, i32, &str)> = vec![
        (
            &env,
            vec!["issue", "device", "--dsn", "a.example"],
            2,
            "usage",
        ),
        (&env, vec!["issue", "device", "--days", "30"], 2, "usage"),
        (&env, vec!["bogus"], 2, "usage"),
        (&env, vec!["store"], 2, "usage"),
        (&env, vec!["issue"], 2, "usage"),
        (&env, vec!["issue", "device", "--validity"], 2, "usage"),
        (
            &env,
            vec!["issue", "device", "--dns", "bad_name"],
            2,
            "invalid",
        ),
        (
            &env,
            vec!["issue", "server", "--dns", "a.example"],
            2,
            "invalid",
        ),
        (&env, vec!["verify", "cert", "nofile.pem"], 2, "input"),
        (&env, vec!["show", "deadbeefdeadbeef"], 1, "refused"),
        (&no_ca, vec!["list"], 3, "state"),
    ];
    for (env, args, want, kind) in cases {
        for json_first in [true, false] {
            let mut a = args.clone();
            if json_first {
                a.insert(0, "--json");
            } else {
                a.push("--json");
            }
            let out = env.run(&a);
            assert_eq!(code(&out), want, "{a:?}: {}", text(&out));
            let docs: Vec<Value> = serde_json::Deserializer::from_slice(&out.stdout)
                .into_iter::<Value>()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{a:?}: stdout is not JSON ({e}): {}", text(&out)));
            assert_eq!(docs.len(), 1, "{a:?}: {}", text(&out));
            let err = &docs[0]["error"];
            assert_eq!(err["kind"], kind, "{a:?}: {}", text(&out));
            assert!(err["reasons"].is_array(), "{a:?}: {}", text(&out));
            let message = err["message"].as_str().unwrap_or("");
            assert!(!message.is_empty(), "{a:?}: empty message: {}", text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            assert_eq!(
                lines,
                [format!("error: {message}")],
                "{a:?}: stderr is more than the error line: {}",
                text(&out)
            );
        }
    }
}

#[test]
fn a_name_typed_wrong_is_bad_input_and_a_name_outside_policy_is_refused() {
    let env = Env::constrained();
    // The exit code follows the kind: refused 1; invalid, usage, input 2.
    let kind_exit = |v: &Value| match v["error"]["kind"].as_str() {
        Some("refused") => 1,
        Some("invalid" | "usage" | "input") => 2,
        Some("state" | "io" | "store") => 3,
        _ => panic!("no kind: {v}"),
    };
    let syntax: &[&[&str]] = &[
        &["issue", "device", "--dns", "bad_name.corp.internal"],
        &["issue", "device", "--dns", "a..corp.internal"],
        &["issue", "device", "--dns", "10.0.0.1"],
        &["issue", "device", "--ip", "10.0.0.300"],
        &["issue", "workload", "--uri", "spiffe://Corp.internal/x"],
        &["issue", "person", "--cn", "A", "--email", "not-an-address"],
    ];
    for args in syntax {
        let (c, v) = json_run(&env, args);
        assert_eq!((c, kind_exit(&v)), (2, 2), "{args:?}: {v}");
        assert_eq!(v["error"]["kind"], "invalid", "{args:?}: {v}");
        assert_eq!(rules(&v), ["name-syntax"], "{args:?}: {v}");
    }
    // The same in a manifest: the whole manifest is bad input.
    std::fs::write(
        env.path("m.toml"),
        "[[certificate]]\nid = \"x\"\nprofile = \"device\"\ndns = [\"bad_name.corp.internal\"]\n",
    )
    .unwrap();
    let (c, v) = json_run(&env, &["batch", "--manifest", "m.toml", "--out-dir", "o"]);
    assert_eq!((c, kind_exit(&v)), (2, 2), "{v}");
    assert_eq!(rules(&v), ["name-syntax"], "{v}");
    // A well-formed name outside the CA's constraints: policy says no.
    let (c, v) = json_run(&env, &["issue", "device", "--dns", "shop.example"]);
    assert_eq!((c, kind_exit(&v)), (1, 1), "{v}");
    assert_eq!(rules(&v), ["name-outside-constraints"], "{v}");
    // What a CSR asks for is judged as a whole, by policy: a malformed name in
    // it is refused with the rest (exit 1), never signed.
    env.openssl_csr(
        "b.key",
        "/CN=x",
        &["subjectAltName=DNS:bad_name.corp.internal"],
        &["-out", "b.csr"],
    );
    let (c, v) = json_run(&env, &["sign", "device", "--csr", "b.csr"]);
    assert_eq!((c, kind_exit(&v)), (1, 1), "{v}");
    assert!(rules(&v).contains(&"name-syntax".to_string()), "{v}");
}
