//! Lifecycle: batch manifests.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::common::{code, text, Env};

/// A manifest of `n` entries: device certificates, every fifth a person.
fn manifest(n: usize) -> String {
    let mut m = String::new();
    for i in 0..n {
        if i % 5 == 4 {
            let _ = write!(
                m,
                "[[certificate]]\nid = \"person-{i:04}\"\nprofile = \"person\"\ncn = \"Person {i}\"\nemail = [\"p{i}@corp.example\"]\n\n"
            );
        } else {
            let _ = write!(
                m,
                "[[certificate]]\nid = \"web-{i:04}\"\nprofile = \"device\"\ndns = [\"web-{i:04}.corp.internal\"]\nip = [\"10.0.{}.{}\"]\n\n",
                i / 250,
                i % 250 + 1
            );
        }
    }
    m
}

/// Run `--json batch` and parse its JSON lines.
fn batch_json(env: &Env, manifest: &str, want: i32) -> Vec<Value> {
    std::fs::write(env.path("m.toml"), manifest).unwrap();
    let out = env.run(&[
        "--json",
        "batch",
        "--manifest",
        "m.toml",
        "--out-dir",
        "out",
    ]);
    assert_eq!(code(&out), want, "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {e}: {l}")))
        .collect()
}

fn count(lines: &[Value], status: &str) -> usize {
    lines.iter().filter(|l| l["status"] == status).count()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn batch_issues_200_once_and_a_rerun_issues_nothing() {
    let env = Env::with_ca();
    let lines = batch_json(&env, &manifest(200), 0);
    assert_eq!(lines.len(), 200);
    assert_eq!(count(&lines, "issued"), 200);
    // One line per entry, in manifest order, with the documented fields.
    assert_eq!(lines[0]["id"], "web-0000");
    assert_eq!(lines[4]["id"], "person-0004");
    for l in &lines {
        assert_eq!(l["serial"].as_str().unwrap().len(), 32, "{l}");
        assert_eq!(l["reasons"], serde_json::json!([]));
    }
    assert_eq!(env.store_count(), 200);
    assert_eq!(
        files_in(&env.path("out")).len(),
        600,
        "no temporary file is left"
    );

    // The files are what OpenSSL expects: a valid chain, a private key only the owner reads.
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/device-ca.pem",
        "-purpose",
        "sslserver",
        "out/web-0007.pem",
    ]);
    env.openssl_ok(&[
        "verify",
        "-CAfile",
        "ca/root.pem",
        "-untrusted",
        "ca/entity-ca.pem",
        "-purpose",
        "sslclient",
        "out/person-0009.pem",
    ]);
    let chain = std::fs::read_to_string(env.path("out/web-0007.chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    let key_out = env.openssl_ok(&["pkey", "-in", "out/web-0007.key", "-noout", "-text"]);
    assert!(key_out.contains("P-256"), "{key_out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("out/web-0007.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let serials: Vec<&str> = lines
        .iter()
        .map(|l| l["serial"].as_str().unwrap())
        .collect();

    // Again: nothing issued twice, the same serials reported.
    let again = batch_json(&env, &manifest(200), 0);
    assert_eq!(again.len(), 200);
    assert_eq!(count(&again, "issued"), 0);
    assert_eq!(count(&again, "exists"), 200);
    let again_serials: Vec<&str> = again
        .iter()
        .map(|l| l["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, again_serials);
    assert_eq!(env.store_count(), 200);
}

#[test]
fn a_refused_entry_does_not_stop_the_others() {
    let env = Env::with_ca();
    let m = r#"
[[certificate]]
id = "web-01"
profile = "device"
dns = ["web-01.corp.internal"]

[[certificate]]
id = "confused"
profile = "device"
email = ["someone@corp.example"]

[[certificate]]
id = "alice"
profile = "person"
cn = "Alice Example"
email = ["alice@corp.example"]
"#;
    let lines = batch_json(&env, m, 1);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["status"], "issued");
    assert_eq!(lines[2]["status"], "issued");
    assert_eq!(lines[1]["status"], "refused");
    assert_eq!(lines[1]["serial"], Value::Null);
    let reasons = lines[1]["reasons"].to_string();
    assert!(reasons.contains("email"), "{reasons}");
    assert_eq!(env.store_count(), 2);
    assert!(!env.path("out/confused.pem").exists());
    assert!(!env.path("out/confused.key").exists());

    // Text mode: the refusal and a summary, no progress bar off a terminal.
    let out = env.run(&["batch", "--manifest", "m.toml", "--out-dir", "out"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refused confused"), "{stdout}");
    assert!(
        stdout.contains("0 issued, 2 already issued, 1 refused"),
        "{stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out));
}

#[test]
fn bad_manifests_exit_2_and_issue_nothing() {
    let env = Env::with_ca();
    let good =
        "[[certificate]]\nid = \"ok\"\nprofile = \"device\"\ndns = [\"ok.corp.internal\"]\n\n";
    let cases = [
        (
            "unknown key",
            format!("{good}[[certificate]]\nid = \"b\"\nprofile = \"device\"\ndnss = [\"b.corp.internal\"]\n"),
            "dnss",
        ),
        (
            "duplicate id",
            format!("{good}[[certificate]]\nid = \"ok\"\nprofile = \"device\"\ndns = [\"c.corp.internal\"]\n"),
            "duplicate id",
        ),
        (
            "unknown profile",
            format!("{good}[[certificate]]\nid = \"d\"\nprofile = \"robot\"\ndns = [\"d.corp.internal\"]\n"),
            "robot",
        ),
        (
            "unsafe id",
            format!("{good}[[certificate]]\nid = \"../escape\"\nprofile = \"device\"\ndns = [\"e.corp.internal\"]\n"),
            "../escape",
        ),
        (
            "malformed name",
            format!("{good}[[certificate]]\nid = \"f\"\nprofile = \"device\"\ndns = [\"bad name!\"]\n"),
            "bad name",
        ),
        (
            "unknown table",
            format!("{good}[[certificates]]\nid = \"g\"\n"),
            "certificates",
        ),
        ("not TOML", "[[certificate]\nid = ".to_string(), "manifest"),
    ];
    for (what, m, needle) in cases {
        std::fs::write(env.path("m.toml"), &m).unwrap();
        let err = env.fails(&["batch", "--manifest", "m.toml", "--out-dir", "out"], 2);
        assert!(err.contains("error:"), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(env.store_count(), 0, "{what}: nothing may be issued");
        assert!(files_in(&env.path("out")).is_empty(), "{what}");
    }
    env.fails(&["batch", "--manifest", "missing.toml"], 2);
}

#[test]
fn batch_reads_the_manifest_from_stdin() {
    let env = Env::with_ca();
    let out = env.run_stdin(
        &["--json", "batch", "--manifest", "-", "--out-dir", "out"],
        manifest(3).as_bytes(),
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert!(env.path("out/web-0002.chain.pem").exists());
}

#[test]
fn an_interrupted_batch_is_completed_not_duplicated() {
    let env = Env::with_ca();
    let lines = batch_json(&env, &manifest(2), 0);
    let serial = lines[0]["serial"].as_str().unwrap().to_string();
    // Crash after the record was flushed, before the files got their names: the
    // files are still temporary.
    for ext in ["key", "pem", "chain.pem"] {
        std::fs::rename(
            env.path(&format!("out/web-0000.{ext}")),
            env.path(&format!("out/.web-0000.{ext}.partial")),
        )
        .unwrap();
    }
    // Crash before the record: temporary files of a certificate never recorded.
    for ext in ["key", "pem", "chain.pem"] {
        std::fs::remove_file(env.path(&format!("out/web-0001.{ext}"))).unwrap();
    }
    let lines2 = {
        // web-0001 is recorded, so a fresh id stands for the unrecorded one.
        let m = manifest(2).replace("web-0001", "web-new");
        for ext in ["key", "pem", "chain.pem"] {
            std::fs::write(
                env.path(&format!("out/.web-new.{ext}.partial")),
                "half-written",
            )
            .unwrap();
        }
        batch_json(&env, &m, 0)
    };
    assert_eq!(lines2[0]["status"], "exists");
    assert_eq!(lines2[0]["serial"], serial.as_str());
    assert_eq!(lines2[1]["status"], "issued");
    assert_eq!(env.store_count(), 3);
    let files = files_in(&env.path("out"));
    assert!(files.iter().all(|f| !f.ends_with(".partial")), "{files:?}");
    // The completed files are the recorded certificate and its key.
    let pem = env.ok(&["show", &serial, "--pem"]);
    assert_eq!(
        std::fs::read_to_string(env.path("out/web-0000.pem")).unwrap(),
        pem
    );
    let cert_key = env.openssl_ok(&["x509", "-in", "out/web-0000.pem", "-noout", "-pubkey"]);
    let key_pub = env.openssl_ok(&["pkey", "-in", "out/web-0000.key", "-pubout"]);
    assert_eq!(cert_key, key_pub);
}

#[test]
fn batch_refuses_to_overwrite_unrecorded_files() {
    let env = Env::with_ca();
    std::fs::create_dir(env.path("out")).unwrap();
    std::fs::write(env.path("out/web-0000.pem"), "someone else's").unwrap();
    let lines = batch_json(&env, &manifest(2), 1);
    assert_eq!(lines[0]["status"], "refused");
    assert!(lines[0]["reasons"].to_string().contains("already exists"));
    assert_eq!(lines[1]["status"], "issued");
    assert_eq!(
        std::fs::read_to_string(env.path("out/web-0000.pem")).unwrap(),
        "someone else's"
    );
}
